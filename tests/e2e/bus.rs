//! The interoperability bus against the real server: the schema registry, publishing over
//! HTTP and MQTT, delivery to a webhook with retries, dead letters, replay and redelivery,
//! and `kill -9` in the middle of deliveries (at least once, nothing lost).

use crate::server::{TestServer, wait_until};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the test webhook received: one entry per request.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    pub(crate) key: String,
    pub(crate) attempt: u32,
    pub(crate) replay: Option<String>,
    pub(crate) event: Value,
}

/// A webhook receiver on a loopback port: records every request; answers 400 to events whose
/// data has `"poison": true` while `reject_poison` is set, 503 to the first `fail_first`
/// other requests, 204 otherwise.
pub(crate) struct Receiver {
    pub(crate) url: String,
    got: Arc<Mutex<Vec<Received>>>,
    fail_first: Arc<AtomicUsize>,
    reject_poison: Arc<std::sync::atomic::AtomicBool>,
    _runtime: tokio::runtime::Runtime,
}

impl Receiver {
    pub(crate) fn start() -> Self {
        use axum::http::{HeaderMap, StatusCode};
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("test receiver");
        let got: Arc<Mutex<Vec<Received>>> = Arc::default();
        let fail_first = Arc::new(AtomicUsize::new(0));
        let reject_poison = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("test receiver");
        let url = format!(
            "http://{}/hook",
            listener.local_addr().expect("test receiver")
        );
        let (g, f, r) = (got.clone(), fail_first.clone(), reject_poison.clone());
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: String| {
                let (g, f, r) = (g.clone(), f.clone(), r.clone());
                async move {
                    let h = |n: &str| {
                        headers
                            .get(n)
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_string)
                    };
                    let event: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                    g.lock().expect("test receiver").push(Received {
                        key: h("idempotency-key").unwrap_or_default(),
                        attempt: h("civiclake-attempt")
                            .and_then(|a| a.parse().ok())
                            .unwrap_or(0),
                        replay: h("civiclake-replay"),
                        event: event.clone(),
                    });
                    if r.load(Ordering::SeqCst) && event["data"]["poison"] == json!(true) {
                        return (StatusCode::BAD_REQUEST, "cannot take this invoice");
                    }
                    if f.load(Ordering::SeqCst) > 0 {
                        f.fetch_sub(1, Ordering::SeqCst);
                        return (StatusCode::SERVICE_UNAVAILABLE, "busy");
                    }
                    (StatusCode::NO_CONTENT, "")
                }
            }),
        );
        runtime.spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            url,
            got,
            fail_first,
            reject_poison,
            _runtime: runtime,
        }
    }

    pub(crate) fn received(&self) -> Vec<Received> {
        self.got.lock().expect("test receiver").clone()
    }
}

fn client() -> reqwest::blocking::Client {
    TestServer::client()
}

pub(crate) fn post_json(server: &TestServer, path: &str, body: &Value) -> (u16, Value) {
    let r = client()
        .post(format!("{}{path}", server.url))
        .json(body)
        .send()
        .expect("test receiver");
    let status = r.status().as_u16();
    (status, r.json().unwrap_or(Value::Null))
}

fn publish(server: &TestServer, events: &[Value]) -> (u16, Value) {
    let r = client()
        .post(format!("{}/api/v1/bus/events", server.url))
        .header("content-type", "application/cloudevents-batch+json")
        .body(Value::Array(events.to_vec()).to_string())
        .send()
        .expect("test receiver");
    let status = r.status().as_u16();
    (status, r.json().unwrap_or(Value::Null))
}

pub(crate) const INVOICE: &str = "it.acme.invoice.Paid";

pub(crate) fn invoice_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "amount": {"type": "number"},
            "customer": {"type": "string"},
            "poison": {"type": "boolean"}
        },
        "required": ["amount", "customer"]
    })
}

fn invoice(id: &str, customer: &str, amount: f64) -> Value {
    json!({"specversion": "1.0", "id": id, "source": "/acme/billing", "type": INVOICE,
           "subject": format!("invoice/{id}"), "partitionkey": customer,
           "data": {"amount": amount, "customer": customer}})
}

