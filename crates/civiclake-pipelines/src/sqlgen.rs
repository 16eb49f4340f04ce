//! The SQL a pipeline runs for a range of windows: the analyst's `SELECT` with the window
//! added — its source replaced by the source's rows of the range with their `window_start`
//! (one copy per window for hopping windows), `window_start` added to the grouping and
//! `time`, `window_start`, `window_end` to the output.

use crate::error::{Error, Result};
use crate::incremental::Plan;
use crate::spec::{RollupSpec, Timing};
use arrow::array::{ArrayRef, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};
use civiclake_core::{field_column, tag_column, tag_type, time_column, time_type};
use datafusion::sql::sqlparser::ast::{
    Expr, GroupByExpr, SelectItem, SetExpr, Statement, TableFactor,
};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::Parser;
use std::sync::Arc;

/// The analyst's query, taken apart.
#[derive(Debug, Clone)]
pub struct WindowQuery {
    source: String,
    alias: String,
    projection: Vec<String>,
    selection: Option<String>,
    group_by: Vec<String>,
    having: Option<String>,
    /// Output columns that are plain grouping columns (stored as tags when strings).
    group_names: Vec<String>,
    /// How memory computes the windows, when it can (see [`crate::incremental`]).
    plan: Option<Arc<Plan>>,
}

/// Names the pipeline adds to the output.
const RESERVED: [&str; 3] = ["time", "window_start", "window_end"];

fn invalid(msg: impl std::fmt::Display) -> Error {
    Error::Invalid(msg.to_string())
}

fn ident_name(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Identifier(i) => Some(i.value.clone()),
        Expr::CompoundIdentifier(parts) => parts.last().map(|i| i.value.clone()),
        _ => None,
    }
}

/// A µs time as a SQL timestamp literal.
pub(crate) fn timestamp_literal(micros: i64) -> String {
    let t = chrono::DateTime::from_timestamp_micros(micros).unwrap_or_default();
    format!(
        "TIMESTAMP '{}'",
        t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
    )
}

fn interval(micros: i64) -> String {
    format!("INTERVAL '{} seconds'", micros / 1_000_000)
}

impl WindowQuery {
    /// Takes `sql` apart: one `SELECT` (no `WITH`, `ORDER BY`, `LIMIT`, `DISTINCT`, joins or
    /// set operations) from the table `source`.
    pub fn compile(sql: &str, source: &str) -> Result<Self> {
        let statements =
            Parser::parse_sql(&GenericDialect {}, sql).map_err(|e| invalid(format!("sql: {e}")))?;
        let [Statement::Query(query)] = statements.as_slice() else {
            return Err(invalid("sql: give exactly one SELECT statement"));
        };
        // Anything around the SELECT (WITH, ORDER BY, LIMIT...) changes the text.
        if query.to_string() != query.body.to_string() {
            return Err(invalid(
                "sql: WITH, ORDER BY, LIMIT and OFFSET are not allowed in a pipeline (the output is a table)",
            ));
        }
        let SetExpr::Select(select) = query.body.as_ref() else {
            return Err(invalid("sql: give a plain SELECT (no UNION, VALUES...)"));
        };
        if select.distinct.is_some() {
            return Err(invalid("sql: SELECT DISTINCT is not allowed; use GROUP BY"));
        }
        let [from] = select.from.as_slice() else {
            return Err(invalid(format!(
                "sql: read exactly one table, the source '{source}'"
            )));
        };
        if !from.joins.is_empty() {
            return Err(invalid("sql: joins are not allowed in a pipeline"));
        }
        let TableFactor::Table { name, alias, .. } = &from.relation else {
            return Err(invalid(format!(
                "sql: read the source table '{source}' directly"
            )));
        };
        let table = name
            .0
            .last()
            .map(|p| p.to_string().trim_matches('"').to_string())
            .unwrap_or_default();
        if !table.eq_ignore_ascii_case(source) {
            return Err(invalid(format!(
                "sql reads '{table}', but the pipeline's source is '{source}'"
            )));
        }
        let alias = alias
            .as_ref()
            .map(|a| a.name.value.clone())
            .unwrap_or_else(|| source.to_string());
        let mut projection = Vec::new();
        for item in &select.projection {
            let name = match item {
                SelectItem::UnnamedExpr(e) => ident_name(e),
                SelectItem::ExprWithAlias { alias, .. } => Some(alias.value.clone()),
                _ => return Err(invalid("sql: name the output columns (no `*`)")),
            };
            if let Some(n) = &name
                && RESERVED.contains(&n.to_ascii_lowercase().as_str())
            {
                return Err(invalid(format!(
                    "sql: the output column '{n}' is added by the pipeline; name it otherwise"
                )));
            }
            projection.push(item.to_string());
        }
        let (group_by, group_names, plan) = match &select.group_by {
            GroupByExpr::Expressions(exprs, modifiers) if modifiers.is_empty() => {
                if exprs.iter().any(|e| matches!(e, Expr::Value(_))) {
                    return Err(invalid(
                        "sql: GROUP BY column positions are not allowed; name the columns",
                    ));
                }
                (
                    exprs.iter().map(ToString::to_string).collect(),
                    exprs.iter().filter_map(ident_name).collect(),
                    Plan::new(
                        &select.projection,
                        exprs,
                        select.selection.is_some() || select.having.is_some(),
                    ),
                )
            }
            _ => return Err(invalid("sql: GROUP BY ALL, ROLLUP, CUBE are not allowed")),
        };
        Ok(Self {
            source: source.to_string(),
            alias,
            projection,
            selection: select.selection.as_ref().map(ToString::to_string),
            group_by,
            having: select.having.as_ref().map(ToString::to_string),
            group_names,
            plan: plan.map(Arc::new),
        })
    }

