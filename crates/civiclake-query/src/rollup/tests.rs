use super::RollupDef;
use crate::{QueryConfig, QueryEngine, SqlScope};
use civiclake_core::{field_column, tag_column, time_column};
use civiclake_lake::{Lake, LakeConfig, OpenMode};
use datafusion::arrow::array::{
    ArrayRef, Float64Array, Int64Array, RecordBatch, StringDictionaryBuilder,
    TimestampMicrosecondArray,
};
use datafusion::arrow::compute::cast as cast_array;
use datafusion::arrow::datatypes::{DataType, Field, Int32Type, Schema};
use datafusion::arrow::util::pretty::pretty_format_batches;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// 2026-01-01T00:00:00Z.
const JAN_1: i64 = 1_767_225_600_000_000;
const MINUTE: i64 = 60_000_000;
const HOUR: i64 = 60 * MINUTE;
/// (sensor, district): s5 has no district.
const SENSORS: [(&str, Option<&str>); 5] = [
    ("s1", Some("north")),
    ("s2", Some("north")),
    ("s3", Some("south")),
    ("s4", Some("south")),
    ("s5", None),
];

/// One row per sensor and minute in [from, to) (minutes since JAN_1): integer-valued floats
/// (sums are exact in any order), some NULLs, and one sensor with no no2 for a whole hour.
fn readings(from: i64, to: i64) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        time_column(),
        tag_column("sensor"),
        tag_column("district"),
        field_column("pm25", DataType::Float64),
        field_column("no2", DataType::Float64),
        field_column("people", DataType::Int64),
    ]));
    let mut time = Vec::new();
    let mut sensor = StringDictionaryBuilder::<Int32Type>::new();
    let mut district = StringDictionaryBuilder::<Int32Type>::new();
    let (mut pm25, mut no2, mut people) = (Vec::new(), Vec::new(), Vec::new());
    for m in from..to {
        for (i, (s, d)) in SENSORS.iter().enumerate() {
            let i = i as i64;
            time.push(JAN_1 + m * MINUTE);
            sensor.append_value(s);
            district.append_option(*d);
            pm25.push(((m + i) % 17 != 0).then_some(((m * 7 + i * 13) % 50) as f64));
            let silent = i == 3 && (5 * 60..6 * 60).contains(&m);
            no2.push((!silent && (m + 2 * i) % 11 != 0).then_some((m % 30 + i) as f64));
            people.push(((m + i) % 5 != 0).then_some((m + i) % 10));
        }
    }
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(TimestampMicrosecondArray::from(time).with_timezone("UTC")),
            Arc::new(sensor.finish()),
            Arc::new(district.finish()),
            Arc::new(Float64Array::from(pm25)),
            Arc::new(Float64Array::from(no2)),
            Arc::new(Int64Array::from(people)),
        ],
    )
    .unwrap()
}

/// The rollup of `air` in buckets of `bucket` (an SQL interval) for rows with time <
/// `until`, as the pipeline writes it (its last bucket may be incomplete).
async fn write_rollup(engine: &QueryEngine, target: &str, bucket: &str, until: i64) {
    let mut sql = format!(
        "SELECT date_bin(INTERVAL '{bucket}', time) AS time, sensor, district, count(*) AS row_count"
    );
    for f in ["pm25", "no2", "people"] {
        sql.push_str(&format!(
            ", sum({f}) AS {f}_sum, count({f}) AS {f}_count, min({f}) AS {f}_min, \
             max({f}) AS {f}_max, first_value({f} ORDER BY time) AS {f}_first, \
             last_value({f} ORDER BY time) AS {f}_last"
        ));
    }
    sql.push_str(&format!(
        " FROM air WHERE time < to_timestamp_micros({until}) GROUP BY 1, sensor, district"
    ));
    let result = engine.sql_without_rollups(&sql).await.unwrap();
    for batch in result.batches {
        let mut fields = Vec::new();
        let mut columns: Vec<ArrayRef> = Vec::new();
        for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
            let name = field.name().as_str();
            let field: Field = match name {
                "time" => time_column(),
                "sensor" | "district" => tag_column(name),
                _ if name.ends_with("count") => field_column(name, DataType::Int64),
                _ => field_column(name, DataType::Float64),
            };
            columns.push(cast_array(column, field.data_type()).unwrap());
            fields.push(field);
        }
        let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap();
        engine
            .lake()
            .write(vec![(target.into(), batch)])
            .await
            .unwrap();
    }
}

