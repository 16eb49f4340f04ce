//! The query set of `benches/queries` on the query lake: hot (p50/p95 of repeated runs) and
//! cold (first run after a restart) with ingest idle, the same queries on DuckDB over the
//! same Parquet files and in its own native tables, and again while rows stream in.

use super::{Part, Section, geomean, quantile};
use crate::client::Stream;
use crate::ctx::{Ctx, Query};
use crate::server::Civiclake;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `queries`: the query set with ingest idle, next to DuckDB.
pub(crate) struct Idle;
/// `queries-live`: the query set while rows stream in.
pub(crate) struct UnderIngest;

/// Milliseconds of one query run; the rows it returned.
fn timed(server: &Civiclake, q: &Query) -> Result<(f64, usize), String> {
    let t = Instant::now();
    let rows = server
        .query_rows(&q.sql)
        .map_err(|e| format!("query {}: {e}", q.name))?;
    Ok((t.elapsed().as_secs_f64() * 1e3, rows))
}

/// p50 ms, p95 ms and rows of a query's hot runs.
type Hot = (f64, f64, usize);

/// One warm-up run, then `repeat` timed runs: (p50, p95, rows).
fn hot(server: &Civiclake, q: &Query, repeat: usize) -> Result<Hot, String> {
    let (_, rows) = timed(server, q)?;
    let mut times = Vec::with_capacity(repeat);
    for _ in 0..repeat.max(1) {
        times.push(timed(server, q)?.0);
    }
    Ok((quantile(&mut times, 0.5), quantile(&mut times, 0.95), rows))
}

/// Tries to empty the OS page cache (needs root outside a container); says whether it did.
fn drop_page_cache() -> bool {
    let _ = std::process::Command::new("sync").status();
    std::fs::write("/proc/sys/vm/drop_caches", "3").is_ok()
}

/// The first line of an error, at most 160 characters, for a table cell.
fn short(e: &str) -> String {
    let line = e.lines().next().unwrap_or_default().replace('|', "/");
    if line.chars().count() > 160 {
        format!("{}…", line.chars().take(160).collect::<String>())
    } else {
        line
    }
}

