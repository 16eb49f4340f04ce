//! The HTTP API as a client sees it: writes in every format, queries in every format,
//! errors, OpenAPI, health and metrics.

use crate::server::TestServer;
use arrow::array::{AsArray, Float64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Float64Type, Schema, TimeUnit};
use serde_json::{Value, json};
use std::sync::Arc;

const T0: i64 = 1_767_225_600_000_000_000; // 2026-01-01T00:00:00Z in ns

fn lp_rows(n: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                "air,sensor=s{:03},district=d{} pm25={},battery={} {}",
                i % 50,
                i % 6,
                (i % 100) as f64 / 2.0,
                100 - (i % 10),
                T0 + i as i64 * 60_000_000_000
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn line_protocol_write_is_queryable_at_once_in_every_format() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), &[]);
    server.write_lp("air", &lp_rows(1000));
    // Visible immediately (from the buffer).
    let rows =
        server.query("SELECT count(*) AS n, sum(pm25) AS s, count(DISTINCT sensor) AS k FROM air");
    assert_eq!(rows[0]["n"], 1000);
    let expected_sum: f64 = (0..1000).map(|i| (i % 100) as f64 / 2.0).sum();
    assert_eq!(rows[0]["s"].as_f64().unwrap(), expected_sum);
    assert_eq!(rows[0]["k"], 50);

    let client = TestServer::client();
    let sql = "SELECT sensor, time, pm25 FROM air WHERE sensor = 's001' ORDER BY time LIMIT 2";
    let get = |format: &str| {
        let r = client
            .get(format!("{}/api/v1/query", server.url))
            .query(&[("sql", sql), ("format", format)])
            .send()
            .unwrap();
        assert_eq!(r.status(), 200, "format {format}");
        let ct = r.headers()["content-type"].to_str().unwrap().to_string();
        (ct, r.bytes().unwrap())
    };
    let (ct, json_body) = get("json");
    assert_eq!(ct, "application/json");
    let v: Value = serde_json::from_slice(&json_body).unwrap();
    assert_eq!(
        v[0],
        json!({"sensor": "s001", "time": "2026-01-01T00:01:00Z", "pm25": 0.5})
    );

    let (ct, jsonl) = get("jsonl");
    assert_eq!(ct, "application/x-ndjson");
    let lines: Vec<&str> = std::str::from_utf8(&jsonl).unwrap().lines().collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(
        serde_json::from_str::<Value>(lines[1]).unwrap()["time"],
        "2026-01-01T00:51:00Z"
    );

    let (ct, csv) = get("csv");
    assert!(ct.starts_with("text/csv"));
    let csv = String::from_utf8(csv.to_vec()).unwrap();
    assert_eq!(csv.lines().next().unwrap(), "sensor,time,pm25");
    assert_eq!(csv.lines().nth(1).unwrap(), "s001,2026-01-01T00:01:00Z,0.5");

    let (ct, arrow_body) = get("arrow");
    assert_eq!(ct, "application/vnd.apache.arrow.stream");
    let reader =
        arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(arrow_body), None).unwrap();
    let batches: Vec<RecordBatch> = reader.collect::<Result<_, _>>().unwrap();
    let b = &batches[0];
    assert_eq!(
        b.schema().field(1).data_type(),
        &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
    );
    assert_eq!(b.column(2).as_primitive::<Float64Type>().value(1), 25.5);

    let (ct, pq) = get("parquet");
    assert_eq!(ct, "application/vnd.apache.parquet");
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(pq)
        .unwrap()
        .build()
        .unwrap();
    let rows: usize = reader.map(|b| b.unwrap().num_rows()).sum();
    assert_eq!(rows, 2);
}

