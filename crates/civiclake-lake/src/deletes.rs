//! Deletes of a table's rows — by predicate (retention, GDPR) or by key tuple (the delete
//! half of a replace-by-key) — and the set of deletes still pending for its files.
//!
//! A delete removes the matching rows from the buffer at once (on the WAL thread) and is
//! *pending* for the table's Parquet files until the flush that covers its WAL segment
//! rewrites them. Every row in a file was written before every pending delete (a flush
//! applies the deletes of the segments it covers, and its new files only hold rows written
//! before its rotation), so a pending delete applies to every file, whatever its order.

use crate::error::{Error, Result};
use arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch, UInt32Array, new_null_array};
use arrow::compute::kernels::boolean;
use arrow::compute::{cast, filter_record_batch, take_record_batch};
use arrow::datatypes::{DataType, TimestampMicrosecondType};
use arrow::row::{RowConverter, Rows, SortField};
use civiclake_core::{RowPredicate, TIME_COLUMN};
use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

/// Pending key sets are merged with the previous one of the same segment while this small.
const MERGE_KEYS_BELOW: usize = 4096;

fn value_type(data_type: &DataType) -> DataType {
    match data_type {
        DataType::Dictionary(_, v) => v.as_ref().clone(),
        other => other.clone(),
    }
}

/// A set of key tuples: rows whose key columns equal one of them match (NULL equals NULL
/// here: a missing tag is a key value like any other).
#[derive(Debug)]
pub(crate) struct KeySet {
    columns: Vec<String>,
    types: Vec<DataType>,
    converter: RowConverter,
    keys: HashSet<Box<[u8]>>,
    /// Smallest and largest `time` among the keys, when `time` is a key column.
    time_bounds: Option<(i64, i64)>,
}

impl KeySet {
    /// The key tuples of `batch` (every key column must be in it).
    pub(crate) fn from_batch(columns: &[String], batch: &RecordBatch) -> Result<Self> {
        let mut types = Vec::with_capacity(columns.len());
        for c in columns {
            let column = batch.column_by_name(c).ok_or_else(|| {
                Error::InvalidWrite(format!("key column '{c}' is not in the rows"))
            })?;
            types.push(value_type(column.data_type()));
        }
        let converter = converter(&types)?;
        let mut set = Self {
            columns: columns.to_vec(),
            types,
            converter,
            keys: HashSet::new(),
            time_bounds: None,
        };
        let rows = set.rows(batch)?;
        set.keys = rows.iter().map(|r| Box::from(r.as_ref())).collect();
        if columns.iter().any(|c| c == TIME_COLUMN)
            && let Some(t) = batch.column_by_name(TIME_COLUMN).and_then(|c| {
                c.as_any()
                    .downcast_ref::<arrow::array::PrimitiveArray<TimestampMicrosecondType>>()
            })
        {
            set.time_bounds = arrow::compute::min(t).zip(arrow::compute::max(t));
        }
        Ok(set)
    }

    fn rows(&self, batch: &RecordBatch) -> Result<Rows> {
        let columns = self
            .columns
            .iter()
            .zip(&self.types)
            .map(|(name, data_type)| match batch.column_by_name(name) {
                Some(c) if c.data_type() == data_type => Ok(c.clone()),
                Some(c) => Ok(cast(c, data_type)?),
                None => Ok(new_null_array(data_type, batch.num_rows())),
            })
            .collect::<Result<Vec<ArrayRef>>>()?;
        Ok(self.converter.convert_columns(&columns)?)
    }

    /// Which rows of `batch` have a key tuple of the set.
    pub(crate) fn matches(&self, batch: &RecordBatch) -> Result<BooleanArray> {
        if batch.num_rows() == 0 {
            return Ok(BooleanArray::from(Vec::<bool>::new()));
        }
        let rows = self.rows(batch)?;
        Ok(rows
            .iter()
            .map(|r| Some(self.keys.contains(r.as_ref())))
            .collect())
    }

