//! Covering models: maximal covering (MCLP) and set covering (LSCP), each with a heuristic
//! solution and a Lagrangian bound on the optimum.
//!
//! **MCLP**: choose `p` sites (the fixed ones among them) maximising the weight of the demand
//! within `S` metres of a chosen site. Greedy (add the site covering the most uncovered
//! weight: at least 1 − 1/e of the optimum), then best-improvement swaps (one chosen site out,
//! one other in) until none helps. The upper bound relaxes the covering constraints
//! `y_i ≤ Σ_{j covers i} x_j` with multipliers `λ_i ≥ 0`:
//! `L(λ) = Σ_i max(0, w_i − λ_i) + (the fixed sites' and the p − |F| largest other c_j)` with
//! `c_j = Σ_{i covered by j} λ_i`; every `L(λ)` is ≥ the optimum, and subgradient steps lower
//! it. Demand no site can cover is left out of both (it can never count).
//!
//! **LSCP**: the fewest sites (the fixed ones among them) covering every demand point some
//! site can cover. Greedy by points newly covered, then the sites made redundant are dropped.
//! The lower bound relaxes the covering constraints `Σ_{j covers i} x_j ≥ 1`:
//! `L(λ) = Σ_i λ_i + Σ_{j fixed} (1 − c_j) + Σ_{j other} min(0, 1 − c_j)`, raised by
//! subgradient steps; the number of sites is at least `⌈L(λ)⌉`.

// Index loops over parallel arrays (sites × demand) read closer to the formulas.
#![allow(clippy::needless_range_loop)]

use super::instance::Instance;
use super::{Bounds, ModelResult, SitingError};

/// Relative improvement below which a swap is not worth making (rounding noise).
const EPS: f64 = 1e-9;

struct Cover<'a> {
    inst: &'a Instance,
    cov: Vec<Vec<u32>>,
    count: Vec<u32>,
    chosen: Vec<bool>,
    sites: Vec<usize>,
}

impl<'a> Cover<'a> {
    fn new(inst: &'a Instance, threshold: f64) -> Self {
        Self {
            inst,
            cov: inst.coverage(threshold),
            count: vec![0; inst.n()],
            chosen: vec![false; inst.m()],
            sites: Vec::new(),
        }
    }

    fn add(&mut self, j: usize) {
        for &i in &self.cov[j] {
            self.count[i as usize] += 1;
        }
        self.chosen[j] = true;
        self.sites.push(j);
    }

    fn remove(&mut self, j: usize) {
        for &i in &self.cov[j] {
            self.count[i as usize] -= 1;
        }
        self.chosen[j] = false;
        self.sites.retain(|&k| k != j);
    }

    fn covered_weight(&self) -> f64 {
        self.count
            .iter()
            .zip(&self.inst.weights)
            .filter(|(c, _)| **c > 0)
            .map(|(_, w)| w)
            .sum()
    }

    /// Weight of the demand site `j` would newly cover.
    fn gain(&self, j: usize) -> f64 {
        self.cov[j]
            .iter()
            .filter(|&&i| self.count[i as usize] == 0)
            .map(|&i| self.inst.weights[i as usize])
            .sum()
    }

    fn coverable(&self) -> Vec<bool> {
        let mut c = vec![false; self.inst.n()];
        for list in &self.cov {
            for &i in list {
                c[i as usize] = true;
            }
        }
        c
    }

