//! Reference lists from plain lake queries, no model: what the held-out clicks are made of
//! and how much of them simple rules reach. The organic feed (strata-sim `events/feed.rs`)
//! shows followed accounts' latest posts, the trending head of the user's favourite tags and
//! globally popular posts; each list below rebuilds one of these from what the lake knew
//! before the validation day, so the two-tower's figure can be read against what its inputs
//! make reachable.

use std::collections::{HashMap, HashSet};

use anyhow::Result;
use chrono::NaiveDate;
use serde_json::{json, Value};
use strata_models::data;
use strata_sql::SqlSession;

use super::{pairs, query, Method, K};

/// Posts per followed account the organic feed picks from (`RECENT_POSTS` in the simulator).
const LATEST: usize = 5;
/// Per-tag trending lists kept.
const PER_TAG: usize = 100;

struct Post {
    author: u64,
    /// Hashed tags (`data::hash_str`), up to three.
    tags: Vec<u64>,
    created: i64,
    /// Created before the validation day (in every method's catalogue).
    in_catalogue: bool,
}

/// The reference methods for `users`, and the make-up of their held-out clicks.
pub(super) async fn lists(
    session: &SqlSession,
    valid: NaiveDate,
    window: (NaiveDate, NaiveDate),
    users: &[u64],
    truth: &HashMap<u64, HashSet<u64>>,
    popular: &[u64],
) -> Result<(Vec<Method>, Value)> {
    let before = valid.pred_opt().unwrap_or(valid);
    let day_start = format!("TIMESTAMP '{valid} 00:00:00'");
    let empty_tag = data::hash_str("");

    // Posts: author, tags, creation time.
    let mut posts: HashMap<u64, Post> = HashMap::new();
    for b in query(
        session,
        &format!(
            "SELECT post_id, author_id, created_at, split_part(tags, ',', 1) AS tag1,
                    split_part(tags, ',', 2) AS tag2, split_part(tags, ',', 3) AS tag3,
                    CASE WHEN created_at < {day_start} THEN 1 ELSE 0 END AS in_catalogue
             FROM dwd.dwd_post"
        ),
    )
    .await?
    {
        let (mut id, mut author, mut created, mut cat) = (vec![], vec![], vec![], vec![]);
        data::u64s(&b, "post_id", &mut id)?;
        data::u64s(&b, "author_id", &mut author)?;
        data::micros(&b, "created_at", &mut created)?;
        data::u64s(&b, "in_catalogue", &mut cat)?;
        let mut tags = [vec![], vec![], vec![]];
        for (k, t) in tags.iter_mut().enumerate() {
            data::u64s(&b, &format!("tag{}", k + 1), t)?;
        }
        for (i, &post_id) in id.iter().enumerate() {
            let mut t: Vec<u64> = Vec::new();
            for col in &tags {
                if col[i] != 0 && col[i] != empty_tag && !t.contains(&col[i]) {
                    t.push(col[i]);
                }
            }
            posts.insert(
                post_id,
                Post {
                    author: author[i],
                    tags: t,
                    created: created[i],
                    in_catalogue: cat[i] == 1,
                },
            );
        }
    }
    // Each author's catalogue posts, newest first.
    let mut by_author: HashMap<u64, Vec<u64>> = HashMap::new();
    for (&id, p) in &posts {
        if p.in_catalogue {
            by_author.entry(p.author).or_default().push(id);
        }
    }
    for list in by_author.values_mut() {
        list.sort_by_key(|id| (std::cmp::Reverse(posts[id].created), std::cmp::Reverse(*id)));
    }

    // Follows live when the validation day starts (as ads_user_features of the day before).
    let mut follows: HashMap<u64, Vec<u64>> = HashMap::new();
    let live = format!(
        "SELECT DISTINCT follower_id, followee_id FROM dwd.dwd_user_relation
         WHERE valid_from < {day_start} AND (valid_to IS NULL OR valid_to >= {day_start})"
    );
    for (a, f) in pairs(session, &live, "follower_id", "followee_id").await? {
        follows.entry(a).or_default().push(f);
    }

    // The user's three most engaged tags of the 30 days before, with their shares.
    let mut tastes: HashMap<u64, Vec<(u64, f64)>> = HashMap::new();
    for b in query(
        session,
        &format!(
            "SELECT user_id, tag_1_30d, tag_2_30d, tag_3_30d, tag_1_share_30d, tag_2_share_30d,
                    tag_3_share_30d
             FROM ads.ads_user_features WHERE dt = DATE '{before}'"
        ),
    )
    .await?
    {
        let mut u = vec![];
        data::u64s(&b, "user_id", &mut u)?;
        let mut tag = [vec![], vec![], vec![]];
        let mut share = [vec![], vec![], vec![]];
        for (k, (t, s)) in tag.iter_mut().zip(share.iter_mut()).enumerate() {
            data::u64s(&b, &format!("tag_{}_30d", k + 1), t)?;
            data::f32s(&b, &format!("tag_{}_share_30d", k + 1), s)?;
        }
        for (i, &user) in u.iter().enumerate() {
            let t: Vec<(u64, f64)> = (0..3)
                .filter(|&k| tag[k][i] != 0 && tag[k][i] != empty_tag)
                .map(|k| (tag[k][i], f64::from(share[k][i]).max(0.0)))
                .collect();
            tastes.insert(user, t);
        }
    }

    // Per-tag trending: clicks of the training window on posts of the tag by users who have
    // the tag among their three, most first.
    let (from, to) = window;
    let mut counts: HashMap<u64, HashMap<u64, u64>> = HashMap::new();
    let clicked = format!(
        "SELECT DISTINCT user_id, post_id FROM dwd.dwd_user_action
         WHERE dt >= DATE '{from}' AND dt <= DATE '{to}' AND action = 'Post Clicked'
           AND user_id IS NOT NULL AND post_id IS NOT NULL"
    );
    for (u, p) in pairs(session, &clicked, "user_id", "post_id").await? {
        let (Some(post), Some(taste)) = (posts.get(&p), tastes.get(&u)) else {
            continue;
        };
        if !post.in_catalogue {
            continue;
        }
        for t in &post.tags {
            if taste.iter().any(|(x, _)| x == t) {
                *counts.entry(*t).or_default().entry(p).or_default() += 1;
            }
        }
    }
    let trending: HashMap<u64, Vec<u64>> = counts
        .into_iter()
        .map(|(t, c)| {
            let mut v: Vec<(u64, u64)> = c.into_iter().collect();
            v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            (t, v.into_iter().take(PER_TAG).map(|(p, _)| p).collect())
        })
        .collect();

    // The lists.
    let latest_followed = |u: u64| -> Vec<u64> {
        let mut v: Vec<u64> = follows
            .get(&u)
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .flat_map(|f| {
                by_author
                    .get(f)
                    .map(Vec::as_slice)
                    .unwrap_or_default()
                    .iter()
                    .take(LATEST)
                    .copied()
            })
            .collect();
        v.sort_by_key(|id| (std::cmp::Reverse(posts[id].created), std::cmp::Reverse(*id)));
        v.truncate(K);
        v
    };
    // `slots` posts from the user's tags' trending heads, split by the tags' shares.
    let tag_heads = |u: u64, slots: usize, list: &mut Vec<u64>| {
        let taste = tastes.get(&u).map(Vec::as_slice).unwrap_or_default();
        let total: f64 = taste.iter().map(|(_, s)| s).sum();
        if total <= 0.0 {
            return;
        }
        let target = list.len() + slots;
        for (t, s) in taste {
            let n = ((slots as f64) * s / total).round() as usize;
            let mut added = 0;
            for p in trending.get(t).map(Vec::as_slice).unwrap_or_default() {
                if added == n || list.len() == target {
                    break;
                }
                if !list.contains(p) {
                    list.push(*p);
                    added += 1;
                }
            }
        }
    };
    let fill = |list: &mut Vec<u64>| {
        for p in popular {
            if list.len() >= K {
                break;
            }
            if !list.contains(p) {
                list.push(*p);
            }
        }
    };
    let mut followed = HashMap::new();
    let mut followed_popular = HashMap::new();
    let mut tags = HashMap::new();
    let mut all = HashMap::new();
    for &u in users {
        let f = latest_followed(u);
        let mut fp = f.clone();
        fill(&mut fp);
        let mut t = Vec::new();
        tag_heads(u, K, &mut t);
        fill(&mut t);
        let mut a = f.clone();
        tag_heads(u, K - a.len(), &mut a);
        fill(&mut a);
        followed.insert(u, f);
        followed_popular.insert(u, fp);
        tags.insert(u, t);
        all.insert(u, a);
    }
    let methods = vec![
        Method {
            name: "ref_followed_latest",
            what: format!("reference (no model): the {LATEST} latest posts of every account followed when the day starts, newest first (up to {K})"),
            lists: followed,
        },
        Method {
            name: "ref_followed_latest+popularity",
            what: "reference: ref_followed_latest, then popularity".into(),
            lists: followed_popular,
        },
        Method {
            name: "ref_tag_trending",
            what: format!("reference: the most clicked posts of the training window in each of the user's top 3 tags (clicks by users with that tag), {K} slots split by the tags' 30-day shares, then popularity"),
            lists: tags,
        },
        Method {
            name: "ref_followed+tags+popularity",
            what: "reference: ref_followed_latest, the remaining slots from ref_tag_trending, then popularity".into(),
            lists: all,
        },
    ];

    // What the sampled users' held-out clicks are.
    let popular: HashSet<u64> = popular.iter().copied().collect();
    let (mut n, mut new, mut by_followed, mut latest, mut tagged, mut in_popular) =
        (0usize, 0usize, 0usize, 0usize, 0usize, 0usize);
    for &u in users {
        let followees: HashSet<u64> = follows.get(&u).into_iter().flatten().copied().collect();
        let taste = tastes.get(&u).map(Vec::as_slice).unwrap_or_default();
        for p in &truth[&u] {
            n += 1;
            let Some(post) = posts.get(p) else { continue };
            if !post.in_catalogue {
                new += 1;
                continue;
            }
            if followees.contains(&post.author) {
                by_followed += 1;
                let head = by_author.get(&post.author).map(Vec::as_slice);
                if head.is_some_and(|h| h.iter().take(LATEST).any(|x| x == p)) {
                    latest += 1;
                }
            }
            if post.tags.iter().any(|t| taste.iter().any(|(x, _)| x == t)) {
                tagged += 1;
            }
            if popular.contains(p) {
                in_popular += 1;
            }
        }
    }
    let share = |x: usize| x as f64 / n.max(1) as f64;
    let shares = json!({
        "clicks": n,
        "created_on_the_day": share(new),
        "by_followed_author": share(by_followed),
        "followed_latest_5": share(latest),
        "tag_in_users_top_3": share(tagged),
        "in_popularity_top_100": share(in_popular),
    });
    Ok((methods, shares))
}
