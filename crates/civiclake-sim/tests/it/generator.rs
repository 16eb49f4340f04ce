//! The generator: determinism, row counts, bounds, realism rates, outputs.

use civiclake_sim::output::{
    write_line_protocol, write_line_protocol_file, write_ndjson, write_parquet_dir,
};
use civiclake_sim::{City, CityConfig, Kind, Status, Value};
use std::collections::HashMap;

/// Per sensor: its readings' times and values.
type BySensor = HashMap<String, Vec<(i64, Vec<Option<Value>>)>>;

fn city(seed: u64, sensors: u32, interval_secs: u64) -> City {
    City::new(CityConfig {
        seed,
        sensors,
        interval_secs,
        ..CityConfig::default()
    })
    .expect("valid settings")
}

fn lp(city: &City) -> String {
    let mut s = String::new();
    for r in city.readings() {
        write_line_protocol(&r, &mut s);
    }
    s
}

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() {
    let a = lp(&city(7, 20, 300));
    let b = lp(&city(7, 20, 300));
    assert_eq!(a, b);
    assert_ne!(a, lp(&city(8, 20, 300)));
    let mut n1 = String::new();
    let mut n2 = String::new();
    for (r1, r2) in city(7, 20, 300).readings().zip(city(7, 20, 300).readings()) {
        write_ndjson(&r1, &mut n1);
        write_ndjson(&r2, &mut n2);
    }
    assert_eq!(n1, n2);
    // Files too.
    let dir = tempfile::tempdir().unwrap();
    let (p1, p2) = (dir.path().join("a.lp"), dir.path().join("b.lp"));
    write_line_protocol_file(&city(7, 20, 300), &p1, &mut |_| {}).unwrap();
    write_line_protocol_file(&city(7, 20, 300), &p2, &mut |_| {}).unwrap();
    assert_eq!(std::fs::read(&p1).unwrap(), std::fs::read(&p2).unwrap());
    assert_eq!(std::fs::read_to_string(&p1).unwrap(), a);
}

#[test]
fn line_protocol_and_ndjson_shapes() {
    let c = city(1, 5, 3600);
    let r = c.readings().find(|r| r.kind == Kind::Air).unwrap();
    let mut s = String::new();
    write_line_protocol(&r, &mut s);
    assert!(
        s.starts_with("air,sensor=air-00000,district=Centro pm10="),
        "{s}"
    );
    assert!(s.ends_with(&format!(" {}000\n", r.time_micros)), "{s}");
    assert!(r.time_micros >= 1_767_225_600_000_000 && r.time_micros < 1_767_229_200_000_000);
    assert!(s.contains(",battery="), "{s}");
    let mut j = String::new();
    write_ndjson(&r, &mut j);
    assert!(
        j.starts_with("{\"table\":\"air\",\"time\":\"2026-01-01T00:"),
        "{j}"
    );
    assert!(j.ends_with("}\n"), "{j}");
    // Every kind in turn, districts in turn after each round of kinds.
    let kinds: Vec<(&str, &str)> = c
        .readings()
        .take(5)
        .map(|r| (r.kind.table(), r.district))
        .collect();
    let mut tables: Vec<&str> = kinds.iter().map(|k| k.0).collect();
    tables.sort_unstable();
    assert_eq!(tables, ["air", "noise", "parking", "traffic", "waste"]);
    let mut districts: Vec<&str> = kinds.iter().map(|k| k.1).collect();
    districts.sort_unstable();
    assert_eq!(districts, ["Centro", "Est", "Nord", "Ovest", "Sud"]);
}

#[test]
fn row_counts_are_sensors_times_ticks() {
    let c = city(3, 23, 600);
    assert_eq!(c.total_rows(), 23 * 144);
    let per_table = c.rows_per_table();
    assert_eq!(per_table.iter().map(|p| p.1).sum::<u64>(), 23 * 144);
    assert_eq!(per_table[0], (Kind::Air, 5 * 144));
    assert_eq!(per_table[4], (Kind::Waste, 4 * 144));
    assert_eq!(c.readings().count() as u64, 23 * 144);
    let mut batch_rows: HashMap<Kind, u64> = HashMap::new();
    for b in c.record_batches(100) {
        let (kind, batch) = b.unwrap();
        assert!(batch.num_rows() <= 100);
        assert_eq!(batch.schema(), kind.schema());
        *batch_rows.entry(kind).or_default() += batch.num_rows() as u64;
    }
    for (kind, rows) in per_table {
        assert_eq!(batch_rows[&kind], rows, "{kind:?}");
    }
}