#[test]
fn the_schema_registry_checks_versions_and_every_published_event() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), &[]);
    let path = format!("/api/v1/bus/schemas/{INVOICE}");
    let (s, v) = post_json(&server, &path, &invoice_schema());
    assert_eq!((s, v["version"].as_u64()), (201, Some(1)), "{v}");
    // The same schema again: the same version, 200.
    let (s, v) = post_json(&server, &path, &invoice_schema());
    assert_eq!((s, v["version"].as_u64()), (200, Some(1)), "{v}");
    // A new required field breaks BACKWARD: refused, the path named.
    let mut breaking = invoice_schema();
    breaking["properties"]["currency"] = json!({"type": "string"});
    breaking["required"] = json!(["amount", "customer", "currency"]);
    let (s, v) = post_json(&server, &path, &breaking);
    assert_eq!(s, 409, "{v}");
    assert!(v["error"].as_str().unwrap().contains("currency"), "{v}");
    // With NONE, it is taken as version 2.
    let r = client()
        .put(format!("{}{path}/compatibility", server.url))
        .json(&json!({"compatibility": "NONE"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let (s, v) = post_json(&server, &path, &breaking);
    assert_eq!((s, v["version"].as_u64()), (201, Some(2)), "{v}");
    let listed: Value = client()
        .get(format!("{}{path}", server.url))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(listed["compatibility"], "NONE");
    assert_eq!(listed["versions"].as_array().unwrap().len(), 2);

    // Unknown type: 422, saying so.
    let mut unknown = invoice("u1", "c1", 1.0);
    unknown["type"] = json!("it.acme.invoice.Lost");
    let (s, v) = publish(&server, &[unknown]);
    assert_eq!(s, 422, "{v}");
    assert!(v["error"].as_str().unwrap().contains("no schema"), "{v}");
    // Invalid data (version 2 requires a currency): 400 naming what is wrong; nothing logged.
    let (s, v) = publish(&server, &[invoice("bad", "c1", 1.0)]);
    assert_eq!(s, 400, "{v}");
    assert!(v["error"].as_str().unwrap().contains("currency"), "{v}");
    // Valid against version 1 when the event names it.
    let mut v1 = invoice("ok1", "c1", 12.5);
    v1["dataschema"] = json!(format!("{path}/versions/1"));
    let mut v2 = invoice("ok2", "c2", 7.0);
    v2["data"]["currency"] = json!("EUR");
    let (s, v) = publish(&server, &[v1, v2]);
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["published"][0]["seq"], 1);
    assert_eq!(v["published"][0]["schema_version"], 1);
    assert_eq!(v["published"][1]["seq"], 2);
    assert_eq!(v["published"][1]["schema_version"], 2);
    let rows = server.query(
        "SELECT seq, id, source, \"type\", subject, partitionkey, data FROM bus_events ORDER BY seq",
    );
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0]["id"], "ok1");
    assert_eq!(rows[0]["source"], "/acme/billing");
    assert_eq!(rows[0]["type"], INVOICE);
    assert_eq!(rows[0]["partitionkey"], "c1");
    let data: Value = serde_json::from_str(rows[1]["data"].as_str().unwrap()).unwrap();
    assert_eq!(data["currency"], "EUR");

    // Binary mode (ce-* headers).
    let r = client()
        .post(format!("{}/api/v1/bus/events", server.url))
        .header("ce-specversion", "1.0")
        .header("ce-id", "bin-1")
        .header("ce-source", "/acme/billing")
        .header("ce-type", INVOICE)
        .header("content-type", "application/json")
        .body(json!({"amount": 1, "customer": "c3", "currency": "EUR"}).to_string())
        .send()
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().unwrap_or_default());
    // The registry survives a restart (it is kept in bus_catalog_events).
    drop(server);
    let server = TestServer::start(dir.path(), &[]);
    let listed: Value = client()
        .get(format!("{}{path}", server.url))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(listed["versions"].as_array().unwrap().len(), 2, "{listed}");
    assert_eq!(listed["compatibility"], "NONE");
    let (s, v) = publish(&server, &[invoice("after", "c1", 1.0)]);
    assert_eq!(s, 400, "the schema of version 2 is still in force: {v}");
    let mut ok = invoice("after", "c1", 1.0);
    ok["data"]["currency"] = json!("EUR");
    let (s, v) = publish(&server, &[ok]);
    assert_eq!(
        (s, v["published"][0]["seq"].as_i64()),
        (201, Some(4)),
        "{v}"
    );
}

