//! Alert rules: evaluated by SQL every `every`, one state (firing or resolved) per rule and
//! series; each change of state is a row of `_alerts` and a CloudEvent on the bus
//! (`bus/alerts/<rule>`), where webhooks, e-mail relays and other consumers subscribe.

use crate::error::{Error, Result};
use crate::runtime::{Pipelines, dict, now_micros, rfc3339};
use crate::spec::{AlertKind, AlertSpec, AlertTiming, Comparison, Defined, check_alert};
use crate::sqlgen::timestamp_literal;
use arrow::array::{
    Array, AsArray, Float64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Float64Type, Schema, SchemaRef};
use civiclake_core::{CloudEvent, field_column, tag_column, time_column, time_type};
use parking_lot::{Mutex, RwLock};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// The table of alert state changes.
pub const ALERTS_TABLE: &str = "_alerts";
/// Checkpoints holding the rules created through the API.
pub(crate) const API_ALERT_PREFIX: &str = "alert-def:";

/// The CloudEvents types of alert events.
pub const ALERT_EVENT_TYPES: [&str; 2] = ["civiclake.alert.firing", "civiclake.alert.resolved"];

/// The JSON Schema of the `data` of alert events (registered on the bus for both types).
pub fn alert_event_schema() -> Value {
    json!({
        "type": "object",
        "required": ["alert", "kind", "state", "value", "threshold", "series"],
        "properties": {
            "alert": {"type": "string"},
            "kind": {"enum": ["threshold", "dead_man", "rate_of_change"]},
            "state": {"enum": ["firing", "resolved"]},
            "severity": {"enum": ["info", "warning", "critical"]},
            "table": {"type": "string"},
            "field": {"type": ["string", "null"]},
            "series": {"type": "object", "additionalProperties": {"type": "string"}},
            "value": {"type": "number"},
            "op": {"enum": [">", ">=", "<", "<="]},
            "threshold": {"type": "number"},
            "message": {"type": "string"},
            "description": {"type": ["string", "null"]}
        }
    })
}

/// The schema of `_alerts`: one row per change of state of a rule's series.
pub fn alerts_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        time_column(),
        tag_column("alert"),
        tag_column("series"),
        tag_column("state"),
        tag_column("severity"),
        field_column("value", DataType::Float64),
        field_column("threshold", DataType::Float64),
        field_column("message", DataType::Utf8),
    ]))
}

#[derive(Debug, Clone)]
struct SeriesState {
    firing: bool,
    since: i64,
    value: f64,
}

#[derive(Debug)]
struct Rule {
    spec: AlertSpec,
    file: Option<String>,
    timing: AlertTiming,
    states: Mutex<BTreeMap<String, SeriesState>>,
    last_evaluated: Mutex<Option<i64>>,
    error: Mutex<Option<String>>,
}

/// The alert rules in force.
#[derive(Debug, Default)]
pub struct AlertRules {
    rules: RwLock<BTreeMap<String, Arc<Rule>>>,
}

/// A series of a rule that is firing.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Firing {
    /// `tag=value,...` (empty for a rule without `by`).
    pub series: String,
    /// Since when (RFC 3339).
    pub since: String,
    /// The value that made it fire.
    pub value: f64,
}

/// What `GET /api/v1/alerts` shows of a rule.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AlertStatus {
    /// Its definition.
    pub spec: AlertSpec,
    /// The file it comes from (absent: created through the API).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// Its series now firing.
    pub firing: Vec<Firing>,
    /// When it was last evaluated (RFC 3339).
    pub last_evaluated: Option<String>,
    /// Why its last evaluation failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One change of state.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Transition {
    /// The rule.
    pub alert: String,
    /// The series.
    pub series: String,
    /// `firing` or `resolved`.
    pub state: String,
    /// The value evaluated.
    pub value: f64,
}

impl Rule {
    fn status(&self) -> AlertStatus {
        AlertStatus {
            spec: self.spec.clone(),
            file: self.file.clone(),
            firing: self
                .states
                .lock()
                .iter()
                .filter(|(_, s)| s.firing)
                .map(|(k, s)| Firing {
                    series: k.clone(),
                    since: rfc3339(s.since),
                    value: s.value,
                })
                .collect(),
            last_evaluated: self.last_evaluated.lock().map(rfc3339),
            error: self.error.lock().clone(),
        }
    }

    fn threshold(&self) -> f64 {
        match self.spec.kind {
            AlertKind::DeadMan => self.timing.after as f64 / 1e6,
            _ => self.spec.value.unwrap_or(0.0),
        }
    }

    fn op(&self) -> Comparison {
        match self.spec.kind {
            AlertKind::DeadMan => Comparison::Ge,
            _ => self.spec.op.unwrap_or(Comparison::Gt),
        }
    }

