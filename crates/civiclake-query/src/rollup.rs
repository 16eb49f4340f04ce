//! Rollups used automatically: an aggregate query over a source table is answered from a
//! rollup table (per series and time bucket: sum, count, min, max, first, last of each field)
//! for the complete buckets the query's time range covers, plus the raw rows for the rest.
//!
//! [`RollupRule`] is a DataFusion optimizer rule built per session (so it only reads rollup
//! tables the session's scope sees, unmasked). It matches an `Aggregate` over `Projection`,
//! `Filter` and `SubqueryAlias` nodes over a scan of a lake table, and leaves the plan alone
//! unless every part of the query is one it can answer exactly:
//!
//! ```text
//! Projection (the original names and types)
//!   Aggregate: the original groups over partial columns; sum of sums, sum of counts, ...
//!     Union
//!       SubqueryAlias: rollup_<name>  (whole buckets in [lo aligned up, min(hi, done) aligned down))
//!         Projection: series, time, f_sum, f_count, ... TableScan: <target>
//!       Projection: series, time, f, CASE WHEN f IS NULL THEN 0 ELSE 1 END, ...
//!         Filter: original filters AND time >= <rollup end>       TableScan: <source>
//!       Projection ... Filter: original filters AND time < <rollup start>   (if any)
//! ```

use crate::engine::{QueryEngine, SqlScope};
use crate::error::{Error, Result};
use crate::provider::LakeTable;
use civiclake_core::{TIME_COLUMN, time_type, validate_column_name, validate_table_name};
use civiclake_lake::Lake;
use datafusion::arrow::datatypes::{DataType, Schema, TimeUnit};
use datafusion::catalog::TableProvider;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, ScalarValue, TableReference};
use datafusion::datasource::{provider_as_source, source_as_provider};
use datafusion::error::DataFusionError;
use datafusion::functions_aggregate::expr_fn::{max, min, sum};
use datafusion::logical_expr::expr::{AggregateFunction, ScalarFunction};
use datafusion::logical_expr::utils::{conjunction, split_conjunction};
use datafusion::logical_expr::{
    Aggregate, Between, BinaryExpr, Expr, ExprSchemable, LogicalPlan, LogicalPlanBuilder, Operator,
    Projection, TableScan, Union, cast, lit, when,
};
use datafusion::optimizer::{ApplyOrder, OptimizerConfig, OptimizerRule};
use parking_lot::RwLock;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

/// A rollup of a source table that a pipeline maintains: per series and per time bucket, for
/// each field `f`, the columns `f_sum`, `f_count`, `f_min`, `f_max`, `f_first`, `f_last`, and
/// `row_count`, with `time` = `window_start` (buckets aligned to the Unix epoch, UTC).
#[derive(Clone)]
pub struct RollupDef {
    /// The pipeline's name.
    pub name: String,
    /// Source lake table, e.g. "air".
    pub source: String,
    /// Rollup lake table, e.g. "air_1h".
    pub target: String,
    /// Bucket width in µs (buckets aligned to the Unix epoch, UTC).
    pub bucket_micros: i64,
    /// Source columns the rollup groups by (tags), same names in target.
    pub series: Vec<String>,
    /// Numeric source columns rolled up.
    pub fields: Vec<String>,
    /// µs: every bucket with window_end <= this is complete and correct in `target`; rows of
    /// the source with time >= this must be read raw. None: nothing rolled up yet (no rewrite).
    pub rolled_up_until: Arc<dyn Fn() -> Option<i64> + Send + Sync>,
}

impl fmt::Debug for RollupDef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RollupDef")
            .field("name", &self.name)
            .field("source", &self.source)
            .field("target", &self.target)
            .field("bucket_micros", &self.bucket_micros)
            .field("series", &self.series)
            .field("fields", &self.fields)
            .finish_non_exhaustive()
    }
}

/// Columns of a rollup table that are not series columns or per-field columns.
const RESERVED: [&str; 4] = [TIME_COLUMN, "window_start", "window_end", "row_count"];
/// Suffixes of the per-field columns of a rollup table.
const SUFFIXES: [&str; 6] = ["sum", "count", "min", "max", "first", "last"];

