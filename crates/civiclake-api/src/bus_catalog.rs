//! `/api/v1/bus/catalog`, `/api/v1/bus/organisations/...` and `/api/v1/bus/map`: the bus's
//! service catalog (organisations, their credentials, systems and endpoints with their
//! OpenAPI or WSDL documents) and the ecosystem map.
//!
//! Bus administrators manage everything; a bus-member token (issued to an organisation with
//! `POST /api/v1/bus/organisations/{org}/tokens`) describes its own organisation's systems
//! and endpoints; anyone on the bus (bus admin, member, publisher) reads the catalog.

use crate::AppState;
use crate::auth::Caller;
use crate::bus::{actor, manager_of};
use crate::error::{ApiError, ErrorBody};
use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use civiclake_auth::{Permission, Principal, TokenRequest, parse_expiry};
use civiclake_bus::Bus;
use civiclake_bus::catalog::{Catalog, Endpoint, Organisation, System};
use civiclake_core::ErrorClass;
use serde::Deserialize;
use serde_json::{Value, json};

fn bus(state: &AppState) -> Result<&Bus, ApiError> {
    state.bus.as_ref().ok_or_else(|| {
        ApiError::new(
            ErrorClass::Unavailable,
            "the interoperability bus is not running on this server",
        )
    })
}

fn reader(caller: &Caller) -> Result<(), ApiError> {
    caller.require_any(&[
        Permission::BusAdmin,
        Permission::BusMember,
        Permission::Publish,
    ])
}

/// Bus administrators act for every organisation, a member for its own.
pub(crate) fn acts_for(p: &Principal, org: &str) -> Result<(), ApiError> {
    match manager_of(p)? {
        Some(own) if own != org => Err(ApiError::forbidden(format!(
            "this token acts for organisation {own}, not {org}"
        ))),
        _ => Ok(()),
    }
}

fn saved(created: bool, body: Value) -> Response {
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    (status, Json(body)).into_response()
}

/// An endpoint without its document (which has its own URL).
pub(crate) fn endpoint_json(e: &Endpoint) -> Value {
    json!({
        "org": e.org,
        "system": e.system,
        "id": e.id,
        "url": e.url,
        "kind": e.described.kind,
        "standard": e.described.standard,
        "format": e.described.format,
        "title": e.described.title,
        "api_version": e.described.api_version,
        "operations": e.described.operations,
        "sha256": e.sha256,
        "bytes": e.document.len(),
        "updated": chrono::DateTime::from_timestamp_micros(e.updated_micros).map(|t| t.to_rfc3339()),
        "document": format!("/api/v1/bus/organisations/{}/systems/{}/endpoints/{}/document", e.org, e.system, e.id),
    })
}

fn system_json(c: &Catalog, s: &System) -> Value {
    let mut v = json!(s);
    v["source"] = json!(s.source());
    v["endpoints"] = c
        .endpoints_of(&s.org, &s.id)
        .map(endpoint_json)
        .collect::<Vec<_>>()
        .into();
    v
}

fn org_json(c: &Catalog, o: &Organisation) -> Value {
    let mut v = json!(o);
    v["topics"] = json!(format!("bus/{}/#", o.id));
    v["systems"] = c
        .systems_of(&o.id)
        .map(|s| system_json(c, s))
        .collect::<Vec<_>>()
        .into();
    v
}

/// The whole catalog: organisations with their systems and endpoints (without documents).
#[utoipa::path(get, path = "/api/v1/bus/catalog",
    responses((status = 200, description = "`{organisations: [{id, name, kind, contacts, topics, systems: [{id, name, owner, produces, consumes, endpoints}]}]}`", body = Object)),
    tag = "bus")]
pub(crate) async fn catalog(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    reader(&caller)?;
    let orgs = bus(&state)?.with_catalog(|c| {
        c.organisations()
            .map(|o| org_json(c, o))
            .collect::<Vec<_>>()
    });
    Ok(Json(json!({ "organisations": orgs })))
}

/// One organisation with its systems.
#[utoipa::path(get, path = "/api/v1/bus/organisations/{org}",
    params(("org" = String, Path, description = "The organisation")),
    responses((status = 200, body = Object), (status = 404, body = ErrorBody)), tag = "bus")]
pub(crate) async fn get_organisation(
    State(state): State<AppState>,
    caller: Caller,
    Path(org): Path<String>,
) -> Result<Json<Value>, ApiError> {
    reader(&caller)?;
    bus(&state)?.with_catalog(|c| {
        let o = c
            .organisation(&org)
            .map_err(civiclake_bus::BusError::from)?;
        Ok(Json(org_json(c, o)))
    })
}

