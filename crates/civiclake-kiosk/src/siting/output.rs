//! A plan as text, as rows of the lake (`kiosk_plans`, `kiosk_plan_sites`), as a map and as
//! a web page.

use super::{Plan, SiteRef};
use arrow::array::{
    ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray,
    StringDictionaryBuilder, TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Int32Type, Schema, SchemaRef};
use civiclake_core::{field_column, tag_column, time_column};
use civiclake_dashboards::{Marker, MarkerShape, MarkerStyle, NetworkMap};
use geo::MultiPolygon;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

/// The table of plans: one row per plan.
pub const PLANS_TABLE: &str = "kiosk_plans";
/// The table of the plans' sites: one row per site of today's network or of the proposal.
pub const PLAN_SITES_TABLE: &str = "kiosk_plan_sites";

/// Credit of the boundary data, shown on every map.
pub const BOUNDARY_CREDIT: &str =
    "Boundary of the Municipality of Prato: ISTAT, Openpolis (CC-BY 4.0)";

/// Which network a map shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Network {
    /// Today's kiosks.
    Today,
    /// The proposal (today's kiosks shown too, with the moves).
    Proposal,
}

impl std::str::FromStr for Network {
    type Err = super::SitingError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "today" => Ok(Network::Today),
            "proposal" => Ok(Network::Proposal),
            other => Err(super::SitingError::invalid(format!(
                "unknown network '{other}': today or proposal"
            ))),
        }
    }
}

/// What is drawn beneath the kiosks.
#[derive(Debug, Clone, Default)]
pub struct MapLayers {
    /// Outlines (the municipal boundary).
    pub outlines: Vec<MultiPolygon<f64>>,
    /// Census sections by id: a demand point with the same id fills its section.
    pub sections: BTreeMap<String, MultiPolygon<f64>>,
    /// Credits of the layers.
    pub credit: String,
}

fn micros(time: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(time)
        .map(|t| t.timestamp_micros())
        .unwrap_or_default()
}

fn tags<'a>(values: impl Iterator<Item = &'a str>) -> ArrayRef {
    let mut b = StringDictionaryBuilder::<Int32Type>::new();
    for v in values {
        b.append_value(v);
    }
    Arc::new(b.finish())
}

/// Schema of [`PLANS_TABLE`].
pub fn plans_schema() -> SchemaRef {
    let f = |n: &str| field_column(n, DataType::Float64);
    Arc::new(Schema::new(vec![
        time_column(),
        tag_column("plan_id"),
        tag_column("model"),
        field_column("p", DataType::Int64),
        f("threshold_m"),
        f("objective"),
        f("today_objective"),
        f("bound"),
        f("gap"),
        field_column("iterations", DataType::Int64),
        f("seconds"),
        field_column("demand_points", DataType::Int64),
        field_column("candidates", DataType::Int64),
        f("population"),
        f("elderly"),
        f("today_population_covered"),
        f("proposal_population_covered"),
        f("today_elderly_covered"),
        f("proposal_elderly_covered"),
        f("today_mean_m"),
        f("proposal_mean_m"),
        f("today_p90_m"),
        f("proposal_p90_m"),
        field_column("moves", DataType::Int64),
        field_column("plan_json", DataType::Utf8),
    ]))
}

