//! The HTTP API of civiclake (axum).
//!
//! Routes are declared once with their OpenAPI description (utoipa), so
//! `GET /api/v1/openapi.json` is generated from the same definitions that serve requests.
//! Every handler returns `Result<_, ApiError>`; [`ApiError`] maps error classes to HTTP
//! statuses in one place. The web pages (`/`, `/login`, `/static/…`) are routes of the same
//! router, rendered from askama templates (module `web`).

pub mod auth;
mod bus;
mod bus_catalog;
mod council;
mod error;
mod kiosk;
mod kiosk_fleet;
mod metrics;
mod ops;
mod pipelines;
mod query;
mod web;
mod write;

pub use auth::{Auth, Caller, MaybeCaller};
pub use error::{ApiError, ErrorBody};
pub use metrics::{ApiMetrics, MetricsSource, render_all as render_metrics};
pub use query::{OutputFormat, encode};
pub use web::dashboards::DashboardCatalog;

use axum::Json;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use civiclake_lake::Lake;
use civiclake_query::QueryEngine;
use std::sync::Arc;
use std::time::Instant;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// What every handler can reach.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The storage.
    pub lake: Arc<Lake>,
    /// The SQL engine.
    pub engine: QueryEngine,
    /// Metrics of the handlers.
    pub metrics: Arc<ApiMetrics>,
    /// When the server started.
    pub started: Instant,
    /// Access control.
    pub auth: Auth,
    /// Metrics of other parts of the server, appended to `/metrics`.
    pub metric_sources: Vec<Arc<dyn MetricsSource>>,
    /// The dashboards and their map layers.
    pub dashboards: Arc<DashboardCatalog>,
    /// The interoperability bus (None: `/api/v1/bus/...` answers 503).
    pub bus: Option<civiclake_bus::Bus>,
    /// Continuous pipelines and alert rules (None: `/api/v1/pipelines` answers 503).
    pub pipelines: Option<civiclake_pipelines::Pipelines>,
    /// The kiosk module's siting optimiser (None: `/api/v1/kiosk/...` answers 503).
    pub kiosk: Option<civiclake_kiosk::Siting>,
    /// The kiosk fleet (None: `/api/v1/kiosk/kiosks...` answers 503).
    pub fleet: Option<civiclake_kiosk::fleet::Fleet>,
    /// The council committees module (None: `/api/v1/council/...` answers 503).
    pub council: Option<civiclake_council::Council>,
}

/// Settings of the HTTP layer.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Largest request body accepted (bytes).
    pub max_body_bytes: usize,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "civiclake",
        description = "Streaming data lakehouse for a city: write sensor readings, query them with SQL.",
        license(name = "EUPL-1.2", identifier = "EUPL-1.2")
    ),
    tags(
        (name = "write", description = "Writing rows"),
        (name = "query", description = "SQL queries"),
        (name = "operations", description = "Health, metrics, maintenance"),
        (name = "access", description = "Tokens, roles and signed links"),
        (name = "bus", description = "The interoperability bus: CloudEvents, schemas, subscriptions, replays, dead letters"),
        (name = "pipelines", description = "Continuous pipelines (windows, rollups), alert rules, retention"),
        (name = "kiosk", description = "The kiosk fleet (registry, service catalog, heartbeats, transactions, availability, other channels' collections) and the siting optimiser (inputs, plans, maps)"),
        (name = "council", description = "Council committees: councillors, committees and seats, sessions and agendas, acts and their iter, co-signatures, outcomes, attendance, votes, fees; Open Civic Data export")
    )
)]
struct ApiDoc;

