//! Record kinds beyond rows, through flush, compaction and crash/replay.

use super::*;
use crate::config::LakeConfig;
use crate::lake::{OpenMode, take_persisting};
use arrow::array::{Float64Array, StringDictionaryBuilder};
use arrow::datatypes::{Float64Type, Int32Type};
use civiclake_core::{CompareOp, ErrorClass, Literal};
use serde_json::json;

const DAY: i64 = 86_400_000_000;

/// One reading: sensor, time (µs), value.
type Reading = (String, i64, Option<f64>);

fn readings(rows: &[(&str, i64, Option<f64>)]) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        time_column(),
        tag_column("sensor"),
        field_column("v", DataType::Float64),
    ]));
    let mut tags = StringDictionaryBuilder::<Int32Type>::new();
    rows.iter().for_each(|r| tags.append_value(r.0));
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(
                TimestampMicrosecondArray::from_iter_values(rows.iter().map(|r| r.1))
                    .with_timezone("UTC"),
            ),
            Arc::new(tags.finish()),
            Arc::new(Float64Array::from_iter(rows.iter().map(|r| r.2))),
        ],
    )
    .unwrap()
}

/// `n` readings of `sensor` from `start`, one µs apart, with value `base + i`.
fn series(sensor: &str, start: i64, n: usize, base: f64) -> RecordBatch {
    let rows: Vec<_> = (0..n)
        .map(|i| (sensor, start + i as i64, Some(base + i as f64)))
        .collect();
    readings(&rows)
}

fn config(dir: &std::path::Path) -> LakeConfig {
    let mut c = LakeConfig::new(dir);
    c.wal_fsync = false;
    c
}

async fn open(dir: &std::path::Path) -> Arc<Lake> {
    Lake::open(config(dir), OpenMode::ReadWrite).await.unwrap()
}

/// The process dies: no flush, the WAL stays as it is.
fn crash(lake: Arc<Lake>) {
    if let Some(wal) = lake.wal.as_ref() {
        wal.stop();
    }
    drop(lake);
}

/// Every row of `table` as a query sees it, sorted.
async fn content(lake: &Lake, table: &str) -> Vec<Reading> {
    let t = lake.catalog.read().get(table).cloned().unwrap();
    let mut out = Vec::new();
    for b in read_all(lake.store.as_ref(), &t).await.unwrap() {
        let sensor =
            arrow::compute::cast(b.column_by_name("sensor").unwrap(), &DataType::Utf8).unwrap();
        let sensor = sensor.as_string::<i32>();
        let time = b.column_by_name("time").unwrap();
        let time = time.as_primitive::<TimestampMicrosecondType>();
        let v = b.column_by_name("v").unwrap().as_primitive::<Float64Type>();
        for i in 0..b.num_rows() {
            out.push((
                sensor.value(i).to_string(),
                time.value(i),
                v.is_valid(i).then(|| v.value(i)),
            ));
        }
    }
    out.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    out
}

