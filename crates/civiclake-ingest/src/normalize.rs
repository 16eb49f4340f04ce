//! Brings an arbitrary Arrow batch to the civiclake conventions (Arrow IPC, Parquet, CSV).

use crate::builder::{Kind, is_string_type};
use crate::error::{Error, Result};
use crate::types::Precision;
use arrow::array::{Array, ArrayRef, AsArray, Int64Array, RecordBatch, TimestampMicrosecondArray};
use arrow::compute::{CastOptions, cast, cast_with_options};
use arrow::datatypes::{
    DataType, Date32Type, Date64Type, Field, Int64Type, Schema, TimeUnit, TimestampMicrosecondType,
    TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType,
};
use civiclake_core::{TIME_COLUMN, field_column, tag_column, tag_type, time_column};
use std::collections::HashSet;
use std::sync::Arc;

const MICROS_PER_DAY: i64 = 86_400_000_000;

/// Converts an arbitrary Arrow batch to the civiclake conventions.
///
/// * The column `time_column` becomes `time`: timestamps of any unit and time zone (converted
///   to microseconds UTC, nanoseconds floored; a timestamp without time zone is taken as UTC),
///   `Date32`/`Date64`, `Int64` (epoch microseconds) or RFC 3339 strings. A null time is an
///   error.
/// * Strings (`Utf8`, `LargeUtf8`, `Utf8View`, dictionaries of strings) become tags; signed
///   and unsigned integers become `Int64` (an unsigned value above `i64::MAX` is an error);
///   `Float16`/`Float32`/`Float64` become `Float64`; booleans stay. Any other type is an error.
/// * With `existing` (the table's schema), values are coerced to its column types: integers
///   into a float column, strings into a string field; other mismatches are errors.
///
/// Columns are ordered `time`, tags by name, fields by name.
pub fn normalize_batch(
    batch: &RecordBatch,
    time_column_name: &str,
    existing: Option<&Schema>,
) -> Result<RecordBatch> {
    let schema = batch.schema();
    let mut names = HashSet::new();
    for field in schema.fields() {
        if !names.insert(field.name().as_str()) {
            return Err(Error::Schema(format!(
                "column '{}' appears more than once",
                field.name()
            )));
        }
    }
    let time_index = schema.index_of(time_column_name).map_err(|_| {
        let columns: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        Error::Schema(format!(
            "time column '{time_column_name}' not found (columns: {})",
            columns.join(", ")
        ))
    })?;
    let time = normalize_time(batch.column(time_index).as_ref(), time_column_name)?;

    let mut tags: Vec<(Field, ArrayRef)> = Vec::new();
    let mut fields: Vec<(Field, ArrayRef)> = Vec::new();
    for (index, (field, array)) in schema.fields().iter().zip(batch.columns()).enumerate() {
        if index == time_index {
            continue;
        }
        let name = field.name().as_str();
        if name == TIME_COLUMN {
            return Err(Error::Schema(format!(
                "column 'time' conflicts with the time column '{time_column_name}'"
            )));
        }
        civiclake_core::validate_column_name(name).map_err(Error::Schema)?;
        let given = natural_kind(field.data_type()).ok_or_else(|| {
            Error::Schema(format!(
                "column '{name}' has unsupported type {}; use strings, integers, floats or booleans",
                field.data_type()
            ))
        })?;
        let kind = match existing.and_then(|s| s.field_with_name(name).ok()) {
            None => given,
            Some(existing) => target_kind(name, given, existing.data_type())?,
        };
        let array =
            convert(array, kind).map_err(|e| Error::Schema(format!("column '{name}': {e}")))?;
        match kind {
            Kind::Tag => tags.push((tag_column(name), array)),
            other => fields.push((field_column(name, kind_type(other)), array)),
        }
    }
    tags.sort_by(|a, b| a.0.name().cmp(b.0.name()));
    fields.sort_by(|a, b| a.0.name().cmp(b.0.name()));
    let (mut out_fields, mut arrays): (Vec<Field>, Vec<ArrayRef>) =
        tags.into_iter().chain(fields).unzip();
    out_fields.insert(0, time_column());
    arrays.insert(0, time);
    RecordBatch::try_new(Arc::new(Schema::new(out_fields)), arrays).map_err(Error::Arrow)
}

