//! CloudEvents 1.0 in the structured JSON format: one event, or a batch (a JSON array,
//! `application/cloudevents-batch+json`).
//!
//! Each event is validated by [`civiclake_core::CloudEvent::from_json`] and becomes a row:
//! tags `ce_type` and `ce_source`, string fields `ce_id` and `ce_subject` (when present).
//! `data` that is a JSON object adds its keys as columns exactly as [`crate::decode_json`]
//! makes them; other `data` is a `data` string field (a JSON string as it is, anything else
//! as JSON text); `data_base64` is a `data` string field holding the base64 text as sent.
//! The row's time is the event's `time`, else the `time` key of an object `data`, else
//! `opts.now_micros`. Extension attributes are checked but not stored.

use crate::builder::{Dialect, Entry, TableBuilder, Value, finish_tables};
use crate::error::{Error, Result};
use crate::json::{json_kind, object_entries};
use crate::types::{
    DecodeOptions, Decoded, Rejections, RowError, SchemaLookup, check_utf8, required_table,
};
use civiclake_core::CloudEvent;
use serde_json::{Map, Value as Json};
use std::borrow::Cow;

/// Decodes a CloudEvent or a batch of CloudEvents into `opts.table` (required), one row per
/// event.
///
/// A body that is neither an object nor an array is an [`Error::Payload`]; invalid events
/// (e.g. a missing `specversion`, `id`, `source` or `type`) are [`RowError`]s naming the
/// attribute, with the event's index + 1 as [`RowError::line`].
pub fn decode_cloudevents(
    body: &[u8],
    opts: &DecodeOptions,
    schemas: &dyn SchemaLookup,
) -> Result<Decoded> {
    let table = required_table(opts, "CloudEvents")?;
    let text = check_utf8(body)?;
    let document: Json = serde_json::from_str(text).map_err(|e| Error::Json(e.to_string()))?;
    let events: &[Json] = match &document {
        Json::Object(_) => std::slice::from_ref(&document),
        Json::Array(items) => items,
        other => {
            return Err(Error::Payload {
                format: "CloudEvents",
                message: format!(
                    "expected an event object or a batch array of events, found {}",
                    json_kind(other)
                ),
            });
        }
    };
    let mut builder = TableBuilder::new(table.to_string(), schemas.schema(table));
    let mut rejections = Rejections::default();
    for (i, event) in events.iter().enumerate() {
        let row = i + 1;
        let result = match event {
            Json::Object(map) => push_event(&mut builder, map, row, opts),
            other => Err(RowError::new(
                row,
                0,
                format!("a CloudEvent is a JSON object, found {}", json_kind(other)),
            )),
        };
        if let Err(e) = result {
            rejections.push(e);
        }
    }
    finish_tables(vec![builder], rejections, opts.accept_partial)
}

