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

mod error;
mod predicate;
mod schema;
mod topic;

pub use error::ErrorClass;
pub use predicate::{CompareOp, Literal, PredicateError, RowPredicate};
pub use schema::{
    ColumnRole, ROLE_KEY, TIME_COLUMN, describe_type, field_column, is_supported_field_type,
    role_of, tag_column, tag_type, time_column, time_type, validate_column_name,
    validate_table_name,
};
pub use topic::{NAMESPACES, Topic, TopicError, TopicFilter};
