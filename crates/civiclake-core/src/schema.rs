//! Column roles and types of civiclake tables.

use arrow::datatypes::{DataType, Field, TimeUnit};
use std::collections::HashMap;

/// Name of the timestamp column every table has.
pub const TIME_COLUMN: &str = "time";

/// Arrow field metadata key holding the [`ColumnRole`] of a column.
pub const ROLE_KEY: &str = "civiclake.role";

/// The role a column plays in a time-series table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ColumnRole {
    /// The `time` column.
    Time,
    /// A series identifier (dictionary-encoded string); rows are sorted by tags then time.
    Tag,
    /// A measured value.
    Field,
}

impl ColumnRole {
    /// The metadata value stored under [`ROLE_KEY`].
    pub fn as_str(self) -> &'static str {
        match self {
            ColumnRole::Time => "time",
            ColumnRole::Tag => "tag",
            ColumnRole::Field => "field",
        }
    }
}

/// The type of the `time` column: microseconds since the epoch, UTC.
pub fn time_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// The type of tag columns: dictionary-encoded UTF-8 strings.
pub fn tag_type() -> DataType {
    DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8))
}

fn with_role(field: Field, role: ColumnRole) -> Field {
    field.with_metadata(HashMap::from([(
        ROLE_KEY.to_string(),
        role.as_str().to_string(),
    )]))
}

/// The `time` field (not nullable).
pub fn time_column() -> Field {
    with_role(
        Field::new(TIME_COLUMN, time_type(), false),
        ColumnRole::Time,
    )
}

/// A tag field (nullable: a row may lack a tag).
pub fn tag_column(name: &str) -> Field {
    with_role(Field::new(name, tag_type(), true), ColumnRole::Tag)
}

/// A value field of type `data_type` (nullable: a row may lack a field).
pub fn field_column(name: &str, data_type: DataType) -> Field {
    with_role(Field::new(name, data_type, true), ColumnRole::Field)
}

/// The role of an Arrow field: from its metadata, else from its name and type.
pub fn role_of(field: &Field) -> ColumnRole {
    match field.metadata().get(ROLE_KEY).map(String::as_str) {
        Some("time") => ColumnRole::Time,
        Some("tag") => ColumnRole::Tag,
        Some("field") => ColumnRole::Field,
        _ if field.name() == TIME_COLUMN => ColumnRole::Time,
        _ if matches!(field.data_type(), DataType::Dictionary(_, _)) => ColumnRole::Tag,
        _ => ColumnRole::Field,
    }
}

/// Whether `data_type` may be the type of a field column: Float64, Int64, Boolean, Utf8, or
/// a timestamp of the `time` column's type (e.g. `window_end` of an aggregate).
pub fn is_supported_field_type(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Float64 | DataType::Int64 | DataType::Boolean | DataType::Utf8
    ) || *data_type == time_type()
}

/// A short, user-facing name of a column type, as used in error messages.
pub fn describe_type(data_type: &DataType) -> &'static str {
    match data_type {
        DataType::Float64 => "float",
        DataType::Int64 => "integer",
        DataType::Boolean => "boolean",
        DataType::Utf8 => "string",
        DataType::Dictionary(_, _) => "tag",
        DataType::Timestamp(_, _) => "timestamp",
        _ => "unsupported",
    }
}

/// Checks a table name: 1–128 characters, ASCII letters, digits and `_`, not starting with a
/// digit (a table is a directory in the lake and an identifier in SQL).
pub fn validate_table_name(name: &str) -> Result<(), String> {
    let ok_chars = name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    let first_ok = name.chars().next().is_some_and(|c| !c.is_ascii_digit());
    if name.is_empty() || name.len() > 128 || !ok_chars || !first_ok {
        return Err(format!(
            "invalid table name {name:?}: use 1-128 ASCII letters, digits or '_', not starting with a digit"
        ));
    }
    Ok(())
}

/// Checks a column name: 1–128 characters, no control characters.
pub fn validate_column_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 128 || name.chars().any(char::is_control) {
        return Err(format!(
            "invalid column name {name:?}: use 1-128 characters without control characters"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_come_from_metadata_then_shape() {
        assert_eq!(role_of(&time_column()), ColumnRole::Time);
        assert_eq!(role_of(&tag_column("sensor")), ColumnRole::Tag);
        assert_eq!(
            role_of(&field_column("pm25", DataType::Float64)),
            ColumnRole::Field
        );
        assert_eq!(role_of(&Field::new("d", tag_type(), true)), ColumnRole::Tag);
        assert_eq!(
            role_of(&Field::new("time", time_type(), false)),
            ColumnRole::Time
        );
        assert_eq!(
            role_of(&Field::new("v", DataType::Int64, true)),
            ColumnRole::Field
        );
    }

    #[test]
    fn table_names_are_identifiers() {
        assert!(validate_table_name("air_quality").is_ok());
        assert!(validate_table_name("_dead_letters").is_ok());
        assert!(validate_table_name("").is_err());
        assert!(validate_table_name("9air").is_err());
        assert!(validate_table_name("air/../x").is_err());
        assert!(validate_table_name(&"a".repeat(129)).is_err());
    }
}
