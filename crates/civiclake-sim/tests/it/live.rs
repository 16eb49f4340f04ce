//! The fleet health stream and live generation window by window.

#![allow(clippy::unwrap_used)]

use arrow::array::{
    Array, BooleanArray, DictionaryArray, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use arrow::compute::concat_batches;
use arrow::datatypes::Int32Type;
use civiclake_sim::{
    City, CityConfig, Kind, LiveCity, LiveOptions, STATUS_TABLE, SimError, status_schema,
};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Instant;

const S: i64 = 1_000_000;
const HOUR: i64 = 3600 * S;
const DAY: i64 = 24 * HOUR;

fn config(seed: u64, sensors: u32, interval_secs: u64) -> CityConfig {
    CityConfig {
        seed,
        sensors,
        interval_secs,
        ..CityConfig::default()
    }
}

fn times(b: &RecordBatch) -> Vec<i64> {
    b.column(0)
        .as_any()
        .downcast_ref::<TimestampMicrosecondArray>()
        .unwrap()
        .values()
        .to_vec()
}

fn tags(b: &RecordBatch, column: &str) -> Vec<String> {
    let d = b
        .column_by_name(column)
        .unwrap()
        .as_any()
        .downcast_ref::<DictionaryArray<Int32Type>>()
        .unwrap();
    let values = d.values().as_any().downcast_ref::<StringArray>().unwrap();
    d.keys()
        .values()
        .iter()
        .map(|&k| values.value(k as usize).to_string())
        .collect()
}

fn ints(b: &RecordBatch, column: &str) -> Int64Array {
    b.column_by_name(column)
        .unwrap()
        .as_any()
        .downcast_ref::<Int64Array>()
        .unwrap()
        .clone()
}

fn floats(b: &RecordBatch, column: &str) -> Float64Array {
    b.column_by_name(column)
        .unwrap()
        .as_any()
        .downcast_ref::<Float64Array>()
        .unwrap()
        .clone()
}

fn bools(b: &RecordBatch, column: &str) -> BooleanArray {
    b.column_by_name(column)
        .unwrap()
        .as_any()
        .downcast_ref::<BooleanArray>()
        .unwrap()
        .clone()
}

/// Window ends from the start to `end`: uneven steps, single seconds, and a clock stepping
/// back (an empty window).
fn window_ends(start: i64, end: i64) -> Vec<i64> {
    let mut ends = Vec::new();
    let mut t = start;
    let steps = [
        7 * 60 * S + 13 * S,
        S,
        S,
        0,
        -5 * S,
        2 * HOUR + 1,
        1,
        59 * S,
    ];
    let mut i = 0;
    while t < end {
        let step = steps[i % steps.len()];
        ends.push((t + step).min(end));
        if step > 0 {
            t = (t + step).min(end);
        }
        i += 1;
    }
    ends
}

/// Concatenated batches per table of a live run over `ends`.
fn run_live(live: &mut LiveCity, ends: &[i64]) -> BTreeMap<&'static str, RecordBatch> {
    let mut per_table: BTreeMap<&'static str, Vec<RecordBatch>> = BTreeMap::new();
    for &end in ends {
        let from = live.position();
        let w = live.advance_to(end).unwrap();
        assert_eq!(w.from_micros, from);
        assert_eq!(w.to_micros, end.max(from));
        assert_eq!(live.position(), end.max(from));
        for (table, batch) in w.tables {
            assert!(batch.num_rows() > 0, "{table}: empty batch");
            if table == STATUS_TABLE {
                // Status rows are in the window by their time.
                assert!(times(&batch).iter().all(|&t| from <= t && t < end));
            }
            per_table.entry(table).or_default().push(batch);
        }
    }
    per_table
        .into_iter()
        .map(|(table, batches)| {
            let schema = batches[0].schema();
            (table, concat_batches(&schema, &batches).unwrap())
        })
        .collect()
}

