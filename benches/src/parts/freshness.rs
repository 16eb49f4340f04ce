//! Freshness over HTTP: how long from sending a row until a query sees it, while the
//! city's readings stream in.

use super::{Part, Section, quantile};
use crate::client::Stream;
use crate::ctx::Ctx;
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// `freshness`: write → visible in a query, p50/p99.
pub(crate) struct Freshness;

impl Part for Freshness {
    fn name(&self) -> &'static str {
        "freshness"
    }
    fn about(&self) -> &'static str {
        "HTTP write to visible in a query, p50/p99, while rows stream in"
    }
    fn run(&self, ctx: &mut Ctx) -> Result<Section, String> {
        let samples = ctx.settings.freshness_samples.max(1);
        let rate = ctx.settings.live_rate;
        let live = Arc::new(ctx.live_requests()?);
        let lake = ctx.lake()?;
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| e.to_string())?;
        let url = lake.server.url.clone();
        let stream = Stream::start(&url, live, rate)?;
        std::thread::sleep(Duration::from_secs(1));
        let mut ack = Vec::with_capacity(samples);
        let mut visible = Vec::with_capacity(samples);
        let mut polls = 0usize;
        let run = (|| -> Result<(), String> {
            for i in 0..samples {
                let now_ns = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_err(|e| e.to_string())?
                    .as_nanos();
                let line = format!("bench_freshness,probe=p seq={i}i {now_ns}");
                let t = Instant::now();
                let r = http
                    .post(format!("{url}/api/v1/write"))
                    .body(line)
                    .send()
                    .map_err(|e| e.to_string())?;
                if !r.status().is_success() {
                    return Err(format!("freshness write: {}", r.status()));
                }
                ack.push(t.elapsed().as_secs_f64() * 1e3);
                let sql = format!("SELECT seq FROM bench_freshness WHERE seq = {i}");
                loop {
                    polls += 1;
                    if lake.server.query_rows(&sql)? == 1 {
                        break;
                    }
                    if t.elapsed() > Duration::from_secs(30) {
                        return Err(format!("row {i} not visible after 30 s"));
                    }
                }
                visible.push(t.elapsed().as_secs_f64() * 1e3);
                std::thread::sleep(Duration::from_millis(20));
            }
            Ok(())
        })();
        let (sent, kept) = stream.stop()?;
        run?;
        let (a50, a99) = (quantile(&mut ack, 0.5), quantile(&mut ack, 0.99));
        let (v50, v99) = (quantile(&mut visible, 0.5), quantile(&mut visible, 0.99));
        let markdown = format!(
            "### Freshness over HTTP\n\n{samples} probe rows written one at a time while the city's readings stream in at {rate:.0} rows/s (kept {kept:.0}, {sent} rows); each probe is queried until it is seen ({polls} queries in all). A write is acknowledged after its WAL fsync and is visible from then on.\n\n| | p50 | p99 |\n|---|---|---|\n| write acknowledged | {a50:.1} ms | {a99:.1} ms |\n| visible in a query (send → first query that returns it, included) | **{v50:.1} ms** | **{v99:.1} ms** |\n"
        );
        Ok(Section {
            markdown,
            json: json!({
                "samples": samples,
                "ack_p50_ms": a50, "ack_p99_ms": a99,
                "visible_p50_ms": v50, "visible_p99_ms": v99,
                "stream_rate_kept": kept,
            }),
        })
    }
}