impl RollupDef {
    fn validate(&self) -> Result<()> {
        let invalid = |m: String| Err(Error::Invalid(format!("rollup {:?}: {m}", self.name)));
        for (what, name) in [
            ("name", &self.name),
            ("source", &self.source),
            ("target", &self.target),
        ] {
            if let Err(e) = validate_table_name(name) {
                return invalid(format!("{what}: {e}"));
            }
        }
        if self.source == self.target {
            return invalid("source and target must be different tables".into());
        }
        if self.bucket_micros <= 0 {
            return invalid(format!(
                "bucket_micros must be positive, not {}",
                self.bucket_micros
            ));
        }
        // Every column of the target must have one meaning.
        let mut target_columns: BTreeSet<String> = RESERVED.iter().map(|c| c.to_string()).collect();
        for s in &self.series {
            if let Err(e) = validate_column_name(s) {
                return invalid(format!("series: {e}"));
            }
            if !target_columns.insert(s.clone()) {
                return invalid(format!("series column {s:?} is reserved or repeated"));
            }
        }
        for f in &self.fields {
            if let Err(e) = validate_column_name(f) {
                return invalid(format!("fields: {e}"));
            }
            if f == TIME_COLUMN || self.series.contains(f) {
                return invalid(format!("field {f:?} is the time or a series column"));
            }
            for suffix in SUFFIXES {
                let column = format!("{f}_{suffix}");
                if !target_columns.insert(column.clone()) {
                    return invalid(format!(
                        "field {f:?}: the target column {column:?} would have two meanings"
                    ));
                }
            }
        }
        Ok(())
    }
}

/// The registered rollups, by name.
pub(crate) type Rollups = Arc<RwLock<BTreeMap<String, RollupDef>>>;

impl QueryEngine {
    /// Registers a rollup: from now on an aggregate query over `def.source` that it can
    /// answer exactly is planned over `def.target` plus the raw rows not rolled up yet.
    /// Replaces a rollup of the same name; refuses invalid names, a non-positive bucket, and
    /// series or fields whose target columns would clash.
    pub fn register_rollup(&self, def: RollupDef) -> Result<()> {
        def.validate()?;
        self.rollups.write().insert(def.name.clone(), def);
        Ok(())
    }

    /// Removes the rollup `name`; false if there was none.
    pub fn remove_rollup(&self, name: &str) -> bool {
        self.rollups.write().remove(name).is_some()
    }

    /// The registered rollups, by name.
    pub fn rollups(&self) -> Vec<RollupDef> {
        self.rollups.read().values().cloned().collect()
    }

    /// The rollup rule for a session of `scope`, if rollups are on and any is registered.
    pub(crate) fn rollup_rule(
        &self,
        scope: &SqlScope,
        enabled: bool,
    ) -> Option<Arc<dyn OptimizerRule + Send + Sync>> {
        if !enabled || self.rollups.read().is_empty() {
            return None;
        }
        Some(Arc::new(RollupRule {
            lake: self.lake().clone(),
            scope: scope.clone(),
            rollups: self.rollups.clone(),
        }))
    }
}

/// The optimizer rule that answers aggregates from rollups (see the module documentation).
pub(crate) struct RollupRule {
    lake: Arc<Lake>,
    scope: SqlScope,
    rollups: Rollups,
}

impl fmt::Debug for RollupRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RollupRule")
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

impl OptimizerRule for RollupRule {
    fn name(&self) -> &str {
        "civiclake_rollups"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::BottomUp)
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>, DataFusionError> {
        let LogicalPlan::Aggregate(aggregate) = &plan else {
            return Ok(Transformed::no(plan));
        };
        match self.try_rewrite(aggregate) {
            Some(new) => Ok(Transformed::yes(new)),
            None => Ok(Transformed::no(plan)),
        }
    }
}

impl RollupRule {
    fn try_rewrite(&self, aggregate: &Aggregate) -> Option<LogicalPlan> {
        let query = Query::of(aggregate)?;
        let mut candidates: Vec<RollupDef> = self
            .rollups
            .read()
            .values()
            .filter(|d| d.source == query.table)
            .cloned()
            .collect();
        if candidates.is_empty() || query.masked(&self.scope) {
            return None;
        }
        // The coarsest rollup that can answer reads the fewest rows.
        candidates.sort_by_key(|d| std::cmp::Reverse(d.bucket_micros));
        candidates.into_iter().find_map(|def| {
            let plan = self.rewrite_with(aggregate, &query, &def);
            if plan.is_some() {
                tracing::debug!(rollup = %def.name, table = %query.table, "aggregate answered from a rollup");
            }
            plan
        })
    }

