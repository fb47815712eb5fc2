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
    /// Drive event load: send a simulated social app's Segment events to any Segment-compatible
    /// endpoint at a given rate, then report throughput and ack latency.
    Sim(SimArgs),
    /// Validate strata.toml offline (no servers contacted) and print the effective config.
    Check {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Database change data capture: progress of the configured sources, source vs ODS checks.
    Cdc {
        #[command(subcommand)]
        command: CdcCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum CdcCommand {
    /// Per source and table: phase, binlog position, changes, last error, ODS position and lag.
    Status {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Compare source tables with their ODS tables: row count, per-row checksum, differing
    /// keys. Exits 1 when they differ.
    Verify {
        /// Source name (`[[sources]] name`).
        source: String,
        /// One table of that source (default: all of them).
        table: Option<String>,
        /// Keep re-checking until equal or this much time has passed (e.g. `30s`), for a
        /// source that is still being applied.
        #[arg(long, value_parser = humantime::parse_duration)]
        wait: Option<Duration>,
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

#[derive(Debug, Args)]
pub struct SimArgs {
    /// Base URL of the collector (plain http), e.g. `http://127.0.0.1:8080`. Only this is contacted.
    #[arg(long)]
    pub target: String,
    /// Write key of the app to send as (see `strata apps create`).
    #[arg(long, env = "STRATA_WRITE_KEY")]
    pub write_key: String,
    /// Events per second (token bucket); 0 = as fast as the target acknowledges.
    #[arg(long, default_value_t = 1000)]
    pub rate: u64,
    /// How long to send, e.g. `30s`, `5m`.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "60s")]
    pub duration: Duration,
    /// Events per `/v1/batch` request.
    #[arg(long, default_value_t = 100)]
    pub batch: usize,
    /// Concurrent keep-alive connections.
    #[arg(long, default_value_t = 8)]
    pub connections: usize,
    /// Seed of the simulated world. The same seed sends the same events with the same message
    /// ids, which a collector drops as retries within its dedup window: change it for fresh data.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Simulated users.
    #[arg(long, default_value_t = 10_000)]
    pub users: u32,
    /// Simulated days; they end today 00:00 UTC, and each event carries its simulated time.
    #[arg(long, default_value_t = 1)]
    pub days: u32,
    /// Stop after this many events even if `--duration` has not passed.
    #[arg(long)]
    pub max_events: Option<u64>,
}
