//! `/api/v1/bus/...`: publish CloudEvents, the schema registry, subscriptions, replays,
//! deliveries and dead letters of the interoperability bus.

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::query::{OutputFormat, encode};
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use civiclake_auth::{Permission, Principal};
use civiclake_bus::catalog::source_topic;
use civiclake_bus::schema::Compatibility;
use civiclake_bus::subscription::SubscriptionSpec;
use civiclake_bus::{Bus, BusError, ReplayFrom, SubscriptionStatus};
use civiclake_core::{CloudEvent, ErrorClass};
use serde::Deserialize;
use serde_json::{Value, json};

impl From<BusError> for ApiError {
    fn from(e: BusError) -> Self {
        let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
        let class = match status.as_u16() {
            404 => ErrorClass::NotFound,
            409 => ErrorClass::Conflict,
            503 => ErrorClass::Unavailable,
            _ => ErrorClass::User,
        };
        ApiError::new(class, e.to_string()).with_status(status)
    }
}

fn bus(state: &AppState) -> Result<&Bus, ApiError> {
    state.bus.as_ref().ok_or_else(|| {
        ApiError::new(
            ErrorClass::Unavailable,
            "the interoperability bus is not running on this server",
        )
    })
}

/// Who did it, for the catalog's events.
pub(crate) fn actor(p: &Principal) -> String {
    match &p.token_id {
        Some(id) => format!("token:{id}"),
        None => "anonymous".into(),
    }
}

/// Whose subscriptions `p` manages: every one (`None`, bus administrators) or those owned by
/// its organisation (bus members).
pub(crate) fn manager_of(p: &Principal) -> Result<Option<&str>, ApiError> {
    if p.can(Permission::BusAdmin) {
        return Ok(None);
    }
    match (&p.org, p.can(Permission::BusMember)) {
        (Some(org), true) => Ok(Some(org)),
        _ => Err(ApiError::forbidden(format!(
            "role {} lacks the 'bus-admin' or 'bus-member' permission",
            p.role
        ))),
    }
}

/// Subscription `name`, if `p` manages it.
async fn managed(bus: &Bus, p: &Principal, name: &str) -> Result<SubscriptionStatus, ApiError> {
    let org = manager_of(p)?;
    let status = bus.subscription(name).await?;
    match org {
        Some(org) if status.spec.owner.as_deref() != Some(org) => Err(ApiError::forbidden(
            format!("subscription {name} does not belong to organisation {org}"),
        )),
        _ => Ok(status),
    }
}

/// A member's subscription is its organisation's: an unowned one is given to it, another
/// organisation's is refused.
fn own_spec(p: &Principal, spec: &mut SubscriptionSpec) -> Result<(), ApiError> {
    let Some(org) = manager_of(p)? else {
        return Ok(());
    };
    match &spec.owner {
        None => spec.owner = Some(org.to_string()),
        Some(o) if o == org => {}
        Some(o) => {
            return Err(ApiError::forbidden(format!(
                "this token acts for organisation {org}, not {o}"
            )));
        }
    }
    Ok(())
}

/// Bus administrators define any type's schema; a member the types its organisation's
/// systems produce (as the catalog says).
fn may_define_type(p: &Principal, bus: &Bus, event_type: &str) -> Result<(), ApiError> {
    let Some(org) = manager_of(p)? else {
        return Ok(());
    };
    if bus.with_catalog(|c| c.org_produces(org, event_type)) {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!(
            "no system of organisation {org} produces {event_type} in the catalog: list it in a system's produces first"
        )))
    }
}

/// Checks that `caller` may publish `event` (admins may publish any source).
fn check_source(p: &Principal, index: usize, event: &CloudEvent) -> Result<(), ApiError> {
    if p.is_admin() {
        return Ok(());
    }
    let Some(topic) = source_topic(&event.source) else {
        return Err(ApiError::bad_request(format!(
            "event {index} ({}): source {:?}: on this bus a source is a path /<organisation>/<system>[/...]",
            event.id, event.source
        )));
    };
    if p.may_publish(&topic) {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!(
            "event {index} ({}): this token may not publish to {topic} (source {}): its topics are {}",
            event.id,
            event.source,
            if p.topics.is_empty() {
                "none".to_string()
            } else {
                p.topics.join(", ")
            }
        )))
    }
}

