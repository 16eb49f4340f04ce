//! Routes from a message topic to a table: which table a broker message (MQTT, Kafka) is
//! written to, in which payload format, with which tag columns taken from the topic and,
//! optionally, which JSON values become which columns.
//!
//! Routes are read from `pipelines/ingest/*.toml` ([`RouteSet::load_dir`]), each file holding
//! `[[route]]` entries:
//!
//! ```toml
//! [[route]]
//! name = "air-stations"                 # unique over all files
//! topic = "city/air/{station}/{kind}"   # literal levels, {capture}, + (one level), # (the rest)
//! format = "json"                       # a PayloadFormat name; default "auto"
//! table = "air_{kind}"                  # may use captures
//! precision = "ms"                      # epoch numbers: ns, us, ms or s
//! [route.fields]                        # optional mapping of JSON payloads
//! pm25 = "/data/pm25"
//! temperature = { pointer = "/data/tempF", convert = "fahrenheit_to_celsius" }
//! [route.tags]
//! device = "/meta/device"
//! [route.time]
//! pointer = "/ts"
//! format = "epoch_ms"
//! ```
//!
//! The first route (files in name order, entries in file order) whose topic pattern matches
//! wins; after them comes the built-in default route `ingest/{table}` (format auto), which
//! can be switched off. Every capture becomes a tag column of every row decoded from the
//! message and overrides a payload column of the same name (except the default route's
//! `{table}`, which only names the table).

use crate::builder::{Dialect, Entry, TableBuilder, Value, finish_tables};
use crate::error::{Error, Result};
use crate::format::PayloadFormat;
use crate::types::{DecodeOptions, Decoded, Precision, Rejections, RowError, SchemaLookup};
use arrow::array::{ArrayRef, DictionaryArray, Int32Array, RecordBatch, StringArray};
use arrow::datatypes::{Field, Int32Type, Schema};
use chrono::format::{Item, Parsed, StrftimeItems};
use civiclake_core::{TIME_COLUMN, tag_column, validate_column_name, validate_table_name};
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_json::Value as Json;
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The name of the built-in default route.
pub const DEFAULT_ROUTE_NAME: &str = "default";

/// The topic pattern of the built-in default route: the last level names the table.
pub const DEFAULT_ROUTE_TOPIC: &str = "ingest/{table}";

/// A route file, or a route in it, that cannot be used; the message names the file, the
/// route and what is wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RouteError {
    /// The route directory or a file in it cannot be read.
    #[error("cannot read route files at {}: {source}", path.display())]
    Io {
        /// The directory or file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML or does not have the shape of a route file (an unknown
    /// key, a missing key, a value of the wrong type); the message gives line and column.
    #[error("{origin}: {}{message}", in_route(route.as_deref()))]
    Syntax {
        /// The file.
        origin: String,
        /// The route the error is in (`'name'`, or `#n` when it has no name), when known.
        route: Option<String>,
        /// What is wrong, with its position.
        message: String,
    },
    /// A route is well-formed TOML but its contents are wrong.
    #[error("{origin}: route '{route}': {message}")]
    Invalid {
        /// The file.
        origin: String,
        /// The route's name (or `#n`, its position, when the name itself is wrong).
        route: String,
        /// What is wrong.
        message: String,
    },
    /// Two routes have the same name.
    #[error("route name '{name}' is used twice: in {first} and in {second}")]
    DuplicateName {
        /// The name.
        name: String,
        /// Where it was first defined.
        first: String,
        /// Where it is defined again.
        second: String,
    },
}

fn in_route(route: Option<&str>) -> String {
    route.map_or(String::new(), |route| format!("route {route}: "))
}

// ---------------------------------------------------------------------------------------------
// The file format.

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSpec {
    #[serde(default)]
    route: Vec<RouteSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteSpec {
    name: String,
    topic: String,
    #[serde(default)]
    format: PayloadFormat,
    table: String,
    precision: Option<String>,
    #[serde(default)]
    fields: BTreeMap<String, FieldSpec>,
    #[serde(default)]
    tags: BTreeMap<String, String>,
    time: Option<TimeSpec>,
}

/// A field mapping: a JSON pointer, or a table with the pointer and a conversion.
#[derive(Debug)]
enum FieldSpec {
    Pointer(String),
    Mapped(MappedFieldSpec),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MappedFieldSpec {
    pointer: String,
    convert: Option<String>,
    scale: Option<f64>,
    offset: Option<f64>,
}

impl<'de> Deserialize<'de> for FieldSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        struct FieldVisitor;
        impl<'de> Visitor<'de> for FieldVisitor {
            type Value = FieldSpec;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a JSON pointer, or a table with `pointer` and `convert` or `scale`/`offset`",
                )
            }

            fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<FieldSpec, E> {
                Ok(FieldSpec::Pointer(v.to_string()))
            }

            fn visit_map<A: MapAccess<'de>>(
                self,
                map: A,
            ) -> std::result::Result<FieldSpec, A::Error> {
                MappedFieldSpec::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(FieldSpec::Mapped)
            }
        }
        deserializer.deserialize_any(FieldVisitor)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TimeSpec {
    pointer: String,
    format: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Compiled routes.

/// One level of a topic pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Level {
    Literal(String),
    Capture(String),
    /// `+`: one level, not captured.
    Plus,
    /// `#`: any number of levels (also none), last only.
    Hash,
}