async fn engine() -> (tempfile::TempDir, Arc<Lake>, QueryEngine) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = LakeConfig::new(dir.path());
    config.wal_fsync = false;
    let lake = Lake::open(config, OpenMode::ReadWrite).await.unwrap();
    let engine = QueryEngine::new(lake.clone(), QueryConfig::default()).unwrap();
    (dir, lake, engine)
}

fn def(done: Arc<AtomicI64>) -> RollupDef {
    RollupDef {
        name: "air_hourly".into(),
        source: "air".into(),
        target: "air_1h".into(),
        bucket_micros: HOUR,
        series: vec!["sensor".into(), "district".into()],
        fields: vec!["pm25".into(), "no2".into(), "people".into()],
        rolled_up_until: Arc::new(move || {
            let v = done.load(Ordering::SeqCst);
            (v != 0).then_some(v)
        }),
    }
}

/// The answer's schema (names and types) and its rows, sorted.
fn rows(result: &crate::QueryResult) -> (Vec<(String, DataType)>, Vec<String>) {
    let schema = result
        .schema
        .fields()
        .iter()
        .map(|f| (f.name().clone(), f.data_type().clone()))
        .collect();
    let text = pretty_format_batches(&result.batches).unwrap().to_string();
    let mut lines: Vec<String> = text
        .lines()
        .skip(3)
        .filter(|l| !l.starts_with('+'))
        .map(str::to_string)
        .collect();
    lines.sort();
    (schema, lines)
}

/// The trimmed cells of a row of a pretty-printed table.
fn cells(row: &str) -> Vec<String> {
    let inner = row.trim().trim_start_matches('|').trim_end_matches('|');
    inner.split('|').map(|c| c.trim().to_string()).collect()
}

async fn explain(engine: &QueryEngine, sql: &str, scope: &SqlScope) -> String {
    let result = engine
        .sql_as(&format!("EXPLAIN {sql}"), scope)
        .await
        .unwrap();
    pretty_format_batches(&result.batches).unwrap().to_string()
}

/// Asserts that `sql` is answered from the rollup and that the answer is the raw one.
async fn assert_rewritten(engine: &QueryEngine, sql: &str) -> Vec<String> {
    let plan = explain(engine, sql, &SqlScope::unrestricted()).await;
    assert!(
        plan.contains("TableScan: air_1h") && plan.contains("SubqueryAlias: rollup_air_hourly"),
        "not rewritten: {sql}\n{plan}"
    );
    let rolled = rows(&engine.sql(sql).await.unwrap());
    let raw = rows(&engine.sql_without_rollups(sql).await.unwrap());
    assert_eq!(rolled, raw, "{sql}");
    assert!(!raw.1.is_empty(), "{sql}");
    raw.1
}

/// Asserts that `sql` as `scope` reads only the raw rows and answers as without rollups.
async fn assert_not_rewritten(engine: &QueryEngine, sql: &str, scope: &SqlScope) {
    let plan = explain(engine, sql, scope).await;
    assert!(!plan.contains("air_1h"), "rewritten: {sql}\n{plan}");
    let answer = rows(&engine.sql_as(sql, scope).await.unwrap());
    engine.set_use_rollups(false);
    let raw = rows(&engine.sql_as(sql, scope).await.unwrap());
    engine.set_use_rollups(true);
    assert_eq!(answer, raw, "{sql}");
}

