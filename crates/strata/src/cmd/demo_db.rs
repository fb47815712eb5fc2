//! `strata demo --mysql URL` / `--postgres URL`: the simulated app's business tables live in a
//! real database. The demo creates them there (from the same table definitions the built-in
//! path uses, [`super::demo::sim_db::sim_schema`]), replays the world's change log into them as SQL
//! inserts, updates and deletes in commit order, and adds a `[[sources]]` entry to
//! `DIR/strata.toml`, so the real connector (snapshot, then binlog or logical replication)
//! carries the rows into the same `ods.ods_<table>` tables.

use std::path::Path;

use anyhow::{bail, Context, Result};
use mysql_async::prelude::Queryable;
use strata_cdc::config::SourceKind;
use strata_core::cdc::{ColumnType, Row as CdcRow, TableSchema, Value};
use strata_core::redact::redact_url;
use strata_sim::{Op, Table};

/// The demo's `[[sources]]` name: topics `cdc.app.<table>`.
pub const SOURCE: &str = "app";

/// Changes per source transaction while the change log is replayed.
const TX_CHANGES: usize = 500;
/// Rows per multi-row INSERT.
const INSERT_ROWS: usize = 200;

/// A connection to the demo's database.
pub enum Database {
    Mysql(mysql_async::Conn),
    Postgres(tokio_postgres::Client),
}

