//! The sensor kinds, their tables and fields.

use arrow::datatypes::{DataType, Schema, SchemaRef};
use civiclake_core::{field_column, tag_column, time_column};
use std::sync::Arc;

/// The most measured fields a kind has (`air`: six).
pub const MAX_FIELDS: usize = 6;

/// A kind of sensor; each kind is one table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// Air quality: pm10, pm25, no2, o3 (µg/m³), temperature (°C), humidity (%).
    Air,
    /// Noise: laeq (dB(A)).
    Noise,
    /// Traffic: vehicle_count (vehicles in the interval), mean_speed (km/h).
    Traffic,
    /// Parking: occupancy (%).
    Parking,
    /// Waste bins: fill_level (%), rising until the bin is emptied.
    Waste,
}

/// How one measured field behaves.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FieldSpec {
    /// Column name.
    pub name: &'static str,
    /// Lowest value.
    pub min: f64,
    /// Highest value (for an integer count: the highest hourly rate).
    pub max: f64,
    /// Mean level.
    pub base: f64,
    /// Amplitude of the daily cycle.
    pub amplitude: f64,
    /// Local hour (Europe/Rome, winter time) of the cycle's peak.
    pub peak_hour: f64,
    /// Cycle period in hours: 24, or 12 for two rush hours a day.
    pub period_hours: f64,
    /// Random-walk step per minute (standard deviation).
    pub step: f64,
    /// The walk stays within ±this of the cycle.
    pub walk_bound: f64,
    /// Steady rise per hour (waste bins filling); the value drops near `min` when it reaches
    /// `max` (the bin is emptied).
    pub fill_per_hour: f64,
    /// An integer count: the walk is an hourly rate, the value the count in the interval.
    pub count: bool,
}

impl FieldSpec {
    const fn walk(
        name: &'static str,
        (min, max): (f64, f64),
        (base, amplitude, peak_hour, period_hours): (f64, f64, f64, f64),
        (step, walk_bound): (f64, f64),
    ) -> Self {
        Self {
            name,
            min,
            max,
            base,
            amplitude,
            peak_hour,
            period_hours,
            step,
            walk_bound,
            fill_per_hour: 0.0,
            count: false,
        }
    }

    /// The Arrow type of the column.
    pub fn data_type(&self) -> DataType {
        if self.count {
            DataType::Int64
        } else {
            DataType::Float64
        }
    }

    /// The bounds of the values written, for readings `interval_secs` apart.
    pub fn bounds(&self, interval_secs: u64) -> (f64, f64) {
        if self.count {
            let scale = interval_secs as f64 / 3600.0;
            ((self.min * scale).floor(), (self.max * scale).ceil())
        } else {
            (self.min, self.max)
        }
    }
}

const AIR: [FieldSpec; 6] = [
    FieldSpec::walk("pm10", (0.0, 300.0), (25.0, 10.0, 8.0, 24.0), (1.0, 20.0)),
    FieldSpec::walk("pm25", (0.0, 200.0), (15.0, 6.0, 8.0, 24.0), (0.7, 12.0)),
    FieldSpec::walk("no2", (0.0, 400.0), (35.0, 20.0, 8.0, 12.0), (2.0, 25.0)),
    FieldSpec::walk("o3", (0.0, 300.0), (60.0, 30.0, 15.0, 24.0), (2.0, 25.0)),
    FieldSpec::walk(
        "temperature",
        (-15.0, 45.0),
        (14.0, 6.0, 15.0, 24.0),
        (0.1, 4.0),
    ),
    FieldSpec::walk(
        "humidity",
        (0.0, 100.0),
        (65.0, 15.0, 4.0, 24.0),
        (0.8, 15.0),
    ),
];

const NOISE: [FieldSpec; 1] = [FieldSpec::walk(
    "laeq",
    (30.0, 110.0),
    (58.0, 10.0, 13.0, 24.0),
    (0.8, 8.0),
)];

const TRAFFIC: [FieldSpec; 2] = [
    FieldSpec {
        count: true,
        ..FieldSpec::walk(
            "vehicle_count",
            (0.0, 2400.0),
            (700.0, 550.0, 8.0, 12.0),
            (40.0, 300.0),
        )
    },
    FieldSpec::walk(
        "mean_speed",
        (0.0, 90.0),
        (40.0, 12.0, 3.0, 12.0),
        (1.5, 10.0),
    ),
];

const PARKING: [FieldSpec; 1] = [FieldSpec::walk(
    "occupancy",
    (0.0, 100.0),
    (55.0, 30.0, 11.0, 24.0),
    (1.5, 20.0),
)];

const WASTE: [FieldSpec; 1] = [FieldSpec {
    fill_per_hour: 2.0,
    ..FieldSpec::walk(
        "fill_level",
        (0.0, 100.0),
        (0.0, 0.0, 0.0, 24.0),
        (0.05, 100.0),
    )
}];

impl Kind {
    /// Every kind, in table order.
    pub const ALL: [Kind; 5] = [
        Kind::Air,
        Kind::Noise,
        Kind::Traffic,
        Kind::Parking,
        Kind::Waste,
    ];

    /// The table the kind's readings go to.
    pub fn table(self) -> &'static str {
        match self {
            Kind::Air => "air",
            Kind::Noise => "noise",
            Kind::Traffic => "traffic",
            Kind::Parking => "parking",
            Kind::Waste => "waste",
        }
    }

    /// The measured fields (without `battery` and `status`).
    pub fn fields(self) -> &'static [FieldSpec] {
        match self {
            Kind::Air => &AIR,
            Kind::Noise => &NOISE,
            Kind::Traffic => &TRAFFIC,
            Kind::Parking => &PARKING,
            Kind::Waste => &WASTE,
        }
    }

    /// The table's schema in the lake's conventions: `time`, tags `sensor` and `district`,
    /// the measured fields, `battery` (float) and `status` (string).
    pub fn schema(self) -> SchemaRef {
        let mut columns = vec![time_column(), tag_column("sensor"), tag_column("district")];
        columns.extend(
            self.fields()
                .iter()
                .map(|f| field_column(f.name, f.data_type())),
        );
        columns.push(field_column("battery", DataType::Float64));
        columns.push(field_column("status", DataType::Utf8));
        Arc::new(Schema::new(columns))
    }
}
