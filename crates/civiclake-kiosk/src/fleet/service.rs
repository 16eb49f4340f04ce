//! The fleet service: the registry, the catalog and the kiosks' states as events in
//! `kiosk_events`, heartbeats and transactions taken from `devices/kiosk/{id}/...` (and from
//! HTTP), the tables of [`super::tables`] kept up to date, offline/online on the bus.
//!
//! Streams of `kiosk_events`: `catalog` (one `kiosk.service_defined` per service version)
//! and `kiosk-{id}` (`kiosk.registered`, `kiosk.updated`, `kiosk.retired`, `kiosk.online`,
//! `kiosk.offline`, `kiosk.peripheral_changed`). At start the service replays them; beats
//! themselves are not events (they are rolled up per minute in `kiosk_heartbeats_1m`).

use super::FleetError;
use super::availability::{Availability, availability, offline_spans};
use super::liveness::{Change, Heartbeat, KioskLiveness, LivenessConfig, Tracker};
use super::registry::{Kiosk, Service, TIME_ZONE, default_catalog};
use super::tables::{self, Rows, V};
use super::transaction::{CheckedTransaction, Transaction};
use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Int64Type};
use chrono::{Datelike, NaiveDate, TimeZone};
use civiclake_core::{
    CloudEvent, Delivery, ErrorClass, EventEnvelope, ExpectedVersion, NewEvent, Platform,
    PlatformError, Subscription, Topic, TopicFilter,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{Mutex, watch};

/// Heartbeats: `devices/kiosk/{id}/heartbeat`.
pub const HEARTBEAT_FILTER: &str = "devices/kiosk/+/heartbeat";
/// Transactions: `devices/kiosk/{id}/transactions`.
pub const TRANSACTION_FILTER: &str = "devices/kiosk/+/transactions";
/// The stream of the service catalog.
pub const CATALOG_STREAM: &str = "catalog";

/// Event types of `kiosk_events`.
pub mod event {
    pub const SERVICE_DEFINED: &str = "kiosk.service_defined";
    pub const REGISTERED: &str = "kiosk.registered";
    pub const UPDATED: &str = "kiosk.updated";
    pub const RETIRED: &str = "kiosk.retired";
    pub const ONLINE: &str = "kiosk.online";
    pub const OFFLINE: &str = "kiosk.offline";
    pub const PERIPHERAL: &str = "kiosk.peripheral_changed";
}

/// CloudEvent types the fleet publishes on `bus/kiosk/{id}/status`.
pub mod bus_type {
    pub const ONLINE: &str = "it.prato.kiosk.Online";
    pub const OFFLINE: &str = "it.prato.kiosk.Offline";
    pub const PERIPHERAL: &str = "it.prato.kiosk.PeripheralChanged";
}

/// The source of the fleet's CloudEvents.
pub const BUS_SOURCE: &str = "/civiclake/kiosk";

/// The stream of kiosk `id`.
pub fn kiosk_stream(id: &str) -> String {
    format!("kiosk-{id}")
}

/// The JSON schemas of the fleet's bus events (registered on the bus at start).
pub fn bus_schemas() -> Vec<(&'static str, Value)> {
    let base = |required: &[&str], props: Value| {
        json!({
            "type": "object",
            "required": required,
            "properties": props,
        })
    };
    vec![
        (
            bus_type::ONLINE,
            base(
                &["kiosk", "at"],
                json!({"kiosk": {"type": "string"}, "at": {"type": "string"}, "offline_since": {"type": ["string", "null"]}}),
            ),
        ),
        (
            bus_type::OFFLINE,
            base(
                &["kiosk", "at", "last_beat"],
                json!({"kiosk": {"type": "string"}, "at": {"type": "string"}, "last_beat": {"type": "string"}, "noticed": {"type": "string"}}),
            ),
        ),
        (
            bus_type::PERIPHERAL,
            base(
                &["kiosk", "peripheral", "status", "fault"],
                json!({"kiosk": {"type": "string"}, "peripheral": {"type": "string"}, "status": {"type": "string"}, "fault": {"type": "boolean"}, "at": {"type": "string"}}),
            ),
        ),
    ]
}

/// Settings of the fleet service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FleetConfig {
    /// Beat interval and missed beats before a kiosk is offline.
    pub liveness: LivenessConfig,
    /// How often the clock is checked (offline kiosks, finished minutes and days).
    pub tick: Duration,
}

impl Default for FleetConfig {
    fn default() -> Self {
        Self {
            liveness: LivenessConfig::default(),
            tick: Duration::from_secs(1),
        }
    }
}

/// A failure of the fleet service.
#[derive(Debug, thiserror::Error)]
pub enum FleetServiceError {
    /// Refused input, with the field and the reason (HTTP 400; kept in `kiosk_refused`).
    #[error(transparent)]
    Invalid(#[from] FleetError),
    /// No such kiosk or service (HTTP 404).
    #[error("{0}")]
    NotFound(String),
    /// The platform refused or failed.
    #[error(transparent)]
    Platform(#[from] PlatformError),
    /// Stored events that cannot be read back.
    #[error("{0}")]
    Internal(String),
}

impl FleetServiceError {
    /// The class of the error (decides the HTTP status).
    pub fn class(&self) -> ErrorClass {
        match self {
            FleetServiceError::Invalid(_) => ErrorClass::User,
            FleetServiceError::NotFound(_) => ErrorClass::NotFound,
            FleetServiceError::Platform(e) => e.class(),
            FleetServiceError::Internal(_) => ErrorClass::Internal,
        }
    }
}

type Result<T> = std::result::Result<T, FleetServiceError>;

/// How a heartbeat or a transaction came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Mqtt,
    Http,
    /// Generated (the demo's history).
    Import,
}

impl Via {
    fn as_str(self) -> &'static str {
        match self {
            Via::Mqtt => "mqtt",
            Via::Http => "http",
            Via::Import => "import",
        }
    }
}