#[test]
fn json_ndjson_and_arrow_writes() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), &[]);
    let client = TestServer::client();
    let r = client
        .post(format!("{}/api/v1/write?table=bins", server.url))
        .json(&json!([
            {"bin": "b1", "fill": 0.5, "time": "2026-01-01T10:00:00Z"},
            {"bin": "b2", "fill": 0.9, "time": "2026-01-01T10:00:00.123456Z", "battery": 80}
        ]))
        .send()
        .unwrap();
    assert_eq!(r.status(), 204, "{}", r.text().unwrap());
    let r = client
        .post(format!("{}/api/v1/write?table=bins&precision=ms", server.url))
        .header("content-type", "application/x-ndjson")
        .body("{\"bin\":\"b3\",\"fill\":0.25,\"time\":1767261600000}\n\n{\"bin\":\"b4\",\"fill\":0.75,\"time\":1767261660000}\n")
        .send()
        .unwrap();
    assert_eq!(r.status(), 204, "{}", r.text().unwrap());

    let schema = Arc::new(Schema::new(vec![
        Field::new(
            "time",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            false,
        ),
        Field::new("bin", DataType::Utf8, false),
        Field::new("fill", DataType::Float64, true),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(arrow::array::TimestampMillisecondArray::from(vec![
                1_767_265_200_000,
                1_767_265_260_000,
            ])),
            Arc::new(StringArray::from(vec!["b5", "b6"])),
            Arc::new(Float64Array::from(vec![Some(0.1), None])),
        ],
    )
    .unwrap();
    let mut body = Vec::new();
    {
        let mut w = arrow::ipc::writer::StreamWriter::try_new(&mut body, &schema).unwrap();
        w.write(&batch).unwrap();
        w.finish().unwrap();
    }
    let r = client
        .post(format!("{}/api/v1/write?table=bins", server.url))
        .header("content-type", "application/vnd.apache.arrow.stream")
        .body(body)
        .send()
        .unwrap();
    assert_eq!(r.status(), 204, "{}", r.text().unwrap());

    let rows = server.query("SELECT bin, fill, battery, time FROM bins ORDER BY bin");
    assert_eq!(rows.len(), 6);
    assert_eq!(rows[1]["time"], "2026-01-01T10:00:00.123456Z");
    assert_eq!(rows[1]["battery"], 80.0);
    assert_eq!(rows[0]["battery"], Value::Null);
    assert_eq!(rows[2]["time"], "2026-01-01T10:00:00Z");
    assert_eq!(rows[5]["fill"], Value::Null);
    assert_eq!(rows[4]["time"], "2026-01-01T11:00:00Z");
}

