//! The token store: `<data_dir>/auth/store.json`, shared by the server and the `civiclake
//! token` command.
//!
//! Tokens are `clk_<id>_<secret>`; only the SHA-256 of the secret is stored, so a token is
//! shown once, when it is made. Every change takes an exclusive lock on
//! `<data_dir>/auth/store.lock`, re-reads the file, changes it and replaces it atomically
//! (write to a temporary file, fsync, rename), so the command and a running server can change
//! it at the same time. The server re-reads the file when it changed (checked at most once a
//! second, and at once when a token is not found), so a token made by the command on the same
//! data directory works at once.

use crate::error::AuthError;
use crate::model::{Principal, Role, shipped_roles};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};
use subtle::ConstantTimeEq;

/// Prefix of every civiclake token.
pub const TOKEN_PREFIX: &str = "clk_";

/// What is known about a token (never its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenInfo {
    /// Public id (12 hex digits), part of the token itself.
    pub id: String,
    /// Role name.
    pub role: String,
    /// Table globs granted, replacing the role's defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tables: Option<Vec<String>>,
    /// Topic filters granted, replacing the role's defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topics: Option<Vec<String>>,
    /// The person it is for (fiscal code), for guardian and citizen tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The organisation of the bus it acts for (bus-member tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
    /// A note for people (who or what holds it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Created (Unix seconds).
    pub created_at: i64,
    /// Expires (Unix seconds); never when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
    /// Last accepted (Unix seconds), recorded by the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<i64>,
    /// Revoked (Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredToken {
    #[serde(flatten)]
    info: TokenInfo,
    /// Hex SHA-256 of the secret part.
    sha256: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct StoreFile {
    #[serde(default)]
    version: u32,
    /// Hex key of the HMAC that signs links.
    #[serde(default)]
    link_key: String,
    #[serde(default)]
    tokens: Vec<StoredToken>,
    /// Roles defined here: new roles, or shipped ones redefined.
    #[serde(default)]
    roles: Vec<Role>,
    /// Nonces of signed links already exchanged for a token.
    #[serde(default)]
    redeemed_links: Vec<String>,
}

type Stamp = (SystemTime, u64);

#[derive(Debug)]
struct Cached {
    file: StoreFile,
    stamp: Option<Stamp>,
}

/// What a new token is for.
#[derive(Debug, Clone, Default)]
pub struct TokenRequest {
    /// Role name.
    pub role: String,
    /// Table globs (replace the role's defaults).
    pub tables: Option<Vec<String>>,
    /// Topic filters (replace the role's defaults).
    pub topics: Option<Vec<String>>,
    /// How long it is valid; forever when absent.
    pub expires_in: Option<Duration>,
    /// A note for people.
    pub label: Option<String>,
    /// The person it is for.
    pub subject: Option<String>,
    /// The organisation of the bus it acts for.
    pub org: Option<String>,
}

/// A token just made: the secret (shown once) and its record.
#[derive(Debug, Clone)]
pub struct NewToken {
    /// The whole token, `clk_<id>_<secret>`: give it to its holder, it is not stored.
    pub token: String,
    /// Its record.
    pub info: TokenInfo,
}

/// Tokens and roles kept in the data directory.
#[derive(Debug)]
pub struct AuthStore {
    dir: PathBuf,
    cache: RwLock<Cached>,
    checked: Mutex<Instant>,
    used: Mutex<HashMap<String, i64>>,
}

/// Whether `org` is a usable organisation name (the bus's rule for names).
fn valid_org(org: &str) -> bool {
    org.len() <= 64
        && org
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && org
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

pub(crate) fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

fn random_bytes<const N: usize>() -> Result<[u8; N], AuthError> {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf).map_err(|e| AuthError::Io(format!("no randomness: {e}")))?;
    Ok(buf)
}