/// A piece of a table template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Capture(String),
}

/// A unit conversion applied to a mapped number.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Conversion {
    None,
    FahrenheitToCelsius,
    KelvinToCelsius,
    MphToKmh,
    MsToKmh,
    Linear { scale: f64, offset: f64 },
}

/// The names of the conversions, as written in route files.
const CONVERSIONS: [(&str, Conversion); 4] = [
    ("fahrenheit_to_celsius", Conversion::FahrenheitToCelsius),
    ("kelvin_to_celsius", Conversion::KelvinToCelsius),
    ("mph_to_kmh", Conversion::MphToKmh),
    ("ms_to_kmh", Conversion::MsToKmh),
];

impl Conversion {
    fn apply(self, v: f64) -> f64 {
        match self {
            Conversion::None => v,
            Conversion::FahrenheitToCelsius => (v - 32.0) * 5.0 / 9.0,
            Conversion::KelvinToCelsius => v - 273.15,
            Conversion::MphToKmh => v * 1.609_344,
            Conversion::MsToKmh => v * 3.6,
            Conversion::Linear { scale, offset } => v * scale + offset,
        }
    }
}

#[derive(Debug, Clone)]
struct FieldMap {
    column: String,
    pointer: String,
    conversion: Conversion,
}

/// How the mapped time value is read.
#[derive(Debug, Clone)]
enum TimeFormat {
    /// A string is RFC 3339, a number is an epoch in the route's (or the options') precision.
    Auto,
    Rfc3339,
    Epoch(Precision),
    /// A chrono strftime pattern; UTC when it has no offset.
    Strftime(Vec<Item<'static>>),
}

#[derive(Debug, Clone)]
struct TimeMap {
    pointer: String,
    format: TimeFormat,
}

/// The JSON mapping of a route: each object of the payload becomes one row with exactly the
/// mapped columns.
#[derive(Debug, Clone)]
struct Mapping {
    fields: Vec<FieldMap>,
    /// Tag column and JSON pointer.
    tags: Vec<(String, String)>,
    time: Option<TimeMap>,
}

/// A route from a topic pattern to a table.
#[derive(Debug, Clone)]
pub struct Route {
    name: String,
    origin: String,
    pattern: String,
    levels: Vec<Level>,
    format: PayloadFormat,
    table: String,
    template: Vec<Segment>,
    precision: Option<Precision>,
    mapping: Option<Mapping>,
    /// Whether the captures become tag columns (all routes but the default one, whose
    /// `{table}` only names the table).
    capture_tags: bool,
}

impl Route {
    /// The route's name (unique; used in metrics and `_dead_letters`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The payload format.
    pub fn format(&self) -> PayloadFormat {
        self.format
    }

    /// The topic pattern as written, e.g. `city/air/{station}/{kind}`.
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// The table template as written, e.g. `air_{kind}`.
    pub fn table_template(&self) -> &str {
        &self.table
    }

    /// The precision of epoch numbers, when the route sets one.
    pub fn precision(&self) -> Option<Precision> {
        self.precision
    }

    /// The file the route comes from (`built-in` for the default route).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Whether the route maps JSON values to columns (`fields`, `tags` or `time`).
    pub fn has_mapping(&self) -> bool {
        self.mapping.is_some()
    }

    /// The MQTT topic filter to subscribe to for this route: captures become `+`.
    pub fn filter(&self) -> String {
        let levels: Vec<&str> = self
            .levels
            .iter()
            .map(|level| match level {
                Level::Literal(text) => text.as_str(),
                Level::Capture(_) | Level::Plus => "+",
                Level::Hash => "#",
            })
            .collect();
        levels.join("/")
    }

