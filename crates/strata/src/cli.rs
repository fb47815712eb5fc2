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
    /// Bearer tokens for the Iceberg REST catalog `serve` exposes under /iceberg.
    Tokens {
        #[command(subcommand)]
        command: TokensCommand,
    },
    /// Run the collector, the bus and the lake sink until SIGINT/SIGTERM (which flush and commit).
    Serve(ServeArgs),
    /// Run SQL over every lake table (works while `serve` runs). No query: interactive prompt.
    Sql(SqlArgs),
    /// Drive event load: send a simulated social app's Segment events to any Segment-compatible
    /// endpoint at a given rate, then report throughput and ack latency.
    Sim(SimArgs),
    /// The whole platform on the embedded defaults: generate a social app, send its events
    /// through the collector, land its business rows in ODS, run the reference warehouse, and
    /// print what was built. Leaves DIR/strata.toml for `strata sql` / `strata serve`.
    Demo(DemoArgs),
    /// The warehouse: plan, run and backfill the SQL model DAG; run history.
    Dag {
        #[command(subcommand)]
        command: DagCommand,
    },
    /// Data-quality check results of warehouse runs.
    Dq {
        #[command(subcommand)]
        command: DqCommand,
    },
    /// Database change data capture: progress of the configured sources, source vs ODS checks.
    Cdc {
        #[command(subcommand)]
        command: CdcCommand,
    },
    /// Scheduled HTTP pulls (`[[pulls]]` in strata.toml): pull a window or backfill a range of
    /// a third-party API into its lake table (each window's partition replaced in one commit),
    /// and show each pull's last window, errors and next due time. `serve` runs the schedule.
    Pulls {
        #[command(subcommand)]
        command: PullsCommand,
    },
    /// Validate strata.toml offline (no servers contacted) and print the effective config.
    Check {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Maintain a lake table: compact files, expire snapshots, remove orphan files, list its
    /// history, snapshots and files. Safe while `serve` runs (commits are optimistic).
    Table {
        #[command(subcommand)]
        command: TableCommand,
    },
    /// Personal data: erase users from the lake (GDPR / PIPL). Safe while `serve` runs.
    Privacy {
        #[command(subcommand)]
        command: PrivacyCommand,
    },
    /// The feature store: views declared in <project>/features/*.toml, synced from the lake
    /// to the online store that `serve` answers `/get-online-features` from.
    Features {
        #[command(subcommand)]
        command: FeaturesCommand,
    },
    /// Models declared in <project>/ml/*.toml (GBDT rankers, two-tower recall): train them from
    /// the lake, list their versions, promote, roll back, canary. `serve` answers
    /// `POST /v1/recall/knn` from the promoted two-tower version.
    Models {
        #[command(subcommand)]
        command: ModelsCommand,
    },
    /// A/B experiments over feeds (`[[experiments]]` in strata.toml): per variant,
    /// impressions, CTR and likes per impression with confidence intervals, from the lake.
    Experiments {
        #[command(subcommand)]
        command: ExperimentsCommand,
    },
    /// Load Parquet, CSV or JSON files (local paths, directories, s3:// prefixes) into a lake
    /// table as one commit: append, overwrite, or merge by key (DMS-style I/U/D change files
    /// with --op-column). Creates the table from the files' columns when it does not exist.
    Load(LoadArgs),
    /// Risk blocks (`[[risk.rules]]` in strata.toml decide them; every collector enforces
    /// them): list the blocks in force, block or unblock a subject by hand. Reads and writes
    /// the bus topic `risk.blocks` (with the embedded bus, while `serve` is stopped).
    Risk {
        #[command(subcommand)]
        command: RiskCommand,
    },
    /// Event schemas: the registry of JSON Schemas the collector validates events against (a
    /// subject per track event name or call type), proposals from the lake, typed-column
    /// models (docs/schemas.md).
    Schemas {
        #[command(subcommand)]
        command: SchemasCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum RiskCommand {
    /// The blocks in force: subject, rule, until.
    #[command(alias = "blocks")]
    List {
        #[command(flatten)]
        config: ConfigArg,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Block a subject now on every collector: `user_id:U`, `anonymous_id:A`, `ip:ADDR` or
    /// `device_id:D`.
    Block {
        #[command(flatten)]
        config: ConfigArg,
        subject: String,
        /// How long (e.g. 30m, 1d).
        #[arg(long = "for", default_value = "1h", value_parser = humantime::parse_duration)]
        duration: std::time::Duration,
        /// Why (recorded with the block).
        #[arg(long, default_value = "blocked by hand")]
        reason: String,
    },
    /// Lift a subject's block on every collector at once.
    Unblock {
        #[command(flatten)]
        config: ConfigArg,
        subject: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum PullsCommand {
    /// Pull the latest window that is due, or with --start (and --end) every whole window of
    /// the schedule in [start, end), oldest first. A window that fails writes nothing; the
    /// others go on. Exit code 1 when any failed.
    Run {
        #[command(flatten)]
        config: ConfigArg,
        /// The pull's `name` in `[[pulls]]`.
        name: String,
        /// Backfill from this time: RFC 3339 (2026-12-01T00:00:00Z) or a date (midnight UTC).
        #[arg(long)]
        start: Option<String>,
        /// Backfill up to this time (exclusive; default: the end of the latest window due now).
        #[arg(long)]
        end: Option<String>,
    },
    /// Each pull's last window (rows, pages, requests, status, error), the failed windows
    /// waiting for a retry, and when the next window is due.
    Status {
        #[command(flatten)]
        config: ConfigArg,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ExperimentsCommand {
    /// The experiments in strata.toml, their variants and shares.
    List(ModelsArgs),
    /// Per variant: users, feeds, impressions, clicks, CTR and likes per impression with 95 %
    /// intervals (delta method over users) and the difference to the control, from the
    /// `Feed Served` events and the clicks and likes after them in `ods.ods_event`.
    Report {
        #[command(flatten)]
        args: ModelsArgs,
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// The project's models: kind, source, promoted version, canary, the promoted version's
    /// validation metrics.
    List(ModelsArgs),
    /// One model's versions (data window, rows, metrics, the gate's verdict) and its
    /// deployment history.
    Show {
        #[command(flatten)]
        args: ModelsArgs,
        name: String,
    },
    /// Train a model for a run date: validation on the run date's days, training on the days
    /// before. The new version is promoted when its validation metric is not worse than the
    /// promoted one's by more than the model's tolerance; otherwise it stays a candidate and
    /// an alert says why.
    Train {
        #[command(flatten)]
        args: ModelsArgs,
        name: String,
        /// The run date (default: the newest day in the model's rows).
        #[arg(long)]
        date: Option<chrono::NaiveDate>,
        /// Training threads (default: the model file's, else one per core).
        #[arg(long)]
        threads: Option<usize>,
    },
    /// Serve VERSION to everyone (a canary of it ends).
    Promote {
        #[command(flatten)]
        args: ModelsArgs,
        name: String,
        version: i64,
    },
    /// Go back to the version promoted before the current one (or to VERSION).
    Rollback {
        #[command(flatten)]
        args: ModelsArgs,
        name: String,
        version: Option<i64>,
    },
    /// Serve VERSION to PERCENT % of users (chosen by a stable hash of the user), the promoted
    /// version to the rest. `--percent 0` ends the canary.
    Canary {
        #[command(flatten)]
        args: ModelsArgs,
        name: String,
        version: i64,
        #[arg(long, value_parser = clap::value_parser!(u8).range(0..=100))]
        percent: u8,
    },
}

#[derive(Debug, Args)]
pub struct ModelsArgs {
    #[command(flatten)]
    pub project: ProjectArg,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum FeaturesCommand {
    /// The project's feature views, checked against the lake: entity, source, features, TTL.
    List(FeaturesArgs),
    /// Sync views (default: every online view) from the lake to the online store: only what
    /// changed since the last sync when the source only had appends, all of it otherwise.
    /// Readers see the previous version until a view's sync completes. Safe while `serve` runs.
    Materialize {
        #[command(flatten)]
        args: FeaturesArgs,
        /// Views to sync (default: every online view).
        #[arg(value_name = "VIEW")]
        views: Vec<String>,
        /// Read the sources in full even where an incremental sync is possible.
        #[arg(long)]
        full: bool,
    },
    /// Per view: the version served, the lake snapshot it reflects, entities, when it was
    /// synced, how far it trails the lake, and any sync in progress (or killed).
    Status(FeaturesArgs),
    /// One entity's features as the online store serves them (KEY: the entity's key values,
    /// comma-separated for several key columns).
    Get {
        #[command(flatten)]
        args: FeaturesArgs,
        view: String,
        key: String,
    },
}

#[derive(Debug, Args)]
pub struct FeaturesArgs {
    #[command(flatten)]
    pub project: ProjectArg,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum PrivacyCommand {
    /// Remove every row of the given users from every lake table that has a user key column
    /// (`[privacy]` in strata.toml), then expire the snapshots and delete the files that
    /// still held them (overriding snapshot retention), and print what was removed.
    Forget(ForgetArgs),
}

#[derive(Debug, Args)]
pub struct ForgetArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// The users' ids, as they appear in the key columns (e.g. a user_id or anonymous_id).
    #[arg(required = true, value_name = "USER_ID")]
    pub users: Vec<String>,
    /// Print the report as JSON (for the audit log).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum TableCommand {
    /// Bin-pack small data files and fold delete files into new data files of about the
    /// target size, as one `replace` snapshot. The table's rows do not change.
    Compact(CompactArgs),
    /// Drop snapshots older than --older-than (keeping the newest --retain-last) and delete
    /// the files only they referenced. Time travel to dropped snapshots stops working.
    ExpireSnapshots(ExpireArgs),
    /// Delete files under the table's data/ and metadata/ that nothing references and that
    /// are older than --older-than (leftovers of failed or interrupted writes).
    RemoveOrphans(OrphanArgs),
    /// When each snapshot became the current one.
    History(ListArgs),
    /// Every snapshot: commit time, operation, file and record counts.
    Snapshots(ListArgs),
    /// The live data and delete files of the current snapshot.
    Files(ListArgs),
}

#[derive(Debug, Args)]
pub struct CompactArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Table as NAMESPACE.TABLE (a bare name is in namespace `ods`).
    pub table: String,
    /// Size new data files aim for, e.g. `128MiB`, `1GiB`, `64MB` (default: the table's
    /// `write.target-file-size-bytes`, else `lake.compaction_target_file_size`).
    #[arg(long, value_parser = parse_size)]
    pub target_file_size: Option<u64>,
    /// Small files a partition needs before they are merged (default: the table's
    /// `strata.compaction.min-input-files`, else `lake.compaction_min_input_files`). Files
    /// with deletes against them are always rewritten.
    #[arg(long)]
    pub min_input_files: Option<usize>,
}

#[derive(Debug, Args)]
pub struct ExpireArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Table as NAMESPACE.TABLE (a bare name is in namespace `ods`).
    pub table: String,
    /// Expire snapshots committed longer ago than this, e.g. `7d`, `12h`.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub older_than: Duration,
    /// Always keep this many of the newest snapshots (the current one at least).
    #[arg(long, default_value_t = 1)]
    pub retain_last: usize,
}

#[derive(Debug, Args)]
pub struct OrphanArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Table as NAMESPACE.TABLE (a bare name is in namespace `ods`).
    pub table: String,
    /// Only delete files last modified longer ago than this. Files of a write in progress
    /// are unreferenced until it commits: keep this well above any write's duration.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "3d")]
    pub older_than: Duration,
    /// Allow --older-than below one hour.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Table as NAMESPACE.TABLE (a bare name is in namespace `ods`).
    pub table: String,
    /// Output format.
    #[arg(long, short = 'f', value_enum, default_value = "table")]
    pub format: Format,
}

/// Parses a byte size: a number with an optional unit, `B`, `KiB`/`K`, `MiB`/`M`, `GiB`/`G`
/// (powers of 1024) or `KB`, `MB`, `GB` (powers of 1000), case-insensitive.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size like 128MiB"))?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        other => return Err(format!("unknown size unit {other:?} (use KiB, MiB or GiB)")),
    };
    let bytes = number * factor as f64;
    if bytes.is_nan() || bytes < 1.0 || bytes >= u64::MAX as f64 {
        return Err(format!("{text:?} is not a positive size"));
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("128MiB"), Ok(128 << 20));
        assert_eq!(parse_size("128m"), Ok(128 << 20));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("64MB"), Ok(64_000_000));
        assert_eq!(parse_size("1.5KiB"), Ok(1536));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("12 parsecs").is_err());
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("0").is_err());
    }
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where the demo puts strata.toml, its data and the warehouse project.
    #[arg(long, default_value = "strata-demo")]
    pub data_dir: PathBuf,
    /// Simulated users.
    #[arg(long, default_value_t = 2_000)]
    pub users: u32,
    /// Simulated days (ending yesterday, UTC); each becomes its own day in the lake.
    #[arg(long, default_value_t = 3)]
    pub days: u32,
    /// The first simulated day (default: `--days` days before today, so the window ends
    /// yesterday). An earlier window leaves days up to today for `strata sim feed`.
    #[arg(long)]
    pub start_date: Option<chrono::NaiveDate>,
    /// Seed of the simulated world (the same seed builds the same app).
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Build the warehouse and sync the features but train no model (benchmarks train once,
    /// for the last day, with `strata models train`).
    #[arg(long)]
    pub skip_models: bool,
    /// Mean events per active user per simulated day (session length).
    #[arg(long, default_value_t = 40)]
    pub events_per_user: u32,
    /// Keep-alive HTTP connections the events are sent over; each waits for its batch's
    /// durable ack, so more connections keep the collector's group commit fuller.
    #[arg(long, default_value_t = 16)]
    pub connections: usize,
    /// Put the business tables in this MariaDB/MySQL database instead of writing them straight
    /// to the bus: the demo creates users, profiles, posts, follows, orders and messages there,
    /// writes the rows with SQL, adds a `[[sources]]` entry named `app` to DIR/strata.toml, and
    /// the real connector (snapshot + row binlog) carries them into ODS. The server needs
    /// `--log-bin --binlog-format=ROW --binlog-row-image=FULL`; the user needs CREATE,
    /// INSERT/UPDATE/DELETE, SELECT, REPLICATION SLAVE and REPLICATION CLIENT. The tables must
    /// not exist yet. Example: mysql://cdc:secret@127.0.0.1:3306/app
    #[arg(long, value_name = "URL", conflicts_with = "postgres")]
    pub mysql: Option<String>,
    /// The same with a PostgreSQL database (logical replication, pgoutput): the server needs
    /// `wal_level = logical`; the user needs LOGIN REPLICATION and CREATE on schema public
    /// (the publication and slot are created by the connector).
    /// Example: postgres://cdc:secret@127.0.0.1:5432/app
    #[arg(long, value_name = "URL")]
    pub postgres: Option<String>,
}

#[derive(Debug, Args, Clone)]
pub struct ProjectArg {
    #[command(flatten)]
    pub config: ConfigArg,
    /// The project folder (default: warehouse.project in strata.toml).
    #[arg(short, long)]
    pub project: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum DagCommand {
    /// Check the project and print its models in run order with what each reads. Nothing runs.
    Plan {
        #[command(flatten)]
        project: ProjectArg,
    },
    /// Print each model's SQL for a date as it would run (parameters substituted, model
    /// names qualified), in run order. Nothing runs.
    Compile {
        #[command(flatten)]
        project: ProjectArg,
        /// The run date, YYYY-MM-DD (default: yesterday, UTC).
        #[arg(long)]
        date: Option<chrono::NaiveDate>,
        /// Models to print (same syntax as `dag run --select`).
        #[arg(long, short)]
        select: Option<String>,
        /// `sql` (statements separated by comments naming the model) or `json` (one object
        /// per model: model, table, materialized, reads, sql).
        #[arg(long, default_value = "sql", value_parser = ["sql", "json"])]
        format: String,
    },
    /// Run the DAG (or a selection) for one date.
    Run {
        #[command(flatten)]
        project: ProjectArg,
        /// The run date, YYYY-MM-DD (default: yesterday, UTC).
        #[arg(long)]
        date: Option<chrono::NaiveDate>,
        /// Models to run: `name`, `name+` (and downstream), `+name` (and upstream), `tag:t`;
        /// comma-separated.
        #[arg(long, short)]
        select: Option<String>,
        /// Models run at once (default: the project's `parallelism`).
        #[arg(long)]
        parallelism: Option<usize>,
    },
    /// Run the DAG for every date of a range, oldest first; resumes where an earlier
    /// backfill of the same selection stopped.
    Backfill {
        #[command(flatten)]
        project: ProjectArg,
        #[arg(long)]
        from: chrono::NaiveDate,
        #[arg(long)]
        to: chrono::NaiveDate,
        #[arg(long, short)]
        select: Option<String>,
        #[arg(long)]
        parallelism: Option<usize>,
    },
    /// The latest run of each model.
    Status {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Recent DAG runs.
    Runs {
        #[command(flatten)]
        config: ConfigArg,
        /// How many.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// What one run did: each model's attempts, errors and check results.
    Logs {
        #[command(flatten)]
        config: ConfigArg,
        /// The run id (from `strata dag runs`).
        run_id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum DqCommand {
    /// Check results, failures first.
    Report {
        #[command(flatten)]
        config: ConfigArg,
        /// Only this run date.
        #[arg(long)]
        date: Option<chrono::NaiveDate>,
    },
}

#[derive(Debug, Subcommand)]
pub enum CdcCommand {
    /// Per source and table: phase, source position, changes, last error, ODS position and lag.
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
    /// Re-snapshot one table: its ODS table is emptied and loaded again from the source while
    /// the other tables keep streaming. Also brings back a table that stopped on a schema
    /// change it could not follow. A running `strata serve` starts within a second; otherwise
    /// the next start does.
    Resync {
        /// The table, as in its source's `tables` list.
        table: String,
        /// The source (needed only when several sources list the table).
        #[arg(long)]
        source: Option<String>,
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

#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Make a new random token and print it (once: only its SHA-256 is stored).
    Create {
        /// Who or what uses the token, e.g. `spark` or `analyst-jo`.
        name: String,
        #[command(flatten)]
        config: ConfigArg,
        /// What the token may do, repeatable or comma-separated: `catalog:read` (list, load),
        /// `catalog:write` (create, commit, drop), `serve` (feature and feed APIs), `admin`
        /// (everything, every namespace). Default: catalog:read and catalog:write, what tokens
        /// could do before scopes existed; give `--scope catalog:read` for a read-only token.
        #[arg(long = "scope", value_name = "SCOPE", default_values_t = ["catalog:read".to_string(), "catalog:write".to_string()])]
        scopes: Vec<String>,
        /// Namespaces the token may see and touch, repeatable (default: all).
        #[arg(long = "namespace", value_name = "NAMESPACE")]
        namespaces: Vec<String>,
        /// The token stops working after this long, e.g. `30d`, `12h` (default: never).
        #[arg(long, value_parser = humantime::parse_duration)]
        expires_in: Option<Duration>,
        /// The `[[governance.roles]]` role whose column masking applies to this token.
        #[arg(long)]
        role: Option<String>,
    },
    /// List tokens: name, start of the hash, creation time.
    List {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Revoke a token by name; requests carrying it get 401 from then on.
    Revoke {
        name: String,
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
    /// What this process runs, comma-separated (overrides server.roles; default all):
    /// collector, sink, cdc, warehouse, features. Splitting them across processes needs the Kafka bus.
    #[arg(long, value_delimiter = ',')]
    pub roles: Option<Vec<strata_collect::config::Role>>,
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
    /// Query as this `[[governance.roles]]` role: its masked columns read masked, and only
    /// queries run (no DDL or DML). Default: the lake's owner, who sees everything.
    #[arg(long)]
    pub role: Option<String>,
    /// The query. Omit it for an interactive prompt (statements end with `;`).
    pub query: Option<String>,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct SimArgs {
    #[command(subcommand)]
    pub command: Option<SimCommand>,
    /// Base URL of the collector (plain http), e.g. `http://127.0.0.1:8080`. Only this is contacted.
    #[arg(long, required = true)]
    pub target: Option<String>,
    /// Write key of the app to send as (see `strata apps create`).
    #[arg(long, env = "STRATA_WRITE_KEY", required = true)]
    pub write_key: Option<String>,
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
    /// Mean events per active user per simulated day (session length).
    #[arg(long, default_value_t = 40)]
    pub events_per_user: u32,
    /// Stop after this many events even if `--duration` has not passed.
    #[arg(long)]
    pub max_events: Option<u64>,
}

#[derive(Debug, Subcommand)]
pub enum SimCommand {
    /// Score ranked lists against the simulated users' hidden preferences (which never reach
    /// the lake): reads JSON lines `{"user_id": 1, "post_ids": [5, 9, …]}` (optionally
    /// `"at": "2026-12-05T12:00:00Z"`) from FILE or stdin, prints one JSON line per list with
    /// its expected clicks, likes, CTR and its share of the best possible list's clicks, then
    /// the means. The world must be the one the lake was built from (`strata demo`'s seed,
    /// users and days: 7, 2000, 3 by default).
    Score(SimScoreArgs),
    /// Simulated users read a running Strata's feeds (`GET /v1/feed`) and react with their
    /// hidden preferences; what they saw, clicked, liked and dwelt on goes back through the
    /// collector with the feed's `request_id`, spread over one simulated day. Prints per
    /// experiment variant: feeds, impressions, CTR, likes per impression and the expected CTR
    /// under the hidden preferences. The world must be the lake's (same seed, users, days).
    Feed(SimFeedArgs),
    /// How good a feed can be in this world, by what its recommender knows: the expected CTR of
    /// top-N lists built from the true tastes, follows and post quality (the oracle), from the
    /// true tastes with quality estimated from clicks, from the tastes the lake's events show
    /// (the reference warehouse's top-3 tags), and one list for everyone (the best single list,
    /// about the best a popularity feed can reach; and post quality alone). Read a feed's
    /// measured CTR against these.
    Ceiling(SimCeilingArgs),
}

#[derive(Debug, Args)]
pub struct SimCeilingArgs {
    #[command(flatten)]
    pub world: WorldArgs,
    /// When the lists are built and scored, from the events up to then (default: the end of
    /// the simulated window).
    #[arg(long)]
    pub at: Option<chrono::DateTime<chrono::Utc>>,
    /// Users scored, spread evenly over the world.
    #[arg(long, default_value_t = 300)]
    pub sample: usize,
    /// Items per list.
    #[arg(long, default_value_t = 10)]
    pub n: usize,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SimFeedArgs {
    /// Base URL of the collector, and of the feed unless --feed-url is given.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub target: String,
    /// Base URL of the server answering /v1/feed (default: --target).
    #[arg(long)]
    pub feed_url: Option<String>,
    /// Token with the serve scope (`strata tokens create NAME --scope serve`).
    #[arg(long, env = "STRATA_TOKEN")]
    pub token: String,
    /// Write key of the app the reactions are sent as.
    #[arg(long, env = "STRATA_WRITE_KEY")]
    pub write_key: String,
    #[command(flatten)]
    pub world: WorldArgs,
    /// Feed requests (each by a user drawn from the world).
    #[arg(long, default_value_t = 2000)]
    pub sessions: u64,
    /// Items per feed.
    #[arg(long, default_value_t = 10)]
    pub n: usize,
    /// The simulated day the sessions are spread over (default: today, the day after the
    /// world's window; today's sessions fall in its past part, and a later day is refused:
    /// a collector rejects events from the future).
    #[arg(long)]
    pub day: Option<chrono::NaiveDate>,
    /// Concurrent sessions.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// The simulated world a `sim score`, `sim feed` or `sim ceiling` reads: it must be the lake's (`strata
/// demo`'s seed, users, days and start date).
#[derive(Debug, Args)]
pub struct WorldArgs {
    /// Seed of the simulated world.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Simulated users.
    #[arg(long, default_value_t = 2000)]
    pub users: u32,
    /// Simulated days (ending yesterday, UTC, as in `strata demo`).
    #[arg(long, default_value_t = 3)]
    pub days: u32,
    /// Mean events per active user per simulated day.
    #[arg(long, default_value_t = 40)]
    pub events_per_user: u32,
    /// The first simulated day, when the world did not end yesterday.
    #[arg(long)]
    pub start_date: Option<chrono::NaiveDate>,
}

impl WorldArgs {
    /// The world these arguments describe (validated).
    pub fn config(&self) -> anyhow::Result<strata_sim::WorldConfig> {
        let mut config = strata_sim::WorldConfig::ending_today(self.seed, self.users, self.days);
        config.events_per_user = self.events_per_user;
        if let Some(start) = self.start_date {
            config.start_date = start;
        }
        config.validate()?;
        Ok(config)
    }
}

#[derive(Debug, Args)]
pub struct SimScoreArgs {
    #[command(flatten)]
    pub world: WorldArgs,
    /// Lists without `at` are scored at this time (default: the end of the simulated window).
    #[arg(long)]
    pub at: Option<chrono::DateTime<chrono::Utc>>,
    /// JSON-lines file of lists (default: stdin).
    pub file: Option<PathBuf>,
    /// Print only the means.
    #[arg(long)]
    pub summary: bool,
}

/// How `strata load` lands rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LoadModeArg {
    /// Add the rows to the table.
    Append,
    /// Replace the table's rows (or, with --partition, one partition's).
    Overwrite,
    /// Upsert by --key: the latest change per key wins (with --op-column, D deletes).
    Merge,
}

/// A file format `strata load` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LoadFormatArg {
    Parquet,
    Csv,
    /// Newline-delimited JSON (one object per line).
    Json,
}

#[derive(Debug, Args)]
pub struct LoadArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// The table, `NAMESPACE.TABLE` (a bare name is in `ods`).
    pub table: String,
    /// Files, directories (read recursively, in path order with DMS `LOAD*` files first) or
    /// `s3://bucket/prefix/` (the lake's S3 settings and the AWS_* variables reach it).
    #[arg(required = true)]
    pub sources: Vec<String>,
    /// The files' format (default: each file's extension).
    #[arg(long, value_enum)]
    pub format: Option<LoadFormatArg>,
    /// append, overwrite or merge.
    #[arg(long, value_enum, default_value = "append")]
    pub mode: LoadModeArg,
    /// Merge: the key columns, comma-separated (`id` or `tenant,id`).
    #[arg(long, value_delimiter = ',')]
    pub key: Vec<String>,
    /// Merge: the column saying what each row is — I (insert), U (update), D (delete), as AWS
    /// DMS writes it (`Op`). It is not stored. Files without it hold inserts.
    #[arg(long)]
    pub op_column: Option<String>,
    /// Merge: the column that orders a key's changes (latest wins; then file and row order).
    #[arg(long)]
    pub order_by: Option<String>,
    /// Overwrite only this identity partition, `COLUMN=VALUE` (e.g. `dt=2026-12-07`); every
    /// row must belong to it.
    #[arg(long)]
    pub partition: Option<String>,
    /// Partitioning of a table the load creates, e.g. `dt` or `day(ts)`.
    #[arg(long)]
    pub partition_by: Option<String>,
    /// CSV field delimiter (files have a header row).
    #[arg(long, default_value_t = ',')]
    pub delimiter: char,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum SchemasCommand {
    /// Subjects with their latest version, compatibility level and violation action.
    List {
        #[command(flatten)]
        config: ConfigArg,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// A subject's schema (the latest version, or --version N).
    Show {
        /// The subject: a track event's name (`"Post Clicked"`) or a call type (`identify`).
        subject: String,
        /// A version number or `latest`.
        #[arg(long)]
        version: Option<String>,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Register FILE (a JSON Schema) as SUBJECT's next version, checked against its
    /// compatibility level; or, with --project, every file under <project>/schemas.
    Register {
        /// The subject.
        subject: Option<String>,
        /// The schema file.
        file: Option<std::path::PathBuf>,
        /// Register every schema file of the warehouse project, in version order.
        #[arg(long)]
        project: bool,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Whether FILE could be registered as SUBJECT's next version (nothing is registered;
    /// exit code 1 when not compatible).
    Check {
        /// The subject.
        subject: String,
        /// The schema file.
        file: std::path::PathBuf,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Show or set a compatibility level: global, or a subject's.
    Config {
        /// The subject (none: the global level).
        subject: Option<String>,
        /// NONE, BACKWARD, FORWARD, FULL, or BACKWARD_TRANSITIVE, FORWARD_TRANSITIVE,
        /// FULL_TRANSITIVE.
        #[arg(long)]
        set: Option<String>,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Propose a schema per event type from the events in ods.ods_event: each property's
    /// types, required when present in at least 99 % of events, examples.
    Infer {
        #[command(flatten)]
        config: ConfigArg,
        /// How many days back to read (by `dt`).
        #[arg(long, default_value_t = 7)]
        days: u32,
        /// Only this subject (a track event name or a call type).
        #[arg(long)]
        event: Option<String>,
        /// Read at most this many events.
        #[arg(long, default_value_t = 200_000)]
        limit: usize,
        /// Write each proposal to <project>/schemas/<subject>.json (existing files are kept).
        #[arg(long)]
        write: bool,
    },
    /// Warehouse models with the registered properties as typed columns, one per subject
    /// (`dwd_evt_<subject>`, incremental by dt). Printed, or written with --write.
    Views {
        #[command(flatten)]
        config: ConfigArg,
        /// Write them to <project>/dwd/ (replacing earlier generated files).
        #[arg(long)]
        write: bool,
    },
}
