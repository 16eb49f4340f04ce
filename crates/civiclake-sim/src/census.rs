//! A synthetic census of the simulated city, and its kiosks: the demo inputs of the kiosk
//! siting optimiser.
//!
//! Residents per synthetic census section fall off with the distance from the historic
//! centre (Prato's plain is dense, its hills are not), times a per-section factor drawn
//! from the seeded generator; they add up to [`RESIDENTS`] (Prato had about 195,000). The
//! share aged 65+ is higher downtown (about 30 %) than at the edge (about 20 %). These are
//! **not** ISTAT's figures: the real ones come through the optimiser's ISTAT importer.
//!
//! [`kiosks`] are 17 self-service kiosks placed like Prato's (mostly downtown, one by a
//! cemetery, one by the municipal police, community centres) at approximate, illustrative
//! coordinates; [`public_buildings`] are candidate sites, one per section (a school, a
//! library, a post office, ...), at a point inside the section.

use crate::geography::{CENTRE, CityMap};
use crate::rng::Rng;
use geo::{Centroid, InteriorPoint};

/// Residents of the synthetic city.
pub const RESIDENTS: u32 = 195_000;

/// Residents of one synthetic census section.
#[derive(Debug, Clone, PartialEq)]
pub struct SectionCensus {
    /// The section's id (`Centro-001`, ...).
    pub id: String,
    /// Its district.
    pub district: &'static str,
    /// Longitude of its centroid.
    pub lon: f64,
    /// Latitude of its centroid.
    pub lat: f64,
    /// Residents.
    pub population: u32,
    /// Residents aged 65 and over.
    pub elderly: u32,
}

/// A place for a kiosk.
#[derive(Debug, Clone, PartialEq)]
pub struct KioskPlace {
    /// Its id (`K01`…`K17` for today's kiosks, `B-<section>` for the candidates).
    pub id: String,
    /// Its name.
    pub name: String,
    /// What it is.
    pub kind: &'static str,
    /// Longitude.
    pub lon: f64,
    /// Latitude.
    pub lat: f64,
    /// It stays wherever the others go (it serves the place it stands by).
    pub fixed: bool,
}

/// Metres between two nearby points (equirectangular; enough at a city's scale).
fn metres(a: (f64, f64), b: (f64, f64)) -> f64 {
    let k = a.1.to_radians().cos();
    let dx = (a.0 - b.0) * k * 111_195.08;
    let dy = (a.1 - b.1) * 111_195.08;
    (dx * dx + dy * dy).sqrt()
}

impl CityMap {
    /// The synthetic census: one row per section, in section order; the same on every run.
    pub fn census(&self) -> Vec<SectionCensus> {
        let mut rng = Rng::new(0x00C3_1505, 0);
        let rows: Vec<(f64, f64, f64, f64)> = self
            .sections()
            .iter()
            .map(|s| {
                let c = s.shape.centroid().map_or(CENTRE, |p| (p.x(), p.y()));
                let r_km = metres(c, CENTRE) / 1000.0;
                let density = (-r_km / 2.2).exp() + 0.04;
                let factor = rng.range(0.6, 1.4);
                let old_share =
                    (0.30 - 0.10 * (r_km / 6.0).min(1.0) + rng.range(-0.02, 0.02)).clamp(0.1, 0.4);
                (c.0, c.1, s.area_km2 * density * factor, old_share)
            })
            .collect();
        let total: f64 = rows.iter().map(|r| r.2).sum();
        // Largest remainders, so the sections add up to RESIDENTS exactly.
        let exact: Vec<f64> = rows
            .iter()
            .map(|r| f64::from(RESIDENTS) * r.2 / total)
            .collect();
        let mut people: Vec<u32> = exact.iter().map(|e| e.floor() as u32).collect();
        let short = RESIDENTS - people.iter().sum::<u32>();
        let mut order: Vec<usize> = (0..exact.len()).collect();
        order.sort_by(|a, b| {
            let fa = exact[*a] - exact[*a].floor();
            let fb = exact[*b] - exact[*b].floor();
            fb.total_cmp(&fa).then(a.cmp(b))
        });
        for &i in order.iter().take(short as usize) {
            people[i] += 1;
        }
        self.sections()
            .iter()
            .zip(rows)
            .zip(people)
            .map(|((s, (lon, lat, _, share)), population)| SectionCensus {
                id: s.id.clone(),
                district: s.district,
                lon: (lon * 1e6).round() / 1e6,
                lat: (lat * 1e6).round() / 1e6,
                population,
                elderly: (f64::from(population) * share).round() as u32,
            })
            .collect()
    }

    /// Candidate sites for kiosks: a public building in every section, at a point inside it.
    pub fn public_buildings(&self) -> Vec<KioskPlace> {
        const KINDS: [&str; 6] = [
            "school",
            "library",
            "post office",
            "pharmacy",
            "community centre",
            "supermarket",
        ];
        let mut rng = Rng::new(0x00C3_1505, 1);
        self.sections()
            .iter()
            .filter_map(|s| {
                let p = s.shape.interior_point()?;
                let kind = KINDS[rng.below(KINDS.len() as u64) as usize];
                Some(KioskPlace {
                    id: format!("B-{}", s.id),
                    name: format!("{kind}, {}", s.id),
                    kind,
                    lon: (p.x() * 1e6).round() / 1e6,
                    lat: (p.y() * 1e6).round() / 1e6,
                    fixed: false,
                })
            })
            .collect()
    }

