//! The bus's operator pages: `/bus` (subscriptions with their progress, schemas), one page per
//! subscription (its definition, latest deliveries, dead letters with a redeliver button, a
//! replay form) and one per event type (its schema versions). Actions are plain HTML forms
//! (POST, then a redirect back with what happened); the token cookie is SameSite=Strict and
//! forms posted from another site (`Sec-Fetch-Site`, `Origin`) are refused, as at sign-in.

use super::{Chrome, error_page, render};
use crate::AppState;
use crate::auth::MaybeCaller;
use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use civiclake_auth::{Permission, Principal};
use civiclake_bus::{Bus, ReplayFrom};
use serde::Deserialize;

/// Rows of deliveries and dead letters shown.
const SHOWN: usize = 50;

fn operator(
    state: &AppState,
    caller: Option<Principal>,
    headers: &HeaderMap,
) -> Result<(Principal, Bus), Box<Response>> {
    gate(
        state,
        caller,
        headers,
        &[Permission::BusAdmin],
        "operate the bus",
    )
}

/// The caller, if it has one of `permissions`, and the bus; else the page saying why not.
pub(crate) fn gate(
    state: &AppState,
    caller: Option<Principal>,
    headers: &HeaderMap,
    permissions: &[Permission],
    what: &str,
) -> Result<(Principal, Bus), Box<Response>> {
    let p = match caller {
        None => {
            return Err(Box::new(error_page(
                headers,
                StatusCode::UNAUTHORIZED,
                "Sign in with a token to see the bus.",
            )));
        }
        Some(p) if permissions.iter().any(|k| p.can(*k)) => p,
        Some(p) => {
            return Err(Box::new(error_page(
                headers,
                StatusCode::FORBIDDEN,
                &format!("The role {} may not {what}.", p.role),
            )));
        }
    };
    match &state.bus {
        Some(bus) => Ok((p, bus.clone())),
        None => Err(Box::new(error_page(
            headers,
            StatusCode::SERVICE_UNAVAILABLE,
            "The interoperability bus is not running on this server.",
        ))),
    }
}

/// `/bus/...` with `segment` percent-encoded.
pub(crate) fn href(prefix: &str, segment: &str) -> String {
    let encoded: String = segment
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    format!("{prefix}{encoded}")
}

#[derive(Debug)]
struct SubscriptionRow {
    name: String,
    href: String,
    target: String,
    filter: String,
    cursor: i64,
    lag: i64,
    delivered: u64,
    failed: u64,
    dead_letters: u64,
    state: &'static str,
}

#[derive(Debug)]
struct SchemaRow {
    event_type: String,
    href: String,
    compatibility: String,
    latest: u32,
    versions: usize,
}

#[derive(Debug, Template)]
#[template(path = "bus.html")]
struct BusPage {
    chrome: Chrome,
    head: i64,
    subscriptions: Vec<SubscriptionRow>,
    schemas: Vec<SchemaRow>,
}

/// `GET /bus`.
pub(crate) async fn index(
    State(state): State<AppState>,
    MaybeCaller(caller): MaybeCaller,
    headers: HeaderMap,
) -> Response {
    let (_, bus) = match operator(&state, caller, &headers) {
        Ok(x) => x,
        Err(page) => return *page,
    };
    let subscriptions = bus
        .subscriptions()
        .await
        .into_iter()
        .map(|s| SubscriptionRow {
            href: href("/bus/subscriptions/", &s.spec.name),
            target: s.spec.target.describe(),
            filter: describe_filter(&s.spec.filter),
            cursor: s.cursor,
            lag: s.lag,
            delivered: s.delivered,
            failed: s.failed,
            dead_letters: s.dead_letters,
            state: if s.spec.paused { "paused" } else { "running" },
            name: s.spec.name,
        })
        .collect();
    let schemas = bus.with_registry(|r| {
        r.types()
            .map(|t| SchemaRow {
                event_type: t.to_string(),
                href: href("/bus/schemas/", t),
                compatibility: r.compatibility(t).to_string(),
                latest: r.latest(t).map_or(0, |v| v.version),
                versions: r.versions(t).map_or(0, <[_]>::len),
            })
            .collect()
    });
    let page = BusPage {
        chrome: Chrome::new(&headers, "bus"),
        head: bus.head(),
        subscriptions,
        schemas,
    };
    render(StatusCode::OK, &page)
}