fn sha256_hex(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

fn io_err(path: &Path, e: std::io::Error) -> AuthError {
    AuthError::Io(format!("{}: {e}", path.display()))
}

impl AuthStore {
    /// Opens the store of `data_dir` (creating `auth/` when missing).
    pub fn open(data_dir: &Path) -> Result<Self, AuthError> {
        let dir = data_dir.join("auth");
        std::fs::create_dir_all(&dir).map_err(|e| io_err(&dir, e))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
        }
        let store = Self {
            dir,
            cache: RwLock::new(Cached {
                file: StoreFile::default(),
                stamp: None,
            }),
            checked: Mutex::new(Instant::now()),
            used: Mutex::new(HashMap::new()),
        };
        store.reload()?;
        Ok(store)
    }

    fn path(&self) -> PathBuf {
        self.dir.join("store.json")
    }

    fn stamp(&self) -> Option<Stamp> {
        let meta = std::fs::metadata(self.path()).ok()?;
        Some((meta.modified().ok()?, meta.len()))
    }

    fn read_file(&self) -> Result<StoreFile, AuthError> {
        let path = self.path();
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| AuthError::Io(format!("{} is damaged: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(StoreFile::default()),
            Err(e) => Err(io_err(&path, e)),
        }
    }

    /// Re-reads the file if it changed since it was last read.
    fn reload(&self) -> Result<(), AuthError> {
        let stamp = self.stamp();
        if stamp.is_some() && self.cache.read().stamp == stamp {
            return Ok(());
        }
        let file = self.read_file()?;
        *self.cache.write() = Cached { file, stamp };
        Ok(())
    }

    fn reload_if_stale(&self) {
        let mut checked = self.checked.lock();
        if checked.elapsed() >= Duration::from_secs(1) {
            *checked = Instant::now();
            drop(checked);
            if let Err(e) = self.reload() {
                tracing::warn!(error = %e, "cannot re-read the token store");
            }
        }
    }

    /// Runs `change` on the current file under the store's lock and writes the result.
    fn modify<T>(
        &self,
        change: impl FnOnce(&mut StoreFile) -> Result<T, AuthError>,
    ) -> Result<T, AuthError> {
        let lock_path = self.dir.join("store.lock");
        let lock = File::create(&lock_path).map_err(|e| io_err(&lock_path, e))?;
        lock.lock().map_err(|e| io_err(&lock_path, e))?;
        let mut file = self.read_file()?;
        file.version = 1;
        let out = change(&mut file)?;
        let path = self.path();
        let tmp = self.dir.join("store.json.tmp");
        let bytes = serde_json::to_vec_pretty(&file)
            .map_err(|e| AuthError::Io(format!("cannot encode the token store: {e}")))?;
        {
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create(true).truncate(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(0o600);
            }
            let mut f = options.open(&tmp).map_err(|e| io_err(&tmp, e))?;
            f.write_all(&bytes).map_err(|e| io_err(&tmp, e))?;
            f.sync_all().map_err(|e| io_err(&tmp, e))?;
        }
        std::fs::rename(&tmp, &path).map_err(|e| io_err(&path, e))?;
        if let Ok(d) = File::open(&self.dir) {
            let _ = d.sync_all();
        }
        let stamp = self.stamp();
        *self.cache.write() = Cached { file, stamp };
        drop(lock);
        Ok(out)
    }

    /// Every role: the shipped ones, redefined or extended by the store.
    pub fn roles(&self) -> Vec<Role> {
        self.reload_if_stale();
        let cache = self.cache.read();
        merged_roles(&cache.file)
    }

    /// The role called `name`.
    pub fn role(&self, name: &str) -> Option<Role> {
        self.roles().into_iter().find(|r| r.name == name)
    }

    /// Defines (or redefines) a role.
    pub fn put_role(&self, role: Role) -> Result<(), AuthError> {
        role.validate().map_err(AuthError::Invalid)?;
        if role.name == "admin" && !role.permissions.contains(&crate::Permission::Admin) {
            return Err(AuthError::Invalid(
                "the admin role must keep the admin permission".into(),
            ));
        }
        self.modify(|f| {
            f.roles.retain(|r| r.name != role.name);
            f.roles.push(role);
            Ok(())
        })
    }

    /// Makes a token. The returned secret is not stored anywhere.
    pub fn create_token(&self, request: TokenRequest) -> Result<NewToken, AuthError> {
        let role = self.role(&request.role).ok_or_else(|| {
            let names: Vec<String> = self.roles().into_iter().map(|r| r.name).collect();
            AuthError::Invalid(format!(
                "no role {:?}; roles: {}",
                request.role,
                names.join(", ")
            ))
        })?;
        if role.requires_tables && request.tables.as_ref().is_none_or(Vec::is_empty) {
            return Err(AuthError::Invalid(format!(
                "a {} token must name its tables (--tables GLOB,...)",
                role.name
            )));
        }
        let needs_subject = request
            .topics
            .as_ref()
            .unwrap_or(&role.topics)
            .iter()
            .any(|t| t.contains(crate::model::SUBJECT_PLACEHOLDER));
        if needs_subject {
            match &request.subject {
                None => {
                    return Err(AuthError::Invalid(format!(
                        "a {} token must name its subject (--subject ID): its topics hold {}",
                        role.name,
                        crate::model::SUBJECT_PLACEHOLDER
                    )));
                }
                Some(s) if !crate::model::valid_topic_subject(s) => {
                    return Err(AuthError::Invalid(format!(
                        "subject {s:?}: it stands for a topic level, so use 1-64 characters without '/', '+', '#', ',', spaces or braces"
                    )));
                }
                Some(_) => {}
            }
        }
        match (&request.org, role.requires_org) {
            (None, true) => {
                return Err(AuthError::Invalid(format!(
                    "a {} token must name its organisation (--org NAME)",
                    role.name
                )));
            }
            (Some(org), _) if !valid_org(org) => {
                return Err(AuthError::Invalid(format!(
                    "organisation {org:?}: use 1-64 letters, digits, '-' and '_', starting with a letter or digit"
                )));
            }
            _ => {}
        }
        for g in request
            .tables
            .iter()
            .flatten()
            .chain(request.topics.iter().flatten())
        {
            if g.is_empty() || g.chars().any(|c| c.is_control() || c == ',' || c == ' ') {
                return Err(AuthError::Invalid(format!("invalid grant {g:?}")));
            }
        }
        let id = hex::encode(random_bytes::<6>()?);
        let secret = URL_SAFE_NO_PAD.encode(random_bytes::<32>()?);
        let now = now_secs();
        let expires_at = request
            .expires_in
            .map(|d| now.saturating_add(i64::try_from(d.as_secs()).unwrap_or(i64::MAX)));
        let info = TokenInfo {
            id: id.clone(),
            role: role.name.clone(),
            tables: request.tables,
            topics: request.topics,
            subject: request.subject,
            org: request.org,
            label: request.label,
            created_at: now,
            expires_at,
            last_used_at: None,
            revoked_at: None,
        };
        let stored = StoredToken {
            info: info.clone(),
            sha256: sha256_hex(&secret),
        };
        self.modify(|f| {
            f.tokens.push(stored);
            Ok(())
        })?;
        Ok(NewToken {
            token: format!("{TOKEN_PREFIX}{id}_{secret}"),
            info,
        })
    }

    /// Every token's record, oldest first.
    pub fn list(&self) -> Vec<TokenInfo> {
        self.reload_if_stale();
        let used = self.used.lock().clone();
        self.cache
            .read()
            .file
            .tokens
            .iter()
            .map(|t| {
                let mut info = t.info.clone();
                if let Some(&u) = used.get(&info.id) {
                    info.last_used_at = Some(info.last_used_at.map_or(u, |l| l.max(u)));
                }
                info
            })
            .collect()
    }

    /// Revokes token `id`; false if it was already revoked. Unknown id → NotFound.
    pub fn revoke(&self, id: &str) -> Result<bool, AuthError> {
        self.modify(|f| {
            let t = f
                .tokens
                .iter_mut()
                .find(|t| t.info.id == id)
                .ok_or_else(|| AuthError::NotFound(format!("no token with id {id:?}")))?;
            if t.info.revoked_at.is_some() {
                return Ok(false);
            }
            t.info.revoked_at = Some(now_secs());
            Ok(true)
        })
    }

    /// Checks a token and returns who it is. Records its use (see [`Self::persist_last_used`]).
    pub fn authenticate(&self, token: &str) -> Result<Principal, AuthError> {
        let rest = token
            .strip_prefix(TOKEN_PREFIX)
            .ok_or(AuthError::Malformed)?;
        let (id, secret) = rest.split_once('_').ok_or(AuthError::Malformed)?;
        if id.len() != 12 || secret.is_empty() {
            return Err(AuthError::Malformed);
        }
        self.reload_if_stale();
        let mut found = self.find(id);
        if found.is_none() {
            // Made a moment ago by `civiclake token create` on this data directory?
            self.reload()?;
            found = self.find(id);
        }
        let stored = found.ok_or(AuthError::Unknown)?;
        let expected = hex::decode(&stored.sha256).map_err(|_| AuthError::Unknown)?;
        let actual = Sha256::digest(secret.as_bytes());
        if !bool::from(expected.as_slice().ct_eq(actual.as_slice())) {
            return Err(AuthError::Unknown);
        }
        let now = now_secs();
        if stored.info.revoked_at.is_some() {
            return Err(AuthError::Revoked);
        }
        if stored.info.expires_at.is_some_and(|e| e <= now) {
            return Err(AuthError::Expired);
        }
        let role = self.role(&stored.info.role).ok_or_else(|| {
            AuthError::Invalid(format!(
                "the role {:?} of this token no longer exists",
                stored.info.role
            ))
        })?;
        self.used.lock().insert(stored.info.id.clone(), now);
        Ok(Principal::of_role(
            &role,
            Some(stored.info.id.clone()),
            stored.info.tables.as_deref(),
            stored.info.topics.as_deref(),
            stored.info.subject.clone(),
            stored.info.org.clone(),
        ))
    }

    /// Whether token `id` exists and is neither revoked nor expired (re-reading the store
    /// file at most once a second): long-lived connections (MQTT) check this per message.
    pub fn is_active(&self, id: &str) -> bool {
        self.reload_if_stale();
        self.find(id).is_some_and(|t| {
            t.info.revoked_at.is_none() && t.info.expires_at.is_none_or(|e| e > now_secs())
        })
    }

    fn find(&self, id: &str) -> Option<StoredToken> {
        self.cache
            .read()
            .file
            .tokens
            .iter()
            .find(|t| t.info.id == id)
            .cloned()
    }

    /// Writes the last-use times recorded since the previous call (the server calls this
    /// every few seconds and at shutdown).
    pub fn persist_last_used(&self) -> Result<usize, AuthError> {
        let used: HashMap<String, i64> = std::mem::take(&mut *self.used.lock());
        if used.is_empty() {
            return Ok(0);
        }
        let n = used.len();
        let result = self.modify(|f| {
            for t in &mut f.tokens {
                if let Some(&u) = used.get(&t.info.id) {
                    t.info.last_used_at = Some(t.info.last_used_at.map_or(u, |l| l.max(u)));
                }
            }
            Ok(())
        });
        if result.is_err() {
            let mut pending = self.used.lock();
            for (k, v) in used {
                pending.entry(k).or_insert(v);
            }
        }
        result.map(|()| n)
    }

    /// The key that signs links, made on first use.
    pub(crate) fn link_key(&self) -> Result<Vec<u8>, AuthError> {
        self.reload_if_stale();
        let key = self.cache.read().file.link_key.clone();
        let key = if key.is_empty() {
            self.modify(|f| {
                if f.link_key.is_empty() {
                    f.link_key = hex::encode(random_bytes::<32>()?);
                }
                Ok(f.link_key.clone())
            })?
        } else {
            key
        };
        hex::decode(key)
            .map_err(|_| AuthError::Io("the link key in the token store is damaged".into()))
    }

    /// Marks a link nonce as exchanged; false if it already was.
    pub(crate) fn redeem_nonce(&self, nonce: &str) -> Result<bool, AuthError> {
        self.modify(|f| {
            if f.redeemed_links.iter().any(|n| n == nonce) {
                return Ok(false);
            }
            f.redeemed_links.push(nonce.to_string());
            Ok(true)
        })
    }
}

fn merged_roles(file: &StoreFile) -> Vec<Role> {
    let mut roles: BTreeMap<String, Role> = BTreeMap::new();
    let shipped = shipped_roles();
    let order: Vec<String> = shipped.iter().map(|r| r.name.clone()).collect();
    for r in shipped.into_iter().chain(file.roles.iter().cloned()) {
        roles.insert(r.name.clone(), r);
    }
    let mut out: Vec<Role> = order.iter().filter_map(|n| roles.remove(n)).collect();
    out.extend(roles.into_values());
    out
}

/// Parses a duration like `90d`, `12h`, `30min`.
pub fn parse_expiry(text: &str) -> Result<Duration, AuthError> {
    humantime::parse_duration(text.trim()).map_err(|e| {
        AuthError::Invalid(format!(
            "invalid duration {text:?}: {e} (e.g. 90d, 12h, 30min)"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Permission;

    fn store() -> (tempfile::TempDir, AuthStore) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = AuthStore::open(dir.path()).expect("open");
        (dir, store)
    }

    #[test]
    fn a_token_is_shown_once_and_stored_hashed() {
        let (dir, store) = store();
        let new = store
            .create_token(TokenRequest {
                role: "analyst".into(),
                tables: Some(vec!["air_*".into()]),
                ..Default::default()
            })
            .expect("create");
        assert!(new.token.starts_with("clk_"));
        let text = std::fs::read_to_string(dir.path().join("auth/store.json")).expect("read");
        // `clk_<id>_<secret>`: the id is hex, the secret base64url (which may hold `_`).
        let secret = new
            .token
            .strip_prefix("clk_")
            .and_then(|r| r.split_once('_'))
            .map(|(_, s)| s)
            .unwrap_or_default();
        assert_eq!(secret.len(), 43);
        assert!(!text.contains(secret), "the secret must not be stored");
        assert!(text.contains(&sha256_hex(secret)));
        let p = store.authenticate(&new.token).expect("authenticate");
        assert_eq!(p.role, "analyst");
        assert_eq!(p.tables, vec!["air_*".to_string()]);
        assert!(p.can(Permission::Query));
        assert_eq!(p.token_id.as_deref(), Some(new.info.id.as_str()));
    }

    #[test]
    fn wrong_revoked_expired_and_malformed_tokens_are_refused() {
        let (_dir, store) = store();
        let new = store
            .create_token(TokenRequest {
                role: "admin".into(),
                ..Default::default()
            })
            .expect("create");
        let mut wrong = new.token.clone();
        wrong.pop();
        wrong.push('x');
        assert!(matches!(
            store.authenticate(&wrong),
            Err(AuthError::Unknown)
        ));
        assert!(matches!(
            store.authenticate("Bearer nonsense"),
            Err(AuthError::Malformed)
        ));
        assert!(matches!(
            store.authenticate("clk_000000000000_abc"),
            Err(AuthError::Unknown)
        ));
        assert!(store.is_active(&new.info.id));
        assert!(store.revoke(&new.info.id).expect("revoke"));
        assert!(!store.is_active(&new.info.id));
        assert!(!store.is_active("nope"));
        assert!(!store.revoke(&new.info.id).expect("again"));
        assert!(matches!(
            store.authenticate(&new.token),
            Err(AuthError::Revoked)
        ));
        assert!(matches!(store.revoke("nope"), Err(AuthError::NotFound(_))));
        let short = store
            .create_token(TokenRequest {
                role: "analyst".into(),
                expires_in: Some(Duration::from_secs(0)),
                ..Default::default()
            })
            .expect("create");
        assert!(matches!(
            store.authenticate(&short.token),
            Err(AuthError::Expired)
        ));
        assert!(!store.is_active(&short.info.id));
    }

    #[test]
    fn a_second_handle_sees_new_tokens_at_once_and_last_use_is_persisted() {
        let (dir, server) = store();
        let cli = AuthStore::open(dir.path()).expect("open");
        let new = cli
            .create_token(TokenRequest {
                role: "gateway".into(),
                tables: Some(vec!["air".into()]),
                ..Default::default()
            })
            .expect("create");
        let p = server.authenticate(&new.token).expect("seen at once");
        assert_eq!(p.role, "gateway");
        assert_eq!(server.persist_last_used().expect("persist"), 1);
        let listed = cli.list();
        let _ = cli.reload();
        let info = cli
            .list()
            .into_iter()
            .find(|t| t.id == new.info.id)
            .expect("listed");
        assert!(info.last_used_at.is_some(), "{listed:?}");
    }

    #[test]
    fn roles_are_data() {
        let (_dir, store) = store();
        assert!(matches!(
            store.create_token(TokenRequest {
                role: "service".into(),
                ..Default::default()
            }),
            Err(AuthError::Invalid(m)) if m.contains("--tables")
        ));
        assert!(matches!(
            store.create_token(TokenRequest {
                role: "nobody".into(),
                ..Default::default()
            }),
            Err(AuthError::Invalid(m)) if m.contains("analyst")
        ));
        let mut public = store.role("public").expect("public");
        public.tables = vec!["bikes".into()];
        store.put_role(public).expect("redefine");
        let monitor = Role {
            name: "monitoring".into(),
            description: "Prometheus".into(),
            permissions: [Permission::Metrics].into_iter().collect(),
            tables: vec![],
            topics: vec![],
            mask: vec![],
            requires_tables: false,
            requires_org: false,
        };
        store.put_role(monitor).expect("new role");
        let t = store
            .create_token(TokenRequest {
                role: "public".into(),
                ..Default::default()
            })
            .expect("create");
        let p = store.authenticate(&t.token).expect("auth");
        assert!(p.reaches_table("bikes"));
        assert!(!p.reaches_table("air"));
        assert_eq!(store.roles().len(), 18);
        let mut admin = store.role("admin").expect("admin");
        admin.permissions.remove(&Permission::Admin);
        assert!(store.put_role(admin).is_err());
    }

    #[test]
    fn a_bus_member_token_names_its_organisation() {
        let (_dir, store) = store();
        assert!(matches!(
            store.create_token(TokenRequest {
                role: "bus-member".into(),
                ..Default::default()
            }),
            Err(AuthError::Invalid(m)) if m.contains("--org")
        ));
        assert!(matches!(
            store.create_token(TokenRequest {
                role: "bus-member".into(),
                org: Some("a b".into()),
                ..Default::default()
            }),
            Err(AuthError::Invalid(m)) if m.contains("organisation \"a b\"")
        ));
        let t = store
            .create_token(TokenRequest {
                role: "bus-member".into(),
                org: Some("gestore-mensa".into()),
                topics: Some(vec!["bus/gestore-mensa/#".into()]),
                ..Default::default()
            })
            .expect("create");
        assert_eq!(t.info.org.as_deref(), Some("gestore-mensa"));
        let p = store.authenticate(&t.token).expect("auth");
        assert_eq!(p.org.as_deref(), Some("gestore-mensa"));
        assert!(p.can(Permission::BusMember));
        assert!(p.may_publish("bus/gestore-mensa/menu"));
        assert!(!p.may_publish("bus/comune-prato/anagrafe"));
        assert!(!p.can(Permission::BusAdmin));
    }

    #[test]
    fn a_kiosk_token_names_its_kiosk() {
        let (_dir, store) = store();
        assert!(matches!(
            store.create_token(TokenRequest {
                role: "kiosk-device".into(),
                ..Default::default()
            }),
            Err(AuthError::Invalid(m)) if m.contains("--subject")
        ));
        assert!(matches!(
            store.create_token(TokenRequest {
                role: "kiosk-device".into(),
                subject: Some("K07/#".into()),
                ..Default::default()
            }),
            Err(AuthError::Invalid(m)) if m.contains("topic level")
        ));
        let t = store
            .create_token(TokenRequest {
                role: "kiosk-device".into(),
                subject: Some("K07".into()),
                ..Default::default()
            })
            .expect("create");
        let p = store.authenticate(&t.token).expect("auth");
        assert_eq!(p.subject.as_deref(), Some("K07"));
        assert!(p.may_publish("devices/kiosk/K07/heartbeat"));
        assert!(!p.may_publish("devices/kiosk/K08/heartbeat"));
    }
}
