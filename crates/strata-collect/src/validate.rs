//! Pure per-event work: check a raw Segment event against the rules of its type, correct the
//! client's clock skew, and flatten it into an [`EventView`] borrowing the request's text — or
//! explain why not ([`Reject`]).
//! No I/O here; IP, geo and user-agent enrichment live in `enrich.rs`.

use std::borrow::Cow;

use serde_json::value::RawValue;
use strata_core::time::parse_ts_micros;
use strata_core::EventView;

use crate::decode::{Context, RawEvent, Scalar};

/// Longest `event` / `name`, in characters.
pub const MAX_NAME_CHARS: usize = 200;
/// Longest userId / anonymousId / groupId / previousId / messageId, in characters.
pub const MAX_ID_CHARS: usize = 256;

/// The Segment call types.
pub const TYPES: [&str; 6] = ["track", "identify", "page", "screen", "group", "alias"];

/// Limits from `[collector]`, in the units the checks use.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_event_bytes: usize,
    pub max_age_micros: i64,
    pub max_future_micros: i64,
}

/// Why an event was refused. `kind` is a short stable label (metrics); `reason` is for humans.
#[derive(Debug, Clone, PartialEq)]
pub struct Reject {
    pub kind: &'static str,
    pub reason: String,
}

impl Reject {
    fn new(kind: &'static str, reason: impl Into<String>) -> Self {
        Self {
            kind,
            reason: reason.into(),
        }
    }
}

/// What a request supplies around each event.
#[derive(Debug, Clone, Copy)]
pub struct Envelope<'a> {
    /// The app whose write key sent the request.
    pub app: &'a str,
    /// Server clock at receipt, epoch microseconds.
    pub server_ts: i64,
    /// The type implied by a single-event endpoint (`/v1/track` → track).
    pub implied_type: Option<&'static str>,
    /// `sentAt` of the batch, used when the event has none.
    pub batch_sent_at: Option<&'a Scalar<'a>>,
    /// `context` of the batch, used when the event has none.
    pub batch_context: Option<&'a RawValue>,
}

/// Event time with Segment's skew correction: `server_ts - (sentAt - timestamp)` when both
/// are known; the client's timestamp as-is without `sentAt`; else the server time.
pub fn event_time(server_ts: i64, client_ts: Option<i64>, sent_at: Option<i64>) -> i64 {
    match (client_ts, sent_at) {
        (Some(ts), Some(sent)) => server_ts.saturating_sub(sent.saturating_sub(ts)),
        (Some(ts), None) => ts,
        (None, _) => server_ts,
    }
}