fn describe_filter(f: &civiclake_bus::filter::EventFilter) -> String {
    let mut parts = Vec::new();
    if !f.types.is_empty() {
        parts.push(format!("type {}", f.types.join(" | ")));
    }
    if !f.sources.is_empty() {
        parts.push(format!("source {}", f.sources.join(" | ")));
    }
    if let Some(p) = &f.subject_prefix {
        parts.push(format!("subject {p}…"));
    }
    if let Some(e) = &f.expression {
        parts.push(e.as_str().to_string());
    }
    if parts.is_empty() {
        "every event".to_string()
    } else {
        parts.join("; ")
    }
}

/// A row of a result, as text.
#[derive(Debug)]
struct Row {
    cells: Vec<String>,
}

#[derive(Debug)]
struct DeadRow {
    seq: i64,
    action: String,
    cells: Vec<String>,
    delivered_since: String,
}

#[derive(Debug, Template)]
#[template(path = "bus_subscription.html")]
struct SubscriptionPage {
    chrome: Chrome,
    name: String,
    definition: String,
    target: String,
    cursor: i64,
    head: i64,
    lag: i64,
    state: &'static str,
    replay_action: String,
    message: String,
    delivery_columns: Vec<&'static str>,
    deliveries: Vec<Row>,
    dead_columns: Vec<&'static str>,
    dead: Vec<DeadRow>,
}

/// What an action reports on the page it returns to.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Flash {
    #[serde(default)]
    done: String,
}

/// Runs `sql` (the server's own query, unrestricted) and formats every cell.
async fn text_rows(state: &AppState, sql: &str) -> Result<Vec<Vec<String>>, String> {
    let result = state.engine.sql(sql).await.map_err(|e| e.to_string())?;
    let options = arrow::util::display::FormatOptions::default().with_null("—");
    let mut out = Vec::new();
    for batch in &result.batches {
        let formatters = batch
            .columns()
            .iter()
            .map(|c| arrow::util::display::ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        for row in 0..batch.num_rows() {
            out.push(
                formatters
                    .iter()
                    .map(|f| f.value(row).to_string())
                    .collect(),
            );
        }
    }
    Ok(out)
}

/// `GET /bus/subscriptions/{name}`.
pub(crate) async fn subscription(
    State(state): State<AppState>,
    MaybeCaller(caller): MaybeCaller,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(flash): Query<Flash>,
) -> Response {
    let (_, bus) = match operator(&state, caller, &headers) {
        Ok(x) => x,
        Err(page) => return *page,
    };
    let status = match bus.subscription(&name).await {
        Ok(s) => s,
        Err(e) => return error_page(&headers, StatusCode::NOT_FOUND, &e.to_string()),
    };
    let limit = SHOWN as u32;
    let deliveries = text_rows(
        &state,
        &format!(
            "SELECT time, seq, event_id, \"type\", status, attempt, status_code, round(latency_ms, 1), error, replay \
             FROM ({})",
            civiclake_bus::audit::deliveries_sql(&name, limit)
        ),
    )
    .await;
    let dead = text_rows(
        &state,
        &format!(
            "SELECT seq, time, event_id, \"type\", attempts, status_code, error, delivered_since FROM ({})",
            civiclake_bus::audit::dead_letters_sql(&name, limit)
        ),
    )
    .await;
    let (deliveries, dead) = match (deliveries, dead) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => {
            return error_page(&headers, StatusCode::INTERNAL_SERVER_ERROR, &e);
        }
    };
    let base = href("/bus/subscriptions/", &name);
    let dead = dead
        .into_iter()
        .filter_map(|mut cells| {
            let seq: i64 = cells.first()?.parse().ok()?;
            let since = cells.pop().unwrap_or_default();
            Some(DeadRow {
                seq,
                action: format!("{base}/dead-letters/{seq}/redeliver"),
                cells,
                delivered_since: if since == "—" { String::new() } else { since },
            })
        })
        .collect();
    let page = SubscriptionPage {
        chrome: Chrome::new(&headers, "bus"),
        definition: serde_json::to_string_pretty(&status.spec).unwrap_or_default(),
        target: status.spec.target.describe(),
        cursor: status.cursor,
        head: status.head,
        lag: status.lag,
        state: if status.spec.paused {
            "paused"
        } else {
            "running"
        },
        replay_action: format!("{base}/replay"),
        message: flash.done,
        delivery_columns: vec![
            "Time", "Seq", "Event", "Type", "Status", "Attempt", "Code", "ms", "Error", "Replay",
        ],
        deliveries: deliveries.into_iter().map(|cells| Row { cells }).collect(),
        dead_columns: vec!["Seq", "Filed", "Event", "Type", "Attempts", "Code", "Error"],
        dead,
        name,
    };
    render(StatusCode::OK, &page)
}

