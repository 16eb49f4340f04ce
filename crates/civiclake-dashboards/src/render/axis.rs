//! Axis ticks: "nice" numeric scales and time ticks aligned in Europe/Rome local time.

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Timelike, Utc};
use chrono_tz::Europe::Rome;
use chrono_tz::Tz;

/// The time zone of every time shown.
pub(crate) const ZONE: Tz = Rome;
/// Its name, as shown on time axes.
pub(crate) const ZONE_NAME: &str = "Europe/Rome";

/// A numeric axis: bounds, step and tick values.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Scale {
    pub(crate) lo: f64,
    pub(crate) hi: f64,
    pub(crate) step: f64,
    pub(crate) ticks: Vec<f64>,
}

impl Scale {
    /// The tick label of `v`.
    pub(crate) fn label(&self, v: f64) -> String {
        let largest = self.lo.abs().max(self.hi.abs());
        super::style::format_tick(v, self.step, largest)
    }
}

/// 1, 2, 2.5, 5 × 10^k: the smallest such step ≥ `raw`.
fn nice_step(raw: f64) -> f64 {
    if !(raw.is_finite() && raw > 0.0) {
        return 1.0;
    }
    let mag = 10f64.powf(raw.log10().floor());
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if m * mag >= raw * (1.0 - 1e-9) {
            return m * mag;
        }
    }
    10.0 * mag
}

/// A scale over `lo..hi` with at most about `max_ticks` ticks. Bounds not pinned are
/// widened to whole steps; pinned ones stay as given.
pub(crate) fn nice_scale(
    lo: f64,
    hi: f64,
    max_ticks: usize,
    pin_lo: Option<f64>,
    pin_hi: Option<f64>,
) -> Scale {
    let (mut lo, mut hi) = (pin_lo.unwrap_or(lo), pin_hi.unwrap_or(hi));
    if !lo.is_finite() || !hi.is_finite() {
        (lo, hi) = (0.0, 1.0);
    }
    if hi < lo {
        std::mem::swap(&mut lo, &mut hi);
    }
    if hi - lo < f64::EPSILON * lo.abs().max(1.0) {
        let pad = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
        if pin_lo.is_none() {
            lo -= pad;
        }
        if pin_hi.is_none() || pin_lo.is_some() {
            hi += pad;
        }
    }
    let step = nice_step((hi - lo) / max_ticks.max(2) as f64);
    if pin_lo.is_none() {
        lo = (lo / step).floor() * step;
    }
    if pin_hi.is_none() {
        hi = (hi / step).ceil() * step;
    }
    let first = (lo / step - 1e-9).ceil() as i64;
    let last = (hi / step + 1e-9).floor() as i64;
    let ticks = (first..=last).map(|k| k as f64 * step).collect();
    Scale {
        lo,
        hi,
        step,
        ticks,
    }
}

/// How far apart time ticks are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TimeStep {
    Seconds(i64),
    Hours(u32),
    Days(u32),
    Weeks(u32),
    Months(u32),
}

const STEPS: [TimeStep; 22] = [
    TimeStep::Seconds(1),
    TimeStep::Seconds(5),
    TimeStep::Seconds(15),
    TimeStep::Seconds(30),
    TimeStep::Seconds(60),
    TimeStep::Seconds(300),
    TimeStep::Seconds(600),
    TimeStep::Seconds(900),
    TimeStep::Seconds(1800),
    TimeStep::Hours(1),
    TimeStep::Hours(2),
    TimeStep::Hours(3),
    TimeStep::Hours(6),
    TimeStep::Hours(12),
    TimeStep::Days(1),
    TimeStep::Days(2),
    TimeStep::Weeks(1),
    TimeStep::Weeks(2),
    TimeStep::Months(1),
    TimeStep::Months(3),
    TimeStep::Months(6),
    TimeStep::Months(12),
];

impl TimeStep {
    fn approx_ms(self) -> i64 {
        match self {
            Self::Seconds(s) => s * 1000,
            Self::Hours(h) => i64::from(h) * 3_600_000,
            Self::Days(d) => i64::from(d) * 86_400_000,
            Self::Weeks(w) => i64::from(w) * 7 * 86_400_000,
            Self::Months(m) => i64::from(m) * 30 * 86_400_000,
        }
    }
}

/// Ticks of a time axis from `from_ms` to `to_ms` (epoch milliseconds), at most about
/// `max_ticks`, with their labels in local time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TimeTicks {
    pub(crate) ticks: Vec<(i64, String)>,
}

