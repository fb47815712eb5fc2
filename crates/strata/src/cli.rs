//! The command line: what a user types. Every subcommand has `--help`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "strata",
    version,
    about = "Strata: collect app events, land them in an Iceberg lake, query them with SQL",
    long_about = None
)]
pub struct Cli {
    /// More log output (-v: debug, -vv: trace). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args, Clone)]
pub struct ConfigArg {
    /// Path of strata.toml (written by `strata init DIR`).
    #[arg(short, long, env = "STRATA_CONFIG", default_value = "strata.toml")]
    pub config: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write DIR/strata.toml (commented, every default spelled out) and create the data directory.
    Init {
        /// Directory to initialise (created if missing).
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Overwrite an existing strata.toml.
        #[arg(long)]
        force: bool,
    },
    /// Register and list apps (sources of events) and their write keys.
    Apps {
        #[command(subcommand)]
        command: AppsCommand,
    },
    /// Run the collector, the bus and the lake sink until SIGINT/SIGTERM (which flush and commit).
    Serve(ServeArgs),
    /// Run SQL over every lake table (works while `serve` runs). No query: interactive prompt.
    Sql(SqlArgs),
    /// Validate strata.toml offline (no servers contacted) and print the effective config.
    Check {
        #[command(flatten)]
        config: ConfigArg,
    },
}

#[derive(Debug, Subcommand)]
pub enum AppsCommand {
    /// Register an app and print its write key.
    Create {
        /// App name, e.g. `ios` or `web`.
        name: String,
        /// Write key to use (default: a random one).
        #[arg(long)]
        write_key: Option<String>,
        /// Signing secret: when set, every request must carry a valid HMAC-SHA256 signature.
        #[arg(long)]
        secret: Option<String>,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// List registered apps.
    List {
        #[command(flatten)]
        config: ConfigArg,
    },
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Address to listen on (overrides server.listen; default 127.0.0.1:8080).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// How often the lake sink commits (overrides lake.flush_interval), e.g. `1s`, `500ms`.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub flush_interval: Option<Duration>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    Table,
    Csv,
    Json,
}

#[derive(Debug, Args)]
pub struct SqlArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Output format.
    #[arg(long, short = 'f', value_enum, default_value = "table")]
    pub format: Format,
    /// The query. Omit it for an interactive prompt (statements end with `;`).
    pub query: Option<String>,
}
