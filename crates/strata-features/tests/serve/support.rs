//! Harness of the serving tests: an online store (embedded in a temp dir, or a real
//! `redis-server` on 127.0.0.1), views and tokens, and the feature server's router on
//! 127.0.0.1:0.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use strata_core::tokens::{NewToken, Scope, Tokens};
use strata_features::view::ViewFile;
use strata_features::{FeatureServer, FeatureView};
use strata_online::config::OnlineKind;
use strata_online::meta::Column;
use strata_online::{entity_key, FeatureType, OnlineConfig, OnlineStore, SyncRow, Value};

/// A view from its file's text.
pub fn view(name: &str, text: &str) -> FeatureView {
    let file: ViewFile = toml::from_str(text).unwrap();
    FeatureView::from_file(file, name, &format!("features/{name}.toml")).unwrap()
}

pub fn col(name: &str, ty: FeatureType) -> Column {
    Column {
        name: name.to_string(),
        ty,
    }
}

/// Publishes `rows` (key parts, event time µs, values) as a full sync of `view`.
pub async fn fill(
    store: &OnlineStore,
    view: &str,
    columns: &[Column],
    rows: Vec<(Vec<String>, i64, Vec<Value>)>,
) {
    let sources = BTreeMap::from([(format!("ads.{view}"), 1)]);
    let mut sync = store
        .begin_sync(view, columns, sources, true, 500)
        .await
        .unwrap();
    let rows: Vec<SyncRow> = rows
        .into_iter()
        .map(|(key, ts, values)| SyncRow {
            key: entity_key(&key),
            event_ts: ts,
            values: Some(values),
        })
        .collect();
    for chunk in rows.chunks(500) {
        sync.write(chunk.to_vec()).await.unwrap();
    }
    sync.publish().await.unwrap();
}

/// µs since the epoch of an RFC 3339 time.
pub fn ts(text: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(text)
        .unwrap()
        .timestamp_micros()
}

pub fn now_us() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// The data directory of a test: its token file and its embedded store.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub store: OnlineStore,
}

impl Env {
    pub async fn embedded() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let store = OnlineStore::open(&OnlineConfig::default(), dir.path())
            .await
            .unwrap();
        Env { dir, store }
    }

    pub async fn redis(server: &RedisServer) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let config = OnlineConfig {
            kind: OnlineKind::Redis,
            url: Some(server.url()),
            prefix: "serve".into(),
            timeout: Duration::from_millis(500),
            ..OnlineConfig::default()
        };
        let store = OnlineStore::open(&config, dir.path()).await.unwrap();
        Env { dir, store }
    }

    pub fn tokens_path(&self) -> PathBuf {
        self.dir.path().join("catalog_tokens.json")
    }

    /// Creates a token and returns it.
    pub fn token(
        &self,
        name: &str,
        scopes: &[Scope],
        namespaces: &[&str],
        role: Option<&str>,
    ) -> String {
        let path = self.tokens_path();
        let mut tokens = Tokens::load(&path).unwrap();
        let token = tokens
            .create(
                name,
                NewToken {
                    scopes: scopes.to_vec(),
                    namespaces: namespaces.iter().map(|s| s.to_string()).collect(),
                    expires_at: None,
                    role: role.map(str::to_string),
                },
            )
            .unwrap();
        tokens.save(&path).unwrap();
        token
    }

    pub fn server(&self, views: Vec<FeatureView>) -> FeatureServer {
        FeatureServer::new(self.store.clone(), views, self.tokens_path())
    }
}

/// Serves `server` on 127.0.0.1:0; the base URL.
pub async fn start(server: FeatureServer) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let router = server.router();
    tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    format!("http://{addr}")
}

/// A client of the server at `base` with a bearer token.
pub struct Client {
    pub base: String,
    pub token: Option<String>,
    pub http: reqwest::Client,
}

impl Client {
    pub fn new(base: &str, token: Option<&str>) -> Client {
        Client {
            base: base.to_string(),
            token: token.map(str::to_string),
            http: reqwest::Client::new(),
        }
    }

    fn auth(&self, r: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    /// POSTs `body` (raw) to `/get-online-features`: status and JSON answer.
    pub async fn post_raw(&self, body: &str) -> (u16, serde_json::Value) {
        let r = self
            .auth(self.http.post(format!("{}/get-online-features", self.base)))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}")),
        )
    }

    pub async fn post(&self, body: serde_json::Value) -> (u16, serde_json::Value) {
        self.post_raw(&body.to_string()).await
    }

    pub async fn get(&self, path: &str) -> (u16, serde_json::Value) {
        let r = self
            .auth(self.http.get(format!("{}{path}", self.base)))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}")),
        )
    }
}

/// The column named `name` of a `/get-online-features` answer.
pub fn column<'a>(answer: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    let names = answer["metadata"]["feature_names"].as_array().unwrap();
    let i = names
        .iter()
        .position(|n| n == name)
        .unwrap_or_else(|| panic!("no column {name} in {names:?}"));
    &answer["results"][i]
}

// ---------------------------------------------------------------- redis

pub use strata_testdb::RedisServer;
