//! One feed request: experiment assignment → candidate sources (each on its own budget) →
//! merge and filters → GBDT ranking on user and post features fetched in one batch →
//! diversity re-ranking → the answer, the seen cache, and a `Feed Served` event.
//!
//! A stage that runs out of time or fails degrades instead of failing the request: a slow
//! source is dropped, a missing ranker falls back to the sources' own order, a user without
//! features gets the cold-start pool. The answer lists every stage with its time and outcome.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use serde::Serialize;
use strata_models::serve::{LoadedVersion, ModelServer};
use strata_online::store::ColumnRow;
use strata_online::{LookupStatus, OnlineStore, Value};

use crate::catalog::{Catalog, IdMap, IdSet, Post};
use crate::config::{ExperimentConfig, FeedConfig, SourceConfig, VariantConfig};
use crate::error::{Error, Result};
use crate::events::ImpressionLog;
use crate::rerank::rerank;
use crate::seen::Seen;

/// A feed request.
#[derive(Debug, Clone, Default)]
pub struct FeedRequest {
    pub user_id: String,
    pub n: Option<usize>,
    /// Where the feed is shown (e.g. `home`), recorded with the impressions.
    pub surface: Option<String>,
    pub country: Option<String>,
    pub app_version: Option<String>,
}

/// One item of the answer.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FeedItem {
    pub post_id: u64,
    pub author_id: u64,
    /// 1-based.
    pub position: usize,
    /// The ranker's score (a click probability), or the merged sources' score without one.
    pub score: f64,
    /// Every source that proposed it.
    pub sources: Vec<&'static str>,
}

/// A model that served the request.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ServedModel {
    pub name: String,
    pub version: i64,
    /// Served as the model's canary for this user's bucket.
    pub canary: bool,
}

/// The experiment variant the user is in.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Assignment {
    pub experiment: String,
    pub variant: String,
}

/// One stage's time and outcome.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Stage {
    pub name: String,
    pub ms: f64,
    /// `ok`, `timeout`, `error`, `skipped` or `empty`.
    pub status: &'static str,
    /// Candidates it gave (sources), rows it scored (rank).
    pub count: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The answer to `GET /v1/feed`.
#[derive(Debug, Clone, Serialize)]
pub struct FeedResponse {
    pub request_id: String,
    pub user_id: String,
    pub items: Vec<FeedItem>,
    pub ranker: Option<ServedModel>,
    pub recall: Option<ServedModel>,
    pub experiment: Option<Assignment>,
    /// The user had no features: the cold-start pool served.
    pub cold_start: bool,
    /// What did not run as configured (a source that timed out, no ranker...).
    pub degraded: Vec<String>,
    pub stages: Vec<Stage>,
    pub ms: f64,
}

/// A candidate while it is merged and ranked.
#[derive(Debug, Clone)]
struct Candidate {
    post: u64,
    /// The sources that proposed it: bit i for `SOURCES[i]`, the top bit for any other.
    sources: u8,
    /// Reciprocal-rank fusion of its ranks in the sources that proposed it.
    fused: f64,
}

/// The feed: built once per process, shared by request handlers.
pub struct FeedService {
    config: FeedConfig,
    experiments: Vec<ExperimentConfig>,
    models: Arc<ModelServer>,
    store: OnlineStore,
    /// View name → its keys, for the ranker's online inputs.
    view_entities: HashMap<String, crate::ViewKeys>,
    /// Rows of batch views keyed without the user (the candidates' own features).
    items: crate::items::ItemCache,
    catalog: RwLock<Arc<Catalog>>,
    /// Real-time trending (`trending.rs`), when the stream view has rows.
    live_trending: RwLock<Option<Arc<crate::trending::LiveTrending>>>,
    seen: Seen,
    impressions: Option<ImpressionLog>,
}

impl std::fmt::Debug for FeedService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeedService")
            .field("recall_model", &self.config.recall_model)
            .field("ranker_model", &self.config.ranker_model)
            .finish()
    }
}

/// Every stage a feed reports in its `stages`, in the order it runs them: the user's row, the
/// sources ([`crate::config::SOURCES`], concurrent; `cold_start` only for cold users), merge
/// and filters, the ranker's input fetch, scoring, re-ranking.
pub const STAGES: [&str; 11] = [
    "features",
    "ann",
    "u2u",
    "following",
    "interest",
    "trending",
    "cold_start",
    "merge_filter",
    "fetch",
    "rank",
    "rerank",
];

/// The `ann` source's error for a user the recall model has no features for: such a user is
/// cold.
const NO_FEATURES: &str = "no features for this user";

/// Reciprocal-rank fusion constant.
const RRF_K: f64 = 60.0;

impl FeedService {
    pub fn new(
        config: FeedConfig,
        experiments: Vec<ExperimentConfig>,
        models: Arc<ModelServer>,
        store: OnlineStore,
        view_entities: HashMap<String, crate::ViewKeys>,
        impressions: Option<ImpressionLog>,
    ) -> FeedService {
        let seen = Seen::new(
            config.filters.seen_ttl_secs,
            config.filters.seen_max_users,
            config.filters.seen_shared.then(|| store.clone()),
            Duration::from_millis(config.filters.seen_budget_ms),
        );
        FeedService {
            config,
            experiments,
            models,
            store,
            view_entities,
            items: crate::items::ItemCache::default(),
            catalog: RwLock::new(Arc::new(Catalog::default())),
            live_trending: RwLock::new(None),
            seen,
            impressions,
        }
    }

