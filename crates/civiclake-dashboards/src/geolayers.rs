//! Boundary layers for map panels: GeoJSON files of named polygons.

use std::collections::BTreeMap;
use std::path::Path;

use geo::{BoundingRect, Contains, MultiPolygon, Point, Rect};

use crate::error::DashboardError;

/// The loaded boundary layers, by name (the GeoJSON file stem).
#[derive(Debug, Clone, Default)]
pub struct GeoLayers {
    layers: BTreeMap<String, GeoLayer>,
}

/// One layer: the polygons of one GeoJSON file.
#[derive(Debug, Clone)]
pub struct GeoLayer {
    /// The layer name (file stem).
    pub name: String,
    /// The features, in file order.
    pub boundaries: Vec<Boundary>,
}

/// One named area (a GeoJSON feature with a Polygon or MultiPolygon geometry).
#[derive(Debug, Clone)]
pub struct Boundary {
    /// The feature's `name` property.
    pub name: String,
    /// The shape, coordinates as (longitude, latitude) in WGS 84.
    pub shape: MultiPolygon<f64>,
}

impl GeoLayers {
    /// No layers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads every `*.geojson` file of `dir` as a layer named by its file stem. A folder that
    /// does not exist gives no layers (maps then draw points only).
    pub fn load_dir(dir: &Path) -> Result<Self, DashboardError> {
        if !dir.exists() {
            return Ok(Self::new());
        }
        let files = crate::files_with_extension(dir, "geojson")?;
        let mut layers = Self::new();
        for path in files {
            let file = path.display().to_string();
            let text = std::fs::read_to_string(&path).map_err(|source| DashboardError::Io {
                path: path.clone(),
                source,
            })?;
            let name =
                path.file_stem()
                    .and_then(|s| s.to_str())
                    .ok_or_else(|| DashboardError::Geo {
                        file: file.clone(),
                        message: "the file name is not UTF-8".into(),
                    })?;
            let layer = GeoLayer::from_geojson(name, &text).map_err(|e| match e {
                DashboardError::Geo { message, .. } => DashboardError::Geo { file, message },
                other => other,
            })?;
            layers.insert(layer);
        }
        Ok(layers)
    }

    /// Adds a layer, replacing one of the same name.
    pub fn insert(&mut self, layer: GeoLayer) {
        self.layers.insert(layer.name.clone(), layer);
    }

    /// The layer with this name.
    pub fn get(&self, name: &str) -> Option<&GeoLayer> {
        self.layers.get(name)
    }

    /// The layer names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.layers.keys().map(String::as_str)
    }
}

impl GeoLayer {
    /// Reads a GeoJSON FeatureCollection (or a single Feature) whose features are Polygons or
    /// MultiPolygons with a string `name` property, in longitude/latitude (RFC 7946).
    /// Errors name `name` as the file.
    pub fn from_geojson(name: &str, text: &str) -> Result<Self, DashboardError> {
        let err = |message: String| DashboardError::Geo {
            file: name.to_string(),
            message,
        };
        let json: geojson::GeoJson = text.parse().map_err(|e| err(format!("not GeoJSON: {e}")))?;
        let features = match json {
            geojson::GeoJson::FeatureCollection(fc) => fc.features,
            geojson::GeoJson::Feature(f) => vec![f],
            geojson::GeoJson::Geometry(_) => {
                return Err(err(
                    "a bare geometry has no name: give a FeatureCollection of named features"
                        .into(),
                ));
            }
        };
        let mut boundaries = Vec::with_capacity(features.len());
        for (i, feature) in features.iter().enumerate() {
            let label = format!("feature #{}", i + 1);
            let fname = feature
                .property("name")
                .and_then(|v| v.as_str())
                .ok_or_else(|| err(format!("{label} has no string property `name`")))?
                .to_string();
            let geometry = feature
                .geometry
                .as_ref()
                .ok_or_else(|| err(format!("{label} (`{fname}`) has no geometry")))?;
            let shape: geo::Geometry<f64> = geo::Geometry::try_from(geometry)
                .map_err(|e| err(format!("{label} (`{fname}`): {e}")))?;
            let shape = match shape {
                geo::Geometry::Polygon(p) => MultiPolygon::new(vec![p]),
                geo::Geometry::MultiPolygon(m) => m,
                _ => {
                    return Err(err(format!(
                        "{label} (`{fname}`) is not a Polygon or MultiPolygon"
                    )));
                }
            };
            let in_degrees = shape.0.iter().all(|p| {
                p.exterior()
                    .coords()
                    .chain(p.interiors().iter().flat_map(|r| r.coords()))
                    .all(|c| {
                        c.x.is_finite()
                            && c.y.is_finite()
                            && c.x.abs() <= 180.0
                            && c.y.abs() <= 90.0
                    })
            });
            if !in_degrees {
                return Err(err(format!(
                    "{label} (`{fname}`) has coordinates outside longitude/latitude degrees \
                     (GeoJSON is WGS 84, RFC 7946; reproject the file)"
                )));
            }
            boundaries.push(Boundary { name: fname, shape });
        }
        Ok(Self {
            name: name.to_string(),
            boundaries,
        })
    }