    /// The target's table and schema, if the session sees it unmasked.
    fn target(&self, def: &RollupDef) -> Option<(Arc<LakeTable>, Arc<Schema>)> {
        if !self.scope.sees(&def.target) {
            return None;
        }
        let table = Arc::new(LakeTable::open(&self.lake, &def.target)?);
        let schema = table.schema();
        if schema
            .fields()
            .iter()
            .any(|f| self.scope.masks(&def.target, f.name()))
        {
            return None;
        }
        Some((table, schema))
    }

    fn rewrite_with(
        &self,
        aggregate: &Aggregate,
        query: &Query<'_>,
        def: &RollupDef,
    ) -> Option<LogicalPlan> {
        let bucket = def.bucket_micros;
        let source_time = query.source_schema.field_with_name(TIME_COLUMN).ok()?;
        if source_time.data_type() != &time_type() {
            return None;
        }
        let time_tz = match source_time.data_type() {
            DataType::Timestamp(_, tz) => tz.clone(),
            _ => return None,
        };

        // Groups: series columns and time buckets the rollup's buckets nest in.
        let mut series_used: BTreeSet<String> = BTreeSet::new();
        for g in &query.groups {
            if let Some(columns) = series_only(g, def) {
                series_used.extend(columns);
            } else if !bucket_is_compatible(g, bucket) {
                return None;
            }
        }

        // Aggregates.
        let mut partials = Partials::default();
        let mut finals = Vec::with_capacity(query.aggregates.len());
        for a in &query.aggregates {
            finals.push(partials.aggregate(a, def, &query.source_schema)?);
        }

        // Filters: series-only conjuncts and literal bounds on time.
        let mut range = TimeRange::default();
        let mut series_filters = Vec::new();
        for c in &query.filters {
            if let Some(columns) = series_only(c, def) {
                series_used.extend(columns);
                series_filters.push(c.clone());
            } else if !range.narrow(c) {
                return None;
            }
        }

        // The rollup part takes whole buckets that are done and inside the range.
        let done = floor_to((def.rolled_up_until)()?.into(), bucket.into());
        let start = range.lo.map(|lo| ceil_to(lo, bucket.into()));
        let end = match range.hi {
            Some(hi) => floor_to(hi, bucket.into()).min(done),
            None => done,
        };
        if start.is_some_and(|s| s >= end) {
            return None;
        }
        let end = i64::try_from(end).ok()?;
        let start = match start {
            Some(s) => Some(i64::try_from(s).ok()?),
            None => None,
        };

        // The target must have every column the rewrite reads, with the expected types.
        let (target, target_schema) = self.target(def)?;
        let target_time = target_schema.field_with_name(TIME_COLUMN).ok()?;
        if target_time.data_type() != source_time.data_type() {
            return None;
        }
        for s in &series_used {
            let want = query.source_schema.field_with_name(s).ok()?.data_type();
            if target_schema.field_with_name(s).ok()?.data_type() != want {
                return None;
            }
        }
        for (column, data_type) in partials.target_columns() {
            if target_schema.field_with_name(&column).ok()?.data_type() != &data_type {
                return None;
            }
        }

        let ts = |v: i64| lit(ScalarValue::TimestampMicrosecond(Some(v), time_tz.clone()));
        let time = || Expr::Column(Column::new_unqualified(TIME_COLUMN));
        let keep: Vec<String> = series_used.iter().cloned().collect();

        // The rollup part.
        let mut rollup_filter = series_filters.clone();
        if let Some(s) = start {
            rollup_filter.push(time().gt_eq(ts(s)));
        }
        rollup_filter.push(time().lt(ts(end)));
        let rollup = LogicalPlanBuilder::scan(
            TableReference::bare(def.target.clone()),
            provider_as_source(target),
            None,
        )
        .ok()?
        .filter(conjunction(rollup_filter)?)
        .ok()?
        .project(partials.projection(&keep, true)?)
        .ok()?
        .alias(format!("rollup_{}", def.name))
        .ok()?
        .build()
        .ok()?;

        // The raw parts: the original filters, outside the rollup's range.
        let raw = |bound: Expr| -> Option<LogicalPlan> {
            let mut filters = query.filters.clone();
            filters.push(bound);
            LogicalPlanBuilder::scan(
                query.scan.table_name.clone(),
                query.scan.source.clone(),
                None,
            )
            .ok()?
            .filter(conjunction(filters)?)
            .ok()?
            .project(partials.projection(&keep, false)?)
            .ok()?
            .build()
            .ok()
        };
        let mut inputs = vec![Arc::new(rollup)];
        if range.hi.is_none_or(|hi| hi > i128::from(end)) {
            inputs.push(Arc::new(raw(time().gt_eq(ts(end)))?));
        }
        if let (Some(lo), Some(s)) = (range.lo, start)
            && lo < i128::from(s)
        {
            inputs.push(Arc::new(raw(time().lt(ts(s)))?));
        }
        let union = if inputs.len() == 1 {
            inputs.pop()?
        } else {
            Arc::new(LogicalPlan::Union(Union::try_new(inputs).ok()?))
        };

        // Partial aggregates combined, then the original names and types.
        let top = LogicalPlanBuilder::from(union)
            .aggregate(query.groups.clone(), partials.top_aggregates())
            .ok()?
            .build()
            .ok()?;
        let top_schema = top.schema().clone();
        let groups = query.groups.len();
        let column = |i: usize| Expr::Column(Column::from(top_schema.qualified_field(i)));
        let mut exprs: Vec<Expr> = (0..groups).map(column).collect();
        for f in &finals {
            exprs.push(f.expr(|i| column(groups + i))?);
        }
        let original = &aggregate.schema;
        if exprs.len() != original.fields().len() {
            return None;
        }
        let mut aliased = Vec::with_capacity(exprs.len());
        for (i, e) in exprs.into_iter().enumerate() {
            let (qualifier, field) = original.qualified_field(i);
            if e.get_type(&top_schema).ok()? != *field.data_type() {
                return None;
            }
            aliased.push(e.alias_qualified(qualifier.cloned(), field.name()));
        }
        let plan = LogicalPlan::Projection(Projection::try_new(aliased, Arc::new(top)).ok()?);
        plan.schema()
            .logically_equivalent_names_and_types(original)
            .then_some(plan)
    }
}