#[test]
fn status_rows_model_batteries_signal_and_silences() {
    let city = City::new(config(1, 1000, 60)).unwrap();
    let start = city.config().start_micros;
    let b = city.sensor_status(start, start + DAY, 900).unwrap();
    assert_eq!(b.schema(), status_schema());
    assert_eq!(b.num_rows(), 1000 * 96);
    let t = times(&b);
    assert!(t.windows(2).all(|w| w[0] <= w[1]), "time order");
    assert!(t.iter().all(|&x| start <= x && x < start + DAY));
    let sensors = tags(&b, "sensor");
    let kinds = tags(&b, "kind");
    let districts = tags(&b, "district");
    let battery = floats(&b, "battery_pct");
    let rssi = ints(&b, "rssi_dbm");
    let online = bools(&b, "online");
    let ago = ints(&b, "last_seen_ago_s");
    assert_eq!(
        battery.null_count() + rssi.null_count() + online.null_count(),
        0
    );
    // Every sensor every 15 minutes at its own offset.
    let mut by_sensor: HashMap<&str, Vec<usize>> = HashMap::new();
    for (row, s) in sensors.iter().enumerate() {
        by_sensor.entry(s).or_default().push(row);
    }
    assert_eq!(by_sensor.len(), 1000);
    let infos = city.sensors().unwrap();
    for s in &infos {
        let rows = &by_sensor[s.id.as_str()];
        assert_eq!(rows.len(), 96);
        assert!(rows.windows(2).all(|w| t[w[1]] - t[w[0]] == 900 * S));
        assert_eq!(kinds[rows[0]], s.kind.table());
        assert_eq!(districts[rows[0]], s.district);
    }
    let offsets: HashSet<i64> = infos
        .iter()
        .map(|s| t[by_sensor[s.id.as_str()][0]] - start)
        .collect();
    assert!(
        offsets.len() > 500,
        "status offsets spread: {}",
        offsets.len()
    );
    // Batteries 5–100%, about one in ten under 15%, draining slowly.
    assert!(battery.values().iter().all(|&v| (5.0..=100.0).contains(&v)));
    let latest: Vec<f64> = infos
        .iter()
        .map(|s| battery.value(*by_sensor[s.id.as_str()].last().unwrap()))
        .collect();
    let low = latest.iter().filter(|&&v| v < 15.0).count();
    assert!((50..200).contains(&low), "{low} low batteries");
    let mut replaced = 0;
    for s in &infos {
        let rows = &by_sensor[s.id.as_str()];
        for w in rows.windows(2) {
            let drop = battery.value(w[0]) - battery.value(w[1]);
            // After a silence the battery has drained for hours unseen.
            let most = if online.value(w[0]) { 0.15 } else { 1.5 };
            if drop < -50.0 {
                replaced += 1;
            } else {
                assert!((-1e-9..most).contains(&drop), "{}: drop {drop}", s.id);
            }
        }
    }
    assert!((3..60).contains(&replaced), "{replaced} batteries replaced");
    // Signal: plausible dBm, varying.
    assert!(rssi.values().iter().all(|&v| (-125..=-40).contains(&v)));
    let levels: HashSet<i64> = rssi.values().iter().copied().collect();
    assert!(levels.len() > 30);
    // Silences: some sensors, for hours; while silent the last values stay and the age grows.
    let offline = online.iter().filter(|o| *o == Some(false)).count();
    assert!(
        (200..4000).contains(&offline),
        "{offline} of 96000 rows offline"
    );
    let mut silent_sensors = 0;
    for s in &infos {
        let rows = &by_sensor[s.id.as_str()];
        if rows.iter().any(|&r| !online.value(r)) {
            silent_sensors += 1;
        }
        for w in rows.windows(2) {
            let (a, b) = (w[0], w[1]);
            if online.value(b) {
                assert!(ago.value(b) < 60, "online, heard within the interval");
            } else if !online.value(a) {
                assert_eq!(ago.value(b), ago.value(a) + 900);
                assert_eq!(battery.value(b), battery.value(a));
                assert_eq!(rssi.value(b), rssi.value(a));
            }
        }
    }
    assert!(
        (40..250).contains(&silent_sensors),
        "{silent_sensors} sensors fell silent"
    );
    // A pure function of the time: split windows give the same rows.
    let first = city
        .sensor_status(start, start + 10 * HOUR + 7, 900)
        .unwrap();
    let second = city
        .sensor_status(start + 10 * HOUR + 7, start + DAY, 900)
        .unwrap();
    let joined = concat_batches(&b.schema(), &[first, second]).unwrap();
    assert_eq!(joined, b);
    // Deterministic, seed-dependent, checked settings.
    assert_eq!(city.sensor_status(start, start + DAY, 900).unwrap(), b);
    let other = City::new(config(2, 1000, 60)).unwrap();
    assert_ne!(other.sensor_status(start, start + DAY, 900).unwrap(), b);
    assert!(matches!(
        city.sensor_status(start, start + DAY, 0),
        Err(SimError::Config(_))
    ));
    assert!(matches!(
        city.sensor_status(i64::MIN, start, 900),
        Err(SimError::Config(_))
    ));
    assert_eq!(city.sensor_status(start, start, 900).unwrap().num_rows(), 0);
}

