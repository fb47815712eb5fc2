//! Consumer groups: committed positions, one JSON file per group under `groups/`, replaced
//! atomically on each commit.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::partition::lock;
use super::{replace_file, validate_name};
use crate::error::{Error, Result};
use crate::log::{Offset, Offsets, Partition};

/// The content of `groups/<group>.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupFile {
    version: u32,
    /// topic → partition → next offset to read.
    topics: BTreeMap<String, Offsets>,
}

#[derive(Debug)]
pub(crate) struct Groups {
    dir: PathBuf,
    state: Mutex<HashMap<String, GroupFile>>,
    /// Serializes file writes so the newest commit always lands last.
    write: tokio::sync::Mutex<()>,
}

impl Groups {
    pub(crate) fn load(dir: PathBuf) -> Result<Groups> {
        let ctx = || format!("listing {}", dir.display());
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(ctx(), e))?;
        let mut state = HashMap::new();
        for entry in std::fs::read_dir(&dir).map_err(|e| Error::io(ctx(), e))? {
            let path = entry.map_err(|e| Error::io(ctx(), e))?.path();
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
            let Some(name) = name else { continue };
            if name.ends_with(".tmp") {
                let _ = std::fs::remove_file(&path);
                continue;
            }
            let Some(group) = name.strip_suffix(".json") else {
                continue;
            };
            let bytes =
                std::fs::read(&path).map_err(|e| Error::io(format!("reading {name}"), e))?;
            let file: GroupFile = serde_json::from_slice(&bytes)
                .map_err(|e| Error::Corrupt(format!("{}: {e}", path.display())))?;
            state.insert(group.to_string(), file);
        }
        Ok(Groups {
            dir,
            state: Mutex::new(state),
            write: tokio::sync::Mutex::new(()),
        })
    }

    fn path(&self, group: &str) -> PathBuf {
        self.dir.join(format!("{group}.json"))
    }

    pub(crate) async fn commit(&self, group: &str, topic: &str, offsets: &Offsets) -> Result<()> {
        validate_name("group", group)?;
        let _serial = self.write.lock().await;
        let mut file = lock(&self.state).get(group).cloned().unwrap_or_default();
        file.version = 1;
        let entry = file.topics.entry(topic.to_string()).or_default();
        entry.extend(offsets.iter().map(|(p, o)| (*p, *o)));
        let bytes = serde_json::to_vec_pretty(&file)
            .map_err(|e| Error::Invalid(format!("encoding group {group}: {e}")))?;
        let path = self.path(group);
        tokio::task::spawn_blocking(move || replace_file(&path, &bytes))
            .await
            .map_err(|e| {
                Error::io("group commit thread", std::io::Error::other(e.to_string()))
            })??;
        lock(&self.state).insert(group.to_string(), file);
        tracing::debug!(
            group,
            topic,
            partitions = offsets.len(),
            "committed offsets"
        );
        Ok(())
    }

    pub(crate) fn committed(&self, group: &str, topic: &str) -> Offsets {
        lock(&self.state)
            .get(group)
            .and_then(|g| g.topics.get(topic))
            .cloned()
            .unwrap_or_default()
    }

    /// The lowest position any group committed for `topic`/`partition`; `None` when no group
    /// committed there (such groups do not hold retention back).
    pub(crate) fn min_committed(&self, topic: &str, partition: Partition) -> Option<Offset> {
        lock(&self.state)
            .values()
            .filter_map(|g| g.topics.get(topic)?.get(&partition).copied())
            .min()
    }
}
