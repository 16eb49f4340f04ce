//! Location batches sent by the city's smartphone apps, with pseudonymised device ids.
//!
//! A payload is one batch or a JSON array of batches:
//!
//! ```json
//! {"device_id": "a1b2", "points": [
//!   {"lat": 43.88, "lon": 11.09, "accuracy": 12.0, "speed": 1.4, "time": "2026-01-01T08:00:00Z"}
//! ]}
//! ```
//!
//! Every point is a row: tag `device` (a pseudonym from [`Pseudonymiser`], never the raw id),
//! fields `lat`, `lon` and, when given, `accuracy` and `speed` (all `Float64`). `time` is an
//! RFC 3339 string or an epoch number in `opts.precision` units; missing means
//! `opts.now_micros`. Other keys of a point are ignored.

use crate::builder::{Dialect, Entry, TableBuilder, Value, finish_tables};
use crate::error::{Error, Result};
use crate::json::{json_kind, parse_time};
use crate::types::{DecodeOptions, Decoded, Rejections, RowError, SchemaLookup, check_utf8};
use chrono::DateTime;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Map, Value as Json};
use sha2::Sha256;
use std::borrow::Cow;
use std::fmt;

const FORMAT: &str = "phone locations";

/// Shortest accepted pseudonymisation secret, in bytes.
pub const MIN_SECRET_LEN: usize = 16;

/// Longest accepted device id, in bytes.
const MAX_DEVICE_ID_LEN: usize = 256;

type HmacSha256 = Hmac<Sha256>;

/// How often the pseudonym of a device changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Rotation {
    /// A new pseudonym every UTC day (the date of each point's time): tracks cannot be linked
    /// across days.
    #[default]
    Daily,
    /// The same pseudonym forever (a fixed key derived from the secret).
    Never,
}

/// Turns device ids into pseudonyms with a keyed HMAC-SHA256.
///
/// With [`Rotation::Daily`] the key of a day is `HMAC(secret, "civiclake-phone-day:" + date)`
/// (date `YYYY-MM-DD`, UTC); with [`Rotation::Never`] it is
/// `HMAC(secret, "civiclake-phone-fixed")`. The pseudonym is the lowercase hex of the first
/// 16 bytes of `HMAC(key, device_id)`. Without the secret a pseudonym cannot be linked back
/// to its device. `Debug` does not show the secret.
#[derive(Clone)]
pub struct Pseudonymiser {
    /// HMAC keyed with the secret, for deriving day keys.
    root: HmacSha256,
    /// HMAC keyed with the fixed key ([`Rotation::Never`]).
    fixed: HmacSha256,
    rotation: Rotation,
}

impl fmt::Debug for Pseudonymiser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pseudonymiser")
            .field("rotation", &self.rotation)
            .field("secret", &"<redacted>")
            .finish()
    }
}

fn keyed(key: &[u8]) -> Result<HmacSha256> {
    <HmacSha256 as KeyInit>::new_from_slice(key)
        .map_err(|e| Error::Config(format!("cannot key HMAC-SHA256: {e}")))
}

