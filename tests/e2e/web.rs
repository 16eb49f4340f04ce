//! The web pages over plain HTTP (no browser): the home page, static files, sign-in.

use crate::server::TestServer;
use reqwest::blocking::Client;
use reqwest::redirect::Policy;

const T0: i64 = 1_767_225_600_000_000_000; // 2026-01-01T00:00:00Z in ns

fn no_redirects() -> Client {
    Client::builder()
        .redirect(Policy::none())
        .build()
        .expect("client")
}

#[test]
fn home_page_lists_the_tables_with_exact_counts() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), &[]);
    let lines: Vec<String> = (0..1500)
        .map(|i| format!("air,sensor=s{} pm25={i} {}", i % 7, T0 + i * 1_000_000_000))
        .collect();
    server.write_lp("air", &lines.join("\n"));
    // Half of the traffic rows in a Delta file, half in the buffer.
    server.write_lp(
        "traffic",
        &format!("traffic,road=A1 cars=3 {T0}\ntraffic,road=A2 cars=5 {T0}"),
    );
    let flushed = TestServer::client()
        .post(format!("{}/api/v1/admin/flush", server.url))
        .send()
        .unwrap();
    assert_eq!(flushed.status(), 200);
    server.write_lp(
        "traffic",
        &format!("traffic,road=A1 cars=4 {}", T0 + 60_000_000_000),
    );

    let r = TestServer::client()
        .get(format!("{}/", server.url))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/html; charset=utf-8");
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert!(
        r.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'none'")
    );
    let html = r.text().unwrap();
    assert!(html.starts_with("<!doctype html>"), "{html}");
    assert!(html.contains(r#"<html lang="en">"#));
    assert!(html.contains(r##"<a class="skip-link" href="#main">"##));
    assert!(
        html.contains(r#"<th scope="row" class="name">air</th>"#),
        "{html}"
    );
    assert!(
        html.contains(r#"<td class="num rows">1,500</td>"#),
        "{html}"
    );
    assert!(html.contains(r#"<th scope="row" class="name">traffic</th>"#));
    assert!(html.contains(r#"<td class="num rows">3</td>"#), "{html}");
    // Lake totals: air's 1,500 rows and traffic's 2 in files, traffic's last row in memory.
    // air, traffic, `_checkpoints`, `_dead_letters`, the four modules' events tables and the
    // bus's log, deliveries and dead letters (empty), and the kiosk fleet's and the council's
    // tables; the rows the modules wrote as they started (`modules_at_start`).
    let (fleet_tables, started) = crate::server::modules_at_start();
    assert!(
        html.contains(&format!(
            r#"<dd id="total-tables">{}</dd>"#,
            11 + fleet_tables
        )),
        "{html}"
    );
    assert!(
        html.contains(&format!(r#"<dd id="total-rows">1,{}</dd>"#, 503 + started)),
        "{html}"
    );
    assert!(html.contains(r#"<dd id="total-buffered">1</dd>"#), "{html}");
    // Newest rows and the link to each table's SQL.
    assert!(
        html.contains(r#"<time datetime="2026-01-01T00:24:59Z">2026-01-01 00:24:59 UTC</time>"#),
        "{html}"
    );
    assert!(
        html.contains(r#"<time datetime="2026-01-01T00:01:00Z">"#),
        "{html}"
    );
    assert!(html.contains(
        "/api/v1/query?sql=SELECT+*+FROM+%22air%22+ORDER+BY+time+DESC+LIMIT+100&#38;format=json"
    ));
    assert!(html.contains(r#"href="/api/v1/openapi.json""#));
    assert!(html.contains(r#"href="/metrics""#));
    assert!(html.contains(r#"href="/health""#));
    assert!(html.contains(&format!("civiclake {}", env!("CARGO_PKG_VERSION"))));

    // The same data path as GET /api/v1/tables.
    let tables: serde_json::Value = TestServer::client()
        .get(format!("{}/api/v1/tables", server.url))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let traffic = tables
        .as_array()
        .unwrap()
        .iter()
        .position(|t| t["name"] == "traffic")
        .expect("traffic listed");
    let tables = &tables.as_array().unwrap()[traffic - 1..];
    assert_eq!(tables[1]["name"], "traffic");
    assert_eq!(tables[1]["rows"], 3);
    assert_eq!(tables[1]["file_rows"], 2);
    assert_eq!(tables[1]["buffered_rows"], 1);
    assert_eq!(tables[1]["files"], 1);
    assert_eq!(tables[1]["newest_time"], "2026-01-01T00:01:00Z");
    assert!(tables[1].get("newest_time_us").is_none());
    let api: serde_json::Value = TestServer::client()
        .get(format!("{}/api/v1/openapi.json", server.url))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let props = &api["components"]["schemas"]["TableInfo"]["properties"];
    for field in ["rows", "file_rows", "newest_time"] {
        assert!(props.get(field).is_some(), "{field} missing: {props}");
    }
    assert!(props.get("newest_time_us").is_none(), "{props}");

    // The link of a table runs.
    let rows: serde_json::Value = TestServer::client()
        .get(format!(
            "{}/api/v1/query?sql=SELECT+*+FROM+%22traffic%22+ORDER+BY+time+DESC+LIMIT+100&format=json",
            server.url
        ))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 3);
}

#[test]
fn an_empty_lake_shows_how_to_write_a_first_row() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), &[]);
    let html = TestServer::client()
        .get(format!("{}/", server.url))
        .send()
        .unwrap()
        .text()
        .unwrap();
    let host = server.url.trim_start_matches("http://");
    assert!(html.contains("No data yet"), "{html}");
    assert!(
        html.contains(&format!(
            "curl -i -XPOST &#39;http://{host}/api/v1/write?table=air&#39;"
        )),
        "{html}"
    );
    // Only the platform's own tables: `_checkpoints`, `_dead_letters`, the four events tables,
    // the bus's three, the kiosk fleet's and the council's; the only rows are what the modules
    // wrote as they started (`modules_at_start`).
    let (fleet_tables, started) = crate::server::modules_at_start();
    assert!(
        html.contains(&format!(
            r#"<dd id="total-tables">{}</dd>"#,
            9 + fleet_tables
        )),
        "{html}"
    );
    assert!(
        html.contains(&format!(r#"<dd id="total-rows">{started}</dd>"#)),
        "{html}"
    );
}

#[test]
fn static_files_have_content_types_and_cache_headers() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), &[]);
    let client = TestServer::client();
    let html = client
        .get(format!("{}/", server.url))
        .send()
        .unwrap()
        .text()
        .unwrap();
    let href = html
        .split(r#"<link rel="stylesheet" href=""#)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a stylesheet link");
    assert!(href.starts_with("/static/style.css?v="), "{href}");
    let hash = href.trim_start_matches("/static/style.css?v=");
    assert_eq!(hash.len(), 16);

    let versioned = client.get(format!("{}{href}", server.url)).send().unwrap();
    assert_eq!(versioned.status(), 200);
    assert_eq!(
        versioned.headers()["content-type"],
        "text/css; charset=utf-8"
    );
    assert_eq!(
        versioned.headers()["cache-control"],
        "public, max-age=31536000, immutable"
    );
    assert_eq!(versioned.headers()["etag"], format!("\"{hash}\"").as_str());
    assert_eq!(versioned.headers()["x-content-type-options"], "nosniff");
    assert!(versioned.text().unwrap().contains(".skip-link"));

    let plain = client
        .get(format!("{}/static/style.css", server.url))
        .send()
        .unwrap();
    assert_eq!(plain.headers()["cache-control"], "no-cache");
    let etag = plain.headers()["etag"].to_str().unwrap().to_string();
    let again = client
        .get(format!("{}/static/style.css", server.url))
        .header("if-none-match", &etag)
        .send()
        .unwrap();
    assert_eq!(again.status(), 304);
    assert!(again.bytes().unwrap().is_empty());

    let icon = client
        .get(format!("{}/static/favicon.svg", server.url))
        .send()
        .unwrap();
    assert_eq!(icon.headers()["content-type"], "image/svg+xml");

    let missing = client
        .get(format!("{}/static/missing.js", server.url))
        .send()
        .unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(
        missing.text().unwrap(),
        "no static file named \"missing.js\"\n"
    );
    let traversal = client
        .get(format!("{}/static/..%2FCargo.toml", server.url))
        .send()
        .unwrap();
    assert_eq!(traversal.status(), 404);
}

#[test]
fn sign_in_sets_the_token_cookie_and_sign_out_clears_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), &[]);
    let client = no_redirects();

    let form = client.get(format!("{}/login", server.url)).send().unwrap();
    assert_eq!(form.status(), 200);
    let html = form.text().unwrap();
    assert!(html.contains(r#"<label for="token">Access token</label>"#));
    assert!(html.contains(r#"type="password""#));

    let r = client
        .post(format!("{}/login", server.url))
        .form(&[("token", "cl_test-token.123")])
        .send()
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/");
    assert_eq!(
        r.headers()["set-cookie"],
        "civiclake_token=cl_test-token.123; Path=/; HttpOnly; SameSite=Strict"
    );

    let behind_proxy = client
        .post(format!("{}/login", server.url))
        .header("x-forwarded-proto", "https")
        .form(&[("token", "abc")])
        .send()
        .unwrap();
    assert_eq!(
        behind_proxy.headers()["set-cookie"],
        "civiclake_token=abc; Path=/; HttpOnly; SameSite=Strict; Secure"
    );

    let signed_in = client
        .get(format!("{}/", server.url))
        .header("cookie", "civiclake_token=cl_test-token.123")
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(signed_in.contains(r#"<form method="post" action="/logout">"#));

    let out = client
        .post(format!("{}/logout", server.url))
        .send()
        .unwrap();
    assert_eq!(out.status(), 303);
    assert_eq!(out.headers()["location"], "/");
    assert_eq!(
        out.headers()["set-cookie"],
        "civiclake_token=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"
    );

    let empty = client
        .post(format!("{}/login", server.url))
        .form(&[("token", "  ")])
        .send()
        .unwrap();
    assert_eq!(empty.status(), 400);
    assert!(empty.headers().get("set-cookie").is_none());
    assert!(empty.text().unwrap().contains("Enter your access token."));

    let bad = client
        .post(format!("{}/login", server.url))
        .form(&[("token", "a;b")])
        .send()
        .unwrap();
    assert_eq!(bad.status(), 400);
    assert!(bad.text().unwrap().contains("This is not an access token"));

    let cross_site = client
        .post(format!("{}/login", server.url))
        .header("origin", "http://evil.example")
        .form(&[("token", "planted")])
        .send()
        .unwrap();
    assert_eq!(cross_site.status(), 403);
    assert!(cross_site.headers().get("set-cookie").is_none());
}
