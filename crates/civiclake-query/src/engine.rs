//! The SQL engine: one DataFusion session per query over the lake's tables, with a memory
//! pool and a time limit of its own.

use crate::error::{Error, Result};
use crate::provider::LakeTable;
use crate::rollup::Rollups;
use civiclake_lake::Lake;
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::view::ViewTable;
use datafusion::catalog::{
    CatalogProvider, CatalogProviderList, MemoryCatalogProvider, MemoryCatalogProviderList,
};
use datafusion::catalog::{SchemaProvider, TableProvider};
use datafusion::common::ParamValues;
use datafusion::common::{Column, ScalarValue};
use datafusion::datasource::provider_as_source;
use datafusion::error::DataFusionError;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::memory_pool::{GreedyMemoryPool, TrackConsumersPool};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder, cast, col, lit};
use datafusion::prelude::{SQLOptions, SessionConfig, SessionContext};
use futures::StreamExt;
use parking_lot::RwLock;
use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

mod dml;
#[cfg(test)]
mod stream_tests;

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

/// Which tables one SQL session sees (by name), and which columns it sees masked.
pub type TableFilter = Arc<dyn Fn(&str) -> bool + Send + Sync>;
/// `(table, column) -> masked?`
pub type ColumnMask = Arc<dyn Fn(&str, &str) -> bool + Send + Sync>;

/// What one SQL session may see and do: its catalog holds only the granted tables (so
/// joins, views, `information_schema` and table functions cannot reach others), masked
/// columns come through a view that replaces their values, and a read-only session refuses
/// DDL, DML and statements such as `SET`. A session that may write runs `DELETE FROM t
/// WHERE ...` on the lake unless it was made [`SqlScope::without_deletes`] (SQL from a GET
/// request or a page, which must not change data).
#[derive(Clone)]
pub struct SqlScope {
    tables: Option<TableFilter>,
    mask: Option<ColumnMask>,
    read_only: bool,
    deletes: bool,
}

impl std::fmt::Debug for SqlScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlScope")
            .field("restricted", &self.tables.is_some())
            .field("masked", &self.mask.is_some())
            .field("read_only", &self.read_only)
            .field("deletes", &self.deletes)
            .finish()
    }
}

impl SqlScope {
    /// Every table, nothing masked, statements and deletes allowed (administrators, local
    /// tools).
    pub fn unrestricted() -> Self {
        Self {
            tables: None,
            mask: None,
            read_only: false,
            deletes: true,
        }
    }

    /// Only the tables `tables` accepts, with `mask`ed columns, read-only.
    pub fn restricted(tables: TableFilter, mask: Option<ColumnMask>) -> Self {
        Self {
            tables: Some(tables),
            mask,
            read_only: true,
            deletes: false,
        }
    }

    /// The same scope, refusing `DELETE` (for SQL that must not change data: GET requests,
    /// pages).
    pub fn without_deletes(mut self) -> Self {
        self.deletes = false;
        self
    }

    /// Whether `DELETE FROM t WHERE ...` runs in this scope.
    pub fn allows_deletes(&self) -> bool {
        !self.read_only && self.deletes
    }

    /// Whether the session sees `table`.
    pub fn sees(&self, table: &str) -> bool {
        self.tables.as_ref().is_none_or(|f| f(table))
    }

    /// Whether the session may only read.
    pub fn read_only(&self) -> bool {
        self.read_only
    }

