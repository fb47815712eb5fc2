//! Bounded exponential backoff for catalog and commit retries.

use std::time::Duration;

/// 100 ms, 200 ms, 400 ms, … capped at 5 s, for at most `max_retries` waits.
#[derive(Debug)]
pub struct Backoff {
    attempt: u32,
    max_retries: u32,
}

impl Backoff {
    pub fn new(max_retries: u32) -> Self {
        Backoff {
            attempt: 0,
            max_retries,
        }
    }

    /// Attempts made so far (waits taken + 1).
    pub fn attempts(&self) -> u32 {
        self.attempt + 1
    }

    pub fn can_retry(&self) -> bool {
        self.attempt < self.max_retries
    }

    /// The next delay, without waiting.
    pub fn next_delay(&self) -> Duration {
        let ms = 100u64.saturating_mul(1u64 << self.attempt.min(16));
        Duration::from_millis(ms.min(5_000))
    }

    pub async fn wait(&mut self) {
        let delay = self.next_delay();
        self.attempt += 1;
        tokio::time::sleep(delay).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_cap() {
        let mut b = Backoff::new(3);
        assert_eq!(b.next_delay(), Duration::from_millis(100));
        b.attempt = 1;
        assert_eq!(b.next_delay(), Duration::from_millis(200));
        b.attempt = 10;
        assert_eq!(b.next_delay(), Duration::from_secs(5));
        assert!(!b.can_retry());
    }
}
