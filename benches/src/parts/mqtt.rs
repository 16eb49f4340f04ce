//! MQTT end to end: gateways publish one reading per message at QoS 1 to civiclake's embedded
//! broker, as fast as PUBACKs come back (a PUBACK means the reading is in the WAL); sustained
//! messages/s, and freshness (publish → visible in SQL) measured by probe messages sent
//! while the load runs.

use super::{Part, Section, quantile};
use crate::ctx::Ctx;
use crate::server::{Civiclake, fresh_dir};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// `mqtt`: msg/s and freshness through the embedded broker.
pub(crate) struct MqttEndToEnd;

/// Messages in flight per publisher connection (rumqttc's window).
const INFLIGHT: u16 = 1000;

fn split_addr(addr: &str) -> Result<(String, u16), String> {
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| format!("bad MQTT address {addr}"))?;
    Ok((
        host.to_string(),
        port.parse()
            .map_err(|_| format!("bad MQTT port in {addr}"))?,
    ))
}

/// Publishes `messages` (topic, payload) at QoS 1 over one connection; returns when every
/// PUBACK has arrived.
async fn publish(
    addr: String,
    id: String,
    messages: Vec<(String, Vec<u8>)>,
) -> Result<usize, String> {
    let (host, port) = split_addr(&addr)?;
    let mut opts = MqttOptions::new(id, host, port);
    opts.set_keep_alive(Duration::from_secs(30));
    opts.set_inflight(INFLIGHT);
    let total = messages.len();
    let (client, mut events) = AsyncClient::new(opts, usize::from(INFLIGHT));
    let sender = client.clone();
    let send = tokio::spawn(async move {
        for (topic, payload) in messages {
            if sender
                .publish(topic, QoS::AtLeastOnce, false, payload)
                .await
                .is_err()
            {
                return;
            }
        }
    });
    let mut acks = 0;
    while acks < total {
        match tokio::time::timeout(Duration::from_secs(60), events.poll()).await {
            Ok(Ok(Event::Incoming(Packet::PubAck(_)))) => acks += 1,
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(format!("MQTT publisher: {e} after {acks} PUBACKs")),
            Err(_) => return Err(format!("MQTT publisher: no PUBACK for 60 s after {acks}")),
        }
    }
    let _ = send.await;
    let _ = client.disconnect().await;
    Ok(acks)
}

/// What one path measured.
struct Measured {
    messages: usize,
    acked: usize,
    seconds: f64,
    cpu: f64,
    stored: usize,
    ack_p50: f64,
    ack_p99: f64,
    visible_p50: f64,
    visible_p99: f64,
    probes: usize,
}

const TABLES: [&str; 5] = ["air", "noise", "traffic", "parking", "waste"];

fn stored_rows(server: &Civiclake) -> usize {
    TABLES
        .iter()
        .map(|t| server.count_rows(t).unwrap_or(0) as usize)
        .sum()
}

