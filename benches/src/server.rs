//! The civiclake server under test: a child process of the release binary on a loopback
//! port with its own data directory, plus what the harness reads of it (CPU time, peak
//! RSS) and the HTTP calls it makes.

use arrow::ipc::reader::StreamReader;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `civiclake serve`.
pub(crate) struct Civiclake {
    bin: PathBuf,
    config: Option<PathBuf>,
    extra_args: Vec<String>,
    child: Child,
    /// Its data directory.
    pub(crate) data: PathBuf,
    /// Base URL, e.g. `http://127.0.0.1:40123`.
    pub(crate) url: String,
    /// `host:port` of the embedded MQTT broker.
    pub(crate) mqtt: Option<String>,
    http: reqwest::blocking::Client,
    /// Highest peak RSS seen over restarts, in bytes.
    peak_rss: u64,
}

impl Civiclake {
    /// Starts the binary on a fresh (or existing) data directory.
    pub(crate) fn start(bin: &Path, data: &Path) -> Result<Self, String> {
        Self::start_inner(bin, data, None, &[])
    }

    /// Starts the binary with more `serve` arguments (e.g. `--demo`).
    pub(crate) fn start_with_args(
        bin: &Path,
        data: &Path,
        args: &[String],
    ) -> Result<Self, String> {
        Self::start_inner(bin, data, None, args)
    }

    /// Starts the binary with a configuration file (`--config`).
    pub(crate) fn start_with_config(
        bin: &Path,
        data: &Path,
        config: &Path,
    ) -> Result<Self, String> {
        Self::start_inner(bin, data, Some(config), &[])
    }

    fn start_inner(
        bin: &Path,
        data: &Path,
        config: Option<&Path>,
        extra_args: &[String],
    ) -> Result<Self, String> {
        let (child, url, mqtt) = spawn(bin, data, config, extra_args)?;
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(3600))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self {
            bin: bin.to_path_buf(),
            config: config.map(Path::to_path_buf),
            extra_args: extra_args.to_vec(),
            child,
            data: data.to_path_buf(),
            url,
            mqtt,
            http,
            peak_rss: 0,
        })
    }

    /// Stops the server gracefully (SIGTERM: it flushes) and starts it again on the same
    /// data: nothing of the previous process stays in memory.
    pub(crate) fn restart(&mut self) -> Result<(), String> {
        self.peak_rss = self.peak_rss.max(self.peak_rss_now());
        self.stop();
        let (child, url, mqtt) = spawn(
            &self.bin,
            &self.data,
            self.config.as_deref(),
            &self.extra_args,
        )?;
        self.child = child;
        self.url = url;
        self.mqtt = mqtt;
        Ok(())
    }

    fn stop(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// CPU seconds (user + system) the process has used so far.
    pub(crate) fn cpu_seconds(&self) -> f64 {
        cpu_seconds(self.child.id())
    }

    fn peak_rss_now(&self) -> u64 {
        peak_rss(self.child.id())
    }

    /// Peak resident set size of the server so far (over restarts), in bytes.
    pub(crate) fn peak_rss(&self) -> u64 {
        self.peak_rss.max(self.peak_rss_now())
    }

    /// POSTs JSON and parses the JSON answer; a non-2xx answer is an error with its body.
    pub(crate) fn post_json(&self, path: &str, body: &Value) -> Result<Value, String> {
        json_answer(
            path,
            self.http
                .post(format!("{}{path}", self.url))
                .json(body)
                .send(),
        )
    }

    /// The value of a counter or gauge of `GET /metrics` (without labels).
    pub(crate) fn metric(&self, name: &str) -> Result<f64, String> {
        let text = self
            .http
            .get(format!("{}/metrics", self.url))
            .send()
            .and_then(|r| r.text())
            .map_err(|e| format!("metrics: {e}"))?;
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
            .ok_or_else(|| format!("metric {name} not in /metrics"))
    }

    /// GETs JSON.
    pub(crate) fn get_json(&self, path: &str) -> Result<Value, String> {
        json_answer(path, self.http.get(format!("{}{path}", self.url)).send())
    }

    /// Runs a query, fetching the result as an Arrow IPC stream (the cheapest encoding, so
    /// the engine is what is timed); returns the rows.
    pub(crate) fn query_rows(&self, sql: &str) -> Result<usize, String> {
        let r = self
            .http
            .post(format!("{}/api/v1/query", self.url))
            .json(&serde_json::json!({"sql": sql, "format": "arrow"}))
            .send()
            .map_err(|e| format!("query: {e}"))?;
        let status = r.status();
        let bytes = r.bytes().map_err(|e| e.to_string())?;
        if !status.is_success() {
            return Err(format!(
                "query answered {status}: {}",
                String::from_utf8_lossy(&bytes)
            ));
        }
        let reader = StreamReader::try_new(std::io::Cursor::new(bytes), None)
            .map_err(|e| format!("query result: {e}"))?;
        let mut rows = 0;
        for batch in reader {
            rows += batch.map_err(|e| format!("query result: {e}"))?.num_rows();
        }
        Ok(rows)
    }

    /// The rows of `table` that SQL sees now (`count(*)`, so nothing but the count crosses
    /// the wire).
    pub(crate) fn count_rows(&self, table: &str) -> Result<u64, String> {
        let r = self
            .http
            .post(format!("{}/api/v1/query", self.url))
            .json(&serde_json::json!({"sql": format!("SELECT count(*) AS n FROM {table}"), "format": "json"}))
            .send()
            .map_err(|e| format!("count: {e}"))?;
        let status = r.status();
        let body: Value = r.json().map_err(|e| format!("count: {e}"))?;
        if !status.is_success() {
            return Err(format!("count answered {status}: {body}"));
        }
        body.pointer("/0/n")
            .and_then(Value::as_u64)
            .ok_or_else(|| format!("count: unexpected answer {body}"))
    }

    /// Flushes every buffered row to Delta Lake.
    pub(crate) fn flush(&self) -> Result<(), String> {
        self.post_json("/api/v1/admin/flush", &Value::Null)
            .map(drop)
    }

    /// Compacts the small files; returns the server's answer.
    pub(crate) fn compact(&self) -> Result<Value, String> {
        self.post_json("/api/v1/admin/compact", &Value::Null)
    }

    /// `/api/v1/tables`: per table rows, files and bytes.
    pub(crate) fn tables(&self) -> Result<Vec<Value>, String> {
        match self.get_json("/api/v1/tables")? {
            Value::Array(a) => Ok(a),
            other => Err(format!("/api/v1/tables: not a list: {other}")),
        }
    }
}

