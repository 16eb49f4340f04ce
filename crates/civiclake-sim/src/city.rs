//! The city: its sensors, their state, and readings streamed in arrival order.

use crate::SimError;
use crate::kinds::{Kind, MAX_FIELDS};
use crate::rng::Rng;
use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::Arc;

/// Prato's five districts (circoscrizioni).
pub const DISTRICTS: [&str; 5] = ["Centro", "Nord", "Est", "Sud", "Ovest"];

const MICROS: i64 = 1_000_000;
/// Local time of the daily cycles: Europe/Rome winter time (UTC+1).
const LOCAL_OFFSET_HOURS: f64 = 1.0;

/// What to simulate. Everything produced is a function of these settings.
#[derive(Debug, Clone, PartialEq)]
pub struct CityConfig {
    /// Seed of every random choice.
    pub seed: u64,
    /// Number of sensors: sensor `i` is of kind `i mod 5` ([`Kind::ALL`] order) in district
    /// `(i mod 5 + i div 5) mod 5` ([`DISTRICTS`] order).
    pub sensors: u32,
    /// Days simulated.
    pub days: u32,
    /// Seconds between two readings of a sensor (1 s to 1 day).
    pub interval_secs: u64,
    /// Start of the period, microseconds since the epoch (UTC).
    pub start_micros: i64,
    /// Share of readings arriving up to 60 s late, after newer ones (default 2%).
    pub out_of_order_rate: f64,
    /// Share of readings arriving 1 to 6 hours late, from an offline gateway (default 0.1%).
    pub late_rate: f64,
    /// Share of readings lacking one measured field (default 1%).
    pub missing_rate: f64,
    /// Chance per reading that a sensor gets stuck, repeating its values for 1 to 6 hours
    /// with status `ok` (default 0.005%).
    pub stuck_rate: f64,
    /// Chance per reading that a sensor reports `status=fault` for 10 minutes to 2 hours
    /// (default 0.002%).
    pub fault_rate: f64,
}

impl Default for CityConfig {
    fn default() -> Self {
        Self {
            seed: 1,
            sensors: 100,
            days: 1,
            interval_secs: 60,
            // 2026-01-01T00:00:00Z
            start_micros: 1_767_225_600 * MICROS,
            out_of_order_rate: 0.02,
            late_rate: 0.001,
            missing_rate: 0.01,
            stuck_rate: 0.000_05,
            fault_rate: 0.000_02,
        }
    }
}

impl CityConfig {
    /// Checks the settings.
    pub fn validate(&self) -> Result<(), SimError> {
        let bad = |m: String| Err(SimError::Config(m));
        if self.sensors == 0 {
            return bad("sensors must be at least 1".into());
        }
        if self.days == 0 {
            return bad("days must be at least 1".into());
        }
        if !(1..=86_400).contains(&self.interval_secs) {
            return bad(format!(
                "interval must be 1 s to 1 day, not {} s",
                self.interval_secs
            ));
        }
        for (name, rate) in [
            ("out-of-order rate", self.out_of_order_rate),
            ("late rate", self.late_rate),
            ("missing rate", self.missing_rate),
            ("stuck rate", self.stuck_rate),
            ("fault rate", self.fault_rate),
        ] {
            if !(0.0..=1.0).contains(&rate) {
                return bad(format!("{name} must be between 0 and 1, not {rate}"));
            }
        }
        if self.out_of_order_rate + self.late_rate > 1.0 {
            return bad("out-of-order and late rates add up to more than 1".into());
        }
        let end = i64::from(self.days)
            .checked_mul(86_400 * MICROS + 6 * 3600 * MICROS)
            .and_then(|d| self.start_micros.checked_add(d));
        if end.is_none() {
            return bad("the start time is too far in the future".into());
        }
        Ok(())
    }

    /// Readings per sensor: `days × 86400 / interval`.
    pub fn ticks(&self) -> u64 {
        u64::from(self.days) * 86_400 / self.interval_secs.max(1)
    }
}

/// A measured value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    /// A float field.
    Float(f64),
    /// An integer field (counts).
    Int(i64),
}

impl Value {
    /// The value as a float.
    pub fn as_f64(self) -> f64 {
        match self {
            Value::Float(v) => v,
            Value::Int(v) => v as f64,
        }
    }
}

