//! Request bodies: reading with a size limit and a deadline, gzip with a decompressed-size limit
//! (zip-bomb safe), and the Segment JSON shapes parsed once into borrowed structs.

use std::borrow::Cow;
use std::fmt;
use std::io::Read;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderMap};
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::error::{Error, Result};

/// Reads the whole body, refusing more than `limit` bytes and giving up after `deadline`.
pub async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    deadline: Duration,
) -> Result<Bytes> {
    let too_large = |n: String| {
        Error::PayloadTooLarge(format!(
            "request body of {n} bytes exceeds the limit of {limit} bytes"
        ))
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(n) = declared {
        if n > limit as u64 {
            return Err(too_large(n.to_string()));
        }
    }
    let read = async {
        let mut body = body;
        let mut buf = BytesMut::with_capacity(declared.map_or(8 * 1024, |n| n as usize));
        while let Some(frame) = body.frame().await {
            let frame =
                frame.map_err(|e| Error::BadRequest(format!("reading request body: {e}")))?;
            if let Ok(data) = frame.into_data() {
                if buf.len() + data.len() > limit {
                    return Err(too_large(format!("more than {limit}")));
                }
                buf.extend_from_slice(&data);
            }
        }
        Ok(buf.freeze())
    };
    tokio::time::timeout(deadline, read)
        .await
        .map_err(|_| Error::Timeout("request body not received in time".into()))?
}

/// Undoes `Content-Encoding` (gzip or identity), never producing more than `limit` bytes.
pub fn decode_content(headers: &HeaderMap, wire: Bytes, limit: usize) -> Result<Bytes> {
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("?").trim().to_ascii_lowercase());
    match encoding.as_deref() {
        None | Some("") | Some("identity") => Ok(wire),
        Some("gzip") | Some("x-gzip") => gunzip(&wire, limit).map(Bytes::from),
        Some(other) => Err(Error::UnsupportedEncoding(format!(
            "unsupported Content-Encoding {other:?} (use gzip or none)"
        ))),
    }
}

/// Decompresses gzip (possibly several concatenated members), stopping past `limit` bytes.
pub fn gunzip(wire: &[u8], limit: usize) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity((wire.len() * 4).min(limit));
    let decoder = flate2::read::MultiGzDecoder::new(wire);
    decoder
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| Error::BadRequest(format!("invalid gzip body: {e}")))?;
    if out.len() > limit {
        return Err(Error::PayloadTooLarge(format!(
            "decompressed request body exceeds the limit of {limit} bytes"
        )));
    }
    Ok(out)
}

/// The body of `POST /v1/batch`.
#[derive(Debug, Deserialize)]
pub struct BatchBody<'a> {
    #[serde(borrow, default)]
    pub batch: Option<BatchItems<'a>>,
    #[serde(borrow, default, rename = "sentAt")]
    pub sent_at: Option<Scalar<'a>>,
    #[serde(borrow, default, rename = "writeKey")]
    pub write_key: Option<Scalar<'a>>,
    /// Batch-level context: applies to items that have none.
    #[serde(borrow, default)]
    pub context: Option<&'a RawValue>,
}

/// `batch`: an array of raw events, each kept as its JSON text.
#[derive(Debug, Default)]
pub struct BatchItems<'a>(pub Vec<&'a RawValue>);

impl<'de: 'a, 'a> Deserialize<'de> for BatchItems<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = BatchItems<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("`batch` to be an array of events")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
                while let Some(item) = seq.next_element::<&'de RawValue>()? {
                    items.push(item);
                }
                Ok(BatchItems(items))
            }
        }
        d.deserialize_seq(V)
    }
}

