//! Kafka sources (`[[kafka.source]]`): consumer groups whose messages go through the ingest
//! service into the lake exactly once.
//!
//! Kafka is its own log, so the lake — not the group's committed offsets — records how far a
//! source has read: each batch of messages is delivered with one checkpoint per
//! topic-partition (`kafka/<source>/<topic>/<partition>` = the last offset of the batch) in
//! the same WAL record as its rows and dead letters
//! ([`IngestService::deliver_with_checkpoints`]). When a partition is assigned (start,
//! rebalance) the consumer seeks to checkpoint + 1, and a message at or below the checkpoint
//! is dropped before delivery (the version check), so a replay after a crash or a rebalance
//! stores nothing twice. The flush carries the checkpoints into the Delta commit of the rows
//! as `txn` actions (app id = checkpoint name, version = offset). Offsets are committed to
//! the group only after the lake write (asynchronously), so group tools see the progress.
//!
//! A message in CloudEvents binary mode (`ce_specversion`, `ce_id`, `ce_source`, `ce_type`
//! headers, optionally `ce_time`, `ce_subject`, other `ce_*` extensions and `content-type`)
//! is turned into a structured CloudEvent before routing ([`binary_cloudevent`]), so a route
//! with `format = "cloudevents"` stores it like a structured one.
//!
//! **Publishing to the bus.** A topic `bus.<organisation>.<system>[...]` (route topic
//! `bus/<organisation>/<system>/...`) carries CloudEvents for the interoperability bus: each
//! batch's events are appended to the bus log (`bus_events`) before the batch is stored with
//! its checkpoints, through the same path as MQTT's ([`crate::bus_intake`]): the event's
//! `source` must be `/<organisation>/<system>[/...]`, its type must have a schema and its
//! data must fit it; a refused event is a `_dead_letters` row (route `bus`) written with the
//! batch's checkpoints, and a bus that cannot write its log (503) makes the source retry the
//! batch without checkpointing it. This is **at least once**: a crash between the bus append
//! and the checkpoint's WAL record appends those events again after the restart (the bus
//! log then holds them twice, with the same `source` and `id`); subscribers dedupe on the
//! `Idempotency-Key` header, which derives from `source` + `id`.

use crate::bus_intake::BusIntake;
use crate::ingest::IngestService;
use civiclake_core::{InboundMessage, IngestError, SourceKind};
use civiclake_lake::Lake;
use parking_lot::Mutex;
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol, StreamConsumer,
};
use rdkafka::error::{KafkaError as RdKafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// librdkafka settings civiclake sets itself; `client_options` may not override them.
const RESERVED_OPTIONS: [&str; 5] = [
    "bootstrap.servers",
    "group.id",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "isolation.level",
];

/// Longest wait between two attempts to store a batch while the lake is unavailable.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

fn default_batch_max() -> usize {
    5000
}

fn default_batch_wait() -> Duration {
    Duration::from_millis(50)
}

fn human_duration_text<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&humantime::format_duration(*d).to_string())
}

fn human_duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    humantime::parse_duration(text.trim())
        .map_err(|e| serde::de::Error::custom(format!("invalid duration {text:?}: {e}")))
}

/// One `[[kafka.source]]`: a consumer group reading `topics` from `brokers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSourceConfig {
    /// Name of the source (`_dead_letters.source` is `kafka:<name>`, checkpoints are
    /// `kafka/<name>/...`): letters, digits, `_` and `-`. Renaming a source makes it start
    /// over (from the group's offsets, else `auto.offset.reset`).
    pub name: String,
    /// `bootstrap.servers`: `host:port[,host:port...]`.
    pub brokers: String,
    /// The consumer group.
    pub group_id: String,
    /// The topics (literal names). A topic's `.` are read as `/` to find its route:
    /// `ingest.air` takes the default route `ingest/{table}` to table `air`.
    pub topics: Vec<String>,
    /// More librdkafka settings (`security.protocol`, `sasl.mechanism`, `sasl.username`,
    /// `ssl.ca.location`, `auto.offset.reset`, ...), except the ones civiclake sets:
    /// `bootstrap.servers`, `group.id`, `enable.auto.commit`, `enable.auto.offset.store`,
    /// `isolation.level`.
    #[serde(default)]
    pub client_options: BTreeMap<String, String>,
    /// Most messages per batch (one lake write each); default 5000.
    #[serde(default = "default_batch_max")]
    pub batch_max: usize,
    /// Longest wait for a batch to fill after its first message (`"50ms"`); default 50 ms.
    #[serde(
        default = "default_batch_wait",
        deserialize_with = "human_duration",
        serialize_with = "human_duration_text"
    )]
    pub batch_wait: Duration,
}

