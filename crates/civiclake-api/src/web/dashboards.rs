//! Dashboards for planners: `GET /dashboards` (the index), `GET /dashboards/{id}` (a
//! dashboard's page: its time range and variables as a form, its panels as images that
//! refresh at the dashboard's interval), `GET /dashboards/{id}/panels/{panel}.svg|.png|.csv`
//! (a panel rendered, or its data) and `GET /dashboards/{id}/panels/{panel}/sql` (the SQL a
//! panel runs, with the request's values filled in).
//!
//! A panel's SQL runs with the caller's SQL scope (table grants and masks apply), so a
//! dashboard shows each person only what their token may read. A panel whose query fails
//! answers with the error's status and an SVG that says what went wrong, so the page shows
//! the reason in place of the chart.

use super::{Chrome, error_page, render};
use crate::auth::MaybeCaller;
use crate::{ApiError, AppState, OutputFormat, encode};
use askama::Template;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use civiclake_auth::{Permission, Principal};
use civiclake_core::ErrorClass;
use civiclake_dashboards::{
    ALL_VALUE, Dashboard, DashboardError, DashboardSet, GeoLayers, Panel, PanelRequest,
    VariableSource, render_error_svg_sized, render_png, render_svg, variable_choices,
};
use std::sync::Arc;

/// The dashboards a server serves and the boundary layers their maps draw.
#[derive(Debug, Default)]
pub struct DashboardCatalog {
    /// The dashboard files.
    pub set: DashboardSet,
    /// The GeoJSON layers of `dashboards/geo/`.
    pub geo: GeoLayers,
}

impl DashboardCatalog {
    /// Loads `dir/*.toml` and the layers of `dir/geo/*.geojson`, and checks that every map
    /// panel names a layer that exists. A missing folder gives an empty catalog.
    pub fn load(dir: &std::path::Path) -> Result<Self, DashboardError> {
        let set = if dir.is_dir() {
            DashboardSet::load_dir(dir)?
        } else {
            DashboardSet::default()
        };
        let geo = GeoLayers::load_dir(&dir.join("geo"))?;
        set.check_layers(&geo)?;
        Ok(Self { set, geo })
    }
}

/// The caller, if they may see dashboards; otherwise the page that says why not.
fn viewer(caller: Option<Principal>, headers: &HeaderMap) -> Result<Principal, Box<Response>> {
    match caller {
        None => Err(Box::new(error_page(
            headers,
            StatusCode::UNAUTHORIZED,
            "Sign in with a token to see the dashboards.",
        ))),
        Some(p) if p.can(Permission::Dashboards) || p.can(Permission::Query) => Ok(p),
        Some(p) => Err(Box::new(error_page(
            headers,
            StatusCode::FORBIDDEN,
            &format!("The role {} may not see dashboards.", p.role),
        ))),
    }
}

fn not_found(headers: &HeaderMap, what: &str) -> Response {
    error_page(
        headers,
        StatusCode::NOT_FOUND,
        &format!("There is no {what}."),
    )
}

/// The query parameters of a request, decoded, in order.
fn params(raw: Option<&str>) -> Vec<(String, String)> {
    raw.map(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    })
    .unwrap_or_default()
}

fn dashboard_error(e: &DashboardError) -> ApiError {
    ApiError::new(e.class(), e.to_string())
}

#[derive(Debug, Template)]
#[template(path = "dashboards.html")]
struct IndexPage {
    chrome: Chrome,
    dashboards: Vec<IndexEntry>,
}

#[derive(Debug)]
struct IndexEntry {
    href: String,
    title: String,
    description: String,
    panels: usize,
    refresh: String,
}

/// `GET /dashboards`: the list of dashboards.
pub(crate) async fn index(
    State(state): State<AppState>,
    MaybeCaller(caller): MaybeCaller,
    headers: HeaderMap,
) -> Response {
    if let Err(page) = viewer(caller, &headers) {
        return *page;
    }
    let dashboards = state
        .dashboards
        .set
        .dashboards()
        .iter()
        .map(|d| IndexEntry {
            href: format!("/dashboards/{}", d.id),
            title: d.title.clone(),
            description: d.description.clone().unwrap_or_default(),
            panels: d.panels.len(),
            refresh: human_duration(d.refresh),
        })
        .collect();
    render(
        StatusCode::OK,
        &IndexPage {
            chrome: Chrome::new(&headers, "dashboards"),
            dashboards,
        },
    )
}

