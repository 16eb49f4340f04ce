//! Shared set-up of the fuzz targets: decode options and table schemas chosen by the input's
//! first byte, so the decoders are driven both with no table yet and against an existing
//! schema whose types conflict with the payload.

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use civiclake_ingest::{DecodeOptions, Precision};
use std::collections::HashMap;
use std::sync::Arc;

/// Splits off the first byte as settings; returns the options, the schemas and the payload.
pub fn setup(data: &[u8]) -> (DecodeOptions, HashMap<String, SchemaRef>, &[u8]) {
    let (flags, body) = match data.split_first() {
        Some((f, rest)) => (*f, rest),
        None => (0, data),
    };
    let precision = match flags & 3 {
        0 => Precision::Nanosecond,
        1 => Precision::Microsecond,
        2 => Precision::Millisecond,
        _ => Precision::Second,
    };
    let opts = DecodeOptions {
        table: Some("t".into()),
        precision,
        now_micros: if flags & 8 != 0 {
            i64::MAX
        } else {
            1_767_225_600_000_000
        },
        accept_partial: flags & 4 != 0,
        pseudonymiser: None,
    };
    let mut schemas = HashMap::new();
    if flags & 16 != 0 {
        let tag = DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
        schemas.insert(
            "t".to_string(),
            Arc::new(Schema::new(vec![
                Field::new(
                    "time",
                    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                    false,
                ),
                Field::new("sensor", tag.clone(), true),
                Field::new("value", DataType::Int64, true),
                Field::new("name", DataType::Float64, true),
                Field::new("lat", DataType::Utf8, true),
                Field::new("ce_type", DataType::Boolean, true),
            ])),
        );
    }
    (opts, schemas, body)
}
