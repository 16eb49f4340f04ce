//! Windows kept in memory as rows arrive, so emitting a window does not read its rows back.
//!
//! A pipeline whose query is only grouping columns and `count`, `sum`, `avg`, `min`, `max`
//! of columns (aliased, no `WHERE`, `HAVING`, `DISTINCT` or `FILTER`) keeps, per open window
//! and group, the partial aggregates of the rows written since it started: each acknowledged
//! write adds its rows (the write observer's `after_write`). When the watermark passes a
//! window, its rows are built from memory instead of a query over the source.
//!
//! Memory only holds what it has seen, so a window is served from it only when no row of the
//! window can have been written unseen:
//! - at start the pipeline asks the source for its newest event time; windows starting at or
//!   before it (their rows may predate the observer) are computed by SQL;
//! - a delete or a replace-by-key on the source (retention, erasure) drops what is held, and
//!   windows up to the newest event time seen go back to SQL;
//! - once a window's rows are taken for emission, a retry of that emission uses SQL;
//! - corrections (late rows of emitted windows) are always computed by SQL.
//!
//! Anything memory cannot reproduce exactly as SQL would (a column of another type than
//! 64-bit integers or floats, more than [`MAX_CELLS`] accumulators) switches the pipeline to
//! SQL for good, with the reason in its status.

use crate::error::Result;
use crate::spec::Timing;
use arrow::array::{
    Array, ArrayRef, AsArray, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Int32Type, Schema};
use datafusion::sql::sqlparser::ast::{
    Expr, Function, FunctionArg, FunctionArgExpr, FunctionArguments, Ident, ObjectNamePart,
    SelectItem,
};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// The id of a NULL grouping value.
const NULL_ID: u32 = u32::MAX;
/// Dictionaries remembered per grouping column (see [`SeenDictionary`]).
const RECENT_DICTIONARIES: usize = 32;
/// At most this many accumulators (groups × aggregates × open windows); beyond it, SQL.
pub(crate) const MAX_CELLS: usize = 20_000_000;

/// An aggregate memory can keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AggKind {
    /// `count(*)`
    Rows,
    Count,
    Sum,
    Avg,
    Min,
    Max,
}

#[derive(Debug, Clone)]
struct Agg {
    kind: AggKind,
    /// The input column (none for `count(*)`).
    column: Option<String>,
}

#[derive(Debug, Clone, Copy)]
enum Output {
    /// The n-th grouping column.
    Group(usize),
    /// The n-th aggregate.
    Agg(usize),
}

/// What a query computes, when memory can compute it.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    groups: Vec<String>,
    aggs: Vec<Agg>,
    outputs: Vec<(String, Output)>,
}

/// A column name as DataFusion resolves it (unquoted identifiers are lower-cased).
fn normalized(i: &Ident) -> String {
    if i.quote_style.is_some() {
        i.value.clone()
    } else {
        i.value.to_lowercase()
    }
}

fn column_of(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Identifier(i) => Some(normalized(i)),
        Expr::CompoundIdentifier(parts) if parts.len() == 2 => parts.last().map(normalized),
        Expr::Nested(e) => column_of(e),
        _ => None,
    }
}

fn aggregate_of(f: &Function) -> Option<Agg> {
    let [ObjectNamePart::Identifier(name)] = f.name.0.as_slice() else {
        return None;
    };
    if f.uses_odbc_syntax
        || !matches!(f.parameters, FunctionArguments::None)
        || f.filter.is_some()
        || f.null_treatment.is_some()
        || f.over.is_some()
        || !f.within_group.is_empty()
    {
        return None;
    }
    let FunctionArguments::List(list) = &f.args else {
        return None;
    };
    if list.duplicate_treatment.is_some() || !list.clauses.is_empty() {
        return None;
    }
    let [FunctionArg::Unnamed(arg)] = list.args.as_slice() else {
        return None;
    };
    let kind = match name.value.to_lowercase().as_str() {
        "count" => AggKind::Count,
        "sum" => AggKind::Sum,
        "avg" | "mean" => AggKind::Avg,
        "min" => AggKind::Min,
        "max" => AggKind::Max,
        _ => return None,
    };
    match arg {
        FunctionArgExpr::Wildcard if kind == AggKind::Count => Some(Agg {
            kind: AggKind::Rows,
            column: None,
        }),
        FunctionArgExpr::Expr(e) => Some(Agg {
            kind,
            column: Some(column_of(e)?),
        }),
        _ => None,
    }
}

impl Plan {
    /// The plan of a `SELECT` with these parts, if memory can compute it.
    pub(crate) fn new(
        projection: &[SelectItem],
        group_by: &[Expr],
        filtered: bool,
    ) -> Option<Self> {
        if filtered {
            return None;
        }
        let groups: Vec<String> = group_by.iter().map(column_of).collect::<Option<_>>()?;
        let mut aggs = Vec::new();
        let mut outputs = Vec::new();
        for item in projection {
            let (expr, alias) = match item {
                SelectItem::UnnamedExpr(e) => (e, None),
                SelectItem::ExprWithAlias { expr, alias } => (expr, Some(normalized(alias))),
                _ => return None,
            };
            let out = if let Some(column) = column_of(expr) {
                let g = groups.iter().position(|g| *g == column)?;
                (alias.unwrap_or(column), Output::Group(g))
            } else if let Expr::Function(f) = expr {
                // An unnamed aggregate's output name is DataFusion's rendering: leave it to SQL.
                let alias = alias?;
                aggs.push(aggregate_of(f)?);
                (alias, Output::Agg(aggs.len() - 1))
            } else {
                return None;
            };
            if outputs.iter().any(|(n, _)| *n == out.0) {
                return None;
            }
            outputs.push(out);
        }
        Some(Self {
            groups,
            aggs,
            outputs,
        })
    }
}

