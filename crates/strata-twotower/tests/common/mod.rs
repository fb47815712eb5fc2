//! A synthetic world with planted structure: users with hidden topic preferences, items with
//! topics and a power-law popularity; positives drawn from the preferences. The user tower
//! sees a noisy histogram of the user's past topics; the item tower sees ids and an author id
//! (authors write on one topic).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use strata_twotower::*;

pub struct World {
    pub topics: usize,
    pub items: usize,
    pub users: usize,
    /// (primary, secondary) topic of each user.
    pub prefs: Vec<(usize, usize)>,
    pub popularity: Vec<f64>,
}

/// A tiny xorshift for the test data (independent of the crate's own generator).
pub struct TestRng(u64);
impl TestRng {
    pub fn new(seed: u64) -> Self {
        TestRng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

pub const PRIMARY_SHARE: f64 = 0.8;

impl World {
    pub fn new(topics: usize, items: usize, users: usize, seed: u64) -> Self {
        let mut rng = TestRng::new(seed);
        let prefs = (0..users)
            .map(|_| {
                let a = rng.below(topics);
                let b = (a + 1 + rng.below(topics - 1)) % topics;
                (a, b)
            })
            .collect();
        // Zipf-like popularity over a random permutation of the items.
        let mut ranks: Vec<usize> = (0..items).collect();
        for i in (1..items).rev() {
            ranks.swap(i, rng.below(i + 1));
        }
        let popularity = ranks
            .iter()
            .map(|r| 1.0 / ((r + 1) as f64).powf(0.6))
            .collect();
        World {
            topics,
            items,
            users,
            prefs,
            popularity,
        }
    }

    pub fn topic(&self, item: usize) -> usize {
        item % self.topics
    }

    pub fn author(&self, item: usize) -> u64 {
        // Five authors per topic.
        (self.topic(item) * 5 + (item / self.topics) % 5) as u64
    }

    /// One positive of `user`: a topic from the preferences, an item of it by popularity.
    pub fn sample(&self, user: usize, rng: &mut TestRng) -> usize {
        let (a, b) = self.prefs[user];
        let topic = if rng.unit() < PRIMARY_SHARE { a } else { b };
        let total: f64 = (topic..self.items)
            .step_by(self.topics)
            .map(|i| self.popularity[i])
            .sum();
        let mut x = rng.unit() * total;
        let mut last = topic;
        for i in (topic..self.items).step_by(self.topics) {
            last = i;
            x -= self.popularity[i];
            if x <= 0.0 {
                break;
            }
        }
        last
    }

    pub fn user_spec(&self) -> TowerSpec {
        TowerSpec {
            numeric: (0..self.topics)
                .map(|t| format!("topic_{t}_clicks"))
                .collect(),
            categorical: vec![Categorical::new("country", 8, 4)],
        }
    }

    pub fn item_spec(&self) -> TowerSpec {
        TowerSpec {
            numeric: vec!["age_hours".into()],
            categorical: vec![
                Categorical::new("post_id", self.items * 2, 8),
                Categorical::new("author_id", 64, 8),
            ],
        }
    }

    /// The user's online features: a histogram of 20 past positives (noisy preferences).
    pub fn user_features(&self, user: usize, seed: u64) -> (Vec<f32>, Vec<u64>) {
        let mut rng = TestRng::new(seed ^ (user as u64 * 7919));
        let mut hist = vec![0f32; self.topics];
        for _ in 0..20 {
            hist[self.topic(self.sample(user, &mut rng))] += 1.0;
        }
        (hist, vec![(user % 5) as u64])
    }

    pub fn item_features(&self, item: usize) -> (Vec<f32>, Vec<u64>) {
        (
            vec![(item % 97) as f32 * 3.0],
            vec![item as u64 + 1_000_000, self.author(item)],
        )
    }

    /// `per_user` positives of every user.
    pub fn examples(&self, per_user: usize, seed: u64) -> Batch {
        let mut rng = TestRng::new(seed);
        let mut batch = Batch::for_specs(&self.user_spec(), &self.item_spec());
        for user in 0..self.users {
            let (un, uc) = self.user_features(user, seed);
            for _ in 0..per_user {
                let item = self.sample(user, &mut rng);
                let (inum, icat) = self.item_features(item);
                batch.user_id.push(user as u64);
                batch.item_id.push(item as u64 + 1_000_000);
                for (c, v) in un.iter().enumerate() {
                    batch.user.numeric[c].push(*v);
                }
                for (c, v) in uc.iter().enumerate() {
                    batch.user.categorical[c].push(*v);
                }
                for (c, v) in inum.iter().enumerate() {
                    batch.item.numeric[c].push(*v);
                }
                for (c, v) in icat.iter().enumerate() {
                    batch.item.categorical[c].push(*v);
                }
            }
        }
        batch
    }

    pub fn catalogue(&self) -> ItemTable {
        let mut table = ItemTable {
            ids: Vec::new(),
            features: Columns::for_spec(&self.item_spec()),
        };
        for item in 0..self.items {
            let (n, c) = self.item_features(item);
            table.ids.push(item as u64 + 1_000_000);
            for (k, v) in n.iter().enumerate() {
                table.features.numeric[k].push(*v);
            }
            for (k, v) in c.iter().enumerate() {
                table.features.categorical[k].push(*v);
            }
        }
        table
    }

    pub fn config(&self) -> TrainConfig {
        let mut cfg = TrainConfig::new(self.user_spec(), self.item_spec());
        cfg.hidden = vec![32];
        cfg.dim = 16;
        cfg.epochs = 4;
        cfg.batch_size = 128;
        cfg.learning_rate = 0.01;
        cfg.temperature = 0.1;
        cfg
    }
}

/// Users who follow a few authors (ids `1..=authors`) and click posts of the authors they
/// follow; post `p` is by author `1 + p % authors`. The user tower's categoricals are the
/// follow slots (missing past a user's follows: 0), its numerics draw noise; the item tower
/// reads the post id, then the author.
pub struct FollowWorld {
    pub authors: usize,
    pub slots: usize,
    pub follows: Vec<Vec<u64>>,
}

impl FollowWorld {
    /// `users` users, each following `min_follows..=slots` distinct authors.
    pub fn new(authors: usize, users: usize, slots: usize, min_follows: usize, seed: u64) -> Self {
        let mut rng = TestRng::new(seed);
        let follows = (0..users)
            .map(|_| {
                let n = min_follows + rng.below(slots + 1 - min_follows);
                let mut f: Vec<u64> = Vec::new();
                while f.len() < n {
                    let a = 1 + rng.below(authors) as u64;
                    if !f.contains(&a) {
                        f.push(a);
                    }
                }
                f
            })
            .collect();
        FollowWorld {
            authors,
            slots,
            follows,
        }
    }

    pub fn author_of(&self, post: u64) -> u64 {
        1 + post % self.authors as u64
    }

    /// `per_user` clicks per user on posts `first..first + posts` by followed authors, as
    /// columns of `user` and `item`.
    pub fn clicks(
        &self,
        user: &TowerSpec,
        item: &TowerSpec,
        (first, posts): (u64, u64),
        per_user: usize,
        seed: u64,
    ) -> Batch {
        let mut rng = TestRng::new(seed);
        let mut b = Batch::for_specs(user, item);
        let authors = self.authors as u64;
        let per_author = posts / authors;
        // The first post in the range by author 1; each author's are `authors` apart.
        let base = first + (authors - first % authors) % authors;
        for (u, f) in self.follows.iter().enumerate() {
            for _ in 0..per_user {
                let author = f[rng.below(f.len())];
                let k = rng.below(per_author as usize) as u64;
                let post = base + k * authors + (author - 1);
                assert_eq!(self.author_of(post), author);
                b.user_id.push(u as u64 + 1);
                b.item_id.push(post);
                for column in b.user.numeric.iter_mut() {
                    column.push(rng.unit() as f32);
                }
                for s in 0..self.slots {
                    b.user.categorical[s].push(f.get(s).copied().unwrap_or(0));
                }
                b.item.categorical[0].push(post);
                b.item.categorical[1].push(author);
            }
        }
        b
    }

    /// Posts `first..first + posts` with their ids and authors, as columns of `item`.
    pub fn catalogue(&self, item: &TowerSpec, first: u64, posts: u64) -> ItemTable {
        let mut features = Columns::for_spec(item);
        let ids: Vec<u64> = (first..first + posts).collect();
        for &p in &ids {
            features.categorical[0].push(p);
            features.categorical[1].push(self.author_of(p));
        }
        ItemTable { ids, features }
    }
}
