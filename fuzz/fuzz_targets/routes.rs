#![no_main]
//! A message through a route set never panics: topic matching with captures, table templates,
//! the JSON field mapping with conversions and time formats, and every format by route. The
//! input is `topic\npayload`.

use civiclake_ingest::RouteSet;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

const ROUTES: &str = r#"
[[route]]
name = "mapped"
topic = "city/air/{station}/{kind}"
format = "json"
table = "air_{kind}"
precision = "ms"
[route.fields]
pm25 = "/data/pm25"
temperature = { pointer = "/data/tempF", convert = "fahrenheit_to_celsius" }
pressure = { pointer = "/p", scale = 0.01, offset = 3.0 }
[route.tags]
device = "/meta/device"
[route.time]
pointer = "/ts"
format = "%d/%m/%Y %H:%M:%S"

[[route]]
name = "epoch"
topic = "city/epoch/+/{kind}/#"
format = "json"
table = "ep_{kind}"
[route.fields]
v = "/v"
[route.time]
pointer = "/t"
format = "epoch_ns"

[[route]]
name = "senml"
topic = "senml/{dev}"
format = "senml"
table = "senml"

[[route]]
name = "ngsi"
topic = "fiware/{service}"
format = "ngsi_ld"
table = "ngsi_{service}"

[[route]]
name = "ce"
topic = "events/{kind}"
format = "cloudevents"
table = "events"

[[route]]
name = "lp"
topic = "lp/{counter}"
format = "line_protocol"
table = "traffic"
"#;

fn routes() -> &'static RouteSet {
    static R: OnceLock<RouteSet> = OnceLock::new();
    R.get_or_init(|| RouteSet::from_toml(ROUTES, "fuzz.toml").expect("valid routes"))
}

fuzz_target!(|data: &[u8]| {
    let (opts, schemas, body) = civiclake_fuzz::setup(data);
    let (topic, payload) = match body.iter().position(|&b| b == b'\n') {
        Some(i) => (&body[..i], &body[i + 1..]),
        None => (body, &[][..]),
    };
    let Ok(topic) = std::str::from_utf8(topic) else {
        return;
    };
    if let Some(found) = routes().resolve(topic) {
        let _ = found.check_table();
        let _ = found.decode(payload, &opts, &schemas);
    }
});
