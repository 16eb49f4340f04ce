//! `/kiosk/plan`: a kiosk siting plan as a page — today's network against the proposal, the
//! two maps, what moves where — for whoever may read plans (operators, administrators,
//! query tokens that reach `kiosk_plans`).

use super::{Chrome, error_page, render};
use crate::AppState;
use crate::auth::MaybeCaller;
use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use civiclake_kiosk::siting::output::{self, Network};
use serde::Deserialize;

#[derive(Template)]
#[template(path = "kiosk_plan.html")]
struct PlanPage {
    chrome: Chrome,
    id: String,
    computed_at: String,
    model: &'static str,
    p: usize,
    threshold: String,
    inputs: String,
    objective: String,
    bound_kind: String,
    bound: String,
    gap: String,
    search: String,
    rows: Vec<(String, String, String)>,
    today_svg: Option<String>,
    proposal_svg: String,
    credit: String,
    changes: Vec<(String, String, String, String)>,
    others: Vec<(String, String)>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct PlanQuery {
    id: Option<String>,
}

fn status(e: &civiclake_kiosk::SitingServiceError) -> StatusCode {
    crate::error::ApiError::new(e.class(), "").status()
}

/// `GET /kiosk/plan[?id=]`.
pub(crate) async fn plan(
    State(state): State<AppState>,
    MaybeCaller(caller): MaybeCaller,
    headers: HeaderMap,
    Query(q): Query<PlanQuery>,
) -> Response {
    let Some(principal) = caller else {
        return error_page(
            &headers,
            StatusCode::UNAUTHORIZED,
            "Sign in with a token to see the kiosk plans.",
        );
    };
    if let Err(e) = crate::kiosk::plan_reader(&principal) {
        return error_page(&headers, StatusCode::FORBIDDEN, e.message());
    }
    let siting = match crate::kiosk::siting(&state) {
        Ok(s) => s,
        Err(e) => return error_page(&headers, StatusCode::SERVICE_UNAVAILABLE, e.message()),
    };
    let plan = match siting.get(q.id.as_deref()).await {
        Ok(p) => p,
        Err(e) => return error_page(&headers, status(&e), &e.to_string()),
    };
    let today_svg = match plan.today {
        Some(_) => match siting.map_svg(&plan, Network::Today, 640, 600) {
            Ok(svg) => Some(svg),
            Err(e) => return error_page(&headers, status(&e), &e.to_string()),
        },
        None => None,
    };
    let proposal_svg = match siting.map_svg(&plan, Network::Proposal, 640, 600) {
        Ok(svg) => svg,
        Err(e) => return error_page(&headers, status(&e), &e.to_string()),
    };
    let others = siting
        .list(20)
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|o| o.id != plan.id)
        .map(|o| {
            let label = format!(
                "{} — {}, {} sites, gap {:.2} %",
                o.computed_at,
                o.model,
                o.p,
                o.gap * 100.0
            );
            (o.id, label)
        })
        .collect();
    render(
        StatusCode::OK,
        &PlanPage {
            chrome: Chrome::new(&headers, "kiosk"),
            id: plan.id.clone(),
            computed_at: plan.computed_at.clone(),
            model: plan.result.model.name(),
            p: plan.result.p,
            threshold: output::threshold_text(&plan),
            inputs: output::inputs_line(&plan),
            objective: output::objective_line(&plan),
            bound_kind: plan.result.bound_kind.clone(),
            bound: output::bound_text(&plan),
            gap: output::gap_text(&plan),
            search: output::search_text(&plan),
            rows: output::comparison(&plan)
                .into_iter()
                .map(|[a, b, c]| (a, b, c))
                .collect(),
            today_svg,
            proposal_svg,
            credit: siting.layers().credit.clone(),
            changes: output::changes(&plan)
                .into_iter()
                .map(|[a, b, c, d]| (a, b, c, d))
                .collect(),
            others,
        },
    )
}
