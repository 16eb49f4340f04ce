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
    /// Series values as numbers: text → id, and id → text.
    ids: FastMap<Box<str>, u32>,
    texts: Vec<Box<str>>,
    /// A series (one value id per series column, [`NULL`] for none) → its slot: its ids
    /// packed in a number for one or two series columns, as a list for more.
    index: FastMap<u64, usize>,
    index_long: FastMap<Box<[u32]>, usize>,
    /// Per series: its key, and the time, batch and row of its latest row.
    slots: Vec<Slot>,
    /// The slots in the order of their series' values, until a series is added.
    order: Option<Vec<usize>>,
    /// The rows as one batch, until the next change.
    built: Option<RecordBatch>,
}

#[derive(Debug)]
struct Slot {
    key: Box<[u32]>,
    time: i64,
    batch: usize,
    row: usize,
}

/// The id of a missing series value.
const NULL: u32 = u32::MAX;

/// A series key of one or two value ids packed in one number (None for more columns).
fn packed(key: &[u32]) -> Option<u64> {
    match *key {
        [a] => Some(u64::from(a)),
        [a, b] => Some(u64::from(a) << 32 | u64::from(b)),
        _ => None,
    }
}

/// Maps looked up once per written row: a fast hash (the keys are not chosen by an attacker
/// who could see the hash: series values come from authenticated writers and a collision
/// only costs time).
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

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
                ids: FastMap::default(),
                texts: Vec::new(),
                index: FastMap::default(),
                index_long: FastMap::default(),
                slots: Vec::new(),
                order: None,
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
            .map_or(0, |e| e.lock().slots.len())
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
        // The series columns as value ids, once per batch (a dictionary's values once).
        let series: Vec<Option<Vec<u32>>> = (0..self.series.len())
            .map(|i| {
                let column = schema.index_of(&self.series[i]).ok()?;
                self.value_ids(batch.column(column))
            })
            .collect();
        let index = self.batches.len();
        let mut used = false;
        let mut key = vec![NULL; series.len()];
        for row in 0..batch.num_rows() {
            if time.is_null(row) {
                continue;
            }
            let t = time.value(row);
            for (k, ids) in key.iter_mut().zip(&series) {
                *k = ids.as_ref().map_or(NULL, |ids| ids[row]);
            }
            let packed = packed(&key);
            let found = match packed {
                Some(p) => self.index.get(&p).copied(),
                None => self.index_long.get(key.as_slice()).copied(),
            };
            match found {
                Some(slot) => {
                    let slot = &mut self.slots[slot];
                    if slot.time > t {
                        continue;
                    }
                    (slot.time, slot.batch, slot.row) = (t, index, row);
                }
                None => {
                    let slot = self.slots.len();
                    match packed {
                        Some(p) => self.index.insert(p, slot),
                        None => self.index_long.insert(key.clone().into_boxed_slice(), slot),
                    };
                    self.slots.push(Slot {
                        key: key.clone().into_boxed_slice(),
                        time: t,
                        batch: index,
                        row,
                    });
                    self.order = None;
                }
            }
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

    /// The value id of every row of a series column (None: not text).
    fn value_ids(&mut self, column: &ArrayRef) -> Option<Vec<u32>> {
        if let Some(dict) = column.as_any_dictionary_opt() {
            // A dictionary may hold more values than its rows use (a filtered or sliced batch
            // keeps the whole dictionary): only the used ones are looked up, once each.
            let values = cast(dict.values(), &DataType::Utf8).ok()?;
            let values = values.as_string::<i32>();
            let mut memo = vec![None::<u32>; values.len()];
            let keys = dict.normalized_keys();
            return Some(
                (0..column.len())
                    .map(|row| {
                        let key = keys[row];
                        if !column.is_valid(row) || key >= values.len() || values.is_null(key) {
                            return NULL;
                        }
                        *memo[key].get_or_insert_with(|| self.intern(values.value(key)))
                    })
                    .collect(),
            );
        }
        let text = cast(column, &DataType::Utf8).ok()?;
        let text = text.as_string::<i32>();
        Some(
            (0..text.len())
                .map(|row| {
                    if text.is_valid(row) {
                        self.intern(text.value(row))
                    } else {
                        NULL
                    }
                })
                .collect(),
        )
    }

    fn intern(&mut self, value: &str) -> u32 {
        if let Some(&id) = self.ids.get(value) {
            return id;
        }
        let id = self.texts.len() as u32;
        self.texts.push(value.into());
        self.ids.insert(value.into(), id);
        id
    }

    /// The slots ordered by their series' values (a missing value first).
    fn order(&mut self) -> &[usize] {
        if self.order.is_none() {
            let text = |id: u32| (id != NULL).then(|| &*self.texts[id as usize]);
            let mut order: Vec<usize> = (0..self.slots.len()).collect();
            order.sort_by(|&a, &b| {
                let (a, b) = (&self.slots[a].key, &self.slots[b].key);
                a.iter().map(|&i| text(i)).cmp(b.iter().map(|&i| text(i)))
            });
            self.order = Some(order);
        }
        self.order.as_deref().unwrap_or_default()
    }

    /// Copies the latest rows into one batch and lets the others go.
    fn compact(&mut self) {
        let built = self.build();
        let order = self.order().to_vec();
        for (position, slot) in order.into_iter().enumerate() {
            let slot = &mut self.slots[slot];
            (slot.batch, slot.row) = (0, position);
        }
        self.batches = vec![built.clone()];
        self.built = Some(built);
    }

    fn build(&mut self) -> RecordBatch {
        if let Some(b) = &self.built {
            return b.clone();
        }
        let schema: SchemaRef = Arc::new(Schema::new(self.fields.clone()));
        let indices: Vec<(usize, usize)> = self
            .order()
            .to_vec()
            .into_iter()
            .map(|slot| (self.slots[slot].batch, self.slots[slot].row))
            .collect();
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

    #[test]
    fn series_of_plain_text_and_missing_values_sort_missing_first() {
        let schema = Arc::new(Schema::new(vec![
            civiclake_core::time_column(),
            Field::new("zone", DataType::Utf8, true),
            civiclake_core::tag_column("sensor"),
            civiclake_core::field_column("v", DataType::Float64),
        ]));
        let write = |zones: Vec<Option<&str>>, sensors: Vec<&str>, times: Vec<i64>| {
            let mut tags = StringDictionaryBuilder::<Int32Type>::new();
            for s in &sensors {
                tags.append_value(s);
            }
            let v: Vec<f64> = times.iter().map(|t| *t as f64).collect();
            RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(TimestampMicrosecondArray::from(times).with_timezone("UTC")),
                    Arc::new(datafusion::arrow::array::StringArray::from(zones)),
                    Arc::new(tags.finish()),
                    Arc::new(Float64Array::from(v)),
                ],
            )
            .unwrap()
        };
        let cache = LatestCache::default();
        cache.enable("air", vec!["zone".into(), "sensor".into()]);
        cache.update(
            "air",
            &write(
                vec![Some("b"), None, Some("a")],
                vec!["x", "x", "x"],
                vec![1, 2, 3],
            ),
        );
        // The same series again (newer), and a new one after a compaction.
        for t in 10..80 {
            cache.update("air", &write(vec![Some("b")], vec!["x"], vec![t]));
        }
        cache.update("air", &write(vec![Some("a")], vec!["w"], vec![100]));
        let b = cache.batch("air").unwrap();
        let zone = cast(b.column(1), &DataType::Utf8).unwrap();
        let zone = zone.as_string::<i32>();
        let sensor = cast(b.column(2), &DataType::Utf8).unwrap();
        let sensor = sensor.as_string::<i32>();
        let rows: Vec<(Option<&str>, &str, f64)> = (0..b.num_rows())
            .map(|r| {
                let v = b
                    .column(3)
                    .as_primitive::<datafusion::arrow::datatypes::Float64Type>();
                (
                    zone.is_valid(r).then(|| zone.value(r)),
                    sensor.value(r),
                    v.value(r),
                )
            })
            .collect();
        assert_eq!(
            rows,
            vec![
                (None, "x", 2.0),
                (Some("a"), "w", 100.0),
                (Some("a"), "x", 3.0),
                (Some("b"), "x", 79.0)
            ]
        );
    }

    #[test]
    fn series_of_more_than_two_columns() {
        let cache = LatestCache::default();
        // Two of the three columns are not in the writes (yet): their values are missing.
        cache.enable("air", vec!["sensor".into(), "zone".into(), "site".into()]);
        cache.update(
            "air",
            &batch(&[("a", 10, 1.0), ("b", 5, 2.0), ("a", 7, 3.0)]),
        );
        cache.update("air", &batch(&[("b", 6, 4.0)]));
        let b = cache.batch("air").unwrap();
        let v = b
            .column(2)
            .as_primitive::<datafusion::arrow::datatypes::Float64Type>();
        assert_eq!((b.num_rows(), v.value(0), v.value(1)), (2, 1.0, 4.0));
    }
}
