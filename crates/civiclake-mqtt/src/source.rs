//! Subscriptions to external MQTT brokers (`[[mqtt.source]]`): an MQTT 3.1.1 client
//! (rumqttc) with a persistent session that hands what it receives to a
//! [`MessageSink`] and acknowledges a QoS 1 message only once the sink stored it.
//!
//! Two tasks per source:
//!
//! * the **network task** owns rumqttc's event loop and never waits for the sink: it
//!   subscribes after each CONNACK, queues every PUBLISH (tagged with the number of the
//!   connection it came on) for the delivery task, reconnects with exponential backoff, and
//!   writes the acknowledgements the delivery task hands back. It stops reading when
//!   `2 × batch_max` messages are received but not yet acknowledged on the wire (TCP pushes
//!   back on the broker).
//! * the **delivery task** hands everything queued (up to `batch_max`, in order) to the sink
//!   in one call, retries the same batch on `Busy` (after the suggested delay) and on
//!   `Unavailable` (exponential backoff), and after `Ok` hands the batch's acknowledgements
//!   to the network task.
//!
//! The network task writes a batch's PUBACKs itself, in order, straight to the connection
//! and with one flush, and only those for messages that came on the connection still open:
//! an acknowledgement never goes out on a later connection, where its packet id could name
//! another message. They do not go through rumqttc's request channel: its event loop takes
//! at most one request per turn while it reads up to ten packets per turn, so under a flood
//! the PUBACKs fell behind the reads until the channel was full and acknowledgements were
//! lost (measured: most of a million messages through mosquitto). Waiting for the event
//! loop is interrupted when acknowledgements arrive; that is safe because the connection's
//! write buffer is flushed before every wait, so an interrupted turn loses no packet (what
//! it had read stays in rumqttc's event queue for the next turn). Packets rumqttc had read
//! but not yet returned when the connection failed are discarded: the broker sends them
//! again.

use crate::ingest::busy_wait;
use crate::topic::check_filter;
use civiclake_core::{InboundMessage, IngestError, MessageSink, SourceKind};
use parking_lot::Mutex;
use rumqttc::{
    AsyncClient, ConnectionError, Event, EventLoop, Incoming, MqttOptions, Outgoing, Packet,
    PubAck, PubRec, Publish, QoS, SubscribeFilter, SubscribeReasonCode, TlsConfiguration,
    Transport,
};
use serde::Deserialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::task::JoinHandle;

/// First wait before reconnecting, doubled after each failed attempt.
const RECONNECT_MIN: Duration = Duration::from_millis(500);
/// Longest wait before reconnecting.
const RECONNECT_MAX: Duration = Duration::from_secs(30);
/// A connection that lasted this long restarts the backoff at [`RECONNECT_MIN`]; one that
/// failed sooner (a broker that accepts and then drops us) keeps doubling it.
const STABLE_CONNECTION: Duration = Duration::from_secs(30);
/// First and longest wait before retrying a batch the sink reported unavailable.
const UNAVAILABLE_MIN: Duration = Duration::from_millis(500);
const UNAVAILABLE_MAX: Duration = Duration::from_secs(30);
/// How long [`MqttSource::stop`] waits for the DISCONNECT to go out.
const STOP_GRACE: Duration = Duration::from_secs(3);

fn default_keep_alive() -> u16 {
    30
}
fn default_batch_max() -> usize {
    1000
}
fn default_max_packet_bytes() -> usize {
    1024 * 1024
}

