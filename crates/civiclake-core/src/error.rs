//! Error classes shared by every crate: each crate's error enum says which class it is in,
//! and the API maps the class to an HTTP status in one place.

/// What kind of failure an error is, which decides how it is reported and whether it is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The caller sent something invalid (bad payload, bad SQL, type conflict): HTTP 400.
    User,
    /// No valid credentials were given (missing, unknown, expired or revoked token): HTTP 401.
    Unauthenticated,
    /// The caller is known but not allowed to do this (role, table grant, namespace): HTTP 403.
    Forbidden,
    /// The thing asked for does not exist: HTTP 404.
    NotFound,
    /// The request conflicts with the current state (optimistic concurrency): HTTP 409.
    Conflict,
    /// A limit was exceeded (memory, time, size): HTTP 413/422/503 depending on the limit.
    Limit,
    /// A dependency is unavailable for now (disk full, object store down); retry later: HTTP 503.
    Unavailable,
    /// A bug or an unexpected failure: HTTP 500, logged.
    Internal,
}