/// The replay form.
#[derive(Debug, Deserialize)]
pub(crate) struct ReplayForm {
    /// `seq`, `event_id` or `time`.
    from: String,
    /// The seq, id or RFC 3339 time.
    value: String,
}

fn back(base: &str, message: &str) -> Response {
    let location = format!("{base}?done={}", href("", message));
    (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response()
}

/// `POST /bus/subscriptions/{name}/replay` (form).
pub(crate) async fn replay(
    State(state): State<AppState>,
    MaybeCaller(caller): MaybeCaller,
    headers: HeaderMap,
    Path(name): Path<String>,
    Form(form): Form<ReplayForm>,
) -> Response {
    if !super::session::from_this_site(&headers) {
        return super::session::cross_site_refused(&headers);
    }
    let (p, bus) = match operator(&state, caller, &headers) {
        Ok(x) => x,
        Err(page) => return *page,
    };
    let value = form.value.trim().to_string();
    let from = match form.from.as_str() {
        "seq" => match value.parse() {
            Ok(s) => ReplayFrom::Seq(s),
            Err(_) => {
                return error_page(
                    &headers,
                    StatusCode::BAD_REQUEST,
                    &format!("{value:?} is not a position in the log (a whole number)"),
                );
            }
        },
        "event_id" => ReplayFrom::EventId(value),
        "time" => ReplayFrom::Time(value),
        other => {
            return error_page(
                &headers,
                StatusCode::BAD_REQUEST,
                &format!("replay from {other:?}: choose seq, event_id or time"),
            );
        }
    };
    match bus.replay(&crate::bus::actor(&p), &name, from).await {
        Ok((id, seq)) => back(
            &href("/bus/subscriptions/", &name),
            &format!("Replay {id} started from seq {seq}."),
        ),
        Err(e) => error_page(
            &headers,
            StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::BAD_REQUEST),
            &e.to_string(),
        ),
    }
}

/// `POST /bus/subscriptions/{name}/dead-letters/{seq}/redeliver` (form).
pub(crate) async fn redeliver(
    State(state): State<AppState>,
    MaybeCaller(caller): MaybeCaller,
    headers: HeaderMap,
    Path((name, seq)): Path<(String, i64)>,
) -> Response {
    if !super::session::from_this_site(&headers) {
        return super::session::cross_site_refused(&headers);
    }
    let (_, bus) = match operator(&state, caller, &headers) {
        Ok(x) => x,
        Err(page) => return *page,
    };
    match bus.redeliver(&name, seq).await {
        Ok(id) => back(
            &href("/bus/subscriptions/", &name),
            &format!("Event {seq} is being delivered again ({id})."),
        ),
        Err(e) => error_page(
            &headers,
            StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::BAD_REQUEST),
            &e.to_string(),
        ),
    }
}

#[derive(Debug)]
struct VersionRow {
    version: u32,
    registered: String,
    schema: String,
}

#[derive(Debug, Template)]
#[template(path = "bus_schema.html")]
struct SchemaPage {
    chrome: Chrome,
    event_type: String,
    compatibility: String,
    versions: Vec<VersionRow>,
}

/// `GET /bus/schemas/{type}`.
pub(crate) async fn schema(
    State(state): State<AppState>,
    MaybeCaller(caller): MaybeCaller,
    headers: HeaderMap,
    Path(event_type): Path<String>,
) -> Response {
    let (_, bus) = match operator(&state, caller, &headers) {
        Ok(x) => x,
        Err(page) => return *page,
    };
    let found = bus.with_registry(|r| {
        r.versions(&event_type).map(|versions| {
            (
                r.compatibility(&event_type).to_string(),
                versions
                    .iter()
                    .rev()
                    .map(|v| VersionRow {
                        version: v.version,
                        registered: chrono::DateTime::from_timestamp_micros(v.registered_micros)
                            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                            .unwrap_or_default(),
                        schema: serde_json::to_string_pretty(&v.schema).unwrap_or_default(),
                    })
                    .collect::<Vec<_>>(),
            )
        })
    });
    let Some((compatibility, versions)) = found else {
        return error_page(
            &headers,
            StatusCode::NOT_FOUND,
            &format!("No schema is registered for {event_type}."),
        );
    };
    let page = SchemaPage {
        chrome: Chrome::new(&headers, "bus"),
        event_type,
        compatibility,
        versions,
    };
    render(StatusCode::OK, &page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hrefs_encode_their_segment() {
        assert_eq!(href("/bus/schemas/", "it.acme.x"), "/bus/schemas/it.acme.x");
        assert_eq!(href("/bus/x/", "a b/c"), "/bus/x/a%20b%2Fc");
        assert_eq!(href("", "Replay 1."), "Replay%201.");
    }
}
