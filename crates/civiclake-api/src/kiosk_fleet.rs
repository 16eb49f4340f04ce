//! `/api/v1/kiosk/kiosks`, `/services`, `/availability`, `/collections`: the kiosk fleet.
//! Operators keep the registry and the service catalog; a kiosk posts its heartbeats and
//! transactions with its own device token (or over MQTT on `devices/kiosk/{id}/...`).

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use civiclake_auth::{Permission, Principal};
use civiclake_core::ErrorClass;
use civiclake_kiosk::fleet::availability::month_span;
use civiclake_kiosk::fleet::registry::{Kiosk, Service};
use civiclake_kiosk::fleet::tables::REGISTRY;
use civiclake_kiosk::fleet::{Collection, Fleet, FleetServiceError, Via, month_of};
use serde::Deserialize;
use serde_json::json;

impl From<FleetServiceError> for ApiError {
    fn from(e: FleetServiceError) -> Self {
        ApiError::new(e.class(), e.to_string())
    }
}

fn fleet(state: &AppState) -> Result<&Fleet, ApiError> {
    state.fleet.as_ref().ok_or_else(|| {
        ApiError::new(
            ErrorClass::Unavailable,
            "the kiosk fleet is not running on this server",
        )
    })
}

/// Operators and administrators keep the registry and the catalog.
fn operator(caller: &Caller) -> Result<(), ApiError> {
    caller.require_any(&[Permission::Admin, Permission::KioskOperate])
}

/// The registry is read by operators, administrators, and query or dashboard tokens that
/// reach `kiosk_registry`.
fn reader(principal: &Principal) -> Result<(), ApiError> {
    if principal.can(Permission::KioskOperate)
        || ((principal.can(Permission::Query) || principal.can(Permission::Dashboards))
            && principal.reaches_table(REGISTRY))
    {
        return Ok(());
    }
    Err(ApiError::forbidden(format!(
        "role {} may not read the kiosk registry: it needs 'kiosk-operate', or 'query' with table {REGISTRY}",
        principal.role
    )))
}

/// A kiosk speaks for itself only: a device token whose subject is `kiosk`; operators and
/// administrators may speak for any (a gateway that relays for a kiosk, a backfill).
fn speaks_for(principal: &Principal, kiosk: &str) -> Result<(), ApiError> {
    if principal.can(Permission::KioskOperate) {
        return Ok(());
    }
    if principal.permissions.contains(&Permission::KioskDevice) {
        return match principal.subject.as_deref() {
            Some(s) if s == kiosk => Ok(()),
            Some(s) => Err(ApiError::forbidden(format!(
                "this token is kiosk {s}'s and may not send for kiosk {kiosk}"
            ))),
            None => Err(ApiError::forbidden(
                "this kiosk-device token names no kiosk (create it with --subject ID)",
            )),
        };
    }
    Err(ApiError::forbidden(format!(
        "role {} may not send for a kiosk: it needs 'kiosk-device' (its own kiosk) or 'kiosk-operate'",
        principal.role
    )))
}

fn json_body<T>(body: Result<Json<T>, JsonRejection>, what: &str) -> Result<T, ApiError> {
    body.map(|Json(v)| v)
        .map_err(|e| ApiError::bad_request(format!("{what}: {}", e.body_text())))
}

/// The registry: every kiosk (retired ones too) with its liveness now.
#[utoipa::path(get, path = "/api/v1/kiosk/kiosks",
    responses((status = 200, description = "`[{id, name, lon, lat, host_site, opening_hours, peripherals, services, software_version, retired, registered_at, liveness: {kiosk, online, last_beat, offline_since, peripherals} | null}]`", body = Object),
        (status = 403, body = ErrorBody), (status = 503, body = ErrorBody)),
    tag = "kiosk")]
