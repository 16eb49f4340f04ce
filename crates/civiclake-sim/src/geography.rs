//! The simulated city's map: Prato's real municipal boundary and synthetic districts and
//! census sections inside it.
//!
//! The boundary is the feature of Prato (`com_istat_code` 100005) in
//! `dashboards/geo/prato_province_municipalities.geojson` (ISTAT administrative limits as
//! republished by Openpolis, CC-BY 4.0 — credit "ISTAT, Openpolis"), compiled into the crate.
//!
//! The districts and sections are **synthetic**, not Prato's real circoscrizioni or ISTAT
//! census sections: Centro is a disc of [`CENTRO_RADIUS_M`] around the historic centre
//! ([`CENTRE`]), Nord, Est, Sud and Ovest the four quarter-sectors around it (Nord centred on
//! north, and so on), each clipped to the boundary; the sections are the cells of a grid of
//! [`SECTION_CELL_M`] (one corner on the centre) clipped to each district, numbered per
//! district from the north-west row by row (`Centro-001`, …). Coordinates are WGS84
//! longitude/latitude rounded to 6 decimals (about 0.1 m); every shape is computed once per
//! process and is the same on every run.

use crate::SimError;
use crate::city::DISTRICTS;
use crate::rng::Rng;
use geo::orient::Direction;
use geo::{
    Area, BooleanOps, BoundingRect, Contains, Coord, GeodesicArea, Intersects, LineString,
    MultiPolygon, Orient, Point, Polygon, Rect,
};
use serde_json::Value as Json;
use std::fmt::Write as _;
use std::sync::OnceLock;

/// The province's municipalities, as shipped in `dashboards/geo/`.
const PROVINCE_GEOJSON: &str =
    include_str!("../../../dashboards/geo/prato_province_municipalities.geojson");

/// ISTAT code of the municipality of Prato in [`PROVINCE_GEOJSON`].
pub const PRATO_ISTAT_CODE: &str = "100005";

/// The historic centre (Piazza del Comune), longitude and latitude: the centre of the
/// synthetic districts.
pub const CENTRE: (f64, f64) = (11.0966, 43.8805);

/// Radius of the synthetic Centro district, metres.
pub const CENTRO_RADIUS_M: f64 = 1500.0;

/// Side of the grid cells the synthetic census sections are cut from, metres.
pub const SECTION_CELL_M: f64 = 600.0;

/// Credit required by the licence of the boundary data.
pub const ATTRIBUTION: &str = "Boundary of the Municipality of Prato: ISTAT, Openpolis (CC-BY 4.0)";

/// Metres per degree of latitude on a sphere of the Earth's mean radius (6,371,008.8 m).
const METRES_PER_DEGREE_LAT: f64 = 111_195.08;
/// Vertices of the Centro disc: one every 5°, so the sector borders (45°, 135°, …) are
/// vertices shared by the disc and the sectors.
const DISC_VERTICES: usize = 72;
/// How far the sectors reach, metres: well past the boundary (at most ~12 km from the centre).
const SECTOR_REACH_M: f64 = 40_000.0;
/// Decimals kept in coordinates.
const DECIMALS: f64 = 1e6;

/// A synthetic district.
#[derive(Debug, Clone)]
pub struct District {
    /// Its name, one of [`DISTRICTS`].
    pub name: &'static str,
    /// Its shape (lon/lat, exterior rings counter-clockwise).
    pub shape: MultiPolygon<f64>,
    /// Its area, km² (geodesic, rounded to 3 decimals).
    pub area_km2: f64,
    bbox: Rect<f64>,
}

/// A synthetic census section: a grid cell clipped to a district.
#[derive(Debug, Clone)]
pub struct Section {
    /// Its id, `<district>-<number>` with 3 digits, e.g. `Centro-012`.
    pub id: String,
    /// The district it lies in.
    pub district: &'static str,
    /// Its shape (lon/lat, exterior rings counter-clockwise).
    pub shape: MultiPolygon<f64>,
    /// Its area, km² (geodesic, rounded to 3 decimals).
    pub area_km2: f64,
    bbox: Rect<f64>,
}