/// Publishes the load to `publish_addr` and probes freshness on `server`; the load is done
/// when every PUBACK came back and SQL counts every row.
fn measure(
    server: &Civiclake,
    publish_addr: &str,
    per_publisher: Vec<Vec<(String, Vec<u8>)>>,
) -> Result<Measured, String> {
    let messages: usize = per_publisher.iter().map(Vec::len).sum();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let cpu_before = server.cpu_seconds();
    let done = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let load = {
        let tasks: Vec<_> = per_publisher
            .into_iter()
            .enumerate()
            .map(|(i, msgs)| {
                runtime.spawn(publish(
                    publish_addr.to_string(),
                    format!("bench-gw-{i}"),
                    msgs,
                ))
            })
            .collect();
        let done = done.clone();
        runtime.spawn(async move {
            let mut acked = 0usize;
            let mut first_error = None;
            for t in tasks {
                match t.await {
                    Ok(Ok(n)) => acked += n,
                    Ok(Err(e)) => {
                        first_error.get_or_insert(e);
                    }
                    Err(e) => {
                        first_error.get_or_insert(e.to_string());
                    }
                }
            }
            done.store(true, Ordering::Release);
            (acked, first_error)
        })
    };
    // Probes: one message every 50 ms on its own connection while the load runs; each is
    // queried until it is seen.
    let (mut acked_ms, mut visible_ms) = (Vec::new(), Vec::new());
    let probe = (|| -> Result<(), String> {
        std::thread::sleep(Duration::from_millis(500));
        let mut seq = 0u64;
        while !done.load(Ordering::Acquire) && seq < 2_000 {
            let now_ns = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_err(|e| e.to_string())?
                .as_nanos();
            let line = format!("bench_mqtt_probe,probe=p seq={seq}i {now_ns}");
            let t = Instant::now();
            runtime.block_on(publish(
                publish_addr.to_string(),
                format!("bench-probe-{seq}"),
                vec![("ingest/bench_mqtt_probe".into(), line.into_bytes())],
            ))?;
            acked_ms.push(t.elapsed().as_secs_f64() * 1e3);
            let sql = format!("SELECT seq FROM bench_mqtt_probe WHERE seq = {seq}");
            while server.query_rows(&sql).unwrap_or(0) != 1 {
                if t.elapsed() > Duration::from_secs(30) {
                    return Err(format!("probe {seq} not visible after 30 s"));
                }
            }
            visible_ms.push(t.elapsed().as_secs_f64() * 1e3);
            seq += 1;
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    })();
    let (acked, error) = runtime.block_on(load).map_err(|e| e.to_string())?;
    if let Some(e) = error {
        return Err(e);
    }
    probe?;
    // Through another broker the PUBACK is that broker's: wait until civiclake has it all.
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut stored = stored_rows(server);
    while stored < messages {
        if Instant::now() > deadline {
            return Err(format!("only {stored} of {messages} rows after 10 min"));
        }
        std::thread::sleep(Duration::from_millis(100));
        stored = stored_rows(server);
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(Measured {
        messages,
        acked,
        seconds,
        cpu: server.cpu_seconds() - cpu_before,
        stored,
        ack_p50: quantile(&mut acked_ms, 0.5),
        ack_p99: quantile(&mut acked_ms, 0.99),
        visible_p50: quantile(&mut visible_ms, 0.5),
        visible_p99: quantile(&mut visible_ms, 0.99),
        probes: visible_ms.len(),
    })
}

fn mosquitto_binary() -> Option<PathBuf> {
    let sbin = PathBuf::from("/usr/sbin/mosquitto");
    if sbin.is_file() {
        return Some(sbin);
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join("mosquitto"))
        .find(|p| p.is_file())
}

/// A mosquitto on a free loopback port, configured as the README advises (no queue limit,
/// a large inflight window for civiclake's subscription); killed when dropped.
struct Mosquitto(Child, String);

impl Mosquitto {
    fn start(binary: &Path, dir: &Path) -> Result<Self, String> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let config = dir.join("mosquitto.conf");
        std::fs::write(
            &config,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 0\nmax_inflight_messages 1000\n"
            ),
        )
        .map_err(|e| e.to_string())?;
        let child = Command::new(binary)
            .arg("-c")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start mosquitto: {e}"))?;
        let addr = format!("127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(&addr).is_err() {
            if Instant::now() > deadline {
                return Err("mosquitto did not listen within 10 s".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(Self(child, addr))
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn row(path: &str, m: &Measured) -> String {
    format!(
        "| {path} | **{:.0}** | {:.2} | {:.1} / {:.1} ms | **{:.1} / {:.1} ms** | {} |",
        m.messages as f64 / m.seconds,
        m.cpu / (m.messages as f64 / 1e6),
        m.ack_p50,
        m.ack_p99,
        m.visible_p50,
        m.visible_p99,
        m.probes
    )
}

fn figures(m: &Measured) -> serde_json::Value {
    json!({
        "messages": m.messages,
        "acked": m.acked,
        "stored_rows": m.stored,
        "seconds": m.seconds,
        "msgs_per_s": m.messages as f64 / m.seconds,
        "cpu_s_per_million": m.cpu / (m.messages as f64 / 1e6),
        "probes": m.probes,
        "ack_p50_ms": m.ack_p50, "ack_p99_ms": m.ack_p99,
        "visible_p50_ms": m.visible_p50, "visible_p99_ms": m.visible_p99,
    })
}

impl Part for MqttEndToEnd {
    fn name(&self) -> &'static str {
        "mqtt"
    }
    fn about(&self) -> &'static str {
        "MQTT end to end: QoS 1 msg/s through the embedded broker (and mosquitto), freshness p50/p99"
    }
    fn run(&self, ctx: &mut Ctx) -> Result<Section, String> {
        let publishers = ctx.settings.clients.max(1);
        let limit = ctx.settings.mqtt_messages;
        // One reading per message, in arrival order, spread over the publishers round-robin
        // (each publisher keeps its readings' order), on the default route ingest/{table}.
        let mut per_publisher: Vec<Vec<(String, Vec<u8>)>> = vec![Vec::new(); publishers];
        let mut n = 0usize;
        for (table, line) in ctx.data.readings().take(limit) {
            per_publisher[n % publishers].push((format!("ingest/{table}"), line.to_vec()));
            n += 1;
        }
        let dir = fresh_dir(self.name())?;
        let server = Civiclake::start(&ctx.settings.civiclake, &dir)?;
        let addr = server
            .mqtt
            .clone()
            .ok_or("the server did not start its MQTT broker")?;
        eprintln!(
            "[mqtt] civiclake at {} (MQTT {addr}): {n} messages from {publishers} publishers...",
            server.url
        );
        let embedded = measure(&server, &addr, per_publisher.clone())?;
        ctx.record_rss(self.name(), &server);
        drop(server);
        let via_mosquitto = match mosquitto_binary() {
            None => {
                eprintln!("[mqtt] mosquitto is not installed: the comparison is skipped");
                None
            }
            Some(binary) => {
                let dir = fresh_dir("mqtt-mosquitto")?;
                let broker = Mosquitto::start(&binary, &dir)?;
                let (host, port) = split_addr(&broker.1)?;
                let config = dir.join("civiclake.toml");
                std::fs::write(
                    &config,
                    format!(
                        "[[mqtt.source]]\nname = \"mosquitto\"\nhost = \"{host}\"\nport = {port}\ntopics = [\"ingest/#\"]\nbatch_max = 2000\n"
                    ),
                )
                .map_err(|e| e.to_string())?;
                let server = Civiclake::start_with_config(
                    &ctx.settings.civiclake,
                    &dir.join("data"),
                    &config,
                )?;
                std::thread::sleep(Duration::from_secs(1));
                eprintln!("[mqtt] through mosquitto at {}...", broker.1);
                let m = measure(&server, &broker.1, per_publisher)?;
                drop(server);
                drop(broker);
                Some(m)
            }
        };
        let mut markdown = format!(
            "### MQTT end to end\n\n{publishers} publisher connections (rumqttc, MQTT 3.1.1, {INFLIGHT} QoS 1 messages in flight each) send {n} readings, one line-protocol reading per message on `ingest/{{table}}`, as fast as the PUBACKs come back; msg/s is timed until SQL counts every row. The embedded broker sends a PUBACK once the reading is in the WAL (fsync). Through mosquitto 2 (`max_queued_messages 0`, `max_inflight_messages 1000`, no persistence), the PUBACK is mosquitto's and civiclake subscribes with a `[[mqtt.source]]` (persistent session, acknowledging after its WAL). Freshness: probe messages on their own connection, one every 50 ms while the load runs, each queried until seen. Through mosquitto the publishers get mosquitto's PUBACK at once and outrun civiclake's subscription (which stores and acknowledges about 31k msg/s here, with mosquitto, the publishers and civiclake sharing 2 cores): the backlog waits in mosquitto's queue, so that path's freshness is the time a probe spends behind it, and few probes complete.\n\n| path | msg/s (durable in civiclake) | server CPU-s per million | PUBACK p50 / p99 | publish → visible in SQL p50 / p99 | probes |\n|---|---|---|---|---|---|\n{}\n",
            row("embedded broker", &embedded)
        );
        if let Some(m) = &via_mosquitto {
            markdown.push_str(&row("mosquitto → `[[mqtt.source]]`", m));
            markdown.push('\n');
        } else {
            markdown.push_str("\n(mosquitto is not installed here: no comparison.)\n");
        }
        Ok(Section {
            markdown,
            json: json!({
                "publishers": publishers,
                "embedded": figures(&embedded),
                "via_mosquitto": via_mosquitto.as_ref().map(figures),
            }),
        })
    }
}
