//! The event generator: sessions opened in start order, merged by next event time through a
//! heap of open-session cursors. Memory is bounded by the users and one day's sessions and
//! business actions, never by the number of events.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

use super::{Call, DeviceContext, Event, Properties, Traits};
use crate::catalog::{
    AGE_BANDS, APP_VERSIONS, COUNTRIES, GENDERS, POST_KINDS, PRODUCTS, SHARE_CHANNELS, TAGS, WEB,
};
use crate::preferences::draw_reaction;
use crate::rng::{mix, Rng};
use crate::schedule::{sessions, Session, DAY_SECS};
use crate::world::{ProfileState, World};

/// Stream tag for per-session randomness.
const TAG_EVENTS: u64 = 0xE7E7;

/// A business action of the world that the app reports as an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Action {
    Edit(u32),
    Post(u32),
    Follow(u32),
    Unfollow(u32),
    Order(u32),
    Message(u32),
}

/// A session that has not started yet.
#[derive(Debug, Clone, Copy)]
struct Start {
    session: Session,
    user: u32,
    nth: u32,
}

/// An event waiting in a session, without its message id yet.
#[derive(Debug, Clone)]
struct Pending {
    ts: i64,
    call: Call,
    name: &'static str,
    properties: Properties,
}

/// An open session.
struct Cursor {
    user: u32,
    end_us: i64,
    rng: Rng,
    queue: VecDeque<Pending>,
    actions: Vec<(i64, Action)>,
    next_action: usize,
    next_step_us: i64,
    position: u32,
    context: DeviceContext,
    /// The profile as of this session (edits in it update it).
    profile: ProfileState,
    /// Posts created by the last step (a search hint).
    created: u32,
}

/// Time-ordered Segment events of a [`World`]; see [`World::events`].
pub struct EventStream<'a> {
    world: &'a World,
    prefix: String,
    next_day: u32,
    starts: Vec<Start>,
    next_start: usize,
    /// (user, time, action) of the loaded day, sorted.
    day_actions: Vec<(u32, u32, Action)>,
    heap: BinaryHeap<Reverse<(i64, u64, usize)>>,
    slots: Vec<Option<Cursor>>,
    free: Vec<usize>,
    session_seq: u64,
    counter: u64,
    buf: Vec<Session>,
    /// Latest profile state per user that edits produced so far (index = user).
    profiles: Vec<ProfileState>,
}

impl World {
    /// Every event of the window, in time order. Message ids are `sim-<seed>-<counter>`.
    pub fn events(&self) -> EventStream<'_> {
        self.events_with_prefix(&format!("sim-{}-", self.config.seed))
    }

    /// Like [`World::events`] with message ids `<prefix><counter>` (a load driver replaying the
    /// window again uses a new prefix so a deduplicating collector keeps the new copies).
    pub fn events_with_prefix(&self, prefix: &str) -> EventStream<'_> {
        EventStream {
            world: self,
            prefix: prefix.to_string(),
            next_day: 0,
            starts: Vec::new(),
            next_start: 0,
            day_actions: Vec::new(),
            heap: BinaryHeap::new(),
            slots: Vec::new(),
            free: Vec::new(),
            session_seq: 0,
            counter: 0,
            buf: Vec::new(),
            profiles: self.users.iter().map(|u| u.profile).collect(),
        }
    }
}