/// A sensor's self-reported state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Working (or believing so: stuck sensors say `ok`).
    Ok,
    /// Reporting a fault.
    Fault,
}

impl Status {
    /// `ok` or `fault`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Fault => "fault",
        }
    }
}

/// One reading of one sensor.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    /// The sensor's kind, hence its table.
    pub kind: Kind,
    /// The reading's timestamp, µs since the epoch.
    pub time_micros: i64,
    /// When it reaches the platform, µs since the epoch (≥ `time_micros`).
    pub arrival_micros: i64,
    /// Sensor id, e.g. `air-00042`.
    pub sensor: Arc<str>,
    /// District (one of [`DISTRICTS`]).
    pub district: &'static str,
    /// The measured fields in [`Kind::fields`] order; `None` is a missing field.
    pub values: [Option<Value>; MAX_FIELDS],
    /// Battery charge, %.
    pub battery: f64,
    /// Status.
    pub status: Status,
}

impl Reading {
    /// The measured fields with their names, missing ones skipped.
    pub fn fields(&self) -> impl Iterator<Item = (&'static str, Value)> + '_ {
        self.kind
            .fields()
            .iter()
            .zip(self.values.iter())
            .filter_map(|(f, v)| v.map(|v| (f.name, v)))
    }
}

/// A simulated city: the sensors of a [`CityConfig`].
#[derive(Debug, Clone)]
pub struct City {
    pub(crate) config: CityConfig,
    pub(crate) sensors: Vec<Sensor>,
    /// Sensor indexes ordered by their phase in the interval (their emission order).
    order: Vec<usize>,
}

/// A sensor as the generator knows it.
#[derive(Debug, Clone)]
pub(crate) struct Sensor {
    pub(crate) kind: Kind,
    pub(crate) name: Arc<str>,
    pub(crate) district: &'static str,
    /// Offset of its readings in the interval: they are at `start + k × interval + phase`.
    pub(crate) phase_micros: i64,
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

impl City {
    /// The city of `config`.
    pub fn new(config: CityConfig) -> Result<Self, SimError> {
        config.validate()?;
        let interval_ms = config.interval_secs * 1000;
        let sensors: Vec<Sensor> = (0..config.sensors as usize)
            .map(|i| {
                let kind = Kind::ALL[i % Kind::ALL.len()];
                let mut rng = Rng::new(config.seed, i as u64 ^ 0xA5A5_0000_0000_0000);
                Sensor {
                    kind,
                    name: format!("{}-{i:05}", kind.table()).into(),
                    // Each round of kinds shifts the districts: every district gets sensors
                    // as soon as there are five, and every kind spreads over the districts.
                    district: DISTRICTS
                        [(i % Kind::ALL.len() + i / Kind::ALL.len()) % DISTRICTS.len()],
                    phase_micros: rng.below(interval_ms) as i64 * 1000,
                }
            })
            .collect();
        let mut order: Vec<usize> = (0..sensors.len()).collect();
        order.sort_by_key(|&i| (sensors[i].phase_micros, i));
        Ok(Self {
            config,
            sensors,
            order,
        })
    }

    /// The settings.
    pub fn config(&self) -> &CityConfig {
        &self.config
    }

    /// Rows produced in all.
    pub fn total_rows(&self) -> u64 {
        self.sensors.len() as u64 * self.config.ticks()
    }

    /// Rows produced per table, in [`Kind::ALL`] order (kinds without sensors included, 0).
    pub fn rows_per_table(&self) -> Vec<(Kind, u64)> {
        Kind::ALL
            .iter()
            .map(|&k| {
                let n = self.sensors.iter().filter(|s| s.kind == k).count() as u64;
                (k, n * self.config.ticks())
            })
            .collect()
    }

