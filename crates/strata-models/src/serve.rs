//! Model serving inside `strata serve`: the versions the registry says serve (promoted and
//! canary) loaded in memory, `POST /v1/recall/knn` for two-tower models, and the routing,
//! user vectors and GBDT scorers the feed (`strata-feed`) asks for.
//!
//! **Swaps are atomic.** A model's loaded state (its deployment and every version it needs,
//! towers and ANN index) is one immutable snapshot behind an `Arc`. A request takes the
//! snapshot once and uses it to the end; a refresh loads new versions fully (download, open,
//! check) before it replaces the snapshot, so no request ever sees half of a change.
//!
//! **Canary.** A user's variant comes from a stable hash of (model, user): the same user
//! always gets the same version while the split stands, and the answer says which version
//! and variant served it (also in `audit.access_log` and `strata_models_requests_total`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use strata_online::{OnlineStore, Value};
use strata_sql::audit::{AccessRecord, AuditLog, Outcome, Surface};
use strata_table::Lake;

use crate::error::{Error, Result};
use crate::registry::{self, Deployment};
use crate::spec::{Kind, ModelSpec, OnlineInput};
use crate::train::GbdtInputs;

/// The largest `k` a kNN request may ask for.
pub const MAX_K: usize = 10_000;
/// The largest request body taken (bytes).
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// One loaded version.
pub struct LoadedVersion {
    pub version: i64,
    pub artifact: Artifact,
}

/// What a loaded version holds, by kind.
pub enum Artifact {
    /// Towers and the version's ANN index.
    TwoTower {
        tower: strata_twotower::TwoTower,
        index: Arc<strata_ann::Index>,
    },
    /// The flat scorer and how request values map to its inputs.
    Gbdt {
        model: strata_gbdt::Model,
        inputs: GbdtInputs,
    },
}

impl LoadedVersion {
    /// The towers and index of a two-tower version.
    pub fn two_tower(&self) -> Option<(&strata_twotower::TwoTower, &Arc<strata_ann::Index>)> {
        match &self.artifact {
            Artifact::TwoTower { tower, index } => Some((tower, index)),
            Artifact::Gbdt { .. } => None,
        }
    }

    /// The scorer and input mapping of a GBDT version.
    pub fn gbdt(&self) -> Option<(&strata_gbdt::Model, &GbdtInputs)> {
        match &self.artifact {
            Artifact::Gbdt { model, inputs } => Some((model, inputs)),
            Artifact::TwoTower { .. } => None,
        }
    }
}

/// The version serving one user.
#[derive(Clone)]
pub struct Routed {
    pub version: i64,
    /// Served as the canary for the user's bucket.
    pub canary: bool,
    pub loaded: Arc<LoadedVersion>,
}

/// What serves one model now.
#[derive(Default)]
pub struct Snapshot {
    pub deployment: Deployment,
    pub versions: HashMap<i64, Arc<LoadedVersion>>,
}

struct Served {
    spec: ModelSpec,
    /// Versions kept loaded besides the deployment's (an experiment variant pins them).
    pinned: Vec<i64>,
    /// Tables the model reads (its training rows and catalogue): a token must be granted
    /// their namespaces.
    reads: std::result::Result<Vec<String>, String>,
    current: RwLock<Arc<Snapshot>>,
}

/// The model server. Build it with [`ModelServer::new`], call [`ModelServer::refresh`] once
/// (and then periodically: [`ModelServer::spawn_refresh`]), mount [`ModelServer::router`].
pub struct ModelServer {
    lake: Lake,
    store: OnlineStore,
    cache: PathBuf,
    tokens_path: PathBuf,
    audit: AuditLog,
    models: HashMap<String, Served>,
}

