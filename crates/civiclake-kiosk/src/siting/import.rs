//! Importers of the optimiser's inputs.
//!
//! - **ISTAT census sections**: the data per section (`R<region>_indicatori_<year>_sezioni.csv`:
//!   `;`-separated, UTF-8 or Latin-1; the section code in `SEZ21_ID`, `SEZ2011`, `SEZ21` or
//!   `SEZ`; residents in `P1`; residents aged 65–69, 70–74 and 75+ in `P27`, `P28`, `P29`;
//!   the municipality in `PROCOM`) joined by section code with the boundaries (ISTAT's
//!   "basi territoriali" shapefiles, in UTM zone 32N, or the same as GeoJSON): each section's
//!   demand point is its centroid.
//! - **GeoJSON demand**: points or polygons (their centroid) with `population` and
//!   `elderly` properties.
//! - **CSV** demand (`id,lon,lat,population,elderly[,observed]`), candidate sites
//!   (`id,lon,lat[,name][,kind][,existing][,fixed]`, or GeoJSON points with the same
//!   properties) and distance matrices (`demand_id,site_id,metres`).

use super::SitingError;
use super::instance::{DemandPoint, Site};
use geo::{Centroid, Coord, LineString, MapCoords, MultiPolygon, Polygon};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// Column names that may hold a census section's code, in order of preference.
pub const SECTION_CODE_FIELDS: [&str; 5] = ["SEZ21_ID", "SEZ2011", "SEZ21", "SEZ", "SEZ2001"];
/// ISTAT's column of residents.
pub const POPULATION_FIELD: &str = "P1";
/// ISTAT's columns of residents aged 65–69, 70–74 and 75 and over.
pub const ELDERLY_FIELDS: [&str; 3] = ["P27", "P28", "P29"];

/// Residents of one census section.
#[derive(Debug, Clone, PartialEq)]
pub struct SectionPopulation {
    /// The section code.
    pub code: String,
    /// The municipality's ISTAT code (`PROCOM`), when the file has it.
    pub municipality: Option<String>,
    /// Residents.
    pub population: f64,
    /// Residents aged 65+.
    pub elderly: f64,
}

/// The place of one census section.
#[derive(Debug, Clone, PartialEq)]
pub struct SectionPlace {
    /// The section code.
    pub code: String,
    /// Centroid longitude, degrees WGS84.
    pub lon: f64,
    /// Centroid latitude, degrees WGS84.
    pub lat: f64,
    /// Its outline (WGS84), for maps.
    pub shape: MultiPolygon<f64>,
}

/// Coordinates of a boundary file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Crs {
    /// Longitude and latitude in degrees (EPSG:4326).
    Degrees,
    /// WGS84 / UTM, northern hemisphere (EPSG:326zz): ISTAT's boundaries are zone 32.
    UtmNorth(u8),
}

impl std::str::FromStr for Crs {
    type Err = SitingError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let code = s.trim().to_ascii_uppercase();
        let code = code.strip_prefix("EPSG:").unwrap_or(&code);
        match code {
            "4326" => Ok(Crs::Degrees),
            c if c.len() == 5 && c.starts_with("326") => match c[3..].parse::<u8>() {
                Ok(z @ 1..=60) => Ok(Crs::UtmNorth(z)),
                _ => Err(SitingError::invalid(format!(
                    "unknown coordinate system {s}"
                ))),
            },
            _ => Err(SitingError::invalid(format!(
                "unknown coordinate system {s}: EPSG:4326 (degrees) or EPSG:326zz (WGS84 / UTM zone zz N)"
            ))),
        }
    }
}

/// What an ISTAT import joined.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct JoinReport {
    /// Sections with both residents and a boundary.
    pub matched: usize,
    /// Sections of the data without a boundary (skipped).
    pub without_boundary: usize,
    /// Boundaries without data (skipped).
    pub without_data: usize,
    /// Sections of other municipalities (skipped).
    pub other_municipality: usize,
}

fn decode(bytes: &[u8]) -> String {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_string(),
        // ISTAT's older files are Latin-1: every byte is the code point of the same value.
        Err(_) => bytes.iter().map(|&b| char::from(b)).collect(),
    }
}

fn delimiter(text: &str) -> u8 {
    let header = text.lines().next().unwrap_or("");
    if header.matches(';').count() > header.matches(',').count() {
        b';'
    } else {
        b','
    }
}

struct Table {
    header: Vec<String>,
    rows: Vec<csv::StringRecord>,
    delimiter: u8,
}

impl Table {
    fn read(bytes: &[u8], what: &str) -> Result<Self, SitingError> {
        let text = decode(bytes);
        let delimiter = delimiter(&text);
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(delimiter)
            .flexible(false)
            .trim(csv::Trim::All)
            .from_reader(text.as_bytes());
        let header = reader
            .headers()
            .map_err(|e| SitingError::invalid(format!("{what}: {e}")))?
            .iter()
            .map(|h| h.to_string())
            .collect();
        let mut rows = Vec::new();
        for row in reader.records() {
            rows.push(row.map_err(|e| SitingError::invalid(format!("{what}: {e}")))?);
        }
        Ok(Self {
            header,
            rows,
            delimiter,
        })
    }

