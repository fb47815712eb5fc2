//! `[feed]` and `[[experiments]]` in `strata.toml`: which models serve the feed, which
//! candidate sources run with what budget, the filters and the re-ranking, and the A/B
//! experiments that vary them.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

/// The candidate sources, in the order a feed runs and reports them.
pub const SOURCES: [&str; 6] = [
    "ann",
    "u2u",
    "following",
    "interest",
    "trending",
    "cold_start",
];

/// `[feed]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FeedConfig {
    /// Serve `GET /v1/feed` in `strata serve` (on the `features` role).
    pub enabled: bool,
    /// The two-tower model whose user tower and index give the `ann` source.
    pub recall_model: String,
    /// The GBDT model that ranks the candidates (its promoted version, or the canary for the
    /// user's bucket).
    pub ranker_model: String,
    /// Items returned when the request gives no `n`.
    pub default_n: usize,
    /// The largest `n` a request may ask for.
    pub max_n: usize,
    /// The whole request's budget; sources still running when it is spent are dropped and
    /// the answer says so.
    pub budget_ms: u64,
    /// Candidates ranked at most (the best of every source's, merged).
    pub max_candidates: usize,
    pub sources: SourcesConfig,
    pub filters: FilterConfig,
    pub rerank: RerankConfig,
    /// How the catalogue (posts, authors, follows, trending, recent engagement) is read from
    /// the lake; the defaults read the reference social warehouse.
    pub catalog: CatalogConfig,
    /// Write a `Feed Served` event onto the bus for every feed (lands in `ods.ods_event`).
    pub log_impressions: bool,
    /// The app the `Feed Served` events are recorded under.
    pub app: String,
    /// The online view and columns holding each user's top tags, most engaged first: the
    /// ranker's computed input `feed.tag_match` compares them with a candidate's tags.
    pub interest_view: String,
    pub interest_columns: Vec<String>,
    /// The same view's columns holding each top tag's share of the user's engagement, in
    /// `interest_columns`' order: a tag's weight is its share over the first tag's (the
    /// `interest` source and `feed.tag_affinity` read it). Empty, or a share missing: the
    /// weight goes by rank (1, 2/3, 1/3 for three tags).
    pub interest_weight_columns: Vec<String>,
}

impl Default for FeedConfig {
    fn default() -> Self {
        FeedConfig {
            enabled: true,
            recall_model: "two_tower".into(),
            ranker_model: "ctr_ranker".into(),
            default_n: 10,
            max_n: 100,
            budget_ms: 100,
            max_candidates: 1200,
            sources: SourcesConfig::default(),
            filters: FilterConfig::default(),
            rerank: RerankConfig::default(),
            catalog: CatalogConfig::default(),
            log_impressions: true,
            app: "feed".into(),
            interest_view: "user_features".into(),
            interest_columns: vec!["tag_1_30d".into(), "tag_2_30d".into(), "tag_3_30d".into()],
            interest_weight_columns: vec![
                "tag_1_share_30d".into(),
                "tag_2_share_30d".into(),
                "tag_3_share_30d".into(),
            ],
        }
    }
}

/// One candidate source's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SourceConfig {
    pub enabled: bool,
    /// Candidates it proposes at most.
    pub k: usize,
    /// Its own time budget; a source that runs out is skipped, not waited for.
    pub budget_ms: u64,
    /// `ann` only: the index search's breadth (the candidate list of the HNSW walk, as
    /// Qdrant's `hnsw_ef`); at least `k` is used. Unset: the recall model's `ef_search`. A
    /// feed needs hundreds of candidates, not the exact nearest ones, so it can search
    /// narrower than `POST /v1/recall/knn` does for the same model (ADR 0060).
    pub ef: Option<usize>,
}

impl Default for SourceConfig {
    fn default() -> Self {
        SourceConfig::new(100, 20)
    }
}

impl SourceConfig {
    fn new(k: usize, budget_ms: u64) -> Self {
        SourceConfig {
            enabled: true,
            ef: None,
            k,
            budget_ms,
        }
    }
}

/// `[feed.sources.*]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SourcesConfig {
    /// Vector recall: the user tower on the user's online features, then the index.
    pub ann: SourceConfig,
    /// Posts recently engaged by the user's most similar users (the `u2u` view's pool).
    pub u2u: SourceConfig,
    /// Recent posts of the accounts the user follows.
    pub following: SourceConfig,
    /// The most engaged posts of the user's top tags (`interest_view`'s columns), the first
    /// tag weighing most.
    pub interest: SourceConfig,
    /// Posts with the most engagement in the last `catalog.trending_days`.
    pub trending: SourceConfig,
    /// For users without features: the most engaged posts of the last
    /// `catalog.popular_days`, of the user's country when it has enough.
    pub cold_start: SourceConfig,
}

