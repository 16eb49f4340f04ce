//! The kiosk siting optimiser through the server and the CLI: inputs imported by a kiosk
//! operator, plans computed, kept as rows, read back as JSON, a map and a page; access
//! control; `civiclake kiosk plan` on the demo city and against the server.

use crate::auth::{last_line, token_cmd};
use crate::server::{TestServer, binary, wait_until};
use serde_json::{Value, json};
use std::process::Command;
use std::time::Duration;

/// 40 demand points on a line of 4 km east of Prato's centre (100 residents each, 30 aged
/// 65+ in the western half), and sites every 250 m along it; today's 3 kiosks bunched at the
/// west end.
fn inputs() -> (String, Value) {
    let lon = |m: f64| 11.0966 + m / (111_195.08 * 43.88f64.to_radians().cos());
    let mut csv = String::from("id,lon,lat,population,elderly\n");
    for i in 0..40 {
        let elderly = if i < 20 { 30 } else { 0 };
        csv.push_str(&format!(
            "d{i},{:.6},43.8805,100,{elderly}\n",
            lon(f64::from(i) * 100.0)
        ));
    }
    let sites: Vec<Value> = (0..17)
        .map(|j| {
            json!({
                "id": format!("s{j}"),
                "name": format!("site {j}"),
                "lon": lon(f64::from(j) * 250.0),
                "lat": 43.8805,
                "kind": "candidate",
                "existing": j < 3,
            })
        })
        .collect();
    (csv, Value::Array(sites))
}

