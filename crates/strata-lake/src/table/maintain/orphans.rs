//! Orphan removal: delete files under a table's `data/` and `metadata/` directories that
//! nothing references and that are older than a cutoff.
//!
//! Referenced: the current metadata file and those in its metadata log, every snapshot's
//! manifest list, every manifest those list, every file those manifests mention (tombstones
//! included), and statistics files. Everything else is an orphan: files of a write that
//! never committed (a crash, a lost compare-and-swap), metadata files that fell off the log,
//! files an interrupted expiry left behind. The age cutoff (3 days by default in the CLI)
//! keeps the files of writes in flight: a writer creates its files before it commits them.
//!
//! Local tables only (the lake's warehouse is a directory).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use iceberg::TableIdent;

use super::reach::{reach, ManifestCache};
use crate::error::{Error, Result};
use crate::lake::Lake;

/// What an orphan removal did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OrphanReport {
    /// Files looked at under `data/` and `metadata/`.
    pub files_scanned: usize,
    /// Orphans deleted (full paths).
    pub deleted: Vec<String>,
    pub bytes_deleted: u64,
    /// Unreferenced files left because they are newer than the cutoff.
    pub too_recent: usize,
}

/// Deletes unreferenced files of `ident` last modified more than `older_than` ago.
pub async fn remove_orphans(
    lake: &Lake,
    ident: &TableIdent,
    older_than: Duration,
) -> Result<OrphanReport> {
    let table = lake.load_table(ident).await?;
    let metadata = table.metadata();
    let root = local_path(metadata.location()).ok_or_else(|| {
        Error::Invalid(format!(
            "{ident} is at {}: orphan removal supports local tables only",
            metadata.location()
        ))
    })?;

    let mut referenced: HashSet<PathBuf> = HashSet::new();
    let mut add = |p: &str| {
        if let Some(path) = local_path(p) {
            referenced.insert(path);
        }
    };
    if let Some(current) = table.metadata_location() {
        add(current);
    }
    for log in metadata.metadata_log() {
        add(&log.metadata_file);
    }
    for stats in metadata.statistics_iter() {
        add(&stats.statistics_path);
    }
    for stats in metadata.partition_statistics_iter() {
        add(&stats.statistics_path);
    }
    let mut cache = ManifestCache::default();
    let all = reach(
        &table,
        metadata.snapshots().map(|s| s.as_ref()),
        false,
        false,
        &mut cache,
    )
    .await?;
    for p in all
        .manifest_lists
        .iter()
        .chain(&all.manifests)
        .chain(all.files.keys())
    {
        add(p);
    }

    let cutoff = SystemTime::now()
        .checked_sub(older_than)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let dirs = [root.join("data"), root.join("metadata")];
    let report = tokio::task::spawn_blocking(move || {
        let mut report = OrphanReport::default();
        for dir in dirs {
            sweep(&dir, &referenced, cutoff, &mut report)?;
        }
        Ok::<_, Error>(report)
    })
    .await
    .map_err(|e| Error::Internal(format!("orphan sweep task failed: {e}")))??;
    tracing::info!(
        table = %ident,
        scanned = report.files_scanned,
        deleted = report.deleted.len(),
        bytes = report.bytes_deleted,
        too_recent = report.too_recent,
        "removed orphan files"
    );
    Ok(report)
}

/// Walks `dir` (symlinks are not followed) and deletes old unreferenced files.
fn sweep(
    dir: &Path,
    referenced: &HashSet<PathBuf>,
    cutoff: SystemTime,
    report: &mut OrphanReport,
) -> Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(format!("listing {}", dir.display()), e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
        let path = entry.path();
        let meta = entry
            .metadata()
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        if meta.is_dir() {
            sweep(&path, referenced, cutoff, report)?;
            continue;
        }
        if !meta.is_file() {
            continue;
        }
        report.files_scanned += 1;
        if referenced.contains(&path) {
            continue;
        }
        let modified = meta.modified().unwrap_or_else(|_| SystemTime::now());
        if modified > cutoff {
            report.too_recent += 1;
            continue;
        }
        match std::fs::remove_file(&path) {
            Ok(()) => {
                report.bytes_deleted += meta.len();
                report.deleted.push(path.display().to_string());
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(format!("deleting {}", path.display()), e)),
        }
    }
    Ok(())
}

/// The local file system path of a table location or file path (`/abs/path`,
/// `file:/abs/path` or `file:///abs/path`); `None` for other schemes.
fn local_path(location: &str) -> Option<PathBuf> {
    let rest = match location.strip_prefix("file:") {
        Some(rest) => {
            let trimmed = rest.trim_start_matches('/');
            format!("/{trimmed}")
        }
        None if location.starts_with('/') => location.to_string(),
        None => return None,
    };
    Some(normalize(Path::new(&rest)))
}

/// Removes `.` and `..` components and duplicate separators (no file system access).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_paths() {
        assert_eq!(local_path("/a/b").unwrap(), PathBuf::from("/a/b"));
        assert_eq!(local_path("file:///a/b").unwrap(), PathBuf::from("/a/b"));
        assert_eq!(
            local_path("file:/a//b/./c").unwrap(),
            PathBuf::from("/a/b/c")
        );
        assert!(local_path("s3://bucket/a").is_none());
    }
}