pub(crate) async fn list_kiosks(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Response, ApiError> {
    reader(&caller.0)?;
    Ok(Json(fleet(&state)?.kiosks().await).into_response())
}

/// One kiosk of the registry with its liveness now.
#[utoipa::path(get, path = "/api/v1/kiosk/kiosks/{id}",
    params(("id" = String, Path, description = "The kiosk's id (`K01`)")),
    responses((status = 200, description = "The kiosk (as in the list)", body = Object),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    tag = "kiosk")]
pub(crate) async fn get_kiosk(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    reader(&caller.0)?;
    Ok(Json(fleet(&state)?.kiosk(&id).await?).into_response())
}

/// A PUT's body must name what its path names.
fn same_id(what: &str, in_body: &str, in_path: &str) -> Result<(), ApiError> {
    if in_body == in_path {
        return Ok(());
    }
    Err(ApiError::bad_request(format!(
        "id: the body names {what} {in_body:?}, the path {in_path:?}"
    )))
}

/// 201 for what a PUT created, 200 for what it changed.
fn put_status(created: bool) -> StatusCode {
    if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    }
}

/// Registers a kiosk, or changes one (location, opening hours, peripherals, services).
#[utoipa::path(put, path = "/api/v1/kiosk/kiosks/{id}",
    params(("id" = String, Path, description = "The kiosk's id: letters, digits, `-` and `_`, at most 32")),
    request_body(content = Object, description = "`{id, name, lon, lat, host_site, opening_hours: {always, days: {mon: [[\"08:30\", \"13:00\"]], ...}}, peripherals: [{kind: card_reader|printer|scanner|camera, model}], services: [catalog ids], software_version}`; `id` must match the path"),
    responses((status = 201, description = "Registered: the kiosk", body = Object),
        (status = 200, description = "Changed (or unchanged): the kiosk", body = Object),
        (status = 400, description = "Refused, with the field and the reason", body = ErrorBody),
        (status = 403, body = ErrorBody)),
    tag = "kiosk")]
pub(crate) async fn put_kiosk(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Json<Kiosk>, JsonRejection>,
) -> Result<Response, ApiError> {
    operator(&caller)?;
    let kiosk = json_body(body, "the kiosk")?;
    same_id("kiosk", &kiosk.id, &id)?;
    let fleet = fleet(&state)?;
    let created = fleet
        .put_kiosk(kiosk, &crate::bus::actor(&caller.0))
        .await?;
    let view = fleet.kiosk(&id).await?;
    Ok((put_status(created), Json(view)).into_response())
}

/// Retires a kiosk: it leaves service (no longer awaited, no longer counted), its history stays.
#[utoipa::path(delete, path = "/api/v1/kiosk/kiosks/{id}",
    params(("id" = String, Path, description = "The kiosk's id")),
    responses((status = 204, description = "Retired"),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    tag = "kiosk")]
pub(crate) async fn retire_kiosk(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    operator(&caller)?;
    fleet(&state)?
        .retire(&id, &crate::bus::actor(&caller.0))
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The service catalog: what kiosks can offer and the peripherals each needs.
#[utoipa::path(get, path = "/api/v1/kiosk/services",
    responses((status = 200, description = "`[{id, name, kind, needs: [peripheral kinds], legacy}]`", body = Object),
        (status = 403, body = ErrorBody)),
    tag = "kiosk")]
pub(crate) async fn list_services(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Response, ApiError> {
    reader(&caller.0)?;
    Ok(Json(fleet(&state)?.catalog().await).into_response())
}

/// Defines a service of the catalog, or changes one: services are data, not code.
#[utoipa::path(put, path = "/api/v1/kiosk/services/{id}",
    params(("id" = String, Path, description = "The service's id (`[a-z0-9_-]`)")),
    request_body(content = Object, description = "`{id, name, kind: payment|certificate|scan|video_call|information, needs: [card_reader|printer|scanner|camera], legacy}`; `id` must match the path"),
    responses((status = 201, description = "Defined: the service", body = Object),
        (status = 200, description = "Changed: the service", body = Object),
        (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)),
    tag = "kiosk")]
