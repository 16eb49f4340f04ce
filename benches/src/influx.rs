//! InfluxDB 1.x (Debian's `influxdb` package) on loopback with its data in a temporary
//! directory, for the side-by-side ingest measurement.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) struct Influx {
    child: Child,
    dir: PathBuf,
    pub(crate) url: String,
    pub(crate) version: String,
}

fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}

impl Influx {
    /// Starts influxd, or returns None when it is not installed.
    pub(crate) fn start() -> Result<Option<Self>, String> {
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
    pub(crate) fn data_bytes(&self) -> u64 {
        crate::dir_size(&self.dir.join("data")) + crate::dir_size(&self.dir.join("wal"))
    }
}

impl Drop for Influx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
