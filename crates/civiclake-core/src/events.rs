//! The event envelope of every module event, its table schema, optimistic-concurrency
//! checks and the upcasting of old event versions.
//!
//! A module's events live in one table (`council_events`, `school_events`, `kiosk_events`,
//! `bus_catalog_events`, ...) with the columns of [`events_schema`]: one row per event.
//! Streams (one per aggregate, e.g. `proposal-17`) are numbered from version 1 without gaps.
//!
//! Upcasting: an event type's payload may change shape. Each change gets a new schema version
//! and one function per (event type, old version) turning a payload of that version into one
//! of the next; the functions are registered at start ([`Upcasters`]) and documented beside
//! the event type. Readers get every event at the current version of its type.

use arrow::array::{
    Array, ArrayRef, Int64Array, RecordBatch, StringArray, StringDictionaryBuilder,
    TimestampMicrosecondArray,
};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Int32Type, Schema, SchemaRef};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use uuid::Uuid;

use crate::schema::{field_column, tag_column, time_column, time_type};

/// Column: the stream (aggregate) the event belongs to; a tag.
pub const STREAM_ID_COLUMN: &str = "stream_id";
/// Column: the event type; a tag.
pub const EVENT_TYPE_COLUMN: &str = "event_type";
/// Column: the event's version within its stream (1, 2, ...).
pub const VERSION_COLUMN: &str = "version";
/// Column: the schema version of the payload as stored.
pub const SCHEMA_VERSION_COLUMN: &str = "schema_version";
/// Column: the event id (UUID text).
pub const EVENT_ID_COLUMN: &str = "event_id";
/// Column: who caused the event (a user, a device, `system`).
pub const ACTOR_COLUMN: &str = "actor";
/// Column: the id correlating events of one request or process (may be null).
pub const CORRELATION_ID_COLUMN: &str = "correlation_id";
/// Column: the payload as JSON text.
pub const PAYLOAD_COLUMN: &str = "payload";

/// Longest stream id, event type or actor (bytes).
const MAX_NAME_BYTES: usize = 256;

/// A problem with an event, a stream id, a stored events batch or an upcast.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// A stream id, event type or actor is empty, too long or has control characters.
    #[error("invalid {what} {value:?}: use 1-256 bytes without control characters")]
    InvalidName {
        /// `stream id`, `event type` or `actor`.
        what: &'static str,
        /// The value given.
        value: String,
    },
    /// A schema version is 0, or newer than the newest the module knows.
    #[error(
        "event type '{event_type}' has schema version {version}, but versions go from 1 to {current}"
    )]
    UnknownSchemaVersion {
        /// Event type.
        event_type: String,
        /// Version given or stored.
        version: u32,
        /// Current (newest) version of the type.
        current: u32,
    },
    /// No upcaster is registered for a version below the current one.
    #[error(
        "no upcaster for event type '{event_type}' from schema version {version} (current {current})"
    )]
    MissingUpcaster {
        /// Event type.
        event_type: String,
        /// Version with no function.
        version: u32,
        /// Current version of the type.
        current: u32,
    },
    /// Two upcasters for the same (event type, version).
    #[error(
        "an upcaster for event type '{event_type}' from schema version {version} is already registered"
    )]
    DuplicateUpcaster {
        /// Event type.
        event_type: String,
        /// Version.
        version: u32,
    },
    /// An upcaster refused a payload.
    #[error(
        "upcasting event {event_id} of type '{event_type}' from schema version {version}: {reason}"
    )]
    Upcast {
        /// Event id.
        event_id: Uuid,
        /// Event type.
        event_type: String,
        /// Version the payload was in.
        version: u32,
        /// The function's message.
        reason: String,
    },
    /// A stored events batch does not have the envelope's columns or values.
    #[error("events table: {0}")]
    Encoding(String),
}

impl EventError {
    /// The class of this error: bad input from a module is a user error; events that cannot
    /// be read back are internal.
    pub fn class(&self) -> crate::ErrorClass {
        match self {
            EventError::InvalidName { .. } | EventError::UnknownSchemaVersion { .. } => {
                crate::ErrorClass::User
            }
            _ => crate::ErrorClass::Internal,
        }
    }
}

fn encoding(message: impl fmt::Display) -> EventError {
    EventError::Encoding(message.to_string())
}

