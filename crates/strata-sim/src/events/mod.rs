//! Segment events: what the simulated apps send. [`Event`] serializes to the exact JSON a
//! Segment SDK would put in a `/v1/batch` body; [`EventStream`] produces them in time order.
//!
//! Event time: each event carries its simulated time as `timestamp` and **no `sentAt`**. The
//! Strata collector (like Segment) computes `event_ts = server_ts - (sentAt - timestamp)` when
//! `sentAt` is present, which would move every event to "now"; without `sentAt` it keeps
//! `timestamp` as-is (`strata-collect/src/validate.rs`, `event_time`). So the simulated days
//! land as separate days in the lake — as long as they are within the collector's
//! `max_event_age` and not in the future (see [`crate::WorldConfig::ending_today`]).

mod feed;
mod stream;

use serde::ser::{Serialize, SerializeMap, Serializer};

pub use stream::EventStream;

use crate::catalog::{Platform, COUNTRIES, PLATFORMS, WEB};

/// Segment call type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    /// `track`: a named action with properties.
    Track,
    /// `identify`: who the user is (traits).
    Identify,
    /// `screen`: a mobile screen view.
    Screen,
    /// `page`: a web page view.
    Page,
}

impl Call {
    /// The `type` field.
    pub fn as_str(self) -> &'static str {
        match self {
            Call::Track => "track",
            Call::Identify => "identify",
            Call::Screen => "screen",
            Call::Page => "page",
        }
    }
}

/// Properties of an event (or traits of an identify), one variant per event of the
/// catalogue. Ids are the business-row ids of [`crate::rows`].
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(untagged)]
pub enum Properties {
    /// `App Opened`.
    AppOpened {
        /// Session id, unique per user session.
        session_id: String,
        /// Resumed from background rather than a cold start.
        from_background: bool,
    },
    /// `Feed Impression`: a post shown in a feed.
    FeedImpression {
        /// Post shown.
        post_id: u64,
        /// Its author.
        author_id: u64,
        /// 1-based position in this session's feed.
        position: u32,
        /// `home`, `following` or `explore`.
        feed: &'static str,
    },
    /// `Post Clicked`.
    PostClicked {
        /// Post opened.
        post_id: u64,
        /// Its position in the feed.
        position: u32,
        /// Feed it was in.
        feed: &'static str,
    },
    /// `Dwell`: time spent on an opened post.
    Dwell {
        /// Post.
        post_id: u64,
        /// Milliseconds.
        dwell_ms: u64,
    },
    /// `Post Liked`.
    PostLiked {
        /// Post.
        post_id: u64,
        /// Its author.
        author_id: u64,
    },
    /// `Post Shared`.
    PostShared {
        /// Post.
        post_id: u64,
        /// Where it was shared to.
        channel: &'static str,
    },
    /// `Comment Posted`.
    CommentPosted {
        /// Post.
        post_id: u64,
        /// Comment id (not a business row in this model).
        comment_id: u64,
        /// Text length.
        length: u32,
    },
    /// `Post Created`.
    PostCreated {
        /// New post (a `posts` row).
        post_id: u64,
        /// `photo`, `video`, `text`.
        kind: &'static str,
        /// Tags.
        tags: Vec<&'static str>,
    },
    /// `User Followed` / `User Unfollowed`.
    Follow {
        /// The account (un)followed.
        followee_id: u64,
    },
    /// `Order Completed` (Segment e-commerce spec names).
    OrderCompleted {
        /// The `orders` row.
        order_id: u64,
        /// Product sku.
        product_id: &'static str,
        /// `gift`, `coins`, `subscription`.
        product_kind: &'static str,
        /// Price in major units of `currency`.
        amount: f64,
        /// Same as `amount` (what Segment destinations read).
        revenue: f64,
        /// ISO currency code.
        currency: &'static str,
    },
    /// `Message Sent`.
    MessageSent {
        /// The `messages` row.
        message_id: u64,
        /// Recipient (a mutual follow).
        recipient_id: u64,
        /// Text length.
        length: u16,
    },
    /// Screen/page view properties.
    View {
        /// Path, e.g. `/feed`.
        path: &'static str,
        /// Full URL (web) or app deep link.
        url: &'static str,
    },
    /// Traits of an `identify` call.
    Traits(Box<Traits>),
}

