//! Kafka into the lake through the real binary: `civiclake simulate --kafka` fills topics,
//! a server with `[[kafka.source]]` consumes them as a consumer group, and every reading is
//! stored exactly once — also after a `kill -9` and a restart. Against librdkafka's
//! in-process mock cluster always; against a real Kafka-protocol broker too when
//! `CIVICLAKE_KAFKA_BROKERS` names one (`.ci/run` starts tansu for that).
//!
//! Kafka onto the bus: binary-mode CloudEvents on `bus.acme.billing` reach the bus log and a
//! webhook subscription; events without a schema or from another organisation's namespace
//! are dead letters.

use crate::bus::{INVOICE, Receiver, invoice_schema, post_json};
use crate::server::{TestServer, wait_until};
use crate::simulate::{TABLES, run};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// Produces one simulated day (5 sensors, hourly: 120 readings) to `ingest.<table>`, then has
/// a server consume it; returns nothing, asserts everything.
fn kafka_end_to_end(brokers: &str, group: &str) {
    let (ok, out, err) = run(&[
        "simulate",
        "--sensors",
        "5",
        "--interval",
        "3600",
        "--kafka",
        brokers,
        "--topic",
        "ingest.{table}",
    ]);
    assert!(ok, "simulate: {err}");
    assert!(out.contains("simulated 120 rows"), "{out}");
    let dir = tempfile::tempdir().expect("tempdir");
    let topics: Vec<String> = TABLES.iter().map(|t| format!("\"ingest.{t}\"")).collect();
    let config = dir.path().join("civiclake.toml");
    std::fs::write(
        &config,
        format!(
            "[[kafka.source]]\nname = \"city\"\nbrokers = \"{brokers}\"\ngroup_id = \"{group}\"\ntopics = [{}]\nbatch_wait = \"20ms\"\n[kafka.source.client_options]\n\"session.timeout.ms\" = \"6000\"\n",
            topics.join(", ")
        ),
    )
    .expect("write the config");
    let env = [("CIVICLAKE_CONFIG", config.to_str().expect("UTF-8 path"))];
    let mut server = TestServer::start(dir.path(), &env);
    let total = |s: &TestServer| -> f64 {
        TABLES
            .iter()
            .map(|t| {
                let exists = s.scalar(&format!(
                    "SELECT count(*) FROM information_schema.tables WHERE table_name = '{t}'"
                ));
                if exists == 1.0 {
                    s.scalar(&format!("SELECT count(*) FROM {t}"))
                } else {
                    0.0
                }
            })
            .sum()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while total(&server) < 120.0 {
        assert!(
            Instant::now() < deadline,
            "only {} of 120 readings arrived",
            total(&server)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(total(&server), 120.0);
    // Every offset is logged with its rows: a crash and a restart read nothing twice.
    let checkpoints =
        server.scalar("SELECT count(*) FROM _checkpoints WHERE name LIKE 'kafka/city/%'");
    assert!(checkpoints >= 5.0, "{checkpoints} checkpoints");
    server.kill9();
    let server = server.restart();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(total(&server), 120.0);
    let metrics = TestServer::client()
        .get(format!("{}/metrics", server.url))
        .send()
        .expect("metrics")
        .text()
        .expect("metrics text");
    assert!(
        metrics.contains("civiclake_kafka_messages_total{source=\"city\"}"),
        "{metrics}"
    );
    assert_eq!(server.scalar("SELECT count(*) FROM _dead_letters"), 0.0);
}

#[test]
fn kafka_topics_are_consumed_exactly_once_mock_cluster() {
    let cluster = rdkafka::mocking::MockCluster::new(1).expect("librdkafka's mock cluster");
    for t in TABLES {
        cluster.create_topic(&format!("ingest.{t}"), 2, 1).unwrap();
    }
    kafka_end_to_end(&cluster.bootstrap_servers(), "e2e-mock");
}

#[test]
fn kafka_topics_are_consumed_exactly_once_real_broker() {
    let Ok(brokers) = std::env::var("CIVICLAKE_KAFKA_BROKERS") else {
        eprintln!(
            "skipped: CIVICLAKE_KAFKA_BROKERS is not set (the CI script starts tansu and sets it)"
        );
        return;
    };
    create_topics(&brokers);
    let group = format!(
        "e2e-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
    );
    kafka_end_to_end(&brokers, &group);
}

/// Creates the `ingest.<table>` topics on a real broker (an existing one is fine).
fn create_topics(brokers: &str) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    use rdkafka::config::ClientConfig;
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("admin client");
    let names: Vec<String> = TABLES.iter().map(|t| format!("ingest.{t}")).collect();
    let topics: Vec<NewTopic<'_>> = names
        .iter()
        .map(|n| NewTopic::new(n, 2, TopicReplication::Fixed(1)))
        .collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let results = rt
        .block_on(admin.create_topics(&topics, &AdminOptions::new()))
        .expect("create topics");
    for r in results {
        if let Err((topic, code)) = r {
            assert_eq!(
                code,
                rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists,
                "cannot create {topic}: {code}"
            );
        }
    }
}

/// Produces CloudEvents in Kafka binary mode (`ce_*` headers, the data as the value).
fn produce_binary(brokers: &str, topic: &str, events: &[(&str, &str, &str, &str, Value)]) {
    let producer: BaseProducer = rdkafka::config::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "1")
        .create()
        .expect("producer");
    for (id, source, ty, key, data) in events {
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "ce_specversion",
                value: Some("1.0"),
            })
            .insert(Header {
                key: "ce_id",
                value: Some(*id),
            })
            .insert(Header {
                key: "ce_source",
                value: Some(*source),
            })
            .insert(Header {
                key: "ce_type",
                value: Some(*ty),
            })
            .insert(Header {
                key: "ce_partitionkey",
                value: Some(*key),
            })
            .insert(Header {
                key: "content-type",
                value: Some("application/json"),
            });
        let value = data.to_string();
        producer
            .send(
                BaseRecord::<str, str>::to(topic)
                    .key(*key)
                    .payload(&value)
                    .headers(headers),
            )
            .expect("produce");
    }
    producer.flush(Duration::from_secs(30)).expect("flush");
}