/// Reads the events of a publish request: structured (`application/cloudevents+json`, or
/// `application/json` with a `specversion`), batched (`application/cloudevents-batch+json`, a
/// JSON array) or binary mode (`ce-*` headers, the body is the data).
fn events_of(headers: &HeaderMap, body: &[u8]) -> Result<Vec<CloudEvent>, ApiError> {
    let content_type = crate::write::media_type(headers);
    let bad = |i: usize, e: civiclake_core::CloudEventError| {
        ApiError::bad_request(format!("event {i}: {e}"))
    };
    if headers.contains_key("ce-specversion") {
        return binary_event(headers, &content_type, body).map(|e| vec![e]);
    }
    match content_type.as_str() {
        "application/cloudevents-batch+json" => {
            let value: Value = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("the body is not JSON: {e}")))?;
            let Value::Array(items) = value else {
                return Err(ApiError::bad_request(
                    "a batch (application/cloudevents-batch+json) is a JSON array of events",
                ));
            };
            items
                .into_iter()
                .enumerate()
                .map(|(i, v)| CloudEvent::from_json(v).map_err(|e| bad(i, e)))
                .collect()
        }
        "application/cloudevents+json" | "application/json" => {
            CloudEvent::from_slice(body).map(|e| vec![e]).map_err(|e| bad(0, e))
        }
        other => Err(ApiError::bad_request(format!(
            "Content-Type {other:?}: send application/cloudevents+json, application/cloudevents-batch+json, or binary mode with ce-specversion, ce-id, ce-source and ce-type headers"
        ))
        .with_status(StatusCode::UNSUPPORTED_MEDIA_TYPE)),
    }
}

fn binary_event(
    headers: &HeaderMap,
    content_type: &str,
    body: &[u8],
) -> Result<CloudEvent, ApiError> {
    let mut m = serde_json::Map::new();
    for (name, value) in headers {
        let Some(attr) = name.as_str().strip_prefix("ce-") else {
            continue;
        };
        let value = value
            .to_str()
            .map_err(|_| ApiError::bad_request(format!("header {name}: not visible ASCII")))?;
        m.insert(attr.to_string(), Value::String(percent_decode(value)));
    }
    if !body.is_empty() {
        let json_like = content_type == "application/json" || content_type.ends_with("+json");
        if !json_like {
            return Err(ApiError::bad_request(format!(
                "binary mode with Content-Type {content_type:?}: the bus carries JSON data (application/json)"
            ))
            .with_status(StatusCode::UNSUPPORTED_MEDIA_TYPE));
        }
        let data: Value = serde_json::from_slice(body).map_err(|e| {
            ApiError::bad_request(format!("the body (the event's data) is not JSON: {e}"))
        })?;
        m.insert("data".into(), data);
        m.insert(
            "datacontenttype".into(),
            Value::String(content_type.to_string()),
        );
    }
    CloudEvent::from_json(Value::Object(m))
        .map_err(|e| ApiError::bad_request(format!("binary-mode event: {e}")))
}

/// Decodes `%XX` escapes of a binary-mode header value (CloudEvents HTTP binding).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex_val(bytes[i + 1]), hex_val(bytes[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Publishes CloudEvents: each is validated against its type's schema and appended to
/// `bus_events` before the answer; all or none.
#[utoipa::path(post, path = "/api/v1/bus/events",
    request_body(content = Object, description = "A CloudEvent (application/cloudevents+json), a batch (application/cloudevents-batch+json), or binary mode (ce-* headers)"),
    responses(
        (status = 201, description = "Appended to the log: `{published: [{id, seq, schema_version}]}`", body = Object),
        (status = 400, description = "Not a valid CloudEvent, or its data does not match the schema", body = ErrorBody),
        (status = 403, description = "The token may not publish this source", body = ErrorBody),
        (status = 422, description = "No schema registered for the event's type", body = ErrorBody),
        (status = 503, description = "The log cannot be written now", body = ErrorBody)),
    tag = "bus")]
