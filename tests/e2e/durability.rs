//! Durability: `kill -9` under a sustained concurrent write load loses no acknowledged row
//! and duplicates none; SIGTERM flushes the buffer to Delta.

use crate::server::{TestServer, wait_until};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const WRITERS: usize = 4;
const BATCH: u64 = 250;

fn batch_body(writer: usize, batch: u64) -> String {
    let mut body = String::with_capacity(BATCH as usize * 64);
    for i in 0..BATCH {
        let seq = batch * BATCH + i;
        body.push_str(&format!(
            "load,writer=w{writer},sensor=s{} seq={seq}i,v={}.5 {}\n",
            seq % 17,
            seq % 1000,
            1_767_225_600_000_000_000i64 + (seq as i64) * 1_000_000_000 + writer as i64
        ));
    }
    body
}

#[test]
fn sigkill_under_concurrent_load_loses_no_acknowledged_row() {
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("CIVICLAKE_FLUSH__MAX_ROWS", "15000"),
        ("CIVICLAKE_FLUSH__MAX_AGE", "300ms"),
        ("CIVICLAKE_COMPACTION__INTERVAL", "700ms"),
        ("CIVICLAKE_COMPACTION__MIN_FILES", "2"),
        ("CIVICLAKE_COMPACTION__VACUUM_GRACE", "0s"),
    ];
    let mut server = TestServer::start(dir.path(), &env);
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Arc<Vec<AtomicU64>> = Arc::new((0..WRITERS).map(|_| AtomicU64::new(0)).collect());
    let handles: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (stop, acked, url) = (stop.clone(), acked.clone(), server.url.clone());
            std::thread::spawn(move || {
                let client = reqwest::blocking::Client::builder()
                    .timeout(Duration::from_secs(30))
                    .build()
                    .unwrap();
                let mut batch = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let r = client
                        .post(format!("{url}/api/v1/write?table=load"))
                        .body(batch_body(w, batch))
                        .send();
                    match r {
                        Ok(r) if r.status() == 204 => {
                            batch += 1;
                            acked[w].store(batch, Ordering::SeqCst);
                        }
                        Ok(r) => panic!(
                            "write answered {}: {}",
                            r.status(),
                            r.text().unwrap_or_default()
                        ),
                        Err(_) => return, // the server is gone: the batch in flight is unknown
                    }
                }
            })
        })
        .collect();
    // Let the load run through several flushes and compactions, then pull the plug.
    let started = Instant::now();
    let metric = |text: &str, name: &str| {
        text.lines()
            .find_map(|l| {
                l.strip_prefix(name)
                    .and_then(|v| v.trim().parse::<u64>().ok())
            })
            .unwrap_or(0)
    };
    wait_until(
        Duration::from_secs(120),
        "flushes and a compaction under load",
        || {
            let Ok(text) = TestServer::client()
                .get(format!("{}/metrics", server.url))
                .send()
                .and_then(|r| r.text())
            else {
                return false;
            };
            metric(&text, "civiclake_rows_flushed_total ") >= 45_000
                && metric(&text, "civiclake_files_compacted_total ") > 0
                && started.elapsed() > Duration::from_secs(2)
        },
    );
    server.kill9();
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join().expect("writer thread");
    }
    let acked: Vec<u64> = acked.iter().map(|a| a.load(Ordering::SeqCst)).collect();
    assert!(
        acked.iter().all(|&a| a > 10),
        "too little load before the kill: {acked:?}"
    );

    let server = server.restart();
    let dupes = server.query("SELECT writer, seq, count(*) AS c FROM load GROUP BY writer, seq HAVING count(*) > 1 LIMIT 5");
    assert!(
        dupes.is_empty(),
        "duplicated rows after recovery: {dupes:?}"
    );
    for (w, &batches) in acked.iter().enumerate() {
        let acked_rows = batches * BATCH;
        let present = server.scalar(&format!(
            "SELECT count(*) FROM load WHERE writer = 'w{w}' AND seq < {acked_rows}"
        ));
        assert_eq!(
            present as u64, acked_rows,
            "writer w{w}: acknowledged rows lost"
        );
        let total =
            server.scalar(&format!("SELECT count(*) FROM load WHERE writer = 'w{w}'")) as u64;
        // The batch in flight at the kill is either wholly there or wholly absent.
        assert!(
            total == acked_rows || total == acked_rows + BATCH,
            "writer w{w}: {total} rows, {acked_rows} acknowledged"
        );
    }
}

#[test]
fn sigterm_flushes_the_buffer_to_delta() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = TestServer::start(dir.path(), &[("CIVICLAKE_FLUSH__MAX_AGE", "1h")]);
    server.write_lp("load", &batch_body(0, 0));
    server.write_lp("load", &batch_body(1, 0));
    assert_eq!(server.scalar("SELECT count(*) FROM load"), 500.0);
    let status = server.terminate();
    assert!(status.success(), "exit status {status}");
    // Every row is in Delta: the WAL holds nothing but an empty segment.
    let wal_bytes: u64 = std::fs::read_dir(dir.path().join("wal"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert!(wal_bytes <= 8, "WAL still holds {wal_bytes} bytes");
    assert!(dir.path().join("tables/load/_delta_log").is_dir());
    let server = server.restart();
    let tables: serde_json::Value = TestServer::client()
        .get(format!("{}/api/v1/tables", server.url))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let load = tables
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "load")
        .unwrap();
    assert_eq!(load["buffered_rows"], 0);
    assert_eq!(server.scalar("SELECT count(*) FROM load"), 500.0);
    assert_eq!(
        server.scalar("SELECT sum(seq) FROM load"),
        2.0 * (0..250).sum::<u64>() as f64
    );
}
