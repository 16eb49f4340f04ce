//! Operations: health, metrics, the table list, flush, compaction and deletes on demand.

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use arrow::array::{AsArray, RecordBatch};
use arrow::compute::max;
use arrow::datatypes::TimestampMicrosecondType;
use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::header;
use axum::response::IntoResponse;
use civiclake_auth::Permission;
use civiclake_core::{TIME_COLUMN, role_of};
use civiclake_lake::Lake;
use serde::{Deserialize, Serialize};

/// The answer of `GET /health`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Health {
    /// `ok` while the server serves.
    pub status: &'static str,
    /// Version of civiclake.
    pub version: &'static str,
    /// Seconds since start.
    pub uptime_seconds: u64,
}

/// Liveness and version; public (table details are in `/api/v1/tables`, with a token).
#[utoipa::path(get, path = "/health", responses((status = 200, body = Health)), tag = "operations")]
pub(crate) async fn health(State(state): State<AppState>) -> Json<Health> {
    Json(Health {
        status: "ok",
        version: env!("CARGO_PKG_VERSION"),
        uptime_seconds: state.started.elapsed().as_secs(),
    })
}

/// Prometheus metrics (text exposition format).
#[utoipa::path(get, path = "/metrics", responses((status = 200, description = "Prometheus text format", content_type = "text/plain")), tag = "operations")]
pub(crate) async fn metrics(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(Permission::Metrics)?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::metrics::render_all(&state),
    ))
}

/// A column of a table.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct ColumnInfo {
    /// Column name.
    pub name: String,
    /// `time`, `tag` or `field`.
    pub role: &'static str,
    /// Arrow type.
    pub data_type: String,
}

/// A table and its state.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct TableInfo {
    /// Table name.
    pub name: String,
    /// Columns in order.
    pub columns: Vec<ColumnInfo>,
    /// Rows of the table (buffered and in files); absent when a file has no row count in
    /// its statistics.
    pub rows: Option<u64>,
    /// Rows in memory not yet in Delta.
    pub buffered_rows: usize,
    /// Rows in the Parquet files; absent when a file has no row count in its statistics.
    pub file_rows: Option<u64>,
    /// Parquet files in the Delta table.
    pub files: usize,
    /// Bytes of those files.
    pub file_bytes: u64,
    /// Time of the newest row (RFC 3339, UTC), from the buffer and the files' statistics;
    /// absent for an empty table.
    pub newest_time: Option<String>,
    /// The same, in microseconds since the epoch (for the web pages).
    #[serde(skip)]
    pub newest_time_us: Option<i64>,
}

/// The state of every table `visible` accepts, in name order: the one data path of
/// `GET /api/v1/tables` and the home page.
pub(crate) fn table_infos(
    lake: &Lake,
    visible: impl Fn(&str) -> bool,
) -> Result<Vec<TableInfo>, ApiError> {
    let mut out = Vec::new();
    for name in lake.table_names() {
        if !visible(&name) {
            continue;
        }
        let Some(snap) = lake.snapshot(&name)? else {
            continue;
        };
        let buffered_rows: usize = snap.batches.iter().map(|b| b.num_rows()).sum();
        let file_rows = snap.files.iter().map(|f| f.rows).sum::<Option<u64>>();
        let newest_time_us = snap
            .files
            .iter()
            .filter_map(|f| f.max_time)
            .chain(snap.batches.iter().filter_map(newest_time_in))
            .max();
        out.push(TableInfo {
            columns: snap
                .schema
                .fields()
                .iter()
                .map(|f| ColumnInfo {
                    name: f.name().clone(),
                    role: role_of(f).as_str(),
                    data_type: f.data_type().to_string(),
                })
                .collect(),
            rows: file_rows.map(|r| r + buffered_rows as u64),
            buffered_rows,
            file_rows,
            files: snap.files.len(),
            file_bytes: snap.files.iter().map(|f| f.size).sum(),
            newest_time: newest_time_us.and_then(rfc3339_micros),
            newest_time_us,
            name,
        });
    }
    Ok(out)
}

/// The largest `time` of a buffered batch (µs), if it has any row.
fn newest_time_in(batch: &RecordBatch) -> Option<i64> {
    let column = batch.column_by_name(TIME_COLUMN)?;
    max(column.as_primitive_opt::<TimestampMicrosecondType>()?)
}

/// `µs` since the epoch as RFC 3339 with microseconds, in UTC.
pub(crate) fn rfc3339_micros(us: i64) -> Option<String> {
    chrono::DateTime::from_timestamp_micros(us)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
}

/// Lists the tables the caller's token reaches, with their columns, row counts, sizes and
/// newest row time.
#[utoipa::path(get, path = "/api/v1/tables", responses((status = 200, body = Vec<TableInfo>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)), tag = "operations")]
pub(crate) async fn tables(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<TableInfo>>, ApiError> {
    caller.require_any(&[Permission::Query, Permission::Dashboards])?;
    Ok(Json(table_infos(&state.lake, |t| {
        caller.0.reaches_table(t)
    })?))
}

/// Flushes every buffered row to the Delta tables now.
#[utoipa::path(post, path = "/api/v1/admin/flush", responses((status = 200, description = "Rows and files written"), (status = 503, body = ErrorBody)), tag = "operations")]
pub(crate) async fn flush(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(Permission::Admin)?;
    let stats = state.lake.flush().await?;
    Ok(Json(stats))
}

/// Merges the small files of every day partition now, and vacuums replaced files past the grace period.
#[utoipa::path(post, path = "/api/v1/admin/compact", responses((status = 200, description = "Files merged"), (status = 503, body = ErrorBody)), tag = "operations")]
pub(crate) async fn compact(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(Permission::Admin)?;
    let stats = state.lake.compact(true).await?;
    Ok(Json(stats))
}

/// A delete by condition.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct DeleteRequest {
    /// Table name.
    pub table: String,
    /// SQL boolean condition on the table's columns, e.g.
    /// `time < '2026-01-01T00:00:00Z' AND sensor = 'a1'`.
    #[serde(rename = "where")]
    pub condition: String,
}

/// What a delete did.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct DeleteResponse {
    /// Table name.
    pub table: String,
    /// Buffered rows deleted at once.
    pub buffer_rows_deleted: usize,
    /// Whether rows in the table's files (or being flushed) are still to be rewritten: they
    /// are hidden from queries already, and removed from the files by the next flush.
    pub pending_for_files: bool,
}

/// Deletes the rows of a table matching a condition (retention, GDPR): durable when
/// answered, invisible to queries at once, removed from the Parquet files by the next flush.
#[utoipa::path(
    post,
    path = "/api/v1/admin/delete",
    request_body = DeleteRequest,
    responses(
        (status = 200, body = DeleteResponse),
        (status = 400, description = "Condition not understood or not fitting the table", body = ErrorBody),
        (status = 404, description = "No such table", body = ErrorBody),
        (status = 503, body = ErrorBody),
    ),
    tag = "operations"
)]
pub(crate) async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    req: Result<Json<DeleteRequest>, JsonRejection>,
) -> Result<Json<DeleteResponse>, ApiError> {
    caller.require(Permission::Admin)?;
    let Json(req) = req
        .map_err(|e| ApiError::bad_request(format!("invalid delete request: {}", e.body_text())))?;
    let predicate = civiclake_query::parse_predicate(&req.condition)?;
    let outcome = state.lake.delete_where(&req.table, predicate).await?;
    Ok(Json(DeleteResponse {
        table: req.table,
        buffer_rows_deleted: outcome.buffer_rows_deleted,
        pending_for_files: outcome.pending_for_files,
    }))
}
