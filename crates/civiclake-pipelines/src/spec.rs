//! What an analyst declares: pipelines and table settings (`pipelines/streams/*.toml`) and
//! alert rules (`pipelines/alerts/*.toml`), the same shapes as the API's JSON bodies.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Duration;

/// One continuous pipeline: a windowed aggregate of a source table into a target table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineSpec {
    /// Unique name (1–64 of `a-z0-9_-`).
    pub name: String,
    /// What it computes, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The table read.
    pub source: String,
    /// The table written: one row per window and group, with `window_start` and `window_end`
    /// (and `time` = `window_start`).
    pub target: String,
    /// `SELECT <aggregates> FROM <source> [WHERE ...] [GROUP BY ...] [HAVING ...]`; the window
    /// is added by the pipeline. Exactly one of `sql` and `rollup`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sql: Option<String>,
    /// A rollup of the source: per series and bucket, `row_count` and for each field
    /// `f_sum`, `f_count`, `f_min`, `f_max`, `f_first`, `f_last`; queries over the source are
    /// answered from it when they allow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollup: Option<RollupSpec>,
    /// The window, by event time.
    pub window: WindowSpec,
    /// Watermark: how far behind the newest event time seen the pipeline waits for
    /// out-of-order rows before it emits a window (default `30s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watermark: Option<String>,
    /// How long after the watermark passed a window a late row still corrects it (default
    /// `1h`, `1d` for a rollup); later rows go to `_late_rows`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_lateness: Option<String>,
    /// Rows whose time is ahead of their arrival by more than this go to `_quarantine`
    /// instead of the source table (a device with a wrong clock cannot drag the watermark
    /// forward for everyone). Absent: no check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_clock_skew: Option<String>,
    /// The tag columns that name a device in `_quarantine` and `_late_rows` records (default:
    /// every tag column of the row).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub series: Vec<String>,
    /// Without rows for this long, the watermark follows the wall clock (so the last windows
    /// are emitted when every sensor is silent). Absent: the watermark only moves with data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<String>,
    /// On its first start, also compute the windows of this much history (default none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backfill: Option<String>,
    /// How long the target's rows are kept (whole days are dropped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<String>,
}

/// The series and fields of a rollup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollupSpec {
    /// Tag columns grouped by.
    pub series: Vec<String>,
    /// Float fields rolled up.
    pub fields: Vec<String>,
}

/// Tumbling (`size`) or hopping (`size`, `slide`) windows, aligned to the Unix epoch (UTC).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowSpec {
    /// `tumbling` or `hopping`.
    pub kind: WindowKind,
    /// Window length (whole seconds).
    pub size: String,
    /// Hopping windows start every `slide` (a divisor of `size`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slide: Option<String>,
}

/// Kinds of windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WindowKind {
    /// Back to back.
    Tumbling,
    /// Overlapping: a row is in `size / slide` windows.
    Hopping,
}

/// Settings of a table: retention and the last-value cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableSpec {
    /// The table.
    pub name: String,
    /// How long rows are kept (whole days older than this are dropped), e.g. `30d`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<String>,
    /// Keep the latest row of every series (these tag columns) for `latest('<table>')`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_by: Option<Vec<String>>,
    /// At start, the cache is filled from this much history (default `7d`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_lookback: Option<String>,
}

/// Kinds of alert rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// An aggregate of a field over the last `window` compared with `value`.
    Threshold,
    /// No row from a series for `after`.
    DeadMan,
    /// The change of a field per `per` over the last `window` compared with `value`.
    RateOfChange,
}

/// Aggregates of a threshold rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Aggregate {
    /// Mean.
    Avg,
    /// Smallest.
    Min,
    /// Largest.
    Max,
    /// Total.
    Sum,
    /// Number of non-NULL values.
    Count,
    /// Value of the latest row.
    Last,
}

impl Aggregate {
    /// The SQL of this aggregate of `field`.
    pub fn sql(self, field: &str) -> String {
        match self {
            Self::Avg => format!("avg({field})"),
            Self::Min => format!("min({field})"),
            Self::Max => format!("max({field})"),
            Self::Sum => format!("sum({field})"),
            Self::Count => format!("CAST(count({field}) AS DOUBLE)"),
            Self::Last => format!("last({field}, time)"),
        }
    }
}