/// A kiosk of the registry with its state now.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KioskView {
    #[serde(flatten)]
    pub kiosk: Kiosk,
    /// Retired from service (kept for its history).
    pub retired: bool,
    /// When it was first registered (µs UTC).
    pub registered_at: i64,
    /// Its liveness (None until its first beat).
    pub liveness: Option<KioskLiveness>,
}

/// A month of the comune's collections through another channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Collection {
    /// `YYYY-MM`.
    pub month: String,
    /// The channel (`psp-online`, `bank-branch`, `post-office`, `app-io`...), not `kiosk`.
    pub channel: String,
    pub amount_cents: u64,
    #[serde(default)]
    pub transactions: u64,
}

/// What became of a transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Recorded {
    pub kiosk: String,
    pub transaction_id: String,
    /// False: a transaction with this id was already stored (a retry); nothing was added.
    pub stored: bool,
}

/// Counters since start (for `/metrics` and tests).
#[derive(Debug, Default)]
pub struct FleetStats {
    pub heartbeats: AtomicU64,
    pub transactions: AtomicU64,
    pub refused: AtomicU64,
    pub duplicates: AtomicU64,
    /// Device messages the router dropped because the service fell behind.
    pub lagged: AtomicU64,
    /// Messages taken but not stored because the lake failed (logged with their payload).
    pub failed: AtomicU64,
}

#[derive(Debug, Clone)]
struct Registered {
    kiosk: Kiosk,
    retired: bool,
    registered_at: i64,
}

#[derive(Debug, Clone, Default)]
struct Minute {
    beats: i64,
    faults: i64,
    software_version: Option<String>,
}

/// The (kiosk, transaction id) pairs seen lately: retries are not stored twice.
#[derive(Debug, Default)]
struct Seen {
    set: HashSet<(String, String)>,
    order: VecDeque<(String, String)>,
}

const SEEN_CAPACITY: usize = 200_000;
const MINUTE: i64 = 60_000_000;
/// A transaction's time may be at most this far ahead of the server's clock.
const MAX_AHEAD: i64 = 5 * MINUTE;
/// How much of a refused payload is kept.
const MAX_REFUSED_PAYLOAD: usize = 4096;

impl Seen {
    fn insert(&mut self, key: (String, String)) -> bool {
        if self.set.contains(&key) {
            return false;
        }
        if self.order.len() >= SEEN_CAPACITY
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
        self.set.insert(key.clone());
        self.order.push_back(key);
        true
    }
}

#[derive(Debug, Default)]
struct State {
    catalog: BTreeMap<String, Service>,
    kiosks: BTreeMap<String, Registered>,
    /// Stream → its last version.
    versions: HashMap<String, u64>,
    tracker: Tracker,
    /// Online/offline changes per kiosk, in time order (availability).
    spans: HashMap<String, Vec<Change>>,
    /// When each kiosk was first online (availability counts from then).
    first_online: HashMap<String, i64>,
    /// Beats of the minutes not yet written: (minute, kiosk).
    minutes: BTreeMap<(i64, String), Minute>,
    seen: Seen,
    /// Days before this (start of a day in Rome, µs) have their availability written.
    availability_until: Option<i64>,
}

struct Inner {
    platform: Arc<dyn Platform>,
    config: FleetConfig,
    state: Mutex<State>,
    stats: FleetStats,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet")
            .field("module", &self.platform.module())
            .field("config", &self.config)
            .finish()
    }
}

/// The fleet service (cheap to clone).
#[derive(Debug, Clone)]
pub struct Fleet {
    inner: Arc<Inner>,
}

/// The subscriptions of a started fleet, for [`Fleet::run`].
#[derive(Debug)]
pub struct FleetInbox {
    heartbeats: Subscription,
    transactions: Subscription,
}

fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

fn rfc3339(us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(us)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// The start of the day (in Rome) holding `us`, and of the next one.
pub fn day_of(us: i64) -> Option<(i64, i64)> {
    let local = chrono::DateTime::from_timestamp_micros(us)?.with_timezone(&TIME_ZONE);
    let day = local.date_naive();
    let start = |d: NaiveDate| {
        TIME_ZONE
            .from_local_datetime(&d.and_hms_opt(0, 0, 0)?)
            .earliest()
            .map(|t| t.timestamp_micros())
    };
    Some((start(day)?, start(day.succ_opt()?)?))
}

fn internal(what: &str) -> impl Fn(String) -> FleetServiceError + '_ {
    move |e| FleetServiceError::Internal(format!("{what}: {e}"))
}

/// The first column of `batches` as (nullable) Int64 values.
fn ints(batches: &[RecordBatch]) -> Result<Vec<Option<i64>>> {
    let mut out = Vec::new();
    for b in batches {
        let col =
            cast(b.column(0), &DataType::Int64).map_err(|e| internal("query")(e.to_string()))?;
        let col = col.as_primitive::<Int64Type>();
        out.extend((0..col.len()).map(|i| (!col.is_null(i)).then(|| col.value(i))));
    }
    Ok(out)
}

/// Column `i` of `batches` as strings.
fn strings(batches: &[RecordBatch], i: usize) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for b in batches {
        let col =
            cast(b.column(i), &DataType::Utf8).map_err(|e| internal("query")(e.to_string()))?;
        let col = col.as_string::<i32>();
        out.extend((0..col.len()).map(|r| col.value(r).to_string()));
    }
    Ok(out)
}

