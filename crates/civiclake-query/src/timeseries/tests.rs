use super::*;
use datafusion::arrow::array::{Float64Array, Int64Array, StringArray};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::execution::SessionStateBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};

/// Microseconds of an RFC 3339 instant.
fn at(s: &str) -> i64 {
    DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("{s}: {e}"))
        .timestamp_micros()
}

/// RFC 3339 (UTC) of microseconds.
fn show(t: i64) -> String {
    DateTime::from_timestamp_micros(t)
        .map(|d| d.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| format!("out of range {t}"))
}

fn hours(n: i64) -> IntervalMonthDayNano {
    IntervalMonthDayNano::new(0, 0, n * 3_600_000_000_000)
}

fn minutes(n: i64) -> IntervalMonthDayNano {
    IntervalMonthDayNano::new(0, 0, n * 60_000_000_000)
}

fn days(n: i32) -> IntervalMonthDayNano {
    IntervalMonthDayNano::new(0, n, 0)
}

fn months(n: i32) -> IntervalMonthDayNano {
    IntervalMonthDayNano::new(n, 0, 0)
}

fn tz(name: &str) -> Option<Tz> {
    Some(parse_timezone(name).expect("time zone"))
}

fn bucket(
    interval: IntervalMonthDayNano,
    origin: Option<&str>,
    zone: Option<&str>,
    t: &str,
) -> String {
    let b = Bucketing::new(interval, origin.map(at), zone.and_then(tz))
        .expect("bucketing")
        .bucket(at(t))
        .expect("bucket");
    show(b)
}

#[test]
fn sub_day_buckets_are_absolute_from_the_epoch() {
    assert_eq!(
        bucket(minutes(5), None, None, "2026-01-01T00:07:30Z"),
        "2026-01-01T00:05:00Z"
    );
    assert_eq!(
        bucket(minutes(5), None, None, "2026-01-01T00:05:00Z"),
        "2026-01-01T00:05:00Z"
    );
    // Not in local time: an hour is an hour of UTC across the DST change.
    assert_eq!(
        bucket(hours(1), None, None, "2026-03-29T01:30:00Z"),
        "2026-03-29T01:00:00Z"
    );
    // With an origin at :15.
    assert_eq!(
        bucket(
            hours(1),
            Some("2026-01-01T00:15:00Z"),
            None,
            "2026-01-01T03:10:00Z"
        ),
        "2026-01-01T02:15:00Z"
    );
}

#[test]
fn times_before_the_origin_round_down() {
    let b = Bucketing::new(hours(1), None, None).expect("bucketing");
    assert_eq!(b.bucket(-1).expect("bucket"), -3_600_000_000);
    assert_eq!(b.bucket(-3_600_000_000).expect("bucket"), -3_600_000_000);
    assert_eq!(
        bucket(
            minutes(15),
            Some("2026-01-01T00:00:00Z"),
            None,
            "2025-12-31T23:59:59Z"
        ),
        "2025-12-31T23:45:00Z"
    );
    assert_eq!(
        bucket(days(1), None, Some("UTC"), "1969-12-31T12:00:00Z"),
        "1969-12-31T00:00:00Z"
    );
    assert_eq!(
        bucket(months(3), None, Some("UTC"), "1969-12-15T00:00:00Z"),
        "1969-10-01T00:00:00Z"
    );
    assert_eq!(
        bucket(months(1), None, None, "1969-06-15T00:00:00Z"),
        "1969-05-31T23:00:00Z"
    );
}

