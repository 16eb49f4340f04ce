//! Drawing panels with plotters, to SVG or PNG.
//!
//! Each kind first reads the SQL result into its own data (checking the columns it needs,
//! so a missing column is an error naming it), then draws on any plotters backend.

mod axis;
mod bar;
pub(crate) mod data;
mod heatmap;
mod map;
pub(crate) mod network;
mod stat;
pub(crate) mod style;
mod table;
mod timeseries;

use std::sync::OnceLock;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use plotters::coord::Shift;
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, Ranged};
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::error::DashboardError;
use crate::geolayers::GeoLayers;
use crate::model::{Panel, PanelKind};
use crate::request::{HEIGHT_RANGE, PanelRequest, WIDTH_RANGE};
use data::Frame;
use style::*;

/// DejaVu Sans 2.37 (Bitstream Vera licence, see `assets/DejaVuSans-LICENSE.txt`).
static FONT_BYTES: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");

static FONT: OnceLock<Result<(), String>> = OnceLock::new();

/// Registers the embedded font under [`FAMILY`] (once per process). SVG text names the
/// same family, so a browser with DejaVu Sans draws exactly the measured text and others
/// fall back to their sans-serif.
pub(crate) fn ensure_font() -> Result<(), DashboardError> {
    FONT.get_or_init(|| {
        plotters::style::register_font(FAMILY, FontStyle::Normal, FONT_BYTES)
            .map_err(|_| "the embedded font DejaVuSans.ttf cannot be read".to_string())
    })
    .clone()
    .map_err(|message| DashboardError::Render {
        panel: String::new(),
        message,
    })
}

/// Draws a panel's SQL result as an SVG document of `req.width_px` × `req.height_px`.
///
/// `schema` is the result's schema (it is checked even when there are no rows, so a
/// missing column is reported for an empty result too); an empty result draws the chart
/// frame with "No data". `geo` provides the boundary layers of map panels.
pub fn render_svg(
    panel: &Panel,
    req: &PanelRequest,
    schema: &SchemaRef,
    batches: &[RecordBatch],
    geo: &GeoLayers,
) -> Result<String, DashboardError> {
    ensure_font()?;
    check_size(req)?;
    let prepared = prepare(panel, req, schema, batches, geo)?;
    let mut out = String::new();
    {
        let root =
            SVGBackend::with_string(&mut out, (req.width_px, req.height_px)).into_drawing_area();
        draw(&root, panel, req, &prepared, Output::Svg)?;
        root.present().map_err(draw_err(panel))?;
    }
    Ok(with_svg_title(with_svg_dashes(out), &panel.title))
}

/// Draws a panel's SQL result as a PNG image (see [`render_svg`]); text is drawn with the
/// embedded DejaVu Sans, so no system font is needed.
pub fn render_png(
    panel: &Panel,
    req: &PanelRequest,
    schema: &SchemaRef,
    batches: &[RecordBatch],
    geo: &GeoLayers,
) -> Result<Vec<u8>, DashboardError> {
    ensure_font()?;
    check_size(req)?;
    let prepared = prepare(panel, req, schema, batches, geo)?;
    let (w, h) = (req.width_px, req.height_px);
    let mut pixels = vec![0u8; w as usize * h as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (w, h)).into_drawing_area();
        draw(&root, panel, req, &prepared, Output::Bitmap)?;
        root.present().map_err(draw_err(panel))?;
    }
    encode_png(&pixels, w, h).map_err(|message| DashboardError::Render {
        panel: panel.id.clone(),
        message,
    })
}

/// Refuses image sizes outside the accepted ranges (a request built by hand could ask for
/// gigabytes of pixels).
fn check_size(req: &PanelRequest) -> Result<(), DashboardError> {
    if WIDTH_RANGE.contains(&req.width_px) && HEIGHT_RANGE.contains(&req.height_px) {
        Ok(())
    } else {
        Err(DashboardError::Request(format!(
            "the image size {} × {} is outside {}–{} × {}–{} pixels",
            req.width_px,
            req.height_px,
            WIDTH_RANGE.start(),
            WIDTH_RANGE.end(),
            HEIGHT_RANGE.start(),
            HEIGHT_RANGE.end()
        )))
    }
}

