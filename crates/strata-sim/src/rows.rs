//! Business rows (what the app's own database holds) and the stream of changes that builds
//! them, for the CDC path: `users`, `profiles`, `posts`, `follows`, `orders`, `messages`.
//!
//! Model, kept simple on purpose:
//! - every row has a stable primary key ([`Table::primary_key`]); ids are positive integers;
//! - rows created before the window (history) come first as inserts with their own creation
//!   time, so replaying [`World::changes`] from empty gives the full database;
//! - during the window: inserts (new users, posts, follows, orders, messages), updates
//!   (profile edits, order refunds) and deletes (unfollows);
//! - times are microseconds since 1970 (UTC).

use serde::Serialize;

use crate::catalog::{
    AGE_BANDS, APP_VERSIONS, COUNTRIES, GENDERS, PLATFORMS, POST_KINDS, PRODUCTS, TAGS,
};
use crate::world::{ProfileState, World};

/// A business table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Table {
    /// Accounts: one row per user.
    Users,
    /// Editable profile: one row per user.
    Profiles,
    /// Posts.
    Posts,
    /// Follow edges (follower → followee).
    Follows,
    /// Purchases of gifts, coins and subscriptions.
    Orders,
    /// Direct messages.
    Messages,
}

impl Table {
    /// Every table, in dependency order.
    pub const ALL: [Table; 6] = [
        Table::Users,
        Table::Profiles,
        Table::Posts,
        Table::Follows,
        Table::Orders,
        Table::Messages,
    ];

    /// Table name.
    pub fn name(self) -> &'static str {
        match self {
            Table::Users => "users",
            Table::Profiles => "profiles",
            Table::Posts => "posts",
            Table::Follows => "follows",
            Table::Orders => "orders",
            Table::Messages => "messages",
        }
    }

    /// Primary-key columns; a [`Change::key`] lists their values in this order.
    pub fn primary_key(self) -> &'static [&'static str] {
        match self {
            Table::Users | Table::Profiles => &["user_id"],
            Table::Posts => &["post_id"],
            Table::Follows => &["follower_id", "followee_id"],
            Table::Orders => &["order_id"],
            Table::Messages => &["message_id"],
        }
    }
}

/// What a change does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    /// A new row (`after` only).
    Insert,
    /// A changed row (`before` and `after`).
    Update,
    /// A removed row (`before` only).
    Delete,
}

/// An account.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UserRow {
    /// Primary key.
    pub user_id: u64,
    /// Unique handle.
    pub username: String,
    /// Fake address under example.com.
    pub email: String,
    /// ISO country code at signup.
    pub country: &'static str,
    /// Platform used to sign up.
    pub signup_platform: &'static str,
    /// Signup time.
    pub created_at: i64,
}

/// A profile (one per user).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProfileRow {
    /// Primary key (= the user).
    pub user_id: u64,
    /// Display name.
    pub display_name: String,
    /// ISO country code.
    pub country: &'static str,
    /// City.
    pub city: &'static str,
    /// Age band, e.g. `25-34`.
    pub age_band: &'static str,
    /// Gender.
    pub gender: &'static str,
    /// Locale, e.g. `pt-BR`.
    pub locale: &'static str,
    /// Platform: `ios`, `android`, `web`.
    pub platform: &'static str,
    /// Device model (empty on web).
    pub device_model: &'static str,
    /// Installed app version.
    pub app_version: &'static str,
    /// Bio length in characters.
    pub bio_length: u16,
    /// Last change.
    pub updated_at: i64,
}

/// A post.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PostRow {
    /// Primary key.
    pub post_id: u64,
    /// Author.
    pub author_id: u64,
    /// `photo`, `video` or `text`.
    pub kind: &'static str,
    /// Tags.
    pub tags: Vec<&'static str>,
    /// Caption length in characters.
    pub caption_length: u16,
    /// Creation time.
    pub created_at: i64,
}

/// A follow edge.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FollowRow {
    /// Who follows (key part 1).
    pub follower_id: u64,
    /// Who is followed (key part 2).
    pub followee_id: u64,
    /// When.
    pub created_at: i64,
}

