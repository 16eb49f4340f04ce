//! Dashboards: how long `civiclake serve --demo` takes to be up with its day of data, how
//! long the shipped dashboards take on it, and panels over a day of 1,000 sensors at one
//! reading a minute (1.44M rows), from request to SVG — one at a time and a whole dashboard
//! of 8 panels at once, as a browser asks for them.

use super::{Part, Section, quantile};
use crate::ctx::Ctx;
use crate::server::{Civiclake, fresh_dir};
use arrow::array::{ArrayRef, Float64Array, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow::ipc::writer::StreamWriter;
use arrow::record_batch::RecordBatch;
use civiclake_dashboards::DashboardSet;
use civiclake_sim::{City, CityConfig};
use serde_json::json;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// `dashboards`: demo start-up, shipped dashboards, panels over 1.44M rows.
pub(crate) struct Dashboards;

/// Sensors of the panel dataset.
const SENSORS: u32 = 1000;
/// Readings per sensor: a day at one a minute.
const MINUTES: i64 = 1440;
/// The panel dataset's table.
const TABLE: &str = "dash_readings";
/// Rows per write request of the panel dataset.
const WRITE_ROWS: usize = 100_000;
/// The id of the benchmark's own dashboard (written next to the shipped ones).
const BENCH_DASHBOARD: &str = "bench-day";
/// How long the demo may take to be up with its day of data before the part gives up.
const DEMO_DEADLINE: Duration = Duration::from_secs(300);

/// The benchmark's dashboard: 8 panels, each over the whole day of all sensors (the kinds a
/// planner's dashboard mixes), downsampled in SQL as `dashboards/README.md` advises.
const BENCH_TOML: &str = r#"
title = "Benchmark: a day of 1,000 sensors"
description = "Written by civiclake-bench: every panel reads the 1.44M rows of a day"
refresh = "1m"

[time]
default = "last 24h"

[[variables]]
name = "district"
label = "District"
values = ["Centro", "Nord", "Est", "Sud", "Ovest"]
all = true

[[panels]]
id = "band"
title = "City mean with the lowest and highest sensor"
kind = "timeseries"
unit = "µg/m³"
value_label = "NO₂"
sql = """
SELECT date_bin($__interval, time, $__from) AS time,
       avg(value) AS value, min(value) AS min, max(value) AS max
FROM dash_readings
WHERE $__timeFilter(time) AND $__filter(district, district)
GROUP BY 1 ORDER BY 1
"""

[[panels]]
id = "districts"
title = "Mean by district"
kind = "timeseries"
unit = "µg/m³"
value_label = "NO₂"
sql = """
SELECT date_bin($__interval, time, $__from) AS time, district AS series, avg(value) AS value
FROM dash_readings
WHERE $__timeFilter(time) AND $__filter(district, district)
GROUP BY 1, 2 ORDER BY 1, 2
"""

[[panels]]
id = "bands"
title = "Readings by level and district"
kind = "stacked_bar"
unit = "readings"
sql = """
SELECT district AS label,
       CASE WHEN value < 25 THEN 'low' WHEN value < 40 THEN 'moderate' ELSE 'high' END AS series,
       count(*) AS value
FROM dash_readings
WHERE $__timeFilter(time) AND $__filter(district, district)
GROUP BY 1, 2 ORDER BY 1, 2
"""

[[panels]]
id = "histogram"
title = "Distribution of the readings"
kind = "histogram"
unit = "µg/m³"
value_label = "NO₂"
bins = 40
sql = """
SELECT value FROM dash_readings
WHERE $__timeFilter(time) AND $__filter(district, district)
"""

[[panels]]
id = "heatmap"
title = "Mean by hour"
kind = "heatmap"
unit = "µg/m³"
value_label = "NO₂"
sql = """
SELECT date_bin(INTERVAL '1 hour', time, $__from) AS time, avg(value) AS value
FROM dash_readings
WHERE $__timeFilter(time) AND $__filter(district, district)
GROUP BY 1 ORDER BY 1
"""

[[panels]]
id = "top"
title = "Sensors with the highest peak"
kind = "table"
sql = """
SELECT sensor, district, max(value) AS peak, avg(value) AS mean
FROM dash_readings
WHERE $__timeFilter(time) AND $__filter(district, district)
GROUP BY 1, 2 ORDER BY peak DESC LIMIT 20
"""

[[panels]]
id = "now"
title = "Mean of the last 15 minutes"
kind = "stat"
unit = "µg/m³"
decimals = 1
thresholds = [
  { value = 0, colour = "green" },
  { value = 25, colour = "yellow" },
  { value = 40, colour = "orange" },
]
sql = """
SELECT avg(value) AS value FROM dash_readings
WHERE time >= $__to - INTERVAL '15 minutes' AND time < $__to AND $__filter(district, district)
"""

[[panels]]
id = "map"
title = "Mean per sensor"
kind = "map"
unit = "µg/m³"
layers = ["prato_districts_synthetic"]
fill = "mean"
sql = """
SELECT lat, lon, avg(value) AS value
FROM dash_readings
WHERE $__timeFilter(time) AND $__filter(district, district)
GROUP BY sensor, lat, lon
"""
"#;

impl Part for Dashboards {
    fn name(&self) -> &'static str {
        "dashboards"
    }
    fn about(&self) -> &'static str {
        "serve --demo start-up, shipped dashboards, panels over 1.44M rows request to SVG"
    }
    fn run(&self, ctx: &mut Ctx) -> Result<Section, String> {
        let repeat = ctx.settings.repeat.max(1);
        // The shipped dashboards, their map layers and the benchmark's dashboard, in one
        // folder the server reads.
        let shipped = Ctx::benches_dir()
            .parent()
            .ok_or("no repository above benches/")?
            .join("dashboards");
        let folder = fresh_dir("dashboards")?;
        copy_dashboards(&shipped, &folder)?;
        std::fs::write(folder.join(format!("{BENCH_DASHBOARD}.toml")), BENCH_TOML)
            .map_err(|e| e.to_string())?;
        let set = DashboardSet::load_dir(&folder).map_err(|e| e.to_string())?;

        // 1. serve --demo: up, and the day written.
        let data = fresh_dir("dashboards-demo")?;
        let spawned_at = now_secs();
        let started = Instant::now();
        let args = vec![
            "--demo".to_string(),
            "--dashboards-dir".to_string(),
            folder.display().to_string(),
        ];
        let server = Civiclake::start_with_args(&ctx.settings.civiclake, &data, &args)?;
        let listening_s = started.elapsed().as_secs_f64();
        let demo_ready_s = wait_for_demo_day(&server, spawned_at, started)?;
        eprintln!(
            "serve --demo: listening after {listening_s:.2} s, the day written after {demo_ready_s:.2} s"
        );

        // 2. The shipped dashboards on the demo data, every panel at once per dashboard.
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(120))
            .pool_max_idle_per_host(16)
            .build()
            .map_err(|e| e.to_string())?;
        let mut shipped_rows = Vec::new();
        let mut shipped_json = Vec::new();
        for dashboard in set.dashboards().iter().filter(|d| d.id != BENCH_DASHBOARD) {
            let urls: Vec<String> = dashboard
                .panels
                .iter()
                .map(|p| {
                    format!(
                        "{}/dashboards/{}/panels/{}.svg",
                        server.url, dashboard.id, p.id
                    )
                })
                .collect();
            // Once to warm up (and to check that every panel draws).
            whole_dashboard(&http, &urls, false)?;
            let mut times: Vec<f64> = (0..repeat)
                .map(|_| whole_dashboard(&http, &urls, false))
                .collect::<Result<_, _>>()?;
            let (p50, p99) = (quantile(&mut times, 0.5), quantile(&mut times, 0.99));
            shipped_rows.push(format!(
                "| {} | {} | {p50:.0} ms | {p99:.0} ms |",
                dashboard.id,
                urls.len()
            ));
            shipped_json.push(json!({"dashboard": dashboard.id, "panels": urls.len(), "p50_ms": p50, "max_ms": p99}));
        }
        ctx.record_rss("dashboards", &server);

        // 3. The day of 1,000 sensors at one reading a minute, flushed and compacted.
        let day_start = {
            let now = now_secs();
            (now - now.rem_euclid(86_400) - 86_400) * 1_000_000
        };
        let written = Instant::now();
        let rows = write_day(&server, day_start)?;
        server.flush()?;
        server.compact()?;
        let seen = server.count_rows(TABLE)?;
        if seen != rows as u64 {
            return Err(format!("{TABLE} holds {seen} rows, {rows} were written"));
        }
        let write_s = written.elapsed().as_secs_f64();
        eprintln!("{rows} rows of {TABLE} written, flushed and compacted in {write_s:.1} s");
        let dashboard = set
            .get(BENCH_DASHBOARD)
            .ok_or("the benchmark's dashboard was not loaded")?;
        let range = format!(
            "from={}&to={}",
            day_start / 1000,
            (day_start + MINUTES * 60_000_000) / 1000
        );
        let panel_url = |id: &str| {
            format!(
                "{}/dashboards/{BENCH_DASHBOARD}/panels/{id}.svg?{range}&width=800&height=300",
                server.url
            )
        };
        let mut panel_rows = Vec::new();
        let mut panel_json = Vec::new();
        let mut worst_p50: f64 = 0.0;
        for panel in &dashboard.panels {
            let url = panel_url(&panel.id);
            let cold = timed_svg(&http, &url, true)?;
            let mut times: Vec<f64> = (0..repeat)
                .map(|_| timed_svg(&http, &url, true))
                .collect::<Result<_, _>>()?;
            let (p50, p99) = (quantile(&mut times, 0.5), quantile(&mut times, 0.99));
            worst_p50 = worst_p50.max(p50);
            panel_rows.push(format!(
                "| {} ({}) | {cold:.0} ms | {p50:.0} ms | {p99:.0} ms |",
                panel.id,
                panel.kind.name()
            ));
            panel_json.push(json!({"panel": panel.id, "kind": panel.kind.name(), "first_ms": cold, "p50_ms": p50, "max_ms": p99}));
        }
        let urls: Vec<String> = dashboard.panels.iter().map(|p| panel_url(&p.id)).collect();
        let mut whole: Vec<f64> = (0..repeat)
            .map(|_| whole_dashboard(&http, &urls, true))
            .collect::<Result<_, _>>()?;
        let (w50, w99) = (quantile(&mut whole, 0.5), quantile(&mut whole, 0.99));
        // One district selected: the same panels over a fifth of the rows.
        let district_urls: Vec<String> = urls
            .iter()
            .map(|u| format!("{u}&var-district=Centro"))
            .collect();
        let mut district: Vec<f64> = (0..repeat)
            .map(|_| whole_dashboard(&http, &district_urls, true))
            .collect::<Result<_, _>>()?;
        let d50 = quantile(&mut district, 0.5);
        ctx.record_rss("dashboards", &server);

        let markdown = format!(
            "### Dashboards\n\n\
             **`civiclake serve --demo`** on an empty data directory: listening after **{listening_s:.1} s**; the demo's day (1,000 sensors, 24 h at one reading a minute, written an hour per write) queryable after **{demo_ready_s:.1} s** (target: up in under 30 s).\n\n\
             The shipped dashboards on the demo data, every panel asked for at once (as the page does), 800 × 300 SVG, {repeat} runs after one warm-up:\n\n\
             | dashboard | panels | all drawn, p50 | max |\n|---|---|---|---|\n{}\n\n\
             **Panels over {rows} rows** (`{TABLE}`: {SENSORS} sensors × {MINUTES} minutes, written as Arrow IPC, flushed and compacted in {write_s:.1} s; the dashboard `{BENCH_DASHBOARD}` of 8 panels, each over the whole day, downsampled in SQL to the 800-pixel width). Request to SVG over loopback, {repeat} runs after the first:\n\n\
             | panel | first | p50 | max |\n|---|---|---|---|\n{}\n\n\
             Slowest panel's p50: **{worst_p50:.0} ms** (target < 200 ms). The whole dashboard, 8 panels asked for at once: p50 **{w50:.0} ms**, max {w99:.0} ms (target < 1 s); with one district selected: p50 {d50:.0} ms.\n",
            shipped_rows.join("\n"),
            panel_rows.join("\n"),
        );
        Ok(Section {
            markdown,
            json: json!({
                "demo_listening_s": listening_s,
                "demo_day_queryable_s": demo_ready_s,
                "shipped": shipped_json,
                "rows": rows,
                "write_s": write_s,
                "panels": panel_json,
                "slowest_panel_p50_ms": worst_p50,
                "dashboard_p50_ms": w50,
                "dashboard_max_ms": w99,
                "dashboard_one_district_p50_ms": d50,
            }),
        })
    }
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Copies the shipped dashboard files and their `geo/` layers into `to`.
fn copy_dashboards(from: &Path, to: &Path) -> Result<(), String> {
    for sub in ["", "geo"] {
        let (src, dst) = (from.join(sub), to.join(sub));
        std::fs::create_dir_all(&dst).map_err(|e| format!("{}: {e}", dst.display()))?;
        let entries = std::fs::read_dir(&src).map_err(|e| format!("{}: {e}", src.display()))?;
        for e in entries.flatten() {
            let path = e.path();
            let keep = matches!(
                path.extension().and_then(|x| x.to_str()),
                Some("toml" | "geojson")
            );
            if keep && path.is_file() {
                std::fs::copy(&path, dst.join(e.file_name()))
                    .map_err(|e| format!("{}: {e}", path.display()))?;
            }
        }
    }
    Ok(())
}

