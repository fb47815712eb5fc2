//! One pull's HTTP requests: a rate limit over every request (retries included), retries with
//! exponential backoff on timeouts, connection errors, 429 and 5xx answers, honouring the
//! server's `Retry-After` (seconds or an HTTP date), and a bounded number of attempts.

use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};
use reqwest::{StatusCode, Url};
use serde_json::Value;
use tokio::time::Instant;

use crate::error::{Error, Result};

/// How failed requests are retried.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Tries per request, the first included.
    pub max_attempts: u32,
    pub backoff: Duration,
    pub max_backoff: Duration,
    /// The longest `Retry-After` honoured.
    pub max_retry_after: Duration,
}

impl RetryPolicy {
    /// The wait before attempt `attempt + 1` after `attempt` failed (1-based): the server's
    /// `Retry-After` when it gave one, else `backoff · 2^(attempt-1)` capped at `max_backoff`.
    pub fn wait(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        match retry_after {
            Some(d) => d,
            None => {
                let factor = 1u32 << attempt.saturating_sub(1).min(20);
                self.backoff.saturating_mul(factor).min(self.max_backoff)
            }
        }
    }
}

/// At most `per_second` request starts a second, evenly spaced.
#[derive(Debug)]
pub struct RateLimiter {
    interval: Option<Duration>,
    next: Option<Instant>,
}

impl RateLimiter {
    pub fn new(per_second: f64) -> RateLimiter {
        let interval = (per_second > 0.0 && per_second.is_finite())
            .then(|| Duration::from_secs_f64(1.0 / per_second));
        RateLimiter {
            interval,
            next: None,
        }
    }

    /// Waits until the next request may start.
    pub async fn acquire(&mut self) {
        let Some(interval) = self.interval else {
            return;
        };
        let now = Instant::now();
        let at = self.next.filter(|n| *n > now).unwrap_or(now);
        self.next = Some(at + interval);
        if at > now {
            tokio::time::sleep_until(at).await;
        }
    }
}

/// A server's `Retry-After`: delay-seconds, or an HTTP date (from `now`; a date in the past
/// is no wait). `None` when absent or unreadable.
pub fn retry_after(value: Option<&HeaderValue>, now: SystemTime) -> Option<Duration> {
    let text = value?.to_str().ok()?.trim();
    if let Ok(seconds) = text.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(text).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The `rel="next"` target of a `Link` header (RFC 8288), as written (maybe relative).
pub fn link_next(headers: &HeaderMap) -> Option<String> {
    for value in headers.get_all(reqwest::header::LINK) {
        let Ok(text) = value.to_str() else { continue };
        for link in split_links(text) {
            let Some((target, params)) = link.trim().split_once('>') else {
                continue;
            };
            let Some(target) = target.trim().strip_prefix('<') else {
                continue;
            };
            let is_next = params.split(';').any(|p| {
                let Some((k, v)) = p.split_once('=') else {
                    return false;
                };
                k.trim().eq_ignore_ascii_case("rel")
                    && v.trim()
                        .trim_matches('"')
                        .split_whitespace()
                        .any(|r| r.eq_ignore_ascii_case("next"))
            });
            if is_next {
                return Some(target.to_string());
            }
        }
    }
    None
}

/// Splits a Link header at the commas between links (not those inside `<…>` or quotes).
fn split_links(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut in_target, mut in_quotes, mut from) = (false, false, 0);
    for (i, c) in text.char_indices() {
        match c {
            '<' if !in_quotes => in_target = true,
            '>' if !in_quotes => in_target = false,
            '"' if !in_target => in_quotes = !in_quotes,
            ',' if !in_target && !in_quotes => {
                out.push(&text[from..i]);
                from = i + 1;
            }
            _ => {}
        }
    }
    out.push(&text[from..]);
    out
}

/// Counts for one window's requests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestStats {
    /// Requests sent, retries included.
    pub requests: u64,
    /// Of those, retries.
    pub retries: u64,
}

/// A page's answer: the JSON body and the headers.
#[derive(Debug)]
pub struct Page {
    pub body: Value,
    pub headers: HeaderMap,
}

/// Sends one pull's requests.
pub struct Fetcher {
    client: reqwest::Client,
    policy: RetryPolicy,
    limiter: RateLimiter,
    timeout: Duration,
    pull: String,
    pub stats: RequestStats,
}

/// Why one attempt failed and whether another may succeed.
enum Attempt {
    Retry {
        error: Error,
        retry_after: Option<Duration>,
    },
    Fail(Error),
}

impl Fetcher {
    /// `rate`: requests per second at most (0: no limit); `timeout`: per request.
    pub fn new(
        pull: &str,
        client: reqwest::Client,
        policy: RetryPolicy,
        rate: f64,
        timeout: Duration,
    ) -> Fetcher {
        Fetcher {
            client,
            policy,
            limiter: RateLimiter::new(rate),
            timeout,
            pull: pull.to_string(),
            stats: RequestStats::default(),
        }
    }

