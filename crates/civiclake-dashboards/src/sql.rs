//! SQL macros of panel queries and the quoting of variable values.
//!
//! A panel's SQL is scanned once into [`Piece`]s: plain text, and the macros `$__from`,
//! `$__to`, `$__interval`, `$__timeFilter(expr)`, `$__filter(expr, var)` and variable
//! references `${var}` / `$var`. Text inside single-quoted strings, double-quoted identifiers
//! and comments is left alone, so a `$` there is never expanded. `$1`-style placeholders
//! and a lone `$` stay as they are.

use chrono::{DateTime, SecondsFormat, Utc};

/// The longest variable value accepted, in characters.
pub const MAX_VALUE_CHARS: usize = 256;

/// One part of a scanned panel query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Piece<'a> {
    /// Text copied as it is.
    Text(&'a str),
    /// `$__from`.
    From,
    /// `$__to`.
    To,
    /// `$__interval`.
    Interval,
    /// `$__timeFilter(expr)`.
    TimeFilter(&'a str),
    /// `$__filter(expr, var)`.
    Filter { expr: &'a str, var: &'a str },
    /// `${var}` or `$var`.
    Var(&'a str),
}

/// The macros that exist, for error messages.
const MACROS: &str =
    "$__from, $__to, $__interval, $__timeFilter(column), $__filter(column, variable)";

/// Splits `sql` into text and macros. The error says which macro is malformed.
pub(crate) fn scan(sql: &str) -> Result<Vec<Piece<'_>>, String> {
    let bytes = sql.as_bytes();
    let mut pieces = Vec::new();
    let mut text_start = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\'' | b'"' => i = skip_quoted(bytes, i),
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                i = sql[i..].find('\n').map_or(bytes.len(), |n| i + n + 1);
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                i = sql[i + 2..]
                    .find("*/")
                    .map_or(bytes.len(), |n| i + 2 + n + 2);
            }
            b'$' => {
                let (piece, end) = match scan_dollar(sql, i)? {
                    Some(found) => found,
                    None => {
                        i += 1;
                        continue;
                    }
                };
                if text_start < i {
                    pieces.push(Piece::Text(&sql[text_start..i]));
                }
                pieces.push(piece);
                i = end;
                text_start = end;
            }
            _ => i += 1,
        }
    }
    if text_start < sql.len() {
        pieces.push(Piece::Text(&sql[text_start..]));
    }
    Ok(pieces)
}

/// The index just past the quoted string or identifier starting at `start` (a doubled quote
/// inside is an escaped quote). An unterminated one runs to the end.
fn skip_quoted(bytes: &[u8], start: usize) -> usize {
    let quote = bytes[start];
    let mut i = start + 1;
    while i < bytes.len() {
        if bytes[i] == quote {
            if bytes.get(i + 1) == Some(&quote) {
                i += 2;
                continue;
            }
            return i + 1;
        }
        i += 1;
    }
    bytes.len()
}

fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_'
}

fn is_ident_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// The identifier starting at `start` (possibly empty) and the index after it.
fn ident_at(sql: &str, start: usize) -> (&str, usize) {
    let bytes = sql.as_bytes();
    let mut end = start;
    while end < bytes.len() && is_ident_char(bytes[end]) {
        end += 1;
    }
    (&sql[start..end], end)
}

