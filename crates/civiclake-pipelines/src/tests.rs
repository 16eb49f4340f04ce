//! The runtime against a real lake: pipeline output equals plain SQL over the raw table with
//! out-of-order and late rows, corrections, late rows, quarantine, restart, alerts, the
//! last-value cache, retention and rollups.

use crate::spec::{AlertsFile, Definitions, StreamsFile};
use crate::{EventPublisher, Pipelines, Settings};
use arrow::array::{
    Array, AsArray, Float64Array, RecordBatch, StringDictionaryBuilder, TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Int32Type, Schema};
use civiclake_core::{CloudEvent, field_column, tag_column, time_column};
use civiclake_lake::{Lake, LakeConfig, OpenMode};
use civiclake_query::{QueryConfig, QueryEngine};
use parking_lot::Mutex;
use std::sync::Arc;
use std::time::Duration;

/// 2026-01-01T00:00:00Z in µs.
const T0: i64 = 1_767_225_600_000_000;
const MIN: i64 = 60_000_000;

fn rows(data: &[(&str, i64, f64)]) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        time_column(),
        tag_column("sensor"),
        field_column("v", DataType::Float64),
    ]));
    let mut tags = StringDictionaryBuilder::<Int32Type>::new();
    for (s, _, _) in data {
        tags.append_value(s);
    }
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(
                TimestampMicrosecondArray::from(data.iter().map(|r| r.1).collect::<Vec<_>>())
                    .with_timezone("UTC"),
            ),
            Arc::new(tags.finish()),
            Arc::new(Float64Array::from(
                data.iter().map(|r| r.2).collect::<Vec<_>>(),
            )),
        ],
    )
    .unwrap()
}

#[derive(Debug, Default)]
struct Recorder(Mutex<Vec<CloudEvent>>);

#[async_trait::async_trait]
impl EventPublisher for Recorder {
    async fn publish(&self, event: CloudEvent) -> Result<(), String> {
        self.0.lock().push(event);
        Ok(())
    }
}

struct Setup {
    lake: Arc<Lake>,
    engine: QueryEngine,
    pipelines: Pipelines,
    events: Arc<Recorder>,
}

async fn open(dir: &std::path::Path, streams: &str, alerts: &str) -> Setup {
    let lake = Lake::open(LakeConfig::new(dir), OpenMode::ReadWrite)
        .await
        .unwrap();
    let engine = QueryEngine::new(lake.clone(), QueryConfig::default()).unwrap();
    let events = Arc::new(Recorder::default());
    let pipelines = Pipelines::new(
        lake.clone(),
        engine.clone(),
        Settings {
            tick: Duration::from_millis(20),
            ..Settings::default()
        },
        Some(events.clone()),
    )
    .unwrap();
    let streams: StreamsFile = toml::from_str(streams).unwrap();
    let alerts: AlertsFile = toml::from_str(alerts).unwrap();
    let defs = Definitions {
        pipelines: streams
            .pipeline
            .into_iter()
            .map(|spec| crate::spec::Defined {
                spec,
                file: Some("test.toml".into()),
            })
            .collect(),
        tables: streams
            .table
            .into_iter()
            .map(|spec| crate::spec::Defined {
                spec,
                file: Some("test.toml".into()),
            })
            .collect(),
        alerts: alerts
            .alert
            .into_iter()
            .map(|spec| crate::spec::Defined {
                spec,
                file: Some("test.toml".into()),
            })
            .collect(),
    };
    pipelines.start(defs).await.unwrap();
    Setup {
        lake,
        engine,
        pipelines,
        events,
    }
}

impl Setup {
    async fn write(&self, data: &[(&str, i64, f64)]) {
        self.lake
            .write(vec![("air".into(), rows(data))])
            .await
            .unwrap();
    }

    async fn settle(&self) {
        assert!(
            self.pipelines.settle(Duration::from_secs(20)).await,
            "pipelines did not settle: {:?}",
            self.pipelines.list()
        );
    }

