//! Analysts' protocols: fetching 1M rows as Arrow over Flight SQL against the same rows as
//! Arrow IPC over HTTP (`POST /api/v1/query`, format arrow), and over the PostgreSQL
//! protocol (rows/s) next to DuckDB's Python fetch of the same rows (its Parquet files).

use super::{Part, Section};
use crate::ctx::Ctx;
use crate::server::{Civiclake, fresh_dir};
use arrow_flight::sql::client::FlightSqlServiceClient;
use futures::TryStreamExt;
use serde_json::json;
use std::process::Command;
use std::time::{Duration, Instant};

/// `wire`: Flight SQL vs HTTP Arrow, PostgreSQL protocol vs DuckDB, 1M rows.
pub(crate) struct Wire;

const ROWS: usize = 1_000_000;
const TRIES: usize = 3;
const SQL: &str = "SELECT time, sensor, district, v, n FROM wire_bench";

fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(l.local_addr().map_err(|e| e.to_string())?.port())
}

fn best(mut f: impl FnMut() -> Result<usize, String>) -> Result<(f64, usize), String> {
    let mut best = f64::INFINITY;
    let mut rows = 0;
    for _ in 0..TRIES {
        let t = Instant::now();
        rows = f()?;
        best = best.min(t.elapsed().as_secs_f64());
    }
    if rows != ROWS {
        return Err(format!("fetched {rows} rows, not {ROWS}"));
    }
    Ok((best, rows))
}