    /// Number of key tuples.
    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    /// The union with `other`, if both have the same key columns.
    fn union(&self, other: &KeySet) -> Option<Result<KeySet>> {
        if self.columns != other.columns || self.types != other.types {
            return None;
        }
        let bounds = match (self.time_bounds, other.time_bounds) {
            (Some((a, b)), Some((c, d))) => Some((a.min(c), b.max(d))),
            _ => None,
        };
        Some(converter(&self.types).map(|converter| KeySet {
            columns: self.columns.clone(),
            types: self.types.clone(),
            converter,
            keys: self.keys.union(&other.keys).cloned().collect(),
            time_bounds: bounds,
        }))
    }
}

fn converter(types: &[DataType]) -> Result<RowConverter> {
    Ok(RowConverter::new(
        types.iter().map(|t| SortField::new(t.clone())).collect(),
    )?)
}

/// Keeps the last row of each key tuple of `batch`: within one replace-by-key, the later
/// row of a key wins.
pub(crate) fn last_of_each_key(columns: &[String], batch: &RecordBatch) -> Result<RecordBatch> {
    let set = KeySet::from_batch(columns, batch)?;
    if set.len() == batch.num_rows() {
        return Ok(batch.clone());
    }
    let rows = set.rows(batch)?;
    let mut seen = HashSet::with_capacity(set.len());
    let mut keep: Vec<u32> = Vec::with_capacity(set.len());
    for i in (0..rows.num_rows()).rev() {
        if seen.insert(rows.row(i).as_ref().to_vec()) {
            keep.push(i as u32);
        }
    }
    keep.reverse();
    Ok(take_record_batch(batch, &UInt32Array::from(keep))?)
}

/// What a delete removes.
#[derive(Debug, Clone)]
pub(crate) enum DeleteKind {
    /// Rows where the (bound) predicate is TRUE.
    Where(RowPredicate),
    /// Rows whose key tuple is in the set.
    Keys(Arc<KeySet>),
}

impl DeleteKind {
    /// Which rows of `batch` the delete removes (no NULLs in the answer).
    pub(crate) fn matches(&self, batch: &RecordBatch) -> Result<BooleanArray> {
        match self {
            DeleteKind::Where(p) => p
                .matches(batch)
                .map_err(|e| Error::Internal(format!("delete predicate {p}: {e}"))),
            DeleteKind::Keys(k) => k.matches(batch),
        }
    }

    fn columns(&self, out: &mut BTreeSet<String>) {
        match self {
            DeleteKind::Where(p) => out.extend(p.columns()),
            DeleteKind::Keys(k) => out.extend(k.columns.iter().cloned()),
        }
    }

    fn may_match_time_range(&self, min: i64, max: i64) -> bool {
        match self {
            DeleteKind::Where(p) => p.may_match_time_range(min, max),
            DeleteKind::Keys(k) => k.time_bounds.is_none_or(|(lo, hi)| lo <= max && hi >= min),
        }
    }

    fn describe(&self) -> String {
        match self {
            DeleteKind::Where(p) => p.to_string(),
            DeleteKind::Keys(k) => format!("({}) IN {} key tuples", k.columns.join(", "), k.len()),
        }
    }
}

/// A delete logged in WAL segment `segment`, not yet applied to the table's files.
#[derive(Debug, Clone)]
pub(crate) struct PendingDelete {
    pub(crate) segment: u64,
    pub(crate) kind: DeleteKind,
}

/// Adds a pending delete, merging a key set into the previous one of the same segment.
pub(crate) fn push_pending(pending: &mut Vec<PendingDelete>, segment: u64, kind: DeleteKind) {
    if let (
        DeleteKind::Keys(new),
        Some(PendingDelete {
            segment: last_segment,
            kind: DeleteKind::Keys(last),
        }),
    ) = (&kind, pending.last_mut())
        && *last_segment == segment
        && last.len() < MERGE_KEYS_BELOW
        && let Some(Ok(merged)) = last.union(new)
    {
        *last = Arc::new(merged);
        return;
    }
    pending.push(PendingDelete { segment, kind });
}

