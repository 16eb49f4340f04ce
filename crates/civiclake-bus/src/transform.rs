//! Field-mapping transformations: reshape an event's data for one subscriber.
//!
//! A [`Transform`] builds a new JSON object as the event's `data` from a list of
//! [`FieldMapping`]s. Each mapping writes one field of the output, named by a dotted path
//! (`scuola.codice` creates the object `scuola` with the field `codice`), from either a
//! path of the event (`data.school`, `data.items[0].code`, `subject`, `time`, an extension
//! attribute; the same paths as filter expressions, see [`Path`]) or a constant.
//!
//! JSON shape:
//!
//! ```json
//! {
//!   "mapping": [
//!     {"to": "scuola.nome", "from": "data.school"},
//!     {"to": "scuola.quartiere", "from": "data.district", "default": "sconosciuto"},
//!     {"to": "pasti", "from": "data.meals"},
//!     {"to": "fonte", "value": "civiclake"}
//!   ],
//!   "keep_unmapped": false
//! }
//! ```
//!
//! Semantics of [`Transform::apply`]:
//!
//! * Without `keep_unmapped` the output data holds only the mapped fields.
//! * With `keep_unmapped` the output starts as a copy of the original data object from
//!   which every field read by a `from` path into the data is removed (mappings *move*
//!   fields: `{"to": "codice", "from": "data.code"}` renames `code`); the mapped fields
//!   are then set on top. Array elements read by index stay in place (removing them would
//!   shift the others), and `from: "data"` consumes the whole object. Data that is not an
//!   object (absent, an array, a scalar) leaves nothing to keep.
//! * A `from` that is absent in the event uses `default` when given; otherwise the field is
//!   left out. A JSON `null` in the data is present and is copied as `null`.
//! * Mappings are applied in order.
//! * The output event keeps every attribute except `dataschema`, which described the
//!   original data and is removed; `datacontenttype` becomes `application/json`.

use crate::filter::{ExpressionError, Path, Segment};
use civiclake_core::{CloudEvent, JSON_CONTENT_TYPE};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};
use std::collections::HashMap;

/// What is wrong with a [`Transform`]. Mappings are numbered from 0, as in the JSON list.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TransformError {
    /// No mapping, and unmapped fields are not kept: the data would always be `{}`.
    #[error(
        "the transformation has no mapping and keep_unmapped is false, so it would always produce empty data"
    )]
    Empty,
    /// A `to` that is not a dotted path of non-empty names.
    #[error("mapping[{index}]: `to` {to:?} {reason}")]
    InvalidTo {
        /// The mapping.
        index: usize,
        /// Its `to`.
        to: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// Both `from` and `value` are set.
    #[error(
        "mapping[{index}] (to {to:?}): set either `from` (a path) or `value` (a constant), not both"
    )]
    FromAndValue {
        /// The mapping.
        index: usize,
        /// Its `to`.
        to: String,
    },
    /// Neither `from` nor `value` is set.
    #[error(
        "mapping[{index}] (to {to:?}): set `from` (a path such as data.school) or `value` (a constant)"
    )]
    NoSource {
        /// The mapping.
        index: usize,
        /// Its `to`.
        to: String,
    },
    /// `default` is set without `from`.
    #[error(
        "mapping[{index}] (to {to:?}): `default` is only used when `from` is absent; with `value` it never is"
    )]
    DefaultWithoutFrom {
        /// The mapping.
        index: usize,
        /// Its `to`.
        to: String,
    },
    /// `from` is not a path.
    #[error("mapping[{index}] (to {to:?}): `from` {from:?} is not a path: {error}")]
    InvalidFrom {
        /// The mapping.
        index: usize,
        /// Its `to`.
        to: String,
        /// Its `from`.
        from: String,
        /// The parse error (its column is within `from`).
        error: ExpressionError,
    },
    /// Two mappings write the same field.
    #[error("mapping[{second}] writes {to:?}, which mapping[{first}] already writes")]
    DuplicateTo {
        /// The field.
        to: String,
        /// The first mapping that writes it.
        first: usize,
        /// The second one.
        second: usize,
    },
    /// One mapping writes a field as a value and another writes inside it.
    #[error(
        "mapping[{leaf}] writes {leaf_to:?} as a value, but mapping[{inner}] writes {inner_to:?} inside it"
    )]
    LeafAndParent {
        /// The mapping that writes the value.
        leaf: usize,
        /// Its `to`.
        leaf_to: String,
        /// The mapping that writes inside it.
        inner: usize,
        /// Its `to`.
        inner_to: String,
    },
}