pub(crate) async fn publish(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    caller.require(Permission::Publish)?;
    let bus = bus(&state)?;
    let events = events_of(&headers, &body)?;
    for (i, e) in events.iter().enumerate() {
        check_source(&caller.0, i, e)?;
    }
    let published = bus.publish(&actor(&caller.0), events).await?;
    Ok((
        StatusCode::CREATED,
        Json(civiclake_bus::bus::published_json(&published)),
    )
        .into_response())
}

/// Every event type with a schema, with its compatibility mode and latest version.
#[utoipa::path(get, path = "/api/v1/bus/schemas",
    responses((status = 200, body = Object)), tag = "bus")]
pub(crate) async fn list_schemas(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    caller.require_any(&[
        Permission::BusAdmin,
        Permission::BusMember,
        Permission::Publish,
    ])?;
    let bus = bus(&state)?;
    let types = bus.with_registry(|r| {
        r.types()
            .map(|t| {
                json!({
                    "type": t,
                    "compatibility": r.compatibility(t).to_string(),
                    "latest": r.latest(t).map(|v| v.version),
                    "versions": r.versions(t).map_or(0, <[_]>::len),
                })
            })
            .collect::<Vec<_>>()
    });
    Ok(Json(json!({ "schemas": types })))
}

/// Registers a JSON Schema for an event type: a new version if it differs from the latest
/// and is compatible with the type's mode.
#[utoipa::path(post, path = "/api/v1/bus/schemas/{type}",
    params(("type" = String, Path, description = "The CloudEvents type, e.g. it.prato.school.canteen.MealOrdered")),
    request_body(content = Object, description = "The JSON Schema"),
    responses(
        (status = 201, description = "A new version: `{type, version}`", body = Object),
        (status = 200, description = "The same as the latest version: `{type, version}`", body = Object),
        (status = 400, description = "Not a usable JSON Schema", body = ErrorBody),
        (status = 409, description = "Incompatible with earlier versions (the paths are named)", body = ErrorBody)),
    tag = "bus")]
pub(crate) async fn register_schema(
    State(state): State<AppState>,
    caller: Caller,
    Path(event_type): Path<String>,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<Response, ApiError> {
    let bus = bus(&state)?;
    may_define_type(&caller.0, bus, &event_type)?;
    let Json(schema) = body.map_err(|e| ApiError::bad_request(format!("the schema: {e}")))?;
    let r = bus
        .register_schema(&actor(&caller.0), &event_type, schema)
        .await?;
    let status = if r.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(json!({"type": event_type, "version": r.version})),
    )
        .into_response())
}

/// The versions of an event type's schema.
#[utoipa::path(get, path = "/api/v1/bus/schemas/{type}",
    params(("type" = String, Path, description = "The CloudEvents type")),
    responses((status = 200, description = "`{type, compatibility, versions: [{version, registered, schema}]}`", body = Object),
        (status = 404, body = ErrorBody)), tag = "bus")]
pub(crate) async fn get_schema(
    State(state): State<AppState>,
    caller: Caller,
    Path(event_type): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require_any(&[
        Permission::BusAdmin,
        Permission::BusMember,
        Permission::Publish,
    ])?;
    let bus = bus(&state)?;
    bus.with_registry(|r| {
        let versions = r.versions(&event_type).ok_or_else(|| {
            ApiError::new(
                ErrorClass::NotFound,
                format!("no schema is registered for {event_type}"),
            )
        })?;
        Ok(Json(json!({
            "type": event_type,
            "compatibility": r.compatibility(&event_type).to_string(),
            "versions": versions.iter().map(|v| json!({
                "version": v.version,
                "registered": chrono::DateTime::from_timestamp_micros(v.registered_micros).map(|t| t.to_rfc3339()),
                "schema": v.schema,
            })).collect::<Vec<_>>(),
        })))
    })
}

