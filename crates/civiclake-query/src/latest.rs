//! The last-value cache: for the tables it is enabled on, the latest row (by `time`) of every
//! series (a tuple of tag values), kept up to date by the writes and answered by the table
//! function `latest('table')` without reading the table's history.
//!
//! A series' entry is the whole row of its greatest `time` (a later write with an older time
//! does not replace it; equal times: the later write wins). A row is kept as a reference
//! into the written batch (no copy on the write path); a query after a change gathers the
//! rows into one batch (`interleave`), so reading 10k series costs one gather, not a scan.
//! Past 64 referenced batches the latest rows are copied into one and the rest let go, so
//! a silent sensor does not keep old batches alive.

use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch, new_null_array};
use datafusion::arrow::compute::{cast, interleave};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimestampMicrosecondType};
use datafusion::catalog::{TableFunctionImpl, TableProvider};
use datafusion::common::{DataFusionError, ScalarValue, plan_err};
use datafusion::datasource::MemTable;
use datafusion::logical_expr::Expr;
use parking_lot::{Mutex, RwLock};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::engine::SqlScope;

/// Caches of the latest row per series, by table.
#[derive(Debug, Default)]
pub struct LatestCache {
    tables: RwLock<BTreeMap<String, Arc<Mutex<TableLatest>>>>,
}

#[derive(Debug)]
struct TableLatest {
    series: Vec<String>,
    /// Columns seen so far, in order of appearance (the table's schema grows the same way).
    fields: Vec<Field>,
    /// The batches rows are kept in (written batches, shared with the write, not copied).
    batches: Vec<RecordBatch>,
    /// Per series: time, batch, row.
    rows: HashMap<Vec<Option<String>>, (i64, usize, usize)>,
    /// The rows as one batch, until the next change.
    built: Option<RecordBatch>,
}

/// Past this many batches, the latest rows are copied into one and the others let go.
const MAX_BATCHES: usize = 64;

impl LatestCache {
    /// Keeps the latest row of every series of `table`, a series being the values of the
    /// tag columns `series` (replaces an earlier setting and forgets its rows).
    pub fn enable(&self, table: &str, series: Vec<String>) {
        self.tables.write().insert(
            table.to_string(),
            Arc::new(Mutex::new(TableLatest {
                series,
                fields: Vec::new(),
                batches: Vec::new(),
                rows: HashMap::new(),
                built: None,
            })),
        );
    }

    /// Stops caching `table`; whether it was cached.
    pub fn disable(&self, table: &str) -> bool {
        self.tables.write().remove(table).is_some()
    }

    /// The cached tables with their series columns.
    pub fn tables(&self) -> Vec<(String, Vec<String>)> {
        self.tables
            .read()
            .iter()
            .map(|(t, c)| (t.clone(), c.lock().series.clone()))
            .collect()
    }

    /// Whether `table` is cached.
    pub fn is_enabled(&self, table: &str) -> bool {
        self.tables.read().contains_key(table)
    }

    /// Takes the rows of `batch` (rows of `table`) into the cache, if `table` is cached.
    pub fn update(&self, table: &str, batch: &RecordBatch) {
        let Some(entry) = self.tables.read().get(table).cloned() else {
            return;
        };
        entry.lock().update(batch);
    }

    /// The latest row of every series of `table` (None when `table` is not cached).
    pub fn batch(&self, table: &str) -> Option<RecordBatch> {
        let entry = self.tables.read().get(table).cloned()?;
        let mut latest = entry.lock();
        Some(latest.build())
    }

    /// Number of series cached for `table`.
    pub fn series_count(&self, table: &str) -> usize {
        self.tables
            .read()
            .get(table)
            .map_or(0, |e| e.lock().rows.len())
    }
}

