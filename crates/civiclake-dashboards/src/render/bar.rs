//! Bar, stacked bar and histogram panels.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::axis::nice_scale;
use super::data::Frame;
use super::style::*;
use super::{
    AxisSpec, LegendEntry, Output, Swatch, build_chart, chart_layout, draw_err, draw_legend,
    draw_no_data, legend_height, value_desc,
};
use crate::error::DashboardError;
use crate::model::Panel;

/// Bars per label; one series for a plain bar panel.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Bars {
    pub(crate) labels: Vec<String>,
    /// Series names, in order of first appearance (empty for a plain bar panel).
    pub(crate) series: Vec<String>,
    /// `values[series][label]`.
    pub(crate) values: Vec<Vec<Option<f64>>>,
}

/// `label, value`, or with `stacked`, `label, series, value` (several rows for the same
/// label and series add up).
pub(crate) fn prepare_bars(frame: &Frame<'_>, stacked: bool) -> Result<Bars, DashboardError> {
    let label_idx = frame.require("label", "the text under each bar")?;
    let series_idx = if stacked {
        Some(frame.require("series", "the part of the stack each value is")?)
    } else {
        None
    };
    let value_idx = frame.require("value", "numbers")?;
    let labels_col = frame.texts(label_idx)?;
    let values_col = frame.numbers(value_idx)?;
    let label_of = |row: usize| {
        labels_col[row]
            .clone()
            .unwrap_or_else(|| "(null)".to_string())
    };

    let Some(series_idx) = series_idx else {
        return Ok(Bars {
            labels: (0..labels_col.len()).map(label_of).collect(),
            series: Vec::new(),
            values: vec![values_col],
        });
    };
    let series_col = frame.texts(series_idx)?;
    let mut labels: Vec<String> = Vec::new();
    let mut series: Vec<String> = Vec::new();
    let mut cells: Vec<(usize, usize, f64)> = Vec::new();
    for row in 0..labels_col.len() {
        let label = label_of(row);
        let name = series_col[row]
            .clone()
            .unwrap_or_else(|| "(null)".to_string());
        let li = labels.iter().position(|l| *l == label).unwrap_or_else(|| {
            labels.push(label);
            labels.len() - 1
        });
        let si = series.iter().position(|s| *s == name).unwrap_or_else(|| {
            series.push(name);
            series.len() - 1
        });
        if let Some(v) = values_col[row] {
            cells.push((si, li, v));
        }
    }
    let mut values = vec![vec![None; labels.len()]; series.len()];
    for (si, li, v) in cells {
        let cell: &mut Option<f64> = &mut values[si][li];
        *cell = Some(cell.unwrap_or(0.0) + v);
    }
    Ok(Bars {
        labels,
        series,
        values,
    })
}

/// The stacked extent of label `li`: (sum of negatives, sum of positives).
fn stack_extent(bars: &Bars, li: usize) -> (f64, f64) {
    bars.values
        .iter()
        .fold((0.0, 0.0), |(neg, pos), s| match s[li] {
            Some(v) if v < 0.0 => (neg + v, pos),
            Some(v) => (neg, pos + v),
            None => (neg, pos),
        })
}

/// Tick positions and labels of a category axis of `n` bands across `plot_w` pixels: a
/// label per band when they fit, else every k-th; labels cut to the band width.
fn category_ticks(labels: &[String], plot_w: u32) -> Vec<(f64, String)> {
    let n = labels.len().max(1);
    let band_px = plot_w as f64 / n as f64;
    let every = ((44.0 / band_px).ceil() as usize).max(1);
    let max_px = (band_px * every as f64 - 6.0).max(10.0) as u32;
    labels
        .iter()
        .enumerate()
        .filter(|(i, _)| i % every == 0)
        .map(|(i, l)| (i as f64 + 0.5, fit_text(l, LABEL_SIZE, max_px)))
        .collect()
}