    /// The captures of `topic` when it matches the pattern.
    fn captures(&self, topic: &str) -> Option<Vec<(String, String)>> {
        // MQTT: topics starting with `$` are not matched by a leading wildcard.
        if topic.starts_with('$') && !matches!(self.levels.first(), Some(Level::Literal(_))) {
            return None;
        }
        let mut levels = topic.split('/');
        let mut captures = Vec::new();
        for level in &self.levels {
            match level {
                Level::Hash => return Some(captures),
                Level::Plus => {
                    levels.next()?;
                }
                Level::Capture(name) => captures.push((name.clone(), levels.next()?.to_string())),
                Level::Literal(text) => {
                    if levels.next()? != text {
                        return None;
                    }
                }
            }
        }
        levels.next().is_none().then_some(captures)
    }

    fn render_table(&self, captures: &[(String, String)]) -> String {
        let mut table = String::with_capacity(self.table.len() + 16);
        for segment in &self.template {
            match segment {
                Segment::Literal(text) => table.push_str(text),
                Segment::Capture(name) => {
                    if let Some((_, value)) = captures.iter().find(|(n, _)| n == name) {
                        table.push_str(value);
                    }
                }
            }
        }
        table
    }

    fn default_route() -> Route {
        Route {
            name: DEFAULT_ROUTE_NAME.to_string(),
            origin: "built-in".to_string(),
            pattern: DEFAULT_ROUTE_TOPIC.to_string(),
            levels: vec![
                Level::Literal("ingest".to_string()),
                Level::Capture("table".to_string()),
            ],
            format: PayloadFormat::Auto,
            table: "{table}".to_string(),
            template: vec![Segment::Capture("table".to_string())],
            precision: None,
            mapping: None,
            capture_tags: false,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Compiling a route.

fn parse_pattern(pattern: &str) -> Result<Vec<Level>, String> {
    if pattern.is_empty() {
        return Err("the topic pattern is empty".to_string());
    }
    let parts: Vec<&str> = pattern.split('/').collect();
    let mut levels = Vec::with_capacity(parts.len());
    for (i, part) in parts.iter().enumerate() {
        let level = match *part {
            "#" if i + 1 != parts.len() => {
                return Err(format!(
                    "topic pattern '{pattern}': '#' must be the last level"
                ));
            }
            "#" => Level::Hash,
            "+" => Level::Plus,
            p if p.len() > 2 && p.starts_with('{') && p.ends_with('}') => {
                let name = &p[1..p.len() - 1];
                check_capture_name(pattern, name)?;
                if levels.contains(&Level::Capture(name.to_string())) {
                    return Err(format!(
                        "topic pattern '{pattern}': capture {{{name}}} appears twice"
                    ));
                }
                Level::Capture(name.to_string())
            }
            p if p.contains(['+', '#', '{', '}']) => {
                return Err(format!(
                    "topic pattern '{pattern}': level '{p}' mixes text with a wildcard or a capture; '+', '#' and '{{name}}' must fill a whole level"
                ));
            }
            p => Level::Literal(p.to_string()),
        };
        levels.push(level);
    }
    Ok(levels)
}

fn check_capture_name(pattern: &str, name: &str) -> Result<(), String> {
    let bad = |why: String| format!("topic pattern '{pattern}': capture {{{name}}} {why}");
    if name.contains(['{', '}', '+', '#']) {
        return Err(bad("has '{', '}', '+' or '#' in its name".to_string()));
    }
    if name == TIME_COLUMN {
        return Err(bad(
            "cannot be named 'time': 'time' is the timestamp column".to_string(),
        ));
    }
    validate_column_name(name).map_err(|e| bad(format!("is not a valid column name: {e}")))
}

fn parse_template(table: &str, captures: &[&str]) -> Result<Vec<Segment>, String> {
    let mut segments = Vec::new();
    let mut rest = table;
    while !rest.is_empty() {
        match rest.find(['{', '}']) {
            None => {
                segments.push(Segment::Literal(rest.to_string()));
                break;
            }
            Some(at) if rest[at..].starts_with('}') => {
                return Err(format!("table '{table}': '}}' without '{{'"));
            }
            Some(at) => {
                if at > 0 {
                    segments.push(Segment::Literal(rest[..at].to_string()));
                }
                let after = &rest[at + 1..];
                let close = after
                    .find('}')
                    .ok_or_else(|| format!("table '{table}': '{{' without '}}'"))?;
                let name = &after[..close];
                if !captures.contains(&name) {
                    let defined = if captures.is_empty() {
                        "it has none".to_string()
                    } else {
                        let names: Vec<String> =
                            captures.iter().map(|c| format!("{{{c}}}")).collect();
                        format!("it has {}", names.join(", "))
                    };
                    return Err(format!(
                        "table '{table}' uses capture {{{name}}}, which the topic pattern does not define ({defined})"
                    ));
                }
                segments.push(Segment::Capture(name.to_string()));
                rest = &after[close + 1..];
            }
        }
    }
    // A template that gives an invalid name whatever the captures are is a configuration
    // error; one that depends on the captured values is checked per message.
    let sample: String = segments
        .iter()
        .map(|s| match s {
            Segment::Literal(text) => text.as_str(),
            Segment::Capture(_) => "a",
        })
        .collect();
    validate_table_name(&sample).map_err(|e| {
        if segments.iter().any(|s| matches!(s, Segment::Capture(_))) {
            format!("table '{table}' can never be a valid table name: {e}")
        } else {
            e
        }
    })?;
    Ok(segments)
}

fn check_pointer(what: &str, pointer: &str) -> Result<(), String> {
    if pointer.is_empty() || pointer.starts_with('/') {
        Ok(())
    } else {
        Err(format!(
            "{what}: pointer '{pointer}' must start with '/' (a JSON pointer, RFC 6901, e.g. '/data/pm25')"
        ))
    }
}

fn check_column(what: &str, column: &str) -> Result<(), String> {
    if column == TIME_COLUMN {
        return Err(format!(
            "{what} 'time': 'time' is the timestamp column; map it with [route.time]"
        ));
    }
    validate_column_name(column).map_err(|e| format!("{what} '{column}': {e}"))
}

fn parse_conversion(column: &str, spec: &MappedFieldSpec) -> Result<Conversion, String> {
    match (&spec.convert, spec.scale, spec.offset) {
        (None, None, None) => Ok(Conversion::None),
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => Err(format!(
            "field '{column}': use either `convert` or `scale`/`offset`, not both"
        )),
        (Some(name), None, None) => CONVERSIONS
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, c)| *c)
            .ok_or_else(|| {
                let names: Vec<&str> = CONVERSIONS.iter().map(|(n, _)| *n).collect();
                format!(
                    "field '{column}': unknown conversion '{name}': use one of {}, or `scale`/`offset`",
                    names.join(", ")
                )
            }),
        (None, scale, offset) => {
            let (scale, offset) = (scale.unwrap_or(1.0), offset.unwrap_or(0.0));
            if scale.is_finite() && offset.is_finite() {
                Ok(Conversion::Linear { scale, offset })
            } else {
                Err(format!("field '{column}': scale and offset must be finite numbers"))
            }
        }
    }
}

fn parse_time_format(format: Option<&str>) -> Result<TimeFormat, String> {
    let Some(format) = format else {
        return Ok(TimeFormat::Auto);
    };
    Ok(match format {
        "rfc3339" => TimeFormat::Rfc3339,
        "epoch_s" => TimeFormat::Epoch(Precision::Second),
        "epoch_ms" => TimeFormat::Epoch(Precision::Millisecond),
        "epoch_us" => TimeFormat::Epoch(Precision::Microsecond),
        "epoch_ns" => TimeFormat::Epoch(Precision::Nanosecond),
        pattern if pattern.contains('%') => {
            let items = StrftimeItems::new(pattern).parse_to_owned().map_err(|e| {
                format!("time format '{pattern}' is not a valid strftime pattern: {e}")
            })?;
            TimeFormat::Strftime(items)
        }
        other => {
            return Err(format!(
                "unknown time format '{other}': use rfc3339, epoch_s, epoch_ms, epoch_us, epoch_ns or a strftime pattern such as '%d/%m/%Y %H:%M:%S'"
            ));
        }
    })
}

fn compile(spec: RouteSpec, origin: &str) -> Result<Route, String> {
    let levels = parse_pattern(&spec.topic)?;
    let captures: Vec<&str> = levels
        .iter()
        .filter_map(|l| match l {
            Level::Capture(name) => Some(name.as_str()),
            _ => None,
        })
        .collect();
    let template = parse_template(&spec.table, &captures)?;
    let precision = spec
        .precision
        .as_deref()
        .map(str::parse::<Precision>)
        .transpose()
        .map_err(|e| e.to_string())?;

    let has_mapping = !spec.fields.is_empty() || !spec.tags.is_empty() || spec.time.is_some();
    let mapping = if has_mapping {
        if !matches!(spec.format, PayloadFormat::Json | PayloadFormat::Auto) {
            return Err(format!(
                "fields, tags and time map JSON payloads: set format = \"json\" (the route has format \"{}\")",
                spec.format
            ));
        }
        let mut columns: HashMap<&str, &'static str> = captures
            .iter()
            .map(|c| (*c, "a capture of the topic pattern"))
            .collect();
        let mut fields = Vec::with_capacity(spec.fields.len());
        for (column, field) in &spec.fields {
            check_column("field", column)?;
            if let Some(other) = columns.insert(column, "a field") {
                return Err(format!("field '{column}' is also {other}"));
            }
            let (pointer, conversion) = match field {
                FieldSpec::Pointer(pointer) => (pointer.clone(), Conversion::None),
                FieldSpec::Mapped(mapped) => {
                    (mapped.pointer.clone(), parse_conversion(column, mapped)?)
                }
            };
            check_pointer(&format!("field '{column}'"), &pointer)?;
            fields.push(FieldMap {
                column: column.clone(),
                pointer,
                conversion,
            });
        }
        let mut tags = Vec::with_capacity(spec.tags.len());
        for (column, pointer) in &spec.tags {
            check_column("tag", column)?;
            if let Some(other) = columns.insert(column, "a tag") {
                return Err(format!("tag '{column}' is also {other}"));
            }
            check_pointer(&format!("tag '{column}'"), pointer)?;
            tags.push((column.clone(), pointer.clone()));
        }
        if fields.is_empty() && tags.is_empty() {
            return Err(
                "a mapping needs at least one column in [route.fields] or [route.tags]".to_string(),
            );
        }
        let time = match &spec.time {
            None => None,
            Some(time) => {
                check_pointer("time", &time.pointer)?;
                Some(TimeMap {
                    pointer: time.pointer.clone(),
                    format: parse_time_format(time.format.as_deref())?,
                })
            }
        };
        Some(Mapping { fields, tags, time })
    } else {
        None
    };
    Ok(Route {
        name: spec.name,
        origin: origin.to_string(),
        pattern: spec.topic,
        levels,
        format: spec.format,
        table: spec.table,
        template,
        precision,
        mapping,
        capture_tags: true,
    })
}

fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !ok {
        return Err(format!(
            "invalid route name {name:?}: use 1-64 ASCII letters, digits, '-', '_' or '.'"
        ));
    }
    if name == DEFAULT_ROUTE_NAME {
        return Err(format!(
            "the name '{DEFAULT_ROUTE_NAME}' is reserved for the built-in route {DEFAULT_ROUTE_TOPIC}"
        ));
    }
    Ok(())
}

fn parse_file(text: &str, origin: &str) -> Result<Vec<Route>, RouteError> {
    let file: FileSpec = toml::from_str(text).map_err(|e| RouteError::Syntax {
        origin: origin.to_string(),
        route: e.span().and_then(|span| route_at(text, span.start)),
        message: e.to_string().trim_end().to_string(),
    })?;
    let mut routes = Vec::with_capacity(file.route.len());
    for (i, spec) in file.route.into_iter().enumerate() {
        let invalid = |route: String, message: String| RouteError::Invalid {
            origin: origin.to_string(),
            route,
            message,
        };
        if let Err(message) = check_name(&spec.name) {
            return Err(invalid(format!("#{}", i + 1), message));
        }
        let name = spec.name.clone();
        routes.push(compile(spec, origin).map_err(|message| invalid(name, message))?);
    }
    Ok(routes)
}

/// The route (`'name'`, or `#n`) whose `[[route]]` entry contains byte `offset` of `text`.
fn route_at(text: &str, offset: usize) -> Option<String> {
    // Up to the end of the line, so that an error on the `[[route]]` line itself counts.
    let end = text
        .get(offset..)?
        .find('\n')
        .map_or(text.len(), |i| offset + i);
    let n = text[..end]
        .lines()
        .filter(|line| line.trim_start().starts_with("[[route]]"))
        .count();
    if n == 0 {
        return None;
    }
    // The name, when the file is at least valid TOML.
    let table = toml::from_str::<toml::Table>(text).ok();
    let name = table.as_ref().and_then(|table| {
        table
            .get("route")?
            .as_array()?
            .get(n - 1)?
            .get("name")?
            .as_str()
    });
    Some(name.map_or_else(|| format!("#{n}"), |name| format!("'{name}'")))
}

// ---------------------------------------------------------------------------------------------
// The route set.

/// The routes of a server: the configured ones in order, then (unless switched off) the
/// built-in default route `ingest/{table}`.
///
/// A `RouteSet` never changes; reloading the files makes a new one.
#[derive(Debug, Clone)]
pub struct RouteSet {
    /// Configured routes, followed by the default route when it is on.
    routes: Vec<Route>,
    default_route: bool,
}

impl Default for RouteSet {
    /// No configured route; the default route is on.
    fn default() -> Self {
        RouteSet::from_routes(Vec::new())
    }
}

impl RouteSet {
    fn from_routes(mut routes: Vec<Route>) -> Self {
        routes.push(Route::default_route());
        RouteSet {
            routes,
            default_route: true,
        }
    }