impl TableLatest {
    fn update(&mut self, batch: &RecordBatch) {
        let schema = batch.schema();
        let Some(time) = schema
            .index_of(civiclake_core::TIME_COLUMN)
            .ok()
            .and_then(|i| {
                batch
                    .column(i)
                    .as_primitive_opt::<TimestampMicrosecondType>()
            })
        else {
            return;
        };
        for field in schema.fields() {
            if !self.fields.iter().any(|f| f.name() == field.name()) {
                self.fields.push(field.as_ref().clone().with_nullable(true));
            }
        }
        // The series columns as text, once per batch.
        let series: Vec<Option<ArrayRef>> = self
            .series
            .iter()
            .map(|s| {
                schema
                    .index_of(s)
                    .ok()
                    .and_then(|i| cast(batch.column(i), &DataType::Utf8).ok())
            })
            .collect();
        let index = self.batches.len();
        let mut used = false;
        for row in 0..batch.num_rows() {
            if time.is_null(row) {
                continue;
            }
            let t = time.value(row);
            let key: Vec<Option<String>> = series
                .iter()
                .map(|c| {
                    c.as_ref()
                        .filter(|c| c.is_valid(row))
                        .map(|c| c.as_string::<i32>().value(row).to_string())
                })
                .collect();
            if self.rows.get(&key).is_some_and(|(old, _, _)| *old > t) {
                continue;
            }
            self.rows.insert(key, (t, index, row));
            used = true;
        }
        if used {
            self.batches.push(batch.clone());
            self.built = None;
            if self.batches.len() > MAX_BATCHES {
                self.compact();
            }
        }
    }

    /// Copies the latest rows into one batch and lets the others go.
    fn compact(&mut self) {
        let built = self.build();
        let mut keys: Vec<_> = self.rows.keys().cloned().collect();
        keys.sort();
        for (i, key) in keys.into_iter().enumerate() {
            if let Some(entry) = self.rows.get_mut(&key) {
                *entry = (entry.0, 0, i);
            }
        }
        self.batches = vec![built.clone()];
        self.built = Some(built);
    }

    fn build(&mut self) -> RecordBatch {
        if let Some(b) = &self.built {
            return b.clone();
        }
        let schema: SchemaRef = Arc::new(Schema::new(self.fields.clone()));
        let mut entries: Vec<_> = self.rows.iter().collect();
        entries.sort_by(|a, b| a.0.cmp(b.0));
        let indices: Vec<(usize, usize)> = entries.iter().map(|(_, (_, b, r))| (*b, *r)).collect();
        let mut columns = Vec::with_capacity(self.fields.len());
        for field in &self.fields {
            let arrays: Vec<ArrayRef> = self
                .batches
                .iter()
                .map(|b| match b.column_by_name(field.name()) {
                    Some(c) if c.data_type() == field.data_type() => c.clone(),
                    Some(c) => cast(c, field.data_type())
                        .unwrap_or_else(|_| new_null_array(field.data_type(), b.num_rows())),
                    None => new_null_array(field.data_type(), b.num_rows()),
                })
                .collect();
            let refs: Vec<&dyn Array> = arrays.iter().map(|a| a.as_ref()).collect();
            let column = if refs.is_empty() {
                datafusion::arrow::array::new_empty_array(field.data_type())
            } else {
                interleave(&refs, &indices)
                    .unwrap_or_else(|_| new_null_array(field.data_type(), indices.len()))
            };
            columns.push(column);
        }
        let batch = RecordBatch::try_new(schema.clone(), columns)
            .unwrap_or_else(|_| RecordBatch::new_empty(schema));
        self.built = Some(batch.clone());
        batch
    }
}

/// `latest('table')`: the cached latest rows of `table`, as the session's scope may see them.
#[derive(Debug)]
pub(crate) struct LatestFunction {
    pub(crate) cache: Arc<LatestCache>,
    pub(crate) scope: SqlScope,
}

