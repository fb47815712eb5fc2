//! The simulated social app: users with profiles, posts, a follow graph, orders and messages,
//! over `days` simulated days. Everything is a pure function of [`WorldConfig`].
//!
//! Records are compact (indexes into [`crate::catalog`], times as seconds since the world's
//! epoch) so a million users fit in a few hundred MB; [`crate::rows`] turns them into typed
//! business rows and [`crate::events`] into Segment events.

mod activity;
mod graph;

use chrono::{NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::catalog::{
    self, AGE_WEIGHTS, APP_VERSION_WEIGHTS, GENDER_WEIGHTS, POST_KIND_WEIGHTS, TAGS,
};
use crate::error::{Error, Result};
use crate::preferences::Preferences;
use crate::rng::{mix, Rng, Zipf};
use crate::schedule::{sessions, Session, DAY_SECS};

/// What world to simulate. Same config → byte-identical world, events and changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorldConfig {
    /// Seed of every random choice.
    pub seed: u64,
    /// Number of users (signed up over `history_days` before the window and during it).
    pub users: u32,
    /// Simulated days, starting at `start_date` 00:00 UTC.
    pub days: u32,
    /// First simulated day. A collector keeps events' own timestamps only within
    /// `collector.max_event_age` (30 days by default) and rejects future ones, so for sending
    /// use [`WorldConfig::ending_today`].
    pub start_date: NaiveDate,
    /// Mean events per active user per day (sets session length).
    pub events_per_user: u32,
    /// Mean accounts a user follows when joining (follow-backs add about a quarter more).
    pub avg_follows: u32,
    /// Mean posts per user (authors follow a power law).
    pub posts_per_user: u32,
    /// Days of history before the window: signups, follows and posts spread over them.
    pub history_days: u32,
}

impl Default for WorldConfig {
    fn default() -> Self {
        WorldConfig {
            seed: 1,
            users: 1000,
            days: 3,
            start_date: NaiveDate::from_ymd_opt(2026, 1, 5).unwrap_or_default(),
            events_per_user: 40,
            avg_follows: 8,
            posts_per_user: 3,
            history_days: 180,
        }
    }
}

impl WorldConfig {
    /// A config whose window is the `days` whole UTC days before today, so every simulated
    /// timestamp is in the past and recent enough for a collector to keep it.
    pub fn ending_today(seed: u64, users: u32, days: u32) -> WorldConfig {
        let today = Utc::now().date_naive();
        let start = today
            .checked_sub_days(chrono::Days::new(u64::from(days)))
            .unwrap_or(today);
        WorldConfig {
            seed,
            users,
            days,
            start_date: start,
            ..WorldConfig::default()
        }
    }

    /// Checks the numbers without generating anything.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: &str| Err(Error::Config(what.to_string()));
        if self.users == 0 || self.users > 50_000_000 {
            return bad("users must be between 1 and 50,000,000");
        }
        if self.days == 0 || self.days > 366 {
            return bad("days must be between 1 and 366");
        }
        if self.events_per_user == 0 || self.events_per_user > 10_000 {
            return bad("events_per_user must be between 1 and 10,000");
        }
        if self.avg_follows > 1000 || self.posts_per_user > 1000 {
            return bad("avg_follows and posts_per_user must be at most 1000");
        }
        if self.history_days == 0 || self.history_days > 3650 {
            return bad("history_days must be between 1 and 3650");
        }
        Ok(())
    }
}

/// A user and their profile as of signup. Times are seconds since the world's epoch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UserRec {
    /// Signup time.
    pub signup: u32,
    /// How much the user uses the app (Pareto, mean about 2).
    pub activity: f32,
    /// Index into [`COUNTRIES`].
    pub country: u8,
    /// Age band, gender, platform, device model, OS version: indexes into the catalogue.
    pub age: u8,
    /// Index into [`catalog::GENDERS`].
    pub gender: u8,
    /// Index into [`PLATFORMS`].
    pub platform: u8,
    /// Index into the platform's models.
    pub model: u8,
    /// Index into the platform's OS versions.
    pub os_version: u8,
    /// Editable profile fields at signup.
    pub profile: ProfileState,
}

