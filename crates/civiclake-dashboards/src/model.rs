//! Dashboards as read from `dashboards/*.toml`: the types, the strict reading and the checks.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::error::DashboardError;
use crate::sql::{self, Piece};

/// The value of a variable whose "All" choice is selected (`var-district=$__all` in a
/// request). No static value may be spelt like this.
pub const ALL_VALUE: &str = "$__all";

/// The refresh interval of a dashboard that does not set one.
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(60);

/// The shortest refresh interval a dashboard may ask for.
pub const MIN_REFRESH: Duration = Duration::from_secs(5);

/// The time range choices of a dashboard that lists none (its default is added if missing).
pub const DEFAULT_CHOICES: [&str; 6] = [
    "last 15m", "last 1h", "last 6h", "last 24h", "last 7d", "last 30d",
];

/// The number of table rows drawn when a table panel does not set `max_rows`.
pub const DEFAULT_MAX_ROWS: usize = 20;

/// The number of histogram bins when a histogram panel does not set `bins`.
pub const DEFAULT_BINS: u32 = 20;

/// All dashboards of a folder, ordered by id.
#[derive(Debug, Clone, Default)]
pub struct DashboardSet {
    dashboards: Vec<Dashboard>,
}

impl DashboardSet {
    /// Reads every `*.toml` file of `dir` (not recursively); a dashboard's id is its file
    /// stem. Unknown keys, bad values and malformed SQL macros are errors naming the file
    /// and the panel or variable. A folder without dashboard files gives an empty set.
    pub fn load_dir(dir: &Path) -> Result<Self, DashboardError> {
        let files = crate::files_with_extension(dir, "toml")?;
        let mut dashboards = Vec::with_capacity(files.len());
        for path in files {
            let file = path.display().to_string();
            let text = std::fs::read_to_string(&path).map_err(|source| DashboardError::Io {
                path: path.clone(),
                source,
            })?;
            let stem = path
                .file_stem()
                .and_then(|s| s.to_str())
                .ok_or_else(|| DashboardError::invalid(&file, "the file name is not UTF-8"))?;
            dashboards.push(Dashboard::parse(stem, &text, &file)?);
        }
        Self::new(dashboards)
    }

    /// A set of one dashboard read from TOML text (errors name `id` as the file).
    pub fn from_toml(id: &str, text: &str) -> Result<Self, DashboardError> {
        Self::new(vec![Dashboard::from_toml(id, text)?])
    }

    /// A set of dashboards; two with the same id are an error.
    pub fn new(mut dashboards: Vec<Dashboard>) -> Result<Self, DashboardError> {
        dashboards.sort_by(|a, b| a.id.cmp(&b.id));
        for pair in dashboards.windows(2) {
            if pair[0].id == pair[1].id {
                return Err(DashboardError::invalid(
                    &pair[0].id,
                    "two dashboards have this id",
                ));
            }
        }
        Ok(Self { dashboards })
    }

    /// The dashboards, ordered by id.
    pub fn dashboards(&self) -> &[Dashboard] {
        &self.dashboards
    }

    /// The dashboard with this id.
    pub fn get(&self, id: &str) -> Option<&Dashboard> {
        self.dashboards
            .binary_search_by(|d| d.id.as_str().cmp(id))
            .ok()
            .map(|i| &self.dashboards[i])
    }

