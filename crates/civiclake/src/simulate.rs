//! `civiclake simulate`: deterministic simulated city data (the `civiclake-sim` crate) to a
//! file (line protocol, NDJSON), Parquet files, or live to a civiclake server over HTTP, to
//! an MQTT broker or to Kafka.

use civiclake_sim::output::{
    HttpTarget, KafkaTarget, MqttTarget, Payload, publish_http, publish_kafka, publish_mqtt,
    write_line_protocol_file, write_ndjson_file, write_parquet_dir,
};
use civiclake_sim::{City, CityConfig};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;
use std::time::Instant;

/// Arguments of `civiclake simulate`.
#[derive(Debug, clap::Args)]
#[command(group(
    clap::ArgGroup::new("destination")
        .required(true)
        .args(["out", "server", "mqtt", "kafka"])
))]
pub(crate) struct SimulateArgs {
    /// Seed: the same seed and settings give the same data, byte for byte.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Number of sensors, spread over the kinds (air, noise, traffic, parking, waste) and
    /// Prato's five districts.
    #[arg(long, default_value_t = 100)]
    sensors: u32,
    /// Days simulated.
    #[arg(long, default_value_t = 1)]
    days: u32,
    /// Seconds between two readings of a sensor.
    #[arg(long, default_value_t = 60)]
    interval: u64,
    /// Start of the simulated period (RFC 3339).
    #[arg(long, default_value = "2026-01-01T00:00:00Z")]
    start: String,
    /// Output format of --out: lp (line protocol file), ndjson (file), parquet (a directory
    /// with one file per table).
    #[arg(long, value_enum, requires = "out")]
    format: Option<Format>,
    /// File (lp, ndjson) or directory (parquet) to write.
    #[arg(long, value_name = "PATH", conflicts_with = "rate")]
    out: Option<PathBuf>,
    /// Publish to this civiclake server (POST /api/v1/write, line protocol).
    #[arg(long, value_name = "URL")]
    server: Option<String>,
    /// Publish to this MQTT broker (mqtt://host:port), one QoS 1 message per reading; each
    /// is acknowledged by the broker before the command reports success.
    #[arg(long, value_name = "URL")]
    mqtt: Option<String>,
    /// Produce to these Kafka brokers (bootstrap servers, host:port[,...]), one message per
    /// reading keyed by sensor, acks=all.
    #[arg(long, value_name = "BROKERS")]
    kafka: Option<String>,
    /// Topic of each message, with {table}, {sensor} and {district} replaced [default MQTT:
    /// ingest/{table}; Kafka: ingest.{table}].
    #[arg(long, value_name = "TEMPLATE")]
    topic: Option<String>,
    /// Encoding of each MQTT or Kafka message: lp (one line of line protocol) or json.
    #[arg(long, value_enum, default_value = "lp")]
    payload: PayloadArg,
    /// MQTT client identifier.
    #[arg(long, default_value = "civiclake-simulate", requires = "mqtt")]
    mqtt_client_id: String,
    /// MQTT user name (the password is read from CIVICLAKE_MQTT_PASSWORD).
    #[arg(long, requires = "mqtt")]
    mqtt_username: Option<String>,
    /// Target rows (messages) per second when publishing (default: as fast as the server or
    /// broker takes them).
    #[arg(long, value_name = "ROWS_PER_S")]
    rate: Option<f64>,
    /// Rows per HTTP request (at most).
    #[arg(long, default_value_t = 5000, requires = "server")]
    batch_rows: usize,
    /// Token sent as 'Authorization: Bearer' to the server.
    #[arg(
        long,
        env = "CIVICLAKE_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    token: Option<String>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum PayloadArg {
    Lp,
    Json,
}

impl From<PayloadArg> for Payload {
    fn from(p: PayloadArg) -> Self {
        match p {
            PayloadArg::Lp => Payload::LineProtocol,
            PayloadArg::Json => Payload::Json,
        }
    }
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Format {
    Lp,
    Ndjson,
    Parquet,
}

/// Runs `civiclake simulate`.
pub(crate) async fn run(args: SimulateArgs) -> Result<(), String> {
    let start = chrono::DateTime::parse_from_rfc3339(&args.start)
        .map_err(|e| format!("invalid --start '{}': {e} (use RFC 3339)", args.start))?;
    let config = CityConfig {
        seed: args.seed,
        sensors: args.sensors,
        days: args.days,
        interval_secs: args.interval,
        start_micros: start.timestamp_micros(),
        ..CityConfig::default()
    };
    let city = City::new(config).map_err(|e| e.to_string())?;
    // Blocking work (files, the blocking HTTP client) runs off the async runtime.
    tokio::task::spawn_blocking(move || simulate(&city, &args))
        .await
        .map_err(|e| e.to_string())?
}

fn simulate(city: &City, args: &SimulateArgs) -> Result<(), String> {
    if args.topic.is_some() && args.mqtt.is_none() && args.kafka.is_none() {
        return Err("--topic applies to --mqtt and --kafka only".into());
    }
    let bar = ProgressBar::new(city.total_rows());
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} rows {per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message("simulate");
    let mut progress = |rows: u64| bar.set_position(rows);
    let started = Instant::now();
    let rows = if let Some(out) = &args.out {
        let format = match args.format {
            Some(f) => f,
            None => match out.extension().and_then(|e| e.to_str()) {
                Some("lp") => Format::Lp,
                Some("ndjson" | "jsonl") => Format::Ndjson,
                _ => {
                    return Err(format!(
                        "cannot tell the format of {} from its extension: add --format lp|ndjson|parquet",
                        out.display()
                    ));
                }
            },
        };
        match format {
            Format::Lp => write_line_protocol_file(city, out, &mut progress),
            Format::Ndjson => write_ndjson_file(city, out, &mut progress),
            Format::Parquet => write_parquet_dir(city, out, &mut progress).map(|(_, n)| n),
        }
    } else if let Some(url) = &args.server {
        publish_http(
            city,
            &HttpTarget {
                url: url.clone(),
                token: args.token.clone(),
                rate: args.rate,
                batch_rows: args.batch_rows,
            },
            &mut progress,
        )
    } else if let Some(url) = &args.mqtt {
        let credentials = args.mqtt_username.as_ref().map(|user| {
            (
                user.clone(),
                std::env::var("CIVICLAKE_MQTT_PASSWORD").unwrap_or_default(),
            )
        });
        publish_mqtt(
            city,
            &MqttTarget {
                url: url.clone(),
                topic: args.topic.clone().unwrap_or_else(|| "ingest/{table}".into()),
                payload: args.payload.into(),
                client_id: args.mqtt_client_id.clone(),
                credentials,
                rate: args.rate,
            },
            &mut progress,
        )
    } else if let Some(brokers) = &args.kafka {
        publish_kafka(
            city,
            &KafkaTarget {
                brokers: brokers.clone(),
                topic: args.topic.clone().unwrap_or_else(|| "ingest.{table}".into()),
                payload: args.payload.into(),
                rate: args.rate,
                delivery_timeout: std::time::Duration::from_secs(60),
            },
            &mut progress,
        )
    } else {
        return Err("give --out PATH, --server URL, --mqtt URL or --kafka BROKERS".into());
    }
    .map_err(|e| e.to_string())?;
    bar.finish_and_clear();
    for (kind, n) in city.rows_per_table() {
        println!("{}: {n} rows", kind.table());
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "simulated {rows} rows in {secs:.2} s ({:.0} rows/s)",
        rows as f64 / secs.max(1e-9)
    );
    Ok(())
}