    /// The rows of a query, as text lines (sorted).
    async fn lines(&self, sql: &str) -> Vec<String> {
        let result = self.engine.sql(sql).await.unwrap();
        let mut out = Vec::new();
        for b in &result.batches {
            let cols: Vec<_> = b
                .columns()
                .iter()
                .map(|c| arrow::compute::cast(c, &DataType::Utf8).unwrap())
                .collect();
            for row in 0..b.num_rows() {
                out.push(
                    cols.iter()
                        .map(|c| {
                            if c.is_null(row) {
                                "NULL".to_string()
                            } else {
                                c.as_string::<i32>().value(row).to_string()
                            }
                        })
                        .collect::<Vec<_>>()
                        .join(" "),
                );
            }
        }
        out.sort();
        out
    }

    async fn stop(self) {
        self.pipelines.stop().await;
        self.lake.shutdown().await.unwrap();
    }
}

const STREAMS: &str = r#"
[[pipeline]]
name = "air_5m"
source = "air"
target = "air_5m"
sql = "SELECT sensor, avg(v) AS v, count(*) AS n, max(v) AS vmax FROM air GROUP BY sensor"
window = { kind = "tumbling", size = "5m" }
watermark = "1m"
allowed_lateness = "10m"
backfill = "3650d"

[[pipeline]]
name = "air_15m"
source = "air"
target = "air_15m"
sql = "SELECT sensor, sum(v) AS total, count(*) AS n FROM air GROUP BY sensor"
window = { kind = "hopping", size = "15m", slide = "5m" }
watermark = "1m"
allowed_lateness = "10m"
backfill = "3650d"
"#;

/// Plain SQL over the raw rows, for windows ending at or before `until` (µs), without the
/// rows the pipeline refused as too late (v = 1000).
async fn expected_tumbling(s: &Setup, until: i64) -> Vec<String> {
    s.lines(&format!(
        "SELECT sensor, date_bin(INTERVAL '5 minutes', time, TIMESTAMP '1970-01-01T00:00:00Z') AS ws, \
         avg(v), count(*), max(v) FROM air WHERE v <> 1000 AND time < {} GROUP BY 1, 2",
        crate::sqlgen::timestamp_literal(until)
    ))
    .await
}

/// The hopping windows by plain SQL; the row v = 1000 arrived when the watermark was at
/// 38m31s, so only its windows ending after 28m31s (38m31s - 10m of lateness) have it.
async fn expected_hopping(s: &Setup, until: i64) -> Vec<String> {
    let bin = "date_bin(INTERVAL '5 minutes', time, TIMESTAMP '1970-01-01T00:00:00Z')";
    s.lines(&format!(
        "SELECT sensor, ws, sum(v), count(*) FROM ( \
           SELECT sensor, v, {bin} AS ws FROM air \
           UNION ALL SELECT sensor, v, {bin} - INTERVAL '5 minutes' FROM air \
           UNION ALL SELECT sensor, v, {bin} - INTERVAL '10 minutes' FROM air) \
         WHERE ws + INTERVAL '15 minutes' <= {} \
           AND NOT (v = 1000 AND ws + INTERVAL '15 minutes' <= TIMESTAMP '2026-01-01T00:28:31Z') \
         GROUP BY 1, 2",
        crate::sqlgen::timestamp_literal(until)
    ))
    .await
}