impl EventStream<'_> {
    /// Events produced so far.
    pub fn produced(&self) -> u64 {
        self.counter
    }

    fn load_day(&mut self, day: u32) {
        let w = self.world;
        self.starts.clear();
        self.next_start = 0;
        for (u, rec) in w.users.iter().enumerate() {
            sessions(w, u as u32, rec, day, &mut self.buf);
            for (nth, s) in self.buf.iter().enumerate() {
                self.starts.push(Start {
                    session: *s,
                    user: u as u32,
                    nth: nth as u32,
                });
            }
        }
        self.starts
            .sort_unstable_by_key(|s| (s.session.start, s.user, s.nth));

        let lo = w.day_start(day);
        let hi = lo + DAY_SECS;
        let inside = |t: u32| t >= lo && t < hi;
        let acts = &mut self.day_actions;
        acts.clear();
        acts.extend(
            w.edits
                .iter()
                .enumerate()
                .filter(|(_, e)| inside(e.at))
                .map(|(i, e)| (e.user, e.at, Action::Edit(i as u32))),
        );
        acts.extend(
            w.posts
                .iter()
                .enumerate()
                .filter(|(_, p)| inside(p.at))
                .map(|(i, p)| (p.author, p.at, Action::Post(i as u32))),
        );
        let first = w
            .follows_by_time
            .partition_point(|&k| w.follows[k as usize].at < lo);
        for &k in &w.follows_by_time[first..] {
            let f = &w.follows[k as usize];
            if f.at >= hi {
                break;
            }
            acts.push((f.follower, f.at, Action::Follow(k)));
        }
        for &k in &w.unfollows_by_time {
            let f = &w.follows[k as usize];
            if inside(f.unfollowed) {
                acts.push((f.follower, f.unfollowed, Action::Unfollow(k)));
            }
        }
        let first = w.orders.partition_point(|o| o.at < lo);
        for (i, o) in w.orders.iter().enumerate().skip(first) {
            if o.at >= hi {
                break;
            }
            acts.push((o.user, o.at, Action::Order(i as u32)));
        }
        let first = w.messages.partition_point(|m| m.at < lo);
        for (i, m) in w.messages.iter().enumerate().skip(first) {
            if m.at >= hi {
                break;
            }
            acts.push((m.from, m.at, Action::Message(i as u32)));
        }
        acts.sort_unstable();
    }

    fn open(&mut self, start: Start) {
        let w = self.world;
        let Some(rec) = w.user(start.user) else {
            return;
        };
        let day = (start.session.start - w.day_start(0)) / DAY_SECS;
        let mut rng = Rng::derive(
            w.config.seed,
            &[
                TAG_EVENTS,
                u64::from(start.user),
                u64::from(day),
                u64::from(start.nth),
            ],
        );
        let s = start.session;
        let key = |a: &(u32, u32, Action)| (a.0, a.1);
        let a = self
            .day_actions
            .partition_point(|x| key(x) < (start.user, s.start));
        let b = self
            .day_actions
            .partition_point(|x| key(x) <= (start.user, s.end));
        let actions = self.day_actions[a..b]
            .iter()
            .map(|&(_, t, act)| (w.micros(t), act))
            .collect();
        let start_us = w.micros(s.start);
        let profile = self.profiles[start.user as usize];
        let mut cursor = Cursor {
            user: start.user,
            end_us: w.micros(s.end) + 999_999,
            rng: rng.clone(),
            queue: VecDeque::new(),
            actions,
            next_action: 0,
            next_step_us: start_us + 2_000_000,
            position: 0,
            context: DeviceContext {
                platform: rec.platform,
                model: rec.model,
                os_version: rec.os_version,
                app_version: profile.app_version,
                country: rec.country,
            },
            profile,
            created: 0,
        };
        let session_id = format!(
            "{:016x}",
            mix(
                w.config.seed,
                &[start.user.into(), day.into(), start.nth.into()]
            )
        );
        cursor.push(
            start_us,
            Call::Track,
            "App Opened",
            Properties::AppOpened {
                session_id,
                from_background: rng.chance(0.6),
            },
        );
        if start.nth == 0 {
            let traits = traits(w, start.user, &profile);
            cursor.push(start_us + 200_000, Call::Identify, "", traits);
        }
        cursor.view(
            start_us + 500_000,
            "Home Feed",
            "/feed",
            "https://social.example/feed",
        );
        self.schedule(cursor);
    }

    fn schedule(&mut self, cursor: Cursor) {
        let Some(ts) = cursor.peek_ts() else { return };
        let slot = match self.free.pop() {
            Some(i) => {
                self.slots[i] = Some(cursor);
                i
            }
            None => {
                self.slots.push(Some(cursor));
                self.slots.len() - 1
            }
        };
        self.session_seq += 1;
        self.heap.push(Reverse((ts, self.session_seq, slot)));
    }
}

