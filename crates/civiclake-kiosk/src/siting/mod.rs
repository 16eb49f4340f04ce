//! The kiosk siting optimiser: where kiosks should stand so that more residents, the elderly
//! first, have one within walking distance.
//!
//! Inputs ([`instance`], [`import`]): demand points (census sections with their residents and
//! residents aged 65+, plus observed kiosk use), candidate sites (today's kiosks among them,
//! some fixed) and walking distances (great-circle × a detour factor, or a matrix). Models:
//! maximal covering and set covering ([`coverage`]), p-median ([`pmedian`]), each with a
//! Lagrangian bound so the report states how far from the optimum the answer can be.
//! [`plan`] compares today's network with the proposal ([`evaluate`]); [`output`] turns a
//! plan into rows, a page and a map.

pub mod coverage;
pub mod evaluate;
pub mod import;
pub mod instance;
pub mod output;
pub mod pmedian;

pub use evaluate::{Move, NetworkSummary, Reach, SiteRef};
pub use instance::{DemandPoint, DistanceSource, Instance, Site, Weighting};

use serde::{Deserialize, Serialize};

/// A failure of the optimiser: always bad input (the caller's to fix).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SitingError {
    /// The inputs or the options are not usable; the message says why.
    #[error("{0}")]
    Invalid(String),
}

impl SitingError {
    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        SitingError::Invalid(message.into())
    }
}

/// How long the subgradient search for a bound goes on.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Bounds {
    /// Most subgradient iterations.
    pub max_iterations: usize,
    /// Iterations without a better bound before the step is halved.
    pub patience: usize,
    /// The search stops when the step factor falls below this (it starts at 2).
    pub min_step: f64,
    /// The search stops when bound and solution are this close (a fraction).
    pub tolerance: f64,
}

impl Default for Bounds {
    fn default() -> Self {
        Self {
            max_iterations: 400,
            patience: 15,
            min_step: 0.005,
            tolerance: 1e-4,
        }
    }
}

/// What a model found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelResult {
    /// The chosen sites (indices into [`Instance::sites`], ascending).
    pub sites: Vec<usize>,
    /// The model's objective for them: weight covered (MCLP), weighted distance in metres
    /// (p-median), number of sites (LSCP).
    pub objective: f64,
    /// The bound on the optimum: upper for MCLP, lower for p-median and LSCP.
    pub bound: f64,
    /// How far from the optimum the answer can be: |bound − objective| / the larger.
    pub gap: f64,
    /// Subgradient iterations run for the bound.
    pub iterations: usize,
    /// Improving swaps made.
    pub swaps: usize,
    /// Seconds taken.
    pub seconds: f64,
}

/// The location model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Model {
    /// Maximal covering: `p` sites covering the most weight within the threshold.
    Mclp,
    /// p-median: `p` sites with the least weighted walking distance.
    Pmedian,
    /// Set covering: the fewest sites covering everyone coverable within the threshold.
    Lscp,
}

impl Model {
    /// Its name as written in requests.
    pub fn name(self) -> &'static str {
        match self {
            Model::Mclp => "mclp",
            Model::Pmedian => "pmedian",
            Model::Lscp => "lscp",
        }
    }

    /// What its objective counts.
    pub fn objective_label(self, threshold_m: f64) -> String {
        match self {
            Model::Mclp => format!("weighted demand within {threshold_m} m (maximised)"),
            Model::Pmedian => "weighted walking distance, metres (minimised)".to_string(),
            Model::Lscp => {
                format!("sites covering all coverable demand within {threshold_m} m (minimised)")
            }
        }
    }
}

impl std::str::FromStr for Model {
    type Err = SitingError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "mclp" => Ok(Model::Mclp),
            "pmedian" | "p-median" => Ok(Model::Pmedian),
            "lscp" => Ok(Model::Lscp),
            other => Err(SitingError::invalid(format!(
                "unknown model '{other}': mclp, pmedian or lscp"
            ))),
        }
    }
}