#[test]
fn kafka_bus_topics_publish_to_the_bus_and_dead_letter_what_it_refuses() {
    let cluster = rdkafka::mocking::MockCluster::new(1).expect("librdkafka's mock cluster");
    cluster.create_topic("bus.acme.billing", 1, 1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("civiclake.toml");
    std::fs::write(
        &config,
        format!(
            "[[kafka.source]]\nname = \"acme\"\nbrokers = \"{brokers}\"\ngroup_id = \"civiclake\"\ntopics = [\"bus.acme.billing\"]\nbatch_wait = \"20ms\"\n[kafka.source.client_options]\n\"session.timeout.ms\" = \"6000\"\n"
        ),
    )
    .expect("write the config");
    let env = [("CIVICLAKE_CONFIG", config.to_str().expect("UTF-8 path"))];
    let mut server = TestServer::start(dir.path(), &env);
    let receiver = Receiver::start();
    let (s, v) = post_json(
        &server,
        &format!("/api/v1/bus/schemas/{INVOICE}"),
        &invoice_schema(),
    );
    assert_eq!(s, 201, "{v}");
    let (s, v) = post_json(
        &server,
        "/api/v1/bus/subscriptions",
        &json!({"name": "accounting", "target": {"kind": "webhook", "url": receiver.url}}),
    );
    assert_eq!(s, 201, "{v}");
    produce_binary(
        &brokers,
        "bus.acme.billing",
        &[
            (
                "k-1",
                "/acme/billing",
                INVOICE,
                "c1",
                json!({"amount": 12.5, "customer": "c1"}),
            ),
            (
                "k-2",
                "/acme/billing",
                "it.acme.invoice.Lost",
                "c1",
                json!({"amount": 1, "customer": "c1"}),
            ),
            (
                "k-3",
                "/evil/billing",
                INVOICE,
                "c2",
                json!({"amount": 99, "customer": "c2"}),
            ),
            (
                "k-4",
                "/acme/billing/invoices",
                INVOICE,
                "c2",
                json!({"amount": 7, "customer": "c2"}),
            ),
        ],
    );
    // The two good events reach the webhook (structured JSON), with their Kafka attributes.
    wait_until(Duration::from_secs(60), "two deliveries", || {
        receiver.received().len() >= 2
    });
    let got = receiver.received();
    let mut ids: Vec<&str> = got.iter().filter_map(|r| r.event["id"].as_str()).collect();
    ids.sort_unstable();
    assert_eq!(ids, ["k-1", "k-4"], "{got:?}");
    let k1 = got.iter().find(|r| r.event["id"] == "k-1").unwrap();
    assert_eq!(k1.event["source"], "/acme/billing");
    assert_eq!(k1.event["type"], INVOICE);
    assert_eq!(k1.event["partitionkey"], "c1");
    assert_eq!(k1.event["data"], json!({"amount": 12.5, "customer": "c1"}));
    assert!(!k1.key.is_empty());
    let logged =
        server.query("SELECT id, source, publisher, partitionkey FROM bus_events ORDER BY id");
    assert_eq!(
        logged,
        vec![
            json!({"id": "k-1", "source": "/acme/billing", "publisher": "kafka:bus.acme.billing", "partitionkey": "c1"}),
            json!({"id": "k-4", "source": "/acme/billing/invoices", "publisher": "kafka:bus.acme.billing", "partitionkey": "c2"}),
        ]
    );
    // The refused ones are dead letters of route "bus", with the bus's reasons.
    let dead = server
        .query("SELECT route, source, topic, error, payload FROM _dead_letters ORDER BY error");
    assert_eq!(dead.len(), 2, "{dead:?}");
    for d in &dead {
        assert_eq!(d["route"], "bus");
        assert_eq!(d["source"], "kafka:acme");
        assert_eq!(d["topic"], "bus.acme.billing");
    }
    let error = |i: usize| dead[i]["error"].as_str().unwrap().to_string();
    assert!(error(0).contains("it.acme.invoice.Lost"), "{dead:?}");
    assert!(error(0).contains("no schema"), "{dead:?}");
    assert!(
        error(1).contains(
            "source \"/evil/billing\" is outside the namespace of topic bus.acme.billing: events on it have a source /acme/billing[/...]"
        ),
        "{dead:?}"
    );
    // The dead letter keeps the event (as structured JSON).
    let payload: Value = serde_json::from_str(dead[1]["payload"].as_str().unwrap()).unwrap();
    assert_eq!(payload["id"], "k-3");
    // The offsets are checkpointed once the bus has the events: a restart appends nothing
    // again.
    wait_until(
        Duration::from_secs(30),
        "the last offset checkpointed",
        || {
            server.query(
                "SELECT value FROM _checkpoints WHERE name = 'kafka/acme/bus.acme.billing/0'",
            ) == vec![json!({"value": "3"})]
        },
    );
    server.kill9();
    let server = server.restart();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(server.scalar("SELECT count(*) FROM bus_events"), 2.0);
    assert_eq!(server.scalar("SELECT count(*) FROM _dead_letters"), 2.0);
    let metrics = TestServer::client()
        .get(format!("{}/metrics", server.url))
        .send()
        .expect("metrics")
        .text()
        .expect("metrics text");
    assert!(
        metrics.contains("civiclake_kafka_bus_events_total{source=\"acme\"}"),
        "{metrics}"
    );
}