    pub fn config(&self) -> &FeedConfig {
        &self.config
    }

    pub fn models(&self) -> &Arc<ModelServer> {
        &self.models
    }

    /// Swaps in a newly loaded catalogue.
    pub fn set_catalog(&self, catalog: Arc<Catalog>) {
        if let Ok(mut c) = self.catalog.write() {
            *c = catalog;
        }
    }

    pub fn store(&self) -> &OnlineStore {
        &self.store
    }

    /// Swaps in a newly scanned real-time trending list (an empty one keeps the lake's).
    pub fn set_live_trending(&self, live: crate::trending::LiveTrending) {
        if let Ok(mut t) = self.live_trending.write() {
            *t = (!live.posts.is_empty()).then(|| Arc::new(live));
        }
    }

    /// The trending list the trending source serves: what is engaging now (the live list,
    /// while it is fresh: three refresh periods), then the lake's daily list after it, so a
    /// quiet hour with few engaged posts still fills the source's `k`.
    fn trending_list(&self, catalog: &Catalog, k: usize) -> Vec<u64> {
        let max_age =
            std::time::Duration::from_secs(3 * self.config.catalog.trending_refresh_secs.max(1));
        let live = self
            .live_trending
            .read()
            .ok()
            .and_then(|t| t.clone())
            .filter(|t| t.computed_at.elapsed() <= max_age);
        let Some(live) = live else {
            return head(&catalog.trending, k);
        };
        let mut out = head(&live.posts, k);
        let mut taken: HashSet<u64> = out.iter().copied().collect();
        for (post, _) in &catalog.trending {
            if out.len() >= k {
                break;
            }
            if taken.insert(*post) {
                out.push(*post);
            }
        }
        out
    }

    pub fn catalog(&self) -> Arc<Catalog> {
        self.catalog
            .read()
            .map(|c| c.clone())
            .unwrap_or_else(|_| Arc::new(Catalog::default()))
    }

    /// The variant of the enabled experiment `user` is in (stable for the experiment's life).
    pub fn assign(&self, user: &str) -> Option<(&ExperimentConfig, &VariantConfig)> {
        let e = self.experiments.iter().find(|e| e.enabled)?;
        let b = strata_models::registry::bucket(&format!("experiment:{}", e.name), user);
        let mut upto = 0;
        for v in &e.variants {
            upto += v.share;
            if b < upto {
                return Some((e, v));
            }
        }
        e.variants.last().map(|v| (e, v))
    }

