//! Running pipelines: a write observer that watches the sources' event times (watermarks,
//! late rows, clock skew), and one task per pipeline that emits the windows the watermark
//! passed and recomputes the windows late rows changed.

use crate::error::{Error, Result};
use crate::incremental::Incremental;
use crate::spec::{Defined, PipelineSpec, TableSpec, Timing, check_pipeline, duration, micros};
use crate::sqlgen::{WindowQuery, timestamp_literal, to_lake_batch};
use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float64Array, RecordBatch, StringArray,
    StringDictionaryBuilder, TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Int32Type, Schema, SchemaRef, TimestampMicrosecondType};
use civiclake_core::{ColumnRole, field_column, role_of, tag_column, time_column, time_type};
use civiclake_lake::{Change, Lake, WriteObserver};
use civiclake_query::QueryEngine;
use parking_lot::{Mutex, RwLock};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

/// Rows later than a pipeline's allowed lateness.
pub const LATE_ROWS_TABLE: &str = "_late_rows";
/// Rows of devices whose clocks run ahead.
pub const QUARANTINE_TABLE: &str = "_quarantine";

/// The schema of `_late_rows`.
pub fn late_rows_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        time_column(),
        tag_column("pipeline"),
        tag_column("source"),
        tag_column("series"),
        field_column("event_time", time_type()),
        field_column("watermark", time_type()),
        field_column("row", DataType::Utf8),
    ]))
}

/// The schema of `_quarantine`.
pub fn quarantine_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        time_column(),
        tag_column("source"),
        tag_column("series"),
        field_column("event_time", time_type()),
        field_column("skew_seconds", DataType::Float64),
        field_column("row", DataType::Utf8),
    ]))
}

pub(crate) fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// The greatest multiple of `step` ≤ `t`.
pub(crate) fn align_down(t: i64, step: i64) -> i64 {
    t.div_euclid(step) * step
}

/// Why a pipeline's query is not one memory computes.
const NOT_IN_MEMORY: &str = "the query is not one kept in memory: only grouping columns and \
     aliased count, sum, avg, min, max of columns, without WHERE or HAVING";

/// Counters of one pipeline.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    rows_seen: AtomicU64,
    windows_emitted: AtomicU64,
    rows_emitted: AtomicU64,
    corrections: AtomicU64,
    late_rows: AtomicU64,
    quarantined: AtomicU64,
    last_lag_micros: AtomicU64,
    /// Time spent on the ingest path: checking writes for late and skewed rows, and taking
    /// acknowledged rows into the windows held in memory (ns, monotonic clock).
    write_path_nanos: AtomicU64,
    /// Time spent emitting windows and correcting them, waits for SQL and the lake included
    /// (ns, monotonic clock).
    emit_nanos: AtomicU64,
}

/// Nanoseconds since `start`, for the time counters.
fn nanos_since(start: std::time::Instant) -> u64 {
    u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

#[derive(Debug, Default)]
struct State {
    ready: bool,
    max_event: Option<i64>,
    last_data: i64,
    emitted_until: Option<i64>,
    emitting_until: Option<i64>,
    dirty: BTreeSet<i64>,
    /// The first window of a correction being computed.
    correcting: Option<i64>,
    /// The source did not exist when the pipeline started: every row is new, so the first
    /// emission starts at the first row.
    from_first_row: bool,
    /// Not started because its source table does not exist yet.
    waiting_for_source: bool,
    /// The source did not exist when the pipeline first looked: every row of it was
    /// written while the pipeline watched (memory holds whole windows from the first).
    sees_every_row: bool,
    error: Option<String>,
    /// The windows kept in memory as rows arrive (None: the query is not one memory can
    /// compute).
    incremental: Option<Incremental>,
}

impl State {
    fn watermark(&self, now: i64, t: &Timing) -> Option<i64> {
        let data = self.max_event.map(|m| m - t.watermark);
        match t.idle {
            Some(idle) if self.last_data > 0 && now - self.last_data >= idle => {
                Some(data.unwrap_or(i64::MIN).max(now - t.watermark))
            }
            _ => data,
        }
    }
}

/// One running pipeline.
#[derive(Debug)]
pub(crate) struct Running {
    pub(crate) spec: PipelineSpec,
    pub(crate) file: Option<String>,
    pub(crate) timing: Timing,
    query: WindowQuery,
    state: Mutex<State>,
    wake: Notify,
    stop: watch::Sender<bool>,
    stats: Stats,
    task: Mutex<Option<JoinHandle<()>>>,
}

/// What `GET /api/v1/pipelines` shows of a pipeline.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PipelineStatus {
    /// Its definition.
    pub spec: PipelineSpec,
    /// The file it comes from (absent: created through the API).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// Whether it has loaded its state and checked its SQL.
    pub running: bool,
    /// Why it is not emitting (waiting for the source table, a SQL error...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Newest event time seen (RFC 3339).
    pub max_event_time: Option<String>,
    /// The watermark.
    pub watermark: Option<String>,
    /// Every window ending at or before this is in the target.
    pub emitted_until: Option<String>,
    /// Windows waiting for a correction.
    pub pending_corrections: usize,
    /// Source rows seen since start.
    pub rows_seen: u64,
    /// Windows emitted since start.
    pub windows_emitted: u64,
    /// Rows written to the target since start.
    pub rows_emitted: u64,
    /// Windows recomputed for late rows since start.
    pub corrections: u64,
    /// Rows sent to `_late_rows` since start.
    pub late_rows: u64,
    /// Rows sent to `_quarantine` since start.
    pub quarantined: u64,
    /// Time from the watermark passing a window's end to its rows being written, at the
    /// latest emission (ms).
    pub last_lag_ms: f64,
    /// Whether windows are kept in memory as rows arrive, so emitting one does not read the
    /// source again (false: each window is computed by SQL when the watermark passes it).
    pub in_memory: bool,
    /// Why windows are not kept in memory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub in_memory_off: Option<String>,
    /// Windows emitted from memory since start (the others by SQL).
    pub windows_from_memory: u64,
    /// Time spent on the ingest path since start (ms): checking each write for late and
    /// skewed rows and adding its rows to the windows held in memory. The ingest path is
    /// synchronous, so this is CPU time (on the monotonic clock) taken by the pipeline.
    pub write_path_ms: f64,
    /// Time spent emitting and correcting windows since start (ms), from the watermark's
    /// check to the lake's acknowledgement, waits for SQL and the lake included: an upper
    /// bound of the CPU time emission takes.
    pub emit_ms: f64,
}

