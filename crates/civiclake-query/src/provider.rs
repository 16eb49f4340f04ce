//! A lake table as a DataFusion table: the buffered batches and the Delta files, unioned.
//! Deletes still pending for the files are applied to the file scan ([`DeleteFilterExec`]).

use crate::delete_filter::DeleteFilterExec;
use civiclake_core::TIME_COLUMN;
use civiclake_lake::{DataFile, Lake, TableSnapshot};
use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::datatypes::{SchemaRef, TimestampMicrosecondType};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::config::TableParquetOptions;
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::datasource::TableType;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::Result;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::union::UnionExec;
use std::sync::Arc;

/// One table at one instant.
#[derive(Debug)]
pub(crate) struct LakeTable {
    snapshot: TableSnapshot,
}

impl LakeTable {
    pub(crate) fn new(snapshot: TableSnapshot) -> Self {
        Self { snapshot }
    }

    /// The table `name` of `lake` now, synchronously (for planning rules); None if there is
    /// no such table or its snapshot fails.
    pub(crate) fn open(lake: &Lake, name: &str) -> Option<Self> {
        lake.snapshot(name).ok().flatten().map(Self::new)
    }
}

/// Inclusive time range (µs) a query's filters allow.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct TimeRange {
    pub(crate) min: i64,
    pub(crate) max: i64,
}

fn literal_micros(v: &ScalarValue) -> Option<i64> {
    match v {
        ScalarValue::TimestampMicrosecond(Some(v), _) => Some(*v),
        ScalarValue::TimestampNanosecond(Some(v), _) => Some(v.div_euclid(1000)),
        ScalarValue::TimestampMillisecond(Some(v), _) => v.checked_mul(1000),
        ScalarValue::TimestampSecond(Some(v), _) => v.checked_mul(1_000_000),
        _ => None,
    }
}

fn is_time(e: &Expr) -> bool {
    matches!(e, Expr::Column(c) if c.name == TIME_COLUMN)
}

fn literal_of(e: &Expr) -> Option<i64> {
    match e {
        Expr::Literal(v, _) => literal_micros(v),
        Expr::Cast(c) => literal_of(&c.expr),
        Expr::TryCast(c) => literal_of(&c.expr),
        _ => None,
    }
}

/// Narrows `range` with the bounds on `time` found in the conjunction `filters`.
pub(crate) fn time_range(filters: &[Expr]) -> TimeRange {
    let mut range = TimeRange {
        min: i64::MIN,
        max: i64::MAX,
    };
    for f in filters {
        narrow(f, &mut range);
    }
    range
}

fn narrow(e: &Expr, r: &mut TimeRange) {
    match e {
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::And,
            right,
        }) => {
            narrow(left, r);
            narrow(right, r);
        }
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            let (op, v) = if is_time(left) {
                match literal_of(right) {
                    Some(v) => (*op, v),
                    None => return,
                }
            } else if is_time(right) {
                match (literal_of(left), op.swap()) {
                    (Some(v), Some(op)) => (op, v),
                    _ => return,
                }
            } else {
                return;
            };
            match op {
                Operator::Gt => r.min = r.min.max(v.saturating_add(1)),
                Operator::GtEq => r.min = r.min.max(v),
                Operator::Lt => r.max = r.max.min(v.saturating_sub(1)),
                Operator::LtEq => r.max = r.max.min(v),
                Operator::Eq => {
                    r.min = r.min.max(v);
                    r.max = r.max.min(v);
                }
                _ => {}
            }
        }
        Expr::Between(b) if is_time(&b.expr) && !b.negated => {
            if let (Some(lo), Some(hi)) = (literal_of(&b.low), literal_of(&b.high)) {
                r.min = r.min.max(lo);
                r.max = r.max.min(hi);
            }
        }
        _ => {}
    }
}

/// Whether a file may hold rows in `range`.
pub(crate) fn file_overlaps(f: &DataFile, range: TimeRange) -> bool {
    let below = f.max_time.is_some_and(|max| max < range.min);
    let above = f.min_time.is_some_and(|min| min > range.max);
    !(below || above)
}

/// Whether a buffered batch may hold rows in `range` (its `time` column's min and max; the
/// filter above the scan still applies, this only spares reading batches that cannot match,
/// e.g. the minutes outside a pipeline's window).
fn batch_overlaps(b: &RecordBatch, range: TimeRange) -> bool {
    if range.min == i64::MIN && range.max == i64::MAX {
        return true;
    }
    let Some(t) = b
        .column_by_name(TIME_COLUMN)
        .and_then(|c| c.as_primitive_opt::<TimestampMicrosecondType>())
    else {
        return true;
    };
    match (
        datafusion::arrow::compute::min(t),
        datafusion::arrow::compute::max(t),
    ) {
        (Some(min), Some(max)) => !(max < range.min || min > range.max),
        _ => true,
    }
}