    /// Serves one feed.
    pub async fn feed(&self, req: FeedRequest) -> Result<FeedResponse> {
        let started = Instant::now();
        let budget = Duration::from_millis(self.config.budget_ms);
        let deadline = started + budget;
        if req.user_id.is_empty() || req.user_id.len() > 256 {
            return Err(Error::BadRequest(
                "user_id is required (at most 256 characters)".into(),
            ));
        }
        let n = req.n.unwrap_or(self.config.default_n);
        if n == 0 || n > self.config.max_n {
            return Err(Error::BadRequest(format!(
                "n must be between 1 and {}",
                self.config.max_n
            )));
        }
        let request_id = new_request_id();
        let now = strata_core::time::now_micros();
        let user_num: Option<u64> = req.user_id.parse().ok();
        let catalog = self.catalog();
        if catalog.loaded_at == 0 {
            return Err(Error::NotReady(
                "the feed's catalogue is not loaded yet (it loads at start and every \
                 feed.catalog.refresh_secs; the warehouse must have built its tables)"
                    .into(),
            ));
        }

        let assignment = self.assign(&req.user_id);
        let cfg = match assignment {
            Some((_, v)) => self.config.with_variant(v),
            None => self.config.clone(),
        };
        let variant = assignment.map(|(_, v)| v);
        let mut stages = Vec::new();
        let mut degraded = Vec::new();

        // Excluded before ranking: seen, own, blocked (and, later, unknown = deleted).
        let seen: IdSet = match (cfg.filters.seen, user_num) {
            (true, Some(u)) => {
                let (seen, why) = self.seen.seen(u, now).await;
                degraded.extend(why);
                seen
            }
            _ => IdSet::default(),
        };
        let no_blocks = IdSet::default();
        let blocked: &IdSet = match (cfg.filters.blocked_authors, user_num) {
            (true, Some(u)) => catalog.blocks.get(&u).unwrap_or(&no_blocks),
            _ => &no_blocks,
        };

        // Recall model: the version for this user (the variant may pin one).
        let recall = self.models.route(
            &cfg.recall_model,
            &req.user_id,
            variant.and_then(|v| v.recall_version),
        );

        // The user's top tags: the interest source and the ranker's tag_match read them.
        let t = Instant::now();
        let interests = self.interests(&req.user_id).await;
        stages.push(Stage {
            name: "features".into(),
            ms: t.elapsed().as_secs_f64() * 1e3,
            status: if interests.is_empty() { "empty" } else { "ok" },
            count: interests.len(),
            detail: None,
        });

        // Sources, concurrently, each within its budget and the request's.
        let t = Instant::now();
        let (ann, u2u, following, interest, trending) = tokio::join!(
            self.timed("ann", &cfg.sources.ann, deadline, async {
                let Ok(loaded) = &recall else {
                    return Err(recall
                        .as_ref()
                        .err()
                        .map(ToString::to_string)
                        .unwrap_or_default());
                };
                self.ann(loaded, &req.user_id, &cfg.sources.ann, &seen)
                    .await
            }),
            self.timed("u2u", &cfg.sources.u2u, deadline, async {
                self.u2u(&catalog, &cfg, &req.user_id, cfg.sources.u2u.k)
                    .await
            }),
            self.timed("following", &cfg.sources.following, deadline, async {
                Ok(following(&catalog, user_num, cfg.sources.following.k))
            }),
            self.timed("interest", &cfg.sources.interest, deadline, async {
                Ok(interest(&catalog, &interests, cfg.sources.interest.k))
            }),
            self.timed("trending", &cfg.sources.trending, deadline, async {
                Ok(self.trending_list(&catalog, cfg.sources.trending.k))
            }),
        );
        let mut results = vec![ann, u2u, following, interest, trending];
        // The user is cold when the recall model found no features for them (or, without a
        // recall model, when no personal source found anything).
        let personal = results[..4].iter().map(|r| r.1.len()).sum::<usize>();
        let cold = results[0].0.detail.as_deref() == Some(NO_FEATURES) || personal == 0;
        if cold {
            let pool = req
                .country
                .as_deref()
                .map(str::to_string)
                .or_else(|| user_num.and_then(|u| catalog.countries.get(&u).cloned()))
                .and_then(|c| catalog.popular_by_country.get(&c))
                .filter(|p| p.len() >= cfg.sources.cold_start.k.min(50))
                .unwrap_or(&catalog.popular);
            let k = cfg.sources.cold_start.k;
            results.push(
                self.timed("cold_start", &cfg.sources.cold_start, deadline, async {
                    Ok(head(pool, k))
                })
                .await,
            );
        }
        for (stage, _) in &results {
            if matches!(stage.status, "timeout" | "error") {
                degraded.push(format!(
                    "source {} {}{}",
                    stage.name,
                    stage.status,
                    stage
                        .detail
                        .as_ref()
                        .map(|d| format!(": {d}"))
                        .unwrap_or_default()
                ));
            }
        }
        let source_ms = t.elapsed().as_secs_f64() * 1e3;

        // Merge: reciprocal-rank fusion over sources; filters.
        let t = Instant::now();
        let mut merged: IdMap<Candidate> = IdMap::default();
        let mut dropped = [0usize; 4];
        for (stage, ids) in &results {
            let bit = source_bit(&stage.name);
            for (rank, &p) in ids.iter().enumerate() {
                let c = merged.entry(p).or_insert_with(|| Candidate {
                    post: p,
                    sources: 0,
                    fused: 0.0,
                });
                if c.sources & bit == 0 {
                    c.sources |= bit;
                    c.fused += 1.0 / (RRF_K + rank as f64 + 1.0);
                }
            }
        }
        let mut candidates: Vec<Candidate> = merged
            .into_values()
            .filter(|c| {
                let Some(post) = catalog.posts.get(&c.post) else {
                    dropped[0] += 1;
                    return false;
                };
                if cfg.filters.own_posts && Some(post.author) == user_num {
                    dropped[1] += 1;
                    return false;
                }
                if blocked.contains(&post.author) {
                    dropped[2] += 1;
                    return false;
                }
                if seen.contains(&c.post) {
                    dropped[3] += 1;
                    return false;
                }
                true
            })
            .collect();
        candidates.sort_unstable_by(|a, b| b.fused.total_cmp(&a.fused).then(a.post.cmp(&b.post)));
        candidates.truncate(cfg.max_candidates);
        stages.extend(results.iter().map(|(s, _)| s.clone()));
        stages.push(Stage {
            name: "merge_filter".into(),
            ms: t.elapsed().as_secs_f64() * 1e3,
            status: "ok",
            count: candidates.len(),
            detail: Some(format!(
                "dropped {} deleted, {} own, {} blocked, {} seen",
                dropped[0], dropped[1], dropped[2], dropped[3]
            )),
        });

        // Rank.
        let t = Instant::now();
        let mut ranker_served = None;
        let no_ranker = variant.is_some_and(|v| v.no_ranker);
        let scores: Vec<f64> = if no_ranker {
            stages.push(skipped("rank", "the variant ranks by the sources' order"));
            candidates.iter().map(|c| c.fused).collect()
        } else if Instant::now() >= deadline {
            degraded.push("rank skipped: the request's budget was spent".into());
            stages.push(skipped("rank", "budget spent"));
            candidates.iter().map(|c| c.fused).collect()
        } else {
            match self.models.route(
                &cfg.ranker_model,
                &req.user_id,
                variant.and_then(|v| v.ranker_version),
            ) {
                Ok(routed) => {
                    match self
                        .rank(
                            &catalog,
                            &routed.loaded,
                            &cfg.ranker_model,
                            &req.user_id,
                            &interests,
                            &candidates,
                        )
                        .await
                    {
                        Ok((s, fetch_ms)) => {
                            ranker_served = Some(ServedModel {
                                name: cfg.ranker_model.clone(),
                                version: routed.version,
                                canary: routed.canary,
                            });
                            stages.push(Stage {
                                name: "fetch".into(),
                                ms: fetch_ms,
                                status: "ok",
                                count: candidates.len(),
                                detail: None,
                            });
                            stages.push(Stage {
                                name: "rank".into(),
                                ms: (t.elapsed().as_secs_f64() * 1e3 - fetch_ms).max(0.0),
                                status: "ok",
                                count: candidates.len(),
                                detail: None,
                            });
                            s
                        }
                        Err(e) => {
                            degraded.push(format!("rank failed ({e}): sources' order"));
                            stages.push(errored("rank", t, e.to_string()));
                            candidates.iter().map(|c| c.fused).collect()
                        }
                    }
                }
                Err(e) => {
                    degraded.push(format!("no ranker ({e}): sources' order"));
                    stages.push(errored("rank", t, e.to_string()));
                    candidates.iter().map(|c| c.fused).collect()
                }
            }
        };
        let mut ranked: Vec<(usize, f64)> = scores.iter().copied().enumerate().collect();
        ranked.sort_unstable_by(|a, b| {
            b.1.total_cmp(&a.1)
                .then(candidates[a.0].post.cmp(&candidates[b.0].post))
        });
        let ranked_posts: Vec<(u64, f64)> = ranked
            .iter()
            .map(|&(i, s)| (candidates[i].post, s))
            .collect();

        // Re-rank for diversity.
        let t = Instant::now();
        let picked = rerank(&catalog, &ranked_posts, n, &cfg.rerank);
        stages.push(Stage {
            name: "rerank".into(),
            ms: t.elapsed().as_secs_f64() * 1e3,
            status: "ok",
            count: picked.len(),
            detail: None,
        });
        let items: Vec<FeedItem> = picked
            .iter()
            .enumerate()
            .map(|(pos, &r)| {
                let (i, score) = ranked[r];
                let c = &candidates[i];
                FeedItem {
                    post_id: c.post,
                    author_id: catalog.posts.get(&c.post).map_or(0, |p| p.author),
                    position: pos + 1,
                    score,
                    sources: source_names(c.sources),
                }
            })
            .collect();

        if let Some(u) = user_num {
            let ids: Vec<u64> = items.iter().map(|i| i.post_id).collect();
            self.seen.record(u, &ids, now);
        }
        let recall_served = recall.ok().map(|r| ServedModel {
            name: cfg.recall_model.clone(),
            version: r.version,
            canary: r.canary,
        });
        let response = FeedResponse {
            request_id,
            user_id: req.user_id.clone(),
            items,
            ranker: ranker_served,
            recall: recall_served,
            experiment: assignment.map(|(e, v)| Assignment {
                experiment: e.name.clone(),
                variant: v.name.clone(),
            }),
            cold_start: cold,
            degraded,
            stages,
            ms: started.elapsed().as_secs_f64() * 1e3,
        };
        metrics::histogram!("strata_feed_sources_seconds").record(source_ms / 1e3);
        metrics::histogram!("strata_feed_duration_seconds").record(started.elapsed().as_secs_f64());
        if let Some(log) = &self.impressions {
            log.record(&response, &req, now);
        }
        Ok(response)
    }

