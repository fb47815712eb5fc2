//! The Redis backend (`[online] kind = "redis"`): one Redis string per entry, so a lookup of
//! any number of entities is one `MGET` (atomic on the server, one round trip).
//!
//! Key layout (`P` = `online.prefix`, `V` = the view):
//! - `P:V:m`: the view's metadata (JSON, `meta.rs`);
//! - `P:V:e:<entity key bytes>`: one entry (the store's two-slot bytes, `entry.rs`);
//! - `P:V:lock`: the sync lock, holding its owner's id, with a lease (`PX`);
//! - `P:views`: a set of the views with metadata (kept with the metadata in one `MULTI`).
//!
//! Every call is bounded by `online.timeout`: Redis down or slow gives [`Error::Unavailable`]
//! quickly, never a hang. The [`ConnectionManager`] reconnects in the background, so the
//! store works again as soon as Redis is back.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ErrorKind, IntoConnectionInfo, RedisError};

use crate::backend::{Backend, Entries, RecentAdd, Write};
use crate::config::OnlineConfig;
use crate::error::{Error, Result};

/// The environment variable a password comes from when `online.url` has none.
pub const PASSWORD_ENV: &str = "STRATA_ONLINE_PASSWORD";

/// Keys deleted per `DEL` when a view is dropped.
const DROP_BATCH: usize = 1000;

/// Takes the lock when free, extends it when `ARGV[1]` holds it; 1 when held by `ARGV[1]`.
const TRY_LOCK: &str = r#"
local holder = redis.call('GET', KEYS[1])
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"#;

/// Deletes the lock only when `ARGV[1]` holds it.
const UNLOCK: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"#;

pub struct RedisBackend {
    conn: ConnectionManager,
    prefix: String,
    timeout: Duration,
    /// The URL without its password, for messages.
    url: String,
}

