//! The ingest service: the [`MessageSink`] behind every message source (the embedded MQTT
//! broker, external MQTT brokers, Kafka).
//!
//! For each message it finds the route (`pipelines/ingest/*.toml`, then the built-in
//! `ingest/{table}` route), checks that the target table may be written (never a system or a
//! module table; an authenticated publisher needs the write grant of the table), decodes the
//! payload and writes the rows. A message that cannot be routed to a table it may write, or
//! that cannot be decoded, is written to `_dead_letters` with the reason, in the same WAL
//! record as the good rows. `deliver` returns when all of it is durable; only then does the
//! source acknowledge.
//!
//! Routes are written with MQTT-style topics (`/` between levels). A Kafka topic's `.` are
//! read as `/` when its route is looked up ([`route_topic`]): `ingest.air` takes the default
//! route `ingest/{table}` to table `air`; `_dead_letters.topic` keeps the Kafka topic as it is.
//!
//! [`IngestService::deliver_with_checkpoints`] writes checkpoints (a Kafka source's offsets)
//! in the same WAL record as the rows and dead letters of the messages: exactly-once for a
//! source that can replay from a checkpoint. [`IngestService::deliver_with_refusals`] adds
//! the dead letters of messages another part of the server refused (the bus: a `bus/...`
//! event without a schema) to that record.

use arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray, StringDictionaryBuilder};
use arrow::datatypes::{DataType, Int32Type, Schema, SchemaRef};
use async_trait::async_trait;
use civiclake_auth::{Permission, Principal};
use civiclake_core::{
    DeliveryReport, ErrorClass, InboundMessage, IngestError, MessageSink, ModuleRegistry,
    SourceKind, field_column, tag_column, time_column,
};
use civiclake_ingest::{DecodeOptions, PayloadFormat, RouteSet, SchemaLookup};
use civiclake_lake::{Change, Lake};
use parking_lot::{Mutex, RwLock};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The system table of messages that could not be stored.
pub const DEAD_LETTERS_TABLE: &str = "_dead_letters";

/// Longest payload kept in `_dead_letters` (longer ones are cut, and the cut is said).
const MAX_DEAD_PAYLOAD: usize = 64 * 1024;

/// The schema of `_dead_letters`.
pub fn dead_letters_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        time_column(),
        tag_column("payload_encoding"),
        tag_column("route"),
        tag_column("source"),
        field_column("content_type", DataType::Utf8),
        field_column("error", DataType::Utf8),
        field_column("offset", DataType::Int64),
        field_column("partition", DataType::Int64),
        field_column("payload", DataType::Utf8),
        field_column("publisher", DataType::Utf8),
        field_column("topic", DataType::Utf8),
    ]))
}

/// Principals of the clients connected to the embedded broker, by token id: the broker's
/// authentication fills it, the ingest service checks table grants with it.
#[derive(Debug, Default)]
pub struct Publishers {
    by_token: RwLock<HashMap<String, Principal>>,
}

impl Publishers {
    /// Records the principal of a client that authenticated.
    pub fn insert(&self, principal: Principal) {
        if let Some(id) = principal.token_id.clone() {
            self.by_token.write().insert(id, principal);
        }
    }

    /// The principal of token `id`, if a client authenticated with it.
    pub fn get(&self, id: &str) -> Option<Principal> {
        self.by_token.read().get(id).cloned()
    }
}

/// Picks one counter of a route.
type CounterOf = fn(&RouteCounters) -> &AtomicU64;

/// Counters of one route.
#[derive(Debug, Default)]
struct RouteCounters {
    messages: AtomicU64,
    rows: AtomicU64,
    dead_letters: AtomicU64,
}

/// Settings of the ingest service.
#[derive(Debug, Clone)]
pub struct IngestSettings {
    /// Directory of the route files (`*.toml`); a missing directory means no routes.
    pub routes_dir: PathBuf,
    /// Whether the built-in `ingest/{table}` route is on.
    pub default_route: bool,
    /// Keyed pseudonymisation of phone identifiers (`phone_locations` payloads).
    pub pseudonymiser: Option<Arc<civiclake_ingest::Pseudonymiser>>,
    /// Authentication is off (`--insecure-no-auth`): anonymous publishers may write any
    /// table that is not a system or module table.
    pub auth_disabled: bool,
}

