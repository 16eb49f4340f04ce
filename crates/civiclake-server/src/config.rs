//! Configuration of `civiclake serve`, documented once.
//!
//! Every setting has one definition below (a clap argument with its doc comment). It can be
//! given, from lowest to highest precedence, as the default, in the TOML file (`--config`),
//! as an environment variable and as a command-line flag. Names follow one rule: the TOML
//! key `key` of section `[section]` is the flag `--section-key` and the variable
//! `CIVICLAKE_SECTION__KEY`; top-level keys are `--key` and `CIVICLAKE_KEY`.
//! `deploy/civiclake.example.toml` is generated from these definitions
//! (`civiclake config example`), and a test checks that it is current.

use clap::{Args, CommandFactory, Parser};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// A duration written like `10s`, `5min`, `250ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl FromStr for HumanDuration {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        humantime::parse_duration(s.trim())
            .map(HumanDuration)
            .map_err(|e| format!("invalid duration '{s}': {e} (e.g. 10s, 5min, 250ms)"))
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(self.0).to_string())
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A size in bytes written like `512MiB`, `1GiB`, `64kB` or a plain number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl FromStr for ByteSize {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let n: u64 = num
            .parse()
            .map_err(|_| format!("invalid size '{s}' (e.g. 512MiB, 1GiB, 1000000)"))?;
        let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "kb" => 1_000,
            "kib" | "k" => 1 << 10,
            "mb" => 1_000_000,
            "mib" | "m" => 1 << 20,
            "gb" => 1_000_000_000,
            "gib" | "g" => 1 << 30,
            _ => {
                return Err(format!(
                    "invalid size unit in '{s}': use B, kB, KiB, MB, MiB, GB or GiB"
                ));
            }
        };
        n.checked_mul(mult)
            .map(ByteSize)
            .ok_or_else(|| format!("size '{s}' is too large"))
    }
}

impl Serialize for ByteSize {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let b = self.0;
        let text = if b >= 1 << 30 && b.is_multiple_of(1 << 30) {
            format!("{}GiB", b >> 30)
        } else if b >= 1 << 20 && b.is_multiple_of(1 << 20) {
            format!("{}MiB", b >> 20)
        } else {
            b.to_string()
        };
        s.serialize_str(&text)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(ByteSize(n)),
            Raw::S(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Write-ahead log settings.
#[derive(Debug, Clone, Default, Args, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WalSettings {
    /// fsync the WAL before acknowledging a write. Off, a power cut can lose acknowledged rows.
    #[arg(long = "wal-fsync", env = "CIVICLAKE_WAL__FSYNC", value_name = "BOOL", action = clap::ArgAction::Set)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fsync: Option<bool>,
    /// A WAL segment is closed and a new one started past this size.
    #[arg(
        long = "wal-segment-size",
        env = "CIVICLAKE_WAL__SEGMENT_SIZE",
        value_name = "SIZE"
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub segment_size: Option<ByteSize>,
}

/// When the buffer is flushed to Delta Lake.
#[derive(Debug, Clone, Default, Args, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FlushSettings {
    /// Flush once the oldest buffered row is this old.
    #[arg(
        long = "flush-max-age",
        env = "CIVICLAKE_FLUSH__MAX_AGE",
        value_name = "DURATION"
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_age: Option<HumanDuration>,
    /// Flush once this many rows are buffered.
    #[arg(
        long = "flush-max-rows",
        env = "CIVICLAKE_FLUSH__MAX_ROWS",
        value_name = "ROWS"
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_rows: Option<usize>,
}

/// Parquet file layout.
#[derive(Debug, Clone, Default, Args, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ParquetSettings {
    /// Rows per Parquet row group (smaller groups prune better, larger compress better).
    #[arg(
        long = "parquet-row-group-rows",
        env = "CIVICLAKE_PARQUET__ROW_GROUP_ROWS",
        value_name = "ROWS"
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub row_group_rows: Option<usize>,
    /// zstd compression level of Parquet pages (1-22).
    #[arg(
        long = "parquet-zstd-level",
        env = "CIVICLAKE_PARQUET__ZSTD_LEVEL",
        value_name = "LEVEL"
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zstd_level: Option<i32>,
}

/// Background compaction of small files.
#[derive(Debug, Clone, Default, Args, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CompactionSettings {
    /// Merge the small files of a day partition once there are at least this many.
    #[arg(
        long = "compaction-min-files",
        env = "CIVICLAKE_COMPACTION__MIN_FILES",
        value_name = "N"
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_files: Option<usize>,
    /// Files with fewer rows than this are small; merged files are at most about this big.
    #[arg(
        long = "compaction-target-rows",
        env = "CIVICLAKE_COMPACTION__TARGET_ROWS",
        value_name = "ROWS"
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_rows: Option<usize>,
    /// How often compaction looks for work.
    #[arg(
        long = "compaction-interval",
        env = "CIVICLAKE_COMPACTION__INTERVAL",
        value_name = "DURATION"
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval: Option<HumanDuration>,
    /// Files replaced by compaction are deleted after this grace period (running queries may still read them).
    #[arg(
        long = "compaction-vacuum-grace",
        env = "CIVICLAKE_COMPACTION__VACUUM_GRACE",
        value_name = "DURATION"
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vacuum_grace: Option<HumanDuration>,
}