    /// The query of a rollup of `source`.
    pub fn rollup(spec: &RollupSpec, source: &str) -> Result<Self> {
        let mut cols: Vec<String> = spec.series.clone();
        cols.push("count(*) AS row_count".into());
        for f in &spec.fields {
            cols.push(format!("sum({f}) AS {f}_sum"));
            cols.push(format!("count({f}) AS {f}_count"));
            cols.push(format!("min({f}) AS {f}_min"));
            cols.push(format!("max({f}) AS {f}_max"));
            cols.push(format!("first({f}, time) AS {f}_first"));
            cols.push(format!("last({f}, time) AS {f}_last"));
        }
        let group = if spec.series.is_empty() {
            String::new()
        } else {
            format!(" GROUP BY {}", spec.series.join(", "))
        };
        Self::compile(
            &format!("SELECT {} FROM {source}{group}", cols.join(", ")),
            source,
        )
    }

    /// How memory computes the windows as rows arrive (None: SQL computes each window).
    pub(crate) fn plan(&self) -> Option<&Arc<Plan>> {
        self.plan.as_ref()
    }

    /// Output columns that are grouping columns.
    pub fn group_names(&self) -> &[String] {
        &self.group_names
    }

    /// The SQL computing the windows whose start is in `[first, last]` (on the slide grid).
    pub fn sql(&self, timing: &Timing, first: i64, last: i64) -> String {
        let origin = "TIMESTAMP '1970-01-01T00:00:00Z'";
        let (window_start, hop) = if timing.slide == timing.size {
            (
                format!("date_bin({}, time, {origin})", interval(timing.size)),
                String::new(),
            )
        } else {
            let backs: Vec<String> = (0..timing.size / timing.slide)
                .map(|k| format!("({})", interval(k * timing.slide)))
                .collect();
            (
                format!(
                    "date_bin({}, time, {origin}) - _hop._back",
                    interval(timing.slide)
                ),
                format!(" CROSS JOIN (VALUES {}) AS _hop(_back)", backs.join(", ")),
            )
        };
        let inner = format!(
            "SELECT *, {window_start} AS window_start FROM {source}{hop} WHERE time >= {lo} AND time < {hi}",
            source = self.source,
            lo = timestamp_literal(first),
            hi = timestamp_literal(last.saturating_add(timing.size)),
        );
        let mut conditions = vec![format!(
            "window_start >= {} AND window_start <= {}",
            timestamp_literal(first),
            timestamp_literal(last)
        )];
        if let Some(w) = &self.selection {
            conditions.push(format!("({w})"));
        }
        let mut group = self.group_by.clone();
        group.push("window_start".into());
        let mut projection = self.projection.clone();
        projection.push("window_start AS time".into());
        projection.push("window_start".into());
        projection.push(format!(
            "window_start + {} AS window_end",
            interval(timing.size)
        ));
        let mut sql = format!(
            "SELECT {} FROM ({inner}) AS {} WHERE {} GROUP BY {}",
            projection.join(", "),
            self.alias,
            conditions.join(" AND "),
            group.join(", ")
        );
        if let Some(h) = &self.having {
            sql.push_str(&format!(" HAVING {h}"));
        }
        sql
    }
}

