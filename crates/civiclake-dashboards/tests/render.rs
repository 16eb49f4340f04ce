//! Renders every panel of `tests/fixtures/city.toml` over a fixed data set and compares the
//! SVG with the committed insta snapshots. The data is made with integer arithmetic only
//! (no random numbers, no trigonometry), so the SVG is the same on every machine.
//!
//! Set `CIVICLAKE_DASH_DUMP=/some/dir` to also write each panel as SVG and PNG there.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, Int64Array, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use chrono::{DateTime, Utc};
use civiclake_dashboards::{
    ALL_VALUE, Dashboard, DashboardError, DashboardSet, GeoLayers, PanelRequest, render_error_svg,
    render_png, render_svg,
};

/// 2026-05-04 00:00 in Rome (CEST).
const FROM: &str = "2026-05-03T22:00:00Z";
const HOUR_US: i64 = 3_600_000_000;

fn fixtures() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures"))
}

fn dashboard() -> Dashboard {
    let text = std::fs::read_to_string(fixtures().join("city.toml")).unwrap();
    Dashboard::from_toml("city", &text).unwrap()
}

fn geo() -> GeoLayers {
    GeoLayers::load_dir(&fixtures().join("geo")).unwrap()
}

fn from() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(FROM)
        .unwrap()
        .with_timezone(&Utc)
}

fn from_us() -> i64 {
    from().timestamp_micros()
}

fn request(hours: i64) -> PanelRequest {
    PanelRequest {
        from: from(),
        to: from() + chrono::Duration::hours(hours),
        vars: BTreeMap::from([
            ("district".to_string(), ALL_VALUE.to_string()),
            ("kind".to_string(), "no2".to_string()),
        ]),
        width_px: 800,
        height_px: 300,
    }
}

/// A day's shape in 0..=1 with peaks at 08:00 and 18:00, from minutes since midnight.
fn diurnal(minute: i64) -> f64 {
    let m = minute.rem_euclid(1440) as f64;
    let peak = |at: f64, width: f64| (1.0 - (m - at).abs() / width).max(0.0);
    (0.15 + 0.85 * peak(480.0, 180.0)).max(0.1 + 0.7 * peak(1080.0, 240.0))
}

fn time_field(name: &str) -> Field {
    Field::new(
        name,
        DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        true,
    )
}

fn times(values: Vec<i64>) -> ArrayRef {
    Arc::new(TimestampMicrosecondArray::from(values).with_timezone("UTC"))
}

fn result(fields: Vec<Field>, columns: Vec<ArrayRef>) -> (SchemaRef, Vec<RecordBatch>) {
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(schema.clone(), columns).unwrap();
    (schema, vec![batch])
}

const DISTRICTS: [&str; 3] = ["Centro", "Nord", "Sud"];

/// time, series, value, min, max: three districts every 15 minutes, Nord silent 10:00–12:00.
fn no2_by_district() -> (SchemaRef, Vec<RecordBatch>) {
    let (mut t, mut s, mut v, mut lo, mut hi) = (vec![], vec![], vec![], vec![], vec![]);
    for step in 0..96i64 {
        for (d, name) in DISTRICTS.iter().enumerate() {
            if *name == "Nord" && (40..48).contains(&step) {
                continue;
            }
            let base = 18.0 + 10.0 * d as f64 + 30.0 * diurnal(step * 15 + 20 * d as i64);
            let jitter = ((step * 7 + d as i64 * 13) % 5) as f64;
            t.push(from_us() + step * HOUR_US / 4);
            s.push(*name);
            v.push(base + jitter);
            lo.push(base + jitter - 4.0 - (step % 3) as f64);
            hi.push(base + jitter + 5.0 + (step % 4) as f64);
        }
    }
    result(
        vec![
            time_field("time"),
            Field::new("series", DataType::Utf8, true),
            Field::new("value", DataType::Float64, true),
            Field::new("min", DataType::Float64, true),
            Field::new("max", DataType::Float64, true),
        ],
        vec![
            times(t),
            Arc::new(StringArray::from(s)),
            Arc::new(Float64Array::from(v)),
            Arc::new(Float64Array::from(lo)),
            Arc::new(Float64Array::from(hi)),
        ],
    )
}

