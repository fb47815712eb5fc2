//! Time helpers. Timestamps are microseconds since the Unix epoch, UTC, everywhere in Strata.

use chrono::{DateTime, Utc};

/// Microseconds since the Unix epoch now, from the server clock.
pub fn now_micros() -> i64 {
    Utc::now().timestamp_micros()
}

/// Parses an ISO-8601 / RFC 3339 timestamp (what Segment SDKs send) into epoch microseconds.
/// Accepts a missing zone (taken as UTC) and a space instead of `T`.
pub fn parse_ts_micros(s: &str) -> Option<i64> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc).timestamp_micros());
    }
    let s2 = s.replace(' ', "T");
    if let Ok(t) = DateTime::parse_from_rfc3339(&s2) {
        return Some(t.with_timezone(&Utc).timestamp_micros());
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S"] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(&s2, fmt) {
            return Some(t.and_utc().timestamp_micros());
        }
    }
    None
}

/// Formats epoch microseconds as RFC 3339 with microseconds, UTC.
pub fn format_micros(us: i64) -> String {
    DateTime::<Utc>::from_timestamp_micros(us)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
        .unwrap_or_else(|| us.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_segment_timestamps() {
        let a = parse_ts_micros("2026-05-10T12:00:00.123Z").unwrap();
        let b = parse_ts_micros("2026-05-10T14:00:00.123+02:00").unwrap();
        let c = parse_ts_micros("2026-05-10 12:00:00.123").unwrap();
        assert_eq!(a, b);
        assert_eq!(a, c);
        assert_eq!(format_micros(a), "2026-05-10T12:00:00.123000Z");
        assert!(parse_ts_micros("yesterday").is_none());
    }
}
