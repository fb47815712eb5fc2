//! `strata sql`: DataFusion over the Iceberg catalog, with time travel.
//!
//! # Tables
//!
//! Every table of the catalog is visible as `<namespace>.<table>`, e.g. `ods.ods_event`, or
//! fully qualified as `<catalog>.<namespace>.<table>` (`strata.ods.ods_event` with the default
//! `lake.catalog_name`). The default schema is `ods`, so `ods_event` alone works too. Joins,
//! window functions, `QUALIFY`, CTEs, `SHOW TABLES` and `information_schema` work as in
//! DataFusion. Several statements separated by `;` run in order; the last one's rows are
//! returned. `CREATE VIEW` makes a view of this session only.
//!
//! JSON text columns (`properties`, `traits`, `context`) are read with `json_get_str(col,
//! 'key')`, `json_get_int`, `json_get_float` and `json_get_bool` (dotted paths work:
//! `'device.model'`). `key_hash(a, b, …)` is a 64-bit hash of its arguments (equal values hash
//! equal; distinct ones may collide), for a cheap first pass over duplicate keys.
//!
//! `point_in_time(label, label_ts, features, keys, feature_ts[, ttl[, prefix]])` joins a
//! feature table onto a label table point-in-time correctly (see [`point_in_time`]).
//!
//! # Changing the lake
//!
//! `CREATE NAMESPACE|SCHEMA`, `DROP NAMESPACE|SCHEMA`, `CREATE [OR REPLACE] TABLE … [PARTITIONED
//! BY (col, day(ts), hour(ts), month(ts), year(ts), bucket(n, col), truncate(w, col))]
//! [TBLPROPERTIES (…)] [AS SELECT …]`, `DROP TABLE … [PURGE]`, `ALTER TABLE … ADD | DROP |
//! RENAME COLUMN, ALTER COLUMN … TYPE (widening), SET TBLPROPERTIES`, `INSERT INTO`,
//! `INSERT OVERWRITE` (dynamic: replaces the partitions the query writes), `DELETE`, `UPDATE`
//! and `MERGE INTO … USING … ON … WHEN [NOT] MATCHED [AND …] THEN UPDATE SET … | UPDATE SET * |
//! DELETE | INSERT … | INSERT *` and `COPY … FROM 'path' (FORMAT parquet|csv|json, MODE
//! append|overwrite|merge, …)` (a file load, [`strata_table::load`]) create Iceberg tables and
//! commit snapshots (see
//! `statements.rs` and [`strata_table::table`]). They return one row saying what they did.
//!
//! Each table reference reads the table's latest snapshot when its scan starts, so while
//! `strata serve` commits, two references to one table in a single query may see different
//! snapshots; pin them with `VERSION AS OF` when that matters.
//!
//! # Time travel
//!
//! Any table reference may carry one of:
//!
//! ```sql
//! SELECT count(*) FROM ods.ods_event VERSION AS OF 4242424242;                       -- snapshot id
//! SELECT count(*) FROM ods.ods_event TIMESTAMP AS OF '2026-11-22 10:00:00';          -- UTC
//! SELECT count(*) FROM ods.ods_event FOR SYSTEM_TIME AS OF '2026-11-22T10:00:00+01:00';
//! SELECT count(*) FROM ods.ods_event TIMESTAMP AS OF now() - INTERVAL '1 hour' AS e;
//! ```
//!
//! `VERSION AS OF <snapshot id>` reads that snapshot. `TIMESTAMP AS OF <t>` and
//! `FOR SYSTEM_TIME AS OF <t>` read the latest snapshot of the table's main history committed
//! at or before `t`; `t` is a string (RFC 3339, or `YYYY-MM-DD HH:MM:SS[.ffffff]` / a bare
//! `YYYY-MM-DD`, taken as UTC) or any SQL expression that yields a timestamp. The clause comes right after the table
//! name, before its alias; without an alias the table keeps its own name as alias, so
//! `ods_event.col` still resolves. The same table may appear at different versions in one
//! query (e.g. to diff two snapshots).
//!
//! # Snapshots
//!
//! Each table has a `$snapshots` metadata table listing its snapshots:
//!
//! ```sql
//! SELECT committed_at, snapshot_id, parent_id, operation,
//!        summary['strata.bus.events.offsets'] AS bus_offsets, summary['added-records'] AS added
//! FROM ods.ods_event$snapshots ORDER BY committed_at;
//! ```
//!
//! and `$manifests` lists the manifests of the current snapshot.
//!
//! The session reads the catalog while `strata serve` commits to it (SQLite in WAL mode, a
//! busy timeout on every connection, and a retrying open).