fn push_event(
    builder: &mut TableBuilder,
    map: &Map<String, Json>,
    row: usize,
    opts: &DecodeOptions,
) -> Result<(), RowError> {
    let error = |message: String| RowError::new(row, 0, message);
    let mut attributes = map.clone();
    let base64 = match attributes.remove("data_base64") {
        None | Some(Json::Null) => None,
        Some(Json::String(s)) => Some(s),
        Some(other) => {
            return Err(error(format!(
                "CloudEvent attribute 'data_base64' must be a string, found {}",
                json_kind(&other)
            )));
        }
    };
    if base64.is_some() && attributes.get("data").is_some_and(|d| !d.is_null()) {
        return Err(error(
            "a CloudEvent has 'data' or 'data_base64', not both".into(),
        ));
    }
    let event =
        CloudEvent::from_json(Json::Object(attributes)).map_err(|e| error(e.to_string()))?;
    let mut entries = vec![
        Entry {
            key: Cow::Borrowed("ce_type"),
            value: Value::Tag(Cow::Borrowed(&event.ty)),
            pos: 0,
        },
        Entry {
            key: Cow::Borrowed("ce_source"),
            value: Value::Tag(Cow::Borrowed(&event.source)),
            pos: 0,
        },
        Entry {
            key: Cow::Borrowed("ce_id"),
            value: Value::Str(Cow::Borrowed(&event.id)),
            pos: 0,
        },
    ];
    if let Some(subject) = &event.subject {
        entries.push(Entry {
            key: Cow::Borrowed("ce_subject"),
            value: Value::Str(Cow::Borrowed(subject)),
            pos: 0,
        });
    }
    let mut data_time = None;
    let data = match (&event.data, &base64) {
        (Some(Json::Object(data)), _) => {
            let (data_entries, time) = object_entries(data, row, opts)?;
            entries.extend(data_entries);
            data_time = time;
            None
        }
        (Some(Json::String(s)), _) => Some(Cow::Borrowed(s.as_str())),
        (Some(other), _) => Some(Cow::Owned(other.to_string())),
        (None, Some(b64)) => Some(Cow::Borrowed(b64.as_str())),
        (None, None) => None,
    };
    if let Some(data) = data {
        entries.push(Entry {
            key: Cow::Borrowed("data"),
            value: Value::Str(data),
            pos: 0,
        });
    }
    let time = event.time.or(data_time).unwrap_or(opts.now_micros);
    builder.push_row(time, &entries, row, Dialect::JSON)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::*;
    use crate::types::Precision;
    use arrow::datatypes::{DataType, Schema, SchemaRef};
    use civiclake_core::{field_column, tag_column, time_column};
    use std::collections::HashMap;
    use std::sync::Arc;

    const NOW: i64 = 1_767_225_600_000_000;

    fn opts() -> DecodeOptions {
        DecodeOptions {
            table: Some("events".into()),
            precision: Precision::Millisecond,
            now_micros: NOW,
            accept_partial: true,
            ..DecodeOptions::default()
        }
    }

    #[test]
    fn decodes_one_event_with_object_data_like_json() {
        let body = r#"{
            "specversion": "1.0",
            "id": "evt-0001",
            "source": "/prato/traffic/loop-17",
            "type": "it.comune.prato.traffic.count",
            "subject": "via-roma",
            "time": "2026-01-10T08:00:00.250Z",
            "datacontenttype": "application/json",
            "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "data": {"lane": "north", "vehicles": 42, "occupancy": 0.31, "ok": true, "note": null}
        }"#;
        let d = decode_cloudevents(body.as_bytes(), &opts(), &()).unwrap();
        assert!(d.rejected.is_empty(), "{:?}", d.rejected);
        let b = &d.batches[0].batch;
        assert_eq!(
            names(b),
            [
                "time",
                "ce_source",
                "ce_type",
                "lane",
                "ce_id",
                "ce_subject",
                "occupancy",
                "ok",
                "vehicles"
            ]
        );
        assert_eq!(
            times(b),
            [1_767_225_600_000_000 + 9 * 86_400_000_000 + 8 * 3_600_000_000 + 250_000]
        );
        assert_eq!(
            tags(b, "ce_type"),
            [Some("it.comune.prato.traffic.count".into())]
        );
        assert_eq!(
            tags(b, "ce_source"),
            [Some("/prato/traffic/loop-17".into())]
        );
        assert_eq!(strings(b, "ce_id"), [Some("evt-0001".into())]);
        assert_eq!(strings(b, "ce_subject"), [Some("via-roma".into())]);
        // The data object's columns are those decode_json makes.
        assert_eq!(tags(b, "lane"), [Some("north".into())]);
        assert_eq!(floats(b, "vehicles"), [Some(42.0)]);
        assert_eq!(floats(b, "occupancy"), [Some(0.31)]);
        assert_eq!(bools(b, "ok"), [Some(true)]);
        let json = crate::decode_json(
            br#"{"lane": "north", "vehicles": 42, "occupancy": 0.31, "ok": true, "note": null}"#,
            &opts(),
            &(),
        )
        .unwrap();
        let json_schema = json.batches[0].batch.schema();
        for field in json_schema.fields().iter().skip(1) {
            assert_eq!(
                b.schema().field_with_name(field.name()).unwrap(),
                field.as_ref()
            );
        }
    }

    #[test]
    fn decodes_a_batch_with_other_data_and_base64() {
        let body = r#"[
            {"specversion": "1.0", "id": "a", "source": "/s", "type": "t.text",
             "datacontenttype": "text/plain", "data": "hello"},
            {"specversion": "1.0", "id": "b", "source": "/s", "type": "t.list",
             "data": [1, 2, 3]},
            {"specversion": "1.0", "id": "c", "source": "/s", "type": "t.bin",
             "datacontenttype": "application/octet-stream", "data_base64": "AAECAw=="},
            {"specversion": "1.0", "id": "d", "source": "/s", "type": "t.none",
             "data": {"time": 1767225601000, "level": 3}}
        ]"#;
        let d = decode_cloudevents(body.as_bytes(), &opts(), &()).unwrap();
        assert!(d.rejected.is_empty(), "{:?}", d.rejected);
        let b = &d.batches[0].batch;
        assert_eq!(
            strings(b, "data"),
            [
                Some("hello".into()),
                Some("[1,2,3]".into()),
                Some("AAECAw==".into()),
                None
            ]
        );
        assert_eq!(
            b.schema().field_with_name("data").unwrap().data_type(),
            &DataType::Utf8
        );
        assert_eq!(floats(b, "level"), [None, None, None, Some(3.0)]);
        assert!(b.column_by_name("ce_subject").is_none());
        // No event time: the data's time key, else now.
        assert_eq!(times(b), [NOW, NOW, NOW, NOW + 1_000_000]);
        assert_eq!(
            tags(b, "ce_type"),
            ["t.text", "t.list", "t.bin", "t.none"].map(|t| Some(t.to_string()))
        );
    }

    #[test]
    fn data_keys_follow_the_table_schema() {
        let schema: SchemaRef = Arc::new(Schema::new(vec![
            time_column(),
            tag_column("ce_type"),
            field_column("lane", DataType::Utf8),
            field_column("vehicles", DataType::Int64),
        ]));
        let schemas = HashMap::from([("events".to_string(), schema)]);
        let body = r#"{"specversion": "1.0", "id": "x", "source": "/s", "type": "t",
                       "data": {"lane": "south", "vehicles": 7}}"#;
        let d = decode_cloudevents(body.as_bytes(), &opts(), &schemas).unwrap();
        let b = &d.batches[0].batch;
        assert_eq!(strings(b, "lane"), [Some("south".into())]);
        assert_eq!(ints(b, "vehicles"), [Some(7)]);
    }

    #[test]
    fn invalid_events_are_row_errors_naming_the_attribute() {
        let body = r#"[
            {"id": "a", "source": "/s", "type": "t"},
            {"specversion": "1.0", "source": "/s", "type": "t"},
            {"specversion": "1.0", "id": "c", "type": "t"},
            {"specversion": "1.0", "id": "d", "source": "/s"},
            {"specversion": "0.3", "id": "e", "source": "/s", "type": "t"},
            {"specversion": "1.0", "id": "f", "source": "/s", "type": "t", "time": "today"},
            {"specversion": "1.0", "id": "g", "source": "/s", "type": "t", "data": 1, "data_base64": "AA=="},
            {"specversion": "1.0", "id": "h", "source": "/s", "type": "t", "data": {"x": [1]}},
            "event",
            {"specversion": "1.0", "id": "j", "source": "/s", "type": "t", "data": {"x": 1}}
        ]"#;
        let d = decode_cloudevents(body.as_bytes(), &opts(), &()).unwrap();
        let got: Vec<(usize, &str)> = d
            .rejected
            .iter()
            .map(|e| (e.line, e.message.as_str()))
            .collect();
        assert_eq!(got.len(), 9, "{got:?}");
        let required = |a: &str| {
            format!("CloudEvent attribute '{a}' is required and must be a non-empty string")
        };
        assert_eq!(got[0], (1, required("specversion").as_str()));
        assert_eq!(got[1], (2, required("id").as_str()));
        assert_eq!(got[2], (3, required("source").as_str()));
        assert_eq!(got[3], (4, required("type").as_str()));
        assert_eq!(
            got[4],
            (
                5,
                "CloudEvent specversion \"0.3\" is not supported (only \"1.0\")"
            )
        );
        assert_eq!(got[5].0, 6);
        assert!(
            got[5].1.starts_with("CloudEvent attribute 'time'"),
            "{}",
            got[5].1
        );
        assert_eq!(
            got[6],
            (7, "a CloudEvent has 'data' or 'data_base64', not both")
        );
        assert_eq!(got[7], (8, "unsupported nested value for key 'x'"));
        assert_eq!(got[8], (9, "a CloudEvent is a JSON object, found a string"));
        assert_eq!(d.rows, 1);
        let err = decode_cloudevents(b"true", &opts(), &()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid CloudEvents payload: expected an event object or a batch array of events, found a boolean"
        );
    }
}