fn check_name(what: &'static str, value: &str) -> Result<(), EventError> {
    if value.is_empty() || value.len() > MAX_NAME_BYTES || value.chars().any(char::is_control) {
        return Err(EventError::InvalidName {
            what,
            value: value.to_string(),
        });
    }
    Ok(())
}

/// Checks a stream id: 1-256 bytes, no control characters.
pub fn validate_stream_id(stream: &str) -> Result<(), EventError> {
    check_name("stream id", stream)
}

/// An event as stored: the envelope every module event has, around its JSON payload.
#[derive(Debug, Clone, PartialEq)]
pub struct EventEnvelope {
    /// Unique id of the event.
    pub event_id: Uuid,
    /// The stream (aggregate) it belongs to.
    pub stream_id: String,
    /// Position in the stream, from 1 without gaps.
    pub version: u64,
    /// Event type, e.g. `LoanOpened`.
    pub event_type: String,
    /// Schema version of `payload`.
    pub schema_version: u32,
    /// When it happened, microseconds since the epoch (UTC).
    pub time: i64,
    /// Who caused it (user, device, `system`).
    pub actor: String,
    /// Id shared by the events of one request or process.
    pub correlation_id: Option<String>,
    /// The payload.
    pub payload: Value,
}

/// An event a module appends: the platform adds the id, the stream, the version and (unless
/// given) the time.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// Event type.
    pub event_type: String,
    /// Schema version of `payload` (normally the current one of the type).
    pub schema_version: u32,
    /// Who caused it.
    pub actor: String,
    /// Id shared by the events of one request or process.
    pub correlation_id: Option<String>,
    /// When it happened (µs since the epoch, UTC); `None` = when appended.
    pub time: Option<i64>,
    /// The payload.
    pub payload: Value,
}

impl NewEvent {
    /// An event of `event_type` at `schema_version`, caused by `actor`.
    pub fn new(
        event_type: impl Into<String>,
        schema_version: u32,
        actor: impl Into<String>,
        payload: Value,
    ) -> Self {
        Self {
            event_type: event_type.into(),
            schema_version,
            actor: actor.into(),
            correlation_id: None,
            time: None,
            payload,
        }
    }

    /// Sets the correlation id.
    pub fn with_correlation_id(mut self, id: impl Into<String>) -> Self {
        self.correlation_id = Some(id.into());
        self
    }

    /// Sets the time (µs since the epoch, UTC).
    pub fn at(mut self, micros: i64) -> Self {
        self.time = Some(micros);
        self
    }

    /// Checks the names and the schema version against the module's `upcasters`.
    pub fn validate(&self, upcasters: &Upcasters) -> Result<(), EventError> {
        check_name("event type", &self.event_type)?;
        check_name("actor", &self.actor)?;
        if let Some(c) = &self.correlation_id {
            check_name("correlation id", c)?;
        }
        let current = upcasters.current_version(&self.event_type);
        if self.schema_version == 0 || self.schema_version > current {
            return Err(EventError::UnknownSchemaVersion {
                event_type: self.event_type.clone(),
                version: self.schema_version,
                current,
            });
        }
        Ok(())
    }

    /// The stored form of this event at `version` of `stream`.
    pub fn into_envelope(self, stream: &str, version: u64, now: i64) -> EventEnvelope {
        EventEnvelope {
            event_id: Uuid::new_v4(),
            stream_id: stream.to_string(),
            version,
            event_type: self.event_type,
            schema_version: self.schema_version,
            time: self.time.unwrap_or(now),
            actor: self.actor,
            correlation_id: self.correlation_id,
            payload: self.payload,
        }
    }
}

/// The version a writer expects a stream to be at (optimistic concurrency).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectedVersion {
    /// No check.
    Any,
    /// The stream must not exist yet (version 0).
    NoStream,
    /// The stream must be at exactly this version (0 = no stream).
    Exact(u64),
}

impl ExpectedVersion {
    /// Checks `actual` (0 for a stream with no events) against this expectation.
    pub fn check(self, stream: &str, actual: u64) -> Result<(), VersionConflict> {
        let ok = match self {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => actual == 0,
            ExpectedVersion::Exact(v) => actual == v,
        };
        if ok {
            Ok(())
        } else {
            Err(VersionConflict {
                stream: stream.to_string(),
                expected: self,
                actual,
            })
        }
    }
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpectedVersion::Any => f.write_str("any version"),
            ExpectedVersion::NoStream | ExpectedVersion::Exact(0) => {
                f.write_str("no stream (version 0)")
            }
            ExpectedVersion::Exact(v) => write!(f, "version {v}"),
        }
    }
}