#[test]
fn live_windows_are_contiguous_and_equal_the_city() {
    let cfg = config(5, 40, 60);
    let city = City::new(cfg.clone()).unwrap();
    let start = cfg.start_micros;
    let end = start + DAY;
    let mut live = LiveCity::new(
        cfg.clone(),
        LiveOptions {
            drop_silent_readings: false,
            ..LiveOptions::default()
        },
    )
    .unwrap();
    assert_eq!(live.position(), start);
    let ends = window_ends(start, end);
    assert!(ends.len() > 80, "{} windows", ends.len());
    let got = run_live(&mut live, &ends);
    // The readings: exactly City::record_batches' rows that arrived before the end, in the
    // same (arrival) order.
    let mut arrived: HashMap<Kind, usize> = HashMap::new();
    for r in city.readings() {
        if r.arrival_micros < end {
            *arrived.entry(r.kind).or_default() += 1;
        }
    }
    let mut from_city: HashMap<Kind, Vec<RecordBatch>> = HashMap::new();
    for b in city.record_batches(10_000) {
        let (kind, batch) = b.unwrap();
        from_city.entry(kind).or_default().push(batch);
    }
    for kind in Kind::ALL {
        let want = concat_batches(&kind.schema(), &from_city[&kind]).unwrap();
        let want = want.slice(0, arrived[&kind]);
        let have = &got[kind.table()];
        assert_eq!(have.num_rows(), arrived[&kind], "{}", kind.table());
        assert_eq!(have, &want, "{}", kind.table());
        // Per sensor: one reading a minute, none twice, none missing (but the last hours'
        // late ones, which have not arrived yet).
        let mut per_sensor: HashMap<String, Vec<i64>> = HashMap::new();
        for (s, t) in tags(have, "sensor").into_iter().zip(times(have)) {
            per_sensor.entry(s).or_default().push(t);
        }
        assert_eq!(per_sensor.len(), 8);
        for (s, mut t) in per_sensor {
            t.sort_unstable();
            assert!(t.windows(2).all(|w| w[1] > w[0]), "{s}: a reading twice");
            let phase = t[0] - start;
            assert!((0..60 * S).contains(&phase));
            let settled: Vec<i64> = t.iter().copied().filter(|&x| x < end - 6 * HOUR).collect();
            let want: Vec<i64> = (0..settled.len() as i64)
                .map(|k| start + phase + k * 60 * S)
                .collect();
            assert_eq!(settled, want, "{s}: a reading missing");
            assert_eq!(settled.len(), 18 * 60, "{s}");
            assert!(t.len() > 1430 && t.len() <= 1440, "{s}: {}", t.len());
        }
    }
    // The status rows: those of City::sensor_status for the whole run.
    assert_eq!(
        got[STATUS_TABLE],
        city.sensor_status(start, end, 900).unwrap()
    );
    // Determinism: the same settings and windows give the same batches; the window sizes do
    // not matter.
    let mut again = LiveCity::new(
        cfg.clone(),
        LiveOptions {
            drop_silent_readings: false,
            ..LiveOptions::default()
        },
    )
    .unwrap();
    let hourly: Vec<i64> = (1..=24).map(|h| start + h * HOUR).collect();
    assert_eq!(run_live(&mut again, &hourly), got);
    let mut other = LiveCity::new(config(6, 40, 60), LiveOptions::default()).unwrap();
    assert_ne!(run_live(&mut other, &hourly)["air"], got["air"]);
}

