//! Subcommand implementations, one module each.

mod apps;
mod cdc;
mod check;
mod dag;
mod demo;
mod demo_db;
mod experiments;
mod features;
mod init;
mod load;
mod models;
mod privacy;
mod pulls;
mod risk;
mod schemas;
mod serve;
mod sim;
mod sql;
mod supervise;
mod table;
mod tokens;

use anyhow::Result;
use tracing_subscriber::EnvFilter;

use crate::cli::{AppsCommand, CdcCommand, Cli, Command, Format, TokensCommand};

/// `quiet`: warnings and errors only unless `-v` or `RUST_LOG` asks for more.
pub fn init_tracing(verbose: u8, quiet: bool) {
    let default = match verbose {
        0 if quiet => "warn",
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    // Logs go to stderr so `strata sql` output on stdout stays clean.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

pub async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Init { dir, force } => init::run(&dir, force),
        Command::Apps { command } => match command {
            AppsCommand::Create {
                name,
                write_key,
                secret,
                config,
            } => apps::create(&config.config, name, write_key, secret),
            AppsCommand::List { config } => apps::list(&config.config),
        },
        Command::Tokens { command } => match command {
            TokensCommand::Create {
                name,
                config,
                scopes,
                namespaces,
                expires_in,
                role,
            } => {
                let request = tokens::CreateRequest {
                    scopes,
                    namespaces,
                    expires_in,
                    role,
                };
                tokens::create(&config.config, name, request).await
            }
            TokensCommand::List { config } => tokens::list(&config.config),
            TokensCommand::Revoke { name, config } => tokens::revoke(&config.config, name).await,
        },
        Command::Serve(args) => serve::run(args).await,
        Command::Sql(args) => sql::run(args).await,
        Command::Sim(args) => sim::run(args).await,
        Command::Demo(args) => demo::run(args).await,
        Command::Dag { command } => dag::run(command).await,
        Command::Dq { command } => dag::dq(command).await,
        Command::Check { config } => check::run(&config.config).await,
        Command::Cdc { command } => match command {
            CdcCommand::Status { config } => cdc::status(&config.config).await,
            CdcCommand::Verify {
                source,
                table,
                wait,
                config,
            } => cdc::verify(&config.config, &source, table.as_deref(), wait).await,
            CdcCommand::Resync {
                table,
                source,
                config,
            } => cdc::resync(&config.config, &table, source.as_deref()),
        },
        Command::Table { command } => table::run(command).await,
        Command::Privacy { command } => privacy::run(command).await,
        Command::Pulls { command } => pulls::run(command).await,
        Command::Features { command } => features::run(command).await,
        Command::Models { command } => models::run(command).await,
        Command::Experiments { command } => experiments::run(command).await,
        Command::Load(args) => load::run(args).await,
        Command::Risk { command } => risk::run(command).await,
        Command::Schemas { command } => schemas::run(command).await,
    }
}

/// The lake's output format for `--format`.
pub fn output_format(format: Format) -> strata_sql::OutputFormat {
    match format {
        Format::Table => strata_sql::OutputFormat::Table,
        Format::Csv => strata_sql::OutputFormat::Csv,
        Format::Json => strata_sql::OutputFormat::Json,
    }
}

/// Records an administrative command in `audit.access_log` (when `governance.audit` is on).
/// The command has already happened: a failure to record it is a warning, not an error.
pub async fn audit_admin(
    config: &crate::config::Config,
    action: String,
    object: Option<String>,
    detail: Option<String>,
) {
    use strata_sql::audit::{AccessRecord, Outcome, Surface};
    if !config.governance.audit {
        return;
    }
    let mut record = AccessRecord::local(Surface::Admin, None, action, Outcome::Ok);
    record.object = object;
    record.detail = detail;
    let result = async {
        let lake = strata_table::Lake::open(&config.lake_options()).await?;
        strata_sql::audit::append(&lake, &[record]).await
    }
    .await;
    if let Err(e) = result {
        tracing::warn!(error = %e, "could not record the command in audit.access_log");
    }
}

/// Loads the config with a message that says what to do when it is missing.
pub fn load_config(path: &std::path::Path) -> Result<crate::config::Config> {
    Ok(crate::config::Config::load(path)?)
}