/// time, no2, pm10 (wide), hourly, with one null pm10.
fn pollutants() -> (SchemaRef, Vec<RecordBatch>) {
    let hours: Vec<i64> = (0..24).collect();
    let no2: Vec<f64> = hours
        .iter()
        .map(|h| 15.0 + 35.0 * diurnal(h * 60))
        .collect();
    let pm10: Vec<Option<f64>> = hours
        .iter()
        .map(|h| (*h != 13).then(|| 12.0 + 20.0 * diurnal(h * 60 + 60) + (h % 3) as f64))
        .collect();
    result(
        vec![
            time_field("time"),
            Field::new("no2", DataType::Float64, true),
            Field::new("pm10", DataType::Float64, true),
        ],
        vec![
            times(hours.iter().map(|h| from_us() + h * HOUR_US).collect()),
            Arc::new(Float64Array::from(no2)),
            Arc::new(Float64Array::from(pm10)),
        ],
    )
}

fn noise() -> (SchemaRef, Vec<RecordBatch>) {
    result(
        vec![
            Field::new("label", DataType::Utf8, true),
            Field::new("value", DataType::Float64, true),
        ],
        vec![
            Arc::new(StringArray::from(vec![
                "Centro", "Est", "Nord", "Ovest", "Sud",
            ])),
            Arc::new(Float64Array::from(vec![62.4, 55.1, 58.75, 51.0, 57.3])),
        ],
    )
}

fn traffic() -> (SchemaRef, Vec<RecordBatch>) {
    let mut label = vec![];
    let mut series = vec![];
    let mut value = vec![];
    for (d, district) in ["Centro", "Est", "Nord", "Ovest", "Sud"].iter().enumerate() {
        for (k, kind) in ["car", "bus", "bicycle"].iter().enumerate() {
            label.push(*district);
            series.push(*kind);
            value.push((d as i64 + 2) * (3 - k as i64) * 410 + (d as i64 * 97) % 300);
        }
    }
    result(
        vec![
            Field::new("label", DataType::Utf8, true),
            Field::new("series", DataType::Utf8, true),
            Field::new("value", DataType::Int64, true),
        ],
        vec![
            Arc::new(StringArray::from(label)),
            Arc::new(StringArray::from(series)),
            Arc::new(Int64Array::from(value)),
        ],
    )
}

fn pm10_readings() -> (SchemaRef, Vec<RecordBatch>) {
    let values: Vec<f64> = (0..400i64)
        .map(|i| 10.0 + 25.0 * diurnal(i * 37 % 1440) + ((i * 13) % 11) as f64)
        .collect();
    result(
        vec![Field::new("value", DataType::Float64, true)],
        vec![Arc::new(Float64Array::from(values))],
    )
}

/// Hourly parking occupancy for a week from Monday 4 May (local), Wednesday 14:00 missing.
fn parking() -> (SchemaRef, Vec<RecordBatch>) {
    let mut t = vec![];
    let mut v = vec![];
    for h in 0..(7 * 24i64) {
        if h == 2 * 24 + 14 {
            continue;
        }
        let weekend = h / 24 >= 5;
        let busy = diurnal((h % 24) * 60 + 30) * if weekend { 55.0 } else { 90.0 };
        t.push(from_us() + h * HOUR_US);
        v.push((5.0 + busy).min(100.0));
    }
    result(
        vec![
            time_field("time"),
            Field::new("value", DataType::Float64, true),
        ],
        vec![times(t), Arc::new(Float64Array::from(v))],
    )
}

fn waste() -> (SchemaRef, Vec<RecordBatch>) {
    let mut day = vec![];
    let mut hour = vec![];
    let mut value = vec![];
    for (d, name) in ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
        .iter()
        .enumerate()
    {
        for h in 5..14i64 {
            day.push(*name);
            hour.push(h);
            value.push((d as i64 * 5 + h * 3) % 17 + 2);
        }
    }
    result(
        vec![
            Field::new("day", DataType::Utf8, true),
            Field::new("hour", DataType::Int64, true),
            Field::new("value", DataType::Int64, true),
        ],
        vec![
            Arc::new(StringArray::from(day)),
            Arc::new(Int64Array::from(hour)),
            Arc::new(Int64Array::from(value)),
        ],
    )
}

