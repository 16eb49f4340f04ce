//! One table of the lake in memory: its schema, its buffered rows and its Parquet files.

use crate::deletes::{DeleteKind, DeleteSet, PendingDelete, delete_from_batches, push_pending};
use crate::error::{Error, Result};
use arrow::array::{ArrayRef, RecordBatch, new_null_array};
use arrow::compute::concat_batches;
use arrow::datatypes::{Schema, SchemaRef};
use civiclake_core::{
    ColumnRole, TIME_COLUMN, describe_type, is_supported_field_type, role_of, tag_type, time_type,
    validate_column_name,
};
use object_store::path::Path;
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Small batches at the end of the buffer are merged once there are this many.
const COALESCE_COUNT: usize = 64;
/// A batch with fewer rows than this is small.
const SMALL_BATCH_ROWS: usize = 8192;

/// A Parquet file of a table, as listed in its Delta log.
#[derive(Debug, Clone)]
pub struct DataFile {
    /// Location in the object store (absolute, from the store's root).
    pub location: Path,
    /// Path relative to the table root, as written in the Delta log.
    pub relative: String,
    /// Size in bytes.
    pub size: u64,
    /// Number of rows, when known.
    pub rows: Option<u64>,
    /// Smallest `time` in the file (µs), when known.
    pub min_time: Option<i64>,
    /// Largest `time` in the file (µs), when known.
    pub max_time: Option<i64>,
    /// Day partition (`YYYY-MM-DD`).
    pub day: String,
}

/// What a query sees of a table at one instant: buffered batches and committed files.
#[derive(Debug, Clone)]
pub struct TableSnapshot {
    /// Current schema of the table.
    pub schema: SchemaRef,
    /// Buffered rows not yet in Delta (already projected to `schema`; deletes applied).
    pub batches: Vec<RecordBatch>,
    /// Parquet files of the Delta table.
    pub files: Arc<Vec<DataFile>>,
    /// Deletes not yet applied to `files`: a reader of the files must drop the rows they
    /// match ([`DeleteSet::retain`]).
    pub deletes: DeleteSet,
}

#[derive(Debug)]
pub(crate) struct TableState {
    pub(crate) schema: SchemaRef,
    pub(crate) active: Vec<RecordBatch>,
    pub(crate) active_rows: usize,
    /// Rows taken by a flush in progress (or a failed one, to retry): visible, not yet in Delta.
    pub(crate) persisting: Vec<RecordBatch>,
    pub(crate) persisting_segment: Option<u64>,
    pub(crate) files: Arc<Vec<DataFile>>,
    /// Deletes logged but not yet applied to `files`, in WAL order.
    pub(crate) pending: Arc<Vec<PendingDelete>>,
    /// Versions (checkpoints with an integer value, e.g. Kafka offsets) logged in the same
    /// WAL records as rows of `active`: name → latest version.
    pub(crate) active_versions: BTreeMap<String, i64>,
    /// The versions of the rows in `persisting`, committed to Delta with them as `txn`
    /// actions (app id = name).
    pub(crate) persisting_versions: BTreeMap<String, i64>,
}

/// A table: name and state behind a lock held only for short, non-blocking sections.
#[derive(Debug)]
pub(crate) struct Table {
    pub(crate) name: String,
    pub(crate) state: Mutex<TableState>,
    /// Serialises Delta commits of this table (flush and compaction).
    pub(crate) delta: tokio::sync::Mutex<Option<crate::delta::DeltaHandle>>,
}

impl Table {
    pub(crate) fn new(
        name: &str,
        schema: SchemaRef,
        files: Vec<DataFile>,
        delta: Option<crate::delta::DeltaHandle>,
    ) -> Self {
        Self {
            name: name.to_string(),
            state: Mutex::new(TableState {
                schema,
                active: Vec::new(),
                active_rows: 0,
                persisting: Vec::new(),
                persisting_segment: None,
                files: Arc::new(files),
                pending: Arc::new(Vec::new()),
                active_versions: BTreeMap::new(),
                persisting_versions: BTreeMap::new(),
            }),
            delta: tokio::sync::Mutex::new(delta),
        }
    }

