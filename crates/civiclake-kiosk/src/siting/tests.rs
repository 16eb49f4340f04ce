//! The models against exhaustive enumeration on small instances, and their bounds as
//! properties.

use super::*;
use proptest::prelude::*;

/// Longitude of a point `x` metres east of 11° E at 43° N.
fn lon_of(x: f64) -> f64 {
    11.0 + x / (111_195.08 * 43f64.to_radians().cos())
}

/// Latitude of a point `y` metres north of 43° N.
fn lat_of(y: f64) -> f64 {
    43.0 + y / 111_195.08
}

/// A small instance on a grid of metres (east, north) around Prato's centre, with the
/// distances given as a matrix so they are exact.
fn instance(
    demand: &[(f64, f64, f64, f64)],
    sites: &[(f64, f64, bool)],
    elderly_factor: f64,
) -> Instance {
    let d: Vec<DemandPoint> = demand
        .iter()
        .enumerate()
        .map(|(i, &(x, y, pop, old))| DemandPoint {
            id: format!("d{i}"),
            lon: lon_of(x),
            lat: lat_of(y),
            population: pop,
            elderly: old.min(pop),
            observed: 0.0,
        })
        .collect();
    let s: Vec<Site> = sites
        .iter()
        .enumerate()
        .map(|(j, &(x, y, fixed))| Site {
            id: format!("s{j}"),
            name: format!("site {j}"),
            lon: lon_of(x),
            lat: lat_of(y),
            kind: String::new(),
            existing: false,
            fixed,
        })
        .collect();
    let mut matrix = Vec::new();
    for (i, a) in demand.iter().enumerate() {
        for (j, b) in sites.iter().enumerate() {
            let m = ((a.0 - b.0).powi(2) + (a.1 - b.1).powi(2)).sqrt();
            matrix.push((format!("d{i}"), format!("s{j}"), m));
        }
    }
    Instance::new(
        d,
        s,
        Weighting {
            elderly_factor,
            observed_share: 0.0,
        },
        &DistanceSource::Matrix(matrix),
    )
    .unwrap()
}

/// Every choice of `p` sites containing the fixed ones.
fn choices(m: usize, p: usize, fixed: &[usize]) -> Vec<Vec<usize>> {
    let mut out = Vec::new();
    let mut pick = Vec::new();
    fn rec(start: usize, m: usize, p: usize, pick: &mut Vec<usize>, out: &mut Vec<Vec<usize>>) {
        if pick.len() == p {
            out.push(pick.clone());
            return;
        }
        for j in start..m {
            pick.push(j);
            rec(j + 1, m, p, pick, out);
            pick.pop();
        }
    }
    rec(0, m, p, &mut pick, &mut out);
    out.retain(|c| fixed.iter().all(|f| c.contains(f)));
    out
}

fn best_mclp(inst: &Instance, p: usize, s: f64) -> f64 {
    choices(inst.m(), p, &inst.fixed())
        .iter()
        .map(|c| evaluate::covered_weight(inst, c, s))
        .fold(f64::NEG_INFINITY, f64::max)
}

fn best_pmedian(inst: &Instance, p: usize) -> f64 {
    choices(inst.m(), p, &inst.fixed())
        .iter()
        .map(|c| pmedian::cost_of(inst, c))
        .fold(f64::INFINITY, f64::min)
}

fn best_lscp(inst: &Instance, s: f64) -> usize {
    let cov = inst.coverage(s);
    let coverable: Vec<usize> = (0..inst.n())
        .filter(|i| cov.iter().any(|l| l.contains(&(*i as u32))))
        .collect();
    for p in 0..=inst.m() {
        for c in choices(inst.m(), p, &inst.fixed()) {
            if coverable
                .iter()
                .all(|i| c.iter().any(|&j| cov[j].contains(&(*i as u32))))
            {
                return p;
            }
        }
    }
    inst.m()
}