fn count_of(content: &[Reading], sensor: &str) -> usize {
    content.iter().filter(|r| r.0 == sensor).count()
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

/// The actions of the latest Delta commit of `table` (`add`, `remove`, `txn`, ...).
fn last_commit_actions(dir: &std::path::Path, table: &str) -> Vec<String> {
    let log = dir.join("tables").join(table).join("_delta_log");
    let mut commits: Vec<_> = std::fs::read_dir(&log)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    commits.sort();
    let text = std::fs::read_to_string(commits.last().unwrap()).unwrap();
    let mut actions: Vec<String> = text
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            v.as_object().unwrap().keys().next().unwrap().clone()
        })
        .collect();
    actions.sort();
    actions
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    let _ = std::fs::remove_dir_all(to);
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[tokio::test]
async fn delete_reaches_the_buffer_at_once_and_the_files_at_the_next_flush() {
    let dir = tempfile::tempdir().unwrap();
    let lake = open(dir.path()).await;
    lake.write(vec![
        ("air".into(), series("s1", 0, 100, 0.0)),
        ("air".into(), series("s2", 1_000, 50, 0.0)),
    ])
    .await
    .unwrap();
    let stats = lake.flush().await.unwrap();
    assert_eq!((stats.rows, stats.files), (150, 1));
    lake.write(vec![("air".into(), series("s1", 5_000, 10, 0.0))])
        .await
        .unwrap();

    let outcome = lake
        .delete_where("air", RowPredicate::eq("sensor", "s1"))
        .await
        .unwrap();
    assert_eq!(
        outcome,
        DeleteOutcome {
            buffer_rows_deleted: 10,
            pending_for_files: true
        }
    );
    // The file still holds the rows, but nobody sees them.
    assert_eq!(split(&lake, "air"), (0, 150));
    assert_eq!(lake.snapshot("air").unwrap().unwrap().deletes.len(), 1);
    let seen = content(&lake, "air").await;
    assert_eq!((seen.len(), count_of(&seen, "s1")), (50, 0));

    let stats = lake.flush().await.unwrap();
    assert_eq!(
        (
            stats.rows,
            stats.files,
            stats.files_rewritten,
            stats.rows_deleted
        ),
        (0, 0, 1, 100)
    );
    assert_eq!(split(&lake, "air"), (0, 50));
    assert!(lake.snapshot("air").unwrap().unwrap().deletes.is_empty());
    assert_eq!(
        last_commit_actions(dir.path(), "air"),
        ["add", "commitInfo", "remove", "txn"]
    );
    let commit_info = std::fs::read_to_string(
        dir.path()
            .join("tables/air/_delta_log/00000000000000000002.json"),
    )
    .unwrap();
    assert!(
        commit_info.contains("\"operation\":\"DELETE\""),
        "{commit_info}"
    );
    assert!(commit_info.contains("sensor = 's1'"), "{commit_info}");
    lake.shutdown().await.unwrap();
    drop(lake);

    let lake = open(dir.path()).await;
    assert_eq!(split(&lake, "air"), (0, 50));
    let seen = content(&lake, "air").await;
    assert_eq!((seen.len(), count_of(&seen, "s2")), (50, 50));
    lake.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_row_where_the_predicate_is_null_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let lake = open(dir.path()).await;
    let rows = readings(&[("a", 1, Some(1.0)), ("a", 2, None), ("a", 3, Some(9.0))]);
    lake.write(vec![("air".into(), rows.clone())])
        .await
        .unwrap();
    lake.flush().await.unwrap();
    lake.write(vec![("air".into(), rows)]).await.unwrap();
    let gt = RowPredicate::compare("v", CompareOp::Gt, 5_i64);
    let outcome = lake.delete_where("air", gt.not()).await.unwrap();
    assert_eq!(outcome.buffer_rows_deleted, 1);
    let expected = vec![
        ("a".to_string(), 2, None),
        ("a".to_string(), 2, None),
        ("a".to_string(), 3, Some(9.0)),
        ("a".to_string(), 3, Some(9.0)),
    ];
    assert_eq!(content(&lake, "air").await, expected);
    assert_eq!(lake.flush().await.unwrap().rows_deleted, 1);
    assert_eq!(content(&lake, "air").await, expected);
    lake.shutdown().await.unwrap();
}