    /// Reads the routes of one route file; `origin` names it in error messages.
    pub fn from_toml(text: &str, origin: &str) -> Result<RouteSet, RouteError> {
        let routes = parse_file(text, origin)?;
        check_unique(&routes)?;
        Ok(RouteSet::from_routes(routes))
    }

    /// Reads every `*.toml` file of `dir` in file-name order. A missing directory has no
    /// routes (only the default route applies).
    pub fn load_dir(dir: &Path) -> Result<RouteSet, RouteError> {
        let io = |path: &Path, source| RouteError::Io {
            path: path.to_path_buf(),
            source,
        };
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(RouteSet::default());
            }
            Err(e) => return Err(io(dir, e)),
        };
        let mut files = Vec::new();
        for entry in entries {
            let path = entry.map_err(|e| io(dir, e))?.path();
            if path.extension().is_some_and(|ext| ext == "toml") && path.is_file() {
                files.push(path);
            }
        }
        files.sort();
        let mut routes = Vec::new();
        for path in files {
            let text = std::fs::read_to_string(&path).map_err(|e| io(&path, e))?;
            routes.extend(parse_file(&text, &path.display().to_string())?);
        }
        check_unique(&routes)?;
        Ok(RouteSet::from_routes(routes))
    }

    /// Switches the built-in default route `ingest/{table}` on (the default) or off.
    pub fn with_default_route(mut self, on: bool) -> RouteSet {
        if on != self.default_route {
            if on {
                self.routes.push(Route::default_route());
            } else {
                self.routes.pop();
            }
            self.default_route = on;
        }
        self
    }

    /// Every route in matching order: the configured ones, then the default route when on.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The route for `topic`: the first whose pattern matches, with its captures and the
    /// table name it gives. `None` when no route matches.
    ///
    /// The table name is returned even when it is not a valid table name (a capture with a
    /// `-`, say), so that the caller can dead-letter the message under the route's name:
    /// [`RouteMatch::check_table`] and [`RouteMatch::decode`] report it as
    /// [`Error::InvalidTable`].
    pub fn resolve(&self, topic: &str) -> Option<RouteMatch<'_>> {
        self.routes.iter().find_map(|route| {
            let captures = route.captures(topic)?;
            Some(RouteMatch {
                table: route.render_table(&captures),
                route,
                captures,
            })
        })
    }
}