    /// Checks that every boundary layer named by a map panel is loaded: a server calls this
    /// once at start so a misspelt layer is found before anyone opens the dashboard.
    pub fn check_layers(&self, geo: &crate::GeoLayers) -> Result<(), DashboardError> {
        for dashboard in &self.dashboards {
            for panel in &dashboard.panels {
                if let PanelKind::Map { layers, .. } = &panel.kind {
                    for layer in layers {
                        if geo.get(layer).is_none() {
                            return Err(DashboardError::invalid(
                                &dashboard.id,
                                format!(
                                    "panel `{}`: boundary layer `{layer}` is not loaded \
                                     (dashboards/geo/{layer}.geojson); loaded: {}",
                                    panel.id,
                                    list_or_none(geo.names())
                                ),
                            ));
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

fn list_or_none<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let names: Vec<&str> = names.collect();
    if names.is_empty() {
        "none".to_string()
    } else {
        names.join(", ")
    }
}

/// One dashboard: its time range selector, variables and panels.
#[derive(Debug, Clone, PartialEq)]
pub struct Dashboard {
    /// The file stem: letters, digits, `-` and `_` (URL-safe).
    pub id: String,
    /// The title shown on the page.
    pub title: String,
    /// A longer text for the page.
    pub description: Option<String>,
    /// How often the page reloads its panels.
    pub refresh: Duration,
    /// The default time range and the choices offered.
    pub time: TimeSettings,
    /// The variables, in file order.
    pub variables: Vec<Variable>,
    /// The panels, in file order.
    pub panels: Vec<Panel>,
}

/// The time range selector of a dashboard.
#[derive(Debug, Clone, PartialEq)]
pub struct TimeSettings {
    /// The range shown when a request gives no `from`/`to`.
    pub default: RelativeRange,
    /// The ranges offered, shortest first; the default is one of them.
    pub choices: Vec<RelativeRange>,
}

/// A range ending now, such as "last 24h".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelativeRange {
    /// The text as shown: `last 24h`.
    pub label: String,
    /// The length, as written after `last ` (`24h`, `7d`, `30m`).
    pub span: String,
    /// The length.
    pub duration: Duration,
}

impl RelativeRange {
    /// Reads `last <duration>` (`last 24h`, `last 7d`, `last 90m`).
    pub fn parse(text: &str) -> Result<Self, String> {
        let span = text
            .trim()
            .strip_prefix("last ")
            .map(str::trim)
            .ok_or_else(|| {
                format!("time range `{text}` must read `last <duration>`, as `last 24h`")
            })?;
        let duration =
            humantime::parse_duration(span).map_err(|e| format!("time range `{text}`: {e}"))?;
        if duration < Duration::from_secs(60) {
            return Err(format!("time range `{text}` is shorter than a minute"));
        }
        Ok(Self {
            label: format!("last {span}"),
            span: span.to_string(),
            duration,
        })
    }

    /// The `from` query parameter for this range: `now-24h` (with `to=now`).
    pub fn from_param(&self) -> String {
        format!("now-{}", self.span.replace(' ', ""))
    }
}

/// A variable usable in the panels' SQL as `${name}`, `$name` or `$__filter(column, name)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Variable {
    /// The name: letters, digits and `_`, not starting with a digit or `__`.
    pub name: String,
    /// The label of the page's control (the name when the file gives none).
    pub label: String,
    /// Where the choices come from.
    pub source: VariableSource,
    /// Whether "All" ([`ALL_VALUE`]) is a choice. Panels may then use the variable only
    /// through `$__filter(column, name)`, which expands to `TRUE` for All.
    pub include_all: bool,
    /// The value used when a request does not set one: the file's `default`, else All when
    /// it is a choice, else the first static value. `None` only for a query-driven variable
    /// without `default` and without All: requests must then set it.
    pub default: Option<String>,
}

/// The choices of a variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VariableSource {
    /// A fixed list; request values are checked against it.
    Values(Vec<String>),
    /// An SQL query returning one column; its values are the choices. It cannot use macros
    /// or other variables.
    Query(String),
}

/// One panel of a dashboard.
#[derive(Debug, Clone, PartialEq)]
pub struct Panel {
    /// Unique within the dashboard; letters, digits, `-` and `_` (URL-safe).
    pub id: String,
    /// The chart's title.
    pub title: String,
    /// What is drawn, with the options of that kind.
    pub kind: PanelKind,
    /// The query, with macros and variables (see the crate documentation).
    pub sql: String,
    /// The unit of the values (`µg/m³`), shown on the value axis, legends and stat values.
    pub unit: Option<String>,
    /// A longer text for the page.
    pub description: Option<String>,
    /// The name of the value axis (`NO₂`); the unit is added in parentheses.
    pub value_label: Option<String>,
    /// Decimals shown for values (stat, table, colour scales); automatic when `None`.
    pub decimals: Option<u8>,
    /// Lower bound of the value axis or colour scale; from the data when `None`.
    pub min: Option<f64>,
    /// Upper bound of the value axis or colour scale; from the data when `None`.
    pub max: Option<f64>,
}

/// The kinds of panel and their own options.
#[derive(Debug, Clone, PartialEq)]
pub enum PanelKind {
    /// Lines over time (`kind = "timeseries"`).
    TimeSeries,
    /// One bar per label (`kind = "bar"`).
    Bar,
    /// Bars of several series stacked per label (`kind = "stacked_bar"`).
    StackedBar,
    /// Counts of values in equal bins (`kind = "histogram"`).
    Histogram {
        /// The number of bins (1–200).
        bins: u32,
    },
    /// Hour of day × day cells coloured by value (`kind = "heatmap"`).
    Heatmap,
    /// The rows as a table (`kind = "table"`).
    Table {
        /// The most rows drawn (1–500); a line says how many more there are.
        max_rows: usize,
    },
    /// One big value on a threshold colour (`kind = "stat"`).
    Stat {
        /// Ascending by value; the colour is that of the last threshold at or below the value.
        thresholds: Vec<Threshold>,
    },
    /// Points coloured by value over boundary layers (`kind = "map"`).
    Map {
        /// Boundary layers drawn beneath, by name (`dashboards/geo/<name>.geojson`).
        layers: Vec<String>,
        /// Whether the boundaries are filled by the points inside them.
        fill: MapFill,
    },
}

impl PanelKind {
    /// The `kind` as written in TOML.
    pub fn name(&self) -> &'static str {
        match self {
            Self::TimeSeries => "timeseries",
            Self::Bar => "bar",
            Self::StackedBar => "stacked_bar",
            Self::Histogram { .. } => "histogram",
            Self::Heatmap => "heatmap",
            Self::Table { .. } => "table",
            Self::Stat { .. } => "stat",
            Self::Map { .. } => "map",
        }
    }
}

/// How a map panel fills its boundary polygons.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapFill {
    /// Outlines only (`fill = "none"`, the default).
    None,
    /// Each polygon coloured by the mean value of the points inside it (`fill = "mean"`);
    /// polygons without points stay empty.
    Mean,
}

/// A colour step of a stat panel.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Threshold {
    /// From this value upwards (until the next threshold) the colour applies.
    pub value: f64,
    /// The colour.
    pub colour: Colour,
}