use std::collections::BTreeSet;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arrow::array::{Array, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, TimeUnit};
use arrow::record_batch::RecordBatch;
use datafusion::catalog::{
    CatalogProvider, MemoryCatalogProvider, MemorySchemaProvider, SchemaProvider,
};
use datafusion::execution::context::{SessionConfig, SessionContext};
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::physical_optimizer::optimizer::PhysicalOptimizer;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::sql::parser::{DFParser, Statement as DFStatement};
use datafusion::sql::sqlparser::ast::{
    Expr as SqlExpr, Ident, ObjectName, ObjectNamePart, TableAlias, TableFactor, TableVersion,
    Value, VisitMut, VisitorMut,
};
use iceberg::table::Table;
use iceberg::{Catalog, NamespaceIdent, TableIdent};
use iceberg_datafusion::IcebergStaticTableProvider;

use strata_table::error::{Error, Result};

pub mod audit;
mod compact;

mod format;
mod json;
mod key_hash;
mod lake_catalog;
pub mod masking;
mod ordering;
mod overlay;
pub mod point_in_time;
mod rewrite;
pub mod scan;
mod share;
mod statements;
mod topk;

pub use format::{format_batches, OutputFormat};
use overlay::OverlayCatalog;
use strata_table::dialect::normalize;
pub use strata_table::dialect::TimeTravelDialect;
use strata_table::lake::Lake;
use strata_table::retry::Backoff;
use strata_table::schema::ODS_NAMESPACE;

/// Catalog and schema where time-travel tables are registered for the length of a query.
const TT_CATALOG: &str = "strata_time_travel";
const TT_SCHEMA: &str = "tt";

/// DataFusion's default physical rules with ours: parallel lake scans with statistics first
/// (join selection reads them, distribution is enforced over their partitions), build-side
/// compaction before the post-optimization filter pushdown (so the joins' dynamic filters are
/// wired to the plan as it will run), and, just before the final sanity check, top-K per
/// window partition without a full sort, aggregates sorted only on constants made linear and
/// repeated subplans (CTEs read more than once) computed once. ADRs 0020, 0021 and 0023.
fn physical_rules() -> Vec<Arc<dyn PhysicalOptimizerRule + Send + Sync>> {
    let mut rules = PhysicalOptimizer::new().rules;
    let at = rules
        .iter()
        .rposition(|r| r.name() == "FilterPushdown")
        .or_else(|| rules.iter().position(|r| r.name() == "SanityCheckPlan"))
        .unwrap_or(rules.len());
    rules.insert(at, Arc::new(compact::CompactJoinBuildSide));
    let last = rules
        .iter()
        .position(|r| r.name() == "SanityCheckPlan")
        .unwrap_or(rules.len());
    rules.insert(last, Arc::new(topk::PartitionedTopK));
    rules.insert(last + 1, Arc::new(ordering::UnorderedConstantAggregates));
    rules.insert(last + 2, Arc::new(share::ShareRepeatedSubplans));
    rules.insert(0, Arc::new(scan::LakeScans::default()));
    rules
}

/// A SQL session over every table of the lake's catalog.
pub struct SqlSession {
    ctx: SessionContext,
    lake: Lake,
    overlay: Arc<OverlayCatalog>,
    catalog: Arc<dyn Catalog>,
    catalog_name: String,
    tt_schema: Arc<MemorySchemaProvider>,
    counter: AtomicU64,
    /// Set for a session run as a role: tables read through its masks, queries only.
    masking: Option<Arc<masking::Masking>>,
    /// The `point_in_time(…)` table function and the views prepared for it.
    point_in_time: Arc<point_in_time::PointInTime>,
}

impl SqlSession {
    /// A session of the lake's owner: every column as it is, every statement.
    pub async fn new(lake: &Lake) -> Result<SqlSession> {
        Self::build(lake, None).await
    }

    /// A session run as a role (`strata sql --role`): the role's masked columns read masked
    /// in every table, time travel included, and only queries run.
    pub async fn as_role(lake: &Lake, masking: masking::Masking) -> Result<SqlSession> {
        Self::build(lake, Some(Arc::new(masking))).await
    }

    /// The role this session runs as, if any.
    pub fn role(&self) -> Option<&str> {
        self.masking.as_deref().map(masking::Masking::role)
    }

