//! Who is calling, and what they may do: credentials from `Authorization: Bearer <token>` or
//! the `civiclake_token` cookie (set by the sign-in page and by signed links), checked by the
//! identity providers; permissions checked per endpoint; the SQL catalog built from the
//! caller's table grants; the token and role administration endpoints.

use crate::AppState;
use crate::error::{ApiError, ErrorBody};
use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use civiclake_auth::{
    AuthError, AuthStore, Identities, LinkRequest, Permission, Principal, Role, TokenRequest,
    parse_expiry,
};
use civiclake_core::ModuleRegistry;
use civiclake_query::SqlScope;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// Name of the cookie that carries a token for browsers.
pub const TOKEN_COOKIE: &str = "civiclake_token";

/// Access control of the HTTP layer.
#[derive(Debug, Clone)]
pub struct Auth {
    store: Arc<AuthStore>,
    identities: Identities,
    disabled: bool,
    modules: Arc<ModuleRegistry>,
}

impl Auth {
    /// Tokens checked against `store` (and any further providers added with [`Self::with`]).
    pub fn new(store: Arc<AuthStore>) -> Self {
        Self {
            identities: Identities::new().with(store.clone()),
            store,
            disabled: false,
            modules: Arc::new(ModuleRegistry::shipped()),
        }
    }

    /// The modules whose tables only they may write (the shipped ones by default).
    pub fn with_modules(mut self, modules: Arc<ModuleRegistry>) -> Self {
        self.modules = modules;
        self
    }

    /// 403 unless `principal` may write rows into `table` through the write API: never a
    /// system table or a module's table; otherwise the table grants decide.
    pub fn check_write_table(&self, principal: &Principal, table: &str) -> Result<(), ApiError> {
        check_write_table(principal, table, &self.modules)
    }

    /// Adds an identity provider (e.g. OpenID Connect for SPID/CIE).
    pub fn with(mut self, provider: Arc<dyn civiclake_auth::IdentityProvider>) -> Self {
        self.identities = self.identities.with(provider);
        self
    }

    /// Turns authentication off: every request acts as an administrator. Only for the demo
    /// on a loopback address (`--insecure-no-auth`); the server refuses it elsewhere.
    pub fn insecure_disabled(mut self) -> Self {
        self.disabled = true;
        self
    }

    /// Whether authentication is off.
    pub fn is_disabled(&self) -> bool {
        self.disabled
    }

    /// The token store.
    pub fn store(&self) -> &Arc<AuthStore> {
        &self.store
    }

    /// Who holds `token` (a token, or another identity provider's credential): for the
    /// protocols that carry it themselves (the PostgreSQL password, a Flight SQL bearer
    /// token). With authentication off, anyone is an administrator.
    pub fn authenticate(&self, token: &str) -> Result<Principal, ApiError> {
        if self.disabled {
            return Ok(Principal::unrestricted());
        }
        self.identities
            .authenticate(token.trim())
            .map_err(auth_error)
    }

    /// Who sent these headers: `Ok(None)` when no credential was sent.
    pub fn principal(&self, headers: &HeaderMap) -> Result<Option<Principal>, ApiError> {
        if self.disabled {
            return Ok(Some(Principal::unrestricted()));
        }
        let Some(credential) = credential(headers) else {
            return Ok(None);
        };
        self.identities
            .authenticate(&credential)
            .map(Some)
            .map_err(auth_error)
    }
}

fn auth_error(e: AuthError) -> ApiError {
    ApiError::new(e.class(), e.to_string())
}

/// The credential of a request: the bearer token, else the token cookie.
pub fn credential(headers: &HeaderMap) -> Option<String> {
    if let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let value = value.trim();
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .unwrap_or(value);
        return Some(token.trim().to_string());
    }
    for cookies in headers.get_all(header::COOKIE) {
        let Ok(cookies) = cookies.to_str() else {
            continue;
        };
        for pair in cookies.split(';') {
            if let Some((k, v)) = pair.trim().split_once('=')
                && k == TOKEN_COOKIE
                && !v.is_empty()
            {
                return Some(v.to_string());
            }
        }
    }
    None
}

/// An authenticated caller (401 when no valid credential was sent).
#[derive(Debug, Clone)]
pub struct Caller(pub Principal);

