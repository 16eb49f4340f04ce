//! Delivery targets. A target takes one event for one subscription and says how the attempt
//! went; the delivery engine decides about retries, dead letters and the audit record. New
//! kinds of target (a SOAP endpoint, a ModI-signed REST call) implement [`Target`].
//!
//! - [`Webhook`]: one HTTP POST per event, CloudEvents structured JSON.
//! - [`Mqtt`]: a topic of the embedded MQTT broker, CloudEvents structured JSON.
//! - [`Kafka`]: one record per event on a Kafka topic, CloudEvents binary mode
//!   ([`kafka_record`] says which header carries what); producers are shared through
//!   [`KafkaProducers`].

use crate::log::LoggedEvent;
use crate::subscription::TargetSpec;
use async_trait::async_trait;
use bytes::Bytes;
use civiclake_core::CloudEvent;
use parking_lot::Mutex;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a target is given for one attempt.
#[derive(Debug)]
pub struct Outgoing<'a> {
    /// The subscription delivering.
    pub subscription: &'a str,
    /// The event as the subscription delivers it (after its transformation).
    pub event: &'a CloudEvent,
    /// The event as the log holds it.
    pub logged: &'a LoggedEvent,
    /// The same for every attempt and replay of this event to this subscription.
    pub idempotency_key: &'a str,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// The replay this delivery belongs to, if any.
    pub replay: Option<&'a str>,
}

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The target took the event.
    Delivered,
    /// A failure that may pass (timeouts, 5xx, 429, connection refused): try again.
    Retry,
    /// A failure that will not pass by trying again (e.g. 400, 404): dead-letter now.
    Reject,
}

/// One attempt's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// The outcome.
    pub outcome: Outcome,
    /// The target's status code (HTTP), when it answered.
    pub status_code: Option<u16>,
    /// What went wrong, for the audit trail and the dead letter.
    pub error: Option<String>,
    /// A wait the target asked for (HTTP `Retry-After`).
    pub retry_after: Option<Duration>,
}

impl Attempt {
    fn delivered(status_code: Option<u16>) -> Self {
        Self {
            outcome: Outcome::Delivered,
            status_code,
            error: None,
            retry_after: None,
        }
    }
}

/// A place events are delivered to.
#[async_trait]
pub trait Target: Send + Sync + std::fmt::Debug {
    /// For the audit trail: `webhook http://...`.
    fn describe(&self) -> String;
    /// One attempt to deliver.
    async fn deliver(&self, out: &Outgoing<'_>) -> Attempt;
}

/// Publishes to civiclake's embedded MQTT broker (provided by the server).
pub trait MessagePublisher: Send + Sync + std::fmt::Debug {
    /// Publishes `payload` on `topic`; an error says why it could not.
    fn publish(&self, topic: &str, payload: Bytes) -> Result<(), String>;
}

/// Builds the target of a subscription. A Kafka target takes its producer from `kafka`
/// (creating it the first time its brokers and options are seen).
pub fn build_target(
    spec: &TargetSpec,
    http: &reqwest::Client,
    mqtt: Option<&Arc<dyn MessagePublisher>>,
    kafka: &KafkaProducers,
) -> Result<Arc<dyn Target>, String> {
    match spec {
        TargetSpec::Webhook {
            url,
            headers,
            timeout_ms,
        } => {
            let mut map = http::HeaderMap::new();
            for (name, value) in headers {
                let name = http::HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| format!("{name:?} is not a header name"))?;
                let value = http::HeaderValue::from_str(value)
                    .map_err(|_| format!("the value of header {name} is not valid"))?;
                map.insert(name, value);
            }
            Ok(Arc::new(Webhook {
                url: url.clone(),
                headers: map,
                timeout: Duration::from_millis(*timeout_ms),
                client: http.clone(),
            }))
        }
        TargetSpec::Mqtt { topic } => {
            let publisher = mqtt
                .cloned()
                .ok_or("MQTT targets need the embedded MQTT broker (mqtt_addr is off)")?;
            Ok(Arc::new(Mqtt {
                topic: topic.clone(),
                publisher,
            }))
        }
        TargetSpec::Kafka {
            brokers,
            topic,
            client_options,
            timeout_ms,
        } => {
            let key = ProducerKey::new(brokers, client_options, *timeout_ms);
            let producer = kafka.get(&key)?;
            Ok(Arc::new(Kafka {
                topic: topic.clone(),
                timeout: Duration::from_millis(*timeout_ms),
                producers: kafka.clone(),
                key,
                producer: Mutex::new(producer),
            }))
        }
    }
}

