//! A siting problem: demand points, candidate sites and the distances between them.

use super::SitingError;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Mean radius of the Earth, metres (IUGG).
pub const EARTH_RADIUS_M: f64 = 6_371_008.8;

/// A place where people live: a census section (its centroid), or the place of observed use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DemandPoint {
    /// Its id (the census section code, or any unique name).
    pub id: String,
    /// Longitude, degrees WGS84.
    pub lon: f64,
    /// Latitude, degrees WGS84.
    pub lat: f64,
    /// Residents.
    pub population: f64,
    /// Residents aged 65 and over (part of `population`).
    #[serde(default)]
    pub elderly: f64,
    /// Observed demand (kiosk transactions) located here; 0 for a census section.
    #[serde(default)]
    pub observed: f64,
}

/// A place where a kiosk could stand.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Site {
    /// Its id.
    pub id: String,
    /// Its name.
    #[serde(default)]
    pub name: String,
    /// Longitude, degrees WGS84.
    pub lon: f64,
    /// Latitude, degrees WGS84.
    pub lat: f64,
    /// What it is (`kiosk`, `library`, `school`, `post office`, ...).
    #[serde(default)]
    pub kind: String,
    /// A kiosk stands here today (part of today's network).
    #[serde(default)]
    pub existing: bool,
    /// It must stay in any proposal (e.g. a kiosk next to a service it serves).
    #[serde(default)]
    pub fixed: bool,
}

/// How walking distances are computed.
#[derive(Debug, Clone, PartialEq)]
pub enum DistanceSource {
    /// Great-circle distance × a detour factor (streets are not straight lines).
    GreatCircle {
        /// The factor, ≥ 1.
        detour: f64,
    },
    /// Given per (demand id, site id), in metres: every pair must be there.
    Matrix(Vec<(String, String, f64)>),
}

/// Weights of the demand.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Weighting {
    /// How much a resident aged 65+ counts, against 1 for anyone else.
    pub elderly_factor: f64,
    /// Observed demand is scaled so that it adds this share of the residents' weight
    /// (0: observed use is ignored).
    pub observed_share: f64,
}

impl Default for Weighting {
    fn default() -> Self {
        Self {
            elderly_factor: 2.0,
            observed_share: 0.1,
        }
    }
}

/// A siting problem ready for the models: weights and a dense distance matrix.
#[derive(Debug, Clone)]
pub struct Instance {
    /// The demand points.
    pub demand: Vec<DemandPoint>,
    /// The candidate sites (today's kiosks among them, `existing`).
    pub sites: Vec<Site>,
    /// Weight of each demand point.
    pub weights: Vec<f64>,
    /// Distances in metres, site-major: `dist[j * n + i]` from site `j` to demand point `i`.
    dist: Vec<f64>,
}

impl Instance {
    /// Builds the instance: checks the inputs (ids unique, coordinates in range, weights not
    /// negative), weights the demand and computes the distances.
    pub fn new(
        demand: Vec<DemandPoint>,
        sites: Vec<Site>,
        weighting: Weighting,
        distances: &DistanceSource,
    ) -> Result<Self, SitingError> {
        check_demand(&demand)?;
        check_sites(&sites)?;
        if !(weighting.elderly_factor.is_finite() && weighting.elderly_factor >= 0.0) {
            return Err(SitingError::invalid(
                "the weight of the elderly must be a number ≥ 0",
            ));
        }
        if !(weighting.observed_share.is_finite() && weighting.observed_share >= 0.0) {
            return Err(SitingError::invalid(
                "the share of observed demand must be a number ≥ 0",
            ));
        }
        let weights = weigh(&demand, weighting);
        let dist = match distances {
            DistanceSource::GreatCircle { detour } => {
                if !(detour.is_finite() && *detour >= 1.0) {
                    return Err(SitingError::invalid(format!(
                        "the detour factor must be ≥ 1, not {detour}"
                    )));
                }
                let mut dist = Vec::with_capacity(sites.len() * demand.len());
                for s in &sites {
                    for d in &demand {
                        dist.push(haversine_m(s.lon, s.lat, d.lon, d.lat) * detour);
                    }
                }
                dist
            }
            DistanceSource::Matrix(entries) => matrix(&demand, &sites, entries)?,
        };
        Ok(Self {
            demand,
            sites,
            weights,
            dist,
        })
    }

    /// Number of demand points.
    pub fn n(&self) -> usize {
        self.demand.len()
    }

    /// Number of candidate sites.
    pub fn m(&self) -> usize {
        self.sites.len()
    }

    /// Distances from site `j` to every demand point, metres.
    pub fn from_site(&self, j: usize) -> &[f64] {
        let n = self.n();
        &self.dist[j * n..(j + 1) * n]
    }

    /// Distance from site `j` to demand point `i`, metres.
    pub fn distance(&self, j: usize, i: usize) -> f64 {
        self.dist[j * self.n() + i]
    }