    /// Runs one source within its budget (and what is left of the request's).
    async fn timed(
        &self,
        name: &str,
        c: &SourceConfig,
        deadline: Instant,
        f: impl std::future::Future<Output = std::result::Result<Vec<u64>, String>>,
    ) -> (Stage, Vec<u64>) {
        let t = Instant::now();
        if !c.enabled {
            return (skipped(name, "disabled"), Vec::new());
        }
        let left = deadline.saturating_duration_since(t);
        let budget = Duration::from_millis(c.budget_ms).min(left);
        let (status, detail, ids) = match tokio::time::timeout(budget, f).await {
            Ok(Ok(ids)) if ids.is_empty() => ("empty", None, ids),
            Ok(Ok(ids)) => ("ok", None, ids),
            Ok(Err(e)) => ("error", Some(e), Vec::new()),
            Err(_) => (
                "timeout",
                Some(format!("over its {} ms budget", budget.as_millis())),
                Vec::new(),
            ),
        };
        metrics::histogram!("strata_feed_source_seconds", "source" => name.to_string())
            .record(t.elapsed().as_secs_f64());
        (
            Stage {
                name: name.to_string(),
                ms: t.elapsed().as_secs_f64() * 1e3,
                status,
                count: ids.len(),
                detail,
            },
            ids,
        )
    }

    /// Vector recall: the user tower on the user's online features, then the index with the
    /// seen posts excluded inside the search.
    async fn ann(
        &self,
        loaded: &strata_models::serve::Routed,
        user: &str,
        source: &SourceConfig,
        seen: &IdSet,
    ) -> std::result::Result<Vec<u64>, String> {
        let (tower, index) = loaded
            .loaded
            .two_tower()
            .ok_or_else(|| "the recall model is not a two-tower model".to_string())?;
        let (vector, found) = self
            .models
            .user_vector(&self.config.recall_model, tower, user)
            .await
            .map_err(|e| e.to_string())?;
        if !found {
            return Err(NO_FEATURES.into());
        }
        let filter = strata_ann::Filter {
            exclude_ids: seen.iter().copied().collect(),
            ..strata_ann::Filter::default()
        };
        let hits = index
            .search(&vector, source.k, &filter, source.ef)
            .map_err(|e| e.to_string())?;
        Ok(hits.into_iter().map(|h| h.id).collect())
    }

