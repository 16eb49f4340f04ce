//! CloudEvents 1.0 in their JSON format: what modules publish on topics and what the
//! interoperability bus carries between systems.
//!
//! Only structured JSON is supported: `data` is any JSON value; `data_base64` (binary data)
//! is refused with a clear error. Extension attributes (lowercase letters and digits) keep
//! string, number and boolean values.

use chrono::{DateTime, SecondsFormat};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// The only CloudEvents specification version accepted.
pub const SPEC_VERSION: &str = "1.0";

/// Content type set by [`CloudEvent::with_data`].
pub const JSON_CONTENT_TYPE: &str = "application/json";

const CONTEXT_ATTRIBUTES: [&str; 9] = [
    "specversion",
    "id",
    "source",
    "type",
    "subject",
    "time",
    "datacontenttype",
    "dataschema",
    "data",
];

/// What is wrong with a CloudEvent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CloudEventError {
    /// The text is not JSON, or not a JSON object.
    #[error("a CloudEvent is a JSON object: {0}")]
    NotAnObject(String),
    /// A required attribute is missing or empty.
    #[error("CloudEvent attribute '{0}' is required and must be a non-empty string")]
    Missing(&'static str),
    /// `specversion` is not `1.0`.
    #[error("CloudEvent specversion {0:?} is not supported (only \"1.0\")")]
    SpecVersion(String),
    /// An attribute has a wrong type or value.
    #[error("CloudEvent attribute '{attribute}': {reason}")]
    Invalid {
        /// The attribute.
        attribute: String,
        /// What is wrong.
        reason: String,
    },
    /// The event carries binary data (`data_base64`).
    #[error("CloudEvents with binary data (data_base64) are not supported; send JSON in 'data'")]
    Binary,
}

fn invalid(attribute: &str, reason: impl Into<String>) -> CloudEventError {
    CloudEventError::Invalid {
        attribute: attribute.to_string(),
        reason: reason.into(),
    }
}

/// A CloudEvent (specversion 1.0).
#[derive(Debug, Clone, PartialEq)]
pub struct CloudEvent {
    /// Identifies the event; unique for its `source`.
    pub id: String,
    /// URI-reference of the context in which the event happened (e.g. `/civiclake/lab`).
    pub source: String,
    /// The kind of event, reverse-DNS style (e.g. `it.comune.prato.lab.loan.opened`).
    pub ty: String,
    /// The subject of the event within the source (e.g. `loan-17`).
    pub subject: Option<String>,
    /// When the occurrence happened, in microseconds since the epoch (UTC).
    pub time: Option<i64>,
    /// Content type of `data`.
    pub datacontenttype: Option<String>,
    /// URI of the schema `data` adheres to.
    pub dataschema: Option<String>,
    /// The payload.
    pub data: Option<Value>,
    /// Extension attributes (names of lowercase letters and digits).
    pub extensions: BTreeMap<String, Value>,
}

