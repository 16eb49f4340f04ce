//! The council committees module (commissioni consiliari): committees and their members,
//! sessions with their agendas, acts with their co-signers and their iter, votes with the
//! quorum, attendance and fees (`../shared/domain/council.md`).
//!
//! Everything is event-sourced into `council_events` through the core's `Platform`
//! ([`service::Council`]); the state is rebuilt from the events at start
//! ([`service::rebuild`]); each fact is also a row of the module's tables ([`tables`]),
//! which the SQL views of `sql/council/*.sql` turn into the module's statistics.
//!
//! - [`iter`]: the statuses of an act and the state machine, per kind of act;
//! - [`acts`]: acts, signatures, art. 49 opinions, and the checks of each step;
//! - [`sessions`]: sessions, agenda items, attendance, votes and media;
//! - [`model`]: councillors, committees, seats, fee rates and policy, signature rules;
//! - [`fees`]: attendance fees per councillor and month;
//! - [`state`]: the events and their projection.

pub mod acts;
pub mod demo;
pub mod fees;
pub mod iter;
pub mod model;
pub mod ocd;
pub mod service;
pub mod sessions;
pub mod state;
pub mod tables;

#[cfg(test)]
mod tests;

pub use service::{Caller, Council, CouncilConfig, CouncilServiceError};

/// Something refused, with the field it is about (HTTP 400 with field-level messages).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct CouncilError {
    /// The field (`first_signer`, `votes.c12`, `acts[0]`).
    pub field: String,
    pub reason: String,
}

impl CouncilError {
    pub fn field(field: &str, reason: String) -> Self {
        Self {
            field: field.into(),
            reason,
        }
    }
}
