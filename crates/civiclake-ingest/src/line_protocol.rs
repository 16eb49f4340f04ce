//! InfluxDB line protocol (v1/v2 syntax):
//! `measurement[,tag=value...] field=value[,field=value...] [timestamp]`.
//!
//! The parser works on the bytes of each line without allocating, except for keys and values
//! that contain escapes.

use crate::builder::{Dialect, Entry, TableBuilder, Value, finish_tables};
use crate::error::{Error, Result};
use crate::types::{
    DecodeOptions, Decoded, Precision, Rejections, RowError, SchemaLookup, check_utf8,
};
use std::borrow::Cow;

/// Decodes an InfluxDB line protocol payload into one batch per measurement (or into
/// `opts.table` when set).
///
/// Comments (`#`) and blank lines are skipped and CRLF line ends are accepted. Timestamps are
/// integers in `opts.precision` units, converted to microseconds (floored); rows without one
/// get `opts.now_micros`. Bad lines are reported as [`RowError`]s with their line and column.
pub fn decode_line_protocol(
    body: &[u8],
    opts: &DecodeOptions,
    schemas: &dyn SchemaLookup,
) -> Result<Decoded> {
    decode_lines(body, 1, opts, schemas)
}

/// [`decode_line_protocol`] for a chunk of a file whose first line is `first_line`.
pub(crate) fn decode_lines(
    body: &[u8],
    first_line: usize,
    opts: &DecodeOptions,
    schemas: &dyn SchemaLookup,
) -> Result<Decoded> {
    let text = check_utf8(body).map_err(|e| match e {
        Error::InvalidUtf8 { line, column } => Error::InvalidUtf8 {
            line: line + first_line - 1,
            column,
        },
        other => other,
    })?;
    if let Some(table) = &opts.table {
        civiclake_core::validate_table_name(table).map_err(Error::InvalidTable)?;
    }
    let mut tables: Vec<TableBuilder> = Vec::new();
    let mut last = usize::MAX;
    let mut rejections = Rejections::default();
    let mut entries: Vec<Entry<'_>> = Vec::new();
    for (i, raw) in text.split('\n').enumerate() {
        let line_no = first_line + i;
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        let bytes = line.as_bytes();
        let Some(start) = bytes.iter().position(|&b| b != b' ' && b != b'\t') else {
            continue;
        };
        if bytes[start] == b'#' {
            continue;
        }
        entries.clear();
        let parsed = match parse_line(line, start, opts.precision, &mut entries) {
            Ok(parsed) => parsed,
            Err((pos, message)) => {
                rejections.push(RowError::new(line_no, pos + 1, message));
                continue;
            }
        };
        let table = match &opts.table {
            Some(name) => name.as_str(),
            None => parsed.measurement.as_ref(),
        };
        let index = if tables.get(last).is_some_and(|t| t.name() == table) {
            last
        } else if let Some(index) = tables.iter().position(|t| t.name() == table) {
            index
        } else {
            if let Err(message) = civiclake_core::validate_table_name(table) {
                rejections.push(RowError::new(line_no, start + 1, message));
                continue;
            }
            tables.push(TableBuilder::new(table.to_string(), schemas.schema(table)));
            tables.len() - 1
        };
        last = index;
        let time = parsed.time.unwrap_or(opts.now_micros);
        if let Err(e) = tables[index].push_row(time, &entries, line_no, Dialect::LINE_PROTOCOL) {
            rejections.push(e);
        }
    }
    finish_tables(tables, rejections, opts.accept_partial)
}

/// What a line holds besides its tags and fields.
#[derive(Debug)]
struct Parsed<'a> {
    measurement: Cow<'a, str>,
    /// Microseconds since the epoch.
    time: Option<i64>,
}

/// A parse error: 0-based byte position in the line and message.
type ParseError = (usize, String);

/// Scans from `i` to the first unescaped byte for which `stop` holds (or the end).
/// Returns the end and whether a backslash was seen.
#[inline(always)]
fn scan(bytes: &[u8], mut i: usize, stop: impl Fn(u8) -> bool) -> (usize, bool) {
    let mut escaped = false;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'\\' {
            escaped = true;
            i += 2;
        } else if stop(b) {
            return (i, escaped);
        } else {
            i += 1;
        }
    }
    (bytes.len(), escaped)
}