pub(crate) fn rfc3339(micros: i64) -> String {
    chrono::DateTime::from_timestamp_micros(micros)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

impl Running {
    fn checkpoint_name(&self) -> String {
        format!("pipeline:{}", self.spec.name)
    }

    fn status(&self) -> PipelineStatus {
        let s = self.state.lock();
        let now = now_micros();
        PipelineStatus {
            spec: self.spec.clone(),
            file: self.file.clone(),
            running: s.ready,
            error: s.error.clone(),
            max_event_time: s.max_event.map(rfc3339),
            watermark: s.watermark(now, &self.timing).map(rfc3339),
            emitted_until: s.emitted_until.map(rfc3339),
            pending_corrections: s.dirty.len(),
            rows_seen: self.stats.rows_seen.load(Ordering::Relaxed),
            windows_emitted: self.stats.windows_emitted.load(Ordering::Relaxed),
            rows_emitted: self.stats.rows_emitted.load(Ordering::Relaxed),
            corrections: self.stats.corrections.load(Ordering::Relaxed),
            late_rows: self.stats.late_rows.load(Ordering::Relaxed),
            quarantined: self.stats.quarantined.load(Ordering::Relaxed),
            last_lag_ms: self.stats.last_lag_micros.load(Ordering::Relaxed) as f64 / 1000.0,
            in_memory: s.incremental.as_ref().is_some_and(|i| i.off().is_none()),
            in_memory_off: match &s.incremental {
                None => Some(NOT_IN_MEMORY.to_string()),
                Some(i) => i.off().map(str::to_string),
            },
            windows_from_memory: s.incremental.as_ref().map_or(0, |i| i.served),
            write_path_ms: self.stats.write_path_nanos.load(Ordering::Relaxed) as f64 / 1e6,
            emit_ms: self.stats.emit_nanos.load(Ordering::Relaxed) as f64 / 1e6,
        }
    }

    /// Every bucket ending at or before this is complete in the target (the rollup bound).
    pub(crate) fn complete_until(&self) -> Option<i64> {
        let s = self.state.lock();
        if !s.ready {
            return None;
        }
        let e = s.emitted_until?;
        let first_dirty = s.dirty.first().copied().into_iter().chain(s.correcting);
        Some(first_dirty.fold(e, i64::min))
    }

    /// Rows of a write with times before this miss at least one of their windows: the
    /// earliest window holding them ended more than the allowed lateness before the
    /// watermark (for tumbling windows, their only one).
    fn late_cutoff(&self, now: i64) -> Option<i64> {
        let s = self.state.lock();
        if !s.ready || s.emitted_until.is_none() {
            return None;
        }
        let w = s.watermark(now, &self.timing)?;
        let t = &self.timing;
        Some(
            align_down(
                w.saturating_sub(t.lateness).saturating_sub(t.slide),
                t.slide,
            ) + t.slide,
        )
    }

    /// Something other than appended rows changed the source (a delete, a replace-by-key):
    /// the windows in memory may be wrong, so SQL computes them.
    fn source_changed(&self) {
        let mut s = self.state.lock();
        let newest = s.max_event;
        if let Some(i) = s.incremental.as_mut() {
            i.source_changed(newest);
        }
    }

    /// Takes note of rows now in the source: the newest event time, the open windows kept in
    /// memory, and the emitted windows that rows at or after `cutoff` but before the emitted
    /// bound fall in.
    fn observe(
        &self,
        batch: &RecordBatch,
        times: &TimestampMicrosecondArray,
        (min, max): (i64, i64),
        now: i64,
    ) {
        let started = std::time::Instant::now();
        self.observe_rows(batch, times, (min, max), now);
        self.stats
            .write_path_nanos
            .fetch_add(nanos_since(started), Ordering::Relaxed);
    }

    fn observe_rows(
        &self,
        batch: &RecordBatch,
        times: &TimestampMicrosecondArray,
        (min, max): (i64, i64),
        now: i64,
    ) {
        let t = self.timing;
        self.stats
            .rows_seen
            .fetch_add(times.len() as u64, Ordering::Relaxed);
        let mut s = self.state.lock();
        s.max_event = Some(s.max_event.map_or(max, |m| m.max(max)));
        s.last_data = now;
        let emitted = match (s.emitted_until, s.emitting_until) {
            (Some(e), Some(p)) => Some(e.max(p)),
            (e, p) => e.or(p),
        };
        if let Some(i) = s.incremental.as_mut() {
            i.add(batch, times, emitted, &t);
        }
        if !s.ready {
            if s.waiting_for_source {
                // Its source table exists now.
                s.waiting_for_source = false;
                drop(s);
                self.wake.notify_one();
            }
            return;
        }
        let bound = match (s.emitted_until, s.emitting_until) {
            (Some(e), Some(p)) => e.max(p),
            (Some(e), None) => e,
            _ => return,
        };
        if min >= bound {
            return;
        }
        let Some(w) = s.watermark(now, &t) else {
            return;
        };
        let mut marked = false;
        for v in times.iter().flatten().filter(|v| *v < bound) {
            let mut start = align_down(v, t.slide);
            while start > v - t.size {
                let end = start + t.size;
                if end <= bound && end.saturating_add(t.lateness) > w {
                    marked |= s.dirty.insert(start);
                }
                start -= t.slide;
            }
        }
        drop(s);
        if marked {
            self.wake.notify_one();
        }
    }
}

/// Publishes alert events (the server gives the bus).
#[async_trait::async_trait]
pub trait EventPublisher: Send + Sync + std::fmt::Debug {
    /// Publishes `event` (its topic is `bus` + its source).
    async fn publish(&self, event: civiclake_core::CloudEvent) -> std::result::Result<(), String>;
}

/// Settings of the runtime.
#[derive(Debug, Clone)]
pub struct Settings {
    /// How often each pipeline looks at its watermark without a write waking it.
    pub tick: Duration,
    /// How often retention runs.
    pub retention_every: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            tick: Duration::from_millis(250),
            retention_every: Duration::from_secs(3600),
        }
    }
}