#[test]
fn days_start_at_local_midnight_across_dst() {
    // 2026-03-29 in Rome: 23 hours, from 2026-03-28T23:00Z (CET) to 2026-03-29T22:00Z (CEST).
    for t in [
        "2026-03-28T23:00:00Z",
        "2026-03-29T01:30:00Z",
        "2026-03-29T21:59:59Z",
    ] {
        assert_eq!(
            bucket(days(1), None, None, t),
            "2026-03-28T23:00:00Z",
            "{t}"
        );
    }
    assert_eq!(
        bucket(days(1), None, None, "2026-03-29T22:00:00Z"),
        "2026-03-29T22:00:00Z"
    );
    assert_eq!(
        bucket(days(1), None, None, "2026-03-28T22:59:59Z"),
        "2026-03-27T23:00:00Z"
    );
    // 2026-10-25 in Rome: 25 hours, from 2026-10-24T22:00Z (CEST) to 2026-10-25T23:00Z (CET).
    for t in [
        "2026-10-24T22:00:00Z",
        "2026-10-25T01:30:00Z",
        "2026-10-25T22:59:59Z",
    ] {
        assert_eq!(
            bucket(days(1), None, None, t),
            "2026-10-24T22:00:00Z",
            "{t}"
        );
    }
    assert_eq!(
        bucket(days(1), None, None, "2026-10-25T23:00:00Z"),
        "2026-10-25T23:00:00Z"
    );
    // The same days in UTC.
    assert_eq!(
        bucket(days(1), None, Some("UTC"), "2026-03-29T23:30:00Z"),
        "2026-03-29T00:00:00Z"
    );
}

#[test]
fn weeks_start_on_monday() {
    // 2026-01-01 is a Thursday: its week starts on Monday 2025-12-29 (CET).
    assert_eq!(
        bucket(days(7), None, None, "2026-01-01T12:00:00Z"),
        "2025-12-28T23:00:00Z"
    );
    assert_eq!(
        bucket(days(7), None, Some("UTC"), "2026-01-05T00:00:00Z"),
        "2026-01-05T00:00:00Z"
    );
}

#[test]
fn months_are_calendar_months_of_the_zone() {
    assert_eq!(
        bucket(months(1), None, None, "2026-03-15T12:00:00Z"),
        "2026-02-28T23:00:00Z"
    );
    // Local 2026-04-01T00:30 CEST is in April, which starts at 2026-03-31T22:00Z.
    assert_eq!(
        bucket(months(1), None, None, "2026-03-31T22:30:00Z"),
        "2026-03-31T22:00:00Z"
    );
    assert_eq!(
        bucket(months(12), None, None, "2026-07-01T00:00:00Z"),
        "2025-12-31T23:00:00Z"
    );
    assert_eq!(
        bucket(months(1), None, Some("UTC"), "2026-03-31T22:30:00Z"),
        "2026-03-01T00:00:00Z"
    );
    // Origin on the 31st: shorter months start on their last day.
    assert_eq!(
        bucket(
            months(1),
            Some("2026-01-31T00:00:00Z"),
            Some("UTC"),
            "2026-02-28T12:00:00Z"
        ),
        "2026-02-28T00:00:00Z"
    );
    assert_eq!(
        bucket(
            months(1),
            Some("2026-01-31T00:00:00Z"),
            Some("UTC"),
            "2026-02-27T12:00:00Z"
        ),
        "2026-01-31T00:00:00Z"
    );
}

#[test]
fn explicit_time_zone_buckets_in_local_wall_time() {
    // Kolkata is UTC+05:30: local hours start at :30 UTC.
    assert_eq!(
        bucket(hours(1), None, Some("Asia/Kolkata"), "2026-01-01T10:45:00Z"),
        "2026-01-01T10:30:00Z"
    );
    assert_eq!(
        bucket(hours(1), None, Some("Asia/Kolkata"), "2026-01-01T10:15:00Z"),
        "2026-01-01T09:30:00Z"
    );
    assert_eq!(
        bucket(days(1), None, Some("Asia/Kolkata"), "2026-01-01T10:15:00Z"),
        "2025-12-31T18:30:00Z"
    );
}