/// A fixed small instance: two clusters and a lone point, sites between them.
fn clusters() -> Instance {
    instance(
        &[
            (0.0, 0.0, 100.0, 10.0),
            (100.0, 0.0, 80.0, 40.0),
            (0.0, 100.0, 120.0, 0.0),
            (1000.0, 1000.0, 90.0, 90.0),
            (1100.0, 1000.0, 60.0, 0.0),
            (3000.0, 0.0, 10.0, 0.0),
        ],
        &[
            (50.0, 50.0, false),
            (1050.0, 1000.0, false),
            (2900.0, 0.0, false),
            (500.0, 500.0, false),
            (0.0, 0.0, false),
        ],
        2.0,
    )
}

#[test]
fn mclp_finds_the_optimum_of_a_small_instance_and_bounds_it() {
    let inst = clusters();
    let r = coverage::mclp(&inst, 2, 200.0, &Bounds::default()).unwrap();
    // Sites 0 (both west clusters) and 1 (the east one): everyone but the lone point.
    assert_eq!(r.sites, vec![0, 1]);
    let expected = (90.0 + 10.0 * 2.0) + (40.0 + 40.0 * 2.0) + 120.0 + 90.0 * 2.0 + 60.0;
    assert_eq!(r.objective, expected);
    assert_eq!(best_mclp(&inst, 2, 200.0), expected);
    assert!(r.bound >= expected - 1e-6, "{r:?}");
    assert!(r.gap < 0.01, "{r:?}");
}

#[test]
fn pmedian_finds_the_optimum_of_a_small_instance_and_bounds_it() {
    let inst = clusters();
    let r = pmedian::pmedian(&inst, 3, &Bounds::default()).unwrap();
    let opt = best_pmedian(&inst, 3);
    assert!((r.objective - opt).abs() < 1e-6, "{r:?} vs {opt}");
    assert!(r.bound <= opt + 1e-6, "{r:?}");
    assert_eq!(r.sites.len(), 3);
}

#[test]
fn lscp_uses_the_fewest_sites() {
    let inst = clusters();
    let r = coverage::lscp(&inst, 200.0, &Bounds::default()).unwrap();
    assert_eq!(r.objective, 3.0, "{r:?}");
    assert_eq!(best_lscp(&inst, 200.0), 3);
    assert!(r.bound <= 3.0 && r.bound >= 1.0, "{r:?}");
    // Everyone coverable is covered.
    let d = evaluate::nearest(&inst, &r.sites);
    assert!(d.iter().all(|d| *d <= 200.0), "{d:?}");
}

#[test]
fn fixed_sites_stay_and_bad_p_is_refused() {
    let mut inst = clusters();
    inst.sites[2].fixed = true;
    let r = coverage::mclp(&inst, 2, 200.0, &Bounds::default()).unwrap();
    assert!(r.sites.contains(&2), "{r:?}");
    assert_eq!(r.objective, best_mclp(&inst, 2, 200.0));
    let r = pmedian::pmedian(&inst, 2, &Bounds::default()).unwrap();
    assert!(r.sites.contains(&2));
    assert!((r.objective - best_pmedian(&inst, 2)).abs() < 1e-6);
    let e = coverage::mclp(&inst, 0, 200.0, &Bounds::default()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "p must be between 1 and the 5 candidate sites, not 0"
    );
    let e = pmedian::pmedian(&inst, 6, &Bounds::default()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "p must be between 1 and the 5 candidate sites, not 6"
    );
    inst.sites[0].fixed = true;
    inst.sites[1].fixed = true;
    let e = coverage::mclp(&inst, 2, 200.0, &Bounds::default()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "3 sites are fixed, more than the 2 to choose"
    );
    let e = coverage::mclp(&inst, 3, -5.0, &Bounds::default()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "the covering distance must be metres > 0, not -5"
    );
}