    /// The readings in arrival order. Each call starts again from the beginning and yields
    /// exactly the same readings.
    pub fn readings(&self) -> Readings<'_> {
        Readings {
            city: self,
            state: ReadingsState::new(self, self.config.ticks()),
        }
    }
}

/// Per-sensor state of the generator.
#[derive(Debug, Clone)]
struct SensorState {
    rng: Rng,
    walks: [f64; MAX_FIELDS],
    bias: [f64; MAX_FIELDS],
    fill_speed: f64,
    battery: f64,
    drain_per_reading: f64,
    stuck_left: u64,
    fault_left: u64,
    last: [Option<Value>; MAX_FIELDS],
}

impl SensorState {
    fn new(config: &CityConfig, index: usize, kind: Kind) -> Self {
        let mut rng = Rng::new(config.seed, index as u64);
        let mut walks = [0.0; MAX_FIELDS];
        let mut bias = [0.0; MAX_FIELDS];
        for (i, f) in kind.fields().iter().enumerate() {
            if f.fill_per_hour > 0.0 {
                walks[i] = rng.range(f.min, f.max * 0.8);
            } else {
                walks[i] = rng.range(-0.5, 0.5) * f.walk_bound;
                bias[i] = rng.range(-0.15, 0.15) * f.base;
            }
        }
        let hours_per_reading = config.interval_secs as f64 / 3600.0;
        Self {
            fill_speed: rng.range(0.5, 1.5),
            battery: rng.range(40.0, 100.0),
            drain_per_reading: rng.range(0.02, 0.08) * hours_per_reading,
            rng,
            walks,
            bias,
            stuck_left: 0,
            fault_left: 0,
            last: [None; MAX_FIELDS],
        }
    }

    /// The next reading at `time_micros` (its arrival delayed for out-of-order and late ones).
    fn read(&mut self, config: &CityConfig, sensor: &Sensor, time_micros: i64) -> Reading {
        let kind = sensor.kind;
        let per_hour = 3600 / config.interval_secs.max(1);
        let minutes = config.interval_secs as f64 / 60.0;
        let hours = config.interval_secs as f64 / 3600.0;
        // Battery: drains slowly; swapped when nearly flat.
        self.battery -= self.drain_per_reading;
        if self.battery < 3.0 {
            self.battery = 100.0;
        }
        if self.fault_left > 0 {
            self.fault_left -= 1;
        } else if self.rng.f64() < config.fault_rate {
            self.fault_left = per_hour.max(1) / 6 + self.rng.below(2 * per_hour.max(1));
        }
        let stuck = if self.stuck_left > 0 {
            self.stuck_left -= 1;
            true
        } else if self.last[0].is_some() && self.rng.f64() < config.stuck_rate {
            self.stuck_left = per_hour.max(1) + self.rng.below(5 * per_hour.max(1));
            true
        } else {
            false
        };
        let local_hour = ((time_micros as f64 / 3.6e9) + LOCAL_OFFSET_HOURS).rem_euclid(24.0);
        let mut values = [None; MAX_FIELDS];
        for (i, f) in kind.fields().iter().enumerate() {
            // The walk moves even while the sensor is stuck: the world goes on.
            let noise = self.rng.normal() * f.step * minutes.sqrt();
            let value = if f.fill_per_hour > 0.0 {
                let mut w = self.walks[i] + f.fill_per_hour * self.fill_speed * hours + noise;
                if w >= f.max {
                    w = self.rng.range(f.min, f.min + 5.0);
                }
                w = w.max(f.min);
                self.walks[i] = w;
                w
            } else {
                let mut w = self.walks[i] + noise;
                if w > f.walk_bound {
                    w = 2.0 * f.walk_bound - w;
                } else if w < -f.walk_bound {
                    w = -2.0 * f.walk_bound - w;
                }
                self.walks[i] = w.clamp(-f.walk_bound, f.walk_bound);
                let phase = std::f64::consts::TAU * (local_hour - f.peak_hour) / f.period_hours;
                f.base + self.bias[i] + f.amplitude * phase.cos() + self.walks[i]
            };
            let value = value.clamp(f.min, f.max);
            values[i] = Some(if f.count {
                Value::Int((value * hours).round() as i64)
            } else {
                Value::Float(round2(value))
            });
        }
        if stuck {
            values = self.last;
        } else {
            self.last = values;
        }
        let mut out = values;
        let n = kind.fields().len();
        if self.rng.f64() < config.missing_rate {
            out[self.rng.below(n as u64) as usize] = None;
        }
        let u = self.rng.f64();
        let delay = if u < config.late_rate {
            (self.rng.range(3600.0, 6.0 * 3600.0) * 1000.0).round() as i64 * 1000
        } else if u < config.late_rate + config.out_of_order_rate {
            (self.rng.range(1.0, 60.0) * 1000.0).round() as i64 * 1000
        } else {
            0
        };
        Reading {
            kind,
            time_micros,
            arrival_micros: time_micros + delay,
            sensor: sensor.name.clone(),
            district: sensor.district,
            values: out,
            battery: round2(self.battery),
            status: if self.fault_left > 0 {
                Status::Fault
            } else {
                Status::Ok
            },
        }
    }
}

#[derive(Debug)]
struct Pending(Reading, u64, usize);

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Pending {
    /// Reversed: the heap's top is the earliest arrival (ties: the first generated).
    fn cmp(&self, other: &Self) -> Ordering {
        (other.0.arrival_micros, other.1).cmp(&(self.0.arrival_micros, self.1))
    }
}

/// The readings of a [`City`] in arrival order (see [`City::readings`]). Delayed readings
/// wait in a small heap; memory does not grow with the number of rows.
#[derive(Debug)]
pub struct Readings<'a> {
    city: &'a City,
    state: ReadingsState,
}

