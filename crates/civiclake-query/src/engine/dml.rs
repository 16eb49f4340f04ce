//! `DELETE FROM table WHERE condition` in sessions that may write (administrators): an
//! erasure made effective in storage. The condition becomes the lake's
//! [`civiclake_core::RowPredicate`] ([`crate::parse_predicate`]), and
//! [`civiclake_lake::Lake::purge_where`] deletes the rows from the buffer, rewrites the files
//! that held them and deletes the old files from disk. The answer is one row, `count`: the
//! rows deleted. Read-only sessions never get here: DataFusion refuses their DML.

use super::{QueryResult, SqlScope};
use crate::error::{Error, Result};
use crate::predicate_sql::parse_predicate;
use civiclake_core::{RowPredicate, TIME_COLUMN};
use civiclake_lake::Lake;
use datafusion::arrow::array::UInt64Array;
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::sql::parser::{DFParser, Statement as DFStatement};
use datafusion::sql::sqlparser::ast::{
    Delete, Expr, FromTable, Ident, ObjectName, Statement, TableFactor, Value,
};
use std::sync::Arc;

/// A checked `DELETE FROM table WHERE condition`.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct DeleteStatement {
    /// The table (identifiers normalised as in queries).
    pub(super) table: String,
    /// The condition (`WHERE TRUE` deletes every row).
    pub(super) predicate: Condition,
}

/// The WHERE clause of a DELETE.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Condition {
    /// A constant `TRUE` / `FALSE`.
    Constant(bool),
    /// A row condition, as SQL text for [`parse_predicate`].
    Sql(String),
}

fn invalid(message: impl Into<String>) -> Error {
    Error::Invalid(message.into())
}

fn ident_name(ident: &Ident) -> String {
    if ident.quote_style.is_some() {
        ident.value.clone()
    } else {
        ident.value.to_lowercase()
    }
}

/// The lake table `name` names: `t`, `public.t` or `datafusion.public.t`.
fn table_name(name: &ObjectName) -> Result<String> {
    let parts: Vec<String> = name
        .0
        .iter()
        .map(|p| p.as_ident().map(ident_name))
        .collect::<Option<_>>()
        .ok_or_else(|| invalid(format!("DELETE FROM {name}: not a table name")))?;
    match parts.as_slice() {
        [t] => Ok(t.clone()),
        [s, t] if s == "public" => Ok(t.clone()),
        [c, s, t] if c == "datafusion" && s == "public" => Ok(t.clone()),
        _ => Err(Error::Lake(civiclake_lake::Error::TableNotFound(
            name.to_string(),
        ))),
    }
}

fn constant(expr: &Expr) -> Option<bool> {
    match expr {
        Expr::Value(v) => match v.value {
            Value::Boolean(b) => Some(b),
            _ => None,
        },
        Expr::Nested(inner) => constant(inner),
        _ => None,
    }
}

/// Checks a DELETE: one table without alias, a WHERE clause, no other clause.
fn check_delete(delete: &Delete) -> Result<DeleteStatement> {
    let usage = "write DELETE FROM table WHERE condition";
    if !delete.tables.is_empty() {
        return Err(invalid(format!(
            "DELETE of several tables is not supported: {usage}"
        )));
    }
    if delete.using.is_some() {
        return Err(invalid(format!(
            "DELETE ... USING is not supported: {usage}"
        )));
    }
    if delete.returning.is_some() || delete.output.is_some() {
        return Err(invalid(format!(
            "DELETE ... RETURNING is not supported: {usage}"
        )));
    }
    if !delete.order_by.is_empty() || delete.limit.is_some() {
        return Err(invalid(format!(
            "DELETE ... ORDER BY / LIMIT is not supported: {usage}"
        )));
    }
    let (FromTable::WithFromKeyword(from) | FromTable::WithoutKeyword(from)) = &delete.from;
    let [only] = from.as_slice() else {
        return Err(invalid(format!(
            "DELETE from more than one table is not supported: {usage}"
        )));
    };
    if !only.joins.is_empty() {
        return Err(invalid(format!(
            "DELETE with a join is not supported: {usage}"
        )));
    }
    let TableFactor::Table {
        name, alias, args, ..
    } = &only.relation
    else {
        return Err(invalid(format!(
            "DELETE FROM {}: not a table; {usage}",
            only.relation
        )));
    };
    if alias.is_some() {
        return Err(invalid(format!(
            "a table alias is not supported in DELETE: {usage}"
        )));
    }
    if args.is_some() {
        return Err(invalid(format!("DELETE FROM {name}(...): {usage}")));
    }
    let table = table_name(name)?;
    let Some(selection) = &delete.selection else {
        return Err(invalid(format!(
            "DELETE without WHERE is refused, so that no table is emptied by mistake: to delete \
             every row of {table}, write DELETE FROM {table} WHERE true"
        )));
    };
    let predicate = match constant(selection) {
        Some(b) => Condition::Constant(b),
        None => Condition::Sql(selection.to_string()),
    };
    Ok(DeleteStatement { table, predicate })
}

/// `Some` when `sql` is one DELETE statement (then checked: a clear error for forms the
/// lake cannot run); `None` for anything else, left to DataFusion.
pub(super) fn parse_delete(sql: &str) -> Result<Option<DeleteStatement>> {
    if !sql
        .as_bytes()
        .windows(6)
        .any(|w| w.eq_ignore_ascii_case(b"delete"))
    {
        return Ok(None);
    }
    let Ok(mut statements) = DFParser::parse_sql(sql) else {
        return Ok(None);
    };
    if statements.len() != 1 {
        return Ok(None);
    }
    match statements.pop_front() {
        Some(DFStatement::Statement(statement)) => match statement.as_ref() {
            Statement::Delete(delete) => check_delete(delete).map(Some),
            _ => Ok(None),
        },
        _ => Ok(None),
    }
}

/// Runs a checked DELETE on the lake as `scope` allows; the answer is `count`, the rows
/// deleted (from the buffer and from the files).
pub(super) async fn run_delete(
    lake: &Lake,
    scope: &SqlScope,
    delete: DeleteStatement,
) -> Result<QueryResult> {
    let DeleteStatement { table, predicate } = delete;
    if !scope.sees(&table) || lake.schema(&table).is_none() {
        return Err(Error::Lake(civiclake_lake::Error::TableNotFound(table)));
    }
    let predicate = match predicate {
        // `time` is never NULL: every row, or none.
        Condition::Constant(true) => RowPredicate::is_not_null(TIME_COLUMN),
        Condition::Constant(false) => RowPredicate::is_null(TIME_COLUMN),
        Condition::Sql(sql) => parse_predicate(&sql)?,
    };
    let outcome = lake.purge_where(&table, predicate).await?;
    let schema = Arc::new(Schema::new(vec![Field::new(
        "count",
        DataType::UInt64,
        false,
    )]));
    let count = UInt64Array::from(vec![outcome.rows_deleted() as u64]);
    let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(count)])
        .map_err(|e| Error::Execution(e.to_string()))?;
    Ok(QueryResult {
        schema,
        batches: vec![batch],
    })
}

#[cfg(test)]
mod tests;