impl CloudEvent {
    /// An event with the required attributes and nothing else.
    pub fn new(id: impl Into<String>, source: impl Into<String>, ty: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            source: source.into(),
            ty: ty.into(),
            subject: None,
            time: None,
            datacontenttype: None,
            dataschema: None,
            data: None,
            extensions: BTreeMap::new(),
        }
    }

    /// Sets the subject.
    pub fn with_subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self
    }

    /// Sets the time (microseconds since the epoch, UTC).
    pub fn with_time(mut self, micros: i64) -> Self {
        self.time = Some(micros);
        self
    }

    /// Sets JSON data (and `datacontenttype: application/json` unless one is set).
    pub fn with_data(mut self, data: Value) -> Self {
        self.data = Some(data);
        self.datacontenttype
            .get_or_insert_with(|| JSON_CONTENT_TYPE.to_string());
        self
    }

    /// Adds an extension attribute (checked by [`CloudEvent::validate`]).
    pub fn with_extension(mut self, name: impl Into<String>, value: Value) -> Self {
        self.extensions.insert(name.into(), value);
        self
    }

    /// Checks the required attributes, the time and the extension attributes.
    pub fn validate(&self) -> Result<(), CloudEventError> {
        for (name, value) in [
            ("id", &self.id),
            ("source", &self.source),
            ("type", &self.ty),
        ] {
            if value.is_empty() {
                return Err(CloudEventError::Missing(name));
            }
        }
        for (name, value) in [
            ("subject", &self.subject),
            ("datacontenttype", &self.datacontenttype),
            ("dataschema", &self.dataschema),
        ] {
            if value.as_deref().is_some_and(str::is_empty) {
                return Err(invalid(name, "must not be empty when present"));
            }
        }
        if let Some(t) = self.time
            && DateTime::from_timestamp_micros(t).is_none()
        {
            return Err(invalid("time", format!("{t} µs is out of range")));
        }
        for (name, value) in &self.extensions {
            check_extension(name, value)?;
        }
        Ok(())
    }

    /// The event in the CloudEvents JSON format.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("specversion".into(), SPEC_VERSION.into());
        m.insert("id".into(), self.id.clone().into());
        m.insert("source".into(), self.source.clone().into());
        m.insert("type".into(), self.ty.clone().into());
        let optional = [
            ("subject", &self.subject),
            ("datacontenttype", &self.datacontenttype),
            ("dataschema", &self.dataschema),
        ];
        for (name, value) in optional {
            if let Some(v) = value {
                m.insert(name.into(), v.clone().into());
            }
        }
        if let Some(t) = self.time.and_then(DateTime::from_timestamp_micros) {
            m.insert(
                "time".into(),
                t.to_rfc3339_opts(SecondsFormat::AutoSi, true).into(),
            );
        }
        if let Some(data) = &self.data {
            m.insert("data".into(), data.clone());
        }
        for (name, value) in &self.extensions {
            m.insert(name.clone(), value.clone());
        }
        Value::Object(m)
    }

    /// Reads an event from the CloudEvents JSON format and validates it.
    pub fn from_json(value: Value) -> Result<Self, CloudEventError> {
        let Value::Object(mut m) = value else {
            return Err(CloudEventError::NotAnObject(format!(
                "got {}",
                json_kind(&value)
            )));
        };
        if m.contains_key("data_base64") {
            return Err(CloudEventError::Binary);
        }
        match m.remove("specversion") {
            Some(Value::String(v)) if v == SPEC_VERSION => {}
            Some(Value::String(v)) => return Err(CloudEventError::SpecVersion(v)),
            Some(other) => return Err(CloudEventError::SpecVersion(other.to_string())),
            None => return Err(CloudEventError::Missing("specversion")),
        }
        let required = |m: &mut Map<String, Value>, name: &'static str| match m.remove(name) {
            Some(Value::String(s)) if !s.is_empty() => Ok(s),
            _ => Err(CloudEventError::Missing(name)),
        };
        let id = required(&mut m, "id")?;
        let source = required(&mut m, "source")?;
        let ty = required(&mut m, "type")?;
        let optional = |m: &mut Map<String, Value>, name: &str| match m.remove(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(invalid(
                name,
                format!("must be a string, got {}", json_kind(&other)),
            )),
        };
        let subject = optional(&mut m, "subject")?;
        let datacontenttype = optional(&mut m, "datacontenttype")?;
        let dataschema = optional(&mut m, "dataschema")?;
        let time = optional(&mut m, "time")?
            .map(|t| {
                DateTime::parse_from_rfc3339(&t)
                    .map(|d| d.timestamp_micros())
                    .map_err(|e| invalid("time", format!("{t:?} is not an RFC 3339 time: {e}")))
            })
            .transpose()?;
        let data = m.remove("data").filter(|d| !d.is_null());
        let extensions = m
            .into_iter()
            .filter(|(_, v)| !v.is_null())
            .collect::<BTreeMap<_, _>>();
        let event = Self {
            id,
            source,
            ty,
            subject,
            time,
            datacontenttype,
            dataschema,
            data,
            extensions,
        };
        event.validate()?;
        Ok(event)
    }

    /// Reads an event from JSON text.
    pub fn from_slice(json: &[u8]) -> Result<Self, CloudEventError> {
        let value: Value = serde_json::from_slice(json)
            .map_err(|e| CloudEventError::NotAnObject(e.to_string()))?;
        Self::from_json(value)
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn check_extension(name: &str, value: &Value) -> Result<(), CloudEventError> {
    if CONTEXT_ATTRIBUTES.contains(&name) || name == "data_base64" {
        return Err(invalid(name, "is a context attribute, not an extension"));
    }
    let name_ok = !name.is_empty()
        && name.len() <= 20
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if !name_ok {
        return Err(invalid(
            name,
            "extension names are 1-20 lowercase ASCII letters or digits",
        ));
    }
    match value {
        Value::String(_) | Value::Number(_) | Value::Bool(_) => Ok(()),
        other => Err(invalid(
            name,
            format!(
                "an extension is a string, number or boolean, got {}",
                json_kind(other)
            ),
        )),
    }
}

impl serde::Serialize for CloudEvent {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_json().serialize(s)
    }
}