/// An order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OrderRow {
    /// Primary key.
    pub order_id: u64,
    /// Buyer.
    pub user_id: u64,
    /// Product sku.
    pub product_id: &'static str,
    /// `gift`, `coins` or `subscription`.
    pub product_kind: &'static str,
    /// Price in minor units of `currency`.
    pub amount_minor: i64,
    /// ISO currency code.
    pub currency: &'static str,
    /// `completed` or `refunded`.
    pub status: &'static str,
    /// Completion time.
    pub created_at: i64,
    /// Last change.
    pub updated_at: i64,
}

/// A direct message.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MessageRow {
    /// Primary key.
    pub message_id: u64,
    /// Sender.
    pub sender_id: u64,
    /// Recipient (a mutual follow of the sender).
    pub recipient_id: u64,
    /// Text length.
    pub length: u16,
    /// When.
    pub created_at: i64,
}

/// A row of any table.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Row {
    /// `users`.
    User(UserRow),
    /// `profiles`.
    Profile(ProfileRow),
    /// `posts`.
    Post(PostRow),
    /// `follows`.
    Follow(FollowRow),
    /// `orders`.
    Order(OrderRow),
    /// `messages`.
    Message(MessageRow),
}

/// One change to one row, in the order the app's database would have logged it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    /// Which table.
    pub table: Table,
    /// Insert, update or delete.
    pub op: Op,
    /// Primary-key values, in [`Table::primary_key`] order.
    pub key: Vec<u64>,
    /// The row before (update, delete).
    pub before: Option<Row>,
    /// The row after (insert, update).
    pub after: Option<Row>,
    /// When, microseconds since 1970.
    pub ts: i64,
}

/// Public id of a 0-based index.
fn id(index: u32) -> u64 {
    u64::from(index) + 1
}

impl World {
    /// The `users` row of user `u`.
    pub fn user_row(&self, u: u32) -> Option<UserRow> {
        let rec = self.user(u)?;
        Some(UserRow {
            user_id: id(u),
            username: format!("user{}", id(u)),
            email: format!("user{}@example.com", id(u)),
            country: COUNTRIES[rec.country as usize % COUNTRIES.len()].code,
            signup_platform: PLATFORMS[rec.platform as usize % PLATFORMS.len()].name,
            created_at: self.micros(rec.signup),
        })
    }

    /// The `profiles` row of user `u` with editable fields `state`.
    pub fn profile_row(&self, u: u32, state: &ProfileState, updated_at: u32) -> Option<ProfileRow> {
        let rec = self.user(u)?;
        let country = &COUNTRIES[rec.country as usize % COUNTRIES.len()];
        let platform = &PLATFORMS[rec.platform as usize % PLATFORMS.len()];
        Some(ProfileRow {
            user_id: id(u),
            display_name: format!("User {}", id(u)),
            country: country.code,
            city: country.cities[state.city as usize % 3],
            age_band: AGE_BANDS[rec.age as usize % AGE_BANDS.len()],
            gender: GENDERS[rec.gender as usize % GENDERS.len()],
            locale: country.locale,
            platform: platform.name,
            device_model: platform.models[rec.model as usize % 3],
            app_version: APP_VERSIONS[state.app_version as usize % APP_VERSIONS.len()],
            bio_length: state.bio_len,
            updated_at: self.micros(updated_at),
        })
    }

    /// The `posts` row of post index `p`.
    pub fn post_row(&self, p: u32) -> Option<PostRow> {
        let rec = self.posts.get(p as usize)?;
        Some(PostRow {
            post_id: id(p),
            author_id: id(rec.author),
            kind: POST_KINDS[rec.kind as usize % POST_KINDS.len()],
            tags: rec.tags[..rec.ntags as usize]
                .iter()
                .map(|&t| TAGS[t as usize % TAGS.len()])
                .collect(),
            caption_length: rec.caption_len,
            created_at: self.micros(rec.at),
        })
    }