/// See the module documentation.
#[derive(Debug)]
pub struct IngestService {
    lake: Arc<Lake>,
    modules: Arc<ModuleRegistry>,
    publishers: Arc<Publishers>,
    settings: IngestSettings,
    routes: RwLock<Arc<RouteSet>>,
    counters: Mutex<BTreeMap<String, Arc<RouteCounters>>>,
    ignored: AtomicU64,
}

struct LakeSchemas<'a>(&'a Lake);

impl SchemaLookup for LakeSchemas<'_> {
    fn schema(&self, table: &str) -> Option<SchemaRef> {
        self.0.schema(table)
    }
}

/// The topic the routes of `message` are looked up with: its topic, with a Kafka topic's
/// `.` turned into `/` (Kafka topic names cannot contain `/`; route patterns use it between
/// levels, as MQTT does).
pub fn route_topic(message: &InboundMessage) -> Cow<'_, str> {
    match message.source {
        SourceKind::Kafka(_) => Cow::Owned(message.topic.replace('.', "/")),
        SourceKind::EmbeddedMqtt | SourceKind::ExternalMqtt(_) => Cow::Borrowed(&message.topic),
    }
}

/// How many times a delivery re-checks its rows when a write still refuses them (another
/// writer widened a table between the check and the write) before it gives up.
const RECHECKS: usize = 3;

/// A message of a batch that another part of the server refused before ingest (e.g. a
/// `bus/...` event the bus did not take): filed in `_dead_letters` under `route` with
/// `error`, in the same WAL record as the rest of the batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Its position in the batch.
    pub index: usize,
    /// The route it is filed under (`bus`).
    pub route: String,
    /// Why.
    pub error: String,
}

/// What became of one message before the write.
enum Plan {
    Ignored,
    Rows {
        route: String,
        batches: Vec<(String, RecordBatch)>,
        redact: bool,
    },
    Dead {
        route: String,
        error: String,
        redact: bool,
    },
}

/// An error loading the routes.
pub type RouteLoadError = civiclake_ingest::RouteError;

impl IngestService {
    /// Loads the routes and creates `_dead_letters` (empty) so it can be queried at once.
    pub fn new(
        lake: Arc<Lake>,
        modules: Arc<ModuleRegistry>,
        publishers: Arc<Publishers>,
        settings: IngestSettings,
    ) -> Result<Self, crate::Error> {
        lake.ensure_table(DEAD_LETTERS_TABLE, &dead_letters_schema())?;
        let routes = Self::load_routes(&settings)?;
        tracing::info!(
            routes = routes.routes().len(),
            dir = %settings.routes_dir.display(),
            default_route = settings.default_route,
            "ingest routes loaded"
        );
        Ok(Self {
            lake,
            modules,
            publishers,
            settings,
            routes: RwLock::new(Arc::new(routes)),
            counters: Mutex::new(BTreeMap::new()),
            ignored: AtomicU64::new(0),
        })
    }

    fn load_routes(settings: &IngestSettings) -> Result<RouteSet, RouteLoadError> {
        Ok(RouteSet::load_dir(&settings.routes_dir)?.with_default_route(settings.default_route))
    }

    /// Reads the route files again (on SIGHUP). A broken file keeps the old routes in force;
    /// messages being stored meanwhile use the routes they started with.
    pub fn reload_routes(&self) -> Result<usize, RouteLoadError> {
        let routes = Self::load_routes(&self.settings)?;
        let n = routes.routes().len();
        *self.routes.write() = Arc::new(routes);
        Ok(n)
    }

    /// The routes in force.
    pub fn routes(&self) -> Arc<RouteSet> {
        self.routes.read().clone()
    }

    fn counters(&self, route: &str) -> Arc<RouteCounters> {
        self.counters
            .lock()
            .entry(route.to_string())
            .or_default()
            .clone()
    }

