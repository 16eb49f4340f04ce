//! Row predicates: a small boolean expression over a table's columns that can be stored (it
//! is serde-serialisable, so it travels in the WAL) and evaluated on Arrow batches.
//!
//! Deletes by predicate (retention, GDPR) are expressed with [`RowPredicate`]. Evaluation
//! follows SQL: a comparison with a NULL value is NULL, `AND`/`OR` are three-valued, and a
//! row is *matched* only where the predicate is TRUE — a row where it is NULL is not. A
//! column missing from a batch reads as NULL (older rows lack columns added later).
//!
//! [`RowPredicate::bind`] checks a predicate against a table schema and normalises its
//! literals (a string compared with `time` becomes a timestamp, an integer compared with a
//! float column a float), so evaluation never guesses.

use crate::schema::{TIME_COLUMN, describe_type};
use arrow::array::{
    Array, ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, Scalar, StringArray,
    TimestampMicrosecondArray,
};
use arrow::compute::kernels::{boolean, cmp};
use arrow::compute::{cast, prep_null_mask_filter};
use arrow::datatypes::{DataType, Schema};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

/// A constant in a predicate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Literal {
    /// A 64-bit integer.
    Int(i64),
    /// A 64-bit float.
    Float(f64),
    /// A string (for tags and string fields; for `time` before [`RowPredicate::bind`]).
    String(String),
    /// A boolean.
    Bool(bool),
    /// A UTC timestamp in microseconds since the epoch.
    Timestamp(i64),
}

impl Literal {
    /// A timestamp from text: RFC 3339 (`2026-01-01T00:00:00Z`, any offset), a date-time
    /// without offset (UTC) or a date (midnight UTC).
    pub fn parse_timestamp(text: &str) -> Result<Literal, PredicateError> {
        parse_timestamp(text).map(Literal::Timestamp)
    }

    /// A one-element array of the literal's natural type.
    fn to_array(&self) -> ArrayRef {
        match self {
            Literal::Int(v) => Arc::new(Int64Array::from(vec![*v])),
            Literal::Float(v) => Arc::new(Float64Array::from(vec![*v])),
            Literal::String(v) => Arc::new(StringArray::from(vec![v.as_str()])),
            Literal::Bool(v) => Arc::new(BooleanArray::from(vec![*v])),
            Literal::Timestamp(v) => {
                Arc::new(TimestampMicrosecondArray::from(vec![*v]).with_timezone("UTC"))
            }
        }
    }
}

impl From<i64> for Literal {
    fn from(v: i64) -> Self {
        Literal::Int(v)
    }
}

impl From<f64> for Literal {
    fn from(v: f64) -> Self {
        Literal::Float(v)
    }
}

impl From<bool> for Literal {
    fn from(v: bool) -> Self {
        Literal::Bool(v)
    }
}

impl From<&str> for Literal {
    fn from(v: &str) -> Self {
        Literal::String(v.to_string())
    }
}

impl From<String> for Literal {
    fn from(v: String) -> Self {
        Literal::String(v)
    }
}

impl fmt::Display for Literal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Literal::Int(v) => write!(f, "{v}"),
            Literal::Float(v) => write!(f, "{v:?}"),
            Literal::String(v) => write!(f, "'{}'", v.replace('\'', "''")),
            Literal::Bool(v) => write!(f, "{v}"),
            Literal::Timestamp(v) => match chrono::DateTime::from_timestamp_micros(*v) {
                Some(t) => write!(f, "TIMESTAMP '{}'", t.format("%Y-%m-%dT%H:%M:%S%.6fZ")),
                None => write!(f, "TIMESTAMP {v}"),
            },
        }
    }
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CompareOp {
    /// `=`
    Eq,
    /// `!=` / `<>`
    NotEq,
    /// `<`
    Lt,
    /// `<=`
    LtEq,
    /// `>`
    Gt,
    /// `>=`
    GtEq,
}