impl Fleet {
    /// Starts the service over the kiosk module's `platform`: replays `kiosk_events`
    /// (saving the default service catalog the first time), subscribes to the kiosks'
    /// topics and reads back the transaction ids of the last two days. The tables of
    /// [`tables::tables`] must exist (the server makes sure they do).
    pub async fn start(
        platform: Arc<dyn Platform>,
        config: FleetConfig,
    ) -> Result<(Self, FleetInbox)> {
        let inbox = FleetInbox {
            heartbeats: platform
                .subscribe(&TopicFilter::new(HEARTBEAT_FILTER).map_err(PlatformError::from)?)
                .await?,
            transactions: platform
                .subscribe(&TopicFilter::new(TRANSACTION_FILTER).map_err(PlatformError::from)?)
                .await?,
        };
        let fleet = Self {
            inner: Arc::new(Inner {
                platform,
                config,
                state: Mutex::new(State {
                    tracker: Tracker::new(config.liveness),
                    ..State::default()
                }),
                stats: FleetStats::default(),
            }),
        };
        fleet.load().await?;
        Ok((fleet, inbox))
    }

    fn platform(&self) -> &dyn Platform {
        self.inner.platform.as_ref()
    }

    /// Counters since start.
    pub fn stats(&self) -> &FleetStats {
        &self.inner.stats
    }

    /// The settings.
    pub fn config(&self) -> FleetConfig {
        self.inner.config
    }

    async fn load(&self) -> Result<()> {
        let events_table = format!("{}_events", self.platform().module());
        let streams = self
            .platform()
            .query(&format!(
                "SELECT DISTINCT stream_id FROM {events_table} ORDER BY 1"
            ))
            .await?;
        let mut streams = strings(&streams.batches, 0)?;
        // The catalog first: kiosks are checked against it.
        streams.sort_by_key(|s| s != CATALOG_STREAM);
        let mut state = self.inner.state.lock().await;
        for stream in &streams {
            if stream != CATALOG_STREAM && !stream.starts_with("kiosk-") {
                continue;
            }
            let events = self.platform().read_stream(stream, 1).await?;
            if let Some(last) = events.last() {
                state.versions.insert(stream.clone(), last.version);
            }
            for e in &events {
                apply(&mut state, e)?;
            }
        }
        if state.catalog.is_empty() {
            let events: Vec<NewEvent> = default_catalog()
                .into_iter()
                .map(|s| NewEvent::new(event::SERVICE_DEFINED, 1, "civiclake", json!(s)))
                .collect();
            let stored = self
                .platform()
                .append_events(CATALOG_STREAM, ExpectedVersion::NoStream, events)
                .await?;
            for e in &stored {
                apply(&mut state, e)?;
                state.versions.insert(CATALOG_STREAM.into(), e.version);
            }
        }
        // A restart of civiclake is not downtime of the kiosks: those online when it stopped
        // are offline only if they miss K beats from now.
        state.tracker.restart(now_micros());
        // Retries of the last two days are recognised.
        let recent = self
            .platform()
            .query(&format!(
                "SELECT CAST(kiosk_id AS VARCHAR), transaction_id FROM {} \
                 WHERE time > now() - INTERVAL '2 days' AND transaction_id IS NOT NULL",
                tables::TRANSACTIONS
            ))
            .await?;
        let kiosks = strings(&recent.batches, 0)?;
        let ids = strings(&recent.batches, 1)?;
        for key in kiosks.into_iter().zip(ids) {
            state.seen.insert(key);
        }
        let until = self
            .platform()
            .query(&format!(
                "SELECT CAST(max(time) AS BIGINT) FROM {}",
                tables::AVAILABILITY
            ))
            .await?;
        state.availability_until = match ints(&until.batches)?.first().copied().flatten() {
            // The last written day's start, in µs (timestamps cast to BIGINT are µs).
            Some(last) => day_of(last).map(|(_, next)| next),
            None => state
                .first_online
                .values()
                .min()
                .and_then(|t| day_of(*t))
                .map(|(start, _)| start),
        };
        Ok(())
    }