/// Removes the escapes `\,`, `\ ` and `\=` of measurements, tag keys, tag values and field keys.
fn unescape_key(s: &str, escaped: bool) -> Cow<'_, str> {
    if !escaped {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\'
            && let Some(&next) = chars.peek()
            && matches!(next, ',' | ' ' | '=')
        {
            out.push(next);
            chars.next();
            continue;
        }
        out.push(c);
    }
    Cow::Owned(out)
}

/// Removes the escapes `\"` and `\\` of string field values.
fn unescape_string(s: &str, escaped: bool) -> Cow<'_, str> {
    if !escaped {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\'
            && let Some(&next) = chars.peek()
            && matches!(next, '"' | '\\')
        {
            out.push(next);
            chars.next();
            continue;
        }
        out.push(c);
    }
    Cow::Owned(out)
}

fn skip_spaces(bytes: &[u8], mut i: usize) -> usize {
    while i < bytes.len() && bytes[i] == b' ' {
        i += 1;
    }
    i
}

/// Parses one non-blank, non-comment line starting at byte `start`, pushing its tags then its
/// fields to `entries`.
fn parse_line<'a>(
    line: &'a str,
    start: usize,
    precision: Precision,
    entries: &mut Vec<Entry<'a>>,
) -> Result<Parsed<'a>, ParseError> {
    let bytes = line.as_bytes();
    let (end, escaped) = scan(bytes, start, |b| b == b',' || b == b' ');
    if end == start {
        return Err((start, "missing measurement name".into()));
    }
    let measurement = unescape_key(&line[start..end], escaped);
    let mut i = end;

    // Tags.
    while i < bytes.len() && bytes[i] == b',' {
        let key_start = i + 1;
        let (key_end, escaped) = scan(bytes, key_start, |b| b == b'=' || b == b',' || b == b' ');
        let key = unescape_key(&line[key_start..key_end], escaped);
        if key_end == key_start {
            return Err((key_start, "missing tag key".into()));
        }
        if key_end >= bytes.len() || bytes[key_end] != b'=' {
            return Err((key_end, format!("expected '=' after tag key '{key}'")));
        }
        let value_start = key_end + 1;
        let (value_end, escaped) = scan(bytes, value_start, |b| b == b',' || b == b' ');
        if value_end == value_start {
            return Err((value_start, format!("missing value for tag '{key}'")));
        }
        let value = unescape_key(&line[value_start..value_end], escaped);
        entries.push(Entry {
            key,
            value: Value::Tag(value),
            pos: key_start + 1,
        });
        i = value_end;
    }

    // Fields.
    i = skip_spaces(bytes, i);
    if i >= bytes.len() {
        return Err((i, "missing fields: a line needs at least one field".into()));
    }
    loop {
        let key_start = i;
        let (key_end, escaped) = scan(bytes, key_start, |b| b == b'=' || b == b',' || b == b' ');
        let key = unescape_key(&line[key_start..key_end], escaped);
        if key_end == key_start {
            return Err((key_start, "missing field key".into()));
        }
        if key_end >= bytes.len() || bytes[key_end] != b'=' {
            return Err((key_end, format!("expected '=' after field key '{key}'")));
        }
        let value_start = key_end + 1;
        let (value, value_end) = parse_field_value(line, value_start, &key)?;
        entries.push(Entry {
            key,
            value,
            pos: key_start + 1,
        });
        i = value_end;
        if i < bytes.len() && bytes[i] == b',' {
            i += 1;
            continue;
        }
        break;
    }

    // Timestamp.
    i = skip_spaces(bytes, i);
    if i >= bytes.len() {
        return Ok(Parsed {
            measurement,
            time: None,
        });
    }
    let ts_start = i;
    while i < bytes.len() && bytes[i] != b' ' && bytes[i] != b'\t' {
        i += 1;
    }
    let token = &line[ts_start..i];
    let rest = &bytes[i..];
    if let Some(extra) = rest.iter().position(|&b| b != b' ' && b != b'\t') {
        return Err((
            i + extra,
            format!("unexpected text after timestamp '{token}'"),
        ));
    }
    let raw: i64 = token.parse().map_err(|e: std::num::ParseIntError| {
        use std::num::IntErrorKind::{NegOverflow, PosOverflow};
        match e.kind() {
            PosOverflow | NegOverflow => (ts_start, format!("timestamp '{token}' is out of range")),
            _ => (
                ts_start,
                format!("invalid timestamp '{token}': expected an integer"),
            ),
        }
    })?;
    let time = precision.to_micros(raw).ok_or_else(|| {
        (
            ts_start,
            format!("timestamp '{token}' is out of range for precision {precision}"),
        )
    })?;
    Ok(Parsed {
        measurement,
        time: Some(time),
    })
}

