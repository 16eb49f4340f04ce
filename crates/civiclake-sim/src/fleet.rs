//! The sensor fleet: where each sensor is (the `sensors` registry table) and how it is doing
//! (the `sensor_status` stream of a "fleet health" view).
//!
//! Everything here is a pure function of the [`CityConfig`](crate::CityConfig) (seed, sensors,
//! interval, start) and the time asked for: any window of `sensor_status` can be computed on
//! its own, and consecutive windows join without gaps or repeats.

use crate::SimError;
use crate::city::{City, DISTRICTS};
use crate::geography::CityMap;
use crate::kinds::Kind;
use crate::rng::{Rng, splitmix64};
use arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, Int64Builder, StringDictionaryBuilder,
    TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Int32Type, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use civiclake_core::{field_column, tag_column, time_column};
use std::sync::Arc;

/// The registry table of sensors (one row per sensor, see [`sensors_schema`]).
pub const SENSORS_TABLE: &str = "sensors";
/// The fleet health table (see [`status_schema`]).
pub const STATUS_TABLE: &str = "sensor_status";
/// Default seconds between two `sensor_status` rows of a sensor.
pub const DEFAULT_STATUS_INTERVAL_SECS: u64 = 900;

const MICROS: i64 = 1_000_000;
const HOUR: i64 = 3600 * MICROS;
/// Streams of the sensors' PRNGs, besides the readings' (stream = sensor index).
const PLACE_STREAM: u64 = 0x5E05_0000_0000_0000;
const HEALTH_STREAM: u64 = 0x4EA1_0000_0000_0000;
const SILENCE_TAG: u64 = 0x0051_1E4C_E000_0000;
const RSSI_TAG: u64 = 0x0000_0000_0055_1D00;
/// Silences are drawn per sensor and block of this length: each block starts one with
/// probability [`SILENCE_CHANCE`], lasting [`SILENCE_MIN`] to [`SILENCE_MAX`].
const SILENCE_BLOCK: i64 = 6 * HOUR;
const SILENCE_CHANCE: f64 = 0.03;
const SILENCE_MIN: i64 = HOUR;
const SILENCE_MAX: i64 = 8 * HOUR;
/// A battery is replaced (or recharged) when it reaches this level, %.
const BATTERY_EMPTY: f64 = 5.0;

/// Where a sensor is (see [`City::sensors`]).
#[derive(Debug, Clone, PartialEq)]
pub struct SensorInfo {
    /// Its id, e.g. `air-00042` (the `sensor` tag of its readings).
    pub id: String,
    /// Its kind, hence the table of its readings.
    pub kind: Kind,
    /// Its district (one of [`DISTRICTS`]).
    pub district: &'static str,
    /// Its synthetic census section, e.g. `Centro-012`.
    pub section: String,
    /// Latitude, WGS84 degrees, 6 decimals.
    pub lat: f64,
    /// Longitude, WGS84 degrees, 6 decimals.
    pub lon: f64,
}

/// Schema of the [`SENSORS_TABLE`]: `time` (when the registry was taken: the simulation's
/// start), tags `sensor`, `kind`, `district`, `section`, fields `lat`, `lon` (float).
pub fn sensors_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        time_column(),
        tag_column("sensor"),
        tag_column("kind"),
        tag_column("district"),
        tag_column("section"),
        field_column("lat", DataType::Float64),
        field_column("lon", DataType::Float64),
    ]))
}

/// Schema of the [`STATUS_TABLE`]: `time`, tags `sensor`, `kind`, `district`, fields
/// `battery_pct` (float, as last reported), `rssi_dbm` (integer, signal of the last
/// message), `online` (boolean: false while the sensor is silent), `last_seen_ago_s`
/// (integer, seconds since the sensor's last reading).
pub fn status_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        time_column(),
        tag_column("sensor"),
        tag_column("kind"),
        tag_column("district"),
        field_column("battery_pct", DataType::Float64),
        field_column("rssi_dbm", DataType::Int64),
        field_column("online", DataType::Boolean),
        field_column("last_seen_ago_s", DataType::Int64),
    ]))
}