impl std::fmt::Debug for ModelServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelServer")
            .field("models", &self.models.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl ModelServer {
    /// Serves the models of `specs` (two-tower: kNN recall and user vectors; GBDT: scorers for
    /// the feed). Artifacts are downloaded into `cache` (e.g. `<data>/models`).
    pub fn new(
        lake: Lake,
        store: OnlineStore,
        specs: Vec<ModelSpec>,
        cache: PathBuf,
        tokens_path: PathBuf,
    ) -> ModelServer {
        let models = specs
            .into_iter()
            .map(|spec| {
                let reads: std::result::Result<Vec<String>, String> = spec
                    .reads()
                    .map(|r| r.into_iter().collect())
                    .map_err(|e| e.to_string());
                (
                    spec.name.clone(),
                    Served {
                        spec,
                        pinned: Vec::new(),
                        reads,
                        current: RwLock::new(Arc::new(Snapshot::default())),
                    },
                )
            })
            .collect();
        ModelServer {
            lake,
            store,
            cache,
            tokens_path,
            audit: AuditLog::disabled(),
            models,
        }
    }

    /// Where every request is recorded (`audit.access_log`, surface `serve`).
    pub fn with_audit(mut self, audit: AuditLog) -> Self {
        self.audit = audit;
        self
    }

    /// Keeps `version` of `model` loaded whatever the deployment says (an experiment variant
    /// serves it). Call before the first refresh.
    pub fn pin(&mut self, model: &str, version: i64) {
        if let Some(s) = self.models.get_mut(model) {
            if !s.pinned.contains(&version) {
                s.pinned.push(version);
            }
        }
    }

    /// The names of the served models.
    pub fn model_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.models.keys().cloned().collect();
        names.sort();
        names
    }

    /// The names of the served two-tower models (what `/v1/recall/knn` answers for).
    pub fn two_tower_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .models
            .iter()
            .filter(|(_, s)| s.spec.kind == Kind::TwoTower)
            .map(|(n, _)| n.clone())
            .collect();
        names.sort();
        names
    }

    /// A served model's declaration.
    pub fn spec(&self, model: &str) -> Option<&ModelSpec> {
        self.models.get(model).map(|s| &s.spec)
    }

    /// Where a served GBDT's inputs come from online (`[online]` in its file).
    pub fn online_inputs(
        &self,
        model: &str,
    ) -> Option<&std::collections::BTreeMap<String, OnlineInput>> {
        self.models.get(model).map(|s| &s.spec.online)
    }

    /// 403 unless `token` may read the tables `model` reads.
    pub fn authorize(&self, token: &strata_core::tokens::Token, model: &str) -> Result<()> {
        match self.models.get(model) {
            Some(s) => Ok(strata_features::server::auth::check_reads(
                token, model, &s.reads,
            )?),
            None => Ok(()),
        }
    }

    /// The version of `model` that serves `user`: `pinned` when given (it must be loaded:
    /// see [`ModelServer::pin`]), else the canary for the user's bucket or the promoted one.
    pub fn route(&self, model: &str, user: &str, pinned: Option<i64>) -> Result<Routed> {
        let snapshot = self.snapshot(model).ok_or_else(|| {
            Error::NotReady(format!(
                "model {model} is not declared in the project (models/<project>/ml/{model}.toml)"
            ))
        })?;
        let (version, canary) = match pinned {
            Some(v) => (v, false),
            None => registry::route(&snapshot.deployment, model, user).ok_or_else(|| {
                Error::NotReady(format!(
                    "model {model} has no promoted version yet: train it (`strata models train {model}`)"
                ))
            })?,
        };
        let loaded = snapshot.versions.get(&version).cloned().ok_or_else(|| {
            Error::NotReady(format!(
                "model {model} version {version} is not loaded (yet: the server refreshes every few seconds)"
            ))
        })?;
        Ok(Routed {
            version,
            canary,
            loaded,
        })
    }

    /// The user tower's vector for `user` (features from the online store), and whether the
    /// user had a feature row (a user without one gets the id embedding and missing
    /// numerics).
    pub async fn user_vector(
        &self,
        model: &str,
        tower: &strata_twotower::TwoTower,
        user: &str,
    ) -> Result<(Vec<f32>, bool)> {
        let spec = &self
            .models
            .get(model)
            .ok_or_else(|| Error::NotReady(format!("model {model} is not served")))?
            .spec;
        let (numeric, categorical, found) = user_inputs(&self.store, spec, user).await?;
        let v = tower
            .user_vector(&numeric, &categorical)
            .map_err(|e| Error::Internal(format!("user tower: {e}")))?;
        Ok((v, found))
    }

    /// The snapshot serving `model` now.
    pub fn snapshot(&self, model: &str) -> Option<Arc<Snapshot>> {
        self.models
            .get(model)
            .and_then(|s| s.current.read().ok().map(|g| g.clone()))
    }

    /// Reads every model's deployment from the registry and, where it changed, loads the
    /// versions it needs and swaps them in. A model whose versions cannot be loaded keeps
    /// serving what it served (the failure is logged and returned).
    pub async fn refresh(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for (name, served) in &self.models {
            if let Err(e) = self.refresh_one(name, served).await {
                tracing::warn!(model = %name, error = %e, "models: refresh failed, serving what was loaded");
                problems.push(format!("{name}: {e}"));
            }
        }
        problems
    }

    async fn refresh_one(&self, name: &str, served: &Served) -> Result<()> {
        let history = registry::deployments(&self.lake, name).await?;
        let deployment = registry::current(&history);
        let old = served
            .current
            .read()
            .map_err(|_| Error::Internal("model state lock poisoned".into()))?
            .clone();
        if old.deployment == deployment
            && served.pinned.iter().all(|v| old.versions.contains_key(v))
        {
            return Ok(());
        }
        let mut versions = HashMap::new();
        for v in [deployment.promoted, deployment.canary]
            .into_iter()
            .flatten()
            .chain(served.pinned.iter().copied())
        {
            if versions.contains_key(&v) {
                continue;
            }
            let loaded = match old.versions.get(&v) {
                Some(l) => l.clone(),
                None => Arc::new(self.load(name, served.spec.kind, v).await?),
            };
            versions.insert(v, loaded);
        }
        tracing::info!(
            model = %name,
            promoted = ?deployment.promoted,
            canary = ?deployment.canary,
            canary_percent = deployment.canary_percent,
            "models: serving a new deployment"
        );
        let next = Arc::new(Snapshot {
            deployment,
            versions,
        });
        *served
            .current
            .write()
            .map_err(|_| Error::Internal("model state lock poisoned".into()))? = next;
        metrics::counter!("strata_models_swaps_total", "model" => name.to_string()).increment(1);
        Ok(())
    }

    async fn load(&self, name: &str, kind: Kind, version: i64) -> Result<LoadedVersion> {
        let dir = registry::download(&self.lake, name, version, &self.cache).await?;
        tokio::task::spawn_blocking(move || -> Result<LoadedVersion> {
            let artifact = match kind {
                Kind::TwoTower => {
                    let tower = strata_twotower::TwoTower::load(&dir.join("tower"))
                        .map_err(|e| Error::Registry(format!("version {version}: towers: {e}")))?;
                    let index = strata_ann::Index::open(&dir.join("index"))
                        .map_err(|e| Error::Registry(format!("version {version}: index: {e}")))?;
                    Artifact::TwoTower {
                        tower,
                        index: Arc::new(index),
                    }
                }
                Kind::Gbdt => {
                    let read = |f: &str| {
                        std::fs::read(dir.join(f)).map_err(|e| {
                            Error::Registry(format!("version {version}: reading {f}: {e}"))
                        })
                    };
                    let model = strata_gbdt::Model::from_bytes(&read("model.json")?)
                        .map_err(|e| Error::Registry(format!("version {version}: model: {e}")))?;
                    let inputs: GbdtInputs = serde_json::from_slice(&read("inputs.json")?)
                        .map_err(|e| Error::Registry(format!("version {version}: inputs: {e}")))?;
                    Artifact::Gbdt { model, inputs }
                }
            };
            Ok(LoadedVersion { version, artifact })
        })
        .await
        .map_err(|e| Error::Internal(format!("loading thread: {e}")))?
    }

    /// Refreshes every `every` until the process ends.
    pub fn spawn_refresh(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                me.refresh().await;
            }
        })
    }

    /// `POST /v1/recall/knn`.
    pub fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route("/v1/recall/knn", post(knn))
            .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
            .with_state(self)
    }
}