/// A stream was not at the version the writer expected: someone else appended meanwhile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "version conflict on stream '{stream}': expected {expected}, but it is at version {actual}"
)]
pub struct VersionConflict {
    /// The stream.
    pub stream: String,
    /// What the writer expected.
    pub expected: ExpectedVersion,
    /// The stream's actual version.
    pub actual: u64,
}

/// The Arrow schema of a module's events table, in the lake's column roles: `time`, the tags
/// `stream_id` and `event_type`, then the fields `version`, `schema_version` (integers),
/// `event_id`, `actor`, `correlation_id` and `payload` (JSON text).
pub fn events_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        time_column(),
        tag_column(STREAM_ID_COLUMN),
        tag_column(EVENT_TYPE_COLUMN),
        field_column(VERSION_COLUMN, DataType::Int64),
        field_column(SCHEMA_VERSION_COLUMN, DataType::Int64),
        field_column(EVENT_ID_COLUMN, DataType::Utf8),
        field_column(ACTOR_COLUMN, DataType::Utf8),
        field_column(CORRELATION_ID_COLUMN, DataType::Utf8),
        field_column(PAYLOAD_COLUMN, DataType::Utf8),
    ]))
}

/// The rows of an events table for `events`.
pub fn to_batch(events: &[EventEnvelope]) -> Result<RecordBatch, EventError> {
    let mut streams = StringDictionaryBuilder::<Int32Type>::new();
    let mut types = StringDictionaryBuilder::<Int32Type>::new();
    for e in events {
        streams.append_value(&e.stream_id);
        types.append_value(&e.event_type);
    }
    let versions = events
        .iter()
        .map(|e| i64::try_from(e.version).map_err(|_| encoding("version beyond i64")))
        .collect::<Result<Vec<_>, _>>()?;
    let payloads = events
        .iter()
        .map(|e| serde_json::to_string(&e.payload).map_err(encoding))
        .collect::<Result<Vec<_>, _>>()?;
    let columns: Vec<ArrayRef> = vec![
        Arc::new(
            TimestampMicrosecondArray::from_iter_values(events.iter().map(|e| e.time))
                .with_timezone("UTC"),
        ),
        Arc::new(streams.finish()),
        Arc::new(types.finish()),
        Arc::new(Int64Array::from(versions)),
        Arc::new(Int64Array::from_iter_values(
            events.iter().map(|e| i64::from(e.schema_version)),
        )),
        Arc::new(StringArray::from_iter_values(
            events.iter().map(|e| e.event_id.to_string()),
        )),
        Arc::new(StringArray::from_iter_values(
            events.iter().map(|e| e.actor.as_str()),
        )),
        Arc::new(StringArray::from_iter(
            events.iter().map(|e| e.correlation_id.as_deref()),
        )),
        Arc::new(StringArray::from(payloads)),
    ];
    RecordBatch::try_new(events_schema(), columns).map_err(encoding)
}

fn column(batch: &RecordBatch, name: &str, to: &DataType) -> Result<ArrayRef, EventError> {
    let col = batch
        .column_by_name(name)
        .ok_or_else(|| encoding(format!("missing column '{name}'")))?;
    cast(col, to).map_err(|e| encoding(format!("column '{name}': {e}")))
}

fn strings(batch: &RecordBatch, name: &str) -> Result<StringArray, EventError> {
    let col = column(batch, name, &DataType::Utf8)?;
    col.as_any()
        .downcast_ref::<StringArray>()
        .cloned()
        .ok_or_else(|| encoding(format!("column '{name}' is not text")))
}

fn integers(batch: &RecordBatch, name: &str) -> Result<Int64Array, EventError> {
    let col = column(batch, name, &DataType::Int64)?;
    col.as_any()
        .downcast_ref::<Int64Array>()
        .cloned()
        .ok_or_else(|| encoding(format!("column '{name}' is not an integer")))
}

fn required<T>(value: Option<T>, name: &str, row: usize) -> Result<T, EventError> {
    value.ok_or_else(|| encoding(format!("row {row}: column '{name}' is null")))
}