    /// `batch` (rows of `table`) with the columns this scope sees masked replaced as in
    /// queries: strings and tags by `***`, other values by NULL.
    pub fn mask_batch(
        &self,
        table: &str,
        batch: RecordBatch,
    ) -> datafusion::common::Result<RecordBatch> {
        let Some(mask) = &self.mask else {
            return Ok(batch);
        };
        let schema = batch.schema();
        let mut columns = batch.columns().to_vec();
        let mut changed = false;
        for (i, field) in schema.fields().iter().enumerate() {
            if field.name() == civiclake_core::TIME_COLUMN || !mask(table, field.name()) {
                continue;
            }
            let rows = batch.num_rows();
            columns[i] = match field.data_type() {
                DataType::Utf8 | DataType::Dictionary(_, _) => {
                    let masked = datafusion::arrow::array::StringArray::from(vec!["***"; rows]);
                    datafusion::arrow::compute::cast(&masked, field.data_type())?
                }
                other => datafusion::arrow::array::new_null_array(other, rows),
            };
            changed = true;
        }
        if !changed {
            return Ok(batch);
        }
        let fields: Vec<_> = schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect();
        Ok(RecordBatch::try_new(
            Arc::new(datafusion::arrow::datatypes::Schema::new(fields)),
            columns,
        )?)
    }

    /// Whether the session sees `column` of `table` masked.
    pub(crate) fn masks(&self, table: &str, column: &str) -> bool {
        self.mask.as_ref().is_some_and(|m| m(table, column))
    }
}

/// The lake's tables as DataFusion's `public` schema; a table is looked up when a query
/// names it, so tables created a moment ago are there. Only the tables in scope exist.
#[derive(Debug)]
struct LakeSchema {
    lake: Arc<Lake>,
    scope: SqlScope,
    /// The named views, and the session they are planned in (None inside a view's own
    /// planning: views do not read views).
    views: Option<(Views, Arc<SessionState>)>,
}

/// A named view: SQL over lake tables, offered to every session whose scope sees all of
/// them (its statistics for a module, the bus's flow rates...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewDef {
    /// Its SQL (a query over lake tables; no other views).
    pub sql: String,
    /// The tables it reads: a session sees the view only if it sees each of them.
    pub tables: Vec<String>,
    /// What it answers, for people.
    pub description: String,
}

type Views = Arc<RwLock<BTreeMap<String, ViewDef>>>;

impl LakeSchema {
    fn view(&self, name: &str) -> Option<ViewDef> {
        let (views, _) = self.views.as_ref()?;
        let def = views.read().get(name).cloned()?;
        def.tables.iter().all(|t| self.scope.sees(t)).then_some(def)
    }
}

/// `table` with its masked columns replaced by `'***'` (strings) or NULL (other types).
fn masked_view(
    name: &str,
    table: Arc<dyn TableProvider>,
    mask: &ColumnMask,
) -> Result<Arc<dyn TableProvider>, DataFusionError> {
    let schema = table.schema();
    let masked: Vec<bool> = schema
        .fields()
        .iter()
        .map(|f| mask(name, f.name()))
        .collect();
    if !masked.contains(&true) {
        return Ok(table);
    }
    let exprs: Vec<Expr> = schema
        .fields()
        .iter()
        .zip(&masked)
        .map(|(f, &m)| {
            if !m {
                return col(Column::new_unqualified(f.name()));
            }
            let value = match f.data_type() {
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => lit("***"),
                DataType::Dictionary(_, v) if v.as_ref() == &DataType::Utf8 => lit("***"),
                other => cast(lit(ScalarValue::Null), other.clone()),
            };
            value.alias(f.name())
        })
        .collect();
    let plan = LogicalPlanBuilder::scan(name, provider_as_source(table), None)?
        .project(exprs)?
        .build()?;
    Ok(Arc::new(ViewTable::new(plan, None)))
}

