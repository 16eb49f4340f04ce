//! End-to-end benchmark harness of civiclake.
//!
//! Starts the release binary (and, when installed, InfluxDB 1.x from Debian's `influxdb`
//! package) on loopback ports with fresh data directories, and measures with the same
//! client and the same data:
//!
//! * bulk ingest over HTTP line protocol (10k lines per request, 4 concurrent clients,
//!   durability on: civiclake fsyncs its WAL before answering, InfluxDB its WAL) in rows/s;
//! * `SELECT sensor, count(*), avg(pm25) FROM air GROUP BY sensor` over all rows, once the
//!   rows are in Delta Lake and compacted;
//! * bytes per row on disk after compaction (sensor tag, district tag, two floats, time).
//!
//! Usage: `cargo build --release -p civiclake && cargo run --release -p civiclake-bench -- --rows 10000000`
//! The report is printed and, with `--write-results`, written to `benches/RESULTS.md`.

mod client;
mod data;
mod influx;

use clap::Parser;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, Parser)]
#[command(about = "civiclake end-to-end benchmarks")]
struct Args {
    /// Rows to ingest (4000 sensors, one reading per minute each).
    #[arg(long, default_value_t = 10_000_000)]
    rows: usize,
    /// Lines per HTTP request.
    #[arg(long, default_value_t = 10_000)]
    batch: usize,
    /// Concurrent client threads.
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Sensors in the generated city.
    #[arg(long, default_value_t = 4000)]
    sensors: usize,
    /// Path of the civiclake binary.
    #[arg(long, default_value = "target/release/civiclake")]
    civiclake: PathBuf,
    /// Skip the InfluxDB side-by-side run.
    #[arg(long)]
    no_influx: bool,
    /// Times each query is run (the best and the median are reported).
    #[arg(long, default_value_t = 5)]
    repeat: usize,
    /// How readings are valued: `full` (full-precision random walk, as the shared anchors) or
    /// `sensor` (0.1 resolution, as real sensors report).
    #[arg(long, value_enum, default_value_t = data::Values::Full)]
    values: data::Values,
    /// Write the report to benches/RESULTS.md.
    #[arg(long)]
    write_results: bool,
}

struct Civiclake {
    child: Child,
    url: String,
}

impl Civiclake {
    fn start(bin: &Path, data: &Path) -> Result<Self, String> {
        let mut child = Command::new(bin)
            .args([
                "serve",
                "--insecure-no-auth",
                "--http-addr",
                "127.0.0.1:0",
                "--data-dir",
            ])
            .arg(data)
            .env("CIVICLAKE_LOG__FILTER", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| {
                format!(
                    "cannot start {}: {e} (build it with cargo build --release -p civiclake)",
                    bin.display()
                )
            })?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let url = loop {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(url) = line.strip_prefix("civiclake listening on ") {
                        break url.trim().to_string();
                    }
                }
                _ => return Err("civiclake exited before listening".into()),
            }
        };
        std::thread::spawn(move || for _ in lines {});
        Ok(Self { child, url })
    }

    fn post_json(&self, path: &str, body: &Value) -> Result<Value, String> {
        let r = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(1800))
            .build()
            .map_err(|e| e.to_string())?
            .post(format!("{}{path}", self.url))
            .json(body)
            .send()
            .map_err(|e| e.to_string())?;
        let status = r.status();
        let text = r.text().map_err(|e| e.to_string())?;
        if !status.is_success() {
            return Err(format!("{path}: {status}: {text}"));
        }
        serde_json::from_str(&text).map_err(|e| format!("{path}: {e}: {text}"))
    }

    fn get_json(&self, path: &str) -> Result<Value, String> {
        reqwest::blocking::get(format!("{}{path}", self.url))
            .and_then(|r| r.json())
            .map_err(|e| e.to_string())
    }
}

