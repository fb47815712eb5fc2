//! The feature server inside `strata serve`: Feast's feature-server protocol
//! (`POST /get-online-features`), a plain `GET /v1/features/{view}/{key}` for people and
//! curl, and `GET /v1/features` listing the views. Reference: `docs/features.md`,
//! "Serving API".
//!
//! - `feast.rs`: the protocol's request and response shapes;
//! - `lookup.rs`: reading a request's views (one store lookup per view for all entities,
//!   the views concurrently), TTLs, masks;
//! - `routes.rs`: the handlers (authentication, audit, metrics around each);
//! - `auth.rs`: bearer tokens, the `serve` scope, namespace grants;
//! - `mask.rs`: column masking by the token's role;
//! - `error.rs`: the one place errors become HTTP answers;
//! - `metrics.rs`: `strata_features_*`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::routing::{get, post};
use axum::Router;
use chrono::{DateTime, Utc};
use strata_core::governance::GovernanceConfig;
use strata_online::meta::Column;
use strata_online::OnlineStore;
use strata_sql::audit::AuditLog;

use crate::service::FeatureService;
use crate::view::{key_kind, FeatureView, KeyKind, ResolvedView};

pub mod auth;
pub mod error;
pub mod feast;
mod lookup;
pub mod mask;
mod metrics;
mod routes;

/// Entities one request may ask for, at most, unless [`FeatureServer::max_entities`] says
/// otherwise (the feed asks for ~1,200 posts at once).
pub const MAX_ENTITIES: usize = 10_000;
/// The largest request body taken (bytes).
pub const MAX_BODY_BYTES: usize = 4 << 20;

/// A declared view as the server serves it.
#[derive(Debug)]
pub(crate) struct ServedView {
    pub view: FeatureView,
    /// The lake tables the view reads (`namespace.table`), or why they cannot be told.
    pub reads: Result<Vec<String>, String>,
    /// How the entity columns' values are written in keys, when known (from the lake's
    /// schema); unknown: integers and strings are both taken.
    pub kinds: Option<Vec<KeyKind>>,
}

/// The published schema cached per view, with the published version it belongs to.
type SchemaCache = HashMap<String, ((u64, DateTime<Utc>, u32), Arc<Vec<Column>>)>;

/// The feature server. Build it with [`FeatureServer::new`] and the `with_*` methods, then
/// mount [`FeatureServer::router`].
pub struct FeatureServer {
    store: OnlineStore,
    views: HashMap<String, ServedView>,
    services: HashMap<String, FeatureService>,
    tokens_path: PathBuf,
    governance: GovernanceConfig,
    mask_key: Vec<u8>,
    audit: AuditLog,
    max_entities: usize,
    schemas: Mutex<SchemaCache>,
}

impl std::fmt::Debug for FeatureServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeatureServer")
            .field("store", &self.store.kind())
            .field("views", &self.views.len())
            .field("services", &self.services.len())
            .field("tokens_path", &self.tokens_path)
            .finish()
    }
}

impl FeatureServer {
    /// Serves `views` (those with `online = true`) from `store`; requests need a bearer
    /// token of the token file at `tokens_path` (`<data>/catalog_tokens.json`) with the
    /// `serve` scope. No masking rules, no access log until the `with_*` methods give them.
    pub fn new(store: OnlineStore, views: Vec<FeatureView>, tokens_path: PathBuf) -> Self {
        let views = views
            .into_iter()
            .map(|view| {
                let reads = view
                    .reads()
                    .map(|r| r.into_iter().collect())
                    .map_err(|e| e.to_string());
                (
                    view.name.clone(),
                    ServedView {
                        view,
                        reads,
                        kinds: None,
                    },
                )
            })
            .collect();
        FeatureServer {
            store,
            views,
            services: HashMap::new(),
            tokens_path,
            governance: GovernanceConfig::default(),
            mask_key: Vec::new(),
            audit: AuditLog::disabled(),
            max_entities: MAX_ENTITIES,
            schemas: Mutex::new(HashMap::new()),
        }
    }

    /// The feature services clients may name (`load_services`).
    pub fn with_services(mut self, services: Vec<FeatureService>) -> Self {
        self.services = services.into_iter().map(|s| (s.name.clone(), s)).collect();
        self
    }

    /// Column masking: `[governance]` and the lake's mask key
    /// (`strata_sql::masking::load_or_create_key(config.mask_key_path())`).
    pub fn with_governance(mut self, governance: GovernanceConfig, mask_key: Vec<u8>) -> Self {
        self.governance = governance;
        self.mask_key = mask_key;
        self
    }

    /// Where every request is recorded (`audit.access_log`, surface `serve`).
    pub fn with_audit(mut self, audit: AuditLog) -> Self {
        self.audit = audit;
        self
    }

    /// The entity key types of views checked against the lake: a request giving a string
    /// for an integer key (or the reverse) is then refused with 400 instead of not found.
    pub fn with_resolved(mut self, resolved: &[ResolvedView]) -> Self {
        for r in resolved {
            if let Some(served) = self.views.get_mut(&r.view.name) {
                served.kinds = r
                    .entity
                    .iter()
                    .map(|f| key_kind(f.data_type()))
                    .collect::<Option<Vec<_>>>();
            }
        }
        self
    }

    /// The entity key types of one view, in the order of its entity columns.
    pub fn with_key_kinds(mut self, view: &str, kinds: Vec<KeyKind>) -> Self {
        if let Some(served) = self.views.get_mut(view) {
            served.kinds = Some(kinds);
        }
        self
    }

    /// Entities one request may ask for, at most (default [`MAX_ENTITIES`]).
    pub fn max_entities(mut self, max: usize) -> Self {
        self.max_entities = max.max(1);
        self
    }

    /// The routes: `POST /get-online-features`, `GET /v1/features`,
    /// `GET /v1/features/{view}` (entity as query parameters) and
    /// `GET /v1/features/{view}/{key}`.
    pub fn router(self) -> Router {
        Router::new()
            .route("/get-online-features", post(routes::get_online_features))
            .route("/v1/features", get(routes::list_views))
            .route("/v1/features/{view}", get(routes::get_feature_by_query))
            .route("/v1/features/{view}/{key}", get(routes::get_feature))
            .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
            .with_state(Arc::new(self))
    }
}