pub(crate) async fn put_service(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Json<Service>, JsonRejection>,
) -> Result<Response, ApiError> {
    operator(&caller)?;
    let service = json_body(body, "the service")?;
    same_id("service", &service.id, &id)?;
    let created = fleet(&state)?
        .put_service(service.clone(), &crate::bus::actor(&caller.0))
        .await?;
    Ok((put_status(created), Json(service)).into_response())
}

/// A kiosk's heartbeat over HTTP (the same payload as on `devices/kiosk/{id}/heartbeat`).
#[utoipa::path(post, path = "/api/v1/kiosk/kiosks/{id}/heartbeat",
    params(("id" = String, Path, description = "The kiosk's id")),
    request_body(content = Object, description = "`{time: RFC 3339 (default: arrival), software_version, peripherals: {card_reader|printer|scanner|camera: online|paused|standby|offline|not-ready|disconnected}}`"),
    responses((status = 200, description = "`{kiosk, changes: [{type: online|offline|peripheral, ...}]}`: what this beat changed", body = Object),
        (status = 400, description = "Refused (a bad field, a kiosk not registered or retired), with the field and the reason (kept in `kiosk_refused`)", body = ErrorBody),
        (status = 403, description = "Another kiosk's token", body = ErrorBody)),
    tag = "kiosk")]
pub(crate) async fn heartbeat(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    speaks_for(&caller.0, &id)?;
    let changes = fleet(&state)?.heartbeat(&id, &body, Via::Http).await?;
    Ok(Json(json!({"kiosk": id, "changes": changes})).into_response())
}

/// A kiosk's transaction over HTTP (the same payload as on `devices/kiosk/{id}/transactions`).
#[utoipa::path(post, path = "/api/v1/kiosk/kiosks/{id}/transactions",
    params(("id" = String, Path, description = "The kiosk's id")),
    request_body(content = Object, description = "`{id, time: RFC 3339, service, method: card|contactless|app|none, outcome: completed|failed|cancelled, duration_s, amount_cents, notices: [{notice_number (18 digits), creditor_fiscal_code (11 digits), amount_cents, qr}], office, call_s, pages}`"),
    responses((status = 201, description = "Stored: `{kiosk, transaction_id, stored: true}`", body = Object),
        (status = 200, description = "Already stored (a retry): `{..., stored: false}`", body = Object),
        (status = 400, description = "Refused (a bad field, a kiosk not registered or retired), with the field and the reason (kept in `kiosk_refused`)", body = ErrorBody),
        (status = 403, description = "Another kiosk's token", body = ErrorBody)),
    tag = "kiosk")]
pub(crate) async fn transaction(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    speaks_for(&caller.0, &id)?;
    let recorded = fleet(&state)?.transaction(&id, &body, Via::Http).await?;
    let status = if recorded.stored {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(recorded)).into_response())
}

#[derive(Debug, Deserialize)]
pub(crate) struct AvailabilityParams {
    /// `YYYY-MM` (Rome); default this month.
    month: Option<String>,
}

/// Parses `YYYY-MM`.
fn parse_month(s: &str) -> Option<(i32, u32)> {
    let (y, m) = s.split_once('-')?;
    if y.len() != 4 || m.len() != 2 {
        return None;
    }
    let (y, m) = (y.parse().ok()?, m.parse().ok()?);
    (1..=12).contains(&m).then_some((y, m))
}

/// Availability of every kiosk over a month: 1 − downtime minutes within opening hours /
/// opening minutes (the month so far, for this month).
#[utoipa::path(get, path = "/api/v1/kiosk/availability",
    params(("month" = Option<String>, Query, description = "`YYYY-MM` in Rome; default this month")),
    responses((status = 200, description = "`{month, kiosks: [{kiosk, open_minutes, down_minutes, availability}], fleet: {open_minutes, down_minutes, availability}}`; `availability` is null where a kiosk was never due open", body = Object),
        (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)),
    tag = "kiosk")]
