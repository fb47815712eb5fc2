//! `GET /v1/feed?user_id=U&n=10[&surface=&country=&app_version=]`, authenticated like the
//! feature and kNN endpoints (a `serve` token granted the models' tables), recorded in the
//! access log.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use strata_sql::audit::{AccessRecord, AuditLog, Outcome, Surface};

use crate::catalog::Catalog;
use crate::error::{Error, Result};
use crate::feed::{FeedRequest, FeedService};

/// The feed's HTTP side.
pub struct FeedServer {
    pub service: Arc<FeedService>,
    pub tokens_path: PathBuf,
    pub audit: AuditLog,
}

impl FeedServer {
    pub fn router(self: Arc<Self>) -> Router {
        Router::new().route("/v1/feed", get(feed)).with_state(self)
    }
}

/// Loads the catalogue now and then every `refresh_secs` (a failed reload keeps the old
/// one and is logged). The task ends once the service is dropped (the server stopped): it
/// holds the service only while it reloads, so the bus the service writes to is released.
pub fn spawn_catalog_refresh(
    service: &Arc<FeedService>,
    lake: strata_table::Lake,
) -> tokio::task::JoinHandle<()> {
    let weak = Arc::downgrade(service);
    let every = Duration::from_secs(service.config().catalog.refresh_secs.max(1));
    tokio::spawn(async move {
        loop {
            {
                let Some(service) = weak.upgrade() else {
                    return;
                };
                refresh_catalog(&service, &lake).await;
            }
            tokio::time::sleep(every).await;
        }
    })
}

/// Loads the catalogue once and swaps it in; returns the warnings (parts that failed).
pub async fn refresh_catalog(service: &FeedService, lake: &strata_table::Lake) -> Vec<String> {
    match Catalog::load(lake, &service.config().catalog).await {
        Ok((catalog, warnings)) => {
            for w in &warnings {
                tracing::warn!(problem = %w, "feed: part of the catalogue could not be loaded");
            }
            tracing::info!(
                posts = catalog.posts.len(),
                follows = catalog.follows.len(),
                trending = catalog.trending.len(),
                "feed: catalogue loaded"
            );
            service.set_catalog(Arc::new(catalog));
            warnings
        }
        Err(e) => {
            if service.catalog().loaded_at == 0 {
                // A new deployment whose warehouse has not run yet: not an alarm.
                tracing::info!(error = %e, "feed: no catalogue yet (the warehouse has not built its tables)");
            } else {
                tracing::warn!(error = %e, "feed: reloading the catalogue failed; serving the previous one");
            }
            vec![e.to_string()]
        }
    }
}

async fn feed(
    State(server): State<Arc<FeedServer>>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let token = strata_features::server::auth::authenticate(&headers, &server.tokens_path);
    let token_ref = token.as_ref().ok().cloned();
    let result = match token {
        Err(e) => Err(Error::Features(e)),
        Ok(t) => answer(&server, &t, params).await,
    };
    let (status, detail, rows, object) = match &result {
        Ok((r, _)) => (
            200u16,
            Some(format!(
                "request {}{}",
                r.request_id,
                r.experiment
                    .as_ref()
                    .map(|a| format!(" {}={}", a.experiment, a.variant))
                    .unwrap_or_default()
            )),
            Some(r.items.len() as i64),
            Some(r.user_id.clone()),
        ),
        Err(e) => (e.status().as_u16(), Some(e.to_string()), None, None),
    };
    server.audit.record(AccessRecord {
        ts: chrono::Utc::now(),
        actor: token_ref
            .as_ref()
            .map_or_else(|| "-".to_string(), |t| t.name.clone()),
        role: token_ref.as_ref().and_then(|t| t.role.clone()),
        surface: Surface::Serve,
        action: "GET /v1/feed".to_string(),
        object,
        outcome: Outcome::from_status(status),
        status: Some(status),
        rows,
        detail,
    });
    match result {
        Ok((r, _)) => Json(r).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn answer(
    server: &FeedServer,
    token: &strata_core::tokens::Token,
    mut params: HashMap<String, String>,
) -> Result<(crate::feed::FeedResponse, ())> {
    strata_features::server::auth::require_serve(token)?;
    let models = server.service.models();
    let cfg = server.service.config();
    for model in [&cfg.recall_model, &cfg.ranker_model] {
        models.authorize(token, model)?;
    }
    let user_id = params
        .remove("user_id")
        .ok_or_else(|| Error::BadRequest("user_id is required".into()))?;
    let n =
        match params.remove("n") {
            None => None,
            Some(n) => Some(n.parse::<usize>().map_err(|_| {
                Error::BadRequest(format!("n must be a positive integer, not {n:?}"))
            })?),
        };
    let req = FeedRequest {
        user_id,
        n,
        surface: params.remove("surface"),
        country: params.remove("country"),
        app_version: params.remove("app_version"),
    };
    if let Some(unknown) = params.keys().next() {
        return Err(Error::BadRequest(format!(
            "unknown parameter {unknown:?} (user_id, n, surface, country, app_version)"
        )));
    }
    Ok((server.service.feed(req).await?, ()))
}