/// The editable part of a profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProfileState {
    /// Index into the country's cities.
    pub city: u8,
    /// Index into [`catalog::APP_VERSIONS`].
    pub app_version: u8,
    /// Length of the bio text.
    pub bio_len: u16,
}

/// A profile edit during the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProfileEdit {
    /// User index.
    pub user: u32,
    /// When.
    pub at: u32,
    /// Profile before the edit.
    pub before: ProfileState,
    /// Profile after the edit.
    pub after: ProfileState,
}

/// A post.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PostRec {
    /// Author's user index.
    pub author: u32,
    /// Creation time.
    pub at: u32,
    /// Indexes into [`TAGS`]; the first `ntags` are used.
    pub tags: [u8; 3],
    /// Number of tags.
    pub ntags: u8,
    /// Index into [`catalog::POST_KINDS`].
    pub kind: u8,
    /// Caption length.
    pub caption_len: u16,
}

/// A follow edge. `unfollowed == 0`: still following at the end of the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowRec {
    /// Who follows.
    pub follower: u32,
    /// Who is followed.
    pub followee: u32,
    /// When the follow happened.
    pub at: u32,
    /// When it was undone (0: never).
    pub unfollowed: u32,
}

impl FollowRec {
    /// True when the edge exists at time `t`.
    pub fn live_at(&self, t: u32) -> bool {
        self.at <= t && (self.unfollowed == 0 || self.unfollowed > t)
    }
}

/// An order (virtual gift, coins, subscription). `refunded == 0`: never refunded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderRec {
    /// Buyer's user index.
    pub user: u32,
    /// Completion time.
    pub at: u32,
    /// Index into [`catalog::PRODUCTS`].
    pub product: u8,
    /// Refund time (0: never).
    pub refunded: u32,
}

/// A direct message between mutual follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageRec {
    /// Sender's user index.
    pub from: u32,
    /// Recipient's user index.
    pub to: u32,
    /// When.
    pub at: u32,
    /// Text length.
    pub len: u16,
}

/// The generated world. Indexes are 0-based; public ids (`user_id`, `post_id`, …) are
/// index + 1.
#[derive(Debug, Clone)]
pub struct World {
    pub(crate) config: WorldConfig,
    /// Epoch of the compact times: `start_date - history_days`, microseconds since 1970.
    pub(crate) epoch_micros: i64,
    /// Users in signup order.
    pub(crate) users: Vec<UserRec>,
    /// Profile edits, by time.
    pub(crate) edits: Vec<ProfileEdit>,
    /// Posts, by creation time.
    pub(crate) posts: Vec<PostRec>,
    /// Post indexes from most to least popular.
    pub(crate) popularity: Vec<u32>,
    /// Zipf over `popularity` ranks.
    pub(crate) post_zipf: Zipf,
    /// Follow edges sorted by (follower, followee).
    pub(crate) follows: Vec<FollowRec>,
    /// `follows[follow_offsets[u]..follow_offsets[u + 1]]` are user u's edges.
    pub(crate) follow_offsets: Vec<u32>,
    /// Indexes into `follows` by follow time.
    pub(crate) follows_by_time: Vec<u32>,
    /// Indexes into `follows` of unfollowed edges, by unfollow time.
    pub(crate) unfollows_by_time: Vec<u32>,
    /// Orders by time.
    pub(crate) orders: Vec<OrderRec>,
    /// Indexes into `orders` of refunded orders, by refund time.
    pub(crate) refunds_by_time: Vec<u32>,
    /// Messages by time.
    pub(crate) messages: Vec<MessageRec>,
    /// Post indexes by author, each author's in creation order:
    /// `posts_by_author[author_offsets[u]..author_offsets[u + 1]]` are user u's posts.
    pub(crate) posts_by_author: Vec<u32>,
    /// See `posts_by_author` (users + 1 entries).
    pub(crate) author_offsets: Vec<u32>,
    /// Post indexes by tag, each tag's from most to least trending in that tag (an order of
    /// its own, not the global popularity):
    /// `posts_by_tag[tag_offsets[t]..tag_offsets[t + 1]]` are the posts tagged `TAGS[t]`.
    pub(crate) posts_by_tag: Vec<u32>,
    /// See `posts_by_tag` (`TAGS.len() + 1` entries).
    pub(crate) tag_offsets: Vec<u32>,
    /// The hidden preferences (never emitted).
    pub(crate) prefs: Preferences,
}

