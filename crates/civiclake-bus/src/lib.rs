//! The interoperability bus of civiclake: the comune's systems and outside operators publish
//! CloudEvents to one bus and subscribe to what they need, instead of calling each other
//! point to point.
