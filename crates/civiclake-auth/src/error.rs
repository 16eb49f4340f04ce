//! Errors of authentication and of the token store.

use civiclake_core::ErrorClass;

/// Why a credential was refused, or the store could not do something.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Not a civiclake token.
    #[error("malformed token: expected 'Authorization: Bearer clk_<id>_<secret>'")]
    Malformed,
    /// No such token (or the secret does not match).
    #[error("unknown token")]
    Unknown,
    /// The token was revoked.
    #[error("token revoked")]
    Revoked,
    /// The token expired.
    #[error("token expired")]
    Expired,
    /// A signed link that is forged, expired or used.
    #[error("invalid link: {0}")]
    Link(String),
    /// A bad request to the store (unknown role, bad grant).
    #[error("{0}")]
    Invalid(String),
    /// Something named does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The store could not be read or written.
    #[error("token store: {0}")]
    Io(String),
}

impl AuthError {
    /// The class of the error.
    pub fn class(&self) -> ErrorClass {
        match self {
            AuthError::Malformed
            | AuthError::Unknown
            | AuthError::Revoked
            | AuthError::Expired
            | AuthError::Link(_) => ErrorClass::Unauthenticated,
            AuthError::Invalid(_) => ErrorClass::User,
            AuthError::NotFound(_) => ErrorClass::NotFound,
            AuthError::Io(_) => ErrorClass::Internal,
        }
    }
}
