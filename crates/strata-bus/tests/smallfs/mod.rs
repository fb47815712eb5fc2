//! A small real file system for disk-full tests: a tmpfs of a few MiB mounted on a temp
//! directory, filled to the last byte by a filler file and emptied again. Shared by this
//! crate's tests and the `strata` binary's (`crates/strata/tests/disk_full.rs` includes it).
//!
//! Mounting needs root (CI runs as root). Without the permission the test is skipped with a
//! loud message, unless `STRATA_TEST_REQUIRE_MOUNT` is set (as `tests/run.sh` does): then it
//! fails. The file system is unmounted when the value is dropped (a failing test included);
//! a mount left behind by a test process that was killed is unmounted by the next one.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The mount's source name: `strata-test-<pid>` (how stale ones are recognised).
const SOURCE_PREFIX: &str = "strata-test-";

pub struct SmallFs {
    /// Removed after the unmount (field order: `mounted` is not a drop guard of its own).
    dir: tempfile::TempDir,
    mounted: bool,
}

impl SmallFs {
    /// Mounts a tmpfs of `bytes`; `None` when mounting is not permitted here (and not required).
    pub fn mount(bytes: u64) -> Option<SmallFs> {
        unmount_stale();
        let dir = tempfile::tempdir().expect("tempdir");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={bytes},mode=0755"))
            .arg(format!("{SOURCE_PREFIX}{}", std::process::id()))
            .arg(dir.path())
            .output();
        match out {
            Ok(o) if o.status.success() => Some(SmallFs { dir, mounted: true }),
            Ok(o) => skip(&format!(
                "mount -t tmpfs failed: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            )),
            Err(e) => skip(&format!("cannot run mount: {e}")),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    fn filler(&self) -> PathBuf {
        self.dir.path().join("filler")
    }

    /// Fills the file system to the last byte with a filler file (on top of what is there).
    pub fn fill(&self) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.filler())
            .expect("create filler");
        let chunk = vec![0x5a_u8; 64 << 10];
        // Big chunks, then ever smaller ones down to a single byte.
        let mut size = chunk.len();
        while size > 0 {
            match f.write(&chunk[..size]) {
                Ok(0) => size /= 2,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::StorageFull => size /= 2,
                Err(e) => panic!("filling: {e}"),
            }
        }
    }

    /// Deletes the filler: the space is back.
    pub fn free(&self) {
        std::fs::remove_file(self.filler()).expect("remove filler");
    }

    /// Bytes available (statvfs).
    pub fn available(&self) -> u64 {
        let out = Command::new("df")
            .args(["--output=avail", "-B1"])
            .arg(self.dir.path())
            .output()
            .expect("df");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .nth(1)
            .and_then(|l| l.trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        if self.mounted {
            unmount(self.dir.path());
        }
    }
}

fn unmount(path: &Path) {
    let ok = Command::new("umount")
        .arg(path)
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        // Busy (a child still holds a file open): detach it now, freed when released.
        let _ = Command::new("umount").arg("-l").arg(path).status();
    }
}

/// Unmounts tmpfs mounts of earlier test processes that no longer run.
fn unmount_stale() {
    let Ok(mounts) = std::fs::read_to_string("/proc/mounts") else {
        return;
    };
    for line in mounts.lines() {
        let mut fields = line.split_whitespace();
        let (Some(source), Some(target)) = (fields.next(), fields.next()) else {
            continue;
        };
        let Some(pid) = source.strip_prefix(SOURCE_PREFIX) else {
            continue;
        };
        if !Path::new("/proc").join(pid).exists() {
            unmount(Path::new(target));
        }
    }
}

fn skip<T>(reason: &str) -> Option<T> {
    if std::env::var_os("STRATA_TEST_REQUIRE_MOUNT").is_some() {
        panic!("STRATA_TEST_REQUIRE_MOUNT is set but {reason}");
    }
    eprintln!("SKIPPED: this disk-full test needs to mount a small tmpfs (run as root): {reason}");
    None
}