impl Drop for Civiclake {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The JSON of a 2xx answer; any other answer is an error with its body.
fn json_answer(
    path: &str,
    sent: reqwest::Result<reqwest::blocking::Response>,
) -> Result<Value, String> {
    let r = sent.map_err(|e| format!("{path}: {e}"))?;
    let status = r.status();
    let text = r.text().map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!("{path}: {status}: {text}"));
    }
    serde_json::from_str(&text).map_err(|e| format!("{path}: {e}: {text}"))
}

fn spawn(
    bin: &Path,
    data: &Path,
    config: Option<&Path>,
    extra_args: &[String],
) -> Result<(Child, String, Option<String>), String> {
    let mut command = Command::new(bin);
    if let Some(config) = config {
        command.env("CIVICLAKE_CONFIG", config);
    }
    let mut child = command
        .args([
            "serve",
            "--insecure-no-auth",
            "--http-addr",
            "127.0.0.1:0",
            "--mqtt-addr",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(data)
        .args(extra_args)
        // No pipelines or alert rules unless a part asks (`--pipelines-dir`): the shipped ones
        // in ./pipelines would run over the benchmark's tables.
        .env("CIVICLAKE_PIPELINES__DIR", data.join("no-pipelines"))
        // The server's own log filter: warnings only, unless CIVICLAKE_BENCH_SERVER_LOG says
        // otherwise (e.g. `info,civiclake_server::kafka=debug` to look into a part).
        .env(
            "CIVICLAKE_LOG__FILTER",
            std::env::var("CIVICLAKE_BENCH_SERVER_LOG").unwrap_or_else(|_| "warn".into()),
        )
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
    let mut mqtt = None;
    let url = loop {
        match lines.next() {
            Some(Ok(line)) => {
                if let Some(addr) = line.strip_prefix("civiclake MQTT broker on mqtt://") {
                    mqtt = Some(addr.trim().to_string());
                }
                if let Some(url) = line.strip_prefix("civiclake listening on ") {
                    break url.trim().to_string();
                }
            }
            _ => return Err("civiclake exited before listening".into()),
        }
    };
    std::thread::spawn(move || for _ in lines {});
    Ok((child, url, mqtt))
}

/// Clock ticks per second of `/proc/<pid>/stat` times.
fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// User + system CPU seconds of a process (0 when it cannot be read).
pub(crate) fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // The command name may hold spaces: fields are counted after its closing parenthesis.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after the name.
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i).and_then(|v| v.parse::<f64>().ok()))
        .sum();
    ticks / clock_ticks()
}

/// Peak resident set size (VmHWM) of a process in bytes (0 when it cannot be read).
pub(crate) fn peak_rss(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Bytes of every file under `p`.
pub(crate) fn dir_size(p: &Path) -> u64 {
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

/// A fresh, empty directory under the system's temporary directory.
pub(crate) fn fresh_dir(name: &str) -> Result<PathBuf, String> {
    let base = std::env::temp_dir().join(format!("civiclake-bench-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).map_err(|e| format!("{}: {e}", base.display()))?;
    Ok(base)
}