    /// The first boundary containing the point (longitude, latitude).
    pub fn locate(&self, lon: f64, lat: f64) -> Option<&Boundary> {
        let point = Point::new(lon, lat);
        self.boundaries.iter().find(|b| b.shape.contains(&point))
    }

    /// The bounding box of all boundaries (x = longitude, y = latitude).
    pub fn bounds(&self) -> Option<Rect<f64>> {
        self.boundaries
            .iter()
            .filter_map(|b| b.shape.bounding_rect())
            .reduce(|a, b| {
                Rect::new(
                    geo::coord! { x: a.min().x.min(b.min().x), y: a.min().y.min(b.min().y) },
                    geo::coord! { x: a.max().x.max(b.max().x), y: a.max().y.max(b.max().y) },
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const TWO_SQUARES: &str = r#"{"type": "FeatureCollection", "features": [
      {"type": "Feature", "properties": {"name": "West"},
       "geometry": {"type": "Polygon", "coordinates": [[[11.0, 43.8], [11.1, 43.8], [11.1, 43.9], [11.0, 43.9], [11.0, 43.8]]]}},
      {"type": "Feature", "properties": {"name": "East"},
       "geometry": {"type": "MultiPolygon", "coordinates": [[[[11.1, 43.8], [11.2, 43.8], [11.2, 43.9], [11.1, 43.9], [11.1, 43.8]]]]}}
    ]}"#;

    #[test]
    fn reads_and_locates() {
        let layer = GeoLayer::from_geojson("d", TWO_SQUARES).unwrap();
        assert_eq!(layer.boundaries.len(), 2);
        assert_eq!(layer.locate(11.05, 43.85).unwrap().name, "West");
        assert_eq!(layer.locate(11.15, 43.85).unwrap().name, "East");
        assert!(layer.locate(11.5, 43.85).is_none());
        let b = layer.bounds().unwrap();
        assert_eq!(
            (b.min().x, b.min().y, b.max().x, b.max().y),
            (11.0, 43.8, 11.2, 43.9)
        );
    }

    #[test]
    fn refuses_unusable_files() {
        let e =
            GeoLayer::from_geojson("d", &TWO_SQUARES.replace("\"name\": \"East\"", "\"id\": 3"))
                .unwrap_err()
                .to_string();
        assert_eq!(e, "d: feature #2 has no string property `name`");
        let e = GeoLayer::from_geojson(
            "d",
            &TWO_SQUARES.replace("[11.0, 43.8], [11.1", "[650000.0, 4850000.0], [11.1"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("feature #1 (`West`) has coordinates outside"),
            "{e}"
        );
        let point = r#"{"type":"Feature","properties":{"name":"p"},"geometry":{"type":"Point","coordinates":[11,43]}}"#;
        let e = GeoLayer::from_geojson("d", point).unwrap_err().to_string();
        assert!(e.contains("not a Polygon or MultiPolygon"), "{e}");
        assert!(GeoLayer::from_geojson("d", "{").is_err());
    }

    #[test]
    fn load_dir_names_layers_by_stem() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("districts.geojson"), TWO_SQUARES).unwrap();
        std::fs::write(dir.path().join("readme.txt"), "x").unwrap();
        let layers = GeoLayers::load_dir(dir.path()).unwrap();
        assert_eq!(layers.names().collect::<Vec<_>>(), ["districts"]);
        let missing = GeoLayers::load_dir(&dir.path().join("nope")).unwrap();
        assert_eq!(missing.names().count(), 0);
        std::fs::write(dir.path().join("bad.geojson"), "[]").unwrap();
        let e = GeoLayers::load_dir(dir.path()).unwrap_err().to_string();
        assert!(e.contains("bad.geojson: not GeoJSON"), "{e}");
    }
}
