//! Demo inputs of the optimiser, from the simulated city (`civiclake-sim`): its synthetic
//! census sections as demand, its 17 kiosks (today's network; the ones by the cemetery and
//! the municipal police fixed) and a public building per section as candidates; and the map
//! layers shipped in `dashboards/geo/`.

use crate::siting::output::{BOUNDARY_CREDIT, MapLayers};
use crate::siting::{DemandPoint, Site};
use civiclake_dashboards::GeoLayers;
use civiclake_sim::CityMap;

/// The layer holding the province's municipalities (Prato's boundary among them).
pub const MUNICIPALITIES_LAYER: &str = "prato_province_municipalities";
/// The layer of the synthetic census sections.
pub const SECTIONS_LAYER: &str = "prato_sections_synthetic";
/// The municipality drawn as the outline.
pub const MUNICIPALITY: &str = "Prato";

/// The synthetic census as demand points (one per section, at its centroid).
pub fn demand() -> Result<Vec<DemandPoint>, String> {
    let map = CityMap::get().map_err(|e| e.to_string())?;
    Ok(map
        .census()
        .into_iter()
        .map(|s| DemandPoint {
            id: s.id,
            lon: s.lon,
            lat: s.lat,
            population: f64::from(s.population),
            elderly: f64::from(s.elderly),
            observed: 0.0,
        })
        .collect())
}

/// Today's 17 kiosks (`existing`) and a public building per section.
pub fn sites() -> Result<Vec<Site>, String> {
    let map = CityMap::get().map_err(|e| e.to_string())?;
    let today = civiclake_sim::census::kiosks().into_iter().map(|k| Site {
        id: k.id,
        name: k.name,
        kind: k.kind.to_string(),
        lon: k.lon,
        lat: k.lat,
        existing: true,
        fixed: k.fixed,
    });
    let buildings = map.public_buildings().into_iter().map(|b| Site {
        id: b.id,
        name: b.name,
        kind: b.kind.to_string(),
        lon: b.lon,
        lat: b.lat,
        existing: false,
        fixed: false,
    });
    Ok(today.chain(buildings).collect())
}

/// Random demand and sites inside the city, for benchmarks: `n` points with 50–400
/// residents (a quarter of them aged 65+), `m` candidates of which the first `existing`
/// are today's network.
pub fn random(
    n: usize,
    m: usize,
    existing: usize,
    seed: u64,
) -> Result<(Vec<DemandPoint>, Vec<Site>), String> {
    let map = CityMap::get().map_err(|e| e.to_string())?;
    let points = map.random_points(n + m, seed);
    let demand = points[..n]
        .iter()
        .enumerate()
        .map(|(i, &(lon, lat))| {
            // A deterministic spread of sizes from the index.
            let population = 50.0 + ((i * 7919) % 351) as f64;
            DemandPoint {
                id: format!("d{i}"),
                lon,
                lat,
                population,
                elderly: (population / 4.0).floor(),
                observed: 0.0,
            }
        })
        .collect();
    let sites = points[n..]
        .iter()
        .enumerate()
        .map(|(j, &(lon, lat))| Site {
            id: format!("s{j}"),
            name: format!("site {j}"),
            kind: "candidate".into(),
            lon,
            lat,
            existing: j < existing,
            fixed: false,
        })
        .collect();
    Ok((demand, sites))
}

/// Map layers from the dashboards' boundary layers: Prato's outline and the synthetic
/// sections (missing layers are left out).
pub fn layers(geo: &GeoLayers) -> MapLayers {
    let outlines = geo
        .get(MUNICIPALITIES_LAYER)
        .map(|l| {
            l.boundaries
                .iter()
                .filter(|b| b.name == MUNICIPALITY)
                .map(|b| b.shape.clone())
                .collect()
        })
        .unwrap_or_default();
    let sections = geo
        .get(SECTIONS_LAYER)
        .map(|l| {
            l.boundaries
                .iter()
                .map(|b| (b.name.clone(), b.shape.clone()))
                .collect()
        })
        .unwrap_or_default();
    MapLayers {
        outlines,
        sections,
        credit: format!("{BOUNDARY_CREDIT}; census sections and kiosks: synthetic (civiclake-sim)"),
    }
}

/// Seeds the demo server: imports the demo inputs and computes a first plan (maximal
/// covering within 500 m), unless inputs were imported already. Returns the plan's id, if
/// one was made.
pub async fn seed(siting: &crate::Siting) -> Result<Option<String>, crate::SitingServiceError> {
    if !siting.demand().await?.is_empty() {
        return Ok(None);
    }
    let internal = crate::SitingServiceError::Internal;
    siting.import_demand(demand().map_err(internal)?).await?;
    siting.import_sites(sites().map_err(internal)?).await?;
    let plan = siting.run(crate::PlanRequest::default()).await?;
    Ok(Some(plan.id))
}
