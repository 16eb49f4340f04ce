//! Accumulates decoded rows of one table into Arrow arrays following the civiclake
//! conventions, checking column types against the table's schema and earlier rows.

use crate::error::{Error, Result};
use crate::types::{Decoded, Rejections, RowError, TableBatch};
use arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, Int64Builder, StringBuilder, StringDictionaryBuilder,
    TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Int32Type, Schema, SchemaRef};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use civiclake_core::{TIME_COLUMN, describe_type, field_column, tag_column, time_column};
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

/// The storage type of a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Tag,
    Float,
    Int,
    Bool,
    Str,
}

impl Kind {
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Kind::Tag => "tag",
            Kind::Float => "float",
            Kind::Int => "integer",
            Kind::Bool => "boolean",
            Kind::Str => "string",
        }
    }

    /// The kind of an existing column type, `None` when a row cannot be stored in it.
    pub(crate) fn of(data_type: &DataType) -> Option<Kind> {
        match data_type {
            DataType::Dictionary(_, value) if is_string_type(value) => Some(Kind::Tag),
            DataType::Float64 => Some(Kind::Float),
            DataType::Int64 => Some(Kind::Int),
            DataType::Boolean => Some(Kind::Bool),
            DataType::Utf8 => Some(Kind::Str),
            _ => None,
        }
    }
}

pub(crate) fn is_string_type(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    )
}

/// One value of a row.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value<'a> {
    /// A line protocol tag.
    Tag(Cow<'a, str>),
    /// A JSON string: a tag, unless the column is an existing string field.
    Text(Cow<'a, str>),
    /// A line protocol float.
    Float(f64),
    /// A line protocol integer (also unsigned): fits integer and float columns.
    Int(i64),
    /// A JSON number: a float column unless the column is integer and the number integral.
    Number(f64, Option<i64>),
    /// A boolean.
    Bool(bool),
    /// A line protocol string field.
    Str(Cow<'a, str>),
}

impl Value<'_> {
    fn describe(&self) -> &'static str {
        match self {
            Value::Tag(_) => "tag",
            Value::Text(_) | Value::Str(_) => "string",
            Value::Float(_) | Value::Number(_, None) => "float",
            Value::Int(_) | Value::Number(_, Some(_)) => "integer",
            Value::Bool(_) => "boolean",
        }
    }

    /// The kind of a column this value creates.
    fn natural_kind(&self) -> Kind {
        match self {
            Value::Tag(_) | Value::Text(_) => Kind::Tag,
            Value::Float(_) | Value::Number(..) => Kind::Float,
            Value::Int(_) => Kind::Int,
            Value::Bool(_) => Kind::Bool,
            Value::Str(_) => Kind::Str,
        }
    }

    fn fits(&self, kind: Kind) -> bool {
        matches!(
            (kind, self),
            (Kind::Tag, Value::Tag(_) | Value::Text(_))
                | (Kind::Str, Value::Str(_) | Value::Text(_))
                | (
                    Kind::Float,
                    Value::Float(_) | Value::Int(_) | Value::Number(..)
                )
                | (Kind::Int, Value::Int(_) | Value::Number(_, Some(_)))
                | (Kind::Bool, Value::Bool(_))
        )
    }
}

/// A key/value pair of a row, with the 1-based byte column where it starts (0 if unknown).
#[derive(Debug, Clone)]
pub(crate) struct Entry<'a> {
    pub(crate) key: Cow<'a, str>,
    pub(crate) value: Value<'a>,
    pub(crate) pos: usize,
}

/// How error messages name things.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Dialect {
    /// What a row number counts: `line` or `element`.
    pub(crate) unit: &'static str,
    /// What a row is: `line` or `object`.
    pub(crate) subject: &'static str,
    /// Line protocol: entries are called `tag`/`field`, else `key`.
    pub(crate) line_protocol: bool,
}

impl Dialect {
    pub(crate) const LINE_PROTOCOL: Dialect = Dialect {
        unit: "line",
        subject: "line",
        line_protocol: true,
    };
    pub(crate) const JSON: Dialect = Dialect {
        unit: "element",
        subject: "object",
        line_protocol: false,
    };
    pub(crate) const NDJSON: Dialect = Dialect {
        unit: "line",
        subject: "object",
        line_protocol: false,
    };

