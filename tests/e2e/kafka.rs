//! Kafka into the lake through the real binary: `civiclake simulate --kafka` fills topics,
//! a server with `[[kafka.source]]` consumes them as a consumer group, and every reading is
//! stored exactly once — also after a `kill -9` and a restart. Against librdkafka's
//! in-process mock cluster always; against a real Kafka-protocol broker too when
//! `CIVICLAKE_KAFKA_BROKERS` names one (`.ci/run` starts tansu for that).

use crate::server::TestServer;
use crate::simulate::{TABLES, run};
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