/// An RGB colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Colour {
    /// Red.
    pub r: u8,
    /// Green.
    pub g: u8,
    /// Blue.
    pub b: u8,
}

/// Colour names accepted in dashboard files: the Okabe–Ito colour-blind-safe palette.
pub const COLOUR_NAMES: [(&str, Colour); 9] = [
    ("green", Colour::rgb(0, 158, 115)),
    ("yellow", Colour::rgb(240, 228, 66)),
    ("orange", Colour::rgb(230, 159, 0)),
    ("red", Colour::rgb(213, 94, 0)),
    ("blue", Colour::rgb(0, 114, 178)),
    ("sky", Colour::rgb(86, 180, 233)),
    ("purple", Colour::rgb(204, 121, 167)),
    ("grey", Colour::rgb(153, 153, 153)),
    ("black", Colour::rgb(0, 0, 0)),
];

impl Colour {
    /// A colour from its components.
    pub const fn rgb(r: u8, g: u8, b: u8) -> Self {
        Self { r, g, b }
    }

    /// Reads `#rrggbb` or one of [`COLOUR_NAMES`].
    pub fn parse(text: &str) -> Result<Self, String> {
        if let Some(hex) = text.strip_prefix('#') {
            if hex.len() == 6 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                let part = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).unwrap_or(0);
                return Ok(Self::rgb(part(0), part(2), part(4)));
            }
            return Err(format!("colour `{text}` is not `#rrggbb`"));
        }
        COLOUR_NAMES
            .iter()
            .find(|(name, _)| *name == text)
            .map(|(_, c)| *c)
            .ok_or_else(|| {
                format!(
                    "unknown colour `{text}`: use `#rrggbb` or one of {}",
                    COLOUR_NAMES.map(|(n, _)| n).join(", ")
                )
            })
    }
}

