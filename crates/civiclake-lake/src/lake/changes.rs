//! Changes beyond appended rows: replace-by-key, delete-where and checkpoints — their public
//! API, how they are logged and applied, replayed at start, and applied to the files by a
//! flush (copy-on-write rewrite).

use super::{Catalog, Lake, get_or_create};
use crate::deletes::{DeleteKind, DeleteSet, KeySet, last_of_each_key};
use crate::error::{Error, Result};
use crate::parquet_io::read_parquet;
use crate::table::{DataFile, Table, project, validate_batch};
use crate::wal::{Entry, encode_record};
use arrow::array::{Array, AsArray, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Schema, SchemaRef, TimestampMicrosecondType};
use civiclake_core::{
    RowPredicate, TIME_COLUMN, field_column, tag_column, time_column, validate_table_name,
};
use object_store::{ObjectStore, ObjectStoreExt};
use parking_lot::{Mutex, RwLock};
use serde_json::Value;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

/// The system table of checkpoints: one row per name (`name` tag, `value` JSON text, `time`
/// of the last change), maintained with replace-by-key on `name`.
pub const CHECKPOINTS_TABLE: &str = "_checkpoints";

#[cfg(test)]
mod tests;

/// Longest checkpoint name (bytes).
const MAX_CHECKPOINT_NAME: usize = 256;

/// The schema of [`CHECKPOINTS_TABLE`].
pub(super) fn checkpoints_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        time_column(),
        tag_column("name"),
        field_column("value", DataType::Utf8),
    ]))
}

/// Shared map of the latest checkpoint values.
pub(super) type Checkpoints = Arc<RwLock<BTreeMap<String, Value>>>;

/// One change of a [`Lake::apply`] call; the changes of one call are logged in one WAL
/// record and applied together, in order.
#[derive(Debug, Clone)]
pub enum Change {
    /// Rows appended to `table` (created on first write).
    Rows {
        /// Table name.
        table: String,
        /// The rows.
        batch: RecordBatch,
    },
    /// Rows of `table` whose values in `key_columns` equal those of a row of `batch` are
    /// deleted (from the buffer and the files), then `batch` is appended — atomically. Within
    /// `batch` the last row of a key wins. Key values compare NULL equal to NULL.
    ReplaceByKey {
        /// Table name.
        table: String,
        /// Columns whose values identify a row (e.g. `sensor`, `time` of an aggregate).
        key_columns: Vec<String>,
        /// The new rows.
        batch: RecordBatch,
    },
    /// Rows of `table` where `predicate` is TRUE are deleted (a row where it is NULL is kept).
    DeleteWhere {
        /// Table name.
        table: String,
        /// The condition.
        predicate: RowPredicate,
    },
    /// The checkpoint `name` takes `value` (pipeline state, Kafka offsets). A value that is a
    /// JSON integer ≥ 0 is a *version*: the Delta commit that flushes the rows written by the
    /// same [`Lake::apply`] call carries it as a transaction identifier (`txn` action, app id
    /// = `name`), see [`Lake::delta_transaction_version`].
    Checkpoint {
        /// Checkpoint name (1–256 bytes, no control characters).
        name: String,
        /// Its new value.
        value: Value,
    },
}

/// Sees every [`Lake::apply`] call before it is logged and after it is acknowledged
/// (continuous pipelines, the last-value cache). Not called for the WAL replay at open.
///
/// Both calls are synchronous and on the writer's task: keep them cheap (a look at the
/// `time` column, a map update); anything slow belongs in a task of the observer's own.
pub trait WriteObserver: Send + Sync + std::fmt::Debug {
    /// May change what is about to be logged, e.g. divert rows to another table or add
    /// rows; whatever it leaves in `changes` is checked and logged as one record.
    /// `now_micros` is the arrival time.
    fn before_write(&self, changes: &mut Vec<Change>, now_micros: i64) {
        let _ = (changes, now_micros);
    }

    /// The rows (by [`Change::Rows`] and [`Change::ReplaceByKey`]) of a record that is now
    /// durable and visible to queries, with the record's arrival time.
    fn after_write(&self, rows: &[(String, RecordBatch)], now_micros: i64) {
        let _ = (rows, now_micros);
    }
}