/// Deserialises a present field as `Some`, even when it is `null` (a constant `null`).
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// One field of the output data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldMapping {
    /// Dotted path of the field in the output data (`scuola.codice`).
    pub to: String,
    /// Path of the value in the event (`data.school`, `subject`, `time`…).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// A constant value (may be `null`).
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub value: Option<Value>,
    /// Used when `from` is absent in the event (may be `null`).
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub default: Option<Value>,
}

impl FieldMapping {
    /// A mapping from a path of the event.
    pub fn from_path(to: impl Into<String>, from: impl Into<String>) -> Self {
        Self {
            to: to.into(),
            from: Some(from.into()),
            value: None,
            default: None,
        }
    }

    /// A mapping to a constant.
    pub fn constant(to: impl Into<String>, value: Value) -> Self {
        Self {
            to: to.into(),
            from: None,
            value: Some(value),
            default: None,
        }
    }

    /// Sets the value used when `from` is absent.
    pub fn with_default(mut self, default: Value) -> Self {
        self.default = Some(default);
        self
    }
}

/// A field-mapping transformation of the event data (see the [module documentation](self)).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Transform {
    /// The output fields, applied in order.
    #[serde(default)]
    pub mapping: Vec<FieldMapping>,
    /// Keep the original data's fields that no mapping reads.
    #[serde(default)]
    pub keep_unmapped: bool,
}

impl Transform {
    /// Checks every mapping: `to` is a dotted path of non-empty names, exactly one of
    /// `from`/`value`, `default` only with `from`, `from` parses as a path, no field written
    /// twice, no field written both as a value and as an object with fields.
    pub fn validate(&self) -> Result<(), TransformError> {
        if self.mapping.is_empty() && !self.keep_unmapped {
            return Err(TransformError::Empty);
        }
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (index, m) in self.mapping.iter().enumerate() {
            let invalid_to = |reason| TransformError::InvalidTo {
                index,
                to: m.to.clone(),
                reason,
            };
            if m.to.is_empty() {
                return Err(invalid_to("is empty; name the output field"));
            }
            if m.to.split('.').any(str::is_empty) {
                return Err(invalid_to(
                    "has an empty name; write dotted names such as scuola.codice",
                ));
            }
            match (&m.from, &m.value) {
                (Some(_), Some(_)) => {
                    return Err(TransformError::FromAndValue {
                        index,
                        to: m.to.clone(),
                    });
                }
                (None, None) => {
                    return Err(TransformError::NoSource {
                        index,
                        to: m.to.clone(),
                    });
                }
                (None, Some(_)) if m.default.is_some() => {
                    return Err(TransformError::DefaultWithoutFrom {
                        index,
                        to: m.to.clone(),
                    });
                }
                (Some(from), None) => {
                    from.parse::<Path>()
                        .map_err(|error| TransformError::InvalidFrom {
                            index,
                            to: m.to.clone(),
                            from: from.clone(),
                            error,
                        })?;
                }
                (None, Some(_)) => {}
            }
            if let Some(&first) = seen.get(m.to.as_str()) {
                return Err(TransformError::DuplicateTo {
                    to: m.to.clone(),
                    first,
                    second: index,
                });
            }
            seen.insert(&m.to, index);
        }
        for (leaf, a) in self.mapping.iter().enumerate() {
            for (inner, b) in self.mapping.iter().enumerate() {
                let inside =
                    b.to.strip_prefix(a.to.as_str())
                        .is_some_and(|rest| rest.starts_with('.'));
                if inside {
                    return Err(TransformError::LeafAndParent {
                        leaf,
                        leaf_to: a.to.clone(),
                        inner,
                        inner_to: b.to.clone(),
                    });
                }
            }
        }
        Ok(())
    }

