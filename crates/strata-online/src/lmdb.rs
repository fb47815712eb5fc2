//! The embedded backend: LMDB (through `heed`) under `<data>/online`. Readers never block the
//! writer and see one committed state per read transaction, across processes too: a
//! `strata features materialize` in one process and `strata serve` in another share the store.
//! Pages are memory-mapped, so a store larger than RAM works (the OS keeps the hot pages).
//!
//! Two databases: `meta` (view → metadata) and `entries` (view, 0x00, entity key → entry).
//! Sync locks are file locks under `locks/`, released by the OS when the holder dies.

use std::collections::HashMap;
use std::fs::File;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use heed::types::Bytes;
use heed::{Database, Env, EnvOpenOptions, WithoutTls};

use crate::backend::{Backend, Entries, Write};
use crate::error::{Error, Result};

type Db = Database<Bytes, Bytes>;

#[derive(Debug)]
pub struct LmdbBackend {
    env: Env<WithoutTls>,
    meta: Db,
    entries: Db,
    locks_dir: PathBuf,
    /// Lock files held by owners in this process.
    held: Mutex<HashMap<(String, String), File>>,
}

/// Environments opened by this process, by directory: LMDB must not open one twice in a
/// process, and the server and its DAG steps share one.
fn opened() -> &'static Mutex<HashMap<PathBuf, Env<WithoutTls>>> {
    static OPENED: OnceLock<Mutex<HashMap<PathBuf, Env<WithoutTls>>>> = OnceLock::new();
    OPENED.get_or_init(|| Mutex::new(HashMap::new()))
}

fn unavailable(context: &str, e: impl std::fmt::Display) -> Error {
    Error::Unavailable(format!("{context}: {e}"))
}

impl LmdbBackend {
    pub fn open(dir: &Path, max_size_gib: u64) -> Result<LmdbBackend> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::Config(format!("creating {}: {e}", dir.display())))?;
        let locks_dir = dir.join("locks");
        std::fs::create_dir_all(&locks_dir)
            .map_err(|e| Error::Config(format!("creating {}: {e}", locks_dir.display())))?;
        let canonical = dir
            .canonicalize()
            .map_err(|e| Error::Config(format!("{}: {e}", dir.display())))?;
        let env = {
            let mut opened = opened()
                .lock()
                .map_err(|_| Error::Corrupt("environment registry poisoned".into()))?;
            match opened.get(&canonical) {
                Some(env) => env.clone(),
                None => {
                    let map_size = usize::try_from(max_size_gib.saturating_mul(1 << 30))
                        .map_err(|_| Error::Config("online.max_size_gib is too large".into()))?;
                    let mut options = EnvOpenOptions::new().read_txn_without_tls();
                    options.map_size(map_size).max_dbs(4).max_readers(1024);
                    // SAFETY: heed requires that the same environment is not opened twice in
                    // one process (the registry above ensures it) and that the files are not
                    // modified by other means than LMDB.
                    let env = unsafe { options.open(&canonical) }.map_err(|e| {
                        Error::Config(format!(
                            "opening the online store at {}: {e}",
                            canonical.display()
                        ))
                    })?;
                    opened.insert(canonical.clone(), env.clone());
                    env
                }
            }
        };
        let mut wtxn = env
            .write_txn()
            .map_err(|e| unavailable("opening the online store", e))?;
        let meta: Db = env
            .create_database(&mut wtxn, Some("meta"))
            .map_err(|e| unavailable("opening the online store", e))?;
        let entries: Db = env
            .create_database(&mut wtxn, Some("entries"))
            .map_err(|e| unavailable("opening the online store", e))?;
        wtxn.commit()
            .map_err(|e| unavailable("opening the online store", e))?;
        Ok(LmdbBackend {
            env,
            meta,
            entries,
            locks_dir,
            held: Mutex::new(HashMap::new()),
        })
    }

    fn prefix(view: &str) -> Vec<u8> {
        let mut p = Vec::with_capacity(view.len() + 1);
        p.extend_from_slice(view.as_bytes());
        p.push(0);
        p
    }

    fn key(view: &str, key: &[u8]) -> Vec<u8> {
        let mut k = Self::prefix(view);
        k.extend_from_slice(key);
        k
    }

    /// The first key after every key of the view (its prefix with the separator bumped).
    fn prefix_end(view: &str) -> Vec<u8> {
        let mut p = view.as_bytes().to_vec();
        p.push(1);
        p
    }

    fn lock_path(&self, view: &str) -> PathBuf {
        self.locks_dir.join(format!("{view}.lock"))
    }
}

