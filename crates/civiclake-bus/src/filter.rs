//! Subscription filters: which CloudEvents a subscription receives.
//!
//! An [`EventFilter`] combines lists of event types and sources (exact values, or prefixes
//! ending with `*`), a subject prefix and an optional [`Expression`] on the event's
//! attributes and data. Filters are created over the JSON API and stored as JSON, so they
//! are serde (de)serialisable; an expression travels as its source text and is parsed (and
//! checked) when it is read, then evaluated for every event without allocating.
//!
//! # Expression grammar
//!
//! ```text
//! expression := or
//! or         := and { ("or" | "||") and }
//! and        := not { ("and" | "&&") not }
//! not        := ("not" | "!") not | primary
//! primary    := "(" expression ")"
//!             | "exists" "(" path ")"
//!             | operand ( compare operand | "in" "[" [ literal { "," literal } ] "]" )
//!             | path | "true" | "false"              (a truth test)
//! compare    := "==" | "!=" | "<" | "<=" | ">" | ">=" | "startswith" | "contains"
//! operand    := path | literal
//! literal    := string | number | "true" | "false" | "null"
//! path       := "data" { "." name | "[" index "]" | "[" string "]" }
//!             | "id" | "source" | "type" | "subject" | "time" | "datacontenttype"
//!             | "dataschema" | "specversion" | extension-name
//! ```
//!
//! Strings are single- or double-quoted with the escapes `\\ \' \" \n \r \t \uXXXX \u{X…}`.
//! Numbers are JSON-like (`-3`, `120`, `2.5`, `1e-3`). Keywords are lowercase. A bare name
//! that is not an attribute is an extension attribute (1-20 lowercase letters or digits,
//! as CloudEvents requires); anything else is refused with the list of attributes, so a
//! forgotten `data.` prefix on a capitalised field is caught when the filter is created.
//!
//! # Semantics
//!
//! * A path that does not resolve (no data, a missing field, an index past the end, an
//!   absent `subject`…) is *absent*. Every comparison with an absent value is false, `!=`
//!   included; `exists(path)` tests presence (a JSON `null` in the data is present).
//! * Numbers compare numerically (integers exactly, `120 == 120.0`); strings compare
//!   lexicographically by bytes; booleans and `null` only with `==`/`!=`.
//! * Values of different kinds are not comparable: the comparison is false (`!=` too), never
//!   an error. The one exception is `null`: `x == null` is true only for a present `null`,
//!   and `x != null` for any present value that is not `null`.
//! * Arrays and objects compare with `==`/`!=` as JSON values.
//! * `time` is a point in time (microseconds), not text: compared with a string literal,
//!   the literal must be an RFC 3339 time (checked when parsing, so
//!   `time >= '2026-03-01T08:00:00+01:00'` works across offsets and fractions); compared
//!   with a string from the data, that string is read as RFC 3339 (not a time: false).
//!   `startswith` and `contains` see `time` as its RFC 3339 UTC text
//!   (`time startswith '2026-03'`).
//! * `a startswith b` and `a contains b` need strings; `contains` on an array is true when
//!   an element equals the value (`data.diets contains 'celiac'`).
//! * `x in [a, b]` is true when `x` is present and equal to one of the literals.
//! * A bare path is a truth test: true only when it is the boolean `true`. So
//!   `not data.cancelled` holds when `cancelled` is false, absent or not a boolean.
//! * Comparisons do not chain (`a == b == c` is refused); `not` applies to the whole
//!   comparison that follows (`not data.x == 1` is `not (data.x == 1)`).
//!
//! Expressions are limited to [`MAX_EXPRESSION_LEN`] bytes and [`MAX_DEPTH`] levels of
//! parentheses and `not`; parse errors name the 1-based column (in characters) and what was
//! expected there.

use chrono::{DateTime, SecondsFormat};
use civiclake_core::{CloudEvent, SPEC_VERSION};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Number, Value};
use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

/// The longest expression accepted, in bytes.
pub const MAX_EXPRESSION_LEN: usize = 4096;

/// How deeply parentheses and `not` may nest.
pub const MAX_DEPTH: usize = 32;

/// The attributes a path may name besides `data` and extension attributes.
const ATTRIBUTES: &str =
    "id, source, type, subject, time, datacontenttype, dataschema, specversion";

/// Why an expression (or a path) could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExpressionError {
    /// The text is longer than [`MAX_EXPRESSION_LEN`].
    #[error("the expression is {len} bytes long; the limit is {max} bytes")]
    TooLong {
        /// Length of the text in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The text does not follow the grammar (or nests too deeply).
    #[error("at column {column}: {message}")]
    Syntax {
        /// 1-based column, in characters, where the problem is.
        column: usize,
        /// What was expected and what was found.
        message: String,
    },
}

impl ExpressionError {
    /// The 1-based column of a syntax error.
    pub fn column(&self) -> Option<usize> {
        match self {
            Self::TooLong { .. } => None,
            Self::Syntax { column, .. } => Some(*column),
        }
    }
}

fn syntax<T>(column: usize, message: impl Into<String>) -> Result<T, ExpressionError> {
    Err(ExpressionError::Syntax {
        column,
        message: message.into(),
    })
}

// ---------------------------------------------------------------------------------------
// Lexer

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    Dot,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    AndAnd,
    OrOr,
    Bang,
    Ident(String),
    Str(String),
    Num(Number),
    End,
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    column: usize,
}

const KEYWORDS: [&str; 10] = [
    "and",
    "or",
    "not",
    "in",
    "startswith",
    "contains",
    "exists",
    "true",
    "false",
    "null",
];

fn is_keyword(s: &str) -> bool {
    KEYWORDS.contains(&s)
}

fn is_ident_start(c: char) -> bool {
    c.is_alphabetic() || c == '_'
}

fn is_ident_continue(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Whether `s` can be written after a `.` in a path (otherwise it is written `["s"]`).
fn is_plain_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(is_ident_start) && chars.all(is_ident_continue)
}

fn describe(tok: &Tok) -> String {
    match tok {
        Tok::End => "the end of the expression".to_string(),
        Tok::Ident(s) if is_keyword(s) => format!("the keyword `{s}`"),
        Tok::Ident(s) => format!("`{s}`"),
        Tok::Str(s) => format!("the string {}", quote(s)),
        Tok::Num(n) => format!("the number {n}"),
        other => format!("`{}`", symbol(other)),
    }
}

fn symbol(tok: &Tok) -> &'static str {
    match tok {
        Tok::LParen => "(",
        Tok::RParen => ")",
        Tok::LBracket => "[",
        Tok::RBracket => "]",
        Tok::Comma => ",",
        Tok::Dot => ".",
        Tok::Eq => "==",
        Tok::Ne => "!=",
        Tok::Lt => "<",
        Tok::Le => "<=",
        Tok::Gt => ">",
        Tok::Ge => ">=",
        Tok::AndAnd => "&&",
        Tok::OrOr => "||",
        Tok::Bang => "!",
        Tok::Ident(_) | Tok::Str(_) | Tok::Num(_) | Tok::End => "",
    }
}

fn lex(src: &str) -> Result<Vec<Token>, ExpressionError> {
    let chars: Vec<char> = src.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        let column = i + 1;
        let next = chars.get(i + 1).copied();
        let (tok, len) = match c {
            c if c.is_whitespace() => {
                i += 1;
                continue;
            }
            '(' => (Tok::LParen, 1),
            ')' => (Tok::RParen, 1),
            '[' => (Tok::LBracket, 1),
            ']' => (Tok::RBracket, 1),
            ',' => (Tok::Comma, 1),
            '.' => (Tok::Dot, 1),
            '=' if next == Some('=') => (Tok::Eq, 2),
            '=' => return syntax(column, "`=` is not an operator; compare with `==`"),
            '!' if next == Some('=') => (Tok::Ne, 2),
            '!' => (Tok::Bang, 1),
            '<' if next == Some('=') => (Tok::Le, 2),
            '<' => (Tok::Lt, 1),
            '>' if next == Some('=') => (Tok::Ge, 2),
            '>' => (Tok::Gt, 1),
            '&' if next == Some('&') => (Tok::AndAnd, 2),
            '&' => return syntax(column, "expected `&&` (or `and`), found a single `&`"),
            '|' if next == Some('|') => (Tok::OrOr, 2),
            '|' => return syntax(column, "expected `||` (or `or`), found a single `|`"),
            '\'' | '"' => {
                let (s, end) = lex_string(&chars, i)?;
                (Tok::Str(s), end - i)
            }
            '-' | '0'..='9' => {
                let (n, end) = lex_number(&chars, i)?;
                (Tok::Num(n), end - i)
            }
            c if is_ident_start(c) => {
                let mut end = i + 1;
                while chars.get(end).copied().is_some_and(is_ident_continue) {
                    end += 1;
                }
                let name: String = chars.get(i..end).unwrap_or_default().iter().collect();
                (Tok::Ident(name), end - i)
            }
            other => {
                return syntax(
                    column,
                    format!("unexpected character {}", quote(&other.to_string())),
                );
            }
        };
        tokens.push(Token { tok, column });
        i += len;
    }
    tokens.push(Token {
        tok: Tok::End,
        column: chars.len() + 1,
    });
    Ok(tokens)
}

