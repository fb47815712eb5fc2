//! `strata experiments report NAME`: per variant, impressions, clicks, CTR and likes per
//! impression with 95 % confidence intervals, computed from the lake.
//!
//! Impressions are the items of the experiment's `Feed Served` events. An engagement
//! (`Post Clicked`, `Post Liked`) counts for the impression it answers: the one with the same
//! `request_id` and post when the client sent the id back, else the user's latest served
//! impression of that post in the 24 hours before it. Each impression counts at most one click
//! and one like.
//!
//! Users are the unit of assignment, so impressions of one user are not independent: the
//! intervals use the delta method on per-user sums (the ratio-metric variance A/B platforms
//! use), not a binomial over impressions, which would be too narrow. Differences are against
//! the first variant (the control), with a two-sided z-test.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use strata_sql::SqlSession;
use strata_table::Lake;

use crate::columns::{days as day, ints, micros, query as run, texts as text};
use crate::error::{Error, Result};
use crate::events::FEED_SERVED;

/// An engagement counts for an impression served at most this long before it.
const ATTRIBUTION_US: i64 = 24 * 3600 * 1_000_000;

/// One served item.
#[derive(Debug, Clone, PartialEq)]
pub struct Impression {
    pub request_id: String,
    pub user_id: String,
    pub variant: String,
    pub post_id: u64,
    /// When the feed was served (µs).
    pub at: i64,
}

/// A click or like.
#[derive(Debug, Clone, PartialEq)]
pub struct Engagement {
    pub user_id: String,
    pub post_id: u64,
    pub request_id: Option<String>,
    pub like: bool,
    pub at: i64,
}

/// A ratio metric with its interval.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Ratio {
    pub value: f64,
    /// 95 % confidence interval (delta method over users).
    pub low: f64,
    pub high: f64,
    /// Relative difference to the control's value, and its p-value (absent for the control).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lift: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p_value: Option<f64>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct VariantReport {
    pub variant: String,
    pub users: usize,
    pub feeds: usize,
    pub impressions: u64,
    pub clicks: u64,
    pub likes: u64,
    pub ctr: Ratio,
    pub likes_per_impression: Ratio,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Report {
    pub experiment: String,
    pub variants: Vec<VariantReport>,
    /// Engagements matched by request id, and by (user, post) within 24 h.
    pub matched_by_request_id: u64,
    pub matched_by_time: u64,
}

/// Reads the experiment's impressions and the engagements after them from `ods.ods_event`:
/// those that carry a request id whenever they happened (a client's clock, or a simulation's
/// backdated day, may put them before the feed's server time), the others from the first
/// feed's day on.
pub async fn from_lake(lake: &Lake, experiment: &str) -> Result<Report> {
    let session = SqlSession::new(lake)
        .await
        .map_err(|e| Error::Internal(format!("SQL session: {e}")))?;
    let name = experiment.replace('\'', "''");
    let served = format!(
        "SELECT user_id, message_id, properties, event_ts, dt FROM ods.ods_event \
         WHERE event = '{FEED_SERVED}' AND json_get_str(properties, 'experiment') = '{name}'"
    );
    let mut impressions = Vec::new();
    let mut first_dt: Option<i32> = None;
    for b in run(&session, &served).await? {
        let users = text(&b, "user_id")?;
        let ids = text(&b, "message_id")?;
        let props = text(&b, "properties")?;
        let at = micros(&b, "event_ts")?;
        let dts = day(&b, "dt")?;
        for i in 0..b.num_rows() {
            let (Some(user), Some(id), Some(p)) = (&users[i], &ids[i], &props[i]) else {
                continue;
            };
            if let Some(d) = dts[i] {
                first_dt = Some(first_dt.map_or(d, |f: i32| f.min(d)));
            }
            let Ok(v) = serde_json::from_str::<serde_json::Value>(p) else {
                continue;
            };
            let variant = v["variant"].as_str().unwrap_or("-").to_string();
            for item in v["items"].as_array().map(Vec::as_slice).unwrap_or_default() {
                if let Some(post) = item["post_id"].as_u64() {
                    impressions.push(Impression {
                        request_id: id.clone(),
                        user_id: user.clone(),
                        variant: variant.clone(),
                        post_id: post,
                        at: at[i].unwrap_or(0),
                    });
                }
            }
        }
    }
    let mut engagements = Vec::new();
    if let Some(first) = first_dt {
        let from = chrono::NaiveDate::from_num_days_from_ce_opt(first + 719_163)
            .map(|d| d.to_string())
            .unwrap_or_default();
        let sql = format!(
            "SELECT user_id, event, json_get_int(properties, 'post_id') AS post_id, \
             json_get_str(properties, 'request_id') AS request_id, event_ts FROM ods.ods_event \
             WHERE event IN ('Post Clicked', 'Post Liked') AND user_id IS NOT NULL \
             AND (dt >= DATE '{from}' OR json_get_str(properties, 'request_id') IS NOT NULL)"
        );
        for b in run(&session, &sql).await? {
            let users = text(&b, "user_id")?;
            let events = text(&b, "event")?;
            let posts = ints(&b, "post_id")?;
            let rids = text(&b, "request_id")?;
            let at = micros(&b, "event_ts")?;
            for i in 0..b.num_rows() {
                let (Some(user), Some(event), Some(post)) = (&users[i], &events[i], posts[i])
                else {
                    continue;
                };
                engagements.push(Engagement {
                    user_id: user.clone(),
                    post_id: post as u64,
                    request_id: rids[i].clone(),
                    like: event == "Post Liked",
                    at: at[i].unwrap_or(0),
                });
            }
        }
    }
    Ok(compute(experiment, &impressions, &engagements))
}