impl TableFunctionImpl for LatestFunction {
    fn call(&self, args: &[Expr]) -> datafusion::common::Result<Arc<dyn TableProvider>> {
        let table = match args {
            [Expr::Literal(ScalarValue::Utf8(Some(t)), _)] => t.clone(),
            _ => return plan_err!("latest() takes one argument: a table name as a string"),
        };
        if !self.scope.sees(&table) {
            return plan_err!("table '{table}' not found");
        }
        let Some(batch) = self.cache.batch(&table) else {
            let cached: Vec<String> = self.cache.tables().into_iter().map(|(t, _)| t).collect();
            return plan_err!(
                "latest('{table}'): the table has no last-value cache (cached: {})",
                if cached.is_empty() {
                    "none".to_string()
                } else {
                    cached.join(", ")
                }
            );
        };
        let batch = self.scope.mask_batch(&table, batch)?;
        let table = MemTable::try_new(batch.schema(), vec![vec![batch]])
            .map_err(|e| DataFusionError::Plan(e.to_string()))?;
        Ok(Arc::new(table))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{
        Float64Array, StringDictionaryBuilder, TimestampMicrosecondArray,
    };
    use datafusion::arrow::datatypes::Int32Type;

    fn batch(rows: &[(&str, i64, f64)]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            civiclake_core::time_column(),
            civiclake_core::tag_column("sensor"),
            civiclake_core::field_column("v", DataType::Float64),
        ]));
        let mut tags = StringDictionaryBuilder::<Int32Type>::new();
        for (s, _, _) in rows {
            tags.append_value(s);
        }
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(
                    TimestampMicrosecondArray::from(rows.iter().map(|r| r.1).collect::<Vec<_>>())
                        .with_timezone("UTC"),
                ),
                Arc::new(tags.finish()),
                Arc::new(Float64Array::from(
                    rows.iter().map(|r| r.2).collect::<Vec<_>>(),
                )),
            ],
        )
        .unwrap()
    }

    #[test]
    fn keeps_the_row_of_the_greatest_time_per_series() {
        let cache = LatestCache::default();
        cache.update("air", &batch(&[("a", 1, 1.0)]));
        assert!(cache.batch("air").is_none(), "not enabled yet");
        cache.enable("air", vec!["sensor".into()]);
        cache.update(
            "air",
            &batch(&[("a", 10, 1.0), ("b", 5, 2.0), ("a", 20, 3.0)]),
        );
        // An older reading of a arrives late: it does not replace the newer one.
        cache.update("air", &batch(&[("a", 15, 9.0), ("b", 5, 4.0)]));
        let b = cache.batch("air").unwrap();
        assert_eq!(b.num_rows(), 2);
        let v = b
            .column(2)
            .as_primitive::<datafusion::arrow::datatypes::Float64Type>();
        let t = b.column(0).as_primitive::<TimestampMicrosecondType>();
        // Sorted by series: a then b; b's equal time: the later write wins.
        assert_eq!((t.value(0), v.value(0)), (20, 3.0));
        assert_eq!((t.value(1), v.value(1)), (5, 4.0));
        assert_eq!(cache.series_count("air"), 2);
        assert!(cache.disable("air"));
        assert!(cache.batch("air").is_none());
    }

    #[test]
    fn many_writes_keep_few_batches_alive() {
        let cache = LatestCache::default();
        cache.enable("air", vec!["sensor".into()]);
        for i in 0..200i64 {
            let name = format!("s{}", i % 10);
            cache.update("air", &batch(&[(name.as_str(), i, i as f64)]));
        }
        let entry = cache.tables.read().get("air").cloned().unwrap();
        assert!(entry.lock().batches.len() <= MAX_BATCHES + 1);
        let b = cache.batch("air").unwrap();
        assert_eq!(b.num_rows(), 10);
        let v = b
            .column(2)
            .as_primitive::<datafusion::arrow::datatypes::Float64Type>();
        // s0's latest is i = 190, s9's i = 199.
        assert_eq!(v.value(0), 190.0);
        assert_eq!(v.value(9), 199.0);
    }
}
