//! Network maps: areas coloured by a value (a choropleth), outlines over them, and places of
//! a network as markers of a few kinds, with links between places (a move from one to
//! another). The kiosk siting optimiser draws today's kiosks and the proposal with it.

use geo::{BoundingRect, MapCoords, MultiPolygon, Rect, coord};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::map::{Projection, union};
use super::style::*;
use super::{COLOUR_BAR_AREA_W, draw_colour_bar, draw_err, ensure_font, extent};
use crate::error::DashboardError;
use crate::model::{MapFill, Panel, PanelKind};

/// How a place is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkerShape {
    /// A circle.
    Circle,
    /// A square.
    Square,
}

/// The look of a kind of place, with its legend text.
#[derive(Debug, Clone, PartialEq)]
pub struct MarkerStyle {
    /// The shape.
    pub shape: MarkerShape,
    /// Filled with the colour, or only outlined in it.
    pub filled: bool,
    /// Red, green, blue.
    pub colour: (u8, u8, u8),
    /// What it means, for the legend.
    pub legend: String,
}

/// One place.
#[derive(Debug, Clone, PartialEq)]
pub struct Marker {
    /// Longitude, degrees.
    pub lon: f64,
    /// Latitude, degrees.
    pub lat: f64,
    /// Index into [`NetworkMap::styles`].
    pub style: usize,
    /// A label written beside it.
    pub label: Option<String>,
}

/// What a network map shows.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NetworkMap {
    /// The title.
    pub title: String,
    /// Areas filled by their value on the colour scale (`None`: left blank).
    pub areas: Vec<(MultiPolygon<f64>, Option<f64>)>,
    /// Outlines drawn over the areas, not filled (a municipal boundary).
    pub outlines: Vec<MultiPolygon<f64>>,
    /// Small dots coloured by value: longitude, latitude, value (places without an area).
    pub dots: Vec<(f64, f64, f64)>,
    /// What the colours mean (written in the legend).
    pub value_label: String,
    /// The unit of the values (over the colour scale).
    pub unit: String,
    /// Lower end of the colour scale (from the data when `None`).
    pub min: Option<f64>,
    /// Upper end of the colour scale (from the data when `None`).
    pub max: Option<f64>,
    /// The kinds of place.
    pub styles: Vec<MarkerStyle>,
    /// The places.
    pub markers: Vec<Marker>,
    /// Lines from one place to another (longitude, latitude pairs).
    pub links: Vec<((f64, f64), (f64, f64))>,
    /// A line at the bottom: the data's credits.
    pub credit: String,
}

const TITLE_H: u32 = 30;
const LEGEND_H: u32 = 24;
const CREDIT_H: u32 = 18;
const MARKER_R: i32 = 6;