impl Iterator for EventStream<'_> {
    type Item = Event;

    fn next(&mut self) -> Option<Event> {
        loop {
            if self.next_start >= self.starts.len() && self.next_day < self.world.config.days {
                // Sessions never cross midnight, so the next day starts after every open one.
                if self.heap.is_empty() {
                    let day = self.next_day;
                    self.next_day += 1;
                    self.load_day(day);
                    continue;
                }
            }
            let top = self.heap.peek().map(|Reverse(k)| *k);
            if let Some(&start) = self.starts.get(self.next_start) {
                let start_us = self.world.micros(start.session.start);
                if top.is_none_or(|(ts, _, _)| start_us <= ts) {
                    self.next_start += 1;
                    self.open(start);
                    continue;
                }
            }
            let (_, _, slot) = top?;
            self.heap.pop();
            let mut cursor = self.slots.get_mut(slot)?.take()?;
            self.free.push(slot);
            let Some(p) = cursor.pop(self.world) else {
                self.schedule(cursor);
                continue;
            };
            if let Properties::Traits(_) = p.properties {
                self.profiles[cursor.user as usize] = cursor.profile;
            }
            let event = Event {
                ts: p.ts,
                message_id: format!("{}{:012}", self.prefix, self.counter),
                user_id: u64::from(cursor.user) + 1,
                anonymous_id: anonymous_id(self.world.config.seed, cursor.user),
                call: p.call,
                name: p.name,
                properties: p.properties,
                context: cursor.context,
            };
            self.counter += 1;
            self.schedule(cursor);
            return Some(event);
        }
    }
}

/// A UUID-shaped anonymous id, stable per (seed, user).
fn anonymous_id(seed: u64, user: u32) -> String {
    let a = mix(seed, &[0xA707, u64::from(user)]);
    let b = mix(seed, &[0xA708, u64::from(user)]);
    format!(
        "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        b >> 52,
        b & 0xffff_ffff_ffff
    )
}

fn traits(w: &World, user: u32, p: &ProfileState) -> Properties {
    let Some(rec) = w.user(user) else {
        return Properties::View { path: "", url: "" };
    };
    let country = &COUNTRIES[rec.country as usize % COUNTRIES.len()];
    let id = u64::from(user) + 1;
    Properties::Traits(Box::new(Traits {
        username: format!("user{id}"),
        email: format!("user{id}@example.com"),
        name: format!("User {id}"),
        country: country.code,
        city: country.cities[p.city as usize % 3],
        age_band: AGE_BANDS[rec.age as usize % AGE_BANDS.len()],
        gender: GENDERS[rec.gender as usize % GENDERS.len()],
        app_version: APP_VERSIONS[p.app_version as usize % APP_VERSIONS.len()],
        created_at: super::format_ts(w.micros(rec.signup)),
    }))
}

impl Cursor {
    fn push(&mut self, ts: i64, call: Call, name: &'static str, properties: Properties) {
        // Never past the session's end, never before the previous queued event.
        let floor = self.queue.back().map_or(i64::MIN, |p| p.ts);
        let ts = ts.min(self.end_us).max(floor);
        self.queue.push_back(Pending {
            ts,
            call,
            name,
            properties,
        });
    }

    fn view(&mut self, ts: i64, name: &'static str, path: &'static str, url: &'static str) {
        let call = if self.context.platform == WEB {
            Call::Page
        } else {
            Call::Screen
        };
        self.push(ts, call, name, Properties::View { path, url });
    }

    fn peek_ts(&self) -> Option<i64> {
        let queued = self.queue.front().map(|p| p.ts);
        let action = self.actions.get(self.next_action).map(|a| a.0);
        let step = (self.queue.is_empty() && self.next_step_us <= self.end_us)
            .then_some(self.next_step_us);
        [queued, action, step].into_iter().flatten().min()
    }

    fn pop(&mut self, w: &World) -> Option<Pending> {
        let action_ts = self.actions.get(self.next_action).map(|a| a.0);
        if self.queue.is_empty()
            && self.next_step_us <= self.end_us
            && action_ts.is_none_or(|t| t >= self.next_step_us)
        {
            self.step(w);
            if self.queue.is_empty() {
                // No post to show yet: nothing at this time; the caller reschedules.
                return None;
            }
        }
        let queued = self.queue.front().map(|p| p.ts);
        match (queued, action_ts) {
            (Some(q), Some(a)) if a < q => self.take_action(w),
            (Some(_), _) => self.queue.pop_front(),
            (None, Some(_)) => self.take_action(w),
            (None, None) => None,
        }
    }