    /// Checks `incoming` against the table's schema and adds its new columns.
    pub(crate) fn evolve(&self, incoming: &Schema) -> Result<()> {
        let mut state = self.state.lock();
        let merged = merge_schema(&self.name, &state.schema, incoming)?;
        if let Some(merged) = merged {
            state.schema = Arc::new(merged);
        }
        Ok(())
    }

    /// Appends a batch to the buffer (called on the WAL thread after the fsync).
    pub(crate) fn append(&self, batch: RecordBatch) {
        let mut state = self.state.lock();
        state.active_rows += batch.num_rows();
        state.active.push(batch);
        let small_tail = state
            .active
            .iter()
            .rev()
            .take_while(|b| b.num_rows() < SMALL_BATCH_ROWS)
            .count();
        if small_tail >= COALESCE_COUNT {
            let schema = state.schema.clone();
            let start = state.active.len() - small_tail;
            let tail: Vec<RecordBatch> = state.active.drain(start..).collect();
            match tail
                .iter()
                .map(|b| project(b, &schema))
                .collect::<Result<Vec<_>>>()
                .and_then(|p| concat_batches(&schema, &p).map_err(Error::from))
            {
                Ok(merged) => state.active.push(merged),
                Err(e) => {
                    tracing::error!(table = %self.name, error = %e, "could not merge small batches");
                    state.active.extend(tail);
                }
            }
        }
    }

    /// Removes the buffered rows (active and persisting) that `kind` matches and records the
    /// delete as pending for the files (on the WAL thread, after the fsync of its record in
    /// `segment`). Returns the rows removed and whether the table has rows in files or being
    /// written to files, which the delete still has to reach.
    pub(crate) fn delete(&self, kind: DeleteKind, segment: u64) -> (usize, bool) {
        let mut state = self.state.lock();
        let state = &mut *state;
        let from_active = delete_from_batches(&self.name, &mut state.active, &kind);
        state.active.retain(|b| b.num_rows() > 0);
        state.active_rows -= from_active.min(state.active_rows);
        let from_persisting = delete_from_batches(&self.name, &mut state.persisting, &kind);
        let reaches_files = !state.files.is_empty() || !state.persisting.is_empty();
        push_pending(Arc::make_mut(&mut state.pending), segment, kind);
        (from_active + from_persisting, reaches_files)
    }

    /// Records that rows just appended were logged together with these versions (on the WAL
    /// thread, in the same step as the append).
    pub(crate) fn note_versions(&self, versions: &[(String, i64)]) {
        let mut state = self.state.lock();
        for (name, version) in versions {
            state.active_versions.insert(name.clone(), *version);
        }
    }

    /// Moves the active rows (and their versions) to the persisting set (on the WAL thread,
    /// at rotation).
    pub(crate) fn start_persist(&self, segment: u64) {
        let mut state = self.state.lock();
        let versions = std::mem::take(&mut state.active_versions);
        state.persisting_versions.extend(versions);
        if state.active.is_empty() {
            return;
        }
        let active = std::mem::take(&mut state.active);
        state.active_rows = 0;
        state.persisting.extend(active);
        state.persisting_segment = Some(segment);
    }

    /// A consistent view for a query.
    pub(crate) fn snapshot(&self) -> Result<TableSnapshot> {
        let state = self.state.lock();
        let schema = state.schema.clone();
        let batches = state
            .persisting
            .iter()
            .chain(state.active.iter())
            .filter(|b| b.num_rows() > 0)
            .map(|b| project(b, &schema))
            .collect::<Result<Vec<_>>>()?;
        Ok(TableSnapshot {
            schema,
            batches,
            files: state.files.clone(),
            deletes: DeleteSet::new(state.pending.clone()),
        })
    }

    pub(crate) fn buffered_rows(&self) -> usize {
        let state = self.state.lock();
        state.active_rows
            + state
                .persisting
                .iter()
                .map(RecordBatch::num_rows)
                .sum::<usize>()
    }
}

