//! Prometheus metrics of the API, rendered in the text exposition format.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the latency histogram buckets.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// A latency histogram with fixed buckets.
#[derive(Debug, Default)]
pub struct Histogram {
    counts: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        for (i, bound) in BUCKETS.iter().enumerate() {
            if secs <= *bound {
                self.counts[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(
            u64::try_from(d.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (i, bound) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{bound}\"}} {}",
                self.counts[i].load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", self.count());
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {}", self.count());
    }
}

/// Metrics kept outside the API (the ingest service, the MQTT broker), appended to
/// `/metrics` in the Prometheus text format.
pub trait MetricsSource: Send + Sync + std::fmt::Debug {
    /// Appends this source's metric families (with `# HELP` and `# TYPE` lines) to `out`.
    fn render(&self, out: &mut String);
}

/// Metrics kept by the API handlers.
#[derive(Debug, Default)]
pub struct ApiMetrics {
    /// Latency of accepted writes.
    pub write_latency: Histogram,
    /// Latency of queries (successful or not).
    pub query_latency: Histogram,
    /// Queries that failed.
    pub query_errors: AtomicU64,
    /// Write requests rejected (4xx).
    pub write_rejected: AtomicU64,
    /// Rows rejected by decoders.
    pub rows_rejected: AtomicU64,
}

fn counter(out: &mut String, name: &str, help: &str, value: u64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
    );
}

fn gauge(out: &mut String, name: &str, help: &str, value: u64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
    );
}

/// Renders the API and lake metrics.
pub(crate) fn render(api: &ApiMetrics, lake: &civiclake_lake::Lake) -> String {
    let m = lake.metrics();
    let s = lake.stats();
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let mut out = String::with_capacity(4096);
    counter(
        &mut out,
        "civiclake_rows_written_total",
        "Rows acknowledged by writes.",
        load(&m.rows_written),
    );
    counter(
        &mut out,
        "civiclake_writes_total",
        "Write requests acknowledged.",
        load(&m.writes),
    );
    counter(
        &mut out,
        "civiclake_write_rejected_total",
        "Write requests rejected with a 4xx.",
        load(&api.write_rejected),
    );
    counter(
        &mut out,
        "civiclake_rows_rejected_total",
        "Rows rejected by the decoders.",
        load(&api.rows_rejected),
    );
    api.write_latency.render(
        &mut out,
        "civiclake_write_duration_seconds",
        "Latency of acknowledged writes (decode, WAL fsync, buffer).",
    );
    gauge(
        &mut out,
        "civiclake_wal_bytes",
        "Bytes of WAL segments on disk.",
        s.wal_bytes,
    );
    gauge(
        &mut out,
        "civiclake_buffered_rows",
        "Rows in memory not yet flushed to Delta.",
        s.buffered_rows as u64,
    );
    gauge(
        &mut out,
        "civiclake_tables",
        "Number of tables.",
        s.tables as u64,
    );
    gauge(
        &mut out,
        "civiclake_files",
        "Parquet files in the Delta tables.",
        s.files as u64,
    );
    gauge(
        &mut out,
        "civiclake_file_bytes",
        "Bytes of Parquet files in the Delta tables.",
        s.file_bytes,
    );
    counter(
        &mut out,
        "civiclake_flushes_total",
        "Flushes of the buffer to Delta.",
        load(&m.flushes),
    );
    counter(
        &mut out,
        "civiclake_rows_flushed_total",
        "Rows flushed to Delta.",
        load(&m.rows_flushed),
    );
    counter(
        &mut out,
        "civiclake_flush_errors_total",
        "Table flushes that failed (retried).",
        load(&m.flush_errors),
    );
    counter(
        &mut out,
        "civiclake_files_compacted_total",
        "Files merged away by compaction.",
        load(&m.files_compacted),
    );
    counter(
        &mut out,
        "civiclake_queries_total",
        "Queries run.",
        api.query_latency.count(),
    );
    counter(
        &mut out,
        "civiclake_query_errors_total",
        "Queries that failed.",
        load(&api.query_errors),
    );
    api.query_latency.render(
        &mut out,
        "civiclake_query_duration_seconds",
        "Latency of queries.",
    );
    out
}

/// Everything `/metrics` shows: the API's and the lake's metrics, then each source's.
pub fn render_all(state: &crate::AppState) -> String {
    let mut out = render(&state.metrics, &state.lake);
    for source in &state.metric_sources {
        source.render(&mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(300));
        h.observe(Duration::from_millis(30));
        let mut out = String::new();
        h.render(&mut out, "x", "help");
        assert!(out.contains("x_bucket{le=\"0.0005\"} 1\n"));
        assert!(out.contains("x_bucket{le=\"0.05\"} 2\n"));
        assert!(out.contains("x_bucket{le=\"+Inf\"} 2\n"));
        assert!(out.contains("x_count 2\n"));
    }
}
