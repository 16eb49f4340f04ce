//! The lake: tables made of a WAL-backed buffer and a Delta table, with flush and compaction.

mod changes;
mod retention;

pub use changes::{CHECKPOINTS_TABLE, Change, ChangeOutcome, DeleteOutcome, WriteObserver};
pub use retention::{PurgeOutcome, RetentionOutcome};

use crate::config::LakeConfig;
use crate::deletes::DeleteSet;
use crate::delta::{self, DeltaHandle, add_action};
use crate::error::{Error, Result};
use crate::parquet_io::{encode_day_files, read_parquet};
use crate::table::{DataFile, Table, TableSnapshot, project};
use crate::wal::{self, Wal};
use arrow::datatypes::{Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use civiclake_core::validate_table_name;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parking_lot::{Mutex, RwLock};
use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use url::Url;

type Catalog = Arc<RwLock<BTreeMap<String, Arc<Table>>>>;

/// Whether the lake may be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// The server: takes the data directory's lock, writes the WAL, flushes and compacts.
    ReadWrite,
    /// A reader beside a running server (`civiclake sql --data-dir`): reads Delta and the WAL.
    ReadOnly,
}

/// Counters of the lake since start.
#[derive(Debug, Default)]
pub struct LakeMetrics {
    /// Rows acknowledged by writes.
    pub rows_written: AtomicU64,
    /// Write calls acknowledged.
    pub writes: AtomicU64,
    /// Flushes that ran.
    pub flushes: AtomicU64,
    /// Rows moved from the buffer to Delta.
    pub rows_flushed: AtomicU64,
    /// Flushes (of a table) that failed and will be retried.
    pub flush_errors: AtomicU64,
    /// Files replaced by compaction.
    pub files_compacted: AtomicU64,
    /// Rows replayed from the WAL at start.
    pub rows_replayed: AtomicU64,
}

/// A summary of the lake's state.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LakeStats {
    /// Number of tables.
    pub tables: usize,
    /// Rows in memory not yet in Delta.
    pub buffered_rows: usize,
    /// Bytes of WAL segments on disk.
    pub wal_bytes: u64,
    /// Parquet files in the Delta tables.
    pub files: usize,
    /// Bytes of those files.
    pub file_bytes: u64,
}

/// What a flush did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct FlushStats {
    /// Rows written to Delta.
    pub rows: usize,
    /// Files written.
    pub files: usize,
    /// Files rewritten (or removed) to apply deletes.
    pub files_rewritten: usize,
    /// Rows those deletes removed from files.
    pub rows_deleted: usize,
    /// `rows_deleted` by table (tables with at least one row deleted from files).
    pub rows_deleted_by_table: BTreeMap<String, usize>,
    /// Tables whose flush failed (they are retried on the next flush).
    pub failed_tables: Vec<String>,
}

/// What a compaction pass did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CompactStats {
    /// Files merged away.
    pub files_removed: usize,
    /// Files written.
    pub files_added: usize,
    /// Old files deleted by vacuum.
    pub files_vacuumed: usize,
}

/// The lakehouse storage of civiclake.
#[derive(Debug)]
pub struct Lake {
    config: LakeConfig,
    tables_dir: PathBuf,
    root: Path,
    store: Arc<dyn ObjectStore>,
    catalog: Catalog,
    wal: Option<Wal>,
    checkpoints: changes::Checkpoints,
    flush_lock: tokio::sync::Mutex<()>,
    first_unflushed: Mutex<Option<Instant>>,
    shutting_down: AtomicBool,
    metrics: LakeMetrics,
    observers: parking_lot::RwLock<Vec<Arc<dyn changes::WriteObserver>>>,
    _lock: Option<File>,
}

