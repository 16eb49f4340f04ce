//! Heatmap panels: hour of day (columns) × day (rows), cells coloured by value.

use std::collections::BTreeMap;

use chrono::{Datelike, NaiveDate};
use plotters::coord::Shift;
use plotters::prelude::*;

use super::axis::{ZONE_NAME, local_day_hour};
use super::data::Frame;
use super::style::*;
use super::{
    AxisSpec, COLOUR_BAR_AREA_W, build_chart, chart_layout, colour_bounds, draw_colour_bar,
    draw_err, draw_no_data,
};
use crate::error::DashboardError;
use crate::model::Panel;

/// Mean value per (row, hour).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Heatmap {
    /// Row labels, top to bottom.
    pub(crate) rows: Vec<String>,
    /// `cells[row][hour]`.
    pub(crate) cells: Vec<[Option<f64>; 24]>,
    /// Whether hours are local (computed here from `time`).
    pub(crate) local_hours: bool,
}

const WEEKDAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

/// Monday = 0 … Sunday = 6 for an English or Italian weekday name (full or three letters).
fn weekday_index(text: &str) -> Option<usize> {
    let t = text.trim().to_lowercase();
    const NAMES: [[&str; 4]; 7] = [
        ["mon", "monday", "lun", "lunedì"],
        ["tue", "tuesday", "mar", "martedì"],
        ["wed", "wednesday", "mer", "mercoledì"],
        ["thu", "thursday", "gio", "giovedì"],
        ["fri", "friday", "ven", "venerdì"],
        ["sat", "saturday", "sab", "sabato"],
        ["sun", "sunday", "dom", "domenica"],
    ];
    NAMES.iter().position(|names| {
        names.contains(&t.as_str()) || names.iter().any(|n| t == n.replace('ì', "i"))
    })
}

/// Cells of `time, value` (local day and hour, means per cell) or `day, hour, value`.
pub(crate) fn prepare(frame: &Frame<'_>) -> Result<Heatmap, DashboardError> {
    let (day_idx, hour_idx, time_idx) = (frame.find("day"), frame.find("hour"), frame.find("time"));
    let value_idx = frame.find("value");
    let missing = || {
        frame.err(format!(
            "a heatmap panel needs columns `time, value` (hours in {ZONE_NAME} time are computed \
             here) or `day, hour, value`; the result has {}",
            frame.names()
        ))
    };
    let value_idx = value_idx.ok_or_else(missing)?;
    let values = frame.numbers(value_idx)?;
    let mut sums: BTreeMap<(usize, usize), (f64, u32)> = BTreeMap::new();
    let mut add = |row: usize, hour: usize, v: f64| {
        let e = sums.entry((row, hour)).or_insert((0.0, 0));
        e.0 += v;
        e.1 += 1;
    };

    let (rows, local_hours) = match (day_idx, hour_idx, time_idx) {
        (Some(day_idx), Some(hour_idx), _) => {
            let hours = frame.numbers(hour_idx)?;
            let mut row_of: Vec<Option<usize>> = Vec::with_capacity(values.len());
            let labels: Vec<String>;
            if frame.is_temporal(day_idx) {
                let dates: Vec<Option<NaiveDate>> = frame
                    .times(day_idx)?
                    .into_iter()
                    .map(|t| t.and_then(local_day_hour).map(|(d, _)| d))
                    .collect();
                let distinct: Vec<NaiveDate> = {
                    let mut d: Vec<NaiveDate> = dates.iter().flatten().copied().collect();
                    d.sort_unstable();
                    d.dedup();
                    d
                };
                row_of.extend(
                    dates
                        .iter()
                        .map(|d| d.and_then(|d| distinct.binary_search(&d).ok())),
                );
                labels = distinct
                    .iter()
                    .map(|d| d.format("%a %d %b").to_string())
                    .collect();
            } else if frame.is_numeric(day_idx) {
                // date_part('dow', …): 0 = Sunday … 6 = Saturday; rows Monday first.
                for d in frame.numbers(day_idx)? {
                    let idx = match d {
                        Some(d) if d.fract() == 0.0 && (0.0..=6.0).contains(&d) => {
                            (d as usize + 6) % 7
                        }
                        Some(d) => {
                            return Err(frame.err(format!(
                                "a numeric `day` is a day of the week, 0 (Sunday) to 6 \
                                 (Saturday) as date_part('dow', …) gives; found {d}"
                            )));
                        }
                        None => {
                            row_of.push(None);
                            continue;
                        }
                    };
                    row_of.push(Some(idx));
                }
                labels = WEEKDAYS.iter().map(|s| s.to_string()).collect();
            } else {
                let texts = frame.texts(day_idx)?;
                if texts.iter().flatten().all(|t| weekday_index(t).is_some()) {
                    row_of.extend(texts.iter().map(|t| t.as_deref().and_then(weekday_index)));
                    labels = WEEKDAYS.iter().map(|s| s.to_string()).collect();
                } else {
                    let mut order: Vec<String> = Vec::new();
                    for t in &texts {
                        row_of.push(t.as_ref().map(|t| {
                            order.iter().position(|o| o == t).unwrap_or_else(|| {
                                order.push(t.clone());
                                order.len() - 1
                            })
                        }));
                    }
                    labels = order;
                }
            }
            for (row, (r, (h, v))) in row_of.iter().zip(hours.iter().zip(&values)).enumerate() {
                let (Some(r), Some(h), Some(v)) = (r, h, v) else {
                    continue;
                };
                if h.fract() != 0.0 || !(0.0..=23.0).contains(h) {
                    return Err(frame.err(format!(
                        "`hour` must be a whole number from 0 to 23; row {} has {h}",
                        row + 1
                    )));
                }
                add(*r, *h as usize, *v);
            }
            (labels, false)
        }
        (_, _, Some(time_idx)) if frame.is_temporal(time_idx) => {
            let times = frame.times(time_idx)?;
            let cells: Vec<Option<(NaiveDate, u32)>> =
                times.iter().map(|t| t.and_then(local_day_hour)).collect();
            let mut dates: Vec<NaiveDate> = cells.iter().flatten().map(|(d, _)| *d).collect();
            dates.sort_unstable();
            dates.dedup();
            for (cell, v) in cells.iter().zip(&values) {
                let (Some((d, h)), Some(v)) = (cell, v) else {
                    continue;
                };
                if let Ok(r) = dates.binary_search(d) {
                    add(r, *h as usize, *v);
                }
            }
            let labels = dates
                .iter()
                .map(|d| {
                    if dates.len() > 14 && d.day() != 1 {
                        d.format("%d %b").to_string()
                    } else {
                        d.format("%a %d %b").to_string()
                    }
                })
                .collect();
            (labels, true)
        }
        _ => return Err(missing()),
    };
    let mut cells = vec![[None; 24]; rows.len()];
    for ((r, h), (sum, n)) in sums {
        if let Some(row) = cells.get_mut(r) {
            row[h] = Some(sum / f64::from(n));
        }
    }
    // Weekday rows without any value are kept (the week reads whole); dates only appear
    // when they have data.
    Ok(Heatmap {
        rows,
        cells,
        local_hours,
    })
}

