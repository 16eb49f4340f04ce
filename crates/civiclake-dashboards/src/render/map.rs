//! Map panels: boundary layers beneath, points coloured by value on top.
//!
//! The projection is equirectangular scaled by the cosine of the central latitude, which
//! for a city (a few kilometres) is indistinguishable from a conformal one.

use geo::{BoundingRect, Contains, InteriorPoint, MapCoords, MultiPolygon, Point, Rect, coord};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::data::Frame;
use super::style::*;
use super::{COLOUR_BAR_AREA_W, colour_bounds, draw_colour_bar, draw_err, draw_no_data};
use crate::error::DashboardError;
use crate::geolayers::GeoLayers;
use crate::model::{MapFill, Panel};

/// One point of the result.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct MapPoint {
    pub(crate) lon: f64,
    pub(crate) lat: f64,
    pub(crate) value: Option<f64>,
    pub(crate) label: Option<String>,
}

/// One boundary to draw, with its fill value when the panel fills by mean.
#[derive(Debug, Clone)]
pub(crate) struct Area {
    pub(crate) name: String,
    pub(crate) shape: MultiPolygon<f64>,
    pub(crate) fill: Option<f64>,
}

#[derive(Debug, Clone)]
pub(crate) struct MapData {
    pub(crate) points: Vec<MapPoint>,
    pub(crate) areas: Vec<Area>,
}

/// Point labels are drawn up to this many points.
const MAX_LABELLED_POINTS: usize = 25;
/// Points get a dark outline (for contrast with the boundaries) up to this many; beyond,
/// outlines would hide the colours.
const MAX_OUTLINED_POINTS: usize = 200;
/// Boundary names are drawn up to this many boundaries.
const MAX_LABELLED_AREAS: usize = 40;

/// `lat, lon, value` (+ optional `label`), and the named boundary layers.
pub(crate) fn prepare(
    frame: &Frame<'_>,
    layers: &[String],
    fill: MapFill,
    geo: &GeoLayers,
) -> Result<MapData, DashboardError> {
    let lat_idx = frame.require("lat", "latitude in degrees, WGS 84")?;
    let lon_idx = frame.require("lon", "longitude in degrees, WGS 84")?;
    let value_idx = frame.require("value", "numbers; they colour the points")?;
    let lats = frame.numbers(lat_idx)?;
    let lons = frame.numbers(lon_idx)?;
    let values = frame.numbers(value_idx)?;
    let labels = match frame.find("label") {
        Some(i) => frame.texts(i)?,
        None => vec![None; values.len()],
    };
    let mut points = Vec::with_capacity(values.len());
    for row in 0..values.len() {
        let (Some(lat), Some(lon)) = (lats[row], lons[row]) else {
            continue;
        };
        if lat.abs() > 90.0 || lon.abs() > 180.0 {
            return Err(frame.err(format!(
                "row {}: ({lat}, {lon}) is not a latitude, longitude in degrees",
                row + 1
            )));
        }
        points.push(MapPoint {
            lon,
            lat,
            value: values[row],
            label: labels[row].clone(),
        });
    }
    let mut areas = Vec::new();
    for name in layers {
        let layer =
            geo.get(name).ok_or_else(|| {
                let loaded: Vec<&str> = geo.names().collect();
                frame.err(format!(
                "boundary layer `{name}` is not loaded (dashboards/geo/{name}.geojson); loaded: {}",
                if loaded.is_empty() { "none".to_string() } else { loaded.join(", ") }
            ))
            })?;
        for b in &layer.boundaries {
            let fill_value = match fill {
                MapFill::None => None,
                MapFill::Mean => {
                    let inside: Vec<f64> = points
                        .iter()
                        .filter(|p| b.shape.contains(&Point::new(p.lon, p.lat)))
                        .filter_map(|p| p.value)
                        .collect();
                    (!inside.is_empty()).then(|| inside.iter().sum::<f64>() / inside.len() as f64)
                }
            };
            areas.push(Area {
                name: b.name.clone(),
                shape: b.shape.clone(),
                fill: fill_value,
            });
        }
    }
    Ok(MapData { points, areas })
}

/// From (longitude, latitude) to pixels of the map area, keeping the aspect ratio.
pub(crate) struct Projection {
    kx: f64,
    min_x: f64,
    max_y: f64,
    scale: f64,
    ox: f64,
    oy: f64,
}

impl Projection {
    pub(crate) fn fit(bounds: Rect<f64>, w: u32, h: u32, margin: f64) -> Self {
        let lat0 = (bounds.min().y + bounds.max().y) / 2.0;
        let kx = lat0.to_radians().cos();
        let (min_x, max_x) = (bounds.min().x * kx, bounds.max().x * kx);
        let (min_y, max_y) = (bounds.min().y, bounds.max().y);
        let dx = (max_x - min_x).max(1e-9);
        let dy = (max_y - min_y).max(1e-9);
        let aw = (f64::from(w) - 2.0 * margin).max(1.0);
        let ah = (f64::from(h) - 2.0 * margin).max(1.0);
        let scale = (aw / dx).min(ah / dy);
        Self {
            kx,
            min_x,
            max_y,
            scale,
            ox: margin + (aw - dx * scale) / 2.0,
            oy: margin + (ah - dy * scale) / 2.0,
        }
    }

    pub(crate) fn px(&self, lon: f64, lat: f64) -> (i32, i32) {
        let x = self.ox + (lon * self.kx - self.min_x) * self.scale;
        let y = self.oy + (self.max_y - lat) * self.scale;
        (x.round() as i32, y.round() as i32)
    }
}

