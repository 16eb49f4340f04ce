//! Continuous pipelines under ingest: 10k devices write readings stamped with the wall clock
//! over HTTP line protocol at the live rate; the same load runs twice on fresh servers, once
//! without pipelines and once with a 1-minute tumbling and a 15-minute hopping window (slide
//! 5 minutes) and a last-value cache on the table. Reported: the server CPU both ways (the
//! extra per pipeline), the rows the pipelines processed per second, the lag from the
//! watermark passing a window to its rows being written, and `latest()` over 10k sensors.

use super::{Part, Section, quantile};
use crate::ctx::Ctx;
use crate::server::{Civiclake, fresh_dir};
use serde_json::json;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// `pipelines`: pipeline throughput, CPU and lag under ingest; `latest()` over 10k sensors.
pub(crate) struct PipelinesUnderIngest;

const DEVICES: usize = 10_000;
/// How long each run streams.
const RUN_SECS: u64 = 150;
/// The first part of a run is not measured (server warm-up, first windows).
const WARMUP_SECS: u64 = 30;

const STREAMS: &str = r#"
[[table]]
name = "bench_pipe"
latest_by = ["device"]

[[pipeline]]
name = "bench_1m"
source = "bench_pipe"
target = "bench_pipe_1m"
sql = "SELECT device, district, avg(value) AS value, max(value) AS value_max, count(*) AS n FROM bench_pipe GROUP BY device, district"
window = { kind = "tumbling", size = "1m" }
watermark = "2s"

[[pipeline]]
name = "bench_15m"
source = "bench_pipe"
target = "bench_pipe_15m"
sql = "SELECT district, avg(value) AS value, count(*) AS n FROM bench_pipe GROUP BY district"
window = { kind = "hopping", size = "15m", slide = "5m" }
watermark = "2s"
"#;

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// Streams `rate` rows/s of the 10k devices (each request one reading of 1,000 devices,
/// stamped now) until `stop`; returns the rows sent.
fn stream(url: &str, rate: f64, stop: &AtomicBool, sent: &AtomicUsize) -> Result<(), String> {
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| e.to_string())?;
    let per_request = 1000;
    let started = Instant::now();
    let mut next_device = 0usize;
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let due = Duration::from_secs_f64(sent.load(Ordering::Relaxed) as f64 / rate.max(1.0));
        let elapsed = started.elapsed();
        if due > elapsed {
            std::thread::sleep((due - elapsed).min(Duration::from_millis(20)));
            continue;
        }
        let ts = now_ns();
        let mut body = Vec::with_capacity(per_request * 64);
        for _ in 0..per_request {
            let d = next_device % DEVICES;
            next_device += 1;
            seq += 1;
            let _ = writeln!(
                body,
                "bench_pipe,device=d{d:05},district=z{} value={}.{} {ts}",
                d % 10,
                (seq * 7919) % 200,
                seq % 10
            );
        }
        let r = http
            .post(format!("{url}/api/v1/write"))
            .body(body)
            .send()
            .map_err(|e| format!("write: {e}"))?;
        if !r.status().is_success() {
            return Err(format!("write: {}", r.status()));
        }
        sent.fetch_add(per_request, Ordering::Relaxed);
    }
    Ok(())
}

struct Run {
    cpu_s: f64,
    rows: usize,
    secs: f64,
    lags_ms: Vec<f64>,
    pipeline_rows_per_s: Vec<(String, f64, u64, u64)>,
    latest_ms: Vec<f64>,
    lastpoint_sql_ms: Vec<f64>,
    peak_rss: u64,
}