/// One Segment event as sent. Every field is lenient (any JSON type parses) so that a wrongly
/// typed field becomes a rejection of that event, not a failure of the whole batch.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawEvent<'a> {
    #[serde(borrow, rename = "type")]
    pub kind: Option<Scalar<'a>>,
    #[serde(borrow, rename = "messageId")]
    pub message_id: Option<Scalar<'a>>,
    #[serde(borrow)]
    pub event: Option<Scalar<'a>>,
    #[serde(borrow)]
    pub name: Option<Scalar<'a>>,
    #[serde(borrow, rename = "userId")]
    pub user_id: Option<Scalar<'a>>,
    #[serde(borrow, rename = "anonymousId")]
    pub anonymous_id: Option<Scalar<'a>>,
    #[serde(borrow, rename = "groupId")]
    pub group_id: Option<Scalar<'a>>,
    #[serde(borrow, rename = "previousId")]
    pub previous_id: Option<Scalar<'a>>,
    #[serde(borrow)]
    pub timestamp: Option<Scalar<'a>>,
    #[serde(borrow, rename = "originalTimestamp")]
    pub original_timestamp: Option<Scalar<'a>>,
    #[serde(borrow, rename = "sentAt")]
    pub sent_at: Option<Scalar<'a>>,
    /// Single-event endpoints carry the write key in the event itself.
    #[serde(borrow, rename = "writeKey")]
    pub write_key: Option<Scalar<'a>>,
    #[serde(borrow)]
    pub context: Option<&'a RawValue>,
    #[serde(borrow)]
    pub properties: Option<&'a RawValue>,
    #[serde(borrow)]
    pub traits: Option<&'a RawValue>,
}

/// The parts of `context` the collector flattens into columns.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Context<'a> {
    #[serde(borrow)]
    pub app: ContextPart<'a>,
    #[serde(borrow)]
    pub library: ContextPart<'a>,
    #[serde(borrow)]
    pub page: ContextPart<'a>,
    #[serde(borrow)]
    pub locale: Option<Scalar<'a>>,
    #[serde(borrow)]
    pub timezone: Option<Scalar<'a>>,
    #[serde(borrow, rename = "userAgent")]
    pub user_agent: Option<Scalar<'a>>,
}

/// `context.app`, `context.library`, `context.page`: whichever of these fields they hold.
/// Parsed in the same pass as the context; anything that is not an object yields nothing.
#[derive(Debug, Default)]
pub struct ContextPart<'a> {
    pub name: Option<Scalar<'a>>,
    pub version: Option<Scalar<'a>>,
    pub url: Option<Scalar<'a>>,
    pub path: Option<Scalar<'a>>,
    pub referrer: Option<Scalar<'a>>,
}

/// The fields of a [`ContextPart`] object; unknown ones are skipped.
#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "lowercase")]
enum PartField {
    Name,
    Version,
    Url,
    Path,
    Referrer,
    #[serde(other)]
    Other,
}

impl<'de: 'a, 'a> Deserialize<'de> for ContextPart<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ContextPart<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut part = ContextPart::default();
                while let Some(field) = map.next_key::<PartField>()? {
                    let slot = match field {
                        PartField::Name => &mut part.name,
                        PartField::Version => &mut part.version,
                        PartField::Url => &mut part.url,
                        PartField::Path => &mut part.path,
                        PartField::Referrer => &mut part.referrer,
                        PartField::Other => {
                            map.next_value::<IgnoredAny>()?;
                            continue;
                        }
                    };
                    *slot = Some(map.next_value::<Scalar<'de>>()?);
                }
                Ok(part)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(ContextPart::default())
            }
            fn visit_borrowed_str<E: de::Error>(self, _: &'de str) -> Result<Self::Value, E> {
                Ok(ContextPart::default())
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
                Ok(ContextPart::default())
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(ContextPart::default())
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Ok(ContextPart::default())
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(ContextPart::default())
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(ContextPart::default())
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(ContextPart::default())
            }
        }
        d.deserialize_any(V)
    }
}

/// Any JSON value, kept cheaply: strings borrowed when unescaped, numbers as their text,
/// objects and arrays skipped.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar<'a> {
    Null,
    Str(Cow<'a, str>),
    Num(String),
    Bool(bool),
    Compound,
}

impl<'a> Scalar<'a> {
    /// A string, or a number's text (Segment turns numeric ids into strings). Empty → None.
    pub fn text(&self) -> Option<&str> {
        match self {
            Scalar::Str(s) if !s.is_empty() => Some(s),
            Scalar::Num(n) => Some(n),
            _ => None,
        }
    }

    /// [`Scalar::text`], keeping a borrowed string borrowed.
    pub fn into_text(self) -> Option<Cow<'a, str>> {
        match self {
            Scalar::Str(s) if !s.is_empty() => Some(s),
            Scalar::Num(n) => Some(Cow::Owned(n)),
            _ => None,
        }
    }

    /// Whether the value is present and neither a string nor a number.
    pub fn wrong_type(&self) -> bool {
        matches!(self, Scalar::Bool(_) | Scalar::Compound)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Scalar<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Scalar<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Scalar::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Scalar::Str(Cow::Owned(v.to_string())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Scalar::Str(Cow::Owned(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Scalar::Num(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Scalar::Num(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(Scalar::Num(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(Scalar::Bool(v))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Scalar::Null)
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Scalar::Null)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Scalar::Compound)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Scalar::Compound)
            }
        }
        d.deserialize_any(V)
    }
}

