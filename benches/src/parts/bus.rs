//! The interoperability bus: publish → log → route → webhook on loopback, with 10
//! subscriptions (each one webhook of a receiver in the harness's process). Two phases on a
//! fresh server: a flood (events published as fast as the API takes them: deliveries/s from
//! the first publish to the last delivery) and a paced stream (end-to-end latency, from the
//! publisher's clock in the event to the receiver's).

use super::{Part, Section, quantile};
use crate::ctx::Ctx;
use crate::server::{Civiclake, fresh_dir};
use serde_json::json;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// `bus`: deliveries/s and end-to-end latency through 10 webhook subscriptions.
pub(crate) struct BusDeliveries;

/// Subscriptions, each a webhook of the receiver.
const SUBSCRIPTIONS: usize = 10;
/// Events published in the flood.
const FLOOD_EVENTS: usize = 40_000;
/// Events per publish request.
const PUBLISH_BATCH: usize = 100;
/// Events per second of the paced phase (× 10 subscriptions = the 20,000 deliveries/s of
/// the target), and how long it lasts.
const PACED_RATE: usize = 2000;
const PACED_SECS: u64 = 10;
const TYPE: &str = "it.prato.bench.Reading";

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// What the receiver saw.
#[derive(Default)]
struct Seen {
    deliveries: AtomicU64,
    /// Publish → receipt, µs, of the events marked `timed`.
    latencies: Mutex<Vec<u64>>,
}