/// Projects `batch` onto `schema`: same column order, null columns for what it lacks.
pub(crate) fn project(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    if batch.schema_ref() == schema {
        return Ok(batch.clone());
    }
    let columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(|f| match batch.column_by_name(f.name()) {
            Some(c) => c.clone(),
            None => new_null_array(f.data_type(), batch.num_rows()),
        })
        .collect();
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

/// Checks the incoming columns against the existing schema; returns the widened schema when
/// the incoming batch has new columns, `None` when nothing changes.
pub(crate) fn merge_schema(
    table: &str,
    existing: &Schema,
    incoming: &Schema,
) -> Result<Option<Schema>> {
    let mut fields: Vec<_> = existing.fields().iter().cloned().collect();
    let mut changed = false;
    for field in incoming.fields() {
        validate_column(field)?;
        match existing.field_with_name(field.name()) {
            Ok(have) => {
                if have.data_type() != field.data_type() {
                    return Err(Error::TypeConflict {
                        table: table.to_string(),
                        column: field.name().clone(),
                        existing: describe_type(have.data_type()),
                        given: describe_type(field.data_type()),
                    });
                }
            }
            Err(_) => {
                let mut f = field.as_ref().clone();
                if role_of(&f) != ColumnRole::Time {
                    f = f.with_nullable(true);
                }
                fields.push(Arc::new(f));
                changed = true;
            }
        }
    }
    Ok(changed.then(|| Schema::new(fields)))
}

/// Checks that a field follows the table conventions.
pub(crate) fn validate_column(field: &arrow::datatypes::Field) -> Result<()> {
    validate_column_name(field.name()).map_err(Error::InvalidWrite)?;
    // Delta compares names without case: `Day` would clash with the partition column too.
    if field.name().eq_ignore_ascii_case(crate::delta::DAY_COLUMN) {
        return Err(Error::InvalidWrite(format!(
            "column '{}' is reserved: every table is partitioned by the UTC day of its time, \
             in a column '{}' (rename the column)",
            field.name(),
            crate::delta::DAY_COLUMN
        )));
    }
    let ok = match role_of(field) {
        ColumnRole::Time => field.name() == TIME_COLUMN && field.data_type() == &time_type(),
        ColumnRole::Tag => field.data_type() == &tag_type(),
        ColumnRole::Field => is_supported_field_type(field.data_type()),
    };
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidWrite(format!(
            "column '{}' has unsupported type {}",
            field.name(),
            field.data_type()
        )))
    }
}

/// Checks that a batch can be written: a non-null `time` column and supported columns.
pub(crate) fn validate_batch(batch: &RecordBatch) -> Result<()> {
    let time = batch
        .schema()
        .column_with_name(TIME_COLUMN)
        .map(|(i, _)| i)
        .ok_or_else(|| Error::InvalidWrite("every row needs a 'time' column".into()))?;
    if batch.column(time).null_count() > 0 {
        return Err(Error::InvalidWrite("'time' must not be null".into()));
    }
    for field in batch.schema().fields() {
        validate_column(field)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::DataType;
    use civiclake_core::{field_column, tag_column, time_column};

    #[test]
    fn the_partition_column_name_is_reserved() {
        for name in ["day", "Day", "DAY"] {
            let err = validate_column(&field_column(name, DataType::Utf8)).unwrap_err();
            assert!(err.to_string().contains("is reserved"), "{err}");
        }
        assert!(validate_column(&field_column("days", DataType::Int64)).is_ok());
    }

    #[test]
    fn merge_adds_columns_and_reports_conflicts() {
        let a = Schema::new(vec![
            time_column(),
            tag_column("sensor"),
            field_column("v", DataType::Float64),
        ]);
        let b = Schema::new(vec![time_column(), field_column("w", DataType::Int64)]);
        let merged = merge_schema("air", &a, &b).unwrap().unwrap();
        assert_eq!(merged.fields().len(), 4);
        assert_eq!(merged.field(3).name(), "w");
        assert!(merge_schema("air", &merged, &a).unwrap().is_none());
        let c = Schema::new(vec![time_column(), field_column("v", DataType::Utf8)]);
        let err = merge_schema("air", &a, &c).unwrap_err().to_string();
        assert_eq!(
            err,
            "column 'v' of table 'air' is float, but the write gives string"
        );
    }
}