    /// The event with its data rebuilt by the mapping. Never fails: on a transformation
    /// that [`validate`](Self::validate) would refuse, a `from` that is not a path counts
    /// as absent, `from` wins over `value`, and a later mapping replaces what an earlier one
    /// wrote where their fields collide. The `from` paths are parsed on each call (they are
    /// a few characters each).
    pub fn apply(&self, event: &CloudEvent) -> CloudEvent {
        let sources: Vec<Option<Path>> = self
            .mapping
            .iter()
            .map(|m| m.from.as_deref().and_then(|f| f.parse().ok()))
            .collect();
        let mut data = Map::new();
        if self.keep_unmapped
            && let Some(Value::Object(original)) = &event.data
        {
            let mut kept = Value::Object(original.clone());
            for path in sources.iter().flatten() {
                if let Some(segments) = path.data_segments() {
                    remove(&mut kept, segments);
                }
            }
            if let Value::Object(kept) = kept {
                data = kept;
            }
        }
        for (m, source) in self.mapping.iter().zip(&sources) {
            let value = if m.from.is_some() {
                source
                    .as_ref()
                    .and_then(|p| p.value(event))
                    .or_else(|| m.default.clone())
            } else {
                m.value.clone()
            };
            if let Some(value) = value {
                set(&mut data, &m.to, value);
            }
        }
        CloudEvent {
            id: event.id.clone(),
            source: event.source.clone(),
            ty: event.ty.clone(),
            subject: event.subject.clone(),
            time: event.time,
            datacontenttype: Some(JSON_CONTENT_TYPE.to_string()),
            dataschema: None,
            data: Some(Value::Object(data)),
            extensions: event.extensions.clone(),
        }
    }
}

/// Removes the field at `segments` (the whole content when empty); elements of arrays stay.
fn remove(root: &mut Value, segments: &[Segment]) {
    let Some((last, parents)) = segments.split_last() else {
        *root = Value::Object(Map::new());
        return;
    };
    let mut current = root;
    for segment in parents {
        let next = match (segment, current) {
            (Segment::Key(key), Value::Object(map)) => map.get_mut(key),
            (Segment::Index(i), Value::Array(items)) => items.get_mut(*i),
            _ => None,
        };
        match next {
            Some(next) => current = next,
            None => return,
        }
    }
    if let (Segment::Key(key), Value::Object(map)) = (last, current) {
        map.remove(key);
    }
}