/// Comparisons of alert rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Comparison {
    /// Greater than.
    #[serde(rename = ">")]
    Gt,
    /// Greater than or equal.
    #[serde(rename = ">=")]
    Ge,
    /// Less than.
    #[serde(rename = "<")]
    Lt,
    /// Less than or equal.
    #[serde(rename = "<=")]
    Le,
}

impl Comparison {
    /// Whether `value <op> threshold`.
    pub fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            Self::Gt => value > threshold,
            Self::Ge => value >= threshold,
            Self::Lt => value < threshold,
            Self::Le => value <= threshold,
        }
    }

    /// The operator as written.
    pub fn symbol(self) -> &'static str {
        match self {
            Self::Gt => ">",
            Self::Ge => ">=",
            Self::Lt => "<",
            Self::Le => "<=",
        }
    }
}

/// An alert rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertSpec {
    /// Unique name (1–64 of `a-z0-9_-`); the CloudEvents go to `bus/alerts/<name>`.
    pub name: String,
    /// What it means, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// `info`, `warning` (default) or `critical`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
    /// `threshold`, `dead_man` or `rate_of_change`.
    pub kind: AlertKind,
    /// The table watched.
    pub table: String,
    /// The field compared (threshold, rate of change).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Aggregate of a threshold rule (default `avg`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aggregate: Option<Aggregate>,
    /// The period looked at, back from now (threshold, rate of change; default `1h`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<String>,
    /// Tag columns naming a series; the rule fires per series.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub by: Vec<String>,
    /// An SQL condition on the table's rows (`district = 'Centro'`).
    #[serde(default, rename = "where", skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    /// `>`, `>=`, `<`, `<=` (threshold, rate of change; default `>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub op: Option<Comparison>,
    /// The threshold (threshold, rate of change).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// Silence after which a dead-man rule fires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// How far back a dead-man rule looks for the series it knows (default `1d`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lookback: Option<String>,
    /// Unit of time of a rate of change (default `1m`: change per minute).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per: Option<String>,
    /// How often the rule is evaluated (default `1m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every: Option<String>,
}

/// The content of a `pipelines/streams/*.toml` file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamsFile {
    /// Pipelines.
    #[serde(default)]
    pub pipeline: Vec<PipelineSpec>,
    /// Table settings.
    #[serde(default)]
    pub table: Vec<TableSpec>,
}

/// The content of a `pipelines/alerts/*.toml` file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsFile {
    /// Alert rules.
    #[serde(default)]
    pub alert: Vec<AlertSpec>,
}

/// A definition with the file it came from (None: created through the API).
#[derive(Debug, Clone, PartialEq)]
pub struct Defined<T> {
    /// The definition.
    pub spec: T,
    /// Its file.
    pub file: Option<String>,
}

/// Everything in a pipelines directory.
#[derive(Debug, Clone, Default)]
pub struct Definitions {
    /// Pipelines of `streams/`.
    pub pipelines: Vec<Defined<PipelineSpec>>,
    /// Table settings of `streams/`.
    pub tables: Vec<Defined<TableSpec>>,
    /// Alert rules of `alerts/`.
    pub alerts: Vec<Defined<AlertSpec>>,
}

fn toml_files(dir: &Path) -> Result<Vec<std::path::PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::Invalid(format!("{}: {e}", dir.display()))),
    };
    let mut files: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    Ok(files)
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))
}

impl Definitions {
    /// Reads `dir/streams/*.toml` and `dir/alerts/*.toml` (files in name order; missing
    /// directories hold nothing), checking every definition and that names are unique.
    pub fn load(dir: &Path) -> Result<Self> {
        let mut defs = Self::default();
        for path in toml_files(&dir.join("streams"))? {
            let name = path.display().to_string();
            let file: StreamsFile = toml::from_str(&read(&path)?)
                .map_err(|e| Error::Invalid(format!("{name}: {e}")))?;
            for spec in file.pipeline {
                check_pipeline(&spec).map_err(|e| Error::Invalid(format!("{name}: {e}")))?;
                defs.pipelines.push(Defined {
                    spec,
                    file: Some(name.clone()),
                });
            }
            for spec in file.table {
                check_table(&spec).map_err(|e| Error::Invalid(format!("{name}: {e}")))?;
                defs.tables.push(Defined {
                    spec,
                    file: Some(name.clone()),
                });
            }
        }
        for path in toml_files(&dir.join("alerts"))? {
            let name = path.display().to_string();
            let file: AlertsFile = toml::from_str(&read(&path)?)
                .map_err(|e| Error::Invalid(format!("{name}: {e}")))?;
            for spec in file.alert {
                check_alert(&spec).map_err(|e| Error::Invalid(format!("{name}: {e}")))?;
                defs.alerts.push(Defined {
                    spec,
                    file: Some(name.clone()),
                });
            }
        }
        unique(
            defs.pipelines.iter().map(|d| (&d.spec.name, &d.file)),
            "pipeline",
        )?;
        unique(defs.tables.iter().map(|d| (&d.spec.name, &d.file)), "table")?;
        unique(defs.alerts.iter().map(|d| (&d.spec.name, &d.file)), "alert")?;
        Ok(defs)
    }
}