/// One `[[mqtt.source]]` entry: a subscription to an external MQTT broker.
///
/// ```toml
/// [[mqtt.source]]
/// name = "traffic"
/// host = "mqtt.city.example"
/// tls = true                        # port defaults to 8883 (1883 without TLS)
/// username = "civiclake"
/// password_env = "TRAFFIC_MQTT_PASSWORD"
/// topics = ["traffic/+/counts", "parking/#"]
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(from = "RawSourceConfig")]
pub struct MqttSourceConfig {
    /// The source's name: messages carry `SourceKind::ExternalMqtt(name)` (`mqtt:<name>` in
    /// `_dead_letters` and metrics). Letters, digits, `_`, `-` and `.`.
    pub name: String,
    /// The broker's host name or IP address (with `tls`, the name its certificate is checked
    /// against).
    pub host: String,
    /// The broker's port; default 1883, or 8883 with `tls`.
    pub port: u16,
    /// The MQTT client identifier. The broker keeps the session (subscriptions and QoS 1
    /// messages not yet acknowledged) under this id, so it must be stable and not shared
    /// with another client. Default `civiclake-<name>`.
    pub client_id: String,
    /// User name sent in CONNECT.
    pub username: Option<String>,
    /// Password sent in CONNECT (needs `username`). Prefer `password_env`.
    pub password: Option<String>,
    /// Name of an environment variable holding the password (needs `username`).
    pub password_env: Option<String>,
    /// Connect with TLS (rustls), checking the broker's certificate against `ca_file` or, by
    /// default, the system's root certificates.
    pub tls: bool,
    /// PEM file with the certificate authorities to trust instead of the system's.
    pub ca_file: Option<PathBuf>,
    /// Topic filters to subscribe to with QoS 1 (`+` and `#` wildcards).
    pub topics: Vec<String>,
    /// MQTT keep alive, seconds (at least 5); a broker silent for longer is reconnected.
    pub keep_alive_secs: u16,
    /// Most messages handed to the sink in one call (default 1000).
    pub batch_max: usize,
    /// Largest packet accepted from the broker, bytes (default 1 MiB). A larger message
    /// breaks the connection each time the broker sends it.
    pub max_packet_bytes: usize,
}

/// The TOML shape of [`MqttSourceConfig`], with the defaults that depend on other fields
/// (port on `tls`, client id on `name`) still open.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSourceConfig {
    name: String,
    host: String,
    #[serde(default)]
    port: Option<u16>,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    password_env: Option<String>,
    #[serde(default)]
    tls: bool,
    #[serde(default)]
    ca_file: Option<PathBuf>,
    topics: Vec<String>,
    #[serde(default = "default_keep_alive")]
    keep_alive_secs: u16,
    #[serde(default = "default_batch_max")]
    batch_max: usize,
    #[serde(default = "default_max_packet_bytes")]
    max_packet_bytes: usize,
}

impl From<RawSourceConfig> for MqttSourceConfig {
    fn from(raw: RawSourceConfig) -> Self {
        MqttSourceConfig {
            port: raw.port.unwrap_or(if raw.tls { 8883 } else { 1883 }),
            client_id: raw
                .client_id
                .unwrap_or_else(|| format!("civiclake-{}", raw.name)),
            name: raw.name,
            host: raw.host,
            username: raw.username,
            password: raw.password,
            password_env: raw.password_env,
            tls: raw.tls,
            ca_file: raw.ca_file,
            topics: raw.topics,
            keep_alive_secs: raw.keep_alive_secs,
            batch_max: raw.batch_max,
            max_packet_bytes: raw.max_packet_bytes,
        }
    }
}

impl MqttSourceConfig {
    /// A plain-TCP source with the defaults of a TOML entry that gives only `name`, `host`
    /// and `topics`.
    pub fn new(
        name: impl Into<String>,
        host: impl Into<String>,
        topics: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        let name = name.into();
        MqttSourceConfig {
            client_id: format!("civiclake-{name}"),
            name,
            host: host.into(),
            port: 1883,
            username: None,
            password: None,
            password_env: None,
            tls: false,
            ca_file: None,
            topics: topics.into_iter().map(Into::into).collect(),
            keep_alive_secs: default_keep_alive(),
            batch_max: default_batch_max(),
            max_packet_bytes: default_max_packet_bytes(),
        }
    }