fn human_duration(d: std::time::Duration) -> String {
    let s = d.as_secs();
    match s {
        s if s >= 3600 && s % 3600 == 0 => format!("{} h", s / 3600),
        s if s >= 60 && s % 60 == 0 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

#[derive(Debug, Template)]
#[template(path = "dashboard.html")]
struct DashboardPage {
    chrome: Chrome,
    id: String,
    title: String,
    description: String,
    refresh_secs: u64,
    refresh: String,
    ranges: Vec<Choice>,
    variables: Vec<VariableField>,
    panels: Vec<PanelView>,
    /// A problem with the request (shown above the panels), e.g. a bad time.
    problem: String,
    /// URL of the refresh script.
    script_href: String,
}

#[derive(Debug)]
struct Choice {
    value: String,
    label: String,
    selected: bool,
}

#[derive(Debug)]
struct VariableField {
    /// `var-<name>`: the form field and the query parameter.
    param: String,
    label: String,
    choices: Vec<Choice>,
    /// Why the choices could not be listed, if their query failed.
    error: String,
}

#[derive(Debug)]
struct PanelView {
    id: String,
    title: String,
    kind: &'static str,
    description: String,
    svg_href: String,
    png_href: String,
    csv_href: String,
    sql_href: String,
    /// The panel spans the whole row (tables and maps).
    wide: bool,
}

/// The values of the query-driven variables' choices, from their queries run as `caller`.
async fn choices_of(
    state: &AppState,
    caller: &Principal,
    dashboard: &Dashboard,
    name: &str,
) -> Result<Vec<String>, String> {
    let sql = dashboard.variable_sql(name).map_err(|e| e.to_string())?;
    let result =
        crate::query::run_sql(state, sql, &crate::auth::scope_of(caller).without_deletes())
            .await
            .map_err(|e| e.message().to_string())?;
    variable_choices(&result.schema, &result.batches).map_err(|e| e.to_string())
}

/// `GET /dashboards/{id}`: a dashboard's page.
pub(crate) async fn page(
    State(state): State<AppState>,
    MaybeCaller(caller): MaybeCaller,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    let caller = match viewer(caller, &headers) {
        Ok(c) => c,
        Err(page) => return *page,
    };
    let Some(dashboard) = state.dashboards.set.get(&id) else {
        return not_found(&headers, &format!("dashboard {id}"));
    };
    let given = params(raw.as_deref());
    let value_of = |key: &str| {
        given
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    };
    // The form: the time range and each variable, with the request's values (or defaults).
    let range = value_of("from")
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| dashboard.time.default.from_param());
    let mut ranges: Vec<Choice> = dashboard
        .time
        .choices
        .iter()
        .map(|r| Choice {
            value: r.from_param(),
            label: r.label.clone(),
            selected: r.from_param() == range,
        })
        .collect();
    if !ranges.iter().any(|c| c.selected) {
        ranges.push(Choice {
            value: range.clone(),
            label: format!("from {range}"),
            selected: true,
        });
    }
    let mut query: Vec<(String, String)> = vec![("from".into(), range.clone())];
    if let Some(to) = value_of("to").filter(|v| !v.is_empty()) {
        query.push(("to".into(), to));
    }
    let mut variables = Vec::new();
    for var in &dashboard.variables {
        let param = format!("var-{}", var.name);
        let (mut values, error) = match &var.source {
            VariableSource::Values(v) => (v.clone(), String::new()),
            VariableSource::Query(_) => {
                match choices_of(&state, &caller, dashboard, &var.name).await {
                    Ok(v) => (v, String::new()),
                    Err(e) => (Vec::new(), format!("The choices could not be listed: {e}")),
                }
            }
        };
        let mut options: Vec<(String, String)> = Vec::new();
        if var.include_all {
            options.push((ALL_VALUE.to_string(), "All".to_string()));
        }
        options.extend(values.drain(..).map(|v| (v.clone(), v)));
        let chosen = value_of(&param)
            .or_else(|| var.default.clone())
            .or_else(|| options.first().map(|(v, _)| v.clone()));
        if let Some(value) = &chosen {
            if !options.iter().any(|(v, _)| v == value) {
                options.push((value.clone(), value.clone()));
            }
            query.push((param.clone(), value.clone()));
        }
        variables.push(VariableField {
            param,
            label: var.label.clone(),
            choices: options
                .into_iter()
                .map(|(value, label)| Choice {
                    selected: chosen.as_deref() == Some(value.as_str()),
                    value,
                    label,
                })
                .collect(),
            error,
        });
    }
    let problem = match PanelRequest::from_query(dashboard, &query, Utc::now()) {
        Ok(_) => String::new(),
        Err(e) => e.to_string(),
    };
    let query_string = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(query.iter())
        .finish();
    let panels = dashboard
        .panels
        .iter()
        .map(|p| {
            let base = format!("/dashboards/{}/panels/{}", dashboard.id, p.id);
            PanelView {
                id: p.id.clone(),
                title: p.title.clone(),
                kind: p.kind.name(),
                description: p.description.clone().unwrap_or_default(),
                svg_href: format!("{base}.svg?{query_string}"),
                png_href: format!("{base}.png?{query_string}"),
                csv_href: format!("{base}.csv?{query_string}"),
                sql_href: format!("{base}/sql?{query_string}"),
                wide: matches!(p.kind.name(), "table" | "map"),
            }
        })
        .collect();
    let page = DashboardPage {
        chrome: Chrome::new(&headers, "dashboards"),
        id: dashboard.id.clone(),
        title: dashboard.title.clone(),
        description: dashboard.description.clone().unwrap_or_default(),
        refresh_secs: dashboard.refresh.as_secs().max(1),
        refresh: human_duration(dashboard.refresh),
        ranges,
        variables,
        panels,
        problem,
        script_href: super::assets::href("dashboard.js"),
    };
    render(StatusCode::OK, &page)
}

/// What a panel URL asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PanelFormat {
    Svg,
    Png,
    Csv,
}