/// Queries the rollup answers, with their expected number of rows.
const REWRITTEN: [(&str, usize); 15] = [
    // Per sensor, hourly: 5 sensors x 48 h.
    (
        "SELECT sensor, date_bin(INTERVAL '1 hour', time) AS h, avg(pm25) AS mean, \
         min(pm25), max(pm25), count(pm25), count(*) FROM air GROUP BY sensor, h",
        240,
    ),
    // Per district, daily (NULL district included).
    (
        "SELECT district, date_trunc('day', time) AS d, sum(pm25), sum(no2) AS no2 \
         FROM air GROUP BY 1, 2",
        6,
    ),
    // A time range not aligned to buckets, bounds both ways.
    (
        "SELECT count(*) FROM air WHERE time >= '2026-01-01T03:17:00Z' \
         AND '2026-01-02T20:05:30Z' > time",
        1,
    ),
    (
        "SELECT count(*), sum(no2) FROM air WHERE time BETWEEN '2026-01-01T05:00:00Z' AND '2026-01-01T23:00:00Z'",
        1,
    ),
    (
        "SELECT date_trunc('day', time) AS day, count(*), avg(people), count(people) \
         FROM air GROUP BY 1",
        2,
    ),
    // A filter on a series column, an open-ended range.
    (
        "SELECT sensor, sum(no2), avg(no2) FROM air \
         WHERE sensor IN ('s1', 's4') AND time > '2026-01-01T10:30:00Z' GROUP BY sensor",
        2,
    ),
    // No time grouping, NULL district as a group.
    (
        "SELECT district, count(*), min(no2), max(no2), avg(pm25) FROM air GROUP BY district",
        3,
    ),
    // Buckets of three hours from an origin on the hourly grid.
    (
        "SELECT date_bin(INTERVAL '3 hours', time, TIMESTAMP '2026-01-01T01:00:00Z') AS b, \
         max(pm25) FROM air GROUP BY b",
        17,
    ),
    // A whole hour with no2 NULL for s4: sum and avg are NULL there, count 0.
    (
        "SELECT date_bin(INTERVAL '1 hour', time) AS h, sum(no2), avg(no2), count(no2) \
         FROM air WHERE sensor = 's4' AND time < '2026-01-01T12:00:00Z' GROUP BY h",
        12,
    ),
    // Global aggregates of no rows: count 0, the others NULL.
    (
        "SELECT count(*), count(pm25), sum(pm25), avg(pm25), min(pm25) FROM air \
         WHERE sensor = 'nobody' AND time < '2026-01-01T12:00:00Z'",
        1,
    ),
    // Table alias, and the inner aggregate of a nested query.
    (
        "SELECT avg(m) AS mm FROM (SELECT date_bin(INTERVAL '1 day', a.time) AS d, \
         avg(a.pm25) AS m FROM air a WHERE a.sensor = 's2' GROUP BY 1) t",
        1,
    ),
    // Bounds with digits below the µs (read at µs by DataFusion: both ends are in).
    (
        "SELECT count(*), sum(pm25) FROM air WHERE time >= '2026-01-01T03:17:00.0000005Z' \
         AND time <= '2026-01-01T09:00:00.0000001Z'",
        1,
    ),
    // A bound from now(), folded once per query.
    (
        "SELECT sensor, count(*) FROM air WHERE time > now() - INTERVAL '36500 days' \
         GROUP BY sensor",
        5,
    ),
    // DISTINCT on series columns is an aggregate too.
    (
        "SELECT DISTINCT district FROM air WHERE time < '2026-01-02T00:00:00Z'",
        3,
    ),
    // A series expression as group and an ORDER BY / HAVING above the aggregate.
    (
        "SELECT upper(sensor) AS s, count(*) AS n FROM air GROUP BY upper(sensor) \
         HAVING count(*) > 0 ORDER BY s",
        5,
    ),
];