fn encode_png(rgb: &[u8], w: u32, h: u32) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut out, w, h);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().map_err(|e| e.to_string())?;
        writer.write_image_data(rgb).map_err(|e| e.to_string())?;
        writer.finish().map_err(|e| e.to_string())?;
    }
    Ok(out)
}

/// An SVG of 800 × 300 saying that a panel could not be drawn: its title and the message
/// (wrapped), for a failed query or a result that does not fit the panel.
pub fn render_error_svg(title: &str, message: &str) -> String {
    render_error_svg_sized(title, message, 800, 300)
}

/// [`render_error_svg`] at a given size (clamped to 200–4096 × 120–4096).
pub fn render_error_svg_sized(title: &str, message: &str, width: u32, height: u32) -> String {
    let w = width.clamp(200, 4096);
    let h = height.clamp(120, 4096);
    // Written by hand (no font metrics needed): it must work even when drawing fails.
    let chars_per_line = ((w.saturating_sub(40)) as f64 / 7.2).max(10.0) as usize;
    let max_lines = ((h.saturating_sub(90)) / 18).max(1) as usize;
    let mut lines = wrap(message, chars_per_line);
    if lines.len() > max_lines {
        lines.truncate(max_lines);
        if let Some(last) = lines.last_mut() {
            last.push('…');
        }
    }
    let mut svg = format!(
        "<svg width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" \
         xmlns=\"http://www.w3.org/2000/svg\">\n<title>{}</title>\n\
         <rect x=\"0\" y=\"0\" width=\"{w}\" height=\"{h}\" fill=\"#FFFFFF\"/>\n\
         <rect x=\"1\" y=\"1\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#D55E00\" \
         stroke-width=\"2\"/>\n\
         <text x=\"12\" y=\"26\" font-family=\"DejaVu Sans, sans-serif\" font-size=\"16\" \
         font-weight=\"bold\" fill=\"#1A1A1A\">{}</text>\n\
         <text x=\"12\" y=\"54\" font-family=\"DejaVu Sans, sans-serif\" font-size=\"13\" \
         font-weight=\"bold\" fill=\"#A33E00\">This panel could not be drawn:</text>\n",
        xml_escape(title),
        w - 2,
        h - 2,
        xml_escape(title)
    );
    for (i, line) in lines.iter().enumerate() {
        svg.push_str(&format!(
            "<text x=\"12\" y=\"{}\" font-family=\"DejaVu Sans, sans-serif\" font-size=\"12\" \
             fill=\"#1A1A1A\">{}</text>\n",
            76 + 18 * i,
            xml_escape(line)
        ));
    }
    svg.push_str("</svg>\n");
    svg
}

/// Greedy word wrap; words longer than a line are cut.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    for paragraph in text.lines() {
        let mut line = String::new();
        for word in paragraph.split_whitespace() {
            let mut word: Vec<char> = word.chars().collect();
            while word.len() > width {
                if !line.is_empty() {
                    lines.push(std::mem::take(&mut line));
                }
                lines.push(word.drain(..width).collect());
            }
            let word: String = word.into_iter().collect();
            if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
                lines.push(std::mem::take(&mut line));
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(&word);
        }
        if !line.is_empty() {
            lines.push(line);
        }
    }
    lines
}

fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if c.is_control() && c != '\n' && c != '\t' => {}
            c => out.push(c),
        }
    }
    out
}

/// What is drawn on: it decides how dashed lines are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Output {
    /// Dashed lines are drawn whole with a marker opacity, which [`with_svg_dashes`] turns
    /// into `stroke-dasharray`: one element per line instead of one per dash (a day of a
    /// noisy sensor is thousands of dashes).
    Svg,
    /// Dashes are drawn one by one.
    Bitmap,
}

/// The opacity that marks a dashed line in SVG output (nothing else is drawn with it).
const SVG_DASHED_MARK: f64 = 0.999;
/// The opacity that marks a dotted line in SVG output.
const SVG_DOTTED_MARK: f64 = 0.998;
const DASHED: (u32, u32) = (6, 4);
const DOTTED: (u32, u32) = (2, 4);

