//! Reading every hit of a query page by page, the way the full export and each increment do:
//! a point in time + `search_after` (sorted by the timestamp field, then `_shard_doc`), or
//! the scroll API (sorted by the timestamp field, then `_doc`) on servers without one.
//!
//! Both read one consistent view of the index for the whole query, so a document changed
//! while the pages are read is neither skipped nor read twice by that query; the next
//! increment picks its new version up.

use serde_json::{json, Value as Json};

use super::client::{EsClient, Hit};
use crate::error::Result;

/// How pages are read (the config's `paging` resolved against the server).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Pit,
    Scroll,
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mode::Pit => "point in time + search_after",
            Mode::Scroll => "scroll",
        })
    }
}

/// What one query reads.
#[derive(Debug, Clone)]
pub struct Query {
    pub index: String,
    /// The `query` clause (None: every document).
    pub filter: Option<Json>,
    pub timestamp_field: String,
    /// Hits per page.
    pub size: usize,
    /// `keep_alive` as the server reads it, e.g. `120s`.
    pub keep_alive: String,
}

impl Query {
    /// Documents stamped at or after `from_ms` (epoch milliseconds).
    pub fn since(&mut self, from_ms: i64) -> &mut Self {
        self.filter = Some(json!({
            "range": { self.timestamp_field.as_str(): { "gte": from_ms, "format": "epoch_millis" } }
        }));
        self
    }

    /// Documents that have the timestamp field at all.
    pub fn stamped(&mut self) -> &mut Self {
        self.filter = Some(json!({ "exists": { "field": self.timestamp_field.as_str() } }));
        self
    }

    fn body(&self, tiebreak: &str) -> Json {
        let mut body = json!({
            "size": self.size,
            "sort": [
                { self.timestamp_field.as_str(): { "order": "asc", "missing": "_first", "unmapped_type": "date" } },
                { tiebreak: "asc" }
            ],
            "version": true,
            "seq_no_primary_term": true,
        });
        if let Some(obj) = body.as_object_mut() {
            if let Some(q) = &self.filter {
                obj.insert("query".to_string(), q.clone());
            }
            // Counting every hit is wasted work, but a scroll refuses to skip it.
            if tiebreak != "_doc" {
                obj.insert("track_total_hits".to_string(), Json::Bool(false));
            }
        }
        body
    }
}

/// An open query: the next page follows the last.
pub struct Pager {
    mode: Mode,
    query: Query,
    /// The point in time (its id changes as the server answers) or scroll id.
    handle: Option<String>,
    /// The last hit's sort values (point in time).
    after: Option<Vec<Json>>,
    started: bool,
    done: bool,
}

impl Pager {
    /// Opens the query. With [`Mode::Pit`] a point in time is opened; `Ok(None)` when the
    /// server has no point-in-time API (the caller may fall back to [`Mode::Scroll`]).
    pub async fn open(client: &EsClient, mode: Mode, query: Query) -> Result<Option<Pager>> {
        let handle = match mode {
            Mode::Pit => match client.open_pit(&query.index, &query.keep_alive).await? {
                Some(id) => Some(id),
                None => return Ok(None),
            },
            Mode::Scroll => None,
        };
        Ok(Some(Pager {
            mode,
            query,
            handle,
            after: None,
            started: false,
            done: false,
        }))
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The next page (empty: the query has been read to its end).
    pub async fn next(&mut self, client: &EsClient) -> Result<Vec<Hit>> {
        if self.done {
            return Ok(Vec::new());
        }
        let page = match (self.mode, &self.handle) {
            (Mode::Pit, Some(pit)) => {
                let mut body = self.query.body("_shard_doc");
                if let Some(obj) = body.as_object_mut() {
                    obj.insert(
                        "pit".to_string(),
                        json!({ "id": pit, "keep_alive": self.query.keep_alive }),
                    );
                    if let Some(after) = &self.after {
                        obj.insert("search_after".to_string(), Json::Array(after.clone()));
                    }
                }
                client.search(None, &body, None).await?
            }
            (Mode::Scroll, Some(id)) if self.started => {
                client.scroll(id, &self.query.keep_alive).await?
            }
            _ => {
                let body = self.query.body("_doc");
                client
                    .search(Some(&self.query.index), &body, Some(&self.query.keep_alive))
                    .await?
            }
        };
        self.started = true;
        match self.mode {
            Mode::Pit => {
                if let Some(id) = page.pit_id {
                    self.handle = Some(id);
                }
                self.after = page.hits.last().map(|h| h.sort.clone());
            }
            Mode::Scroll => {
                if let Some(id) = page.scroll_id {
                    self.handle = Some(id);
                }
            }
        }
        if page.hits.len() < self.query.size {
            self.done = true;
        }
        Ok(page.hits)
    }

    /// Whether the last page has been read.
    pub fn done(&self) -> bool {
        self.done
    }

    /// Releases the point in time or scroll on the server (best effort).
    pub async fn close(mut self, client: &EsClient) {
        if let Some(h) = self.handle.take() {
            match self.mode {
                Mode::Pit => client.close_pit(&h).await,
                Mode::Scroll => client.clear_scroll(&h).await,
            }
        }
    }
}

/// `120s` for a duration (whole seconds, at least 1).
pub fn keep_alive_text(d: std::time::Duration) -> String {
    format!("{}s", d.as_secs().max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_sort_by_the_timestamp_then_a_tiebreaker() {
        let mut q = Query {
            index: "p".into(),
            filter: None,
            timestamp_field: "updated_at".into(),
            size: 500,
            keep_alive: "60s".into(),
        };
        let all = q.body("_shard_doc");
        assert!(all.get("query").is_none());
        assert_eq!(all["sort"][1], json!({"_shard_doc": "asc"}));
        assert_eq!(all["sort"][0]["updated_at"]["missing"], "_first");
        assert_eq!(all["seq_no_primary_term"], true);
        let since = q.since(1_000).body("_doc");
        assert_eq!(since["query"]["range"]["updated_at"]["gte"], 1_000);
        let stamped = q.stamped().body("_doc");
        assert_eq!(stamped["query"]["exists"]["field"], "updated_at");
        assert_eq!(keep_alive_text(std::time::Duration::from_millis(10)), "1s");
    }
}
