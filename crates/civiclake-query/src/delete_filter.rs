//! `DeleteFilterExec`: drops the rows of a table's Parquet files that deletes still pending
//! for them match (a delete is applied to the buffer at once and to the files by the next
//! flush; until then a scan of the files filters them out).
//!
//! The rows are filtered with the lake's own evaluation ([`DeleteSet::retain`]), the same
//! that applied the delete to the buffer and that the flush uses to rewrite the files, so
//! the three always agree (including NULL semantics and key-tuple matching).

use civiclake_lake::DeleteSet;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::EquivalenceProperties;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    ChildrenPropertiesMode, DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties,
    Partitioning, PhysicalExpr, PlanProperties, ReplaceChildrenOptions,
};
use futures::StreamExt;
use std::sync::Arc;

/// Filters the deleted rows out of its input and keeps its first `keep` columns (the others
/// were read only to evaluate the deletes).
#[derive(Debug, Clone)]
pub(crate) struct DeleteFilterExec {
    input: Arc<dyn ExecutionPlan>,
    deletes: DeleteSet,
    keep: usize,
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
}

impl DeleteFilterExec {
    pub(crate) fn try_new(
        input: Arc<dyn ExecutionPlan>,
        deletes: DeleteSet,
        keep: usize,
    ) -> Result<Self> {
        let indices: Vec<usize> = (0..keep).collect();
        let schema = Arc::new(input.schema().project(&indices)?);
        let properties = PlanProperties::new(
            EquivalenceProperties::new(schema.clone()),
            Partitioning::UnknownPartitioning(input.output_partitioning().partition_count()),
            input.pipeline_behavior(),
            input.boundedness(),
        );
        Ok(Self {
            input,
            deletes,
            keep,
            schema,
            properties: Arc::new(properties),
        })
    }
}

impl DisplayAs for DeleteFilterExec {
    fn fmt_as(&self, t: DisplayFormatType, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match t {
            DisplayFormatType::TreeRender => write!(f, "pending_deletes={}", self.deletes.len()),
            _ => write!(
                f,
                "DeleteFilterExec: pending_deletes={}",
                self.deletes.len()
            ),
        }
    }
}

fn filter(
    batch: RecordBatch,
    deletes: &DeleteSet,
    keep: usize,
    schema: &SchemaRef,
) -> Result<RecordBatch> {
    let kept = deletes
        .retain(&batch)
        .map_err(|e| DataFusionError::External(Box::new(e)))?;
    let options = RecordBatchOptions::new().with_row_count(Some(kept.num_rows()));
    Ok(RecordBatch::try_new_with_options(
        schema.clone(),
        kept.columns()[..keep].to_vec(),
        &options,
    )?)
}

impl ExecutionPlan for DeleteFilterExec {
    fn name(&self) -> &'static str {
        "DeleteFilterExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    /// The rows keep their order, but the output claims no ordering (it may drop columns an
    /// ordering is on), so sorts are planned above this node, never below.
    fn maintains_input_order(&self) -> Vec<bool> {
        vec![false]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn replace_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
        _options: ReplaceChildrenOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if children.len() != 1 {
            return Err(DataFusionError::Internal(format!(
                "DeleteFilterExec has one child, {} given",
                children.len()
            )));
        }
        Ok(Arc::new(Self::try_new(
            children.swap_remove(0),
            self.deletes.clone(),
            self.keep,
        )?))
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.replace_children(
            children,
            ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute),
        )
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let input = self.input.execute(partition, context)?;
        let (deletes, keep, schema) = (self.deletes.clone(), self.keep, self.schema.clone());
        let stream = input.map(move |batch| filter(batch?, &deletes, keep, &schema));
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema.clone(),
            stream,
        )))
    }
}

#[cfg(test)]
mod tests {
    use crate::{QueryConfig, QueryEngine, parse_predicate};
    use civiclake_core::{field_column, tag_column, time_column};
    use civiclake_lake::{Lake, LakeConfig, OpenMode};
    use datafusion::arrow::array::{
        Float64Array, RecordBatch, StringDictionaryBuilder, TimestampMicrosecondArray,
    };
    use datafusion::arrow::datatypes::{DataType, Int32Type, Schema};
    use datafusion::arrow::util::pretty::pretty_format_batches;
    use std::sync::Arc;

    const JAN_1: i64 = 1_767_225_600_000_000;