/// A macro or variable reference at `sql[at] == '$'`, or `None` for a `$` that is plain text.
fn scan_dollar(sql: &str, at: usize) -> Result<Option<(Piece<'_>, usize)>, String> {
    let bytes = sql.as_bytes();
    let next = at + 1;
    if sql[next..].starts_with("__") {
        let (name, end) = ident_at(sql, next + 2);
        return match name {
            "from" => Ok(Some((Piece::From, end))),
            "to" => Ok(Some((Piece::To, end))),
            "interval" => Ok(Some((Piece::Interval, end))),
            "timeFilter" => {
                let (args, end) = macro_args(sql, end, "$__timeFilter")?;
                let expr = args.trim();
                if expr.is_empty() {
                    return Err("$__timeFilter() needs a column, as in $__timeFilter(time)".into());
                }
                Ok(Some((Piece::TimeFilter(expr), end)))
            }
            "filter" => {
                let (args, end) = macro_args(sql, end, "$__filter")?;
                let comma = last_top_level_comma(args).ok_or_else(|| {
                    format!(
                        "$__filter({args}) needs a column and a variable name, as in \
                         $__filter(district, district)"
                    )
                })?;
                let expr = args[..comma].trim();
                let var = args[comma + 1..].trim();
                if expr.is_empty() || var.is_empty() || !var.bytes().all(is_ident_char) {
                    return Err(format!(
                        "$__filter({args}) needs a column and a variable name, as in \
                         $__filter(district, district)"
                    ));
                }
                Ok(Some((Piece::Filter { expr, var }, end)))
            }
            other => Err(format!(
                "unknown macro `$__{other}`; the macros are {MACROS}"
            )),
        };
    }
    match bytes.get(next) {
        Some(b'{') => {
            let close = sql[next..]
                .find('}')
                .map(|n| next + n)
                .ok_or_else(|| "`${` without a closing `}`".to_string())?;
            let name = &sql[next + 1..close];
            if name.is_empty()
                || !is_ident_start(name.as_bytes()[0])
                || !name.bytes().all(is_ident_char)
            {
                return Err(format!(
                    "`${{{name}}}` is not a variable reference: a variable name is letters, \
                     digits and `_`"
                ));
            }
            Ok(Some((Piece::Var(name), close + 1)))
        }
        Some(&b) if is_ident_start(b) => {
            let (name, end) = ident_at(sql, next);
            Ok(Some((Piece::Var(name), end)))
        }
        _ => Ok(None),
    }
}

/// The text between the parentheses that must follow a function-like macro at `at`, and the
/// index after the closing one. Parentheses nest; quoted text is skipped.
fn macro_args<'a>(sql: &'a str, at: usize, name: &str) -> Result<(&'a str, usize), String> {
    let bytes = sql.as_bytes();
    if bytes.get(at) != Some(&b'(') {
        return Err(format!("{name} must be followed by `(`"));
    }
    let mut depth = 0usize;
    let mut i = at;
    while i < bytes.len() {
        match bytes[i] {
            b'\'' | b'"' => {
                i = skip_quoted(bytes, i);
                continue;
            }
            b'(' => depth += 1,
            b')' => {
                depth -= 1;
                if depth == 0 {
                    return Ok((&sql[at + 1..i], i + 1));
                }
            }
            _ => {}
        }
        i += 1;
    }
    Err(format!("{name}( without a closing `)`"))
}

/// The byte index of the last comma not nested in parentheses or quotes.
fn last_top_level_comma(args: &str) -> Option<usize> {
    let bytes = args.as_bytes();
    let mut depth = 0i32;
    let mut found = None;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\'' | b'"' => {
                i = skip_quoted(bytes, i);
                continue;
            }
            b'(' => depth += 1,
            b')' => depth -= 1,
            b',' if depth == 0 => found = Some(i),
            _ => {}
        }
        i += 1;
    }
    found
}

/// A checked variable value as an SQL string literal: wrapped in single quotes, every single
/// quote doubled. Standard SQL (and DataFusion's generic dialect) has no backslash escapes,
/// so nothing else needs escaping; control characters are refused by [`check_value`] before.
pub fn quote_literal(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        if c == '\'' {
            out.push('\'');
        }
        out.push(c);
    }
    out.push('\'');
    out
}

/// Refuses values that cannot be a variable value: NUL and other control characters, or
/// more than [`MAX_VALUE_CHARS`] characters.
pub fn check_value(name: &str, value: &str) -> Result<(), String> {
    if let Some(c) = value.chars().find(|c| c.is_control()) {
        return Err(format!(
            "variable `{name}`: the value contains the control character U+{:04X}",
            u32::from(c)
        ));
    }
    if value.chars().count() > MAX_VALUE_CHARS {
        return Err(format!(
            "variable `{name}`: the value is longer than {MAX_VALUE_CHARS} characters"
        ));
    }
    Ok(())
}

/// `TIMESTAMP '2026-05-04T10:00:00Z'`: a UTC timestamp literal.
pub(crate) fn timestamp_literal(t: DateTime<Utc>) -> String {
    format!(
        "TIMESTAMP '{}'",
        t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
    )
}