/// The `ann` source's default candidates and search breadth (ADR 0060).
const ANN_K: usize = 500;
const ANN_EF: usize = 500;

impl Default for SourcesConfig {
    fn default() -> Self {
        SourcesConfig {
            ann: SourceConfig {
                ef: Some(ANN_EF),
                ..SourceConfig::new(ANN_K, 30)
            },
            u2u: SourceConfig::new(200, 20),
            following: SourceConfig::new(200, 20),
            interest: SourceConfig::new(300, 10),
            trending: SourceConfig::new(200, 10),
            cold_start: SourceConfig::new(200, 10),
        }
    }
}

impl SourcesConfig {
    pub fn get(&self, name: &str) -> Option<&SourceConfig> {
        match name {
            "ann" => Some(&self.ann),
            "u2u" => Some(&self.u2u),
            "following" => Some(&self.following),
            "interest" => Some(&self.interest),
            "trending" => Some(&self.trending),
            "cold_start" => Some(&self.cold_start),
            _ => None,
        }
    }

    /// Gives every source the same budget.
    pub fn set_budgets(&mut self, budget_ms: u64) {
        for name in SOURCES {
            if let Some(s) = self.get_mut(name) {
                s.budget_ms = budget_ms;
            }
        }
    }

    fn get_mut(&mut self, name: &str) -> Option<&mut SourceConfig> {
        match name {
            "ann" => Some(&mut self.ann),
            "u2u" => Some(&mut self.u2u),
            "following" => Some(&mut self.following),
            "interest" => Some(&mut self.interest),
            "trending" => Some(&mut self.trending),
            "cold_start" => Some(&mut self.cold_start),
            _ => None,
        }
    }
}

/// `[feed.filters]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilterConfig {
    /// Leave out the user's own posts.
    pub own_posts: bool,
    /// Leave out posts of authors the user blocked (`catalog.blocks_sql`).
    pub blocked_authors: bool,
    /// Leave out posts recommended to this user within `seen_ttl_secs` (the last-recommended
    /// cache; the seed's Redis role).
    pub seen: bool,
    pub seen_ttl_secs: u64,
    /// Users the seen cache remembers at most (the least recently served are forgotten).
    pub seen_max_users: usize,
    /// Keep the seen cache in the online store when it can hold it (Redis: shared by every
    /// `strata serve` of the deployment, so a user sees no repeat whichever process answers);
    /// always in this process's memory too (the embedded store, and a fallback).
    pub seen_shared: bool,
    /// How long a feed waits for the shared seen cache before it uses this process's memory
    /// (and says so in `degraded`).
    pub seen_budget_ms: u64,
}

impl Default for FilterConfig {
    fn default() -> Self {
        FilterConfig {
            own_posts: true,
            blocked_authors: true,
            seen: true,
            seen_ttl_secs: 6 * 3600,
            seen_max_users: 1_000_000,
            seen_shared: true,
            seen_budget_ms: 10,
        }
    }
}

/// `[feed.rerank]`: diversity after ranking.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RerankConfig {
    /// At most this many items of one author in a feed (0: no cap).
    pub max_per_author: usize,
    /// Maximal marginal relevance: each next item maximises `λ·score − (1−λ)·similarity` to
    /// the items already chosen (tag overlap). 1 keeps the ranker's order.
    pub mmr_lambda: f64,
}

impl Default for RerankConfig {
    fn default() -> Self {
        RerankConfig {
            max_per_author: 2,
            mmr_lambda: 0.8,
        }
    }
}

/// `[feed.catalog]`: the SQL the feed's in-memory catalogue is loaded from (every
/// `refresh_secs`). Each query's columns are named in its doc.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CatalogConfig {
    pub refresh_secs: u64,
    /// Live posts: `post_id, author_id, created_at, tags` (tags comma-separated). A post
    /// missing here (deleted) is never served, whatever source proposes it.
    pub posts_sql: String,
    /// Who follows whom now: `user_id, author_id`.
    pub follows_sql: String,
    /// Per-post engagement by day: `post_id, dt, score` (trending and popular sum it).
    pub engagement_sql: String,
    /// Users' recent positive interactions: `user_id, post_id, at` (the u2u source reads the
    /// similar users').
    pub interactions_sql: String,
    /// Users' countries: `user_id, country` (cold start by country). Empty: overall only.
    pub countries_sql: String,
    /// Blocks: `user_id, author_id`. Empty: no block list.
    pub blocks_sql: String,
    pub trending_days: u32,
    pub popular_days: u32,
    /// Days of interactions the u2u source reads.
    pub interaction_days: u32,
    /// Recent posts kept per author (the following source's pool).
    pub posts_per_author: usize,
    /// The online view with each user's similar users (`similar_users`, `similar_scores`).
    pub u2u_view: String,
    /// Real-time trending: the stream view scanned for the trending source (empty: the
    /// lake's daily engagement only). Its posts are ranked by the weighted sum of
    /// `trending_weights`' columns; the lake's list is the fallback while it is empty.
    pub trending_view: String,
    pub trending_weights: std::collections::BTreeMap<String, f64>,
    /// How often the trending view is scanned.
    pub trending_refresh_secs: u64,
}

