//! The request flow: admit (bounded in-flight) → authenticate → read and decode the body →
//! validate, enrich, dedup and hash PII (`pii.rs`) in each event → one durable append → answer.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use serde::Serialize;
use serde_json::value::RawValue;
use strata_bus::Record;
use strata_core::event::{encode_collected_event, EVENTS_TOPIC};
use strata_core::{BusRecord, Rejected};

use crate::auth::{self, AppEntry};
use crate::decode::{self, RawEvent, Scalar};
use crate::dedup;
use crate::enrich::{client_ip, RequestEnricher};
use crate::error::{Error, Result};
use crate::validate::{build_event, truncate, Envelope};
use crate::Collector;

/// How long a request waits for an in-flight slot before 503.
const ADMIT_WAIT: Duration = Duration::from_millis(100);
/// How long a client may take to send its body.
const BODY_DEADLINE: Duration = Duration::from_secs(30);

/// `context.device.id` of an event's context JSON (only parsed while a device is blocked).
fn device_id(context: Option<&str>) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(context?).ok()?;
    match v.get("device")?.get("id")? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

pub fn router(collector: Arc<Collector>) -> Router {
    let single = |kind: &'static str| {
        post(
            move |State(c): State<Arc<Collector>>, req: Request| async move {
                c.handle(req, Some(kind)).await
            },
        )
    };
    let batch = || {
        post(
            |State(c): State<Arc<Collector>>, req: Request| async move { c.handle(req, None).await },
        )
    };
    Router::new()
        .route(
            "/health",
            get(|State(c): State<Arc<Collector>>| async move { health(c.log.as_ref()) }),
        )
        .route("/v1/batch", batch())
        .route("/v1/b", batch())
        .route("/v1/import", batch())
        .route("/v1/track", single("track"))
        .route("/v1/t", single("track"))
        .route("/v1/identify", single("identify"))
        .route("/v1/i", single("identify"))
        .route("/v1/page", single("page"))
        .route("/v1/p", single("page"))
        .route("/v1/screen", single("screen"))
        .route("/v1/s", single("screen"))
        .route("/v1/group", single("group"))
        .route("/v1/g", single("group"))
        .route("/v1/alias", single("alias"))
        .route("/v1/a", single("alias"))
        .with_state(collector)
}

/// `GET /health`: 200 while the bus takes appends, else 503 with the condition (a full disk, a
/// failing disk) so load balancers stop sending events here until it passes. Cheap: atomics
/// and at most one `statvfs`.
pub fn health(log: &dyn strata_bus::Log) -> Response {
    match log.health() {
        strata_bus::Health::Ready => Json(serde_json::json!({"status": "ok"})).into_response(),
        unready => {
            let mut response = (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(serde_json::json!({"status": "unavailable", "reason": unready.reason()})),
            )
                .into_response();
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
            response
        }
    }
}

/// The 200 answer.
#[derive(Debug, Serialize)]
struct Accepted {
    success: bool,
    /// Events appended to the bus.
    accepted: usize,
    /// Events refused (appended to the dead-letter side of the bus).
    rejected: usize,
    /// Events dropped as retries of an already accepted messageId.
    duplicates: usize,
    errors: Vec<ItemError>,
}

#[derive(Debug, Serialize)]
struct ItemError {
    index: usize,
    reason: String,
}

/// One event of the request: its JSON text and its parse.
struct Item<'a> {
    raw: &'a str,
    parsed: std::result::Result<RawEvent<'a>, serde_json::Error>,
}

impl Collector {
    async fn handle(self: Arc<Self>, req: Request, implied: Option<&'static str>) -> Response {
        let started = Instant::now();
        let response = match self.process(req, implied).await {
            Ok(accepted) => (StatusCode::OK, Json(accepted)).into_response(),
            Err(e) => {
                let disk_full = matches!(&e, Error::Bus(b) if b.is_storage_full());
                if e.status().is_server_error() && !disk_full {
                    tracing::warn!(error = %e, "collect request failed");
                } else {
                    tracing::debug!(error = %e, "collect request refused");
                }
                e.into_response()
            }
        };
        metrics::counter!(
            "strata_collect_requests_total",
            "status" => response.status().as_u16().to_string()
        )
        .increment(1);
        metrics::histogram!("strata_collect_request_seconds")
            .record(started.elapsed().as_secs_f64());
        response
    }

    async fn process(&self, req: Request, implied: Option<&'static str>) -> Result<Accepted> {
        let _permit = tokio::time::timeout(ADMIT_WAIT, self.admission.acquire())
            .await
            .map_err(|_| Error::Overloaded("too many requests in flight, retry later".into()))?
            .map_err(|_| Error::Overloaded("collector is shutting down".into()))?;

        let (parts, body) = req.into_parts();
        let headers = &parts.headers;
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip());

