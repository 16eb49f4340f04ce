//! The self-service kiosk module.
//!
//! Today it holds the **siting optimiser** ([`siting`]): where the comune's kiosks should
//! stand so that more residents, the elderly first, have one within walking distance. The
//! kiosk registry, telemetry and transactions come with the kiosk module's own work; the
//! optimiser already reads their transactions (`kiosk_transactions`) as observed demand
//! when that table exists.
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