/// A compatibility mode.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CompatibilityBody {
    /// BACKWARD (default), BACKWARD_TRANSITIVE, FORWARD, FORWARD_TRANSITIVE, FULL,
    /// FULL_TRANSITIVE or NONE.
    pub compatibility: String,
}

/// Sets the compatibility mode new versions of an event type's schema are checked with.
#[utoipa::path(put, path = "/api/v1/bus/schemas/{type}/compatibility",
    params(("type" = String, Path, description = "The CloudEvents type")),
    request_body = CompatibilityBody,
    responses((status = 200, body = Object), (status = 400, body = ErrorBody)), tag = "bus")]
pub(crate) async fn set_compatibility(
    State(state): State<AppState>,
    caller: Caller,
    Path(event_type): Path<String>,
    body: Result<Json<CompatibilityBody>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let bus = bus(&state)?;
    may_define_type(&caller.0, bus, &event_type)?;
    let Json(body) = body.map_err(|e| ApiError::bad_request(e.to_string()))?;
    let mode: Compatibility =
        body.compatibility
            .parse()
            .map_err(|e: civiclake_bus::schema::UnknownCompatibility| {
                ApiError::bad_request(e.to_string())
            })?;
    bus.set_compatibility(&actor(&caller.0), &event_type, mode)
        .await?;
    Ok(Json(
        json!({"type": event_type, "compatibility": mode.to_string()}),
    ))
}

/// Options of a new subscription.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
pub(crate) struct CreateOptions {
    /// `beginning` to receive the whole log; default: events published from now on.
    pub from: Option<String>,
}

/// Every subscription with its cursor, lag and counters.
#[utoipa::path(get, path = "/api/v1/bus/subscriptions",
    responses((status = 200, body = Object)), tag = "bus")]
pub(crate) async fn list_subscriptions(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    let org = manager_of(&caller.0)?;
    let subs: Vec<SubscriptionStatus> = bus(&state)?
        .subscriptions()
        .await
        .into_iter()
        .filter(|s| org.is_none_or(|o| s.spec.owner.as_deref() == Some(o)))
        .collect();
    Ok(Json(json!({ "subscriptions": subs })))
}

/// Creates a subscription.
#[utoipa::path(post, path = "/api/v1/bus/subscriptions",
    params(CreateOptions),
    request_body(content = Object, description = "`{name, filter: {types, sources, subject_prefix, expression}, transform: {mapping: [{to, from|value, default}]}, target: {kind: webhook, url, headers, timeout_ms} | {kind: mqtt, topic}, retry: {max_attempts, initial_backoff_ms, multiplier, max_backoff_ms}, lanes, paused}`"),
    responses((status = 201, body = Object), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)),
    tag = "bus")]
pub(crate) async fn create_subscription(
    State(state): State<AppState>,
    caller: Caller,
    Query(options): Query<CreateOptions>,
    body: Result<Json<SubscriptionSpec>, JsonRejection>,
) -> Result<Response, ApiError> {
    let bus = bus(&state)?;
    let Json(mut spec) =
        body.map_err(|e| ApiError::bad_request(format!("the subscription: {e}")))?;
    own_spec(&caller.0, &mut spec)?;
    let from_beginning = match options.from.as_deref() {
        None | Some("now") => false,
        Some("beginning") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "from={other}: use now (default) or beginning; replay from a time or event afterwards"
            )));
        }
    };
    let status = bus
        .create_subscription(&actor(&caller.0), spec, from_beginning)
        .await?;
    Ok((StatusCode::CREATED, Json(json!(status))).into_response())
}

/// One subscription.
#[utoipa::path(get, path = "/api/v1/bus/subscriptions/{name}",
    params(("name" = String, Path, description = "The subscription")),
    responses((status = 200, body = Object), (status = 404, body = ErrorBody)), tag = "bus")]
pub(crate) async fn get_subscription(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!(managed(bus(&state)?, &caller.0, &name).await?)))
}

