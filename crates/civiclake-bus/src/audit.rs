//! The audit trail: `bus_deliveries`, one row per delivery attempt, and `bus_dead_letters`,
//! one row per event a subscription gave up on.

use crate::log::tags;
use arrow::array::{
    ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Schema, SchemaRef};
use civiclake_core::{field_column, tag_column, time_column};
use std::sync::Arc;

/// Every delivery attempt.
pub const DELIVERIES_TABLE: &str = "bus_deliveries";
/// Events a subscription gave up on.
pub const DEAD_LETTERS_TABLE: &str = "bus_dead_letters";

/// How an attempt is filed in `bus_deliveries.status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// The target took the event.
    Delivered,
    /// It failed and will be tried again.
    Failed,
    /// It failed for the last time: the event is a dead letter.
    DeadLetter,
}

impl Status {
    /// The word in the table.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Delivered => "delivered",
            Status::Failed => "failed",
            Status::DeadLetter => "dead_letter",
        }
    }
}

/// One attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryRecord {
    /// When the attempt started (µs).
    pub time: i64,
    /// The subscription.
    pub subscription: String,
    /// Its target, described.
    pub target: String,
    /// How it went.
    pub status: Status,
    /// The event's position in the log.
    pub seq: i64,
    /// The event's id.
    pub event_id: String,
    /// The event's type.
    pub event_type: String,
    /// The correlation id.
    pub correlation_id: String,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// The target's status code.
    pub status_code: Option<u16>,
    /// From the start of the attempt to its end, ms.
    pub latency_ms: f64,
    /// What went wrong.
    pub error: Option<String>,
    /// The replay it belongs to.
    pub replay: Option<String>,
}

/// Schema of [`DELIVERIES_TABLE`].
pub fn deliveries_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        time_column(),
        tag_column("subscription"),
        tag_column("target"),
        tag_column("status"),
        field_column("seq", DataType::Int64),
        field_column("event_id", DataType::Utf8),
        field_column("type", DataType::Utf8),
        field_column("correlationid", DataType::Utf8),
        field_column("attempt", DataType::Int64),
        field_column("status_code", DataType::Int64),
        field_column("latency_ms", DataType::Float64),
        field_column("error", DataType::Utf8),
        field_column("replay", DataType::Utf8),
    ]))
}

/// The rows of [`DELIVERIES_TABLE`].
pub fn deliveries_batch(
    records: &[DeliveryRecord],
) -> Result<RecordBatch, arrow::error::ArrowError> {
    let columns: Vec<ArrayRef> = vec![
        Arc::new(
            TimestampMicrosecondArray::from_iter_values(records.iter().map(|r| r.time))
                .with_timezone("UTC"),
        ),
        tags(records.iter().map(|r| r.subscription.as_str())),
        tags(records.iter().map(|r| r.target.as_str())),
        tags(records.iter().map(|r| r.status.as_str())),
        Arc::new(Int64Array::from_iter_values(records.iter().map(|r| r.seq))),
        Arc::new(
            records
                .iter()
                .map(|r| Some(r.event_id.as_str()))
                .collect::<StringArray>(),
        ),
        Arc::new(
            records
                .iter()
                .map(|r| Some(r.event_type.as_str()))
                .collect::<StringArray>(),
        ),
        Arc::new(
            records
                .iter()
                .map(|r| Some(r.correlation_id.as_str()))
                .collect::<StringArray>(),
        ),
        Arc::new(Int64Array::from_iter_values(
            records.iter().map(|r| i64::from(r.attempt)),
        )),
        Arc::new(
            records
                .iter()
                .map(|r| r.status_code.map(i64::from))
                .collect::<Int64Array>(),
        ),
        Arc::new(Float64Array::from_iter_values(
            records.iter().map(|r| r.latency_ms),
        )),
        Arc::new(
            records
                .iter()
                .map(|r| r.error.as_deref())
                .collect::<StringArray>(),
        ),
        Arc::new(
            records
                .iter()
                .map(|r| r.replay.as_deref())
                .collect::<StringArray>(),
        ),
    ];
    RecordBatch::try_new(deliveries_schema(), columns)
}

/// One dead letter.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    /// When the subscription gave up (µs).
    pub time: i64,
    /// The subscription.
    pub subscription: String,
    /// Its target, described.
    pub target: String,
    /// The event's position in the log (the event itself stays in `bus_events`).
    pub seq: i64,
    /// The event's id.
    pub event_id: String,
    /// The event's type.
    pub event_type: String,
    /// The event's source.
    pub source: String,
    /// The correlation id.
    pub correlation_id: String,
    /// Attempts made.
    pub attempts: u32,
    /// The last status code.
    pub status_code: Option<u16>,
    /// The last error.
    pub error: String,
}