/// The report from impressions and engagements (variants in order of first appearance in
/// `impressions` sorted by name, the control first when named `control`).
pub fn compute(experiment: &str, impressions: &[Impression], engagements: &[Engagement]) -> Report {
    // Index impressions by (request, post) and by (user, post) → times.
    let mut by_request: HashMap<(&str, u64), usize> = HashMap::new();
    let mut by_user_post: HashMap<(&str, u64), Vec<usize>> = HashMap::new();
    for (i, imp) in impressions.iter().enumerate() {
        by_request.insert((imp.request_id.as_str(), imp.post_id), i);
        by_user_post
            .entry((imp.user_id.as_str(), imp.post_id))
            .or_default()
            .push(i);
    }
    for v in by_user_post.values_mut() {
        v.sort_by_key(|&i| impressions[i].at);
    }
    let mut clicked = vec![false; impressions.len()];
    let mut liked = vec![false; impressions.len()];
    let (mut by_id, mut by_time) = (0u64, 0u64);
    for e in engagements {
        let hit = match e
            .request_id
            .as_deref()
            .and_then(|r| by_request.get(&(r, e.post_id)))
        {
            Some(&i) => {
                by_id += 1;
                Some(i)
            }
            None => {
                let found = by_user_post
                    .get(&(e.user_id.as_str(), e.post_id))
                    .and_then(|v| {
                        v.iter()
                            .rev()
                            .find(|&&i| {
                                let at = impressions[i].at;
                                at <= e.at && e.at - at <= ATTRIBUTION_US
                            })
                            .copied()
                    });
                if found.is_some() {
                    by_time += 1;
                }
                found
            }
        };
        if let Some(i) = hit {
            if e.like {
                liked[i] = true;
            } else {
                clicked[i] = true;
            }
        }
    }

    // Per variant, per user: impressions, clicks, likes, feeds.
    #[derive(Default)]
    struct Acc<'a> {
        users: BTreeMap<&'a str, (f64, f64, f64)>,
        feeds: std::collections::HashSet<&'a str>,
    }
    let mut variants: BTreeMap<&str, Acc> = BTreeMap::new();
    for (i, imp) in impressions.iter().enumerate() {
        let acc = variants.entry(imp.variant.as_str()).or_default();
        acc.feeds.insert(imp.request_id.as_str());
        let u = acc.users.entry(imp.user_id.as_str()).or_default();
        u.0 += 1.0;
        u.1 += f64::from(u8::from(clicked[i]));
        u.2 += f64::from(u8::from(liked[i]));
    }
    let mut names: Vec<&str> = variants.keys().copied().collect();
    if let Some(p) = names.iter().position(|n| *n == "control") {
        let c = names.remove(p);
        names.insert(0, c);
    }
    let mut out = Vec::new();
    let mut control: Option<(RatioStats, RatioStats)> = None;
    for name in names {
        let acc = &variants[name];
        let n: Vec<f64> = acc.users.values().map(|u| u.0).collect();
        let c: Vec<f64> = acc.users.values().map(|u| u.1).collect();
        let l: Vec<f64> = acc.users.values().map(|u| u.2).collect();
        let ctr = RatioStats::of(&c, &n);
        let lpi = RatioStats::of(&l, &n);
        let (ctr_r, lpi_r) = match &control {
            None => (ctr.ratio(None), lpi.ratio(None)),
            Some((cc, cl)) => (ctr.ratio(Some(cc)), lpi.ratio(Some(cl))),
        };
        if control.is_none() {
            control = Some((ctr, lpi));
        }
        out.push(VariantReport {
            variant: name.to_string(),
            users: acc.users.len(),
            feeds: acc.feeds.len(),
            impressions: n.iter().sum::<f64>() as u64,
            clicks: c.iter().sum::<f64>() as u64,
            likes: l.iter().sum::<f64>() as u64,
            ctr: ctr_r,
            likes_per_impression: lpi_r,
        });
    }
    Report {
        experiment: experiment.to_string(),
        variants: out,
        matched_by_request_id: by_id,
        matched_by_time: by_time,
    }
}