/// Stream tags for [`Rng::derive`].
const TAG_USERS: u64 = 1;
const TAG_GRAPH: u64 = 2;
const TAG_POSTS: u64 = 3;
const TAG_EDITS: u64 = 4;
const TAG_ORDERS: u64 = 5;
const TAG_MESSAGES: u64 = 6;
const TAG_TAG_TRENDS: u64 = 7;

impl World {
    /// Generates the world for `config` (call [`WorldConfig::validate`] first to get a
    /// readable error; out-of-range numbers are clamped here).
    pub fn generate(config: &WorldConfig) -> World {
        let mut config = config.clone();
        config.users = config.users.max(1);
        config.days = config.days.clamp(1, 366);
        config.history_days = config.history_days.clamp(1, 3650);
        let epoch_date = config
            .start_date
            .checked_sub_days(chrono::Days::new(u64::from(config.history_days)))
            .unwrap_or(config.start_date);
        let epoch_micros = epoch_date
            .and_hms_opt(0, 0, 0)
            .map(|t| t.and_utc().timestamp_micros())
            .unwrap_or(0);
        let mut world = World {
            config,
            epoch_micros,
            users: Vec::new(),
            edits: Vec::new(),
            posts: Vec::new(),
            popularity: Vec::new(),
            post_zipf: Zipf::new(0),
            follows: Vec::new(),
            follow_offsets: Vec::new(),
            follows_by_time: Vec::new(),
            unfollows_by_time: Vec::new(),
            orders: Vec::new(),
            refunds_by_time: Vec::new(),
            messages: Vec::new(),
            posts_by_author: Vec::new(),
            author_offsets: Vec::new(),
            posts_by_tag: Vec::new(),
            tag_offsets: Vec::new(),
            prefs: Preferences::default(),
        };
        let seed = world.config.seed;
        world.gen_users();
        graph::generate(&mut world, Rng::derive(seed, &[TAG_GRAPH]));
        world.gen_posts();
        world.index_posts();
        activity::edits(&mut world, Rng::derive(seed, &[TAG_EDITS]));
        activity::orders(&mut world, Rng::derive(seed, &[TAG_ORDERS]));
        activity::messages(&mut world, Rng::derive(seed, &[TAG_MESSAGES]));
        // Drawn last and on their own streams: the public world does not depend on them.
        world.prefs = Preferences::generate(&world, seed);
        world
    }

    /// The posts of user index `author`, in creation order.
    pub(crate) fn posts_of(&self, author: u32) -> &[u32] {
        let u = author as usize;
        match (self.author_offsets.get(u), self.author_offsets.get(u + 1)) {
            (Some(&a), Some(&b)) => &self.posts_by_author[a as usize..b as usize],
            _ => &[],
        }
    }

    /// The posts tagged `TAGS[tag]`, most trending in the tag first.
    pub(crate) fn posts_tagged(&self, tag: u8) -> &[u32] {
        let t = usize::from(tag);
        match (self.tag_offsets.get(t), self.tag_offsets.get(t + 1)) {
            (Some(&a), Some(&b)) => &self.posts_by_tag[a as usize..b as usize],
            _ => &[],
        }
    }

