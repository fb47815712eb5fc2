//! Test harness: a real collector on 127.0.0.1 (ephemeral port) over a real `EmbeddedLog` in a
//! temp dir, and a tiny raw HTTP/1.1 client (so tests control every byte on the wire).

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use base64::Engine;
use mmdb_writer::{Value, Writer};
use strata_bus::embedded::{EmbeddedLog, EmbeddedOptions};
use strata_bus::Log;
use strata_collect::config::CollectorOptions as Config;
use strata_collect::Collector;
use strata_core::apps::{App, Apps};
use strata_core::BusRecord;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

pub const WEB_KEY: &str = "wk_web";
pub const SIGNED_KEY: &str = "wk_signed";
pub const SECRET: &str = "s3cret";
pub const MAX_BODY: usize = 64 * 1024;

pub struct Server {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Server {
    pub async fn start(config: &Config, log: Arc<dyn Log>) -> Server {
        let collector = Collector::new(config, log).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(strata_collect::serve(
            listener,
            collector.router(),
            async move {
                let _ = stopped.await;
            },
        ));
        Server {
            addr,
            stop: Some(stop),
            task,
        }
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = (&mut self.task).await;
    }
}

/// Config over `dir`: two apps (one signed), small limits, a test geo DB, 127.0.0.1 trusted.
pub fn setup(dir: &Path) -> Config {
    let mut apps = Apps::default();
    for (name, key, secret) in [
        ("web", WEB_KEY, None),
        ("signed", SIGNED_KEY, Some(SECRET.to_string())),
    ] {
        apps.add(App {
            name: name.into(),
            write_key: key.into(),
            secret,
            created_at: "2026-11-22T00:00:00Z".into(),
        })
        .unwrap();
    }
    let mut config = Config::new(dir.join("data"));
    apps.save(&config.apps_path()).unwrap();
    let geo = dir.join("city.mmdb");
    std::fs::write(&geo, geo_db()).unwrap();
    config.collector.geoip_db = Some(geo);
    config.server.max_body_bytes = MAX_BODY;
    config.collector.max_event_bytes = 8 * 1024;
    config.server.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    config.partitions = 2;
    config
}

pub async fn open_log(config: &Config, options: EmbeddedOptions) -> Arc<EmbeddedLog> {
    EmbeddedLog::open(&config.data_dir.join("bus"), options)
        .await
        .unwrap()
}

/// A GeoLite2-City-shaped database knowing 81.2.69.0/24 (Paris, Île-de-France, FR).
pub fn geo_db() -> Vec<u8> {
    let mut w = Writer::new("GeoLite2-City");
    let names = |n: &str| Value::map([("en", Value::from(n))]);
    let record = Value::map([
        ("city", Value::map([("names", names("Paris"))])),
        (
            "country",
            Value::map([("iso_code", Value::from("FR")), ("names", names("France"))]),
        ),
        (
            "subdivisions",
            Value::Array(vec![Value::map([
                ("iso_code", Value::from("IDF")),
                ("names", names("Île-de-France")),
            ])]),
        ),
    ]);
    w.insert_value(
        "81.2.69.0/24".parse::<mmdb_writer::ipnet::IpNet>().unwrap(),
        record,
    )
    .unwrap();
    w.to_bytes().unwrap()
}

/// Every record of the `events` topic.
pub async fn bus_records(log: &dyn Log) -> Vec<BusRecord> {
    let mut out = Vec::new();
    for p in 0..log.partitions("events").await.unwrap() {
        for r in log.read("events", p, 0, 100_000, 64 << 20).await.unwrap() {
            out.push(BusRecord::decode(&r.value).unwrap());
        }
    }
    out
}

pub fn basic(key: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{key}:"))
    )
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub json: serde_json::Value,
}

/// Sends one request (with `Content-Length` and `Connection: close`) and reads the answer.
/// The body is written concurrently with reading, so an early answer (413) is still seen.
pub async fn post(addr: SocketAddr, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut rd, mut wr) = stream.into_split();
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nHost: test\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let body = body.to_vec();
    let writer = tokio::spawn(async move {
        let _ = wr.write_all(head.as_bytes()).await;
        let _ = wr.write_all(&body).await;
        wr
    });
    let raw = read_all(&mut rd).await;
    let _ = writer.await;
    parse_response(&raw)
}

pub async fn get(addr: SocketAddr, path: &str) -> Response {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let raw = read_all(&mut s).await;
    parse_response(&raw)
}

pub async fn read_all(rd: &mut (impl AsyncReadExt + Unpin)) -> Vec<u8> {
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match rd.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
    }
    raw
}

pub fn parse_response(raw: &[u8]) -> Response {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP response in {text:?}"));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap();
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let body = if headers.get("transfer-encoding").map(String::as_str) == Some("chunked") {
        dechunk(body)
    } else {
        body.to_string()
    };
    let json = serde_json::from_str(&body).unwrap_or(serde_json::Value::Null);
    Response {
        status,
        headers,
        json,
    }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((len, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(len.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}
