//! The small shared vocabulary of civiclake.
//!
//! Every table in the lake follows one convention, settled here so that the decoders
//! (`civiclake-ingest`), the storage (`civiclake-lake`), the SQL layer (`civiclake-query`)
//! and the API agree on it:
//!
//! * a `time` column, [`time_type`]: UTC timestamp with microsecond precision (Delta Lake's
//!   precision), never null;
//! * tag columns (the identity of a series, e.g. `sensor`, `district`): dictionary-encoded
//!   strings, [`tag_type`];
//! * field columns (the measured values): `Float64`, `Int64`, `Boolean` or `Utf8`.
//!
//! The role of each column travels in the Arrow field metadata under [`ROLE_KEY`].
//!
//! [`RowPredicate`] is the storable row condition of deletes by predicate (retention, GDPR).
//! Modules see the core through the [`Platform`] trait: their events ([`EventEnvelope`],
//! [`Upcasters`]), SQL answers ([`QueryBatches`]) and topics ([`Topic`], [`TopicRouter`],
//! [`CloudEvent`]); [`ModuleRegistry`] says which module owns which tables. Message sources
//! (MQTT, Kafka) hand what they receive to a [`MessageSink`] before they acknowledge it.

mod cloudevent;
mod error;
pub mod events;
mod ingest;
mod module;
mod platform;
mod predicate;
mod router;
pub mod rows;
mod schema;
mod topic;

pub use cloudevent::{CloudEvent, CloudEventError, JSON_CONTENT_TYPE, SPEC_VERSION};
pub use error::ErrorClass;
pub use events::{
    EventEnvelope, EventError, ExpectedVersion, NewEvent, UpcastFn, Upcasters, VersionConflict,
    events_schema,
};
pub use ingest::{DeliveryReport, InboundMessage, IngestError, MessageSink, SourceKind};
pub use module::{Module, ModuleError, ModuleRegistry, SHIPPED_MODULES};
pub use platform::{
    MODULE_PUBLISH_NAMESPACES, Platform, PlatformError, QueryBatches, check_module_topic,
};
pub use predicate::{CompareOp, Literal, PredicateError, RowPredicate};
pub use router::{
    DEFAULT_QUEUE_CAPACITY, Delivery, Message, RouterClosed, RouterStats, Subscription, TopicRouter,
};
pub use schema::{
    ColumnRole, ROLE_KEY, TIME_COLUMN, describe_type, field_column, is_supported_field_type,
    role_of, tag_column, tag_type, time_column, time_type, validate_column_name,
    validate_table_name,
};
pub use topic::{NAMESPACES, PIPELINE_KINDS, Topic, TopicError, TopicFilter};
