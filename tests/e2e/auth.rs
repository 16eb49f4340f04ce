//! Tokens and roles against the real server: the first admin token made by the command while
//! the server runs, every shipped role against every endpoint, table grants in SQL sessions,
//! masking, write grants and module namespaces, revocation, expiry, signed links.

use crate::server::{TestServer, binary};
use reqwest::blocking::{Client, RequestBuilder};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::process::Command;

/// `civiclake token ...` on `data_dir`; returns stdout.
pub(crate) fn token_cmd(data_dir: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new(binary())
        .arg("token")
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .expect("run civiclake token");
    assert!(
        out.status.success(),
        "civiclake token {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf8")
}

/// The token printed alone on the last line.
pub(crate) fn last_line(stdout: &str) -> String {
    stdout.lines().last().expect("a line").trim().to_string()
}

fn client() -> Client {
    Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(60))
        .build()
        .expect("client")
}

fn with_token(r: RequestBuilder, token: Option<&str>) -> RequestBuilder {
    match token {
        Some(t) => r.bearer_auth(t),
        None => r,
    }
}

fn create_via_api(server: &TestServer, admin: &str, body: Value) -> (String, String) {
    let r = client()
        .post(format!("{}/api/v1/admin/tokens", server.url))
        .bearer_auth(admin)
        .json(&body)
        .send()
        .expect("create token");
    assert_eq!(r.status(), 201, "{body}");
    let v: Value = r.json().expect("json");
    (
        v["token"].as_str().expect("token").to_string(),
        v["id"].as_str().expect("id").to_string(),
    )
}

fn query(server: &TestServer, token: &str, sql: &str) -> (u16, Value) {
    let r = client()
        .post(format!("{}/api/v1/query", server.url))
        .bearer_auth(token)
        .json(&json!({"sql": sql, "format": "json"}))
        .send()
        .expect("query");
    let status = r.status().as_u16();
    (status, r.json().unwrap_or(Value::Null))
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    /// Anyone, even without a token.
    Public,
    /// Only these roles.
    Roles(&'static [&'static str]),
    /// Only these roles get past access control: their answer is the command's own (it may
    /// refuse a repeated command, 4xx), never 401 or 403. For commands that change state
    /// once (a council session convened, an act filed).
    Reaches(&'static [&'static str]),
}

