//! The `simulate` command: live to a server over HTTP, to Kafka (librdkafka's mock
//! cluster), to Parquet files imported with `import`, and its checks of the destination.

use crate::server::{TestServer, binary};
use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

pub(crate) fn run(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(binary())
        .args(args)
        .output()
        .expect("run civiclake");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// The per-table counts `simulate` printed ("air: 576 rows").
fn printed_counts(out: &str) -> BTreeMap<String, u64> {
    out.lines()
        .filter_map(|l| {
            let (table, rest) = l.split_once(": ")?;
            let n = rest.strip_suffix(" rows")?.parse().ok()?;
            Some((table.to_string(), n))
        })
        .collect()
}

pub(crate) const TABLES: [&str; 5] = ["air", "noise", "traffic", "parking", "waste"];

#[test]
fn simulate_publishes_to_a_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), &[]);
    let (ok, out, err) = run(&[
        "simulate",
        "--server",
        &server.url,
        "--sensors",
        "20",
        "--days",
        "1",
        "--interval",
        "600",
    ]);
    assert!(ok, "{err}");
    let counts = printed_counts(&out);
    assert_eq!(counts.len(), 5, "{out}");
    assert_eq!(counts.values().sum::<u64>(), 20 * 144, "{out}");
    assert!(
        out.contains(&format!("simulated {} rows in ", 20 * 144)) && out.contains("rows/s"),
        "{out}"
    );
    for table in TABLES {
        let n = server.scalar(&format!("SELECT count(*) FROM {table}"));
        assert_eq!(n as u64, counts[table], "{table}");
    }
    let mut districts = std::collections::BTreeSet::new();
    for table in TABLES {
        for r in server.query(&format!("SELECT DISTINCT district FROM {table}")) {
            districts.insert(r["district"].as_str().unwrap().to_string());
        }
    }
    assert_eq!(
        districts.into_iter().collect::<Vec<_>>(),
        ["Centro", "Est", "Nord", "Ovest", "Sud"]
    );
    assert_eq!(
        server.scalar(
            "SELECT count(*) FROM traffic WHERE vehicle_count < 0 OR status NOT IN ('ok', 'fault')"
        ),
        0.0
    );

    // Pacing: 120 rows at 200 rows/s take at least 0.55 s.
    let started = Instant::now();
    let (ok, out, err) = run(&[
        "simulate",
        "--server",
        &server.url,
        "--seed",
        "2",
        "--sensors",
        "5",
        "--interval",
        "3600",
        "--rate",
        "200",
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("simulated 120 rows"), "{out}");
    assert!(started.elapsed() >= Duration::from_millis(550));

    // Bad settings and an unreachable server are errors, not panics.
    let (ok, _, err) = run(&["simulate", "--server", &server.url, "--sensors", "0"]);
    assert!(!ok);
    assert!(err.contains("sensors must be at least 1"), "{err}");
    let (ok, _, err) = run(&[
        "simulate",
        "--server",
        "http://127.0.0.1:9",
        "--sensors",
        "1",
    ]);
    assert!(!ok);
    assert!(err.contains("cannot reach"), "{err}");
}

#[test]
fn simulate_parquet_then_import() {
    let files = tempfile::tempdir().unwrap();
    let out_dir = files.path().join("city");
    let (ok, out, err) = run(&[
        "simulate",
        "--sensors",
        "10",
        "--interval",
        "900",
        "--format",
        "parquet",
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let counts = printed_counts(&out);
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), &[]);
    for table in TABLES {
        let path = out_dir.join(format!("{table}.parquet"));
        let (ok, out, err) = run(&[
            "import",
            "--server",
            &server.url,
            "--table",
            table,
            path.to_str().unwrap(),
        ]);
        assert!(ok, "{err}");
        assert!(
            out.starts_with(&format!("imported {} rows", counts[table])),
            "{out}"
        );
        let n = server.scalar(&format!("SELECT count(*) FROM {table}"));
        assert_eq!(n as u64, counts[table], "{table}");
    }
    // Same seed, same line-protocol bytes.
    let (a, b) = (files.path().join("a.lp"), files.path().join("b.lp"));
    for p in [&a, &b] {
        let (ok, _, err) = run(&[
            "simulate",
            "--sensors",
            "5",
            "--interval",
            "3600",
            "--out",
            p.to_str().unwrap(),
        ]);
        assert!(ok, "{err}");
    }
    let lp = std::fs::read(&a).unwrap();
    assert_eq!(lp, std::fs::read(&b).unwrap());
    assert_eq!(lp.iter().filter(|&&c| c == b'\n').count(), 120);
}

#[test]
fn simulate_produces_to_kafka() {
    use rdkafka::config::ClientConfig;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::Message;

    let cluster = rdkafka::mocking::MockCluster::new(1).expect("librdkafka's mock cluster");
    for t in TABLES {
        cluster.create_topic(&format!("city.{t}"), 1, 1).unwrap();
    }
    let brokers = cluster.bootstrap_servers();
    let (ok, out, err) = run(&[
        "simulate",
        "--sensors",
        "5",
        "--interval",
        "3600",
        "--kafka",
        &brokers,
        "--topic",
        "city.{table}",
        "--payload",
        "json",
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("simulated 120 rows"), "{out}");
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", "e2e")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&["city.parking"]).unwrap();
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.len() < 24 {
        assert!(Instant::now() < deadline, "only {} consumed", seen.len());
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            let m = m.expect("a message");
            let v: serde_json::Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
            assert_eq!(m.key(), Some(&b"parking-00003"[..]));
            assert_eq!(v["table"], "parking");
            seen.push(v["time"].as_str().unwrap().to_string());
        }
    }
    // The sensor's 24 hourly readings of 2026-01-01, each once.
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 24);
    assert!(seen[0].starts_with("2026-01-01T00:"), "{seen:?}");
}

#[test]
fn simulate_destinations_are_checked() {
    let (ok, _, err) = run(&["simulate", "--sensors", "5"]);
    assert!(!ok);
    assert!(err.contains("--out") && err.contains("--mqtt"), "{err}");
    let (ok, _, err) = run(&[
        "simulate",
        "--server",
        "http://127.0.0.1:9",
        "--mqtt",
        "mqtt://127.0.0.1:9",
    ]);
    assert!(!ok);
    assert!(err.contains("cannot be used with"), "{err}");
    let (ok, _, err) = run(&[
        "simulate",
        "--sensors",
        "1",
        "--server",
        "http://127.0.0.1:9",
        "--topic",
        "x",
    ]);
    assert!(!ok);
    assert!(
        err.contains("--topic applies to --mqtt and --kafka only"),
        "{err}"
    );
    let (ok, _, err) = run(&[
        "simulate",
        "--sensors",
        "1",
        "--mqtt",
        "mqtt://127.0.0.1:9",
        "--topic",
        "ingest/{kind}",
    ]);
    assert!(!ok);
    assert!(err.contains("unknown placeholder {kind}"), "{err}");
}