impl KafkaSourceConfig {
    /// A source with the default batching and no extra client options.
    pub fn new(
        name: impl Into<String>,
        brokers: impl Into<String>,
        group_id: impl Into<String>,
        topics: Vec<String>,
    ) -> Self {
        KafkaSourceConfig {
            name: name.into(),
            brokers: brokers.into(),
            group_id: group_id.into(),
            topics,
            client_options: BTreeMap::new(),
            batch_max: default_batch_max(),
            batch_wait: default_batch_wait(),
        }
    }

    /// Checks the settings (without contacting the brokers).
    pub fn validate(&self) -> Result<(), KafkaError> {
        let bad = |message: String| {
            Err(KafkaError::Config {
                name: self.name.clone(),
                message,
            })
        };
        if self.name.is_empty()
            || self.name.len() > 64
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return bad("the name must be 1-64 letters, digits, '_' or '-'".into());
        }
        if self.brokers.trim().is_empty() {
            return bad("no brokers given".into());
        }
        if self.group_id.trim().is_empty() {
            return bad("no group_id given".into());
        }
        if self.topics.is_empty() {
            return bad("no topics given".into());
        }
        for topic in &self.topics {
            if !valid_topic(topic) {
                return bad(format!(
                    "invalid topic {topic:?}: a Kafka topic name is 1-249 letters, digits, '.', '_' or '-' (patterns are not supported)"
                ));
            }
        }
        if let Some(key) = self
            .client_options
            .keys()
            .find(|k| RESERVED_OPTIONS.contains(&k.as_str()))
        {
            return bad(format!(
                "client option '{key}' is set by civiclake (use brokers/group_id; offsets are committed after the lake write, with read_committed isolation)"
            ));
        }
        if self.batch_max == 0 || self.batch_max > 1_000_000 {
            return bad("batch_max must be between 1 and 1000000".into());
        }
        if self.batch_wait > Duration::from_secs(60) {
            return bad("batch_wait must be at most 60s".into());
        }
        Ok(())
    }

    /// The checkpoint holding the last offset of `topic`/`partition` stored in the lake.
    pub fn checkpoint_name(&self, topic: &str, partition: i32) -> String {
        checkpoint_name(&self.name, topic, partition)
    }
}

fn checkpoint_name(source: &str, topic: &str, partition: i32) -> String {
    format!("kafka/{source}/{topic}/{partition}")
}

fn valid_topic(topic: &str) -> bool {
    !topic.is_empty()
        && topic.len() <= 249
        && topic != "."
        && topic != ".."
        && topic
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// Why a Kafka source cannot start.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    /// Bad settings.
    #[error("Kafka source '{name}': {message}")]
    Config {
        /// The source.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// librdkafka refused to create the consumer or to subscribe.
    #[error("Kafka source '{name}': {cause}")]
    Client {
        /// The source.
        name: String,
        /// librdkafka's error.
        cause: RdKafkaError,
    },
}

/// Counters of a Kafka source since it started.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct KafkaStats {
    /// Messages received from the brokers.
    pub messages: u64,
    /// Messages dropped because the lake already had them (offset at or below the
    /// partition's checkpoint).
    pub duplicates: u64,
    /// Batches written to the lake.
    pub batches: u64,
    /// Messages stored as rows.
    pub stored: u64,
    /// Rows written.
    pub rows: u64,
    /// Messages written to `_dead_letters`.
    pub dead_lettered: u64,
    /// Messages that matched no route (events appended to the bus included).
    pub ignored: u64,
    /// Events appended to the bus log (from `bus.*` topics).
    pub bus_events: u64,
    /// Retries of a batch because the lake was saturated.
    pub busy_retries: u64,
    /// Retries of a batch because the lake was unavailable.
    pub unavailable_retries: u64,
    /// Group offset commits that failed (the lake's checkpoints are unaffected).
    pub commit_errors: u64,
    /// Partitions assigned now.
    pub assigned_partitions: u64,
    /// The last error seen (client, consumption or storage), if any.
    pub last_error: Option<String>,
}