fn latest() -> (SchemaRef, Vec<RecordBatch>) {
    let n = 14i64;
    let sensors: Vec<String> = (0..n).map(|i| format!("air-{:03}", 100 + i * 7)).collect();
    let t: Vec<i64> = (0..n)
        .map(|i| from_us() + 23 * HOUR_US - i * 60_000_000)
        .collect();
    let district: Vec<&str> = (0..n).map(|i| DISTRICTS[(i % 3) as usize]).collect();
    let value: Vec<Option<f64>> = (0..n)
        .map(|i| (i != 4).then(|| 20.0 + ((i * 29) % 23) as f64 + 0.25 * (i % 4) as f64))
        .collect();
    result(
        vec![
            Field::new("sensor", DataType::Utf8, false),
            time_field("time"),
            Field::new("district", DataType::Utf8, true),
            Field::new("value", DataType::Float64, true),
        ],
        vec![
            Arc::new(StringArray::from(sensors)),
            times(t),
            Arc::new(StringArray::from(district)),
            Arc::new(Float64Array::from(value)),
        ],
    )
}

fn one_value(v: f64) -> (SchemaRef, Vec<RecordBatch>) {
    result(
        vec![Field::new("value", DataType::Float64, true)],
        vec![Arc::new(Float64Array::from(vec![v]))],
    )
}

/// Twelve sensors spread over the fixture districts.
fn sensors() -> (SchemaRef, Vec<RecordBatch>) {
    let mut lat = vec![];
    let mut lon = vec![];
    let mut value = vec![];
    let mut label = vec![];
    for i in 0..12i64 {
        lat.push(43.84 + 0.006 * ((i * 5) % 11) as f64);
        lon.push(11.05 + 0.008 * ((i * 7) % 12) as f64);
        value.push(14.0 + ((i * 17) % 31) as f64);
        label.push(format!("s{i:02}"));
    }
    result(
        vec![
            Field::new("lat", DataType::Float64, true),
            Field::new("lon", DataType::Float64, true),
            Field::new("value", DataType::Float64, true),
            Field::new("label", DataType::Utf8, true),
        ],
        vec![
            Arc::new(Float64Array::from(lat)),
            Arc::new(Float64Array::from(lon)),
            Arc::new(Float64Array::from(value)),
            Arc::new(StringArray::from(label)),
        ],
    )
}

fn data_for(panel: &str) -> ((SchemaRef, Vec<RecordBatch>), i64) {
    match panel {
        "no2-by-district" => (no2_by_district(), 24),
        "pollutants" => (pollutants(), 24),
        "noise-by-district" => (noise(), 24),
        "traffic-mix" => (traffic(), 24),
        "pm10-distribution" => (pm10_readings(), 24),
        "week-heatmap" => (parking(), 7 * 24),
        "weekday-heatmap" => (waste(), 7 * 24),
        "latest-readings" => (latest(), 24),
        "no2-now" => (one_value(43.27), 24),
        "sensor-map" => (sensors(), 24),
        other => panic!("no data for panel {other}"),
    }
}

fn dump(name: &str, svg: &str, png: Option<&[u8]>) {
    if let Ok(dir) = std::env::var("CIVICLAKE_DASH_DUMP") {
        let dir = Path::new(&dir);
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join(format!("{name}.svg")), svg).unwrap();
        if let Some(png) = png {
            std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
        }
    }
}

fn png_size(png: &[u8]) -> (u32, u32) {
    let decoder = png::Decoder::new(std::io::Cursor::new(png));
    let reader = decoder.read_info().unwrap();
    let info = reader.info();
    (info.width, info.height)
}

