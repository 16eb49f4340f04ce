//! The bus log: `bus_events`, one row per published event, appended (WAL, fsync) before the
//! publisher is answered. Every event gets a position `seq` (1, 2, ... in the order of the
//! log), which subscriptions keep as their cursor and replays start from.

use arrow::array::{
    Array, ArrayRef, AsArray, Int64Array, RecordBatch, StringArray, StringDictionaryBuilder,
    TimestampMicrosecondArray,
};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Int32Type, SchemaRef, TimeUnit};
use civiclake_core::{CloudEvent, field_column, tag_column, time_column};
use serde_json::Value;
use std::sync::Arc;

/// The log table.
pub const EVENTS_TABLE: &str = "bus_events";

/// The extension attribute holding an event's partition key (CloudEvents' Partitioning
/// extension): events of one key reach each subscription in order.
pub const PARTITION_KEY: &str = "partitionkey";
/// The extension attribute carrying a correlation id across hops.
pub const CORRELATION_ID: &str = "correlationid";

/// An event as the log holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedEvent {
    /// Position in the log.
    pub seq: i64,
    /// When the bus took it (µs since the epoch).
    pub received_micros: i64,
    /// Who published it: `token:<name>`, `module:<name>`, `mqtt:<client>`,
    /// `mqtt-source:<name>` (a `[[mqtt.source]]`), `kafka:<topic>`.
    pub publisher: String,
    /// The version of the event type's schema it was validated against.
    pub schema_version: u32,
    /// The event.
    pub event: CloudEvent,
}

impl LoggedEvent {
    /// The partition key: the `partitionkey` extension, else the subject, else none (no
    /// order is promised between events without a key).
    pub fn partition_key(&self) -> Option<&str> {
        match self.event.extensions.get(PARTITION_KEY) {
            Some(Value::String(k)) => Some(k.as_str()),
            _ => self.event.subject.as_deref(),
        }
    }

    /// The correlation id: the `correlationid` extension, else the event's own id.
    pub fn correlation_id(&self) -> &str {
        match self.event.extensions.get(CORRELATION_ID) {
            Some(Value::String(c)) => c.as_str(),
            _ => &self.event.id,
        }
    }

    /// The time the log files it under: the event's `time` (the bus sets it to when it took
    /// the event when the publisher did not).
    pub fn time(&self) -> i64 {
        self.event.time.unwrap_or(self.received_micros)
    }
}

/// Schema of [`EVENTS_TABLE`]: `time` (the event's time, else when the bus took it), tags
/// `type`, `source`, `publisher`; fields `seq`, `id`, `subject`, `datacontenttype`,
/// `dataschema`, `data` (JSON text), `extensions` (JSON object text), `partitionkey`,
/// `correlationid`, `schema_version`, `received_us`.
pub fn events_schema() -> SchemaRef {
    Arc::new(arrow::datatypes::Schema::new(vec![
        time_column(),
        tag_column("type"),
        tag_column("source"),
        tag_column("publisher"),
        field_column("seq", DataType::Int64),
        field_column("id", DataType::Utf8),
        field_column("subject", DataType::Utf8),
        field_column("datacontenttype", DataType::Utf8),
        field_column("dataschema", DataType::Utf8),
        field_column("data", DataType::Utf8),
        field_column("extensions", DataType::Utf8),
        field_column(PARTITION_KEY, DataType::Utf8),
        field_column(CORRELATION_ID, DataType::Utf8),
        field_column("schema_version", DataType::Int64),
        field_column("received_us", DataType::Int64),
    ]))
}

/// Strings as a tag (dictionary) column.
pub(crate) fn tags<'a>(values: impl Iterator<Item = &'a str>) -> ArrayRef {
    let mut b = StringDictionaryBuilder::<Int32Type>::new();
    for v in values {
        b.append_value(v);
    }
    Arc::new(b.finish())
}

fn strings<'a>(values: impl Iterator<Item = Option<&'a str>>) -> ArrayRef {
    Arc::new(values.collect::<StringArray>())
}

/// The rows of [`EVENTS_TABLE`] for `events`.
pub fn to_batch(events: &[LoggedEvent]) -> Result<RecordBatch, arrow::error::ArrowError> {
    let data: Vec<Option<String>> = events
        .iter()
        .map(|e| e.event.data.as_ref().map(Value::to_string))
        .collect();
    let extensions: Vec<Option<String>> = events
        .iter()
        .map(|e| {
            (!e.event.extensions.is_empty()).then(|| {
                Value::Object(
                    e.event
                        .extensions
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                )
                .to_string()
            })
        })
        .collect();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(
            TimestampMicrosecondArray::from_iter_values(events.iter().map(LoggedEvent::time))
                .with_timezone("UTC"),
        ),
        tags(events.iter().map(|e| e.event.ty.as_str())),
        tags(events.iter().map(|e| e.event.source.as_str())),
        tags(events.iter().map(|e| e.publisher.as_str())),
        Arc::new(Int64Array::from_iter_values(events.iter().map(|e| e.seq))),
        strings(events.iter().map(|e| Some(e.event.id.as_str()))),
        strings(events.iter().map(|e| e.event.subject.as_deref())),
        strings(events.iter().map(|e| e.event.datacontenttype.as_deref())),
        strings(events.iter().map(|e| e.event.dataschema.as_deref())),
        strings(data.iter().map(Option::as_deref)),
        strings(extensions.iter().map(Option::as_deref)),
        strings(events.iter().map(LoggedEvent::partition_key)),
        strings(events.iter().map(|e| Some(e.correlation_id()))),
        Arc::new(Int64Array::from_iter_values(
            events.iter().map(|e| i64::from(e.schema_version)),
        )),
        Arc::new(Int64Array::from_iter_values(
            events.iter().map(|e| e.received_micros),
        )),
    ];
    RecordBatch::try_new(events_schema(), columns)
}