#[tokio::test]
async fn write_delete_write_keeps_only_the_later_rows_across_replay_and_flush() {
    let dir = tempfile::tempdir().unwrap();
    let lake = open(dir.path()).await;
    // Some of A is already in a file, some only in the buffer.
    lake.write(vec![("air".into(), series("a", 0, 5, 0.0))])
        .await
        .unwrap();
    lake.flush().await.unwrap();
    lake.write(vec![("air".into(), series("a", 10, 5, 0.0))])
        .await
        .unwrap();
    lake.delete_where("air", RowPredicate::eq("sensor", "a"))
        .await
        .unwrap();
    lake.write(vec![("air".into(), series("a", 100, 3, 50.0))])
        .await
        .unwrap();
    let later = vec![
        ("a".to_string(), 100, Some(50.0)),
        ("a".to_string(), 101, Some(51.0)),
        ("a".to_string(), 102, Some(52.0)),
    ];
    assert_eq!(content(&lake, "air").await, later);

    // Crash: the WAL replays write, delete, write in order; the delete is pending again.
    crash(lake);
    let lake = open(dir.path()).await;
    assert_eq!(content(&lake, "air").await, later);
    assert_eq!(split(&lake, "air"), (3, 5));
    assert_eq!(lake.metrics().rows_replayed.load(Ordering::Relaxed), 8);

    let stats = lake.flush().await.unwrap();
    assert_eq!(
        (stats.rows, stats.files_rewritten, stats.rows_deleted),
        (3, 1, 5)
    );
    assert_eq!(split(&lake, "air"), (0, 3));
    assert_eq!(content(&lake, "air").await, later);
    crash(lake);
    let lake = open(dir.path()).await;
    assert_eq!(content(&lake, "air").await, later);
    assert_eq!(split(&lake, "air"), (0, 3));
    lake.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_delete_logged_while_a_flush_is_in_progress_hides_and_then_rewrites_its_files() {
    let dir = tempfile::tempdir().unwrap();
    let lake = open(dir.path()).await;
    lake.write(vec![("air".into(), series("a", 0, 4, 0.0))])
        .await
        .unwrap();
    lake.write(vec![("air".into(), series("b", 0, 2, 0.0))])
        .await
        .unwrap();
    let table = lake.catalog.read().get("air").cloned().unwrap();

    // The flush as `Lake::flush` does it, with the delete between the moment it takes the
    // buffered rows and its Delta commit.
    let flush_guard = lake.flush_lock.lock().await;
    let catalog = lake.catalog.clone();
    let segment = lake
        .wal
        .as_ref()
        .unwrap()
        .rotate(Box::new(move |closed| {
            for t in catalog.read().values() {
                t.start_persist(closed);
            }
        }))
        .await
        .unwrap();
    let taken = take_persisting(&table, segment).unwrap();
    assert_eq!(
        taken
            .batches
            .iter()
            .map(RecordBatch::num_rows)
            .sum::<usize>(),
        6
    );

    let outcome = lake
        .delete_where("air", RowPredicate::eq("sensor", "a"))
        .await
        .unwrap();
    assert_eq!(outcome.buffer_rows_deleted, 4);
    assert!(outcome.pending_for_files, "rows are being flushed");
    lake.write(vec![("air".into(), series("a", 50, 1, 7.0))])
        .await
        .unwrap();

    let stats = lake
        .commit_persisting(&table, segment, taken)
        .await
        .unwrap();
    assert_eq!((stats.rows, stats.files_rewritten), (6, 0));
    // The new file holds the 4 deleted rows, hidden by the delete still pending.
    assert_eq!(split(&lake, "air"), (1, 6));
    let expected = vec![
        ("a".to_string(), 50, Some(7.0)),
        ("b".to_string(), 0, Some(0.0)),
        ("b".to_string(), 1, Some(1.0)),
    ];
    assert_eq!(content(&lake, "air").await, expected);
    lake.wal.as_ref().unwrap().truncate(segment).unwrap();
    drop(flush_guard);

    // After a crash the delete (of a segment the commit does not cover) is pending again.
    crash(lake);
    let lake = open(dir.path()).await;
    assert_eq!(content(&lake, "air").await, expected);
    let stats = lake.flush().await.unwrap();
    assert_eq!(
        (stats.rows, stats.files_rewritten, stats.rows_deleted),
        (1, 1, 4)
    );
    assert_eq!(split(&lake, "air"), (0, 3));
    assert_eq!(content(&lake, "air").await, expected);
    lake.shutdown().await.unwrap();
}

#[tokio::test]
async fn replace_by_key_keeps_one_row_per_key_with_the_newest_value() {
    let dir = tempfile::tempdir().unwrap();
    let lake = open(dir.path()).await;
    let keys = || vec!["sensor".to_string(), "time".to_string()];
    let written = lake
        .replace_by_key(
            "agg",
            keys(),
            readings(&[("s1", DAY, Some(1.0)), ("s2", DAY, Some(2.0))]),
        )
        .await
        .unwrap();
    assert_eq!(written, 2);
    lake.replace_by_key("agg", keys(), readings(&[("s1", DAY, Some(1.5))]))
        .await
        .unwrap();
    let v1 = vec![
        ("s1".to_string(), DAY, Some(1.5)),
        ("s2".to_string(), DAY, Some(2.0)),
    ];
    assert_eq!(content(&lake, "agg").await, v1);
    assert_eq!(lake.flush().await.unwrap().rows, 2);

    // A correction of a flushed aggregate; twice the same key in one batch: the last wins.
    let written = lake
        .replace_by_key(
            "agg",
            keys(),
            readings(&[
                ("s1", DAY, Some(1.7)),
                ("s3", DAY, Some(3.0)),
                ("s1", DAY, Some(1.8)),
            ]),
        )
        .await
        .unwrap();
    assert_eq!(written, 2);
    let v2 = vec![
        ("s1".to_string(), DAY, Some(1.8)),
        ("s2".to_string(), DAY, Some(2.0)),
        ("s3".to_string(), DAY, Some(3.0)),
    ];
    assert_eq!(content(&lake, "agg").await, v2);

    crash(lake);
    let lake = open(dir.path()).await;
    assert_eq!(content(&lake, "agg").await, v2);
    let stats = lake.flush().await.unwrap();
    assert_eq!(
        (stats.rows, stats.files_rewritten, stats.rows_deleted),
        (2, 1, 1)
    );
    assert_eq!(split(&lake, "agg"), (0, 3));
    lake.shutdown().await.unwrap();
    drop(lake);
    let lake = open(dir.path()).await;
    assert_eq!(content(&lake, "agg").await, v2);

    let err = lake
        .replace_by_key(
            "agg",
            vec!["district".into()],
            readings(&[("s1", DAY, Some(1.0))]),
        )
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::User);
    assert_eq!(
        err.to_string(),
        "invalid write: unknown key column 'district': the rows for table 'agg' have no such column"
    );
    lake.shutdown().await.unwrap();
}

