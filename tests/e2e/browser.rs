//! Browser tests: the real server's pages in Debian's headless Chromium, driven over
//! WebDriver (chromedriver) with fantoccini.
//!
//! Every page visited is checked for console errors (any `SEVERE` entry of the browser log:
//! a failed resource, a Content-Security-Policy violation, a script error fails the test) and
//! each test leaves a screenshot in `target/browser-screenshots/<test>.png`.
//!
//! Without `/usr/bin/chromium` and `/usr/bin/chromedriver` the tests print one line and
//! pass, unless `CIVICLAKE_REQUIRE_BROWSER=1` (set by `.ci/run`), which makes them fail.

use crate::server::{TestServer, wait_until};
use fantoccini::actions::{InputSource, KeyAction, KeyActions};
use fantoccini::key::Key;
use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard, Once};
use std::time::Duration;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const T0: i64 = 1_767_225_600_000_000_000; // 2026-01-01T00:00:00Z in ns

/// One browser at a time: Chromium is heavy and the test machines are small.
static ONE_BROWSER: Mutex<()> = Mutex::new(());

/// A headless Chromium behind its own chromedriver, with a fresh profile.
struct Browser {
    test: &'static str,
    client: Option<Client>,
    driver: Child,
    runtime: tokio::runtime::Runtime,
    profile: tempfile::TempDir,
    _one: MutexGuard<'static, ()>,
}