/// The plan's row of [`PLANS_TABLE`] (coverage at the model's threshold, or the first
/// reported one for p-median; the whole plan as JSON in `plan_json`).
pub fn plan_rows(plan: &Plan) -> Result<RecordBatch, arrow::error::ArrowError> {
    let at = |s: &super::NetworkSummary| {
        s.reach
            .iter()
            .find(|r| r.threshold_m == plan.result.threshold_m)
            .or(s.reach.first())
            .map(|r| (r.population, r.elderly))
    };
    let today = plan.today.as_ref().and_then(at);
    let proposal = at(&plan.proposal);
    let json = serde_json::to_string(plan).unwrap_or_default();
    let one = |v: Option<f64>| -> ArrayRef { Arc::new(Float64Array::from(vec![v])) };
    let int = |v: usize| -> ArrayRef { Arc::new(Int64Array::from(vec![v as i64])) };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(
            TimestampMicrosecondArray::from(vec![micros(&plan.computed_at)]).with_timezone("UTC"),
        ),
        tags(std::iter::once(plan.id.as_str())),
        tags(std::iter::once(plan.result.model.name())),
        int(plan.result.p),
        one(Some(plan.result.threshold_m)),
        one(Some(plan.result.objective)),
        one(plan.result.today_objective),
        one(Some(plan.result.bound)),
        one(Some(plan.result.gap)),
        int(plan.result.iterations),
        one(Some(plan.result.seconds)),
        int(plan.inputs.demand_points),
        int(plan.inputs.candidates),
        one(Some(plan.inputs.population)),
        one(Some(plan.inputs.elderly)),
        one(today.map(|t| t.0)),
        one(proposal.map(|t| t.0)),
        one(today.map(|t| t.1)),
        one(proposal.map(|t| t.1)),
        one(plan.today.as_ref().map(|t| t.mean_distance_m)),
        one(Some(plan.proposal.mean_distance_m)),
        one(plan.today.as_ref().map(|t| t.p90_distance_m)),
        one(Some(plan.proposal.p90_distance_m)),
        int(plan.moves.len()),
        Arc::new(StringArray::from(vec![json])),
    ];
    RecordBatch::try_new(plans_schema(), columns)
}

/// Schema of [`PLAN_SITES_TABLE`].
pub fn plan_sites_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        time_column(),
        tag_column("plan_id"),
        tag_column("site_id"),
        tag_column("change"),
        field_column("name", DataType::Utf8),
        field_column("kind", DataType::Utf8),
        field_column("lon", DataType::Float64),
        field_column("lat", DataType::Float64),
        field_column("today", DataType::Boolean),
        field_column("proposed", DataType::Boolean),
        field_column("fixed", DataType::Boolean),
        field_column("moved_to", DataType::Utf8),
        field_column("move_m", DataType::Float64),
    ]))
}

/// A site's row: the site, its change, today, proposed, moved to, how far.
type SiteRow<'a> = (
    &'a SiteRef,
    &'a str,
    bool,
    bool,
    Option<&'a str>,
    Option<f64>,
);

/// One row per site of today's network or of the proposal: `change` is `kept`, `moved`
/// (with `moved_to` and `move_m`), `closed`, `opened`, or `new` (a proposal without a
/// network today).
pub fn plan_site_rows(plan: &Plan) -> Result<RecordBatch, arrow::error::ArrowError> {
    let mut rows: Vec<SiteRow<'_>> = Vec::new();
    for s in &plan.kept {
        rows.push((s, "kept", true, true, None, None));
    }
    for m in &plan.moves {
        rows.push((
            &m.from,
            "moved",
            true,
            false,
            Some(&m.to.id),
            Some(m.distance_m),
        ));
        rows.push((&m.to, "opened", false, true, None, None));
    }
    for s in &plan.closed {
        rows.push((s, "closed", true, false, None, None));
    }
    let change_new = if plan.today.is_some() {
        "opened"
    } else {
        "new"
    };
    for s in &plan.opened {
        rows.push((s, change_new, false, true, None, None));
    }
    let t = micros(&plan.computed_at);
    let columns: Vec<ArrayRef> = vec![
        Arc::new(TimestampMicrosecondArray::from(vec![t; rows.len()]).with_timezone("UTC")),
        tags(rows.iter().map(|_| plan.id.as_str())),
        tags(rows.iter().map(|r| r.0.id.as_str())),
        tags(rows.iter().map(|r| r.1)),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.0.name.as_str()),
        )),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.0.kind.as_str()),
        )),
        Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.0.lon))),
        Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.0.lat))),
        Arc::new(BooleanArray::from_iter(rows.iter().map(|r| Some(r.2)))),
        Arc::new(BooleanArray::from_iter(rows.iter().map(|r| Some(r.3)))),
        Arc::new(BooleanArray::from_iter(
            rows.iter().map(|r| Some(r.0.fixed)),
        )),
        Arc::new(StringArray::from_iter(rows.iter().map(|r| r.4))),
        Arc::new(Float64Array::from_iter(rows.iter().map(|r| r.5))),
    ];
    RecordBatch::try_new(plan_sites_schema(), columns)
}