/// Queries the rollup must not answer.
const NOT_REWRITTEN: [&str; 11] = [
    // A filter on a field.
    "SELECT sensor, count(*) FROM air WHERE pm25 > 10 GROUP BY sensor",
    "SELECT count(DISTINCT pm25) FROM air",
    "SELECT sum(pm25) FILTER (WHERE sensor = 's1') FROM air",
    // Buckets finer than the rollup's, or off its grid.
    "SELECT date_bin(INTERVAL '30 minutes', time) AS h, count(*) FROM air GROUP BY h",
    "SELECT date_bin(INTERVAL '1 hour', time, TIMESTAMP '2026-01-01T00:30:00Z') AS h, \
     count(*) FROM air GROUP BY h",
    "SELECT date_trunc('minute', time) AS h, count(*) FROM air GROUP BY h",
    // Grouping by raw time.
    "SELECT time, count(*) FROM air GROUP BY time",
    // Sum of an integer field would change type; min of a tag.
    "SELECT sum(people) FROM air",
    "SELECT min(sensor) FROM air",
    // OR mixing time and a series column.
    "SELECT count(*) FROM air WHERE sensor = 's1' OR time > '2026-01-02T00:00:00Z'",
    // A range that ends before the rollup's first whole bucket.
    "SELECT count(*) FROM air WHERE time > '2026-01-01T00:10:00Z' AND time < '2026-01-01T00:50:00Z'",
];

#[tokio::test]
async fn rollup_answers_equal_raw_answers() {
    let (_dir, lake, engine) = engine().await;
    lake.write(vec![("air".into(), readings(0, 48 * 60))])
        .await
        .unwrap();
    // Rolled up until 30:17: the bucket 30:00-31:00 in the target is incomplete.
    let until = JAN_1 + 30 * HOUR + 17 * MINUTE;
    write_rollup(&engine, "air_1h", "1 hour", until).await;
    let done = Arc::new(AtomicI64::new(until));
    engine.register_rollup(def(done.clone())).unwrap();

    for (sql, n) in REWRITTEN {
        let rows = assert_rewritten(&engine, sql).await;
        assert_eq!(rows.len(), n, "{sql}: {rows:?}");
    }
    // Real values, not only equal ones: 03:17 to 20:05:30 the next day.
    let rows = assert_rewritten(&engine, REWRITTEN[2].0).await;
    let minutes = (44 * 60 + 5 + 1) - (3 * 60 + 17);
    assert_eq!(cells(&rows[0]), vec![(minutes * 5).to_string()]);
    let rows = assert_rewritten(&engine, REWRITTEN[9].0).await;
    assert_eq!(cells(&rows[0]), vec!["0", "0", "", "", ""]);
    let rows = assert_rewritten(&engine, REWRITTEN[11].0).await;
    let minutes = (9 * 60 + 1) - (3 * 60 + 17);
    assert_eq!(cells(&rows[0])[0], (minutes * 5).to_string());
    let rows = assert_rewritten(&engine, REWRITTEN[8].0).await;
    let silent: Vec<Vec<String>> = rows
        .iter()
        .map(|r| cells(r))
        .filter(|c| c[0] == "2026-01-01T05:00:00Z")
        .collect();
    assert_eq!(silent, vec![vec!["2026-01-01T05:00:00Z", "", "", "0"]]);

    let unrestricted = SqlScope::unrestricted();
    for sql in NOT_REWRITTEN {
        assert_not_rewritten(&engine, sql, &unrestricted).await;
    }

    // A masked source or target column, or a target the session does not see.
    let sql = REWRITTEN[0].0;
    let masked = SqlScope::restricted(
        Arc::new(|_: &str| true),
        Some(Arc::new(|t: &str, c: &str| t == "air" && c == "no2")),
    );
    assert_not_rewritten(&engine, sql, &masked).await;
    let masked_target = SqlScope::restricted(
        Arc::new(|_: &str| true),
        Some(Arc::new(|t: &str, c: &str| t == "air_1h" && c == "no2_sum")),
    );
    assert_not_rewritten(&engine, sql, &masked_target).await;
    let unseen = SqlScope::restricted(Arc::new(|t: &str| t == "air"), None);
    assert_not_rewritten(&engine, sql, &unseen).await;
    let sees_both = SqlScope::restricted(Arc::new(|t: &str| t.starts_with("air")), None);
    assert!(explain(&engine, sql, &sees_both).await.contains("air_1h"));

    // The aggregate of a named view is answered from the rollup too.
    let view = crate::ViewDef {
        sql: "SELECT district, date_trunc('day', time) AS day, count(*) AS n, max(pm25) AS top \
              FROM air GROUP BY 1, 2"
            .into(),
        tables: vec!["air".into()],
        description: "daily counts per district".into(),
    };
    engine.register_view("air_daily", view).unwrap();
    let rows = assert_rewritten(&engine, "SELECT * FROM air_daily WHERE n > 0").await;
    assert_eq!(rows.len(), 6);

    // Switched off, or nothing rolled up yet.
    engine.set_use_rollups(false);
    assert!(
        !explain(&engine, sql, &unrestricted)
            .await
            .contains("air_1h")
    );
    engine.set_use_rollups(true);
    done.store(0, Ordering::SeqCst);
    assert_not_rewritten(&engine, sql, &unrestricted).await;
    // Rolled up from the start until the first bucket only: a rollup part of one hour.
    done.store(JAN_1 + HOUR, Ordering::SeqCst);
    assert_rewritten(&engine, sql).await;
    done.store(until, Ordering::SeqCst);

    // Removed: not used any more.
    assert!(engine.remove_rollup("air_hourly"));
    assert!(!engine.remove_rollup("air_hourly"));
    assert!(engine.rollups().is_empty());
    assert_not_rewritten(&engine, sql, &unrestricted).await;
}

