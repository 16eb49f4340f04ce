//! Retention by whole day partitions, and deletes made effective in storage at once (GDPR):
//! both leave no copy of the rows they remove in the table's Parquet files on disk.
//!
//! * [`Lake::drop_partitions_before`] removes every day partition older than a cutoff in one
//!   Delta commit, deletes the buffered rows of those days through the WAL, and deletes the
//!   days' files from disk at once (no vacuum grace).
//! * [`Lake::purge_where`] deletes rows by predicate, flushes (the flush rewrites the files
//!   holding them) and vacuums the table with no retention.
//!
//! Both run under the flush lock, so they never interleave with a flush or a compaction.

use super::{FlushStats, Lake};
use crate::delta::DAY_COLUMN;
use crate::error::{Error, Result};
use crate::lake::CHECKPOINTS_TABLE;
use crate::table::{DataFile, Table};
use arrow::array::{Array, TimestampMicrosecondArray};
use chrono::NaiveDate;
use civiclake_core::{CompareOp, Literal, RowPredicate, TIME_COLUMN};
use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

#[cfg(test)]
mod tests;

/// One day in microseconds.
const DAY_MICROS: i64 = 86_400_000_000;

/// What [`Lake::drop_partitions_before`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RetentionOutcome {
    /// The day partitions removed (`YYYY-MM-DD`, ascending).
    pub days_dropped: Vec<String>,
    /// Files removed from the table (one Delta commit).
    pub files_removed: usize,
    /// Rows in those files, from their statistics.
    pub rows_removed: u64,
    /// Buffered rows of those days deleted (through the WAL).
    pub buffer_rows_deleted: usize,
    /// Parquet files of those days deleted from disk: the removed ones, and files of those
    /// days replaced earlier (by compaction or a delete) still waiting for their vacuum.
    pub files_vacuumed: usize,
}

/// What [`Lake::purge_where`] did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct PurgeOutcome {
    /// Buffered rows deleted.
    pub buffer_rows_deleted: usize,
    /// Rows removed from the table's files by the flush that rewrote them (with those of any
    /// other delete of the table logged since the previous flush).
    pub file_rows_deleted: usize,
    /// Files of the table deleted from disk by the vacuum (the rewritten ones, and any other
    /// replaced file still waiting for its vacuum).
    pub files_vacuumed: usize,
    /// What the flush did (it flushes every table).
    pub flush: FlushStats,
}

impl PurgeOutcome {
    /// Rows deleted: from the buffer and from the files.
    pub fn rows_deleted(&self) -> usize {
        self.buffer_rows_deleted + self.file_rows_deleted
    }
}

/// The start (µs) of the UTC day holding `micros`, and that day.
fn day_start(micros: i64) -> Result<(i64, NaiveDate)> {
    let out_of_range = || Error::InvalidWrite(format!("cutoff {micros} µs is out of range"));
    let start = micros
        .checked_sub(micros.rem_euclid(DAY_MICROS))
        .ok_or_else(out_of_range)?;
    let day = chrono::DateTime::from_timestamp_micros(start)
        .ok_or_else(out_of_range)?
        .date_naive();
    Ok((start, day))
}

/// Whether buffered rows of `table` have a `time` before `boundary` (conservatively true
/// when a batch's `time` cannot be read).
fn buffer_has_rows_before(table: &Table, boundary: i64) -> Result<bool> {
    let snapshot = table.snapshot()?;
    Ok(snapshot.batches.iter().any(|b| {
        match b
            .column_by_name(TIME_COLUMN)
            .and_then(|c| c.as_any().downcast_ref::<TimestampMicrosecondArray>())
        {
            Some(time) => arrow::compute::min(time).is_some_and(|m| m < boundary),
            None => b.num_rows() > 0,
        }
    }))
}