#[tokio::test]
async fn checkpoints_survive_restart_flush_and_wal_truncation() {
    let dir = tempfile::tempdir().unwrap();
    let lake = open(dir.path()).await;
    // The system table is there, empty, before any checkpoint.
    let schema = lake.schema(CHECKPOINTS_TABLE).unwrap();
    let names: Vec<_> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(names, ["time", "name", "value"]);
    assert_eq!(split(&lake, CHECKPOINTS_TABLE), (0, 0));
    assert_eq!(lake.checkpoint("kafka/air/0"), None);

    lake.set_checkpoint("kafka/air/0", json!({"offset": 10}))
        .await
        .unwrap();
    lake.set_checkpoint("rollup/air_1h", json!("2026-01-01T00:00:00Z"))
        .await
        .unwrap();
    lake.set_checkpoint("kafka/air/0", json!({"offset": 42}))
        .await
        .unwrap();
    assert_eq!(lake.checkpoint("kafka/air/0"), Some(json!({"offset": 42})));
    assert_eq!(split(&lake, CHECKPOINTS_TABLE), (2, 0));

    crash(lake);
    let lake = open(dir.path()).await;
    assert_eq!(lake.checkpoint("kafka/air/0"), Some(json!({"offset": 42})));
    assert_eq!(lake.checkpoints().len(), 2);

    let stats = lake.flush().await.unwrap();
    assert_eq!(stats.rows, 2);
    assert_eq!(
        crate::wal::list_segments(&dir.path().join("wal"))
            .unwrap()
            .len(),
        1,
        "the WAL is truncated"
    );
    lake.set_checkpoint("kafka/air/0", json!({"offset": 43}))
        .await
        .unwrap();
    lake.shutdown().await.unwrap();
    drop(lake);

    let lake = open(dir.path()).await;
    assert_eq!(
        lake.checkpoints(),
        BTreeMap::from([
            ("kafka/air/0".to_string(), json!({"offset": 43})),
            ("rollup/air_1h".to_string(), json!("2026-01-01T00:00:00Z")),
        ])
    );
    assert_eq!(split(&lake, CHECKPOINTS_TABLE), (0, 2));
    let err = lake
        .write(vec![(CHECKPOINTS_TABLE.into(), series("x", 0, 1, 0.0))])
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::User);
    assert!(lake.set_checkpoint("", json!(1)).await.is_err());
    lake.shutdown().await.unwrap();

    let reader = Lake::open(config(dir.path()), OpenMode::ReadOnly)
        .await
        .unwrap();
    assert_eq!(
        reader.checkpoint("kafka/air/0"),
        Some(json!({"offset": 43}))
    );
}

