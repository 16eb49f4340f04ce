//! Analysts' protocols: the PostgreSQL wire protocol (tokio-postgres: simple and extended
//! queries, the catalog) and Arrow Flight SQL (arrow-flight's client: statements, prepared
//! statements with parameters, metadata) answer as the HTTP API does, with the same token,
//! grants, masks and read-only rules — a denied table is denied on all three.

use crate::server::TestServer;
use arrow::array::{Array, AsArray, Float64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};
use arrow_flight::sql::CommandGetTables;
use arrow_flight::sql::client::FlightSqlServiceClient;
use futures::TryStreamExt;
use serde_json::{Value, json};
use std::sync::Arc;

fn token(dir: &std::path::Path, args: &[&str]) -> String {
    let out = std::process::Command::new(crate::server::binary())
        .args(["token"])
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .output()
        .expect("wire test");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("wire test")
        .lines()
        .last()
        .expect("wire test")
        .trim()
        .to_string()
}

fn http(server: &TestServer, token: &str, sql: &str) -> (u16, Value) {
    let r = reqwest::blocking::Client::new()
        .post(format!("{}/api/v1/query", server.url))
        .bearer_auth(token)
        .json(&json!({ "sql": sql }))
        .send()
        .expect("wire test");
    let status = r.status().as_u16();
    (status, r.json().unwrap_or(Value::Null))
}

async fn pg(
    server: &TestServer,
    user: &str,
    password: &str,
) -> Result<tokio_postgres::Client, String> {
    let addr = server.pg.as_ref().expect("pg endpoint");
    let (host, port) = addr.rsplit_once(':').expect("wire test");
    let (client, connection) = tokio_postgres::connect(
        &format!("host={host} port={port} user={user} password={password} dbname=civiclake"),
        tokio_postgres::NoTls,
    )
    .await
    .map_err(|e| format!("{e:?}"))?;
    tokio::spawn(connection);
    Ok(client)
}

async fn flight(
    server: &TestServer,
    token: &str,
) -> FlightSqlServiceClient<tonic::transport::Channel> {
    let addr = server.flight.as_ref().expect("flight endpoint");
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("wire test")
        .connect()
        .await
        .expect("wire test");
    let mut client = FlightSqlServiceClient::new(channel);
    if !token.is_empty() {
        client.set_header("authorization", format!("Bearer {token}"));
    }
    client
}

async fn fetch(
    client: &mut FlightSqlServiceClient<tonic::transport::Channel>,
    info: arrow_flight::FlightInfo,
) -> Vec<RecordBatch> {
    let mut out = Vec::new();
    for endpoint in info.endpoint {
        let ticket = endpoint.ticket.expect("ticket");
        let stream = client.do_get(ticket).await.expect("wire test");
        out.extend(stream.try_collect::<Vec<_>>().await.expect("wire test"));
    }
    out
}

/// The rows of a result as `sensor=pm25` strings.
fn sensors(batches: &[RecordBatch]) -> Vec<String> {
    let mut out = Vec::new();
    for b in batches {
        let s = arrow::compute::cast(b.column(0), &DataType::Utf8).expect("wire test");
        let v = arrow::compute::cast(b.column(1), &DataType::Float64).expect("wire test");
        for i in 0..b.num_rows() {
            out.push(format!(
                "{}={}",
                s.as_string::<i32>().value(i),
                v.as_primitive::<arrow::datatypes::Float64Type>().value(i)
            ));
        }
    }
    out
}