pub(crate) struct Inner {
    pub(crate) lake: Arc<Lake>,
    pub(crate) engine: QueryEngine,
    pub(crate) settings: Settings,
    pipelines: RwLock<BTreeMap<String, Arc<Running>>>,
    by_source: RwLock<HashMap<String, Vec<Arc<Running>>>>,
    tables: RwLock<BTreeMap<String, Defined<TableSpec>>>,
    pub(crate) alerts: crate::alerts::AlertRules,
    pub(crate) publisher: Option<Arc<dyn EventPublisher>>,
    pub(crate) stop: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    observer: Mutex<Option<Arc<dyn WriteObserver>>>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipelines")
            .field("pipelines", &self.pipelines.read().len())
            .finish()
    }
}

/// The continuous pipelines, table settings and alert rules of a server.
#[derive(Debug, Clone)]
pub struct Pipelines {
    pub(crate) inner: Arc<Inner>,
}

#[derive(Debug)]
struct Observer(Weak<Inner>);

impl WriteObserver for Observer {
    fn before_write(&self, changes: &mut Vec<Change>, now: i64) {
        let Some(inner) = self.0.upgrade() else {
            return;
        };
        let by_source = inner.by_source.read();
        if by_source.is_empty() {
            return;
        }
        let mut extra = Vec::new();
        for change in changes.iter_mut() {
            let (table, batch) = match change {
                Change::Rows { table, batch } => (table, batch),
                Change::DeleteWhere { table, .. } | Change::ReplaceByKey { table, .. } => {
                    for p in by_source.get(table.as_str()).into_iter().flatten() {
                        p.source_changed();
                    }
                    continue;
                }
                Change::Checkpoint { .. } => continue,
            };
            let Some(pipelines) = by_source.get(table.as_str()) else {
                continue;
            };
            let started = std::time::Instant::now();
            let diverted = divert(table, batch, pipelines, now);
            // The checks of one write, shared by the table's pipelines.
            let share = nanos_since(started) / pipelines.len().max(1) as u64;
            for p in pipelines {
                p.stats.write_path_nanos.fetch_add(share, Ordering::Relaxed);
            }
            match diverted {
                Ok((kept, more)) => {
                    *batch = kept;
                    extra.extend(more);
                }
                Err(e) => {
                    tracing::warn!(table = %table, error = %e, "pipelines could not check a write")
                }
            }
        }
        changes.extend(extra);
    }

    fn after_write(&self, rows: &[(String, RecordBatch)], now: i64) {
        let Some(inner) = self.0.upgrade() else {
            return;
        };
        let latest = inner.engine.latest_cache();
        let by_source = inner.by_source.read();
        for (table, batch) in rows {
            latest.update(table, batch);
            let Some(pipelines) = by_source.get(table.as_str()) else {
                continue;
            };
            let Some(times) = time_array(batch) else {
                continue;
            };
            let Some(range) = time_range(times) else {
                continue;
            };
            for p in pipelines {
                p.observe(batch, times, range, now);
            }
        }
    }
}

/// The earliest and the newest time of a write (None: no row has one). One pass over the
/// values when none is null (the common case), so that the checks of every pipeline can
/// skip a write none of whose rows concerns them.
fn time_range(times: &TimestampMicrosecondArray) -> Option<(i64, i64)> {
    if times.null_count() == 0 {
        let values = times.values();
        let first = *values.first()?;
        Some(
            values
                .iter()
                .fold((first, first), |(lo, hi), &v| (lo.min(v), hi.max(v))),
        )
    } else {
        times.iter().flatten().fold(None, |range, v| match range {
            None => Some((v, v)),
            Some((lo, hi)) => Some((v.min(lo), v.max(hi))),
        })
    }
}

fn time_array(batch: &RecordBatch) -> Option<&TimestampMicrosecondArray> {
    let i = batch.schema().index_of(civiclake_core::TIME_COLUMN).ok()?;
    batch
        .column(i)
        .as_primitive_opt::<TimestampMicrosecondType>()
}