/// An aggregate over a lake table, with its expressions resolved to the table's columns.
struct Query<'a> {
    /// The scanned lake table.
    table: String,
    scan: &'a TableScan,
    source_schema: Arc<Schema>,
    /// Group expressions over the table's columns (unqualified).
    groups: Vec<Expr>,
    /// Aggregate expressions over the table's columns (unqualified, unaliased).
    aggregates: Vec<Expr>,
    /// Conjuncts of the filters between the aggregate and the scan (unqualified).
    filters: Vec<Expr>,
}

impl<'a> Query<'a> {
    fn of(aggregate: &'a Aggregate) -> Option<Self> {
        // The nodes between the aggregate and the scan.
        let mut nodes: Vec<&LogicalPlan> = Vec::new();
        let mut current = aggregate.input.as_ref();
        let scan = loop {
            match current {
                LogicalPlan::Projection(Projection { input, .. })
                | LogicalPlan::SubqueryAlias(datafusion::logical_expr::SubqueryAlias {
                    input,
                    ..
                })
                | LogicalPlan::Filter(datafusion::logical_expr::Filter { input, .. }) => {
                    nodes.push(current);
                    current = input.as_ref();
                }
                LogicalPlan::TableScan(scan) => break scan,
                _ => return None,
            }
        };
        if scan.fetch.is_some() {
            return None;
        }
        let provider = source_as_provider(&scan.source).ok()?;
        let lake_table = provider.downcast_ref::<LakeTable>()?;
        let source_schema = lake_table.schema();
        let table = scan.table_name.table().to_string();
        let resolve = |e: &Expr, below: &[&LogicalPlan]| -> Option<Expr> {
            resolve(e, below, scan, &source_schema)
        };

        if aggregate
            .group_expr
            .iter()
            .any(|g| matches!(g, Expr::GroupingSet(_)))
        {
            return None;
        }
        let mut groups = Vec::with_capacity(aggregate.group_expr.len());
        for g in &aggregate.group_expr {
            groups.push(resolve(&g.clone().unalias(), &nodes)?);
        }
        let mut aggregates = Vec::with_capacity(aggregate.aggr_expr.len());
        for a in &aggregate.aggr_expr {
            aggregates.push(resolve(&a.clone().unalias(), &nodes)?);
        }
        let mut filters: Vec<Expr> = Vec::new();
        let mut add = |e: Expr| {
            for c in split_conjunction(&e) {
                if !filters.contains(c) {
                    filters.push(c.clone());
                }
            }
        };
        for (i, node) in nodes.iter().enumerate() {
            if let LogicalPlan::Filter(f) = node {
                add(resolve(&f.predicate, &nodes[i + 1..])?);
            }
        }
        for f in &scan.filters {
            add(resolve(f, &[])?);
        }
        Some(Self {
            table,
            scan,
            source_schema,
            groups,
            aggregates,
            filters,
        })
    }