/// One accumulator: non-null values seen, their float sum (or min/max), their integer sum
/// (or min/max).
#[derive(Debug, Clone, Copy, Default)]
struct Cell {
    n: i64,
    f: f64,
    i: i64,
}

/// One open window: rows per group (0: the group has no row here) and the accumulators,
/// `aggs` per group.
#[derive(Debug, Default)]
struct Window {
    rows: Vec<i64>,
    cells: Vec<Cell>,
}

/// A dictionary of a grouping column as last seen, with the ids of its values (NULL_ID: not
/// looked up yet).
#[derive(Debug)]
struct SeenDictionary {
    offsets: Vec<i32>,
    bytes: Vec<u8>,
    ids: Vec<u32>,
    /// For the first grouping column of a pipeline with one or two: per value, the id of the
    /// other column's value last seen with it and their group (NULL_ID: none yet). A series
    /// mostly comes with the same other value (a sensor with its district), so its group is
    /// found here, in dictionary order, instead of by a hash lookup per row (a cache miss
    /// per row with 10k groups).
    groups: Vec<(u32, u32)>,
}

impl SeenDictionary {
    fn of(values: &StringArray) -> Self {
        Self {
            offsets: values.value_offsets().to_vec(),
            bytes: values.value_data().to_vec(),
            ids: vec![NULL_ID; values.len()],
            groups: Vec::new(),
        }
    }

    /// Whether `values` are the same strings in the same order.
    fn holds(&self, values: &StringArray) -> bool {
        values.null_count() == 0
            && values.value_data().len() == self.bytes.len()
            && values.value_offsets() == self.offsets.as_slice()
            && values.value_data() == self.bytes.as_slice()
    }
}

/// The input type of an aggregate's column, fixed by the first rows seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Input {
    Float,
    Int,
}

