//! The lake's namespaces and tables as DataFusion sees them, loaded when a statement uses them.
//!
//! iceberg-datafusion's `IcebergCatalogProvider` loads every table's metadata when it is
//! built, so each `strata sql` process (and each refresh after DDL) paid for the whole lake
//! before running one query: on a lake whose CDC tables commit every second, their metadata
//! files are large and that was most of a small query's time. [`LakeCatalog`] lists only
//! namespaces and table names up front; a table's metadata is read when a statement refers to
//! it, and the statement scans the snapshot that was current when it was planned (DataFusion
//! resolves each table reference of a statement once).

use std::any::Any;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::{CatalogProvider, SchemaProvider};
use datafusion::datasource::{MemTable, TableProvider, TableType};
use datafusion::error::{DataFusionError, Result as DFResult};
use futures::future::join_all;
use futures::TryStreamExt;
use iceberg::arrow::schema_to_arrow_schema;
use iceberg::inspect::MetadataTableType;
use iceberg::{Catalog, NamespaceIdent, TableIdent};
use iceberg_datafusion::{to_datafusion_error, IcebergStaticTableProvider};

use crate::masking::Masking;

/// Every top-level namespace of the catalog and the names of its tables.
#[derive(Debug)]
pub struct LakeCatalog {
    schemas: BTreeMap<String, Arc<dyn SchemaProvider>>,
}

impl LakeCatalog {
    /// Lists namespaces and tables (no table metadata is read). A namespace whose tables
    /// cannot be listed (a broken catalog entry, e.g. one written by an older version that did
    /// not validate names) is left out with a warning naming it: one bad entry never stops
    /// queries on the others.
    pub async fn list(
        catalog: Arc<dyn Catalog>,
        masking: Option<Arc<Masking>>,
    ) -> iceberg::Result<LakeCatalog> {
        let namespaces: Vec<String> = catalog
            .list_namespaces(None)
            .await?
            .iter()
            .flat_map(|ns| ns.as_ref().clone())
            .collect();
        let tables = join_all(namespaces.iter().map(|name| {
            let catalog = catalog.clone();
            async move {
                catalog
                    .list_tables(&NamespaceIdent::new(name.clone()))
                    .await
            }
        }))
        .await;
        let schemas = namespaces
            .into_iter()
            .zip(tables)
            .filter_map(|(name, listed)| match listed {
                Ok(tables) => Some((name, tables)),
                Err(e) => {
                    tracing::warn!(namespace = %name, error = %e, "skipping a catalog namespace whose tables cannot be listed");
                    None
                }
            })
            .map(|(name, tables)| {
                let schema = LakeSchema {
                    catalog: catalog.clone(),
                    masking: masking.clone(),
                    namespace: NamespaceIdent::new(name.clone()),
                    tables: tables.iter().map(|t| t.name().to_string()).collect(),
                };
                (name, Arc::new(schema) as Arc<dyn SchemaProvider>)
            })
            .collect();
        Ok(LakeCatalog { schemas })
    }
}

impl CatalogProvider for LakeCatalog {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn schema_names(&self) -> Vec<String> {
        self.schemas.keys().cloned().collect()
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        self.schemas.get(name).cloned()
    }
}

/// One namespace: its table names, and each table's metadata read on use.
#[derive(Debug)]
struct LakeSchema {
    catalog: Arc<dyn Catalog>,
    /// The role's column masks, for a session run as a role.
    masking: Option<Arc<Masking>>,
    namespace: NamespaceIdent,
    tables: BTreeSet<String>,
}

impl LakeSchema {
    async fn load(&self, name: &str) -> DFResult<iceberg::table::Table> {
        let ident = TableIdent::new(self.namespace.clone(), name.to_string());
        self.catalog
            .load_table(&ident)
            .await
            .map_err(to_datafusion_error)
    }

    /// `t$snapshots` / `t$manifests`, read whole into memory: they are small, and
    /// iceberg-datafusion's own metadata scan ignores the projection DataFusion pushes into
    /// it, which trips DataFusion's schema checks as soon as a query selects some columns.
    async fn metadata_table(
        &self,
        name: &str,
        kind: MetadataTableType,
    ) -> DFResult<Arc<dyn TableProvider>> {
        let table = self.load(name).await?;
        let inspect = table.inspect();
        let (schema, stream) = match kind {
            MetadataTableType::Snapshots => {
                let t = inspect.snapshots();
                (t.schema(), t.scan().await)
            }
            MetadataTableType::Manifests => {
                let t = inspect.manifests();
                (t.schema(), t.scan().await)
            }
        };
        let schema = Arc::new(schema_to_arrow_schema(&schema).map_err(to_datafusion_error)?);
        let batches: Vec<_> = stream
            .map_err(to_datafusion_error)?
            .try_collect()
            .await
            .map_err(to_datafusion_error)?;
        Ok(Arc::new(MemTable::try_new(schema, vec![batches])?))
    }
}

#[async_trait]
impl SchemaProvider for LakeSchema {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn table_names(&self) -> Vec<String> {
        self.tables
            .iter()
            .flat_map(|table| {
                std::iter::once(table.clone()).chain(
                    MetadataTableType::all_types().map(move |m| format!("{table}${}", m.as_str())),
                )
            })
            .collect()
    }

    fn table_exist(&self, name: &str) -> bool {
        match name.split_once('$') {
            Some((table, meta)) => {
                self.tables.contains(table) && MetadataTableType::try_from(meta).is_ok()
            }
            None => self.tables.contains(name),
        }
    }

    /// Known without reading the table (the default would load it).
    async fn table_type(&self, name: &str) -> DFResult<Option<TableType>> {
        Ok(self.table_exist(name).then_some(TableType::Base))
    }

    async fn table(&self, name: &str) -> DFResult<Option<Arc<dyn TableProvider>>> {
        if let Some((table, meta)) = name.split_once('$') {
            if !self.tables.contains(table) {
                return Ok(None);
            }
            let kind = MetadataTableType::try_from(meta).map_err(DataFusionError::Plan)?;
            return self.metadata_table(table, kind).await.map(Some);
        }
        if !self.tables.contains(name) {
            return Ok(None);
        }
        let table = self.load(name).await?;
        let provider = IcebergStaticTableProvider::try_new_from_table(table)
            .await
            .map_err(to_datafusion_error)?;
        let provider: Arc<dyn TableProvider> = Arc::new(provider);
        match &self.masking {
            Some(m) => m.wrap(&self.namespace.join("."), name, provider).map(Some),
            None => Ok(Some(provider)),
        }
    }
}
