//! The `sql`, `import` and `config` commands.

use crate::server::{TestServer, binary};
use std::process::Command;

fn run(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(binary())
        .args(args)
        .output()
        .expect("run civiclake");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn sql_against_a_server_and_a_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), &[]);
    server.write_lp(
        "air",
        "air,sensor=s1 pm25=10 1767225600000000000\nair,sensor=s2 pm25=20.5 1767225600000000000",
    );
    let (ok, out, err) = run(&[
        "sql",
        "--server",
        &server.url,
        "SELECT sensor, pm25 FROM air ORDER BY sensor",
    ]);
    assert!(ok, "{err}");
    let expected = "+--------+------+\n| sensor | pm25 |\n+--------+------+\n| s1     | 10.0 |\n| s2     | 20.5 |\n+--------+------+\n";
    assert_eq!(out, expected);
    let (ok, out, _) = run(&[
        "sql",
        "--server",
        &server.url,
        "--format",
        "csv",
        "SELECT sensor, pm25 FROM air ORDER BY sensor",
    ]);
    assert!(ok);
    assert_eq!(out, "sensor,pm25\ns1,10.0\ns2,20.5\n");
    let (ok, out, _) = run(&[
        "sql",
        "--server",
        &server.url,
        "--format",
        "json",
        "SELECT count(*) AS n FROM air",
    ]);
    assert!(ok);
    assert_eq!(out.trim(), "{\"n\":2}");
    let (ok, _, err) = run(&["sql", "--server", &server.url, "SELECT * FROM nope"]);
    assert!(!ok);
    assert!(err.contains("not found"), "{err}");
    // The interactive prompt, fed from a pipe: statements end with ';', \q quits.
    let mut child = Command::new(binary())
        .args(["sql", "--server", &server.url])
        .env("HOME", dir.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin
            .write_all(b"SELECT count(*) AS n\n  FROM air;\nSELECT * FROM nope;\n\\q\n")
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains("| n |") && stdout.contains("| 2 |"),
        "{stdout}"
    );
    assert!(stdout.contains("1 row(s) in "), "{stdout}");
    assert!(stderr.contains("not found"), "{stderr}");
    let history =
        std::fs::read_to_string(dir.path().join(".civiclake_history")).unwrap_or_default();
    assert!(history.contains("FROM air;"), "history: {history}");
    // Read-only, beside the running server: sees the WAL-buffered rows.
    let (ok, out, err) = run(&[
        "sql",
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--format",
        "csv",
        "SELECT sum(pm25) AS s FROM air",
    ]);
    assert!(ok, "{err}");
    assert_eq!(out, "s\n30.5\n");
}

#[test]
fn import_files_of_every_format() {
    let dir = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let csv = files.path().join("readings.csv");
    std::fs::write(
        &csv,
        "time,sensor,pm25\n2026-01-01T00:00:00Z,s1,10.5\n2026-01-01T00:01:00Z,s2,11.5\n",
    )
    .unwrap();
    let ndjson = files.path().join("readings.ndjson");
    std::fs::write(
        &ndjson,
        "{\"time\":\"2026-01-01T00:02:00Z\",\"sensor\":\"s3\",\"pm25\":12.5}\n",
    )
    .unwrap();
    let lp = files.path().join("readings.lp");
    std::fs::write(&lp, "air,sensor=s4 pm25=13.5 1767225780000000000\n").unwrap();
    // Parquet: exported by civiclake itself from another table.
    let server = TestServer::start(dir.path(), &[]);
    server.write_lp("src", "src,sensor=s5 pm25=14.5 1767225840000000000");
    let pq = TestServer::client()
        .get(format!("{}/api/v1/query", server.url))
        .query(&[("sql", "SELECT * FROM src"), ("format", "parquet")])
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    let parquet = files.path().join("readings.parquet");
    std::fs::write(&parquet, &pq).unwrap();
    let (ok, out, err) = run(&[
        "import",
        "--server",
        &server.url,
        "--table",
        "air",
        csv.to_str().unwrap(),
        ndjson.to_str().unwrap(),
        lp.to_str().unwrap(),
        parquet.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert!(out.starts_with("imported 5 rows in "), "{out}");
    assert!(out.contains("rows/s"), "{out}");
    let rows = server.query("SELECT sensor, pm25 FROM air ORDER BY time");
    let got: Vec<(String, f64)> = rows
        .iter()
        .map(|r| {
            (
                r["sensor"].as_str().unwrap().to_string(),
                r["pm25"].as_f64().unwrap(),
            )
        })
        .collect();
    let want: Vec<(String, f64)> = (1..=5).map(|i| (format!("s{i}"), 9.5 + i as f64)).collect();
    assert_eq!(got, want);

    // Straight into a data directory (no server on it).
    let dir2 = tempfile::tempdir().unwrap();
    let (ok, out, err) = run(&[
        "import",
        "--data-dir",
        dir2.path().to_str().unwrap(),
        "--table",
        "air",
        csv.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert!(out.starts_with("imported 2 rows"), "{out}");
    let (ok, out, _) = run(&[
        "sql",
        "--data-dir",
        dir2.path().to_str().unwrap(),
        "--format",
        "csv",
        "SELECT count(*) AS n FROM air",
    ]);
    assert!(ok);
    assert_eq!(out, "n\n2\n");

    let (ok, _, err) = run(&[
        "import",
        "--server",
        &server.url,
        "--table",
        "air",
        "/nonexistent.csv",
    ]);
    assert!(!ok);
    assert!(err.contains("nonexistent.csv"), "{err}");
}

#[test]
fn config_example_and_serve_help_document_every_setting() {
    let (ok, example, _) = run(&["config", "example"]);
    assert!(ok);
    let committed = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/civiclake.example.toml"
    ))
    .unwrap();
    assert_eq!(example, committed);
    let (ok, help, _) = run(&["serve", "--help"]);
    assert!(ok);
    for needle in [
        "--data-dir",
        "CIVICLAKE_DATA_DIR",
        "--flush-max-age",
        "CIVICLAKE_FLUSH__MAX_AGE",
        "[default: 5m]",
        "--query-memory-limit",
    ] {
        assert!(
            help.contains(needle),
            "serve --help lacks {needle}:\n{help}"
        );
    }
    let (ok, _, err) = run(&["serve", "--flush-max-age", "soon"]);
    assert!(!ok);
    assert!(err.contains("invalid duration"), "{err}");
}
