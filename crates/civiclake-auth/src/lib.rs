//! Access control of civiclake: roles (data: sets of permissions with default grants),
//! hashed tokens in the data directory, signed links for citizens and guardians, and
//! pluggable identity providers.
//!
//! Enforcement lives where the thing is: the HTTP layer checks permissions per endpoint, the
//! SQL engine builds each session's catalog from the principal's table grants (and masks),
//! the write path checks table grants and module namespaces.

mod error;
mod identity;
mod link;
mod model;
mod store;

pub use error::AuthError;
pub use identity::{Identities, IdentityProvider};
pub use link::LinkRequest;
pub use model::{
    PERSONAL_DATA_MASK, PUBLIC_TABLES, Permission, Principal, Role, SUBJECT_PLACEHOLDER,
    glob_matches, shipped_roles, table_glob_matches, topic_filter_matches, valid_topic_subject,
};
pub use store::{AuthStore, NewToken, TOKEN_PREFIX, TokenInfo, TokenRequest, parse_expiry};