/// A ratio of per-user sums and its delta-method variance.
#[derive(Debug, Clone, Copy)]
struct RatioStats {
    value: f64,
    variance: f64,
}

impl RatioStats {
    fn of(num: &[f64], den: &[f64]) -> RatioStats {
        let k = num.len() as f64;
        let (sx, sy): (f64, f64) = (num.iter().sum(), den.iter().sum());
        if k < 2.0 || sy <= 0.0 {
            return RatioStats {
                value: if sy > 0.0 { sx / sy } else { 0.0 },
                variance: f64::NAN,
            };
        }
        let (mx, my) = (sx / k, sy / k);
        let r = mx / my;
        let (mut vx, mut vy, mut cxy) = (0.0, 0.0, 0.0);
        for (x, y) in num.iter().zip(den) {
            vx += (x - mx) * (x - mx);
            vy += (y - my) * (y - my);
            cxy += (x - mx) * (y - my);
        }
        let d = k - 1.0;
        let (vx, vy, cxy) = (vx / d, vy / d, cxy / d);
        let variance = (vx - 2.0 * r * cxy + r * r * vy) / (k * my * my);
        RatioStats {
            value: r,
            variance: variance.max(0.0),
        }
    }

    fn ratio(&self, control: Option<&RatioStats>) -> Ratio {
        let half = 1.96 * self.variance.sqrt();
        let (lift, p_value) = match control {
            Some(c) if c.value > 0.0 => {
                let se = (self.variance + c.variance).sqrt();
                let z = if se > 0.0 {
                    (self.value - c.value) / se
                } else {
                    f64::NAN
                };
                (Some(self.value / c.value - 1.0), Some(two_sided_p(z)))
            }
            Some(_) => (None, None),
            None => (None, None),
        };
        Ratio {
            value: self.value,
            low: self.value - half,
            high: self.value + half,
            lift,
            p_value: p_value.filter(|p| p.is_finite()),
        }
    }
}

