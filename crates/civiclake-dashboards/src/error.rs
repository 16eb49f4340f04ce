//! The crate's one error type.

use std::path::PathBuf;

use civiclake_core::ErrorClass;

/// Everything that can go wrong loading dashboards, reading a panel request, expanding a
/// panel's SQL or rendering its result.
#[derive(Debug, thiserror::Error)]
pub enum DashboardError {
    /// A dashboard or GeoJSON file (or the folder) could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A dashboard file is not valid: TOML syntax, an unknown key, a bad value. The message
    /// names the panel or variable when the problem is inside one.
    #[error("{file}: {message}")]
    Invalid {
        /// The file (or the id given to [`crate::DashboardSet::from_toml`]).
        file: String,
        /// What is wrong, with the panel or variable it concerns.
        message: String,
    },
    /// A GeoJSON boundary file is not usable.
    #[error("{file}: {message}")]
    Geo {
        /// The GeoJSON file.
        file: String,
        /// What is wrong.
        message: String,
    },
    /// A panel request (query parameters, variable values) is not valid: HTTP 400.
    #[error("{0}")]
    Request(String),
    /// A panel's SQL result cannot be drawn as that kind of panel (a column is missing or
    /// has the wrong type), or the panel names a boundary layer that is not loaded.
    #[error("panel `{panel}`: {message}")]
    Data {
        /// The panel id.
        panel: String,
        /// What is missing or wrong.
        message: String,
    },
    /// The drawing library failed (a bug, not bad input).
    #[error("panel `{panel}`: drawing failed: {message}")]
    Render {
        /// The panel id.
        panel: String,
        /// The drawing library's message.
        message: String,
    },
}

impl DashboardError {
    /// The error class, which the API maps to an HTTP status.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Io { .. } | Self::Render { .. } => ErrorClass::Internal,
            Self::Invalid { .. } | Self::Geo { .. } | Self::Request(_) | Self::Data { .. } => {
                ErrorClass::User
            }
        }
    }

    pub(crate) fn invalid(file: &str, message: impl Into<String>) -> Self {
        Self::Invalid {
            file: file.to_string(),
            message: message.into(),
        }
    }

    pub(crate) fn data(panel: &str, message: impl Into<String>) -> Self {
        Self::Data {
            panel: panel.to_string(),
            message: message.into(),
        }
    }
}
