//! Five-field cron expressions (`minute hour day-of-month month day-of-week`, UTC), the usual
//! syntax: `*`, `5`, `1-5`, `*/15`, `10-50/20`, lists `1,15,30`; day-of-week 0–7 (0 and 7 are
//! Sunday). As in cron, when both day fields are restricted a day matching either runs.

use chrono::{DateTime, Datelike, Duration, TimeZone, Timelike, Utc};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    days_any: bool,
    weekdays_any: bool,
}

fn field(text: &str, min: u32, max: u32, what: &str) -> Result<(u64, bool), String> {
    let mut bits = 0u64;
    let any = text == "*";
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (
                r,
                s.parse::<u32>()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| format!("{what}: bad step in {part:?}"))?,
            ),
            None => (part, 1),
        };
        let (lo, hi) = if range == "*" {
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            let a = a
                .parse::<u32>()
                .map_err(|_| format!("{what}: {part:?} is not a range"))?;
            let b = b
                .parse::<u32>()
                .map_err(|_| format!("{what}: {part:?} is not a range"))?;
            (a, b)
        } else {
            let v = range
                .parse::<u32>()
                .map_err(|_| format!("{what}: {part:?} is not a number"))?;
            (v, if part.contains('/') { max } else { v })
        };
        if lo < min || hi > max || lo > hi {
            return Err(format!("{what}: {part:?} is outside {min}-{max}"));
        }
        let mut v = lo;
        while v <= hi {
            bits |= 1 << v;
            v += step;
        }
    }
    Ok((bits, any))
}

impl Cron {
    pub fn parse(text: &str) -> Result<Cron, String> {
        let parts: Vec<&str> = text.split_whitespace().collect();
        let [m, h, dom, mon, dow] = parts.as_slice() else {
            return Err(format!(
                "{text:?}: a cron expression has 5 fields (minute hour day-of-month month day-of-week)"
            ));
        };
        let (minutes, _) = field(m, 0, 59, "minute")?;
        let (hours, _) = field(h, 0, 23, "hour")?;
        let (days, days_any) = field(dom, 1, 31, "day of month")?;
        let (months, _) = field(mon, 1, 12, "month")?;
        let (mut weekdays, weekdays_any) = field(dow, 0, 7, "day of week")?;
        if weekdays & (1 << 7) != 0 {
            weekdays |= 1;
        }
        Ok(Cron {
            minutes,
            hours,
            days,
            months,
            weekdays,
            days_any,
            weekdays_any,
        })
    }

    fn day_matches(&self, t: &DateTime<Utc>) -> bool {
        let dom = self.days & (1 << t.day()) != 0;
        let dow = self.weekdays & (1 << t.weekday().num_days_from_sunday()) != 0;
        match (self.days_any, self.weekdays_any) {
            (true, true) => true,
            (true, false) => dow,
            (false, true) => dom,
            (false, false) => dom || dow,
        }
    }

    /// The first matching minute strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let start = after.with_second(0)?.with_nanosecond(0)? + Duration::minutes(1);
        let mut t = start;
        let limit = start + Duration::days(366 * 5);
        while t < limit {
            if self.months & (1 << t.month()) == 0 {
                let (y, m) = if t.month() == 12 {
                    (t.year() + 1, 1)
                } else {
                    (t.year(), t.month() + 1)
                };
                t = Utc.with_ymd_and_hms(y, m, 1, 0, 0, 0).single()?;
                continue;
            }
            if !self.day_matches(&t) {
                t = (t + Duration::days(1)).with_hour(0)?.with_minute(0)?;
                continue;
            }
            if self.hours & (1 << t.hour()) == 0 {
                t = (t + Duration::hours(1)).with_minute(0)?;
                continue;
            }
            if self.minutes & (1 << t.minute()) == 0 {
                t += Duration::minutes(1);
                continue;
            }
            return Some(t);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn next_runs() {
        let daily = Cron::parse("0 2 * * *").unwrap();
        assert_eq!(
            daily.next_after(at("2026-11-22T01:59:30Z")),
            Some(at("2026-11-22T02:00:00Z"))
        );
        assert_eq!(
            daily.next_after(at("2026-11-22T02:00:00Z")),
            Some(at("2026-11-23T02:00:00Z"))
        );
        let quarter = Cron::parse("*/15 9-10 * * 1-5").unwrap();
        // 2026-11-21 is a Saturday.
        assert_eq!(
            quarter.next_after(at("2026-11-21T12:00:00Z")),
            Some(at("2026-11-23T09:00:00Z"))
        );
        assert_eq!(
            quarter.next_after(at("2026-11-23T10:45:00Z")),
            Some(at("2026-11-24T09:00:00Z"))
        );
        let new_year = Cron::parse("30 0 1 1 *").unwrap();
        assert_eq!(
            new_year.next_after(at("2026-11-22T00:00:00Z")),
            Some(at("2027-01-01T00:30:00Z"))
        );
        // Both day fields restricted: either matches (the 1st, or any Sunday).
        let either = Cron::parse("0 0 1 * 0").unwrap();
        assert_eq!(
            either.next_after(at("2026-11-22T12:00:00Z")),
            Some(at("2026-11-29T00:00:00Z"))
        );
    }

    #[test]
    fn bad_expressions_say_why() {
        assert!(Cron::parse("0 2 * *").unwrap_err().contains("5 fields"));
        assert!(Cron::parse("61 2 * * *").unwrap_err().contains("minute"));
        assert!(Cron::parse("0 x * * *").unwrap_err().contains("hour"));
        assert!(Cron::parse("*/0 * * * *").unwrap_err().contains("step"));
    }
}
