//! `MqttSource` against Debian's mosquitto, started by the test on a loopback port with a
//! persistent store: 5,000 QoS 1 messages to a slow sink with a broker restart (SIGTERM,
//! which saves the store, then a start on the same port) in the middle of the stream; every
//! sequence number must arrive. Skipped, with a message, where mosquitto is not installed
//! (`.ci/mosquitto.sh` installs it).

#![allow(clippy::unwrap_used)]

use crate::common::{Publisher, RecordingSink, free_addr, wait_for, wait_subscribed};
use civiclake_mqtt::{MqttSource, MqttSourceConfig};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const N: usize = 5_000;

/// The mosquitto binary: `/usr/sbin/mosquitto` or `mosquitto` on `PATH`.
fn mosquitto_binary() -> Option<PathBuf> {
    let sbin = PathBuf::from("/usr/sbin/mosquitto");
    if sbin.is_file() {
        return Some(sbin);
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join("mosquitto"))
        .find(|p| p.is_file())
}

/// A mosquitto process, killed when dropped.
struct Mosquitto {
    binary: PathBuf,
    config: PathBuf,
    addr: SocketAddr,
    child: Option<Child>,
}

impl Mosquitto {
    fn start(binary: PathBuf, dir: &Path) -> Mosquitto {
        let addr = free_addr();
        let store = dir.join("store");
        std::fs::create_dir_all(&store).unwrap();
        let config = dir.join("mosquitto.conf");
        // `user root` keeps a mosquitto started as root from switching to the `mosquitto`
        // user, who could not write the temporary store; it is ignored when not root.
        std::fs::write(
            &config,
            format!(
                "listener {port} 127.0.0.1\n\
                 allow_anonymous true\n\
                 user root\n\
                 persistence true\n\
                 persistence_location {store}/\n\
                 max_queued_messages 0\n\
                 log_dest file {log}\n\
                 log_type error\nlog_type warning\nlog_type notice\n",
                port = addr.port(),
                store = store.display(),
                log = dir.join("mosquitto.log").display(),
            ),
        )
        .unwrap();
        let mut m = Mosquitto {
            binary,
            config,
            addr,
            child: None,
        };
        m.run();
        m
    }

    fn run(&mut self) {
        let child = Command::new(&self.binary)
            .arg("-c")
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(self.addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "mosquitto did not start on {}",
                self.addr
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM (mosquitto saves its store), wait for the exit, start again on the same port.
    fn restart(&mut self) {
        let mut child = self.child.take().unwrap();
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
        child.wait().unwrap();
        self.run();
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Sequence numbers stored (payload `seq=<n>`), with how often each arrived.
fn arrivals(sink: &RecordingSink) -> BTreeMap<usize, usize> {
    let mut seen = BTreeMap::new();
    for p in sink.data() {
        let n: usize = p.strip_prefix("seq=").unwrap().parse().unwrap();
        *seen.entry(n).or_insert(0) += 1;
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_survives_a_mosquitto_restart_mid_stream() {
    let Some(binary) = mosquitto_binary() else {
        assert!(
            std::env::var_os("CIVICLAKE_REQUIRE_MOSQUITTO").is_none(),
            "CIVICLAKE_REQUIRE_MOSQUITTO is set but mosquitto is not installed"
        );
        println!("skipped: mosquitto is not installed (the CI script installs it)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Mosquitto::start(binary, dir.path());
    let addr = broker.addr;

    // A slow sink: 20 ms per call, so a backlog builds up in the broker.
    let sink = RecordingSink::slow(Duration::from_millis(20));
    let mut config =
        MqttSourceConfig::new("mosquitto", "127.0.0.1", ["city/+/data", "city/+/probe"]);
    config.port = addr.port();
    config.keep_alive_secs = 5;
    config.batch_max = 200;
    let source = MqttSource::start(config, sink.clone()).unwrap();
    let publisher = Publisher::connect(addr, "civiclake-test-publisher");
    wait_subscribed(&source, &sink, &publisher, "city/m").await;

    for i in 0..N / 2 {
        publisher.publish("city/s/data", format!("seq={i}")).await;
    }
    publisher
        .wait_acked((N / 2) as u64, Duration::from_secs(60))
        .await;
    let before = arrivals(&sink).len();
    broker.restart();
    println!(
        "mosquitto restarted after {before} of {} messages had reached the sink",
        N / 2
    );
    for i in N / 2..N {
        publisher.publish("city/s/data", format!("seq={i}")).await;
    }

    let deadline = Duration::from_secs(180);
    wait_for("every sequence number", deadline, || {
        arrivals(&sink).len() >= N
    })
    .await;
    let seen = arrivals(&sink);
    let missing: Vec<usize> = (0..N).filter(|n| !seen.contains_key(n)).collect();
    assert!(missing.is_empty(), "missing: {missing:?}");
    assert_eq!(seen.len(), N);
    let total: usize = seen.values().sum();
    println!(
        "{N} distinct messages, {total} deliveries, {} duplicates; {:?}",
        total - N,
        source.stats()
    );
    let stats = source.stats();
    assert!(stats.reconnects >= 1, "{stats:?}");
    source.stop().await;
}
