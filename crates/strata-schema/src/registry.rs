//! The registry: subjects, their versions, global schema ids and compatibility levels, kept in
//! one JSON file under the data directory (`<data>/schema_registry.json`).
//!
//! - Writes (register, set a level) take an exclusive `flock` on `<file>.lock`, re-read the
//!   file, apply the change, and replace the file atomically (`fsutil::replace_file`): several
//!   processes on one data directory (`strata schemas register` beside a running `serve`)
//!   never lose each other's versions.
//! - Readers hold a compiled [`Snapshot`] (the latest version of each subject compiled once).
//!   A write in this process swaps it at once; a write by another process is picked up when
//!   the file's modification time or size changes, checked at most every 2 s on reads (the
//!   collector's path checks on each request, at most every 2 s, without blocking: one request
//!   does the check, the others use the snapshot they have).
//! - Ids are global: the same schema text (canonical: keys sorted, no whitespace) registered
//!   under two subjects has one id, as in Confluent's registry.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

use crate::compat::{self, Compatibility};
use crate::config::{check_subject, SchemasConfig};
use crate::error::{Error, Result};
use crate::schema::Schema;

/// How often the file is checked for another process's writes, at most.
const RELOAD_CHECK_INTERVAL: Duration = Duration::from_secs(2);

/// `<data>/schema_registry.json`.
pub fn registry_path(data_dir: &Path) -> PathBuf {
    data_dir.join("schema_registry.json")
}

/// The file's content.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stored {
    /// The global level set with `PUT /config` (else `[collector.schemas] compatibility`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compatibility: Option<Compatibility>,
    #[serde(default)]
    pub subjects: BTreeMap<String, StoredSubject>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredSubject {
    /// The level set with `PUT /config/{subject}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compatibility: Option<Compatibility>,
    #[serde(default)]
    pub versions: Vec<StoredVersion>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredVersion {
    pub version: u32,
    pub id: u64,
    /// Canonical schema text.
    pub schema: String,
    /// RFC 3339.
    pub registered_at: String,
}

/// A version as reads return it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VersionInfo {
    pub subject: String,
    pub version: u32,
    pub id: u64,
    pub schema: String,
}

/// `latest` (or `-1`) or a version number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionRef {
    Latest,
    Number(u32),
}

impl std::str::FromStr for VersionRef {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim() {
            "latest" | "-1" => Ok(VersionRef::Latest),
            n => n
                .parse::<u32>()
                .ok()
                .filter(|n| *n > 0)
                .map(VersionRef::Number)
                .ok_or_else(|| Error::InvalidVersion(s.to_string())),
        }
    }
}

/// The latest version of a subject, compiled.
#[derive(Debug)]
pub struct Latest {
    pub subject: String,
    pub version: u32,
    pub id: u64,
    pub schema: Schema,
}

/// One state of the registry with each subject's latest version compiled.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub stored: Stored,
    latest: HashMap<String, Arc<Latest>>,
}

impl Snapshot {
    fn build(stored: Stored) -> Snapshot {
        let mut latest = HashMap::new();
        for (subject, s) in &stored.subjects {
            let Some(v) = s.versions.last() else {
                continue;
            };
            match Schema::parse(&v.schema) {
                Ok(schema) => {
                    latest.insert(
                        subject.clone(),
                        Arc::new(Latest {
                            subject: subject.clone(),
                            version: v.version,
                            id: v.id,
                            schema,
                        }),
                    );
                }
                // Only a hand-edited file gets here: registration compiles first.
                Err(problems) => tracing::error!(
                    subject = %subject,
                    version = v.version,
                    problems = %problems.join("; "),
                    "stored schema does not compile; its subject is not validated"
                ),
            }
        }
        Snapshot { stored, latest }
    }

    /// No subject has a schema: nothing to validate.
    pub fn is_empty(&self) -> bool {
        self.latest.is_empty()
    }