    /// Takes in the device messages and runs the clock until `shutdown`; then writes the
    /// minutes still open.
    pub async fn run(self, mut inbox: FleetInbox, mut shutdown: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(self.inner.config.tick);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                d = inbox.heartbeats.recv() => match d {
                    Some(d) => self.delivered(d, true).await,
                    None => break,
                },
                d = inbox.transactions.recv() => match d {
                    Some(d) => self.delivered(d, false).await,
                    None => break,
                },
                _ = tick.tick() => {
                    if let Err(e) = self.tick(now_micros()).await {
                        tracing::warn!(error = %e, "kiosk fleet: the clock's work failed; retried at the next tick");
                    }
                }
                _ = async { let _ = shutdown.wait_for(|stop| *stop).await; } => break,
            }
        }
        if let Err(e) = self.flush_minutes(i64::MAX).await {
            tracing::warn!(error = %e, "kiosk fleet: the last heartbeat minutes were not written");
        }
    }

    async fn delivered(&self, delivery: Delivery, heartbeat: bool) {
        let message = match delivery {
            Delivery::Message(m) => m,
            Delivery::Lagged(n) => {
                self.inner.stats.lagged.fetch_add(n, Ordering::Relaxed);
                tracing::warn!(
                    dropped = n,
                    "kiosk fleet: device messages dropped, the service fell behind"
                );
                return;
            }
        };
        // devices/kiosk/{id}/heartbeat
        let Some(kiosk) = message.topic.as_str().split('/').nth(2).map(str::to_string) else {
            return;
        };
        let event = &message.event;
        let payload = match &event.data {
            Some(Value::String(s)) => s.clone().into_bytes(),
            Some(v) => serde_json::to_vec(v).unwrap_or_default(),
            None => Vec::new(),
        };
        let result = if heartbeat {
            let arrived = event.time.unwrap_or_else(now_micros);
            self.heartbeat_at(&kiosk, &payload, arrived, Via::Mqtt)
                .await
                .map(|_| ())
        } else {
            self.transaction(&kiosk, &payload, Via::Mqtt)
                .await
                .map(|_| ())
        };
        match result {
            Ok(()) | Err(FleetServiceError::Invalid(_)) => {}
            Err(e) => {
                self.inner.stats.failed.fetch_add(1, Ordering::Relaxed);
                tracing::error!(
                    error = %e, kiosk, topic = %message.topic,
                    payload = %String::from_utf8_lossy(&payload),
                    "kiosk fleet: a device message was not stored"
                );
            }
        }
    }

    /// Records a refusal in `kiosk_refused` and returns it as the error.
    async fn refuse(
        &self,
        kiosk: &str,
        what: &str,
        via: Via,
        payload: &[u8],
        error: FleetError,
    ) -> FleetServiceError {
        self.inner.stats.refused.fetch_add(1, Ordering::Relaxed);
        let mut text = String::from_utf8_lossy(payload).into_owned();
        if text.len() > MAX_REFUSED_PAYLOAD {
            let mut cut = MAX_REFUSED_PAYLOAD;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
        }
        let mut rows = tables::rows(tables::REFUSED);
        rows.push(&[
            V::T(now_micros()),
            V::S(Some(kiosk)),
            V::S(Some(what)),
            V::S(Some(via.as_str())),
            V::S(Some(&error.field)),
            V::S(Some(&error.reason)),
            V::S(Some(&text)),
        ]);
        match rows.finish() {
            Ok(batch) => {
                if let Err(e) = self.platform().write_rows(tables::REFUSED, batch).await {
                    tracing::error!(error = %e, kiosk, reason = %error, "kiosk fleet: a refusal was not recorded");
                }
            }
            Err(e) => tracing::error!(error = %e, "kiosk fleet: refusal row"),
        }
        FleetServiceError::Invalid(error)
    }

    /// Takes in a heartbeat of `kiosk` (JSON `{time?, software_version?, peripherals:
    /// {card_reader: "online", ...}}`) arriving now.
    pub async fn heartbeat(&self, kiosk: &str, payload: &[u8], via: Via) -> Result<Vec<Change>> {
        self.heartbeat_at(kiosk, payload, now_micros(), via).await
    }

    async fn heartbeat_at(
        &self,
        kiosk: &str,
        payload: &[u8],
        arrived: i64,
        via: Via,
    ) -> Result<Vec<Change>> {
        let mut beat = match Heartbeat::parse(kiosk, payload, arrived) {
            Ok(b) => b,
            Err(e) => return Err(self.refuse(kiosk, "heartbeat", via, payload, e).await),
        };
        // A kiosk's clock ahead of ours does not keep it online longer.
        beat.time = beat.time.min(arrived);
        let mut state = self.inner.state.lock().await;
        let unknown = match state.kiosks.get(kiosk) {
            Some(r) if !r.retired => None,
            Some(_) => Some(format!("kiosk {kiosk} is retired")),
            None => Some(format!("kiosk {kiosk} is not registered")),
        };
        if let Some(reason) = unknown {
            drop(state);
            let e = FleetError::field("kiosk", reason);
            return Err(self.refuse(kiosk, "heartbeat", via, payload, e).await);
        }
        self.inner.stats.heartbeats.fetch_add(1, Ordering::Relaxed);
        let faults = beat.peripherals.values().filter(|s| s.is_fault()).count() as i64;
        let minute = beat.time.div_euclid(MINUTE) * MINUTE;
        let m = state
            .minutes
            .entry((minute, kiosk.to_string()))
            .or_default();
        m.beats += 1;
        m.faults = faults;
        if beat.software_version.is_some() {
            m.software_version.clone_from(&beat.software_version);
        }
        let changes = state.tracker.beat(&beat);
        self.record(&mut state, &changes, kiosk).await?;
        Ok(changes)
    }

    /// Appends `changes` as events, rows of `kiosk_status_changes`, and bus events.
    async fn record(&self, state: &mut State, changes: &[Change], actor: &str) -> Result<()> {
        if changes.is_empty() {
            return Ok(());
        }
        let mut by_kiosk: BTreeMap<&str, Vec<&Change>> = BTreeMap::new();
        for c in changes {
            by_kiosk.entry(change_kiosk(c)).or_default().push(c);
        }
        let mut rows = tables::rows(tables::STATUS_CHANGES);
        for (kiosk, changes) in by_kiosk {
            let events = changes
                .iter()
                .map(|c| {
                    let (ty, at) = match c {
                        Change::Online { at, .. } => (event::ONLINE, *at),
                        Change::Offline { at, .. } => (event::OFFLINE, *at),
                        Change::Peripheral { at, .. } => (event::PERIPHERAL, *at),
                    };
                    let mut e = NewEvent::new(ty, 1, actor, json!(c));
                    e.time = Some(at);
                    e
                })
                .collect();
            self.append(state, &kiosk_stream(kiosk), events).await?;
            for c in changes {
                status_row(&mut rows, c);
                apply_change(state, c);
            }
        }
        let batch = rows.finish().map_err(internal("status rows"))?;
        self.platform()
            .write_rows(tables::STATUS_CHANGES, batch)
            .await?;
        for c in changes {
            self.publish(c).await;
        }
        Ok(())
    }

    async fn append(
        &self,
        state: &mut State,
        stream: &str,
        events: Vec<NewEvent>,
    ) -> Result<Vec<EventEnvelope>> {
        let version = state.versions.get(stream).copied().unwrap_or(0);
        let stored = self
            .platform()
            .append_events(stream, ExpectedVersion::Exact(version), events)
            .await?;
        if let Some(last) = stored.last() {
            state.versions.insert(stream.to_string(), last.version);
        }
        Ok(stored)
    }

    /// Tells the bus (and in-process subscribers) on `bus/kiosk/{id}/status`.
    async fn publish(&self, change: &Change) {
        let kiosk = change_kiosk(change);
        let (ty, at, data) = match change {
            Change::Online { at, since, .. } => (
                bus_type::ONLINE,
                *at,
                json!({"kiosk": kiosk, "at": rfc3339(*at), "offline_since": since.map(rfc3339)}),
            ),
            Change::Offline {
                at,
                noticed,
                last_beat,
                ..
            } => (
                bus_type::OFFLINE,
                *at,
                json!({"kiosk": kiosk, "at": rfc3339(*at), "noticed": rfc3339(*noticed), "last_beat": rfc3339(*last_beat)}),
            ),
            Change::Peripheral {
                peripheral, to, at, ..
            } => (
                bus_type::PERIPHERAL,
                *at,
                json!({"kiosk": kiosk, "peripheral": peripheral.as_str(), "status": to.as_str(), "fault": to.is_fault(), "at": rfc3339(*at)}),
            ),
        };
        let Ok(topic) = Topic::new(format!("bus/kiosk/{kiosk}/status")) else {
            return;
        };
        let event = CloudEvent::new(uuid::Uuid::new_v4().to_string(), BUS_SOURCE, ty)
            .with_subject(kiosk.to_string())
            .with_time(at)
            .with_data(data);
        if let Err(e) = self.platform().publish(&topic, event).await {
            tracing::warn!(error = %e, kiosk, r#type = ty, "kiosk fleet: the bus did not take a status event");
        }
    }

    /// The clock's work at `now`: kiosks that missed K beats go offline; finished minutes
    /// and finished days are written.
    pub async fn tick(&self, now: i64) -> Result<Vec<Change>> {
        let changes = {
            let mut state = self.inner.state.lock().await;
            let changes = state.tracker.tick(now);
            for c in &changes {
                if let Change::Offline { kiosk, .. } = c {
                    tracing::info!(kiosk, "kiosk offline: missed its beats");
                }
            }
            self.record(&mut state, &changes, "civiclake").await?;
            changes
        };
        self.flush_minutes(now.div_euclid(MINUTE) * MINUTE).await?;
        self.write_days(now).await?;
        Ok(changes)
    }

    /// Writes the heartbeat minutes before `before` to `kiosk_heartbeats_1m`.
    async fn flush_minutes(&self, before: i64) -> Result<()> {
        let mut state = self.inner.state.lock().await;
        let due: Vec<(i64, String)> = state
            .minutes
            .keys()
            .take_while(|(m, _)| *m < before)
            .cloned()
            .collect();
        if due.is_empty() {
            return Ok(());
        }
        let mut rows = tables::rows(tables::HEARTBEATS);
        for key in &due {
            if let Some(m) = state.minutes.get(key) {
                rows.push(&[
                    V::T(key.0),
                    V::S(Some(&key.1)),
                    V::I(Some(m.beats)),
                    V::I(Some(m.faults)),
                    V::S(m.software_version.as_deref()),
                ]);
            }
        }
        let batch = rows.finish().map_err(internal("heartbeat rows"))?;
        self.platform()
            .write_rows(tables::HEARTBEATS, batch)
            .await?;
        for key in &due {
            state.minutes.remove(key);
        }
        Ok(())
    }

    /// Writes the availability of every finished day not written yet.
    async fn write_days(&self, now: i64) -> Result<()> {
        let mut state = self.inner.state.lock().await;
        let Some(mut day) = state.availability_until else {
            // Nothing has ever been online: start with the day of the first kiosk online.
            if let Some(first) = state.first_online.values().min().copied() {
                state.availability_until = day_of(first).map(|(s, _)| s);
            }
            return Ok(());
        };
        let mut rows = tables::rows(tables::AVAILABILITY);
        while let Some((start, end)) = day_of(day) {
            if end > now {
                break;
            }
            for (id, r) in state.kiosks.iter().filter(|(_, r)| !r.retired) {
                if let Some(a) = day_availability(&state, id, r, start, end) {
                    rows.push(&[
                        V::T(start),
                        V::S(Some(id)),
                        V::F(Some(a.open_minutes)),
                        V::F(Some(a.down_minutes)),
                    ]);
                }
            }
            day = end;
        }
        if day == state.availability_until.unwrap_or(day) {
            return Ok(());
        }
        if !rows.is_empty() {
            let batch = rows.finish().map_err(internal("availability rows"))?;
            self.platform()
                .write_rows(tables::AVAILABILITY, batch)
                .await?;
        }
        state.availability_until = Some(day);
        Ok(())
    }

    /// Takes in a transaction of `kiosk` (JSON, see [`Transaction`]): checked, then stored
    /// in `kiosk_transactions` (and its notices in `kiosk_transaction_notices`); a
    /// transaction id already stored is a retry and stored once.
    pub async fn transaction(&self, kiosk: &str, payload: &[u8], via: Via) -> Result<Recorded> {
        let tx = match Transaction::parse(payload) {
            Ok(t) => t,
            Err(e) => return Err(self.refuse(kiosk, "transaction", via, payload, e).await),
        };
        let checked = {
            let state = self.inner.state.lock().await;
            self.check_transaction(&state, kiosk, tx, now_micros())
        };
        let checked = match checked {
            Ok(c) => c,
            Err(e) => return Err(self.refuse(kiosk, "transaction", via, payload, e).await),
        };
        let id = checked.tx.id.clone();
        let mut state = self.inner.state.lock().await;
        if state.seen.set.contains(&(kiosk.to_string(), id.clone())) {
            self.inner.stats.duplicates.fetch_add(1, Ordering::Relaxed);
            return Ok(Recorded {
                kiosk: kiosk.into(),
                transaction_id: id,
                stored: false,
            });
        }
        self.store_transactions(&[checked], via).await?;
        state.seen.insert((kiosk.to_string(), id.clone()));
        self.inner
            .stats
            .transactions
            .fetch_add(1, Ordering::Relaxed);
        Ok(Recorded {
            kiosk: kiosk.into(),
            transaction_id: id,
            stored: true,
        })
    }

    fn check_transaction(
        &self,
        state: &State,
        kiosk: &str,
        tx: Transaction,
        now: i64,
    ) -> std::result::Result<CheckedTransaction, FleetError> {
        let registered = match state.kiosks.get(kiosk) {
            Some(r) if !r.retired => r,
            Some(_) => {
                return Err(FleetError::field(
                    "kiosk",
                    format!("kiosk {kiosk} is retired"),
                ));
            }
            None => {
                return Err(FleetError::field(
                    "kiosk",
                    format!("kiosk {kiosk} is not registered"),
                ));
            }
        };
        if tx.time.timestamp_micros() > now + MAX_AHEAD {
            return Err(FleetError::field(
                "time",
                format!(
                    "{} is in the future (the server's clock says {})",
                    tx.time.to_rfc3339(),
                    rfc3339(now)
                ),
            ));
        }
        let catalog: Vec<Service> = state.catalog.values().cloned().collect();
        tx.check(kiosk, &registered.kiosk.services, &catalog)
    }

    /// Writes checked transactions (one batch per table).
    async fn store_transactions(&self, txs: &[CheckedTransaction], via: Via) -> Result<()> {
        let mut rows = tables::rows(tables::TRANSACTIONS);
        let mut notices = tables::rows(tables::NOTICES);
        for c in txs {
            let t = &c.tx;
            let time = t.time.timestamp_micros();
            rows.push(&[
                V::T(time),
                V::S(Some(&c.kiosk)),
                V::S(Some(&t.service)),
                V::S(Some(c.kind.as_str())),
                V::S(Some(t.method.as_str())),
                V::S(Some(t.outcome.as_str())),
                V::S(Some(via.as_str())),
                V::S(Some(&t.id)),
                V::I(Some(i64::try_from(t.amount_cents).unwrap_or(i64::MAX))),
                V::F(Some(t.duration_s)),
                V::I(Some(t.notices.len() as i64)),
                V::S(t.office.as_deref()),
                V::F(t.call_s),
                V::I(t.pages.map(i64::from)),
            ]);
            for n in &t.notices {
                let number: String = n.notice_number.split_whitespace().collect();
                notices.push(&[
                    V::T(time),
                    V::S(Some(&c.kiosk)),
                    V::S(Some(n.creditor_fiscal_code.trim())),
                    V::S(Some(t.outcome.as_str())),
                    V::S(Some(&t.id)),
                    V::S(Some(&number)),
                    V::I(Some(i64::try_from(n.amount_cents).unwrap_or(i64::MAX))),
                ]);
            }
        }
        if !notices.is_empty() {
            let batch = notices.finish().map_err(internal("notice rows"))?;
            self.platform().write_rows(tables::NOTICES, batch).await?;
        }
        if !rows.is_empty() {
            let batch = rows.finish().map_err(internal("transaction rows"))?;
            self.platform()
                .write_rows(tables::TRANSACTIONS, batch)
                .await?;
        }
        Ok(())
    }

    /// Registers kiosk `kiosk` or updates it (a retired one comes back into service).
    /// Returns whether it is new.
    pub async fn put_kiosk(&self, kiosk: Kiosk, actor: &str) -> Result<bool> {
        let mut state = self.inner.state.lock().await;
        let catalog: Vec<Service> = state.catalog.values().cloned().collect();
        kiosk.check(&catalog)?;
        let existing = state.kiosks.get(&kiosk.id);
        if existing.is_some_and(|r| !r.retired && r.kiosk == kiosk) {
            return Ok(false);
        }
        let created = existing.is_none();
        let ty = if created {
            event::REGISTERED
        } else {
            event::UPDATED
        };
        let stream = kiosk_stream(&kiosk.id);
        let stored = self
            .append(
                &mut state,
                &stream,
                vec![NewEvent::new(ty, 1, actor, json!(kiosk))],
            )
            .await?;
        for e in &stored {
            apply(&mut state, e)?;
        }
        self.registry_row(&kiosk, false).await?;
        Ok(created)
    }

    /// Retires kiosk `id` (its history stays; its beats and transactions are refused).
    pub async fn retire(&self, id: &str, actor: &str) -> Result<()> {
        let mut state = self.inner.state.lock().await;
        let Some(r) = state.kiosks.get(id).cloned() else {
            return Err(FleetServiceError::NotFound(format!(
                "kiosk {id} is not registered"
            )));
        };
        if r.retired {
            return Ok(());
        }
        let stream = kiosk_stream(id);
        let stored = self
            .append(
                &mut state,
                &stream,
                vec![NewEvent::new(event::RETIRED, 1, actor, json!({"id": id}))],
            )
            .await?;
        for e in &stored {
            apply(&mut state, e)?;
        }
        self.registry_row(&r.kiosk, true).await
    }

    async fn registry_row(&self, k: &Kiosk, retired: bool) -> Result<()> {
        let mut rows = tables::rows(tables::REGISTRY);
        let peripherals: Vec<&str> = k.peripherals.iter().map(|p| p.kind.as_str()).collect();
        rows.push(&[
            V::T(now_micros()),
            V::S(Some(&k.id)),
            V::S(Some(&k.host_site)),
            V::S(Some(&k.name)),
            V::F(Some(k.lon)),
            V::F(Some(k.lat)),
            V::S(Some(&k.services.join(","))),
            V::S(Some(&peripherals.join(","))),
            V::S(Some(&k.software_version)),
            V::B(Some(retired)),
        ]);
        let batch = rows.finish().map_err(internal("registry row"))?;
        self.platform().write_rows(tables::REGISTRY, batch).await?;
        Ok(())
    }

    /// Defines a service of the catalog (or a new version of it). A service whose needs
    /// a kiosk offering it lacks is refused.
    pub async fn put_service(&self, service: Service, actor: &str) -> Result<bool> {
        let valid = !service.id.is_empty()
            && service.id.len() <= 64
            && service
                .id
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if !valid {
            return Err(FleetError::field(
                "id",
                format!(
                    "'{}' is not a service id: 1 to 64 lowercase letters, digits, '-' or '_'",
                    service.id
                ),
            )
            .into());
        }
        if service.name.trim().is_empty() {
            return Err(FleetError::field("name", "is empty".into()).into());
        }
        let mut state = self.inner.state.lock().await;
        for r in state.kiosks.values().filter(|r| !r.retired) {
            if r.kiosk.services.contains(&service.id)
                && let Some(missing) = service
                    .needs
                    .iter()
                    .find(|n| !r.kiosk.peripherals.iter().any(|p| p.kind == **n))
            {
                return Err(FleetError::field(
                    "needs",
                    format!(
                        "kiosk {} offers '{}' and has no {}",
                        r.kiosk.id,
                        service.id,
                        missing.as_str()
                    ),
                )
                .into());
            }
        }
        let existing = state.catalog.get(&service.id);
        if existing == Some(&service) {
            return Ok(false);
        }
        let created = existing.is_none();
        let stored = self
            .append(
                &mut state,
                CATALOG_STREAM,
                vec![NewEvent::new(
                    event::SERVICE_DEFINED,
                    1,
                    actor,
                    json!(service),
                )],
            )
            .await?;
        for e in &stored {
            apply(&mut state, e)?;
        }
        Ok(created)
    }

    /// The catalog of services.
    pub async fn catalog(&self) -> Vec<Service> {
        self.inner
            .state
            .lock()
            .await
            .catalog
            .values()
            .cloned()
            .collect()
    }

    /// The kiosks (retired ones too), by id.
    pub async fn kiosks(&self) -> Vec<KioskView> {
        let state = self.inner.state.lock().await;
        let live: HashMap<String, KioskLiveness> = state
            .tracker
            .snapshot()
            .into_iter()
            .map(|l| (l.kiosk.clone(), l))
            .collect();
        state
            .kiosks
            .values()
            .map(|r| KioskView {
                kiosk: r.kiosk.clone(),
                retired: r.retired,
                registered_at: r.registered_at,
                liveness: live.get(&r.kiosk.id).cloned(),
            })
            .collect()
    }

    /// Kiosk `id`.
    pub async fn kiosk(&self, id: &str) -> Result<KioskView> {
        self.kiosks()
            .await
            .into_iter()
            .find(|k| k.kiosk.id == id)
            .ok_or_else(|| FleetServiceError::NotFound(format!("kiosk {id} is not registered")))
    }

    /// Availability of every kiosk within `[from, to)` (cut at now), from its state changes
    /// and opening hours.
    pub async fn availability(&self, from: i64, to: i64) -> Vec<(String, Availability)> {
        let to = to.min(now_micros());
        let state = self.inner.state.lock().await;
        state
            .kiosks
            .iter()
            .filter_map(|(id, r)| {
                day_availability(&state, id, r, from, to).map(|a| (id.clone(), a))
            })
            .collect()
    }

    /// Imports the other channels' monthly collections (for the kiosks' share).
    pub async fn import_collections(&self, rows: &[Collection]) -> Result<usize> {
        let mut out = tables::rows(tables::COLLECTIONS);
        for (i, c) in rows.iter().enumerate() {
            let field = |f: &str| format!("[{i}].{f}");
            let month = NaiveDate::parse_from_str(&format!("{}-01", c.month.trim()), "%Y-%m-%d")
                .map_err(|_| {
                    FleetError::field(&field("month"), format!("'{}' is not YYYY-MM", c.month))
                })?;
            let ok = !c.channel.is_empty()
                && c.channel.len() <= 64
                && c.channel.chars().all(|ch| {
                    ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-' || ch == '_'
                });
            if !ok {
                return Err(FleetError::field(
                    &field("channel"),
                    format!(
                        "'{}' is not a channel name: lowercase letters, digits, '-' or '_'",
                        c.channel
                    ),
                )
                .into());
            }
            if c.channel == "kiosk" {
                return Err(FleetError::field(
                    &field("channel"),
                    "the kiosks' own collections come from kiosk_transactions".into(),
                )
                .into());
            }
            let time = month
                .and_hms_opt(0, 0, 0)
                .map(|t| t.and_utc().timestamp_micros())
                .unwrap_or_default();
            out.push(&[
                V::T(time),
                V::S(Some(&c.channel)),
                V::I(Some(i64::try_from(c.amount_cents).unwrap_or(i64::MAX))),
                V::I(Some(i64::try_from(c.transactions).unwrap_or(i64::MAX))),
            ]);
        }
        if out.is_empty() {
            return Ok(0);
        }
        let batch = out.finish().map_err(internal("collection rows"))?;
        Ok(self
            .platform()
            .write_rows(tables::COLLECTIONS, batch)
            .await?)
    }

    /// Stores a history at once (the demo's year): kiosks registered at `registered_at`,
    /// their state changes (in time order per kiosk) and transactions, then the
    /// availability of every finished day. Only into an empty registry.
    pub async fn import_history(
        &self,
        kiosks: &[Kiosk],
        registered_at: i64,
        changes: &[Change],
        transactions: Vec<CheckedTransaction>,
        now: i64,
    ) -> Result<()> {
        {
            let mut state = self.inner.state.lock().await;
            if !state.kiosks.is_empty() {
                return Err(FleetError::field(
                    "kiosks",
                    "a history is imported only into an empty registry".into(),
                )
                .into());
            }
            let catalog: Vec<Service> = state.catalog.values().cloned().collect();
            let mut rows = tables::rows(tables::STATUS_CHANGES);
            for k in kiosks {
                k.check(&catalog)?;
                let mut reg = NewEvent::new(event::REGISTERED, 1, "demo", json!(k));
                reg.time = Some(registered_at);
                let mut events = vec![reg];
                let mine: Vec<&Change> =
                    changes.iter().filter(|c| change_kiosk(c) == k.id).collect();
                for c in &mine {
                    let (ty, at) = match c {
                        Change::Online { at, .. } => (event::ONLINE, *at),
                        Change::Offline { at, .. } => (event::OFFLINE, *at),
                        Change::Peripheral { at, .. } => (event::PERIPHERAL, *at),
                    };
                    let mut e = NewEvent::new(ty, 1, "demo", json!(c));
                    e.time = Some(at);
                    events.push(e);
                }
                let stored = self
                    .append(&mut state, &kiosk_stream(&k.id), events)
                    .await?;
                for e in &stored {
                    apply(&mut state, e)?;
                }
                for c in mine {
                    status_row(&mut rows, c);
                }
            }
            for k in kiosks {
                let mut r = tables::rows(tables::REGISTRY);
                let peripherals: Vec<&str> =
                    k.peripherals.iter().map(|p| p.kind.as_str()).collect();
                r.push(&[
                    V::T(registered_at),
                    V::S(Some(&k.id)),
                    V::S(Some(&k.host_site)),
                    V::S(Some(&k.name)),
                    V::F(Some(k.lon)),
                    V::F(Some(k.lat)),
                    V::S(Some(&k.services.join(","))),
                    V::S(Some(&peripherals.join(","))),
                    V::S(Some(&k.software_version)),
                    V::B(Some(false)),
                ]);
                let batch = r.finish().map_err(internal("registry rows"))?;
                self.platform().write_rows(tables::REGISTRY, batch).await?;
            }
            let batch = rows.finish().map_err(internal("status rows"))?;
            self.platform()
                .write_rows(tables::STATUS_CHANGES, batch)
                .await?;
            state.tracker.restart(now);
            state.availability_until = state
                .first_online
                .values()
                .min()
                .and_then(|t| day_of(*t))
                .map(|(s, _)| s);
            for c in &transactions {
                state.seen.insert((c.kiosk.clone(), c.tx.id.clone()));
            }
        }
        for chunk in transactions.chunks(50_000) {
            self.store_transactions(chunk, Via::Import).await?;
        }
        self.write_days(now).await
    }
}

