//! The composition root of civiclake: reads the configuration, opens the lake, builds the
//! query engine and the HTTP API, runs the background flush and compaction, and shuts
//! everything down in order (HTTP stops accepting, the buffer is flushed to Delta, the WAL
//! thread stops).
//!
//! It also keeps the registry of civic modules (each module's events table exists, empty,
//! right after start) and the in-process topic router, and hands each module its
//! [`Platform`] through [`Server::platform`].

mod bus_intake;
pub mod config;
mod demo;
mod demo_bus;
pub mod ingest;
pub mod kafka;
mod mqtt;
mod platform;
pub mod selfmetrics;

use axum::serve::ListenerExt as _;
use civiclake_api::{ApiConfig, ApiMetrics, AppState, Auth};
use civiclake_auth::AuthStore;
use civiclake_core::{ModuleRegistry, Platform, PlatformError, TopicRouter, events_schema};
use civiclake_lake::{Lake, OpenMode};
use civiclake_query::QueryEngine;
use config::{Config, LogFormat};
use ingest::{IngestService, IngestSettings, Publishers};
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
    /// A route file is invalid.
    #[error("ingest routes: {0}")]
    Routes(#[from] civiclake_ingest::RouteError),
    /// The phone-id pseudonym key cannot be read or created.
    #[error("phone pseudonym key {path}: {reason}")]
    PhoneKey {
        /// The key file.
        path: std::path::PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A dashboard file or map layer is invalid.
    #[error("dashboards: {0}")]
    Dashboards(#[from] civiclake_dashboards::DashboardError),
    /// The interoperability bus cannot start.
    #[error("bus: {0}")]
    Bus(#[from] civiclake_bus::BusError),
    /// A pipeline or alert definition is invalid.
    #[error("pipelines: {0}")]
    Pipelines(#[from] civiclake_pipelines::Error),
    /// The kiosk fleet cannot start.
    #[error("kiosk fleet: {0}")]
    KioskFleet(#[from] civiclake_kiosk::fleet::FleetServiceError),
    /// The council module cannot start (its views, its events).
    #[error("council: {0}")]
    Council(#[from] civiclake_council::CouncilServiceError),
    /// A Kafka source cannot start.
    #[error("Kafka source: {0}")]
    Kafka(#[from] kafka::KafkaError),
    /// An external MQTT source cannot start.
    #[error("MQTT source: {0}")]
    MqttSource(#[from] civiclake_mqtt::SourceError),
    /// The embedded MQTT broker cannot start.
    #[error("MQTT broker: {0}")]
    Mqtt(#[from] civiclake_mqtt::BrokerError),
    /// The HTTP listener failed.
    #[error("HTTP server on {addr}: {source}")]
    Http {
        /// Address.
        addr: SocketAddr,
        /// Cause.
        source: std::io::Error,
    },
    /// The listener of the PostgreSQL or Flight SQL endpoint failed.
    #[error("{what} endpoint on {addr}: {source}")]
    Endpoint {
        /// Which endpoint.
        what: &'static str,
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
    /// The `_metrics` sampler and, with `--demo`, the demo city.
    samplers: Vec<tokio::task::JoinHandle<()>>,
    modules: Arc<ModuleRegistry>,
    module_events: BTreeMap<String, Arc<ModuleEvents>>,
    router: TopicRouter,
    ingest: Arc<IngestService>,
    broker: Option<Arc<civiclake_mqtt::EmbeddedBroker>>,
    bridge: Option<tokio::task::JoinHandle<()>>,
    mqtt_sources: Vec<Arc<civiclake_mqtt::MqttSource>>,
    kafka_sources: Vec<Arc<kafka::KafkaSource>>,
    bus: Option<civiclake_bus::Bus>,
    bus_cell: Arc<std::sync::OnceLock<civiclake_bus::Bus>>,
    pipelines: civiclake_pipelines::Pipelines,
    pg: Option<civiclake_wire::PgServer>,
    flight: Option<civiclake_wire::FlightServer>,
    council: Option<civiclake_council::Council>,
}

/// Alert events go on the bus (once it runs).
#[derive(Debug)]
struct AlertBus(Arc<std::sync::OnceLock<civiclake_bus::Bus>>);

#[async_trait::async_trait]
impl civiclake_pipelines::EventPublisher for AlertBus {
    async fn publish(&self, event: civiclake_core::CloudEvent) -> Result<(), String> {
        let bus = self
            .0
            .get()
            .ok_or("the interoperability bus is not running")?;
        // The schema of alert events is registered with the first one (a bus without alert
        // rules keeps its registry as its operators made it).
        if bus.with_registry(|r| r.latest(&event.ty).is_none()) {
            bus.register_schema(
                "civiclake",
                &event.ty,
                civiclake_pipelines::alert_event_schema(),
            )
            .await
            .map_err(|e| format!("registering the schema of {}: {e}", event.ty))?;
        }
        bus.publish("civiclake-alerts", vec![event])
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

/// Starts the kiosk fleet: its tables and views, the schemas of its bus events, its state
/// replayed from `kiosk_events`.
async fn start_fleet(
    platform: Arc<dyn Platform>,
    lake: &Arc<Lake>,
    engine: &QueryEngine,
    bus: Option<&civiclake_bus::Bus>,
    liveness: civiclake_kiosk::fleet::liveness::LivenessConfig,
) -> Result<
    (
        civiclake_kiosk::fleet::Fleet,
        civiclake_kiosk::fleet::FleetInbox,
    ),
    Error,
> {
    use civiclake_kiosk::fleet;
    for (name, schema) in fleet::tables::tables() {
        lake.ensure_table(name, &schema)?;
    }
    for view in fleet::tables::views() {
        engine.register_view(
            view.name,
            civiclake_query::ViewDef {
                sql: view.sql,
                tables: view.tables.iter().map(|t| t.to_string()).collect(),
                description: view.description.to_string(),
            },
        )?;
    }
    if let Some(bus) = bus {
        for (ty, schema) in fleet::bus_schemas() {
            if bus.with_registry(|r| r.latest(ty).is_none()) {
                bus.register_schema("civiclake", ty, schema).await?;
            }
        }
    }
    let config = fleet::FleetConfig {
        liveness,
        ..fleet::FleetConfig::default()
    };
    Ok(fleet::Fleet::start(platform, config).await?)
}

/// Starts the council module: its tables and views (`sql/council/*.sql`), the schemas of
/// its bus events, its state replayed from `council_events`.
async fn start_council(
    platform: Arc<dyn Platform>,
    lake: &Arc<Lake>,
    engine: &QueryEngine,
    bus: Option<&civiclake_bus::Bus>,
) -> Result<civiclake_council::Council, Error> {
    use civiclake_council::{CouncilServiceError, service, tables};
    for (name, schema) in tables::tables() {
        lake.ensure_table(name, &schema)?;
    }
    for view in tables::views().map_err(CouncilServiceError::Internal)? {
        engine.register_view(
            &view.name,
            civiclake_query::ViewDef {
                sql: view.sql,
                tables: view.tables,
                description: view.description,
            },
        )?;
    }
    if let Some(bus) = bus {
        for (ty, schema) in service::bus_schemas() {
            if bus.with_registry(|r| r.latest(ty).is_none()) {
                bus.register_schema("civiclake", ty, schema).await?;
            }
        }
    }
    Ok(
        civiclake_council::Council::start(platform, civiclake_council::CouncilConfig::default())
            .await?,
    )
}

/// The module whose events table keeps the bus catalog.
const BUS_MODULE: &str = "bus";
/// The module holding the kiosk siting optimiser.
const KIOSK_MODULE: &str = "kiosk";
/// The council committees module.
const COUNCIL_MODULE: &str = "council";

/// The bus's counters on `/metrics`.
#[derive(Debug)]
struct BusMetrics(civiclake_bus::Bus);

impl civiclake_api::MetricsSource for BusMetrics {
    fn render(&self, out: &mut String) {
        use std::fmt::Write as _;
        use std::sync::atomic::Ordering::Relaxed;
        let s = self.0.stats();
        let families = [
            (
                "civiclake_bus_events_published_total",
                "Events appended to the bus log.",
                s.published.load(Relaxed),
            ),
            (
                "civiclake_bus_events_rejected_total",
                "Events refused at publish (schema, validation).",
                s.rejected.load(Relaxed),
            ),
            (
                "civiclake_bus_deliveries_total",
                "Events delivered to a subscription's target.",
                s.delivered.load(Relaxed),
            ),
            (
                "civiclake_bus_delivery_failures_total",
                "Failed delivery attempts.",
                s.failed.load(Relaxed),
            ),
            (
                "civiclake_bus_dead_letters_total",
                "Events a subscription gave up on.",
                s.dead_letters.load(Relaxed),
            ),
        ];
        for (name, help, value) in families {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP civiclake_bus_log_head Position of the newest event of the bus log.\n# TYPE civiclake_bus_log_head gauge\nciviclake_bus_log_head {}",
            self.0.head()
        );
    }
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
        if config.metrics_sample_interval.is_some() {
            lake.ensure_table(selfmetrics::METRICS_TABLE, &selfmetrics::metrics_schema())?;
        }
        let engine = QueryEngine::new(lake.clone(), config.query.clone())?;
        let bus_cell: Arc<std::sync::OnceLock<civiclake_bus::Bus>> = Arc::default();
        // Before any source: the pipelines observe every write.
        let definitions = civiclake_pipelines::Definitions::load(&config.pipelines_dir)?;
        let pipelines = civiclake_pipelines::Pipelines::new(
            lake.clone(),
            engine.clone(),
            civiclake_pipelines::Settings {
                retention_every: config.retention_interval,
                ..civiclake_pipelines::Settings::default()
            },
            Some(Arc::new(AlertBus(bus_cell.clone()))),
        )?;
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
        let publishers = Arc::new(Publishers::default());
        let ingest = Arc::new(IngestService::new(
            lake.clone(),
            modules.clone(),
            publishers.clone(),
            IngestSettings {
                routes_dir: config.routes_dir.clone(),
                default_route: config.default_route,
                pseudonymiser: Some(Arc::new(phone_pseudonymiser(
                    &config.phone_key_file,
                    config.phone_key_daily,
                )?)),
                auth_disabled: config.insecure_no_auth,
            },
        )?);
        let router = TopicRouter::default();
        let broker = match config.mqtt_addr {
            Some(addr) => {
                let broker_auth = Arc::new(mqtt::TokenAuth {
                    store: store.clone(),
                    publishers: publishers.clone(),
                    disabled: config.insecure_no_auth,
                });
                let sink = Arc::new(mqtt::BridgeSink {
                    ingest: ingest.clone(),
                    router: router.clone(),
                    bus: bus_cell.clone(),
                });
                let broker = civiclake_mqtt::EmbeddedBroker::start(
                    civiclake_mqtt::BrokerConfig {
                        addr,
                        max_packet_bytes: config.mqtt_max_packet_bytes,
                        ..civiclake_mqtt::BrokerConfig::default()
                    },
                    broker_auth,
                    sink,
                )
                .await?;
                tracing::info!(addr = %broker.local_addr(), "embedded MQTT broker is serving");
                Some(Arc::new(broker))
            }
            None => None,
        };
        let mut mqtt_sources = Vec::new();
        for source in &config.mqtt_sources {
            let sink = Arc::new(mqtt::BridgeSink {
                ingest: ingest.clone(),
                router: router.clone(),
                bus: bus_cell.clone(),
            });
            tracing::info!(source = source.name, host = source.host, port = source.port, topics = ?source.topics, "subscribing to an external MQTT broker");
            mqtt_sources.push(Arc::new(civiclake_mqtt::MqttSource::start(
                source.clone(),
                sink,
            )?));
        }
        let bridge = broker
            .clone()
            .map(|b| tokio::spawn(mqtt::forward_router_to_mqtt(router.clone(), b)));
        let mut metric_sources: Vec<Arc<dyn civiclake_api::MetricsSource>> = vec![ingest.clone()];
        if let Some(b) = &broker {
            metric_sources.push(Arc::new(mqtt::BrokerMetrics(Arc::downgrade(b))));
        }
        if !mqtt_sources.is_empty() {
            metric_sources.push(Arc::new(mqtt::SourceMetrics(
                mqtt_sources.iter().map(Arc::downgrade).collect(),
            )));
        }
        let bus = match module_events.get(BUS_MODULE) {
            Some(events) => {
                let catalog: Arc<dyn Platform> = Arc::new(ModulePlatform {
                    events: events.clone(),
                    lake: lake.clone(),
                    engine: engine.clone(),
                    router: router.clone(),
                    modules: modules.clone(),
                    // Not the server's cell: the bus holding a handle that holds the bus
                    // would be a cycle, and the lake would never be let go.
                    bus: Arc::default(),
                });
                let publisher = broker.as_ref().map(|b| {
                    Arc::new(mqtt::BrokerPublisher(Arc::downgrade(b)))
                        as Arc<dyn civiclake_bus::target::MessagePublisher>
                });
                let bus = civiclake_bus::Bus::start(
                    lake.clone(),
                    engine.clone(),
                    catalog,
                    civiclake_bus::BusSettings::new(&config.data_dir),
                    publisher,
                )
                .await?;
                let _ = bus_cell.set(bus.clone());
                metric_sources.push(Arc::new(BusMetrics(bus.clone())));
                Some(bus)
            }
            None => None,
        };
        // After the bus: alert rules publish on it.
        if let Err(e) = pipelines.start(definitions).await {
            pipelines.stop().await;
            if let Some(bus) = &bus {
                bus.stop().await;
            }
            return Err(e.into());
        }
        // After the bus: a batch with `bus.*` events is not stored (and checkpointed) before
        // the bus has them.
        let mut kafka_sources = Vec::new();
        for source in &config.kafka_sources {
            tracing::info!(source = source.name, brokers = source.brokers, topics = ?source.topics, "consuming from Kafka");
            let started = kafka::KafkaSource::start(
                source.clone(),
                ingest.clone(),
                lake.clone(),
                bus_cell.clone(),
            )
            .await;
            match started {
                Ok(s) => kafka_sources.push(Arc::new(s)),
                Err(e) => {
                    for s in kafka_sources.drain(..) {
                        if let Ok(s) = Arc::try_unwrap(s) {
                            s.stop().await;
                        }
                    }
                    if let Some(bus) = &bus {
                        bus.stop().await;
                    }
                    return Err(e.into());
                }
            }
        }
        if !kafka_sources.is_empty() {
            metric_sources.push(Arc::new(kafka::KafkaMetrics(
                kafka_sources.iter().map(Arc::downgrade).collect(),
            )));
        }
        let dashboards = civiclake_api::DashboardCatalog::load(&config.dashboards_dir)?;
        tracing::info!(
            dir = %config.dashboards_dir.display(),
            dashboards = dashboards.set.dashboards().len(),
            layers = dashboards.geo.names().count(),
            "dashboards loaded"
        );
        // The kiosk module: its fleet (registry, heartbeats, transactions) and its siting
        // optimiser, whose maps are drawn over the dashboards' boundary layers.
        // A module's `Platform`, scoped to its tables.
        let module_platform = |events: &Arc<ModuleEvents>| -> Arc<dyn Platform> {
            Arc::new(ModulePlatform {
                events: events.clone(),
                lake: lake.clone(),
                engine: engine.clone(),
                router: router.clone(),
                modules: modules.clone(),
                bus: bus_cell.clone(),
            })
        };
        let (kiosk, fleet, fleet_inbox) = match module_events.get(KIOSK_MODULE) {
            Some(events) => {
                let platform = module_platform(events);
                let (fleet, inbox) = start_fleet(
                    platform.clone(),
                    &lake,
                    &engine,
                    bus.as_ref(),
                    config.kiosk_liveness,
                )
                .await?;
                let siting = civiclake_kiosk::Siting::new(
                    platform.clone(),
                    civiclake_kiosk::demo::layers(&dashboards.geo),
                );
                (Some(siting), Some((fleet, platform)), Some(inbox))
            }
            None => (None, None, None),
        };
        let council = match module_events.get(COUNCIL_MODULE) {
            Some(events) => {
                Some(start_council(module_platform(events), &lake, &engine, bus.as_ref()).await?)
            }
            None => None,
        };
        let state = AppState {
            auth,
            lake: lake.clone(),
            engine: engine.clone(),
            metrics: Arc::new(ApiMetrics::default()),
            started: Instant::now(),
            metric_sources,
            dashboards: Arc::new(dashboards),
            bus: bus.clone(),
            pipelines: Some(pipelines.clone()),
            kiosk: kiosk.clone(),
            fleet: fleet.as_ref().map(|(f, _)| f.clone()),
            council: council.clone(),
        };
        let app = civiclake_api::router(
            state.clone(),
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
            // TCP_NODELAY: the last small segment of an answer goes out at once instead of
            // waiting for the client's delayed ACK (up to 40 ms on Linux).
            let listener = listener.tap_io(|tcp| {
                if let Err(e) = tcp.set_nodelay(true) {
                    tracing::debug!(error = %e, "TCP_NODELAY not set");
                }
            });
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = http_rx.wait_for(|stop| *stop).await;
                })
                .await
        });
        let pg = match config.pg_addr {
            Some(pg_addr) => {
                let tls = match &config.pg_tls {
                    Some((cert, key)) => {
                        Some(civiclake_wire::tls_acceptor(cert, key).map_err(|m| {
                            Error::Config(config::ConfigError(format!(
                                "pg_tls_cert, pg_tls_key: {m}"
                            )))
                        })?)
                    }
                    None => None,
                };
                let listener =
                    bind_endpoint("PostgreSQL", pg_addr, config.sql_addrs_from_demo).await?;
                Some(
                    civiclake_wire::PgServer::start(
                        listener,
                        engine.clone(),
                        state.auth.clone(),
                        tls,
                        rx.clone(),
                    )
                    .map_err(|source| Error::Endpoint {
                        what: "PostgreSQL",
                        addr: pg_addr,
                        source,
                    })?,
                )
            }
            None => None,
        };
        let flight = match config.flight_addr {
            Some(flight_addr) => {
                let listener =
                    bind_endpoint("Flight SQL", flight_addr, config.sql_addrs_from_demo).await?;
                Some(
                    civiclake_wire::FlightServer::start(
                        listener,
                        engine.clone(),
                        state.auth.clone(),
                        rx.clone(),
                    )
                    .map_err(|source| Error::Endpoint {
                        what: "Flight SQL",
                        addr: flight_addr,
                        source,
                    })?,
                )
            }
            None => None,
        };
        let background = tokio::spawn(lake.clone().run_background(rx.clone()));
        let mut samplers = Vec::new();
        if let Some(interval) = config.metrics_sample_interval {
            samplers.push(tokio::spawn(selfmetrics::run(state, interval, rx.clone())));
        }
        if let (Some((fleet, _)), Some(inbox)) = (&fleet, fleet_inbox) {
            samplers.push(tokio::spawn(fleet.clone().run(inbox, rx.clone())));
        }
        if config.demo
            && let Some(council) = &council
        {
            let council = council.clone();
            samplers.push(tokio::spawn(async move {
                let started = Instant::now();
                match civiclake_council::demo::seed(&council).await {
                    Ok(Some(acts)) => tracing::info!(
                        acts,
                        seconds = started.elapsed().as_secs(),
                        "demo council: 6 committees, 32 councillors and a year of sessions"
                    ),
                    Ok(None) => {}
                    Err(e) => tracing::warn!(error = %e, "the demo council failed"),
                }
            }));
        }
        if config.demo {
            samplers.push(tokio::spawn(demo::run(
                lake.clone(),
                config.data_dir.clone(),
                rx.clone(),
            )));
            if let Some(bus) = &bus {
                samplers.push(tokio::spawn(demo_bus::run(bus.clone(), rx.clone())));
            }
            if let Some((fleet, platform)) = &fleet {
                let (fleet, platform) = (fleet.clone(), platform.clone());
                let interval =
                    std::time::Duration::from_secs(u64::from(config.kiosk_liveness.interval_secs));
                let stop = rx.clone();
                let siting = kiosk.clone();
                samplers.push(tokio::spawn(async move {
                    // The fleet's year first: the siting plan reads the kiosks' use.
                    match civiclake_kiosk::fleet::demo::seed(&fleet).await {
                        Ok(Some(n)) => tracing::info!(
                            transactions = n,
                            "demo kiosk fleet: 17 kiosks and a year of transactions"
                        ),
                        Ok(None) => {}
                        Err(e) => tracing::warn!(error = %e, "the demo kiosk fleet failed"),
                    }
                    if let Some(siting) = siting {
                        match civiclake_kiosk::demo::seed(&siting).await {
                            Ok(Some(plan)) => {
                                tracing::info!(plan, "demo kiosk plan computed: /kiosk/plan")
                            }
                            Ok(None) => {}
                            Err(e) => tracing::warn!(error = %e, "the demo kiosk plan failed"),
                        }
                    }
                    civiclake_kiosk::fleet::demo::live(platform, interval, stop).await;
                }));
            }
        }
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
            samplers,
            modules,
            module_events,
            router,
            ingest,
            broker,
            bridge,
            mqtt_sources,
            kafka_sources,
            bus,
            bus_cell,
            pipelines,
            pg,
            flight,
            council,
        })
    }

    /// The council committees module (absent when no `council` module is registered).
    pub fn council(&self) -> Option<&civiclake_council::Council> {
        self.council.as_ref()
    }

    /// The address of the PostgreSQL protocol endpoint, when it runs.
    pub fn pg_addr(&self) -> Option<SocketAddr> {
        self.pg.as_ref().map(civiclake_wire::PgServer::local_addr)
    }

    /// The address of the Arrow Flight SQL endpoint, when it runs.
    pub fn flight_addr(&self) -> Option<SocketAddr> {
        self.flight
            .as_ref()
            .map(civiclake_wire::FlightServer::local_addr)
    }

    /// The continuous pipelines and alert rules.
    pub fn pipelines(&self) -> &civiclake_pipelines::Pipelines {
        &self.pipelines
    }

    /// The interoperability bus (absent when no `bus` module is registered).
    pub fn bus(&self) -> Option<&civiclake_bus::Bus> {
        self.bus.as_ref()
    }

    /// The address of the embedded MQTT broker, when it runs.
    pub fn mqtt_addr(&self) -> Option<SocketAddr> {
        self.broker.as_ref().map(|b| b.local_addr())
    }

    /// The ingest service behind the MQTT and Kafka sources.
    pub fn ingest(&self) -> &Arc<IngestService> {
        &self.ingest
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
            bus: self.bus_cell.clone(),
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

    /// Closes the topic router (subscriptions end), stops the MQTT broker and HTTP, flushes the
    /// buffer to Delta and stops the WAL.
    pub async fn stop(self) -> Result<(), Error> {
        // The bridge ends with the router and lets go of the broker; then the broker stops,
        // storing (and acknowledging) what its clients already sent while the lake still
        // takes writes.
        for source in self.kafka_sources {
            match Arc::try_unwrap(source) {
                Ok(source) => source.stop().await,
                Err(shared) => drop(shared),
            }
        }
        for source in self.mqtt_sources {
            match Arc::try_unwrap(source) {
                Ok(source) => source.stop().await,
                Err(shared) => drop(shared),
            }
        }
        self.router.close();
        if let Some(bridge) = self.bridge {
            let _ = bridge.await;
        }
        if let Some(broker) = self.broker {
            match Arc::try_unwrap(broker) {
                Ok(broker) => broker.stop().await,
                Err(shared) => drop(shared),
            }
        }
        let _ = self.shutdown.send(true);
        let _ = self.http.await;
        if let Some(pg) = self.pg {
            pg.join().await;
        }
        if let Some(flight) = self.flight {
            flight.join().await;
        }
        self.pipelines.stop().await;
        // Workers stop (cursors saved), then the log and audit writers write what they hold.
        if let Some(bus) = &self.bus {
            bus.stop().await;
        }
        let _ = self.background.await;
        let _ = self.last_used.await;
        for task in self.samplers {
            let _ = task.await;
        }
        let stats = self.lake.shutdown().await?;
        tracing::info!(
            rows = stats.rows,
            files = stats.files,
            "flushed the buffer; stopped"
        );
        Ok(())
    }
}

/// Reads the secret of phone-id pseudonyms from `path`, creating it (32 random bytes, mode
/// 0600) when it does not exist.
fn phone_pseudonymiser(
    path: &std::path::Path,
    daily: bool,
) -> Result<civiclake_ingest::Pseudonymiser, Error> {
    let fail = |reason: String| Error::PhoneKey {
        path: path.to_path_buf(),
        reason,
    };
    let secret = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut secret = vec![0u8; 32];
            getrandom::fill(&mut secret).map_err(|e| fail(e.to_string()))?;
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| fail(e.to_string()))?;
            }
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(0o600);
            }
            let mut file = options.open(path).map_err(|e| fail(e.to_string()))?;
            std::io::Write::write_all(&mut file, &secret).map_err(|e| fail(e.to_string()))?;
            file.sync_all().map_err(|e| fail(e.to_string()))?;
            tracing::info!(path = %path.display(), "created the phone pseudonym key");
            secret
        }
        Err(e) => return Err(fail(e.to_string())),
    };
    let rotation = if daily {
        civiclake_ingest::Rotation::Daily
    } else {
        civiclake_ingest::Rotation::Never
    };
    civiclake_ingest::Pseudonymiser::new(secret, rotation).map_err(|e| fail(e.to_string()))
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

/// Reloads the ingest routes on every SIGHUP (a broken file keeps the old routes).
async fn reload_routes_on_sighup(ingest: Arc<IngestService>) {
    #[cfg(unix)]
    {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            tracing::warn!("cannot listen for SIGHUP: routes reload only at restart");
            return;
        };
        while hup.recv().await.is_some() {
            match ingest.reload_routes() {
                Ok(n) => tracing::info!(routes = n, "SIGHUP: ingest routes reloaded"),
                Err(e) => {
                    tracing::error!(error = %e, "SIGHUP: the route files are invalid; the previous routes stay in force");
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ingest;
        std::future::pending::<()>().await;
    }
}

/// Binds an analysts' protocol endpoint; a `--demo` default address whose port is taken
/// (another demo, a PostgreSQL server) falls back to any free port on the same address.
async fn bind_endpoint(
    what: &'static str,
    addr: SocketAddr,
    fallback: bool,
) -> Result<tokio::net::TcpListener, Error> {
    match tokio::net::TcpListener::bind(addr).await {
        Ok(listener) => Ok(listener),
        Err(e) if fallback => {
            tracing::warn!(%addr, error = %e, "{what} endpoint: the demo's port is taken, using any free port");
            tokio::net::TcpListener::bind(SocketAddr::new(addr.ip(), 0))
                .await
                .map_err(|source| Error::Endpoint { what, addr, source })
        }
        Err(source) => Err(Error::Endpoint { what, addr, source }),
    }
}

/// `civiclake serve`: runs until SIGTERM or Ctrl-C, then shuts down gracefully.
pub async fn serve(config: Config) -> Result<(), Error> {
    let server = Server::start(&config).await?;
    let reload = tokio::spawn(reload_routes_on_sighup(server.ingest.clone()));
    if let Some(addr) = server.mqtt_addr() {
        println!("civiclake MQTT broker on mqtt://{addr}");
    }
    if let Some(addr) = server.pg_addr() {
        println!("civiclake PostgreSQL protocol on postgres://{addr}/civiclake");
    }
    if let Some(addr) = server.flight_addr() {
        println!("civiclake Flight SQL on grpc://{addr}");
    }
    // One line on stdout that scripts and tests can wait for.
    println!("civiclake listening on http://{}", server.addr);
    wait_for_signal().await;
    reload.abort();
    tracing::info!("shutting down: flushing the buffer to Delta");
    server.stop().await
}
