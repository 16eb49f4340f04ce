//! `civiclake token`: make, list and revoke tokens, and sign links, on the data directory —
//! whether or not a server runs on it (a running server accepts a new token at once).

use civiclake_auth::{AuthStore, LinkRequest, TokenRequest, parse_expiry};
use civiclake_server::config::{ServeArgs, ServeSettings};
use clap::{Args, Subcommand};
use std::path::PathBuf;

/// Where the data directory is.
#[derive(Debug, Clone, Args)]
pub(crate) struct Location {
    /// Data directory (default: from --config, CIVICLAKE_DATA_DIR, or ./data).
    #[arg(
        long = "data-dir",
        env = "CIVICLAKE_DATA_DIR",
        value_name = "DIR",
        global = true
    )]
    data_dir: Option<PathBuf>,
    /// TOML configuration file to take the data directory from.
    #[arg(long, env = "CIVICLAKE_CONFIG", value_name = "FILE", global = true)]
    config: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct TokenArgs {
    #[command(flatten)]
    location: Location,
    #[command(subcommand)]
    action: TokenAction,
}

#[derive(Debug, Subcommand)]
enum TokenAction {
    /// Make a token; it is printed alone on the last line, once (only its hash is kept).
    Create {
        /// Role, e.g. admin, analyst, gateway, service (see `civiclake token roles`).
        #[arg(long)]
        role: String,
        /// Table globs the token reaches, comma-separated (replace the role's defaults).
        #[arg(long, value_delimiter = ',')]
        tables: Option<Vec<String>>,
        /// Topic filters it may publish to, comma-separated (replace the role's defaults).
        #[arg(long, value_delimiter = ',')]
        topics: Option<Vec<String>>,
        /// Lifetime, e.g. 90d or 12h; forever when absent.
        #[arg(long)]
        expires: Option<String>,
        /// A note: who or what holds it.
        #[arg(long)]
        label: Option<String>,
        /// The person it is for (fiscal code), for guardian and citizen tokens.
        #[arg(long)]
        subject: Option<String>,
        /// The organisation of the bus it acts for (bus-member tokens); its topics default
        /// to `bus/<org>/#`.
        #[arg(long)]
        org: Option<String>,
    },
    /// List tokens (never their secrets).
    List,
    /// Revoke a token by its id (the 12 hex digits after `clk_`).
    Revoke {
        /// Token id.
        id: String,
    },
    /// List roles and their permissions.
    Roles,
    /// Sign a link that a citizen or guardian opens once to get a scoped session.
    Link {
        /// Role, e.g. guardian or citizen.
        #[arg(long)]
        role: String,
        /// The person (fiscal code).
        #[arg(long)]
        subject: String,
        /// Table globs, comma-separated.
        #[arg(long, value_delimiter = ',')]
        tables: Option<Vec<String>>,
        /// How long the link can be opened.
        #[arg(long, default_value = "7d")]
        valid_for: String,
        /// How long the session it opens lasts.
        #[arg(long, default_value = "30d")]
        session: String,
        /// Public address of the server, put in front of the link.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        base_url: String,
    },
}

fn when(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

pub(crate) fn run(args: TokenArgs) -> Result<(), String> {
    let serve = ServeArgs {
        config: args.location.config.clone(),
        settings: ServeSettings {
            data_dir: args.location.data_dir.clone(),
            ..Default::default()
        },
    };
    let config = serve.resolve().map_err(|e| e.to_string())?;
    let store = AuthStore::open(&config.data_dir).map_err(|e| e.to_string())?;
    match args.action {
        TokenAction::Create {
            role,
            tables,
            topics,
            expires,
            label,
            subject,
            org,
        } => {
            let topics = topics.or_else(|| org.as_ref().map(|o| vec![format!("bus/{o}/#")]));
            let expires_in = expires
                .as_deref()
                .map(parse_expiry)
                .transpose()
                .map_err(|e| e.to_string())?;
            let new = store
                .create_token(TokenRequest {
                    role,
                    tables,
                    topics,
                    expires_in,
                    label,
                    subject,
                    org,
                })
                .map_err(|e| e.to_string())?;
            println!("id:      {}", new.info.id);
            println!("role:    {}", new.info.role);
            if let Some(t) = &new.info.tables {
                println!("tables:  {}", t.join(","));
            }
            if let Some(o) = &new.info.org {
                println!("org:     {o}");
            }
            if let Some(t) = &new.info.topics {
                println!("topics:  {}", t.join(","));
            }
            println!(
                "expires: {}",
                new.info.expires_at.map_or("never".to_string(), when)
            );
            println!(
                "Keep it now: it is not shown again. Send it as 'Authorization: Bearer <token>'."
            );
            println!("{}", new.token);
        }
        TokenAction::List => {
            println!(
                "{:<12}  {:<20}  {:<20}  {:<20}  {:<20}  tables / note",
                "id", "role", "created", "expires", "last used"
            );
            for t in store.list() {
                let state = if t.revoked_at.is_some() {
                    " (revoked)"
                } else {
                    ""
                };
                println!(
                    "{:<12}  {:<20}  {:<20}  {:<20}  {:<20}  {}{}{}",
                    t.id,
                    t.role,
                    when(t.created_at),
                    t.expires_at.map_or("never".into(), when),
                    t.last_used_at.map_or("-".into(), when),
                    t.tables.map(|v| v.join(",")).unwrap_or_default(),
                    t.label.map(|l| format!(" {l}")).unwrap_or_default(),
                    state
                );
            }
        }
        TokenAction::Revoke { id } => {
            if store.revoke(&id).map_err(|e| e.to_string())? {
                println!("revoked {id}");
            } else {
                println!("{id} was already revoked");
            }
        }
        TokenAction::Roles => {
            for r in store.roles() {
                let perms: Vec<&str> = r.permissions.iter().map(|p| p.name()).collect();
                println!(
                    "{:<20} {:<50} tables: {}",
                    r.name,
                    perms.join(","),
                    if r.tables.is_empty() {
                        if r.requires_tables {
                            "(given per token)".to_string()
                        } else {
                            "-".to_string()
                        }
                    } else {
                        r.tables.join(",")
                    }
                );
            }
        }
        TokenAction::Link {
            role,
            subject,
            tables,
            valid_for,
            session,
            base_url,
        } => {
            let t = store
                .sign_link(&LinkRequest {
                    role,
                    subject,
                    tables,
                    valid_for: parse_expiry(&valid_for).map_err(|e| e.to_string())?,
                    session: parse_expiry(&session).map_err(|e| e.to_string())?,
                })
                .map_err(|e| e.to_string())?;
            println!("{}/auth/link?t={t}", base_url.trim_end_matches('/'));
        }
    }
    Ok(())
}
