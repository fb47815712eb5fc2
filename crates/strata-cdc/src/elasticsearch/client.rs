//! The HTTP side of an Elasticsearch source: the credentials read from the environment, the
//! few REST calls the export makes (`GET /`, `_mapping`, `_search`, point in time, scroll) and
//! the server's answers sorted into whose fault they are.
//!
//! Failures that waiting can cure (connection refused or dropped, timeouts, 429, 5xx) are
//! [`Error::Source`] and the runtime retries them with backoff; what only the user can fix
//! (401/403, a missing index, a query the server rejects) is [`Error::Unsupported`].

use std::time::Duration;

use base64::Engine;
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::Value as Json;

use super::config::EsSourceConfig;
use crate::config::redact_url;
use crate::error::{Error, Result};

/// What `GET /` says about the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerInfo {
    /// `elasticsearch` or `opensearch`.
    pub distribution: String,
    /// `(major, minor)` of `version.number`.
    pub version: (u32, u32),
}

impl ServerInfo {
    /// Whether the server has Elasticsearch's point-in-time API (7.10 and later; OpenSearch
    /// has its own, which this source does not use).
    pub fn has_pit(&self) -> bool {
        self.distribution == "elasticsearch" && self.version >= (7, 10)
    }
}

/// One hit of a search page.
#[derive(Debug, Clone, Deserialize)]
pub struct Hit {
    #[serde(rename = "_index", default)]
    pub index: String,
    #[serde(rename = "_id")]
    pub id: String,
    #[serde(rename = "_version", default)]
    pub version: Option<i64>,
    #[serde(rename = "_seq_no", default)]
    pub seq_no: Option<i64>,
    #[serde(rename = "_primary_term", default)]
    pub primary_term: Option<i64>,
    #[serde(rename = "_source", default)]
    pub source: Option<Json>,
    #[serde(default)]
    pub sort: Vec<Json>,
}

/// A page of hits, with the point in time or scroll the next page is read from.
#[derive(Debug, Default)]
pub struct Page {
    pub hits: Vec<Hit>,
    pub pit_id: Option<String>,
    pub scroll_id: Option<String>,
}

#[derive(Deserialize)]
struct RawPage {
    hits: RawHits,
    #[serde(default)]
    pit_id: Option<String>,
    #[serde(rename = "_scroll_id", default)]
    scroll_id: Option<String>,
}

#[derive(Deserialize)]
struct RawHits {
    #[serde(default)]
    hits: Vec<Hit>,
}

/// An HTTP client for one source's server.
#[derive(Clone)]
pub struct EsClient {
    http: reqwest::Client,
    /// The URL without a trailing `/` (a path prefix kept: a proxy may serve the API under it).
    base: String,
    /// `host:port` as messages show it.
    host: String,
    source: String,
}

impl std::fmt::Debug for EsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EsClient")
            .field("host", &self.host)
            .field("source", &self.source)
            .finish()
    }
}

/// The `Authorization` header the config's credentials make, read from the environment
/// (None: no credentials configured).
pub fn auth_header(config: &EsSourceConfig) -> Result<Option<HeaderValue>> {
    let var = |name: &str| {
        std::env::var(name).map_err(|_| Error::Unsupported {
            table: config.name.clone(),
            message: format!(
                "environment variable {name} (named by the source's config) is not set"
            ),
        })
    };
    let value = match (
        &config.username_env,
        &config.password_env,
        &config.api_key_env,
    ) {
        (Some(u), Some(p), _) => {
            let pair = format!("{}:{}", var(u)?, var(p)?);
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(pair)
            )
        }
        (_, _, Some(k)) => format!("ApiKey {}", var(k)?),
        _ => return Ok(None),
    };
    let mut header = HeaderValue::from_str(&value).map_err(|_| Error::Unsupported {
        table: config.name.clone(),
        message: "the credentials hold characters an HTTP header cannot carry".to_string(),
    })?;
    header.set_sensitive(true);
    Ok(Some(header))
}

impl EsClient {
    /// A client for the config's URL with its credentials (read from the environment now);
    /// connects nothing.
    pub fn new(config: &EsSourceConfig) -> Result<EsClient> {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(auth) = auth_header(config)? {
            headers.insert(AUTHORIZATION, auth);
        }
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .connect_timeout(Duration::from_secs(10))
            .timeout(config.request_timeout)
            .build()
            .map_err(|e| Error::Internal(format!("building the HTTP client: {e}")))?;
        let base = config.url.trim_end_matches('/').to_string();
        let host = base
            .split_once("://")
            .map(|(_, rest)| rest.split('/').next().unwrap_or(rest).to_string())
            .unwrap_or_else(|| redact_url(&base));
        Ok(EsClient {
            http,
            base,
            host,
            source: config.name.clone(),
        })
    }