#[test]
fn kiosk_plans_through_the_api_the_page_the_tables_and_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let operator = last_line(&token_cmd(
        dir.path(),
        &["create", "--role", "kiosk-operator"],
    ));
    let admin = last_line(&token_cmd(dir.path(), &["create", "--role", "admin"]));
    let outsider = last_line(&token_cmd(
        dir.path(),
        &["create", "--role", "analyst", "--tables", "air_*"],
    ));
    let server = TestServer::start_secure(dir.path(), &[]);
    let client = TestServer::client();
    let url = |path: &str| format!("{}{path}", server.url);
    let post_json = |token: &str, path: &str, body: &Value| {
        let r = client
            .post(url(path))
            .bearer_auth(token)
            .json(body)
            .send()
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json::<Value>().unwrap_or(Value::Null))
    };

    // Nothing imported yet.
    let (status, body) = post_json(&operator, "/api/v1/kiosk/plan", &json!({}));
    assert_eq!(status, 404, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("no demand points"),
        "{body}"
    );

    // Imports: demand as CSV, sites as JSON; bad ones refused with the reason.
    let (csv, sites) = inputs();
    let r = client
        .post(url("/api/v1/kiosk/siting/demand"))
        .bearer_auth(&operator)
        .header("content-type", "text/csv")
        .body(csv.replace(",100,30\nd4", ",lots,30\nd4"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json::<Value>().unwrap()["error"],
        "demand CSV: line 5, column population: 'lots' is not a number"
    );
    let r = client
        .post(url("/api/v1/kiosk/siting/demand"))
        .bearer_auth(&operator)
        .header("content-type", "application/xml")
        .body("<x/>")
        .send()
        .unwrap();
    assert_eq!(r.status(), 415);
    let r = client
        .post(url("/api/v1/kiosk/siting/demand"))
        .bearer_auth(&operator)
        .header("content-type", "text/csv")
        .body(csv.clone())
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.json::<Value>().unwrap()["rows"], 40);
    let (status, body) = post_json(&operator, "/api/v1/kiosk/siting/sites", &sites);
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["rows"], 17);
    let (status, body) = post_json(
        &operator,
        "/api/v1/kiosk/siting/sites",
        &json!([{"id": "x", "lon": 11.0, "lat": 95.0}]),
    );
    assert_eq!(status, 400);
    assert_eq!(
        body["error"],
        "site x: (11, 95) is not a longitude, latitude in degrees"
    );

    // A maximal-covering plan: 3 kiosks within 500 m of the most weight.
    let (status, plan) = post_json(
        &operator,
        "/api/v1/kiosk/plan",
        &json!({"model": "mclp", "threshold_m": 500, "report_thresholds_m": [300, 500, 800]}),
    );
    assert_eq!(status, 201, "{plan}");
    let id = plan["id"].as_str().unwrap().to_string();
    assert_eq!(plan["result"]["p"], 3, "p defaults to today's count");
    assert_eq!(plan["inputs"]["demand_points"], 40);
    assert_eq!(plan["inputs"]["existing"], 3);
    let objective = plan["result"]["objective"].as_f64().unwrap();
    let today = plan["result"]["today_objective"].as_f64().unwrap();
    let bound = plan["result"]["bound"].as_f64().unwrap();
    assert!(objective > today, "{plan}");
    assert!(bound >= objective, "{plan}");
    // Three kiosks cover at most 3 × 1,000 m of the 4 km line, each point within 500 m
    // (1.3 × great-circle) of a site: the optimum is at most 3 × 8 points.
    let reach_500 = &plan["proposal"]["reach"][1];
    assert_eq!(reach_500["threshold_m"], 500.0);
    let covered = reach_500["population"].as_f64().unwrap();
    assert!((1500.0..=2400.0).contains(&covered), "{reach_500}");
    assert!(
        covered > plan["today"]["reach"][1]["population"].as_f64().unwrap(),
        "{plan}"
    );
    let moves = plan["moves"].as_array().unwrap().len();
    let kept = plan["kept"].as_array().unwrap().len();
    assert_eq!(moves + kept, 3, "{plan}");

    // Read back: the plan, the list, the rows, the map, the page.
    let got: Value = client
        .get(url("/api/v1/kiosk/plan"))
        .bearer_auth(&operator)
        .send()
        .unwrap()
        .json()
        .unwrap();
    // The same plan (coordinates may differ in the last bit after the JSON round trip).
    assert_eq!((&got["id"], &got["result"]), (&plan["id"], &plan["result"]));
    assert_eq!(got["proposal"]["reach"], plan["proposal"]["reach"]);
    let rows = client
        .post(url("/api/v1/query"))
        .bearer_auth(&admin)
        .json(&json!({"sql": format!(
            "SELECT count(*) AS n FROM kiosk_plan_sites WHERE plan_id = '{id}'"
        )}))
        .send()
        .unwrap()
        .json::<Vec<Value>>()
        .unwrap();
    assert_eq!(rows[0]["n"], (kept + 2 * moves) as u64);
    let svg = client
        .get(url(&format!(
            "/api/v1/kiosk/plan/map.svg?id={id}&network=proposal"
        )))
        .bearer_auth(&operator)
        .send()
        .unwrap();
    assert_eq!(svg.status(), 200);
    assert_eq!(svg.headers()["content-type"], "image/svg+xml");
    let svg = svg.text().unwrap();
    assert!(
        svg.starts_with("<svg") && svg.contains("Proposal (mclp, 3 sites)"),
        "{}",
        &svg[..200]
    );
    let page = client
        .get(url(&format!("/kiosk/plan?id={id}")))
        .bearer_auth(&operator)
        .send()
        .unwrap();
    assert_eq!(page.status(), 200);
    let page = page.text().unwrap();
    assert!(
        page.contains(&id) && page.contains("within") && page.contains("<svg"),
        "{page}"
    );
    assert!(page.contains("Residents within 500 m"));

    // A p-median plan not kept; the list still holds one.
    let (status, pm) = post_json(
        &operator,
        "/api/v1/kiosk/plan",
        &json!({"model": "pmedian", "save": false}),
    );
    assert_eq!(status, 200, "{pm}");
    assert_eq!(pm["result"]["bound_kind"], "lower");
    assert!(pm["result"]["bound"].as_f64().unwrap() <= pm["result"]["objective"].as_f64().unwrap());
    let list: Value = client
        .get(url("/api/v1/kiosk/plans"))
        .bearer_auth(&operator)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(list["plans"].as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list["plans"][0]["id"], id.as_str());

    // Validation and access control.
    let (status, body) = post_json(&operator, "/api/v1/kiosk/plan", &json!({"model": "best"}));
    assert_eq!(status, 400);
    assert_eq!(body["error"], "unknown model 'best': mclp, pmedian or lscp");
    let (status, body) = post_json(
        &operator,
        "/api/v1/kiosk/plan",
        &json!({"p": 3, "colour": 1}),
    );
    assert_eq!(status, 400);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("unknown field `colour`"),
        "{body}"
    );
    let (status, body) = post_json(&operator, "/api/v1/kiosk/plan", &json!({"p": 99}));
    assert_eq!(status, 400);
    assert_eq!(
        body["error"],
        "p must be between 1 and the 17 candidate sites, not 99"
    );
    let (status, _) = post_json(&outsider, "/api/v1/kiosk/plan", &json!({}));
    assert_eq!(status, 403);
    let r = client
        .get(url("/api/v1/kiosk/plan"))
        .bearer_auth(&outsider)
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = client.get(url("/api/v1/kiosk/plan")).send().unwrap();
    assert_eq!(r.status(), 401);
    // The write API may not forge the module's tables.
    let r = client
        .post(url("/api/v1/write?table=kiosk_plans"))
        .bearer_auth(&admin)
        .header("content-type", "text/plain")
        .body("kiosk_plans,plan_id=x gap=0 1")
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);

    // The CLI against the server: set covering, kept, printed as JSON.
    let out = Command::new(binary())
        .args([
            "kiosk",
            "plan",
            "--server",
            &server.url,
            "--model",
            "lscp",
            "--format",
            "json",
        ])
        .env("CIVICLAKE_TOKEN", &operator)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lscp: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(lscp["result"]["model"], "lscp");
    // The 4 km line within 500 m (1.3 × great-circle: 385 m either side, 8 points at most
    // per site): 5 sites at least.
    let n = lscp["result"]["objective"].as_f64().unwrap();
    assert!((5.0..=8.0).contains(&n), "{}", lscp["result"]);
    assert!(lscp["result"]["bound"].as_f64().unwrap() <= n);
}