#[async_trait::async_trait]
impl SchemaProvider for LakeSchema {
    fn table_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .lake
            .table_names()
            .into_iter()
            .filter(|t| self.scope.sees(t))
            .collect();
        if let Some((views, _)) = &self.views {
            let all: Vec<String> = views.read().keys().cloned().collect();
            names.extend(all.into_iter().filter(|v| self.view(v).is_some()));
        }
        names
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>, DataFusionError> {
        if let Some(def) = self.view(name)
            && let Some((_, base)) = &self.views
        {
            // Planned in a session of the same scope without views.
            let inner = Arc::new(MemoryCatalogProvider::new());
            inner.register_schema(
                "public",
                Arc::new(LakeSchema {
                    lake: self.lake.clone(),
                    scope: self.scope.clone(),
                    views: None,
                }),
            )?;
            let catalogs = Arc::new(MemoryCatalogProviderList::new());
            catalogs.register_catalog("datafusion".into(), inner);
            let state = SessionStateBuilder::new_from_existing(SessionState::clone(base))
                .with_catalog_list(catalogs)
                .build();
            let ctx = SessionContext::new_with_state(state);
            let plan = ctx
                .sql(&def.sql)
                .await
                .map_err(|e| DataFusionError::Plan(format!("view {name}: {e}")))?
                .into_unoptimized_plan();
            return Ok(Some(Arc::new(ViewTable::new(plan, Some(def.sql)))));
        }
        if !self.scope.sees(name) {
            return Ok(None);
        }
        let snapshot = self
            .lake
            .snapshot(name)
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        let Some(snapshot) = snapshot else {
            return Ok(None);
        };
        let table = Arc::new(LakeTable::new(snapshot)) as Arc<dyn TableProvider>;
        match &self.scope.mask {
            Some(mask) => masked_view(name, table, mask).map(Some),
            None => Ok(Some(table)),
        }
    }

    fn table_exist(&self, name: &str) -> bool {
        (self.scope.sees(name) && self.lake.schema(name).is_some()) || self.view(name).is_some()
    }
}

