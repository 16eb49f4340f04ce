//! Kafka and the interoperability bus, in-process against librdkafka's mock cluster: a
//! subscription's Kafka target, and `bus.*` topics of a Kafka source feeding the bus log.

use crate::Server;
use crate::config::{Config, LogFormat};
use arrow::array::{Array, AsArray};
use arrow::datatypes::DataType;
use civiclake_bus::subscription::SubscriptionSpec;
use civiclake_core::CloudEvent;
use rdkafka::Message as _;
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::message::{Header, Headers as _, OwnedHeaders};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer as _};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;
use tokio::time::Instant;

const INVOICE: &str = "it.acme.invoice.Paid";

fn server_config(dir: &Path, kafka_sources: Vec<super::KafkaSourceConfig>) -> Config {
    let mut lake = civiclake_lake::LakeConfig::new(dir.join("data"));
    lake.wal_fsync = false;
    Config {
        data_dir: dir.join("data"),
        http_addr: "127.0.0.1:0".parse().unwrap(),
        insecure_no_auth: true,
        lake,
        query: civiclake_query::QueryConfig::default(),
        max_body_bytes: 1 << 20,
        log_format: LogFormat::Text,
        log_filter: "warn".into(),
        mqtt_addr: None,
        mqtt_max_packet_bytes: 1 << 20,
        routes_dir: dir.join("routes"),
        default_route: true,
        phone_key_file: dir.join("phone.key"),
        phone_key_daily: true,
        mqtt_sources: Vec::new(),
        kafka_sources,
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

fn invoice_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "n": {"type": "integer"},
            "customer": {"type": "string"},
            "note": {"type": "string"}
        },
        "required": ["n", "customer"]
    })
}

fn invoice(n: usize, customer: &str) -> CloudEvent {
    CloudEvent::new(format!("inv-{n:03}"), "/acme/billing", INVOICE)
        .with_subject(format!("invoice/{n}"))
        .with_time(1_767_225_600_000_000 + n as i64 * 1_000_000)
        .with_data(json!({"n": n, "customer": customer}))
        .with_extension("partitionkey", customer.into())
}