pub(crate) fn draw<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    panel: &Panel,
    heat: &Heatmap,
) -> Result<(), DashboardError> {
    let err = draw_err(panel);
    let (w, _) = area.dim_in_pixel();
    let (chart_area, bar_area) =
        area.split_horizontally(w.saturating_sub(COLOUR_BAR_AREA_W.min(w / 4)));
    let values = heat.cells.iter().flatten().flatten().copied();
    let data = super::extent(values);
    let n = heat.rows.len();
    let mut x = AxisSpec {
        lo: 0.0,
        hi: 24.0,
        ticks: Vec::new(),
        desc: if heat.local_hours {
            format!("Hour of day ({ZONE_NAME})")
        } else {
            "Hour of day".to_string()
        },
    };
    let plot_h = chart_area.dim_in_pixel().1.saturating_sub(50);
    let every = ((18.0 * n as f64 / plot_h.max(1) as f64).ceil() as usize).max(1);
    let y = AxisSpec {
        lo: 0.0,
        hi: n.max(1) as f64,
        // Row 0 at the top: its centre is at n - 0.5.
        ticks: heat
            .rows
            .iter()
            .enumerate()
            .filter(|(i, _)| i % every == 0)
            .map(|(i, l)| ((n - i) as f64 - 0.5, l.clone()))
            .collect(),
        desc: String::new(),
    };
    // An hour label every 3 hours, or fewer where the plot is narrow.
    let plot_w =
        chart_layout(chart_area.dim_in_pixel(), &x, &y).plot_width(chart_area.dim_in_pixel().0);
    let step = match plot_w / 28 {
        8.. => 3,
        4..=7 => 6,
        _ => 12,
    };
    x.ticks = (0..24)
        .step_by(step)
        .map(|h| (f64::from(h as u32), format!("{h:02}")))
        .collect();
    let mut chart = build_chart(&chart_area, panel, &x, &y)?;
    let Some(data) = data else {
        return draw_no_data(&chart.plotting_area().strip_coord_spec(), panel);
    };
    let (lo, hi) = colour_bounds(panel, Some(data));
    let mut missing = false;
    for (i, row) in heat.cells.iter().enumerate() {
        let top = (n - i) as f64;
        for (hour, cell) in row.iter().enumerate() {
            let colour = match cell {
                Some(v) => viridis((v - lo) / (hi - lo)),
                None => {
                    missing = true;
                    EMPTY_FILL
                }
            };
            let x0 = hour as f64;
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(x0, top - 1.0), (x0 + 1.0, top)],
                    colour.filled(),
                )))
                .map_err(&err)?;
        }
    }
    // Thin white lines between the cells.
    for hour in 1..24 {
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(f64::from(hour), 0.0), (f64::from(hour), n as f64)],
                BACKGROUND.stroke_width(1),
            )))
            .map_err(&err)?;
    }
    for r in 1..n {
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(0.0, r as f64), (24.0, r as f64)],
                BACKGROUND.stroke_width(1),
            )))
            .map_err(&err)?;
    }
    draw_colour_bar(&bar_area, panel, lo, hi, missing.then_some("grey: no data"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weekday_names() {
        assert_eq!(weekday_index("Mon"), Some(0));
        assert_eq!(weekday_index("sunday"), Some(6));
        assert_eq!(weekday_index("Lunedì"), Some(0));
        assert_eq!(weekday_index("venerdi"), Some(4));
        assert_eq!(weekday_index("Centro"), None);
    }
}