    /// Posts recently engaged by the user's most similar users, by summed similarity.
    async fn u2u(
        &self,
        catalog: &Catalog,
        cfg: &FeedConfig,
        user: &str,
        k: usize,
    ) -> std::result::Result<Vec<u64>, String> {
        let view = &cfg.catalog.u2u_view;
        let rows = self
            .store
            .lookup(view, &[strata_online::entity_key(&[user])])
            .await
            .map_err(|e| format!("reading {view}: {e}"))?;
        let Some(row) = rows
            .rows
            .first()
            .filter(|r| r.status == LookupStatus::Present)
        else {
            return Ok(Vec::new());
        };
        let get = |name: &str| {
            row.columns
                .iter()
                .position(|c| c.name == name)
                .and_then(|i| row.values.get(i))
        };
        let (Some(Value::Int64List(users)), scores) = (get("similar_users"), get("similar_scores"))
        else {
            return Err(format!("{view} has no similar_users list"));
        };
        let scores: Vec<f64> = match scores {
            Some(Value::Float64List(s)) => s.iter().map(|x| x.unwrap_or(0.0)).collect(),
            _ => vec![1.0; users.len()],
        };
        let mut acc: HashMap<u64, f64> = HashMap::new();
        for (i, u) in users.iter().enumerate() {
            let Some(u) = u else { continue };
            let sim = scores.get(i).copied().unwrap_or(1.0);
            for (rank, p) in catalog
                .interactions
                .get(&(*u as u64))
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .enumerate()
            {
                // Newer engagement counts a little more.
                *acc.entry(*p).or_default() += sim / (1.0 + rank as f64 / 10.0);
            }
        }
        Ok(top_ids(acc, k))
    }

    /// Scores candidates with the GBDT: its inputs mapped to online views (`[online]` in the
    /// model file), one batch lookup per view, and the pair inputs the feed computes
    /// (`feed.follows_author`, `feed.tag_match`, `feed.tag_affinity`). Returns the scores and the time spent
    /// fetching and assembling the inputs (ms).
    async fn rank(
        &self,
        catalog: &Catalog,
        loaded: &LoadedVersion,
        model: &str,
        user: &str,
        interests: &[Interest],
        candidates: &[Candidate],
    ) -> Result<(Vec<f64>, f64)> {
        let started = Instant::now();
        let (gbdt, inputs) = loaded
            .gbdt()
            .ok_or_else(|| Error::Internal(format!("{model} is not a GBDT model")))?;
        let online = self
            .models
            .online_inputs(model)
            .ok_or_else(|| Error::Internal(format!("model {model} is not served")))?;
        let nf = inputs.features.len();
        let mut rows = vec![f32::NAN; candidates.len() * nf];
        let mut by_view: HashMap<&str, Vec<(usize, &str)>> = HashMap::new();
        let mut computed: Vec<(usize, &str)> = Vec::new();
        for (f, (name, _)) in inputs.features.iter().enumerate() {
            match online.get(name) {
                Some(strata_models::spec::OnlineInput::Column { view, column })
                    if view == COMPUTED =>
                {
                    computed.push((f, column.as_str()));
                }
                Some(strata_models::spec::OnlineInput::Column { view, column }) => {
                    by_view
                        .entry(view.as_str())
                        .or_default()
                        .push((f, column.as_str()));
                }
                Some(strata_models::spec::OnlineInput::Constant(x)) => {
                    for r in 0..candidates.len() {
                        rows[r * nf + f] = *x as f32;
                    }
                }
                None => {}
            }
        }
        let user_num: Option<u64> = user.parse().ok();
        // Each candidate's post, looked up once.
        let posts: Vec<Option<&Post>> = candidates
            .iter()
            .map(|c| catalog.posts.get(&c.post))
            .collect();
        let author = |r: usize| posts[r].map_or(0, |p| p.author);
        let no_keys = crate::ViewKeys::default();
        for (view, wanted) in by_view {
            let keys_of_view = self.view_entities.get(view).unwrap_or(&no_keys);
            let entity = &keys_of_view.entity;
            // One key per candidate unless the view is keyed by the user alone.
            let per_user = entity.iter().all(|e| e == USER_KEY);
            // The candidates' own rows (not the user's, changing only with a new version) are
            // read through the item cache.
            let cached = !keys_of_view.stream && !entity.iter().any(|e| e == USER_KEY);
            let key_of = |r: Option<usize>| -> Option<Vec<u8>> {
                let parts: Option<Vec<String>> = entity
                    .iter()
                    .map(|e| match (e.as_str(), r) {
                        (USER_KEY, _) => Some(user.to_string()),
                        (POST_KEY, Some(r)) => Some(candidates[r].post.to_string()),
                        (AUTHOR_KEY, Some(r)) => Some(author(r).to_string()),
                        _ => None,
                    })
                    .collect();
                parts.map(|p| strata_online::entity_key(&p))
            };
            let keys: Vec<Vec<u8>> = if per_user {
                key_of(None).into_iter().collect()
            } else {
                match (0..candidates.len()).map(|r| key_of(Some(r))).collect() {
                    Some(k) => k,
                    // A view keyed by something the feed cannot name: its inputs stay missing.
                    None => continue,
                }
            };
            if keys.is_empty() {
                continue;
            }
            // Only the wanted columns are decoded, straight from each entry's bytes.
            let names: Vec<&str> = wanted.iter().map(|&(_, column)| column).collect();
            let (from_cache, from_store);
            let got: Vec<Option<&ColumnRow>> = if cached {
                from_cache = self.items.rows(&self.store, view, &keys, &names).await?;
                from_cache.iter().map(Option::as_deref).collect()
            } else {
                from_store = self
                    .store
                    .lookup_columns(view, &keys, &names)
                    .await
                    .map_err(|e| Error::Internal(format!("reading {view}: {e}")))?;
                from_store.iter().map(Option::as_ref).collect()
            };
            // Each wanted input's category codes.
            let codes: Vec<Option<&HashMap<String, u32>>> = wanted
                .iter()
                .map(|&(f, _)| {
                    let (name, categorical) = &inputs.features[f];
                    categorical.then(|| inputs.categories.get(name)).flatten()
                })
                .collect();
            for (k, row) in got.iter().enumerate() {
                let Some(row) = row else { continue };
                for ((&(f, _), v), &codes) in wanted.iter().zip(&row.values).zip(&codes) {
                    if matches!(v, Value::Null) {
                        continue;
                    }
                    let v = input_value(v, codes);
                    if per_user {
                        for r in 0..candidates.len() {
                            rows[r * nf + f] = v;
                        }
                    } else {
                        rows[k * nf + f] = v;
                    }
                }
            }
        }
        if !computed.is_empty() {
            let follows: IdSet = user_num
                .and_then(|u| catalog.follows.get(&u))
                .map(|a| a.iter().copied().collect())
                .unwrap_or_default();
            let tags = interest_tag_ids(catalog, interests);
            for (f, what) in computed {
                for (r, post) in posts.iter().enumerate() {
                    rows[r * nf + f] = match (what, post) {
                        ("follows_author", _) => f32::from(u8::from(follows.contains(&author(r)))),
                        ("tag_match" | "tag_affinity", None) => f32::NAN,
                        ("tag_match", Some(p)) => tag_match_ids(p, &tags),
                        ("tag_affinity", Some(p)) => tag_affinity_ids(p, &tags),
                        (other, _) => {
                            return Err(Error::Internal(format!(
                                "model {model}: unknown computed input feed.{other} \
                                 (feed.follows_author, feed.tag_match, feed.tag_affinity)"
                            )))
                        }
                    };
                }
            }
        }
        let fetch_ms = started.elapsed().as_secs_f64() * 1e3;
        let mut out = vec![0f32; candidates.len()];
        if !candidates.is_empty() {
            gbdt.predict_batch(&rows, nf, &mut out)
                .map_err(|e| Error::Internal(format!("scoring: {e}")))?;
        }
        Ok((out.into_iter().map(f64::from).collect(), fetch_ms))
    }

