//! Identity providers: where a credential is checked.
//!
//! The server asks each provider in turn; the first that recognises the credential answers.
//! civiclake ships the token store (bearer tokens and signed-link sessions). A real login
//! through SPID/CIE is an OpenID Connect provider configured in production: it implements
//! [`IdentityProvider`] by verifying the ID token's signature and mapping its claims
//! (fiscal code → `subject`, a group → role) to a [`Principal`].

use crate::error::AuthError;
use crate::model::Principal;
use crate::store::{AuthStore, TOKEN_PREFIX};
use std::sync::Arc;

/// Something that turns a credential into a principal.
pub trait IdentityProvider: Send + Sync + std::fmt::Debug {
    /// Short name for logs.
    fn name(&self) -> &str;
    /// `Ok(None)` when the credential is not of this provider's kind; `Err` when it is but
    /// is refused.
    fn authenticate(&self, credential: &str) -> Result<Option<Principal>, AuthError>;
}

impl IdentityProvider for AuthStore {
    fn name(&self) -> &str {
        "token-store"
    }

    fn authenticate(&self, credential: &str) -> Result<Option<Principal>, AuthError> {
        if !credential.starts_with(TOKEN_PREFIX) {
            return Ok(None);
        }
        AuthStore::authenticate(self, credential).map(Some)
    }
}

/// The providers in order.
#[derive(Debug, Clone, Default)]
pub struct Identities {
    providers: Vec<Arc<dyn IdentityProvider>>,
}

impl Identities {
    /// No providers yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a provider (asked after the ones added before).
    pub fn with(mut self, provider: Arc<dyn IdentityProvider>) -> Self {
        self.providers.push(provider);
        self
    }

    /// Asks the providers in turn.
    pub fn authenticate(&self, credential: &str) -> Result<Principal, AuthError> {
        for p in &self.providers {
            if let Some(principal) = p.authenticate(credential)? {
                return Ok(principal);
            }
        }
        Err(AuthError::Malformed)
    }
}
