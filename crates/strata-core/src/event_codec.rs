//! The bus encoding of an [`Event`]: JSON, written by hand because it is the collector's
//! hottest step (one encode per accepted event), and read back by serde.
//!
//! - Strings are escaped only when they hold a byte that needs it (most ids and names don't).
//! - `context`, `properties` and `traits` hold JSON text. When that text is an object or an
//!   array that parses, it is written verbatim as a nested value; anything else is written as
//!   an escaped string. [`json_text`] reads either form back to exactly the text that was
//!   written, so old records (where these fields were always strings) still decode.
//! - `None` fields are left out; the struct's `#[serde(default)]` restores them.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserialize, Deserializer, Error as DeError, IgnoredAny, Visitor};
use serde_json::value::RawValue;

#[cfg(test)]
use crate::event::Event;
use crate::event::EventView;

/// Decodes a JSON-text field: a nested value comes back as its exact text, a string as its
/// content, `null` as None.
pub(crate) fn json_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let Some(raw) = Option::<Box<RawValue>>::deserialize(d)? else {
        return Ok(None);
    };
    if raw.get().starts_with('"') {
        return serde_json::from_str::<String>(raw.get())
            .map(Some)
            .map_err(D::Error::custom);
    }
    Ok(Some(String::from(Box::<str>::from(raw))))
}

/// [`json_text`] borrowing from the input: a nested value's text is a slice of it.
pub(crate) fn json_text_view<'de: 'a, 'a, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Cow<'a, str>>, D::Error> {
    let Some(raw) = Option::<&'de RawValue>::deserialize(d)? else {
        return Ok(None);
    };
    if raw.get().starts_with('"') {
        return serde_json::from_str::<Cow<'_, str>>(raw.get())
            .map(|s| Some(Cow::Owned(s.into_owned())))
            .map_err(D::Error::custom);
    }
    Ok(Some(Cow::Borrowed(raw.get())))
}

/// A string, borrowed from the input unless it had escapes.
pub(crate) fn cow_str<'de: 'a, 'a, D: Deserializer<'de>>(d: D) -> Result<Cow<'a, str>, D::Error> {
    d.deserialize_str(CowVisitor)
}

/// An optional [`cow_str`]; `null` is None.
pub(crate) fn opt_cow_str<'de: 'a, 'a, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Cow<'a, str>>, D::Error> {
    d.deserialize_option(OptCowVisitor)
}

struct CowVisitor;

impl<'de> Visitor<'de> for CowVisitor {
    type Value = Cow<'de, str>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_borrowed_str<E: DeError>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }
    fn visit_str<E: DeError>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }
    fn visit_string<E: DeError>(self, v: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v))
    }
}

struct OptCowVisitor;

impl<'de> Visitor<'de> for OptCowVisitor {
    type Value = Option<Cow<'de, str>>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string or null")
    }
    fn visit_none<E: DeError>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E: DeError>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(CowVisitor).map(Some)
    }
}

/// Whether the JSON text fields are known to parse (the collector's come straight from a
/// request serde_json has parsed) or must be checked before they are nested.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Text {
    Checked,
    KnownValid,
}