#[tokio::test]
async fn a_crash_between_commit_and_truncation_applies_every_kind_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let lake = open(dir.path()).await;
    lake.write(vec![("air".into(), series("x", 0, 5, 0.0))])
        .await
        .unwrap();
    lake.write(vec![("air".into(), series("a", 0, 10, 0.0))])
        .await
        .unwrap();
    lake.flush().await.unwrap();
    // Rows written after the delete match it too: replaying the delete again would lose them.
    lake.delete_where("air", RowPredicate::eq("sensor", "a"))
        .await
        .unwrap();
    lake.write(vec![("air".into(), series("a", 500, 3, 0.0))])
        .await
        .unwrap();
    lake.replace_by_key(
        "agg",
        vec!["sensor".into()],
        readings(&[("a", 0, Some(1.0))]),
    )
    .await
    .unwrap();
    lake.set_checkpoint("offset", json!(7)).await.unwrap();
    let saved = dir.path().join("saved-wal");
    copy_dir(&dir.path().join("wal"), &saved);
    let stats = lake.flush().await.unwrap();
    assert_eq!(
        (stats.rows, stats.files_rewritten, stats.rows_deleted),
        (5, 1, 10)
    );
    crash(lake);
    copy_dir(&saved, &dir.path().join("wal"));

    let lake = open(dir.path()).await;
    assert_eq!(lake.metrics().rows_replayed.load(Ordering::Relaxed), 0);
    let seen = content(&lake, "air").await;
    assert_eq!((count_of(&seen, "x"), count_of(&seen, "a")), (5, 3));
    assert_eq!(split(&lake, "air"), (0, 8));
    assert!(lake.snapshot("air").unwrap().unwrap().deletes.is_empty());
    assert_eq!(content(&lake, "agg").await.len(), 1);
    assert_eq!(lake.checkpoint("offset"), Some(json!(7)));
    assert_eq!(split(&lake, CHECKPOINTS_TABLE), (0, 1));
    lake.shutdown().await.unwrap();
}

#[tokio::test]
async fn compaction_keeps_pending_deletes_hiding_the_merged_rows() {
    let dir = tempfile::tempdir().unwrap();
    let lake = open(dir.path()).await;
    for i in 0..3 {
        lake.write(vec![
            ("air".into(), series("a", i * 100, 4, 0.0)),
            ("air".into(), series("b", i * 100, 2, 0.0)),
        ])
        .await
        .unwrap();
        lake.flush().await.unwrap();
    }
    let old = RowPredicate::compare("time", CompareOp::Lt, Literal::Timestamp(100));
    let outcome = lake
        .delete_where("air", old.and(RowPredicate::eq("sensor", "a")))
        .await
        .unwrap();
    assert_eq!(outcome.buffer_rows_deleted, 0);
    let stats = lake.compact(true).await.unwrap();
    assert_eq!((stats.files_removed, stats.files_added), (3, 1));
    let seen = content(&lake, "air").await;
    assert_eq!((count_of(&seen, "a"), count_of(&seen, "b")), (8, 6));
    let stats = lake.flush().await.unwrap();
    assert_eq!((stats.files_rewritten, stats.rows_deleted), (1, 4));
    assert_eq!(split(&lake, "air"), (0, 14));
    lake.shutdown().await.unwrap();
}

