//! SenML JSON (RFC 8428): a pack is a JSON array of records; base fields (`bn`, `bt`, `bu`,
//! `bv`, `bs`, `bver`) apply to their record and every later one until replaced.
//!
//! Each record is resolved as RFC 8428 section 4.6 says: name = `bn` + `n`, time = `bt` + `t`
//! in seconds (a result below 2^28 is relative to `opts.now_micros`), unit = `u` or else
//! `bu`, value = `bv` + `v`, sum = `bs` + `s`. A resolved record becomes one row: tags
//! `name` and `unit` (when there is one), fields `value` (`v`), `string_value` (`vs`),
//! `bool_value` (`vb`), `data_value` (`vd`, the base64url text) and `sum` (`s`).
//!
//! Row errors (with the record's index + 1): a record that is not an object, a field of the
//! wrong JSON type, a resolved name outside the RFC's character set, more than one value,
//! neither a value nor a sum, a `bver` above 10, or an unknown must-understand field (name
//! ending in `_`). A record that only sets base fields (RFC 8428 section 5.1.7) makes no row.
//! Other unknown fields are ignored.

use crate::builder::{Dialect, Entry, TableBuilder, Value, finish_tables};
use crate::error::{Error, Result};
use crate::json::json_kind;
use crate::types::{
    DecodeOptions, Decoded, Rejections, RowError, SchemaLookup, check_utf8, required_table,
};
use serde_json::{Map, Value as Json};
use std::borrow::Cow;

/// The SenML version this decoder implements (RFC 8428).
const VERSION: i64 = 10;

/// Times below this many seconds are relative to now (RFC 8428 section 4.5.3).
const RELATIVE_LIMIT: f64 = 268_435_456.0;

/// Decodes a SenML JSON pack into `opts.table` (required), one row per record.
///
/// A body that is not a JSON array is an error; bad records are [`RowError`]s whose
/// [`RowError::line`] is the record's index + 1.
pub fn decode_senml(
    body: &[u8],
    opts: &DecodeOptions,
    schemas: &dyn SchemaLookup,
) -> Result<Decoded> {
    let table = required_table(opts, "SenML")?;
    let text = check_utf8(body)?;
    let document: Json = serde_json::from_str(text).map_err(|e| Error::Json(e.to_string()))?;
    let Json::Array(records) = &document else {
        return Err(Error::Payload {
            format: "SenML",
            message: format!(
                "a SenML pack is a JSON array of records, found {}",
                json_kind(&document)
            ),
        });
    };
    let mut builder = TableBuilder::new(table.to_string(), schemas.schema(table));
    let mut rejections = Rejections::default();
    let mut base = Base::default();
    for (i, record) in records.iter().enumerate() {
        let row = i + 1;
        let result = match record {
            Json::Object(map) => push_record(&mut builder, &mut base, map, row, opts),
            other => Err(RowError::new(
                row,
                0,
                format!(
                    "a SenML record is a JSON object, found {}",
                    json_kind(other)
                ),
            )),
        };
        if let Err(e) = result {
            rejections.push(e);
        }
    }
    finish_tables(vec![builder], rejections, opts.accept_partial)
}

/// The base fields in force.
#[derive(Debug, Default)]
struct Base {
    name: String,
    time: f64,
    unit: Option<String>,
    value: f64,
    sum: f64,
}

/// The fields of one record, type-checked.
#[derive(Debug, Default)]
struct Record<'a> {
    bn: Option<&'a str>,
    bt: Option<f64>,
    bu: Option<&'a str>,
    bv: Option<f64>,
    bs: Option<f64>,
    n: Option<&'a str>,
    u: Option<&'a str>,
    v: Option<f64>,
    vs: Option<&'a str>,
    vb: Option<bool>,
    vd: Option<&'a str>,
    s: Option<f64>,
    t: Option<f64>,
    /// Any regular field (`n`, `u`, a value, `s`, `t`, `ut`) is present.
    regular: bool,
    /// Any base field is present.
    has_base: bool,
}

