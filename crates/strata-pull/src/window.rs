//! Windows: the time ranges a pull fetches, one partition each. The cron schedule's
//! consecutive firings bound them: with `0 * * * *` every window is an hour, `[10:00, 11:00)`,
//! and it is due at its end (plus the pull's `delay`). A backfill range is split into the
//! schedule's whole windows.

use std::time::Duration;

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use strata_core::cron::Cron;

/// `[start, end)`, UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Window {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl Window {
    /// The window's start as the template's `{start}` shows it: RFC 3339, seconds, `Z`.
    pub fn start_text(&self) -> String {
        self.start.to_rfc3339_opts(SecondsFormat::Secs, true)
    }

    pub fn end_text(&self) -> String {
        self.end.to_rfc3339_opts(SecondsFormat::Secs, true)
    }

    /// The date of the window's start (`{ds}`).
    pub fn ds(&self) -> String {
        self.start.date_naive().format("%Y-%m-%d").to_string()
    }

    /// Two RFC 3339 times (tests and tools).
    pub fn parse(start: &str, end: &str) -> Result<Window, String> {
        Ok(Window {
            start: parse_time(start)?,
            end: parse_time(end)?,
        })
    }
}

impl std::fmt::Display for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{}, {})", self.start_text(), self.end_text())
    }
}

/// A time as a user writes it: RFC 3339 (`2026-12-06T10:00:00Z`, any offset), or a date
/// (`2026-12-06`, midnight UTC), or `2026-12-06T10:00` / `2026-12-06 10:00:00` (UTC).
pub fn parse_time(text: &str) -> Result<DateTime<Utc>, String> {
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(d) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        if let Some(t) = d.and_hms_opt(0, 0, 0) {
            return Ok(t.and_utc());
        }
    }
    for format in [
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(text, format) {
            return Ok(t.and_utc());
        }
    }
    Err(format!(
        "{text:?} is not a time: write RFC 3339 (2026-12-06T10:00:00Z) or a date (2026-12-06, midnight UTC)"
    ))
}

/// The most windows one command or one scheduler pass splits a range into.
pub const MAX_WINDOWS: usize = 10_000;

/// A pull's cron schedule and delay, as windows.
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: Cron,
    delay: chrono::Duration,
}

impl Schedule {
    pub fn new(cron: &str, delay: Duration) -> Result<Schedule, String> {
        Ok(Schedule {
            cron: Cron::parse(cron)?,
            delay: chrono::Duration::from_std(delay).map_err(|e| format!("delay: {e}"))?,
        })
    }

