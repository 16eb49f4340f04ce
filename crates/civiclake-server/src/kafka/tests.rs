//! Kafka sources against librdkafka's in-process mock cluster.

use super::*;
use crate::ingest::{DEAD_LETTERS_TABLE, IngestSettings, Publishers};
use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float64Type};
use civiclake_core::ModuleRegistry;
use civiclake_lake::{LakeConfig, OpenMode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use std::path::Path;

const T0: i64 = 1_767_225_600_000_000_000;

async fn open_lake(dir: &Path) -> Arc<Lake> {
    let mut config = LakeConfig::new(dir.join("data"));
    config.wal_fsync = false;
    Lake::open(config, OpenMode::ReadWrite).await.unwrap()
}

fn ingest(dir: &Path, lake: &Arc<Lake>) -> Arc<IngestService> {
    Arc::new(
        IngestService::new(
            lake.clone(),
            Arc::new(ModuleRegistry::shipped()),
            Arc::new(Publishers::default()),
            IngestSettings {
                routes_dir: dir.join("routes"),
                default_route: true,
                pseudonymiser: None,
                auth_disabled: false,
            },
        )
        .unwrap(),
    )
}

/// One message to produce: partition, payload, headers.
type Record<'a> = (i32, Vec<u8>, Vec<(&'a str, &'a str)>);

fn produce(brokers: &str, topic: &str, records: &[Record<'_>]) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "1")
        .create()
        .unwrap();
    for (partition, payload, headers) in records {
        let mut owned = OwnedHeaders::new();
        for (key, value) in headers {
            owned = owned.insert(Header {
                key,
                value: Some(*value),
            });
        }
        producer
            .send(
                BaseRecord::<(), [u8]>::to(topic)
                    .partition(*partition)
                    .payload(payload.as_slice())
                    .headers(owned),
            )
            .unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();
}

/// Readings `from..to` of `air` on 3 partitions (reading `i` on partition `i % 3`, value `i`).
fn readings(brokers: &str, from: usize, to: usize) {
    let records: Vec<Record<'_>> = (from..to)
        .map(|i| {
            let line = format!(
                "air,sensor=s{} v={i} {}",
                i % 7,
                T0 + i as i64 * 1_000_000_000
            );
            ((i % 3) as i32, line.into_bytes(), Vec::new())
        })
        .collect();
    produce(brokers, "ingest.air", &records);
}

fn config(brokers: &str, group: &str, topics: &[&str]) -> KafkaSourceConfig {
    let mut c = KafkaSourceConfig::new(
        "city",
        brokers,
        group,
        topics.iter().map(|t| t.to_string()).collect(),
    );
    c.batch_max = 500;
    c.batch_wait = Duration::from_millis(20);
    // The mock coordinator waits for a session timeout (less a second) before it gives a
    // group that had members to a new one; the default is 45 s.
    c.client_options
        .insert("session.timeout.ms".into(), "3000".into());
    c.client_options
        .insert("heartbeat.interval.ms".into(), "500".into());
    c
}

/// Rows of `table`, buffered and in files.
fn total(lake: &Lake, table: &str) -> usize {
    let Some(snap) = lake.snapshot(table).unwrap() else {
        return 0;
    };
    snap.batches
        .iter()
        .map(RecordBatch::num_rows)
        .sum::<usize>()
        + snap
            .files
            .iter()
            .map(|f| f.rows.unwrap_or(0) as usize)
            .sum::<usize>()
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn column_strings(batches: &[RecordBatch], column: &str) -> Vec<String> {
    let mut out = Vec::new();
    for b in batches {
        let Some(col) = b.column_by_name(column) else {
            out.extend((0..b.num_rows()).map(|_| "<none>".to_string()));
            continue;
        };
        let col = arrow::compute::cast(col, &DataType::Utf8).unwrap();
        let col = col.as_string::<i32>();
        for i in 0..col.len() {
            out.push(if col.is_null(i) {
                "<null>".into()
            } else {
                col.value(i).to_string()
            });
        }
    }
    out
}

fn committed(brokers: &str, group: &str, topic: &str) -> Vec<Offset> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_range(topic, 0, 2);
    let got = consumer
        .committed_offsets(tpl, Duration::from_secs(30))
        .unwrap();
    (0..3)
        .map(|p| got.find_partition(topic, p).unwrap().offset())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_is_stored_exactly_once_across_restarts_and_lost_commits() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("ingest.air", 3, 1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let lake = open_lake(dir.path()).await;
    readings(&brokers, 0, 2000);

    // 1. From scratch: every message once, with its values, and a checkpoint per partition.
    let source = KafkaSource::start(
        config(&brokers, "g1", &["ingest.air"]),
        ingest(dir.path(), &lake),
        lake.clone(),
        Arc::default(),
    )
    .await
    .unwrap();
    wait_for("2000 rows", || total(&lake, "air") == 2000).await;
    let snap = lake.snapshot("air").unwrap().unwrap();
    let mut values: Vec<f64> = snap
        .batches
        .iter()
        .flat_map(|b| {
            b.column_by_name("v")
                .unwrap()
                .as_primitive::<Float64Type>()
                .values()
                .to_vec()
        })
        .collect();
    values.sort_by(f64::total_cmp);
    assert_eq!(values, (0..2000).map(|i| i as f64).collect::<Vec<_>>());
    let mut sensors = column_strings(&snap.batches, "sensor");
    sensors.sort();
    sensors.dedup();
    assert_eq!(sensors.len(), 7);
    for (partition, last) in [(0, 666), (1, 666), (2, 665)] {
        assert_eq!(
            lake.checkpoint(&format!("kafka/city/ingest.air/{partition}")),
            Some(Value::from(last)),
            "partition {partition}"
        );
    }
    let stats = source.stats();
    assert_eq!(
        (stats.messages, stats.duplicates, stats.stored, stats.rows),
        (2000, 0, 2000, 2000)
    );
    assert_eq!((stats.dead_lettered, stats.ignored), (0, 0));
    assert_eq!(stats.assigned_partitions, 3);
    assert!(stats.batches >= 4, "{stats:?}");
    source.stop().await;
    // The group follows the lake: the next offset to read of each partition.
    assert_eq!(
        committed(&brokers, "g1", "ingest.air"),
        [
            Offset::Offset(667),
            Offset::Offset(667),
            Offset::Offset(666)
        ]
    );

    // The flush carries the offsets into the Delta commit of the rows.
    lake.flush().await.unwrap();
    for (partition, last) in [(0, 666), (1, 666), (2, 665)] {
        assert_eq!(
            lake.delta_transaction_version("air", &format!("kafka/city/ingest.air/{partition}"))
                .await
                .unwrap(),
            Some(last)
        );
    }

    // 2. Restarted: only what is new.
    readings(&brokers, 2000, 2010);
    let source = KafkaSource::start(
        config(&brokers, "g1", &["ingest.air"]),
        ingest(dir.path(), &lake),
        lake.clone(),
        Arc::default(),
    )
    .await
    .unwrap();
    wait_for("2010 rows", || total(&lake, "air") == 2010).await;
    assert_eq!(source.stats().messages, 10);
    source.stop().await;

    // 3. civiclake restarts after a crash that lost the group's commits (a new group has
    // none): the lake's checkpoints say where to resume.
    lake.shutdown().await.unwrap();
    drop(lake);
    let lake = open_lake(dir.path()).await;
    assert_eq!(
        lake.checkpoint("kafka/city/ingest.air/0"),
        Some(Value::from(669))
    );
    readings(&brokers, 2010, 2015);
    let source = KafkaSource::start(
        config(&brokers, "g2", &["ingest.air"]),
        ingest(dir.path(), &lake),
        lake.clone(),
        Arc::default(),
    )
    .await
    .unwrap();
    wait_for("2015 rows", || total(&lake, "air") == 2015).await;
    let stats = source.stats();
    assert_eq!((stats.messages, stats.duplicates), (5, 0), "{stats:?}");
    source.stop().await;

    // 4. Without the seek (a replay from the beginning), the version check drops every
    // message the lake has.
    let source = KafkaSource::start_with(
        config(&brokers, "g3", &["ingest.air"]),
        ingest(dir.path(), &lake),
        lake.clone(),
        Arc::default(),
        false,
    )
    .await
    .unwrap();
    wait_for("2015 duplicates", || source.stats().duplicates == 2015).await;
    readings(&brokers, 2015, 2016);
    wait_for("2016 rows", || total(&lake, "air") == 2016).await;
    // The rows are visible as soon as they are in the lake, a moment before the source
    // counts them as stored.
    wait_for("the new message counted", || source.stats().stored == 1).await;
    let stats = source.stats();
    assert_eq!(
        (stats.messages, stats.duplicates, stats.stored),
        (2016, 2015, 1)
    );
    source.stop().await;
    assert_eq!(total(&lake, "air"), 2016);
    lake.shutdown().await.unwrap();
}

const EVENTS_ROUTE: &str = r#"
[[route]]
name = "events"
topic = "events/{kind}"
format = "cloudevents"
table = "city_events"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_cloudevents_are_stored_and_malformed_messages_dead_lettered() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("events.parking", 1, 1).unwrap();
    cluster.create_topic("ingest.air", 1, 1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("routes")).unwrap();
    std::fs::write(dir.path().join("routes/events.toml"), EVENTS_ROUTE).unwrap();
    let lake = open_lake(dir.path()).await;
    produce(
        &brokers,
        "events.parking",
        &[
            (
                0,
                br#"{"free": 12}"#.to_vec(),
                vec![
                    ("ce_specversion", "1.0"),
                    ("ce_id", "e1"),
                    ("ce_source", "/sensors/p1"),
                    ("ce_type", "city.parking.occupancy"),
                    ("ce_time", "2026-01-01T08:00:00Z"),
                    ("ce_subject", "lot-7"),
                    ("content-type", "application/json"),
                ],
            ),
            (
                0,
                br#"{"specversion":"1.0","id":"e2","source":"/sensors/p2","type":"city.parking.occupancy","time":"2026-01-01T09:00:00Z","data":{"free":3}}"#.to_vec(),
                Vec::new(),
            ),
        ],
    );
    produce(
        &brokers,
        "ingest.air",
        &[
            (0, b"air,sensor=x v=".to_vec(), vec![("trace", "t-1")]),
            (0, format!("air,sensor=y v=1 {T0}").into_bytes(), Vec::new()),
        ],
    );
    let source = KafkaSource::start(
        config(&brokers, "events", &["events.parking", "ingest.air"]),
        ingest(dir.path(), &lake),
        lake.clone(),
        Arc::default(),
    )
    .await
    .unwrap();
    wait_for("all four messages", || {
        let s = source.stats();
        s.stored + s.dead_lettered == 4
    })
    .await;
    let stats = source.stats();
    assert_eq!((stats.stored, stats.dead_lettered), (3, 1), "{stats:?}");

    let events = lake.snapshot("city_events").unwrap().unwrap().batches;
    let mut rows: Vec<Vec<String>> = [
        "ce_id",
        "ce_type",
        "ce_source",
        "ce_subject",
        "free",
        "kind",
        "time",
    ]
    .iter()
    .map(|c| column_strings(&events, c))
    .collect();
    // Transposed to one row per event, sorted by id.
    let mut by_event: Vec<Vec<String>> = (0..rows[0].len())
        .map(|i| rows.iter_mut().map(|c| c[i].clone()).collect())
        .collect();
    by_event.sort();
    assert_eq!(
        by_event,
        [
            [
                "e1",
                "city.parking.occupancy",
                "/sensors/p1",
                "lot-7",
                "12.0",
                "parking",
                "2026-01-01T08:00:00Z"
            ],
            [
                "e2",
                "city.parking.occupancy",
                "/sensors/p2",
                "<null>",
                "3.0",
                "parking",
                "2026-01-01T09:00:00Z"
            ]
        ]
    );

    assert_eq!(total(&lake, "air"), 1);
    let dead = lake.snapshot(DEAD_LETTERS_TABLE).unwrap().unwrap().batches;
    assert_eq!(column_strings(&dead, "topic"), ["ingest.air"]);
    assert_eq!(column_strings(&dead, "partition"), ["0"]);
    assert_eq!(column_strings(&dead, "offset"), ["0"]);
    assert_eq!(column_strings(&dead, "source"), ["kafka:city"]);
    assert_eq!(column_strings(&dead, "route"), ["default"]);
    assert_eq!(column_strings(&dead, "payload"), ["air,sensor=x v="]);
    assert_eq!(
        lake.checkpoint("kafka/city/events.parking/0"),
        Some(Value::from(1))
    );
    assert_eq!(
        lake.checkpoint("kafka/city/ingest.air/0"),
        Some(Value::from(1))
    );
    source.stop().await;
    lake.flush().await.unwrap();
    // Both data tables and _dead_letters carry the offsets of the batches that wrote them.
    assert_eq!(
        lake.delta_transaction_version("city_events", "kafka/city/events.parking/0")
            .await
            .unwrap(),
        Some(1)
    );
    assert_eq!(
        lake.delta_transaction_version(DEAD_LETTERS_TABLE, "kafka/city/ingest.air/0")
            .await
            .unwrap(),
        Some(1)
    );
    lake.shutdown().await.unwrap();
}

#[test]
fn binary_mode_becomes_a_structured_event() {
    let h = |pairs: &[(&str, &str)]| -> Vec<(String, Vec<u8>)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect()
    };
    let base = [
        ("ce_specversion", "1.0"),
        ("ce_id", "1"),
        ("ce_source", "/s"),
        ("ce_type", "t"),
        ("ce_cityzone", "north"),
    ];
    let event = |headers: &[(&str, &str)], payload: &[u8]| -> Value {
        serde_json::from_slice(&binary_cloudevent(&h(headers), payload).unwrap()).unwrap()
    };
    assert_eq!(
        event(&base, br#"{"x": 1}"#),
        serde_json::json!({"specversion": "1.0", "id": "1", "source": "/s", "type": "t",
            "cityzone": "north", "data": {"x": 1}})
    );
    let mut text = base.to_vec();
    text.push(("content-type", "text/plain"));
    assert_eq!(event(&text, b"{not json}")["data"], "{not json}");
    assert_eq!(event(&text, b"{not json}")["datacontenttype"], "text/plain");
    // JSON that does not parse is kept as text; bytes as base64; no payload, no data.
    assert_eq!(event(&base, b"{oops")["data"], "{oops");
    let mut binary = base.to_vec();
    binary.push(("content-type", "application/octet-stream"));
    let e = event(&binary, &[0, 1, 2, 0xff]);
    assert_eq!(e["data_base64"], "AAEC/w==");
    assert!(e.get("data").is_none());
    assert!(event(&base, b"").get("data").is_none());
    assert!(is_json_type("application/cloudevents+json; charset=utf-8"));
    assert!(!is_json_type("text/plain"));
    assert_eq!(binary_cloudevent(&h(&[("ce_id", "1")]), b"{}"), None);
}

#[test]
fn settings_have_defaults_and_are_checked() {
    let c: KafkaSourceConfig = toml::from_str(
        r#"
name = "city"
brokers = "127.0.0.1:9092"
group_id = "civiclake"
topics = ["ingest.air", "ingest.noise"]
client_options = { "security.protocol" = "sasl_ssl", "sasl.mechanism" = "PLAIN" }
"#,
    )
    .unwrap();
    assert_eq!(
        (c.batch_max, c.batch_wait),
        (5000, Duration::from_millis(50))
    );
    assert_eq!(c.client_options.len(), 2);
    c.validate().unwrap();
    assert_eq!(
        c.checkpoint_name("ingest.air", 2),
        "kafka/city/ingest.air/2"
    );
    let c: KafkaSourceConfig = toml::from_str(
        "name = \"a\"\nbrokers = \"b:1\"\ngroup_id = \"g\"\ntopics = [\"t\"]\nbatch_max = 10\nbatch_wait = \"250ms\"",
    )
    .unwrap();
    assert_eq!(
        (c.batch_max, c.batch_wait),
        (10, Duration::from_millis(250))
    );
    // Written back through serde (as configuration layering does), it reads the same.
    let text = toml::to_string(&c).unwrap();
    assert!(text.contains("batch_wait = \"250ms\""), "{text}");
    assert_eq!(toml::from_str::<KafkaSourceConfig>(&text).unwrap(), c);
    let unknown = toml::from_str::<KafkaSourceConfig>(
        "name = \"a\"\nbrokers = \"b:1\"\ngroup_id = \"g\"\ntopics = [\"t\"]\nbatchmax = 1",
    )
    .unwrap_err()
    .to_string();
    assert!(unknown.contains("unknown field `batchmax`"), "{unknown}");

    let check = |edit: &dyn Fn(&mut KafkaSourceConfig)| {
        let mut c =
            KafkaSourceConfig::new("city", "127.0.0.1:9092", "g", vec!["ingest.air".into()]);
        edit(&mut c);
        c.validate().unwrap_err().to_string()
    };
    assert!(check(&|c| c.name = "a/b".into()).contains("the name must be"));
    assert!(check(&|c| c.brokers = " ".into()).contains("no brokers"));
    assert!(check(&|c| c.group_id = String::new()).contains("no group_id"));
    assert!(check(&|c| c.topics.clear()).contains("no topics"));
    assert!(
        check(&|c| c.topics = vec!["ingest/air".into()]).contains("invalid topic \"ingest/air\"")
    );
    assert!(check(&|c| c.topics = vec!["^ingest.*".into()]).contains("patterns are not supported"));
    let reserved = check(&|c| {
        c.client_options
            .insert("enable.auto.commit".into(), "true".into());
    });
    assert_eq!(
        reserved,
        "Kafka source 'city': client option 'enable.auto.commit' is set by civiclake (use brokers/group_id; offsets are committed after the lake write, with read_committed isolation)"
    );
    assert!(check(&|c| c.batch_max = 0).contains("batch_max"));
    assert!(check(&|c| c.batch_wait = Duration::from_secs(61)).contains("batch_wait"));
}

#[tokio::test]
async fn a_client_setting_librdkafka_rejects_is_a_start_error() {
    let dir = tempfile::tempdir().unwrap();
    let lake = open_lake(dir.path()).await;
    let mut c = KafkaSourceConfig::new("city", "127.0.0.1:1", "g", vec!["ingest.air".into()]);
    c.client_options
        .insert("no.such.setting".into(), "1".into());
    let e = KafkaSource::start(c, ingest(dir.path(), &lake), lake.clone(), Arc::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("Kafka source 'city': "), "{e}");
    assert!(e.contains("no.such.setting"), "{e}");
    lake.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saturated_lake_pauses_consumption_and_loses_nothing() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("ingest.air", 3, 1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let mut lake_config = LakeConfig::new(dir.path().join("data"));
    lake_config.wal_fsync = false;
    lake_config.max_buffered_rows = 100;
    let lake = Lake::open(lake_config, OpenMode::ReadWrite).await.unwrap();
    readings(&brokers, 0, 600);
    let mut c = config(&brokers, "busy", &["ingest.air"]);
    c.batch_max = 60;
    let source = KafkaSource::start(c, ingest(dir.path(), &lake), lake.clone(), Arc::default())
        .await
        .unwrap();
    // Only flushes make room: until one runs, the source waits with the same batch.
    wait_for("a saturated write", || source.stats().busy_retries > 0).await;
    let buffered = total(&lake, "air");
    assert!((100..=160).contains(&buffered), "{buffered}");
    let deadline = Instant::now() + Duration::from_secs(90);
    while total(&lake, "air") < 600 {
        assert!(Instant::now() < deadline, "{:?}", source.stats());
        lake.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stats = source.stats();
    assert_eq!(
        (stats.messages, stats.duplicates, stats.rows),
        (600, 0, 600),
        "{stats:?}"
    );
    source.stop().await;
    assert_eq!(total(&lake, "air"), 600);
    lake.shutdown().await.unwrap();
}
