//! Operations: health, metrics, the table list, flush and compaction on demand.

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use civiclake_auth::Permission;
use civiclake_core::role_of;
use serde::Serialize;

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
        crate::metrics::render(&state.metrics, &state.lake),
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
    /// Rows in memory not yet in Delta.
    pub buffered_rows: usize,
    /// Parquet files in the Delta table.
    pub files: usize,
    /// Bytes of those files.
    pub file_bytes: u64,
}

/// Lists the tables the caller's token reaches, with their columns.
#[utoipa::path(get, path = "/api/v1/tables", responses((status = 200, body = Vec<TableInfo>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)), tag = "operations")]
pub(crate) async fn tables(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<TableInfo>>, ApiError> {
    caller.require_any(&[Permission::Query, Permission::Dashboards])?;
    let mut out = Vec::new();
    for name in state.lake.table_names() {
        if !caller.0.reaches_table(&name) {
            continue;
        }
        let Some(snap) = state.lake.snapshot(&name)? else {
            continue;
        };
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
            buffered_rows: snap.batches.iter().map(|b| b.num_rows()).sum(),
            files: snap.files.len(),
            file_bytes: snap.files.iter().map(|f| f.size).sum(),
            name,
        });
    }
    Ok(Json(out))
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
