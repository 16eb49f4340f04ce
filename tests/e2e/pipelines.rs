//! Continuous pipelines, alert rules and rollups through the server: definitions from files
//! and the API, results over HTTP, scoping of the listings, alerts on the bus, a restart.

use crate::auth::last_line;
use crate::server::{TestServer, wait_until};
use serde_json::{Value, json};
use std::time::Duration;

const STREAMS: &str = r#"
[[table]]
name = "air"
latest_by = ["sensor"]

[[pipeline]]
name = "air_1m"
source = "air"
target = "air_1m"
sql = "SELECT sensor, avg(pm25) AS pm25, count(*) AS n FROM air GROUP BY sensor"
window = { kind = "tumbling", size = "1m" }
watermark = "0s"
backfill = "3650d"

[[pipeline]]
name = "air_hourly"
source = "air"
target = "air_hourly"
rollup = { series = ["sensor"], fields = ["pm25"] }
window = { kind = "tumbling", size = "1h" }
watermark = "0s"
backfill = "3650d"
"#;

const ALERTS: &str = r#"
[[alert]]
name = "pm25-high"
kind = "threshold"
table = "air"
field = "pm25"
window = "1h"
by = ["sensor"]
op = ">"
value = 50.0
every = "1s"
"#;

fn setup(dir: &std::path::Path) -> std::path::PathBuf {
    let defs = dir.join("defs");
    std::fs::create_dir_all(defs.join("streams")).expect("streams dir");
    std::fs::create_dir_all(defs.join("alerts")).expect("alerts dir");
    std::fs::write(defs.join("streams/air.toml"), STREAMS).expect("streams file");
    std::fs::write(defs.join("alerts/air.toml"), ALERTS).expect("alerts file");
    defs
}