    /// Best-improvement swaps until no swap adds weight; returns how many were made.
    fn improve_by_swaps(&mut self, fixed: &[bool]) -> usize {
        let (n, m) = (self.inst.n(), self.inst.m());
        let w = &self.inst.weights;
        let tolerance = EPS * self.inst.total_weight().max(1.0);
        let mut sole = vec![usize::MAX; n];
        let mut loss = vec![0.0f64; m];
        let mut adj = vec![0.0f64; m];
        let mut touched = Vec::new();
        let mut swaps = 0;
        loop {
            for &k in &self.sites {
                loss[k] = 0.0;
            }
            for &k in &self.sites {
                for &i in &self.cov[k] {
                    if self.count[i as usize] == 1 {
                        sole[i as usize] = k;
                        loss[k] += w[i as usize];
                    }
                }
            }
            let mut best: Option<(f64, usize, usize)> = None;
            for j in 0..m {
                if self.chosen[j] {
                    continue;
                }
                let mut gain = 0.0;
                for &i in &self.cov[j] {
                    let i = i as usize;
                    match self.count[i] {
                        0 => gain += w[i],
                        1 => {
                            let k = sole[i];
                            if adj[k] == 0.0 {
                                touched.push(k);
                            }
                            adj[k] += w[i];
                        }
                        _ => {}
                    }
                }
                for &k in &self.sites {
                    if fixed[k] {
                        continue;
                    }
                    let delta = gain - (loss[k] - adj[k]);
                    if delta > tolerance && best.is_none_or(|(b, _, _)| delta > b) {
                        best = Some((delta, j, k));
                    }
                }
                for k in touched.drain(..) {
                    adj[k] = 0.0;
                }
            }
            match best {
                Some((_, j, k)) => {
                    self.remove(k);
                    self.add(j);
                    swaps += 1;
                }
                None => return swaps,
            }
        }
    }
}

fn check_p(inst: &Instance, p: usize) -> Result<Vec<bool>, SitingError> {
    let fixed = inst.fixed();
    if p == 0 || p > inst.m() {
        return Err(SitingError::invalid(format!(
            "p must be between 1 and the {} candidate sites, not {p}",
            inst.m()
        )));
    }
    if fixed.len() > p {
        return Err(SitingError::invalid(format!(
            "{} sites are fixed, more than the {p} to choose",
            fixed.len()
        )));
    }
    let mut is_fixed = vec![false; inst.m()];
    for j in fixed {
        is_fixed[j] = true;
    }
    Ok(is_fixed)
}

fn check_threshold(threshold: f64) -> Result<(), SitingError> {
    if threshold.is_finite() && threshold > 0.0 {
        Ok(())
    } else {
        Err(SitingError::invalid(format!(
            "the covering distance must be metres > 0, not {threshold}"
        )))
    }
}

/// The `k` largest of `values` among the indices where `eligible`, by value then index.
fn top(values: &[f64], eligible: &[bool], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..values.len()).filter(|&j| eligible[j]).collect();
    let k = k.min(idx.len());
    if k == 0 {
        return Vec::new();
    }
    let cmp = |a: &usize, b: &usize| values[*b].total_cmp(&values[*a]).then(a.cmp(b));
    if k < idx.len() {
        idx.select_nth_unstable_by(k - 1, cmp);
        idx.truncate(k);
    }
    idx.sort_unstable_by(cmp);
    idx
}