impl Lake {
    /// Opens (or creates) the lake in `config.data_dir`: loads the Delta tables and replays
    /// the WAL into the buffer.
    pub async fn open(config: LakeConfig, mode: OpenMode) -> Result<Arc<Self>> {
        let data_dir = std::path::absolute(&config.data_dir)
            .map_err(|e| Error::io(config.data_dir.display(), e))?;
        let tables_dir = data_dir.join("tables");
        let wal_dir = data_dir.join("wal");
        let lock = if mode == OpenMode::ReadWrite {
            std::fs::create_dir_all(&tables_dir).map_err(|e| Error::io(tables_dir.display(), e))?;
            std::fs::create_dir_all(&wal_dir).map_err(|e| Error::io(wal_dir.display(), e))?;
            let path = data_dir.join("LOCK");
            let file = File::create(&path).map_err(|e| Error::io(path.display(), e))?;
            file.try_lock()
                .map_err(|_| Error::Locked(data_dir.display().to_string()))?;
            Some(file)
        } else {
            None
        };
        let root = Path::from_absolute_path(&tables_dir)
            .map_err(|e| Error::Internal(format!("tables path: {e}")))?;
        let catalog: Catalog = Arc::new(RwLock::new(BTreeMap::new()));
        let mut covered: BTreeMap<String, u64> = BTreeMap::new();
        if let Ok(dirs) = std::fs::read_dir(&tables_dir) {
            for entry in dirs.flatten() {
                let name = entry.file_name().to_string_lossy().to_string();
                if validate_table_name(&name).is_err() || !entry.path().join("_delta_log").is_dir()
                {
                    continue;
                }
                let url = table_url(&tables_dir, &name)?;
                let Some(handle) = delta::open(&url).await? else {
                    continue;
                };
                let schema = delta::arrow_schema(handle.state.schema().as_ref())?;
                let files = handle.files(&table_root(&root, &name));
                if let Some(v) = handle.wal_version().await? {
                    covered.insert(name.clone(), v);
                }
                catalog.write().insert(
                    name.clone(),
                    Arc::new(Table::new(&name, schema, files, Some(handle))),
                );
            }
        }
        let lake_metrics = LakeMetrics::default();
        let segments = wal::list_segments(&wal_dir)?;
        let checkpoints = changes::Checkpoints::default();
        let (mut replayed, mut replayed_changes) = (0usize, 0usize);
        let mut wal_bytes = 0u64;
        for &seg in &segments {
            let path = wal::segment_path(&wal_dir, seg);
            wal_bytes += std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            for record in wal::read_segment(&path)? {
                let (rows, applied) =
                    changes::replay_record(&catalog, &checkpoints, &covered, seg, record);
                replayed += rows;
                replayed_changes += applied;
            }
        }
        if mode == OpenMode::ReadWrite {
            changes::checkpoints_table(&catalog)?;
        }
        let store: Arc<dyn ObjectStore> = Arc::new(LocalFileSystem::new());
        *checkpoints.write() = changes::load_checkpoints(&catalog, store.as_ref()).await?;
        lake_metrics
            .rows_replayed
            .store(replayed as u64, Ordering::Relaxed);
        if replayed > 0 {
            tracing::info!(
                rows = replayed,
                segments = segments.len(),
                "replayed the WAL"
            );
        }
        let wal = match mode {
            OpenMode::ReadWrite => Some(Wal::start(
                &wal_dir,
                segments.last().map_or(1, |s| s + 1),
                config.wal_fsync,
                config.wal_segment_bytes,
                wal_bytes,
            )?),
            OpenMode::ReadOnly => None,
        };
        Ok(Arc::new(Self {
            tables_dir,
            root,
            store,
            catalog,
            wal,
            checkpoints,
            flush_lock: tokio::sync::Mutex::new(()),
            first_unflushed: Mutex::new((replayed_changes > 0).then(Instant::now)),
            shutting_down: AtomicBool::new(false),
            metrics: lake_metrics,
            observers: parking_lot::RwLock::default(),
            _lock: lock,
            config,
        }))
    }

    /// The object store holding the tables, for query engines.
    pub fn object_store(&self) -> Arc<dyn ObjectStore> {
        self.store.clone()
    }

