//! The registry: kiosks, their peripherals, opening hours and the catalog of services.

use chrono::{Datelike, NaiveDate, NaiveTime, TimeZone, Weekday};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use super::FleetError;

/// The time zone of opening hours.
pub const TIME_ZONE: Tz = chrono_tz::Europe::Rome;

/// A peripheral of a kiosk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PeripheralKind {
    CardReader,
    Printer,
    Scanner,
    Camera,
}

impl PeripheralKind {
    /// Every kind, in order.
    pub const ALL: [PeripheralKind; 4] = [
        PeripheralKind::CardReader,
        PeripheralKind::Printer,
        PeripheralKind::Scanner,
        PeripheralKind::Camera,
    ];

    /// Its name in heartbeats and tables.
    pub fn as_str(self) -> &'static str {
        match self {
            PeripheralKind::CardReader => "card_reader",
            PeripheralKind::Printer => "printer",
            PeripheralKind::Scanner => "scanner",
            PeripheralKind::Camera => "camera",
        }
    }
}

/// What a service does (decides the fields of its transactions).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceKind {
    /// Payment of pagoPA notices.
    Payment,
    /// A certificate printed.
    Certificate,
    /// A document scanned and uploaded.
    Scan,
    /// A video call with an office.
    VideoCall,
    /// An information lookup.
    Information,
}

impl ServiceKind {
    /// Its name in tables.
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceKind::Payment => "payment",
            ServiceKind::Certificate => "certificate",
            ServiceKind::Scan => "scan",
            ServiceKind::VideoCall => "video_call",
            ServiceKind::Information => "information",
        }
    }
}

/// A service of the catalog: data, not code, so a new service is a new entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    /// Its id (`[a-z0-9_-]`).
    pub id: String,
    /// Its name on the screen.
    pub name: String,
    pub kind: ServiceKind,
    /// The peripherals it needs.
    #[serde(default)]
    pub needs: Vec<PeripheralKind>,
    /// One of the old kiosks' services (kept by the new platform).
    #[serde(default)]
    pub legacy: bool,
}

/// The services the comune's kiosks offer: the old self-service ones and the new ones.
pub fn default_catalog() -> Vec<Service> {
    let s = |id: &str, name: &str, kind, needs: &[PeripheralKind], legacy| Service {
        id: id.into(),
        name: name.into(),
        kind,
        needs: needs.to_vec(),
        legacy,
    };
    use PeripheralKind::*;
    use ServiceKind::*;
    vec![
        s(
            "pagopa",
            "Pay a pagoPA notice",
            Payment,
            &[CardReader],
            true,
        ),
        s(
            "tari",
            "Pay the waste tax (TARI)",
            Payment,
            &[CardReader],
            true,
        ),
        s(
            "canteen",
            "Top up the school canteen",
            Payment,
            &[CardReader],
            true,
        ),
        s(
            "anagrafe-cert",
            "Registry certificates",
            Certificate,
            &[Printer],
            true,
        ),
        s(
            "stato-civile-cert",
            "Civil status certificates",
            Certificate,
            &[Printer],
            true,
        ),
        s("info", "City information", Information, &[], true),
        s(
            "scan-upload",
            "Scan and send a document",
            Scan,
            &[Scanner],
            false,
        ),
        s(
            "video-office",
            "Video call with an office",
            VideoCall,
            &[Camera],
            false,
        ),
    ]
}

/// Opening hours: per weekday, intervals of local time (Europe/Rome), or always open.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpeningHours {
    /// Open around the clock (the weekdays are then ignored).
    #[serde(default)]
    pub always: bool,
    /// `mon`…`sun` → `[["08:00", "13:00"], ["14:00", "19:00"]]`; a missing day is closed.
    #[serde(default)]
    pub days: BTreeMap<String, Vec<[String; 2]>>,
}

const DAYS: [(&str, Weekday); 7] = [
    ("mon", Weekday::Mon),
    ("tue", Weekday::Tue),
    ("wed", Weekday::Wed),
    ("thu", Weekday::Thu),
    ("fri", Weekday::Fri),
    ("sat", Weekday::Sat),
    ("sun", Weekday::Sun),
];

fn hhmm(text: &str, field: &str) -> Result<NaiveTime, FleetError> {
    if text == "24:00" {
        return Ok(NaiveTime::MIN);
    }
    NaiveTime::parse_from_str(text, "%H:%M")
        .map_err(|_| FleetError::field(field, format!("'{text}' is not a time of day HH:MM")))
}

impl OpeningHours {
    /// Open around the clock.
    pub fn always() -> Self {
        Self {
            always: true,
            days: BTreeMap::new(),
        }
    }

    /// The same `intervals` (`("08:00", "19:00")`) on each of `days` (`["mon", ...]`).
    pub fn weekly(days: &[&str], intervals: &[(&str, &str)]) -> Self {
        Self {
            always: false,
            days: days
                .iter()
                .map(|d| {
                    let v = intervals
                        .iter()
                        .map(|(a, b)| [a.to_string(), b.to_string()])
                        .collect();
                    (d.to_string(), v)
                })
                .collect(),
        }
    }

