//! Live generation: a city that runs on without end, taken window by window (backfill, then
//! one window a second).

use crate::SimError;
use crate::batches::TableBuilder;
use crate::city::{City, CityConfig, ReadingsState};
use crate::fleet::{
    DEFAULT_STATUS_INTERVAL_SECS, Fleet, STATUS_TABLE, StatusBuilder, check_status_interval,
    check_time,
};
use crate::kinds::Kind;
use arrow::record_batch::RecordBatch;

/// Settings of a [`LiveCity`] besides its [`CityConfig`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveOptions {
    /// Seconds between two `sensor_status` rows of a sensor (1 s to 1 day; default 900).
    pub status_interval_secs: u64,
    /// Leave out the readings of sensors while `sensor_status` says they are silent, so the
    /// readings tables and the fleet health view agree (default true). With false, the
    /// windows hold exactly the readings of [`City::readings`].
    pub drop_silent_readings: bool,
}

impl Default for LiveOptions {
    fn default() -> Self {
        Self {
            status_interval_secs: DEFAULT_STATUS_INTERVAL_SECS,
            drop_silent_readings: true,
        }
    }
}

/// What arrived in one window of a [`LiveCity`].
#[derive(Debug, Clone)]
pub struct LiveWindow {
    /// Start of the window, µs since the epoch (inclusive).
    pub from_micros: i64,
    /// End of the window, µs since the epoch (exclusive).
    pub to_micros: i64,
    /// One batch per table that got rows, in [`Kind::ALL`] order then `sensor_status`: the
    /// readings tables in the lake's conventions ([`Kind::schema`]), rows in arrival order;
    /// `sensor_status` ([`crate::status_schema`]) in time order.
    pub tables: Vec<(&'static str, RecordBatch)>,
}

impl LiveWindow {
    /// Rows in all tables.
    pub fn rows(&self) -> usize {
        self.tables.iter().map(|(_, b)| b.num_rows()).sum()
    }
}

/// A [`City`] without an end, generated window by window: [`LiveCity::advance_to`] yields
/// what reached the platform in `[position, to)` and moves the position to `to`.
///
/// The readings are those of [`City::readings`] for the same [`CityConfig`] (its `days` is
/// ignored: the city runs on), in the same arrival order: a reading whose `time` is in the
/// window but that arrives late (out of order, or hours late from an offline gateway) comes
/// in the window of its arrival. Readings depend on the configured start (each sensor is a
/// random walk from it), so a server that wants the same data after a restart keeps its start
/// (e.g. the last midnight before now − 24 h). The `sensor_status` rows are those of
/// [`City::sensor_status`] for the window; they depend only on the time.
///
/// Generating costs about as much as [`City::record_batches`]; memory stays flat however
/// long it runs. For a backfill, advance in steps (an hour at a time, say) to keep batches
/// of a moderate size.
pub struct LiveCity {
    city: City,
    state: ReadingsState,
    fleet: Fleet,
    options: LiveOptions,
    position: i64,
    builders: Vec<TableBuilder>,
    status: StatusBuilder,
}

impl std::fmt::Debug for LiveCity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveCity")
            .field("config", self.city.config())
            .field("options", &self.options)
            .field("position", &self.position)
            .finish_non_exhaustive()
    }
}

impl LiveCity {
    /// A live city starting at `config.start_micros`.
    pub fn new(config: CityConfig, options: LiveOptions) -> Result<Self, SimError> {
        check_status_interval(options.status_interval_secs)?;
        let city = City::new(config)?;
        check_time("start", city.config().start_micros)?;
        let state = ReadingsState::new(&city, u64::MAX);
        let fleet = Fleet::new(&city, options.status_interval_secs);
        Ok(Self {
            position: city.config().start_micros,
            state,
            fleet,
            options,
            builders: Kind::ALL.iter().map(|&k| TableBuilder::new(k)).collect(),
            status: StatusBuilder::default(),
            city,
        })
    }

    /// The city (its settings, sensors and their places).
    pub fn city(&self) -> &City {
        &self.city
    }

    /// The options.
    pub fn options(&self) -> &LiveOptions {
        &self.options
    }

    /// Start of the next window, µs since the epoch: the start of the simulation, then the
    /// end of the last window.
    pub fn position(&self) -> i64 {
        self.position
    }

    /// The rows of `[position, to_micros)`; the position moves to `to_micros`. A `to_micros`
    /// at or before the position (a clock stepping back) gives an empty window and leaves the
    /// position where it is.
    pub fn advance_to(&mut self, to_micros: i64) -> Result<LiveWindow, SimError> {
        check_time("window end", to_micros)?;
        let from = self.position;
        let mut window = LiveWindow {
            from_micros: from,
            to_micros: from.max(to_micros),
            tables: Vec::new(),
        };
        if to_micros <= from {
            return Ok(window);
        }
        while let Some((sensor, r)) = self.state.next_before(&self.city, Some(to_micros)) {
            if self.options.drop_silent_readings
                && self.fleet.silent_since(sensor, r.time_micros).is_some()
            {
                continue;
            }
            if let Some(b) = self.builders.iter_mut().find(|b| b.kind == r.kind) {
                b.append(&r);
            }
        }
        for b in &mut self.builders {
            if b.rows > 0 {
                window.tables.push((b.kind.table(), b.finish()?));
            }
        }
        self.fleet
            .append_status(&self.city, from, to_micros, &mut self.status);
        if self.status.rows > 0 {
            window.tables.push((STATUS_TABLE, self.status.finish()?));
        }
        self.position = to_micros;
        Ok(window)
    }
}