/// Removes the rows `kind` matches from `batches` in place (a batch may become empty; the
/// slots stay, so a flush in progress still knows which batches it took). Returns the number
/// of rows removed.
pub(crate) fn delete_from_batches(
    table: &str,
    batches: &mut [RecordBatch],
    kind: &DeleteKind,
) -> usize {
    let mut removed = 0;
    for batch in batches.iter_mut().filter(|b| b.num_rows() > 0) {
        let result = kind.matches(batch).and_then(|mask| {
            let hit = mask.true_count();
            if hit == 0 {
                return Ok(None);
            }
            let keep = boolean::not(&mask)?;
            Ok(Some((hit, filter_record_batch(batch, &keep)?)))
        });
        match result {
            Ok(Some((hit, kept))) => {
                removed += hit;
                *batch = kept;
            }
            Ok(None) => {}
            Err(e) => {
                tracing::error!(table, error = %e, "could not apply a delete to buffered rows");
            }
        }
    }
    removed
}

/// The deletes of a table still pending for its Parquet files: rows of the files that any of
/// them matches are deleted already and must not be read.
#[derive(Debug, Clone, Default)]
pub struct DeleteSet {
    entries: Arc<Vec<PendingDelete>>,
}

impl DeleteSet {
    pub(crate) fn new(entries: Arc<Vec<PendingDelete>>) -> Self {
        Self { entries }
    }

    /// No delete is pending.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Number of pending deletes.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The columns the deletes read (a scan must read them to apply the deletes).
    pub fn columns(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        self.entries.iter().for_each(|e| e.kind.columns(&mut out));
        out
    }

    /// Which rows of `batch` are deleted (TRUE where any pending delete matches).
    pub fn deleted(&self, batch: &RecordBatch) -> Result<BooleanArray> {
        let mut acc = BooleanArray::from(vec![false; batch.num_rows()]);
        for e in self.entries.iter() {
            acc = boolean::or(&acc, &e.kind.matches(batch)?)?;
        }
        Ok(acc)
    }

    /// The rows of `batch` that no pending delete matches.
    pub fn retain(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        if self.is_empty() || batch.num_rows() == 0 {
            return Ok(batch.clone());
        }
        let deleted = self.deleted(batch)?;
        if deleted.true_count() == 0 {
            return Ok(batch.clone());
        }
        Ok(filter_record_batch(batch, &boolean::not(&deleted)?)?)
    }

    /// Whether a delete may match a row with `time` in `[min, max]` (µs).
    pub(crate) fn may_match_time_range(&self, min: i64, max: i64) -> bool {
        self.entries
            .iter()
            .any(|e| e.kind.may_match_time_range(min, max))
    }