/// Reads the string literal opening at `start`; returns it and the index after its end.
fn lex_string(chars: &[char], start: usize) -> Result<(String, usize), ExpressionError> {
    let quote_char = chars.get(start).copied().unwrap_or('"');
    let unclosed = || {
        syntax(
            start + 1,
            format!("the string starting here is not closed; end it with {quote_char}"),
        )
    };
    let mut out = String::new();
    let mut j = start + 1;
    loop {
        match chars.get(j).copied() {
            None => return unclosed(),
            Some(c) if c == quote_char => return Ok((out, j + 1)),
            Some('\\') => {
                let escape_column = j + 1;
                let (c, len) = match chars.get(j + 1).copied() {
                    None => return unclosed(),
                    Some('\\') => ('\\', 2),
                    Some('\'') => ('\'', 2),
                    Some('"') => ('"', 2),
                    Some('n') => ('\n', 2),
                    Some('r') => ('\r', 2),
                    Some('t') => ('\t', 2),
                    Some('u') => lex_unicode_escape(chars, j)?,
                    Some(other) => {
                        return syntax(
                            escape_column,
                            format!(
                                "unknown escape `\\{other}`; the escapes are \\\\, \\', \\\", \\n, \\r, \\t, \\uXXXX and \\u{{X…}}"
                            ),
                        );
                    }
                };
                out.push(c);
                j += len;
            }
            Some(c) => {
                out.push(c);
                j += 1;
            }
        }
    }
}

/// Reads `\uXXXX` or `\u{X…}` starting at the backslash at `at`.
fn lex_unicode_escape(chars: &[char], at: usize) -> Result<(char, usize), ExpressionError> {
    let column = at + 1;
    let hex_digits = |from: usize, max: usize| {
        chars
            .get(from..)
            .unwrap_or_default()
            .iter()
            .take(max)
            .take_while(|c| c.is_ascii_hexdigit())
            .collect::<String>()
    };
    let (digits, len) = if chars.get(at + 2) == Some(&'{') {
        let digits = hex_digits(at + 3, 6);
        if digits.is_empty() || chars.get(at + 3 + digits.len()) != Some(&'}') {
            return syntax(
                column,
                "expected 1 to 6 hexadecimal digits and `}` in a `\\u{…}` escape",
            );
        }
        let len = 4 + digits.len();
        (digits, len)
    } else {
        let digits = hex_digits(at + 2, 4);
        if digits.len() != 4 {
            return syntax(
                column,
                "expected 4 hexadecimal digits after `\\u` (or `\\u{…}`)",
            );
        }
        (digits, 6)
    };
    let c = u32::from_str_radix(&digits, 16)
        .ok()
        .and_then(char::from_u32);
    match c {
        Some(c) => Ok((c, len)),
        None => syntax(
            column,
            format!("`\\u{{{digits}}}` is not a Unicode character"),
        ),
    }
}

/// Reads the number starting at `start`; returns it and the index after its end.
fn lex_number(chars: &[char], start: usize) -> Result<(Number, usize), ExpressionError> {
    let digit_at = |k: usize| chars.get(k).is_some_and(char::is_ascii_digit);
    let mut j = start;
    if chars.get(j) == Some(&'-') {
        j += 1;
        if !digit_at(j) {
            return syntax(start + 1, "expected a digit after `-`");
        }
    }
    while digit_at(j) {
        j += 1;
    }
    let mut integer = true;
    if chars.get(j) == Some(&'.') {
        if !digit_at(j + 1) {
            return syntax(j + 1, "expected a digit after the decimal point");
        }
        integer = false;
        j += 1;
        while digit_at(j) {
            j += 1;
        }
    }
    if matches!(chars.get(j), Some('e' | 'E')) {
        integer = false;
        let exponent_column = j + 1;
        j += 1;
        if matches!(chars.get(j), Some('+' | '-')) {
            j += 1;
        }
        if !digit_at(j) {
            return syntax(exponent_column, "expected digits in the exponent");
        }
        while digit_at(j) {
            j += 1;
        }
    }
    let text: String = chars.get(start..j).unwrap_or_default().iter().collect();
    if integer {
        if let Ok(n) = text.parse::<i64>() {
            return Ok((n.into(), j));
        }
        if let Ok(n) = text.parse::<u64>() {
            return Ok((n.into(), j));
        }
    }
    match text.parse::<f64>().ok().and_then(Number::from_f64) {
        Some(n) if n.as_f64().is_some_and(f64::is_finite) => Ok((n, j)),
        _ => syntax(start + 1, format!("the number {text} is out of range")),
    }
}

// ---------------------------------------------------------------------------------------
// Paths

/// Where a path starts.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Root {
    Data,
    Id,
    Source,
    Type,
    Subject,
    Time,
    DataContentType,
    DataSchema,
    SpecVersion,
    Extension(String),
}

impl Root {
    fn name(&self) -> &str {
        match self {
            Self::Data => "data",
            Self::Id => "id",
            Self::Source => "source",
            Self::Type => "type",
            Self::Subject => "subject",
            Self::Time => "time",
            Self::DataContentType => "datacontenttype",
            Self::DataSchema => "dataschema",
            Self::SpecVersion => "specversion",
            Self::Extension(name) => name,
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "data" => Self::Data,
            "id" => Self::Id,
            "source" => Self::Source,
            "type" => Self::Type,
            "subject" => Self::Subject,
            "time" => Self::Time,
            "datacontenttype" => Self::DataContentType,
            "dataschema" => Self::DataSchema,
            "specversion" => Self::SpecVersion,
            ext if is_extension_name(ext) => Self::Extension(ext.to_string()),
            _ => return None,
        })
    }
}

/// CloudEvents extension names: 1-20 lowercase ASCII letters or digits.
fn is_extension_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 20
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
}

/// One step into the event data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Segment {
    /// A field of an object.
    Key(String),
    /// An element of an array.
    Index(usize),
}

/// A path to a value of an event: `data`, `data.school`, `data.items[0].code`,
/// `data["codice scuola"]`, or an attribute (`type`, `source`, `subject`, `id`, `time`,
/// `datacontenttype`, `dataschema`, `specversion`, or an extension attribute by name).
///
/// Shared by filter expressions and transformations; (de)serialised as its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path {
    root: Root,
    segments: Vec<Segment>,
}

impl Path {
    /// The value at this path in `event`, or `None` when it is absent. Attributes are
    /// strings (`time` as RFC 3339 UTC text); extension attributes keep their JSON type.
    pub fn value(&self, event: &CloudEvent) -> Option<Value> {
        match self.resolve(event)? {
            Val::Json(v) => Some(v.clone()),
            Val::Str(s) => Some(Value::String(s.to_string())),
            Val::Time(t) => format_time(t).map(Value::String),
        }
    }

    /// The steps into the data when this is a `data` path (empty for `data` itself).
    pub(crate) fn data_segments(&self) -> Option<&[Segment]> {
        match self.root {
            Root::Data => Some(&self.segments),
            _ => None,
        }
    }

    fn is_time(&self) -> bool {
        self.root == Root::Time
    }

    fn resolve<'a>(&'a self, event: &'a CloudEvent) -> Option<Val<'a>> {
        let attribute = |s: &'a Option<String>| s.as_deref().map(Val::Str);
        match &self.root {
            Root::Data => {
                let mut value = event.data.as_ref()?;
                for segment in &self.segments {
                    value = match (segment, value) {
                        (Segment::Key(key), Value::Object(map)) => map.get(key)?,
                        (Segment::Index(i), Value::Array(items)) => items.get(*i)?,
                        _ => return None,
                    };
                }
                Some(Val::Json(value))
            }
            Root::Id => Some(Val::Str(&event.id)),
            Root::Source => Some(Val::Str(&event.source)),
            Root::Type => Some(Val::Str(&event.ty)),
            Root::Subject => attribute(&event.subject),
            Root::Time => event.time.map(Val::Time),
            Root::DataContentType => attribute(&event.datacontenttype),
            Root::DataSchema => attribute(&event.dataschema),
            Root::SpecVersion => Some(Val::Str(SPEC_VERSION)),
            Root::Extension(name) => event.extensions.get(name).map(Val::Json),
        }
    }
}

impl FromStr for Path {
    type Err = ExpressionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        check_len(s)?;
        let mut parser = Parser::new(s)?;
        let first = parser.peek().clone();
        match &first.tok {
            Tok::Ident(name) if !is_keyword(name) => {}
            other => {
                return syntax(
                    first.column,
                    format!(
                        "expected a path such as data.school or an attribute ({ATTRIBUTES}), found {}",
                        describe(other)
                    ),
                );
            }
        }
        let path = parser.parse_path()?;
        let end = parser.peek();
        if end.tok != Tok::End {
            return syntax(
                end.column,
                format!(
                    "expected `.`, `[` or the end of the path, found {}",
                    describe(&end.tok)
                ),
            );
        }
        Ok(path)
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.root.name())?;
        for segment in &self.segments {
            match segment {
                Segment::Key(key) if is_plain_name(key) => write!(f, ".{key}")?,
                Segment::Key(key) => write!(f, "[{}]", quote(key))?,
                Segment::Index(i) => write!(f, "[{i}]")?,
            }
        }
        Ok(())
    }
}

impl Serialize for Path {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Path {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse()
            .map_err(|e| serde::de::Error::custom(format!("invalid path {text:?}: {e}")))
    }
}

// ---------------------------------------------------------------------------------------
// Expressions

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    StartsWith,
    Contains,
}