    /// The URL of the object store root (`file:///` for the local filesystem).
    pub fn object_store_url(&self) -> &'static str {
        "file:///"
    }

    /// Directory of the Delta tables.
    pub fn tables_dir(&self) -> &std::path::Path {
        &self.tables_dir
    }

    /// Counters since start.
    pub fn metrics(&self) -> &LakeMetrics {
        &self.metrics
    }

    /// Names of the tables, sorted.
    pub fn table_names(&self) -> Vec<String> {
        self.catalog.read().keys().cloned().collect()
    }

    /// Current schema of `table`.
    pub fn schema(&self, table: &str) -> Option<SchemaRef> {
        let table = self.catalog.read().get(table).cloned()?;
        let schema = table.state.lock().schema.clone();
        Some(schema)
    }

    /// Makes sure `table` exists with (at least) the columns of `schema`, so SQL on it works
    /// before its first write: a new table is registered with no rows (nothing is written
    /// until rows come); an existing one gains the missing columns, and a column of another
    /// type is a [`Error::TypeConflict`].
    pub fn ensure_table(&self, name: &str, schema: &Schema) -> Result<()> {
        validate_table_name(name).map_err(Error::InvalidWrite)?;
        for field in schema.fields() {
            crate::table::validate_column(field)?;
        }
        get_or_create(&self.catalog, name).evolve(schema)
    }

    /// The version of the transaction identifier `app_id` in the Delta log of `table`, read
    /// from disk: the last value of checkpoint `app_id` written together with rows of the
    /// table that a flush has committed (see [`Change::Checkpoint`]); for the WAL coverage,
    /// app id [`crate::WAL_APP_ID`]. `None` when the table has no Delta log yet or the log has
    /// no such transaction.
    pub async fn delta_transaction_version(
        &self,
        table: &str,
        app_id: &str,
    ) -> Result<Option<i64>> {
        validate_table_name(table).map_err(Error::InvalidWrite)?;
        if !self.tables_dir.join(table).join("_delta_log").is_dir() {
            return Ok(None);
        }
        let Some(handle) = delta::open(&table_url(&self.tables_dir, table)?).await? else {
            return Ok(None);
        };
        Ok(handle
            .state
            .transaction_version(handle.log_store.as_ref(), app_id)
            .await?)
    }

    /// A checker of row writes that does not write: see [`RowsCheck`].
    pub fn rows_check(&self) -> RowsCheck<'_> {
        RowsCheck {
            lake: self,
            schemas: BTreeMap::new(),
        }
    }

    /// A consistent view of `table` (buffer and files) for a query.
    pub fn snapshot(&self, table: &str) -> Result<Option<TableSnapshot>> {
        let Some(table) = self.catalog.read().get(table).cloned() else {
            return Ok(None);
        };
        table.snapshot().map(Some)
    }

    /// Writes batches (each for one table) durably: schema checked and widened, WAL
    /// fsynced, rows in the buffer — then returns the number of rows written.
    pub async fn write(&self, batches: Vec<(String, RecordBatch)>) -> Result<usize> {
        let changes = batches
            .into_iter()
            .map(|(table, batch)| Change::Rows { table, batch })
            .collect();
        Ok(self.apply(changes).await?.rows_written)
    }

    /// `Err(Saturated)` while more rows wait for a flush than `max_buffered_rows`, or the WAL
    /// is over `max_wal_bytes`; the background flush is what brings both down again.
    pub fn check_saturation(&self) -> Result<()> {
        let retry_after = std::time::Duration::from_secs(1);
        let rows = self.buffered_rows();
        if rows > self.config.max_buffered_rows {
            return Err(Error::Saturated {
                reason: format!(
                    "{rows} rows wait for a flush to Delta (limit {})",
                    self.config.max_buffered_rows
                ),
                retry_after,
            });
        }
        let wal = self.wal.as_ref().map_or(0, Wal::bytes);
        if wal > self.config.max_wal_bytes {
            return Err(Error::Saturated {
                reason: format!(
                    "the WAL holds {wal} bytes not yet flushed to Delta (limit {})",
                    self.config.max_wal_bytes
                ),
                retry_after,
            });
        }
        Ok(())
    }

    /// Rows in memory not yet in Delta.
    pub fn buffered_rows(&self) -> usize {
        self.tables().iter().map(|t| t.buffered_rows()).sum()
    }

    fn tables(&self) -> Vec<Arc<Table>> {
        self.catalog.read().values().cloned().collect()
    }

    /// A summary of the lake's state.
    pub fn stats(&self) -> LakeStats {
        let tables = self.tables();
        let (files, file_bytes) = tables.iter().fold((0, 0), |(n, b), t| {
            let files = t.state.lock().files.clone();
            (
                n + files.len(),
                b + files.iter().map(|f| f.size).sum::<u64>(),
            )
        });
        LakeStats {
            tables: tables.len(),
            buffered_rows: tables.iter().map(|t| t.buffered_rows()).sum(),
            wal_bytes: self.wal.as_ref().map_or(0, Wal::bytes),
            files,
            file_bytes,
        }
    }

    /// Whether the buffer is due for a flush (by age or size).
    pub fn flush_due(&self) -> bool {
        let age_due = self
            .first_unflushed
            .lock()
            .is_some_and(|t| t.elapsed() >= self.config.flush_max_age);
        age_due || self.buffered_rows() >= self.config.flush_max_rows
    }

    /// Moves every buffered row into the Delta tables, then truncates the WAL.
    pub async fn flush(&self) -> Result<FlushStats> {
        let wal = self.wal.as_ref().ok_or(Error::ReadOnly)?;
        let _guard = self.flush_lock.lock().await;
        self.flush_locked(wal).await
    }

    /// [`Lake::flush`], the flush lock held by the caller.
    async fn flush_locked(&self, wal: &Wal) -> Result<FlushStats> {
        let catalog = self.catalog.clone();
        *self.first_unflushed.lock() = None;
        let segment = wal
            .rotate(Box::new(move |closed| {
                for table in catalog.read().values() {
                    table.start_persist(closed);
                }
            }))
            .await?;
        let mut stats = FlushStats::default();
        for table in self.tables() {
            let has_work = {
                let state = table.state.lock();
                !state.persisting.is_empty() || state.pending.iter().any(|p| p.segment <= segment)
            };
            if !has_work {
                // Versions of rows deleted before they reached Delta: nothing carries them.
                table.state.lock().persisting_versions.clear();
                continue;
            }
            match self.persist(&table, segment).await {
                Ok(persisted) => {
                    stats.rows += persisted.rows;
                    stats.files += persisted.files;
                    stats.files_rewritten += persisted.files_rewritten;
                    stats.rows_deleted += persisted.rows_deleted;
                    if persisted.rows_deleted > 0 {
                        stats
                            .rows_deleted_by_table
                            .insert(table.name.clone(), persisted.rows_deleted);
                    }
                }
                Err(e) => {
                    tracing::error!(table = %table.name, error = %e, "flush failed; rows stay in the WAL and the buffer and are retried");
                    self.metrics.flush_errors.fetch_add(1, Ordering::Relaxed);
                    stats.failed_tables.push(table.name.clone());
                }
            }
        }
        if stats.failed_tables.is_empty() {
            wal.truncate(segment)?;
        } else {
            self.first_unflushed.lock().get_or_insert_with(Instant::now);
        }
        self.metrics.flushes.fetch_add(1, Ordering::Relaxed);
        self.metrics
            .rows_flushed
            .fetch_add(stats.rows as u64, Ordering::Relaxed);
        if stats.rows > 0 || stats.files_rewritten > 0 {
            tracing::info!(
                rows = stats.rows,
                files = stats.files,
                files_rewritten = stats.files_rewritten,
                rows_deleted = stats.rows_deleted,
                segment,
                "flushed the buffer to Delta"
            );
        }
        Ok(stats)
    }

    async fn delta_handle<'a>(
        &self,
        table: &Table,
        guard: &'a mut Option<DeltaHandle>,
        schema: &Schema,
    ) -> Result<&'a mut DeltaHandle> {
        if guard.is_none() {
            let dir = self.tables_dir.join(&table.name);
            std::fs::create_dir_all(&dir).map_err(|e| Error::io(dir.display(), e))?;
            let url = table_url(&self.tables_dir, &table.name)?;
            *guard = Some(delta::create(&url, &table.name, schema).await?);
        }
        guard
            .as_mut()
            .ok_or_else(|| Error::Internal("no Delta handle".into()))
    }

    async fn write_files(
        &self,
        table: &str,
        schema: SchemaRef,
        batches: Vec<RecordBatch>,
    ) -> Result<(Vec<deltalake::kernel::Add>, Vec<DataFile>)> {
        let (row_group_rows, zstd_level) = (self.config.row_group_rows, self.config.zstd_level);
        let encoded = tokio::task::spawn_blocking(move || {
            encode_day_files(&schema, &batches, row_group_rows, zstd_level)
        })
        .await
        .map_err(|e| Error::Internal(format!("flush task: {e}")))??;
        let mut adds = Vec::with_capacity(encoded.len());
        let mut files = Vec::with_capacity(encoded.len());
        for (slice, bytes, stats) in encoded {
            let relative = format!(
                "day={}/part-{}.zstd.parquet",
                slice.day,
                uuid::Uuid::new_v4()
            );
            let location = Path::from(format!("{}/{relative}", table_root(&self.root, table)));
            let size = bytes.len() as u64;
            self.store.put(&location, bytes.into()).await?;
            adds.push(add_action(&relative, &slice.day, size, stats));
            files.push(DataFile {
                location,
                relative,
                size,
                rows: Some(slice.batch.num_rows() as u64),
                min_time: Some(slice.min_time),
                max_time: Some(slice.max_time),
                day: slice.day,
            });
        }
        Ok((adds, files))
    }

    /// Writes the persisting rows of `table` to new files and applies the deletes of WAL
    /// segments up to `segment` to its existing files, in one Delta commit that also records
    /// `segment` as covered.
    async fn persist(&self, table: &Table, segment: u64) -> Result<FlushStats> {
        let taken = take_persisting(table, segment)?;
        self.commit_persisting(table, segment, taken).await
    }

    async fn commit_persisting(
        &self,
        table: &Table,
        segment: u64,
        persisting: Persisting,
    ) -> Result<FlushStats> {
        let Persisting {
            schema,
            batches,
            taken,
            files,
            deletes,
            versions,
        } = persisting;
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        let mut guard = table.delta.lock().await;
        let rewrite = self
            .rewrite_files(&table.name, &schema, &files, &deletes)
            .await?;
        let (adds, new_files) = self
            .write_files(&table.name, schema.clone(), batches)
            .await?;
        let stats = FlushStats {
            rows,
            files: new_files.len(),
            files_rewritten: rewrite.removed.len(),
            rows_deleted: rewrite.rows_deleted,
            rows_deleted_by_table: BTreeMap::new(),
            failed_tables: Vec::new(),
        };
        if !adds.is_empty() || !rewrite.removed.is_empty() {
            let handle = self.delta_handle(table, &mut guard, &schema).await?;
            let description = (!rewrite.removed.is_empty()).then(|| deletes.describe());
            let mut all_adds = rewrite.adds;
            all_adds.extend(adds);
            handle
                .commit_flush(
                    &schema,
                    all_adds,
                    &rewrite.removed,
                    segment,
                    &versions,
                    description,
                )
                .await?;
        }
        let mut state = table.state.lock();
        // Only a flush (under the flush lock) adds to the persisting versions: all of them
        // were taken by this commit.
        state.persisting_versions.clear();
        state.persisting.drain(..taken);
        if state.persisting.is_empty() {
            state.persisting_segment = None;
        }
        let removed: HashSet<&str> = rewrite
            .removed
            .iter()
            .map(|f| f.relative.as_str())
            .collect();
        let mut all: Vec<DataFile> = state
            .files
            .iter()
            .filter(|f| !removed.contains(f.relative.as_str()))
            .cloned()
            .collect();
        all.extend(rewrite.files);
        all.extend(new_files);
        state.files = Arc::new(all);
        Arc::make_mut(&mut state.pending).retain(|p| p.segment > segment);
        Ok(stats)
    }

    /// Merges small files of each day partition into larger sorted ones, then deletes files
    /// replaced more than the grace period ago. With `force`, any two or more small files of
    /// a day are merged; otherwise at least `compaction_min_files`.
    pub async fn compact(&self, force: bool) -> Result<CompactStats> {
        if self.wal.is_none() {
            return Err(Error::ReadOnly);
        }
        let _guard = self.flush_lock.lock().await;
        let min_files = if force {
            2
        } else {
            self.config.compaction_min_files.max(2)
        };
        let target = self.config.compaction_target_rows as u64;
        let mut stats = CompactStats::default();
        for table in self.tables() {
            let files = table.state.lock().files.clone();
            let mut by_day: BTreeMap<&str, Vec<&DataFile>> = BTreeMap::new();
            for f in files.iter() {
                if f.rows.is_some_and(|r| r < target) {
                    by_day.entry(f.day.as_str()).or_default().push(f);
                }
            }
            let mut bins: Vec<Vec<DataFile>> = Vec::new();
            for (_, day_files) in by_day {
                let mut bin: Vec<DataFile> = Vec::new();
                let mut rows = 0;
                for f in day_files {
                    let r = f.rows.unwrap_or(0);
                    if !bin.is_empty() && rows + r > target {
                        bins.push(std::mem::take(&mut bin));
                        rows = 0;
                    }
                    rows += r;
                    bin.push(f.clone());
                }
                bins.push(bin);
            }
            let mut merged_any = false;
            for bin in bins.into_iter().filter(|b| b.len() >= min_files) {
                let (removed, added) = self.merge(&table, &bin).await?;
                stats.files_removed += removed;
                stats.files_added += added;
                merged_any = true;
            }
            let mut guard = table.delta.lock().await;
            if let Some(handle) = guard.as_mut()
                && (merged_any || force || handle.state.version() % 10 == 0)
            {
                match handle.vacuum(self.config.vacuum_grace).await {
                    Ok(n) => stats.files_vacuumed += n,
                    Err(e) => tracing::warn!(table = %table.name, error = %e, "vacuum failed"),
                }
            }
        }
        self.metrics
            .files_compacted
            .fetch_add(stats.files_removed as u64, Ordering::Relaxed);
        if stats.files_removed > 0 {
            tracing::info!(
                removed = stats.files_removed,
                added = stats.files_added,
                "compacted small files"
            );
        }
        Ok(stats)
    }

    async fn merge(&self, table: &Table, bin: &[DataFile]) -> Result<(usize, usize)> {
        let schema = table.state.lock().schema.clone();
        let mut batches = Vec::new();
        for f in bin {
            let data = self.store.get(&f.location).await?.bytes().await?;
            let read = tokio::task::spawn_blocking(move || read_parquet(data))
                .await
                .map_err(|e| Error::Internal(format!("compaction task: {e}")))??;
            for b in read {
                batches.push(project(&b, &schema)?);
            }
        }
        let (adds, files) = self
            .write_files(&table.name, schema.clone(), batches)
            .await?;
        let added = files.len();
        let mut guard = table.delta.lock().await;
        let handle = self.delta_handle(table, &mut guard, &schema).await?;
        let adds = adds
            .into_iter()
            .map(|mut a| {
                a.data_change = false;
                a
            })
            .collect();
        handle
            .commit_compaction(bin, adds, self.config.compaction_target_rows as i64)
            .await?;
        let removed: HashSet<&str> = bin.iter().map(|f| f.relative.as_str()).collect();
        let mut state = table.state.lock();
        let mut all: Vec<DataFile> = state
            .files
            .iter()
            .filter(|f| !removed.contains(f.relative.as_str()))
            .cloned()
            .collect();
        all.extend(files);
        state.files = Arc::new(all);
        Ok((bin.len(), added))
    }

    /// Flushes when due and compacts periodically, until `shutdown` turns true.
    pub async fn run_background(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        let mut last_compaction = Instant::now();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => break,
            }
            if *shutdown.borrow() {
                break;
            }
            if self.flush_due()
                && let Err(e) = self.flush().await
            {
                tracing::error!(error = %e, "flush failed");
            }
            if last_compaction.elapsed() >= self.config.compaction_interval {
                last_compaction = Instant::now();
                if let Err(e) = self.compact(false).await {
                    tracing::error!(error = %e, "compaction failed");
                }
            }
        }
    }

    /// Stops accepting writes, flushes the buffer to Delta and stops the WAL thread.
    pub async fn shutdown(&self) -> Result<FlushStats> {
        self.shutting_down.store(true, Ordering::Release);
        let stats = if self.wal.is_some() {
            self.flush().await?
        } else {
            FlushStats::default()
        };
        if let Some(wal) = &self.wal {
            wal.stop();
        }
        Ok(stats)
    }
}

