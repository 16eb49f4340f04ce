//! The JSON mapping of a route: pointers to columns, unit conversions and the time.

use crate::builder::{Dialect, Entry, TableBuilder, Value, finish_tables};
use crate::error::{Error, Result};
use crate::types::{DecodeOptions, Decoded, Precision, Rejections, RowError, SchemaLookup};
use chrono::format::{Item, Parsed};
use serde_json::Value as Json;
use std::borrow::Cow;

/// A unit conversion applied to a mapped number.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Conversion {
    None,
    FahrenheitToCelsius,
    KelvinToCelsius,
    MphToKmh,
    MsToKmh,
    Linear { scale: f64, offset: f64 },
}

/// The names of the conversions, as written in route files.
pub(super) const CONVERSIONS: [(&str, Conversion); 4] = [
    ("fahrenheit_to_celsius", Conversion::FahrenheitToCelsius),
    ("kelvin_to_celsius", Conversion::KelvinToCelsius),
    ("mph_to_kmh", Conversion::MphToKmh),
    ("ms_to_kmh", Conversion::MsToKmh),
];

impl Conversion {
    fn apply(self, v: f64) -> f64 {
        match self {
            Conversion::None => v,
            Conversion::FahrenheitToCelsius => (v - 32.0) * 5.0 / 9.0,
            Conversion::KelvinToCelsius => v - 273.15,
            Conversion::MphToKmh => v * 1.609_344,
            Conversion::MsToKmh => v * 3.6,
            Conversion::Linear { scale, offset } => v * scale + offset,
        }
    }
}

#[derive(Debug, Clone)]
pub(super) struct FieldMap {
    pub(super) column: String,
    pub(super) pointer: String,
    pub(super) conversion: Conversion,
}

