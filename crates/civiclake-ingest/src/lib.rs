//! Decoders from the city's payload formats into Arrow record batches that follow the
//! civiclake table conventions (see [`civiclake_core`]): a non-null `time` column
//! (`Timestamp(Microsecond, "UTC")`), dictionary-encoded tags, and `Float64`/`Int64`/
//! `Boolean`/`Utf8` fields, ordered `time`, tags by name, fields by name.
//!
//! * [`decode_line_protocol`], [`decode_json`], [`decode_ndjson`] and [`decode_arrow_ipc`]
//!   decode HTTP payloads; rows that cannot be stored are reported as [`RowError`]s and,
//!   unless [`DecodeOptions::accept_partial`] is set, reject the whole payload.
//! * [`decode_payload`] decodes a broker message's payload in a [`PayloadFormat`]: line
//!   protocol, JSON, SenML ([`decode_senml`]), NGSI-LD ([`decode_ngsi_ld`]), CloudEvents
//!   ([`decode_cloudevents`]) or smartphone locations ([`decode_phone_locations`], whose
//!   device ids a [`Pseudonymiser`] replaces: raw ids are never stored).
//!   [`detect_format`] tells SenML, JSON and line protocol apart for `auto` routes.
//! * [`RouteSet`] routes a broker message from its topic to a table (`pipelines/ingest/*.toml`)
//!   and decodes it there, with the topic's captures as tag columns.
//! * [`normalize_batch`] brings any Arrow batch to the conventions.
//! * [`read_file`] streams CSV, Parquet, NDJSON and line protocol files for the importer.
//!
//! Types are checked against the table's current schema ([`SchemaLookup`]): an integer is
//! accepted by a float column, anything else that differs is a row error naming the column
//! and both types. Within a payload the first row that introduces a column fixes its type.

mod arrow_ipc;
mod builder;
mod cloudevents;
mod error;
mod file;
mod format;
mod json;
mod line_protocol;
mod ngsi_ld;
mod normalize;
mod phone;
mod route;
mod senml;
#[cfg(test)]
mod test_util;
mod types;

pub use arrow_ipc::decode_arrow_ipc;
pub use cloudevents::decode_cloudevents;
pub use error::{Error, Result};
pub use file::{FileFormat, ImportStats, read_file};
pub use format::{PayloadFormat, decode_payload, detect_format};
pub use json::{decode_json, decode_ndjson};
pub use line_protocol::decode_line_protocol;
pub use ngsi_ld::decode_ngsi_ld;
pub use normalize::normalize_batch;
pub use phone::{MIN_SECRET_LEN, Pseudonymiser, Rotation, decode_phone_locations};
pub use route::{DEFAULT_ROUTE_NAME, DEFAULT_ROUTE_TOPIC, Route, RouteError, RouteMatch, RouteSet};
pub use senml::decode_senml;
pub use types::{DecodeOptions, Decoded, Precision, RowError, SchemaLookup, TableBatch};
