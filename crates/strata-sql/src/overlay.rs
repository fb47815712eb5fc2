//! The lake catalog as DataFusion sees it: Iceberg tables ([`crate::lake_catalog`]), plus a
//! session-local overlay for what DataFusion itself creates (`CREATE VIEW`, and the stand-in
//! tables `strata sql` registers while planning).
//!
//! Lake tables and namespaces are created and dropped by `statements.rs`, never through
//! DataFusion's `register_table`, which the overlay keeps session-local.

use std::any::Any;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use datafusion::catalog::{
    CatalogProvider, MemoryCatalogProvider, MemorySchemaProvider, SchemaProvider,
};
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::{DataFusionError, Result as DFResult};

/// An Iceberg catalog provider with session-local schemas and tables on top.
///
/// The lake side is swapped by [`OverlayCatalog::refresh`] after DDL: its namespaces and
/// table names are listed once, when its provider is built.
#[derive(Debug)]
pub struct OverlayCatalog {
    /// The lake's listing and the number of the refresh that made it (0: the first).
    lake_provider: RwLock<(u64, Arc<dyn CatalogProvider>)>,
    /// Refreshes begun (see [`OverlayCatalog::begin_refresh`]).
    refreshes: AtomicU64,
    local: MemoryCatalogProvider,
}

impl OverlayCatalog {
    pub fn new(lake: Arc<dyn CatalogProvider>) -> Self {
        OverlayCatalog {
            lake_provider: RwLock::new((0, lake)),
            refreshes: AtomicU64::new(0),
            local: MemoryCatalogProvider::new(),
        }
    }

    /// Numbers a refresh as it begins, before its listing is read.
    pub fn begin_refresh(&self) -> u64 {
        self.refreshes.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// Replaces the lake's provider (after CREATE / DROP / ALTER) with the listing of refresh
    /// number `started` (from [`OverlayCatalog::begin_refresh`]), unless a listing begun later
    /// is already in place. Models of a DAG run create tables and refresh concurrently:
    /// without the numbers, a listing begun before another model created its table could land
    /// last and hide that table from the checks that follow.
    pub fn refresh(&self, started: u64, lake: Arc<dyn CatalogProvider>) {
        let mut current = self
            .lake_provider
            .write()
            .unwrap_or_else(|e| e.into_inner());
        if started > current.0 {
            *current = (started, lake);
        }
    }

    fn lake(&self) -> Arc<dyn CatalogProvider> {
        self.lake_provider
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .1
            .clone()
    }
}

impl CatalogProvider for OverlayCatalog {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn schema_names(&self) -> Vec<String> {
        let mut names: BTreeSet<String> = self.lake().schema_names().into_iter().collect();
        names.extend(self.local.schema_names());
        names.into_iter().collect()
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        match self.lake().schema(name) {
            Some(lake) => Some(Arc::new(OverlaySchema {
                lake,
                local: self.local_schema(name),
            })),
            None => self.local.schema(name),
        }
    }

    fn register_schema(
        &self,
        name: &str,
        schema: Arc<dyn SchemaProvider>,
    ) -> DFResult<Option<Arc<dyn SchemaProvider>>> {
        if self.lake().schema(name).is_some() {
            return Err(DataFusionError::Plan(format!(
                "schema {name} is a lake namespace"
            )));
        }
        self.local.register_schema(name, schema)
    }

    fn deregister_schema(
        &self,
        name: &str,
        cascade: bool,
    ) -> DFResult<Option<Arc<dyn SchemaProvider>>> {
        if self.lake().schema(name).is_some() {
            return Err(DataFusionError::Plan(format!(
                "lake namespace {name} cannot be dropped this way"
            )));
        }
        self.local.deregister_schema(name, cascade)
    }
}

impl OverlayCatalog {
    /// The session-local schema shadowing lake namespace `name` (created on first use).
    fn local_schema(&self, name: &str) -> Arc<dyn SchemaProvider> {
        if let Some(s) = self.local.schema(name) {
            return s;
        }
        let schema: Arc<dyn SchemaProvider> = Arc::new(MemorySchemaProvider::new());
        // Registering into a memory catalog cannot fail.
        let _ = self.local.register_schema(name, schema.clone());
        schema
    }
}

/// One lake namespace: Iceberg tables first, then the session's own tables and views.
#[derive(Debug)]
struct OverlaySchema {
    lake: Arc<dyn SchemaProvider>,
    local: Arc<dyn SchemaProvider>,
}

#[async_trait]
impl SchemaProvider for OverlaySchema {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn table_names(&self) -> Vec<String> {
        let mut names: BTreeSet<String> = self.lake.table_names().into_iter().collect();
        names.extend(self.local.table_names());
        names.into_iter().collect()
    }

    async fn table(&self, name: &str) -> DFResult<Option<Arc<dyn TableProvider>>> {
        if self.local.table_exist(name) {
            return self.local.table(name).await;
        }
        self.lake.table(name).await
    }

    async fn table_type(&self, name: &str) -> DFResult<Option<TableType>> {
        if self.local.table_exist(name) {
            return self.local.table_type(name).await;
        }
        self.lake.table_type(name).await
    }

    fn register_table(
        &self,
        name: String,
        table: Arc<dyn TableProvider>,
    ) -> DFResult<Option<Arc<dyn TableProvider>>> {
        if self.lake.table_exist(&name) {
            return Err(DataFusionError::Plan(format!(
                "{name} is a lake table; choose another name"
            )));
        }
        self.local.register_table(name, table)
    }

    fn deregister_table(&self, name: &str) -> DFResult<Option<Arc<dyn TableProvider>>> {
        if self.local.table_exist(name) {
            return self.local.deregister_table(name);
        }
        if self.lake.table_exist(name) {
            return Err(DataFusionError::Plan(format!(
                "lake table {name} cannot be dropped from strata sql"
            )));
        }
        Ok(None)
    }

    fn table_exist(&self, name: &str) -> bool {
        self.local.table_exist(name) || self.lake.table_exist(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(namespace: &str) -> Arc<dyn CatalogProvider> {
        let catalog = MemoryCatalogProvider::new();
        catalog
            .register_schema(namespace, Arc::new(MemorySchemaProvider::new()))
            .unwrap();
        Arc::new(catalog)
    }

    /// Two models refresh at once; the listing begun first lands last and must not win.
    #[test]
    fn a_listing_begun_earlier_does_not_replace_one_begun_later() {
        let overlay = OverlayCatalog::new(listing("first"));
        let (earlier, later) = (overlay.begin_refresh(), overlay.begin_refresh());
        overlay.refresh(later, listing("after_create"));
        overlay.refresh(earlier, listing("before_create"));
        assert!(overlay.schema("after_create").is_some());
        assert!(overlay.schema("before_create").is_none());
        overlay.refresh(overlay.begin_refresh(), listing("latest"));
        assert!(overlay.schema_names().contains(&"latest".to_string()));
    }
}