    /// The `follows` row of edge index `e` (into the (follower, followee)-sorted edges).
    pub fn follow_row(&self, e: u32) -> Option<FollowRow> {
        let rec = self.follows.get(e as usize)?;
        Some(FollowRow {
            follower_id: id(rec.follower),
            followee_id: id(rec.followee),
            created_at: self.micros(rec.at),
        })
    }

    /// The `orders` row of order index `o`, as of before (`refunded = false`) or after its
    /// refund.
    pub fn order_row(&self, o: u32, refunded: bool) -> Option<OrderRow> {
        let rec = self.orders.get(o as usize)?;
        let user = self.user(rec.user)?;
        let country = &COUNTRIES[user.country as usize % COUNTRIES.len()];
        let product = &PRODUCTS[rec.product as usize % PRODUCTS.len()];
        let refunded = refunded && rec.refunded != 0;
        Some(OrderRow {
            order_id: id(o),
            user_id: id(rec.user),
            product_id: product.sku,
            product_kind: product.kind,
            amount_minor: product.usd_cents * country.price_factor,
            currency: country.currency,
            status: if refunded { "refunded" } else { "completed" },
            created_at: self.micros(rec.at),
            updated_at: self.micros(if refunded { rec.refunded } else { rec.at }),
        })
    }

    /// The `messages` row of message index `m`.
    pub fn message_row(&self, m: u32) -> Option<MessageRow> {
        let rec = self.messages.get(m as usize)?;
        Some(MessageRow {
            message_id: id(m),
            sender_id: id(rec.from),
            recipient_id: id(rec.to),
            length: rec.len,
            created_at: self.micros(rec.at),
        })
    }

    /// Every row as it stands at the end of the window, computed directly from the world (not
    /// by replaying changes), table by table.
    pub fn final_rows(&self) -> Vec<(Table, Vec<u64>, Row)> {
        let mut out = Vec::new();
        let mut last_edit: Vec<Option<(ProfileState, u32)>> = vec![None; self.users.len()];
        for e in &self.edits {
            last_edit[e.user as usize] = Some((e.after, e.at));
        }
        for (u, rec) in self.users.iter().enumerate() {
            let u = u as u32;
            if let Some(r) = self.user_row(u) {
                out.push((Table::Users, vec![id(u)], Row::User(r)));
            }
            let (state, at) = last_edit[u as usize].unwrap_or((rec.profile, rec.signup));
            if let Some(r) = self.profile_row(u, &state, at) {
                out.push((Table::Profiles, vec![id(u)], Row::Profile(r)));
            }
        }
        for p in 0..self.posts.len() as u32 {
            if let Some(r) = self.post_row(p) {
                out.push((Table::Posts, vec![id(p)], Row::Post(r)));
            }
        }
        for (e, rec) in self.follows.iter().enumerate() {
            if rec.unfollowed == 0 {
                if let Some(r) = self.follow_row(e as u32) {
                    let key = vec![r.follower_id, r.followee_id];
                    out.push((Table::Follows, key, Row::Follow(r)));
                }
            }
        }
        for o in 0..self.orders.len() as u32 {
            if let Some(r) = self.order_row(o, true) {
                out.push((Table::Orders, vec![id(o)], Row::Order(r)));
            }
        }
        for m in 0..self.messages.len() as u32 {
            if let Some(r) = self.message_row(m) {
                out.push((Table::Messages, vec![id(m)], Row::Message(r)));
            }
        }
        out
    }

    /// Every change, in time order (ties: the order of [`Table::ALL`], users before their
    /// profiles). Lazy: holds one cursor per kind of change, not the changes.
    pub fn changes(&self) -> Changes<'_> {
        Changes {
            world: self,
            next: [0; STREAMS],
        }
    }
}

/// Number of change streams merged by [`Changes`].
const STREAMS: usize = 9;

/// Iterator over [`World::changes`].
pub struct Changes<'a> {
    world: &'a World,
    next: [usize; STREAMS],
}