impl Default for CatalogConfig {
    fn default() -> Self {
        CatalogConfig {
            refresh_secs: 300,
            posts_sql: "SELECT post_id, author_id, created_at, tags FROM dwd.dwd_post".into(),
            follows_sql: "SELECT follower_id AS user_id, followee_id AS author_id \
                          FROM dwd.dwd_user_relation WHERE is_current"
                .into(),
            engagement_sql: "SELECT post_id, dt, clicks + 2 * likes AS score \
                             FROM dws.dws_post_daily"
                .into(),
            interactions_sql: "SELECT user_id, post_id, event_ts AS at FROM dwd.dwd_user_action \
                               WHERE action IN ('Post Clicked', 'Post Liked') \
                               AND user_id IS NOT NULL AND post_id IS NOT NULL"
                .into(),
            countries_sql: "SELECT user_id, country FROM ods.ods_users".into(),
            blocks_sql: String::new(),
            trending_days: 1,
            popular_days: 7,
            interaction_days: 3,
            posts_per_author: 10,
            u2u_view: "u2u_cf".into(),
            trending_view: "post_trending".into(),
            trending_weights: [
                ("clicks_1h".to_string(), 1.0),
                ("likes_1h".to_string(), 2.0),
            ]
            .into(),
            trending_refresh_secs: 10,
        }
    }
}

/// `[[experiments]]`: an A/B test over feeds. Users are assigned to a variant by a hash of
/// (experiment, user), so a user stays in one variant for the experiment's life.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentConfig {
    pub name: String,
    #[serde(default = "yes")]
    pub enabled: bool,
    pub variants: Vec<VariantConfig>,
}

fn yes() -> bool {
    true
}

/// One variant: its share of the traffic and what it changes in the feed.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VariantConfig {
    pub name: String,
    /// Share of users, in percent; an experiment's shares add up to 100.
    pub share: u32,
    /// Rank with this version of the ranker instead of the promoted one.
    #[serde(default)]
    pub ranker_version: Option<i64>,
    /// Recall with this version of the two-tower model.
    #[serde(default)]
    pub recall_version: Option<i64>,
    /// Only these candidate sources (by name); others are off for this variant.
    #[serde(default)]
    pub sources: Option<Vec<String>>,
    /// Skip the ranker: order candidates by their source's own score (e.g. a popularity
    /// baseline with `sources = ["trending"]`).
    #[serde(default)]
    pub no_ranker: bool,
    #[serde(default)]
    pub max_per_author: Option<usize>,
    #[serde(default)]
    pub mmr_lambda: Option<f64>,
}

