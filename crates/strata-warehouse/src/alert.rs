//! Alerts to a Slack-compatible webhook: one JSON POST `{"text": "…"}` per alert. Best effort:
//! a webhook that is down is logged, never fails a run.

use std::time::Duration;

#[derive(Clone, Debug)]
pub struct Alerter {
    url: Option<String>,
    client: reqwest::Client,
}

impl Alerter {
    /// `url` empty: alerts are only logged.
    pub fn new(url: &str) -> Alerter {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        Alerter {
            url: (!url.trim().is_empty()).then(|| url.trim().to_string()),
            client,
        }
    }

    pub async fn send(&self, text: &str) {
        tracing::warn!(alert = %text, "warehouse alert");
        let Some(url) = &self.url else { return };
        let body = serde_json::json!({ "text": text });
        for attempt in 1..=3u32 {
            match self.client.post(url).json(&body).send().await {
                Ok(r) if r.status().is_success() => return,
                Ok(r) => {
                    tracing::warn!(status = %r.status(), attempt, "alert webhook refused the alert")
                }
                Err(e) => tracing::warn!(error = %e, attempt, "alert webhook unreachable"),
            }
            tokio::time::sleep(Duration::from_secs(u64::from(attempt))).await;
        }
    }
}