    /// Why `table` may not be written by `message`, if it may not.
    fn refusal(&self, message: &InboundMessage, table: &str) -> Option<String> {
        if table.starts_with('_') {
            return Some(format!(
                "table {table} is a system table: it is written by civiclake itself"
            ));
        }
        if let Some(module) = self.modules.owner_of_table(table) {
            return Some(format!(
                "table {table} belongs to the {} module: only the module writes it",
                module.name()
            ));
        }
        let Some(id) = &message.publisher else {
            // External sources are configured by the operator; anonymous embedded clients
            // exist only when authentication is off.
            return None;
        };
        let Some(principal) = self.publishers.get(id) else {
            return (!self.settings.auth_disabled)
                .then(|| format!("publisher {id} is not an authenticated client"));
        };
        if !principal.can(Permission::Write) {
            return Some(format!(
                "publisher {id} (role {}) lacks the 'write' permission",
                principal.role
            ));
        }
        if !principal.reaches_table(table) {
            return Some(format!(
                "publisher {id} may not write table {table} (granted: {})",
                if principal.tables.is_empty() {
                    "none".to_string()
                } else {
                    principal.tables.join(", ")
                }
            ));
        }
        None
    }

    fn plan(&self, routes: &RouteSet, message: &InboundMessage) -> Plan {
        let Some(found) = routes.resolve(&route_topic(message)) else {
            return Plan::Ignored;
        };
        let route = found.route.name().to_string();
        let redact = found.route.format() == PayloadFormat::PhoneLocations;
        let dead = |error: String| Plan::Dead {
            route: route.clone(),
            error,
            redact,
        };
        let table = match found.check_table() {
            Ok(t) => t.to_string(),
            Err(e) => return dead(e.to_string()),
        };
        if let Some(reason) = self.refusal(message, &table) {
            return dead(reason);
        }
        let opts = DecodeOptions {
            table: Some(table),
            now_micros: message.received_micros,
            accept_partial: false,
            pseudonymiser: self.settings.pseudonymiser.clone(),
            ..DecodeOptions::default()
        };
        let decoded = match found.decode(&message.payload, &opts, &LakeSchemas(&self.lake)) {
            Ok(d) => d,
            Err(e) => return dead(e.to_string()),
        };
        if !decoded.rejected.is_empty() {
            let mut text = format!("{} row(s) rejected", decoded.rejected.len());
            for e in decoded.rejected.iter().take(5) {
                let _ = write!(text, "; {e}");
            }
            return dead(text);
        }
        for t in &decoded.batches {
            if let Some(reason) = self.refusal(message, &t.table) {
                return dead(reason);
            }
        }
        Plan::Rows {
            route,
            batches: decoded
                .batches
                .into_iter()
                .map(|t| (t.table, t.batch))
                .collect(),
            redact,
        }
    }

    /// Writes rows (merged per table and schema), dead letters and checkpoints in one WAL
    /// record.
    async fn write(
        &self,
        plans: &[Plan],
        messages: &[InboundMessage],
        refusals: &[Refusal],
        checkpoints: &[(String, serde_json::Value)],
    ) -> Result<(), civiclake_lake::Error> {
        let rows: Vec<(String, RecordBatch)> = plans
            .iter()
            .filter_map(|p| match p {
                Plan::Rows { batches, .. } => Some(batches.iter().cloned()),
                _ => None,
            })
            .flatten()
            .collect();
        let dead: Vec<DeadLetter<'_>> = messages
            .iter()
            .zip(plans)
            .filter_map(|(message, plan)| match plan {
                Plan::Dead {
                    route,
                    error,
                    redact,
                } => Some(DeadLetter {
                    message,
                    route: route.clone(),
                    error: error.clone(),
                    redact: *redact,
                }),
                _ => None,
            })
            .chain(refusals.iter().filter_map(|r| {
                Some(DeadLetter {
                    message: messages.get(r.index)?,
                    route: r.route.clone(),
                    error: r.error.clone(),
                    redact: false,
                })
            }))
            .collect();
        let mut changes: Vec<Change> = merge_batches(rows)?
            .into_iter()
            .map(|(table, batch)| Change::Rows { table, batch })
            .collect();
        if !dead.is_empty() {
            changes.push(Change::Rows {
                table: DEAD_LETTERS_TABLE.to_string(),
                batch: dead_letter_batch(&dead)?,
            });
        }
        changes.extend(checkpoints.iter().map(|(name, value)| Change::Checkpoint {
            name: name.clone(),
            value: value.clone(),
        }));
        if changes.is_empty() {
            return Ok(());
        }
        self.lake.apply(changes).await.map(|_| ())
    }

