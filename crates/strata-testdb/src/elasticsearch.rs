//! An Elasticsearch-compatible server for the Elasticsearch source's tests and benchmark:
//! `noida-db` (PyPI, pinned in `tests/python/requirements.txt`), an emulator of the
//! Elasticsearch 8.15 REST API (`_bulk`, search, scroll, point in time + `search_after`) that
//! installs with pip where no real Elasticsearch can (see `../shared/TEST-SERVERS.md`). It is
//! not Lucene, and not OpenSearch.
//!
//! Started on a free 127.0.0.1 port with its data in a temp dir, killed when dropped. The
//! binary is `STRATA_NOIDA_BIN`, else the one inside the test venv's `noida_db` package
//! (`$STRATA_TEST_VENV`, default `<workspace>/.venv`). A missing binary skips (returns `None`,
//! saying why) unless `STRATA_TEST_REQUIRE_ES=1`, which `tests/run.sh` sets.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct EsServer {
    port: u16,
    child: Child,
    dir: tempfile::TempDir,
}

/// The noida-db binary: `STRATA_NOIDA_BIN`, else `<venv>/lib/python3*/site-packages/noida_db/noida-db`.
fn noida_bin() -> Option<PathBuf> {
    if let Ok(bin) = std::env::var("STRATA_NOIDA_BIN") {
        return Some(PathBuf::from(bin));
    }
    let venv = std::env::var("STRATA_TEST_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv"));
    let lib = std::fs::read_dir(venv.join("lib")).ok()?;
    lib.filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("python3"))
        .map(|e| e.path().join("site-packages/noida_db/noida-db"))
        .find(|p| p.is_file())
}

impl EsServer {
    /// A started server; `None` (after saying why) when no binary is here and none is
    /// required.
    pub fn start() -> Option<EsServer> {
        let Some(bin) = noida_bin() else {
            assert!(
                std::env::var("STRATA_TEST_REQUIRE_ES").as_deref() != Ok("1"),
                "STRATA_TEST_REQUIRE_ES=1 but no noida-db (pip install -r tests/python/requirements.txt \
                 into $STRATA_TEST_VENV, or set STRATA_NOIDA_BIN)"
            );
            eprintln!(
                "skipping the Elasticsearch part: no noida-db in STRATA_NOIDA_BIN or the test venv"
            );
            return None;
        };
        let dir = tempfile::tempdir().expect("temp dir");
        for _ in 0..3 {
            let port = crate::free_port();
            let mut child = Command::new(&bin)
                .arg("start")
                .arg("--data-dir")
                .arg(dir.path())
                .args(["--host", "127.0.0.1", "--only", "elasticsearch"])
                .args(["--elasticsearch-port", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
            for _ in 0..400 {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if ready(port) {
                    return Some(EsServer { port, child, dir });
                }
                std::thread::sleep(Duration::from_millis(25));
            }
            // Exited (the port was taken meanwhile) or never answered: try another port.
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("noida-db ({}) did not answer on 127.0.0.1", bin.display());
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port>`
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for EsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether `GET /` answers 200 with a version number (read until it shows, or the server
/// stops sending: it may keep the connection open whatever the request asks).
fn ready(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    if s.set_read_timeout(Some(Duration::from_secs(2))).is_err()
        || write!(
            s,
            "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        )
        .is_err()
    {
        return false;
    }
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&seen);
        if text.starts_with("HTTP/1.1 200") && text.contains("\"number\"") {
            return true;
        }
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return false,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
}
