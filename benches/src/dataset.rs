//! The benchmark data: a city from `civiclake-sim` (the same generator as `civiclake
//! simulate`), encoded once into the requests every server receives.

use crate::client::Request;
use arrow::ipc::writer::StreamWriter;
use civiclake_sim::{City, CityConfig, Kind};
use std::collections::BTreeMap;

/// Microseconds in a day.
const DAY_MICROS: i64 = 86_400 * 1_000_000;

/// The generated city and its line-protocol requests.
pub(crate) struct Dataset {
    /// What was generated.
    pub(crate) config: CityConfig,
    /// All rows.
    pub(crate) rows: u64,
    /// Rows per table.
    pub(crate) rows_per_table: BTreeMap<&'static str, u64>,
    /// Line protocol, `batch` lines per request, in arrival order (tables mixed, as a
    /// gateway sends them).
    pub(crate) lp: Vec<Request>,
    /// Bytes of line protocol per table.
    pub(crate) lp_bytes_per_table: BTreeMap<&'static str, u64>,
}

impl Dataset {
    /// Generates the city of `config` as line-protocol requests of `batch` lines.
    pub(crate) fn generate(config: CityConfig, batch: usize) -> Result<Self, String> {
        let city = City::new(config.clone()).map_err(|e| e.to_string())?;
        let mut rows_per_table = BTreeMap::new();
        let mut lp_bytes_per_table = BTreeMap::new();
        let mut lp = Vec::new();
        let mut body = String::new();
        let mut lines = 0usize;
        let mut rows = 0u64;
        for reading in city.readings() {
            let before = body.len();
            civiclake_sim::output::write_line_protocol(&reading, &mut body);
            let table = reading.kind.table();
            *lp_bytes_per_table.entry(table).or_insert(0) += (body.len() - before) as u64;
            *rows_per_table.entry(table).or_insert(0) += 1;
            rows += 1;
            lines += 1;
            if lines == batch.max(1) {
                lp.push(lp_request(std::mem::take(&mut body), lines));
                lines = 0;
            }
        }
        if lines > 0 {
            lp.push(lp_request(body, lines));
        }
        Ok(Self {
            config,
            rows,
            rows_per_table,
            lp,
            lp_bytes_per_table,
        })
    }

    /// The same city's following day, for the writes that run while queries are measured
    /// (newer times, so the measured windows keep their answers).
    pub(crate) fn next_day(&self, batch: usize) -> Result<Self, String> {
        let config = CityConfig {
            days: 1,
            start_micros: self.config.start_micros + i64::from(self.config.days) * DAY_MICROS,
            seed: self.config.seed.wrapping_add(1),
            ..self.config.clone()
        };
        Self::generate(config, batch)
    }

    /// Every reading as (table, line-protocol line), in arrival order: what a gateway sends
    /// one message at a time.
    pub(crate) fn readings(&self) -> impl Iterator<Item = (String, &[u8])> {
        self.lp.iter().flat_map(|request| {
            request
                .body
                .split(|&b| b == b'\n')
                .filter(|l| !l.is_empty())
                .map(|line| {
                    let table = line
                        .iter()
                        .position(|&b| b == b',' || b == b' ')
                        .map_or(line, |p| &line[..p]);
                    (String::from_utf8_lossy(table).into_owned(), line)
                })
        })
    }

    /// Bytes of all the line protocol.
    pub(crate) fn lp_bytes(&self) -> u64 {
        self.lp_bytes_per_table.values().sum()
    }

    /// The same rows as Arrow IPC streams, one table per request, `batch` rows each.
    pub(crate) fn arrow_requests(&self, batch: usize) -> Result<Vec<Request>, String> {
        let city = City::new(self.config.clone()).map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        for item in city.record_batches(batch.max(1)) {
            let (kind, batch): (Kind, _) = item.map_err(|e| e.to_string())?;
            let mut body = Vec::new();
            {
                let mut w =
                    StreamWriter::try_new(&mut body, &batch.schema()).map_err(|e| e.to_string())?;
                w.write(&batch).map_err(|e| e.to_string())?;
                w.finish().map_err(|e| e.to_string())?;
            }
            out.push(Request {
                path: format!("/api/v1/write?table={}", kind.table()),
                content_type: "application/vnd.apache.arrow.stream",
                body,
                rows: batch.num_rows(),
            });
        }
        Ok(out)
    }

    /// One sentence describing the data, for the report.
    pub(crate) fn describe(&self) -> String {
        let tables: Vec<String> = self
            .rows_per_table
            .iter()
            .map(|(t, n)| format!("{t} {n}"))
            .collect();
        format!(
            "{} rows from `civiclake simulate --seed {} --sensors {} --days {}` (one reading a minute per sensor, ~2% out of order, 0.1% hours late, 1% missing a field; rows per table: {}); {:.1} MB of line protocol",
            self.rows,
            self.config.seed,
            self.config.sensors,
            self.config.days,
            tables.join(", "),
            self.lp_bytes() as f64 / 1e6
        )
    }
}

fn lp_request(body: String, rows: usize) -> Request {
    Request {
        path: "/api/v1/write".into(),
        content_type: "text/plain",
        body: body.into_bytes(),
        rows,
    }
}
