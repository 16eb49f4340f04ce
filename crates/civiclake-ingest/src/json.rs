//! JSON (one object or an array of objects) and NDJSON (one object per line).
//!
//! Object keys become columns: strings are tags (or string fields when the table already has
//! a string field of that name), numbers are floats (integers when the table's column is an
//! integer and the number integral), booleans are booleans and `null` is a missing value.
//! The `time` key holds an RFC 3339 string or an epoch number in `opts.precision` units (the
//! HTTP API passes its `precision` query parameter, e.g. `ms`, the same way as for line
//! protocol); a missing or null `time` means `opts.now_micros`.

use crate::builder::{Dialect, Entry, TableBuilder, Value, finish_tables};
use crate::error::{Error, Result};
use crate::types::{
    DecodeOptions, Decoded, Precision, Rejections, RowError, SchemaLookup, check_utf8,
    required_table,
};
use civiclake_core::TIME_COLUMN;
use serde_json::{Map, Value as Json};
use std::borrow::Cow;

/// Decodes a JSON payload, one object or an array of objects, into `opts.table` (required).
///
/// Row errors name the element (index + 1) in [`RowError::line`]; their column is 0.
pub fn decode_json(
    body: &[u8],
    opts: &DecodeOptions,
    schemas: &dyn SchemaLookup,
) -> Result<Decoded> {
    let table = required_table(opts, "JSON")?;
    let text = check_utf8(body)?;
    let document: Json = serde_json::from_str(text).map_err(|e| Error::Json(e.to_string()))?;
    let mut builder = TableBuilder::new(table.to_string(), schemas.schema(table));
    let mut rejections = Rejections::default();
    match &document {
        Json::Object(map) => {
            if let Err(e) = push_object(&mut builder, map, 1, Dialect::JSON, opts) {
                rejections.push(e);
            }
        }
        Json::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let result = match item {
                    Json::Object(map) => push_object(&mut builder, map, i + 1, Dialect::JSON, opts),
                    other => Err(RowError::new(
                        i + 1,
                        0,
                        format!("expected a JSON object, found {}", json_kind(other)),
                    )),
                };
                if let Err(e) = result {
                    rejections.push(e);
                }
            }
        }
        other => {
            return Err(Error::Json(format!(
                "expected an object or an array of objects, found {}",
                json_kind(other)
            )));
        }
    }
    finish_tables(vec![builder], rejections, opts.accept_partial)
}

/// Decodes NDJSON, one object per line (blank lines skipped), into `opts.table` (required).
///
/// A line that is not valid JSON is a row error with its line and column.
pub fn decode_ndjson(
    body: &[u8],
    opts: &DecodeOptions,
    schemas: &dyn SchemaLookup,
) -> Result<Decoded> {
    decode_ndjson_lines(body, 1, opts, schemas)
}

/// [`decode_ndjson`] for a chunk of a file whose first line is `first_line`.
pub(crate) fn decode_ndjson_lines(
    body: &[u8],
    first_line: usize,
    opts: &DecodeOptions,
    schemas: &dyn SchemaLookup,
) -> Result<Decoded> {
    let table = required_table(opts, "NDJSON")?;
    let mut builder = TableBuilder::new(table.to_string(), schemas.schema(table));
    let mut rejections = Rejections::default();
    let text = check_utf8(body).map_err(|e| match e {
        Error::InvalidUtf8 { line, column } => Error::InvalidUtf8 {
            line: line + first_line - 1,
            column,
        },
        other => other,
    })?;
    for (i, line) in text.split('\n').enumerate() {
        let line_no = first_line + i;
        if line.trim_ascii().is_empty() {
            continue;
        }
        let result = match serde_json::from_str::<Json>(line) {
            Ok(Json::Object(map)) => {
                push_object(&mut builder, &map, line_no, Dialect::NDJSON, opts)
            }
            Ok(other) => Err(RowError::new(
                line_no,
                1 + line.len() - line.trim_ascii_start().len(),
                format!("expected a JSON object, found {}", json_kind(&other)),
            )),
            Err(e) => Err(RowError::new(
                line_no,
                e.column(),
                format!("invalid JSON: {}", strip_position(&e)),
            )),
        };
        if let Err(e) = result {
            rejections.push(e);
        }
    }
    finish_tables(vec![builder], rejections, opts.accept_partial)
}

