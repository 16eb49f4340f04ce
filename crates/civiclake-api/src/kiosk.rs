//! `/api/v1/kiosk/...`: the kiosk siting optimiser. Kiosk operators (and administrators)
//! import the inputs and compute plans; whoever reaches the table `kiosk_plans` reads them.

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use civiclake_auth::Permission;
use civiclake_core::ErrorClass;
use civiclake_kiosk::siting::import;
use civiclake_kiosk::siting::output::{Network, PLANS_TABLE};
use civiclake_kiosk::{PlanRequest, Siting, SitingServiceError};
use serde::Deserialize;
use serde_json::{Value, json};

impl From<SitingServiceError> for ApiError {
    fn from(e: SitingServiceError) -> Self {
        ApiError::new(e.class(), e.to_string())
    }
}

pub(crate) fn siting(state: &AppState) -> Result<&Siting, ApiError> {
    state.kiosk.as_ref().ok_or_else(|| {
        ApiError::new(
            ErrorClass::Unavailable,
            "the kiosk module is not running on this server",
        )
    })
}

/// Operators and administrators compute plans and import their inputs.
fn operator(caller: &Caller) -> Result<(), ApiError> {
    caller.require_any(&[Permission::Admin, Permission::KioskOperate])
}

/// Plans are read by operators, administrators, and query tokens that reach `kiosk_plans`.
pub(crate) fn plan_reader(principal: &civiclake_auth::Principal) -> Result<(), ApiError> {
    if principal.can(Permission::Admin) || principal.can(Permission::KioskOperate) {
        return Ok(());
    }
    if (principal.can(Permission::Query) || principal.can(Permission::Dashboards))
        && principal.reaches_table(PLANS_TABLE)
    {
        return Ok(());
    }
    Err(ApiError::forbidden(format!(
        "role {} may not read kiosk plans: it needs 'kiosk-operate', or 'query' with table {PLANS_TABLE}",
        principal.role
    )))
}

/// Computes a plan: today's kiosks against the proposal of a location model.
#[utoipa::path(post, path = "/api/v1/kiosk/plan",
    request_body(content = Object, description = "`{model: mclp|pmedian|lscp, p, threshold_m, report_thresholds_m, elderly_factor, observed_share, observed_days, detour | distances: [{demand_id, site_id, metres}], fixed: [site ids], demand: [{id, lon, lat, population, elderly, observed}], sites: [{id, name, lon, lat, kind, existing, fixed}], bounds: {max_iterations, patience, min_step, tolerance}, save}` — all optional: inputs default to the latest imports (plus observed use from `kiosk_transactions`), p to today's number of kiosks, the covering distance to 500 m"),
    responses(
        (status = 201, description = "The plan, kept in `kiosk_plans` and `kiosk_plan_sites`: `{id, computed_at, inputs, result: {model, p, objective, today_objective, bound, bound_kind, gap, ...}, today, proposal: {sites, reach: [{threshold_m, population, population_share, elderly, elderly_share}], mean_distance_m, p90_distance_m, ...}, kept, moves, closed, opened, demand}`", body = Object),
        (status = 200, description = "The plan, not kept (`save: false`)", body = Object),
        (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, description = "No inputs imported", body = ErrorBody)),
    tag = "kiosk")]
pub(crate) async fn create_plan(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Json<PlanRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    operator(&caller)?;
    let Json(req) =
        body.map_err(|e| ApiError::bad_request(format!("the plan request: {}", e.body_text())))?;
    let saved = req.save.unwrap_or(true);
    let plan = siting(&state)?.run(req).await?;
    let status = if saved {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(plan)).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PlanQuery {
    /// A plan's id (default: the latest).
    id: Option<String>,
}

/// A stored plan (the latest unless `id` is given).
#[utoipa::path(get, path = "/api/v1/kiosk/plan",
    params(("id" = Option<String>, Query, description = "the plan's id; the latest when absent")),
    responses((status = 200, description = "The plan (as returned when it was computed)", body = Object),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    tag = "kiosk")]
pub(crate) async fn get_plan(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<PlanQuery>,
) -> Result<Json<Value>, ApiError> {
    plan_reader(&caller.0)?;
    let plan = siting(&state)?.get(q.id.as_deref()).await?;
    Ok(Json(json!(plan)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    limit: Option<usize>,
}

/// The stored plans, newest first.
#[utoipa::path(get, path = "/api/v1/kiosk/plans",
    params(("limit" = Option<usize>, Query, description = "at most this many (1–1000, default 50)")),
    responses((status = 200, description = "`{plans: [{id, computed_at, model, p, gap, today_population_covered, proposal_population_covered}]}`", body = Object),
        (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)),
    tag = "kiosk")]
