//! The bus engine: the log writer, one delivery worker per subscription, the audit writer,
//! replays and dead-letter redelivery.
//!
//! - **Publish.** An event is checked against its type's schema, then handed to the log
//!   writer, which gives each event the next `seq` and appends what is waiting to
//!   `bus_events` in one lake write (WAL, fsync) before answering the publishers: an
//!   acknowledged event is durable. The newest events also stay in memory, where the
//!   workers read them; older ones are read back from the lake with SQL.
//! - **Delivery.** A subscription's worker reads the log in `seq` order from its cursor,
//!   filters, and hands each matching event to one of its lanes by partition key (so events of
//!   one key are delivered in log order). A lane delivers one event at a time, retrying with
//!   exponential backoff, and files a dead letter after the last attempt (or at once when the
//!   target refuses the event for good). Every attempt is a row of `bus_deliveries`.
//! - **Cursor.** The cursor is the highest `seq` at and below which every event is finished
//!   (delivered, dead-lettered or filtered out). It is written to
//!   `<state_dir>/cursors/<subscription>` (write, fsync, rename) every 200 ms while it moves and
//!   at stop; after a crash the worker starts from it again, so the events in flight at the
//!   crash are delivered again (at least once: receivers dedupe on `Idempotency-Key`).
//! - **Replay** moves a subscription's cursor back to an event or a time and delivers from
//!   there again, from the log.

use crate::audit::{
    self, DEAD_LETTERS_TABLE, DELIVERIES_TABLE, DeadLetter, DeliveryRecord, Status, sql_string,
};
use crate::catalog::{Catalog, CatalogError, Endpoint, Organisation, System};
use crate::ecosystem::{EcosystemMap, Observed};
use crate::log::{self, EVENTS_TABLE, LOG_COLUMNS, LoggedEvent};
use crate::schema::{Compatibility, SchemaError, SchemaRegistry};
use crate::subscription::SubscriptionSpec;
use crate::target::{KafkaProducers, MessagePublisher, Outcome, Outgoing, Target, build_target};
use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Int64Type};
use civiclake_core::{CloudEvent, ExpectedVersion, NewEvent, Platform};
use civiclake_lake::Lake;
use civiclake_query::QueryEngine;
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

/// Events one publish may carry.
pub const MAX_EVENTS_PER_PUBLISH: usize = 1000;
/// Events the log writer appends in one lake write at most.
const MAX_LOG_BATCH: usize = 8192;
/// Events read from the lake at once by a worker behind the in-memory tail.
const READ_PAGE: i64 = 2000;
/// Jobs waiting per lane.
const LANE_QUEUE: usize = 256;
/// How often a moving cursor is written.
const CURSOR_EVERY: Duration = Duration::from_millis(200);
/// Audit rows written at once at most.
const AUDIT_BATCH: usize = 20_000;
/// How long audit rows wait to be written together.
const AUDIT_EVERY: Duration = Duration::from_millis(200);

/// Settings of the bus.
#[derive(Debug, Clone)]
pub struct BusSettings {
    /// Where the cursors are kept (`<data>/bus`).
    pub state_dir: PathBuf,
    /// Newest events kept in memory for the workers.
    pub recent_events: usize,
}

impl BusSettings {
    /// Settings with the state under `data_dir/bus`.
    pub fn new(data_dir: &Path) -> Self {
        Self {
            state_dir: data_dir.join("bus"),
            recent_events: 100_000,
        }
    }
}

/// A failure of a bus operation, with the HTTP status it maps to.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// A schema problem: unknown type (422), invalid data (400), incompatible schema (409).
    #[error("{0}")]
    Schema(#[from] SchemaError),
    /// An event of a batch failed its checks.
    #[error("event {index} ({id}): {source}")]
    Event {
        /// Its position in the request (0-based).
        index: usize,
        /// Its id.
        id: String,
        /// What is wrong.
        source: Box<BusError>,
    },
    /// A catalog problem: bad input (400), not found (404), still in use (409).
    #[error("{0}")]
    Catalog(#[from] CatalogError),
    /// Bad input.
    #[error("{0}")]
    Invalid(String),
    /// No such subscription (or other thing).
    #[error("{0}")]
    NotFound(String),
    /// It exists already.
    #[error("{0}")]
    Conflict(String),
    /// The lake could not take the events.
    #[error("the bus cannot take events now: {0}")]
    Unavailable(String),
    /// The bus has stopped (the server is shutting down).
    #[error("the bus has stopped: the server is shutting down")]
    Stopped,
}

impl BusError {
    /// The HTTP status of the error.
    pub fn http_status(&self) -> u16 {
        match self {
            BusError::Schema(e) => e.http_status(),
            BusError::Event { source, .. } => source.http_status(),
            BusError::Catalog(e) => e.http_status(),
            BusError::Invalid(_) => 400,
            BusError::NotFound(_) => 404,
            BusError::Conflict(_) => 409,
            BusError::Unavailable(_) | BusError::Stopped => 503,
        }
    }
}

/// What a publish returns per event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Published {
    /// The event's id.
    pub id: String,
    /// Its position in the log.
    pub seq: i64,
    /// The schema version it was validated against.
    pub schema_version: u32,
}

/// Where a replay starts.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ReplayFrom {
    /// The first event of the log whose time is at or after this (RFC 3339).
    Time(String),
    /// The event with this id (its first occurrence in the log).
    EventId(String),
    /// This position in the log.
    Seq(i64),
}

/// A subscription with its progress.
#[derive(Debug, Clone, Serialize)]
pub struct SubscriptionStatus {
    /// What it is.
    pub spec: SubscriptionSpec,
    /// Every event up to here is finished.
    pub cursor: i64,
    /// The newest event of the log.
    pub head: i64,
    /// Events of the log after the cursor (not all of them may match the filter).
    pub lag: i64,
    /// Since the server started: deliveries, failed attempts, dead letters.
    pub delivered: u64,
    /// Failed attempts (retried or not).
    pub failed: u64,
    /// Dead letters.
    pub dead_letters: u64,
}

/// Counters of the bus since start.
#[derive(Debug, Default)]
pub struct BusStats {
    /// Events appended to the log.
    pub published: AtomicU64,
    /// Events refused at publish.
    pub rejected: AtomicU64,
    /// Successful deliveries.
    pub delivered: AtomicU64,
    /// Failed attempts.
    pub failed: AtomicU64,
    /// Dead letters filed.
    pub dead_letters: AtomicU64,
}

/// A catalog event of the bus, stored in `bus_catalog_events` (via the bus module's
/// Platform) and replayed at start.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
enum CatalogEvent {
    SchemaRegistered {
        event_type: String,
        schema: Value,
        registered_micros: i64,
    },
    CompatibilitySet {
        event_type: String,
        mode: Compatibility,
    },
    SubscriptionCreated {
        spec: SubscriptionSpec,
        start_seq: i64,
    },
    SubscriptionUpdated {
        spec: SubscriptionSpec,
    },
    SubscriptionDeleted {
        name: String,
    },
    SubscriptionReplayed {
        name: String,
        from_seq: i64,
        replay: String,
    },
    OrganisationSaved {
        org: Organisation,
    },
    OrganisationDeleted {
        id: String,
    },
    SystemSaved {
        system: System,
    },
    SystemDeleted {
        org: String,
        id: String,
    },
    EndpointSaved {
        endpoint: Box<Endpoint>,
    },
    EndpointDeleted {
        org: String,
        system: String,
        id: String,
    },
}

