//! Reading the columns of a panel's SQL result.

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::compute::cast;
use arrow::datatypes::{
    DataType, Float64Type, SchemaRef, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType,
};
use arrow::record_batch::RecordBatch;

use crate::error::DashboardError;
use crate::model::Panel;

/// The result of a panel's query, with errors that name the panel.
pub(crate) struct Frame<'a> {
    pub(crate) panel: &'a Panel,
    pub(crate) schema: &'a SchemaRef,
    pub(crate) batches: &'a [RecordBatch],
}

impl<'a> Frame<'a> {
    pub(crate) fn new(panel: &'a Panel, schema: &'a SchemaRef, batches: &'a [RecordBatch]) -> Self {
        Self {
            panel,
            schema,
            batches,
        }
    }

    pub(crate) fn err(&self, message: impl Into<String>) -> DashboardError {
        DashboardError::data(&self.panel.id, message)
    }

    pub(crate) fn num_rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }

    /// The column names, for error messages.
    pub(crate) fn names(&self) -> String {
        let names: Vec<&str> = self
            .schema
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        if names.is_empty() {
            "no columns".to_string()
        } else {
            names.join(", ")
        }
    }

    pub(crate) fn field_names(&self) -> Vec<String> {
        self.schema
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect()
    }

    pub(crate) fn data_type(&self, idx: usize) -> &DataType {
        self.schema.field(idx).data_type()
    }

    /// The column named `name`: exactly, else ignoring ASCII case.
    pub(crate) fn find(&self, name: &str) -> Option<usize> {
        let fields = self.schema.fields();
        fields.iter().position(|f| f.name() == name).or_else(|| {
            fields
                .iter()
                .position(|f| f.name().eq_ignore_ascii_case(name))
        })
    }

    /// The column named `name`, or an error saying the panel kind needs it (`what`
    /// describes the expected content).
    pub(crate) fn require(&self, name: &str, what: &str) -> Result<usize, DashboardError> {
        self.find(name).ok_or_else(|| {
            self.err(format!(
                "a {} panel needs a column `{name}` ({what}); the result has {}",
                self.panel.kind.name(),
                self.names()
            ))
        })
    }

    /// Each batch's array of column `idx`, checked against the schema.
    fn arrays(&self, idx: usize) -> Result<Vec<ArrayRef>, DashboardError> {
        let expected = self.data_type(idx);
        let name = self.schema.field(idx).name();
        self.batches
            .iter()
            .map(|b| {
                let col = b.columns().get(idx).ok_or_else(|| {
                    self.err(format!(
                        "a result batch lacks column `{name}` of the schema"
                    ))
                })?;
                if col.data_type() != expected {
                    return Err(self.err(format!(
                        "column `{name}` is {} in a batch but {expected} in the schema",
                        col.data_type()
                    )));
                }
                Ok(col.clone())
            })
            .collect()
    }

    pub(crate) fn is_numeric(&self, idx: usize) -> bool {
        let dt = self.data_type(idx);
        dt.is_numeric() || *dt == DataType::Null
    }

    pub(crate) fn is_temporal(&self, idx: usize) -> bool {
        matches!(
            self.data_type(idx),
            DataType::Timestamp(_, _) | DataType::Date32 | DataType::Date64
        )
    }

    /// Column `idx` as numbers (integers, floats and decimals; NaN reads as null).
    pub(crate) fn numbers(&self, idx: usize) -> Result<Vec<Option<f64>>, DashboardError> {
        let name = self.schema.field(idx).name();
        if !self.is_numeric(idx) {
            return Err(self.err(format!(
                "column `{name}` must be numeric, not {}",
                self.data_type(idx)
            )));
        }
        let mut out = Vec::with_capacity(self.num_rows());
        for array in self.arrays(idx)? {
            let floats = cast(&array, &DataType::Float64)
                .map_err(|e| self.err(format!("column `{name}`: {e}")))?;
            let floats = floats.as_primitive::<Float64Type>();
            out.extend(floats.iter().map(|v| v.filter(|x| !x.is_nan())));
        }
        Ok(out)
    }

    /// Column `idx` as epoch milliseconds: timestamps (any unit, any zone: the instant) or
    /// dates (UTC midnight).
    pub(crate) fn times(&self, idx: usize) -> Result<Vec<Option<i64>>, DashboardError> {
        let name = self.schema.field(idx).name();
        let mut out = Vec::with_capacity(self.num_rows());
        for array in self.arrays(idx)? {
            match array.data_type() {
                DataType::Timestamp(unit, _) => {
                    let to_ms = |v: i64| match unit {
                        TimeUnit::Second => v.saturating_mul(1000),
                        TimeUnit::Millisecond => v,
                        TimeUnit::Microsecond => v.div_euclid(1000),
                        TimeUnit::Nanosecond => v.div_euclid(1_000_000),
                    };
                    let values: Vec<Option<i64>> = match unit {
                        TimeUnit::Second => {
                            array.as_primitive::<TimestampSecondType>().iter().collect()
                        }
                        TimeUnit::Millisecond => array
                            .as_primitive::<TimestampMillisecondType>()
                            .iter()
                            .collect(),
                        TimeUnit::Microsecond => array
                            .as_primitive::<TimestampMicrosecondType>()
                            .iter()
                            .collect(),
                        TimeUnit::Nanosecond => array
                            .as_primitive::<TimestampNanosecondType>()
                            .iter()
                            .collect(),
                    };
                    out.extend(values.into_iter().map(|v| v.map(to_ms)));
                }
                DataType::Date32 | DataType::Date64 => {
                    let ms = cast(&array, &DataType::Timestamp(TimeUnit::Millisecond, None))
                        .map_err(|e| self.err(format!("column `{name}`: {e}")))?;
                    out.extend(ms.as_primitive::<TimestampMillisecondType>().iter());
                }
                other => {
                    return Err(self.err(format!(
                        "column `{name}` must be a timestamp (or a date), not {other}"
                    )));
                }
            }
        }
        Ok(out)
    }

    /// Column `idx` as text (any type that casts to text).
    pub(crate) fn texts(&self, idx: usize) -> Result<Vec<Option<String>>, DashboardError> {
        let name = self.schema.field(idx).name();
        let mut out = Vec::with_capacity(self.num_rows());
        for array in self.arrays(idx)? {
            let text = cast(&array, &DataType::Utf8)
                .map_err(|e| self.err(format!("column `{name}` cannot be read as text: {e}")))?;
            out.extend(
                text.as_string::<i32>()
                    .iter()
                    .map(|v| v.map(str::to_string)),
            );
        }
        Ok(out)
    }

    /// Each batch's array of column `idx` (for tables, which format every type).
    pub(crate) fn column_arrays(&self, idx: usize) -> Result<Vec<ArrayRef>, DashboardError> {
        self.arrays(idx)
    }
}