pub(crate) async fn list_plans(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    plan_reader(&caller.0)?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request("limit: between 1 and 1000"));
    }
    let plans = siting(&state)?.list(limit).await?;
    Ok(Json(json!({ "plans": plans })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MapQuery {
    id: Option<String>,
    network: Option<String>,
    width: Option<u32>,
    height: Option<u32>,
}

/// A plan's map as SVG: sections coloured by the walking distance to the nearest kiosk.
#[utoipa::path(get, path = "/api/v1/kiosk/plan/map.svg",
    params(("id" = Option<String>, Query, description = "the plan (default: the latest)"),
        ("network" = Option<String>, Query, description = "`proposal` (default: the proposal with today's kiosks and the moves) or `today`"),
        ("width" = Option<u32>, Query, description = "pixels (320–4000, default 800)"),
        ("height" = Option<u32>, Query, description = "pixels (240–4000, default 700)")),
    responses((status = 200, description = "SVG", content_type = "image/svg+xml"),
        (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    tag = "kiosk")]
pub(crate) async fn plan_map(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<MapQuery>,
) -> Result<Response, ApiError> {
    plan_reader(&caller.0)?;
    let network: Network =
        q.network.as_deref().unwrap_or("proposal").parse().map_err(
            |e: civiclake_kiosk::siting::SitingError| ApiError::bad_request(e.to_string()),
        )?;
    let s = siting(&state)?;
    let plan = s.get(q.id.as_deref()).await?;
    let svg = s.map_svg(
        &plan,
        network,
        q.width.unwrap_or(800),
        q.height.unwrap_or(700),
    )?;
    Ok((
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        svg,
    )
        .into_response())
}

/// The kind of an uploaded input, from its Content-Type.
enum Upload {
    Json,
    GeoJson,
    Csv,
}

fn upload_kind(headers: &HeaderMap) -> Result<Upload, ApiError> {
    match crate::write::media_type(headers).as_str() {
        "application/json" => Ok(Upload::Json),
        "application/geo+json" => Ok(Upload::GeoJson),
        "text/csv" => Ok(Upload::Csv),
        other => Err(ApiError::bad_request(format!(
            "unsupported Content-Type '{other}': use application/json (a list), application/geo+json or text/csv"
        ))
        .with_status(StatusCode::UNSUPPORTED_MEDIA_TYPE)),
    }
}

/// An uploaded list read by its Content-Type: a JSON list, GeoJSON or CSV.
fn upload<T: serde::de::DeserializeOwned>(
    headers: &HeaderMap,
    body: &[u8],
    what: &str,
    geojson: fn(&str) -> Result<Vec<T>, civiclake_kiosk::siting::SitingError>,
    csv: fn(&[u8]) -> Result<Vec<T>, civiclake_kiosk::siting::SitingError>,
) -> Result<Vec<T>, ApiError> {
    let bad = |e: civiclake_kiosk::siting::SitingError| ApiError::bad_request(e.to_string());
    match upload_kind(headers)? {
        Upload::Json => {
            serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("{what}: {e}")))
        }
        Upload::GeoJson => geojson(&String::from_utf8_lossy(body)).map_err(bad),
        Upload::Csv => csv(body).map_err(bad),
    }
}

/// Imports demand points (they replace the previous import for new plans).
#[utoipa::path(post, path = "/api/v1/kiosk/siting/demand",
    request_body(content = String, description = "`application/json`: `[{id, lon, lat, population, elderly, observed}]`; `application/geo+json`: points or polygons with `population` (or ISTAT's `P1`) and `elderly` (or `P27`+`P28`+`P29`); `text/csv`: `id,lon,lat,population,elderly[,observed]` (`civiclake kiosk demand` writes it from ISTAT's files)"),
    responses((status = 201, description = "`{import_id, rows}`", body = Object),
        (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 415, body = ErrorBody)),
    tag = "kiosk")]
pub(crate) async fn import_demand(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    operator(&caller)?;
    let points = upload(
        &headers,
        &body,
        "the demand points",
        import::demand_geojson,
        import::demand_csv,
    )?;
    let summary = siting(&state)?.import_demand(points).await?;
    Ok((StatusCode::CREATED, Json(json!(summary))).into_response())
}

/// Imports candidate sites (today's kiosks among them, `existing`; some `fixed`).
#[utoipa::path(post, path = "/api/v1/kiosk/siting/sites",
    request_body(content = String, description = "`application/json`: `[{id, name, lon, lat, kind, existing, fixed}]`; `application/geo+json`: points with those properties; `text/csv`: `id,lon,lat[,name][,kind][,existing][,fixed]`"),
    responses((status = 201, description = "`{import_id, rows}`", body = Object),
        (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 415, body = ErrorBody)),
    tag = "kiosk")]
pub(crate) async fn import_sites(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    operator(&caller)?;
    let sites = upload(
        &headers,
        &body,
        "the sites",
        import::sites_geojson,
        import::sites_csv,
    )?;
    let summary = siting(&state)?.import_sites(sites).await?;
    Ok((StatusCode::CREATED, Json(json!(summary))).into_response())
}