#[test]
fn nonexistent_and_ambiguous_local_times() {
    let rome = tz("Europe/Rome").expect("rome");
    // 02:30 does not exist on 2026-03-29: the first instant after the gap, 03:00 CEST.
    let wall = at("2026-03-29T02:30:00Z");
    assert_eq!(
        show(from_wall(wall, &rome).expect("wall")),
        "2026-03-29T01:00:00Z"
    );
    // 02:30 exists twice on 2026-10-25: the earlier, CEST.
    let wall = at("2026-10-25T02:30:00Z");
    assert_eq!(
        show(from_wall(wall, &rome).expect("wall")),
        "2026-10-25T00:30:00Z"
    );
    // 02:40 CET (the second 02:40) is in the local 02:30 bucket, which starts at the first
    // 02:30 (CEST).
    assert_eq!(
        bucket(
            minutes(30),
            None,
            Some("Europe/Rome"),
            "2026-10-25T01:40:00Z"
        ),
        "2026-10-25T00:30:00Z"
    );
    // São Paulo skipped midnight on 2018-11-04: that day started at 01:00 -02.
    assert_eq!(
        bucket(
            days(1),
            None,
            Some("America/Sao_Paulo"),
            "2018-11-04T12:00:00Z"
        ),
        "2018-11-04T03:00:00Z"
    );
}

#[test]
fn bad_intervals_and_zones_are_errors() {
    let err = |i: IntervalMonthDayNano| Bucketing::new(i, None, None).expect_err("error");
    assert!(err(minutes(-5)).contains("must be positive"));
    assert!(err(IntervalMonthDayNano::new(0, 0, 0)).contains("must be positive"));
    assert!(err(IntervalMonthDayNano::new(1, 1, 0)).contains("cannot also have days"));
    assert!(err(IntervalMonthDayNano::new(1, 0, 1_000)).contains("cannot also have days"));
    assert!(err(IntervalMonthDayNano::new(0, 0, 1_500)).contains("whole number of microseconds"));
    assert!(err(IntervalMonthDayNano::new(0, i32::MAX, 0)).contains("too long"));
    // Far from the origin: an error, not an overflow.
    let b = Bucketing::new(minutes(1), Some(i64::MAX), None).expect("bucketing");
    assert!(
        b.bucket(i64::MIN)
            .expect_err("overflow")
            .contains("too far")
    );
    assert!(
        parse_timezone("Europe/Atlantis")
            .expect_err("unknown")
            .contains("unknown time zone")
    );
}

#[test]
fn interpolation_is_linear_in_x() {
    let v = [
        None,
        Some(1.0),
        None,
        None,
        Some(4.0),
        None,
        Some(10.0),
        None,
    ];
    let x = [
        Some(0.0),
        Some(1.0),
        Some(2.0),
        Some(3.0),
        Some(4.0),
        None,
        Some(8.0),
        Some(9.0),
    ];
    assert_eq!(
        interpolate(&v, &x),
        vec![
            None,
            Some(1.0),
            Some(2.0),
            Some(3.0),
            Some(4.0),
            None,
            Some(10.0),
            None
        ]
    );
    // Anchors at the same position: the earlier value.
    assert_eq!(
        interpolate(
            &[Some(1.0), None, Some(3.0)],
            &[Some(5.0), Some(5.0), Some(5.0)]
        ),
        vec![Some(1.0), Some(1.0), Some(3.0)]
    );
}

fn timestamps_utc(values: &[Option<&str>]) -> ArrayRef {
    let t: TimestampMicrosecondArray = values.iter().map(|v| v.map(at)).collect();
    Arc::new(t.with_timezone(UTC))
}