    /// The user's top tags, most engaged first (`feed.interest_view`'s
    /// `feed.interest_columns`), weighted by `feed.interest_weight_columns`; empty when the
    /// view or the row is missing.
    async fn interests(&self, user: &str) -> Vec<Interest> {
        let view = &self.config.interest_view;
        let Ok(rows) = self
            .store
            .lookup(view, &[strata_online::entity_key(&[user])])
            .await
        else {
            return Vec::new();
        };
        let Some(row) = rows
            .rows
            .first()
            .filter(|r| r.status == LookupStatus::Present)
        else {
            return Vec::new();
        };
        let value = |name: &String| {
            row.columns
                .iter()
                .position(|c| &c.name == name)
                .map(|i| &row.values[i])
        };
        let tags: Vec<String> = self
            .config
            .interest_columns
            .iter()
            .map(|name| match value(name) {
                Some(Value::String(s)) => s.clone(),
                _ => String::new(),
            })
            .collect();
        let shares: Vec<Option<f64>> = self
            .config
            .interest_weight_columns
            .iter()
            .map(|name| match value(name) {
                Some(Value::Float64(x)) => Some(*x),
                Some(Value::Int64(x)) => Some(*x as f64),
                _ => None,
            })
            .collect();
        weigh_interests(tags, &shares)
    }
}

/// One of the user's top tags and how much it counts.
#[derive(Debug, Clone, PartialEq)]
pub struct Interest {
    /// The tag; empty when the user has fewer top tags than `feed.interest_columns`.
    pub tag: String,
    /// The tag's share of the user's engagement over the first tag's (1 for the first);
    /// by rank when the share is not served: 1, 2/3, 1/3 of three tags. `ads.ads_sample_ctr`
    /// weighs its `tag_affinity` the same way.
    pub weight: f32,
}

/// The top tags with their weights: each share over the first's, falling back to the rank
/// weight `(n - k) / n` where a share (or the first share) is missing, zero or not finite.
pub fn weigh_interests(tags: Vec<String>, shares: &[Option<f64>]) -> Vec<Interest> {
    let n = tags.len();
    let first = shares
        .first()
        .copied()
        .flatten()
        .filter(|s| s.is_finite() && *s > 0.0);
    tags.into_iter()
        .enumerate()
        .map(|(k, tag)| {
            let share = shares
                .get(k)
                .copied()
                .flatten()
                .filter(|s| s.is_finite() && *s >= 0.0);
            let weight = match (share, first) {
                (Some(s), Some(f)) => (s / f) as f32,
                _ => (n - k) as f32 / n as f32,
            };
            Interest { tag, weight }
        })
        .collect()
}

/// The pseudo-view of inputs the feed computes itself.
const COMPUTED: &str = "feed";
const USER_KEY: &str = "user_id";
const POST_KEY: &str = "post_id";
const AUTHOR_KEY: &str = "author_id";

/// How well a post's tags match the user's top tags: the first (most engaged) tag counts as
/// many as there are interest tags, the last 1 — the same sum `ads.ads_sample_ctr` computes
/// for training (3·tag 1 + 2·tag 2 + 1·tag 3 for three).
pub fn tag_match(catalog: &Catalog, post: u64, interests: &[Interest]) -> f32 {
    catalog.posts.get(&post).map_or(f32::NAN, |p| {
        tag_match_ids(p, &interest_tag_ids(catalog, interests))
    })
}

