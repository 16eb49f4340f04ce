//! Reading route files: the TOML shape and its compilation into [`Route`]s, with errors that
//! say what is wrong where.

use super::mapping::{CONVERSIONS, Conversion, FieldMap, Mapping, TimeFormat, TimeMap};
use super::{DEFAULT_ROUTE_NAME, DEFAULT_ROUTE_TOPIC, Level, Route, RouteError, Segment};
use crate::format::PayloadFormat;
use crate::types::Precision;
use chrono::format::StrftimeItems;
use civiclake_core::{TIME_COLUMN, validate_column_name, validate_table_name};
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use std::collections::{BTreeMap, HashMap};
use std::fmt;

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
    // A mapping reads JSON: say so to metrics and pages when the file left `auto`.
    let format = if mapping.is_some() {
        PayloadFormat::Json
    } else {
        spec.format
    };
    Ok(Route {
        name: spec.name,
        origin: origin.to_string(),
        pattern: spec.topic,
        levels,
        format,
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

pub(super) fn parse_file(text: &str, origin: &str) -> Result<Vec<Route>, RouteError> {
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
