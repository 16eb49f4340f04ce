//! p-median: choose `p` sites (the fixed ones among them) minimising the demand-weighted
//! distance from every demand point to its nearest chosen site.
//!
//! The heuristic is a greedy start (add the site that lowers the total most) followed by
//! Teitz–Bart vertex substitution: each candidate in turn is tried in place of each chosen
//! (non-fixed) site and the best swap is made when it lowers the total; the passes go on
//! until a whole pass changes nothing. Each try is one pass over the demand (Whitaker's fast
//! interchange: the nearest and second-nearest chosen site of every point are kept).
//!
//! The lower bound relaxes the assignment constraints `Σ_j x_ij = 1` with multipliers `λ_i`:
//! `L(λ) = Σ_i λ_i + (the fixed sites' and the p − |F| smallest other ρ_j)` with
//! `ρ_j = Σ_i min(0, w_i d_ij − λ_i)`; every `L(λ)` is ≤ the optimum, and subgradient steps
//! raise it. The relaxation's sites are feasible choices too, and improve the heuristic when
//! they are better.

// Index loops over parallel arrays (sites × demand) read closer to the formulas.
#![allow(clippy::needless_range_loop)]

use super::coverage::relative_gap;
use super::instance::Instance;
use super::{Bounds, ModelResult, SitingError};

/// Relative improvement below which a swap is not worth making (rounding noise).
const EPS: f64 = 1e-9;

struct Assignment {
    /// Nearest chosen site of each point.
    c1: Vec<usize>,
    /// Distance to it.
    d1: Vec<f64>,
    /// Distance to the second nearest chosen site (∞ with one site).
    d2: Vec<f64>,
}

impl Assignment {
    fn of(inst: &Instance, sites: &[usize]) -> Self {
        let n = inst.n();
        let mut a = Self {
            c1: vec![usize::MAX; n],
            d1: vec![f64::INFINITY; n],
            d2: vec![f64::INFINITY; n],
        };
        for &j in sites {
            for (i, &d) in inst.from_site(j).iter().enumerate() {
                if d < a.d1[i] {
                    a.d2[i] = a.d1[i];
                    a.d1[i] = d;
                    a.c1[i] = j;
                } else if d < a.d2[i] {
                    a.d2[i] = d;
                }
            }
        }
        a
    }

    fn cost(&self, w: &[f64]) -> f64 {
        self.d1.iter().zip(w).map(|(d, w)| d * w).sum()
    }
}

/// `rho[j] = Σ_i min(0, w_i d_ij − λ_i)` for every site, the sites split over the machine's
/// cores (each site's sum is the same whatever the split).
fn reduced_costs(inst: &Instance, lambda: &[f64], rho: &mut [f64]) {
    let w = &inst.weights;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
    let chunk = rho.len().div_ceil(threads).max(64);
    let sum = |j: usize| -> f64 {
        inst.from_site(j)
            .iter()
            .zip(w)
            .zip(lambda)
            .map(|((d, w), l)| (w * d - l).min(0.0))
            .sum()
    };
    if chunk >= rho.len() {
        for (j, r) in rho.iter_mut().enumerate() {
            *r = sum(j);
        }
        return;
    }
    std::thread::scope(|scope| {
        for (k, part) in rho.chunks_mut(chunk).enumerate() {
            let sum = &sum;
            scope.spawn(move || {
                for (o, r) in part.iter_mut().enumerate() {
                    *r = sum(k * chunk + o);
                }
            });
        }
    });
}

/// Total weighted distance of a choice of sites.
pub(crate) fn cost_of(inst: &Instance, sites: &[usize]) -> f64 {
    Assignment::of(inst, sites).cost(&inst.weights)
}

