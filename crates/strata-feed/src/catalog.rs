//! The feed's in-memory catalogue: live posts with their author, time and tags, each author's
//! recent posts, who follows whom, trending and popular posts, users' recent interactions,
//! countries and blocks. Loaded from the lake with the `[feed.catalog]` queries and swapped
//! in whole, so a request always reads one consistent catalogue.

use std::collections::HashMap;
use std::sync::Arc;

use rustc_hash::{FxHashMap, FxHashSet};

use strata_sql::SqlSession;
use strata_table::Lake;

use crate::columns::{days, floats, ints, micros, query, texts};
use crate::config::CatalogConfig;
use crate::error::{Error, Result};

/// A map keyed by a user, post or author id: these are read per candidate on every request,
/// where the default SipHash showed up in profiles, and ids need no defence against chosen
/// collisions (they come from the lake, not from requests).
pub type IdMap<V> = FxHashMap<u64, V>;
/// A set of user, post or author ids (see [`IdMap`]).
pub type IdSet = FxHashSet<u64>;

/// One live post.
#[derive(Debug, Clone, PartialEq)]
pub struct Post {
    pub author: u64,
    /// Creation time, µs since the epoch.
    pub created_at: i64,
    /// Tag ids (into [`Catalog::tag_names`]), sorted.
    pub tags: Vec<u32>,
}

/// Everything the feed reads besides the online store and the models.
#[derive(Debug, Default)]
pub struct Catalog {
    pub posts: IdMap<Post>,
    /// Per author: post ids, newest first (at most `posts_per_author`).
    pub by_author: IdMap<Vec<u64>>,
    /// Per user: the authors they follow.
    pub follows: IdMap<Vec<u64>>,
    /// Post ids with their engagement in the trending window, best first.
    pub trending: Vec<(u64, f64)>,
    /// Post ids with their engagement in the popular window, best first.
    pub popular: Vec<(u64, f64)>,
    /// Per tag name: its posts with their engagement in the popular window, best first.
    pub by_tag: HashMap<String, Vec<(u64, f64)>>,
    /// Per country: popular posts among that country's users' engagement, best first.
    pub popular_by_country: HashMap<String, Vec<(u64, f64)>>,
    /// Per user: post ids they recently engaged with, newest first.
    pub interactions: IdMap<Vec<u64>>,
    pub countries: IdMap<String>,
    /// Per user: the authors they blocked.
    pub blocks: IdMap<IdSet>,
    pub tag_names: Vec<String>,
    /// When it was loaded (µs since the epoch).
    pub loaded_at: i64,
}

/// Most interactions kept per user.
const INTERACTIONS_PER_USER: usize = 50;
/// Posts kept in the trending and popular lists.
const HEAD: usize = 2000;

impl Catalog {
    /// Loads the catalogue from the lake. A query that fails (a table not built yet) leaves
    /// its part empty and is reported in the returned warnings; only the posts query is
    /// required.
    pub async fn load(lake: &Lake, c: &CatalogConfig) -> Result<(Catalog, Vec<String>)> {
        let session = SqlSession::new(lake)
            .await
            .map_err(|e| Error::Catalog(format!("SQL session: {e}")))?;
        let mut warnings = Vec::new();
        let mut cat = Catalog {
            loaded_at: strata_core::time::now_micros(),
            ..Catalog::default()
        };
        let mut tag_ids: HashMap<String, u32> = HashMap::new();

        for b in query(&session, &c.posts_sql).await? {
            let ids = ints(&b, "post_id")?;
            let authors = ints(&b, "author_id")?;
            let created = micros(&b, "created_at")?;
            let tags = texts(&b, "tags")?;
            for i in 0..b.num_rows() {
                let (Some(id), Some(author)) = (ids[i], authors[i]) else {
                    continue;
                };
                let mut t: Vec<u32> = tags[i]
                    .as_deref()
                    .unwrap_or_default()
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| {
                        let next = tag_ids.len() as u32;
                        *tag_ids.entry(s.to_string()).or_insert(next)
                    })
                    .collect();
                t.sort_unstable();
                t.dedup();
                cat.posts.insert(
                    id as u64,
                    Post {
                        author: author as u64,
                        created_at: created[i].unwrap_or(0),
                        tags: t,
                    },
                );
            }
        }
        cat.tag_names = vec![String::new(); tag_ids.len()];
        for (name, id) in tag_ids {
            cat.tag_names[id as usize] = name;
        }
        let mut by_author: HashMap<u64, Vec<(i64, u64)>> = HashMap::new();
        for (&id, p) in &cat.posts {
            by_author
                .entry(p.author)
                .or_default()
                .push((p.created_at, id));
        }
        cat.by_author = by_author
            .into_iter()
            .map(|(a, mut v)| {
                v.sort_unstable_by(|x, y| y.cmp(x));
                v.truncate(c.posts_per_author.max(1));
                (a, v.into_iter().map(|(_, id)| id).collect())
            })
            .collect();