#[derive(Debug, Default)]
struct Shared {
    messages: AtomicU64,
    duplicates: AtomicU64,
    batches: AtomicU64,
    stored: AtomicU64,
    rows: AtomicU64,
    dead_lettered: AtomicU64,
    ignored: AtomicU64,
    bus_events: AtomicU64,
    busy_retries: AtomicU64,
    unavailable_retries: AtomicU64,
    commit_errors: AtomicU64,
    assigned: Mutex<Vec<(String, i32)>>,
    last_error: Mutex<Option<String>>,
}

impl Shared {
    fn error(&self, text: String) {
        *self.last_error.lock() = Some(text);
    }
}

/// The consumer's context: logging through `tracing`, the rebalance that resumes from the
/// lake's checkpoints, commit results.
struct SourceContext {
    name: String,
    lake: Arc<Lake>,
    shared: Arc<Shared>,
    /// Seek assigned partitions to their checkpoint + 1 (off only in tests of the version
    /// check).
    resume_from_checkpoints: bool,
}

impl ClientContext for SourceContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        civiclake_bus::target::log_librdkafka(level, "librdkafka", &self.name, fac, log_message);
    }

    fn error(&self, error: RdKafkaError, reason: &str) {
        tracing::warn!(source = %self.name, error = %error, reason, "Kafka client error");
        self.shared.error(format!("{error}: {reason}"));
    }
}

impl SourceContext {
    /// Sets the start offset of each assigned partition that has a checkpoint to the
    /// checkpoint + 1; the others start from the group's committed offset, else
    /// `auto.offset.reset`.
    fn resume(&self, tpl: &mut TopicPartitionList) {
        let assigned: Vec<(String, i32)> = tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_string(), e.partition()))
            .collect();
        for (topic, partition) in assigned.iter().filter(|_| self.resume_from_checkpoints) {
            let name = checkpoint_name(&self.name, topic, *partition);
            let Some(last) = self.lake.checkpoint(&name).and_then(|v| v.as_i64()) else {
                continue;
            };
            match tpl.set_partition_offset(topic, *partition, Offset::Offset(last + 1)) {
                Ok(()) => {
                    tracing::info!(source = %self.name, topic, partition, offset = last + 1, "resuming from the lake's checkpoint");
                }
                Err(e) => {
                    tracing::warn!(source = %self.name, topic, partition, error = %e, "cannot set the start offset; the version check drops what the lake has");
                }
            }
        }
        self.shared.assigned.lock().extend(assigned);
    }
}

impl ConsumerContext for SourceContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        let result = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                if !cooperative {
                    self.shared.assigned.lock().clear();
                }
                self.resume(tpl);
                if cooperative {
                    consumer.incremental_assign(tpl)
                } else {
                    consumer.assign(tpl)
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                {
                    let mut assigned = self.shared.assigned.lock();
                    if cooperative {
                        let revoked: Vec<(String, i32)> = tpl
                            .elements()
                            .iter()
                            .map(|e| (e.topic().to_string(), e.partition()))
                            .collect();
                        assigned.retain(|a| !revoked.contains(a));
                    } else {
                        assigned.clear();
                    }
                }
                if cooperative {
                    consumer.incremental_unassign(tpl)
                } else {
                    consumer.unassign()
                }
            }
            other => {
                let code: RDKafkaErrorCode = other.into();
                tracing::warn!(source = %self.name, error = %code, "rebalance error");
                self.shared.error(format!("rebalance: {code}"));
                self.shared.assigned.lock().clear();
                consumer.unassign()
            }
        };
        if let Err(e) = result {
            tracing::warn!(source = %self.name, error = %e, "partition (un)assignment failed");
            self.shared.error(format!("partition assignment: {e}"));
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        if let Err(e) = result {
            self.shared.commit_errors.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(source = %self.name, error = %e, "group offset commit failed");
        }
    }
}

