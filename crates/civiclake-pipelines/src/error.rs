//! Errors of the pipelines runtime.

/// What can go wrong defining or running pipelines and alert rules.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A definition is wrong (a 400 for the API, a start failure for files).
    #[error("{0}")]
    Invalid(String),
    /// No pipeline or rule of that name.
    #[error("{0} not found")]
    NotFound(String),
    /// The name is taken, or the definition comes from a file and cannot be changed here.
    #[error("{0}")]
    Conflict(String),
    /// The lake refused a write.
    #[error(transparent)]
    Lake(#[from] civiclake_lake::Error),
    /// A query failed.
    #[error(transparent)]
    Query(#[from] civiclake_query::Error),
    /// Arrow could not convert a result.
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    /// The runtime is stopping.
    #[error("the pipelines are stopping")]
    Stopped,
}

/// Result of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