/// Parses a field value starting at `start`; returns it and the byte after it.
fn parse_field_value<'a>(
    line: &'a str,
    start: usize,
    key: &str,
) -> Result<(Value<'a>, usize), ParseError> {
    let bytes = line.as_bytes();
    if start < bytes.len() && bytes[start] == b'"' {
        let (end, escaped) = scan(bytes, start + 1, |b| b == b'"');
        if end >= bytes.len() {
            return Err((
                start,
                format!("unterminated string value for field '{key}'"),
            ));
        }
        let value = unescape_string(&line[start + 1..end], escaped);
        return Ok((Value::Str(value), end + 1));
    }
    let mut end = start;
    while end < bytes.len() && bytes[end] != b',' && bytes[end] != b' ' {
        end += 1;
    }
    let token = &line[start..end];
    let error = |what: &str| (start, format!("{what} '{token}' for field '{key}'"));
    let value = match token.as_bytes() {
        [] => return Err((start, format!("missing value for field '{key}'"))),
        [b't' | b'T' | b'f' | b'F', ..] => match token {
            "t" | "T" | "true" | "True" | "TRUE" => Value::Bool(true),
            "f" | "F" | "false" | "False" | "FALSE" => Value::Bool(false),
            _ => return Err(error("invalid boolean value")),
        },
        [digits @ .., b'i'] => {
            let digits = &token[..digits.len()];
            match digits.parse::<i64>() {
                Ok(v) => Value::Int(v),
                Err(e) if is_overflow(&e) => return Err(error("integer value out of range")),
                Err(_) => return Err(error("invalid integer value")),
            }
        }
        [digits @ .., b'u'] => {
            let digits = &token[..digits.len()];
            match digits.parse::<u64>() {
                Ok(v) => match i64::try_from(v) {
                    Ok(v) => Value::Int(v),
                    Err(_) => {
                        return Err((
                            start,
                            format!(
                                "unsigned value '{token}' for field '{key}' exceeds the largest \
                                 storable integer {}",
                                i64::MAX
                            ),
                        ));
                    }
                },
                Err(e) if is_overflow(&e) => return Err(error("unsigned value out of range")),
                Err(_) => return Err(error("invalid unsigned value")),
            }
        }
        _ => {
            if !looks_like_float(token.as_bytes()) {
                return Err(error("invalid float value"));
            }
            match token.parse::<f64>() {
                Ok(v) if v.is_finite() => Value::Float(v),
                Ok(_) => return Err(error("float value out of range")),
                Err(_) => return Err(error("invalid float value")),
            }
        }
    };
    Ok((value, end))
}

fn is_overflow(e: &std::num::ParseIntError) -> bool {
    use std::num::IntErrorKind::{NegOverflow, PosOverflow};
    matches!(e.kind(), PosOverflow | NegOverflow)
}