impl CompareOp {
    /// The operator with its operands swapped (`a < b` ⇔ `b > a`).
    pub fn swap(self) -> Self {
        match self {
            CompareOp::Lt => CompareOp::Gt,
            CompareOp::LtEq => CompareOp::GtEq,
            CompareOp::Gt => CompareOp::Lt,
            CompareOp::GtEq => CompareOp::LtEq,
            other => other,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            CompareOp::Eq => "=",
            CompareOp::NotEq => "!=",
            CompareOp::Lt => "<",
            CompareOp::LtEq => "<=",
            CompareOp::Gt => ">",
            CompareOp::GtEq => ">=",
        }
    }
}

/// A boolean expression over the columns of a row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RowPredicate {
    /// `column op value`.
    Compare {
        /// Column name.
        column: String,
        /// Operator.
        op: CompareOp,
        /// Right-hand constant.
        value: Literal,
    },
    /// `column IN (values...)`.
    InList {
        /// Column name.
        column: String,
        /// Constants.
        values: Vec<Literal>,
    },
    /// `column IS NULL`.
    IsNull {
        /// Column name.
        column: String,
    },
    /// `column IS NOT NULL`.
    IsNotNull {
        /// Column name.
        column: String,
    },
    /// Every operand (three-valued `AND`).
    And(Vec<RowPredicate>),
    /// Any operand (three-valued `OR`).
    Or(Vec<RowPredicate>),
    /// Negation (`NOT NULL` is NULL).
    Not(Box<RowPredicate>),
}

/// Why a predicate does not fit a table or could not be evaluated.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PredicateError {
    /// The predicate names a column the table does not have.
    #[error("unknown column '{0}'")]
    UnknownColumn(String),
    /// A constant cannot be compared with the column's type.
    #[error("column '{column}' is {column_type} and cannot be compared with {literal}")]
    TypeMismatch {
        /// Column name.
        column: String,
        /// The column's type, as users know it (`float`, `tag`, ...).
        column_type: &'static str,
        /// The constant, as written.
        literal: String,
    },
    /// A string compared with a timestamp column is not a timestamp.
    #[error("'{0}' is not a timestamp (use RFC 3339, e.g. 2026-01-01T00:00:00Z)")]
    InvalidTimestamp(String),
    /// A float constant that is NaN or infinite (it could not be stored).
    #[error("{0} is not a finite number")]
    NotFinite(String),
    /// An `AND` or `OR` without operands.
    #[error("empty {0}: give at least one condition")]
    Empty(&'static str),
    /// An Arrow kernel failed while evaluating.
    #[error("evaluating the predicate failed: {0}")]
    Evaluation(String),
}

impl From<arrow::error::ArrowError> for PredicateError {
    fn from(e: arrow::error::ArrowError) -> Self {
        PredicateError::Evaluation(e.to_string())
    }
}

fn value_type(data_type: &DataType) -> &DataType {
    match data_type {
        DataType::Dictionary(_, v) => v.as_ref(),
        other => other,
    }
}

/// Microseconds of an RFC 3339 timestamp (`2026-01-01T00:00:00Z`, any offset), or of a
/// date-time without offset (`2026-01-01 00:00:00`, UTC) or a date (`2026-01-01`, midnight UTC).
fn parse_timestamp(text: &str) -> Result<i64, PredicateError> {
    let t = text.trim();
    let micros = if let Ok(d) = chrono::DateTime::parse_from_rfc3339(t) {
        Some(d.timestamp_micros())
    } else if let Ok(d) = chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S%.f")
        .or_else(|_| chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S%.f"))
    {
        Some(d.and_utc().timestamp_micros())
    } else if let Ok(d) = chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        d.and_hms_opt(0, 0, 0)
            .map(|d| d.and_utc().timestamp_micros())
    } else {
        None
    };
    micros.ok_or_else(|| PredicateError::InvalidTimestamp(text.to_string()))
}

