//! The contract between message sources (the embedded MQTT broker, subscriptions to external
//! MQTT brokers, Kafka consumers) and the ingest service that turns their messages into rows.
//!
//! A source hands each message it receives to a [`MessageSink`] and acknowledges it to its
//! broker (MQTT PUBACK, Kafka offset) only after [`MessageSink::deliver`] returned `Ok`: by
//! then every message is durable, either as rows in the WAL of its table or as a record in
//! the `_dead_letters` table with the reason it could not be stored. An `Err` means nothing
//! of the call was stored and the source must not acknowledge (the broker redelivers).

use async_trait::async_trait;
use std::fmt;

/// Where a message came from, as it is named in `_dead_letters.source` and in metrics.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SourceKind {
    /// The broker embedded in `civiclake serve`.
    EmbeddedMqtt,
    /// A `[[mqtt.source]]` subscription to an external broker, by its configured name.
    ExternalMqtt(String),
    /// A `[[kafka.source]]` consumer, by its configured name.
    Kafka(String),
}

impl fmt::Display for SourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceKind::EmbeddedMqtt => f.write_str("mqtt:embedded"),
            SourceKind::ExternalMqtt(name) => write!(f, "mqtt:{name}"),
            SourceKind::Kafka(name) => write!(f, "kafka:{name}"),
        }
    }
}

/// One message as received from a broker or a log.
#[derive(Debug, Clone, PartialEq)]
pub struct InboundMessage {
    /// The source.
    pub source: SourceKind,
    /// The MQTT topic or the Kafka topic.
    pub topic: String,
    /// Kafka partition.
    pub partition: Option<i32>,
    /// Kafka offset.
    pub offset: Option<i64>,
    /// Kafka message key.
    pub key: Option<Vec<u8>>,
    /// The payload, as received.
    pub payload: Vec<u8>,
    /// MQTT 5 content type, or a Kafka `content-type` header.
    pub content_type: Option<String>,
    /// MQTT 5 user properties or Kafka headers, in order.
    pub headers: Vec<(String, Vec<u8>)>,
    /// When civiclake received it, microseconds since the Unix epoch (UTC).
    pub received_micros: i64,
    /// Who published it: the token id of an authenticated MQTT client of the embedded broker;
    /// `None` for external sources (their configuration is the authority) and anonymous
    /// clients of a broker running without authentication.
    pub publisher: Option<String>,
}

impl InboundMessage {
    /// A message with only source, topic and payload set, received now.
    pub fn new(source: SourceKind, topic: impl Into<String>, payload: impl Into<Vec<u8>>) -> Self {
        InboundMessage {
            source,
            topic: topic.into(),
            partition: None,
            offset: None,
            key: None,
            payload: payload.into(),
            content_type: None,
            headers: Vec::new(),
            received_micros: chrono::Utc::now().timestamp_micros(),
            publisher: None,
        }
    }
}

/// What became of the messages of one [`MessageSink::deliver`] call. Both kinds are durable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeliveryReport {
    /// Messages whose rows are in the WAL.
    pub stored: usize,
    /// Rows written, over all stored messages.
    pub rows: usize,
    /// Messages recorded in `_dead_letters` instead.
    pub dead_lettered: usize,
    /// Messages that matched no route and were left alone (pub/sub traffic such as `bus/...`
    /// or `devices/...` on the embedded broker is not data for the lake).
    pub ignored: usize,
}

/// Why a delivery stored nothing; the source must not acknowledge and should retry later.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IngestError {
    /// The WAL or the buffer is saturated: slow down and retry after the given delay.
    #[error("ingest is saturated ({reason}); retry in {retry_after_ms} ms")]
    Busy {
        /// What is full.
        reason: String,
        /// A suggested delay before retrying.
        retry_after_ms: u64,
    },
    /// Storage failed or the server is shutting down.
    #[error("ingest is unavailable: {0}")]
    Unavailable(String),
}

/// The receiving end of every message source.
#[async_trait]
pub trait MessageSink: Send + Sync + fmt::Debug {
    /// Stores `messages` (in order): rows into their tables, undecodable or unmappable messages
    /// into `_dead_letters`. Returns once everything is durable in the WAL.
    async fn deliver(&self, messages: Vec<InboundMessage>) -> Result<DeliveryReport, IngestError>;
}