async fn wait_for(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One record as read back: partition, offset, key, headers, value.
#[derive(Debug)]
struct Got {
    partition: i32,
    offset: i64,
    key: String,
    headers: BTreeMap<String, String>,
    value: Vec<u8>,
}

/// Reads `n` records of `topic` from the beginning.
async fn consume(brokers: &str, topic: &str, n: usize) -> Vec<Got> {
    let consumer: StreamConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("reader-{topic}-{n}"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while got.len() < n {
        let m = tokio::time::timeout_at(deadline, consumer.recv())
            .await
            .unwrap_or_else(|_| panic!("only {} of {n} records of {topic}", got.len()))
            .unwrap();
        let headers = m
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| {
                        (
                            h.key.to_string(),
                            String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        got.push(Got {
            partition: m.partition(),
            offset: m.offset(),
            key: String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
            headers,
            value: m.payload().unwrap_or_default().to_vec(),
        });
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kafka_target_gets_binary_mode_records_in_order_per_partition_key() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("acme.invoices", 3, 1).unwrap();
    cluster.create_topic("acme.small", 1, 1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&server_config(dir.path(), Vec::new()))
        .await
        .unwrap();
    let bus = server.bus().unwrap().clone();
    bus.register_schema("test", INVOICE, invoice_schema())
        .await
        .unwrap();
    let spec = |name: &str, topic: &str, options: Value| -> SubscriptionSpec {
        serde_json::from_value(json!({
            "name": name,
            "target": {"kind": "kafka", "brokers": brokers, "topic": topic,
                       "client_options": options, "timeout_ms": 5000},
            "retry": {"max_attempts": 50, "initial_backoff_ms": 50, "max_backoff_ms": 200},
            "lanes": 4
        }))
        .unwrap()
    };
    let status = bus
        .create_subscription("test", spec("invoices", "acme.invoices", json!({})), false)
        .await
        .unwrap();
    assert_eq!(status.spec.target.describe(), "kafka acme.invoices");
    // A second subscription whose producer takes records of at most 1000 bytes.
    bus.create_subscription(
        "test",
        spec("small", "acme.small", json!({"message.max.bytes": "1000"})),
        false,
    )
    .await
    .unwrap();
    // A reserved option is refused when the subscription is created.
    let e = bus
        .create_subscription(
            "test",
            spec("bad", "acme.small", json!({"bootstrap.servers": "x:1"})),
            false,
        )
        .await
        .unwrap_err();
    assert_eq!(e.http_status(), 400);
    assert!(
        e.to_string()
            .contains("'bootstrap.servers' is set by civiclake"),
        "{e}"
    );

    let customers = ["c0", "c1", "c2", "c3", "c4"];
    let events: Vec<CloudEvent> = (0..40)
        .map(|n| invoice(n, customers[n % customers.len()]))
        .collect();
    for batch in events.chunks(10) {
        bus.publish("token:test", batch.to_vec()).await.unwrap();
    }
    // An event too large for the small subscription's producer: refused for good there.
    let mut big = invoice(40, "c9");
    big.data = Some(json!({"n": 40, "customer": "c9", "note": "x".repeat(2000)}));
    bus.publish("token:test", vec![big.clone()]).await.unwrap();

    let got = consume(&brokers, "acme.invoices", 41).await;
    let by_id: BTreeMap<&str, &Got> = got
        .iter()
        .map(|g| (g.headers["ce_id"].as_str(), g))
        .collect();
    assert_eq!(by_id.len(), 41, "every event once");
    for event in events.iter().chain([&big]) {
        let g = by_id[event.id.as_str()];
        let h = &g.headers;
        assert_eq!(h["ce_specversion"], "1.0");
        assert_eq!(h["ce_source"], "/acme/billing");
        assert_eq!(h["ce_type"], INVOICE);
        assert_eq!(h["ce_subject"], event.subject.clone().unwrap());
        assert_eq!(h["ce_time"], event.to_json()["time"].as_str().unwrap());
        assert_eq!(h["ce_partitionkey"], event.extensions["partitionkey"]);
        assert_eq!(h["content-type"], "application/json");
        assert_eq!(
            h["idempotency-key"],
            civiclake_bus::bus::idempotency_key(event)
        );
        assert_eq!(h["civiclake-subscription"], "invoices");
        assert!(!h.contains_key("civiclake-replay"));
        assert_eq!(g.key, event.extensions["partitionkey"].as_str().unwrap());
        let value: Value = serde_json::from_slice(&g.value).unwrap();
        assert_eq!(Some(value), event.data);
    }
    // One partition per key, and the log's order within it.
    let mut by_key: BTreeMap<&str, Vec<&Got>> = BTreeMap::new();
    for g in &got {
        by_key.entry(g.key.as_str()).or_default().push(g);
    }
    for (key, mut records) in by_key {
        records.sort_by_key(|g| g.offset);
        assert!(
            records.iter().all(|g| g.partition == records[0].partition),
            "{key} spread over partitions"
        );
        let ns: Vec<u64> = records
            .iter()
            .map(|g| {
                serde_json::from_slice::<Value>(&g.value).unwrap()["n"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        assert!(ns.windows(2).all(|w| w[0] < w[1]), "{key}: {ns:?}");
    }
    // The small subscription: 40 records, and the large event dead-lettered at the first
    // attempt (retrying cannot make it fit).
    let small = consume(&brokers, "acme.small", 40).await;
    assert!(small.iter().all(|g| g.headers["ce_id"] != big.id));
    wait_for("the dead letter", async || {
        bus.subscription("small").await.unwrap().dead_letters == 1
    })
    .await;
    let status = bus.subscription("small").await.unwrap();
    assert_eq!((status.delivered, status.failed), (40, 1), "{status:?}");
    wait_for("the audit rows", async || {
        server
            .engine
            .sql("SELECT count(*) FROM bus_dead_letters WHERE subscription = 'small'")
            .await
            .is_ok_and(|r| count(&r.batches) == 1)
    })
    .await;
    let r = server
        .engine
        .sql("SELECT target, attempts, error FROM bus_dead_letters WHERE subscription = 'small'")
        .await
        .unwrap();
    let row = strings(&r.batches);
    assert_eq!(row[0], "kafka acme.small");
    assert_eq!(row[1], "1");
    assert!(row[2].contains("MessageSizeTooLarge"), "{row:?}");
    wait_for("the delivery records", async || {
        server
            .engine
            .sql("SELECT count(*) FROM bus_deliveries WHERE subscription = 'invoices' AND status = 'delivered' AND target = 'kafka acme.invoices'")
            .await
            .is_ok_and(|r| count(&r.batches) == 41)
    })
    .await;

    // The brokers go away: attempts time out and are retried until they are back.
    cluster.broker_down(1).unwrap();
    bus.publish("token:test", vec![invoice(41, "c1")])
        .await
        .unwrap();
    wait_for("a failed attempt", async || {
        bus.subscription("invoices").await.unwrap().failed > 0
    })
    .await;
    cluster.broker_up(1).unwrap();
    wait_for("the delivery after the outage", async || {
        bus.subscription("invoices").await.unwrap().delivered == 42
    })
    .await;
    let status = bus.subscription("invoices").await.unwrap();
    assert_eq!(status.dead_letters, 0, "{status:?}");
    let r = server
        .engine
        .sql("SELECT error FROM bus_deliveries WHERE subscription = 'invoices' AND status = 'failed' LIMIT 1")
        .await
        .unwrap();
    let errors = strings(&r.batches);
    assert!(errors[0].contains("Kafka"), "{errors:?}");
    let again = consume(&brokers, "acme.invoices", 42).await;
    assert!(again.iter().any(|g| g.headers["ce_id"] == "inv-041"));
    server.stop().await.unwrap();
}

/// The first column of a one-row answer, as a number.
fn count(batches: &[arrow::array::RecordBatch]) -> i64 {
    strings(batches)
        .first()
        .and_then(|s| s.parse().ok())
        .unwrap_or(-1)
}

/// Every value of every column of the first row, as text.
fn strings(batches: &[arrow::array::RecordBatch]) -> Vec<String> {
    let Some(b) = batches.iter().find(|b| b.num_rows() > 0) else {
        return Vec::new();
    };
    b.columns()
        .iter()
        .map(|c| {
            let c = arrow::compute::cast(c, &DataType::Utf8).unwrap();
            let c = c.as_string::<i32>();
            if c.is_null(0) {
                "<null>".to_string()
            } else {
                c.value(0).to_string()
            }
        })
        .collect()
}

/// Produces binary-mode CloudEvents (headers, value) to `topic`, partition 0.
fn produce(brokers: &str, topic: &str, records: &[(Vec<(&str, &str)>, &str)]) {
    let producer: BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "1")
        .create()
        .unwrap();
    for (headers, value) in records {
        let mut owned = OwnedHeaders::new();
        for (key, v) in headers {
            owned = owned.insert(Header {
                key,
                value: Some(*v),
            });
        }
        producer
            .send(
                BaseRecord::<(), str>::to(topic)
                    .partition(0)
                    .payload(*value)
                    .headers(owned),
            )
            .unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();
}

fn ce_headers<'a>(id: &'a str, source: &'a str, ty: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("ce_specversion", "1.0"),
        ("ce_id", id),
        ("ce_source", source),
        ("ce_type", ty),
        ("content-type", "application/json"),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bus_topics_of_a_kafka_source_are_checkpointed_only_once_the_bus_has_them() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("bus.acme.billing", 1, 1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let mut source =
        super::KafkaSourceConfig::new("city", &brokers, "g", vec!["bus.acme.billing".into()]);
    source.batch_wait = Duration::from_millis(20);
    let server = Server::start(&server_config(dir.path(), vec![source]))
        .await
        .unwrap();
    let bus = server.bus().unwrap().clone();
    bus.register_schema("test", INVOICE, invoice_schema())
        .await
        .unwrap();
    produce(
        &brokers,
        "bus.acme.billing",
        &[
            (
                ce_headers("k-1", "/acme/billing", INVOICE),
                r#"{"n": 1, "customer": "c1"}"#,
            ),
            (
                ce_headers("k-2", "/evil/billing", INVOICE),
                r#"{"n": 2, "customer": "c1"}"#,
            ),
            (
                ce_headers("k-3", "/acme/billing", INVOICE),
                r#"{"n": "three", "customer": "c1"}"#,
            ),
            (
                ce_headers("k-4", "/acme/billing/invoices", INVOICE),
                r#"{"n": 4, "customer": "c2"}"#,
            ),
        ],
    );
    let checkpoint = || server.lake.checkpoint("kafka/city/bus.acme.billing/0");
    wait_for("the batch stored", async || {
        checkpoint() == Some(Value::from(3))
    })
    .await;
    assert_eq!(bus.head(), 2);
    let r = server
        .engine
        .sql("SELECT id, publisher FROM bus_events ORDER BY seq")
        .await
        .unwrap();
    let first = strings(&r.batches);
    assert_eq!(first, vec!["k-1", "kafka:bus.acme.billing"]);
    let r = server
        .engine
        .sql("SELECT route, source, \"offset\", error FROM _dead_letters ORDER BY \"offset\"")
        .await
        .unwrap();
    let rows: usize = r.batches.iter().map(|b| b.num_rows()).sum();
    assert_eq!(rows, 2);
    let dead = strings(&r.batches);
    assert_eq!(dead[..3], ["bus", "kafka:city", "1"]);
    assert!(
        dead[3].contains("\"/evil/billing\" is outside the namespace of topic bus.acme.billing"),
        "{dead:?}"
    );
    let r = server
        .engine
        .sql("SELECT error FROM _dead_letters WHERE \"offset\" = 2")
        .await
        .unwrap();
    let error = strings(&r.batches);
    assert!(error[0].contains("\"three\""), "{error:?}");
    let stats = server.kafka_sources[0].stats();
    assert_eq!((stats.bus_events, stats.dead_lettered), (2, 2), "{stats:?}");

    // While the bus cannot take events (here: it has stopped), the batch is retried and its
    // offset is not checkpointed.
    bus.stop().await;
    produce(
        &brokers,
        "bus.acme.billing",
        &[(
            ce_headers("k-5", "/acme/billing", INVOICE),
            r#"{"n": 5, "customer": "c1"}"#,
        )],
    );
    wait_for("a retried batch", async || {
        server.kafka_sources[0].stats().unavailable_retries > 0
    })
    .await;
    assert_eq!(checkpoint(), Some(Value::from(3)));
    assert_eq!(bus.head(), 2);
    server.stop().await.unwrap();
}