    /// Index of the first of `names` in the header (case-insensitive).
    fn find(&self, names: &[&str]) -> Option<usize> {
        names
            .iter()
            .find_map(|n| self.header.iter().position(|h| h.eq_ignore_ascii_case(n)))
    }

    fn require(&self, names: &[&str], what: &str) -> Result<usize, SitingError> {
        self.find(names).ok_or_else(|| {
            SitingError::invalid(format!(
                "{what}: no column {} (columns: {})",
                names.join(" or "),
                self.header.join(", ")
            ))
        })
    }

    /// The number in column `col` of row `r` (line r + 2); empty is `empty`.
    fn number(
        &self,
        r: usize,
        col: usize,
        empty: Option<f64>,
        what: &str,
    ) -> Result<f64, SitingError> {
        let raw = self.rows[r].get(col).unwrap_or("");
        if raw.is_empty()
            && let Some(v) = empty
        {
            return Ok(v);
        }
        let text = if self.delimiter == b';' {
            raw.replace(',', ".")
        } else {
            raw.to_string()
        };
        text.parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .ok_or_else(|| {
                SitingError::invalid(format!(
                    "{what}: line {}, column {}: '{raw}' is not a number",
                    r + 2,
                    self.header[col]
                ))
            })
    }

    fn text(&self, r: usize, col: usize) -> String {
        self.rows[r].get(col).unwrap_or("").to_string()
    }

    fn flag(&self, r: usize, col: Option<usize>, what: &str) -> Result<bool, SitingError> {
        let Some(col) = col else { return Ok(false) };
        match self.text(r, col).to_ascii_lowercase().as_str() {
            "" | "false" | "0" | "no" | "n" => Ok(false),
            "true" | "1" | "yes" | "y" => Ok(true),
            other => Err(SitingError::invalid(format!(
                "{what}: line {}, column {}: '{other}' is not true or false",
                r + 2,
                self.header[col]
            ))),
        }
    }
}

/// Reads ISTAT's census data per section.
pub fn istat_sections_csv(bytes: &[u8]) -> Result<Vec<SectionPopulation>, SitingError> {
    let what = "ISTAT census data";
    let t = Table::read(bytes, what)?;
    let code = t.require(&SECTION_CODE_FIELDS, what)?;
    let pop = t.require(&[POPULATION_FIELD], what)?;
    let old = ELDERLY_FIELDS
        .iter()
        .map(|f| t.require(&[f], what))
        .collect::<Result<Vec<_>, _>>()?;
    let municipality = t.find(&["PROCOM"]);
    let mut out = Vec::with_capacity(t.rows.len());
    for r in 0..t.rows.len() {
        let population = t.number(r, pop, Some(0.0), what)?;
        let mut elderly = 0.0;
        for &c in &old {
            elderly += t.number(r, c, Some(0.0), what)?;
        }
        if population < 0.0 || elderly < 0.0 || elderly > population {
            return Err(SitingError::invalid(format!(
                "{what}: line {}: {elderly} residents aged 65+ of {population} residents",
                r + 2
            )));
        }
        let c = normalise_code(&t.text(r, code));
        if c.is_empty() {
            return Err(SitingError::invalid(format!(
                "{what}: line {}: no section code",
                r + 2
            )));
        }
        out.push(SectionPopulation {
            code: c,
            municipality: municipality.map(|m| normalise_code(&t.text(r, m))),
            population,
            elderly,
        });
    }
    Ok(out)
}

/// `1000050000001.0` and `1000050000001` are the same code (numeric fields of a .dbf).
fn normalise_code(raw: &str) -> String {
    let raw = raw.trim();
    match raw.strip_suffix(".0") {
        Some(int) if !int.is_empty() && int.bytes().all(|b| b.is_ascii_digit()) => int.to_string(),
        _ => raw.to_string(),
    }
}

/// Reads section boundaries from a shapefile (`.shp` with its `.dbf`; the coordinate system
/// from `crs`, else the `.prj` beside it, else degrees when every coordinate fits, else
/// ISTAT's UTM zone 32N).
pub fn boundaries_shapefile(
    path: &Path,
    crs: Option<Crs>,
) -> Result<Vec<SectionPlace>, SitingError> {
    let name = path.display().to_string();
    let err = |m: String| SitingError::invalid(format!("{name}: {m}"));
    let mut reader = shapefile::Reader::from_path(path).map_err(|e| err(e.to_string()))?;
    let prj = std::fs::read_to_string(path.with_extension("prj")).ok();
    let mut raw = Vec::new();
    for (k, item) in reader.iter_shapes_and_records().enumerate() {
        let (shape, record) = item.map_err(|e| err(e.to_string()))?;
        let code = SECTION_CODE_FIELDS
            .iter()
            .find_map(|f| field_text(&record, f))
            .ok_or_else(|| {
                err(format!(
                    "record {} has none of the fields {}",
                    k + 1,
                    SECTION_CODE_FIELDS.join(", ")
                ))
            })?;
        let polygon = match shape {
            shapefile::Shape::Polygon(p) => multipolygon(p.rings()),
            shapefile::Shape::PolygonZ(p) => multipolygon(p.rings()),
            shapefile::Shape::PolygonM(p) => multipolygon(p.rings()),
            shapefile::Shape::NullShape => continue,
            other => {
                return Err(err(format!(
                    "record {} (section {code}) is a {}, not a polygon",
                    k + 1,
                    other.shapetype()
                )));
            }
        };
        raw.push((code, polygon));
    }
    let crs = match crs {
        Some(c) => c,
        None => match prj.as_deref().map(crs_of_prj) {
            Some(Some(c)) => c,
            Some(None) => {
                return Err(err(
                    "the .prj names a coordinate system other than WGS84 degrees or WGS84 / UTM north; pass the system explicitly"
                        .into(),
                ));
            }
            None => {
                let degrees = raw.iter().all(|(_, m)| {
                    m.0.iter().all(|p| {
                        p.exterior()
                            .coords()
                            .all(|c| c.x.abs() <= 180.0 && c.y.abs() <= 90.0)
                    })
                });
                if degrees {
                    Crs::Degrees
                } else {
                    Crs::UtmNorth(32)
                }
            }
        },
    };
    raw.into_iter()
        .map(|(code, shape)| place(code, shape, crs).map_err(err))
        .collect()
}

