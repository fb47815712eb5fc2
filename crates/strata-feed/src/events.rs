//! Served feeds back into the lake: every feed becomes a `Feed Served` track event on the
//! bus's `events` topic, so the lake sink lands it in `ods.ods_event` like any client event.
//! Its properties carry the request id, the items with their positions, scores and sources,
//! the models and the experiment variant; a client that sends the `request_id` with its
//! clicks lets the warehouse join what was shown with what was clicked.

use std::borrow::Cow;
use std::sync::Arc;

use bytes::Bytes;
use serde_json::json;
use strata_bus::{Log, Record};
use strata_core::event::{encode_collected_event, EventView, RecordFormat, EVENTS_TOPIC};

use crate::feed::{FeedRequest, FeedResponse};

/// The event name of a served feed.
pub const FEED_SERVED: &str = "Feed Served";

/// Writes `Feed Served` events. Appends run in the background: a feed never waits for the
/// bus, and a failed append is logged and counted (`strata_feed_impressions_failed_total`).
#[derive(Clone)]
pub struct ImpressionLog {
    log: Arc<dyn Log>,
    app: String,
    format: RecordFormat,
}

impl std::fmt::Debug for ImpressionLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImpressionLog")
            .field("app", &self.app)
            .finish()
    }
}

impl ImpressionLog {
    pub fn new(log: Arc<dyn Log>, app: impl Into<String>, format: RecordFormat) -> Self {
        ImpressionLog {
            log,
            app: app.into(),
            format,
        }
    }

    /// The record of one served feed.
    pub fn record_of(&self, r: &FeedResponse, req: &FeedRequest, now: i64) -> Record {
        let properties = properties(r, req).to_string();
        let view = EventView {
            message_id: Cow::Borrowed(&r.request_id),
            app: Cow::Borrowed(&self.app),
            kind: Cow::Borrowed("track"),
            event: Some(Cow::Borrowed(FEED_SERVED)),
            user_id: Some(Cow::Borrowed(&r.user_id)),
            server_ts: now,
            event_ts: now,
            country: req.country.as_deref().map(Cow::Borrowed),
            app_version: req.app_version.as_deref().map(Cow::Borrowed),
            library_name: Some(Cow::Borrowed("strata-feed")),
            properties: Some(Cow::Owned(properties)),
            ..EventView::default()
        };
        Record {
            key: Bytes::copy_from_slice(view.partition_key().as_bytes()),
            value: Bytes::from(encode_collected_event(&view, self.format)),
            timestamp_ms: now / 1000,
        }
    }

    /// Appends the feed's event in the background.
    pub fn record(&self, r: &FeedResponse, req: &FeedRequest, now: i64) {
        let record = self.record_of(r, req, now);
        let log = self.log.clone();
        tokio::spawn(async move {
            match log.append(EVENTS_TOPIC, vec![record]).await {
                Ok(_) => metrics::counter!("strata_feed_impressions_total").increment(1),
                Err(e) => {
                    metrics::counter!("strata_feed_impressions_failed_total").increment(1);
                    tracing::warn!(error = %e, "feed: could not log a served feed");
                }
            }
        });
    }
}

/// The `Feed Served` properties.
pub fn properties(r: &FeedResponse, req: &FeedRequest) -> serde_json::Value {
    json!({
        "request_id": r.request_id,
        "surface": req.surface,
        "items": r.items.iter().map(|i| json!({
            "post_id": i.post_id,
            "author_id": i.author_id,
            "position": i.position,
            "score": i.score,
            "sources": i.sources,
        })).collect::<Vec<_>>(),
        "ranker": r.ranker,
        "recall": r.recall,
        "experiment": r.experiment.as_ref().map(|a| a.experiment.clone()),
        "variant": r.experiment.as_ref().map(|a| a.variant.clone()),
        "cold_start": r.cold_start,
        "degraded": r.degraded,
    })
}