/// An HTTP endpoint: one POST per event, CloudEvents structured JSON.
#[derive(Debug)]
pub struct Webhook {
    url: String,
    headers: http::HeaderMap,
    timeout: Duration,
    client: reqwest::Client,
}

/// Longest part of an error answer's body kept in the audit trail.
const ERROR_BODY_CHARS: usize = 300;

/// Statuses worth trying again: a timeout, a conflict that may clear, too early, too many
/// requests, and every 5xx.
fn retryable(status: u16) -> bool {
    matches!(status, 408 | 409 | 425 | 429) || status >= 500
}

#[async_trait]
impl Target for Webhook {
    fn describe(&self) -> String {
        format!("webhook {}", self.url)
    }

    async fn deliver(&self, out: &Outgoing<'_>) -> Attempt {
        let body = out.event.to_json().to_string();
        let mut request = self
            .client
            .post(&self.url)
            .timeout(self.timeout)
            .headers(self.headers.clone())
            .header(http::header::CONTENT_TYPE, "application/cloudevents+json")
            .header("Idempotency-Key", out.idempotency_key)
            .header("Civiclake-Subscription", out.subscription)
            .header("Civiclake-Attempt", out.attempt.to_string())
            .header("Civiclake-Seq", out.logged.seq.to_string());
        if let Some(replay) = out.replay {
            request = request.header("Civiclake-Replay", replay);
        }
        match request.body(body).send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                if response.status().is_success() {
                    // Read to the end, so the connection is kept for the next event.
                    let _ = response.bytes().await;
                    return Attempt::delivered(Some(status));
                }
                let retry_after = response
                    .headers()
                    .get(http::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                let text = response.text().await.unwrap_or_default();
                let text: String = text.chars().take(ERROR_BODY_CHARS).collect();
                Attempt {
                    outcome: if retryable(status) {
                        Outcome::Retry
                    } else {
                        Outcome::Reject
                    },
                    status_code: Some(status),
                    error: Some(if text.trim().is_empty() {
                        format!("HTTP {status}")
                    } else {
                        format!("HTTP {status}: {}", text.trim())
                    }),
                    retry_after,
                }
            }
            Err(e) => Attempt {
                outcome: Outcome::Retry,
                status_code: None,
                error: Some(if e.is_timeout() {
                    format!("no answer within {} ms", self.timeout.as_millis())
                } else if e.is_connect() {
                    format!("cannot connect: {}", error_chain(&e))
                } else {
                    error_chain(&e)
                }),
                retry_after: None,
            },
        }
    }
}

/// An error with its causes, `a: b: c`.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

/// A topic of the embedded MQTT broker.
#[derive(Debug)]
pub struct Mqtt {
    topic: String,
    publisher: Arc<dyn MessagePublisher>,
}

#[async_trait]
impl Target for Mqtt {
    fn describe(&self) -> String {
        format!("mqtt {}", self.topic)
    }

    async fn deliver(&self, out: &Outgoing<'_>) -> Attempt {
        let payload = Bytes::from(out.event.to_json().to_string());
        match self.publisher.publish(&self.topic, payload) {
            Ok(()) => Attempt::delivered(None),
            Err(e) => Attempt {
                outcome: Outcome::Retry,
                status_code: None,
                error: Some(e),
                retry_after: None,
            },
        }
    }
}

// ---- Kafka -------------------------------------------------------------------------------

/// librdkafka settings a Kafka target sets itself (brokers, `acks=all`, idempotence, the
/// delivery timeout, no transactions); a target's `client_options` may not set them.
pub const KAFKA_RESERVED_OPTIONS: [&str; 8] = [
    "bootstrap.servers",
    "metadata.broker.list",
    "acks",
    "request.required.acks",
    "enable.idempotence",
    "message.timeout.ms",
    "delivery.timeout.ms",
    "transactional.id",
];

