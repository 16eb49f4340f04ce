//! Sorting buffered rows into the lake's file layout and writing/reading Parquet.
//!
//! Files are partitioned by day; inside a file rows are sorted by the tag columns (the
//! series) and then by time, which is what makes them compress to a few bytes per row and
//! lets a query for one sensor skip most row groups.

use crate::error::{Error, Result};
use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, UInt32Array};
use arrow::compute::{
    SortColumn, SortOptions, concat_batches, lexsort_to_indices, take_record_batch,
};
use arrow::datatypes::{DataType, Int64Type, SchemaRef, TimestampMicrosecondType};
use bytes::Bytes;
use civiclake_core::{ColumnRole, TIME_COLUMN, role_of};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use serde_json::{Map, Value, json};
use std::sync::Arc;

const MICROS_PER_DAY: i64 = 86_400_000_000;

/// Rows of one day, sorted, ready to be written as one file.
#[derive(Debug)]
pub(crate) struct DaySlice {
    pub(crate) day: String,
    pub(crate) batch: RecordBatch,
    pub(crate) min_time: i64,
    pub(crate) max_time: i64,
}

fn time_values(
    batch: &RecordBatch,
) -> Result<&arrow::array::PrimitiveArray<TimestampMicrosecondType>> {
    batch
        .column_by_name(TIME_COLUMN)
        .and_then(|c| c.as_primitive_opt::<TimestampMicrosecondType>())
        .ok_or_else(|| Error::Internal("batch without a µs time column".into()))
}

/// `YYYY-MM-DD` of a day number since the epoch.
pub(crate) fn day_string(day: i64) -> String {
    chrono::DateTime::from_timestamp_micros(day * MICROS_PER_DAY)
        .map(|d| d.format("%Y-%m-%d").to_string())
        .unwrap_or_else(|| "1970-01-01".into())
}

/// Concatenates `batches` (all of `schema`), sorts by day, tags, time, and splits by day.
pub(crate) fn sort_by_day(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<Vec<DaySlice>> {
    let all = concat_batches(schema, batches)?;
    if all.num_rows() == 0 {
        return Ok(Vec::new());
    }
    let times = time_values(&all)?;
    let days: ArrayRef = Arc::new(arrow::array::PrimitiveArray::<Int64Type>::from_iter_values(
        times.values().iter().map(|t| t.div_euclid(MICROS_PER_DAY)),
    ));
    let mut keys = vec![SortColumn {
        values: days.clone(),
        options: None,
    }];
    for (i, field) in schema.fields().iter().enumerate() {
        if role_of(field) == ColumnRole::Tag {
            keys.push(SortColumn {
                values: all.column(i).clone(),
                options: Some(SortOptions {
                    descending: false,
                    nulls_first: true,
                }),
            });
        }
    }
    keys.push(SortColumn {
        values: Arc::new(times.clone()),
        options: None,
    });
    let indices: UInt32Array = lexsort_to_indices(&keys, None)?;
    let sorted = take_record_batch(&all, &indices)?;
    let sorted_days = arrow::compute::take(days.as_ref(), &indices, None)?;
    let sorted_days = sorted_days.as_primitive::<Int64Type>();
    let sorted_times = time_values(&sorted)?;
    let mut out = Vec::new();
    let mut start = 0;
    let n = sorted.num_rows();
    while start < n {
        let day = sorted_days.value(start);
        let mut end = start;
        while end < n && sorted_days.value(end) == day {
            end += 1;
        }
        let slice = sorted.slice(start, end - start);
        let times = &sorted_times.values()[start..end];
        out.push(DaySlice {
            day: day_string(day),
            min_time: times.iter().copied().min().unwrap_or(0),
            max_time: times.iter().copied().max().unwrap_or(0),
            batch: slice,
        });
        start = end;
    }
    Ok(out)
}

/// Values of a float column's sample: the encodings are tried on this many.
const FLOAT_SAMPLE: usize = 32_768;

/// Whether a float column has many distinct values (measured on a sample). Columns with few
/// (readings at a coarse resolution, status-like values) keep the dictionary without a trial.
fn mostly_distinct(column: &dyn Array) -> bool {
    let Some(values) = column.as_primitive_opt::<arrow::datatypes::Float64Type>() else {
        return false;
    };
    let sample = values.len().min(FLOAT_SAMPLE);
    if sample < 1024 {
        return false;
    }
    let distinct: std::collections::HashSet<u64> = values.values()[..sample]
        .iter()
        .map(|v| v.to_bits())
        .collect();
    distinct.len() * 10 > sample
}

/// Bytes of a sample of `column` written as zstd Parquet, with a dictionary or with
/// BYTE_STREAM_SPLIT.
fn sample_size(column: &dyn Array, level: ZstdLevel, byte_stream_split: bool) -> Option<usize> {
    let sample = column.slice(0, column.len().min(FLOAT_SAMPLE));
    let schema = Arc::new(arrow::datatypes::Schema::new(vec![
        arrow::datatypes::Field::new("v", DataType::Float64, true),
    ]));
    let batch = RecordBatch::try_new(schema.clone(), vec![sample]).ok()?;
    let mut props = WriterProperties::builder().set_compression(Compression::ZSTD(level));
    if byte_stream_split {
        props = props
            .set_dictionary_enabled(false)
            .set_encoding(Encoding::BYTE_STREAM_SPLIT);
    }
    let mut buf = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut buf, schema, Some(props.build())).ok()?;
    writer.write(&batch).ok()?;
    writer.close().ok()?;
    Some(buf.len())
}

