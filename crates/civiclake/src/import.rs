//! `civiclake import`: bulk-load CSV, Parquet, NDJSON and line-protocol files into a table,
//! through a running server (Arrow IPC over HTTP) or straight into a data directory.

use civiclake_ingest::{DecodeOptions, FileFormat, Precision, TableBatch};
use civiclake_lake::{Lake, LakeConfig, OpenMode};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;
use std::time::Instant;

/// Arguments of `civiclake import`.
#[derive(Debug, clap::Args)]
pub(crate) struct ImportArgs {
    /// Table to load into (created on first write).
    #[arg(long)]
    table: String,
    /// Write into this data directory directly (the server must not be running on it).
    #[arg(long, value_name = "DIR", conflicts_with = "server")]
    data_dir: Option<PathBuf>,
    /// URL of a running civiclake server.
    #[arg(
        long,
        env = "CIVICLAKE_SERVER",
        value_name = "URL",
        default_value = "http://127.0.0.1:8080"
    )]
    server: String,
    /// Token sent as 'Authorization: Bearer' to the server.
    #[arg(
        long,
        env = "CIVICLAKE_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    token: Option<String>,
    /// File format, when the extension does not tell (.csv, .parquet, .ndjson/.jsonl, .lp).
    #[arg(long, value_enum)]
    format: Option<Format>,
    /// Unit of epoch timestamps in line protocol and NDJSON: ns, us, ms, s.
    #[arg(long, default_value = "ns")]
    precision: String,
    /// Files to import.
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Format {
    Csv,
    Parquet,
    Ndjson,
    Lp,
}

impl From<Format> for FileFormat {
    fn from(f: Format) -> Self {
        match f {
            Format::Csv => FileFormat::Csv,
            Format::Parquet => FileFormat::Parquet,
            Format::Ndjson => FileFormat::Ndjson,
            Format::Lp => FileFormat::LineProtocol,
        }
    }
}

enum Sink {
    Lake(std::sync::Arc<Lake>),
    /// The blocking client is made on the import thread: it may not live in async code.
    Server {
        client: std::sync::OnceLock<reqwest::blocking::Client>,
        url: String,
        token: Option<String>,
    },
}

impl Sink {
    fn send(&self, batch: TableBatch, rt: &tokio::runtime::Handle) -> Result<usize, String> {
        let rows = batch.batch.num_rows();
        match self {
            Sink::Lake(lake) => rt
                .block_on(lake.write(vec![(batch.table, batch.batch)]))
                .map_err(|e| e.to_string()),
            Sink::Server { client, url, token } => {
                let client = match client.get() {
                    Some(c) => c,
                    None => {
                        let c = reqwest::blocking::Client::builder()
                            .default_headers(crate::auth_headers(token.as_deref())?)
                            .timeout(std::time::Duration::from_secs(300))
                            .build()
                            .map_err(|e| e.to_string())?;
                        client.get_or_init(|| c)
                    }
                };
                let mut body = Vec::new();
                {
                    let mut w =
                        arrow::ipc::writer::StreamWriter::try_new(&mut body, &batch.batch.schema())
                            .map_err(|e| e.to_string())?;
                    w.write(&batch.batch).map_err(|e| e.to_string())?;
                    w.finish().map_err(|e| e.to_string())?;
                }
                let resp = client
                    .post(format!("{url}/api/v1/write"))
                    .query(&[("table", batch.table.as_str())])
                    .header("content-type", "application/vnd.apache.arrow.stream")
                    .body(body)
                    .send()
                    .map_err(|e| format!("cannot reach {url}: {e}"))?;
                if !resp.status().is_success() {
                    let status = resp.status();
                    return Err(format!("{status}: {}", resp.text().unwrap_or_default()));
                }
                Ok(rows)
            }
        }
    }
}

/// Runs `civiclake import`.
pub(crate) async fn run(args: ImportArgs) -> Result<(), String> {
    civiclake_core::validate_table_name(&args.table)?;
    let precision: Precision = args.precision.parse().map_err(|_| {
        format!(
            "invalid precision '{}': use ns, us, ms or s",
            args.precision
        )
    })?;
    let opts = DecodeOptions {
        table: Some(args.table.clone()),
        precision,
        now_micros: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
            .unwrap_or(0),
        accept_partial: true,
        pseudonymiser: None,
    };
    let sink = match &args.data_dir {
        Some(dir) => Sink::Lake(
            Lake::open(LakeConfig::new(dir), OpenMode::ReadWrite)
                .await
                .map_err(|e| e.to_string())?,
        ),
        None => Sink::Server {
            client: std::sync::OnceLock::new(),
            url: args.server.trim_end_matches('/').to_string(),
            token: args.token.clone(),
        },
    };
    let rt = tokio::runtime::Handle::current();
    let lake = match &sink {
        Sink::Lake(lake) => Some(lake.clone()),
        Sink::Server { .. } => None,
    };
    let started = Instant::now();
    // The sink (and its blocking HTTP client) lives and dies on the blocking thread.
    let (rows, rejected) =
        tokio::task::spawn_blocking(move || import_files(&args, &opts, &sink, &rt))
            .await
            .map_err(|e| e.to_string())??;
    if let Some(lake) = lake {
        lake.shutdown().await.map_err(|e| e.to_string())?;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "imported {rows} rows in {secs:.2} s ({:.0} rows/s){}",
        rows as f64 / secs.max(1e-9),
        if rejected > 0 {
            format!(", {rejected} rows rejected")
        } else {
            String::new()
        }
    );
    Ok(())
}

fn import_files(
    args: &ImportArgs,
    opts: &DecodeOptions,
    sink: &Sink,
    rt: &tokio::runtime::Handle,
) -> Result<(usize, usize), String> {
    let mut total = 0usize;
    let mut rejected = 0usize;
    for path in &args.files {
        let format = match args.format {
            Some(f) => f.into(),
            None => FileFormat::from_path(path).ok_or_else(|| {
                format!(
                    "cannot tell the format of {} from its extension: add --format",
                    path.display()
                )
            })?,
        };
        let size = std::fs::metadata(path)
            .map_err(|e| format!("{}: {e}", path.display()))?
            .len();
        let bar = ProgressBar::new(size);
        bar.set_style(
            ProgressStyle::with_template(
                "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_message(
            path.file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default(),
        );
        let mut file_rows = 0usize;
        let stats = civiclake_ingest::read_file(
            path,
            format,
            opts,
            &mut |bytes| bar.set_position(bytes),
            &mut |batch| {
                let n = sink.send(batch, rt).map_err(|e| {
                    civiclake_ingest::Error::sink(civiclake_core::ErrorClass::Unavailable, e)
                })?;
                file_rows += n;
                Ok(())
            },
        )
        .map_err(|e| format!("{}: {e}", path.display()))?;
        bar.finish_and_clear();
        for r in stats.rejected.iter().take(5) {
            eprintln!("{}:{}:{}: {}", path.display(), r.line, r.column, r.message);
        }
        rejected += stats.rejected_rows;
        total += file_rows;
    }
    Ok((total, rejected))
}