/// How much the user cares about a post's tags: the sum of the weights ([`Interest::weight`])
/// of the user's top tags the post carries, the same sum `ads.ads_sample_ctr`'s
/// `tag_affinity` computes for training. A user's favourite tag counts 1; a tag engaged half
/// as often counts 0.5.
pub fn tag_affinity(catalog: &Catalog, post: u64, interests: &[Interest]) -> f32 {
    catalog.posts.get(&post).map_or(f32::NAN, |p| {
        tag_affinity_ids(p, &interest_tag_ids(catalog, interests))
    })
}

/// The user's top tags as the catalogue's tag ids, with their weights, in order: resolved
/// once per request so that each candidate compares ids, not names. A tag that is empty or
/// that no live post carries has no id.
fn interest_tag_ids(catalog: &Catalog, interests: &[Interest]) -> Vec<(Option<u32>, f32)> {
    interests
        .iter()
        .map(|i| {
            let id = (!i.tag.is_empty())
                .then(|| catalog.tag_names.iter().position(|t| *t == i.tag))
                .flatten()
                .map(|id| id as u32);
            (id, i.weight)
        })
        .collect()
}

/// [`tag_match`] of one post over [`interest_tag_ids`].
fn tag_match_ids(post: &Post, tags: &[(Option<u32>, f32)]) -> f32 {
    let n = tags.len();
    tags.iter()
        .enumerate()
        .filter(|(_, (id, _))| id.is_some_and(|id| post.tags.contains(&id)))
        .map(|(k, _)| (n - k) as f32)
        .sum()
}

/// [`tag_affinity`] of one post over [`interest_tag_ids`].
fn tag_affinity_ids(post: &Post, tags: &[(Option<u32>, f32)]) -> f32 {
    tags.iter()
        .filter(|(id, _)| id.is_some_and(|id| post.tags.contains(&id)))
        .map(|(_, w)| w)
        .sum()
}

/// An online value as a model input: numbers as they are, categories by the model's codes
/// (unknown → missing).
fn input_value(v: &Value, codes: Option<&HashMap<String, u32>>) -> f32 {
    match (v, codes) {
        (Value::Int64(x), None) => *x as f32,
        (Value::Float64(x), None) => *x as f32,
        (Value::Bool(b), None) => f32::from(u8::from(*b)),
        (Value::Date(d), None) => *d as f32,
        (Value::Timestamp(t), None) => *t as f32,
        (Value::String(s), Some(c)) => c.get(s).map_or(f32::NAN, |&x| x as f32),
        (Value::Int64(x), Some(c)) => c.get(&x.to_string()).map_or(f32::NAN, |&x| x as f32),
        (Value::Bool(b), Some(c)) => c.get(&b.to_string()).map_or(f32::NAN, |&x| x as f32),
        _ => f32::NAN,
    }
}

fn head(list: &[(u64, f64)], k: usize) -> Vec<u64> {
    list.iter().take(k).map(|(p, _)| *p).collect()
}

/// The most engaged posts of the user's top tags: a post's score sums, over the tags it
/// carries, the tag's weight ([`Interest::weight`]) divided by its rank in that tag.
fn interest(catalog: &Catalog, interests: &[Interest], k: usize) -> Vec<u64> {
    let mut acc: HashMap<u64, f64> = HashMap::new();
    for i in interests {
        let weight = f64::from(i.weight);
        for (rank, (p, _)) in catalog
            .by_tag
            .get(&i.tag)
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            *acc.entry(*p).or_default() += weight / (10.0 + rank as f64);
        }
    }
    top_ids(acc, k)
}

/// The `k` best-scored posts, best first.
fn top_ids(scores: HashMap<u64, f64>, k: usize) -> Vec<u64> {
    let mut v: Vec<(u64, f64)> = scores.into_iter().collect();
    crate::catalog::best_first(&mut v);
    v.into_iter().take(k).map(|(p, _)| p).collect()
}

/// Recent posts of followed authors, newest first, round-robin over authors so one prolific
/// account does not fill the pool.
fn following(catalog: &Catalog, user: Option<u64>, k: usize) -> Vec<u64> {
    let Some(authors) = user.and_then(|u| catalog.follows.get(&u)) else {
        return Vec::new();
    };
    let mut posts: Vec<(usize, i64, u64)> = Vec::new();
    for a in authors {
        for (rank, p) in catalog
            .by_author
            .get(a)
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            let at = catalog.posts.get(p).map_or(0, |x| x.created_at);
            posts.push((rank, -at, *p));
        }
    }
    posts.sort_unstable();
    posts.into_iter().take(k).map(|(_, _, p)| p).collect()
}

/// A source's bit in [`Candidate::sources`].
fn source_bit(s: &str) -> u8 {
    crate::config::SOURCES
        .iter()
        .position(|n| *n == s)
        .map_or(OTHER_SOURCE, |i| 1 << i)
}

/// The bit of a source outside [`crate::config::SOURCES`].
const OTHER_SOURCE: u8 = 0x80;