    fn readings(rows: &[(&str, i64, Option<f64>)]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            time_column(),
            tag_column("sensor"),
            field_column("pm25", DataType::Float64),
        ]));
        let mut tags = StringDictionaryBuilder::<Int32Type>::new();
        rows.iter().for_each(|r| tags.append_value(r.0));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(
                    TimestampMicrosecondArray::from_iter_values(rows.iter().map(|r| r.1))
                        .with_timezone("UTC"),
                ),
                Arc::new(tags.finish()),
                Arc::new(Float64Array::from_iter(rows.iter().map(|r| r.2))),
            ],
        )
        .unwrap()
    }

    async fn text(engine: &QueryEngine, sql: &str) -> String {
        let result = engine.sql(sql).await.unwrap();
        pretty_format_batches(&result.batches).unwrap().to_string()
    }

    #[tokio::test]
    async fn views_are_offered_to_sessions_that_see_their_tables() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = LakeConfig::new(dir.path());
        config.wal_fsync = false;
        let lake = Lake::open(config, OpenMode::ReadWrite).await.unwrap();
        let engine = QueryEngine::new(lake.clone(), QueryConfig::default()).unwrap();
        let hour = 3_600_000_000;
        lake.write(vec![(
            "air".into(),
            readings(&[
                ("a1", JAN_1, Some(10.0)),
                ("a1", JAN_1 + hour, Some(20.0)),
                ("b2", JAN_1, Some(40.0)),
            ]),
        )])
        .await
        .unwrap();
        let def = crate::ViewDef {
            sql: "SELECT sensor, avg(pm25) AS mean FROM air GROUP BY sensor".into(),
            tables: vec!["air".into()],
            description: "mean per sensor".into(),
        };
        engine.register_view("air_means", def.clone()).unwrap();
        assert!(engine.register_view("air", def.clone()).is_err());
        assert!(engine.register_view("Bad-Name", def).is_err());
        assert_eq!(
            text(
                &engine,
                "SELECT sensor, mean FROM air_means ORDER BY sensor"
            )
            .await,
            "+--------+------+\n| sensor | mean |\n+--------+------+\n| a1     | 15.0 |\n| b2     | 40.0 |\n+--------+------+"
        );
        // Listed with the tables.
        let names = engine
            .sql("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1")
            .await
            .unwrap();
        assert_eq!(
            pretty_format_batches(&names.batches)
                .unwrap()
                .to_string()
                .matches("air_means")
                .count(),
            1
        );
        // A session that does not see `air` does not see the view either.
        let scope = crate::SqlScope::restricted(Arc::new(|t: &str| t == "noise"), None);
        let err = engine
            .sql_as("SELECT * FROM air_means", &scope)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("air_means"), "{err}");
    }

    #[tokio::test]
    async fn a_pending_delete_hides_file_rows_from_sql() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = LakeConfig::new(dir.path());
        config.wal_fsync = false;
        let lake = Lake::open(config, OpenMode::ReadWrite).await.unwrap();
        let engine = QueryEngine::new(lake.clone(), QueryConfig::default()).unwrap();
        let hour = 3_600_000_000;
        lake.write(vec![(
            "air".into(),
            readings(&[
                ("a1", JAN_1 - hour, Some(10.0)),
                ("a1", JAN_1 + hour, Some(20.0)),
                ("b2", JAN_1 - hour, None),
                ("b2", JAN_1 + hour, Some(40.0)),
            ]),
        )])
        .await
        .unwrap();
        lake.flush().await.unwrap();
        lake.write(vec![(
            "air".into(),
            readings(&[("a1", JAN_1 - 2 * hour, Some(5.0))]),
        )])
        .await
        .unwrap();

        let predicate = parse_predicate("time < '2026-01-01T00:00:00Z' AND sensor = 'a1'").unwrap();
        let outcome = lake.delete_where("air", predicate).await.unwrap();
        assert_eq!(outcome.buffer_rows_deleted, 1);
        assert!(outcome.pending_for_files);
        // One file for 2025-12-31, one for 2026-01-01.
        assert_eq!(lake.snapshot("air").unwrap().unwrap().files.len(), 2);

        let expected_count = "+----------+\n| count(*) |\n+----------+\n| 3        |\n+----------+";
        assert_eq!(
            text(&engine, "SELECT count(*) FROM air").await,
            expected_count
        );
        // Only `pm25` is asked for: the delete's columns are read for the filter and dropped.
        assert_eq!(
            text(&engine, "SELECT sum(pm25) AS s FROM air").await,
            "+------+\n| s    |\n+------+\n| 60.0 |\n+------+"
        );
        assert_eq!(
            text(
                &engine,
                "SELECT sensor, pm25 FROM air ORDER BY sensor, time LIMIT 2"
            )
            .await,
            "+--------+------+\n| sensor | pm25 |\n+--------+------+\n| a1     | 20.0 |\n| b2     |      |\n+--------+------+"
        );
        let plan = text(&engine, "EXPLAIN SELECT * FROM air").await;
        assert!(
            plan.contains("DeleteFilterExec: pending_deletes=1"),
            "{plan}"
        );

        // Once the flush has rewritten the file, no filter is needed and the figures hold.
        let stats = lake.flush().await.unwrap();
        assert_eq!((stats.files_rewritten, stats.rows_deleted), (1, 1));
        assert_eq!(
            text(&engine, "SELECT count(*) FROM air").await,
            expected_count
        );
        let plan = text(&engine, "EXPLAIN SELECT * FROM air").await;
        assert!(!plan.contains("DeleteFilterExec"), "{plan}");
        lake.shutdown().await.unwrap();
    }
}
