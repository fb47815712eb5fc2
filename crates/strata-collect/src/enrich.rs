//! Enrichment from the server side of the request: the client IP (socket peer, or
//! `X-Forwarded-For` through trusted proxies), IP → country/region/city from a MaxMind-format
//! database, and user agent → os/browser/device (woothee, cached).

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::http::HeaderMap;
use strata_core::EventView;

use crate::error::{Error, Result};

/// Distinct user agents remembered (the same few UAs make most of the traffic).
const UA_CACHE_CAPACITY: usize = 8192;
/// User agents longer than this are not parsed (nor cached).
const MAX_UA_BYTES: usize = 2048;

/// The client IP of a request. The socket peer, unless the peer is a trusted proxy: then the
/// `X-Forwarded-For` chain is walked from the right (nearest hop) and the first address that
/// is not itself a trusted proxy is the client. Entries a client could forge (to the left of
/// an untrusted hop) are never used.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpAddr]) -> IpAddr {
    let peer = peer.to_canonical();
    if !trusted.contains(&peer) {
        return peer;
    }
    let mut client = peer;
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .collect();
    for hop in hops.iter().rev() {
        let Some(ip) = parse_hop(hop) else {
            // Garbage in the chain: trust nothing further left.
            break;
        };
        client = ip;
        if !trusted.contains(&ip) {
            break;
        }
    }
    client
}

fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    let ip = hop
        .parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<SocketAddr>().ok().map(|s| s.ip()))?;
    Some(ip.to_canonical())
}

/// IP → location, from a MaxMind-format city database.
pub struct Geo {
    reader: maxminddb::Reader<Vec<u8>>,
}

/// What a geo lookup found.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Location {
    pub country: Option<String>,
    pub region: Option<String>,
    pub city: Option<String>,
}

impl Geo {
    pub fn open(path: &Path) -> Result<Self> {
        let reader = maxminddb::Reader::open_readfile(path).map_err(|e| {
            Error::Setup(format!(
                "cannot open collector.geoip_db {}: {e}",
                path.display()
            ))
        })?;
        Ok(Self { reader })
    }

    #[cfg(test)]
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self> {
        let reader = maxminddb::Reader::from_source(bytes)
            .map_err(|e| Error::Setup(format!("invalid geo database: {e}")))?;
        Ok(Self { reader })
    }

    /// Country ISO code, first subdivision (English name, else ISO code), city (English name).
    /// Unknown addresses and lookup errors give an empty location.
    pub fn lookup(&self, ip: IpAddr) -> Location {
        let city = self
            .reader
            .lookup(ip)
            .and_then(|r| r.decode::<maxminddb::geoip2::City<'_>>());
        match city {
            Ok(Some(c)) => Location {
                country: c.country.iso_code.map(str::to_string),
                region: c
                    .subdivisions
                    .first()
                    .and_then(|s| s.names.english.or(s.iso_code))
                    .map(str::to_string),
                city: c.city.names.english.map(str::to_string),
            },
            Ok(None) => Location::default(),
            Err(e) => {
                tracing::debug!(%ip, error = %e, "geo lookup failed");
                Location::default()
            }
        }
    }
}

/// A parsed user agent.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct UserAgent {
    pub os: Option<String>,
    pub os_version: Option<String>,
    pub browser: Option<String>,
    pub browser_version: Option<String>,
    pub device: Option<String>,
}

/// Parses a user agent with woothee; "UNKNOWN" parts become None.
pub fn parse_user_agent(ua: &str) -> UserAgent {
    let known = |s: &str| (!s.is_empty() && s != "UNKNOWN").then(|| s.to_string());
    match woothee::parser::Parser::new().parse(ua) {
        Some(r) => UserAgent {
            os: known(r.os),
            os_version: known(&r.os_version),
            browser: known(r.name),
            browser_version: known(r.version),
            device: known(r.category),
        },
        None => UserAgent::default(),
    }
}

/// Parsed user agents, bounded: when full it is emptied (cheap, and the hot UAs come back at
/// once).
pub struct UaCache {
    map: Mutex<HashMap<Box<str>, Arc<UserAgent>>>,
}

impl Default for UaCache {
    fn default() -> Self {
        Self {
            map: Mutex::new(HashMap::with_capacity(256)),
        }
    }
}

impl UaCache {
    pub fn get(&self, ua: &str) -> Arc<UserAgent> {
        if ua.len() > MAX_UA_BYTES {
            return Arc::new(UserAgent::default());
        }
        if let Some(hit) = self.lock().get(ua) {
            return Arc::clone(hit);
        }
        let parsed = Arc::new(parse_user_agent(ua));
        let mut map = self.lock();
        if map.len() >= UA_CACHE_CAPACITY {
            map.clear();
        }
        map.insert(ua.into(), Arc::clone(&parsed));
        parsed
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Box<str>, Arc<UserAgent>>> {
        self.map
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Per-request enrichment state: the request's IP, its location (looked up once) and a memo of
/// the last user agent (consecutive events of a batch usually share one).
pub struct RequestEnricher<'a> {
    ip: String,
    location: Location,
    header_ua: Option<&'a str>,
    cache: &'a UaCache,
    last: Option<(String, Arc<UserAgent>)>,
}

impl<'a> RequestEnricher<'a> {
    pub fn new(
        ip: IpAddr,
        geo: Option<&Geo>,
        header_ua: Option<&'a str>,
        cache: &'a UaCache,
    ) -> Self {
        Self {
            ip: ip.to_string(),
            location: geo.map(|g| g.lookup(ip)).unwrap_or_default(),
            header_ua: header_ua.filter(|s| !s.is_empty()),
            cache,
            last: None,
        }
    }

    /// The client IP the request came from.
    pub fn ip(&self) -> &str {
        &self.ip
    }

    /// The parsed user agent of an event: its own (`context.userAgent`), else the request's
    /// `User-Agent` header. Pass the result to [`RequestEnricher::fill`].
    pub fn user_agent(&mut self, own: Option<&str>) -> Option<Arc<UserAgent>> {
        let ua = own.or(self.header_ua)?;
        let parsed = match &self.last {
            Some((last, parsed)) if last == ua => Arc::clone(parsed),
            _ => {
                let parsed = self.cache.get(ua);
                self.last = Some((ua.to_string(), Arc::clone(&parsed)));
                parsed
            }
        };
        Some(parsed)
    }

    /// Fills the ip, geo and user-agent columns, borrowing from this request's state and from
    /// `ua` ([`RequestEnricher::user_agent`] of the event). The client's `context.ip` is ignored.
    pub fn fill<'v>(&'v self, event: &mut EventView<'v>, ua: Option<&'v UserAgent>) {
        let borrow = |v: &'v Option<String>| v.as_deref().map(Cow::Borrowed);
        event.ip = Some(Cow::Borrowed(&self.ip));
        event.country = borrow(&self.location.country);
        event.region = borrow(&self.location.region);
        event.city = borrow(&self.location.city);
        if event.user_agent.is_none() {
            event.user_agent = self.header_ua.map(Cow::Borrowed);
        }
        let Some(ua) = ua else {
            return;
        };
        event.os = borrow(&ua.os);
        event.os_version = borrow(&ua.os_version);
        event.browser = borrow(&ua.browser);
        event.browser_version = borrow(&ua.browser_version);
        event.device = borrow(&ua.device);
    }
}

#[cfg(test)]
#[path = "enrich_tests.rs"]
mod tests;
