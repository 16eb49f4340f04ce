//! SQL over the lake with Apache DataFusion.
//!
//! Every table is the union of its buffered rows (Arrow batches in memory, so an
//! acknowledged row is visible at once) and its Delta table's Parquet files. Scans of the
//! files get the query's filters: files outside the queried time range are skipped from
//! their Delta stats, row groups and pages by Parquet statistics and the page index.
//! Each query runs in a session of its own with a memory pool (`query.memory_limit`) and a
//! time limit (`query.timeout`).

mod engine;
mod error;
mod provider;

pub use engine::{ColumnMask, QueryConfig, QueryEngine, QueryResult, SqlScope, TableFilter};
pub use error::{Error, Result};