/// Partial states of two "partitions", one converted row by row, merged into a third.
#[test]
fn groups_states_merge_across_partitions() {
    let udaf = PickUdaf::new(Pick::Last);
    let new_groups = || PickGroups {
        pick: udaf.pick,
        data_type: DataType::Float64,
        null: ScalarValue::Float64(None),
        values: Vec::new(),
        times: Vec::new(),
        winners: Vec::new(),
        touched: Vec::new(),
        heap: 0,
    };
    let values: ArrayRef = Arc::new(Float64Array::from(vec![
        Some(1.0),
        Some(2.0),
        None,
        Some(4.0),
    ]));
    let times = timestamps_utc(&[
        Some("2026-01-01T00:03:00Z"),
        Some("2026-01-01T00:01:00Z"),
        Some("2026-01-01T00:09:00Z"),
        Some("2026-01-01T00:02:00Z"),
    ]);
    let mut a = new_groups();
    a.update_batch(
        &[Arc::clone(&values), Arc::clone(&times)],
        &[0, 0, 0, 1],
        None,
        2,
    )
    .expect("update");
    let state_a = a.state(EmitTo::All).expect("state");
    let b = new_groups();
    let values_b: ArrayRef = Arc::new(Float64Array::from(vec![Some(5.0), Some(6.0)]));
    let times_b = timestamps_utc(&[Some("2026-01-01T00:02:00Z"), Some("2026-01-01T00:05:00Z")]);
    let state_b = b
        .convert_to_state(&[values_b, times_b], None)
        .expect("convert");
    let mut merged = new_groups();
    merged.merge_batch(&state_a, &[0, 1], 2).expect("merge a");
    merged.merge_batch(&state_b, &[0, 1], 2).expect("merge b");
    let out = merged.evaluate(EmitTo::All).expect("evaluate");
    let out = out.as_primitive::<Float64Type>();
    // Group 0: 1.0 at 00:03 beats 5.0 at 00:02; the NULL at 00:09 is skipped.
    // Group 1: 6.0 at 00:05 beats 4.0 at 00:02.
    assert_eq!(out.values().to_vec(), vec![1.0, 6.0]);
    assert_eq!(
        merged.size(),
        merged.values.capacity() * size_of::<ScalarValue>()
            + merged.times.capacity() * size_of::<Option<i64>>()
            + (merged.winners.capacity() + merged.touched.capacity()) * size_of::<usize>()
    );
}

#[test]
fn emit_first_keeps_the_other_groups() {
    let mut g = PickGroups {
        pick: Pick::First,
        data_type: DataType::Utf8,
        null: ScalarValue::Utf8(None),
        values: Vec::new(),
        times: Vec::new(),
        winners: Vec::new(),
        touched: Vec::new(),
        heap: 0,
    };
    let values: ArrayRef = Arc::new(StringArray::from(vec!["a", "b", "c"]));
    let times = timestamps_utc(&[
        Some("2026-01-01T00:03:00Z"),
        Some("2026-01-01T00:01:00Z"),
        Some("2026-01-01T00:01:00Z"),
    ]);
    g.update_batch(&[values, times], &[0, 0, 2], None, 3)
        .expect("update");
    let first = g.evaluate(EmitTo::First(1)).expect("emit");
    assert_eq!(first.as_string::<i32>().value(0), "b");
    let rest = g.evaluate(EmitTo::All).expect("emit");
    assert_eq!(rest.len(), 2);
    assert!(rest.is_null(0));
    assert_eq!(rest.as_string::<i32>().value(1), "c");
    assert_eq!(g.heap, 0);
}

/// Values with heap of their own even when NULL (a timestamp's time zone).
#[test]
fn timestamp_values_account_their_heap() {
    let null = ScalarValue::TimestampMicrosecond(None, Some(UTC.into()));
    let mut g = PickGroups {
        pick: Pick::ValueAt,
        data_type: time_type(),
        null: null.clone(),
        values: Vec::new(),
        times: Vec::new(),
        winners: Vec::new(),
        touched: Vec::new(),
        heap: 0,
    };
    let times = timestamps_utc(&[
        Some("2026-01-01T00:03:00Z"),
        Some("2026-01-01T00:01:00Z"),
        Some("2026-01-01T00:02:00Z"),
    ]);
    let t = timestamps_utc(&[
        Some("2026-01-01T00:02:30Z"),
        Some("2026-01-01T00:02:30Z"),
        Some("2026-01-01T00:01:00Z"),
    ]);
    g.update_batch(
        &[Arc::clone(&times), Arc::clone(&times), t],
        &[0, 0, 1],
        None,
        4,
    )
    .expect("update");
    assert_eq!(g.heap, 4 * heap_size(&null));
    let state = g.state(EmitTo::All).expect("state");
    assert_eq!(g.heap, 0);
    assert_eq!(state[0].data_type(), &time_type());
    let values = state[0].as_primitive::<TimestampMicrosecondType>();
    assert_eq!(values.value(0), at("2026-01-01T00:01:00Z"));
    assert!(values.is_null(1) && values.is_null(2) && values.is_null(3));
}