    /// Whether the session sees a masked column of the table (then it is a view: no rewrite).
    fn masked(&self, scope: &SqlScope) -> bool {
        self.source_schema
            .fields()
            .iter()
            .any(|f| scope.masks(&self.table, f.name()))
    }
}

/// `e`, written over the output of `below[0]`, rewritten over the scan's table columns
/// (unqualified): projections are substituted, aliases of subqueries undone.
fn resolve(e: &Expr, below: &[&LogicalPlan], scan: &TableScan, source: &Schema) -> Option<Expr> {
    let mut e = e.clone();
    for node in below {
        let step = |c: Column| -> Result<Expr, DataFusionError> {
            match node {
                LogicalPlan::Projection(p) => {
                    let i = p.schema.index_of_column(&c)?;
                    Ok(p.expr[i].clone().unalias_nested().data)
                }
                LogicalPlan::SubqueryAlias(s) => {
                    let i = s.schema.index_of_column(&c)?;
                    Ok(Expr::Column(Column::from(
                        s.input.schema().qualified_field(i),
                    )))
                }
                _ => Ok(Expr::Column(c)),
            }
        };
        e = e
            .transform_up(|x| match x {
                Expr::Column(c) => step(c).map(Transformed::yes),
                other => Ok(Transformed::no(other)),
            })
            .ok()?
            .data;
    }
    e.transform_up(|x| match x {
        Expr::Column(c) => {
            let ours = c.relation.as_ref().is_none_or(|r| r == &scan.table_name);
            if ours && source.field_with_name(&c.name).is_ok() {
                Ok(Transformed::yes(Expr::Column(Column::new_unqualified(
                    c.name,
                ))))
            } else {
                Err(DataFusionError::Plan(format!("unknown column {c}")))
            }
        }
        other => Ok(Transformed::no(other)),
    })
    .ok()
    .map(|t| t.data)
}

