//! SQL DELETE for administrators, and queries whose files are deleted under them.

use super::*;
use crate::QueryConfig;
use crate::QueryEngine;
use civiclake_core::{ErrorClass, field_column, tag_column, time_column};
use civiclake_lake::{LakeConfig, OpenMode};
use datafusion::arrow::array::{
    AsArray, StringArray, StringDictionaryBuilder, TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::Int32Type;
use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use std::path::{Path, PathBuf};

const JAN_1: i64 = 1_767_225_600_000_000;
const HOUR: i64 = 3_600_000_000;

/// Visits by person (a string field: the personal data) and desk (a tag).
fn visits(rows: &[(&str, i64, &str)]) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        time_column(),
        tag_column("desk"),
        field_column("person", DataType::Utf8),
    ]));
    let mut desks = StringDictionaryBuilder::<Int32Type>::new();
    rows.iter().for_each(|r| desks.append_value(r.0));
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(
                TimestampMicrosecondArray::from_iter_values(rows.iter().map(|r| r.1))
                    .with_timezone("UTC"),
            ),
            Arc::new(desks.finish()),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.2))),
        ],
    )
    .unwrap()
}

async fn setup(dir: &Path) -> (Arc<Lake>, QueryEngine) {
    let mut config = LakeConfig::new(dir);
    config.wal_fsync = false;
    let lake = Lake::open(config, OpenMode::ReadWrite).await.unwrap();
    let engine = QueryEngine::new(lake.clone(), QueryConfig::default()).unwrap();
    (lake, engine)
}

async fn text(engine: &QueryEngine, sql: &str) -> String {
    let result = engine.sql(sql).await.unwrap();
    pretty_format_batches(&result.batches).unwrap().to_string()
}

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

/// Every `person` value stored in the Parquet files under `dir`.
fn persons_on_disk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for path in parquet_files(dir) {
        let file = std::fs::File::open(&path).unwrap();
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap();
        for batch in reader {
            let batch = batch.unwrap();
            let person = batch.column_by_name("person").unwrap().as_string::<i32>();
            out.extend(person.iter().map(|p| p.unwrap().to_string()));
        }
    }
    out.sort();
    out
}

fn delete_of(sql: &str) -> DeleteStatement {
    parse_delete(sql).unwrap().unwrap()
}

fn parse_error(sql: &str) -> String {
    parse_delete(sql).unwrap_err().to_string()
}

#[test]
fn delete_statements_are_recognised_and_checked() {
    assert_eq!(
        delete_of("DELETE FROM Visits WHERE person = 'Ada' AND time < '2026-01-01'"),
        DeleteStatement {
            table: "visits".into(),
            predicate: Condition::Sql("person = 'Ada' AND time < '2026-01-01'".into()),
        }
    );
    assert_eq!(
        delete_of("-- erasure request 42\ndelete from datafusion.public.\"Visits\" where (TRUE);"),
        DeleteStatement {
            table: "Visits".into(),
            predicate: Condition::Constant(true),
        }
    );
    assert_eq!(delete_of("DELETE FROM public.v WHERE false").table, "v");
    // Anything else is DataFusion's.
    for sql in [
        "SELECT 'delete' AS x",
        "SELECT * FROM deleted_rows",
        "DELETE FROM",
        "DELETE FROM a WHERE x = 1; DELETE FROM b WHERE x = 1",
    ] {
        assert_eq!(parse_delete(sql).unwrap(), None, "{sql}");
    }
    let err = parse_error("DELETE FROM visits");
    assert!(
        err.contains("DELETE without WHERE is refused")
            && err.contains("DELETE FROM visits WHERE true"),
        "{err}"
    );
    for (sql, reason) in [
        ("DELETE FROM visits AS v WHERE v.person = 'a'", "alias"),
        (
            "DELETE FROM visits WHERE person = 'a' RETURNING *",
            "RETURNING",
        ),
        ("DELETE FROM a USING b WHERE a.x = b.x", "USING"),
        ("DELETE FROM a, b WHERE x = 1", "more than one table"),
        ("DELETE FROM a JOIN b ON a.x = b.x WHERE x = 1", "join"),
    ] {
        let err = parse_error(sql);
        assert!(err.contains(reason), "{sql}: {err}");
    }
    let err = parse_delete("DELETE FROM other.schema.t WHERE x = 1").unwrap_err();
    assert_eq!(err.class(), ErrorClass::NotFound);
}

