//! `civiclake kiosk`: the kiosk siting optimiser from the command line.
//!
//! - `civiclake kiosk plan`: a plan from files (or the demo city), computed here, or on a
//!   server (`--server`), which keeps it in `kiosk_plans`; printed as text or JSON, and
//!   written as a page (`--html`) and maps (`--svg`).
//! - `civiclake kiosk demand`: ISTAT's census data and section boundaries joined into the
//!   optimiser's demand CSV.

use civiclake_dashboards::GeoLayers;
use civiclake_kiosk::PlanRequest;
use civiclake_kiosk::siting::import::{self, Crs};
use civiclake_kiosk::siting::output::{self, MapLayers, Network};
use civiclake_kiosk::siting::{DemandPoint, Plan, Site};
use std::path::PathBuf;

/// Arguments of `civiclake kiosk`.
#[derive(Debug, clap::Args)]
pub(crate) struct KioskArgs {
    #[command(subcommand)]
    action: KioskAction,
}

#[derive(Debug, clap::Subcommand)]
enum KioskAction {
    /// Where the kiosks should stand: today's network against a location model's proposal.
    Plan(Box<PlanArgs>),
    /// Join ISTAT's census data per section with the sections' boundaries into the demand
    /// CSV (`id,lon,lat,population,elderly,observed`).
    Demand(DemandArgs),
}

/// ISTAT's files.
#[derive(Debug, clap::Args)]
struct IstatArgs {
    /// ISTAT's census data per section (`R09_indicatori_2021_sezioni.csv`, `;`-separated).
    #[arg(long, value_name = "FILE", requires = "boundaries")]
    istat_csv: Option<PathBuf>,
    /// The sections' boundaries: ISTAT's shapefile (`.shp` with `.dbf`, `.prj`) or GeoJSON.
    #[arg(long, value_name = "FILE", requires = "istat_csv")]
    boundaries: Option<PathBuf>,
    /// Coordinate system of the shapefile when its `.prj` is missing or wrong
    /// (EPSG:32632 for ISTAT's, EPSG:4326 for degrees).
    #[arg(long, value_name = "EPSG")]
    crs: Option<String>,
    /// Keep the sections of this municipality (ISTAT code; Prato is 100005).
    #[arg(long, value_name = "CODE")]
    municipality: Option<String>,
}

impl IstatArgs {
    /// The demand points and the sections' outlines, if the files are given.
    fn read(&self) -> Result<Option<(Vec<DemandPoint>, MapLayers)>, String> {
        let (Some(csv), Some(boundaries)) = (&self.istat_csv, &self.boundaries) else {
            return Ok(None);
        };
        let crs = self
            .crs
            .as_deref()
            .map(str::parse::<Crs>)
            .transpose()
            .map_err(|e| e.to_string())?;
        let bytes = std::fs::read(csv).map_err(|e| format!("{}: {e}", csv.display()))?;
        let data =
            import::istat_sections_csv(&bytes).map_err(|e| format!("{}: {e}", csv.display()))?;
        let places = import::boundaries_file(boundaries, crs).map_err(|e| e.to_string())?;
        let (demand, report) = import::join_sections(&data, &places, self.municipality.as_deref());
        eprintln!(
            "ISTAT sections: {} joined, {} without a boundary, {} boundaries without data, {} of other municipalities",
            report.matched, report.without_boundary, report.without_data, report.other_municipality
        );
        if demand.is_empty() {
            return Err("no census section has both data and a boundary".into());
        }
        let layers = MapLayers {
            outlines: Vec::new(),
            sections: import::outlines(&places),
            credit: "Census sections: ISTAT (CC-BY 4.0)".into(),
        };
        Ok(Some((demand, layers)))
    }
}