    /// The deletes as text, for the Delta commit's description.
    pub(crate) fn describe(&self) -> String {
        self.entries
            .iter()
            .map(|e| e.kind.describe())
            .collect::<Vec<_>>()
            .join(" OR ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{AsArray, Float64Array, StringDictionaryBuilder, TimestampMicrosecondArray};
    use arrow::datatypes::{Float64Type, Int32Type, Schema};
    use civiclake_core::{CompareOp, field_column, tag_column, time_column};

    fn batch(rows: &[(Option<&str>, i64, f64)]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            time_column(),
            tag_column("sensor"),
            field_column("v", DataType::Float64),
        ]));
        let mut tags = StringDictionaryBuilder::<Int32Type>::new();
        rows.iter().for_each(|r| tags.append_option(r.0));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(
                    TimestampMicrosecondArray::from_iter_values(rows.iter().map(|r| r.1))
                        .with_timezone("UTC"),
                ),
                Arc::new(tags.finish()),
                Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.2))),
            ],
        )
        .unwrap()
    }

    fn values(b: &RecordBatch) -> Vec<f64> {
        b.column(2).as_primitive::<Float64Type>().values().to_vec()
    }

    #[test]
    fn key_sets_match_by_value_and_null_equals_null() {
        let keys = vec!["sensor".to_string(), "time".to_string()];
        let set =
            KeySet::from_batch(&keys, &batch(&[(Some("a"), 10, 0.0), (None, 20, 0.0)])).unwrap();
        let data = batch(&[
            (Some("a"), 10, 1.0),
            (Some("a"), 20, 2.0),
            (None, 20, 3.0),
            (Some("b"), 10, 4.0),
        ]);
        let hit: Vec<bool> = set
            .matches(&data)
            .unwrap()
            .iter()
            .map(Option::unwrap)
            .collect();
        assert_eq!(hit, [true, false, true, false]);
        assert_eq!(set.time_bounds, Some((10, 20)));
        // A batch without the key column: its keys are all NULL.
        let only_time = data.project(&[0, 2]).unwrap();
        let single =
            KeySet::from_batch(&["sensor".to_string()], &batch(&[(None, 1, 0.0)])).unwrap();
        assert_eq!(single.matches(&only_time).unwrap().true_count(), 4);
    }

    #[test]
    fn the_last_row_of_a_key_wins() {
        let b = batch(&[
            (Some("a"), 1, 1.0),
            (Some("b"), 1, 2.0),
            (Some("a"), 1, 3.0),
        ]);
        let kept = last_of_each_key(&["sensor".to_string()], &b).unwrap();
        assert_eq!(values(&kept), [2.0, 3.0]);
    }

    #[test]
    fn deletes_remove_rows_in_place_and_merge_key_sets() {
        let mut batches = vec![
            batch(&[(Some("a"), 1, 1.0), (Some("b"), 2, 2.0)]),
            batch(&[(Some("a"), 3, 3.0)]),
        ];
        let kind = DeleteKind::Where(RowPredicate::eq("sensor", "a"));
        assert_eq!(delete_from_batches("t", &mut batches, &kind), 2);
        assert_eq!(batches.len(), 2);
        assert_eq!(values(&batches[0]), [2.0]);
        assert_eq!(batches[1].num_rows(), 0);

        let mut pending = Vec::new();
        let k = |s: &str| {
            DeleteKind::Keys(Arc::new(
                KeySet::from_batch(&["sensor".to_string()], &batch(&[(Some(s), 0, 0.0)])).unwrap(),
            ))
        };
        push_pending(&mut pending, 5, k("a"));
        push_pending(&mut pending, 5, k("b"));
        push_pending(&mut pending, 6, k("c"));
        push_pending(&mut pending, 6, kind);
        assert_eq!(pending.len(), 3);
        let set = DeleteSet::new(Arc::new(pending));
        let data = batch(&[
            (Some("a"), 1, 1.0),
            (Some("b"), 1, 2.0),
            (Some("c"), 1, 3.0),
            (Some("d"), 1, 4.0),
            (None, 1, 5.0),
        ]);
        assert_eq!(values(&set.retain(&data).unwrap()), [4.0, 5.0]);
        assert_eq!(set.columns().into_iter().collect::<Vec<_>>(), ["sensor"]);
        assert_eq!(
            set.describe(),
            "(sensor) IN 2 key tuples OR (sensor) IN 1 key tuples OR sensor = 'a'"
        );
    }

    #[test]
    fn time_bounds_skip_files() {
        let old = DeleteKind::Where(RowPredicate::compare(
            TIME_COLUMN,
            CompareOp::Lt,
            civiclake_core::Literal::Timestamp(100),
        ));
        let set = DeleteSet::new(Arc::new(vec![PendingDelete {
            segment: 1,
            kind: old,
        }]));
        assert!(set.may_match_time_range(0, 99));
        assert!(!set.may_match_time_range(100, 500));
    }
}