/// The envelopes in `batch` (rows of an events table, e.g. a `SELECT *` on it), in row order.
pub fn from_batch(batch: &RecordBatch) -> Result<Vec<EventEnvelope>, EventError> {
    let times = column(batch, crate::TIME_COLUMN, &time_type())?;
    let times = times
        .as_any()
        .downcast_ref::<TimestampMicrosecondArray>()
        .ok_or_else(|| encoding("column 'time' is not a timestamp"))?;
    let streams = strings(batch, STREAM_ID_COLUMN)?;
    let types = strings(batch, EVENT_TYPE_COLUMN)?;
    let versions = integers(batch, VERSION_COLUMN)?;
    let schema_versions = integers(batch, SCHEMA_VERSION_COLUMN)?;
    let ids = strings(batch, EVENT_ID_COLUMN)?;
    let actors = strings(batch, ACTOR_COLUMN)?;
    let correlations = strings(batch, CORRELATION_ID_COLUMN)?;
    let payloads = strings(batch, PAYLOAD_COLUMN)?;
    let get = |a: &StringArray, i: usize| a.is_valid(i).then(|| a.value(i).to_string());
    let int = |a: &Int64Array, i: usize| a.is_valid(i).then(|| a.value(i));
    (0..batch.num_rows())
        .map(|i| {
            let id = required(get(&ids, i), EVENT_ID_COLUMN, i)?;
            let version = required(int(&versions, i), VERSION_COLUMN, i)?;
            let schema_version = required(int(&schema_versions, i), SCHEMA_VERSION_COLUMN, i)?;
            let payload = required(get(&payloads, i), PAYLOAD_COLUMN, i)?;
            Ok(EventEnvelope {
                event_id: Uuid::parse_str(&id)
                    .map_err(|e| encoding(format!("row {i}: event id {id:?}: {e}")))?,
                stream_id: required(get(&streams, i), STREAM_ID_COLUMN, i)?,
                version: u64::try_from(version)
                    .map_err(|_| encoding(format!("row {i}: negative version {version}")))?,
                event_type: required(get(&types, i), EVENT_TYPE_COLUMN, i)?,
                schema_version: u32::try_from(schema_version).map_err(|_| {
                    encoding(format!(
                        "row {i}: schema version {schema_version} out of range"
                    ))
                })?,
                time: required(times.is_valid(i).then(|| times.value(i)), "time", i)?,
                actor: required(get(&actors, i), ACTOR_COLUMN, i)?,
                correlation_id: get(&correlations, i),
                payload: serde_json::from_str(&payload)
                    .map_err(|e| encoding(format!("row {i}: payload is not JSON: {e}")))?,
            })
        })
        .collect()
}

/// Turns a payload of one schema version into a payload of the next; the message of an
/// `Err` says why the payload cannot be upcast.
pub type UpcastFn = fn(Value) -> Result<Value, String>;

/// The upcasting functions of a module: one per (event type, schema version it reads).
///
/// The current version of an event type is one more than the highest version with a
/// function (1 when there is none); [`Upcasters::check`] verifies that every version from 1
/// up has its function.
#[derive(Debug, Clone, Default)]
pub struct Upcasters {
    functions: BTreeMap<(String, u32), UpcastFn>,
}

impl Upcasters {
    /// No upcasters: every event type is at version 1.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `function`, which turns `event_type` payloads of `from_version` into
    /// payloads of `from_version + 1`.
    pub fn register(
        &mut self,
        event_type: &str,
        from_version: u32,
        function: UpcastFn,
    ) -> Result<(), EventError> {
        check_name("event type", event_type)?;
        if from_version == 0 {
            return Err(EventError::UnknownSchemaVersion {
                event_type: event_type.to_string(),
                version: 0,
                current: self.current_version(event_type),
            });
        }
        let key = (event_type.to_string(), from_version);
        if self.functions.contains_key(&key) {
            return Err(EventError::DuplicateUpcaster {
                event_type: event_type.to_string(),
                version: from_version,
            });
        }
        self.functions.insert(key, function);
        Ok(())
    }

    /// The current (newest) schema version of `event_type`.
    pub fn current_version(&self, event_type: &str) -> u32 {
        self.functions
            .range((event_type.to_string(), 0)..=(event_type.to_string(), u32::MAX))
            .next_back()
            .map_or(1, |((_, v), _)| v + 1)
    }

    /// Checks that every event type has a function for each version from 1 to its current.
    pub fn check(&self) -> Result<(), EventError> {
        for (event_type, _) in self.functions.keys() {
            let current = self.current_version(event_type);
            for version in 1..current {
                if !self.functions.contains_key(&(event_type.clone(), version)) {
                    return Err(EventError::MissingUpcaster {
                        event_type: event_type.clone(),
                        version,
                        current,
                    });
                }
            }
        }
        Ok(())
    }