/// The map of the simulated city: Prato's boundary, its synthetic districts and sections.
#[derive(Debug, Clone)]
pub struct CityMap {
    boundary: MultiPolygon<f64>,
    districts: Vec<District>,
    sections: Vec<Section>,
}

impl CityMap {
    /// The map, built on first use and shared by the whole process.
    pub fn get() -> Result<&'static CityMap, SimError> {
        static MAP: OnceLock<Result<CityMap, String>> = OnceLock::new();
        MAP.get_or_init(CityMap::build)
            .as_ref()
            .map_err(|e| SimError::Geo(e.clone()))
    }

    /// Prato's municipal boundary as published (not rounded).
    pub fn boundary(&self) -> &MultiPolygon<f64> {
        &self.boundary
    }

    /// The districts, in [`DISTRICTS`] order.
    pub fn districts(&self) -> &[District] {
        &self.districts
    }

    /// The district called `name`.
    pub fn district(&self, name: &str) -> Option<&District> {
        self.districts.iter().find(|d| d.name == name)
    }

    /// The census sections, district by district in [`DISTRICTS`] order, each district's in
    /// id order.
    pub fn sections(&self) -> &[Section] {
        &self.sections
    }

    /// The section whose interior holds the point, if any (points on a border, or in the
    /// hairline gaps the rounding of coordinates leaves, are in none).
    pub fn section_at(&self, lon: f64, lat: f64) -> Option<&Section> {
        let p = Point::new(lon, lat);
        self.sections
            .iter()
            .find(|s| rect_has(&s.bbox, lon, lat) && s.shape.contains(&p))
    }

    /// The districts as a GeoJSON FeatureCollection (the text of
    /// `dashboards/geo/prato_districts_synthetic.geojson`).
    pub fn districts_geojson(&self) -> String {
        feature_collection(
            "prato_districts_synthetic",
            &format!(
                "Synthetic districts of the civiclake simulator, not Prato's real \
                 circoscrizioni: Centro is a disc of {CENTRO_RADIUS_M} m around the historic \
                 centre, Nord, Est, Sud and Ovest the quarter-sectors around it, clipped to \
                 the real municipal boundary. Generated by civiclake-sim."
            ),
            self.districts.iter().map(|d| {
                (
                    format!(
                        "{{\"name\":{},\"area_km2\":{},\"synthetic\":true}}",
                        json_str(d.name),
                        d.area_km2
                    ),
                    &d.shape,
                )
            }),
        )
    }

    /// The sections as a GeoJSON FeatureCollection (the text of
    /// `dashboards/geo/prato_sections_synthetic.geojson`).
    pub fn sections_geojson(&self) -> String {
        feature_collection(
            "prato_sections_synthetic",
            &format!(
                "Synthetic census sections of the civiclake simulator, not ISTAT's census \
                 sections: cells of a {SECTION_CELL_M} m grid clipped to each synthetic \
                 district. Generated by civiclake-sim."
            ),
            self.sections.iter().map(|s| {
                (
                    format!(
                        "{{\"name\":{},\"district\":{},\"area_km2\":{},\"synthetic\":true}}",
                        json_str(&s.id),
                        json_str(s.district),
                        s.area_km2
                    ),
                    &s.shape,
                )
            }),
        )
    }

    /// A point drawn uniformly in the interior of district `district` (an index in
    /// [`DISTRICTS`]) that also lies inside the boundary and in a section: rejection sampling
    /// in the district's bounding box. Returns the rounded point and its section's index.
    pub(crate) fn sample_point(&self, district: usize, rng: &mut Rng) -> Option<(Coord, usize)> {
        let d = self.districts.get(district)?;
        let (min, max) = (d.bbox.min(), d.bbox.max());
        for _ in 0..10_000 {
            let c = round_coord(Coord {
                x: rng.range(min.x, max.x),
                y: rng.range(min.y, max.y),
            });
            let p = Point::from(c);
            if !d.shape.contains(&p) || !self.boundary.contains(&p) {
                continue;
            }
            let found = self.sections.iter().position(|s| {
                s.district == d.name && rect_has(&s.bbox, c.x, c.y) && s.shape.contains(&p)
            });
            if let Some(section) = found {
                return Some((c, section));
            }
        }
        None
    }

    fn build() -> Result<CityMap, String> {
        let boundary = prato_boundary()?;
        let (lon0, lat0) = CENTRE;
        let m_lon = metres_per_degree_lon();
        // Local metres east/north of the centre → lon/lat.
        let at = |east: f64, north: f64| Coord {
            x: lon0 + east / m_lon,
            y: lat0 + north / METRES_PER_DEGREE_LAT,
        };
        // Angles in whole degrees, counter-clockwise from east, reduced mod 360 so that
        // neighbouring shapes compute their shared vertices identically.
        let polar = |deg: i64, r: f64| {
            let a = (deg.rem_euclid(360) as f64).to_radians();
            at(r * a.cos(), r * a.sin())
        };
        let step = (360 / DISC_VERTICES) as i64;
        let disc_ring: Vec<Coord> = (0..=DISC_VERTICES as i64)
            .map(|k| polar(45 + k * step, CENTRO_RADIUS_M))
            .collect();
        let disc = Polygon::new(LineString::new(disc_ring), vec![]);
        // Sectors of 90° starting at these angles: Nord 45°–135°, Ovest 135°–225°, Sud
        // 225°–315°, Est 315°–405°.
        let sector = |from_deg: i64| {
            let mut ring: Vec<Coord> = (0..=90 / step)
                .map(|k| polar(from_deg + k * step, CENTRO_RADIUS_M))
                .collect();
            ring.push(polar(from_deg + 90, SECTOR_REACH_M));
            ring.push(polar(from_deg + 45, SECTOR_REACH_M * 2f64.sqrt()));
            ring.push(polar(from_deg, SECTOR_REACH_M));
            ring.push(ring[0]);
            Polygon::new(LineString::new(ring), vec![])
        };
        let mut districts = Vec::with_capacity(DISTRICTS.len());
        for name in DISTRICTS {
            let raw = match name {
                "Centro" => boundary.intersection(&disc),
                "Nord" => boundary.intersection(&sector(45)),
                "Ovest" => boundary.intersection(&sector(135)),
                "Sud" => boundary.intersection(&sector(225)),
                "Est" => boundary.intersection(&sector(315)),
                other => return Err(format!("no shape for district {other}")),
            };
            let shape = tidy(&raw);
            let bbox = shape
                .bounding_rect()
                .ok_or_else(|| format!("district {name} does not meet Prato's boundary"))?;
            districts.push(District {
                name,
                area_km2: area_km2(&shape),
                shape,
                bbox,
            });
        }
        // Sections: grid cells (i east, j north of the centre) clipped to each district, one
        // piece per part; pieces under a fifth of a cell (slivers along the borders) merged
        // into the largest piece they share a border with; numbered row by row from the
        // north, west to east.
        let cell = SECTION_CELL_M;
        let small = 0.2 * (cell / m_lon) * (cell / METRES_PER_DEGREE_LAT);
        let mut sections = Vec::new();
        for d in &districts {
            let (min, max) = (d.bbox.min(), d.bbox.max());
            let i0 = (((min.x - lon0) * m_lon) / cell).floor() as i64;
            let i1 = (((max.x - lon0) * m_lon) / cell).ceil() as i64;
            let j0 = (((min.y - lat0) * METRES_PER_DEGREE_LAT) / cell).floor() as i64;
            let j1 = (((max.y - lat0) * METRES_PER_DEGREE_LAT) / cell).ceil() as i64;
            // (shape, planar area) in numbering order; merged pieces become empty.
            let mut pieces: Vec<(MultiPolygon<f64>, f64)> = Vec::new();
            for j in (j0..j1).rev() {
                for i in i0..i1 {
                    let (w, e) = (i as f64 * cell, (i + 1) as f64 * cell);
                    let (s, n) = (j as f64 * cell, (j + 1) as f64 * cell);
                    let square = Polygon::new(
                        LineString::new(vec![at(w, s), at(e, s), at(e, n), at(w, n), at(w, s)]),
                        vec![],
                    );
                    for part in tidy(&d.shape.intersection(&square)) {
                        let area = part.unsigned_area();
                        pieces.push((MultiPolygon::new(vec![part]), area));
                    }
                }
            }
            for k in 0..pieces.len() {
                let (ref shape, area) = pieces[k];
                let Some(bbox) = shape.bounding_rect().filter(|_| area < small) else {
                    continue;
                };
                // The largest other piece that shares more than a point with it (ties: the
                // first in numbering order).
                let target = (0..pieces.len())
                    .filter(|&t| t != k)
                    .filter(|&t| {
                        pieces[t]
                            .0
                            .bounding_rect()
                            .is_some_and(|r| r.intersects(&bbox))
                    })
                    .filter(|&t| shares_border(&pieces[t].0, shape))
                    .max_by(|&a, &b| {
                        pieces[a]
                            .1
                            .partial_cmp(&pieces[b].1)
                            .unwrap_or(std::cmp::Ordering::Equal)
                            .then(b.cmp(&a))
                    });
                if let Some(t) = target {
                    let merged = tidy(&pieces[t].0.union(shape));
                    pieces[t].1 = merged.unsigned_area();
                    pieces[t].0 = merged;
                    pieces[k].0 = MultiPolygon::new(vec![]);
                }
            }
            let mut number = 0;
            for (shape, _) in pieces {
                let Some(bbox) = shape.bounding_rect() else {
                    continue;
                };
                number += 1;
                sections.push(Section {
                    id: format!("{}-{number:03}", d.name),
                    district: d.name,
                    area_km2: area_km2(&shape),
                    shape,
                    bbox,
                });
            }
        }
        Ok(CityMap {
            boundary,
            districts,
            sections,
        })
    }
}