fn tag_strings(batch: &RecordBatch, columns: &[String]) -> Result<Vec<String>> {
    let schema = batch.schema();
    let names: Vec<String> = if columns.is_empty() {
        schema
            .fields()
            .iter()
            .filter(|f| role_of(f) == ColumnRole::Tag)
            .map(|f| f.name().clone())
            .collect()
    } else {
        columns.to_vec()
    };
    let mut texts = Vec::new();
    for name in &names {
        if let Ok(i) = schema.index_of(name) {
            let col = arrow::compute::cast(batch.column(i), &DataType::Utf8)?;
            texts.push((name.clone(), col));
        }
    }
    Ok((0..batch.num_rows())
        .map(|row| {
            texts
                .iter()
                .filter(|(_, c)| c.is_valid(row))
                .map(|(n, c)| format!("{n}={}", c.as_string::<i32>().value(row)))
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect())
}

fn json_rows(batch: &RecordBatch) -> Result<Vec<String>> {
    let mut writer = arrow::json::ArrayWriter::new(Vec::new());
    writer.write(batch)?;
    writer.finish()?;
    let bytes = writer.into_inner();
    let rows: Vec<Value> = if bytes.is_empty() {
        Vec::new()
    } else {
        serde_json::from_slice(&bytes).map_err(|e| Error::Invalid(format!("row as JSON: {e}")))?
    };
    Ok(rows.iter().map(Value::to_string).collect())
}

pub(crate) fn dict(values: &[String]) -> ArrayRef {
    let mut b = StringDictionaryBuilder::<Int32Type>::new();
    for v in values {
        b.append_value(v);
    }
    Arc::new(b.finish())
}

fn timestamps(values: Vec<i64>) -> ArrayRef {
    Arc::new(TimestampMicrosecondArray::from(values).with_timezone("UTC"))
}

/// Splits a write to `table`: rows too far ahead of `now` go to `_quarantine` (and out of
/// the batch), rows later than a pipeline's allowed lateness are also recorded in
/// `_late_rows` (they stay in the source: raw data is kept as it came).
fn divert(
    table: &str,
    batch: &RecordBatch,
    pipelines: &[Arc<Running>],
    now: i64,
) -> Result<(RecordBatch, Vec<Change>)> {
    let mut extra = Vec::new();
    let Some(times) = time_array(batch) else {
        return Ok((batch.clone(), extra));
    };
    let Some((earliest, newest)) = time_range(times) else {
        return Ok((batch.clone(), extra));
    };
    let mut batch = batch.clone();
    let skew = pipelines.iter().filter_map(|p| p.timing.skew).min();
    if let Some(skew) = skew.filter(|skew| newest > now.saturating_add(*skew)) {
        let limit = now.saturating_add(skew);
        let ahead: BooleanArray = times
            .iter()
            .map(|t| Some(t.is_some_and(|t| t > limit)))
            .collect();
        if ahead.true_count() > 0 {
            let quarantined = arrow::compute::filter_record_batch(&batch, &ahead)?;
            let keep = arrow::compute::not(&ahead)?;
            batch = arrow::compute::filter_record_batch(&batch, &keep)?;
            let owner = pipelines
                .iter()
                .find(|p| p.timing.skew == Some(skew))
                .map(|p| p.spec.series.clone())
                .unwrap_or_default();
            let series = tag_strings(&quarantined, &owner)?;
            let event: Vec<i64> = time_array(&quarantined)
                .map(|t| t.values().to_vec())
                .unwrap_or_default();
            let skew_s: Vec<f64> = event.iter().map(|t| (t - now) as f64 / 1e6).collect();
            let n = quarantined.num_rows();
            let rows = RecordBatch::try_new(
                quarantine_schema(),
                vec![
                    timestamps(vec![now; n]),
                    dict(&vec![table.to_string(); n]),
                    dict(&series),
                    timestamps(event),
                    Arc::new(Float64Array::from(skew_s)),
                    Arc::new(StringArray::from(json_rows(&quarantined)?)),
                ],
            )?;
            for p in pipelines.iter().filter(|p| p.timing.skew.is_some()) {
                p.stats.quarantined.fetch_add(n as u64, Ordering::Relaxed);
            }
            tracing::debug!(table, rows = n, "rows ahead of the clock quarantined");
            extra.push(Change::Rows {
                table: QUARANTINE_TABLE.into(),
                batch: rows,
            });
        }
    }
    let Some(times) = time_array(&batch).cloned() else {
        return Ok((batch, extra));
    };
    for p in pipelines {
        let Some(cutoff) = p.late_cutoff(now) else {
            continue;
        };
        if earliest >= cutoff {
            // No row of this write is late for this pipeline (rows quarantined above are
            // out of the batch, so the range can only have shrunk).
            continue;
        }
        let late: BooleanArray = times
            .iter()
            .map(|t| Some(t.is_some_and(|t| t < cutoff)))
            .collect();
        let n = late.true_count();
        if n == 0 {
            continue;
        }
        let rows = arrow::compute::filter_record_batch(&batch, &late)?;
        let series = tag_strings(&rows, &p.spec.series)?;
        let event: Vec<i64> = time_array(&rows)
            .map(|t| t.values().to_vec())
            .unwrap_or_default();
        let watermark = p.state.lock().watermark(now, &p.timing).unwrap_or(now);
        let record = RecordBatch::try_new(
            late_rows_schema(),
            vec![
                timestamps(vec![now; n]),
                dict(&vec![p.spec.name.clone(); n]),
                dict(&vec![table.to_string(); n]),
                dict(&series),
                timestamps(event),
                timestamps(vec![watermark; n]),
                Arc::new(StringArray::from(json_rows(&rows)?)),
            ],
        )?;
        p.stats.late_rows.fetch_add(n as u64, Ordering::Relaxed);
        extra.push(Change::Rows {
            table: LATE_ROWS_TABLE.into(),
            batch: record,
        });
    }
    Ok((batch, extra))
}

impl Pipelines {
    /// A runtime over `lake` (nothing runs until [`Pipelines::start`]).
    pub fn new(
        lake: Arc<Lake>,
        engine: QueryEngine,
        settings: Settings,
        publisher: Option<Arc<dyn EventPublisher>>,
    ) -> Result<Self> {
        let (stop, _) = watch::channel(false);
        let inner = Arc::new(Inner {
            lake: lake.clone(),
            engine,
            settings,
            pipelines: RwLock::default(),
            by_source: RwLock::default(),
            tables: RwLock::default(),
            alerts: crate::alerts::AlertRules::default(),
            publisher,
            stop,
            tasks: Mutex::default(),
            observer: Mutex::default(),
        });
        let observer: Arc<dyn WriteObserver> = Arc::new(Observer(Arc::downgrade(&inner)));
        lake.add_observer(observer.clone());
        *inner.observer.lock() = Some(observer);
        Ok(Self { inner })
    }

    /// Starts the definitions of the files, those created through the API earlier (kept as
    /// checkpoints), retention and the alert rules.
    pub async fn start(&self, defs: crate::spec::Definitions) -> Result<()> {
        let mut pipelines = defs.pipelines;
        let mut alerts = defs.alerts;
        for (name, value) in self.inner.lake.checkpoints() {
            if let Some(n) = name.strip_prefix(API_PIPELINE_PREFIX) {
                if value.is_null() {
                    continue;
                }
                match serde_json::from_value::<PipelineSpec>(value) {
                    Ok(spec) if !pipelines.iter().any(|d| d.spec.name == spec.name) => {
                        pipelines.push(Defined { spec, file: None })
                    }
                    Ok(_) => tracing::warn!(
                        pipeline = n,
                        "a file now defines this pipeline; the API's definition is ignored"
                    ),
                    Err(e) => {
                        tracing::warn!(pipeline = n, error = %e, "stored pipeline definition unreadable")
                    }
                }
            } else if let Some(n) = name.strip_prefix(crate::alerts::API_ALERT_PREFIX) {
                if value.is_null() {
                    continue;
                }
                match serde_json::from_value::<crate::spec::AlertSpec>(value) {
                    Ok(spec) if !alerts.iter().any(|d| d.spec.name == spec.name) => {
                        alerts.push(Defined { spec, file: None })
                    }
                    Ok(_) => tracing::warn!(
                        alert = n,
                        "a file now defines this alert; the API's definition is ignored"
                    ),
                    Err(e) => {
                        tracing::warn!(alert = n, error = %e, "stored alert definition unreadable")
                    }
                }
            }
        }
        for t in defs.tables {
            self.set_table(t);
        }
        for p in pipelines {
            self.add(p)?;
        }
        crate::alerts::start(self, alerts).await?;
        let inner = self.inner.clone();
        let mut stop = self.inner.stop.subscribe();
        self.inner.tasks.lock().push(tokio::spawn(async move {
            // Retention first runs a minute after start (not in the way of the replay).
            let mut wait = Duration::from_secs(60).min(inner.settings.retention_every);
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
                wait = inner.settings.retention_every;
                if let Err(e) = crate::retention::run(&inner).await {
                    tracing::warn!(error = %e, "retention failed");
                }
            }
        }));
        Ok(())
    }

    fn set_table(&self, t: Defined<TableSpec>) {
        let cache = self.inner.engine.latest_cache();
        if let Some(by) = &t.spec.latest_by {
            cache.enable(&t.spec.name, by.clone());
            let lookback = t
                .spec
                .latest_lookback
                .as_deref()
                .and_then(|l| duration("latest_lookback", l).ok())
                .map_or(86_400_000_000, micros);
            let (inner, table, by) = (self.inner.clone(), t.spec.name.clone(), by.clone());
            self.inner.tasks.lock().push(tokio::spawn(async move {
                if let Err(e) = fill_latest(&inner, &table, &by, lookback).await {
                    tracing::warn!(table, error = %e, "the last-value cache could not be filled from history");
                }
            }));
        }
        self.inner.tables.write().insert(t.spec.name.clone(), t);
    }

    /// Table settings, by table.
    pub fn tables(&self) -> Vec<Defined<TableSpec>> {
        self.inner.tables.read().values().cloned().collect()
    }

    /// Adds and starts a pipeline.
    fn add(&self, def: Defined<PipelineSpec>) -> Result<()> {
        let spec = def.spec;
        let timing = check_pipeline(&spec)?;
        let query = match (&spec.sql, &spec.rollup) {
            (Some(sql), _) => WindowQuery::compile(sql, &spec.source)?,
            (None, Some(r)) => WindowQuery::rollup(r, &spec.source)?,
            (None, None) => return Err(Error::Invalid("no sql".into())),
        };
        if self.inner.pipelines.read().contains_key(&spec.name) {
            return Err(Error::Conflict(format!("pipeline '{}' exists", spec.name)));
        }
        // The system tables a pipeline writes exist (empty) from its start, so they can be
        // queried; a server without pipelines does not have them.
        self.inner
            .lake
            .ensure_table(LATE_ROWS_TABLE, &late_rows_schema())?;
        if timing.skew.is_some() {
            self.inner
                .lake
                .ensure_table(QUARANTINE_TABLE, &quarantine_schema())?;
        }
        let (stop, _) = watch::channel(false);
        let state = State {
            incremental: query.plan().cloned().map(Incremental::new),
            ..State::default()
        };
        let running = Arc::new(Running {
            spec,
            file: def.file,
            timing,
            query,
            state: Mutex::new(state),
            wake: Notify::new(),
            stop,
            stats: Stats::default(),
            task: Mutex::default(),
        });
        self.inner
            .pipelines
            .write()
            .insert(running.spec.name.clone(), running.clone());
        self.index();
        let task = tokio::spawn(run(self.inner.clone(), running.clone()));
        *running.task.lock() = Some(task);
        Ok(())
    }

    fn index(&self) {
        let mut by_source: HashMap<String, Vec<Arc<Running>>> = HashMap::new();
        for p in self.inner.pipelines.read().values() {
            by_source
                .entry(p.spec.source.clone())
                .or_default()
                .push(p.clone());
        }
        *self.inner.by_source.write() = by_source;
    }

    /// Creates a pipeline (kept across restarts); a name in use is a conflict.
    pub async fn create(&self, spec: PipelineSpec) -> Result<PipelineStatus> {
        check_pipeline(&spec)?;
        match (&spec.sql, &spec.rollup) {
            (Some(sql), _) => {
                WindowQuery::compile(sql, &spec.source)?;
            }
            (None, Some(r)) => {
                WindowQuery::rollup(r, &spec.source)?;
            }
            _ => {}
        }
        if let Some(p) = self.inner.pipelines.read().get(&spec.name) {
            return Err(Error::Conflict(format!(
                "pipeline '{}' exists ({})",
                spec.name,
                p.file.as_deref().unwrap_or("created through the API")
            )));
        }
        let value = serde_json::to_value(&spec).map_err(|e| Error::Invalid(e.to_string()))?;
        self.inner
            .lake
            .set_checkpoint(&format!("{API_PIPELINE_PREFIX}{}", spec.name), value)
            .await?;
        let name = spec.name.clone();
        self.add(Defined { spec, file: None })?;
        self.status(&name)
    }

    /// Stops and forgets a pipeline created through the API (its target table stays).
    pub async fn delete(&self, name: &str) -> Result<()> {
        let running = self
            .inner
            .pipelines
            .read()
            .get(name)
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("pipeline '{name}'")))?;
        if let Some(file) = &running.file {
            return Err(Error::Conflict(format!(
                "pipeline '{name}' is defined in {file}; change the file"
            )));
        }
        self.inner
            .lake
            .apply(vec![
                Change::Checkpoint {
                    name: format!("{API_PIPELINE_PREFIX}{name}"),
                    value: Value::Null,
                },
                Change::Checkpoint {
                    name: running.checkpoint_name(),
                    value: Value::Null,
                },
            ])
            .await?;
        self.inner.pipelines.write().remove(name);
        self.index();
        if running.spec.rollup.is_some() {
            self.inner.engine.remove_rollup(name);
        }
        running.stop.send_replace(true);
        let task = running.task.lock().take();
        if let Some(task) = task {
            let _ = task.await;
        }
        Ok(())
    }

    /// The status of a pipeline.
    pub fn status(&self, name: &str) -> Result<PipelineStatus> {
        self.inner
            .pipelines
            .read()
            .get(name)
            .map(|p| p.status())
            .ok_or_else(|| Error::NotFound(format!("pipeline '{name}'")))
    }

    /// Every pipeline's status, by name.
    pub fn list(&self) -> Vec<PipelineStatus> {
        self.inner
            .pipelines
            .read()
            .values()
            .map(|p| p.status())
            .collect()
    }

    /// Waits until every pipeline has emitted what its watermark allows and has no
    /// correction pending (for tests and benchmarks), at most `timeout`; whether it did.
    pub async fn settle(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let now = now_micros();
            let done = self.inner.pipelines.read().values().all(|p| {
                let s = p.state.lock();
                if !s.ready {
                    return false;
                }
                let Some(w) = s.watermark(now, &p.timing) else {
                    return true;
                };
                s.dirty.is_empty()
                    && s.emitting_until.is_none()
                    && s.emitted_until
                        .is_some_and(|e| e >= align_down(w, p.timing.slide))
            });
            if done {
                return true;
            }
            for p in self.inner.pipelines.read().values() {
                p.wake.notify_one();
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops every task and lets go of the lake.
    pub async fn stop(&self) {
        self.inner.stop.send_replace(true);
        let running: Vec<_> = self.inner.pipelines.read().values().cloned().collect();
        for p in &running {
            p.stop.send_replace(true);
        }
        for p in running {
            let task = p.task.lock().take();
            if let Some(task) = task {
                let _ = task.await;
            }
        }
        let tasks: Vec<_> = self.inner.tasks.lock().drain(..).collect();
        for t in tasks {
            t.abort();
            let _ = t.await;
        }
        if let Some(o) = self.inner.observer.lock().take() {
            self.inner.lake.remove_observer(&o);
        }
        self.inner.pipelines.write().clear();
        self.inner.by_source.write().clear();
    }

    /// The alert rules.
    pub fn alerts(&self) -> &crate::alerts::AlertRules {
        &self.inner.alerts
    }

    pub(crate) fn push_task(&self, task: JoinHandle<()>) {
        self.inner.tasks.lock().push(task);
    }
}

impl Inner {
    pub(crate) fn pipeline_specs(&self) -> Vec<PipelineSpec> {
        self.pipelines
            .read()
            .values()
            .map(|p| p.spec.clone())
            .collect()
    }

    pub(crate) fn table_specs(&self) -> Vec<TableSpec> {
        self.tables
            .read()
            .values()
            .map(|t| t.spec.clone())
            .collect()
    }
}

/// Checkpoints holding the pipelines created through the API.
const API_PIPELINE_PREFIX: &str = "pipeline-def:";

async fn fill_latest(inner: &Inner, table: &str, by: &[String], lookback: i64) -> Result<()> {
    if inner.lake.schema(table).is_none() {
        return Ok(());
    }
    let sql = format!(
        "SELECT * FROM (SELECT *, row_number() OVER (PARTITION BY {by} ORDER BY time DESC) AS _latest_rank FROM {table} WHERE time >= {since}) WHERE _latest_rank = 1",
        by = by.join(", "),
        since = timestamp_literal(now_micros() - lookback)
    );
    let result = inner.engine.sql(&sql).await?;
    let cache = inner.engine.latest_cache();
    for batch in result.batches {
        let keep: Vec<usize> = (0..batch.num_columns().saturating_sub(1)).collect();
        cache.update(table, &batch.project(&keep)?);
    }
    tracing::info!(
        table,
        series = cache.series_count(table),
        "last-value cache filled"
    );
    Ok(())
}

async fn query_time(inner: &Inner, table: &str, agg: &str, since: i64) -> Result<Option<i64>> {
    let result = inner
        .engine
        .sql(&format!(
            "SELECT {agg}(time) FROM {table} WHERE time >= {}",
            timestamp_literal(since)
        ))
        .await?;
    Ok(result.batches.iter().find_map(|b| {
        let c = arrow::compute::cast(b.column(0), &time_type()).ok()?;
        let c = c.as_primitive::<TimestampMicrosecondType>();
        (!c.is_empty() && c.is_valid(0)).then(|| c.value(0))
    }))
}

/// Loads a pipeline's state and checks its SQL; Err while it cannot run yet.
async fn init(inner: &Inner, p: &Running) -> Result<()> {
    let t = p.timing;
    if inner.lake.schema(&p.spec.source).is_none() {
        let mut s = p.state.lock();
        s.waiting_for_source = true;
        if inner.lake.checkpoint(&p.checkpoint_name()).is_none() {
            s.from_first_row = true;
        }
        // The pipeline watched the source before it existed: memory sees every row of it.
        s.sees_every_row = true;
        drop(s);
        return Err(Error::Invalid(format!(
            "waiting for the source table '{}'",
            p.spec.source
        )));
    }
    inner
        .engine
        .sql(&p.query.sql(&t, 0, 0))
        .await
        .map_err(|e| Error::Invalid(format!("the SQL does not run: {e}")))?;
    let checkpoint = inner.lake.checkpoint(&p.checkpoint_name());
    let emitted = checkpoint
        .as_ref()
        .and_then(|c| c.get("emitted_until"))
        .and_then(Value::as_i64);
    let old_watermark = checkpoint
        .as_ref()
        .and_then(|c| c.get("watermark"))
        .and_then(Value::as_i64);
    let now = now_micros();
    let since = match emitted {
        Some(e) => e - t.size,
        None => now - t.backfill.max(86_400_000_000),
    };
    let max = query_time(inner, &p.spec.source, "max", since).await?;
    let mut s = p.state.lock();
    let seen_all = s.sees_every_row;
    if let Some(i) = s.incremental.as_mut() {
        // Rows written before the pipeline watched the source are at or before `max` (or
        // before `since`): later windows hold only rows memory sees. If the source did not
        // exist then, memory has seen every row.
        i.incomplete_before(if seen_all {
            i64::MIN
        } else {
            max.map_or(since, |m| m.saturating_add(1))
        });
    }
    s.max_event = match (s.max_event, max) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    if s.max_event.is_some() && s.last_data == 0 {
        s.last_data = now;
    }
    if let Some(e) = emitted {
        s.emitted_until = Some(e);
        // Windows that rows arriving while the server was down may have changed.
        let from = old_watermark.unwrap_or(e).saturating_sub(t.lateness);
        let mut start = align_down(e - t.size, t.slide);
        while start + t.size > from && start + t.size <= e {
            s.dirty.insert(start);
            start -= t.slide;
            if s.dirty.len() > 100_000 {
                break;
            }
        }
    }
    s.ready = true;
    s.error = None;
    Ok(())
}

/// One pipeline's task.
async fn run(inner: Arc<Inner>, p: Arc<Running>) {
    let mut stop = p.stop.subscribe();
    let mut global = inner.stop.subscribe();
    loop {
        match init(&inner, &p).await {
            Ok(()) => break,
            Err(e) => {
                p.state.lock().error = Some(e.to_string());
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                    _ = p.wake.notified() => {}
                    _ = stop.wait_for(|s| *s) => return,
                    _ = global.wait_for(|s| *s) => return,
                }
            }
        }
    }
    if let Some(rollup) = &p.spec.rollup {
        let weak = Arc::downgrade(&p);
        let def = civiclake_query::RollupDef {
            name: p.spec.name.clone(),
            source: p.spec.source.clone(),
            target: p.spec.target.clone(),
            bucket_micros: p.timing.size,
            series: rollup.series.clone(),
            fields: rollup.fields.clone(),
            rolled_up_until: Arc::new(move || weak.upgrade().and_then(|p| p.complete_until())),
        };
        if let Err(e) = inner.engine.register_rollup(def) {
            tracing::warn!(pipeline = p.spec.name, error = %e, "the rollup cannot serve queries");
        }
    }
    tracing::info!(
        pipeline = p.spec.name,
        source = p.spec.source,
        target = p.spec.target,
        "pipeline running"
    );
    loop {
        tokio::select! {
            _ = p.wake.notified() => {}
            _ = tokio::time::sleep(inner.settings.tick) => {}
            _ = stop.wait_for(|s| *s) => return,
            _ = global.wait_for(|s| *s) => return,
        }
        let started = std::time::Instant::now();
        let stepped = step(&inner, &p).await;
        p.stats
            .emit_nanos
            .fetch_add(nanos_since(started), Ordering::Relaxed);
        if let Err(e) = stepped {
            tracing::warn!(pipeline = p.spec.name, error = %e, "pipeline step failed; retrying");
            {
                let mut s = p.state.lock();
                s.error = Some(e.to_string());
                s.emitting_until = None;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = stop.wait_for(|s| *s) => return,
                _ = global.wait_for(|s| *s) => return,
            }
        } else {
            let mut s = p.state.lock();
            if s.error.is_some() {
                s.error = None;
            }
        }
    }
}

