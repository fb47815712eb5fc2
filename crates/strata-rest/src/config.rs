//! `[catalog_server]`: the REST catalog this crate serves. Parsed as a section of
//! `strata.toml` (the root config lives in the `strata` binary); `validate()` is pure.

use serde::{Deserialize, Serialize};
use strata_core::error::{Error, Result};
use strata_core::names::LocationPolicy;

/// `[catalog_server]`: the Iceberg REST catalog API over the lake's own catalog, served under
/// `/iceberg` on the collector's listener. Every request needs a bearer token made with
/// `strata tokens create`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CatalogServerConfig {
    /// Serve the REST catalog (`false`: `/iceberg` answers 404).
    pub enabled: bool,
    /// Locations outside the warehouse where clients may put tables (a client-chosen
    /// `location`, `write.data.path` or `write.metadata.path`), as local directories,
    /// `file://…` or `s3://bucket/prefix`. Anything outside the warehouse and these is refused
    /// (403). Empty: the warehouse only.
    pub allowed_locations: Vec<String>,
}

impl Default for CatalogServerConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            allowed_locations: Vec::new(),
        }
    }
}

impl CatalogServerConfig {
    /// Every problem of the section, one message each.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let problems: Vec<String> = self
            .allowed_locations
            .iter()
            .filter_map(|location| {
                LocationPolicy::new(location, &[])
                    .err()
                    .map(|e| format!("catalog_server.allowed_locations: {location:?}: {e}"))
            })
            .collect();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    /// Where tables may be placed: the warehouse (`warehouse_location`, as
    /// `strata_table::config::LakeOptions::warehouse_location` gives it) and
    /// `allowed_locations`.
    pub fn location_policy(&self, warehouse_location: &str) -> Result<LocationPolicy> {
        LocationPolicy::new(warehouse_location, &self.allowed_locations)
            .map_err(|e| Error::user(format!("catalog_server.allowed_locations: {e}")))
    }
}