/// A batch's values of an aggregate's column.
enum Values<'a> {
    Absent,
    Float(&'a Float64Array),
    Int(&'a Int64Array),
    /// Only nulls count (`count(x)` over another type).
    Other(&'a dyn Array),
}

/// The windows of one pipeline kept in memory.
#[derive(Debug)]
pub(crate) struct Incremental {
    plan: Arc<Plan>,
    /// Windows starting before this may hold rows memory has not seen (None: not known yet).
    threshold: Option<i64>,
    ids: FastMap<Box<str>, u32>,
    texts: Vec<Box<str>>,
    /// Group ids by their values' ids packed in one number (one or two grouping columns).
    packed: FastMap<u64, u32>,
    /// Group ids by their values' ids (three grouping columns or more).
    groups: FastMap<Box<[u32]>, u32>,
    keys: Vec<Box<[u32]>>,
    inputs: Vec<Option<Input>>,
    /// The last dictionaries seen of each grouping column (most recent first) with their
    /// values' ids.
    dictionaries: Vec<Vec<SeenDictionary>>,
    /// The open panes by start: a pane is `slide` long and a window is the panes it spans
    /// (one for a tumbling window), so a row is added once however many windows hold it.
    panes: BTreeMap<i64, Window>,
    /// Why memory is not used any more.
    off: Option<String>,
    /// Windows emitted from memory.
    pub(crate) served: u64,
}

impl Incremental {
    pub(crate) fn new(plan: Arc<Plan>) -> Self {
        let inputs = vec![None; plan.aggs.len()];
        Self {
            plan,
            threshold: None,
            ids: FastMap::default(),
            texts: Vec::new(),
            packed: FastMap::default(),
            groups: FastMap::default(),
            keys: Vec::new(),
            inputs,
            dictionaries: Vec::new(),
            panes: BTreeMap::new(),
            off: None,
            served: 0,
        }
    }

    /// Why windows are not served from memory (None: they are).
    pub(crate) fn off(&self) -> Option<&str> {
        self.off.as_deref()
    }

    /// The first window start memory holds completely, when memory is in use.
    pub(crate) fn held_from(&self) -> Option<i64> {
        self.threshold.filter(|_| self.off.is_none())
    }

    fn turn_off(&mut self, why: String) {
        tracing::info!(reason = %why, "pipeline windows computed by SQL from now on");
        self.off = Some(why);
        self.panes = BTreeMap::new();
        self.dictionaries = Vec::new();
        self.packed = FastMap::default();
        self.groups = FastMap::default();
        self.keys = Vec::new();
        self.ids = FastMap::default();
        self.texts = Vec::new();
    }

    /// Windows starting before `t` may miss rows: they are computed by SQL.
    pub(crate) fn incomplete_before(&mut self, t: i64) {
        let t = self.threshold.map_or(t, |old| old.max(t));
        self.threshold = Some(t);
        // A window starting at or after `t` is made of panes starting at or after it.
        self.panes = self.panes.split_off(&t);
    }

    /// Something other than appended rows changed the source: what is held is dropped and
    /// windows up to `newest` (the newest event time seen) go back to SQL.
    pub(crate) fn source_changed(&mut self, newest: Option<i64>) {
        self.panes.clear();
        let t = newest.map_or(i64::MIN, |n| n.saturating_add(1));
        self.threshold = Some(self.threshold.map_or(t, |old| old.max(t)));
    }

    fn intern(&mut self, text: &str) -> u32 {
        if let Some(id) = self.ids.get(text) {
            return *id;
        }
        let id = self.texts.len() as u32;
        self.texts.push(text.into());
        self.ids.insert(text.into(), id);
        id
    }

    /// The value ids of the `c`-th grouping column, `name`, per row; whether they are
    /// dictionary keys of the dictionary now first in `self.dictionaries[c]`.
    fn column_ids(
        &mut self,
        batch: &RecordBatch,
        c: usize,
        name: &str,
    ) -> std::result::Result<(Vec<u32>, bool), String> {
        let n = batch.num_rows();
        let Ok(i) = batch.schema().index_of(name) else {
            return Ok((vec![NULL_ID; n], false));
        };
        let col = batch.column(i);
        match col.data_type() {
            DataType::Dictionary(k, v) if **k == DataType::Int32 && **v == DataType::Utf8 => {
                let dict = col.as_dictionary::<Int32Type>();
                let values = dict.values().as_string::<i32>();
                if self.dictionaries.len() <= c {
                    self.dictionaries.resize_with(c + 1, Vec::new);
                }
                // Writers mostly send the same series each time (a gateway its sensors): a
                // dictionary equal to one of the last ones (compared as bytes) reuses its
                // ids instead of looking every value up again.
                let recent = &mut self.dictionaries[c];
                let mut seen = match recent.iter().position(|d| d.holds(values)) {
                    Some(i) => recent.remove(i),
                    None => SeenDictionary::of(values),
                };
                let mut out = Vec::with_capacity(n);
                for (row, key) in dict.keys().iter().enumerate() {
                    let id = match key {
                        Some(k) if dict.is_valid(row) && values.is_valid(k as usize) => {
                            let k = k as usize;
                            if seen.ids[k] == NULL_ID {
                                seen.ids[k] = self.intern(values.value(k));
                            }
                            seen.ids[k]
                        }
                        _ => NULL_ID,
                    };
                    out.push(id);
                }
                let first = values.null_count() == 0;
                if first {
                    let recent = &mut self.dictionaries[c];
                    recent.truncate(RECENT_DICTIONARIES - 1);
                    recent.insert(0, seen);
                }
                Ok((out, first))
            }
            DataType::Utf8 => Ok((
                col.as_string::<i32>()
                    .iter()
                    .map(|v| v.map_or(NULL_ID, |v| self.intern(v)))
                    .collect(),
                false,
            )),
            DataType::Utf8View => Ok((
                col.as_string_view()
                    .iter()
                    .map(|v| v.map_or(NULL_ID, |v| self.intern(v)))
                    .collect(),
                false,
            )),
            other => Err(format!(
                "the grouping column '{name}' has type {other} (memory keeps string columns)"
            )),
        }
    }

    fn values<'a>(
        &mut self,
        batch: &'a RecordBatch,
        a: usize,
    ) -> std::result::Result<Values<'a>, String> {
        let agg = &self.plan.aggs[a];
        let Some(name) = &agg.column else {
            return Ok(Values::Absent);
        };
        let Ok(i) = batch.schema().index_of(name) else {
            return Ok(Values::Absent);
        };
        let col = batch.column(i);
        let (values, input) = match col.data_type() {
            DataType::Float64 => (Values::Float(col.as_primitive()), Input::Float),
            DataType::Int64 => (Values::Int(col.as_primitive()), Input::Int),
            _ if agg.kind == AggKind::Count => return Ok(Values::Other(col.as_ref())),
            other => {
                return Err(format!(
                    "the column '{name}' has type {other} (memory aggregates 64-bit integers and floats)"
                ));
            }
        };
        if agg.kind != AggKind::Count {
            match self.inputs[a] {
                None => self.inputs[a] = Some(input),
                Some(seen) if seen != input => {
                    return Err(format!("the column '{name}' changed type"));
                }
                Some(_) => {}
            }
        }
        Ok(values)
    }

    /// Adds the rows of an acknowledged write; windows ending at or before `emitted` are
    /// left out (their late rows are corrected by SQL).
    pub(crate) fn add(
        &mut self,
        batch: &RecordBatch,
        times: &TimestampMicrosecondArray,
        emitted: Option<i64>,
        t: &Timing,
    ) {
        if self.off.is_some() || batch.num_rows() == 0 {
            return;
        }
        if let Err(why) = self.add_rows(batch, times, emitted, t) {
            self.turn_off(why);
        }
    }

    fn add_rows(
        &mut self,
        batch: &RecordBatch,
        times: &TimestampMicrosecondArray,
        emitted: Option<i64>,
        t: &Timing,
    ) -> std::result::Result<(), String> {
        let plan = self.plan.clone();
        let mut ids = Vec::with_capacity(plan.groups.len());
        let mut first_is_dictionary = false;
        for (c, g) in plan.groups.iter().enumerate() {
            let (column, dictionary) = self.column_ids(batch, c, g)?;
            ids.push(column);
            first_is_dictionary |= c == 0 && dictionary;
        }
        // The first column's dictionary keys per row, and its groups' memo (see
        // `SeenDictionary::groups`), taken out while rows are added.
        let memo_keys = match plan.groups.len() {
            1 | 2 if first_is_dictionary => plan
                .groups
                .first()
                .and_then(|g| batch.schema().index_of(g).ok())
                .map(|i| batch.column(i).as_dictionary::<Int32Type>().keys().clone()),
            _ => None,
        };
        let mut memo = match (
            &memo_keys,
            self.dictionaries.first_mut().and_then(|d| d.first_mut()),
        ) {
            (Some(_), Some(d)) => {
                let mut memo = std::mem::take(&mut d.groups);
                memo.resize(d.ids.len(), (NULL_ID, NULL_ID));
                memo
            }
            _ => Vec::new(),
        };
        let values: Vec<Values<'_>> = (0..plan.aggs.len())
            .map(|a| self.values(batch, a))
            .collect::<std::result::Result<_, _>>()?;
        let naggs = plan.aggs.len();
        // Windows before this are emitted (late rows) or may miss rows (SQL computes them).
        let floor = match (emitted.map(|e| e - t.size + 1), self.threshold) {
            (Some(a), Some(b)) => a.max(b),
            (a, b) => a.or(b).unwrap_or(i64::MIN),
        };
        // First the pane and the group of each row kept (None: left out)...
        let mut key = vec![0u32; plan.groups.len()];
        let mut kept: Vec<(usize, i64, usize)> = Vec::with_capacity(times.len());
        for (row, time) in times.iter().enumerate() {
            let Some(time) = time else { continue };
            let pane = crate::runtime::align_down(time, t.slide);
            if pane < floor {
                // Its windows (the one starting with this pane and the earlier ones) are
                // not kept.
                continue;
            }
            for (k, col) in key.iter_mut().zip(&ids) {
                *k = col[row];
            }
            let other = key.get(1).copied().unwrap_or(0);
            let slot = memo_keys
                .as_ref()
                .filter(|k| k.is_valid(row) && key[0] != NULL_ID)
                .and_then(|k| usize::try_from(k.value(row)).ok())
                .filter(|k| *k < memo.len());
            let gid = match slot {
                Some(k) if memo[k].1 != NULL_ID && memo[k].0 == other => memo[k].1 as usize,
                Some(k) => {
                    let gid = self.group(&key);
                    memo[k] = (other, gid as u32);
                    gid
                }
                None => self.group(&key),
            };
            kept.push((row, pane, gid));
        }
        if !memo.is_empty()
            && let Some(d) = self.dictionaries.first_mut().and_then(|d| d.first_mut())
        {
            d.groups = memo;
        }
        // ...then the rows into their panes, one pane at a time (a write's rows mostly
        // share one; the sort is stable, so each pane adds its rows in order).
        kept.sort_by_key(|(_, pane, _)| *pane);
        let groups = self.keys.len();
        for run in kept.chunk_by(|a, b| a.1 == b.1) {
            let w = self.panes.entry(run[0].1).or_default();
            if w.rows.len() < groups {
                w.rows.resize(groups, 0);
                w.cells.resize(groups * naggs, Cell::default());
            }
            for &(row, _, gid) in run {
                w.rows[gid] += 1;
                let cells = &mut w.cells[gid * naggs..(gid + 1) * naggs];
                for (a, (cell, v)) in cells.iter_mut().zip(&values).enumerate() {
                    accumulate(plan.aggs[a].kind, cell, v, row);
                }
            }
        }
        let cells: usize = self.panes.values().map(|w| w.cells.len()).sum();
        if cells > MAX_CELLS {
            return Err(format!(
                "more than {MAX_CELLS} accumulators ({} groups, {} open panes)",
                self.keys.len(),
                self.panes.len()
            ));
        }
        Ok(())
    }

    /// The id of the group whose values have the ids `key` (a new group if unseen).
    fn group(&mut self, key: &[u32]) -> usize {
        let found = match key {
            [] => self.packed.get(&0),
            [a] => self.packed.get(&u64::from(*a)),
            [a, b] => self.packed.get(&(u64::from(*a) << 32 | u64::from(*b))),
            _ => self.groups.get(key),
        };
        if let Some(g) = found {
            return *g as usize;
        }
        let g = self.keys.len();
        self.keys.push(key.into());
        match key {
            [] => self.packed.insert(0, g as u32),
            [a] => self.packed.insert(u64::from(*a), g as u32),
            [a, b] => self
                .packed
                .insert(u64::from(*a) << 32 | u64::from(*b), g as u32),
            _ => self.groups.insert(key.into(), g as u32),
        };
        g
    }

    /// The rows of the windows starting in `[first, last]`, taken out of memory; None when
    /// memory cannot give them (SQL computes them). Later calls for these windows get None.
    pub(crate) fn take(
        &mut self,
        first: i64,
        last: i64,
        t: &Timing,
        group_names: &[String],
    ) -> Option<Result<Option<RecordBatch>>> {
        if self.off.is_some() {
            return None;
        }
        let servable = self.threshold.is_some_and(|th| first >= th);
        // An aggregate whose column memory has not seen has no type to give: SQL knows it.
        let untyped = self
            .plan
            .aggs
            .iter()
            .zip(&self.inputs)
            .any(|(a, i)| !matches!(a.kind, AggKind::Rows | AggKind::Count) && i.is_none());
        // The windows' panes: from the first window's start to the last one's last pane.
        let span = self
            .panes
            .range(first..last.saturating_add(t.size))
            .filter(|(_, w)| w.rows.iter().any(|n| *n > 0))
            .count();
        let windows = if servable && !(untyped && span > 0) {
            Some(self.windows_of(first, last, t))
        } else {
            None
        };
        // These windows (and any before them) leave memory whatever computes them; the
        // panes after `last` stay for the windows after it.
        self.incomplete_before(last.saturating_add(1));
        let windows = windows?;
        self.served += ((last - first) / t.slide + 1) as u64;
        Some(self.build(&windows, t, group_names))
    }

    /// The windows starting in `[first, last]`, each the sum of its panes.
    fn windows_of(&mut self, first: i64, last: i64, t: &Timing) -> BTreeMap<i64, Window> {
        if t.size == t.slide {
            // Tumbling: a window is its one pane.
            let mut taken = self.panes.split_off(&first);
            self.panes
                .append(&mut taken.split_off(&last.saturating_add(1)));
            return taken;
        }
        let kinds: Vec<AggKind> = self.plan.aggs.iter().map(|a| a.kind).collect();
        let mut windows = BTreeMap::new();
        let mut start = first;
        while start <= last {
            let mut w = Window::default();
            for (_, pane) in self.panes.range(start..start.saturating_add(t.size)) {
                merge(&mut w, pane, &kinds);
            }
            windows.insert(start, w);
            start += t.slide;
        }
        windows
    }

    fn build(
        &self,
        windows: &BTreeMap<i64, Window>,
        t: &Timing,
        group_names: &[String],
    ) -> Result<Option<RecordBatch>> {
        let plan = &self.plan;
        let naggs = plan.aggs.len();
        // (window start, group id) of each output row.
        let rows: Vec<(i64, usize, &Window)> = windows
            .iter()
            .flat_map(|(start, w)| {
                w.rows
                    .iter()
                    .enumerate()
                    .filter(|(_, n)| **n > 0)
                    .map(move |(g, _)| (*start, g, w))
            })
            .collect();
        if rows.is_empty() {
            return Ok(None);
        }
        let mut fields = Vec::with_capacity(plan.outputs.len() + 3);
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(plan.outputs.len() + 3);
        for (name, out) in &plan.outputs {
            let column: ArrayRef = match *out {
                Output::Group(k) => {
                    Arc::new(StringArray::from_iter(rows.iter().map(|(_, g, _)| {
                        let id = self.keys[*g][k];
                        (id != NULL_ID).then(|| &*self.texts[id as usize])
                    })))
                }
                Output::Agg(a) => {
                    let cells = rows
                        .iter()
                        .map(|(_, g, w)| (w.rows[*g], w.cells[g * naggs + a]));
                    let int = self.inputs[a] == Some(Input::Int);
                    match plan.aggs[a].kind {
                        AggKind::Rows => {
                            Arc::new(Int64Array::from_iter_values(cells.map(|(r, _)| r)))
                        }
                        AggKind::Count => {
                            Arc::new(Int64Array::from_iter_values(cells.map(|(_, c)| c.n)))
                        }
                        AggKind::Avg => Arc::new(Float64Array::from_iter(
                            cells.map(|(_, c)| (c.n > 0).then(|| c.f / c.n as f64)),
                        )),
                        AggKind::Sum | AggKind::Min | AggKind::Max if int => Arc::new(
                            Int64Array::from_iter(cells.map(|(_, c)| (c.n > 0).then_some(c.i))),
                        ),
                        AggKind::Sum | AggKind::Min | AggKind::Max => Arc::new(
                            Float64Array::from_iter(cells.map(|(_, c)| (c.n > 0).then_some(c.f))),
                        ),
                    }
                }
            };
            fields.push(Field::new(name, column.data_type().clone(), true));
            columns.push(column);
        }
        let starts: Vec<i64> = rows.iter().map(|(s, _, _)| *s).collect();
        let ends: Vec<i64> = starts.iter().map(|s| s + t.size).collect();
        for (name, values) in [
            ("time", &starts),
            ("window_start", &starts),
            ("window_end", &ends),
        ] {
            let column: ArrayRef =
                Arc::new(TimestampMicrosecondArray::from(values.clone()).with_timezone("UTC"));
            fields.push(Field::new(name, column.data_type().clone(), true));
            columns.push(column);
        }
        let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?;
        crate::sqlgen::to_lake_batch(&batch, group_names).map(Some)
    }
}

