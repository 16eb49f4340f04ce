//! The embedded MQTT broker end to end: readings published by a gateway land in their
//! tables (queryable as soon as the PUBACK arrives, and durable), bad messages land in
//! `_dead_letters` with the reason, tokens and topic grants decide who may publish, routes
//! reload on SIGHUP, and HTTP writes get 503 with Retry-After under backpressure.

use crate::auth::{last_line, token_cmd};
use crate::server::TestServer;
use rumqttc::{AsyncClient, ConnectionError, Event, MqttOptions, Packet, QoS};
use std::time::Duration;

/// Publishes every message at QoS 1 from one connection and waits for all PUBACKs; returns
/// the number of PUBACKs, or the connection error (e.g. a refused CONNECT).
pub(crate) fn publish_all(
    addr: &str,
    client_id: &str,
    password: Option<&str>,
    messages: &[(&str, &[u8])],
) -> Result<usize, String> {
    let (host, port) = addr.rsplit_once(':').expect("host:port");
    let port: u16 = port.parse().expect("port");
    let messages: Vec<(String, Vec<u8>)> = messages
        .iter()
        .map(|(t, p)| (t.to_string(), p.to_vec()))
        .collect();
    let total = messages.len();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let mut opts = MqttOptions::new(client_id, host, port);
        opts.set_keep_alive(Duration::from_secs(10));
        if let Some(p) = password {
            opts.set_credentials("gateway", p);
        }
        let (client, mut events) = AsyncClient::new(opts, 64);
        let publisher = client.clone();
        tokio::spawn(async move {
            for (topic, payload) in messages {
                if publisher
                    .publish(topic, QoS::AtLeastOnce, false, payload)
                    .await
                    .is_err()
                {
                    return;
                }
            }
        });
        let mut acks = 0;
        while acks < total {
            match tokio::time::timeout(Duration::from_secs(30), events.poll()).await {
                Ok(Ok(Event::Incoming(Packet::PubAck(_)))) => acks += 1,
                Ok(Ok(_)) => {}
                Ok(Err(ConnectionError::ConnectionRefused(code))) => {
                    return Err(format!("refused: {code:?}"));
                }
                Ok(Err(e)) => return Err(format!("connection error: {e}")),
                Err(_) => return Err(format!("timeout after {acks} of {total} PUBACKs")),
            }
        }
        let _ = client.disconnect().await;
        let _ = tokio::time::timeout(Duration::from_secs(2), events.poll()).await;
        Ok(acks)
    })
}

/// Runs SQL with `token` on a server that requires tokens; asserts a 200 and returns the rows.
fn query_as(server: &TestServer, token: &str, sql: &str) -> Vec<serde_json::Value> {
    let r = TestServer::client()
        .post(format!("{}/api/v1/query", server.url))
        .bearer_auth(token)
        .json(&serde_json::json!({ "sql": sql }))
        .send()
        .expect("query");
    assert_eq!(r.status(), 200, "{sql}");
    r.json().expect("JSON rows")
}

fn metrics(server: &TestServer) -> String {
    TestServer::client()
        .get(format!("{}/metrics", server.url))
        .send()
        .expect("metrics")
        .text()
        .expect("text")
}