fn field_text(record: &shapefile::dbase::Record, field: &str) -> Option<String> {
    use shapefile::dbase::FieldValue as F;
    let value = record
        .get(field)
        .or_else(|| record.get(&field.to_ascii_lowercase()))?;
    let text = match value {
        F::Character(Some(s)) => s.trim().to_string(),
        F::Numeric(Some(n)) => format!("{n:.0}"),
        F::Float(Some(n)) => format!("{n:.0}"),
        F::Double(n) => format!("{n:.0}"),
        F::Integer(n) => n.to_string(),
        _ => return None,
    };
    (!text.is_empty()).then_some(text)
}

/// The coordinate system a `.prj` (ESRI WKT) names, if it is one we convert.
pub fn crs_of_prj(prj: &str) -> Option<Crs> {
    let up = prj.to_ascii_uppercase();
    if !up.contains("WGS") || up.contains("ED50") || up.contains("ROMA") {
        return None;
    }
    if !up.starts_with("PROJCS") {
        return up.starts_with("GEOGCS").then_some(Crs::Degrees);
    }
    // "WGS_1984_UTM_Zone_32N", "WGS 84 / UTM zone 32N"
    let at = up
        .find("UTM_ZONE_")
        .map(|i| i + 9)
        .or_else(|| up.find("UTM ZONE ").map(|i| i + 9))?;
    let rest = &up[at..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let zone: u8 = digits.parse().ok()?;
    (rest[digits.len()..].starts_with('N') && (1..=60).contains(&zone))
        .then_some(Crs::UtmNorth(zone))
}

/// A shapefile polygon's rings (outer ones start a polygon, inner ones are its holes), in
/// the file's coordinates.
fn multipolygon<P: shapefile::record::traits::HasXY>(
    rings: &[shapefile::PolygonRing<P>],
) -> MultiPolygon<f64> {
    let mut polygons: Vec<Polygon<f64>> = Vec::new();
    for r in rings {
        let outer = matches!(r, shapefile::PolygonRing::Outer(_));
        let ring = LineString::new(
            r.points()
                .iter()
                .map(|p| Coord { x: p.x(), y: p.y() })
                .collect(),
        );
        if outer || polygons.is_empty() {
            polygons.push(Polygon::new(ring, vec![]));
        } else if let Some(last) = polygons.last_mut() {
            last.interiors_push(ring);
        }
    }
    MultiPolygon::new(polygons)
}

fn place(code: String, shape: MultiPolygon<f64>, crs: Crs) -> Result<SectionPlace, String> {
    // The centroid in the file's own coordinates (metres for UTM), then converted.
    let centroid = shape
        .centroid()
        .ok_or_else(|| format!("section {code} has an empty outline"))?;
    let to_degrees = |c: Coord<f64>| -> Coord<f64> {
        match crs {
            Crs::Degrees => c,
            Crs::UtmNorth(zone) => {
                let (lon, lat) = utm_to_wgs84(c.x, c.y, zone);
                Coord { x: lon, y: lat }
            }
        }
    };
    let c = to_degrees(centroid.0);
    if !(c.x.abs() <= 180.0 && c.y.abs() <= 90.0) {
        return Err(format!(
            "section {code}: its centroid ({}, {}) is not a place on Earth in {crs:?}",
            centroid.x(),
            centroid.y()
        ));
    }
    Ok(SectionPlace {
        code,
        lon: c.x,
        lat: c.y,
        shape: shape.map_coords(to_degrees),
    })
}

/// Reads section boundaries from GeoJSON (WGS84 degrees): Polygon or MultiPolygon features
/// whose section code is a property named as in [`SECTION_CODE_FIELDS`] (or `code`).
pub fn boundaries_geojson(text: &str) -> Result<Vec<SectionPlace>, SitingError> {
    let features = features(text, "section boundaries")?;
    let mut out = Vec::with_capacity(features.len());
    for (k, f) in features.iter().enumerate() {
        let code = SECTION_CODE_FIELDS
            .iter()
            .chain(&["code"])
            .find_map(|name| property_text(f, name))
            .ok_or_else(|| {
                SitingError::invalid(format!(
                    "section boundaries: feature #{} has none of the properties {}, code",
                    k + 1,
                    SECTION_CODE_FIELDS.join(", ")
                ))
            })?;
        let shape = match geometry(f, k, "section boundaries")? {
            geo::Geometry::Polygon(p) => MultiPolygon::new(vec![p]),
            geo::Geometry::MultiPolygon(m) => m,
            _ => {
                return Err(SitingError::invalid(format!(
                    "section boundaries: feature #{} (section {code}) is not a polygon",
                    k + 1
                )));
            }
        };
        out.push(place(normalise_code(&code), shape, Crs::Degrees).map_err(SitingError::invalid)?);
    }
    Ok(out)
}

/// Joins census data and boundaries by section code into demand points (centroids), keeping
/// the municipality `municipality` (ISTAT code, e.g. `100005` for Prato) when given.
pub fn join_sections(
    data: &[SectionPopulation],
    places: &[SectionPlace],
    municipality: Option<&str>,
) -> (Vec<DemandPoint>, JoinReport) {
    let by_code: HashMap<&str, &SectionPlace> =
        places.iter().map(|p| (p.code.as_str(), p)).collect();
    let mut report = JoinReport::default();
    let mut used = std::collections::HashSet::new();
    let mut out = Vec::new();
    for d in data {
        if let (Some(want), Some(have)) = (municipality, d.municipality.as_deref())
            && want != have
        {
            report.other_municipality += 1;
            continue;
        }
        match by_code.get(d.code.as_str()) {
            Some(p) => {
                used.insert(d.code.as_str());
                report.matched += 1;
                out.push(DemandPoint {
                    id: d.code.clone(),
                    lon: p.lon,
                    lat: p.lat,
                    population: d.population,
                    elderly: d.elderly,
                    observed: 0.0,
                });
            }
            None => report.without_boundary += 1,
        }
    }
    report.without_data = places
        .iter()
        .filter(|p| !used.contains(p.code.as_str()))
        .count();
    (out, report)
}

fn features(text: &str, what: &str) -> Result<Vec<geojson::Feature>, SitingError> {
    let json: geojson::GeoJson = text
        .parse()
        .map_err(|e| SitingError::invalid(format!("{what}: not GeoJSON: {e}")))?;
    match json {
        geojson::GeoJson::FeatureCollection(fc) => Ok(fc.features),
        geojson::GeoJson::Feature(f) => Ok(vec![f]),
        geojson::GeoJson::Geometry(_) => Err(SitingError::invalid(format!(
            "{what}: a bare geometry: give a FeatureCollection"
        ))),
    }
}

fn geometry(f: &geojson::Feature, k: usize, what: &str) -> Result<geo::Geometry<f64>, SitingError> {
    let g = f.geometry.as_ref().ok_or_else(|| {
        SitingError::invalid(format!("{what}: feature #{} has no geometry", k + 1))
    })?;
    geo::Geometry::try_from(g)
        .map_err(|e| SitingError::invalid(format!("{what}: feature #{}: {e}", k + 1)))
}

fn property_text(f: &geojson::Feature, name: &str) -> Option<String> {
    let v = f
        .property(name)
        .or_else(|| f.property(name.to_ascii_lowercase()))?;
    match v {
        serde_json::Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        serde_json::Value::Number(n) => Some(normalise_code(&n.to_string())),
        _ => None,
    }
}

fn property_number(
    f: &geojson::Feature,
    names: &[&str],
    k: usize,
    what: &str,
) -> Result<Option<f64>, SitingError> {
    for name in names {
        if let Some(v) = f.property(*name) {
            return match v {
                serde_json::Value::Number(n) => Ok(n.as_f64()),
                serde_json::Value::Null => Ok(None),
                other => Err(SitingError::invalid(format!(
                    "{what}: feature #{}: {name} is {other}, not a number",
                    k + 1
                ))),
            };
        }
    }
    Ok(None)
}

fn point_of(g: &geo::Geometry<f64>) -> Option<(f64, f64)> {
    match g {
        geo::Geometry::Point(p) => Some((p.x(), p.y())),
        other => other.centroid().map(|c| (c.x(), c.y())),
    }
}

/// Reads demand points from GeoJSON: Point features, or polygons (their centroid), with a
/// `population` (or `P1`) property and `elderly` (or the sum of `P27`, `P28`, `P29`); the id
/// is the feature's `id`, else its `id`, `name` or section-code property, else its position.
pub fn demand_geojson(text: &str) -> Result<Vec<DemandPoint>, SitingError> {
    let what = "demand GeoJSON";
    let features = features(text, what)?;
    let mut out = Vec::with_capacity(features.len());
    for (k, f) in features.iter().enumerate() {
        let id = match &f.id {
            Some(geojson::feature::Id::String(s)) => s.clone(),
            Some(geojson::feature::Id::Number(n)) => n.to_string(),
            None => ["id", "name"]
                .iter()
                .chain(SECTION_CODE_FIELDS.iter())
                .find_map(|n| property_text(f, n))
                .unwrap_or_else(|| format!("feature-{}", k + 1)),
        };
        let g = geometry(f, k, what)?;
        let (lon, lat) = point_of(&g).ok_or_else(|| {
            SitingError::invalid(format!(
                "{what}: feature #{} ({id}) has an empty geometry",
                k + 1
            ))
        })?;
        let population = property_number(f, &["population", "P1"], k, what)?.ok_or_else(|| {
            SitingError::invalid(format!(
                "{what}: feature #{} ({id}) has no property population (or P1)",
                k + 1
            ))
        })?;
        let elderly = match property_number(f, &["elderly", "population_65"], k, what)? {
            Some(v) => v,
            None => {
                let mut sum = 0.0;
                for field in ELDERLY_FIELDS {
                    sum += property_number(f, &[field], k, what)?.unwrap_or(0.0);
                }
                sum
            }
        };
        let observed = property_number(f, &["observed"], k, what)?.unwrap_or(0.0);
        out.push(DemandPoint {
            id,
            lon,
            lat,
            population,
            elderly,
            observed,
        });
    }
    Ok(out)
}

/// Reads demand points from CSV: `id,lon,lat,population,elderly[,observed]`.
pub fn demand_csv(bytes: &[u8]) -> Result<Vec<DemandPoint>, SitingError> {
    let what = "demand CSV";
    let t = Table::read(bytes, what)?;
    let id = t.require(&["id"], what)?;
    let lon = t.require(&["lon", "longitude"], what)?;
    let lat = t.require(&["lat", "latitude"], what)?;
    let pop = t.require(&["population"], what)?;
    let old = t.find(&["elderly", "population_65"]);
    let observed = t.find(&["observed"]);
    (0..t.rows.len())
        .map(|r| {
            Ok(DemandPoint {
                id: t.text(r, id),
                lon: t.number(r, lon, None, what)?,
                lat: t.number(r, lat, None, what)?,
                population: t.number(r, pop, None, what)?,
                elderly: old.map_or(Ok(0.0), |c| t.number(r, c, Some(0.0), what))?,
                observed: observed.map_or(Ok(0.0), |c| t.number(r, c, Some(0.0), what))?,
            })
        })
        .collect()
}

/// Reads candidate sites from CSV: `id,lon,lat[,name][,kind][,existing][,fixed]`.
pub fn sites_csv(bytes: &[u8]) -> Result<Vec<Site>, SitingError> {
    let what = "sites CSV";
    let t = Table::read(bytes, what)?;
    let id = t.require(&["id"], what)?;
    let lon = t.require(&["lon", "longitude"], what)?;
    let lat = t.require(&["lat", "latitude"], what)?;
    let name = t.find(&["name"]);
    let kind = t.find(&["kind"]);
    let existing = t.find(&["existing"]);
    let fixed = t.find(&["fixed"]);
    (0..t.rows.len())
        .map(|r| {
            let id_text = t.text(r, id);
            Ok(Site {
                name: name.map_or_else(|| id_text.clone(), |c| t.text(r, c)),
                id: id_text,
                lon: t.number(r, lon, None, what)?,
                lat: t.number(r, lat, None, what)?,
                kind: kind.map_or_else(String::new, |c| t.text(r, c)),
                existing: t.flag(r, existing, what)?,
                fixed: t.flag(r, fixed, what)?,
            })
        })
        .collect()
}

/// Reads candidate sites from GeoJSON Point features with `id` (or the feature id), `name`,
/// `kind`, `existing` and `fixed` properties.
pub fn sites_geojson(text: &str) -> Result<Vec<Site>, SitingError> {
    let what = "sites GeoJSON";
    let features = features(text, what)?;
    let mut out = Vec::with_capacity(features.len());
    for (k, f) in features.iter().enumerate() {
        let id = match &f.id {
            Some(geojson::feature::Id::String(s)) => s.clone(),
            Some(geojson::feature::Id::Number(n)) => n.to_string(),
            None => property_text(f, "id").ok_or_else(|| {
                SitingError::invalid(format!("{what}: feature #{} has no id", k + 1))
            })?,
        };
        let g = geometry(f, k, what)?;
        let (lon, lat) = point_of(&g).ok_or_else(|| {
            SitingError::invalid(format!(
                "{what}: feature #{} ({id}) has an empty geometry",
                k + 1
            ))
        })?;
        let flag = |name: &str| -> Result<bool, SitingError> {
            match f.property(name) {
                None | Some(serde_json::Value::Null) => Ok(false),
                Some(serde_json::Value::Bool(b)) => Ok(*b),
                Some(other) => Err(SitingError::invalid(format!(
                    "{what}: feature #{} ({id}): {name} is {other}, not true or false",
                    k + 1
                ))),
            }
        };
        out.push(Site {
            name: property_text(f, "name").unwrap_or_else(|| id.clone()),
            kind: property_text(f, "kind").unwrap_or_default(),
            existing: flag("existing")?,
            fixed: flag("fixed")?,
            id,
            lon,
            lat,
        });
    }
    Ok(out)
}

/// Reads a distance matrix from CSV: `demand_id,site_id,metres`.
pub fn distances_csv(bytes: &[u8]) -> Result<Vec<(String, String, f64)>, SitingError> {
    let what = "distance matrix";
    let t = Table::read(bytes, what)?;
    let d = t.require(&["demand_id"], what)?;
    let s = t.require(&["site_id"], what)?;
    let m = t.require(&["metres", "meters", "distance_m"], what)?;
    (0..t.rows.len())
        .map(|r| Ok((t.text(r, d), t.text(r, s), t.number(r, m, None, what)?)))
        .collect()
}

/// Reads demand from a file by its extension: `.csv` (the normalised layout), `.geojson`
/// or `.json`.
pub fn demand_file(path: &Path) -> Result<Vec<DemandPoint>, SitingError> {
    list_file(path, "demand files", demand_csv, demand_geojson)
}

/// Reads candidate sites from a file by its extension: `.csv`, `.geojson` or `.json`.
pub fn sites_file(path: &Path) -> Result<Vec<Site>, SitingError> {
    list_file(path, "site files", sites_csv, sites_geojson)
}

/// A list read from a file by its extension with `csv` or `geojson`; errors name the file.
fn list_file<T>(
    path: &Path,
    what: &str,
    csv: fn(&[u8]) -> Result<Vec<T>, SitingError>,
    geojson: fn(&str) -> Result<Vec<T>, SitingError>,
) -> Result<Vec<T>, SitingError> {
    let bytes = read(path)?;
    let named = |e: SitingError| SitingError::invalid(format!("{}: {e}", path.display()));
    match extension(path).as_str() {
        "csv" => csv(&bytes).map_err(named),
        "geojson" | "json" => geojson(&decode(&bytes)).map_err(named),
        other => Err(SitingError::invalid(format!(
            "{}: {what} are .csv or .geojson, not .{other}",
            path.display()
        ))),
    }
}

/// Reads section boundaries by extension: `.shp` (with `.dbf`, `.prj`) or `.geojson`.
pub fn boundaries_file(path: &Path, crs: Option<Crs>) -> Result<Vec<SectionPlace>, SitingError> {
    match extension(path).as_str() {
        "shp" => boundaries_shapefile(path, crs),
        "geojson" | "json" => boundaries_geojson(&decode(&read(path)?))
            .map_err(|e| SitingError::invalid(format!("{}: {e}", path.display()))),
        other => Err(SitingError::invalid(format!(
            "{}: boundaries are .shp or .geojson, not .{other}",
            path.display()
        ))),
    }
}

fn read(path: &Path) -> Result<Vec<u8>, SitingError> {
    std::fs::read(path).map_err(|e| SitingError::invalid(format!("{}: {e}", path.display())))
}

fn extension(path: &Path) -> String {
    path.extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase()
}

/// Writes demand points in the normalised CSV layout.
pub fn write_demand_csv(points: &[DemandPoint]) -> String {
    let mut out = String::from("id,lon,lat,population,elderly,observed\n");
    for p in points {
        out.push_str(&format!(
            "{},{:.6},{:.6},{},{},{}\n",
            csv_field(&p.id),
            p.lon,
            p.lat,
            p.population,
            p.elderly,
            p.observed
        ));
    }
    out
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Sections' outlines by code, for maps.
pub fn outlines(places: &[SectionPlace]) -> BTreeMap<String, MultiPolygon<f64>> {
    places
        .iter()
        .map(|p| (p.code.clone(), p.shape.clone()))
        .collect()
}

/// From WGS84 / UTM (northern hemisphere, zone `zone`) to longitude and latitude in degrees
/// (Snyder's inverse transverse Mercator series: well under a metre within a zone).
pub fn utm_to_wgs84(easting: f64, northing: f64, zone: u8) -> (f64, f64) {
    const A: f64 = 6_378_137.0;
    const F: f64 = 1.0 / 298.257_223_563;
    const K0: f64 = 0.9996;
    let e2 = F * (2.0 - F);
    let ep2 = e2 / (1.0 - e2);
    let x = easting - 500_000.0;
    let m = northing / K0;
    let mu = m / (A * (1.0 - e2 / 4.0 - 3.0 * e2 * e2 / 64.0 - 5.0 * e2 * e2 * e2 / 256.0));
    let s = (1.0 - e2).sqrt();
    let e1 = (1.0 - s) / (1.0 + s);
    let phi1 = mu
        + (3.0 * e1 / 2.0 - 27.0 * e1.powi(3) / 32.0) * (2.0 * mu).sin()
        + (21.0 * e1 * e1 / 16.0 - 55.0 * e1.powi(4) / 32.0) * (4.0 * mu).sin()
        + (151.0 * e1.powi(3) / 96.0) * (6.0 * mu).sin()
        + (1097.0 * e1.powi(4) / 512.0) * (8.0 * mu).sin();
    let (sin1, cos1) = phi1.sin_cos();
    let tan1 = sin1 / cos1;
    let c1 = ep2 * cos1 * cos1;
    let t1 = tan1 * tan1;
    let n1 = A / (1.0 - e2 * sin1 * sin1).sqrt();
    let r1 = A * (1.0 - e2) / (1.0 - e2 * sin1 * sin1).powf(1.5);
    let d = x / (n1 * K0);
    let lat = phi1
        - (n1 * tan1 / r1)
            * (d * d / 2.0
                - (5.0 + 3.0 * t1 + 10.0 * c1 - 4.0 * c1 * c1 - 9.0 * ep2) * d.powi(4) / 24.0
                + (61.0 + 90.0 * t1 + 298.0 * c1 + 45.0 * t1 * t1 - 252.0 * ep2 - 3.0 * c1 * c1)
                    * d.powi(6)
                    / 720.0);
    let lon0 = f64::from(zone) * 6.0 - 183.0;
    let lon = lon0.to_radians()
        + (d - (1.0 + 2.0 * t1 + c1) * d.powi(3) / 6.0
            + (5.0 - 2.0 * c1 + 28.0 * t1 - 3.0 * c1 * c1 + 8.0 * ep2 + 24.0 * t1 * t1)
                * d.powi(5)
                / 120.0)
            / cos1;
    (lon.to_degrees(), lat.to_degrees())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utm_32n_matches_proj() {
        // Reference values from PROJ (EPSG:32632 → EPSG:4326).
        for (e, n, lon, lat) in [
            (668_000.0, 4_860_000.0, 11.090_999_30, 43.873_967_57),
            (500_000.0, 4_000_000.0, 9.0, 36.144_718_10),
            (670_512.3, 4_861_234.5, 11.122_641_88, 43.884_498_71),
        ] {
            let (x, y) = utm_to_wgs84(e, n, 32);
            // 1e-6° is about 0.1 m.
            assert!(
                (x - lon).abs() < 2e-6 && (y - lat).abs() < 2e-6,
                "{e},{n}: {x},{y}"
            );
        }
    }

    #[test]
    fn prj_names_the_coordinate_system() {
        let utm = r#"PROJCS["WGS_1984_UTM_Zone_32N",GEOGCS["GCS_WGS_1984",DATUM["D_WGS_1984",SPHEROID["WGS_1984",6378137.0,298.257223563]]]]"#;
        assert_eq!(crs_of_prj(utm), Some(Crs::UtmNorth(32)));
        let geo = r#"GEOGCS["GCS_WGS_1984",DATUM["D_WGS_1984",SPHEROID["WGS_1984",6378137.0,298.257223563]]]"#;
        assert_eq!(crs_of_prj(geo), Some(Crs::Degrees));
        let ed50 = r#"PROJCS["ED_1950_UTM_Zone_32N",GEOGCS["GCS_European_1950",DATUM["D_European_1950"]]]"#;
        assert_eq!(crs_of_prj(ed50), None);
        assert_eq!("EPSG:32632".parse::<Crs>().unwrap(), Crs::UtmNorth(32));
        assert_eq!("4326".parse::<Crs>().unwrap(), Crs::Degrees);
        assert!("EPSG:3003".parse::<Crs>().is_err());
    }

    /// The layout of ISTAT's 2011 file, Latin-1, with one section of another municipality.
    const ISTAT_2011: &[u8] = b"CODREG;REGIONE;CODPRO;PROVINCIA;CODCOM;COMUNE;PROCOM;SEZ2011;NSEZ;ACE;CODLOC;CODASC;P1;P2;P3;P27;P28;P29\n\
9;Toscana;100;Prato;5;Prato;100005;1000050000001;1;1;10001;;250;120;130;20;15;10\n\
9;Toscana;100;Prato;5;Prato;100005;1000050000002;2;1;10001;;0;0;0;;;\n\
9;Toscana;100;Prato;1;Cantagallo;100001;1000010000001;1;1;10001;;40;20;20;5;5;5\n\
9;Toscana;100;Prato;5;Prato;100005;1000050000003;3;1;10001;;100;50;50;10;5;5\n";

    #[test]
    fn reads_istat_census_data() {
        let rows = istat_sections_csv(ISTAT_2011).unwrap();
        assert_eq!(rows.len(), 4);
        assert_eq!(
            rows[0],
            SectionPopulation {
                code: "1000050000001".into(),
                municipality: Some("100005".into()),
                population: 250.0,
                elderly: 45.0,
            }
        );
        assert_eq!((rows[1].population, rows[1].elderly), (0.0, 0.0));
        // Latin-1 text decodes.
        let latin1 = [
            ISTAT_2011,
            b"9;Valle d\xE2\x80;100;Prato;5;Prato;100005;1000050000009;9;1;1;;5;2;3;1;0;0\n",
        ]
        .concat();
        assert_eq!(istat_sections_csv(&latin1).unwrap().len(), 5);
        let missing = istat_sections_csv(b"SEZ2011;P1;P27;P28\n1;2;0;0\n").unwrap_err();
        assert_eq!(
            missing.to_string(),
            "ISTAT census data: no column P29 (columns: SEZ2011, P1, P27, P28)"
        );
        let bad = istat_sections_csv(b"SEZ2011;P1;P27;P28;P29\n1;tanti;0;0;0\n").unwrap_err();
        assert_eq!(
            bad.to_string(),
            "ISTAT census data: line 2, column P1: 'tanti' is not a number"
        );
        let more_old = istat_sections_csv(b"SEZ2011;P1;P27;P28;P29\n1;2;1;1;1\n").unwrap_err();
        assert_eq!(
            more_old.to_string(),
            "ISTAT census data: line 2: 3 residents aged 65+ of 2 residents"
        );
    }

    fn square_utm(e: f64, n: f64) -> Vec<shapefile::Point> {
        // Clockwise, as shapefiles want outer rings.
        vec![
            shapefile::Point::new(e, n),
            shapefile::Point::new(e, n + 200.0),
            shapefile::Point::new(e + 200.0, n + 200.0),
            shapefile::Point::new(e + 200.0, n),
            shapefile::Point::new(e, n),
        ]
    }

    #[test]
    fn reads_istat_boundaries_from_a_shapefile_in_utm_and_joins_them() {
        use shapefile::dbase::{FieldName, FieldValue, Record, TableWriterBuilder};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("R09_11_WGS84.shp");
        let table = TableWriterBuilder::new()
            .add_numeric_field(FieldName::try_from("SEZ2011").unwrap(), 13, 0)
            .add_character_field(FieldName::try_from("COMUNE").unwrap(), 30);
        let mut writer = shapefile::Writer::from_path(&path, table).unwrap();
        for (code, e, n) in [
            (1000050000001.0, 667_900.0, 4_859_900.0),
            (1000050000003.0, 670_412.3, 4_861_134.5),
            (1000050000004.0, 671_000.0, 4_862_000.0),
        ] {
            let polygon = shapefile::Polygon::new(shapefile::PolygonRing::Outer(square_utm(e, n)));
            let mut record = Record::default();
            record.insert("SEZ2011".to_string(), FieldValue::Numeric(Some(code)));
            record.insert(
                "COMUNE".to_string(),
                FieldValue::Character(Some("Prato".into())),
            );
            writer.write_shape_and_record(&polygon, &record).unwrap();
        }
        drop(writer);
        std::fs::write(
            path.with_extension("prj"),
            r#"PROJCS["WGS_1984_UTM_Zone_32N",GEOGCS["GCS_WGS_1984",DATUM["D_WGS_1984",SPHEROID["WGS_1984",6378137.0,298.257223563]]]]"#,
        )
        .unwrap();
        let places = boundaries_file(&path, None).unwrap();
        assert_eq!(places.len(), 3);
        assert_eq!(places[0].code, "1000050000001");
        // The centroid of the first square is (668000, 4860000): PROJ's 11.0909993, 43.8739676.
        assert!(
            (places[0].lon - 11.090_999_3).abs() < 2e-6,
            "{:?}",
            places[0]
        );
        assert!(
            (places[0].lat - 43.873_967_6).abs() < 2e-6,
            "{:?}",
            places[0]
        );
        let data = istat_sections_csv(ISTAT_2011).unwrap();
        let (demand, report) = join_sections(&data, &places, Some("100005"));
        assert_eq!(
            report,
            JoinReport {
                matched: 2,
                without_boundary: 1,
                without_data: 1,
                other_municipality: 1
            }
        );
        assert_eq!(demand.len(), 2);
        assert_eq!(demand[1].id, "1000050000003");
        assert!((demand[1].lon - 11.122_641_9).abs() < 2e-6);
        assert_eq!((demand[1].population, demand[1].elderly), (100.0, 20.0));
        // Without a .prj the coordinates tell: metres, so ISTAT's UTM 32N.
        std::fs::remove_file(path.with_extension("prj")).unwrap();
        let guessed = boundaries_file(&path, None).unwrap();
        assert_eq!(guessed, places);
    }

    #[test]
    fn reads_demand_and_sites_from_geojson_and_csv() {
        let geo = r#"{"type":"FeatureCollection","features":[
          {"type":"Feature","id":"a","properties":{"population":100,"elderly":30},"geometry":{"type":"Point","coordinates":[11.09,43.88]}},
          {"type":"Feature","properties":{"SEZ21_ID":"100005000002","P1":50,"P27":2,"P28":3,"P29":4},
           "geometry":{"type":"Polygon","coordinates":[[[11.0,43.8],[11.02,43.8],[11.02,43.82],[11.0,43.82],[11.0,43.8]]]}}]}"#;
        let d = demand_geojson(geo).unwrap();
        assert_eq!(d[0].id, "a");
        assert_eq!((d[0].population, d[0].elderly), (100.0, 30.0));
        assert_eq!(d[1].id, "100005000002");
        assert_eq!((d[1].population, d[1].elderly), (50.0, 9.0));
        assert!((d[1].lon - 11.01).abs() < 1e-9 && (d[1].lat - 43.81).abs() < 1e-9);
        let e = demand_geojson(&geo.replace("\"population\":100", "\"pop\":100")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "demand GeoJSON: feature #1 (a) has no property population (or P1)"
        );
        let csv = demand_csv(b"id,lon,lat,population,elderly\nx,11.1,43.9,10,2\n").unwrap();
        assert_eq!(csv[0].population, 10.0);
        assert_eq!(demand_csv(&write_demand_csv(&d).into_bytes()).unwrap(), d);
        let sites = sites_csv(b"id,name,lon,lat,kind,existing,fixed\nK1,Town hall,11.09,43.88,kiosk,true,false\nB2,School,11.1,43.87,school,,yes\n").unwrap();
        assert_eq!(sites.len(), 2);
        assert!(sites[0].existing && !sites[0].fixed && sites[1].fixed && !sites[1].existing);
        let e = sites_csv(b"id,lon,lat,existing\nK1,11,43,maybe\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "sites CSV: line 2, column existing: 'maybe' is not true or false"
        );
        let g = sites_geojson(r#"{"type":"FeatureCollection","features":[{"type":"Feature","properties":{"id":"K1","name":"Duomo","existing":true},"geometry":{"type":"Point","coordinates":[11.097,43.882]}}]}"#).unwrap();
        assert_eq!(
            (g[0].id.as_str(), g[0].name.as_str(), g[0].existing),
            ("K1", "Duomo", true)
        );
        let m = distances_csv(b"demand_id,site_id,metres\na,K1,120.5\n").unwrap();
        assert_eq!(m, vec![("a".to_string(), "K1".to_string(), 120.5)]);
    }
}
