//! Continuous pipelines over civiclake tables.
//!
//! An analyst declares in `pipelines/streams/*.toml` (or through `/api/v1/pipelines`) how
//! raw readings become windowed aggregates: a `SELECT` over a source table, a tumbling or
//! hopping window by event time, a watermark and an allowed lateness, and a target table.
//! The runtime ([`Pipelines`]) watches every write to a source (a lake
//! [`civiclake_lake::WriteObserver`]): the newest event time moves the watermark, rows ahead
//! of the clock go to `_quarantine`, rows later than the allowed lateness to `_late_rows`, and
//! late rows within it mark their windows for a correction. One task per pipeline emits each
//! window once the watermark passed it (rows and checkpoint in one WAL record) and recomputes
//! marked windows (a replace-by-key record). Rollups register with the query engine so
//! aggregate queries over the source use them; table settings give retention and the
//! last-value cache; alert rules (`pipelines/alerts/*.toml`) publish their changes of state
//! on the bus.

mod alerts;
mod error;
mod incremental;
mod retention;
mod runtime;
pub mod spec;
mod sqlgen;

pub use alerts::{
    ALERT_EVENT_TYPES, ALERTS_TABLE, AlertRules, AlertStatus, Firing, Transition,
    alert_event_schema, alerts_schema,
};
pub use error::{Error, Result};
pub use retention::RetentionRun;
pub use runtime::{
    EventPublisher, LATE_ROWS_TABLE, PipelineStatus, Pipelines, QUARANTINE_TABLE, Settings,
    late_rows_schema, quarantine_schema,
};
pub use spec::{AlertSpec, Definitions, PipelineSpec, TableSpec};
pub use sqlgen::WindowQuery;
#[cfg(test)]
mod tests;