#[test]
fn live_readings_pause_while_a_sensor_is_silent() {
    let cfg = config(1, 300, 60);
    let start = cfg.start_micros;
    let hourly: Vec<i64> = (1..=24).map(|h| start + h * HOUR).collect();
    let all = run_live(
        &mut LiveCity::new(
            cfg.clone(),
            LiveOptions {
                drop_silent_readings: false,
                ..LiveOptions::default()
            },
        )
        .unwrap(),
        &hourly,
    );
    let some = run_live(
        &mut LiveCity::new(cfg.clone(), LiveOptions::default()).unwrap(),
        &hourly,
    );
    let status = &some[STATUS_TABLE];
    assert_eq!(status, &all[STATUS_TABLE]);
    // Silent spans per sensor from the status rows: (status time - age, status time].
    let online = bools(status, "online");
    let ago = ints(status, "last_seen_ago_s");
    let mut silent: HashMap<String, Vec<(i64, i64)>> = HashMap::new();
    for (row, (s, t)) in tags(status, "sensor")
        .into_iter()
        .zip(times(status))
        .enumerate()
    {
        if !online.value(row) {
            silent
                .entry(s)
                .or_default()
                .push((t - ago.value(row) * S, t));
        }
    }
    assert!(silent.len() > 5, "{} sensors fell silent", silent.len());
    let mut dropped_total = 0;
    for kind in Kind::ALL {
        let (a, b) = (&all[kind.table()], &some[kind.table()]);
        let key = |batch: &RecordBatch| -> Vec<(String, i64)> {
            tags(batch, "sensor")
                .into_iter()
                .zip(times(batch))
                .collect()
        };
        let kept: HashSet<(String, i64)> = key(b).into_iter().collect();
        assert_eq!(kept.len(), b.num_rows());
        let mut dropped = 0;
        for (s, t) in key(a) {
            if kept.contains(&(s.clone(), t)) {
                continue;
            }
            dropped += 1;
            // Dropped only while the status says the sensor is silent, or in the status
            // interval after it last said so (the silence ended before the next status row),
            // or before the first or after the last status row of the run.
            let spans = silent.get(&s).map(Vec::as_slice).unwrap_or_default();
            let in_span = spans
                .iter()
                .any(|&(from, to)| from < t && t <= to + 900 * S);
            let edge = t < start + 900 * S || t > start + DAY - 900 * S;
            assert!(in_span || edge, "{s} at {t} dropped");
        }
        // Kept rows are the same rows, in the same order.
        let kept_rows: Vec<(String, i64)> = key(b);
        let all_rows: Vec<(String, i64)> =
            key(a).into_iter().filter(|k| kept.contains(k)).collect();
        assert_eq!(kept_rows, all_rows);
        // And no reading falls inside a silence that the status reports.
        for (s, t) in &kept_rows {
            let spans = silent.get(s).map(Vec::as_slice).unwrap_or_default();
            assert!(
                !spans.iter().any(|&(from, to)| from < *t && *t <= to),
                "{s} at {t} kept while silent"
            );
        }
        dropped_total += dropped;
    }
    assert!(dropped_total > 100, "{dropped_total} readings dropped");
}

#[test]
fn live_backfill_of_a_day_is_quick() {
    let cfg = config(1, 1000, 60);
    let start = cfg.start_micros;
    let mut live = LiveCity::new(cfg, LiveOptions::default()).unwrap();
    let began = Instant::now();
    let mut rows = 0;
    for h in 1..=24 {
        rows += live.advance_to(start + h * HOUR).unwrap().rows();
    }
    let took = began.elapsed();
    assert!(rows > 1_400_000, "{rows} rows");
    assert!(took.as_secs_f64() < 10.0, "backfill took {took:?}");
    // Then one window a second.
    let w = live.advance_to(live.position() + S).unwrap();
    assert!(
        (1..100).contains(&w.rows()),
        "{} rows in a second",
        w.rows()
    );
}

#[test]
fn live_settings_and_bad_windows() {
    let bad = LiveCity::new(
        config(1, 5, 60),
        LiveOptions {
            status_interval_secs: 0,
            ..LiveOptions::default()
        },
    );
    assert!(matches!(bad, Err(SimError::Config(_))));
    assert!(matches!(
        LiveCity::new(config(1, 0, 60), LiveOptions::default()),
        Err(SimError::Config(_))
    ));
    let mut live = LiveCity::new(config(1, 5, 60), LiveOptions::default()).unwrap();
    let start = live.position();
    assert!(matches!(
        live.advance_to(i64::MAX),
        Err(SimError::Config(_))
    ));
    assert_eq!(live.position(), start);
    let w = live.advance_to(start - HOUR).unwrap();
    assert_eq!((w.from_micros, w.to_micros, w.rows()), (start, start, 0));
    // The city's `days` does not end a live run.
    let w = live.advance_to(start + 3 * DAY).unwrap();
    assert!(w.rows() > 3 * 5 * 1400);
    assert_eq!(live.position(), start + 3 * DAY);
}