    /// `n` points drawn uniformly inside the city (the same for the same seed), for
    /// benchmarks of the optimiser.
    pub fn random_points(&self, n: usize, seed: u64) -> Vec<(f64, f64)> {
        let mut rng = Rng::new(seed, 2);
        let districts = self.districts().len();
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let d = rng.below(districts as u64) as usize;
            if let Some((c, _)) = self.sample_point(d, &mut rng) {
                out.push((c.x, c.y));
            }
        }
        out
    }
}

/// The 17 kiosks of the simulated city (illustrative places, approximate coordinates).
pub fn kiosks() -> Vec<KioskPlace> {
    const PLACES: [(&str, &str, f64, f64, bool); 17] = [
        (
            "Palazzo Comunale, Piazza del Comune",
            "town hall",
            11.0967,
            43.8806,
            false,
        ),
        ("Piazza del Duomo", "square", 11.0973, 43.8818, false),
        ("Piazza Mercatale", "square", 11.1003, 43.8831, false),
        ("Piazza San Francesco", "square", 11.0957, 43.8792, false),
        ("Piazza San Marco", "square", 11.1031, 43.8772, false),
        ("Stazione Centrale", "station", 11.1069, 43.8788, false),
        (
            "Stazione Porta al Serraglio",
            "station",
            11.0951,
            43.8857,
            false,
        ),
        ("Biblioteca Lazzerini", "library", 11.0915, 43.8765, false),
        ("Piazza Ciardi", "square", 11.0915, 43.8838, false),
        (
            "Via Roma, uffici comunali",
            "municipal offices",
            11.0942,
            43.8742,
            false,
        ),
        (
            "Cimitero della Misericordia",
            "cemetery",
            11.0823,
            43.8889,
            true,
        ),
        (
            "Comando Polizia Municipale",
            "municipal police",
            11.0768,
            43.8662,
            true,
        ),
        (
            "Centro civico Prato Nord",
            "community centre",
            11.0904,
            43.8979,
            false,
        ),
        (
            "Centro civico Prato Est",
            "community centre",
            11.1180,
            43.8741,
            false,
        ),
        (
            "Centro civico Prato Sud",
            "community centre",
            11.0985,
            43.8555,
            false,
        ),
        (
            "Centro civico Prato Ovest",
            "community centre",
            11.0620,
            43.8800,
            false,
        ),
        (
            "Ospedale Santo Stefano",
            "hospital",
            11.0606,
            43.8713,
            false,
        ),
    ];
    PLACES
        .iter()
        .enumerate()
        .map(|(i, (name, kind, lon, lat, fixed))| KioskPlace {
            id: format!("K{:02}", i + 1),
            name: (*name).to_string(),
            kind,
            lon: *lon,
            lat: *lat,
            fixed: *fixed,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn census_adds_up_and_is_denser_and_older_downtown() {
        let map = CityMap::get().unwrap();
        let census = map.census();
        assert_eq!(census.len(), map.sections().len());
        assert_eq!(census.iter().map(|s| s.population).sum::<u32>(), RESIDENTS);
        assert_eq!(census, map.census(), "the same on every call");
        let (mut centro, mut centro_old, mut rest, mut rest_old) = (0u32, 0u32, 0u32, 0u32);
        for s in &census {
            assert!(s.elderly <= s.population);
            if s.district == "Centro" {
                centro += s.population;
                centro_old += s.elderly;
            } else {
                rest += s.population;
                rest_old += s.elderly;
            }
        }
        let area = |d: &str| map.district(d).unwrap().area_km2;
        let rest_area: f64 = ["Nord", "Est", "Sud", "Ovest"]
            .iter()
            .map(|d| area(d))
            .sum();
        assert!(f64::from(centro) / area("Centro") > 3.0 * f64::from(rest) / rest_area);
        assert!(f64::from(centro_old) / f64::from(centro) > f64::from(rest_old) / f64::from(rest));
        let share = f64::from(census.iter().map(|s| s.elderly).sum::<u32>()) / f64::from(RESIDENTS);
        assert!((0.2..0.3).contains(&share), "{share}");
    }

    #[test]
    fn kiosks_and_candidates_lie_in_the_city() {
        let map = CityMap::get().unwrap();
        let k = kiosks();
        assert_eq!(k.len(), 17);
        for place in &k {
            assert!(map.section_at(place.lon, place.lat).is_some(), "{place:?}");
        }
        let downtown = k
            .iter()
            .filter(|p| {
                map.section_at(p.lon, p.lat)
                    .is_some_and(|s| s.district == "Centro")
            })
            .count();
        assert!(downtown >= 10, "{downtown} downtown");
        let b = map.public_buildings();
        assert_eq!(b.len(), map.sections().len());
        assert_eq!(map.random_points(50, 7), map.random_points(50, 7));
        assert_ne!(map.random_points(50, 7), map.random_points(50, 8));
    }
}