        match pairs(&session, &c.follows_sql, "user_id", "author_id").await {
            Ok(p) => {
                for (u, a) in p {
                    cat.follows.entry(u).or_default().push(a);
                }
            }
            Err(e) => warnings.push(format!("follows: {e}")),
        }

        match engagement(&session, &c.engagement_sql).await {
            Ok(rows) => {
                let newest = rows.iter().map(|r| r.1).max().unwrap_or(0);
                let trending_from = newest - i32::try_from(c.trending_days).unwrap_or(1);
                cat.trending = head(engaged_after(&rows, trending_from, &cat.posts));
                let popular = engaged_after(
                    &rows,
                    newest - i32::try_from(c.popular_days).unwrap_or(7),
                    &cat.posts,
                );
                cat.by_tag = by_tag(&popular, &cat.posts, &cat.tag_names);
                cat.popular = head(popular);
            }
            Err(e) => warnings.push(format!("engagement: {e}")),
        }

        match interactions(&session, &c.interactions_sql, c.interaction_days).await {
            Ok(map) => cat.interactions = map,
            Err(e) => warnings.push(format!("interactions: {e}")),
        }

        if !c.countries_sql.trim().is_empty() {
            match string_pairs(&session, &c.countries_sql, "user_id", "country").await {
                Ok(rows) => cat.countries = rows.into_iter().collect(),
                Err(e) => warnings.push(format!("countries: {e}")),
            }
        }
        // Popular per country: the recent interactions (`interaction_days`) of each country's
        // users, counted per post.
        if !cat.countries.is_empty() {
            let mut by_country: HashMap<&str, HashMap<u64, f64>> = HashMap::new();
            for (u, posts) in &cat.interactions {
                if let Some(country) = cat.countries.get(u) {
                    let m = by_country.entry(country.as_str()).or_default();
                    for p in posts {
                        *m.entry(*p).or_default() += 1.0;
                    }
                }
            }
            cat.popular_by_country = by_country
                .into_iter()
                .map(|(country, m)| {
                    let mut v: Vec<(u64, f64)> = m
                        .into_iter()
                        .filter(|(p, _)| cat.posts.contains_key(p))
                        .collect();
                    best_first(&mut v);
                    v.truncate(HEAD);
                    (country.to_string(), v)
                })
                .collect();
        }

        if !c.blocks_sql.trim().is_empty() {
            match pairs(&session, &c.blocks_sql, "user_id", "author_id").await {
                Ok(p) => {
                    for (u, a) in p {
                        cat.blocks.entry(u).or_default().insert(a);
                    }
                }
                Err(e) => warnings.push(format!("blocks: {e}")),
            }
        }
        Ok((cat, warnings))
    }

    /// The catalogue as a shared snapshot.
    pub fn shared(self) -> Arc<Catalog> {
        Arc::new(self)
    }

    /// Tag overlap of two posts (Jaccard), 0 for unknown posts or posts without tags.
    pub fn similarity(&self, a: u64, b: u64) -> f64 {
        let (Some(x), Some(y)) = (self.posts.get(&a), self.posts.get(&b)) else {
            return 0.0;
        };
        if x.tags.is_empty() || y.tags.is_empty() {
            return 0.0;
        }
        let common = x
            .tags
            .iter()
            .filter(|t| y.tags.binary_search(t).is_ok())
            .count();
        common as f64 / (x.tags.len() + y.tags.len() - common) as f64
    }
}

/// Sorts `(post, score)` pairs best first, ties by the lower id (the same order every run).
pub(crate) fn best_first(v: &mut [(u64, f64)]) {
    v.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
}

