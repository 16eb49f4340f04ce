//! SQL over the lake with Apache DataFusion.
//!
//! Every table is the union of its buffered rows (Arrow batches in memory, so an
//! acknowledged row is visible at once) and its Delta table's Parquet files. Scans of the
//! files get the query's filters: files outside the queried time range are skipped from
//! their Delta stats, row groups and pages by Parquet statistics and the page index.
//! Each query runs in a session of its own with a memory pool (`query.memory_limit`) and a
//! time limit (`query.timeout`). Rows of the files that a delete still pending for them
//! matches are filtered out of the scan. [`parse_predicate`] turns a SQL condition into the
//! lake's [`civiclake_core::RowPredicate`] (for deletes given as text). Every session has
//! the time-series functions of [`register_timeseries`] (`time_bucket`, `locf`,
//! `interpolate`, `first`, `last`, `value_at`). An aggregate over a table with a registered
//! rollup ([`RollupDef`]) is answered from the rollup's complete buckets plus the raw rows
//! not rolled up, where that gives the same answer.

mod delete_filter;
mod engine;
mod error;
mod latest;
mod predicate_sql;
mod provider;
mod rollup;
mod timeseries;

pub use engine::{
    BatchStream, ColumnMask, QueryConfig, QueryEngine, QueryResult, SqlScope, TableFilter, ViewDef,
};
pub use error::{Error, Result};
pub use latest::LatestCache;
pub use predicate_sql::parse_predicate;
pub use rollup::RollupDef;
pub use timeseries::{DEFAULT_BUCKET_TIMEZONE, register_timeseries};
