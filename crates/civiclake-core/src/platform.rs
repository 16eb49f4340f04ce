//! The `Platform` API: everything a civic module may do with the core, and nothing else.
//!
//! A module gets an `Arc<dyn Platform>` scoped to itself (the server implements it): it
//! appends events to its own events table with optimistic concurrency, reads its streams
//! back (upcast to the current versions), runs SQL, and publishes and subscribes to topics.
//! It never sees the WAL, Delta or DataFusion.

use crate::ErrorClass;
use crate::cloudevent::{CloudEvent, CloudEventError};
use crate::events::{EventEnvelope, EventError, ExpectedVersion, NewEvent, VersionConflict};
use crate::router::{RouterClosed, Subscription};
use crate::topic::{Topic, TopicError, TopicFilter};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;

/// The namespaces a module may publish to (`ingest/` is for data sources, `pipelines/` for
/// the pipelines).
pub const MODULE_PUBLISH_NAMESPACES: [&str; 2] = ["bus", "devices"];

/// The answer to a query: its schema and its rows as Arrow batches.
#[derive(Debug, Clone)]
pub struct QueryBatches {
    /// Schema of the rows.
    pub schema: SchemaRef,
    /// The rows.
    pub batches: Vec<RecordBatch>,
}

impl QueryBatches {
    /// Number of rows.
    pub fn num_rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }
}