    async fn build(lake: &Lake, masking: Option<Arc<masking::Masking>>) -> Result<SqlSession> {
        let catalog = lake.catalog();
        let catalog_name = lake.catalog_name().to_string();
        let config = SessionConfig::new()
            .with_create_default_catalog_and_schema(false)
            .with_default_catalog_and_schema(&catalog_name, ODS_NAMESPACE)
            .with_information_schema(true);
        let state = SessionStateBuilder::new()
            .with_config(config)
            .with_runtime_env(lake.runtime())
            .with_default_features()
            .with_physical_optimizer_rules(physical_rules())
            .build();
        let ctx = SessionContext::new_with_state(state);
        json::register(&ctx);
        key_hash::register(&ctx);
        let point_in_time = Arc::new(point_in_time::PointInTime::default());
        ctx.register_udtf(point_in_time::NAME, point_in_time.clone());
        let overlay = Arc::new(OverlayCatalog::new(
            lake_provider(&catalog, masking.clone()).await?,
        ));
        ctx.register_catalog(&catalog_name, overlay.clone());
        let tt_catalog = MemoryCatalogProvider::new();
        let tt_schema = Arc::new(MemorySchemaProvider::new());
        tt_catalog
            .register_schema(TT_SCHEMA, tt_schema.clone())
            .map_err(Error::datafusion)?;
        ctx.register_catalog(TT_CATALOG, Arc::new(tt_catalog));
        Ok(SqlSession {
            ctx,
            lake: lake.clone(),
            overlay,
            catalog,
            catalog_name,
            tt_schema,
            counter: AtomicU64::new(0),
            masking,
            point_in_time,
        })
    }