pub(crate) async fn availability(
    State(state): State<AppState>,
    caller: Caller,
    Query(params): Query<AvailabilityParams>,
) -> Result<Response, ApiError> {
    reader(&caller.0)?;
    let (year, month) = match params.month.as_deref() {
        Some(s) => parse_month(s).ok_or_else(|| {
            ApiError::bad_request(format!("month: {s:?} is not YYYY-MM (e.g. 2026-03)"))
        })?,
        None => month_of(chrono::Utc::now().timestamp_micros())
            .ok_or_else(|| ApiError::new(ErrorClass::Internal, "the clock is out of range"))?,
    };
    let (from, to) = month_span(year, month).ok_or_else(|| {
        ApiError::bad_request(format!("month: {year}-{month:02} is out of range"))
    })?;
    let rows = fleet(&state)?.availability(from, to).await;
    let (open, down) = rows.iter().fold((0.0, 0.0), |(o, d), (_, a)| {
        (o + a.open_minutes, d + a.down_minutes)
    });
    let kiosks: Vec<_> = rows
        .into_iter()
        .map(|(kiosk, a)| {
            json!({"kiosk": kiosk, "open_minutes": a.open_minutes,
                   "down_minutes": a.down_minutes, "availability": a.availability})
        })
        .collect();
    Ok(Json(json!({
        "month": format!("{year}-{month:02}"),
        "kiosks": kiosks,
        "fleet": {"open_minutes": open, "down_minutes": down,
                  "availability": (open > 0.0).then(|| 1.0 - down / open)},
    }))
    .into_response())
}

/// Imports the comune's monthly collections through its other channels, for the kiosks'
/// share of revenue (`kiosk_revenue_share`).
#[utoipa::path(post, path = "/api/v1/kiosk/collections",
    request_body(content = Object, description = "`[{month: YYYY-MM, channel: psp-online|bank-branch|post-office|app-io|..., amount_cents, transactions}]`"),
    responses((status = 201, description = "`{rows}`", body = Object),
        (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)),
    tag = "kiosk")]
pub(crate) async fn import_collections(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Json<Vec<Collection>>, JsonRejection>,
) -> Result<Response, ApiError> {
    operator(&caller)?;
    let rows = json_body(body, "the collections")?;
    let n = fleet(&state)?.import_collections(&rows).await?;
    Ok((StatusCode::CREATED, Json(json!({"rows": n}))).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months() {
        assert_eq!(parse_month("2026-03"), Some((2026, 3)));
        assert_eq!(parse_month("2026-13"), None);
        assert_eq!(parse_month("2026-3"), None);
        assert_eq!(parse_month("march"), None);
    }

    fn principal(role: &str, subject: Option<&str>) -> Principal {
        let roles = civiclake_auth::shipped_roles();
        let r = roles.iter().find(|r| r.name == role).expect("role");
        Principal::of_role(r, None, None, None, subject.map(String::from), None)
    }

    #[test]
    fn a_kiosk_speaks_for_itself_only() {
        assert!(speaks_for(&principal("kiosk-device", Some("K07")), "K07").is_ok());
        let other = speaks_for(&principal("kiosk-device", Some("K07")), "K08").unwrap_err();
        assert!(
            other.message().contains("kiosk K07's"),
            "{}",
            other.message()
        );
        assert!(speaks_for(&principal("kiosk-device", None), "K07").is_err());
        assert!(speaks_for(&principal("kiosk-operator", None), "K08").is_ok());
        assert!(speaks_for(&principal("admin", None), "K08").is_ok());
        assert!(speaks_for(&principal("analyst", None), "K08").is_err());
        assert!(reader(&principal("kiosk-device", Some("K07"))).is_err());
        assert!(reader(&principal("kiosk-operator", None)).is_ok());
    }
}