/// The names of the sources in a [`Candidate::sources`] set, in `SOURCES` order.
fn source_names(bits: u8) -> Vec<&'static str> {
    let mut out: Vec<&'static str> = crate::config::SOURCES
        .iter()
        .enumerate()
        .filter(|(i, _)| bits & (1 << i) != 0)
        .map(|(_, n)| *n)
        .collect();
    if bits & OTHER_SOURCE != 0 {
        out.push("other");
    }
    out
}

fn skipped(name: &str, why: &str) -> Stage {
    Stage {
        name: name.to_string(),
        ms: 0.0,
        status: "skipped",
        count: 0,
        detail: Some(why.to_string()),
    }
}

fn errored(name: &str, t: Instant, e: String) -> Stage {
    Stage {
        name: name.to_string(),
        ms: t.elapsed().as_secs_f64() * 1e3,
        status: "error",
        count: 0,
        detail: Some(e),
    }
}

/// A request id: time-ordered and unique within and across processes (time, pid, counter).
fn new_request_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!(
        "f{:x}-{:x}-{n:x}",
        strata_core::time::now_micros(),
        std::process::id()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Post;

    #[test]
    fn stages_list_the_sources_in_their_order() {
        assert_eq!(
            STAGES[1..=crate::config::SOURCES.len()],
            crate::config::SOURCES
        );
    }

    #[test]
    fn source_sets_name_their_sources_in_order() {
        const _: () = assert!(crate::config::SOURCES.len() < 8, "one bit per source");
        let set = source_bit("trending") | source_bit("ann") | source_bit("ann");
        assert_eq!(source_names(set), vec!["ann", "trending"]);
        assert_eq!(source_names(source_bit("mystery")), vec!["other"]);
        assert!(source_names(0).is_empty());
    }

    /// A catalogue of one post, 10, tagged cats and oslo (of cats, oslo, news).
    fn tagged_post() -> Catalog {
        let mut c = Catalog {
            tag_names: vec!["cats".into(), "oslo".into(), "news".into()],
            ..Catalog::default()
        };
        c.posts.insert(
            10,
            Post {
                author: 3,
                created_at: 0,
                tags: vec![0, 1],
            },
        );
        c
    }

    #[test]
    fn tag_match_weighs_interests_like_the_training_samples() {
        let c = tagged_post();
        let interests =
            |t: &[&str]| weigh_interests(t.iter().map(|s| s.to_string()).collect(), &[]);
        // As ads_sample_ctr: 3 for the first tag, 2 for the second, 1 for the third.
        assert_eq!(tag_match(&c, 10, &interests(&["cats", "oslo", ""])), 5.0);
        assert_eq!(
            tag_match(&c, 10, &interests(&["news", "oslo", "cats"])),
            3.0
        );
        assert_eq!(tag_match(&c, 10, &interests(&["news", "", ""])), 0.0);
        assert_eq!(tag_match(&c, 10, &[]), 0.0);
        assert!(
            tag_match(&c, 99, &interests(&["cats"])).is_nan(),
            "unknown post"
        );
    }

    #[test]
    fn tag_affinity_sums_the_shares_of_the_tags_a_post_carries() {
        let c = tagged_post();
        let tags = |t: &[&str]| t.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        // Shares 0.4, 0.1, 0.05: weights 1, 0.25, 0.125.
        let shares = [Some(0.4), Some(0.1), Some(0.05)];
        let i = weigh_interests(tags(&["cats", "news", "oslo"]), &shares);
        assert_eq!(
            i.iter().map(|i| i.weight).collect::<Vec<_>>(),
            vec![1.0, 0.25, 0.125]
        );
        assert_eq!(tag_affinity(&c, 10, &i), 1.125);
        let i = weigh_interests(tags(&["news", "oslo", "cats"]), &shares);
        assert_eq!(tag_affinity(&c, 10, &i), 0.375);
        // No shares served (or a missing one): by rank, 1, 2/3, 1/3.
        let i = weigh_interests(tags(&["news", "oslo", "cats"]), &[]);
        assert_eq!(tag_affinity(&c, 10, &i), 1.0);
        let i = weigh_interests(
            tags(&["news", "oslo", "cats"]),
            &[Some(0.5), None, Some(0.25)],
        );
        assert_eq!(tag_affinity(&c, 10, &i), 2.0 / 3.0 + 0.5);
        // A first share of zero cannot scale the others.
        let i = weigh_interests(tags(&["cats", "oslo"]), &[Some(0.0), Some(0.3)]);
        assert_eq!(tag_affinity(&c, 10, &i), 1.5);
        assert_eq!(tag_affinity(&c, 10, &[]), 0.0);
        assert!(tag_affinity(&c, 99, &i).is_nan(), "unknown post");
    }

    #[test]
    fn following_takes_each_authors_newest_first() {
        let mut c = Catalog::default();
        for (id, author, at) in [(1, 7, 10), (2, 7, 20), (3, 8, 15), (4, 9, 30)] {
            c.posts.insert(
                id,
                Post {
                    author,
                    created_at: at,
                    tags: Vec::new(),
                },
            );
        }
        c.by_author.insert(7, vec![2, 1]);
        c.by_author.insert(8, vec![3]);
        c.by_author.insert(9, vec![4]);
        c.follows.insert(1, vec![7, 8]);
        // Round-robin: the newest post of each followed author, then the next ones.
        assert_eq!(following(&c, Some(1), 10), vec![2, 3, 1]);
        assert_eq!(following(&c, Some(1), 2), vec![2, 3]);
        assert!(following(&c, Some(2), 10).is_empty());
        assert!(following(&c, None, 10).is_empty());
    }
}