#[test]
fn every_panel_matches_its_snapshot() {
    let dashboard = dashboard();
    let geo = geo();
    DashboardSet::from_toml(
        "city",
        &std::fs::read_to_string(fixtures().join("city.toml")).unwrap(),
    )
    .unwrap()
    .check_layers(&geo)
    .unwrap();
    for panel in &dashboard.panels {
        let ((schema, batches), hours) = data_for(&panel.id);
        let req = request(hours);
        let svg = render_svg(panel, &req, &schema, &batches, &geo).unwrap();
        // Deterministic: a second rendering is byte-identical.
        assert_eq!(
            svg,
            render_svg(panel, &req, &schema, &batches, &geo).unwrap()
        );
        assert!(
            svg.starts_with("<svg width=\"800\" height=\"300\""),
            "{}",
            panel.id
        );
        assert!(
            svg.contains(&format!("<title>{}</title>", panel.title)),
            "{}",
            panel.id
        );
        let png = render_png(panel, &req, &schema, &batches, &geo).unwrap();
        assert_eq!(png_size(&png), (800, 300));
        dump(&panel.id, &svg, Some(&png));
        insta::assert_snapshot!(panel.id.clone(), svg);
    }
}

#[test]
fn panels_show_what_the_data_says() {
    let dashboard = dashboard();
    let geo = geo();
    let render = |id: &str| {
        let panel = dashboard.panel(id).unwrap();
        let ((schema, batches), hours) = data_for(id);
        render_svg(panel, &request(hours), &schema, &batches, &geo).unwrap()
    };
    // Time axis in local time: the day starts at 00:00 Rome, i.e. 22:00 UTC.
    let ts = render("no2-by-district");
    assert!(ts.contains("\n04 May\n</text>"), "{ts}");
    assert!(ts.contains("\n12:00\n</text>"));
    assert!(ts.contains("Europe/Rome time, Mon 04 May 2026"));
    assert!(ts.contains("NO₂ (µg/m³)"));
    for d in DISTRICTS {
        assert!(ts.contains(&format!("\n{d}\n</text>")), "legend lacks {d}");
    }
    assert!(ts.contains("shaded: min–max"));
    // Nord's two silent hours split its line in two.
    assert_eq!(
        ts.matches("stroke=\"#009E73\" stroke-width=\"2\"").count(),
        2,
        "{ts}"
    );

    let stat = render("no2-now");
    assert!(stat.contains("\n43.3 µg/m³\n</text>"));
    assert!(
        stat.contains("fill=\"#E69F00\""),
        "43.27 is in the orange band: {stat}"
    );

    let table = render("latest-readings");
    assert!(table.contains("\nair-100\n</text>"));
    assert!(
        table.contains("\n2026-05-04 23:00:00\n</text>"),
        "local time in tables"
    );
    assert!(table.contains("\n6 more rows\n</text>"), "14 rows, 8 shown");
    assert!(table.contains("\n—\n</text>"), "a null value is a dash");

    let bars = render("noise-by-district");
    assert!(bars.contains("\n62.4\n</text>") && bars.contains("\nOvest\n</text>"));

    let heat = render("week-heatmap");
    assert!(heat.contains("Hour of day (Europe/Rome)"));
    assert!(heat.contains("\nMon 04 May\n</text>") && heat.contains("\nSun 10 May\n</text>"));
    assert!(heat.contains("grey: no data"));

    let map = render("sensor-map");
    for district in ["Nord", "Ovest", "Centro", "Est", "Sud"] {
        assert!(
            map.contains(&format!("\n{district}\n</text>")),
            "map lacks {district}"
        );
    }
    assert_eq!(
        map.matches("<circle").count(),
        24,
        "12 points, filled and outlined"
    );
}

#[test]
fn empty_results_draw_a_frame_saying_no_data() {
    let dashboard = dashboard();
    let geo = geo();
    for panel in &dashboard.panels {
        let ((schema, _), hours) = data_for(&panel.id);
        let empty = [RecordBatch::new_empty(schema.clone())];
        for batches in [&empty[..], &[][..]] {
            let svg = render_svg(panel, &request(hours), &schema, batches, &geo).unwrap();
            assert!(svg.contains("No data"), "{}: {svg}", panel.id);
            let png = render_png(panel, &request(hours), &schema, batches, &geo).unwrap();
            dump(&format!("empty-{}", panel.id), &svg, Some(&png));
            if panel.id == "no2-by-district" {
                insta::assert_snapshot!("empty-timeseries", svg);
            }
        }
    }
}