/// What [`Lake::apply`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ChangeOutcome {
    /// Rows appended (by rows and replace-by-key changes).
    pub rows_written: usize,
    /// Buffered rows deleted (by deletes and replacements).
    pub buffer_rows_deleted: usize,
    /// Whether a delete still has to reach rows in files (until the next flush, queries
    /// filter them out).
    pub pending_for_files: bool,
}

/// What [`Lake::delete_where`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct DeleteOutcome {
    /// Buffered rows deleted at once.
    pub buffer_rows_deleted: usize,
    /// Whether the table has files (or rows being flushed) the delete still has to reach:
    /// they are hidden from queries now and rewritten by the next flush.
    pub pending_for_files: bool,
}

/// A change checked and ready to apply on the WAL thread.
pub(super) enum Op {
    Rows {
        table: Arc<Table>,
        batch: RecordBatch,
    },
    Replace {
        table: Arc<Table>,
        keys: Arc<KeySet>,
        batch: RecordBatch,
    },
    Delete {
        table: Arc<Table>,
        predicate: RowPredicate,
    },
    Checkpoint {
        table: Arc<Table>,
        keys: Arc<KeySet>,
        batch: RecordBatch,
        name: String,
        value: Value,
    },
}

/// Applies checked changes in order (on the WAL thread, or at replay) to the buffers, the
/// pending deletes and the checkpoint map.
///
/// The checkpoints of the record whose value is a version (a JSON integer ≥ 0, e.g. a Kafka
/// offset) are noted on every table the record appends rows to: the flush that commits those
/// rows to Delta records each as a `txn` action (app id = checkpoint name, version = value).
pub(super) fn apply_ops(ops: Vec<Op>, segment: u64, checkpoints: &Checkpoints) -> ChangeOutcome {
    let mut out = ChangeOutcome::default();
    let mut written: Vec<Arc<Table>> = Vec::new();
    let mut versions: Vec<(String, i64)> = Vec::new();
    let mut note_written = |table: &Arc<Table>| {
        if !written.iter().any(|t| Arc::ptr_eq(t, table)) {
            written.push(table.clone());
        }
    };
    for op in ops {
        match op {
            Op::Rows { table, batch } => {
                out.rows_written += batch.num_rows();
                note_written(&table);
                table.append(batch);
            }
            Op::Replace { table, keys, batch } => {
                let (deleted, _) = table.delete(DeleteKind::Keys(keys), segment);
                out.buffer_rows_deleted += deleted;
                out.rows_written += batch.num_rows();
                note_written(&table);
                table.append(batch);
            }
            Op::Delete { table, predicate } => {
                let (deleted, reaches_files) = table.delete(DeleteKind::Where(predicate), segment);
                out.buffer_rows_deleted += deleted;
                out.pending_for_files |= reaches_files;
            }
            Op::Checkpoint {
                table,
                keys,
                batch,
                name,
                value,
            } => {
                table.delete(DeleteKind::Keys(keys), segment);
                table.append(batch);
                if let Some(version) = value.as_i64().filter(|v| *v >= 0) {
                    versions.push((name.clone(), version));
                }
                checkpoints.write().insert(name, value);
            }
        }
    }
    if !versions.is_empty() {
        for table in &written {
            table.note_versions(&versions);
        }
    }
    out
}

fn reject_system_table(table: &str) -> Result<()> {
    if table == CHECKPOINTS_TABLE {
        return Err(Error::InvalidWrite(format!(
            "table '{CHECKPOINTS_TABLE}' is maintained by the lake: set checkpoints instead"
        )));
    }
    Ok(())
}

fn validate_checkpoint_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > MAX_CHECKPOINT_NAME || name.chars().any(char::is_control) {
        return Err(Error::InvalidWrite(format!(
            "invalid checkpoint name {name:?}: use 1-{MAX_CHECKPOINT_NAME} bytes without control characters"
        )));
    }
    Ok(())
}

