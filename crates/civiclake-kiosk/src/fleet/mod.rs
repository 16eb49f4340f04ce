//! The kiosk fleet: the registry ([`registry`]), heartbeats and liveness ([`liveness`]),
//! availability within opening hours ([`availability`]) and transactions checked before
//! they are stored ([`transaction`]). These are the domain rules; the module's service
//! keeps them as events and tables.

pub mod availability;
pub mod demo;
pub mod liveness;
pub mod payment;
pub mod registry;
mod service;
pub mod tables;
pub mod transaction;

pub use service::{
    BUS_SOURCE, CATALOG_STREAM, Collection, Fleet, FleetConfig, FleetInbox, FleetServiceError,
    FleetStats, HEARTBEAT_FILTER, KioskView, Recorded, TRANSACTION_FILTER, Via, bus_schemas,
    bus_type, day_of, event, kiosk_stream, month_of,
};

#[cfg(test)]
mod tests;

/// Something refused, with the field it is about.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct FleetError {
    /// The field (`notices[0].notice_number`, `opening_hours.days.mon[1]`).
    pub field: String,
    pub reason: String,
}

impl FleetError {
    pub(crate) fn field(field: &str, reason: String) -> Self {
        Self {
            field: field.into(),
            reason,
        }
    }
}