fn local(ms: i64) -> Option<DateTime<Tz>> {
    DateTime::<Utc>::from_timestamp_millis(ms).map(|t| t.with_timezone(&ZONE))
}

/// Local midnight of `date` as epoch milliseconds (the first instant of the day).
fn midnight_ms(date: NaiveDate) -> Option<i64> {
    let naive = date.and_hms_opt(0, 0, 0)?;
    ZONE.from_local_datetime(&naive)
        .earliest()
        .map(|t| t.timestamp_millis())
}

pub(crate) fn time_ticks(from_ms: i64, to_ms: i64, max_ticks: usize) -> TimeTicks {
    let span = (to_ms - from_ms).max(1);
    let max_ticks = max_ticks.max(2) as i64;
    let step = STEPS
        .iter()
        .copied()
        .find(|s| span / s.approx_ms() <= max_ticks)
        .unwrap_or(TimeStep::Months(12));
    let mut ticks = Vec::new();
    match step {
        TimeStep::Seconds(s) => {
            // Europe/Rome is a whole number of hours from UTC, so steps up to an hour
            // aligned in UTC are aligned in local time too.
            let ms = s * 1000;
            let mut t = from_ms.div_euclid(ms) * ms;
            if t < from_ms {
                t += ms;
            }
            while t <= to_ms {
                if let Some(l) = local(t) {
                    let label = if l.hour() == 0 && l.minute() == 0 && l.second() == 0 {
                        l.format("%d %b").to_string()
                    } else if s < 60 {
                        l.format("%H:%M:%S").to_string()
                    } else {
                        l.format("%H:%M").to_string()
                    };
                    ticks.push((t, label));
                }
                t += ms;
            }
        }
        TimeStep::Hours(h) => {
            let hour = 3_600_000;
            let mut t = from_ms.div_euclid(hour) * hour;
            if t < from_ms {
                t += hour;
            }
            while t <= to_ms {
                if let Some(l) = local(t)
                    && l.hour() % h == 0
                {
                    let label = if l.hour() == 0 {
                        l.format("%d %b").to_string()
                    } else {
                        l.format("%H:%M").to_string()
                    };
                    // The repeated hour when clocks go back would give the same label twice.
                    if ticks
                        .last()
                        .is_none_or(|(_, last): &(i64, String)| *last != label)
                    {
                        ticks.push((t, label));
                    }
                }
                t += hour;
            }
        }
        TimeStep::Days(_) | TimeStep::Weeks(_) | TimeStep::Months(_) => {
            let Some(start) = local(from_ms) else {
                return TimeTicks { ticks };
            };
            let mut date = start.date_naive();
            let epoch = NaiveDate::from_ymd_opt(1970, 1, 5).unwrap_or_default(); // a Monday
            while let Some(t) = midnight_ms(date) {
                if t > to_ms {
                    break;
                }
                let days = (date - epoch).num_days();
                let keep = match step {
                    TimeStep::Days(d) => days.rem_euclid(i64::from(d)) == 0,
                    TimeStep::Weeks(w) => days.rem_euclid(7 * i64::from(w)) == 0,
                    TimeStep::Months(m) => date.day() == 1 && (date.month0() % m) == 0,
                    _ => false,
                };
                if keep && t >= from_ms {
                    let label = match step {
                        TimeStep::Months(_) => date.format("%b %Y").to_string(),
                        _ => date.format("%d %b").to_string(),
                    };
                    ticks.push((t, label));
                }
                let Some(next) = date.succ_opt() else { break };
                date = next;
            }
        }
    }
    TimeTicks { ticks }
}

/// The time axis description: the zone and the dates covered.
pub(crate) fn time_axis_desc(from_ms: i64, to_ms: i64) -> String {
    match (local(from_ms), local(to_ms - 1)) {
        (Some(a), Some(b)) if a.date_naive() == b.date_naive() => {
            format!("{ZONE_NAME} time, {}", a.format("%a %d %b %Y"))
        }
        (Some(a), Some(b)) => format!(
            "{ZONE_NAME} time, {} – {}",
            a.format("%d %b %Y %H:%M"),
            b.format("%d %b %Y %H:%M")
        ),
        _ => format!("{ZONE_NAME} time"),
    }
}