impl CmpOp {
    fn text(self) -> &'static str {
        match self {
            Self::Eq => "==",
            Self::Ne => "!=",
            Self::Lt => "<",
            Self::Le => "<=",
            Self::Gt => ">",
            Self::Ge => ">=",
            Self::StartsWith => "startswith",
            Self::Contains => "contains",
        }
    }

    fn is_ordering(self) -> bool {
        !matches!(self, Self::StartsWith | Self::Contains)
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Literal {
    Json(Value),
    /// A string compared with the `time` attribute, read as RFC 3339 when parsing.
    Time {
        micros: i64,
        text: String,
    },
}

#[derive(Debug, Clone, PartialEq)]
enum Operand {
    Path(Path),
    Literal(Literal),
}

impl Operand {
    fn resolve<'a>(&'a self, event: &'a CloudEvent) -> Option<Val<'a>> {
        match self {
            Self::Path(p) => p.resolve(event),
            Self::Literal(Literal::Json(v)) => Some(Val::Json(v)),
            Self::Literal(Literal::Time { micros, .. }) => Some(Val::Time(*micros)),
        }
    }

    fn is_time(&self) -> bool {
        matches!(self, Self::Path(p) if p.is_time())
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Or(Vec<Node>),
    And(Vec<Node>),
    Not(Box<Node>),
    Compare {
        left: Operand,
        op: CmpOp,
        right: Operand,
    },
    In {
        left: Operand,
        list: Vec<Literal>,
    },
    Exists(Path),
    /// A bare path or boolean literal: true when it is the boolean `true`.
    Truth(Operand),
}

impl Node {
    fn eval(&self, event: &CloudEvent) -> bool {
        match self {
            Self::Or(items) => items.iter().any(|n| n.eval(event)),
            Self::And(items) => items.iter().all(|n| n.eval(event)),
            Self::Not(inner) => !inner.eval(event),
            Self::Exists(path) => path.resolve(event).is_some(),
            Self::Truth(operand) => {
                matches!(operand.resolve(event), Some(Val::Json(Value::Bool(true))))
            }
            Self::Compare { left, op, right } => {
                let (Some(a), Some(b)) = (left.resolve(event), right.resolve(event)) else {
                    return false;
                };
                match op {
                    CmpOp::Eq => equal(a, b) == Some(true),
                    CmpOp::Ne => equal(a, b) == Some(false),
                    CmpOp::Lt => order(a, b) == Some(Ordering::Less),
                    CmpOp::Le => matches!(order(a, b), Some(Ordering::Less | Ordering::Equal)),
                    CmpOp::Gt => order(a, b) == Some(Ordering::Greater),
                    CmpOp::Ge => {
                        matches!(order(a, b), Some(Ordering::Greater | Ordering::Equal))
                    }
                    CmpOp::StartsWith => match (a.text(), b.text()) {
                        (Some(x), Some(y)) => x.starts_with(&*y),
                        _ => false,
                    },
                    CmpOp::Contains => contains(a, b),
                }
            }
            Self::In { left, list } => {
                let Some(a) = left.resolve(event) else {
                    return false;
                };
                list.iter().any(|literal| {
                    let b = match literal {
                        Literal::Json(v) => Val::Json(v),
                        Literal::Time { micros, .. } => Val::Time(*micros),
                    };
                    equal(a, b) == Some(true)
                })
            }
        }
    }
}

/// A resolved value, borrowed from the event or the expression.
#[derive(Debug, Clone, Copy)]
enum Val<'a> {
    Json(&'a Value),
    Str(&'a str),
    Time(i64),
}

impl<'a> Val<'a> {
    fn as_str(self) -> Option<&'a str> {
        match self {
            Self::Str(s) => Some(s),
            Self::Json(Value::String(s)) => Some(s),
            _ => None,
        }
    }

    /// The value as text for `startswith`/`contains` (`time` as RFC 3339 UTC).
    fn text(self) -> Option<Cow<'a, str>> {
        match self {
            Self::Time(t) => format_time(t).map(Cow::Owned),
            other => other.as_str().map(Cow::Borrowed),
        }
    }
}

fn parse_time(s: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.timestamp_micros())
}

/// RFC 3339 UTC text of a time, as in the CloudEvents JSON format.
pub(crate) fn format_time(micros: i64) -> Option<String> {
    DateTime::from_timestamp_micros(micros).map(|t| t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
}

fn as_integer(n: &Number) -> Option<i128> {
    n.as_i64()
        .map(i128::from)
        .or_else(|| n.as_u64().map(i128::from))
}

fn compare_numbers(a: &Number, b: &Number) -> Option<Ordering> {
    match (as_integer(a), as_integer(b)) {
        (Some(x), Some(y)) => Some(x.cmp(&y)),
        _ => a.as_f64()?.partial_cmp(&b.as_f64()?),
    }
}

/// `Some(equal?)` when the two values are comparable, `None` on a kind mismatch.
fn equal(a: Val<'_>, b: Val<'_>) -> Option<bool> {
    match (a, b) {
        (Val::Json(Value::Null), Val::Json(Value::Null)) => Some(true),
        (Val::Json(Value::Null), _) | (_, Val::Json(Value::Null)) => Some(false),
        (Val::Time(x), Val::Time(y)) => Some(x == y),
        (Val::Time(x), other) | (other, Val::Time(x)) => {
            parse_time(other.as_str()?).map(|y| x == y)
        }
        (Val::Json(Value::Number(x)), Val::Json(Value::Number(y))) => {
            Some(compare_numbers(x, y)? == Ordering::Equal)
        }
        (Val::Json(Value::Bool(x)), Val::Json(Value::Bool(y))) => Some(x == y),
        (Val::Json(x @ Value::Array(_)), Val::Json(y @ Value::Array(_)))
        | (Val::Json(x @ Value::Object(_)), Val::Json(y @ Value::Object(_))) => Some(x == y),
        _ => Some(a.as_str()? == b.as_str()?),
    }
}

/// The order of two numbers, two strings or two times; `None` otherwise.
fn order(a: Val<'_>, b: Val<'_>) -> Option<Ordering> {
    match (a, b) {
        (Val::Time(x), Val::Time(y)) => Some(x.cmp(&y)),
        (Val::Time(x), other) => Some(x.cmp(&parse_time(other.as_str()?)?)),
        (other, Val::Time(y)) => Some(parse_time(other.as_str()?)?.cmp(&y)),
        (Val::Json(Value::Number(x)), Val::Json(Value::Number(y))) => compare_numbers(x, y),
        _ => Some(a.as_str()?.cmp(b.as_str()?)),
    }
}

fn contains(a: Val<'_>, b: Val<'_>) -> bool {
    if let Val::Json(Value::Array(items)) = a {
        return items
            .iter()
            .any(|item| equal(Val::Json(item), b) == Some(true));
    }
    match (a.text(), b.text()) {
        (Some(x), Some(y)) => x.contains(&*y),
        _ => false,
    }
}

/// A parsed filter expression (see the [module documentation](self) for the grammar and
/// the semantics).
///
/// It keeps the text it was parsed from: serde writes that text back unchanged, while
/// [`Display`](fmt::Display) writes a normalised form (keywords, one space around
/// operators, only the parentheses needed) that parses to the same expression (it can be
/// longer than the original, `&&` becoming `and`, so near [`MAX_EXPRESSION_LEN`] it may
/// exceed the limit; what is stored is the original). Two expressions are equal when they
/// parse to the same structure, whatever their spelling.
#[derive(Debug, Clone)]
pub struct Expression {
    source: String,
    root: Node,
}

impl PartialEq for Expression {
    fn eq(&self, other: &Self) -> bool {
        self.root == other.root
    }
}

impl Expression {
    /// Parses an expression (the same as [`str::parse`]).
    pub fn parse(text: &str) -> Result<Self, ExpressionError> {
        text.parse()
    }

    /// Whether `event` satisfies the expression. Never fails: absent values and mismatched
    /// kinds make comparisons false.
    pub fn matches(&self, event: &CloudEvent) -> bool {
        self.root.eval(event)
    }

    /// The text the expression was parsed from.
    pub fn as_str(&self) -> &str {
        &self.source
    }
}

fn check_len(s: &str) -> Result<(), ExpressionError> {
    if s.len() > MAX_EXPRESSION_LEN {
        return Err(ExpressionError::TooLong {
            len: s.len(),
            max: MAX_EXPRESSION_LEN,
        });
    }
    Ok(())
}

impl FromStr for Expression {
    type Err = ExpressionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        check_len(s)?;
        let mut parser = Parser::new(s)?;
        let root = parser.parse_or(0)?;
        let end = parser.peek();
        if end.tok != Tok::End {
            return syntax(
                end.column,
                format!(
                    "expected `and`, `or` or the end of the expression, found {}",
                    describe(&end.tok)
                ),
            );
        }
        Ok(Self {
            source: s.to_string(),
            root,
        })
    }
}

impl fmt::Display for Expression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.root)
    }
}

impl Serialize for Expression {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.source)
    }
}

impl<'de> Deserialize<'de> for Expression {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse()
            .map_err(|e| serde::de::Error::custom(format!("invalid filter expression: {e}")))
    }
}

fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

impl fmt::Display for Literal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Json(Value::String(s)) | Self::Time { text: s, .. } => f.write_str(&quote(s)),
            Self::Json(other) => write!(f, "{other}"),
        }
    }
}