/// Every route with its OpenAPI description: the one list of the API.
fn api_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(write::write))
        .routes(routes!(write::influx_write))
        .routes(routes!(query::query_post, query::query_get))
        .routes(routes!(ops::health))
        .routes(routes!(ops::metrics))
        .routes(routes!(ops::tables))
        .routes(routes!(ops::flush))
        .routes(routes!(ops::compact))
        .routes(routes!(auth::list_tokens, auth::create_token))
        .routes(routes!(auth::revoke_token))
        .routes(routes!(auth::list_roles))
        .routes(routes!(auth::put_role))
        .routes(routes!(auth::create_link))
        .routes(routes!(auth::open_link))
        .routes(routes!(ops::delete))
        .routes(routes!(bus::publish))
        .routes(routes!(bus::list_schemas))
        .routes(routes!(bus::register_schema, bus::get_schema))
        .routes(routes!(bus::set_compatibility))
        .routes(routes!(bus::list_subscriptions, bus::create_subscription))
        .routes(routes!(
            bus::get_subscription,
            bus::put_subscription,
            bus::delete_subscription
        ))
        .routes(routes!(bus::replay))
        .routes(routes!(bus::dead_letters))
        .routes(routes!(bus::redeliver))
        .routes(routes!(bus::deliveries))
        .routes(routes!(bus_catalog::catalog))
        .routes(routes!(
            bus_catalog::get_organisation,
            bus_catalog::put_organisation,
            bus_catalog::delete_organisation
        ))
        .routes(routes!(
            bus_catalog::create_org_token,
            bus_catalog::list_org_tokens
        ))
        .routes(routes!(bus_catalog::revoke_org_token))
        .routes(routes!(
            bus_catalog::get_system,
            bus_catalog::put_system,
            bus_catalog::delete_system
        ))
        .routes(routes!(
            bus_catalog::get_endpoint,
            bus_catalog::put_endpoint,
            bus_catalog::delete_endpoint
        ))
        .routes(routes!(bus_catalog::get_endpoint_document))
        .routes(routes!(bus_catalog::map))
        .routes(routes!(
            pipelines::list_pipelines,
            pipelines::create_pipeline
        ))
        .routes(routes!(pipelines::get_pipeline, pipelines::delete_pipeline))
        .routes(routes!(pipelines::list_alerts, pipelines::create_alert))
        .routes(routes!(pipelines::get_alert, pipelines::delete_alert))
        .routes(routes!(pipelines::run_retention))
        .routes(routes!(kiosk::create_plan, kiosk::get_plan))
        .routes(routes!(kiosk::list_plans))
        .routes(routes!(kiosk::plan_map))
        .routes(routes!(kiosk::import_demand))
        .routes(routes!(kiosk::import_sites))
        .routes(routes!(kiosk_fleet::list_kiosks))
        .routes(routes!(
            kiosk_fleet::get_kiosk,
            kiosk_fleet::put_kiosk,
            kiosk_fleet::retire_kiosk
        ))
        .routes(routes!(kiosk_fleet::list_services))
        .routes(routes!(kiosk_fleet::put_service))
        .routes(routes!(kiosk_fleet::heartbeat))
        .routes(routes!(kiosk_fleet::transaction))
        .routes(routes!(kiosk_fleet::availability))
        .routes(routes!(kiosk_fleet::import_collections))
        .routes(routes!(council::list_councillors))
        .routes(routes!(council::put_councillor))
        .routes(routes!(council::list_committees))
        .routes(routes!(council::put_committee))
        .routes(routes!(council::seat_member))
        .routes(routes!(council::end_seat))
        .routes(routes!(council::get_settings))
        .routes(routes!(council::set_fee_rate))
        .routes(routes!(council::set_fee_policy))
        .routes(routes!(council::set_signature_rules))
        .routes(routes!(council::list_acts, council::draft_act))
        .routes(routes!(council::get_act))
        .routes(routes!(council::invite))
        .routes(routes!(council::sign))
        .routes(routes!(council::unsign))
        .routes(routes!(council::give_opinion))
        .routes(routes!(council::take_step))
        .routes(routes!(council::list_sessions, council::schedule_session))
        .routes(routes!(council::get_session))
        .routes(routes!(council::add_item))
        .routes(routes!(council::convene))
        .routes(routes!(council::hold))
        .routes(routes!(council::cancel))
        .routes(routes!(council::record_outcome))
        .routes(routes!(council::record_attendance))
        .routes(routes!(council::record_vote))
        .routes(routes!(council::attach_media))
        .routes(routes!(council::fees))
        .routes(routes!(council::ocd_bills))
        .routes(routes!(council::ocd_bill))
        .routes(routes!(council::ocd_events))
        .routes(routes!(council::ocd_votes))
        .routes(routes!(council::ocd_people))
        .routes(routes!(council::ocd_organizations))
}

/// The router and its OpenAPI document.
pub fn router(state: AppState, config: &ApiConfig) -> Router {
    let (router, api) = api_router().split_for_parts();
    let api = Arc::new(api);
    router
        .route(
            "/api/v1/openapi.json",
            get(move || {
                let api = api.clone();
                async move { Json(api.as_ref().clone()) }
            }),
        )
        .merge(web::router())
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .layer(tower_http::decompression::RequestDecompressionLayer::new())
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}

/// The OpenAPI document alone (for docs and tests).
pub fn openapi_json() -> String {
    let (_, api) = api_router().split_for_parts();
    api.to_pretty_json().unwrap_or_default()
}
