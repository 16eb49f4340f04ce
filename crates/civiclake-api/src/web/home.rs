//! `GET /`: the platform's home page, the tables of the lake with their sizes and freshness.

use super::{Chrome, error_page, format, render};
use crate::AppState;
use crate::auth::MaybeCaller;
use crate::ops::{TableInfo, rfc3339_micros, table_infos};
use askama::Template;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use civiclake_auth::Permission;
use civiclake_core::ColumnRole;

/// Rows shown by the per-table query links.
const SAMPLE_ROWS: usize = 100;

#[derive(Debug, Template)]
#[template(path = "home.html")]
struct HomePage {
    chrome: Chrome,
    /// What the visitor may see: `signed-out`, `no-access` (a role without table access), or
    /// `tables`.
    access: &'static str,
    /// Role of the signed-in visitor.
    role: String,
    totals: Totals,
    tables: Vec<TableRow>,
    /// Whether the visible tables hold no row at all (shows how to write a first one).
    no_rows: bool,
    /// A curl command writing a first row to this server (empty state).
    write_example: String,
}

#[derive(Debug)]
struct Totals {
    tables: String,
    rows: String,
    buffered_rows: String,
    files: String,
    file_bytes: u64,
    file_size: String,
    wal_bytes: u64,
    wal_size: String,
    uptime: String,
}

#[derive(Debug)]
struct TableRow {
    name: String,
    rows: String,
    buffered_rows: String,
    files: String,
    file_bytes: u64,
    file_size: String,
    newest: Option<Newest>,
    columns: String,
    json_href: String,
    csv_href: String,
}

#[derive(Debug)]
struct Newest {
    /// RFC 3339, for `<time datetime>`.
    iso: String,
    /// `2026-01-01 00:51:00 UTC`.
    display: String,
    /// `5 min ago`.
    age: String,
}

/// The home page.
/// A system table or a civic module's table (`council_`, `school_`, `kiosk_`, `bus_`).
fn platform_table(name: &str) -> bool {
    name.starts_with('_')
        || ["council_", "school_", "kiosk_", "bus_"]
            .iter()
            .any(|p| name.starts_with(p))
}

pub(crate) async fn home(
    State(state): State<AppState>,
    MaybeCaller(caller): MaybeCaller,
    headers: HeaderMap,
) -> Response {
    let (access, role) = match &caller {
        None => ("signed-out", String::new()),
        Some(p) if p.can(Permission::Query) || p.can(Permission::Dashboards) => {
            ("tables", p.role.clone())
        }
        Some(p) => ("no-access", p.role.clone()),
    };
    let visible =
        |t: &str| access == "tables" && caller.as_ref().is_some_and(|p| p.reaches_table(t));
    let infos = match table_infos(&state.lake, visible) {
        Ok(infos) => infos,
        Err(e) => return error_page(&headers, e.status(), e.message()),
    };
    let stats = state.lake.stats();
    let now_us = chrono::Utc::now().timestamp_micros();
    let rows: Option<u64> = infos.iter().map(|t| t.rows).sum();
    let buffered: usize = infos.iter().map(|t| t.buffered_rows).sum();
    let files: usize = infos.iter().map(|t| t.files).sum();
    let file_bytes: u64 = infos.iter().map(|t| t.file_bytes).sum();
    let page = HomePage {
        chrome: Chrome::new(&headers, "home"),
        access,
        role,
        // The platform's own tables (system tables, the modules' bookkeeping) are not data a
        // first write is invited for.
        no_rows: access == "tables"
            && infos
                .iter()
                .filter(|t| !platform_table(&t.name))
                .all(|t| t.rows == Some(0)),
        totals: Totals {
            tables: format::count(infos.len() as u64),
            rows: rows.map_or_else(|| "unknown".to_string(), format::count),
            buffered_rows: format::count(buffered as u64),
            files: format::count(files as u64),
            file_bytes,
            file_size: format::bytes(file_bytes),
            wal_bytes: stats.wal_bytes,
            wal_size: format::bytes(stats.wal_bytes),
            uptime: format::duration(state.started.elapsed().as_secs()),
        },
        tables: infos.iter().map(|t| table_row(t, now_us)).collect(),
        write_example: write_example(&headers),
    };
    render(StatusCode::OK, &page)
}

fn table_row(t: &TableInfo, now_us: i64) -> TableRow {
    let sample = format!(
        "SELECT * FROM \"{}\" ORDER BY time DESC LIMIT {SAMPLE_ROWS}",
        t.name
    );
    TableRow {
        name: t.name.clone(),
        rows: t.rows.map_or_else(|| "unknown".to_string(), format::count),
        buffered_rows: format::count(t.buffered_rows as u64),
        files: format::count(t.files as u64),
        file_bytes: t.file_bytes,
        file_size: format::bytes(t.file_bytes),
        newest: t.newest_time_us.and_then(|us| newest(us, now_us)),
        columns: t
            .columns
            .iter()
            .map(|c| {
                if c.role == ColumnRole::Tag.as_str() {
                    format!("{} (tag)", c.name)
                } else {
                    c.name.clone()
                }
            })
            .collect::<Vec<_>>()
            .join(", "),
        json_href: query_href(&sample, "json"),
        csv_href: query_href(&sample, "csv"),
    }
}

fn newest(us: i64, now_us: i64) -> Option<Newest> {
    let time = chrono::DateTime::from_timestamp_micros(us)?;
    Some(Newest {
        iso: rfc3339_micros(us)?,
        display: time.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        age: format::age(now_us.saturating_sub(us) / 1_000_000),
    })
}

/// `/api/v1/query?sql=…&format=…`.
fn query_href(sql: &str, format: &str) -> String {
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("sql", sql)
        .append_pair("format", format)
        .finish();
    format!("/api/v1/query?{query}")
}

/// A curl command writing one row to the server the browser talks to.
fn write_example(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1:8080");
    format!(
        "curl -i -XPOST 'http://{host}/api/v1/write?table=air' \\\n  --data-binary 'air,sensor=s0001,district=Centro pm25=12.5'"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_links_encode_the_sql() {
        assert_eq!(
            query_href("SELECT * FROM \"air\" LIMIT 1", "csv"),
            "/api/v1/query?sql=SELECT+*+FROM+%22air%22+LIMIT+1&format=csv"
        );
    }

    #[test]
    fn the_newest_row_is_shown_with_its_age() {
        let t0 = 1_767_225_600_000_000; // 2026-01-01T00:00:00Z
        let n = newest(t0 + 51 * 60_000_000, t0 + 56 * 60_000_000).unwrap();
        assert_eq!(n.iso, "2026-01-01T00:51:00Z");
        assert_eq!(n.display, "2026-01-01 00:51:00 UTC");
        assert_eq!(n.age, "5 min ago");
    }

    #[test]
    fn the_write_example_names_the_host_of_the_request() {
        let mut headers = HeaderMap::new();
        assert!(write_example(&headers).contains("'http://127.0.0.1:8080/api/v1/write?table=air'"));
        headers.insert(header::HOST, "lake.example:9000".parse().unwrap());
        assert!(
            write_example(&headers).contains("'http://lake.example:9000/api/v1/write?table=air'")
        );
    }
}