/// Limits of SQL queries.
#[derive(Debug, Clone, Default, Args, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuerySettings {
    /// Memory one query may use before it fails with an error.
    #[arg(
        long = "query-memory-limit",
        env = "CIVICLAKE_QUERY__MEMORY_LIMIT",
        value_name = "SIZE"
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_limit: Option<ByteSize>,
    /// Time one query may run before it is cancelled.
    #[arg(
        long = "query-timeout",
        env = "CIVICLAKE_QUERY__TIMEOUT",
        value_name = "DURATION"
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<HumanDuration>,
    /// Parallelism of one query; 0 means the number of cores.
    #[arg(
        long = "query-target-partitions",
        env = "CIVICLAKE_QUERY__TARGET_PARTITIONS",
        value_name = "N"
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_partitions: Option<usize>,
}

/// HTTP API settings.
#[derive(Debug, Clone, Default, Args, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSettings {
    /// Largest request body accepted (a bigger write gets 413).
    #[arg(
        long = "http-max-body-size",
        env = "CIVICLAKE_HTTP__MAX_BODY_SIZE",
        value_name = "SIZE"
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_body_size: Option<ByteSize>,
}

/// Dashboards served at `/dashboards`.
#[derive(Debug, Clone, Default, Args, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DashboardSettings {
    /// Folder of the dashboard files (`*.toml`) and of their map layers (`geo/*.geojson`).
    #[arg(
        long = "dashboards-dir",
        env = "CIVICLAKE_DASHBOARDS__DIR",
        value_name = "DIR"
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dir: Option<PathBuf>,
}

/// Continuous pipelines, table settings (retention, last-value cache) and alert rules.
#[derive(Debug, Clone, Default, Args, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PipelineSettings {
    /// Folder of the definitions: `streams/*.toml` (pipelines, tables) and `alerts/*.toml`.
    #[arg(
        id = "pipelines_dir",
        long = "pipelines-dir",
        env = "CIVICLAKE_PIPELINES__DIR",
        value_name = "DIR"
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dir: Option<PathBuf>,
    /// How often retention drops expired day partitions.
    #[arg(
        id = "pipelines_retention_interval",
        long = "pipelines-retention-interval",
        env = "CIVICLAKE_PIPELINES__RETENTION_INTERVAL",
        value_name = "DURATION"
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retention_interval: Option<HumanDuration>,
}

/// civiclake's own metrics as a table.
#[derive(Debug, Clone, Default, Args, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsSettings {
    /// How often the metrics of `/metrics` are sampled into the table `_metrics` (0s: never).
    #[arg(
        long = "metrics-sample-interval",
        env = "CIVICLAKE_METRICS__SAMPLE_INTERVAL",
        value_name = "DURATION"
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sample_interval: Option<HumanDuration>,
}

/// The kiosk fleet: when a kiosk counts as offline.
#[derive(Debug, Clone, Default, Args, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KioskSettings {
    /// How often kiosks send a heartbeat on `devices/kiosk/{id}/heartbeat`.
    #[arg(
        long = "kiosk-heartbeat-interval",
        env = "CIVICLAKE_KIOSK__HEARTBEAT_INTERVAL",
        value_name = "DURATION"
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heartbeat_interval: Option<HumanDuration>,
    /// Beats a kiosk may miss before it is offline (K).
    #[arg(
        long = "kiosk-missed-beats",
        env = "CIVICLAKE_KIOSK__MISSED_BEATS",
        value_name = "K"
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub missed_beats: Option<u32>,
}

/// When writers are slowed down (HTTP 503 with Retry-After; MQTT and Kafka pause).
#[derive(Debug, Clone, Default, Args, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackpressureSettings {
    /// Refuse writes while more rows than this wait in memory for a flush to Delta.
    #[arg(
        long = "backpressure-max-buffered-rows",
        env = "CIVICLAKE_BACKPRESSURE__MAX_BUFFERED_ROWS",
        value_name = "ROWS"
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_buffered_rows: Option<usize>,
    /// Refuse writes while the WAL holds more than this (flushes failing or behind).
    #[arg(
        long = "backpressure-max-wal-size",
        env = "CIVICLAKE_BACKPRESSURE__MAX_WAL_SIZE",
        value_name = "SIZE"
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_wal_size: Option<ByteSize>,
}

/// The embedded MQTT broker.
#[derive(Debug, Clone, Default, Args, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MqttSettings {
    /// Run the embedded MQTT broker (MQTT 3.1.1 and 5; QoS 1 acknowledged once in the WAL).
    #[arg(
        long = "mqtt-enabled",
        env = "CIVICLAKE_MQTT__ENABLED",
        value_name = "BOOL",
        action = clap::ArgAction::Set
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Address of the embedded MQTT broker (port 0 for any free port; the address is logged).
    #[arg(long = "mqtt-addr", env = "CIVICLAKE_MQTT__ADDR", value_name = "ADDR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub addr: Option<SocketAddr>,
    /// Largest MQTT packet accepted; a bigger one closes the connection.
    #[arg(
        long = "mqtt-max-packet-size",
        env = "CIVICLAKE_MQTT__MAX_PACKET_SIZE",
        value_name = "SIZE"
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_packet_size: Option<ByteSize>,
    /// Subscriptions to external MQTT brokers: `[[mqtt.source]]` entries, in the TOML file
    /// only (see `civiclake_mqtt::MqttSourceConfig` and the example file).
    #[arg(skip)]
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub source: Vec<Value>,
}

/// Kafka consumers.
#[derive(Debug, Clone, Default, Args, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaSettings {
    /// Kafka consumer groups: `[[kafka.source]]` entries, in the TOML file only (see
    /// `civiclake_server::kafka::KafkaSourceConfig` and the example file).
    #[arg(skip)]
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub source: Vec<Value>,
}