/// Adds or replaces an organisation (new ones: bus administrators; an organisation's own
/// members may update it).
#[utoipa::path(put, path = "/api/v1/bus/organisations/{org}",
    params(("org" = String, Path, description = "Its name on the bus: letters, digits, - and _")),
    request_body(content = Object, description = "`{name, kind: office|operator, ipa_code, description, contacts: [{name, role, email, phone}]}`"),
    responses((status = 201, body = Object), (status = 200, body = Object), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)),
    tag = "bus")]
pub(crate) async fn put_organisation(
    State(state): State<AppState>,
    caller: Caller,
    Path(org): Path<String>,
    body: Result<Json<Organisation>, JsonRejection>,
) -> Result<Response, ApiError> {
    let bus = bus(&state)?;
    let exists = bus.with_catalog(|c| c.organisation(&org).is_ok());
    if exists {
        acts_for(&caller.0, &org)?;
    } else {
        caller.require(Permission::BusAdmin)?;
    }
    let Json(body) = body.map_err(|e| ApiError::bad_request(format!("the organisation: {e}")))?;
    let created = bus.put_organisation(&actor(&caller.0), &org, body).await?;
    let view = bus.with_catalog(|c| c.organisation(&org).map(|o| org_json(c, o)));
    Ok(saved(created, view.map_err(civiclake_bus::BusError::from)?))
}

/// Removes an organisation with no systems and no subscriptions, and revokes its tokens.
#[utoipa::path(delete, path = "/api/v1/bus/organisations/{org}",
    params(("org" = String, Path, description = "The organisation")),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)), tag = "bus")]
pub(crate) async fn delete_organisation(
    State(state): State<AppState>,
    caller: Caller,
    Path(org): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require(Permission::BusAdmin)?;
    bus(&state)?
        .delete_organisation(&actor(&caller.0), &org)
        .await?;
    let store = state.auth.store();
    for t in store.list() {
        if t.org.as_deref() == Some(org.as_str()) && t.revoked_at.is_none() {
            store
                .revoke(&t.id)
                .map_err(|e| ApiError::new(e.class(), e.to_string()))?;
        }
    }
    Ok(StatusCode::NO_CONTENT)
}

/// A token to issue to an organisation.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct OrgTokenBody {
    /// Who or what holds it.
    #[serde(default)]
    pub label: Option<String>,
    /// Lifetime, e.g. `365d`; forever when absent.
    #[serde(default)]
    pub expires: Option<String>,
}

/// Issues a bus-member token to an organisation: it publishes under `bus/<org>/#` (sources
/// `/<org>/...`), describes the organisation's systems and endpoints, registers the schemas
/// of the types they produce and runs the organisation's subscriptions. The secret is shown
/// once.
#[utoipa::path(post, path = "/api/v1/bus/organisations/{org}/tokens",
    params(("org" = String, Path, description = "The organisation")),
    request_body = OrgTokenBody,
    responses((status = 201, description = "`{token, info}`", body = Object), (status = 404, body = ErrorBody)), tag = "bus")]
pub(crate) async fn create_org_token(
    State(state): State<AppState>,
    caller: Caller,
    Path(org): Path<String>,
    body: Option<Json<OrgTokenBody>>,
) -> Result<Response, ApiError> {
    caller.require(Permission::BusAdmin)?;
    bus(&state)?
        .with_catalog(|c| c.organisation(&org).map(|_| ()))
        .map_err(civiclake_bus::BusError::from)?;
    let body = body.map(|Json(b)| b).unwrap_or_default();
    let expires_in = body
        .expires
        .as_deref()
        .map(parse_expiry)
        .transpose()
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let new = state
        .auth
        .store()
        .create_token(TokenRequest {
            role: "bus-member".into(),
            tables: None,
            topics: Some(vec![format!("bus/{org}/#")]),
            expires_in,
            label: body.label,
            subject: None,
            org: Some(org.clone()),
        })
        .map_err(|e| ApiError::new(e.class(), e.to_string()))?;
    tracing::info!(id = %new.info.id, org, by = ?caller.0.token_id, "bus organisation token issued");
    Ok((
        StatusCode::CREATED,
        Json(json!({"token": new.token, "info": crate::auth::TokenView::from(new.info)})),
    )
        .into_response())
}

/// An organisation's tokens (never their secrets).
#[utoipa::path(get, path = "/api/v1/bus/organisations/{org}/tokens",
    params(("org" = String, Path, description = "The organisation")),
    responses((status = 200, body = Object)), tag = "bus")]
pub(crate) async fn list_org_tokens(
    State(state): State<AppState>,
    caller: Caller,
    Path(org): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Permission::BusAdmin)?;
    let tokens: Vec<crate::auth::TokenView> = state
        .auth
        .store()
        .list()
        .into_iter()
        .filter(|t| t.org.as_deref() == Some(org.as_str()))
        .map(Into::into)
        .collect();
    Ok(Json(json!({ "tokens": tokens })))
}