fn emitted_until(s: &Setup, name: &str) -> i64 {
    let st = s.pipelines.status(name).unwrap();
    let text = st.emitted_until.expect("emitted");
    chrono::DateTime::parse_from_rfc3339(&text)
        .unwrap()
        .timestamp_micros()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_equal_plain_sql_with_out_of_order_and_late_rows_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), STREAMS, "").await;
    // Readings of a and b every 30 s for 40 minutes, written in shuffled order within
    // each 2-minute slice (out of order, within the watermark).
    let mut all = Vec::new();
    for k in 0..80i64 {
        let t = T0 + k * 30_000_000;
        all.push(("a", t, (k % 7) as f64));
        all.push(("b", t + 1_000_000, (k % 5) as f64 * 2.0));
    }
    for chunk in all.chunks(8) {
        let mut c = chunk.to_vec();
        c.reverse();
        s.write(&c).await;
    }
    s.settle().await;
    // max event = T0+39m31s; watermark 1 min behind → windows up to T0+35m emitted.
    assert_eq!(emitted_until(&s, "air_5m"), T0 + 35 * MIN);
    let target = |until: i64| {
        let s = &s;
        async move {
            s.lines(&format!(
                "SELECT sensor, window_start, v, n, vmax FROM air_5m WHERE window_end <= {}",
                crate::sqlgen::timestamp_literal(until)
            ))
            .await
        }
    };
    assert_eq!(
        target(T0 + 35 * MIN).await,
        expected_tumbling(&s, T0 + 35 * MIN).await
    );
    assert_eq!(
        target(T0 + 35 * MIN).await.len(),
        14,
        "7 windows × 2 sensors"
    );
    // window_end and time are stored as timestamps.
    assert_eq!(
        s.lines("SELECT count(*) FROM air_5m WHERE window_end = window_start + INTERVAL '5 minutes' AND time = window_start")
            .await,
        ["14"]
    );
    assert_eq!(
        s.lines("SELECT sensor, window_start, total, n FROM air_15m")
            .await,
        expected_hopping(&s, T0 + 35 * MIN).await
    );

    // Files first, so the correction shows in the Delta history.
    s.lake.flush().await.unwrap();
    // Late within the allowed lateness (window [30m, 35m) ends 35m; 35m + 10m > 38m31s).
    s.write(&[("a", T0 + 31 * MIN, 100.0), ("c", T0 + 32 * MIN, 5.0)])
        .await;
    // Too late: window [20m, 25m) ends at 25m; 25m + 10m <= 38m31s. For the hopping
    // pipeline it misses [10m, 25m) but still corrects [15m, 30m) and [20m, 35m).
    s.write(&[("a", T0 + 21 * MIN, 1000.0)]).await;
    s.settle().await;
    assert_eq!(
        target(T0 + 35 * MIN).await,
        expected_tumbling(&s, T0 + 35 * MIN).await
    );
    assert!(
        target(T0 + 35 * MIN)
            .await
            .iter()
            .any(|l| l.starts_with("c 2026-01-01T00:30:00")),
        "the late sensor c has its window"
    );
    assert_eq!(
        s.lines("SELECT sensor, window_start, total, n FROM air_15m")
            .await,
        expected_hopping(&s, T0 + 35 * MIN).await
    );
    let late = s
        .lines("SELECT pipeline, source, series, event_time, row FROM _late_rows")
        .await;
    assert_eq!(late.len(), 2, "{late:?}");
    assert!(
        late[0].starts_with("air_15m air sensor=a 2026-01-01T00:21:00"),
        "{late:?}"
    );
    assert!(
        late[1].starts_with("air_5m air sensor=a 2026-01-01T00:21:00"),
        "{late:?}"
    );
    assert!(late[1].contains("\"v\":1000"), "{late:?}");
    let status = s.pipelines.status("air_5m").unwrap();
    assert!(status.corrections >= 1, "{status:?}");
    assert_eq!(status.late_rows, 1);
    // The correction is a Delta commit replacing the file with the old aggregate.
    s.lake.flush().await.unwrap();
    let log = dir.path().join("tables/air_5m/_delta_log");
    let mut replaced = false;
    for entry in std::fs::read_dir(&log).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap_or_default();
        replaced |= text.contains("\"remove\"") && text.contains("\"add\"");
    }
    assert!(
        replaced,
        "a commit of air_5m removes the first file and adds its correction"
    );
    let before = s.lines("SELECT * FROM air_5m").await;
    s.stop().await;

    // Restart: state from the checkpoint, no window missed or doubled.
    let s = open(dir.path(), STREAMS, "").await;
    s.settle().await;
    assert_eq!(s.lines("SELECT * FROM air_5m").await, before);
    let mut more = Vec::new();
    for k in 80..100i64 {
        more.push(("a", T0 + k * 30_000_000, 3.0));
        more.push(("b", T0 + k * 30_000_000 + 1_000_000, 4.0));
    }
    s.write(&more).await;
    s.settle().await;
    let until = emitted_until(&s, "air_5m");
    assert_eq!(until, T0 + 45 * MIN);
    assert_eq!(
        s.lines(&format!(
            "SELECT sensor, window_start, v, n, vmax FROM air_5m WHERE window_end <= {}",
            crate::sqlgen::timestamp_literal(until)
        ))
        .await,
        expected_tumbling(&s, until).await
    );
    assert_eq!(
        s.lines("SELECT count(*) FROM (SELECT sensor, time, count(*) AS c FROM air_5m GROUP BY 1, 2) WHERE c > 1")
            .await,
        ["0"]
    );
    assert_eq!(
        s.lines("SELECT sensor, window_start, total, n FROM air_15m")
            .await,
        expected_hopping(&s, until).await
    );
    // The window [40m, 45m) starts after the newest row at the restart (39m31s): it came
    // from memory, and still equals SQL. The hopping windows emitted since start before it.
    let st = s.pipelines.status("air_5m").unwrap();
    assert!(st.in_memory, "{st:?}");
    assert_eq!(st.windows_from_memory, 1, "{st:?}");
    // Its time on the ingest path and emitting since the restart is counted.
    assert!(st.write_path_ms > 0.0 && st.emit_ms > 0.0, "{st:?}");
    assert!(st.emit_ms < 60_000.0, "{st:?}");
    let st = s.pipelines.status("air_15m").unwrap();
    assert!(st.in_memory, "{st:?}");
    assert_eq!(st.windows_from_memory, 0, "{st:?}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_ahead_of_the_clock_is_quarantined() {
    let dir = tempfile::tempdir().unwrap();
    let streams = r#"
[[pipeline]]
name = "live"
source = "air"
target = "air_live"
sql = "SELECT avg(v) AS v FROM air"
window = { kind = "tumbling", size = "1m" }
watermark = "5s"
max_clock_skew = "5m"
series = ["sensor"]
"#;
    let s = open(dir.path(), streams, "").await;
    let now = chrono::Utc::now().timestamp_micros();
    s.write(&[
        ("ok", now, 1.0),
        ("fast", now + 3_600_000_000, 2.0),
        ("ok", now - MIN, 3.0),
    ])
    .await;
    assert_eq!(
        s.lines("SELECT sensor, v FROM air").await,
        ["ok 1.0", "ok 3.0"]
    );
    let q = s
        .lines("SELECT source, series, skew_seconds > 3500, row FROM _quarantine")
        .await;
    assert_eq!(q.len(), 1);
    assert!(q[0].starts_with("air sensor=fast true {"), "{q:?}");
    assert!(q[0].contains("\"v\":2"), "{q:?}");
    let st = s.pipelines.status("live").unwrap();
    assert_eq!(st.quarantined, 1);
    let max = chrono::DateTime::parse_from_rfc3339(&st.max_event_time.unwrap())
        .unwrap()
        .timestamp_micros();
    assert_eq!(max, now, "the watermark follows the honest device");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_fire_resolve_and_go_on_the_bus() {
    let dir = tempfile::tempdir().unwrap();
    let alerts = r#"
[[alert]]
name = "v-high"
kind = "threshold"
table = "air"
field = "v"
aggregate = "avg"
window = "1h"
by = ["sensor"]
op = ">"
value = 50.0
every = "1h"

[[alert]]
name = "silent"
kind = "dead_man"
table = "air"
by = ["sensor"]
after = "15m"
every = "1h"

[[alert]]
name = "rising"
kind = "rate_of_change"
table = "air"
field = "v"
window = "30m"
per = "1m"
by = ["sensor"]
op = ">="
value = 5.0
every = "1h"
"#;
    let s = open(dir.path(), "", alerts).await;
    let now = T0 + 120 * MIN;
    // a: high and rising 10 per minute; b: low, silent for 20 minutes.
    let mut data = Vec::new();
    for k in 0..10i64 {
        data.push(("a", now - (10 - k) * MIN, 40.0 + 10.0 * k as f64));
    }
    data.push(("b", now - 20 * MIN, 1.0));
    s.write(&data).await;
    let fired = s.pipelines.evaluate_alert("v-high", now).await.unwrap();
    // b is below the threshold and was never firing: no change of state for it.
    assert_eq!(fired.len(), 1, "{fired:?}");
    assert_eq!(
        (fired[0].series.as_str(), fired[0].state.as_str()),
        ("sensor=a", "firing")
    );
    assert!((fired[0].value - 85.0).abs() < 1e-9);
    let silent = s.pipelines.evaluate_alert("silent", now).await.unwrap();
    assert_eq!(silent.len(), 1, "{silent:?}");
    assert_eq!(silent[0].series, "sensor=b");
    assert!((silent[0].value - 1200.0).abs() < 1e-6);
    let rising = s.pipelines.evaluate_alert("rising", now).await.unwrap();
    assert_eq!(rising.len(), 1, "{rising:?}");
    assert!((rising[0].value - 10.0).abs() < 1e-9, "{rising:?}");
    // Still high: no new transition.
    assert!(
        s.pipelines
            .evaluate_alert("v-high", now)
            .await
            .unwrap()
            .is_empty()
    );
    // An hour later a reads low: resolved.
    s.write(&[("a", now + 50 * MIN, 2.0)]).await;
    let resolved = s
        .pipelines
        .evaluate_alert("v-high", now + 60 * MIN)
        .await
        .unwrap();
    assert_eq!(resolved.len(), 1);
    assert_eq!(resolved[0].state, "resolved");
    let events = s.events.0.lock().clone();
    let kinds: Vec<(String, String, Option<String>)> = events
        .iter()
        .map(|e| (e.ty.clone(), e.source.clone(), e.subject.clone()))
        .collect();
    assert!(kinds.contains(&(
        "civiclake.alert.firing".into(),
        "/alerts/v-high".into(),
        Some("sensor=a".into())
    )));
    assert!(kinds.contains(&(
        "civiclake.alert.resolved".into(),
        "/alerts/v-high".into(),
        Some("sensor=a".into())
    )));
    let data = events[0].data.clone().unwrap();
    assert_eq!(data["series"]["sensor"], "a");
    assert_eq!(data["threshold"], 50.0);
    let table = s
        .lines("SELECT alert, series, state FROM _alerts WHERE alert = 'v-high'")
        .await;
    assert!(
        table.contains(&"v-high sensor=a firing".to_string()),
        "{table:?}"
    );
    assert!(
        table.contains(&"v-high sensor=a resolved".to_string()),
        "{table:?}"
    );
    assert_eq!(
        s.pipelines.alert_status("silent").unwrap().firing[0].series,
        "sensor=b"
    );
    s.stop().await;
    // The states come back after a restart.
    let s = open(dir.path(), "", alerts).await;
    let st = s.pipelines.alert_status("silent").unwrap();
    assert_eq!(st.firing.len(), 1);
    assert!(
        s.pipelines
            .alert_status("v-high")
            .unwrap()
            .firing
            .is_empty()
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_value_cache_answers_latest_without_history() {
    let dir = tempfile::tempdir().unwrap();
    let streams = r#"
[[table]]
name = "air"
latest_by = ["sensor"]
latest_lookback = "3650d"
"#;
    let s = open(dir.path(), streams, "").await;
    s.write(&[("a", T0, 1.0), ("b", T0 + MIN, 2.0)]).await;
    s.write(&[("a", T0 + 2 * MIN, 3.0), ("b", T0, 9.0)]).await;
    let latest = "SELECT sensor, time, v FROM latest('air')";
    assert_eq!(
        s.lines(latest).await,
        ["a 2026-01-01T00:02:00Z 3.0", "b 2026-01-01T00:01:00Z 2.0"]
    );
    let e = s
        .engine
        .sql("SELECT * FROM latest('noise')")
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("no last-value cache"), "{e}");
    s.stop().await;
    // After a restart the cache is filled from the table.
    let s = open(dir.path(), streams, "").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while s.engine.latest_cache().series_count("air") < 2 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        s.lines(latest).await,
        ["a 2026-01-01T00:02:00Z 3.0", "b 2026-01-01T00:01:00Z 2.0"]
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelines_created_through_the_api_are_kept_and_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), STREAMS, "").await;
    let spec: crate::PipelineSpec = serde_json::from_value(serde_json::json!({
        "name": "air_1m",
        "source": "air",
        "target": "air_1m",
        "sql": "SELECT count(*) AS n FROM air",
        "window": {"kind": "tumbling", "size": "1m"},
        "watermark": "0s"
    }))
    .unwrap();
    s.pipelines.create(spec.clone()).await.unwrap();
    let e = s.pipelines.create(spec.clone()).await.unwrap_err();
    assert!(matches!(e, crate::Error::Conflict(_)), "{e}");
    let e = s.pipelines.delete("air_5m").await.unwrap_err();
    assert!(e.to_string().contains("test.toml"), "{e}");
    s.stop().await;
    let s = open(dir.path(), STREAMS, "").await;
    assert_eq!(s.pipelines.status("air_1m").unwrap().spec, spec);
    assert!(s.pipelines.status("air_1m").unwrap().file.is_none());
    s.pipelines.delete("air_1m").await.unwrap();
    assert!(matches!(
        s.pipelines.status("air_1m"),
        Err(crate::Error::NotFound(_))
    ));
    s.stop().await;
    let s = open(dir.path(), STREAMS, "").await;
    assert!(s.pipelines.status("air_1m").is_err());
    assert_eq!(s.pipelines.list().len(), 2);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_drops_whole_old_days_of_raw_data_and_keeps_the_rollup_longer() {
    let dir = tempfile::tempdir().unwrap();
    let streams = r#"
[[table]]
name = "air"
retention = "2d"

[[pipeline]]
name = "air_hourly"
source = "air"
target = "air_hourly"
rollup = { series = ["sensor"], fields = ["v"] }
window = { kind = "tumbling", size = "1h" }
watermark = "0s"
backfill = "3650d"
retention = "3650d"
"#;
    let s = open(dir.path(), streams, "").await;
    let now = chrono::Utc::now().timestamp_micros();
    let day = 86_400_000_000;
    // Old rows (2026-01-01, 02), and rows of today.
    s.write(&[("a", T0, 1.0), ("a", T0 + day, 2.0), ("a", now - MIN, 3.0)])
        .await;
    s.settle().await;
    s.lake.flush().await.unwrap();
    let runs = s.pipelines.enforce_retention().await.unwrap();
    let air = runs
        .iter()
        .find(|r| r.table == "air")
        .expect("air has a retention");
    assert_eq!(air.outcome.days_dropped, ["2026-01-01", "2026-01-02"]);
    assert_eq!(s.lines("SELECT v FROM air").await, ["3.0"]);
    assert!(!dir.path().join("tables/air/day=2026-01-01").exists());
    // The rollup keeps the old hours.
    assert_eq!(
        s.lines("SELECT v_sum FROM air_hourly WHERE time < TIMESTAMP '2026-02-01T00:00:00Z'")
            .await,
        ["1.0", "2.0"]
    );
    s.stop().await;
}