/// Adds `pane`'s groups and accumulators to `into`.
fn merge(into: &mut Window, pane: &Window, kinds: &[AggKind]) {
    let naggs = kinds.len();
    if into.rows.len() < pane.rows.len() {
        into.rows.resize(pane.rows.len(), 0);
        into.cells.resize(pane.rows.len() * naggs, Cell::default());
    }
    for (g, rows) in pane.rows.iter().enumerate() {
        if *rows == 0 {
            continue;
        }
        into.rows[g] += rows;
        let cells = &mut into.cells[g * naggs..(g + 1) * naggs];
        for ((cell, p), kind) in cells
            .iter_mut()
            .zip(&pane.cells[g * naggs..(g + 1) * naggs])
            .zip(kinds)
        {
            combine(*kind, cell, p);
        }
    }
}

/// Adds the accumulator `p` (of other rows) to `cell`, as if its rows had been accumulated.
fn combine(kind: AggKind, cell: &mut Cell, p: &Cell) {
    if p.n == 0 {
        return;
    }
    if cell.n == 0 {
        *cell = *p;
        return;
    }
    match kind {
        AggKind::Rows | AggKind::Count => {}
        AggKind::Sum | AggKind::Avg => {
            cell.f += p.f;
            cell.i = cell.i.wrapping_add(p.i);
        }
        AggKind::Min => {
            if p.f < cell.f {
                cell.f = p.f;
            }
            if p.i < cell.i {
                cell.i = p.i;
            }
        }
        AggKind::Max => {
            if p.f > cell.f {
                cell.f = p.f;
            }
            if p.i > cell.i {
                cell.i = p.i;
            }
        }
    }
    cell.n += p.n;
}