impl Lake {
    /// The table `name`, for retention and purges: unknown → [`Error::TableNotFound`];
    /// the checkpoints table is refused.
    fn maintained_table(&self, name: &str) -> Result<Arc<Table>> {
        if name == CHECKPOINTS_TABLE {
            return Err(Error::InvalidWrite(format!(
                "table '{CHECKPOINTS_TABLE}' is maintained by the lake: its rows cannot be \
                 dropped or purged"
            )));
        }
        self.catalog
            .read()
            .get(name)
            .cloned()
            .ok_or_else(|| Error::TableNotFound(name.to_string()))
    }

    /// Drops the day partitions of `table` whose whole UTC day is before `cutoff_micros`
    /// (days `< cutoff`'s day; a cutoff at midnight keeps that day): the buffered rows of
    /// those days are deleted through the WAL (so a replay deletes them again), every file
    /// of those days is removed in one Delta commit, then the days' files are deleted from
    /// disk at once — no vacuum grace: a query that had already planned to read one of them
    /// fails with an error saying so (run again, it sees the table without those days).
    ///
    /// Runs under the flush lock (waits for a flush or compaction in progress). A table
    /// with no such days: `Ok` with zeros. Unknown table: [`Error::TableNotFound`]; the
    /// checkpoints table is refused; a read-only lake: [`Error::ReadOnly`].
    pub async fn drop_partitions_before(
        &self,
        table: &str,
        cutoff_micros: i64,
    ) -> Result<RetentionOutcome> {
        if self.wal.is_none() {
            return Err(Error::ReadOnly);
        }
        let t = self.maintained_table(table)?;
        let (boundary, boundary_day) = day_start(cutoff_micros)?;
        let _guard = self.flush_lock.lock().await;
        let mut out = RetentionOutcome::default();
        // First the WAL: once the delete is logged, the days are gone even if the process
        // dies before the Delta commit (the replayed delete is pending for the files, and
        // the next flush removes them).
        if buffer_has_rows_before(&t, boundary)? {
            let predicate =
                RowPredicate::compare(TIME_COLUMN, CompareOp::Lt, Literal::Timestamp(boundary));
            out.buffer_rows_deleted = self
                .delete_where(table, predicate)
                .await?
                .buffer_rows_deleted;
        }
        let files = t.state.lock().files.clone();
        let old: Vec<DataFile> = files
            .iter()
            .filter(|f| {
                NaiveDate::parse_from_str(&f.day, "%Y-%m-%d").is_ok_and(|d| d < boundary_day)
            })
            .cloned()
            .collect();
        if old.is_empty() {
            return Ok(out);
        }
        let days: BTreeSet<String> = old.iter().map(|f| f.day.clone()).collect();
        {
            let mut guard = t.delta.lock().await;
            let handle = guard.as_mut().ok_or_else(|| {
                Error::Internal(format!("table '{table}' has files but no Delta log"))
            })?;
            handle
                .commit_drop(&old, format!("{DAY_COLUMN} < '{boundary_day}'"))
                .await?;
            // Under the flush lock nothing else changes the file list.
            let removed: HashSet<&str> = old.iter().map(|f| f.relative.as_str()).collect();
            let mut state = t.state.lock();
            let kept: Vec<DataFile> = state
                .files
                .iter()
                .filter(|f| !removed.contains(f.relative.as_str()))
                .cloned()
                .collect();
            state.files = Arc::new(kept);
        }
        out.files_removed = old.len();
        out.rows_removed = old.iter().map(|f| f.rows.unwrap_or(0)).sum();
        out.days_dropped = days.into_iter().collect();
        out.files_vacuumed = self.delete_day_dirs(table, &out.days_dropped)?;
        tracing::info!(
            table,
            days = out.days_dropped.len(),
            files = out.files_removed,
            rows = out.rows_removed,
            buffer_rows = out.buffer_rows_deleted,
            vacuumed = out.files_vacuumed,
            "dropped old day partitions"
        );
        Ok(out)
    }