/// `{"k":"e","v":{…}}` for one event.
pub(crate) fn encode_event(e: &EventView<'_>, text: Text) -> Vec<u8> {
    let len = |v: &Option<Cow<'_, str>>| v.as_ref().map_or(0, |s| s.len());
    let hint = 160 + len(&e.context) + len(&e.properties) + len(&e.traits) + len(&e.user_agent);
    let mut w = Writer {
        buf: Vec::with_capacity(hint + 24 * 16),
        first: true,
        text,
    };
    w.buf.extend_from_slice(br#"{"k":"e","v":{"#);
    w.str("message_id", &e.message_id);
    w.str("app", &e.app);
    w.str("type", &e.kind);
    w.opt_str("event", &e.event);
    w.opt_str("user_id", &e.user_id);
    w.opt_str("anonymous_id", &e.anonymous_id);
    w.opt_str("group_id", &e.group_id);
    w.opt_str("previous_id", &e.previous_id);
    w.opt_int("client_ts", e.client_ts);
    w.opt_int("sent_at", e.sent_at);
    w.int("server_ts", e.server_ts);
    w.int("event_ts", e.event_ts);
    w.opt_str("ip", &e.ip);
    w.opt_str("country", &e.country);
    w.opt_str("region", &e.region);
    w.opt_str("city", &e.city);
    w.opt_str("user_agent", &e.user_agent);
    w.opt_str("os", &e.os);
    w.opt_str("os_version", &e.os_version);
    w.opt_str("browser", &e.browser);
    w.opt_str("browser_version", &e.browser_version);
    w.opt_str("device", &e.device);
    w.opt_str("app_version", &e.app_version);
    w.opt_str("library_name", &e.library_name);
    w.opt_str("library_version", &e.library_version);
    w.opt_str("locale", &e.locale);
    w.opt_str("timezone", &e.timezone);
    w.opt_str("page_url", &e.page_url);
    w.opt_str("page_path", &e.page_path);
    w.opt_str("referrer", &e.referrer);
    w.opt_json("context", &e.context);
    w.opt_json("properties", &e.properties);
    w.opt_json("traits", &e.traits);
    w.buf.extend_from_slice(b"}}");
    w.buf
}

struct Writer {
    buf: Vec<u8>,
    first: bool,
    text: Text,
}

impl Writer {
    fn key(&mut self, name: &str) {
        if !self.first {
            self.buf.push(b',');
        }
        self.first = false;
        self.buf.push(b'"');
        self.buf.extend_from_slice(name.as_bytes());
        self.buf.extend_from_slice(b"\":");
    }

    fn str(&mut self, name: &str, value: &str) {
        self.key(name);
        escaped(&mut self.buf, value);
    }

    fn opt_str(&mut self, name: &str, value: &Option<Cow<'_, str>>) {
        if let Some(v) = value {
            self.str(name, v);
        }
    }

    fn int(&mut self, name: &str, value: i64) {
        self.key(name);
        push_int(&mut self.buf, value);
    }

    fn opt_int(&mut self, name: &str, value: Option<i64>) {
        if let Some(v) = value {
            self.int(name, v);
        }
    }

    fn opt_json(&mut self, name: &str, value: &Option<Cow<'_, str>>) {
        let Some(v) = value else {
            return;
        };
        self.key(name);
        if nests_verbatim(v, self.text) {
            self.buf.extend_from_slice(v.as_bytes());
        } else {
            escaped(&mut self.buf, v);
        }
    }
}

/// Whether `text` can be written as a nested value and read back unchanged: an object or
/// array with no surrounding whitespace that parses as JSON (or is known to).
fn nests_verbatim(text: &str, check: Text) -> bool {
    let b = text.as_bytes();
    let bracketed = matches!(
        (b.first(), b.last()),
        (Some(b'{'), Some(b'}')) | (Some(b'['), Some(b']'))
    );
    bracketed && (check == Text::KnownValid || serde_json::from_str::<IgnoredAny>(text).is_ok())
}

/// Decimal digits of `v`.
fn push_int(buf: &mut Vec<u8>, v: i64) {
    let mut digits = [0u8; 20];
    let mut n = v.unsigned_abs();
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if v < 0 {
        buf.push(b'-');
    }
    buf.extend_from_slice(&digits[at..]);
}

/// Whether any byte of `s` must be escaped in a JSON string: a control character, `"` or
/// `\`. Eight bytes at a time (the usual bit trick: a zero byte of `x` sets the high bit of
/// `(x - 0x01…) & !x & 0x80…`).
fn needs_escape(s: &[u8]) -> bool {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let has_zero = |x: u64| x.wrapping_sub(LO) & !x & HI;
    let mut chunks = s.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        let x = u64::from_le_bytes(w);
        // The bytes below 0x20 are exactly those that `& 0xe0` turns into zero.
        let control = has_zero(x & 0xe0e0_e0e0_e0e0_e0e0);
        let quote = has_zero(x ^ (LO * u64::from(b'"')));
        let backslash = has_zero(x ^ (LO * u64::from(b'\\')));
        if control | quote | backslash != 0 {
            return true;
        }
    }
    chunks
        .remainder()
        .iter()
        .any(|&b| b < 0x20 || b == b'"' || b == b'\\')
}