/// Runs SQL over the lake.
#[derive(Debug, Clone)]
pub struct QueryEngine {
    lake: Arc<Lake>,
    /// Shared: an engine is cloned with every request's state, a session state is large.
    base: Arc<SessionState>,
    config: QueryConfig,
    views: Views,
    latest: Arc<crate::latest::LatestCache>,
    pub(crate) rollups: Rollups,
    use_rollups: Arc<AtomicBool>,
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
        let mut base = SessionStateBuilder::new()
            .with_config(session)
            .with_runtime_env(runtime)
            .with_default_features()
            .build();
        // Sessions are built from `base`, so every one (restricted too) has them.
        crate::timeseries::register_timeseries(&mut base)
            .map_err(|e| Error::Execution(e.to_string()))?;
        Ok(Self {
            lake,
            base: Arc::new(base),
            config,
            views: Arc::default(),
            latest: Arc::default(),
            rollups: Arc::default(),
            use_rollups: Arc::new(AtomicBool::new(true)),
        })
    }

    /// Offers the view `name` to every session whose scope sees all of `def.tables` (it is
    /// planned when a query names it). Replaces a view of the same name; refuses a name that
    /// is not a lowercase identifier or is a table of the lake.
    pub fn register_view(&self, name: &str, def: ViewDef) -> Result<()> {
        let ok = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            && name.chars().next().is_some_and(|c| c.is_ascii_lowercase());
        if !ok {
            return Err(Error::Invalid(format!(
                "view name {name:?}: use lowercase letters, digits and _, starting with a letter"
            )));
        }
        if self.lake.schema(name).is_some() {
            return Err(Error::Invalid(format!(
                "{name} is a table of the lake, not a view"
            )));
        }
        self.views.write().insert(name.to_string(), def);
        Ok(())
    }

    /// The views, by name.
    pub fn views(&self) -> BTreeMap<String, ViewDef> {
        self.views.read().clone()
    }

    /// The last-value cache answering `latest('table')` (filled by whoever observes the
    /// writes: the pipelines runtime).
    pub fn latest_cache(&self) -> &Arc<crate::latest::LatestCache> {
        &self.latest
    }

    /// The lake this engine reads.
    pub fn lake(&self) -> &Arc<Lake> {
        &self.lake
    }

    /// The limits in force.
    pub fn config(&self) -> &QueryConfig {
        &self.config
    }

    /// A session for one query with every table, with its own memory pool.
    pub fn session(&self) -> Result<SessionContext> {
        self.session_as(&SqlScope::unrestricted())
    }

    /// Turns the use of rollups by the planner on (the default) or off, for every session.
    pub fn set_use_rollups(&self, on: bool) {
        self.use_rollups.store(on, Ordering::Relaxed);
    }

    /// A session for one query that sees what `scope` allows, with its own memory pool and
    /// its own catalog; aggregates are answered from rollups where they can be.
    pub fn session_as(&self, scope: &SqlScope) -> Result<SessionContext> {
        self.session_with(
            scope,
            self.use_rollups.load(Ordering::Relaxed),
            DEFAULT_CATALOG,
        )
    }

    /// The same as [`Self::session_as`] with the catalog named `catalog` (the default
    /// catalog of the session): for protocols whose clients see the database's name (the
    /// PostgreSQL protocol's `civiclake`). The session serves a connection's queries, so its
    /// memory pool is the connection's: one query at a time, as on a PostgreSQL connection.
    pub fn session_in_catalog(&self, scope: &SqlScope, catalog: &str) -> Result<SessionContext> {
        self.session_with(scope, self.use_rollups.load(Ordering::Relaxed), catalog)
    }

    fn session_with(
        &self,
        scope: &SqlScope,
        rollups: bool,
        catalog_name: &str,
    ) -> Result<SessionContext> {
        let pool = TrackConsumersPool::new(
            GreedyMemoryPool::new(self.config.memory_limit),
            NonZeroUsize::new(3).unwrap_or(NonZeroUsize::MIN),
        );
        let base_runtime = self.base.runtime_env();
        let runtime = RuntimeEnvBuilder::from_runtime_env(base_runtime)
            .with_memory_pool(Arc::new(pool))
            .build_arc()
            .map_err(|e| Error::Execution(e.to_string()))?;
        let catalog = Arc::new(MemoryCatalogProvider::new());
        catalog
            .register_schema(
                "public",
                Arc::new(LakeSchema {
                    lake: self.lake.clone(),
                    scope: scope.clone(),
                    views: Some((self.views.clone(), self.base.clone())),
                }),
            )
            .map_err(|e| Error::Execution(e.to_string()))?;
        let catalogs = Arc::new(MemoryCatalogProviderList::new());
        catalogs.register_catalog(catalog_name.into(), catalog);
        let mut state = SessionStateBuilder::new_from_existing(SessionState::clone(&self.base))
            .with_runtime_env(runtime)
            .with_catalog_list(catalogs);
        if catalog_name != DEFAULT_CATALOG {
            state = state.with_config(
                self.base
                    .config()
                    .clone()
                    .with_default_catalog_and_schema(catalog_name, "public")
                    // The catalog is the one registered above, not a new empty one.
                    .with_create_default_catalog_and_schema(false),
            );
        }
        if let Some(rule) = self.rollup_rule(scope, rollups) {
            state = state.with_optimizer_rule(rule);
        }
        let ctx = SessionContext::new_with_state(state.build());
        ctx.register_udtf(
            "latest",
            Arc::new(crate::latest::LatestFunction {
                cache: self.latest.clone(),
                scope: scope.clone(),
            }),
        );
        Ok(ctx)
    }

    fn limit_mib(&self) -> usize {
        self.config.memory_limit >> 20
    }

    /// Plans and runs `sql` over every table, within the memory and time limits.
    pub async fn sql(&self, sql: &str) -> Result<QueryResult> {
        self.sql_as(sql, &SqlScope::unrestricted()).await
    }

    /// Plans and runs `sql` over every table without rollups (reads the raw rows: to check
    /// or measure what rollups give).
    pub async fn sql_without_rollups(&self, sql: &str) -> Result<QueryResult> {
        self.run(sql, &SqlScope::unrestricted(), false).await
    }

    /// Plans and runs `sql` as `scope` allows, within the memory and time limits.
    ///
    /// In a scope that may write, `DELETE FROM table WHERE condition` deletes the rows
    /// where the condition is true and removes them from storage at once (flush, then
    /// vacuum: see [`civiclake_lake::Lake::purge_where`]); the answer is one row, `count`
    /// (rows deleted). It is not cut by the time limit (a flush is not interrupted). A
    /// DELETE without WHERE is refused; `WHERE true` deletes every row.
    pub async fn sql_as(&self, sql: &str, scope: &SqlScope) -> Result<QueryResult> {
        if !scope.read_only
            && let Some(delete) = dml::parse_delete(sql)?
        {
            if !scope.deletes {
                return Err(Error::Invalid(
                    "DELETE changes data and is refused here (a GET request or a page): send \
                     it with POST /api/v1/query"
                        .into(),
                ));
            }
            return dml::run_delete(&self.lake, scope, delete).await;
        }
        self.run(sql, scope, self.use_rollups.load(Ordering::Relaxed))
            .await
    }

    async fn run(&self, sql: &str, scope: &SqlScope, rollups: bool) -> Result<QueryResult> {
        let ctx = self.session_with(scope, rollups, DEFAULT_CATALOG)?;
        self.sql_in(&ctx, sql, None, scope).await
    }

    /// What SQL `scope` may plan: a read-only scope no DDL, DML or statements such as `SET`.
    pub fn sql_options(scope: &SqlScope) -> SQLOptions {
        SQLOptions::new()
            .with_allow_ddl(!scope.read_only)
            .with_allow_dml(!scope.read_only)
            .with_allow_statements(!scope.read_only)
    }

    /// Plans and runs `sql` in `ctx` — a session of `scope` (from [`Self::session_as`] or
    /// [`Self::session_in_catalog`]) — with `params` bound to its `$1`, `$2`... placeholders,
    /// within the memory and time limits. Every entry point runs its SQL through here (the
    /// HTTP API, the PostgreSQL protocol, Flight SQL), so the same rules hold on each.
    pub async fn sql_in(
        &self,
        ctx: &SessionContext,
        sql: &str,
        params: Option<ParamValues>,
        scope: &SqlScope,
    ) -> Result<QueryResult> {
        let limit = self.limit_mib();
        self.limited(async {
            let df = Self::planned(ctx, sql, params, scope, limit).await?;
            collect(df, limit).await
        })
        .await
    }

    /// Like [`Self::sql_in`], with the rows as a stream, sent while the rest are computed
    /// (Flight SQL's `DoGet`): the same checks and memory limit, and the time limit runs on
    /// until the last batch (past it the stream ends with [`Error::Timeout`]).
    pub async fn stream_in(
        &self,
        ctx: &SessionContext,
        sql: &str,
        params: Option<ParamValues>,
        scope: &SqlScope,
    ) -> Result<(SchemaRef, BatchStream)> {
        let limit = self.limit_mib();
        let timeout = self.config.timeout;
        let deadline = tokio::time::Instant::now() + timeout;
        let planned = tokio::time::timeout_at(deadline, async {
            let df = Self::planned(ctx, sql, params, scope, limit).await?;
            let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
            let stream = df
                .execute_stream()
                .await
                .map_err(|e| Error::from_datafusion(e, limit))?;
            Ok::<_, Error>((schema, stream))
        })
        .await;
        let (schema, stream) = match planned {
            Ok(planned) => planned?,
            Err(_) => return Err(Error::Timeout(timeout)),
        };
        let sleep = Box::pin(tokio::time::sleep_until(deadline));
        let rows = futures::stream::unfold(Some((stream, sleep)), move |state| async move {
            let (mut stream, mut sleep) = state?;
            tokio::select! {
                item = stream.next() => item.map(|item| {
                    (item.map_err(|e| Error::from_datafusion(e, limit)), Some((stream, sleep)))
                }),
                _ = &mut sleep => Some((Err(Error::Timeout(timeout)), None)),
            }
        });
        Ok((schema, Box::pin(rows)))
    }

    /// Whether `options` allow `plan`. EXECUTE runs a statement PREPAREd in this session,
    /// checked then (a connection's session over the PostgreSQL protocol, by the simple or
    /// the extended protocol alike; an HTTP session has none).
    fn verify(options: &SQLOptions, plan: &LogicalPlan, limit: usize) -> Result<()> {
        if matches!(
            plan,
            LogicalPlan::Statement(datafusion::logical_expr::Statement::Execute(_))
        ) {
            return Ok(());
        }
        options
            .verify_plan(plan)
            .map_err(|e| Error::from_datafusion(e, limit))
    }

    /// `sql` planned in `ctx` as `scope` may, with `params` bound.
    async fn planned(
        ctx: &SessionContext,
        sql: &str,
        params: Option<ParamValues>,
        scope: &SqlScope,
        limit: usize,
    ) -> Result<datafusion::dataframe::DataFrame> {
        let options = Self::sql_options(scope);
        let plan = ctx
            .state()
            .create_logical_plan(sql)
            .await
            .map_err(|e| Error::from_datafusion(e, limit))?;
        Self::verify(&options, &plan, limit)?;
        let mut df = ctx
            .execute_logical_plan(plan)
            .await
            .map_err(|e| Error::from_datafusion(e, limit))?;
        if let Some(params) = params {
            df = df
                .with_param_values(params)
                .map_err(|e| Error::from_datafusion(e, limit))?;
        }
        Ok(df)
    }

    /// The schema of `sql`'s result and the types of its `$1`, `$2`... parameters (in
    /// order; None where the plan does not fix one), planned in `ctx` as `scope` allows but
    /// not run (Flight SQL's flight infos and prepared statements).
    pub async fn describe_in(
        &self,
        ctx: &SessionContext,
        sql: &str,
        scope: &SqlScope,
    ) -> Result<(SchemaRef, Vec<(String, Option<DataType>)>)> {
        let limit = self.limit_mib();
        let df = ctx
            .sql_with_options(sql, Self::sql_options(scope))
            .await
            .map_err(|e| Error::from_datafusion(e, limit))?;
        let mut params: Vec<(String, Option<DataType>)> = df
            .logical_plan()
            .get_parameter_types()
            .map_err(|e| Error::from_datafusion(e, limit))?
            .into_iter()
            .collect();
        params.sort_by_key(|(name, _)| {
            name.trim_start_matches('$')
                .parse::<usize>()
                .unwrap_or(usize::MAX)
        });
        Ok((Arc::new(df.schema().as_arrow().clone()), params))
    }

    /// Runs `plan`, planned in `ctx` (a session of `scope`: a prepared statement with its
    /// parameters bound), within the limits, after checking it against what `scope` may run.
    pub async fn plan_in(
        &self,
        ctx: &SessionContext,
        plan: LogicalPlan,
        scope: &SqlScope,
    ) -> Result<QueryResult> {
        let limit = self.limit_mib();
        Self::verify(&Self::sql_options(scope), &plan, limit)?;
        self.limited(async {
            let df = ctx
                .execute_logical_plan(plan)
                .await
                .map_err(|e| Error::from_datafusion(e, limit))?;
            collect(df, limit).await
        })
        .await
    }

    /// `run` cut at the time limit.
    async fn limited(
        &self,
        run: impl std::future::Future<Output = Result<QueryResult>>,
    ) -> Result<QueryResult> {
        match tokio::time::timeout(self.config.timeout, run).await {
            Ok(result) => result,
            Err(_) => Err(Error::Timeout(self.config.timeout)),
        }
    }
}

/// Rows as they are computed (see [`QueryEngine::stream_in`]).
pub type BatchStream = std::pin::Pin<Box<dyn futures::Stream<Item = Result<RecordBatch>> + Send>>;

/// The catalog of HTTP sessions.
const DEFAULT_CATALOG: &str = "datafusion";

async fn collect(df: datafusion::dataframe::DataFrame, limit: usize) -> Result<QueryResult> {
    let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
    let batches = df
        .collect()
        .await
        .map_err(|e| Error::from_datafusion(e, limit))?;
    Ok(QueryResult { schema, batches })
}