pub(crate) fn draw_bars<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    panel: &Panel,
    bars: &Bars,
    output: Output,
) -> Result<(), DashboardError> {
    let err = draw_err(panel);
    let (w, h) = area.dim_in_pixel();
    let stacked = !bars.series.is_empty();
    let legend: Vec<LegendEntry> = bars
        .series
        .iter()
        .enumerate()
        .map(|(i, s)| LegendEntry {
            swatch: Swatch::Block(PALETTE[i % PALETTE.len()]),
            label: s.clone(),
        })
        .collect();
    let legend_h = legend_height(&legend, w, h);
    let (chart_area, legend_area) = area.split_vertically(h.saturating_sub(legend_h));
    let n = bars.labels.len();
    let has_data = bars.values.iter().flatten().any(Option::is_some);

    let (lo, hi) = (0..n)
        .map(|li| {
            if stacked {
                stack_extent(bars, li)
            } else {
                let v = bars.values[0][li].unwrap_or(0.0);
                (v.min(0.0), v.max(0.0))
            }
        })
        .fold((0.0f64, 0.0f64), |(a, b), (c, d)| (a.min(c), b.max(d)));
    let y_ticks = (chart_area.dim_in_pixel().1 / 45).max(2) as usize;
    let y = if has_data {
        AxisSpec::from_scale(
            &nice_scale(lo, hi, y_ticks, panel.min, panel.max),
            value_desc(panel, "value"),
        )
    } else {
        AxisSpec {
            lo: 0.0,
            hi: 1.0,
            ticks: Vec::new(),
            desc: value_desc(panel, ""),
        }
    };
    // The plot width is known once the chart is built; the layout tells it beforehand, for
    // the category labels.
    let no_x = AxisSpec {
        lo: 0.0,
        hi: 1.0,
        ticks: Vec::new(),
        desc: String::new(),
    };
    let plot_w =
        chart_layout(chart_area.dim_in_pixel(), &no_x, &y).plot_width(chart_area.dim_in_pixel().0);
    let x = AxisSpec {
        lo: 0.0,
        hi: n.max(1) as f64,
        ticks: if has_data {
            category_ticks(&bars.labels, plot_w)
        } else {
            Vec::new()
        },
        desc: String::new(),
    };
    let mut chart = build_chart(&chart_area, panel, &x, &y)?;
    if !has_data {
        draw_no_data(&chart.plotting_area().strip_coord_spec(), panel)?;
        return draw_legend(&legend_area, panel, &legend, h, output);
    }
    let clamp = |v: f64| v.clamp(y.lo, y.hi);
    let (gap_l, gap_r) = (0.15, 0.85);
    if stacked {
        for li in 0..n {
            let (mut neg, mut pos) = (0.0f64, 0.0f64);
            for (si, s) in bars.values.iter().enumerate() {
                let Some(v) = s[li] else { continue };
                let base = if v < 0.0 { &mut neg } else { &mut pos };
                let (a, b) = (*base, *base + v);
                *base = b;
                chart
                    .draw_series(std::iter::once(Rectangle::new(
                        [(li as f64 + gap_l, clamp(a)), (li as f64 + gap_r, clamp(b))],
                        PALETTE[si % PALETTE.len()].filled(),
                    )))
                    .map_err(&err)?;
            }
        }
    } else {
        let plot_w = chart.plotting_area().dim_in_pixel().0;
        let band_px = plot_w / n.max(1) as u32;
        for (li, v) in bars.values[0].iter().enumerate() {
            let Some(v) = *v else { continue };
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [
                        (li as f64 + gap_l, clamp(0.0)),
                        (li as f64 + gap_r, clamp(v)),
                    ],
                    PALETTE[0].filled(),
                )))
                .map_err(&err)?;
            let label = format_value(v, panel.decimals);
            if text_width(&label, SMALL_SIZE) + 4 <= band_px {
                let vpos = if v >= 0.0 { VPos::Bottom } else { VPos::Top };
                chart
                    .draw_series(std::iter::once(Text::new(
                        label,
                        (li as f64 + 0.5, clamp(v)),
                        text_style(SMALL_SIZE, TEXT).pos(Pos::new(HPos::Center, vpos)),
                    )))
                    .map_err(&err)?;
            }
        }
    }
    draw_legend(&legend_area, panel, &legend, h, output)
}

/// Counts of values in equal bins.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Histogram {
    /// Lower edge of the first bin and upper edge of the last.
    pub(crate) lo: f64,
    pub(crate) hi: f64,
    pub(crate) counts: Vec<u64>,
    /// Values below `lo` or above `hi` (when the panel pins `min`/`max`).
    pub(crate) outside: u64,
}