    /// Builds `posts_by_author` and `posts_by_tag` (counting sort: posts are already in
    /// creation order, `popularity` in popularity order).
    fn index_posts(&mut self) {
        let posts = &self.posts;
        let (by_author, author_offsets) = csr(
            self.users.len(),
            posts
                .iter()
                .enumerate()
                .map(|(i, p)| (p.author as usize, i as u32)),
        );
        let (by_tag, tag_offsets) = csr(
            TAGS.len(),
            self.popularity.iter().flat_map(|&i| {
                let p = &posts[i as usize];
                let tags = &p.tags[..usize::from(p.ntags).min(3)];
                tags.iter()
                    .enumerate()
                    .filter(|&(k, t)| !tags[..k].contains(t))
                    .map(move |(_, &t)| (usize::from(t) % TAGS.len(), i))
            }),
        );
        // Each tag trends partly on its own: a post's place in its tag's list (built in global
        // popularity order) is multiplied by a per-(tag, post) factor of 1 to 16, so a topic's
        // head leans to the global head without being a copy of it.
        let mut by_tag = by_tag;
        let seed = self.config.seed;
        for t in 0..TAGS.len() {
            let (a, b) = (tag_offsets[t] as usize, tag_offsets[t + 1] as usize);
            let mut keyed: Vec<(u64, u32)> = by_tag[a..b]
                .iter()
                .enumerate()
                .map(|(k, &p)| {
                    let jitter = 1 + mix(seed, &[TAG_TAG_TRENDS, t as u64, u64::from(p)]) % 16;
                    ((k as u64 + 1) * jitter, p)
                })
                .collect();
            keyed.sort_unstable();
            for (slot, (_, p)) in by_tag[a..b].iter_mut().zip(keyed) {
                *slot = p;
            }
        }
        self.posts_by_author = by_author;
        self.author_offsets = author_offsets;
        self.posts_by_tag = by_tag;
        self.tag_offsets = tag_offsets;
    }

    /// The config this world was generated from.
    pub fn config(&self) -> &WorldConfig {
        &self.config
    }

    /// Number of users.
    pub fn user_count(&self) -> usize {
        self.users.len()
    }

    /// Number of posts.
    pub fn post_count(&self) -> usize {
        self.posts.len()
    }

    /// Number of follow edges ever created (including later unfollowed ones).
    pub fn follow_count(&self) -> usize {
        self.follows.len()
    }

    /// Number of orders.
    pub fn order_count(&self) -> usize {
        self.orders.len()
    }

    /// Number of messages.
    pub fn message_count(&self) -> usize {
        self.messages.len()
    }

    /// Start of the simulated window, microseconds since 1970.
    pub fn start_micros(&self) -> i64 {
        self.micros(self.day_start(0))
    }

    /// End of the simulated window (exclusive), microseconds since 1970.
    pub fn end_micros(&self) -> i64 {
        self.micros(self.day_start(self.config.days))
    }

    /// Followers per user at the end of the window (index = user index).
    pub fn in_degrees(&self) -> Vec<u32> {
        let mut d = vec![0u32; self.users.len()];
        for f in self.follows.iter().filter(|f| f.unfollowed == 0) {
            d[f.followee as usize] += 1;
        }
        d
    }

    /// Accounts followed per user at the end of the window.
    pub fn out_degrees(&self) -> Vec<u32> {
        let mut d = vec![0u32; self.users.len()];
        for f in self.follows.iter().filter(|f| f.unfollowed == 0) {
            d[f.follower as usize] += 1;
        }
        d
    }

    /// A 64-bit digest of every public record (FNV-1a): equal for equal worlds. The hidden
    /// preferences are not in it ([`Preferences::digest`] covers them).
    pub fn digest(&self) -> u64 {
        let mut h = Fnv::default();
        h.u64(self.epoch_micros as u64);
        for u in &self.users {
            h.u64(u64::from(u.signup) | u64::from(u.activity.to_bits()) << 32);
            h.bytes(&[
                u.country,
                u.age,
                u.gender,
                u.platform,
                u.model,
                u.os_version,
            ]);
            h.profile(&u.profile);
        }
        for e in &self.edits {
            h.u64(u64::from(e.user) << 32 | u64::from(e.at));
            h.profile(&e.before);
            h.profile(&e.after);
        }
        for p in &self.posts {
            h.u64(u64::from(p.author) << 32 | u64::from(p.at));
            h.bytes(&[p.tags[0], p.tags[1], p.tags[2], p.ntags, p.kind]);
            h.u64(u64::from(p.caption_len));
        }
        for &r in &self.popularity {
            h.u64(u64::from(r));
        }
        for f in &self.follows {
            h.u64(u64::from(f.follower) << 32 | u64::from(f.followee));
            h.u64(u64::from(f.at) << 32 | u64::from(f.unfollowed));
        }
        for o in &self.orders {
            h.u64(u64::from(o.user) << 32 | u64::from(o.at));
            h.u64(u64::from(o.refunded) << 8 | u64::from(o.product));
        }
        for m in &self.messages {
            h.u64(u64::from(m.from) << 32 | u64::from(m.to));
            h.u64(u64::from(m.at) << 16 | u64::from(m.len));
        }
        h.0
    }