/// A query result as rows of the lake: `time` as the time column, `window_start` and
/// `window_end` as timestamp fields, grouping columns that are strings as tags, other
/// columns as fields of the lake's types (integers → Int64, other numbers → Float64).
pub(crate) fn to_lake_batch(batch: &RecordBatch, group_names: &[String]) -> Result<RecordBatch> {
    let schema = batch.schema();
    let mut fields: Vec<Field> = Vec::with_capacity(schema.fields().len());
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for (field, column) in schema.fields().iter().zip(batch.columns()) {
        let name = field.name().as_str();
        let (out, ty) = if name == "time" {
            (time_column(), time_type())
        } else if name == "window_start" || name == "window_end" {
            (field_column(name, time_type()), time_type())
        } else {
            let is_text = matches!(
                field.data_type(),
                DataType::Utf8
                    | DataType::LargeUtf8
                    | DataType::Utf8View
                    | DataType::Dictionary(_, _)
            );
            if is_text && group_names.iter().any(|g| g == name) {
                (tag_column(name), tag_type())
            } else {
                let ty = match field.data_type() {
                    DataType::Float64 | DataType::Int64 | DataType::Boolean | DataType::Utf8 => {
                        field.data_type().clone()
                    }
                    DataType::Int8
                    | DataType::Int16
                    | DataType::Int32
                    | DataType::UInt8
                    | DataType::UInt16
                    | DataType::UInt32
                    | DataType::UInt64 => DataType::Int64,
                    DataType::Float16
                    | DataType::Float32
                    | DataType::Decimal128(_, _)
                    | DataType::Decimal256(_, _) => DataType::Float64,
                    DataType::LargeUtf8 | DataType::Utf8View | DataType::Dictionary(_, _) => {
                        DataType::Utf8
                    }
                    DataType::Timestamp(_, _) => time_type(),
                    DataType::Null => DataType::Float64,
                    other => {
                        return Err(invalid(format!(
                            "output column '{name}' has type {other}, which a table cannot hold"
                        )));
                    }
                };
                (field_column(name, ty.clone()), ty)
            }
        };
        let column = if column.data_type() == &ty {
            column.clone()
        } else {
            arrow::compute::cast(column, &ty)?
        };
        fields.push(out);
        columns.push(column);
    }
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timing(size: i64, slide: i64) -> Timing {
        Timing {
            size,
            slide,
            watermark: 0,
            lateness: 0,
            skew: None,
            idle: None,
            backfill: 0,
        }
    }

    #[test]
    fn a_select_gets_its_window() {
        let q = WindowQuery::compile(
            "SELECT sensor, avg(a.pm25) AS pm25 FROM air AS a WHERE pm25 > 0 GROUP BY sensor HAVING count(*) > 1",
            "air",
        )
        .unwrap();
        assert_eq!(q.group_names(), ["sensor"]);
        let sql = q.sql(&timing(300_000_000, 300_000_000), 0, 300_000_000);
        assert_eq!(
            sql,
            "SELECT sensor, avg(a.pm25) AS pm25, window_start AS time, window_start, window_start + INTERVAL '300 seconds' AS window_end \
             FROM (SELECT *, date_bin(INTERVAL '300 seconds', time, TIMESTAMP '1970-01-01T00:00:00Z') AS window_start FROM air \
             WHERE time >= TIMESTAMP '1970-01-01T00:00:00.000000Z' AND time < TIMESTAMP '1970-01-01T00:10:00.000000Z') AS a \
             WHERE window_start >= TIMESTAMP '1970-01-01T00:00:00.000000Z' AND window_start <= TIMESTAMP '1970-01-01T00:05:00.000000Z' \
             AND (pm25 > 0) GROUP BY sensor, window_start HAVING count(*) > 1"
        );
        let hop = q.sql(&timing(180_000_000, 60_000_000), 0, 0);
        assert!(
            hop.contains("CROSS JOIN (VALUES (INTERVAL '0 seconds'), (INTERVAL '60 seconds'), (INTERVAL '120 seconds')) AS _hop(_back)"),
            "{hop}"
        );
    }

    #[test]
    fn what_a_pipeline_cannot_run_is_refused() {
        let bad = |sql: &str, fragment: &str| {
            let e = WindowQuery::compile(sql, "air").unwrap_err().to_string();
            assert!(e.contains(fragment), "{sql}: {e} lacks {fragment}");
        };
        bad("SELECT avg(pm25) AS v FROM noise", "source is 'air'");
        bad("SELECT avg(pm25) AS v FROM air ORDER BY v", "ORDER BY");
        bad("SELECT * FROM air", "no `*`");
        bad(
            "SELECT sensor, avg(pm25) AS time FROM air GROUP BY sensor",
            "'time'",
        );
        bad("SELECT sensor FROM air GROUP BY 1", "positions");
        bad("SELECT a.x FROM air a JOIN b ON a.x = b.x", "joins");
        bad("DELETE FROM air", "SELECT");
        bad("SELECT 1; SELECT 2", "exactly one");
    }
}