/// Replaces a subscription (it keeps its cursor).
#[utoipa::path(put, path = "/api/v1/bus/subscriptions/{name}",
    params(("name" = String, Path, description = "The subscription")),
    request_body(content = Object, description = "The whole subscription, as for POST"),
    responses((status = 200, body = Object), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    tag = "bus")]
pub(crate) async fn put_subscription(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    body: Result<Json<SubscriptionSpec>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let bus = bus(&state)?;
    let Json(mut spec) =
        body.map_err(|e| ApiError::bad_request(format!("the subscription: {e}")))?;
    managed(bus, &caller.0, &name).await?;
    own_spec(&caller.0, &mut spec)?;
    if spec.name != name {
        return Err(ApiError::bad_request(format!(
            "the body names subscription {:?}, the URL {name:?}",
            spec.name
        )));
    }
    Ok(Json(json!(
        bus.update_subscription(&actor(&caller.0), spec).await?
    )))
}

/// Deletes a subscription (its deliveries and dead letters stay in the lake).
#[utoipa::path(delete, path = "/api/v1/bus/subscriptions/{name}",
    params(("name" = String, Path, description = "The subscription")),
    responses((status = 204), (status = 404, body = ErrorBody)), tag = "bus")]
pub(crate) async fn delete_subscription(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let bus = bus(&state)?;
    managed(bus, &caller.0, &name).await?;
    bus.delete_subscription(&actor(&caller.0), &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Where a replay starts: exactly one of `seq`, `event_id`, `time`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReplayBody {
    /// A position in the log.
    pub seq: Option<i64>,
    /// An event id (its first occurrence in the log).
    pub event_id: Option<String>,
    /// An RFC 3339 time: the first event at or after it.
    pub time: Option<String>,
}

/// Delivers the log again from an event, a position or a time.
#[utoipa::path(post, path = "/api/v1/bus/subscriptions/{name}/replay",
    params(("name" = String, Path, description = "The subscription")),
    request_body = ReplayBody,
    responses((status = 202, description = "`{replay, from_seq}`", body = Object), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    tag = "bus")]
pub(crate) async fn replay(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    body: Result<Json<ReplayBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let bus = bus(&state)?;
    managed(bus, &caller.0, &name).await?;
    let Json(body) = body.map_err(|e| ApiError::bad_request(e.to_string()))?;
    let from = match (body.seq, body.event_id, body.time) {
        (Some(s), None, None) => ReplayFrom::Seq(s),
        (None, Some(id), None) => ReplayFrom::EventId(id),
        (None, None, Some(t)) => ReplayFrom::Time(t),
        _ => {
            return Err(ApiError::bad_request(
                "give exactly one of seq, event_id or time",
            ));
        }
    };
    let (replay, from_seq) = bus.replay(&actor(&caller.0), &name, from).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"replay": replay, "from_seq": from_seq})),
    )
        .into_response())
}

/// How many rows to list.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
pub(crate) struct ListOptions {
    /// Rows, newest first (1–1000, default 100).
    pub limit: Option<u32>,
}

/// `{key: [rows]}`: what `sql_of(subscription, limit)` lists for an existing subscription, as
/// an operator asked.
async fn listing(
    state: &AppState,
    caller: &Caller,
    name: &str,
    options: &ListOptions,
    key: &str,
    sql_of: fn(&str, u32) -> String,
) -> Result<Json<Value>, ApiError> {
    managed(bus(state)?, &caller.0, name).await?;
    let limit = options.limit.unwrap_or(100).clamp(1, 1000);
    let result = state.engine.sql(&sql_of(name, limit)).await?;
    let body = encode(&result.schema, &result.batches, OutputFormat::Json)
        .map_err(|e| ApiError::new(ErrorClass::Internal, e))?;
    let rows: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::new(ErrorClass::Internal, e.to_string()))?;
    let mut out = serde_json::Map::new();
    out.insert(key.to_string(), rows);
    Ok(Json(Value::Object(out)))
}