/// Replaces the marker opacities by dash patterns.
fn with_svg_dashes(svg: String) -> String {
    svg.replace(
        &format!("opacity=\"{SVG_DASHED_MARK}\""),
        &format!(
            "opacity=\"1\" stroke-dasharray=\"{} {}\"",
            DASHED.0, DASHED.1
        ),
    )
    .replace(
        &format!("opacity=\"{SVG_DOTTED_MARK}\""),
        &format!(
            "opacity=\"1\" stroke-dasharray=\"{} {}\"",
            DOTTED.0, DOTTED.1
        ),
    )
}

/// Draws a line of `points` in `area` (any coordinates) with the series' dash pattern.
pub(crate) fn draw_line<DB: DrawingBackend, CT: plotters::coord::CoordTranslate>(
    area: &DrawingArea<DB, CT>,
    points: Vec<CT::From>,
    colour: RGBColor,
    dash: Dash,
    output: Output,
    panel: &Panel,
) -> Result<(), DashboardError>
where
    CT::From: Clone,
{
    let err = draw_err(panel);
    let pattern = match dash {
        Dash::Solid => None,
        Dash::Dashed => Some((DASHED, SVG_DASHED_MARK)),
        Dash::Dotted => Some((DOTTED, SVG_DOTTED_MARK)),
    };
    match (pattern, output) {
        (None, _) => area
            .draw(&PathElement::new(points, colour.stroke_width(2)))
            .map_err(&err),
        (Some((_, mark)), Output::Svg) => area
            .draw(&PathElement::new(points, colour.mix(mark).stroke_width(2)))
            .map_err(&err),
        (Some(((on, off), _)), Output::Bitmap) => area
            .draw(&DashedPathElement::new(
                points,
                on as i32,
                off as i32,
                colour.stroke_width(2),
            ))
            .map_err(&err),
    }
}

/// Adds `<title>` (the panel title, read by screen readers) as the first child of `<svg>`.
fn with_svg_title(svg: String, title: &str) -> String {
    match svg.find('>') {
        Some(end) => format!(
            "{}\n<title>{}</title>{}",
            &svg[..=end],
            xml_escape(title),
            &svg[end + 1..]
        ),
        None => svg,
    }
}

/// Maps a plotters error to [`DashboardError::Render`] for `panel`.
pub(crate) fn draw_err<E: std::fmt::Display>(panel: &Panel) -> impl Fn(E) -> DashboardError + '_ {
    move |e| DashboardError::Render {
        panel: panel.id.clone(),
        message: e.to_string(),
    }
}

/// A panel's result read into what its kind draws.
#[derive(Debug)]
pub(crate) enum Prepared {
    TimeSeries(Vec<timeseries::Series>),
    Bars(bar::Bars),
    Histogram(bar::Histogram),
    Heatmap(heatmap::Heatmap),
    Table(table::Table),
    Stat(Option<f64>),
    Map(map::MapData),
}