/// The literal converted to what a column of `data_type` compares with, or why it cannot be.
fn coerce(
    column: &str,
    data_type: &DataType,
    literal: &Literal,
) -> Result<Literal, PredicateError> {
    let mismatch = || PredicateError::TypeMismatch {
        column: column.to_string(),
        column_type: describe_type(data_type),
        literal: literal.to_string(),
    };
    if let Literal::Float(v) = literal
        && !v.is_finite()
    {
        return Err(PredicateError::NotFinite(v.to_string()));
    }
    let value = value_type(data_type);
    Ok(match (value, literal) {
        (DataType::Timestamp(_, _), Literal::Timestamp(v)) => Literal::Timestamp(*v),
        (DataType::Timestamp(_, _), Literal::String(s)) => Literal::Timestamp(parse_timestamp(s)?),
        (DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View, Literal::String(s)) => {
            Literal::String(s.clone())
        }
        (DataType::Int64, Literal::Int(v)) => Literal::Int(*v),
        (DataType::Int64, Literal::Float(v)) => Literal::Float(*v),
        (DataType::Float64, Literal::Float(v)) => Literal::Float(*v),
        (DataType::Float64, Literal::Int(v)) => Literal::Float(*v as f64),
        (DataType::Boolean, Literal::Bool(v)) => Literal::Bool(*v),
        _ => return Err(mismatch()),
    })
}

impl RowPredicate {
    /// `column op value`.
    pub fn compare(column: impl Into<String>, op: CompareOp, value: impl Into<Literal>) -> Self {
        RowPredicate::Compare {
            column: column.into(),
            op,
            value: value.into(),
        }
    }

    /// `column = value`.
    pub fn eq(column: impl Into<String>, value: impl Into<Literal>) -> Self {
        Self::compare(column, CompareOp::Eq, value)
    }

    /// `time < micros` (UTC, µs): the usual retention predicate.
    pub fn time_before(micros: i64) -> Self {
        Self::compare(TIME_COLUMN, CompareOp::Lt, Literal::Timestamp(micros))
    }

    /// `column IN (values...)`.
    pub fn in_list(column: impl Into<String>, values: Vec<Literal>) -> Self {
        RowPredicate::InList {
            column: column.into(),
            values,
        }
    }

    /// `column IS NULL`.
    pub fn is_null(column: impl Into<String>) -> Self {
        RowPredicate::IsNull {
            column: column.into(),
        }
    }

    /// `column IS NOT NULL`.
    pub fn is_not_null(column: impl Into<String>) -> Self {
        RowPredicate::IsNotNull {
            column: column.into(),
        }
    }

    /// `self AND other` (nested `AND`s are flattened).
    pub fn and(self, other: RowPredicate) -> Self {
        let mut items = match self {
            RowPredicate::And(items) => items,
            p => vec![p],
        };
        match other {
            RowPredicate::And(more) => items.extend(more),
            p => items.push(p),
        }
        RowPredicate::And(items)
    }

    /// `self OR other` (nested `OR`s are flattened).
    pub fn or(self, other: RowPredicate) -> Self {
        let mut items = match self {
            RowPredicate::Or(items) => items,
            p => vec![p],
        };
        match other {
            RowPredicate::Or(more) => items.extend(more),
            p => items.push(p),
        }
        RowPredicate::Or(items)
    }

    /// `NOT self`.
    #[allow(clippy::should_implement_trait)]
    pub fn not(self) -> Self {
        RowPredicate::Not(Box::new(self))
    }

    /// The columns the predicate reads.
    pub fn columns(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        self.collect_columns(&mut out);
        out
    }

    fn collect_columns(&self, out: &mut BTreeSet<String>) {
        match self {
            RowPredicate::Compare { column, .. }
            | RowPredicate::InList { column, .. }
            | RowPredicate::IsNull { column }
            | RowPredicate::IsNotNull { column } => {
                out.insert(column.clone());
            }
            RowPredicate::And(items) | RowPredicate::Or(items) => {
                items.iter().for_each(|p| p.collect_columns(out));
            }
            RowPredicate::Not(p) => p.collect_columns(out),
        }
    }