    /// The latest version of `subject`, compiled.
    pub fn latest(&self, subject: &str) -> Option<&Arc<Latest>> {
        self.latest.get(subject)
    }
}

/// What a registration did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Registered {
    pub id: u64,
    pub version: u32,
    /// False when the same schema was already a version of the subject (nothing written).
    pub created: bool,
}

struct ReloadState {
    checked_at: Instant,
    stamp: Option<(SystemTime, u64)>,
}

/// The registry over its file. Share one per process (`Arc`).
pub struct Registry {
    path: PathBuf,
    defaults: SchemasConfig,
    current: RwLock<Arc<Snapshot>>,
    check: Mutex<ReloadState>,
    writer: Mutex<()>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("path", &self.path)
            .finish()
    }
}

fn file_stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

fn read_stored(path: &Path) -> Result<Stored> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
            Error::Corrupt(format!("corrupt schema registry {}: {e}", path.display()))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Stored::default()),
        Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
    }
}

impl Registry {
    /// Opens the registry of `data_dir` (a missing file is an empty registry; a corrupt one is
    /// an error). `defaults` is `[collector.schemas]`.
    pub fn open(data_dir: &Path, defaults: SchemasConfig) -> Result<Registry> {
        Registry::open_file(&registry_path(data_dir), defaults)
    }

    /// Opens the registry kept at `path`.
    pub fn open_file(path: &Path, defaults: SchemasConfig) -> Result<Registry> {
        let stamp = file_stamp(path);
        let stored = read_stored(path)?;
        Ok(Registry {
            path: path.to_path_buf(),
            defaults,
            current: RwLock::new(Arc::new(Snapshot::build(stored))),
            check: Mutex::new(ReloadState {
                checked_at: Instant::now(),
                stamp,
            }),
            writer: Mutex::new(()),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `[collector.schemas]` as this registry was opened with.
    pub fn defaults(&self) -> &SchemasConfig {
        &self.defaults
    }

    /// The current snapshot (re-read first when another process changed the file; checked at
    /// most every 2 s, never blocking on a check another caller is doing).
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.maybe_reload();
        self.current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn maybe_reload(&self) {
        let Ok(mut state) = self.check.try_lock() else {
            return;
        };
        if state.checked_at.elapsed() < RELOAD_CHECK_INTERVAL {
            return;
        }
        state.checked_at = Instant::now();
        let stamp = file_stamp(&self.path);
        if stamp == state.stamp {
            return;
        }
        match read_stored(&self.path) {
            Ok(stored) => {
                let snapshot = Arc::new(Snapshot::build(stored));
                tracing::info!(subjects = snapshot.stored.subjects.len(), path = %self.path.display(), "schema registry reloaded");
                self.swap(snapshot);
                state.stamp = stamp;
            }
            Err(e) => {
                tracing::warn!(error = %e, "schema registry not reloaded, keeping the previous one")
            }
        }
    }

    fn swap(&self, snapshot: Arc<Snapshot>) {
        *self
            .current
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = snapshot;
    }

    /// Applies `change` to the file's current content under the lock; writes and swaps the
    /// snapshot when it returns `(value, true)`.
    fn mutate<T>(&self, change: impl FnOnce(&mut Stored) -> Result<(T, bool)>) -> Result<T> {
        let _in_process = self
            .writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let lock_path = {
            let mut p = self.path.as_os_str().to_owned();
            p.push(".lock");
            PathBuf::from(p)
        };
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        }
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| Error::io(format!("opening {}", lock_path.display()), e))?;
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| Error::io(format!("locking {}", lock_path.display()), e.into()))?;
        let mut stored = read_stored(&self.path)?;
        let (value, changed) = change(&mut stored)?;
        if changed {
            let body = serde_json::to_vec_pretty(&stored)
                .map_err(|e| Error::Corrupt(format!("serializing the schema registry: {e}")))?;
            strata_core::fsutil::replace_file(&self.path, &body)
                .map_err(|e| Error::io(format!("writing {}", self.path.display()), e))?;
        }
        let stamp = file_stamp(&self.path);
        self.swap(Arc::new(Snapshot::build(stored)));
        if let Ok(mut state) = self.check.lock() {
            state.stamp = stamp;
        }
        // The flock is released when `lock` closes.
        drop(lock);
        Ok(value)
    }