#[derive(Debug, clap::Args)]
struct DemandArgs {
    #[command(flatten)]
    istat: IstatArgs,
    /// Where to write the CSV (`-`: standard output).
    #[arg(long, value_name = "FILE", default_value = "-")]
    out: String,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Format {
    Text,
    Json,
}

#[derive(Debug, clap::Args)]
struct PlanArgs {
    /// The demo city's inputs: its synthetic census sections, its 17 kiosks (the ones by the
    /// cemetery and the municipal police fixed) and a public building per section.
    #[arg(long, conflicts_with_all = ["demand", "sites", "istat_csv"])]
    demo: bool,
    /// Demand points: CSV (`id,lon,lat,population,elderly[,observed]`) or GeoJSON.
    #[arg(long, value_name = "FILE")]
    demand: Vec<PathBuf>,
    #[command(flatten)]
    istat: IstatArgs,
    /// Candidate sites: CSV (`id,lon,lat[,name][,kind][,existing][,fixed]`) or GeoJSON
    /// (today's kiosks are those with `existing`).
    #[arg(long, value_name = "FILE")]
    sites: Vec<PathBuf>,
    /// Walking distances (`demand_id,site_id,metres`, every pair) instead of great-circle
    /// distances × the detour factor.
    #[arg(long, value_name = "FILE", conflicts_with = "detour")]
    distances: Option<PathBuf>,
    /// The model: mclp (maximal covering), pmedian, lscp (set covering).
    #[arg(long, default_value = "mclp")]
    model: String,
    /// Sites to choose (default: as many as today's kiosks).
    #[arg(long)]
    p: Option<usize>,
    /// Covering distance of mclp and lscp, metres.
    #[arg(long, default_value_t = 500.0)]
    threshold: f64,
    /// Distances the report gives coverage at, metres.
    #[arg(long, value_delimiter = ',', default_value = "300,500,800")]
    report_thresholds: Vec<f64>,
    /// Weight of a resident aged 65+ against 1.
    #[arg(long, default_value_t = 2.0)]
    elderly_factor: f64,
    /// Great-circle distances × this factor.
    #[arg(long)]
    detour: Option<f64>,
    /// Sites that must stay (ids, comma-separated), on top of those marked fixed.
    #[arg(long, value_name = "ID", value_delimiter = ',')]
    fixed: Vec<String>,
    /// Print the plan as text or JSON.
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
    /// Also write the plan as a page (HTML with both maps).
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
    /// Also write the proposal's map (SVG); today's goes beside it as `*-today.svg`.
    #[arg(long, value_name = "FILE")]
    svg: Option<PathBuf>,
    /// Boundary layers for the maps (Prato's outline and the synthetic sections).
    #[arg(long, value_name = "DIR", default_value = "dashboards/geo")]
    geo_dir: PathBuf,
    /// Compute on this civiclake server instead (it keeps the plan in `kiosk_plans`; the
    /// inputs default to its imports).
    #[arg(long, value_name = "URL")]
    server: Option<String>,
    /// Token sent to the server (a kiosk operator's or an administrator's).
    #[arg(long, env = "CIVICLAKE_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

pub(crate) async fn run(args: KioskArgs) -> Result<(), String> {
    match args.action {
        KioskAction::Demand(a) => demand(a),
        KioskAction::Plan(a) => plan(*a).await,
    }
}

fn demand(args: DemandArgs) -> Result<(), String> {
    let (points, _) = args
        .istat
        .read()?
        .ok_or("give --istat-csv and --boundaries")?;
    let csv = import::write_demand_csv(&points);
    if args.out == "-" {
        print!("{csv}");
    } else {
        std::fs::write(&args.out, csv).map_err(|e| format!("{}: {e}", args.out))?;
        eprintln!("{} demand points written to {}", points.len(), args.out);
    }
    Ok(())
}

/// Demand points and sites when given, and the map layers.
type Inputs = (Option<Vec<DemandPoint>>, Option<Vec<Site>>, MapLayers);

fn read_inputs(args: &PlanArgs) -> Result<Inputs, String> {
    let geo = GeoLayers::load_dir(&args.geo_dir).map_err(|e| e.to_string())?;
    let mut layers = civiclake_kiosk::demo::layers(&geo);
    if args.demo {
        return Ok((
            Some(civiclake_kiosk::demo::demand()?),
            Some(civiclake_kiosk::demo::sites()?),
            layers,
        ));
    }
    let mut demand: Option<Vec<DemandPoint>> = None;
    for f in &args.demand {
        let points = import::demand_file(f).map_err(|e| e.to_string())?;
        demand.get_or_insert_with(Vec::new).extend(points);
    }
    if let Some((points, istat_layers)) = args.istat.read()? {
        demand.get_or_insert_with(Vec::new).extend(points);
        layers.sections.extend(istat_layers.sections);
        layers.credit = format!("{}; {}", layers.credit, istat_layers.credit);
    }
    let mut sites: Option<Vec<Site>> = None;
    for f in &args.sites {
        let s = import::sites_file(f).map_err(|e| e.to_string())?;
        sites.get_or_insert_with(Vec::new).extend(s);
    }
    Ok((demand, sites, layers))
}

async fn plan(args: PlanArgs) -> Result<(), String> {
    let (demand, sites, layers) = read_inputs(&args)?;
    let distances = match &args.distances {
        Some(f) => {
            let bytes = std::fs::read(f).map_err(|e| format!("{}: {e}", f.display()))?;
            Some(
                import::distances_csv(&bytes)
                    .map_err(|e| format!("{}: {e}", f.display()))?
                    .into_iter()
                    .map(
                        |(demand_id, site_id, metres)| civiclake_kiosk::DistanceEntry {
                            demand_id,
                            site_id,
                            metres,
                        },
                    )
                    .collect(),
            )
        }
        None => None,
    };
    let request = PlanRequest {
        model: Some(args.model.clone()),
        p: args.p,
        threshold_m: Some(args.threshold),
        report_thresholds_m: Some(args.report_thresholds.clone()),
        elderly_factor: Some(args.elderly_factor),
        detour: args.detour,
        distances,
        fixed: args.fixed.clone(),
        demand,
        sites,
        ..PlanRequest::default()
    };
    let plan: Plan = match &args.server {
        Some(url) => on_server(url, args.token.as_deref(), &request).await?,
        None => {
            let options = request.options().map_err(|e| e.to_string())?;
            let demand = request
                .demand
                .ok_or("no demand: give --demand, --istat-csv with --boundaries, or --demo")?;
            let sites = request
                .sites
                .ok_or("no candidate sites: give --sites, or --demo")?;
            tokio::task::spawn_blocking(move || {
                civiclake_kiosk::siting::plan(demand, sites, &options)
            })
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?
        }
    };
    match args.format {
        Format::Text => print!("{}", output::text_report(&plan)),
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&plan).map_err(|e| e.to_string())?
        ),
    }
    let svg = |network: Network| -> Result<String, String> {
        civiclake_dashboards::render_network_svg(
            &output::network_map(&plan, network, &layers),
            800,
            700,
        )
        .map_err(|e| e.to_string())
    };
    if let Some(path) = &args.svg {
        std::fs::write(path, svg(Network::Proposal)?)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if plan.today.is_some() {
            let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("plan");
            let today = path.with_file_name(format!("{stem}-today.svg"));
            std::fs::write(&today, svg(Network::Today)?)
                .map_err(|e| format!("{}: {e}", today.display()))?;
        }
    }
    if let Some(path) = &args.html {
        let today = match plan.today {
            Some(_) => Some(svg(Network::Today)?),
            None => None,
        };
        let page = output::page(&plan, today.as_deref(), &svg(Network::Proposal)?);
        std::fs::write(path, page).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

async fn on_server(url: &str, token: Option<&str>, request: &PlanRequest) -> Result<Plan, String> {
    let client = reqwest::Client::builder()
        .default_headers(crate::auth_headers(token)?)
        .build()
        .map_err(|e| e.to_string())?;
    let endpoint = format!("{}/api/v1/kiosk/plan", url.trim_end_matches('/'));
    let response = client
        .post(&endpoint)
        .json(request)
        .send()
        .await
        .map_err(|e| format!("{endpoint}: {e}"))?;
    let status = response.status();
    let body = response.text().await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        let reason = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_string))
            .unwrap_or(body);
        return Err(format!("{endpoint}: {status}: {reason}"));
    }
    serde_json::from_str(&body).map_err(|e| format!("{endpoint}: the plan: {e}"))
}