    /// Indices of the sites marked `fixed`.
    pub fn fixed(&self) -> Vec<usize> {
        (0..self.m()).filter(|&j| self.sites[j].fixed).collect()
    }

    /// Indices of today's network (sites marked `existing`).
    pub fn existing(&self) -> Vec<usize> {
        (0..self.m()).filter(|&j| self.sites[j].existing).collect()
    }

    /// The site with this id.
    pub fn site_index(&self, id: &str) -> Option<usize> {
        self.sites.iter().position(|s| s.id == id)
    }

    /// Total weight of the demand.
    pub fn total_weight(&self) -> f64 {
        self.weights.iter().sum()
    }

    /// For each site, the demand points within `threshold` metres (ascending).
    pub fn coverage(&self, threshold: f64) -> Vec<Vec<u32>> {
        (0..self.m())
            .map(|j| {
                self.from_site(j)
                    .iter()
                    .enumerate()
                    .filter(|(_, d)| **d <= threshold)
                    .map(|(i, _)| i as u32)
                    .collect()
            })
            .collect()
    }
}

/// Checks demand points: some, ids unique and not empty, coordinates in degrees, residents
/// not negative, the elderly among them.
pub fn check_demand(demand: &[DemandPoint]) -> Result<(), SitingError> {
    if demand.is_empty() {
        return Err(SitingError::invalid("there are no demand points"));
    }
    unique_ids(demand.iter().map(|d| d.id.as_str()), "demand point")?;
    for d in demand {
        check_coord(d.lon, d.lat, &format!("demand point {}", d.id))?;
        for (what, v) in [
            ("population", d.population),
            ("elderly", d.elderly),
            ("observed", d.observed),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(SitingError::invalid(format!(
                    "demand point {}: {what} must be a number ≥ 0, not {v}",
                    d.id
                )));
            }
        }
        if d.elderly > d.population {
            return Err(SitingError::invalid(format!(
                "demand point {}: {} residents aged 65+ of {} residents",
                d.id, d.elderly, d.population
            )));
        }
    }
    Ok(())
}

/// Checks candidate sites: some, ids unique and not empty, coordinates in degrees.
pub fn check_sites(sites: &[Site]) -> Result<(), SitingError> {
    if sites.is_empty() {
        return Err(SitingError::invalid("there are no candidate sites"));
    }
    unique_ids(sites.iter().map(|s| s.id.as_str()), "site")?;
    for s in sites {
        check_coord(s.lon, s.lat, &format!("site {}", s.id))?;
    }
    Ok(())
}

/// Weight of each point: residents, the elderly counted `elderly_factor` times, plus the
/// observed demand scaled to `observed_share` of the residents' weight.
fn weigh(demand: &[DemandPoint], w: Weighting) -> Vec<f64> {
    let base: Vec<f64> = demand
        .iter()
        .map(|d| (d.population - d.elderly) + w.elderly_factor * d.elderly)
        .collect();
    let observed: f64 = demand.iter().map(|d| d.observed).sum();
    let scale = if observed > 0.0 {
        w.observed_share * base.iter().sum::<f64>() / observed
    } else {
        0.0
    };
    base.iter()
        .zip(demand)
        .map(|(b, d)| b + scale * d.observed)
        .collect()
}

fn unique_ids<'a>(ids: impl Iterator<Item = &'a str>, what: &str) -> Result<(), SitingError> {
    let mut seen = std::collections::HashSet::new();
    for id in ids {
        if id.is_empty() {
            return Err(SitingError::invalid(format!("a {what} has an empty id")));
        }
        if !seen.insert(id) {
            return Err(SitingError::invalid(format!(
                "{what} id {id} appears twice"
            )));
        }
    }
    Ok(())
}

fn check_coord(lon: f64, lat: f64, what: &str) -> Result<(), SitingError> {
    if lon.is_finite() && lat.is_finite() && lon.abs() <= 180.0 && lat.abs() <= 90.0 {
        Ok(())
    } else {
        Err(SitingError::invalid(format!(
            "{what}: ({lon}, {lat}) is not a longitude, latitude in degrees"
        )))
    }
}

fn matrix(
    demand: &[DemandPoint],
    sites: &[Site],
    entries: &[(String, String, f64)],
) -> Result<Vec<f64>, SitingError> {
    let di: HashMap<&str, usize> = demand
        .iter()
        .enumerate()
        .map(|(i, d)| (d.id.as_str(), i))
        .collect();
    let sj: HashMap<&str, usize> = sites
        .iter()
        .enumerate()
        .map(|(j, s)| (s.id.as_str(), j))
        .collect();
    let n = demand.len();
    let mut dist = vec![f64::NAN; n * sites.len()];
    for (d, s, m) in entries {
        let i = *di
            .get(d.as_str())
            .ok_or_else(|| SitingError::invalid(format!("distance matrix: no demand point {d}")))?;
        let j = *sj
            .get(s.as_str())
            .ok_or_else(|| SitingError::invalid(format!("distance matrix: no site {s}")))?;
        if !(m.is_finite() && *m >= 0.0) {
            return Err(SitingError::invalid(format!(
                "distance matrix: {d} → {s} is {m}, not metres ≥ 0"
            )));
        }
        dist[j * n + i] = *m;
    }
    if let Some(k) = dist.iter().position(|v| v.is_nan()) {
        let missing = dist.iter().filter(|v| v.is_nan()).count();
        return Err(SitingError::invalid(format!(
            "distance matrix: {missing} pairs are missing, the first from site {} to demand point {}",
            sites[k / n].id,
            demand[k % n].id
        )));
    }
    Ok(dist)
}