fn send(req: reqwest::blocking::RequestBuilder, token: &str, body: Option<Value>) -> (u16, Value) {
    let req = req.bearer_auth(token);
    let req = match body {
        Some(b) => req.json(&b),
        None => req,
    };
    let r = req.send().expect("request");
    let status = r.status().as_u16();
    let text = r.text().unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// The JSON rows of `sql` (asserting a 200).
fn query_rows(url: &str, token: &str, sql: &str) -> Vec<Value> {
    let (status, body) = send(
        TestServer::client().post(format!("{url}/api/v1/query")),
        token,
        Some(json!({"sql": sql})),
    );
    assert_eq!(status, 200, "{sql}: {body}");
    body.as_array().cloned().unwrap_or_default()
}

#[test]
fn pipelines_rollups_and_alerts_through_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let defs = setup(dir.path());
    let data = dir.path().join("data");
    let env = [("CIVICLAKE_PIPELINES__DIR", defs.to_str().unwrap())];
    let server = TestServer::start_secure(&data, &env);
    let token = |args: &[&str]| {
        let mut all = vec!["create"];
        all.extend_from_slice(args);
        last_line(&crate::auth::token_cmd(&data, &all))
    };
    let admin = token(&["--role", "admin"]);
    let c = TestServer::client();
    let url = &server.url;

    // Readings of two sensors over two hours, a minute apart; the last 40 minutes of s1 high.
    let now = chrono::Utc::now().timestamp() / 60 * 60;
    let start = now - 2 * 3600;
    let mut lp = String::new();
    for m in 0..120i64 {
        let t = start + m * 60;
        let v1 = if m >= 80 { 90.0 } else { 10.0 + (m % 7) as f64 };
        lp.push_str(&format!("air,sensor=s1 pm25={v1} {t}000000000\n"));
        lp.push_str(&format!("air,sensor=s2 pm25={} {t}000000000\n", 20 + m % 3));
    }
    let (status, body) = send(c.post(format!("{url}/api/v1/write")).body(lp), &admin, None);
    assert_eq!(status, 204, "{body}");

    // The 1-minute windows up to the watermark (the newest reading) appear.
    let rows = |sql: &str| query_rows(url, &admin, sql);
    // None while the table does not exist yet.
    let count = |table: &str| -> Option<i64> {
        let (status, body) = send(
            c.post(format!("{url}/api/v1/query")),
            &admin,
            Some(json!({"sql": format!("SELECT count(*) AS n FROM {table}")})),
        );
        (status == 200).then(|| body[0]["n"].as_i64()).flatten()
    };
    wait_until(Duration::from_secs(30), "the 1-minute windows", || {
        count("air_1m") == Some(2 * 119)
    });
    let raw = rows(
        "SELECT sensor, date_bin(INTERVAL '1 minute', time) AS w, avg(pm25) AS v, count(*) AS n \
         FROM air WHERE time < (SELECT max(time) FROM air) GROUP BY 1, 2 ORDER BY 1, 2",
    );
    let piped = rows(
        "SELECT CAST(sensor AS VARCHAR) AS sensor, window_start AS w, pm25 AS v, n FROM air_1m ORDER BY 1, 2",
    );
    assert_eq!(piped, raw);

    // The state of each pipeline.
    let (status, list) = send(c.get(format!("{url}/api/v1/pipelines")), &admin, None);
    assert_eq!(status, 200);
    let names: Vec<&str> = list["pipelines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["spec"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["air_1m", "air_hourly"]);
    assert_eq!(list["pipelines"][0]["running"], true);

    // The rollup answers an hourly query (EXPLAIN shows it) with the raw answer.
    wait_until(Duration::from_secs(30), "the hourly rollup", || {
        count("air_hourly") >= Some(2)
    });
    let hourly = "SELECT sensor, date_trunc('hour', time) AS h, avg(pm25) AS v, count(*) AS n, max(pm25) AS top \
                  FROM air GROUP BY 1, 2 ORDER BY 1, 2";
    let plan = rows(&format!("EXPLAIN {hourly}"));
    assert!(
        plan.iter()
            .any(|r| r.to_string().contains("rollup_air_hourly")),
        "{plan:?}"
    );
    let with_rollup = rows(hourly);
    let (status, plain) = send(
        c.post(format!("{url}/api/v1/query")),
        &admin,
        // A condition on a field: not answered from the rollup.
        Some(json!({"sql": hourly.replace("GROUP BY", "WHERE pm25 > -1 GROUP BY")})),
    );
    assert_eq!(status, 200);
    assert_eq!(with_rollup.len(), plain.as_array().unwrap().len());
    for (a, b) in with_rollup.iter().zip(plain.as_array().unwrap()) {
        assert_eq!(a["sensor"], b["sensor"]);
        assert_eq!(a["n"], b["n"]);
        assert_eq!(a["top"], b["top"]);
        let (x, y) = (a["v"].as_f64().unwrap(), b["v"].as_f64().unwrap());
        assert!((x - y).abs() < 1e-9, "{a} vs {b}");
    }

    // latest(): the last reading of each sensor.
    let latest =
        rows("SELECT CAST(sensor AS VARCHAR) AS sensor, pm25 FROM latest('air') ORDER BY 1");
    assert_eq!(
        latest,
        [
            json!({"sensor": "s1", "pm25": 90.0}),
            json!({"sensor": "s2", "pm25": 22.0})
        ]
    );

    // The alert fires for s1 and goes on the bus.
    wait_until(Duration::from_secs(30), "the alert", || {
        let (_, a) = send(
            c.get(format!("{url}/api/v1/alerts/pm25-high")),
            &admin,
            None,
        );
        a["firing"].as_array().is_some_and(|f| f.len() == 1)
    });
    let (_, a) = send(
        c.get(format!("{url}/api/v1/alerts/pm25-high")),
        &admin,
        None,
    );
    assert_eq!(a["firing"][0]["series"], "sensor=s1");
    // The state changes first; the `_alerts` row and the bus event follow.
    let alert_events =
        "SELECT type, source, subject FROM bus_events WHERE type = 'civiclake.alert.firing'";
    wait_until(Duration::from_secs(30), "the alert on the bus", || {
        !rows(alert_events).is_empty()
    });
    let logged = rows(alert_events);
    assert_eq!(
        logged,
        [
            json!({"type": "civiclake.alert.firing", "source": "/alerts/pm25-high", "subject": "sensor=s1"})
        ]
    );
    assert_eq!(
        rows("SELECT CAST(state AS VARCHAR) AS s FROM _alerts")[0]["s"],
        "firing"
    );

    // The API: a bad definition is a 400 with the reason, a file's pipeline cannot be deleted.
    let (status, body) = send(
        c.post(format!("{url}/api/v1/pipelines")),
        &admin,
        Some(json!({"name": "bad", "source": "air", "target": "bad_out",
                    "sql": "SELECT * FROM air", "window": {"kind": "tumbling", "size": "1m"}})),
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("no `*`"), "{body}");
    let (status, body) = send(
        c.post(format!("{url}/api/v1/pipelines")),
        &admin,
        Some(
            json!({"name": "bad", "source": "air", "target": "bad_out", "sql": "SELECT count(*) AS n FROM air",
                    "window": {"kind": "tumbling", "size": "1m"}, "windw": 1}),
        ),
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("windw"), "{body}");
    let (status, body) = send(
        c.delete(format!("{url}/api/v1/pipelines/air_1m")),
        &admin,
        None,
    );
    assert_eq!(status, 409, "{body}");
    let (status, _) = send(
        c.delete(format!("{url}/api/v1/pipelines/nope")),
        &admin,
        None,
    );
    assert_eq!(status, 404);
    let (status, body) = send(
        c.post(format!("{url}/api/v1/pipelines")),
        &admin,
        Some(
            json!({"name": "air_count", "source": "air", "target": "air_count",
                    "sql": "SELECT count(*) AS n FROM air",
                    "window": {"kind": "hopping", "size": "10m", "slide": "5m"},
                    "watermark": "0s", "backfill": "1d"}),
        ),
    );
    assert_eq!(status, 201, "{body}");

    // Listings are scoped: an analyst of noise only sees none, one of air sees them.
    let noise = token(&["--role", "analyst", "--tables", "noise*"]);
    let airs = token(&["--role", "analyst", "--tables", "air*"]);
    let (_, l) = send(c.get(format!("{url}/api/v1/pipelines")), &noise, None);
    assert_eq!(l["pipelines"].as_array().unwrap().len(), 0);
    let (status, _) = send(
        c.get(format!("{url}/api/v1/pipelines/air_1m")),
        &noise,
        None,
    );
    assert_eq!(status, 404);
    let (status, _) = send(
        c.get(format!("{url}/api/v1/alerts/pm25-high")),
        &noise,
        None,
    );
    assert_eq!(status, 404);
    let (status, p) = send(c.get(format!("{url}/api/v1/pipelines/air_1m")), &airs, None);
    assert_eq!(status, 200, "{p}");
    let (_, l) = send(c.get(format!("{url}/api/v1/pipelines")), &airs, None);
    assert_eq!(l["pipelines"].as_array().unwrap().len(), 3);
    let (status, _) = send(
        c.delete(format!("{url}/api/v1/pipelines/air_count")),
        &airs,
        None,
    );
    assert_eq!(status, 403);

    // After a restart: the API's pipeline is back, the windows are not doubled.
    wait_until(Duration::from_secs(30), "air_count", || {
        count("air_count") > Some(0)
    });
    let before = rows("SELECT count(*) AS n FROM air_1m")[0]["n"].clone();
    let mut server = server;
    server.terminate();
    let server = server.restart();
    let url = &server.url;
    let (_, list) = send(c.get(format!("{url}/api/v1/pipelines")), &admin, None);
    assert_eq!(list["pipelines"].as_array().unwrap().len(), 3);
    let rows = |sql: &str| query_rows(url, &admin, sql);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(rows("SELECT count(*) AS n FROM air_1m")[0]["n"], before);
    let (status, _) = send(
        c.delete(format!("{url}/api/v1/pipelines/air_count")),
        &admin,
        None,
    );
    assert_eq!(status, 204);
}