/// Maximal covering: `p` sites maximising the weight covered within `threshold` metres.
pub fn mclp(
    inst: &Instance,
    p: usize,
    threshold: f64,
    bounds: &Bounds,
) -> Result<ModelResult, SitingError> {
    check_threshold(threshold)?;
    let is_fixed = check_p(inst, p)?;
    let started = std::time::Instant::now();
    let mut state = Cover::new(inst, threshold);
    for j in 0..inst.m() {
        if is_fixed[j] {
            state.add(j);
        }
    }
    let site_weight: Vec<f64> = state
        .cov
        .iter()
        .map(|l| l.iter().map(|&i| inst.weights[i as usize]).sum())
        .collect();
    while state.sites.len() < p {
        let mut best: Option<(f64, usize)> = None;
        for j in 0..inst.m() {
            if state.chosen[j] {
                continue;
            }
            let g = state.gain(j);
            let better = match best {
                None => true,
                Some((bg, bj)) => {
                    g > bg + EPS * bg.abs()
                        || (g >= bg - EPS * bg.abs() && site_weight[j] > site_weight[bj])
                }
            };
            if better {
                best = Some((g, j));
            }
        }
        let Some((_, j)) = best else { break };
        state.add(j);
    }
    let mut swaps = state.improve_by_swaps(&is_fixed);
    let mut objective = state.covered_weight();

    // Lagrangian upper bound (and the relaxation's choices as other starting points).
    let coverable = state.coverable();
    let w = &inst.weights;
    let mut lambda: Vec<f64> = (0..inst.n())
        .map(|i| if coverable[i] { w[i] } else { 0.0 })
        .collect();
    let coverable_weight: f64 = (0..inst.n()).filter(|&i| coverable[i]).map(|i| w[i]).sum();
    let mut upper = coverable_weight;
    let free: Vec<bool> = is_fixed.iter().map(|f| !f).collect();
    let fixed_sites: Vec<usize> = (0..inst.m()).filter(|&j| is_fixed[j]).collect();
    let mut theta = 2.0;
    let mut stale = 0;
    let mut iterations = 0;
    let mut c = vec![0.0f64; inst.m()];
    let mut x_count = vec![0u32; inst.n()];
    let mut best_relaxed: Option<(f64, Vec<usize>)> = None;
    while iterations < bounds.max_iterations {
        iterations += 1;
        for (j, list) in state.cov.iter().enumerate() {
            c[j] = list.iter().map(|&i| lambda[i as usize]).sum();
        }
        let mut x = fixed_sites.clone();
        x.extend(top(&c, &free, p - fixed_sites.len()));
        let mut l: f64 = x.iter().map(|&j| c[j]).sum();
        for i in 0..inst.n() {
            if coverable[i] {
                l += (w[i] - lambda[i]).max(0.0);
            }
        }
        if l < upper {
            if l < upper - EPS * upper.abs() {
                stale = 0;
            } else {
                stale += 1;
            }
            upper = l;
        } else {
            stale += 1;
        }
        // The relaxation's sites are a feasible choice too.
        x_count.iter_mut().for_each(|v| *v = 0);
        for &j in &x {
            for &i in &state.cov[j] {
                x_count[i as usize] += 1;
            }
        }
        let value: f64 = (0..inst.n())
            .filter(|&i| x_count[i] > 0)
            .map(|i| w[i])
            .sum();
        if value > objective && best_relaxed.as_ref().is_none_or(|(v, _)| value > *v) {
            best_relaxed = Some((value, x.clone()));
        }
        let lower = objective.max(best_relaxed.as_ref().map_or(0.0, |b| b.0));
        if upper - lower <= bounds.tolerance * upper.abs().max(1.0) {
            break;
        }
        if stale >= bounds.patience {
            theta /= 2.0;
            stale = 0;
            if theta < bounds.min_step {
                break;
            }
        }
        let mut norm = 0.0;
        let mut g = vec![0.0f64; inst.n()];
        for i in 0..inst.n() {
            if !coverable[i] {
                continue;
            }
            let y = if w[i] - lambda[i] > 0.0 { 1.0 } else { 0.0 };
            g[i] = f64::from(x_count[i]) - y;
            norm += g[i] * g[i];
        }
        if norm == 0.0 {
            break;
        }
        let step = theta * (l - lower).max(EPS * l.abs().max(1.0)) / norm;
        for i in 0..inst.n() {
            if coverable[i] {
                lambda[i] = (lambda[i] - step * g[i]).max(0.0);
            }
        }
    }
    if let Some((value, x)) = best_relaxed
        && value > objective
    {
        for j in state.sites.clone() {
            state.remove(j);
        }
        for j in x {
            state.add(j);
        }
        swaps += state.improve_by_swaps(&is_fixed);
        objective = state.covered_weight();
    }
    let upper = upper.max(objective);
    let mut sites = state.sites;
    sites.sort_unstable();
    Ok(ModelResult {
        sites,
        objective,
        bound: upper,
        gap: relative_gap(upper, objective),
        iterations,
        swaps,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Set covering: the fewest sites covering, within `threshold` metres, every demand point
/// that some candidate covers. `objective` is the number of sites, `bound` a lower bound.
pub fn lscp(inst: &Instance, threshold: f64, bounds: &Bounds) -> Result<ModelResult, SitingError> {
    check_threshold(threshold)?;
    let started = std::time::Instant::now();
    let mut is_fixed = vec![false; inst.m()];
    let mut state = Cover::new(inst, threshold);
    for j in inst.fixed() {
        is_fixed[j] = true;
        state.add(j);
    }
    let coverable = state.coverable();
    let w = &inst.weights;
    let uncovered = |state: &Cover<'_>| (0..inst.n()).any(|i| coverable[i] && state.count[i] == 0);
    while uncovered(&state) {
        let mut best: Option<(usize, f64, usize)> = None;
        for j in 0..inst.m() {
            if state.chosen[j] {
                continue;
            }
            let (mut points, mut weight) = (0usize, 0.0);
            for &i in &state.cov[j] {
                if state.count[i as usize] == 0 {
                    points += 1;
                    weight += w[i as usize];
                }
            }
            if points > 0
                && best.is_none_or(|(bp, bw, _)| points > bp || (points == bp && weight > bw))
            {
                best = Some((points, weight, j));
            }
        }
        let Some((_, _, j)) = best else { break };
        state.add(j);
    }
    // Drop the sites every point of which another chosen site covers, last added first.
    for j in state.sites.clone().into_iter().rev() {
        if !is_fixed[j] && state.cov[j].iter().all(|&i| state.count[i as usize] >= 2) {
            state.remove(j);
        }
    }
    let objective = state.sites.len() as f64;

    // Lagrangian lower bound, from a start with every c_j ≤ 1: λ_i = the smallest 1/|cover j|
    // over the sites j covering i.
    let mut lambda = vec![f64::INFINITY; inst.n()];
    for list in &state.cov {
        let share = 1.0 / list.len().max(1) as f64;
        for &i in list {
            lambda[i as usize] = lambda[i as usize].min(share);
        }
    }
    for (i, l) in lambda.iter_mut().enumerate() {
        if !coverable[i] {
            *l = 0.0;
        }
    }
    let mut lower = is_fixed.iter().filter(|f| **f).count() as f64;
    let mut theta = 2.0;
    let mut stale = 0;
    let mut iterations = 0;
    let mut c = vec![0.0f64; inst.m()];
    while iterations < bounds.max_iterations {
        iterations += 1;
        for (j, list) in state.cov.iter().enumerate() {
            c[j] = list.iter().map(|&i| lambda[i as usize]).sum();
        }
        let mut l: f64 = (0..inst.n())
            .filter(|&i| coverable[i])
            .map(|i| lambda[i])
            .sum();
        let mut x_count = vec![0u32; inst.n()];
        for j in 0..inst.m() {
            if is_fixed[j] || c[j] > 1.0 {
                l += 1.0 - c[j];
                for &i in &state.cov[j] {
                    x_count[i as usize] += 1;
                }
            }
        }
        if l > lower + EPS * lower.abs().max(1.0) {
            lower = l;
            stale = 0;
        } else {
            stale += 1;
        }
        if objective - lower.ceil_eps() <= 0.0 {
            break;
        }
        if stale >= bounds.patience {
            theta /= 2.0;
            stale = 0;
            if theta < bounds.min_step {
                break;
            }
        }
        let mut norm = 0.0;
        let mut g = vec![0.0f64; inst.n()];
        for i in 0..inst.n() {
            if coverable[i] {
                g[i] = 1.0 - f64::from(x_count[i]);
                norm += g[i] * g[i];
            }
        }
        if norm == 0.0 {
            break;
        }
        let step = theta * (objective - l).max(EPS) / norm;
        for i in 0..inst.n() {
            if coverable[i] {
                lambda[i] = (lambda[i] + step * g[i]).max(0.0);
            }
        }
    }
    let bound = lower.ceil_eps().min(objective);
    let mut sites = state.sites;
    sites.sort_unstable();
    Ok(ModelResult {
        sites,
        objective,
        bound,
        gap: relative_gap(objective, bound),
        iterations,
        swaps: 0,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// `(worse − better) / worse`-style gap between a bound and a value, as a fraction of the
/// larger: 0 when they meet.
pub(crate) fn relative_gap(a: f64, b: f64) -> f64 {
    let hi = a.abs().max(b.abs());
    if hi == 0.0 {
        0.0
    } else {
        ((a - b).abs() / hi).max(0.0)
    }
}

trait CeilEps {
    fn ceil_eps(self) -> f64;
}

impl CeilEps for f64 {
    /// Ceiling that does not round 2.0000000001 (rounding noise) up to 3.
    fn ceil_eps(self) -> f64 {
        (self - 1e-7).ceil()
    }
}
