//! The error type of the decoders.

use crate::types::RowError;
use civiclake_core::ErrorClass;
use std::path::PathBuf;

/// A failure that concerns a whole payload or file (row-level problems are [`RowError`]s).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The payload is not valid UTF-8.
    #[error(
        "payload is not valid UTF-8: invalid byte sequence at line {line}, byte column {column}"
    )]
    InvalidUtf8 {
        /// 1-based line of the first invalid byte.
        line: usize,
        /// 1-based byte column of the first invalid byte.
        column: usize,
    },
    /// A format that carries no table name was decoded without [`crate::DecodeOptions::table`].
    #[error("{format} payloads need a table name: set the `table` option")]
    MissingTable {
        /// The payload format, e.g. `JSON`.
        format: &'static str,
    },
    /// The table name given in the options is invalid.
    #[error("{0}")]
    InvalidTable(String),
    /// An unknown payload format name.
    #[error("{0}")]
    UnknownFormat(String),
    /// An unknown timestamp precision.
    #[error("invalid precision {0:?}: use one of ns, n, us, u, ms, s")]
    InvalidPrecision(String),
    /// The JSON payload cannot be parsed at all, or its top level is not an object or array.
    #[error("invalid JSON: {0}")]
    Json(String),
    /// A payload of a broker message format (SenML, NGSI-LD, CloudEvents, phone locations)
    /// does not have the structure of its format.
    #[error("invalid {format} payload: {message}")]
    Payload {
        /// The payload format, e.g. `SenML`.
        format: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The server is not configured for this payload format (e.g. phone locations without a
    /// pseudonymisation key): nothing the sender can fix.
    #[error("{0}")]
    Config(String),
    /// The Arrow IPC stream cannot be read.
    #[error("invalid Arrow IPC stream: {0}")]
    ArrowIpc(#[source] arrow::error::ArrowError),
    /// The CSV file cannot be read.
    #[error("invalid CSV: {0}")]
    Csv(#[source] arrow::error::ArrowError),
    /// The Parquet file cannot be read.
    #[error("invalid Parquet file: {0}")]
    Parquet(#[source] parquet::errors::ParquetError),
    /// A batch cannot be brought to the civiclake conventions (unsupported type, missing or
    /// null time, conflict with the table's schema).
    #[error("{0}")]
    Schema(String),
    /// Rows were rejected while importing a file with `accept_partial = false`; batches before
    /// the failing chunk (`rows_before` rows) were already handed to the sink.
    #[error("{} rejected row(s){}", errors.len(), first_error(errors))]
    Rejected {
        /// Rows accepted and handed over before the failing chunk.
        rows_before: usize,
        /// The row errors of the failing chunk (at most 100).
        errors: Vec<RowError>,
    },
    /// A file cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The batch callback of [`crate::read_file`] failed.
    #[error("{source}")]
    Sink {
        /// The class of the sink's failure.
        class: ErrorClass,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
    /// An unexpected failure while assembling Arrow arrays (a bug).
    #[error("internal error while building Arrow data: {0}")]
    Arrow(#[source] arrow::error::ArrowError),
}

fn first_error(errors: &[RowError]) -> String {
    match errors.first() {
        Some(e) => format!("; first: {e}"),
        None => String::new(),
    }
}

impl Error {
    /// Wraps a failure of the batch callback of [`crate::read_file`].
    pub fn sink(
        class: ErrorClass,
        source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        Error::Sink {
            class,
            source: source.into(),
        }
    }

    /// The class of this error: [`ErrorClass::User`] for anything wrong with the payload,
    /// [`ErrorClass::Internal`] for I/O failures, bugs and server configuration problems, the sink's own class for sink errors.
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::Io { .. } | Error::Arrow(_) | Error::Config(_) => ErrorClass::Internal,
            Error::Sink { class, .. } => *class,
            _ => ErrorClass::User,
        }
    }
}

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_thread_safe_and_classified() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<Error>();
        assert_eq!(Error::Json("x".into()).class(), ErrorClass::User);
        assert_eq!(
            Error::MissingTable { format: "JSON" }.class(),
            ErrorClass::User
        );
        let io = Error::Io {
            path: "f.csv".into(),
            source: std::io::Error::other("boom"),
        };
        assert_eq!(io.class(), ErrorClass::Internal);
        assert_eq!(io.to_string(), "cannot read f.csv: boom");
        let rejected = Error::Rejected {
            rows_before: 0,
            errors: vec![RowError::new(3, 4, "bad")],
        };
        assert_eq!(
            rejected.to_string(),
            "1 rejected row(s); first: line 3, column 4: bad"
        );
        assert_eq!(rejected.class(), ErrorClass::User);
    }
}