/// A running Kafka source; see the module documentation.
#[derive(Debug)]
pub struct KafkaSource {
    name: String,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl KafkaSource {
    /// Checks `config`, creates the consumer, subscribes to the topics and starts consuming
    /// in a task. Brokers are contacted in the background: an unreachable broker is not an
    /// error here, it shows in the logs and [`KafkaSource::stats`]. The events of `bus.*`
    /// topics go to the bus in `bus` once it is set (see the module documentation).
    pub async fn start(
        config: KafkaSourceConfig,
        ingest: Arc<IngestService>,
        lake: Arc<Lake>,
        bus: Arc<OnceLock<civiclake_bus::Bus>>,
    ) -> Result<KafkaSource, KafkaError> {
        Self::start_with(config, ingest, lake, bus, true).await
    }

    async fn start_with(
        config: KafkaSourceConfig,
        ingest: Arc<IngestService>,
        lake: Arc<Lake>,
        bus: Arc<OnceLock<civiclake_bus::Bus>>,
        resume_from_checkpoints: bool,
    ) -> Result<KafkaSource, KafkaError> {
        config.validate()?;
        let mut client = ClientConfig::new();
        for (k, v) in &config.client_options {
            client.set(k, v);
        }
        client
            .set("bootstrap.servers", config.brokers.trim())
            .set("group.id", config.group_id.trim())
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("isolation.level", "read_committed");
        if !config.client_options.contains_key("auto.offset.reset") {
            client.set("auto.offset.reset", "earliest");
        }
        let shared = Arc::new(Shared::default());
        let context = SourceContext {
            name: config.name.clone(),
            lake: lake.clone(),
            shared: shared.clone(),
            resume_from_checkpoints,
        };
        let client_error = |cause| KafkaError::Client {
            name: config.name.clone(),
            cause,
        };
        let consumer: StreamConsumer<SourceContext> =
            client.create_with_context(context).map_err(client_error)?;
        let topics: Vec<&str> = config.topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topics).map_err(client_error)?;
        tracing::info!(
            source = %config.name,
            brokers = %config.brokers,
            group = %config.group_id,
            topics = ?config.topics,
            "Kafka source started"
        );
        let (stop, stop_rx) = watch::channel(false);
        let name = config.name.clone();
        let runner = Runner {
            consumer: Some(consumer),
            config,
            ingest,
            lake,
            bus,
            shared: shared.clone(),
            stop: stop_rx,
        };
        let task = tokio::spawn(runner.run());
        Ok(KafkaSource {
            name,
            shared,
            stop,
            task,
        })
    }

    /// The source's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Counters since start.
    pub fn stats(&self) -> KafkaStats {
        let s = &self.shared;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        KafkaStats {
            messages: load(&s.messages),
            duplicates: load(&s.duplicates),
            batches: load(&s.batches),
            stored: load(&s.stored),
            rows: load(&s.rows),
            dead_lettered: load(&s.dead_lettered),
            ignored: load(&s.ignored),
            bus_events: load(&s.bus_events),
            busy_retries: load(&s.busy_retries),
            unavailable_retries: load(&s.unavailable_retries),
            commit_errors: load(&s.commit_errors),
            assigned_partitions: s.assigned.lock().len() as u64,
            last_error: s.last_error.lock().clone(),
        }
    }

    /// Stops consuming: a batch being gathered or retried is dropped unstored (it is read
    /// again next time), the offsets of the stored batches are committed to the group, and
    /// the consumer leaves the group. Returns once the consumer is closed.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        if let Err(e) = self.task.await {
            tracing::error!(source = %self.name, error = %e, "Kafka source task failed");
        }
        tracing::info!(source = %self.name, "Kafka source stopped");
    }
}

/// The consuming task.
struct Runner {
    consumer: Option<StreamConsumer<SourceContext>>,
    config: KafkaSourceConfig,
    ingest: Arc<IngestService>,
    lake: Arc<Lake>,
    /// The bus, once started: where the events of `bus.*` topics go first.
    bus: Arc<OnceLock<civiclake_bus::Bus>>,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
}

/// A batch ready to store: messages the lake lacks, their checkpoints, and the last offset
/// consumed of each partition (to commit to the group).
struct Batch {
    messages: Vec<InboundMessage>,
    checkpoints: Vec<(String, Value)>,
    consumed: BTreeMap<(String, i32), i64>,
}