fn subscription(name: &str, url: &str) -> Value {
    json!({
        "name": name,
        "filter": {"types": ["it.acme.*"], "expression": "data.amount >= 10"},
        "transform": {"mapping": [
            {"to": "importo", "from": "data.amount"},
            {"to": "cliente.codice", "from": "data.customer"},
            {"to": "ente", "value": "Comune di Prato"},
            {"to": "poison", "from": "data.poison"}
        ]},
        "target": {"kind": "webhook", "url": url, "timeout_ms": 2000},
        "retry": {"max_attempts": 3, "initial_backoff_ms": 20, "max_backoff_ms": 100},
        "lanes": 4
    })
}

#[test]
fn webhooks_get_events_in_order_with_retries_dead_letters_and_replay() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), &[]);
    let receiver = Receiver::start();
    let (s, v) = post_json(
        &server,
        &format!("/api/v1/bus/schemas/{INVOICE}"),
        &invoice_schema(),
    );
    assert_eq!(s, 201, "{v}");
    let (s, v) = post_json(
        &server,
        "/api/v1/bus/subscriptions",
        &subscription("accounting", &receiver.url),
    );
    assert_eq!(s, 201, "{v}");
    // The first three requests fail with 503: retried.
    receiver.fail_first.store(3, Ordering::SeqCst);
    let mut events = Vec::new();
    for i in 0..30 {
        let customer = format!("c{}", i % 3);
        // Every fifth event is below the filter's amount.
        let amount = if i % 5 == 4 { 5.0 } else { 10.0 + f64::from(i) };
        events.push(invoice(&format!("inv-{i:02}"), &customer, amount));
    }
    let mut poison = invoice("inv-poison", "c9", 99.0);
    poison["data"]["poison"] = json!(true);
    events.push(poison);
    let (s, v) = publish(&server, &events);
    assert_eq!(s, 201, "{v}");

    // 24 match the filter, and the poison one.
    wait_until(
        Duration::from_secs(30),
        "every matching event settled",
        || {
            let sub: Value = client()
                .get(format!(
                    "{}/api/v1/bus/subscriptions/accounting",
                    server.url
                ))
                .send()
                .unwrap()
                .json()
                .unwrap();
            sub["cursor"] == json!(31)
        },
    );
    let got = receiver.received();
    let delivered: Vec<&Received> = got
        .iter()
        .filter(|r| {
            r.event["data"]["importo"]
                .as_f64()
                .is_some_and(|a| a < 99.0)
        })
        .collect();
    let mut keys: BTreeMap<&str, usize> = BTreeMap::new();
    for r in &delivered {
        *keys.entry(r.key.as_str()).or_default() += 1;
    }
    assert_eq!(keys.len(), 24, "{got:#?}");
    // The transformation: the mapped data only, with a constant.
    let first = delivered
        .iter()
        .find(|r| r.event["id"] == "inv-00")
        .unwrap();
    assert_eq!(
        first.event["data"],
        json!({"importo": 10.0, "cliente": {"codice": "c0"}, "ente": "Comune di Prato"})
    );
    assert_eq!(first.event["type"], INVOICE);
    // Three 503s were retried: some events were delivered on a later attempt.
    assert!(
        got.iter().filter(|r| r.attempt >= 2).count() >= 3,
        "{got:#?}"
    );
    // Per customer (the partition key), in publish order: the last successful delivery of
    // each event comes in the order of the ids.
    for c in ["c0", "c1", "c2"] {
        let ids: Vec<&str> = got
            .iter()
            .filter(|r| r.event["data"]["cliente"]["codice"] == c && r.attempt >= 1)
            .map(|r| r.event["id"].as_str().unwrap())
            .collect();
        let mut dedup = ids.clone();
        dedup.dedup();
        let mut sorted = dedup.clone();
        sorted.sort_unstable();
        assert_eq!(dedup, sorted, "{c}: {ids:?}");
    }
    // The poison event: refused with a 400, not retried, a dead letter at once.
    let poison_tries: Vec<&Received> = got
        .iter()
        .filter(|r| r.event["id"] == "inv-poison")
        .collect();
    assert_eq!(poison_tries.len(), 1, "{poison_tries:#?}");
    let dead: Value = client()
        .get(format!(
            "{}/api/v1/bus/subscriptions/accounting/dead-letters",
            server.url
        ))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let dead = dead["dead_letters"]
        .as_array()
        .unwrap_or_else(|| panic!("{dead}"))
        .clone();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["event_id"], "inv-poison");
    assert_eq!(dead[0]["status_code"], 400);
    assert!(
        dead[0]["error"]
            .as_str()
            .unwrap()
            .contains("cannot take this invoice")
    );
    let seq = dead[0]["seq"].as_i64().unwrap();

    // Every attempt is in bus_deliveries.
    wait_until(Duration::from_secs(10), "the audit rows", || {
        let n =
            server.scalar("SELECT count(*) FROM bus_deliveries WHERE subscription = 'accounting'");
        n as usize == got.len()
    });
    let by_status = server
        .query("SELECT status, count(*) AS n FROM bus_deliveries GROUP BY status ORDER BY status");
    let count = |s: &str| {
        by_status
            .iter()
            .find(|r| r["status"] == s)
            .and_then(|r| r["n"].as_u64())
            .unwrap_or(0)
    };
    assert_eq!(count("delivered"), 24);
    assert_eq!(count("dead_letter"), 1);
    assert_eq!(count("failed"), 3);

    // The receiver is fixed: the dead letter is redelivered on request.
    receiver.reject_poison.store(false, Ordering::SeqCst);
    let (s, v) = post_json(
        &server,
        &format!("/api/v1/bus/subscriptions/accounting/dead-letters/{seq}/redeliver"),
        &Value::Null,
    );
    assert_eq!(s, 202, "{v}");
    wait_until(Duration::from_secs(10), "the redelivery", || {
        receiver
            .received()
            .iter()
            .filter(|r| r.event["id"] == "inv-poison")
            .count()
            == 2
    });
    wait_until(
        Duration::from_secs(10),
        "the dead letter marked delivered",
        || {
            let dead: Value = client()
                .get(format!(
                    "{}/api/v1/bus/subscriptions/accounting/dead-letters",
                    server.url
                ))
                .send()
                .unwrap()
                .json()
                .unwrap();
            !dead["dead_letters"][0]["delivered_since"].is_null()
        },
    );

    // Replay from an event id: the log from there again, marked as a replay, same keys.
    let before = receiver.received().len();
    let (s, v) = post_json(
        &server,
        "/api/v1/bus/subscriptions/accounting/replay",
        &json!({"event_id": "inv-20"}),
    );
    assert_eq!(s, 202, "{v}");
    assert_eq!(v["from_seq"], 21);
    // From seq 21: inv-20..inv-29, of which 24 and 29 are below the amount = 8, plus the
    // poison one (now taken) = 9.
    wait_until(Duration::from_secs(20), "the replay", || {
        receiver.received().len() >= before + 9
    });
    std::thread::sleep(Duration::from_millis(300));
    let replayed: Vec<Received> = receiver.received()[before..].to_vec();
    assert_eq!(replayed.len(), 9, "{replayed:#?}");
    assert!(replayed.iter().all(|r| r.replay.is_some()));
    for r in &replayed {
        assert!(keys.contains_key(r.key.as_str()) || r.event["id"] == "inv-poison");
    }
    // Unknown subscription, bad replay.
    let (s, _) = post_json(
        &server,
        "/api/v1/bus/subscriptions/nobody/replay",
        &json!({"seq": 1}),
    );
    assert_eq!(s, 404);
    let (s, v) = post_json(
        &server,
        "/api/v1/bus/subscriptions/accounting/replay",
        &json!({"seq": 1, "event_id": "x"}),
    );
    assert_eq!(s, 400, "{v}");
    let (s, v) = post_json(
        &server,
        "/api/v1/bus/subscriptions",
        &json!({"name": "bad one", "target": {"kind": "webhook", "url": receiver.url}}),
    );
    assert_eq!(s, 400, "{v}");
    let (s, v) = post_json(
        &server,
        "/api/v1/bus/subscriptions",
        &json!({"name": "bad", "filter": {"expression": "data.a = 1"},
                "target": {"kind": "webhook", "url": receiver.url}}),
    );
    assert_eq!(s, 400, "{v}");
    assert!(v["error"].as_str().unwrap().contains("column"), "{v}");
}

