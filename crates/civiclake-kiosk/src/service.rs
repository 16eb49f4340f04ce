//! The siting service: the optimiser's inputs and results as the kiosk module's tables.
//!
//! - `kiosk_siting_demand` and `kiosk_siting_sites` hold the imported inputs; every import
//!   has an `import_id`, and a plan reads the latest import of each (older ones stay as
//!   history).
//! - `kiosk_transactions` (the kiosk module's transactions, when the table exists) adds
//!   observed demand at each kiosk: its transactions over the last `observed_days`.
//! - `kiosk_plans` and `kiosk_plan_sites` hold the plans (see [`crate::siting::output`]).

use crate::siting::output::{self, MapLayers, Network, PLAN_SITES_TABLE, PLANS_TABLE};
use crate::siting::{
    self, Bounds, DemandPoint, DistanceSource, Model, Plan, PlanOptions, Site, SitingError,
    Weighting,
};
use arrow::array::{
    Array, ArrayRef, BooleanArray, Float64Array, RecordBatch, StringArray, StringDictionaryBuilder,
    TimestampMicrosecondArray,
};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Int32Type, Schema, SchemaRef};
use civiclake_core::{ErrorClass, Platform, PlatformError, field_column, tag_column, time_column};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The imported demand points.
pub const DEMAND_TABLE: &str = "kiosk_siting_demand";
/// The imported candidate sites.
pub const SITES_TABLE: &str = "kiosk_siting_sites";
/// The kiosk module's transactions: observed demand when the table exists.
pub const TRANSACTIONS_TABLE: &str = "kiosk_transactions";

/// A failure of the siting service.
#[derive(Debug, thiserror::Error)]
pub enum SitingServiceError {
    /// Bad inputs or options (HTTP 400).
    #[error(transparent)]
    Invalid(#[from] SitingError),
    /// The platform refused or failed (its class decides the status).
    #[error(transparent)]
    Platform(#[from] PlatformError),
    /// No such plan, or nothing to plan with (HTTP 404).
    #[error("{0}")]
    NotFound(String),
    /// Stored rows that cannot be read back.
    #[error("{0}")]
    Internal(String),
}

impl SitingServiceError {
    /// The class of the error (decides the HTTP status).
    pub fn class(&self) -> ErrorClass {
        match self {
            SitingServiceError::Invalid(_) => ErrorClass::User,
            SitingServiceError::Platform(e) => e.class(),
            SitingServiceError::NotFound(_) => ErrorClass::NotFound,
            SitingServiceError::Internal(_) => ErrorClass::Internal,
        }
    }
}

type Result<T> = std::result::Result<T, SitingServiceError>;

/// One pair of a distance matrix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DistanceEntry {
    /// The demand point.
    pub demand_id: String,
    /// The site.
    pub site_id: String,
    /// Walking distance, metres.
    pub metres: f64,
}

/// A request for a plan (`POST /api/v1/kiosk/plan`, `civiclake kiosk plan`). Every field is
/// optional: the inputs default to the latest imports, the settings to the documented ones.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanRequest {
    /// `mclp` (default), `pmedian` or `lscp`.
    pub model: Option<String>,
    /// Sites to choose; default: as many as today's kiosks.
    pub p: Option<usize>,
    /// Covering distance of MCLP and LSCP, metres (default 500).
    pub threshold_m: Option<f64>,
    /// Distances the report gives coverage at (default 300, 500, 800).
    pub report_thresholds_m: Option<Vec<f64>>,
    /// Weight of a resident aged 65+ against 1 (default 2).
    pub elderly_factor: Option<f64>,
    /// Share of the weight given to observed use (default 0.1).
    pub observed_share: Option<f64>,
    /// Days of transactions counted as observed use (default 365).
    pub observed_days: Option<u32>,
    /// Great-circle × this factor (default 1.3); not with `distances`.
    pub detour: Option<f64>,
    /// A distance matrix instead of great-circle distances.
    pub distances: Option<Vec<DistanceEntry>>,
    /// Sites that must stay (on top of those marked fixed).
    #[serde(default)]
    pub fixed: Vec<String>,
    /// Demand points; default: the latest import.
    pub demand: Option<Vec<DemandPoint>>,
    /// Candidate sites; default: the latest import.
    pub sites: Option<Vec<Site>>,
    /// The bound's search.
    pub bounds: Option<Bounds>,
    /// Keep the plan in `kiosk_plans` (default true).
    pub save: Option<bool>,
}