/// Routes from broker topics to tables, and payload handling.
#[derive(Debug, Clone, Default, Args, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngestSettings {
    /// Directory of the route files (`*.toml`, reloaded on SIGHUP).
    #[arg(
        long = "ingest-routes-dir",
        env = "CIVICLAKE_INGEST__ROUTES_DIR",
        value_name = "DIR"
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub routes_dir: Option<PathBuf>,
    /// Whether the built-in route `ingest/{table}` (line protocol, JSON or SenML) is on.
    #[arg(
        long = "ingest-default-route",
        env = "CIVICLAKE_INGEST__DEFAULT_ROUTE",
        value_name = "BOOL",
        action = clap::ArgAction::Set
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_route: Option<bool>,
    /// Secret key file of the phone-id pseudonyms (created, 0600, when missing; empty = in the data directory).
    #[arg(
        long = "ingest-phone-key-file",
        env = "CIVICLAKE_INGEST__PHONE_KEY_FILE",
        value_name = "FILE"
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone_key_file: Option<PathBuf>,
    /// How often the phone-id pseudonym key changes: daily or never.
    #[arg(
        long = "ingest-phone-key-rotation",
        env = "CIVICLAKE_INGEST__PHONE_KEY_ROTATION",
        value_name = "ROTATION"
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone_key_rotation: Option<String>,
}

/// Logging settings.
#[derive(Debug, Clone, Default, Args, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    /// Log format: text or json.
    #[arg(
        long = "log-format",
        env = "CIVICLAKE_LOG__FORMAT",
        value_name = "FORMAT"
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<LogFormat>,
    /// Log filter in tracing's syntax, e.g. `info` or `civiclake_lake=debug,info`.
    #[arg(
        long = "log-filter",
        env = "CIVICLAKE_LOG__FILTER",
        value_name = "FILTER"
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
}

/// Settings of `civiclake serve`; every field optional so that layers can be merged.
#[derive(Debug, Clone, Default, Args, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServeSettings {
    /// Directory of the write-ahead log and the Delta Lake tables.
    #[arg(long = "data-dir", env = "CIVICLAKE_DATA_DIR", value_name = "DIR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// Address of the HTTP API (use port 0 for any free port; the address is logged).
    #[arg(long = "http-addr", env = "CIVICLAKE_HTTP_ADDR", value_name = "ADDR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_addr: Option<SocketAddr>,
    /// Turn authentication off: every request acts as an administrator (and anonymous MQTT
    /// clients may publish). For a demo only: refused unless http_addr is a loopback address.
    #[arg(
        long = "insecure-no-auth",
        env = "CIVICLAKE_INSECURE_NO_AUTH",
        value_name = "BOOL",
        num_args = 0..=1,
        default_missing_value = "true",
        action = clap::ArgAction::Set
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub insecure_no_auth: Option<bool>,
    /// Stream a simulated city into the lake (1,000 sensors, the last 24 hours first, then
    /// live), for the shipped dashboards.
    #[arg(
        long = "demo",
        env = "CIVICLAKE_DEMO",
        value_name = "BOOL",
        num_args = 0..=1,
        default_missing_value = "true",
        action = clap::ArgAction::Set
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub demo: Option<bool>,

    /// Address of the PostgreSQL protocol endpoint (psql, DBeaver, Grafana...; database
    /// `civiclake`, a token as password). Off when not set; with --demo 127.0.0.1:5432.
    #[arg(long = "pg-addr", env = "CIVICLAKE_PG_ADDR", value_name = "ADDR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pg_addr: Option<SocketAddr>,
    /// PEM certificate chain: TLS on the PostgreSQL endpoint (with pg-tls-key).
    #[arg(
        long = "pg-tls-cert",
        env = "CIVICLAKE_PG_TLS_CERT",
        value_name = "FILE"
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pg_tls_cert: Option<PathBuf>,
    /// PEM private key of pg-tls-cert.
    #[arg(long = "pg-tls-key", env = "CIVICLAKE_PG_TLS_KEY", value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pg_tls_key: Option<PathBuf>,
    /// Address of the Arrow Flight SQL endpoint (ADBC, Flight SQL JDBC/ODBC; bearer token).
    /// Off when not set; with --demo 127.0.0.1:50051.
    #[arg(
        long = "flight-addr",
        env = "CIVICLAKE_FLIGHT_ADDR",
        value_name = "ADDR"
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flight_addr: Option<SocketAddr>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub wal: WalSettings,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub flush: FlushSettings,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub parquet: ParquetSettings,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub compaction: CompactionSettings,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub query: QuerySettings,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub http: HttpSettings,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub log: LogSettings,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub backpressure: BackpressureSettings,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub mqtt: MqttSettings,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub ingest: IngestSettings,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub kafka: KafkaSettings,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub dashboards: DashboardSettings,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub pipelines: PipelineSettings,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub metrics: MetricsSettings,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub kiosk: KioskSettings,
}

/// `civiclake serve` arguments: a config file and the settings.
#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    /// TOML configuration file (see deploy/civiclake.example.toml).
    #[arg(long, env = "CIVICLAKE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub settings: ServeSettings,
}