async fn context() -> SessionContext {
    let config = SessionConfig::new()
        .set_str("datafusion.execution.time_zone", "+00:00")
        .with_target_partitions(4);
    let mut state = SessionStateBuilder::new()
        .with_config(config)
        .with_default_features()
        .build();
    register_timeseries(&mut state).expect("register");
    let ctx = SessionContext::new_with_state(state);
    ctx.sql(
        "CREATE TABLE r (sensor VARCHAR, time TIMESTAMP, v DOUBLE, n BIGINT, ok BOOLEAN) AS VALUES \
         ('a', TIMESTAMP '2026-01-01T00:05:00', 2.0, 20, true), \
         ('a', TIMESTAMP '2026-01-01T00:01:00', 1.0, 10, false), \
         ('a', TIMESTAMP '2026-01-01T00:09:00', NULL, NULL, NULL), \
         ('a', TIMESTAMP '2026-01-01T00:07:00', 3.0, 30, true), \
         ('b', TIMESTAMP '2026-01-01T00:02:00', 5.0, 50, true), \
         ('b', TIMESTAMP '2026-01-01T00:00:00', NULL, NULL, NULL)",
    )
    .await
    .expect("create")
    .collect()
    .await
    .expect("create");
    ctx
}

async fn rows(ctx: &SessionContext, sql: &str) -> Vec<String> {
    let batches = ctx
        .sql(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .collect()
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let options = FormatOptions::default().with_null("NULL");
    let mut out = Vec::new();
    for batch in &batches {
        let formatters: Vec<_> = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).expect("format"))
            .collect();
        for row in 0..batch.num_rows() {
            let cells: Vec<String> = formatters
                .iter()
                .map(|f| f.value(row).to_string())
                .collect();
            out.push(cells.join(" "));
        }
    }
    out
}

async fn error(ctx: &SessionContext, sql: &str) -> String {
    match ctx.sql(sql).await {
        Err(e) => e.to_string(),
        Ok(df) => match df.collect().await {
            Err(e) => e.to_string(),
            Ok(_) => panic!("{sql} succeeded"),
        },
    }
}

#[tokio::test]
async fn time_bucket_in_sql() {
    let ctx = context().await;
    assert_eq!(
        rows(
            &ctx,
            "SELECT time_bucket(INTERVAL '5 minutes', time) AS b, count(*) FROM r GROUP BY b ORDER BY b"
        )
        .await,
        vec!["2026-01-01T00:00:00Z 3", "2026-01-01T00:05:00Z 3"]
    );
    // Nanosecond input, string interval, 3-argument forms, NULL time.
    assert_eq!(
        rows(
            &ctx,
            "SELECT time_bucket('1 day', TIMESTAMP '2026-03-29T12:00:00Z'), \
             time_bucket(INTERVAL '1 day', TIMESTAMP '2026-03-29T12:00:00Z', 'UTC'), \
             time_bucket(INTERVAL '1 hour', TIMESTAMP '2026-03-29T12:20:00Z', TIMESTAMP '2026-01-01T00:30:00Z'), \
             time_bucket(INTERVAL '1 hour', CAST(NULL AS TIMESTAMP))"
        )
        .await,
        vec!["2026-03-28T23:00:00Z 2026-03-29T00:00:00Z 2026-03-29T11:30:00Z NULL"]
    );
    let e = error(
        &ctx,
        "SELECT time_bucket(INTERVAL '-5 minutes', time) FROM r",
    )
    .await;
    assert!(e.contains("must be positive"), "{e}");
    let e = error(
        &ctx,
        "SELECT time_bucket(INTERVAL '1 month 1 day', time) FROM r",
    )
    .await;
    assert!(e.contains("cannot also have days"), "{e}");
    let e = error(
        &ctx,
        "SELECT time_bucket(INTERVAL '1 day', time, 'Mars/Olympus') FROM r",
    )
    .await;
    assert!(e.contains("unknown time zone"), "{e}");
    let e = error(
        &ctx,
        "SELECT time_bucket(INTERVAL '1 day', time, sensor) FROM r",
    )
    .await;
    assert!(e.contains("must be a constant"), "{e}");
    let e = error(&ctx, "SELECT time_bucket(INTERVAL '1 day', v) FROM r").await;
    assert!(e.contains("must be a timestamp"), "{e}");
}