#[tokio::test]
async fn an_admin_delete_removes_the_rows_from_queries_and_from_disk() {
    let dir = tempfile::tempdir().unwrap();
    let table_dir = dir.path().join("tables/visits");
    let (lake, engine) = setup(dir.path()).await;
    lake.write(vec![(
        "visits".into(),
        visits(&[
            ("d1", JAN_1, "Ada Lovelace"),
            ("d1", JAN_1 + HOUR, "Mario Rossi"),
            ("d2", JAN_1 + 2 * HOUR, "Mario Rossi"),
            ("d2", JAN_1 + 3 * HOUR, "Grace Hopper"),
        ]),
    )])
    .await
    .unwrap();
    lake.flush().await.unwrap();
    let before = parquet_files(&table_dir);
    assert_eq!(before.len(), 1);
    lake.write(vec![(
        "visits".into(),
        visits(&[("d3", JAN_1 + 4 * HOUR, "Mario Rossi")]),
    )])
    .await
    .unwrap();

    let result = engine
        .sql_as(
            "DELETE FROM visits WHERE person = 'Mario Rossi'",
            &SqlScope::unrestricted(),
        )
        .await
        .unwrap();
    assert_eq!(
        pretty_format_batches(&result.batches).unwrap().to_string(),
        "+-------+\n| count |\n+-------+\n| 3     |\n+-------+"
    );
    assert_eq!(result.schema.field(0).data_type(), &DataType::UInt64);
    assert_eq!(
        text(&engine, "SELECT person FROM visits ORDER BY time").await,
        "+--------------+\n| person       |\n+--------------+\n| Ada Lovelace |\n| Grace Hopper |\n+--------------+"
    );
    // The file that held the rows is gone; the files left hold no copy of them.
    assert!(!before[0].exists());
    assert_eq!(
        persons_on_disk(&table_dir),
        ["Ada Lovelace", "Grace Hopper"]
    );

    // Nothing left to match: 0.
    let result = engine
        .sql("DELETE FROM visits WHERE person = 'Mario Rossi'")
        .await
        .unwrap();
    assert_eq!(
        result.batches[0]
            .column(0)
            .as_primitive::<datafusion::arrow::datatypes::UInt64Type>()
            .value(0),
        0
    );

    // Errors: unknown table (404), a condition the lake cannot hold, DELETE without WHERE.
    let err = engine
        .sql("DELETE FROM nope WHERE person = 'x'")
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::NotFound);
    assert_eq!(err.to_string(), "table 'nope' does not exist");
    let err = engine
        .sql("DELETE FROM visits WHERE upper(person) = 'X'")
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::User);
    assert!(
        err.to_string()
            .contains("is not supported in a row condition"),
        "{err}"
    );
    let err = engine
        .sql("DELETE FROM visits WHERE pm10 > 1")
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid condition on table 'visits': unknown column 'pm10'"
    );
    let err = engine.sql("DELETE FROM visits").await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::User);
    let err = engine
        .sql("DELETE FROM _checkpoints WHERE name = 'x'")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("maintained by the lake"), "{err}");

    // A read-only session keeps DataFusion's refusal, and deletes nothing.
    let scope = SqlScope::restricted(Arc::new(|_: &str| true), None);
    let err = engine
        .sql_as("DELETE FROM visits WHERE time IS NOT NULL", &scope)
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::User);
    assert!(err.to_string().contains("DML not supported"), "{err}");
    // Nor does a scope that may write but not delete (SQL from a GET request or a page).
    let scope = SqlScope::unrestricted().without_deletes();
    assert!(!scope.allows_deletes() && SqlScope::unrestricted().allows_deletes());
    let err = engine
        .sql_as("DELETE FROM visits WHERE time IS NOT NULL", &scope)
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::User);
    assert!(err.to_string().contains("POST /api/v1/query"), "{err}");
    assert_eq!(
        text(&engine, "SELECT count(*) AS n FROM visits").await,
        "+---+\n| n |\n+---+\n| 2 |\n+---+"
    );
    // An admin's WHERE true empties the table, files included.
    let result = engine.sql("DELETE FROM visits WHERE true").await.unwrap();
    assert_eq!(
        result.batches[0]
            .column(0)
            .as_primitive::<datafusion::arrow::datatypes::UInt64Type>()
            .value(0),
        2
    );
    assert!(persons_on_disk(&table_dir).is_empty());
    assert_eq!(
        text(&engine, "SELECT count(*) AS n FROM visits").await,
        "+---+\n| n |\n+---+\n| 0 |\n+---+"
    );
    lake.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_query_whose_files_were_dropped_meanwhile_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let (lake, engine) = setup(dir.path()).await;
    lake.write(vec![(
        "visits".into(),
        visits(&[("d1", JAN_1 - 48 * HOUR, "Ada"), ("d1", JAN_1, "Grace")]),
    )])
    .await
    .unwrap();
    lake.flush().await.unwrap();
    // Planned (with the table's files of the moment), then retention drops the old day.
    let ctx = engine.session().unwrap();
    let df = ctx.sql("SELECT person FROM visits").await.unwrap();
    let dropped = lake.drop_partitions_before("visits", JAN_1).await.unwrap();
    assert_eq!(dropped.days_dropped, ["2025-12-30"]);
    let err = Error::from_datafusion(df.collect().await.unwrap_err(), 1024);
    assert!(matches!(err, Error::FileGone(_)), "{err:?}");
    assert_eq!(err.class(), ErrorClass::Unavailable);
    let message = err.to_string();
    assert!(
        message.starts_with("a data file of the table was deleted while the query ran")
            && message.contains("visits/day=2025-12-30/part-"),
        "{message}"
    );
    // Run again: the table without that day.
    assert_eq!(
        text(&engine, "SELECT person FROM visits").await,
        "+--------+\n| person |\n+--------+\n| Grace  |\n+--------+"
    );
    lake.shutdown().await.unwrap();
}