/// Converts an integer time column of `batch` from `precision` units to epoch microseconds
/// (`Int64`), so that [`normalize_batch`] reads it right; other batches are returned as is.
pub(crate) fn epoch_time_to_micros(
    batch: RecordBatch,
    time_column_name: &str,
    precision: Precision,
) -> Result<RecordBatch> {
    let Ok(index) = batch.schema().index_of(time_column_name) else {
        return Ok(batch);
    };
    if !batch.column(index).data_type().is_integer() || precision == Precision::Microsecond {
        return Ok(batch);
    }
    let values = cast_with_options(batch.column(index), &DataType::Int64, &strict())
        .map_err(|e| Error::Schema(format!("time column '{time_column_name}': {e}")))?;
    let values = values
        .as_primitive_opt::<Int64Type>()
        .ok_or_else(|| Error::Schema("time column is not an integer".into()))?;
    let mut out = Vec::with_capacity(values.len());
    for (row, value) in values.iter().enumerate() {
        out.push(match value {
            None => None,
            Some(v) => Some(precision.to_micros(v).ok_or_else(|| {
                Error::Schema(format!(
                    "time {v} at row {} is out of range for precision {precision}",
                    row + 1
                ))
            })?),
        });
    }
    let mut columns = batch.columns().to_vec();
    columns[index] = Arc::new(Int64Array::from(out));
    let mut schema_fields: Vec<Field> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    schema_fields[index] = Field::new(time_column_name, DataType::Int64, true);
    RecordBatch::try_new(Arc::new(Schema::new(schema_fields)), columns).map_err(Error::Arrow)
}

fn strict() -> CastOptions<'static> {
    CastOptions {
        safe: false,
        ..Default::default()
    }
}

fn kind_type(kind: Kind) -> DataType {
    match kind {
        Kind::Tag => tag_type(),
        Kind::Float => DataType::Float64,
        Kind::Int => DataType::Int64,
        Kind::Bool => DataType::Boolean,
        Kind::Str => DataType::Utf8,
    }
}

/// The kind an Arrow type becomes without an existing schema.
fn natural_kind(data_type: &DataType) -> Option<Kind> {
    match data_type {
        t if is_string_type(t) => Some(Kind::Tag),
        DataType::Dictionary(_, value) if is_string_type(value) => Some(Kind::Tag),
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64 => Some(Kind::Int),
        DataType::Float16 | DataType::Float32 | DataType::Float64 => Some(Kind::Float),
        DataType::Boolean => Some(Kind::Bool),
        _ => None,
    }
}

/// The kind to store a column of kind `given` as, given the table's column type.
fn target_kind(name: &str, given: Kind, existing: &DataType) -> Result<Kind> {
    let Some(target) = Kind::of(existing) else {
        return Err(Error::Schema(format!(
            "column '{name}' has type {existing} in the table, which cannot take {} values",
            given.describe()
        )));
    };
    let fits = matches!(
        (given, target),
        (Kind::Tag, Kind::Tag | Kind::Str)
            | (Kind::Int, Kind::Int | Kind::Float)
            | (Kind::Float, Kind::Float)
            | (Kind::Bool, Kind::Bool)
    );
    if fits {
        Ok(target)
    } else {
        Err(Error::Schema(format!(
            "column '{name}' is {} in the table but the batch gives {}",
            target.describe(),
            given.describe()
        )))
    }
}

/// Casts a column to the type of `kind`.
fn convert(array: &ArrayRef, kind: Kind) -> Result<ArrayRef, arrow::error::ArrowError> {
    let target = kind_type(kind);
    if array.data_type() == &target {
        return Ok(array.clone());
    }
    match kind {
        Kind::Tag | Kind::Str => {
            let plain = if array.data_type() == &DataType::Utf8 {
                array.clone()
            } else {
                cast(array, &DataType::Utf8)?
            };
            cast(&plain, &target)
        }
        Kind::Int => cast_with_options(array, &target, &strict()).map_err(|_| {
            arrow::error::ArrowError::CastError(format!(
                "{} values do not all fit a 64-bit signed integer",
                array.data_type()
            ))
        }),
        Kind::Float | Kind::Bool => cast(array, &target),
    }
}

