//! Bulk ingest over HTTP: line protocol and Arrow IPC, durable (each request is
//! acknowledged after the WAL fsync), into a fresh server; rows/s and the server's CPU
//! seconds per million rows.

use super::{Part, Section, bytes};
use crate::client::{self, Request};
use crate::ctx::Ctx;
use crate::server::{Civiclake, fresh_dir};
use serde_json::json;

/// `ingest-lp`: HTTP line protocol.
pub(crate) struct LineProtocol;
/// `ingest-arrow`: HTTP Arrow IPC streams.
pub(crate) struct ArrowIpc;

impl Part for LineProtocol {
    fn name(&self) -> &'static str {
        "ingest-lp"
    }
    fn about(&self) -> &'static str {
        "bulk ingest, HTTP line protocol: rows/s, CPU-s per million rows"
    }
    fn run(&self, ctx: &mut Ctx) -> Result<Section, String> {
        let requests = std::mem::take(&mut ctx.data.lp);
        let result = measure(ctx, self.name(), &requests);
        ctx.data.lp = requests;
        let m = result?;
        Ok(section("HTTP line protocol", ctx, &m, ctx.data.lp_bytes()))
    }
}

impl Part for ArrowIpc {
    fn name(&self) -> &'static str {
        "ingest-arrow"
    }
    fn about(&self) -> &'static str {
        "bulk ingest, HTTP Arrow IPC: rows/s, CPU-s per million rows"
    }
    fn run(&self, ctx: &mut Ctx) -> Result<Section, String> {
        eprintln!("encoding the rows as Arrow IPC streams...");
        let requests = ctx.data.arrow_requests(ctx.settings.batch)?;
        let body_bytes: u64 = requests.iter().map(|r| r.body.len() as u64).sum();
        let m = measure(ctx, self.name(), &requests)?;
        Ok(section("HTTP Arrow IPC", ctx, &m, body_bytes))
    }
}

struct Measured {
    rows: u64,
    seconds: f64,
    cpu_seconds: f64,
    peak_rss: u64,
}

fn measure(ctx: &mut Ctx, part: &str, requests: &[Request]) -> Result<Measured, String> {
    let dir = fresh_dir(part)?;
    let server = Civiclake::start(&ctx.settings.civiclake, &dir)?;
    eprintln!("[{part}] civiclake at {}: ingesting...", server.url);
    let cpu_before = server.cpu_seconds();
    let wall = client::post_all(&server.url, requests, ctx.settings.clients, None)?;
    let cpu_seconds = server.cpu_seconds() - cpu_before;
    let rows: u64 = requests.iter().map(|r| r.rows as u64).sum();
    let counted: u64 = server
        .tables()?
        .iter()
        .filter(|t| !t["name"].as_str().unwrap_or("_").starts_with('_'))
        .filter_map(|t| t["rows"].as_u64())
        .sum();
    if counted != rows {
        return Err(format!(
            "{part}: the server holds {counted} rows, {rows} were sent"
        ));
    }
    ctx.record_rss(part, &server);
    let peak_rss = server.peak_rss();
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(Measured {
        rows,
        seconds: wall.as_secs_f64(),
        cpu_seconds,
        peak_rss,
    })
}

fn section(what: &str, ctx: &Ctx, m: &Measured, body_bytes: u64) -> Section {
    let rate = m.rows as f64 / m.seconds;
    let cpu_per_m = m.cpu_seconds / (m.rows as f64 / 1e6);
    let markdown = format!(
        "### Bulk ingest, {what}\n\n{} rows in {} requests of up to {} rows ({} of request bodies), {} client threads, durable (the WAL is fsynced before each answer).\n\n| rows/s | wall time | server CPU-s per million rows | server peak RSS |\n|---|---|---|---|\n| **{rate:.0}** | {:.2} s | {cpu_per_m:.2} | {} |\n",
        m.rows,
        m.rows.div_ceil(ctx.settings.batch as u64),
        ctx.settings.batch,
        bytes(body_bytes),
        ctx.settings.clients,
        m.seconds,
        bytes(m.peak_rss)
    );
    Section {
        markdown,
        json: json!({
            "rows": m.rows,
            "seconds": m.seconds,
            "rows_per_s": rate,
            "cpu_seconds": m.cpu_seconds,
            "cpu_seconds_per_million_rows": cpu_per_m,
            "body_bytes": body_bytes,
            "peak_rss_bytes": m.peak_rss,
        }),
    }
}