/// A subscription's dead letters, newest first, with whether each was delivered since.
#[utoipa::path(get, path = "/api/v1/bus/subscriptions/{name}/dead-letters",
    params(("name" = String, Path, description = "The subscription"), ListOptions),
    responses((status = 200, body = Object), (status = 404, body = ErrorBody)), tag = "bus")]
pub(crate) async fn dead_letters(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Query(options): Query<ListOptions>,
) -> Result<Json<Value>, ApiError> {
    listing(
        &state,
        &caller,
        &name,
        &options,
        "dead_letters",
        civiclake_bus::audit::dead_letters_sql,
    )
    .await
}

/// Delivers one event (e.g. a dead letter) to the subscription again.
#[utoipa::path(post, path = "/api/v1/bus/subscriptions/{name}/dead-letters/{seq}/redeliver",
    params(("name" = String, Path, description = "The subscription"), ("seq" = i64, Path, description = "The event's position in the log")),
    responses((status = 202, description = "`{replay}`", body = Object), (status = 404, body = ErrorBody)), tag = "bus")]
pub(crate) async fn redeliver(
    State(state): State<AppState>,
    caller: Caller,
    Path((name, seq)): Path<(String, i64)>,
) -> Result<Response, ApiError> {
    let bus = bus(&state)?;
    managed(bus, &caller.0, &name).await?;
    let replay = bus.redeliver(&name, seq).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({"replay": replay}))).into_response())
}

/// A subscription's latest delivery attempts, newest first.
#[utoipa::path(get, path = "/api/v1/bus/subscriptions/{name}/deliveries",
    params(("name" = String, Path, description = "The subscription"), ListOptions),
    responses((status = 200, body = Object), (status = 404, body = ErrorBody)), tag = "bus")]
pub(crate) async fn deliveries(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Query(options): Query<ListOptions>,
) -> Result<Json<Value>, ApiError> {
    listing(
        &state,
        &caller,
        &name,
        &options,
        "deliveries",
        civiclake_bus::audit::deliveries_sql,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::header;

    #[test]
    fn binary_mode_headers_make_an_event() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("ce-specversion", "1.0"),
            ("ce-id", "e-1"),
            ("ce-source", "/acme/billing"),
            ("ce-type", "it.acme.invoice.Paid"),
            ("ce-subject", "invoice%2F17"),
            ("ce-partitionkey", "customer-9"),
            ("content-type", "application/json"),
        ] {
            h.insert(
                axum::http::HeaderName::from_static(k),
                axum::http::HeaderValue::from_static(v),
            );
        }
        let events = events_of(&h, br#"{"amount": 12.5}"#).unwrap();
        let e = &events[0];
        assert_eq!(
            (e.id.as_str(), e.ty.as_str()),
            ("e-1", "it.acme.invoice.Paid")
        );
        assert_eq!(e.subject.as_deref(), Some("invoice/17"));
        assert_eq!(e.extensions["partitionkey"], json!("customer-9"));
        assert_eq!(e.data, Some(json!({"amount": 12.5})));
        h.insert(header::CONTENT_TYPE, "text/plain".parse().unwrap());
        let err = events_of(&h, b"hello").unwrap_err();
        assert_eq!(err.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }

    #[test]
    fn structured_and_batched_events() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            "application/cloudevents-batch+json".parse().unwrap(),
        );
        let body = br#"[{"specversion":"1.0","id":"a","source":"/x/y","type":"t"},
                        {"specversion":"1.0","id":"b","source":"/x/y","type":"t","data":{"k":1}}]"#;
        let events = events_of(&h, body).unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[1].data, Some(json!({"k": 1})));
        let err = events_of(&h, br#"[{"specversion":"1.0","id":"a"}]"#).unwrap_err();
        assert!(err.message().starts_with("event 0:"), "{}", err.message());
        h.insert(header::CONTENT_TYPE, "text/csv".parse().unwrap());
        assert_eq!(
            events_of(&h, b"a,b").unwrap_err().status(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        );
    }
}