fn pct(share: f64) -> String {
    format!("{:.1} %", share * 100.0)
}

fn thousands(v: f64) -> String {
    let n = v.round() as i64;
    let digits = n.abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

/// The objective as read by a person.
fn objective_text(plan: &Plan, v: f64) -> String {
    match plan.result.model {
        super::Model::Lscp => format!("{v:.0} sites"),
        super::Model::Pmedian => format!("{} weight × m", thousands(v)),
        super::Model::Mclp => thousands(v),
    }
}

/// The comparison of today's network and the proposal: (what, today, proposal), with "–"
/// where there is no network today.
pub fn comparison(plan: &Plan) -> Vec<[String; 3]> {
    let t = plan.today.as_ref();
    let dash = || "–".to_string();
    let mut rows = Vec::new();
    for (k, reach) in plan.proposal.reach.iter().enumerate() {
        let tr = t.and_then(|t| t.reach.get(k));
        rows.push([
            format!("Residents within {} m", reach.threshold_m),
            tr.map_or_else(dash, |x| {
                format!("{} ({})", thousands(x.population), pct(x.population_share))
            }),
            format!(
                "{} ({})",
                thousands(reach.population),
                pct(reach.population_share)
            ),
        ]);
        rows.push([
            format!("Aged 65+ within {} m", reach.threshold_m),
            tr.map_or_else(dash, |x| {
                format!("{} ({})", thousands(x.elderly), pct(x.elderly_share))
            }),
            format!(
                "{} ({})",
                thousands(reach.elderly),
                pct(reach.elderly_share)
            ),
        ]);
    }
    let m = |v: f64| format!("{v:.0} m");
    for (label, today, proposal) in [
        (
            "Mean distance",
            t.map(|t| t.mean_distance_m),
            plan.proposal.mean_distance_m,
        ),
        (
            "90th percentile distance",
            t.map(|t| t.p90_distance_m),
            plan.proposal.p90_distance_m,
        ),
        (
            "Aged 65+: mean distance",
            t.map(|t| t.elderly_mean_distance_m),
            plan.proposal.elderly_mean_distance_m,
        ),
        (
            "Aged 65+: 90th percentile",
            t.map(|t| t.elderly_p90_distance_m),
            plan.proposal.elderly_p90_distance_m,
        ),
    ] {
        rows.push([label.to_string(), today.map_or_else(dash, m), m(proposal)]);
    }
    rows
}

/// What changes: (action, today's site, proposed site, distance), moves first.
pub fn changes(plan: &Plan) -> Vec<[String; 4]> {
    let name = |s: &SiteRef| format!("{} {}", s.id, s.name);
    let mut rows = Vec::new();
    for m in &plan.moves {
        rows.push([
            "move".into(),
            name(&m.from),
            name(&m.to),
            format!("{:.0} m", m.distance_m),
        ]);
    }
    for s in &plan.closed {
        rows.push(["close".into(), name(s), String::new(), String::new()]);
    }
    for s in &plan.opened {
        rows.push(["open".into(), String::new(), name(s), String::new()]);
    }
    for s in &plan.kept {
        rows.push(["keep".into(), name(s), name(s), "0 m".into()]);
    }
    rows
}

/// One line on the inputs.
pub fn inputs_line(plan: &Plan) -> String {
    let i = &plan.inputs;
    format!(
        "{} demand points ({} residents, {} aged 65+ counted ×{}{}), {} candidate sites ({} today, {} fixed), distances {}.",
        i.demand_points,
        thousands(i.population),
        thousands(i.elderly),
        i.elderly_factor,
        if i.observed > 0.0 {
            format!(
                "; {} observed transactions, {} of the weight",
                thousands(i.observed),
                pct(i.observed_share)
            )
        } else {
            String::new()
        },
        i.candidates,
        i.existing,
        i.fixed,
        i.distances
    )
}

/// One line on the objective: the proposal's and today's.
pub fn objective_line(plan: &Plan) -> String {
    let r = &plan.result;
    format!(
        "Objective, {}: proposal {}{}.",
        r.objective_label,
        objective_text(plan, r.objective),
        r.today_objective
            .map(|t| format!(", today {}", objective_text(plan, t)))
            .unwrap_or_default()
    )
}

/// The bound as read by a person.
pub fn bound_text(plan: &Plan) -> String {
    objective_text(plan, plan.result.bound)
}

/// The gap as a percentage.
pub fn gap_text(plan: &Plan) -> String {
    pct(plan.result.gap)
}

/// How the bound was searched.
pub fn search_text(plan: &Plan) -> String {
    let r = &plan.result;
    format!(
        "{} subgradient iterations, {} swaps, {:.3} s",
        r.iterations, r.swaps, r.seconds
    )
}

/// ", covering within 500 m" for the covering models.
pub fn threshold_text(plan: &Plan) -> String {
    if plan.result.model == super::Model::Pmedian {
        String::new()
    } else {
        format!(", covering within {} m", plan.result.threshold_m)
    }
}

/// The plan as a plain-text report.
pub fn text_report(plan: &Plan) -> String {
    let r = &plan.result;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Kiosk plan {} ({}): model {}, {} sites{}",
        plan.id,
        plan.computed_at,
        r.model.name(),
        r.p,
        threshold_text(plan)
    );
    let _ = writeln!(out, "{}", inputs_line(plan));
    let _ = writeln!(out, "{}", objective_line(plan));
    let _ = writeln!(
        out,
        "The {} bound is {}: the proposal is within {} of the optimum ({}).",
        r.bound_kind,
        bound_text(plan),
        gap_text(plan),
        search_text(plan)
    );
    let _ = writeln!(out);
    let _ = writeln!(out, "{:<28} {:>20} {:>20}", "", "today", "proposal");
    for [label, today, proposal] in comparison(plan) {
        let _ = writeln!(out, "{label:<28} {today:>20} {proposal:>20}");
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{} kept, {} moved, {} closed, {} opened",
        plan.kept.len(),
        plan.moves.len(),
        plan.closed.len(),
        plan.opened.len()
    );
    for [action, from, to, distance] in changes(plan) {
        if action == "keep" {
            continue;
        }
        let _ = writeln!(out, "  {action:<5} {from:<40} → {to} {distance}");
    }
    out
}