fn split_panel_file(file: &str) -> Option<(&str, PanelFormat)> {
    let (id, ext) = file.rsplit_once('.')?;
    let format = match ext {
        "svg" => PanelFormat::Svg,
        "png" => PanelFormat::Png,
        "csv" => PanelFormat::Csv,
        _ => return None,
    };
    Some((id, format))
}

/// The dashboard, panel and request of a panel URL, checked.
fn resolve<'a>(
    state: &'a AppState,
    id: &str,
    panel_id: &str,
    raw: Option<&str>,
) -> Result<(&'a Dashboard, &'a Panel, PanelRequest), ApiError> {
    let dashboard = state.dashboards.set.get(id).ok_or_else(|| {
        ApiError::new(ErrorClass::NotFound, format!("there is no dashboard {id}"))
    })?;
    let panel = dashboard.panel(panel_id).ok_or_else(|| {
        ApiError::new(
            ErrorClass::NotFound,
            format!("dashboard {id} has no panel {panel_id}"),
        )
    })?;
    let req = PanelRequest::from_query(dashboard, &params(raw), Utc::now())
        .map_err(|e| dashboard_error(&e))?;
    Ok((dashboard, panel, req))
}

/// An SVG saying what went wrong, with the error's status.
fn svg_error(title: &str, req_size: (u32, u32), error: &ApiError) -> Response {
    let (w, h) = req_size;
    let svg = render_error_svg_sized(title, error.message(), w, h);
    (
        error.status(),
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("image/svg+xml"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        svg,
    )
        .into_response()
}

/// `GET /dashboards/{id}/panels/{panel}.svg|.png|.csv`: a panel over the request's time range
/// and variables (`from`, `to`, `var-<name>`, `width`, `height`).
pub(crate) async fn panel(
    State(state): State<AppState>,
    MaybeCaller(caller): MaybeCaller,
    Path((id, file)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> Response {
    let Some((panel_id, format)) = split_panel_file(&file) else {
        return ApiError::new(
            ErrorClass::NotFound,
            format!("{file}: a panel is served as <panel>.svg, <panel>.png or <panel>.csv"),
        )
        .into_response();
    };
    let size = params(raw.as_deref())
        .iter()
        .fold((800u32, 300u32), |(w, h), (k, v)| match k.as_str() {
            "width" => (v.parse().unwrap_or(w).clamp(200, 4096), h),
            "height" => (w, v.parse().unwrap_or(h).clamp(120, 4096)),
            _ => (w, h),
        });
    let fail = |title: &str, e: ApiError| match format {
        PanelFormat::Svg => svg_error(title, size, &e),
        _ => e.into_response(),
    };
    let caller = match caller {
        None => {
            return fail(
                "Not signed in",
                ApiError::unauthenticated("sign in with a token to see this panel"),
            );
        }
        Some(p) if p.can(Permission::Dashboards) || p.can(Permission::Query) => p,
        Some(p) => {
            return fail(
                "Not allowed",
                ApiError::forbidden(format!("the role {} may not see dashboards", p.role)),
            );
        }
    };
    let (dashboard, panel, req) = match resolve(&state, &id, panel_id, raw.as_deref()) {
        Ok(r) => r,
        Err(e) => return fail("Bad request", e),
    };
    let sql = match dashboard.panel_sql(panel, &req) {
        Ok(sql) => sql,
        Err(e) => return fail(&panel.title, dashboard_error(&e)),
    };
    let scope = crate::auth::scope_of(&caller).without_deletes();
    let result = match crate::query::run_sql(&state, &sql, &scope).await {
        Ok(r) => r,
        Err(e) => return fail(&panel.title, e),
    };
    let headers_for = |content_type: &'static str| {
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ]
    };
    match format {
        PanelFormat::Csv => match encode(&result.schema, &result.batches, OutputFormat::Csv) {
            Ok(body) => {
                let disposition =
                    format!("attachment; filename=\"{}-{}.csv\"", dashboard.id, panel.id);
                let mut response = (headers_for("text/csv; charset=utf-8"), body).into_response();
                if let Ok(v) = HeaderValue::from_str(&disposition) {
                    response
                        .headers_mut()
                        .insert(header::CONTENT_DISPOSITION, v);
                }
                response
            }
            Err(m) => ApiError::new(ErrorClass::Internal, m).into_response(),
        },
        PanelFormat::Svg | PanelFormat::Png => {
            // Rendering is CPU work: off the async workers.
            let panel = panel.clone();
            let catalog: Arc<DashboardCatalog> = Arc::clone(&state.dashboards);
            let rendered = tokio::task::spawn_blocking(move || {
                let geo = &catalog.geo;
                if format == PanelFormat::Svg {
                    render_svg(&panel, &req, &result.schema, &result.batches, geo)
                        .map(String::into_bytes)
                } else {
                    render_png(&panel, &req, &result.schema, &result.batches, geo)
                }
                .map_err(|e| (panel.title.clone(), e))
            })
            .await;
            match rendered {
                Ok(Ok(body)) if format == PanelFormat::Svg => {
                    (headers_for("image/svg+xml"), body).into_response()
                }
                Ok(Ok(body)) => (headers_for("image/png"), body).into_response(),
                Ok(Err((title, e))) => fail(&title, dashboard_error(&e)),
                Err(e) => fail(
                    "Rendering failed",
                    ApiError::new(ErrorClass::Internal, format!("rendering failed: {e}")),
                ),
            }
        }
    }
}

#[derive(Debug, Template)]
#[template(path = "panel_sql.html")]
struct PanelSqlPage {
    chrome: Chrome,
    dashboard_href: String,
    dashboard_title: String,
    panel_title: String,
    template_sql: String,
    sql: String,
    run_href: String,
}

/// `GET /dashboards/{id}/panels/{panel}/sql`: the SQL a panel runs for these values.
pub(crate) async fn panel_sql(
    State(state): State<AppState>,
    MaybeCaller(caller): MaybeCaller,
    headers: HeaderMap,
    Path((id, panel_id)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> Response {
    if let Err(page) = viewer(caller, &headers) {
        return *page;
    }
    let (dashboard, panel, req) = match resolve(&state, &id, &panel_id, raw.as_deref()) {
        Ok(r) => r,
        Err(e) if e.status() == StatusCode::NOT_FOUND => {
            return not_found(&headers, &format!("panel {panel_id} in dashboard {id}"));
        }
        Err(e) => return error_page(&headers, e.status(), e.message()),
    };
    let sql = match dashboard.panel_sql(panel, &req) {
        Ok(sql) => sql,
        Err(e) => return error_page(&headers, StatusCode::BAD_REQUEST, &e.to_string()),
    };
    let run_href = format!(
        "/sql?{}",
        url::form_urlencoded::Serializer::new(String::new())
            .append_pair("q", &sql)
            .finish()
    );
    let page = PanelSqlPage {
        chrome: Chrome::new(&headers, "dashboards"),
        dashboard_href: format!("/dashboards/{}?{}", dashboard.id, raw.unwrap_or_default()),
        dashboard_title: dashboard.title.clone(),
        panel_title: panel.title.clone(),
        template_sql: panel.sql.trim().to_string(),
        sql,
        run_href,
    };
    render(StatusCode::OK, &page)
}