impl fmt::Display for Operand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Path(p) => write!(f, "{p}"),
            Self::Literal(l) => write!(f, "{l}"),
        }
    }
}

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Parentheses only where the structure needs them, so that the text parses back to
        // the same tree.
        let child = |f: &mut fmt::Formatter<'_>, node: &Node, wrap: bool| {
            if wrap {
                write!(f, "({node})")
            } else {
                write!(f, "{node}")
            }
        };
        match self {
            Self::Or(items) => {
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" or ")?;
                    }
                    child(f, item, matches!(item, Self::Or(_)))?;
                }
                Ok(())
            }
            Self::And(items) => {
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" and ")?;
                    }
                    child(f, item, matches!(item, Self::Or(_) | Self::And(_)))?;
                }
                Ok(())
            }
            Self::Not(inner) => {
                f.write_str("not ")?;
                child(f, inner, matches!(**inner, Self::Or(_) | Self::And(_)))
            }
            Self::Compare { left, op, right } => write!(f, "{left} {} {right}", op.text()),
            Self::In { left, list } => {
                write!(f, "{left} in [")?;
                for (i, literal) in list.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{literal}")?;
                }
                f.write_str("]")
            }
            Self::Exists(path) => write!(f, "exists({path})"),
            Self::Truth(operand) => write!(f, "{operand}"),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Parser

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
}

const CONDITION: &str =
    "a condition (a comparison such as data.meals > 100, exists(…), not …, or `(`)";

const OPERATORS: &str = "==, !=, <, <=, >, >=, in, startswith, contains";

impl Parser {
    fn new(src: &str) -> Result<Self, ExpressionError> {
        Ok(Self {
            tokens: lex(src)?,
            pos: 0,
        })
    }

    fn peek(&self) -> &Token {
        // `lex` always ends the tokens with `End`, and `bump` never moves past it.
        const END: Token = Token {
            tok: Tok::End,
            column: 1,
        };
        self.tokens.get(self.pos).unwrap_or(&END)
    }

    fn bump(&mut self) -> Token {
        let token = self.peek().clone();
        if token.tok != Tok::End {
            self.pos += 1;
        }
        token
    }

    fn at_keyword(&self, keyword: &str) -> bool {
        matches!(&self.peek().tok, Tok::Ident(s) if s == keyword)
    }

    fn expect(&mut self, tok: Tok, what: &str) -> Result<(), ExpressionError> {
        let next = self.peek();
        if next.tok == tok {
            self.bump();
            Ok(())
        } else {
            syntax(
                next.column,
                format!("expected {what}, found {}", describe(&next.tok)),
            )
        }
    }

    fn deeper(depth: usize, column: usize) -> Result<usize, ExpressionError> {
        if depth >= MAX_DEPTH {
            return syntax(
                column,
                format!("parentheses and `not` nest more than {MAX_DEPTH} levels deep"),
            );
        }
        Ok(depth + 1)
    }

    fn parse_or(&mut self, depth: usize) -> Result<Node, ExpressionError> {
        let first = self.parse_and(depth)?;
        let mut items = Vec::new();
        while self.peek().tok == Tok::OrOr || self.at_keyword("or") {
            self.bump();
            items.push(self.parse_and(depth)?);
        }
        if items.is_empty() {
            return Ok(first);
        }
        items.insert(0, first);
        Ok(Node::Or(items))
    }

    fn parse_and(&mut self, depth: usize) -> Result<Node, ExpressionError> {
        let first = self.parse_not(depth)?;
        let mut items = Vec::new();
        while self.peek().tok == Tok::AndAnd || self.at_keyword("and") {
            self.bump();
            items.push(self.parse_not(depth)?);
        }
        if items.is_empty() {
            return Ok(first);
        }
        items.insert(0, first);
        Ok(Node::And(items))
    }

    fn parse_not(&mut self, depth: usize) -> Result<Node, ExpressionError> {
        if self.peek().tok == Tok::Bang || self.at_keyword("not") {
            let token = self.bump();
            let depth = Self::deeper(depth, token.column)?;
            return Ok(Node::Not(Box::new(self.parse_not(depth)?)));
        }
        self.parse_primary(depth)
    }

    fn parse_primary(&mut self, depth: usize) -> Result<Node, ExpressionError> {
        let start = self.peek().clone();
        if start.tok == Tok::LParen {
            self.bump();
            let depth = Self::deeper(depth, start.column)?;
            let inner = self.parse_or(depth)?;
            self.expect(
                Tok::RParen,
                &format!("`)` to close the `(` at column {}", start.column),
            )?;
            return Ok(inner);
        }
        if self.at_keyword("exists") {
            self.bump();
            self.expect(Tok::LParen, "`(` after `exists`")?;
            let next = self.peek().clone();
            if !matches!(&next.tok, Tok::Ident(name) if !is_keyword(name)) {
                return syntax(
                    next.column,
                    format!(
                        "expected a path inside exists(…), found {}",
                        describe(&next.tok)
                    ),
                );
            }
            let path = self.parse_path()?;
            self.expect(Tok::RParen, "`)` after the path in exists(…)")?;
            return Ok(Node::Exists(path));
        }
        let left_column = start.column;
        let left = self.parse_operand(CONDITION)?;
        let next = self.peek().clone();
        let op = match &next.tok {
            Tok::Eq => Some(CmpOp::Eq),
            Tok::Ne => Some(CmpOp::Ne),
            Tok::Lt => Some(CmpOp::Lt),
            Tok::Le => Some(CmpOp::Le),
            Tok::Gt => Some(CmpOp::Gt),
            Tok::Ge => Some(CmpOp::Ge),
            Tok::Ident(s) if s == "startswith" => Some(CmpOp::StartsWith),
            Tok::Ident(s) if s == "contains" => Some(CmpOp::Contains),
            _ => None,
        };
        if let Some(op) = op {
            self.bump();
            let right_column = self.peek().column;
            let right = self.parse_operand(&format!("a value or a path after `{}`", op.text()))?;
            return Self::compare(left, op, right, left_column, right_column);
        }
        if self.at_keyword("in") {
            self.bump();
            let list = self.parse_list(left.is_time())?;
            return Ok(Node::In { left, list });
        }
        let truth_test = match &left {
            Operand::Path(_) => true,
            Operand::Literal(Literal::Json(v)) => v.is_boolean(),
            Operand::Literal(Literal::Time { .. }) => false,
        };
        let ends_condition = matches!(&next.tok, Tok::AndAnd | Tok::OrOr | Tok::RParen | Tok::End)
            || matches!(&next.tok, Tok::Ident(s) if s == "and" || s == "or");
        if truth_test && ends_condition {
            return Ok(Node::Truth(left));
        }
        let message = if truth_test {
            format!(
                "expected an operator ({OPERATORS}), `and`, `or` or the end after {left}, found {}",
                describe(&next.tok)
            )
        } else {
            format!(
                "expected an operator ({OPERATORS}) after {left}, found {}",
                describe(&next.tok)
            )
        };
        syntax(next.column, message)
    }

    /// A comparison; with `time` on one side, a string literal on the other must be an
    /// RFC 3339 time.
    fn compare(
        left: Operand,
        op: CmpOp,
        right: Operand,
        left_column: usize,
        right_column: usize,
    ) -> Result<Node, ExpressionError> {
        if !op.is_ordering() {
            return Ok(Node::Compare { left, op, right });
        }
        let (left, right) = match (left, right) {
            (Operand::Path(p), Operand::Literal(l)) if p.is_time() => (
                Operand::Path(p),
                Operand::Literal(time_literal(l, right_column)?),
            ),
            (Operand::Literal(l), Operand::Path(p)) if p.is_time() => (
                Operand::Literal(time_literal(l, left_column)?),
                Operand::Path(p),
            ),
            other => other,
        };
        Ok(Node::Compare { left, op, right })
    }

    fn parse_list(&mut self, time: bool) -> Result<Vec<Literal>, ExpressionError> {
        self.expect(Tok::LBracket, "`[` and a list of values after `in`")?;
        let mut list = Vec::new();
        if self.peek().tok == Tok::RBracket {
            self.bump();
            return Ok(list);
        }
        loop {
            let next = self.peek().clone();
            let literal = match self
                .parse_operand("a value (string, number, true, false or null) in the list")?
            {
                Operand::Literal(l) => l,
                Operand::Path(p) => {
                    return syntax(
                        next.column,
                        format!(
                            "expected a value (string, number, true, false or null) in the list, found the path {p}; a list holds constants only"
                        ),
                    );
                }
            };
            list.push(if time {
                time_literal(literal, next.column)?
            } else {
                literal
            });
            let sep = self.bump();
            match sep.tok {
                Tok::Comma => {}
                Tok::RBracket => return Ok(list),
                other => {
                    return syntax(
                        sep.column,
                        format!(
                            "expected `,` or `]` in the list, found {}",
                            describe(&other)
                        ),
                    );
                }
            }
        }
    }

    fn parse_operand(&mut self, what: &str) -> Result<Operand, ExpressionError> {
        let next = self.peek().clone();
        let literal = match &next.tok {
            Tok::Str(s) => Value::String(s.clone()),
            Tok::Num(n) => Value::Number(n.clone()),
            Tok::Ident(s) if s == "true" => Value::Bool(true),
            Tok::Ident(s) if s == "false" => Value::Bool(false),
            Tok::Ident(s) if s == "null" => Value::Null,
            Tok::Ident(s) if !is_keyword(s) => return Ok(Operand::Path(self.parse_path()?)),
            other => {
                return syntax(
                    next.column,
                    format!("expected {what}, found {}", describe(other)),
                );
            }
        };
        self.bump();
        Ok(Operand::Literal(Literal::Json(literal)))
    }

