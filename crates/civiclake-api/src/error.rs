//! `ApiError`: every failure of a handler, mapped to an HTTP status and a JSON body in one place.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use civiclake_core::ErrorClass;
use civiclake_ingest::RowError;
use serde::Serialize;

/// A JSON error body: `{"error": "...", "errors": [{"line":..,"column":..,"message":..}]}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: String,
    /// For payloads: the first rows that were rejected, with line and column.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<Object>)]
    pub errors: Vec<RowError>,
    /// For a refused field of a JSON body: its path (`first_signer`, `votes.a04`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// What else the error says, as data (a refused step: `{current, allowed}`; a stale
    /// `If-Match`: `{version}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub details: Option<serde_json::Value>,
}

/// What some errors add: the refused field, data.
#[derive(Debug, Default)]
struct Extra {
    field: Option<String>,
    details: Option<serde_json::Value>,
}

/// An error answered to an API client.
#[derive(Debug)]
pub struct ApiError {
    class: ErrorClass,
    message: String,
    errors: Vec<RowError>,
    /// The refused field and the error's data, when it has them (boxed: most errors have
    /// neither, and `Result<_, ApiError>` stays small).
    extra: Option<Box<Extra>>,
    status: Option<StatusCode>,
    retry_after_secs: Option<u64>,
}

impl ApiError {
    /// An error of `class` with `message`.
    pub fn new(class: ErrorClass, message: impl Into<String>) -> Self {
        Self {
            class,
            message: message.into(),
            errors: Vec::new(),
            extra: None,
            status: None,
            retry_after_secs: None,
        }
    }

    /// Names the refused field of the request's body.
    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.extra.get_or_insert_default().field = Some(field.into());
        self
    }

    /// Adds what the error says as data.
    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        self.extra.get_or_insert_default().details = Some(details);
        self
    }

    /// Adds a `Retry-After` header (seconds) to the answer.
    pub fn with_retry_after(mut self, secs: u64) -> Self {
        self.retry_after_secs = Some(secs.max(1));
        self
    }

    /// A 400 error.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorClass::User, message)
    }

    /// A 401 error: no valid credentials.
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(ErrorClass::Unauthenticated, message)
    }

    /// A 403 error: not allowed.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorClass::Forbidden, message)
    }

    /// A 400 error listing rejected rows.
    pub fn rejected(message: impl Into<String>, errors: Vec<RowError>) -> Self {
        Self {
            errors,
            ..Self::bad_request(message)
        }
    }

    /// Overrides the status chosen from the class.
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = Some(status);
        self
    }

    /// What went wrong, for people.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The HTTP status of this error.
    pub(crate) fn status(&self) -> StatusCode {
        self.status.unwrap_or(match self.class {
            ErrorClass::User => StatusCode::BAD_REQUEST,
            ErrorClass::Unauthenticated => StatusCode::UNAUTHORIZED,
            ErrorClass::Forbidden => StatusCode::FORBIDDEN,
            ErrorClass::NotFound => StatusCode::NOT_FOUND,
            ErrorClass::Conflict => StatusCode::CONFLICT,
            ErrorClass::Limit => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorClass::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorClass::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            tracing::warn!(status = %status, error = %self.message, "request refused");
        } else if status.is_server_error() {
            tracing::error!(status = %status, error = %self.message, "request failed");
        }
        let challenge = (status == StatusCode::UNAUTHORIZED).then_some([(
            axum::http::header::WWW_AUTHENTICATE,
            "Bearer realm=\"civiclake\"",
        )]);
        let retry = self.retry_after_secs.map(|secs| {
            [(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(secs),
            )]
        });
        (
            status,
            challenge,
            retry,
            Json(ErrorBody {
                error: self.message,
                errors: self.errors,
                field: self.extra.as_ref().and_then(|e| e.field.clone()),
                details: self.extra.and_then(|e| e.details),
            }),
        )
            .into_response()
    }
}

impl From<civiclake_lake::Error> for ApiError {
    fn from(e: civiclake_lake::Error) -> Self {
        let retry = match &e {
            civiclake_lake::Error::Saturated { retry_after, .. } => Some(retry_after.as_secs()),
            _ => None,
        };
        let error = Self::new(e.class(), e.to_string());
        match retry {
            Some(secs) => error.with_retry_after(secs),
            None => error,
        }
    }
}

impl From<civiclake_query::Error> for ApiError {
    fn from(e: civiclake_query::Error) -> Self {
        Self::new(e.class(), e.to_string())
    }
}

impl From<civiclake_ingest::Error> for ApiError {
    fn from(e: civiclake_ingest::Error) -> Self {
        Self::new(e.class(), e.to_string())
    }
}

impl From<civiclake_core::PlatformError> for ApiError {
    fn from(e: civiclake_core::PlatformError) -> Self {
        Self::new(e.class(), e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use civiclake_core::{ExpectedVersion, PlatformError};

    #[test]
    fn a_version_conflict_is_a_409_naming_the_versions() {
        let conflict = ExpectedVersion::Exact(1).check("loan-3", 2).unwrap_err();
        let response = ApiError::from(PlatformError::from(conflict)).into_response();
        assert_eq!(response.status(), StatusCode::CONFLICT);
        let unknown = ApiError::from(PlatformError::UnknownModule("x".into())).into_response();
        assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
        let closed = ApiError::from(PlatformError::Closed).into_response();
        assert_eq!(closed.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
}