/// `value` as a JSON string literal.
fn escaped(buf: &mut Vec<u8>, value: &str) {
    if needs_escape(value.as_bytes()) {
        // Writing into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *buf, value);
    } else {
        buf.push(b'"');
        buf.extend_from_slice(value.as_bytes());
        buf.push(b'"');
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::event::BusRecord;

    pub(crate) fn full() -> Event {
        let s = |v: &str| Some(v.to_string());
        Event {
            message_id: "m-1".into(),
            app: "ios".into(),
            kind: "track".into(),
            event: s("Post \"Liked\"\n"),
            user_id: s("u\\1"),
            anonymous_id: s("a1"),
            group_id: s("g1"),
            previous_id: s("p1"),
            client_ts: Some(-5),
            sent_at: Some(7),
            server_ts: 1_795_305_600_000_000,
            event_ts: i64::MIN,
            ip: s("81.2.69.160"),
            country: s("FR"),
            region: s("Île-de-France"),
            city: s("Paris"),
            user_agent: s("Mozilla/5.0 (X11) \u{1F600}"),
            os: s("Linux"),
            os_version: s("6"),
            browser: s("Chrome"),
            browser_version: s("120"),
            device: s("pc"),
            app_version: s("5.2.1"),
            library_name: s("analytics-ios"),
            library_version: s("4.1"),
            locale: s("fr-FR"),
            timezone: s("Europe/Paris"),
            page_url: s("https://x/?a=1&b=\"2\""),
            page_path: s("/"),
            referrer: s("https://y/"),
            context: s(r#"{"userAgent":"Mozilla \"x\"","app":{"version":"5.2.1"}}"#),
            properties: s(r#"[1, {"a" : "b\u0041"}, null]"#),
            traits: s(r#"{"plan":"pro"}"#),
        }
    }

    #[test]
    fn encodes_every_field_the_derived_serializer_does() {
        let e = full();
        let ours: serde_json::Value =
            serde_json::from_slice(&encode_event(&e.view(), Text::Checked)).unwrap();
        let derived = serde_json::to_value(BusRecord::Event(Box::new(e))).unwrap();
        let keys = |v: &serde_json::Value| {
            let mut k: Vec<String> = v["v"].as_object().unwrap().keys().cloned().collect();
            k.sort();
            k
        };
        // A field added to Event but not to the encoder fails here.
        assert_eq!(keys(&ours), keys(&derived));
        assert_eq!(ours["k"], "e");
        // Nested, not a string.
        assert!(ours["v"]["context"].is_object());
        assert!(ours["v"]["properties"].is_array());
    }

    #[test]
    fn round_trips_exactly() {
        let e = full();
        let back = BusRecord::decode(&encode_event(&e.view(), Text::Checked)).unwrap();
        assert_eq!(back, BusRecord::Event(Box::new(e)));
    }

    #[test]
    fn view_decodes_what_the_owned_decode_does_borrowing_unescaped_strings() {
        let e = full();
        let json = encode_event(&e.view(), Text::Checked);
        let crate::event::BusRecordView::Event(v) =
            crate::event::BusRecordView::decode(&json).unwrap()
        else {
            panic!("not an event");
        };
        assert_eq!(v, e.view());
        assert!(matches!(v.app, Cow::Borrowed(_)));
        assert!(matches!(v.context, Some(Cow::Borrowed(_))));
        // Escaped in the record, so unescaped into its own string.
        assert!(matches!(v.event, Some(Cow::Owned(_))));
        let old = br#"{"k":"e","v":{"message_id":"m","app":"a","type":"track","server_ts":1,"event_ts":1,"ip":null,"properties":"{\"a\":1}"}}"#;
        let crate::event::BusRecordView::Event(v) =
            crate::event::BusRecordView::decode(old).unwrap()
        else {
            panic!("not an event");
        };
        assert_eq!(v.properties.as_deref(), Some(r#"{"a":1}"#));
        assert_eq!(v.ip, None);
    }

    #[test]
    fn json_text_that_cannot_nest_round_trips_as_a_string() {
        for text in [
            r#""just a string""#,
            "42",
            " {\"padded\":true}",
            "{\"trailing\":1} ",
            "{not json}",
            "[1,2",
            "",
            "null",
        ] {
            let e = Event {
                properties: Some(text.to_string()),
                ..Default::default()
            };
            let json = encode_event(&e.view(), Text::Checked);
            let back = BusRecord::decode(&json).unwrap();
            assert_eq!(
                back,
                BusRecord::Event(Box::new(e)),
                "{text:?} via {}",
                String::from_utf8_lossy(&json)
            );
        }
    }

    #[test]
    fn reads_records_written_with_text_fields_as_strings() {
        let old = br#"{"k":"e","v":{"message_id":"m","app":"a","type":"track","server_ts":1,"event_ts":1,"ip":null,"context":"{\"a\":1}","properties":null}}"#;
        let BusRecord::Event(e) = BusRecord::decode(old).unwrap() else {
            panic!("not an event");
        };
        assert_eq!(e.context.as_deref(), Some(r#"{"a":1}"#));
        assert_eq!(e.properties, None);
        assert_eq!(e.ip, None);
    }

    #[test]
    fn escape_check_and_integers_agree_with_serde() {
        let mut samples: Vec<String> = vec![String::new(), "plain ascii text, long enough".into()];
        for special in ['"', '\\', '\n', '\u{1f}', '\u{7f}', 'é', '\u{1F600}'] {
            for at in 0..17 {
                let mut s: String = "abcdefghijklmnopq".chars().take(at).collect();
                s.push(special);
                s.push_str("xyz0123456789");
                samples.push(s);
            }
        }
        for s in &samples {
            let mut ours = Vec::new();
            escaped(&mut ours, s);
            assert_eq!(ours, serde_json::to_vec(s).unwrap(), "{s:?}");
        }
        for v in [0, 7, -1, 10, i64::MAX, i64::MIN, 1_795_305_600_000_000] {
            let mut ours = Vec::new();
            push_int(&mut ours, v);
            assert_eq!(String::from_utf8(ours).unwrap(), v.to_string());
        }
    }

    #[test]
    fn none_fields_are_left_out() {
        let json = encode_event(&Event::default().view(), Text::Checked);
        assert_eq!(
            String::from_utf8(json).unwrap(),
            r#"{"k":"e","v":{"message_id":"","app":"","type":"","server_ts":0,"event_ts":0}}"#
        );
    }
}