impl PlanRequest {
    /// The optimiser's options, checked.
    pub fn options(&self) -> std::result::Result<PlanOptions, SitingError> {
        let defaults = PlanOptions::default();
        let model = match &self.model {
            Some(m) => m.parse::<Model>()?,
            None => Model::Mclp,
        };
        let distances = match (&self.distances, self.detour) {
            (Some(_), Some(_)) => {
                return Err(SitingError::Invalid(
                    "detour and distances exclude each other: the matrix holds walking distances already"
                        .into(),
                ));
            }
            (Some(m), None) => DistanceSource::Matrix(
                m.iter()
                    .map(|e| (e.demand_id.clone(), e.site_id.clone(), e.metres))
                    .collect(),
            ),
            (None, Some(detour)) => DistanceSource::GreatCircle { detour },
            (None, None) => defaults.distances,
        };
        let weighting = Weighting {
            elderly_factor: self
                .elderly_factor
                .unwrap_or(defaults.weighting.elderly_factor),
            observed_share: self
                .observed_share
                .unwrap_or(defaults.weighting.observed_share),
        };
        if let Some(b) = &self.bounds
            && !(b.max_iterations <= 100_000
                && b.patience >= 1
                && b.min_step > 0.0
                && b.tolerance >= 0.0)
        {
            return Err(SitingError::Invalid(
                "bounds: max_iterations ≤ 100000, patience ≥ 1, min_step > 0, tolerance ≥ 0".into(),
            ));
        }
        let report = self
            .report_thresholds_m
            .clone()
            .unwrap_or(defaults.report_thresholds_m);
        if report.is_empty() || report.len() > 10 {
            return Err(SitingError::Invalid(
                "report_thresholds_m: between 1 and 10 distances".into(),
            ));
        }
        Ok(PlanOptions {
            model,
            p: self.p,
            threshold_m: self.threshold_m.unwrap_or(defaults.threshold_m),
            report_thresholds_m: report,
            fixed: self.fixed.clone(),
            weighting,
            distances,
            bounds: self.bounds.unwrap_or_default(),
        })
    }
}

/// A stored plan, listed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlanSummary {
    /// Its id.
    pub id: String,
    /// When it was computed.
    pub computed_at: String,
    /// Its model.
    pub model: String,
    /// Sites chosen.
    pub p: i64,
    /// Gap to the bound.
    pub gap: f64,
    /// Residents covered today at the model's threshold (the first reported for p-median).
    pub today_population_covered: Option<f64>,
    /// Residents covered by the proposal.
    pub proposal_population_covered: Option<f64>,
}

/// What an import stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ImportSummary {
    /// The import's id: plans read the latest.
    pub import_id: String,
    /// Rows stored.
    pub rows: usize,
}

/// The siting service of the kiosk module.
#[derive(Debug, Clone)]
pub struct Siting {
    platform: Arc<dyn Platform>,
    layers: Arc<MapLayers>,
}

/// Schema of [`DEMAND_TABLE`].
pub fn demand_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        time_column(),
        tag_column("import_id"),
        field_column("demand_id", DataType::Utf8),
        field_column("lon", DataType::Float64),
        field_column("lat", DataType::Float64),
        field_column("population", DataType::Float64),
        field_column("elderly", DataType::Float64),
        field_column("observed", DataType::Float64),
    ]))
}

/// Schema of [`SITES_TABLE`].
pub fn sites_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        time_column(),
        tag_column("import_id"),
        field_column("site_id", DataType::Utf8),
        field_column("name", DataType::Utf8),
        field_column("kind", DataType::Utf8),
        field_column("lon", DataType::Float64),
        field_column("lat", DataType::Float64),
        field_column("existing", DataType::Boolean),
        field_column("fixed", DataType::Boolean),
    ]))
}