#[tokio::test]
async fn rollup_and_raw_rows_from_files_and_buffer() {
    let (_dir, lake, engine) = engine().await;
    // Day one in files, day two in the buffer.
    lake.write(vec![("air".into(), readings(0, 24 * 60))])
        .await
        .unwrap();
    lake.flush().await.unwrap();
    lake.write(vec![("air".into(), readings(24 * 60, 48 * 60))])
        .await
        .unwrap();
    let until = JAN_1 + 40 * HOUR + 30 * MINUTE;
    write_rollup(&engine, "air_1h", "1 hour", until).await;
    let done = Arc::new(AtomicI64::new(until));
    engine.register_rollup(def(done.clone())).unwrap();
    let snapshot = lake.snapshot("air").unwrap().unwrap();
    assert!(!snapshot.files.is_empty() && !snapshot.batches.is_empty());
    for (sql, n) in REWRITTEN {
        assert_eq!(assert_rewritten(&engine, sql).await.len(), n, "{sql}");
    }

    // Everything flushed (rollup too), then new raw rows in the buffer.
    lake.flush().await.unwrap();
    lake.write(vec![("air".into(), readings(48 * 60, 50 * 60))])
        .await
        .unwrap();
    let target = lake.snapshot("air_1h").unwrap().unwrap();
    assert!(!target.files.is_empty() && target.batches.is_empty());
    let sql = "SELECT sensor, date_trunc('hour', time) AS h, avg(pm25), count(*) FROM air \
               GROUP BY 1, 2";
    assert_eq!(assert_rewritten(&engine, sql).await.len(), 5 * 50);
}