/// `value`: numbers, binned here into `bins` equal bins over the data's range (or the
/// panel's `min`–`max`).
pub(crate) fn prepare_histogram(frame: &Frame<'_>, bins: u32) -> Result<Histogram, DashboardError> {
    let idx = frame.require("value", "numbers, one per row; the bins are computed here")?;
    let values: Vec<f64> = frame.numbers(idx)?.into_iter().flatten().collect();
    let bins = bins.max(1) as usize;
    let panel = frame.panel;
    let Some((dlo, dhi)) = super::extent(values.iter().copied()) else {
        return Ok(Histogram {
            lo: panel.min.unwrap_or(0.0),
            hi: panel.max.unwrap_or(1.0),
            counts: Vec::new(),
            outside: 0,
        });
    };
    let mut lo = panel.min.unwrap_or(dlo);
    let mut hi = panel.max.unwrap_or(dhi);
    if hi <= lo {
        let pad = if lo == 0.0 { 0.5 } else { lo.abs() * 0.05 };
        if panel.min.is_none() {
            lo -= pad;
        }
        if panel.max.is_none() || panel.min.is_some() {
            hi = lo + 2.0 * pad.max(f64::EPSILON);
        }
    }
    let width = (hi - lo) / bins as f64;
    let mut counts = vec![0u64; bins];
    let mut outside = 0;
    for v in values {
        if v < lo || v > hi {
            outside += 1;
            continue;
        }
        let i = (((v - lo) / width) as usize).min(bins - 1);
        counts[i] += 1;
    }
    Ok(Histogram {
        lo,
        hi,
        counts,
        outside,
    })
}

pub(crate) fn draw_histogram<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    panel: &Panel,
    hist: &Histogram,
) -> Result<(), DashboardError> {
    let err = draw_err(panel);
    let (w, h) = area.dim_in_pixel();
    let note = (hist.outside > 0).then(|| {
        format!(
            "{} value{} outside {} – {} not counted",
            hist.outside,
            if hist.outside == 1 { "" } else { "s" },
            format_value(hist.lo, panel.decimals),
            format_value(hist.hi, panel.decimals)
        )
    });
    let note_h = if note.is_some() { 20 } else { 0 };
    let (chart_area, note_area) = area.split_vertically(h.saturating_sub(note_h));
    let has_data = !hist.counts.is_empty();
    let x_scale = nice_scale(
        hist.lo,
        hist.hi,
        (w / 90).max(2) as usize,
        Some(hist.lo),
        Some(hist.hi),
    );
    let x = AxisSpec::from_scale(&x_scale, value_desc(panel, "value"));
    let max_count = hist.counts.iter().copied().max().unwrap_or(0);
    let y_ticks = (chart_area.dim_in_pixel().1 / 45).max(2) as usize;
    let y = if has_data {
        let mut scale = nice_scale(0.0, max_count.max(1) as f64, y_ticks, Some(0.0), None);
        // Counts are whole numbers: no fractional ticks.
        if scale.step < 1.0 {
            scale = nice_scale(
                0.0,
                max_count.max(1) as f64,
                max_count.max(1) as usize,
                Some(0.0),
                None,
            );
        }
        AxisSpec::from_scale(&scale, "Count".to_string())
    } else {
        AxisSpec {
            lo: 0.0,
            hi: 1.0,
            ticks: Vec::new(),
            desc: "Count".to_string(),
        }
    };
    let mut chart = build_chart(&chart_area, panel, &x, &y)?;
    if !has_data {
        return draw_no_data(&chart.plotting_area().strip_coord_spec(), panel);
    }
    let width = (hist.hi - hist.lo) / hist.counts.len() as f64;
    for (i, &c) in hist.counts.iter().enumerate() {
        if c == 0 {
            continue;
        }
        let a = hist.lo + width * i as f64;
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(a, 0.0), (a + width, (c as f64).min(y.hi))],
                PALETTE[0].filled(),
            )))
            .map_err(&err)?;
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(a, 0.0), (a + width, (c as f64).min(y.hi))],
                BACKGROUND.stroke_width(1),
            )))
            .map_err(&err)?;
    }
    if let Some(note) = note {
        note_area
            .draw(&Text::new(
                note,
                (8, 4),
                text_style(SMALL_SIZE, MUTED).pos(Pos::new(HPos::Left, VPos::Top)),
            ))
            .map_err(&err)?;
    }
    Ok(())
}