#[tokio::test]
async fn first_last_value_at_in_sql() {
    let ctx = context().await;
    assert_eq!(
        rows(
            &ctx,
            "SELECT sensor, first(v, time), last(v, time), first(n, time), last(ok, time), \
             last(sensor, time), value_at(v, time, TIMESTAMP '2026-01-01T00:06:00') \
             FROM r GROUP BY sensor ORDER BY sensor"
        )
        .await,
        vec!["a 1.0 3.0 10 true a 2.0", "b 5.0 5.0 50 true b 5.0"]
    );
    // Without GROUP BY (one accumulator), and a group of NULLs only.
    assert_eq!(
        rows(
            &ctx,
            "SELECT first(v, time), last(v, time), value_at(n, time, TIMESTAMP '2026-01-01T00:03:00') FROM r"
        )
        .await,
        vec!["1.0 3.0 50"]
    );
    assert_eq!(
        rows(&ctx, "SELECT first(v, time) FROM r WHERE v IS NULL").await,
        vec!["NULL"]
    );
    let e = error(&ctx, "SELECT first(v) FROM r").await;
    assert!(e.contains("takes 2 arguments"), "{e}");
}

#[tokio::test]
async fn gap_filling_in_sql() {
    let ctx = context().await;
    let sql = "SELECT time, v, locf(v) OVER (PARTITION BY sensor ORDER BY time) AS f, \
               interpolate(v, time) OVER (PARTITION BY sensor ORDER BY time) AS i \
               FROM r WHERE sensor = 'a' ORDER BY time";
    assert_eq!(
        rows(&ctx, sql).await,
        vec![
            "2026-01-01T00:01:00 1.0 1.0 1.0",
            "2026-01-01T00:05:00 2.0 2.0 2.0",
            "2026-01-01T00:07:00 3.0 3.0 3.0",
            "2026-01-01T00:09:00 NULL 3.0 NULL",
        ]
    );
    let sql = "SELECT s.value, r.v, locf(r.v) OVER (ORDER BY s.value) AS f, \
               interpolate(r.v, s.value) OVER (ORDER BY s.value) AS i \
               FROM generate_series(TIMESTAMP '2026-01-01T00:01:00', TIMESTAMP '2026-01-01T00:07:00', INTERVAL '2 minutes') AS s \
               LEFT JOIN r ON r.time = s.value AND r.sensor = 'a' ORDER BY s.value";
    assert_eq!(
        rows(&ctx, sql).await,
        vec![
            "2026-01-01T00:01:00 1.0 1.0 1.0",
            "2026-01-01T00:03:00 NULL 1.0 1.5",
            "2026-01-01T00:05:00 2.0 2.0 2.0",
            "2026-01-01T00:07:00 3.0 3.0 3.0",
        ]
    );
    let e = error(
        &ctx,
        "SELECT interpolate(sensor, time) OVER (ORDER BY time) FROM r",
    )
    .await;
    assert!(e.contains("must be numeric"), "{e}");
}

#[tokio::test]
async fn many_groups() {
    let ctx = context().await;
    let values: Vec<i64> = (0..10_000).collect();
    let n: ArrayRef = Arc::new(Int64Array::from(values));
    let batch =
        datafusion::arrow::record_batch::RecordBatch::try_from_iter([("n", n)]).expect("batch");
    ctx.register_batch("big", batch).expect("register");
    // 1000 groups of 10 rows, n = g, g + 1000, ... g + 9000 at n seconds: first = g, last = g + 9000.
    let got = rows(
        &ctx,
        "SELECT count(*), sum(f), sum(l) FROM (SELECT n % 1000 AS g, \
         first(n, to_timestamp_seconds(n)) AS f, last(n, to_timestamp_seconds(n)) AS l \
         FROM big GROUP BY n % 1000)",
    )
    .await;
    let first: i64 = (0..1000).sum();
    let last: i64 = (9000..10000).sum();
    assert_eq!(got, vec![format!("1000 {first} {last}")]);
}

