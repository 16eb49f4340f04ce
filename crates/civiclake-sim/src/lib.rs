//! `civiclake-sim`: deterministic simulated city sensor data for civiclake.
//!
//! A [`City`] of N sensors spread over Prato's five districts (circoscrizioni Centro, Nord,
//! Est, Sud, Ovest) produces readings of five kinds, one table each: `air`, `noise`,
//! `traffic`, `parking` and `waste`. Values are bounded random walks around a daily cycle;
//! each reading also carries `battery` (slowly draining, swapped when nearly empty) and
//! `status` (`ok` or `fault`).
//!
//! The data is as untidy as real feeds (as in TSBS-iot): by default ~2% of readings arrive
//! up to 60 s late (out of order), 0.1% arrive hours late (an offline gateway), 1% miss one
//! field, and sensors occasionally get stuck repeating their last values.
//!
//! Everything is a function of [`CityConfig`]: the same seed gives the same bytes. Readings
//! are streamed in arrival order ([`City::readings`]), so memory stays flat at any scale.
//! Outputs: line protocol, NDJSON, Parquet (one file per table), HTTP publishing to a
//! civiclake server, MQTT and Kafka publishing ([`output`]); Arrow record batches per table ([`City::record_batches`]).
//!
//! The city has a map ([`CityMap`], module [`geography`]): Prato's real municipal boundary
//! (ISTAT, Openpolis, CC-BY 4.0) cut into synthetic districts and census sections, shipped as
//! GeoJSON in `dashboards/geo/`. Each sensor has a place in its district and section
//! ([`City::sensors`], the `sensors` table via [`City::sensors_batch`]) and a health record
//! every 15 minutes (battery, signal, silences: [`City::sensor_status`], the `sensor_status`
//! table). [`LiveCity`] runs a city without end, window by window — a backfill, then one
//! window a second — with the same readings as [`City::readings`].

mod batches;
mod brokers;
pub mod census;
mod city;
mod fleet;
pub mod geography;
mod kinds;
mod live;
pub mod output;
mod rng;

pub use batches::RecordBatches;
pub use city::{City, CityConfig, DISTRICTS, Reading, Readings, Status, Value};
pub use fleet::{
    DEFAULT_STATUS_INTERVAL_SECS, SENSORS_TABLE, STATUS_TABLE, SensorInfo, sensors_schema,
    status_schema,
};
pub use geography::CityMap;
pub use kinds::{FieldSpec, Kind, MAX_FIELDS};
pub use live::{LiveCity, LiveOptions, LiveWindow};

/// Errors of the simulator.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The configuration is invalid.
    #[error("invalid simulation settings: {0}")]
    Config(String),
    /// A file could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// Arrow could not build a batch.
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    /// Parquet could not write a file.
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    /// The server could not be reached or refused a write.
    #[error("{0}")]
    Http(String),
    /// An MQTT or Kafka broker could not be reached or did not take every message.
    #[error("{0}")]
    Broker(String),
    /// The city's map could not be built, or a sensor not placed on it.
    #[error("city map: {0}")]
    Geo(String),
}