/// Checks whether sets of rows can be written one after the other, without writing them:
/// each admitted set widens the schemas the next ones are checked against, as the writes
/// would. For a writer that must store what fits of many messages in one [`Lake::apply`]
/// call (a message whose rows do not fit is set aside instead of failing the call).
#[derive(Debug)]
pub struct RowsCheck<'a> {
    lake: &'a Lake,
    schemas: BTreeMap<String, SchemaRef>,
}

impl RowsCheck<'_> {
    /// Checks `rows` (table, batch) as a [`Change::Rows`] each, after the sets admitted
    /// before: on success they are admitted (their new columns count for the next sets); on
    /// error — the user error the write would give (bad table or column, type conflict) —
    /// nothing is admitted.
    pub fn admit(&mut self, rows: &[(String, RecordBatch)]) -> Result<()> {
        let mut updated: BTreeMap<String, SchemaRef> = BTreeMap::new();
        for (table, batch) in rows {
            if batch.num_rows() == 0 {
                continue;
            }
            validate_table_name(table).map_err(Error::InvalidWrite)?;
            if table == CHECKPOINTS_TABLE {
                return Err(Error::InvalidWrite(format!(
                    "table '{CHECKPOINTS_TABLE}' is maintained by the lake: set checkpoints instead"
                )));
            }
            crate::table::validate_batch(batch)?;
            let current = match updated.get(table).or_else(|| self.schemas.get(table)) {
                Some(s) => s.clone(),
                None => self
                    .lake
                    .schema(table)
                    .unwrap_or_else(|| Arc::new(Schema::empty())),
            };
            if let Some(merged) = crate::table::merge_schema(table, &current, &batch.schema())? {
                updated.insert(table.clone(), Arc::new(merged));
            } else {
                updated.insert(table.clone(), current);
            }
        }
        self.schemas.extend(updated);
        Ok(())
    }
}

