//! How good a network is for the residents, and what changes from one network to another.

use super::instance::Instance;
use serde::{Deserialize, Serialize};

/// Residents within a distance of a kiosk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reach {
    /// The distance, metres.
    pub threshold_m: f64,
    /// Residents within it.
    pub population: f64,
    /// Their share of all residents.
    pub population_share: f64,
    /// Residents aged 65+ within it.
    pub elderly: f64,
    /// Their share of all residents aged 65+.
    pub elderly_share: f64,
}

/// A network seen from the residents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetworkSummary {
    /// Its kiosks.
    pub sites: Vec<SiteRef>,
    /// Residents within each reported distance.
    pub reach: Vec<Reach>,
    /// Mean walking distance of a resident to the nearest kiosk, metres.
    pub mean_distance_m: f64,
    /// 90th percentile of that distance over the residents, metres.
    pub p90_distance_m: f64,
    /// Mean walking distance of a resident aged 65+, metres.
    pub elderly_mean_distance_m: f64,
    /// 90th percentile over the residents aged 65+, metres.
    pub elderly_p90_distance_m: f64,
}

/// A site, as reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SiteRef {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// What it is.
    pub kind: String,
    /// Longitude.
    pub lon: f64,
    /// Latitude.
    pub lat: f64,
    /// Must stay.
    pub fixed: bool,
}

/// One of today's kiosks moving to a new site.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Move {
    /// Where it stands today.
    pub from: SiteRef,
    /// Where it would stand.
    pub to: SiteRef,
    /// How far it moves (great-circle), metres.
    pub distance_m: f64,
}

/// What changes between two networks.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Changes {
    /// Sites in both.
    pub kept: Vec<SiteRef>,
    /// Sites of the first matched to sites of the second.
    pub moves: Vec<Move>,
    /// Sites of the first left without a match.
    pub closed: Vec<SiteRef>,
    /// Sites of the second left without a match.
    pub opened: Vec<SiteRef>,
}

pub(crate) fn site_ref(inst: &Instance, j: usize) -> SiteRef {
    let s = &inst.sites[j];
    SiteRef {
        id: s.id.clone(),
        name: s.name.clone(),
        kind: s.kind.clone(),
        lon: s.lon,
        lat: s.lat,
        fixed: s.fixed,
    }
}

/// Distance from every demand point to the nearest of `sites`, metres.
pub fn nearest(inst: &Instance, sites: &[usize]) -> Vec<f64> {
    let mut best = vec![f64::INFINITY; inst.n()];
    for &j in sites {
        for (b, d) in best.iter_mut().zip(inst.from_site(j)) {
            *b = b.min(*d);
        }
    }
    best
}

/// Weight of the demand within `threshold` of one of `sites`.
pub fn covered_weight(inst: &Instance, sites: &[usize], threshold: f64) -> f64 {
    nearest(inst, sites)
        .iter()
        .zip(&inst.weights)
        .filter(|(d, _)| **d <= threshold)
        .map(|(_, w)| w)
        .sum()
}

/// The network's reach and distances, for residents and for the elderly.
pub fn summarise(inst: &Instance, sites: &[usize], thresholds: &[f64]) -> NetworkSummary {
    let d = nearest(inst, sites);
    let pop: Vec<f64> = inst.demand.iter().map(|p| p.population).collect();
    let old: Vec<f64> = inst.demand.iter().map(|p| p.elderly).collect();
    let total_pop: f64 = pop.iter().sum();
    let total_old: f64 = old.iter().sum();
    let within = |weights: &[f64], t: f64| -> f64 {
        d.iter()
            .zip(weights)
            .filter(|(d, _)| **d <= t)
            .map(|(_, w)| w)
            .sum()
    };
    let share = |part: f64, total: f64| if total > 0.0 { part / total } else { 0.0 };
    let reach = thresholds
        .iter()
        .map(|&t| {
            let (p, e) = (within(&pop, t), within(&old, t));
            Reach {
                threshold_m: t,
                population: p,
                population_share: share(p, total_pop),
                elderly: e,
                elderly_share: share(e, total_old),
            }
        })
        .collect();
    NetworkSummary {
        sites: sites.iter().map(|&j| site_ref(inst, j)).collect(),
        reach,
        mean_distance_m: weighted_mean(&d, &pop),
        p90_distance_m: weighted_quantile(&d, &pop, 0.9),
        elderly_mean_distance_m: weighted_mean(&d, &old),
        elderly_p90_distance_m: weighted_quantile(&d, &old, 0.9),
    }
}

/// Mean of `values` weighted by `weights` (0 when the weights add up to 0).
pub fn weighted_mean(values: &[f64], weights: &[f64]) -> f64 {
    let total: f64 = weights.iter().sum();
    if total <= 0.0 {
        return 0.0;
    }
    values.iter().zip(weights).map(|(v, w)| v * w).sum::<f64>() / total
}

/// The smallest value `v` such that at least `q` of the weight lies at values ≤ `v`
/// (0 when the weights add up to 0).
pub fn weighted_quantile(values: &[f64], weights: &[f64], q: f64) -> f64 {
    let total: f64 = weights.iter().sum();
    if total <= 0.0 {
        return 0.0;
    }
    let mut order: Vec<usize> = (0..values.len()).filter(|&i| weights[i] > 0.0).collect();
    order.sort_by(|a, b| values[*a].total_cmp(&values[*b]));
    let target = q * total;
    let mut acc = 0.0;
    for &i in &order {
        acc += weights[i];
        if acc >= target - 1e-9 * total {
            return values[i];
        }
    }
    order.last().map_or(0.0, |&i| values[i])
}

/// From network `from` to network `to`: the sites kept, and the others paired as moves,
/// closest pairs first (greedy; each site in one pair at most).
pub fn changes(inst: &Instance, from: &[usize], to: &[usize]) -> Changes {
    let kept: Vec<usize> = from.iter().copied().filter(|j| to.contains(j)).collect();
    let mut gone: Vec<usize> = from.iter().copied().filter(|j| !to.contains(j)).collect();
    let mut new: Vec<usize> = to.iter().copied().filter(|j| !from.contains(j)).collect();
    let mut pairs = Vec::new();
    for &a in &gone {
        for &b in &new {
            let (sa, sb) = (&inst.sites[a], &inst.sites[b]);
            pairs.push((
                super::instance::haversine_m(sa.lon, sa.lat, sb.lon, sb.lat),
                a,
                b,
            ));
        }
    }
    pairs.sort_by(|x, y| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1)).then(x.2.cmp(&y.2)));
    let mut moves = Vec::new();
    for (d, a, b) in pairs {
        if gone.contains(&a) && new.contains(&b) {
            gone.retain(|&x| x != a);
            new.retain(|&x| x != b);
            moves.push(Move {
                from: site_ref(inst, a),
                to: site_ref(inst, b),
                distance_m: d,
            });
        }
    }
    Changes {
        kept: kept.iter().map(|&j| site_ref(inst, j)).collect(),
        moves,
        closed: gone.iter().map(|&j| site_ref(inst, j)).collect(),
        opened: new.iter().map(|&j| site_ref(inst, j)).collect(),
    }
}
