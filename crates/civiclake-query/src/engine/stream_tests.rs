//! Rows as a stream (`QueryEngine::stream_in`): the same answer as collected, the same
//! checks, and the time limit running until the last batch.

use crate::{Error, QueryConfig, QueryEngine, SqlScope};
use civiclake_lake::{Lake, LakeConfig, OpenMode};
use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::datatypes::Int64Type;
use futures::StreamExt;
use std::time::Duration;

async fn engine(dir: &std::path::Path, timeout: Duration) -> QueryEngine {
    let mut config = LakeConfig::new(dir);
    config.wal_fsync = false;
    let lake = Lake::open(config, OpenMode::ReadWrite).await.unwrap();
    let config = QueryConfig {
        timeout,
        ..QueryConfig::default()
    };
    QueryEngine::new(lake, config).unwrap()
}

fn sum(batches: &[RecordBatch]) -> i64 {
    batches
        .iter()
        .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().iter())
        .sum()
}

#[tokio::test]
async fn a_stream_gives_what_a_collect_gives() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), Duration::from_secs(60)).await;
    let scope = SqlScope::unrestricted();
    let sql = "SELECT value FROM generate_series(1, 100000) AS t(value) WHERE value % 3 = 0";
    let ctx = engine.session_as(&scope).unwrap();
    let collected = engine.sql_in(&ctx, sql, None, &scope).await.unwrap();
    let (schema, rows) = engine.stream_in(&ctx, sql, None, &scope).await.unwrap();
    let streamed: Vec<RecordBatch> = rows.map(|b| b.unwrap()).collect().await;
    assert_eq!(schema, collected.schema);
    assert_eq!(sum(&streamed), sum(&collected.batches));
    assert_eq!(sum(&streamed), 3 * (33_333 * 33_334 / 2));
}

#[tokio::test]
async fn a_read_only_scope_cannot_stream_a_change() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), Duration::from_secs(60)).await;
    let scope = SqlScope {
        read_only: true,
        ..SqlScope::unrestricted()
    };
    let ctx = engine.session_as(&scope).unwrap();
    let Err(e) = engine
        .stream_in(&ctx, "CREATE TABLE t AS SELECT 1 AS x", None, &scope)
        .await
    else {
        panic!("DDL streamed in a read-only scope");
    };
    assert!(e.to_string().contains("DDL"), "{e}");
}

#[tokio::test]
async fn the_time_limit_ends_a_stream_with_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), Duration::from_millis(300)).await;
    let scope = SqlScope::unrestricted();
    let ctx = engine.session_as(&scope).unwrap();
    // Far more rows than 300 ms give: the stream ends with the time limit, then nothing.
    let (_, mut rows) = engine
        .stream_in(
            &ctx,
            "SELECT value FROM generate_series(1, 10000000000) AS t(value)",
            None,
            &scope,
        )
        .await
        .unwrap();
    let mut batches = 0;
    let error = loop {
        match rows.next().await {
            Some(Ok(_)) => batches += 1,
            Some(Err(e)) => break e,
            None => panic!("the stream ended without the time limit after {batches} batches"),
        }
    };
    assert!(
        matches!(error, Error::Timeout(d) if d == Duration::from_millis(300)),
        "{error}"
    );
    assert!(batches > 0);
    assert!(rows.next().await.is_none());
}
