//! Options, results and small shared helpers of the decoders.

use crate::error::{Error, Result};
use crate::phone::Pseudonymiser;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use serde::Serialize;
use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

/// How many row errors a decode keeps (the rest are only counted).
pub(crate) const MAX_ROW_ERRORS: usize = 100;

/// Timestamp precision of line protocol / epoch numbers, as in InfluxDB's `precision` parameter.
///
/// It applies to the text formats: line protocol timestamps, epoch numbers in the `time` key
/// of JSON and NDJSON (the HTTP API passes its `precision` query parameter, e.g. `ms`, the same
/// way for every format) and integer time columns of CSV files. Typed formats (Arrow IPC,
/// Parquet) follow [`crate::normalize_batch`]: an `Int64` time column is epoch microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub enum Precision {
    /// Nanoseconds (`ns`, `n`): the line protocol default.
    #[default]
    Nanosecond,
    /// Microseconds (`us`, `u`).
    Microsecond,
    /// Milliseconds (`ms`).
    Millisecond,
    /// Seconds (`s`).
    Second,
}

impl Precision {
    /// The canonical short name (`ns`, `us`, `ms`, `s`).
    pub fn as_str(self) -> &'static str {
        match self {
            Precision::Nanosecond => "ns",
            Precision::Microsecond => "us",
            Precision::Millisecond => "ms",
            Precision::Second => "s",
        }
    }

    /// Converts an epoch integer in this precision to microseconds; finer precisions are
    /// floored (toward negative infinity). `None` on overflow.
    pub fn to_micros(self, value: i64) -> Option<i64> {
        match self {
            Precision::Nanosecond => Some(value.div_euclid(1000)),
            Precision::Microsecond => Some(value),
            Precision::Millisecond => value.checked_mul(1000),
            Precision::Second => value.checked_mul(1_000_000),
        }
    }

    /// Converts a fractional epoch number in this precision to microseconds (floored).
    /// `None` when it is not finite or out of range.
    pub fn float_to_micros(self, value: f64) -> Option<i64> {
        let micros = match self {
            Precision::Nanosecond => value / 1000.0,
            Precision::Microsecond => value,
            Precision::Millisecond => value * 1000.0,
            Precision::Second => value * 1_000_000.0,
        }
        .floor();
        // i64::MAX as f64 rounds up to 2^63, hence the strict upper bound.
        (micros.is_finite() && micros >= i64::MIN as f64 && micros < i64::MAX as f64)
            .then_some(micros as i64)
    }
}

impl FromStr for Precision {
    type Err = Error;

    /// Parses `ns`/`n`, `us`/`u`, `ms` or `s`.
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "ns" | "n" => Ok(Precision::Nanosecond),
            "us" | "u" => Ok(Precision::Microsecond),
            "ms" => Ok(Precision::Millisecond),
            "s" => Ok(Precision::Second),
            _ => Err(Error::InvalidPrecision(s.to_string())),
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a payload is decoded.
#[derive(Debug, Clone)]
pub struct DecodeOptions {
    /// When set, every row goes to this table (the line protocol measurement is ignored).
    /// Required for JSON, NDJSON, CSV, Parquet and Arrow IPC.
    pub table: Option<String>,
    /// Unit of epoch timestamps (see [`Precision`]).
    pub precision: Precision,
    /// Time (microseconds since the epoch) assigned to rows without a timestamp.
    pub now_micros: i64,
    /// `false`: any row error rejects the whole payload (all errors found, up to 100, are
    /// still reported); `true`: the good rows are kept and the bad ones reported.
    pub accept_partial: bool,
    /// Turns device ids into pseudonyms; required by [`crate::PayloadFormat::PhoneLocations`]
    /// (raw device ids are never stored), unused by the other formats.
    pub pseudonymiser: Option<Arc<Pseudonymiser>>,
}

impl Default for DecodeOptions {
    /// No table, nanosecond precision, the current time as `now_micros`, all-or-nothing,
    /// no pseudonymiser.
    fn default() -> Self {
        DecodeOptions {
            table: None,
            precision: Precision::Nanosecond,
            now_micros: chrono::Utc::now().timestamp_micros(),
            accept_partial: false,
            pseudonymiser: None,
        }
    }
}

/// Existing schema of a table, so decoders coerce to it and report conflicts per row.
pub trait SchemaLookup {
    /// The current schema of `table`, or `None` when the table does not exist yet.
    fn schema(&self, table: &str) -> Option<SchemaRef>;
}

/// No table exists.
impl SchemaLookup for () {
    fn schema(&self, _table: &str) -> Option<SchemaRef> {
        None
    }
}

/// Schemas by table name.
impl SchemaLookup for HashMap<String, SchemaRef> {
    fn schema(&self, table: &str) -> Option<SchemaRef> {
        self.get(table).cloned()
    }
}

/// A rejected row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RowError {
    /// 1-based line; for a JSON array the element index + 1, for NDJSON the line.
    pub line: usize,
    /// 1-based byte column in the line where the problem starts, 0 when unknown.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

impl RowError {
    pub(crate) fn new(line: usize, column: usize, message: impl Into<String>) -> Self {
        RowError {
            line,
            column,
            message: message.into(),
        }
    }
}

impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.column > 0 {
            write!(
                f,
                "line {}, column {}: {}",
                self.line, self.column, self.message
            )
        } else {
            write!(f, "line {}: {}", self.line, self.message)
        }
    }
}