impl CatalogEvent {
    fn type_name(&self) -> &'static str {
        match self {
            CatalogEvent::SchemaRegistered { .. } => "SchemaRegistered",
            CatalogEvent::CompatibilitySet { .. } => "CompatibilitySet",
            CatalogEvent::SubscriptionCreated { .. } => "SubscriptionCreated",
            CatalogEvent::SubscriptionUpdated { .. } => "SubscriptionUpdated",
            CatalogEvent::SubscriptionDeleted { .. } => "SubscriptionDeleted",
            CatalogEvent::SubscriptionReplayed { .. } => "SubscriptionReplayed",
            CatalogEvent::OrganisationSaved { .. } => "OrganisationSaved",
            CatalogEvent::OrganisationDeleted { .. } => "OrganisationDeleted",
            CatalogEvent::SystemSaved { .. } => "SystemSaved",
            CatalogEvent::SystemDeleted { .. } => "SystemDeleted",
            CatalogEvent::EndpointSaved { .. } => "EndpointSaved",
            CatalogEvent::EndpointDeleted { .. } => "EndpointDeleted",
        }
    }

    fn stream(&self) -> String {
        match self {
            CatalogEvent::SchemaRegistered { event_type, .. }
            | CatalogEvent::CompatibilitySet { event_type, .. } => format!("schema-{event_type}"),
            CatalogEvent::SubscriptionCreated { spec, .. }
            | CatalogEvent::SubscriptionUpdated { spec } => format!("subscription-{}", spec.name),
            CatalogEvent::SubscriptionDeleted { name }
            | CatalogEvent::SubscriptionReplayed { name, .. } => format!("subscription-{name}"),
            CatalogEvent::OrganisationSaved { org } => format!("org-{}", org.id),
            CatalogEvent::OrganisationDeleted { id } => format!("org-{id}"),
            CatalogEvent::SystemSaved { system } => format!("system-{}/{}", system.org, system.id),
            CatalogEvent::SystemDeleted { org, id } => format!("system-{org}/{id}"),
            CatalogEvent::EndpointSaved { endpoint } => format!(
                "endpoint-{}/{}/{}",
                endpoint.org, endpoint.system, endpoint.id
            ),
            CatalogEvent::EndpointDeleted { org, system, id } => {
                format!("endpoint-{org}/{system}/{id}")
            }
        }
    }
}

/// The newest events, by seq.
#[derive(Debug, Default)]
struct Recent {
    events: VecDeque<Arc<LoggedEvent>>,
}

impl Recent {
    /// Events `from..=to` if the memory still holds `from`.
    fn range(&self, from: i64, to: i64) -> Option<Vec<Arc<LoggedEvent>>> {
        let first = self.events.front()?.seq;
        if from < first {
            return None;
        }
        let start = usize::try_from(from - first).ok()?;
        Some(
            self.events
                .iter()
                .skip(start)
                .take_while(|e| e.seq <= to)
                .cloned()
                .collect(),
        )
    }
}

struct LogRequest {
    events: Vec<LoggedEvent>,
    reply: oneshot::Sender<Result<Vec<Published>, BusError>>,
}

/// How far a subscription got.
#[derive(Debug, Default)]
struct Progress {
    state: Mutex<ProgressState>,
    committed: AtomicI64,
    delivered: AtomicU64,
    failed: AtomicU64,
    dead_letters: AtomicU64,
}

#[derive(Debug, Default)]
struct ProgressState {
    dispatched: i64,
    pending: BTreeSet<i64>,
}

impl Progress {
    fn starting_at(cursor: i64) -> Self {
        let p = Self::default();
        p.state.lock().dispatched = cursor;
        p.committed.store(cursor, Ordering::Relaxed);
        p
    }

    fn recompute(&self, s: &ProgressState) {
        let c = s.pending.first().map_or(s.dispatched, |first| first - 1);
        self.committed.store(c, Ordering::Relaxed);
    }

    fn start(&self, seq: i64) {
        let mut s = self.state.lock();
        s.pending.insert(seq);
        s.dispatched = s.dispatched.max(seq);
        self.recompute(&s);
    }

    fn pass(&self, seq: i64) {
        let mut s = self.state.lock();
        s.dispatched = s.dispatched.max(seq);
        self.recompute(&s);
    }

    fn finish(&self, seq: i64) {
        let mut s = self.state.lock();
        s.pending.remove(&seq);
        self.recompute(&s);
    }

    fn committed(&self) -> i64 {
        self.committed.load(Ordering::Relaxed)
    }
}

#[derive(Debug)]
struct Worker {
    stop: watch::Sender<bool>,
    handle: JoinHandle<()>,
}

#[derive(Debug)]
struct SubscriptionState {
    spec: SubscriptionSpec,
    progress: Arc<Progress>,
    worker: Option<Worker>,
}

/// The interoperability bus.
#[derive(Debug, Clone)]
pub struct Bus {
    inner: Arc<Inner>,
}

struct Inner {
    lake: Arc<Lake>,
    engine: QueryEngine,
    catalog: Arc<dyn Platform>,
    settings: BusSettings,
    registry: RwLock<SchemaRegistry>,
    /// The service catalog (read by anyone; changed under `catalog_writes`).
    catalog_data: RwLock<Catalog>,
    /// Serialises the catalog's check, record and apply steps.
    catalog_writes: tokio::sync::Mutex<()>,
    subscriptions: tokio::sync::Mutex<BTreeMap<String, SubscriptionState>>,
    log_tx: mpsc::Sender<LogRequest>,
    recent: RwLock<Recent>,
    head: watch::Sender<i64>,
    audit_tx: mpsc::Sender<DeliveryRecord>,
    http: reqwest::Client,
    mqtt: Option<Arc<dyn MessagePublisher>>,
    /// The producers of the Kafka targets, shared between them.
    kafka: KafkaProducers,
    stats: BusStats,
    /// Stops the workers and redeliveries.
    shutdown: watch::Sender<bool>,
    /// Then the log and audit writers, which write what they hold first.
    closing: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bus")
            .field("head", &*self.head.borrow())
            .field("state_dir", &self.settings.state_dir)
            .finish_non_exhaustive()
    }
}

fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// TLS for https webhooks: the ring provider and the system's root certificates (none
/// found: https targets fail with a certificate error, named in the audit trail).
fn tls_config() -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        tracing::warn!("no system root certificates: https webhooks of the bus will fail");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// The bus's views: flow per event type and source, and per route (subscription) the
/// deliveries, failures, error rate and latency percentiles, per minute.
fn views() -> Vec<(&'static str, civiclake_query::ViewDef)> {
    let minute = "date_bin(INTERVAL '1 minute', {t}, TIMESTAMP '1970-01-01T00:00:00Z')";
    vec![
        (
            "bus_flow",
            civiclake_query::ViewDef {
                sql: format!(
                    "SELECT {} AS time, \"type\", source, count(*) AS events \
                     FROM {EVENTS_TABLE} GROUP BY 1, 2, 3",
                    minute.replace("{t}", "to_timestamp_micros(received_us)")
                ),
                tables: vec![EVENTS_TABLE.to_string()],
                description: "Events taken by the bus per minute (of arrival), per type and source".into(),
            },
        ),
        (
            "bus_route_stats",
            civiclake_query::ViewDef {
                sql: format!(
                    "SELECT {} AS time, subscription, target, \
                     count(*) FILTER (WHERE status = 'delivered') AS delivered, \
                     count(*) FILTER (WHERE status <> 'delivered') AS failed_attempts, \
                     count(*) FILTER (WHERE status = 'dead_letter') AS dead_letters, \
                     CAST(count(*) FILTER (WHERE status <> 'delivered') AS DOUBLE) / CAST(count(*) AS DOUBLE) AS error_rate, \
                     approx_percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms) AS latency_p50_ms, \
                     approx_percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms) AS latency_p95_ms, \
                     approx_percentile_cont(0.99) WITHIN GROUP (ORDER BY latency_ms) AS latency_p99_ms \
                     FROM {DELIVERIES_TABLE} GROUP BY 1, 2, 3",
                    minute.replace("{t}", "time")
                ),
                tables: vec![DELIVERIES_TABLE.to_string()],
                description: "Per minute and route (subscription and target): deliveries, failed attempts, dead letters, error rate (failed attempts / attempts) and attempt latency percentiles".into(),
            },
        ),
    ]
}

