//! InfluxDB 1.x (Debian's `influxdb` package) on loopback with its data in a temporary
//! directory: the same line-protocol requests as `ingest-lp`, sent by the same client.

use super::{Part, Section, bytes};
use crate::client;
use crate::ctx::Ctx;
use serde_json::json;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `influx`: bulk ingest into InfluxDB 1.x, side by side.
pub(crate) struct InfluxIngest;

impl Part for InfluxIngest {
    fn name(&self) -> &'static str {
        "influx"
    }
    fn about(&self) -> &'static str {
        "bulk ingest of the same line protocol into InfluxDB 1.x (Debian influxdb), same client"
    }
    fn run(&self, ctx: &mut Ctx) -> Result<Section, String> {
        if ctx.settings.no_influx {
            return Ok(Section {
                markdown: "### InfluxDB 1.x side by side\n\nNot run (--no-influx).\n".into(),
                json: json!({"skipped": "--no-influx"}),
            });
        }
        let Some(influx) = Influx::start()? else {
            return Ok(Section {
                markdown: "### InfluxDB 1.x side by side\n\nNot run: `influxd` is not installed (`apt-get install influxdb`).\n".into(),
                json: json!({"skipped": "influxd not installed"}),
            });
        };
        eprintln!("[influx] influxd at {}: ingesting...", influx.url);
        let cpu_before = crate::server::cpu_seconds(influx.child.id());
        let wall = client::post_all(
            &influx.url,
            &ctx.data.lp,
            ctx.settings.clients,
            Some("/write?db=bench"),
        )?;
        let cpu = crate::server::cpu_seconds(influx.child.id()) - cpu_before;
        let rows = ctx.data.rows;
        let rate = rows as f64 / wall.as_secs_f64();
        let cpu_per_m = cpu / (rows as f64 / 1e6);
        let disk = influx.data_bytes();
        let rss = crate::server::peak_rss(influx.child.id());
        let markdown = format!(
            "### InfluxDB 1.x side by side\n\nThe same {rows} rows of line protocol, same requests, same client threads; {} (WAL fsync on every write: `wal-fsync-delay = 0s`).\n\n| rows/s | wall time | CPU-s per million rows | on disk after ingest (data + WAL) | peak RSS |\n|---|---|---|---|---|\n| {rate:.0} | {:.2} s | {cpu_per_m:.2} | {} ({:.2} B/row) | {} |\n",
            influx.version,
            wall.as_secs_f64(),
            bytes(disk),
            disk as f64 / rows as f64,
            bytes(rss),
        );
        Ok(Section {
            markdown,
            json: json!({
                "version": influx.version,
                "rows": rows,
                "seconds": wall.as_secs_f64(),
                "rows_per_s": rate,
                "cpu_seconds_per_million_rows": cpu_per_m,
                "disk_bytes": disk,
                "peak_rss_bytes": rss,
            }),
        })
    }
}

struct Influx {
    child: Child,
    dir: PathBuf,
    url: String,
    version: String,
}

fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}

impl Influx {
    /// Starts influxd, or returns None when it is not installed.
    fn start() -> Result<Option<Self>, String> {
        let Ok(out) = Command::new("influxd").arg("version").output() else {
            return Ok(None);
        };
        let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let dir = std::env::temp_dir().join(format!("influx-bench-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let (http, rpc) = (free_port()?, free_port()?);
        let config = format!(
            "reporting-disabled = true\nbind-address = \"127.0.0.1:{rpc}\"\n[meta]\n  dir = \"{d}/meta\"\n[data]\n  dir = \"{d}/data\"\n  wal-dir = \"{d}/wal\"\n  wal-fsync-delay = \"0s\"\n  query-log-enabled = false\n[http]\n  bind-address = \"127.0.0.1:{http}\"\n  log-enabled = false\n[monitor]\n  store-enabled = false\n",
            d = dir.display()
        );
        let conf_path = dir.join("influxdb.conf");
        std::fs::write(&conf_path, config).map_err(|e| e.to_string())?;
        let child = Command::new("influxd")
            .arg("-config")
            .arg(&conf_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| e.to_string())?;
        let url = format!("http://127.0.0.1:{http}");
        let influx = Influx {
            child,
            dir,
            url,
            version,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ok = reqwest::blocking::get(format!("{}/ping", influx.url))
                .map(|r| r.status().is_success())
                .unwrap_or(false);
            if ok {
                break;
            }
            if Instant::now() > deadline {
                return Err("influxd did not answer /ping within 60 s".into());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        reqwest::blocking::Client::new()
            .post(format!("{}/query", influx.url))
            .form(&[("q", "CREATE DATABASE bench")])
            .send()
            .map_err(|e| e.to_string())?;
        Ok(Some(influx))
    }

    /// Bytes of InfluxDB's data and WAL directories.
    fn data_bytes(&self) -> u64 {
        crate::server::dir_size(&self.dir.join("data"))
            + crate::server::dir_size(&self.dir.join("wal"))
    }
}

impl Drop for Influx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