// ---------------------------------------------------------------------------------------
// Reading the TOML

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DashboardToml {
    title: String,
    description: Option<String>,
    refresh: Option<String>,
    time: Option<TimeToml>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TimeToml {
    default: String,
    choices: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VariableToml {
    name: String,
    label: Option<String>,
    values: Option<Vec<String>>,
    query: Option<String>,
    #[serde(default)]
    all: bool,
    default: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PanelToml {
    id: String,
    title: String,
    kind: String,
    sql: String,
    unit: Option<String>,
    description: Option<String>,
    value_label: Option<String>,
    decimals: Option<u8>,
    min: Option<f64>,
    max: Option<f64>,
    bins: Option<u32>,
    max_rows: Option<usize>,
    thresholds: Option<Vec<ThresholdToml>>,
    layers: Option<Vec<String>>,
    fill: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ThresholdToml {
    value: f64,
    #[serde(alias = "color")]
    colour: String,
}

fn is_url_safe(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn is_variable_name(name: &str) -> bool {
    name.len() <= 64
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !name.starts_with("__")
}

/// The message of a TOML error without the caret drawing (one line).
fn toml_message(e: &toml::de::Error) -> String {
    e.message().trim().to_string()
}

impl Dashboard {
    /// Reads one dashboard from TOML text; `id` becomes its id and names it in errors.
    pub fn from_toml(id: &str, text: &str) -> Result<Self, DashboardError> {
        Self::parse(id, text, id)
    }

    fn parse(id: &str, text: &str, file: &str) -> Result<Self, DashboardError> {
        let err = |message: String| DashboardError::invalid(file, message);
        if !is_url_safe(id) {
            return Err(err(format!(
                "dashboard id `{id}` (the file name) must be 1–64 letters, digits, `-` or `_`"
            )));
        }
        let mut table: toml::Table = toml::from_str(text).map_err(|e| err(e.to_string()))?;
        let panels = take_tables(&mut table, "panels").map_err(&err)?;
        let variables = take_tables(&mut table, "variables").map_err(&err)?;
        let top: DashboardToml = toml::Value::Table(table)
            .try_into()
            .map_err(|e| err(toml_message(&e)))?;

        let refresh = match &top.refresh {
            None => DEFAULT_REFRESH,
            Some(text) => {
                let d = humantime::parse_duration(text)
                    .map_err(|e| err(format!("refresh `{text}`: {e}")))?;
                if d < MIN_REFRESH {
                    return Err(err(format!(
                        "refresh `{text}` is shorter than {}",
                        humantime::format_duration(MIN_REFRESH)
                    )));
                }
                d
            }
        };
        let time = read_time(top.time).map_err(&err)?;

        let mut vars: Vec<Variable> = Vec::with_capacity(variables.len());
        for (i, value) in variables.into_iter().enumerate() {
            let name = value.get("name").and_then(|v| v.as_str()).map_or_else(
                || format!("variable #{}", i + 1),
                |n| format!("variable `{n}`"),
            );
            let raw: VariableToml = value
                .try_into()
                .map_err(|e| err(format!("{name}: {}", toml_message(&e))))?;
            let var = read_variable(raw).map_err(|m| err(format!("{name}: {m}")))?;
            if vars.iter().any(|v| v.name == var.name) {
                return Err(err(format!("{name} is declared twice")));
            }
            vars.push(var);
        }

        if panels.is_empty() {
            return Err(err("a dashboard needs at least one [[panels]]".into()));
        }
        let mut out_panels: Vec<Panel> = Vec::with_capacity(panels.len());
        for (i, value) in panels.into_iter().enumerate() {
            let name = value
                .get("id")
                .and_then(|v| v.as_str())
                .map_or_else(|| format!("panel #{}", i + 1), |n| format!("panel `{n}`"));
            let raw: PanelToml = value
                .try_into()
                .map_err(|e| err(format!("{name}: {}", toml_message(&e))))?;
            let panel = read_panel(raw, &vars).map_err(|m| err(format!("{name}: {m}")))?;
            if out_panels.iter().any(|p| p.id == panel.id) {
                return Err(err(format!("{name}: two panels have this id")));
            }
            out_panels.push(panel);
        }

        Ok(Self {
            id: id.to_string(),
            title: top.title,
            description: top.description,
            refresh,
            time,
            variables: vars,
            panels: out_panels,
        })
    }

    /// The panel with this id.
    pub fn panel(&self, id: &str) -> Option<&Panel> {
        self.panels.iter().find(|p| p.id == id)
    }

    /// The variable with this name.
    pub fn variable(&self, name: &str) -> Option<&Variable> {
        self.variables.iter().find(|v| v.name == name)
    }

    /// The query of a query-driven variable, to run for its choices. A variable with a
    /// static list, or an unknown name, is an error.
    pub fn variable_sql(&self, name: &str) -> Result<&str, DashboardError> {
        let var = self.variable(name).ok_or_else(|| {
            DashboardError::Request(format!("dashboard `{}` has no variable `{name}`", self.id))
        })?;
        match &var.source {
            VariableSource::Query(sql) => Ok(sql),
            VariableSource::Values(_) => Err(DashboardError::Request(format!(
                "variable `{name}` has a static list of values, no query"
            ))),
        }
    }

    /// The panel's SQL with its macros expanded for the request: `$__from`/`$__to` as UTC
    /// timestamp literals, `$__interval` as an interval literal, `$__timeFilter(col)`,
    /// `$__filter(col, var)`, and variables as quoted string literals.
    pub fn panel_sql(
        &self,
        panel: &Panel,
        req: &crate::PanelRequest,
    ) -> Result<String, DashboardError> {
        let pieces = sql::scan(&panel.sql).map_err(|m| DashboardError::data(&panel.id, m))?;
        let from = sql::timestamp_literal(req.from);
        let to = sql::timestamp_literal(req.to);
        let value_of = |name: &str| -> Result<&str, DashboardError> {
            if self.variable(name).is_none() {
                return Err(DashboardError::data(
                    &panel.id,
                    format!("the SQL uses variable `{name}`, which the dashboard does not declare"),
                ));
            }
            let value = req.vars.get(name).ok_or_else(|| {
                DashboardError::Request(format!("variable `{name}` has no value (var-{name})"))
            })?;
            sql::check_value(name, value).map_err(DashboardError::Request)?;
            Ok(value.as_str())
        };
        let mut out = String::with_capacity(panel.sql.len() + 64);
        for piece in pieces {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::From => out.push_str(&from),
                Piece::To => out.push_str(&to),
                Piece::Interval => out.push_str(&sql::interval_literal(sql::interval_seconds(
                    req.from,
                    req.to,
                    req.width_px,
                ))),
                Piece::TimeFilter(expr) => {
                    out.push_str(&format!("({expr} >= {from} AND {expr} < {to})"));
                }
                Piece::Filter { expr, var } => {
                    let value = value_of(var)?;
                    if value == ALL_VALUE {
                        out.push_str("TRUE");
                    } else {
                        out.push_str(&format!("({expr} = {})", sql::quote_literal(value)));
                    }
                }
                Piece::Var(name) => {
                    let value = value_of(name)?;
                    if value == ALL_VALUE {
                        return Err(DashboardError::Request(format!(
                            "panel `{}` needs one value of `{name}`, not All",
                            panel.id
                        )));
                    }
                    out.push_str(&sql::quote_literal(value));
                }
            }
        }
        Ok(out)
    }
}

/// Removes `key` from the table; it must be an array of tables (or absent).
fn take_tables(table: &mut toml::Table, key: &str) -> Result<Vec<toml::Value>, String> {
    match table.remove(key) {
        None => Ok(Vec::new()),
        Some(toml::Value::Array(items)) => {
            if items.iter().all(toml::Value::is_table) {
                Ok(items)
            } else {
                Err(format!("`{key}` must be a list of tables ([[{key}]])"))
            }
        }
        Some(_) => Err(format!("`{key}` must be a list of tables ([[{key}]])")),
    }
}

fn read_time(time: Option<TimeToml>) -> Result<TimeSettings, String> {
    let Some(time) = time else {
        let default = RelativeRange::parse("last 24h")?;
        let choices = DEFAULT_CHOICES
            .iter()
            .map(|c| RelativeRange::parse(c))
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(TimeSettings { default, choices });
    };
    let default =
        RelativeRange::parse(&time.default).map_err(|m| format!("[time] default: {m}"))?;
    let mut choices = match time.choices {
        Some(list) => {
            if list.is_empty() {
                return Err("[time] choices is empty; leave it out for the standard list".into());
            }
            list.iter()
                .map(|c| RelativeRange::parse(c).map_err(|m| format!("[time] choices: {m}")))
                .collect::<Result<Vec<_>, _>>()?
        }
        None => DEFAULT_CHOICES
            .iter()
            .map(|c| RelativeRange::parse(c))
            .collect::<Result<Vec<_>, _>>()?,
    };
    if !choices.iter().any(|c| c.duration == default.duration) {
        choices.push(default.clone());
    }
    choices.sort_by_key(|c| c.duration);
    choices.dedup_by_key(|c| c.duration);
    Ok(TimeSettings { default, choices })
}

fn read_variable(raw: VariableToml) -> Result<Variable, String> {
    if !is_variable_name(&raw.name) {
        return Err(
            "the name must be letters, digits and `_`, start with a letter or `_`, not with \
             `__`, and be at most 64 characters"
                .into(),
        );
    }
    let source = match (raw.values, raw.query) {
        (Some(_), Some(_)) => return Err("give `values` or `query`, not both".into()),
        (None, None) => {
            return Err("give its choices as `values = [...]` or `query = \"...\"`".into());
        }
        (Some(values), None) => {
            if values.is_empty() {
                return Err("`values` is empty".into());
            }
            let mut seen = BTreeSet::new();
            for v in &values {
                sql::check_value(&raw.name, v)?;
                if v.starts_with("$__") {
                    return Err(format!(
                        "value `{v}`: values starting with `$__` are reserved"
                    ));
                }
                if !seen.insert(v.as_str()) {
                    return Err(format!("value `{v}` is listed twice"));
                }
            }
            VariableSource::Values(values)
        }
        (None, Some(query)) => {
            let pieces = sql::scan(&query).map_err(|m| format!("query: {m}"))?;
            if pieces.iter().any(|p| !matches!(p, Piece::Text(_))) {
                return Err("its query cannot use macros or variables".into());
            }
            if query.trim().is_empty() {
                return Err("`query` is empty".into());
            }
            VariableSource::Query(query)
        }
    };
    let default = match raw.default {
        Some(d) => {
            let ok = match &source {
                _ if d == ALL_VALUE => raw.all,
                VariableSource::Values(values) => values.contains(&d),
                VariableSource::Query(_) => sql::check_value(&raw.name, &d).is_ok(),
            };
            if !ok {
                return Err(format!("default `{d}` is not one of its choices"));
            }
            Some(d)
        }
        None if raw.all => Some(ALL_VALUE.to_string()),
        None => match &source {
            VariableSource::Values(values) => values.first().cloned(),
            VariableSource::Query(_) => None,
        },
    };
    Ok(Variable {
        label: raw.label.unwrap_or_else(|| raw.name.clone()),
        name: raw.name,
        source,
        include_all: raw.all,
        default,
    })
}

const KINDS: &str = "timeseries, bar, stacked_bar, histogram, heatmap, table, stat, map";

fn read_panel(raw: PanelToml, vars: &[Variable]) -> Result<Panel, String> {
    if !is_url_safe(&raw.id) {
        return Err("the id must be 1–64 letters, digits, `-` or `_`".into());
    }
    let kind_name = raw.kind.as_str();
    // Options that only some kinds read: any other kind giving them is an error, so a typo
    // in `kind` or a misplaced option does not pass silently.
    let only = |option: &str, given: bool, kinds: &[&str]| -> Result<(), String> {
        if given && !kinds.contains(&kind_name) {
            return Err(format!(
                "`{option}` is an option of {} panels, not of `{kind_name}`",
                kinds.join("/")
            ));
        }
        Ok(())
    };
    if !KINDS.split(", ").any(|k| k == kind_name) {
        return Err(format!("unknown kind `{kind_name}`; the kinds are {KINDS}"));
    }
    let scaled = [
        "timeseries",
        "bar",
        "stacked_bar",
        "histogram",
        "heatmap",
        "map",
    ];
    only("min", raw.min.is_some(), &scaled)?;
    only("max", raw.max.is_some(), &scaled)?;
    only("bins", raw.bins.is_some(), &["histogram"])?;
    only("max_rows", raw.max_rows.is_some(), &["table"])?;
    only("thresholds", raw.thresholds.is_some(), &["stat"])?;
    only("layers", raw.layers.is_some(), &["map"])?;
    only("fill", raw.fill.is_some(), &["map"])?;
    for (name, v) in [("min", raw.min), ("max", raw.max)] {
        if v.is_some_and(|v| !v.is_finite()) {
            return Err(format!("`{name}` must be a finite number"));
        }
    }
    if let (Some(lo), Some(hi)) = (raw.min, raw.max)
        && lo >= hi
    {
        return Err(format!("`min` ({lo}) must be below `max` ({hi})"));
    }
    if raw.decimals.is_some_and(|d| d > 10) {
        return Err("`decimals` must be 0–10".into());
    }

    let kind = match kind_name {
        "timeseries" => PanelKind::TimeSeries,
        "bar" => PanelKind::Bar,
        "stacked_bar" => PanelKind::StackedBar,
        "histogram" => {
            let bins = raw.bins.unwrap_or(DEFAULT_BINS);
            if !(1..=200).contains(&bins) {
                return Err("`bins` must be 1–200".into());
            }
            PanelKind::Histogram { bins }
        }
        "heatmap" => PanelKind::Heatmap,
        "table" => {
            let max_rows = raw.max_rows.unwrap_or(DEFAULT_MAX_ROWS);
            if !(1..=500).contains(&max_rows) {
                return Err("`max_rows` must be 1–500".into());
            }
            PanelKind::Table { max_rows }
        }
        "stat" => {
            let mut thresholds = Vec::new();
            for t in raw.thresholds.unwrap_or_default() {
                if !t.value.is_finite() {
                    return Err("a threshold value must be a finite number".into());
                }
                let colour = Colour::parse(&t.colour).map_err(|m| format!("thresholds: {m}"))?;
                thresholds.push(Threshold {
                    value: t.value,
                    colour,
                });
            }
            if thresholds.windows(2).any(|w| w[0].value >= w[1].value) {
                return Err("`thresholds` must be in ascending order of value".into());
            }
            PanelKind::Stat { thresholds }
        }
        _ => {
            let layers = raw.layers.unwrap_or_default();
            if let Some(bad) = layers.iter().find(|l| !is_url_safe(l)) {
                return Err(format!(
                    "layer `{bad}`: a layer is named by its file stem (letters, digits, `-`, `_`)"
                ));
            }
            let fill = match raw.fill.as_deref() {
                None | Some("none") => MapFill::None,
                Some("mean") => MapFill::Mean,
                Some(other) => {
                    return Err(format!("`fill = \"{other}\"`: use \"none\" or \"mean\""));
                }
            };
            if fill == MapFill::Mean && layers.is_empty() {
                return Err("`fill = \"mean\"` needs `layers`".into());
            }
            PanelKind::Map { layers, fill }
        }
    };

    check_panel_sql(&raw.sql, vars)?;
    Ok(Panel {
        id: raw.id,
        title: raw.title,
        kind,
        sql: raw.sql,
        unit: raw.unit,
        description: raw.description,
        value_label: raw.value_label,
        decimals: raw.decimals,
        min: raw.min,
        max: raw.max,
    })
}

/// Macros well formed, variables declared, and variables with an All choice used only
/// through `$__filter` (a quoted literal cannot say "All").
fn check_panel_sql(text: &str, vars: &[Variable]) -> Result<(), String> {
    if text.trim().is_empty() {
        return Err("`sql` is empty".into());
    }
    let pieces = sql::scan(text).map_err(|m| format!("sql: {m}"))?;
    for piece in pieces {
        let (name, plain) = match piece {
            Piece::Var(name) => (name, true),
            Piece::Filter { var, .. } => (var, false),
            _ => continue,
        };
        let Some(var) = vars.iter().find(|v| v.name == name) else {
            let declared = list_or_none(vars.iter().map(|v| v.name.as_str()));
            return Err(format!(
                "sql: variable `{name}` is not declared (declared: {declared})"
            ));
        };
        if plain && var.include_all {
            return Err(format!(
                "sql: variable `{name}` has an All choice, so it must be used as \
                 $__filter(column, {name}) (which is TRUE for All), not as ${{{name}}}"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const AIR: &str = r##"
title = "Air quality"
description = "NO₂ by district"
refresh = "30s"

[time]
default = "last 24h"
choices = ["last 6h", "last 7d"]

[[variables]]
name = "district"
label = "District"
values = ["Centro", "San Paolo", "Sant'Ippolito"]
all = true

[[variables]]
name = "kind"
query = "SELECT DISTINCT kind FROM sensors ORDER BY 1"
default = "no2"

[[panels]]
id = "no2"
title = "NO₂"
kind = "timeseries"
unit = "µg/m³"
sql = """
SELECT date_bin($__interval, time, $__from) AS time, avg(value) AS value
FROM air WHERE $__timeFilter(time) AND $__filter(district, district) AND kind = ${kind}
GROUP BY 1 ORDER BY 1
"""

[[panels]]
id = "now"
title = "Now"
kind = "stat"
sql = "SELECT 1 AS value"
thresholds = [{ value = 0, colour = "green" }, { value = 40, color = "#d55e00" }]
"##;

    fn air() -> Dashboard {
        Dashboard::from_toml("air", AIR).unwrap()
    }

    #[test]
    fn reads_a_full_dashboard() {
        let d = air();
        assert_eq!(d.title, "Air quality");
        assert_eq!(d.refresh, Duration::from_secs(30));
        assert_eq!(d.time.default.label, "last 24h");
        let labels: Vec<&str> = d.time.choices.iter().map(|c| c.label.as_str()).collect();
        assert_eq!(labels, ["last 6h", "last 24h", "last 7d"]);
        assert_eq!(d.time.default.from_param(), "now-24h");
        assert_eq!(d.variables[0].default.as_deref(), Some(ALL_VALUE));
        assert_eq!(d.variables[1].default.as_deref(), Some("no2"));
        assert_eq!(
            d.variable_sql("kind").unwrap(),
            "SELECT DISTINCT kind FROM sensors ORDER BY 1"
        );
        assert!(d.variable_sql("district").is_err());
        assert_eq!(
            d.panels[1].kind,
            PanelKind::Stat {
                thresholds: vec![
                    Threshold {
                        value: 0.0,
                        colour: Colour::rgb(0, 158, 115)
                    },
                    Threshold {
                        value: 40.0,
                        colour: Colour::rgb(0xd5, 0x5e, 0)
                    },
                ]
            }
        );
        assert_eq!(d.panels[0].unit.as_deref(), Some("µg/m³"));
    }

    fn error_of(text: &str) -> String {
        Dashboard::from_toml("bad", text).unwrap_err().to_string()
    }

    fn with_panel(extra: &str) -> String {
        format!(
            "title = \"t\"\n[[panels]]\nid = \"p1\"\ntitle = \"P\"\nkind = \"timeseries\"\n\
             sql = \"SELECT 1\"\n{extra}\n"
        )
    }

    #[test]
    fn unknown_keys_name_the_file_and_panel() {
        let e = error_of(&with_panel("colour = \"red\""));
        assert!(
            e.starts_with("bad: panel `p1`: unknown field `colour`"),
            "{e}"
        );
        let e = error_of(
            "title = \"t\"\ntheme = \"dark\"\n[[panels]]\nid=\"a\"\ntitle=\"a\"\nkind=\"bar\"\nsql=\"x\"",
        );
        assert!(e.contains("unknown field `theme`"), "{e}");
        let e = error_of(
            "title = \"t\"\n[[variables]]\nname = \"v\"\nvalues = [\"a\"]\nmulti = true\n[[panels]]\nid=\"a\"\ntitle=\"a\"\nkind=\"bar\"\nsql=\"x\"",
        );
        assert!(e.contains("variable `v`: unknown field `multi`"), "{e}");
    }

    #[test]
    fn options_of_other_kinds_are_refused() {
        let e = error_of(&with_panel("bins = 10"));
        assert!(
            e.contains("panel `p1`: `bins` is an option of histogram panels, not of `timeseries`"),
            "{e}"
        );
        let e = error_of(&with_panel("").replace("timeseries", "pie"));
        assert!(e.contains("unknown kind `pie`"), "{e}");
    }

    #[test]
    fn bad_sql_macros_and_variables_are_refused_at_load() {
        let e = error_of(&with_panel("").replace("SELECT 1", "SELECT $__form"));
        assert!(
            e.contains("panel `p1`: sql: unknown macro `$__form`"),
            "{e}"
        );
        let e = error_of(&with_panel("").replace("SELECT 1", "SELECT ${nope}"));
        assert!(e.contains("variable `nope` is not declared"), "{e}");
        let text = AIR.replace("$__filter(district, district)", "district = ${district}");
        let e = error_of(&text);
        assert!(
            e.contains("panel `no2`: sql: variable `district` has an All choice"),
            "{e}"
        );
    }

    #[test]
    fn bad_values_are_refused() {
        let e = error_of(&with_panel("").replace("id = \"p1\"\n", ""));
        assert!(e.contains("bad: panel #1: missing field `id`"), "{e}");
        let e = error_of(&with_panel("").replace("\"p1\"", "\"p 1\""));
        assert!(e.contains("the id must be"), "{e}");
        let e = error_of(&format!(
            "{}\n[[panels]]\nid = \"p1\"\ntitle = \"again\"\nkind = \"bar\"\nsql = \"x\"",
            with_panel("")
        ));
        assert!(e.contains("two panels have this id"), "{e}");
        let e = error_of(&with_panel("min = 5.0\nmax = 1.0"));
        assert!(e.contains("`min` (5) must be below `max` (1)"), "{e}");
        let e =
            error_of(&with_panel("").replace("title = \"t\"", "title = \"t\"\nrefresh = \"1s\""));
        assert!(e.contains("shorter than 5s"), "{e}");
        let e = error_of(
            &with_panel("").replace("title = \"t\"", "title = \"t\"\n[time]\ndefault = \"24h\""),
        );
        assert!(e.contains("must read `last <duration>`"), "{e}");
        let e = error_of(&AIR.replace("color = \"#d55e00\"", "colour = \"pink\""));
        assert!(
            e.contains("panel `now`: thresholds: unknown colour `pink`"),
            "{e}"
        );
        let e = error_of(&AIR.replace("values = [\"Centro\"", "values = [\"$__all\""));
        assert!(e.contains("variable `district`: value `$__all`"), "{e}");
        let e = error_of(&AIR.replace("default = \"no2\"", "default = \"no2\"\nvalues = [\"a\"]"));
        assert!(e.contains("not both"), "{e}");
        let e = error_of("title = \"t\"\n");
        assert!(e.contains("at least one [[panels]]"), "{e}");
        let e = error_of("title = ");
        assert!(e.starts_with("bad: TOML parse error"), "{e}");
        assert!(Dashboard::from_toml("a b", AIR).is_err());
    }

    #[test]
    fn default_time_choices() {
        let d = Dashboard::from_toml("d", &with_panel("")).unwrap();
        assert_eq!(d.time.default.label, "last 24h");
        assert_eq!(d.time.choices.len(), DEFAULT_CHOICES.len());
        assert_eq!(d.refresh, DEFAULT_REFRESH);
    }

    #[test]
    fn load_dir_orders_by_id_and_names_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("b.toml"), AIR).unwrap();
        std::fs::write(dir.path().join("a.toml"), with_panel("")).unwrap();
        std::fs::write(dir.path().join("notes.md"), "not a dashboard").unwrap();
        let set = DashboardSet::load_dir(dir.path()).unwrap();
        let ids: Vec<&str> = set.dashboards().iter().map(|d| d.id.as_str()).collect();
        assert_eq!(ids, ["a", "b"]);
        assert_eq!(set.get("b").unwrap().title, "Air quality");
        assert!(set.get("c").is_none());

        std::fs::write(dir.path().join("c.toml"), with_panel("bins = 3")).unwrap();
        let e = DashboardSet::load_dir(dir.path()).unwrap_err().to_string();
        assert!(e.contains("c.toml: panel `p1`: `bins`"), "{e}");
    }
}
