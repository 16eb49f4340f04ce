//! civiclake's own metrics as a table: every `interval` the text of `/metrics` is sampled
//! into the system table `_metrics` (one row per series: `metric`, `labels`, `value`), so
//! the "civiclake" dashboard charts ingest and query activity with SQL like any other data.
//! Histogram buckets are left out (their `_sum` and `_count` are kept: a mean latency is
//! `Δsum / Δcount`).

use arrow::array::{ArrayRef, Float64Array, RecordBatch, StringDictionaryBuilder};
use arrow::datatypes::{DataType, Int32Type, Schema, SchemaRef};
use civiclake_api::AppState;
use civiclake_core::{field_column, tag_column, time_column};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// The system table of sampled metrics.
pub const METRICS_TABLE: &str = "_metrics";

/// The schema of `_metrics`.
pub fn metrics_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        time_column(),
        tag_column("labels"),
        tag_column("metric"),
        field_column("value", DataType::Float64),
    ]))
}

/// One sample of a series: name, labels as written (`route="default",table="air"`), value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Metric name.
    pub metric: String,
    /// The labels between the braces, as written; empty without labels.
    pub labels: String,
    /// The value.
    pub value: f64,
}

/// The samples of a Prometheus text exposition, without comments, histogram buckets and
/// values that are not finite numbers.
pub fn parse_exposition(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (series, value) = match line.rsplit_once(' ') {
            Some((s, v)) => (s.trim(), v.trim()),
            None => continue,
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        if !value.is_finite() {
            continue;
        }
        let (metric, labels) = match series.split_once('{') {
            Some((m, rest)) => (m, rest.strip_suffix('}').unwrap_or(rest)),
            None => (series, ""),
        };
        if metric.ends_with("_bucket") {
            continue;
        }
        out.push(Sample {
            metric: metric.to_string(),
            labels: labels.to_string(),
            value,
        });
    }
    out
}

/// The samples as a `_metrics` batch at `time_micros`.
pub fn samples_batch(samples: &[Sample], time_micros: i64) -> Result<RecordBatch, String> {
    let schema = metrics_schema();
    let time = arrow::array::TimestampMicrosecondArray::from(vec![time_micros; samples.len()])
        .with_timezone("UTC");
    let mut labels = StringDictionaryBuilder::<Int32Type>::new();
    let mut metrics = StringDictionaryBuilder::<Int32Type>::new();
    for s in samples {
        labels.append_value(&s.labels);
        metrics.append_value(&s.metric);
    }
    let values = Float64Array::from_iter_values(samples.iter().map(|s| s.value));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(time),
        Arc::new(labels.finish()),
        Arc::new(metrics.finish()),
        Arc::new(values),
    ];
    RecordBatch::try_new(schema, columns).map_err(|e| e.to_string())
}

/// Samples the metrics into `_metrics` every `interval` until `stop` turns true.
pub async fn run(state: AppState, interval: Duration, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
        let samples = parse_exposition(&civiclake_api::render_metrics(&state));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        let batch = match samples_batch(&samples, now) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "metrics sample not built");
                continue;
            }
        };
        if let Err(e) = state
            .lake
            .write(vec![(METRICS_TABLE.to_string(), batch)])
            .await
        {
            // Saturated or unavailable: this sample is skipped, the next one comes anyway.
            tracing::debug!(error = %e, "metrics sample not written");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_lines_become_samples() {
        let text = "# HELP a_total A.\n# TYPE a_total counter\na_total 3\n\
                    b{route=\"default\",table=\"air\"} 1.5\n\
                    lat_bucket{le=\"0.1\"} 4\nlat_sum 0.25\nlat_count 4\nbad line\nc NaN\n";
        let samples = parse_exposition(text);
        assert_eq!(
            samples,
            vec![
                Sample {
                    metric: "a_total".into(),
                    labels: String::new(),
                    value: 3.0
                },
                Sample {
                    metric: "b".into(),
                    labels: "route=\"default\",table=\"air\"".into(),
                    value: 1.5
                },
                Sample {
                    metric: "lat_sum".into(),
                    labels: String::new(),
                    value: 0.25
                },
                Sample {
                    metric: "lat_count".into(),
                    labels: String::new(),
                    value: 4.0
                },
            ]
        );
        let batch = samples_batch(&samples, 1_000_000).expect("batch");
        assert_eq!(batch.num_rows(), 4);
        assert_eq!(batch.schema(), metrics_schema());
    }
}