/// Whether two shapes that do not overlap share a border longer than a point: the union
/// of the two is then one polygon fewer than their parts.
fn shares_border(a: &MultiPolygon<f64>, b: &MultiPolygon<f64>) -> bool {
    a.intersects(b) && tidy(&a.union(b)).0.len() < a.0.len() + b.0.len()
}

/// Metres per degree of longitude at the centre's latitude.
fn metres_per_degree_lon() -> f64 {
    METRES_PER_DEGREE_LAT * CENTRE.1.to_radians().cos()
}

fn rect_has(r: &Rect<f64>, x: f64, y: f64) -> bool {
    r.min().x <= x && x <= r.max().x && r.min().y <= y && y <= r.max().y
}

fn round6(v: f64) -> f64 {
    (v * DECIMALS).round() / DECIMALS
}

fn round_coord(c: Coord) -> Coord {
    Coord {
        x: round6(c.x),
        y: round6(c.y),
    }
}

fn area_km2(shape: &MultiPolygon<f64>) -> f64 {
    (shape.geodesic_area_unsigned() / 1e6 * 1e3).round() / 1e3
}

/// Coordinates rounded to 6 decimals, repeated vertices dropped, rings and polygons that
/// collapse dropped, exterior rings counter-clockwise and holes clockwise (RFC 7946).
fn tidy(shape: &MultiPolygon<f64>) -> MultiPolygon<f64> {
    fn ring(ls: &LineString<f64>) -> Option<LineString<f64>> {
        let mut out: Vec<Coord> = Vec::with_capacity(ls.0.len());
        for c in ls.coords() {
            let c = round_coord(*c);
            if out.last() != Some(&c) {
                out.push(c);
            }
        }
        if out.len() > 1 && out.first() == out.last() {
            out.pop();
        }
        if out.len() < 3 {
            return None;
        }
        let first = out[0];
        out.push(first);
        let ls = LineString::new(out);
        (Polygon::new(ls.clone(), vec![]).unsigned_area() > 0.0).then_some(ls)
    }
    let polygons = shape
        .iter()
        .filter_map(|p| {
            let exterior = ring(p.exterior())?;
            let holes = p.interiors().iter().filter_map(ring).collect();
            Some(Polygon::new(exterior, holes))
        })
        .collect();
    MultiPolygon::new(polygons).orient(Direction::Default)
}