/// A kNN request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KnnRequest {
    /// The model (may be left out when one two-tower model is served).
    #[serde(default)]
    pub model: Option<String>,
    /// The user whose tower gives the query vector (features from the online store)...
    #[serde(default)]
    pub user_id: Option<serde_json::Value>,
    /// ... or the query vector itself.
    #[serde(default)]
    pub vector: Option<Vec<f32>>,
    #[serde(default = "default_k")]
    pub k: usize,
    /// `exclude_ids`, `created_after` (epoch µs or RFC 3339), `must` conditions, or a
    /// declared payload field as a shorthand (`"author_id": 7` or `[7, 9]`).
    #[serde(default)]
    pub filter: Option<serde_json::Map<String, serde_json::Value>>,
    /// Candidate list size of the graph walk (default: the model's `ef_search`, at least k).
    #[serde(default)]
    pub ef: Option<usize>,
}

fn default_k() -> usize {
    100
}

/// A kNN answer.
#[derive(Debug, Serialize)]
pub struct KnnResponse {
    pub model: String,
    pub version: i64,
    /// `promoted` or `canary`.
    pub variant: &'static str,
    pub ids: Vec<u64>,
    pub scores: Vec<f32>,
    /// How the search ran: `graph`, `exact` or `empty`.
    pub path: &'static str,
    pub took_ms: f64,
}