/// The map of one network: sections (or demand points) coloured by the walking distance to
/// that network's nearest kiosk; today's kiosks as squares, the proposal's as circles, a
/// line for each move.
pub fn network_map(plan: &Plan, network: Network, layers: &MapLayers) -> NetworkMap {
    let distance = |d: &super::DemandReach| match network {
        Network::Today => d.today_m,
        Network::Proposal => Some(d.proposal_m),
    };
    let mut areas = Vec::new();
    let mut dots = Vec::new();
    for d in &plan.demand {
        let Some(v) = distance(d) else { continue };
        match layers.sections.get(&d.id) {
            Some(shape) => areas.push((shape.clone(), Some(v))),
            None => dots.push((d.lon, d.lat, v)),
        }
    }
    let styles = vec![
        MarkerStyle {
            shape: MarkerShape::Square,
            filled: true,
            colour: (40, 40, 40),
            legend: "today's kiosk, kept".into(),
        },
        MarkerStyle {
            shape: MarkerShape::Square,
            filled: false,
            colour: (200, 40, 40),
            legend: "today's kiosk, moved or closed".into(),
        },
        MarkerStyle {
            shape: MarkerShape::Circle,
            filled: true,
            colour: (230, 120, 20),
            legend: "proposed new site".into(),
        },
    ];
    let mut markers = Vec::new();
    let marker = |s: &SiteRef, style: usize| Marker {
        lon: s.lon,
        lat: s.lat,
        style,
        label: None,
    };
    for s in &plan.kept {
        markers.push(marker(s, 0));
    }
    let mut links = Vec::new();
    for m in &plan.moves {
        markers.push(marker(&m.from, 1));
        if network == Network::Proposal {
            markers.push(marker(&m.to, 2));
            links.push(((m.from.lon, m.from.lat), (m.to.lon, m.to.lat)));
        }
    }
    for s in &plan.closed {
        markers.push(marker(s, 1));
    }
    if network == Network::Proposal {
        for s in &plan.opened {
            markers.push(marker(s, 2));
        }
    }
    let (styles, markers) = if network == Network::Today {
        // Today's map: every kiosk of today alike.
        let today = MarkerStyle {
            shape: MarkerShape::Square,
            filled: true,
            colour: (40, 40, 40),
            legend: "today's kiosk".into(),
        };
        let markers = markers
            .into_iter()
            .map(|mut m| {
                m.style = 0;
                m
            })
            .collect();
        (vec![today], markers)
    } else {
        (styles, markers)
    };
    let title = match network {
        Network::Today => format!(
            "Today: {} kiosks",
            plan.today.as_ref().map_or(0, |t| t.sites.len())
        ),
        Network::Proposal => format!(
            "Proposal ({}, {} sites): {} moves",
            plan.result.model.name(),
            plan.result.p,
            plan.moves.len()
        ),
    };
    let credit = if layers.credit.is_empty() {
        "Census sections and kiosks: civiclake plan inputs".to_string()
    } else {
        layers.credit.clone()
    };
    NetworkMap {
        title,
        areas,
        outlines: layers.outlines.clone(),
        dots,
        value_label: "walking distance to the nearest kiosk".into(),
        unit: "m".into(),
        min: Some(0.0),
        max: Some(
            plan.demand
                .iter()
                .flat_map(|d| [d.today_m.unwrap_or(0.0), d.proposal_m])
                .fold(0.0, f64::max)
                .min(3000.0),
        ),
        styles,
        markers,
        links,
        credit,
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The plan as a standalone HTML page (the CLI's `--html`): the figures, the two maps (SVG
/// inline), the changes.
pub fn page(plan: &Plan, today_svg: Option<&str>, proposal_svg: &str) -> String {
    let r = &plan.result;
    let mut rows = String::new();
    for [label, today, proposal] in comparison(plan) {
        let _ = write!(
            rows,
            "<tr><th>{}</th><td>{}</td><td>{}</td></tr>",
            esc(&label),
            esc(&today),
            esc(&proposal)
        );
    }
    let mut change_rows = String::new();
    for [action, from, to, distance] in changes(plan) {
        let _ = write!(
            change_rows,
            "<tr><th>{}</th><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&action),
            esc(&from),
            esc(&to),
            esc(&distance)
        );
    }
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Kiosk plan {id}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body {{ font-family: "DejaVu Sans", sans-serif; margin: 1.5rem; color: #1a1a1a; }}
table {{ border-collapse: collapse; margin: 1rem 0; }}
th, td {{ border-bottom: 1px solid #e2e2e2; padding: .3rem .8rem; text-align: left; }}
td {{ font-variant-numeric: tabular-nums; }}
.maps {{ display: flex; flex-wrap: wrap; gap: 1rem; }}
.maps figure {{ margin: 0; }}
.note {{ color: #555; }}
</style></head>
<body>
<h1>Where the kiosks should stand</h1>
<p class="note">Plan <code>{id}</code>, computed {at}: model <b>{model}</b>, {p} sites{threshold}. {inputs}</p>
<p>{objective}</p>
<p>The {bound_kind} bound is {bound}: the proposal is <b>within {gap} of the optimum</b> ({search}).</p>
<table><tr><th></th><th>Today</th><th>Proposal</th></tr>{rows}</table>
<div class="maps"><figure>{today_svg}</figure><figure>{proposal_svg}</figure></div>
<h2>What changes</h2>
<table><tr><th></th><th>Today</th><th>Proposal</th><th>Distance</th></tr>{change_rows}</table>
</body></html>
"#,
        id = esc(&plan.id),
        at = esc(&plan.computed_at),
        model = r.model.name(),
        p = r.p,
        threshold = esc(&threshold_text(plan)),
        inputs = esc(&inputs_line(plan)),
        objective = esc(&objective_line(plan)),
        bound_kind = esc(&r.bound_kind),
        bound = esc(&bound_text(plan)),
        gap = gap_text(plan),
        search = esc(&search_text(plan)),
        today_svg = today_svg.unwrap_or(""),
    )
}