    /// Checks the settings (and that `password_env`, if given, is set), explaining the first
    /// problem found.
    pub fn validate(&self) -> Result<(), SourceError> {
        let fail = |reason: String| {
            Err(SourceError::Config {
                name: self.name.clone(),
                reason,
            })
        };
        if self.name.is_empty() {
            return fail("name is empty".into());
        }
        if let Some(c) = self
            .name
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
        {
            return fail(format!(
                "name contains {c:?}; use letters, digits, '_', '-' and '.'"
            ));
        }
        if self.host.trim().is_empty() {
            return fail("host is empty".into());
        }
        if self.host.contains(['/', ' ']) || self.host.contains("://") {
            return fail(format!(
                "host {:?} must be a host name or an IP address, not a URL",
                self.host
            ));
        }
        if self.port == 0 {
            return fail("port 0 is not a broker port".into());
        }
        if self.client_id.is_empty() {
            return fail(
                "client_id is empty; a persistent session needs a stable, non-empty client id"
                    .into(),
            );
        }
        if self.client_id.len() > 65_535 {
            return fail("client_id is longer than 65535 bytes".into());
        }
        if self.password.is_some() && self.password_env.is_some() {
            return fail("give either password or password_env, not both".into());
        }
        if (self.password.is_some() || self.password_env.is_some()) && self.username.is_none() {
            return fail("a password needs a username (MQTT 3.1.1 sends no password alone)".into());
        }
        if let Some(var) = &self.password_env {
            if var.is_empty() {
                return fail("password_env is empty".into());
            }
            if std::env::var_os(var).is_none() {
                return fail(format!(
                    "password_env names the environment variable {var}, which is not set"
                ));
            }
        }
        if self.ca_file.is_some() && !self.tls {
            return fail("ca_file is set but tls is false".into());
        }
        if self.topics.is_empty() {
            return fail("topics is empty; give at least one topic filter".into());
        }
        for (i, filter) in self.topics.iter().enumerate() {
            if let Err(problem) = check_filter(filter) {
                return fail(format!("topic filter {filter:?} {problem}"));
            }
            if self.topics[..i].contains(filter) {
                return fail(format!("topic filter {filter:?} is listed twice"));
            }
        }
        if self.keep_alive_secs < 5 {
            return fail(format!(
                "keep_alive_secs = {} is too short; use at least 5",
                self.keep_alive_secs
            ));
        }
        if self.batch_max == 0 || self.batch_max > 100_000 {
            return fail(format!(
                "batch_max = {} must be between 1 and 100000",
                self.batch_max
            ));
        }
        if self.max_packet_bytes < 64 || self.max_packet_bytes > 268_435_455 {
            return fail(format!(
                "max_packet_bytes = {} must be between 64 and 268435455",
                self.max_packet_bytes
            ));
        }
        Ok(())
    }

    /// The password to send: `password`, or the value of `password_env`.
    fn resolve_password(&self) -> Result<Option<String>, SourceError> {
        match (&self.password, &self.password_env) {
            (Some(p), _) => Ok(Some(p.clone())),
            (None, Some(var)) => match std::env::var(var) {
                Ok(p) => Ok(Some(p)),
                Err(e) => Err(SourceError::Config {
                    name: self.name.clone(),
                    reason: format!("cannot read the password from ${var}: {e}"),
                }),
            },
            (None, None) => Ok(None),
        }
    }

    /// rumqttc's options: MQTT 3.1.1, persistent session, manual acknowledgements.
    fn mqtt_options(&self) -> Result<MqttOptions, SourceError> {
        self.validate()?;
        let mut options = MqttOptions::new(self.client_id.clone(), self.host.clone(), self.port);
        options
            .set_clean_session(false)
            .set_manual_acks(true)
            .set_keep_alive(Duration::from_secs(u64::from(self.keep_alive_secs)))
            .set_max_packet_size(self.max_packet_bytes, self.max_packet_bytes)
            // Requests are a SUBSCRIBE per connection and the final DISCONNECT; PUBACKs are
            // written by the network task itself (see the module's notes).
            .set_request_channel_capacity(16);
        if let Some(user) = &self.username {
            let password = self.resolve_password()?.unwrap_or_default();
            options.set_credentials(user.clone(), password);
        }
        if self.tls {
            let config = self.tls_config()?;
            options.set_transport(Transport::Tls(TlsConfiguration::Rustls(Arc::new(config))));
        }
        Ok(options)
    }

