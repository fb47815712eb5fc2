//! Small durable-filesystem helpers.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result};

/// Makes directory entries (created, renamed or removed files) in `dir` durable.
pub(crate) fn fsync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(format!("fsync directory {}", dir.display()), e))
}

/// Replaces `path` with `bytes` atomically and durably: write a temp file, fsync it, rename it
/// over `path`, fsync the directory.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let ctx = |what: &str| format!("{what} {}", path.display());
    let dir = path
        .parent()
        .ok_or_else(|| Error::Invalid(format!("{} has no parent", path.display())))?;
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = Path::new(&tmp_name);
    let mut f = File::create(tmp).map_err(|e| Error::io(ctx("creating temp for"), e))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| Error::io(ctx("writing temp for"), e))?;
    drop(f);
    std::fs::rename(tmp, path).map_err(|e| Error::io(ctx("renaming temp to"), e))?;
    fsync_dir(dir)
}

/// Whether the file system holding `dir` has `bytes` (and an inode) free for an unprivileged
/// writer. An unanswerable question counts as yes: the next write finds out.
pub(crate) fn has_room(dir: &Path, bytes: u64) -> bool {
    match rustix::fs::statvfs(dir) {
        Ok(st) => {
            let free = st.f_bavail.saturating_mul(st.f_frsize);
            // File systems without inode accounting report 0 files in total.
            free >= bytes && (st.f_files == 0 || st.f_favail > 0)
        }
        Err(_) => true,
    }
}

/// Topic and group names become path components: keep them to a safe alphabet (Kafka's).
pub(crate) fn validate_name(kind: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 249
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "{kind} name {name:?} must be 1-249 characters of [A-Za-z0-9._-]"
        )))
    }
}
