//! Errors of the lake.

use civiclake_core::ErrorClass;

/// An error from the lake (WAL, buffer, Delta tables).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A column's type differs from the type the table already has.
    #[error("column '{column}' of table '{table}' is {existing}, but the write gives {given}")]
    TypeConflict {
        /// Table name.
        table: String,
        /// Column name.
        column: String,
        /// Type already in the table.
        existing: &'static str,
        /// Type given by the write.
        given: &'static str,
    },
    /// The write does not follow the table conventions (missing time column, bad type, bad name).
    #[error("invalid write: {0}")]
    InvalidWrite(String),
    /// The table does not exist.
    #[error("table '{0}' does not exist")]
    TableNotFound(String),
    /// A delete predicate does not fit the table.
    #[error("invalid condition on table '{table}': {source}")]
    InvalidPredicate {
        /// Table name.
        table: String,
        /// What does not fit.
        source: civiclake_core::PredicateError,
    },
    /// The lake was opened read-only (e.g. by `civiclake sql --data-dir`).
    #[error("the lake is open read-only")]
    ReadOnly,
    /// Another process holds the data directory.
    #[error("data directory {0} is in use by another civiclake process")]
    Locked(String),
    /// Too much waits for a flush (rows in memory, or WAL bytes): the writer should slow
    /// down and retry after `retry_after`.
    #[error("ingest is saturated: {reason}; retry in {}s", retry_after.as_secs().max(1))]
    Saturated {
        /// What is over its limit.
        reason: String,
        /// A suggested delay before retrying.
        retry_after: std::time::Duration,
    },
    /// The lake is shutting down and accepts no more writes.
    #[error("the lake is shutting down")]
    ShuttingDown,
    /// Reading or writing the WAL or a file failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// Path involved.
        path: String,
        /// Underlying error.
        source: std::io::Error,
    },
    /// The WAL holds a record that cannot be decoded.
    #[error("corrupt WAL segment {segment}: {reason}")]
    CorruptWal {
        /// Segment file.
        segment: String,
        /// What is wrong.
        reason: String,
    },
    /// An Arrow operation failed.
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    /// A Parquet operation failed.
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    /// A Delta Lake operation failed.
    #[error("delta: {0}")]
    Delta(#[from] deltalake::DeltaTableError),
    /// An object store operation failed.
    #[error("object store: {0}")]
    ObjectStore(#[from] object_store::Error),
    /// Internal invariant broken.
    #[error("internal: {0}")]
    Internal(String),
}

impl Error {
    /// The class of this error (decides the HTTP status).
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::TypeConflict { .. }
            | Error::InvalidWrite(_)
            | Error::InvalidPredicate { .. } => ErrorClass::User,
            Error::TableNotFound(_) => ErrorClass::NotFound,
            Error::ReadOnly => ErrorClass::User,
            Error::Locked(_) | Error::ShuttingDown | Error::Saturated { .. } => {
                ErrorClass::Unavailable
            }
            Error::Io { .. } | Error::ObjectStore(_) => ErrorClass::Unavailable,
            _ => ErrorClass::Internal,
        }
    }

    pub(crate) fn io(path: impl std::fmt::Display, source: std::io::Error) -> Self {
        Error::Io {
            path: path.to_string(),
            source,
        }
    }
}

/// Result with the lake's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