impl Drop for Civiclake {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn dir_size(p: &Path) -> u64 {
    let mut total = 0;
    if let Ok(entries) = std::fs::read_dir(p) {
        for e in entries.flatten() {
            let path = e.path();
            total += if path.is_dir() {
                dir_size(&path)
            } else {
                e.metadata().map(|m| m.len()).unwrap_or(0)
            };
        }
    }
    total
}

fn timed_queries(
    server: &Civiclake,
    sql: &str,
    repeat: usize,
) -> Result<(f64, f64, Value), String> {
    let mut times = Vec::new();
    let mut last = Value::Null;
    for _ in 0..repeat.max(1) {
        let t = Instant::now();
        last = server.post_json("/api/v1/query", &serde_json::json!({"sql": sql}))?;
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    Ok((times[0], times[times.len() / 2], last))
}

fn main() {
    if let Err(e) = run(Args::parse()) {
        eprintln!("benchmark failed: {e}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> Result<(), String> {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    eprintln!(
        "generating {} rows of line protocol ({} sensors)...",
        args.rows, args.sensors
    );
    let bodies = data::line_protocol_bodies(args.rows, args.batch, args.sensors, args.values);
    let raw_bytes: usize = bodies.iter().map(Vec::len).sum();
    let rows = bodies.len() * args.batch;
    let mut report = Vec::new();
    report.push(format!(
        "Machine: {cores} cores. Data: {rows} rows = {} sensors, one reading a minute, table `air` (sensor tag, district tag, pm25 and battery floats, time), values `{:?}`; {:.1} MB of line protocol, {} lines per request, {} client threads.",
        args.sensors,
        args.values,
        raw_bytes as f64 / 1e6,
        args.batch,
        args.clients
    ));

    // civiclake
    let data_dir = tempfile_dir("civiclake-bench")?;
    let server = Civiclake::start(&args.civiclake, &data_dir)?;
    eprintln!("civiclake at {}: ingesting...", server.url);
    let ingest = client::post_all(
        &server.url,
        "/api/v1/write?table=air",
        &bodies,
        args.clients,
    )?;
    let cl_rate = rows as f64 / ingest.as_secs_f64();
    eprintln!("civiclake ingest: {cl_rate:.0} rows/s");
    let sql = "SELECT sensor, count(*) AS n, avg(pm25) AS v FROM air GROUP BY sensor";
    let (mixed_best, mixed_median, _) = timed_queries(&server, sql, args.repeat)?;
    let t = Instant::now();
    server.post_json("/api/v1/admin/flush", &Value::Null)?;
    let flush_secs = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let compacted = server.post_json("/api/v1/admin/compact", &Value::Null)?;
    let compact_secs = t.elapsed().as_secs_f64();
    let (best, median, result) = timed_queries(&server, sql, args.repeat)?;
    let groups = result.as_array().map_or(0, Vec::len);
    let counted: u64 = result
        .as_array()
        .map(|a| a.iter().filter_map(|r| r["n"].as_u64()).sum())
        .unwrap_or(0);
    if counted != rows as u64 {
        return Err(format!(
            "the group-by counted {counted} rows, expected {rows}"
        ));
    }
    let tables = server.get_json("/api/v1/tables")?;
    let file_bytes = tables[0]["file_bytes"].as_u64().unwrap_or(0);
    let files = tables[0]["files"].as_u64().unwrap_or(0);
    let table_dir_bytes = dir_size(&data_dir.join("tables/air"));
    let bytes_per_row = file_bytes as f64 / rows as f64;
    drop(server);
    let _ = std::fs::remove_dir_all(&data_dir);

    report.push(String::new());
    report.push(
        "| measure | civiclake | InfluxDB 1.x (same client, same data, same run) | target |".into(),
    );
    report.push("|---|---|---|---|".into());

    let influx = if args.no_influx {
        None
    } else {
        match influx::Influx::start() {
            Ok(Some(influx)) => {
                eprintln!("influxd at {}: ingesting...", influx.url);
                let d = client::post_all(&influx.url, "/write?db=bench", &bodies, args.clients)?;
                let version = influx.version.clone();
                let disk = influx.data_bytes();
                Some((rows as f64 / d.as_secs_f64(), version, disk))
            }
            Ok(None) => {
                eprintln!(
                    "influxd not installed (apt-get install influxdb): skipping the side-by-side run"
                );
                None
            }
            Err(e) => return Err(e),
        }
    };
    let influx_rate = influx
        .as_ref()
        .map_or("not run (influxd missing)".to_string(), |(r, v, _)| {
            format!("{r:.0} rows/s ({v})")
        });
    report.push(format!(
        "| ingest, HTTP line protocol, durable | **{cl_rate:.0} rows/s** ({:.1} s) | {influx_rate} | ≥ InfluxDB |",
        ingest.as_secs_f64()
    ));
    report.push(format!(
        "| `{sql}` ({rows} rows, {groups} groups), Delta after compaction | **{:.0} ms** best, {:.0} ms median of {} | | < 1 s |",
        best * 1000.0,
        median * 1000.0,
        args.repeat
    ));
    report.push(format!(
        "| same query right after ingest (buffer + Delta) | {:.0} ms best, {:.0} ms median | | |",
        mixed_best * 1000.0,
        mixed_median * 1000.0
    ));
    let influx_disk = influx.as_ref().map_or(String::new(), |(_, _, d)| {
        format!(
            "{:.2} B/row (data + wal dirs after ingest)",
            *d as f64 / rows as f64
        )
    });
    report.push(format!(
        "| bytes per row on disk after compaction (Parquet zstd, {files} files) | **{bytes_per_row:.2} B/row** ({:.2} for the whole table directory: Delta log and replaced files awaiting vacuum) | {influx_disk} | ≤ 6 B/row |",
        table_dir_bytes as f64 / rows as f64
    ));
    report.push(format!(
        "| flush of the buffer to Delta / forced compaction | {flush_secs:.1} s / {compact_secs:.1} s ({} files merged) | | |",
        compacted["files_removed"]
    ));
    let text = report.join("\n");
    println!("{text}");
    if args.write_results {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("RESULTS.md");
        let old = std::fs::read_to_string(&path).unwrap_or_default();
        let header = "# Benchmark results\n\nProduced by `cargo build --release -p civiclake -p civiclake-bench && target/release/civiclake-bench --write-results [--values full|sensor]` (defaults: 10M rows, 4,000 sensors, 10k lines per request, 4 clients, full-precision values).\nNewest run first; absolute figures are noisy on shared 2-core machines, the ratios measured in one run are what to compare.\n";
        let previous = old
            .split_once("\n## ")
            .map(|(_, rest)| format!("\n## {rest}"))
            .unwrap_or_default();
        let date = Command::new("date")
            .arg("-u")
            .arg("+%Y-%m-%d %H:%M UTC")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default();
        let body = format!("{header}\n## Run of {date}\n\n{text}\n{previous}");
        std::fs::write(&path, body).map_err(|e| e.to_string())?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

fn tempfile_dir(prefix: &str) -> Result<PathBuf, String> {
    let base = std::env::temp_dir().join(format!("{prefix}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).map_err(|e| e.to_string())?;
    Ok(base)
}