/// A 100-sensor day at 60 s: 144 000 readings.
#[test]
fn realism_rates_bounds_cycles_and_stuck_sensors() {
    let c = city(42, 100, 60);
    let mut rows = 0u64;
    let mut out_of_order = 0u64;
    let mut late = 0u64;
    let mut missing = 0u64;
    let mut faults = 0u64;
    let mut max_seen: HashMap<Kind, i64> = HashMap::new();
    let mut per_sensor: BySensor = HashMap::new();
    // Traffic at the morning rush hour (08:00 Rome) against the night (03:00 Rome).
    let (mut rush, mut night) = ((0.0, 0u32), (0.0, 0u32));
    let mut prev_arrival = i64::MIN;
    for r in c.readings() {
        rows += 1;
        assert!(r.arrival_micros >= prev_arrival, "arrival order");
        prev_arrival = r.arrival_micros;
        let max = max_seen.entry(r.kind).or_insert(i64::MIN);
        if r.time_micros < *max {
            out_of_order += 1;
            if r.time_micros < *max - 3_600_000_000 {
                late += 1;
            }
        }
        *max = (*max).max(r.time_micros);
        let n = r.kind.fields().len();
        if r.values[..n].iter().any(Option::is_none) {
            missing += 1;
        }
        assert!(r.values[n..].iter().all(Option::is_none));
        for (spec, v) in r.kind.fields().iter().zip(r.values.iter()) {
            if let Some(v) = v {
                let (lo, hi) = spec.bounds(60);
                assert!(
                    (lo..=hi).contains(&v.as_f64()),
                    "{} {v:?} outside {lo}..{hi}",
                    spec.name
                );
                assert_eq!(matches!(v, Value::Int(_)), spec.count, "{}", spec.name);
            }
        }
        assert!((0.0..=100.0).contains(&r.battery), "{}", r.battery);
        if r.status == Status::Fault {
            faults += 1;
        }
        if r.kind == Kind::Traffic
            && let Some(Value::Int(v)) = r.values[0]
        {
            let utc_hour = (r.time_micros / 3_600_000_000) % 24;
            if utc_hour == 7 {
                rush = (rush.0 + v as f64, rush.1 + 1);
            } else if utc_hour == 2 {
                night = (night.0 + v as f64, night.1 + 1);
            }
        }
        per_sensor
            .entry(r.sensor.to_string())
            .or_default()
            .push((r.time_micros, r.values.to_vec()));
    }
    assert_eq!(rows, 100 * 1440);
    let share = |n: u64| n as f64 / rows as f64;
    assert!(
        (0.016..=0.024).contains(&share(out_of_order)),
        "out of order {}",
        share(out_of_order)
    );
    assert!(
        (0.0005..=0.0016).contains(&share(late)),
        "late {}",
        share(late)
    );
    assert!(
        (0.008..=0.012).contains(&share(missing)),
        "missing {}",
        share(missing)
    );
    eprintln!(
        "out of order {} late {} missing {} faults {faults}",
        share(out_of_order),
        share(late),
        share(missing)
    );
    assert!(faults > 0, "no faults");
    assert!(rush.0 / f64::from(rush.1) > 2.0 * night.0 / f64::from(night.1));
    // Stuck sensors: at least an hour of readings repeating the same values.
    let mut stuck = 0;
    for readings in per_sensor.values_mut() {
        readings.sort_by_key(|r| r.0);
        let mut run = 0;
        for w in readings.windows(2) {
            let same = w[0]
                .1
                .iter()
                .zip(w[1].1.iter())
                .all(|(a, b)| a.is_none() || b.is_none() || a == b);
            run = if same { run + 1 } else { 0 };
            if run == 60 {
                stuck += 1;
            }
        }
    }
    eprintln!("stuck episodes {stuck}");
    assert!(stuck > 0, "no stuck sensor");
}

#[test]
fn parquet_files_per_table_in_lake_conventions() {
    let dir = tempfile::tempdir().unwrap();
    let c = city(5, 10, 900);
    let mut last = 0;
    let (paths, rows) = write_parquet_dir(&c, &dir.path().join("out"), &mut |n| last = n).unwrap();
    assert_eq!(rows, 10 * 96);
    assert_eq!(last, rows);
    assert_eq!(paths.len(), 5);
    for (kind, want) in c.rows_per_table() {
        let path = dir
            .path()
            .join("out")
            .join(format!("{}.parquet", kind.table()));
        let file = std::fs::File::open(&path).unwrap();
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap();
        let mut got = 0;
        for b in reader {
            let b = b.unwrap();
            assert_eq!(b.schema().fields(), kind.schema().fields());
            got += b.num_rows() as u64;
        }
        assert_eq!(got, want, "{kind:?}");
    }
}

#[test]
fn bad_settings_are_typed_errors() {
    let bad = |c: CityConfig| City::new(c).unwrap_err().to_string();
    assert!(
        bad(CityConfig {
            sensors: 0,
            ..CityConfig::default()
        })
        .contains("sensors")
    );
    assert!(
        bad(CityConfig {
            days: 0,
            ..CityConfig::default()
        })
        .contains("days")
    );
    assert!(
        bad(CityConfig {
            interval_secs: 0,
            ..CityConfig::default()
        })
        .contains("interval")
    );
    assert!(
        bad(CityConfig {
            missing_rate: 1.5,
            ..CityConfig::default()
        })
        .contains("missing")
    );
    assert!(
        bad(CityConfig {
            start_micros: i64::MAX - 1,
            ..CityConfig::default()
        })
        .contains("start")
    );
}
