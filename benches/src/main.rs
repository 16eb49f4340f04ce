//! The benchmark suite of civiclake: one command, a reproducible report.
//!
//! `cargo build --release -p civiclake && cargo run --release -p civiclake-bench -- all`
//! generates a city with `civiclake-sim` (the generator of `civiclake simulate`), starts the
//! release binary on loopback ports with fresh data directories and runs every part of
//! [`parts::all`]: bulk ingest (HTTP line protocol, Arrow IPC) with CPU-seconds per
//! million rows, InfluxDB 1.x side by side, the query set of `benches/queries` hot and cold
//! next to DuckDB (native tables and the same Parquet files), storage per table and column
//! next to DuckDB and a pyarrow reference, the queries under ingest, freshness, and the peak
//! RSS. With `--write-results` the report goes to `benches/RESULTS.md` (newest run first)
//! and `benches/results/<date>-<commit>.json`.

mod client;
mod ctx;
mod dataset;
mod parts;
mod server;

use civiclake_sim::CityConfig;
use clap::Parser;
use ctx::{Ctx, Settings};
use parts::bytes;
use serde_json::json;
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

#[derive(Debug, Parser)]
#[command(
    about = "civiclake benchmark suite",
    after_help = "Parts (run in this order by `all`):\n  ingest-lp     bulk ingest, HTTP line protocol\n  ingest-arrow  bulk ingest, HTTP Arrow IPC\n  influx        the same line protocol into InfluxDB 1.x\n  queries       the query set hot and cold, next to DuckDB\n  storage       bytes per row and column after compaction\n  queries-live  the query set while rows stream in\n  freshness     write to visible in a query\n  mqtt          QoS 1 msg/s through the embedded MQTT broker, freshness\n  kafka         rows/s consumed from pre-filled Kafka topics\n  dashboards    serve --demo start-up, panels over 1.44M rows request to SVG\n  bus           bus deliveries/s and end-to-end latency, 10 webhook subscriptions\n  pipelines     pipelines' CPU and lag under ingest (10k devices), latest() over 10k sensors"
)]
struct Args {
    /// Parts to run: `all`, or part names (see below).
    #[arg(default_value = "all")]
    parts: Vec<String>,
    /// Sensors in the simulated city.
    #[arg(long, default_value_t = 4000)]
    sensors: u32,
    /// Days simulated (one reading a minute per sensor).
    #[arg(long, default_value_t = 2)]
    days: u32,
    /// Seed of the generator.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Lines (rows) per write request.
    #[arg(long, default_value_t = 10_000)]
    batch: usize,
    /// Concurrent client threads for bulk ingest.
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Timed runs per query.
    #[arg(long, default_value_t = 10)]
    repeat: usize,
    /// Parts the data is streamed in to build the query lake (a flush after each).
    #[arg(long, default_value_t = 12)]
    chunks: usize,
    /// A compaction after every this many parts while building the query lake.
    #[arg(long, default_value_t = 4)]
    compact_every: usize,
    /// Rows per second streamed in while queries (and freshness) are measured under ingest.
    #[arg(long, default_value_t = 100_000.0)]
    live_rate: f64,
    /// Freshness probes.
    #[arg(long, default_value_t = 200)]
    freshness_samples: usize,
    /// Path of the civiclake binary.
    #[arg(long, default_value = "target/release/civiclake")]
    civiclake: PathBuf,
    /// Python venv for DuckDB, pyarrow and deltalake (created and filled when missing).
    #[arg(long, default_value = "target/bench-venv")]
    venv: PathBuf,
    /// Skip the InfluxDB side-by-side run.
    #[arg(long)]
    no_influx: bool,
    /// Messages (one reading each) the MQTT part publishes.
    #[arg(long, default_value_t = 2_000_000)]
    mqtt_messages: usize,
    /// Readings the Kafka part produces before civiclake consumes them.
    #[arg(long, default_value_t = 5_000_000)]
    kafka_rows: usize,
    /// Readings per Kafka message (the producer's batching).
    #[arg(long, default_value_t = 1000)]
    kafka_lines: usize,
    /// Write the report to benches/RESULTS.md and benches/results/<date>-<commit>.json.
    #[arg(long)]
    write_results: bool,
}

fn main() {
    if let Err(e) = run(Args::parse()) {
        eprintln!("benchmark failed: {e}");
        std::process::exit(1);
    }
}

fn shell(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// CPU model, cores and memory of this machine.
fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown CPU".to_string(), |(_, m)| m.trim().to_string());
    let mem_kb: u64 = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    format!(
        "{cores} cores ({model}), {:.1} GiB of memory",
        mem_kb as f64 / 1024.0 / 1024.0
    )
}