fn run(bin: &std::path::Path, rate: f64, with_pipelines: bool) -> Result<Run, String> {
    let dir = fresh_dir(if with_pipelines {
        "pipelines-on"
    } else {
        "pipelines-off"
    })?;
    let defs = dir.join("defs");
    std::fs::create_dir_all(defs.join("streams")).map_err(|e| e.to_string())?;
    if with_pipelines {
        std::fs::write(defs.join("streams/bench.toml"), STREAMS).map_err(|e| e.to_string())?;
    }
    let server = Civiclake::start_with_args(
        bin,
        &dir.join("data"),
        &["--pipelines-dir".into(), defs.display().to_string()],
    )?;
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let writer = {
        let (url, stop, sent) = (server.url.clone(), stop.clone(), sent.clone());
        std::thread::spawn(move || stream(&url, rate, &stop, &sent))
    };
    std::thread::sleep(Duration::from_secs(WARMUP_SECS));
    let cpu0 = server.cpu_seconds();
    let rows0 = sent.load(Ordering::Relaxed);
    let t0 = Instant::now();
    let seen0 = pipeline_counters(&server)?;
    let mut lags = Vec::new();
    let mut latest = Vec::new();
    let mut lastpoint = Vec::new();
    while t0.elapsed() < Duration::from_secs(RUN_SECS - WARMUP_SECS) {
        std::thread::sleep(Duration::from_secs(1));
        if with_pipelines {
            for (name, _, _, lag) in pipeline_counters(&server)? {
                if name == "bench_1m" && lag > 0 {
                    lags.push(lag as f64);
                }
            }
            let t = Instant::now();
            let n = server.query_rows("SELECT * FROM latest('bench_pipe')")?;
            latest.push(t.elapsed().as_secs_f64() * 1e3);
            if n != DEVICES {
                return Err(format!("latest() gave {n} rows, not {DEVICES}"));
            }
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let cpu_s = server.cpu_seconds() - cpu0;
    let rows = sent.load(Ordering::Relaxed) - rows0;
    let seen1 = pipeline_counters(&server)?;
    if with_pipelines {
        // For comparison: the latest reading per device by SQL over the table.
        for _ in 0..5 {
            let t = Instant::now();
            server.query_rows("SELECT device, max(time) FROM bench_pipe GROUP BY device")?;
            lastpoint.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().map_err(|_| "writer panicked")??;
    let pipeline_rows_per_s = seen1
        .iter()
        .map(|(name, rows, windows, _)| {
            let before = seen0.iter().find(|s| &s.0 == name).map_or(0.0, |s| s.1);
            (name.clone(), (rows - before) / secs, *windows, 0)
        })
        .collect();
    Ok(Run {
        cpu_s,
        rows,
        secs,
        lags_ms: lags,
        pipeline_rows_per_s,
        latest_ms: latest,
        lastpoint_sql_ms: lastpoint,
        peak_rss: server.peak_rss(),
    })
}

/// (name, rows seen, windows emitted, last lag in ms) of every pipeline.
fn pipeline_counters(server: &Civiclake) -> Result<Vec<(String, f64, u64, u64)>, String> {
    let v = server.get_json("/api/v1/pipelines")?;
    Ok(v["pipelines"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|p| {
                    (
                        p["spec"]["name"].as_str().unwrap_or("").to_string(),
                        p["rows_seen"].as_f64().unwrap_or(0.0),
                        p["windows_emitted"].as_u64().unwrap_or(0),
                        p["last_lag_ms"].as_f64().unwrap_or(0.0) as u64,
                    )
                })
                .collect()
        })
        .unwrap_or_default())
}

impl Part for PipelinesUnderIngest {
    fn name(&self) -> &'static str {
        "pipelines"
    }
    fn about(&self) -> &'static str {
        "pipelines' CPU and lag under ingest (10k devices), latest() over 10k sensors"
    }
    fn run(&self, ctx: &mut Ctx) -> Result<Section, String> {
        let rate = ctx.settings.live_rate;
        let bin = ctx.settings.civiclake.clone();
        let off = run(&bin, rate, false)?;
        eprintln!(
            "without pipelines: {} rows in {:.0} s, {:.1} CPU-s",
            off.rows, off.secs, off.cpu_s
        );
        let mut on = run(&bin, rate, true)?;
        eprintln!(
            "with pipelines: {} rows in {:.0} s, {:.1} CPU-s",
            on.rows, on.secs, on.cpu_s
        );
        // CPU per million rows written, so a small difference in the rate kept does not count.
        let per_m = |r: &Run| r.cpu_s / r.rows.max(1) as f64 * 1e6;
        let extra = (per_m(&on) - per_m(&off)) / per_m(&off) * 100.0;
        let per_pipeline = extra / 2.0;
        let (lag50, lag_max) = (
            quantile(&mut on.lags_ms.clone(), 0.5),
            quantile(&mut on.lags_ms, 1.0),
        );
        let (latest50, latest99) = (
            quantile(&mut on.latest_ms.clone(), 0.5),
            quantile(&mut on.latest_ms, 0.99),
        );
        let lastpoint50 = quantile(&mut on.lastpoint_sql_ms, 0.5);
        let throughput: Vec<String> = on
            .pipeline_rows_per_s
            .iter()
            .map(|(n, r, w, _)| format!("`{n}` {r:.0} rows/s ({w} windows emitted)"))
            .collect();
        let markdown = format!(
            "### Continuous pipelines under ingest\n\n\
             {DEVICES} devices write readings stamped with the wall clock over HTTP line protocol at {rate:.0} rows/s (1,000 rows a request), {RUN_SECS} s per run, the first {WARMUP_SECS} s not measured. The same load runs on two fresh servers: without pipelines, and with a 1-minute tumbling window per device (`bench_1m`) and a 15-minute hopping window sliding every 5 minutes per district (`bench_15m`), both with a 2-second watermark, plus a last-value cache on the table.\n\n\
             | | without pipelines | with 2 pipelines |\n|---|---|---|\n\
             | rows written (rate kept) | {} ({:.0} rows/s) | {} ({:.0} rows/s) |\n\
             | server CPU, measured part | {:.1} CPU-s ({:.2} CPU-s per million rows) | {:.1} CPU-s ({:.2} CPU-s per million rows) |\n\
             | extra CPU per pipeline | | **{per_pipeline:.1} %** (target < 5 %) |\n\
             | rows processed by the pipelines | | {} |\n\
             | watermark passed a 1-minute window → its rows written, p50 / max | | {lag50:.0} / {lag_max:.0} ms |\n\
             | `SELECT * FROM latest('bench_pipe')` ({DEVICES} rows) over HTTP, p50 / p99 | | **{latest50:.1}** / {latest99:.1} ms (target < 10 ms) |\n\
             | the same by SQL over the table (`max(time) GROUP BY device`), p50 | | {lastpoint50:.0} ms |\n\
             | server peak RSS | {} | {} |\n",
            off.rows,
            off.rows as f64 / off.secs,
            on.rows,
            on.rows as f64 / on.secs,
            off.cpu_s,
            per_m(&off),
            on.cpu_s,
            per_m(&on),
            throughput.join(", "),
            super::bytes(off.peak_rss),
            super::bytes(on.peak_rss),
        );
        Ok(Section {
            markdown,
            json: json!({
                "devices": DEVICES,
                "rate": rate,
                "run_s": RUN_SECS,
                "off": {"rows": off.rows, "secs": off.secs, "cpu_s": off.cpu_s},
                "on": {"rows": on.rows, "secs": on.secs, "cpu_s": on.cpu_s},
                "extra_cpu_per_pipeline_pct": per_pipeline,
                "lag_p50_ms": lag50,
                "lag_max_ms": lag_max,
                "latest_p50_ms": latest50,
                "latest_p99_ms": latest99,
                "lastpoint_sql_p50_ms": lastpoint50,
            }),
        })
    }
}
