//! A real HTTP API on 127.0.0.1 for the pull tests: the same records per window behind four
//! kinds of pagination, a bearer token, and faults scripted per page — 429 with
//! `Retry-After` (seconds or an HTTP date), 500, and an answer slower than the client's
//! timeout — or a window that always fails.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};

pub const TOKEN: &str = "tok-123";
/// Records per window.
pub const RECORDS: u64 = 23;
/// Records per page.
pub const PAGE: u64 = 10;

/// What a scripted page answers instead of its records (once per entry).
#[derive(Debug, Clone)]
pub enum Fault {
    /// 429 with `Retry-After: <seconds>`.
    Throttle(u64),
    /// 429 with `Retry-After: <HTTP date this many seconds ahead>`.
    ThrottleUntil(u64),
    /// 500.
    ServerError,
    /// The answer comes after this long (past the client's timeout).
    Slow(Duration),
}

/// One request the server saw.
#[derive(Debug, Clone)]
pub struct Hit {
    /// `<kind>:<window start>:<page>`.
    pub key: String,
    pub at: Instant,
    pub status: u16,
}

#[derive(Default)]
pub struct Api {
    faults: Mutex<HashMap<String, VecDeque<Fault>>>,
    /// Window starts whose every page answers 500.
    broken: Mutex<HashSet<String>>,
    pub hits: Mutex<Vec<Hit>>,
}

impl Api {
    /// Scripts `faults` for page `page` (0-based) of `kind`'s window starting at `start`.
    pub fn fault(&self, kind: &str, start: &str, page: u64, faults: &[Fault]) {
        self.faults
            .lock()
            .unwrap()
            .entry(format!("{kind}:{start}:{page}"))
            .or_default()
            .extend(faults.iter().cloned());
    }

    pub fn break_window(&self, start: &str, broken: bool) {
        let mut set = self.broken.lock().unwrap();
        if broken {
            set.insert(start.to_string());
        } else {
            set.remove(start);
        }
    }

    pub fn hits(&self, prefix: &str) -> Vec<Hit> {
        self.hits
            .lock()
            .unwrap()
            .iter()
            .filter(|h| h.key.starts_with(prefix))
            .cloned()
            .collect()
    }
}

pub struct Server {
    pub addr: SocketAddr,
    pub api: Arc<Api>,
}

impl Server {
    pub async fn start() -> Server {
        let api = Arc::new(Api::default());
        let app = Router::new()
            .route("/{kind}/items", get(items))
            .with_state(api.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Server { addr, api }
    }

    pub fn url(&self, path_and_query: &str) -> String {
        format!("http://{}{path_and_query}", self.addr)
    }
}

/// The records of the window starting at `start` (epoch seconds): ids unique across windows.
pub fn records(start: i64) -> Vec<Value> {
    (0..RECORDS as i64)
        .map(|i| {
            let created = chrono::DateTime::from_timestamp(start + i * 60, 0).unwrap();
            json!({
                "id": start / 60 * 1000 + i,
                "name": format!("item-{i}"),
                "amount": if i == 7 { json!("n/a") } else { json!(i as f64 * 1.5) },
                "created": created.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                "customer": {"id": i % 5, "tier": if i % 2 == 0 { "gold" } else { "basic" }},
            })
        })
        .collect()
}

async fn items(
    State(api): State<Arc<Api>>,
    Path(kind): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let start_text = q.get("start").cloned().unwrap_or_default();
    let page: u64 = match kind.as_str() {
        "next" | "link" => q.get("offset").and_then(|o| o.parse().ok()).unwrap_or(0) / PAGE,
        "cursor" => q
            .get("after")
            .and_then(|c| c.strip_prefix("c-"))
            .and_then(|c| c.parse().ok())
            .unwrap_or(0),
        _ => q
            .get("page")
            .and_then(|p| p.parse::<u64>().ok())
            .unwrap_or(1)
            .saturating_sub(1),
    };
    let key = format!("{kind}:{start_text}:{page}");
    let arrived = Instant::now();
    let answer = answer(&api, &kind, &start_text, page, &q, &headers, &key).await;
    api.hits.lock().unwrap().push(Hit {
        key,
        at: arrived,
        status: answer.status().as_u16(),
    });
    answer
}

async fn answer(
    api: &Api,
    kind: &str,
    start_text: &str,
    page: u64,
    q: &HashMap<String, String>,
    headers: &HeaderMap,
    key: &str,
) -> Response {
    let fault = api
        .faults
        .lock()
        .unwrap()
        .get_mut(key)
        .and_then(|f| f.pop_front());
    if headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        != Some(&format!("Bearer {TOKEN}"))
    {
        return (StatusCode::UNAUTHORIZED, "no or wrong token").into_response();
    }
    if api.broken.lock().unwrap().contains(start_text) {
        return (StatusCode::INTERNAL_SERVER_ERROR, "this window is broken").into_response();
    }
    match fault {
        Some(Fault::Throttle(secs)) => {
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [(header::RETRY_AFTER, secs.to_string())],
                "slow down",
            )
                .into_response()
        }
        Some(Fault::ThrottleUntil(secs)) => {
            let date = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(secs));
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [(header::RETRY_AFTER, date)],
                "slow down",
            )
                .into_response();
        }
        Some(Fault::ServerError) => {
            return (StatusCode::INTERNAL_SERVER_ERROR, "{\"error\": \"oops\"}").into_response()
        }
        Some(Fault::Slow(d)) => tokio::time::sleep(d).await,
        None => {}
    }
    let Some(start) = chrono::DateTime::parse_from_rfc3339(start_text).ok() else {
        return (StatusCode::BAD_REQUEST, "start is not RFC 3339").into_response();
    };
    if q.get("end")
        .and_then(|e| chrono::DateTime::parse_from_rfc3339(e).ok())
        .is_none()
    {
        return (StatusCode::BAD_REQUEST, "end is not RFC 3339").into_response();
    }
    let all = records(start.timestamp());
    let size = q
        .get("per_page")
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(PAGE);
    let from = (page * size).min(RECORDS) as usize;
    let to = ((page + 1) * size).min(RECORDS) as usize;
    let slice = all[from..to].to_vec();
    let more = (to as u64) < RECORDS;
    let with_offset = |offset: u64| {
        format!(
            "/{kind}/items?start={start_text}&end={}&offset={offset}",
            q.get("end").cloned().unwrap_or_default()
        )
    };
    match kind {
        // The next link in the body, relative to the request.
        "next" => axum::Json(json!({
            "data": slice,
            "links": {"next": if more { json!(with_offset(to as u64)) } else { Value::Null }},
        }))
        .into_response(),
        // The body is the array; the next link (absolute) in the Link header.
        "link" => {
            let host = headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or_default()
                .to_string();
            let mut links = vec![format!("<http://{host}{}>; rel=\"first\"", with_offset(0))];
            if more {
                links.push(format!("<http://{host}{}>; rel=\"next\"", with_offset(to as u64)));
            }
            (
                [(header::LINK, links.join(", "))],
                axum::Json(Value::Array(slice)),
            )
                .into_response()
        }
        "cursor" => axum::Json(json!({
            "items": slice,
            "meta": {"next_cursor": if more { json!(format!("c-{}", page + 1)) } else { Value::Null }},
        }))
        .into_response(),
        // Page numbers: past the end, an empty page.
        _ => axum::Json(json!({"results": slice, "page": page + 1})).into_response(),
    }
}