#[tokio::test]
async fn deletes_report_unknown_tables_and_bad_predicates() {
    let dir = tempfile::tempdir().unwrap();
    let lake = open(dir.path()).await;
    let err = lake
        .delete_where("nope", RowPredicate::eq("sensor", "a"))
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::NotFound);
    assert_eq!(err.to_string(), "table 'nope' does not exist");
    lake.write(vec![("air".into(), series("a", 0, 1, 0.0))])
        .await
        .unwrap();
    let err = lake
        .delete_where("air", RowPredicate::eq("district", "a"))
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::User);
    assert_eq!(
        err.to_string(),
        "invalid condition on table 'air': unknown column 'district'"
    );
    let err = lake
        .delete_where("air", RowPredicate::eq("v", "high"))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid condition on table 'air': column 'v' is float and cannot be compared with 'high'"
    );
    // A mixed request is one record: nothing of it is applied when a change is refused.
    let err = lake
        .apply(vec![
            Change::Rows {
                table: "air".into(),
                batch: series("a", 1, 1, 0.0),
            },
            Change::DeleteWhere {
                table: "air".into(),
                predicate: RowPredicate::eq("nope", 1_i64),
            },
        ])
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::User);
    assert_eq!(content(&lake, "air").await.len(), 1);
    let outcome = lake
        .apply(vec![
            Change::Rows {
                table: "air".into(),
                batch: series("b", 1, 2, 0.0),
            },
            Change::DeleteWhere {
                table: "air".into(),
                predicate: RowPredicate::eq("sensor", "a"),
            },
            Change::Checkpoint {
                name: "air/offset".into(),
                value: json!(3),
            },
        ])
        .await
        .unwrap();
    assert_eq!(
        outcome,
        ChangeOutcome {
            rows_written: 2,
            buffer_rows_deleted: 1,
            pending_for_files: false
        }
    );
    assert_eq!(lake.checkpoint("air/offset"), Some(json!(3)));
    lake.shutdown().await.unwrap();
}