/// serde_json's message without its " at line L column C" suffix (reported separately).
fn strip_position(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(at) => text[..at].to_string(),
        None => text,
    }
}

pub(crate) fn json_kind(value: &Json) -> &'static str {
    match value {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

/// Adds one object as a row of `builder`.
fn push_object(
    builder: &mut TableBuilder,
    map: &Map<String, Json>,
    row: usize,
    dialect: Dialect,
    opts: &DecodeOptions,
) -> Result<(), RowError> {
    let (entries, time) = object_entries(map, row, opts)?;
    if entries.is_empty() {
        return Err(RowError::new(
            row,
            0,
            "the object has no non-null values besides 'time'",
        ));
    }
    builder.push_row(time.unwrap_or(opts.now_micros), &entries, row, dialect)
}

/// The columns of one JSON object as [`decode_json`] makes them, and its `time` key in
/// microseconds (`None` when missing or null); the entries may be empty.
///
/// Strings are [`Value::Text`] (tags unless the table has a string field of that name),
/// numbers [`Value::Number`], booleans [`Value::Bool`]; nulls are skipped and nested values
/// are a row error.
pub(crate) fn object_entries<'m>(
    map: &'m Map<String, Json>,
    row: usize,
    opts: &DecodeOptions,
) -> Result<(Vec<Entry<'m>>, Option<i64>), RowError> {
    let mut entries = Vec::with_capacity(map.len());
    let mut time = None;
    for (key, value) in map {
        if key == TIME_COLUMN {
            time = parse_time(value, opts.precision).map_err(|m| RowError::new(row, 0, m))?;
            continue;
        }
        let value = match value {
            Json::Null => continue,
            Json::Bool(b) => Value::Bool(*b),
            Json::Number(n) => match n.as_f64() {
                Some(f) => Value::Number(f, n.as_i64()),
                None => {
                    return Err(RowError::new(
                        row,
                        0,
                        format!("number {n} for key '{key}' is out of range"),
                    ));
                }
            },
            Json::String(s) => Value::Text(Cow::Borrowed(s)),
            Json::Array(_) | Json::Object(_) => {
                return Err(RowError::new(
                    row,
                    0,
                    format!("unsupported nested value for key '{key}'"),
                ));
            }
        };
        entries.push(Entry {
            key: Cow::Borrowed(key),
            value,
            pos: 0,
        });
    }
    Ok((entries, time))
}

