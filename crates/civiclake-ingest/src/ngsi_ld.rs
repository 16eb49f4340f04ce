//! NGSI-LD entities as a FIWARE context broker (Orion-LD, Scorpio) notifies them:
//! a notification `{"type": "Notification", "notifiedAt": ..., "data": [entities]}`, a bare
//! entity, or an array of entities, in the normalized, concise or keyValues representation.
//!
//! Every entity is a row: tags `entity_id` and `entity_type` (several types are joined with
//! `,`), and a column per attribute (`@context`, `id` and `type` are skipped):
//!
//! | attribute | columns |
//! |---|---|
//! | Property (or a concise / keyValues value): number, boolean, string | `<attr>` `Float64` / `Boolean` / `Utf8` |
//! | Property whose value is an object or array | `<attr>` `Utf8`, the JSON text (a JSON-LD `{"@value": v}` gives `v`) |
//! | GeoProperty (or a GeoJSON geometry value) with a `Point` | `<attr>_lon`, `<attr>_lat` `Float64` |
//! | GeoProperty with another geometry | `<attr>_geojson` `Utf8` |
//! | Relationship | `<attr>` `Utf8`, the `object` |
//! | LanguageProperty, VocabProperty, ListProperty, ListRelationship | `<attr>` `Utf8` (JSON text unless a string) |
//!
//! Sub-attributes (`unitCode`, `datasetId`, nested properties) are not stored. Column names
//! are the attribute names with every character other than ASCII letters, digits and `_`
//! replaced by `_`. The row's time is the latest `observedAt` of its attributes, else the
//! notification's `notifiedAt`, else `opts.now_micros`.

use crate::builder::{Dialect, Entry, TableBuilder, Value, finish_tables};
use crate::error::{Error, Result};
use crate::json::json_kind;
use crate::types::{
    DecodeOptions, Decoded, Rejections, RowError, SchemaLookup, check_utf8, required_table,
};
use serde_json::{Map, Value as Json};
use std::borrow::Cow;

const FORMAT: &str = "NGSI-LD";

/// GeoJSON geometry types (a keyValues geometry is recognised by its `type`).
const GEOMETRY_TYPES: [&str; 7] = [
    "Point",
    "MultiPoint",
    "LineString",
    "MultiLineString",
    "Polygon",
    "MultiPolygon",
    "GeometryCollection",
];

/// Decodes an NGSI-LD notification, entity or array of entities into `opts.table`
/// (required), one row per entity.
///
/// A body of another shape, a notification without a `data` array or with an invalid
/// `notifiedAt` is an [`Error::Payload`]; bad entities are [`RowError`]s whose
/// [`RowError::line`] is the entity's index in `data` (or the array) + 1.
pub fn decode_ngsi_ld(
    body: &[u8],
    opts: &DecodeOptions,
    schemas: &dyn SchemaLookup,
) -> Result<Decoded> {
    let table = required_table(opts, FORMAT)?;
    let text = check_utf8(body)?;
    let document: Json = serde_json::from_str(text).map_err(|e| Error::Json(e.to_string()))?;
    let mut fallback_time = opts.now_micros;
    let entities: &[Json] = match &document {
        Json::Object(map) if map.get("type").and_then(Json::as_str) == Some("Notification") => {
            match map.get("notifiedAt") {
                None | Some(Json::Null) => {}
                Some(Json::String(s)) => {
                    fallback_time = parse_datetime(s).map_err(payload_error)?;
                }
                Some(other) => {
                    return Err(payload_error(format!(
                        "'notifiedAt' must be a string, found {}",
                        json_kind(other)
                    )));
                }
            }
            match map.get("data") {
                Some(Json::Array(data)) => data,
                Some(other) => {
                    return Err(payload_error(format!(
                        "the notification's 'data' must be an array of entities, found {}",
                        json_kind(other)
                    )));
                }
                None => {
                    return Err(payload_error(
                        "the notification has no 'data' array of entities".into(),
                    ));
                }
            }
        }
        Json::Object(_) => std::slice::from_ref(&document),
        Json::Array(items) => items,
        other => {
            return Err(payload_error(format!(
                "expected a notification, an entity or an array of entities, found {}",
                json_kind(other)
            )));
        }
    };
    let mut builder = TableBuilder::new(table.to_string(), schemas.schema(table));
    let mut rejections = Rejections::default();
    for (i, entity) in entities.iter().enumerate() {
        if let Err(e) = push_entity(&mut builder, entity, i + 1, fallback_time) {
            rejections.push(e);
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

fn parse_datetime(s: &str) -> Result<i64, String> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_micros())
        .map_err(|e| format!("invalid time {s:?}: expected an RFC 3339 timestamp ({e})"))
}

/// An attribute name as a column name: characters other than ASCII letters, digits and `_`
/// become `_`.
fn column_name(attribute: &str) -> String {
    attribute
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// The text of a JSON value: strings as they are, anything else as JSON.
fn text(value: &Json) -> Cow<'_, str> {
    match value {
        Json::String(s) => Cow::Borrowed(s),
        other => Cow::Owned(other.to_string()),
    }
}

fn is_geometry(map: &Map<String, Json>) -> bool {
    map.get("type")
        .and_then(Json::as_str)
        .is_some_and(|t| GEOMETRY_TYPES.contains(&t))
        && (map.contains_key("coordinates") || map.contains_key("geometries"))
}

/// The columns of one attribute.
struct Columns<'a> {
    column: String,
    entries: Vec<Entry<'a>>,
}

