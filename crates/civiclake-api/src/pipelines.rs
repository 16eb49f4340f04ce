//! `/api/v1/pipelines`, `/api/v1/alerts`, `/api/v1/admin/retention`: continuous pipelines,
//! alert rules and retention. Administrators define and delete; a query token sees the
//! pipelines and rules over tables it reaches.

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use civiclake_auth::Permission;
use civiclake_core::ErrorClass;
use civiclake_pipelines::{AlertSpec, PipelineSpec, Pipelines};
use serde_json::{Value, json};

impl From<civiclake_pipelines::Error> for ApiError {
    fn from(e: civiclake_pipelines::Error) -> Self {
        use civiclake_pipelines::Error as E;
        match e {
            E::Invalid(m) => ApiError::bad_request(m),
            E::NotFound(m) => ApiError::new(ErrorClass::NotFound, format!("{m} not found")),
            E::Conflict(m) => ApiError::new(ErrorClass::Conflict, m),
            E::Lake(e) => e.into(),
            E::Query(e) => e.into(),
            E::Stopped => ApiError::new(ErrorClass::Unavailable, "the pipelines are stopping"),
            other => ApiError::new(ErrorClass::Internal, other.to_string()),
        }
    }
}

fn pipelines(state: &AppState) -> Result<&Pipelines, ApiError> {
    state.pipelines.as_ref().ok_or_else(|| {
        ApiError::new(
            ErrorClass::Unavailable,
            "continuous pipelines are not running on this server",
        )
    })
}

fn reader(caller: &Caller) -> Result<(), ApiError> {
    caller.require_any(&[Permission::Admin, Permission::Query])
}

fn sees(caller: &Caller, tables: &[&str]) -> bool {
    let scope = caller.sql_scope();
    tables.iter().all(|t| scope.sees(t))
}

/// The pipelines, with their state.
#[utoipa::path(get, path = "/api/v1/pipelines",
    responses((status = 200, description = "`{pipelines: [{spec, file, running, error, watermark, emitted_until, pending_corrections, rows_seen, windows_emitted, corrections, late_rows, quarantined, last_lag_ms, in_memory, in_memory_off, windows_from_memory, write_path_ms, emit_ms}]}` — those whose source and target the token reaches", body = Object)),
    tag = "pipelines")]
pub(crate) async fn list_pipelines(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    reader(&caller)?;
    let list: Vec<_> = pipelines(&state)?
        .list()
        .into_iter()
        .filter(|p| sees(&caller, &[&p.spec.source, &p.spec.target]))
        .collect();
    Ok(Json(json!({ "pipelines": list })))
}

/// Creates a pipeline (kept across restarts).
#[utoipa::path(post, path = "/api/v1/pipelines",
    request_body(content = Object, description = "`{name, source, target, sql | rollup: {series, fields}, window: {kind: tumbling|hopping, size, slide}, watermark, allowed_lateness, max_clock_skew, series, idle_timeout, backfill, retention}` — as in `pipelines/streams/*.toml`"),
    responses((status = 201, body = Object), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)),
    tag = "pipelines")]
pub(crate) async fn create_pipeline(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Json<PipelineSpec>, JsonRejection>,
) -> Result<Response, ApiError> {
    caller.require(Permission::Admin)?;
    let Json(spec) =
        body.map_err(|e| ApiError::bad_request(format!("the pipeline: {}", e.body_text())))?;
    let status = pipelines(&state)?.create(spec).await?;
    Ok((StatusCode::CREATED, Json(status)).into_response())
}

/// One pipeline.
#[utoipa::path(get, path = "/api/v1/pipelines/{name}",
    params(("name" = String, Path, description = "The pipeline")),
    responses((status = 200, body = Object), (status = 404, body = ErrorBody)), tag = "pipelines")]
pub(crate) async fn get_pipeline(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    reader(&caller)?;
    let status = pipelines(&state)?.status(&name)?;
    if !sees(&caller, &[&status.spec.source, &status.spec.target]) {
        return Err(civiclake_pipelines::Error::NotFound(format!("pipeline '{name}'")).into());
    }
    Ok(Json(serde_json::to_value(status).unwrap_or_default()))
}

/// Stops and deletes a pipeline created through the API (its target table stays).
#[utoipa::path(delete, path = "/api/v1/pipelines/{name}",
    params(("name" = String, Path, description = "The pipeline")),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody, description = "defined in a file")),
    tag = "pipelines")]
pub(crate) async fn delete_pipeline(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require(Permission::Admin)?;
    pipelines(&state)?.delete(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The alert rules, with the series firing.
#[utoipa::path(get, path = "/api/v1/alerts",
    responses((status = 200, description = "`{alerts: [{spec, file, firing: [{series, since, value}], last_evaluated, error}]}`", body = Object)),
    tag = "pipelines")]
pub(crate) async fn list_alerts(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    reader(&caller)?;
    let list: Vec<_> = pipelines(&state)?
        .list_alerts()
        .into_iter()
        .filter(|a| sees(&caller, &[&a.spec.table]))
        .collect();
    Ok(Json(json!({ "alerts": list })))
}

/// Creates an alert rule (kept across restarts).
#[utoipa::path(post, path = "/api/v1/alerts",
    request_body(content = Object, description = "`{name, kind: threshold|dead_man|rate_of_change, table, field, aggregate, window, by, where, op, value, after, lookback, per, every, severity, description}` — as in `pipelines/alerts/*.toml`"),
    responses((status = 201, body = Object), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)),
    tag = "pipelines")]
pub(crate) async fn create_alert(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Json<AlertSpec>, JsonRejection>,
) -> Result<Response, ApiError> {
    caller.require(Permission::Admin)?;
    let Json(spec) =
        body.map_err(|e| ApiError::bad_request(format!("the alert rule: {}", e.body_text())))?;
    let status = pipelines(&state)?.create_alert(spec).await?;
    Ok((StatusCode::CREATED, Json(status)).into_response())
}

/// One alert rule.
#[utoipa::path(get, path = "/api/v1/alerts/{name}",
    params(("name" = String, Path, description = "The rule")),
    responses((status = 200, body = Object), (status = 404, body = ErrorBody)), tag = "pipelines")]
pub(crate) async fn get_alert(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    reader(&caller)?;
    let status = pipelines(&state)?.alert_status(&name)?;
    if !sees(&caller, &[&status.spec.table]) {
        return Err(civiclake_pipelines::Error::NotFound(format!("alert '{name}'")).into());
    }
    Ok(Json(serde_json::to_value(status).unwrap_or_default()))
}

/// Deletes an alert rule created through the API.
#[utoipa::path(delete, path = "/api/v1/alerts/{name}",
    params(("name" = String, Path, description = "The rule")),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody, description = "defined in a file")),
    tag = "pipelines")]
pub(crate) async fn delete_alert(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require(Permission::Admin)?;
    pipelines(&state)?.delete_alert(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Enforces every table's retention now (it also runs every hour): drops the whole day
/// partitions older than the retention and deletes their files.
#[utoipa::path(post, path = "/api/v1/admin/retention",
    responses((status = 200, description = "`{tables: [{table, retention, cutoff, outcome}]}`", body = Object), (status = 403, body = ErrorBody)),
    tag = "pipelines")]
pub(crate) async fn run_retention(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    caller.require(Permission::Admin)?;
    let runs = pipelines(&state)?.enforce_retention().await?;
    Ok(Json(json!({ "tables": runs })))
}