#[async_trait::async_trait]
impl TableProvider for LakeTable {
    fn schema(&self) -> SchemaRef {
        self.snapshot.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let schema = self.snapshot.schema.clone();
        let partitions = state.config().target_partitions().max(1);
        let limit = if filters.is_empty() { limit } else { None };
        let mut inputs: Vec<Arc<dyn ExecutionPlan>> = Vec::new();

        let range = time_range(filters);
        let files: Vec<&DataFile> = self
            .snapshot
            .files
            .iter()
            .filter(|f| file_overlaps(f, range))
            .collect();
        if !files.is_empty() {
            // The columns pending deletes read are scanned too, filtered on, then dropped;
            // no limit below the filter.
            let deletes = &self.snapshot.deletes;
            let (file_projection, keep, file_limit) = if deletes.is_empty() {
                (projection.cloned(), None, limit)
            } else {
                let mut columns: Vec<usize> = projection
                    .cloned()
                    .unwrap_or_else(|| (0..schema.fields().len()).collect());
                let keep = columns.len();
                for name in deletes.columns() {
                    if let Ok(i) = schema.index_of(&name)
                        && !columns.contains(&i)
                    {
                        columns.push(i);
                    }
                }
                (Some(columns), Some(keep), None)
            };
            let mut source = ParquetSource::new(schema.clone()).with_table_parquet_options(
                TableParquetOptions {
                    global: state.config_options().execution.parquet.clone(),
                    ..Default::default()
                },
            );
            if let Some(predicate) = conjunction(filters.to_vec()) {
                let df_schema = DFSchema::try_from(schema.clone())?;
                source = source.with_predicate(state.create_physical_expr(predicate, &df_schema)?);
            }
            let mut groups: Vec<Vec<PartitionedFile>> =
                vec![Vec::new(); partitions.min(files.len())];
            for (i, f) in files.iter().enumerate() {
                let n = groups.len();
                groups[i % n].push(PartitionedFile::new(f.location.to_string(), f.size));
            }
            let config =
                FileScanConfigBuilder::new(ObjectStoreUrl::local_filesystem(), Arc::new(source))
                    .with_file_groups(groups.into_iter().map(FileGroup::new).collect())
                    .with_projection_indices(file_projection)?
                    .with_limit(file_limit)
                    .build();
            let scan = DataSourceExec::from_data_source(config);
            inputs.push(match keep {
                Some(keep) => Arc::new(DeleteFilterExec::try_new(scan, deletes.clone(), keep)?),
                None => scan,
            });
        }

        let batches: Vec<_> = self
            .snapshot
            .batches
            .iter()
            .filter(|b| b.num_rows() > 0 && batch_overlaps(b, range))
            .cloned()
            .collect();
        if !batches.is_empty() || inputs.is_empty() {
            let mut parts = vec![Vec::new(); partitions.min(batches.len()).max(1)];
            for (i, b) in batches.into_iter().enumerate() {
                let n = parts.len();
                parts[i % n].push(b);
            }
            let mem = MemorySourceConfig::try_new(&parts, schema.clone(), projection.cloned())?
                .with_limit(limit);
            inputs.push(DataSourceExec::from_data_source(mem));
        }
        UnionExec::try_new(inputs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::logical_expr::{col, lit};

    fn ts(v: i64) -> Expr {
        lit(ScalarValue::TimestampMicrosecond(
            Some(v),
            Some("UTC".into()),
        ))
    }

    #[test]
    fn time_bounds_come_from_filters() {
        let r = time_range(&[
            col("time").gt_eq(ts(100)).and(col("time").lt(ts(200))),
            col("v").gt(lit(1.0)),
        ]);
        assert_eq!(r, TimeRange { min: 100, max: 199 });
        let r = time_range(&[ts(50).lt(col("time"))]);
        assert_eq!(
            r,
            TimeRange {
                min: 51,
                max: i64::MAX
            }
        );
        let r = time_range(&[col("v").lt(ts(5))]);
        assert_eq!(
            r,
            TimeRange {
                min: i64::MIN,
                max: i64::MAX
            }
        );
    }

    #[test]
    fn files_outside_the_range_are_skipped() {
        let f = DataFile {
            location: "x".into(),
            relative: "x".into(),
            size: 1,
            rows: Some(1),
            min_time: Some(100),
            max_time: Some(200),
            day: "1970-01-01".into(),
        };
        assert!(file_overlaps(&f, TimeRange { min: 150, max: 160 }));
        assert!(!file_overlaps(&f, TimeRange { min: 201, max: 300 }));
        assert!(!file_overlaps(&f, TimeRange { min: 0, max: 99 }));
        let unknown = DataFile {
            min_time: None,
            max_time: None,
            ..f
        };
        assert!(file_overlaps(&unknown, TimeRange { min: 201, max: 300 }));
    }
}