/// The bucket width for a range drawn over `width_px` pixels, in whole seconds (at least 1).
pub(crate) fn interval_seconds(from: DateTime<Utc>, to: DateTime<Utc>, width_px: u32) -> i64 {
    let span_ms = (to - from).num_milliseconds().max(0);
    let ceil_div = |a: i64, b: i64| (a + b - 1) / b;
    let per_px_ms = ceil_div(span_ms, i64::from(width_px.max(1)));
    ceil_div(per_px_ms, 1000).max(1)
}

/// `INTERVAL '60 seconds'`.
pub(crate) fn interval_literal(seconds: i64) -> String {
    format!("INTERVAL '{seconds} seconds'")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scans_macros_and_variables() {
        let pieces = scan(
            "SELECT date_bin($__interval, time, $__from) FROM t WHERE $__timeFilter(t.time) \
             AND $__filter(district, district) AND kind = ${kind} AND x = $y",
        )
        .unwrap();
        assert_eq!(
            pieces,
            vec![
                Piece::Text("SELECT date_bin("),
                Piece::Interval,
                Piece::Text(", time, "),
                Piece::From,
                Piece::Text(") FROM t WHERE "),
                Piece::TimeFilter("t.time"),
                Piece::Text(" AND "),
                Piece::Filter {
                    expr: "district",
                    var: "district"
                },
                Piece::Text(" AND kind = "),
                Piece::Var("kind"),
                Piece::Text(" AND x = "),
                Piece::Var("y"),
            ]
        );
    }

    #[test]
    fn leaves_strings_comments_and_placeholders_alone() {
        let sql = "SELECT '$__from', \"$x\" -- $__nope\n /* ${a} */ $1, $ , 'it''s $y'";
        assert_eq!(scan(sql).unwrap(), vec![Piece::Text(sql)]);
    }

    #[test]
    fn nested_arguments() {
        let pieces = scan("$__timeFilter(CAST(a AS TIMESTAMP)) $__filter(lower(d), v)").unwrap();
        assert_eq!(pieces[0], Piece::TimeFilter("CAST(a AS TIMESTAMP)"));
        assert_eq!(
            pieces[2],
            Piece::Filter {
                expr: "lower(d)",
                var: "v"
            }
        );
    }

    #[test]
    fn malformed_macros_are_errors() {
        assert!(
            scan("$__fromx")
                .unwrap_err()
                .contains("unknown macro `$__fromx`")
        );
        assert!(
            scan("$__timeFilter time")
                .unwrap_err()
                .contains("followed by `(`")
        );
        assert!(scan("$__timeFilter(time").unwrap_err().contains("closing"));
        assert!(
            scan("$__timeFilter( )")
                .unwrap_err()
                .contains("needs a column")
        );
        assert!(
            scan("$__filter(district)")
                .unwrap_err()
                .contains("variable name")
        );
        assert!(
            scan("${a b}")
                .unwrap_err()
                .contains("not a variable reference")
        );
        assert!(scan("${a").unwrap_err().contains("closing"));
    }

    #[test]
    fn quoting_doubles_single_quotes() {
        assert_eq!(quote_literal("Sant'Ippolito"), "'Sant''Ippolito'");
        assert_eq!(quote_literal("x' OR '1'='1"), "'x'' OR ''1''=''1'");
        assert_eq!(quote_literal(""), "''");
        assert!(check_value("v", "a\0b").unwrap_err().contains("U+0000"));
        assert!(check_value("v", "a\nb").unwrap_err().contains("U+000A"));
        assert!(check_value("v", &"x".repeat(300)).is_err());
        assert!(check_value("v", "Santa Lucia – Nord ✓").is_ok());
    }

    #[test]
    fn interval_rounds_up_to_seconds() {
        let from = DateTime::parse_from_rfc3339("2026-05-04T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let day = from + chrono::Duration::days(1);
        assert_eq!(interval_seconds(from, day, 800), 108);
        assert_eq!(interval_seconds(from, day, 1000), 87);
        let minute = from + chrono::Duration::seconds(60);
        assert_eq!(interval_seconds(from, minute, 1000), 1);
        assert_eq!(interval_literal(108), "INTERVAL '108 seconds'");
        assert_eq!(timestamp_literal(from), "TIMESTAMP '2026-05-04T00:00:00Z'");
    }
}