#[test]
fn missing_columns_are_named() {
    let dashboard = dashboard();
    let geo = geo();
    let (schema, batches) = noise();
    let cases = [
        (
            "no2-by-district",
            "needs a column `time` (a timestamp); the result has label, value",
        ),
        ("traffic-mix", "needs a column `series`"),
        ("sensor-map", "needs a column `lat`"),
        ("week-heatmap", "needs columns `time, value`"),
        ("pm10-distribution", "column `value`"),
    ];
    for (id, expected) in cases {
        let panel = dashboard.panel(id).unwrap();
        let result = render_svg(panel, &request(24), &schema, &batches, &geo);
        if id == "pm10-distribution" {
            // `value` is there and numeric: a histogram of five values.
            assert!(result.is_ok());
            continue;
        }
        let e = result.unwrap_err();
        assert!(matches!(e, DashboardError::Data { .. }));
        let text = e.to_string();
        assert!(text.starts_with(&format!("panel `{id}`: ")), "{text}");
        assert!(text.contains(expected), "{text}");
        // The server shows such an error as an SVG too.
        let svg = render_error_svg(&panel.title, &text);
        assert!(svg.contains("could not be drawn"));
    }
    let (schema, batches) = latest();
    let e = render_svg(
        dashboard.panel("noise-by-district").unwrap(),
        &request(24),
        &schema,
        &batches,
        &geo,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("needs a column `label`"), "{e}");

    let mut huge = request(24);
    huge.width_px = 100_000;
    let (schema, batches) = noise();
    let e = render_png(
        dashboard.panel("noise-by-district").unwrap(),
        &huge,
        &schema,
        &batches,
        &geo,
    )
    .unwrap_err();
    assert!(e.to_string().contains("outside 200–4096"), "{e}");

    let no_geo = GeoLayers::new();
    let (schema, batches) = sensors();
    let e = render_svg(
        dashboard.panel("sensor-map").unwrap(),
        &request(24),
        &schema,
        &batches,
        &no_geo,
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("boundary layer `districts` is not loaded"),
        "{e}"
    );
}

#[test]
fn error_svg_snapshot() {
    let svg = render_error_svg(
        "NO₂ by district",
        "Error during planning: table 'air' not found; check the <table> name & try again",
    );
    dump("error", &svg, None);
    insta::assert_snapshot!("error", svg);
}