/// How long a producer no target uses is kept (a subscription validated, then started; a
/// worker restarted by an update or a replay).
const IDLE_PRODUCER: Duration = Duration::from_secs(300);

/// Checks the settings of a Kafka target (without contacting the brokers): `brokers` a list
/// of `host:port`, `topic` a legal Kafka topic name, no reserved client option, a timeout of
/// 100 ms to 5 minutes.
pub fn check_kafka_target(
    brokers: &str,
    topic: &str,
    client_options: &BTreeMap<String, String>,
    timeout_ms: u64,
) -> Result<(), String> {
    if brokers.trim().is_empty() {
        return Err("target.brokers: give the brokers as host:port[,host:port...]".into());
    }
    for broker in brokers.split(',').map(str::trim) {
        let ok = broker.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty()
                && !host.contains(|c: char| c.is_whitespace() || c == '/')
                && port.parse::<u16>().is_ok_and(|p| p > 0)
        });
        if !ok {
            return Err(format!(
                "target.brokers: {broker:?} is not host:port (brokers are host:port[,host:port...])"
            ));
        }
    }
    if !valid_kafka_topic(topic) {
        return Err(format!(
            "target.topic {topic:?}: a Kafka topic name is 1-249 letters, digits, '.', '_' or '-'"
        ));
    }
    for key in client_options.keys() {
        if KAFKA_RESERVED_OPTIONS.contains(&key.trim()) {
            return Err(format!(
                "target.client_options: '{key}' is set by civiclake (brokers come from target.brokers, the timeout from target.timeout_ms; records are sent with acks=all by an idempotent producer)"
            ));
        }
        if key.trim().is_empty() {
            return Err("target.client_options: an option has an empty name".into());
        }
    }
    if !(100..=300_000).contains(&timeout_ms) {
        return Err(format!(
            "target.timeout_ms must be 100 to 300000, not {timeout_ms}"
        ));
    }
    Ok(())
}

/// Whether `topic` is a legal Kafka topic name.
fn valid_kafka_topic(topic: &str) -> bool {
    !topic.is_empty()
        && topic.len() <= 249
        && topic != "."
        && topic != ".."
        && topic
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// Whether a media type is JSON (`application/json`, `text/json`, `...+json`).
fn is_json_type(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json" || essence == "text/json" || essence.ends_with("+json")
}

/// One delivery as a Kafka record in the CloudEvents binary mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaRecord {
    /// The record key: the event's `partitionkey` extension (a number or boolean as its JSON
    /// text), else its `subject`, else its `id` — the order the bus keeps per partition key
    /// is then the order of one Kafka partition.
    pub key: String,
    /// The value: the event's data as JSON, or as the text itself when `data` is a string
    /// and the content type is not JSON (e.g. XML); empty when the event has no data.
    pub value: Vec<u8>,
    /// The headers, in order: `ce_specversion`, `ce_id`, `ce_source`, `ce_type`, then when
    /// present `ce_subject`, `ce_time` (RFC 3339), `ce_dataschema`, `ce_<name>` per extension;
    /// `content-type` (the `datacontenttype`, default `application/json`);
    /// `idempotency-key`, `civiclake-subscription`, `civiclake-attempt`, `civiclake-seq` and,
    /// for a replay or redelivery, `civiclake-replay`.
    pub headers: Vec<(String, String)>,
}