    /// Compact time (seconds since the epoch) → microseconds since 1970.
    pub fn micros(&self, secs: u32) -> i64 {
        self.epoch_micros + i64::from(secs) * 1_000_000
    }

    /// First second of simulated day `day` (0-based), in compact time.
    pub fn day_start(&self, day: u32) -> u32 {
        (self.config.history_days + day) * DAY_SECS
    }

    /// The user record at `index`.
    pub fn user(&self, index: u32) -> Option<&UserRec> {
        self.users.get(index as usize)
    }

    /// The follow edge follower → followee, if it was ever created.
    pub fn follow(&self, follower: u32, followee: u32) -> Option<&FollowRec> {
        let edges = self.edges_of(follower);
        edges
            .binary_search_by_key(&followee, |f| f.followee)
            .ok()
            .map(|i| &edges[i])
    }

    /// The follow edges of `user` (as follower), sorted by followee.
    pub fn edges_of(&self, user: u32) -> &[FollowRec] {
        let u = user as usize;
        match (self.follow_offsets.get(u), self.follow_offsets.get(u + 1)) {
            (Some(&a), Some(&b)) => &self.follows[a as usize..b as usize],
            _ => &[],
        }
    }

    /// A time inside one of `user`'s sessions on `day`, not before `not_before`.
    pub(crate) fn place_on_day(
        &self,
        rng: &mut Rng,
        user: u32,
        day: u32,
        not_before: u32,
        buf: &mut Vec<Session>,
    ) -> Option<u32> {
        let rec = self.users.get(user as usize)?;
        sessions(self, user, rec, day, buf);
        buf.retain(|s| s.end >= not_before);
        if buf.is_empty() {
            return None;
        }
        let s = buf[rng.below(buf.len() as u64) as usize];
        let lo = s.start.max(not_before);
        Some(rng.range_i64(i64::from(lo), i64::from(s.end)) as u32)
    }

    /// A time inside one of `user`'s sessions in the window, not before `not_before`: tries a
    /// few random days from the day of `not_before` on.
    pub(crate) fn place(
        &self,
        rng: &mut Rng,
        user: u32,
        not_before: u32,
        buf: &mut Vec<Session>,
    ) -> Option<u32> {
        let first = not_before.saturating_sub(self.day_start(0)) / DAY_SECS;
        if first >= self.config.days {
            return None;
        }
        for _ in 0..4 {
            let day = first + rng.below(u64::from(self.config.days - first)) as u32;
            if let Some(t) = self.place_on_day(rng, user, day, not_before, buf) {
                return Some(t);
            }
        }
        None
    }