#[test]
fn kill9_during_deliveries_loses_nothing_and_repeats_only_unconfirmed_events() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = TestServer::start(dir.path(), &[]);
    let receiver = Receiver::start();
    let (s, _) = post_json(
        &server,
        &format!("/api/v1/bus/schemas/{INVOICE}"),
        &invoice_schema(),
    );
    assert_eq!(s, 201);
    let mut sub = subscription("ledger", &receiver.url);
    sub["filter"] = json!({});
    sub["transform"] = Value::Null;
    let (s, v) = post_json(&server, "/api/v1/bus/subscriptions", &sub);
    assert_eq!(s, 201, "{v}");
    // Published in batches; acknowledged events are counted.
    let mut acked: Vec<String> = Vec::new();
    let publish_batch = |server: &TestServer, from: usize, n: usize, acked: &mut Vec<String>| {
        let events: Vec<Value> = (from..from + n)
            .map(|i| invoice(&format!("k-{i:05}"), &format!("c{}", i % 7), 10.0))
            .collect();
        let (s, v) = publish(server, &events);
        assert_eq!(s, 201, "{v}");
        acked.extend(events.iter().map(|e| e["id"].as_str().unwrap().to_string()));
    };
    for b in 0..20 {
        publish_batch(&server, b * 100, 100, &mut acked);
    }
    // Kill while deliveries are under way.
    wait_until(Duration::from_secs(30), "some deliveries", || {
        receiver.received().len() > 300
    });
    server.kill9();
    let cursor: i64 = std::fs::read_to_string(dir.path().join("bus/cursors/ledger"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let delivered_before = receiver.received().len();
    assert!(cursor < 2000, "the kill came too late: cursor {cursor}");
    let server = server.restart();
    for b in 20..25 {
        publish_batch(&server, b * 100, 100, &mut acked);
    }
    wait_until(Duration::from_secs(60), "every event delivered", || {
        let got = receiver.received();
        let ids: std::collections::BTreeSet<&str> =
            got.iter().filter_map(|r| r.event["id"].as_str()).collect();
        ids.len() >= acked.len()
    });
    let got = receiver.received();
    let mut by_id: BTreeMap<String, Vec<&Received>> = BTreeMap::new();
    for r in &got {
        by_id
            .entry(r.event["id"].as_str().unwrap().to_string())
            .or_default()
            .push(r);
    }
    for id in &acked {
        assert!(
            by_id.contains_key(id),
            "{id} was acknowledged but never delivered"
        );
    }
    // Only events after the saved cursor may come twice, and with the same key.
    let seq_of = |id: &str| -> i64 { id.trim_start_matches("k-").parse::<i64>().unwrap() + 1 };
    let mut duplicates = 0;
    for (id, rs) in &by_id {
        if rs.len() > 1 {
            duplicates += 1;
            assert!(
                seq_of(id) > cursor,
                "{id} (seq {}) was delivered twice, but the cursor {cursor} had passed it",
                seq_of(id)
            );
            assert!(rs.iter().all(|r| r.key == rs[0].key));
        }
    }
    eprintln!(
        "kill -9 after {delivered_before} deliveries, cursor {cursor}: {duplicates} events delivered twice of {}",
        acked.len()
    );
    assert_eq!(
        server.scalar("SELECT count(*) FROM bus_events"),
        acked.len() as f64
    );
}

const MENU: &str = "it.prato.school.menu.Published";

const ANAGRAFE_WSDL: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<definitions name="Anagrafe" targetNamespace="urn:prato:anagrafe"
    xmlns="http://schemas.xmlsoap.org/wsdl/" xmlns:tns="urn:prato:anagrafe"
    xmlns:soap="http://schemas.xmlsoap.org/wsdl/soap/">
  <portType name="AnagrafePort">
    <operation name="CercaResidente">
      <input message="tns:CercaResidenteRequest"/><output message="tns:CercaResidenteResponse"/>
    </operation>
  </portType>
  <binding name="B" type="tns:AnagrafePort">
    <operation name="CercaResidente"><soap:operation soapAction="urn:prato:anagrafe:CercaResidente"/></operation>
  </binding>
  <service name="AnagrafeService"><port name="p" binding="tns:B"><soap:address location="http://127.0.0.1:9/anagrafe"/></port></service>
</definitions>"#;

/// A request with a bearer token; returns the status and the JSON body (Null if none).
fn call(
    server: &TestServer,
    method: &str,
    path: &str,
    token: &str,
    body: Option<(&str, String)>,
) -> (u16, Value) {
    let c = client();
    let url = format!("{}{path}", server.url);
    let mut req = match method {
        "GET" => c.get(url),
        "PUT" => c.put(url),
        "POST" => c.post(url),
        "DELETE" => c.delete(url),
        other => panic!("method {other}"),
    };
    if let Some((ct, b)) = body {
        req = req.header("content-type", ct).body(b);
    }
    let r = req.bearer_auth(token).send().expect("request");
    let status = r.status().as_u16();
    (status, r.json().unwrap_or(Value::Null))
}

fn json_body(v: Value) -> Option<(&'static str, String)> {
    Some(("application/json", v.to_string()))
}

#[test]
fn the_catalog_gives_organisations_credentials_and_maps_who_depends_on_whom() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_secure(dir.path(), &[]);
    let admin = crate::auth::last_line(&crate::auth::token_cmd(
        dir.path(),
        &["create", "--role", "bus-operator"],
    ));
    // The comune's office and an outside operator (the canteen caterer).
    let (s, v) = call(
        &server,
        "PUT",
        "/api/v1/bus/organisations/comune",
        &admin,
        json_body(
            json!({"name": "Comune di Prato", "kind": "office", "ipa_code": "c_g999",
            "contacts": [{"name": "Servizi informativi", "email": "si@comune.prato.it"}]}),
        ),
    );
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["topics"], "bus/comune/#");
    let (s, v) = call(
        &server,
        "PUT",
        "/api/v1/bus/organisations/mensa",
        &admin,
        json_body(json!({"name": "Ristorazione Srl", "kind": "operator",
            "contacts": [{"name": "Help desk", "phone": "+39 0574 000000"}]})),
    );
    assert_eq!(s, 201, "{v}");
    let (s, v) = call(
        &server,
        "PUT",
        "/api/v1/bus/organisations/bad",
        &admin,
        json_body(json!({"name": "X", "contacts": [{"name": "Y", "email": "nope"}]})),
    );
    assert_eq!(s, 400);
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("not an e-mail address"),
        "{v}"
    );

    // The caterer's own credentials.
    let (s, v) = call(
        &server,
        "POST",
        "/api/v1/bus/organisations/mensa/tokens",
        &admin,
        json_body(json!({"label": "caterer gateway", "expires": "365d"})),
    );
    assert_eq!(s, 201, "{v}");
    let member = v["token"].as_str().unwrap().to_string();
    assert_eq!(v["info"]["org"], "mensa");
    assert_eq!(v["info"]["role"], "bus-member");
    assert_eq!(v["info"]["topics"], json!(["bus/mensa/#"]));
    let (s, _) = call(
        &server,
        "POST",
        "/api/v1/bus/organisations/nobody/tokens",
        &admin,
        None,
    );
    assert_eq!(s, 404);

    // It describes its system (not the comune's), and may not create organisations.
    let (s, v) = call(
        &server,
        "PUT",
        "/api/v1/bus/organisations/mensa/systems/menu",
        &member,
        json_body(json!({"name": "Menu planner", "owner": "Dietista", "produces": [MENU]})),
    );
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["source"], "/mensa/menu");
    let (s, v) = call(
        &server,
        "PUT",
        "/api/v1/bus/organisations/comune/systems/portal",
        &member,
        json_body(json!({"name": "x", "owner": "y"})),
    );
    assert_eq!(s, 403, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("acts for organisation mensa"),
        "{v}"
    );
    let (s, _) = call(
        &server,
        "PUT",
        "/api/v1/bus/organisations/other",
        &member,
        json_body(json!({"name": "Other"})),
    );
    assert_eq!(s, 403);
    // The comune's portal needs the menus.
    let (s, v) = call(
        &server,
        "PUT",
        "/api/v1/bus/organisations/comune/systems/portal",
        &admin,
        json_body(
            json!({"name": "Portale genitori", "owner": "Ufficio scuola", "consumes": [MENU]}),
        ),
    );
    assert_eq!(s, 201, "{v}");

    // Its endpoint, described by WSDL: stored, read, served back as given.
    let path = "/api/v1/bus/organisations/mensa/systems/menu/endpoints/soap";
    let (s, v) = call(
        &server,
        "PUT",
        path,
        &member,
        Some(("application/wsdl+xml", ANAGRAFE_WSDL.into())),
    );
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["standard"], "WSDL 1.1");
    assert_eq!(v["url"], "http://127.0.0.1:9/anagrafe");
    assert_eq!(v["operations"][0]["name"], "CercaResidente");
    assert_eq!(
        v["operations"][0]["soap_action"],
        "urn:prato:anagrafe:CercaResidente"
    );
    let r = client()
        .get(format!("{}{path}/document", server.url))
        .bearer_auth(&member)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/wsdl+xml")
    );
    assert_eq!(r.text().unwrap(), ANAGRAFE_WSDL);
    let (s, v) = call(
        &server,
        "PUT",
        path,
        &member,
        Some(("text/plain", "hello".into())),
    );
    assert_eq!(s, 400);
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("not an OpenAPI or WSDL document"),
        "{v}"
    );

    // Schemas: the member registers the type its system produces, no other.
    let (s, v) = call(
        &server,
        "POST",
        &format!("/api/v1/bus/schemas/{MENU}"),
        &member,
        json_body(
            json!({"type": "object", "properties": {"day": {"type": "string"}}, "required": ["day"]}),
        ),
    );
    assert_eq!(s, 201, "{v}");
    let (s, v) = call(
        &server,
        "POST",
        "/api/v1/bus/schemas/it.prato.anagrafe.Changed",
        &member,
        json_body(json!({"type": "object"})),
    );
    assert_eq!(s, 403, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("produces it.prato.anagrafe.Changed"),
        "{v}"
    );

    // It publishes in its own namespace only.
    let menu = |id: &str, source: &str| {
        Some((
            "application/cloudevents+json",
            json!({"specversion": "1.0", "id": id, "source": source, "type": MENU,
                   "data": {"day": "2026-11-27"}})
            .to_string(),
        ))
    };
    let (s, v) = call(
        &server,
        "POST",
        "/api/v1/bus/events",
        &member,
        menu("m-1", "/mensa/menu"),
    );
    assert_eq!(s, 201, "{v}");
    let (s, v) = call(
        &server,
        "POST",
        "/api/v1/bus/events",
        &member,
        menu("m-2", "/comune/portal"),
    );
    assert_eq!(s, 403, "{v}");

    // Subscriptions: the comune's portal receives the menus; the caterer's token does not
    // see or touch the comune's subscription, and its own ones are its organisation's.
    let mut sub = subscription("portal-menus", "http://127.0.0.1:9/hook");
    sub["owner"] = json!("comune");
    sub["system"] = json!("portal");
    sub["filter"] = json!({"types": ["it.prato.school.*"]});
    sub["transform"] = Value::Null;
    sub["paused"] = json!(true);
    let (s, v) = call(
        &server,
        "POST",
        "/api/v1/bus/subscriptions",
        &admin,
        json_body(sub.clone()),
    );
    assert_eq!(s, 201, "{v}");
    let mut ghost = sub.clone();
    ghost["name"] = json!("ghost");
    ghost["system"] = json!("nope");
    let (s, v) = call(
        &server,
        "POST",
        "/api/v1/bus/subscriptions",
        &admin,
        json_body(ghost),
    );
    assert_eq!(s, 404, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("has no system nope"),
        "{v}"
    );
    let (s, v) = call(
        &server,
        "GET",
        "/api/v1/bus/subscriptions/portal-menus",
        &member,
        None,
    );
    assert_eq!(s, 403, "{v}");
    let mut own = subscription("mensa-echo", "http://127.0.0.1:9/hook");
    own["transform"] = Value::Null;
    own["paused"] = json!(true);
    let (s, v) = call(
        &server,
        "POST",
        "/api/v1/bus/subscriptions",
        &member,
        json_body(own.clone()),
    );
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["spec"]["owner"], "mensa");
    own["name"] = json!("stolen");
    own["owner"] = json!("comune");
    let (s, _) = call(
        &server,
        "POST",
        "/api/v1/bus/subscriptions",
        &member,
        json_body(own),
    );
    assert_eq!(s, 403);
    let (s, v) = call(&server, "GET", "/api/v1/bus/subscriptions", &member, None);
    assert_eq!(s, 200);
    let names: Vec<&str> = v["subscriptions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["spec"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["mensa-echo"]);

    // The map: the portal depends on the menu planner through its subscription.
    let (s, map) = call(&server, "GET", "/api/v1/bus/map", &member, None);
    assert_eq!(s, 200, "{map}");
    let dep = map["dependencies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["consumer"] == "comune/portal")
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(dep["producer"], "mensa/menu", "{map}");
    assert_eq!(dep["event_types"], json!([MENU]));
    assert_eq!(dep["subscriptions"], json!(["portal-menus"]));
    let produced = map["produces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["system"] == "mensa/menu")
        .cloned()
        .unwrap();
    assert_eq!(
        (produced["declared"].clone(), produced["events"].clone()),
        (json!(true), json!(1))
    );
    let (s, _) = call(&server, "GET", "/api/v1/bus/map?days=0", &member, None);
    assert_eq!(s, 400);

    // The pages.
    let page = |path: &str| {
        let r = client()
            .get(format!("{}{path}", server.url))
            .bearer_auth(&member)
            .send()
            .unwrap();
        (r.status().as_u16(), r.text().unwrap())
    };
    let (s, html) = page("/bus/catalog");
    assert_eq!(s, 200);
    assert!(
        html.contains("Ristorazione Srl") && html.contains("Portale genitori"),
        "{html}"
    );
    let (s, html) = page("/bus/catalog/mensa/menu");
    assert_eq!(s, 200);
    assert!(
        html.contains("CercaResidente")
            && html.contains("SOAPAction urn:prato:anagrafe:CercaResidente"),
        "{html}"
    );
    assert_eq!(page("/bus/catalog/mensa/nope").0, 404);
    let (s, html) = page("/bus/map");
    assert_eq!(s, 200);
    assert!(
        html.contains("<svg") && html.contains("portal-menus"),
        "{html}"
    );
    let (s, svg) = page("/bus/map.svg");
    assert_eq!(s, 200);
    assert!(
        svg.contains("mensa/menu produces it.prato.school.menu.Published (1 events in the log)"),
        "{svg}"
    );

    // The catalog survives a restart.
    drop(server);
    let server = TestServer::start_secure(dir.path(), &[]);
    let (s, v) = call(&server, "GET", "/api/v1/bus/catalog", &member, None);
    assert_eq!(s, 200, "{v}");
    let orgs: Vec<&str> = v["organisations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap())
        .collect();
    assert_eq!(orgs, ["comune", "mensa"]);
    assert_eq!(
        v["organisations"][1]["systems"][0]["endpoints"][0]["operations"][0]["name"],
        "CercaResidente"
    );

    // Removing: not while in use; the organisation's tokens die with it.
    let (s, v) = call(
        &server,
        "DELETE",
        "/api/v1/bus/organisations/mensa",
        &admin,
        None,
    );
    assert_eq!(s, 409, "{v}");
    let (s, _) = call(
        &server,
        "DELETE",
        "/api/v1/bus/subscriptions/mensa-echo",
        &member,
        None,
    );
    assert_eq!(s, 204);
    let (s, _) = call(
        &server,
        "DELETE",
        "/api/v1/bus/organisations/mensa/systems/menu",
        &member,
        None,
    );
    assert_eq!(s, 204);
    let (s, v) = call(
        &server,
        "DELETE",
        "/api/v1/bus/organisations/mensa",
        &admin,
        None,
    );
    assert_eq!(s, 204, "{v}");
    let (s, _) = call(&server, "GET", "/api/v1/bus/catalog", &member, None);
    assert_eq!(s, 401);
}

#[test]
fn mqtt_bus_events_must_carry_a_source_of_their_topics_namespace() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), &[]);
    let (s, v) = post_json(
        &server,
        &format!("/api/v1/bus/schemas/{INVOICE}"),
        &invoice_schema(),
    );
    assert_eq!(s, 201, "{v}");
    let own = invoice("m-1", "c1", 10.0).to_string();
    let mut foreign = invoice("m-2", "c1", 10.0);
    foreign["source"] = json!("/evil/billing");
    let foreign = foreign.to_string();
    let acks = crate::mqtt::publish_all(
        &server.mqtt,
        "billing-gw",
        None,
        &[
            ("bus/acme/billing", own.as_bytes()),
            ("bus/acme/billing", foreign.as_bytes()),
        ],
    )
    .expect("publish");
    assert_eq!(acks, 2);
    assert_eq!(
        server.query("SELECT id, publisher FROM bus_events"),
        vec![json!({"id": "m-1", "publisher": "mqtt:anonymous"})]
    );
    let dead = server.query("SELECT route, topic, error FROM _dead_letters");
    assert_eq!(
        dead,
        vec![json!({
            "route": "bus",
            "topic": "bus/acme/billing",
            "error": "source \"/evil/billing\" is outside the namespace of topic bus/acme/billing: events on it have a source /acme/billing[/...]"
        })]
    );
}
