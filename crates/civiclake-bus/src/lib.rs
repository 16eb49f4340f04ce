//! The interoperability bus of civiclake: the comune's systems and outside operators publish
//! CloudEvents to one bus and subscribe to what they need, instead of calling each other
//! point to point.
//!
//! * [`schema`]: the schema registry — a versioned JSON Schema per event type, compatibility
//!   modes (BACKWARD, FORWARD, FULL, their transitive variants, NONE) checked when a version is
//!   registered, and validation of every published event's data.

pub mod schema;