/// Whether `e` reads nothing but columns (no subquery, aggregate, window, volatile function).
fn is_plain(e: &Expr) -> bool {
    let mut plain = !e.is_volatile();
    e.apply(|x| {
        if matches!(
            x,
            Expr::Exists(_)
                | Expr::InSubquery(_)
                | Expr::ScalarSubquery(_)
                | Expr::SetComparison(_)
                | Expr::OuterReferenceColumn(..)
                | Expr::AggregateFunction(_)
                | Expr::WindowFunction(_)
                | Expr::Placeholder(_)
                | Expr::GroupingSet(_)
                | Expr::Unnest(_)
        ) {
            plain = false;
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    })
    .ok();
    plain
}

/// The series columns `e` reads if it reads only series columns of `def` (and is plain).
fn series_only(e: &Expr, def: &RollupDef) -> Option<Vec<String>> {
    if !is_plain(e) {
        return None;
    }
    let columns: Vec<String> = e.column_refs().iter().map(|c| c.name.clone()).collect();
    columns
        .iter()
        .all(|c| def.series.contains(c))
        .then_some(columns)
}

/// Whether `e` is `time` itself or `time` cast exactly to a finer timestamp; its time zone.
fn time_argument(e: &Expr) -> Option<Option<Arc<str>>> {
    match e {
        Expr::Column(c) if c.name == TIME_COLUMN => match time_type() {
            DataType::Timestamp(_, tz) => Some(tz),
            _ => None,
        },
        Expr::Cast(c) => match (&*c.expr, c.field.data_type()) {
            (
                Expr::Column(col),
                DataType::Timestamp(TimeUnit::Microsecond | TimeUnit::Nanosecond, tz),
            ) if col.name == TIME_COLUMN => Some(tz.clone()),
            _ => None,
        },
        _ => None,
    }
}

/// A timestamp literal in nanoseconds.
fn timestamp_nanos(e: &Expr) -> Option<i128> {
    let Expr::Literal(v, _) = e else {
        return None;
    };
    match v {
        ScalarValue::TimestampNanosecond(Some(v), _) => Some(i128::from(*v)),
        ScalarValue::TimestampMicrosecond(Some(v), _) => Some(i128::from(*v) * 1_000),
        ScalarValue::TimestampMillisecond(Some(v), _) => Some(i128::from(*v) * 1_000_000),
        ScalarValue::TimestampSecond(Some(v), _) => Some(i128::from(*v) * 1_000_000_000),
        _ => None,
    }
}

/// An interval literal of fixed length, in nanoseconds.
fn interval_nanos(e: &Expr) -> Option<i128> {
    let Expr::Literal(v, _) = e else {
        return None;
    };
    const DAY: i128 = 86_400_000_000_000;
    match v {
        ScalarValue::IntervalMonthDayNano(Some(v)) if v.months == 0 => {
            Some(i128::from(v.days) * DAY + i128::from(v.nanoseconds))
        }
        ScalarValue::IntervalDayTime(Some(v)) => {
            Some(i128::from(v.days) * DAY + i128::from(v.milliseconds) * 1_000_000)
        }
        _ => None,
    }
}

fn is_utc(tz: &Option<Arc<str>>) -> bool {
    tz.as_deref()
        .is_none_or(|tz| matches!(tz, "UTC" | "+00:00" | "+00" | "Z" | "Etc/UTC" | "+0000"))
}

/// Whether the time bucket expression `e` is constant on every bucket of width `bucket` µs
/// aligned to the epoch: `date_bin(stride, time[, origin])` with a stride that is a multiple
/// of the bucket and an origin on its grid, or `date_trunc(unit, time)` in UTC with a unit
/// whose boundaries are on the grid.
fn bucket_is_compatible(e: &Expr, bucket: i64) -> bool {
    let Expr::ScalarFunction(ScalarFunction { func, args }) = e else {
        return false;
    };
    let bucket = i128::from(bucket);
    match (func.name(), args.as_slice()) {
        ("date_bin", [stride, t, rest @ ..]) if rest.len() <= 1 => {
            let (Some(stride), Some(_)) = (interval_nanos(stride), time_argument(t)) else {
                return false;
            };
            let origin = match rest {
                [origin] => match timestamp_nanos(origin) {
                    Some(o) => o,
                    None => return false,
                },
                _ => 0,
            };
            stride > 0
                && stride % 1_000 == 0
                && origin % 1_000 == 0
                && (stride / 1_000) % bucket == 0
                && (origin / 1_000).rem_euclid(bucket) == 0
        }
        ("date_trunc", [unit, t]) => {
            let Some(tz) = time_argument(t) else {
                return false;
            };
            let unit = match unit {
                Expr::Literal(
                    ScalarValue::Utf8(Some(u))
                    | ScalarValue::LargeUtf8(Some(u))
                    | ScalarValue::Utf8View(Some(u)),
                    _,
                ) => u.to_ascii_lowercase(),
                _ => return false,
            };
            // Boundaries of each unit, in µs: every week, month, quarter and year starts
            // at a midnight (UTC).
            let grid: i128 = match unit.as_str() {
                "second" => 1_000_000,
                "minute" => 60_000_000,
                "hour" => 3_600_000_000,
                "day" | "week" | "month" | "quarter" | "year" => 86_400_000_000,
                _ => return false,
            };
            is_utc(&tz) && grid % bucket == 0
        }
        _ => false,
    }
}

/// `v` rounded down / up to a multiple of `m` (> 0).
fn floor_to(v: i128, m: i128) -> i128 {
    v.div_euclid(m) * m
}

fn ceil_to(v: i128, m: i128) -> i128 {
    -floor_to(-v, m)
}

/// The half-open range [lo, hi) of µs that the time conjuncts admit (None: unbounded).
#[derive(Debug, Default, Clone, Copy)]
struct TimeRange {
    lo: Option<i128>,
    hi: Option<i128>,
}

impl TimeRange {
    /// Narrows the range with `e` if it is a bound on time against a literal; false if it
    /// is anything else.
    fn narrow(&mut self, e: &Expr) -> bool {
        match e {
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
                let (op, v) = if time_argument(left).is_some() {
                    match timestamp_nanos(right) {
                        Some(v) => (*op, v),
                        None => return false,
                    }
                } else if time_argument(right).is_some() {
                    match (timestamp_nanos(left), op.swap()) {
                        (Some(v), Some(op)) => (op, v),
                        _ => return false,
                    }
                } else {
                    return false;
                };
                // Bounds on time in ns (time_ns = time_us * 1000), as [lo, hi).
                match op {
                    Operator::Gt => self.above(v + 1),
                    Operator::GtEq => self.above(v),
                    Operator::Lt => self.below(v),
                    Operator::LtEq => self.below(v + 1),
                    Operator::Eq => {
                        self.above(v);
                        self.below(v + 1);
                    }
                    _ => return false,
                }
                true
            }
            Expr::Between(Between {
                expr,
                negated: false,
                low,
                high,
            }) if time_argument(expr).is_some() => {
                match (timestamp_nanos(low), timestamp_nanos(high)) {
                    (Some(lo), Some(hi)) => {
                        self.above(lo);
                        self.below(hi + 1);
                        true
                    }
                    _ => false,
                }
            }
            _ => false,
        }
    }

    /// time_ns >= v, i.e. time_us >= ceil(v / 1000).
    fn above(&mut self, v: i128) {
        let lo = ceil_to(v, 1_000) / 1_000;
        self.lo = Some(self.lo.map_or(lo, |l| l.max(lo)));
    }

    /// time_ns < v, i.e. time_us < ceil(v / 1000).
    fn below(&mut self, v: i128) {
        let hi = ceil_to(v, 1_000) / 1_000;
        self.hi = Some(self.hi.map_or(hi, |h| h.min(hi)));
    }
}