/// What a flush takes of a table: the rows to write, the files as they are and the deletes
/// of the segments the flush covers.
#[derive(Debug)]
struct Persisting {
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
    /// Number of persisting batch slots taken (dropped from the buffer after the commit).
    taken: usize,
    files: Arc<Vec<DataFile>>,
    deletes: DeleteSet,
    /// Versions logged with the rows (Delta `txn` actions of the commit).
    versions: BTreeMap<String, i64>,
}

fn take_persisting(table: &Table, segment: u64) -> Result<Persisting> {
    let state = table.state.lock();
    let schema = state.schema.clone();
    let batches = state
        .persisting
        .iter()
        .filter(|b| b.num_rows() > 0)
        .map(|b| project(b, &schema))
        .collect::<Result<Vec<_>>>()?;
    // Every row of the current files was written before every pending delete, and the rows
    // flushed now already had the deletes applied in the buffer: the deletes this flush
    // covers apply to the current files, not to its new ones. Deletes logged after the
    // rotation stay pending, and so also hide rows of the files this flush writes.
    let covered: Vec<_> = state
        .pending
        .iter()
        .filter(|p| p.segment <= segment)
        .cloned()
        .collect();
    Ok(Persisting {
        schema,
        batches,
        taken: state.persisting.len(),
        files: state.files.clone(),
        deletes: DeleteSet::new(Arc::new(covered)),
        versions: state.persisting_versions.clone(),
    })
}

