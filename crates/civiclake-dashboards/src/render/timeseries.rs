//! Time series panels: lines over the request's time range, optional min–max bands.

use std::collections::BTreeMap;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::axis::{self, nice_scale, time_ticks};
use super::data::Frame;
use super::style::*;
use super::{
    AxisSpec, LegendEntry, Output, Swatch, build_chart, draw_err, draw_legend, draw_line,
    legend_height,
};
use crate::error::DashboardError;
use crate::model::Panel;
use crate::request::PanelRequest;

/// The lower and upper bound columns of a band, read as numbers.
type BandColumns = Option<(Vec<Option<f64>>, Vec<Option<f64>>)>;

/// One row of a series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Point {
    pub(crate) t: i64,
    pub(crate) v: Option<f64>,
    /// The band around the value (`min`, `max` columns), when given.
    pub(crate) band: Option<(f64, f64)>,
}

/// One line.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Series {
    pub(crate) name: String,
    /// Ordered by time, within the request's range.
    pub(crate) points: Vec<Point>,
    pub(crate) has_band: bool,
}

/// Reads `time` + numeric columns (wide: one series per column, `<col>_min`/`<col>_max`
/// or, with one value column, `min`/`max` as its band) or `time, series, value` (long,
/// optional `min`, `max`).
pub(crate) fn prepare(
    frame: &Frame<'_>,
    req: &PanelRequest,
) -> Result<Vec<Series>, DashboardError> {
    let time_idx = frame.require("time", "a timestamp")?;
    if !frame.is_temporal(time_idx) {
        return Err(frame.err(format!(
            "column `time` must be a timestamp, not {}",
            frame.data_type(time_idx)
        )));
    }
    let times = frame.times(time_idx)?;
    let (from, to) = (req.from.timestamp_millis(), req.to.timestamp_millis());
    let in_range = |t: &Option<i64>| t.filter(|t| (from..=to).contains(t));

    let band_of = |lo: Option<usize>, hi: Option<usize>| -> Result<BandColumns, DashboardError> {
        match (lo, hi) {
            (Some(l), Some(h)) => Ok(Some((frame.numbers(l)?, frame.numbers(h)?))),
            (None, None) => Ok(None),
            (Some(i), None) | (None, Some(i)) => Err(frame.err(format!(
                "column `{}` needs its partner: a band is drawn from both a min and a max column",
                frame.schema.field(i).name()
            ))),
        }
    };
    let zip_band = |band: &BandColumns, row: usize| {
        band.as_ref().and_then(|(l, h)| match (l[row], h[row]) {
            (Some(a), Some(b)) => Some((a.min(b), a.max(b))),
            _ => None,
        })
    };

    let mut out = Vec::new();
    if let Some(series_idx) = frame.find("series") {
        let value_idx = frame.require(
            "value",
            "numbers; with a `series` column the result is long: time, series, value",
        )?;
        let names = frame.texts(series_idx)?;
        let values = frame.numbers(value_idx)?;
        let band = band_of(frame.find("min"), frame.find("max"))?;
        let mut by_name: BTreeMap<String, Vec<Point>> = BTreeMap::new();
        for (row, t) in times.iter().enumerate() {
            let Some(t) = in_range(t) else { continue };
            let name = names[row].clone().unwrap_or_else(|| "(null)".to_string());
            by_name.entry(name).or_default().push(Point {
                t,
                v: values[row],
                band: zip_band(&band, row),
            });
        }
        for (name, mut points) in by_name {
            points.sort_by_key(|p| p.t);
            out.push(Series {
                name,
                has_band: band.is_some(),
                points,
            });
        }
        return Ok(out);
    }

    let names = frame.field_names();
    let lower: Vec<String> = names.iter().map(|n| n.to_ascii_lowercase()).collect();
    let is_band_of = |i: usize, base: &str| {
        lower[i] == format!("{base}_min") || lower[i] == format!("{base}_max")
    };
    let value_cols: Vec<usize> = (0..names.len())
        .filter(|&i| i != time_idx && lower[i] != "min" && lower[i] != "max")
        .filter(|&i| !(0..names.len()).any(|j| j != i && j != time_idx && is_band_of(i, &lower[j])))
        .collect();
    if value_cols.is_empty() {
        return Err(frame.err(format!(
            "a timeseries panel needs a numeric column besides `time` (or the long form \
             time, series, value); the result has {}",
            frame.names()
        )));
    }
    for &i in &value_cols {
        if !frame.is_numeric(i) {
            return Err(frame.err(format!(
                "column `{}` is {}, not a number: name a text column `series` for one line per \
                 value (time, series, value)",
                names[i],
                frame.data_type(i)
            )));
        }
    }
    let shared_band = band_of(frame.find("min"), frame.find("max"))?;
    if shared_band.is_some() && value_cols.len() > 1 {
        return Err(frame.err(
            "columns `min`/`max` make a band around a single value column; with several, \
             name them <column>_min and <column>_max",
        ));
    }
    for &i in &value_cols {
        let own = band_of(
            frame.find(&format!("{}_min", names[i])),
            frame.find(&format!("{}_max", names[i])),
        )?;
        let band = if own.is_some() {
            own
        } else {
            shared_band.clone()
        };
        let values = frame.numbers(i)?;
        let mut points: Vec<Point> = times
            .iter()
            .enumerate()
            .filter_map(|(row, t)| {
                in_range(t).map(|t| Point {
                    t,
                    v: values[row],
                    band: zip_band(&band, row),
                })
            })
            .collect();
        points.sort_by_key(|p| p.t);
        out.push(Series {
            name: names[i].clone(),
            has_band: band.is_some(),
            points,
        });
    }
    Ok(out)
}