/// Draws the map as an SVG document of `width` × `height` pixels.
pub fn render_network_svg(
    map: &NetworkMap,
    width: u32,
    height: u32,
) -> Result<String, DashboardError> {
    ensure_font()?;
    if !(320..=4000).contains(&width) || !(240..=4000).contains(&height) {
        return Err(DashboardError::Request(format!(
            "the image size {width} × {height} is outside 320–4000 × 240–4000 pixels"
        )));
    }
    let panel = Panel {
        id: "network".into(),
        title: map.title.clone(),
        kind: PanelKind::Map {
            layers: Vec::new(),
            fill: MapFill::Mean,
        },
        sql: String::new(),
        unit: Some(map.unit.clone()),
        description: None,
        value_label: None,
        decimals: Some(0),
        min: map.min,
        max: map.max,
    };
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (width, height)).into_drawing_area();
        root.fill(&BACKGROUND).map_err(draw_err(&panel))?;
        draw(&root, &panel, map)?;
        root.present().map_err(draw_err(&panel))?;
    }
    Ok(out)
}

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    panel: &Panel,
    map: &NetworkMap,
) -> Result<(), DashboardError> {
    let err = draw_err(panel);
    let (w, h) = root.dim_in_pixel();
    let (title_area, rest) = root.split_vertically(TITLE_H);
    title_area
        .draw(&Text::new(
            fit_text(&map.title, TITLE_SIZE, w.saturating_sub(16)),
            (8, 6),
            bold_style(TITLE_SIZE, TEXT).pos(Pos::new(HPos::Left, VPos::Top)),
        ))
        .map_err(&err)?;
    let body_h = h.saturating_sub(TITLE_H + LEGEND_H + CREDIT_H);
    let (body, bottom) = rest.split_vertically(body_h);
    let (legend_area, credit_area) = bottom.split_vertically(LEGEND_H);
    let values: Vec<f64> = map
        .areas
        .iter()
        .filter_map(|a| a.1)
        .chain(map.dots.iter().map(|d| d.2))
        .collect();
    let data = extent(values.iter().copied());
    let bar_w = if data.is_some() {
        COLOUR_BAR_AREA_W.min(w / 4)
    } else {
        0
    };
    let (map_area, bar_area) = body.split_horizontally(w.saturating_sub(bar_w));
    let (mw, mh) = map_area.dim_in_pixel();

    let rects = map
        .areas
        .iter()
        .map(|a| &a.0)
        .chain(&map.outlines)
        .filter_map(|m| m.bounding_rect())
        .chain(
            map.dots
                .iter()
                .map(|d| (d.0, d.1))
                .chain(map.markers.iter().map(|m| (m.lon, m.lat)))
                .map(|(x, y)| Rect::new(coord! { x: x, y: y }, coord! { x: x, y: y })),
        );
    let Some(bounds) = rects.reduce(union) else {
        return Ok(());
    };
    let pad = 0.002;
    let bounds = Rect::new(
        coord! { x: bounds.min().x - pad, y: bounds.min().y - pad },
        coord! { x: bounds.max().x + pad, y: bounds.max().y + pad },
    );
    let proj = Projection::fit(bounds, mw, mh, 10.0);
    let (lo, hi) = match data {
        Some((a, b)) => {
            let lo = map.min.unwrap_or(a);
            let hi = map.max.unwrap_or(b);
            if hi > lo { (lo, hi) } else { (lo, lo + 1.0) }
        }
        None => (0.0, 1.0),
    };
    let colour_of = |v: f64| viridis(((v - lo) / (hi - lo)).clamp(0.0, 1.0));
    let ring = |ls: &geo::LineString<f64>| -> Vec<(i32, i32)> {
        ls.coords().map(|c| (c.x as i32, c.y as i32)).collect()
    };
    let project = |m: &MultiPolygon<f64>| {
        m.map_coords(|c| {
            let (x, y) = proj.px(c.x, c.y);
            coord! { x: f64::from(x), y: f64::from(y) }
        })
    };
    for (shape, value) in &map.areas {
        let fill = value.map_or(STRIPE, colour_of);
        for polygon in &project(shape).0 {
            map_area
                .draw(&Polygon::new(ring(polygon.exterior()), fill.filled()))
                .map_err(&err)?;
            map_area
                .draw(&PathElement::new(
                    ring(polygon.exterior()),
                    BACKGROUND.stroke_width(1),
                ))
                .map_err(&err)?;
        }
    }
    for shape in &map.outlines {
        for polygon in &project(shape).0 {
            map_area
                .draw(&PathElement::new(
                    ring(polygon.exterior()),
                    BOUNDARY.stroke_width(2),
                ))
                .map_err(&err)?;
        }
    }
    for &(lon, lat, v) in &map.dots {
        map_area
            .draw(&Circle::new(proj.px(lon, lat), 3, colour_of(v).filled()))
            .map_err(&err)?;
    }
    for ((a_lon, a_lat), (b_lon, b_lat)) in &map.links {
        map_area
            .draw(&PathElement::new(
                vec![proj.px(*a_lon, *a_lat), proj.px(*b_lon, *b_lat)],
                TEXT.stroke_width(2),
            ))
            .map_err(&err)?;
    }
    for m in &map.markers {
        let Some(style) = map.styles.get(m.style) else {
            continue;
        };
        draw_marker(&map_area, proj.px(m.lon, m.lat), style).map_err(&err)?;
        if let Some(label) = &m.label {
            let (x, y) = proj.px(m.lon, m.lat);
            map_area
                .draw(&Text::new(
                    label.clone(),
                    (x + MARKER_R + 3, y),
                    text_style(SMALL_SIZE, TEXT).pos(Pos::new(HPos::Left, VPos::Center)),
                ))
                .map_err(&err)?;
        }
    }
    if data.is_some() {
        draw_colour_bar(&bar_area, panel, lo, hi, None)?;
    }
    // Legend: one entry per style, left to right.
    let mut x = 10i32;
    for style in &map.styles {
        draw_marker(&legend_area, (x + MARKER_R, (LEGEND_H / 2) as i32), style).map_err(&err)?;
        legend_area
            .draw(&Text::new(
                style.legend.clone(),
                (x + 2 * MARKER_R + 6, (LEGEND_H / 2) as i32),
                text_style(SMALL_SIZE, TEXT).pos(Pos::new(HPos::Left, VPos::Center)),
            ))
            .map_err(&err)?;
        x += 2 * MARKER_R + 18 + text_width(&style.legend, SMALL_SIZE) as i32;
    }
    if data.is_some() && !map.value_label.is_empty() {
        legend_area
            .draw(&Text::new(
                fit_text(
                    &format!("colour: {}", map.value_label),
                    SMALL_SIZE,
                    w.saturating_sub(x.max(0) as u32 + 10),
                ),
                (x, (LEGEND_H / 2) as i32),
                text_style(SMALL_SIZE, MUTED).pos(Pos::new(HPos::Left, VPos::Center)),
            ))
            .map_err(&err)?;
    }
    credit_area
        .draw(&Text::new(
            fit_text(&map.credit, SMALL_SIZE, w.saturating_sub(16)),
            (10, 2),
            text_style(SMALL_SIZE, MUTED).pos(Pos::new(HPos::Left, VPos::Top)),
        ))
        .map_err(&err)?;
    Ok(())
}