pub(crate) fn prepare(
    panel: &Panel,
    req: &PanelRequest,
    schema: &SchemaRef,
    batches: &[RecordBatch],
    geo: &GeoLayers,
) -> Result<Prepared, DashboardError> {
    let frame = Frame::new(panel, schema, batches);
    Ok(match &panel.kind {
        PanelKind::TimeSeries => Prepared::TimeSeries(timeseries::prepare(&frame, req)?),
        PanelKind::Bar => Prepared::Bars(bar::prepare_bars(&frame, false)?),
        PanelKind::StackedBar => Prepared::Bars(bar::prepare_bars(&frame, true)?),
        PanelKind::Histogram { bins } => {
            Prepared::Histogram(bar::prepare_histogram(&frame, *bins)?)
        }
        PanelKind::Heatmap => Prepared::Heatmap(heatmap::prepare(&frame)?),
        PanelKind::Table { max_rows } => Prepared::Table(table::prepare(&frame, *max_rows)?),
        PanelKind::Stat { .. } => Prepared::Stat(stat::prepare(&frame)?),
        PanelKind::Map { layers, fill } => Prepared::Map(map::prepare(&frame, layers, *fill, geo)?),
    })
}

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    panel: &Panel,
    req: &PanelRequest,
    prepared: &Prepared,
    output: Output,
) -> Result<(), DashboardError> {
    root.fill(&BACKGROUND).map_err(draw_err(panel))?;
    let body = draw_title(root, panel)?;
    match prepared {
        Prepared::TimeSeries(series) => timeseries::draw(&body, panel, req, series, output),
        Prepared::Bars(bars) => bar::draw_bars(&body, panel, bars, output),
        Prepared::Histogram(h) => bar::draw_histogram(&body, panel, h),
        Prepared::Heatmap(h) => heatmap::draw(&body, panel, h),
        Prepared::Table(t) => table::draw(&body, panel, t),
        Prepared::Stat(v) => stat::draw(&body, panel, *v),
        Prepared::Map(m) => map::draw(&body, panel, m),
    }
}

/// Height of the title band.
const TITLE_H: u32 = 30;

/// Draws the panel title (cut to the width) and returns the area below it.
fn draw_title<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    panel: &Panel,
) -> Result<DrawingArea<DB, Shift>, DashboardError> {
    let (w, _) = root.dim_in_pixel();
    let (top, body) = root.split_vertically(TITLE_H);
    // Measured in the regular weight: leave room for bold, which is wider.
    let title = fit_text(&panel.title, TITLE_SIZE, w.saturating_sub(24) * 9 / 10);
    top.draw(&Text::new(
        title,
        (12, 7),
        bold_style(TITLE_SIZE, TEXT).pos(Pos::new(HPos::Left, VPos::Top)),
    ))
    .map_err(draw_err(panel))?;
    Ok(body)
}

/// "No data" on a framed white label, centred in `area` (over whatever is drawn there).
pub(crate) fn draw_no_data<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    panel: &Panel,
) -> Result<(), DashboardError> {
    let err = draw_err(panel);
    let (w, h) = area.dim_in_pixel();
    let (cx, cy) = (w as i32 / 2, h as i32 / 2);
    let size = LABEL_SIZE * 1.2;
    let half_w = text_width("No data", size) as i32 / 2 + 12;
    let half_h = (size / 1.24 / 2.0) as i32 + 8;
    let corners = [(cx - half_w, cy - half_h), (cx + half_w, cy + half_h)];
    area.draw(&Rectangle::new(corners, BACKGROUND.filled()))
        .map_err(&err)?;
    area.draw(&Rectangle::new(corners, GRID.stroke_width(1)))
        .map_err(&err)?;
    area.draw(&Text::new(
        "No data",
        (cx, cy),
        text_style(size, MUTED).pos(Pos::new(HPos::Center, VPos::Center)),
    ))
    .map_err(&err)
}

/// The description of the value axis: `value_label (unit)`, or the unit, or `fallback`.
pub(crate) fn value_desc(panel: &Panel, fallback: &str) -> String {
    match (&panel.value_label, &panel.unit) {
        (Some(l), Some(u)) => format!("{l} ({u})"),
        (Some(l), None) => l.clone(),
        (None, Some(u)) => u.clone(),
        (None, None) => fallback.to_string(),
    }
}

/// One axis of a cartesian chart: range, ticks with their labels, description.
#[derive(Debug, Clone)]
pub(crate) struct AxisSpec {
    pub(crate) lo: f64,
    pub(crate) hi: f64,
    pub(crate) ticks: Vec<(f64, String)>,
    pub(crate) desc: String,
}

impl AxisSpec {
    pub(crate) fn from_scale(scale: &axis::Scale, desc: String) -> Self {
        Self {
            lo: scale.lo,
            hi: scale.hi,
            ticks: scale.ticks.iter().map(|&t| (t, scale.label(t))).collect(),
            desc,
        }
    }

    fn label_of(&self, v: f64) -> String {
        self.ticks
            .iter()
            .find(|(t, _)| (t - v).abs() <= f64::EPSILON * t.abs().max(1.0))
            .map(|(_, l)| l.clone())
            .unwrap_or_default()
    }
}