struct Endpoint {
    method: &'static str,
    /// Path as in the OpenAPI document.
    path: &'static str,
    /// Path actually requested.
    url: String,
    body: Option<(&'static str, String)>,
    expect: Expect,
}

const QUERY_ROLES: &[&str] = &[
    "admin",
    "analyst",
    "service",
    "council-secretariat",
    "school-office",
    "kiosk-operator",
    "public",
    "bus-operator",
];
const CATALOG_ROLES: &[&str] = &[
    "admin",
    "analyst",
    "planner",
    "service",
    "council-secretariat",
    "councillor",
    "school-office",
    "kiosk-operator",
    "public",
    "bus-operator",
];
const WRITE_ROLES: &[&str] = &["admin", "gateway"];
/// Operators of the bus.
const BUS_ADMIN: &[&str] = &["admin", "bus-operator"];
/// Operators of the bus and the members of organisation `acme` (which produces
/// [`MATRIX_TYPE`] in the catalog and owns the subscriptions its members create).
const ACME_MEMBERS: &[&str] = &["admin", "bus-operator", "bus-member"];
/// Roles with the publish permission (the schema list is what they publish against).
const PUBLISH_ROLES: &[&str] = &[
    "admin",
    "gateway",
    "kiosk-device",
    "bus-operator",
    "bus-publisher",
    "bus-member",
];
/// Roles whose topic grants cover the source `/acme/billing` (topic `bus/acme/billing`).
const ACME_PUBLISHERS: &[&str] = &["admin", "bus-operator", "bus-publisher", "bus-member"];
/// The event type the matrix publishes (registered before it runs).
pub(crate) const MATRIX_TYPE: &str = "it.acme.invoice.Paid";

/// The schema of [`MATRIX_TYPE`].
pub(crate) fn matrix_schema() -> Value {
    json!({"type": "object", "properties": {"amount": {"type": "number"}}, "required": ["amount"]})
}
const ADMIN: &[&str] = &["admin"];
/// Kiosk operators: compute kiosk plans, import their inputs.
const KIOSK_OPERATORS: &[&str] = &["admin", "kiosk-operator"];
/// Readers of kiosk plans: operators, and query or dashboard roles that reach `kiosk_plans`.
const PLAN_READERS: &[&str] = &["admin", "analyst", "planner", "kiosk-operator"];
/// Readers of the kiosk registry: operators, and query or dashboard roles that reach
/// `kiosk_registry`.
const FLEET_READERS: &[&str] = &["admin", "analyst", "planner", "kiosk-operator"];
/// Who sends for kiosk K07: its own device token (subject K07) and operators.
const K07_SENDERS: &[&str] = &["admin", "kiosk-operator", "kiosk-device"];
/// The council's secretariat.
const SECRETARIAT: &[&str] = &["admin", "council-secretariat"];
/// The secretariat and councillor cc01 (the matrix's councillor token), acting as cc01.
const CC01: &[&str] = &["admin", "council-secretariat", "councillor"];

/// Kiosk `id` as registered (services `info` and `pagopa`).
pub(crate) fn matrix_kiosk(id: &str) -> Value {
    json!({"id": id, "name": format!("Kiosk {id}"), "lon": 11.0966, "lat": 43.8777,
           "opening_hours": {"always": true},
           "peripherals": [{"kind": "card_reader"}, {"kind": "printer"}],
           "services": ["info", "pagopa"]})
}

/// A small plan request with its inputs inline.
fn matrix_plan(save: bool) -> Value {
    json!({"save": save, "p": 1,
           "demand": [{"id": "a", "lon": 11.09, "lat": 43.88, "population": 10, "elderly": 2}],
           "sites": [{"id": "s", "lon": 11.091, "lat": 43.88, "existing": true}]})
}

fn endpoints(victim_token_id: &str, org_token_id: &str) -> Vec<Endpoint> {
    let lp = (
        "text/plain",
        "air_quality,sensor=m1 pm25=1.5 1767225600000000000".to_string(),
    );
    let q = (
        "application/json",
        json!({"sql": "SELECT 1 AS one"}).to_string(),
    );
    let e = |method, path: &'static str, url: &str, body, expect| Endpoint {
        method,
        path,
        url: url.to_string(),
        body,
        expect,
    };
    vec![
        e("GET", "/health", "/health", None, Expect::Public),
        e(
            "GET",
            "/api/v1/openapi.json",
            "/api/v1/openapi.json",
            None,
            Expect::Public,
        ),
        // Web pages: public; what `/` shows depends on the token (home_page_shows_...).
        e("GET", "/", "/", None, Expect::Public),
        e("GET", "/login", "/login", None, Expect::Public),
        e(
            "GET",
            "/static/{name}",
            "/static/style.css",
            None,
            Expect::Public,
        ),
        e(
            "POST",
            "/api/v1/write",
            "/api/v1/write?table=air_quality",
            Some(lp.clone()),
            Expect::Roles(WRITE_ROLES),
        ),
        e(
            "POST",
            "/write",
            "/write?db=city",
            Some(lp),
            Expect::Roles(WRITE_ROLES),
        ),
        e(
            "POST",
            "/api/v1/query",
            "/api/v1/query",
            Some(q),
            Expect::Roles(QUERY_ROLES),
        ),
        e(
            "GET",
            "/api/v1/query",
            "/api/v1/query?sql=SELECT%201",
            None,
            Expect::Roles(QUERY_ROLES),
        ),
        e("GET", "/metrics", "/metrics", None, Expect::Roles(ADMIN)),
        e(
            "GET",
            "/api/v1/tables",
            "/api/v1/tables",
            None,
            Expect::Roles(CATALOG_ROLES),
        ),
        e(
            "POST",
            "/api/v1/admin/flush",
            "/api/v1/admin/flush",
            None,
            Expect::Roles(ADMIN),
        ),
        e(
            "POST",
            "/api/v1/admin/compact",
            "/api/v1/admin/compact",
            None,
            Expect::Roles(ADMIN),
        ),
        e(
            "POST",
            "/api/v1/admin/delete",
            "/api/v1/admin/delete",
            Some((
                "application/json",
                json!({"table": "air_quality", "where": "sensor = 'nobody'"}).to_string(),
            )),
            Expect::Roles(ADMIN),
        ),
        e(
            "GET",
            "/api/v1/admin/tokens",
            "/api/v1/admin/tokens",
            None,
            Expect::Roles(ADMIN),
        ),
        e(
            "POST",
            "/api/v1/admin/tokens",
            "/api/v1/admin/tokens",
            Some(("application/json", json!({"role": "planner"}).to_string())),
            Expect::Roles(ADMIN),
        ),
        e(
            "DELETE",
            "/api/v1/admin/tokens/{id}",
            &format!("/api/v1/admin/tokens/{victim_token_id}"),
            None,
            Expect::Roles(ADMIN),
        ),
        e(
            "GET",
            "/api/v1/admin/roles",
            "/api/v1/admin/roles",
            None,
            Expect::Roles(ADMIN),
        ),
        e(
            "PUT",
            "/api/v1/admin/roles/{name}",
            "/api/v1/admin/roles/monitoring",
            Some((
                "application/json",
                json!({"permissions": ["metrics"], "description": "Prometheus"}).to_string(),
            )),
            Expect::Roles(ADMIN),
        ),
        e(
            "POST",
            "/api/v1/admin/links",
            "/api/v1/admin/links",
            Some((
                "application/json",
                json!({"role": "citizen", "subject": "RSSMRA80A01G999X"}).to_string(),
            )),
            Expect::Roles(ADMIN),
        ),
        e(
            "POST",
            "/api/v1/bus/events",
            "/api/v1/bus/events",
            Some((
                "application/cloudevents+json",
                json!({"specversion": "1.0", "id": format!("m-{victim_token_id}"),
                       "source": "/acme/billing", "type": MATRIX_TYPE, "data": {"amount": 3}})
                .to_string(),
            )),
            Expect::Roles(ACME_PUBLISHERS),
        ),
        e(
            "GET",
            "/api/v1/bus/schemas",
            "/api/v1/bus/schemas",
            None,
            Expect::Roles(PUBLISH_ROLES),
        ),
        e(
            "POST",
            "/api/v1/bus/schemas/{type}",
            &format!("/api/v1/bus/schemas/{MATRIX_TYPE}"),
            Some(("application/json", matrix_schema().to_string())),
            Expect::Roles(ACME_MEMBERS),
        ),
        e(
            "GET",
            "/api/v1/bus/schemas/{type}",
            &format!("/api/v1/bus/schemas/{MATRIX_TYPE}"),
            None,
            Expect::Roles(PUBLISH_ROLES),
        ),
        e(
            "PUT",
            "/api/v1/bus/schemas/{type}/compatibility",
            &format!("/api/v1/bus/schemas/{MATRIX_TYPE}/compatibility"),
            Some((
                "application/json",
                json!({"compatibility": "BACKWARD"}).to_string(),
            )),
            Expect::Roles(ACME_MEMBERS),
        ),
        e(
            "GET",
            "/api/v1/bus/subscriptions",
            "/api/v1/bus/subscriptions",
            None,
            Expect::Roles(ACME_MEMBERS),
        ),
        // Created and deleted under a name of the caller's own, so every caller starts clean.
        e(
            "POST",
            "/api/v1/bus/subscriptions",
            "/api/v1/bus/subscriptions",
            Some((
                "application/json",
                matrix_subscription(&format!("m-{victim_token_id}")).to_string(),
            )),
            Expect::Roles(ACME_MEMBERS),
        ),
        e(
            "DELETE",
            "/api/v1/bus/subscriptions/{name}",
            &format!("/api/v1/bus/subscriptions/m-{victim_token_id}"),
            None,
            Expect::Roles(ACME_MEMBERS),
        ),
        e(
            "GET",
            "/api/v1/bus/subscriptions/{name}",
            "/api/v1/bus/subscriptions/matrix",
            None,
            Expect::Roles(BUS_ADMIN),
        ),
        e(
            "PUT",
            "/api/v1/bus/subscriptions/{name}",
            "/api/v1/bus/subscriptions/matrix",
            Some((
                "application/json",
                matrix_subscription("matrix").to_string(),
            )),
            Expect::Roles(BUS_ADMIN),
        ),
        e(
            "POST",
            "/api/v1/bus/subscriptions/{name}/replay",
            "/api/v1/bus/subscriptions/matrix/replay",
            Some(("application/json", json!({"seq": 1}).to_string())),
            Expect::Roles(BUS_ADMIN),
        ),
        e(
            "GET",
            "/api/v1/bus/subscriptions/{name}/dead-letters",
            "/api/v1/bus/subscriptions/matrix/dead-letters",
            None,
            Expect::Roles(BUS_ADMIN),
        ),
        e(
            "POST",
            "/api/v1/bus/subscriptions/{name}/dead-letters/{seq}/redeliver",
            "/api/v1/bus/subscriptions/matrix/dead-letters/1/redeliver",
            None,
            Expect::Roles(BUS_ADMIN),
        ),
        e(
            "GET",
            "/api/v1/bus/subscriptions/{name}/deliveries",
            "/api/v1/bus/subscriptions/matrix/deliveries",
            None,
            Expect::Roles(BUS_ADMIN),
        ),
        e(
            "GET",
            "/api/v1/bus/catalog",
            "/api/v1/bus/catalog",
            None,
            Expect::Roles(PUBLISH_ROLES),
        ),
        e(
            "GET",
            "/api/v1/bus/organisations/{org}",
            "/api/v1/bus/organisations/acme",
            None,
            Expect::Roles(PUBLISH_ROLES),
        ),
        e(
            "PUT",
            "/api/v1/bus/organisations/{org}",
            "/api/v1/bus/organisations/acme",
            Some(("application/json", matrix_org().to_string())),
            Expect::Roles(ACME_MEMBERS),
        ),
        // A new organisation (bus administrators only), then removed.
        e(
            "PUT",
            "/api/v1/bus/organisations/{org}",
            &format!("/api/v1/bus/organisations/o-{victim_token_id}"),
            Some(("application/json", matrix_org().to_string())),
            Expect::Roles(BUS_ADMIN),
        ),
        e(
            "DELETE",
            "/api/v1/bus/organisations/{org}",
            &format!("/api/v1/bus/organisations/o-{victim_token_id}"),
            None,
            Expect::Roles(BUS_ADMIN),
        ),
        e(
            "POST",
            "/api/v1/bus/organisations/{org}/tokens",
            "/api/v1/bus/organisations/acme/tokens",
            Some(("application/json", json!({"label": "matrix"}).to_string())),
            Expect::Roles(BUS_ADMIN),
        ),
        e(
            "GET",
            "/api/v1/bus/organisations/{org}/tokens",
            "/api/v1/bus/organisations/acme/tokens",
            None,
            Expect::Roles(BUS_ADMIN),
        ),
        e(
            "DELETE",
            "/api/v1/bus/organisations/{org}/tokens/{id}",
            &format!("/api/v1/bus/organisations/acme/tokens/{org_token_id}"),
            None,
            Expect::Roles(BUS_ADMIN),
        ),
        e(
            "GET",
            "/api/v1/bus/organisations/{org}/systems/{system}",
            "/api/v1/bus/organisations/acme/systems/billing",
            None,
            Expect::Roles(PUBLISH_ROLES),
        ),
        e(
            "PUT",
            "/api/v1/bus/organisations/{org}/systems/{system}",
            &format!("/api/v1/bus/organisations/acme/systems/s-{victim_token_id}"),
            Some(("application/json", matrix_system().to_string())),
            Expect::Roles(ACME_MEMBERS),
        ),
        e(
            "DELETE",
            "/api/v1/bus/organisations/{org}/systems/{system}",
            &format!("/api/v1/bus/organisations/acme/systems/s-{victim_token_id}"),
            None,
            Expect::Roles(ACME_MEMBERS),
        ),
        e(
            "GET",
            "/api/v1/bus/organisations/{org}/systems/{system}/endpoints/{endpoint}",
            "/api/v1/bus/organisations/acme/systems/billing/endpoints/api",
            None,
            Expect::Roles(PUBLISH_ROLES),
        ),
        e(
            "GET",
            "/api/v1/bus/organisations/{org}/systems/{system}/endpoints/{endpoint}/document",
            "/api/v1/bus/organisations/acme/systems/billing/endpoints/api/document",
            None,
            Expect::Roles(PUBLISH_ROLES),
        ),
        e(
            "PUT",
            "/api/v1/bus/organisations/{org}/systems/{system}/endpoints/{endpoint}",
            &format!(
                "/api/v1/bus/organisations/acme/systems/billing/endpoints/e-{victim_token_id}"
            ),
            Some(("application/json", matrix_openapi().to_string())),
            Expect::Roles(ACME_MEMBERS),
        ),
        e(
            "DELETE",
            "/api/v1/bus/organisations/{org}/systems/{system}/endpoints/{endpoint}",
            &format!(
                "/api/v1/bus/organisations/acme/systems/billing/endpoints/e-{victim_token_id}"
            ),
            None,
            Expect::Roles(ACME_MEMBERS),
        ),
        e(
            "GET",
            "/api/v1/bus/map",
            "/api/v1/bus/map",
            None,
            Expect::Roles(PUBLISH_ROLES),
        ),
        e(
            "GET",
            "/api/v1/pipelines",
            "/api/v1/pipelines",
            None,
            Expect::Roles(QUERY_ROLES),
        ),
        e(
            "POST",
            "/api/v1/pipelines",
            "/api/v1/pipelines",
            Some((
                "application/json",
                json!({"name": format!("m-{victim_token_id}"), "source": "air_quality",
                       "target": format!("m_{victim_token_id}"),
                       "sql": "SELECT count(*) AS n FROM air_quality",
                       "window": {"kind": "tumbling", "size": "1m"}})
                .to_string(),
            )),
            Expect::Roles(ADMIN),
        ),
        e(
            "DELETE",
            "/api/v1/pipelines/{name}",
            &format!("/api/v1/pipelines/m-{victim_token_id}"),
            None,
            Expect::Roles(ADMIN),
        ),
        e(
            "POST",
            "/api/v1/kiosk/plan",
            "/api/v1/kiosk/plan",
            Some(("application/json", matrix_plan(false).to_string())),
            Expect::Roles(KIOSK_OPERATORS),
        ),
        e(
            "GET",
            "/api/v1/kiosk/plan",
            "/api/v1/kiosk/plan",
            None,
            Expect::Roles(PLAN_READERS),
        ),
        e(
            "GET",
            "/api/v1/kiosk/plans",
            "/api/v1/kiosk/plans",
            None,
            Expect::Roles(PLAN_READERS),
        ),
        e(
            "GET",
            "/api/v1/kiosk/plan/map.svg",
            "/api/v1/kiosk/plan/map.svg",
            None,
            Expect::Roles(PLAN_READERS),
        ),
        e(
            "POST",
            "/api/v1/kiosk/siting/demand",
            "/api/v1/kiosk/siting/demand",
            Some(("application/json", matrix_plan(false)["demand"].to_string())),
            Expect::Roles(KIOSK_OPERATORS),
        ),
        e(
            "POST",
            "/api/v1/kiosk/siting/sites",
            "/api/v1/kiosk/siting/sites",
            Some(("application/json", matrix_plan(false)["sites"].to_string())),
            Expect::Roles(KIOSK_OPERATORS),
        ),
        e(
            "GET",
            "/api/v1/kiosk/kiosks",
            "/api/v1/kiosk/kiosks",
            None,
            Expect::Roles(FLEET_READERS),
        ),
        e(
            "GET",
            "/api/v1/kiosk/kiosks/{id}",
            "/api/v1/kiosk/kiosks/K07",
            None,
            Expect::Roles(FLEET_READERS),
        ),
        e(
            "PUT",
            "/api/v1/kiosk/kiosks/{id}",
            "/api/v1/kiosk/kiosks/K07",
            Some(("application/json", matrix_kiosk("K07").to_string())),
            Expect::Roles(KIOSK_OPERATORS),
        ),
        // Retiring is idempotent: K99 stays retired for the next caller.
        e(
            "DELETE",
            "/api/v1/kiosk/kiosks/{id}",
            "/api/v1/kiosk/kiosks/K99",
            None,
            Expect::Roles(KIOSK_OPERATORS),
        ),
        e(
            "GET",
            "/api/v1/kiosk/services",
            "/api/v1/kiosk/services",
            None,
            Expect::Roles(FLEET_READERS),
        ),
        e(
            "PUT",
            "/api/v1/kiosk/services/{id}",
            "/api/v1/kiosk/services/parking",
            Some((
                "application/json",
                json!({"id": "parking", "name": "Residents' parking permit",
                       "kind": "payment", "needs": ["card_reader"]})
                .to_string(),
            )),
            Expect::Roles(KIOSK_OPERATORS),
        ),
        e(
            "POST",
            "/api/v1/kiosk/kiosks/{id}/heartbeat",
            "/api/v1/kiosk/kiosks/K07/heartbeat",
            Some((
                "application/json",
                json!({"peripherals": {"printer": "online"}}).to_string(),
            )),
            Expect::Roles(K07_SENDERS),
        ),
        // The same transaction id each time: stored once (201), then a retry (200).
        e(
            "POST",
            "/api/v1/kiosk/kiosks/{id}/transactions",
            "/api/v1/kiosk/kiosks/K07/transactions",
            Some((
                "application/json",
                json!({"id": "m-1", "time": "2026-01-05T10:00:00Z", "service": "info",
                       "outcome": "completed", "duration_s": 30})
                .to_string(),
            )),
            Expect::Roles(K07_SENDERS),
        ),
        e(
            "GET",
            "/api/v1/kiosk/availability",
            "/api/v1/kiosk/availability?month=2026-01",
            None,
            Expect::Roles(FLEET_READERS),
        ),
        e(
            "POST",
            "/api/v1/kiosk/collections",
            "/api/v1/kiosk/collections",
            Some((
                "application/json",
                json!([{"month": "2026-01", "channel": "psp-online",
                        "amount_cents": 120000, "transactions": 40}])
                .to_string(),
            )),
            Expect::Roles(KIOSK_OPERATORS),
        ),
        e(
            "GET",
            "/api/v1/alerts",
            "/api/v1/alerts",
            None,
            Expect::Roles(QUERY_ROLES),
        ),
        e(
            "POST",
            "/api/v1/alerts",
            "/api/v1/alerts",
            Some((
                "application/json",
                json!({"name": format!("a-{victim_token_id}"), "kind": "dead_man",
                       "table": "air_quality", "after": "15m"})
                .to_string(),
            )),
            Expect::Roles(ADMIN),
        ),
        e(
            "DELETE",
            "/api/v1/alerts/{name}",
            &format!("/api/v1/alerts/a-{victim_token_id}"),
            None,
            Expect::Roles(ADMIN),
        ),
        e(
            "POST",
            "/api/v1/admin/retention",
            "/api/v1/admin/retention",
            None,
            Expect::Roles(ADMIN),
        ),
        // The council: reads of what is public are public; the secretariat's commands and
        // councillor cc01's (as itself) on the matrix's committee `cm`, acts `m-pub` (filed)
        // and `m-draft` (cc01's draft) and session `sx`.
        e(
            "GET",
            "/api/v1/council/councillors",
            "/api/v1/council/councillors",
            None,
            Expect::Public,
        ),
        e(
            "PUT",
            "/api/v1/council/councillors/{id}",
            "/api/v1/council/councillors/cc02",
            Some(("application/json", matrix_councillor("cc02", 2).to_string())),
            Expect::Roles(SECRETARIAT),
        ),
        e(
            "GET",
            "/api/v1/council/committees",
            "/api/v1/council/committees",
            None,
            Expect::Public,
        ),
        e(
            "PUT",
            "/api/v1/council/committees/{id}",
            "/api/v1/council/committees/cm",
            Some(("application/json", matrix_committee().to_string())),
            Expect::Roles(SECRETARIAT),
        ),
        e(
            "POST",
            "/api/v1/council/committees/{id}/members",
            "/api/v1/council/committees/cm/members",
            Some((
                "application/json",
                json!({"councillor": "cc02", "role": "member", "from": "2024-07-01"}).to_string(),
            )),
            Expect::Reaches(SECRETARIAT),
        ),
        e(
            "POST",
            "/api/v1/council/committees/{id}/members/{councillor}/end",
            "/api/v1/council/committees/cm/members/cc09/end",
            Some(("application/json", json!({"to": "2026-01-01"}).to_string())),
            Expect::Reaches(SECRETARIAT),
        ),
        e(
            "GET",
            "/api/v1/council/settings",
            "/api/v1/council/settings",
            None,
            Expect::Public,
        ),
        e(
            "POST",
            "/api/v1/council/settings/fee-rates",
            "/api/v1/council/settings/fee-rates",
            Some((
                "application/json",
                json!({"committee": "cm", "from": "2024-07-01", "cents": 3600}).to_string(),
            )),
            Expect::Roles(SECRETARIAT),
        ),
        e(
            "PUT",
            "/api/v1/council/settings/fee-policy",
            "/api/v1/council/settings/fee-policy",
            Some((
                "application/json",
                json!({"same_day": "once", "monthly_cap_cents": 175466}).to_string(),
            )),
            Expect::Roles(SECRETARIAT),
        ),
        e(
            "PUT",
            "/api/v1/council/settings/signature-rules",
            "/api/v1/council/settings/signature-rules",
            Some((
                "application/json",
                json!({"minimum": {"motion": 1}}).to_string(),
            )),
            Expect::Roles(SECRETARIAT),
        ),
        e(
            "GET",
            "/api/v1/council/acts",
            "/api/v1/council/acts",
            None,
            Expect::Public,
        ),
        e(
            "POST",
            "/api/v1/council/acts",
            "/api/v1/council/acts",
            Some((
                "application/json",
                json!({"id": "m-new", "kind": "motion", "subject": "Matrice",
              "initiative": "councillors", "first_signer": "cc01"})
                .to_string(),
            )),
            Expect::Reaches(CC01),
        ),
        e(
            "GET",
            "/api/v1/council/acts/{id}",
            "/api/v1/council/acts/m-pub",
            None,
            Expect::Public,
        ),
        e(
            "POST",
            "/api/v1/council/acts/{id}/invitations",
            "/api/v1/council/acts/m-draft/invitations",
            Some((
                "application/json",
                json!({"councillor": "cc02"}).to_string(),
            )),
            Expect::Reaches(CC01),
        ),
        e(
            "POST",
            "/api/v1/council/acts/{id}/signatures",
            "/api/v1/council/acts/m-draft/signatures",
            Some((
                "application/json",
                json!({"councillor": "cc01"}).to_string(),
            )),
            Expect::Reaches(CC01),
        ),
        e(
            "DELETE",
            "/api/v1/council/acts/{id}/signatures/{councillor}",
            "/api/v1/council/acts/m-draft/signatures/cc01",
            None,
            Expect::Reaches(CC01),
        ),
        e(
            "POST",
            "/api/v1/council/acts/{id}/opinions",
            "/api/v1/council/acts/m-draft/opinions",
            Some((
                "application/json",
                json!({"kind": "technical", "favourable": true, "by": "x"}).to_string(),
            )),
            Expect::Reaches(SECRETARIAT),
        ),
        e(
            "POST",
            "/api/v1/council/acts/{id}/steps",
            "/api/v1/council/acts/m-draft/steps",
            Some(("application/json", json!({"to": "WITHDRAWN"}).to_string())),
            Expect::Reaches(CC01),
        ),
        e(
            "GET",
            "/api/v1/council/sessions",
            "/api/v1/council/sessions",
            None,
            Expect::Public,
        ),
        e(
            "POST",
            "/api/v1/council/sessions",
            "/api/v1/council/sessions",
            Some((
                "application/json",
                json!({"id": "sy", "committee": "cm",
              "first_call": "2026-03-02T15:00:00Z", "place": "Sala"})
                .to_string(),
            )),
            Expect::Reaches(SECRETARIAT),
        ),
        e(
            "GET",
            "/api/v1/council/sessions/{id}",
            "/api/v1/council/sessions/sx",
            None,
            Expect::Public,
        ),
        e(
            "POST",
            "/api/v1/council/sessions/{id}/items",
            "/api/v1/council/sessions/sx/items",
            Some((
                "application/json",
                json!({"kind": "hearing", "title": "Audizione"}).to_string(),
            )),
            Expect::Reaches(SECRETARIAT),
        ),
        e(
            "POST",
            "/api/v1/council/sessions/{id}/convene",
            "/api/v1/council/sessions/sx/convene",
            None,
            Expect::Reaches(SECRETARIAT),
        ),
        e(
            "POST",
            "/api/v1/council/sessions/{id}/attendance",
            "/api/v1/council/sessions/sx/attendance",
            Some((
                "application/json",
                json!({"councillor": "cc01", "presence": "present", "mode": "physical"})
                    .to_string(),
            )),
            Expect::Reaches(SECRETARIAT),
        ),
        e(
            "POST",
            "/api/v1/council/sessions/{id}/votes",
            "/api/v1/council/sessions/sx/votes",
            Some((
                "application/json",
                json!({"item": 1, "kind": "open", "present": 1, "yes": 1, "no": 0, "abstained": 0})
                    .to_string(),
            )),
            Expect::Reaches(SECRETARIAT),
        ),
        e(
            "POST",
            "/api/v1/council/sessions/{id}/media",
            "/api/v1/council/sessions/sx/media",
            Some((
                "application/json",
                json!({"kind": "recording", "url": "https://media.example/sx"}).to_string(),
            )),
            Expect::Reaches(SECRETARIAT),
        ),
        e(
            "POST",
            "/api/v1/council/sessions/{id}/items/{item}/outcome",
            "/api/v1/council/sessions/sx/items/1/outcome",
            Some((
                "application/json",
                json!({"outcome": "DISCUSSED"}).to_string(),
            )),
            Expect::Reaches(SECRETARIAT),
        ),
        e(
            "POST",
            "/api/v1/council/sessions/{id}/held",
            "/api/v1/council/sessions/sx/held",
            Some((
                "application/json",
                json!({"started": "2026-03-02T15:00:00Z", "ended": "2026-03-02T16:00:00Z"})
                    .to_string(),
            )),
            Expect::Reaches(SECRETARIAT),
        ),
        e(
            "POST",
            "/api/v1/council/sessions/{id}/cancel",
            "/api/v1/council/sessions/sz/cancel",
            Some(("application/json", json!({"reason": "matrice"}).to_string())),
            Expect::Reaches(SECRETARIAT),
        ),
        e(
            "GET",
            "/api/v1/council/fees",
            "/api/v1/council/fees",
            None,
            Expect::Roles(CC01),
        ),
        e(
            "GET",
            "/api/v1/council/ocd/bills",
            "/api/v1/council/ocd/bills",
            None,
            Expect::Public,
        ),
        e(
            "GET",
            "/api/v1/council/ocd/bills/{id}",
            "/api/v1/council/ocd/bills/m-pub",
            None,
            Expect::Public,
        ),
        e(
            "GET",
            "/api/v1/council/ocd/events",
            "/api/v1/council/ocd/events",
            None,
            Expect::Public,
        ),
        e(
            "GET",
            "/api/v1/council/ocd/votes",
            "/api/v1/council/ocd/votes",
            None,
            Expect::Public,
        ),
        e(
            "GET",
            "/api/v1/council/ocd/people",
            "/api/v1/council/ocd/people",
            None,
            Expect::Public,
        ),
        e(
            "GET",
            "/api/v1/council/ocd/organizations",
            "/api/v1/council/ocd/organizations",
            None,
            Expect::Public,
        ),
    ]
}

