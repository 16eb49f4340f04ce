//! The self-service kiosk module.
//!
//! - The **fleet** ([`fleet`]): the registry and the service catalog, heartbeats and
//!   liveness, transactions checked with pagoPA's rules, availability within opening hours,
//!   and the [`fleet::Fleet`] service that keeps them as the module's events and tables.
//! - The **siting optimiser** ([`siting`]): where the comune's kiosks should stand so that
//!   more residents, the elderly first, have one within walking distance; it reads the
//!   fleet's transactions (`kiosk_transactions`) as observed demand.
//!
//! [`Siting`] is the service the API and the demo use: it keeps the optimiser's inputs and
//! results as the kiosk module's tables, through the module's [`civiclake_core::Platform`].

pub mod demo;
pub mod fleet;
mod service;
pub mod siting;

pub use service::{
    DEMAND_TABLE, DistanceEntry, ImportSummary, PlanRequest, PlanSummary, SITES_TABLE, Siting,
    SitingServiceError, TRANSACTIONS_TABLE, demand_schema, sites_schema, tables,
};