impl Database {
    pub async fn connect(kind: SourceKind, url: &str) -> Result<Database> {
        let shown = redact_url(url);
        Ok(match kind {
            SourceKind::Mysql => {
                let opts = mysql_async::Opts::from_url(url)
                    .with_context(|| format!("bad --mysql URL {shown}"))?;
                if opts.db_name().unwrap_or_default().is_empty() {
                    bail!(
                        "--mysql {shown}: the URL names no database (mysql://user:pw@host:port/DB)"
                    );
                }
                let opts: mysql_async::Opts = mysql_async::OptsBuilder::from_opts(opts)
                    .prefer_socket(false)
                    .init(vec!["SET time_zone = '+00:00'", "SET NAMES utf8mb4"])
                    .into();
                let conn = mysql_async::Conn::new(opts)
                    .await
                    .with_context(|| format!("connecting to {shown}"))?;
                Database::Mysql(conn)
            }
            SourceKind::Postgres => {
                let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
                    .await
                    .with_context(|| format!("connecting to {shown}"))?;
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::warn!(error = %e, "demo database connection ended");
                    }
                });
                client.batch_execute("SET TIME ZONE 'UTC'").await?;
                Database::Postgres(client)
            }
            SourceKind::Elasticsearch => {
                bail!("the demo's business database is MySQL/MariaDB or PostgreSQL")
            }
            SourceKind::Mongodb => {
                bail!("the demo's business database is MySQL/MariaDB or PostgreSQL")
            }
        })
    }

    fn kind(&self) -> SourceKind {
        match self {
            Database::Mysql(_) => SourceKind::Mysql,
            Database::Postgres(_) => SourceKind::Postgres,
        }
    }

    /// Runs statements in one transaction.
    async fn transaction(&mut self, statements: &[String]) -> Result<()> {
        match self {
            Database::Mysql(c) => {
                c.query_drop("START TRANSACTION").await?;
                for s in statements {
                    c.query_drop(s)
                        .await
                        .with_context(|| s.chars().take(200).collect::<String>())?;
                }
                c.query_drop("COMMIT").await?;
            }
            Database::Postgres(c) => {
                let mut script = String::from("BEGIN;");
                for s in statements {
                    script.push_str(s);
                    script.push(';');
                }
                script.push_str("COMMIT;");
                c.batch_execute(&script).await?;
            }
        }
        Ok(())
    }

    pub async fn count(&mut self, table: &str) -> Result<u64> {
        let q = format!("SELECT count(*) FROM {}", self.ident(table));
        Ok(match self {
            Database::Mysql(c) => c.query_first::<u64, _>(q).await?.unwrap_or(0),
            Database::Postgres(c) => c.query_one(&q, &[]).await?.get::<_, i64>(0) as u64,
        })
    }

    /// Which of the demo's tables already exist in the database.
    pub async fn existing_tables(&mut self) -> Result<Vec<String>> {
        let names: Vec<String> = Table::ALL.iter().map(|t| t.name().to_string()).collect();
        Ok(match self {
            Database::Mysql(c) => {
                let found: Vec<String> = c
                    .query(
                        "SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE()",
                    )
                    .await?;
                found.into_iter().filter(|t| names.contains(t)).collect()
            }
            Database::Postgres(c) => c
                .query(
                    "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public'",
                    &[],
                )
                .await?
                .iter()
                .map(|r| r.get::<_, String>(0))
                .filter(|t| names.contains(t))
                .collect(),
        })
    }

    fn ident(&self, name: &str) -> String {
        match self {
            Database::Mysql(_) => format!("`{name}`"),
            Database::Postgres(_) => format!("\"{name}\""),
        }
    }

    /// `CREATE TABLE` for a simulated table: BIGINT ids, INT counters, DATETIME(6) /
    /// TIMESTAMP(6) times (no time zone, like the built-in path), VARCHAR(255) text.
    pub fn create_table_sql(&self, schema: &TableSchema) -> String {
        let cols: Vec<String> = schema
            .columns
            .iter()
            .map(|c| {
                let ty = match (c.kind, self) {
                    (ColumnType::Long, _) => "BIGINT",
                    (ColumnType::Int, _) => "INT",
                    (ColumnType::DateTime, Database::Mysql(_)) => "DATETIME(6)",
                    (ColumnType::DateTime, Database::Postgres(_)) => "TIMESTAMP(6)",
                    _ => "VARCHAR(255)",
                };
                let null = if c.nullable { "" } else { " NOT NULL" };
                format!("{} {ty}{null}", self.ident(&c.name))
            })
            .collect();
        let key: Vec<String> = schema.primary_key.iter().map(|k| self.ident(k)).collect();
        let charset = match self {
            Database::Mysql(_) => " CHARACTER SET utf8mb4",
            Database::Postgres(_) => "",
        };
        format!(
            "CREATE TABLE {} ({}, PRIMARY KEY ({})){charset}",
            self.ident(&schema.table),
            cols.join(", "),
            key.join(", ")
        )
    }

    pub async fn create_tables(&mut self, schemas: &[TableSchema]) -> Result<()> {
        let ddl: Vec<String> = schemas.iter().map(|s| self.create_table_sql(s)).collect();
        for s in ddl {
            match self {
                Database::Mysql(c) => c.query_drop(&s).await?,
                Database::Postgres(c) => c.batch_execute(&s).await?,
            }
        }
        Ok(())
    }

    fn literal(&self, v: &Value) -> Result<String> {
        Ok(match v {
            Value::Null => "NULL".to_string(),
            Value::Int(i) => i.to_string(),
            Value::Str(s) => {
                let mut out = String::with_capacity(s.len() + 2);
                out.push('\'');
                for ch in s.chars() {
                    match ch {
                        '\'' => out.push_str("''"),
                        // MySQL treats backslash as an escape in string literals.
                        '\\' if self.kind() == SourceKind::Mysql => out.push_str("\\\\"),
                        c => out.push(c),
                    }
                }
                out.push('\'');
                out
            }
            Value::DateTime(us) => {
                let t = chrono::DateTime::from_timestamp_micros(*us)
                    .with_context(|| format!("time {us} out of range"))?;
                format!("'{}'", t.format("%Y-%m-%d %H:%M:%S%.6f"))
            }
            other => bail!("the demo has no SQL literal for {other:?}"),
        })
    }

    fn values(&self, schema: &TableSchema, row: &CdcRow) -> Result<String> {
        let vals: Result<Vec<String>> = schema
            .columns
            .iter()
            .map(|c| self.literal(row.get(&c.name).unwrap_or(&Value::Null)))
            .collect();
        Ok(format!("({})", vals?.join(", ")))
    }

    fn where_key(&self, schema: &TableSchema, row: &CdcRow) -> Result<String> {
        let parts: Result<Vec<String>> = schema
            .primary_key
            .iter()
            .map(|k| {
                Ok(format!(
                    "{} = {}",
                    self.ident(k),
                    self.literal(row.get(k).unwrap_or(&Value::Null))?
                ))
            })
            .collect();
        Ok(parts?.join(" AND "))
    }
}

/// One change of the world's log as the image the built-in path would send.
pub struct RowChange {
    pub table: Table,
    pub op: Op,
    pub before: Option<CdcRow>,
    pub after: Option<CdcRow>,
}