/// The columns [`from_batches`] needs, for `SELECT {LOG_COLUMNS} FROM bus_events ...`.
pub const LOG_COLUMNS: &str = "seq, received_us, publisher, schema_version, id, source, \"type\", subject, time, datacontenttype, dataschema, data, extensions";

/// A column of `batch` as text (tags are dictionaries), or an error naming it.
fn text_column(batch: &RecordBatch, name: &str) -> Result<StringArray, String> {
    let column = batch
        .column_by_name(name)
        .ok_or_else(|| format!("the log has no column {name}"))?;
    let column = cast(column, &DataType::Utf8).map_err(|e| format!("{name}: {e}"))?;
    Ok(column.as_string::<i32>().clone())
}

fn int_column(batch: &RecordBatch, name: &str) -> Result<Int64Array, String> {
    let column = batch
        .column_by_name(name)
        .ok_or_else(|| format!("the log has no column {name}"))?;
    let column = cast(column, &DataType::Int64).map_err(|e| format!("{name}: {e}"))?;
    Ok(column.as_primitive::<arrow::datatypes::Int64Type>().clone())
}

fn opt(a: &StringArray, i: usize) -> Option<String> {
    (!a.is_null(i)).then(|| a.value(i).to_string())
}

/// Events read back from the log with `SELECT {LOG_COLUMNS} ...`.
pub fn from_batches(batches: &[RecordBatch]) -> Result<Vec<LoggedEvent>, String> {
    let mut out = Vec::new();
    for batch in batches {
        let seq = int_column(batch, "seq")?;
        let received = int_column(batch, "received_us")?;
        let version = int_column(batch, "schema_version")?;
        let publisher = text_column(batch, "publisher")?;
        let id = text_column(batch, "id")?;
        let source = text_column(batch, "source")?;
        let ty = text_column(batch, "type")?;
        let subject = text_column(batch, "subject")?;
        let dct = text_column(batch, "datacontenttype")?;
        let dataschema = text_column(batch, "dataschema")?;
        let data = text_column(batch, "data")?;
        let extensions = text_column(batch, "extensions")?;
        let time_col = batch
            .column_by_name("time")
            .ok_or("the log has no column time")?;
        let time = cast(
            time_col,
            &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        )
        .map_err(|e| format!("time: {e}"))?;
        let time = time.as_primitive::<arrow::datatypes::TimestampMicrosecondType>();
        for i in 0..batch.num_rows() {
            let data_value = match opt(&data, i) {
                Some(text) => Some(
                    serde_json::from_str::<Value>(&text)
                        .map_err(|e| format!("event seq {}: data: {e}", seq.value(i)))?,
                ),
                None => None,
            };
            let ext = match opt(&extensions, i) {
                Some(text) => match serde_json::from_str::<Value>(&text) {
                    Ok(Value::Object(m)) => m.into_iter().collect(),
                    _ => return Err(format!("event seq {}: extensions", seq.value(i))),
                },
                None => Default::default(),
            };
            let received_micros = received.value(i);
            let t = time.value(i);
            out.push(LoggedEvent {
                seq: seq.value(i),
                received_micros,
                publisher: publisher.value(i).to_string(),
                schema_version: u32::try_from(version.value(i)).unwrap_or(0),
                event: CloudEvent {
                    id: id.value(i).to_string(),
                    source: source.value(i).to_string(),
                    ty: ty.value(i).to_string(),
                    subject: opt(&subject, i),
                    time: Some(t),
                    datacontenttype: opt(&dct, i),
                    dataschema: opt(&dataschema, i),
                    data: data_value,
                    extensions: ext,
                },
            });
        }
    }
    out.sort_by_key(|e| e.seq);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn logged(seq: i64) -> LoggedEvent {
        LoggedEvent {
            seq,
            received_micros: 1_700_000_000_000_000 + seq,
            publisher: "token:school".into(),
            schema_version: 2,
            event: CloudEvent::new(format!("e{seq}"), "/school/canteen", "it.prato.meal")
                .with_subject("school-7")
                .with_data(json!({"meals": seq * 10, "name": "Mazzoni"}))
                .with_extension(CORRELATION_ID, json!("corr-1")),
        }
    }

    #[test]
    fn events_round_trip_through_a_batch() {
        let mut a = logged(1);
        a.event.time = Some(1_600_000_000_000_000);
        let mut b = logged(2);
        b.event.time = Some(b.received_micros);
        let batch = to_batch(&[b.clone(), a.clone()]).unwrap();
        assert_eq!(batch.num_rows(), 2);
        let back = from_batches(&[batch]).unwrap();
        assert_eq!(back, vec![a, b]);
    }

    #[test]
    fn partition_key_and_correlation() {
        let mut e = logged(3);
        assert_eq!(e.partition_key(), Some("school-7"));
        assert_eq!(e.correlation_id(), "corr-1");
        e.event
            .extensions
            .insert(PARTITION_KEY.into(), json!("pupil-9"));
        e.event.extensions.remove(CORRELATION_ID);
        assert_eq!(e.partition_key(), Some("pupil-9"));
        assert_eq!(e.correlation_id(), "e3");
        e.event.subject = None;
        e.event.extensions.clear();
        assert_eq!(e.partition_key(), None);
    }
}