#[test]
fn a_plan_compares_today_with_the_proposal() {
    let mut sites: Vec<Site> = clusters().sites.clone();
    // Today: the lone point's site and the useless one in the middle.
    sites[2].existing = true;
    sites[3].existing = true;
    let demand = clusters().demand.clone();
    let matrix: Vec<(String, String, f64)> = {
        let inst = clusters();
        let mut m = Vec::new();
        for j in 0..inst.m() {
            for i in 0..inst.n() {
                m.push((
                    inst.demand[i].id.clone(),
                    inst.sites[j].id.clone(),
                    inst.distance(j, i),
                ));
            }
        }
        m
    };
    let options = PlanOptions {
        model: Model::Mclp,
        threshold_m: 200.0,
        report_thresholds_m: vec![200.0, 5000.0],
        distances: DistanceSource::Matrix(matrix),
        ..PlanOptions::default()
    };
    let plan = plan(demand, sites, &options).unwrap();
    assert_eq!(plan.result.p, 2, "p defaults to today's count");
    let today = plan.today.as_ref().unwrap();
    // Today covers only the lone point (10 residents) within 200 m.
    assert_eq!(today.reach[0].population, 10.0);
    assert_eq!(plan.proposal.reach[0].population, 450.0);
    assert_eq!(plan.proposal.reach[1].population_share, 1.0);
    assert_eq!(plan.proposal.reach[0].elderly, 140.0);
    assert_eq!(plan.moves.len(), 2);
    assert!(plan.kept.is_empty() && plan.closed.is_empty() && plan.opened.is_empty());
    let moved: Vec<(&str, &str)> = plan
        .moves
        .iter()
        .map(|m| (m.from.id.as_str(), m.to.id.as_str()))
        .collect();
    // Closest pairs first: s3 (500, 500) → s0 (50, 50) is 636 m, s2 → s1 is 2,103 m.
    assert_eq!(moved, [("s3", "s0"), ("s2", "s1")]);
    assert_eq!(plan.result.today_objective, Some(10.0));
    // The rows of the two tables.
    let rows = output::plan_rows(&plan).unwrap();
    assert_eq!(rows.num_rows(), 1);
    let sites = output::plan_site_rows(&plan).unwrap();
    assert_eq!(sites.num_rows(), 4);
    let text = output::text_report(&plan);
    assert!(text.contains("move  s3 site 3"), "{text}");
    assert!(text.contains("→ s0 site 0 636 m"), "{text}");
    assert!(text.contains("Residents within 200 m"), "{text}");
    let changes = output::changes(&plan);
    assert_eq!(
        changes[0],
        ["move", "s3 site 3", "s0 site 0", "636 m"].map(String::from)
    );
    // The JSON reads back (plans are kept as JSON; coordinates may differ in the last bit).
    let json = serde_json::to_string(&plan).unwrap();
    let back: Plan = serde_json::from_str(&json).unwrap();
    assert_eq!(
        (&back.id, &back.result, &back.kept),
        (&plan.id, &plan.result, &plan.kept)
    );
    assert_eq!(back.moves.len(), 2);
    assert!((back.moves[1].distance_m - plan.moves[1].distance_m).abs() < 1e-9);
}

#[test]
fn p_is_needed_without_a_network_today() {
    let inst = clusters();
    let e = plan(
        inst.demand.clone(),
        inst.sites.clone(),
        &PlanOptions::default(),
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "p (the number of kiosks) is needed: no candidate is marked as today's kiosk"
    );
    let e = plan(
        inst.demand.clone(),
        inst.sites.clone(),
        &PlanOptions {
            fixed: vec!["nope".into()],
            ..PlanOptions::default()
        },
    )
    .unwrap_err();
    assert_eq!(e.to_string(), "fixed site nope is not among the candidates");
}