/// How the mapped time value is read.
#[derive(Debug, Clone)]
pub(super) enum TimeFormat {
    /// A string is RFC 3339, a number is an epoch in the route's (or the options') precision.
    Auto,
    Rfc3339,
    Epoch(Precision),
    /// A chrono strftime pattern; UTC when it has no offset.
    Strftime(Vec<Item<'static>>),
}

#[derive(Debug, Clone)]
pub(super) struct TimeMap {
    pub(super) pointer: String,
    pub(super) format: TimeFormat,
}

/// The JSON mapping of a route: each object of the payload becomes one row with exactly the
/// mapped columns.
#[derive(Debug, Clone)]
pub(super) struct Mapping {
    pub(super) fields: Vec<FieldMap>,
    /// Tag column and JSON pointer.
    pub(super) tags: Vec<(String, String)>,
    pub(super) time: Option<TimeMap>,
}

fn json_kind(value: &Json) -> &'static str {
    match value {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

impl Mapping {
    pub(super) fn decode(
        &self,
        payload: &[u8],
        table: &str,
        captures: &[(String, String)],
        opts: &DecodeOptions,
        schemas: &dyn SchemaLookup,
    ) -> Result<Decoded> {
        let text = crate::types::check_utf8(payload)?;
        let document: Json = serde_json::from_str(text).map_err(|e| Error::Json(e.to_string()))?;
        let mut builder = TableBuilder::new(table.to_string(), schemas.schema(table));
        let mut rejections = Rejections::default();
        let mut push = |row: usize, object: &Json| {
            let result = match object {
                Json::Object(_) => self.push_row(&mut builder, object, row, captures, opts),
                other => Err(RowError::new(
                    row,
                    0,
                    format!("expected a JSON object, found {}", json_kind(other)),
                )),
            };
            if let Err(e) = result {
                rejections.push(e);
            }
        };
        match &document {
            Json::Object(_) => push(1, &document),
            Json::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    push(i + 1, item);
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

    /// One object → one row with the mapped columns (a missing pointer leaves a null).
    fn push_row(
        &self,
        builder: &mut TableBuilder,
        object: &Json,
        row: usize,
        captures: &[(String, String)],
        opts: &DecodeOptions,
    ) -> Result<(), RowError> {
        let error = |message: String| RowError::new(row, 0, message);
        let mut entries = Vec::with_capacity(self.fields.len() + self.tags.len() + captures.len());
        for field in &self.fields {
            let value = match object.pointer(&field.pointer) {
                None | Some(Json::Null) => continue,
                Some(Json::Number(n)) => {
                    let Some(v) = n.as_f64() else {
                        return Err(error(format!(
                            "field '{}': number {n} at {} is out of range",
                            field.column, field.pointer
                        )));
                    };
                    match field.conversion {
                        Conversion::None => Value::Number(v, n.as_i64()),
                        conversion => Value::Number(conversion.apply(v), None),
                    }
                }
                Some(other) => {
                    return Err(error(format!(
                        "field '{}': {} is {}, expected a number",
                        field.column,
                        field.pointer,
                        json_kind(other)
                    )));
                }
            };
            entries.push(Entry {
                key: Cow::Borrowed(field.column.as_str()),
                value,
                pos: 0,
            });
        }
        for (column, pointer) in &self.tags {
            let text = match object.pointer(pointer) {
                None | Some(Json::Null) => continue,
                Some(Json::String(s)) => Cow::Borrowed(s.as_str()),
                Some(value @ (Json::Number(_) | Json::Bool(_))) => Cow::Owned(value.to_string()),
                Some(other) => {
                    return Err(error(format!(
                        "tag '{column}': {pointer} is {}, expected a string",
                        json_kind(other)
                    )));
                }
            };
            entries.push(Entry {
                key: Cow::Borrowed(column.as_str()),
                value: Value::Text(text),
                pos: 0,
            });
        }
        if entries.is_empty() {
            let mut pointers: Vec<&str> = self.fields.iter().map(|f| f.pointer.as_str()).collect();
            pointers.extend(self.tags.iter().map(|(_, p)| p.as_str()));
            return Err(error(format!(
                "none of the mapped values ({}) is in the object",
                pointers.join(", ")
            )));
        }
        for (name, value) in captures {
            entries.push(Entry {
                key: Cow::Borrowed(name.as_str()),
                value: Value::Text(Cow::Borrowed(value.as_str())),
                pos: 0,
            });
        }
        let time = match &self.time {
            None => opts.now_micros,
            Some(time) => time.read(object, opts.precision).map_err(error)?,
        };
        builder.push_row(time, &entries, row, Dialect::JSON)
    }
}

impl TimeMap {
    /// The time of `object` in microseconds since the epoch.
    fn read(&self, object: &Json, precision: Precision) -> Result<i64, String> {
        let pointer = &self.pointer;
        let value = match object.pointer(pointer) {
            None | Some(Json::Null) => return Err(format!("time: {pointer} is missing")),
            Some(value) => value,
        };
        let bad = |expected: &str| {
            format!(
                "time: {pointer} is {}, expected {expected}",
                json_kind(value)
            )
        };
        match (&self.format, value) {
            (TimeFormat::Auto | TimeFormat::Rfc3339, Json::String(s)) => {
                chrono::DateTime::parse_from_rfc3339(s)
                    .map(|t| t.timestamp_micros())
                    .map_err(|e| format!("time {s:?} at {pointer} is not RFC 3339 ({e})"))
            }
            (TimeFormat::Auto, Json::Number(_)) => epoch(value, precision, pointer),
            (TimeFormat::Auto, _) => Err(bad("an RFC 3339 string or an epoch number")),
            (TimeFormat::Rfc3339, _) => Err(bad("an RFC 3339 string")),
            (TimeFormat::Epoch(unit), Json::Number(_) | Json::String(_)) => {
                epoch(value, *unit, pointer)
            }
            (TimeFormat::Epoch(_), _) => Err(bad("an epoch number")),
            (TimeFormat::Strftime(items), Json::String(s)) => strftime(s, items).ok_or_else(|| {
                format!("time {s:?} at {pointer} does not fit the route's time format")
            }),
            (TimeFormat::Strftime(_), _) => Err(bad("a string")),
        }
    }
}

/// An epoch number (or a string holding one) in `unit`, as microseconds.
fn epoch(value: &Json, unit: Precision, pointer: &str) -> Result<i64, String> {
    let micros = match value {
        Json::Number(n) => match n.as_i64() {
            Some(v) => unit.to_micros(v),
            None => n.as_f64().and_then(|v| unit.float_to_micros(v)),
        },
        Json::String(s) => match s.trim().parse::<i64>() {
            Ok(v) => unit.to_micros(v),
            Err(_) => match s.trim().parse::<f64>() {
                Ok(v) => unit.float_to_micros(v),
                Err(_) => {
                    return Err(format!("time {s:?} at {pointer} is not an epoch number"));
                }
            },
        },
        _ => None,
    };
    micros.ok_or_else(|| format!("time {value} at {pointer} is out of range for precision {unit}"))
}

/// A time parsed with a strftime pattern: with its offset when the pattern has one, else UTC;
/// a date without a time of day is midnight.
fn strftime(text: &str, items: &[Item<'static>]) -> Option<i64> {
    let mut parsed = Parsed::new();
    chrono::format::parse(&mut parsed, text, items.iter()).ok()?;
    if parsed.offset().is_some() {
        return parsed.to_datetime().ok().map(|t| t.timestamp_micros());
    }
    match parsed.to_naive_datetime_with_offset(0) {
        Ok(t) => Some(t.and_utc().timestamp_micros()),
        Err(_) if parsed.hour_div_12().is_none() && parsed.timestamp().is_none() => {
            parsed.to_naive_date().ok().map(|d| {
                d.and_time(chrono::NaiveTime::MIN)
                    .and_utc()
                    .timestamp_micros()
            })
        }
        Err(_) => None,
    }
}
