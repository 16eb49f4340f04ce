//! `civiclake`: the command-line entry point. No logic lives here: each subcommand parses its
//! arguments and calls the crate that does the work.

mod import;
mod kiosk;
mod simulate;
mod sql;
mod token;

use civiclake_server::config::{ServeArgs, example_toml, with_defaults_in_help};
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use std::process::ExitCode;

/// A streaming data lakehouse for a city: sensor feeds and the city's own software in one
/// SQL-queryable Delta Lake.
#[derive(Debug, Parser)]
#[command(name = "civiclake", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the platform: HTTP API, WAL, buffer and Delta Lake tables.
    Serve(Box<ServeArgs>),
    /// Run SQL: one query, or an interactive prompt when no query is given.
    Sql(sql::SqlArgs),
    /// Import CSV, Parquet, NDJSON or line-protocol files into a table.
    Import(import::ImportArgs),
    /// Simulated city sensor data: to line-protocol, NDJSON or Parquet files, or live to a
    /// server over HTTP.
    Simulate(simulate::SimulateArgs),
    /// Tokens and roles: create, list, revoke, sign links (works on the data directory).
    Token(token::TokenArgs),
    /// The kiosk siting optimiser: plans (`kiosk plan`), ISTAT census data to demand
    /// (`kiosk demand`).
    Kiosk(kiosk::KioskArgs),
    /// Configuration helpers.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigAction {
    /// Print the example configuration file with every setting and its default.
    Example,
}

/// Headers that carry `token`, if any.
pub(crate) fn auth_headers(token: Option<&str>) -> Result<reqwest::header::HeaderMap, String> {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(t) = token {
        let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {}", t.trim()))
            .map_err(|_| "the token contains characters a header cannot carry".to_string())?;
        value.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, value);
    }
    Ok(headers)
}

fn command() -> clap::Command {
    Cli::command().mut_subcommand("serve", with_defaults_in_help)
}

fn main() -> ExitCode {
    let matches = command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result: Result<(), String> = runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => {
                let config = args.resolve().map_err(|e| e.to_string())?;
                civiclake_server::init_logging(config.log_format, &config.log_filter);
                civiclake_server::serve(config)
                    .await
                    .map_err(|e| e.to_string())
            }
            Command::Sql(args) => sql::run(args).await,
            Command::Import(args) => import::run(args).await,
            Command::Simulate(args) => simulate::run(args).await,
            Command::Token(args) => token::run(args),
            Command::Kiosk(args) => kiosk::run(args).await,
            Command::Config {
                action: ConfigAction::Example,
            } => {
                print!("{}", example_toml());
                Ok(())
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