/// The idempotency key of an event: the same for every delivery of it (a CloudEvent is
/// identified by its source and id).
pub fn idempotency_key(event: &CloudEvent) -> String {
    let mut h = Sha256::new();
    h.update(event.source.as_bytes());
    h.update([0u8]);
    h.update(event.id.as_bytes());
    hex::encode(&h.finalize()[..16])
}

/// The first Int64 value of a one-row answer (NULL → None).
fn first_int(batches: &[RecordBatch]) -> Result<Option<i64>, String> {
    let Some(batch) = batches.iter().find(|b| b.num_rows() > 0) else {
        return Ok(None);
    };
    let col = cast(batch.column(0), &DataType::Int64).map_err(|e| e.to_string())?;
    let col = col.as_primitive::<Int64Type>();
    Ok((!col.is_null(0)).then(|| col.value(0)))
}

fn cursor_path(dir: &Path, name: &str) -> PathBuf {
    dir.join("cursors").join(name)
}

fn read_cursor(dir: &Path, name: &str) -> Option<i64> {
    std::fs::read_to_string(cursor_path(dir, name))
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn write_cursor(dir: &Path, name: &str, cursor: i64) -> std::io::Result<()> {
    let path = cursor_path(dir, name);
    let parent = path
        .parent()
        .ok_or_else(|| std::io::Error::other("no cursor folder"))?;
    std::fs::create_dir_all(parent)?;
    let tmp = parent.join(format!(".{name}.tmp"));
    {
        let mut f = std::fs::File::create(&tmp)?;
        std::io::Write::write_all(&mut f, cursor.to_string().as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, &path)
}

impl Bus {
    /// Starts the bus over `lake`: makes sure its tables exist, replays its catalog from
    /// `bus_catalog_events` (through `catalog`, the bus module's Platform), and starts the
    /// workers of the subscriptions where their cursors left them.
    pub async fn start(
        lake: Arc<Lake>,
        engine: QueryEngine,
        catalog: Arc<dyn Platform>,
        settings: BusSettings,
        mqtt: Option<Arc<dyn MessagePublisher>>,
    ) -> Result<Self, BusError> {
        let unavailable = |e: &dyn std::fmt::Display| BusError::Unavailable(e.to_string());
        lake.ensure_table(EVENTS_TABLE, &log::events_schema())
            .map_err(|e| unavailable(&e))?;
        lake.ensure_table(DELIVERIES_TABLE, &audit::deliveries_schema())
            .map_err(|e| unavailable(&e))?;
        lake.ensure_table(DEAD_LETTERS_TABLE, &audit::dead_letters_schema())
            .map_err(|e| unavailable(&e))?;
        for (name, def) in views() {
            engine
                .register_view(name, def)
                .map_err(|e| unavailable(&e))?;
        }
        std::fs::create_dir_all(settings.state_dir.join("cursors"))
            .map_err(|e| unavailable(&format!("{}: {e}", settings.state_dir.display())))?;
        let head_seq = {
            let r = engine
                .sql(&format!("SELECT max(seq) FROM {EVENTS_TABLE}"))
                .await
                .map_err(|e| unavailable(&e))?;
            first_int(&r.batches)
                .map_err(|e| unavailable(&e))?
                .unwrap_or(0)
        };
        let (log_tx, log_rx) = mpsc::channel(1024);
        let (audit_tx, audit_rx) = mpsc::channel(100_000);
        let (head, _) = watch::channel(head_seq);
        let (shutdown, _) = watch::channel(false);
        let (closing, _) = watch::channel(false);
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls_config().map_err(|e| unavailable(&e))?)
            .pool_max_idle_per_host(256)
            .user_agent(concat!("civiclake-bus/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| unavailable(&e))?;
        let inner = Arc::new(Inner {
            lake,
            engine,
            catalog,
            settings,
            registry: RwLock::new(SchemaRegistry::default()),
            catalog_data: RwLock::new(Catalog::default()),
            catalog_writes: tokio::sync::Mutex::new(()),
            subscriptions: tokio::sync::Mutex::new(BTreeMap::new()),
            log_tx,
            recent: RwLock::new(Recent::default()),
            head,
            audit_tx,
            http,
            mqtt,
            kafka: KafkaProducers::default(),
            stats: BusStats::default(),
            shutdown,
            closing,
            tasks: Mutex::new(Vec::new()),
        });
        let bus = Bus { inner };
        let created = bus.replay_catalog().await?;
        {
            let mut tasks = bus.inner.tasks.lock();
            tasks.push(tokio::spawn(log_writer(
                bus.inner.clone(),
                log_rx,
                head_seq + 1,
            )));
            tasks.push(tokio::spawn(audit_writer(bus.inner.clone(), audit_rx)));
        }
        let mut subs = bus.inner.subscriptions.lock().await;
        for (name, (spec, start_seq)) in created {
            let cursor = read_cursor(&bus.inner.settings.state_dir, &name).unwrap_or(start_seq);
            let progress = Arc::new(Progress::starting_at(cursor));
            let worker = if spec.paused {
                None
            } else {
                Some(bus.spawn_worker(&spec, progress.clone(), None)?)
            };
            subs.insert(
                name,
                SubscriptionState {
                    spec,
                    progress,
                    worker,
                },
            );
        }
        drop(subs);
        tracing::info!(head = head_seq, "the bus is running");
        Ok(bus)
    }

    /// Folds `bus_catalog_events` into the registry; returns the subscriptions that exist,
    /// with the seq they started after.
    async fn replay_catalog(&self) -> Result<BTreeMap<String, (SubscriptionSpec, i64)>, BusError> {
        let table = format!("{}_catalog_events", self.inner.catalog.module());
        let answer = self
            .inner
            .catalog
            .query(&format!(
                "SELECT payload FROM {table} ORDER BY time, stream_id, version"
            ))
            .await
            .map_err(|e| BusError::Unavailable(format!("reading {table}: {e}")))?;
        let mut subs = BTreeMap::new();
        let mut registry = SchemaRegistry::default();
        let mut catalog = Catalog::default();
        for batch in &answer.batches {
            let col = cast(batch.column(0), &DataType::Utf8)
                .map_err(|e| BusError::Unavailable(e.to_string()))?;
            let col = col.as_string::<i32>();
            for i in 0..col.len() {
                let event: CatalogEvent = match serde_json::from_str(col.value(i)) {
                    Ok(e) => e,
                    Err(e) => {
                        tracing::error!(error = %e, "{table}: an event the bus cannot read is skipped");
                        continue;
                    }
                };
                match event {
                    CatalogEvent::SchemaRegistered {
                        event_type,
                        schema,
                        registered_micros,
                    } => {
                        if let Err(e) = registry.restore(&event_type, schema, registered_micros) {
                            tracing::error!(error = %e, event_type, "{table}: a stored schema cannot be restored");
                        }
                    }
                    CatalogEvent::CompatibilitySet { event_type, mode } => {
                        if let Err(e) = registry.set_compatibility(&event_type, mode) {
                            tracing::error!(error = %e, event_type, "{table}: a stored mode cannot be restored");
                        }
                    }
                    CatalogEvent::SubscriptionCreated { spec, start_seq } => {
                        subs.insert(spec.name.clone(), (spec, start_seq));
                    }
                    CatalogEvent::SubscriptionUpdated { spec } => {
                        if let Some(entry) = subs.get_mut(&spec.name) {
                            entry.0 = spec;
                        }
                    }
                    CatalogEvent::SubscriptionDeleted { name } => {
                        subs.remove(&name);
                    }
                    CatalogEvent::SubscriptionReplayed { .. } => {}
                    CatalogEvent::OrganisationSaved { org } => {
                        catalog.put_organisation(org);
                    }
                    CatalogEvent::OrganisationDeleted { id } => catalog.delete_organisation(&id),
                    CatalogEvent::SystemSaved { system } => {
                        catalog.put_system(system);
                    }
                    CatalogEvent::SystemDeleted { org, id } => {
                        let _ = catalog.delete_system(&org, &id);
                    }
                    CatalogEvent::EndpointSaved { endpoint } => {
                        catalog.put_endpoint(*endpoint);
                    }
                    CatalogEvent::EndpointDeleted { org, system, id } => {
                        let _ = catalog.delete_endpoint(&org, &system, &id);
                    }
                }
            }
        }
        *self.inner.registry.write() = registry;
        *self.inner.catalog_data.write() = catalog;
        Ok(subs)
    }

    async fn record(&self, actor: &str, event: CatalogEvent) -> Result<(), BusError> {
        let payload = serde_json::to_value(&event).map_err(|e| BusError::Invalid(e.to_string()))?;
        let stream = event.stream();
        self.inner
            .catalog
            .append_events(
                &stream,
                ExpectedVersion::Any,
                vec![NewEvent::new(event.type_name(), 1, actor, payload)],
            )
            .await
            .map_err(|e| BusError::Unavailable(format!("the bus catalog: {e}")))?;
        Ok(())
    }

    /// Counters since start.
    pub fn stats(&self) -> &BusStats {
        &self.inner.stats
    }

    /// The newest seq of the log.
    pub fn head(&self) -> i64 {
        *self.inner.head.borrow()
    }

    // ---- schemas -------------------------------------------------------------------------

    /// Registers a schema version of `event_type` (checked against the type's compatibility
    /// mode); returns the version and whether it is new.
    pub async fn register_schema(
        &self,
        actor: &str,
        event_type: &str,
        schema: Value,
    ) -> Result<crate::schema::Registered, BusError> {
        let now = now_micros();
        // Checked on a copy, stored, then applied: a schema is in force only once recorded.
        let mut copy = self.inner.registry.read().clone();
        let registered = copy.register(event_type, schema.clone(), now)?;
        if registered.created {
            self.record(
                actor,
                CatalogEvent::SchemaRegistered {
                    event_type: event_type.to_string(),
                    schema: schema.clone(),
                    registered_micros: now,
                },
            )
            .await?;
            let mut reg = self.inner.registry.write();
            reg.register(event_type, schema, now)?;
        }
        Ok(registered)
    }

    /// Sets the compatibility mode of `event_type`.
    pub async fn set_compatibility(
        &self,
        actor: &str,
        event_type: &str,
        mode: Compatibility,
    ) -> Result<(), BusError> {
        self.record(
            actor,
            CatalogEvent::CompatibilitySet {
                event_type: event_type.to_string(),
                mode,
            },
        )
        .await?;
        self.inner
            .registry
            .write()
            .set_compatibility(event_type, mode)?;
        Ok(())
    }

    /// Runs `f` over the schema registry.
    pub fn with_registry<T>(&self, f: impl FnOnce(&SchemaRegistry) -> T) -> T {
        f(&self.inner.registry.read())
    }

    // ---- catalog ---------------------------------------------------------------------------

    /// Runs `f` over the service catalog.
    pub fn with_catalog<T>(&self, f: impl FnOnce(&Catalog) -> T) -> T {
        f(&self.inner.catalog_data.read())
    }

    /// Adds or replaces organisation `id`; true when it is new.
    pub async fn put_organisation(
        &self,
        actor: &str,
        id: &str,
        mut org: Organisation,
    ) -> Result<bool, BusError> {
        let _w = self.inner.catalog_writes.lock().await;
        self.inner
            .catalog_data
            .read()
            .check_organisation(id, &mut org)?;
        self.record(actor, CatalogEvent::OrganisationSaved { org: org.clone() })
            .await?;
        Ok(self.inner.catalog_data.write().put_organisation(org))
    }

    /// Removes organisation `id`: it must have no systems and own no subscriptions.
    pub async fn delete_organisation(&self, actor: &str, id: &str) -> Result<(), BusError> {
        let _w = self.inner.catalog_writes.lock().await;
        self.inner
            .catalog_data
            .read()
            .check_delete_organisation(id)?;
        let owned: Vec<String> = {
            let subs = self.inner.subscriptions.lock().await;
            subs.values()
                .filter(|s| s.spec.owner.as_deref() == Some(id))
                .map(|s| s.spec.name.clone())
                .collect()
        };
        if !owned.is_empty() {
            return Err(BusError::Conflict(format!(
                "organisation {id} still owns subscriptions: {}; delete them first",
                owned.join(", ")
            )));
        }
        self.record(
            actor,
            CatalogEvent::OrganisationDeleted { id: id.to_string() },
        )
        .await?;
        self.inner.catalog_data.write().delete_organisation(id);
        Ok(())
    }

    /// Adds or replaces system `org`/`id`; true when it is new.
    pub async fn put_system(
        &self,
        actor: &str,
        org: &str,
        id: &str,
        mut system: System,
    ) -> Result<bool, BusError> {
        let _w = self.inner.catalog_writes.lock().await;
        self.inner
            .catalog_data
            .read()
            .check_system(org, id, &mut system)?;
        self.record(
            actor,
            CatalogEvent::SystemSaved {
                system: system.clone(),
            },
        )
        .await?;
        Ok(self.inner.catalog_data.write().put_system(system))
    }

    /// Removes system `org`/`id` and its endpoints; no subscription may name it.
    pub async fn delete_system(&self, actor: &str, org: &str, id: &str) -> Result<(), BusError> {
        let _w = self.inner.catalog_writes.lock().await;
        self.inner.catalog_data.read().system(org, id)?;
        let used: Vec<String> = {
            let subs = self.inner.subscriptions.lock().await;
            subs.values()
                .filter(|s| {
                    s.spec.owner.as_deref() == Some(org) && s.spec.system.as_deref() == Some(id)
                })
                .map(|s| s.spec.name.clone())
                .collect()
        };
        if !used.is_empty() {
            return Err(BusError::Conflict(format!(
                "system {org}/{id} receives through subscriptions {}; delete or change them first",
                used.join(", ")
            )));
        }
        self.record(
            actor,
            CatalogEvent::SystemDeleted {
                org: org.to_string(),
                id: id.to_string(),
            },
        )
        .await?;
        self.inner.catalog_data.write().delete_system(org, id)?;
        Ok(())
    }

    /// Stores endpoint `org`/`system`/`id` with its OpenAPI or WSDL `document`; returns it
    /// and whether it is new.
    pub async fn put_endpoint(
        &self,
        actor: &str,
        (org, system, id): (&str, &str, &str),
        url: Option<String>,
        document: String,
    ) -> Result<(Endpoint, bool), BusError> {
        let _w = self.inner.catalog_writes.lock().await;
        let endpoint = self.inner.catalog_data.read().check_endpoint(
            org,
            system,
            id,
            url,
            document,
            now_micros(),
        )?;
        self.record(
            actor,
            CatalogEvent::EndpointSaved {
                endpoint: Box::new(endpoint.clone()),
            },
        )
        .await?;
        let created = self
            .inner
            .catalog_data
            .write()
            .put_endpoint(endpoint.clone());
        Ok((endpoint, created))
    }

    /// Removes endpoint `org`/`system`/`id`.
    pub async fn delete_endpoint(
        &self,
        actor: &str,
        (org, system, id): (&str, &str, &str),
    ) -> Result<(), BusError> {
        let _w = self.inner.catalog_writes.lock().await;
        self.inner.catalog_data.read().endpoint(org, system, id)?;
        self.record(
            actor,
            CatalogEvent::EndpointDeleted {
                org: org.to_string(),
                system: system.to_string(),
                id: id.to_string(),
            },
        )
        .await?;
        self.inner
            .catalog_data
            .write()
            .delete_endpoint(org, system, id)?;
        Ok(())
    }

    /// The ecosystem map: the catalog, the subscriptions, and the sources and types the log
    /// took in the last `days` days.
    pub async fn ecosystem_map(&self, days: u32) -> Result<EcosystemMap, BusError> {
        let since = now_micros() - i64::from(days) * 86_400_000_000;
        let answer = self
            .inner
            .engine
            .sql(&format!(
                "SELECT source, \"type\", count(*) AS events FROM {EVENTS_TABLE} \
                 WHERE received_us >= {since} GROUP BY 1, 2 ORDER BY 1, 2"
            ))
            .await
            .map_err(|e| BusError::Unavailable(e.to_string()))?;
        let mut observed = Vec::new();
        for batch in &answer.batches {
            let col = |i: usize| cast(batch.column(i), &DataType::Utf8);
            let (source, ty) = (col(0), col(1));
            let events = cast(batch.column(2), &DataType::Int64);
            let (Ok(source), Ok(ty), Ok(events)) = (source, ty, events) else {
                return Err(BusError::Unavailable(
                    "unexpected answer from the log".into(),
                ));
            };
            let (source, ty) = (source.as_string::<i32>(), ty.as_string::<i32>());
            let events = events.as_primitive::<Int64Type>();
            for i in 0..batch.num_rows() {
                observed.push(Observed {
                    source: source.value(i).to_string(),
                    event_type: ty.value(i).to_string(),
                    events: u64::try_from(events.value(i)).unwrap_or(0),
                });
            }
        }
        let specs: Vec<SubscriptionSpec> = {
            let subs = self.inner.subscriptions.lock().await;
            subs.values().map(|s| s.spec.clone()).collect()
        };
        let catalog = self.inner.catalog_data.read();
        Ok(crate::ecosystem::build(&catalog, &specs, &observed))
    }

    // ---- publish ---------------------------------------------------------------------------

    /// Validates `events` and appends them to the log (durably) as published by
    /// `publisher`; all or none. An event without `time` gets the time the bus took it.
    pub async fn publish(
        &self,
        publisher: &str,
        events: Vec<CloudEvent>,
    ) -> Result<Vec<Published>, BusError> {
        if *self.inner.shutdown.borrow() {
            return Err(BusError::Stopped);
        }
        if events.is_empty() {
            return Err(BusError::Invalid("no events to publish".into()));
        }
        if events.len() > MAX_EVENTS_PER_PUBLISH {
            return Err(BusError::Invalid(format!(
                "{} events in one publish; at most {MAX_EVENTS_PER_PUBLISH}",
                events.len()
            )));
        }
        let now = now_micros();
        let mut logged = Vec::with_capacity(events.len());
        {
            let registry = self.inner.registry.read();
            for (index, mut event) in events.into_iter().enumerate() {
                let checked = event
                    .validate()
                    .map_err(|e| BusError::Invalid(e.to_string()))
                    .and_then(|()| {
                        registry
                            .validate_event(
                                &event.ty,
                                event.dataschema.as_deref(),
                                event.data.as_ref(),
                            )
                            .map_err(BusError::from)
                    });
                let version = match checked {
                    Ok(v) => v,
                    Err(e) => {
                        self.inner.stats.rejected.fetch_add(1, Ordering::Relaxed);
                        return Err(BusError::Event {
                            index,
                            id: event.id,
                            source: Box::new(e),
                        });
                    }
                };
                event.time.get_or_insert(now);
                logged.push(LoggedEvent {
                    seq: 0,
                    received_micros: now,
                    publisher: publisher.to_string(),
                    schema_version: version,
                    event,
                });
            }
        }
        let (reply, answer) = oneshot::channel();
        self.inner
            .log_tx
            .send(LogRequest {
                events: logged,
                reply,
            })
            .await
            .map_err(|_| BusError::Stopped)?;
        answer.await.map_err(|_| BusError::Stopped)?
    }

    // ---- subscriptions ---------------------------------------------------------------------

    /// Creates a subscription; it receives the events published from now on, or (with
    /// `from_beginning`) the whole log.
    pub async fn create_subscription(
        &self,
        actor: &str,
        spec: SubscriptionSpec,
        from_beginning: bool,
    ) -> Result<SubscriptionStatus, BusError> {
        spec.validate().map_err(BusError::Invalid)?;
        self.check_owner(&spec)?;
        self.inner.target(&spec.target).map_err(BusError::Invalid)?;
        let mut subs = self.inner.subscriptions.lock().await;
        if subs.contains_key(&spec.name) {
            return Err(BusError::Conflict(format!(
                "there is a subscription {} already: PUT to change it",
                spec.name
            )));
        }
        let start_seq = if from_beginning { 0 } else { self.head() };
        self.record(
            actor,
            CatalogEvent::SubscriptionCreated {
                spec: spec.clone(),
                start_seq,
            },
        )
        .await?;
        write_cursor(&self.inner.settings.state_dir, &spec.name, start_seq)
            .map_err(|e| BusError::Unavailable(format!("cursor of {}: {e}", spec.name)))?;
        let progress = Arc::new(Progress::starting_at(start_seq));
        let worker = if spec.paused {
            None
        } else {
            Some(self.spawn_worker(&spec, progress.clone(), None)?)
        };
        let name = spec.name.clone();
        subs.insert(
            name.clone(),
            SubscriptionState {
                spec,
                progress,
                worker,
            },
        );
        Ok(self.status_of(&subs[&name]))
    }

    /// Replaces a subscription's definition (filter, target, retries, paused...); it keeps
    /// its cursor.
    pub async fn update_subscription(
        &self,
        actor: &str,
        spec: SubscriptionSpec,
    ) -> Result<SubscriptionStatus, BusError> {
        spec.validate().map_err(BusError::Invalid)?;
        self.check_owner(&spec)?;
        self.inner.target(&spec.target).map_err(BusError::Invalid)?;
        let mut subs = self.inner.subscriptions.lock().await;
        let state = subs
            .get_mut(&spec.name)
            .ok_or_else(|| BusError::NotFound(format!("there is no subscription {}", spec.name)))?;
        self.record(
            actor,
            CatalogEvent::SubscriptionUpdated { spec: spec.clone() },
        )
        .await?;
        if let Some(w) = state.worker.take() {
            stop_worker(w).await;
        }
        let cursor = state.progress.committed();
        self.save_cursor(&spec.name, cursor);
        state.progress = Arc::new(Progress::starting_at(cursor));
        state.spec = spec;
        if !state.spec.paused {
            state.worker = Some(self.spawn_worker(&state.spec, state.progress.clone(), None)?);
        }
        Ok(self.status_of(state))
    }

    /// Deletes a subscription (its deliveries and dead letters stay in the lake).
    pub async fn delete_subscription(&self, actor: &str, name: &str) -> Result<(), BusError> {
        let mut subs = self.inner.subscriptions.lock().await;
        if !subs.contains_key(name) {
            return Err(BusError::NotFound(format!(
                "there is no subscription {name}"
            )));
        }
        self.record(
            actor,
            CatalogEvent::SubscriptionDeleted {
                name: name.to_string(),
            },
        )
        .await?;
        if let Some(state) = subs.remove(name)
            && let Some(w) = state.worker
        {
            stop_worker(w).await;
        }
        let _ = std::fs::remove_file(cursor_path(&self.inner.settings.state_dir, name));
        Ok(())
    }

    /// The owner of a subscription is an organisation of the catalog, its system one of
    /// that organisation's systems.
    fn check_owner(&self, spec: &SubscriptionSpec) -> Result<(), BusError> {
        let catalog = self.inner.catalog_data.read();
        match (&spec.owner, &spec.system) {
            (Some(org), Some(system)) => {
                catalog.system(org, system)?;
            }
            (Some(org), None) => {
                catalog.organisation(org)?;
            }
            _ => {}
        }
        Ok(())
    }

    /// Every subscription with its progress.
    pub async fn subscriptions(&self) -> Vec<SubscriptionStatus> {
        let subs = self.inner.subscriptions.lock().await;
        subs.values().map(|s| self.status_of(s)).collect()
    }

    /// One subscription with its progress.
    pub async fn subscription(&self, name: &str) -> Result<SubscriptionStatus, BusError> {
        let subs = self.inner.subscriptions.lock().await;
        subs.get(name)
            .map(|s| self.status_of(s))
            .ok_or_else(|| BusError::NotFound(format!("there is no subscription {name}")))
    }

    fn status_of(&self, s: &SubscriptionState) -> SubscriptionStatus {
        let head = self.head();
        let cursor = s.progress.committed();
        SubscriptionStatus {
            spec: s.spec.clone(),
            cursor,
            head,
            lag: (head - cursor).max(0),
            delivered: s.progress.delivered.load(Ordering::Relaxed),
            failed: s.progress.failed.load(Ordering::Relaxed),
            dead_letters: s.progress.dead_letters.load(Ordering::Relaxed),
        }
    }

    fn save_cursor(&self, name: &str, cursor: i64) {
        if let Err(e) = write_cursor(&self.inner.settings.state_dir, name, cursor) {
            tracing::warn!(subscription = name, error = %e, "cannot save the cursor");
        }
    }

    /// Moves a subscription back to `from` and delivers the log from there again. Returns
    /// the replay's id (in `bus_deliveries.replay` and the `Civiclake-Replay` header) and the
    /// first seq replayed.
    pub async fn replay(
        &self,
        actor: &str,
        name: &str,
        from: ReplayFrom,
    ) -> Result<(String, i64), BusError> {
        let from_seq = match &from {
            ReplayFrom::Seq(s) if *s >= 1 => *s,
            ReplayFrom::Seq(s) => {
                return Err(BusError::Invalid(format!("seq {s}: the log starts at 1")));
            }
            ReplayFrom::EventId(id) => self
                .min_seq(&format!("id = {}", sql_string(id)))
                .await?
                .ok_or_else(|| BusError::NotFound(format!("no event {id:?} in the log")))?,
            ReplayFrom::Time(t) => {
                let micros = chrono::DateTime::parse_from_rfc3339(t)
                    .map_err(|e| BusError::Invalid(format!("{t:?} is not an RFC 3339 time: {e}")))?
                    .timestamp_micros();
                self.min_seq(&format!("time >= to_timestamp_micros({micros})"))
                    .await?
                    .ok_or_else(|| {
                        BusError::NotFound(format!("no event at or after {t} in the log"))
                    })?
            }
        };
        let head = self.head();
        if from_seq > head + 1 {
            return Err(BusError::Invalid(format!(
                "seq {from_seq} is past the end of the log ({head})"
            )));
        }
        let replay = format!("replay-{}", now_micros());
        let mut subs = self.inner.subscriptions.lock().await;
        let state = subs
            .get_mut(name)
            .ok_or_else(|| BusError::NotFound(format!("there is no subscription {name}")))?;
        self.record(
            actor,
            CatalogEvent::SubscriptionReplayed {
                name: name.to_string(),
                from_seq,
                replay: replay.clone(),
            },
        )
        .await?;
        if let Some(w) = state.worker.take() {
            stop_worker(w).await;
        }
        let cursor = from_seq - 1;
        self.save_cursor(name, cursor);
        state.progress = Arc::new(Progress::starting_at(cursor));
        if !state.spec.paused {
            state.worker = Some(self.spawn_worker(
                &state.spec,
                state.progress.clone(),
                Some((replay.clone(), head)),
            )?);
        }
        Ok((replay, from_seq))
    }

    async fn min_seq(&self, condition: &str) -> Result<Option<i64>, BusError> {
        let r = self
            .inner
            .engine
            .sql(&format!(
                "SELECT min(seq) FROM {EVENTS_TABLE} WHERE {condition}"
            ))
            .await
            .map_err(|e| BusError::Unavailable(e.to_string()))?;
        first_int(&r.batches).map_err(BusError::Unavailable)
    }

    /// Delivers the event at `seq` to subscription `name` once more (e.g. a dead letter
    /// after the receiver was fixed), out of order, with the subscription's retries. Returns
    /// the replay id.
    pub async fn redeliver(&self, name: &str, seq: i64) -> Result<String, BusError> {
        let spec = {
            let subs = self.inner.subscriptions.lock().await;
            subs.get(name)
                .map(|s| s.spec.clone())
                .ok_or_else(|| BusError::NotFound(format!("there is no subscription {name}")))?
        };
        let events = self
            .inner
            .read_log(seq, seq)
            .await
            .map_err(BusError::Unavailable)?;
        let event = events
            .into_iter()
            .next()
            .ok_or_else(|| BusError::NotFound(format!("no event at seq {seq} in the log")))?;
        let target = self.inner.target(&spec.target).map_err(BusError::Invalid)?;
        let replay = format!("redeliver-{seq}-{}", now_micros());
        let inner = self.inner.clone();
        let label = replay.clone();
        let progress = Arc::new(Progress::default());
        let stop = self.inner.shutdown.subscribe();
        tokio::spawn(async move {
            let ctx = LaneContext {
                inner,
                spec: Arc::new(spec),
                target,
                progress,
                replay: Some((label, i64::MAX)),
            };
            deliver_one(&ctx, &event, stop).await;
        });
        Ok(replay)
    }

    fn spawn_worker(
        &self,
        spec: &SubscriptionSpec,
        progress: Arc<Progress>,
        replay: Option<(String, i64)>,
    ) -> Result<Worker, BusError> {
        let target = self.inner.target(&spec.target).map_err(BusError::Invalid)?;
        let (stop, stop_rx) = watch::channel(false);
        let ctx = LaneContext {
            inner: self.inner.clone(),
            spec: Arc::new(spec.clone()),
            target,
            progress,
            replay,
        };
        let handle = tokio::spawn(run_worker(ctx, stop_rx));
        Ok(Worker { stop, handle })
    }

    /// Stops the workers (saving their cursors), then the log and audit writers (writing
    /// what they hold).
    pub async fn stop(&self) {
        self.inner.shutdown.send_replace(true);
        let mut subs = self.inner.subscriptions.lock().await;
        for (name, state) in subs.iter_mut() {
            if let Some(w) = state.worker.take() {
                stop_worker(w).await;
            }
            self.save_cursor(name, state.progress.committed());
        }
        drop(subs);
        self.inner.closing.send_replace(true);
        let tasks: Vec<JoinHandle<()>> = std::mem::take(&mut *self.inner.tasks.lock());
        for t in tasks {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
        self.inner.kafka.close().await;
    }
}

async fn stop_worker(w: Worker) {
    let _ = w.stop.send(true);
    let _ = w.handle.await;
}

impl Inner {
    /// The target of a subscription.
    fn target(&self, spec: &crate::subscription::TargetSpec) -> Result<Arc<dyn Target>, String> {
        build_target(spec, &self.http, self.mqtt.as_ref(), &self.kafka)
    }

    /// Events `from..=to` of the log, from memory when it still holds them.
    async fn read_log(&self, from: i64, to: i64) -> Result<Vec<Arc<LoggedEvent>>, String> {
        if let Some(events) = self.recent.read().range(from, to) {
            return Ok(events);
        }
        let r = self
            .engine
            .sql(&format!(
                "SELECT {LOG_COLUMNS} FROM {EVENTS_TABLE} WHERE seq >= {from} AND seq <= {to} ORDER BY seq"
            ))
            .await
            .map_err(|e| e.to_string())?;
        Ok(log::from_batches(&r.batches)?
            .into_iter()
            .map(Arc::new)
            .collect())
    }
}

/// Appends what publishers hand in, many requests per lake write.
async fn log_writer(inner: Arc<Inner>, mut rx: mpsc::Receiver<LogRequest>, mut next_seq: i64) {
    let mut closing = inner.closing.subscribe();
    loop {
        if *closing.borrow() {
            rx.close();
        }
        let first = tokio::select! {
            r = rx.recv() => r,
            _ = closing.changed() => {
                if *closing.borrow() {
                    // What was handed in before the close is still written; then no more.
                    rx.close();
                }
                continue;
            }
        };
        let Some(first) = first else { return };
        let mut requests = vec![first];
        let mut n = requests[0].events.len();
        while n < MAX_LOG_BATCH {
            match rx.try_recv() {
                Ok(r) => {
                    n += r.events.len();
                    requests.push(r);
                }
                Err(_) => break,
            }
        }
        let mut seq = next_seq;
        for r in &mut requests {
            for e in &mut r.events {
                e.seq = seq;
                seq += 1;
            }
        }
        let all: Vec<LoggedEvent> = requests
            .iter()
            .flat_map(|r| r.events.iter().cloned())
            .collect();
        let written = match log::to_batch(&all) {
            Ok(batch) => inner
                .lake
                .write(vec![(EVENTS_TABLE.to_string(), batch)])
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match written {
            Ok(_) => {
                next_seq = seq;
                {
                    let mut recent = inner.recent.write();
                    for e in all {
                        recent.events.push_back(Arc::new(e));
                    }
                    while recent.events.len() > inner.settings.recent_events {
                        recent.events.pop_front();
                    }
                }
                inner.stats.published.fetch_add(n as u64, Ordering::Relaxed);
                inner.head.send_replace(seq - 1);
                for r in requests {
                    let published = r
                        .events
                        .iter()
                        .map(|e| Published {
                            id: e.event.id.clone(),
                            seq: e.seq,
                            schema_version: e.schema_version,
                        })
                        .collect();
                    let _ = r.reply.send(Ok(published));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, events = n, "the bus log could not be written");
                for r in requests {
                    let _ = r.reply.send(Err(BusError::Unavailable(e.clone())));
                }
            }
        }
    }
}

/// Writes delivery records in batches; keeps them (and retries) while the lake refuses.
async fn audit_writer(inner: Arc<Inner>, mut rx: mpsc::Receiver<DeliveryRecord>) {
    let mut held: Vec<DeliveryRecord> = Vec::new();
    let mut closed = false;
    let mut closing = inner.closing.subscribe();
    while !closed || !held.is_empty() {
        if !closed && *closing.borrow() {
            // The workers have stopped: take what they sent, then end.
            rx.close();
            while let Ok(r) = rx.try_recv() {
                held.push(r);
            }
            closed = true;
        }
        if !closed {
            let deadline = tokio::time::sleep(AUDIT_EVERY);
            tokio::pin!(deadline);
            loop {
                tokio::select! {
                    r = rx.recv() => match r {
                        Some(r) => {
                            held.push(r);
                            if held.len() >= AUDIT_BATCH { break; }
                        }
                        None => { closed = true; break; }
                    },
                    _ = &mut deadline => break,
                    _ = closing.changed(), if !*closing.borrow() => {
                        if *closing.borrow() {
                            // The workers have stopped: take what they sent, then end.
                            rx.close();
                            while let Ok(r) = rx.try_recv() {
                                held.push(r);
                            }
                            closed = true;
                            break;
                        }
                    }
                }
            }
        }
        if held.is_empty() {
            continue;
        }
        let written = match audit::deliveries_batch(&held) {
            Ok(batch) => inner
                .lake
                .write(vec![(DELIVERIES_TABLE.to_string(), batch)])
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match written {
            Ok(_) => held.clear(),
            Err(e) => {
                tracing::warn!(error = %e, rows = held.len(), "bus_deliveries could not be written; retrying");
                if closed {
                    tracing::error!(rows = held.len(), "stopping: delivery records not written");
                    return;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// What a lane needs.
#[derive(Clone)]
struct LaneContext {
    inner: Arc<Inner>,
    spec: Arc<SubscriptionSpec>,
    target: Arc<dyn Target>,
    progress: Arc<Progress>,
    /// A replay's id and the last seq it covers.
    replay: Option<(String, i64)>,
}

/// Reads the log from the cursor and feeds the lanes.
async fn run_worker(ctx: LaneContext, mut stop: watch::Receiver<bool>) {
    let name = ctx.spec.name.clone();
    let lanes = usize::from(ctx.spec.lanes.max(1));
    let mut senders = Vec::with_capacity(lanes);
    let mut handles = Vec::with_capacity(lanes);
    for _ in 0..lanes {
        let (tx, mut rx) = mpsc::channel::<Arc<LoggedEvent>>(LANE_QUEUE);
        senders.push(tx);
        let ctx = ctx.clone();
        let stop = stop.clone();
        handles.push(tokio::spawn(async move {
            while let Some(event) = rx.recv().await {
                if *stop.borrow() {
                    return;
                }
                if deliver_one(&ctx, &event, stop.clone()).await {
                    ctx.progress.finish(event.seq);
                } else {
                    return;
                }
            }
        }));
    }
    let mut head = ctx.inner.head.subscribe();
    let mut next = ctx.progress.committed() + 1;
    let mut saved = ctx.progress.committed();
    let mut last_save = Instant::now();
    let mut round_robin = 0usize;
    loop {
        if *stop.borrow() {
            break;
        }
        let committed = ctx.progress.committed();
        if committed != saved && last_save.elapsed() >= CURSOR_EVERY {
            if let Err(e) = write_cursor(&ctx.inner.settings.state_dir, &name, committed) {
                tracing::warn!(subscription = name, error = %e, "cannot save the cursor");
            }
            saved = committed;
            last_save = Instant::now();
        }
        let newest = *head.borrow_and_update();
        if newest < next {
            tokio::select! {
                _ = head.changed() => {}
                _ = stop.changed() => {}
                // Wakes to save a cursor that moved.
                _ = tokio::time::sleep(CURSOR_EVERY), if committed != saved => {}
            }
            continue;
        }
        let to = newest.min(next + READ_PAGE - 1);
        let events = match ctx.inner.read_log(next, to).await {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(subscription = name, error = %e, "cannot read the bus log; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = stop.changed() => {}
                }
                continue;
            }
        };
        for event in events {
            if event.seq < next {
                continue;
            }
            if !ctx.spec.filter.matches(&event.event) {
                ctx.progress.pass(event.seq);
                next = event.seq + 1;
                continue;
            }
            let lane = match event.partition_key() {
                Some(key) => {
                    let mut h = std::hash::DefaultHasher::new();
                    std::hash::Hash::hash(key, &mut h);
                    (std::hash::Hasher::finish(&h) % lanes as u64) as usize
                }
                None => {
                    round_robin = (round_robin + 1) % lanes;
                    round_robin
                }
            };
            ctx.progress.start(event.seq);
            let seq = event.seq;
            tokio::select! {
                r = senders[lane].send(event) => if r.is_err() { break; },
                _ = stop.changed() => break,
            }
            next = seq + 1;
        }
        // Whatever the page held, the worker is past it (a seq missing from the log is a
        // write that failed and was never acknowledged).
        if next <= to && !*stop.borrow() {
            ctx.progress.pass(to);
            next = to + 1;
        }
    }
    drop(senders);
    for h in handles {
        let _ = h.await;
    }
    let committed = ctx.progress.committed();
    if let Err(e) = write_cursor(&ctx.inner.settings.state_dir, &name, committed) {
        tracing::warn!(subscription = name, error = %e, "cannot save the cursor");
    }
}

/// Delivers one event with retries; files the dead letter after the last attempt. Returns
/// false when stopped before the event was finished.
async fn deliver_one(
    ctx: &LaneContext,
    logged: &LoggedEvent,
    mut stop: watch::Receiver<bool>,
) -> bool {
    let spec = &ctx.spec;
    let event = match &spec.transform {
        Some(t) => t.apply(&logged.event),
        None => logged.event.clone(),
    };
    let key = idempotency_key(&logged.event);
    let replay = ctx
        .replay
        .as_ref()
        .filter(|(_, last)| logged.seq <= *last)
        .map(|(id, _)| id.as_str());
    let target_name = ctx.target.describe();
    let mut attempt = 1u32;
    loop {
        if *stop.borrow() {
            return false;
        }
        let started = now_micros();
        let t = Instant::now();
        let result = ctx
            .target
            .deliver(&Outgoing {
                subscription: &spec.name,
                event: &event,
                logged,
                idempotency_key: &key,
                attempt,
                replay,
            })
            .await;
        let latency_ms = t.elapsed().as_secs_f64() * 1e3;
        let last = result.outcome == Outcome::Reject || attempt >= spec.retry.max_attempts;
        let status = match result.outcome {
            Outcome::Delivered => Status::Delivered,
            _ if last => Status::DeadLetter,
            _ => Status::Failed,
        };
        let record = DeliveryRecord {
            time: started,
            subscription: spec.name.clone(),
            target: target_name.clone(),
            status,
            seq: logged.seq,
            event_id: logged.event.id.clone(),
            event_type: logged.event.ty.clone(),
            correlation_id: logged.correlation_id().to_string(),
            attempt,
            status_code: result.status_code,
            latency_ms,
            error: result.error.clone(),
            replay: replay.map(str::to_string),
        };
        if ctx.inner.audit_tx.send(record).await.is_err() {
            tracing::warn!(subscription = spec.name, "the audit writer stopped");
        }
        match status {
            Status::Delivered => {
                ctx.progress.delivered.fetch_add(1, Ordering::Relaxed);
                ctx.inner.stats.delivered.fetch_add(1, Ordering::Relaxed);
                return true;
            }
            Status::Failed => {
                ctx.progress.failed.fetch_add(1, Ordering::Relaxed);
                ctx.inner.stats.failed.fetch_add(1, Ordering::Relaxed);
                let max = Duration::from_millis(spec.retry.max_backoff_ms);
                let wait = result
                    .retry_after
                    .map_or_else(|| spec.retry.backoff(attempt), |w| w.min(max));
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stop.changed() => return false,
                }
                attempt += 1;
            }
            Status::DeadLetter => {
                ctx.progress.failed.fetch_add(1, Ordering::Relaxed);
                ctx.progress.dead_letters.fetch_add(1, Ordering::Relaxed);
                ctx.inner.stats.failed.fetch_add(1, Ordering::Relaxed);
                ctx.inner.stats.dead_letters.fetch_add(1, Ordering::Relaxed);
                let dead = DeadLetter {
                    time: now_micros(),
                    subscription: spec.name.clone(),
                    target: target_name.clone(),
                    seq: logged.seq,
                    event_id: logged.event.id.clone(),
                    event_type: logged.event.ty.clone(),
                    source: logged.event.source.clone(),
                    correlation_id: logged.correlation_id().to_string(),
                    attempts: attempt,
                    status_code: result.status_code,
                    error: result.error.unwrap_or_else(|| "failed".into()),
                };
                // The dead letter is durable before the cursor may pass the event.
                loop {
                    let written = match audit::dead_letter_batch(&dead) {
                        Ok(batch) => ctx
                            .inner
                            .lake
                            .write(vec![(DEAD_LETTERS_TABLE.to_string(), batch)])
                            .await
                            .map_err(|e| e.to_string()),
                        Err(e) => Err(e.to_string()),
                    };
                    match written {
                        Ok(_) => return true,
                        Err(e) => {
                            tracing::warn!(subscription = spec.name, seq = logged.seq, error = %e, "cannot file the dead letter; retrying");
                            tokio::select! {
                                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                                _ = stop.changed() => return false,
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The JSON answer of a publish.
pub fn published_json(published: &[Published]) -> Value {
    json!({ "published": published })
}