/// A linear f64 axis whose key points (ticks and grid lines) are exactly the given ones.
#[derive(Debug, Clone)]
pub(crate) struct TickedAxis {
    lo: f64,
    hi: f64,
    ticks: Vec<f64>,
}

impl Ranged for TickedAxis {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, v: &f64, limit: (i32, i32)) -> i32 {
        // As plotters' own f64 axis does.
        if self.hi == self.lo {
            return (limit.1 - limit.0) / 2;
        }
        let logic = (*v - self.lo) / (self.hi - self.lo);
        let actual = limit.1 - limit.0;
        if actual == 0 || !logic.is_finite() {
            return if logic.is_sign_negative() {
                limit.0
            } else {
                limit.1
            };
        }
        if actual > 0 {
            limit.0 + (f64::from(actual) * logic + 1e-3).floor() as i32
        } else {
            limit.0 + (f64::from(actual) * logic - 1e-3).ceil() as i32
        }
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            Vec::new()
        } else {
            self.ticks.clone()
        }
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.lo..self.hi
    }
}

/// The axes as they fit an area, and the room their labels take.
#[derive(Debug, Clone)]
pub(crate) struct ChartLayout {
    pub(crate) x: AxisSpec,
    pub(crate) y: AxisSpec,
    pub(crate) x_area: u32,
    pub(crate) y_area: u32,
}

const CHART_MARGIN_LEFT: u32 = 4;
const CHART_MARGIN_RIGHT: u32 = 28;

impl ChartLayout {
    /// The width of the plotting area.
    pub(crate) fn plot_width(&self, area_width: u32) -> u32 {
        area_width.saturating_sub(self.y_area + CHART_MARGIN_LEFT + CHART_MARGIN_RIGHT)
    }
}

/// Fits the axes to an area of `(w, h)`: value labels at most 30 % of the width (cut with
/// an ellipsis), axis descriptions left out where they would squeeze the plot.
pub(crate) fn chart_layout((w, h): (u32, u32), x: &AxisSpec, y: &AxisSpec) -> ChartLayout {
    let mut x = x.clone();
    let mut y = y.clone();
    if w < 300 {
        x.desc.clear();
    }
    if h < 140 {
        y.desc.clear();
    }
    let max_label = (f64::from(w) * 0.3) as u32;
    for (_, label) in &mut y.ticks {
        *label = fit_text(label, LABEL_SIZE, max_label);
    }
    let y_label_w = y
        .ticks
        .iter()
        .map(|(_, l)| text_width(l, LABEL_SIZE))
        .max()
        .unwrap_or(0);
    let y_area = (y_label_w + 14 + if y.desc.is_empty() { 0 } else { 22 }).max(24);
    let x_area = 24 + if x.desc.is_empty() { 0 } else { 20 };
    ChartLayout {
        x,
        y,
        x_area,
        y_area,
    }
}

pub(crate) type Chart<'a, DB> = ChartContext<'a, DB, Cartesian2d<TickedAxis, TickedAxis>>;

