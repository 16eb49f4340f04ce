//! The `Platform` API as a module uses it: a tiny "lab" module (equipment loans at a city
//! workshop) runs against the server in-process. It turns barcode scans from
//! `devices/scanner/{id}/scans` into events, keeps a projection in memory, tells the bus
//! on `bus/lab/loans`, and after a restart rebuilds the same projection from its events.

use arrow::array::{Array, StringArray};
use arrow::datatypes::DataType;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use civiclake_api::ApiError;
use civiclake_core::{
    CloudEvent, Delivery, EventEnvelope, ExpectedVersion, Module, ModuleRegistry, NewEvent,
    Platform, PlatformError, QueryBatches, Subscription, Topic, TopicFilter, Upcasters,
};
use civiclake_server::Server;
use civiclake_server::config::{Config, LogFormat};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const LOAN_OPENED: &str = "LoanOpened";
const LOAN_RETURNED: &str = "LoanReturned";

/// `LoanOpened` v1 → v2. v1 (the old paper-register import) was
/// `{"item": "...", "borrower": "<badge>"}` with the fixed 14-day loan of the time; v2 is
/// `{"item": "...", "borrower": {"badge": "..."}, "due_days": n}`.
fn loan_opened_v1_to_v2(mut payload: Value) -> Result<Value, String> {
    let badge = payload
        .get("borrower")
        .and_then(Value::as_str)
        .ok_or("a v1 LoanOpened has a borrower badge")?
        .to_string();
    payload["borrower"] = json!({ "badge": badge });
    payload["due_days"] = json!(14);
    Ok(payload)
}

fn lab_module() -> Module {
    Module::new("lab")
        .and_then(|m| m.with_upcaster(LOAN_OPENED, 1, loan_opened_v1_to_v2))
        .expect("lab module")
}

fn registry() -> ModuleRegistry {
    ModuleRegistry::shipped()
        .with(lab_module())
        .expect("registry")
}

pub(crate) fn config(dir: &Path) -> Config {
    let mut lake = civiclake_lake::LakeConfig::new(dir);
    // Flushes happen when the test asks (and at stop), not in the background.
    lake.flush_max_age = Duration::from_secs(3600);
    lake.compaction_interval = Duration::from_secs(3600);
    Config {
        data_dir: dir.to_path_buf(),
        http_addr: "127.0.0.1:0".parse().expect("addr"),
        insecure_no_auth: false,
        lake,
        query: civiclake_query::QueryConfig::default(),
        max_body_bytes: 1 << 20,
        log_format: LogFormat::Text,
        log_filter: "warn".into(),
        mqtt_addr: Some("127.0.0.1:0".parse().expect("addr")),
        mqtt_max_packet_bytes: 1 << 20,
        routes_dir: dir.join("routes"),
        default_route: true,
        phone_key_file: dir.join("phone.key"),
        phone_key_daily: true,
        mqtt_sources: Vec::new(),
        kafka_sources: Vec::new(),
        dashboards_dir: dir.join("dashboards"),
        pipelines_dir: dir.join("pipelines"),
        retention_interval: std::time::Duration::from_secs(3600),
        demo: false,
        metrics_sample_interval: None,
        kiosk_liveness: civiclake_kiosk::fleet::liveness::LivenessConfig::default(),
        pg_addr: None,
        pg_tls: None,
        flight_addr: None,
        sql_addrs_from_demo: false,
    }
}

/// One loan as the lab module sees it.
#[derive(Debug, Clone, PartialEq)]
struct Loan {
    item: String,
    badge: String,
    due_days: u64,
    returned_at_scanner: Option<String>,
    version: u64,
}

/// The lab's state: loans by stream id.
#[derive(Debug, Clone, Default, PartialEq)]
struct Projection {
    loans: BTreeMap<String, Loan>,
}

impl Projection {
    /// Applies an event already upcast to the current versions.
    fn apply(&mut self, e: &EventEnvelope) {
        let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
        match (e.event_type.as_str(), e.schema_version) {
            (LOAN_OPENED, 2) => {
                self.loans.insert(
                    e.stream_id.clone(),
                    Loan {
                        item: text(&e.payload["item"]),
                        badge: text(&e.payload["borrower"]["badge"]),
                        due_days: e.payload["due_days"].as_u64().unwrap_or_default(),
                        returned_at_scanner: None,
                        version: e.version,
                    },
                );
            }
            (LOAN_RETURNED, 1) => {
                let loan = self
                    .loans
                    .get_mut(&e.stream_id)
                    .expect("returned loan exists");
                loan.returned_at_scanner = Some(text(&e.payload["scanner"]));
                loan.version = e.version;
            }
            other => panic!("unexpected event {other:?}"),
        }
    }