/// Splits a series into runs to draw as one line: a null value, or a step more than five
/// times the series' median step, ends a run (the sensor was silent).
fn runs(points: &[Point]) -> Vec<&[Point]> {
    let mut steps: Vec<i64> = points
        .windows(2)
        .map(|w| w[1].t - w[0].t)
        .filter(|d| *d > 0)
        .collect();
    steps.sort_unstable();
    let limit = steps.get(steps.len() / 2).map(|m| m.saturating_mul(5));
    let mut out = Vec::new();
    let mut start = None;
    for (i, p) in points.iter().enumerate() {
        if p.v.is_none() {
            if let Some(s) = start.take() {
                out.push(&points[s..i]);
            }
            continue;
        }
        match start {
            None => start = Some(i),
            Some(s) => {
                if limit.is_some_and(|l| p.t - points[i - 1].t > l) {
                    out.push(&points[s..i]);
                    start = Some(i);
                }
            }
        }
    }
    if let Some(s) = start {
        out.push(&points[s..]);
    }
    out
}

/// Reduces a run to at most four points per pixel column (first, lowest, highest, last),
/// which draws the same line; bands keep their lowest and highest per column.
fn decimate(run: &[Point], from: i64, to: i64, width_px: u32) -> Vec<Point> {
    let width = i64::from(width_px.max(1));
    if run.len() as i64 <= 4 * width {
        return run.to_vec();
    }
    let span = (to - from).max(1);
    let column = |t: i64| ((t - from) * width / span).clamp(0, width - 1);
    let mut out = Vec::with_capacity(4 * width as usize);
    let mut i = 0;
    while i < run.len() {
        let c = column(run[i].t);
        let mut j = i;
        while j < run.len() && column(run[j].t) == c {
            j += 1;
        }
        let bucket = &run[i..j];
        let value = |p: &Point| p.v.unwrap_or(f64::NAN);
        let lo_i = (0..bucket.len())
            .min_by(|&a, &b| value(&bucket[a]).total_cmp(&value(&bucket[b])))
            .unwrap_or(0);
        let hi_i = (0..bucket.len())
            .max_by(|&a, &b| value(&bucket[a]).total_cmp(&value(&bucket[b])))
            .unwrap_or(0);
        let band = bucket
            .iter()
            .filter_map(|p| p.band)
            .reduce(|a, b| (a.0.min(b.0), a.1.max(b.1)));
        let mut picks = vec![0, lo_i, hi_i, bucket.len() - 1];
        picks.sort_unstable();
        picks.dedup();
        for k in picks {
            out.push(Point { band, ..bucket[k] });
        }
        i = j;
    }
    out
}