/// At most this much event time per window query.
const CHUNK_MICROS: i64 = 86_400_000_000;

async fn compute(inner: &Inner, p: &Running, first: i64, last: i64) -> Result<Option<RecordBatch>> {
    let result = inner
        .engine
        .sql(&p.query.sql(&p.timing, first, last))
        .await?;
    let mut batches = Vec::with_capacity(result.batches.len());
    for b in &result.batches {
        if b.num_rows() > 0 {
            batches.push(to_lake_batch(b, p.query.group_names())?);
        }
    }
    let Some(schema) = batches.first().map(RecordBatch::schema) else {
        return Ok(None);
    };
    Ok(Some(arrow::compute::concat_batches(&schema, &batches)?))
}

/// Emits what the watermark passed, then recomputes the windows late rows changed.
async fn step(inner: &Inner, p: &Running) -> Result<()> {
    let t = p.timing;
    let now = now_micros();
    let (w, e) = {
        let s = p.state.lock();
        let Some(w) = s.watermark(now, &t) else {
            return Ok(());
        };
        (w, s.emitted_until)
    };
    let e = match e {
        Some(e) => e,
        None => {
            // First start: from the watermark, or `backfill` before it but not before the
            // first row.
            let from_first_row = p.state.lock().from_first_row;
            let mut e0 = align_down(w.saturating_sub(t.backfill), t.slide);
            if t.backfill > 0 || from_first_row {
                let since = if from_first_row { 0 } else { e0 };
                if let Some(first) = query_time(inner, &p.spec.source, "min", since).await? {
                    e0 = if from_first_row {
                        align_down(first, t.slide)
                    } else {
                        e0.max(align_down(first, t.slide))
                    };
                }
            }
            let mut s = p.state.lock();
            *s.emitted_until.get_or_insert(e0)
        }
    };
    let target = align_down(w, t.slide);
    let mut from = e;
    let chunk = align_down(CHUNK_MICROS, t.slide).max(t.slide);
    while from < target {
        let mut to = target.min(from + chunk);
        // A run of windows reaching those memory holds stops before them (they come next,
        // from memory).
        let memory = p
            .state
            .lock()
            .incremental
            .as_ref()
            .and_then(Incremental::held_from);
        if let Some(held) = memory
            && from - t.size + t.slide < held
            && to - t.size >= held
        {
            to = align_down(held - 1, t.slide) + t.size;
        }
        let (first, last) = (from - t.size + t.slide, to - t.size);
        let from_memory = {
            let mut s = p.state.lock();
            s.emitting_until = Some(to);
            s.incremental
                .as_mut()
                .and_then(|i| i.take(first, last, &t, p.query.group_names()))
        };
        let batch = match from_memory {
            Some(batch) => batch?,
            None => compute(inner, p, first, last).await?,
        };
        if batch.is_none() && to < target {
            // No rows in these windows: skip the empty ones up to the next row (the windows
            // ending before it hold nothing either), so a gap of months is one query.
            let next = query_time(inner, &p.spec.source, "min", to).await?;
            let jump = next.map_or(target, |n| align_down(n, t.slide));
            to = jump.clamp(to, target);
        }
        let mut changes = Vec::new();
        let rows = batch.as_ref().map_or(0, RecordBatch::num_rows);
        if let Some(batch) = batch {
            changes.push(Change::Rows {
                table: p.spec.target.clone(),
                batch,
            });
        }
        changes.push(Change::Checkpoint {
            name: p.checkpoint_name(),
            value: json!({ "emitted_until": to, "watermark": w }),
        });
        inner.lake.apply(changes).await?;
        {
            let mut s = p.state.lock();
            s.emitted_until = Some(to);
            s.emitting_until = None;
        }
        p.stats
            .windows_emitted
            .fetch_add(((to - from) / t.slide) as u64, Ordering::Relaxed);
        p.stats
            .rows_emitted
            .fetch_add(rows as u64, Ordering::Relaxed);
        let lag = now_micros() - (to + t.watermark);
        p.stats
            .last_lag_micros
            .store(lag.max(0) as u64, Ordering::Relaxed);
        from = to;
    }
    // Corrections: recompute windows (already emitted) that late rows fell in.
    // Taken out of the set before computing: a late row arriving meanwhile marks its window
    // again.
    let dirty: Vec<i64> = {
        let mut s = p.state.lock();
        let bound = s.emitted_until.unwrap_or(i64::MIN);
        let ready: Vec<i64> = s
            .dirty
            .iter()
            .copied()
            .filter(|d| d + t.size <= bound)
            .take(4096)
            .collect();
        for d in &ready {
            s.dirty.remove(d);
        }
        s.correcting = ready.first().copied();
        ready
    };
    if dirty.is_empty() {
        return Ok(());
    }
    let result = correct(inner, p, &dirty).await;
    let mut s = p.state.lock();
    s.correcting = None;
    if result.is_err() {
        s.dirty.extend(dirty.iter().copied());
    }
    drop(s);
    result?;
    p.stats
        .corrections
        .fetch_add(dirty.len() as u64, Ordering::Relaxed);
    Ok(())
}

