//! Settings of the lake (filled by the server's configuration layer).

use std::path::PathBuf;
use std::time::Duration;

/// Settings of the lake.
#[derive(Debug, Clone)]
pub struct LakeConfig {
    /// Directory holding `wal/` and `tables/`.
    pub data_dir: PathBuf,
    /// fsync the WAL before acknowledging a write (turning it off loses acknowledged rows on a
    /// power cut; a process crash loses nothing either way).
    pub wal_fsync: bool,
    /// A WAL segment is closed and a new one opened past this size.
    pub wal_segment_bytes: u64,
    /// Buffered rows are flushed to Delta once the oldest is this old.
    pub flush_max_age: Duration,
    /// Buffered rows are flushed to Delta once there are this many.
    pub flush_max_rows: usize,
    /// Writes are refused with [`crate::Error::Saturated`] (HTTP 503 with Retry-After; MQTT
    /// and Kafka consumption pause) while more rows than this wait in memory for a flush.
    pub max_buffered_rows: usize,
    /// Writes are refused with [`crate::Error::Saturated`] while the WAL holds more bytes
    /// than this (flushes are failing or behind).
    pub max_wal_bytes: u64,
    /// Rows per Parquet row group.
    pub row_group_rows: usize,
    /// zstd level of Parquet pages.
    pub zstd_level: i32,
    /// Background compaction merges the small files of a day partition when at least this many.
    pub compaction_min_files: usize,
    /// A file with fewer rows than this is "small" and may be merged.
    pub compaction_target_rows: usize,
    /// How often the background compaction looks for work.
    pub compaction_interval: Duration,
    /// Files replaced by compaction are deleted (Delta vacuum) after this grace period, so
    /// queries already running can finish reading them.
    pub vacuum_grace: Duration,
}

impl LakeConfig {
    /// Defaults for a data directory.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            wal_fsync: true,
            wal_segment_bytes: 64 << 20,
            flush_max_age: Duration::from_secs(300),
            flush_max_rows: 4_000_000,
            max_buffered_rows: 12_000_000,
            max_wal_bytes: 4 << 30,
            row_group_rows: 100_000,
            zstd_level: 3,
            compaction_min_files: 4,
            compaction_target_rows: 20_000_000,
            compaction_interval: Duration::from_secs(60),
            vacuum_grace: Duration::from_secs(600),
        }
    }
}
