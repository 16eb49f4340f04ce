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
    /// Detected from the payload: line protocol, or JSON when it starts with `{` or `[`.
    #[default]
    Auto,
    /// InfluxDB line protocol (the measurement names the table unless the route sets one).
    LineProtocol,
    /// A JSON object or an array of objects, one row each.
    Json,
}

impl PayloadFormat {
    /// Every format, in the order they are documented.
    pub const ALL: [PayloadFormat; 3] = [
        PayloadFormat::Auto,
        PayloadFormat::LineProtocol,
        PayloadFormat::Json,
    ];

    /// The name used in route files.
    pub fn as_str(self) -> &'static str {
        match self {
            PayloadFormat::Auto => "auto",
            PayloadFormat::LineProtocol => "line_protocol",
            PayloadFormat::Json => "json",
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

/// The concrete format of `body` for [`PayloadFormat::Auto`]: JSON when the first
/// non-whitespace byte is `{` or `[`, line protocol otherwise.
pub fn detect_format(body: &[u8]) -> PayloadFormat {
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{' | b'[') => PayloadFormat::Json,
        _ => PayloadFormat::LineProtocol,
    }
}

/// Decodes a message payload in `format` (detected first when it is `Auto`).
///
/// `opts.table` names the table; line protocol without a table uses each line's measurement.
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
    }
}
