//! Retention by day partitions and purges, on disk and across a crash.

use super::*;
use crate::config::LakeConfig;
use crate::lake::OpenMode;
use crate::parquet_io::read_parquet;
use arrow::array::{AsArray, Float64Array, RecordBatch, StringDictionaryBuilder};
use arrow::datatypes::{DataType, Int32Type, Schema, TimestampMicrosecondType};
use civiclake_core::{ErrorClass, field_column, tag_column, time_column};
use std::path::{Path, PathBuf};

/// 2024-10-04T00:00:00Z: day 0 of the tests.
const BASE: i64 = 20_000 * DAY_MICROS;

fn day_name(n: i64) -> String {
    day_start(BASE + n * DAY_MICROS).unwrap().1.to_string()
}

/// `n` readings of `sensor` from `start`, one second apart.
fn series(sensor: &str, start: i64, n: usize) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        time_column(),
        tag_column("sensor"),
        field_column("v", DataType::Float64),
    ]));
    let mut tags = StringDictionaryBuilder::<Int32Type>::new();
    (0..n).for_each(|_| tags.append_value(sensor));
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(
                TimestampMicrosecondArray::from_iter_values(
                    (0..n as i64).map(|i| start + i * 1_000_000),
                )
                .with_timezone("UTC"),
            ),
            Arc::new(tags.finish()),
            Arc::new(Float64Array::from_iter_values((0..n).map(|i| i as f64))),
        ],
    )
    .unwrap()
}

/// `n` readings of `sensor` on test day `day`, from 01:00.
fn on_day(sensor: &str, day: i64, n: usize) -> (String, RecordBatch) {
    (
        "air".to_string(),
        series(sensor, BASE + day * DAY_MICROS + 3_600_000_000, n),
    )
}

fn config(dir: &Path) -> LakeConfig {
    let mut c = LakeConfig::new(dir);
    c.wal_fsync = false;
    c
}

async fn open(dir: &Path) -> Arc<Lake> {
    Lake::open(config(dir), OpenMode::ReadWrite).await.unwrap()
}

/// The process dies: no flush, the WAL stays as it is.
fn crash(lake: Arc<Lake>) {
    if let Some(wal) = lake.wal.as_ref() {
        wal.stop();
    }
    drop(lake);
}

/// Rows in the buffer and rows in files (by their stats) of `table`.
fn split(lake: &Lake, table: &str) -> (usize, usize) {
    let snap = lake.snapshot(table).unwrap().unwrap();
    (
        snap.batches.iter().map(RecordBatch::num_rows).sum(),
        snap.files
            .iter()
            .map(|f| f.rows.unwrap_or(0) as usize)
            .sum(),
    )
}

