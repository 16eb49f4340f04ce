//! `civiclake sql`: one-shot queries and an interactive prompt, against a server or a data
//! directory.

use arrow::record_batch::RecordBatch;
use arrow::util::pretty::pretty_format_batches;
use civiclake_lake::{Lake, LakeConfig, OpenMode};
use civiclake_query::{QueryConfig, QueryEngine};
use std::path::PathBuf;
use std::time::Instant;

/// How to print results.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum PrintFormat {
    /// An aligned table.
    Table,
    /// CSV with a header.
    Csv,
    /// One JSON object per line.
    Json,
}

/// Arguments of `civiclake sql`.
#[derive(Debug, clap::Args)]
pub(crate) struct SqlArgs {
    /// Read the lake in this data directory directly (read-only; works beside a running server).
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
    /// Output format.
    #[arg(long, value_enum, default_value_t = PrintFormat::Table)]
    format: PrintFormat,
    /// The query; without it, an interactive prompt starts.
    query: Option<String>,
}

enum Target {
    Local(Box<QueryEngine>),
    Remote {
        client: reqwest::Client,
        url: String,
    },
}

impl Target {
    async fn query(&self, sql: &str) -> Result<Vec<RecordBatch>, String> {
        match self {
            Target::Local(engine) => engine
                .sql(sql)
                .await
                .map(|r| r.batches)
                .map_err(|e| e.to_string()),
            Target::Remote { client, url } => {
                let resp = client
                    .post(format!("{url}/api/v1/query"))
                    .json(&serde_json::json!({"sql": sql, "format": "arrow"}))
                    .send()
                    .await
                    .map_err(|e| format!("cannot reach {url}: {e}"))?;
                let status = resp.status();
                let body = resp.bytes().await.map_err(|e| e.to_string())?;
                if !status.is_success() {
                    let msg = serde_json::from_slice::<serde_json::Value>(&body)
                        .ok()
                        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
                        .unwrap_or_else(|| String::from_utf8_lossy(&body).to_string());
                    return Err(format!("{status}: {msg}"));
                }
                let reader =
                    arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(body), None)
                        .map_err(|e| format!("bad Arrow stream from the server: {e}"))?;
                reader
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| e.to_string())
            }
        }
    }
}

fn render(batches: &[RecordBatch], format: PrintFormat) -> Result<String, String> {
    match format {
        PrintFormat::Table => pretty_format_batches(batches)
            .map(|t| t.to_string())
            .map_err(|e| e.to_string()),
        PrintFormat::Csv => {
            let mut out = Vec::new();
            {
                let mut w = arrow::csv::WriterBuilder::new()
                    .with_header(true)
                    .build(&mut out);
                for b in batches {
                    w.write(b).map_err(|e| e.to_string())?;
                }
            }
            String::from_utf8(out)
                .map_err(|e| e.to_string())
                .map(|s| s.trim_end().to_string())
        }
        PrintFormat::Json => {
            let mut out = Vec::new();
            {
                let mut w = arrow::json::WriterBuilder::new()
                    .with_explicit_nulls(true)
                    .build::<_, arrow::json::writer::LineDelimited>(&mut out);
                for b in batches {
                    w.write(b).map_err(|e| e.to_string())?;
                }
                w.finish().map_err(|e| e.to_string())?;
            }
            String::from_utf8(out)
                .map_err(|e| e.to_string())
                .map(|s| s.trim_end().to_string())
        }
    }
}

/// Runs `civiclake sql`.
pub(crate) async fn run(args: SqlArgs) -> Result<(), String> {
    let target = match &args.data_dir {
        Some(dir) => {
            if !dir.join("tables").is_dir() && !dir.join("wal").is_dir() {
                return Err(format!(
                    "{} is not a civiclake data directory (no tables/ or wal/)",
                    dir.display()
                ));
            }
            let lake = Lake::open(LakeConfig::new(dir), OpenMode::ReadOnly)
                .await
                .map_err(|e| e.to_string())?;
            let engine =
                QueryEngine::new(lake, QueryConfig::default()).map_err(|e| e.to_string())?;
            Target::Local(Box::new(engine))
        }
        None => Target::Remote {
            client: reqwest::Client::builder()
                .default_headers(crate::auth_headers(args.token.as_deref())?)
                .build()
                .map_err(|e| e.to_string())?,
            url: args.server.trim_end_matches('/').to_string(),
        },
    };
    match &args.query {
        Some(q) => {
            let batches = target.query(q).await?;
            println!("{}", render(&batches, args.format)?);
            Ok(())
        }
        None => repl(&target, args.format).await,
    }
}

fn history_path() -> Option<PathBuf> {
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".civiclake_history"))
}

async fn repl(target: &Target, format: PrintFormat) -> Result<(), String> {
    let mut editor = rustyline::DefaultEditor::new().map_err(|e| e.to_string())?;
    let history = history_path();
    if let Some(h) = &history {
        let _ = editor.load_history(h);
    }
    println!("civiclake SQL — end statements with ';', \\q to quit, SHOW TABLES to list tables.");
    let mut buffer = String::new();
    loop {
        let prompt = if buffer.is_empty() {
            "civiclake> "
        } else {
            "       ...> "
        };
        let line = match editor.readline(prompt) {
            Ok(line) => line,
            Err(rustyline::error::ReadlineError::Interrupted) => {
                buffer.clear();
                continue;
            }
            Err(rustyline::error::ReadlineError::Eof) => break,
            Err(e) => return Err(e.to_string()),
        };
        let trimmed = line.trim();
        if buffer.is_empty() && matches!(trimmed, "\\q" | "quit" | "exit") {
            break;
        }
        if trimmed.is_empty() {
            continue;
        }
        buffer.push_str(&line);
        buffer.push('\n');
        if !trimmed.ends_with(';') {
            continue;
        }
        let sql = std::mem::take(&mut buffer);
        let _ = editor.add_history_entry(sql.trim());
        let started = Instant::now();
        match target.query(sql.trim().trim_end_matches(';')).await {
            Ok(batches) => {
                let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
                match render(&batches, format) {
                    Ok(text) if !text.is_empty() => println!("{text}"),
                    Ok(_) => {}
                    Err(e) => eprintln!("error: {e}"),
                }
                println!("{rows} row(s) in {:.3} s", started.elapsed().as_secs_f64());
            }
            Err(e) => eprintln!("error: {e}"),
        }
    }
    if let Some(h) = &history {
        let _ = editor.save_history(h);
    }
    Ok(())
}