/// The distinct non-null values of the first column of a variable query's result, in
/// result order, as the variable's choices. Values that could not be sent back (control
/// characters, too long) are left out.
pub fn variable_choices(
    schema: &SchemaRef,
    batches: &[RecordBatch],
) -> Result<Vec<String>, DashboardError> {
    if schema.fields().is_empty() {
        return Err(DashboardError::Request(
            "a variable query must return one column; it returned none".into(),
        ));
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    for batch in batches {
        let column = batch.columns().first().ok_or_else(|| {
            DashboardError::Request("a variable query's result batch has no column".into())
        })?;
        let text = cast(column, &DataType::Utf8).map_err(|e| {
            DashboardError::Request(format!(
                "a variable query's column cannot be read as text: {e}"
            ))
        })?;
        for value in text.as_string::<i32>().iter().flatten() {
            if crate::sql::check_value("", value).is_ok() && seen.insert(value.to_string()) {
                out.push(value.to_string());
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Float32Array, Int64Array, StringArray, TimestampMicrosecondArray};
    use arrow::datatypes::{Field, Schema};
    use std::sync::Arc;

    #[test]
    fn reads_typed_columns() {
        let schema = Arc::new(Schema::new(vec![
            Field::new(
                "Time",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
            Field::new("n", DataType::Int64, true),
            Field::new("f", DataType::Float32, true),
            Field::new("s", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(
                    TimestampMicrosecondArray::from(vec![Some(1_500_000), None])
                        .with_timezone("UTC"),
                ),
                Arc::new(Int64Array::from(vec![Some(3), None])),
                Arc::new(Float32Array::from(vec![f32::NAN, 1.5])),
                Arc::new(StringArray::from(vec![Some("a"), None])),
            ],
        )
        .unwrap();
        let panel = crate::Dashboard::from_toml(
            "d",
            "title='t'\n[[panels]]\nid='p'\ntitle='p'\nkind='table'\nsql='x'",
        )
        .unwrap()
        .panels
        .remove(0);
        let batches = [batch.clone(), batch];
        let frame = Frame::new(&panel, &schema, &batches);
        assert_eq!(frame.find("time"), Some(0));
        assert_eq!(
            frame.times(0).unwrap(),
            vec![Some(1500), None, Some(1500), None]
        );
        assert_eq!(
            frame.numbers(1).unwrap(),
            vec![Some(3.0), None, Some(3.0), None]
        );
        assert_eq!(frame.numbers(2).unwrap()[..2], [None, Some(1.5)]);
        assert_eq!(frame.texts(3).unwrap()[..2], [Some("a".to_string()), None]);
        let e = frame.numbers(3).unwrap_err().to_string();
        assert_eq!(e, "panel `p`: column `s` must be numeric, not Utf8");
        let e = frame.times(1).unwrap_err().to_string();
        assert!(e.contains("column `n` must be a timestamp"), "{e}");
        let e = frame.require("value", "a number").unwrap_err().to_string();
        assert_eq!(
            e,
            "panel `p`: a table panel needs a column `value` (a number); the result has Time, n, f, s"
        );
    }

    #[test]
    fn variable_choices_are_distinct_in_order() {
        let schema = Arc::new(Schema::new(vec![Field::new("d", DataType::Utf8, true)]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(StringArray::from(vec![
                Some("Nord"),
                None,
                Some("Centro"),
                Some("Nord"),
                Some("bad\u{7}"),
            ]))],
        )
        .unwrap();
        assert_eq!(
            variable_choices(&schema, &[batch]).unwrap(),
            ["Nord", "Centro"]
        );
    }
}