/// Councillor `id` of the matrix (`n` makes its fiscal code).
fn matrix_councillor(id: &str, n: u32) -> Value {
    let first15 = format!("RSSMRA80A{:02}G999", n);
    let check = civiclake_pa::compute_check_char(&first15).expect("a check character");
    json!({"id": id, "name": format!("Consigliere {id}"), "fiscal_code": format!("{first15}{check}"),
           "group": "Gruppo misto", "term": "2024-2029", "from": "2024-06-24"})
}

/// Committee `cm` of the matrix.
fn matrix_committee() -> Value {
    json!({"id": "cm", "name": "Matrice", "kind": "permanent", "term": "2024-2029", "from": "2024-07-01"})
}

/// Organisation `acme` of the matrix.
fn matrix_org() -> Value {
    json!({"name": "Acme S.p.A.", "kind": "operator",
           "contacts": [{"name": "Help desk", "email": "help@acme.example"}]})
}

/// System `billing` of `acme`, which produces the matrix's type.
fn matrix_system() -> Value {
    json!({"name": "Billing", "owner": "Acme IT", "produces": [MATRIX_TYPE]})
}

/// The OpenAPI document of the matrix's endpoints.
fn matrix_openapi() -> Value {
    json!({"openapi": "3.0.3", "info": {"title": "Billing", "version": "1"},
           "paths": {"/invoices": {"get": {"operationId": "listInvoices"}}}})
}