fn ms(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

impl Part for Idle {
    fn name(&self) -> &'static str {
        "queries"
    }
    fn about(&self) -> &'static str {
        "query set hot and cold with ingest idle, next to DuckDB (native tables and over the same Parquet files)"
    }
    fn run(&self, ctx: &mut Ctx) -> Result<Section, String> {
        let queries = Ctx::queries()?;
        let repeat = ctx.settings.repeat;
        let sources = ctx.lake_sources()?;
        let lake = ctx.lake()?;
        let description = lake.description.clone();
        let lake_json = lake.json.clone();
        // A query that fails (a limit reached, say) is reported as failed, not fatal.
        let mut results: BTreeMap<String, (f64, f64, f64, usize)> = BTreeMap::new();
        let mut failures: BTreeMap<String, String> = BTreeMap::new();
        eprintln!("[queries] hot runs...");
        for q in &queries {
            match hot(&lake.server, q, repeat) {
                Ok((p50, p95, rows)) => {
                    results.insert(q.name.clone(), (f64::NAN, p50, p95, rows));
                }
                Err(e) => {
                    eprintln!("{e}");
                    failures.insert(q.name.clone(), e);
                }
            }
        }
        eprintln!("[queries] cold runs (a restart before each)...");
        let mut dropped_cache = true;
        for q in &queries {
            lake.server.restart()?;
            dropped_cache &= drop_page_cache();
            match timed(&lake.server, q) {
                Ok((cold, _)) => {
                    if let Some(r) = results.get_mut(&q.name) {
                        r.0 = cold;
                    }
                }
                Err(e) => {
                    failures.entry(q.name.clone()).or_insert(e);
                }
            }
        }
        let rss_server = lake.server.peak_rss();
        ctx.peak_rss
            .entry(self.name().into())
            .and_modify(|v| *v = (*v).max(rss_server))
            .or_insert(rss_server);
        eprintln!("[queries] DuckDB...");
        let mut args: Vec<String> = Vec::new();
        for s in &sources {
            args.push("--source".into());
            args.push(s.clone());
        }
        args.push("--queries".into());
        args.push(Ctx::benches_dir().join("queries").display().to_string());
        args.push("--repeat".into());
        args.push(repeat.to_string());
        let duck = ctx.duckdb_side("bench", &args)?;

        let mut md = format!(
            "### Queries, ingest idle\n\nThe lake: {description}. Hot: p50 and p95 of {repeat} runs after one warm-up run. Cold: the first run after a restart of the server ({}). civiclake answers over HTTP as Arrow IPC; DuckDB {} runs in-process (Python, `fetchall`) over the same Parquet files (`read_parquet` of the Delta table's active files) and over its own native tables loaded from them (sorted by sensor, time; load took {:.1} s). Ratios are civiclake's hot p50 over DuckDB's hot p50: below 1 civiclake is faster.\n\n",
            if dropped_cache {
                "the OS page cache was dropped too"
            } else {
                "the OS page cache could not be dropped here: files may still be in memory"
            },
            duck["duckdb_version"].as_str().unwrap_or("?"),
            ms(&duck["load_native_s"])
        );
        md.push_str("| query | rows | civiclake cold ms | civiclake hot p50 / p95 ms | DuckDB native cold / p50 / p95 ms | DuckDB Parquet cold / p50 / p95 ms | ratio vs native | ratio vs Parquet |\n|---|---|---|---|---|---|---|---|\n");
        let (mut vs_native, mut vs_parquet) = (Vec::new(), Vec::new());
        let mut json_queries = serde_json::Map::new();
        let mut mismatches = Vec::new();
        for q in &queries {
            let Some(&(cold, p50, p95, rows)) = results.get(&q.name) else {
                let why = failures.get(&q.name).cloned().unwrap_or_default();
                md.push_str(&format!(
                    "| {} | failed: {} | | | | | | |\n",
                    q.name,
                    short(&why)
                ));
                json_queries.insert(q.name.clone(), json!({"error": why}));
                continue;
            };
            ctx.idle_p50_ms.insert(q.name.clone(), p50);
            let d = &duck["queries"][&q.name];
            let (n, p) = (&d["native"], &d["parquet"]);
            let rn = p50 / ms(&n["p50_ms"]);
            let rp = p50 / ms(&p["p50_ms"]);
            vs_native.push(rn);
            vs_parquet.push(rp);
            let duck_rows = n["rows"].as_u64();
            let rows_note = match duck_rows {
                Some(dr) if dr as usize == rows => String::new(),
                Some(dr) => {
                    mismatches.push(q.name.clone());
                    format!(" (DuckDB: {dr}!)")
                }
                None => " (DuckDB: no answer)".into(),
            };
            md.push_str(&format!(
                "| {} | {rows}{rows_note} | {cold:.1} | **{p50:.1}** / {p95:.1} | {:.1} / {:.1} / {:.1} | {:.1} / {:.1} / {:.1} | {rn:.2} | {rp:.2} |\n",
                q.name,
                ms(&n["cold_ms"]),
                ms(&n["p50_ms"]),
                ms(&n["p95_ms"]),
                ms(&p["cold_ms"]),
                ms(&p["p50_ms"]),
                ms(&p["p95_ms"]),
            ));
            json_queries.insert(
                q.name.clone(),
                json!({
                    "rows": rows,
                    "civiclake": {"cold_ms": cold, "p50_ms": p50, "p95_ms": p95},
                    "duckdb_native": n,
                    "duckdb_parquet": p,
                    "ratio_vs_native": rn,
                    "ratio_vs_parquet": rp,
                }),
            );
        }
        let (gn, gp) = (geomean(&vs_native), geomean(&vs_parquet));
        md.push_str(&format!(
            "| **geometric mean** | | | | | | **{gn:.2}** | **{gp:.2}** |\n\nTarget: geometric mean ratio vs DuckDB native ≤ 1 — {}.\n",
            if gn <= 1.0 { "met" } else { "not met" }
        ));
        if !failures.is_empty() {
            md.push_str(&format!(
                "\n**Failed on civiclake ({}), left out of the means:** {}\n",
                failures.len(),
                failures
                    .iter()
                    .map(|(n, e)| format!("{n}: {e}"))
                    .collect::<Vec<_>>()
                    .join("; ")
            ));
        }
        if !mismatches.is_empty() {
            md.push_str(&format!(
                "\n**Row counts differ from DuckDB's for: {}** (see the correctness check in `.ci/run`).\n",
                mismatches.join(", ")
            ));
        }
        Ok(Section {
            markdown: md,
            json: json!({
                "lake": lake_json,
                "page_cache_dropped": dropped_cache,
                "duckdb_version": duck["duckdb_version"],
                "duckdb_load_native_s": duck["load_native_s"],
                "queries": json_queries,
                "geomean_ratio_vs_native": gn,
                "geomean_ratio_vs_parquet": gp,
                "row_count_mismatches": mismatches,
                "failures": failures,
            }),
        })
    }
}