fn checkpoint_batch(name: &str, time: i64, value: &str) -> Result<RecordBatch> {
    let mut names = arrow::array::StringDictionaryBuilder::<arrow::datatypes::Int32Type>::new();
    names.append_value(name);
    Ok(RecordBatch::try_new(
        checkpoints_schema(),
        vec![
            Arc::new(TimestampMicrosecondArray::from(vec![time]).with_timezone("UTC")),
            Arc::new(names.finish()),
            Arc::new(StringArray::from(vec![value])),
        ],
    )?)
}

fn checkpoint_keys(batch: &RecordBatch) -> Result<Arc<KeySet>> {
    Ok(Arc::new(KeySet::from_batch(&["name".to_string()], batch)?))
}

/// The table of the checkpoints, created with its schema when missing.
pub(super) fn checkpoints_table(catalog: &Catalog) -> Result<Arc<Table>> {
    ensure_system_table(catalog, CHECKPOINTS_TABLE, &checkpoints_schema())
}

/// A system table, created empty with `schema` if the catalog lacks it, so it can be queried
/// before anything is written to it.
pub(super) fn ensure_system_table(
    catalog: &Catalog,
    name: &str,
    schema: &Schema,
) -> Result<Arc<Table>> {
    let table = get_or_create(catalog, name);
    table.evolve(schema)?;
    Ok(table)
}

/// Checks the key columns of a replace-by-key and keeps the last row of each key.
fn replace_rows(table: &str, key_columns: &[String], batch: &RecordBatch) -> Result<RecordBatch> {
    if key_columns.is_empty() {
        return Err(Error::InvalidWrite(format!(
            "replace-by-key on table '{table}' needs at least one key column"
        )));
    }
    let mut seen = HashSet::new();
    for k in key_columns {
        if !seen.insert(k.as_str()) {
            return Err(Error::InvalidWrite(format!(
                "key column '{k}' is given twice"
            )));
        }
        if batch.schema().column_with_name(k).is_none() {
            return Err(Error::InvalidWrite(format!(
                "unknown key column '{k}': the rows for table '{table}' have no such column"
            )));
        }
    }
    last_of_each_key(key_columns, batch)
}

/// The change an entry read back from the WAL makes, or `None` when it has nothing to act on.
pub(super) fn op_from_entry(catalog: &Catalog, entry: Entry) -> Result<Option<Op>> {
    Ok(Some(match entry {
        Entry::Rows { table, batch } => {
            let t = get_or_create(catalog, &table);
            t.evolve(&batch.schema())?;
            Op::Rows { table: t, batch }
        }
        Entry::ReplaceByKey { table, keys, batch } => {
            let t = get_or_create(catalog, &table);
            t.evolve(&batch.schema())?;
            let keys = Arc::new(KeySet::from_batch(&keys, &batch)?);
            Op::Replace {
                table: t,
                keys,
                batch,
            }
        }
        Entry::DeleteWhere { table, predicate } => {
            let Some(t) = catalog.read().get(&table).cloned() else {
                return Ok(None);
            };
            Op::Delete {
                table: t,
                predicate,
            }
        }
        Entry::Checkpoint { name, time, value } => {
            let parsed: Value = serde_json::from_str(&value)
                .map_err(|e| Error::Internal(format!("checkpoint '{name}' value: {e}")))?;
            let t = checkpoints_table(catalog)?;
            let batch = checkpoint_batch(&name, time, &value)?;
            Op::Checkpoint {
                table: t,
                keys: checkpoint_keys(&batch)?,
                batch,
                name,
                value: parsed,
            }
        }
    }))
}

/// The table an entry changes.
fn entry_table(entry: &Entry) -> &str {
    match entry {
        Entry::Rows { table, .. }
        | Entry::ReplaceByKey { table, .. }
        | Entry::DeleteWhere { table, .. } => table,
        Entry::Checkpoint { .. } => CHECKPOINTS_TABLE,
    }
}