impl<'a> Columns<'a> {
    fn push(&mut self, suffix: &str, value: Value<'a>) {
        self.entries.push(Entry {
            key: Cow::Owned(format!("{}{suffix}", self.column)),
            value,
            pos: 0,
        });
    }

    /// A property value (also a concise or keyValues one).
    fn value(&mut self, value: &'a Json) {
        match value {
            Json::Null => {}
            Json::Bool(b) => self.push("", Value::Bool(*b)),
            Json::Number(n) => match n.as_f64() {
                Some(f) => self.push("", Value::Number(f, None)),
                None => self.push("", Value::Str(Cow::Owned(n.to_string()))),
            },
            Json::String(s) => self.push("", Value::Str(Cow::Borrowed(s))),
            Json::Object(m) if m.contains_key("@value") => {
                if let Some(inner) = m.get("@value") {
                    self.value(inner);
                }
            }
            other => self.push("", Value::Str(Cow::Owned(other.to_string()))),
        }
    }

    /// A GeoJSON geometry: a point as longitude and latitude, anything else as GeoJSON text.
    fn geometry(&mut self, value: &'a Json) {
        if let Json::Object(m) = value
            && m.get("type").and_then(Json::as_str) == Some("Point")
            && let Some(Json::Array(coordinates)) = m.get("coordinates")
            && let [lon, lat, ..] = coordinates.as_slice()
            && let (Some(lon), Some(lat)) = (lon.as_f64(), lat.as_f64())
        {
            self.push("_lon", Value::Float(lon));
            self.push("_lat", Value::Float(lat));
        } else if !value.is_null() {
            self.push("_geojson", Value::Str(text(value)));
        }
    }

    /// An optional member of an attribute as text.
    fn member(&mut self, value: Option<&'a Json>) {
        if let Some(value) = value.filter(|v| !v.is_null()) {
            self.push("", Value::Str(text(value)));
        }
    }
}