async fn correct(inner: &Inner, p: &Running, dirty: &[i64]) -> Result<()> {
    let t = p.timing;
    // Runs of consecutive windows, one query each.
    let mut runs: Vec<(i64, i64)> = Vec::new();
    for &d in dirty {
        if let Some((first, last)) = runs.last_mut()
            && d == *last + t.slide
            && d - *first < CHUNK_MICROS
        {
            *last = d;
            continue;
        }
        runs.push((d, d));
    }
    // One record: the windows' rows deleted, their new rows appended (a replace of whole
    // windows: a key of `time` alone would keep one row per window).
    let mut changes = Vec::new();
    if inner.lake.schema(&p.spec.target).is_some() {
        changes.push(Change::DeleteWhere {
            table: p.spec.target.clone(),
            predicate: civiclake_core::RowPredicate::in_list(
                civiclake_core::TIME_COLUMN,
                dirty
                    .iter()
                    .map(|d| civiclake_core::Literal::Timestamp(*d))
                    .collect(),
            ),
        });
    }
    for (first, last) in runs {
        if let Some(batch) = compute(inner, p, first, last).await? {
            changes.push(Change::Rows {
                table: p.spec.target.clone(),
                batch,
            });
        }
    }
    if !changes.is_empty() {
        inner.lake.apply(changes).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alignment_floors_also_before_the_epoch() {
        assert_eq!(align_down(299, 100), 200);
        assert_eq!(align_down(300, 100), 300);
        assert_eq!(align_down(-1, 100), -100);
    }
}