    /// The SQL giving one row per series: the `by` columns and `value`.
    fn sql(&self, now: i64) -> String {
        let s = &self.spec;
        let t = &self.timing;
        let by = s.by.join(", ");
        let select_by = if by.is_empty() {
            String::new()
        } else {
            format!("{by}, ")
        };
        let group = if by.is_empty() {
            String::new()
        } else {
            format!(" GROUP BY {by}")
        };
        let filter = s
            .filter
            .as_ref()
            .map(|f| format!(" AND ({f})"))
            .unwrap_or_default();
        let field = s.field.as_deref().unwrap_or("value");
        match s.kind {
            AlertKind::Threshold => format!(
                "SELECT {select_by}{agg} AS value FROM {table} WHERE time > {from} AND time <= {to}{filter}{group}",
                agg = s
                    .aggregate
                    .unwrap_or(crate::spec::Aggregate::Avg)
                    .sql(field),
                table = s.table,
                from = timestamp_literal(now - t.window),
                to = timestamp_literal(now),
            ),
            AlertKind::RateOfChange => format!(
                "SELECT {select_by}(last({field}, time) - first({field}, time)) / \
                 (CAST(CAST(max(time) AS BIGINT) - CAST(min(time) AS BIGINT) AS DOUBLE) / {per}) AS value \
                 FROM {table} WHERE time > {from} AND time <= {to} AND {field} IS NOT NULL{filter}{group} \
                 HAVING count({field}) >= 2 AND max(time) > min(time)",
                per = t.per,
                table = s.table,
                from = timestamp_literal(now - t.window),
                to = timestamp_literal(now),
            ),
            AlertKind::DeadMan => format!(
                "SELECT {select_by}CAST({now} - CAST(max(time) AS BIGINT) AS DOUBLE) / 1000000.0 AS value \
                 FROM {table} WHERE time > {from}{filter}{group}",
                table = s.table,
                from = timestamp_literal(now - t.lookback),
            ),
        }
    }
}