#[test]
fn mqtt_readings_land_in_their_tables_and_bad_messages_in_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), &[]);
    assert!(
        !server.mqtt.is_empty(),
        "the broker address was not printed"
    );
    // `_dead_letters` exists, empty, before any message.
    assert_eq!(server.scalar("SELECT count(*) FROM _dead_letters"), 0.0);
    let acks = publish_all(
        &server.mqtt,
        "gw-1",
        None,
        &[
            ("ingest/air", b"air,sensor=a1 pm25=12.5 1767225600000000000"),
            (
                "ingest/noise",
                br#"[{"sensor":"n1","laeq":61.5,"time":"2026-01-01T00:00:00Z"},{"sensor":"n2","laeq":58,"time":"2026-01-01T00:00:01Z"}]"#,
            ),
            ("ingest/air", b"this is not line protocol"),
            ("ingest/air", b"air,sensor=a2 pm25=14.0 1767225601000000000"),
            ("devices/kiosk/k1/status", br#"{"online":true}"#),
        ],
    )
    .expect("publish");
    assert_eq!(acks, 5);
    // Visible as soon as the PUBACK came back.
    let air = server.query("SELECT sensor, pm25 FROM air ORDER BY sensor");
    assert_eq!(
        air,
        vec![
            serde_json::json!({"sensor": "a1", "pm25": 12.5}),
            serde_json::json!({"sensor": "a2", "pm25": 14.0}),
        ]
    );
    assert_eq!(server.scalar("SELECT sum(laeq) FROM noise"), 119.5);
    let dead = server
        .query("SELECT source, route, topic, payload, payload_encoding, error FROM _dead_letters");
    assert_eq!(dead.len(), 1, "{dead:?}");
    let d = &dead[0];
    assert_eq!(d["source"], "mqtt:embedded");
    assert_eq!(d["route"], "default");
    assert_eq!(d["topic"], "ingest/air");
    assert_eq!(d["payload"], "this is not line protocol");
    assert_eq!(d["payload_encoding"], "utf8");
    assert!(
        d["error"].as_str().unwrap_or_default().contains("line 1"),
        "{d}"
    );
    // Pub/sub traffic is not data: no table appears for it.
    let tables = server.query(
        "SELECT table_name FROM information_schema.tables \
         WHERE (table_name LIKE 'devices%' OR table_name LIKE '%status%') \
         AND table_name NOT LIKE 'kiosk%'",
    );
    assert!(tables.is_empty(), "{tables:?}");
    let m = metrics(&server);
    assert!(
        m.contains("civiclake_dead_letters_total{route=\"default\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("civiclake_ingest_rows_total{route=\"default\"} 4"),
        "{m}"
    );
}

#[test]
fn acknowledged_mqtt_messages_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = TestServer::start(dir.path(), &[]);
    let payloads: Vec<Vec<u8>> = (0..500)
        .map(|i| {
            format!(
                "air,sensor=s{} pm25={i} {}",
                i % 7,
                1_767_225_600_000_000_000i64 + i * 1_000_000_000
            )
            .into_bytes()
        })
        .collect();
    let messages: Vec<(&str, &[u8])> = payloads
        .iter()
        .map(|p| ("ingest/air", p.as_slice()))
        .collect();
    assert_eq!(
        publish_all(&server.mqtt, "gw-kill", None, &messages),
        Ok(500)
    );
    server.kill9();
    let server = server.restart();
    assert_eq!(server.scalar("SELECT count(*) FROM air"), 500.0);
    assert_eq!(server.scalar("SELECT sum(pm25) FROM air"), 124_750.0);
}

#[test]
fn mqtt_clients_need_a_token_and_publish_only_what_it_grants() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_secure(dir.path(), &[]);
    let gateway = last_line(&token_cmd(
        dir.path(),
        &["create", "--role", "gateway", "--tables", "air"],
    ));
    let err = publish_all(&server.mqtt, "anon", None, &[("ingest/air", b"x")]).unwrap_err();
    assert!(err.contains("refused"), "{err}");
    let err = publish_all(
        &server.mqtt,
        "bad",
        Some("clk_nope"),
        &[("ingest/air", b"x")],
    )
    .unwrap_err();
    assert!(err.contains("refused"), "{err}");
    let acks = publish_all(
        &server.mqtt,
        "gw-air",
        Some(&gateway),
        &[
            ("ingest/air", b"air,sensor=a1 pm25=3 1767225600000000000"),
            // A topic the token does not grant: acknowledged (MQTT 3.1.1 has no way to say
            // no) but neither stored nor dead-lettered.
            ("bus/somewhere", b"{}"),
            // A granted topic routed to a table the token may not write: a dead letter.
            (
                "ingest/water",
                b"water,sensor=w1 level=1 1767225600000000000",
            ),
        ],
    )
    .expect("publish");
    assert_eq!(acks, 3);
    let admin = last_line(&token_cmd(dir.path(), &["create", "--role", "admin"]));
    let query = |sql: &str| query_as(&server, &admin, sql);
    assert_eq!(
        query("SELECT sensor, pm25 FROM air"),
        vec![serde_json::json!({"sensor": "a1", "pm25": 3.0})]
    );
    let dead = query("SELECT topic, publisher, error FROM _dead_letters");
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["topic"], "ingest/water");
    assert!(
        dead[0]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("may not write table water"),
        "{dead:?}"
    );
    assert!(dead[0]["publisher"].as_str().is_some_and(|p| !p.is_empty()));
    assert!(
        query("SELECT table_name FROM information_schema.tables WHERE table_name = 'water'")
            .is_empty()
    );
}