/// What a partial column holds.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Partial {
    /// Rows (`row_count`; 1 for a raw row).
    Rows,
    /// Non-NULL values of a field (`f_count`; 0 or 1 for a raw row).
    Count(String),
    /// Sum of a field (`f_sum`; the value as Float64 for a raw row).
    Sum(String),
    /// Minimum of a field (`f_min`; the value).
    Min(String),
    /// Maximum of a field (`f_max`; the value).
    Max(String),
}

/// How a partial column is combined in the top aggregate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Combine {
    Sum,
    Min,
    Max,
}

/// How one original aggregate is computed from the top aggregates (their positions).
#[derive(Debug, Clone, Copy)]
enum Final {
    /// count: the summed counts, 0 without rows.
    Count(usize),
    /// sum: the summed sums, NULL without non-NULL values.
    Sum { sum: usize, count: usize },
    /// avg: summed sums / summed counts, NULL without non-NULL values.
    Avg { sum: usize, count: usize },
    /// min or max: the combined value.
    Value(usize),
}

impl Final {
    fn expr(&self, column: impl Fn(usize) -> Expr) -> Option<Expr> {
        match *self {
            Final::Count(c) => when(column(c).is_null(), lit(0i64))
                .otherwise(column(c))
                .ok(),
            Final::Sum { sum, count } => when(column(count).gt(lit(0i64)), column(sum)).end().ok(),
            Final::Avg { sum, count } => when(
                column(count).gt(lit(0i64)),
                column(sum) / cast(column(count), DataType::Float64),
            )
            .end()
            .ok(),
            Final::Value(i) => Some(column(i)),
        }
    }
}

/// The partial columns of a rewrite and the top aggregates over them.
#[derive(Debug, Default)]
struct Partials {
    columns: Vec<Partial>,
    top: Vec<(Combine, usize)>,
}

impl Partials {
    fn column(&mut self, p: Partial) -> usize {
        match self.columns.iter().position(|c| c == &p) {
            Some(i) => i,
            None => {
                self.columns.push(p);
                self.columns.len() - 1
            }
        }
    }