fn number(key: &str, value: &Json) -> Result<f64, String> {
    match value {
        Json::Number(n) => n
            .as_f64()
            .filter(|f| f.is_finite())
            .ok_or_else(|| format!("'{key}' {n} is out of range")),
        other => Err(format!(
            "'{key}' must be a number, found {}",
            json_kind(other)
        )),
    }
}

fn string<'a>(key: &str, value: &'a Json) -> Result<&'a str, String> {
    match value {
        Json::String(s) => Ok(s),
        other => Err(format!(
            "'{key}' must be a string, found {}",
            json_kind(other)
        )),
    }
}

impl<'a> Record<'a> {
    fn parse(map: &'a Map<String, Json>) -> Result<Self, String> {
        let mut r = Record::default();
        for (key, value) in map {
            match key.as_str() {
                "bn" => r.bn = Some(string(key, value)?),
                "bt" => r.bt = Some(number(key, value)?),
                "bu" => r.bu = Some(string(key, value)?),
                "bv" => r.bv = Some(number(key, value)?),
                "bs" => r.bs = Some(number(key, value)?),
                "bver" => {
                    let version = match value {
                        Json::Number(n) => n.as_i64().filter(|v| *v > 0),
                        _ => None,
                    }
                    .ok_or_else(|| format!("'bver' must be a positive integer, found {value}"))?;
                    if version > VERSION {
                        return Err(format!(
                            "SenML version {version} is not supported (up to {VERSION})"
                        ));
                    }
                }
                "n" => r.n = Some(string(key, value)?),
                "u" => r.u = Some(string(key, value)?),
                "v" => r.v = Some(number(key, value)?),
                "vs" => r.vs = Some(string(key, value)?),
                "vb" => match value {
                    Json::Bool(b) => r.vb = Some(*b),
                    other => {
                        return Err(format!(
                            "'vb' must be a boolean, found {}",
                            json_kind(other)
                        ));
                    }
                },
                "vd" => r.vd = Some(string(key, value)?),
                "s" => r.s = Some(number(key, value)?),
                "t" => r.t = Some(number(key, value)?),
                "ut" => {
                    number(key, value)?;
                }
                other if other.ends_with('_') => {
                    return Err(format!(
                        "field '{other}' must be understood (its name ends with '_') \
                         but is not supported"
                    ));
                }
                _ => continue,
            }
            if key.starts_with('b') {
                r.has_base = true;
            } else {
                r.regular = true;
            }
        }
        Ok(r)
    }
}

/// RFC 8428 section 4.5.1: letters, digits, `-`, `:`, `.`, `/`, `_`; starting with a letter
/// or a digit.
fn valid_name(name: &str) -> bool {
    name.as_bytes()
        .first()
        .is_some_and(|b| b.is_ascii_alphanumeric())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b':' | b'.' | b'/' | b'_'))
}

/// Seconds to microseconds, `None` when out of range.
fn micros(seconds: f64) -> Option<i64> {
    let micros = (seconds * 1_000_000.0).round();
    (micros.is_finite() && micros >= i64::MIN as f64 && micros < i64::MAX as f64)
        .then_some(micros as i64)
}

/// The absolute time of a record in microseconds.
fn resolve_time(base: f64, t: f64, now: i64) -> Result<i64, String> {
    let out_of_range = || format!("time {:?} s is out of range", base + t);
    let at = micros(base)
        .zip(micros(t))
        .and_then(|(b, t)| b.checked_add(t))
        .ok_or_else(out_of_range)?;
    if base + t < RELATIVE_LIMIT {
        now.checked_add(at).ok_or_else(out_of_range)
    } else {
        Ok(at)
    }
}