fn series_keys(batch: &RecordBatch, by: &[String]) -> Result<Vec<String>> {
    let mut texts = Vec::with_capacity(by.len());
    for name in by {
        let i = batch
            .schema()
            .index_of(name)
            .map_err(|e| Error::Invalid(e.to_string()))?;
        texts.push((
            name,
            arrow::compute::cast(batch.column(i), &DataType::Utf8)?,
        ));
    }
    Ok((0..batch.num_rows())
        .map(|row| {
            texts
                .iter()
                .map(|(n, c)| {
                    let v = if c.is_valid(row) {
                        c.as_string::<i32>().value(row)
                    } else {
                        ""
                    };
                    format!("{n}={v}")
                })
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect())
}

impl Pipelines {
    /// Evaluates the rule `name` as of `now` (µs): writes and publishes its changes of state.
    pub async fn evaluate_alert(&self, name: &str, now: i64) -> Result<Vec<Transition>> {
        let rule = self
            .inner
            .alerts
            .rules
            .read()
            .get(name)
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("alert '{name}'")))?;
        let result = self.evaluate_rule(&rule, now).await;
        // A rule over a table that does not exist yet is tried again within a second, not
        // after `every`.
        if self.inner.lake.schema(&rule.spec.table).is_some() {
            *rule.last_evaluated.lock() = Some(now);
        }
        *rule.error.lock() = result.as_ref().err().map(ToString::to_string);
        result
    }

    async fn evaluate_rule(&self, rule: &Rule, now: i64) -> Result<Vec<Transition>> {
        if self.inner.lake.schema(&rule.spec.table).is_none() {
            return Err(Error::Invalid(format!(
                "table '{}' does not exist yet",
                rule.spec.table
            )));
        }
        let result = self.inner.engine.sql(&rule.sql(now)).await?;
        let threshold = rule.threshold();
        let op = rule.op();
        let mut transitions = Vec::new();
        {
            let mut states = rule.states.lock();
            for batch in &result.batches {
                let keys = series_keys(batch, &rule.spec.by)?;
                let values = arrow::compute::cast(
                    batch.column(batch.num_columns() - 1),
                    &DataType::Float64,
                )?;
                let values = values.as_primitive::<Float64Type>();
                for (row, key) in keys.into_iter().enumerate() {
                    if !values.is_valid(row) || !values.value(row).is_finite() {
                        continue;
                    }
                    let value = values.value(row);
                    let holds = op.holds(value, threshold);
                    let firing = states.get(&key).is_some_and(|s| s.firing);
                    if holds != firing {
                        states.insert(
                            key.clone(),
                            SeriesState {
                                firing: holds,
                                since: now,
                                value,
                            },
                        );
                        transitions.push(Transition {
                            alert: rule.spec.name.clone(),
                            series: key,
                            state: if holds { "firing" } else { "resolved" }.into(),
                            value,
                        });
                    } else if let Some(s) = states.get_mut(&key) {
                        s.value = value;
                    }
                }
            }
        }
        if transitions.is_empty() {
            return Ok(transitions);
        }
        let messages: Vec<String> = transitions
            .iter()
            .map(|t| message(rule, t, threshold, op))
            .collect();
        let n = transitions.len();
        let severity = rule
            .spec
            .severity
            .clone()
            .unwrap_or_else(|| "warning".into());
        let batch = RecordBatch::try_new(
            alerts_schema(),
            vec![
                Arc::new(TimestampMicrosecondArray::from(vec![now; n]).with_timezone("UTC")),
                dict(&vec![rule.spec.name.clone(); n]),
                dict(
                    &transitions
                        .iter()
                        .map(|t| t.series.clone())
                        .collect::<Vec<_>>(),
                ),
                dict(
                    &transitions
                        .iter()
                        .map(|t| t.state.clone())
                        .collect::<Vec<_>>(),
                ),
                dict(&vec![severity.clone(); n]),
                Arc::new(Float64Array::from(
                    transitions.iter().map(|t| t.value).collect::<Vec<_>>(),
                )),
                Arc::new(Float64Array::from(vec![threshold; n])),
                Arc::new(StringArray::from(messages.clone())),
            ],
        )?;
        self.inner
            .lake
            .write(vec![(ALERTS_TABLE.to_string(), batch)])
            .await?;
        if let Some(publisher) = &self.inner.publisher {
            for (t, message) in transitions.iter().zip(messages) {
                let mut event = CloudEvent::new(
                    uuid::Uuid::new_v4().to_string(),
                    format!("/alerts/{}", rule.spec.name),
                    format!("civiclake.alert.{}", t.state),
                );
                event.time = Some(now);
                event.datacontenttype = Some("application/json".into());
                if !t.series.is_empty() {
                    event.subject = Some(t.series.clone());
                }
                event.data = Some(json!({
                    "alert": rule.spec.name,
                    "kind": rule.spec.kind,
                    "state": t.state,
                    "severity": severity,
                    "table": rule.spec.table,
                    "field": rule.spec.field,
                    "series": series_object(&t.series),
                    "value": t.value,
                    "op": op.symbol(),
                    "threshold": threshold,
                    "message": message,
                    "description": rule.spec.description,
                }));
                if let Err(e) = publisher.publish(event).await {
                    tracing::warn!(alert = rule.spec.name, error = %e, "alert event not published");
                }
            }
        }
        Ok(transitions)
    }

    /// Creates an alert rule (kept across restarts); a name in use is a conflict.
    pub async fn create_alert(&self, spec: AlertSpec) -> Result<AlertStatus> {
        let timing = check_alert(&spec)?;
        if let Some(r) = self.inner.alerts.rules.read().get(&spec.name) {
            return Err(Error::Conflict(format!(
                "alert '{}' exists ({})",
                spec.name,
                r.file.as_deref().unwrap_or("created through the API")
            )));
        }
        let value = serde_json::to_value(&spec).map_err(|e| Error::Invalid(e.to_string()))?;
        self.inner
            .lake
            .ensure_table(ALERTS_TABLE, &alerts_schema())?;
        self.inner
            .lake
            .set_checkpoint(&format!("{API_ALERT_PREFIX}{}", spec.name), value)
            .await?;
        let rule = Arc::new(Rule {
            spec,
            file: None,
            timing,
            states: Mutex::default(),
            last_evaluated: Mutex::default(),
            error: Mutex::default(),
        });
        let status = rule.status();
        self.inner
            .alerts
            .rules
            .write()
            .insert(rule.spec.name.clone(), rule);
        Ok(status)
    }

    /// Deletes a rule created through the API.
    pub async fn delete_alert(&self, name: &str) -> Result<()> {
        let rule = self
            .inner
            .alerts
            .rules
            .read()
            .get(name)
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("alert '{name}'")))?;
        if let Some(file) = &rule.file {
            return Err(Error::Conflict(format!(
                "alert '{name}' is defined in {file}; change the file"
            )));
        }
        self.inner
            .lake
            .set_checkpoint(&format!("{API_ALERT_PREFIX}{name}"), Value::Null)
            .await?;
        self.inner.alerts.rules.write().remove(name);
        Ok(())
    }

    /// A rule's status.
    pub fn alert_status(&self, name: &str) -> Result<AlertStatus> {
        self.inner
            .alerts
            .rules
            .read()
            .get(name)
            .map(|r| r.status())
            .ok_or_else(|| Error::NotFound(format!("alert '{name}'")))
    }

    /// Every rule's status, by name.
    pub fn list_alerts(&self) -> Vec<AlertStatus> {
        self.inner
            .alerts
            .rules
            .read()
            .values()
            .map(|r| r.status())
            .collect()
    }
}