/// A caller who may be anonymous (pages that show a sign-in form to strangers).
#[derive(Debug, Clone)]
pub struct MaybeCaller(pub Option<Principal>);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match state.auth.principal(&parts.headers)? {
            Some(p) => Ok(Caller(p)),
            None => Err(ApiError::unauthenticated(
                "missing token: send 'Authorization: Bearer <token>' (an administrator makes one with `civiclake token create --role ROLE`)",
            )),
        }
    }
}

impl FromRequestParts<AppState> for MaybeCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        // A stale or revoked cookie on a page is the same as no cookie.
        Ok(MaybeCaller(
            state.auth.principal(&parts.headers).ok().flatten(),
        ))
    }
}

impl Caller {
    /// 403 unless the caller has `permission`.
    pub fn require(&self, permission: Permission) -> Result<(), ApiError> {
        if self.0.can(permission) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "role {} lacks the '{permission}' permission",
                self.0.role
            )))
        }
    }

    /// 403 unless the caller has one of `permissions`.
    pub fn require_any(&self, permissions: &[Permission]) -> Result<(), ApiError> {
        if permissions.iter().any(|p| self.0.can(*p)) {
            return Ok(());
        }
        let names: Vec<&str> = permissions.iter().map(|p| p.name()).collect();
        Err(ApiError::forbidden(format!(
            "role {} lacks the '{}' permission",
            self.0.role,
            names.join("' or '")
        )))
    }

    /// The SQL scope of the caller: its granted tables, masked columns, read-only unless admin.
    pub fn sql_scope(&self) -> SqlScope {
        scope_of(&self.0)
    }
}

/// The SQL scope of `principal`.
pub fn scope_of(principal: &Principal) -> SqlScope {
    if principal.is_admin() {
        return SqlScope::unrestricted();
    }
    let p = Arc::new(principal.clone());
    let tables = p.clone();
    let mask = (!p.mask.is_empty()).then(|| {
        let m = p.clone();
        Arc::new(move |t: &str, c: &str| m.masks(t, c)) as civiclake_query::ColumnMask
    });
    SqlScope::restricted(Arc::new(move |t: &str| tables.reaches_table(t)), mask)
}

/// Whether `principal` may write `table` through the write API: never a system table or a
/// module's table; otherwise the table grants decide.
pub fn check_write_table(
    principal: &Principal,
    table: &str,
    modules: &ModuleRegistry,
) -> Result<(), ApiError> {
    if table.starts_with('_') {
        return Err(ApiError::forbidden(format!(
            "table {table} is a system table: it is written by civiclake itself, not through the write API"
        )));
    }
    if let Some(module) = modules.owner_of_table(table).map(|m| m.name()) {
        return Err(ApiError::forbidden(format!(
            "table {table} belongs to the {module} module: only the module writes it (through its events), not the write API"
        )));
    }
    if !principal.can(Permission::Write) {
        return Err(ApiError::forbidden(format!(
            "role {} lacks the 'write' permission",
            principal.role
        )));
    }
    if !principal.reaches_table(table) {
        return Err(ApiError::forbidden(format!(
            "this token may not write table {table} (granted: {})",
            if principal.tables.is_empty() {
                "none".to_string()
            } else {
                principal.tables.join(", ")
            }
        )));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Token and role administration.

/// A token's record, as the API shows it (never the secret).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct TokenView {
    /// Public id.
    pub id: String,
    /// Role.
    pub role: String,
    /// Table globs granted (the role's defaults when absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tables: Option<Vec<String>>,
    /// Topic filters granted (the role's defaults when absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topics: Option<Vec<String>>,
    /// The person it is for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The organisation of the bus it acts for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
    /// Note.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Created (RFC 3339).
    pub created: String,
    /// Expires (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
    /// Last accepted (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_used: Option<String>,
    /// Revoked (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked: Option<String>,
}

fn rfc3339(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

impl From<civiclake_auth::TokenInfo> for TokenView {
    fn from(t: civiclake_auth::TokenInfo) -> Self {
        Self {
            id: t.id,
            role: t.role,
            tables: t.tables,
            topics: t.topics,
            subject: t.subject,
            org: t.org,
            label: t.label,
            created: rfc3339(t.created_at),
            expires: t.expires_at.map(rfc3339),
            last_used: t.last_used_at.map(rfc3339),
            revoked: t.revoked_at.map(rfc3339),
        }
    }
}

/// A token to make.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateToken {
    /// Role name.
    pub role: String,
    /// Table globs (replace the role's defaults).
    #[serde(default)]
    pub tables: Option<Vec<String>>,
    /// Topic filters (replace the role's defaults).
    #[serde(default)]
    pub topics: Option<Vec<String>>,
    /// Lifetime, e.g. `90d`; forever when absent.
    #[serde(default)]
    pub expires: Option<String>,
    /// Note.
    #[serde(default)]
    pub label: Option<String>,
    /// The person it is for.
    #[serde(default)]
    pub subject: Option<String>,
    /// The organisation of the bus it acts for (bus-member tokens).
    #[serde(default)]
    pub org: Option<String>,
}

/// A token just made.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct CreatedToken {
    /// The token: shown this once, not stored.
    pub token: String,
    /// Its record.
    #[serde(flatten)]
    pub info: TokenView,
}