/// Converts a time column to microseconds UTC; rejects nulls and unsupported types.
fn normalize_time(array: &dyn Array, name: &str) -> Result<ArrayRef> {
    if array.null_count() > 0 {
        let row = (0..array.len()).find(|&i| array.is_null(i)).unwrap_or(0);
        return Err(Error::Schema(format!(
            "time column '{name}' has a null value at row {}",
            row + 1
        )));
    }
    let out_of_range = |row: usize| {
        Error::Schema(format!(
            "time at row {} of column '{name}' is out of range",
            row + 1
        ))
    };
    let scale = |values: &[i64], f: &dyn Fn(i64) -> Option<i64>| -> Result<Vec<i64>> {
        values
            .iter()
            .enumerate()
            .map(|(row, &v)| f(v).ok_or_else(|| out_of_range(row)))
            .collect()
    };
    let wrong = || Error::Schema(format!("time column '{name}' does not match its type"));
    let micros: Vec<i64> = match array.data_type() {
        DataType::Timestamp(unit, _) => match unit {
            TimeUnit::Second => scale(
                array
                    .as_primitive_opt::<TimestampSecondType>()
                    .ok_or_else(wrong)?
                    .values(),
                &|v| v.checked_mul(1_000_000),
            )?,
            TimeUnit::Millisecond => scale(
                array
                    .as_primitive_opt::<TimestampMillisecondType>()
                    .ok_or_else(wrong)?
                    .values(),
                &|v| v.checked_mul(1000),
            )?,
            TimeUnit::Microsecond => array
                .as_primitive_opt::<TimestampMicrosecondType>()
                .ok_or_else(wrong)?
                .values()
                .to_vec(),
            TimeUnit::Nanosecond => array
                .as_primitive_opt::<TimestampNanosecondType>()
                .ok_or_else(wrong)?
                .values()
                .iter()
                .map(|v| v.div_euclid(1000))
                .collect(),
        },
        DataType::Date32 => {
            let days = array.as_primitive_opt::<Date32Type>().ok_or_else(wrong)?;
            let days: Vec<i64> = days.values().iter().map(|&d| i64::from(d)).collect();
            scale(&days, &|d| d.checked_mul(MICROS_PER_DAY))?
        }
        DataType::Date64 => scale(
            array
                .as_primitive_opt::<Date64Type>()
                .ok_or_else(wrong)?
                .values(),
            &|v| v.checked_mul(1000),
        )?,
        DataType::Int64 => array
            .as_primitive_opt::<Int64Type>()
            .ok_or_else(wrong)?
            .values()
            .to_vec(),
        t if is_string_type(t) => {
            let strings = cast(array, &DataType::Utf8).map_err(|e| {
                Error::Schema(format!("time column '{name}' cannot be read as text: {e}"))
            })?;
            let strings = strings.as_string_opt::<i32>().ok_or_else(wrong)?;
            let mut out = Vec::with_capacity(strings.len());
            for (row, s) in strings.iter().enumerate() {
                let s = s.unwrap_or_default();
                let t = chrono::DateTime::parse_from_rfc3339(s).map_err(|e| {
                    Error::Schema(format!(
                        "invalid RFC 3339 time {s:?} at row {} of column '{name}': {e}",
                        row + 1
                    ))
                })?;
                out.push(t.timestamp_micros());
            }
            out
        }
        other => {
            return Err(Error::Schema(format!(
                "time column '{name}' has unsupported type {other}; use a timestamp, a date, \
                 Int64 epoch microseconds or RFC 3339 strings"
            )));
        }
    };
    Ok(Arc::new(
        TimestampMicrosecondArray::from(micros).with_timezone("UTC"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::*;
    use arrow::array::{
        BooleanArray, Date32Array, Date64Array, DictionaryArray, Float32Array, Int8Array,
        LargeStringArray, ListArray, StringArray, StringViewArray, TimestampMillisecondArray,
        TimestampNanosecondArray, TimestampSecondArray, UInt32Array, UInt64Array,
    };
    use arrow::datatypes::{Float64Type, Int8Type};

    fn batch(columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
        RecordBatch::try_from_iter(columns).unwrap()
    }

    fn time_of(array: ArrayRef) -> Result<Vec<i64>> {
        let b = batch(vec![
            ("t", array),
            ("v", Arc::new(BooleanArray::from(vec![true; 2]))),
        ]);
        normalize_batch(&b, "t", None).map(|b| times(&b))
    }

    #[test]
    fn converts_columns_to_the_conventions() {
        let f16 = cast(
            &(Arc::new(Float32Array::from(vec![1.5, -2.0])) as ArrayRef),
            &DataType::Float16,
        )
        .unwrap();
        let dict: DictionaryArray<Int8Type> = vec![Some("x"), None].into_iter().collect();
        let b = batch(vec![
            (
                "zz_bool",
                Arc::new(BooleanArray::from(vec![Some(true), None])),
            ),
            (
                "ts",
                Arc::new(TimestampNanosecondArray::from(vec![1_500, -1]).with_timezone("+02:00")),
            ),
            ("s", Arc::new(StringArray::from(vec!["a", "b"]))),
            ("l", Arc::new(LargeStringArray::from(vec![Some("c"), None]))),
            ("v", Arc::new(StringViewArray::from(vec!["d", "e"]))),
            ("d", Arc::new(dict)),
            ("i8", Arc::new(Int8Array::from(vec![-8, 8]))),
            ("u32", Arc::new(UInt32Array::from(vec![u32::MAX, 0]))),
            ("u64", Arc::new(UInt64Array::from(vec![i64::MAX as u64, 1]))),
            ("f16", f16),
            ("f32", Arc::new(Float32Array::from(vec![0.25, 0.5]))),
        ]);
        let out = normalize_batch(&b, "ts", None).unwrap();
        assert_eq!(
            names(&out),
            [
                "time", "d", "l", "s", "v", "f16", "f32", "i8", "u32", "u64", "zz_bool"
            ]
        );
        assert_eq!(out.schema().field(0), &time_column());
        assert_eq!(out.schema().field(1), &tag_column("d"));
        assert_eq!(
            out.schema().field(5),
            &field_column("f16", DataType::Float64)
        );
        assert_eq!(times(&out), [1, -1]);
        assert_eq!(tags(&out, "s"), [Some("a".into()), Some("b".into())]);
        assert_eq!(tags(&out, "l"), [Some("c".into()), None]);
        assert_eq!(tags(&out, "v"), [Some("d".into()), Some("e".into())]);
        assert_eq!(tags(&out, "d"), [Some("x".into()), None]);
        assert_eq!(ints(&out, "i8"), [Some(-8), Some(8)]);
        assert_eq!(ints(&out, "u32"), [Some(u32::MAX.into()), Some(0)]);
        assert_eq!(ints(&out, "u64"), [Some(i64::MAX), Some(1)]);
        assert_eq!(floats(&out, "f16"), [Some(1.5), Some(-2.0)]);
        assert_eq!(floats(&out, "f32"), [Some(0.25), Some(0.5)]);
        assert_eq!(bools(&out, "zz_bool"), [Some(true), None]);
    }

    #[test]
    fn converts_time_columns() {
        assert_eq!(
            time_of(Arc::new(TimestampSecondArray::from(vec![1, -1]))).unwrap(),
            [1_000_000, -1_000_000]
        );
        assert_eq!(
            time_of(Arc::new(
                TimestampMillisecondArray::from(vec![1, 2]).with_timezone("UTC")
            ))
            .unwrap(),
            [1000, 2000]
        );
        assert_eq!(
            time_of(Arc::new(Date32Array::from(vec![1, 0]))).unwrap(),
            [86_400_000_000, 0]
        );
        assert_eq!(
            time_of(Arc::new(Date64Array::from(vec![5, 6]))).unwrap(),
            [5000, 6000]
        );
        assert_eq!(
            time_of(Arc::new(Int64Array::from(vec![7, 8]))).unwrap(),
            [7, 8]
        );
        assert_eq!(
            time_of(Arc::new(StringArray::from(vec![
                "2026-01-01T00:00:00Z",
                "2026-01-01T02:00:00.5+02:00"
            ])))
            .unwrap(),
            [1_767_225_600_000_000, 1_767_225_600_500_000]
        );
        let err = time_of(Arc::new(StringArray::from(vec![
            "2026-01-01T00:00:00Z",
            "noon",
        ])))
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("invalid RFC 3339 time \"noon\" at row 2 of column 't'"),
            "{err}"
        );
        let err = time_of(Arc::new(Int64Array::from(vec![Some(1), None]))).unwrap_err();
        assert_eq!(err.to_string(), "time column 't' has a null value at row 2");
        let err = time_of(Arc::new(Float32Array::from(vec![1.0, 2.0]))).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("time column 't' has unsupported type Float32"),
            "{err}"
        );
        let err = time_of(Arc::new(TimestampSecondArray::from(vec![i64::MAX, 0]))).unwrap_err();
        assert_eq!(
            err.to_string(),
            "time at row 1 of column 't' is out of range"
        );
    }

    #[test]
    fn rejects_unsupported_columns() {
        let t: ArrayRef = Arc::new(Int64Array::from(vec![1]));
        let list = ListArray::from_iter_primitive::<Float64Type, _, _>(vec![Some(vec![Some(1.0)])]);
        let err = normalize_batch(
            &batch(vec![("t", t.clone()), ("xs", Arc::new(list))]),
            "t",
            None,
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("column 'xs' has unsupported type List"),
            "{err}"
        );
        let big = batch(vec![
            ("t", t.clone()),
            ("u", Arc::new(UInt64Array::from(vec![u64::MAX]))),
        ]);
        let err = normalize_batch(&big, "t", None).unwrap_err();
        assert!(err.to_string().starts_with("column 'u': "), "{err}");
        assert_eq!(err.class(), civiclake_core::ErrorClass::User);
        let err = normalize_batch(&batch(vec![("t", t.clone())]), "when", None).unwrap_err();
        assert_eq!(err.to_string(), "time column 'when' not found (columns: t)");
        let clash = batch(vec![("t", t.clone()), ("time", t.clone())]);
        let err = normalize_batch(&clash, "t", None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "column 'time' conflicts with the time column 't'"
        );
    }

    #[test]
    fn coerces_to_an_existing_schema() {
        let existing = Schema::new(vec![
            time_column(),
            tag_column("sensor"),
            field_column("pm25", DataType::Float64),
            field_column("count", DataType::Int64),
            field_column("note", DataType::Utf8),
        ]);
        let t: ArrayRef = Arc::new(Int64Array::from(vec![1]));
        let b = batch(vec![
            ("time", t.clone()),
            ("pm25", Arc::new(Int8Array::from(vec![3]))),
            ("note", Arc::new(StringArray::from(vec!["n"]))),
            ("sensor", Arc::new(StringArray::from(vec!["s"]))),
        ]);
        let out = normalize_batch(&b, "time", Some(&existing)).unwrap();
        assert_eq!(names(&out), ["time", "sensor", "note", "pm25"]);
        assert_eq!(floats(&out, "pm25"), [Some(3.0)]);
        assert_eq!(strings(&out, "note"), [Some("n".into())]);
        assert_eq!(out.schema().field(2), &field_column("note", DataType::Utf8));
        let b = batch(vec![
            ("time", t.clone()),
            ("count", Arc::new(Float32Array::from(vec![1.0]))),
        ]);
        let err = normalize_batch(&b, "time", Some(&existing)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "column 'count' is integer in the table but the batch gives float"
        );
        let b = batch(vec![
            ("time", t),
            ("sensor", Arc::new(BooleanArray::from(vec![true]))),
        ]);
        let err = normalize_batch(&b, "time", Some(&existing)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "column 'sensor' is tag in the table but the batch gives boolean"
        );
    }

    #[test]
    fn scales_integer_epochs() {
        let b = batch(vec![
            (
                "time",
                Arc::new(arrow::array::Int32Array::from(vec![2, -1])) as ArrayRef,
            ),
            ("v", Arc::new(BooleanArray::from(vec![true, false]))),
        ]);
        let seconds = epoch_time_to_micros(b.clone(), "time", Precision::Second).unwrap();
        assert_eq!(
            times(&normalize_batch(&seconds, "time", None).unwrap()),
            [2_000_000, -1_000_000]
        );
        let nanos = epoch_time_to_micros(b, "time", Precision::Nanosecond).unwrap();
        assert_eq!(
            times(&normalize_batch(&nanos, "time", None).unwrap()),
            [0, -1]
        );
    }
}
