//! What the stream consumers read of an event, whether it came off the bus
//! ([`strata_core::EventView`]) or out of the lake (a backfill row): its time, the columns a
//! view may name, and its JSON objects, parsed once and only when a field inside is asked for.

use std::borrow::Cow;
use std::cell::OnceCell;

use strata_core::EventView;
use strata_features::stream::{FieldRef, JsonRoot};

/// One event as the stream consumers see it.
#[derive(Debug, Default)]
pub struct StreamEvent<'a> {
    /// Event time, µs since the epoch.
    pub event_ts: i64,
    /// When the collector received it (µs; what risk rules count by: a client cannot forge
    /// it). A backfill row from the lake has the lake's `server_ts`.
    pub server_ts: i64,
    pub kind: Cow<'a, str>,
    pub event: Option<Cow<'a, str>>,
    pub user_id: Option<Cow<'a, str>>,
    pub anonymous_id: Option<Cow<'a, str>>,
    pub message_id: Option<Cow<'a, str>>,
    pub ip: Option<Cow<'a, str>>,
    pub country: Option<Cow<'a, str>>,
    pub device: Option<Cow<'a, str>>,
    pub os: Option<Cow<'a, str>>,
    pub app: Option<Cow<'a, str>>,
    pub app_version: Option<Cow<'a, str>>,
    pub user_agent: Option<Cow<'a, str>>,
    pub properties: Option<Cow<'a, str>>,
    pub context: Option<Cow<'a, str>>,
    pub traits: Option<Cow<'a, str>>,
    /// `properties`, `context`, `traits` parsed on first use.
    pub parsed: [OnceCell<Option<serde_json::Value>>; 3],
}

/// A field's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar<'e> {
    Text(&'e str),
    Number(f64),
    Bool(bool),
}

impl Scalar<'_> {
    /// The value as text (numbers without a trailing `.0` when whole).
    pub fn to_text(&self) -> String {
        match self {
            Scalar::Text(s) => (*s).to_string(),
            Scalar::Number(n) if n.fract() == 0.0 && n.abs() < 9.0e15 => format!("{}", *n as i64),
            Scalar::Number(n) => n.to_string(),
            Scalar::Bool(b) => b.to_string(),
        }
    }

    pub fn as_number(&self) -> Option<f64> {
        match self {
            Scalar::Number(n) => Some(*n),
            Scalar::Text(s) => s.trim().parse().ok(),
            Scalar::Bool(b) => Some(f64::from(u8::from(*b))),
        }
    }
}

/// A `where` condition's value, parsed from its JSON text once.
#[derive(Debug, Clone, PartialEq)]
pub enum Expected {
    Text(String),
    Number(f64),
    Bool(bool),
}

impl Expected {
    pub fn parse(json: &str) -> Expected {
        match serde_json::from_str::<serde_json::Value>(json) {
            Ok(serde_json::Value::String(s)) => Expected::Text(s),
            Ok(serde_json::Value::Number(n)) => Expected::Number(n.as_f64().unwrap_or(f64::NAN)),
            Ok(serde_json::Value::Bool(b)) => Expected::Bool(b),
            _ => Expected::Text(json.to_string()),
        }
    }

    pub fn matches(&self, v: &Scalar<'_>) -> bool {
        match (self, v) {
            (Expected::Text(a), Scalar::Text(b)) => a == b,
            (Expected::Number(a), v) => v.as_number() == Some(*a),
            (Expected::Bool(a), Scalar::Bool(b)) => a == b,
            (Expected::Text(a), v) => *a == v.to_text(),
            _ => false,
        }
    }
}

