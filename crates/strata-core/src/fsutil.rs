//! Durable-file helpers: the one place Strata replaces a small file atomically (the app and
//! token registries, CDC state files, the bus's topic and group files), makes a directory's
//! entries durable, and asks whether a file system has room.
//!
//! They answer `std::io::Result` so that each crate wraps the error in its own type with what
//! it was doing (the bus, for one, turns a full disk into `StorageFull` by the error's kind).

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Replaces `path` with `bytes` atomically and durably: the parent directory is created when
/// missing, the bytes go to `<path>.tmp`, which is fsync'd and renamed over `path`, then the
/// directory is fsync'd so that the rename itself survives a crash. A crash leaves the old
/// file or the new one, never a torn one; an error from any step (the directory's fsync
/// included) is returned, so a caller never takes an unsynced file for a saved one.
pub fn replace_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        // A bare file name: the file lives in the current directory.
        Some(d) if d.as_os_str().is_empty() => Path::new("."),
        Some(d) => d,
        None => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{} is not a file path", path.display()),
            ))
        }
    };
    std::fs::create_dir_all(dir)?;
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    let mut file = File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)?;
    fsync_dir(dir)
}

/// Makes the directory entries of `dir` (files created, renamed or removed in it) durable.
pub fn fsync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir).and_then(|d| d.sync_all())
}

/// Whether the file system holding `dir` has `bytes` (and an inode) free for an unprivileged
/// writer. A question the file system cannot answer counts as yes: the next write finds out.
pub fn has_room(dir: &Path, bytes: u64) -> bool {
    match rustix::fs::statvfs(dir) {
        Ok(st) => {
            let free = st.f_bavail.saturating_mul(st.f_frsize);
            // File systems without inode accounting report 0 files in total.
            free >= bytes && (st.f_files == 0 || st.f_favail > 0)
        }
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<std::ffi::OsString> {
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn replaces_the_file_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("apps.json");
        replace_file(&path, b"one").unwrap();
        replace_file(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert_eq!(
            names(path.parent().unwrap()),
            vec![std::ffi::OsString::from("apps.json")]
        );
    }

    #[test]
    fn a_failed_replace_keeps_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        replace_file(&path, b"old").unwrap();
        // The temp file's name is taken by a directory: creating it fails, nothing is renamed.
        std::fs::create_dir(dir.path().join("state.json.tmp")).unwrap();
        assert!(replace_file(&path, b"new").is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
    }

    #[test]
    fn a_path_without_a_file_name_is_refused() {
        let err = replace_file(Path::new("/"), b"x").unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    }

    #[test]
    fn fsync_dir_of_a_missing_directory_fails() {
        let dir = tempfile::tempdir().unwrap();
        let err = fsync_dir(&dir.path().join("missing")).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
        fsync_dir(dir.path()).unwrap();
    }

    #[test]
    fn has_room_compares_with_the_free_space() {
        let dir = tempfile::tempdir().unwrap();
        assert!(has_room(dir.path(), 0));
        assert!(!has_room(dir.path(), u64::MAX));
    }
}
