//! A real `redis-server` (Debian package `redis-server`, or `STRATA_REDIS_SERVER_BIN`) on a free
//! 127.0.0.1 port, without persistence, its files in a temp dir, killed when dropped. Unlike
//! MariaDB and PostgreSQL, a missing binary skips (returns `None`, saying why) unless
//! `STRATA_TEST_REQUIRE_REDIS=1`, which `tests/run.sh` sets.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct RedisServer {
    bin: PathBuf,
    port: u16,
    dir: tempfile::TempDir,
    extra: Vec<String>,
    child: Option<Child>,
}

fn redis_server_bin() -> Option<PathBuf> {
    if let Ok(bin) = std::env::var("STRATA_REDIS_SERVER_BIN") {
        return Some(PathBuf::from(bin));
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("redis-server"))
            .find(|p| p.is_file())
    })
}

impl RedisServer {
    /// A started server; `None` (after saying why) when no binary is here and none is required.
    pub fn start() -> Option<RedisServer> {
        Self::start_with(&[])
    }

    /// [`RedisServer::start`] with extra server arguments (e.g. `["--requirepass", "pw"]`).
    pub fn start_with(extra: &[&str]) -> Option<RedisServer> {
        let Some(bin) = redis_server_bin() else {
            assert!(
                std::env::var("STRATA_TEST_REQUIRE_REDIS").as_deref() != Ok("1"),
                "STRATA_TEST_REQUIRE_REDIS=1 but no redis-server (apt-get install redis-server, \
                 or set STRATA_REDIS_SERVER_BIN)"
            );
            eprintln!(
                "skipping the Redis part: no redis-server on PATH or in STRATA_REDIS_SERVER_BIN"
            );
            return None;
        };
        let mut server = RedisServer {
            bin,
            port: crate::free_port(),
            dir: tempfile::tempdir().expect("temp dir"),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            child: None,
        };
        server.restart();
        Some(server)
    }

    /// Starts the server (again) on its port, waiting until it listens. Its data is gone after
    /// a stop: nothing is persisted.
    pub fn restart(&mut self) {
        self.stop();
        let mut child = Command::new(&self.bin)
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .args(&self.extra)
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting redis-server");
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                self.child = Some(child);
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("redis-server did not listen on port {}", self.port);
    }

    /// Kills the server (SIGKILL) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