#[test]
fn kiosk_plan_of_the_demo_city_from_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let html = dir.path().join("plan.html");
    let svg = dir.path().join("plan.svg");
    let geo = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../dashboards/geo");
    let out = Command::new(binary())
        .args(["kiosk", "plan", "--demo", "--format", "json", "--geo-dir"])
        .arg(&geo)
        .arg("--html")
        .arg(&html)
        .arg("--svg")
        .arg(&svg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan["inputs"]["existing"], 17);
    assert_eq!(plan["inputs"]["population"], 195_000.0);
    assert_eq!(plan["result"]["p"], 17);
    // The two fixed kiosks stay.
    let kept: Vec<&str> = plan["kept"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert!(kept.contains(&"K11") && kept.contains(&"K12"), "{kept:?}");
    let today = plan["today"]["reach"][1]["population"].as_f64().unwrap();
    let proposal = plan["proposal"]["reach"][1]["population"].as_f64().unwrap();
    assert!(proposal > today, "{today} → {proposal}");
    assert!(
        plan["result"]["gap"].as_f64().unwrap() < 0.2,
        "{}",
        plan["result"]
    );
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("Where the kiosks should stand") && page.matches("<svg").count() == 2);
    let map = std::fs::read_to_string(&svg).unwrap();
    assert!(map.contains("ISTAT, Openpolis"), "the boundary's credit");
    assert!(dir.path().join("plan-today.svg").exists());

    // ISTAT's files to demand, and a clear error for a missing one.
    let out = Command::new(binary())
        .args([
            "kiosk",
            "demand",
            "--istat-csv",
            "/nonexistent.csv",
            "--boundaries",
            "/nonexistent.shp",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent.csv"));
}

/// `time, kiosk_id` rows: `n` transactions now at each kiosk.
fn transactions(per_kiosk: &[(&str, usize)]) -> arrow::array::RecordBatch {
    use arrow::array::{ArrayRef, StringDictionaryBuilder, TimestampMicrosecondArray};
    use arrow::datatypes::{Int32Type, Schema};
    use std::sync::Arc;
    let now = chrono::Utc::now().timestamp_micros();
    let mut ids = StringDictionaryBuilder::<Int32Type>::new();
    let mut times = Vec::new();
    for (id, n) in per_kiosk {
        for k in 0..*n {
            ids.append_value(id);
            times.push(now - k as i64);
        }
    }
    let schema = Arc::new(Schema::new(vec![
        civiclake_core::time_column(),
        civiclake_core::tag_column("kiosk_id"),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(TimestampMicrosecondArray::from(times).with_timezone("UTC")),
        Arc::new(ids.finish()),
    ];
    arrow::array::RecordBatch::try_new(schema, columns).expect("batch")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observed_kiosk_use_weighs_in_and_modules_write_only_their_tables() {
    use civiclake_core::ErrorClass;
    use civiclake_kiosk::siting::output::MapLayers;
    use civiclake_kiosk::siting::{DemandPoint, Site};
    use civiclake_kiosk::{PlanRequest, Siting};

    let dir = tempfile::tempdir().expect("tempdir");
    let server = civiclake_server::Server::start(&crate::platform::config(dir.path()))
        .await
        .expect("start");
    let kiosk = server.platform("kiosk").expect("kiosk platform");
    let batch = transactions(&[("s1", 3), ("s5", 1)]);

    // A module writes only its own tables, never its events table.
    let e = kiosk
        .write_rows("kiosk_events", batch.clone())
        .await
        .expect_err("the events table");
    assert_eq!(e.class(), ErrorClass::Forbidden);
    assert_eq!(
        e.to_string(),
        "module 'kiosk' may not write table kiosk_events: it is the module's events table: events are appended with append_events"
    );
    let school = server.platform("school").expect("school platform");
    let e = school
        .write_rows("kiosk_transactions", batch.clone())
        .await
        .expect_err("another module's table");
    assert_eq!(
        e.to_string(),
        "module 'school' may not write table kiosk_transactions: a module writes only its own tables (school_*)"
    );

    let siting = Siting::new(kiosk.clone(), MapLayers::default());
    let sites: Vec<Site> = (0..6)
        .map(|j| Site {
            id: format!("s{j}"),
            name: format!("site {j}"),
            lon: 11.09 + 0.004 * f64::from(j),
            lat: 43.88,
            kind: "kiosk".into(),
            existing: j < 2,
            fixed: false,
        })
        .collect();
    let demand: Vec<DemandPoint> = (0..12)
        .map(|i| DemandPoint {
            id: format!("d{i}"),
            lon: 11.09 + 0.002 * f64::from(i),
            lat: 43.881,
            population: 100.0,
            elderly: 20.0,
            observed: 0.0,
        })
        .collect();
    // No transactions table yet: no observed use.
    assert!(
        siting
            .observed(&sites, 365)
            .await
            .expect("observed")
            .is_empty()
    );
    assert_eq!(
        kiosk
            .write_rows("kiosk_transactions", batch)
            .await
            .expect("written"),
        4
    );
    let observed = siting.observed(&sites, 365).await.expect("observed");
    let got: Vec<(&str, f64, f64)> = observed
        .iter()
        .map(|d| (d.id.as_str(), d.lon, d.observed))
        .collect();
    assert_eq!(
        got,
        [
            ("observed-s1", sites[1].lon, 3.0),
            ("observed-s5", sites[5].lon, 1.0)
        ]
    );
    let plan = siting
        .run(PlanRequest {
            demand: Some(demand),
            sites: Some(sites),
            observed_share: Some(0.5),
            save: Some(false),
            ..PlanRequest::default()
        })
        .await
        .expect("plan");
    assert_eq!(plan.inputs.observed, 4.0);
    assert_eq!(plan.inputs.demand_points, 14);
    assert_eq!(plan.result.p, 2);
    // Not kept.
    assert!(siting.list(10).await.expect("list").is_empty());
    drop((kiosk, school, siting));
    server.stop().await.expect("stop");
}

/// The kiosk fleet through the server: the registry kept by an operator; heartbeats over
/// HTTP and MQTT (each kiosk with its own token); a kiosk that stops beating goes offline
/// (a row, a bus event); transactions stored once, refused ones kept with their reason;
/// availability and the module's views.
#[test]
fn kiosk_fleet_registry_heartbeats_transactions_and_availability() {
    let dir = tempfile::tempdir().unwrap();
    let operator = last_line(&token_cmd(
        dir.path(),
        &["create", "--role", "kiosk-operator"],
    ));
    let k07 = last_line(&token_cmd(
        dir.path(),
        &["create", "--role", "kiosk-device", "--subject", "K07"],
    ));
    let k08 = last_line(&token_cmd(
        dir.path(),
        &["create", "--role", "kiosk-device", "--subject", "K08"],
    ));
    // The bus log is not the kiosk operator's to read.
    let admin = last_line(&token_cmd(dir.path(), &["create", "--role", "admin"]));
    // A kiosk-device token must name its kiosk.
    let out = Command::new(binary())
        .args(["token", "create", "--role", "kiosk-device", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--subject"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let server = TestServer::start_secure(
        dir.path(),
        &[
            ("CIVICLAKE_KIOSK__HEARTBEAT_INTERVAL", "1s"),
            ("CIVICLAKE_KIOSK__MISSED_BEATS", "2"),
        ],
    );
    let client = TestServer::client();
    let url = |path: &str| format!("{}{path}", server.url);
    let send = |method: &str, token: &str, path: &str, body: Option<&Value>| -> (u16, Value) {
        let mut req = match method {
            "GET" => client.get(url(path)),
            "PUT" => client.put(url(path)),
            "POST" => client.post(url(path)),
            "DELETE" => client.delete(url(path)),
            other => panic!("method {other}"),
        }
        .bearer_auth(token);
        if let Some(b) = body {
            req = req.json(b);
        }
        let r = req.send().unwrap();
        let status = r.status().as_u16();
        let text = r.text().unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    };
    let query = |sql: &str| -> Vec<Value> {
        let (s, v) = send(
            "POST",
            &operator,
            "/api/v1/query",
            Some(&json!({"sql": sql})),
        );
        assert_eq!(s, 200, "{sql}: {v}");
        v.as_array().cloned().unwrap_or_default()
    };

    // The registry.
    let kiosk = |id: &str| {
        json!({"id": id, "name": format!("Kiosk {id}"), "lon": 11.0966, "lat": 43.8777,
               "host_site": "Biblioteca Lazzerini", "opening_hours": {"always": true},
               "peripherals": [{"kind": "card_reader"}, {"kind": "printer"}],
               "services": ["info", "pagopa", "anagrafe-cert"]})
    };
    for id in ["K07", "K08"] {
        let (s, v) = send(
            "PUT",
            &operator,
            &format!("/api/v1/kiosk/kiosks/{id}"),
            Some(&kiosk(id)),
        );
        assert_eq!(s, 201, "{v}");
        assert_eq!(v["id"], id);
        assert_eq!(v["retired"], false);
    }
    let (s, _) = send(
        "PUT",
        &operator,
        "/api/v1/kiosk/kiosks/K07",
        Some(&kiosk("K07")),
    );
    assert_eq!(s, 200, "an unchanged kiosk is not registered twice");
    // A service whose peripheral the kiosk lacks is refused with its field.
    let mut bad = kiosk("K09");
    bad["services"] = json!(["video-office"]);
    let (s, v) = send("PUT", &operator, "/api/v1/kiosk/kiosks/K09", Some(&bad));
    assert_eq!(s, 400, "{v}");
    let message = v.to_string();
    assert!(
        message.contains("services[0]") && message.contains("camera"),
        "{message}"
    );
    let (s, _) = send(
        "PUT",
        &operator,
        "/api/v1/kiosk/kiosks/K10",
        Some(&kiosk("K09")),
    );
    assert_eq!(s, 400, "the body's id must match the path");
    // The device may not change the registry.
    let (s, _) = send("PUT", &k07, "/api/v1/kiosk/kiosks/K07", Some(&kiosk("K07")));
    assert_eq!(s, 403);
    let (s, v) = send("GET", &operator, "/api/v1/kiosk/kiosks", None);
    assert_eq!(s, 200);
    assert_eq!(v.as_array().map(Vec::len), Some(2), "{v}");
    let (s, v) = send("GET", &operator, "/api/v1/kiosk/services", None);
    assert_eq!(s, 200);
    assert!(
        v.as_array()
            .unwrap()
            .iter()
            .any(|s| s["id"] == "pagopa" && s["kind"] == "payment"),
        "{v}"
    );

    // Heartbeats: K07 over HTTP with its own token; K08's token may not speak for K07.
    let (s, v) = send(
        "POST",
        &k07,
        "/api/v1/kiosk/kiosks/K07/heartbeat",
        Some(
            &json!({"software_version": "2.1.0", "peripherals": {"printer": "online", "card_reader": "online"}}),
        ),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["changes"][0]["type"], "online", "{v}");
    let (s, v) = send(
        "POST",
        &k08,
        "/api/v1/kiosk/kiosks/K07/heartbeat",
        Some(&json!({})),
    );
    assert_eq!(s, 403, "{v}");
    let (s, v) = send(
        "POST",
        &k07,
        "/api/v1/kiosk/kiosks/K07/heartbeat",
        Some(&json!({"peripherals": {"printer": "on fire"}})),
    );
    assert_eq!(s, 400, "{v}");
    // K08 over MQTT, on its own topic, with its own token.
    let beat = json!({"peripherals": {"printer": "not-ready"}}).to_string();
    crate::mqtt::publish_all(
        &server.mqtt,
        "kiosk-k08",
        Some(&k08),
        &[("devices/kiosk/K08/heartbeat", beat.as_bytes())],
    )
    .expect("K08 publishes its heartbeat");
    wait_until(Duration::from_secs(10), "K08 online over MQTT", || {
        let (_, v) = send("GET", &operator, "/api/v1/kiosk/kiosks/K08", None);
        v["liveness"]["online"] == true && v["liveness"]["peripherals"]["printer"] == "not-ready"
    });

    // Transactions: stored once, a retry answered 200, a bad one refused and kept.
    let cert = json!({"id": "t-1", "time": "2026-11-02T09:30:00Z", "service": "anagrafe-cert",
                      "method": "card", "outcome": "completed", "duration_s": 95.0,
                      "amount_cents": 52});
    let (s, v) = send(
        "POST",
        &k07,
        "/api/v1/kiosk/kiosks/K07/transactions",
        Some(&cert),
    );
    assert_eq!((s, v["stored"].clone()), (201, json!(true)), "{v}");
    let (s, v) = send(
        "POST",
        &k07,
        "/api/v1/kiosk/kiosks/K07/transactions",
        Some(&cert),
    );
    assert_eq!((s, v["stored"].clone()), (200, json!(false)), "{v}");
    let payment = json!({"id": "t-3", "time": "2026-11-02T09:35:00Z", "service": "pagopa",
                         "method": "contactless", "outcome": "completed", "duration_s": 70.0,
                         "amount_cents": 2000,
                         "notices": [{"notice_number": "302202400000000111",
                                      "creditor_fiscal_code": "00337360978", "amount_cents": 2000}]});
    let (s, v) = send(
        "POST",
        &k07,
        "/api/v1/kiosk/kiosks/K07/transactions",
        Some(&payment),
    );
    assert_eq!(s, 201, "{v}");
    let bad_notice = json!({"id": "t-2", "time": "2026-11-02T09:40:00Z", "service": "pagopa",
                            "method": "card", "outcome": "completed", "duration_s": 60.0,
                            "amount_cents": 1000,
                            "notices": [{"notice_number": "123", "creditor_fiscal_code": "00337460976",
                                         "amount_cents": 1000}]});
    let (s, v) = send(
        "POST",
        &k07,
        "/api/v1/kiosk/kiosks/K07/transactions",
        Some(&bad_notice),
    );
    assert_eq!(s, 400, "{v}");
    assert!(v.to_string().contains("notices[0].notice_number"), "{v}");
    let (s, _) = send(
        "POST",
        &k07,
        "/api/v1/kiosk/kiosks/K08/transactions",
        Some(&cert),
    );
    assert_eq!(s, 403);
    let info = json!({"id": "m-1", "time": "2026-11-02T10:00:00Z", "service": "info",
                      "outcome": "completed", "duration_s": 20.0})
    .to_string();
    crate::mqtt::publish_all(
        &server.mqtt,
        "kiosk-k08-tx",
        Some(&k08),
        &[("devices/kiosk/K08/transactions", info.as_bytes())],
    )
    .expect("K08 publishes its transaction");
    wait_until(
        Duration::from_secs(10),
        "K08's transaction over MQTT",
        || {
            query("SELECT count(*) AS n FROM kiosk_transactions WHERE kiosk_id = 'K08'")[0]["n"]
                == 1
        },
    );
    let rows = query(
        "SELECT kiosk_id, transaction_id, service, kind, method, amount_cents, via \
         FROM kiosk_transactions ORDER BY kiosk_id, transaction_id",
    );
    assert_eq!(
        rows,
        vec![
            json!({"kiosk_id": "K07", "transaction_id": "t-1", "service": "anagrafe-cert",
                   "kind": "certificate", "method": "card", "amount_cents": 52, "via": "http"}),
            json!({"kiosk_id": "K07", "transaction_id": "t-3", "service": "pagopa",
                   "kind": "payment", "method": "contactless", "amount_cents": 2000, "via": "http"}),
            json!({"kiosk_id": "K08", "transaction_id": "m-1", "service": "info",
                   "kind": "information", "method": "none", "amount_cents": 0, "via": "mqtt"}),
        ]
    );
    let refused = query("SELECT kiosk_id, what, via, field FROM kiosk_refused ORDER BY field");
    assert!(
        refused.contains(
            &json!({"kiosk_id": "K07", "what": "transaction", "via": "http",
                                 "field": "notices[0].notice_number"})
        ),
        "{refused:?}"
    );
    assert!(
        refused.iter().any(|r| r["what"] == "heartbeat"
            && r["field"].as_str().unwrap_or("").starts_with("peripherals")),
        "{refused:?}"
    );

    // K07 stops beating: after 2 missed beats of 1 s it is offline, a row and a bus event.
    wait_until(Duration::from_secs(15), "K07 offline", || {
        let (_, v) = send("GET", &operator, "/api/v1/kiosk/kiosks/K07", None);
        v["liveness"]["online"] == false
    });
    wait_until(Duration::from_secs(10), "the offline row", || {
        query(
            "SELECT count(*) AS n FROM kiosk_status_changes \
             WHERE kiosk_id = 'K07' AND change = 'offline' AND NOT online",
        )[0]["n"]
            == 1
    });
    // The bus writes its events table in its own flushes: wait for both.
    let bus_sql = "SELECT \"type\", subject FROM bus_events \
                   WHERE source = '/civiclake/kiosk' ORDER BY seq";
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (s, events) = send(
            "POST",
            &admin,
            "/api/v1/query",
            Some(&json!({"sql": bus_sql})),
        );
        let rows = events.as_array().cloned().unwrap_or_default();
        if s == 200
            && rows.contains(&json!({"type": "it.prato.kiosk.Online", "subject": "K07"}))
            && rows.contains(&json!({"type": "it.prato.kiosk.Offline", "subject": "K07"}))
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for the kiosk's bus events: {events}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // Availability this month: K07 is always open and has been down a few seconds.
    let (s, v) = send("GET", &operator, "/api/v1/kiosk/availability", None);
    assert_eq!(s, 200, "{v}");
    let k07_row = v["kiosks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kiosk"] == "K07")
        .cloned()
        .expect("K07's availability");
    let (open, down) = (
        k07_row["open_minutes"].as_f64().unwrap(),
        k07_row["down_minutes"].as_f64().unwrap(),
    );
    assert!(open > 0.0 && down > 0.0 && down < open, "{v}");
    let a = k07_row["availability"].as_f64().unwrap();
    assert!((a - (1.0 - down / open)).abs() < 1e-9, "{v}");
    let (s, _) = send(
        "GET",
        &operator,
        "/api/v1/kiosk/availability?month=2026-13",
        None,
    );
    assert_eq!(s, 400);
    let (s, _) = send("GET", &k07, "/api/v1/kiosk/availability", None);
    assert_eq!(s, 403, "a device does not read the fleet's availability");

    // Other channels' collections, and the kiosks' share of the month's revenue.
    let (s, v) = send(
        "POST",
        &operator,
        "/api/v1/kiosk/collections",
        Some(
            &json!([{"month": "2026-11", "channel": "psp-online", "amount_cents": 948, "transactions": 3}]),
        ),
    );
    assert_eq!((s, v["rows"].clone()), (201, json!(1)), "{v}");
    let (s, v) = send(
        "POST",
        &operator,
        "/api/v1/kiosk/collections",
        Some(&json!([{"month": "2026-11", "channel": "kiosk", "amount_cents": 1}])),
    );
    assert_eq!(s, 400, "the kiosks' own channel is not imported: {v}");
    let share = query(
        "SELECT kiosk_cents, other_cents, revenue_share FROM kiosk_revenue_share \
         WHERE time = TIMESTAMP '2026-11-01 00:00:00'",
    );
    assert_eq!(share.len(), 1, "{share:?}");
    let text = share[0].to_string();
    assert_eq!(share[0]["kiosk_cents"], 2000, "{text}");
    assert_eq!(share[0]["other_cents"], 948, "{text}");
    let r = share[0]["revenue_share"].as_f64().unwrap();
    assert!((r - 2000.0 / 2948.0).abs() < 1e-9, "{text}");
    let notices = query("SELECT notice_number, amount_cents FROM kiosk_transaction_notices");
    assert_eq!(
        notices,
        vec![json!({"notice_number": "302202400000000111", "amount_cents": 2000})]
    );

    // Retiring K08: kept in the registry, gone from kiosk_current.
    let (s, _) = send("DELETE", &operator, "/api/v1/kiosk/kiosks/K08", None);
    assert_eq!(s, 204);
    let (_, v) = send("GET", &operator, "/api/v1/kiosk/kiosks/K08", None);
    assert_eq!(v["retired"], true, "{v}");
    let current = query("SELECT kiosk_id, host_site FROM kiosk_current ORDER BY kiosk_id");
    assert_eq!(
        current,
        vec![json!({"kiosk_id": "K07", "host_site": "Biblioteca Lazzerini"})]
    );
    let (s, v) = send(
        "POST",
        &k08,
        "/api/v1/kiosk/kiosks/K08/heartbeat",
        Some(&json!({})),
    );
    assert_eq!(s, 400, "a retired kiosk's beat is refused: {v}");
    for view in [
        "kiosk_transactions_hourly",
        "kiosk_transactions_daily",
        "kiosk_revenue_monthly",
        "kiosk_availability_monthly",
        "kiosk_peripheral_faults",
        "kiosk_video_calls",
    ] {
        query(&format!("SELECT * FROM {view} LIMIT 5"));
    }
    let faults = query("SELECT * FROM kiosk_peripheral_faults WHERE kiosk_id = 'K08'");
    assert!(!faults.is_empty(), "K08's printer was not ready");
}
