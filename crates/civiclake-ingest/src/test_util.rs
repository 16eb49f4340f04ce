//! Helpers reading values out of batches in tests.

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Float64Type, Int64Type, TimestampMicrosecondType};

pub(crate) fn names(batch: &RecordBatch) -> Vec<String> {
    batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect()
}

fn column<'a>(batch: &'a RecordBatch, name: &str) -> &'a dyn Array {
    batch
        .column_by_name(name)
        .unwrap_or_else(|| panic!("no column {name} in {:?}", names(batch)))
        .as_ref()
}

pub(crate) fn times(batch: &RecordBatch) -> Vec<i64> {
    let array = column(batch, "time");
    assert_eq!(
        array.data_type(),
        &civiclake_core::time_type(),
        "time column type"
    );
    assert_eq!(array.null_count(), 0);
    array
        .as_primitive::<TimestampMicrosecondType>()
        .values()
        .to_vec()
}

/// Tag or string values (a tag column must be a dictionary).
pub(crate) fn strings(batch: &RecordBatch, name: &str) -> Vec<Option<String>> {
    let array = column(batch, name);
    let plain = cast(array, &DataType::Utf8).unwrap();
    plain
        .as_string::<i32>()
        .iter()
        .map(|v| v.map(str::to_string))
        .collect()
}

pub(crate) fn tags(batch: &RecordBatch, name: &str) -> Vec<Option<String>> {
    assert_eq!(
        column(batch, name).data_type(),
        &civiclake_core::tag_type(),
        "{name}"
    );
    strings(batch, name)
}

pub(crate) fn floats(batch: &RecordBatch, name: &str) -> Vec<Option<f64>> {
    let array = column(batch, name);
    assert_eq!(array.data_type(), &DataType::Float64, "{name}");
    array.as_primitive::<Float64Type>().iter().collect()
}

pub(crate) fn ints(batch: &RecordBatch, name: &str) -> Vec<Option<i64>> {
    let array = column(batch, name);
    assert_eq!(array.data_type(), &DataType::Int64, "{name}");
    array.as_primitive::<Int64Type>().iter().collect()
}

pub(crate) fn bools(batch: &RecordBatch, name: &str) -> Vec<Option<bool>> {
    let array = column(batch, name);
    assert_eq!(array.data_type(), &DataType::Boolean, "{name}");
    array.as_boolean().iter().collect()
}