impl Iterator for Readings<'_> {
    type Item = Reading;

    fn next(&mut self) -> Option<Reading> {
        self.state.next_before(self.city, None).map(|(_, r)| r)
    }
}

/// Where the generator stands: the sensors' states, the next tick and sensor, and the
/// delayed readings waiting for their arrival time. Shared by [`Readings`] (a bounded run)
/// and [`crate::LiveCity`] (an unbounded one, taken window by window).
#[derive(Debug)]
pub(crate) struct ReadingsState {
    states: Vec<SensorState>,
    tick: u64,
    pos: usize,
    ticks: u64,
    pending: BinaryHeap<Pending>,
    seq: u64,
}

impl ReadingsState {
    /// The state before the first reading of `city`, for `ticks` readings per sensor.
    pub(crate) fn new(city: &City, ticks: u64) -> Self {
        let states = city
            .sensors
            .iter()
            .enumerate()
            .map(|(i, s)| SensorState::new(&city.config, i, s.kind))
            .collect();
        Self {
            states,
            tick: 0,
            pos: 0,
            ticks,
            pending: BinaryHeap::new(),
            seq: 0,
        }
    }

    /// Timestamp of the next reading to generate, if any (none past the last tick, or past
    /// the end of time).
    fn next_time(&self, city: &City) -> Option<i64> {
        if self.tick >= self.ticks {
            return None;
        }
        let s = &city.sensors[*city.order.get(self.pos)?];
        i64::try_from(self.tick)
            .ok()?
            .checked_mul(city.config.interval_secs as i64 * MICROS)?
            .checked_add(city.config.start_micros)?
            .checked_add(s.phase_micros)
    }

    /// The next reading in arrival order with its sensor's index, if it arrives before
    /// `limit` (any time when `None`). A reading that does not is neither generated nor
    /// consumed: the next call with a later limit yields it.
    pub(crate) fn next_before(
        &mut self,
        city: &City,
        limit: Option<i64>,
    ) -> Option<(usize, Reading)> {
        loop {
            let next_time = self.next_time(city);
            if let Some(top) = self.pending.peek()
                && next_time.is_none_or(|t| top.0.arrival_micros <= t)
            {
                if limit.is_some_and(|l| top.0.arrival_micros >= l) {
                    return None;
                }
                return self.pending.pop().map(|p| (p.2, p.0));
            }
            let time = next_time?;
            if limit.is_some_and(|l| time >= l) {
                return None;
            }
            let index = city.order[self.pos];
            let reading = self.states[index].read(&city.config, &city.sensors[index], time);
            self.pos += 1;
            if self.pos == city.order.len() {
                self.pos = 0;
                self.tick += 1;
            }
            if reading.arrival_micros > reading.time_micros {
                self.seq += 1;
                self.pending.push(Pending(reading, self.seq, index));
            } else {
                return Some((index, reading));
            }
        }
    }
}

impl City {
    /// The readings as Arrow record batches per table (see [`crate::RecordBatches`]).
    pub fn record_batches(&self, batch_rows: usize) -> crate::RecordBatches<'_> {
        crate::RecordBatches::new(self.readings(), batch_rows)
    }
}