#[test]
fn bad_input_gets_clear_errors_and_nothing_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), &[]);
    let client = TestServer::client();
    let post = |query: &str, ct: &str, body: &str| {
        let r = client
            .post(format!("{}/api/v1/write?{query}", server.url))
            .header("content-type", ct)
            .body(body.to_string())
            .send()
            .unwrap();
        let status = r.status().as_u16();
        let text = r.text().unwrap();
        (
            status,
            serde_json::from_str::<Value>(&text).unwrap_or(Value::String(text)),
        )
    };
    let body = "air,sensor=s1 pm25=1 1767225600000000000\nair,sensor=s2 pm25=abc 1767225600000000000\nair,sensor=s3 pm25=3 1767225600000000000\nair,sensor=s4 1767225600000000000";
    let (status, v) = post("table=air", "text/plain", body);
    assert_eq!(status, 400);
    assert!(
        v["error"].as_str().unwrap().contains("nothing was written"),
        "{v}"
    );
    assert_eq!(v["errors"][0]["line"], 2);
    assert!(v["errors"][0]["column"].as_u64().unwrap() > 1);
    assert!(
        v["errors"][0]["message"].as_str().unwrap().contains("pm25"),
        "{v}"
    );
    assert_eq!(v["errors"][1]["line"], 4);
    // Whole request rejected: the table does not even exist.
    let r = client
        .post(format!("{}/api/v1/query", server.url))
        .json(&json!({"sql": "SELECT count(*) FROM air"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().unwrap().contains("not found"));

    // accept_partial writes the good rows and returns the rejected ones.
    let (status, v) = post("table=air&accept_partial=true", "text/plain", body);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["rows_written"], 2);
    assert_eq!(v["rejected"].as_array().unwrap().len(), 2);
    assert_eq!(server.scalar("SELECT sum(pm25) FROM air"), 4.0);

    // A type conflict with the table names the column and both types.
    let (status, v) = post(
        "table=air",
        "application/json",
        r#"{"sensor":"s9","pm25":"high","time":"2026-01-01T00:00:00Z"}"#,
    );
    assert_eq!(status, 400);
    let msg = v.to_string();
    assert!(
        msg.contains("pm25") && msg.contains("float") && msg.contains("string"),
        "{msg}"
    );

    // Unsupported media type, bad precision, bad JSON, bad table name.
    let (status, _) = post("table=air", "application/xml", "<a/>");
    assert_eq!(status, 415);
    let (status, v) = post("table=air&precision=weeks", "text/plain", "air v=1");
    assert_eq!(status, 400);
    assert!(v["error"].as_str().unwrap().contains("precision"));
    let (status, v) = post("table=air", "application/json", "{not json");
    assert_eq!(status, 400);
    assert!(v["error"].as_str().unwrap().contains("JSON"), "{v}");
    let (status, _) = post("table=no/such", "text/plain", "x v=1");
    assert_eq!(status, 400);

    // SQL errors are 400 with DataFusion's message.
    let r = client
        .post(format!("{}/api/v1/query", server.url))
        .json(&json!({"sql": "SELECT nope FROM air"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().unwrap().contains("nope"));
    let r = client
        .post(format!("{}/api/v1/query", server.url))
        .json(&json!({"sql": "SELECT 1", "format": "xml"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().unwrap();
    assert!(v["error"].as_str().unwrap().contains("format"), "{v}");
    let (status, v) = post("table=air&accept_partial=maybe", "text/plain", "air v=1");
    assert_eq!(status, 400);
    assert!(
        v["error"].as_str().unwrap().contains("accept_partial"),
        "{v}"
    );
    // Still exactly the two good rows.
    assert_eq!(server.scalar("SELECT count(*) FROM air"), 2.0);
}

#[test]
fn query_limits_give_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(
        dir.path(),
        &[
            ("CIVICLAKE_QUERY__MEMORY_LIMIT", "2MiB"),
            ("CIVICLAKE_QUERY__TIMEOUT", "2s"),
        ],
    );
    server.write_lp("air", &lp_rows(20_000));
    let client = TestServer::client();
    let r = client
        .post(format!("{}/api/v1/query", server.url))
        .json(&json!({"sql": "SELECT a.sensor, b.sensor, a.pm25 FROM air a CROSS JOIN air b ORDER BY a.pm25 * b.pm25, a.time, b.time"}))
        .send()
        .unwrap();
    let status = r.status().as_u16();
    let text = r.text().unwrap();
    assert_eq!(status, 422, "{text}");
    assert!(
        text.contains("memory limit of 2 MiB") || text.contains("time limit of 2s"),
        "{text}"
    );
    let r = client
        .post(format!("{}/api/v1/query", server.url))
        .json(&json!({"sql": "SELECT sensor, array_agg(pm25 ORDER BY time) FROM air GROUP BY sensor"}))
        .send()
        .unwrap();
    let text = r.text().unwrap();
    assert!(text.contains("memory limit of 2 MiB"), "{text}");
    // The server still answers normal queries.
    assert_eq!(server.scalar("SELECT count(*) FROM air"), 20_000.0);
}

#[test]
fn openapi_health_metrics_and_tables() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), &[]);
    server.write_lp("air", &lp_rows(10));
    let client = TestServer::client();
    let api: Value = client
        .get(format!("{}/api/v1/openapi.json", server.url))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert!(api["openapi"].as_str().unwrap().starts_with("3.1"));
    for path in [
        "/api/v1/write",
        "/api/v1/query",
        "/health",
        "/metrics",
        "/api/v1/tables",
        "/api/v1/admin/flush",
        "/api/v1/admin/delete",
    ] {
        assert!(
            api["paths"].get(path).is_some(),
            "{path} missing from the OpenAPI document"
        );
    }
    assert!(api["paths"]["/api/v1/query"].get("get").is_some());
    assert!(api["paths"]["/api/v1/query"].get("post").is_some());

    let health: Value = client
        .get(format!("{}/health", server.url))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["version"], env!("CARGO_PKG_VERSION"));
    // Liveness and version only: table details need a token.
    assert!(health.get("tables").is_none(), "{health}");
    assert!(health.get("buffered_rows").is_none(), "{health}");

    server.query("SELECT 1");
    let metrics = client
        .get(format!("{}/metrics", server.url))
        .send()
        .unwrap()
        .text()
        .unwrap();
    // This test's 10 rows, and what the modules wrote as they started (`modules_at_start`).
    let (_, started) = crate::server::modules_at_start();
    assert!(
        metrics.contains(&format!("civiclake_rows_written_total {}\n", 10 + started)),
        "{metrics}"
    );
    assert!(metrics.contains("civiclake_queries_total 1\n"), "{metrics}");
    assert!(
        metrics.contains("civiclake_write_duration_seconds_count 1\n"),
        "{metrics}"
    );
    assert!(metrics.contains("# TYPE civiclake_wal_bytes gauge"));

    let flushed: Value = client
        .post(format!("{}/api/v1/admin/flush", server.url))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(flushed["rows"], 10 + started);
    let tables: Value = client
        .get(format!("{}/api/v1/tables", server.url))
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
    assert_eq!(
        names,
        [
            "_checkpoints",
            "_dead_letters",
            "air",
            "bus_catalog_events",
            "bus_dead_letters",
            "bus_deliveries",
            "bus_events",
            "council_act_records",
            "council_act_steps",
            "council_agenda_items",
            "council_attendance_records",
            "council_ballots",
            "council_councillor_records",
            "council_events",
            "council_fee_policy",
            "council_fee_rates",
            "council_members",
            "council_session_records",
            "council_votes",
            "kiosk_availability_daily",
            "kiosk_channel_collections",
            "kiosk_events",
            "kiosk_heartbeats_1m",
            "kiosk_refused",
            "kiosk_registry",
            "kiosk_status_changes",
            "kiosk_transaction_notices",
            "kiosk_transactions",
            "school_events"
        ]
    );
    let air = &tables[2];
    assert_eq!(air["files"], 1);
    assert_eq!(air["buffered_rows"], 0);
    assert_eq!(
        air["columns"][0],
        json!({"name": "time", "role": "time", "data_type": "Timestamp(µs, \"UTC\")"})
    );
    assert_eq!(air["columns"][1]["role"], "tag");
    // The flushed rows are read back from Delta.
    assert_eq!(server.scalar("SELECT count(*) FROM air"), 10.0);
}