fn receiver(runtime: &tokio::runtime::Runtime, seen: Arc<Seen>) -> Result<String, String> {
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let app = axum::Router::new().route(
        "/hook/{n}",
        axum::routing::post(move |body: axum::body::Bytes| {
            let seen = seen.clone();
            async move {
                let got = now_us();
                seen.deliveries.fetch_add(1, Ordering::Relaxed);
                if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body)
                    && v["data"]["timed"] == json!(true)
                    && let Some(sent) = v["data"]["sent_us"].as_u64()
                    && let Ok(mut l) = seen.latencies.lock()
                {
                    l.push(got.saturating_sub(sent));
                }
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    runtime.spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(format!("http://{addr}"))
}

fn publish(
    http: &reqwest::blocking::Client,
    url: &str,
    first: usize,
    n: usize,
    timed: bool,
) -> Result<(), String> {
    let sent = now_us();
    let events: Vec<serde_json::Value> = (first..first + n)
        .map(|i| {
            json!({"specversion": "1.0", "id": format!("r-{i}"), "source": "/bench/sensors",
                   "type": TYPE, "partitionkey": format!("s{}", i % 64),
                   "data": {"sensor": i % 64, "value": i as f64 * 0.5, "sent_us": sent, "timed": timed}})
        })
        .collect();
    let r = http
        .post(format!("{url}/api/v1/bus/events"))
        .header("content-type", "application/cloudevents-batch+json")
        .body(serde_json::Value::Array(events).to_string())
        .send()
        .map_err(|e| format!("publish: {e}"))?;
    if r.status().as_u16() != 201 {
        return Err(format!(
            "publish: {}: {}",
            r.status(),
            r.text().unwrap_or_default()
        ));
    }
    Ok(())
}

fn wait_for(seen: &Seen, n: u64, limit: Duration) -> Result<(), String> {
    let t = Instant::now();
    while seen.deliveries.load(Ordering::Relaxed) < n {
        if t.elapsed() > limit {
            return Err(format!(
                "{} of {n} deliveries after {} s",
                seen.deliveries.load(Ordering::Relaxed),
                limit.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

impl Part for BusDeliveries {
    fn name(&self) -> &'static str {
        "bus"
    }
    fn about(&self) -> &'static str {
        "bus deliveries/s and end-to-end latency, 10 webhook subscriptions"
    }
    fn run(&self, ctx: &mut Ctx) -> Result<Section, String> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let seen = Arc::new(Seen::default());
        let hook = receiver(&runtime, seen.clone())?;
        let dir = fresh_dir("bus")?;
        let server = Civiclake::start(&ctx.settings.civiclake, &dir)?;
        server.post_json(
            &format!("/api/v1/bus/schemas/{TYPE}"),
            &json!({"type": "object", "properties": {"sensor": {"type": "integer"},
                    "value": {"type": "number"}, "sent_us": {"type": "integer"},
                    "timed": {"type": "boolean"}}, "required": ["sensor", "value"]}),
        )?;
        for n in 0..SUBSCRIPTIONS {
            server.post_json(
                "/api/v1/bus/subscriptions",
                &json!({"name": format!("bench-{n}"), "lanes": 8,
                        "filter": {"types": [TYPE]},
                        "target": {"kind": "webhook", "url": format!("{hook}/hook/{n}")}}),
            )?;
        }
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| e.to_string())?;
        let url = server.url.clone();

        // Flood: two publishers.
        let cpu0 = server.cpu_seconds();
        let started = Instant::now();
        std::thread::scope(|s| -> Result<(), String> {
            let handles: Vec<_> = (0..2)
                .map(|p| {
                    let (http, url) = (&http, &url);
                    s.spawn(move || -> Result<(), String> {
                        let mut i = p * PUBLISH_BATCH;
                        while i < FLOOD_EVENTS {
                            publish(http, url, i, PUBLISH_BATCH.min(FLOOD_EVENTS - i), false)?;
                            i += 2 * PUBLISH_BATCH;
                        }
                        Ok(())
                    })
                })
                .collect();
            for h in handles {
                h.join().map_err(|_| "a publisher panicked")??;
            }
            Ok(())
        })?;
        let published_s = started.elapsed().as_secs_f64();
        let flood_deliveries = (FLOOD_EVENTS * SUBSCRIPTIONS) as u64;
        wait_for(&seen, flood_deliveries, Duration::from_secs(600))?;
        let flood_s = started.elapsed().as_secs_f64();
        let flood_cpu = server.cpu_seconds() - cpu0;
        let rate = flood_deliveries as f64 / flood_s;
        eprintln!(
            "flood: {FLOOD_EVENTS} events published in {published_s:.1} s, {flood_deliveries} deliveries in {flood_s:.1} s = {rate:.0}/s"
        );

        // Paced: PACED_RATE events/s in batches of 10, every event timed.
        let batch = 10;
        let interval = Duration::from_secs_f64(batch as f64 / PACED_RATE as f64);
        let total = PACED_RATE * PACED_SECS as usize;
        let start = Instant::now();
        let mut i = 0;
        while i < total {
            let due = start + interval * (i / batch) as u32;
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            publish(&http, &url, FLOOD_EVENTS + i, batch, true)?;
            i += batch;
        }
        wait_for(
            &seen,
            flood_deliveries + (total * SUBSCRIPTIONS) as u64,
            Duration::from_secs(120),
        )?;
        let mut lat: Vec<f64> = seen
            .latencies
            .lock()
            .map_err(|_| "latencies")?
            .iter()
            .map(|&us| us as f64 / 1e3)
            .collect();
        let (p50, p99, max) = (
            quantile(&mut lat, 0.5),
            quantile(&mut lat, 0.99),
            quantile(&mut lat, 1.0),
        );
        let audit = server.count_rows("bus_deliveries").unwrap_or(0);
        ctx.record_rss("bus", &server);
        let markdown = format!(
            "### Interoperability bus\n\n\
             A fresh server with {SUBSCRIPTIONS} subscriptions (8 lanes each), every one a webhook of a receiver in the harness (axum, loopback); events of one type with a registered JSON Schema, 64 partition keys, published over HTTP in batches of {PUBLISH_BATCH}.\n\n\
             | | figure |\n|---|---|\n\
             | flood: {FLOOD_EVENTS} events by 2 publishers, published in | {published_s:.1} s ({:.0} events/s appended, validated, durable) |\n\
             | flood: {flood_deliveries} deliveries, first publish → last delivery | {flood_s:.1} s = **{rate:.0} deliveries/s** (target ≥ 20,000) |\n\
             | server CPU during the flood | {flood_cpu:.1} CPU-s ({:.1} CPU-s per 100k deliveries) |\n\
             | paced: {PACED_RATE} events/s for {PACED_SECS} s ({} deliveries/s), publish → received, p50 / p99 / max | {p50:.1} / **{p99:.1}** / {max:.1} ms (target p99 < 100 ms) |\n\
             | rows of `bus_deliveries` at the end (one per attempt) | {audit} |\n",
            FLOOD_EVENTS as f64 / published_s,
            flood_cpu / flood_deliveries as f64 * 1e5,
            PACED_RATE * SUBSCRIPTIONS,
        );
        Ok(Section {
            markdown,
            json: json!({
                "subscriptions": SUBSCRIPTIONS,
                "flood_events": FLOOD_EVENTS,
                "flood_publish_s": published_s,
                "flood_deliveries": flood_deliveries,
                "flood_s": flood_s,
                "deliveries_per_s": rate,
                "flood_cpu_s": flood_cpu,
                "paced_events_per_s": PACED_RATE,
                "latency_p50_ms": p50,
                "latency_p99_ms": p99,
                "latency_max_ms": max,
                "audit_rows": audit,
            }),
        })
    }
}
