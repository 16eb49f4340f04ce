//! What the parts share: the settings, the data, the lake the queries run on, the DuckDB
//! side (a Python venv) and the peak memory seen.

use crate::client;
use crate::dataset::Dataset;
use crate::server::{Civiclake, fresh_dir};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// The settings of a run.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// Path of the civiclake release binary.
    pub(crate) civiclake: PathBuf,
    /// Lines (or rows) per write request.
    pub(crate) batch: usize,
    /// Concurrent client threads for bulk ingest.
    pub(crate) clients: usize,
    /// Timed runs per query (hot).
    pub(crate) repeat: usize,
    /// Parts the data is streamed in to build the query lake (a flush after each).
    pub(crate) chunks: usize,
    /// A compaction after every this many chunks.
    pub(crate) compact_every: usize,
    /// Rows per second written while queries are measured under ingest.
    pub(crate) live_rate: f64,
    /// Freshness samples.
    pub(crate) freshness_samples: usize,
    /// Python venv with duckdb, pyarrow and deltalake (created when missing).
    pub(crate) venv: PathBuf,
    /// Skip the InfluxDB run.
    pub(crate) no_influx: bool,
    /// Messages (one reading each) published by the MQTT part.
    pub(crate) mqtt_messages: usize,
    /// Readings the Kafka part produces.
    pub(crate) kafka_rows: usize,
    /// Readings per Kafka message.
    pub(crate) kafka_lines: usize,
}

/// One query of `benches/queries`.
#[derive(Debug, Clone)]
pub(crate) struct Query {
    /// File name without `.sql`.
    pub(crate) name: String,
    /// SQL as civiclake runs it.
    pub(crate) sql: String,
}

/// The query lake: the data streamed in chunks, flushed and compacted as a day of streaming
/// leaves it.
pub(crate) struct Lake {
    /// The server holding it.
    pub(crate) server: Civiclake,
    /// How it was built, for the report.
    pub(crate) description: String,
    /// Figures of the build.
    pub(crate) json: Value,
}

/// State shared by the parts of one run.
pub(crate) struct Ctx {
    /// Settings.
    pub(crate) settings: Settings,
    /// The data.
    pub(crate) data: Dataset,
    lake: Option<Lake>,
    python: Option<PathBuf>,
    /// Peak RSS of the civiclake server per part, in bytes.
    pub(crate) peak_rss: BTreeMap<String, u64>,
    /// civiclake's hot idle p50 per query (ms), for later parts to compare with.
    pub(crate) idle_p50_ms: BTreeMap<String, f64>,
}

impl Ctx {
    /// A context over generated data.
    pub(crate) fn new(settings: Settings, data: Dataset) -> Self {
        Self {
            settings,
            data,
            lake: None,
            python: None,
            peak_rss: BTreeMap::new(),
            idle_p50_ms: BTreeMap::new(),
        }
    }