impl std::fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackend")
            .field("url", &self.url)
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl RedisBackend {
    /// Connects to `config.url` and checks that Redis answers, within `config.timeout`.
    pub async fn connect(config: &OnlineConfig) -> Result<Arc<dyn Backend>> {
        let backend = RedisBackend::new(config)?;
        backend.ping().await.map_err(|e| match e {
            Error::Unavailable(reason) => {
                Error::Unavailable(format!("cannot connect to Redis: {reason}"))
            }
            other => other,
        })?;
        Ok(Arc::new(backend))
    }

    /// The backend, connecting lazily on its first call (which `connect` makes at once).
    fn new(config: &OnlineConfig) -> Result<RedisBackend> {
        let raw = config
            .url
            .as_deref()
            .ok_or_else(|| Error::Config("online.url is required for Redis".into()))?;
        let url = strata_core::redact::redact_url(raw);
        let mut info = raw
            .into_connection_info()
            .map_err(|e| Error::Config(format!("online.url {url}: {}", e)))?;
        if info.redis_settings().password().is_none() {
            if let Ok(password) = std::env::var(PASSWORD_ENV) {
                if !password.is_empty() {
                    let settings = info.redis_settings().clone().set_password(password);
                    info = info.set_redis_settings(settings);
                }
            }
        }
        if raw.starts_with("rediss://") {
            // rustls needs a process-wide crypto provider; when no other part of Strata
            // installed one, ring (already what the HTTP clients use) is. An error only says
            // one is installed already.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let client = redis::Client::open(info)
            .map_err(|e| Error::Config(format!("online.url {url}: {}", e)))?;
        // Each attempt and each response is bounded by the timeout; reconnection retries
        // quickly (at most a second apart) so the store is back soon after Redis is.
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.timeout))
            .set_response_timeout(Some(config.timeout))
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_secs(1))
            .set_number_of_retries(3);
        let conn = ConnectionManager::new_lazy_with_config(client, manager_config)
            .map_err(|e| Error::Config(format!("redis at {url}: {e}")))?;
        Ok(RedisBackend {
            conn,
            prefix: config.prefix.clone(),
            timeout: config.timeout,
            url,
        })
    }

    /// Runs one call to Redis bounded by the timeout.
    async fn call<T>(
        &self,
        what: &str,
        fut: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T> {
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(self.error(what, &e)),
            Err(_) => Err(Error::Unavailable(format!(
                "redis at {}: {what} took longer than {:?}",
                self.url, self.timeout
            ))),
        }
    }

    fn error(&self, what: &str, e: &RedisError) -> Error {
        let message = format!("redis at {}: {what}: {e}", self.url);
        match e.kind() {
            ErrorKind::AuthenticationFailed | ErrorKind::InvalidClientConfig => {
                Error::Config(message)
            }
            ErrorKind::Parse | ErrorKind::UnexpectedReturnType => Error::Corrupt(message),
            _ => Error::Unavailable(message),
        }
    }

    fn view_prefix(&self, view: &str) -> Result<String> {
        // `:` separates the parts of a key; a view name with one could reach into another
        // view's keys.
        if view.is_empty() || view.contains(':') {
            return Err(Error::Invalid(format!(
                "view name {view:?} cannot be stored in Redis (it must be non-empty, without ':')"
            )));
        }
        Ok(format!("{}:{view}:", self.prefix))
    }

    fn meta_key(&self, view: &str) -> Result<String> {
        Ok(format!("{}m", self.view_prefix(view)?))
    }

    fn lock_key(&self, view: &str) -> Result<String> {
        Ok(format!("{}lock", self.view_prefix(view)?))
    }

    /// `P:recent:S:`, the start of the recent-items set `set`'s keys.
    fn recent_prefix(&self, set: &str) -> Result<Vec<u8>> {
        if set.is_empty() || set.contains(':') {
            return Err(Error::Invalid(format!(
                "recent-items set {set:?} cannot be stored in Redis (it must be non-empty, without ':')"
            )));
        }
        Ok(format!("{}:recent:{set}:", self.prefix).into_bytes())
    }

    fn views_key(&self) -> String {
        format!("{}:views", self.prefix)
    }

    /// `P:V:e:`, the start of every entry key of the view.
    fn entry_prefix(&self, view: &str) -> Result<Vec<u8>> {
        Ok(format!("{}e:", self.view_prefix(view)?).into_bytes())
    }

    fn entry_key(prefix: &[u8], key: &[u8]) -> Vec<u8> {
        let mut k = Vec::with_capacity(prefix.len() + key.len());
        k.extend_from_slice(prefix);
        k.extend_from_slice(key);
        k
    }

    /// One step of `SCAN` over the view's entry keys: the keys found (each once) and the
    /// cursor to continue from (`0`: done).
    async fn scan_keys(
        &self,
        what: &str,
        prefix: &[u8],
        cursor: u64,
        count: usize,
    ) -> Result<(Vec<Vec<u8>>, u64)> {
        let mut pattern = glob_escape(prefix);
        pattern.push(b'*');
        let mut conn = self.conn.clone();
        let (next, keys): (u64, Vec<Vec<u8>>) = self
            .call(
                what,
                redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(pattern)
                    .arg("COUNT")
                    .arg(count.max(1))
                    .query_async(&mut conn),
            )
            .await?;
        // SCAN may return a key twice in one reply as well as across replies.
        let mut seen = HashSet::with_capacity(keys.len());
        let keys = keys
            .into_iter()
            .filter(|k| k.starts_with(prefix) && seen.insert(k.clone()))
            .collect();
        Ok((keys, next))
    }
}

/// `bytes` with Redis glob metacharacters escaped, for `SCAN MATCH`.
fn glob_escape(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + 4);
    for &b in bytes {
        if matches!(b, b'*' | b'?' | b'[' | b']' | b'\\') {
            out.push(b'\\');
        }
        out.push(b);
    }
    out
}

