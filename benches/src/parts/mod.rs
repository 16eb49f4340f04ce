//! The parts of the benchmark. Each part is one file implementing [`Part`] and one line in
//! [`all`]; `civiclake-bench all` runs them in that order, `civiclake-bench NAME...` only
//! the ones named.

mod bus;
mod dashboards;
mod freshness;
mod influx;
mod ingest;
mod kafka;
mod mqtt;
mod pipelines;
mod queries;
mod siting;
mod storage;
mod wire;

use crate::ctx::Ctx;
use serde_json::Value;

/// What a part reports: a section of `benches/RESULTS.md` and its figures for the JSON file.
pub(crate) struct Section {
    /// Markdown, starting with a `###` heading.
    pub(crate) markdown: String,
    /// The same figures, machine-readable.
    pub(crate) json: Value,
}

/// One measurement of the suite.
pub(crate) trait Part {
    /// Name on the command line and in the JSON file.
    fn name(&self) -> &'static str;
    /// One line for `--help`.
    fn about(&self) -> &'static str;
    /// Runs the measurement.
    fn run(&self, ctx: &mut Ctx) -> Result<Section, String>;
}

/// Every part, in the order `all` runs them.
pub(crate) fn all() -> Vec<Box<dyn Part>> {
    vec![
        Box::new(ingest::LineProtocol),
        Box::new(ingest::ArrowIpc),
        Box::new(influx::InfluxIngest),
        Box::new(queries::Idle),
        Box::new(storage::Storage),
        Box::new(queries::UnderIngest),
        Box::new(freshness::Freshness),
        Box::new(mqtt::MqttEndToEnd),
        Box::new(kafka::KafkaConsume),
        Box::new(dashboards::Dashboards),
        Box::new(bus::BusDeliveries),
        Box::new(pipelines::PipelinesUnderIngest),
        Box::new(wire::Wire),
        Box::new(siting::Siting),
    ]
}

/// The `q`-quantile (0..=1, nearest rank) of `values`, which it sorts.
pub(crate) fn quantile(values: &mut [f64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let rank = (q * values.len() as f64).ceil() as usize;
    values[rank.clamp(1, values.len()) - 1]
}

/// Geometric mean of positive values (NaN when there are none).
pub(crate) fn geomean(values: &[f64]) -> f64 {
    let logs: Vec<f64> = values
        .iter()
        .filter(|v| v.is_finite() && **v > 0.0)
        .map(|v| v.ln())
        .collect();
    if logs.is_empty() {
        return f64::NAN;
    }
    (logs.iter().sum::<f64>() / logs.len() as f64).exp()
}

/// Formats a byte count.
pub(crate) fn bytes(n: u64) -> String {
    let n = n as f64;
    if n >= 1e9 {
        format!("{:.2} GB", n / 1e9)
    } else if n >= 1e6 {
        format!("{:.1} MB", n / 1e6)
    } else if n >= 1e3 {
        format!("{:.1} kB", n / 1e3)
    } else {
        format!("{n} B")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_use_the_nearest_rank() {
        let mut v = vec![5.0, 1.0, 4.0, 2.0, 3.0];
        assert_eq!(quantile(&mut v, 0.5), 3.0);
        assert_eq!(quantile(&mut v, 0.95), 5.0);
        assert_eq!(quantile(&mut v, 0.0), 1.0);
        let mut hundred: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&mut hundred, 0.99), 99.0);
        assert!(quantile(&mut [], 0.5).is_nan());
    }

    #[test]
    fn geomean_of_ratios() {
        assert!((geomean(&[2.0, 8.0]) - 4.0).abs() < 1e-12);
        assert!((geomean(&[0.5, 2.0, f64::NAN]) - 1.0).abs() < 1e-12);
        assert!(geomean(&[]).is_nan());
    }

    #[test]
    fn every_part_has_a_distinct_name() {
        let mut names: Vec<&str> = all().iter().map(|p| p.name()).collect();
        let n = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), n);
    }
}