impl FeedConfig {
    /// Every problem with the feed settings and the experiments, named.
    pub fn problems(&self, experiments: &[ExperimentConfig]) -> Vec<String> {
        let mut out = Vec::new();
        if self.default_n == 0 || self.default_n > self.max_n {
            out.push(format!(
                "feed.default_n must be between 1 and feed.max_n ({})",
                self.max_n
            ));
        }
        if self.max_n > 1000 {
            out.push("feed.max_n must be at most 1000".into());
        }
        if self.budget_ms == 0 {
            out.push("feed.budget_ms must be positive".into());
        }
        if self.max_candidates == 0 {
            out.push("feed.max_candidates must be positive".into());
        }
        for name in SOURCES {
            if let Some(s) = self.sources.get(name) {
                if s.enabled && (s.k == 0 || s.k > 10_000) {
                    out.push(format!("feed.sources.{name}.k must be between 1 and 10000"));
                }
                match s.ef {
                    Some(_) if name != "ann" => out.push(format!(
                        "feed.sources.{name}.ef: only the ann source searches an index"
                    )),
                    Some(ef) if ef == 0 || ef > 100_000 => {
                        out.push("feed.sources.ann.ef must be between 1 and 100000".into())
                    }
                    _ => {}
                }
            }
        }
        if !(0.0..=1.0).contains(&self.rerank.mmr_lambda) {
            out.push("feed.rerank.mmr_lambda must be between 0 and 1".into());
        }
        if !self.interest_weight_columns.is_empty()
            && self.interest_weight_columns.len() != self.interest_columns.len()
        {
            out.push(format!(
                "feed.interest_weight_columns names {} columns for {} interest_columns (one \
                 share per tag, in the same order, or none)",
                self.interest_weight_columns.len(),
                self.interest_columns.len()
            ));
        }
        if self.catalog.refresh_secs == 0 {
            out.push("feed.catalog.refresh_secs must be positive".into());
        }
        if self.filters.seen && self.filters.seen_ttl_secs == 0 {
            out.push("feed.filters.seen_ttl_secs must be positive (or seen = false)".into());
        }
        if self.filters.seen_shared && self.filters.seen_budget_ms == 0 {
            out.push(
                "feed.filters.seen_budget_ms must be positive (or seen_shared = false)".into(),
            );
        }
        let mut names = BTreeSet::new();
        for e in experiments {
            if !names.insert(e.name.as_str()) {
                out.push(format!("experiment {:?} is declared twice", e.name));
            }
            if e.name.is_empty() {
                out.push("an experiment has no name".into());
            }
            if e.variants.is_empty() {
                out.push(format!("experiment {:?} has no variants", e.name));
            }
            let total: u32 = e.variants.iter().map(|v| v.share).sum();
            if !e.variants.is_empty() && total != 100 {
                out.push(format!(
                    "experiment {:?}: variant shares add up to {total}, not 100",
                    e.name
                ));
            }
            let mut vnames = BTreeSet::new();
            for v in &e.variants {
                if !vnames.insert(v.name.as_str()) {
                    out.push(format!(
                        "experiment {:?}: variant {:?} is declared twice",
                        e.name, v.name
                    ));
                }
                for s in v.sources.iter().flatten() {
                    if !SOURCES.contains(&s.as_str()) {
                        out.push(format!(
                            "experiment {:?} variant {:?}: unknown source {s:?} (one of {})",
                            e.name,
                            v.name,
                            SOURCES.join(", ")
                        ));
                    }
                }
                if let Some(l) = v.mmr_lambda {
                    if !(0.0..=1.0).contains(&l) {
                        out.push(format!(
                            "experiment {:?} variant {:?}: mmr_lambda must be between 0 and 1",
                            e.name, v.name
                        ));
                    }
                }
            }
        }
        if experiments.iter().filter(|e| e.enabled).count() > 1 {
            out.push(
                "only one experiment may be enabled at a time (feeds are assigned to one)".into(),
            );
        }
        out
    }

    /// The settings a variant serves with.
    pub fn with_variant(&self, v: &VariantConfig) -> FeedConfig {
        let mut c = self.clone();
        if let Some(only) = &v.sources {
            for name in SOURCES {
                if let Some(s) = c.sources.get_mut(name) {
                    s.enabled = s.enabled && only.iter().any(|o| o == name);
                }
            }
        }
        if let Some(m) = v.max_per_author {
            c.rerank.max_per_author = m;
        }
        if let Some(l) = v.mmr_lambda {
            c.rerank.mmr_lambda = l;
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn variant(name: &str, share: u32) -> VariantConfig {
        VariantConfig {
            name: name.into(),
            share,
            ..VariantConfig::default()
        }
    }

    #[test]
    fn defaults_are_valid_and_mistakes_are_named() {
        assert!(FeedConfig::default().problems(&[]).is_empty());
        let mut bad = FeedConfig {
            default_n: 0,
            ..FeedConfig::default()
        };
        bad.rerank.mmr_lambda = 2.0;
        bad.sources.ann.k = 0;
        bad.sources.trending.ef = Some(100);
        bad.interest_weight_columns.pop();
        let e = ExperimentConfig {
            name: "ab".into(),
            enabled: true,
            variants: vec![
                variant("a", 50),
                VariantConfig {
                    sources: Some(vec!["nope".into()]),
                    ..variant("b", 40)
                },
            ],
        };
        let p = bad.problems(&[e.clone(), e]).join("\n");
        for want in [
            "default_n",
            "mmr_lambda must be between 0 and 1",
            "sources.ann.k",
            "sources.trending.ef: only the ann source",
            "add up to 90",
            "unknown source \"nope\"",
            "declared twice",
            "only one experiment",
            "names 2 columns for 3 interest_columns",
        ] {
            assert!(p.contains(want), "{want} missing from:\n{p}");
        }
    }

    #[test]
    fn a_variant_switches_sources_and_rerank() {
        let base = FeedConfig::default();
        let v = VariantConfig {
            sources: Some(vec!["trending".into()]),
            max_per_author: Some(5),
            ..variant("pop", 50)
        };
        let c = base.with_variant(&v);
        assert!(c.sources.trending.enabled);
        assert!(!c.sources.ann.enabled && !c.sources.following.enabled);
        assert_eq!(c.rerank.max_per_author, 5);
        assert_eq!(c.rerank.mmr_lambda, base.rerank.mmr_lambda);
    }
}