    /// [`MessageSink::deliver`], with `checkpoints` (name, value) set in the same WAL record
    /// as the rows and dead letters of `messages`: once this returns `Ok`, the messages and
    /// the checkpoints are durable together; after an `Err` neither is (nothing of the call
    /// was stored). A Kafka source passes its offsets (`kafka/<source>/<topic>/<partition>`
    /// → the last offset delivered), so that after a crash it resumes exactly after the
    /// messages the lake has. The checkpoints are written even when every message is ignored.
    pub async fn deliver_with_checkpoints(
        &self,
        messages: &[InboundMessage],
        checkpoints: Vec<(String, serde_json::Value)>,
    ) -> Result<DeliveryReport, IngestError> {
        self.deliver_with_refusals(messages, &[], checkpoints).await
    }

    /// [`IngestService::deliver_with_checkpoints`], with the dead letters of `refusals`
    /// (messages of the batch refused before ingest) in the same WAL record. A refused
    /// message still goes through the routes (a route may archive `bus/...` traffic); the
    /// report counts its dead letter.
    pub async fn deliver_with_refusals(
        &self,
        messages: &[InboundMessage],
        refusals: &[Refusal],
        checkpoints: Vec<(String, serde_json::Value)>,
    ) -> Result<DeliveryReport, IngestError> {
        let routes = self.routes();
        let mut plans: Vec<Plan> = messages.iter().map(|m| self.plan(&routes, m)).collect();
        // Fast path: the rows of every message, the dead letters and the checkpoints in one
        // WAL record.
        let mut result = self.write(&plans, messages, refusals, &checkpoints).await;
        let mut rechecks = 0;
        while let Err(e) = &result
            && e.class() == ErrorClass::User
            && rechecks < RECHECKS
        {
            // Messages disagree with each other (one makes a column a number, the next a
            // string): keep, in order, the messages whose rows fit the tables as widened by
            // the ones before; the others become dead letters — still in one WAL record.
            rechecks += 1;
            let mut check = self.lake.rows_check();
            for plan in plans.iter_mut() {
                let Plan::Rows {
                    route,
                    batches,
                    redact,
                } = plan
                else {
                    continue;
                };
                if let Err(e) = check.admit(batches) {
                    *plan = Plan::Dead {
                        route: route.clone(),
                        error: e.to_string(),
                        redact: *redact,
                    };
                }
            }
            result = self.write(&plans, messages, refusals, &checkpoints).await;
        }
        result.map_err(|e| lake_to_ingest(&e))?;
        let mut report = DeliveryReport::default();
        let refused: std::collections::BTreeSet<usize> = refusals.iter().map(|r| r.index).collect();
        for (i, plan) in plans.iter().enumerate() {
            match plan {
                // A refused message is counted as a dead letter below.
                Plan::Ignored if refused.contains(&i) => {}
                Plan::Ignored => report.ignored += 1,
                Plan::Rows { route, batches, .. } => {
                    let n: usize = batches.iter().map(|(_, b)| b.num_rows()).sum();
                    let c = self.counters(route);
                    c.messages.fetch_add(1, Ordering::Relaxed);
                    c.rows.fetch_add(n as u64, Ordering::Relaxed);
                    report.stored += 1;
                    report.rows += n;
                }
                Plan::Dead { route, error, .. } => {
                    tracing::debug!(route, error, "message dead-lettered");
                    self.counters(route)
                        .dead_letters
                        .fetch_add(1, Ordering::Relaxed);
                    report.dead_lettered += 1;
                }
            }
        }
        for r in refusals.iter().filter(|r| r.index < messages.len()) {
            tracing::debug!(route = r.route, error = r.error, "message refused");
            self.counters(&r.route)
                .dead_letters
                .fetch_add(1, Ordering::Relaxed);
            report.dead_lettered += 1;
        }
        self.ignored
            .fetch_add(report.ignored as u64, Ordering::Relaxed);
        Ok(report)
    }
}

/// One message for `_dead_letters`.
struct DeadLetter<'a> {
    message: &'a InboundMessage,
    route: String,
    error: String,
    redact: bool,
}

fn lake_to_ingest(e: &civiclake_lake::Error) -> IngestError {
    match e {
        civiclake_lake::Error::Saturated {
            reason,
            retry_after,
        } => IngestError::Busy {
            reason: reason.clone(),
            retry_after_ms: u64::try_from(retry_after.as_millis()).unwrap_or(u64::MAX),
        },
        other => IngestError::Unavailable(other.to_string()),
    }
}

#[async_trait]
impl MessageSink for IngestService {
    async fn deliver(&self, messages: Vec<InboundMessage>) -> Result<DeliveryReport, IngestError> {
        self.deliver_with_checkpoints(&messages, Vec::new()).await
    }
}