/// The tables the service keeps, with their schemas. They appear with the first import or
/// plan (the service reads a missing one as empty).
pub fn tables() -> Vec<(&'static str, SchemaRef)> {
    vec![
        (DEMAND_TABLE, demand_schema()),
        (SITES_TABLE, sites_schema()),
        (PLANS_TABLE, output::plans_schema()),
        (PLAN_SITES_TABLE, output::plan_sites_schema()),
    ]
}

fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

fn import_tags(id: &str, n: usize) -> ArrayRef {
    let mut b = StringDictionaryBuilder::<Int32Type>::new();
    for _ in 0..n {
        b.append_value(id);
    }
    Arc::new(b.finish())
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Column `name` of `batch` as strings (tags are dictionaries; cast).
fn strings(batch: &RecordBatch, name: &str) -> Result<Vec<Option<String>>> {
    let col = batch
        .column_by_name(name)
        .ok_or_else(|| SitingServiceError::Internal(format!("no column {name}")))?;
    let col =
        cast(col, &DataType::Utf8).map_err(|e| SitingServiceError::Internal(e.to_string()))?;
    let col = col
        .as_any()
        .downcast_ref::<StringArray>()
        .ok_or_else(|| SitingServiceError::Internal(format!("column {name} is not text")))?;
    Ok((0..col.len())
        .map(|i| (!col.is_null(i)).then(|| col.value(i).to_string()))
        .collect())
}

fn numbers(batch: &RecordBatch, name: &str) -> Result<Vec<Option<f64>>> {
    let col = batch
        .column_by_name(name)
        .ok_or_else(|| SitingServiceError::Internal(format!("no column {name}")))?;
    let col =
        cast(col, &DataType::Float64).map_err(|e| SitingServiceError::Internal(e.to_string()))?;
    let col = col
        .as_any()
        .downcast_ref::<Float64Array>()
        .ok_or_else(|| SitingServiceError::Internal(format!("column {name} is not a number")))?;
    Ok((0..col.len())
        .map(|i| (!col.is_null(i)).then(|| col.value(i)))
        .collect())
}

fn flags(batch: &RecordBatch, name: &str) -> Result<Vec<bool>> {
    let col = batch
        .column_by_name(name)
        .ok_or_else(|| SitingServiceError::Internal(format!("no column {name}")))?;
    let col = col
        .as_any()
        .downcast_ref::<BooleanArray>()
        .ok_or_else(|| SitingServiceError::Internal(format!("column {name} is not boolean")))?;
    Ok((0..col.len())
        .map(|i| !col.is_null(i) && col.value(i))
        .collect())
}

/// Whether `e` says that `table` does not exist (yet: the service's tables appear with the
/// first import or plan).
fn missing(e: &PlatformError, table: &str) -> bool {
    matches!(e, PlatformError::Query { message, .. } if message.contains(table) && message.contains("not found"))
}

impl Siting {
    /// Runs `sql` over `table`; a table that does not exist yet answers no rows.
    async fn rows(&self, table: &str, sql: &str) -> Result<Vec<RecordBatch>> {
        match self.platform.query(sql).await {
            Ok(r) => Ok(r.batches),
            Err(e) if missing(&e, table) => Ok(Vec::new()),
            Err(e) => Err(e.into()),
        }
    }

    /// The service over the kiosk module's platform, drawing maps over `layers`.
    pub fn new(platform: Arc<dyn Platform>, layers: MapLayers) -> Self {
        Self {
            platform,
            layers: Arc::new(layers),
        }
    }

    /// The map layers.
    pub fn layers(&self) -> &MapLayers {
        &self.layers
    }

    /// Stores `points` as a new import of demand (checked first: the same rules as a plan's).
    pub async fn import_demand(&self, points: Vec<DemandPoint>) -> Result<ImportSummary> {
        siting::instance::check_demand(&points)?;
        let id = uuid::Uuid::new_v4().to_string();
        let n = points.len();
        let t = now_micros();
        let f = |g: fn(&DemandPoint) -> f64| -> ArrayRef {
            Arc::new(Float64Array::from_iter_values(points.iter().map(g)))
        };
        let batch = RecordBatch::try_new(
            demand_schema(),
            vec![
                Arc::new(TimestampMicrosecondArray::from(vec![t; n]).with_timezone("UTC")),
                import_tags(&id, n),
                Arc::new(StringArray::from_iter_values(
                    points.iter().map(|p| p.id.as_str()),
                )),
                f(|p| p.lon),
                f(|p| p.lat),
                f(|p| p.population),
                f(|p| p.elderly),
                f(|p| p.observed),
            ],
        )
        .map_err(|e| SitingServiceError::Internal(e.to_string()))?;
        self.platform.write_rows(DEMAND_TABLE, batch).await?;
        Ok(ImportSummary {
            import_id: id,
            rows: n,
        })
    }

    /// Stores `sites` as a new import of candidate sites (checked first).
    pub async fn import_sites(&self, sites: Vec<Site>) -> Result<ImportSummary> {
        siting::instance::check_sites(&sites)?;
        let id = uuid::Uuid::new_v4().to_string();
        let n = sites.len();
        let t = now_micros();
        let text = |g: fn(&Site) -> &str| -> ArrayRef {
            Arc::new(StringArray::from_iter_values(sites.iter().map(g)))
        };
        let batch = RecordBatch::try_new(
            sites_schema(),
            vec![
                Arc::new(TimestampMicrosecondArray::from(vec![t; n]).with_timezone("UTC")),
                import_tags(&id, n),
                text(|s| s.id.as_str()),
                text(|s| s.name.as_str()),
                text(|s| s.kind.as_str()),
                Arc::new(Float64Array::from_iter_values(sites.iter().map(|s| s.lon))),
                Arc::new(Float64Array::from_iter_values(sites.iter().map(|s| s.lat))),
                Arc::new(BooleanArray::from_iter(
                    sites.iter().map(|s| Some(s.existing)),
                )),
                Arc::new(BooleanArray::from_iter(sites.iter().map(|s| Some(s.fixed)))),
            ],
        )
        .map_err(|e| SitingServiceError::Internal(e.to_string()))?;
        self.platform.write_rows(SITES_TABLE, batch).await?;
        Ok(ImportSummary {
            import_id: id,
            rows: n,
        })
    }

    /// The id of the latest import into `table`, if any.
    async fn latest_import(&self, table: &str) -> Result<Option<String>> {
        let batches = self
            .rows(
                table,
                &format!(
                    "SELECT CAST(import_id AS VARCHAR) AS import_id, max(time) AS t FROM {table} \
                     GROUP BY 1 ORDER BY t DESC LIMIT 1"
                ),
            )
            .await?;
        for b in &batches {
            if let Some(Some(id)) = strings(b, "import_id")?.into_iter().next() {
                return Ok(Some(id));
            }
        }
        Ok(None)
    }

    /// The demand points of the latest import (empty when there is none).
    pub async fn demand(&self) -> Result<Vec<DemandPoint>> {
        let Some(id) = self.latest_import(DEMAND_TABLE).await? else {
            return Ok(Vec::new());
        };
        let r = self
            .platform
            .query(&format!(
                "SELECT demand_id, lon, lat, population, elderly, observed FROM {DEMAND_TABLE} \
                 WHERE import_id = {} ORDER BY demand_id",
                quote(&id)
            ))
            .await?;
        let mut out = Vec::new();
        for b in &r.batches {
            let ids = strings(b, "demand_id")?;
            let cols = ["lon", "lat", "population", "elderly", "observed"]
                .iter()
                .map(|c| numbers(b, c))
                .collect::<Result<Vec<_>>>()?;
            for (k, id) in ids.into_iter().enumerate() {
                out.push(DemandPoint {
                    id: id.unwrap_or_default(),
                    lon: cols[0][k].unwrap_or(f64::NAN),
                    lat: cols[1][k].unwrap_or(f64::NAN),
                    population: cols[2][k].unwrap_or(0.0),
                    elderly: cols[3][k].unwrap_or(0.0),
                    observed: cols[4][k].unwrap_or(0.0),
                });
            }
        }
        Ok(out)
    }

    /// The candidate sites of the latest import (empty when there is none).
    pub async fn sites(&self) -> Result<Vec<Site>> {
        let Some(id) = self.latest_import(SITES_TABLE).await? else {
            return Ok(Vec::new());
        };
        let r = self
            .platform
            .query(&format!(
                "SELECT site_id, name, kind, lon, lat, existing, fixed FROM {SITES_TABLE} \
                 WHERE import_id = {} ORDER BY site_id",
                quote(&id)
            ))
            .await?;
        let mut out = Vec::new();
        for b in &r.batches {
            let ids = strings(b, "site_id")?;
            let names = strings(b, "name")?;
            let kinds = strings(b, "kind")?;
            let lon = numbers(b, "lon")?;
            let lat = numbers(b, "lat")?;
            let existing = flags(b, "existing")?;
            let fixed = flags(b, "fixed")?;
            for k in 0..ids.len() {
                out.push(Site {
                    id: ids[k].clone().unwrap_or_default(),
                    name: names[k].clone().unwrap_or_default(),
                    kind: kinds[k].clone().unwrap_or_default(),
                    lon: lon[k].unwrap_or(f64::NAN),
                    lat: lat[k].unwrap_or(f64::NAN),
                    existing: existing[k],
                    fixed: fixed[k],
                });
            }
        }
        Ok(out)
    }

    /// Observed demand: the transactions of each kiosk over the last `days` days, placed at
    /// the site with the kiosk's id. Empty when the transactions table does not exist.
    pub async fn observed(&self, sites: &[Site], days: u32) -> Result<Vec<DemandPoint>> {
        let sql = format!(
            "SELECT CAST(kiosk_id AS VARCHAR) AS kiosk_id, count(*) AS n FROM {TRANSACTIONS_TABLE} \
             WHERE time >= now() - INTERVAL '{days} days' GROUP BY 1 ORDER BY 1"
        );
        // The kiosk module's transactions may not be there (yet): then no observed use.
        let batches = self.rows(TRANSACTIONS_TABLE, &sql).await?;
        let mut out = Vec::new();
        for b in &batches {
            let ids = strings(b, "kiosk_id")?;
            let counts = numbers(b, "n")?;
            for (id, n) in ids.into_iter().zip(counts) {
                let (Some(id), Some(n)) = (id, n) else {
                    continue;
                };
                if let Some(site) = sites.iter().find(|s| s.id == id) {
                    out.push(DemandPoint {
                        id: format!("observed-{id}"),
                        lon: site.lon,
                        lat: site.lat,
                        population: 0.0,
                        elderly: 0.0,
                        observed: n,
                    });
                }
            }
        }
        Ok(out)
    }

    /// Computes a plan (inputs from the request, else the latest imports plus observed use)
    /// and keeps it unless `save` is false.
    pub async fn run(&self, req: PlanRequest) -> Result<Plan> {
        let options = req.options()?;
        let sites = match req.sites.clone() {
            Some(s) => s,
            None => self.sites().await?,
        };
        let mut demand = match req.demand.clone() {
            Some(d) => d,
            None => self.demand().await?,
        };
        if demand.is_empty() {
            return Err(SitingServiceError::NotFound(format!(
                "no demand points: import them (POST /api/v1/kiosk/siting/demand, table {DEMAND_TABLE}) or pass `demand`"
            )));
        }
        if sites.is_empty() {
            return Err(SitingServiceError::NotFound(format!(
                "no candidate sites: import them (POST /api/v1/kiosk/siting/sites, table {SITES_TABLE}) or pass `sites`"
            )));
        }
        if options.weighting.observed_share > 0.0
            && !matches!(options.distances, DistanceSource::Matrix(_))
        {
            demand.extend(
                self.observed(&sites, req.observed_days.unwrap_or(365))
                    .await?,
            );
        }
        let plan = tokio::task::spawn_blocking(move || siting::plan(demand, sites, &options))
            .await
            .map_err(|e| SitingServiceError::Internal(e.to_string()))??;
        if req.save.unwrap_or(true) {
            self.save(&plan).await?;
        }
        Ok(plan)
    }

    /// Keeps `plan` in `kiosk_plans` and `kiosk_plan_sites`.
    pub async fn save(&self, plan: &Plan) -> Result<()> {
        let internal = |e: arrow::error::ArrowError| SitingServiceError::Internal(e.to_string());
        self.platform
            .write_rows(PLANS_TABLE, output::plan_rows(plan).map_err(internal)?)
            .await?;
        self.platform
            .write_rows(
                PLAN_SITES_TABLE,
                output::plan_site_rows(plan).map_err(internal)?,
            )
            .await?;
        Ok(())
    }

    /// A stored plan: `id`, or the latest.
    pub async fn get(&self, id: Option<&str>) -> Result<Plan> {
        let filter = id
            .map(|id| format!("WHERE plan_id = {}", quote(id)))
            .unwrap_or_default();
        let batches = self
            .rows(
                PLANS_TABLE,
                &format!("SELECT plan_json FROM {PLANS_TABLE} {filter} ORDER BY time DESC LIMIT 1"),
            )
            .await?;
        for b in &batches {
            if let Some(Some(json)) = strings(b, "plan_json")?.into_iter().next() {
                return serde_json::from_str(&json)
                    .map_err(|e| SitingServiceError::Internal(format!("stored plan: {e}")));
            }
        }
        Err(SitingServiceError::NotFound(match id {
            Some(id) => format!("no kiosk plan {id}"),
            None => "no kiosk plan yet: POST /api/v1/kiosk/plan computes one".to_string(),
        }))
    }

    /// The stored plans, newest first (at most `limit`).
    pub async fn list(&self, limit: usize) -> Result<Vec<PlanSummary>> {
        let batches = self
            .rows(
                PLANS_TABLE,
                &format!(
                    "SELECT CAST(plan_id AS VARCHAR) AS plan_id, CAST(time AS VARCHAR) AS t, \
                     CAST(model AS VARCHAR) AS model, p, gap, today_population_covered, \
                     proposal_population_covered FROM {PLANS_TABLE} ORDER BY time DESC LIMIT {limit}"
                ),
            )
            .await?;
        let mut out = Vec::new();
        for b in &batches {
            let ids = strings(b, "plan_id")?;
            let times = strings(b, "t")?;
            let models = strings(b, "model")?;
            let p = numbers(b, "p")?;
            let gap = numbers(b, "gap")?;
            let today = numbers(b, "today_population_covered")?;
            let proposal = numbers(b, "proposal_population_covered")?;
            for k in 0..ids.len() {
                out.push(PlanSummary {
                    id: ids[k].clone().unwrap_or_default(),
                    computed_at: times[k].clone().unwrap_or_default(),
                    model: models[k].clone().unwrap_or_default(),
                    p: p[k].unwrap_or(0.0) as i64,
                    gap: gap[k].unwrap_or(0.0),
                    today_population_covered: today[k],
                    proposal_population_covered: proposal[k],
                });
            }
        }
        Ok(out)
    }

    /// The map of a plan's network as SVG.
    pub fn map_svg(
        &self,
        plan: &Plan,
        network: Network,
        width: u32,
        height: u32,
    ) -> Result<String> {
        if network == Network::Today && plan.today.is_none() {
            return Err(SitingServiceError::NotFound(
                "this plan has no network today (no site was marked existing)".into(),
            ));
        }
        civiclake_dashboards::render_network_svg(
            &output::network_map(plan, network, &self.layers),
            width,
            height,
        )
        .map_err(|e| SitingError::Invalid(e.to_string()).into())
    }

    /// The plan's page (HTML), with both maps.
    pub fn page(&self, plan: &Plan) -> Result<String> {
        let today = match plan.today {
            Some(_) => Some(self.map_svg(plan, Network::Today, 640, 600)?),
            None => None,
        };
        let proposal = self.map_svg(plan, Network::Proposal, 640, 600)?;
        Ok(output::page(plan, today.as_deref(), &proposal))
    }
}