fn push_entity(
    builder: &mut TableBuilder,
    entity: &Json,
    row: usize,
    fallback_time: i64,
) -> Result<(), RowError> {
    let error = |message: String| RowError::new(row, 0, message);
    let Json::Object(entity) = entity else {
        return Err(error(format!(
            "an NGSI-LD entity is a JSON object, found {}",
            json_kind(entity)
        )));
    };
    let id = match entity.get("id") {
        Some(Json::String(id)) if !id.is_empty() => id,
        _ => return Err(error("the entity has no 'id' string".into())),
    };
    let entity_type = match entity.get("type") {
        Some(Json::String(t)) if !t.is_empty() => Cow::Borrowed(t.as_str()),
        Some(Json::Array(types))
            if !types.is_empty()
                && types
                    .iter()
                    .all(|t| t.as_str().is_some_and(|t| !t.is_empty())) =>
        {
            Cow::Owned(
                types
                    .iter()
                    .filter_map(Json::as_str)
                    .collect::<Vec<_>>()
                    .join(","),
            )
        }
        _ => {
            return Err(error(format!(
                "entity {id:?} has no 'type' (a string or an array of strings)"
            )));
        }
    };
    let mut entries = vec![
        Entry {
            key: Cow::Borrowed("entity_id"),
            value: Value::Tag(Cow::Borrowed(id)),
            pos: 0,
        },
        Entry {
            key: Cow::Borrowed("entity_type"),
            value: Value::Tag(entity_type),
            pos: 0,
        },
    ];
    let mut observed: Option<i64> = None;
    for (name, value) in entity {
        if matches!(name.as_str(), "@context" | "id" | "type") {
            continue;
        }
        let column = column_name(name);
        civiclake_core::validate_column_name(&column)
            .map_err(|e| error(format!("attribute {name:?}: {e}")))?;
        let mut columns = Columns {
            column,
            entries: Vec::with_capacity(2),
        };
        match value {
            Json::Object(m) => {
                if let Some(at) = m.get("observedAt") {
                    let at = match at {
                        Json::String(s) => parse_datetime(s),
                        other => Err(format!("expected a string, found {}", json_kind(other))),
                    }
                    .map_err(|e| error(format!("attribute {name:?}: observedAt: {e}")))?;
                    observed = Some(observed.map_or(at, |o| o.max(at)));
                }
                match m.get("type").and_then(Json::as_str) {
                    Some("Property") => columns.value(m.get("value").unwrap_or(&Json::Null)),
                    Some("GeoProperty") => {
                        columns.geometry(m.get("value").unwrap_or(&Json::Null));
                    }
                    Some("Relationship") => match m.get("object") {
                        Some(object) => columns.member(Some(object)),
                        None => {
                            return Err(error(format!("relationship {name:?} has no 'object'")));
                        }
                    },
                    Some("LanguageProperty") => columns.member(m.get("languageMap")),
                    Some("VocabProperty") => columns.member(m.get("vocab")),
                    Some("ListProperty") => columns.member(m.get("valueList")),
                    Some("ListRelationship") => columns.member(m.get("objectList")),
                    _ if is_geometry(m) => columns.geometry(value),
                    None if m.contains_key("value") => match m.get("value") {
                        Some(Json::Object(v)) if is_geometry(v) => {
                            columns.geometry(m.get("value").unwrap_or(&Json::Null));
                        }
                        v => columns.value(v.unwrap_or(&Json::Null)),
                    },
                    None if m.contains_key("object") => columns.member(m.get("object")),
                    None if m.contains_key("languageMap") => columns.member(m.get("languageMap")),
                    _ => columns.value(value),
                }
            }
            other => columns.value(other),
        }
        entries.append(&mut columns.entries);
    }
    builder.push_row(
        observed.unwrap_or(fallback_time),
        &entries,
        row,
        Dialect::JSON,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::*;
    use arrow::datatypes::DataType;

    const NOW: i64 = 1_767_225_600_000_000;

    fn opts() -> DecodeOptions {
        DecodeOptions {
            table: Some("air_quality".into()),
            now_micros: NOW,
            accept_partial: true,
            ..DecodeOptions::default()
        }
    }

    fn micros(rfc3339: &str) -> i64 {
        parse_datetime(rfc3339).unwrap()
    }

    const NOTIFICATION: &str = r#"{
        "id": "urn:ngsi-ld:Notification:6571f3a2c1d4e5f6a7b8c9d0",
        "type": "Notification",
        "subscriptionId": "urn:ngsi-ld:Subscription:prato-air-quality",
        "notifiedAt": "2026-01-10T09:30:05.123Z",
        "data": [
            {
                "id": "urn:ngsi-ld:AirQualityObserved:Prato-Roma",
                "type": "AirQualityObserved",
                "dateObserved": {
                    "type": "Property",
                    "value": {"@type": "DateTime", "@value": "2026-01-10T09:00:00Z"}
                },
                "NO2": {
                    "type": "Property", "value": 22.5, "unitCode": "GQ",
                    "observedAt": "2026-01-10T09:00:00Z"
                },
                "PM10": {
                    "type": "Property", "value": 31, "unitCode": "GQ",
                    "observedAt": "2026-01-10T09:15:00Z"
                },
                "airQualityLevel": {"type": "Property", "value": "moderate"},
                "isRaining": {"type": "Property", "value": false},
                "address": {
                    "type": "Property",
                    "value": {"addressLocality": "Prato", "addressCountry": "IT"}
                },
                "source-system": {"type": "Property", "value": "ARPAT"},
                "location": {
                    "type": "GeoProperty",
                    "value": {"type": "Point", "coordinates": [11.0966, 43.8777]}
                },
                "refDevice": {
                    "type": "Relationship",
                    "object": "urn:ngsi-ld:Device:prato-aq-01",
                    "observedAt": "2026-01-10T08:00:00Z"
                },
                "@context": [
                    "https://smartdatamodels.org/context.jsonld",
                    "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld"
                ]
            },
            {
                "id": "urn:ngsi-ld:AirQualityObserved:Prato-Ferrucci",
                "type": "AirQualityObserved",
                "NO2": {"type": "Property", "value": 40.1, "unitCode": "GQ"},
                "location": {
                    "type": "GeoProperty",
                    "value": {"type": "Point", "coordinates": [11.1102, 43.8701, 65.0]}
                }
            }
        ]
    }"#;

    #[test]
    fn decodes_an_air_quality_notification() {
        let d = decode_ngsi_ld(NOTIFICATION.as_bytes(), &opts(), &()).unwrap();
        assert!(d.rejected.is_empty(), "{:?}", d.rejected);
        let b = &d.batches[0].batch;
        assert_eq!(d.batches[0].table, "air_quality");
        assert_eq!(
            names(b),
            [
                "time",
                "entity_id",
                "entity_type",
                "NO2",
                "PM10",
                "address",
                "airQualityLevel",
                "dateObserved",
                "isRaining",
                "location_lat",
                "location_lon",
                "refDevice",
                "source_system"
            ]
        );
        // The latest observedAt of the first entity; the second has none: notifiedAt.
        assert_eq!(
            times(b),
            [
                micros("2026-01-10T09:15:00Z"),
                micros("2026-01-10T09:30:05.123Z")
            ]
        );
        assert_eq!(
            tags(b, "entity_id"),
            [
                Some("urn:ngsi-ld:AirQualityObserved:Prato-Roma".into()),
                Some("urn:ngsi-ld:AirQualityObserved:Prato-Ferrucci".into())
            ]
        );
        assert_eq!(
            tags(b, "entity_type"),
            vec![Some("AirQualityObserved".to_string()); 2]
        );
        assert_eq!(floats(b, "NO2"), [Some(22.5), Some(40.1)]);
        assert_eq!(floats(b, "PM10"), [Some(31.0), None]);
        assert_eq!(floats(b, "location_lon"), [Some(11.0966), Some(11.1102)]);
        assert_eq!(floats(b, "location_lat"), [Some(43.8777), Some(43.8701)]);
        assert_eq!(bools(b, "isRaining"), [Some(false), None]);
        let schema = b.schema();
        for column in [
            "airQualityLevel",
            "address",
            "dateObserved",
            "refDevice",
            "source_system",
        ] {
            assert_eq!(
                schema.field_with_name(column).unwrap().data_type(),
                &DataType::Utf8,
                "{column}"
            );
        }
        assert_eq!(
            strings(b, "airQualityLevel"),
            [Some("moderate".into()), None]
        );
        assert_eq!(
            strings(b, "address"),
            [
                Some(r#"{"addressCountry":"IT","addressLocality":"Prato"}"#.into()),
                None
            ]
        );
        assert_eq!(
            strings(b, "dateObserved"),
            [Some("2026-01-10T09:00:00Z".into()), None]
        );
        assert_eq!(
            strings(b, "refDevice"),
            [Some("urn:ngsi-ld:Device:prato-aq-01".into()), None]
        );
        assert_eq!(strings(b, "source_system"), [Some("ARPAT".into()), None]);
    }

    #[test]
    fn decodes_key_values_and_concise_entities() {
        let body = r#"[
            {
                "id": "urn:ngsi-ld:ParkingSpot:prato-duomo-7",
                "type": "ParkingSpot",
                "status": "free",
                "occupancy": 0,
                "charging": true,
                "location": {"type": "Point", "coordinates": [11.0963, 43.8808]},
                "area": {"type": "Polygon", "coordinates": [[[11.09, 43.88], [11.1, 43.88], [11.1, 43.89], [11.09, 43.88]]]},
                "refParkingSite": "urn:ngsi-ld:ParkingSite:duomo",
                "tags": ["ev", "disabled"],
                "note": null,
                "@context": "https://smartdatamodels.org/context.jsonld"
            },
            {
                "id": "urn:ngsi-ld:ParkingSpot:prato-duomo-8",
                "type": ["ParkingSpot", "Device"],
                "status": {"value": "occupied", "observedAt": "2026-01-10T10:00:00Z"},
                "refParkingSite": {"object": "urn:ngsi-ld:ParkingSite:duomo"},
                "location": {"value": {"type": "Point", "coordinates": [11.0964, 43.8809]}}
            }
        ]"#;
        let d = decode_ngsi_ld(body.as_bytes(), &opts(), &()).unwrap();
        assert!(d.rejected.is_empty(), "{:?}", d.rejected);
        let b = &d.batches[0].batch;
        assert_eq!(
            names(b),
            [
                "time",
                "entity_id",
                "entity_type",
                "area_geojson",
                "charging",
                "location_lat",
                "location_lon",
                "occupancy",
                "refParkingSite",
                "status",
                "tags"
            ]
        );
        assert_eq!(times(b), [NOW, micros("2026-01-10T10:00:00Z")]);
        assert_eq!(
            tags(b, "entity_type"),
            [
                Some("ParkingSpot".into()),
                Some("ParkingSpot,Device".into())
            ]
        );
        assert_eq!(
            strings(b, "status"),
            [Some("free".into()), Some("occupied".into())]
        );
        assert_eq!(floats(b, "occupancy"), [Some(0.0), None]);
        assert_eq!(bools(b, "charging"), [Some(true), None]);
        assert_eq!(floats(b, "location_lon"), [Some(11.0963), Some(11.0964)]);
        assert_eq!(floats(b, "location_lat"), [Some(43.8808), Some(43.8809)]);
        assert_eq!(
            strings(b, "refParkingSite"),
            vec![Some("urn:ngsi-ld:ParkingSite:duomo".to_string()); 2]
        );
        assert_eq!(
            strings(b, "tags"),
            [Some(r#"["ev","disabled"]"#.into()), None]
        );
        let area = strings(b, "area_geojson")[0].clone().unwrap();
        assert!(
            area.starts_with(r#"{"coordinates":[[[11.09,43.88]"#),
            "{area}"
        );

        // A bare entity is one row.
        let one = r#"{"id": "urn:ngsi-ld:Sensor:1", "type": "Sensor", "temperature": 7.5}"#;
        let d = decode_ngsi_ld(one.as_bytes(), &opts(), &()).unwrap();
        assert_eq!(floats(&d.batches[0].batch, "temperature"), [Some(7.5)]);
    }

    #[test]
    fn bad_entities_are_row_errors_and_bad_notifications_errors() {
        let long = "a".repeat(200);
        let body = format!(
            r#"[
            {{"type": "Sensor", "v": 1}},
            {{"id": "urn:x:1", "v": 1}},
            {{"id": "urn:x:2", "type": "Sensor", "v": {{"type": "Property", "value": 1, "observedAt": "noon"}}}},
            {{"id": "urn:x:3", "type": "Sensor", "r": {{"type": "Relationship"}}}},
            {{"id": "urn:x:4", "type": "Sensor", "{long}": 1}},
            "urn:x:5",
            {{"id": "urn:x:6", "type": "Sensor", "time": 1}},
            {{"id": "urn:x:7", "type": "Sensor", "ok": 1}}
        ]"#
        );
        let d = decode_ngsi_ld(body.as_bytes(), &opts(), &()).unwrap();
        let got: Vec<(usize, &str)> = d
            .rejected
            .iter()
            .map(|e| (e.line, e.message.as_str()))
            .collect();
        assert_eq!(got.len(), 7, "{got:?}");
        assert_eq!(got[0], (1, "the entity has no 'id' string"));
        assert_eq!(
            got[1],
            (
                2,
                "entity \"urn:x:1\" has no 'type' (a string or an array of strings)"
            )
        );
        assert_eq!(got[2].0, 3);
        assert!(
            got[2]
                .1
                .starts_with("attribute \"v\": observedAt: invalid time \"noon\""),
            "{}",
            got[2].1
        );
        assert_eq!(got[3], (4, "relationship \"r\" has no 'object'"));
        assert_eq!(got[4].0, 5);
        assert!(got[4].1.contains("use 1-128 characters"), "{}", got[4].1);
        assert_eq!(
            got[5],
            (6, "an NGSI-LD entity is a JSON object, found a string")
        );
        assert_eq!(
            got[6],
            (
                7,
                "key 'time' is not allowed: 'time' is the timestamp column"
            )
        );
        assert_eq!(d.rows, 1);

        for (body, expected) in [
            (
                r#"{"type": "Notification"}"#,
                "invalid NGSI-LD payload: the notification has no 'data' array of entities",
            ),
            (
                r#"{"type": "Notification", "data": {}}"#,
                "invalid NGSI-LD payload: the notification's 'data' must be an array of entities, found an object",
            ),
            (
                r#"{"type": "Notification", "notifiedAt": 5, "data": []}"#,
                "invalid NGSI-LD payload: 'notifiedAt' must be a string, found a number",
            ),
            (
                "7",
                "invalid NGSI-LD payload: expected a notification, an entity or an array of entities, found a number",
            ),
        ] {
            let err = decode_ngsi_ld(body.as_bytes(), &opts(), &()).unwrap_err();
            assert_eq!(err.to_string(), expected);
        }
        let err = decode_ngsi_ld(
            br#"{"type": "Notification", "notifiedAt": "later", "data": []}"#,
            &opts(),
            &(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("invalid time \"later\""), "{err}");
    }
}