/// A cartesian chart in `area` with the axes drawn: tick labels, descriptions, grid lines
/// at the ticks.
pub(crate) fn build_chart<'a, DB: DrawingBackend>(
    area: &'a DrawingArea<DB, Shift>,
    panel: &Panel,
    x: &AxisSpec,
    y: &AxisSpec,
) -> Result<Chart<'a, DB>, DashboardError> {
    let ChartLayout {
        x,
        y,
        x_area,
        y_area,
    } = chart_layout(area.dim_in_pixel(), x, y);
    let (x, y) = (&x, &y);
    let mut chart = ChartBuilder::on(area)
        .margin_top(6)
        .margin_right(CHART_MARGIN_RIGHT)
        .margin_left(CHART_MARGIN_LEFT)
        .x_label_area_size(x_area)
        .y_label_area_size(y_area)
        .build_cartesian_2d(
            TickedAxis {
                lo: x.lo,
                hi: x.hi,
                ticks: x.ticks.iter().map(|(t, _)| *t).collect(),
            },
            TickedAxis {
                lo: y.lo,
                hi: y.hi,
                ticks: y.ticks.iter().map(|(t, _)| *t).collect(),
            },
        )
        .map_err(draw_err(panel))?;
    let x_fmt = |v: &f64| x.label_of(*v);
    let y_fmt = |v: &f64| y.label_of(*v);
    chart
        .configure_mesh()
        .bold_line_style(GRID.stroke_width(1))
        .light_line_style(TRANSPARENT)
        .axis_style(AXIS.stroke_width(1))
        .set_all_tick_mark_size(4)
        .x_labels(x.ticks.len().max(1))
        .y_labels(y.ticks.len().max(1))
        .x_label_formatter(&x_fmt)
        .y_label_formatter(&y_fmt)
        .label_style(text_style(LABEL_SIZE, TEXT))
        .axis_desc_style(text_style(LABEL_SIZE, MUTED))
        .x_desc(x.desc.clone())
        .y_desc(y.desc.clone())
        .draw()
        .map_err(draw_err(panel))?;
    Ok(chart)
}

/// What a legend entry shows before its label.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Swatch {
    Line(RGBColor, Dash),
    Block(RGBColor),
}

/// One legend entry.
#[derive(Debug, Clone)]
pub(crate) struct LegendEntry {
    pub(crate) swatch: Swatch,
    pub(crate) label: String,
}

const LEGEND_LINE_H: u32 = 18;
/// The most legend lines: one per 120 pixels of image height, 1 to 4.
fn legend_max_lines(height: u32) -> usize {
    (height / 120).clamp(1, 4) as usize
}
const SWATCH_W: i32 = 18;

/// Entries placed in lines across `width`: (entry index, x) per line, and how many entries
/// did not fit in `max_lines` lines.
fn legend_layout(
    entries: &[LegendEntry],
    width: u32,
    max_lines: usize,
) -> (Vec<Vec<(usize, i32)>>, usize) {
    let max_label = width.saturating_sub(60).max(40);
    let widths: Vec<i32> = entries
        .iter()
        .map(|e| SWATCH_W + 5 + text_width(&e.label, LABEL_SIZE).min(max_label) as i32 + 16)
        .collect();
    let mut lines: Vec<Vec<(usize, i32)>> = vec![Vec::new()];
    let mut x = 8;
    for (i, w) in widths.iter().enumerate() {
        if x + w > width as i32 && lines.last().is_some_and(|l| !l.is_empty()) {
            lines.push(Vec::new());
            x = 8;
        }
        if let Some(line) = lines.last_mut() {
            line.push((i, x));
        }
        x += w;
    }
    if lines.len() <= max_lines {
        return (lines, 0);
    }
    lines.truncate(max_lines);
    // Leave room for "+N more" at the end of the last line.
    let more_w = text_width("+999 more", LABEL_SIZE) as i32 + 8;
    if let Some(last) = lines.last_mut() {
        while last
            .last()
            .is_some_and(|&(i, x)| x + widths[i] + more_w > width as i32 && last.len() > 1)
        {
            last.pop();
        }
    }
    let shown: usize = lines.iter().map(Vec::len).sum();
    (lines, entries.len() - shown)
}

/// The height the legend of `entries` takes in an area of `width` × `height` (0 for no
/// entries).
pub(crate) fn legend_height(entries: &[LegendEntry], width: u32, height: u32) -> u32 {
    if entries.is_empty() {
        return 0;
    }
    let (lines, _) = legend_layout(entries, width, legend_max_lines(height));
    lines.len() as u32 * LEGEND_LINE_H + 6
}

