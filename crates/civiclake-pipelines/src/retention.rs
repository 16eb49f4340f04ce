//! Retention: per table (`[[table]] retention`) and per pipeline target (`retention`), whole
//! day partitions older than the period are dropped from the Delta table and their files
//! deleted — never hidden at query time. Raw data can be kept shorter than its rollups.

use crate::error::Result;
use crate::runtime::{Inner, Pipelines, now_micros};
use crate::spec::{duration, micros};
use std::collections::BTreeMap;

/// What retention did to one table.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RetentionRun {
    /// The table.
    pub table: String,
    /// Its retention, as written.
    pub retention: String,
    /// Days older than this were dropped (RFC 3339).
    pub cutoff: String,
    /// What the lake did.
    pub outcome: civiclake_lake::RetentionOutcome,
}

/// The retention of every table that has one: table settings first, then pipeline targets
/// (a table setting wins).
pub(crate) fn periods(inner: &Inner) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for p in inner.pipeline_specs() {
        if let Some(r) = p.retention {
            out.insert(p.target, r);
        }
    }
    for t in inner.table_specs() {
        if let Some(r) = t.retention {
            out.insert(t.name, r);
        }
    }
    out
}

pub(crate) async fn run(inner: &Inner) -> Result<Vec<RetentionRun>> {
    let mut runs = Vec::new();
    for (table, retention) in periods(inner) {
        if inner.lake.schema(&table).is_none() {
            continue;
        }
        let cutoff = now_micros() - micros(duration("retention", &retention)?);
        let outcome = inner.lake.drop_partitions_before(&table, cutoff).await?;
        tracing::info!(table, retention, ?outcome, "retention enforced");
        runs.push(RetentionRun {
            table,
            retention,
            cutoff: chrono::DateTime::from_timestamp_micros(cutoff)
                .unwrap_or_default()
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            outcome,
        });
    }
    Ok(runs)
}

impl Pipelines {
    /// Enforces every table's retention now.
    pub async fn enforce_retention(&self) -> Result<Vec<RetentionRun>> {
        run(&self.inner).await
    }
}