    /// The benches directory (queries, the DuckDB script, RESULTS.md).
    pub(crate) fn benches_dir() -> &'static Path {
        Path::new(env!("CARGO_MANIFEST_DIR"))
    }

    /// The query set, sorted by name.
    pub(crate) fn queries() -> Result<Vec<Query>, String> {
        let dir = Self::benches_dir().join("queries");
        let mut out = Vec::new();
        let entries = std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for e in entries.flatten() {
            let path = e.path();
            if path.extension().and_then(|x| x.to_str()) != Some("sql") {
                continue;
            }
            let name = path
                .file_stem()
                .and_then(|s| s.to_str())
                .ok_or_else(|| format!("{}: not a UTF-8 name", path.display()))?
                .to_string();
            let text =
                std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            let sql = text.trim().trim_end_matches(';').trim().to_string();
            out.push(Query { name, sql });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        if out.is_empty() {
            return Err(format!("no .sql files in {}", dir.display()));
        }
        Ok(out)
    }

    /// Records a server's peak RSS under a part's name.
    pub(crate) fn record_rss(&mut self, part: &str, server: &Civiclake) {
        let rss = server.peak_rss();
        let e = self.peak_rss.entry(part.to_string()).or_insert(0);
        *e = (*e).max(rss);
    }

    /// The query lake, built on first use: the data is sent in `chunks` parts in arrival
    /// order, each followed by a flush (a Delta commit of new files), with a compaction
    /// after every `compact_every` parts — the files a day of streaming leaves, not one bulk
    /// file.
    pub(crate) fn lake(&mut self) -> Result<&mut Lake, String> {
        if self.lake.is_none() {
            let dir = fresh_dir("lake")?;
            let server = Civiclake::start(&self.settings.civiclake, &dir)?;
            let chunks = self.settings.chunks.max(1);
            let per_chunk = self.data.lp.len().div_ceil(chunks);
            eprintln!(
                "building the query lake: {} rows in {chunks} parts, a flush after each, a compaction every {}",
                self.data.rows, self.settings.compact_every
            );
            let started = Instant::now();
            let (mut flushes, mut compactions) = (0, 0);
            let parts: Vec<&[client::Request]> = self.data.lp.chunks(per_chunk.max(1)).collect();
            let last = parts.len();
            for (i, part) in parts.into_iter().enumerate() {
                client::post_all(&server.url, part, self.settings.clients, None)?;
                server.flush()?;
                flushes += 1;
                // No compaction after the last part: the newest files stay small, as they
                // are between two compactions of a streaming day.
                if self.settings.compact_every > 0
                    && (i + 1) % self.settings.compact_every == 0
                    && i + 1 < last
                {
                    server.compact()?;
                    compactions += 1;
                }
            }
            let secs = started.elapsed().as_secs_f64();
            let tables = server.tables()?;
            let files: u64 = tables.iter().filter_map(|t| t["files"].as_u64()).sum();
            let rows: u64 = tables
                .iter()
                .filter(|t| !t["name"].as_str().unwrap_or("_").starts_with('_'))
                .filter_map(|t| t["rows"].as_u64())
                .sum();
            if rows != self.data.rows {
                return Err(format!(
                    "the query lake holds {rows} rows, {} were sent",
                    self.data.rows
                ));
            }
            let description = format!(
                "{} rows sent in {flushes} parts with a flush after each and {compactions} compactions in between ({secs:.1} s); the lake then held {files} Parquet files",
                self.data.rows
            );
            self.lake = Some(Lake {
                server,
                description,
                json: serde_json::json!({"flushes": flushes, "compactions": compactions, "files": files, "seconds": secs}),
            });
        }
        self.lake.as_mut().ok_or_else(|| "no lake".to_string())
    }

    /// The `--source TABLE=delta:DIR` arguments naming the lake's tables for the DuckDB
    /// script.
    pub(crate) fn lake_sources(&mut self) -> Result<Vec<String>, String> {
        let tables: Vec<&'static str> = self.data.rows_per_table.keys().copied().collect();
        let lake = self.lake()?;
        Ok(tables
            .iter()
            .map(|t| {
                format!(
                    "{t}=delta:{}",
                    lake.server.data.join("tables").join(t).display()
                )
            })
            .collect())
    }

    /// Requests of the next day's readings for the writes that run under the measurements:
    /// about ten requests a second at `live_rate`, so the rate is kept smoothly.
    pub(crate) fn live_requests(&self) -> Result<Vec<client::Request>, String> {
        let batch =
            ((self.settings.live_rate / 10.0).ceil() as usize).clamp(100, self.settings.batch);
        Ok(self.data.next_day(batch)?.lp)
    }

    /// The Python of the venv with duckdb, pyarrow and deltalake (created and installed on
    /// first use).
    pub(crate) fn python(&mut self) -> Result<PathBuf, String> {
        if let Some(p) = &self.python {
            return Ok(p.clone());
        }
        let venv = &self.settings.venv;
        let python = venv.join("bin/python");
        if !python.exists() {
            eprintln!("creating the Python venv {}", venv.display());
            run(Command::new("python3").arg("-m").arg("venv").arg(venv))?;
        }
        let check = Command::new(&python)
            .args(["-c", "import duckdb, pyarrow, deltalake"])
            .output()
            .map_err(|e| e.to_string())?;
        if !check.status.success() {
            eprintln!(
                "installing duckdb, pyarrow and deltalake into {}",
                venv.display()
            );
            run(Command::new(&python).args([
                "-m",
                "pip",
                "install",
                "-q",
                "duckdb",
                "pyarrow",
                "deltalake",
            ]))?;
        }
        self.python = Some(python.clone());
        Ok(python)
    }

    /// Runs `benches/duckdb_side.py` with `args` and parses the JSON it writes.
    pub(crate) fn duckdb_side(&mut self, command: &str, args: &[String]) -> Result<Value, String> {
        let python = self.python()?;
        let work = fresh_dir(&format!("duckdb-{command}"))?;
        let out = work.join("out.json");
        let mut cmd = Command::new(python);
        // The script's progress goes to stderr with the harness's: stdout is the report.
        cmd.stdout(std::io::stderr());
        cmd.arg(Self::benches_dir().join("duckdb_side.py"))
            .arg(command)
            .args(args)
            .arg("--workdir")
            .arg(&work)
            .arg("--json")
            .arg(&out);
        run(&mut cmd)?;
        let text = std::fs::read_to_string(&out).map_err(|e| format!("{}: {e}", out.display()))?;
        let value = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", out.display()));
        let _ = std::fs::remove_dir_all(&work);
        value
    }
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let status = cmd.status().map_err(|e| format!("{cmd:?}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{cmd:?} failed: {status}"))
    }
}