/// The Kafka record of a delivery (of `out.event`, the event as the subscription delivers
/// it).
pub fn kafka_record(out: &Outgoing<'_>) -> KafkaRecord {
    let e = out.event;
    let mut headers: Vec<(String, String)> = vec![
        ("ce_specversion".into(), civiclake_core::SPEC_VERSION.into()),
        ("ce_id".into(), e.id.clone()),
        ("ce_source".into(), e.source.clone()),
        ("ce_type".into(), e.ty.clone()),
    ];
    if let Some(subject) = &e.subject {
        headers.push(("ce_subject".into(), subject.clone()));
    }
    if let Some(time) = e.time.and_then(chrono::DateTime::from_timestamp_micros) {
        headers.push((
            "ce_time".into(),
            time.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        ));
    }
    if let Some(schema) = &e.dataschema {
        headers.push(("ce_dataschema".into(), schema.clone()));
    }
    for (name, value) in &e.extensions {
        headers.push((format!("ce_{name}"), text_of(value)));
    }
    let content_type = e
        .datacontenttype
        .clone()
        .unwrap_or_else(|| civiclake_core::JSON_CONTENT_TYPE.to_string());
    let value = match &e.data {
        None => Vec::new(),
        Some(Value::String(text)) if !is_json_type(&content_type) => text.as_bytes().to_vec(),
        Some(data) => data.to_string().into_bytes(),
    };
    headers.push(("content-type".into(), content_type));
    headers.push(("idempotency-key".into(), out.idempotency_key.to_string()));
    headers.push((
        "civiclake-subscription".into(),
        out.subscription.to_string(),
    ));
    headers.push(("civiclake-attempt".into(), out.attempt.to_string()));
    headers.push(("civiclake-seq".into(), out.logged.seq.to_string()));
    if let Some(replay) = out.replay {
        headers.push(("civiclake-replay".into(), replay.to_string()));
    }
    let key = match e.extensions.get(crate::log::PARTITION_KEY) {
        Some(k) => text_of(k),
        None => e.subject.clone().unwrap_or_else(|| e.id.clone()),
    };
    KafkaRecord {
        key,
        value,
        headers,
    }
}

/// An extension's value as header text: a string as it is, a number or boolean as JSON.
fn text_of(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Whether a Kafka error is one that trying again will not fix: the record is too large or
/// invalid, the topic name is invalid, the client is not authorised, the settings are wrong.
/// Everything else (timeouts, transport, an unknown topic or partition while the cluster
/// creates it, a full queue, a leader election) is retried.
pub fn kafka_error_is_final(code: Option<RDKafkaErrorCode>) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        code,
        Some(
            C::MessageSizeTooLarge
                | C::InvalidMessageSize
                | C::MessageBatchTooLarge
                | C::InvalidRecord
                | C::InvalidTopic
                | C::InvalidTimestamp
                | C::InvalidRequiredAcks
                | C::UnsupportedForMessageFormat
                | C::PolicyViolation
                | C::TopicAuthorizationFailed
                | C::ClusterAuthorizationFailed
                | C::TransactionalIdAuthorizationFailed
                | C::InvalidArgument
        )
    )
}

/// A librdkafka log line through `tracing` at the matching level; `client` names the
/// client (a source's name, a producer's brokers), `what` its kind.
pub fn log_librdkafka(
    level: rdkafka::config::RDKafkaLogLevel,
    what: &str,
    client: &str,
    facility: &str,
    message: &str,
) {
    use rdkafka::config::RDKafkaLogLevel as L;
    match level {
        L::Emerg | L::Alert | L::Critical | L::Error => {
            tracing::error!(client, facility, "{what}: {message}");
        }
        L::Warning => tracing::warn!(client, facility, "{what}: {message}"),
        L::Notice | L::Info => tracing::info!(client, facility, "{what}: {message}"),
        L::Debug => tracing::debug!(client, facility, "{what}: {message}"),
    }
}

/// The producer context: librdkafka's logs and client errors through `tracing`.
struct ProducerContext {
    brokers: String,
}

impl rdkafka::client::ClientContext for ProducerContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        log_librdkafka(level, "bus Kafka producer", &self.brokers, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(brokers = %self.brokers, error = %error, reason, "bus Kafka producer error");
    }
}

type BusProducer = FutureProducer<ProducerContext>;

/// What tells producers apart: brokers, client options and the delivery timeout (librdkafka's
/// `message.timeout.ms` is a setting of the producer).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ProducerKey {
    brokers: String,
    options: BTreeMap<String, String>,
    timeout_ms: u64,
}

impl ProducerKey {
    fn new(brokers: &str, options: &BTreeMap<String, String>, timeout_ms: u64) -> Self {
        ProducerKey {
            brokers: brokers
                .split(',')
                .map(str::trim)
                .filter(|b| !b.is_empty())
                .collect::<Vec<_>>()
                .join(","),
            options: options.clone(),
            timeout_ms,
        }
    }