    fn gen_users(&mut self) {
        let mut rng = Rng::derive(self.config.seed, &[TAG_USERS]);
        let country_w = catalog::country_weights();
        let platform_w = catalog::platform_weights();
        let window = self.config.days * DAY_SECS;
        let history = self.day_start(0);
        let mut users = Vec::with_capacity(self.config.users as usize);
        for _ in 0..self.config.users {
            // Most users joined before the window; about 10% join during it.
            let signup = if rng.chance(0.9) {
                rng.below(u64::from(history)) as u32
            } else {
                history + rng.below(u64::from(window)) as u32
            };
            let country = rng.weighted(&country_w) as u8;
            let platform = rng.weighted(&platform_w) as u8;
            users.push(UserRec {
                signup,
                activity: rng.pareto2(30.0) as f32,
                country,
                age: rng.weighted(&AGE_WEIGHTS) as u8,
                gender: rng.weighted(&GENDER_WEIGHTS) as u8,
                platform,
                model: rng.below(3) as u8,
                os_version: rng.below(3) as u8,
                profile: ProfileState {
                    city: rng.below(3) as u8,
                    app_version: rng.weighted(&APP_VERSION_WEIGHTS) as u8,
                    bio_len: rng.below(160) as u16,
                },
            });
        }
        // Index order = signup order (ties keep generation order).
        users.sort_by_key(|u| u.signup);
        self.users = users;
    }

    fn gen_posts(&mut self) {
        let mut rng = Rng::derive(self.config.seed, &[TAG_POSTS]);
        let n_users = self.users.len() as u32;
        let n = u64::from(n_users) * u64::from(self.config.posts_per_user);
        // Creators: a random order of users, drawn Zipf-distributed for 40% of posts (the
        // rest by anyone), so a few creators write a large share.
        let mut creators: Vec<u32> = (0..n_users).collect();
        rng.shuffle(&mut creators);
        let creator_zipf = Zipf::new(creators.len());
        let tag_zipf = Zipf::new(TAGS.len());
        let start = self.day_start(0);
        let recent = start.saturating_sub(60 * DAY_SECS);
        let mut buf = Vec::new();
        let mut posts = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let author = if rng.chance(0.4) {
                creators[creator_zipf.sample(&mut rng)]
            } else {
                rng.below(u64::from(n_users)) as u32
            };
            let signup = self.users[author as usize].signup;
            let in_window = signup >= start || rng.chance(0.3);
            let at = if in_window {
                self.place(&mut rng, author, signup, &mut buf)
            } else {
                let lo = recent.max(signup);
                Some(rng.range_i64(i64::from(lo), i64::from(start) - 1) as u32)
            };
            let Some(at) = at else { continue };
            let ntags = 1 + rng.below(3) as u8;
            let mut tags = [0u8; 3];
            for t in tags.iter_mut().take(ntags as usize) {
                *t = tag_zipf.sample(&mut rng) as u8;
            }
            posts.push(PostRec {
                author,
                at,
                tags,
                ntags,
                kind: rng.weighted(&POST_KIND_WEIGHTS) as u8,
                caption_len: rng.below(300) as u16,
            });
        }
        posts.sort_by_key(|p| (p.at, p.author));
        let mut popularity: Vec<u32> = (0..posts.len() as u32).collect();
        rng.shuffle(&mut popularity);
        self.post_zipf = Zipf::new(posts.len());
        self.posts = posts;
        self.popularity = popularity;
    }
}

/// Groups `(key, value)` pairs by key in `0..n`, keeping their order within a key: the values
/// and `n + 1` offsets (`values[offsets[k]..offsets[k + 1]]` belong to key k).
fn csr(n: usize, pairs: impl Iterator<Item = (usize, u32)> + Clone) -> (Vec<u32>, Vec<u32>) {
    let mut offsets = vec![0u32; n + 1];
    for (k, _) in pairs.clone() {
        offsets[k + 1] += 1;
    }
    for i in 0..n {
        offsets[i + 1] += offsets[i];
    }
    let mut next = offsets.clone();
    let mut values = vec![0u32; offsets[n] as usize];
    for (k, v) in pairs {
        values[next[k] as usize] = v;
        next[k] += 1;
    }
    (values, offsets)
}

/// FNV-1a, 64 bits.
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    fn bytes(&mut self, b: &[u8]) {
        for &x in b {
            self.0 ^= u64::from(x);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn u64(&mut self, v: u64) {
        self.bytes(&v.to_le_bytes());
    }

    fn profile(&mut self, p: &ProfileState) {
        self.bytes(&[p.city, p.app_version]);
        self.bytes(&p.bio_len.to_le_bytes());
    }
}