#[test]
fn admin_delete_hides_rows_at_once_and_after_a_kill() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = TestServer::start(dir.path(), &[]);
    let client = TestServer::client();
    // What the modules wrote as they started is flushed first.
    client
        .post(format!("{}/api/v1/admin/flush", server.url))
        .send()
        .unwrap();
    server.write_lp("air", &lp_rows(100));
    let flushed: Value = client
        .post(format!("{}/api/v1/admin/flush", server.url))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(flushed["rows"], 100);
    server.write_lp(
        "air",
        &format!(
            "air,sensor=s001,district=d0 pm25=1 {}\nair,sensor=s999,district=d1 pm25=2 {}",
            T0 + 1,
            T0 + 2
        ),
    );
    let delete = |body: Value| {
        let r = client
            .post(format!("{}/api/v1/admin/delete", server.url))
            .json(&body)
            .send()
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json::<Value>().unwrap())
    };

    let (status, body) =
        delete(json!({"table": "air", "where": "sensor = 's001' OR district = 'd5'"}));
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"table": "air", "buffer_rows_deleted": 1, "pending_for_files": true})
    );
    let kept_in_files = (0..100).filter(|i| i % 50 != 1 && i % 6 != 5).count();
    let expected = (kept_in_files + 1) as f64;
    assert_eq!(server.scalar("SELECT count(*) FROM air"), expected);
    assert_eq!(
        server.scalar("SELECT count(*) FROM air WHERE sensor = 's001' OR district = 'd5'"),
        0.0
    );

    // Errors: a bad condition is a 400 with the reason, an unknown table a 404.
    let (status, body) = delete(json!({"table": "air", "where": "sensor = "}));
    assert_eq!(status, 400);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .starts_with("cannot parse the condition"),
        "{body}"
    );
    let (status, body) = delete(json!({"table": "air", "where": "pm25 > battery"}));
    assert_eq!(status, 400);
    assert!(
        body["error"].as_str().unwrap().contains("is not supported"),
        "{body}"
    );
    let (status, body) = delete(json!({"table": "air", "where": "pm25 > 'high'"}));
    assert_eq!(status, 400);
    assert_eq!(
        body["error"],
        "invalid condition on table 'air': column 'pm25' is float and cannot be compared with 'high'"
    );
    let (status, body) = delete(json!({"table": "nope", "where": "pm25 > 1"}));
    assert_eq!(status, 404);
    assert_eq!(body["error"], "table 'nope' does not exist");
    let (status, body) = delete(json!({"table": "air"}));
    assert_eq!(status, 400);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .starts_with("invalid delete request"),
        "{body}"
    );

    // The delete is in the WAL: after SIGKILL the restarted server hides the rows again,
    // and its flush removes them from the files.
    server.kill9();
    let server = server.restart();
    assert_eq!(server.scalar("SELECT count(*) FROM air"), expected);
    let flushed: Value = client
        .post(format!("{}/api/v1/admin/flush", server.url))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(flushed["rows_deleted"], 100 - kept_in_files);
    assert_eq!(server.scalar("SELECT count(*) FROM air"), expected);

    let api: Value = client
        .get(format!("{}/api/v1/openapi.json", server.url))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let schema = &api["components"]["schemas"]["DeleteRequest"]["properties"];
    assert!(schema.get("where").is_some(), "{schema}");
}