fn get_or_create(catalog: &Catalog, name: &str) -> Arc<Table> {
    if let Some(t) = catalog.read().get(name) {
        return t.clone();
    }
    catalog
        .write()
        .entry(name.to_string())
        .or_insert_with(|| {
            Arc::new(Table::new(
                name,
                Arc::new(Schema::empty()),
                Vec::new(),
                None,
            ))
        })
        .clone()
}

fn table_url(tables_dir: &std::path::Path, name: &str) -> Result<Url> {
    Url::from_directory_path(tables_dir.join(name))
        .map_err(|()| Error::Internal(format!("no URL for table directory of {name}")))
}

fn table_root(root: &Path, name: &str) -> String {
    format!("{root}/{name}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Float64Array, StringDictionaryBuilder, TimestampMicrosecondArray};
    use arrow::datatypes::{DataType, Int32Type};
    use civiclake_core::{field_column, tag_column, time_column};

    fn batch(sensor: &str, start: i64, n: usize) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            time_column(),
            tag_column("sensor"),
            field_column("v", DataType::Float64),
        ]));
        let mut tags = StringDictionaryBuilder::<Int32Type>::new();
        (0..n).for_each(|_| tags.append_value(sensor));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(
                    TimestampMicrosecondArray::from_iter_values((0..n as i64).map(|i| start + i))
                        .with_timezone("UTC"),
                ),
                Arc::new(tags.finish()),
                Arc::new(Float64Array::from_iter_values((0..n).map(|i| i as f64))),
            ],
        )
        .unwrap()
    }

    fn rows(lake: &Lake, table: &str) -> (usize, usize) {
        let snap = lake.snapshot(table).unwrap().unwrap();
        let buffered = snap.batches.iter().map(RecordBatch::num_rows).sum();
        let in_files = snap
            .files
            .iter()
            .map(|f| f.rows.unwrap_or(0) as usize)
            .sum();
        (buffered, in_files)
    }

    fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }

    #[tokio::test]
    async fn replay_skips_segments_already_committed_to_delta() {
        let dir = tempfile::tempdir().unwrap();
        let config = LakeConfig::new(dir.path());
        let lake = Lake::open(config.clone(), OpenMode::ReadWrite)
            .await
            .unwrap();
        lake.write(vec![("air".into(), batch("s1", 0, 100))])
            .await
            .unwrap();
        lake.write(vec![("air".into(), batch("s2", 1_000, 50))])
            .await
            .unwrap();
        assert_eq!(rows(&lake, "air"), (150, 0));
        // Keep the WAL as it was before the flush: as if the process died after the Delta
        // commit but before the WAL truncation.
        let saved = dir.path().join("saved-wal");
        copy_dir(&dir.path().join("wal"), &saved);
        let stats = lake.flush().await.unwrap();
        assert_eq!((stats.rows, stats.files), (150, 1));
        assert_eq!(rows(&lake, "air"), (0, 150));
        lake.write(vec![("air".into(), batch("s3", 2_000, 7))])
            .await
            .unwrap();
        lake.wal.as_ref().unwrap().stop();
        drop(lake);
        copy_dir(&saved, &dir.path().join("wal"));

        let lake = Lake::open(config, OpenMode::ReadWrite).await.unwrap();
        // The 150 flushed rows come from Delta only; the 7 unflushed ones from the WAL.
        assert_eq!(rows(&lake, "air"), (7, 150));
        assert_eq!(lake.metrics().rows_replayed.load(Ordering::Relaxed), 7);
        lake.shutdown().await.unwrap();
    }

    #[tokio::test]
    async fn writes_are_refused_while_too_much_waits_for_a_flush() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = LakeConfig::new(dir.path());
        config.max_buffered_rows = 100;
        let lake = Lake::open(config, OpenMode::ReadWrite).await.unwrap();
        lake.write(vec![("air".into(), batch("s1", 0, 150))])
            .await
            .unwrap();
        let err = lake
            .write(vec![("air".into(), batch("s2", 1_000, 1))])
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::Saturated { retry_after, .. } if *retry_after == Duration::from_secs(1)),
            "{err}"
        );
        assert_eq!(err.class(), civiclake_core::ErrorClass::Unavailable);
        assert!(
            err.to_string().contains("150 rows wait for a flush"),
            "{err}"
        );
        assert_eq!(rows(&lake, "air"), (150, 0));
        lake.flush().await.unwrap();
        lake.write(vec![("air".into(), batch("s2", 1_000, 1))])
            .await
            .unwrap();
        assert_eq!(rows(&lake, "air"), (1, 150));
        lake.shutdown().await.unwrap();
    }

    #[tokio::test]
    async fn compaction_merges_a_day_and_keeps_every_row() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = LakeConfig::new(dir.path());
        config.vacuum_grace = Duration::ZERO;
        let lake = Lake::open(config.clone(), OpenMode::ReadWrite)
            .await
            .unwrap();
        for i in 0..3 {
            lake.write(vec![("air".into(), batch("s1", i * 10_000, 10))])
                .await
                .unwrap();
            lake.flush().await.unwrap();
        }
        assert_eq!(lake.snapshot("air").unwrap().unwrap().files.len(), 3);
        let stats = lake.compact(false).await.unwrap();
        assert_eq!(stats.files_removed, 0, "below min_files nothing is merged");
        let stats = lake.compact(true).await.unwrap();
        assert_eq!((stats.files_removed, stats.files_added), (3, 1));
        assert_eq!(rows(&lake, "air"), (0, 30));
        // The replaced files are vacuumed once the (zero) grace period has passed, i.e. on a
        // later millisecond than their removal.
        let mut vacuumed = stats.files_vacuumed;
        let deadline = Instant::now() + Duration::from_secs(10);
        while vacuumed < 3 && Instant::now() < deadline {
            vacuumed += lake.compact(true).await.unwrap().files_vacuumed;
        }
        assert_eq!(vacuumed, 3);
        let parquet_files = std::fs::read_dir(dir.path().join("tables/air/day=1970-01-01"))
            .unwrap()
            .count();
        assert_eq!(parquet_files, 1);
        lake.shutdown().await.unwrap();
        drop(lake);
        let lake = Lake::open(config, OpenMode::ReadWrite).await.unwrap();
        assert_eq!(rows(&lake, "air"), (0, 30));
        lake.shutdown().await.unwrap();
    }

    #[tokio::test]
    async fn a_second_writer_on_the_same_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(LakeConfig::new(dir.path()), OpenMode::ReadWrite)
            .await
            .unwrap();
        let err = Lake::open(LakeConfig::new(dir.path()), OpenMode::ReadWrite)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Locked(_)), "{err}");
        let reader = Lake::open(LakeConfig::new(dir.path()), OpenMode::ReadOnly)
            .await
            .unwrap();
        assert!(matches!(
            reader.write(vec![("air".into(), batch("s", 0, 1))]).await,
            Err(Error::ReadOnly)
        ));
        lake.shutdown().await.unwrap();
    }

    #[tokio::test]
    async fn ensure_table_registers_an_empty_table() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(LakeConfig::new(dir.path()), OpenMode::ReadWrite)
            .await
            .unwrap();
        let schema = batch("s", 0, 1).schema();
        lake.ensure_table("air", &schema).unwrap();
        assert_eq!(lake.table_names(), ["_checkpoints", "air"]);
        assert_eq!(lake.schema("air").unwrap(), schema);
        assert_eq!(rows(&lake, "air"), (0, 0));
        // Nothing to flush, nothing on disk.
        assert_eq!(lake.flush().await.unwrap().files, 0);
        assert!(!dir.path().join("tables/air").exists());
        lake.write(vec![("air".into(), batch("s", 0, 3))])
            .await
            .unwrap();
        lake.ensure_table("air", &schema).unwrap();
        assert_eq!(rows(&lake, "air"), (3, 0));
        let other = Schema::new(vec![time_column(), field_column("v", DataType::Utf8)]);
        assert!(matches!(
            lake.ensure_table("air", &other),
            Err(Error::TypeConflict { .. })
        ));
        assert!(matches!(
            lake.ensure_table("9air", &schema),
            Err(Error::InvalidWrite(_))
        ));
        lake.shutdown().await.unwrap();
    }
}