fn unique<'a>(
    names: impl Iterator<Item = (&'a String, &'a Option<String>)>,
    what: &str,
) -> Result<()> {
    let mut seen = std::collections::BTreeMap::new();
    for (name, file) in names {
        if let Some(first) = seen.insert(name, file) {
            return Err(Error::Invalid(format!(
                "{what} '{name}' is defined twice ({} and {})",
                first.as_deref().unwrap_or("API"),
                file.as_deref().unwrap_or("API")
            )));
        }
    }
    Ok(())
}

/// Parses a duration such as `30s`, `5m`, `1h`, `30d`.
pub fn duration(what: &str, text: &str) -> Result<Duration> {
    humantime::parse_duration(text.trim()).map_err(|e| {
        Error::Invalid(format!(
            "{what} {text:?}: {e} (write e.g. 30s, 5m, 1h, 30d)"
        ))
    })
}

/// A duration in µs (saturating).
pub fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

fn opt_duration(what: &str, text: Option<&str>, default: &str) -> Result<Duration> {
    duration(what, text.unwrap_or(default))
}

/// Checks a definition's name: 1–64 of `a-z0-9_-`, starting with a letter.
pub fn check_name(what: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "{what} name {name:?}: use 1-64 of a-z, 0-9, _ and -, starting with a letter"
        )))
    }
}

fn check_table_name(what: &str, name: &str) -> Result<()> {
    civiclake_core::validate_table_name(name)
        .map_err(|e| Error::Invalid(format!("{what}: {e}")))?;
    if name.starts_with('_') {
        return Err(Error::Invalid(format!("{what} '{name}' is a system table")));
    }
    Ok(())
}

/// The window and time settings of a pipeline, in µs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// Window length.
    pub size: i64,
    /// Distance between window starts (= size when tumbling).
    pub slide: i64,
    /// Watermark delay.
    pub watermark: i64,
    /// Allowed lateness.
    pub lateness: i64,
    /// Clock-skew bound.
    pub skew: Option<i64>,
    /// Idle timeout.
    pub idle: Option<i64>,
    /// History computed at first start.
    pub backfill: i64,
}

