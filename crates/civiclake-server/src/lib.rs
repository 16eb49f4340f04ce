//! The composition root of civiclake: reads the configuration, opens the lake, builds the
//! query engine and the HTTP API, runs the background flush and compaction, and shuts
//! everything down in order (HTTP stops accepting, the buffer is flushed to Delta, the WAL
//! thread stops).
//!
//! It also keeps the registry of civic modules (each module's events table exists, empty,
//! right after start) and the in-process topic router, and hands each module its
//! [`Platform`] through [`Server::platform`].

pub mod config;
mod platform;

use civiclake_api::{ApiConfig, ApiMetrics, AppState, Auth};
use civiclake_auth::AuthStore;
use civiclake_core::{ModuleRegistry, Platform, PlatformError, TopicRouter, events_schema};
use civiclake_lake::{Lake, OpenMode};
use civiclake_query::QueryEngine;
use config::{Config, LogFormat};
use platform::{ModuleEvents, ModulePlatform};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::watch;

/// An error that stops the server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// The lake could not be opened or closed.
    #[error(transparent)]
    Lake(#[from] civiclake_lake::Error),
    /// The query engine could not be built.
    #[error(transparent)]
    Query(#[from] civiclake_query::Error),
    /// The token store could not be opened.
    #[error(transparent)]
    Auth(#[from] civiclake_auth::AuthError),
    /// The HTTP listener failed.
    #[error("HTTP server on {addr}: {source}")]
    Http {
        /// Address.
        addr: SocketAddr,
        /// Cause.
        source: std::io::Error,
    },
}

/// Sets up logging (call once, from the binary).
pub fn init_logging(format: LogFormat, filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(filter))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// A running server.
#[derive(Debug)]
pub struct Server {
    /// The address the HTTP API listens on.
    pub addr: SocketAddr,
    /// The lake.
    pub lake: Arc<Lake>,
    /// The query engine.
    pub engine: QueryEngine,
    /// Tokens and roles.
    pub auth: Arc<AuthStore>,
    shutdown: watch::Sender<bool>,
    http: tokio::task::JoinHandle<std::io::Result<()>>,
    background: tokio::task::JoinHandle<()>,
    last_used: tokio::task::JoinHandle<()>,
    modules: Arc<ModuleRegistry>,
    module_events: BTreeMap<String, Arc<ModuleEvents>>,
    router: TopicRouter,
}

/// Writes tokens' last-use times every 10 seconds, and once more at shutdown.
async fn persist_last_used(store: Arc<AuthStore>, mut shutdown: watch::Receiver<bool>) {
    loop {
        let stop = tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_secs(10)) => false,
            _ = shutdown.wait_for(|s| *s) => true,
        };
        let s = store.clone();
        match tokio::task::spawn_blocking(move || s.persist_last_used()).await {
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot record token use"),
            Err(e) => tracing::warn!(error = %e, "cannot record token use"),
            Ok(Ok(_)) => {}
        }
        if stop {
            return;
        }
    }
}

impl Server {
    /// Opens the lake (replaying the WAL) and starts serving, with the shipped modules.
    pub async fn start(config: &Config) -> Result<Self, Error> {
        Self::start_with_modules(config, ModuleRegistry::shipped()).await
    }