/// Replays `changes` (commit order) into the database, [`TX_CHANGES`] per transaction,
/// consecutive inserts into one table as one multi-row INSERT. `progress(done)` after each
/// transaction.
pub async fn replay(
    db: &mut Database,
    schemas: &[(Table, TableSchema)],
    changes: &[RowChange],
    mut progress: impl FnMut(u64),
) -> Result<()> {
    let schema_of = |t: Table| -> Result<&TableSchema> {
        schemas
            .iter()
            .find(|(x, _)| *x == t)
            .map(|(_, s)| s)
            .with_context(|| format!("the demo has no schema for table {}", t.name()))
    };
    let mut done = 0u64;
    for chunk in changes.chunks(TX_CHANGES) {
        let mut statements = Vec::new();
        let mut insert: Option<(Table, Vec<String>)> = None;
        for c in chunk {
            let schema = schema_of(c.table)?;
            let name = db.ident(&schema.table);
            if c.op != Op::Insert || insert.as_ref().is_some_and(|(t, _)| *t != c.table) {
                if let Some((t, rows)) = insert.take() {
                    statements.push(insert_sql(db, schema_of(t)?, &rows));
                }
            }
            match (c.op, &c.before, &c.after) {
                (Op::Insert, _, Some(after)) => {
                    let v = db.values(schema, after)?;
                    let (_, rows) = insert.get_or_insert_with(|| (c.table, Vec::new()));
                    rows.push(v);
                    if let Some((_, rows)) = insert.take_if(|(_, rows)| rows.len() >= INSERT_ROWS) {
                        statements.push(insert_sql(db, schema, &rows));
                    }
                }
                (Op::Update, Some(before), Some(after)) => {
                    let sets: Result<Vec<String>> = schema
                        .columns
                        .iter()
                        .filter(|col| !schema.primary_key.contains(&col.name))
                        .map(|col| {
                            Ok(format!(
                                "{} = {}",
                                db.ident(&col.name),
                                db.literal(after.get(&col.name).unwrap_or(&Value::Null))?
                            ))
                        })
                        .collect();
                    statements.push(format!(
                        "UPDATE {name} SET {} WHERE {}",
                        sets?.join(", "),
                        db.where_key(schema, before)?
                    ));
                }
                (Op::Delete, Some(before), _) => statements.push(format!(
                    "DELETE FROM {name} WHERE {}",
                    db.where_key(schema, before)?
                )),
                _ => bail!("a {:?} change of {} without its image", c.op, schema.table),
            }
        }
        if let Some((t, rows)) = insert.take() {
            statements.push(insert_sql(db, schema_of(t)?, &rows));
        }
        db.transaction(&statements).await?;
        done += chunk.len() as u64;
        progress(done);
    }
    Ok(())
}

fn insert_sql(db: &Database, schema: &TableSchema, rows: &[String]) -> String {
    let cols: Vec<String> = schema.columns.iter().map(|c| db.ident(&c.name)).collect();
    format!(
        "INSERT INTO {} ({}) VALUES {}",
        db.ident(&schema.table),
        cols.join(", "),
        rows.join(", ")
    )
}

/// The `[[sources]]` entry the demo adds to strata.toml.
pub fn source_toml(kind: SourceKind, url: &str) -> String {
    let kind = kind.as_str();
    let tables: Vec<String> = Table::ALL
        .iter()
        .map(|t| format!("\"{}\"", t.name()))
        .collect();
    format!(
        "\n# Added by `strata demo --{}`: the simulated app's business tables.\n[[sources]]\nname = \"{SOURCE}\"\nkind = \"{kind}\"\nurl = \"{url}\"\ntables = [{}]\ncommit_interval = \"1s\"\n",
        if kind == "mysql" { "mysql" } else { "postgres" },
        tables.join(", ")
    )
}

/// Whether strata.toml has the demo's source already (an earlier demo run) — and with which
/// URL.
pub fn configured_url(config: &crate::config::Config) -> Option<&str> {
    config
        .sources
        .iter()
        .find(|s| s.name == SOURCE)
        .map(|s| s.url.as_str())
}

/// Appends the source entry to the file.
pub fn add_source(config_path: &Path, kind: SourceKind, url: &str) -> Result<()> {
    let mut text = std::fs::read_to_string(config_path)?;
    text.push_str(&source_toml(kind, url));
    std::fs::write(config_path, text)
        .with_context(|| format!("writing {}", config_path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_entry_parses_as_config() {
        let dir = tempfile_dir();
        let path = dir.join("strata.toml");
        std::fs::write(&path, "").unwrap();
        add_source(
            &path,
            SourceKind::Postgres,
            "postgres://u:p@127.0.0.1:1/app",
        )
        .unwrap();
        let c = crate::config::Config::load(&path).unwrap();
        assert_eq!(c.sources.len(), 1);
        assert_eq!(c.sources[0].kind(), SourceKind::Postgres);
        assert_eq!(c.sources[0].tables.len(), 6);
        assert_eq!(configured_url(&c), Some("postgres://u:p@127.0.0.1:1/app"));
        std::fs::remove_dir_all(dir).unwrap();
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("strata-demo-db-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