/// Every setting with a value.
#[derive(Debug, Clone)]
pub struct Config {
    /// Data directory.
    pub data_dir: PathBuf,
    /// HTTP address.
    pub http_addr: SocketAddr,
    /// Authentication off (loopback demo only).
    pub insecure_no_auth: bool,
    /// Lake settings.
    pub lake: civiclake_lake::LakeConfig,
    /// Query limits.
    pub query: civiclake_query::QueryConfig,
    /// Largest request body.
    pub max_body_bytes: usize,
    /// Log format.
    pub log_format: LogFormat,
    /// Log filter.
    pub log_filter: String,
    /// The embedded MQTT broker: its address, or `None` when it is off.
    pub mqtt_addr: Option<SocketAddr>,
    /// Largest MQTT packet.
    pub mqtt_max_packet_bytes: usize,
    /// Directory of the route files.
    pub routes_dir: PathBuf,
    /// Whether the `ingest/{table}` route is on.
    pub default_route: bool,
    /// Secret key file of phone-id pseudonyms.
    pub phone_key_file: PathBuf,
    /// Daily rotation of the phone-id pseudonym key (else never).
    pub phone_key_daily: bool,
    /// Subscriptions to external MQTT brokers.
    pub mqtt_sources: Vec<civiclake_mqtt::MqttSourceConfig>,
    /// Kafka consumers.
    pub kafka_sources: Vec<crate::kafka::KafkaSourceConfig>,
    /// Folder of the dashboards.
    pub dashboards_dir: PathBuf,
    /// Folder of the pipeline and alert definitions.
    pub pipelines_dir: PathBuf,
    /// How often retention runs.
    pub retention_interval: Duration,
    /// Stream the simulated demo city into the lake.
    pub demo: bool,
    /// How often metrics are sampled into `_metrics`; `None`: never.
    pub metrics_sample_interval: Option<Duration>,
    /// When a kiosk is offline.
    pub kiosk_liveness: civiclake_kiosk::fleet::liveness::LivenessConfig,
    /// The PostgreSQL protocol endpoint, when on.
    pub pg_addr: Option<SocketAddr>,
    /// Its TLS certificate chain and key (PEM), when configured.
    pub pg_tls: Option<(PathBuf, PathBuf)>,
    /// The Arrow Flight SQL endpoint, when on.
    pub flight_addr: Option<SocketAddr>,
    /// The PostgreSQL and Flight SQL addresses are `--demo`'s defaults (not set): when their
    /// port is taken, the endpoint takes any free port instead of failing the start.
    pub sql_addrs_from_demo: bool,
}

/// The defaults, as a fully populated settings value.
pub fn defaults() -> ServeSettings {
    let lake = civiclake_lake::LakeConfig::new("data");
    let query = civiclake_query::QueryConfig::default();
    ServeSettings {
        data_dir: Some(PathBuf::from("data")),
        http_addr: Some(SocketAddr::from(([127, 0, 0, 1], 8080))),
        insecure_no_auth: Some(false),
        demo: Some(false),
        pg_addr: None,
        pg_tls_cert: None,
        pg_tls_key: None,
        flight_addr: None,
        wal: WalSettings {
            fsync: Some(lake.wal_fsync),
            segment_size: Some(ByteSize(lake.wal_segment_bytes)),
        },
        flush: FlushSettings {
            max_age: Some(HumanDuration(lake.flush_max_age)),
            max_rows: Some(lake.flush_max_rows),
        },
        parquet: ParquetSettings {
            row_group_rows: Some(lake.row_group_rows),
            zstd_level: Some(lake.zstd_level),
        },
        compaction: CompactionSettings {
            min_files: Some(lake.compaction_min_files),
            target_rows: Some(lake.compaction_target_rows),
            interval: Some(HumanDuration(lake.compaction_interval)),
            vacuum_grace: Some(HumanDuration(lake.vacuum_grace)),
        },
        query: QuerySettings {
            memory_limit: Some(ByteSize(query.memory_limit as u64)),
            timeout: Some(HumanDuration(query.timeout)),
            target_partitions: Some(query.target_partitions),
        },
        http: HttpSettings {
            max_body_size: Some(ByteSize(64 << 20)),
        },
        log: LogSettings {
            format: Some(LogFormat::Text),
            filter: Some("info".into()),
        },
        backpressure: BackpressureSettings {
            max_buffered_rows: Some(lake.max_buffered_rows),
            max_wal_size: Some(ByteSize(lake.max_wal_bytes)),
        },
        mqtt: MqttSettings {
            enabled: Some(true),
            addr: Some(SocketAddr::from(([127, 0, 0, 1], 1883))),
            max_packet_size: Some(ByteSize(1 << 20)),
            source: Vec::new(),
        },
        ingest: IngestSettings {
            routes_dir: Some(PathBuf::from("pipelines/ingest")),
            default_route: Some(true),
            phone_key_file: Some(PathBuf::new()),
            phone_key_rotation: Some("daily".into()),
        },
        kafka: KafkaSettings { source: Vec::new() },
        dashboards: DashboardSettings {
            dir: Some(PathBuf::from("dashboards")),
        },
        pipelines: PipelineSettings {
            dir: Some(PathBuf::from("pipelines")),
            retention_interval: Some(HumanDuration(Duration::from_secs(3600))),
        },
        metrics: MetricsSettings {
            sample_interval: Some(HumanDuration(Duration::from_secs(10))),
        },
        kiosk: KioskSettings {
            heartbeat_interval: Some(HumanDuration(Duration::from_secs(30))),
            missed_beats: Some(3),
        },
    }
}

/// An error in the configuration.
#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(pub String);