    /// `host:port` of the server.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Sends one request; a 2xx answer's JSON body, else the error sorted by whose fault it
    /// is. `what` says what the request was for.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Json>,
        what: &str,
    ) -> Result<Json> {
        let (status, text) = self.send(method, path, body, what).await?;
        if status.is_success() {
            return serde_json::from_str(&text)
                .map_err(|e| self.external(what, format!("the answer is not JSON: {e}")));
        }
        Err(self.status_error(what, status, &text))
    }

    /// Sends one request and returns the status and body, whatever the status.
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Json>,
        what: &str,
    ) -> Result<(StatusCode, String)> {
        let url = format!("{}{path}", self.base);
        let mut request = self.http.request(method, url.as_str());
        if let Some(body) = body {
            request = request.body(body.to_string());
        }
        let response = request.send().await.map_err(|e| {
            let mut text = e.to_string();
            let mut cause = std::error::Error::source(&e);
            while let Some(c) = cause {
                text.push_str(&format!(": {c}"));
                cause = c.source();
            }
            self.external(what, text)
        })?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| self.external(what, format!("reading the answer: {e}")))?;
        Ok((status, text))
    }

    fn external(&self, what: &str, message: String) -> Error {
        Error::Source {
            source_name: self.source.clone(),
            host: self.host.clone(),
            message: format!("{what}: {message}"),
        }
    }

    /// An error answer: 408, 429 and 5xx can pass (retried); anything else is the user's.
    fn status_error(&self, what: &str, status: StatusCode, body: &str) -> Error {
        let reason = error_reason(body);
        let code = status.as_u16();
        // A point in time or scroll that expired (a pause longer than keep_alive) is gone,
        // but the next attempt opens a new one and goes on from the last page on the bus.
        let expired = body.contains("search_context_missing_exception")
            || body.contains("No search context found");
        if code == 408 || code == 429 || status.is_server_error() || expired {
            return self.external(what, format!("HTTP {code}: {reason}"));
        }
        let hint = match code {
            401 => " (check username_env/password_env or api_key_env)",
            403 => {
                " (the credentials lack the read and view_index_metadata privileges on the index)"
            }
            _ => "",
        };
        Error::Unsupported {
            table: self.source.clone(),
            message: format!("{}: {what}: HTTP {code}: {reason}{hint}", self.host),
        }
    }

    /// `GET /`: which server this is.
    pub async fn info(&self) -> Result<ServerInfo> {
        let root = self
            .call(Method::GET, "/", None, "reading the server's version")
            .await?;
        let version = root
            .pointer("/version/number")
            .and_then(Json::as_str)
            .unwrap_or("0.0");
        let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
        let version = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
        let distribution = root
            .pointer("/version/distribution")
            .and_then(Json::as_str)
            .unwrap_or("elasticsearch")
            .to_string();
        Ok(ServerInfo {
            distribution,
            version,
        })
    }

    /// `GET /<index>/_mapping`: the mappings of every index the expression matches.
    pub async fn mapping(&self, index: &str) -> Result<Json> {
        self.call(
            Method::GET,
            &format!("/{}/_mapping", path_part(index)),
            None,
            &format!("reading the mapping of {index}"),
        )
        .await
    }

    /// Opens a point in time on `index`. `Ok(None)`: the server has no such API (an answer of
    /// 400, 404 or 405), so the caller may fall back to scroll.
    pub async fn open_pit(&self, index: &str, keep_alive: &str) -> Result<Option<String>> {
        let what = format!("opening a point in time on {index}");
        let path = format!("/{}/_pit?keep_alive={keep_alive}", path_part(index));
        let (status, text) = self.send(Method::POST, &path, None, &what).await?;
        if status.is_success() {
            let body: Json = serde_json::from_str(&text)
                .map_err(|e| self.external(&what, format!("the answer is not JSON: {e}")))?;
            return match body.get("id").and_then(Json::as_str) {
                Some(id) => Ok(Some(id.to_string())),
                None => Err(self.external(&what, "no id in the answer".to_string())),
            };
        }
        let missing_index = text.contains("index_not_found_exception");
        if matches!(status.as_u16(), 400 | 404 | 405) && !missing_index {
            tracing::debug!(source = %self.source, status = status.as_u16(), body = %text, "no point-in-time api");
            return Ok(None);
        }
        Err(self.status_error(&what, status, &text))
    }

    /// Closes a point in time (best effort: it expires after `keep_alive` anyway).
    pub async fn close_pit(&self, id: &str) {
        let body = serde_json::json!({ "id": id });
        if let Err(e) = self
            .call(
                Method::DELETE,
                "/_pit",
                Some(&body),
                "closing a point in time",
            )
            .await
        {
            tracing::debug!(source = %self.source, error = %e, "closing a point in time failed");
        }
    }

    /// `POST /<index>/_search` (no index: a point-in-time search), starting a scroll when
    /// `scroll` names its keep-alive.
    pub async fn search(
        &self,
        index: Option<&str>,
        body: &Json,
        scroll: Option<&str>,
    ) -> Result<Page> {
        let mut path = match index {
            Some(i) => format!("/{}/_search", path_part(i)),
            None => "/_search".to_string(),
        };
        if let Some(keep) = scroll {
            path.push_str(&format!("?scroll={keep}"));
        }
        let what = format!("searching {}", index.unwrap_or("a point in time"));
        self.page(&path, body, &what).await
    }

    /// The next page of a scroll.
    pub async fn scroll(&self, scroll_id: &str, keep_alive: &str) -> Result<Page> {
        let body = serde_json::json!({ "scroll": keep_alive, "scroll_id": scroll_id });
        self.page("/_search/scroll", &body, "reading the next scroll page")
            .await
    }

    /// Clears a scroll (best effort: it expires after `keep_alive` anyway).
    pub async fn clear_scroll(&self, scroll_id: &str) {
        let body = serde_json::json!({ "scroll_id": scroll_id });
        if let Err(e) = self
            .call(
                Method::DELETE,
                "/_search/scroll",
                Some(&body),
                "clearing a scroll",
            )
            .await
        {
            tracing::debug!(source = %self.source, error = %e, "clearing a scroll failed");
        }
    }

    async fn page(&self, path: &str, body: &Json, what: &str) -> Result<Page> {
        let (status, text) = self.send(Method::POST, path, Some(body), what).await?;
        if !status.is_success() {
            return Err(self.status_error(what, status, &text));
        }
        let raw: RawPage = serde_json::from_str(&text)
            .map_err(|e| self.external(what, format!("unexpected answer: {e}")))?;
        Ok(Page {
            hits: raw.hits.hits,
            pit_id: raw.pit_id,
            scroll_id: raw.scroll_id,
        })
    }
}

