//! [`Lake`]: the Iceberg catalog (the embedded SQL catalog in SQLite, or a REST catalog) and
//! the ODS tables.
//!
//! The catalog is `iceberg-catalog-sql` over sqlx's SQLite driver: the same `iceberg_tables` /
//! `iceberg_namespace_properties` schema pyiceberg's `SqlCatalog` and Spark's JDBC catalog use,
//! so those engines open the same file. The database is switched to WAL journal mode on open
//! (persistent in the file) so `strata sql` can read while `strata serve` commits; sqlx's
//! connections wait up to 5 s on a locked database, and opening retries with backoff.
//!
//! With `[catalog] kind = "rest"` the pointers live in an external Iceberg REST catalog
//! ([`crate::catalog_client`]) and commits go to it as requirements + updates; table files are
//! still read and written through the same storage (ADR 0018).

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use datafusion::execution::memory_pool::{FairSpillPool, TrackConsumersPool};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use iceberg::io::{LocalFsStorageFactory, StorageFactory};
use iceberg::table::Table;
use iceberg::transaction::{ApplyTransactionAction, Transaction};
use iceberg::{Catalog, CatalogBuilder, NamespaceIdent, TableCreation, TableIdent};
use iceberg_catalog_sql::{SqlBindStyle, SqlCatalogBuilder};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use sqlx::{ConnectOptions, Connection};

use crate::catalog_client::RestCatalog;
use crate::config::{CatalogKind, LakeOptions};
use crate::error::{Error, Result};
use crate::retry::Backoff;
use crate::s3::{S3Storage, S3StorageFactory};
use crate::schema::{ods_namespace, table_properties, OdsTable};

/// The lake: an Iceberg catalog (SQLite, or REST) and a warehouse of table files (a local
/// directory, or a bucket prefix on S3).
#[derive(Clone)]
pub struct Lake {
    catalog: Arc<dyn Catalog>,
    catalog_name: String,
    /// Local directory, or `s3://bucket/prefix`.
    warehouse: String,
    /// Set when the warehouse is on S3.
    s3: Option<S3Storage>,
    /// Where the sink's lock file goes: the warehouse directory, or beside the catalog on S3.
    lock_dir: PathBuf,
    /// How a commit moves a table's pointer.
    pointers: Pointers,
    /// Memory pool and spill files shared by every SQL session of the process.
    runtime: Arc<RuntimeEnv>,
    /// Reads and writes files under the warehouse (local or S3), outside any table.
    factory: Arc<dyn StorageFactory>,
}

/// Where table pointers are swapped.
#[derive(Clone)]
enum Pointers {
    /// Our own connection to the SQLite catalog, for the metadata compare-and-swap.
    Sql(SqlitePool),
    /// The REST catalog the lake's `catalog` is: commits are requirements + updates.
    Rest(Arc<RestCatalog>),
}

impl std::fmt::Debug for Lake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lake")
            .field("catalog_name", &self.catalog_name)
            .field("warehouse", &self.warehouse)
            .finish()
    }
}