    /// A path; the current token is a name that is not a keyword.
    fn parse_path(&mut self) -> Result<Path, ExpressionError> {
        let first = self.bump();
        let Tok::Ident(name) = &first.tok else {
            return syntax(
                first.column,
                format!("expected a path, found {}", describe(&first.tok)),
            );
        };
        let Some(root) = Root::from_name(name) else {
            return syntax(
                first.column,
                format!(
                    "`{name}` is not an attribute: write data.{name} for a field of the event data, or use one of {ATTRIBUTES} or an extension attribute (1-20 lowercase letters or digits)"
                ),
            );
        };
        let mut segments = Vec::new();
        loop {
            let next = self.peek().clone();
            if matches!(next.tok, Tok::Dot | Tok::LBracket) && root != Root::Data {
                return syntax(
                    next.column,
                    format!(
                        "`{}` is a single value without fields; only data paths go deeper (data.field, data.items[0])",
                        root.name()
                    ),
                );
            }
            match next.tok {
                Tok::Dot => {
                    self.bump();
                    let field = self.bump();
                    match field.tok {
                        Tok::Ident(key) => segments.push(Segment::Key(key)),
                        other => {
                            return syntax(
                                field.column,
                                format!(
                                    "expected a field name after `.`, found {} (write [\"…\"] for other names, [0] for array elements)",
                                    describe(&other)
                                ),
                            );
                        }
                    }
                }
                Tok::LBracket => {
                    self.bump();
                    let inside = self.bump();
                    let segment = match &inside.tok {
                        Tok::Str(key) => Segment::Key(key.clone()),
                        Tok::Num(n) => match n.as_u64().and_then(|i| usize::try_from(i).ok()) {
                            Some(i) => Segment::Index(i),
                            None => {
                                return syntax(
                                    inside.column,
                                    format!("array index {n} is not a whole number ≥ 0"),
                                );
                            }
                        },
                        other => {
                            return syntax(
                                inside.column,
                                format!(
                                    "expected an array index (0, 1, …) or a quoted field name inside `[ ]`, found {}",
                                    describe(other)
                                ),
                            );
                        }
                    };
                    self.expect(Tok::RBracket, "`]`")?;
                    segments.push(segment);
                }
                _ => break,
            }
        }
        Ok(Path { root, segments })
    }
}

/// A literal compared with `time`: a string must be an RFC 3339 time.
fn time_literal(literal: Literal, column: usize) -> Result<Literal, ExpressionError> {
    match literal {
        Literal::Json(Value::String(text)) => match parse_time(&text) {
            Some(micros) => Ok(Literal::Time { micros, text }),
            None => syntax(
                column,
                format!(
                    "`time` is compared as a point in time, and {} is not an RFC 3339 time such as \"2026-03-01T08:00:00Z\"",
                    quote(&text)
                ),
            ),
        },
        Literal::Json(Value::Null) => Ok(Literal::Json(Value::Null)),
        Literal::Json(other) => syntax(
            column,
            format!(
                "`time` is compared with an RFC 3339 time string such as \"2026-03-01T08:00:00Z\", not with {other}"
            ),
        ),
        time @ Literal::Time { .. } => Ok(time),
    }
}

// ---------------------------------------------------------------------------------------
// Filters

/// What is wrong with an [`EventFilter`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    /// An entry of `types` or `sources` is empty.
    #[error("{field}[{index}] is empty; leave it out (an empty {field} list matches any event)")]
    EmptyPattern {
        /// `types` or `sources`.
        field: &'static str,
        /// Position in the list (0-based).
        index: usize,
    },
    /// A `*` that is not the last character.
    #[error(
        "{field}[{index}] {pattern:?}: `*` is only a wildcard as the last character (a prefix such as \"it.prato.school.*\")"
    )]
    InnerWildcard {
        /// `types` or `sources`.
        field: &'static str,
        /// Position in the list (0-based).
        index: usize,
        /// The entry.
        pattern: String,
    },
    /// `subject_prefix` is an empty string.
    #[error("subject_prefix is empty; leave it out to match events with any subject or none")]
    EmptySubjectPrefix,
}

/// Which events a subscription receives. Every part that is set must match; empty lists
/// and absent parts match any event.
///
/// JSON shape (all fields optional):
///
/// ```json
/// {
///   "types": ["it.prato.school.*", "it.prato.lab.loan.opened"],
///   "sources": ["/prato/schools"],
///   "subject_prefix": "school-",
///   "expression": "data.meals > 100 and data.diets contains 'celiac'"
/// }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventFilter {
    /// Event types: exact, or a prefix when the entry ends with `*`. Empty: any type.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub types: Vec<String>,
    /// Event sources: exact, or a prefix when the entry ends with `*`. Empty: any source.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<String>,
    /// The subject must be present and start with this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_prefix: Option<String>,
    /// A condition on the attributes and data (see [`Expression`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expression: Option<Expression>,
}

fn pattern_matches(pattern: &str, value: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => value.starts_with(prefix),
        None => pattern == value,
    }
}

impl EventFilter {
    /// A filter that matches every event.
    pub fn any() -> Self {
        Self::default()
    }

    /// Whether events of type `ty` from `source` can pass the filter (its type and source
    /// patterns; the subject prefix and the expression look at each event).
    pub fn admits(&self, ty: &str, source: &str) -> bool {
        let listed = |patterns: &[String], value: &str| {
            patterns.is_empty() || patterns.iter().any(|p| pattern_matches(p, value))
        };
        listed(&self.types, ty) && listed(&self.sources, source)
    }

    /// Whether `event` passes the filter.
    pub fn matches(&self, event: &CloudEvent) -> bool {
        self.admits(&event.ty, &event.source)
            && self.subject_prefix.as_deref().is_none_or(|prefix| {
                event
                    .subject
                    .as_deref()
                    .is_some_and(|s| s.starts_with(prefix))
            })
            && self.expression.as_ref().is_none_or(|e| e.matches(event))
    }