/// Draws the legend of `entries` in `area` (as tall as [`legend_height`] said for
/// `height`, the height of the panel body).
pub(crate) fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    panel: &Panel,
    entries: &[LegendEntry],
    height: u32,
    output: Output,
) -> Result<(), DashboardError> {
    let (width, _) = area.dim_in_pixel();
    let (lines, hidden) = legend_layout(entries, width, legend_max_lines(height));
    let max_label = width.saturating_sub(60).max(40);
    let err = draw_err(panel);
    for (row, line) in lines.iter().enumerate() {
        let y = 3 + row as i32 * LEGEND_LINE_H as i32 + LEGEND_LINE_H as i32 / 2;
        let mut end_x = 8;
        for &(i, x) in line {
            let entry = &entries[i];
            match entry.swatch {
                Swatch::Line(colour, dash) => {
                    draw_line(
                        area,
                        vec![(x, y), (x + SWATCH_W, y)],
                        colour,
                        dash,
                        output,
                        panel,
                    )?;
                }
                Swatch::Block(colour) => {
                    area.draw(&Rectangle::new(
                        [(x + 2, y - 6), (x + SWATCH_W - 2, y + 6)],
                        colour.filled(),
                    ))
                    .map_err(&err)?;
                }
            }
            let label = fit_text(&entry.label, LABEL_SIZE, max_label);
            end_x = x + SWATCH_W + 5 + text_width(&label, LABEL_SIZE) as i32 + 16;
            area.draw(&Text::new(
                label,
                (x + SWATCH_W + 5, y),
                text_style(LABEL_SIZE, TEXT).pos(Pos::new(HPos::Left, VPos::Center)),
            ))
            .map_err(&err)?;
        }
        if hidden > 0 && row + 1 == lines.len() {
            area.draw(&Text::new(
                format!("+{hidden} more"),
                (end_x, y),
                text_style(LABEL_SIZE, MUTED).pos(Pos::new(HPos::Left, VPos::Center)),
            ))
            .map_err(&err)?;
        }
    }
    Ok(())
}

/// Width of the area for a colour scale legend.
pub(crate) const COLOUR_BAR_AREA_W: u32 = 96;

/// A vertical viridis scale from `lo` (bottom) to `hi` (top) with labels, the unit above,
/// and an optional note (such as "grey: no data") below.
pub(crate) fn draw_colour_bar<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    panel: &Panel,
    lo: f64,
    hi: f64,
    note: Option<&str>,
) -> Result<(), DashboardError> {
    let err = draw_err(panel);
    let (w, h) = area.dim_in_pixel();
    let top = 24i32;
    let bottom = h as i32 - if note.is_some() { 30 } else { 14 };
    if bottom - top < 20 {
        return Ok(());
    }
    let x0 = 8i32;
    let x1 = x0 + 14;
    let caption = fit_text(
        &value_desc(panel, "value"),
        SMALL_SIZE,
        w.saturating_sub(10),
    );
    area.draw(&Text::new(
        caption,
        (x0, 6),
        text_style(SMALL_SIZE, MUTED).pos(Pos::new(HPos::Left, VPos::Top)),
    ))
    .map_err(&err)?;
    let steps = 48;
    let span = (bottom - top) as f64;
    for s in 0..steps {
        let ya = top + (span * s as f64 / steps as f64).round() as i32;
        let yb = top + (span * (s + 1) as f64 / steps as f64).round() as i32;
        let t = 1.0 - (s as f64 + 0.5) / steps as f64;
        area.draw(&Rectangle::new([(x0, ya), (x1, yb)], viridis(t).filled()))
            .map_err(&err)?;
    }
    area.draw(&Rectangle::new(
        [(x0, top), (x1, bottom)],
        AXIS.stroke_width(1),
    ))
    .map_err(&err)?;
    let scale = axis::nice_scale(
        lo,
        hi,
        ((bottom - top) / 30).max(2) as usize,
        Some(lo),
        Some(hi),
    );
    let mut labels: Vec<(f64, String)> = scale.ticks.iter().map(|&t| (t, scale.label(t))).collect();
    if labels.is_empty() {
        labels.push((lo, format_value(lo, panel.decimals)));
    }
    for (v, label) in labels {
        let f = if hi > lo { (v - lo) / (hi - lo) } else { 0.5 };
        let y = bottom - (f * span).round() as i32;
        area.draw(&PathElement::new(
            vec![(x1, y), (x1 + 4, y)],
            AXIS.stroke_width(1),
        ))
        .map_err(&err)?;
        area.draw(&Text::new(
            label,
            (x1 + 7, y),
            text_style(SMALL_SIZE, TEXT).pos(Pos::new(HPos::Left, VPos::Center)),
        ))
        .map_err(&err)?;
    }
    if let Some(note) = note {
        area.draw(&Text::new(
            fit_text(note, SMALL_SIZE, w.saturating_sub(10)),
            (x0, bottom + 10),
            text_style(SMALL_SIZE, MUTED).pos(Pos::new(HPos::Left, VPos::Top)),
        ))
        .map_err(&err)?;
    }
    Ok(())
}

