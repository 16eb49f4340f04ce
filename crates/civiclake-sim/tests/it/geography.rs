//! The city's map: shipped GeoJSON files, districts and sections tiling Prato, sensor places.

#![allow(clippy::unwrap_used)]

use arrow::array::{Array, DictionaryArray, Float64Array, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::Int32Type;
use civiclake_sim::{City, CityConfig, CityMap, DISTRICTS, Kind, SENSORS_TABLE, sensors_schema};
use geo::{Area, BooleanOps, Contains, MultiPolygon, Point};
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

const REGENERATE: &str = "CIVICLAKE_REGENERATE_GEO";

fn geo_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../dashboards/geo")
}

fn map() -> &'static CityMap {
    CityMap::get().expect("the map builds")
}

fn city(seed: u64, sensors: u32) -> City {
    City::new(CityConfig {
        seed,
        sensors,
        ..CityConfig::default()
    })
    .expect("valid settings")
}

fn union(shapes: &[&MultiPolygon<f64>]) -> MultiPolygon<f64> {
    shapes
        .iter()
        .fold(MultiPolygon::new(vec![]), |acc, s| acc.union(*s))
}

/// Regenerates the shipped files with `CIVICLAKE_REGENERATE_GEO=1`; otherwise fails when they
/// differ from what the generator makes.
#[test]
fn shipped_geojson_files_are_what_the_generator_makes() {
    let files = [
        (
            "prato_districts_synthetic.geojson",
            map().districts_geojson(),
        ),
        ("prato_sections_synthetic.geojson", map().sections_geojson()),
    ];
    let regenerate = std::env::var(REGENERATE).is_ok_and(|v| v == "1");
    for (name, text) in &files {
        let path = geo_dir().join(name);
        assert!(text.len() < 1_000_000, "{name}: {} bytes", text.len());
        if regenerate {
            std::fs::write(&path, text).unwrap();
            continue;
        }
        let shipped = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            shipped == *text,
            "dashboards/geo/{name} differs from what civiclake-sim generates; regenerate it \
             with `{REGENERATE}=1 cargo test -p civiclake-sim --test geography` and commit it"
        );
    }
    // Valid GeoJSON with the promised properties.
    let districts: Value = serde_json::from_str(&files[0].1).unwrap();
    let sections: Value = serde_json::from_str(&files[1].1).unwrap();
    for doc in [&districts, &sections] {
        assert_eq!(doc["type"], "FeatureCollection");
        assert_eq!(doc["synthetic"], true);
        assert!(doc["note"].as_str().unwrap().contains("Synthetic"));
        assert!(
            doc["attribution"]
                .as_str()
                .unwrap()
                .contains("ISTAT, Openpolis")
        );
        for f in doc["features"].as_array().unwrap() {
            assert_eq!(f["type"], "Feature");
            assert_eq!(f["properties"]["synthetic"], true);
            assert_eq!(f["geometry"]["type"], "MultiPolygon");
            // 6 decimals at most, rings closed.
            for polygon in f["geometry"]["coordinates"].as_array().unwrap() {
                for ring in polygon.as_array().unwrap() {
                    let ring = ring.as_array().unwrap();
                    assert!(ring.len() >= 4);
                    assert_eq!(ring.first(), ring.last());
                    for c in ring {
                        for v in c.as_array().unwrap() {
                            let text = v.to_string();
                            let decimals = text.split('.').nth(1).map_or(0, str::len);
                            assert!(decimals <= 6, "{text}");
                        }
                    }
                }
            }
        }
    }
    let names: Vec<&str> = districts["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["properties"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, DISTRICTS);
    let section_features = sections["features"].as_array().unwrap();
    assert_eq!(section_features.len(), map().sections().len());
    for f in section_features {
        let name = f["properties"]["name"].as_str().unwrap();
        let district = f["properties"]["district"].as_str().unwrap();
        assert!(DISTRICTS.contains(&district), "{district}");
        let number = name.strip_prefix(&format!("{district}-")).unwrap();
        assert!(number.len() == 3 && number.bytes().all(|b| b.is_ascii_digit()));
    }
}

#[test]
fn districts_tile_the_municipality() {
    let boundary = map().boundary();
    let total = boundary.unsigned_area();
    let districts = map().districts();
    assert_eq!(
        districts.iter().map(|d| d.name).collect::<Vec<_>>(),
        DISTRICTS
    );
    let sum: f64 = districts.iter().map(|d| d.shape.unsigned_area()).sum();
    assert!(
        (sum / total - 1.0).abs() < 0.01,
        "districts {sum} vs boundary {total}"
    );
    // No overlaps (beyond the rounding of coordinates to 6 decimals).
    for (i, a) in districts.iter().enumerate() {
        assert!(a.shape.unsigned_area() > 0.03 * total, "{} is tiny", a.name);
        for b in &districts[i + 1..] {
            let overlap = a.shape.intersection(&b.shape).unsigned_area();
            assert!(overlap < 1e-6 * total, "{} and {} overlap", a.name, b.name);
        }
    }
    // Together they cover the municipality and stay inside it.
    let all = union(&districts.iter().map(|d| &d.shape).collect::<Vec<_>>());
    assert!(boundary.difference(&all).unsigned_area() < 1e-4 * total);
    assert!(all.difference(boundary).unsigned_area() < 1e-4 * total);
    // Geodesic areas: Prato is about 97.4 km².
    let km2: f64 = districts.iter().map(|d| d.area_km2).sum();
    assert!((96.0..99.0).contains(&km2), "{km2} km²");
    // Centro is the disc around the historic centre.
    let centro = map().district("Centro").unwrap();
    assert!(centro.shape.contains(&Point::new(11.0966, 43.8805)));
    assert!((6.5..7.5).contains(&centro.area_km2), "{}", centro.area_km2);
    assert!(
        map()
            .district("Nord")
            .unwrap()
            .shape
            .contains(&Point::new(11.0966, 43.91))
    );
    assert!(
        map()
            .district("Sud")
            .unwrap()
            .shape
            .contains(&Point::new(11.0966, 43.86))
    );
}