impl Changes<'_> {
    /// Time (compact seconds) of the next change of `stream`.
    fn head(&self, stream: usize) -> Option<u32> {
        let w = self.world;
        let i = self.next[stream];
        match stream {
            0 | 1 => w.users.get(i).map(|u| u.signup),
            2 => w.edits.get(i).map(|e| e.at),
            3 => w.posts.get(i).map(|p| p.at),
            4 => w.follows_by_time.get(i).map(|&k| w.follows[k as usize].at),
            5 => w
                .unfollows_by_time
                .get(i)
                .map(|&k| w.follows[k as usize].unfollowed),
            6 => w.orders.get(i).map(|o| o.at),
            7 => w
                .refunds_by_time
                .get(i)
                .map(|&k| w.orders[k as usize].refunded),
            _ => w.messages.get(i).map(|m| m.at),
        }
    }

    fn make(&self, stream: usize, i: usize) -> Option<Change> {
        let w = self.world;
        let insert = |table, key, row, ts| Change {
            table,
            op: Op::Insert,
            key,
            before: None,
            after: Some(row),
            ts,
        };
        let iu = i as u32;
        Some(match stream {
            0 => {
                let r = w.user_row(iu)?;
                insert(
                    Table::Users,
                    vec![r.user_id],
                    Row::User(r.clone()),
                    r.created_at,
                )
            }
            1 => {
                let rec = w.users.get(i)?;
                let r = w.profile_row(iu, &rec.profile, rec.signup)?;
                insert(
                    Table::Profiles,
                    vec![r.user_id],
                    Row::Profile(r.clone()),
                    r.updated_at,
                )
            }
            2 => {
                let e = w.edits.get(i)?;
                let signup = w.users.get(e.user as usize)?.signup;
                let before = w.profile_row(e.user, &e.before, signup)?;
                let after = w.profile_row(e.user, &e.after, e.at)?;
                Change {
                    table: Table::Profiles,
                    op: Op::Update,
                    key: vec![after.user_id],
                    ts: after.updated_at,
                    before: Some(Row::Profile(before)),
                    after: Some(Row::Profile(after)),
                }
            }
            3 => {
                let r = w.post_row(iu)?;
                insert(
                    Table::Posts,
                    vec![r.post_id],
                    Row::Post(r.clone()),
                    r.created_at,
                )
            }
            4 => {
                let r = w.follow_row(*w.follows_by_time.get(i)?)?;
                let key = vec![r.follower_id, r.followee_id];
                insert(Table::Follows, key, Row::Follow(r.clone()), r.created_at)
            }
            5 => {
                let k = *w.unfollows_by_time.get(i)?;
                let r = w.follow_row(k)?;
                Change {
                    table: Table::Follows,
                    op: Op::Delete,
                    key: vec![r.follower_id, r.followee_id],
                    before: Some(Row::Follow(r)),
                    after: None,
                    ts: w.micros(w.follows[k as usize].unfollowed),
                }
            }
            6 => {
                let r = w.order_row(iu, false)?;
                insert(
                    Table::Orders,
                    vec![r.order_id],
                    Row::Order(r.clone()),
                    r.created_at,
                )
            }
            7 => {
                let k = *w.refunds_by_time.get(i)?;
                let before = w.order_row(k, false)?;
                let after = w.order_row(k, true)?;
                Change {
                    table: Table::Orders,
                    op: Op::Update,
                    key: vec![after.order_id],
                    ts: after.updated_at,
                    before: Some(Row::Order(before)),
                    after: Some(Row::Order(after)),
                }
            }
            _ => {
                let r = w.message_row(iu)?;
                insert(
                    Table::Messages,
                    vec![r.message_id],
                    Row::Message(r.clone()),
                    r.created_at,
                )
            }
        })
    }
}

impl Iterator for Changes<'_> {
    type Item = Change;

    fn next(&mut self) -> Option<Change> {
        loop {
            let (stream, _) = (0..STREAMS)
                .filter_map(|s| self.head(s).map(|t| (s, t)))
                .min_by_key(|&(s, t)| (t, s))?;
            let i = self.next[stream];
            self.next[stream] += 1;
            if let Some(change) = self.make(stream, i) {
                return Some(change);
            }
        }
    }
}
