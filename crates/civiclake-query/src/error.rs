//! Errors of the query layer.

use civiclake_core::ErrorClass;
use datafusion::error::DataFusionError;
use std::time::Duration;

/// An error from planning or running a query.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The query is invalid (syntax, unknown table or column, types): DataFusion's message.
    #[error("{0}")]
    Invalid(String),
    /// The query needed more memory than `query.memory_limit`.
    #[error(
        "query exceeded the memory limit of {limit_mib} MiB (setting query.memory_limit): {message}"
    )]
    MemoryLimit {
        /// The limit in MiB.
        limit_mib: usize,
        /// DataFusion's message.
        message: String,
    },
    /// The query ran longer than `query.timeout`.
    #[error("query exceeded the time limit of {0:?} (setting query.timeout) and was cancelled")]
    Timeout(Duration),
    /// The query failed while running.
    #[error("query failed: {0}")]
    Execution(String),
    /// A Parquet file the query had planned to read was deleted meanwhile (retention, a
    /// DELETE or a vacuum removed it from the table): running the query again reads the
    /// table's current files.
    #[error(
        "a data file of the table was deleted while the query ran (retention, a DELETE or a \
         vacuum): run the query again ({0})"
    )]
    FileGone(String),
    /// The lake failed.
    #[error(transparent)]
    Lake(#[from] civiclake_lake::Error),
}

impl Error {
    /// The class of this error (decides the HTTP status).
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::Invalid(_) => ErrorClass::User,
            Error::MemoryLimit { .. } | Error::Timeout(_) => ErrorClass::Limit,
            Error::Execution(_) => ErrorClass::Internal,
            Error::FileGone(_) => ErrorClass::Unavailable,
            Error::Lake(e) => e.class(),
        }
    }

    pub(crate) fn from_datafusion(e: DataFusionError, limit_mib: usize) -> Self {
        if let Some(path) = missing_file(&e) {
            return Error::FileGone(path);
        }
        match e.find_root() {
            DataFusionError::ResourcesExhausted(m) => Error::MemoryLimit {
                limit_mib,
                message: m.clone(),
            },
            DataFusionError::SQL(..)
            | DataFusionError::Plan(_)
            | DataFusionError::SchemaError(..)
            | DataFusionError::NotImplemented(_)
            | DataFusionError::Configuration(_) => Error::Invalid(e.strip_backtrace()),
            DataFusionError::Execution(m) if is_user_execution_error(m) => {
                Error::Invalid(e.strip_backtrace())
            }
            DataFusionError::ArrowError(a, _) if is_user_arrow_error(a) => {
                Error::Invalid(e.strip_backtrace())
            }
            _ => Error::Execution(e.strip_backtrace()),
        }
    }
}

/// The location of an object the store did not find, anywhere in the chain of `e` — as
/// the error itself, or in the message of one that wraps it as text (the Parquet reader
/// does: "Failed to fetch metadata for file ...: Object Store error: Object at location
/// ... not found: ...").
fn missing_file(e: &DataFusionError) -> Option<String> {
    // The part below the tables directory: table, day and file.
    let shown = |path: &str| {
        path.rsplit_once("/tables/")
            .map_or(path, |(_, p)| p)
            .to_string()
    };
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = current {
        if let Some(object_store::Error::NotFound { path, .. }) =
            err.downcast_ref::<object_store::Error>()
        {
            return Some(shown(path));
        }
        current = err.source();
    }
    let message = e.to_string();
    let (_, rest) = message.split_once("Object at location ")?;
    let (path, _) = rest.split_once(" not found")?;
    Some(shown(path))
}

fn is_user_execution_error(message: &str) -> bool {
    // Errors raised by functions on bad arguments (e.g. a bad date_bin stride).
    !message.contains("Failed to") && !message.contains("object store")
}

fn is_user_arrow_error(e: &arrow::error::ArrowError) -> bool {
    use arrow::error::ArrowError as A;
    matches!(
        e,
        A::CastError(_)
            | A::ParseError(_)
            | A::DivideByZero
            | A::ComputeError(_)
            | A::ArithmeticOverflow(_)
            | A::InvalidArgumentError(_)
    )
}

/// Result with the query layer's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