fn push_record(
    builder: &mut TableBuilder,
    base: &mut Base,
    map: &Map<String, Json>,
    row: usize,
    opts: &DecodeOptions,
) -> Result<(), RowError> {
    let error = |message: String| RowError::new(row, 0, message);
    let r = Record::parse(map).map_err(error)?;
    // Base fields apply to this record and the later ones.
    if let Some(bn) = r.bn {
        base.name = bn.to_string();
    }
    if let Some(bt) = r.bt {
        base.time = bt;
    }
    if let Some(bu) = r.bu {
        base.unit = Some(bu.to_string());
    }
    if let Some(bv) = r.bv {
        base.value = bv;
    }
    if let Some(bs) = r.bs {
        base.sum = bs;
    }
    let values = [
        r.v.is_some(),
        r.vs.is_some(),
        r.vb.is_some(),
        r.vd.is_some(),
    ]
    .into_iter()
    .filter(|&v| v)
    .count();
    if values > 1 {
        return Err(error(
            "a SenML record has at most one value (v, vs, vb or vd)".into(),
        ));
    }
    if values == 0 && r.s.is_none() {
        if r.has_base && !r.regular {
            return Ok(());
        }
        return Err(error(
            "the SenML record has no value (v, vs, vb or vd) and no sum (s)".into(),
        ));
    }
    let name = format!("{}{}", base.name, r.n.unwrap_or(""));
    if !valid_name(&name) {
        return Err(error(format!(
            "invalid SenML name {name:?}: use letters, digits, '-', ':', '.', '/' and '_', \
             starting with a letter or digit"
        )));
    }
    let time = resolve_time(base.time, r.t.unwrap_or(0.0), opts.now_micros).map_err(error)?;
    let mut entries: Vec<Entry<'_>> = Vec::with_capacity(4);
    let mut push = |key: &'static str, value| {
        entries.push(Entry {
            key: Cow::Borrowed(key),
            value,
            pos: 0,
        });
    };
    push("name", Value::Tag(Cow::Owned(name)));
    if let Some(unit) = r.u.or(base.unit.as_deref()) {
        push("unit", Value::Tag(Cow::Borrowed(unit)));
    }
    if let Some(v) = r.v {
        push("value", Value::Float(v + base.value));
    }
    if let Some(vs) = r.vs {
        push("string_value", Value::Str(Cow::Borrowed(vs)));
    }
    if let Some(vb) = r.vb {
        push("bool_value", Value::Bool(vb));
    }
    if let Some(vd) = r.vd {
        push("data_value", Value::Str(Cow::Borrowed(vd)));
    }
    if let Some(s) = r.s {
        push("sum", Value::Float(s + base.sum));
    }
    builder.push_row(time, &entries, row, Dialect::JSON)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::*;
    use arrow::datatypes::DataType;

    const NOW: i64 = 1_767_225_600_000_000;

    fn opts() -> DecodeOptions {
        DecodeOptions {
            table: Some("senml".into()),
            now_micros: NOW,
            accept_partial: true,
            ..DecodeOptions::default()
        }
    }

    fn decode(body: &str) -> Decoded {
        let d = decode_senml(body.as_bytes(), &opts(), &()).unwrap();
        assert!(d.rejected.is_empty(), "{:?}", d.rejected);
        d
    }

    fn some(values: &[&str]) -> Vec<Option<String>> {
        values.iter().map(|v| Some(v.to_string())).collect()
    }

    #[test]
    fn rfc8428_5_1_1_single_datapoint() {
        let d = decode(r#"[{"n":"urn:dev:ow:10e2073a01080063","u":"Cel","v":23.1}]"#);
        let b = &d.batches[0].batch;
        assert_eq!(names(b), ["time", "name", "unit", "value"]);
        assert_eq!(tags(b, "name"), some(&["urn:dev:ow:10e2073a01080063"]));
        assert_eq!(tags(b, "unit"), some(&["Cel"]));
        assert_eq!(floats(b, "value"), [Some(23.1)]);
        assert_eq!(times(b), [NOW]);
    }

    #[test]
    fn rfc8428_5_1_2_multiple_datapoints() {
        let d = decode(
            r#"[{"bn":"urn:dev:ow:10e2073a01080063:","n":"voltage","u":"V","v":120.1},
                {"n":"current","u":"A","v":1.2}]"#,
        );
        let b = &d.batches[0].batch;
        assert_eq!(
            tags(b, "name"),
            some(&[
                "urn:dev:ow:10e2073a01080063:voltage",
                "urn:dev:ow:10e2073a01080063:current"
            ])
        );
        assert_eq!(tags(b, "unit"), some(&["V", "A"]));
        assert_eq!(floats(b, "value"), [Some(120.1), Some(1.2)]);
        assert_eq!(times(b), [NOW, NOW]);

        let d = decode(
            r#"[{"bn":"urn:dev:ow:10e2073a0108006:","bt":1.276020076001e+09,
                 "bu":"A","bver":5,"n":"voltage","u":"V","v":120.1},
                {"n":"current","t":-5,"v":1.2},
                {"n":"current","t":-4,"v":1.3},
                {"n":"current","t":-3,"v":1.4},
                {"n":"current","t":-2,"v":1.5},
                {"n":"current","t":-1,"v":1.6},
                {"n":"current","v":1.7}]"#,
        );
        let b = &d.batches[0].batch;
        let mut expected_names = vec!["urn:dev:ow:10e2073a0108006:voltage"];
        expected_names.extend(["urn:dev:ow:10e2073a0108006:current"; 6]);
        assert_eq!(tags(b, "name"), some(&expected_names));
        assert_eq!(tags(b, "unit"), some(&["V", "A", "A", "A", "A", "A", "A"]));
        assert_eq!(
            floats(b, "value"),
            [120.1, 1.2, 1.3, 1.4, 1.5, 1.6, 1.7].map(Some)
        );
        let t0 = 1_276_020_076_001_000;
        assert_eq!(
            times(b),
            [
                t0,
                t0 - 5_000_000,
                t0 - 4_000_000,
                t0 - 3_000_000,
                t0 - 2_000_000,
                t0 - 1_000_000,
                t0
            ]
        );
    }

    const MOBILE: &str = r#"[
        {"bn":"urn:dev:ow:10e2073a01080063","bt":1.320067464e+09,"bu":"%RH","v":20},
        {"u":"lon","v":24.30621},
        {"u":"lat","v":60.07965},
        {"t":60,"v":20.3},
        {"u":"lon","t":60,"v":24.30622},
        {"u":"lat","t":60,"v":60.07965},
        {"t":120,"v":20.7},
        {"u":"lon","t":120,"v":24.30623},
        {"u":"lat","t":120,"v":60.07966},
        {"u":"%EL","t":150,"v":98},
        {"t":180,"v":21.2},
        {"u":"lon","t":180,"v":24.30628},
        {"u":"lat","t":180,"v":60.07967}
    ]"#;

    /// RFC 8428 section 5.1.4: the resolved form of [`MOBILE`].
    const MOBILE_RESOLVED: &str = r#"[
        {"n":"urn:dev:ow:10e2073a01080063","u":"%RH","t":1.320067464e+09,"v":20},
        {"n":"urn:dev:ow:10e2073a01080063","u":"lon","t":1.320067464e+09,"v":24.30621},
        {"n":"urn:dev:ow:10e2073a01080063","u":"lat","t":1.320067464e+09,"v":60.07965},
        {"n":"urn:dev:ow:10e2073a01080063","u":"%RH","t":1.320067524e+09,"v":20.3},
        {"n":"urn:dev:ow:10e2073a01080063","u":"lon","t":1.320067524e+09,"v":24.30622},
        {"n":"urn:dev:ow:10e2073a01080063","u":"lat","t":1.320067524e+09,"v":60.07965},
        {"n":"urn:dev:ow:10e2073a01080063","u":"%RH","t":1.320067584e+09,"v":20.7},
        {"n":"urn:dev:ow:10e2073a01080063","u":"lon","t":1.320067584e+09,"v":24.30623},
        {"n":"urn:dev:ow:10e2073a01080063","u":"lat","t":1.320067584e+09,"v":60.07966},
        {"n":"urn:dev:ow:10e2073a01080063","u":"%EL","t":1.320067614e+09,"v":98},
        {"n":"urn:dev:ow:10e2073a01080063","u":"%RH","t":1.320067644e+09,"v":21.2},
        {"n":"urn:dev:ow:10e2073a01080063","u":"lon","t":1.320067644e+09,"v":24.30628},
        {"n":"urn:dev:ow:10e2073a01080063","u":"lat","t":1.320067644e+09,"v":60.07967}
    ]"#;

    fn check_mobile(d: &Decoded) {
        let b = &d.batches[0].batch;
        assert_eq!(b.num_rows(), 13);
        assert_eq!(tags(b, "name"), some(&["urn:dev:ow:10e2073a01080063"; 13]));
        assert_eq!(
            tags(b, "unit"),
            some(&[
                "%RH", "lon", "lat", "%RH", "lon", "lat", "%RH", "lon", "lat", "%EL", "%RH", "lon",
                "lat"
            ])
        );
        assert_eq!(
            floats(b, "value"),
            [
                20.0, 24.30621, 60.07965, 20.3, 24.30622, 60.07965, 20.7, 24.30623, 60.07966, 98.0,
                21.2, 24.30628, 60.07967
            ]
            .map(Some)
        );
        let s = 1_000_000;
        let t0 = 1_320_067_464 * s;
        assert_eq!(
            times(b),
            [
                t0,
                t0,
                t0,
                t0 + 60 * s,
                t0 + 60 * s,
                t0 + 60 * s,
                t0 + 120 * s,
                t0 + 120 * s,
                t0 + 120 * s,
                t0 + 150 * s,
                t0 + 180 * s,
                t0 + 180 * s,
                t0 + 180 * s
            ]
        );
    }

    #[test]
    fn rfc8428_5_1_3_multiple_measurements() {
        check_mobile(&decode(MOBILE));
    }

    #[test]
    fn rfc8428_5_1_4_resolved_data() {
        check_mobile(&decode(MOBILE_RESOLVED));
        // Resolving the pack gives the same batch as its resolved form.
        let a = decode(MOBILE);
        let b = decode(MOBILE_RESOLVED);
        assert_eq!(a.batches[0].batch, b.batches[0].batch);
    }

    #[test]
    fn rfc8428_5_1_5_multiple_data_types() {
        let d = decode(
            r#"[{"bn":"urn:dev:ow:10e2073a01080063:","n":"temp","u":"Cel","v":23.1},
                {"n":"label","vs":"Machine Room"},
                {"n":"open","vb":false},
                {"n":"nfc-reader","vd":"aGkgCg"}]"#,
        );
        let b = &d.batches[0].batch;
        assert_eq!(
            names(b),
            [
                "time",
                "name",
                "unit",
                "bool_value",
                "data_value",
                "string_value",
                "value"
            ]
        );
        assert_eq!(
            tags(b, "name"),
            some(&[
                "urn:dev:ow:10e2073a01080063:temp",
                "urn:dev:ow:10e2073a01080063:label",
                "urn:dev:ow:10e2073a01080063:open",
                "urn:dev:ow:10e2073a01080063:nfc-reader"
            ])
        );
        assert_eq!(tags(b, "unit"), [Some("Cel".into()), None, None, None]);
        assert_eq!(floats(b, "value"), [Some(23.1), None, None, None]);
        assert_eq!(
            strings(b, "string_value"),
            [None, Some("Machine Room".into()), None, None]
        );
        assert_eq!(bools(b, "bool_value"), [None, None, Some(false), None]);
        assert_eq!(
            strings(b, "data_value"),
            [None, None, None, Some("aGkgCg".into())]
        );
        let schema = b.schema();
        for field in ["string_value", "data_value"] {
            assert_eq!(
                schema.field_with_name(field).unwrap().data_type(),
                &DataType::Utf8
            );
        }
        assert_eq!(times(b), [NOW; 4]);
    }

    #[test]
    fn rfc8428_5_1_6_collection_of_resources() {
        let d = decode(
            r#"[{"bn":"2001:db8::2/","bt":1.320078429e+09,"n":"temperature","u":"Cel","v":25.2},
                {"n":"humidity","u":"%RH","v":30},
                {"bn":"2001:db8::1/","n":"temperature","u":"Cel","v":12.3},
                {"n":"humidity","u":"%RH","v":67}]"#,
        );
        let b = &d.batches[0].batch;
        assert_eq!(
            tags(b, "name"),
            some(&[
                "2001:db8::2/temperature",
                "2001:db8::2/humidity",
                "2001:db8::1/temperature",
                "2001:db8::1/humidity"
            ])
        );
        assert_eq!(tags(b, "unit"), some(&["Cel", "%RH", "Cel", "%RH"]));
        assert_eq!(
            floats(b, "value"),
            [Some(25.2), Some(30.0), Some(12.3), Some(67.0)]
        );
        // The last record uses the base name of the third and the base time of the first.
        assert_eq!(times(b), [1_320_078_429_000_000; 4]);
    }

    #[test]
    fn base_only_records_base_values_sums_and_relative_times() {
        // RFC 8428 section 5.1.7 starts with a record that only sets the base name.
        let d = decode(
            r#"[{"bn":"urn:dev:ow:10e2073a01080063:"},
                {"n":"temp","u":"Cel","v":23.1},
                {"bv":100,"bs":1000,"n":"energy","u":"J","v":5,"s":7,"t":-2.5},
                {"n":"energy","s":3,"t":0.25},
                {"bt":1000,"n":"x","v":1,"t":1}]"#,
        );
        let b = &d.batches[0].batch;
        assert_eq!(b.num_rows(), 4);
        assert_eq!(
            floats(b, "value"),
            [Some(23.1), Some(105.0), None, Some(101.0)]
        );
        assert_eq!(floats(b, "sum"), [None, Some(1007.0), Some(1003.0), None]);
        assert_eq!(
            times(b),
            [NOW, NOW - 2_500_000, NOW + 250_000, NOW + 1_001_000_000]
        );
    }

    #[test]
    fn bad_records_are_row_errors() {
        let body = r#"[
            {"n":"a","v":"1"},
            {"n":"a"},
            {"n":"a","v":1,"vs":"x"},
            {"n":"bad name","v":1},
            {"v":1},
            {"bver":11,"n":"a","v":1},
            {"n":"a","v":1,"crit_":true},
            3,
            {"n":"a","t":1e300,"v":1},
            {"n":"a","v":1,"custom":"ignored"},
            {}
        ]"#;
        let d = decode_senml(body.as_bytes(), &opts(), &()).unwrap();
        let got: Vec<(usize, &str)> = d
            .rejected
            .iter()
            .map(|e| (e.line, e.message.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (1, "'v' must be a number, found a string"),
                (
                    2,
                    "the SenML record has no value (v, vs, vb or vd) and no sum (s)"
                ),
                (3, "a SenML record has at most one value (v, vs, vb or vd)"),
                (
                    4,
                    "invalid SenML name \"bad name\": use letters, digits, '-', ':', '.', '/' \
                     and '_', starting with a letter or digit"
                ),
                (
                    5,
                    "invalid SenML name \"\": use letters, digits, '-', ':', '.', '/' and '_', \
                     starting with a letter or digit"
                ),
                (6, "SenML version 11 is not supported (up to 10)"),
                (
                    7,
                    "field 'crit_' must be understood (its name ends with '_') but is not supported"
                ),
                (8, "a SenML record is a JSON object, found a number"),
                (9, "time 1e300 s is out of range"),
                (
                    11,
                    "the SenML record has no value (v, vs, vb or vd) and no sum (s)"
                ),
            ]
        );
        assert_eq!(d.rows, 1);
        let err = decode_senml(br#"{"n":"a","v":1}"#, &opts(), &()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid SenML payload: a SenML pack is a JSON array of records, found an object"
        );
        let no_table = DecodeOptions {
            table: None,
            ..opts()
        };
        assert!(matches!(
            decode_senml(b"[]", &no_table, &()).unwrap_err(),
            Error::MissingTable { format: "SenML" }
        ));
    }
}