#[test]
fn routes_map_topics_to_tables_and_reload_on_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let routes = dir.path().join("routes");
    std::fs::create_dir_all(&routes).unwrap();
    std::fs::write(
        routes.join("city.toml"),
        r#"
[[route]]
name = "stations"
topic = "city/air/{station}/{kind}"
format = "json"
table = "air_{kind}"
"#,
    )
    .unwrap();
    let server = TestServer::start(dir.path(), &[]);
    assert_eq!(
        publish_all(
            &server.mqtt,
            "gw-routes",
            None,
            &[(
                "city/air/ps1/pm10",
                br#"{"value":21.5,"time":"2026-01-01T00:00:00Z"}"#
            )],
        ),
        Ok(1)
    );
    assert_eq!(
        server.query("SELECT station, value FROM air_pm10"),
        vec![serde_json::json!({"station": "ps1", "value": 21.5})]
    );
    // Not routed yet: left alone.
    assert_eq!(
        publish_all(
            &server.mqtt,
            "gw-routes",
            None,
            &[("city/traffic/t1", b"traffic count=4i 1767225600000000000")]
        ),
        Ok(1)
    );
    std::fs::write(
        routes.join("traffic.toml"),
        r#"
[[route]]
name = "traffic"
topic = "city/traffic/{counter}"
format = "line_protocol"
table = "traffic"
"#,
    )
    .unwrap();
    let status = std::process::Command::new("kill")
        .args(["-HUP", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        publish_all(
            &server.mqtt,
            "gw-routes",
            None,
            &[("city/traffic/t1", b"traffic count=4i 1767225600000000000")],
        )
        .expect("publish");
        let n = server
            .scalar("SELECT count(*) FROM information_schema.tables WHERE table_name = 'traffic'");
        if n == 1.0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the new route was not loaded after SIGHUP"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let rows = server.query("SELECT counter, count FROM traffic LIMIT 1");
    assert_eq!(rows, vec![serde_json::json!({"counter": "t1", "count": 4})]);
    let m = metrics(&server);
    assert!(
        m.contains("civiclake_ingest_messages_total{route=\"stations\"} 1"),
        "{m}"
    );
}

#[test]
fn http_writes_get_503_with_retry_after_while_the_buffer_is_saturated() {
    let dir = tempfile::tempdir().unwrap();
    // Room for what the modules write as they start (each write is admitted while no more
    // rows than the limit wait), then for 40 of this test's rows.
    let server = TestServer::start(
        dir.path(),
        &[
            ("CIVICLAKE_BACKPRESSURE__MAX_BUFFERED_ROWS", "40"),
            ("CIVICLAKE_FLUSH__MAX_AGE", "1h"),
        ],
    );
    // What the modules write as they start (bus schemas, the kiosk catalog, the council.s settings) is flushed
    // first: the buffer then holds only this test's rows.
    let r = TestServer::client()
        .post(format!("{}/api/v1/admin/flush", server.url))
        .send()
        .expect("flush");
    assert!(r.status().is_success(), "{}", r.status());
    let rows: Vec<String> = (0..41)
        .map(|i| {
            format!(
                "air,sensor=a v={i} {}",
                1_767_225_600_000_000_000i64 + i * 1_000_000_000
            )
        })
        .collect();
    server.write_lp("air", &rows.join("\n"));
    let r = TestServer::client()
        .post(format!("{}/api/v1/write?table=air", server.url))
        .header("content-type", "text/plain")
        .body("air,sensor=a v=41 1767225641000000000")
        .send()
        .expect("write");
    assert_eq!(r.status(), 503);
    assert_eq!(
        r.headers().get("retry-after").and_then(|v| v.to_str().ok()),
        Some("1")
    );
    let body = r.text().unwrap_or_default();
    assert!(body.contains("41 rows wait for a flush"), "{body}");
    // A flush makes room again.
    let r = TestServer::client()
        .post(format!("{}/api/v1/admin/flush", server.url))
        .send()
        .expect("flush");
    assert!(r.status().is_success(), "{}", r.text().unwrap_or_default());
    server.write_lp("air", "air,sensor=a v=41 1767225641000000000");
    assert_eq!(server.scalar("SELECT count(*) FROM air"), 42.0);
}

/// Every shipped role against the MQTT broker: only roles with topic grants connect, and a
/// reading on `ingest/air` is stored only for a token that may publish there and write `air`.
#[test]
fn every_role_against_the_mqtt_broker() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_secure(dir.path(), &[]);
    let admin = last_line(&token_cmd(dir.path(), &["create", "--role", "admin"]));
    // (role, connects, stored as a row, kept as a dead letter)
    let expected = [
        ("admin", true, true, false),
        ("analyst", false, false, false),
        ("planner", false, false, false),
        // May publish on ingest/#, but its token grants table water only.
        ("gateway", true, false, true),
        ("service", false, false, false),
        ("council-secretariat", false, false, false),
        ("councillor", false, false, false),
        ("school-office", false, false, false),
        ("school-staff", false, false, false),
        ("kiosk-operator", false, false, false),
        // Connects (devices/kiosk/K07/#) but may not publish on ingest/.
        ("kiosk-device", true, false, false),
        ("guardian", false, false, false),
        ("citizen", false, false, false),
        ("public", false, false, false),
    ];
    let query = |sql: &str| -> f64 {
        query_as(&server, &admin, sql)[0]
            .as_object()
            .and_then(|row| row.values().next())
            .and_then(serde_json::Value::as_f64)
            .expect("one number")
    };
    for (i, (role, connects, stored, dead)) in expected.into_iter().enumerate() {
        let mut args = vec!["create", "--role", role];
        if matches!(role, "guardian" | "citizen") {
            args.extend(["--subject", "RSSMRA80A01G999X"]);
        }
        if role == "kiosk-device" {
            args.extend(["--subject", "K07"]);
        }
        if matches!(role, "gateway" | "service") {
            args.extend(["--tables", "water"]);
        }
        let token = last_line(&token_cmd(dir.path(), &args));
        let line = format!("air,role={role} n={i} 1767225600000000000");
        let result = publish_all(
            &server.mqtt,
            &format!("c-{role}"),
            Some(&token),
            &[("ingest/air", line.as_bytes())],
        );
        assert_eq!(result.is_ok(), connects, "{role}: {result:?}");
        let rows =
            query("SELECT count(*) FROM information_schema.tables t WHERE t.table_name = 'air'");
        let in_air = if rows == 1.0 {
            query(&format!("SELECT count(*) FROM air WHERE role = '{role}'"))
        } else {
            0.0
        };
        assert_eq!(in_air == 1.0, stored, "{role}: stored");
        let dead_letters = query(&format!(
            "SELECT count(*) FROM _dead_letters WHERE payload = '{line}'"
        ));
        assert_eq!(dead_letters == 1.0, dead, "{role}: dead letter");
    }
}