/// Checks a status interval: 1 s to 1 day.
pub(crate) fn check_status_interval(secs: u64) -> Result<(), SimError> {
    if (1..=86_400).contains(&secs) {
        Ok(())
    } else {
        Err(SimError::Config(format!(
            "status interval must be 1 s to 1 day, not {secs} s"
        )))
    }
}

/// Checks a time asked for: within ±2⁶⁰ µs (±36,000 years) of the epoch, so the arithmetic
/// on it cannot overflow.
pub(crate) fn check_time(what: &str, micros: i64) -> Result<(), SimError> {
    if micros.unsigned_abs() <= 1 << 60 {
        Ok(())
    } else {
        Err(SimError::Config(format!(
            "{what} {micros} µs is too far from 1970"
        )))
    }
}

impl City {
    /// Every sensor with its place: a point drawn uniformly inside its district (and Prato's
    /// boundary) with the sensor's own PRNG stream, and the census section holding it. The
    /// same settings give the same places; a sensor's place depends only on the seed and its
    /// index.
    pub fn sensors(&self) -> Result<Vec<SensorInfo>, SimError> {
        let map = CityMap::get()?;
        self.sensors
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let district = DISTRICTS
                    .iter()
                    .position(|d| *d == s.district)
                    .ok_or_else(|| SimError::Geo(format!("unknown district {}", s.district)))?;
                let mut rng = Rng::new(self.config.seed, i as u64 ^ PLACE_STREAM);
                let (point, section) = map.sample_point(district, &mut rng).ok_or_else(|| {
                    SimError::Geo(format!("no place found for {} in {}", s.name, s.district))
                })?;
                Ok(SensorInfo {
                    id: s.name.to_string(),
                    kind: s.kind,
                    district: s.district,
                    section: map.sections()[section].id.clone(),
                    lat: point.y,
                    lon: point.x,
                })
            })
            .collect()
    }

    /// The [`SENSORS_TABLE`] rows: one per sensor, at the simulation's start.
    pub fn sensors_batch(&self) -> Result<RecordBatch, SimError> {
        let sensors = self.sensors()?;
        let mut time = TimestampMicrosecondBuilder::new().with_timezone("UTC");
        let mut sensor = StringDictionaryBuilder::<Int32Type>::new();
        let mut kind = StringDictionaryBuilder::<Int32Type>::new();
        let mut district = StringDictionaryBuilder::<Int32Type>::new();
        let mut section = StringDictionaryBuilder::<Int32Type>::new();
        let mut lat = Float64Builder::new();
        let mut lon = Float64Builder::new();
        for s in &sensors {
            time.append_value(self.config.start_micros);
            sensor.append_value(&s.id);
            kind.append_value(s.kind.table());
            district.append_value(s.district);
            section.append_value(&s.section);
            lat.append_value(s.lat);
            lon.append_value(s.lon);
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(time.finish()),
            Arc::new(sensor.finish()),
            Arc::new(kind.finish()),
            Arc::new(district.finish()),
            Arc::new(section.finish()),
            Arc::new(lat.finish()),
            Arc::new(lon.finish()),
        ];
        Ok(RecordBatch::try_new(sensors_schema(), columns)?)
    }

    /// The [`STATUS_TABLE`] rows with `time` in `[from_micros, to_micros)`, ordered by time
    /// (ties by sensor): each sensor reports every `status_interval_secs` (1 s to 1 day) at
    /// its own offset in the interval.
    ///
    /// The model: each battery drains in 30 to 120 days from 100% to 5% and is then replaced,
    /// the fleet's batteries spread evenly over that cycle (so about one in ten is under
    /// 15%); the signal level is the sensor's own (−112 to −72 dBm) with a daily swing and
    /// noise; about one sensor in eight falls silent each day, for 1 to 8 hours, during which
    /// it reports `online = false`, its last battery and signal, and a growing
    /// `last_seen_ago_s`. Status rows are a pure function of the settings and the time, so
    /// windows may be asked in any order. (The `battery` column of the readings tables is a
    /// separate, older model; the readings themselves go on during a silence, see
    /// [`crate::LiveOptions::drop_silent_readings`].)
    pub fn sensor_status(
        &self,
        from_micros: i64,
        to_micros: i64,
        status_interval_secs: u64,
    ) -> Result<RecordBatch, SimError> {
        check_status_interval(status_interval_secs)?;
        check_time("window start", from_micros)?;
        check_time("window end", to_micros)?;
        let fleet = Fleet::new(self, status_interval_secs);
        let mut builder = StatusBuilder::default();
        fleet.append_status(self, from_micros, to_micros, &mut builder);
        builder.finish()
    }
}

