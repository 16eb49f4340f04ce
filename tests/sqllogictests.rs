//! Runs the SQL behaviour specified in `sql/tests/*.slt` against a fresh in-process lake per
//! file (harness = false: `cargo test --test sqllogictests [-- NAME_FILTER]`).
//!
//! Besides SQL, a record may hold one of these runner statements:
//! * `WRITE [table]` followed by lines of InfluxDB line protocol (nanosecond timestamps):
//!   written through the WAL like an HTTP write (the table defaults to each measurement);
//! * `FLUSH`: moves the buffer into the Delta tables;
//! * `COMPACT`: merges small files;
//! * `DELETE table WHERE condition`: a delete by SQL condition (counts the buffered rows
//!   deleted at once; rows in files are hidden, and removed by the next `FLUSH`);
//! * `REPLACE table KEY col[,col...]` followed by line protocol: a replace-by-key (counts the
//!   rows written).

use arrow::util::display::{ArrayFormatter, FormatOptions};
use civiclake_ingest::{DecodeOptions, Precision};
use civiclake_lake::{Lake, LakeConfig, OpenMode};
use civiclake_query::{QueryConfig, QueryEngine};
use sqllogictest::{DBOutput, DefaultColumnType};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug)]
struct TestError(String);

impl std::fmt::Display for TestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TestError {}

#[derive(Clone)]
struct CivicLake {
    lake: Arc<Lake>,
    engine: QueryEngine,
}

impl CivicLake {
    fn decode(
        &self,
        table: Option<&str>,
        body: &str,
    ) -> Result<Vec<civiclake_ingest::TableBatch>, TestError> {
        let opts = DecodeOptions {
            table: table.map(str::to_string),
            precision: Precision::Nanosecond,
            now_micros: 0,
            accept_partial: false,
            pseudonymiser: None,
        };
        let lookup = LakeSchemas(&self.lake);
        let decoded = civiclake_ingest::decode_line_protocol(body.as_bytes(), &opts, &lookup)
            .map_err(|e| TestError(e.to_string()))?;
        if let Some(e) = decoded.rejected.first() {
            return Err(TestError(format!(
                "line {}:{}: {}",
                e.line, e.column, e.message
            )));
        }
        Ok(decoded.batches)
    }

    async fn write(&self, table: Option<&str>, body: &str) -> Result<u64, TestError> {
        let batches = self.decode(table, body)?;
        let rows = self
            .lake
            .write(batches.into_iter().map(|b| (b.table, b.batch)).collect())
            .await
            .map_err(|e| TestError(e.to_string()))?;
        Ok(rows as u64)
    }

    /// `DELETE table WHERE condition`.
    async fn delete(&self, statement: &str) -> Result<u64, TestError> {
        let usage = || TestError("usage: DELETE table WHERE condition".into());
        let rest = statement.trim().strip_prefix("DELETE").ok_or_else(usage)?;
        let (table, condition) = rest.split_once(" WHERE ").ok_or_else(usage)?;
        let predicate = civiclake_query::parse_predicate(condition.trim())
            .map_err(|e| TestError(e.to_string()))?;
        let outcome = self
            .lake
            .delete_where(table.trim(), predicate)
            .await
            .map_err(|e| TestError(e.to_string()))?;
        Ok(outcome.buffer_rows_deleted as u64)
    }

    /// `REPLACE table KEY a,b` + line protocol.
    async fn replace(&self, first: &str, body: &str) -> Result<u64, TestError> {
        let words: Vec<&str> = first.split_whitespace().collect();
        let [_, table, "KEY", keys] = words.as_slice() else {
            return Err(TestError("usage: REPLACE table KEY col[,col...]".into()));
        };
        let keys: Vec<String> = keys.split(',').map(str::to_string).collect();
        let mut rows = 0;
        for b in self.decode(Some(table), body)? {
            rows += self
                .lake
                .replace_by_key(&b.table, keys.clone(), b.batch)
                .await
                .map_err(|e| TestError(e.to_string()))?;
        }
        Ok(rows as u64)
    }
}

struct LakeSchemas<'a>(&'a Lake);

impl civiclake_ingest::SchemaLookup for LakeSchemas<'_> {
    fn schema(&self, table: &str) -> Option<arrow::datatypes::SchemaRef> {
        self.0.schema(table)
    }
}