impl Part for UnderIngest {
    fn name(&self) -> &'static str {
        "queries-live"
    }
    fn about(&self) -> &'static str {
        "query set hot while rows stream in at --live-rate"
    }
    fn run(&self, ctx: &mut Ctx) -> Result<Section, String> {
        let queries = Ctx::queries()?;
        let repeat = ctx.settings.repeat;
        let rate = ctx.settings.live_rate;
        eprintln!("[queries-live] generating the next day's rows to stream...");
        let live = Arc::new(ctx.live_requests()?);
        let lake = ctx.lake()?;
        let stream = Stream::start(&lake.server.url, live, rate)?;
        std::thread::sleep(Duration::from_secs(2));
        let measured: Vec<(String, Result<Hot, String>)> = queries
            .iter()
            .map(|q| (q.name.clone(), hot(&lake.server, q, repeat)))
            .collect();
        let (sent, kept) = stream.stop()?;
        let rss = lake.server.peak_rss();
        ctx.peak_rss
            .entry(self.name().into())
            .and_modify(|v| *v = (*v).max(rss))
            .or_insert(rss);
        let mut md = format!(
            "### Queries under ingest\n\nThe same lake while the next day's readings stream in over HTTP line protocol at {rate:.0} rows/s (kept {kept:.0} rows/s, {sent} rows sent during the measurement); hot p50/p95 of {repeat} runs after a warm-up.\n\n| query | idle p50 ms | under ingest p50 / p95 ms | slowdown |\n|---|---|---|---|\n"
        );
        let mut json_q = serde_json::Map::new();
        let mut slowdowns = Vec::new();
        for (name, outcome) in &measured {
            let (p50, p95) = match outcome {
                Ok((p50, p95, _)) => (*p50, *p95),
                Err(e) => {
                    md.push_str(&format!("| {name} | | failed: {} | |\n", short(e)));
                    json_q.insert(name.clone(), json!({"error": e}));
                    continue;
                }
            };
            let idle = ctx.idle_p50_ms.get(name).copied().unwrap_or(f64::NAN);
            let slow = p50 / idle;
            slowdowns.push(slow);
            md.push_str(&format!(
                "| {name} | {idle:.1} | **{p50:.1}** / {p95:.1} | {slow:.2}× |\n"
            ));
            json_q.insert(
                name.clone(),
                json!({"p50_ms": p50, "p95_ms": p95, "idle_p50_ms": idle}),
            );
        }
        let g = geomean(&slowdowns);
        md.push_str(&format!("| **geometric mean** | | | {g:.2}× |\n"));
        Ok(Section {
            markdown: md,
            json: json!({
                "rate_target": rate,
                "rate_kept": kept,
                "rows_sent": sent,
                "queries": json_q,
                "geomean_slowdown": g,
            }),
        })
    }
}
