//! The kiosk siting optimiser through the server and the CLI: inputs imported by a kiosk
//! operator, plans computed, kept as rows, read back as JSON, a map and a page; access
//! control; `civiclake kiosk plan` on the demo city and against the server.

use crate::auth::{last_line, token_cmd};
use crate::server::{TestServer, binary};
use serde_json::{Value, json};
use std::process::Command;

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