    /// The first firing at or after `t`.
    pub fn boundary_at_or_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron.next_after(t - chrono::Duration::seconds(1))
    }

    /// The first firing strictly after `t`.
    pub fn boundary_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron.next_after(t)
    }

    /// The last firing at or before `t` (searching back up to five years).
    pub fn boundary_at_or_before(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        for hours in [1, 24, 8 * 24, 32 * 24, 367 * 24, 5 * 366 * 24] {
            let Some(mut b) = self.boundary_at_or_after(t - chrono::Duration::hours(hours)) else {
                continue;
            };
            if b > t {
                continue;
            }
            while let Some(n) = self.cron.next_after(b).filter(|n| *n <= t) {
                b = n;
            }
            return Some(b);
        }
        None
    }

    /// The window that starts at `start` (a firing).
    pub fn window_from(&self, start: DateTime<Utc>) -> Option<Window> {
        self.cron.next_after(start).map(|end| Window { start, end })
    }

    /// The window that contains `t` (`start <= t < end`).
    pub fn window_containing(&self, t: DateTime<Utc>) -> Option<Window> {
        let start = self.boundary_at_or_before(t)?;
        self.window_from(start)
    }

    /// When `window` may be pulled: its end plus the delay.
    pub fn due_at(&self, window: &Window) -> DateTime<Utc> {
        window
            .end
            .checked_add_signed(self.delay)
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    }

    /// The latest window due at `now`.
    pub fn last_due(&self, now: DateTime<Utc>) -> Option<Window> {
        let end = self.boundary_at_or_before(now.checked_sub_signed(self.delay)?)?;
        let start = self.boundary_at_or_before(end - chrono::Duration::seconds(1))?;
        Some(Window { start, end })
    }

    /// The whole windows inside `[from, to)`, in order; an error when there are more than
    /// [`MAX_WINDOWS`].
    pub fn windows_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<Window>, String> {
        let mut windows = Vec::new();
        let Some(mut start) = self.boundary_at_or_after(from) else {
            return Ok(windows);
        };
        while let Some(w) = self.window_from(start).filter(|w| w.end <= to) {
            if windows.len() == MAX_WINDOWS {
                return Err(format!(
                    "more than {MAX_WINDOWS} windows between {} and {}: split the range",
                    from.to_rfc3339_opts(SecondsFormat::Secs, true),
                    to.to_rfc3339_opts(SecondsFormat::Secs, true)
                ));
            }
            windows.push(w);
            start = w.end;
        }
        Ok(windows)
    }

    /// The windows due at `now` from the one starting at the first firing at or after
    /// `from`, at most `limit` of them.
    pub fn due_from(&self, from: DateTime<Utc>, now: DateTime<Utc>, limit: usize) -> Vec<Window> {
        let mut windows = Vec::new();
        let Some(mut start) = self.boundary_at_or_after(from) else {
            return windows;
        };
        while windows.len() < limit {
            match self.window_from(start) {
                Some(w) if self.due_at(&w) <= now => {
                    windows.push(w);
                    start = w.end;
                }
                _ => break,
            }
        }
        windows
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        parse_time(s).unwrap()
    }

    #[test]
    fn times_parse_in_the_usual_shapes() {
        assert_eq!(at("2026-12-06"), at("2026-12-06T00:00:00Z"));
        assert_eq!(at("2026-12-06T10:30"), at("2026-12-06T10:30:00Z"));
        assert_eq!(at("2026-12-06 10:30:00"), at("2026-12-06T10:30:00Z"));
        assert_eq!(at("2026-12-06T12:30:00+02:00"), at("2026-12-06T10:30:00Z"));
        assert!(parse_time("yesterday").unwrap_err().contains("RFC 3339"));
    }

    #[test]
    fn hourly_windows() {
        let s = Schedule::new("0 * * * *", Duration::from_secs(300)).unwrap();
        let last = s.last_due(at("2026-12-06T10:04:00Z")).unwrap();
        assert_eq!(
            last,
            Window::parse("2026-12-06T08:00:00Z", "2026-12-06T09:00:00Z").unwrap()
        );
        let last = s.last_due(at("2026-12-06T10:05:00Z")).unwrap();
        assert_eq!(last.start, at("2026-12-06T09:00:00Z"));
        assert_eq!(s.due_at(&last), at("2026-12-06T10:05:00Z"));
        assert_eq!(
            s.window_containing(at("2026-12-06T10:59:59Z")).unwrap(),
            Window::parse("2026-12-06T10:00:00Z", "2026-12-06T11:00:00Z").unwrap()
        );
        // A range splits into its whole windows; a partial one at either end is left out.
        let ws = s
            .windows_between(at("2026-12-06T07:30:00Z"), at("2026-12-06T10:30:00Z"))
            .unwrap();
        assert_eq!(
            ws.iter().map(|w| w.start_text()).collect::<Vec<_>>(),
            ["2026-12-06T08:00:00Z", "2026-12-06T09:00:00Z"]
        );
        let due = s.due_from(at("2026-12-06T07:00:00Z"), at("2026-12-06T10:05:00Z"), 100);
        assert_eq!(due.len(), 3);
        assert_eq!(due[2].end, at("2026-12-06T10:00:00Z"));
        assert_eq!(
            s.due_from(at("2026-12-06T07:00:00Z"), at("2026-12-06T10:05:00Z"), 2)
                .len(),
            2
        );
    }

    #[test]
    fn daily_and_irregular_windows() {
        let daily = Schedule::new("0 0 * * *", Duration::ZERO).unwrap();
        let w = daily.last_due(at("2026-12-07T00:00:00Z")).unwrap();
        assert_eq!(w.ds(), "2026-12-06");
        assert_eq!(w.end, at("2026-12-07T00:00:00Z"));
        // Weekdays at 9 and 17: windows of 8 h, 16 h, and 64 h over a weekend.
        let s = Schedule::new("0 9,17 * * 1-5", Duration::ZERO).unwrap();
        // 2026-12-07 is a Monday.
        let w = s.window_containing(at("2026-12-07T08:00:00Z")).unwrap();
        assert_eq!(
            w,
            Window::parse("2026-12-04T17:00:00Z", "2026-12-07T09:00:00Z").unwrap()
        );
        let ws = s
            .windows_between(at("2026-12-07T09:00:00Z"), at("2026-12-08T09:00:00Z"))
            .unwrap();
        assert_eq!(ws.len(), 2);
        assert_eq!(ws[1].start, at("2026-12-07T17:00:00Z"));
    }

    #[test]
    fn too_many_windows_is_an_error() {
        let s = Schedule::new("* * * * *", Duration::ZERO).unwrap();
        let err = s
            .windows_between(at("2026-01-01"), at("2026-03-01"))
            .unwrap_err();
        assert!(err.contains("more than 10000 windows"), "{err}");
    }
}