    fn open_loan_of(&self, item: &str) -> Option<(String, u64)> {
        self.loans
            .iter()
            .find(|(_, l)| l.item == item && l.returned_at_scanner.is_none())
            .map(|(id, l)| (id.clone(), l.version))
    }
}

/// The lab module: only a `Platform` handle, its upcasters and its projection.
#[derive(Debug)]
struct Lab {
    platform: Arc<dyn Platform>,
    upcasters: Upcasters,
    projection: Mutex<Projection>,
}

impl Lab {
    fn new(platform: Arc<dyn Platform>, projection: Projection) -> Arc<Self> {
        Arc::new(Self {
            platform,
            upcasters: lab_module().upcasters().clone(),
            projection: Mutex::new(projection),
        })
    }

    fn projection(&self) -> Projection {
        self.projection.lock().expect("projection").clone()
    }

    async fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<(), PlatformError> {
        let stored = self
            .platform
            .append_events(stream, expected, events)
            .await?;
        let mut projection = self.projection.lock().expect("projection");
        for e in stored {
            projection.apply(&self.upcasters.upcast(e)?);
        }
        Ok(())
    }

    /// A loan from the old paper register, imported as a v1 event.
    async fn import_legacy(&self, item: &str, badge: &str) -> Result<String, PlatformError> {
        let stream = format!("loan-{}", self.projection().loans.len() + 1);
        let event = NewEvent::new(
            LOAN_OPENED,
            1,
            "import:register-2019",
            json!({"item": item, "borrower": badge}),
        );
        self.append(&stream, ExpectedVersion::NoStream, vec![event])
            .await?;
        Ok(stream)
    }

    /// A scan: `out` opens a loan, `in` returns the item's open loan; the bus is told.
    async fn on_scan(&self, topic: &Topic, scan: &CloudEvent) -> Result<(), PlatformError> {
        let (_, scanner) = topic.device().expect("a device topic");
        let data = scan.data.clone().unwrap_or_default();
        let item = data["item"].as_str().unwrap_or_default().to_string();
        let badge = data["badge"].as_str().unwrap_or_default().to_string();
        let (stream, expected, event, kind) = if data["action"] == "out" {
            let stream = format!("loan-{}", self.projection().loans.len() + 1);
            let payload = json!({"item": item, "borrower": {"badge": badge}, "due_days": 7});
            let event = NewEvent::new(LOAN_OPENED, 2, format!("badge:{badge}"), payload);
            (stream, ExpectedVersion::NoStream, event, "opened")
        } else {
            let (stream, version) = self.projection().open_loan_of(&item).expect("open loan");
            let payload = json!({"scanner": scanner});
            let event = NewEvent::new(LOAN_RETURNED, 1, format!("badge:{badge}"), payload);
            (stream, ExpectedVersion::Exact(version), event, "returned")
        };
        let event = event.with_correlation_id(scan.id.clone());
        self.append(&stream, expected, vec![event]).await?;
        let notice = CloudEvent::new(
            format!("{stream}-{kind}"),
            "/civiclake/lab",
            format!("it.comune.prato.lab.loan.{kind}"),
        )
        .with_subject(stream.clone())
        .with_data(json!({"item": item}));
        let topic = Topic::new("bus/lab/loans")?;
        self.platform.publish(&topic, notice).await?;
        Ok(())
    }

    /// Handles scans until the server stops.
    async fn run(self: Arc<Self>, mut scans: Subscription) {
        while let Some(delivery) = scans.recv().await {
            match delivery {
                Delivery::Message(m) => {
                    if let Err(e) = self.on_scan(&m.topic, &m.event).await {
                        panic!("scan {} failed: {e}", m.event.id);
                    }
                }
                Delivery::Lagged(n) => panic!("the lab missed {n} scans"),
            }
        }
    }
}