    /// Checks the days and times: known day names, `HH:MM` times, each interval opening
    /// before it closes (`24:00` closes at midnight), intervals of a day not overlapping.
    pub fn check(&self) -> Result<(), FleetError> {
        for (day, intervals) in &self.days {
            if !DAYS.iter().any(|(d, _)| d == day) {
                return Err(FleetError::field(
                    &format!("opening_hours.days.{day}"),
                    "not a day: use mon, tue, wed, thu, fri, sat, sun".into(),
                ));
            }
            let mut spans = Vec::new();
            for (i, [open, close]) in intervals.iter().enumerate() {
                let field = format!("opening_hours.days.{day}[{i}]");
                let (a, b) = (minutes(hhmm(open, &field)?), minutes(hhmm(close, &field)?));
                let b = if b == 0 { 24 * 60 } else { b };
                if a >= b {
                    return Err(FleetError::field(
                        &field,
                        format!("opens at {open}, not before it closes at {close}"),
                    ));
                }
                spans.push((a, b));
            }
            spans.sort_unstable();
            if spans.windows(2).any(|w| w[1].0 < w[0].1) {
                return Err(FleetError::field(
                    &format!("opening_hours.days.{day}"),
                    "intervals overlap".into(),
                ));
            }
        }
        Ok(())
    }

    /// The open intervals, as UTC microseconds `[from, to)`, within `[from, to)`.
    pub fn open_between(&self, from: i64, to: i64) -> Vec<(i64, i64)> {
        if from >= to {
            return Vec::new();
        }
        if self.always {
            return vec![(from, to)];
        }
        let local = |t: i64| {
            chrono::DateTime::from_timestamp_micros(t)
                .map(|d| d.with_timezone(&TIME_ZONE).date_naive())
        };
        let (Some(first), Some(last)) = (local(from), local(to - 1)) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let mut day = first;
        while day <= last {
            let name = DAYS
                .iter()
                .find(|(_, w)| *w == day.weekday())
                .map_or("", |(d, _)| d);
            for [open, close] in self.days.get(name).into_iter().flatten() {
                let (Ok(a), Ok(b)) = (hhmm(open, ""), hhmm(close, "")) else {
                    continue;
                };
                let start = at(day, a);
                let end = if b == NaiveTime::MIN {
                    day.succ_opt().map(|d| at(d, b))
                } else {
                    Some(at(day, b))
                };
                if let (Some(s), Some(e)) = (start, end.flatten()) {
                    let (s, e) = (s.max(from), e.min(to));
                    if s < e {
                        out.push((s, e));
                    }
                }
            }
            let Some(next) = day.succ_opt() else { break };
            day = next;
        }
        out
    }
}

fn minutes(t: NaiveTime) -> u32 {
    use chrono::Timelike;
    t.hour() * 60 + t.minute()
}

/// `day` at local `time` in UTC microseconds (the earlier instant when the clocks go back,
/// the hour after when they skip it).
fn at(day: NaiveDate, time: NaiveTime) -> Option<i64> {
    let local = day.and_time(time);
    let resolved = TIME_ZONE.from_local_datetime(&local);
    let dt = resolved.earliest().or_else(|| {
        TIME_ZONE
            .from_local_datetime(&(local + chrono::Duration::hours(1)))
            .earliest()
    })?;
    Some(dt.timestamp_micros())
}

/// A peripheral as registered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Peripheral {
    pub kind: PeripheralKind,
    /// Make and model, free text.
    #[serde(default)]
    pub model: String,
}

/// A kiosk of the registry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Kiosk {
    /// `K01`…: letters, digits, `-` and `_`, at most 32.
    pub id: String,
    pub name: String,
    /// WGS84 longitude.
    pub lon: f64,
    /// WGS84 latitude.
    pub lat: f64,
    /// The place that hosts it (a library, the registry office, a cemetery).
    #[serde(default)]
    pub host_site: String,
    #[serde(default)]
    pub opening_hours: OpeningHours,
    #[serde(default)]
    pub peripherals: Vec<Peripheral>,
    /// Ids of the catalog's services it offers.
    #[serde(default)]
    pub services: Vec<String>,
    #[serde(default)]
    pub software_version: String,
}

/// Whether `id` is a valid kiosk id.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 32
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

impl Kiosk {
    /// Checks every field against the `catalog`; the first problem is named with its field.
    pub fn check(&self, catalog: &[Service]) -> Result<(), FleetError> {
        if !valid_id(&self.id) {
            return Err(FleetError::field(
                "id",
                format!(
                    "'{}' is not a kiosk id: 1 to 32 letters, digits, '-' or '_'",
                    self.id
                ),
            ));
        }
        if self.name.trim().is_empty() {
            return Err(FleetError::field("name", "is empty".into()));
        }
        if !(self.lon.is_finite() && (-180.0..=180.0).contains(&self.lon)) {
            return Err(FleetError::field(
                "lon",
                format!("{} is not a longitude", self.lon),
            ));
        }
        if !(self.lat.is_finite() && (-90.0..=90.0).contains(&self.lat)) {
            return Err(FleetError::field(
                "lat",
                format!("{} is not a latitude", self.lat),
            ));
        }
        self.opening_hours.check()?;
        let mut seen = Vec::new();
        for (i, p) in self.peripherals.iter().enumerate() {
            if seen.contains(&p.kind) {
                return Err(FleetError::field(
                    &format!("peripherals[{i}]"),
                    format!("a second {}", p.kind.as_str()),
                ));
            }
            seen.push(p.kind);
        }
        for (i, id) in self.services.iter().enumerate() {
            let field = format!("services[{i}]");
            let Some(service) = catalog.iter().find(|s| s.id == *id) else {
                return Err(FleetError::field(
                    &field,
                    format!("'{id}' is not in the service catalog"),
                ));
            };
            if let Some(missing) = service.needs.iter().find(|k| !seen.contains(k)) {
                return Err(FleetError::field(
                    &field,
                    format!(
                        "'{id}' needs a {}, which the kiosk does not have",
                        missing.as_str()
                    ),
                ));
            }
        }
        Ok(())
    }
}