fn mac(base: &HmacSha256, parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = base.clone();
    for part in parts {
        mac.update(part);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(&mac.finalize().into_bytes());
    out
}

impl Pseudonymiser {
    /// A pseudonymiser with `secret` (at least [`MIN_SECRET_LEN`] bytes).
    pub fn new(secret: Vec<u8>, rotation: Rotation) -> Result<Self> {
        if secret.len() < MIN_SECRET_LEN {
            return Err(Error::Config(format!(
                "the pseudonymisation secret has {} bytes: use at least {MIN_SECRET_LEN} random bytes",
                secret.len()
            )));
        }
        let root = keyed(&secret)?;
        let fixed = keyed(&mac(&root, &[b"civiclake-phone-fixed"]))?;
        Ok(Pseudonymiser {
            root,
            fixed,
            rotation,
        })
    }

    /// The rotation.
    pub fn rotation(&self) -> Rotation {
        self.rotation
    }

    /// The pseudonym of `device_id` for a point at `time_micros` (microseconds since the
    /// epoch): 32 lowercase hex digits. `Err` when the time has no calendar date.
    pub fn pseudonym(&self, device_id: &str, time_micros: i64) -> Result<String> {
        let digest = match self.rotation {
            Rotation::Never => mac(&self.fixed, &[device_id.as_bytes()]),
            Rotation::Daily => {
                let date = DateTime::from_timestamp_micros(time_micros)
                    .ok_or_else(|| Error::Payload {
                        format: FORMAT,
                        message: format!("time {time_micros} µs has no calendar date"),
                    })?
                    .format("%Y-%m-%d")
                    .to_string();
                let day_key = mac(&self.root, &[b"civiclake-phone-day:", date.as_bytes()]);
                mac(&keyed(&day_key)?, &[device_id.as_bytes()])
            }
        };
        Ok(hex::encode(&digest[..16]))
    }
}

/// Decodes smartphone location batches into `opts.table` (required), replacing each device
/// id with its pseudonym from `opts.pseudonymiser` (required: without it nothing is decoded).
///
/// A payload that is not a batch or an array of batches (or a batch without a valid
/// `device_id` or `points` array) is an [`Error::Payload`]. Bad points are row errors whose
/// [`RowError::line`] is the 1-based number of the point in the payload (counting across
/// batches); their messages never contain the device id.
pub fn decode_phone_locations(
    body: &[u8],
    opts: &DecodeOptions,
    schemas: &dyn SchemaLookup,
) -> Result<Decoded> {
    let pseudonymiser = opts.pseudonymiser.as_deref().ok_or_else(|| {
        Error::Config(
            "phone_locations payloads need a pseudonymisation key: configure one \
             (raw device ids are never stored)"
                .to_string(),
        )
    })?;
    let table = crate::types::required_table(opts, "phone_locations")?;
    let text = check_utf8(body)?;
    let document: Json = serde_json::from_str(text).map_err(|e| Error::Json(e.to_string()))?;
    let batches: Vec<(&Map<String, Json>, String)> = match &document {
        Json::Object(map) => vec![(map, String::from("the batch"))],
        Json::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| match item {
                Json::Object(map) => Ok((map, format!("element {}", i + 1))),
                other => Err(payload_error(format!(
                    "element {} is {}, expected a batch object",
                    i + 1,
                    json_kind(other)
                ))),
            })
            .collect::<Result<_>>()?,
        other => {
            return Err(payload_error(format!(
                "expected a batch object or an array of batches, found {}",
                json_kind(other)
            )));
        }
    };
    let mut builder = TableBuilder::new(table.to_string(), schemas.schema(table));
    let mut rejections = Rejections::default();
    let mut row = 0;
    for (map, name) in batches {
        let device = match map.get("device_id") {
            Some(Json::String(s)) if !s.is_empty() && s.len() <= MAX_DEVICE_ID_LEN => s,
            Some(Json::String(_)) => {
                return Err(payload_error(format!(
                    "{name}: 'device_id' must have 1-{MAX_DEVICE_ID_LEN} bytes"
                )));
            }
            Some(other) => {
                return Err(payload_error(format!(
                    "{name}: 'device_id' must be a string, found {}",
                    json_kind(other)
                )));
            }
            None => return Err(payload_error(format!("{name}: 'device_id' is missing"))),
        };
        let points = match map.get("points") {
            Some(Json::Array(points)) => points,
            Some(other) => {
                return Err(payload_error(format!(
                    "{name}: 'points' must be an array, found {}",
                    json_kind(other)
                )));
            }
            None => return Err(payload_error(format!("{name}: 'points' is missing"))),
        };
        for point in points {
            row += 1;
            let result = push_point(&mut builder, point, device, pseudonymiser, row, opts);
            if let Err(e) = result {
                rejections.push(e);
            }
        }
    }
    finish_tables(vec![builder], rejections, opts.accept_partial)
}

