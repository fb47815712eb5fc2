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
//! Local tables are walked on disk; tables on S3 are listed through the lake's S3 storage
//! (object keys compared as `s3://bucket/key`).

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
    let location = metadata.location();
    let remote = s3_location(location);
    let root = match (&remote, lake.s3()) {
        (Some(_), Some(_)) => None,
        (Some(_), None) => {
            return Err(Error::Invalid(format!(
                "{ident} is at {location} but the lake's warehouse is local: orphan removal \
                 needs the lake configured for that bucket"
            )))
        }
        (None, _) => Some(local_path(location).ok_or_else(|| {
            Error::Invalid(format!(
                "{ident} is at {location}: orphan removal supports local and s3:// tables only"
            ))
        })?),
    };

    let mut referenced: HashSet<PathBuf> = HashSet::new();
    let mut referenced_s3: HashSet<String> = HashSet::new();
    let mut add = |p: &str| {
        if let Some(key) = s3_location(p) {
            referenced_s3.insert(key);
        } else if let Some(path) = local_path(p) {
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
    let report = match (root, remote, lake.s3()) {
        (Some(root), _, _) => {
            let dirs = [root.join("data"), root.join("metadata")];
            tokio::task::spawn_blocking(move || {
                let mut report = OrphanReport::default();
                for dir in dirs {
                    sweep(&dir, &referenced, cutoff, &mut report)?;
                }
                Ok::<_, Error>(report)
            })
            .await
            .map_err(|e| Error::Internal(format!("orphan sweep task failed: {e}")))??
        }
        (None, Some(root), Some(s3)) => {
            let mut report = OrphanReport::default();
            for dir in ["data", "metadata"] {
                let prefix = format!("s3://{}/{dir}/", root.trim_end_matches('/'));
                sweep_s3(s3, &table, &prefix, &referenced_s3, cutoff, &mut report).await?;
            }
            report
        }
        _ => return Err(Error::Internal("orphan removal: no storage".to_string())),
    };
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

/// Lists `prefix` on S3 and deletes old unreferenced objects (through the table's `FileIO`).
async fn sweep_s3(
    s3: &crate::s3::S3Storage,
    table: &iceberg::table::Table,
    prefix: &str,
    referenced: &HashSet<String>,
    cutoff: SystemTime,
    report: &mut OrphanReport,
) -> Result<()> {
    let objects = s3
        .list(prefix)
        .await
        .map_err(|e| Error::iceberg(format!("listing {prefix}"), e))?;
    for object in objects {
        report.files_scanned += 1;
        let Some(key) = s3_location(&object.location) else {
            continue;
        };
        if referenced.contains(&key) {
            continue;
        }
        if object.last_modified > cutoff {
            report.too_recent += 1;
            continue;
        }
        table
            .file_io()
            .delete(&object.location)
            .await
            .map_err(|e| Error::iceberg(format!("deleting {}", object.location), e))?;
        report.bytes_deleted += object.size;
        report.deleted.push(object.location);
    }
    Ok(())
}

/// `bucket/key` of an `s3://` or `s3a://` location, with duplicate and trailing `/` removed;
/// `None` for other schemes.
fn s3_location(location: &str) -> Option<String> {
    let rest = location
        .strip_prefix("s3://")
        .or_else(|| location.strip_prefix("s3a://"))?;
    let parts: Vec<&str> = rest.split('/').filter(|p| !p.is_empty()).collect();
    Some(parts.join("/"))
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

    #[test]
    fn s3_locations() {
        assert_eq!(s3_location("s3://b/a//c/").unwrap(), "b/a/c");
        assert_eq!(s3_location("s3a://b/a/c").unwrap(), "b/a/c");
        assert!(s3_location("/b/a").is_none());
    }
}