/// Checks that the body is a JSON object before parsing (for a clear message).
fn ensure_object(buf: &[u8]) -> Result<()> {
    match buf.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => Ok(()),
        None => Err(Error::BadRequest("empty request body".into())),
        Some(_) => Err(Error::BadRequest(
            "request body must be a JSON object".into(),
        )),
    }
}

/// Parses the body of `/v1/batch`.
pub fn parse_batch(buf: &[u8]) -> Result<BatchBody<'_>> {
    ensure_object(buf)?;
    let body: BatchBody<'_> = serde_json::from_slice(buf)
        .map_err(|e| Error::BadRequest(format!("malformed JSON body: {e}")))?;
    if body.batch.is_none() {
        return Err(Error::BadRequest("missing field `batch`".into()));
    }
    Ok(body)
}

/// Parses the body of a single-event endpoint; returns the event and its JSON text.
pub fn parse_single(buf: &[u8]) -> Result<(RawEvent<'_>, &str)> {
    ensure_object(buf)?;
    let event: RawEvent<'_> = serde_json::from_slice(buf)
        .map_err(|e| Error::BadRequest(format!("malformed JSON body: {e}")))?;
    let text = std::str::from_utf8(buf)
        .map_err(|e| Error::BadRequest(format!("body is not UTF-8: {e}")))?;
    Ok((event, text.trim()))
}

#[cfg(test)]
#[path = "decode_props.rs"]
mod props;

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn gunzip_limits_output() {
        let data = vec![b'a'; 10_000];
        let z = gzip(&data);
        assert_eq!(gunzip(&z, 10_000).unwrap(), data);
        let e = gunzip(&z, 9_999).unwrap_err();
        assert!(matches!(e, Error::PayloadTooLarge(_)), "{e}");
        assert!(matches!(gunzip(b"nope", 100), Err(Error::BadRequest(_))));
    }

    #[test]
    fn batch_shapes() {
        let b = parse_batch(br#"{"batch":[{"type":"track"},{"a":1}],"sentAt":"x"}"#).unwrap();
        assert_eq!(b.batch.unwrap().0.len(), 2);
        assert_eq!(b.sent_at.unwrap().text(), Some("x"));
        let e = parse_batch(br#"{"batch":"x"}"#).unwrap_err().to_string();
        assert!(e.contains("`batch` to be an array"), "{e}");
        let e = parse_batch(br#"[1]"#).unwrap_err().to_string();
        assert!(e.contains("JSON object"), "{e}");
        let e = parse_batch(br#"{"batch":[1,}"#).unwrap_err().to_string();
        assert!(e.contains("line 1 column"), "{e}");
        let e = parse_batch(br#"{}"#).unwrap_err().to_string();
        assert!(e.contains("missing field `batch`"), "{e}");
    }

    #[test]
    fn context_parts_are_lenient() {
        let c: Context<'_> = serde_json::from_str(
            r#"{"app":{"version":5,"build":"1","name":{"x":1}},"library":"oops","page":[1],"locale":"fr"}"#,
        )
        .unwrap();
        assert_eq!(c.app.version.unwrap().text(), Some("5"));
        assert!(c.app.name.unwrap().wrong_type());
        assert!(c.library.name.is_none() && c.library.version.is_none());
        assert!(c.page.url.is_none());
        assert_eq!(c.locale.unwrap().text(), Some("fr"));
    }

    #[test]
    fn lenient_fields() {
        let raw = br#"{"userId":42,"anonymousId":{"x":[1]},"event":"a\"b","timestamp":null}"#;
        let (e, text) = parse_single(raw).unwrap();
        assert_eq!(e.user_id.unwrap().text(), Some("42"));
        assert!(e.anonymous_id.unwrap().wrong_type());
        assert_eq!(e.event.unwrap().text(), Some("a\"b"));
        assert_eq!(e.timestamp, None);
        assert_eq!(text.len(), raw.len());
    }
}