/// The settings of a plan.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanOptions {
    /// The model.
    pub model: Model,
    /// Sites to choose (MCLP, p-median); by default as many as today's network has.
    pub p: Option<usize>,
    /// The covering distance of MCLP and LSCP, metres.
    pub threshold_m: f64,
    /// The distances the comparison reports coverage at, metres.
    pub report_thresholds_m: Vec<f64>,
    /// Ids of sites that must stay, on top of those marked `fixed`.
    pub fixed: Vec<String>,
    /// How demand is weighted.
    pub weighting: Weighting,
    /// How distances are computed.
    pub distances: DistanceSource,
    /// The bound's search.
    pub bounds: Bounds,
}

impl Default for PlanOptions {
    fn default() -> Self {
        Self {
            model: Model::Mclp,
            p: None,
            threshold_m: 500.0,
            report_thresholds_m: vec![300.0, 500.0, 800.0],
            fixed: Vec::new(),
            weighting: Weighting::default(),
            distances: DistanceSource::GreatCircle { detour: 1.3 },
            bounds: Bounds::default(),
        }
    }
}

/// What the inputs held.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputSummary {
    /// Demand points.
    pub demand_points: usize,
    /// Residents.
    pub population: f64,
    /// Residents aged 65+.
    pub elderly: f64,
    /// Observed demand (transactions) added.
    pub observed: f64,
    /// Candidate sites.
    pub candidates: usize,
    /// Sites of today's network.
    pub existing: usize,
    /// Sites that must stay.
    pub fixed: usize,
    /// How distances were computed.
    pub distances: String,
    /// How much a resident aged 65+ counts.
    pub elderly_factor: f64,
    /// Share of the weight given to observed demand.
    pub observed_share: f64,
}

/// The model's answer as reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelReport {
    /// `mclp`, `pmedian` or `lscp`.
    pub model: Model,
    /// Sites chosen.
    pub p: usize,
    /// Covering distance (MCLP, LSCP), metres.
    pub threshold_m: f64,
    /// What the objective counts.
    pub objective_label: String,
    /// The objective of the proposal.
    pub objective: f64,
    /// The same objective for today's network (when there is one and it fits the model).
    pub today_objective: Option<f64>,
    /// The bound on the optimum (upper for MCLP, lower for p-median and LSCP).
    pub bound: f64,
    /// `upper` or `lower`.
    pub bound_kind: String,
    /// How far from the optimum the proposal can be, as a fraction.
    pub gap: f64,
    /// Subgradient iterations.
    pub iterations: usize,
    /// Improving swaps.
    pub swaps: usize,
    /// Seconds taken by the model.
    pub seconds: f64,
}

/// A plan: today's network against the proposal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// Its id (UUID).
    pub id: String,
    /// When it was computed (RFC 3339, UTC).
    pub computed_at: String,
    /// The inputs.
    pub inputs: InputSummary,
    /// The model's answer and its bound.
    pub result: ModelReport,
    /// Today's network (sites marked `existing`), if there is one.
    pub today: Option<NetworkSummary>,
    /// The proposed network.
    pub proposal: NetworkSummary,
    /// Today's kiosks that stay.
    pub kept: Vec<SiteRef>,
    /// Today's kiosks that move, each to the nearest new site not taken by another.
    pub moves: Vec<Move>,
    /// Today's kiosks closed without a new site to move to.
    pub closed: Vec<SiteRef>,
    /// New sites not reached by a move.
    pub opened: Vec<SiteRef>,
    /// Per demand point: distance to today's nearest kiosk and to the proposal's, metres.
    pub demand: Vec<DemandReach>,
}

/// One demand point's distances.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DemandReach {
    /// Its id.
    pub id: String,
    /// Longitude.
    pub lon: f64,
    /// Latitude.
    pub lat: f64,
    /// Residents.
    pub population: f64,
    /// Residents aged 65+.
    pub elderly: f64,
    /// Walking distance to today's nearest kiosk, metres.
    pub today_m: Option<f64>,
    /// Walking distance to the proposal's nearest kiosk, metres.
    pub proposal_m: f64,
}