impl Part for Wire {
    fn name(&self) -> &'static str {
        "wire"
    }
    fn about(&self) -> &'static str {
        "1M rows over Flight SQL vs Arrow over HTTP; the PostgreSQL protocol vs DuckDB's Python fetch"
    }
    fn run(&self, ctx: &mut Ctx) -> Result<Section, String> {
        let dir = fresh_dir("wire")?;
        let (pg_port, flight_port) = (free_port()?, free_port()?);
        let server = Civiclake::start_with_args(
            &ctx.settings.civiclake,
            &dir.join("data"),
            &[
                "--pg-addr".into(),
                format!("127.0.0.1:{pg_port}"),
                "--flight-addr".into(),
                format!("127.0.0.1:{flight_port}"),
            ],
        )?;
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(600))
            .build()
            .map_err(|e| e.to_string())?;
        // 1M rows: 1,000 sensors in 10 districts, a reading a minute.
        let t0: u64 = 1_767_225_600;
        for chunk in 0..(ROWS / 10_000) {
            let mut body = String::with_capacity(10_000 * 80);
            for i in 0..10_000 {
                let k = chunk * 10_000 + i;
                body.push_str(&format!(
                    "wire_bench,sensor=s{},district=d{} v={}.5,n={}i {}\n",
                    k % 1000,
                    k % 10,
                    k % 97,
                    k % 13,
                    (t0 + (k / 1000) as u64 * 60) * 1_000_000_000
                ));
            }
            let r = http
                .post(format!("{}/api/v1/write", server.url))
                .body(body)
                .send()
                .map_err(|e| e.to_string())?;
            if !r.status().is_success() {
                return Err(format!("write: {}", r.status()));
            }
        }
        server.flush()?;
        let rt = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;

        let (http_s, _) = best(|| {
            let bytes = http
                .post(format!("{}/api/v1/query", server.url))
                .json(&json!({"sql": SQL, "format": "arrow"}))
                .send()
                .and_then(|r| r.bytes())
                .map_err(|e| e.to_string())?;
            let reader =
                arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None)
                    .map_err(|e| e.to_string())?;
            let mut n = 0;
            for b in reader {
                n += b.map_err(|e| e.to_string())?.num_rows();
            }
            Ok(n)
        })?;

        let (flight_s, _) = best(|| {
            rt.block_on(async {
                let channel = tonic::transport::Endpoint::from_shared(format!(
                    "http://127.0.0.1:{flight_port}"
                ))
                .map_err(|e| e.to_string())?
                .connect()
                .await
                .map_err(|e| e.to_string())?;
                let mut client = FlightSqlServiceClient::new(channel);
                let t_info = Instant::now();
                let info = client
                    .execute(SQL.into(), None)
                    .await
                    .map_err(|e| e.to_string())?;
                if std::env::var_os("WIRE_DEBUG").is_some() {
                    eprintln!("GetFlightInfo {:?}", t_info.elapsed());
                }
                let mut n = 0;
                for endpoint in info.endpoint {
                    let ticket = endpoint.ticket.ok_or("no ticket")?;
                    let batches: Vec<_> = client
                        .do_get(ticket)
                        .await
                        .map_err(|e| e.to_string())?
                        .try_collect()
                        .await
                        .map_err(|e| e.to_string())?;
                    n += batches.iter().map(|b| b.num_rows()).sum::<usize>();
                }
                Ok::<_, String>(n)
            })
        })?;

        let (pg_s, _) = best(|| {
            rt.block_on(async {
                let (client, conn) = tokio_postgres::connect(
                    &format!(
                        "host=127.0.0.1 port={pg_port} user=bench password=x dbname=civiclake"
                    ),
                    tokio_postgres::NoTls,
                )
                .await
                .map_err(|e| format!("{e:?}"))?;
                let task = tokio::spawn(conn);
                // The extended protocol, binary rows: what drivers use.
                let rows = client.query(SQL, &[]).await.map_err(|e| format!("{e:?}"))?;
                drop(client);
                let _ = task.await;
                Ok::<_, String>(rows.len())
            })
        })?;

        // DuckDB's Python fetch of the same rows, from the table's Parquet files.
        let python = ctx.python()?;
        let files = dir.join("data/tables/wire_bench");
        let script = format!(
            "import duckdb, time, json\n\
             con = duckdb.connect()\n\
             con.execute('SET enable_progress_bar = false')\n\
             best = None\n\
             for _ in range({TRIES}):\n\
             \x20   t = time.perf_counter()\n\
             \x20   rows = con.execute(\"SELECT time, sensor, district, v, n FROM read_parquet('{}/**/*.parquet')\").fetchall()\n\
             \x20   s = time.perf_counter() - t\n\
             \x20   best = s if best is None else min(best, s)\n\
             print(json.dumps({{'rows': len(rows), 'secs': best, 'version': duckdb.__version__}}))\n",
            files.display()
        );
        let out = Command::new(python)
            .args(["-c", &script])
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!("duckdb: {}", String::from_utf8_lossy(&out.stderr)));
        }
        // The JSON is the last line (DuckDB may draw a progress bar before it).
        let stdout = String::from_utf8_lossy(&out.stdout);
        let last = stdout
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        let duck: serde_json::Value =
            serde_json::from_str(last).map_err(|e| format!("duckdb output {last:?}: {e}"))?;
        let duck_s = duck["secs"].as_f64().unwrap_or(f64::NAN);
        let duck_rows = duck["rows"].as_u64().unwrap_or(0);
        if duck_rows != ROWS as u64 {
            return Err(format!("duckdb fetched {duck_rows} rows"));
        }
        ctx.record_rss("wire", &server);
        let ratio = flight_s / http_s;
        let rate = |s: f64| ROWS as f64 / s;
        let markdown = format!(
            "### Analysts' protocols: 1M rows\n\n\
             `{SQL}` ({ROWS} rows: time, two tags, a float and an integer field; flushed to Delta), best of {TRIES}, client and server on this machine.\n\n\
             | fetch | time | rows/s | target |\n\
             |---|---|---|---|\n\
             | Arrow IPC over HTTP (`POST /api/v1/query`, format arrow) | {:.0} ms | {:.0} | |\n\
             | Arrow Flight SQL (arrow-flight's client: GetFlightInfo + DoGet) | **{:.0} ms** ({ratio:.2}× HTTP) | {:.0} | ≤ 1.5× HTTP |\n\
             | PostgreSQL protocol (tokio-postgres, extended query, binary rows) | {:.0} ms | **{:.0}** | reported |\n\
             | DuckDB {} from Python, `fetchall()` of the same rows from the table's Parquet files | {:.0} ms | {:.0} | for comparison |\n",
            http_s * 1e3,
            rate(http_s),
            flight_s * 1e3,
            rate(flight_s),
            pg_s * 1e3,
            rate(pg_s),
            duck["version"].as_str().unwrap_or("?"),
            duck_s * 1e3,
            rate(duck_s),
        );
        Ok(Section {
            markdown,
            json: json!({
                "rows": ROWS,
                "http_arrow_s": http_s,
                "flight_sql_s": flight_s,
                "flight_over_http": ratio,
                "pg_s": pg_s,
                "pg_rows_per_s": rate(pg_s),
                "duckdb_python_s": duck_s,
                "duckdb_version": duck["version"],
            }),
        })
    }
}
