//! The interoperability bus of civiclake: the comune's systems and outside operators publish
//! CloudEvents to one bus and subscribe to what they need, instead of calling each other
//! point to point.
//!
//! - [`catalog`]: organisations, their systems (owners, contacts, the event types they
//!   produce and consume) and endpoints with their OpenAPI or WSDL documents.
//! - [`ecosystem`]: the map of who depends on whom, from the catalog, the subscriptions and
//!   the log.
//! - [`log`]: `bus_events`, the log every published event is appended to before it is
//!   acknowledged.
//! - [`schema`]: the schema registry — a versioned JSON Schema per event type, compatibility
//!   modes (BACKWARD, FORWARD, FULL, their transitive variants, NONE) checked when a version
//!   is registered, and validation of every published event's data.
//! - [`subscription`]: what a system receives (a [`filter`]), in what shape (a
//!   [`transform`]), where (a [`target`]) and with which retries.
//! - [`filter`]: subscription filters — event types and sources (exact or `prefix.*`), a
//!   subject prefix and an expression on attributes and data
//!   (`data.meals > 100 and data.diets contains 'celiac'`), parsed once and evaluated per
//!   event.
//! - [`transform`]: field mappings that reshape an event's data for a subscriber.
//! - [`bus`]: the engine — publish, delivery workers, retries, dead letters, replay.
//! - [`audit`]: `bus_deliveries` (every attempt) and `bus_dead_letters`.

pub mod audit;
pub mod bus;
pub mod catalog;
pub mod ecosystem;
pub mod filter;
pub mod log;
pub mod schema;
pub mod subscription;
pub mod target;
pub mod transform;

pub use bus::{Bus, BusError, BusSettings, Published, ReplayFrom, SubscriptionStatus};