/// Replays one WAL record of `segment` at start: entries of tables whose Delta commits
/// already cover the segment are skipped. Returns the rows appended and the changes applied.
pub(super) fn replay_record(
    catalog: &Catalog,
    checkpoints: &Checkpoints,
    covered: &BTreeMap<String, u64>,
    segment: u64,
    record: Vec<Entry>,
) -> (usize, usize) {
    let mut ops = Vec::with_capacity(record.len());
    for entry in record {
        let table = entry_table(&entry).to_string();
        if covered.get(&table).is_some_and(|&v| segment <= v) {
            continue;
        }
        match op_from_entry(catalog, entry) {
            Ok(Some(op)) => ops.push(op),
            Ok(None) => {}
            Err(e) => {
                tracing::error!(table = %table, segment, error = %e, "WAL entry does not fit its table; skipped");
            }
        }
    }
    let applied = ops.len();
    let outcome = apply_ops(ops, segment, checkpoints);
    (outcome.rows_written, applied)
}

/// Every row of a table as a query would see it (files with pending deletes dropped, then
/// the buffer).
pub(super) async fn read_all(store: &dyn ObjectStore, table: &Table) -> Result<Vec<RecordBatch>> {
    let snap = table.snapshot()?;
    let mut out = Vec::new();
    for f in snap.files.iter() {
        let data = store.get(&f.location).await?.bytes().await?;
        for b in read_parquet(data)? {
            out.push(snap.deletes.retain(&project(&b, &snap.schema)?)?);
        }
    }
    out.extend(snap.batches);
    Ok(out)
}

/// The latest value of each checkpoint, from the checkpoints table.
pub(super) async fn load_checkpoints(
    catalog: &Catalog,
    store: &dyn ObjectStore,
) -> Result<BTreeMap<String, Value>> {
    let Some(table) = catalog.read().get(CHECKPOINTS_TABLE).cloned() else {
        return Ok(BTreeMap::new());
    };
    let mut latest: BTreeMap<String, (i64, Value)> = BTreeMap::new();
    for batch in read_all(store, &table).await? {
        let (Some(time), Some(name), Some(value)) = (
            batch.column_by_name(TIME_COLUMN),
            batch.column_by_name("name"),
            batch.column_by_name("value"),
        ) else {
            continue;
        };
        let time = time.as_primitive::<TimestampMicrosecondType>();
        let name = arrow::compute::cast(name, &DataType::Utf8)?;
        let name = name.as_string::<i32>();
        let value = arrow::compute::cast(value, &DataType::Utf8)?;
        let value = value.as_string::<i32>();
        for i in 0..batch.num_rows() {
            if name.is_null(i) || value.is_null(i) {
                continue;
            }
            let parsed = match serde_json::from_str::<Value>(value.value(i)) {
                Ok(v) => v,
                Err(e) => {
                    tracing::error!(checkpoint = name.value(i), error = %e, "checkpoint value is not JSON; ignored");
                    continue;
                }
            };
            let t = time.value(i);
            if latest.get(name.value(i)).is_none_or(|(old, _)| t >= *old) {
                latest.insert(name.value(i).to_string(), (t, parsed));
            }
        }
    }
    Ok(latest.into_iter().map(|(k, (_, v))| (k, v)).collect())
}

/// Files of a table rewritten by a flush to apply deletes.
#[derive(Debug, Default)]
pub(super) struct Rewrite {
    /// Files replaced (removed from the table).
    pub(super) removed: Vec<DataFile>,
    /// Add actions of their replacements.
    pub(super) adds: Vec<deltalake::kernel::Add>,
    /// Their replacements.
    pub(super) files: Vec<DataFile>,
    /// Rows the deletes removed from the files.
    pub(super) rows_deleted: usize,
}