/// Engagement summed per live post over the days after `after` (day numbers since 1970);
/// posts with none are left out.
fn engaged_after(rows: &[(u64, i32, f64)], after: i32, posts: &IdMap<Post>) -> IdMap<f64> {
    let mut m: IdMap<f64> = IdMap::default();
    for &(p, d, s) in rows {
        if d > after && posts.contains_key(&p) {
            *m.entry(p).or_default() += s;
        }
    }
    m.retain(|_, s| *s > 0.0);
    m
}

/// The [`HEAD`] most engaged posts, best first.
fn head(engaged: IdMap<f64>) -> Vec<(u64, f64)> {
    let mut v: Vec<(u64, f64)> = engaged.into_iter().collect();
    best_first(&mut v);
    v.truncate(HEAD);
    v
}

/// Per tag, its most engaged posts (best first, at most [`PER_TAG`]).
fn by_tag(
    engaged: &IdMap<f64>,
    posts: &IdMap<Post>,
    tag_names: &[String],
) -> HashMap<String, Vec<(u64, f64)>> {
    let mut out: HashMap<String, Vec<(u64, f64)>> = HashMap::new();
    for (&p, &s) in engaged {
        for t in posts.get(&p).map(|x| x.tags.as_slice()).unwrap_or_default() {
            if let Some(name) = tag_names.get(*t as usize) {
                out.entry(name.clone()).or_default().push((p, s));
            }
        }
    }
    for v in out.values_mut() {
        best_first(v);
        v.truncate(PER_TAG);
    }
    out
}

/// Posts kept per tag.
const PER_TAG: usize = 500;

async fn pairs(session: &SqlSession, sql: &str, a: &str, b: &str) -> Result<Vec<(u64, u64)>> {
    let mut out = Vec::new();
    for batch in query(session, sql).await? {
        let x = ints(&batch, a)?;
        let y = ints(&batch, b)?;
        out.extend(
            x.into_iter()
                .zip(y)
                .filter_map(|(x, y)| Some((x? as u64, y? as u64))),
        );
    }
    Ok(out)
}

async fn string_pairs(
    session: &SqlSession,
    sql: &str,
    a: &str,
    b: &str,
) -> Result<Vec<(u64, String)>> {
    let mut out = Vec::new();
    for batch in query(session, sql).await? {
        let x = ints(&batch, a)?;
        let y = texts(&batch, b)?;
        out.extend(
            x.into_iter()
                .zip(y)
                .filter_map(|(x, y)| Some((x? as u64, y?))),
        );
    }
    Ok(out)
}

/// `(post_id, day, score)` rows.
async fn engagement(session: &SqlSession, sql: &str) -> Result<Vec<(u64, i32, f64)>> {
    let mut out = Vec::new();
    for batch in query(session, sql).await? {
        let p = ints(&batch, "post_id")?;
        let d = days(&batch, "dt")?;
        let s = floats(&batch, "score")?;
        for i in 0..batch.num_rows() {
            if let (Some(p), Some(d)) = (p[i], d[i]) {
                out.push((p as u64, d, s[i].unwrap_or(0.0)));
            }
        }
    }
    Ok(out)
}

/// Per user, distinct posts engaged in the last `days` days (of the newest interaction),
/// newest first.
async fn interactions(session: &SqlSession, sql: &str, days: u32) -> Result<IdMap<Vec<u64>>> {
    let mut rows: Vec<(u64, i64, u64)> = Vec::new();
    for batch in query(session, sql).await? {
        let u = ints(&batch, "user_id")?;
        let p = ints(&batch, "post_id")?;
        let at = micros(&batch, "at")?;
        for i in 0..batch.num_rows() {
            if let (Some(u), Some(p), Some(at)) = (u[i], p[i], at[i]) {
                rows.push((u as u64, at, p as u64));
            }
        }
    }
    let newest = rows.iter().map(|r| r.1).max().unwrap_or(0);
    let from = newest - i64::from(days) * 86_400_000_000;
    rows.retain(|r| r.1 > from);
    rows.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)).then(a.2.cmp(&b.2)));
    let mut out: IdMap<Vec<u64>> = IdMap::default();
    for (u, _, p) in rows {
        let v = out.entry(u).or_default();
        if v.len() < INTERACTIONS_PER_USER && !v.contains(&p) {
            v.push(p);
        }
    }
    Ok(out)
}