fn check_unique(routes: &[Route]) -> Result<(), RouteError> {
    let mut seen: HashMap<&str, &str> = HashMap::new();
    for route in routes {
        if let Some(first) = seen.insert(&route.name, &route.origin) {
            return Err(RouteError::DuplicateName {
                name: route.name.clone(),
                first: first.to_string(),
                second: route.origin.clone(),
            });
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Decoding a message.

/// A topic resolved by a route.
#[derive(Debug, Clone)]
pub struct RouteMatch<'a> {
    /// The route that matched.
    pub route: &'a Route,
    /// The table, from the route's template and the captures (not yet validated).
    pub table: String,
    /// The captures of the topic, in pattern order: name and value. They become tag columns
    /// of the decoded rows, except on the default route (`{table}` only names the table).
    pub captures: Vec<(String, String)>,
}

impl RouteMatch<'_> {
    /// The table name, or [`Error::InvalidTable`] naming the route and topic values when the
    /// captures made an invalid name.
    pub fn check_table(&self) -> Result<&str> {
        validate_table_name(&self.table).map_err(|e| {
            Error::InvalidTable(format!(
                "route '{}' (table '{}'): {e}",
                self.route.name, self.route.table
            ))
        })?;
        Ok(&self.table)
    }

    /// Decodes a message payload into rows of the resolved table.
    ///
    /// `opts.table` is replaced by the resolved table and `opts.precision` by the route's
    /// precision when it has one. A route with a mapping reads the JSON payload (an object or
    /// an array of objects) through it; any other route decodes with
    /// [`crate::decode_payload`] in its format. Every capture is then a tag column of every
    /// row, overriding a payload column of the same name (not on the default route, whose
    /// `{table}` capture only names the table).
    pub fn decode(
        &self,
        payload: &[u8],
        opts: &DecodeOptions,
        schemas: &dyn SchemaLookup,
    ) -> Result<Decoded> {
        let table = self.check_table()?;
        let mut opts = opts.clone();
        opts.table = Some(table.to_string());
        if let Some(precision) = self.route.precision {
            opts.precision = precision;
        }
        let captures: &[(String, String)] = if self.route.capture_tags {
            &self.captures
        } else {
            &[]
        };
        match &self.route.mapping {
            Some(mapping) => mapping.decode(payload, table, captures, &opts, schemas),
            None => {
                let mut decoded =
                    crate::decode_payload(self.route.format, payload, &opts, schemas)?;
                if !captures.is_empty() {
                    for batch in &mut decoded.batches {
                        let existing = schemas.schema(&batch.table);
                        batch.batch = with_captures(&batch.batch, captures, existing.as_deref())?;
                    }
                }
                Ok(decoded)
            }
        }
    }
}

/// `batch` with a constant tag column per capture (replacing a column of the same name),
/// brought back to the conventions and checked against the table's schema.
fn with_captures(
    batch: &RecordBatch,
    captures: &[(String, String)],
    existing: Option<&Schema>,
) -> Result<RecordBatch> {
    let schema = batch.schema();
    let mut fields: Vec<Field> = Vec::with_capacity(schema.fields().len() + captures.len());
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(fields.capacity());
    for (field, array) in schema.fields().iter().zip(batch.columns()) {
        if !captures.iter().any(|(name, _)| name == field.name()) {
            fields.push(field.as_ref().clone());
            arrays.push(Arc::clone(array));
        }
    }
    for (name, value) in captures {
        let keys = Int32Array::from(vec![0; batch.num_rows()]);
        let values = StringArray::from(vec![value.as_str()]);
        let tags =
            DictionaryArray::<Int32Type>::try_new(keys, Arc::new(values)).map_err(Error::Arrow)?;
        fields.push(tag_column(name));
        arrays.push(Arc::new(tags));
    }
    let batch =
        RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).map_err(Error::Arrow)?;
    crate::normalize_batch(&batch, TIME_COLUMN, existing).map_err(|e| match e {
        Error::Schema(message) => Error::Schema(format!("topic capture: {message}")),
        other => other,
    })
}

