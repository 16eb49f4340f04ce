//! The bus catalog's pages: `/bus/catalog` (organisations and their systems), one page per
//! system (owner, contacts, the event types it produces and consumes, its endpoints with
//! their operations and documents) and `/bus/map` (who depends on whom, drawn, and listed).
//! Readable by bus administrators, members and publishers.

use super::bus::{gate, href};
use super::{Chrome, error_page, render};
use crate::AppState;
use crate::auth::MaybeCaller;
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use civiclake_auth::{Permission, Principal};
use civiclake_bus::Bus;
use civiclake_bus::catalog::{Contact, OrgKind};
use civiclake_bus::ecosystem::EcosystemMap;

const READERS: [Permission; 3] = [
    Permission::BusAdmin,
    Permission::BusMember,
    Permission::Publish,
];

fn reader(
    state: &AppState,
    caller: Option<Principal>,
    headers: &HeaderMap,
) -> Result<Bus, Box<Response>> {
    gate(state, caller, headers, &READERS, "see the bus catalog").map(|(_, bus)| bus)
}

fn contacts(list: &[Contact]) -> Vec<String> {
    list.iter()
        .map(|c| {
            let mut parts = vec![c.name.clone()];
            if let Some(r) = &c.role {
                parts.push(format!("({r})"));
            }
            parts.extend(c.email.iter().cloned());
            parts.extend(c.phone.iter().cloned());
            parts.join(" ")
        })
        .collect()
}

#[derive(Debug)]
struct SystemRow {
    name: String,
    id: String,
    href: String,
    owner: String,
    produces: String,
    consumes: String,
    endpoints: usize,
}

#[derive(Debug)]
struct OrgBlock {
    id: String,
    name: String,
    kind: &'static str,
    ipa_code: String,
    description: String,
    contacts: Vec<String>,
    systems: Vec<SystemRow>,
}

#[derive(Debug, Template)]
#[template(path = "bus_catalog.html")]
struct CatalogPage {
    chrome: Chrome,
    orgs: Vec<OrgBlock>,
}

fn joined(types: &[String]) -> String {
    if types.is_empty() {
        "—".to_string()
    } else {
        types.join(", ")
    }
}

/// `GET /bus/catalog`.
pub(crate) async fn catalog(
    State(state): State<AppState>,
    MaybeCaller(caller): MaybeCaller,
    headers: HeaderMap,
) -> Response {
    let bus = match reader(&state, caller, &headers) {
        Ok(b) => b,
        Err(page) => return *page,
    };
    let orgs = bus.with_catalog(|c| {
        c.organisations()
            .map(|o| OrgBlock {
                id: o.id.clone(),
                name: o.name.clone(),
                kind: match o.kind {
                    OrgKind::Office => "office of the comune",
                    OrgKind::Operator => "outside operator",
                },
                ipa_code: o.ipa_code.clone().unwrap_or_default(),
                description: o.description.clone().unwrap_or_default(),
                contacts: contacts(&o.contacts),
                systems: c
                    .systems_of(&o.id)
                    .map(|s| SystemRow {
                        name: s.name.clone(),
                        id: s.id.clone(),
                        href: format!("{}/{}", href("/bus/catalog/", &s.org), href("", &s.id)),
                        owner: s.owner.clone(),
                        produces: joined(&s.produces),
                        consumes: joined(&s.consumes),
                        endpoints: c.endpoints_of(&s.org, &s.id).count(),
                    })
                    .collect(),
            })
            .collect()
    });
    render(
        StatusCode::OK,
        &CatalogPage {
            chrome: Chrome::new(&headers, "bus"),
            orgs,
        },
    )
}

#[derive(Debug)]
struct OperationRow {
    name: String,
    call: String,
    messages: String,
    summary: String,
}

#[derive(Debug)]
struct EndpointBlock {
    id: String,
    url: String,
    standard: String,
    title: String,
    document: String,
    sha256: String,
    operations: Vec<OperationRow>,
}

#[derive(Debug, Template)]
#[template(path = "bus_system.html")]
struct SystemPage {
    chrome: Chrome,
    org: String,
    org_name: String,
    id: String,
    name: String,
    source: String,
    owner: String,
    description: String,
    contacts: Vec<String>,
    produces: Vec<(String, String)>,
    consumes: Vec<(String, String)>,
    endpoints: Vec<EndpointBlock>,
}