/// Turns the request's filter JSON into the index's filter.
pub fn parse_filter(
    raw: Option<serde_json::Map<String, serde_json::Value>>,
) -> Result<strata_ann::Filter> {
    use serde_json::Value as J;
    let Some(raw) = raw else {
        return Ok(strata_ann::Filter::default());
    };
    let mut core = serde_json::Map::new();
    let mut shorthand = Vec::new();
    for (k, v) in raw {
        match k.as_str() {
            "exclude_ids" | "must" => {
                core.insert(k, v);
            }
            "created_after" => {
                let micros =
                    match &v {
                        J::Number(n) => n.as_i64().ok_or_else(|| {
                            Error::BadRequest(
                            "filter.created_after must be an integer (epoch µs) or RFC 3339 text"
                                .into(),
                        )
                        })?,
                        J::String(s) => chrono::DateTime::parse_from_rfc3339(s)
                            .map_err(|e| {
                                Error::BadRequest(format!(
                                    "filter.created_after {s:?} is not RFC 3339 ({e})"
                                ))
                            })?
                            .timestamp_micros(),
                        J::Null => continue,
                        _ => return Err(Error::BadRequest(
                            "filter.created_after must be an integer (epoch µs) or RFC 3339 text"
                                .into(),
                        )),
                    };
                core.insert(k, J::from(micros));
            }
            _ => {
                let value = |v: &J| -> Result<strata_ann::PayloadValue> {
                    match v {
                        J::Number(n) => {
                            n.as_i64()
                                .map(strata_ann::PayloadValue::Int)
                                .ok_or_else(|| {
                                    Error::BadRequest(format!("filter.{k}: {n} is not an integer"))
                                })
                        }
                        J::String(s) => Ok(strata_ann::PayloadValue::Str(s.clone())),
                        _ => Err(Error::BadRequest(format!(
                            "filter.{k}: a value must be an integer or text"
                        ))),
                    }
                };
                let cond = match &v {
                    J::Array(a) => strata_ann::FieldCondition::one_of(
                        k.clone(),
                        a.iter().map(value).collect::<Result<Vec<_>>>()?,
                    ),
                    other => strata_ann::FieldCondition::eq(k.clone(), value(other)?),
                };
                shorthand.push(cond);
            }
        }
    }
    let mut filter: strata_ann::Filter = serde_json::from_value(J::Object(core))
        .map_err(|e| Error::BadRequest(format!("filter: {e}")))?;
    filter.must.extend(shorthand);
    Ok(filter)
}

/// The user tower's inputs for `user` from the online store.
async fn user_inputs(
    store: &OnlineStore,
    spec: &ModelSpec,
    user: &str,
) -> Result<(Vec<f32>, Vec<u64>, bool)> {
    let tt = spec
        .two_tower
        .as_ref()
        .ok_or_else(|| Error::Internal("not a two-tower model".into()))?;
    let mut numeric = vec![f32::NAN; tt.user.numeric.len()];
    let mut categorical = vec![0u64; tt.user.categorical.len()];
    let needs_view =
        !tt.user.numeric.is_empty() || tt.user.categorical.iter().any(|c| c.name() != tt.user.id);
    let mut found = HashMap::new();
    if needs_view {
        let view = tt.user.view.as_deref().ok_or_else(|| {
            Error::Internal(format!(
                "model {}: [user] names no view to read features from",
                spec.name
            ))
        })?;
        let rows = store
            .lookup(view, &[strata_online::entity_key(&[user])])
            .await
            .map_err(|e| Error::NotReady(format!("reading user features from {view}: {e}")))?;
        if rows.published.is_none() {
            return Err(Error::NotReady(format!(
                "feature view {view} has not been materialized yet: run `strata features materialize {view}`"
            )));
        }
        if let Some(row) = rows.rows.first() {
            for (c, v) in row.columns.iter().zip(&row.values) {
                found.insert(c.name.as_str().to_string(), v.clone());
            }
        }
    }
    // A user without a row gets NaN numerics (treated as missing) and the id embedding.
    for (i, n) in tt.user.numeric.iter().enumerate() {
        numeric[i] = match found.get(n) {
            Some(Value::Int64(x)) => *x as f32,
            Some(Value::Float64(x)) => *x as f32,
            Some(Value::Bool(b)) => f32::from(u8::from(*b)),
            _ => f32::NAN,
        };
    }
    for (i, c) in tt.user.categorical.iter().enumerate() {
        categorical[i] = if c.name() == tt.user.id {
            user.parse::<i64>()
                .map(|v| v as u64)
                .unwrap_or_else(|_| crate::data::hash_str(user))
        } else {
            match found.get(c.name()) {
                Some(Value::Int64(x)) => *x as u64,
                Some(Value::String(s)) => crate::data::hash_str(s),
                _ => 0,
            }
        };
    }
    Ok((numeric, categorical, !found.is_empty()))
}

