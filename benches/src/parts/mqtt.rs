//! MQTT end to end: gateways publish one reading per message at QoS 1 to civiclake's embedded
//! broker, as fast as PUBACKs come back (a PUBACK means the reading is in the WAL); sustained
//! messages/s, and freshness (publish → visible in SQL) measured by probe messages sent
//! while the load runs.

use super::{Part, Section, quantile};
use crate::ctx::Ctx;
use crate::server::{Civiclake, fresh_dir};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::json;
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

impl Part for MqttEndToEnd {
    fn name(&self) -> &'static str {
        "mqtt"
    }
    fn about(&self) -> &'static str {
        "MQTT end to end: QoS 1 msg/s through the embedded broker, freshness p50/p99"
    }
    fn run(&self, ctx: &mut Ctx) -> Result<Section, String> {
        let publishers = ctx.settings.clients.max(1);
        let limit = ctx.settings.mqtt_messages;
        // One reading per message, in arrival order, spread over the publishers round-robin
        // (each publisher keeps its readings' order), on the default route ingest/{table}.
        let mut per_publisher: Vec<Vec<(String, Vec<u8>)>> = vec![Vec::new(); publishers];
        let mut n = 0usize;
        'outer: for request in &ctx.data.lp {
            for line in request
                .body
                .split(|&b| b == b'\n')
                .filter(|l| !l.is_empty())
            {
                let table = line
                    .iter()
                    .position(|&b| b == b',' || b == b' ')
                    .map_or(line, |p| &line[..p]);
                let topic = format!("ingest/{}", String::from_utf8_lossy(table));
                per_publisher[n % publishers].push((topic, line.to_vec()));
                n += 1;
                if n >= limit {
                    break 'outer;
                }
            }
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
                    runtime.spawn(publish(addr.clone(), format!("bench-gw-{i}"), msgs))
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
                (acked, first_error, Instant::now())
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
                    addr.clone(),
                    format!("bench-probe-{seq}"),
                    vec![("ingest/bench_mqtt_probe".into(), line.into_bytes())],
                ))?;
                acked_ms.push(t.elapsed().as_secs_f64() * 1e3);
                let sql = format!("SELECT seq FROM bench_mqtt_probe WHERE seq = {seq}");
                while server.query_rows(&sql)? != 1 {
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
        let (acked, error, finished) = runtime.block_on(load).map_err(|e| e.to_string())?;
        if let Some(e) = error {
            return Err(e);
        }
        probe?;
        let seconds = finished.duration_since(started).as_secs_f64();
        let cpu = server.cpu_seconds() - cpu_before;
        let stored = server.query_rows("SELECT 1 FROM air UNION ALL SELECT 1 FROM noise UNION ALL SELECT 1 FROM traffic UNION ALL SELECT 1 FROM parking UNION ALL SELECT 1 FROM waste")
            .unwrap_or(0);
        ctx.record_rss(self.name(), &server);
        let rate = acked as f64 / seconds;
        let probes = visible_ms.len();
        let (a50, a99) = (quantile(&mut acked_ms, 0.5), quantile(&mut acked_ms, 0.99));
        let (v50, v99) = (
            quantile(&mut visible_ms, 0.5),
            quantile(&mut visible_ms, 0.99),
        );
        let markdown = format!(
            "### MQTT end to end (embedded broker)\n\n{publishers} publisher connections (rumqttc, MQTT 3.1.1, {INFLIGHT} QoS 1 messages in flight each) send {n} readings, one line-protocol reading per message on `ingest/{{table}}`, as fast as the PUBACKs come back; a PUBACK is sent once the reading is in the WAL (fsync). {acked} PUBACKs in {seconds:.1} s; {stored} rows in the tables afterwards (counted by SQL).\n\n| | |\n|---|---|\n| sustained, QoS 1, durable | **{rate:.0} msg/s** |\n| server CPU | {:.2} CPU-s per million messages |\n\nFreshness: {probes} probe messages (own connection, one every 50 ms while the load runs), each queried until seen.\n\n| | p50 | p99 |\n|---|---|---|\n| PUBACK (connect + publish + ack) | {a50:.1} ms | {a99:.1} ms |\n| visible in SQL (publish → first query that returns it) | **{v50:.1} ms** | **{v99:.1} ms** |\n",
            cpu / (acked as f64 / 1e6),
        );
        Ok(Section {
            markdown,
            json: json!({
                "publishers": publishers,
                "messages": n,
                "acked": acked,
                "stored_rows": stored,
                "seconds": seconds,
                "msgs_per_s": rate,
                "cpu_s_per_million": cpu / (acked as f64 / 1e6),
                "probes": probes,
                "ack_p50_ms": a50, "ack_p99_ms": a99,
                "visible_p50_ms": v50, "visible_p99_ms": v99,
            }),
        })
    }
}