fn overlay(base: &mut Value, top: Value) {
    match (base, top) {
        (Value::Object(b), Value::Object(t)) => {
            for (k, v) in t {
                match b.get_mut(&k) {
                    Some(slot) => overlay(slot, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (slot, Value::Null) => {
            let _ = slot;
        }
        (slot, v) => *slot = v,
    }
}

fn to_value(s: &ServeSettings) -> Result<Value, ConfigError> {
    serde_json::to_value(s).map_err(|e| ConfigError(e.to_string()))
}

impl ServeArgs {
    /// Merges defaults < TOML file < environment and flags (clap already put flags above env).
    pub fn resolve(&self) -> Result<Config, ConfigError> {
        let mut merged = to_value(&defaults())?;
        if let Some(path) = &self.config {
            let text = std::fs::read_to_string(path)
                .map_err(|e| ConfigError(format!("cannot read {}: {e}", path.display())))?;
            let file: ServeSettings = toml::from_str(&text)
                .map_err(|e| ConfigError(format!("{}: {e}", path.display())))?;
            overlay(&mut merged, to_value(&file)?);
        }
        overlay(&mut merged, to_value(&self.settings)?);
        let s: ServeSettings =
            serde_json::from_value(merged).map_err(|e| ConfigError(e.to_string()))?;
        let missing = || ConfigError("a setting has no value".into());
        let data_dir = s.data_dir.ok_or_else(missing)?;
        let mut lake = civiclake_lake::LakeConfig::new(&data_dir);
        lake.wal_fsync = s.wal.fsync.ok_or_else(missing)?;
        lake.wal_segment_bytes = s.wal.segment_size.ok_or_else(missing)?.0;
        lake.flush_max_age = s.flush.max_age.ok_or_else(missing)?.0;
        lake.flush_max_rows = s.flush.max_rows.ok_or_else(missing)?;
        lake.row_group_rows = s.parquet.row_group_rows.ok_or_else(missing)?;
        lake.zstd_level = s.parquet.zstd_level.ok_or_else(missing)?;
        lake.compaction_min_files = s.compaction.min_files.ok_or_else(missing)?;
        lake.compaction_target_rows = s.compaction.target_rows.ok_or_else(missing)?;
        lake.compaction_interval = s.compaction.interval.ok_or_else(missing)?.0;
        lake.vacuum_grace = s.compaction.vacuum_grace.ok_or_else(missing)?.0;
        lake.max_buffered_rows = s.backpressure.max_buffered_rows.ok_or_else(missing)?;
        lake.max_wal_bytes = s.backpressure.max_wal_size.ok_or_else(missing)?.0;
        if lake.row_group_rows == 0 || lake.flush_max_rows == 0 {
            return Err(ConfigError(
                "parquet.row_group_rows and flush.max_rows must be positive".into(),
            ));
        }
        let beat = s.kiosk.heartbeat_interval.ok_or_else(missing)?.0;
        let kiosk_liveness = civiclake_kiosk::fleet::liveness::LivenessConfig {
            interval_secs: u32::try_from(beat.as_secs()).unwrap_or(u32::MAX),
            missed_beats: s.kiosk.missed_beats.ok_or_else(missing)?,
        };
        if beat.as_secs() == 0 || beat.subsec_nanos() != 0 || kiosk_liveness.missed_beats == 0 {
            return Err(ConfigError(
                "kiosk.heartbeat_interval must be a whole number of seconds (at least 1s) and kiosk.missed_beats at least 1".into(),
            ));
        }
        if !(1..=22).contains(&lake.zstd_level) {
            return Err(ConfigError(
                "parquet.zstd_level must be between 1 and 22".into(),
            ));
        }
        let query = civiclake_query::QueryConfig {
            memory_limit: usize::try_from(s.query.memory_limit.ok_or_else(missing)?.0)
                .unwrap_or(usize::MAX),
            timeout: s.query.timeout.ok_or_else(missing)?.0,
            target_partitions: s.query.target_partitions.ok_or_else(missing)?,
        };
        let http_addr = s.http_addr.ok_or_else(missing)?;
        let insecure_no_auth = s.insecure_no_auth.ok_or_else(missing)?;
        let demo = s.demo.unwrap_or(false);
        let loopback = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
        let pg_addr = s.pg_addr.or(demo.then(|| loopback(5432)));
        let flight_addr = s.flight_addr.or(demo.then(|| loopback(50051)));
        for (name, addr) in [("pg_addr", pg_addr), ("flight_addr", flight_addr)] {
            if let Some(addr) = addr
                && insecure_no_auth
                && !addr.ip().is_loopback()
            {
                return Err(ConfigError(format!(
                    "--insecure-no-auth is only allowed on loopback addresses, not {name} {addr}"
                )));
            }
        }
        let pg_tls = match (s.pg_tls_cert.clone(), s.pg_tls_key.clone()) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            _ => {
                return Err(ConfigError(
                    "pg_tls_cert and pg_tls_key go together: give both or neither".into(),
                ));
            }
        };
        if insecure_no_auth && !http_addr.ip().is_loopback() {
            return Err(ConfigError(format!(
                "--insecure-no-auth is only allowed on a loopback address, not {http_addr}: create a token with `civiclake token create --role admin` instead"
            )));
        }
        if insecure_no_auth
            && s.mqtt.enabled == Some(true)
            && s.mqtt.addr.is_some_and(|a| !a.ip().is_loopback())
        {
            return Err(ConfigError(
                "--insecure-no-auth lets anonymous MQTT clients publish: the MQTT broker must then listen on a loopback address (mqtt.addr)".into(),
            ));
        }
        let phone_key_file = match s.ingest.phone_key_file.ok_or_else(missing)? {
            p if p.as_os_str().is_empty() => data_dir.join("phone-pseudonym.key"),
            p => p,
        };
        let phone_key_daily = match s.ingest.phone_key_rotation.ok_or_else(missing)?.as_str() {
            "daily" => true,
            "never" => false,
            other => {
                return Err(ConfigError(format!(
                    "ingest.phone_key_rotation must be daily or never, not {other:?}"
                )));
            }
        };
        let mut mqtt_sources: Vec<civiclake_mqtt::MqttSourceConfig> = Vec::new();
        for (i, raw) in s.mqtt.source.iter().enumerate() {
            let source: civiclake_mqtt::MqttSourceConfig = serde_json::from_value(raw.clone())
                .map_err(|e| ConfigError(format!("[[mqtt.source]] number {}: {e}", i + 1)))?;
            source
                .validate()
                .map_err(|e| ConfigError(format!("[[mqtt.source]] number {}: {e}", i + 1)))?;
            if mqtt_sources.iter().any(|m| m.name == source.name) {
                return Err(ConfigError(format!(
                    "[[mqtt.source]] name {:?} is used twice",
                    source.name
                )));
            }
            mqtt_sources.push(source);
        }
        let mut kafka_sources: Vec<crate::kafka::KafkaSourceConfig> = Vec::new();
        for (i, raw) in s.kafka.source.iter().enumerate() {
            let source: crate::kafka::KafkaSourceConfig = serde_json::from_value(raw.clone())
                .map_err(|e| ConfigError(format!("[[kafka.source]] number {}: {e}", i + 1)))?;
            source
                .validate()
                .map_err(|e| ConfigError(format!("[[kafka.source]] number {}: {e}", i + 1)))?;
            if kafka_sources.iter().any(|k| k.name == source.name) {
                return Err(ConfigError(format!(
                    "[[kafka.source]] name {:?} is used twice",
                    source.name
                )));
            }
            kafka_sources.push(source);
        }
        Ok(Config {
            http_addr,
            insecure_no_auth,
            data_dir,
            lake,
            query,
            max_body_bytes: usize::try_from(s.http.max_body_size.ok_or_else(missing)?.0)
                .unwrap_or(usize::MAX),
            log_format: s.log.format.ok_or_else(missing)?,
            log_filter: s.log.filter.ok_or_else(missing)?,
            mqtt_addr: s
                .mqtt
                .enabled
                .ok_or_else(missing)?
                .then_some(s.mqtt.addr.ok_or_else(missing)?),
            mqtt_max_packet_bytes: usize::try_from(s.mqtt.max_packet_size.ok_or_else(missing)?.0)
                .unwrap_or(usize::MAX),
            routes_dir: s.ingest.routes_dir.ok_or_else(missing)?,
            default_route: s.ingest.default_route.ok_or_else(missing)?,
            phone_key_file,
            phone_key_daily,
            mqtt_sources,
            kafka_sources,
            dashboards_dir: s.dashboards.dir.ok_or_else(missing)?,
            pipelines_dir: s.pipelines.dir.ok_or_else(missing)?,
            retention_interval: s.pipelines.retention_interval.ok_or_else(missing)?.0,
            demo: s.demo.ok_or_else(missing)?,
            metrics_sample_interval: Some(s.metrics.sample_interval.ok_or_else(missing)?.0)
                .filter(|d| !d.is_zero()),
            kiosk_liveness,
            sql_addrs_from_demo: demo && s.pg_addr.is_none() && s.flight_addr.is_none(),
            pg_addr,
            pg_tls,
            flight_addr,
        })
    }
}

#[derive(Parser)]
struct Probe {
    #[command(flatten)]
    args: ServeArgs,
}

/// Settings with no default: off unless given.
#[cfg(test)]
const OPTIONAL_SETTINGS: [&str; 4] = [
    "CIVICLAKE_PG_ADDR",
    "CIVICLAKE_PG_TLS_CERT",
    "CIVICLAKE_PG_TLS_KEY",
    "CIVICLAKE_FLIGHT_ADDR",
];

/// The analysts' protocols, off by default (so not among the settings with a default):
/// top-level keys, written before the first section.
const SQL_EXAMPLE: &str = "\
# Address of the PostgreSQL protocol endpoint (database civiclake, a token as password);\n\
# off when not set, 127.0.0.1:5432 with --demo (flag --pg-addr, environment CIVICLAKE_PG_ADDR)\n\
# pg_addr = \"127.0.0.1:5432\"\n\n\
# TLS on it: PEM certificate chain and private key (flags --pg-tls-cert, --pg-tls-key)\n\
# pg_tls_cert = \"/etc/civiclake/pg.crt\"\n\
# pg_tls_key = \"/etc/civiclake/pg.key\"\n\n\
# Address of the Arrow Flight SQL endpoint (bearer token); off when not set, 127.0.0.1:50051\n\
# with --demo (flag --flight-addr, environment CIVICLAKE_FLIGHT_ADDR)\n\
# flight_addr = \"127.0.0.1:50051\"\n\n";

/// Section and key of a setting from its environment variable name.
fn toml_key(env: &str) -> Option<(Option<String>, String)> {
    let rest = env.strip_prefix("CIVICLAKE_")?.to_ascii_lowercase();
    Some(match rest.split_once("__") {
        Some((section, key)) => (Some(section.to_string()), key.to_string()),
        None => (None, rest),
    })
}

fn default_of(defaults: &Value, section: Option<&str>, key: &str) -> Option<Value> {
    let obj: &Map<String, Value> = match section {
        Some(s) => defaults.get(s)?.as_object()?,
        None => defaults.as_object()?,
    };
    obj.get(key).cloned()
}

fn toml_literal(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

/// Adds `[default: ...]` to the help of every setting (the defaults live in [`defaults`]).
pub fn with_defaults_in_help(cmd: clap::Command) -> clap::Command {
    let Ok(defaults) = serde_json::to_value(defaults()) else {
        return cmd;
    };
    cmd.mut_args(|arg| {
        let Some(env) = arg.get_env().and_then(|e| e.to_str()).map(str::to_string) else {
            return arg;
        };
        let Some((section, key)) = toml_key(&env) else {
            return arg;
        };
        match default_of(&defaults, section.as_deref(), &key) {
            Some(v) => {
                let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
                arg.help(format!(
                    "{help} [default: {}]",
                    toml_literal(&v).trim_matches('"')
                ))
            }
            None => arg,
        }
    })
}

/// The example configuration file, generated from the argument definitions and defaults.
pub fn example_toml() -> String {
    let cmd = Probe::command();
    let defaults = serde_json::to_value(defaults()).unwrap_or(Value::Null);
    let mut top = String::new();
    let mut sections: Vec<(String, String)> = Vec::new();
    for arg in cmd.get_arguments() {
        let Some(env) = arg.get_env().and_then(|e| e.to_str()) else {
            continue;
        };
        let Some((section, key)) = toml_key(env) else {
            continue;
        };
        let Some(value) = default_of(&defaults, section.as_deref(), &key) else {
            continue;
        };
        let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
        let flag = arg.get_long().unwrap_or_default();
        let entry = format!(
            "# {help}\n# (flag --{flag}, environment {env})\n# {key} = {}\n\n",
            toml_literal(&value)
        );
        match section {
            None => top.push_str(&entry),
            Some(s) => match sections.iter_mut().find(|(name, _)| *name == s) {
                Some((_, body)) => body.push_str(&entry),
                None => sections.push((s, entry)),
            },
        }
    }
    let mut out = String::from(
        "# civiclake configuration: every setting with its default (generated by `civiclake config example`).\n\
         # Precedence: defaults < this file (--config) < environment variables < command-line flags.\n\
         # Uncomment and change what you need.\n\n",
    );
    out.push_str(&top);
    out.push_str(SQL_EXAMPLE);
    for (name, body) in sections {
        out.push_str(&format!("[{name}]\n\n{body}"));
    }
    out.push_str(SOURCES_EXAMPLE);
    out.trim_end().to_string() + "\n"
}

/// The message sources, which are lists of tables and so only in the TOML file.
const SOURCES_EXAMPLE: &str = r#"# Subscriptions to external MQTT brokers (MQTT 3.1.1, persistent session, QoS 1; a message is
# acknowledged to the broker only once stored). One [[mqtt.source]] per broker; the messages
# go through the same routes as the embedded broker's (source "mqtt:<name>").
# [[mqtt.source]]
# name = "city-broker"             # names the source in _dead_letters and the logs
# host = "mqtt.comune.prato.it"
# port = 8883                      # default 1883, or 8883 with tls
# tls = true
# ca_file = "/etc/civiclake/city-ca.pem"   # default: the system's roots
# client_id = "civiclake-1"        # default "civiclake-<name>"; keep it stable (the session)
# username = "civiclake"
# password_env = "CITY_BROKER_PASSWORD"    # or password = "..."
# topics = ["city/air/#", "city/traffic/+"]
# keep_alive_secs = 30
# batch_max = 1000                 # messages stored per WAL write
# max_packet_bytes = 1048576

# Kafka consumer groups, exactly once into the lake: the consumed offsets are logged with the
# rows (checkpoint kafka/<name>/<topic>/<partition>, a Delta txn action at flush) and a
# restart or rebalance resumes from them; the group's own offsets follow. Kafka topics are
# routed with "." read as "/": ingest.air takes the default route ingest/{table}. Topics
# bus.<organisation>.<system> carry CloudEvents (structured, or binary mode with ce_* headers)
# for the interoperability bus, appended to its log before their offsets are checkpointed (at
# least once); their source must be /<organisation>/<system>[/...].
# [[kafka.source]]
# name = "city-kafka"
# brokers = "kafka1:9092,kafka2:9092"
# group_id = "civiclake"
# topics = ["ingest.air", "city.traffic.counts", "bus.acme.billing"]
# batch_max = 5000                 # messages per WAL write
# batch_wait = "50ms"              # longest wait to fill a batch
# [kafka.source.client_options]    # extra librdkafka settings
# "security.protocol" = "SASL_SSL"
# "sasl.mechanism" = "SCRAM-SHA-512"
"#;

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> ServeArgs {
        let mut full = vec!["probe"];
        full.extend_from_slice(args);
        Probe::try_parse_from(full).unwrap().args
    }

    #[test]
    fn layers_merge_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "data_dir = \"/from/file\"\n[flush]\nmax_age = \"3s\"\nmax_rows = 10\n[query]\nmemory_limit = \"256MiB\"\n").unwrap();
        let args = parse(&["--config", file.to_str().unwrap(), "--flush-max-rows", "20"]);
        let c = args.resolve().unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/from/file"));
        assert_eq!(c.lake.flush_max_age, Duration::from_secs(3));
        assert_eq!(c.lake.flush_max_rows, 20);
        assert_eq!(c.query.memory_limit, 256 << 20);
        assert_eq!(c.http_addr.port(), 8080);
        assert!(c.lake.wal_fsync);
    }

    #[test]
    fn analysts_protocols_are_off_by_default_and_on_in_the_demo() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().to_str().unwrap();
        let c = parse(&["--data-dir", data]).resolve().unwrap();
        assert_eq!(
            (c.pg_addr, c.flight_addr, c.pg_tls.is_some()),
            (None, None, false)
        );
        let c = parse(&["--data-dir", data, "--demo"]).resolve().unwrap();
        assert_eq!(c.pg_addr, Some("127.0.0.1:5432".parse().unwrap()));
        assert_eq!(c.flight_addr, Some("127.0.0.1:50051".parse().unwrap()));
        assert!(c.sql_addrs_from_demo);
        // Given addresses win over the demo's, and are then not moved when taken.
        let c = parse(&["--data-dir", data, "--demo", "--pg-addr", "127.0.0.1:6543"])
            .resolve()
            .unwrap();
        assert_eq!(c.pg_addr, Some("127.0.0.1:6543".parse().unwrap()));
        assert!(!c.sql_addrs_from_demo);
        // TLS needs both files; a public address needs authentication.
        let err = parse(&["--data-dir", data, "--pg-tls-cert", "/c.pem"])
            .resolve()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("pg_tls_cert and pg_tls_key go together"),
            "{err}"
        );
        let err = parse(&[
            "--data-dir",
            data,
            "--insecure-no-auth",
            "--flight-addr",
            "0.0.0.0:50051",
        ])
        .resolve()
        .unwrap_err()
        .to_string();
        assert!(err.contains("flight_addr"), "{err}");
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "[flush]\nmax_agee = \"3s\"\n").unwrap();
        let err = parse(&["--config", file.to_str().unwrap()])
            .resolve()
            .unwrap_err()
            .to_string();
        assert!(err.contains("max_agee"), "{err}");
        assert!("5 parsecs".parse::<HumanDuration>().is_err());
        assert_eq!("2GiB".parse::<ByteSize>().unwrap(), ByteSize(2 << 30));
        assert!("2XB".parse::<ByteSize>().is_err());
    }

    #[test]
    fn mqtt_sources_come_from_the_file_and_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            "[[mqtt.source]]\nname = \"city\"\nhost = \"127.0.0.1\"\nport = 1884\ntopics = [\"city/#\"]\n\n[[mqtt.source]]\nname = \"lab\"\nhost = \"broker.lab\"\ntopics = [\"lab/+/x\"]\n",
        )
        .unwrap();
        let c = parse(&["--config", file.to_str().unwrap()])
            .resolve()
            .unwrap();
        assert_eq!(c.mqtt_sources.len(), 2);
        assert_eq!(c.mqtt_sources[0].name, "city");
        assert_eq!(c.mqtt_sources[0].port, 1884);
        assert_eq!(c.mqtt_sources[0].topics, vec!["city/#".to_string()]);
        assert_eq!(c.mqtt_sources[1].port, 1883);
        for (text, expected) in [
            (
                "[[mqtt.source]]\nname = \"a\"\nhost = \"h\"\ntopics = [\"x/#/y\"]\n",
                "number 1",
            ),
            (
                "[[mqtt.source]]\nname = \"a\"\nhost = \"h\"\ntopics = [\"x\"]\nbogus = 1\n",
                "bogus",
            ),
            (
                "[[mqtt.source]]\nname = \"a\"\nhost = \"h\"\ntopics = [\"x\"]\n[[mqtt.source]]\nname = \"a\"\nhost = \"h\"\ntopics = [\"y\"]\n",
                "used twice",
            ),
        ] {
            std::fs::write(&file, text).unwrap();
            let err = parse(&["--config", file.to_str().unwrap()])
                .resolve()
                .unwrap_err()
                .to_string();
            assert!(err.contains(expected), "{text}: {err}");
        }
    }

    #[test]
    fn example_file_is_current() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../deploy/civiclake.example.toml"
        );
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        assert_eq!(
            committed,
            example_toml(),
            "regenerate with: cargo run -- config example > deploy/civiclake.example.toml"
        );
        let parsed: ServeSettings = toml::from_str(&example_toml()).unwrap();
        assert!(parsed.data_dir.is_none());
    }

    #[test]
    fn every_setting_has_an_env_name_that_maps_to_its_toml_key() {
        let defaults = serde_json::to_value(defaults()).unwrap();
        for arg in Probe::command().get_arguments() {
            let env = arg.get_env().and_then(|e| e.to_str()).unwrap().to_string();
            if env == "CIVICLAKE_CONFIG" {
                continue;
            }
            let (section, key) = toml_key(&env).unwrap();
            // Off unless given: the analysts' protocols (in the example file by hand).
            let optional = OPTIONAL_SETTINGS.contains(&env.as_str());
            assert_eq!(
                default_of(&defaults, section.as_deref(), &key).is_some(),
                !optional,
                "{env}: only the optional settings have no default"
            );
            if optional {
                assert!(
                    example_toml().contains(&format!("# {key} = ")),
                    "{env} is not in the example"
                );
            }
            let flag = arg.get_long().unwrap();
            let expected = match &section {
                Some(s) => format!("{s}-{}", key.replace('_', "-")),
                None => key.replace('_', "-"),
            };
            assert_eq!(flag, expected);
        }
    }
}
