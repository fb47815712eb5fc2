//! The binary bus encoding of an [`EventView`] (ADR 0027): what the collector writes for every
//! accepted event unless `bus.record_format = "json"`, and what the lake sink reads back without
//! a parser — each string is a length and a slice of the record.
//!
//! ```text
//! byte 0      0xE1 (a JSON record starts with `{`, so one look tells the formats apart)
//! bytes 1..5  u32 LE: which optional fields follow, bit i = OPTIONAL[i]
//! 8 bytes     server_ts, i64 LE          8 bytes  event_ts, i64 LE
//! 8 bytes     client_ts, if present      8 bytes  sent_at, if present
//! strings     message_id, app, type, then each present optional string in OPTIONAL order,
//!             each as its byte length (unsigned LEB128) and its UTF-8 bytes
//! ```
//!
//! The layout is fixed by the first byte: a new field means a new first byte, and decoders keep
//! reading the old one. A record is read back only when it is exactly this shape: a length past
//! the end, bytes after the last field, invalid UTF-8 or an unknown bit is an error (and the
//! lake sink keeps such a record in `ods.ods_event_rejected` rather than guess).

use std::borrow::Cow;

use crate::event::{EventView, RecordError, OPTIONAL_STRINGS};

/// First byte of a binary event record.
pub(crate) const MAGIC: u8 = 0xE1;

/// The optional string fields, in bit and write order (the order of
/// [`EventView::optional_strings`]); the tests check both directions against it.
#[cfg(test)]
const OPTIONAL: [&str; OPTIONAL_STRINGS] = [
    "event",
    "user_id",
    "anonymous_id",
    "group_id",
    "previous_id",
    "ip",
    "country",
    "region",
    "city",
    "user_agent",
    "os",
    "os_version",
    "browser",
    "browser_version",
    "device",
    "app_version",
    "library_name",
    "library_version",
    "locale",
    "timezone",
    "page_url",
    "page_path",
    "referrer",
    "context",
    "properties",
    "traits",
];
const CLIENT_TS: u32 = 1 << OPTIONAL_STRINGS;
const SENT_AT: u32 = 1 << (OPTIONAL_STRINGS + 1);
const KNOWN_BITS: u32 = (SENT_AT << 1) - 1;

/// The record of one event.
pub(crate) fn encode(e: &EventView<'_>) -> Vec<u8> {
    let strings = e.optional_strings();
    // Every string the record holds, in write order.
    let texts = || {
        [&*e.message_id, &*e.app, &*e.kind]
            .into_iter()
            .chain(strings.iter().flatten().copied())
    };
    let ints = 2 + usize::from(e.client_ts.is_some()) + usize::from(e.sent_at.is_some());
    let size = 1 + 4 + 8 * ints + texts().map(|s| len_bytes(s.len()) + s.len()).sum::<usize>();
    // Exactly the record's size: `Bytes::from` then takes the buffer without a second
    // allocation (it adds one whenever capacity and length differ).
    let mut buf = Vec::with_capacity(size);
    let mut present = 0u32;
    for (i, s) in strings.iter().enumerate() {
        if s.is_some() {
            present |= 1 << i;
        }
    }
    if e.client_ts.is_some() {
        present |= CLIENT_TS;
    }
    if e.sent_at.is_some() {
        present |= SENT_AT;
    }
    buf.push(MAGIC);
    buf.extend_from_slice(&present.to_le_bytes());
    buf.extend_from_slice(&e.server_ts.to_le_bytes());
    buf.extend_from_slice(&e.event_ts.to_le_bytes());
    for ts in [e.client_ts, e.sent_at].into_iter().flatten() {
        buf.extend_from_slice(&ts.to_le_bytes());
    }
    for s in texts() {
        push_len(&mut buf, s.len());
        buf.extend_from_slice(s.as_bytes());
    }
    debug_assert_eq!(buf.len(), size);
    buf
}