    /// Like [`Server::start`], with the modules of `modules` (the shipped ones plus extras).
    pub async fn start_with_modules(
        config: &Config,
        modules: ModuleRegistry,
    ) -> Result<Self, Error> {
        let lake = Lake::open(config.lake.clone(), OpenMode::ReadWrite).await?;
        let schema = events_schema();
        let mut module_events = BTreeMap::new();
        for module in modules.iter() {
            lake.ensure_table(module.events_table(), &schema)?;
            module_events.insert(
                module.name().to_string(),
                Arc::new(ModuleEvents::new(module.clone())),
            );
        }
        let engine = QueryEngine::new(lake.clone(), config.query.clone())?;
        let store = Arc::new(AuthStore::open(&config.data_dir)?);
        let modules = Arc::new(modules);
        let mut auth = Auth::new(store.clone()).with_modules(modules.clone());
        if config.insecure_no_auth {
            tracing::warn!(
                "authentication is OFF (--insecure-no-auth): every request acts as an administrator"
            );
            auth = auth.insecure_disabled();
        } else if store.list().iter().all(|t| t.revoked_at.is_some()) {
            tracing::warn!(
                data_dir = %config.data_dir.display(),
                "no tokens yet: create the first one with `civiclake token create --role admin --data-dir {}`",
                config.data_dir.display()
            );
        }
        let state = AppState {
            auth,
            lake: lake.clone(),
            engine: engine.clone(),
            metrics: Arc::new(ApiMetrics::default()),
            started: Instant::now(),
        };
        let app = civiclake_api::router(
            state,
            &ApiConfig {
                max_body_bytes: config.max_body_bytes,
            },
        );
        let listener = tokio::net::TcpListener::bind(config.http_addr)
            .await
            .map_err(|source| Error::Http {
                addr: config.http_addr,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| Error::Http {
            addr: config.http_addr,
            source,
        })?;
        let (shutdown, rx) = watch::channel(false);
        let mut http_rx = rx.clone();
        let http = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = http_rx.wait_for(|stop| *stop).await;
                })
                .await
        });
        let background = tokio::spawn(lake.clone().run_background(rx.clone()));
        let last_used = tokio::spawn(persist_last_used(store.clone(), rx));
        tracing::info!(%addr, data_dir = %config.data_dir.display(), "civiclake is serving");
        Ok(Self {
            addr,
            lake,
            engine,
            auth: store,
            shutdown,
            http,
            background,
            last_used,
            modules,
            module_events,
            router: TopicRouter::default(),
        })
    }

    /// The `Platform` of module `module`: what the module may do, scoped to its tables.
    /// Handles of one module share its append lock and stream versions. A handle keeps the
    /// lake open: after [`Server::stop`] it answers errors, and the data directory can be
    /// opened again in the same process once every handle is dropped.
    pub fn platform(&self, module: &str) -> Result<Arc<dyn Platform>, PlatformError> {
        let events = self
            .module_events
            .get(module)
            .ok_or_else(|| PlatformError::UnknownModule(module.to_string()))?;
        Ok(Arc::new(ModulePlatform {
            events: events.clone(),
            lake: self.lake.clone(),
            engine: self.engine.clone(),
            router: self.router.clone(),
            modules: self.modules.clone(),
        }))
    }

    /// The registered modules (which module owns which table).
    pub fn modules(&self) -> &Arc<ModuleRegistry> {
        &self.modules
    }

    /// The in-process topic router (`ingest/`, `bus/`, `devices/`, `pipelines/` topics).
    pub fn router(&self) -> &TopicRouter {
        &self.router
    }

    /// Closes the topic router (subscriptions end), stops HTTP, flushes the buffer to Delta
    /// and stops the WAL.
    pub async fn stop(self) -> Result<(), Error> {
        self.router.close();
        let _ = self.shutdown.send(true);
        let _ = self.http.await;
        let _ = self.background.await;
        let _ = self.last_used.await;
        let stats = self.lake.shutdown().await?;
        tracing::info!(
            rows = stats.rows,
            files = stats.files,
            "flushed the buffer; stopped"
        );
        Ok(())
    }
}

/// Waits for SIGTERM or Ctrl-C.
pub async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// `civiclake serve`: runs until SIGTERM or Ctrl-C, then shuts down gracefully.
pub async fn serve(config: Config) -> Result<(), Error> {
    let server = Server::start(&config).await?;
    // One line on stdout that scripts and tests can wait for.
    println!("civiclake listening on http://{}", server.addr);
    wait_for_signal().await;
    tracing::info!("shutting down: flushing the buffer to Delta");
    server.stop().await
}