/// Checks a pipeline and returns its timing.
pub fn check_pipeline(spec: &PipelineSpec) -> Result<Timing> {
    check_name("pipeline", &spec.name)?;
    check_table_name("source", &spec.source)?;
    check_table_name("target", &spec.target)?;
    if spec.source == spec.target {
        return Err(Error::Invalid(format!(
            "pipeline '{}': the target must differ from the source",
            spec.name
        )));
    }
    match (&spec.sql, &spec.rollup) {
        (Some(_), None) => {}
        (None, Some(r)) => {
            if r.fields.is_empty() {
                return Err(Error::Invalid(format!(
                    "pipeline '{}': a rollup needs at least one field",
                    spec.name
                )));
            }
            for c in r.series.iter().chain(&r.fields) {
                civiclake_core::validate_column_name(c)
                    .map_err(|e| Error::Invalid(format!("pipeline '{}': {e}", spec.name)))?;
            }
        }
        _ => {
            return Err(Error::Invalid(format!(
                "pipeline '{}': give either `sql` or `rollup`",
                spec.name
            )));
        }
    }
    let size = micros(duration("window size", &spec.window.size)?);
    let slide = match (spec.window.kind, &spec.window.slide) {
        (WindowKind::Tumbling, None) => size,
        (WindowKind::Tumbling, Some(_)) => {
            return Err(Error::Invalid(format!(
                "pipeline '{}': a tumbling window has no slide (use kind = \"hopping\")",
                spec.name
            )));
        }
        (WindowKind::Hopping, Some(s)) => micros(duration("window slide", s)?),
        (WindowKind::Hopping, None) => {
            return Err(Error::Invalid(format!(
                "pipeline '{}': a hopping window needs a slide",
                spec.name
            )));
        }
    };
    const SECOND: i64 = 1_000_000;
    if size < SECOND || size % SECOND != 0 || slide < SECOND || slide % SECOND != 0 {
        return Err(Error::Invalid(format!(
            "pipeline '{}': window size and slide must be whole seconds, at least 1s",
            spec.name
        )));
    }
    if size % slide != 0 || size / slide > 1440 {
        return Err(Error::Invalid(format!(
            "pipeline '{}': the slide must divide the size, at most 1440 windows per row",
            spec.name
        )));
    }
    if spec.rollup.is_some() && spec.window.kind != WindowKind::Tumbling {
        return Err(Error::Invalid(format!(
            "pipeline '{}': a rollup's buckets are tumbling windows",
            spec.name
        )));
    }
    for c in &spec.series {
        civiclake_core::validate_column_name(c)
            .map_err(|e| Error::Invalid(format!("pipeline '{}': {e}", spec.name)))?;
    }
    let watermark = micros(opt_duration("watermark", spec.watermark.as_deref(), "30s")?);
    let lateness = micros(opt_duration(
        "allowed_lateness",
        spec.allowed_lateness.as_deref(),
        if spec.rollup.is_some() { "1d" } else { "1h" },
    )?);
    let skew = spec
        .max_clock_skew
        .as_deref()
        .map(|s| duration("max_clock_skew", s).map(micros))
        .transpose()?;
    let idle = spec
        .idle_timeout
        .as_deref()
        .map(|s| duration("idle_timeout", s).map(micros))
        .transpose()?;
    let backfill = micros(opt_duration("backfill", spec.backfill.as_deref(), "0s")?);
    if let Some(r) = &spec.retention {
        duration("retention", r)?;
    }
    Ok(Timing {
        size,
        slide,
        watermark,
        lateness,
        skew,
        idle,
        backfill,
    })
}

/// Checks table settings.
pub fn check_table(spec: &TableSpec) -> Result<()> {
    civiclake_core::validate_table_name(&spec.name)
        .map_err(|e| Error::Invalid(format!("table: {e}")))?;
    if let Some(r) = &spec.retention {
        let d = duration("retention", r)?;
        if d < Duration::from_secs(86_400) {
            return Err(Error::Invalid(format!(
                "table '{}': retention {r} is shorter than a day (whole days are dropped)",
                spec.name
            )));
        }
    }
    if let Some(by) = &spec.latest_by {
        if by.is_empty() {
            return Err(Error::Invalid(format!(
                "table '{}': latest_by needs at least one tag column",
                spec.name
            )));
        }
        for c in by {
            civiclake_core::validate_column_name(c)
                .map_err(|e| Error::Invalid(format!("table '{}': {e}", spec.name)))?;
        }
    }
    if let Some(l) = &spec.latest_lookback {
        duration("latest_lookback", l)?;
    }
    Ok(())
}

/// Checks a SQL condition given as text: one expression, no statement separator.
pub fn check_condition(what: &str, sql: &str) -> Result<()> {
    use datafusion::sql::sqlparser::{dialect::GenericDialect, parser::Parser};
    let mut parser = Parser::new(&GenericDialect {})
        .try_with_sql(sql)
        .map_err(|e| Error::Invalid(format!("{what}: {e}")))?;
    parser
        .parse_expr()
        .map_err(|e| Error::Invalid(format!("{what}: {e}")))?;
    if parser.peek_token().token != datafusion::sql::sqlparser::tokenizer::Token::EOF {
        return Err(Error::Invalid(format!(
            "{what}: {sql:?} is more than one condition"
        )));
    }
    Ok(())
}

/// The evaluation settings of an alert rule, in µs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AlertTiming {
    /// Period looked at.
    pub window: i64,
    /// Dead-man silence.
    pub after: i64,
    /// Dead-man lookback.
    pub lookback: i64,
    /// Rate unit.
    pub per: i64,
    /// Evaluation interval.
    pub every: i64,
}