fn column_type(dt: &arrow::datatypes::DataType) -> DefaultColumnType {
    use arrow::datatypes::DataType as D;
    match dt {
        D::Int8 | D::Int16 | D::Int32 | D::Int64 | D::UInt8 | D::UInt16 | D::UInt32 | D::UInt64 => {
            DefaultColumnType::Integer
        }
        D::Float16 | D::Float32 | D::Float64 | D::Decimal128(..) => {
            DefaultColumnType::FloatingPoint
        }
        D::Utf8 | D::LargeUtf8 | D::Utf8View | D::Dictionary(..) => DefaultColumnType::Text,
        _ => DefaultColumnType::Any,
    }
}

#[async_trait::async_trait]
impl sqllogictest::AsyncDB for CivicLake {
    type Error = TestError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, TestError> {
        let trimmed = sql.trim();
        let (first, rest) = trimmed.split_once('\n').unwrap_or((trimmed, ""));
        let mut words = first.split_whitespace();
        match words.next() {
            Some("WRITE") => {
                return self
                    .write(words.next(), rest)
                    .await
                    .map(DBOutput::StatementComplete);
            }
            Some("DELETE") if words.clone().next() != Some("FROM") => {
                return self.delete(trimmed).await.map(DBOutput::StatementComplete);
            }
            Some("REPLACE") => {
                return self
                    .replace(first, rest)
                    .await
                    .map(DBOutput::StatementComplete);
            }
            Some("FLUSH") if rest.is_empty() => {
                let stats = self
                    .lake
                    .flush()
                    .await
                    .map_err(|e| TestError(e.to_string()))?;
                return Ok(DBOutput::StatementComplete(stats.rows as u64));
            }
            Some("COMPACT") if rest.is_empty() => {
                let stats = self
                    .lake
                    .compact(true)
                    .await
                    .map_err(|e| TestError(e.to_string()))?;
                return Ok(DBOutput::StatementComplete(stats.files_removed as u64));
            }
            _ => {}
        }
        let result = self
            .engine
            .sql(sql)
            .await
            .map_err(|e| TestError(e.to_string()))?;
        let types = result
            .schema
            .fields()
            .iter()
            .map(|f| column_type(f.data_type()))
            .collect();
        let options = FormatOptions::default().with_null("NULL");
        let mut rows = Vec::new();
        for batch in &result.batches {
            let formatters = batch
                .columns()
                .iter()
                .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| TestError(e.to_string()))?;
            for row in 0..batch.num_rows() {
                rows.push(
                    formatters
                        .iter()
                        .map(|f| {
                            let s = f.value(row).to_string();
                            if s.is_empty() {
                                "(empty)".to_string()
                            } else {
                                s
                            }
                        })
                        .collect(),
                );
            }
        }
        if result.schema.fields().is_empty() {
            return Ok(DBOutput::StatementComplete(0));
        }
        Ok(DBOutput::Rows { types, rows })
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "civiclake"
    }
}

fn slt_files(filter: Option<&str>) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sql/tests");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "slt"))
        .filter(|p| filter.is_none_or(|f| p.to_string_lossy().contains(f)))
        .collect();
    files.sort();
    files
}

async fn run_file(path: &Path) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut config = LakeConfig::new(dir.path());
    config.wal_fsync = false;
    let lake = Lake::open(config, OpenMode::ReadWrite)
        .await
        .map_err(|e| e.to_string())?;
    let engine =
        QueryEngine::new(lake.clone(), QueryConfig::default()).map_err(|e| e.to_string())?;
    let db = CivicLake {
        lake: lake.clone(),
        engine,
    };
    let mut runner = sqllogictest::Runner::new(move || {
        let db = db.clone();
        async move { Ok::<_, TestError>(db) }
    });
    let result = runner
        .run_file_async(path)
        .await
        .map_err(|e| e.display(true).to_string());
    lake.shutdown().await.map_err(|e| e.to_string())?;
    result
}

fn main() {
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let files = slt_files(filter.as_deref());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut failed = 0;
    for file in &files {
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        match runtime.block_on(run_file(file)) {
            Ok(()) => println!("slt {name} ... ok"),
            Err(e) => {
                failed += 1;
                println!("slt {name} ... FAILED\n{e}");
            }
        }
    }
    println!("{} passed, {failed} failed", files.len() - failed);
    if failed > 0 {
        std::process::exit(1);
    }
}