impl Lake {
    /// Creates dirs, opens/creates the SQLite Iceberg SQL catalog and creates namespace `ods`
    /// and tables `ods.ods_event`, `ods.ods_event_rejected` if missing.
    ///
    /// On S3 the bucket is probed first: an unreachable endpoint, a missing bucket or refused
    /// credentials fail here with an error naming the endpoint and bucket.
    pub async fn open(config: &LakeOptions) -> Result<Lake> {
        let catalog_path = config.catalog_path();
        if let Some(parent) = catalog_path.parent() {
            if !parent.as_os_str().is_empty() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| Error::io(format!("creating {}", parent.display()), e))?;
            }
        }
        let storage = match config
            .lake_s3()
            .map_err(|e| Error::Invalid(e.to_string()))?
        {
            Some(settings) => {
                let s3 = S3Storage::new(settings)
                    .map_err(|e| Error::iceberg("configuring the S3 lake", e))?;
                s3.probe()
                    .await
                    .map_err(|e| Error::iceberg("opening the S3 lake", e))?;
                let lock_dir = match catalog_path.parent() {
                    Some(p) if !p.as_os_str().is_empty() => absolute_dir(p)?,
                    _ => absolute_dir(Path::new("."))?,
                };
                Storage {
                    warehouse: s3.settings().location(),
                    factory: Arc::new(S3StorageFactory::new(s3.clone())),
                    s3: Some(s3),
                    lock_dir,
                }
            }
            None => {
                let dir = absolute_dir(&config.warehouse_dir())?;
                Storage {
                    warehouse: dir.to_string_lossy().to_string(),
                    factory: Arc::new(LocalFsStorageFactory),
                    s3: None,
                    lock_dir: dir,
                }
            }
        };
        let runtime = query_runtime(config)?;
        let mut backoff = Backoff::new(8);
        loop {
            let opened = match config.catalog.kind {
                CatalogKind::Sql => {
                    Self::try_open(
                        &catalog_path,
                        &storage,
                        &config.lake.catalog_name,
                        runtime.clone(),
                    )
                    .await
                }
                CatalogKind::Rest => Self::try_open_rest(config, &storage, runtime.clone()).await,
            };
            match opened {
                Ok(lake) => return Ok(lake),
                Err(e) if e.retryable() && backoff.can_retry() => {
                    let catalog = match config.catalog.kind {
                        CatalogKind::Sql => catalog_path.display().to_string(),
                        CatalogKind::Rest => config.catalog.uri.clone(),
                    };
                    tracing::warn!(error = %e, %catalog, "opening lake failed, retrying");
                    backoff.wait().await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn try_open(
        catalog_path: &Path,
        storage: &Storage,
        catalog_name: &str,
        runtime: Arc<RuntimeEnv>,
    ) -> Result<Lake> {
        prepare_sqlite(catalog_path).await?;
        let uri = format!("sqlite:{}", catalog_path.display());
        let catalog = SqlCatalogBuilder::default()
            .uri(uri)
            .warehouse_location(storage.warehouse.clone())
            .sql_bind_style(SqlBindStyle::QMark)
            .with_storage_factory(storage.factory.clone())
            .load(catalog_name, Default::default())
            .await
            .map_err(|e| Error::iceberg("opening the sql catalog", e))?;
        let catalog: Arc<dyn Catalog> = Arc::new(catalog);
        let pool = SqlitePoolOptions::new()
            .max_connections(2)
            .connect_with(sqlite_options(catalog_path)?)
            .await
            .map_err(|e| Error::io(format!("opening catalog {}", catalog_path.display()), e))?;
        let lake = Lake {
            catalog,
            catalog_name: catalog_name.to_string(),
            warehouse: storage.warehouse.clone(),
            s3: storage.s3.clone(),
            lock_dir: storage.lock_dir.clone(),
            pointers: Pointers::Sql(pool),
            runtime,
            factory: storage.factory.clone(),
        };
        lake.ensure_tables().await?;
        Ok(lake)
    }

    /// The lake on a REST catalog: `GET /v1/config`, then the ODS tables created there if
    /// missing. The sink's lock goes in the data directory (the warehouse may be another
    /// Strata's); a second sink elsewhere is fenced by the table positions instead.
    async fn try_open_rest(
        config: &LakeOptions,
        storage: &Storage,
        runtime: Arc<RuntimeEnv>,
    ) -> Result<Lake> {
        let file_io = iceberg::io::FileIOBuilder::new(storage.factory.clone()).build();
        let rest = RestCatalog::connect(&config.catalog, file_io)
            .await
            .map_err(|e| Error::iceberg("opening the REST catalog", e))?;
        let rest = Arc::new(rest);
        let lock_dir = absolute_dir(&config.data_dir)?;
        let lake = Lake {
            catalog: rest.clone(),
            catalog_name: config.lake.catalog_name.clone(),
            warehouse: storage.warehouse.clone(),
            s3: storage.s3.clone(),
            lock_dir,
            pointers: Pointers::Rest(rest),
            runtime,
            factory: storage.factory.clone(),
        };
        lake.ensure_tables().await?;
        Ok(lake)
    }

    /// The REST catalog when the lake is on one (commits go to it as updates).
    pub fn rest(&self) -> Option<&RestCatalog> {
        match &self.pointers {
            Pointers::Rest(rest) => Some(rest),
            Pointers::Sql(_) => None,
        }
    }

    /// Whether the catalog is the embedded SQL one (what the REST catalog server serves).
    pub fn is_embedded_catalog(&self) -> bool {
        matches!(self.pointers, Pointers::Sql(_))
    }

    /// The query runtime: one memory pool and spill directory for every SQL session.
    pub fn runtime(&self) -> Arc<RuntimeEnv> {
        self.runtime.clone()
    }

    async fn ensure_tables(&self) -> Result<()> {
        let ns = ods_namespace();
        if ensure_namespace(self.catalog.as_ref(), &ns).await? {
            tracing::info!(namespace = "ods", "created namespace");
        }
        for table in OdsTable::ALL {
            let ident = table.ident();
            let exists = self
                .catalog
                .table_exists(&ident)
                .await
                .map_err(|e| Error::iceberg(format!("checking table {ident}"), e))?;
            if exists {
                self.ensure_properties(&ident).await?;
                continue;
            }
            let creation = TableCreation::builder()
                .name(table.name().to_string())
                .schema(table.schema()?)
                .partition_spec(table.partition_spec()?)
                .properties(table_properties())
                .build();
            match self.catalog.create_table(&ns, creation).await {
                Ok(_) => tracing::info!(table = %ident, "created table"),
                Err(e) if e.kind() == iceberg::ErrorKind::TableAlreadyExists => {}
                Err(e) => return Err(Error::iceberg(format!("creating table {ident}"), e)),
            }
        }
        Ok(())
    }

    /// Adds table properties a table created by an older Strata lacks (never overwrites).
    async fn ensure_properties(&self, ident: &iceberg::TableIdent) -> Result<()> {
        let table = self
            .catalog
            .load_table(ident)
            .await
            .map_err(|e| Error::iceberg(format!("loading {ident}"), e))?;
        let current = table.metadata().properties();
        let missing: Vec<(String, String)> = table_properties()
            .into_iter()
            .filter(|(k, _)| !current.contains_key(k))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let tx = Transaction::new(&table);
        let mut action = tx.update_table_properties();
        for (k, v) in missing {
            action = action.set(k, v);
        }
        let tx = action
            .apply(tx)
            .map_err(|e| Error::iceberg(format!("updating properties of {ident}"), e))?;
        tx.commit(self.catalog.as_ref())
            .await
            .map_err(|e| Error::iceberg(format!("updating properties of {ident}"), e))?;
        tracing::info!(table = %ident, "added missing table properties");
        Ok(())
    }

    pub fn catalog(&self) -> Arc<dyn Catalog> {
        self.catalog.clone()
    }

    /// The catalog's name (`lake.catalog_name`), also the SQL catalog name in `strata sql`.
    pub fn catalog_name(&self) -> &str {
        &self.catalog_name
    }

    /// Loads a table, retrying transient catalog errors; a missing table or namespace is
    /// [`Error::NotFound`].
    pub async fn load_table(&self, ident: &TableIdent) -> Result<Table> {
        let mut backoff = Backoff::new(5);
        loop {
            match self.catalog.load_table(ident).await {
                Ok(t) => return Ok(t),
                Err(e)
                    if matches!(
                        e.kind(),
                        iceberg::ErrorKind::TableNotFound | iceberg::ErrorKind::NamespaceNotFound
                    ) =>
                {
                    return Err(Error::NotFound(format!("table {ident}")))
                }
                Err(e) if backoff.can_retry() => {
                    tracing::warn!(table = %ident, error = %e, "loading table failed, retrying");
                    backoff.wait().await;
                }
                Err(e) => return Err(Error::iceberg(format!("loading {ident}"), e)),
            }
        }
    }

    /// The catalog's compare-and-swap: points `ident` at `next` if it still points at
    /// `expected`. `false` when another writer moved it.
    pub async fn swap_pointer(
        &self,
        ident: &TableIdent,
        expected: &str,
        next: &str,
    ) -> Result<bool> {
        let result = self
            .swap_query(ident, expected, next)
            .execute(self.pool()?)
            .await
            .map_err(|e| Error::io(format!("committing {ident} to the catalog"), e))?;
        Ok(result.rows_affected() == 1)
    }

    /// The compare-and-swap of one table's metadata pointer: moves it from `expected` to
    /// `next`, or changes no row when another writer moved it first.
    fn swap_query<'q>(
        &'q self,
        ident: &TableIdent,
        expected: &'q str,
        next: &'q str,
    ) -> sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>> {
        sqlx::query(
            "UPDATE iceberg_tables SET metadata_location = ?, previous_metadata_location = ? \
             WHERE catalog_name = ? AND table_namespace = ? AND table_name = ? \
             AND (iceberg_type = 'TABLE' OR iceberg_type IS NULL) AND metadata_location = ?",
        )
        .bind(next)
        .bind(expected)
        .bind(&self.catalog_name)
        .bind(ident.namespace().join("."))
        .bind(ident.name().to_string())
        .bind(expected)
    }

    /// Several [`Lake::swap_pointer`]s in one SQLite transaction: all tables move, or none
    /// (`false`: some table no longer points at its expected file). For the REST catalog's
    /// multi-table commits.
    pub async fn swap_pointers(&self, swaps: &[(TableIdent, String, String)]) -> Result<bool> {
        let io = |e: sqlx::Error| Error::io("committing a multi-table transaction", e);
        let mut tx = self.pool()?.begin().await.map_err(io)?;
        for (ident, expected, next) in swaps {
            let result = self
                .swap_query(ident, expected, next)
                .execute(&mut *tx)
                .await
                .map_err(io)?;
            if result.rows_affected() != 1 {
                tx.rollback().await.map_err(io)?;
                return Ok(false);
            }
        }
        tx.commit().await.map_err(io)?;
        Ok(true)
    }

    /// Our connection pool to the catalog database (the REST catalog's namespace property
    /// removals; everything else goes through [`Lake::catalog`] or [`Lake::swap_pointer`]).
    /// Only the embedded catalog has one.
    pub fn pool(&self) -> Result<&SqlitePool> {
        match &self.pointers {
            Pointers::Sql(pool) => Ok(pool),
            Pointers::Rest(_) => Err(Error::Internal(
                "the lake is on a REST catalog: there is no SQLite catalog to swap pointers in"
                    .to_string(),
            )),
        }
    }

    /// The warehouse location: an absolute directory, or `s3://bucket/prefix`.
    pub fn warehouse(&self) -> &str {
        &self.warehouse
    }

    /// The S3 storage when the lake is on S3 (for listing, which iceberg's `FileIO` lacks).
    pub fn s3(&self) -> Option<&S3Storage> {
        self.s3.as_ref()
    }

    /// A `FileIO` for files under the warehouse that belong to no table (model artifacts):
    /// paths are absolute (`<warehouse>/…`), local or `s3://`.
    pub fn file_io(&self) -> iceberg::io::FileIO {
        iceberg::io::FileIOBuilder::new(self.factory.clone()).build()
    }

    /// A local directory for the lake's lock files.
    pub fn lock_dir(&self) -> &Path {
        &self.lock_dir
    }
}

/// Where the catalog's `FileIO` puts table files.
struct Storage {
    warehouse: String,
    factory: Arc<dyn StorageFactory>,
    s3: Option<S3Storage>,
    lock_dir: PathBuf,
}

fn absolute_dir(dir: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    std::fs::canonicalize(dir).map_err(|e| Error::io(format!("resolving {}", dir.display()), e))
}

/// Creates the SQLite file if missing and switches it to WAL (persistent), so readers and the
/// committing sink do not block each other.
fn sqlite_options(path: &Path) -> Result<SqliteConnectOptions> {
    let url = format!("sqlite:{}", path.display());
    Ok(SqliteConnectOptions::from_str(&url)
        .map_err(|e| Error::io(format!("catalog path {}", path.display()), e))?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .busy_timeout(Duration::from_secs(30)))
}

async fn prepare_sqlite(path: &Path) -> Result<()> {
    let options = sqlite_options(path)?;
    let conn = options
        .connect()
        .await
        .map_err(|e| Error::io(format!("opening catalog {}", path.display()), e))?;
    conn.close()
        .await
        .map_err(|e| Error::io(format!("closing catalog {}", path.display()), e))?;
    Ok(())
}

/// A fair spill pool of `lake.query_memory_limit` (operators that can spill share it evenly;
/// the error names the largest consumers when a query still does not fit) and spill files under
/// `lake.spill_dir`.
fn query_runtime(config: &LakeOptions) -> Result<Arc<RuntimeEnv>> {
    let spill = config.spill_dir();
    std::fs::create_dir_all(&spill)
        .map_err(|e| Error::io(format!("creating spill dir {}", spill.display()), e))?;
    let limit = usize::try_from(config.query_memory_bytes()).unwrap_or(usize::MAX);
    let pool = TrackConsumersPool::new(
        FairSpillPool::new(limit),
        std::num::NonZeroUsize::new(5).unwrap_or(std::num::NonZeroUsize::MIN),
    );
    RuntimeEnvBuilder::new()
        .with_memory_pool(Arc::new(pool))
        .with_temp_file_path(spill)
        .build_arc()
        .map_err(Error::datafusion)
}

/// Creates namespace `ns` unless it exists; true when this call created it. Two creators racing
/// both succeed: a failed create is a success when the namespace exists afterwards (the SQL
/// catalog reports the loser of a race as a constraint violation, not "already exists").
pub async fn ensure_namespace(catalog: &dyn Catalog, ns: &NamespaceIdent) -> Result<bool> {
    let what = || format!("creating namespace {}", ns.join("."));
    if catalog
        .namespace_exists(ns)
        .await
        .map_err(|e| Error::iceberg(format!("checking namespace {}", ns.join(".")), e))?
    {
        return Ok(false);
    }
    match catalog.create_namespace(ns, Default::default()).await {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == iceberg::ErrorKind::NamespaceAlreadyExists => Ok(false),
        Err(e) => match catalog.namespace_exists(ns).await {
            Ok(true) => Ok(false),
            _ => Err(Error::iceberg(what(), e)),
        },
    }
}