/// Checks an alert rule and returns its timing.
pub fn check_alert(spec: &AlertSpec) -> Result<AlertTiming> {
    check_name("alert", &spec.name)?;
    civiclake_core::validate_table_name(&spec.table)
        .map_err(|e| Error::Invalid(format!("alert '{}': {e}", spec.name)))?;
    if let Some(s) = &spec.severity
        && !matches!(s.as_str(), "info" | "warning" | "critical")
    {
        return Err(Error::Invalid(format!(
            "alert '{}': severity {s:?}: use info, warning or critical",
            spec.name
        )));
    }
    for c in spec.by.iter().chain(spec.field.iter()) {
        civiclake_core::validate_column_name(c)
            .map_err(|e| Error::Invalid(format!("alert '{}': {e}", spec.name)))?;
    }
    if let Some(f) = &spec.filter {
        check_condition(&format!("alert '{}': where", spec.name), f)?;
    }
    let need = |what: &str, present: bool| {
        if present {
            Ok(())
        } else {
            Err(Error::Invalid(format!(
                "alert '{}': a {:?} rule needs `{what}`",
                spec.name, spec.kind
            )))
        }
    };
    let refuse = |what: &str, present: bool| {
        if present {
            Err(Error::Invalid(format!(
                "alert '{}': `{what}` does not apply to a {:?} rule",
                spec.name, spec.kind
            )))
        } else {
            Ok(())
        }
    };
    match spec.kind {
        AlertKind::Threshold => {
            need("field", spec.field.is_some())?;
            need("value", spec.value.is_some())?;
            refuse("after", spec.after.is_some())?;
            refuse("per", spec.per.is_some())?;
            refuse("lookback", spec.lookback.is_some())?;
        }
        AlertKind::RateOfChange => {
            need("field", spec.field.is_some())?;
            need("value", spec.value.is_some())?;
            refuse("after", spec.after.is_some())?;
            refuse("aggregate", spec.aggregate.is_some())?;
            refuse("lookback", spec.lookback.is_some())?;
        }
        AlertKind::DeadMan => {
            need("after", spec.after.is_some())?;
            for (what, present) in [
                ("field", spec.field.is_some()),
                ("value", spec.value.is_some()),
                ("op", spec.op.is_some()),
                ("aggregate", spec.aggregate.is_some()),
                ("per", spec.per.is_some()),
                ("window", spec.window.is_some()),
            ] {
                refuse(what, present)?;
            }
        }
    }
    if spec.value.is_some_and(|v| !v.is_finite()) {
        return Err(Error::Invalid(format!(
            "alert '{}': the value must be a finite number",
            spec.name
        )));
    }
    let timing = AlertTiming {
        window: micros(opt_duration("window", spec.window.as_deref(), "1h")?),
        after: micros(opt_duration("after", spec.after.as_deref(), "15m")?),
        lookback: micros(opt_duration("lookback", spec.lookback.as_deref(), "1d")?),
        per: micros(opt_duration("per", spec.per.as_deref(), "1m")?),
        every: micros(opt_duration("every", spec.every.as_deref(), "1m")?),
    };
    if timing.every < 1_000_000 || timing.window < 1_000_000 || timing.per < 1_000_000 {
        return Err(Error::Invalid(format!(
            "alert '{}': every, window and per must be at least 1s",
            spec.name
        )));
    }
    Ok(timing)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pipeline(extra: &str) -> Result<PipelineSpec> {
        let text = format!(
            "[[pipeline]]\nname = \"air_5m\"\nsource = \"air\"\ntarget = \"air_5m\"\n{extra}"
        );
        let file: StreamsFile = toml::from_str(&text).map_err(|e| Error::Invalid(e.to_string()))?;
        let spec = file.pipeline.into_iter().next().unwrap();
        check_pipeline(&spec)?;
        Ok(spec)
    }

    #[test]
    fn pipelines_are_checked() {
        let ok = pipeline(
            "sql = \"SELECT sensor, avg(pm25) AS pm25 FROM air GROUP BY sensor\"\nwindow = { kind = \"hopping\", size = \"15m\", slide = \"1m\" }\n",
        )
        .unwrap();
        let t = check_pipeline(&ok).unwrap();
        assert_eq!((t.size, t.slide), (900_000_000, 60_000_000));
        assert_eq!((t.watermark, t.lateness), (30_000_000, 3_600_000_000));
        let bad = |extra: &str, fragment: &str| {
            let e = pipeline(extra).unwrap_err().to_string();
            assert!(e.contains(fragment), "{e} lacks {fragment}");
        };
        bad(
            "window = { kind = \"tumbling\", size = \"5m\" }\n",
            "either `sql` or `rollup`",
        );
        bad(
            "sql = \"SELECT 1\"\nwindow = { kind = \"hopping\", size = \"5m\", slide = \"2m\" }\n",
            "must divide",
        );
        bad(
            "sql = \"SELECT 1\"\nwindow = { kind = \"tumbling\", size = \"500ms\" }\n",
            "whole seconds",
        );
        bad(
            "sql = \"SELECT 1\"\nwindow = { kind = \"tumbling\", size = \"5 parsecs\" }\n",
            "window size",
        );
        bad(
            "sql = \"SELECT 1\"\nwindow = { kind = \"tumbling\", size = \"5m\" }\nwatermrk = \"1s\"\n",
            "unknown field `watermrk`",
        );
        let r = pipeline(
            "rollup = { series = [\"sensor\"], fields = [\"pm25\"] }\nwindow = { kind = \"tumbling\", size = \"1h\" }\n",
        )
        .unwrap();
        assert_eq!(check_pipeline(&r).unwrap().lateness, 86_400_000_000);
    }

    #[test]
    fn alerts_are_checked() {
        let rule = |text: &str| -> Result<AlertSpec> {
            let file: AlertsFile =
                toml::from_str(text).map_err(|e| Error::Invalid(e.to_string()))?;
            let spec = file.alert.into_iter().next().unwrap();
            check_alert(&spec)?;
            Ok(spec)
        };
        let ok = rule(
            "[[alert]]\nname = \"pm25\"\nkind = \"threshold\"\ntable = \"air\"\nfield = \"pm25\"\nop = \">\"\nvalue = 50.0\nby = [\"sensor\"]\nwhere = \"district = 'Centro'\"\n",
        )
        .unwrap();
        assert_eq!(ok.op, Some(Comparison::Gt));
        let e = rule("[[alert]]\nname = \"d\"\nkind = \"dead_man\"\ntable = \"air\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("needs `after`"), "{e}");
        let e = rule(
            "[[alert]]\nname = \"d\"\nkind = \"dead_man\"\ntable = \"air\"\nafter = \"10m\"\nvalue = 3.0\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("`value` does not apply"), "{e}");
        let e = rule(
            "[[alert]]\nname = \"t\"\nkind = \"threshold\"\ntable = \"air\"\nfield = \"pm25\"\nvalue = 1.0\nwhere = \"a = 1; DROP TABLE x\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("where"), "{e}");
    }

    #[test]
    fn the_shipped_definitions_load_and_their_sql_compiles() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../pipelines");
        let defs = Definitions::load(&dir).unwrap();
        let names: Vec<&str> = defs
            .pipelines
            .iter()
            .map(|d| d.spec.name.as_str())
            .collect();
        for wanted in [
            "air_1h",
            "air_5m",
            "air_daily",
            "air_o3_8h",
            "noise_daily",
            "traffic_1h",
        ] {
            assert!(names.contains(&wanted), "{wanted} missing from {names:?}");
        }
        for d in &defs.pipelines {
            match (&d.spec.sql, &d.spec.rollup) {
                (Some(sql), _) => crate::sqlgen::WindowQuery::compile(sql, &d.spec.source),
                (None, Some(r)) => crate::sqlgen::WindowQuery::rollup(r, &d.spec.source),
                _ => unreachable!(),
            }
            .unwrap_or_else(|e| panic!("{}: {e}", d.spec.name));
        }
        let alerts: Vec<&str> = defs.alerts.iter().map(|d| d.spec.name.as_str()).collect();
        for wanted in [
            "pm25-hourly-50",
            "silent-air",
            "silent-waste",
            "pm25-rising",
        ] {
            assert!(alerts.contains(&wanted), "{wanted} missing from {alerts:?}");
        }
        assert!(
            defs.tables
                .iter()
                .any(|t| t.spec.name == "air" && t.spec.retention.is_some())
        );
    }
}