/// A paused subscription the matrix creates, changes and replays (it delivers nothing).
fn matrix_subscription(name: &str) -> Value {
    json!({"name": name, "paused": true,
           "target": {"kind": "webhook", "url": "http://127.0.0.1:9/hook"}})
}

/// Endpoints tested on their own below rather than in the matrix, with the reason.
const TESTED_APART: &[(&str, &str)] = &[
    (
        "GET /auth/link",
        "public by design: a signed link is its own credential (see signed_links_...)",
    ),
    (
        "GET /api/v1/pipelines/{name}",
        "a query token sees a pipeline only if it reaches its tables (see pipelines::...)",
    ),
    (
        "GET /api/v1/alerts/{name}",
        "a query token sees a rule only if it reaches its table (see pipelines::...)",
    ),
];

const ROLES: [&str; 17] = [
    "admin",
    "analyst",
    "planner",
    "gateway",
    "service",
    "council-secretariat",
    "councillor",
    "school-office",
    "school-staff",
    "kiosk-operator",
    "kiosk-device",
    "guardian",
    "citizen",
    "public",
    "bus-operator",
    "bus-publisher",
    "bus-member",
];

#[test]
fn every_role_against_every_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_secure(dir.path(), &[]);
    // The first admin token of a new install: made by the command while the server runs,
    // accepted at once.
    let out = token_cmd(
        dir.path(),
        &["create", "--role", "admin", "--label", "first"],
    );
    let admin = last_line(&out);
    assert!(admin.starts_with("clk_"), "{out}");
    let r = client()
        .get(format!("{}/api/v1/tables", server.url))
        .bearer_auth(&admin)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);

    let mut tokens: BTreeMap<&str, String> = BTreeMap::new();
    for role in ROLES {
        let body = match role {
            "gateway" => json!({"role": role, "tables": ["air_quality"]}),
            "service" => json!({"role": role, "tables": ["air_*"]}),
            "bus-publisher" => json!({"role": role, "topics": ["bus/acme/#"]}),
            "kiosk-device" => json!({"role": role, "subject": "K07"}),
            "councillor" => json!({"role": role, "subject": "cc01"}),
            "bus-member" => json!({"role": role, "org": "acme", "topics": ["bus/acme/#"]}),
            _ => json!({"role": role}),
        };
        tokens.insert(role, create_via_api(&server, &admin, body).0);
    }
    // The bus endpoints need a schema, an event at seq 1 and the subscription `matrix`.
    let setup = |path: &str, ct: &str, body: Value| {
        let r = client()
            .post(format!("{}{path}", server.url))
            .bearer_auth(&admin)
            .header("content-type", ct)
            .body(body.to_string())
            .send()
            .unwrap();
        assert!(
            r.status().is_success(),
            "{path}: {}",
            r.text().unwrap_or_default()
        );
    };
    setup(
        &format!("/api/v1/bus/schemas/{MATRIX_TYPE}"),
        "application/json",
        matrix_schema(),
    );
    setup(
        "/api/v1/bus/events",
        "application/cloudevents+json",
        json!({"specversion": "1.0", "id": "first", "source": "/acme/billing",
               "type": MATRIX_TYPE, "data": {"amount": 1}}),
    );
    setup(
        "/api/v1/bus/subscriptions",
        "application/json",
        matrix_subscription("matrix"),
    );
    // The catalog: organisation acme, its system billing and that system's endpoint api.
    for (path, body) in [
        ("/api/v1/bus/organisations/acme", matrix_org()),
        (
            "/api/v1/bus/organisations/acme/systems/billing",
            matrix_system(),
        ),
        (
            "/api/v1/bus/organisations/acme/systems/billing/endpoints/api",
            matrix_openapi(),
        ),
    ] {
        let r = client()
            .put(format!("{}{path}", server.url))
            .bearer_auth(&admin)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .unwrap();
        assert_eq!(r.status(), 201, "{path}: {}", r.text().unwrap_or_default());
    }

    // A kept kiosk plan for the readers.
    let r = client()
        .post(format!("{}/api/v1/kiosk/plan", server.url))
        .bearer_auth(&admin)
        .json(&matrix_plan(true))
        .send()
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().unwrap_or_default());

    // The kiosks the fleet's endpoints are probed on.
    for id in ["K07", "K99"] {
        let r = client()
            .put(format!("{}/api/v1/kiosk/kiosks/{id}", server.url))
            .bearer_auth(&admin)
            .json(&matrix_kiosk(id))
            .send()
            .unwrap();
        assert_eq!(r.status(), 201, "{}", r.text().unwrap_or_default());
    }

    // The council's: councillors cc01 and cc02, committee cm with cc01 seated, the filed
    // motion m-pub and the draft m-draft (both cc01's), the public sessions sx and sz.
    let council = |method: &str, path: &str, body: Value| {
        let url = format!("{}/api/v1/council{path}", server.url);
        let req = if method == "PUT" {
            client().put(url)
        } else {
            client().post(url)
        };
        let r = req.bearer_auth(&admin).json(&body).send().unwrap();
        assert!(
            r.status().is_success(),
            "{path}: {}",
            r.text().unwrap_or_default()
        );
    };
    council("PUT", "/councillors/cc01", matrix_councillor("cc01", 1));
    council("PUT", "/councillors/cc02", matrix_councillor("cc02", 2));
    council("PUT", "/committees/cm", matrix_committee());
    council(
        "POST",
        "/committees/cm/members",
        json!({"councillor": "cc01", "role": "president", "from": "2024-07-01"}),
    );
    for id in ["m-pub", "m-draft"] {
        council(
            "POST",
            "/acts",
            json!({"id": id, "kind": "motion", "subject": "Matrice",
            "initiative": "councillors", "first_signer": "cc01"}),
        );
    }
    council("POST", "/acts/m-pub/steps", json!({"to": "FILED"}));
    for id in ["sx", "sz"] {
        council(
            "POST",
            "/sessions",
            json!({"id": id, "committee": "cm",
            "first_call": "2026-03-02T15:00:00Z", "place": "Sala"}),
        );
    }

    // Every endpoint of the OpenAPI document is in the matrix (or tested apart).
    let api: Value = client()
        .get(format!("{}/api/v1/openapi.json", server.url))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let probe = endpoints("x", "y");
    for (path, item) in api["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("methods").keys() {
            let m = method.to_uppercase();
            let known = probe.iter().any(|e| e.method == m && e.path == path)
                || TESTED_APART
                    .iter()
                    .any(|(k, _)| *k == format!("{m} {path}"));
            assert!(known, "{m} {path} is not in the access matrix: add it");
        }
    }

    let mut failures = Vec::new();
    let mut checked = 0;
    let who: Vec<(&str, Option<&str>)> = std::iter::once(("anonymous", None))
        .chain(ROLES.iter().map(|r| (*r, Some(tokens[r].as_str()))))
        .collect();
    for (name, token) in who {
        // A fresh token to revoke for each caller, so a successful DELETE does not change
        // what the next caller sees.
        let (_, victim) = create_via_api(&server, &admin, json!({"role": "planner"}));
        let (_, org_victim) = create_via_api(
            &server,
            &admin,
            json!({"role": "bus-member", "org": "acme", "topics": ["bus/acme/#"]}),
        );
        for ep in endpoints(&victim, &org_victim) {
            let url = format!("{}{}", server.url, ep.url);
            let c = client();
            let mut req = match ep.method {
                "GET" => c.get(&url),
                "POST" => c.post(&url),
                "PUT" => c.put(&url),
                "DELETE" => c.delete(&url),
                other => panic!("method {other}"),
            };
            if let Some((ct, body)) = &ep.body {
                req = req.header("content-type", *ct).body(body.clone());
            }
            let status = with_token(req, token).send().unwrap().status().as_u16();
            let (allowed, reaches) = match ep.expect {
                Expect::Public => (true, false),
                Expect::Roles(roles) => (roles.contains(&name), false),
                Expect::Reaches(roles) => (roles.contains(&name), true),
            };
            let ok = if allowed && reaches {
                status != 401 && status != 403
            } else if allowed {
                status < 400
            } else if token.is_none() {
                status == 401
            } else {
                status == 403
            };
            checked += 1;
            if !ok {
                failures.push(format!(
                    "{name} {} {}: got {status}, expected {}",
                    ep.method,
                    ep.url,
                    if allowed && reaches {
                        "not 401/403"
                    } else if allowed {
                        "2xx/3xx"
                    } else if token.is_none() {
                        "401"
                    } else {
                        "403"
                    }
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "access matrix:\n{}",
        failures.join("\n")
    );
    assert_eq!(checked, (ROLES.len() + 1) * endpoints("x", "y").len());
}

#[test]
fn table_grants_shape_the_sql_catalog() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_secure(dir.path(), &[]);
    let admin = last_line(&token_cmd(dir.path(), &["create", "--role", "admin"]));
    let write = |table: &str, body: &str| {
        let r = client()
            .post(format!("{}/api/v1/write?table={table}", server.url))
            .bearer_auth(&admin)
            .header("content-type", "text/plain")
            .body(body.to_string())
            .send()
            .unwrap();
        assert_eq!(r.status(), 204, "{}", r.text().unwrap_or_default());
    };
    write(
        "air_quality",
        "air_quality,sensor=a1 pm25=10.5,email=\"mario@example.org\" 1767225600000000000\n\
         air_quality,sensor=a2 pm25=20.5,email=\"anna@example.org\" 1767225601000000000",
    );
    write("noise", "noise,sensor=n1 laeq=55.0 1767225600000000000");
    let analyst = last_line(&token_cmd(
        dir.path(),
        &[
            "create",
            "--role",
            "analyst",
            "--tables",
            "air_*",
            "--expires",
            "90d",
        ],
    ));

    let (s, v) = query(&server, &analyst, "SELECT count(*) AS n FROM air_quality");
    assert_eq!(s, 200, "{v}");
    assert_eq!(v[0]["n"], 2);
    // Personal data masked for the analyst, visible to the admin.
    let (_, v) = query(
        &server,
        &analyst,
        "SELECT email FROM air_quality ORDER BY sensor",
    );
    assert_eq!(v[0]["email"], "***");
    let (_, v) = query(
        &server,
        &admin,
        "SELECT email FROM air_quality ORDER BY sensor",
    );
    assert_eq!(v[0]["email"], "mario@example.org");
    // Filters on masked columns see the masked value, not the real one.
    let (_, v) = query(
        &server,
        &analyst,
        "SELECT count(*) AS n FROM air_quality WHERE email = 'mario@example.org'",
    );
    assert_eq!(v[0]["n"], 0);

    for sql in [
        "SELECT * FROM noise",
        "SELECT * FROM datafusion.public.noise",
        "SELECT a.sensor FROM air_quality a JOIN noise n ON a.sensor = n.sensor",
        "SELECT * FROM air_quality WHERE sensor IN (SELECT sensor FROM noise)",
        "WITH x AS (SELECT * FROM noise) SELECT * FROM x",
    ] {
        let (s, v) = query(&server, &analyst, sql);
        assert!((400..500).contains(&s), "{sql}: {s} {v}");
        assert!(
            v["error"].as_str().unwrap_or("").contains("noise"),
            "{sql}: {v}"
        );
    }
    let (s, v) = query(
        &server,
        &analyst,
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1",
    );
    assert_eq!(s, 200);
    assert_eq!(v, json!([{"table_name": "air_quality"}]));
    let (_, v) = query(
        &server,
        &analyst,
        "SELECT DISTINCT table_name FROM information_schema.columns WHERE table_schema = 'public'",
    );
    assert_eq!(v, json!([{"table_name": "air_quality"}]));
    let (_, v) = query(
        &server,
        &admin,
        "SELECT count(*) AS n FROM information_schema.tables \
         WHERE table_schema = 'public' AND table_name NOT LIKE 'kiosk%' \
         AND table_name NOT LIKE 'council%'",
    );
    // The admin sees both tables, the `_checkpoints` and `_dead_letters` system tables, the
    // school's and the bus's events tables, the bus's log, deliveries and dead letters, and
    // its two views (bus_flow, bus_route_stats).
    assert_eq!(v[0]["n"], 11);
    // And the council's tables and views, and its events table.
    let (_, v) = query(
        &server,
        &admin,
        "SELECT count(*) AS n FROM information_schema.tables \
         WHERE table_schema = 'public' AND table_name LIKE 'council%'",
    );
    let council = civiclake_council::tables::tables().len()
        + civiclake_council::tables::views().expect("views").len();
    assert_eq!(v[0]["n"], council + 1);
    // And the kiosk fleet's tables and views, every one of them.
    let (_, v) = query(
        &server,
        &admin,
        "SELECT count(*) AS n FROM information_schema.tables \
         WHERE table_schema = 'public' AND table_name LIKE 'kiosk%'",
    );
    let fleet = civiclake_kiosk::fleet::tables::tables().len()
        + civiclake_kiosk::fleet::tables::views().len();
    // The fleet's relations and the module's events table.
    assert_eq!(v[0]["n"], fleet + 1);
    // Read-only: no DDL, DML or statements.
    for sql in [
        "CREATE VIEW v AS SELECT * FROM air_quality",
        "CREATE TABLE t AS SELECT 1",
        "INSERT INTO air_quality VALUES (1)",
        "SET datafusion.execution.batch_size = 1",
        "COPY air_quality TO '/tmp/civiclake-leak.csv'",
        "DELETE FROM air_quality WHERE sensor = 'a1'",
        "DELETE FROM air_quality WHERE true",
    ] {
        let (s, v) = query(&server, &analyst, sql);
        assert!((400..500).contains(&s), "{sql}: {s} {v}");
    }
    let (_, v) = query(&server, &admin, "SELECT count(*) AS n FROM air_quality");
    assert_eq!(v[0]["n"], 2, "a refused DELETE deletes nothing");
    // Table functions work but reach no table.
    let (s, v) = query(
        &server,
        &analyst,
        "SELECT count(*) AS n FROM generate_series(1, 3)",
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(v[0]["n"], 3);
    // The catalog endpoint shows the granted tables only.
    let tables: Value = client()
        .get(format!("{}/api/v1/tables", server.url))
        .bearer_auth(&analyst)
        .send()
        .unwrap()
        .json()
        .unwrap();
    let names: Vec<&str> = tables
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["air_quality"]);

    // An erasure request: the admin's SQL DELETE removes the rows from the buffer and from
    // the Parquet files on disk at once, and answers the count.
    let flushed = client()
        .post(format!("{}/api/v1/admin/flush", server.url))
        .bearer_auth(&admin)
        .send()
        .unwrap();
    assert_eq!(flushed.status(), 200);
    write(
        "air_quality",
        "air_quality,sensor=a3 pm25=1.5,email=\"mario@example.org\" 1767225602000000000",
    );
    let table_dir = dir.path().join("tables/air_quality");
    let files_before = parquet_files(&table_dir);
    assert_eq!(files_before.len(), 1);
    assert_eq!(emails_on_disk(&table_dir).len(), 2);
    // Not through a GET: a GET must not change data.
    let r = client()
        .get(format!("{}/api/v1/query", server.url))
        .query(&[(
            "sql",
            "DELETE FROM air_quality WHERE email = 'mario@example.org'",
        )])
        .bearer_auth(&admin)
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().unwrap();
    assert!(
        v["error"].as_str().unwrap().contains("POST /api/v1/query"),
        "{v}"
    );
    let (s, v) = query(
        &server,
        &admin,
        "DELETE FROM air_quality WHERE email = 'mario@example.org'",
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(v, json!([{"count": 2}]));
    let (_, v) = query(&server, &admin, "SELECT sensor, email FROM air_quality");
    assert_eq!(v, json!([{"sensor": "a2", "email": "anna@example.org"}]));
    assert!(!files_before[0].exists(), "the old file is deleted");
    assert_eq!(emails_on_disk(&table_dir), ["anna@example.org"]);
    let (s, v) = query(&server, &admin, "DELETE FROM air_quality");
    assert_eq!(s, 400, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("DELETE FROM air_quality WHERE true"),
        "{v}"
    );
    let (s, v) = query(&server, &admin, "DELETE FROM nowhere WHERE sensor = 'a'");
    assert_eq!(s, 404, "{v}");
}

/// The Parquet files under `dir`, recursively.
fn parquet_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten() {
        let path = e.expect("directory entry").path();
        if path.is_dir() {
            out.extend(parquet_files(&path));
        } else if path.extension().is_some_and(|x| x == "parquet") {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// Every `email` value stored in the Parquet files under `dir` (read with the Parquet
/// reader: the pages are compressed), sorted.
fn emails_on_disk(dir: &std::path::Path) -> Vec<String> {
    use arrow::array::AsArray;
    let mut out = Vec::new();
    for path in parquet_files(dir) {
        let file = std::fs::File::open(&path).expect("open a Parquet file");
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .and_then(|b| b.build())
            .expect("a Parquet reader");
        for batch in reader {
            let batch = batch.expect("a Parquet batch");
            let emails = batch
                .column_by_name("email")
                .expect("an email column")
                .as_string::<i32>();
            out.extend(emails.iter().flatten().map(str::to_string));
        }
    }
    out.sort();
    out
}

#[test]
fn write_grants_namespaces_revocation_expiry_and_last_use() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = TestServer::start_secure(dir.path(), &[]);
    let admin = last_line(&token_cmd(dir.path(), &["create", "--role", "admin"]));
    let out = token_cmd(
        dir.path(),
        &[
            "create",
            "--role",
            "gateway",
            "--tables",
            "air_quality",
            "--label",
            "gw-7",
        ],
    );
    let gateway = last_line(&out);
    let gateway_id = out
        .lines()
        .find_map(|l| l.strip_prefix("id:"))
        .unwrap()
        .trim()
        .to_string();
    let post = |token: &str, table: &str| {
        let r = client()
            .post(format!("{}/api/v1/write?table={table}", server.url))
            .bearer_auth(token)
            .header("content-type", "text/plain")
            .body(format!("{table},sensor=g1 v=1.0 1767225600000000000"))
            .send()
            .unwrap();
        let status = r.status().as_u16();
        (status, r.text().unwrap_or_default())
    };
    assert_eq!(post(&gateway, "air_quality").0, 204);
    let (s, body) = post(&gateway, "noise");
    assert_eq!(s, 403);
    assert!(body.contains("may not write table noise"), "{body}");
    // Module tables: refused for everyone, the admin too, with the reason.
    for token in [&gateway, &admin] {
        let (s, body) = post(token, "council_votes");
        assert_eq!(s, 403);
        assert!(body.contains("belongs to the council module"), "{body}");
        let (s, body) = post(token, "_checkpoints");
        assert_eq!(s, 403);
        assert!(body.contains("system table"), "{body}");
    }
    // A measurement naming another table inside the payload is checked too.
    let r = client()
        .post(format!("{}/write?db=x", server.url))
        .bearer_auth(&gateway)
        .body("air_quality,sensor=g1 v=2.0 1767225600000000000\nkiosk_state,k=1 up=1i 1767225600000000000")
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);
    let (_, v) = query(&server, &admin, "SELECT count(*) AS n FROM air_quality");
    assert_eq!(v[0]["n"], 1, "a refused payload writes nothing");

    // Missing, malformed and unknown tokens: 401 with a reason and a challenge.
    let r = client()
        .get(format!("{}/api/v1/tables", server.url))
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().get("www-authenticate").is_some());
    assert!(r.text().unwrap().contains("civiclake token create"));
    let r = client()
        .get(format!("{}/api/v1/tables", server.url))
        .bearer_auth("clk_000000000000_nope")
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);

    // Revoked through the API: refused at once.
    let r = client()
        .delete(format!("{}/api/v1/admin/tokens/{gateway_id}", server.url))
        .bearer_auth(&admin)
        .send()
        .unwrap();
    assert_eq!(r.status(), 204);
    let (s, body) = post(&gateway, "air_quality");
    assert_eq!(s, 401);
    assert!(body.contains("revoked"), "{body}");
    // Revoked by the command beside the running server: refused within a second or two.
    let out = token_cmd(dir.path(), &["create", "--role", "analyst"]);
    let analyst = last_line(&out);
    let analyst_id = out
        .lines()
        .find_map(|l| l.strip_prefix("id:"))
        .unwrap()
        .trim()
        .to_string();
    assert_eq!(query(&server, &analyst, "SELECT 1").0, 200);
    token_cmd(dir.path(), &["revoke", &analyst_id]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (s, _) = query(&server, &analyst, "SELECT 1");
        if s == 401 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "revocation by the command not seen"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }

    // Expiry.
    let short = last_line(&token_cmd(
        dir.path(),
        &["create", "--role", "analyst", "--expires", "1s"],
    ));
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let (s, v) = query(&server, &short, "SELECT 1");
    assert_eq!(s, 401);
    assert!(v["error"].as_str().unwrap().contains("expired"), "{v}");

    // Tokens are listed without secrets; last use is written at shutdown at the latest.
    let r: Value = client()
        .get(format!("{}/api/v1/admin/tokens", server.url))
        .bearer_auth(&admin)
        .send()
        .unwrap()
        .json()
        .unwrap();
    let text = r.to_string();
    assert!(!text.contains(admin[4..].split_once('_').unwrap().1));
    let status = server.terminate();
    assert!(status.success());
    let listed = token_cmd(dir.path(), &["list"]);
    let gw_line = listed.lines().find(|l| l.starts_with(&gateway_id)).unwrap();
    assert!(gw_line.contains("(revoked)"), "{listed}");
    assert!(gw_line.contains("gw-7"), "{listed}");
    assert!(
        !gw_line.contains("  -  "),
        "the gateway's last use should be recorded: {listed}"
    );
}

#[test]
fn signed_links_give_citizens_a_scoped_session_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_secure(dir.path(), &[]);
    // Signed by the command, opened on the server.
    let url = last_line(&token_cmd(
        dir.path(),
        &[
            "link",
            "--role",
            "guardian",
            "--subject",
            "RSSMRA80A01G999X",
            "--base-url",
            &server.url,
        ],
    ));
    assert!(
        url.starts_with(&format!("{}/auth/link?t=", server.url)),
        "{url}"
    );
    let r = client().get(&url).send().unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/");
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().unwrap().to_string();
    // The session is a guardian: known (not 401) but without SQL (403).
    let r = client()
        .post(format!("{}/api/v1/query", server.url))
        .header("cookie", &pair)
        .json(&json!({"sql": "SELECT 1"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.text().unwrap().contains("role guardian"));
    // Once only; forged links fail.
    let r = client().get(&url).send().unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.text().unwrap().contains("already used"));
    let r = client()
        .get(format!("{}/auth/link?t=abc.def", server.url))
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);
    // Admin links are refused.
    let out = Command::new(binary())
        .args([
            "token",
            "link",
            "--role",
            "admin",
            "--subject",
            "X",
            "--data-dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("admin permission"));
}

#[test]
fn auth_can_only_be_turned_off_on_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(binary())
        .args([
            "serve",
            "--insecure-no-auth",
            "--http-addr",
            "0.0.0.0:0",
            "--data-dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("only allowed on a loopback address"), "{err}");
}

#[test]
fn home_page_shows_only_what_the_token_reaches() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_secure(dir.path(), &[]);
    let admin = last_line(&token_cmd(dir.path(), &["create", "--role", "admin"]));
    for (table, line) in [
        (
            "air_quality",
            "air_quality,sensor=a1 pm25=1.0 1767225600000000000",
        ),
        ("noise", "noise,sensor=n1 laeq=50.0 1767225600000000000"),
    ] {
        let r = client()
            .post(format!("{}/api/v1/write?table={table}", server.url))
            .bearer_auth(&admin)
            .body(line)
            .send()
            .unwrap();
        assert_eq!(r.status(), 204);
    }
    let page = |cookie: Option<&str>| {
        let mut r = client().get(format!("{}/", server.url));
        if let Some(c) = cookie {
            r = r.header("cookie", format!("civiclake_token={c}"));
        }
        let r = r.send().unwrap();
        assert_eq!(r.status(), 200);
        r.text().unwrap()
    };
    let anonymous = page(None);
    assert!(
        anonymous.contains("Sign in to see the tables"),
        "{anonymous}"
    );
    assert!(!anonymous.contains("data-table=\"noise\""));
    assert!(!anonymous.contains("data-table=\"air_quality\""));
    let analyst = last_line(&token_cmd(
        dir.path(),
        &["create", "--role", "analyst", "--tables", "air_*"],
    ));
    let seen = page(Some(&analyst));
    assert!(seen.contains("data-table=\"air_quality\""), "{seen}");
    assert!(!seen.contains("data-table=\"noise\""), "{seen}");
    let all = page(Some(&admin));
    assert!(all.contains("data-table=\"noise\"") && all.contains("data-table=\"air_quality\""));
    let guardian = last_line(&token_cmd(
        dir.path(),
        &[
            "create",
            "--role",
            "guardian",
            "--subject",
            "RSSMRA80A01G999X",
        ],
    ));
    let none = page(Some(&guardian));
    assert!(none.contains("No tables for your role"), "{none}");
    assert!(!none.contains("data-table="));
    // A revoked or unknown cookie is the same as none.
    let stale = page(Some("clk_000000000000_stale"));
    assert!(stale.contains("Sign in to see the tables"));
}