    /// A rustls client configuration with the ring provider and the configured (or the
    /// system's) root certificates.
    fn tls_config(&self) -> Result<rustls::ClientConfig, SourceError> {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let tls_error = |reason: String| SourceError::Tls {
            name: self.name.clone(),
            reason,
        };
        let mut roots = rustls::RootCertStore::empty();
        match &self.ca_file {
            Some(path) => {
                let certs = CertificateDer::pem_file_iter(path)
                    .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
                    .map_err(|e| {
                        tls_error(format!("cannot read ca_file {}: {e}", path.display()))
                    })?;
                let (added, _ignored) = roots.add_parsable_certificates(certs);
                if added == 0 {
                    return Err(tls_error(format!(
                        "ca_file {} holds no usable certificate",
                        path.display()
                    )));
                }
            }
            None => {
                let found = rustls_native_certs::load_native_certs();
                let (added, _ignored) = roots.add_parsable_certificates(found.certs);
                if added == 0 {
                    let errors: Vec<String> =
                        found.errors.iter().map(ToString::to_string).collect();
                    return Err(tls_error(format!(
                        "no system root certificates found ({}); set ca_file",
                        if errors.is_empty() {
                            "none installed".to_string()
                        } else {
                            errors.join("; ")
                        }
                    )));
                }
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_error(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(config)
    }
}

/// Why a source could not be started.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    /// A setting is missing or out of range.
    #[error("invalid [[mqtt.source]] {name:?}: {reason}")]
    Config {
        /// The source's name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// The TLS settings could not be loaded.
    #[error("[[mqtt.source]] {name:?}: TLS setup failed: {reason}")]
    Tls {
        /// The source's name.
        name: String,
        /// What failed.
        reason: String,
    },
}

/// A snapshot of a source's state and counters (since start).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceStats {
    /// Connected to the broker now.
    pub connected: bool,
    /// PUBLISH packets received from the broker (redeliveries included).
    pub messages_received: u64,
    /// Messages the sink accepted (they are durable).
    pub messages_stored: u64,
    /// PUBACKs sent to the broker.
    pub messages_acked: u64,
    /// Stored messages not acknowledged because their connection had ended meanwhile; the
    /// broker sends them again (they are stored twice).
    pub acks_abandoned: u64,
    /// Calls to the sink that returned an error (busy or unavailable).
    pub sink_failures: u64,
    /// Connections established after the first one.
    pub reconnects: u64,
    /// The last connection or subscription error, if any.
    pub last_error: Option<String>,
}

/// The live state behind [`SourceStats`].
#[derive(Debug, Default)]
struct Shared {
    connected: AtomicBool,
    messages_received: AtomicU64,
    messages_stored: AtomicU64,
    messages_acked: AtomicU64,
    acks_abandoned: AtomicU64,
    sink_failures: AtomicU64,
    reconnects: AtomicU64,
    last_error: Mutex<Option<String>>,
}

fn bump(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// A received message waiting for the sink.
#[derive(Debug)]
struct Received {
    publish: Publish,
    /// The connection it came on.
    connection: u64,
    received_micros: i64,
    /// Counts it against the read-ahead limit until it is acknowledged (or abandoned).
    permit: OwnedSemaphorePermit,
}

/// The acknowledgement of a stored message, for the network task to write.
#[derive(Debug)]
struct Ack {
    pkid: u16,
    qos: QoS,
    /// The connection the message came on: the acknowledgement goes out only on it.
    connection: u64,
    /// Released once the acknowledgement is written (or abandoned).
    _permit: OwnedSemaphorePermit,
}

/// A running subscription to an external MQTT broker.
#[derive(Debug)]
pub struct MqttSource {
    name: String,
    shared: Arc<Shared>,
    client: AsyncClient,
    stop_delivery: watch::Sender<bool>,
    stop_network: watch::Sender<bool>,
    delivery: JoinHandle<()>,
    network: JoinHandle<()>,
}

impl MqttSource {
    /// Validates `config` and starts the source's tasks on the current tokio runtime. It
    /// connects in the background (see [`MqttSource::stats`]); an unreachable broker is
    /// retried forever, with backoff.
    pub fn start(
        config: MqttSourceConfig,
        sink: Arc<dyn MessageSink>,
    ) -> Result<MqttSource, SourceError> {
        let options = config.mqtt_options()?;
        let capacity = options.request_channel_capacity();
        let (client, eventloop) = AsyncClient::new(options, capacity);
        let shared = Arc::new(Shared::default());
        let read_ahead = Arc::new(Semaphore::new(config.batch_max.saturating_mul(2)));
        let (queue_tx, queue_rx) = mpsc::unbounded_channel();
        let (acks_tx, acks_rx) = mpsc::unbounded_channel();
        let (stop_delivery, stop_delivery_rx) = watch::channel(false);
        let (stop_network, stop_network_rx) = watch::channel(false);
        let source = SourceKind::ExternalMqtt(config.name.clone());
        let filters: Vec<SubscribeFilter> = config
            .topics
            .iter()
            .map(|t| SubscribeFilter::new(t.clone(), QoS::AtLeastOnce))
            .collect();
        let network = Network {
            name: config.name.clone(),
            addr: format!("{}:{}", config.host, config.port),
            eventloop,
            client: client.clone(),
            shared: Arc::clone(&shared),
            filters,
            queue: queue_tx,
            acks: acks_rx,
            connection: 0,
            read_ahead,
            stop: stop_network_rx,
        };
        let delivery = Delivery {
            name: config.name.clone(),
            source,
            sink,
            shared: Arc::clone(&shared),
            queue: queue_rx,
            acks: acks_tx,
            batch_max: config.batch_max,
            stop: stop_delivery_rx,
        };
        Ok(MqttSource {
            name: config.name,
            shared,
            client,
            stop_delivery,
            stop_network,
            delivery: tokio::spawn(delivery.run()),
            network: tokio::spawn(network.run()),
        })
    }

    /// The source's configured name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The source's state and counters now.
    pub fn stats(&self) -> SourceStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let s = &self.shared;
        SourceStats {
            connected: s.connected.load(Ordering::Relaxed),
            messages_received: get(&s.messages_received),
            messages_stored: get(&s.messages_stored),
            messages_acked: get(&s.messages_acked),
            acks_abandoned: get(&s.acks_abandoned),
            sink_failures: get(&s.sink_failures),
            reconnects: get(&s.reconnects),
            last_error: s.last_error.lock().clone(),
        }
    }

    /// Stops the source: a delivery in progress is finished (and acknowledged), retries are
    /// abandoned, the PUBACKs due so far and a DISCONNECT are sent (waiting at most 3 s),
    /// and the broker keeps the session: what was not acknowledged is sent again to the next
    /// connection with the same client id.
    pub async fn stop(self) {
        let _ = self.stop_delivery.send(true);
        let _ = self.delivery.await;
        // The delivery task handed its last PUBACKs over before it ended, and the network
        // task writes handed-over PUBACKs before each turn of the event loop: the DISCONNECT
        // goes out after them.
        let disconnect_queued = self.client.try_disconnect().is_ok();
        let _ = self.stop_network.send(true);
        let mut network = self.network;
        if !disconnect_queued
            || tokio::time::timeout(STOP_GRACE, &mut network)
                .await
                .is_err()
        {
            network.abort();
            let _ = network.await;
        }
        self.shared.connected.store(false, Ordering::Relaxed);
        tracing::info!(source = %self.name, "MQTT source stopped");
    }
}

/// The task that owns rumqttc's event loop.
struct Network {
    name: String,
    addr: String,
    eventloop: EventLoop,
    client: AsyncClient,
    shared: Arc<Shared>,
    filters: Vec<SubscribeFilter>,
    queue: mpsc::UnboundedSender<Received>,
    /// Acknowledgements from the delivery task, a stored batch at a time.
    acks: mpsc::UnboundedReceiver<Vec<Ack>>,
    /// The number of the current connection, bumped when one fails.
    connection: u64,
    read_ahead: Arc<Semaphore>,
    stop: watch::Receiver<bool>,
}

impl Network {
    async fn run(mut self) {
        let mut backoff = RECONNECT_MIN;
        let mut connected_at: Option<Instant> = None;
        let mut connections = 0u64;
        loop {
            while let Ok(acks) = self.acks.try_recv() {
                self.send_acks(acks).await;
            }
            // A permit per poll: a poll yields at most one message. Permits come back as
            // acknowledgements are written, so those are taken while waiting.
            let permit = if *self.stop.borrow() {
                // Stopping: the delivery task is gone, nothing is read any more.
                None
            } else {
                tokio::select! {
                    biased;
                    Some(acks) = self.acks.recv() => {
                        self.send_acks(acks).await;
                        continue;
                    }
                    permit = Arc::clone(&self.read_ahead).acquire_owned() => permit.ok(),
                    _ = self.stop.changed() => None,
                }
            };
            // Connected, a turn of the event loop is interrupted by acknowledgements (see the
            // module's notes); connecting is not.
            let event = if self.eventloop.network.is_some() {
                tokio::select! {
                    biased;
                    Some(acks) = self.acks.recv() => {
                        self.send_acks(acks).await;
                        continue;
                    }
                    event = self.eventloop.poll() => event,
                }
            } else {
                self.eventloop.poll().await
            };
            let stopping = *self.stop.borrow();
            match event {
                Ok(Event::Incoming(Incoming::ConnAck(ack))) => {
                    connections += 1;
                    if connections > 1 {
                        bump(&self.shared.reconnects, 1);
                    }
                    connected_at = Some(Instant::now());
                    self.shared.connected.store(true, Ordering::Relaxed);
                    tracing::info!(source = %self.name, broker = %self.addr, session_present = ack.session_present, "connected to MQTT broker");
                    // A resumed session keeps its subscriptions; the first connection of this
                    // process subscribes anyway, as the configured topics may have changed.
                    if (!ack.session_present || connections == 1)
                        && let Err(e) = self.client.try_subscribe_many(self.filters.clone())
                    {
                        self.error(format!("cannot queue SUBSCRIBE: {e}"));
                    }
                }
                Ok(Event::Incoming(Incoming::Publish(publish))) => {
                    bump(&self.shared.messages_received, 1);
                    let Some(permit) = permit else {
                        // Only when stopping: not stored, not acknowledged, sent again later.
                        continue;
                    };
                    let item = Received {
                        publish,
                        connection: self.connection,
                        received_micros: now_micros(),
                        permit,
                    };
                    if self.queue.send(item).is_err() && !stopping {
                        self.error("the delivery task ended".into());
                        return;
                    }
                }
                Ok(Event::Incoming(Incoming::SubAck(suback))) => {
                    for (filter, code) in self.filters.iter().zip(&suback.return_codes) {
                        match code {
                            SubscribeReasonCode::Failure => self.error(format!(
                                "the broker refused the subscription to {:?}",
                                filter.path
                            )),
                            SubscribeReasonCode::Success(QoS::AtMostOnce) => {
                                tracing::warn!(source = %self.name, filter = %filter.path, "the broker granted only QoS 0: messages on this filter can be lost");
                            }
                            SubscribeReasonCode::Success(_) => {}
                        }
                    }
                }
                Ok(Event::Outgoing(Outgoing::Disconnect)) if stopping => return,
                Ok(_) => {}
                Err(e) => {
                    self.connection_lost();
                    if stopping {
                        return;
                    }
                    let lasted = connected_at.take().map(|t| t.elapsed());
                    if lasted.is_some_and(|d| d >= STABLE_CONNECTION) {
                        backoff = RECONNECT_MIN;
                    }
                    self.error(describe(&e));
                    tracing::warn!(source = %self.name, broker = %self.addr, error = %describe(&e), retry_in_ms = backoff.as_millis() as u64, "MQTT source connection failed");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = self.stop.changed() => return,
                    }
                    backoff = (backoff * 2).min(RECONNECT_MAX);
                }
            }
        }
    }

    /// After a failed connection: a new connection number (acknowledgements of what came on
    /// the old one are abandoned), and no packet read from the old connection survives
    /// (rumqttc would otherwise return it after the next CONNACK).
    fn connection_lost(&mut self) {
        self.connection += 1;
        self.eventloop.clean();
        self.eventloop.state.events.clear();
        self.shared.connected.store(false, Ordering::Relaxed);
    }

    /// Writes a stored batch's acknowledgements, in order and with one flush, if they belong
    /// to the connection still open; otherwise they are abandoned (the broker sends those
    /// messages again). A write that fails ends the connection.
    async fn send_acks(&mut self, acks: Vec<Ack>) {
        let due: Vec<Packet> = acks
            .iter()
            .filter(|a| a.connection == self.connection)
            .filter_map(|a| match a.qos {
                QoS::AtMostOnce => None,
                QoS::AtLeastOnce => Some(Packet::PubAck(PubAck::new(a.pkid))),
                QoS::ExactlyOnce => Some(Packet::PubRec(PubRec::new(a.pkid))),
            })
            .collect();
        let stale = acks
            .iter()
            .filter(|a| a.qos != QoS::AtMostOnce && a.connection != self.connection)
            .count() as u64;
        bump(&self.shared.acks_abandoned, stale);
        if due.is_empty() {
            return;
        }
        let timeout = Duration::from_secs(self.eventloop.network_options.connection_timeout());
        let Some(network) = self.eventloop.network.as_mut() else {
            bump(&self.shared.acks_abandoned, due.len() as u64);
            return;
        };
        let count = due.len() as u64;
        let mut result = Ok(());
        for packet in due {
            result = network.write(packet).await.map_err(|e| e.to_string());
            if result.is_err() {
                break;
            }
        }
        if result.is_ok() {
            result = match tokio::time::timeout(timeout, network.flush()).await {
                Ok(flushed) => flushed.map_err(|e| e.to_string()),
                Err(_) => Err("timed out".into()),
            };
        }
        match result {
            Ok(()) => bump(&self.shared.messages_acked, count),
            Err(e) => {
                // The broker sends these messages again on the next connection.
                bump(&self.shared.acks_abandoned, count);
                self.error(format!("cannot send {count} PUBACKs: {e}"));
                self.connection_lost();
            }
        }
    }

    fn error(&self, message: String) {
        tracing::warn!(source = %self.name, error = %message, "MQTT source");
        *self.shared.last_error.lock() = Some(message);
    }
}

impl std::fmt::Debug for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Network").field("name", &self.name).finish()
    }
}