/// Sets the dotted field `to`, creating (or replacing non-object) intermediate objects.
fn set(data: &mut Map<String, Value>, to: &str, value: Value) {
    let mut names: Vec<&str> = to.split('.').collect();
    let Some(last) = names.pop() else {
        return;
    };
    let mut current = data;
    for name in names {
        let entry = current
            .entry(name)
            .or_insert_with(|| Value::Object(Map::new()));
        if !entry.is_object() {
            *entry = Value::Object(Map::new());
        }
        let Value::Object(map) = entry else {
            return;
        };
        current = map;
    }
    current.insert(last.to_string(), value);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn meal() -> CloudEvent {
        CloudEvent::new(
            "evt-1",
            "/prato/schools/canteen",
            "it.prato.school.canteen.MealOrdered",
        )
        .with_subject("school-mazzoni")
        .with_time(1_772_436_600_250_000)
        .with_data(json!({
            "school": "Mazzoni",
            "meals": 120,
            "diets": ["celiac"],
            "district": "Centro",
            "note": null,
            "items": [{"code": "P-01", "qty": 80}, {"code": "V-02", "qty": 40}],
            "address": {"street": "Via Roma 1", "cap": "59100"}
        }))
        .with_extension("traceid", json!("abc-123"))
    }

    fn transform(v: Value) -> Transform {
        let t: Transform = serde_json::from_value(v).unwrap();
        t.validate().unwrap();
        t
    }

    #[test]
    fn mapping_builds_nested_output_with_defaults_and_constants() {
        let mut event = meal();
        event.dataschema = Some("https://schemas.prato.it/canteen/meal/1".into());
        let t = transform(json!({
            "mapping": [
                {"to": "scuola.nome", "from": "data.school"},
                {"to": "scuola.quartiere", "from": "data.district"},
                {"to": "scuola.telefono", "from": "data.phone", "default": "n/d"},
                {"to": "scuola.email", "from": "data.email"},
                {"to": "pasti.totale", "from": "data.meals"},
                {"to": "pasti.diete", "from": "data.diets"},
                {"to": "pasti.primo", "from": "data.items[0].code"},
                {"to": "nota", "from": "data.note", "default": "none"},
                {"to": "fonte", "value": "civiclake"},
                {"to": "versione", "value": 2},
                {"to": "vuoto", "value": null},
                {"to": "evento.tipo", "from": "type"},
                {"to": "evento.quando", "from": "time"},
                {"to": "evento.soggetto", "from": "subject"},
                {"to": "evento.traccia", "from": "traceid"},
                {"to": "evento.schema", "from": "dataschema"}
            ]
        }));
        let out = t.apply(&event);
        assert_eq!(
            out.data,
            Some(json!({
                "scuola": {"nome": "Mazzoni", "quartiere": "Centro", "telefono": "n/d"},
                "pasti": {"totale": 120, "diete": ["celiac"], "primo": "P-01"},
                "nota": null,
                "fonte": "civiclake",
                "versione": 2,
                "vuoto": null,
                "evento": {
                    "tipo": "it.prato.school.canteen.MealOrdered",
                    "quando": "2026-03-02T07:30:00.250Z",
                    "soggetto": "school-mazzoni",
                    "traccia": "abc-123",
                    "schema": "https://schemas.prato.it/canteen/meal/1"
                }
            }))
        );
        // Attributes are kept, except the schema of the original data.
        assert_eq!(out.id, event.id);
        assert_eq!(out.source, event.source);
        assert_eq!(out.ty, event.ty);
        assert_eq!(out.subject, event.subject);
        assert_eq!(out.time, event.time);
        assert_eq!(out.extensions, event.extensions);
        assert_eq!(out.dataschema, None);
        assert_eq!(out.datacontenttype.as_deref(), Some("application/json"));
        assert_eq!(out.validate(), Ok(()));
    }

    #[test]
    fn keep_unmapped_moves_the_fields_it_reads() {
        let t = transform(json!({
            "mapping": [
                {"to": "scuola", "from": "data.school"},
                {"to": "via", "from": "data.address.street"},
                {"to": "primo", "from": "data.items[0].code"},
                {"to": "meals", "value": 0}
            ],
            "keep_unmapped": true
        }));
        assert_eq!(
            t.apply(&meal()).data,
            Some(json!({
                "scuola": "Mazzoni",
                "via": "Via Roma 1",
                "primo": "P-01",
                "meals": 0,
                "diets": ["celiac"],
                "district": "Centro",
                "note": null,
                // `code` is removed from the element, which stays at its index.
                "items": [{"qty": 80}, {"code": "V-02", "qty": 40}],
                "address": {"cap": "59100"}
            }))
        );
        // Keeping everything with no mapping only sets the content type.
        let identity = transform(json!({"keep_unmapped": true}));
        let mut event = meal();
        event.datacontenttype = Some("application/vnd.prato+json".into());
        let out = identity.apply(&event);
        assert_eq!(out.data, event.data);
        assert_eq!(out.datacontenttype.as_deref(), Some("application/json"));
        // `from: "data"` consumes the whole object.
        let whole = transform(json!({
            "mapping": [{"to": "originale", "from": "data"}],
            "keep_unmapped": true
        }));
        assert_eq!(
            whole.apply(&meal()).data,
            Some(json!({"originale": meal().data.unwrap()}))
        );
    }

    #[test]
    fn data_that_is_absent_or_not_an_object() {
        let t = transform(json!({
            "mapping": [
                {"to": "primo", "from": "data[0]", "default": "-"},
                {"to": "scuola", "from": "data.school"}
            ],
            "keep_unmapped": true
        }));
        let bare = CloudEvent::new("1", "/s", "t");
        assert_eq!(t.apply(&bare).data, Some(json!({"primo": "-"})));
        let array = CloudEvent::new("1", "/s", "t").with_data(json!(["a", "b"]));
        assert_eq!(t.apply(&array).data, Some(json!({"primo": "a"})));
    }

    #[test]
    fn mappings_round_trip_through_json() {
        let text = r#"{"mapping":[{"to":"a.b","from":"data.x","default":null},{"to":"c","value":null},{"to":"d","value":[1,2]}],"keep_unmapped":true}"#;
        let t: Transform = serde_json::from_str(text).unwrap();
        assert_eq!(
            t.mapping,
            vec![
                FieldMapping::from_path("a.b", "data.x").with_default(Value::Null),
                FieldMapping::constant("c", Value::Null),
                FieldMapping::constant("d", json!([1, 2])),
            ]
        );
        assert!(t.keep_unmapped);
        assert_eq!(t.validate(), Ok(()));
        assert_eq!(serde_json::to_string(&t).unwrap(), text);
        // keep_unmapped defaults to false.
        let t: Transform = serde_json::from_str(r#"{"mapping":[{"to":"a","from":"id"}]}"#).unwrap();
        assert!(!t.keep_unmapped);
        // A null default is used for an absent field.
        let t: Transform = serde_json::from_str(text).unwrap();
        assert_eq!(
            t.apply(&CloudEvent::new("1", "/s", "t")).data,
            Some(json!({"a": {"b": null}, "c": null, "d": [1, 2]}))
        );
        let err = serde_json::from_str::<Transform>(r#"{"mapping":[{"to":"a","form":"id"}]}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `form`"), "{err}");
    }

    #[test]
    fn validation_errors_name_the_mapping_and_the_problem() {
        let err = |v: Value| {
            serde_json::from_value::<Transform>(v)
                .unwrap()
                .validate()
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            err(json!({})),
            "the transformation has no mapping and keep_unmapped is false, so it would always produce empty data"
        );
        assert_eq!(
            err(json!({"mapping": [{"to": "", "value": 1}]})),
            "mapping[0]: `to` \"\" is empty; name the output field"
        );
        assert_eq!(
            err(
                json!({"mapping": [{"to": "a", "value": 1}, {"to": "scuola..codice", "value": 1}]})
            ),
            "mapping[1]: `to` \"scuola..codice\" has an empty name; write dotted names such as scuola.codice"
        );
        assert_eq!(
            err(json!({"mapping": [{"to": ".a", "value": 1}]})),
            "mapping[0]: `to` \".a\" has an empty name; write dotted names such as scuola.codice"
        );
        assert_eq!(
            err(json!({"mapping": [{"to": "a", "from": "data.x", "value": 1}]})),
            "mapping[0] (to \"a\"): set either `from` (a path) or `value` (a constant), not both"
        );
        assert_eq!(
            err(json!({"mapping": [{"to": "a"}]})),
            "mapping[0] (to \"a\"): set `from` (a path such as data.school) or `value` (a constant)"
        );
        assert_eq!(
            err(json!({"mapping": [{"to": "a", "value": 1, "default": 2}]})),
            "mapping[0] (to \"a\"): `default` is only used when `from` is absent; with `value` it never is"
        );
        assert_eq!(
            err(json!({"mapping": [{"to": "a", "from": "data.items[x]"}]})),
            "mapping[0] (to \"a\"): `from` \"data.items[x]\" is not a path: at column 12: expected an array index (0, 1, …) or a quoted field name inside `[ ]`, found `x`"
        );
        assert!(
            err(json!({"mapping": [{"to": "a", "from": "School"}]}))
                .contains("`School` is not an attribute: write data.School")
        );
        assert_eq!(
            err(
                json!({"mapping": [{"to": "a.b", "value": 1}, {"to": "c", "value": 1}, {"to": "a.b", "from": "id"}]})
            ),
            "mapping[2] writes \"a.b\", which mapping[0] already writes"
        );
        assert_eq!(
            err(
                json!({"mapping": [{"to": "scuola.codice", "value": 1}, {"to": "scuola", "from": "data.school"}]})
            ),
            "mapping[1] writes \"scuola\" as a value, but mapping[0] writes \"scuola.codice\" inside it"
        );
        // A shared prefix that is not a parent is fine.
        let ok: Transform = serde_json::from_value(
            json!({"mapping": [{"to": "scuola", "value": 1}, {"to": "scuolabus", "value": 2}]}),
        )
        .unwrap();
        assert_eq!(ok.validate(), Ok(()));
        let e =
            serde_json::from_value::<Transform>(json!({"mapping": [{"to": "a", "from": "data."}]}))
                .unwrap()
                .validate()
                .unwrap_err();
        assert!(matches!(
            e,
            TransformError::InvalidFrom {
                index: 0,
                error: ExpressionError::Syntax { column: 6, .. },
                ..
            }
        ));
    }

    #[test]
    fn applying_an_invalid_transform_does_not_panic() {
        // What validate() refuses still has a defined outcome.
        let t = Transform {
            mapping: vec![
                FieldMapping {
                    to: "a".into(),
                    from: Some("data.".into()),
                    value: None,
                    default: Some(json!("fallback")),
                },
                FieldMapping {
                    to: "b".into(),
                    from: Some("data.school".into()),
                    value: Some(json!("ignored")),
                    default: None,
                },
                FieldMapping::constant("c", json!(1)),
                FieldMapping::constant("c.d", json!(2)),
                FieldMapping::constant("", json!(3)),
                FieldMapping {
                    to: "e".into(),
                    from: None,
                    value: None,
                    default: Some(json!(4)),
                },
            ],
            keep_unmapped: false,
        };
        assert!(t.validate().is_err());
        assert_eq!(
            t.apply(&meal()).data,
            Some(json!({"a": "fallback", "b": "Mazzoni", "c": {"d": 2}, "": 3}))
        );
    }
}