#[test]
fn postgres_and_flight_sql_answer_as_http_with_the_same_grants() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_secure(
        dir.path(),
        &[
            ("CIVICLAKE_PG_ADDR", "127.0.0.1:0"),
            ("CIVICLAKE_FLIGHT_ADDR", "127.0.0.1:0"),
        ],
    );
    let admin = token(dir.path(), &["create", "--role", "admin"]);
    for (table, body) in [
        (
            "air_quality",
            "air_quality,sensor=a1 pm25=10.5,email=\"mario@example.org\" 1767225600000000000\n\
             air_quality,sensor=a2 pm25=20.5,email=\"anna@example.org\" 1767225601000000000",
        ),
        ("noise", "noise,sensor=n1 laeq=55.0 1767225600000000000"),
    ] {
        let r = reqwest::blocking::Client::new()
            .post(format!("{}/api/v1/write?table={table}", server.url))
            .bearer_auth(&admin)
            .body(body)
            .send()
            .unwrap();
        assert_eq!(r.status(), 204);
    }
    let analyst = token(
        dir.path(),
        &["create", "--role", "analyst", "--tables", "air_*"],
    );
    let (status, expected) = http(
        &server,
        &analyst,
        "SELECT sensor, pm25 FROM air_quality WHERE pm25 > 15 ORDER BY sensor",
    );
    assert_eq!(status, 200, "{expected}");
    assert_eq!(expected, json!([{"sensor": "a2", "pm25": 20.5}]));
    let denied = "SELECT * FROM noise";
    let (status, body) = http(&server, &analyst, denied);
    assert_eq!(status, 400, "{body}");

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        // PostgreSQL: a token as password, any user name.
        let c = pg(&server, "analyst", &analyst).await.unwrap();
        let rows = c
            .simple_query("SELECT count(*) AS n FROM air_quality")
            .await
            .unwrap();
        let n = rows.iter().find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
            _ => None,
        });
        assert_eq!(n.as_deref(), Some("2"));
        // Extended protocol with a parameter: the same answer as HTTP.
        let rows = c
            .query(
                "SELECT sensor, pm25 FROM air_quality WHERE pm25 > $1 ORDER BY sensor",
                &[&15.0f64],
            )
            .await
            .unwrap();
        let got: Vec<(String, f64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        assert_eq!(got, [("a2".to_string(), 20.5)]);
        // Masked for the analyst, as over HTTP.
        let rows = c
            .query("SELECT email FROM air_quality ORDER BY sensor", &[])
            .await
            .unwrap();
        assert_eq!(rows[0].get::<_, String>(0), "***");
        // The denied table, by both protocols' paths.
        let e = c.simple_query(denied).await.unwrap_err();
        assert!(format!("{e:?}").contains("noise"), "{e:?}");
        let e = c.query(denied, &[]).await.unwrap_err();
        assert!(format!("{e:?}").contains("noise"), "{e:?}");
        // Its catalog holds only its tables.
        let rows = c
            .query(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1",
                &[],
            )
            .await
            .unwrap();
        let names: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
        assert_eq!(names, ["air_quality"]);
        let rows = c
            .query("SELECT relname FROM pg_catalog.pg_class WHERE relname = 'noise'", &[])
            .await
            .unwrap();
        assert!(rows.is_empty(), "pg_class shows a denied table");
        // Read-only: no DELETE, no DDL for an analyst.
        for sql in [
            "DELETE FROM air_quality WHERE sensor = 'a1'",
            "CREATE TABLE t AS SELECT 1",
        ] {
            let e = c.simple_query(sql).await.unwrap_err();
            let text = format!("{e:?}");
            assert!(text.contains("42501") || text.contains("may only read"), "{sql}: {text}");
        }
        // Session statements clients send work.
        c.simple_query("SET application_name = 'e2e'").await.unwrap();
        c.simple_query("BEGIN").await.unwrap();
        c.simple_query("COMMIT").await.unwrap();
        // psql's parameterised query: PREPARE, then EXECUTE with the value.
        c.simple_query(
            "PREPARE over(double precision) AS SELECT sensor FROM air_quality WHERE pm25 > $1",
        )
        .await
        .unwrap();
        let rows = c.simple_query("EXECUTE over(15.0)").await.unwrap();
        let got: Vec<String> = rows
            .iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
                _ => None,
            })
            .collect();
        assert_eq!(got, ["a2"]);
        // PREPARE of anything but a query is refused like the statement itself.
        assert!(
            c.simple_query("PREPARE d AS DELETE FROM air_quality")
                .await
                .is_err()
        );
        let v = c.query("SELECT version()", &[]).await.unwrap();
        assert!(v[0].get::<_, String>(0).starts_with("PostgreSQL "));
        let v = c
            .query("SELECT current_database(), current_schema()", &[])
            .await
            .unwrap();
        assert_eq!(
            (v[0].get::<_, String>(0), v[0].get::<_, String>(1)),
            ("civiclake".to_string(), "public".to_string())
        );
        // A wrong token, a wrong database: refused at connection.
        let e = pg(&server, "analyst", "not-a-token").await.unwrap_err();
        assert!(e.contains("password authentication failed"), "{e}");
        // The admin's DELETE runs (an erasure), and the analyst sees it.
        let a = pg(&server, "admin", &admin).await.unwrap();
        a.simple_query("DELETE FROM air_quality WHERE sensor = 'a1'")
            .await
            .unwrap();
        let rows = c
            .query("SELECT count(*) FROM air_quality", &[])
            .await
            .unwrap();
        assert_eq!(rows[0].get::<_, i64>(0), 1);

        // Flight SQL: bearer token on every call.
        let mut f = flight(&server, &analyst).await;
        let info = f
            .execute(
                "SELECT sensor, pm25 FROM air_quality WHERE pm25 > 15 ORDER BY sensor".into(),
                None,
            )
            .await
            .unwrap();
        assert_eq!(sensors(&fetch(&mut f, info).await), ["a2=20.5"]);
        // A prepared statement with a parameter.
        let mut p = f
            .prepare(
                "SELECT sensor, pm25 FROM air_quality WHERE pm25 > $1 ORDER BY sensor".into(),
                None,
            )
            .await
            .unwrap();
        let params = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new("$1", DataType::Float64, true)])),
            vec![Arc::new(Float64Array::from(vec![15.0]))],
        )
        .unwrap();
        p.set_parameters(params).unwrap();
        let info = p.execute().await.unwrap();
        assert_eq!(sensors(&fetch(&mut f, info).await), ["a2=20.5"]);
        // The denied table.
        let e = f.execute(denied.into(), None).await.unwrap_err();
        assert!(e.to_string().contains("noise"), "{e}");
        // Tables with their schemas: only the granted one.
        let info = f
            .get_tables(CommandGetTables {
                include_schema: true,
                ..Default::default()
            })
            .await
            .unwrap();
        let tables = fetch(&mut f, info).await;
        let names: Vec<String> = tables
            .iter()
            .flat_map(|b| {
                let c = b.column_by_name("table_name").unwrap().as_string::<i32>();
                (0..c.len()).map(|i| c.value(i).to_string()).collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(names, ["air_quality"]);
        // Without a token, or with a wrong one: unauthenticated.
        let mut anon = flight(&server, "").await;
        let e = anon.execute("SELECT 1".into(), None).await.unwrap_err();
        assert!(e.to_string().to_lowercase().contains("token"), "{e}");
    });
}