/// A failure of a [`Platform`] call.
#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    /// The stream was not at the expected version (HTTP 409).
    #[error(transparent)]
    Conflict(#[from] VersionConflict),
    /// A bad stream id or event, or stored events that cannot be read back.
    #[error(transparent)]
    Event(#[from] EventError),
    /// A bad topic or topic filter.
    #[error(transparent)]
    Topic(#[from] TopicError),
    /// The module may not publish to this topic.
    #[error(
        "module '{module}' may not publish to {topic:?}: modules publish to bus/... and devices/..."
    )]
    TopicNotAllowed {
        /// The module.
        module: String,
        /// The topic.
        topic: String,
    },
    /// A CloudEvent without its required attributes.
    #[error(transparent)]
    CloudEvent(#[from] CloudEventError),
    /// The module may not write this table (not its own, or its events table).
    #[error("module '{module}' may not write table {table}: {reason}")]
    TableNotAllowed {
        /// The module.
        module: String,
        /// The table.
        table: String,
        /// Why.
        reason: String,
    },
    /// No module of this name is registered.
    #[error("no module '{0}' is registered")]
    UnknownModule(String),
    /// The query failed (class and message from the query engine).
    #[error("{message}")]
    Query {
        /// The engine's error class.
        class: ErrorClass,
        /// The engine's message.
        message: String,
    },
    /// The storage failed (class and message from the lake).
    #[error("{message}")]
    Storage {
        /// The lake's error class.
        class: ErrorClass,
        /// The lake's message.
        message: String,
    },
    /// The interoperability bus refused the event (class from the bus: no schema for its
    /// type is `Limit`, i.e. 422; data not matching the schema is `User`).
    #[error("{message}")]
    Bus {
        /// The bus's error class.
        class: ErrorClass,
        /// The bus's message.
        message: String,
    },
    /// The platform is shutting down.
    #[error("the platform is shutting down")]
    Closed,
}

impl PlatformError {
    /// The class of this error (decides the HTTP status: a version conflict is a 409).
    pub fn class(&self) -> ErrorClass {
        match self {
            PlatformError::Conflict(_) => ErrorClass::Conflict,
            PlatformError::Event(e) => e.class(),
            PlatformError::Topic(_)
            | PlatformError::TopicNotAllowed { .. }
            | PlatformError::CloudEvent(_) => ErrorClass::User,
            PlatformError::TableNotAllowed { .. } => ErrorClass::Forbidden,
            PlatformError::UnknownModule(_) => ErrorClass::NotFound,
            PlatformError::Query { class, .. }
            | PlatformError::Storage { class, .. }
            | PlatformError::Bus { class, .. } => *class,
            PlatformError::Closed => ErrorClass::Unavailable,
        }
    }
}

impl From<RouterClosed> for PlatformError {
    fn from(_: RouterClosed) -> Self {
        PlatformError::Closed
    }
}

/// Checks that `module` may publish to `topic` (namespaces [`MODULE_PUBLISH_NAMESPACES`]).
pub fn check_module_topic(module: &str, topic: &Topic) -> Result<(), PlatformError> {
    if MODULE_PUBLISH_NAMESPACES.contains(&topic.namespace()) {
        Ok(())
    } else {
        Err(PlatformError::TopicNotAllowed {
            module: module.to_string(),
            topic: topic.to_string(),
        })
    }
}

/// What a module may do, scoped to that module.
#[async_trait::async_trait]
pub trait Platform: Send + Sync + std::fmt::Debug {
    /// The name of the module this handle belongs to.
    fn module(&self) -> &str;

    /// Appends `events` to `stream` in the module's events table, durably (WAL), if the
    /// stream is at `expected` — else fails with [`PlatformError::Conflict`] naming the
    /// stream, the expected and the actual version. Returns the stored envelopes (versions
    /// following the stream's last one).
    async fn append_events(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<Vec<EventEnvelope>, PlatformError>;

    /// The events of `stream` from `from_version` on (1 = all), in version order, each
    /// upcast to the current schema version of its type.
    async fn read_stream(
        &self,
        stream: &str,
        from_version: u64,
    ) -> Result<Vec<EventEnvelope>, PlatformError>;

    /// Every event of the module's events table, by stream and then version, each upcast
    /// to the current schema version of its type: what a module replays at start in one
    /// read (instead of one `read_stream` per stream).
    async fn read_all(&self) -> Result<Vec<EventEnvelope>, PlatformError>;

    /// Runs SQL over the lake (the tables the module may read).
    async fn query(&self, sql: &str) -> Result<QueryBatches, PlatformError>;

    /// Writes `batch` (rows in the lake's conventions: a `time` column, tags, fields) to
    /// `table`, one of the module's own tables other than its events table, durably (WAL).
    /// Returns the rows written. For what is not an event: imported reference data, results
    /// a module computes (the kiosk siting plans).
    async fn write_rows(&self, table: &str, batch: RecordBatch) -> Result<usize, PlatformError>;

    /// Publishes `event` on `topic` (`bus/...` or `devices/...`); returns how many
    /// subscribers received it.
    async fn publish(&self, topic: &Topic, event: CloudEvent) -> Result<usize, PlatformError>;

    /// Subscribes to the topics matching `filter`, from now on.
    async fn subscribe(&self, filter: &TopicFilter) -> Result<Subscription, PlatformError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_and_messages() {
        let conflict =
            PlatformError::from(ExpectedVersion::Exact(1).check("loan-3", 2).unwrap_err());
        assert_eq!(conflict.class(), ErrorClass::Conflict);
        assert_eq!(
            conflict.to_string(),
            "version conflict on stream 'loan-3': expected version 1, but it is at version 2"
        );
        assert_eq!(PlatformError::Closed.class(), ErrorClass::Unavailable);
        assert_eq!(
            PlatformError::UnknownModule("x".into()).class(),
            ErrorClass::NotFound
        );
        let q = PlatformError::Query {
            class: ErrorClass::Limit,
            message: "too big".into(),
        };
        assert_eq!(
            (q.class(), q.to_string().as_str()),
            (ErrorClass::Limit, "too big")
        );
    }

    #[test]
    fn modules_publish_to_bus_and_devices_only() {
        let t = |s: &str| Topic::new(s).unwrap();
        assert!(check_module_topic("lab", &t("bus/lab/loans")).is_ok());
        assert!(check_module_topic("lab", &t("devices/scanner/s1/cmd")).is_ok());
        let err = check_module_topic("lab", &t("ingest/air")).unwrap_err();
        assert_eq!(err.class(), ErrorClass::User);
        assert_eq!(
            err.to_string(),
            "module 'lab' may not publish to \"ingest/air\": modules publish to bus/... and devices/..."
        );
        assert!(check_module_topic("lab", &t("pipelines/alerts/x")).is_err());
    }
}
