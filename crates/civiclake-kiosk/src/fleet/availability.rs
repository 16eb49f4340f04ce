//! Availability: 1 − downtime minutes within opening hours / opening minutes.

use chrono::{NaiveDate, TimeZone};
use serde::Serialize;

use super::liveness::Change;
use super::registry::{OpeningHours, TIME_ZONE};

/// A kiosk's availability over a span.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Availability {
    /// Minutes the kiosk should have been open.
    pub open_minutes: f64,
    /// Of those, minutes it was offline.
    pub down_minutes: f64,
    /// 1 − down / open (None when it should not have been open at all).
    pub availability: Option<f64>,
}

/// The offline spans `[from, to)` of one kiosk from its changes (in time order), cut at
/// `until` for a span still open.
pub fn offline_spans(changes: &[Change], until: i64) -> Vec<(i64, i64)> {
    let mut spans = Vec::new();
    let mut since = None;
    for c in changes {
        match c {
            Change::Offline { at, .. } if since.is_none() => since = Some(*at),
            Change::Online { at, .. } => {
                if let Some(s) = since.take()
                    && *at > s
                {
                    spans.push((s, *at));
                }
            }
            _ => {}
        }
    }
    if let Some(s) = since
        && until > s
    {
        spans.push((s, until));
    }
    spans
}

/// Availability within `[from, to)` of a kiosk open at `hours` and offline during `offline`.
pub fn availability(
    hours: &OpeningHours,
    offline: &[(i64, i64)],
    from: i64,
    to: i64,
) -> Availability {
    let open = hours.open_between(from, to);
    let open_us: i64 = open.iter().map(|(a, b)| b - a).sum();
    let mut down_us = 0;
    for (a, b) in &open {
        for (x, y) in offline {
            let (s, e) = ((*a).max(*x), (*b).min(*y));
            if s < e {
                down_us += e - s;
            }
        }
    }
    let minutes = |us: i64| us as f64 / 60e6;
    Availability {
        open_minutes: minutes(open_us),
        down_minutes: minutes(down_us),
        availability: (open_us > 0).then(|| 1.0 - down_us as f64 / open_us as f64),
    }
}

/// The month `year-month` in Rome as UTC microseconds `[from, to)`.
pub fn month_span(year: i32, month: u32) -> Option<(i64, i64)> {
    let first = NaiveDate::from_ymd_opt(year, month, 1)?;
    let next = if month == 12 {
        NaiveDate::from_ymd_opt(year + 1, 1, 1)?
    } else {
        NaiveDate::from_ymd_opt(year, month + 1, 1)?
    };
    let at = |d: NaiveDate| {
        TIME_ZONE
            .from_local_datetime(&d.and_hms_opt(0, 0, 0)?)
            .earliest()
            .map(|t| t.timestamp_micros())
    };
    Some((at(first)?, at(next)?))
}