impl<'de> serde::Deserialize<'de> for CloudEvent {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(d)?;
        Self::from_json(value).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_format_round_trip() {
        let event = CloudEvent::new("e-1", "/civiclake/lab", "it.prato.lab.loan.opened")
            .with_subject("loan-7")
            .with_time(1_767_225_600_123_456)
            .with_data(json!({"item": "drill-7", "borrower": "anna"}))
            .with_extension("correlationid", json!("c-9"));
        let value = event.to_json();
        assert_eq!(
            value,
            json!({
                "specversion": "1.0",
                "id": "e-1",
                "source": "/civiclake/lab",
                "type": "it.prato.lab.loan.opened",
                "subject": "loan-7",
                "time": "2026-01-01T00:00:00.123456Z",
                "datacontenttype": "application/json",
                "data": {"item": "drill-7", "borrower": "anna"},
                "correlationid": "c-9"
            })
        );
        assert_eq!(CloudEvent::from_json(value).unwrap(), event);
        let text = serde_json::to_string(&event).unwrap();
        let back: CloudEvent = serde_json::from_str(&text).unwrap();
        assert_eq!(back, event);
    }

    #[test]
    fn times_with_offsets_are_read_as_utc_microseconds() {
        let e = CloudEvent::from_slice(
            br#"{"specversion":"1.0","id":"1","source":"s","type":"t","time":"2026-01-01T01:00:00.5+01:00"}"#,
        )
        .unwrap();
        assert_eq!(e.time, Some(1_767_225_600_500_000));
        assert_eq!(e.data, None);
    }

    #[test]
    fn bad_events_say_what_is_wrong() {
        let err = |v: Value| CloudEvent::from_json(v).unwrap_err().to_string();
        assert_eq!(
            err(json!({"id": "1", "source": "s", "type": "t"})),
            "CloudEvent attribute 'specversion' is required and must be a non-empty string"
        );
        assert_eq!(
            err(json!({"specversion": "0.3", "id": "1", "source": "s", "type": "t"})),
            "CloudEvent specversion \"0.3\" is not supported (only \"1.0\")"
        );
        assert!(
            err(json!({"specversion": "1.0", "id": "", "source": "s", "type": "t"}))
                .contains("'id' is required")
        );
        assert!(
            err(json!({"specversion": "1.0", "id": "1", "type": "t"}))
                .contains("'source' is required")
        );
        assert!(
            err(json!({"specversion": "1.0", "id": "1", "source": "s"}))
                .contains("'type' is required")
        );
        assert!(
            err(json!({"specversion": "1.0", "id": "1", "source": "s", "type": "t", "time": "yesterday"}))
                .contains("not an RFC 3339 time")
        );
        assert!(
            err(json!({"specversion": "1.0", "id": "1", "source": "s", "type": "t", "subject": 3}))
                .contains("'subject': must be a string, got a number")
        );
        assert!(
            err(json!({"specversion": "1.0", "id": "1", "source": "s", "type": "t", "Trace": "x"}))
                .contains("lowercase ASCII")
        );
        assert!(
            err(json!({"specversion": "1.0", "id": "1", "source": "s", "type": "t", "ext": {"a": 1}}))
                .contains("got an object")
        );
        assert!(
            err(json!({"specversion": "1.0", "id": "1", "source": "s", "type": "t", "data_base64": "AA=="}))
                .contains("binary data")
        );
        assert!(err(json!([1])).contains("JSON object"));
        assert!(
            CloudEvent::from_slice(b"{not json")
                .unwrap_err()
                .to_string()
                .contains("JSON object")
        );
        assert!(
            CloudEvent::new("1", "s", "t")
                .with_extension("id", json!("x"))
                .validate()
                .is_err()
        );
        assert_eq!(
            CloudEvent::new("1", "", "t").validate(),
            Err(CloudEventError::Missing("source"))
        );
    }
}
