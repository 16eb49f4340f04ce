//! Arrow IPC stream payloads.

use crate::error::{Error, Result};
use crate::normalize::normalize_batch;
use crate::types::{DecodeOptions, Decoded, SchemaLookup, TableBatch, required_table};
use arrow::compute::concat_batches;
use arrow::ipc::reader::StreamReader;
use civiclake_core::TIME_COLUMN;
use std::io::Cursor;

/// Decodes an Arrow IPC *stream* into `opts.table` (required), normalizing it with
/// [`normalize_batch`] against the table's schema.
///
/// The time column is `time`, or `timestamp` when there is no `time` column. An integer time
/// column holds epoch microseconds (typed formats do not use `opts.precision`). Problems are
/// whole-payload errors: Arrow data is typed by column, so there are no row errors.
pub fn decode_arrow_ipc(
    body: &[u8],
    opts: &DecodeOptions,
    schemas: &dyn SchemaLookup,
) -> Result<Decoded> {
    let table = required_table(opts, "Arrow IPC")?;
    let reader = StreamReader::try_new(Cursor::new(body), None).map_err(Error::ArrowIpc)?;
    let schema = reader.schema();
    let time_column = if schema.field_with_name(TIME_COLUMN).is_ok() {
        TIME_COLUMN
    } else if schema.field_with_name("timestamp").is_ok() {
        "timestamp"
    } else {
        return Err(Error::Schema(
            "the Arrow stream has no 'time' (or 'timestamp') column".into(),
        ));
    };
    let batches = reader
        .collect::<Result<Vec<_>, _>>()
        .map_err(Error::ArrowIpc)?;
    let raw = concat_batches(&schema, &batches).map_err(Error::ArrowIpc)?;
    if raw.num_rows() == 0 {
        return Ok(Decoded::default());
    }
    let existing = schemas.schema(table);
    let batch = normalize_batch(&raw, time_column, existing.as_deref())?;
    let rows = batch.num_rows();
    Ok(Decoded {
        batches: vec![TableBatch {
            table: table.to_string(),
            batch,
        }],
        rejected: Vec::new(),
        rows,
        rejected_rows: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::*;
    use crate::types::Precision;
    use arrow::array::{
        ArrayRef, Float64Array, Int32Array, RecordBatch, StringArray, TimestampMillisecondArray,
    };
    use arrow::datatypes::{DataType, Schema, SchemaRef};
    use arrow::ipc::writer::StreamWriter;
    use civiclake_core::{field_column, tag_column, time_column};
    use std::collections::HashMap;
    use std::sync::Arc;

    fn opts() -> DecodeOptions {
        DecodeOptions {
            table: Some("air".into()),
            precision: Precision::Nanosecond,
            now_micros: 0,
            accept_partial: false,
            pseudonymiser: None,
        }
    }

    fn stream(batches: &[RecordBatch]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut writer = StreamWriter::try_new(&mut out, &batches[0].schema()).unwrap();
        for b in batches {
            writer.write(b).unwrap();
        }
        writer.finish().unwrap();
        drop(writer);
        out
    }

    fn raw(times: Vec<i64>, sensors: Vec<&str>, pm25: Vec<f64>, count: Vec<i32>) -> RecordBatch {
        RecordBatch::try_from_iter(vec![
            (
                "time",
                Arc::new(TimestampMillisecondArray::from(times).with_timezone("UTC")) as ArrayRef,
            ),
            ("sensor", Arc::new(StringArray::from(sensors))),
            ("pm25", Arc::new(Float64Array::from(pm25))),
            ("count", Arc::new(Int32Array::from(count))),
        ])
        .unwrap()
    }

    #[test]
    fn round_trips_a_stream() {
        let body = stream(&[
            raw(vec![1000, 2000], vec!["a", "b"], vec![1.5, 2.5], vec![1, 2]),
            raw(vec![3000], vec!["a"], vec![3.5], vec![3]),
        ]);
        let d = decode_arrow_ipc(&body, &opts(), &()).unwrap();
        assert_eq!(d.rows, 3);
        assert!(d.rejected.is_empty());
        let b = &d.batches[0].batch;
        assert_eq!(d.batches[0].table, "air");
        assert_eq!(names(b), ["time", "sensor", "count", "pm25"]);
        assert_eq!(times(b), [1_000_000, 2_000_000, 3_000_000]);
        assert_eq!(
            tags(b, "sensor"),
            [Some("a".into()), Some("b".into()), Some("a".into())]
        );
        assert_eq!(floats(b, "pm25"), [Some(1.5), Some(2.5), Some(3.5)]);
        assert_eq!(ints(b, "count"), [Some(1), Some(2), Some(3)]);

        // A normalized batch round-trips unchanged.
        let again = decode_arrow_ipc(&stream(std::slice::from_ref(b)), &opts(), &()).unwrap();
        assert_eq!(&again.batches[0].batch, b);
    }

    #[test]
    fn coerces_to_the_table_schema() {
        let schema: SchemaRef = Arc::new(Schema::new(vec![
            time_column(),
            tag_column("sensor"),
            field_column("count", DataType::Float64),
        ]));
        let lookup = HashMap::from([("air".to_string(), schema)]);
        let body = stream(&[raw(vec![1], vec!["a"], vec![1.0], vec![4])]);
        let d = decode_arrow_ipc(&body, &opts(), &lookup).unwrap();
        assert_eq!(floats(&d.batches[0].batch, "count"), [Some(4.0)]);
        let schema: SchemaRef = Arc::new(Schema::new(vec![time_column(), tag_column("pm25")]));
        let lookup = HashMap::from([("air".to_string(), schema)]);
        let err = decode_arrow_ipc(&body, &opts(), &lookup).unwrap_err();
        assert_eq!(
            err.to_string(),
            "column 'pm25' is tag in the table but the batch gives float"
        );
    }

    #[test]
    fn fatal_errors() {
        let err = decode_arrow_ipc(b"not arrow at all", &opts(), &()).unwrap_err();
        assert!(matches!(err, Error::ArrowIpc(_)), "{err}");
        assert!(err.to_string().starts_with("invalid Arrow IPC stream"));
        let no_table = DecodeOptions {
            table: None,
            ..opts()
        };
        let body = stream(&[raw(vec![1], vec!["a"], vec![1.0], vec![4])]);
        assert!(matches!(
            decode_arrow_ipc(&body, &no_table, &()),
            Err(Error::MissingTable {
                format: "Arrow IPC"
            })
        ));
        let no_time = RecordBatch::try_from_iter(vec![(
            "v",
            Arc::new(Float64Array::from(vec![1.0])) as ArrayRef,
        )])
        .unwrap();
        let err = decode_arrow_ipc(&stream(&[no_time]), &opts(), &()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the Arrow stream has no 'time' (or 'timestamp') column"
        );
    }
}