    /// The DataFusion context (for callers that want to register more tables or functions).
    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }

    /// The lake this session reads and writes.
    pub fn lake(&self) -> &Lake {
        &self.lake
    }

    /// Re-reads the catalog's namespaces, tables and schemas (after DDL, here or elsewhere).
    pub async fn refresh(&self) -> Result<()> {
        let started = self.overlay.begin_refresh();
        self.overlay.refresh(
            started,
            lake_provider(&self.catalog, self.masking.clone()).await?,
        );
        Ok(())
    }

    /// Runs one query and returns its schema (known even without rows) and rows.
    pub async fn query(
        &self,
        sql: &str,
    ) -> Result<(arrow::datatypes::SchemaRef, Vec<RecordBatch>)> {
        let (schema, stream) = self.query_stream(sql).await?;
        let rows = datafusion::physical_plan::common::collect(stream)
            .await
            .map_err(Error::datafusion)?;
        Ok((schema, rows))
    }

    /// Plans one query and returns its schema and its rows as a stream (a warehouse model's
    /// output is written as it comes, never all held).
    pub async fn query_stream(
        &self,
        sql: &str,
    ) -> Result<(
        arrow::datatypes::SchemaRef,
        datafusion::execution::SendableRecordBatchStream,
    )> {
        let mut statements = rewrite::prepare(sql)?;
        let prepared = match (statements.pop(), statements.is_empty()) {
            (Some(p), true) => p,
            _ => return Err(Error::Sql("expected exactly one query".to_string())),
        };
        let mut parsed = DFParser::parse_sql_with_dialect(&prepared.sql, &TimeTravelDialect)
            .map_err(Error::datafusion)?;
        let statement = parsed
            .pop_front()
            .ok_or_else(|| Error::Sql("expected a query".to_string()))?;
        if self.role().is_some() && !is_query(&statement) {
            return Err(Error::Invalid(
                "a session run as a role runs queries only".to_string(),
            ));
        }
        let mut registered = Vec::new();
        let result = async {
            let df = self.dataframe(statement, &mut registered).await?;
            let schema = Arc::new(df.schema().as_arrow().clone());
            // The physical plan holds the (time-travel) tables it reads from here on, so
            // they can be deregistered while the stream runs.
            let stream = df.execute_stream().await.map_err(Error::datafusion)?;
            Ok((schema, stream))
        }
        .await;
        for name in registered {
            let _ = self.tt_schema.deregister_table(&name);
        }
        result
    }

    /// Runs `sql` (one or more `;`-separated statements) and returns the last one's rows.
    pub async fn run(&self, sql: &str) -> Result<Vec<RecordBatch>> {
        let statements = rewrite::prepare(sql)?;
        if statements.is_empty() {
            return Err(Error::Sql("no SQL statement given".to_string()));
        }
        let mut last = Vec::new();
        for prepared in statements {
            // `COPY … FROM` (a file load) is ours: DataFusion's parser knows `COPY … TO` only.
            if let Some(copy) = statements::parse_copy(&prepared.sql)? {
                last = self.copy_from(&copy).await?;
                continue;
            }
            let mut parsed = DFParser::parse_sql_with_dialect(&prepared.sql, &TimeTravelDialect)
                .map_err(Error::datafusion)?;
            let statement = match (parsed.pop_front(), parsed.is_empty()) {
                (Some(s), true) => s,
                _ => return Err(Error::Internal("statement split went wrong".to_string())),
            };
            if let Some(role) = self.role() {
                if !is_query(&statement) {
                    return Err(Error::Invalid(format!(
                        "a session run as role {role:?} runs queries only (SELECT, WITH, \
                         EXPLAIN, SHOW, DESCRIBE)"
                    )));
                }
            }
            let mut registered = Vec::new();
            let result = match self
                .lake_statement(
                    &statement,
                    prepared.partitioned_by.as_deref(),
                    &mut registered,
                )
                .await
            {
                Ok(Some(rows)) => Ok(rows),
                Ok(None) => self.run_statement(statement, &mut registered).await,
                Err(e) => Err(e),
            };
            for name in registered {
                let _ = self.tt_schema.deregister_table(&name);
            }
            last = result?;
        }
        Ok(last)
    }

    async fn run_statement(
        &self,
        statement: DFStatement,
        registered: &mut Vec<String>,
    ) -> Result<Vec<RecordBatch>> {
        self.dataframe(statement, registered)
            .await?
            .collect()
            .await
            .map_err(Error::datafusion)
    }

    /// Plans `statement` (time-travel clauses resolved; the tables registered for them are
    /// pushed to `registered`, for the caller to drop when done).
    async fn dataframe(
        &self,
        mut statement: DFStatement,
        registered: &mut Vec<String>,
    ) -> Result<datafusion::dataframe::DataFrame> {
        // `point_in_time(…)` calls get their views first (held until this statement is planned).
        let _point_in_time = self
            .prepare_point_in_time(&mut statement, registered)
            .await?;
        // Pass 1: collect versioned table references, in visiting order.
        let mut collect = Collect::default();
        visit_statement(&mut statement, &mut collect);
        if !collect.found.is_empty() {
            // Resolve each to a snapshot and register a static provider for it.
            let mut replacements = Vec::with_capacity(collect.found.len());
            for (name, version) in &collect.found {
                let ident = self.table_ident(name)?;
                let table = self.load_table(&ident).await?;
                let snapshot_id = self.resolve_version(&table, version).await?;
                let provider =
                    IcebergStaticTableProvider::try_new_from_table_snapshot(table, snapshot_id)
                        .await
                        .map_err(|e| {
                            Error::iceberg(format!("reading {ident} at {snapshot_id}"), e)
                        })?;
                let mut provider: Arc<dyn datafusion::datasource::TableProvider> =
                    Arc::new(provider);
                if let Some(m) = &self.masking {
                    provider = m
                        .wrap(&ident.namespace().join("."), ident.name(), provider)
                        .map_err(Error::datafusion)?;
                }
                let tmp = format!("v{}", self.counter.fetch_add(1, Ordering::Relaxed));
                self.tt_schema
                    .register_table(tmp.clone(), provider)
                    .map_err(Error::datafusion)?;
                registered.push(tmp.clone());
                replacements.push((tmp, ident.name().to_string()));
            }
            // Pass 2: point each reference at its registered table.
            let mut replace = Replace {
                replacements,
                next: 0,
            };
            visit_statement(&mut statement, &mut replace);
        }
        let state = self.ctx.state();
        let plan = state
            .statement_to_plan(statement)
            .await
            .map_err(Error::datafusion)?;
        self.ctx
            .execute_logical_plan(plan)
            .await
            .map_err(Error::datafusion)
    }

    /// Registers `table` under a fresh name in the session's scratch schema; the caller
    /// deregisters it.
    fn register_temp(
        &self,
        table: Arc<dyn datafusion::datasource::TableProvider>,
    ) -> Result<String> {
        let name = format!("v{}", self.counter.fetch_add(1, Ordering::Relaxed));
        self.tt_schema
            .register_table(name.clone(), table)
            .map_err(Error::datafusion)?;
        Ok(name)
    }

    fn table_ident(&self, name: &ObjectName) -> Result<TableIdent> {
        let parts = name
            .0
            .iter()
            .map(|p| match p {
                ObjectNamePart::Identifier(i) => Ok(normalize(i)),
                other => Err(Error::Sql(format!("unsupported table name part {other}"))),
            })
            .collect::<Result<Vec<_>>>()?;
        let (ns, table) = match parts.as_slice() {
            [t] => (ODS_NAMESPACE.to_string(), t.clone()),
            [ns, t] => (ns.clone(), t.clone()),
            [c, ns, t] if *c == self.catalog_name => (ns.clone(), t.clone()),
            _ => return Err(Error::NotFound(format!("table {name}"))),
        };
        Ok(TableIdent::new(NamespaceIdent::new(ns), table))
    }

    async fn load_table(&self, ident: &TableIdent) -> Result<Table> {
        self.lake.load_table(ident).await
    }

    async fn resolve_version(&self, table: &Table, version: &TableVersion) -> Result<i64> {
        let name = table.identifier();
        match version {
            TableVersion::VersionAsOf(expr) => {
                let id = literal_i64(expr).ok_or_else(|| {
                    Error::Sql(format!("VERSION AS OF needs a snapshot id, got {expr}"))
                })?;
                if table.metadata().snapshot_by_id(id).is_none() {
                    return Err(Error::NotFound(format!("snapshot {id} of {name}")));
                }
                Ok(id)
            }
            TableVersion::TimestampAsOf(expr) | TableVersion::ForSystemTimeAsOf(expr) => {
                let micros = self.eval_timestamp(expr).await?;
                snapshot_at(table, micros).ok_or_else(|| {
                    Error::NotFound(format!(
                        "no snapshot of {name} committed at or before {}",
                        strata_core::time::format_micros(micros)
                    ))
                })
            }
            TableVersion::Function(expr) => Err(Error::Sql(format!(
                "unsupported time travel clause {expr}; use VERSION AS OF, TIMESTAMP AS OF or FOR SYSTEM_TIME AS OF"
            ))),
        }
    }

    /// Epoch microseconds of a time-travel timestamp: a string literal, or any expression
    /// DataFusion can cast to a timestamp.
    async fn eval_timestamp(&self, expr: &SqlExpr) -> Result<i64> {
        if let SqlExpr::Value(v) = expr {
            if let Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) = &v.value {
                // RFC 3339 or `YYYY-MM-DD HH:MM:SS` (UTC); other forms (a bare date, …) go
                // through DataFusion's cast below.
                if let Some(micros) = strata_core::time::parse_ts_micros(s) {
                    return Ok(micros);
                }
            }
        }
        // Whatever fails here is the user's expression.
        let bad = |e: datafusion::error::DataFusionError| {
            Error::Sql(format!("cannot read {expr} as a timestamp: {e}"))
        };
        let batches = self
            .ctx
            .sql(&format!("SELECT CAST(({expr}) AS TIMESTAMP) AS t"))
            .await
            .map_err(bad)?
            .collect()
            .await
            .map_err(bad)?;
        let column = batches
            .iter()
            .find(|b| b.num_rows() > 0)
            .map(|b| b.column(0).clone())
            .ok_or_else(|| Error::Sql(format!("{expr} gave no timestamp")))?;
        let micros =
            arrow::compute::cast(&column, &DataType::Timestamp(TimeUnit::Microsecond, None))
                .map_err(|e| Error::arrow("casting a time-travel timestamp", e))?;
        let micros = micros
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
            .ok_or_else(|| Error::Internal("timestamp cast gave another type".to_string()))?;
        if micros.is_null(0) {
            return Err(Error::Sql(format!("{expr} is NULL")));
        }
        Ok(micros.value(0))
    }
}