/// The Parquet files under `dir` (recursively), sorted.
fn parquet_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries {
        let path = e.unwrap().path();
        if path.is_dir() {
            out.extend(parquet_files(&path));
        } else if path.extension().is_some_and(|x| x == "parquet") {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// The sensors of every row of the Parquet file at `path`.
fn sensors_in(path: &Path) -> Vec<String> {
    let data = bytes::Bytes::from(std::fs::read(path).unwrap());
    let mut out = Vec::new();
    for b in read_parquet(data).unwrap() {
        let s = arrow::compute::cast(b.column_by_name("sensor").unwrap(), &DataType::Utf8).unwrap();
        out.extend(s.as_string::<i32>().iter().map(|v| v.unwrap().to_string()));
    }
    out
}

/// (sensor, day) of every row a query sees (files with pending deletes, then the buffer).
async fn rows_by_day(lake: &Lake) -> BTreeSet<(String, String, usize)> {
    let t = lake.catalog.read().get("air").cloned().unwrap();
    let batches = crate::lake::changes::read_all(lake.store.as_ref(), &t)
        .await
        .unwrap();
    let mut counts: std::collections::BTreeMap<(String, String), usize> = Default::default();
    for b in batches {
        let s = arrow::compute::cast(b.column_by_name("sensor").unwrap(), &DataType::Utf8).unwrap();
        let s = s.as_string::<i32>();
        let time = b
            .column_by_name("time")
            .unwrap()
            .as_primitive::<TimestampMicrosecondType>();
        for i in 0..b.num_rows() {
            let day = day_start(time.value(i)).unwrap().1.to_string();
            *counts.entry((s.value(i).to_string(), day)).or_default() += 1;
        }
    }
    counts.into_iter().map(|((s, d), n)| (s, d, n)).collect()
}

#[tokio::test]
async fn old_day_partitions_leave_delta_the_disk_and_the_buffer() {
    let dir = tempfile::tempdir().unwrap();
    let table_dir = dir.path().join("tables/air");
    let lake = open(dir.path()).await;
    // Day 0 in two files merged by compaction (the two replaced files wait for their vacuum
    // grace), days 1 and 2 in one file each.
    lake.write(vec![
        on_day("a", 0, 10),
        on_day("a", 1, 10),
        on_day("a", 2, 10),
    ])
    .await
    .unwrap();
    lake.flush().await.unwrap();
    lake.write(vec![on_day("b", 0, 5)]).await.unwrap();
    lake.flush().await.unwrap();
    let compacted = lake.compact(true).await.unwrap();
    assert_eq!((compacted.files_removed, compacted.files_vacuumed), (2, 0));
    let day0 = table_dir.join(format!("day={}", day_name(0)));
    let day1 = table_dir.join(format!("day={}", day_name(1)));
    let day2 = table_dir.join(format!("day={}", day_name(2)));
    assert_eq!(parquet_files(&day0).len(), 3);
    assert_eq!(parquet_files(&day1).len(), 1);
    let day2_files = parquet_files(&day2);
    assert_eq!(day2_files.len(), 1);
    // Buffered rows of every day.
    lake.write(vec![
        on_day("c", 0, 3),
        on_day("c", 1, 4),
        on_day("c", 2, 5),
    ])
    .await
    .unwrap();
    assert_eq!(split(&lake, "air"), (12, 35));

    // A cutoff within day 2: days 0 and 1 are wholly before it.
    let out = lake
        .drop_partitions_before("air", BASE + 2 * DAY_MICROS + 12 * 3_600_000_000)
        .await
        .unwrap();
    assert_eq!(
        out,
        RetentionOutcome {
            days_dropped: vec![day_name(0), day_name(1)],
            files_removed: 2,
            rows_removed: 25,
            buffer_rows_deleted: 7,
            files_vacuumed: 4,
        }
    );
    assert!(!day0.exists() && !day1.exists());
    assert_eq!(parquet_files(&table_dir), day2_files);
    assert_eq!(split(&lake, "air"), (5, 10));
    let expected: BTreeSet<(String, String, usize)> = [
        ("a".to_string(), day_name(2), 10),
        ("c".to_string(), day_name(2), 5),
    ]
    .into_iter()
    .collect();
    assert_eq!(rows_by_day(&lake).await, expected);
    let commit = std::fs::read_dir(table_dir.join("_delta_log"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .max()
        .unwrap();
    let commit = std::fs::read_to_string(commit).unwrap();
    assert!(commit.contains("\"operation\":\"DELETE\""), "{commit}");
    assert!(
        commit.contains(&format!("day < '{}'", day_name(2))),
        "{commit}"
    );
    // Nothing older is left: a second run does nothing.
    let again = lake
        .drop_partitions_before("air", BASE + 2 * DAY_MICROS + 12 * 3_600_000_000)
        .await
        .unwrap();
    assert_eq!(again, RetentionOutcome::default());

    // The process dies before the next flush: the replayed WAL deletes the buffered rows of
    // the old days again, and Delta no longer has their files.
    crash(lake);
    let lake = open(dir.path()).await;
    assert_eq!(split(&lake, "air"), (5, 10));
    assert_eq!(rows_by_day(&lake).await, expected);
    // The replayed delete is pending for the files, but no file can hold its rows: the
    // flush rewrites nothing.
    let flushed = lake.flush().await.unwrap();
    assert_eq!(
        (
            flushed.rows,
            flushed.files,
            flushed.files_rewritten,
            flushed.rows_deleted
        ),
        (5, 1, 0, 0)
    );
    assert_eq!(parquet_files(&table_dir).len(), 2);
    lake.shutdown().await.unwrap();
    drop(lake);
    let lake = open(dir.path()).await;
    assert_eq!(split(&lake, "air"), (0, 15));
    assert_eq!(rows_by_day(&lake).await, expected);
    lake.shutdown().await.unwrap();
}

#[tokio::test]
async fn retention_keeps_the_cutoffs_day_and_refuses_what_it_cannot_drop() {
    let dir = tempfile::tempdir().unwrap();
    let lake = open(dir.path()).await;
    lake.write(vec![on_day("a", 0, 2), on_day("a", 1, 2)])
        .await
        .unwrap();
    lake.flush().await.unwrap();
    // Nothing before day 0: zeros, and no delete is logged.
    let out = lake.drop_partitions_before("air", BASE + 1).await.unwrap();
    assert_eq!(out, RetentionOutcome::default());
    assert!(lake.snapshot("air").unwrap().unwrap().deletes.is_empty());
    // A cutoff at midnight of day 1 keeps day 1.
    let out = lake
        .drop_partitions_before("air", BASE + DAY_MICROS)
        .await
        .unwrap();
    assert_eq!((out.days_dropped, out.rows_removed), (vec![day_name(0)], 2));
    assert_eq!(split(&lake, "air"), (0, 2));

    let err = lake.drop_partitions_before("nope", BASE).await.unwrap_err();
    assert!(
        matches!(&err, Error::TableNotFound(t) if t == "nope"),
        "{err}"
    );
    assert_eq!(err.class(), ErrorClass::NotFound);
    let err = lake
        .drop_partitions_before(CHECKPOINTS_TABLE, BASE)
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::User);
    assert!(err.to_string().contains("maintained by the lake"), "{err}");
    let err = lake
        .drop_partitions_before("air", i64::MIN)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("out of range"), "{err}");
    assert_eq!(
        lake.drop_partitions_before("air", i64::MAX)
            .await
            .unwrap_err()
            .class(),
        ErrorClass::User
    );
    lake.shutdown().await.unwrap();
    drop(lake);

    let reader = Lake::open(config(dir.path()), OpenMode::ReadOnly)
        .await
        .unwrap();
    assert!(matches!(
        reader
            .drop_partitions_before("air", BASE + 5 * DAY_MICROS)
            .await,
        Err(Error::ReadOnly)
    ));
    assert!(matches!(
        reader.vacuum_now("air").await,
        Err(Error::ReadOnly)
    ));
}

#[tokio::test]
async fn retention_and_a_concurrent_flush_leave_no_old_row() {
    let dir = tempfile::tempdir().unwrap();
    let lake = open(dir.path()).await;
    lake.write(vec![on_day("a", 0, 3), on_day("a", 1, 3)])
        .await
        .unwrap();
    lake.flush().await.unwrap();
    lake.write(vec![on_day("b", 0, 4), on_day("b", 1, 4)])
        .await
        .unwrap();
    // Whichever takes the flush lock first, the other waits for it.
    let (flushed, dropped) = tokio::join!(
        lake.flush(),
        lake.drop_partitions_before("air", BASE + DAY_MICROS)
    );
    flushed.unwrap();
    let dropped = dropped.unwrap();
    assert_eq!(dropped.days_dropped, [day_name(0)]);
    assert_eq!(dropped.rows_removed + dropped.buffer_rows_deleted as u64, 7);
    let expected: BTreeSet<(String, String, usize)> = [
        ("a".to_string(), day_name(1), 3),
        ("b".to_string(), day_name(1), 4),
    ]
    .into_iter()
    .collect();
    assert_eq!(rows_by_day(&lake).await, expected);
    assert!(
        !dir.path()
            .join(format!("tables/air/day={}", day_name(0)))
            .exists()
    );
    lake.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_purge_leaves_no_copy_of_the_rows_in_files_or_the_wal() {
    let dir = tempfile::tempdir().unwrap();
    let table_dir = dir.path().join("tables/air");
    let lake = open(dir.path()).await;
    lake.write(vec![on_day("alice", 0, 10), on_day("bob", 0, 10)])
        .await
        .unwrap();
    lake.flush().await.unwrap();
    lake.write(vec![on_day("alice", 1, 6), on_day("bob", 1, 6)])
        .await
        .unwrap();
    lake.flush().await.unwrap();
    lake.write(vec![on_day("alice", 0, 5)]).await.unwrap();
    lake.flush().await.unwrap();
    // Compaction merges day 0; its two old files wait on disk for the vacuum grace.
    assert_eq!(lake.compact(true).await.unwrap().files_removed, 2);
    let before = parquet_files(&table_dir);
    assert_eq!(before.len(), 4);
    lake.write(vec![on_day("alice", 2, 3), on_day("bob", 2, 2)])
        .await
        .unwrap();

    let out = lake
        .purge_where("air", RowPredicate::eq("sensor", "alice"))
        .await
        .unwrap();
    assert_eq!(
        (
            out.buffer_rows_deleted,
            out.file_rows_deleted,
            out.rows_deleted()
        ),
        (3, 21, 24)
    );
    // The two files holding alice's rows were rewritten; they and the two files compaction
    // replaced are deleted at once.
    assert_eq!(out.flush.files_rewritten, 2);
    assert_eq!(out.files_vacuumed, 4);
    let after = parquet_files(&table_dir);
    assert!(before.iter().all(|f| !f.exists()), "{after:?}");
    // Rewritten day 0 and day 1, and bob's buffered rows of day 2.
    assert_eq!(after.len(), 3);
    let mut sensors: Vec<String> = after.iter().flat_map(|f| sensors_in(f)).collect();
    sensors.dedup();
    assert_eq!(sensors, ["bob"]);
    assert_eq!(split(&lake, "air"), (0, 18));
    // The WAL segments that held alice's rows and the delete are gone.
    for e in std::fs::read_dir(dir.path().join("wal")).unwrap() {
        let data = std::fs::read(e.unwrap().path()).unwrap();
        assert!(!data.windows(5).any(|w| w == b"alice"));
    }
    lake.shutdown().await.unwrap();
    drop(lake);
    let lake = open(dir.path()).await;
    let seen = rows_by_day(&lake).await;
    assert_eq!(seen.iter().map(|r| r.2).sum::<usize>(), 18);
    assert!(seen.iter().all(|r| r.0 == "bob"));

    // Errors: as for deletes.
    let err = lake
        .purge_where("nope", RowPredicate::eq("sensor", "x"))
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::NotFound);
    let err = lake
        .purge_where("air", RowPredicate::eq("pm10", 1.0))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidPredicate { .. }), "{err}");
    let err = lake
        .purge_where(CHECKPOINTS_TABLE, RowPredicate::eq("name", "x"))
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::User);
    // A table never flushed has nothing to vacuum.
    lake.write(vec![("fresh".to_string(), series("x", BASE, 1))])
        .await
        .unwrap();
    assert_eq!(lake.vacuum_now("fresh").await.unwrap(), 0);
    assert!(matches!(
        lake.vacuum_now("nope").await,
        Err(Error::TableNotFound(_))
    ));
    lake.shutdown().await.unwrap();
}