/// Revokes one of an organisation's tokens.
#[utoipa::path(delete, path = "/api/v1/bus/organisations/{org}/tokens/{id}",
    params(("org" = String, Path, description = "The organisation"), ("id" = String, Path, description = "The token's id")),
    responses((status = 204), (status = 404, body = ErrorBody)), tag = "bus")]
pub(crate) async fn revoke_org_token(
    State(state): State<AppState>,
    caller: Caller,
    Path((org, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    caller.require(Permission::BusAdmin)?;
    let store = state.auth.store();
    let belongs = store
        .list()
        .iter()
        .any(|t| t.id == id && t.org.as_deref() == Some(org.as_str()));
    if !belongs {
        return Err(ApiError::new(
            ErrorClass::NotFound,
            format!("organisation {org} has no token {id}"),
        ));
    }
    store
        .revoke(&id)
        .map_err(|e| ApiError::new(e.class(), e.to_string()))?;
    Ok(StatusCode::NO_CONTENT)
}

/// One system with its endpoints.
#[utoipa::path(get, path = "/api/v1/bus/organisations/{org}/systems/{system}",
    params(("org" = String, Path, description = "The organisation"), ("system" = String, Path, description = "The system")),
    responses((status = 200, body = Object), (status = 404, body = ErrorBody)), tag = "bus")]
pub(crate) async fn get_system(
    State(state): State<AppState>,
    caller: Caller,
    Path((org, system)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    reader(&caller)?;
    bus(&state)?.with_catalog(|c| {
        let s = c
            .system(&org, &system)
            .map_err(civiclake_bus::BusError::from)?;
        Ok(Json(system_json(c, s)))
    })
}

/// Adds or replaces a system of an organisation.
#[utoipa::path(put, path = "/api/v1/bus/organisations/{org}/systems/{system}",
    params(("org" = String, Path, description = "The organisation"), ("system" = String, Path, description = "Its name on the bus (sources /<org>/<system>)")),
    request_body(content = Object, description = "`{name, owner, description, contacts: [{name, role, email, phone}], produces: [type], consumes: [type]}`"),
    responses((status = 201, body = Object), (status = 200, body = Object), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    tag = "bus")]
pub(crate) async fn put_system(
    State(state): State<AppState>,
    caller: Caller,
    Path((org, system)): Path<(String, String)>,
    body: Result<Json<System>, JsonRejection>,
) -> Result<Response, ApiError> {
    acts_for(&caller.0, &org)?;
    let bus = bus(&state)?;
    let Json(body) = body.map_err(|e| ApiError::bad_request(format!("the system: {e}")))?;
    let created = bus
        .put_system(&actor(&caller.0), &org, &system, body)
        .await?;
    let view = bus.with_catalog(|c| c.system(&org, &system).map(|s| system_json(c, s)));
    Ok(saved(created, view.map_err(civiclake_bus::BusError::from)?))
}

/// Removes a system and its endpoints (no subscription may name it).
#[utoipa::path(delete, path = "/api/v1/bus/organisations/{org}/systems/{system}",
    params(("org" = String, Path, description = "The organisation"), ("system" = String, Path, description = "The system")),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)), tag = "bus")]
pub(crate) async fn delete_system(
    State(state): State<AppState>,
    caller: Caller,
    Path((org, system)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    acts_for(&caller.0, &org)?;
    bus(&state)?
        .delete_system(&actor(&caller.0), &org, &system)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Where an endpoint is reached, when its document does not say or says otherwise.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
pub(crate) struct EndpointOptions {
    /// The endpoint's address (http or https); default: the document's (`servers[0].url`,
    /// `soap:address`).
    pub url: Option<String>,
}

/// Stores an endpoint of a system with its description: the body is the OpenAPI (3.x or
/// Swagger 2.0, JSON or YAML) or WSDL (1.1 or 2.0) document itself.
#[utoipa::path(put, path = "/api/v1/bus/organisations/{org}/systems/{system}/endpoints/{endpoint}",
    params(("org" = String, Path, description = "The organisation"), ("system" = String, Path, description = "The system"),
        ("endpoint" = String, Path, description = "The endpoint's name"), EndpointOptions),
    request_body(content = String, description = "The OpenAPI or WSDL document", content_type = "application/yaml"),
    responses((status = 201, description = "Stored: the endpoint with the operations read from its document", body = Object),
        (status = 200, body = Object), (status = 400, description = "Not an OpenAPI or WSDL document (the reason is given)", body = ErrorBody),
        (status = 404, body = ErrorBody)),
    tag = "bus")]