/// A connection error in words (rumqttc's messages are terse).
fn describe(e: &ConnectionError) -> String {
    match e {
        ConnectionError::ConnectionRefused(code) => {
            format!("the broker refused the connection: {code:?}")
        }
        ConnectionError::NetworkTimeout => "connecting timed out".into(),
        other => other.to_string(),
    }
}

fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The task that stores messages and queues their acknowledgements.
#[derive(Debug)]
struct Delivery {
    name: String,
    source: SourceKind,
    sink: Arc<dyn MessageSink>,
    shared: Arc<Shared>,
    queue: mpsc::UnboundedReceiver<Received>,
    acks: mpsc::UnboundedSender<Vec<Ack>>,
    batch_max: usize,
    stop: watch::Receiver<bool>,
}

impl Delivery {
    async fn run(mut self) {
        let mut batch: Vec<Received> = Vec::new();
        loop {
            if *self.stop.borrow() {
                return;
            }
            let first = tokio::select! {
                item = self.queue.recv() => match item {
                    Some(item) => item,
                    None => return,
                },
                _ = self.stop.changed() => return,
            };
            batch.clear();
            batch.push(first);
            while batch.len() < self.batch_max {
                match self.queue.try_recv() {
                    Ok(item) => batch.push(item),
                    Err(_) => break,
                }
            }
            if !self.store(&batch).await {
                return;
            }
            let acks = batch
                .drain(..)
                .map(|r| Ack {
                    pkid: r.publish.pkid,
                    qos: r.publish.qos,
                    connection: r.connection,
                    _permit: r.permit,
                })
                .collect();
            if self.acks.send(acks).is_err() {
                // The network task is gone: the source is stopping.
                return;
            }
        }
    }

