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

use crate::error::{Error, Result};
use crate::format::PayloadFormat;
use crate::types::{DecodeOptions, Decoded, Precision, SchemaLookup};
use arrow::array::{ArrayRef, DictionaryArray, Int32Array, RecordBatch, StringArray};
use arrow::datatypes::{Field, Int32Type, Schema};
use civiclake_core::{TIME_COLUMN, tag_column, validate_table_name};
use config::parse_file;
use mapping::Mapping;
use std::collections::HashMap;
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

    /// The payload format (`json` for a route with a mapping).
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

mod config;
mod mapping;
#[cfg(test)]
mod tests;
