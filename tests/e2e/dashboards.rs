//! Dashboards over HTTP: the shipped dashboards on the demo city (`--demo`), every panel
//! drawn without an error, CSV and SQL of a panel, the `/sql` page, bad requests and
//! access control.

use crate::auth::{last_line, token_cmd};
use crate::server::{TestServer, wait_until};
use std::path::PathBuf;
use std::time::Duration;

/// The repository's `dashboards/` folder (the shipped dashboards and map layers).
pub(crate) fn shipped_dashboards() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../dashboards")
        .canonicalize()
        .expect("the dashboards folder")
}

/// A server with the shipped dashboards and the demo city, once the demo's day is in.
pub(crate) fn demo_server(dir: &std::path::Path) -> TestServer {
    let dashboards = shipped_dashboards();
    let server = TestServer::start(
        dir,
        &[
            ("CIVICLAKE_DEMO", "true"),
            (
                "CIVICLAKE_DASHBOARDS__DIR",
                dashboards.to_str().expect("UTF-8 path"),
            ),
            ("CIVICLAKE_METRICS__SAMPLE_INTERVAL", "2s"),
        ],
    );
    // The day of history is written an hour at a time; the last hour is in when readings of
    // the last few minutes are.
    wait_until(Duration::from_secs(120), "the demo city's last day", || {
        let rows = TestServer::client()
            .post(format!("{}/api/v1/query", server.url))
            .json(&serde_json::json!({"sql":
                "SELECT count(*) AS n FROM air WHERE time > now() - INTERVAL '10 minutes'"}))
            .send()
            .ok()
            .filter(|r| r.status() == 200)
            .and_then(|r| r.json::<Vec<serde_json::Value>>().ok());
        rows.and_then(|r| r.first().and_then(|row| row["n"].as_u64()))
            .is_some_and(|n| n > 0)
    });
    server
}