/// Schema of [`DEAD_LETTERS_TABLE`].
pub fn dead_letters_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        time_column(),
        tag_column("subscription"),
        tag_column("target"),
        field_column("seq", DataType::Int64),
        field_column("event_id", DataType::Utf8),
        field_column("type", DataType::Utf8),
        field_column("source", DataType::Utf8),
        field_column("correlationid", DataType::Utf8),
        field_column("attempts", DataType::Int64),
        field_column("status_code", DataType::Int64),
        field_column("error", DataType::Utf8),
    ]))
}

/// The row of [`DEAD_LETTERS_TABLE`] for `d`.
pub fn dead_letter_batch(d: &DeadLetter) -> Result<RecordBatch, arrow::error::ArrowError> {
    let s = |v: &str| -> ArrayRef { Arc::new(StringArray::from(vec![Some(v)])) };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(TimestampMicrosecondArray::from(vec![d.time]).with_timezone("UTC")),
        tags(std::iter::once(d.subscription.as_str())),
        tags(std::iter::once(d.target.as_str())),
        Arc::new(Int64Array::from(vec![d.seq])),
        s(&d.event_id),
        s(&d.event_type),
        s(&d.source),
        s(&d.correlation_id),
        Arc::new(Int64Array::from(vec![i64::from(d.attempts)])),
        Arc::new(Int64Array::from(vec![d.status_code.map(i64::from)])),
        s(&d.error),
    ];
    RecordBatch::try_new(dead_letters_schema(), columns)
}

/// `s` as a SQL string literal.
pub fn sql_string(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// SQL listing `subscription`'s dead letters, newest first, with the time each was delivered
/// since (NULL while it was not): `time, seq, event_id, type, source, attempts, status_code,
/// error, delivered_since`.
pub fn dead_letters_sql(subscription: &str, limit: u32) -> String {
    let n = sql_string(subscription);
    format!(
        "SELECT d.time, d.seq, d.event_id, d.type, d.source, d.attempts, d.status_code, d.error, \
         max(x.time) AS delivered_since \
         FROM {DEAD_LETTERS_TABLE} d LEFT JOIN {DELIVERIES_TABLE} x \
           ON x.subscription = d.subscription AND x.seq = d.seq \
           AND x.status = 'delivered' AND x.time > d.time \
         WHERE d.subscription = {n} \
         GROUP BY d.time, d.seq, d.event_id, d.type, d.source, d.attempts, d.status_code, d.error \
         ORDER BY d.time DESC LIMIT {limit}"
    )
}

/// SQL listing `subscription`'s latest delivery attempts, newest first: `time, seq,
/// event_id, type, status, attempt, status_code, latency_ms, error, replay, correlationid`.
pub fn deliveries_sql(subscription: &str, limit: u32) -> String {
    format!(
        "SELECT time, seq, event_id, \"type\", status, attempt, status_code, latency_ms, error, replay, correlationid \
         FROM {DELIVERIES_TABLE} WHERE subscription = {} ORDER BY time DESC, attempt DESC LIMIT {limit}",
        sql_string(subscription)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_have_their_schemas() {
        let r = DeliveryRecord {
            time: 1,
            subscription: "s".into(),
            target: "webhook http://127.0.0.1/".into(),
            status: Status::Failed,
            seq: 7,
            event_id: "e".into(),
            event_type: "t".into(),
            correlation_id: "c".into(),
            attempt: 2,
            status_code: Some(503),
            latency_ms: 1.5,
            error: Some("HTTP 503".into()),
            replay: None,
        };
        let b = deliveries_batch(&[r.clone(), r]).unwrap();
        assert_eq!(b.num_rows(), 2);
        assert_eq!(b.schema(), deliveries_schema());
        let d = DeadLetter {
            time: 1,
            subscription: "s".into(),
            target: "t".into(),
            seq: 7,
            event_id: "e".into(),
            event_type: "t".into(),
            source: "/x".into(),
            correlation_id: "c".into(),
            attempts: 8,
            status_code: None,
            error: "cannot connect".into(),
        };
        let b = dead_letter_batch(&d).unwrap();
        assert_eq!((b.num_rows(), b.num_columns()), (1, 11));
        assert_eq!(Status::DeadLetter.as_str(), "dead_letter");
    }
}