/// Checks an event name (`event` of track, `name` of page/screen).
pub fn check_name(field: &str, name: &str) -> Result<(), Reject> {
    if name.is_empty() {
        return Err(Reject::new("invalid_field", format!("`{field}` is empty")));
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(Reject::new(
            "invalid_field",
            format!("`{field}` is longer than {MAX_NAME_CHARS} characters"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(Reject::new(
            "invalid_field",
            format!("`{field}` contains control characters"),
        ));
    }
    Ok(())
}

/// An id field: string or number (numbers become strings), at most [`MAX_ID_CHARS`].
fn id<'p>(field: &str, value: Option<&'p Scalar<'_>>) -> Result<Option<Cow<'p, str>>, Reject> {
    let Some(value) = value else {
        return Ok(None);
    };
    if value.wrong_type() {
        return Err(Reject::new(
            "invalid_field",
            format!("`{field}` must be a string or a number"),
        ));
    }
    match value.text() {
        None => Ok(None),
        Some(t) if t.chars().count() > MAX_ID_CHARS => Err(Reject::new(
            "invalid_field",
            format!("`{field}` is longer than {MAX_ID_CHARS} characters"),
        )),
        Some(t) => Ok(Some(Cow::Borrowed(t))),
    }
}

/// A timestamp field: absent/null → None; unparseable → rejection.
fn timestamp(field: &str, value: Option<&Scalar<'_>>) -> Result<Option<i64>, Reject> {
    let Some(value) = value else {
        return Ok(None);
    };
    match value {
        Scalar::Null => Ok(None),
        Scalar::Str(s) => parse_ts_micros(s).map(Some).ok_or_else(|| {
            Reject::new(
                "invalid_timestamp",
                format!("`{field}` is not an ISO-8601 timestamp: {s:?}"),
            )
        }),
        _ => Err(Reject::new(
            "invalid_timestamp",
            format!("`{field}` must be an ISO-8601 timestamp string"),
        )),
    }
}

fn text(value: Option<Scalar<'_>>) -> Option<Cow<'_, str>> {
    value.and_then(Scalar::into_text)
}

fn missing(what: &str) -> Reject {
    Reject::new("missing_field", format!("missing field: {what}"))
}

/// Validates and flattens one event. `raw` is its JSON text as received. The event borrows its
/// strings from the request (`parsed` and `env`); only numbers given as ids, escaped strings and
/// a generated message id are its own.
pub fn build_event<'p>(
    raw: &str,
    parsed: &'p RawEvent<'p>,
    env: &Envelope<'p>,
    limits: &Limits,
) -> Result<EventView<'p>, Reject> {
    if raw.len() > limits.max_event_bytes {
        return Err(Reject::new(
            "too_large",
            format!(
                "event of {} bytes exceeds collector.max_event_bytes ({})",
                raw.len(),
                limits.max_event_bytes
            ),
        ));
    }
    let kind: &'static str = match env.implied_type {
        Some(t) => t,
        None => {
            let given = parsed.kind.as_ref().and_then(Scalar::text);
            match given {
                None => return Err(missing("type")),
                Some(t) => TYPES
                    .iter()
                    .find(|known| known.eq_ignore_ascii_case(t))
                    .copied()
                    .ok_or_else(|| {
                        Reject::new("invalid_field", format!("unknown event type {t:?}"))
                    })?,
            }
        }
    };

    let message_id = id("messageId", parsed.message_id.as_ref())?;
    let user_id = id("userId", parsed.user_id.as_ref())?;
    let anonymous_id = id("anonymousId", parsed.anonymous_id.as_ref())?;
    let group_id = id("groupId", parsed.group_id.as_ref())?;
    let previous_id = id("previousId", parsed.previous_id.as_ref())?;

    let name_field = match kind {
        "track" => Some(("event", parsed.event.as_ref())),
        "page" | "screen" => Some(("name", parsed.name.as_ref())),
        _ => None,
    };
    let mut event_name = None;
    if let Some((field, value)) = name_field {
        match value {
            Some(v) if v.wrong_type() || matches!(v, Scalar::Num(_)) => {
                return Err(Reject::new(
                    "invalid_field",
                    format!("`{field}` must be a string"),
                ));
            }
            Some(Scalar::Str(s)) => {
                check_name(field, s)?;
                event_name = Some(Cow::Borrowed(&**s));
            }
            _ if kind == "track" => return Err(missing("event")),
            _ => {}
        }
    }

    match kind {
        "track" | "identify" | "page" | "screen" if user_id.is_none() && anonymous_id.is_none() => {
            return Err(missing("userId or anonymousId"));
        }
        "group" if group_id.is_none() => return Err(missing("groupId")),
        "alias" if user_id.is_none() => return Err(missing("userId")),
        "alias" if previous_id.is_none() => return Err(missing("previousId")),
        _ => {}
    }

    let client_ts = match timestamp("timestamp", parsed.timestamp.as_ref())? {
        Some(ts) => Some(ts),
        None => timestamp("originalTimestamp", parsed.original_timestamp.as_ref())?,
    };
    let sent_at = match timestamp("sentAt", parsed.sent_at.as_ref())? {
        Some(ts) => Some(ts),
        None => timestamp("sentAt", env.batch_sent_at)?,
    };
    let event_ts = event_time(env.server_ts, client_ts, sent_at);
    if event_ts < env.server_ts.saturating_sub(limits.max_age_micros) {
        return Err(Reject::new(
            "too_old",
            "event time is older than collector.max_event_age",
        ));
    }
    if event_ts > env.server_ts.saturating_add(limits.max_future_micros) {
        return Err(Reject::new(
            "in_future",
            "event time is further in the future than collector.max_event_future",
        ));
    }

    let context_raw = parsed.context.or(env.batch_context);
    let context: Context<'_> = match context_raw {
        Some(raw) if raw.get() != "null" => serde_json::from_str(raw.get()).map_err(|e| {
            Reject::new("invalid_field", format!("`context` must be an object: {e}"))
        })?,
        _ => Context::default(),
    };
    let (app, library, page) = (context.app, context.library, context.page);

    let json_text = |raw: Option<&'p RawValue>| raw.map(RawValue::get).filter(|t| *t != "null");
    Ok(EventView {
        message_id: message_id.unwrap_or_else(|| Cow::Owned(uuid::Uuid::new_v4().to_string())),
        app: Cow::Borrowed(env.app),
        kind: Cow::Borrowed(kind),
        event: event_name,
        user_id,
        anonymous_id,
        group_id,
        previous_id,
        client_ts,
        sent_at,
        server_ts: env.server_ts,
        event_ts,
        user_agent: text(context.user_agent),
        app_version: text(app.version),
        library_name: text(library.name),
        library_version: text(library.version),
        locale: text(context.locale),
        timezone: text(context.timezone),
        page_url: text(page.url),
        page_path: text(page.path),
        referrer: text(page.referrer),
        context: json_text(context_raw).map(Cow::Borrowed),
        properties: json_text(parsed.properties).map(Cow::Borrowed),
        traits: json_text(parsed.traits).map(Cow::Borrowed),
        ..Default::default()
    })
}

/// Cuts `raw` to at most `max` bytes on a character boundary (for dead-letter payloads).
pub fn truncate(raw: &str, max: usize) -> &str {
    if raw.len() <= max {
        return raw;
    }
    let mut end = max;
    while end > 0 && !raw.is_char_boundary(end) {
        end -= 1;
    }
    &raw[..end]
}

#[cfg(test)]
#[path = "validate_tests.rs"]
mod tests;