/// The `time` of an object in microseconds; `None` when null.
pub(crate) fn parse_time(value: &Json, precision: Precision) -> Result<Option<i64>, String> {
    match value {
        Json::Null => Ok(None),
        Json::String(s) => chrono::DateTime::parse_from_rfc3339(s)
            .map(|t| Some(t.timestamp_micros()))
            .map_err(|e| format!("invalid time {s:?}: expected an RFC 3339 timestamp ({e})")),
        Json::Number(n) => {
            let micros = match n.as_i64() {
                Some(v) => precision.to_micros(v),
                None => n.as_f64().and_then(|v| precision.float_to_micros(v)),
            };
            micros
                .map(Some)
                .ok_or_else(|| format!("time {n} is out of range for precision {precision}"))
        }
        other => Err(format!(
            "invalid time: expected an RFC 3339 string or an epoch number, found {}",
            json_kind(other)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::*;
    use arrow::datatypes::{DataType, Schema, SchemaRef};
    use civiclake_core::{field_column, tag_column, time_column};
    use std::collections::HashMap;
    use std::sync::Arc;

    const NOW: i64 = 1_700_000_000_000_000;

    fn opts() -> DecodeOptions {
        DecodeOptions {
            table: Some("air".into()),
            precision: Precision::Millisecond,
            now_micros: NOW,
            accept_partial: false,
            pseudonymiser: None,
        }
    }

    fn partial() -> DecodeOptions {
        DecodeOptions {
            accept_partial: true,
            ..opts()
        }
    }

    fn errors(d: &Decoded) -> Vec<(usize, usize, &str)> {
        d.rejected
            .iter()
            .map(|e| (e.line, e.column, e.message.as_str()))
            .collect()
    }

    #[test]
    fn decodes_an_array_with_rfc3339_and_epoch_times() {
        let body = r#"[
            {"time": "2026-01-01T00:00:00.123456789Z", "sensor": "s1", "pm25": 12.5, "ok": true},
            {"time": 1767225600123, "sensor": "s2", "pm25": 7, "extra": null},
            {"time": "2026-01-01T01:00:00+01:00", "pm25": null, "ok": false},
            {"sensor": "s3", "pm25": -1.25},
            {"time": 1767225600123.5, "pm25": 1}
        ]"#;
        let d = decode_json(body.as_bytes(), &opts(), &()).unwrap();
        assert!(d.rejected.is_empty(), "{:?}", d.rejected);
        assert_eq!(d.rows, 5);
        let b = &d.batches[0].batch;
        assert_eq!(d.batches[0].table, "air");
        assert_eq!(names(b), ["time", "sensor", "ok", "pm25"]);
        assert_eq!(
            times(b),
            [
                1_767_225_600_123_456,
                1_767_225_600_123_000,
                1_767_225_600_000_000,
                NOW,
                1_767_225_600_123_500
            ]
        );
        assert_eq!(
            tags(b, "sensor"),
            [
                Some("s1".into()),
                Some("s2".into()),
                None,
                Some("s3".into()),
                None
            ]
        );
        assert_eq!(
            floats(b, "pm25"),
            [Some(12.5), Some(7.0), None, Some(-1.25), Some(1.0)]
        );
        assert_eq!(bools(b, "ok"), [Some(true), None, Some(false), None, None]);
    }

    #[test]
    fn epoch_times_follow_the_precision() {
        let at = |precision: Precision| {
            let o = DecodeOptions {
                precision,
                ..opts()
            };
            let d = decode_json(br#"{"time": 1767225600, "v": 1}"#, &o, &()).unwrap();
            times(&d.batches[0].batch)[0]
        };
        assert_eq!(at(Precision::Second), 1_767_225_600_000_000);
        assert_eq!(at(Precision::Millisecond), 1_767_225_600_000);
        assert_eq!(at(Precision::Microsecond), 1_767_225_600);
        assert_eq!(at(Precision::Nanosecond), 1_767_225);
    }

    #[test]
    fn reports_row_errors_by_element() {
        let body = r#"[
            {"v": 1},
            {"v": {"nested": 1}},
            {"v": [1, 2]},
            3,
            {"time": "yesterday", "v": 1},
            {"time": true, "v": 1},
            {},
            {"v": "text"},
            {"v": 2}
        ]"#;
        let d = decode_json(body.as_bytes(), &partial(), &()).unwrap();
        let got = errors(&d);
        assert_eq!(got.len(), 7, "{got:?}");
        assert_eq!(got[0], (2, 0, "unsupported nested value for key 'v'"));
        assert_eq!(got[1], (3, 0, "unsupported nested value for key 'v'"));
        assert_eq!(got[2], (4, 0, "expected a JSON object, found a number"));
        assert_eq!(got[3].0, 5);
        assert!(
            got[3].2.starts_with("invalid time \"yesterday\""),
            "{}",
            got[3].2
        );
        assert_eq!(
            got[4],
            (
                6,
                0,
                "invalid time: expected an RFC 3339 string or an epoch number, found a boolean"
            )
        );
        assert_eq!(
            got[5],
            (7, 0, "the object has no non-null values besides 'time'")
        );
        assert_eq!(
            got[6],
            (8, 0, "key 'v' is string here but float in element 1")
        );
        assert_eq!(floats(&d.batches[0].batch, "v"), [Some(1.0), Some(2.0)]);
        // All or nothing.
        let d = decode_json(body.as_bytes(), &opts(), &()).unwrap();
        assert!(d.batches.is_empty());
        assert_eq!(d.rows, 0);
        assert_eq!(d.rejected.len(), 7);
    }

    #[test]
    fn accepts_a_single_object() {
        let d = decode_json(br#"{"district": "d1", "count": 3}"#, &opts(), &()).unwrap();
        let b = &d.batches[0].batch;
        assert_eq!(times(b), [NOW]);
        assert_eq!(tags(b, "district"), [Some("d1".into())]);
        assert_eq!(floats(b, "count"), [Some(3.0)]);
    }

    #[test]
    fn fatal_errors() {
        let no_table = DecodeOptions {
            table: None,
            ..opts()
        };
        let err = decode_json(b"{}", &no_table, &()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "JSON payloads need a table name: set the `table` option"
        );
        assert!(matches!(
            decode_ndjson(b"{}", &no_table, &()),
            Err(Error::MissingTable { .. })
        ));
        let err = decode_json(b"[{\"a\": 1}", &opts(), &()).unwrap_err();
        assert!(matches!(err, Error::Json(_)));
        assert!(err.to_string().contains("line 1 column 9"), "{err}");
        let err = decode_json(b"\"text\"", &opts(), &()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid JSON: expected an object or an array of objects, found a string"
        );
        assert!(matches!(
            decode_json(b"{\"a\": \"\xc3\"}", &opts(), &()),
            Err(Error::InvalidUtf8 { line: 1, column: 8 })
        ));
    }

    fn air_schema() -> HashMap<String, SchemaRef> {
        let schema = Schema::new(vec![
            time_column(),
            tag_column("sensor"),
            field_column("count", DataType::Int64),
            field_column("pm25", DataType::Float64),
            field_column("note", DataType::Utf8),
        ]);
        HashMap::from([("air".to_string(), Arc::new(schema))])
    }

    #[test]
    fn coerces_to_the_existing_schema() {
        let body = r#"[
            {"count": 3, "pm25": 4, "note": "hello", "sensor": "s1"},
            {"count": 3.5},
            {"pm25": "high"},
            {"sensor": 1},
            {"count": 9007199254740993}
        ]"#;
        let d = decode_json(body.as_bytes(), &partial(), &air_schema()).unwrap();
        assert_eq!(
            errors(&d),
            [
                (
                    2,
                    0,
                    "column 'count' is integer in table 'air' but the object gives float"
                ),
                (
                    3,
                    0,
                    "column 'pm25' is float in table 'air' but the object gives string"
                ),
                (
                    4,
                    0,
                    "column 'sensor' is tag in table 'air' but the object gives integer"
                ),
            ]
        );
        let b = &d.batches[0].batch;
        assert_eq!(names(b), ["time", "sensor", "count", "note", "pm25"]);
        assert_eq!(ints(b, "count"), [Some(3), Some(9_007_199_254_740_993)]);
        assert_eq!(floats(b, "pm25"), [Some(4.0), None]);
        assert_eq!(strings(b, "note"), [Some("hello".into()), None]);
        assert_eq!(tags(b, "sensor"), [Some("s1".into()), None]);
    }

    #[test]
    fn ndjson_reports_lines() {
        let body = "{\"sensor\": \"a\", \"v\": 1}\r\n\n   \n{\"v\": 2,}\n[1]\n{\"v\": {}}\n{\"sensor\": \"b\", \"v\": 3, \"time\": \"2026-01-01T00:00:00Z\"}\n";
        let d = decode_ndjson(body.as_bytes(), &partial(), &()).unwrap();
        let got = errors(&d);
        assert_eq!(got.len(), 3, "{got:?}");
        assert_eq!((got[0].0, got[0].1), (4, 9));
        assert!(
            got[0].2.starts_with("invalid JSON: trailing comma"),
            "{}",
            got[0].2
        );
        assert_eq!(got[1], (5, 1, "expected a JSON object, found an array"));
        assert_eq!(got[2], (6, 0, "unsupported nested value for key 'v'"));
        let b = &d.batches[0].batch;
        assert_eq!(tags(b, "sensor"), [Some("a".into()), Some("b".into())]);
        assert_eq!(floats(b, "v"), [Some(1.0), Some(3.0)]);
        assert_eq!(times(b), [NOW, 1_767_225_600_000_000]);
        let d = decode_ndjson(b"{\"v\": 1}\n{\"v\": \"x\"}\n", &opts(), &()).unwrap();
        assert!(d.batches.is_empty());
        assert_eq!(
            errors(&d),
            [(2, 0, "key 'v' is string here but float in line 1")]
        );
    }
}