/// The server's own words from an error body (`error.type: error.reason`), else the body.
pub fn error_reason(body: &str) -> String {
    let parsed: Option<Json> = serde_json::from_str(body).ok();
    let from_json = parsed.as_ref().and_then(|j| {
        let e = j.get("error")?;
        if let Some(s) = e.as_str() {
            return Some(s.to_string());
        }
        let kind = e.get("type").and_then(Json::as_str).unwrap_or("error");
        let reason = e.get("reason").and_then(Json::as_str).unwrap_or("");
        let cause = e
            .pointer("/root_cause/0/reason")
            .and_then(Json::as_str)
            .filter(|c| *c != reason);
        Some(match cause {
            Some(c) => format!("{kind}: {reason} ({c})"),
            None => format!("{kind}: {reason}"),
        })
    });
    from_json.unwrap_or_else(|| body.chars().take(300).collect())
}

/// An index expression in a URL path: its characters are checked by the config, and the
/// few a path cannot carry as they are get percent-encoded.
fn path_part(index: &str) -> String {
    let mut out = String::with_capacity(index.len());
    for b in index.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'*' | b',') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_give_the_servers_reason() {
        let body = r#"{"error":{"root_cause":[{"type":"index_not_found_exception","reason":"no such index [nope]"}],"type":"index_not_found_exception","reason":"no such index [nope]"},"status":404}"#;
        assert_eq!(
            error_reason(body),
            "index_not_found_exception: no such index [nope]"
        );
        assert_eq!(
            error_reason("<html>bad gateway</html>"),
            "<html>bad gateway</html>"
        );
        assert_eq!(path_part("logs-*,a b"), "logs-*,a%20b");
    }

    #[test]
    fn pit_support_follows_the_version() {
        let es = |v| ServerInfo {
            distribution: "elasticsearch".into(),
            version: v,
        };
        assert!(es((8, 15)).has_pit() && es((7, 10)).has_pit() && !es((7, 9)).has_pit());
        let os = ServerInfo {
            distribution: "opensearch".into(),
            version: (2, 11),
        };
        assert!(!os.has_pit());
    }
}