    /// Deletes the directories of dropped `days` of `table` with every file in them: the
    /// table references none of them any more (the flush lock is held, so no flush or
    /// compaction is writing there). Returns the Parquet files deleted.
    fn delete_day_dirs(&self, table: &str, days: &[String]) -> Result<usize> {
        let mut deleted = 0;
        for day in days {
            let dir = self
                .tables_dir
                .join(table)
                .join(format!("{DAY_COLUMN}={day}"));
            let entries = match std::fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io(dir.display(), e)),
            };
            for entry in entries {
                let path = entry.map_err(|e| Error::io(dir.display(), e))?.path();
                if !path.is_file() {
                    continue;
                }
                match std::fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(Error::io(path.display(), e)),
                }
                if path.extension().is_some_and(|x| x == "parquet") {
                    deleted += 1;
                }
            }
            if let Err(e) = std::fs::remove_dir(&dir) {
                tracing::warn!(dir = %dir.display(), error = %e, "could not remove a dropped day's directory");
            }
        }
        Ok(deleted)
    }

    /// Deletes the rows of `table` where `predicate` is TRUE and makes that effective in
    /// storage at once (GDPR erasure): the delete is logged and applied to the buffer, a
    /// flush rewrites the files holding matching rows (and deletes the WAL segments that
    /// held them), then the table is vacuumed with no retention ([`Lake::vacuum_now`]), so
    /// no Parquet file of the table holds the rows any more.
    ///
    /// Runs under the flush lock. Unknown table: [`Error::TableNotFound`]; the checkpoints
    /// table is refused; a predicate that does not fit the table: a user error. If the
    /// flush of `table` fails, the rows stay hidden from queries and the error says the
    /// next flush removes them.
    pub async fn purge_where(&self, table: &str, predicate: RowPredicate) -> Result<PurgeOutcome> {
        let wal = self.wal.as_ref().ok_or(Error::ReadOnly)?;
        let t = self.maintained_table(table)?;
        let _guard = self.flush_lock.lock().await;
        let deleted = self.delete_where(table, predicate).await?;
        let flush = self.flush_locked(wal).await?;
        if flush.failed_tables.iter().any(|f| f == table) {
            return Err(Error::Internal(format!(
                "the rows of table '{table}' are deleted (hidden from queries), but the flush \
                 that removes them from its files failed (see the log); the next flush retries"
            )));
        }
        if !flush.failed_tables.is_empty() {
            tracing::warn!(
                table,
                failed = ?flush.failed_tables,
                "purge: another table's flush failed, so the WAL segments (which held the \
                 deleted rows) stay until the next successful flush"
            );
        }
        let files_vacuumed = self.vacuum_table(&t).await?;
        let out = PurgeOutcome {
            buffer_rows_deleted: deleted.buffer_rows_deleted,
            file_rows_deleted: flush.rows_deleted_by_table.get(table).copied().unwrap_or(0),
            files_vacuumed,
            flush,
        };
        tracing::info!(
            table,
            buffer_rows = out.buffer_rows_deleted,
            file_rows = out.file_rows_deleted,
            vacuumed = out.files_vacuumed,
            "purged rows from the buffer and the files"
        );
        Ok(out)
    }

    /// Deletes from disk, at once, every file the Delta log of `table` has removed — by
    /// compaction, a delete's rewrite or retention — without waiting for the vacuum grace
    /// (`vacuum_grace`). A query that had already planned to read such a file fails with an
    /// error saying so (run again, it reads the current files). Returns the files deleted.
    /// Runs under the flush lock. Unknown table: [`Error::TableNotFound`].
    pub async fn vacuum_now(&self, table: &str) -> Result<usize> {
        if self.wal.is_none() {
            return Err(Error::ReadOnly);
        }
        let t = self
            .catalog
            .read()
            .get(table)
            .cloned()
            .ok_or_else(|| Error::TableNotFound(table.to_string()))?;
        let _guard = self.flush_lock.lock().await;
        self.vacuum_table(&t).await
    }

    /// Vacuums `table` with no retention (the flush lock held by the caller).
    async fn vacuum_table(&self, table: &Table) -> Result<usize> {
        let mut guard = table.delta.lock().await;
        match guard.as_mut() {
            Some(handle) => handle.vacuum_all().await,
            None => Ok(0),
        }
    }
}