#[test]
fn sections_tile_their_districts() {
    let mut ids = HashSet::new();
    for d in map().districts() {
        let sections: Vec<_> = map()
            .sections()
            .iter()
            .filter(|s| s.district == d.name)
            .collect();
        assert!(sections.len() > 10, "{}: {}", d.name, sections.len());
        let area = d.shape.unsigned_area();
        let sum: f64 = sections.iter().map(|s| s.shape.unsigned_area()).sum();
        assert!(
            (sum / area - 1.0).abs() < 0.001,
            "{}: {sum} vs {area}",
            d.name
        );
        for (n, s) in sections.iter().enumerate() {
            assert!(ids.insert(s.id.clone()), "{} twice", s.id);
            assert_eq!(s.id, format!("{}-{:03}", d.name, n + 1));
            // Inside the district; no larger than a 600 m cell unless slivers were merged in,
            // and none is a sliver itself.
            let outside = s.shape.difference(&d.shape).unsigned_area();
            assert!(
                outside < 1e-3 * s.shape.unsigned_area(),
                "{}: {outside} outside {}",
                s.id,
                d.name
            );
            assert!(
                (0.06..0.6).contains(&s.area_km2),
                "{}: {} km²",
                s.id,
                s.area_km2
            );
        }
        let all = union(&sections.iter().map(|s| &s.shape).collect::<Vec<_>>());
        assert!(d.shape.difference(&all).unsigned_area() < 1e-4 * area);
    }
    assert_eq!(ids.len(), map().sections().len());
}

#[test]
fn sensors_lie_in_their_district_section_and_prato() {
    let c = city(1, 1000);
    let sensors = c.sensors().unwrap();
    assert_eq!(sensors.len(), 1000);
    let sections: HashMap<&str, _> = map()
        .sections()
        .iter()
        .map(|s| (s.id.as_str(), s))
        .collect();
    let mut per_district: HashMap<&str, usize> = HashMap::new();
    for (i, s) in sensors.iter().enumerate() {
        let p = Point::new(s.lon, s.lat);
        assert_eq!(s.kind, Kind::ALL[i % 5]);
        assert_eq!(s.id, format!("{}-{i:05}", s.kind.table()));
        assert!(map().boundary().contains(&p), "{} outside Prato", s.id);
        let district = map().district(s.district).unwrap();
        assert!(
            district.shape.contains(&p),
            "{} outside {}",
            s.id,
            s.district
        );
        let section = sections[s.section.as_str()];
        assert_eq!(section.district, s.district);
        assert!(section.shape.contains(&p), "{} outside {}", s.id, s.section);
        assert_eq!(map().section_at(s.lon, s.lat).unwrap().id, s.section);
        assert_eq!((s.lat * 1e6).round() / 1e6, s.lat);
        assert_eq!((s.lon * 1e6).round() / 1e6, s.lon);
        *per_district.entry(s.district).or_default() += 1;
    }
    for d in DISTRICTS {
        assert_eq!(per_district[d], 200, "{d}");
    }
    // Spread out: many sections hold a sensor, no two sensors share a place.
    let used: HashSet<&str> = sensors.iter().map(|s| s.section.as_str()).collect();
    assert!(used.len() > 200, "{} sections used", used.len());
    let places: HashSet<(u64, u64)> = sensors
        .iter()
        .map(|s| (s.lat.to_bits(), s.lon.to_bits()))
        .collect();
    assert_eq!(places.len(), sensors.len());
    // Deterministic; a sensor's place depends on the seed and its index only.
    assert_eq!(city(1, 1000).sensors().unwrap(), sensors);
    assert_eq!(city(1, 10).sensors().unwrap(), sensors[..10]);
    let other = city(2, 10).sensors().unwrap();
    assert!(other.iter().zip(&sensors).all(|(a, b)| a.lat != b.lat));
}

#[test]
fn sensors_registry_batch() {
    let c = city(3, 12);
    let sensors = c.sensors().unwrap();
    let b = c.sensors_batch().unwrap();
    assert_eq!(SENSORS_TABLE, "sensors");
    assert_eq!(b.schema(), sensors_schema());
    let schema = b.schema();
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(
        names,
        [
            "time", "sensor", "kind", "district", "section", "lat", "lon"
        ]
    );
    assert_eq!(b.num_rows(), 12);
    let time = b
        .column(0)
        .as_any()
        .downcast_ref::<TimestampMicrosecondArray>()
        .unwrap();
    assert!(time.iter().all(|t| t == Some(c.config().start_micros)));
    let tag = |i: usize, row: usize| {
        let d = b
            .column(i)
            .as_any()
            .downcast_ref::<DictionaryArray<Int32Type>>()
            .unwrap();
        let values = d.values().as_any().downcast_ref::<StringArray>().unwrap();
        values.value(d.keys().value(row) as usize).to_string()
    };
    let float = |i: usize| {
        b.column(i)
            .as_any()
            .downcast_ref::<Float64Array>()
            .unwrap()
            .clone()
    };
    for (row, s) in sensors.iter().enumerate() {
        assert_eq!(tag(1, row), s.id);
        assert_eq!(tag(2, row), s.kind.table());
        assert_eq!(tag(3, row), s.district);
        assert_eq!(tag(4, row), s.section);
        assert_eq!(float(5).value(row), s.lat);
        assert_eq!(float(6).value(row), s.lon);
        assert!(!float(5).is_null(row));
    }
}