fn accumulate(kind: AggKind, cell: &mut Cell, values: &Values<'_>, row: usize) {
    match values {
        Values::Float(a) => {
            if a.is_null(row) {
                return;
            }
            let v = a.value(row);
            match kind {
                AggKind::Sum | AggKind::Avg => cell.f += v,
                AggKind::Min if cell.n == 0 || v < cell.f => cell.f = v,
                AggKind::Max if cell.n == 0 || v > cell.f => cell.f = v,
                _ => {}
            }
            cell.n += 1;
        }
        Values::Int(a) => {
            if a.is_null(row) {
                return;
            }
            let v = a.value(row);
            match kind {
                AggKind::Sum => cell.i = cell.i.wrapping_add(v),
                AggKind::Avg => cell.f += v as f64,
                AggKind::Min if cell.n == 0 || v < cell.i => cell.i = v,
                AggKind::Max if cell.n == 0 || v > cell.i => cell.i = v,
                _ => {}
            }
            cell.n += 1;
        }
        Values::Other(a) => {
            if a.is_valid(row) {
                cell.n += 1;
            }
        }
        Values::Absent => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sqlgen::WindowQuery;
    use arrow::array::StringDictionaryBuilder;
    use civiclake_core::{field_column, tag_column, time_column};

    const MIN: i64 = 60_000_000;

    fn timing(size: i64, slide: i64) -> Timing {
        Timing {
            size,
            slide,
            watermark: 0,
            lateness: 0,
            skew: None,
            idle: None,
            backfill: 0,
        }
    }

    fn plan(sql: &str) -> Option<Arc<Plan>> {
        WindowQuery::compile(sql, "air").unwrap().plan().cloned()
    }

    /// A row: sensor, minute, v (float), n (integer).
    type Row<'a> = (Option<&'a str>, i64, Option<f64>, Option<i64>);

    fn batch(rows: &[Row<'_>]) -> RecordBatch {
        let mut tags = StringDictionaryBuilder::<Int32Type>::new();
        for r in rows {
            match r.0 {
                Some(s) => tags.append_value(s),
                None => tags.append_null(),
            }
        }
        RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                time_column(),
                tag_column("sensor"),
                field_column("v", DataType::Float64),
                field_column("n", DataType::Int64),
            ])),
            vec![
                minutes(rows.iter().map(|r| r.1)),
                Arc::new(tags.finish()),
                Arc::new(Float64Array::from_iter(rows.iter().map(|r| r.2))),
                Arc::new(Int64Array::from_iter(rows.iter().map(|r| r.3))),
            ],
        )
        .unwrap()
    }

    /// The time column of rows at these minutes.
    fn minutes(m: impl Iterator<Item = i64>) -> ArrayRef {
        Arc::new(
            TimestampMicrosecondArray::from_iter_values(m.map(|m| m * MIN)).with_timezone("UTC"),
        )
    }

    fn add(i: &mut Incremental, b: &RecordBatch, emitted: Option<i64>, t: &Timing) {
        let times = b.column(0).as_primitive().clone();
        i.add(b, &times, emitted, t);
    }

    /// A batch's rows as text, sorted.
    fn lines(b: &RecordBatch) -> Vec<String> {
        let cols: Vec<ArrayRef> = b
            .columns()
            .iter()
            .map(|c| arrow::compute::cast(c, &DataType::Utf8).unwrap())
            .collect();
        let mut out: Vec<String> = (0..b.num_rows())
            .map(|r| {
                cols.iter()
                    .map(|c| {
                        if c.is_null(r) {
                            "NULL".to_string()
                        } else {
                            c.as_string::<i32>().value(r).to_string()
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        out.sort();
        out
    }

    /// A batch of `(key into ["a", "b", "c"], minute)` rows, with that whole dictionary.
    fn keyed(rows: &[(i32, i64)]) -> RecordBatch {
        let keys = arrow::array::Int32Array::from_iter_values(rows.iter().map(|r| r.0));
        let values = Arc::new(StringArray::from(vec!["a", "b", "c"]));
        let tags = arrow::array::DictionaryArray::<Int32Type>::try_new(keys, values).unwrap();
        RecordBatch::try_new(
            Arc::new(Schema::new(vec![time_column(), tag_column("sensor")])),
            vec![minutes(rows.iter().map(|r| r.1)), Arc::new(tags)],
        )
        .unwrap()
    }

    /// A batch of `(key into ["a", "b", "c"] or null, site, minute)` rows, with that whole
    /// sensor dictionary and the sites in order of appearance.
    fn sited(rows: &[(Option<i32>, &str, i64)]) -> RecordBatch {
        let keys = arrow::array::Int32Array::from_iter(rows.iter().map(|r| r.0));
        let values = Arc::new(StringArray::from(vec!["a", "b", "c"]));
        let sensors = arrow::array::DictionaryArray::<Int32Type>::try_new(keys, values).unwrap();
        let mut sites = StringDictionaryBuilder::<Int32Type>::new();
        for r in rows {
            sites.append_value(r.1);
        }
        RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                time_column(),
                tag_column("sensor"),
                tag_column("site"),
            ])),
            vec![
                minutes(rows.iter().map(|r| r.2)),
                Arc::new(sensors),
                Arc::new(sites.finish()),
            ],
        )
        .unwrap()
    }

    #[test]
    fn a_series_remembers_its_group_and_a_new_pair_gets_its_own() {
        let t = timing(10 * MIN, 10 * MIN);
        let mut i = Incremental::new(
            plan("SELECT sensor, site, count(*) AS n FROM air GROUP BY sensor, site").unwrap(),
        );
        i.incomplete_before(0);
        // Each sensor with its site: the groups are remembered with the dictionary...
        add(
            &mut i,
            &sited(&[(Some(0), "x", 1), (Some(1), "y", 2)]),
            None,
            &t,
        );
        add(
            &mut i,
            &sited(&[(Some(1), "y", 3), (Some(0), "x", 4)]),
            None,
            &t,
        );
        // ...then sensor a at another site (a pair of its own, in the same write as a row
        // of the old pair), a null sensor, and sensor c for the first time.
        add(
            &mut i,
            &sited(&[
                (Some(0), "z", 5),
                (Some(0), "x", 6),
                (None, "x", 7),
                (Some(2), "y", 8),
                (Some(0), "z", 9),
            ]),
            None,
            &t,
        );
        assert!(!i.dictionaries[0][0].groups.is_empty());
        let b = i
            .take(0, 0, &t, &["sensor".into(), "site".into()])
            .unwrap()
            .unwrap()
            .unwrap();
        let rows: Vec<String> = lines(&b)
            .iter()
            .map(|l| l.split(' ').take(3).collect::<Vec<_>>().join(" "))
            .collect();
        assert_eq!(
            rows,
            ["NULL x 1", "a x 3", "a z 2", "b y 2", "c y 1"],
            "{:?}",
            lines(&b)
        );
    }

    #[test]
    fn a_dictionary_seen_before_keeps_its_ids_and_a_new_one_gets_its_own() {
        let t = timing(10 * MIN, 10 * MIN);
        let mut i = Incremental::new(
            plan("SELECT sensor, count(*) AS n FROM air GROUP BY sensor").unwrap(),
        );
        i.incomplete_before(0);
        // The same dictionary twice (its ids reused), keys in another order...
        add(&mut i, &keyed(&[(0, 1), (1, 2)]), None, &t);
        add(&mut i, &keyed(&[(1, 3), (2, 4), (1, 5)]), None, &t);
        // ...then another dictionary with the same strings elsewhere.
        add(
            &mut i,
            &batch(&[(Some("c"), 6, None, None), (Some("a"), 7, None, None)]),
            None,
            &t,
        );
        // ...and the first one again, remembered behind it.
        add(&mut i, &keyed(&[(2, 8)]), None, &t);
        assert_eq!(i.dictionaries[0].len(), 2);
        let b = i
            .take(0, 0, &t, &["sensor".into()])
            .unwrap()
            .unwrap()
            .unwrap();
        let rows: Vec<String> = lines(&b)
            .iter()
            .map(|l| l.split(' ').take(2).collect::<Vec<_>>().join(" "))
            .collect();
        assert_eq!(rows, ["a 2", "b 3", "c 3"]);
    }

    #[test]
    fn only_queries_memory_computes_exactly_get_a_plan() {
        assert!(
            plan("SELECT sensor, avg(v) AS v, count(*) AS c FROM air GROUP BY sensor").is_some()
        );
        assert!(
            plan("SELECT \"Sensor\" AS s, MAX(a.v) AS m FROM air a GROUP BY \"Sensor\"").is_some()
        );
        assert!(plan("SELECT sum(v) AS total FROM air").is_some());
        for sql in [
            "SELECT sensor, avg(v) FROM air GROUP BY sensor",
            "SELECT sensor, avg(v) AS v FROM air WHERE v > 0 GROUP BY sensor",
            "SELECT sensor, avg(v) AS v FROM air GROUP BY sensor HAVING count(*) > 1",
            "SELECT sensor, count(DISTINCT v) AS v FROM air GROUP BY sensor",
            "SELECT sensor, avg(v * 2) AS v FROM air GROUP BY sensor",
            "SELECT sensor, stddev(v) AS v FROM air GROUP BY sensor",
            "SELECT sensor, count(v) FILTER (WHERE v > 1) AS v FROM air GROUP BY sensor",
            "SELECT upper(sensor) AS s, avg(v) AS v FROM air GROUP BY upper(sensor)",
            "SELECT district, avg(v) AS v FROM air GROUP BY sensor",
            "SELECT sensor, avg(v) AS v, max(v) AS v FROM air GROUP BY sensor",
        ] {
            assert!(plan(sql).is_none(), "{sql}");
        }
    }

    #[test]
    fn windows_hold_what_sql_would_give_with_nulls_integers_and_hops() {
        let sql = "SELECT sensor, count(*) AS rows, count(v) AS nv, sum(v) AS sv, avg(v) AS av, \
                   min(n) AS mn, max(n) AS mx, sum(n) AS sn, avg(n) AS an FROM air GROUP BY sensor";
        let t = timing(10 * MIN, 5 * MIN);
        let mut i = Incremental::new(plan(sql).unwrap());
        i.incomplete_before(0);
        add(
            &mut i,
            &batch(&[
                (Some("a"), 1, Some(1.5), Some(4)),
                (Some("a"), 6, None, Some(-2)),
                (Some("b"), 7, None, None),
                (None, 8, Some(2.0), Some(10)),
            ]),
            None,
            &t,
        );
        add(
            &mut i,
            &batch(&[(Some("a"), 12, Some(0.5), None)]),
            None,
            &t,
        );
        // Windows starting at 0 and 5 minutes (the hop at -5 minutes starts before the threshold).
        let b = i
            .take(0, 5 * MIN, &t, &["sensor".into()])
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(
            b.schema()
                .fields()
                .iter()
                .map(|f| f.name().as_str())
                .collect::<Vec<_>>(),
            [
                "sensor",
                "rows",
                "nv",
                "sv",
                "av",
                "mn",
                "mx",
                "sn",
                "an",
                "time",
                "window_start",
                "window_end"
            ]
        );
        assert_eq!(b.schema().field(0).data_type(), &civiclake_core::tag_type());
        assert_eq!(b.schema().field(5).data_type(), &DataType::Int64);
        assert_eq!(
            lines(&b),
            [
                "NULL 1 1 2.0 2.0 10 10 10 10.0 1970-01-01T00:00:00Z 1970-01-01T00:00:00Z 1970-01-01T00:10:00Z",
                "NULL 1 1 2.0 2.0 10 10 10 10.0 1970-01-01T00:05:00Z 1970-01-01T00:05:00Z 1970-01-01T00:15:00Z",
                "a 2 1 0.5 0.5 -2 -2 -2 -2.0 1970-01-01T00:05:00Z 1970-01-01T00:05:00Z 1970-01-01T00:15:00Z",
                "a 2 1 1.5 1.5 -2 4 2 1.0 1970-01-01T00:00:00Z 1970-01-01T00:00:00Z 1970-01-01T00:10:00Z",
                "b 1 0 NULL NULL NULL NULL NULL NULL 1970-01-01T00:00:00Z 1970-01-01T00:00:00Z 1970-01-01T00:10:00Z",
                "b 1 0 NULL NULL NULL NULL NULL NULL 1970-01-01T00:05:00Z 1970-01-01T00:05:00Z 1970-01-01T00:15:00Z",
            ]
        );
        // Taken windows are not given twice; the next one is still there.
        assert!(i.take(5 * MIN, 5 * MIN, &t, &[]).is_none());
        let next = i
            .take(10 * MIN, 10 * MIN, &t, &[])
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(next.num_rows(), 1);
        assert_eq!(i.served, 3);
    }

    #[test]
    fn memory_gives_way_to_sql_when_it_cannot_know() {
        let t = timing(5 * MIN, 5 * MIN);
        let sql = "SELECT sensor, avg(v) AS v FROM air GROUP BY sensor";
        // Before the start's newest event time is known, nothing is served.
        let mut i = Incremental::new(plan(sql).unwrap());
        add(&mut i, &batch(&[(Some("a"), 1, Some(1.0), None)]), None, &t);
        assert!(i.take(0, 0, &t, &[]).is_none());
        // Windows up to the newest row at start are SQL's; later ones memory's.
        i.incomplete_before(7 * MIN + 1);
        add(
            &mut i,
            &batch(&[(Some("a"), 11, Some(1.0), None)]),
            None,
            &t,
        );
        assert!(i.take(5 * MIN, 5 * MIN, &t, &[]).is_none());
        assert!(i.take(10 * MIN, 10 * MIN, &t, &[]).is_some());
        // A delete on the source: windows up to the newest event seen go back to SQL.
        add(
            &mut i,
            &batch(&[(Some("a"), 16, Some(1.0), None)]),
            None,
            &t,
        );
        i.source_changed(Some(16 * MIN));
        assert!(i.take(15 * MIN, 15 * MIN, &t, &[]).is_none());
        add(
            &mut i,
            &batch(&[(Some("a"), 21, Some(3.0), None)]),
            None,
            &t,
        );
        let b = i
            .take(20 * MIN, 20 * MIN, &t, &[])
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(
            b.column(1)
                .as_primitive::<arrow::datatypes::Float64Type>()
                .value(0),
            3.0
        );
        // Rows of windows already emitted are left to the corrections.
        add(
            &mut i,
            &batch(&[(Some("a"), 26, Some(5.0), None)]),
            Some(30 * MIN),
            &t,
        );
        assert!(matches!(
            i.take(25 * MIN, 25 * MIN, &t, &[]),
            Some(Ok(None))
        ));
        // A column of a type memory does not aggregate: SQL from then on, with the reason.
        let mut s = Incremental::new(plan("SELECT max(sensor) AS s FROM air").unwrap());
        s.incomplete_before(0);
        add(&mut s, &batch(&[(Some("a"), 1, None, None)]), None, &t);
        assert!(s.off().unwrap().contains("'sensor'"), "{:?}", s.off());
        assert!(s.take(0, 0, &t, &[]).is_none());
        // An aggregate whose column no row had: SQL knows its type, memory does not.
        let mut u = Incremental::new(plan("SELECT min(w) AS w FROM air").unwrap());
        u.incomplete_before(0);
        add(&mut u, &batch(&[(Some("a"), 1, None, None)]), None, &t);
        assert!(u.take(0, 0, &t, &[]).is_none());
    }
}