    /// Every subject with at least one version.
    pub fn subjects(&self) -> Vec<String> {
        self.snapshot()
            .stored
            .subjects
            .iter()
            .filter(|(_, s)| !s.versions.is_empty())
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// The version numbers of `subject`.
    pub fn versions(&self, subject: &str) -> Result<Vec<u32>> {
        let snap = self.snapshot();
        let s = snap
            .stored
            .subjects
            .get(subject)
            .filter(|s| !s.versions.is_empty())
            .ok_or_else(|| Error::SubjectNotFound(subject.to_string()))?;
        Ok(s.versions.iter().map(|v| v.version).collect())
    }

    /// One version of `subject`.
    pub fn version(&self, subject: &str, which: VersionRef) -> Result<VersionInfo> {
        let snap = self.snapshot();
        let s = snap
            .stored
            .subjects
            .get(subject)
            .filter(|s| !s.versions.is_empty())
            .ok_or_else(|| Error::SubjectNotFound(subject.to_string()))?;
        let v = match which {
            VersionRef::Latest => s.versions.last(),
            VersionRef::Number(n) => s.versions.iter().find(|v| v.version == n),
        }
        .ok_or_else(|| {
            Error::VersionNotFound(
                subject.to_string(),
                match which {
                    VersionRef::Latest => "latest".to_string(),
                    VersionRef::Number(n) => n.to_string(),
                },
            )
        })?;
        Ok(VersionInfo {
            subject: subject.to_string(),
            version: v.version,
            id: v.id,
            schema: v.schema.clone(),
        })
    }

    /// The schema text with id `id`.
    pub fn schema_by_id(&self, id: u64) -> Result<String> {
        let snap = self.snapshot();
        snap.stored
            .subjects
            .values()
            .flat_map(|s| &s.versions)
            .find(|v| v.id == id)
            .map(|v| v.schema.clone())
            .ok_or(Error::SchemaNotFound(id))
    }

    /// The global level in effect: set over HTTP, else `[collector.schemas] compatibility`.
    pub fn global_compatibility(&self) -> Compatibility {
        self.snapshot()
            .stored
            .compatibility
            .unwrap_or(self.defaults.compatibility)
    }

    /// The subject's own level: set over HTTP, else from `[collector.schemas.subjects]`.
    pub fn subject_compatibility(&self, subject: &str) -> Option<Compatibility> {
        let snap = self.snapshot();
        own_level(&snap.stored, &self.defaults, subject)
    }

    /// The level that applies to `subject`.
    pub fn compatibility(&self, subject: &str) -> Compatibility {
        let snap = self.snapshot();
        level(&snap.stored, &self.defaults, subject)
    }

    /// Sets the global level (`subject` None) or a subject's.
    pub fn set_compatibility(&self, subject: Option<&str>, level: Compatibility) -> Result<()> {
        if let Some(s) = subject {
            check_subject(s).map_err(Error::InvalidSubject)?;
        }
        self.mutate(|stored| {
            match subject {
                None => stored.compatibility = Some(level),
                Some(s) => {
                    stored
                        .subjects
                        .entry(s.to_string())
                        .or_default()
                        .compatibility = Some(level)
                }
            }
            Ok(((), true))
        })
    }

    /// Registers `text` as the next version of `subject` after checking it compiles and meets
    /// the subject's compatibility level; the same schema again returns its existing version.
    pub fn register(&self, subject: &str, text: &str) -> Result<Registered> {
        check_subject(subject).map_err(Error::InvalidSubject)?;
        let schema = Schema::parse(text).map_err(|p| Error::InvalidSchema(p.join("; ")))?;
        let defaults = self.defaults.clone();
        let registered = self.mutate(|stored| {
            let mode = level(stored, &defaults, subject);
            let existing = stored.subjects.get(subject);
            if let Some(v) = existing
                .into_iter()
                .flat_map(|s| &s.versions)
                .find(|v| v.schema == schema.canonical)
            {
                return Ok((
                    Registered {
                        id: v.id,
                        version: v.version,
                        created: false,
                    },
                    false,
                ));
            }
            let previous = compile_versions(existing.map_or(&[][..], |s| &s.versions))?;
            let refs: Vec<(u32, &Schema)> = previous.iter().map(|(v, s)| (*v, s)).collect();
            let problems = compat::check(mode, &schema, &refs);
            if !problems.is_empty() {
                return Err(Error::Incompatible {
                    subject: subject.to_string(),
                    mode,
                    messages: problems,
                });
            }
            let all = stored.subjects.values().flat_map(|s| &s.versions);
            let id = match all.clone().find(|v| v.schema == schema.canonical) {
                Some(v) => v.id,
                None => all.map(|v| v.id).max().unwrap_or(0) + 1,
            };
            let entry = stored.subjects.entry(subject.to_string()).or_default();
            let version = entry.versions.last().map_or(1, |v| v.version + 1);
            entry.versions.push(StoredVersion {
                version,
                id,
                schema: schema.canonical.clone(),
                registered_at: chrono::Utc::now()
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            });
            Ok((
                Registered {
                    id,
                    version,
                    created: true,
                },
                true,
            ))
        })?;
        if registered.created {
            tracing::info!(subject = %subject, version = registered.version, id = registered.id, "schema registered");
        }
        Ok(registered)
    }

    /// Why `text` would not be compatible with `which` version of `subject` (empty: it is).
    /// `latest` checks as a registration would (every version when the level is transitive);
    /// a version number checks against that version alone.
    pub fn test_compatibility(
        &self,
        subject: &str,
        which: VersionRef,
        text: &str,
    ) -> Result<Vec<String>> {
        let schema = Schema::parse(text).map_err(|p| Error::InvalidSchema(p.join("; ")))?;
        let snap = self.snapshot();
        let mode = level(&snap.stored, &self.defaults, subject);
        let s = snap
            .stored
            .subjects
            .get(subject)
            .filter(|s| !s.versions.is_empty())
            .ok_or_else(|| Error::SubjectNotFound(subject.to_string()))?;
        let previous = match which {
            VersionRef::Latest => compile_versions(&s.versions)?,
            VersionRef::Number(n) => {
                let v: Vec<StoredVersion> = s
                    .versions
                    .iter()
                    .filter(|v| v.version == n)
                    .cloned()
                    .collect();
                if v.is_empty() {
                    return Err(Error::VersionNotFound(subject.to_string(), n.to_string()));
                }
                compile_versions(&v)?
            }
        };
        let refs: Vec<(u32, &Schema)> = previous.iter().map(|(v, s)| (*v, s)).collect();
        Ok(compat::check(mode, &schema, &refs))
    }
}

fn own_level(stored: &Stored, defaults: &SchemasConfig, subject: &str) -> Option<Compatibility> {
    stored
        .subjects
        .get(subject)
        .and_then(|s| s.compatibility)
        .or_else(|| defaults.subjects.get(subject).and_then(|s| s.compatibility))
}

fn level(stored: &Stored, defaults: &SchemasConfig, subject: &str) -> Compatibility {
    own_level(stored, defaults, subject)
        .or(stored.compatibility)
        .unwrap_or(defaults.compatibility)
}

fn compile_versions(versions: &[StoredVersion]) -> Result<Vec<(u32, Schema)>> {
    versions
        .iter()
        .map(|v| {
            Schema::parse(&v.schema)
                .map(|s| (v.version, s))
                .map_err(|p| {
                    Error::Corrupt(format!(
                        "stored version {} does not compile: {}",
                        v.version,
                        p.join("; ")
                    ))
                })
        })
        .collect()
}