    fn create(&self) -> Result<BusProducer, String> {
        let mut config = ClientConfig::new();
        config.set("client.id", "civiclake-bus");
        for (k, v) in &self.options {
            config.set(k.trim(), v);
        }
        config
            .set("bootstrap.servers", &self.brokers)
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("message.timeout.ms", self.timeout_ms.to_string());
        config
            .create_with_context(ProducerContext {
                brokers: self.brokers.clone(),
            })
            .map_err(|e| format!("Kafka producer for {}: {e}", self.brokers))
    }
}

struct CachedProducer {
    producer: Arc<BusProducer>,
    handed_out: Instant,
}

/// The Kafka producers of the bus's Kafka targets, shared: one per brokers, client options
/// and timeout, made the first time a target needs it (a producer holds connections and
/// threads; building a target to check a subscription, then again to start its worker, reuses
/// it). A producer no target holds is let go after five minutes.
#[derive(Clone, Default)]
pub struct KafkaProducers {
    cache: Arc<Mutex<HashMap<ProducerKey, CachedProducer>>>,
}

impl std::fmt::Debug for KafkaProducers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaProducers")
            .field("producers", &self.len())
            .finish()
    }
}

impl KafkaProducers {
    /// Producers held now.
    pub fn len(&self) -> usize {
        self.cache.lock().len()
    }

    /// Whether no producer is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn get(&self, key: &ProducerKey) -> Result<Arc<BusProducer>, String> {
        let mut cache = self.cache.lock();
        let mut idle = Vec::new();
        cache.retain(|_, c| {
            let keep = Arc::strong_count(&c.producer) > 1 || c.handed_out.elapsed() < IDLE_PRODUCER;
            if !keep {
                idle.push(c.producer.clone());
            }
            keep
        });
        let producer = match cache.get_mut(key) {
            Some(c) => {
                c.handed_out = Instant::now();
                c.producer.clone()
            }
            None => {
                let producer = Arc::new(key.create()?);
                cache.insert(
                    key.clone(),
                    CachedProducer {
                        producer: producer.clone(),
                        handed_out: Instant::now(),
                    },
                );
                producer
            }
        };
        drop(cache);
        idle.into_iter().for_each(release);
        Ok(producer)
    }

    /// A new producer in place of `failed` (one that hit a fatal error), unless another
    /// target replaced it already.
    fn replace(
        &self,
        key: &ProducerKey,
        failed: &Arc<BusProducer>,
    ) -> Result<Arc<BusProducer>, String> {
        let removed = {
            let mut cache = self.cache.lock();
            match cache.get(key) {
                Some(c) if !Arc::ptr_eq(&c.producer, failed) => None,
                _ => cache.remove(key),
            }
        };
        if let Some(c) = removed {
            release(c.producer);
        }
        self.get(key)
    }

    /// Lets every producer go (waiting, off the async threads, for librdkafka to close them).
    pub async fn close(&self) {
        let all: Vec<Arc<BusProducer>> =
            self.cache.lock().drain().map(|(_, c)| c.producer).collect();
        if all.is_empty() {
            return;
        }
        let _ = tokio::task::spawn_blocking(move || drop(all)).await;
    }
}

/// Drops a producer; the last handle's drop (a flush of up to 500 ms, joining its thread)
/// runs off the async threads.
fn release(producer: Arc<BusProducer>) {
    if Arc::strong_count(&producer) == 1
        && let Ok(runtime) = tokio::runtime::Handle::try_current()
    {
        runtime.spawn_blocking(move || drop(producer));
    }
}

/// A Kafka topic: one record per event, CloudEvents binary mode ([`kafka_record`]), sent
/// with `acks=all` by an idempotent producer; delivered once the brokers acknowledge it.
pub struct Kafka {
    topic: String,
    timeout: Duration,
    producers: KafkaProducers,
    key: ProducerKey,
    producer: Mutex<Arc<BusProducer>>,
}

impl std::fmt::Debug for Kafka {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kafka")
            .field("brokers", &self.key.brokers)
            .field("topic", &self.topic)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Kafka {
    /// After a fatal error of the (idempotent) producer: a new one for the next attempt.
    fn renew(&self, failed: &Arc<BusProducer>) -> Result<(), String> {
        let fresh = self.producers.replace(&self.key, failed)?;
        let old = std::mem::replace(&mut *self.producer.lock(), fresh);
        release(old);
        Ok(())
    }
}

#[async_trait]
impl Target for Kafka {
    fn describe(&self) -> String {
        format!("kafka {}", self.topic)
    }