/// The rows of one table, following the civiclake conventions.
#[derive(Debug, Clone)]
pub struct TableBatch {
    /// The table.
    pub table: String,
    /// The rows: `time` first, then tags sorted by name, then fields sorted by name.
    pub batch: RecordBatch,
}

/// The result of decoding a payload.
#[derive(Debug, Clone, Default)]
pub struct Decoded {
    /// One batch per table, in order of first appearance; empty when rows were rejected and
    /// partial writes are not accepted.
    pub batches: Vec<TableBatch>,
    /// The rejected rows (at most 100).
    pub rejected: Vec<RowError>,
    /// Rows accepted (the rows in `batches`).
    pub rows: usize,
    /// Rows rejected in total (may exceed `rejected.len()`).
    pub rejected_rows: usize,
}

/// Collects row errors, keeping the first [`MAX_ROW_ERRORS`].
#[derive(Debug, Default)]
pub(crate) struct Rejections {
    pub(crate) errors: Vec<RowError>,
    pub(crate) count: usize,
}

impl Rejections {
    pub(crate) fn push(&mut self, error: RowError) {
        self.count += 1;
        if self.errors.len() < MAX_ROW_ERRORS {
            self.errors.push(error);
        }
    }
}

/// Checks that `body` is UTF-8, reporting the line and column of the first bad byte.
pub(crate) fn check_utf8(body: &[u8]) -> Result<&str> {
    std::str::from_utf8(body).map_err(|e| {
        let valid = &body[..e.valid_up_to()];
        let line = valid.iter().filter(|&&b| b == b'\n').count() + 1;
        let line_start = valid.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
        Error::InvalidUtf8 {
            line,
            column: valid.len() - line_start + 1,
        }
    })
}

/// The table named in the options, validated; `Err` when it is missing or invalid.
pub(crate) fn required_table<'o>(opts: &'o DecodeOptions, format: &'static str) -> Result<&'o str> {
    let table = opts
        .table
        .as_deref()
        .ok_or(Error::MissingTable { format })?;
    civiclake_core::validate_table_name(table).map_err(Error::InvalidTable)?;
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precision_parses_and_converts() {
        assert_eq!("n".parse::<Precision>().unwrap(), Precision::Nanosecond);
        assert_eq!("ns".parse::<Precision>().unwrap(), Precision::Nanosecond);
        assert_eq!("u".parse::<Precision>().unwrap(), Precision::Microsecond);
        assert_eq!("ms".parse::<Precision>().unwrap(), Precision::Millisecond);
        assert_eq!("s".parse::<Precision>().unwrap(), Precision::Second);
        assert!("h".parse::<Precision>().is_err());
        assert_eq!(Precision::default(), Precision::Nanosecond);
        assert_eq!(Precision::Nanosecond.to_micros(1_999), Some(1));
        assert_eq!(Precision::Nanosecond.to_micros(-1), Some(-1));
        assert_eq!(Precision::Second.to_micros(2), Some(2_000_000));
        assert_eq!(Precision::Second.to_micros(i64::MAX), None);
        assert_eq!(Precision::Millisecond.float_to_micros(1.5), Some(1500));
        assert_eq!(Precision::Second.float_to_micros(f64::NAN), None);
    }

    #[test]
    fn utf8_errors_have_positions() {
        let err = check_utf8(b"ok\nab\xffc").unwrap_err();
        assert!(
            matches!(err, Error::InvalidUtf8 { line: 2, column: 3 }),
            "{err}"
        );
    }
}