fn series_object(series: &str) -> Value {
    let map: serde_json::Map<String, Value> = series
        .split(',')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
        .collect();
    Value::Object(map)
}

fn message(rule: &Rule, t: &Transition, threshold: f64, op: Comparison) -> String {
    let s = &rule.spec;
    let series = if t.series.is_empty() {
        String::new()
    } else {
        format!(" [{}]", t.series)
    };
    let what = match s.kind {
        AlertKind::DeadMan => format!("no data for {:.0} s (limit {threshold:.0} s)", t.value),
        AlertKind::Threshold => format!(
            "{}({}) over {} = {:.3} ({} {threshold})",
            match s.aggregate.unwrap_or(crate::spec::Aggregate::Avg) {
                crate::spec::Aggregate::Avg => "avg",
                crate::spec::Aggregate::Min => "min",
                crate::spec::Aggregate::Max => "max",
                crate::spec::Aggregate::Sum => "sum",
                crate::spec::Aggregate::Count => "count",
                crate::spec::Aggregate::Last => "last",
            },
            s.field.as_deref().unwrap_or(""),
            s.window.as_deref().unwrap_or("1h"),
            t.value,
            op.symbol()
        ),
        AlertKind::RateOfChange => format!(
            "{} changes by {:.3} per {} ({} {threshold})",
            s.field.as_deref().unwrap_or(""),
            t.value,
            s.per.as_deref().unwrap_or("1m"),
            op.symbol()
        ),
    };
    format!("{} {}{series}: {what}", s.name, t.state)
}

/// Starts the rules: restores their states from `_alerts`, then evaluates each when due.
pub(crate) async fn start(p: &Pipelines, defs: Vec<Defined<AlertSpec>>) -> Result<()> {
    for d in defs {
        let timing = check_alert(&d.spec)?;
        p.inner.alerts.rules.write().insert(
            d.spec.name.clone(),
            Arc::new(Rule {
                spec: d.spec,
                file: d.file,
                timing,
                states: Mutex::default(),
                last_evaluated: Mutex::default(),
                error: Mutex::default(),
            }),
        );
    }
    if p.inner.alerts.rules.read().is_empty() && p.inner.lake.schema(ALERTS_TABLE).is_none() {
        // No rules and no history: nothing to restore, and no `_alerts` table to make.
        return start_loop(p);
    }
    p.inner.lake.ensure_table(ALERTS_TABLE, &alerts_schema())?;
    let restored = p
        .inner
        .engine
        .sql(&format!(
            "SELECT alert, series, state, value, time FROM {ALERTS_TABLE} ORDER BY time"
        ))
        .await?;
    {
        let rules = p.inner.alerts.rules.read();
        for b in &restored.batches {
            let text = |i: usize| arrow::compute::cast(b.column(i), &DataType::Utf8);
            let (alert, series, state) = (text(0)?, text(1)?, text(2)?);
            let (alert, series, state) = (
                alert.as_string::<i32>(),
                series.as_string::<i32>(),
                state.as_string::<i32>(),
            );
            let value = arrow::compute::cast(b.column(3), &DataType::Float64)?;
            let value = value.as_primitive::<Float64Type>();
            let time = arrow::compute::cast(b.column(4), &time_type())?;
            let time = time.as_primitive::<arrow::datatypes::TimestampMicrosecondType>();
            for row in 0..b.num_rows() {
                if let Some(rule) = rules.get(alert.value(row)) {
                    rule.states.lock().insert(
                        series.value(row).to_string(),
                        SeriesState {
                            firing: state.value(row) == "firing",
                            since: time.value(row),
                            value: value.value(row),
                        },
                    );
                }
            }
        }
    }
    start_loop(p)
}

fn start_loop(p: &Pipelines) -> Result<()> {
    let pipelines = p.clone();
    let mut stop = p.inner.stop.subscribe();
    let task = tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            let now = now_micros();
            let due: Vec<String> = pipelines
                .inner
                .alerts
                .rules
                .read()
                .values()
                .filter(|r| {
                    r.last_evaluated
                        .lock()
                        .is_none_or(|l| now - l >= r.timing.every)
                })
                .map(|r| r.spec.name.clone())
                .collect();
            for name in due {
                if let Err(e) = pipelines.evaluate_alert(&name, now).await
                    && !matches!(e, Error::NotFound(_))
                {
                    tracing::debug!(alert = name, error = %e, "alert rule not evaluated");
                }
            }
        }
    });
    p.push_task(task);
    Ok(())
}