    /// One browsing step: an impression from the feed mix ([`super::feed`]), and sometimes a
    /// click with dwell, like, comment, share, with chances from the user's hidden
    /// preferences ([`crate::preferences`]).
    fn step(&mut self, w: &World) {
        let t = self.next_step_us;
        let now_secs = ((t - w.epoch_micros) / 1_000_000) as u32;
        self.created = super::feed::created_by(w, now_secs, self.created);
        let shown = super::feed::pick(w, self.user, now_secs, self.created, &mut self.rng);
        let gap = 1_000_000 + self.rng.below(7_000_000) as i64;
        let Some((p, feed)) = shown else {
            self.next_step_us = t + gap;
            return;
        };
        let post_id = u64::from(p) + 1;
        let author_id = u64::from(w.posts[p as usize].author) + 1;
        self.position += 1;
        let position = self.position;
        self.push(
            t,
            Call::Track,
            "Feed Impression",
            Properties::FeedImpression {
                post_id,
                author_id,
                position,
                feed,
            },
        );
        let mut last = t;
        let outcome = w
            .appeal(self.user, p, now_secs)
            .and_then(|a| draw_reaction(&mut self.rng, &a, position));
        if let Some(o) = outcome {
            let click = t + o.click_delay_us;
            let dwell_us = o.dwell_ms as i64 * 1000;
            let channel = SHARE_CHANNELS[o.channel % SHARE_CHANNELS.len()];
            self.push(
                click,
                Call::Track,
                "Post Clicked",
                Properties::PostClicked {
                    post_id,
                    position,
                    feed,
                },
            );
            self.view(
                click + 1000,
                "Post Detail",
                "/post",
                "https://social.example/post",
            );
            if o.like {
                self.push(
                    click + dwell_us / 2,
                    Call::Track,
                    "Post Liked",
                    Properties::PostLiked { post_id, author_id },
                );
            }
            if o.comment {
                self.push(
                    click + dwell_us * 3 / 4,
                    Call::Track,
                    "Comment Posted",
                    Properties::CommentPosted {
                        post_id,
                        comment_id: o.comment_id,
                        length: o.comment_len,
                    },
                );
            }
            if o.share {
                self.push(
                    click + dwell_us * 7 / 8,
                    Call::Track,
                    "Post Shared",
                    Properties::PostShared { post_id, channel },
                );
            }
            self.push(
                click + dwell_us,
                Call::Track,
                "Dwell",
                Properties::Dwell {
                    post_id,
                    dwell_ms: o.dwell_ms,
                },
            );
            last = click + dwell_us;
        }
        self.next_step_us = last + gap;
    }

    fn take_action(&mut self, w: &World) -> Option<Pending> {
        let (ts, action) = *self.actions.get(self.next_action)?;
        self.next_action += 1;
        let track = |name, properties| Pending {
            ts,
            call: Call::Track,
            name,
            properties,
        };
        Some(match action {
            Action::Edit(i) => {
                let e = w.edits.get(i as usize)?;
                self.profile = e.after;
                self.context.app_version = e.after.app_version;
                Pending {
                    ts,
                    call: Call::Identify,
                    name: "",
                    properties: traits(w, self.user, &e.after),
                }
            }
            Action::Post(i) => {
                let p = w.posts.get(i as usize)?;
                let tags = p.tags[..p.ntags as usize]
                    .iter()
                    .map(|&t| TAGS[t as usize % TAGS.len()])
                    .collect();
                let kind = POST_KINDS[p.kind as usize % POST_KINDS.len()];
                track(
                    "Post Created",
                    Properties::PostCreated {
                        post_id: u64::from(i) + 1,
                        kind,
                        tags,
                    },
                )
            }
            Action::Follow(k) | Action::Unfollow(k) => {
                let f = w.follows.get(k as usize)?;
                let name = if matches!(action, Action::Follow(_)) {
                    "User Followed"
                } else {
                    "User Unfollowed"
                };
                track(
                    name,
                    Properties::Follow {
                        followee_id: u64::from(f.followee) + 1,
                    },
                )
            }
            Action::Order(i) => {
                let row = w.order_row(i, false)?;
                let product =
                    &PRODUCTS[w.orders.get(i as usize)?.product as usize % PRODUCTS.len()];
                let amount = row.amount_minor as f64 / 100.0;
                track(
                    "Order Completed",
                    Properties::OrderCompleted {
                        order_id: row.order_id,
                        product_id: product.sku,
                        product_kind: product.kind,
                        amount,
                        revenue: amount,
                        currency: row.currency,
                    },
                )
            }
            Action::Message(i) => {
                let m = w.messages.get(i as usize)?;
                track(
                    "Message Sent",
                    Properties::MessageSent {
                        message_id: u64::from(i) + 1,
                        recipient_id: u64::from(m.to) + 1,
                        length: m.len,
                    },
                )
            }
        })
    }
}