/// Two-sided p-value of a standard normal z (Abramowitz–Stegun 7.1.26 for erf).
fn two_sided_p(z: f64) -> f64 {
    let x = z.abs() / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.327_591_1 * x);
    let poly = t
        * (0.254_829_592
            + t * (-0.284_496_736
                + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    let erf = 1.0 - poly * (-x * x).exp();
    (1.0 - erf).clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000_000;

    fn imp(req: &str, user: &str, variant: &str, post: u64, at: i64) -> Impression {
        Impression {
            request_id: req.into(),
            user_id: user.into(),
            variant: variant.into(),
            post_id: post,
            at,
        }
    }

    fn click(user: &str, post: u64, req: Option<&str>, at: i64) -> Engagement {
        Engagement {
            user_id: user.into(),
            post_id: post,
            request_id: req.map(str::to_string),
            like: false,
            at,
        }
    }

    #[test]
    fn clicks_join_by_request_id_or_within_a_day() {
        let imps = vec![
            imp("r1", "u1", "control", 10, 0),
            imp("r1", "u1", "control", 11, 0),
            imp("r2", "u2", "treat", 10, 0),
            imp("r2", "u2", "treat", 12, 0),
        ];
        let engs = vec![
            click("u1", 10, Some("r1"), H),
            // Twice the same click: one impression counts one click.
            click("u1", 10, Some("r1"), 2 * H),
            // No request id: joined to u2's impression of 12 within 24 h.
            click("u2", 12, None, 3 * H),
            // Too late, and a post never served: not counted.
            click("u2", 10, None, 30 * H),
            click("u1", 99, None, H),
            Engagement {
                like: true,
                ..click("u2", 12, Some("r2"), 4 * H)
            },
        ];
        let r = compute("ab", &imps, &engs);
        assert_eq!(r.variants[0].variant, "control");
        assert_eq!(r.variants[0].impressions, 2);
        assert_eq!(r.variants[0].clicks, 1);
        assert_eq!(r.variants[1].clicks, 1);
        assert_eq!(r.variants[1].likes, 1);
        assert_eq!(r.matched_by_request_id, 3);
        assert_eq!(r.matched_by_time, 1);
        assert!((r.variants[0].ctr.value - 0.5).abs() < 1e-12);
    }

    #[test]
    fn a_real_lift_is_significant_and_a_null_one_is_not() {
        // 2,000 users per arm, 10 impressions each; treatment clicks twice as often.
        let mut imps = Vec::new();
        let mut engs = Vec::new();
        for u in 0..4000u64 {
            let variant = if u % 2 == 0 { "control" } else { "treat" };
            let user = format!("u{u}");
            for p in 0..10u64 {
                let req = format!("r{u}");
                imps.push(imp(&req, &user, variant, p, 0));
                // Deterministic "randomness": a hash decides the click.
                let h = (u.wrapping_mul(2_654_435_761) ^ p.wrapping_mul(40_503)) % 100;
                let rate = if variant == "control" { 10 } else { 20 };
                if h < rate {
                    engs.push(click(&user, p, Some(&req), H));
                }
            }
        }
        let r = compute("ab", &imps, &engs);
        let t = &r.variants[1];
        assert!(t.ctr.lift.unwrap() > 0.5, "{t:?}");
        assert!(t.ctr.p_value.unwrap() < 0.001, "{t:?}");
        let c = &r.variants[0];
        assert!(c.ctr.low < c.ctr.value && c.ctr.value < c.ctr.high);
        assert!(c.ctr.high - c.ctr.low < 0.02, "{c:?}");

        // A/A: the same rate in both arms.
        let aa: Vec<Engagement> = engs
            .iter()
            .filter(|e| e.user_id.trim_start_matches('u').parse::<u64>().unwrap() % 2 == 0)
            .cloned()
            .chain(
                engs.iter()
                    .filter(|e| e.user_id.trim_start_matches('u').parse::<u64>().unwrap() % 2 == 0)
                    .map(|e| {
                        let u: u64 = e.user_id.trim_start_matches('u').parse().unwrap();
                        Engagement {
                            user_id: format!("u{}", u + 1),
                            request_id: Some(format!("r{}", u + 1)),
                            ..e.clone()
                        }
                    }),
            )
            .collect();
        let r = compute("aa", &imps, &aa);
        assert!(
            r.variants[1].ctr.p_value.unwrap() > 0.05,
            "{:?}",
            r.variants[1]
        );
    }

    #[test]
    fn p_values_match_the_normal_table() {
        assert!((two_sided_p(1.96) - 0.05).abs() < 1e-3);
        assert!((two_sided_p(0.0) - 1.0).abs() < 1e-6);
        assert!(two_sided_p(5.0) < 1e-5);
    }
}
