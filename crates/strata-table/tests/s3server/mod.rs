//! A real S3-compatible server for tests: moto (`moto_server`, in memory) on a free loopback
//! port, killed by PID when dropped, with a bucket created through the S3 API. Shared by this
//! crate's tests and the `strata` binary's (`crates/strata/tests/common/mod.rs` includes it).
//!
//! The binary is `$STRATA_MOTO_BIN`, else `moto_server` on `PATH`. Without one the test is
//! skipped with a loud message, unless `STRATA_TEST_REQUIRE_S3` is set (as `tests/run.sh`
//! does): then it fails.
//!
//! [`Outage`] is a TCP relay in front of the server that can be cut and restored: moto keeps
//! its buckets in memory, so "S3 went away and came back" is tested by cutting the network
//! path (connections refused and open ones dropped), not by restarting moto.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const ACCESS_KEY: &str = "strata-test-key";
pub const SECRET_KEY: &str = "strata-test-secret";
pub const REGION: &str = "us-east-1";

pub struct S3Server {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
}

fn find_bin() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("STRATA_MOTO_BIN") {
        return Some(PathBuf::from(p));
    }
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join("moto_server"))
            .find(|p| p.is_file())
    })
}

fn skip(reason: &str) -> Option<S3Server> {
    if std::env::var_os("STRATA_TEST_REQUIRE_S3").is_some() {
        panic!("STRATA_TEST_REQUIRE_S3 is set but {reason}");
    }
    eprintln!(
        "\n!!!!!!!! SKIPPING an S3 test: {reason}. Install moto with \
         `pip install 'moto[s3]' flask flask-cors` and set STRATA_MOTO_BIN=<venv>/bin/moto_server \
         (tests/run.sh does this) !!!!!!!!\n"
    );
    None
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

impl S3Server {
    /// Starts moto, or `None` when the test should be skipped (see the module docs).
    pub fn start() -> Option<S3Server> {
        let Some(bin) = find_bin() else {
            return skip("no moto_server ($STRATA_MOTO_BIN unset, none on PATH)");
        };
        if !bin.is_file() {
            return skip(&format!("{} does not exist", bin.display()));
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("moto.log")).expect("moto log");
        let child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
        let server = S3Server { child, port, dir };
        server.wait_ready();
        Some(server)
    }

    fn wait_ready(&self) {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(60) {
            if let Ok(r) = http(self.port, "GET", "/", &[]) {
                if r.starts_with("HTTP/1.1 200") || r.starts_with("HTTP/1.0 200") {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("moto did not start on {}:\n{}", self.port, self.log());
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("moto.log")).unwrap_or_default()
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Creates `bucket` (moto accepts unsigned requests).
    pub fn create_bucket(&self, bucket: &str) {
        let r = http(self.port, "PUT", &format!("/{bucket}"), &[]).expect("create bucket");
        assert!(
            r.starts_with("HTTP/1.1 200") || r.starts_with("HTTP/1.0 200"),
            "{r}"
        );
    }

    /// Keys under `bucket/prefix` (moto's ListObjectsV2, unsigned), first page (1000 keys).
    pub fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let r = http(
            self.port,
            "GET",
            &format!("/{bucket}?list-type=2&prefix={prefix}"),
            &[],
        )
        .expect("list bucket");
        r.split("<Key>")
            .skip(1)
            .filter_map(|s| s.split("</Key>").next())
            .map(str::to_string)
            .collect()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.0 request on loopback; the whole response as text.
fn http(port: u16, method: &str, path: &str, body: &[u8]) -> std::io::Result<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )?;
    s.write_all(body)?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    Ok(String::from_utf8_lossy(&out).to_string())
}

/// A TCP relay from its own loopback port to the S3 server that can be cut ([`Outage::cut`]:
/// the listener closes and every relayed connection is shut down) and restored on the same
/// port ([`Outage::restore`]).
pub struct Outage {
    pub port: u16,
    target: u16,
    state: Arc<RelayState>,
}

#[derive(Default)]
struct RelayState {
    up: AtomicBool,
    stop: AtomicBool,
    conns: Mutex<Vec<TcpStream>>,
    listener_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Outage {
    pub fn new(target: u16) -> Outage {
        let outage = Outage {
            port: free_port(),
            target,
            state: Arc::default(),
        };
        outage.restore();
        outage
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// S3 unreachable: connections are refused, open ones are dropped.
    pub fn cut(&self) {
        self.state.up.store(false, Ordering::SeqCst);
        // Wake the accept loop so it closes the listener.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(h) = self
            .state
            .listener_thread
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            let _ = h.join();
        }
        for c in self
            .state
            .conns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            let _ = c.shutdown(Shutdown::Both);
        }
    }

    /// S3 reachable again on the same port.
    pub fn restore(&self) {
        let listener = {
            let start = Instant::now();
            loop {
                match TcpListener::bind(("127.0.0.1", self.port)) {
                    Ok(l) => break l,
                    Err(e) if start.elapsed() > Duration::from_secs(10) => {
                        panic!("rebinding relay port {}: {e}", self.port)
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        };
        self.state.up.store(true, Ordering::SeqCst);
        let state = self.state.clone();
        let target = self.target;
        let handle = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if !state.up.load(Ordering::SeqCst) || state.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = conn else { continue };
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                relay(&state, client, server);
            }
        });
        *self
            .state
            .listener_thread
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(handle);
    }
}

impl Drop for Outage {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        self.cut();
    }
}

fn relay(state: &Arc<RelayState>, client: TcpStream, server: TcpStream) {
    let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    {
        let mut conns = state.conns.lock().unwrap_or_else(|e| e.into_inner());
        conns.retain(|c| c.peer_addr().is_ok());
        if let (Ok(a), Ok(b)) = (client.try_clone(), server.try_clone()) {
            conns.push(a);
            conns.push(b);
        }
    }
    std::thread::spawn(move || pipe(client, s2));
    std::thread::spawn(move || pipe(server, c2));
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = [0u8; 64 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}
