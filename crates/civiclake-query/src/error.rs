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
            Error::Lake(e) => e.class(),
        }
    }

    pub(crate) fn from_datafusion(e: DataFusionError, limit_mib: usize) -> Self {
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