    /// Checks the type and source patterns and the subject prefix (the expression was
    /// checked when it was parsed).
    pub fn validate(&self) -> Result<(), FilterError> {
        for (field, patterns) in [("types", &self.types), ("sources", &self.sources)] {
            for (index, pattern) in patterns.iter().enumerate() {
                if pattern.is_empty() {
                    return Err(FilterError::EmptyPattern { field, index });
                }
                let body = pattern.strip_suffix('*').unwrap_or(pattern);
                if body.contains('*') {
                    return Err(FilterError::InnerWildcard {
                        field,
                        index,
                        pattern: pattern.clone(),
                    });
                }
            }
        }
        if self.subject_prefix.as_deref() == Some("") {
            return Err(FilterError::EmptySubjectPrefix);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    /// 2026-03-02T07:30:00.250Z
    const MEAL_TIME: i64 = 1_772_436_600_250_000;

    fn meal() -> CloudEvent {
        CloudEvent::new(
            "evt-1",
            "/prato/schools/canteen",
            "it.prato.school.canteen.MealOrdered",
        )
        .with_subject("school-mazzoni")
        .with_time(MEAL_TIME)
        .with_data(json!({
            "school": "Mazzoni",
            "meals": 120,
            "price": 4.5,
            "diets": ["celiac"],
            "district": "Centro",
            "open": true,
            "closed": false,
            "note": null,
            "items": [{"code": "P-01", "qty": 80}, {"code": "V-02", "qty": 40}],
            "codice scuola": "POEE00123",
            "città": "Prato",
            "when": "2026-03-02T08:30:00.25+01:00"
        }))
        .with_extension("traceid", json!("abc-123"))
        .with_extension("priority", json!(3))
    }

    fn expr(s: &str) -> Expression {
        s.parse()
            .unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
    }

    fn eval(s: &str) -> bool {
        expr(s).matches(&meal())
    }

    fn parse_error(s: &str) -> (usize, String) {
        match s.parse::<Expression>() {
            Ok(e) => panic!("{s:?} should not parse, got {e}"),
            Err(ExpressionError::Syntax { column, message }) => (column, message),
            Err(other) => panic!("{s:?}: expected a syntax error, got {other}"),
        }
    }

    #[test]
    fn evaluation_table() {
        let table: &[(&str, bool)] = &[
            // attributes
            ("type == 'it.prato.school.canteen.MealOrdered'", true),
            ("type startswith 'it.prato.school.'", true),
            ("source == \"/prato/schools/canteen\"", true),
            ("subject startswith 'school-'", true),
            ("id == 'evt-1'", true),
            ("datacontenttype == 'application/json'", true),
            ("specversion == '1.0'", true),
            ("traceid == 'abc-123'", true),
            ("priority >= 3", true),
            ("priority > 3", false),
            // data comparisons
            ("data.school == 'Mazzoni'", true),
            ("data.school != 'Mazzoni'", false),
            ("data.school != 'Buricchi'", true),
            ("data.meals == 120", true),
            ("data.meals == 120.0", true),
            ("data.meals > 100", true),
            ("data.meals >= 120", true),
            ("data.meals < 120", false),
            ("data.meals <= 119.5", false),
            ("data.price > 4", true),
            ("data.price < 4.75", true),
            ("data.meals > -1", true),
            ("100 < data.meals", true),
            ("data.school < 'N'", true),
            ("data.school > 'mazzoni'", false),
            ("data.open == true", true),
            ("data.closed == false", true),
            ("data.note == null", true),
            ("data.note != null", false),
            ("data.school != null", true),
            // truth tests
            ("data.open", true),
            ("data.closed", false),
            ("not data.closed", true),
            ("data.school", false),
            ("true", true),
            ("false", false),
            // in, startswith, contains
            ("data.district in ['Centro', 'Nord']", true),
            ("data.district in ['Sud', 'Nord']", false),
            ("data.meals in [100, 120]", true),
            ("data.district in []", false),
            ("data.school startswith 'Maz'", true),
            ("data.school startswith 'maz'", false),
            ("data.school contains 'zzo'", true),
            ("data.diets contains 'celiac'", true),
            ("data.diets contains 'vegan'", false),
            // nested paths and quoted names
            ("data.items[0].code == 'P-01'", true),
            ("data.items[1].qty == 40", true),
            ("data.items[2].code == 'Z'", false),
            ("data[\"codice scuola\"] == 'POEE00123'", true),
            ("data.città == 'Prato'", true),
            ("data['items'][1]['code'] == 'V-02'", true),
            // missing fields are absent: every comparison is false
            ("data.missing == 'x'", false),
            ("data.missing != 'x'", false),
            ("data.missing == null", false),
            ("data.missing < 5", false),
            ("data.missing in ['x']", false),
            ("not data.missing == 'x'", true),
            ("exists(data.missing)", false),
            ("exists(data.school)", true),
            ("exists(data.note)", true),
            ("exists(data.items[1].code)", true),
            ("exists(data.items[5])", false),
            ("exists(dataschema)", false),
            ("dataschema == 'x'", false),
            ("exists(nosuchext)", false),
            ("data.school.name == 'x'", false),
            ("data.items.code == 'x'", false),
            ("data[0] == 'x'", false),
            // type mismatches are false, != included
            ("data.meals == '120'", false),
            ("data.meals != '120'", false),
            ("data.school > 3", false),
            ("data.school < 3", false),
            ("data.open == 1", false),
            ("data.open < true", false),
            ("data.meals startswith '1'", false),
            ("data.meals contains 2", false),
            ("data.diets == 'celiac'", false),
            // time: a point in time
            ("time > '2026-03-02T07:00:00Z'", true),
            ("time == '2026-03-02T08:30:00.25+01:00'", true),
            ("time == '2026-03-02T07:30:00.250000Z'", true),
            ("time < '2026-03-02T07:30:00Z'", false),
            ("'2026-01-01T00:00:00Z' <= time", true),
            ("time in ['2026-03-02T07:30:00.25Z']", true),
            ("time == data.when", true),
            ("time > data.school", false),
            ("time startswith '2026-03-02T07:30'", true),
            ("time contains 'T07:30:00.250Z'", true),
            ("time contains 'T07:30:00.25Z'", false),
            ("time != null", true),
            // boolean structure
            ("data.meals > 100 and data.diets contains 'celiac'", true),
            ("data.meals > 200 or data.district == 'Centro'", true),
            ("data.meals > 200 || data.district == 'Centro'", true),
            ("data.meals > 100 && !(data.district == 'Centro')", false),
            ("not (data.meals > 200 or data.school == 'X')", true),
            ("not not data.open", true),
            ("!!data.open", true),
        ];
        let event = meal();
        for (text, expected) in table {
            assert_eq!(expr(text).matches(&event), *expected, "{text}");
            // The normalised text means the same.
            let again = expr(&expr(text).to_string());
            assert_eq!(again, expr(text), "{text}");
            assert_eq!(again.matches(&event), *expected, "{text} (normalised)");
        }
    }

    #[test]
    fn precedence_is_not_then_and_then_or() {
        // `a or b and c` is `a or (b and c)`.
        let e = expr("data.meals > 1000 or data.open and data.closed");
        assert_eq!(e, expr("data.meals > 1000 or (data.open and data.closed)"));
        assert_ne!(e, expr("(data.meals > 1000 or data.open) and data.closed"));
        assert!(!e.matches(&meal()));
        assert!(eval("data.open or data.meals > 1000 and data.closed"));
        assert!(!eval("(data.open or data.meals > 1000) and data.closed"));
        // `not` binds tighter than `and`, and covers the whole comparison.
        assert_eq!(
            expr("not data.open and data.closed"),
            expr("(not data.open) and data.closed")
        );
        assert_eq!(
            expr("not data.meals == 120"),
            expr("not (data.meals == 120)")
        );
        assert!(!eval("not data.meals == 120"));
        // Symbols and keywords are the same operators.
        assert_eq!(
            expr("!a || b && c"),
            expr("not a or b and c"),
            "symbolic and keyword forms"
        );
    }

    #[test]
    fn display_normalises_and_keeps_needed_parentheses() {
        let cases = [
            ("a||b&&c", "a or b and c"),
            ("(a or b) and c", "(a or b) and c"),
            ("((a))", "a"),
            ("a or (b or c)", "a or (b or c)"),
            ("(a and b) and c", "(a and b) and c"),
            ("!(a && b)", "not (a and b)"),
            ("!!a", "not not a"),
            ("not(a)", "not a"),
            (
                "data.x==1&&data.y!='o\\'k'",
                "data.x == 1 and data.y != \"o'k\"",
            ),
            (
                "data['a b'][3].c  in['x',2,true,null]",
                "data[\"a b\"][3].c in [\"x\", 2, true, null]",
            ),
            ("data . a  . b>=-2.5e0", "data.a.b >= -2.5"),
            ("exists( data.x )", "exists(data.x)"),
            (
                "'tab\\tnew\\nline\\u0001\\u{1F600}' == data.s",
                "\"tab\\tnew\\nline\\u{1}😀\" == data.s",
            ),
            (
                "time>='2026-03-01T08:00:00+01:00'",
                "time >= \"2026-03-01T08:00:00+01:00\"",
            ),
            (
                "data.n == 18446744073709551615",
                "data.n == 18446744073709551615",
            ),
            (
                "data.n == 1e400000000000000000000000000000000000000000000000000000000000000000000",
                "",
            ),
        ];
        for (input, shown) in cases {
            if shown.is_empty() {
                // Out of range: refused rather than turned into infinity.
                let (column, message) = parse_error(input);
                assert_eq!(column, 11, "{input}");
                assert!(message.contains("out of range"), "{message}");
                continue;
            }
            let e = expr(input);
            assert_eq!(e.to_string(), shown, "{input}");
            assert_eq!(e.as_str(), input);
            assert_eq!(expr(shown), e, "{input}");
        }
    }

    #[test]
    fn string_escapes() {
        let event =
            CloudEvent::new("1", "s", "t").with_data(json!({"q": "it's \"quoted\"\\", "u": "é😀"}));
        assert!(expr(r#"data.q == 'it\'s "quoted"\\'"#).matches(&event));
        assert!(expr(r#"data.q == "it's \"quoted\"\\""#).matches(&event));
        assert!(expr(r#"data.u == '\u00e9\u{1f600}'"#).matches(&event));
        assert!(expr(r#"data.u == "é😀""#).matches(&event));
    }

    #[test]
    fn large_and_mixed_numbers_compare_exactly() {
        let event = CloudEvent::new("1", "s", "t").with_data(json!({
            "big": u64::MAX,
            "neg": i64::MIN,
            "near": 9_007_199_254_740_993_i64,
            "half": 0.5
        }));
        let check = |s: &str| expr(s).matches(&event);
        assert!(check("data.big == 18446744073709551615"));
        assert!(check("data.big > -1"));
        assert!(check("data.neg < 18446744073709551615"));
        assert!(check("data.neg == -9223372036854775808"));
        // Integers compare exactly even beyond f64 precision.
        assert!(check("data.near > 9007199254740992"));
        assert!(!check("data.near == 9007199254740992"));
        assert!(check("data.half == 5e-1"));
        assert!(check("data.half < 1"));
        assert!(check("0 < data.half"));
    }

    #[test]
    fn events_without_data_subject_or_time() {
        let bare = CloudEvent::new("2", "/x", "it.prato.other");
        for text in [
            "data.school == 'Mazzoni'",
            "data == null",
            "subject startswith ''",
            "time < '2100-01-01T00:00:00Z'",
            "time != '2100-01-01T00:00:00Z'",
            "exists(data)",
            "exists(subject)",
            "exists(time)",
            "datacontenttype != 'text/plain'",
        ] {
            assert!(!expr(text).matches(&bare), "{text}");
        }
        assert!(expr("not exists(data)").matches(&bare));
        let array = CloudEvent::new("3", "/x", "t").with_data(json!([{"a": 1}, 2]));
        assert!(expr("data[0].a == 1").matches(&array));
        assert!(expr("data[1] == 2").matches(&array));
        assert!(expr("data contains 2").matches(&array));
        assert!(!expr("data.a == 1").matches(&array));
    }

    #[test]
    fn parse_errors_give_the_column_and_what_was_expected() {
        let cases: &[(&str, usize, &str)] = &[
            ("", 1, "expected a condition"),
            ("   ", 4, "found the end of the expression"),
            (
                "data.meals >",
                13,
                "expected a value or a path after `>`, found the end",
            ),
            (
                "data.meals = 5",
                12,
                "`=` is not an operator; compare with `==`",
            ),
            ("data.a & data.b", 8, "expected `&&`"),
            ("data.a | data.b", 8, "expected `||`"),
            (
                "(data.a == 1",
                13,
                "expected `)` to close the `(` at column 1",
            ),
            (
                "data.a == 1)",
                12,
                "expected `and`, `or` or the end of the expression, found `)`",
            ),
            (
                "data.a == 1 data.b",
                13,
                "expected `and`, `or` or the end of the expression, found `data`",
            ),
            (
                "data.a == 'open",
                11,
                "the string starting here is not closed; end it with '",
            ),
            ("data.a == \"x\\q\"", 13, "unknown escape `\\q`"),
            ("data.a == '\\u12'", 12, "expected 4 hexadecimal digits"),
            ("data.a == '\\u{d800}'", 12, "is not a Unicode character"),
            (
                "data.a == '\\u{}'",
                12,
                "expected 1 to 6 hexadecimal digits",
            ),
            (
                "data.a == 1.",
                12,
                "expected a digit after the decimal point",
            ),
            ("data.a == 2e", 12, "expected digits in the exponent"),
            ("data.a == -x", 11, "expected a digit after `-`"),
            ("data.a == 1 and", 16, "expected a condition"),
            ("data.a == 1 and or data.b", 17, "found the keyword `or`"),
            (
                "data.a in 'x'",
                11,
                "expected `[` and a list of values after `in`, found the string \"x\"",
            ),
            (
                "data.a in ['x' 'y']",
                16,
                "expected `,` or `]` in the list, found the string \"y\"",
            ),
            ("data.a in ['x', data.b]", 17, "a list holds constants only"),
            (
                "data.a in ['x',",
                16,
                "expected a value (string, number, true, false or null) in the list",
            ),
            ("data.", 6, "expected a field name after `.`, found the end"),
            (
                "data.a.[0] == 1",
                8,
                "expected a field name after `.`, found `[`",
            ),
            (
                "data.items[-1] == 1",
                12,
                "array index -1 is not a whole number ≥ 0",
            ),
            (
                "data.items[1.5] == 1",
                12,
                "array index 1.5 is not a whole number ≥ 0",
            ),
            (
                "data.items[x] == 1",
                12,
                "expected an array index (0, 1, …) or a quoted field name",
            ),
            ("data.items[0 == 1", 14, "expected `]`, found `==`"),
            (
                "School == 'x'",
                1,
                "`School` is not an attribute: write data.School",
            ),
            (
                "subject.name == 'x'",
                8,
                "`subject` is a single value without fields",
            ),
            (
                "traceid[0] == 'x'",
                8,
                "`traceid` is a single value without fields",
            ),
            ("exists data.a", 8, "expected `(` after `exists`"),
            (
                "exists(1)",
                8,
                "expected a path inside exists(…), found the number 1",
            ),
            (
                "exists(data.a",
                14,
                "expected `)` after the path in exists(…)",
            ),
            (
                "'x'",
                4,
                "expected an operator (==, !=, <, <=, >, >=, in, startswith, contains) after \"x\", found the end",
            ),
            (
                "data.school is 'x'",
                13,
                "expected an operator (==, !=, <, <=, >, >=, in, startswith, contains), `and`, `or` or the end after data.school, found `is`",
            ),
            ("data.a == data.b == 1", 18, "found `==`"),
            (
                "time > 'yesterday'",
                8,
                "\"yesterday\" is not an RFC 3339 time",
            ),
            (
                "time >= 1772436600",
                9,
                "`time` is compared with an RFC 3339 time string",
            ),
            (
                "'2026-13-01T00:00:00Z' < time",
                1,
                "is not an RFC 3339 time",
            ),
            (
                "time in ['2026-03-01T00:00:00Z', 'soon']",
                34,
                "\"soon\" is not an RFC 3339 time",
            ),
            ("data.a == 1 # comment", 13, "unexpected character \"#\""),
            ("città == 'Prato'", 1, "`città` is not an attribute"),
            ("data.è == 1 and $", 17, "unexpected character \"$\""),
            (
                "data.meals == data.items[0].qty + 1",
                33,
                "unexpected character \"+\"",
            ),
            (
                "data.diets == ['celiac']",
                15,
                "expected a value or a path after `==`, found `[`",
            ),
        ];
        for (text, column, needle) in cases {
            let (got_column, message) = parse_error(text);
            assert_eq!(got_column, *column, "{text:?}: {message}");
            assert!(
                message.contains(needle),
                "{text:?}: {message:?} lacks {needle:?}"
            );
        }
        let err = "data.meals = 5".parse::<Expression>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "at column 12: `=` is not an operator; compare with `==`"
        );
        assert_eq!(err.column(), Some(12));
    }

    #[test]
    fn length_and_depth_limits() {
        let long = format!("data.s == '{}'", "x".repeat(MAX_EXPRESSION_LEN));
        let err = long.parse::<Expression>().unwrap_err();
        assert_eq!(
            err,
            ExpressionError::TooLong {
                len: MAX_EXPRESSION_LEN + 12,
                max: MAX_EXPRESSION_LEN
            }
        );
        assert_eq!(
            err.to_string(),
            "the expression is 4108 bytes long; the limit is 4096 bytes"
        );
        assert_eq!(err.column(), None);
        // Exactly at the limit is fine.
        let at_limit = format!("data.s == '{}'", "x".repeat(MAX_EXPRESSION_LEN - 12));
        assert_eq!(at_limit.len(), MAX_EXPRESSION_LEN);
        assert!(at_limit.parse::<Expression>().is_ok());

        let nested = |n: usize| format!("{}data.open{}", "(".repeat(n), ")".repeat(n));
        assert!(expr(&nested(MAX_DEPTH)).matches(&meal()));
        let (column, message) = parse_error(&nested(MAX_DEPTH + 1));
        assert_eq!(column, MAX_DEPTH + 1);
        assert_eq!(
            message,
            "parentheses and `not` nest more than 32 levels deep"
        );
        let nots = |n: usize| format!("{}data.open", "not ".repeat(n));
        assert!(expr(&nots(MAX_DEPTH)).matches(&meal()));
        let (column, _) = parse_error(&nots(MAX_DEPTH + 1));
        assert_eq!(column, 4 * MAX_DEPTH + 1);
        let (column, _) = parse_error(&format!("{}!data.open", "(!".repeat(16)));
        assert_eq!(column, 33);
        // Long flat chains are not nesting.
        let chain = vec!["data.meals > 1"; 200].join(" and ");
        assert!(expr(&chain).matches(&meal()));
        // Deep input that is too long to parse is refused before parsing.
        assert!(matches!(
            "(".repeat(100_000).parse::<Expression>(),
            Err(ExpressionError::TooLong { .. })
        ));
    }

    #[test]
    fn paths_parse_display_and_read_values() {
        let event = meal();
        let cases = [
            ("data.school", Some(json!("Mazzoni"))),
            ("data . items [1] . code", Some(json!("V-02"))),
            ("data[\"codice scuola\"]", Some(json!("POEE00123"))),
            ("data.diets", Some(json!(["celiac"]))),
            ("data.note", Some(Value::Null)),
            ("data.nothing", None),
            ("type", Some(json!("it.prato.school.canteen.MealOrdered"))),
            ("subject", Some(json!("school-mazzoni"))),
            ("time", Some(json!("2026-03-02T07:30:00.250Z"))),
            ("priority", Some(json!(3))),
            ("dataschema", None),
        ];
        for (text, value) in cases {
            let path: Path = text.parse().unwrap();
            assert_eq!(path.value(&event), value, "{text}");
            let shown = path.to_string();
            assert_eq!(shown.parse::<Path>().unwrap(), path);
        }
        assert_eq!(
            "data['a b'].c[0]".parse::<Path>().unwrap().to_string(),
            "data[\"a b\"].c[0]"
        );
        let err = |s: &str| s.parse::<Path>().unwrap_err().to_string();
        assert_eq!(
            err("data.a b"),
            "at column 8: expected `.`, `[` or the end of the path, found `b`"
        );
        assert!(err("").contains("at column 1: expected a path such as data.school"));
        assert!(err("and").contains("found the keyword `and`"));
        assert!(err("Data.x").contains("`Data` is not an attribute"));
        assert!(err("'data'").contains("found the string \"data\""));
        let json = serde_json::to_string(&"data.items[0]".parse::<Path>().unwrap()).unwrap();
        assert_eq!(json, "\"data.items[0]\"");
        let back: Path = serde_json::from_str(&json).unwrap();
        assert_eq!(back.to_string(), "data.items[0]");
        let bad = serde_json::from_str::<Path>("\"data.\"").unwrap_err();
        assert!(bad.to_string().contains("invalid path \"data.\""), "{bad}");
    }

    #[test]
    fn filters_match_types_sources_subjects_and_expressions() {
        let event = meal();
        let filter = |v: Value| -> EventFilter { serde_json::from_value(v).unwrap() };
        let cases = [
            (json!({}), true),
            (
                json!({"types": ["it.prato.school.canteen.MealOrdered"]}),
                true,
            ),
            (json!({"types": ["it.prato.school.*"]}), true),
            (
                json!({"types": ["it.prato.school.canteen.MealOrdered.*"]}),
                false,
            ),
            (json!({"types": ["it.prato.school"]}), false),
            (
                json!({"types": ["it.prato.lab.*", "it.prato.school.canteen.*"]}),
                true,
            ),
            (json!({"types": ["*"]}), true),
            (json!({"sources": ["/prato/schools/*"]}), true),
            (json!({"sources": ["/prato/schools"]}), false),
            (json!({"subject_prefix": "school-"}), true),
            (json!({"subject_prefix": "school-buricchi"}), false),
            (json!({"expression": "data.meals > 100"}), true),
            (json!({"expression": "data.meals > 200"}), false),
            (
                json!({
                    "types": ["it.prato.school.*"],
                    "sources": ["/prato/schools/canteen"],
                    "subject_prefix": "school-",
                    "expression": "data.diets contains 'celiac' and data.district in ['Centro']"
                }),
                true,
            ),
            (
                json!({"types": ["it.prato.school.*"], "expression": "data.district == 'Nord'"}),
                false,
            ),
        ];
        for (json, expected) in cases {
            let f = filter(json.clone());
            assert_eq!(f.validate(), Ok(()), "{json}");
            assert_eq!(f.matches(&event), expected, "{json}");
        }
        // An event without a subject never matches a subject prefix.
        let no_subject = CloudEvent::new("1", "/prato/schools/canteen", "t");
        assert!(!filter(json!({"subject_prefix": "s"})).matches(&no_subject));
        assert!(EventFilter::any().matches(&no_subject));
    }

    #[test]
    fn filters_round_trip_through_json() {
        let text = r#"{"types":["it.prato.school.*"],"subject_prefix":"school-","expression":"data.meals>100 && data.diets contains \"celiac\""}"#;
        let filter: EventFilter = serde_json::from_str(text).unwrap();
        assert_eq!(filter.types, vec!["it.prato.school.*".to_string()]);
        assert!(filter.sources.is_empty());
        let e = filter.expression.as_ref().unwrap();
        assert_eq!(
            e.to_string(),
            "data.meals > 100 and data.diets contains \"celiac\""
        );
        // The expression is stored as it was written.
        assert_eq!(serde_json::to_string(&filter).unwrap(), text);
        let back: EventFilter =
            serde_json::from_str(&serde_json::to_string(&filter).unwrap()).unwrap();
        assert_eq!(back, filter);
        assert!(back.matches(&meal()));
        assert_eq!(serde_json::to_string(&EventFilter::any()).unwrap(), "{}");
    }

    #[test]
    fn bad_filters_are_refused_with_actionable_messages() {
        let err = serde_json::from_str::<EventFilter>(r#"{"expression": "data.meals => 100"}"#)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(
                "invalid filter expression: at column 12: `=` is not an operator; compare with `==`"
            ),
            "{err}"
        );
        let err = serde_json::from_str::<EventFilter>(r#"{"expression": "data.meals >= "}"#)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(
                "invalid filter expression: at column 15: expected a value or a path after `>=`, found the end of the expression"
            ),
            "{err}"
        );
        let err = serde_json::from_str::<EventFilter>(r#"{"type": ["x"]}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `type`"), "{err}");
        let validate = |v: Value| {
            serde_json::from_value::<EventFilter>(v)
                .unwrap()
                .validate()
                .unwrap_err()
        };
        let e = validate(json!({"types": ["a", ""]}));
        assert_eq!(
            e,
            FilterError::EmptyPattern {
                field: "types",
                index: 1
            }
        );
        assert_eq!(
            e.to_string(),
            "types[1] is empty; leave it out (an empty types list matches any event)"
        );
        let e = validate(json!({"sources": ["/prato/*/canteen"]}));
        assert_eq!(
            e.to_string(),
            "sources[0] \"/prato/*/canteen\": `*` is only a wildcard as the last character (a prefix such as \"it.prato.school.*\")"
        );
        assert_eq!(
            validate(json!({"subject_prefix": ""})),
            FilterError::EmptySubjectPrefix
        );
    }

    #[test]
    fn the_meals_operator_mistake_is_reported_where_it_is() {
        // `=>` lexes as `=` followed by `>`: the lone `=` is the mistake.
        let (column, message) = parse_error("data.meals => 100");
        assert_eq!(column, 12);
        assert_eq!(message, "`=` is not an operator; compare with `==`");
    }

    // ---- property tests

    fn quote_single(s: &str) -> String {
        let mut out = String::from("'");
        for c in s.chars() {
            match c {
                '\'' => out.push_str("\\'"),
                '\\' => out.push_str("\\\\"),
                c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", u32::from(c))),
                c => out.push(c),
            }
        }
        out.push('\'');
        out
    }

    fn path_text() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("type".to_string()),
            Just("source".to_string()),
            Just("subject".to_string()),
            Just("id".to_string()),
            Just("datacontenttype".to_string()),
            Just("traceid".to_string()),
            Just("priority".to_string()),
            Just("data".to_string()),
            Just("data.school".to_string()),
            Just("data.meals".to_string()),
            Just("data.price".to_string()),
            Just("data.diets".to_string()),
            Just("data.items[0].code".to_string()),
            Just("data[\"codice scuola\"]".to_string()),
            "[a-z_][a-z0-9_]{0,6}".prop_map(|k| format!("data.{k}")),
            (0usize..4).prop_map(|i| format!("data.items[{i}].qty")),
            any::<String>().prop_map(|k| format!("data[{}]", quote_single(&k))),
        ]
    }

    fn literal_text() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>().prop_map(|s| quote_single(&s)),
            "[a-zA-Z -]{0,8}".prop_map(|s| format!("\"{s}\"")),
            any::<i64>().prop_map(|n| n.to_string()),
            any::<u64>().prop_map(|n| n.to_string()),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(|f| format!("{f:e}")),
            Just("true".to_string()),
            Just("false".to_string()),
            Just("null".to_string()),
        ]
    }

    fn condition_text() -> impl Strategy<Value = String> {
        let op = prop_oneof![
            Just("=="),
            Just("!="),
            Just("<"),
            Just("<="),
            Just(">"),
            Just(">="),
            Just("startswith"),
            Just("contains"),
        ];
        let time = prop_oneof![
            Just("'2026-03-02T07:30:00.25Z'"),
            Just("\"2026-01-01T00:00:00+01:00\""),
            Just("null"),
        ];
        prop_oneof![
            (path_text(), op.clone(), literal_text()).prop_map(|(p, o, l)| format!("{p} {o} {l}")),
            (literal_text(), op.clone(), path_text()).prop_map(|(l, o, p)| format!("{l} {o} {p}")),
            (path_text(), op.clone(), path_text()).prop_map(|(a, o, b)| format!("{a} {o} {b}")),
            (op.clone(), time).prop_map(|(o, t)| format!("time {o} {t}")),
            (path_text(), prop::collection::vec(literal_text(), 0..4))
                .prop_map(|(p, l)| format!("{p} in [{}]", l.join(","))),
            path_text().prop_map(|p| format!("exists({p})")),
            path_text(),
            Just("true".to_string()),
            Just("false".to_string()),
        ]
    }

    fn expression_text() -> impl Strategy<Value = String> {
        condition_text().prop_recursive(5, 40, 4, |inner| {
            prop_oneof![
                (
                    inner.clone(),
                    inner.clone(),
                    prop_oneof![Just(" and "), Just("&&"), Just(" or "), Just("||")]
                )
                    .prop_map(|(a, b, op)| format!("{a}{op}{b}")),
                inner.clone().prop_map(|a| format!("({a})")),
                inner.clone().prop_map(|a| format!("not {a}")),
                inner.prop_map(|a| format!("!({a})")),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn parsing_any_text_never_panics(text in any::<String>()) {
            if let Ok(e) = text.parse::<Expression>() {
                e.matches(&meal());
            }
            let _ = text.parse::<Path>();
        }

        #[test]
        fn parsing_grammar_soup_never_panics(
            parts in prop::collection::vec(
                prop_oneof![
                    Just("data"), Just("."), Just("["), Just("]"), Just("("), Just(")"),
                    Just("'"), Just("\""), Just("\\"), Just("\\u{"), Just("=="), Just("!"),
                    Just("="), Just("<"), Just(">="), Just("and"), Just("||"), Just("not"),
                    Just("in"), Just(","), Just("exists"), Just("time"), Just("-"),
                    Just("1"), Just("0.5"), Just("e"), Just("x"), Just(" "), Just("é"),
                    Just("startswith"), Just("contains"), Just("null"), Just("true"),
                ],
                0..40,
            )
        ) {
            let text = parts.concat();
            match text.parse::<Expression>() {
                Ok(e) => {
                    e.matches(&meal());
                    let again: Expression = e.to_string().parse().unwrap();
                    prop_assert_eq!(again, e);
                }
                Err(ExpressionError::Syntax { column, .. }) => {
                    prop_assert!(column >= 1 && column <= text.chars().count() + 1);
                }
                Err(ExpressionError::TooLong { .. }) => prop_assert!(false, "short input"),
            }
        }

        #[test]
        fn display_parses_back_to_the_same_expression(text in expression_text()) {
            let parsed: Result<Expression, _> = text.parse();
            // Generated nesting can exceed the depth limit; everything else must parse.
            let e = match parsed {
                Ok(e) => e,
                Err(ExpressionError::Syntax { message, .. }) if message.contains("nest more") => {
                    return Ok(());
                }
                Err(other) => return Err(TestCaseError::fail(format!("{text:?}: {other}"))),
            };
            let shown = e.to_string();
            let again: Expression = shown.parse().map_err(|err| {
                TestCaseError::fail(format!("{shown:?} (from {text:?}): {err}"))
            })?;
            prop_assert_eq!(&again, &e);
            prop_assert_eq!(again.to_string(), shown);
            let event = meal();
            prop_assert_eq!(again.matches(&event), e.matches(&event));
            let json = serde_json::to_string(&e).unwrap();
            let back: Expression = serde_json::from_str(&json).unwrap();
            prop_assert_eq!(back.as_str(), text.as_str());
        }
    }
}
