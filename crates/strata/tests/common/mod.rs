//! Helpers for tests that run the real `strata` binary on loopback: a temp data dir, a
//! running `serve`, a tiny HTTP/1.1 client, and `strata sql` as JSON rows.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const WRITE_KEY: &str = "test-write-key";

pub fn strata_bin() -> &'static str {
    env!("CARGO_BIN_EXE_strata")
}

/// A data dir with strata.toml and one app registered.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
}

impl Env {
    pub fn new() -> Env {
        Env::with_app(None)
    }

    pub fn with_app(secret: Option<&str>) -> Env {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = Command::new(strata_bin())
            .args(["init"])
            .arg(dir.path())
            .output()
            .expect("strata init");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let config = dir.path().join("strata.toml");
        let mut cmd = Command::new(strata_bin());
        cmd.args(["apps", "create", "test", "--write-key", WRITE_KEY, "-c"])
            .arg(&config);
        if let Some(s) = secret {
            cmd.args(["--secret", s]);
        }
        let out = cmd.output().expect("strata apps create");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Env { dir, config }
    }

    /// Switches strata.toml to the Kafka bus at `brokers`.
    pub fn use_kafka(&self, brokers: &str) {
        let text = std::fs::read_to_string(&self.config).expect("read strata.toml");
        assert!(text.contains("kind = \"embedded\"") && text.contains("brokers = \"\""));
        let text = text
            .replacen("kind = \"embedded\"", "kind = \"kafka\"", 1)
            .replacen("brokers = \"\"", &format!("brokers = \"{brokers}\""), 1);
        std::fs::write(&self.config, text).expect("write strata.toml");
    }

    /// Switches strata.toml's lake to `s3://<bucket>/lake` on the S3 server at `endpoint`
    /// (path-style, the test credentials), then sets each `(key, TOML value)` of `extra` in
    /// `[lake]`.
    pub fn use_s3(&self, endpoint: &str, bucket: &str, extra: &[(&str, &str)]) {
        let warehouse = format!("\"s3://{bucket}/lake\"");
        let endpoint = format!("\"{endpoint}\"");
        let region = format!("\"{}\"", s3server::REGION);
        let key = format!("\"{}\"", s3server::ACCESS_KEY);
        let secret = format!("\"{}\"", s3server::SECRET_KEY);
        let mut keys: Vec<(&str, &str)> = vec![
            ("warehouse", &warehouse),
            ("s3_endpoint", &endpoint),
            ("s3_region", &region),
            ("s3_access_key_id", &key),
            ("s3_secret_access_key", &secret),
            ("s3_path_style", "true"),
        ];
        keys.extend_from_slice(extra);
        self.set_lake_keys(&keys);
    }

    /// Puts this lake's tables in the REST catalog at `uri` (another `strata serve`'s
    /// `/iceberg`) with `token`, its files in `warehouse` (that server's warehouse directory).
    pub fn use_rest_catalog(&self, uri: &str, token: &str, warehouse: &Path) {
        let uri = format!("\"{uri}\"");
        let token = format!("\"{token}\"");
        self.set_keys(
            "[catalog]",
            &[("kind", "\"rest\""), ("uri", &uri), ("token", &token)],
        );
        let warehouse = format!("\"{}\"", warehouse.display());
        self.set_lake_keys(&[("warehouse", &warehouse)]);
    }

    /// Replaces `key = …` lines of `[lake]` in strata.toml.
    pub fn set_lake_keys(&self, keys: &[(&str, &str)]) {
        self.set_keys("[lake]", keys)
    }

    /// Replaces `key = …` lines of `section` (e.g. `"[lake]"`) in strata.toml.
    pub fn set_keys(&self, section_header: &str, keys: &[(&str, &str)]) {
        let text = std::fs::read_to_string(&self.config).expect("read strata.toml");
        let mut section = String::new();
        let mut out = String::new();
        for line in text.lines() {
            if line.starts_with('[') {
                section = line.to_string();
            }
            let key = line.split('=').next().unwrap_or("").trim();
            let replaced = (section == section_header)
                .then(|| keys.iter().find(|(k, _)| *k == key))
                .flatten();
            match replaced {
                Some((k, v)) => out.push_str(&format!("{k} = {v}")),
                None => out.push_str(line),
            }
            out.push('\n');
        }
        for (k, _) in keys {
            assert!(
                out.contains(&format!("\n{k} = ")),
                "no {section_header} key {k} in strata.toml"
            );
        }
        std::fs::write(&self.config, out).expect("write strata.toml");
    }

    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Starts `strata serve` on an ephemeral loopback port.
    pub fn serve(&self, flush_interval: &str) -> Server {
        self.serve_with_env(flush_interval, &[])
    }

