//! The SQL engine: one DataFusion session per query over the lake's tables, with a memory
//! pool and a time limit of its own.

use crate::error::{Error, Result};
use crate::provider::LakeTable;
use civiclake_lake::Lake;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{SchemaProvider, TableProvider};
use datafusion::error::DataFusionError;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::memory_pool::{GreedyMemoryPool, TrackConsumersPool};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::session_state::SessionState;
use datafusion::prelude::{SessionConfig, SessionContext};
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

/// Limits and tuning of queries.
#[derive(Debug, Clone)]
pub struct QueryConfig {
    /// Memory one query may use (bytes) before it fails with a clear error.
    pub memory_limit: usize,
    /// Time one query may run before it is cancelled.
    pub timeout: Duration,
    /// Parallelism of a query (DataFusion target partitions); 0 = number of cores.
    pub target_partitions: usize,
}

impl Default for QueryConfig {
    fn default() -> Self {
        Self {
            memory_limit: 1 << 30,
            timeout: Duration::from_secs(60),
            target_partitions: 0,
        }
    }
}

/// The result of a query: its schema and its rows.
#[derive(Debug, Clone)]
pub struct QueryResult {
    /// Schema of the result.
    pub schema: SchemaRef,
    /// Rows of the result.
    pub batches: Vec<RecordBatch>,
}

impl QueryResult {
    /// Number of rows.
    pub fn num_rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }
}

/// The lake's tables as DataFusion's `public` schema; a table is looked up when a query
/// names it, so tables created a moment ago are there.
#[derive(Debug)]
struct LakeSchema {
    lake: Arc<Lake>,
}

#[async_trait::async_trait]
impl SchemaProvider for LakeSchema {
    fn table_names(&self) -> Vec<String> {
        self.lake.table_names()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>, DataFusionError> {
        let snapshot = self
            .lake
            .snapshot(name)
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        Ok(snapshot.map(|s| Arc::new(LakeTable::new(s)) as Arc<dyn TableProvider>))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.lake.schema(name).is_some()
    }
}

/// Runs SQL over the lake.
#[derive(Debug, Clone)]
pub struct QueryEngine {
    lake: Arc<Lake>,
    base: SessionState,
    config: QueryConfig,
}

impl QueryEngine {
    /// A query engine over `lake`.
    pub fn new(lake: Arc<Lake>, config: QueryConfig) -> Result<Self> {
        let mut session = SessionConfig::new()
            .with_information_schema(true)
            .with_default_catalog_and_schema("datafusion", "public")
            .set_bool("datafusion.execution.parquet.pushdown_filters", true)
            .set_bool("datafusion.execution.parquet.reorder_filters", true)
            .set_str("datafusion.execution.time_zone", "+00:00");
        if config.target_partitions > 0 {
            session = session.with_target_partitions(config.target_partitions);
        }
        let runtime = RuntimeEnvBuilder::new()
            .build_arc()
            .map_err(|e| Error::Execution(e.to_string()))?;
        let base = SessionStateBuilder::new()
            .with_config(session)
            .with_runtime_env(runtime)
            .with_default_features()
            .build();
        let ctx = SessionContext::new_with_state(base.clone());
        let catalog = ctx
            .catalog("datafusion")
            .ok_or_else(|| Error::Execution("no default catalog".into()))?;
        catalog
            .register_schema("public", Arc::new(LakeSchema { lake: lake.clone() }))
            .map_err(|e| Error::Execution(e.to_string()))?;
        let base = ctx.state();
        Ok(Self { lake, base, config })
    }

    /// The lake this engine reads.
    pub fn lake(&self) -> &Arc<Lake> {
        &self.lake
    }

    /// The limits in force.
    pub fn config(&self) -> &QueryConfig {
        &self.config
    }

    /// A session for one query, with its own memory pool.
    pub fn session(&self) -> Result<SessionContext> {
        let pool = TrackConsumersPool::new(
            GreedyMemoryPool::new(self.config.memory_limit),
            NonZeroUsize::new(3).unwrap_or(NonZeroUsize::MIN),
        );
        let base_runtime = self.base.runtime_env();
        let runtime = RuntimeEnvBuilder::from_runtime_env(base_runtime)
            .with_memory_pool(Arc::new(pool))
            .build_arc()
            .map_err(|e| Error::Execution(e.to_string()))?;
        let state = SessionStateBuilder::new_from_existing(self.base.clone())
            .with_runtime_env(runtime)
            .build();
        Ok(SessionContext::new_with_state(state))
    }

    fn limit_mib(&self) -> usize {
        self.config.memory_limit >> 20
    }

    /// Plans and runs `sql`, within the memory and time limits.
    pub async fn sql(&self, sql: &str) -> Result<QueryResult> {
        let ctx = self.session()?;
        let limit = self.limit_mib();
        let run = async {
            let df = ctx
                .sql(sql)
                .await
                .map_err(|e| Error::from_datafusion(e, limit))?;
            let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
            let batches = df
                .collect()
                .await
                .map_err(|e| Error::from_datafusion(e, limit))?;
            Ok(QueryResult { schema, batches })
        };
        match tokio::time::timeout(self.config.timeout, run).await {
            Ok(result) => result,
            Err(_) => Err(Error::Timeout(self.config.timeout)),
        }
    }
}
