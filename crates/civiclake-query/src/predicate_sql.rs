//! A SQL boolean expression (`time < '2026-01-01T00:00:00Z' AND sensor = 'a1'`) as a
//! [`RowPredicate`], for deletes given as text (admin API, CLI).
//!
//! Accepted: comparisons of a column with a constant (`=`, `!=`/`<>`, `<`, `<=`, `>`, `>=`,
//! either side), `[NOT] IN (...)`, `[NOT] BETWEEN ... AND ...`, `IS [NOT] NULL`, a boolean
//! column alone, `AND`, `OR`, `NOT` and parentheses. Constants: numbers, `'strings'`,
//! `TRUE`/`FALSE`, `TIMESTAMP '...'` and `DATE '...'`. Unquoted column names are lower-cased
//! as in queries; `"Quoted"` ones are kept.

use crate::error::{Error, Result};
use civiclake_core::{CompareOp, Literal, RowPredicate};
use datafusion::sql::sqlparser::ast::{
    BinaryOperator, DataType, Expr, Ident, UnaryOperator, Value,
};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::Token;

/// Deepest nesting of a condition (guards the recursion).
const MAX_DEPTH: usize = 64;

fn invalid(message: impl Into<String>) -> Error {
    Error::Invalid(message.into())
}

/// Parses a SQL boolean expression into a [`RowPredicate`]; a clear user error for syntax
/// errors and for forms a stored row condition cannot hold (functions, column-to-column
/// comparisons, subqueries, arithmetic).
pub fn parse_predicate(sql: &str) -> Result<RowPredicate> {
    if sql.trim().is_empty() {
        return Err(invalid("the condition is empty"));
    }
    let dialect = GenericDialect {};
    let mut parser = Parser::new(&dialect)
        .try_with_sql(sql)
        .map_err(|e| invalid(format!("cannot parse the condition: {e}")))?;
    let expr = parser
        .parse_expr()
        .map_err(|e| invalid(format!("cannot parse the condition: {e}")))?;
    let next = parser.peek_token();
    if next.token != Token::EOF {
        return Err(invalid(format!(
            "cannot parse the condition: unexpected '{}' after '{expr}'",
            next.token
        )));
    }
    convert(&expr, 0)
}

fn unsupported(expr: &Expr) -> Error {
    invalid(format!(
        "'{expr}' is not supported in a row condition: compare a column with a constant \
         (=, !=, <, <=, >, >=, IN, BETWEEN, IS [NOT] NULL) and combine with AND, OR, NOT"
    ))
}

fn ident_name(ident: &Ident) -> String {
    if ident.quote_style.is_some() {
        ident.value.clone()
    } else {
        ident.value.to_lowercase()
    }
}

fn column(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Identifier(ident) => Some(ident_name(ident)),
        Expr::CompoundIdentifier(parts) if parts.len() == 1 => Some(ident_name(&parts[0])),
        Expr::Nested(inner) => column(inner),
        _ => None,
    }
}

fn number(text: &str, negative: bool) -> Option<Literal> {
    let signed = if negative {
        format!("-{text}")
    } else {
        text.to_string()
    };
    if let Ok(v) = signed.parse::<i64>() {
        return Some(Literal::Int(v));
    }
    signed
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
        .map(Literal::Float)
}

/// The constant `expr` is; `Ok(None)` when it is not a constant.
fn literal(expr: &Expr) -> Result<Option<Literal>> {
    Ok(match expr {
        Expr::Value(v) => match &v.value {
            Value::Number(n, _) => number(n, false),
            Value::SingleQuotedString(s) => Some(Literal::String(s.clone())),
            Value::Boolean(b) => Some(Literal::Bool(*b)),
            Value::Null => {
                return Err(invalid(
                    "a comparison with NULL is never true: use IS NULL or IS NOT NULL",
                ));
            }
            _ => None,
        },
        Expr::UnaryOp {
            op: op @ (UnaryOperator::Minus | UnaryOperator::Plus),
            expr: inner,
        } => match inner.as_ref() {
            Expr::Value(v) => match &v.value {
                Value::Number(n, _) => number(n, *op == UnaryOperator::Minus),
                _ => None,
            },
            _ => None,
        },
        Expr::TypedString(t) => match &t.data_type {
            DataType::Timestamp(..) | DataType::Datetime(_) | DataType::Date => {
                let text = match &t.value.value {
                    Value::SingleQuotedString(s) => s.as_str(),
                    _ => return Ok(None),
                };
                Some(Literal::parse_timestamp(text).map_err(|e| invalid(e.to_string()))?)
            }
            _ => None,
        },
        Expr::Nested(inner) => literal(inner)?,
        _ => None,
    })
}

fn compare_op(op: &BinaryOperator) -> Option<CompareOp> {
    Some(match op {
        BinaryOperator::Eq => CompareOp::Eq,
        BinaryOperator::NotEq => CompareOp::NotEq,
        BinaryOperator::Lt => CompareOp::Lt,
        BinaryOperator::LtEq => CompareOp::LtEq,
        BinaryOperator::Gt => CompareOp::Gt,
        BinaryOperator::GtEq => CompareOp::GtEq,
        _ => return None,
    })
}

fn literal_list(list: &[Expr]) -> Result<Vec<Literal>> {
    list.iter()
        .map(|e| literal(e)?.ok_or_else(|| unsupported(e)))
        .collect()
}