/// The catalog's namespaces and tables for DataFusion, retrying transient errors.
async fn lake_provider(
    catalog: &Arc<dyn Catalog>,
    masking: Option<Arc<masking::Masking>>,
) -> Result<Arc<dyn CatalogProvider>> {
    let mut backoff = Backoff::new(5);
    loop {
        match lake_catalog::LakeCatalog::list(catalog.clone(), masking.clone()).await {
            Ok(p) => return Ok(Arc::new(p)),
            Err(e) if backoff.can_retry() => {
                tracing::warn!(error = %e, "loading the catalog for sql failed, retrying");
                backoff.wait().await;
            }
            Err(e) => return Err(Error::iceberg("loading the catalog for sql", e)),
        }
    }
}

/// Whether `statement` only reads (what a role session may run).
fn is_query(statement: &DFStatement) -> bool {
    match statement {
        DFStatement::Statement(s) => matches!(
            s.as_ref(),
            datafusion::sql::sqlparser::ast::Statement::Query(_)
                | datafusion::sql::sqlparser::ast::Statement::Explain { .. }
                | datafusion::sql::sqlparser::ast::Statement::ExplainTable { .. }
                | datafusion::sql::sqlparser::ast::Statement::ShowTables { .. }
                | datafusion::sql::sqlparser::ast::Statement::ShowColumns { .. }
        ),
        DFStatement::Explain(e) => is_query(&e.statement),
        _ => false,
    }
}