    /// `event` with its payload at the current version of its type.
    pub fn upcast(&self, mut event: EventEnvelope) -> Result<EventEnvelope, EventError> {
        let current = self.current_version(&event.event_type);
        if event.schema_version == 0 || event.schema_version > current {
            return Err(EventError::UnknownSchemaVersion {
                event_type: event.event_type,
                version: event.schema_version,
                current,
            });
        }
        while event.schema_version < current {
            let version = event.schema_version;
            let function = self
                .functions
                .get(&(event.event_type.clone(), version))
                .ok_or_else(|| EventError::MissingUpcaster {
                    event_type: event.event_type.clone(),
                    version,
                    current,
                })?;
            let payload = std::mem::take(&mut event.payload);
            event.payload = function(payload).map_err(|reason| EventError::Upcast {
                event_id: event.event_id,
                event_type: event.event_type.clone(),
                version,
                reason,
            })?;
            event.schema_version = version + 1;
        }
        Ok(event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn envelope(stream: &str, version: u64, event_type: &str, payload: Value) -> EventEnvelope {
        NewEvent::new(event_type, 1, "user:anna", payload)
            .with_correlation_id(format!("req-{version}"))
            .at(1_767_225_600_000_000 + version as i64)
            .into_envelope(stream, version, 0)
    }

    #[test]
    fn envelopes_round_trip_through_a_batch() {
        let mut events = vec![
            envelope(
                "loan-1",
                1,
                "LoanOpened",
                json!({"item": "drill", "n": [1, 2]}),
            ),
            envelope("loan-1", 2, "LoanReturned", json!({"late": false})),
            envelope("loan-2", 1, "LoanOpened", json!("text payload")),
        ];
        events[2].correlation_id = None;
        events[2].schema_version = 3;
        let batch = to_batch(&events).unwrap();
        assert_eq!(batch.schema(), events_schema());
        assert_eq!(batch.num_rows(), 3);
        assert_eq!(from_batch(&batch).unwrap(), events);
        // The same rows read back as SQL answers them: tags as plain strings.
        let plain = Schema::new(
            batch
                .schema()
                .fields()
                .iter()
                .map(|f| match f.data_type() {
                    DataType::Dictionary(_, _) => f.as_ref().clone().with_data_type(DataType::Utf8),
                    _ => f.as_ref().clone(),
                })
                .collect::<Vec<_>>(),
        );
        let columns = batch
            .columns()
            .iter()
            .zip(plain.fields())
            .map(|(c, f)| cast(c, f.data_type()).unwrap())
            .collect();
        let plain = RecordBatch::try_new(Arc::new(plain), columns).unwrap();
        assert_eq!(from_batch(&plain).unwrap(), events);
    }

    #[test]
    fn events_schema_follows_the_column_roles() {
        use crate::{ColumnRole, role_of};
        let schema = events_schema();
        let roles: Vec<_> = schema.fields().iter().map(|f| role_of(f)).collect();
        assert_eq!(roles[0], ColumnRole::Time);
        assert_eq!(&roles[1..3], &[ColumnRole::Tag, ColumnRole::Tag]);
        assert!(roles[3..].iter().all(|r| *r == ColumnRole::Field));
        for f in schema.fields().iter().skip(3) {
            assert!(crate::is_supported_field_type(f.data_type()), "{f}");
        }
    }

    #[test]
    fn broken_rows_are_reported_with_the_row() {
        let batch = to_batch(&[envelope("s", 1, "T", json!({}))]).unwrap();
        let mut columns = batch.columns().to_vec();
        columns[8] = Arc::new(StringArray::from(vec!["{oops"]));
        let broken = RecordBatch::try_new(batch.schema(), columns).unwrap();
        assert!(
            from_batch(&broken)
                .unwrap_err()
                .to_string()
                .contains("row 0: payload is not JSON")
        );
        let missing = batch.project(&[0, 1, 2, 3]).unwrap();
        assert_eq!(
            from_batch(&missing).unwrap_err().to_string(),
            "events table: missing column 'schema_version'"
        );
    }

    #[test]
    fn expected_versions() {
        assert!(ExpectedVersion::Any.check("s", 7).is_ok());
        assert!(ExpectedVersion::NoStream.check("s", 0).is_ok());
        assert!(ExpectedVersion::Exact(0).check("s", 0).is_ok());
        assert!(ExpectedVersion::Exact(3).check("s", 3).is_ok());
        let conflict = ExpectedVersion::Exact(2).check("loan-1", 3).unwrap_err();
        assert_eq!(
            (conflict.actual, conflict.expected),
            (3, ExpectedVersion::Exact(2))
        );
        assert_eq!(
            conflict.to_string(),
            "version conflict on stream 'loan-1': expected version 2, but it is at version 3"
        );
        assert_eq!(
            ExpectedVersion::NoStream
                .check("loan-1", 1)
                .unwrap_err()
                .to_string(),
            "version conflict on stream 'loan-1': expected no stream (version 0), but it is at version 1"
        );
    }

    fn v1_to_v2(mut p: Value) -> Result<Value, String> {
        let borrower = p
            .get("borrower")
            .and_then(Value::as_str)
            .ok_or("v1 LoanOpened has no borrower")?
            .to_string();
        p["borrower"] = json!({"badge": borrower});
        Ok(p)
    }

    fn v2_to_v3(mut p: Value) -> Result<Value, String> {
        p["due_days"] = json!(14);
        Ok(p)
    }

    #[test]
    fn upcasting_chains_functions_to_the_current_version() {
        let mut up = Upcasters::new();
        up.register("LoanOpened", 2, v2_to_v3).unwrap();
        assert_eq!(up.current_version("LoanOpened"), 3);
        assert_eq!(up.current_version("LoanReturned"), 1);
        assert_eq!(
            up.check().unwrap_err().to_string(),
            "no upcaster for event type 'LoanOpened' from schema version 1 (current 3)"
        );
        up.register("LoanOpened", 1, v1_to_v2).unwrap();
        up.check().unwrap();
        assert!(matches!(
            up.register("LoanOpened", 1, v1_to_v2),
            Err(EventError::DuplicateUpcaster { .. })
        ));

        let old = envelope(
            "loan-1",
            1,
            "LoanOpened",
            json!({"item": "drill", "borrower": "anna"}),
        );
        let new = up.upcast(old.clone()).unwrap();
        assert_eq!(new.schema_version, 3);
        assert_eq!(
            new.payload,
            json!({"item": "drill", "borrower": {"badge": "anna"}, "due_days": 14})
        );
        assert_eq!((new.event_id, new.version), (old.event_id, old.version));
        // At the current version nothing changes; other types are untouched.
        assert_eq!(up.upcast(new.clone()).unwrap(), new);
        let returned = envelope("loan-1", 2, "LoanReturned", json!({}));
        assert_eq!(up.upcast(returned.clone()).unwrap(), returned);

        let mut bad = old.clone();
        bad.payload = json!({"item": "drill"});
        assert!(
            up.upcast(bad)
                .unwrap_err()
                .to_string()
                .ends_with("from schema version 1: v1 LoanOpened has no borrower")
        );
        let mut future = old;
        future.schema_version = 4;
        assert_eq!(
            up.upcast(future).unwrap_err().to_string(),
            "event type 'LoanOpened' has schema version 4, but versions go from 1 to 3"
        );
    }

    #[test]
    fn new_events_are_checked() {
        let mut up = Upcasters::new();
        up.register("LoanOpened", 1, v1_to_v2).unwrap();
        assert!(
            NewEvent::new("LoanOpened", 2, "anna", json!({}))
                .validate(&up)
                .is_ok()
        );
        assert!(
            NewEvent::new("LoanOpened", 1, "anna", json!({}))
                .validate(&up)
                .is_ok()
        );
        assert!(
            NewEvent::new("LoanOpened", 3, "anna", json!({}))
                .validate(&up)
                .is_err()
        );
        assert!(
            NewEvent::new("LoanReturned", 0, "anna", json!({}))
                .validate(&up)
                .is_err()
        );
        assert_eq!(
            NewEvent::new("", 1, "anna", json!({}))
                .validate(&up)
                .unwrap_err()
                .to_string(),
            "invalid event type \"\": use 1-256 bytes without control characters"
        );
        assert!(NewEvent::new("T", 1, "", json!({})).validate(&up).is_err());
        assert!(validate_stream_id("loan-1").is_ok());
        assert!(validate_stream_id("a\nb").is_err());
        assert!(validate_stream_id(&"x".repeat(257)).is_err());
    }
}