/// A sensor's health parameters.
#[derive(Debug, Clone)]
struct Health {
    /// Battery drain, % per hour.
    drain_per_hour: f64,
    /// Where in its cycle the battery is at the epoch, 0 to 1.
    cycle_offset: f64,
    /// Mean signal level, dBm.
    rssi_base: f64,
    /// Phase of the daily swing of the signal, radians.
    rssi_phase: f64,
    /// Offset of its status rows in the status interval, µs.
    status_phase: i64,
}

/// The fleet's health model for a city (see [`City::sensor_status`]).
#[derive(Debug, Clone)]
pub(crate) struct Fleet {
    seed: u64,
    status_interval: i64,
    health: Vec<Health>,
}

impl Fleet {
    pub(crate) fn new(city: &City, status_interval_secs: u64) -> Self {
        let status_interval = status_interval_secs as i64 * MICROS;
        let health = (0..city.sensors.len())
            .map(|i| {
                let mut rng = Rng::new(city.config.seed, i as u64 ^ HEALTH_STREAM);
                Health {
                    drain_per_hour: (100.0 - BATTERY_EMPTY) / (24.0 * rng.range(30.0, 120.0)),
                    cycle_offset: rng.f64(),
                    rssi_base: rng.range(-112.0, -72.0),
                    rssi_phase: rng.range(0.0, std::f64::consts::TAU),
                    status_phase: (rng.below(status_interval_secs) as i64) * MICROS,
                }
            })
            .collect();
        Self {
            seed: city.config.seed,
            status_interval,
            health,
        }
    }

    /// A generator for one (sensor, tag, value) triple.
    fn rng_for(&self, sensor: usize, tag: u64, value: i64) -> Rng {
        let mut st = tag ^ (sensor as u64).rotate_left(40);
        let a = splitmix64(&mut st);
        let mut st = a ^ value as u64;
        Rng::new(self.seed, splitmix64(&mut st))
    }

    /// The silence drawn in block `block` of `sensor`, if any: `[start, end)`.
    fn silence_in_block(&self, sensor: usize, block: i64) -> Option<(i64, i64)> {
        let mut rng = self.rng_for(sensor, SILENCE_TAG, block);
        if rng.f64() >= SILENCE_CHANCE {
            return None;
        }
        let start = block.checked_mul(SILENCE_BLOCK)?
            + (rng.below((SILENCE_BLOCK / MICROS) as u64) as i64) * MICROS;
        let length = SILENCE_MIN
            + (rng.below(((SILENCE_MAX - SILENCE_MIN) / MICROS) as u64) as i64) * MICROS;
        Some((start, start.checked_add(length)?))
    }

    /// When the silence holding `time` began, if `sensor` is silent at `time`. Silences
    /// that overlap or touch count as one, which began with the first.
    pub(crate) fn silent_since(&self, sensor: usize, time: i64) -> Option<i64> {
        let mut since = None;
        let mut at = time;
        loop {
            // A silence lasts at most 8 h: one holding `at` began at most two blocks earlier.
            let block = at.div_euclid(SILENCE_BLOCK);
            let start = (block - 2..=block)
                .filter_map(|b| self.silence_in_block(sensor, b))
                .filter(|&(start, end)| start <= at && at < end)
                .map(|(start, _)| start)
                .min();
            match start {
                // Was the sensor already silent just before this silence began?
                Some(start) => {
                    since = Some(start);
                    at = start.saturating_sub(1);
                }
                None => return since,
            }
        }
    }