/// Lists the tokens (never their secrets).
#[utoipa::path(get, path = "/api/v1/admin/tokens", responses((status = 200, body = Vec<TokenView>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)), tag = "access")]
pub(crate) async fn list_tokens(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<TokenView>>, ApiError> {
    caller.require(Permission::Admin)?;
    Ok(Json(
        state
            .auth
            .store()
            .list()
            .into_iter()
            .map(TokenView::from)
            .collect(),
    ))
}

/// Makes a token; the answer holds the token itself, shown this once.
#[utoipa::path(post, path = "/api/v1/admin/tokens", request_body = CreateToken, responses((status = 201, body = CreatedToken), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)), tag = "access")]
pub(crate) async fn create_token(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Json<CreateToken>, JsonRejection>,
) -> Result<Response, ApiError> {
    caller.require(Permission::Admin)?;
    let Json(body) = body
        .map_err(|e| ApiError::bad_request(format!("invalid token request: {}", e.body_text())))?;
    let expires_in = body
        .expires
        .as_deref()
        .map(parse_expiry)
        .transpose()
        .map_err(auth_error)?;
    let new = state
        .auth
        .store()
        .create_token(TokenRequest {
            role: body.role,
            tables: body.tables,
            topics: body.topics,
            expires_in,
            label: body.label,
            subject: body.subject,
            org: body.org,
        })
        .map_err(auth_error)?;
    tracing::info!(id = %new.info.id, role = %new.info.role, by = ?caller.0.token_id, "token created");
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            token: new.token,
            info: new.info.into(),
        }),
    )
        .into_response())
}

/// Revokes a token at once.
#[utoipa::path(delete, path = "/api/v1/admin/tokens/{id}", params(("id" = String, Path, description = "Token id")), responses((status = 204, description = "Revoked"), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)), tag = "access")]
pub(crate) async fn revoke_token(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require(Permission::Admin)?;
    state.auth.store().revoke(&id).map_err(auth_error)?;
    tracing::info!(%id, by = ?caller.0.token_id, "token revoked");
    Ok(StatusCode::NO_CONTENT)
}

/// A role as the API shows and takes it.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RoleView {
    /// Name.
    #[serde(default)]
    pub name: String,
    /// What it is for.
    #[serde(default)]
    pub description: String,
    /// Permissions, e.g. `query`, `write`, `dashboards`.
    pub permissions: Vec<String>,
    /// Default table globs.
    #[serde(default)]
    pub tables: Vec<String>,
    /// Default topic filters.
    #[serde(default)]
    pub topics: Vec<String>,
    /// Masked columns, `table_glob.column_glob`.
    #[serde(default)]
    pub mask: Vec<String>,
    /// Whether its tokens must name their tables.
    #[serde(default)]
    pub requires_tables: bool,
    /// Whether its tokens must name their organisation on the bus.
    #[serde(default)]
    pub requires_org: bool,
}

impl From<Role> for RoleView {
    fn from(r: Role) -> Self {
        Self {
            name: r.name,
            description: r.description,
            permissions: r.permissions.iter().map(|p| p.name().to_string()).collect(),
            tables: r.tables,
            topics: r.topics,
            mask: r.mask,
            requires_tables: r.requires_tables,
            requires_org: r.requires_org,
        }
    }
}