    pub(crate) fn noun(&self, value: &Value<'_>) -> &'static str {
        match (self.line_protocol, value) {
            (true, Value::Tag(_)) => "tag",
            (true, _) => "field",
            (false, _) => "key",
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Origin {
    /// The column exists in the table.
    Table,
    /// The column was introduced by this row number of the payload.
    Row(usize),
}

enum Data {
    Tag(StringDictionaryBuilder<Int32Type>),
    Float(Float64Builder),
    Int(Int64Builder),
    Bool(BooleanBuilder),
    Str(StringBuilder),
}

impl std::fmt::Debug for Data {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self {
            Data::Tag(_) => Kind::Tag,
            Data::Float(_) => Kind::Float,
            Data::Int(_) => Kind::Int,
            Data::Bool(_) => Kind::Bool,
            Data::Str(_) => Kind::Str,
        };
        write!(f, "Data({})", kind.describe())
    }
}

impl Data {
    fn new(kind: Kind) -> Data {
        match kind {
            Kind::Tag => Data::Tag(StringDictionaryBuilder::new()),
            Kind::Float => Data::Float(Float64Builder::new()),
            Kind::Int => Data::Int(Int64Builder::new()),
            Kind::Bool => Data::Bool(BooleanBuilder::new()),
            Kind::Str => Data::Str(StringBuilder::new()),
        }
    }

    fn append_nulls(&mut self, n: usize) {
        match self {
            Data::Tag(b) => b.append_nulls(n),
            Data::Float(b) => b.append_nulls(n),
            Data::Int(b) => b.append_nulls(n),
            Data::Bool(b) => b.append_nulls(n),
            Data::Str(b) => b.append_nulls(n),
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Data::Tag(b) => Arc::new(b.finish()),
            Data::Float(b) => Arc::new(b.finish()),
            Data::Int(b) => Arc::new(b.finish()),
            Data::Bool(b) => Arc::new(b.finish()),
            Data::Str(b) => Arc::new(b.finish()),
        }
    }
}

#[derive(Debug)]
struct Column {
    name: String,
    kind: Kind,
    origin: Origin,
    data: Data,
    /// Rows covered by `data` (values and nulls); padded lazily.
    len: usize,
    /// Row attempt that last used this column (duplicate detection).
    stamp: u64,
}

#[derive(Debug, Clone, Copy)]
enum Slot {
    Existing(usize),
    New(Kind, Origin),
}

/// The rows of one table decoded so far.
#[derive(Debug)]
pub(crate) struct TableBuilder {
    name: String,
    existing: Option<SchemaRef>,
    times: Vec<i64>,
    columns: Vec<Column>,
    index: HashMap<String, usize>,
    /// Column index of each entry position of the last accepted row.
    hints: Vec<usize>,
    slots: Vec<Slot>,
    stamp: u64,
    fatal: Option<ArrowError>,
}

impl TableBuilder {
    pub(crate) fn new(name: String, existing: Option<SchemaRef>) -> Self {
        TableBuilder {
            name,
            existing,
            times: Vec::new(),
            columns: Vec::new(),
            index: HashMap::new(),
            hints: Vec::new(),
            slots: Vec::new(),
            stamp: 0,
            fatal: None,
        }
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    fn find(&self, position: usize, key: &str) -> Option<usize> {
        if let Some(&hint) = self.hints.get(position)
            && let Some(column) = self.columns.get(hint)
            && column.name == key
        {
            return Some(hint);
        }
        if self.columns.len() <= 8 {
            self.columns.iter().position(|c| c.name == key)
        } else {
            self.index.get(key).copied()
        }
    }

    /// Adds a row, or explains why it does not fit; nothing is stored on error.
    pub(crate) fn push_row(
        &mut self,
        time: i64,
        entries: &[Entry<'_>],
        row: usize,
        dialect: Dialect,
    ) -> Result<(), RowError> {
        self.stamp += 1;
        self.slots.clear();
        for (i, entry) in entries.iter().enumerate() {
            let slot = self.resolve(i, entry, entries, row, dialect)?;
            self.slots.push(slot);
        }
        self.commit(time, entries);
        Ok(())
    }

    fn resolve(
        &mut self,
        i: usize,
        entry: &Entry<'_>,
        entries: &[Entry<'_>],
        row: usize,
        dialect: Dialect,
    ) -> Result<Slot, RowError> {
        let key = entry.key.as_ref();
        let error = |message: String| RowError::new(row, entry.pos, message);
        let duplicate = || {
            error(format!(
                "column '{key}' appears more than once in the {}",
                dialect.subject
            ))
        };
        if let Some(index) = self.find(i, key) {
            let stamp = self.stamp;
            let column = &mut self.columns[index];
            if column.stamp == stamp {
                return Err(duplicate());
            }
            column.stamp = stamp;
            if !entry.value.fits(column.kind) {
                return Err(error(self.conflict(
                    key,
                    &self.columns[index],
                    entry,
                    dialect,
                )));
            }
            return Ok(Slot::Existing(index));
        }
        // A column new to this payload.
        if key == TIME_COLUMN {
            return Err(error(format!(
                "{} 'time' is not allowed: 'time' is the timestamp column",
                dialect.noun(&entry.value)
            )));
        }
        civiclake_core::validate_column_name(key).map_err(error)?;
        let seen_in_row = entries[..i]
            .iter()
            .zip(&self.slots)
            .any(|(e, s)| matches!(s, Slot::New(..)) && e.key == entry.key);
        if seen_in_row {
            return Err(duplicate());
        }
        let existing = self
            .existing
            .as_ref()
            .and_then(|schema| schema.field_with_name(key).ok());
        match existing {
            None => Ok(Slot::New(entry.value.natural_kind(), Origin::Row(row))),
            Some(field) => match Kind::of(field.data_type()) {
                Some(kind) if entry.value.fits(kind) => Ok(Slot::New(kind, Origin::Table)),
                Some(kind) => Err(error(self.table_conflict(
                    key,
                    kind.describe(),
                    entry,
                    dialect,
                ))),
                None => Err(error(self.table_conflict(
                    key,
                    describe_type(field.data_type()),
                    entry,
                    dialect,
                ))),
            },
        }
    }

    fn table_conflict(&self, key: &str, has: &str, entry: &Entry<'_>, dialect: Dialect) -> String {
        format!(
            "column '{key}' is {has} in table '{}' but the {} gives {}",
            self.name,
            dialect.subject,
            entry.value.describe()
        )
    }

    fn conflict(&self, key: &str, column: &Column, entry: &Entry<'_>, dialect: Dialect) -> String {
        let row = match column.origin {
            Origin::Table => {
                return self.table_conflict(key, column.kind.describe(), entry, dialect);
            }
            Origin::Row(row) => row,
        };
        let noun = dialect.noun(&entry.value);
        let role_clash = (column.kind == Kind::Tag) != matches!(entry.value, Value::Tag(_));
        if dialect.line_protocol && role_clash {
            format!(
                "{noun} '{key}' conflicts with existing column of type {} from line {row}",
                column.kind.describe()
            )
        } else {
            format!(
                "{noun} '{key}' is {} here but {} in {} {row}",
                entry.value.describe(),
                column.kind.describe(),
                dialect.unit
            )
        }
    }

    fn commit(&mut self, time: i64, entries: &[Entry<'_>]) {
        let rows = self.times.len();
        if self.hints.len() < entries.len() {
            self.hints.resize(entries.len(), usize::MAX);
        }
        for (i, entry) in entries.iter().enumerate() {
            let index = match self.slots[i] {
                Slot::Existing(index) => index,
                Slot::New(kind, origin) => {
                    let index = self.columns.len();
                    self.columns.push(Column {
                        name: entry.key.to_string(),
                        kind,
                        origin,
                        data: Data::new(kind),
                        len: 0,
                        stamp: self.stamp,
                    });
                    self.index.insert(entry.key.to_string(), index);
                    index
                }
            };
            self.hints[i] = index;
            let column = &mut self.columns[index];
            if column.len < rows {
                column.data.append_nulls(rows - column.len);
            }
            column.len = rows + 1;
            match (&mut column.data, &entry.value) {
                (Data::Tag(b), Value::Tag(s) | Value::Text(s)) => {
                    if let Err(e) = b.append(s.as_ref()) {
                        b.append_null();
                        self.fatal.get_or_insert(e);
                    }
                }
                (Data::Str(b), Value::Str(s) | Value::Text(s)) => b.append_value(s),
                (Data::Float(b), Value::Float(f) | Value::Number(f, _)) => b.append_value(*f),
                (Data::Float(b), Value::Int(v)) => b.append_value(*v as f64),
                (Data::Int(b), Value::Int(v) | Value::Number(_, Some(v))) => b.append_value(*v),
                (Data::Bool(b), Value::Bool(v)) => b.append_value(*v),
                // `resolve` checked that the value fits; keep the lengths right regardless.
                (data, _) => data.append_nulls(1),
            }
        }
        self.times.push(time);
    }

    /// The accumulated rows as one batch: `time`, tags by name, fields by name.
    /// `None` when no row was accepted.
    pub(crate) fn finish(mut self) -> Result<Option<RecordBatch>> {
        if let Some(e) = self.fatal {
            return Err(Error::Arrow(e));
        }
        let rows = self.times.len();
        if rows == 0 {
            return Ok(None);
        }
        self.columns
            .sort_by(|a, b| (a.kind != Kind::Tag, &a.name).cmp(&(b.kind != Kind::Tag, &b.name)));
        let mut fields: Vec<Field> = Vec::with_capacity(self.columns.len() + 1);
        let mut arrays: Vec<ArrayRef> = Vec::with_capacity(self.columns.len() + 1);
        fields.push(time_column());
        arrays.push(Arc::new(
            TimestampMicrosecondArray::from(std::mem::take(&mut self.times)).with_timezone("UTC"),
        ));
        for column in &mut self.columns {
            if column.len < rows {
                column.data.append_nulls(rows - column.len);
            }
            fields.push(match column.kind {
                Kind::Tag => tag_column(&column.name),
                Kind::Float => field_column(&column.name, DataType::Float64),
                Kind::Int => field_column(&column.name, DataType::Int64),
                Kind::Bool => field_column(&column.name, DataType::Boolean),
                Kind::Str => field_column(&column.name, DataType::Utf8),
            });
            arrays.push(column.data.finish());
        }
        let schema = Arc::new(Schema::new(fields));
        RecordBatch::try_new(schema, arrays)
            .map(Some)
            .map_err(Error::Arrow)
    }
}

/// Turns the tables of a payload into a [`Decoded`], honouring `accept_partial`.
pub(crate) fn finish_tables(
    tables: Vec<TableBuilder>,
    rejections: Rejections,
    accept_partial: bool,
) -> Result<Decoded> {
    if rejections.count > 0 && !accept_partial {
        return Ok(Decoded {
            batches: Vec::new(),
            rejected: rejections.errors,
            rows: 0,
            rejected_rows: rejections.count,
        });
    }
    let mut batches = Vec::with_capacity(tables.len());
    let mut rows = 0;
    for table in tables {
        let name = table.name().to_string();
        if let Some(batch) = table.finish()? {
            rows += batch.num_rows();
            batches.push(TableBatch { table: name, batch });
        }
    }
    Ok(Decoded {
        batches,
        rejected: rejections.errors,
        rows,
        rejected_rows: rejections.count,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::*;

    fn entry(key: &str, value: Value<'static>) -> Entry<'static> {
        Entry {
            key: Cow::Owned(key.to_string()),
            value,
            pos: 0,
        }
    }

    #[test]
    fn many_columns_in_changing_order() {
        let mut table = TableBuilder::new("t".into(), None);
        let keys: Vec<String> = (0..12).map(|i| format!("c{i:02}")).collect();
        for row in 0..6usize {
            // Rotate the order each row and leave one column out.
            let entries: Vec<Entry<'static>> = (0..12)
                .map(|i| (i + row) % 12)
                .filter(|&i| i != row)
                .map(|i| entry(&keys[i], Value::Int((row * 100 + i) as i64)))
                .collect();
            table
                .push_row(row as i64, &entries, row + 1, Dialect::LINE_PROTOCOL)
                .unwrap();
        }
        let duplicate = [entry("c01", Value::Int(1)), entry("c01", Value::Int(2))];
        let err = table
            .push_row(9, &duplicate, 7, Dialect::LINE_PROTOCOL)
            .unwrap_err();
        assert_eq!(
            err.message,
            "column 'c01' appears more than once in the line"
        );
        let batch = table.finish().unwrap().unwrap();
        assert_eq!(batch.num_rows(), 6);
        assert_eq!(times(&batch), [0, 1, 2, 3, 4, 5]);
        assert_eq!(names(&batch)[1..], keys[..]);
        for (i, key) in keys.iter().enumerate() {
            let expected: Vec<Option<i64>> = (0..6)
                .map(|row| (row != i).then_some((row * 100 + i) as i64))
                .collect();
            assert_eq!(ints(&batch, key), expected, "{key}");
        }
    }

    #[test]
    fn empty_tables_produce_no_batch() {
        let table = TableBuilder::new("t".into(), None);
        assert!(table.finish().unwrap().is_none());
    }
}