impl Runner {
    async fn run(mut self) {
        let Some(consumer) = self.consumer.take() else {
            return;
        };
        loop {
            let Some(received) = self.gather(&consumer).await else {
                break;
            };
            if received.is_empty() {
                continue;
            }
            let batch = self.version_check(received);
            if !batch.messages.is_empty() && !self.store(&consumer, &batch).await {
                break;
            }
            for ((topic, partition), last) in &batch.consumed {
                if let Err(e) = consumer.store_offset(topic, *partition, *last) {
                    // The partition was revoked meanwhile: its new owner resumes from the
                    // lake's checkpoint anyway.
                    tracing::debug!(source = %self.config.name, topic, partition, error = %e, "offset not stored for the group");
                }
            }
            commit(&consumer, CommitMode::Async, &self.shared);
        }
        let shared = self.shared.clone();
        let closed = tokio::task::spawn_blocking(move || {
            commit(&consumer, CommitMode::Sync, &shared);
            drop(consumer);
        })
        .await;
        if let Err(e) = closed {
            tracing::error!(source = %self.config.name, error = %e, "closing the Kafka consumer failed");
        }
        self.shared.assigned.lock().clear();
    }

    /// Waits for a first message, then gathers more until `batch_max` messages or
    /// `batch_wait`. `None` when the source is stopped.
    async fn gather(
        &mut self,
        consumer: &StreamConsumer<SourceContext>,
    ) -> Option<Vec<InboundMessage>> {
        let mut out = Vec::new();
        let first = tokio::select! {
            m = consumer.recv() => m,
            _ = self.stop.changed() => return None,
        };
        match first {
            Ok(m) => out.push(self.inbound(&m)),
            Err(e) => {
                self.consumption_error(&e);
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                    _ = self.stop.changed() => return None,
                }
                return Some(out);
            }
        }
        let deadline = Instant::now() + self.config.batch_wait;
        while out.len() < self.config.batch_max {
            tokio::select! {
                m = consumer.recv() => match m {
                    Ok(m) => out.push(self.inbound(&m)),
                    Err(e) => self.consumption_error(&e),
                },
                _ = tokio::time::sleep_until(deadline) => break,
                _ = self.stop.changed() => return None,
            }
        }
        Some(out)
    }

    fn consumption_error(&self, e: &RdKafkaError) {
        tracing::warn!(source = %self.config.name, error = %e, "Kafka consumption error");
        self.shared.error(format!("consume: {e}"));
    }

    fn inbound(&self, m: &BorrowedMessage<'_>) -> InboundMessage {
        self.shared.messages.fetch_add(1, Ordering::Relaxed);
        let mut message = InboundMessage::new(
            SourceKind::Kafka(self.config.name.clone()),
            m.topic(),
            m.payload().unwrap_or_default(),
        );
        message.partition = Some(m.partition());
        message.offset = Some(m.offset());
        message.key = m.key().map(<[u8]>::to_vec);
        if let Some(headers) = m.headers() {
            message.headers = headers
                .iter()
                .map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec()))
                .collect();
        }
        message.content_type = message
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned());
        if let Some(structured) = binary_cloudevent(&message.headers, &message.payload) {
            message.payload = structured;
            message.content_type = Some("application/cloudevents+json".into());
        }
        message
    }

    /// Drops the messages the lake already has (offset at or below their partition's
    /// checkpoint) and computes the checkpoints of the rest.
    fn version_check(&self, received: Vec<InboundMessage>) -> Batch {
        let mut known: BTreeMap<(String, i32), Option<i64>> = BTreeMap::new();
        let mut last: BTreeMap<(String, i32), i64> = BTreeMap::new();
        let mut consumed: BTreeMap<(String, i32), i64> = BTreeMap::new();
        let mut messages = Vec::with_capacity(received.len());
        let mut duplicates = 0u64;
        for m in received {
            let (Some(partition), Some(offset)) = (m.partition, m.offset) else {
                continue;
            };
            let key = (m.topic.clone(), partition);
            let checkpoint = *known.entry(key.clone()).or_insert_with(|| {
                self.lake
                    .checkpoint(&checkpoint_name(&self.config.name, &key.0, partition))
                    .and_then(|v| v.as_i64())
            });
            let seen = consumed.entry(key.clone()).or_insert(offset);
            *seen = (*seen).max(offset);
            if checkpoint.is_some_and(|c| offset <= c) {
                duplicates += 1;
                continue;
            }
            let l = last.entry(key).or_insert(offset);
            *l = (*l).max(offset);
            messages.push(m);
        }
        if duplicates > 0 {
            self.shared
                .duplicates
                .fetch_add(duplicates, Ordering::Relaxed);
            tracing::debug!(source = %self.config.name, duplicates, "dropped messages the lake already has");
        }
        let checkpoints = last
            .into_iter()
            .map(|((topic, partition), offset)| {
                (
                    checkpoint_name(&self.config.name, &topic, partition),
                    Value::from(offset),
                )
            })
            .collect();
        Batch {
            messages,
            checkpoints,
            consumed,
        }
    }

    /// Appends the batch's bus events to the bus log (once: a retry carries on where the
    /// bus stopped), then stores the batch with its checkpoints and the bus's refusals.
    async fn deliver(
        &self,
        batch: &Batch,
        intake: &mut BusIntake,
    ) -> Result<civiclake_core::DeliveryReport, IngestError> {
        if let Some(bus) = self.bus.get() {
            intake.publish(bus, &batch.messages).await?;
        }
        self.ingest
            .deliver_with_refusals(
                &batch.messages,
                &intake.refusals(),
                batch.checkpoints.clone(),
            )
            .await
    }

    /// Stores a batch, retrying while the lake (or the bus log) is saturated or unavailable
    /// (never skipping it). `false` when the source was stopped first.
    async fn store(&mut self, consumer: &StreamConsumer<SourceContext>, batch: &Batch) -> bool {
        let mut backoff = Duration::from_millis(100);
        let mut paused: Option<TopicPartitionList> = None;
        let mut intake = BusIntake::default();
        let stored = loop {
            let result = self.deliver(batch, &mut intake).await;
            let wait = match result {
                Ok(report) => {
                    let s = &self.shared;
                    s.bus_events
                        .fetch_add(intake.published() as u64, Ordering::Relaxed);
                    s.batches.fetch_add(1, Ordering::Relaxed);
                    s.stored.fetch_add(report.stored as u64, Ordering::Relaxed);
                    s.rows.fetch_add(report.rows as u64, Ordering::Relaxed);
                    s.dead_lettered
                        .fetch_add(report.dead_lettered as u64, Ordering::Relaxed);
                    s.ignored
                        .fetch_add(report.ignored as u64, Ordering::Relaxed);
                    break true;
                }
                Err(IngestError::Busy {
                    reason,
                    retry_after_ms,
                }) => {
                    self.shared.busy_retries.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(source = %self.config.name, reason, retry_after_ms, "lake saturated: consumption paused");
                    if paused.is_none() {
                        paused = consumer.assignment().ok();
                        if let Some(tpl) = &paused
                            && let Err(e) = consumer.pause(tpl)
                        {
                            tracing::debug!(source = %self.config.name, error = %e, "pause failed");
                        }
                    }
                    Duration::from_millis(retry_after_ms.clamp(10, 10_000))
                }
                Err(IngestError::Unavailable(e)) => {
                    self.shared
                        .unavailable_retries
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(source = %self.config.name, error = %e, retry_in = ?backoff, "lake unavailable: the batch will be retried");
                    self.shared.error(format!("store: {e}"));
                    let wait = backoff;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    wait
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.stop.changed() => break false,
            }
        };
        if let Some(tpl) = paused
            && let Err(e) = consumer.resume(&tpl)
        {
            tracing::debug!(source = %self.config.name, error = %e, "resume failed");
        }
        stored
    }
}