/// Lists the roles (shipped and defined here).
#[utoipa::path(get, path = "/api/v1/admin/roles", responses((status = 200, body = Vec<RoleView>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)), tag = "access")]
pub(crate) async fn list_roles(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<RoleView>>, ApiError> {
    caller.require(Permission::Admin)?;
    Ok(Json(
        state
            .auth
            .store()
            .roles()
            .into_iter()
            .map(RoleView::from)
            .collect(),
    ))
}

/// Defines or redefines a role (roles are data).
#[utoipa::path(put, path = "/api/v1/admin/roles/{name}", params(("name" = String, Path, description = "Role name")), request_body = RoleView, responses((status = 200, body = RoleView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)), tag = "access")]
pub(crate) async fn put_role(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    body: Result<Json<RoleView>, JsonRejection>,
) -> Result<Json<RoleView>, ApiError> {
    caller.require(Permission::Admin)?;
    let Json(body) =
        body.map_err(|e| ApiError::bad_request(format!("invalid role: {}", e.body_text())))?;
    let mut permissions = std::collections::BTreeSet::new();
    for p in &body.permissions {
        let perm = Permission::ALL
            .into_iter()
            .find(|k| k.name() == p)
            .ok_or_else(|| {
                let all: Vec<&str> = Permission::ALL.iter().map(|k| k.name()).collect();
                ApiError::bad_request(format!(
                    "unknown permission {p:?}; permissions: {}",
                    all.join(", ")
                ))
            })?;
        permissions.insert(perm);
    }
    let role = Role {
        name,
        description: body.description,
        permissions,
        tables: body.tables,
        topics: body.topics,
        mask: body.mask,
        requires_tables: body.requires_tables,
        requires_org: body.requires_org,
    };
    state
        .auth
        .store()
        .put_role(role.clone())
        .map_err(auth_error)?;
    Ok(Json(role.into()))
}

/// A signed link to make (for a citizen or a guardian).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateLink {
    /// Role of the token it becomes, e.g. `guardian`.
    pub role: String,
    /// The person (fiscal code).
    pub subject: String,
    /// Table globs.
    #[serde(default)]
    pub tables: Option<Vec<String>>,
    /// How long it can be opened (default `7d`).
    #[serde(default)]
    pub valid_for: Option<String>,
    /// How long the session it opens lasts (default `30d`).
    #[serde(default)]
    pub session: Option<String>,
}

/// A signed link.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct CreatedLink {
    /// Path and query to send to the person (prefix the server's public address).
    pub path: String,
}

/// Signs a link that a citizen or guardian opens once to get a scoped session.
#[utoipa::path(post, path = "/api/v1/admin/links", request_body = CreateLink, responses((status = 201, body = CreatedLink), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)), tag = "access")]
pub(crate) async fn create_link(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Json<CreateLink>, JsonRejection>,
) -> Result<Response, ApiError> {
    caller.require(Permission::Admin)?;
    let Json(body) = body
        .map_err(|e| ApiError::bad_request(format!("invalid link request: {}", e.body_text())))?;
    let dur = |s: Option<&str>, default: u64| -> Result<Duration, ApiError> {
        s.map(parse_expiry)
            .transpose()
            .map_err(auth_error)
            .map(|d| d.unwrap_or(Duration::from_secs(default)))
    };
    let t = state
        .auth
        .store()
        .sign_link(&LinkRequest {
            role: body.role,
            subject: body.subject,
            tables: body.tables,
            valid_for: dur(body.valid_for.as_deref(), 7 * 86400)?,
            session: dur(body.session.as_deref(), 30 * 86400)?,
        })
        .map_err(auth_error)?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedLink {
            path: format!("/auth/link?t={t}"),
        }),
    )
        .into_response())
}

/// The parameter of a signed link.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub(crate) struct LinkParams {
    /// The signed payload.
    pub t: String,
}

/// Opens a signed link once: sets the session cookie and goes to the home page.
#[utoipa::path(get, path = "/auth/link", params(LinkParams), responses((status = 303, description = "Signed in; cookie set"), (status = 401, body = ErrorBody)), tag = "access")]
pub(crate) async fn open_link(
    State(state): State<AppState>,
    params: Result<Query<LinkParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) =
        params.map_err(|e| ApiError::bad_request(format!("invalid link: {}", e.body_text())))?;
    let new = state
        .auth
        .store()
        .redeem_link(&params.t)
        .map_err(auth_error)?;
    let max_age = new
        .info
        .expires_at
        .map(|e| (e - new.info.created_at).max(0))
        .unwrap_or(30 * 86400);
    let cookie = format!(
        "{TOKEN_COOKIE}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}",
        new.token
    );
    Ok((
        StatusCode::SEE_OTHER,
        [
            (header::SET_COOKIE, cookie),
            (header::LOCATION, "/".to_string()),
        ],
    )
        .into_response())
}
