//! Signed links: how citizens and guardians get a scoped token without an account.
//!
//! `civiclake token link --role guardian --subject <fiscal code>` signs (HMAC-SHA256, key kept
//! in the token store) a short payload — role, subject, tables, expiry, a nonce — and prints a
//! URL `…/auth/link?t=<payload>.<signature>`. Opening it once exchanges it for a token of its
//! own (set as the `civiclake_token` cookie), valid for the session length written in the
//! link. A link is refused when forged, expired, used before, or for a role with the admin
//! permission.

use crate::error::AuthError;
use crate::model::Permission;
use crate::store::{AuthStore, NewToken, TokenRequest, now_secs};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::time::Duration;

type HmacSha256 = Hmac<Sha256>;

/// What a signed link grants.
#[derive(Debug, Clone)]
pub struct LinkRequest {
    /// Role of the token it becomes (not one with the admin permission).
    pub role: String,
    /// The person it is for (fiscal code).
    pub subject: String,
    /// Table globs, replacing the role's defaults.
    pub tables: Option<Vec<String>>,
    /// How long the link can be opened.
    pub valid_for: Duration,
    /// How long the token it becomes lasts.
    pub session: Duration,
}

#[derive(Debug, Serialize, Deserialize)]
struct Payload {
    r: String,
    s: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    t: Option<Vec<String>>,
    /// Link expiry (Unix seconds).
    e: i64,
    /// Session length (seconds).
    d: u64,
    /// Nonce.
    n: String,
}

fn mac(key: &[u8]) -> Result<HmacSha256, AuthError> {
    <HmacSha256 as KeyInit>::new_from_slice(key)
        .map_err(|_| AuthError::Io("bad link key length".into()))
}

impl AuthStore {
    /// Signs a link; returns the value of its `t` parameter.
    pub fn sign_link(&self, request: &LinkRequest) -> Result<String, AuthError> {
        let role = self
            .role(&request.role)
            .ok_or_else(|| AuthError::Invalid(format!("no role {:?}", request.role)))?;
        if role.permissions.contains(&Permission::Admin) {
            return Err(AuthError::Invalid(
                "signed links cannot grant a role with the admin permission".into(),
            ));
        }
        if request.subject.trim().is_empty() {
            return Err(AuthError::Invalid("a signed link needs a --subject".into()));
        }
        let mut nonce = [0u8; 16];
        getrandom::fill(&mut nonce).map_err(|e| AuthError::Io(format!("no randomness: {e}")))?;
        let payload = Payload {
            r: role.name,
            s: request.subject.trim().to_string(),
            t: request.tables.clone(),
            e: now_secs()
                .saturating_add(i64::try_from(request.valid_for.as_secs()).unwrap_or(i64::MAX)),
            d: request.session.as_secs(),
            n: hex::encode(nonce),
        };
        let json = serde_json::to_vec(&payload)
            .map_err(|e| AuthError::Io(format!("cannot encode a link: {e}")))?;
        let body = URL_SAFE_NO_PAD.encode(json);
        let mut m = mac(&self.link_key()?)?;
        m.update(body.as_bytes());
        let sig = URL_SAFE_NO_PAD.encode(m.finalize().into_bytes());
        Ok(format!("{body}.{sig}"))
    }

    /// Exchanges a signed link (its `t` parameter) for a token, once.
    pub fn redeem_link(&self, t: &str) -> Result<NewToken, AuthError> {
        let (body, sig) = t
            .split_once('.')
            .ok_or_else(|| AuthError::Link("not a civiclake link".into()))?;
        let sig = URL_SAFE_NO_PAD
            .decode(sig)
            .map_err(|_| AuthError::Link("bad signature encoding".into()))?;
        let mut m = mac(&self.link_key()?)?;
        m.update(body.as_bytes());
        m.verify_slice(&sig)
            .map_err(|_| AuthError::Link("the signature does not match".into()))?;
        let json = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| AuthError::Link("bad payload encoding".into()))?;
        let p: Payload =
            serde_json::from_slice(&json).map_err(|_| AuthError::Link("bad payload".into()))?;
        if p.e <= now_secs() {
            return Err(AuthError::Link(
                "the link expired; ask for a new one".into(),
            ));
        }
        if !self.redeem_nonce(&p.n)? {
            return Err(AuthError::Link("the link was already used".into()));
        }
        self.create_token(TokenRequest {
            role: p.r,
            tables: p.t,
            topics: None,
            expires_in: Some(Duration::from_secs(p.d)),
            label: Some("signed link".into()),
            subject: Some(p.s),
            org: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(role: &str) -> LinkRequest {
        LinkRequest {
            role: role.into(),
            subject: "RSSMRA80A01G999X".into(),
            tables: None,
            valid_for: Duration::from_secs(3600),
            session: Duration::from_secs(86400),
        }
    }

    #[test]
    fn a_link_becomes_a_scoped_token_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = AuthStore::open(dir.path()).expect("open");
        let t = store.sign_link(&req("guardian")).expect("sign");
        let new = store.redeem_link(&t).expect("redeem");
        let p = store.authenticate(&new.token).expect("auth");
        assert_eq!(p.role, "guardian");
        assert_eq!(p.subject.as_deref(), Some("RSSMRA80A01G999X"));
        assert!(p.can(Permission::Guardian));
        assert!(!p.can(Permission::Query));
        assert!(new.info.expires_at.is_some());
        assert!(matches!(store.redeem_link(&t), Err(AuthError::Link(m)) if m.contains("already")));
    }

    #[test]
    fn forged_expired_and_admin_links_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = AuthStore::open(dir.path()).expect("open");
        assert!(store.sign_link(&req("admin")).is_err());
        let t = store.sign_link(&req("citizen")).expect("sign");
        let (body, sig) = t.split_once('.').expect("dot");
        let mut forged: Vec<u8> = URL_SAFE_NO_PAD.decode(body).expect("b64");
        let text = String::from_utf8(forged.clone())
            .expect("utf8")
            .replace("citizen", "analyst");
        forged = text.into_bytes();
        let forged = format!("{}.{sig}", URL_SAFE_NO_PAD.encode(forged));
        assert!(
            matches!(store.redeem_link(&forged), Err(AuthError::Link(m)) if m.contains("signature"))
        );
        let mut old = req("citizen");
        old.valid_for = Duration::from_secs(0);
        let t = store.sign_link(&old).expect("sign");
        assert!(matches!(store.redeem_link(&t), Err(AuthError::Link(m)) if m.contains("expired")));
    }
}
