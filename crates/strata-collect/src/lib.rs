//! Strata's HTTP collector: the Segment tracking API (`/v1/batch`, `/v1/track`, …), write-key
//! and HMAC auth, validation, enrichment (server time, skew correction, IP → geo, user agent),
//! deduplication of SDK retries, and one durable append to the bus topic `events` per request.
//!
//! Where things live: `routes.rs` (request flow), `auth.rs` (write keys, app registry,
//! signatures), `decode.rs` (body limits, gzip, JSON shapes), `validate.rs` (per-event rules →
//! [`strata_core::Event`] or a rejection), `enrich.rs` (IP, geo, UA), `pii.rs` (per-app PII
//! hashing before the bus), `dedup.rs`, `error.rs` (the one error type and its HTTP mapping),
//! `schemas.rs` (events checked against their subject's registered JSON Schema).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use strata_bus::Log;
use strata_core::event::EVENTS_TOPIC;
use tokio::sync::Semaphore;

mod auth;
pub mod blocks;
pub mod config;
mod decode;
mod dedup;
mod enrich;
mod error;
mod pii;
mod routes;
mod schemas;
mod validate;

pub use auth::{sign, SIGNATURE_HEADER, TIMESTAMP_HEADER};
pub use error::{Error, Result};
pub use routes::health;

use auth::AppRegistry;
use config::CollectorOptions;
use dedup::Dedup;
use enrich::{Geo, UaCache};
use pii::Pii;
use validate::Limits;

/// The collector's shared state. Build one with [`Collector::new`], serve [`Collector::router`].
pub struct Collector {
    config: CollectorOptions,
    limits: Limits,
    apps: AppRegistry,
    geo: Option<Geo>,
    /// `[collector.pii]`; None when no app has a path to hash.
    pii: Option<Pii>,
    ua_cache: UaCache,
    dedup: Dedup,
    admission: Semaphore,
    log: Arc<dyn Log>,
    /// Risk blocks in force, followed from the bus (`blocks.rs`).
    blocks: Arc<blocks::Blocklist>,
    /// The event schema registry (`<data>/schema_registry.json`): events whose subject has a
    /// schema are validated (`routes.rs`).
    schemas: Arc<strata_schema::Registry>,
}

impl Collector {
    /// Opens the app registry, the geo database and the PII key, ensures the `events` topic
    /// (`partitions`) and warms the dedup set from the topic's tail.
    pub async fn new(config: &CollectorOptions, log: Arc<dyn Log>) -> Result<Arc<Collector>> {
        let apps = AppRegistry::open(&config.apps_path())?;
        let geo = config
            .collector
            .geoip_db
            .as_deref()
            .map(Geo::open)
            .transpose()?;
        let pii = Pii::from_config(&config.collector.pii, &config.data_dir)?;
        if let Some(pii) = &pii {
            tracing::info!(apps = ?pii.app_names(), "collector hashes pii fields before the bus");
        }
        log.ensure_topic(EVENTS_TOPIC, config.partitions).await?;
        let c = &config.collector;
        let dedup = Dedup::new(c.dedup_window, c.dedup_capacity);
        let warmed = dedup.warm(&log, strata_core::time::now_micros()).await?;
        tracing::info!(warmed, "collector dedup set warmed from the bus");
        let micros = |d: std::time::Duration| i64::try_from(d.as_micros()).unwrap_or(i64::MAX);
        let schemas = Arc::new(
            strata_schema::Registry::open(&config.data_dir, c.schemas.clone())
                .map_err(|e| Error::Setup(format!("opening the schema registry: {e}")))?,
        );
        let blocks = Arc::new(blocks::Blocklist::default());
        blocks::follow(log.clone(), blocks.clone());
        Ok(Arc::new(Collector {
            blocks,
            schemas,
            limits: Limits {
                max_event_bytes: c.max_event_bytes,
                max_age_micros: micros(c.max_event_age),
                max_future_micros: micros(c.max_event_future),
            },
            apps,
            geo,
            pii,
            ua_cache: UaCache::default(),
            dedup,
            admission: Semaphore::new(config.server.max_in_flight.min(Semaphore::MAX_PERMITS)),
            log,
            config: config.clone(),
        }))
    }

    /// The risk blocks this collector enforces.
    pub fn blocks(&self) -> &Arc<blocks::Blocklist> {
        &self.blocks
    }

    /// The schema registry this collector validates with (share it with the registry's HTTP
    /// API so a registration takes effect here at once).
    pub fn schemas(&self) -> &Arc<strata_schema::Registry> {
        &self.schemas
    }

    /// All `/v1/*` routes and `GET /health` (503 while the bus cannot take events).
    pub fn router(self: &Arc<Self>) -> axum::Router {
        routes::router(Arc::clone(self))
    }
}

/// Serves `router` on `listener` (with the peer address available to handlers) until
/// `shutdown` resolves, then finishes in-flight requests.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}