/// Whether BYTE_STREAM_SPLIT stores a float column smaller than a dictionary. Both are
/// tried on a sample (the first rows, in the file's sort order) when the column has many
/// distinct values: full-precision random walks go far smaller split into byte streams
/// (4.7 vs 6.8 bytes a row measured here), while readings with a fixed number of decimals
/// repeat values within a series and stay smaller as a dictionary (2.7 vs 4.8 bytes a row
/// for two-decimal simulated readings).
fn byte_stream_split_is_smaller(column: &dyn Array, level: ZstdLevel) -> bool {
    if !mostly_distinct(column) {
        return false;
    }
    match (
        sample_size(column, level, false),
        sample_size(column, level, true),
    ) {
        (Some(dictionary), Some(split)) => split < dictionary,
        (None, Some(_)) => true,
        _ => false,
    }
}

/// Parquet writer settings of the lake for `batch`: zstd, row groups of `row_group_rows`,
/// page statistics (page index) for pruning, delta encoding for time, and for each float
/// column a dictionary or BYTE_STREAM_SPLIT, whichever stores a sample of it smaller.
pub(crate) fn writer_properties(
    row_group_rows: usize,
    zstd_level: i32,
    batch: &RecordBatch,
) -> Result<WriterProperties> {
    let level = ZstdLevel::try_new(zstd_level)?;
    let mut builder = WriterProperties::builder()
        .set_compression(Compression::ZSTD(level))
        .set_max_row_group_row_count(Some(row_group_rows))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_column_dictionary_enabled(ColumnPath::from(TIME_COLUMN), false)
        .set_column_encoding(ColumnPath::from(TIME_COLUMN), Encoding::DELTA_BINARY_PACKED)
        .set_created_by(format!("civiclake {}", env!("CARGO_PKG_VERSION")));
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        if field.data_type() == &DataType::Float64
            && byte_stream_split_is_smaller(column.as_ref(), level)
        {
            let path = ColumnPath::from(field.name().as_str());
            builder = builder
                .set_column_dictionary_enabled(path.clone(), false)
                .set_column_encoding(path, Encoding::BYTE_STREAM_SPLIT);
        }
    }
    Ok(builder.build())
}