/// A timestamp in local time for tables: `2026-05-04 14:00:00`.
pub(crate) fn local_datetime(ms: i64) -> String {
    match local(ms) {
        Some(l) if l.timestamp_subsec_millis() == 0 => l.format("%Y-%m-%d %H:%M:%S").to_string(),
        Some(l) => l.format("%Y-%m-%d %H:%M:%S%.3f").to_string(),
        None => ms.to_string(),
    }
}

/// The local date and hour of an instant.
pub(crate) fn local_day_hour(ms: i64) -> Option<(NaiveDate, u32)> {
    local(ms).map(|l| (l.date_naive(), l.hour()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(text: &str) -> i64 {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .timestamp_millis()
    }

    #[test]
    fn nice_scales() {
        let s = nice_scale(3.2, 47.9, 6, None, None);
        assert_eq!((s.lo, s.hi, s.step), (0.0, 50.0, 10.0));
        assert_eq!(s.ticks, vec![0.0, 10.0, 20.0, 30.0, 40.0, 50.0]);
        let s = nice_scale(3.2, 47.9, 6, Some(0.0), Some(45.0));
        assert_eq!((s.lo, s.hi), (0.0, 45.0));
        assert_eq!(s.ticks.last(), Some(&40.0));
        let s = nice_scale(5.0, 5.0, 5, None, None);
        assert!(s.lo < 5.0 && s.hi > 5.0);
        let s = nice_scale(0.0, 0.0, 5, None, None);
        assert_eq!((s.lo, s.hi), (-1.0, 1.0));
        assert_eq!(s.label(0.5), "0.5");
    }

    #[test]
    fn day_ticks_in_local_time() {
        // 2026-05-04 00:00 in Rome is 22:00 UTC the day before (CEST, UTC+2).
        let t = time_ticks(ms("2026-05-03T22:00:00Z"), ms("2026-05-04T22:00:00Z"), 8);
        let labels: Vec<&str> = t.ticks.iter().map(|(_, l)| l.as_str()).collect();
        assert_eq!(
            labels,
            [
                "04 May", "03:00", "06:00", "09:00", "12:00", "15:00", "18:00", "21:00", "05 May"
            ]
        );
        assert_eq!(t.ticks[0].0, ms("2026-05-03T22:00:00Z"));
    }

    #[test]
    fn ticks_across_the_autumn_clock_change() {
        // 25 Oct 2026: clocks go back at 03:00 CEST to 02:00 CET.
        let t = time_ticks(ms("2026-10-24T22:00:00Z"), ms("2026-10-25T23:00:00Z"), 10);
        let labels: Vec<&str> = t.ticks.iter().map(|(_, l)| l.as_str()).collect();
        assert_eq!(
            labels,
            [
                "25 Oct", "03:00", "06:00", "09:00", "12:00", "15:00", "18:00", "21:00", "26 Oct"
            ]
        );
        assert_eq!(t.ticks.last().unwrap().0, ms("2026-10-25T23:00:00Z"));
    }

    #[test]
    fn week_and_month_ticks() {
        let t = time_ticks(ms("2026-05-01T00:00:00Z"), ms("2026-05-31T00:00:00Z"), 6);
        let labels: Vec<&str> = t.ticks.iter().map(|(_, l)| l.as_str()).collect();
        assert_eq!(labels, ["04 May", "11 May", "18 May", "25 May"]);
        let t = time_ticks(ms("2026-01-01T00:00:00Z"), ms("2026-12-31T00:00:00Z"), 6);
        let labels: Vec<&str> = t.ticks.iter().map(|(_, l)| l.as_str()).collect();
        assert_eq!(labels, ["Apr 2026", "Jul 2026", "Oct 2026"]);
        let t = time_ticks(ms("2026-05-04T10:00:00Z"), ms("2026-05-04T11:00:00Z"), 4);
        let labels: Vec<&str> = t.ticks.iter().map(|(_, l)| l.as_str()).collect();
        assert_eq!(labels, ["12:00", "12:15", "12:30", "12:45", "13:00"]);
    }

    #[test]
    fn descriptions() {
        assert_eq!(
            time_axis_desc(ms("2026-05-03T22:00:00Z"), ms("2026-05-04T22:00:00Z")),
            "Europe/Rome time, Mon 04 May 2026"
        );
        assert_eq!(
            local_datetime(ms("2026-05-04T10:00:00Z")),
            "2026-05-04 12:00:00"
        );
    }
}
