//! Starting and stopping the real binary for a test.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Path of the binary under test.
pub(crate) fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_civiclake"))
}

/// A running `civiclake serve`.
pub(crate) struct TestServer {
    pub(crate) child: Child,
    pub(crate) url: String,
    /// `host:port` of the embedded MQTT broker.
    pub(crate) mqtt: String,
    /// `host:port` of the PostgreSQL endpoint, when on (`--pg-addr`).
    pub(crate) pg: Option<String>,
    /// `host:port` of the Flight SQL endpoint, when on (`--flight-addr`).
    pub(crate) flight: Option<String>,
    pub(crate) data_dir: PathBuf,
    env: Vec<(String, String)>,
    secure: bool,
}

impl TestServer {
    /// Starts a server on a free loopback port over `data_dir`, with extra environment, with
    /// authentication off (`--insecure-no-auth`): tests of other features act as admin.
    pub(crate) fn start(data_dir: &Path, env: &[(&str, &str)]) -> Self {
        Self::start_with(data_dir, env, false)
    }

    /// Starts a server that requires tokens.
    pub(crate) fn start_secure(data_dir: &Path, env: &[(&str, &str)]) -> Self {
        Self::start_with(data_dir, env, true)
    }

    fn start_with(data_dir: &Path, env: &[(&str, &str)], secure: bool) -> Self {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut cmd = Command::new(binary());
        cmd.args([
            "serve",
            "--http-addr",
            "127.0.0.1:0",
            "--mqtt-addr",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(data_dir)
        .arg("--ingest-routes-dir")
        .arg(data_dir.join("routes"))
        .args(if secure {
            &[][..]
        } else {
            &["--insecure-no-auth"][..]
        })
        .env("CIVICLAKE_LOG__FILTER", "warn")
        // No `_metrics` samples (a table whose rows grow by themselves) unless a test asks.
        .env("CIVICLAKE_METRICS__SAMPLE_INTERVAL", "0s")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
        for (k, v) in &env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start civiclake serve");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let (mut mqtt, mut pg, mut flight) = (String::new(), None, None);
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("civiclake MQTT broker on mqtt://") {
                    mqtt = addr.trim().to_string();
                }
                if let Some(addr) =
                    line.strip_prefix("civiclake PostgreSQL protocol on postgres://")
                {
                    pg = addr.trim().strip_suffix("/civiclake").map(str::to_string);
                }
                if let Some(addr) = line.strip_prefix("civiclake Flight SQL on grpc://") {
                    flight = Some(addr.trim().to_string());
                }
                if let Some(url) = line.strip_prefix("civiclake listening on ") {
                    let _ = tx.send((
                        url.trim().to_string(),
                        mqtt.clone(),
                        pg.clone(),
                        flight.clone(),
                    ));
                }
            }
        });
        let (url, mqtt, pg, flight) = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the server did not print its address within 60 s");
        Self {
            child,
            url,
            mqtt,
            pg,
            flight,
            data_dir: data_dir.to_path_buf(),
            env,
            secure,
        }
    }

    /// Starts another server over the same data directory with the same settings.
    pub(crate) fn restart(&self) -> Self {
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        TestServer::start_with(&self.data_dir, &env, self.secure)
    }

    /// Kills the process at once (SIGKILL), as a power cut or an OOM kill would.
    pub(crate) fn kill9(&mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("wait");
    }

    /// Asks for a graceful stop (SIGTERM) and waits for the exit status.
    pub(crate) fn terminate(&mut self) -> std::process::ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill -TERM");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the server did not stop within 60 s of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub(crate) fn client() -> reqwest::blocking::Client {
        reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .expect("client")
    }

    /// Writes line protocol to `table` and asserts a 204.
    pub(crate) fn write_lp(&self, table: &str, body: &str) {
        let r = Self::client()
            .post(format!("{}/api/v1/write?table={table}", self.url))
            .header("content-type", "text/plain")
            .body(body.to_string())
            .send()
            .expect("write");
        let status = r.status();
        assert_eq!(
            status,
            204,
            "write failed: {}",
            r.text().unwrap_or_default()
        );
    }

    /// Runs SQL and returns the JSON rows.
    pub(crate) fn query(&self, sql: &str) -> Vec<serde_json::Value> {
        let r = Self::client()
            .post(format!("{}/api/v1/query", self.url))
            .json(&serde_json::json!({"sql": sql}))
            .send()
            .expect("query");
        let status = r.status();
        let text = r.text().expect("body");
        assert_eq!(status, 200, "query {sql} failed: {text}");
        serde_json::from_str::<Vec<serde_json::Value>>(&text).expect("JSON array")
    }

    /// Runs SQL returning one number.
    pub(crate) fn scalar(&self, sql: &str) -> f64 {
        let rows = self.query(sql);
        let row = rows.first().and_then(|r| r.as_object()).expect("one row");
        row.values()
            .next()
            .and_then(|v| v.as_f64())
            .expect("a number")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `cond` holds, or fails after `timeout`.
pub(crate) fn wait_until(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The council's settings stored at its first start: the fee policy and the signature
/// rules (events of `council_events`).
pub(crate) const COUNCIL_SETTINGS: usize = 2;

/// What every server's modules add to a fresh lake as they start: the kiosk fleet's and
/// the council's tables, and the rows they write then: the kiosk's service catalog (events
/// in `kiosk_events`), the council's settings (in `council_events`, with the fee policy's
/// row in `council_fee_policy`), and both modules' bus schemas (in `bus_catalog_events`).
pub(crate) fn modules_at_start() -> (usize, usize) {
    (
        civiclake_kiosk::fleet::tables::tables().len() + civiclake_council::tables::tables().len(),
        civiclake_kiosk::fleet::registry::default_catalog().len()
            + civiclake_kiosk::fleet::bus_schemas().len()
            + civiclake_council::service::bus_schemas().len()
            + COUNCIL_SETTINGS
            + 1,
    )
}

/// The bus schemas the modules register as they start.
pub(crate) fn module_bus_schemas() -> Vec<String> {
    civiclake_kiosk::fleet::bus_schemas()
        .into_iter()
        .chain(civiclake_council::service::bus_schemas())
        .map(|(name, _)| name.to_string())
        .collect()
}