/// A day at one-minute resolution for 20 sensors, and 1,000 map points: the sizes the
/// dashboards are specified for. No timing is asserted; the output is checked for shape.
#[test]
fn large_panels_render() {
    let dashboard = dashboard();
    let geo = geo();
    let panel = dashboard.panel("no2-by-district").unwrap();
    let (mut t, mut s, mut v) = (vec![], vec![], vec![]);
    let names: Vec<String> = (0..20).map(|i| format!("sensor-{i:02}")).collect();
    for minute in 0..1440i64 {
        for (i, name) in names.iter().enumerate() {
            t.push(from_us() + minute * 60_000_000);
            s.push(name.clone());
            v.push(
                10.0 + 2.0 * i as f64
                    + 30.0 * diurnal(minute + 7 * i as i64)
                    + ((minute * 31 + i as i64) % 7) as f64,
            );
        }
    }
    let (schema, batches) = result(
        vec![
            time_field("time"),
            Field::new("series", DataType::Utf8, true),
            Field::new("value", DataType::Float64, true),
        ],
        vec![
            times(t),
            Arc::new(StringArray::from(s)),
            Arc::new(Float64Array::from(v)),
        ],
    );
    let req = request(24);
    let svg = render_svg(panel, &req, &schema, &batches, &geo).unwrap();
    // Seven solid lines, then dashed and dotted ones (drawn as many short segments).
    assert!(
        svg.matches("stroke-width=\"2\" points=").count() >= 20,
        "every series is drawn"
    );
    // Two legend lines at 300 px: the rest is counted.
    dump("large-timeseries", &svg, None);
    assert!(
        svg.contains("\nsensor-00\n") && svg.contains("\n+6 more\n"),
        "legend with overflow"
    );
    let png = render_png(panel, &req, &schema, &batches, &geo).unwrap();
    assert_eq!(png_size(&png), (800, 300));
    dump("large-timeseries", &svg, Some(&png));

    let map = dashboard.panel("sensor-map").unwrap();
    let (mut lat, mut lon, mut value) = (vec![], vec![], vec![]);
    // A linear congruential sequence: scattered, and the same everywhere.
    let mut state: u64 = 12_345;
    let mut next = || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) % 10_000
    };
    for _ in 0..1000 {
        let (a, b) = (next() as f64 / 10_000.0, next() as f64 / 10_000.0);
        lat.push(43.835 + 0.075 * a);
        lon.push(11.04 + 0.115 * b);
        value.push(60.0 * a * b);
    }
    let (schema, batches) = result(
        vec![
            Field::new("lat", DataType::Float64, true),
            Field::new("lon", DataType::Float64, true),
            Field::new("value", DataType::Float64, true),
        ],
        vec![
            Arc::new(Float64Array::from(lat)),
            Arc::new(Float64Array::from(lon)),
            Arc::new(Float64Array::from(value)),
        ],
    );
    let svg = render_svg(map, &req, &schema, &batches, &geo).unwrap();
    assert_eq!(
        svg.matches("<circle").count(),
        1000,
        "no outlines for so many points"
    );
    let png = render_png(map, &req, &schema, &batches, &geo).unwrap();
    dump("large-map", &svg, Some(&png));
}

#[test]
fn the_request_parser_feeds_the_renderer() {
    let dashboard = dashboard();
    let params: Vec<(String, String)> = [
        ("from", "2026-05-04T00:00:00+02:00"),
        ("to", "2026-05-05T00:00:00+02:00"),
        ("var-district", "Sud"),
        ("width", "640"),
        ("height", "240"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let req = PanelRequest::from_query(&dashboard, &params, from()).unwrap();
    assert_eq!(
        req,
        PanelRequest {
            width_px: 640,
            height_px: 240,
            vars: BTreeMap::from([
                ("district".to_string(), "Sud".to_string()),
                ("kind".to_string(), "no2".to_string()),
            ]),
            ..request(24)
        }
    );
    let panel = dashboard.panel("no2-by-district").unwrap();
    let sql = dashboard.panel_sql(panel, &req).unwrap();
    assert!(
        sql.contains("date_bin(INTERVAL '135 seconds', time, TIMESTAMP '2026-05-03T22:00:00Z')"),
        "{sql}"
    );
    assert!(sql.contains("(district = 'Sud') AND kind = 'no2'"), "{sql}");
    let (schema, batches) = no2_by_district();
    let svg = render_svg(panel, &req, &schema, &batches, &geo()).unwrap();
    assert!(svg.starts_with("<svg width=\"640\" height=\"240\""));
}

/// The smallest and an odd size draw every panel without error (labels thin out, tables
/// and legends shrink).
#[test]
fn every_panel_draws_at_extreme_sizes() {
    let dashboard = dashboard();
    let geo = geo();
    for (w, h) in [(200, 120), (4096, 130), (210, 900)] {
        for panel in &dashboard.panels {
            let ((schema, batches), hours) = data_for(&panel.id);
            let mut req = request(hours);
            req.width_px = w;
            req.height_px = h;
            let svg = render_svg(panel, &req, &schema, &batches, &geo)
                .unwrap_or_else(|e| panic!("{} at {w}×{h}: {e}", panel.id));
            assert!(svg.starts_with(&format!("<svg width=\"{w}\" height=\"{h}\"")));
            let png = render_png(panel, &req, &schema, &batches, &geo).unwrap();
            assert_eq!(png_size(&png), (w, h));
            dump(&format!("{}-{w}x{h}", panel.id), &svg, Some(&png));
        }
    }
}