fn draw_marker<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    (x, y): (i32, i32),
    style: &MarkerStyle,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let (r, g, b) = style.colour;
    let colour = RGBColor(r, g, b);
    match style.shape {
        MarkerShape::Circle => {
            if style.filled {
                area.draw(&Circle::new((x, y), MARKER_R, colour.filled()))?;
                area.draw(&Circle::new((x, y), MARKER_R, BACKGROUND.stroke_width(1)))?;
            } else {
                area.draw(&Circle::new((x, y), MARKER_R, BACKGROUND.filled()))?;
                area.draw(&Circle::new((x, y), MARKER_R, colour.stroke_width(2)))?;
            }
        }
        MarkerShape::Square => {
            let corners = [(x - MARKER_R, y - MARKER_R), (x + MARKER_R, y + MARKER_R)];
            if style.filled {
                area.draw(&Rectangle::new(corners, colour.filled()))?;
                area.draw(&Rectangle::new(corners, BACKGROUND.stroke_width(1)))?;
            } else {
                area.draw(&Rectangle::new(corners, BACKGROUND.filled()))?;
                area.draw(&Rectangle::new(corners, colour.stroke_width(2)))?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use geo::polygon;

    fn square(x: f64, y: f64) -> MultiPolygon<f64> {
        MultiPolygon::new(vec![polygon![
            (x: x, y: y), (x: x + 0.01, y: y), (x: x + 0.01, y: y + 0.01), (x: x, y: y + 0.01), (x: x, y: y)
        ]])
    }

    #[test]
    fn draws_areas_markers_links_legend_and_credit() {
        let map = NetworkMap {
            title: "Kiosks: today and proposed".into(),
            areas: vec![
                (square(11.0, 43.8), Some(100.0)),
                (square(11.01, 43.8), Some(900.0)),
            ],
            outlines: vec![square(11.0, 43.8)],
            dots: vec![],
            value_label: "walking distance".into(),
            unit: "m".into(),
            min: None,
            max: None,
            styles: vec![
                MarkerStyle {
                    shape: MarkerShape::Square,
                    filled: false,
                    colour: (200, 30, 30),
                    legend: "today".into(),
                },
                MarkerStyle {
                    shape: MarkerShape::Circle,
                    filled: true,
                    colour: (30, 30, 200),
                    legend: "proposed".into(),
                },
            ],
            markers: vec![
                Marker {
                    lon: 11.002,
                    lat: 43.805,
                    style: 0,
                    label: Some("K1".into()),
                },
                Marker {
                    lon: 11.015,
                    lat: 43.805,
                    style: 1,
                    label: None,
                },
            ],
            links: vec![((11.002, 43.805), (11.015, 43.805))],
            credit: "Boundary: ISTAT, Openpolis (CC-BY 4.0)".into(),
        };
        let svg = render_network_svg(&map, 640, 480).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..80]);
        for text in [
            "Kiosks: today and proposed",
            "K1",
            "today",
            "proposed",
            "ISTAT, Openpolis",
            "colour: walking distance",
        ] {
            assert!(svg.contains(text), "missing {text}");
        }
        // The two areas take the two ends of the colour scale.
        let low = viridis(0.0);
        let high = viridis(1.0);
        for c in [low, high] {
            let hex = format!("#{:02X}{:02X}{:02X}", c.0, c.1, c.2);
            assert!(svg.to_uppercase().contains(&hex), "no fill {hex}");
        }
        let e = render_network_svg(&map, 10, 10).unwrap_err().to_string();
        assert!(e.contains("outside 320–4000"), "{e}");
    }
}
