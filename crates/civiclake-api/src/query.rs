//! `POST /api/v1/query` and `GET /api/v1/query`: SQL in, JSON / JSONL / CSV / Arrow / Parquet out.

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use civiclake_auth::Permission;
use serde::Deserialize;
use std::sync::atomic::Ordering;
use std::time::Instant;

/// Output formats of a query.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    /// A JSON array of objects (default).
    #[default]
    Json,
    /// One JSON object per line.
    Jsonl,
    /// CSV with a header line.
    Csv,
    /// An Arrow IPC stream.
    Arrow,
    /// A Parquet file.
    Parquet,
}

impl OutputFormat {
    /// The media type of the format.
    pub fn content_type(self) -> &'static str {
        match self {
            OutputFormat::Json => "application/json",
            OutputFormat::Jsonl => "application/x-ndjson",
            OutputFormat::Csv => "text/csv; charset=utf-8",
            OutputFormat::Arrow => "application/vnd.apache.arrow.stream",
            OutputFormat::Parquet => "application/vnd.apache.parquet",
        }
    }
}

/// A query request.
#[derive(Debug, Deserialize, utoipa::ToSchema, utoipa::IntoParams)]
pub(crate) struct QueryRequest {
    /// SQL (Apache DataFusion dialect).
    pub sql: String,
    /// Output format: json (default), jsonl, csv, arrow, parquet.
    #[serde(default)]
    pub format: OutputFormat,
}

/// Encodes a result in `format`.
pub fn encode(
    schema: &SchemaRef,
    batches: &[RecordBatch],
    format: OutputFormat,
) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let err = |e: &dyn std::fmt::Display| format!("could not encode the result: {e}");
    match format {
        OutputFormat::Json => {
            let mut w = arrow::json::WriterBuilder::new()
                .with_explicit_nulls(true)
                .build::<_, arrow::json::writer::JsonArray>(&mut out);
            for b in batches {
                w.write(b).map_err(|e| err(&e))?;
            }
            w.finish().map_err(|e| err(&e))?;
            drop(w);
            if out.is_empty() {
                out.extend_from_slice(b"[]");
            }
        }
        OutputFormat::Jsonl => {
            let mut w = arrow::json::WriterBuilder::new()
                .with_explicit_nulls(true)
                .build::<_, arrow::json::writer::LineDelimited>(&mut out);
            for b in batches {
                w.write(b).map_err(|e| err(&e))?;
            }
            w.finish().map_err(|e| err(&e))?;
        }
        OutputFormat::Csv => {
            let mut w = arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(&mut out);
            if batches.is_empty() {
                let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
                drop(w);
                out.extend_from_slice(names.join(",").as_bytes());
                out.push(b'\n');
            } else {
                for b in batches {
                    w.write(b).map_err(|e| err(&e))?;
                }
            }
        }
        OutputFormat::Arrow => {
            let mut w =
                arrow::ipc::writer::StreamWriter::try_new(&mut out, schema).map_err(|e| err(&e))?;
            for b in batches {
                w.write(b).map_err(|e| err(&e))?;
            }
            w.finish().map_err(|e| err(&e))?;
        }
        OutputFormat::Parquet => {
            let props = parquet::file::properties::WriterProperties::builder()
                .set_compression(parquet::basic::Compression::ZSTD(Default::default()))
                .build();
            let mut w = parquet::arrow::ArrowWriter::try_new(&mut out, schema.clone(), Some(props))
                .map_err(|e| err(&e))?;
            for b in batches {
                w.write(b).map_err(|e| err(&e))?;
            }
            w.close().map_err(|e| err(&e))?;
        }
    }
    Ok(out)
}

/// Runs `sql` in `scope`, recording its latency and errors in the API's metrics: every SQL
/// the HTTP layer runs (the query API, dashboard panels, the `/sql` page) goes through here.
pub(crate) async fn run_sql(
    state: &AppState,
    sql: &str,
    scope: &civiclake_query::SqlScope,
) -> Result<civiclake_query::QueryResult, ApiError> {
    let started = Instant::now();
    let result = state.engine.sql_as(sql, scope).await;
    state.metrics.query_latency.observe(started.elapsed());
    result.map_err(|e| {
        state.metrics.query_errors.fetch_add(1, Ordering::Relaxed);
        ApiError::from(e)
    })
}

/// Runs a query request; `deletes`: whether an administrator's `DELETE` may run (POST only:
/// a GET must not change data).
async fn run(
    state: &AppState,
    caller: &Caller,
    req: QueryRequest,
    deletes: bool,
) -> Result<Response, ApiError> {
    caller.require(Permission::Query)?;
    if req.sql.trim().is_empty() {
        return Err(ApiError::bad_request("the 'sql' parameter is empty"));
    }
    let scope = if deletes {
        caller.sql_scope()
    } else {
        caller.sql_scope().without_deletes()
    };
    let result = run_sql(state, &req.sql, &scope).await?;
    let body = encode(&result.schema, &result.batches, req.format)
        .map_err(|m| ApiError::new(civiclake_core::ErrorClass::Internal, m))?;
    Ok(([(header::CONTENT_TYPE, req.format.content_type())], body).into_response())
}

/// Runs SQL over live and historical data (buffer and Delta tables together).
/// Administrators may also run `DELETE FROM table WHERE condition`: the rows are removed
/// from the buffer and from the Parquet files on disk at once (erasure requests); the
/// answer is one row, `count`.
#[utoipa::path(
    post,
    path = "/api/v1/query",
    request_body = QueryRequest,
    responses(
        (status = 200, description = "The result in the requested format"),
        (status = 400, description = "Invalid SQL, unknown table or column", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "The token lacks the query permission, or a read-only session ran DDL/DML", body = ErrorBody),
        (status = 404, description = "DELETE on a table that does not exist", body = ErrorBody),
        (status = 422, description = "Memory or time limit exceeded", body = ErrorBody),
        (status = 503, description = "A file the query was reading was deleted meanwhile (retention, a DELETE): run it again", body = ErrorBody),
    ),
    tag = "query"
)]
pub(crate) async fn query_post(
    State(state): State<AppState>,
    caller: Caller,
    req: Result<Json<QueryRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(req) = req
        .map_err(|e| ApiError::bad_request(format!("invalid query request: {}", e.body_text())))?;
    run(&state, &caller, req, true).await
}

/// Runs SQL given as query parameters (`?sql=...&format=...`); `DELETE` needs POST.
#[utoipa::path(
    get,
    path = "/api/v1/query",
    params(QueryRequest),
    responses(
        (status = 200, description = "The result in the requested format"),
        (status = 400, description = "Invalid SQL, unknown table or column", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "The token lacks the query permission, or a read-only session ran DDL/DML", body = ErrorBody),
        (status = 404, description = "DELETE on a table that does not exist", body = ErrorBody),
        (status = 422, description = "Memory or time limit exceeded", body = ErrorBody),
        (status = 503, description = "A file the query was reading was deleted meanwhile (retention, a DELETE): run it again", body = ErrorBody),
    ),
    tag = "query"
)]
pub(crate) async fn query_get(
    State(state): State<AppState>,
    caller: Caller,
    req: Result<Query<QueryRequest>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(req) = req.map_err(|e| {
        ApiError::bad_request(format!("invalid query parameters: {}", e.body_text()))
    })?;
    run(&state, &caller, req, false).await
}