fn strings(answer: &QueryBatches, column: usize) -> Vec<String> {
    let mut out = Vec::new();
    for batch in &answer.batches {
        let c = arrow::compute::cast(batch.column(column), &DataType::Utf8).expect("cast");
        let c = c.as_any().downcast_ref::<StringArray>().expect("strings");
        out.extend((0..c.len()).map(|i| c.value(i).to_string()));
    }
    out
}

async fn count(platform: &dyn Platform, sql: &str) -> i64 {
    let answer = platform.query(sql).await.expect("query");
    strings(&answer, 0)[0].parse().expect("a count")
}

/// The projection rebuilt from the events table alone: the streams from SQL, each stream
/// read back with `read_stream` (upcast to the current versions).
async fn rebuild(platform: &dyn Platform) -> Projection {
    let streams = platform
        .query("SELECT DISTINCT stream_id FROM lab_events WHERE stream_id LIKE 'loan-%'")
        .await
        .expect("streams");
    let mut projection = Projection::default();
    for stream in strings(&streams, 0) {
        for event in platform.read_stream(&stream, 1).await.expect("read_stream") {
            assert_eq!(event.stream_id, stream);
            projection.apply(&event);
        }
    }
    // The same history, counted by SQL.
    let by_type = platform
        .query("SELECT event_type, count(*) FROM lab_events WHERE stream_id LIKE 'loan-%' GROUP BY event_type ORDER BY event_type")
        .await
        .expect("counts");
    let returned = projection
        .loans
        .values()
        .filter(|l| l.returned_at_scanner.is_some())
        .count();
    let mut expected = vec![(LOAN_OPENED.to_string(), projection.loans.len().to_string())];
    if returned > 0 {
        expected.push((LOAN_RETURNED.to_string(), returned.to_string()));
    }
    let got: Vec<_> = strings(&by_type, 0)
        .into_iter()
        .zip(strings(&by_type, 1))
        .collect();
    assert_eq!(got, expected);
    projection
}

fn scan(n: u32, item: &str, badge: &str, action: &str) -> CloudEvent {
    CloudEvent::new(
        format!("scan-{n}"),
        "/devices/scanner",
        "it.comune.prato.scanner.scan",
    )
    .with_data(json!({"item": item, "badge": badge, "action": action}))
}

/// Waits for the bus notice that the lab handled a scan.
async fn bus_notice(bus: &mut Subscription) -> (String, String) {
    let m = tokio::time::timeout(Duration::from_secs(30), bus.recv_message())
        .await
        .expect("a bus notice within 30 s")
        .expect("the router is open");
    assert_eq!(m.topic.as_str(), "bus/lab/loans");
    (
        m.event.ty.clone(),
        m.event.subject.clone().unwrap_or_default(),
    )
}

fn conflict_status(e: PlatformError) -> (StatusCode, String) {
    let message = e.to_string();
    (ApiError::from(e).into_response().status(), message)
}