/// Prato's boundary from the province's GeoJSON.
fn prato_boundary() -> Result<MultiPolygon<f64>, String> {
    let doc: Json = serde_json::from_str(PROVINCE_GEOJSON)
        .map_err(|e| format!("prato_province_municipalities.geojson: {e}"))?;
    let feature = doc["features"]
        .as_array()
        .and_then(|fs| {
            fs.iter()
                .find(|f| f["properties"]["com_istat_code"] == PRATO_ISTAT_CODE)
        })
        .ok_or_else(|| {
            format!("prato_province_municipalities.geojson: no feature {PRATO_ISTAT_CODE}")
        })?;
    let geometry = &feature["geometry"];
    let bad = |what: &str| format!("prato_province_municipalities.geojson: Prato's {what}");
    let ring = |r: &Json| -> Result<LineString<f64>, String> {
        r.as_array()
            .ok_or_else(|| bad("ring is not an array"))?
            .iter()
            .map(|p| match (p[0].as_f64(), p[1].as_f64()) {
                (Some(x), Some(y)) => Ok(Coord { x, y }),
                _ => Err(bad("position is not two numbers")),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(LineString::new)
    };
    let polygon = |p: &Json| -> Result<Polygon<f64>, String> {
        let rings = p.as_array().ok_or_else(|| bad("polygon is not an array"))?;
        let (exterior, holes) = rings
            .split_first()
            .ok_or_else(|| bad("polygon has no ring"))?;
        Ok(Polygon::new(
            ring(exterior)?,
            holes.iter().map(ring).collect::<Result<_, _>>()?,
        ))
    };
    let coordinates = &geometry["coordinates"];
    let polygons = match geometry["type"].as_str() {
        Some("Polygon") => vec![polygon(coordinates)?],
        Some("MultiPolygon") => coordinates
            .as_array()
            .ok_or_else(|| bad("multipolygon is not an array"))?
            .iter()
            .map(polygon)
            .collect::<Result<_, _>>()?,
        _ => return Err(bad("geometry is not a (multi)polygon")),
    };
    Ok(MultiPolygon::new(polygons))
}

fn json_str(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

/// A FeatureCollection with foreign members `name`, `synthetic`, `note` and `attribution`,
/// one feature per line, geometries as MultiPolygons.
fn feature_collection<'a>(
    name: &str,
    note: &str,
    features: impl Iterator<Item = (String, &'a MultiPolygon<f64>)>,
) -> String {
    let mut out = format!(
        "{{\"type\":\"FeatureCollection\",\"name\":{},\"synthetic\":true,\"note\":{},\
         \"attribution\":{},\"features\":[\n",
        json_str(name),
        json_str(note),
        json_str(ATTRIBUTION)
    );
    let mut first = true;
    for (properties, shape) in features {
        if !first {
            out.push_str(",\n");
        }
        first = false;
        out.push_str("{\"type\":\"Feature\",\"properties\":");
        out.push_str(&properties);
        out.push_str(",\"geometry\":{\"type\":\"MultiPolygon\",\"coordinates\":[");
        for (pi, polygon) in shape.iter().enumerate() {
            out.push_str(if pi == 0 { "[" } else { ",[" });
            let rings = std::iter::once(polygon.exterior()).chain(polygon.interiors());
            for (ri, ring) in rings.enumerate() {
                out.push_str(if ri == 0 { "[" } else { ",[" });
                for (ci, c) in ring.coords().enumerate() {
                    let sep = if ci == 0 { "" } else { "," };
                    // Values are already rounded to 6 decimals: Display prints the shortest
                    // text that reads back as the same number.
                    let _ = write!(out, "{sep}[{},{}]", c.x, c.y);
                }
                out.push(']');
            }
            out.push(']');
        }
        out.push_str("]}}");
    }
    out.push_str("\n]}\n");
    out
}