/// Runs the model and compares its proposal with today's network.
pub fn plan(
    demand: Vec<DemandPoint>,
    mut sites: Vec<Site>,
    options: &PlanOptions,
) -> Result<Plan, SitingError> {
    for id in &options.fixed {
        let site = sites.iter_mut().find(|s| &s.id == id).ok_or_else(|| {
            SitingError::invalid(format!("fixed site {id} is not among the candidates"))
        })?;
        site.fixed = true;
    }
    for t in std::iter::once(&options.threshold_m).chain(&options.report_thresholds_m) {
        if !(t.is_finite() && *t > 0.0) {
            return Err(SitingError::invalid(format!(
                "a covering distance must be metres > 0, not {t}"
            )));
        }
    }
    let inst = Instance::new(demand, sites, options.weighting, &options.distances)?;
    let today = inst.existing();
    let p = match (options.model, options.p) {
        (Model::Lscp, _) => None,
        (_, Some(p)) => Some(p),
        (_, None) if !today.is_empty() => Some(today.len()),
        (_, None) => {
            return Err(SitingError::invalid(
                "p (the number of kiosks) is needed: no candidate is marked as today's kiosk",
            ));
        }
    };
    let result = match options.model {
        Model::Mclp => coverage::mclp(&inst, p.unwrap_or(1), options.threshold_m, &options.bounds)?,
        Model::Pmedian => pmedian::pmedian(&inst, p.unwrap_or(1), &options.bounds)?,
        Model::Lscp => coverage::lscp(&inst, options.threshold_m, &options.bounds)?,
    };
    if result.sites.is_empty() {
        return Err(SitingError::invalid(format!(
            "no candidate site is within {} m of any demand point: nothing to cover",
            options.threshold_m
        )));
    }
    let today_objective = (!today.is_empty()).then(|| match options.model {
        Model::Mclp => evaluate::covered_weight(&inst, &today, options.threshold_m),
        Model::Pmedian => pmedian::cost_of(&inst, &today),
        Model::Lscp => today.len() as f64,
    });
    let thresholds = &options.report_thresholds_m;
    let today_summary = (!today.is_empty()).then(|| evaluate::summarise(&inst, &today, thresholds));
    let proposal = evaluate::summarise(&inst, &result.sites, thresholds);
    let changes = evaluate::changes(&inst, &today, &result.sites);
    let today_d = (!today.is_empty()).then(|| evaluate::nearest(&inst, &today));
    let proposal_d = evaluate::nearest(&inst, &result.sites);
    let demand = inst
        .demand
        .iter()
        .enumerate()
        .map(|(i, d)| DemandReach {
            id: d.id.clone(),
            lon: d.lon,
            lat: d.lat,
            population: d.population,
            elderly: d.elderly,
            today_m: today_d.as_ref().map(|t| t[i]),
            proposal_m: proposal_d[i],
        })
        .collect();
    let distances = match &options.distances {
        DistanceSource::GreatCircle { detour } => format!("great-circle × {detour}"),
        DistanceSource::Matrix(e) => format!("matrix of {} pairs", e.len()),
    };
    Ok(Plan {
        id: uuid::Uuid::new_v4().to_string(),
        computed_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        inputs: InputSummary {
            demand_points: inst.n(),
            population: inst.demand.iter().map(|d| d.population).sum(),
            elderly: inst.demand.iter().map(|d| d.elderly).sum(),
            observed: inst.demand.iter().map(|d| d.observed).sum(),
            candidates: inst.m(),
            existing: today.len(),
            fixed: inst.fixed().len(),
            distances,
            elderly_factor: options.weighting.elderly_factor,
            observed_share: options.weighting.observed_share,
        },
        result: ModelReport {
            model: options.model,
            p: result.sites.len(),
            threshold_m: options.threshold_m,
            objective_label: options.model.objective_label(options.threshold_m),
            objective: result.objective,
            today_objective,
            bound: result.bound,
            bound_kind: if options.model == Model::Mclp {
                "upper".into()
            } else {
                "lower".into()
            },
            gap: result.gap,
            iterations: result.iterations,
            swaps: result.swaps,
            seconds: result.seconds,
        },
        today: today_summary,
        proposal,
        kept: changes.kept,
        moves: changes.moves,
        closed: changes.closed,
        opened: changes.opened,
        demand,
    })
}

#[cfg(test)]
mod tests;