fn convert(expr: &Expr, depth: usize) -> Result<RowPredicate> {
    if depth > MAX_DEPTH {
        return Err(invalid(format!(
            "the condition is nested more than {MAX_DEPTH} levels deep"
        )));
    }
    let next = depth + 1;
    match expr {
        Expr::Nested(inner) => convert(inner, next),
        Expr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } => Ok(convert(left, next)?.and(convert(right, next)?)),
        Expr::BinaryOp {
            left,
            op: BinaryOperator::Or,
            right,
        } => Ok(convert(left, next)?.or(convert(right, next)?)),
        Expr::BinaryOp { left, op, right } => {
            let op = compare_op(op).ok_or_else(|| unsupported(expr))?;
            if let (Some(c), Some(v)) = (column(left), literal(right)?) {
                return Ok(RowPredicate::compare(c, op, v));
            }
            if let (Some(v), Some(c)) = (literal(left)?, column(right)) {
                return Ok(RowPredicate::compare(c, op.swap(), v));
            }
            Err(unsupported(expr))
        }
        Expr::UnaryOp {
            op: UnaryOperator::Not,
            expr: inner,
        } => Ok(convert(inner, next)?.not()),
        Expr::IsNull(inner) => column(inner)
            .map(RowPredicate::is_null)
            .ok_or_else(|| unsupported(expr)),
        Expr::IsNotNull(inner) => column(inner)
            .map(RowPredicate::is_not_null)
            .ok_or_else(|| unsupported(expr)),
        Expr::InList {
            expr: inner,
            list,
            negated,
        } => {
            let c = column(inner).ok_or_else(|| unsupported(expr))?;
            let p = RowPredicate::in_list(c, literal_list(list)?);
            Ok(if *negated { p.not() } else { p })
        }
        Expr::Between {
            expr: inner,
            negated,
            low,
            high,
        } => {
            let c = column(inner).ok_or_else(|| unsupported(expr))?;
            let (Some(lo), Some(hi)) = (literal(low)?, literal(high)?) else {
                return Err(unsupported(expr));
            };
            let p = RowPredicate::compare(c.clone(), CompareOp::GtEq, lo)
                .and(RowPredicate::compare(c, CompareOp::LtEq, hi));
            Ok(if *negated { p.not() } else { p })
        }
        // A boolean column alone: `ok` is `ok = TRUE` (NULL stays NULL).
        Expr::Identifier(_) | Expr::CompoundIdentifier(_) => column(expr)
            .map(|c| RowPredicate::eq(c, true))
            .ok_or_else(|| unsupported(expr)),
        _ => Err(unsupported(expr)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const JAN_1: i64 = 1_767_225_600_000_000;

    #[test]
    fn the_documented_example() {
        let p = parse_predicate("time < '2026-01-01T00:00:00Z' AND sensor = 'a1'").unwrap();
        assert_eq!(
            p,
            RowPredicate::compare("time", CompareOp::Lt, "2026-01-01T00:00:00Z")
                .and(RowPredicate::eq("sensor", "a1"))
        );
    }

    #[test]
    fn every_supported_form() {
        let p = parse_predicate(
            "(5 < pm25 OR \"Battery\" <= -1.5) AND NOT ok AND district IN ('a', 'b') \
             AND n NOT BETWEEN 1 AND 10 AND note IS NULL AND tag IS NOT NULL \
             AND time >= TIMESTAMP '2026-01-01 00:00:00' AND Count != 3",
        )
        .unwrap();
        let expected = RowPredicate::compare("pm25", CompareOp::Gt, 5_i64)
            .or(RowPredicate::compare("Battery", CompareOp::LtEq, -1.5))
            .and(RowPredicate::eq("ok", true).not())
            .and(RowPredicate::in_list(
                "district",
                vec!["a".into(), "b".into()],
            ))
            .and(
                RowPredicate::compare("n", CompareOp::GtEq, 1_i64)
                    .and(RowPredicate::compare("n", CompareOp::LtEq, 10_i64))
                    .not(),
            )
            .and(RowPredicate::is_null("note"))
            .and(RowPredicate::is_not_null("tag"))
            .and(RowPredicate::compare(
                "time",
                CompareOp::GtEq,
                Literal::Timestamp(JAN_1),
            ))
            .and(RowPredicate::compare("count", CompareOp::NotEq, 3_i64));
        assert_eq!(p, expected);
    }

    #[test]
    fn unsupported_forms_say_why() {
        let err = |sql: &str| parse_predicate(sql).unwrap_err().to_string();
        assert!(err("").contains("the condition is empty"));
        assert!(
            err("sensor = ").starts_with("cannot parse the condition"),
            "{}",
            err("sensor = ")
        );
        assert!(
            err("sensor = 'a' garbage").contains("unexpected 'garbage'"),
            "{}",
            err("sensor = 'a' garbage")
        );
        assert!(err("pm25 > battery").contains("'pm25 > battery' is not supported"));
        assert!(err("lower(sensor) = 'a'").contains("is not supported"));
        assert!(err("pm25 + 1 > 3").contains("is not supported"));
        assert!(err("sensor IN (SELECT 1)").contains("is not supported"));
        assert!(err("sensor = NULL").contains("use IS NULL"));
        assert!(err("time < TIMESTAMP 'soon'").contains("'soon' is not a timestamp"));
        assert!(parse_predicate("sensor = 'a'").is_ok());
    }
}