/// The lab's bus event types get schemas: a module's `bus/...` events are checked against
/// them and land in the bus log.
async fn register_lab_schemas(server: &Server) {
    let bus = server.bus().expect("the bus runs");
    for (ty, schema) in [
        (
            "it.comune.prato.lab.loan.opened",
            json!({"type": "object", "properties": {"item": {"type": "string"}}, "required": ["item"]}),
        ),
        (
            "it.comune.prato.lab.loan.returned",
            json!({"type": "object", "properties": {"item": {"type": "string"}}, "required": ["item"]}),
        ),
        ("it.comune.prato.lab.notice", json!({"type": "null"})),
    ] {
        bus.register_schema("test", ty, schema)
            .await
            .expect("schema registered");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_module_appends_reads_queries_publishes_and_rebuilds_after_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start_with_modules(&config(dir.path()), registry())
        .await
        .expect("start");
    register_lab_schemas(&server).await;
    let platform = server.platform("lab").expect("lab platform");
    assert_eq!(platform.module(), "lab");
    assert!(matches!(
        server.platform("library"),
        Err(PlatformError::UnknownModule(_))
    ));
    assert_eq!(
        server
            .modules()
            .owner_of_table("lab_loans")
            .map(Module::name),
        Some("lab")
    );
    // Every module's events table answers SQL right after start, with no rows but what the
    // modules store as they start (each asked by its own module: a module's queries see its
    // own tables and the shared data tables); the bus's catalog holds the three schemas
    // registered above.
    for (module, table, rows) in [
        // The council's settings: the fee policy and the signature rules.
        (
            "council",
            "council_events",
            crate::server::COUNCIL_SETTINGS as i64,
        ),
        ("school", "school_events", 0),
        // The fleet's default service catalog, one event per service.
        (
            "kiosk",
            "kiosk_events",
            civiclake_kiosk::fleet::registry::default_catalog().len() as i64,
        ),
        // The modules' bus schemas among them.
        (
            "bus",
            "bus_catalog_events",
            3 + crate::server::module_bus_schemas().len() as i64,
        ),
        ("lab", "lab_events", 0),
    ] {
        let own = server.platform(module).expect("platform");
        assert_eq!(
            count(own.as_ref(), &format!("SELECT count(*) FROM {table}")).await,
            rows,
            "{table}"
        );
    }
    // Another module's tables and the system tables are not in a module's catalog.
    for table in ["council_events", "_checkpoints"] {
        let err = platform
            .query(&format!("SELECT count(*) FROM {table}"))
            .await
            .expect_err("not the lab's table");
        assert!(err.to_string().contains(table), "{err}");
    }
    let err = platform
        .query("CREATE VIEW v AS SELECT 1")
        .await
        .expect_err("module SQL is read-only");
    assert!(err.to_string().to_lowercase().contains("ddl"), "{err}");

    let mut bus = server
        .platform("bus")
        .expect("bus platform")
        .subscribe(&TopicFilter::new("bus/lab/#").expect("filter"))
        .await
        .expect("subscribe");
    let scans = platform
        .subscribe(&TopicFilter::new("devices/scanner/+/scans").expect("filter"))
        .await
        .expect("subscribe");
    let lab = Lab::new(platform.clone(), Projection::default());
    let task = tokio::spawn(lab.clone().run(scans));

    let legacy = lab
        .import_legacy("ladder-1", "lucia")
        .await
        .expect("import");
    assert_eq!(legacy, "loan-1");
    let scanner = |id: &str| Topic::new(format!("devices/scanner/{id}/scans")).expect("topic");
    let router = server.router();
    router
        .publish(&scanner("s1"), scan(1, "drill-7", "anna", "out"))
        .expect("publish");
    assert_eq!(
        bus_notice(&mut bus).await,
        ("it.comune.prato.lab.loan.opened".into(), "loan-2".into())
    );
    router
        .publish(&scanner("s1"), scan(2, "saw-2", "marco", "out"))
        .expect("publish");
    assert_eq!(bus_notice(&mut bus).await.1, "loan-3");
    router
        .publish(&scanner("s2"), scan(3, "drill-7", "anna", "in"))
        .expect("publish");
    assert_eq!(
        bus_notice(&mut bus).await,
        ("it.comune.prato.lab.loan.returned".into(), "loan-2".into())
    );
    // Telemetry of other devices does not reach the lab.
    router
        .publish(
            &Topic::new("devices/kiosk/k1/heartbeat").expect("topic"),
            scan(4, "-", "-", "-"),
        )
        .expect("publish");

    // The stored v1 event comes back upcast; read_stream starts where asked.
    let loan1 = platform.read_stream("loan-1", 1).await.expect("read");
    assert_eq!(loan1.len(), 1);
    assert_eq!(
        (loan1[0].schema_version, loan1[0].actor.as_str()),
        (2, "import:register-2019")
    );
    assert_eq!(
        loan1[0].payload,
        json!({"item": "ladder-1", "borrower": {"badge": "lucia"}, "due_days": 14})
    );
    let loan2 = platform.read_stream("loan-2", 2).await.expect("read");
    assert_eq!(loan2.len(), 1);
    assert_eq!(
        (loan2[0].version, loan2[0].event_type.as_str()),
        (2, LOAN_RETURNED)
    );
    assert_eq!(loan2[0].correlation_id.as_deref(), Some("scan-3"));
    assert_eq!(
        count(
            platform.as_ref(),
            "SELECT count(*) FROM lab_events WHERE schema_version = 1 AND event_type = 'LoanOpened'"
        )
        .await,
        1
    );

    // A writer with a stale view gets a conflict naming the versions: HTTP 409.
    let stale = platform
        .append_events(
            "loan-2",
            ExpectedVersion::Exact(1),
            vec![NewEvent::new(
                LOAN_RETURNED,
                1,
                "badge:x",
                json!({"scanner": "s9"}),
            )],
        )
        .await
        .expect_err("stale");
    assert!(matches!(&stale, PlatformError::Conflict(c) if c.actual == 2));
    assert_eq!(
        conflict_status(stale),
        (
            StatusCode::CONFLICT,
            "version conflict on stream 'loan-2': expected version 1, but it is at version 2"
                .to_string()
        )
    );
    // A schema version the module does not know, and a topic modules may not publish to.
    let future = platform
        .append_events(
            "loan-9",
            ExpectedVersion::Any,
            vec![NewEvent::new(LOAN_OPENED, 3, "x", json!({}))],
        )
        .await
        .expect_err("future version");
    assert_eq!(
        ApiError::from(future).into_response().status(),
        StatusCode::BAD_REQUEST
    );
    let ingest = platform
        .publish(
            &Topic::new("ingest/air").expect("topic"),
            CloudEvent::new("1", "/lab", "t"),
        )
        .await
        .expect_err("ingest");
    assert!(matches!(ingest, PlatformError::TopicNotAllowed { .. }));

    // Concurrent appends that all expect a new stream: exactly one wins.
    let racers: Vec<_> = (0..8)
        .map(|i| {
            let p = platform.clone();
            tokio::spawn(async move {
                p.append_events(
                    "race-1",
                    ExpectedVersion::NoStream,
                    vec![NewEvent::new("Claimed", 1, format!("racer-{i}"), json!(i))],
                )
                .await
            })
        })
        .collect();
    let mut won = 0;
    for r in racers {
        match r.await.expect("join") {
            Ok(stored) => {
                won += 1;
                assert_eq!(stored[0].version, 1);
            }
            Err(PlatformError::Conflict(c)) => assert_eq!(c.actual, 1),
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!(won, 1);
    // Stream ids are quoted safely in the platform's SQL.
    let odd = r"odd-'stream'\; x";
    platform
        .append_events(
            odd,
            ExpectedVersion::NoStream,
            vec![NewEvent::new("Odd", 1, "t", json!(null))],
        )
        .await
        .expect("odd stream");
    assert_eq!(platform.read_stream(odd, 1).await.expect("read").len(), 1);

    let live = lab.projection();
    assert_eq!(live.loans.len(), 3);
    assert_eq!(
        live.loans["loan-2"].returned_at_scanner.as_deref(),
        Some("s2")
    );
    assert_eq!(
        rebuild(platform.as_ref()).await,
        live,
        "rebuilt from the buffer"
    );
    server.lake.flush().await.expect("flush");
    assert_eq!(rebuild(platform.as_ref()).await, live, "rebuilt from Delta");
    router
        .publish(&scanner("s1"), scan(5, "hammer", "anna", "out"))
        .expect("publish");
    assert_eq!(bus_notice(&mut bus).await.1, "loan-4");
    let live = lab.projection();
    assert_eq!(
        rebuild(platform.as_ref()).await,
        live,
        "rebuilt from Delta and the buffer"
    );

    server.stop().await.expect("stop");
    task.await.expect("the lab ends when the router closes");
    assert!(bus.recv().await.is_none());
    let after = platform
        .publish(
            &Topic::new("bus/lab/loans").expect("topic"),
            CloudEvent::new("x", "/lab", "t"),
        )
        .await;
    assert!(matches!(after, Err(PlatformError::Closed)), "{after:?}");
    // Module handles keep the lake open; the data directory is free once they are gone.
    drop((lab, platform));

    // After a restart: the same projection from the events, and versions continue.
    let server = Server::start_with_modules(&config(dir.path()), registry())
        .await
        .expect("restart");
    let platform = server.platform("lab").expect("lab platform");
    let rebuilt = rebuild(platform.as_ref()).await;
    assert_eq!(rebuilt, live, "rebuilt after a restart");
    assert_eq!(
        count(
            server.platform("council").expect("council").as_ref(),
            "SELECT count(*) FROM council_events"
        )
        .await,
        crate::server::COUNCIL_SETTINGS as i64
    );
    let conflict = platform
        .append_events(
            odd,
            ExpectedVersion::NoStream,
            vec![NewEvent::new("Odd", 1, "t", json!(null))],
        )
        .await
        .expect_err("the odd stream exists");
    assert!(matches!(conflict, PlatformError::Conflict(c) if c.actual == 1));
    let scans = platform
        .subscribe(&TopicFilter::new("devices/scanner/+/scans").expect("filter"))
        .await
        .expect("subscribe");
    let mut bus = server
        .platform("bus")
        .expect("bus platform")
        .subscribe(&TopicFilter::new("bus/#").expect("filter"))
        .await
        .expect("subscribe");
    let lab = Lab::new(platform.clone(), rebuilt);
    let task = tokio::spawn(lab.clone().run(scans));
    server
        .router()
        .publish(&scanner("s3"), scan(6, "saw-2", "marco", "in"))
        .expect("publish");
    assert_eq!(bus_notice(&mut bus).await.1, "loan-3");
    let loan3 = platform.read_stream("loan-3", 1).await.expect("read");
    assert_eq!(loan3.iter().map(|e| e.version).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(rebuild(platform.as_ref()).await, lab.projection());
    server.stop().await.expect("stop");
    task.await.expect("lab task");
}

/// MQTT clients and modules meet on the same topics: a scanner's MQTT message on
/// `devices/...` reaches the module's subscription, the module's `bus/...` event reaches an
/// MQTT subscriber, and events are not echoed back to where they came from.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_clients_and_modules_share_the_topics() {
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start_with_modules(&config(dir.path()), registry())
        .await
        .expect("start");
    register_lab_schemas(&server).await;
    let addr = server.mqtt_addr().expect("the broker runs by default");
    let admin = server
        .auth
        .create_token(civiclake_auth::TokenRequest {
            role: "admin".into(),
            ..Default::default()
        })
        .expect("token")
        .token;
    let platform = server.platform("lab").expect("lab platform");
    let mut scans = platform
        .subscribe(&TopicFilter::new("devices/scanner/+/scans").expect("filter"))
        .await
        .expect("subscribe");

    let mut opts = MqttOptions::new("watcher", "127.0.0.1", addr.port());
    opts.set_credentials("watcher", admin);
    let (client, mut events) = AsyncClient::new(opts, 16);
    let (tx, mut received) = tokio::sync::mpsc::unbounded_channel();
    let (subscribed_tx, subscribed) = tokio::sync::oneshot::channel();
    let poller = tokio::spawn(async move {
        let mut subscribed_tx = Some(subscribed_tx);
        while let Ok(event) = events.poll().await {
            match event {
                Event::Incoming(Packet::SubAck(_)) => {
                    if let Some(s) = subscribed_tx.take() {
                        let _ = s.send(());
                    }
                }
                Event::Incoming(Packet::Publish(p)) => {
                    let _ = tx.send((p.topic.clone(), p.payload));
                }
                _ => {}
            }
        }
    });
    client
        .subscribe("bus/#", QoS::AtLeastOnce)
        .await
        .expect("subscribe");
    tokio::time::timeout(Duration::from_secs(10), subscribed)
        .await
        .expect("SUBACK in time")
        .expect("SUBACK");

    // MQTT → module.
    let event = scan(1, "drill-1", "anna", "out");
    client
        .publish(
            "devices/scanner/s1/scans",
            QoS::AtLeastOnce,
            false,
            event.to_json().to_string(),
        )
        .await
        .expect("publish");
    let got = tokio::time::timeout(Duration::from_secs(10), scans.recv_message())
        .await
        .expect("the module got the scan in time")
        .expect("a message");
    assert_eq!(got.topic.as_str(), "devices/scanner/s1/scans");
    assert_eq!(got.event.id, "scan-1");
    assert_eq!(got.event.data, event.data);

    // Module → MQTT.
    platform
        .publish(
            &Topic::new("bus/lab/loans").expect("topic"),
            CloudEvent::new("notice-1", "/lab", "it.comune.prato.lab.notice"),
        )
        .await
        .expect("publish");
    let (topic, payload) = tokio::time::timeout(Duration::from_secs(10), received.recv())
        .await
        .expect("the MQTT subscriber got the notice in time")
        .expect("a message");
    assert_eq!(topic, "bus/lab/loans");
    let json: Value = serde_json::from_slice(&payload).expect("structured CloudEvent");
    assert_eq!(json["id"], "notice-1");
    assert_eq!(json["type"], "it.comune.prato.lab.notice");
    // Nothing else arrives: the scan was not echoed onto MQTT a second time.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), received.recv())
            .await
            .is_err()
    );
    poller.abort();
    drop(platform);
    server.stop().await.expect("stop");
}