/// Rejects what `f64::from_str` accepts but line protocol does not (`inf`, `NaN`, ...).
fn looks_like_float(token: &[u8]) -> bool {
    let digits = match token {
        [b'-' | b'+', rest @ ..] => rest,
        _ => token,
    };
    matches!(digits.first(), Some(b'0'..=b'9' | b'.'))
        && digits
            .iter()
            .all(|b| matches!(b, b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::*;
    use arrow::datatypes::{DataType, Schema, SchemaRef};
    use civiclake_core::{ROLE_KEY, field_column, tag_column, time_column};
    use std::collections::HashMap;
    use std::sync::Arc;

    const NOW: i64 = 1_700_000_000_000_000;

    fn opts() -> DecodeOptions {
        DecodeOptions {
            table: None,
            precision: Precision::Nanosecond,
            now_micros: NOW,
            accept_partial: false,
            pseudonymiser: None,
        }
    }

    fn partial() -> DecodeOptions {
        DecodeOptions {
            accept_partial: true,
            ..opts()
        }
    }

    fn decode(body: &str, opts: &DecodeOptions) -> Decoded {
        decode_line_protocol(body.as_bytes(), opts, &()).unwrap()
    }

    /// The single rejection of a payload: (line, column, message).
    fn single_error(body: &str) -> (usize, usize, String) {
        let decoded = decode(body, &opts());
        assert!(decoded.batches.is_empty());
        assert_eq!(decoded.rejected.len(), 1, "{:?}", decoded.rejected);
        let e = &decoded.rejected[0];
        (e.line, e.column, e.message.clone())
    }

    #[test]
    fn decodes_a_typical_line() {
        let d = decode(
            "air,sensor=s0001,district=d1 pm25=12.5,battery=99i,ok=true,note=\"hi\" 1767225600000000000\n",
            &opts(),
        );
        assert_eq!(d.rows, 1);
        assert_eq!(d.batches.len(), 1);
        let b = &d.batches[0].batch;
        assert_eq!(d.batches[0].table, "air");
        assert_eq!(
            names(b),
            [
                "time", "district", "sensor", "battery", "note", "ok", "pm25"
            ]
        );
        assert_eq!(times(b), [1_767_225_600_000_000]);
        assert_eq!(tags(b, "sensor"), [Some("s0001".into())]);
        assert_eq!(tags(b, "district"), [Some("d1".into())]);
        assert_eq!(floats(b, "pm25"), [Some(12.5)]);
        assert_eq!(ints(b, "battery"), [Some(99)]);
        assert_eq!(bools(b, "ok"), [Some(true)]);
        assert_eq!(strings(b, "note"), [Some("hi".into())]);
        let schema = b.schema();
        assert_eq!(schema.field(0), &time_column());
        assert_eq!(schema.field(1), &tag_column("district"));
        assert_eq!(schema.field(6), &field_column("pm25", DataType::Float64));
        assert_eq!(schema.field(2).metadata()[ROLE_KEY], "tag");
    }

    #[test]
    fn unescapes_keys_tag_values_and_strings() {
        let d = decode(
            "air,loc\\,x=a\\ b\\=c,path=C:\\dir fi\\=eld=\"say \\\"hi\\\" \\\\ ok, really\",n\\ o=1 5000\n",
            &opts(),
        );
        let b = &d.batches[0].batch;
        assert_eq!(names(b), ["time", "loc,x", "path", "fi=eld", "n o"]);
        assert_eq!(tags(b, "loc,x"), [Some("a b=c".into())]);
        assert_eq!(tags(b, "path"), [Some("C:\\dir".into())]);
        assert_eq!(
            strings(b, "fi=eld"),
            [Some("say \"hi\" \\ ok, really".into())]
        );
        assert_eq!(times(b), [5]);
        let d = decode("my\\ table,a=b f=1", &opts());
        assert!(
            d.rejected[0]
                .message
                .starts_with("invalid table name \"my table\""),
            "{}",
            d.rejected[0].message
        );
    }

    #[test]
    fn parses_every_field_type() {
        let body = "m a=1,b=1.5,c=-1e3,d=.5,e=+2,i=-3i,u=5u,s=\"\"\n\
                    m t1=t,t2=T,t3=true,t4=True,t5=TRUE\n\
                    m f1=f,f2=F,f3=false,f4=False,f5=FALSE\n";
        let d = decode(body, &opts());
        assert!(d.rejected.is_empty(), "{:?}", d.rejected);
        let b = &d.batches[0].batch;
        assert_eq!(floats(b, "a")[0], Some(1.0));
        assert_eq!(floats(b, "b")[0], Some(1.5));
        assert_eq!(floats(b, "c")[0], Some(-1000.0));
        assert_eq!(floats(b, "d")[0], Some(0.5));
        assert_eq!(floats(b, "e")[0], Some(2.0));
        assert_eq!(ints(b, "i")[0], Some(-3));
        assert_eq!(ints(b, "u")[0], Some(5));
        assert_eq!(strings(b, "s")[0], Some(String::new()));
        for k in ["t1", "t2", "t3", "t4", "t5"] {
            assert_eq!(bools(b, k), [None, Some(true), None], "{k}");
        }
        for k in ["f1", "f2", "f3", "f4", "f5"] {
            assert_eq!(bools(b, k), [None, None, Some(false)], "{k}");
        }
        assert_eq!(
            single_error("m u=9223372036854775808u"),
            (
                1,
                5,
                "unsigned value '9223372036854775808u' for field 'u' exceeds the largest \
                 storable integer 9223372036854775807"
                    .into()
            )
        );
        assert_eq!(
            ints(
                &decode("m u=9223372036854775807u", &opts()).batches[0].batch,
                "u"
            ),
            [Some(i64::MAX)]
        );
        assert_eq!(
            single_error("m x=NaN").2,
            "invalid float value 'NaN' for field 'x'"
        );
        assert_eq!(
            single_error("m x=inf").2,
            "invalid float value 'inf' for field 'x'"
        );
        assert_eq!(
            single_error("m x=tru").2,
            "invalid boolean value 'tru' for field 'x'"
        );
        assert_eq!(
            single_error("m x=1.5i").2,
            "invalid integer value '1.5i' for field 'x'"
        );
        assert_eq!(
            single_error("m x=99999999999999999999i").2,
            "integer value out of range '99999999999999999999i' for field 'x'"
        );
        assert_eq!(
            single_error("m x=\"open").2,
            "unterminated string value for field 'x'"
        );
    }

    #[test]
    fn converts_timestamps_by_precision() {
        let at = |precision: Precision, body: &str| {
            let o = DecodeOptions {
                precision,
                ..opts()
            };
            times(&decode(body, &o).batches[0].batch)
        };
        assert_eq!(
            at(Precision::Nanosecond, "m f=1 1767225600123456789"),
            [1_767_225_600_123_456]
        );
        assert_eq!(at(Precision::Nanosecond, "m f=1 -1"), [-1]);
        assert_eq!(at(Precision::Nanosecond, "m f=1 -1001"), [-2]);
        assert_eq!(
            at(Precision::Microsecond, "m f=1 1767225600123456"),
            [1_767_225_600_123_456]
        );
        assert_eq!(
            at(Precision::Millisecond, "m f=1 1767225600123"),
            [1_767_225_600_123_000]
        );
        assert_eq!(
            at(Precision::Second, "m f=1 1767225600"),
            [1_767_225_600_000_000]
        );
        let o = DecodeOptions {
            precision: Precision::Second,
            ..opts()
        };
        let d = decode("m f=1 9223372036854775807", &o);
        assert_eq!(d.rejected[0].column, 7);
        assert!(
            d.rejected[0].message.contains("out of range"),
            "{}",
            d.rejected[0].message
        );
    }

    #[test]
    fn missing_timestamp_gets_now() {
        let d = decode("m f=1\nm f=2   \nm f=3 10\n", &opts());
        assert_eq!(times(&d.batches[0].batch), [NOW, NOW, 0]);
    }

    #[test]
    fn skips_comments_blank_lines_and_crlf() {
        let body =
            "# header\r\n\r\n  \nm,t=a f=1 1000\r\n   # indented comment\nm,t=b f=2i 2000\r\n";
        let d = decode(body, &opts());
        assert!(d.rejected.is_empty(), "{:?}", d.rejected);
        let b = &d.batches[0].batch;
        assert_eq!(tags(b, "t"), [Some("a".into()), Some("b".into())]);
        assert_eq!(floats(b, "f"), [Some(1.0), Some(2.0)]);
        assert_eq!(times(b), [1, 2]);
    }

    #[test]
    fn reports_errors_with_line_and_column() {
        let body = "air pm25=1\nair pm25 12\nair pm25=abc\nair\nair,sensor=x\nair,time=x f=1\nair time=1i\n\
                    air,a f=1\nair f=1 12x\nair f=1,f=2\n,a=b f=1\nair,=x f=1\nair,a= f=1\nair f=\nair f=1 1 2";
        let d = decode(body, &opts());
        assert!(d.batches.is_empty());
        assert_eq!(d.rows, 0);
        let got: Vec<(usize, usize, &str)> = d
            .rejected
            .iter()
            .map(|e| (e.line, e.column, e.message.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (2, 9, "expected '=' after field key 'pm25'"),
                (3, 10, "invalid float value 'abc' for field 'pm25'"),
                (4, 4, "missing fields: a line needs at least one field"),
                (5, 13, "missing fields: a line needs at least one field"),
                (
                    6,
                    5,
                    "tag 'time' is not allowed: 'time' is the timestamp column"
                ),
                (
                    7,
                    5,
                    "field 'time' is not allowed: 'time' is the timestamp column"
                ),
                (8, 6, "expected '=' after tag key 'a'"),
                (9, 9, "invalid timestamp '12x': expected an integer"),
                (10, 9, "column 'f' appears more than once in the line"),
                (11, 1, "missing measurement name"),
                (12, 5, "missing tag key"),
                (13, 7, "missing value for tag 'a'"),
                (14, 7, "missing value for field 'f'"),
                (15, 11, "unexpected text after timestamp '1'"),
            ]
        );
        assert_eq!(d.rejected_rows, 14);
    }

    #[test]
    fn accept_partial_keeps_good_rows() {
        let body = "m f=1 1000\nm f=oops 2000\nm f=3 3000\n";
        let all_or_nothing = decode(body, &opts());
        assert!(all_or_nothing.batches.is_empty());
        assert_eq!(all_or_nothing.rows, 0);
        assert_eq!(all_or_nothing.rejected.len(), 1);
        let d = decode(body, &partial());
        assert_eq!(d.rows, 2);
        assert_eq!(floats(&d.batches[0].batch, "f"), [Some(1.0), Some(3.0)]);
        assert_eq!(times(&d.batches[0].batch), [1, 3]);
        assert_eq!(d.rejected.len(), 1);
        assert_eq!(d.rejected[0].line, 2);
    }

    #[test]
    fn keeps_at_most_100_errors() {
        let body = "m f=x\n".repeat(150);
        let d = decode(&body, &opts());
        assert_eq!(d.rejected.len(), 100);
        assert_eq!(d.rejected_rows, 150);
        assert_eq!(d.rejected[99].line, 100);
    }

    #[test]
    fn type_conflicts_within_a_payload() {
        let body = "m x=1i\nm x=2\nm x=1.5\nm x=true\nm,t=a y=1\nm t=1\nm,y=a z=1\nm,x=a z=2\n";
        let d = decode(body, &partial());
        let got: Vec<(usize, usize, &str)> = d
            .rejected
            .iter()
            .map(|e| (e.line, e.column, e.message.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (2, 3, "field 'x' is float here but integer in line 1"),
                (3, 3, "field 'x' is float here but integer in line 1"),
                (4, 3, "field 'x' is boolean here but integer in line 1"),
                (
                    6,
                    3,
                    "field 't' conflicts with existing column of type tag from line 5"
                ),
                (
                    7,
                    3,
                    "tag 'y' conflicts with existing column of type float from line 5"
                ),
                (
                    8,
                    3,
                    "tag 'x' conflicts with existing column of type integer from line 1"
                ),
            ]
        );
        let b = &d.batches[0].batch;
        assert_eq!(ints(b, "x"), [Some(1), None]);
        assert_eq!(tags(b, "t"), [None, Some("a".into())]);
        assert_eq!(floats(b, "y"), [None, Some(1.0)]);
        assert_eq!(d.rows, 2);
    }

    #[test]
    fn integers_widen_to_float_columns() {
        let d = decode("m x=1.5\nm x=2i\nm x=3u\n", &opts());
        assert!(d.rejected.is_empty(), "{:?}", d.rejected);
        assert_eq!(
            floats(&d.batches[0].batch, "x"),
            [Some(1.5), Some(2.0), Some(3.0)]
        );
    }

    fn air_schema() -> HashMap<String, SchemaRef> {
        let schema = Schema::new(vec![
            time_column(),
            tag_column("sensor"),
            field_column("count", DataType::Int64),
            field_column("pm25", DataType::Float64),
            field_column("note", DataType::Utf8),
        ]);
        HashMap::from([("air".to_string(), Arc::new(schema))])
    }

    #[test]
    fn type_conflicts_with_the_existing_schema() {
        let body = "air pm25=\"x\"\nair count=1.5\nair pm25=3i\nair,pm25=x a=1\nair sensor=1\n\
                    air,note=n a=2\nair note=\"ok\",count=7i\nother pm25=\"fine\"\n";
        let d = decode_line_protocol(body.as_bytes(), &partial(), &air_schema()).unwrap();
        let got: Vec<(usize, usize, &str)> = d
            .rejected
            .iter()
            .map(|e| (e.line, e.column, e.message.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (
                    1,
                    5,
                    "column 'pm25' is float in table 'air' but the line gives string"
                ),
                (
                    2,
                    5,
                    "column 'count' is integer in table 'air' but the line gives float"
                ),
                (
                    4,
                    5,
                    "column 'pm25' is float in table 'air' but the line gives tag"
                ),
                (
                    5,
                    5,
                    "column 'sensor' is tag in table 'air' but the line gives float"
                ),
                (
                    6,
                    5,
                    "column 'note' is string in table 'air' but the line gives tag"
                ),
            ]
        );
        assert_eq!(d.batches.len(), 2);
        let air = &d.batches[0].batch;
        assert_eq!(names(air), ["time", "count", "note", "pm25"]);
        assert_eq!(floats(air, "pm25"), [Some(3.0), None]);
        assert_eq!(ints(air, "count"), [None, Some(7)]);
        assert_eq!(strings(air, "note"), [None, Some("ok".into())]);
        assert_eq!(d.batches[1].table, "other");
        assert_eq!(strings(&d.batches[1].batch, "pm25"), [Some("fine".into())]);
    }

    #[test]
    fn tables_by_measurement_or_option() {
        let body = "a f=1\nb g=2i\na f=3\n9bad f=1\n";
        let d = decode(body, &partial());
        assert_eq!(
            d.batches
                .iter()
                .map(|t| t.table.as_str())
                .collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert_eq!(floats(&d.batches[0].batch, "f"), [Some(1.0), Some(3.0)]);
        assert_eq!(d.rejected[0].line, 4);
        assert!(d.rejected[0].message.starts_with("invalid table name"));
        let o = DecodeOptions {
            table: Some("all".into()),
            ..opts()
        };
        let d = decode(body, &o);
        assert_eq!(d.batches.len(), 1);
        assert_eq!(d.batches[0].table, "all");
        assert_eq!(d.rows, 4);
        let o = DecodeOptions {
            table: Some("no good".into()),
            ..opts()
        };
        assert!(matches!(
            decode_line_protocol(b"a f=1", &o, &()),
            Err(Error::InvalidTable(_))
        ));
    }

    #[test]
    fn pads_columns_first_seen_later() {
        let mut body = String::new();
        for i in 0..5000 {
            body.push_str(&format!("m,a=x v={i}i\n"));
        }
        body.push_str("m,b=y v=1i,late=2.5\nm v=7i\n");
        let d = decode(&body, &opts());
        let b = &d.batches[0].batch;
        assert_eq!(b.num_rows(), 5002);
        let late = floats(b, "late");
        assert_eq!(late.iter().filter(|v| v.is_none()).count(), 5001);
        assert_eq!(late[5000], Some(2.5));
        let tag_b = tags(b, "b");
        assert_eq!(tag_b[4999], None);
        assert_eq!(tag_b[5000], Some("y".into()));
        assert_eq!(tags(b, "a")[5001], None);
        assert!(b.schema().fields().iter().skip(1).all(|f| f.is_nullable()));
    }

    #[test]
    fn rejects_invalid_utf8() {
        let err = decode_line_protocol(b"m f=1\nm s=\"\xff\"", &opts(), &()).unwrap_err();
        assert!(
            matches!(err, Error::InvalidUtf8 { line: 2, column: 6 }),
            "{err}"
        );
        assert_eq!(err.class(), civiclake_core::ErrorClass::User);
    }

    #[test]
    fn decodes_200k_lines() {
        let mut body = String::with_capacity(200_000 * 80);
        for i in 0..200_000u64 {
            body.push_str(&format!(
                "air,sensor=s{:04},district=d{} pm25={}.5,battery=99.51 {}\n",
                i % 1000,
                i % 7,
                i % 50,
                1_767_225_600_000_000_000 + i * 1_000_000_000
            ));
        }
        let d = decode(&body, &opts());
        assert_eq!(d.rows, 200_000);
        assert!(d.rejected.is_empty());
        let b = &d.batches[0].batch;
        assert_eq!(b.num_rows(), 200_000);
        let pm25: f64 = floats(b, "pm25").iter().map(|v| v.unwrap()).sum();
        let expected: f64 = (0..200_000u64).map(|i| (i % 50) as f64 + 0.5).sum();
        assert_eq!(pm25, expected);
        let battery: f64 = floats(b, "battery").iter().map(|v| v.unwrap()).sum();
        assert!((battery - 99.51 * 200_000.0).abs() < 1e-3);
        let t = times(b);
        assert_eq!(t[0], 1_767_225_600_000_000);
        assert_eq!(t[199_999], 1_767_225_600_000_000 + 199_999 * 1_000_000);
        let sensors = tags(b, "sensor");
        assert_eq!(sensors[1234], Some("s0234".into()));
    }
}