    /// GETs `url` and parses the JSON body, retrying what can be retried. `shown` is the URL
    /// as messages show it (environment values masked).
    pub async fn get_json(&mut self, url: &Url, shown: &str, headers: &HeaderMap) -> Result<Page> {
        let mut attempt = 1;
        loop {
            self.limiter.acquire().await;
            self.stats.requests += 1;
            let (error, retry_after) = match self.attempt(url, shown, headers).await {
                Ok(page) => return Ok(page),
                Err(Attempt::Fail(e)) => return Err(e),
                Err(Attempt::Retry { error, retry_after }) => (error, retry_after),
            };
            if attempt >= self.policy.max_attempts {
                return Err(Error::GaveUp {
                    attempts: attempt,
                    last: Box::new(error),
                });
            }
            if let Some(asked) = retry_after.filter(|d| *d > self.policy.max_retry_after) {
                return Err(Error::GaveUp {
                    attempts: attempt,
                    last: Box::new(Error::External(format!(
                        "{error}; the server asks to wait {}s, more than max_retry_after ({}s)",
                        asked.as_secs(),
                        self.policy.max_retry_after.as_secs()
                    ))),
                });
            }
            let wait = self.policy.wait(attempt, retry_after);
            let reason = error.reason();
            tracing::info!(pull = %self.pull, url = %shown, attempt, reason, wait_ms = wait.as_millis() as u64, error = %error, "request failed; retrying");
            metrics::counter!("strata_pulls_retries_total", "pull" => self.pull.clone(), "reason" => reason).increment(1);
            tokio::time::sleep(wait).await;
            self.stats.retries += 1;
            attempt += 1;
        }
    }

    async fn attempt(
        &self,
        url: &Url,
        shown: &str,
        headers: &HeaderMap,
    ) -> std::result::Result<Page, Attempt> {
        let response = self
            .client
            .get(url.clone())
            .headers(headers.clone())
            .timeout(self.timeout)
            .send()
            .await
            .map_err(|e| transport(e, shown))?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await.map_err(|e| transport(e, shown))?;
        metrics::counter!("strata_pulls_requests_total", "pull" => self.pull.clone(), "status" => status.as_u16().to_string()).increment(1);
        if status.is_success() {
            let body = serde_json::from_slice(&body).map_err(|e| {
                Attempt::Fail(Error::Response(format!(
                    "GET {shown}: the body is not JSON ({e}): {}",
                    snippet(&body)
                )))
            })?;
            return Ok(Page { body, headers });
        }
        let error = Error::Status {
            url: shown.to_string(),
            status: status.as_u16(),
            body: snippet(&body),
        };
        if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            Err(Attempt::Retry {
                error,
                retry_after: retry_after(headers.get(RETRY_AFTER), SystemTime::now()),
            })
        } else {
            Err(Attempt::Fail(error))
        }
    }
}

fn transport(e: reqwest::Error, shown: &str) -> Attempt {
    // The error's own text repeats the URL (with environment values): say it once, masked.
    let e = e.without_url();
    let what = if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        format!("could not connect: {}", full_text(&e))
    } else {
        full_text(&e)
    };
    let error = Error::Transport(format!("GET {shown}: {what}"));
    if e.is_builder() {
        Attempt::Fail(error)
    } else {
        Attempt::Retry {
            error,
            retry_after: None,
        }
    }
}

fn full_text(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The start of a body, for messages.
fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(300)]);
    let mut text = text.trim().replace('\n', " ");
    if body.len() > 300 {
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_in_seconds_and_as_a_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
        let h = |s: &str| HeaderValue::from_str(s).unwrap();
        assert_eq!(
            retry_after(Some(&h("120")), now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(retry_after(Some(&h(" 0 ")), now), Some(Duration::ZERO));
        assert_eq!(
            retry_after(Some(&h("Sun, 06 Nov 1994 08:50:07 GMT")), now),
            Some(Duration::from_secs(30))
        );
        // The two obsolete date formats HTTP still allows.
        assert_eq!(
            retry_after(Some(&h("Sunday, 06-Nov-94 08:49:47 GMT")), now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            retry_after(Some(&h("Sun Nov  6 08:49:57 1994")), now),
            Some(Duration::from_secs(20))
        );
        // A date already past: retry now.
        assert_eq!(
            retry_after(Some(&h("Sun, 06 Nov 1994 08:00:00 GMT")), now),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after(Some(&h("soon")), now), None);
        assert_eq!(retry_after(Some(&h("-5")), now), None);
        assert_eq!(retry_after(None, now), None);
    }

    #[test]
    fn backoff_doubles_to_its_cap_and_retry_after_wins() {
        let p = RetryPolicy {
            max_attempts: 10,
            backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            max_retry_after: Duration::from_secs(60),
        };
        let waits: Vec<u64> = (1..=6)
            .map(|a| p.wait(a, None).as_millis() as u64)
            .collect();
        assert_eq!(waits, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(
            p.wait(1, Some(Duration::from_secs(7))),
            Duration::from_secs(7)
        );
        assert_eq!(p.wait(64, None), Duration::from_secs(1));
    }

    #[test]
    fn link_header_next() {
        let mut h = HeaderMap::new();
        assert_eq!(link_next(&h), None);
        h.insert(
            reqwest::header::LINK,
            HeaderValue::from_static(
                "<https://api.example.com/items?page=1>; rel=\"prev\", <https://api.example.com/items?page=3&q=a,b>; rel=\"next\", <https://api.example.com/items?page=9>; rel=\"last\"",
            ),
        );
        assert_eq!(
            link_next(&h).as_deref(),
            Some("https://api.example.com/items?page=3&q=a,b")
        );
        let mut h = HeaderMap::new();
        h.insert(
            reqwest::header::LINK,
            HeaderValue::from_static("</items?after=x>; title=\"a, b\"; REL=\"last next\""),
        );
        assert_eq!(link_next(&h).as_deref(), Some("/items?after=x"));
        let mut h = HeaderMap::new();
        h.insert(
            reqwest::header::LINK,
            HeaderValue::from_static("<https://x/items?page=1>; rel=prev"),
        );
        assert_eq!(link_next(&h), None);
    }
}