fn payload_error(message: String) -> Error {
    Error::Payload {
        format: FORMAT,
        message,
    }
}

fn push_point(
    builder: &mut TableBuilder,
    point: &Json,
    device: &str,
    pseudonymiser: &Pseudonymiser,
    row: usize,
    opts: &DecodeOptions,
) -> Result<(), RowError> {
    let error = |message: String| RowError::new(row, 0, message);
    let Json::Object(point) = point else {
        return Err(error(format!(
            "a point is a JSON object, found {}",
            json_kind(point)
        )));
    };
    let number = |key: &str| -> Result<Option<f64>, RowError> {
        match point.get(key) {
            None | Some(Json::Null) => Ok(None),
            Some(Json::Number(n)) => n
                .as_f64()
                .filter(|f| f.is_finite())
                .map(Some)
                .ok_or_else(|| error(format!("'{key}' {n} is out of range"))),
            Some(other) => Err(error(format!(
                "'{key}' must be a number, found {}",
                json_kind(other)
            ))),
        }
    };
    let lat = number("lat")?.ok_or_else(|| error("'lat' is missing".into()))?;
    let lon = number("lon")?.ok_or_else(|| error("'lon' is missing".into()))?;
    if !(-90.0..=90.0).contains(&lat) {
        return Err(error(format!("latitude {lat} is outside [-90, 90]")));
    }
    if !(-180.0..=180.0).contains(&lon) {
        return Err(error(format!("longitude {lon} is outside [-180, 180]")));
    }
    let time = match point.get("time") {
        Some(value) => parse_time(value, opts.precision).map_err(error)?,
        None => None,
    }
    .unwrap_or(opts.now_micros);
    let pseudonym = pseudonymiser
        .pseudonym(device, time)
        .map_err(|e| error(e.to_string()))?;
    let mut entries = vec![
        Entry {
            key: Cow::Borrowed("device"),
            value: Value::Tag(Cow::Owned(pseudonym)),
            pos: 0,
        },
        Entry {
            key: Cow::Borrowed("lat"),
            value: Value::Float(lat),
            pos: 0,
        },
        Entry {
            key: Cow::Borrowed("lon"),
            value: Value::Float(lon),
            pos: 0,
        },
    ];
    for key in ["accuracy", "speed"] {
        if let Some(v) = number(key)? {
            entries.push(Entry {
                key: Cow::Borrowed(key),
                value: Value::Float(v),
                pos: 0,
            });
        }
    }
    builder.push_row(time, &entries, row, Dialect::JSON)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::*;
    use crate::types::Precision;
    use arrow::util::display::{ArrayFormatter, FormatOptions};
    use std::sync::Arc;

    const NOW: i64 = 1_767_225_600_000_000; // 2026-01-01T00:00:00Z
    const SECRET: &[u8] = b"0123456789abcdef-test-secret";

    fn opts(rotation: Rotation) -> DecodeOptions {
        DecodeOptions {
            table: Some("phone_tracks".into()),
            precision: Precision::Millisecond,
            now_micros: NOW,
            accept_partial: true,
            pseudonymiser: Some(Arc::new(
                Pseudonymiser::new(SECRET.to_vec(), rotation).unwrap(),
            )),
        }
    }

    #[test]
    fn pseudonyms_rotate_daily_and_are_stable_with_never() {
        let daily = Pseudonymiser::new(SECRET.to_vec(), Rotation::Daily).unwrap();
        let morning = daily
            .pseudonym("phone-42", NOW + 8 * 3_600_000_000)
            .unwrap();
        let evening = daily
            .pseudonym("phone-42", NOW + 23 * 3_600_000_000)
            .unwrap();
        let next_day = daily
            .pseudonym("phone-42", NOW + 25 * 3_600_000_000)
            .unwrap();
        let other = daily.pseudonym("phone-43", NOW).unwrap();
        assert_eq!(morning.len(), 32);
        assert!(
            morning
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        assert_eq!(morning, evening);
        assert_ne!(morning, next_day);
        assert_ne!(morning, other);

        let never = Pseudonymiser::new(SECRET.to_vec(), Rotation::Never).unwrap();
        let a = never.pseudonym("phone-42", NOW).unwrap();
        assert_eq!(
            a,
            never
                .pseudonym("phone-42", NOW + 400 * 86_400_000_000)
                .unwrap()
        );
        assert_ne!(a, morning);
        // Another secret gives other pseudonyms.
        let other_secret = Pseudonymiser::new(b"another-secret-of-16+".to_vec(), Rotation::Never);
        assert_ne!(other_secret.unwrap().pseudonym("phone-42", NOW).unwrap(), a);
    }

    #[test]
    fn the_day_key_follows_the_documented_construction() {
        let p = Pseudonymiser::new(SECRET.to_vec(), Rotation::Daily).unwrap();
        let mut day = HmacSha256::new_from_slice(SECRET).unwrap();
        day.update(b"civiclake-phone-day:2026-01-01");
        let day_key = day.finalize().into_bytes();
        let mut id = HmacSha256::new_from_slice(&day_key).unwrap();
        id.update(b"phone-42");
        let expected = hex::encode(&id.finalize().into_bytes()[..16]);
        assert_eq!(p.pseudonym("phone-42", NOW + 1).unwrap(), expected);
    }

    #[test]
    fn short_secrets_are_refused_and_debug_hides_the_secret() {
        let err = Pseudonymiser::new(b"short".to_vec(), Rotation::Daily).unwrap_err();
        assert!(err.to_string().contains("at least 16"), "{err}");
        let p = Pseudonymiser::new(SECRET.to_vec(), Rotation::Never).unwrap();
        let debug = format!("{p:?}");
        assert_eq!(
            debug,
            "Pseudonymiser { rotation: Never, secret: \"<redacted>\" }"
        );
        assert!(!format!("{:?}", opts(Rotation::Daily)).contains("0123456789abcdef"));
    }

    #[test]
    fn decodes_batches_and_never_stores_the_raw_id() {
        let body = r#"[
            {"device_id": "phone-42", "points": [
                {"lat": 43.8777, "lon": 11.1022, "accuracy": 8.5, "speed": 1.2,
                 "time": "2026-01-01T08:00:00Z"},
                {"lat": 43.8779, "lon": 11.1025, "time": 1767254460000}
            ]},
            {"device_id": "phone-7", "points": [
                {"lat": -33.9, "lon": 151.2, "speed": 0, "altitude": 12}
            ]}
        ]"#;
        let o = opts(Rotation::Daily);
        let d = decode_phone_locations(body.as_bytes(), &o, &()).unwrap();
        assert!(d.rejected.is_empty(), "{:?}", d.rejected);
        let b = &d.batches[0].batch;
        assert_eq!(d.batches[0].table, "phone_tracks");
        assert_eq!(
            names(b),
            ["time", "device", "accuracy", "lat", "lon", "speed"]
        );
        assert_eq!(
            times(b),
            [
                NOW + 8 * 3_600_000_000,
                NOW + 8 * 3_600_000_000 + 60_000_000,
                NOW
            ]
        );
        let p = o.pseudonymiser.as_deref().unwrap();
        let p42 = p.pseudonym("phone-42", NOW).unwrap();
        let p7 = p.pseudonym("phone-7", NOW).unwrap();
        assert_eq!(tags(b, "device"), [Some(p42.clone()), Some(p42), Some(p7)]);
        assert_eq!(
            floats(b, "lat"),
            [Some(43.8777), Some(43.8779), Some(-33.9)]
        );
        assert_eq!(
            floats(b, "lon"),
            [Some(11.1022), Some(11.1025), Some(151.2)]
        );
        assert_eq!(floats(b, "accuracy"), [Some(8.5), None, None]);
        assert_eq!(floats(b, "speed"), [Some(1.2), None, Some(0.0)]);
        // No cell of any column (but the timestamps), nor any column name, holds a raw id.
        let format = FormatOptions::default();
        for (field, column) in b.schema().fields().iter().zip(b.columns()).skip(1) {
            assert!(!field.name().contains("phone-"));
            let formatter = ArrayFormatter::try_new(column.as_ref(), &format).unwrap();
            for i in 0..b.num_rows() {
                let cell = formatter.value(i).to_string();
                assert!(
                    !cell.contains("phone-42") && !cell.contains("phone-7"),
                    "{cell}"
                );
            }
        }
    }

    #[test]
    fn bad_points_are_row_errors_without_the_id() {
        let body = r#"{"device_id": "phone-42", "points": [
            {"lat": 91, "lon": 11},
            {"lat": 43.9, "lon": -180.5},
            {"lat": "43", "lon": 11},
            {"lon": 11},
            {"lat": 43.9, "lon": 11.1, "time": "yesterday"},
            [1, 2],
            {"lat": 43.9, "lon": 11.1}
        ]}"#;
        let d = decode_phone_locations(body.as_bytes(), &opts(Rotation::Daily), &()).unwrap();
        let got: Vec<(usize, &str)> = d
            .rejected
            .iter()
            .map(|e| (e.line, e.message.as_str()))
            .collect();
        assert_eq!(got[0], (1, "latitude 91 is outside [-90, 90]"));
        assert_eq!(got[1], (2, "longitude -180.5 is outside [-180, 180]"));
        assert_eq!(got[2], (3, "'lat' must be a number, found a string"));
        assert_eq!(got[3], (4, "'lat' is missing"));
        assert_eq!(got[4].0, 5);
        assert!(
            got[4].1.starts_with("invalid time \"yesterday\""),
            "{}",
            got[4].1
        );
        assert_eq!(got[5], (6, "a point is a JSON object, found an array"));
        assert_eq!(got.len(), 6);
        assert!(d.rejected.iter().all(|e| !e.message.contains("phone-42")));
        assert_eq!(d.rows, 1);
        // All or nothing when partial writes are not accepted.
        let strict = DecodeOptions {
            accept_partial: false,
            ..opts(Rotation::Daily)
        };
        let d = decode_phone_locations(body.as_bytes(), &strict, &()).unwrap();
        assert!(d.batches.is_empty());
        assert_eq!(d.rejected_rows, 6);
    }

    #[test]
    fn malformed_batches_and_a_missing_key_are_errors() {
        let o = opts(Rotation::Daily);
        let cases = [
            (r#"{"points": []}"#, "the batch: 'device_id' is missing"),
            (
                r#"{"device_id": 42, "points": []}"#,
                "'device_id' must be a string",
            ),
            (
                r#"{"device_id": "", "points": []}"#,
                "'device_id' must have 1-256 bytes",
            ),
            (r#"{"device_id": "x"}"#, "the batch: 'points' is missing"),
            (
                r#"[{"device_id": "x", "points": {}}]"#,
                "element 1: 'points' must be an array",
            ),
            (
                r#"[{"device_id": "x", "points": []}, 3]"#,
                "element 2 is a number",
            ),
            (
                "\"x\"",
                "expected a batch object or an array of batches, found a string",
            ),
        ];
        for (body, expected) in cases {
            let err = decode_phone_locations(body.as_bytes(), &o, &()).unwrap_err();
            assert!(matches!(err, Error::Payload { .. }), "{err:?}");
            assert!(err.to_string().contains(expected), "{body}: {err}");
        }
        assert!(matches!(
            decode_phone_locations(b"{", &o, &()).unwrap_err(),
            Error::Json(_)
        ));
        let no_key = DecodeOptions {
            pseudonymiser: None,
            ..o
        };
        let err =
            decode_phone_locations(br#"{"device_id":"x","points":[]}"#, &no_key, &()).unwrap_err();
        assert_eq!(err.class(), civiclake_core::ErrorClass::Internal);
        assert!(err.to_string().contains("pseudonymisation key"), "{err}");
    }
}