fn user_text(v: &serde_json::Value) -> Result<String> {
    match v {
        serde_json::Value::Number(n) if n.is_i64() || n.is_u64() => Ok(n.to_string()),
        serde_json::Value::String(s) if !s.is_empty() => Ok(s.clone()),
        _ => Err(Error::BadRequest(
            "user_id must be an integer or non-empty text".into(),
        )),
    }
}

async fn knn(
    State(server): State<Arc<ModelServer>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let started = Instant::now();
    let token = strata_features::server::auth::authenticate(&headers, &server.tokens_path);
    let token_ref = token.as_ref().ok().cloned();
    let result = match token {
        Err(e) => Err(Error::Features(e)),
        Ok(t) => answer(&server, &t, &body, started).await,
    };
    let (status, detail, rows, object) = match &result {
        Ok(r) => (
            200u16,
            Some(format!("version {} variant {}", r.version, r.variant)),
            Some(r.ids.len() as i64),
            Some(r.model.clone()),
        ),
        Err(e) => (status(e).as_u16(), Some(e.to_string()), None, None),
    };
    server.audit.record(AccessRecord {
        ts: chrono::Utc::now(),
        actor: token_ref
            .as_ref()
            .map_or_else(|| "-".to_string(), |t| t.name.clone()),
        role: token_ref.as_ref().and_then(|t| t.role.clone()),
        surface: Surface::Serve,
        action: "POST /v1/recall/knn".to_string(),
        object,
        outcome: Outcome::from_status(status),
        status: Some(status),
        rows,
        detail,
    });
    metrics::histogram!("strata_models_knn_duration_seconds")
        .record(started.elapsed().as_secs_f64());
    match result {
        Ok(r) => {
            metrics::counter!(
                "strata_models_requests_total",
                "model" => r.model.clone(),
                "version" => r.version.to_string(),
                "variant" => r.variant
            )
            .increment(1);
            Json(r).into_response()
        }
        Err(e) => e.into_response(),
    }
}