fn json_kind(value: &Json) -> &'static str {
    match value {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

impl Mapping {
    fn decode(
        &self,
        payload: &[u8],
        table: &str,
        captures: &[(String, String)],
        opts: &DecodeOptions,
        schemas: &dyn SchemaLookup,
    ) -> Result<Decoded> {
        let text = crate::types::check_utf8(payload)?;
        let document: Json = serde_json::from_str(text).map_err(|e| Error::Json(e.to_string()))?;
        let mut builder = TableBuilder::new(table.to_string(), schemas.schema(table));
        let mut rejections = Rejections::default();
        let mut push = |row: usize, object: &Json| {
            let result = match object {
                Json::Object(_) => self.push_row(&mut builder, object, row, captures, opts),
                other => Err(RowError::new(
                    row,
                    0,
                    format!("expected a JSON object, found {}", json_kind(other)),
                )),
            };
            if let Err(e) = result {
                rejections.push(e);
            }
        };
        match &document {
            Json::Object(_) => push(1, &document),
            Json::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    push(i + 1, item);
                }
            }
            other => {
                return Err(Error::Json(format!(
                    "expected an object or an array of objects, found {}",
                    json_kind(other)
                )));
            }
        }
        finish_tables(vec![builder], rejections, opts.accept_partial)
    }

    /// One object → one row with the mapped columns (a missing pointer leaves a null).
    fn push_row(
        &self,
        builder: &mut TableBuilder,
        object: &Json,
        row: usize,
        captures: &[(String, String)],
        opts: &DecodeOptions,
    ) -> Result<(), RowError> {
        let error = |message: String| RowError::new(row, 0, message);
        let mut entries = Vec::with_capacity(self.fields.len() + self.tags.len() + captures.len());
        for field in &self.fields {
            let value = match object.pointer(&field.pointer) {
                None | Some(Json::Null) => continue,
                Some(Json::Number(n)) => {
                    let Some(v) = n.as_f64() else {
                        return Err(error(format!(
                            "field '{}': number {n} at {} is out of range",
                            field.column, field.pointer
                        )));
                    };
                    match field.conversion {
                        Conversion::None => Value::Number(v, n.as_i64()),
                        conversion => Value::Number(conversion.apply(v), None),
                    }
                }
                Some(other) => {
                    return Err(error(format!(
                        "field '{}': {} is {}, expected a number",
                        field.column,
                        field.pointer,
                        json_kind(other)
                    )));
                }
            };
            entries.push(Entry {
                key: Cow::Borrowed(field.column.as_str()),
                value,
                pos: 0,
            });
        }
        for (column, pointer) in &self.tags {
            let text = match object.pointer(pointer) {
                None | Some(Json::Null) => continue,
                Some(Json::String(s)) => Cow::Borrowed(s.as_str()),
                Some(value @ (Json::Number(_) | Json::Bool(_))) => Cow::Owned(value.to_string()),
                Some(other) => {
                    return Err(error(format!(
                        "tag '{column}': {pointer} is {}, expected a string",
                        json_kind(other)
                    )));
                }
            };
            entries.push(Entry {
                key: Cow::Borrowed(column.as_str()),
                value: Value::Text(text),
                pos: 0,
            });
        }
        if entries.is_empty() {
            let mut pointers: Vec<&str> = self.fields.iter().map(|f| f.pointer.as_str()).collect();
            pointers.extend(self.tags.iter().map(|(_, p)| p.as_str()));
            return Err(error(format!(
                "none of the mapped values ({}) is in the object",
                pointers.join(", ")
            )));
        }
        for (name, value) in captures {
            entries.push(Entry {
                key: Cow::Borrowed(name.as_str()),
                value: Value::Text(Cow::Borrowed(value.as_str())),
                pos: 0,
            });
        }
        let time = match &self.time {
            None => opts.now_micros,
            Some(time) => time.read(object, opts.precision).map_err(error)?,
        };
        builder.push_row(time, &entries, row, Dialect::JSON)
    }
}