pub(crate) fn union(a: Rect<f64>, b: Rect<f64>) -> Rect<f64> {
    Rect::new(
        coord! { x: a.min().x.min(b.min().x), y: a.min().y.min(b.min().y) },
        coord! { x: a.max().x.max(b.max().x), y: a.max().y.max(b.max().y) },
    )
}

pub(crate) fn draw<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    panel: &Panel,
    map: &MapData,
) -> Result<(), DashboardError> {
    let err = draw_err(panel);
    let (w, _) = area.dim_in_pixel();
    let (map_area, bar_area) =
        area.split_horizontally(w.saturating_sub(COLOUR_BAR_AREA_W.min(w / 4)));
    let (mw, mh) = map_area.dim_in_pixel();
    map_area
        .draw(&Rectangle::new(
            [(4, 2), (mw as i32 - 4, mh as i32 - 6)],
            GRID.stroke_width(1),
        ))
        .map_err(&err)?;

    let point_bounds = map.points.iter().fold(None::<Rect<f64>>, |acc, p| {
        let r = Rect::new(coord! { x: p.lon, y: p.lat }, coord! { x: p.lon, y: p.lat });
        Some(acc.map_or(r, |a| union(a, r)))
    });
    let area_bounds = map
        .areas
        .iter()
        .filter_map(|a| a.shape.bounding_rect())
        .reduce(union);
    let bounds = match (point_bounds, area_bounds) {
        (Some(a), Some(b)) => union(a, b),
        (Some(a), None) | (None, Some(a)) => a,
        (None, None) => return draw_no_data(&map_area, panel),
    };
    // A single place (or a line of places) still gets a frame around it.
    let pad = 0.002;
    let bounds = Rect::new(
        coord! { x: bounds.min().x - pad, y: bounds.min().y - pad },
        coord! { x: bounds.max().x + pad, y: bounds.max().y + pad },
    );
    let proj = Projection::fit(bounds, mw, mh.saturating_sub(4), 14.0);

    let values = map
        .points
        .iter()
        .filter_map(|p| p.value)
        .chain(map.areas.iter().filter_map(|a| a.fill));
    let data = super::extent(values);
    let (lo, hi) = colour_bounds(panel, data);
    let colour_of = |v: f64| viridis((v - lo) / (hi - lo));

    // Boundaries: projected with geo, then drawn polygon by polygon.
    for a in &map.areas {
        let projected = a.shape.map_coords(|c| {
            let (x, y) = proj.px(c.x, c.y);
            coord! { x: f64::from(x), y: f64::from(y) }
        });
        let fill = a.fill.map_or(STRIPE, colour_of);
        for polygon in &projected.0 {
            let ring = |ls: &geo::LineString<f64>| -> Vec<(i32, i32)> {
                ls.coords().map(|c| (c.x as i32, c.y as i32)).collect()
            };
            map_area
                .draw(&Polygon::new(ring(polygon.exterior()), fill.filled()))
                .map_err(&err)?;
            for hole in polygon.interiors() {
                map_area
                    .draw(&Polygon::new(ring(hole), BACKGROUND.filled()))
                    .map_err(&err)?;
            }
            map_area
                .draw(&PathElement::new(
                    ring(polygon.exterior()),
                    BOUNDARY.stroke_width(1),
                ))
                .map_err(&err)?;
            for hole in polygon.interiors() {
                map_area
                    .draw(&PathElement::new(ring(hole), BOUNDARY.stroke_width(1)))
                    .map_err(&err)?;
            }
        }
    }
    if map.areas.len() <= MAX_LABELLED_AREAS {
        for a in &map.areas {
            if let Some(p) = a.shape.interior_point() {
                let ink = a.fill.map_or(MUTED, |v| text_on(colour_of(v)));
                map_area
                    .draw(&Text::new(
                        a.name.clone(),
                        proj.px(p.x(), p.y()),
                        text_style(SMALL_SIZE, ink).pos(Pos::new(HPos::Center, VPos::Center)),
                    ))
                    .map_err(&err)?;
            }
        }
    }

    let radius: u32 = match map.points.len() {
        0..=100 => 5,
        101..=2000 => 4,
        _ => 3,
    };
    // Highest values last, so they are on top.
    let mut order: Vec<&MapPoint> = map.points.iter().collect();
    order.sort_by(|a, b| {
        a.value
            .unwrap_or(f64::NEG_INFINITY)
            .total_cmp(&b.value.unwrap_or(f64::NEG_INFINITY))
    });
    let mut missing = false;
    for p in &order {
        let centre = proj.px(p.lon, p.lat);
        let fill = match p.value {
            Some(v) => colour_of(v),
            None => {
                missing = true;
                EMPTY_FILL
            }
        };
        map_area
            .draw(&Circle::new(centre, radius, fill.filled()))
            .map_err(&err)?;
        if map.points.len() <= MAX_OUTLINED_POINTS {
            map_area
                .draw(&Circle::new(centre, radius, TEXT.stroke_width(1)))
                .map_err(&err)?;
        }
    }
    if map.points.len() <= MAX_LABELLED_POINTS {
        for p in &order {
            if let Some(label) = &p.label {
                let (x, y) = proj.px(p.lon, p.lat);
                map_area
                    .draw(&Text::new(
                        label.clone(),
                        (x + radius as i32 + 3, y),
                        text_style(SMALL_SIZE, TEXT).pos(Pos::new(HPos::Left, VPos::Center)),
                    ))
                    .map_err(&err)?;
            }
        }
    }
    if map.points.is_empty() {
        draw_no_data(&map_area, panel)?;
    }
    if data.is_some() {
        draw_colour_bar(
            &bar_area,
            panel,
            lo,
            hi,
            missing.then_some("grey: no value"),
        )?;
    }
    Ok(())
}