    pub fn serve_with_env(&self, flush_interval: &str, env: &[(&str, &str)]) -> Server {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("serve.log"))
            .expect("log file");
        let mut cmd = Command::new(strata_bin());
        cmd.args(["serve", "-c"])
            .arg(&self.config)
            .args([
                "--listen",
                "127.0.0.1:0",
                "--flush-interval",
                flush_interval,
            ])
            .stdout(Stdio::piped())
            .stderr(log);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn strata serve");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read serve output");
        let addr = line
            .trim()
            .rsplit("http://")
            .next()
            .and_then(|a| a.parse::<SocketAddr>().ok())
            .unwrap_or_else(|| {
                let log =
                    std::fs::read_to_string(self.dir.path().join("serve.log")).unwrap_or_default();
                panic!("serve did not start: {line:?}\n{log}")
            });
        Server { child, addr }
    }

    /// Runs `strata sql --format json` and returns one JSON object per row.
    pub fn sql(&self, query: &str) -> Vec<serde_json::Value> {
        let out = Command::new(strata_bin())
            .args(["sql", "--format", "json", "-c"])
            .arg(&self.config)
            .arg(query)
            .output()
            .expect("strata sql");
        assert!(
            out.status.success(),
            "sql failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).expect("json row"))
            .collect()
    }

    /// First column of the first row as an integer.
    pub fn sql_count(&self, query: &str) -> i64 {
        let rows = self.sql(query);
        rows.first()
            .and_then(|r| r.as_object())
            .and_then(|o| o.values().next())
            .and_then(|v| v.as_i64())
            .unwrap_or(0)
    }

    /// Waits (bounded) until `query` returns `expected`; this checks an eventual state, not speed.
    pub fn wait_count(&self, query: &str, expected: i64, limit: Duration) {
        let start = Instant::now();
        let mut last = -1;
        while start.elapsed() < limit {
            last = self.sql_count(query);
            if last == expected {
                return;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        panic!("{query} gave {last}, expected {expected}");
    }
}

pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
}

impl Server {
    /// SIGTERM and wait: the graceful path (flush + commit).
    pub fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }

    /// SIGKILL: the crash path.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A failing test shows what the server logged: the tail of `serve.log`.
impl Drop for Env {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log =
                std::fs::read_to_string(self.dir.path().join("serve.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            eprintln!("--- last lines of serve.log ---");
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A response from [`post`].
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// One HTTP/1.1 POST on a fresh connection. `headers` are extra header lines.
pub fn post(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> std::io::Result<Response> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes())?;
    // A server may answer 413 and close before reading the whole body; that is fine.
    let _ = stream.write_all(body);
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse_response(&raw)
}

pub fn get(addr: SocketAddr, path: &str) -> std::io::Result<Response> {
    get_with(addr, path, &[])
}

pub fn get_with(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, String)],
) -> std::io::Result<Response> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> std::io::Result<Response> {
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, "bad http response");
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(bad)?;
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(bad)?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    Ok(Response {
        status,
        headers,
        body,
    })
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

pub fn basic_auth(key: &str) -> (&'static str, String) {
    use base64::Engine;
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{key}:"));
    ("Authorization", format!("Basic {token}"))
}

/// A Segment batch of `n` track events with message ids `<prefix>-<i>`.
pub fn batch(prefix: &str, n: usize) -> Vec<u8> {
    let items: Vec<serde_json::Value> = (0..n)
        .map(|i| {
            serde_json::json!({
                "type": "track",
                "event": "Post Viewed",
                "messageId": format!("{prefix}-{i}"),
                "userId": format!("user-{}", i % 13),
                "timestamp": chrono::Utc::now().to_rfc3339(),
                "properties": {"post_id": i, "feed": "home"},
                "context": {"userAgent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1"}
            })
        })
        .collect();
    serde_json::to_vec(
        &serde_json::json!({ "batch": items, "sentAt": chrono::Utc::now().to_rfc3339() }),
    )
    .expect("json")
}

pub fn lake_files(data: &Path) -> usize {
    fn walk(p: &Path, n: &mut usize) {
        if let Ok(rd) = std::fs::read_dir(p) {
            for e in rd.flatten() {
                let path = e.path();
                if path.is_dir() {
                    walk(&path, n);
                } else if path.extension().is_some_and(|x| x == "parquet") {
                    *n += 1;
                }
            }
        }
    }
    let mut n = 0;
    walk(&data.join("lake"), &mut n);
    n
}
pub mod cdc;
pub mod mariadb;

/// A tansu broker for the Kafka-bus tests (shared with strata-bus-kafka's own tests).
#[path = "../../../strata-bus-kafka/tests/broker/mod.rs"]
pub mod broker;
pub mod postgres;

/// One HTTP/1.1 request of any method on a fresh connection (the REST catalog tests).
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: Option<&[u8]>,
) -> std::io::Result<Response> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(b) = body {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes())?;
    if let Some(b) = body {
        stream.write_all(b)?;
    }
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    if method == "HEAD" {
        // No body follows a HEAD response whatever Content-Length says.
        raw.extend_from_slice(b"\r\n\r\n");
    }
    parse_response(&raw)
}

/// `strata tokens create NAME`: the printed token.
pub fn create_token(config: &Path, name: &str) -> String {
    let out = Command::new(strata_bin())
        .args(["tokens", "create", name, "-c"])
        .arg(config)
        .output()
        .expect("strata tokens create");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// moto (S3) and a cuttable relay in front of it (shared with strata-table's own tests).
#[path = "../../../strata-table/tests/s3server/mod.rs"]
pub mod s3server;
