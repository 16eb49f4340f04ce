//! The interoperability bus of civiclake: the comune's systems and outside operators publish
//! CloudEvents to one bus and subscribe to what they need, instead of calling each other
//! point to point.
//!
//! * [`filter`]: subscription filters — event types and sources (exact or `prefix.*`),
//!   a subject prefix and an expression on attributes and data
//!   (`data.meals > 100 and data.diets contains 'celiac'`), parsed once and evaluated per
//!   event.
//! * [`transform`]: field mappings that reshape an event's data for a subscriber.
//! * [`schema`]: the schema registry — a versioned JSON Schema per event type, compatibility
//!   modes (BACKWARD, FORWARD, FULL, their transitive variants, NONE) checked when a version is
//!   registered, and validation of every published event's data.

pub mod filter;
pub mod schema;
pub mod transform;