/// Teitz–Bart substitution from `sites`; returns the sites and how many swaps were made.
fn substitute(inst: &Instance, mut sites: Vec<usize>, fixed: &[bool]) -> (Vec<usize>, usize) {
    let (n, m) = (inst.n(), inst.m());
    let w = &inst.weights;
    let tolerance = EPS * inst.total_weight().max(1.0);
    let mut chosen = vec![false; m];
    for &j in &sites {
        chosen[j] = true;
    }
    let mut a = Assignment::of(inst, &sites);
    let mut loss = vec![0.0f64; m];
    let mut swaps = 0;
    let mut since_last = 0;
    let mut j = 0;
    // Stop after a whole pass over the candidates without a swap.
    while since_last < m {
        let candidate = j;
        j = (j + 1) % m;
        since_last += 1;
        if chosen[candidate] {
            continue;
        }
        for &k in &sites {
            loss[k] = 0.0;
        }
        let mut gain = 0.0;
        let dj = inst.from_site(candidate);
        for i in 0..n {
            let d = dj[i];
            if d < a.d1[i] {
                gain += w[i] * (a.d1[i] - d);
            } else {
                loss[a.c1[i]] += w[i] * (a.d2[i].min(d) - a.d1[i]);
            }
        }
        let best = sites
            .iter()
            .copied()
            .filter(|&k| !fixed[k])
            .map(|k| (loss[k] - gain, k))
            .min_by(|x, y| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1)));
        if let Some((delta, k)) = best
            && delta < -tolerance
        {
            chosen[k] = false;
            chosen[candidate] = true;
            for s in sites.iter_mut() {
                if *s == k {
                    *s = candidate;
                }
            }
            a = Assignment::of(inst, &sites);
            swaps += 1;
            since_last = 0;
        }
    }
    sites.sort_unstable();
    (sites, swaps)
}

