//! Delta Lake tables: creation, schema mapping, commits of new and compacted files.
//!
//! civiclake writes the Parquet files itself (sorted, zstd, page index) and commits them
//! with Delta's transaction API. Each flush commit carries an application transaction
//! (`txn`, app id [`WAL_APP_ID`]) whose version is the last WAL segment it covers: on
//! restart, WAL records of segments at or below it are already in the table and are not
//! replayed again (exactly once across a crash between commit and WAL truncation).

use crate::error::{Error, Result};
use crate::parquet_io::time_bounds_from_stats;
use crate::table::DataFile;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use civiclake_core::{
    ColumnRole, ROLE_KEY, TIME_COLUMN, field_column, role_of, tag_column, time_column,
};
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake::kernel::{Action, Add, MetadataExt, Remove, StructField, StructType, Transaction};
use deltalake::kernel::{DataType as DeltaType, PrimitiveType};
use deltalake::logstore::LogStoreRef;
use deltalake::operations::create::CreateBuilder;
use deltalake::operations::vacuum::Clock;
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::table::state::DeltaTableState;
use deltalake::{DeltaTableBuilder, TableProperty};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use url::Url;

/// Application id of the WAL-coverage transaction.
pub const WAL_APP_ID: &str = "civiclake-wal";
/// Name of the hidden day partition column.
pub const DAY_COLUMN: &str = "day";

/// An open Delta table: its log store and latest state.
#[derive(Debug, Clone)]
pub(crate) struct DeltaHandle {
    pub(crate) url: Url,
    pub(crate) log_store: LogStoreRef,
    pub(crate) state: DeltaTableState,
}

fn delta_type(field: &Field) -> Result<DeltaType> {
    Ok(match (role_of(field), field.data_type()) {
        (ColumnRole::Time, _) => DeltaType::Primitive(PrimitiveType::Timestamp),
        (ColumnRole::Tag, _) => DeltaType::Primitive(PrimitiveType::String),
        (_, DataType::Float64) => DeltaType::Primitive(PrimitiveType::Double),
        (_, DataType::Int64) => DeltaType::Primitive(PrimitiveType::Long),
        (_, DataType::Boolean) => DeltaType::Primitive(PrimitiveType::Boolean),
        (_, DataType::Utf8) => DeltaType::Primitive(PrimitiveType::String),
        (_, DataType::Timestamp(_, Some(_))) => DeltaType::Primitive(PrimitiveType::Timestamp),
        (_, other) => {
            return Err(Error::InvalidWrite(format!(
                "column '{}' of type {other} cannot be stored in Delta",
                field.name()
            )));
        }
    })
}

/// The Delta schema of a table: its columns (with their role in the field metadata) and the
/// `day` partition column.
pub(crate) fn delta_schema(schema: &Schema) -> Result<Vec<StructField>> {
    let mut fields = Vec::with_capacity(schema.fields().len() + 1);
    for field in schema.fields() {
        let role = role_of(field);
        fields.push(
            StructField::new(
                field.name().clone(),
                delta_type(field)?,
                role != ColumnRole::Time,
            )
            .with_metadata([(ROLE_KEY, role.as_str())]),
        );
    }
    fields.push(StructField::new(
        DAY_COLUMN,
        DeltaType::Primitive(PrimitiveType::Date),
        false,
    ));
    Ok(fields)
}

/// The civiclake Arrow schema back from a Delta schema.
pub(crate) fn arrow_schema(delta: &StructType) -> Result<SchemaRef> {
    let mut fields = Vec::new();
    for f in delta.fields() {
        if f.name() == DAY_COLUMN {
            continue;
        }
        let role = f
            .metadata()
            .get(ROLE_KEY)
            .map(|v| v.to_string().trim_matches('"').to_string());
        let field = match (role.as_deref(), f.data_type()) {
            (_, DeltaType::Primitive(PrimitiveType::Timestamp)) if f.name() == TIME_COLUMN => {
                time_column()
            }
            (Some("tag"), _) => tag_column(f.name()),
            (_, DeltaType::Primitive(PrimitiveType::Double)) => {
                field_column(f.name(), DataType::Float64)
            }
            (_, DeltaType::Primitive(PrimitiveType::Long)) => {
                field_column(f.name(), DataType::Int64)
            }
            (_, DeltaType::Primitive(PrimitiveType::Boolean)) => {
                field_column(f.name(), DataType::Boolean)
            }
            (_, DeltaType::Primitive(PrimitiveType::String)) => {
                field_column(f.name(), DataType::Utf8)
            }
            (_, DeltaType::Primitive(PrimitiveType::Timestamp)) => {
                field_column(f.name(), civiclake_core::time_type())
            }
            (_, other) => {
                return Err(Error::Internal(format!(
                    "Delta column '{}' has type {other:?}, which civiclake does not read",
                    f.name()
                )));
            }
        };
        fields.push(field);
    }
    Ok(std::sync::Arc::new(Schema::new(fields)))
}