#[tokio::test]
async fn versions_logged_with_rows_become_delta_transactions_of_their_tables() {
    let dir = tempfile::tempdir().unwrap();
    let lake = open(dir.path()).await;
    let rows = |table: &str, batch: RecordBatch| Change::Rows {
        table: table.into(),
        batch,
    };
    let cp = |name: &str, value: Value| Change::Checkpoint {
        name: name.into(),
        value,
    };
    lake.apply(vec![
        rows("air", series("a", 0, 3, 0.0)),
        cp("kafka/k/ingest.air/0", json!(2)),
        cp("kafka/k/ingest.air/1", json!(10)),
    ])
    .await
    .unwrap();
    // The later record wins; a non-integer or negative value is no version; `noise` only
    // carries the version of its own record.
    lake.apply(vec![
        cp("kafka/k/ingest.air/0", json!(5)),
        rows("air", series("a", 10, 2, 0.0)),
        rows("noise", series("n", 0, 1, 0.0)),
        cp("pipeline/state", json!({"at": 5})),
        cp("pipeline/negative", json!(-1)),
    ])
    .await
    .unwrap();
    // A checkpoint without rows notes nothing.
    lake.set_checkpoint("kafka/k/ingest.air/2", json!(99))
        .await
        .unwrap();
    assert_eq!(
        lake.delta_transaction_version("air", "kafka/k/ingest.air/0")
            .await
            .unwrap(),
        None
    );

    // Versions replay with their rows after a crash.
    crash(lake);
    let lake = open(dir.path()).await;
    lake.flush().await.unwrap();
    let version = |table: &'static str, app: &'static str| {
        let lake = lake.clone();
        async move { lake.delta_transaction_version(table, app).await.unwrap() }
    };
    assert_eq!(version("air", "kafka/k/ingest.air/0").await, Some(5));
    assert_eq!(version("air", "kafka/k/ingest.air/1").await, Some(10));
    assert_eq!(version("air", "kafka/k/ingest.air/2").await, None);
    assert_eq!(version("air", "pipeline/state").await, None);
    assert_eq!(version("air", "pipeline/negative").await, None);
    assert_eq!(version("noise", "kafka/k/ingest.air/0").await, Some(5));
    assert_eq!(version("noise", "kafka/k/ingest.air/1").await, None);
    assert!(version("noise", crate::WAL_APP_ID).await.is_some());
    assert_eq!(version("nothing", "kafka/k/ingest.air/0").await, None);
    assert!(last_commit_actions(dir.path(), "air").contains(&"txn".to_string()));

    // The next flush carries only what was written since; earlier versions stay in the log.
    lake.apply(vec![
        rows("air", series("a", 20, 1, 0.0)),
        cp("kafka/k/ingest.air/1", json!(11)),
    ])
    .await
    .unwrap();
    lake.flush().await.unwrap();
    assert_eq!(version("air", "kafka/k/ingest.air/0").await, Some(5));
    assert_eq!(version("air", "kafka/k/ingest.air/1").await, Some(11));
    assert!(lake.snapshot("air").unwrap().unwrap().batches.is_empty());
    let air = lake.catalog.read().get("air").cloned().unwrap();
    assert!(air.state.lock().persisting_versions.is_empty());
    lake.shutdown().await.unwrap();
}

#[tokio::test]
async fn rows_check_admits_what_fits_after_what_was_admitted() {
    let dir = tempfile::tempdir().unwrap();
    let lake = open(dir.path()).await;
    lake.write(vec![("air".into(), series("a", 0, 1, 0.0))])
        .await
        .unwrap();
    let text = |table: &str, column: &str| {
        let schema = Arc::new(Schema::new(vec![
            time_column(),
            field_column(column, DataType::Utf8),
        ]));
        (
            table.to_string(),
            RecordBatch::try_new(
                schema,
                vec![
                    Arc::new(TimestampMicrosecondArray::from(vec![1]).with_timezone("UTC")),
                    Arc::new(StringArray::from(vec!["x"])),
                ],
            )
            .unwrap(),
        )
    };
    let mut check = lake.rows_check();
    // `v` is a float in the table.
    let err = check.admit(&[text("air", "v")]).unwrap_err();
    assert_eq!(err.class(), ErrorClass::User);
    assert!(
        err.to_string()
            .contains("column 'v' of table 'air' is float"),
        "{err}"
    );
    // A new table's first columns count for the next sets, a failed set admits nothing.
    check.admit(&[text("fresh", "w")]).unwrap();
    assert!(
        check
            .admit(&[
                text("other", "z"),
                ("fresh".into(), series("s", 0, 1, 0.0)),
                text("air", "v")
            ])
            .is_err()
    );
    check.admit(&[text("other", "v")]).unwrap();
    let err = check
        .admit(&[("fresh".into(), {
            let schema = Arc::new(Schema::new(vec![
                time_column(),
                field_column("w", DataType::Float64),
            ]));
            RecordBatch::try_new(
                schema,
                vec![
                    Arc::new(TimestampMicrosecondArray::from(vec![1]).with_timezone("UTC")),
                    Arc::new(Float64Array::from(vec![1.0])),
                ],
            )
            .unwrap()
        })])
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("column 'w' of table 'fresh' is string"),
        "{err}"
    );
    assert!(check.admit(&[text(CHECKPOINTS_TABLE, "x")]).is_err());
    assert!(check.admit(&[text("9bad", "x")]).is_err());
    // Nothing was written.
    assert!(lake.schema("fresh").is_none());
    lake.shutdown().await.unwrap();
}