/// A `[[mqtt.source]]` subscription: this server subscribes to another broker (here another
/// civiclake's embedded one, which only passes `city/...` on: no route there) and stores
/// what its own routes map, acknowledging upstream only after storing.
#[test]
fn a_server_subscribes_to_an_external_broker() {
    let upstream_dir = tempfile::tempdir().unwrap();
    let upstream = TestServer::start(upstream_dir.path(), &[]);
    let dir = tempfile::tempdir().unwrap();
    let routes = dir.path().join("routes");
    std::fs::create_dir_all(&routes).unwrap();
    std::fs::write(
        routes.join("city.toml"),
        "[[route]]\nname = \"city-air\"\ntopic = \"city/air/{station}\"\nformat = \"json\"\ntable = \"air_city\"\n",
    )
    .unwrap();
    let (host, port) = upstream.mqtt.rsplit_once(':').unwrap();
    let config = dir.path().join("civiclake.toml");
    std::fs::write(
        &config,
        format!(
            "[[mqtt.source]]\nname = \"upstream\"\nhost = \"{host}\"\nport = {port}\ntopics = [\"city/#\"]\n"
        ),
    )
    .unwrap();
    let server = TestServer::start(
        dir.path(),
        &[("CIVICLAKE_CONFIG", config.to_str().unwrap())],
    );
    // Until the subscription is in place upstream, messages published there reach nobody:
    // warm up until one arrives.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        publish_all(
            &upstream.mqtt,
            "warm-up",
            None,
            &[(
                "city/air/warm",
                br#"{"pm10":-1,"time":"2026-01-01T00:00:00Z"}"#,
            )],
        )
        .expect("publish upstream");
        if server
            .scalar("SELECT count(*) FROM information_schema.tables WHERE table_name = 'air_city'")
            == 1.0
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the source did not subscribe: {}",
            metrics(&server)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(metrics(&server).contains("civiclake_mqtt_source_connected{source=\"upstream\"} 1"));
    let payloads: Vec<String> = (0..50)
        .map(|i| format!(r#"{{"pm10":{i},"time":"2026-01-01T00:00:{:02}Z"}}"#, i % 60))
        .collect();
    let messages: Vec<(&str, &[u8])> = payloads
        .iter()
        .map(|p| ("city/air/ps1", p.as_bytes()))
        .collect();
    assert_eq!(
        publish_all(&upstream.mqtt, "city-gw", None, &messages),
        Ok(50)
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if server.scalar("SELECT count(*) FROM air_city WHERE station = 'ps1'") >= 50.0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not all messages arrived"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        server.scalar("SELECT count(DISTINCT pm10) FROM air_city WHERE station = 'ps1'"),
        50.0
    );
    assert_eq!(
        server.scalar("SELECT sum(pm10) FROM air_city WHERE station = 'ps1'"),
        1225.0
    );
    // The upstream server only passed them on: no table there.
    assert_eq!(
        upstream
            .scalar("SELECT count(*) FROM information_schema.tables WHERE table_name LIKE 'air%'"),
        0.0
    );
}