#[test]
fn without_authentication_any_password_is_an_administrator() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), &[("CIVICLAKE_PG_ADDR", "127.0.0.1:0")]);
    server.write_lp("air", "air,sensor=a pm25=1.5 1767225600000000000");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let c = pg(&server, "anyone", "anything").await.unwrap();
        let rows = c.query("SELECT pm25 FROM air", &[]).await.unwrap();
        assert_eq!(rows[0].get::<_, f64>(0), 1.5);
        // Another database name is refused even so.
        let addr = server.pg.clone().unwrap();
        let (host, port) = addr.rsplit_once(':').unwrap();
        let e = tokio_postgres::connect(
            &format!("host={host} port={port} user=a password=b dbname=postgres"),
            tokio_postgres::NoTls,
        )
        .await
        .err()
        .map(|e| format!("{e:?}"))
        .unwrap_or_default();
        assert!(e.contains("civiclake"), "{e}");
    });
}

/// The query limits of the HTTP API hold on both protocols, each with its own error code
/// (PostgreSQL: SQLSTATE 53200 out of memory, 57014 canceled; Flight SQL: RESOURCE_EXHAUSTED,
/// DEADLINE_EXCEEDED), and the server answers normally after them. A wrong bearer token is
/// refused on Flight SQL, as a wrong password is on PostgreSQL.
#[test]
fn query_limits_and_tokens_hold_on_both_protocols() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_secure(
        dir.path(),
        &[
            ("CIVICLAKE_PG_ADDR", "127.0.0.1:0"),
            ("CIVICLAKE_FLIGHT_ADDR", "127.0.0.1:0"),
            ("CIVICLAKE_QUERY__MEMORY_LIMIT", "2MiB"),
            ("CIVICLAKE_QUERY__TIMEOUT", "2s"),
        ],
    );
    let admin = token(dir.path(), &["create", "--role", "admin"]);
    let lines: Vec<String> = (0..20_000i64)
        .map(|i| {
            format!(
                "air,sensor=s{} pm25={i} {}",
                i % 50,
                1_767_225_600_000_000_000 + i * 1_000_000_000
            )
        })
        .collect();
    let r = reqwest::blocking::Client::new()
        .post(format!("{}/api/v1/write?table=air", server.url))
        .bearer_auth(&admin)
        .body(lines.join("\n"))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    // Holds every reading of a sensor at once: over 2 MiB.
    let memory = "SELECT sensor, array_agg(pm25 ORDER BY time) FROM air GROUP BY sensor";
    // Streams in little memory, for far longer than 2 s.
    let time = "SELECT count(*) FROM generate_series(1, 100000000000)";
    let (status, body) = http(&server, &admin, memory);
    assert_eq!(status, 422, "{body}");

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let c = pg(&server, "admin", &admin).await.unwrap();
        for (sql, code, says) in [
            (memory, "53200", "memory limit of 2 MiB"),
            (time, "57014", "time limit of 2s"),
        ] {
            let e = c.query(sql, &[]).await.unwrap_err();
            let db = e.as_db_error().unwrap_or_else(|| panic!("{sql}: {e:?}"));
            assert_eq!(db.code().code(), code, "{sql}: {}", db.message());
            assert!(db.message().contains(says), "{sql}: {}", db.message());
        }
        let n: i64 = c
            .query_one("SELECT count(*) FROM air", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 20_000);

        let mut f = flight(&server, &admin).await;
        for (sql, code, says) in [
            (
                memory,
                tonic::Code::ResourceExhausted,
                "memory limit of 2 MiB",
            ),
            (time, tonic::Code::DeadlineExceeded, "time limit of 2s"),
        ] {
            // The limit may be met while planning (GetFlightInfo) or while the rows stream
            // (DoGet); the gRPC status is in the error's text either way.
            let error = match f.execute(sql.into(), None).await {
                Err(e) => format!("{e:?}"),
                Ok(info) => {
                    let ticket = info.endpoint[0].ticket.clone().expect("ticket");
                    match f.do_get(ticket).await {
                        Err(e) => format!("{e:?}"),
                        Ok(stream) => match stream.try_collect::<Vec<_>>().await {
                            Err(e) => format!("{e:?}"),
                            Ok(_) => panic!("{sql}: no error"),
                        },
                    }
                }
            };
            assert!(error.contains(&format!("{code:?}")), "{sql}: {error}");
            assert!(error.contains(says), "{sql}: {error}");
        }
        let batches = {
            let info = f
                .execute("SELECT count(*) FROM air".into(), None)
                .await
                .unwrap();
            fetch(&mut f, info).await
        };
        let n = arrow::compute::cast(batches[0].column(0), &DataType::Int64).unwrap();
        assert_eq!(
            n.as_primitive::<arrow::datatypes::Int64Type>().value(0),
            20_000
        );

        // A wrong token: unauthenticated on Flight SQL, a refused password on PostgreSQL.
        let mut wrong = flight(&server, "not-a-token").await;
        let e = wrong.execute("SELECT 1".into(), None).await.unwrap_err();
        let e = format!("{e:?}");
        assert!(e.contains("Unauthenticated"), "{e}");
        let e = pg(&server, "admin", "not-a-token")
            .await
            .err()
            .unwrap_or_default();
        assert!(
            e.contains("28P01") || e.to_lowercase().contains("password"),
            "{e}"
        );
    });
}
