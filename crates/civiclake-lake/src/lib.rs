//! The storage of civiclake: a write-ahead log, an in-memory buffer and Delta Lake tables.
//!
//! ```text
//! write ──► validate / widen schema ──► WAL (group commit, fsync) ──► buffer ──► ack
//!                                                                      │ flush (age / size)
//!                                          WAL truncated ◄── Delta commit of sorted Parquet
//!                                                                      │
//!                                               background compaction of small files
//! ```
//!
//! * Every acknowledged row is in the WAL on disk ([`Lake::write`] returns after the fsync).
//! * Every acknowledged row is visible: [`Lake::snapshot`] returns the buffer and the files.
//! * A flush ([`Lake::flush`]) rotates the WAL, sorts the buffered rows by day, series and
//!   time, writes one zstd Parquet file per day partition, commits them to the table's Delta
//!   log together with the last WAL segment they cover, and only then deletes the segments.
//! * Compaction ([`Lake::compact`]) merges small files of a day; replaced files are vacuumed
//!   after a grace period.
//! * Besides rows, the WAL logs replace-by-key ([`Lake::replace_by_key`]), delete-by-predicate
//!   ([`Lake::delete_where`]) and checkpoints ([`Lake::set_checkpoint`]), applied to the
//!   buffer at once and to the files by the next flush, replayed in order after a crash.
//! * Retention drops whole day partitions ([`Lake::drop_partitions_before`]); a purge
//!   ([`Lake::purge_where`]) deletes rows and removes them from the files on disk at once.

mod config;
mod deletes;
mod delta;
mod error;
mod lake;
mod parquet_io;
mod table;
mod wal;

pub use config::LakeConfig;
pub use deletes::DeleteSet;
pub use delta::{DAY_COLUMN, WAL_APP_ID};
pub use error::{Error, Result};
pub use lake::{
    CHECKPOINTS_TABLE, Change, ChangeOutcome, CompactStats, DeleteOutcome, FlushStats, Lake,
    LakeMetrics, LakeStats, OpenMode, PurgeOutcome, RetentionOutcome, RowsCheck, WriteObserver,
};
pub use parquet_io::{EncodedFile, encode_flush_files};
pub use table::{DataFile, TableSnapshot};