/// Great-circle distance between two points, metres (haversine on the mean sphere).
pub fn haversine_m(lon1: f64, lat1: f64, lon2: f64, lat2: f64) -> f64 {
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dp = p2 - p1;
    let dl = (lon2 - lon1).to_radians();
    let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_M * a.sqrt().min(1.0).asin()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(id: &str, lon: f64, lat: f64, population: f64, elderly: f64) -> DemandPoint {
        DemandPoint {
            id: id.into(),
            lon,
            lat,
            population,
            elderly,
            observed: 0.0,
        }
    }

    fn site(id: &str, lon: f64, lat: f64) -> Site {
        Site {
            id: id.into(),
            name: id.into(),
            lon,
            lat,
            kind: "test".into(),
            existing: false,
            fixed: false,
        }
    }

    #[test]
    fn haversine_matches_a_known_distance() {
        // One degree of latitude on the mean sphere.
        let d = haversine_m(11.0, 43.0, 11.0, 44.0);
        assert!((d - 111_195.08).abs() < 0.5, "{d}");
        // 0.0109° of longitude east and 0.0019° south of Piazza del Comune: about 0.9 km.
        let d = haversine_m(11.0966, 43.8805, 11.1075, 43.8786);
        assert!((d - 898.8).abs() < 0.5, "{d}");
    }

    #[test]
    fn weights_count_the_elderly_and_scale_observed_use() {
        let mut a = point("a", 11.0, 43.0, 100.0, 20.0);
        let b = point("b", 11.0, 43.0, 300.0, 0.0);
        a.observed = 50.0;
        let w = weigh(
            &[a, b],
            Weighting {
                elderly_factor: 3.0,
                observed_share: 0.5,
            },
        );
        // a: 80 + 3×20 = 140; b: 300; residents' weight 440, observed 50 → scale 4.4.
        assert_eq!(w, vec![140.0 + 220.0, 300.0]);
    }

    #[test]
    fn a_matrix_must_be_complete_and_name_known_places() {
        let demand = vec![
            point("a", 11.0, 43.0, 1.0, 0.0),
            point("b", 11.0, 43.0, 1.0, 0.0),
        ];
        let sites = vec![site("s", 11.0, 43.0)];
        let w = Weighting::default();
        let e = Instance::new(
            demand.clone(),
            sites.clone(),
            w,
            &DistanceSource::Matrix(vec![("a".into(), "s".into(), 10.0)]),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "distance matrix: 1 pairs are missing, the first from site s to demand point b"
        );
        let e = Instance::new(
            demand.clone(),
            sites.clone(),
            w,
            &DistanceSource::Matrix(vec![("x".into(), "s".into(), 10.0)]),
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "distance matrix: no demand point x");
        let ok = Instance::new(
            demand,
            sites,
            w,
            &DistanceSource::Matrix(vec![
                ("a".into(), "s".into(), 10.0),
                ("b".into(), "s".into(), 25.0),
            ]),
        )
        .unwrap();
        assert_eq!(ok.from_site(0), &[10.0, 25.0]);
    }

    #[test]
    fn bad_inputs_are_refused_with_the_reason() {
        let w = Weighting::default();
        let gc = DistanceSource::GreatCircle { detour: 1.3 };
        let e = Instance::new(
            vec![point("a", 11.0, 95.0, 1.0, 0.0)],
            vec![site("s", 11.0, 43.0)],
            w,
            &gc,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "demand point a: (11, 95) is not a longitude, latitude in degrees"
        );
        let e = Instance::new(
            vec![point("a", 11.0, 43.0, 10.0, 11.0)],
            vec![site("s", 11.0, 43.0)],
            w,
            &gc,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "demand point a: 11 residents aged 65+ of 10 residents"
        );
        let e = Instance::new(
            vec![point("a", 11.0, 43.0, 10.0, 1.0)],
            vec![site("s", 11.0, 43.0), site("s", 11.1, 43.0)],
            w,
            &gc,
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "site id s appears twice");
        let e = Instance::new(
            vec![point("a", 11.0, 43.0, 10.0, 1.0)],
            vec![site("s", 11.0, 43.0)],
            w,
            &DistanceSource::GreatCircle { detour: 0.5 },
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "the detour factor must be ≥ 1, not 0.5");
    }
}