/// Opens the Delta table at `url`, if one exists there.
pub(crate) async fn open(url: &Url) -> Result<Option<DeltaHandle>> {
    let mut table = DeltaTableBuilder::from_url(url.clone())?.build()?;
    match table.load().await {
        Ok(()) => {}
        Err(deltalake::DeltaTableError::NotATable(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let state = table.snapshot()?.clone();
    Ok(Some(DeltaHandle {
        url: url.clone(),
        log_store: table.log_store(),
        state,
    }))
}

/// Creates the Delta table for `schema` at `url`.
pub(crate) async fn create(url: &Url, name: &str, schema: &Schema) -> Result<DeltaHandle> {
    let table = CreateBuilder::new()
        .with_location(url.as_str())
        .with_table_name(name)
        .with_columns(delta_schema(schema)?)
        .with_partition_columns([DAY_COLUMN])
        .with_save_mode(SaveMode::Ignore)
        .with_configuration_property(TableProperty::CheckpointInterval, Some("50"))
        .await?;
    let state = table.snapshot()?.clone();
    Ok(DeltaHandle {
        url: url.clone(),
        log_store: table.log_store(),
        state,
    })
}

impl DeltaHandle {
    /// Last WAL segment whose rows are already committed to this table.
    pub(crate) async fn wal_version(&self) -> Result<Option<u64>> {
        let v = self
            .state
            .transaction_version(self.log_store.as_ref(), WAL_APP_ID)
            .await?;
        Ok(v.and_then(|v| u64::try_from(v).ok()))
    }

    /// The files of the table, with time bounds from their stats.
    pub(crate) fn files(&self, table_root: &str) -> Vec<DataFile> {
        self.state
            .log_data()
            .iter()
            .map(|f| {
                let relative = f.path().to_string();
                let (rows, min_time, max_time) = f
                    .stats()
                    .map(|s| time_bounds_from_stats(&s))
                    .unwrap_or((None, None, None));
                let day = relative
                    .split('/')
                    .find_map(|p| p.strip_prefix("day="))
                    .unwrap_or("")
                    .to_string();
                DataFile {
                    location: object_store::path::Path::from(format!("{table_root}/{relative}")),
                    relative,
                    size: u64::try_from(f.size()).unwrap_or(0),
                    rows,
                    min_time,
                    max_time,
                    day,
                }
            })
            .collect()
    }

    fn schema_differs(&self, schema: &Schema) -> Result<Option<StructType>> {
        let current = self.state.schema();
        let wanted = StructType::try_new(delta_schema(schema)?)
            .map_err(|e| Error::Internal(e.to_string()))?;
        let same = current.fields().count() == wanted.fields().count()
            && wanted.fields().all(|f| current.field(f.name()).is_some());
        Ok((!same).then_some(wanted))
    }

    /// Commits new files written by a flush, and the files it rewrote to apply deletes
    /// (`removed` replaced by some of `adds`; `deletes` describes them), widening the schema
    /// if needed, and records that WAL segments up to `wal_segment` are in the table, and the
    /// `versions` logged with the rows (one `txn` action each, app id = name) — all in one
    /// commit.
    pub(crate) async fn commit_flush(
        &mut self,
        schema: &Schema,
        adds: Vec<Add>,
        removed: &[DataFile],
        wal_segment: u64,
        versions: &BTreeMap<String, i64>,
        deletes: Option<String>,
    ) -> Result<()> {
        let mut actions = Vec::with_capacity(adds.len() + removed.len() + 1);
        if let Some(wanted) = self.schema_differs(schema)? {
            let metadata = self
                .state
                .metadata()
                .clone()
                .with_schema(&wanted)
                .map_err(deltalake::DeltaTableError::from)?;
            actions.push(Action::Metadata(metadata));
        }
        let now = chrono::Utc::now().timestamp_millis();
        actions.extend(removed.iter().map(|f| remove_action(f, true, now)));
        actions.extend(adds.into_iter().map(Action::Add));
        let mut txns = vec![Transaction::new_with_last_update(
            WAL_APP_ID,
            i64::try_from(wal_segment).unwrap_or(i64::MAX),
            Some(now),
        )];
        txns.extend(
            versions
                .iter()
                .filter(|(name, _)| name.as_str() != WAL_APP_ID)
                .map(|(name, v)| Transaction::new_with_last_update(name, *v, Some(now))),
        );
        let props = CommitProperties::default().with_application_transactions(txns);
        let op = if removed.is_empty() {
            DeltaOperation::Write {
                mode: SaveMode::Append,
                partition_by: Some(vec![DAY_COLUMN.to_string()]),
                predicate: None,
            }
        } else {
            DeltaOperation::Delete { predicate: deletes }
        };
        self.commit(CommitBuilder::from(props).with_actions(actions), op)
            .await
    }

    /// Commits a compaction: `removed` files replaced by `added`, with no data change.
    pub(crate) async fn commit_compaction(
        &mut self,
        removed: &[DataFile],
        added: Vec<Add>,
        target_size: i64,
    ) -> Result<()> {
        let now = chrono::Utc::now().timestamp_millis();
        let mut actions: Vec<Action> = removed
            .iter()
            .map(|f| remove_action(f, false, now))
            .collect();
        actions.extend(added.into_iter().map(Action::Add));
        let op = DeltaOperation::Optimize {
            predicate: None,
            target_size,
        };
        self.commit(CommitBuilder::default().with_actions(actions), op)
            .await
    }

    async fn commit(&mut self, builder: CommitBuilder, op: DeltaOperation) -> Result<()> {
        let finalized = builder
            .build(Some(&self.state), self.log_store.clone(), op)
            .await?;
        self.state = finalized.snapshot();
        Ok(())
    }

    /// Commits the removal of whole day partitions (retention): `removed` are every file of
    /// the days `predicate` describes; no file is added and no WAL segment is covered.
    pub(crate) async fn commit_drop(
        &mut self,
        removed: &[DataFile],
        predicate: String,
    ) -> Result<()> {
        let now = chrono::Utc::now().timestamp_millis();
        let actions: Vec<Action> = removed
            .iter()
            .map(|f| remove_action(f, true, now))
            .collect();
        let op = DeltaOperation::Delete {
            predicate: Some(predicate),
        };
        self.commit(CommitBuilder::default().with_actions(actions), op)
            .await
    }

    /// Deletes files removed from the table more than `retention` ago (Delta vacuum).
    pub(crate) async fn vacuum(&mut self, retention: std::time::Duration) -> Result<usize> {
        self.vacuum_with(retention, None).await
    }

    /// Deletes every file removed from the table, up to the current millisecond included
    /// (Delta vacuum with no retention).
    pub(crate) async fn vacuum_all(&mut self) -> Result<usize> {
        self.vacuum_with(std::time::Duration::ZERO, Some(Arc::new(PastNow)))
            .await
    }

    async fn vacuum_with(
        &mut self,
        retention: std::time::Duration,
        clock: Option<Arc<dyn Clock>>,
    ) -> Result<usize> {
        let table = DeltaTableBuilder::from_url(self.url.clone())?
            .load()
            .await?;
        let retention = chrono::Duration::from_std(retention)
            .map_err(|e| Error::Internal(format!("vacuum retention: {e}")))?;
        let mut builder = table
            .vacuum()
            .with_retention_period(retention)
            .with_enforce_retention_duration(false);
        if let Some(clock) = clock {
            builder = builder.with_clock(clock);
        }
        let (table, metrics) = builder.await?;
        self.state = table.snapshot()?.clone();
        Ok(metrics.files_deleted.len())
    }
}

/// A vacuum clock one millisecond ahead: a file removed in the current millisecond is
/// "older than no retention" too (Delta vacuums files removed strictly before now − retention).
#[derive(Debug)]
struct PastNow;

impl Clock for PastNow {
    fn current_timestamp_millis(&self) -> i64 {
        chrono::Utc::now().timestamp_millis() + 1
    }
}

/// A Delta `remove` action for `file`, removed at `now` (ms).
fn remove_action(file: &DataFile, data_change: bool, now: i64) -> Action {
    Action::Remove(Remove {
        path: file.relative.clone(),
        data_change,
        deletion_timestamp: Some(now),
        extended_file_metadata: Some(true),
        partition_values: Some(HashMap::from([(
            DAY_COLUMN.to_string(),
            Some(file.day.clone()),
        )])),
        size: i64::try_from(file.size).ok(),
        tags: None,
        deletion_vector: None,
        base_row_id: None,
        default_row_commit_version: None,
    })
}

/// A Delta `add` action for a new file of `day`.
pub(crate) fn add_action(relative: &str, day: &str, size: u64, stats: String) -> Add {
    Add {
        path: relative.to_string(),
        partition_values: HashMap::from([(DAY_COLUMN.to_string(), Some(day.to_string()))]),
        size: i64::try_from(size).unwrap_or(i64::MAX),
        modification_time: chrono::Utc::now().timestamp_millis(),
        data_change: true,
        stats: Some(stats),
        tags: None,
        deletion_vector: None,
        base_row_id: None,
        default_row_commit_version: None,
        clustering_provider: None,
    }
}