pub(crate) async fn put_endpoint(
    State(state): State<AppState>,
    caller: Caller,
    Path((org, system, endpoint)): Path<(String, String, String)>,
    Query(options): Query<EndpointOptions>,
    body: String,
) -> Result<Response, ApiError> {
    acts_for(&caller.0, &org)?;
    let (stored, created) = bus(&state)?
        .put_endpoint(
            &actor(&caller.0),
            (&org, &system, &endpoint),
            options.url,
            body,
        )
        .await?;
    Ok(saved(created, endpoint_json(&stored)))
}

/// An endpoint: its address, standard and operations.
#[utoipa::path(get, path = "/api/v1/bus/organisations/{org}/systems/{system}/endpoints/{endpoint}",
    params(("org" = String, Path, description = "The organisation"), ("system" = String, Path, description = "The system"), ("endpoint" = String, Path, description = "The endpoint")),
    responses((status = 200, body = Object), (status = 404, body = ErrorBody)), tag = "bus")]
pub(crate) async fn get_endpoint(
    State(state): State<AppState>,
    caller: Caller,
    Path((org, system, endpoint)): Path<(String, String, String)>,
) -> Result<Json<Value>, ApiError> {
    reader(&caller)?;
    bus(&state)?.with_catalog(|c| {
        let e = c
            .endpoint(&org, &system, &endpoint)
            .map_err(civiclake_bus::BusError::from)?;
        Ok(Json(endpoint_json(e)))
    })
}

/// The document of an endpoint, as it was stored.
#[utoipa::path(get, path = "/api/v1/bus/organisations/{org}/systems/{system}/endpoints/{endpoint}/document",
    params(("org" = String, Path, description = "The organisation"), ("system" = String, Path, description = "The system"), ("endpoint" = String, Path, description = "The endpoint")),
    responses((status = 200, description = "The OpenAPI (application/json, application/yaml) or WSDL (application/wsdl+xml) document", body = String), (status = 404, body = ErrorBody)), tag = "bus")]
pub(crate) async fn get_endpoint_document(
    State(state): State<AppState>,
    caller: Caller,
    Path((org, system, endpoint)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    reader(&caller)?;
    let (media, document, sha) = bus(&state)?.with_catalog(|c| {
        c.endpoint(&org, &system, &endpoint)
            .map(|e| {
                (
                    e.described.kind.media_type(e.described.format),
                    e.document.clone(),
                    e.sha256.clone(),
                )
            })
            .map_err(civiclake_bus::BusError::from)
    })?;
    Ok((
        [
            (header::CONTENT_TYPE, format!("{media}; charset=utf-8")),
            (header::ETAG, format!("\"{sha}\"")),
        ],
        document,
    )
        .into_response())
}

/// Removes an endpoint.
#[utoipa::path(delete, path = "/api/v1/bus/organisations/{org}/systems/{system}/endpoints/{endpoint}",
    params(("org" = String, Path, description = "The organisation"), ("system" = String, Path, description = "The system"), ("endpoint" = String, Path, description = "The endpoint")),
    responses((status = 204), (status = 404, body = ErrorBody)), tag = "bus")]
pub(crate) async fn delete_endpoint(
    State(state): State<AppState>,
    caller: Caller,
    Path((org, system, endpoint)): Path<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    acts_for(&caller.0, &org)?;
    bus(&state)?
        .delete_endpoint(&actor(&caller.0), (&org, &system, &endpoint))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The window of the log the map looks at.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
pub(crate) struct MapOptions {
    /// Days of the log whose sources and types count as produced (1–366, default 7).
    pub days: Option<u32>,
}

/// Checks `days` (1–366, default 7).
pub(crate) fn map_days(days: Option<u32>) -> Result<u32, ApiError> {
    match days.unwrap_or(7) {
        d @ 1..=366 => Ok(d),
        d => Err(ApiError::bad_request(format!("days={d}: give 1 to 366"))),
    }
}

/// Who depends on whom: systems, event types, who produces and consumes what (declared in
/// the catalog, seen in the log, wired by subscriptions), and the dependencies.
#[utoipa::path(get, path = "/api/v1/bus/map",
    params(MapOptions),
    responses((status = 200, description = "`{systems, event_types, produces, consumes, dependencies: [{consumer, producer, event_types, subscriptions}]}`", body = Object)),
    tag = "bus")]
pub(crate) async fn map(
    State(state): State<AppState>,
    caller: Caller,
    Query(options): Query<MapOptions>,
) -> Result<Json<Value>, ApiError> {
    reader(&caller)?;
    let days = map_days(options.days)?;
    let map = bus(&state)?.ecosystem_map(days).await?;
    Ok(Json(json!(map)))
}
