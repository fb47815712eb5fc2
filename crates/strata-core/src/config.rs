//! `[data]`: where everything lives. The one section every crate needs (the bus segments, the
//! lake files, the catalog, the app registry all sit under the data directory), so it stays
//! here; every other section of `strata.toml` is owned by the crate that reads it, and the
//! root config lives in the `strata` binary (ADR 0035).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// `[data]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// Data directory. A relative path is taken relative to the directory of `strata.toml`.
    pub dir: PathBuf,
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("data"),
        }
    }
}