/// `GET /bus/catalog/{org}/{system}`.
pub(crate) async fn system(
    State(state): State<AppState>,
    MaybeCaller(caller): MaybeCaller,
    headers: HeaderMap,
    Path((org, id)): Path<(String, String)>,
) -> Response {
    let bus = match reader(&state, caller, &headers) {
        Ok(b) => b,
        Err(page) => return *page,
    };
    let page = bus.with_catalog(|c| {
        let s = c.system(&org, &id).map_err(|e| e.to_string())?;
        let o = c.organisation(&org).map_err(|e| e.to_string())?;
        let typed = |types: &[String]| {
            types
                .iter()
                .map(|t| (t.clone(), href("/bus/schemas/", t)))
                .collect()
        };
        Ok::<_, String>(SystemPage {
            chrome: Chrome::new(&headers, "bus"),
            org: org.clone(),
            org_name: o.name.clone(),
            id: s.id.clone(),
            name: s.name.clone(),
            source: s.source(),
            owner: s.owner.clone(),
            description: s.description.clone().unwrap_or_default(),
            contacts: contacts(&s.contacts),
            produces: typed(&s.produces),
            consumes: typed(&s.consumes),
            endpoints: c
                .endpoints_of(&org, &id)
                .map(|e| EndpointBlock {
                    id: e.id.clone(),
                    url: e.url.clone().unwrap_or_default(),
                    standard: e.described.standard.clone(),
                    title: e.described.title.clone().unwrap_or_default(),
                    document: format!(
                        "/api/v1/bus/organisations/{}/systems/{}/endpoints/{}/document",
                        href("", &e.org),
                        href("", &e.system),
                        href("", &e.id)
                    ),
                    sha256: e.sha256.clone(),
                    operations: e
                        .described
                        .operations
                        .iter()
                        .map(|op| OperationRow {
                            name: op.name.clone(),
                            call: match (&op.method, &op.path, &op.soap_action) {
                                (Some(m), Some(p), _) => format!("{m} {p}"),
                                (_, _, Some(a)) => format!("SOAPAction {a}"),
                                _ => String::new(),
                            },
                            messages: match (&op.input, &op.output) {
                                (Some(i), Some(o)) => format!("{i} → {o}"),
                                (Some(i), None) => format!("{i} (one way)"),
                                _ => String::new(),
                            },
                            summary: op.summary.clone().unwrap_or_default(),
                        })
                        .collect(),
                })
                .collect(),
        })
    });
    match page {
        Ok(page) => render(StatusCode::OK, &page),
        Err(e) => error_page(&headers, StatusCode::NOT_FOUND, &e),
    }
}

/// The map's window.
#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct MapQuery {
    days: Option<u32>,
}

#[derive(Debug)]
struct DependencyRow {
    consumer: String,
    producer: String,
    types: String,
    through: String,
}

#[derive(Debug, Template)]
#[template(path = "bus_map.html")]
struct MapPage {
    chrome: Chrome,
    days: u32,
    svg: String,
    dependencies: Vec<DependencyRow>,
    unlisted: Vec<String>,
}

async fn build_map(
    state: &AppState,
    caller: Option<Principal>,
    headers: &HeaderMap,
    days: Option<u32>,
) -> Result<(u32, EcosystemMap), Response> {
    let bus = reader(state, caller, headers).map_err(|p| *p)?;
    let days = crate::bus_catalog::map_days(days)
        .map_err(|e| error_page(headers, StatusCode::BAD_REQUEST, e.message()))?;
    let map = bus
        .ecosystem_map(days)
        .await
        .map_err(|e| error_page(headers, StatusCode::SERVICE_UNAVAILABLE, &e.to_string()))?;
    Ok((days, map))
}

/// `GET /bus/map`.
pub(crate) async fn map(
    State(state): State<AppState>,
    MaybeCaller(caller): MaybeCaller,
    headers: HeaderMap,
    Query(q): Query<MapQuery>,
) -> Response {
    let (days, map) = match build_map(&state, caller, &headers, q.days).await {
        Ok(x) => x,
        Err(page) => return page,
    };
    let name = |id: &str| {
        map.systems
            .iter()
            .find(|s| s.id == id)
            .filter(|s| s.name != id)
            .map_or_else(|| id.to_string(), |s| format!("{} ({id})", s.name))
    };
    let dependencies = map
        .dependencies
        .iter()
        .map(|d| DependencyRow {
            consumer: name(&d.consumer),
            producer: name(&d.producer),
            types: d.event_types.join(", "),
            through: if d.subscriptions.is_empty() {
                "declared in the catalog, no subscription yet".to_string()
            } else {
                d.subscriptions.join(", ")
            },
        })
        .collect();
    let unlisted = map
        .systems
        .iter()
        .filter(|s| !s.in_catalog && !s.id.starts_with("subscription:"))
        .map(|s| s.id.clone())
        .collect();
    render(
        StatusCode::OK,
        &MapPage {
            chrome: Chrome::new(&headers, "bus"),
            days,
            svg: civiclake_bus::ecosystem::svg(&map),
            dependencies,
            unlisted,
        },
    )
}

/// `GET /bus/map.svg`.
pub(crate) async fn map_svg(
    State(state): State<AppState>,
    MaybeCaller(caller): MaybeCaller,
    headers: HeaderMap,
    Query(q): Query<MapQuery>,
) -> Response {
    match build_map(&state, caller, &headers, q.days).await {
        Ok((_, map)) => (
            [
                (header::CONTENT_TYPE, "image/svg+xml"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            civiclake_bus::ecosystem::svg(&map),
        )
            .into_response(),
        Err(page) => page,
    }
}