impl TimeMap {
    /// The time of `object` in microseconds since the epoch.
    fn read(&self, object: &Json, precision: Precision) -> Result<i64, String> {
        let pointer = &self.pointer;
        let value = match object.pointer(pointer) {
            None | Some(Json::Null) => return Err(format!("time: {pointer} is missing")),
            Some(value) => value,
        };
        let bad = |expected: &str| {
            format!(
                "time: {pointer} is {}, expected {expected}",
                json_kind(value)
            )
        };
        match (&self.format, value) {
            (TimeFormat::Auto | TimeFormat::Rfc3339, Json::String(s)) => {
                chrono::DateTime::parse_from_rfc3339(s)
                    .map(|t| t.timestamp_micros())
                    .map_err(|e| format!("time {s:?} at {pointer} is not RFC 3339 ({e})"))
            }
            (TimeFormat::Auto, Json::Number(_)) => epoch(value, precision, pointer),
            (TimeFormat::Auto, _) => Err(bad("an RFC 3339 string or an epoch number")),
            (TimeFormat::Rfc3339, _) => Err(bad("an RFC 3339 string")),
            (TimeFormat::Epoch(unit), Json::Number(_) | Json::String(_)) => {
                epoch(value, *unit, pointer)
            }
            (TimeFormat::Epoch(_), _) => Err(bad("an epoch number")),
            (TimeFormat::Strftime(items), Json::String(s)) => strftime(s, items).ok_or_else(|| {
                format!("time {s:?} at {pointer} does not fit the route's time format")
            }),
            (TimeFormat::Strftime(_), _) => Err(bad("a string")),
        }
    }
}