    async fn deliver(&self, out: &Outgoing<'_>) -> Attempt {
        let record = kafka_record(out);
        let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
        for (name, value) in &record.headers {
            headers = headers.insert(Header {
                key: name.as_str(),
                value: Some(value.as_str()),
            });
        }
        let producer = self.producer.lock().clone();
        let sent = producer
            .send(
                FutureRecord::<[u8], [u8]>::to(&self.topic)
                    .key(record.key.as_bytes())
                    .payload(record.value.as_slice())
                    .headers(headers),
                self.timeout,
            )
            .await;
        let error = match sent {
            Ok(_) => return Attempt::delivered(None),
            Err((e, _)) => e,
        };
        let code = error.rdkafka_error_code();
        let failed = |outcome: Outcome, text: String| Attempt {
            outcome,
            status_code: None,
            error: Some(text),
            retry_after: None,
        };
        if code == Some(RDKafkaErrorCode::Fatal) {
            let why = producer
                .client()
                .fatal_error()
                .map_or_else(|| error.to_string(), |(c, text)| format!("{c}: {text}"));
            let renewed = match self.renew(&producer) {
                Ok(()) => "a new producer takes the next attempt".to_string(),
                Err(e) => format!("no new producer: {e}"),
            };
            return failed(
                Outcome::Retry,
                format!("the Kafka producer failed for good ({why}); {renewed}"),
            );
        }
        let text = match code {
            Some(RDKafkaErrorCode::MessageTimedOut) => format!(
                "no acknowledgement from the Kafka brokers within {} ms ({error})",
                self.timeout.as_millis()
            ),
            _ => format!("Kafka: {error}"),
        };
        failed(
            if kafka_error_is_final(code) {
                Outcome::Reject
            } else {
                Outcome::Retry
            },
            text,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outgoing_parts(event: CloudEvent) -> LoggedEvent {
        LoggedEvent {
            seq: 42,
            received_micros: 1_767_225_600_000_000,
            publisher: "token:t1".into(),
            schema_version: 1,
            event,
        }
    }

    fn record_of(event: CloudEvent, replay: Option<&str>) -> KafkaRecord {
        let logged = outgoing_parts(event);
        kafka_record(&Outgoing {
            subscription: "ledger",
            event: &logged.event,
            logged: &logged,
            idempotency_key: "k-1",
            attempt: 2,
            replay,
        })
    }

    #[test]
    fn a_kafka_record_carries_the_event_in_binary_mode() {
        let event = CloudEvent::new("inv-1", "/acme/billing", "it.acme.invoice.Paid")
            .with_subject("invoice/1")
            .with_time(1_767_225_600_123_000)
            .with_data(serde_json::json!({"amount": 12.5, "customer": "c1"}))
            .with_extension("partitionkey", "c1".into())
            .with_extension("correlationid", "corr-9".into())
            .with_extension("priority", 3.into());
        let mut event = event;
        event.dataschema = Some("/api/v1/bus/schemas/it.acme.invoice.Paid/versions/1".into());
        let r = record_of(event, Some("replay-7"));
        let headers: Vec<(&str, &str)> = r
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            headers,
            vec![
                ("ce_specversion", "1.0"),
                ("ce_id", "inv-1"),
                ("ce_source", "/acme/billing"),
                ("ce_type", "it.acme.invoice.Paid"),
                ("ce_subject", "invoice/1"),
                ("ce_time", "2026-01-01T00:00:00.123Z"),
                (
                    "ce_dataschema",
                    "/api/v1/bus/schemas/it.acme.invoice.Paid/versions/1"
                ),
                ("ce_correlationid", "corr-9"),
                ("ce_partitionkey", "c1"),
                ("ce_priority", "3"),
                ("content-type", "application/json"),
                ("idempotency-key", "k-1"),
                ("civiclake-subscription", "ledger"),
                ("civiclake-attempt", "2"),
                ("civiclake-seq", "42"),
                ("civiclake-replay", "replay-7"),
            ]
        );
        assert_eq!(r.key, "c1");
        let value: Value = serde_json::from_slice(&r.value).unwrap();
        assert_eq!(value, serde_json::json!({"amount": 12.5, "customer": "c1"}));
    }

    #[test]
    fn the_kafka_key_is_the_partition_key_else_the_subject_else_the_id() {
        let bare = CloudEvent::new("e-1", "/a/b", "t");
        let r = record_of(bare.clone(), None);
        assert_eq!(r.key, "e-1");
        // No data: an empty value, still a JSON content type; no optional header.
        assert!(r.value.is_empty());
        let names: Vec<&str> = r.headers.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            vec![
                "ce_specversion",
                "ce_id",
                "ce_source",
                "ce_type",
                "content-type",
                "idempotency-key",
                "civiclake-subscription",
                "civiclake-attempt",
                "civiclake-seq",
            ]
        );
        assert_eq!(
            record_of(bare.clone().with_subject("meal/7"), None).key,
            "meal/7"
        );
        assert_eq!(
            record_of(
                bare.clone()
                    .with_subject("meal/7")
                    .with_extension("partitionkey", 17.into()),
                None
            )
            .key,
            "17"
        );
        // Text data of a non-JSON type travels as the text itself.
        let mut xml = bare.with_data(Value::String("<meal n=\"7\"/>".into()));
        xml.datacontenttype = Some("application/xml".into());
        let r = record_of(xml, None);
        assert_eq!(r.value, b"<meal n=\"7\"/>");
        assert!(
            r.headers
                .contains(&("content-type".to_string(), "application/xml".to_string()))
        );
        // A JSON string stays JSON.
        let text = CloudEvent::new("e-2", "/a/b", "t").with_data(Value::String("hi".into()));
        assert_eq!(record_of(text, None).value, b"\"hi\"");
    }