pub(crate) fn draw<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    panel: &Panel,
    req: &PanelRequest,
    series: &[Series],
    output: Output,
) -> Result<(), DashboardError> {
    let err = draw_err(panel);
    let (w, h) = area.dim_in_pixel();
    let has_data = series
        .iter()
        .any(|s| s.points.iter().any(|p| p.v.is_some()));

    let mut legend: Vec<LegendEntry> = Vec::new();
    if series.len() > 1 {
        legend.extend(series.iter().enumerate().map(|(i, s)| {
            let (colour, dash) = series_style(i);
            LegendEntry {
                swatch: Swatch::Line(colour, dash),
                label: s.name.clone(),
            }
        }));
    }
    if series.iter().any(|s| s.has_band) && has_data {
        legend.push(LegendEntry {
            swatch: Swatch::Block(RGBColor(205, 205, 205)),
            label: "shaded: min–max".to_string(),
        });
    }
    let legend_h = legend_height(&legend, w, h);
    let (chart_area, legend_area) = area.split_vertically(h.saturating_sub(legend_h));

    let (from, to) = (req.from.timestamp_millis(), req.to.timestamp_millis());
    let x = AxisSpec {
        lo: from as f64,
        hi: to as f64,
        ticks: time_ticks(from, to, (w / 90).max(2) as usize)
            .ticks
            .into_iter()
            .map(|(t, l)| (t as f64, l))
            .collect(),
        desc: axis::time_axis_desc(from, to),
    };
    let values = series.iter().flat_map(|s| {
        s.points.iter().flat_map(|p| {
            p.v.into_iter()
                .chain(p.band.into_iter().flat_map(|(a, b)| [a, b]))
        })
    });
    let y_ticks = (chart_area.dim_in_pixel().1 / 45).max(2) as usize;
    let y = match super::extent(values) {
        Some((lo, hi)) => AxisSpec::from_scale(
            &nice_scale(lo, hi, y_ticks, panel.min, panel.max),
            super::value_desc(
                panel,
                if series.len() == 1 {
                    &series[0].name
                } else {
                    ""
                },
            ),
        ),
        None => AxisSpec {
            lo: panel.min.unwrap_or(0.0),
            hi: panel.max.unwrap_or(1.0),
            ticks: Vec::new(),
            desc: super::value_desc(panel, ""),
        },
    };
    let mut chart = build_chart(&chart_area, panel, &x, &y)?;
    if !has_data {
        super::draw_no_data(&chart.plotting_area().strip_coord_spec(), panel)?;
        return draw_legend(&legend_area, panel, &legend, h, output);
    }

    let plot_w = chart.plotting_area().dim_in_pixel().0;
    let clamp = |v: f64| v.clamp(y.lo, y.hi);
    let runs_of: Vec<Vec<Vec<Point>>> = series
        .iter()
        .map(|s| {
            runs(&s.points)
                .into_iter()
                .map(|r| decimate(r, from, to, plot_w))
                .collect()
        })
        .collect();

    // Bands first, under every line.
    for (i, runs) in runs_of.iter().enumerate() {
        let (colour, _) = series_style(i);
        for run in runs {
            let upper = run
                .iter()
                .filter_map(|p| p.band.map(|(_, hi)| (p.t as f64, clamp(hi))));
            let lower: Vec<(f64, f64)> = run
                .iter()
                .filter_map(|p| p.band.map(|(lo, _)| (p.t as f64, clamp(lo))))
                .collect();
            let outline: Vec<(f64, f64)> = upper.chain(lower.into_iter().rev()).collect();
            if outline.len() >= 4 {
                chart
                    .draw_series(std::iter::once(Polygon::new(
                        outline,
                        colour.mix(0.2).filled(),
                    )))
                    .map_err(&err)?;
            }
        }
    }
    for (i, runs) in runs_of.iter().enumerate() {
        let (colour, dash) = series_style(i);
        for run in runs {
            let pts: Vec<(f64, f64)> = run
                .iter()
                .filter_map(|p| p.v.map(|v| (p.t as f64, clamp(v))))
                .collect();
            if pts.len() == 1 {
                chart
                    .draw_series(std::iter::once(Circle::new(pts[0], 3, colour.filled())))
                    .map_err(&err)?;
                continue;
            }
            draw_line(chart.plotting_area(), pts, colour, dash, output, panel)?;
        }
    }
    if series.len() == 1 && series[0].points.len() == 1 {
        let p = series[0].points[0];
        if let Some(v) = p.v {
            let label = format_value(v, panel.decimals);
            chart
                .draw_series(std::iter::once(Text::new(
                    label,
                    (p.t as f64, clamp(v)),
                    text_style(LABEL_SIZE, TEXT).pos(Pos::new(HPos::Center, VPos::Bottom)),
                )))
                .map_err(&err)?;
        }
    }
    draw_legend(&legend_area, panel, &legend, h, output)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(t: i64, v: Option<f64>) -> Point {
        Point { t, v, band: None }
    }

    #[test]
    fn runs_break_at_nulls_and_long_gaps() {
        let pts = [
            p(0, Some(1.0)),
            p(60, Some(2.0)),
            p(120, None),
            p(180, Some(3.0)),
            p(240, Some(4.0)),
            p(2000, Some(5.0)),
            p(2060, Some(6.0)),
        ];
        let r = runs(&pts);
        let lens: Vec<usize> = r.iter().map(|r| r.len()).collect();
        assert_eq!(lens, [2, 2, 2]);
        assert_eq!(r[2][0].t, 2000);
    }

    #[test]
    fn decimation_keeps_extremes_per_pixel() {
        let pts: Vec<Point> = (0..10_000)
            .map(|i| p(i, Some(((i * 37) % 101) as f64)))
            .collect();
        let d = decimate(&pts, 0, 10_000, 100);
        assert!(d.len() <= 400, "{}", d.len());
        assert_eq!(d.first().unwrap().t, 0);
        assert_eq!(d.last().unwrap().t, 9_999);
        let max = d.iter().filter_map(|p| p.v).fold(f64::MIN, f64::max);
        let min = d.iter().filter_map(|p| p.v).fold(f64::MAX, f64::min);
        assert_eq!((min, max), (0.0, 100.0));
        assert!(d.windows(2).all(|w| w[0].t <= w[1].t));
        let few = decimate(&pts[..50], 0, 10_000, 100);
        assert_eq!(few.len(), 50);
    }
}