fn run(args: Args) -> Result<(), String> {
    let all = parts::all();
    let selected: Vec<&dyn parts::Part> = if args.parts.iter().any(|p| p == "all") {
        all.iter().map(AsRef::as_ref).collect()
    } else {
        let mut out = Vec::new();
        for name in &args.parts {
            let part = all.iter().find(|p| p.name() == name).ok_or_else(|| {
                let names: Vec<&str> = all.iter().map(|p| p.name()).collect();
                format!("unknown part '{name}': use all or {}", names.join(", "))
            })?;
            out.push(part.as_ref());
        }
        out
    };
    if !args.civiclake.exists() {
        return Err(format!(
            "{} not found: build it first with cargo build --release -p civiclake",
            args.civiclake.display()
        ));
    }
    let config = CityConfig {
        seed: args.seed,
        sensors: args.sensors,
        days: args.days,
        ..CityConfig::default()
    };
    eprintln!(
        "generating the city: {} sensors, {} days...",
        args.sensors, args.days
    );
    let data = dataset::Dataset::generate(config, args.batch)?;
    let settings = Settings {
        civiclake: args.civiclake.clone(),
        batch: args.batch,
        clients: args.clients,
        repeat: args.repeat,
        chunks: args.chunks,
        compact_every: args.compact_every,
        live_rate: args.live_rate,
        freshness_samples: args.freshness_samples,
        mqtt_messages: args.mqtt_messages,
        kafka_rows: args.kafka_rows,
        kafka_lines: args.kafka_lines,
        venv: args.venv.clone(),
        no_influx: args.no_influx,
    };
    let mut ctx = Ctx::new(settings, data);
    let started = Instant::now();
    let mut sections = Vec::new();
    let mut json_parts = serde_json::Map::new();
    for part in selected {
        eprintln!("== {}: {}", part.name(), part.about());
        let t = Instant::now();
        let section = part.run(&mut ctx)?;
        eprintln!(
            "== {} done in {:.1} s",
            part.name(),
            t.elapsed().as_secs_f64()
        );
        println!("{}", section.markdown);
        sections.push(section.markdown);
        json_parts.insert(part.name().to_string(), section.json);
    }
    let rss: Vec<String> = ctx
        .peak_rss
        .iter()
        .map(|(part, b)| format!("{part} {}", bytes(*b)))
        .collect();
    let rss_line = format!(
        "### Peak memory\n\nPeak RSS of the civiclake server per part: {}.\n",
        if rss.is_empty() {
            "none measured".to_string()
        } else {
            rss.join(", ")
        }
    );
    println!("{rss_line}");
    sections.push(rss_line);

    let date = shell("date", &["-u", "+%Y-%m-%d %H:%M UTC"]);
    let commit = shell("git", &["rev-parse", "--short=12", "HEAD"]);
    let dirty = !shell("git", &["status", "--porcelain", "--untracked-files=no"]).is_empty();
    let commit = if dirty {
        format!("{commit} (with uncommitted changes)")
    } else {
        commit
    };
    let command = format!(
        "civiclake-bench {}",
        std::env::args().skip(1).collect::<Vec<_>>().join(" ")
    );
    let head = format!(
        "## Run of {date}\n\nCommit {commit}. Machine: {}. Command: `{command}` (release build). Data: {}. The whole run took {:.0} s.\n",
        machine(),
        ctx.data.describe(),
        started.elapsed().as_secs_f64()
    );
    if args.write_results {
        let dir = Ctx::benches_dir();
        let path = dir.join("RESULTS.md");
        let old = std::fs::read_to_string(&path).unwrap_or_default();
        let header = "# Benchmark results\n\nProduced by `cargo build --release -p civiclake -p civiclake-bench && target/release/civiclake-bench all --write-results` (see benches/README.md). Newest run first; absolute figures are noisy on shared 2-core machines, the ratios measured in one run are what to compare. Each run's figures are also in `benches/results/` as JSON.\n";
        let previous = old
            .split_once("\n## ")
            .map(|(_, rest)| format!("\n## {rest}"))
            .unwrap_or_default();
        let body = format!("{header}\n{head}\n{}{previous}", sections.join("\n"));
        std::fs::write(&path, body).map_err(|e| format!("{}: {e}", path.display()))?;
        let results = dir.join("results");
        std::fs::create_dir_all(&results).map_err(|e| e.to_string())?;
        let stamp = shell("date", &["-u", "+%Y%m%dT%H%M"]);
        let short = shell("git", &["rev-parse", "--short=12", "HEAD"]);
        let json_path = results.join(format!("{stamp}-{short}.json"));
        let doc = json!({
            "date": date,
            "commit": commit,
            "machine": machine(),
            "command": command,
            "data": {
                "seed": ctx.data.config.seed,
                "sensors": ctx.data.config.sensors,
                "days": ctx.data.config.days,
                "rows": ctx.data.rows,
                "rows_per_table": ctx.data.rows_per_table,
                "line_protocol_bytes": ctx.data.lp_bytes(),
            },
            "peak_rss_bytes": ctx.peak_rss,
            "parts": json_parts,
        });
        let text = serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?;
        std::fs::write(&json_path, text).map_err(|e| format!("{}: {e}", json_path.display()))?;
        eprintln!("wrote {} and {}", path.display(), json_path.display());
    } else {
        println!("{head}");
    }
    Ok(())
}