/// Commits the stored offsets to the group; nothing stored yet is not an error.
fn commit(consumer: &StreamConsumer<SourceContext>, mode: CommitMode, shared: &Shared) {
    match consumer.commit_consumer_state(mode) {
        Ok(()) => {}
        Err(RdKafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
        Err(e) => {
            shared.commit_errors.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(error = %e, "group offset commit failed");
        }
    }
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

/// A CloudEvent in Kafka binary mode as a structured CloudEvent (JSON), or `None` when the
/// headers have no `ce_specversion`.
///
/// Each `ce_<name>` header is the attribute `<name>` (its value read as UTF-8); the
/// `content-type` header is `datacontenttype`. The payload is the event's `data`: parsed
/// JSON when the content type is JSON or absent and the payload parses, else the text when it
/// is UTF-8, else `data_base64`. An empty payload is an event without data. The event is not
/// validated here: the `cloudevents` format does it, and dead-letters what is wrong.
pub fn binary_cloudevent(headers: &[(String, Vec<u8>)], payload: &[u8]) -> Option<Vec<u8>> {
    use base64::Engine as _;
    if !headers.iter().any(|(k, _)| k == "ce_specversion") {
        return None;
    }
    let mut event = Map::new();
    let mut content_type = None;
    for (key, value) in headers {
        let text = String::from_utf8_lossy(value).into_owned();
        if let Some(attribute) = key.strip_prefix("ce_") {
            if !attribute.is_empty() && !matches!(attribute, "data" | "data_base64") {
                event.insert(attribute.to_string(), Value::String(text));
            }
        } else if key.eq_ignore_ascii_case("content-type") {
            content_type = Some(text);
        }
    }
    if let Some(ct) = &content_type {
        event.insert("datacontenttype".into(), Value::String(ct.clone()));
    }
    if !payload.is_empty() {
        let json_data = content_type.as_deref().is_none_or(is_json_type);
        let parsed = json_data
            .then(|| serde_json::from_slice::<Value>(payload).ok())
            .flatten();
        match (parsed, std::str::from_utf8(payload)) {
            (Some(v), _) => {
                event.insert("data".into(), v);
            }
            (None, Ok(text)) => {
                event.insert("data".into(), Value::String(text.to_string()));
            }
            (None, Err(_)) => {
                event.insert(
                    "data_base64".into(),
                    Value::String(base64::engine::general_purpose::STANDARD.encode(payload)),
                );
            }
        }
    }
    serde_json::to_vec(&Value::Object(event)).ok()
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod bus_tests;

/// The Kafka sources' counters on `/metrics`, labelled by source name.
#[derive(Debug)]
pub(crate) struct KafkaMetrics(pub(crate) Vec<std::sync::Weak<KafkaSource>>);

impl civiclake_api::MetricsSource for KafkaMetrics {
    fn render(&self, out: &mut String) {
        use std::fmt::Write as _;
        let stats: Vec<(String, KafkaStats)> = self
            .0
            .iter()
            .filter_map(std::sync::Weak::upgrade)
            .map(|s| (s.name().to_string(), s.stats()))
            .collect();
        type Pick = fn(&KafkaStats) -> u64;
        let families: [(&str, &str, &str, Pick); 7] = [
            (
                "civiclake_kafka_messages_total",
                "counter",
                "Messages consumed from Kafka.",
                |s| s.messages,
            ),
            (
                "civiclake_kafka_bus_events_total",
                "counter",
                "Events from Kafka appended to the bus log.",
                |s| s.bus_events,
            ),
            (
                "civiclake_kafka_duplicates_total",
                "counter",
                "Messages dropped because the lake already had their offset.",
                |s| s.duplicates,
            ),
            (
                "civiclake_kafka_rows_total",
                "counter",
                "Rows written from Kafka messages.",
                |s| s.rows,
            ),
            (
                "civiclake_kafka_dead_letters_total",
                "counter",
                "Kafka messages written to _dead_letters.",
                |s| s.dead_lettered,
            ),
            (
                "civiclake_kafka_retries_total",
                "counter",
                "Batches retried because the lake was saturated or unavailable.",
                |s| s.busy_retries + s.unavailable_retries,
            ),
            (
                "civiclake_kafka_assigned_partitions",
                "gauge",
                "Partitions assigned to this consumer now.",
                |s| s.assigned_partitions,
            ),
        ];
        for (name, kind, help, pick) in families {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (source, s) in &stats {
                let _ = writeln!(
                    out,
                    "{name}{{source=\"{}\"}} {}",
                    source.replace('\\', "\\\\").replace('"', "\\\""),
                    pick(s)
                );
            }
        }
    }
}