/// A restricted session of the engine has the functions too, over the lake's own types
/// (dictionary tags, `Timestamp(µs, "UTC")`), with rows in a file and in the buffer.
#[tokio::test]
async fn restricted_sessions_of_the_engine_have_them() {
    use crate::{QueryConfig, QueryEngine, SqlScope};
    use civiclake_core::{field_column, tag_column, time_column};
    use civiclake_lake::{Lake, LakeConfig, OpenMode};
    use datafusion::arrow::array::{RecordBatch, StringDictionaryBuilder};
    use datafusion::arrow::datatypes::{Int32Type, Schema};

    fn readings(rows: &[(&str, &str, Option<f64>)]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            time_column(),
            tag_column("sensor"),
            field_column("pm25", DataType::Float64),
        ]));
        let mut tags = StringDictionaryBuilder::<Int32Type>::new();
        rows.iter().for_each(|r| tags.append_value(r.0));
        let times = TimestampMicrosecondArray::from_iter_values(rows.iter().map(|r| at(r.1)));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(times.with_timezone(UTC)),
                Arc::new(tags.finish()),
                Arc::new(Float64Array::from_iter(rows.iter().map(|r| r.2))),
            ],
        )
        .expect("batch")
    }

    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = LakeConfig::new(dir.path());
    config.wal_fsync = false;
    let lake = Lake::open(config, OpenMode::ReadWrite).await.expect("lake");
    let engine = QueryEngine::new(lake.clone(), QueryConfig::default()).expect("engine");
    let write = |rows: RecordBatch| {
        let lake = lake.clone();
        async move { lake.write(vec![("air".into(), rows)]).await.expect("write") }
    };
    write(readings(&[
        ("a1", "2026-01-01T00:04:00Z", Some(2.0)),
        ("a1", "2026-01-01T00:01:00Z", Some(1.0)),
        ("b2", "2026-01-01T00:02:00Z", Some(7.0)),
    ]))
    .await;
    lake.flush().await.expect("flush");
    write(readings(&[
        ("a1", "2026-01-01T00:00:00Z", Some(0.5)),
        ("a1", "2026-01-01T00:09:00Z", None),
        ("b2", "2026-01-01T00:06:00Z", Some(9.0)),
    ]))
    .await;

    let scope = SqlScope::restricted(Arc::new(|t: &str| t == "air"), None);
    let result = engine
        .sql_as(
            "SELECT time_bucket(INTERVAL '5 minutes', time) AS b, sensor, \
             first(pm25, time) AS f, last(pm25, time) AS l, last(sensor, time) AS s \
             FROM air GROUP BY b, sensor ORDER BY b, sensor",
            &scope,
        )
        .await
        .expect("query");
    let options = FormatOptions::default().with_null("NULL");
    let mut got = Vec::new();
    for batch in &result.batches {
        for row in 0..batch.num_rows() {
            let cells: Vec<String> = batch
                .columns()
                .iter()
                .map(|c| {
                    ArrayFormatter::try_new(c.as_ref(), &options)
                        .expect("format")
                        .value(row)
                        .to_string()
                })
                .collect();
            got.push(cells.join(" "));
        }
    }
    assert_eq!(
        got,
        vec![
            "2026-01-01T00:00:00Z a1 0.5 2.0 a1",
            "2026-01-01T00:00:00Z b2 7.0 7.0 b2",
            "2026-01-01T00:05:00Z a1 NULL NULL a1",
            "2026-01-01T00:05:00Z b2 9.0 9.0 b2",
        ]
    );
    lake.shutdown().await.expect("shutdown");
}