#[async_trait]
impl Backend for RedisBackend {
    fn kind(&self) -> &'static str {
        "redis"
    }

    fn scan_may_repeat(&self) -> bool {
        true
    }

    async fn read(
        &self,
        view: &str,
        keys: &[Vec<u8>],
    ) -> Result<(Option<Vec<u8>>, Vec<Option<Vec<u8>>>)> {
        let prefix = self.entry_prefix(view)?;
        let mut cmd = redis::cmd("MGET");
        cmd.arg(self.meta_key(view)?);
        for key in keys {
            cmd.arg(Self::entry_key(&prefix, key));
        }
        let mut conn = self.conn.clone();
        let mut values: Vec<Option<Vec<u8>>> =
            self.call("MGET", cmd.query_async(&mut conn)).await?;
        if values.len() != keys.len() + 1 {
            return Err(Error::Corrupt(format!(
                "redis at {}: MGET of {} keys answered {} values",
                self.url,
                keys.len() + 1,
                values.len()
            )));
        }
        let entries = values.split_off(1);
        let meta = values.pop().flatten();
        Ok((meta, entries))
    }

    async fn put_meta(&self, view: &str, meta: Vec<u8>) -> Result<()> {
        self.write_batch(vec![Write::Meta {
            view: view.to_string(),
            meta,
        }])
        .await
    }

    async fn put(&self, view: &str, entries: Entries) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let prefix = self.entry_prefix(view)?;
        let mut cmd = redis::cmd("MSET");
        for (key, value) in entries {
            cmd.arg(Self::entry_key(&prefix, &key)).arg(value);
        }
        let mut conn = self.conn.clone();
        self.call("MSET", cmd.query_async::<()>(&mut conn)).await
    }

    async fn write_batch(&self, writes: Vec<Write>) -> Result<()> {
        let writes: Vec<Write> = writes.into_iter().filter(|w| !w.is_empty()).collect();
        if writes.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        pipe.atomic();
        for w in writes {
            match w {
                Write::Put { view, entries } => {
                    let prefix = self.entry_prefix(&view)?;
                    let cmd = pipe.cmd("MSET");
                    for (key, value) in entries {
                        cmd.arg(Self::entry_key(&prefix, &key)).arg(value);
                    }
                    cmd.ignore();
                }
                Write::Delete { view, keys } => {
                    let prefix = self.entry_prefix(&view)?;
                    let full: Vec<Vec<u8>> =
                        keys.iter().map(|k| Self::entry_key(&prefix, k)).collect();
                    pipe.cmd("DEL").arg(full).ignore();
                }
                Write::Meta { view, meta } => {
                    pipe.cmd("SET")
                        .arg(self.meta_key(&view)?)
                        .arg(meta)
                        .ignore()
                        .cmd("SADD")
                        .arg(self.views_key())
                        .arg(view)
                        .ignore();
                }
            }
        }
        let mut conn = self.conn.clone();
        self.call("MULTI/EXEC", pipe.query_async::<()>(&mut conn))
            .await
    }

    async fn recent(&self, set: &str, key: &[u8], since_us: i64) -> Result<Option<Vec<u64>>> {
        let k = Self::entry_key(&self.recent_prefix(set)?, key);
        let mut conn = self.conn.clone();
        let items: Vec<u64> = self
            .call(
                "ZRANGE (recent)",
                redis::cmd("ZRANGE")
                    .arg(k)
                    .arg(since_us)
                    .arg("+inf")
                    .arg("BYSCORE")
                    .query_async(&mut conn),
            )
            .await?;
        Ok(Some(items))
    }

    async fn add_recent(
        &self,
        set: &str,
        adds: Vec<RecentAdd>,
        keep: Duration,
        cap: usize,
    ) -> Result<bool> {
        let prefix = self.recent_prefix(set)?;
        let adds: Vec<RecentAdd> = adds.into_iter().filter(|a| !a.items.is_empty()).collect();
        if adds.is_empty() {
            return Ok(true);
        }
        let keep_us = i64::try_from(keep.as_micros()).unwrap_or(i64::MAX);
        let keep_ms = u64::try_from(keep.as_millis()).unwrap_or(u64::MAX).max(1);
        let cap = i64::try_from(cap.max(1)).unwrap_or(i64::MAX);
        let mut pipe = redis::pipe();
        for add in adds {
            let k = Self::entry_key(&prefix, &add.key);
            let zadd = pipe.cmd("ZADD").arg(&k);
            for item in &add.items {
                zadd.arg(add.at_us).arg(*item);
            }
            zadd.ignore();
            // Expired items, then the oldest past the cap; the key goes when its newest expires.
            pipe.cmd("ZREMRANGEBYSCORE")
                .arg(&k)
                .arg("-inf")
                .arg(format!("({}", add.at_us.saturating_sub(keep_us)))
                .ignore()
                .cmd("ZREMRANGEBYRANK")
                .arg(&k)
                .arg(0)
                .arg(-(cap + 1))
                .ignore()
                .cmd("PEXPIRE")
                .arg(&k)
                .arg(keep_ms)
                .ignore();
        }
        let mut conn = self.conn.clone();
        self.call("ZADD (recent)", pipe.query_async::<()>(&mut conn))
            .await?;
        Ok(true)
    }

    async fn scan(
        &self,
        view: &str,
        cursor: Option<Vec<u8>>,
        limit: usize,
    ) -> Result<(Entries, Option<Vec<u8>>)> {
        let prefix = self.entry_prefix(view)?;
        let cursor = match cursor {
            None => 0,
            Some(bytes) => std::str::from_utf8(&bytes)
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or_else(|| Error::Invalid("not a Redis scan cursor".into()))?,
        };
        let (keys, next) = self.scan_keys("SCAN", &prefix, cursor, limit).await?;
        let next = (next != 0).then(|| next.to_string().into_bytes());
        if keys.is_empty() {
            return Ok((Vec::new(), next));
        }
        let mut conn = self.conn.clone();
        let values: Vec<Option<Vec<u8>>> = self
            .call("MGET", redis::cmd("MGET").arg(&keys).query_async(&mut conn))
            .await?;
        // A key deleted between SCAN and MGET is simply not returned.
        let entries = keys
            .into_iter()
            .zip(values)
            .filter_map(|(k, v)| v.map(|v| (k[prefix.len()..].to_vec(), v)))
            .collect();
        Ok((entries, next))
    }

    async fn delete(&self, view: &str, keys: &[Vec<u8>]) -> Result<u64> {
        if keys.is_empty() {
            return Ok(0);
        }
        let prefix = self.entry_prefix(view)?;
        let full: Vec<Vec<u8>> = keys.iter().map(|k| Self::entry_key(&prefix, k)).collect();
        let mut conn = self.conn.clone();
        self.call("DEL", redis::cmd("DEL").arg(full).query_async(&mut conn))
            .await
    }

    async fn drop_view(&self, view: &str) -> Result<()> {
        let prefix = self.entry_prefix(view)?;
        // Entries first, metadata last: a drop cut short leaves the view listed, and running
        // it again finishes it (no entry outlives its metadata to reappear under a new sync).
        let mut cursor = 0;
        loop {
            let (keys, next) = self
                .scan_keys("SCAN (drop)", &prefix, cursor, DROP_BATCH)
                .await?;
            if !keys.is_empty() {
                let mut conn = self.conn.clone();
                self.call(
                    "DEL (drop)",
                    redis::cmd("DEL").arg(keys).query_async::<u64>(&mut conn),
                )
                .await?;
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("DEL")
            .arg(self.meta_key(view)?)
            .ignore()
            .cmd("SREM")
            .arg(self.views_key())
            .arg(view)
            .ignore();
        let mut conn = self.conn.clone();
        self.call("DEL metadata", pipe.query_async::<()>(&mut conn))
            .await
    }

    async fn views(&self) -> Result<Vec<String>> {
        let mut conn = self.conn.clone();
        let mut views: Vec<String> = self
            .call(
                "SMEMBERS",
                redis::cmd("SMEMBERS")
                    .arg(self.views_key())
                    .query_async(&mut conn),
            )
            .await?;
        views.sort();
        Ok(views)
    }

    async fn ping(&self) -> Result<()> {
        let mut conn = self.conn.clone();
        self.call("PING", redis::cmd("PING").query_async::<()>(&mut conn))
            .await
    }

    async fn try_lock(&self, view: &str, owner: &str, lease: Duration) -> Result<bool> {
        let lease_ms = u64::try_from(lease.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut conn = self.conn.clone();
        let held: i64 = self
            .call(
                "lock",
                redis::cmd("EVAL")
                    .arg(TRY_LOCK)
                    .arg(1)
                    .arg(self.lock_key(view)?)
                    .arg(owner)
                    .arg(lease_ms)
                    .query_async(&mut conn),
            )
            .await?;
        Ok(held == 1)
    }

    async fn unlock(&self, view: &str, owner: &str) -> Result<()> {
        let mut conn = self.conn.clone();
        self.call(
            "unlock",
            redis::cmd("EVAL")
                .arg(UNLOCK)
                .arg(1)
                .arg(self.lock_key(view)?)
                .arg(owner)
                .query_async::<i64>(&mut conn),
        )
        .await
        .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_metacharacters_are_escaped() {
        assert_eq!(
            glob_escape(b"p:v*[x]?\\:e:"),
            b"p:v\\*\\[x\\]\\?\\\\:e:".to_vec()
        );
    }

    #[tokio::test]
    async fn a_view_name_with_a_colon_is_refused() {
        let config = OnlineConfig {
            kind: crate::config::OnlineKind::Redis,
            url: Some("redis://127.0.0.1:1".into()),
            ..OnlineConfig::default()
        };
        let backend = RedisBackend::new(&config).unwrap();
        let err = backend.read("a:e:b", &[]).await.unwrap_err();
        assert!(matches!(err, Error::Invalid(_)), "{err}");
    }
}