/// An epoch number (or a string holding one) in `unit`, as microseconds.
fn epoch(value: &Json, unit: Precision, pointer: &str) -> Result<i64, String> {
    let micros = match value {
        Json::Number(n) => match n.as_i64() {
            Some(v) => unit.to_micros(v),
            None => n.as_f64().and_then(|v| unit.float_to_micros(v)),
        },
        Json::String(s) => match s.trim().parse::<i64>() {
            Ok(v) => unit.to_micros(v),
            Err(_) => match s.trim().parse::<f64>() {
                Ok(v) => unit.float_to_micros(v),
                Err(_) => {
                    return Err(format!("time {s:?} at {pointer} is not an epoch number"));
                }
            },
        },
        _ => None,
    };
    micros.ok_or_else(|| format!("time {value} at {pointer} is out of range for precision {unit}"))
}

/// A time parsed with a strftime pattern: with its offset when the pattern has one, else UTC;
/// a date without a time of day is midnight.
fn strftime(text: &str, items: &[Item<'static>]) -> Option<i64> {
    let mut parsed = Parsed::new();
    chrono::format::parse(&mut parsed, text, items.iter()).ok()?;
    if parsed.offset().is_some() {
        return parsed.to_datetime().ok().map(|t| t.timestamp_micros());
    }
    match parsed.to_naive_datetime_with_offset(0) {
        Ok(t) => Some(t.and_utc().timestamp_micros()),
        Err(_) if parsed.hour_div_12().is_none() && parsed.timestamp().is_none() => {
            parsed.to_naive_date().ok().map(|d| {
                d.and_time(chrono::NaiveTime::MIN)
                    .and_utc()
                    .timestamp_micros()
            })
        }
        Err(_) => None,
    }
}

#[cfg(test)]
mod tests;