fn change_kiosk(c: &Change) -> &str {
    match c {
        Change::Online { kiosk, .. }
        | Change::Offline { kiosk, .. }
        | Change::Peripheral { kiosk, .. } => kiosk,
    }
}

fn status_row(rows: &mut Rows, c: &Change) {
    match c {
        Change::Online { kiosk, at, .. } => rows.push(&[
            V::T(*at),
            V::S(Some(kiosk)),
            V::S(Some("online")),
            V::S(None),
            V::S(Some("online")),
            V::B(Some(false)),
            V::B(Some(true)),
        ]),
        Change::Offline { kiosk, at, .. } => rows.push(&[
            V::T(*at),
            V::S(Some(kiosk)),
            V::S(Some("offline")),
            V::S(None),
            V::S(Some("offline")),
            V::B(Some(true)),
            V::B(Some(false)),
        ]),
        Change::Peripheral {
            kiosk,
            peripheral,
            to,
            at,
            ..
        } => rows.push(&[
            V::T(*at),
            V::S(Some(kiosk)),
            V::S(Some("peripheral")),
            V::S(Some(peripheral.as_str())),
            V::S(Some(to.as_str())),
            V::B(Some(to.is_fault())),
            V::B(None),
        ]),
    }
}

/// Keeps an online/offline change for availability.
fn apply_change(state: &mut State, c: &Change) {
    match c {
        Change::Online { kiosk, at, .. } => {
            state.first_online.entry(kiosk.clone()).or_insert(*at);
            state
                .spans
                .entry(kiosk.clone())
                .or_default()
                .push(c.clone());
        }
        Change::Offline { kiosk, .. } => {
            state
                .spans
                .entry(kiosk.clone())
                .or_default()
                .push(c.clone());
        }
        Change::Peripheral { .. } => {}
    }
}