/// The `src` of every panel image in a dashboard page, HTML entities undone.
pub(crate) fn panel_images(html: &str) -> Vec<String> {
    html.split("<img src=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .map(|src| src.replace("&amp;", "&").replace("&#x24;", "$"))
        .collect()
}

#[test]
fn shipped_dashboards_draw_every_panel_on_the_demo_city() {
    let dir = tempfile::tempdir().unwrap();
    let server = demo_server(dir.path());
    let client = TestServer::client();

    // The demo city: 1,000 sensors in the registry, each inside Prato.
    let sensors = server.scalar("SELECT count(*) AS n FROM sensors");
    assert_eq!(sensors, 1000.0);
    let outside = server.scalar(
        "SELECT count(*) AS n FROM sensors WHERE lat NOT BETWEEN 43.8 AND 44.0 OR lon NOT BETWEEN 10.9 AND 11.2",
    );
    assert_eq!(outside, 0.0);

    // The demo's first kiosk plan: the synthetic census against its 17 kiosks.
    let mut plan = serde_json::Value::Null;
    wait_until(
        Duration::from_secs(60),
        "the demo kiosk plan",
        || match client
            .get(format!("{}/api/v1/kiosk/plan", server.url))
            .send()
        {
            Ok(r) if r.status() == 200 => {
                plan = r.json().unwrap_or_default();
                true
            }
            _ => false,
        },
    );
    assert_eq!(plan["inputs"]["existing"], 17);
    // 317 census sections, and the observed use of the 17 kiosks (the fleet's demo year is
    // written before the plan is computed).
    assert_eq!(plan["inputs"]["demand_points"], 334);
    assert_eq!(plan["result"]["model"], "mclp");
    let page = client
        .get(format!("{}/kiosk/plan", server.url))
        .send()
        .unwrap();
    assert_eq!(page.status(), 200);

    // The demo's kiosk fleet: 17 kiosks in service and a year of their transactions.
    wait_until(Duration::from_secs(120), "the demo kiosk fleet", || {
        server.scalar("SELECT count(*) AS n FROM kiosk_current") == 17.0
            && server.scalar("SELECT count(*) AS n FROM kiosk_availability_daily") > 0.0
    });
    assert!(server.scalar("SELECT count(*) AS n FROM kiosk_transactions") > 1000.0);
    // The demo's council: 150 acts and a year of sessions, the last ones days ago.
    wait_until(Duration::from_secs(180), "the demo council's year", || {
        server.scalar(
            "SELECT count(*) AS n FROM council_sessions WHERE time > now() - INTERVAL '14 days'",
        ) > 0.0
    });
    assert_eq!(
        server.scalar("SELECT count(*) AS n FROM council_acts"),
        150.0
    );

    let index = client
        .get(format!("{}/dashboards", server.url))
        .send()
        .unwrap();
    assert_eq!(index.status(), 200);
    let index = index.text().unwrap();
    for (id, title) in [
        ("air-noise", "Air quality and noise"),
        ("fleet-health", "Sensor fleet health"),
        ("civiclake", "civiclake itself"),
        ("bus", "Interoperability bus"),
        ("kiosk", "Self-service kiosks"),
        ("council", "Council committees"),
    ] {
        assert!(
            index.contains(&format!("<a href=\"/dashboards/{id}\">{title}</a>")),
            "{id} in the index: {index}"
        );
        let page = client
            .get(format!("{}/dashboards/{id}", server.url))
            .send()
            .unwrap();
        assert_eq!(page.status(), 200, "{id}");
        let html = page.text().unwrap();
        let images = panel_images(&html);
        assert!(images.len() >= 6, "{id}: panels {images:?}");
        for src in images {
            let r = client.get(format!("{}{src}", server.url)).send().unwrap();
            let status = r.status();
            assert_eq!(
                r.headers()["content-type"],
                "image/svg+xml",
                "{src}: content type"
            );
            let svg = r.text().unwrap();
            assert_eq!(status, 200, "{src}: {svg}");
            assert!(svg.starts_with("<svg"), "{src}: {svg}");
            assert!(
                !svg.contains("This panel could not be drawn"),
                "{src}: {svg}"
            );
        }
    }

    // The air panels have data: five district lines, and no "No data".
    let no2 = client
        .get(format!(
            "{}/dashboards/air-noise/panels/no2.svg?from=now-6h&var-district=$__all",
            server.url
        ))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(!no2.contains("No data"), "{no2}");
    for district in ["Centro", "Nord", "Est", "Sud", "Ovest"] {
        assert!(no2.contains(district), "{district} in the legend");
    }

    // CSV of a panel: the downsampled rows, one district.
    let csv = client
        .get(format!(
            "{}/dashboards/air-noise/panels/no2.csv?from=now-6h&var-district=Nord",
            server.url
        ))
        .send()
        .unwrap();
    assert_eq!(csv.status(), 200);
    assert_eq!(csv.headers()["content-type"], "text/csv; charset=utf-8");
    assert!(
        csv.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .contains("air-noise-no2.csv")
    );
    let csv = csv.text().unwrap();
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("time,series,value"));
    let rows: Vec<&str> = lines.collect();
    assert!(
        rows.len() > 100 && rows.len() <= 801,
        "6 h at 800 px: {} rows",
        rows.len()
    );
    assert!(rows.iter().all(|r| r.contains(",Nord,")), "{csv}");

    // The SQL of a panel, with the values filled in.
    let sql = client
        .get(format!(
            "{}/dashboards/air-noise/panels/no2/sql?from=now-6h&var-district=Nord",
            server.url
        ))
        .send()
        .unwrap();
    assert_eq!(sql.status(), 200);
    let sql = sql.text().unwrap();
    assert!(
        sql.contains("(district = &#x27;Nord&#x27;)")
            || sql.contains("(district = &#39;Nord&#39;)"),
        "{sql}"
    );
    assert!(sql.contains("TIMESTAMP"), "{sql}");

    // The SQL page runs a query and links its CSV.
    let page = client
        .get(format!("{}/sql", server.url))
        .query(&[(
            "q",
            "SELECT kind, count(*) AS n FROM sensors GROUP BY kind ORDER BY kind",
        )])
        .send()
        .unwrap();
    assert_eq!(page.status(), 200);
    let page = page.text().unwrap();
    assert!(page.contains("5 rows in"), "{page}");
    assert!(page.contains("<td>air</td><td>200</td>"), "{page}");
    assert!(page.contains("format=csv"), "{page}");
    let bad = client
        .get(format!("{}/sql", server.url))
        .query(&[("q", "SELECT nothing FROM nowhere")])
        .send()
        .unwrap();
    assert_eq!(bad.status(), 400);
    let bad = bad.text().unwrap();
    assert!(bad.contains("aria-invalid=\"true\""), "{bad}");
    assert!(bad.contains("nowhere"), "{bad}");
}