#[tokio::test]
async fn rollup_definitions_are_checked() {
    let (_dir, _lake, engine) = engine().await;
    let done = Arc::new(AtomicI64::new(0));
    let good = def(done);
    let mut bad = Vec::new();
    let mut d = good.clone();
    d.name = "no spaces".into();
    bad.push(d);
    let mut d = good.clone();
    d.target = "air".into();
    bad.push(d);
    let mut d = good.clone();
    d.bucket_micros = 0;
    bad.push(d);
    let mut d = good.clone();
    d.series.push("row_count".into());
    bad.push(d);
    let mut d = good.clone();
    d.fields.push("sensor".into());
    bad.push(d);
    let mut d = good.clone();
    d.series.push("pm25_sum".into());
    bad.push(d);
    for d in bad {
        let err = engine.register_rollup(d.clone()).unwrap_err();
        assert!(err.to_string().starts_with("rollup "), "{err}");
        assert_eq!(err.class(), civiclake_core::ErrorClass::User);
    }
    assert!(engine.rollups().is_empty());
    engine.register_rollup(good.clone()).unwrap();
    let mut other = good.clone();
    other.bucket_micros = 2 * HOUR;
    engine.register_rollup(other).unwrap();
    let all = engine.rollups();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].bucket_micros, 2 * HOUR);
    assert!(format!("{:?}", all[0]).contains("air_1h"));
}

#[tokio::test]
async fn rollup_the_coarsest_rollup_that_fits_is_chosen() {
    let (_dir, lake, engine) = engine().await;
    lake.write(vec![("air".into(), readings(0, 72 * 60))])
        .await
        .unwrap();
    let until = JAN_1 + 50 * HOUR;
    write_rollup(&engine, "air_1h", "1 hour", until).await;
    write_rollup(&engine, "air_1d", "1 day", until).await;
    let done = Arc::new(AtomicI64::new(until));
    engine.register_rollup(def(done.clone())).unwrap();
    let mut daily = def(done);
    daily.name = "air_daily".into();
    daily.target = "air_1d".into();
    daily.bucket_micros = 24 * HOUR;
    engine.register_rollup(daily).unwrap();
    assert_eq!(engine.rollups().len(), 2);

    let unrestricted = SqlScope::unrestricted();
    let by_day = "SELECT sensor, date_trunc('day', time) AS d, sum(pm25), count(*) FROM air \
                  GROUP BY 1, 2";
    let plan = explain(&engine, by_day, &unrestricted).await;
    assert!(
        plan.contains("TableScan: air_1d") && !plan.contains("air_1h"),
        "{plan}"
    );
    let rolled = rows(&engine.sql(by_day).await.unwrap());
    assert_eq!(
        rolled,
        rows(&engine.sql_without_rollups(by_day).await.unwrap())
    );
    assert_eq!(rolled.1.len(), 15);
    // Days 0 and 1 are rolled up (until 50:00), day 2 is read raw.
    let plan = explain(&engine, "SELECT count(*) FROM air", &unrestricted).await;
    assert!(plan.contains("rollup_air_daily"), "{plan}");
    // Hourly groups: only the hourly rollup fits.
    assert_eq!(
        assert_rewritten(&engine, REWRITTEN[0].0).await.len(),
        5 * 72
    );
}

