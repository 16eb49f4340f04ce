//! Payload formats of messages from brokers (MQTT, Kafka), and the one entry point that
//! decodes a message's payload in a given format: [`decode_payload`].

use crate::error::{Error, Result};
use crate::types::{DecodeOptions, Decoded, SchemaLookup};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The format of a message payload, as named in route files (`format = "json"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PayloadFormat {
    /// Detected from the payload by [`detect_format`]: SenML, JSON or line protocol.
    #[default]
    Auto,
    /// InfluxDB line protocol (the measurement names the table unless the route sets one).
    LineProtocol,
    /// A JSON object or an array of objects, one row each ([`crate::decode_json`]).
    Json,
    /// SenML JSON (RFC 8428), one row per resolved record ([`crate::decode_senml`]).
    Senml,
    /// NGSI-LD notifications or entities from a FIWARE context broker, one row per entity
    /// ([`crate::decode_ngsi_ld`]).
    NgsiLd,
    /// CloudEvents 1.0 structured JSON, one event or a batch, one row per event
    /// ([`crate::decode_cloudevents`]).
    Cloudevents,
    /// Smartphone location batches with pseudonymised device ids, one row per point
    /// ([`crate::decode_phone_locations`]; needs [`DecodeOptions::pseudonymiser`]).
    PhoneLocations,
}

impl PayloadFormat {
    /// Every format, in the order they are documented.
    pub const ALL: [PayloadFormat; 7] = [
        PayloadFormat::Auto,
        PayloadFormat::LineProtocol,
        PayloadFormat::Json,
        PayloadFormat::Senml,
        PayloadFormat::NgsiLd,
        PayloadFormat::Cloudevents,
        PayloadFormat::PhoneLocations,
    ];

    /// The name used in route files.
    pub fn as_str(self) -> &'static str {
        match self {
            PayloadFormat::Auto => "auto",
            PayloadFormat::LineProtocol => "line_protocol",
            PayloadFormat::Json => "json",
            PayloadFormat::Senml => "senml",
            PayloadFormat::NgsiLd => "ngsi_ld",
            PayloadFormat::Cloudevents => "cloudevents",
            PayloadFormat::PhoneLocations => "phone_locations",
        }
    }
}

impl fmt::Display for PayloadFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PayloadFormat {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        PayloadFormat::ALL
            .into_iter()
            .find(|f| f.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = PayloadFormat::ALL.iter().map(|f| f.as_str()).collect();
                Error::UnknownFormat(format!(
                    "unknown payload format '{s}': use one of {}",
                    names.join(", ")
                ))
            })
    }
}

/// The concrete format of `body` for [`PayloadFormat::Auto`]: SenML for a JSON array whose
/// first element is an object that looks like a SenML record (it has `bn`, or `n` together
/// with one of `v`, `vs`, `vb`, `vd`, `s`), JSON for anything else starting with `{` or `[`,
/// line protocol otherwise. The other formats are chosen by the route, never detected.
pub fn detect_format(body: &[u8]) -> PayloadFormat {
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'[') if looks_like_senml(body) => PayloadFormat::Senml,
        Some(b'{' | b'[') => PayloadFormat::Json,
        _ => PayloadFormat::LineProtocol,
    }
}

/// Whether `body` is a JSON array whose first element is an object with SenML keys; the
/// rest of the array is only checked to be valid JSON (without building values).
fn looks_like_senml(body: &[u8]) -> bool {
    struct FirstKeys(bool);

    impl<'de> serde::Deserialize<'de> for FirstKeys {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_seq(FirstKeysVisitor)
        }
    }

    struct FirstKeysVisitor;

    impl<'de> serde::de::Visitor<'de> for FirstKeysVisitor {
        type Value = FirstKeys;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON array")
        }

        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<FirstKeys, A::Error> {
            use serde::de::IgnoredAny;
            use std::collections::BTreeMap;
            let first: Option<BTreeMap<String, IgnoredAny>> = seq.next_element()?;
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            let senml = first.is_some_and(|keys| {
                keys.contains_key("bn")
                    || (keys.contains_key("n")
                        && ["v", "vs", "vb", "vd", "s"]
                            .iter()
                            .any(|k| keys.contains_key(*k)))
            });
            Ok(FirstKeys(senml))
        }
    }

    serde_json::from_slice::<FirstKeys>(body).is_ok_and(|f| f.0)
}

/// Decodes a message payload in `format` (detected first when it is `Auto`).
///
/// `opts.table` names the table; line protocol without a table uses each line's measurement,
/// every other format needs it.
pub fn decode_payload(
    format: PayloadFormat,
    body: &[u8],
    opts: &DecodeOptions,
    schemas: &dyn SchemaLookup,
) -> Result<Decoded> {
    let format = match format {
        PayloadFormat::Auto => detect_format(body),
        f => f,
    };
    match format {
        PayloadFormat::LineProtocol => crate::decode_line_protocol(body, opts, schemas),
        PayloadFormat::Json | PayloadFormat::Auto => crate::decode_json(body, opts, schemas),
        PayloadFormat::Senml => crate::decode_senml(body, opts, schemas),
        PayloadFormat::NgsiLd => crate::decode_ngsi_ld(body, opts, schemas),
        PayloadFormat::Cloudevents => crate::decode_cloudevents(body, opts, schemas),
        PayloadFormat::PhoneLocations => crate::decode_phone_locations(body, opts, schemas),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_explained() {
        for f in PayloadFormat::ALL {
            assert_eq!(f.as_str().parse::<PayloadFormat>().unwrap(), f);
        }
        let err = "xml".parse::<PayloadFormat>().unwrap_err().to_string();
        assert!(err.contains("unknown payload format 'xml'"), "{err}");
        assert!(err.contains("line_protocol"), "{err}");
    }

    #[test]
    fn detection_looks_at_the_first_non_blank_byte() {
        assert_eq!(detect_format(b"  \n{\"a\":1}"), PayloadFormat::Json);
        assert_eq!(detect_format(b"[{\"a\":1}]"), PayloadFormat::Json);
        assert_eq!(
            detect_format(b"air,sensor=a pm25=1"),
            PayloadFormat::LineProtocol
        );
        assert_eq!(detect_format(b""), PayloadFormat::LineProtocol);
    }

    #[test]
    fn odd_payloads_never_panic() {
        let deep = format!("{}{}", "[".repeat(300), "]".repeat(300));
        let bodies: Vec<&[u8]> = vec![
            b"",
            b"\xff\xfe",
            b"null",
            b"[]",
            b"{}",
            b"[{}]",
            b"[null, 1, \"x\", [], {}]",
            br#"[{"bn":1e308,"bt":1e308,"t":1e308,"v":1e308,"s":-1e308}]"#,
            br#"[{"bn":"a","bt":-1e300,"v":1},{"t":-9.3e12,"v":1},{"bver":-1,"n":"a","v":1}]"#,
            br#"{"type":"Notification","data":[{"id":"x","type":[],"a":{"type":"GeoProperty","value":{"type":"Point","coordinates":[]}}}]}"#,
            br#"{"id":"x","type":"T","a":{"@value":{"@value":null}},"b":{"type":"GeoProperty","value":"POINT(1 2)"},"":1}"#,
            br#"[{"specversion":"1.0","id":"1","source":"/","type":"t","data_base64":7,"time":"99999-01-01T00:00:00Z"}]"#,
            br#"{"device_id":"d","points":[{"lat":1e308,"lon":-1e308,"time":9.2e18},{"lat":0,"lon":0,"time":-9223372036854775808}]}"#,
            deep.as_bytes(),
        ];
        let mut opts = DecodeOptions {
            table: Some("t".into()),
            now_micros: i64::MAX - 1,
            accept_partial: true,
            ..DecodeOptions::default()
        };
        opts.pseudonymiser = Some(std::sync::Arc::new(
            crate::Pseudonymiser::new(vec![1; 16], crate::Rotation::Daily).unwrap(),
        ));
        for format in PayloadFormat::ALL {
            for body in &bodies {
                let _ = decode_payload(format, body, &opts, &());
                let _ = decode_payload(
                    format,
                    body,
                    &DecodeOptions {
                        now_micros: i64::MIN,
                        ..opts.clone()
                    },
                    &(),
                );
            }
        }
    }

    #[test]
    fn senml_is_detected_conservatively() {
        let senml: [&[u8]; 4] = [
            br#"[{"n":"urn:dev:ow:10e2073a01080063","u":"Cel","v":23.1}]"#,
            br#" [{"bn":"urn:dev:ow:10e2073a01080063:"},{"n":"temp","v":23.1}]"#,
            br#"[{"bn":"a:","bt":1.3e9,"n":"x","vb":true},{"n":"y","vs":"s"}]"#,
            br#"[{"n":"energy","s":12.5}]"#,
        ];
        for body in senml {
            assert_eq!(detect_format(body), PayloadFormat::Senml, "{body:?}");
        }
        let json: [&[u8]; 7] = [
            // Plain sensor objects stay JSON, even with a `v` or an `n` key alone.
            br#"[{"sensor":"s1","pm25":12.5,"time":"2026-01-01T00:00:00Z"},{"sensor":"s2","pm25":7}]"#,
            br#"[{"sensor":"s1","v":1}]"#,
            br#"[{"n":"s1","value":1}]"#,
            br#"{"bn":"a","v":1}"#,
            br#"[1, {"bn":"a"}]"#,
            b"[]",
            // Invalid JSON is left to the JSON decoder to explain.
            br#"[{"bn":"a","v":1},"#,
        ];
        for body in json {
            assert_eq!(detect_format(body), PayloadFormat::Json, "{body:?}");
        }
    }

    #[test]
    fn payloads_decode_in_their_format() {
        let opts = DecodeOptions {
            table: Some("air".into()),
            now_micros: 5,
            ..DecodeOptions::default()
        };
        let lp =
            decode_payload(PayloadFormat::Auto, b"x,sensor=a pm25=1.5 1000", &opts, &()).unwrap();
        assert_eq!(lp.batches.len(), 1);
        assert_eq!(lp.batches[0].table, "air");
        assert_eq!(lp.batches[0].batch.num_rows(), 1);
        let json = decode_payload(
            PayloadFormat::Auto,
            br#"[{"sensor":"a","pm25":1},{"sensor":"b","pm25":2}]"#,
            &opts,
            &(),
        )
        .unwrap();
        assert_eq!(json.batches[0].batch.num_rows(), 2);
        assert!(decode_payload(PayloadFormat::Json, b"not json", &opts, &()).is_err());

        let senml = decode_payload(
            PayloadFormat::Auto,
            br#"[{"bn":"dev:","n":"temp","u":"Cel","v":20.5},{"n":"hum","u":"%RH","v":40}]"#,
            &opts,
            &(),
        )
        .unwrap();
        let b = &senml.batches[0].batch;
        assert_eq!(b.num_rows(), 2);
        assert!(b.column_by_name("name").is_some() && b.column_by_name("value").is_some());

        let ngsi =
            br#"{"id":"urn:ngsi-ld:Sensor:1","type":"Sensor","no2":{"type":"Property","value":3}}"#;
        let d = decode_payload(PayloadFormat::NgsiLd, ngsi, &opts, &()).unwrap();
        assert!(d.batches[0].batch.column_by_name("entity_id").is_some());
        // Auto never picks the route-chosen formats.
        let d = decode_payload(PayloadFormat::Auto, ngsi, &opts, &()).unwrap();
        assert!(d.batches.is_empty() && d.rejected_rows == 1, "{d:?}");

        let event = br#"{"specversion":"1.0","id":"1","source":"/s","type":"t","data":{"x":1}}"#;
        let d = decode_payload(PayloadFormat::Cloudevents, event, &opts, &()).unwrap();
        assert!(d.batches[0].batch.column_by_name("ce_type").is_some());

        let phone = br#"{"device_id":"p1","points":[{"lat":43.9,"lon":11.1}]}"#;
        let err = decode_payload(PayloadFormat::PhoneLocations, phone, &opts, &()).unwrap_err();
        assert!(err.to_string().contains("pseudonymisation key"), "{err}");
        let with_key = DecodeOptions {
            pseudonymiser: Some(std::sync::Arc::new(
                crate::Pseudonymiser::new(vec![7; 32], crate::Rotation::Daily).unwrap(),
            )),
            ..opts.clone()
        };
        let d = decode_payload(PayloadFormat::PhoneLocations, phone, &with_key, &()).unwrap();
        assert_eq!(d.batches[0].batch.num_rows(), 1);
    }
}