impl Lake {
    /// Applies changes durably and atomically: they are checked, logged in one WAL record
    /// (fsynced), then applied to the buffer in order; deletes are pending for the files
    /// until the next flush rewrites them (queries do not see the deleted rows meanwhile).
    pub async fn apply(&self, mut changes: Vec<Change>) -> Result<ChangeOutcome> {
        let wal = self.wal.as_ref().ok_or(Error::ReadOnly)?;
        if self.shutting_down.load(Ordering::Acquire) {
            return Err(Error::ShuttingDown);
        }
        self.check_saturation()?;
        let observers = self.observers.read().clone();
        let now = chrono::Utc::now().timestamp_micros();
        let mut observed = Vec::new();
        if !observers.is_empty() {
            for o in &observers {
                o.before_write(&mut changes, now);
            }
            for change in &changes {
                if let Change::Rows { table, batch } | Change::ReplaceByKey { table, batch, .. } =
                    change
                    && batch.num_rows() > 0
                {
                    observed.push((table.clone(), batch.clone()));
                }
            }
        }
        let mut entries = Vec::with_capacity(changes.len());
        let mut ops = Vec::with_capacity(changes.len());
        for change in changes {
            self.prepare(change, &mut entries, &mut ops)?;
        }
        if entries.is_empty() {
            return Ok(ChangeOutcome::default());
        }
        let record = encode_record(&entries)?;
        drop(entries);
        let outcome = Arc::new(Mutex::new(ChangeOutcome::default()));
        let (out, checkpoints) = (outcome.clone(), self.checkpoints.clone());
        wal.append(
            record,
            Box::new(move |segment| {
                *out.lock() = apply_ops(ops, segment, &checkpoints);
            }),
        )
        .await?;
        let outcome = *outcome.lock();
        self.first_unflushed.lock().get_or_insert_with(Instant::now);
        self.metrics
            .rows_written
            .fetch_add(outcome.rows_written as u64, Ordering::Relaxed);
        self.metrics.writes.fetch_add(1, Ordering::Relaxed);
        if !observed.is_empty() {
            for o in &observers {
                o.after_write(&observed, now);
            }
        }
        Ok(outcome)
    }

    /// Adds an observer of every later write (see [`WriteObserver`]).
    pub fn add_observer(&self, observer: Arc<dyn WriteObserver>) {
        self.observers.write().push(observer);
    }

    /// Removes an observer added with [`Lake::add_observer`] (compared by pointer).
    pub fn remove_observer(&self, observer: &Arc<dyn WriteObserver>) {
        self.observers.write().retain(|o| !Arc::ptr_eq(o, observer));
    }

    fn prepare(&self, change: Change, entries: &mut Vec<Entry>, ops: &mut Vec<Op>) -> Result<()> {
        match change {
            Change::Rows { table, batch } => {
                if batch.num_rows() == 0 {
                    return Ok(());
                }
                validate_table_name(&table).map_err(Error::InvalidWrite)?;
                reject_system_table(&table)?;
                validate_batch(&batch)?;
                let t = get_or_create(&self.catalog, &table);
                t.evolve(&batch.schema())?;
                ops.push(Op::Rows {
                    table: t,
                    batch: batch.clone(),
                });
                entries.push(Entry::Rows { table, batch });
            }
            Change::ReplaceByKey {
                table,
                key_columns,
                batch,
            } => {
                if batch.num_rows() == 0 {
                    return Ok(());
                }
                validate_table_name(&table).map_err(Error::InvalidWrite)?;
                reject_system_table(&table)?;
                validate_batch(&batch)?;
                let batch = replace_rows(&table, &key_columns, &batch)?;
                let keys = Arc::new(KeySet::from_batch(&key_columns, &batch)?);
                let t = get_or_create(&self.catalog, &table);
                t.evolve(&batch.schema())?;
                ops.push(Op::Replace {
                    table: t,
                    keys,
                    batch: batch.clone(),
                });
                entries.push(Entry::ReplaceByKey {
                    table,
                    keys: key_columns,
                    batch,
                });
            }
            Change::DeleteWhere { table, predicate } => {
                reject_system_table(&table)?;
                let t = self
                    .catalog
                    .read()
                    .get(&table)
                    .cloned()
                    .ok_or_else(|| Error::TableNotFound(table.clone()))?;
                let schema = t.state.lock().schema.clone();
                let predicate =
                    predicate
                        .bind(&schema)
                        .map_err(|source| Error::InvalidPredicate {
                            table: table.clone(),
                            source,
                        })?;
                ops.push(Op::Delete {
                    table: t,
                    predicate: predicate.clone(),
                });
                entries.push(Entry::DeleteWhere { table, predicate });
            }
            Change::Checkpoint { name, value } => {
                validate_checkpoint_name(&name)?;
                let text = value.to_string();
                let time = chrono::Utc::now().timestamp_micros();
                let t = checkpoints_table(&self.catalog)?;
                let batch = checkpoint_batch(&name, time, &text)?;
                ops.push(Op::Checkpoint {
                    table: t,
                    keys: checkpoint_keys(&batch)?,
                    batch,
                    name: name.clone(),
                    value,
                });
                entries.push(Entry::Checkpoint {
                    name,
                    time,
                    value: text,
                });
            }
        }
        Ok(())
    }