#[test]
fn rollup_time_bounds_are_exact_in_microseconds() {
    use super::TimeRange;
    use datafusion::common::ScalarValue;
    use datafusion::logical_expr::{Expr, cast, col, lit};
    let ns = |v: i64| {
        lit(ScalarValue::TimestampNanosecond(
            Some(v),
            Some("UTC".into()),
        ))
    };
    let us = |v: i64| {
        lit(ScalarValue::TimestampMicrosecond(
            Some(v),
            Some("UTC".into()),
        ))
    };
    let time_ns = || {
        cast(
            col("time"),
            DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
        )
    };
    let range = |conjuncts: Vec<Expr>| {
        let mut r = TimeRange::default();
        conjuncts
            .iter()
            .all(|c| r.narrow(c))
            .then_some((r.lo, r.hi))
    };
    use datafusion::arrow::datatypes::TimeUnit;
    // time_ns >= 1500 ns: time >= 2 µs; time_ns <= 4000 ns: time < 5 µs.
    assert_eq!(
        range(vec![time_ns().gt_eq(ns(1500)), time_ns().lt_eq(ns(4000))]),
        Some((Some(2), Some(5)))
    );
    // > 2000 ns: >= 3 µs; < 2001 ns: < 3 µs.
    assert_eq!(
        range(vec![time_ns().gt(ns(2000)), time_ns().lt(ns(2001))]),
        Some((Some(3), Some(3)))
    );
    // Reversed, and equality.
    assert_eq!(
        range(vec![us(10).lt(col("time")), col("time").eq(us(20))]),
        Some((Some(20), Some(21)))
    );
    assert_eq!(
        range(vec![col("time").between(us(-5), us(7))]),
        Some((Some(-5), Some(8)))
    );
    // Not bounds on time against a literal.
    assert_eq!(range(vec![col("time").gt(col("other"))]), None);
    assert_eq!(range(vec![col("pm25").gt(lit(1.0))]), None);
    assert_eq!(range(vec![col("time").not_between(us(1), us(2))]), None);
    assert_eq!(
        range(vec![
            col("time").gt(lit(ScalarValue::TimestampMicrosecond(None, None)))
        ]),
        None
    );
}

#[test]
fn rollup_bucket_expressions_nest_in_the_rollup_grid() {
    use super::bucket_is_compatible;
    use datafusion::common::ScalarValue;
    use datafusion::functions::datetime::expr_fn::{date_bin, date_trunc};
    use datafusion::logical_expr::cast;
    use datafusion::logical_expr::{col, lit};
    let interval = |nanos: i64| lit(ScalarValue::new_interval_mdn(0, 0, nanos));
    let origin = |us: i64| {
        lit(ScalarValue::TimestampMicrosecond(
            Some(us),
            Some("UTC".into()),
        ))
    };
    let hour_ns = 3_600_000_000_000;
    let bin = |stride: i64, o: i64| date_bin(interval(stride), col("time"), origin(o));
    assert!(bucket_is_compatible(&bin(hour_ns, 0), HOUR));
    assert!(bucket_is_compatible(&bin(3 * hour_ns, 7 * HOUR), HOUR));
    assert!(bucket_is_compatible(&bin(hour_ns, -HOUR), HOUR));
    assert!(!bucket_is_compatible(&bin(hour_ns / 2, 0), HOUR));
    assert!(!bucket_is_compatible(&bin(hour_ns, HOUR / 2), HOUR));
    assert!(!bucket_is_compatible(
        &bin(90 * 60 * 1_000_000_000, 0),
        HOUR
    ));
    assert!(!bucket_is_compatible(
        &date_bin(
            lit(ScalarValue::new_interval_mdn(1, 0, 0)),
            col("time"),
            origin(0)
        ),
        HOUR
    ));
    let trunc = |unit: &str| date_trunc(lit(unit), col("time"));
    assert!(bucket_is_compatible(&trunc("hour"), HOUR));
    assert!(bucket_is_compatible(&trunc("day"), HOUR));
    assert!(bucket_is_compatible(&trunc("month"), HOUR));
    assert!(!bucket_is_compatible(&trunc("minute"), HOUR));
    assert!(!bucket_is_compatible(&trunc("week"), 7 * 24 * HOUR));
    assert!(bucket_is_compatible(&trunc("minute"), 20 * 1_000_000));
    assert!(!bucket_is_compatible(&trunc("fortnight"), HOUR));
    // Not on time, or in another time zone.
    assert!(!bucket_is_compatible(
        &date_trunc(lit("day"), col("other")),
        HOUR
    ));
    let rome = cast(
        col("time"),
        DataType::Timestamp(
            datafusion::arrow::datatypes::TimeUnit::Microsecond,
            Some("Europe/Rome".into()),
        ),
    );
    assert!(!bucket_is_compatible(&date_trunc(lit("day"), rome), HOUR));
}