/// The latest snapshot in the table's current history committed at or before `micros`.
pub fn snapshot_at(table: &Table, micros: i64) -> Option<i64> {
    let metadata = table.metadata();
    let mut next = metadata.current_snapshot();
    let mut budget = metadata.snapshots().len();
    while let Some(snapshot) = next {
        if snapshot.timestamp_ms().saturating_mul(1000) <= micros {
            return Some(snapshot.snapshot_id());
        }
        if budget == 0 {
            return None;
        }
        budget -= 1;
        next = snapshot
            .parent_snapshot_id()
            .and_then(|id| metadata.snapshot_by_id(id));
    }
    None
}

fn literal_i64(expr: &SqlExpr) -> Option<i64> {
    match expr {
        SqlExpr::Value(v) => match &v.value {
            Value::Number(n, _) => n.parse().ok(),
            Value::SingleQuotedString(s) => s.parse().ok(),
            _ => None,
        },
        _ => None,
    }
}

fn visit_statement<V: VisitorMut<Break = ()>>(statement: &mut DFStatement, visitor: &mut V) {
    match statement {
        DFStatement::Statement(s) => {
            let _ = s.visit(visitor);
        }
        DFStatement::Explain(e) => visit_statement(&mut e.statement, visitor),
        DFStatement::CopyTo(c) => {
            if let datafusion::sql::parser::CopyToSource::Query(q) = &mut c.source {
                let _ = q.visit(visitor);
            }
        }
        _ => {}
    }
}

#[derive(Default)]
struct Collect {
    found: Vec<(ObjectName, TableVersion)>,
}

impl VisitorMut for Collect {
    type Break = ();

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
        if let TableFactor::Table {
            name,
            version: Some(version),
            ..
        } = factor
        {
            self.found.push((name.clone(), version.clone()));
        }
        ControlFlow::Continue(())
    }
}

struct Replace {
    /// (registered name, original table name for the default alias), in visiting order.
    replacements: Vec<(String, String)>,
    next: usize,
}

impl VisitorMut for Replace {
    type Break = ();

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
        if let TableFactor::Table {
            name,
            version,
            alias,
            ..
        } = factor
        {
            if version.is_some() {
                if let Some((tmp, original)) = self.replacements.get(self.next) {
                    *name = ObjectName::from(vec![
                        Ident::new(TT_CATALOG),
                        Ident::new(TT_SCHEMA),
                        Ident::new(tmp.clone()),
                    ]);
                    *version = None;
                    if alias.is_none() {
                        *alias = Some(TableAlias {
                            explicit: true,
                            name: Ident::with_quote('"', original.clone()),
                            columns: vec![],
                        });
                    }
                }
                self.next += 1;
            }
        }
        ControlFlow::Continue(())
    }
}

/// Lists tables of the catalog as `namespace.table`, sorted.
pub async fn list_tables(catalog: &dyn Catalog) -> Result<Vec<String>> {
    let mut out = BTreeSet::new();
    let namespaces = catalog
        .list_namespaces(None)
        .await
        .map_err(|e| Error::iceberg("listing namespaces", e))?;
    for ns in namespaces {
        let tables = match catalog.list_tables(&ns).await {
            Ok(tables) => tables,
            Err(e) => {
                tracing::warn!(namespace = %ns.join("."), error = %e, "skipping a catalog namespace whose tables cannot be listed");
                continue;
            }
        };
        out.extend(
            tables
                .iter()
                .map(|t| format!("{}.{}", ns.join("."), t.name())),
        );
    }
    Ok(out.into_iter().collect())
}