    /// Deletes the rows of `table` where `predicate` is TRUE: from the buffer at once, from
    /// the files at the next flush (hidden from queries until then). Unknown table: a
    /// not-found error; a predicate that does not fit the table: a user error.
    pub async fn delete_where(
        &self,
        table: &str,
        predicate: RowPredicate,
    ) -> Result<DeleteOutcome> {
        let outcome = self
            .apply(vec![Change::DeleteWhere {
                table: table.to_string(),
                predicate,
            }])
            .await?;
        Ok(DeleteOutcome {
            buffer_rows_deleted: outcome.buffer_rows_deleted,
            pending_for_files: outcome.pending_for_files,
        })
    }

    /// Replaces the rows of `table` that have the key (values of `key_columns`) of a row of
    /// `batch` by that row, atomically (for corrected aggregates). Returns the rows written.
    pub async fn replace_by_key(
        &self,
        table: &str,
        key_columns: Vec<String>,
        batch: RecordBatch,
    ) -> Result<usize> {
        let outcome = self
            .apply(vec![Change::ReplaceByKey {
                table: table.to_string(),
                key_columns,
                batch,
            }])
            .await?;
        Ok(outcome.rows_written)
    }

    /// Sets the checkpoint `name` durably: once this returns, [`Lake::checkpoint`] gives
    /// `value`, also after a restart, a flush or a crash.
    pub async fn set_checkpoint(&self, name: &str, value: Value) -> Result<()> {
        self.apply(vec![Change::Checkpoint {
            name: name.to_string(),
            value,
        }])
        .await?;
        Ok(())
    }

    /// The latest value of the checkpoint `name`.
    pub fn checkpoint(&self, name: &str) -> Option<Value> {
        self.checkpoints.read().get(name).cloned()
    }

    /// Every checkpoint with its latest value.
    pub fn checkpoints(&self) -> BTreeMap<String, Value> {
        self.checkpoints.read().clone()
    }

    /// Applies `deletes` to the files of `table` (copy-on-write): a file with deleted rows
    /// is read, filtered and written again with the lake's writer settings and stats. The
    /// caller commits the result (removes + adds) in one Delta commit.
    pub(super) async fn rewrite_files(
        &self,
        table: &str,
        schema: &SchemaRef,
        files: &[DataFile],
        deletes: &DeleteSet,
    ) -> Result<Rewrite> {
        let mut out = Rewrite::default();
        if deletes.is_empty() {
            return Ok(out);
        }
        for f in files {
            if let (Some(lo), Some(hi)) = (f.min_time, f.max_time)
                && !deletes.may_match_time_range(lo, hi)
            {
                continue;
            }
            let data = self.store.get(&f.location).await?.bytes().await?;
            let (deletes, file_schema) = (deletes.clone(), schema.clone());
            let (kept, removed) = tokio::task::spawn_blocking(move || -> Result<_> {
                let mut kept = Vec::new();
                let mut removed = 0;
                for b in read_parquet(data)? {
                    let b = project(&b, &file_schema)?;
                    let k = deletes.retain(&b)?;
                    removed += b.num_rows() - k.num_rows();
                    if k.num_rows() > 0 {
                        kept.push(k);
                    }
                }
                Ok((kept, removed))
            })
            .await
            .map_err(|e| Error::Internal(format!("delete rewrite task: {e}")))??;
            if removed == 0 {
                continue;
            }
            out.rows_deleted += removed;
            out.removed.push(f.clone());
            if !kept.is_empty() {
                let (adds, written) = self.write_files(table, schema.clone(), kept).await?;
                out.adds.extend(adds);
                out.files.extend(written);
            }
        }
        Ok(out)
    }
}