/// The p-median heuristic and its Lagrangian lower bound. `objective` is the total
/// weighted distance (metres × weight), `bound` a lower bound on it.
pub fn pmedian(inst: &Instance, p: usize, bounds: &Bounds) -> Result<ModelResult, SitingError> {
    let (n, m) = (inst.n(), inst.m());
    let fixed_sites = inst.fixed();
    if p == 0 || p > m {
        return Err(SitingError::invalid(format!(
            "p must be between 1 and the {m} candidate sites, not {p}"
        )));
    }
    if fixed_sites.len() > p {
        return Err(SitingError::invalid(format!(
            "{} sites are fixed, more than the {p} to choose",
            fixed_sites.len()
        )));
    }
    let started = std::time::Instant::now();
    let w = &inst.weights;
    let mut is_fixed = vec![false; m];
    for &j in &fixed_sites {
        is_fixed[j] = true;
    }

    // Greedy start.
    let mut sites = fixed_sites.clone();
    let mut chosen = is_fixed.clone();
    let mut best_d = Assignment::of(inst, &sites).d1;
    while sites.len() < p {
        let mut best: Option<(f64, usize)> = None;
        for j in 0..m {
            if chosen[j] {
                continue;
            }
            let cost: f64 = inst
                .from_site(j)
                .iter()
                .zip(&best_d)
                .zip(w)
                .map(|((d, b), w)| w * d.min(*b))
                .sum();
            if best.is_none_or(|(c, _)| cost < c) {
                best = Some((cost, j));
            }
        }
        let Some((_, j)) = best else { break };
        chosen[j] = true;
        sites.push(j);
        for (b, d) in best_d.iter_mut().zip(inst.from_site(j)) {
            *b = b.min(*d);
        }
    }
    let (mut sites, mut swaps) = substitute(inst, sites, &is_fixed);
    let mut upper = cost_of(inst, &sites);

    // Lagrangian lower bound.
    let a = Assignment::of(inst, &sites);
    let mut lambda: Vec<f64> = (0..n).map(|i| w[i] * a.d1[i]).collect();
    let free: Vec<usize> = (0..m).filter(|&j| !is_fixed[j]).collect();
    let k_free = p - fixed_sites.len();
    // Distances and weights are not negative: 0 is a bound to start from.
    let mut lower = 0.0f64;
    let mut theta = 2.0;
    let mut stale = 0;
    let mut iterations = 0;
    let mut rho = vec![0.0f64; m];
    let mut better: Option<(f64, Vec<usize>)> = None;
    while iterations < bounds.max_iterations {
        iterations += 1;
        reduced_costs(inst, &lambda, &mut rho);
        let mut y = fixed_sites.clone();
        let mut order = free.clone();
        if k_free > 0 && k_free < order.len() {
            order.select_nth_unstable_by(k_free - 1, |a, b| {
                rho[*a].total_cmp(&rho[*b]).then(a.cmp(b))
            });
        }
        y.extend(order.into_iter().take(k_free));
        let l: f64 = lambda.iter().sum::<f64>() + y.iter().map(|&j| rho[j]).sum::<f64>();
        if l > lower + EPS * lower.abs().max(1.0) {
            lower = l;
            stale = 0;
        } else {
            stale += 1;
        }
        let value = cost_of(inst, &y);
        if value < upper && better.as_ref().is_none_or(|(v, _)| value < *v) {
            better = Some((value, y.clone()));
        }
        let best_upper = better.as_ref().map_or(upper, |b| b.0.min(upper));
        if best_upper - lower <= bounds.tolerance * best_upper.abs().max(1.0) {
            break;
        }
        if stale >= bounds.patience {
            theta /= 2.0;
            stale = 0;
            if theta < bounds.min_step {
                break;
            }
        }
        let mut g = vec![1.0f64; n];
        for &j in &y {
            for (i, d) in inst.from_site(j).iter().enumerate() {
                if w[i] * d - lambda[i] < 0.0 {
                    g[i] -= 1.0;
                }
            }
        }
        let norm: f64 = g.iter().map(|v| v * v).sum();
        if norm == 0.0 {
            break;
        }
        let step = theta * (best_upper - l).max(EPS * best_upper.abs().max(1.0)) / norm;
        for (l, g) in lambda.iter_mut().zip(&g) {
            *l = (*l + step * g).max(0.0);
        }
    }
    if let Some((value, y)) = better
        && value < upper
    {
        let (improved, more) = substitute(inst, y, &is_fixed);
        swaps += more;
        sites = improved;
        upper = cost_of(inst, &sites);
    }
    let lower = lower.min(upper).max(0.0);
    Ok(ModelResult {
        sites,
        objective: upper,
        bound: lower,
        gap: relative_gap(upper, lower),
        iterations,
        swaps,
        seconds: started.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::siting::{DemandPoint, DistanceSource, Site, Weighting};

    #[test]
    fn reduced_costs_split_over_cores_equal_the_plain_sums() {
        let demand: Vec<DemandPoint> = (0..50)
            .map(|i| DemandPoint {
                id: format!("d{i}"),
                lon: 11.0 + 0.001 * f64::from(i % 7),
                lat: 43.8 + 0.001 * f64::from(i / 7),
                population: 10.0 + f64::from(i),
                elderly: 1.0,
                observed: 0.0,
            })
            .collect();
        let sites: Vec<Site> = (0..300)
            .map(|j| Site {
                id: format!("s{j}"),
                name: String::new(),
                lon: 11.0 + 0.0001 * f64::from(j % 17),
                lat: 43.8 + 0.0001 * f64::from(j / 17),
                kind: String::new(),
                existing: false,
                fixed: false,
            })
            .collect();
        let inst = Instance::new(
            demand,
            sites,
            Weighting::default(),
            &DistanceSource::GreatCircle { detour: 1.3 },
        )
        .unwrap();
        let lambda: Vec<f64> = (0..inst.n()).map(|i| 5_000.0 + 100.0 * i as f64).collect();
        let mut rho = vec![0.0; inst.m()];
        reduced_costs(&inst, &lambda, &mut rho);
        for (j, r) in rho.iter().enumerate() {
            let plain: f64 = (0..inst.n())
                .map(|i| (inst.weights[i] * inst.distance(j, i) - lambda[i]).min(0.0))
                .sum();
            assert_eq!(*r, plain, "site {j}");
        }
        assert!(rho.iter().any(|r| *r < 0.0));
    }
}