/// Seconds from `started` until the demo's backfill is written: the hour before the spawn
/// holds (nearly) as many `air` rows as the first hour of the day, which is written first.
fn wait_for_demo_day(server: &Civiclake, spawned_at: i64, started: Instant) -> Result<f64, String> {
    let hour = |from: i64| {
        format!(
            "SELECT count(*) AS n FROM air WHERE time >= to_timestamp_seconds({from}) AND time < to_timestamp_seconds({})",
            from + 3600
        )
    };
    let sql = format!(
        "SELECT (SELECT n FROM ({})) AS first, (SELECT n FROM ({})) AS last",
        hour(spawned_at - 23 * 3600),
        hour(spawned_at - 2 * 3600)
    );
    loop {
        if let Ok(rows) = server.post_json("/api/v1/query", &json!({"sql": sql, "format": "json"}))
        {
            let first = rows
                .pointer("/0/first")
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(0);
            let last = rows
                .pointer("/0/last")
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(0);
            if first > 0 && last * 10 >= first * 9 {
                return Ok(started.elapsed().as_secs_f64());
            }
        }
        if started.elapsed() > DEMO_DEADLINE {
            return Err(format!(
                "serve --demo: the day was not queryable after {} s",
                DEMO_DEADLINE.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The columns of one write request of the panel dataset.
#[derive(Default)]
struct Columns<'a> {
    time: Vec<i64>,
    sensor: Vec<&'a str>,
    district: Vec<&'a str>,
    lat: Vec<f64>,
    lon: Vec<f64>,
    value: Vec<f64>,
}

/// Writes the day of `SENSORS` sensors from `day_start` (µs) as Arrow IPC; returns the rows.
///
/// Each sensor has the place and district the simulator gives it, a level of its own, the
/// city's daily curve (rush hours) and noise.
fn write_day(server: &Civiclake, day_start: i64) -> Result<usize, String> {
    let city = City::new(CityConfig {
        sensors: SENSORS,
        days: 1,
        ..CityConfig::default()
    })
    .map_err(|e| e.to_string())?;
    let sensors = city.sensors().map_err(|e| e.to_string())?;
    let schema = Arc::new(Schema::new(vec![
        Field::new(
            "time",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("sensor", DataType::Utf8, false),
        Field::new("district", DataType::Utf8, false),
        Field::new("lat", DataType::Float64, false),
        Field::new("lon", DataType::Float64, false),
        Field::new("value", DataType::Float64, false),
    ]));
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(600))
        .build()
        .map_err(|e| e.to_string())?;
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut noise = move || {
        // xorshift64*: enough for noise, the same every run.
        seed ^= seed >> 12;
        seed ^= seed << 25;
        seed ^= seed >> 27;
        (seed.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64 - 0.5
    };
    let level: Vec<f64> = (0..sensors.len()).map(|_| 30.0 + 16.0 * noise()).collect();
    let total = sensors.len() * MINUTES as usize;
    let mut cols = Columns::default();
    let mut rows = 0;
    for minute in 0..MINUTES {
        let hour = minute as f64 / 60.0;
        // Two rush hours (Europe/Rome is UTC+1 or +2: about 6–7 and 16–17 UTC).
        let rush = 12.0 * (-((hour - 6.5) / 1.5).powi(2)).exp()
            + 10.0 * (-((hour - 16.5) / 2.0).powi(2)).exp();
        for (i, s) in sensors.iter().enumerate() {
            cols.time.push(day_start + minute * 60_000_000);
            cols.sensor.push(&s.id);
            cols.district.push(s.district);
            cols.lat.push(s.lat);
            cols.lon.push(s.lon);
            cols.value.push((level[i] + rush + 6.0 * noise()).max(0.0));
            if cols.time.len() == WRITE_ROWS || rows + cols.time.len() == total {
                let taken = std::mem::take(&mut cols);
                rows += taken.time.len();
                let arrays: Vec<ArrayRef> = vec![
                    Arc::new(TimestampMicrosecondArray::from(taken.time).with_timezone("UTC")),
                    Arc::new(StringArray::from(taken.sensor)),
                    Arc::new(StringArray::from(taken.district)),
                    Arc::new(Float64Array::from(taken.lat)),
                    Arc::new(Float64Array::from(taken.lon)),
                    Arc::new(Float64Array::from(taken.value)),
                ];
                let batch =
                    RecordBatch::try_new(schema.clone(), arrays).map_err(|e| e.to_string())?;
                let mut body = Vec::new();
                {
                    let mut w =
                        StreamWriter::try_new(&mut body, &schema).map_err(|e| e.to_string())?;
                    w.write(&batch).map_err(|e| e.to_string())?;
                    w.finish().map_err(|e| e.to_string())?;
                }
                let r = http
                    .post(format!("{}/api/v1/write?table={TABLE}", server.url))
                    .header("content-type", "application/vnd.apache.arrow.stream")
                    .body(body)
                    .send()
                    .map_err(|e| format!("write {TABLE}: {e}"))?;
                if !r.status().is_success() {
                    let status = r.status();
                    return Err(format!(
                        "write {TABLE}: {status}: {}",
                        r.text().unwrap_or_default()
                    ));
                }
            }
        }
    }
    Ok(rows)
}

/// Milliseconds from request to the whole SVG; an error, an error image or "No data" fails
/// the part (a fast wrong answer is no measurement).
fn timed_svg(http: &reqwest::blocking::Client, url: &str, need_data: bool) -> Result<f64, String> {
    let t = Instant::now();
    let r = http.get(url).send().map_err(|e| format!("{url}: {e}"))?;
    let status = r.status();
    let body = r.text().map_err(|e| format!("{url}: {e}"))?;
    let ms = t.elapsed().as_secs_f64() * 1e3;
    if !status.is_success() || body.contains("could not be drawn") {
        return Err(format!("{url}: {status}: {}", first_text(&body)));
    }
    if need_data && body.contains("No data") {
        return Err(format!("{url}: the panel drew no data"));
    }
    if !body.starts_with("<svg") && !body.starts_with("<?xml") {
        return Err(format!("{url}: not an SVG: {}", first_text(&body)));
    }
    Ok(ms)
}

/// Milliseconds until every panel of `urls` is drawn, all asked for at once.
fn whole_dashboard(
    http: &reqwest::blocking::Client,
    urls: &[String],
    need_data: bool,
) -> Result<f64, String> {
    let t = Instant::now();
    std::thread::scope(|s| {
        let handles: Vec<_> = urls
            .iter()
            .map(|u| s.spawn(move || timed_svg(http, u, need_data)))
            .collect();
        for h in handles {
            h.join()
                .map_err(|_| "a panel request panicked".to_string())??;
        }
        Ok::<(), String>(())
    })?;
    Ok(t.elapsed().as_secs_f64() * 1e3)
}

/// The start of a body, for an error message.
fn first_text(body: &str) -> String {
    body.chars().take(300).collect()
}
