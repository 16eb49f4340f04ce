//! `GET /sql`: a page where an analyst types a query and sees the result as a table, with
//! the whole result downloadable as CSV (through `GET /api/v1/query`). The query runs with
//! the caller's SQL scope, exactly as `POST /api/v1/query` would.

use super::{Chrome, error_page, render};
use crate::AppState;
use crate::auth::MaybeCaller;
use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use civiclake_auth::Permission;
use serde::Deserialize;
use std::time::Instant;

/// Rows shown in the page; the CSV has them all.
const SHOWN_ROWS: usize = 500;

/// The page's parameters.
#[derive(Debug, Deserialize)]
pub(crate) struct SqlParams {
    /// The query.
    #[serde(default)]
    q: String,
}

#[derive(Debug, Template)]
#[template(path = "sql.html")]
struct SqlPage {
    chrome: Chrome,
    sql: String,
    error: String,
    ran: bool,
    summary: String,
    caption: String,
    csv_href: String,
    columns: Vec<String>,
    rows: Vec<Vec<String>>,
}

/// `GET /sql` (`?q=<SQL>` runs it).
pub(crate) async fn page(
    State(state): State<AppState>,
    MaybeCaller(caller): MaybeCaller,
    headers: HeaderMap,
    Query(params): Query<SqlParams>,
) -> Response {
    let caller = match caller {
        None => {
            return error_page(
                &headers,
                StatusCode::UNAUTHORIZED,
                "Sign in with a token to run SQL.",
            );
        }
        Some(p) if p.can(Permission::Query) => p,
        Some(p) => {
            return error_page(
                &headers,
                StatusCode::FORBIDDEN,
                &format!("The role {} may not run SQL.", p.role),
            );
        }
    };
    let sql = params.q.trim().to_string();
    let mut page = SqlPage {
        chrome: Chrome::new(&headers, "sql"),
        sql: sql.clone(),
        error: String::new(),
        ran: false,
        summary: String::new(),
        caption: String::new(),
        csv_href: String::new(),
        columns: Vec::new(),
        rows: Vec::new(),
    };
    if sql.is_empty() {
        return render(StatusCode::OK, &page);
    }
    let started = Instant::now();
    // A page must not change data: no DELETE here.
    let scope = crate::auth::scope_of(&caller).without_deletes();
    let result = crate::query::run_sql(&state, &sql, &scope).await;
    let elapsed = started.elapsed();
    let result = match result {
        Ok(r) => r,
        Err(e) => {
            page.error = e.message().to_string();
            return render(e.status(), &page);
        }
    };
    let total = result.num_rows();
    page.ran = true;
    page.columns = result
        .schema
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let options = arrow::util::display::FormatOptions::default().with_null("NULL");
    'batches: for batch in &result.batches {
        let formatters: Vec<_> = match batch
            .columns()
            .iter()
            .map(|c| arrow::util::display::ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<Result<Vec<_>, _>>()
        {
            Ok(f) => f,
            Err(e) => {
                page.error = format!("the result could not be shown: {e}");
                break;
            }
        };
        for row in 0..batch.num_rows() {
            if page.rows.len() >= SHOWN_ROWS {
                break 'batches;
            }
            page.rows.push(
                formatters
                    .iter()
                    .map(|f| f.value(row).to_string())
                    .collect(),
            );
        }
    }
    let shown = page.rows.len();
    page.summary = format!(
        "{total} row{} in {:.0} ms",
        if total == 1 { "" } else { "s" },
        elapsed.as_secs_f64() * 1000.0
    );
    page.caption = if shown < total {
        format!("The first {shown} of {total} rows (the CSV has them all)")
    } else {
        format!("All {total} rows")
    };
    page.csv_href = format!(
        "/api/v1/query?{}",
        url::form_urlencoded::Serializer::new(String::new())
            .append_pair("sql", &sql)
            .append_pair("format", "csv")
            .finish()
    );
    render(StatusCode::OK, &page)
}
