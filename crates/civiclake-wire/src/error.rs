//! The engine's errors as each protocol's: the same classes as the HTTP statuses.

use civiclake_query::{Error, SqlScope};
use datafusion::sql::sqlparser::ast::Statement;
use datafusion_postgres::pgwire::error::{ErrorInfo, PgWireError};

/// A query error as a PostgreSQL error (SQLSTATE by the error's class).
pub(crate) fn pg_error(e: &Error) -> PgWireError {
    let code = match e {
        // syntax_error_or_access_rule_violation (HTTP 400)
        Error::Invalid(_) => "42000",
        // out_of_memory (HTTP 422)
        Error::MemoryLimit { .. } => "53200",
        // query_canceled (HTTP 422)
        Error::Timeout(_) => "57014",
        // serialization_failure: clients retry it (HTTP 503)
        Error::FileGone(_) => "40001",
        _ => "XX000",
    };
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".into(),
        code.into(),
        e.to_string(),
    )))
}

/// A statement this protocol does not run for `scope`.
pub(crate) fn refused(statement: &Statement, scope: &SqlScope) -> PgWireError {
    let kind = statement
        .to_string()
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_uppercase();
    let message = if scope.read_only() {
        format!(
            "{kind} is refused: this token may only read (SELECT, EXPLAIN, SHOW, SET, transactions)"
        )
    } else {
        format!(
            "{kind} does not run over the PostgreSQL protocol: queries, SET/SHOW, transactions and DELETE do (write rows through the HTTP API or MQTT)"
        )
    };
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".into(),
        "42501".into(),
        message,
    )))
}

/// A query error as a gRPC status (Flight SQL).
pub(crate) fn status(e: &Error) -> tonic::Status {
    let message = e.to_string();
    match e {
        Error::Invalid(_) => tonic::Status::invalid_argument(message),
        Error::MemoryLimit { .. } => tonic::Status::resource_exhausted(message),
        Error::Timeout(_) => tonic::Status::deadline_exceeded(message),
        Error::FileGone(_) => tonic::Status::unavailable(message),
        _ => tonic::Status::internal(message),
    }
}
