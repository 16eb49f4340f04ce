//! `POST /api/v1/write`: line protocol, JSON, NDJSON and Arrow IPC into the lake.

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use civiclake_auth::Permission;
use civiclake_ingest::{DecodeOptions, Decoded, Precision, RowError, SchemaLookup};
use serde::{Deserialize, Serialize};
use std::sync::atomic::Ordering;
use std::time::Instant;

/// Query parameters of a write.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub(crate) struct WriteParams {
    /// Table to write to; for line protocol, defaults to each line's measurement.
    pub table: Option<String>,
    /// Unit of epoch timestamps: `ns` (default), `us`, `ms` or `s`.
    pub precision: Option<String>,
    /// Write the good rows and return the rejected ones instead of rejecting the whole request.
    #[serde(default)]
    pub accept_partial: bool,
}

/// InfluxDB 1.x compatible parameters (`/write?db=...&precision=...`).
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub(crate) struct InfluxParams {
    /// Accepted for compatibility and ignored: each line's measurement is its table.
    pub db: Option<String>,
    /// Unit of timestamps: `ns` (default), `u`, `ms`, `s`.
    pub precision: Option<String>,
}

/// The answer to a partial write.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct PartialWrite {
    /// Rows written.
    pub rows_written: usize,
    /// Rows rejected, with line, column and reason (the first 100).
    #[schema(value_type = Vec<Object>)]
    pub rejected: Vec<RowError>,
}

struct LakeSchemas<'a>(&'a civiclake_lake::Lake);

impl SchemaLookup for LakeSchemas<'_> {
    fn schema(&self, table: &str) -> Option<arrow::datatypes::SchemaRef> {
        self.0.schema(table)
    }
}

#[derive(Debug, Clone, Copy)]
enum Format {
    LineProtocol,
    Json,
    Ndjson,
    Arrow,
}

/// The media type of a request's body, lowercase, without parameters (`""` when absent).
pub(crate) fn media_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

fn format_of(headers: &HeaderMap) -> Result<Format, ApiError> {
    let mime = media_type(headers);
    Ok(match mime.as_str() {
        "" | "text/plain" | "application/octet-stream" | "application/x-www-form-urlencoded" => {
            Format::LineProtocol
        }
        "application/json" => Format::Json,
        "application/x-ndjson" | "application/jsonl" | "application/json-lines" => Format::Ndjson,
        "application/vnd.apache.arrow.stream" => Format::Arrow,
        other => {
            return Err(ApiError::bad_request(format!(
                "unsupported Content-Type '{other}': use text/plain (line protocol), application/json, application/x-ndjson or application/vnd.apache.arrow.stream"
            ))
            .with_status(StatusCode::UNSUPPORTED_MEDIA_TYPE));
        }
    })
}

fn precision(p: Option<&str>) -> Result<Precision, ApiError> {
    match p {
        None | Some("") => Ok(Precision::Nanosecond),
        Some(p) => p.parse().map_err(|_| {
            ApiError::bad_request(format!("invalid precision '{p}': use ns, us, ms or s"))
        }),
    }
}