/// Writes one sorted slice as a Parquet file in memory.
pub(crate) fn write_parquet(batch: &RecordBatch, props: WriterProperties) -> Result<Bytes> {
    let mut buf = Vec::with_capacity(batch.get_array_memory_size() / 4 + 1024);
    let mut writer = ArrowWriter::try_new(&mut buf, batch.schema(), Some(props))?;
    writer.write(batch)?;
    writer.close()?;
    Ok(Bytes::from(buf))
}

/// One day partition of a flush: its sorted rows, the Parquet file and the Delta stats.
pub(crate) type EncodedDay = (DaySlice, Bytes, String);

/// The CPU part of a flush: sorts `batches` (all of `schema`) by day, tags and time and
/// encodes one zstd Parquet file per day, with its Delta stats.
pub(crate) fn encode_day_files(
    schema: &SchemaRef,
    batches: &[RecordBatch],
    row_group_rows: usize,
    zstd_level: i32,
) -> Result<Vec<EncodedDay>> {
    sort_by_day(schema, batches)?
        .into_iter()
        .map(|s| {
            let props = writer_properties(row_group_rows, zstd_level, &s.batch)?;
            let bytes = write_parquet(&s.batch, props)?;
            let stats = delta_stats(&s.batch, s.min_time, s.max_time);
            Ok((s, bytes, stats))
        })
        .collect()
}

/// A Parquet file as a flush writes it, encoded in memory (see [`encode_flush_files`]).
#[derive(Debug, Clone)]
pub struct EncodedFile {
    /// Day partition (`YYYY-MM-DD`).
    pub day: String,
    /// Rows in the file.
    pub rows: usize,
    /// The Parquet file.
    pub bytes: Bytes,
}

/// Encodes rows of one table exactly as [`crate::Lake::flush`] does before it stores them:
/// sorted by day, tags and time, one zstd Parquet file per day partition with the lake's
/// writer settings (`row_group_rows` rows per row group, zstd `zstd_level`; the flush takes
/// both from [`crate::LakeConfig`]). Nothing is written anywhere: this is the flush without
/// its object store writes and Delta commit, for benchmarks and tools.
///
/// `batches` must all have `schema`, which must have a `time` column of
/// `Timestamp(Microsecond, "UTC")`; an invalid zstd level is an error.
pub fn encode_flush_files(
    schema: &SchemaRef,
    batches: &[RecordBatch],
    row_group_rows: usize,
    zstd_level: i32,
) -> Result<Vec<EncodedFile>> {
    Ok(
        encode_day_files(schema, batches, row_group_rows, zstd_level)?
            .into_iter()
            .map(|(slice, bytes, _)| EncodedFile {
                rows: slice.batch.num_rows(),
                day: slice.day,
                bytes,
            })
            .collect(),
    )
}

/// Reads a whole Parquet file held in memory.
pub(crate) fn read_parquet(data: Bytes) -> Result<Vec<RecordBatch>> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(data)?
        .with_batch_size(65_536)
        .build()?;
    Ok(reader.collect::<std::result::Result<Vec<_>, _>>()?)
}