#[async_trait]
impl Backend for LmdbBackend {
    fn kind(&self) -> &'static str {
        "embedded"
    }

    async fn read(
        &self,
        view: &str,
        keys: &[Vec<u8>],
    ) -> Result<(Option<Vec<u8>>, Vec<Option<Vec<u8>>>)> {
        let rtxn = self
            .env
            .read_txn()
            .map_err(|e| unavailable("reading the online store", e))?;
        let meta = self
            .meta
            .get(&rtxn, view.as_bytes())
            .map_err(|e| unavailable("reading the online store", e))?
            .map(<[u8]>::to_vec);
        let mut out = Vec::with_capacity(keys.len());
        let mut full = Self::prefix(view);
        let base = full.len();
        for key in keys {
            full.truncate(base);
            full.extend_from_slice(key);
            out.push(
                self.entries
                    .get(&rtxn, &full)
                    .map_err(|e| unavailable("reading the online store", e))?
                    .map(<[u8]>::to_vec),
            );
        }
        Ok((meta, out))
    }

    async fn put_meta(&self, view: &str, meta: Vec<u8>) -> Result<()> {
        let mut wtxn = self
            .env
            .write_txn()
            .map_err(|e| unavailable("writing the online store", e))?;
        self.meta
            .put(&mut wtxn, view.as_bytes(), &meta)
            .map_err(|e| unavailable("writing the online store", e))?;
        wtxn.commit()
            .map_err(|e| unavailable("writing the online store", e))
    }

    async fn put(&self, view: &str, entries: Entries) -> Result<()> {
        let env = self.env.clone();
        let db = self.entries;
        let view = view.to_string();
        // A batch is thousands of B-tree writes and an fsync: off the async threads.
        tokio::task::spawn_blocking(move || {
            let mut wtxn = env
                .write_txn()
                .map_err(|e| unavailable("writing the online store", e))?;
            for (key, value) in entries {
                db.put(&mut wtxn, &Self::key(&view, &key), &value)
                    .map_err(|e| unavailable("writing the online store", e))?;
            }
            wtxn.commit()
                .map_err(|e| unavailable("writing the online store", e))
        })
        .await
        .map_err(|e| Error::Unavailable(format!("online store write task: {e}")))?
    }

    async fn write_batch(&self, writes: Vec<Write>) -> Result<()> {
        if writes.is_empty() {
            return Ok(());
        }
        let env = self.env.clone();
        let (meta, entries) = (self.meta, self.entries);
        tokio::task::spawn_blocking(move || {
            let fail = |e: heed::Error| unavailable("writing the online store", e);
            let mut wtxn = env.write_txn().map_err(fail)?;
            for w in writes {
                match w {
                    Write::Put { view, entries: put } => {
                        for (key, value) in put {
                            entries
                                .put(&mut wtxn, &Self::key(&view, &key), &value)
                                .map_err(fail)?;
                        }
                    }
                    Write::Delete { view, keys } => {
                        for key in keys {
                            entries
                                .delete(&mut wtxn, &Self::key(&view, &key))
                                .map_err(fail)?;
                        }
                    }
                    Write::Meta { view, meta: bytes } => {
                        meta.put(&mut wtxn, view.as_bytes(), &bytes).map_err(fail)?;
                    }
                }
            }
            wtxn.commit().map_err(fail)
        })
        .await
        .map_err(|e| Error::Unavailable(format!("online store write task: {e}")))?
    }

    async fn scan(
        &self,
        view: &str,
        cursor: Option<Vec<u8>>,
        limit: usize,
    ) -> Result<(Entries, Option<Vec<u8>>)> {
        let rtxn = self
            .env
            .read_txn()
            .map_err(|e| unavailable("reading the online store", e))?;
        let prefix = Self::prefix(view);
        let start = match &cursor {
            Some(after) => Bound::Excluded(Self::key(view, after)),
            None => Bound::Included(prefix.clone()),
        };
        let end = Bound::Excluded(Self::prefix_end(view));
        let range = (
            start.as_ref().map(Vec::as_slice),
            end.as_ref().map(Vec::as_slice),
        );
        let iter = self
            .entries
            .range(&rtxn, &range)
            .map_err(|e| unavailable("reading the online store", e))?;
        let mut out = Vec::new();
        for item in iter {
            let (k, v) = item.map_err(|e| unavailable("reading the online store", e))?;
            out.push((k[prefix.len()..].to_vec(), v.to_vec()));
            if out.len() >= limit.max(1) {
                break;
            }
        }
        let next = (out.len() >= limit.max(1))
            .then(|| out.last().map(|(k, _)| k.clone()))
            .flatten();
        Ok((out, next))
    }

    async fn delete(&self, view: &str, keys: &[Vec<u8>]) -> Result<u64> {
        let mut wtxn = self
            .env
            .write_txn()
            .map_err(|e| unavailable("writing the online store", e))?;
        let mut n = 0;
        for key in keys {
            if self
                .entries
                .delete(&mut wtxn, &Self::key(view, key))
                .map_err(|e| unavailable("writing the online store", e))?
            {
                n += 1;
            }
        }
        wtxn.commit()
            .map_err(|e| unavailable("writing the online store", e))?;
        Ok(n)
    }

    async fn drop_view(&self, view: &str) -> Result<()> {
        let mut wtxn = self
            .env
            .write_txn()
            .map_err(|e| unavailable("writing the online store", e))?;
        let range = (
            Bound::Included(Self::prefix(view)),
            Bound::Excluded(Self::prefix_end(view)),
        );
        let range = (
            range.0.as_ref().map(Vec::as_slice),
            range.1.as_ref().map(Vec::as_slice),
        );
        self.entries
            .delete_range(&mut wtxn, &range)
            .map_err(|e| unavailable("writing the online store", e))?;
        self.meta
            .delete(&mut wtxn, view.as_bytes())
            .map_err(|e| unavailable("writing the online store", e))?;
        wtxn.commit()
            .map_err(|e| unavailable("writing the online store", e))
    }

    async fn views(&self) -> Result<Vec<String>> {
        let rtxn = self
            .env
            .read_txn()
            .map_err(|e| unavailable("reading the online store", e))?;
        let mut out = Vec::new();
        for item in self
            .meta
            .iter(&rtxn)
            .map_err(|e| unavailable("reading the online store", e))?
        {
            let (k, _) = item.map_err(|e| unavailable("reading the online store", e))?;
            out.push(String::from_utf8_lossy(k).into_owned());
        }
        Ok(out)
    }

    async fn ping(&self) -> Result<()> {
        self.env
            .read_txn()
            .map(drop)
            .map_err(|e| unavailable("reading the online store", e))
    }

    async fn try_lock(&self, view: &str, owner: &str, _lease: Duration) -> Result<bool> {
        let mut held = self
            .held
            .lock()
            .map_err(|_| Error::Corrupt("lock registry poisoned".into()))?;
        let id = (view.to_string(), owner.to_string());
        if held.contains_key(&id) {
            return Ok(true);
        }
        let path = self.lock_path(view);
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| unavailable(&format!("opening {}", path.display()), e))?;
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {
                held.insert(id, file);
                Ok(true)
            }
            Err(rustix::io::Errno::WOULDBLOCK) => Ok(false),
            Err(e) => Err(unavailable(&format!("locking {}", path.display()), e)),
        }
    }

    async fn unlock(&self, view: &str, owner: &str) -> Result<()> {
        let mut held = self
            .held
            .lock()
            .map_err(|_| Error::Corrupt("lock registry poisoned".into()))?;
        // Closing the file releases the lock.
        held.remove(&(view.to_string(), owner.to_string()));
        Ok(())
    }
}
