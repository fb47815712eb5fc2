//! The app registry: each app (a source of events) has a name, a write key and an optional
//! signing secret. Stored as `<data>/apps.json`, written atomically (`fsutil::replace_file`) so a
//! running collector that reloads it never sees half a file.
//!
//! Which fields of an app's events are personal data, and the key they are hashed with, are
//! configuration (`[collector.pii]`, see [`pii`]), not part of the registry.

pub mod pii;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// `<data>/apps.json`: where the registry of a data directory lives (the collector reads it,
/// `strata apps` writes it).
pub fn registry_path(data_dir: &Path) -> PathBuf {
    data_dir.join("apps.json")
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct App {
    pub name: String,
    pub write_key: String,
    /// When set, every request must carry a valid HMAC-SHA256 signature made with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// RFC 3339 creation time.
    pub created_at: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Apps {
    pub apps: Vec<App>,
}

impl Apps {
    /// Reads the registry; a missing file is an empty registry.
    pub fn load(path: &Path) -> Result<Self> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| Error::user(format!("corrupt app registry {}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Apps::default()),
            Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
        }
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        let body = serde_json::to_vec_pretty(self)
            .map_err(|e| Error::Internal(format!("serializing apps: {e}")))?;
        crate::fsutil::replace_file(path, &body)
            .map_err(|e| Error::io(format!("writing {}", path.display()), e))
    }

    /// Adds an app; refuses a duplicate name or write key.
    pub fn add(&mut self, app: App) -> Result<()> {
        if app.name.is_empty() || app.write_key.is_empty() {
            return Err(Error::user("app name and write key must not be empty"));
        }
        if self.apps.iter().any(|a| a.name == app.name) {
            return Err(Error::user(format!(
                "an app named {:?} already exists",
                app.name
            )));
        }
        if self.apps.iter().any(|a| a.write_key == app.write_key) {
            return Err(Error::user("that write key is already used by another app"));
        }
        self.apps.push(app);
        Ok(())
    }

    pub fn by_write_key(&self, key: &str) -> Option<&App> {
        self.apps.iter().find(|a| a.write_key == key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_load_and_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("apps.json");
        let mut apps = Apps::load(&path).unwrap();
        assert!(apps.apps.is_empty());
        let app = App {
            name: "web".into(),
            write_key: "wk1".into(),
            secret: None,
            created_at: "2026-11-22T00:00:00Z".into(),
        };
        apps.add(app.clone()).unwrap();
        assert!(apps.add(app.clone()).is_err());
        apps.save(&path).unwrap();
        let back = Apps::load(&path).unwrap();
        assert_eq!(back.by_write_key("wk1"), Some(&app));
        assert!(back.by_write_key("nope").is_none());
    }
}