    /// Hands the batch to the sink until it accepts it; `false` if the source is stopping
    /// first.
    async fn store(&mut self, batch: &[Received]) -> bool {
        let messages: Vec<InboundMessage> = batch.iter().map(|r| self.inbound(r)).collect();
        let mut unavailable_wait = UNAVAILABLE_MIN;
        loop {
            let wait = match self.sink.deliver(messages.clone()).await {
                Ok(_) => {
                    bump(&self.shared.messages_stored, batch.len() as u64);
                    return true;
                }
                Err(IngestError::Busy {
                    reason,
                    retry_after_ms,
                }) => {
                    bump(&self.shared.sink_failures, 1);
                    tracing::debug!(source = %self.name, %reason, retry_after_ms, "ingest busy; retrying the batch");
                    busy_wait(retry_after_ms)
                }
                Err(IngestError::Unavailable(reason)) => {
                    bump(&self.shared.sink_failures, 1);
                    let wait = unavailable_wait;
                    unavailable_wait = (unavailable_wait * 2).min(UNAVAILABLE_MAX);
                    tracing::warn!(source = %self.name, %reason, retry_in_ms = wait.as_millis() as u64, "ingest unavailable; the batch is not acknowledged and will be retried");
                    wait
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.stop.changed() => return false,
            }
        }
    }

    fn inbound(&self, received: &Received) -> InboundMessage {
        let publish = &received.publish;
        InboundMessage {
            source: self.source.clone(),
            topic: publish.topic.clone(),
            partition: None,
            offset: None,
            key: None,
            payload: publish.payload.to_vec(),
            content_type: None,
            headers: Vec::new(),
            received_micros: received.received_micros,
            publisher: None,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn parse(toml_text: &str) -> Result<MqttSourceConfig, String> {
        #[derive(Deserialize)]
        struct File {
            mqtt: Mqtt,
        }
        #[derive(Deserialize)]
        struct Mqtt {
            source: Vec<MqttSourceConfig>,
        }
        toml::from_str::<File>(toml_text)
            .map(|f| f.mqtt.source.into_iter().next().unwrap())
            .map_err(|e| e.to_string())
    }

    fn reason(config: &MqttSourceConfig) -> String {
        config.validate().unwrap_err().to_string()
    }

    #[test]
    fn toml_entries_get_defaults_that_depend_on_other_fields() {
        let c = parse(
            r#"
            [[mqtt.source]]
            name = "traffic"
            host = "mqtt.city.example"
            topics = ["traffic/+/counts"]
            "#,
        )
        .unwrap();
        assert_eq!(
            c,
            MqttSourceConfig::new("traffic", "mqtt.city.example", ["traffic/+/counts"])
        );
        assert_eq!(c.port, 1883);
        assert_eq!(c.client_id, "civiclake-traffic");
        assert_eq!(c.keep_alive_secs, 30);
        assert_eq!(c.batch_max, 1000);
        assert!(c.validate().is_ok());

        let c = parse(
            r#"
            [[mqtt.source]]
            name = "parking"
            host = "broker"
            tls = true
            client_id = "lake-1"
            username = "u"
            password = "p"
            topics = ["parking/#", "+/status"]
            batch_max = 50
            "#,
        )
        .unwrap();
        assert_eq!((c.port, c.tls, c.batch_max), (8883, true, 50));
        assert_eq!(c.client_id, "lake-1");
        assert_eq!(c.password.as_deref(), Some("p"));

        let e = parse(
            r#"
            [[mqtt.source]]
            name = "x"
            host = "h"
            topics = ["a"]
            qos = 2
            "#,
        )
        .unwrap_err();
        assert!(e.contains("unknown field `qos`"), "{e}");
        let e = parse("[[mqtt.source]]\nname = \"x\"\nhost = \"h\"\n").unwrap_err();
        assert!(e.contains("missing field `topics`"), "{e}");
    }

    #[test]
    fn validation_explains_bad_values() {
        let ok = MqttSourceConfig::new("s", "127.0.0.1", ["a/+/b", "c/#"]);
        assert!(ok.validate().is_ok());

        let mut c = ok.clone();
        c.topics.clear();
        assert!(reason(&c).contains("topics is empty"), "{}", reason(&c));
        c.topics = vec!["a/#/b".into()];
        assert!(
            reason(&c).contains("\"a/#/b\" has a wildcard"),
            "{}",
            reason(&c)
        );
        c.topics = vec!["a+".into()];
        assert!(reason(&c).contains("not a whole level"), "{}", reason(&c));
        c.topics = vec!["x".into(), "x".into()];
        assert!(reason(&c).contains("listed twice"), "{}", reason(&c));

        let mut c = ok.clone();
        c.username = Some("u".into());
        c.password = Some("p".into());
        c.password_env = Some("PATH".into());
        assert!(
            reason(&c).contains("either password or password_env"),
            "{}",
            reason(&c)
        );
        c.password = None;
        assert!(c.validate().is_ok());
        c.password_env = Some("CIVICLAKE_TEST_SURELY_UNSET_VARIABLE".into());
        assert!(reason(&c).contains("which is not set"), "{}", reason(&c));
        c.username = None;
        c.password_env = None;
        c.password = Some("p".into());
        assert!(reason(&c).contains("needs a username"), "{}", reason(&c));

        let mut c = ok.clone();
        c.name = "a b".into();
        assert!(reason(&c).contains("name contains ' '"), "{}", reason(&c));
        let mut c = ok.clone();
        c.host = "mqtt://h".into();
        assert!(reason(&c).contains("not a URL"), "{}", reason(&c));
        let mut c = ok.clone();
        c.port = 0;
        assert!(reason(&c).contains("port 0"), "{}", reason(&c));
        let mut c = ok.clone();
        c.client_id.clear();
        assert!(reason(&c).contains("client_id is empty"), "{}", reason(&c));
        let mut c = ok.clone();
        c.ca_file = Some("/etc/ca.pem".into());
        assert!(reason(&c).contains("tls is false"), "{}", reason(&c));
        let mut c = ok.clone();
        c.keep_alive_secs = 2;
        assert!(reason(&c).contains("at least 5"), "{}", reason(&c));
        let mut c = ok.clone();
        c.batch_max = 0;
        assert!(reason(&c).contains("batch_max = 0"), "{}", reason(&c));
        let mut c = ok;
        c.max_packet_bytes = 10;
        assert!(
            reason(&c).contains("max_packet_bytes = 10"),
            "{}",
            reason(&c)
        );
        assert!(
            reason(&c).starts_with("invalid [[mqtt.source]] \"s\": "),
            "{}",
            reason(&c)
        );
    }

    #[test]
    fn tls_settings_are_loaded_and_checked() {
        let mut c = MqttSourceConfig::new("secure", "localhost", ["a"]);
        c.tls = true;
        c.ca_file = Some("/nonexistent/ca.pem".into());
        let e = c.mqtt_options().unwrap_err().to_string();
        assert!(
            e.contains("TLS setup failed: cannot read ca_file /nonexistent/ca.pem"),
            "{e}"
        );

        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        c.ca_file = Some(empty);
        let e = c.mqtt_options().unwrap_err().to_string();
        assert!(e.contains("holds no usable certificate"), "{e}");
    }
}
