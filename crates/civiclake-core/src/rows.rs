//! Batches built row by row, in the lake's conventions (a `time` column in µs UTC, tags as
//! dictionary strings, fields): what a module writes with `Platform::write_rows`.

use crate::{ColumnRole, role_of};
use arrow::array::{
    ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray,
    StringDictionaryBuilder, TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Int32Type, SchemaRef, TimeUnit};
use std::sync::Arc;

/// A value of a row, in the order of the table's columns.
#[derive(Debug, Clone, Copy)]
pub enum V<'a> {
    /// The time, µs UTC.
    T(i64),
    /// A tag or a string field.
    S(Option<&'a str>),
    I(Option<i64>),
    F(Option<f64>),
    B(Option<bool>),
    /// A timestamp field, µs UTC.
    Ts(Option<i64>),
}

enum Col {
    Time(Vec<i64>),
    Tag(Box<StringDictionaryBuilder<Int32Type>>),
    Str(Vec<Option<String>>),
    I64(Vec<Option<i64>>),
    F64(Vec<Option<f64>>),
    Bool(Vec<Option<bool>>),
    Ts(Vec<Option<i64>>, Option<Arc<str>>),
}

/// Builds a batch of a table row by row.
pub struct Rows {
    schema: SchemaRef,
    cols: Vec<Col>,
    len: usize,
}

impl std::fmt::Debug for Rows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rows")
            .field("schema", &self.schema)
            .field("len", &self.len)
            .finish()
    }
}

impl Rows {
    /// Rows of a table of `schema` (its columns' roles and types decide the arrays).
    pub fn new(schema: SchemaRef) -> Self {
        let cols = schema
            .fields()
            .iter()
            .map(|field| match (role_of(field), field.data_type()) {
                (ColumnRole::Time, _) => Col::Time(Vec::new()),
                (ColumnRole::Tag, _) => Col::Tag(Box::default()),
                (_, DataType::Int64) => Col::I64(Vec::new()),
                (_, DataType::Float64) => Col::F64(Vec::new()),
                (_, DataType::Boolean) => Col::Bool(Vec::new()),
                (_, DataType::Timestamp(TimeUnit::Microsecond, tz)) => {
                    Col::Ts(Vec::new(), tz.clone())
                }
                _ => Col::Str(Vec::new()),
            })
            .collect();
        Self {
            schema,
            cols,
            len: 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds a row; a value of the wrong kind for its column is stored as null (a bug the
    /// unit tests catch, never a panic).
    pub fn push(&mut self, row: &[V<'_>]) {
        for (col, v) in self.cols.iter_mut().zip(row.iter().copied()) {
            match (col, v) {
                (Col::Time(c), V::T(t)) => c.push(t),
                (Col::Time(c), _) => c.push(0),
                (Col::Tag(c), V::S(s)) => c.append_option(s),
                (Col::Tag(c), _) => c.append_null(),
                (Col::Str(c), V::S(s)) => c.push(s.map(str::to_string)),
                (Col::Str(c), _) => c.push(None),
                (Col::I64(c), V::I(i)) => c.push(i),
                (Col::I64(c), _) => c.push(None),
                (Col::F64(c), V::F(x)) => c.push(x),
                (Col::F64(c), _) => c.push(None),
                (Col::Bool(c), V::B(b)) => c.push(b),
                (Col::Bool(c), _) => c.push(None),
                (Col::Ts(c, _), V::Ts(t)) => c.push(t),
                (Col::Ts(c, _), _) => c.push(None),
            }
        }
        self.len += 1;
    }

    /// The rows as a batch (and an empty builder for more).
    pub fn finish(&mut self) -> Result<RecordBatch, String> {
        let columns: Vec<ArrayRef> = self
            .cols
            .iter_mut()
            .map(|c| -> ArrayRef {
                match c {
                    Col::Time(v) => Arc::new(
                        TimestampMicrosecondArray::from(std::mem::take(v)).with_timezone("UTC"),
                    ),
                    Col::Tag(b) => Arc::new(b.finish()),
                    Col::Str(v) => Arc::new(StringArray::from(std::mem::take(v))),
                    Col::I64(v) => Arc::new(Int64Array::from(std::mem::take(v))),
                    Col::F64(v) => Arc::new(Float64Array::from(std::mem::take(v))),
                    Col::Bool(v) => Arc::new(BooleanArray::from(std::mem::take(v))),
                    Col::Ts(v, tz) => Arc::new(
                        TimestampMicrosecondArray::from(std::mem::take(v))
                            .with_timezone_opt(tz.clone()),
                    ),
                }
            })
            .collect();
        self.len = 0;
        RecordBatch::try_new(self.schema.clone(), columns).map_err(|e| e.to_string())
    }
}