    /// Checks the predicate against `schema` (every column exists, every constant fits its
    /// column) and returns it with its constants normalised to the columns' types.
    pub fn bind(&self, schema: &Schema) -> Result<RowPredicate, PredicateError> {
        let field = |column: &str| {
            schema
                .field_with_name(column)
                .map_err(|_| PredicateError::UnknownColumn(column.to_string()))
        };
        Ok(match self {
            RowPredicate::Compare { column, op, value } => RowPredicate::Compare {
                column: column.clone(),
                op: *op,
                value: coerce(column, field(column)?.data_type(), value)?,
            },
            RowPredicate::InList { column, values } => {
                let data_type = field(column)?.data_type();
                RowPredicate::InList {
                    column: column.clone(),
                    values: values
                        .iter()
                        .map(|v| coerce(column, data_type, v))
                        .collect::<Result<_, _>>()?,
                }
            }
            RowPredicate::IsNull { column } => {
                field(column)?;
                self.clone()
            }
            RowPredicate::IsNotNull { column } => {
                field(column)?;
                self.clone()
            }
            RowPredicate::And(items) if items.is_empty() => {
                return Err(PredicateError::Empty("AND"));
            }
            RowPredicate::Or(items) if items.is_empty() => return Err(PredicateError::Empty("OR")),
            RowPredicate::And(items) => RowPredicate::And(
                items
                    .iter()
                    .map(|p| p.bind(schema))
                    .collect::<Result<_, _>>()?,
            ),
            RowPredicate::Or(items) => RowPredicate::Or(
                items
                    .iter()
                    .map(|p| p.bind(schema))
                    .collect::<Result<_, _>>()?,
            ),
            RowPredicate::Not(p) => RowPredicate::Not(Box::new(p.bind(schema)?)),
        })
    }

    /// The predicate's value on each row of `batch`, with SQL's three-valued logic (NULL
    /// where unknown). A column missing from the batch is NULL.
    pub fn evaluate(&self, batch: &RecordBatch) -> Result<BooleanArray, PredicateError> {
        let rows = batch.num_rows();
        let nulls = || BooleanArray::new_null(rows);
        Ok(match self {
            RowPredicate::Compare { column, op, value } => match batch.column_by_name(column) {
                Some(c) => compare(column, c, *op, value)?,
                None => nulls(),
            },
            RowPredicate::InList { column, values } => match batch.column_by_name(column) {
                Some(c) => {
                    let mut acc = BooleanArray::from(vec![false; rows]);
                    for v in values {
                        acc = boolean::or_kleene(&acc, &compare(column, c, CompareOp::Eq, v)?)?;
                    }
                    acc
                }
                None if values.is_empty() => BooleanArray::from(vec![false; rows]),
                None => nulls(),
            },
            RowPredicate::IsNull { column } => match batch.column_by_name(column) {
                Some(c) => arrow::compute::is_null(c.as_ref())?,
                None => BooleanArray::from(vec![true; rows]),
            },
            RowPredicate::IsNotNull { column } => match batch.column_by_name(column) {
                Some(c) => arrow::compute::is_not_null(c.as_ref())?,
                None => BooleanArray::from(vec![false; rows]),
            },
            RowPredicate::And(items) => {
                let mut acc = BooleanArray::from(vec![true; rows]);
                for p in items {
                    acc = boolean::and_kleene(&acc, &p.evaluate(batch)?)?;
                }
                acc
            }
            RowPredicate::Or(items) => {
                let mut acc = BooleanArray::from(vec![false; rows]);
                for p in items {
                    acc = boolean::or_kleene(&acc, &p.evaluate(batch)?)?;
                }
                acc
            }
            RowPredicate::Not(p) => boolean::not(&p.evaluate(batch)?)?,
        })
    }

    /// Which rows of `batch` the predicate matches: TRUE only (NULL does not match).
    pub fn matches(&self, batch: &RecordBatch) -> Result<BooleanArray, PredicateError> {
        let values = self.evaluate(batch)?;
        Ok(if values.null_count() > 0 {
            prep_null_mask_filter(&values)
        } else {
            values
        })
    }