fn micros_to_iso(micros: i64, round_up: bool) -> String {
    // Delta stats carry timestamps with millisecond precision: round outward so that the
    // bounds still contain every row.
    let millis = if round_up {
        micros.div_euclid(1000) + i64::from(micros.rem_euclid(1000) != 0)
    } else {
        micros.div_euclid(1000)
    };
    chrono::DateTime::from_timestamp_millis(millis)
        .map(|d| d.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .unwrap_or_default()
}

/// Delta per-file statistics (`numRecords`, `minValues`, `maxValues`, `nullCount`) as JSON.
pub(crate) fn delta_stats(batch: &RecordBatch, min_time: i64, max_time: i64) -> String {
    let mut min = Map::new();
    let mut max = Map::new();
    let mut nulls = Map::new();
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        nulls.insert(field.name().clone(), json!(column.null_count()));
        if field.name() == TIME_COLUMN {
            min.insert(field.name().clone(), json!(micros_to_iso(min_time, false)));
            max.insert(field.name().clone(), json!(micros_to_iso(max_time, true)));
            continue;
        }
        match field.data_type() {
            DataType::Float64 => {
                let a = column.as_primitive::<arrow::datatypes::Float64Type>();
                if a.iter().flatten().any(f64::is_nan) {
                    continue;
                }
                if let (Some(lo), Some(hi)) = (arrow::compute::min(a), arrow::compute::max(a)) {
                    min.insert(field.name().clone(), json!(lo));
                    max.insert(field.name().clone(), json!(hi));
                }
            }
            DataType::Int64 => {
                let a = column.as_primitive::<Int64Type>();
                if let (Some(lo), Some(hi)) = (arrow::compute::min(a), arrow::compute::max(a)) {
                    min.insert(field.name().clone(), json!(lo));
                    max.insert(field.name().clone(), json!(hi));
                }
            }
            _ => {}
        }
    }
    json!({
        "numRecords": batch.num_rows(),
        "minValues": Value::Object(min),
        "maxValues": Value::Object(max),
        "nullCount": Value::Object(nulls),
    })
    .to_string()
}

/// Time bounds (µs) back from Delta stats JSON, rounded outward to whole milliseconds.
pub(crate) fn time_bounds_from_stats(stats: &str) -> (Option<u64>, Option<i64>, Option<i64>) {
    let Ok(v) = serde_json::from_str::<Value>(stats) else {
        return (None, None, None);
    };
    let parse = |key: &str| {
        v.get(key)
            .and_then(|m| m.get(TIME_COLUMN))
            .and_then(Value::as_str)
            .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
            .map(|d| d.timestamp_micros())
    };
    let rows = v.get("numRecords").and_then(Value::as_u64);
    (
        rows,
        parse("minValues"),
        parse("maxValues").map(|m| m + 999),
    )
}