/// Reads a record [`encode`] wrote; every string borrows from `bytes`.
pub(crate) fn decode(bytes: &[u8]) -> Result<EventView<'_>, RecordError> {
    let mut r = Reader { bytes, at: 0 };
    if r.take(1)? != [MAGIC] {
        return Err(RecordError("not a binary event record".into()));
    }
    let present = u32::from_le_bytes(r.array()?);
    if present & !KNOWN_BITS != 0 {
        return Err(RecordError(format!(
            "unknown fields in binary event record (bits {present:#x})"
        )));
    }
    let server_ts = i64::from_le_bytes(r.array()?);
    let event_ts = i64::from_le_bytes(r.array()?);
    let client_ts = r.opt_i64(present & CLIENT_TS != 0)?;
    let sent_at = r.opt_i64(present & SENT_AT != 0)?;
    let message_id = r.str()?;
    let app = r.str()?;
    let kind = r.str()?;
    let mut strings: [Option<&str>; OPTIONAL_STRINGS] = [None; OPTIONAL_STRINGS];
    for (i, slot) in strings.iter_mut().enumerate() {
        if present & (1 << i) != 0 {
            *slot = Some(r.str()?);
        }
    }
    if r.at != bytes.len() {
        return Err(RecordError(format!(
            "{} bytes after the last field of a binary event record",
            bytes.len() - r.at
        )));
    }
    let [event, user_id, anonymous_id, group_id, previous_id, ip, country, region, city, user_agent, os, os_version, browser, browser_version, device, app_version, library_name, library_version, locale, timezone, page_url, page_path, referrer, context, properties, traits] =
        strings.map(|s| s.map(Cow::Borrowed));
    Ok(EventView {
        message_id: Cow::Borrowed(message_id),
        app: Cow::Borrowed(app),
        kind: Cow::Borrowed(kind),
        event,
        user_id,
        anonymous_id,
        group_id,
        previous_id,
        client_ts,
        sent_at,
        server_ts,
        event_ts,
        ip,
        country,
        region,
        city,
        user_agent,
        os,
        os_version,
        browser,
        browser_version,
        device,
        app_version,
        library_name,
        library_version,
        locale,
        timezone,
        page_url,
        page_path,
        referrer,
        context,
        properties,
        traits,
    })
}

/// Bytes [`push_len`] writes for `n`.
fn len_bytes(n: usize) -> usize {
    (usize::BITS - (n | 1).leading_zeros()).div_ceil(7) as usize
}

/// `n` as unsigned LEB128: seven bits a byte, low first, high bit set on all but the last.
fn push_len(buf: &mut Vec<u8>, mut n: usize) {
    while n >= 0x80 {
        buf.push((n as u8) | 0x80);
        n >>= 7;
    }
    buf.push(n as u8);
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], RecordError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&end| end <= self.bytes.len());
        let Some(end) = end else {
            return Err(RecordError(format!(
                "binary event record cut short: {n} bytes wanted at byte {} of {}",
                self.at,
                self.bytes.len()
            )));
        };
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], RecordError> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn opt_i64(&mut self, present: bool) -> Result<Option<i64>, RecordError> {
        Ok(if present {
            Some(i64::from_le_bytes(self.array()?))
        } else {
            None
        })
    }

    fn len(&mut self) -> Result<usize, RecordError> {
        let mut n = 0usize;
        // A record is at most a few MiB: five groups of seven bits are plenty.
        for shift in (0..35).step_by(7) {
            let b = self.take(1)?[0];
            n |= usize::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(n);
            }
        }
        Err(RecordError(format!(
            "string length too long at byte {} of a binary event record",
            self.at
        )))
    }

    fn str(&mut self) -> Result<&'a str, RecordError> {
        let n = self.len()?;
        let at = self.at;
        std::str::from_utf8(self.take(n)?)
            .map_err(|e| RecordError(format!("string at byte {at} is not UTF-8: {e}")))
    }
}

#[cfg(test)]
#[path = "event_binary_tests.rs"]
mod tests;