#[test]
fn panel_requests_are_checked_and_errors_are_drawn() {
    let dir = tempfile::tempdir().unwrap();
    let dashboards = shipped_dashboards();
    let server = TestServer::start(
        dir.path(),
        &[("CIVICLAKE_DASHBOARDS__DIR", dashboards.to_str().unwrap())],
    );
    let client = TestServer::client();
    let get = |path: &str| client.get(format!("{}{path}", server.url)).send().unwrap();

    // A value outside the variable's list: 400, drawn as an SVG that says why.
    let r = get("/dashboards/air-noise/panels/no2.svg?var-district=Atlantis");
    assert_eq!(r.status(), 400);
    assert_eq!(r.headers()["content-type"], "image/svg+xml");
    let svg = r.text().unwrap();
    assert!(svg.contains("This panel could not be drawn"), "{svg}");
    assert!(svg.contains("Atlantis"), "{svg}");
    // The same as CSV: a JSON error.
    let r = get("/dashboards/air-noise/panels/no2.csv?var-district=Atlantis");
    assert_eq!(r.status(), 400);
    assert!(r.text().unwrap().contains("Atlantis"));
    // Times the wrong way round.
    assert_eq!(
        get("/dashboards/air-noise/panels/no2.svg?from=now&to=now-1h").status(),
        400
    );
    // Unknown dashboard, panel, or format.
    assert_eq!(get("/dashboards/nowhere").status(), 404);
    assert_eq!(
        get("/dashboards/air-noise/panels/nothing.svg").status(),
        404
    );
    assert_eq!(get("/dashboards/air-noise/panels/no2.gif").status(), 404);
    // No data at all (no table yet): the query's error is drawn, with its status.
    let r = get("/dashboards/air-noise/panels/no2.svg");
    assert_eq!(r.status(), 400);
    let svg = r.text().unwrap();
    assert!(svg.contains("air"), "{svg}");
    // Data but none in range: a chart that says "No data".
    server.write_lp(
        "air",
        "air,sensor=s1,district=Nord no2=20 1767225600000000000",
    );
    let r = get("/dashboards/air-noise/panels/no2.svg?from=now-1h");
    assert_eq!(r.status(), 200);
    assert!(r.text().unwrap().contains("No data"));
    // PNG on request.
    let r = get(
        "/dashboards/air-noise/panels/no2.png?from=2025-12-31T23:00:00Z&to=2026-01-01T01:00:00Z",
    );
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "image/png");
    assert!(r.bytes().unwrap().starts_with(b"\x89PNG"));
}

#[test]
fn dashboards_need_a_token_that_may_see_them() {
    let dir = tempfile::tempdir().unwrap();
    let dashboards = shipped_dashboards();
    let server = TestServer::start_secure(
        dir.path(),
        &[("CIVICLAKE_DASHBOARDS__DIR", dashboards.to_str().unwrap())],
    );
    let client = TestServer::client();
    let r = client
        .get(format!("{}/dashboards", server.url))
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = client
        .get(format!(
            "{}/dashboards/air-noise/panels/no2.svg",
            server.url
        ))
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.text().unwrap().contains("sign in"));
    let token = |args: &[&str]| last_line(&token_cmd(dir.path(), args));
    let gateway = token(&["create", "--role", "gateway", "--tables", "air"]);
    let r = client
        .get(format!("{}/dashboards", server.url))
        .bearer_auth(&gateway)
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);
    let planner = token(&["create", "--role", "planner"]);
    let r = client
        .get(format!("{}/dashboards", server.url))
        .bearer_auth(&planner)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    // A planner sees dashboards but may not run free SQL.
    let r = client
        .get(format!("{}/sql?q=SELECT%201", server.url))
        .bearer_auth(&planner)
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);
}

/// `--demo` also runs a small bus: a catalog, schemas, a subscription to the portal, and
/// events every few seconds, delivered — the `bus` dashboard and the map have something.
#[test]
fn the_demo_bus_fills_the_log_the_deliveries_and_the_map() {
    let dir = tempfile::tempdir().unwrap();
    let server = demo_server(dir.path());
    wait_until(Duration::from_secs(60), "demo bus deliveries", || {
        server.scalar(
            "SELECT count(*) FROM bus_deliveries WHERE subscription = 'portale-avvisi' AND status = 'delivered'",
        ) >= 2.0
    });
    let types = server.query("SELECT DISTINCT \"type\" FROM bus_events ORDER BY 1");
    assert!(!types.is_empty());
    for t in &types {
        assert!(
            [
                "it.prato.ambiente.aria.SogliaSuperata",
                "it.prato.rifiuti.CassonettoPieno",
                // The demo council's year, told on the bus as it is recorded.
                civiclake_council::service::bus_type::ACT_STEP,
                civiclake_council::service::bus_type::SESSION,
            ]
            .contains(&t["type"].as_str().unwrap_or("")),
            "{t}"
        );
    }
    let map: serde_json::Value = TestServer::client()
        .get(format!("{}/api/v1/bus/map", server.url))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let portal: Vec<&serde_json::Value> = map["dependencies"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["consumer"] == "comune-prato/portale")
        .collect();
    assert!(
        portal
            .iter()
            .any(|d| d["producer"] == "comune-prato/sensori-aria"
                && d["subscriptions"] == serde_json::json!(["portale-avvisi"])),
        "{map}"
    );
}