    fn top(&mut self, combine: Combine, p: Partial) -> usize {
        let column = self.column(p);
        match self.top.iter().position(|t| t == &(combine, column)) {
            Some(i) => i,
            None => {
                self.top.push((combine, column));
                self.top.len() - 1
            }
        }
    }

    /// Plans the aggregate `e` (resolved) over partial columns; None if it cannot be.
    fn aggregate(&mut self, e: &Expr, def: &RollupDef, source: &Schema) -> Option<Final> {
        let Expr::AggregateFunction(AggregateFunction { func, params }) = e else {
            return None;
        };
        if params.distinct
            || params.filter.is_some()
            || !params.order_by.is_empty()
            || params.null_treatment.is_some()
        {
            return None;
        }
        let [arg] = params.args.as_slice() else {
            return None;
        };
        let name = func.name();
        if name == "count"
            && let Expr::Literal(v, _) = arg
        {
            return (!v.is_null()).then(|| Final::Count(self.top(Combine::Sum, Partial::Rows)));
        }
        // avg of an integer field reads it cast to Float64.
        let arg = match arg {
            Expr::Cast(c) if name == "avg" && c.field.data_type() == &DataType::Float64 => &*c.expr,
            other => other,
        };
        let Expr::Column(c) = arg else {
            return None;
        };
        if !def.fields.contains(&c.name) {
            return None;
        }
        let f = c.name.clone();
        let data_type = source.field_with_name(&f).ok()?.data_type().clone();
        let float = data_type == DataType::Float64;
        Some(match name {
            "count" => Final::Count(self.top(Combine::Sum, Partial::Count(f))),
            "sum" if float => Final::Sum {
                sum: self.top(Combine::Sum, Partial::Sum(f.clone())),
                count: self.top(Combine::Sum, Partial::Count(f)),
            },
            "avg" if float || data_type == DataType::Int64 => Final::Avg {
                sum: self.top(Combine::Sum, Partial::Sum(f.clone())),
                count: self.top(Combine::Sum, Partial::Count(f)),
            },
            "min" if float => Final::Value(self.top(Combine::Min, Partial::Min(f))),
            "max" if float => Final::Value(self.top(Combine::Max, Partial::Max(f))),
            _ => return None,
        })
    }

    fn name(i: usize) -> String {
        format!("__rollup_{i}")
    }

    /// The target columns the partials read, with their types.
    fn target_columns(&self) -> Vec<(String, DataType)> {
        self.columns
            .iter()
            .map(|p| match p {
                Partial::Rows => ("row_count".to_string(), DataType::Int64),
                Partial::Count(f) => (format!("{f}_count"), DataType::Int64),
                Partial::Sum(f) => (format!("{f}_sum"), DataType::Float64),
                Partial::Min(f) => (format!("{f}_min"), DataType::Float64),
                Partial::Max(f) => (format!("{f}_max"), DataType::Float64),
            })
            .collect()
    }

    /// The projection of one part: the series columns, time, then the partial columns.
    fn projection(&self, series: &[String], rollup: bool) -> Option<Vec<Expr>> {
        let column = |name: &str| Expr::Column(Column::new_unqualified(name));
        let mut exprs: Vec<Expr> = series.iter().map(|s| column(s)).collect();
        exprs.push(column(TIME_COLUMN));
        let targets = self.target_columns();
        for (i, p) in self.columns.iter().enumerate() {
            let e = if rollup {
                column(&targets[i].0)
            } else {
                match p {
                    Partial::Rows => lit(1i64),
                    Partial::Count(f) => when(column(f).is_null(), lit(0i64))
                        .otherwise(lit(1i64))
                        .ok()?,
                    Partial::Sum(f) => cast(column(f), DataType::Float64),
                    Partial::Min(f) | Partial::Max(f) => column(f),
                }
            };
            exprs.push(e.alias(Self::name(i)));
        }
        Some(exprs)
    }

    /// The top aggregates, in order.
    fn top_aggregates(&self) -> Vec<Expr> {
        self.top
            .iter()
            .map(|(combine, i)| {
                let c = Expr::Column(Column::new_unqualified(Self::name(*i)));
                match combine {
                    Combine::Sum => sum(c),
                    Combine::Min => min(c),
                    Combine::Max => max(c),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;