/// Starts a browser for `test`, or returns `None` (after saying so) when none is installed.
fn browser(test: &'static str) -> Option<Browser> {
    let installed = Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists();
    if !installed {
        assert!(
            std::env::var("CIVICLAKE_REQUIRE_BROWSER").as_deref() != Ok("1"),
            "CIVICLAKE_REQUIRE_BROWSER=1 but chromium/chromedriver are not installed \
             (apt-get install chromium chromium-driver)"
        );
        // Straight to stderr, past the test harness's output capture, once per run.
        static SAID: Once = Once::new();
        SAID.call_once(|| {
            let _ = std::io::stderr().write_all(
                b"browser tests skipped: chromium/chromedriver not installed \
                  (apt-get install chromium chromium-driver)\n",
            );
        });
        return None;
    }
    let one = ONE_BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    let profile = tempfile::tempdir().expect("profile dir");
    let port = free_port();
    let log = profile.path().join("chromedriver.log");
    let driver = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .arg(format!("--log-path={}", log.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let driver_url = format!("http://127.0.0.1:{port}/");
    let status = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    wait_until(Duration::from_secs(30), "chromedriver to be ready", || {
        status
            .get(format!("{driver_url}status"))
            .send()
            .and_then(|r| r.json::<Value>())
            .is_ok_and(|v| v["value"]["ready"] == true)
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut browser = Browser {
        test,
        client: None,
        driver,
        runtime,
        profile,
        _one: one,
    };
    let capabilities = json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": CHROMIUM,
            "args": [
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--window-size=1280,900",
                format!("--user-data-dir={}", browser.profile.path().join("chromium").display()),
            ],
        },
        "goog:loggingPrefs": {"browser": "ALL"},
    });
    let Value::Object(capabilities) = capabilities else {
        unreachable!("a JSON object")
    };
    let client = browser.runtime.block_on(async {
        ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&driver_url)
            .await
    });
    match client {
        Ok(client) => browser.client = Some(client),
        Err(e) => panic!(
            "could not start chromium through chromedriver: {e}\nchromedriver log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        ),
    }
    Some(browser)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// chromedriver's `POST /session/{id}/se/log` `{"type": "browser"}`: the console entries
/// logged since the last call.
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        let id = session_id.ok_or(url::ParseError::EmptyHost)?;
        base_url.join(&format!("session/{id}/se/log"))
    }

    fn method_and_body(&self, _request_url: &url::Url) -> (http::Method, Option<String>) {
        (
            http::Method::POST,
            Some(r#"{"type":"browser"}"#.to_string()),
        )
    }
}

impl Browser {
    fn client(&self) -> &Client {
        self.client.as_ref().expect("a session")
    }

    /// Opens `url` and checks the console.
    fn open(&self, url: &str) {
        self.runtime
            .block_on(self.client().goto(url))
            .unwrap_or_else(|e| panic!("open {url}: {e}"));
        self.assert_no_console_errors(url);
    }

    /// The messages of the `SEVERE` console entries logged since the last call.
    fn console_errors(&self) -> Vec<String> {
        let entries = self
            .runtime
            .block_on(self.client().issue_cmd(BrowserLog))
            .expect("the browser log");
        entries
            .as_array()
            .expect("an array of log entries")
            .iter()
            .filter(|e| e["level"] == "SEVERE")
            .map(|e| e["message"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    /// Fails on any `SEVERE` console entry since the last check.
    fn assert_no_console_errors(&self, page: &str) {
        let errors = self.console_errors();
        assert!(
            errors.is_empty(),
            "console errors on {page}:\n{}",
            errors.join("\n")
        );
    }

    /// Runs `script` (a function body; `return` gives the value) in the page.
    fn js(&self, script: &str) -> Value {
        self.runtime
            .block_on(self.client().execute(script, Vec::new()))
            .unwrap_or_else(|e| panic!("script {script}: {e}"))
    }

    /// The text of every element matching `css`.
    fn texts(&self, css: &str) -> Vec<String> {
        let v = self.js(&format!(
            "return Array.from(document.querySelectorAll({})).map(e => e.textContent.trim());",
            json!(css)
        ));
        serde_json::from_value(v).expect("strings")
    }

    /// Presses and releases `key` on whatever has the focus.
    fn press(&self, key: Key) {
        let key = char::from(key);
        let actions = KeyActions::new("keyboard".to_string())
            .then(KeyAction::Down { value: key })
            .then(KeyAction::Up { value: key });
        self.runtime
            .block_on(self.client().perform_actions(actions))
            .expect("key press");
    }

    /// Saves a screenshot to `target/browser-screenshots/<test>.png` and returns its path.
    fn screenshot(&self) -> PathBuf {
        self.screenshot_as(self.test)
    }

    /// Saves a screenshot to `target/browser-screenshots/<name>.png` and returns its path.
    fn screenshot_as(&self, name: &str) -> PathBuf {
        let png = self
            .runtime
            .block_on(self.client().screenshot())
            .expect("screenshot");
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .parent()
            .expect("the target directory")
            .join("browser-screenshots");
        std::fs::create_dir_all(&dir).expect("screenshot dir");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("write screenshot");
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            let _ = self.runtime.block_on(client.close());
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn assert_png(path: &Path) {
    let bytes = std::fs::read(path).expect("screenshot file");
    assert!(
        bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 1000,
        "{} is not a PNG",
        path.display()
    );
}

#[test]
fn browser_home_page_shows_the_tables_and_works_with_the_keyboard() {
    let Some(browser) = browser("home_page") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), &[]);
    let air: Vec<String> = (0..1234)
        .map(|i| format!("air,sensor=s{} pm25={i} {}", i % 5, T0 + i * 1_000_000_000))
        .collect();
    server.write_lp("air", &air.join("\n"));
    server.write_lp(
        "traffic",
        &format!("traffic,road=A1 cars=3 {T0}\ntraffic,road=A2 cars=5 {T0}"),
    );

    browser.open(&format!("{}/", server.url));
    assert_png(&browser.screenshot());
    assert_eq!(browser.js("return document.title;"), "Tables · civiclake");
    // The two tables written here, and the platform's own: empty but for the rows the modules
    // write as they start (the kiosk's service catalog, the council's settings and fee
    // policy, their bus schemas).
    let catalog = civiclake_kiosk::fleet::registry::default_catalog().len();
    let schemas = crate::server::module_bus_schemas().len();
    let mut expected: Vec<(String, usize)> = [
        ("_checkpoints", 0),
        ("_dead_letters", 0),
        ("air", 1234),
        ("bus_catalog_events", schemas),
        ("bus_dead_letters", 0),
        ("bus_deliveries", 0),
        ("bus_events", 0),
        ("council_events", crate::server::COUNCIL_SETTINGS),
        ("kiosk_events", catalog),
        ("school_events", 0),
        ("traffic", 2),
    ]
    .into_iter()
    .map(|(name, rows)| (name.to_string(), rows))
    .chain(
        civiclake_kiosk::fleet::tables::tables()
            .into_iter()
            .chain(civiclake_council::tables::tables())
            .map(|(name, _)| {
                let rows = usize::from(name == civiclake_council::tables::FEE_POLICY);
                (name.to_string(), rows)
            }),
    )
    .collect();
    expected.sort();
    let thousands = |n: usize| {
        let s = n.to_string();
        let mut out = String::new();
        for (i, c) in s.chars().enumerate() {
            if i > 0 && (s.len() - i).is_multiple_of(3) {
                out.push(',');
            }
            out.push(c);
        }
        out
    };
    assert_eq!(
        browser.texts("tbody th.name"),
        expected.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>(),
        "table names in the rendered DOM"
    );
    assert_eq!(
        browser.texts("tbody td.rows"),
        expected
            .iter()
            .map(|(_, rows)| thousands(*rows))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        browser.texts("#total-rows"),
        [thousands(
            1236 + catalog + schemas + crate::server::COUNCIL_SETTINGS + 1
        )]
    );

    // The stylesheet is loaded and applied.
    let style = browser.js("const s = getComputedStyle(document.body);
         const skip = getComputedStyle(document.querySelector('.skip-link'));
         return [s.marginTop, skip.position, document.styleSheets.length];");
    assert_eq!(style, json!(["0px", "absolute", 1]));

    // The skip link is the first thing the keyboard reaches, and it is shown when focused.
    browser.press(Key::Tab);
    let focused = browser.js("const a = document.activeElement;
         return [a.className, a.getAttribute('href'), a.getBoundingClientRect().top >= 0];");
    assert_eq!(focused, json!(["skip-link", "#main", true]));
    browser.press(Key::Enter);
    assert_eq!(browser.js("return document.activeElement.id;"), "main");

    // Every link to a table's rows works.
    let href =
        browser.js("return document.querySelector('tr[data-table=\"traffic\"] .links a').href;");
    let rows: Value = TestServer::client()
        .get(href.as_str().expect("a URL"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(rows.as_array().map(Vec::len), Some(2));

    browser.assert_no_console_errors("/");

    // The console check sees errors: a missing file is one.
    browser
        .runtime
        .block_on(
            browser
                .client()
                .goto(&format!("{}/static/missing.css", server.url)),
        )
        .expect("open a missing file");
    let errors = browser.console_errors();
    assert!(
        errors.iter().any(|e| e.contains("404")),
        "a 404 should be a console error: {errors:?}"
    );
}

#[test]
fn browser_sign_in_form_is_labelled_and_sets_the_cookie() {
    let Some(browser) = browser("login") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), &[]);
    browser.open(&format!("{}/login", server.url));
    let field = browser.js("const f = document.getElementById('token');
         return [f.type, f.labels.length, f.labels[0].textContent.trim()];");
    assert_eq!(field, json!(["password", 1, "Access token"]));
    let shot = browser.screenshot();
    assert_png(&shot);

    let client = browser.client();
    browser.runtime.block_on(async {
        client
            .find(Locator::Css("#token"))
            .await
            .expect("token field")
            .send_keys("cl_browser-token")
            .await
            .expect("type the token");
        client
            .find(Locator::Css("main form button[type=submit]"))
            .await
            .expect("sign-in button")
            .click()
            .await
            .expect("submit");
        // The click returns before the POST and its redirect have finished:
        // wait for the signed-in home page before looking at the URL.
        client
            .wait()
            .at_most(Duration::from_secs(30))
            .for_element(Locator::Css("form[action=\"/logout\"] button"))
            .await
            .expect("the home page with a sign-out button");
    });
    let url = browser.runtime.block_on(client.current_url()).expect("url");
    let src = browser.runtime.block_on(client.source()).unwrap();
    assert_eq!(url.path(), "/", "{src}");
    browser.assert_no_console_errors("/ after signing in");
    let cookie = browser
        .runtime
        .block_on(client.get_named_cookie("civiclake_token"))
        .expect("the token cookie");
    assert_eq!(cookie.value(), "cl_browser-token");
    assert_eq!(cookie.http_only(), Some(true));
    assert_eq!(
        browser.js("return document.cookie;"),
        "",
        "HttpOnly: not visible to scripts"
    );

    browser.runtime.block_on(async {
        client
            .find(Locator::Css("form[action=\"/logout\"] button"))
            .await
            .expect("sign-out button")
            .click()
            .await
            .expect("sign out");
        client
            .wait()
            .at_most(Duration::from_secs(30))
            .for_element(Locator::Css(".session a[href=\"/login\"]"))
            .await
            .expect("the home page with a sign-in link");
    });
    browser.assert_no_console_errors("/ after signing out");
    let cookies = browser
        .runtime
        .block_on(client.get_all_cookies())
        .expect("cookies");
    assert!(cookies.iter().all(|c| c.name() != "civiclake_token"));
    assert_eq!(browser.texts(".session a"), ["Sign in"]);
}

#[test]
fn browser_shipped_dashboards_show_every_panel_without_errors() {
    let Some(browser) = browser("dashboards") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = crate::dashboards::demo_server(dir.path());
    for id in [
        "air-noise",
        "fleet-health",
        "civiclake",
        "bus",
        "kiosk",
        "council",
    ] {
        browser.open(&format!("{}/dashboards/{id}", server.url));
        // Every panel image loaded and drawn (an image answered with an error status would be a
        // console error too).
        let mut loaded = Value::Null;
        for _ in 0..120 {
            loaded = browser.js(
                "const imgs = Array.from(document.querySelectorAll('#panels img'));
                 return [imgs.length, imgs.filter(i => i.complete && i.naturalWidth > 0).length];",
            );
            if loaded[0] == loaded[1] && loaded[0].as_u64().unwrap_or(0) > 0 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
        assert_eq!(loaded[0], loaded[1], "{id}: panels loaded {loaded}");
        assert!(loaded[0].as_u64().unwrap_or(0) >= 6, "{id}: {loaded}");
        assert_png(&browser.screenshot_as(&format!("dashboard-{id}")));
        browser.assert_no_console_errors(id);
        // Each panel's links: CSV, PNG and SQL, named for screen readers.
        let links = browser.texts("#panels figure:first-child .links a");
        assert_eq!(links.len(), 3, "{id}: {links:?}");
        assert!(links[0].starts_with("Download CSV of "), "{links:?}");
    }

    // The controls are labelled selects; choosing another range and submitting shows it.
    browser.open(&format!("{}/dashboards/air-noise", server.url));
    let labels = browser.texts(".dashboard-controls label");
    assert_eq!(labels, ["Time range", "District"]);
    browser.js("document.getElementById('range').value = 'now-6h';
         document.getElementById('var-district').value = 'Nord';
         document.querySelector('.dashboard-controls').submit(); return null;");
    let mut url = Value::Null;
    for _ in 0..40 {
        url = browser.js("return location.search;");
        if url.as_str().is_some_and(|u| u.contains("from=now-6h")) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    let url = url.as_str().unwrap_or_default().to_string();
    assert!(
        url.contains("from=now-6h") && url.contains("var-district=Nord"),
        "{url}"
    );
    let src = browser.js("return document.querySelector('#panel-no2 img').getAttribute('src');");
    assert!(
        src.as_str()
            .is_some_and(|s| s.contains("var-district=Nord")),
        "{src}"
    );
    browser.assert_no_console_errors("air-noise with Nord");
}

/// The bus's operator pages: the overview lists the subscription and the schema, the
/// subscription's page shows its dead letter, and its redeliver button and replay form work.
#[test]
fn browser_bus_pages_show_dead_letters_and_replay() {
    let Some(browser) = browser("bus_pages") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path(), &[]);
    let c = TestServer::client();
    let post = |path: &str, ct: &str, body: Value| {
        let r = c
            .post(format!("{}{path}", server.url))
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
    post(
        "/api/v1/bus/schemas/it.acme.invoice.Paid",
        "application/json",
        json!({"type": "object", "required": ["amount"]}),
    );
    // Nothing listens on the discard port: one attempt, then a dead letter.
    post(
        "/api/v1/bus/subscriptions",
        "application/json",
        json!({"name": "accounting", "retry": {"max_attempts": 1},
               "target": {"kind": "webhook", "url": "http://127.0.0.1:9/hook", "timeout_ms": 500}}),
    );
    post(
        "/api/v1/bus/events",
        "application/cloudevents+json",
        json!({"specversion": "1.0", "id": "inv-1", "source": "/acme/billing",
               "type": "it.acme.invoice.Paid", "data": {"amount": 12}}),
    );
    crate::server::wait_until(
        std::time::Duration::from_secs(20),
        "the dead letter",
        || server.scalar("SELECT count(*) FROM bus_dead_letters") == 1.0,
    );

    browser.open(&format!("{}/bus", server.url));
    assert_eq!(browser.js("return document.title;"), "Bus · civiclake");
    assert_eq!(browser.texts("#subscriptions tbody th"), ["accounting"]);
    // The schema posted here and those the modules register as they start.
    let mut schemas: Vec<String> = crate::server::module_bus_schemas()
        .into_iter()
        .chain(["it.acme.invoice.Paid".to_string()])
        .collect();
    schemas.sort();
    assert_eq!(browser.texts("#schemas tbody th"), schemas);
    assert_eq!(browser.texts("#log-head"), ["1"]);
    assert_png(&browser.screenshot_as("bus"));

    browser.js("document.querySelector('#subscriptions a').click(); return null;");
    let mut dead = Vec::new();
    for _ in 0..40 {
        dead = browser.texts("#dead-letters tbody tr td:nth-child(3)");
        if !dead.is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(dead, ["inv-1"]);
    browser.assert_no_console_errors("/bus/subscriptions/accounting");
    assert_png(&browser.screenshot_as("bus-subscription"));

    // Redeliver: back on the page with a message.
    browser.js("document.querySelector('#dead-letters form button').click(); return null;");
    let mut flash = Vec::new();
    for _ in 0..40 {
        flash = browser.texts("#flash");
        if !flash.is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(flash.len(), 1, "{flash:?}");
    assert!(
        flash[0].starts_with("Event 1 is being delivered again"),
        "{flash:?}"
    );

    // Replay from seq 1.
    browser.js("document.getElementById('replay-from').value = 'seq';
         document.getElementById('replay-value').value = '1';
         document.getElementById('replay-form').submit(); return null;");
    for _ in 0..40 {
        flash = browser.texts("#flash");
        if flash.first().is_some_and(|f| f.starts_with("Replay")) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(flash[0].starts_with("Replay replay-"), "{flash:?}");
    assert!(flash[0].ends_with("from seq 1."), "{flash:?}");
    browser.assert_no_console_errors("replay");

    browser.open(&format!("{}/bus/schemas/it.acme.invoice.Paid", server.url));
    assert_eq!(browser.texts("#compatibility"), ["BACKWARD"]);
    assert_eq!(browser.texts("main h2"), ["Version 1"]);

    // The catalog: acme's billing system with an OpenAPI endpoint, then the map.
    for (path, body) in [
        (
            "/api/v1/bus/organisations/acme",
            json!({"name": "Acme S.p.A.", "kind": "operator",
                   "contacts": [{"name": "Help desk", "email": "help@acme.example"}]}),
        ),
        (
            "/api/v1/bus/organisations/acme/systems/billing",
            json!({"name": "Billing", "owner": "Acme IT", "produces": ["it.acme.invoice.Paid"]}),
        ),
        (
            "/api/v1/bus/organisations/acme/systems/billing/endpoints/api",
            json!({"openapi": "3.0.3", "info": {"title": "Billing API", "version": "2"},
                   "paths": {"/invoices": {"get": {"operationId": "listInvoices", "summary": "Invoices of a customer"}}}}),
        ),
    ] {
        let r = c
            .put(format!("{}{path}", server.url))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .unwrap();
        assert_eq!(r.status(), 201, "{path}: {}", r.text().unwrap_or_default());
    }
    browser.open(&format!("{}/bus", server.url));
    browser.js("document.getElementById('catalog-link').click(); return null;");
    let mut systems = Vec::new();
    for _ in 0..40 {
        systems = browser.texts("section.org tbody th a");
        if !systems.is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(systems, ["Billing"]);
    browser.js("document.querySelector('section.org tbody th a').click(); return null;");
    let mut operations = Vec::new();
    for _ in 0..40 {
        operations = browser.texts("section.endpoint tbody th");
        if !operations.is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(operations, ["listInvoices"]);
    assert_eq!(browser.texts("#owner"), ["Acme IT"]);
    browser.assert_no_console_errors("/bus/catalog/acme/billing");
    assert_png(&browser.screenshot_as("bus-system"));

    browser.open(&format!("{}/bus/map", server.url));
    assert_eq!(
        browser.js("return String(document.querySelectorAll('#ecosystem-map svg rect').length);"),
        "3"
    );
    assert_eq!(
        browser.texts("#dependencies tbody th"),
        ["subscription:accounting"]
    );
    browser.assert_no_console_errors("/bus/map");
    assert_png(&browser.screenshot_as("bus-map"));
}