        // A key in the header is checked before the body is read.
        let mut app = match auth::basic_write_key(headers)? {
            Some(key) => Some(self.app_for(&key)?),
            None => None,
        };
        let limit = self.config.server.max_body_bytes;
        let wire = decode::read_body(headers, body, limit, BODY_DEADLINE).await?;
        if let Some(app) = &app {
            self.check_signature(app, headers, &wire)?;
        }
        let buf = decode::decode_content(headers, wire.clone(), limit)?;

        let (items, batch_sent_at, batch_context, body_key): (Vec<Item<'_>>, _, _, _);
        match implied {
            None => {
                let body = decode::parse_batch(&buf)?;
                items = body
                    .batch
                    .unwrap_or_default()
                    .0
                    .into_iter()
                    .map(|raw| Item {
                        raw: raw.get(),
                        parsed: serde_json::from_str::<RawEvent<'_>>(raw.get()),
                    })
                    .collect();
                batch_sent_at = body.sent_at;
                batch_context = body.context;
                body_key = body.write_key;
            }
            Some(_) => {
                let (event, raw) = decode::parse_single(&buf)?;
                body_key = event.write_key.clone();
                items = vec![Item {
                    raw,
                    parsed: Ok(event),
                }];
                batch_sent_at = None;
                batch_context = None;
            }
        }

        let app = match app.take() {
            Some(app) => app,
            None => {
                let key = body_key.as_ref().and_then(Scalar::text).ok_or_else(|| {
                    Error::Unauthorized(
                        "missing write key: send it as the HTTP Basic username or as `writeKey` in the body"
                            .into(),
                    )
                })?;
                let app = self.app_for(key)?;
                self.check_signature(&app, headers, &wire)?;
                app
            }
        };

        let ip = client_ip(peer, headers, &self.config.server.trusted_proxies);
        let header_ua = headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok());
        self.ingest(
            &app,
            items,
            implied,
            batch_sent_at.as_ref(),
            batch_context,
            RequestEnricher::new(ip, self.geo.as_ref(), header_ua, &self.ua_cache),
        )
        .await
    }

    fn app_for(&self, write_key: &str) -> Result<Arc<AppEntry>> {
        self.apps
            .lookup(write_key)
            .ok_or_else(|| Error::Unauthorized("unknown write key".into()))
    }

    fn check_signature(&self, app: &AppEntry, headers: &HeaderMap, wire: &Bytes) -> Result<()> {
        let Some(secret) = &app.secret else {
            return Ok(());
        };
        let now = strata_core::time::now_micros() / 1_000_000;
        auth::verify_signature(
            secret,
            headers,
            wire,
            now,
            self.config.collector.signature_window,
        )
    }

    /// Validates, enriches, dedups and hashes the PII of the events, appends them (and the
    /// rejections, PII hashed too) in one call, and only then remembers their ids.
    async fn ingest(
        &self,
        app: &AppEntry,
        items: Vec<Item<'_>>,
        implied: Option<&'static str>,
        batch_sent_at: Option<&Scalar<'_>>,
        batch_context: Option<&RawValue>,
        mut enricher: RequestEnricher<'_>,
    ) -> Result<Accepted> {
        let server_ts = strata_core::time::now_micros();
        let env = Envelope {
            app: &app.name,
            server_ts,
            implied_type: implied,
            batch_sent_at,
            batch_context,
        };
        let max_raw = self.config.collector.max_event_bytes;
        let pii = self.pii.as_ref().and_then(|p| p.for_app(&app.name));
        let mut built = Vec::with_capacity(items.len());
        let mut errors = Vec::new();
        let mut reject_kinds = Vec::new();
        // Schemas: one snapshot per request; none at all keeps the check off the path.
        let schemas = &self.config.collector.schemas;
        let snapshot = if schemas.validate {
            Some(self.schemas.snapshot()).filter(|s| !s.is_empty())
        } else {
            None
        };
        let mut validated = 0u64;
        for (index, item) in items.iter().enumerate() {
            let outcome = match &item.parsed {
                Ok(parsed) => build_event(item.raw, parsed, &env, &self.limits).map_err(|r| {
                    let message_id = parsed
                        .message_id
                        .as_ref()
                        .and_then(Scalar::text)
                        .map(str::to_string);
                    (r.kind, r.reason, message_id)
                }),
                // serde quotes the string it found: not with PII rules in force.
                Err(e) if pii.is_some() => Err((
                    "invalid_json",
                    format!(
                        "event must be a JSON object (line {} column {})",
                        e.line(),
                        e.column()
                    ),
                    None,
                )),
                Err(e) => Err((
                    "invalid_json",
                    format!("event must be a JSON object: {e}"),
                    None,
                )),
            };
            // A subject a risk rule blocked: refused like an invalid event, with the rule.
            let outcome = match outcome {
                Ok(event) => match self.blocks.check(
                    event.user_id.as_deref(),
                    event.anonymous_id.as_deref(),
                    enricher.ip(),
                    || device_id(event.context.as_deref()),
                    server_ts,
                ) {
                    None => Ok(event),
                    Some(reason) => Err(("blocked", reason, Some(event.message_id.to_string()))),
                },
                Err(e) => Err(e),
            };
            // An event that breaks its subject's schema: refused, or accepted and tagged.
            let outcome = match (outcome, &snapshot) {
                (Ok(event), Some(snapshot)) => {
                    crate::schemas::check(snapshot, schemas, event, &mut validated)
                        .map_err(|(kind, reason, message_id)| (kind, reason, Some(message_id)))
                }
                (outcome, _) => outcome,
            };
            match outcome {
                Ok(event) => {
                    let ua = enricher.user_agent(event.user_agent.as_deref());
                    built.push(Ok((event, ua)));
                }
                Err((kind, reason, message_id)) => {
                    reject_kinds.push(kind);
                    errors.push(ItemError {
                        index,
                        reason: reason.clone(),
                    });
                    built.push(Err(Rejected {
                        message_id,
                        app: app.name.clone(),
                        server_ts,
                        reason,
                        raw: match &pii {
                            // Hashed before it is cut: a cut object would not parse.
                            Some(pii) => truncate(&pii.raw(item.raw), max_raw).to_string(),
                            None => truncate(item.raw, max_raw).to_string(),
                        },
                    }));
                }
            }
        }

        // Dedup against earlier requests and within this one.
        let keys: Vec<dedup::Key> = built
            .iter()
            .filter_map(|b| b.as_ref().ok())
            .map(|(e, _)| dedup::key(&e.app, &e.message_id))
            .collect();
        let seen = self.dedup.seen_many(&keys, server_ts);
        let mut in_batch = HashSet::with_capacity(keys.len());
        let mut new_keys = Vec::with_capacity(keys.len());
        let mut duplicates = 0;
        let mut records = Vec::with_capacity(built.len());
        // The dedup key of each record (`None` for rejections).
        let mut record_keys = Vec::with_capacity(built.len());
        let timestamp_ms = server_ts / 1000;
        let mut next_key = keys.iter().zip(seen);
        let format = self.config.record_format;
        for b in built {
            let (key, value) = match b {
                Ok((mut event, ua)) => {
                    let Some((&k, was_seen)) = next_key.next() else {
                        continue;
                    };
                    if was_seen || !in_batch.insert(k) {
                        duplicates += 1;
                        continue;
                    }
                    new_keys.push(k);
                    record_keys.push(Some(k));
                    enricher.fill(&mut event, ua.as_deref());
                    if let Some(pii) = &pii {
                        pii.apply(&mut event);
                    }
                    let key = Bytes::copy_from_slice(event.partition_key().as_bytes());
                    (key, encode_collected_event(&event, format))
                }
                Err(rejected) => {
                    record_keys.push(None);
                    let record = BusRecord::Rejected(Box::new(rejected));
                    (
                        Bytes::copy_from_slice(record.key().as_bytes()),
                        record.to_json(),
                    )
                }
            };
            records.push(Record {
                key,
                value: Bytes::from(value),
                timestamp_ms,
            });
        }

        let rejected = errors.len();
        if !records.is_empty() {
            if let Err(e) = self.log.append(EVENTS_TOPIC, records).await {
                if let strata_bus::Error::Partial { appended, .. } = &e {
                    // Those events are on the bus and will reach the lake: the client's retry
                    // of this request must count them as duplicates, not append them again.
                    let landed: Vec<dedup::Key> = appended
                        .iter()
                        .filter_map(|&i| record_keys.get(i).copied().flatten())
                        .collect();
                    self.dedup.record_many(&landed, server_ts);
                }
                return Err(e.into());
            }
        }
        // Only now: a failed append must not make the client's retry look like a duplicate.
        self.dedup.record_many(&new_keys, server_ts);
        metrics::counter!("strata_collect_events_accepted_total").increment(new_keys.len() as u64);
        if validated > 0 {
            metrics::counter!("strata_collect_schema_validated_events_total").increment(validated);
        }
        metrics::counter!("strata_collect_events_deduplicated_total").increment(duplicates as u64);
        for kind in reject_kinds {
            metrics::counter!("strata_collect_events_rejected_total", "reason_kind" => kind)
                .increment(1);
        }
        Ok(Accepted {
            success: true,
            accepted: new_keys.len(),
            rejected,
            duplicates,
            errors,
        })
    }
}