/// Applies a stored event to the state.
fn apply(state: &mut State, e: &EventEnvelope) -> Result<()> {
    let bad = |what: &str, err: serde_json::Error| {
        FleetServiceError::Internal(format!(
            "{} version {} ({what}): {err}",
            e.stream_id, e.version
        ))
    };
    match e.event_type.as_str() {
        event::SERVICE_DEFINED => {
            let s: Service =
                serde_json::from_value(e.payload.clone()).map_err(|x| bad("service", x))?;
            state.catalog.insert(s.id.clone(), s);
        }
        event::REGISTERED | event::UPDATED => {
            let k: Kiosk =
                serde_json::from_value(e.payload.clone()).map_err(|x| bad("kiosk", x))?;
            let registered_at = state.kiosks.get(&k.id).map_or(e.time, |r| r.registered_at);
            state.kiosks.insert(
                k.id.clone(),
                Registered {
                    kiosk: k,
                    retired: false,
                    registered_at,
                },
            );
        }
        event::RETIRED => {
            if let Some(id) = e.payload.get("id").and_then(Value::as_str)
                && let Some(r) = state.kiosks.get_mut(id)
            {
                r.retired = true;
            }
        }
        event::ONLINE | event::OFFLINE | event::PERIPHERAL => {
            let c: Change =
                serde_json::from_value(e.payload.clone()).map_err(|x| bad("change", x))?;
            state.tracker.replay(&c);
            apply_change(state, &c);
        }
        // Types of later versions of civiclake are skipped, not fatal.
        other => tracing::debug!(
            event_type = other,
            "kiosk fleet: unknown event type skipped"
        ),
    }
    Ok(())
}

/// The availability of kiosk `id` within `[from, to)`, counted from its first time online
/// (None before it, or when it should not have been open).
fn day_availability(
    state: &State,
    id: &str,
    r: &Registered,
    from: i64,
    to: i64,
) -> Option<Availability> {
    let first = *state.first_online.get(id)?;
    let from = from.max(first);
    if from >= to {
        return None;
    }
    let spans = offline_spans(state.spans.get(id).map_or(&[][..], Vec::as_slice), to);
    let a = availability(&r.kiosk.opening_hours, &spans, from, to);
    (a.open_minutes > 0.0).then_some(a)
}

/// `year-month` of `us` in Rome.
pub fn month_of(us: i64) -> Option<(i32, u32)> {
    let t = chrono::DateTime::from_timestamp_micros(us)?.with_timezone(&TIME_ZONE);
    Some((t.year(), t.month()))
}