#[test]
fn weighted_quantiles_and_means() {
    let v = [100.0, 200.0, 300.0, 400.0];
    let w = [1.0, 1.0, 1.0, 7.0];
    assert_eq!(evaluate::weighted_quantile(&v, &w, 0.9), 400.0);
    assert_eq!(evaluate::weighted_quantile(&v, &w, 0.2), 200.0);
    assert_eq!(evaluate::weighted_quantile(&v, &w, 0.3), 300.0);
    assert_eq!(
        evaluate::weighted_mean(&v, &w),
        (100.0 + 200.0 + 300.0 + 2800.0) / 10.0
    );
    assert_eq!(evaluate::weighted_mean(&v, &[0.0; 4]), 0.0);
}

/// A random small instance: 4–9 demand points, 3–7 sites, on a 2 km square.
fn small() -> impl Strategy<Value = (Instance, usize, f64)> {
    (
        prop::collection::vec(
            (0.0..2000.0f64, 0.0..2000.0f64, 1.0..500.0f64, 0.0..1.0f64),
            4..10,
        ),
        prop::collection::vec(
            (0.0..2000.0f64, 0.0..2000.0f64, prop::bool::weighted(0.15)),
            3..8,
        ),
        1usize..4,
        prop::sample::select(vec![300.0, 500.0, 800.0]),
        1.0..3.0f64,
    )
        .prop_filter_map("more fixed sites than p", |(d, s, p, t, f)| {
            let demand: Vec<(f64, f64, f64, f64)> = d
                .iter()
                .map(|&(x, y, pop, share)| (x, y, pop.round(), (pop * share).round()))
                .collect();
            let p = p.min(s.len());
            let fixed = s.iter().filter(|x| x.2).count();
            (fixed <= p).then(|| (instance(&demand, &s, f), p, t))
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// MCLP: heuristic ≤ optimum ≤ upper bound, so the stated gap is never an underestimate.
    #[test]
    fn mclp_bound_holds((inst, p, t) in small()) {
        let r = coverage::mclp(&inst, p, t, &Bounds::default()).unwrap();
        let opt = best_mclp(&inst, p, t);
        let tol = 1e-6 * opt.max(1.0);
        prop_assert!(r.objective <= opt + tol, "heuristic {} above optimum {}", r.objective, opt);
        prop_assert!(r.bound >= opt - tol, "bound {} below optimum {}", r.bound, opt);
        prop_assert!(r.gap >= coverage::relative_gap(opt, r.objective) - 1e-9);
        prop_assert!(r.objective >= (1.0 - 1.0 / std::f64::consts::E) * opt - tol);
        prop_assert_eq!(r.sites.len(), p);
        for j in inst.fixed() {
            prop_assert!(r.sites.contains(&j));
        }
    }

    /// p-median: lower bound ≤ optimum ≤ heuristic.
    #[test]
    fn pmedian_bound_holds((inst, p, _t) in small()) {
        let r = pmedian::pmedian(&inst, p, &Bounds::default()).unwrap();
        let opt = best_pmedian(&inst, p);
        let tol = 1e-6 * opt.max(1.0);
        prop_assert!(r.objective >= opt - tol, "heuristic {} below optimum {}", r.objective, opt);
        prop_assert!(r.bound <= opt + tol, "bound {} above optimum {}", r.bound, opt);
        prop_assert!((r.objective - pmedian::cost_of(&inst, &r.sites)).abs() <= tol);
        prop_assert_eq!(r.sites.len(), p);
    }

    /// LSCP: lower bound ≤ optimum ≤ heuristic, and everyone coverable is covered.
    #[test]
    fn lscp_bound_holds((inst, _p, t) in small()) {
        let r = coverage::lscp(&inst, t, &Bounds::default()).unwrap();
        let opt = best_lscp(&inst, t) as f64;
        prop_assert!(r.objective >= opt);
        prop_assert!(r.bound <= opt);
        let cov = inst.coverage(t);
        for i in 0..inst.n() {
            let coverable = cov.iter().any(|l| l.contains(&(i as u32)));
            let covered = r.sites.iter().any(|&j| cov[j].contains(&(i as u32)));
            prop_assert_eq!(coverable, covered);
        }
    }
}