    /// Whether the predicate may match a row whose `time` lies in `[min, max]` (µs): a
    /// conservative test from the `time` comparisons, used to skip files.
    pub fn may_match_time_range(&self, min: i64, max: i64) -> bool {
        match self {
            RowPredicate::Compare {
                column,
                op,
                value: Literal::Timestamp(v),
            } if column == TIME_COLUMN => match op {
                CompareOp::Eq => min <= *v && *v <= max,
                CompareOp::NotEq => !(min == *v && max == *v),
                CompareOp::Lt => min < *v,
                CompareOp::LtEq => min <= *v,
                CompareOp::Gt => max > *v,
                CompareOp::GtEq => max >= *v,
            },
            RowPredicate::InList { column, values } if column == TIME_COLUMN => {
                values.iter().any(|v| match v {
                    Literal::Timestamp(t) => min <= *t && *t <= max,
                    _ => true,
                })
            }
            RowPredicate::And(items) => items.iter().all(|p| p.may_match_time_range(min, max)),
            RowPredicate::Or(items) => items.iter().any(|p| p.may_match_time_range(min, max)),
            _ => true,
        }
    }
}

fn compare(
    name: &str,
    column: &ArrayRef,
    op: CompareOp,
    literal: &Literal,
) -> Result<BooleanArray, PredicateError> {
    let data_type = column.data_type();
    let literal = coerce(name, data_type, literal)?;
    let (left, right_type) = match (value_type(data_type), &literal) {
        // An integer column compared with a fractional constant: compare as floats.
        (DataType::Int64, Literal::Float(_)) => {
            (cast(column, &DataType::Float64)?, DataType::Float64)
        }
        (value, _) => (column.clone(), value.clone()),
    };
    let right = cast(&literal.to_array(), &right_type)?;
    let right = Scalar::new(right);
    Ok(match op {
        CompareOp::Eq => cmp::eq(&left, &right)?,
        CompareOp::NotEq => cmp::neq(&left, &right)?,
        CompareOp::Lt => cmp::lt(&left, &right)?,
        CompareOp::LtEq => cmp::lt_eq(&left, &right)?,
        CompareOp::Gt => cmp::gt(&left, &right)?,
        CompareOp::GtEq => cmp::gt_eq(&left, &right)?,
    })
}

fn write_ident(f: &mut fmt::Formatter<'_>, name: &str) -> fmt::Result {
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain {
        f.write_str(name)
    } else {
        write!(f, "\"{}\"", name.replace('"', "\"\""))
    }
}

impl fmt::Display for RowPredicate {
    /// SQL text of the predicate (for logs and the Delta commit's description).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let join = |f: &mut fmt::Formatter<'_>, items: &[RowPredicate], sep: &str| {
            f.write_str("(")?;
            for (i, p) in items.iter().enumerate() {
                if i > 0 {
                    f.write_str(sep)?;
                }
                write!(f, "{p}")?;
            }
            f.write_str(")")
        };
        match self {
            RowPredicate::Compare { column, op, value } => {
                write_ident(f, column)?;
                write!(f, " {} {value}", op.as_str())
            }
            RowPredicate::InList { column, values } => {
                write_ident(f, column)?;
                f.write_str(" IN (")?;
                for (i, v) in values.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{v}")?;
                }
                f.write_str(")")
            }
            RowPredicate::IsNull { column } => {
                write_ident(f, column)?;
                f.write_str(" IS NULL")
            }
            RowPredicate::IsNotNull { column } => {
                write_ident(f, column)?;
                f.write_str(" IS NOT NULL")
            }
            RowPredicate::And(items) => join(f, items, " AND "),
            RowPredicate::Or(items) => join(f, items, " OR "),
            RowPredicate::Not(p) => write!(f, "NOT ({p})"),
        }
    }
}

#[cfg(test)]
mod tests;