    #[test]
    fn kafka_target_settings_are_checked() {
        let none = BTreeMap::new();
        assert!(check_kafka_target("k1:9092, k2:9093", "civiclake.meals", &none, 10_000).is_ok());
        assert!(check_kafka_target("[::1]:9092", "a_b-c.d", &none, 100).is_ok());
        let err = |brokers: &str, topic: &str, options: &[(&str, &str)], timeout: u64| {
            let options: BTreeMap<String, String> = options
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            check_kafka_target(brokers, topic, &options, timeout).unwrap_err()
        };
        assert!(err("", "t", &[], 1000).contains("target.brokers"));
        assert!(err("k1", "t", &[], 1000).contains("\"k1\" is not host:port"));
        assert!(err("k1:9092,k2:x", "t", &[], 1000).contains("\"k2:x\" is not host:port"));
        assert!(err("k1:9092,", "t", &[], 1000).contains("is not host:port"));
        assert!(err("k1:0", "t", &[], 1000).contains("is not host:port"));
        assert!(
            err("k1:9092", "bus/out", &[], 1000)
                .contains("target.topic \"bus/out\": a Kafka topic name is 1-249")
        );
        assert!(err("k1:9092", "", &[], 1000).contains("1-249"));
        assert!(err("k1:9092", "..", &[], 1000).contains("1-249"));
        assert!(err("k1:9092", &"x".repeat(250), &[], 1000).contains("1-249"));
        assert!(check_kafka_target("k1:9092", &"x".repeat(249), &none, 1000).is_ok());
        for reserved in KAFKA_RESERVED_OPTIONS {
            assert!(
                err("k1:9092", "t", &[(reserved, "x")], 1000).contains("is set by civiclake"),
                "{reserved}"
            );
        }
        assert!(
            check_kafka_target(
                "k1:9092",
                "t",
                &BTreeMap::from([("compression.type".to_string(), "zstd".to_string())]),
                1000
            )
            .is_ok()
        );
        assert!(err("k1:9092", "t", &[], 99).contains("timeout_ms must be 100 to 300000"));
        assert!(err("k1:9092", "t", &[], 300_001).contains("timeout_ms"));
    }