async fn ingest(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    body: Bytes,
    opts: DecodeOptions,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    caller.require(Permission::Write)?;
    if let Some(table) = &opts.table {
        state.auth.check_write_table(&caller.0, table)?;
    }
    let format = format_of(headers)?;
    let lookup = LakeSchemas(&state.lake);
    let decoded: Result<Decoded, _> = match format {
        Format::LineProtocol => civiclake_ingest::decode_line_protocol(&body, &opts, &lookup),
        Format::Json => civiclake_ingest::decode_json(&body, &opts, &lookup),
        Format::Ndjson => civiclake_ingest::decode_ndjson(&body, &opts, &lookup),
        Format::Arrow => civiclake_ingest::decode_arrow_ipc(&body, &opts, &lookup),
    };
    let decoded = match decoded {
        Ok(d) => d,
        Err(e) => {
            state.metrics.write_rejected.fetch_add(1, Ordering::Relaxed);
            return Err(e.into());
        }
    };
    state
        .metrics
        .rows_rejected
        .fetch_add(decoded.rejected.len() as u64, Ordering::Relaxed);
    if !opts.accept_partial && !decoded.rejected.is_empty() {
        state.metrics.write_rejected.fetch_add(1, Ordering::Relaxed);
        let n = decoded.rejected.len();
        return Err(ApiError::rejected(
            format!(
                "{n} row(s) rejected; nothing was written (add accept_partial=true to write the good rows)"
            ),
            decoded.rejected,
        ));
    }
    for t in &decoded.batches {
        if let Err(e) = state.auth.check_write_table(&caller.0, &t.table) {
            state.metrics.write_rejected.fetch_add(1, Ordering::Relaxed);
            return Err(e);
        }
    }
    let batches = decoded
        .batches
        .into_iter()
        .map(|t| (t.table, t.batch))
        .collect();
    let rows = match state.lake.write(batches).await {
        Ok(rows) => rows,
        Err(e) => {
            if e.class() == civiclake_core::ErrorClass::User {
                state.metrics.write_rejected.fetch_add(1, Ordering::Relaxed);
            }
            return Err(e.into());
        }
    };
    state.metrics.write_latency.observe(started.elapsed());
    if decoded.rejected.is_empty() {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Ok((
            StatusCode::OK,
            Json(PartialWrite {
                rows_written: rows,
                rejected: decoded.rejected,
            }),
        )
            .into_response())
    }
}

fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Writes rows. Line protocol (`text/plain`), JSON (`application/json`: an object or an
/// array of objects), NDJSON (`application/x-ndjson`) or an Arrow IPC stream
/// (`application/vnd.apache.arrow.stream`). The rows are durable (WAL fsync) and visible to
/// SQL when the answer arrives.
#[utoipa::path(
    post,
    path = "/api/v1/write",
    params(WriteParams),
    request_body(content = String, description = "Rows in line protocol, JSON, NDJSON or Arrow IPC", content_type = "text/plain"),
    responses(
        (status = 204, description = "All rows written"),
        (status = 200, description = "Partial write: good rows written, rejected ones listed", body = PartialWrite),
        (status = 400, description = "Malformed payload or type conflict; nothing written", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Not allowed: no write permission, table not granted, or a system/module table", body = ErrorBody),
        (status = 415, description = "Unsupported Content-Type", body = ErrorBody),
        (status = 503, description = "Storage unavailable, shutting down, or saturated (too many rows wait for a flush: retry after the Retry-After header's seconds)", body = ErrorBody),
    ),
    tag = "write"
)]
pub(crate) async fn write(
    State(state): State<AppState>,
    caller: Caller,
    params: Result<Query<WriteParams>, QueryRejection>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let Query(params) = params.map_err(|e| {
        ApiError::bad_request(format!("invalid write parameters: {}", e.body_text()))
    })?;
    let opts = DecodeOptions {
        table: params.table,
        precision: precision(params.precision.as_deref())?,
        now_micros: now_micros(),
        accept_partial: params.accept_partial,
        pseudonymiser: None,
    };
    ingest(&state, &caller, &headers, body, opts).await
}

/// InfluxDB 1.x compatible write of line protocol (for Telegraf and existing gateways):
/// each line's measurement is its table.
#[utoipa::path(
    post,
    path = "/write",
    params(InfluxParams),
    request_body(content = String, description = "Line protocol", content_type = "text/plain"),
    responses(
        (status = 204, description = "All rows written"),
        (status = 400, description = "Malformed payload; nothing written", body = ErrorBody),
    ),
    tag = "write"
)]
pub(crate) async fn influx_write(
    State(state): State<AppState>,
    caller: Caller,
    params: Result<Query<InfluxParams>, QueryRejection>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let Query(params) = params.map_err(|e| {
        ApiError::bad_request(format!("invalid write parameters: {}", e.body_text()))
    })?;
    let _ = params.db;
    let p = match params.precision.as_deref() {
        Some("n") => Some("ns"),
        Some("u") => Some("us"),
        other => other,
    };
    let opts = DecodeOptions {
        table: None,
        precision: precision(p)?,
        now_micros: now_micros(),
        accept_partial: false,
        pseudonymiser: None,
    };
    ingest(&state, &caller, &HeaderMap::new(), body, opts).await
}