    /// Battery level at `time`, %, one decimal.
    fn battery(&self, sensor: usize, time: i64) -> f64 {
        let h = &self.health[sensor];
        let life_hours = (100.0 - BATTERY_EMPTY) / h.drain_per_hour;
        let hours = time as f64 / HOUR as f64;
        let spent = (hours / life_hours + h.cycle_offset).rem_euclid(1.0);
        let level = 100.0 - (100.0 - BATTERY_EMPTY) * spent;
        (level * 10.0).round() / 10.0
    }

    /// Signal level of a message sent at `time`, dBm.
    fn rssi(&self, sensor: usize, time: i64) -> i64 {
        let h = &self.health[sensor];
        let day = (time as f64 / (24.0 * HOUR as f64)) * std::f64::consts::TAU;
        let noise = self
            .rng_for(sensor, RSSI_TAG, time.div_euclid(MICROS))
            .normal();
        (h.rssi_base + 3.0 * (day + h.rssi_phase).sin() + 2.5 * noise)
            .round()
            .clamp(-125.0, -40.0) as i64
    }

    /// Appends the status rows of `[from, to)` in time order.
    pub(crate) fn append_status(&self, city: &City, from: i64, to: i64, out: &mut StatusBuilder) {
        if to <= from {
            return;
        }
        let step = self.status_interval;
        let mut rows: Vec<(i64, usize)> = Vec::new();
        for (i, h) in self.health.iter().enumerate() {
            // First k with k × step + phase ≥ from.
            let k0 = (from - h.status_phase).div_euclid(step)
                + i64::from((from - h.status_phase).rem_euclid(step) != 0);
            let mut t = k0
                .checked_mul(step)
                .and_then(|t| t.checked_add(h.status_phase));
            while let Some(time) = t.filter(|&t| t < to) {
                rows.push((time, i));
                t = time.checked_add(step);
            }
        }
        rows.sort_unstable();
        let interval = city.config.interval_secs as i64 * MICROS;
        for (time, i) in rows {
            let sensor = &city.sensors[i];
            // The readings of sensor i are at start + k × interval + phase.
            let last_reading_at_or_before = |t: i64| {
                t - (t - city.config.start_micros - sensor.phase_micros).rem_euclid(interval)
            };
            let silent = self.silent_since(i, time);
            let last_seen = match silent {
                Some(since) => last_reading_at_or_before(since - 1),
                None => last_reading_at_or_before(time),
            };
            out.time.append_value(time);
            out.sensor.append_value(&*sensor.name);
            out.kind.append_value(sensor.kind.table());
            out.district.append_value(sensor.district);
            out.battery.append_value(self.battery(i, last_seen));
            out.rssi.append_value(self.rssi(i, last_seen));
            out.online.append_value(silent.is_none());
            out.ago.append_value((time - last_seen) / MICROS);
            out.rows += 1;
        }
    }
}

/// Builds [`STATUS_TABLE`] batches.
#[derive(Default)]
pub(crate) struct StatusBuilder {
    pub(crate) rows: usize,
    time: TimestampMicrosecondBuilder,
    sensor: StringDictionaryBuilder<Int32Type>,
    kind: StringDictionaryBuilder<Int32Type>,
    district: StringDictionaryBuilder<Int32Type>,
    battery: Float64Builder,
    rssi: Int64Builder,
    online: BooleanBuilder,
    ago: Int64Builder,
}

impl StatusBuilder {
    /// The rows added since the last call.
    pub(crate) fn finish(&mut self) -> Result<RecordBatch, SimError> {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.time.finish().with_timezone("UTC")),
            Arc::new(self.sensor.finish()),
            Arc::new(self.kind.finish()),
            Arc::new(self.district.finish()),
            Arc::new(self.battery.finish()),
            Arc::new(self.rssi.finish()),
            Arc::new(self.online.finish()),
            Arc::new(self.ago.finish()),
        ];
        self.rows = 0;
        Ok(RecordBatch::try_new(status_schema(), columns)?)
    }
}