    #[test]
    fn kafka_specs_are_read_and_described() {
        let spec: crate::subscription::SubscriptionSpec =
            serde_json::from_value(serde_json::json!({
                "name": "to-kafka",
                "target": {"kind": "kafka", "brokers": "k1:9092", "topic": "civiclake.meals"}
            }))
            .unwrap();
        spec.validate().unwrap();
        assert_eq!(spec.target.describe(), "kafka civiclake.meals");
        assert_eq!(
            spec.target,
            TargetSpec::Kafka {
                brokers: "k1:9092".into(),
                topic: "civiclake.meals".into(),
                client_options: BTreeMap::new(),
                timeout_ms: 10_000,
            }
        );
        // Written back without the empty options.
        let back = serde_json::to_value(&spec.target).unwrap();
        assert_eq!(
            back,
            serde_json::json!({"kind": "kafka", "brokers": "k1:9092", "topic": "civiclake.meals", "timeout_ms": 10000})
        );
        let bad: crate::subscription::SubscriptionSpec =
            serde_json::from_value(serde_json::json!({
                "name": "to-kafka",
                "target": {"kind": "kafka", "brokers": "k1:9092", "topic": "a/b",
                           "client_options": {"acks": "1"}}
            }))
            .unwrap();
        assert!(bad.validate().unwrap_err().contains("target.topic \"a/b\""));
        let unknown =
            serde_json::from_value::<crate::subscription::SubscriptionSpec>(serde_json::json!({
                "name": "x",
                "target": {"kind": "kafka", "brokers": "k1:9092", "topic": "t", "partition": 1}
            }));
        assert!(
            unknown
                .unwrap_err()
                .to_string()
                .contains("unknown field `partition`")
        );
    }

    #[test]
    fn which_kafka_errors_are_final() {
        use RDKafkaErrorCode as C;
        for c in [
            C::MessageSizeTooLarge,
            C::InvalidRecord,
            C::InvalidTopic,
            C::TopicAuthorizationFailed,
            C::ClusterAuthorizationFailed,
        ] {
            assert!(kafka_error_is_final(Some(c)), "{c:?}");
        }
        for c in [
            C::MessageTimedOut,
            C::QueueFull,
            C::UnknownTopicOrPartition,
            C::UnknownTopic,
            C::UnknownPartition,
            C::BrokerTransportFailure,
            C::AllBrokersDown,
            C::NotLeaderForPartition,
            C::NotEnoughReplicas,
            C::RequestTimedOut,
        ] {
            assert!(!kafka_error_is_final(Some(c)), "{c:?}");
        }
        assert!(!kafka_error_is_final(None));
    }

    #[tokio::test]
    async fn kafka_producers_are_shared_per_brokers_and_options() {
        let producers = KafkaProducers::default();
        let spec = |brokers: &str, options: &[(&str, &str)]| TargetSpec::Kafka {
            brokers: brokers.into(),
            topic: "t".into(),
            client_options: options
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            timeout_ms: 1000,
        };
        let http = reqwest::Client::new();
        // Nothing listens there: creating a producer does not contact the brokers.
        let a = build_target(&spec("127.0.0.1:1", &[]), &http, None, &producers).unwrap();
        let b = build_target(&spec(" 127.0.0.1:1 ", &[]), &http, None, &producers).unwrap();
        assert_eq!(producers.len(), 1);
        assert_eq!(a.describe(), "kafka t");
        let _c = build_target(
            &spec("127.0.0.1:1", &[("compression.type", "lz4")]),
            &http,
            None,
            &producers,
        )
        .unwrap();
        assert_eq!(producers.len(), 2);
        // librdkafka refuses an unknown setting: a clear error, no producer kept.
        let e = build_target(
            &spec("127.0.0.1:1", &[("no.such.option", "1")]),
            &http,
            None,
            &producers,
        )
        .unwrap_err();
        assert!(e.contains("Kafka producer for 127.0.0.1:1"), "{e}");
        assert!(e.contains("no.such.option"), "{e}");
        assert_eq!(producers.len(), 2);
        drop((a, b));
        producers.close().await;
        assert!(producers.is_empty());
    }

    #[test]
    fn which_statuses_are_retried() {
        for s in [408, 409, 425, 429, 500, 502, 503, 504] {
            assert!(retryable(s), "{s}");
        }
        for s in [400, 401, 403, 404, 410, 413, 422] {
            assert!(!retryable(s), "{s}");
        }
    }
}