impl<'a> StreamEvent<'a> {
    pub fn from_view(e: EventView<'a>) -> StreamEvent<'a> {
        StreamEvent {
            event_ts: e.event_ts,
            server_ts: e.server_ts,
            kind: e.kind,
            event: e.event,
            user_id: e.user_id,
            anonymous_id: e.anonymous_id,
            message_id: Some(e.message_id),
            ip: e.ip,
            country: e.country,
            device: e.device,
            os: e.os,
            app: Some(e.app),
            app_version: e.app_version,
            user_agent: e.user_agent,
            properties: e.properties,
            context: e.context,
            traits: e.traits,
            parsed: Default::default(),
        }
    }

    /// The event's name as `events = [...]` matches it: `event` for track, page and screen
    /// calls, else the call type (`identify`, `group`, `alias`).
    pub fn name(&self) -> &str {
        self.event.as_deref().unwrap_or(&self.kind)
    }

    fn json(&self, root: JsonRoot) -> Option<&serde_json::Value> {
        let (i, text) = match root {
            JsonRoot::Properties => (0, &self.properties),
            JsonRoot::Context => (1, &self.context),
            JsonRoot::Traits => (2, &self.traits),
        };
        self.parsed[i]
            .get_or_init(|| text.as_deref().and_then(|t| serde_json::from_str(t).ok()))
            .as_ref()
    }

    /// The field's value; `None` when absent, null, or an object or array.
    pub fn get(&self, f: &FieldRef) -> Option<Scalar<'_>> {
        fn col<'e>(c: &'e Option<Cow<'_, str>>) -> Option<Scalar<'e>> {
            c.as_deref().map(Scalar::Text)
        }
        match f {
            FieldRef::UserId => col(&self.user_id),
            FieldRef::AnonymousId => col(&self.anonymous_id),
            FieldRef::MessageId => col(&self.message_id),
            FieldRef::Event => col(&self.event),
            FieldRef::Type => Some(Scalar::Text(&self.kind)),
            FieldRef::Ip => col(&self.ip),
            FieldRef::Country => col(&self.country),
            FieldRef::Device => col(&self.device),
            FieldRef::Os => col(&self.os),
            FieldRef::App => col(&self.app),
            FieldRef::AppVersion => col(&self.app_version),
            FieldRef::UserAgent => col(&self.user_agent),
            FieldRef::Json(root, path) => {
                let mut v = self.json(*root)?;
                for key in path {
                    v = v.get(key)?;
                }
                match v {
                    serde_json::Value::String(s) => Some(Scalar::Text(s)),
                    serde_json::Value::Number(n) => n.as_f64().map(Scalar::Number),
                    serde_json::Value::Bool(b) => Some(Scalar::Bool(*b)),
                    _ => None,
                }
            }
        }
    }
}

/// A 64-bit hash with well-mixed bits (FNV-1a, then a SplitMix64 finaliser), stable across
/// versions: distinct-count sketches are stored.
pub fn hash_bytes(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_read_columns_and_nested_properties() {
        let e = StreamEvent {
            event_ts: 1,
            kind: "track".into(),
            event: Some("Post Clicked".into()),
            user_id: Some("42".into()),
            properties: Some(r#"{"post_id": 7, "ctx": {"surface": "feed"}, "ok": true}"#.into()),
            ..Default::default()
        };
        let f = |s: &str| FieldRef::parse(s).unwrap();
        assert_eq!(e.get(&f("user_id")), Some(Scalar::Text("42")));
        assert_eq!(e.get(&f("properties.post_id")).unwrap().to_text(), "7");
        assert_eq!(
            e.get(&f("properties.ctx.surface")),
            Some(Scalar::Text("feed"))
        );
        assert_eq!(e.get(&f("properties.ctx")), None);
        assert_eq!(e.get(&f("properties.missing")), None);
        assert_eq!(e.get(&f("anonymous_id")), None);
        assert!(Expected::parse("\"feed\"").matches(&e.get(&f("properties.ctx.surface")).unwrap()));
        assert!(Expected::parse("7").matches(&e.get(&f("properties.post_id")).unwrap()));
        assert!(Expected::parse("true").matches(&e.get(&f("properties.ok")).unwrap()));
        assert!(!Expected::parse("8").matches(&e.get(&f("properties.post_id")).unwrap()));
        assert_eq!(e.name(), "Post Clicked");
    }
}