/// The lowest and highest finite values, if any.
pub(crate) fn extent(values: impl IntoIterator<Item = f64>) -> Option<(f64, f64)> {
    values
        .into_iter()
        .filter(|v| v.is_finite())
        .fold(None, |acc, v| match acc {
            None => Some((v, v)),
            Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
        })
}

/// The colour scale bounds of a heatmap or map: the panel's `min`/`max`, else the data's.
pub(crate) fn colour_bounds(panel: &Panel, data: Option<(f64, f64)>) -> (f64, f64) {
    let (dlo, dhi) = data.unwrap_or((0.0, 1.0));
    let lo = panel.min.unwrap_or(dlo);
    let hi = panel.max.unwrap_or(dhi);
    if hi > lo {
        (lo, hi)
    } else if panel.max.is_some() && panel.min.is_none() {
        // Only the top is pinned and the data lies above it: keep the top.
        (hi - hi.abs().max(1.0) * 0.1, hi)
    } else {
        (lo, lo + lo.abs().max(1.0) * 0.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_svg_escapes_and_wraps() {
        let svg = render_error_svg(
            "NO₂ <by> district",
            &format!("query failed: {}", "x".repeat(300)),
        );
        assert!(svg.starts_with("<svg width=\"800\" height=\"300\""));
        assert!(svg.contains("<title>NO₂ &lt;by&gt; district</title>"));
        assert!(svg.contains("This panel could not be drawn:"));
        assert!(svg.matches("<text").count() >= 4, "{svg}");
        assert!(!svg.contains(&"x".repeat(120)));
    }

    #[test]
    fn colour_bounds_are_never_empty() {
        let mut panel = crate::Dashboard::from_toml(
            "d",
            "title='t'\n[[panels]]\nid='p'\ntitle='p'\nkind='map'\nsql='x'",
        )
        .unwrap()
        .panels
        .remove(0);
        assert_eq!(colour_bounds(&panel, Some((3.0, 9.0))), (3.0, 9.0));
        assert_eq!(colour_bounds(&panel, Some((5.0, 5.0))), (5.0, 5.5));
        assert_eq!(colour_bounds(&panel, None), (0.0, 1.0));
        panel.min = Some(50.0);
        assert_eq!(colour_bounds(&panel, Some((3.0, 9.0))), (50.0, 55.0));
        panel.min = None;
        panel.max = Some(2.0);
        assert_eq!(colour_bounds(&panel, Some((3.0, 9.0))), (1.8, 2.0));
    }

    #[test]
    fn wraps_words() {
        assert_eq!(wrap("aa bb cc dd", 5), ["aa bb", "cc dd"]);
        assert_eq!(wrap("abcdefgh", 3), ["abc", "def", "gh"]);
    }

    #[test]
    fn legend_overflow_says_how_many_more() {
        ensure_font().unwrap();
        let entries: Vec<LegendEntry> = (0..60)
            .map(|i| LegendEntry {
                swatch: Swatch::Block(PALETTE[0]),
                label: format!("sensor-{i:03}"),
            })
            .collect();
        let (lines, hidden) = legend_layout(&entries, 600, 3);
        assert_eq!(lines.len(), 3);
        let shown: usize = lines.iter().map(Vec::len).sum();
        assert_eq!(shown + hidden, 60);
        assert!(hidden > 0);
        let (lines, hidden) = legend_layout(&entries[..2], 600, 3);
        assert_eq!((lines.len(), hidden), (1, 0));
    }
}