/// Traits sent with `identify`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Traits {
    /// Username.
    pub username: String,
    /// Email.
    pub email: String,
    /// Display name.
    pub name: String,
    /// ISO country code.
    pub country: &'static str,
    /// City.
    pub city: &'static str,
    /// Age band.
    pub age_band: &'static str,
    /// Gender.
    pub gender: &'static str,
    /// Installed app version.
    pub app_version: &'static str,
    /// Signup time (RFC 3339).
    #[serde(rename = "createdAt")]
    pub created_at: String,
}

/// One simulated Segment event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Simulated time, microseconds since 1970 (sent as `timestamp`).
    pub ts: i64,
    /// `messageId`: `<prefix><counter>`, deterministic for a seed.
    pub message_id: String,
    /// `userId` (the business `user_id`).
    pub user_id: u64,
    /// `anonymousId`: stable per user and seed.
    pub anonymous_id: String,
    /// Call type.
    pub call: Call,
    /// `event` of a track, `name` of a screen/page; empty for identify.
    pub name: &'static str,
    /// `properties`, or `traits` for identify.
    pub properties: Properties,
    /// Device and app, for `context`.
    pub context: DeviceContext,
}

/// What `context` says about the sending device. Indexes into [`crate::catalog`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceContext {
    /// Index into [`PLATFORMS`].
    pub platform: u8,
    /// Index into the platform's models.
    pub model: u8,
    /// Index into the platform's OS versions.
    pub os_version: u8,
    /// Index into [`crate::catalog::APP_VERSIONS`].
    pub app_version: u8,
    /// Index into [`COUNTRIES`] (locale).
    pub country: u8,
}

/// Name of the app in `context.app.name`.
pub const APP_NAME: &str = "Strata Social";
/// `context.library.name`.
pub const LIBRARY_NAME: &str = "strata-sim";

impl Serialize for Event {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("type", self.call.as_str())?;
        match self.call {
            Call::Track => m.serialize_entry("event", self.name)?,
            Call::Screen | Call::Page => m.serialize_entry("name", self.name)?,
            Call::Identify => {}
        }
        m.serialize_entry("messageId", &self.message_id)?;
        m.serialize_entry("userId", &self.user_id.to_string())?;
        m.serialize_entry("anonymousId", &self.anonymous_id)?;
        m.serialize_entry("timestamp", &format_ts(self.ts))?;
        m.serialize_entry("context", &ContextJson(self))?;
        let key = if self.call == Call::Identify {
            "traits"
        } else {
            "properties"
        };
        m.serialize_entry(key, &self.properties)?;
        m.end()
    }
}

/// RFC 3339 with microseconds, UTC (the collector keeps them).
pub fn format_ts(micros: i64) -> String {
    chrono::DateTime::from_timestamp_micros(micros)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
        .unwrap_or_default()
}

struct ContextJson<'a>(&'a Event);

#[derive(serde::Serialize)]
struct Named<'a> {
    name: &'a str,
    version: &'a str,
}

#[derive(serde::Serialize)]
struct Device<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    manufacturer: &'a str,
    model: &'a str,
}

impl Serialize for ContextJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let c = self.0.context;
        let platform: &Platform = &PLATFORMS[c.platform as usize % PLATFORMS.len()];
        let country = &COUNTRIES[c.country as usize % COUNTRIES.len()];
        let mut m = s.serialize_map(None)?;
        m.serialize_entry(
            "app",
            &Named {
                name: APP_NAME,
                version: crate::catalog::APP_VERSIONS
                    [c.app_version as usize % crate::catalog::APP_VERSIONS.len()],
            },
        )?;
        m.serialize_entry(
            "library",
            &Named {
                name: LIBRARY_NAME,
                version: env!("CARGO_PKG_VERSION"),
            },
        )?;
        if c.platform != WEB {
            m.serialize_entry(
                "device",
                &Device {
                    kind: platform.name,
                    manufacturer: platform.manufacturer,
                    model: platform.models[c.model as usize % 3],
                },
            )?;
        }
        m.serialize_entry(
            "os",
            &Named {
                name: platform.os,
                version: platform.os_versions[c.os_version as usize % 3],
            },
        )?;
        m.serialize_entry("locale", country.locale)?;
        m.serialize_entry("timezone", "UTC")?;
        m.serialize_entry("userAgent", platform.user_agent)?;
        if let (Call::Page, Properties::View { path, url }) = (self.0.call, &self.0.properties) {
            m.serialize_entry("page", &PageCtx { path, url })?;
        }
        m.end()
    }
}

#[derive(serde::Serialize)]
struct PageCtx<'a> {
    path: &'a str,
    url: &'a str,
}