async fn answer(
    server: &ModelServer,
    token: &strata_core::tokens::Token,
    body: &[u8],
    started: Instant,
) -> Result<KnnResponse> {
    strata_features::server::auth::require_serve(token)?;
    let req: KnnRequest = serde_json::from_slice(body)
        .map_err(|e| Error::BadRequest(format!("request body: {e}")))?;
    let knn_models = server.two_tower_names();
    let name = match (&req.model, knn_models.len()) {
        (Some(m), _) => m.clone(),
        (None, 1) => knn_models[0].clone(),
        (None, 0) => {
            return Err(Error::NotReady(
                "no two-tower model is declared in the project (models/<project>/ml/*.toml)".into(),
            ))
        }
        (None, _) => {
            return Err(Error::BadRequest(format!(
                "name the model: one of {}",
                knn_models.join(", ")
            )))
        }
    };
    let served = server
        .models
        .get(&name)
        .filter(|s| s.spec.kind == Kind::TwoTower)
        .ok_or_else(|| {
            Error::BadRequest(format!(
                "unknown two-tower model {name:?}: served are {}",
                knn_models.join(", ")
            ))
        })?;
    strata_features::server::auth::check_reads(token, &name, &served.reads)?;
    if req.k == 0 || req.k > MAX_K {
        return Err(Error::BadRequest(format!(
            "k must be between 1 and {MAX_K}"
        )));
    }
    if let Some(ef) = req.ef {
        if ef == 0 || ef > 4 * MAX_K {
            return Err(Error::BadRequest(format!(
                "ef must be between 1 and {}",
                4 * MAX_K
            )));
        }
    }
    let filter = parse_filter(req.filter)?;
    let snapshot = served
        .current
        .read()
        .map_err(|_| Error::Internal("model state lock poisoned".into()))?
        .clone();
    let (user, query) = match (req.user_id.as_ref(), req.vector) {
        (Some(_), Some(_)) => {
            return Err(Error::BadRequest("give user_id or vector, not both".into()))
        }
        (None, None) => return Err(Error::BadRequest("give user_id or vector".into())),
        (Some(u), None) => (Some(user_text(u)?), None),
        (None, Some(v)) => (None, Some(v)),
    };
    let route_key = user.clone().unwrap_or_default();
    let (version, canary) =
        registry::route(&snapshot.deployment, &name, &route_key).ok_or_else(|| {
            Error::NotReady(format!(
                "model {name} has no promoted version yet: train it (`strata models train {name}`)"
            ))
        })?;
    let loaded = snapshot.versions.get(&version).ok_or_else(|| {
        Error::NotReady(format!(
            "model {name} version {version} is not loaded yet (the server refreshes every few seconds)"
        ))
    })?;
    let (tower, index) = loaded
        .two_tower()
        .ok_or_else(|| Error::Internal(format!("model {name} loaded without its towers")))?;
    let query = match (query, user) {
        (Some(v), _) => {
            if v.len() != tower.dim() {
                return Err(Error::BadRequest(format!(
                    "vector has {} values; model {name} version {version} embeds in {}",
                    v.len(),
                    tower.dim()
                )));
            }
            if v.iter().any(|x| !x.is_finite()) {
                return Err(Error::BadRequest("vector values must be finite".into()));
            }
            v
        }
        (None, Some(u)) => {
            let (numeric, categorical, _) = user_inputs(&server.store, &served.spec, &u).await?;
            tower
                .user_vector(&numeric, &categorical)
                .map_err(|e| Error::Internal(format!("user tower: {e}")))?
        }
        (None, None) => return Err(Error::BadRequest("give user_id or vector".into())),
    };
    let index = index.clone();
    let path = index
        .plan(&filter, req.k, req.ef)
        .map_err(|e| Error::BadRequest(format!("filter: {e}")))?;
    let hits = index
        .search(&query, req.k, &filter, req.ef)
        .map_err(|e| Error::BadRequest(format!("search: {e}")))?;
    Ok(KnnResponse {
        model: name,
        version,
        variant: if canary { "canary" } else { "promoted" },
        ids: hits.iter().map(|h| h.id).collect(),
        scores: hits.iter().map(|h| h.score).collect(),
        path: match path {
            strata_ann::SearchPath::Empty => "empty",
            strata_ann::SearchPath::Exact { .. } => "exact",
            strata_ann::SearchPath::Graph { .. } => "graph",
        },
        took_ms: started.elapsed().as_secs_f64() * 1000.0,
    })
}

/// The one place a model error becomes an HTTP status.
pub fn status(e: &Error) -> StatusCode {
    match e {
        Error::BadRequest(_) => StatusCode::BAD_REQUEST,
        Error::Features(f) => f.status(),
        Error::NotReady(_) => StatusCode::SERVICE_UNAVAILABLE,
        Error::Lake(l) if l.retryable() => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = status(&self);
        let message = if status.is_server_error() && status != StatusCode::SERVICE_UNAVAILABLE {
            tracing::warn!(error = %self, "model request failed");
            "internal server error (see the server log)".to_string()
        } else {
            self.to_string()
        };
        (
            status,
            Json(serde_json::json!({"error": message, "detail": message})),
        )
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_parse_with_shorthand() {
        let raw: serde_json::Map<String, serde_json::Value> = serde_json::from_str(
            r#"{"exclude_ids": [1, 2], "created_after": "2026-12-01T00:00:00Z", "author_id": [7, 9], "kind": "photo"}"#,
        )
        .unwrap();
        let f = parse_filter(Some(raw)).unwrap();
        assert_eq!(f.exclude_ids, vec![1, 2]);
        assert_eq!(f.created_after, Some(1_796_083_200_000_000));
        assert_eq!(f.must.len(), 2);
        for bad in [
            r#"{"created_after": "yesterday"}"#,
            r#"{"exclude_ids": "x"}"#,
            r#"{"author_id": {"a": 1}}"#,
            r#"{"author_id": 1.5}"#,
        ] {
            let raw = serde_json::from_str(bad).unwrap();
            assert!(
                matches!(parse_filter(Some(raw)), Err(Error::BadRequest(_))),
                "{bad}"
            );
        }
    }
}