impl civiclake_api::MetricsSource for IngestService {
    fn render(&self, out: &mut String) {
        let counters = self.counters.lock().clone();
        let families: [(&str, &str, CounterOf); 3] = [
            (
                "civiclake_ingest_messages_total",
                "Broker messages stored as rows, per route.",
                |c| &c.messages,
            ),
            (
                "civiclake_ingest_rows_total",
                "Rows stored from broker messages, per route.",
                |c| &c.rows,
            ),
            (
                "civiclake_dead_letters_total",
                "Messages written to _dead_letters, per route.",
                |c| &c.dead_letters,
            ),
        ];
        for (name, help, get) in families {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for (route, c) in &counters {
                let _ = writeln!(
                    out,
                    "{name}{{route=\"{}\"}} {}",
                    route.replace('\\', "\\\\").replace('"', "\\\""),
                    get(c).load(Ordering::Relaxed)
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP civiclake_ingest_ignored_total Broker messages that matched no route (pub/sub traffic).\n# TYPE civiclake_ingest_ignored_total counter\nciviclake_ingest_ignored_total {}",
            self.ignored.load(Ordering::Relaxed)
        );
    }
}

/// Concatenates the batches of each table that share a schema, keeping first-seen order.
fn merge_batches(
    rows: Vec<(String, RecordBatch)>,
) -> Result<Vec<(String, RecordBatch)>, civiclake_lake::Error> {
    let mut groups: Vec<(String, SchemaRef, Vec<RecordBatch>)> = Vec::new();
    for (table, batch) in rows {
        match groups
            .iter_mut()
            .find(|(t, s, _)| *t == table && **s == *batch.schema())
        {
            Some((_, _, list)) => list.push(batch),
            None => groups.push((table, batch.schema(), vec![batch])),
        }
    }
    groups
        .into_iter()
        .map(|(table, schema, list)| {
            let batch = if list.len() == 1 {
                list.into_iter()
                    .next()
                    .unwrap_or_else(|| RecordBatch::new_empty(schema))
            } else {
                arrow::compute::concat_batches(&schema, &list)?
            };
            Ok((table, batch))
        })
        .collect()
}

fn dict(values: impl Iterator<Item = String>) -> ArrayRef {
    let mut b = StringDictionaryBuilder::<Int32Type>::new();
    for v in values {
        b.append_value(v);
    }
    Arc::new(b.finish())
}

fn dead_letter_batch(dead: &[DeadLetter<'_>]) -> Result<RecordBatch, civiclake_lake::Error> {
    use base64::Engine as _;
    let mut payloads = Vec::with_capacity(dead.len());
    let mut encodings = Vec::with_capacity(dead.len());
    for d in dead {
        let p = &d.message.payload;
        if d.redact {
            payloads.push(format!(
                "(not kept: {} bytes of a phone_locations payload carry raw device identifiers)",
                p.len()
            ));
            encodings.push("redacted".to_string());
            continue;
        }
        let kept = &p[..p.len().min(MAX_DEAD_PAYLOAD)];
        match std::str::from_utf8(kept) {
            Ok(text) if kept.len() == p.len() => {
                payloads.push(text.to_string());
                encodings.push("utf8".to_string());
            }
            _ => {
                payloads.push(base64::engine::general_purpose::STANDARD.encode(kept));
                encodings.push(if kept.len() == p.len() {
                    "base64".to_string()
                } else {
                    format!("base64, first {} of {} bytes", kept.len(), p.len())
                });
            }
        }
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(
            arrow::array::TimestampMicrosecondArray::from(
                dead.iter()
                    .map(|d| d.message.received_micros)
                    .collect::<Vec<_>>(),
            )
            .with_timezone("UTC"),
        ),
        dict(encodings.into_iter()),
        dict(dead.iter().map(|d| d.route.clone())),
        dict(dead.iter().map(|d| d.message.source.to_string())),
        Arc::new(StringArray::from(
            dead.iter()
                .map(|d| d.message.content_type.clone())
                .collect::<Vec<_>>(),
        )),
        Arc::new(StringArray::from(
            dead.iter()
                .map(|d| Some(d.error.clone()))
                .collect::<Vec<_>>(),
        )),
        Arc::new(Int64Array::from(
            dead.iter().map(|d| d.message.offset).collect::<Vec<_>>(),
        )),
        Arc::new(Int64Array::from(
            dead.iter()
                .map(|d| d.message.partition.map(i64::from))
                .collect::<Vec<_>>(),
        )),
        Arc::new(StringArray::from(
            payloads.into_iter().map(Some).collect::<Vec<_>>(),
        )),
        Arc::new(StringArray::from(
            dead.iter()
                .map(|d| d.message.publisher.clone())
                .collect::<Vec<_>>(),
        )),
        Arc::new(StringArray::from(
            dead.iter()
                .map(|d| Some(d.message.topic.clone()))
                .collect::<Vec<_>>(),
        )),
    ];
    Ok(RecordBatch::try_new(dead_letters_schema(), columns)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray};
    use civiclake_core::SourceKind;
    use civiclake_lake::{LakeConfig, OpenMode};

    async fn service(routes: &str) -> (tempfile::TempDir, Arc<Lake>, IngestService) {
        let dir = tempfile::tempdir().unwrap();
        let routes_dir = dir.path().join("routes");
        std::fs::create_dir_all(&routes_dir).unwrap();
        std::fs::write(routes_dir.join("test.toml"), routes).unwrap();
        let lake = Lake::open(
            LakeConfig::new(dir.path().join("data")),
            OpenMode::ReadWrite,
        )
        .await
        .unwrap();
        let secret = b"0123456789abcdef0123456789abcdef".to_vec();
        let svc = IngestService::new(
            lake.clone(),
            Arc::new(ModuleRegistry::shipped()),
            Arc::new(Publishers::default()),
            IngestSettings {
                routes_dir,
                default_route: true,
                pseudonymiser: Some(Arc::new(
                    civiclake_ingest::Pseudonymiser::new(secret, civiclake_ingest::Rotation::Daily)
                        .unwrap(),
                )),
                auth_disabled: false,
            },
        )
        .unwrap();
        (dir, lake, svc)
    }

    fn msg(topic: &str, payload: &str) -> InboundMessage {
        let mut m = InboundMessage::new(SourceKind::Kafka("k".into()), topic, payload);
        m.partition = Some(2);
        m.offset = Some(41);
        m
    }

    fn all_rows(lake: &Lake, table: &str) -> Vec<RecordBatch> {
        lake.snapshot(table)
            .unwrap()
            .map(|s| s.batches)
            .unwrap_or_default()
    }

    fn strings(batches: &[RecordBatch], column: &str) -> Vec<String> {
        let mut out = Vec::new();
        for b in batches {
            let col =
                arrow::compute::cast(b.column_by_name(column).unwrap(), &DataType::Utf8).unwrap();
            let col = col.as_string::<i32>();
            for i in 0..col.len() {
                out.push(col.value(i).to_string());
            }
        }
        out
    }

    const PHONE_ROUTE: &str = r#"
[[route]]
name = "phones"
topic = "phones/{app}"
format = "phone_locations"
table = "phone_points"
"#;

    #[tokio::test]
    async fn messages_become_rows_dead_letters_or_are_left_alone() {
        let (_dir, lake, svc) = service(PHONE_ROUTE).await;
        assert_eq!(lake.schema(DEAD_LETTERS_TABLE), Some(dead_letters_schema()));
        let report = svc
            .deliver(vec![
                msg("ingest/air", "air,sensor=a pm25=1.5 1767225600000000000"),
                msg("ingest/air", "air,sensor=b pm25="),
                msg("ingest/council_events", r#"{"x":1}"#),
                msg("bus/elsewhere", "{}"),
                msg(
                    "ingest/noise",
                    r#"[{"n":"laeq","v":55.5,"u":"dB","t":1767225600}]"#,
                ),
                msg(
                    "phones/app1",
                    r#"{"device_id":"PHONE-SECRET-ID","points":[{"lat":95,"lon":11}]}"#,
                ),
            ])
            .await
            .unwrap();
        assert_eq!(
            report,
            DeliveryReport {
                stored: 2,
                rows: 2,
                dead_lettered: 3,
                ignored: 1
            }
        );
        assert_eq!(strings(&all_rows(&lake, "air"), "sensor"), vec!["a"]);
        // SenML detected by the default route.
        assert_eq!(strings(&all_rows(&lake, "noise"), "name"), vec!["laeq"]);
        let dead = all_rows(&lake, DEAD_LETTERS_TABLE);
        assert_eq!(
            strings(&dead, "topic"),
            vec!["ingest/air", "ingest/council_events", "phones/app1"]
        );
        assert_eq!(strings(&dead, "source"), vec!["kafka:k"; 3]);
        assert_eq!(
            strings(&dead, "route"),
            vec!["default", "default", "phones"]
        );
        assert_eq!(strings(&dead, "partition"), vec!["2"; 3]);
        assert_eq!(strings(&dead, "offset"), vec!["41"; 3]);
        let errors = strings(&dead, "error");
        assert!(errors[0].contains("1 row(s) rejected"), "{errors:?}");
        assert!(
            errors[1].contains("belongs to the council module"),
            "{errors:?}"
        );
        let payloads = strings(&dead, "payload");
        assert_eq!(payloads[0], "air,sensor=b pm25=");
        // A phone payload is never kept raw: it carries device identifiers.
        assert!(!payloads[2].contains("PHONE-SECRET-ID"), "{payloads:?}");
        assert!(!errors[2].contains("PHONE-SECRET-ID"), "{errors:?}");
        assert_eq!(
            strings(&dead, "payload_encoding"),
            vec!["utf8", "utf8", "redacted"]
        );
        let mut metrics = String::new();
        civiclake_api::MetricsSource::render(&svc, &mut metrics);
        assert!(
            metrics.contains("civiclake_dead_letters_total{route=\"default\"} 2"),
            "{metrics}"
        );
        assert!(
            metrics.contains("civiclake_dead_letters_total{route=\"phones\"} 1"),
            "{metrics}"
        );
        assert!(
            metrics.contains("civiclake_ingest_ignored_total 1"),
            "{metrics}"
        );
        lake.shutdown().await.unwrap();
    }

    #[tokio::test]
    async fn messages_that_disagree_keep_those_that_fit_in_one_record() {
        let (_dir, lake, svc) = service("").await;
        let report = svc
            .deliver(vec![
                msg("ingest/air", r#"{"sensor":"a","reading":1.5}"#),
                msg("ingest/air", r#"{"sensor":"b","reading":"high"}"#),
                msg("ingest/air", r#"{"sensor":"c","reading":2.5}"#),
            ])
            .await
            .unwrap();
        assert_eq!((report.stored, report.dead_lettered), (2, 1));
        let mut sensors = strings(&all_rows(&lake, "air"), "sensor");
        sensors.sort();
        assert_eq!(sensors, vec!["a", "c"]);
        let dead = all_rows(&lake, DEAD_LETTERS_TABLE);
        assert_eq!(
            strings(&dead, "payload"),
            vec![r#"{"sensor":"b","reading":"high"}"#]
        );
        assert!(strings(&dead, "error")[0].contains("reading"));
        lake.shutdown().await.unwrap();
    }

    #[tokio::test]
    async fn kafka_topics_route_with_dots_and_checkpoints_share_the_record() {
        let (_dir, lake, svc) = service(PHONE_ROUTE).await;
        let mut bad = msg("ingest.air", "air,sensor=b pm25=");
        bad.offset = Some(42);
        let report = svc
            .deliver_with_checkpoints(
                &[
                    msg("ingest.air", "air,sensor=a pm25=1.5 1767225600000000000"),
                    bad,
                    msg("other.topic", "{}"),
                ],
                vec![("kafka/k/ingest.air/2".into(), serde_json::json!(42))],
            )
            .await
            .unwrap();
        assert_eq!(
            report,
            DeliveryReport {
                stored: 1,
                rows: 1,
                dead_lettered: 1,
                ignored: 1
            }
        );
        assert_eq!(strings(&all_rows(&lake, "air"), "sensor"), vec!["a"]);
        let dead = all_rows(&lake, DEAD_LETTERS_TABLE);
        assert_eq!(strings(&dead, "topic"), vec!["ingest.air"]);
        assert_eq!(strings(&dead, "offset"), vec!["42"]);
        assert_eq!(
            lake.checkpoint("kafka/k/ingest.air/2"),
            Some(serde_json::json!(42))
        );
        // MQTT topics are matched as they are.
        let mut mqtt = msg("ingest.air", "air,sensor=c pm25=1 1767225600000000000");
        mqtt.source = SourceKind::EmbeddedMqtt;
        assert_eq!(route_topic(&mqtt), "ingest.air");
        assert_eq!(svc.deliver(vec![mqtt]).await.unwrap().ignored, 1);
        // Checkpoints alone (every message ignored) are still written.
        svc.deliver_with_checkpoints(
            &[msg("other.topic", "{}")],
            vec![("kafka/k/other.topic/0".into(), serde_json::json!(7))],
        )
        .await
        .unwrap();
        assert_eq!(
            lake.checkpoint("kafka/k/other.topic/0"),
            Some(serde_json::json!(7))
        );
        lake.shutdown().await.unwrap();
    }

    #[tokio::test]
    async fn a_phone_message_refused_by_its_table_is_still_redacted() {
        let (_dir, lake, svc) = service(PHONE_ROUTE).await;
        // `lat` made a string column: the decoded floats conflict with it.
        let schema = Arc::new(Schema::new(vec![
            time_column(),
            field_column("lat", DataType::Utf8),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(
                    arrow::array::TimestampMicrosecondArray::from(vec![1]).with_timezone("UTC"),
                ),
                Arc::new(StringArray::from(vec!["north"])),
            ],
        )
        .unwrap();
        lake.write(vec![("phone_points".into(), batch)])
            .await
            .unwrap();
        let report = svc
            .deliver_with_checkpoints(
                &[
                    msg(
                        "phones/app1",
                        r#"{"device_id":"PHONE-SECRET-ID","points":[{"lat":43.9,"lon":11.1}]}"#,
                    ),
                    msg("ingest/air", "air,sensor=a pm25=1.5 1767225600000000000"),
                ],
                vec![("kafka/k/t/0".into(), serde_json::json!(3))],
            )
            .await
            .unwrap();
        assert_eq!((report.stored, report.dead_lettered), (1, 1));
        let dead = all_rows(&lake, DEAD_LETTERS_TABLE);
        assert_eq!(strings(&dead, "payload_encoding"), vec!["redacted"]);
        assert!(!strings(&dead, "payload")[0].contains("PHONE-SECRET-ID"));
        assert!(
            strings(&dead, "error")[0].contains("column 'lat'"),
            "{:?}",
            strings(&dead, "error")
        );
        assert_eq!(strings(&all_rows(&lake, "air"), "sensor"), vec!["a"]);
        assert_eq!(lake.checkpoint("kafka/k/t/0"), Some(serde_json::json!(3)));
        lake.shutdown().await.unwrap();
    }

    #[tokio::test]
    async fn binary_payloads_are_kept_in_base64_and_saturation_stores_nothing() {
        let (_dir, lake, svc) = service("").await;
        let mut m = msg("ingest/air", "");
        m.payload = vec![0xff, 0xfe, 0x00];
        svc.deliver(vec![m]).await.unwrap();
        let dead = all_rows(&lake, DEAD_LETTERS_TABLE);
        assert_eq!(strings(&dead, "payload"), vec!["//4A"]);
        assert_eq!(strings(&dead, "payload_encoding"), vec!["base64"]);
        lake.shutdown().await.unwrap();

        let dir = tempfile::tempdir().unwrap();
        let mut config = LakeConfig::new(dir.path());
        config.max_buffered_rows = 0;
        let lake = Lake::open(config, OpenMode::ReadWrite).await.unwrap();
        let svc = IngestService::new(
            lake.clone(),
            Arc::new(ModuleRegistry::shipped()),
            Arc::new(Publishers::default()),
            IngestSettings {
                routes_dir: dir.path().join("none"),
                default_route: true,
                pseudonymiser: None,
                auth_disabled: false,
            },
        )
        .unwrap();
        let ok = svc
            .deliver(vec![msg(
                "ingest/air",
                "air,sensor=a v=1 1767225600000000000",
            )])
            .await;
        assert!(ok.is_ok());
        let busy = svc
            .deliver(vec![msg(
                "ingest/air",
                "air,sensor=a v=2 1767225601000000000",
            )])
            .await
            .unwrap_err();
        assert!(
            matches!(&busy, IngestError::Busy { retry_after_ms: 1000, reason } if reason.contains("wait for a flush")),
            "{busy}"
        );
        assert_eq!(
            all_rows(&lake, "air")
                .iter()
                .map(|b| b.num_rows())
                .sum::<usize>(),
            1
        );
        lake.shutdown().await.unwrap();
    }
}