/// Number of rows with a value in `column` (for tests and checks).
#[cfg(test)]
pub(crate) fn non_null(column: &dyn Array) -> usize {
    column.len() - column.null_count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Float64Array, StringDictionaryBuilder, TimestampMicrosecondArray};
    use arrow::datatypes::{Int32Type, Schema};
    use civiclake_core::{field_column, tag_column, time_column};

    fn sample() -> (SchemaRef, RecordBatch) {
        let schema = Arc::new(Schema::new(vec![
            time_column(),
            tag_column("sensor"),
            field_column("v", DataType::Float64),
        ]));
        let day = MICROS_PER_DAY;
        let times = vec![day + 5, 3, day + 1, 2, 1];
        let mut sensors = StringDictionaryBuilder::<Int32Type>::new();
        for s in ["b", "b", "a", "a", "b"] {
            sensors.append_value(s);
        }
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(TimestampMicrosecondArray::from(times).with_timezone("UTC")),
                Arc::new(sensors.finish()),
                Arc::new(Float64Array::from(vec![1.0, 2.0, 3.0, 4.0, 5.0])),
            ],
        )
        .unwrap();
        (schema, batch)
    }

    #[test]
    fn sorts_by_day_then_series_then_time() {
        let (schema, batch) = sample();
        let slices = sort_by_day(&schema, &[batch]).unwrap();
        assert_eq!(slices.len(), 2);
        assert_eq!(slices[0].day, "1970-01-01");
        assert_eq!(slices[1].day, "1970-01-02");
        let v = slices[0]
            .batch
            .column(2)
            .as_primitive::<arrow::datatypes::Float64Type>();
        // day 0: a@2 (4.0), b@1 (5.0), b@3 (2.0)
        assert_eq!(v.values().to_vec(), vec![4.0, 5.0, 2.0]);
        assert_eq!((slices[0].min_time, slices[0].max_time), (1, 3));
        assert_eq!(slices[1].batch.num_rows(), 2);
    }

    #[test]
    fn flush_files_are_sorted_zstd_parquet_per_day() {
        let (schema, batch) = sample();
        let (first, second) = (batch.slice(0, 2), batch.slice(2, 3));
        let files = encode_flush_files(&schema, &[first, second], 100_000, 3).unwrap();
        let days: Vec<(&str, usize)> = files.iter().map(|f| (f.day.as_str(), f.rows)).collect();
        assert_eq!(days, [("1970-01-01", 3), ("1970-01-02", 2)]);
        let reader =
            parquet::file::reader::SerializedFileReader::new(files[0].bytes.clone()).unwrap();
        let meta = parquet::file::reader::FileReader::metadata(&reader);
        assert!(matches!(
            meta.row_group(0).column(0).compression(),
            Compression::ZSTD(_)
        ));
        let back = read_parquet(files[0].bytes.clone()).unwrap();
        let v = back[0]
            .column(2)
            .as_primitive::<arrow::datatypes::Float64Type>();
        assert_eq!(v.values().to_vec(), vec![4.0, 5.0, 2.0]);
        assert!(encode_flush_files(&schema, &[batch], 100_000, 99).is_err());
    }

    #[test]
    fn parquet_round_trip_keeps_dictionary_tags() {
        let (_, batch) = sample();
        let bytes = write_parquet(&batch, writer_properties(100_000, 3, &batch).unwrap()).unwrap();
        let back = read_parquet(bytes).unwrap();
        assert_eq!(
            back[0].schema().field(1).data_type(),
            batch.schema().field(1).data_type()
        );
        assert_eq!(back[0], batch);
        assert_eq!(non_null(back[0].column(2).as_ref()), 5);
    }

    #[test]
    fn float_encodings_are_chosen_by_the_size_of_a_sample() {
        let noisy =
            Float64Array::from_iter_values((0..5000).map(|i| (i as f64 * 0.7311).sin() * 1e3));
        let steps = Float64Array::from_iter_values((0..5000).map(|i| (i % 20) as f64 / 10.0));
        // A random walk with two decimals, as sensors report: many distinct values over the
        // sample, but a dictionary still stores it smaller than split byte streams.
        let mut x = 50.0f64;
        let mut seed = 7u64;
        let walk = Float64Array::from_iter_values((0..20_000).map(|_| {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            x = (x + ((seed >> 33) % 201) as f64 / 100.0 - 1.0).clamp(0.0, 100.0);
            (x * 100.0).round() / 100.0
        }));
        assert!(mostly_distinct(&noisy));
        assert!(!mostly_distinct(&steps));
        assert!(mostly_distinct(&walk));
        let level = ZstdLevel::try_new(3).unwrap();
        assert!(byte_stream_split_is_smaller(&noisy, level));
        assert!(!byte_stream_split_is_smaller(&steps, level));
        assert!(!byte_stream_split_is_smaller(&walk, level));
        let schema = Arc::new(Schema::new(vec![
            field_column("a", DataType::Float64),
            field_column("b", DataType::Float64),
        ]));
        let batch = RecordBatch::try_new(schema, vec![Arc::new(noisy), Arc::new(steps)]).unwrap();
        let props = writer_properties(100_000, 3, &batch).unwrap();
        assert_eq!(
            props.encoding(&ColumnPath::from("a")),
            Some(Encoding::BYTE_STREAM_SPLIT)
        );
        assert!(!props.dictionary_enabled(&ColumnPath::from("a")));
        assert!(props.dictionary_enabled(&ColumnPath::from("b")));
        let back = read_parquet(write_parquet(&batch, props).unwrap()).unwrap();
        assert_eq!(back[0], batch);
    }

    #[test]
    fn stats_bounds_contain_every_row() {
        let (_, batch) = sample();
        let stats = delta_stats(&batch, 1_234_567, 2_000_001);
        let (rows, lo, hi) = time_bounds_from_stats(&stats);
        assert_eq!(rows, Some(5));
        assert!(lo.unwrap() <= 1_234_567);
        assert!(hi.unwrap() >= 2_000_001);
        assert!(stats.contains("\"v\":5.0") || stats.contains("\"v\":5"));
    }
}
