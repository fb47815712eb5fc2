//! GTIDs of the binlog stream: which transactions a position has seen, in the server's own
//! spelling, so streaming can resume on any server of the replication topology (after a
//! failover the new primary has other binlog file names, but the same GTIDs).
//!
//! - MariaDB: a GTID is `domain-server-seq`; a position is one GTID per replication domain
//!   (the last one applied), e.g. `0-1-42,1-7-3` — what `@@gtid_binlog_pos` shows and
//!   `@slave_connect_state` takes.
//! - MySQL: a GTID is `uuid:gno`; a position is the set of every GTID executed, as intervals
//!   per server UUID, e.g. `3e11fa47-71ca-11e1-9e33-c80aa9429562:1-100:105` — what
//!   `@@gtid_executed` shows and `COM_BINLOG_DUMP_GTID` takes (as [`mysql_async::Sid`]s).
//!
//! The state file stores a position as `{"mariadb": "0-1-42"}` or `{"mysql": "…"}`.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use mysql_async::{GnoInterval, Sid};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One transaction's GTID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Gtid {
    Mariadb { domain: u32, server: u32, seq: u64 },
    Mysql { uuid: [u8; 16], gno: u64 },
}

/// What orders GTIDs: a MariaDB replication domain or a MySQL source server UUID. Within one
/// stream the sequence numbers grow in binlog order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    Domain(u32),
    Uuid([u8; 16]),
}

impl Gtid {
    /// `domain-server-seq` (MariaDB) or `uuid:gno` (MySQL), as the `txid` of changes.
    pub fn parse(text: &str) -> Option<Gtid> {
        if let Some((uuid, gno)) = text.split_once(':') {
            let gno: u64 = gno.parse().ok().filter(|g| *g > 0)?;
            return Some(Gtid::Mysql {
                uuid: parse_uuid(uuid)?,
                gno,
            });
        }
        let mut parts = text.split('-');
        let domain = parts.next()?.parse().ok()?;
        let server = parts.next()?.parse().ok()?;
        let seq = parts.next()?.parse().ok()?;
        if parts.next().is_some() {
            return None;
        }
        Some(Gtid::Mariadb {
            domain,
            server,
            seq,
        })
    }

    pub fn stream(&self) -> Stream {
        match self {
            Gtid::Mariadb { domain, .. } => Stream::Domain(*domain),
            Gtid::Mysql { uuid, .. } => Stream::Uuid(*uuid),
        }
    }

    /// The sequence number within [`Gtid::stream`].
    pub fn seq(&self) -> u64 {
        match self {
            Gtid::Mariadb { seq, .. } => *seq,
            Gtid::Mysql { gno, .. } => *gno,
        }
    }
}

impl fmt::Display for Gtid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Gtid::Mariadb {
                domain,
                server,
                seq,
            } => write!(f, "{domain}-{server}-{seq}"),
            Gtid::Mysql { uuid, gno } => write!(f, "{}:{gno}", uuid_text(uuid)),
        }
    }
}

/// A MariaDB GTID position: per domain, the server id and sequence number of the last
/// transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MariadbPos {
    domains: BTreeMap<u32, (u32, u64)>,
}

impl MariadbPos {
    /// The transaction `domain-server-seq` was applied.
    pub fn apply(&mut self, domain: u32, server: u32, seq: u64) {
        self.domains.insert(domain, (server, seq));
    }

    pub fn is_empty(&self) -> bool {
        self.domains.is_empty()
    }
}

impl FromStr for MariadbPos {
    type Err = String;

    /// `0-1-42,1-7-3` (spaces and newlines around entries allowed; empty: no domain yet).
    fn from_str(s: &str) -> Result<Self, String> {
        let mut pos = MariadbPos::default();
        for entry in s.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            match Gtid::parse(entry) {
                Some(Gtid::Mariadb {
                    domain,
                    server,
                    seq,
                }) => {
                    if pos.domains.insert(domain, (server, seq)).is_some() {
                        return Err(format!("GTID position {s:?} names domain {domain} twice"));
                    }
                }
                _ => {
                    return Err(format!(
                        "bad MariaDB GTID {entry:?} in {s:?} (expected domain-server-seq)"
                    ))
                }
            }
        }
        Ok(pos)
    }
}

impl fmt::Display for MariadbPos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (domain, (server, seq))) in self.domains.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{domain}-{server}-{seq}")?;
        }
        Ok(())
    }
}

/// A MySQL GTID set: per server UUID, sorted disjoint non-adjacent inclusive intervals.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MysqlSet {
    uuids: BTreeMap<[u8; 16], Vec<(u64, u64)>>,
}

impl MysqlSet {
    /// Adds `uuid:gno`, merging it into the intervals around it.
    pub fn add(&mut self, uuid: [u8; 16], gno: u64) {
        self.add_interval(uuid, gno, gno);
    }

    /// Adds `uuid:start-end` (inclusive).
    fn add_interval(&mut self, uuid: [u8; 16], start: u64, end: u64) {
        let list = self.uuids.entry(uuid).or_default();
        // The common case: the next gno after the last interval.
        if let Some(last) = list.last_mut() {
            if start >= last.0 && start <= last.1.saturating_add(1) {
                last.1 = last.1.max(end);
                return;
            }
        }
        list.push((start, end));
        list.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(list.len());
        for &(s, e) in list.iter() {
            match merged.last_mut() {
                Some(m) if s <= m.1.saturating_add(1) => m.1 = m.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        *list = merged;
    }

    pub fn contains(&self, uuid: &[u8; 16], gno: u64) -> bool {
        self.uuids
            .get(uuid)
            .is_some_and(|l| l.iter().any(|&(s, e)| s <= gno && gno <= e))
    }

    pub fn is_empty(&self) -> bool {
        self.uuids.is_empty()
    }

    /// The set for `COM_BINLOG_DUMP_GTID` (intervals there are half-open).
    pub fn to_sids(&self) -> Vec<Sid<'static>> {
        self.uuids
            .iter()
            .map(|(uuid, list)| {
                Sid::new(*uuid).with_intervals(
                    list.iter()
                        .map(|&(s, e)| GnoInterval::new(s, e.saturating_add(1)))
                        .collect(),
                )
            })
            .collect()
    }
}

impl FromStr for MysqlSet {
    type Err = String;

    /// `uuid:1-100:105,uuid2:1-5` as `@@gtid_executed` shows it (whitespace and newlines
    /// between entries allowed; empty: the empty set). Tagged GTIDs (MySQL 8.4
    /// `uuid:tag:1-5`) are not supported.
    fn from_str(s: &str) -> Result<Self, String> {
        let mut set = MysqlSet::default();
        for entry in s.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let mut parts = entry.split(':');
            let uuid = parts.next().unwrap_or_default();
            let uuid = parse_uuid(uuid)
                .ok_or_else(|| format!("bad server UUID {uuid:?} in GTID set {s:?}"))?;
            let mut any = false;
            for interval in parts {
                any = true;
                let bad = || {
                    format!(
                        "bad interval {interval:?} in GTID set {s:?} (expected N or N-M, N ≥ 1; \
                         tagged GTIDs are not supported)"
                    )
                };
                let (start, end) = match interval.split_once('-') {
                    Some((a, b)) => (a.parse::<u64>(), b.parse::<u64>()),
                    None => (interval.parse::<u64>(), interval.parse::<u64>()),
                };
                let (Ok(start), Ok(end)) = (start, end) else {
                    return Err(bad());
                };
                if start == 0 || end < start || end == u64::MAX {
                    return Err(bad());
                }
                set.add_interval(uuid, start, end);
            }
            if !any {
                return Err(format!("{entry:?} in GTID set {s:?} has no interval"));
            }
        }
        Ok(set)
    }
}

impl fmt::Display for MysqlSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (uuid, list)) in self.uuids.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(&uuid_text(uuid))?;
            for &(s, e) in list {
                if s == e {
                    write!(f, ":{s}")?;
                } else {
                    write!(f, ":{s}-{e}")?;
                }
            }
        }
        Ok(())
    }
}

/// The GTID position a binlog boundary is at, for either server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GtidState {
    Mariadb(#[serde(with = "as_text")] MariadbPos),
    Mysql(#[serde(with = "as_text")] MysqlSet),
}

impl GtidState {
    /// The transaction `gtid` was applied (a GTID of the other server kind is ignored).
    pub fn apply(&mut self, gtid: &Gtid) {
        match (self, gtid) {
            (
                GtidState::Mariadb(p),
                Gtid::Mariadb {
                    domain,
                    server,
                    seq,
                },
            ) => p.apply(*domain, *server, *seq),
            (GtidState::Mysql(s), Gtid::Mysql { uuid, gno }) => s.add(*uuid, *gno),
            _ => {}
        }
    }

    pub fn is_empty(&self) -> bool {
        match self {
            GtidState::Mariadb(p) => p.is_empty(),
            GtidState::Mysql(s) => s.is_empty(),
        }
    }

    pub fn is_mariadb(&self) -> bool {
        matches!(self, GtidState::Mariadb(_))
    }
}

impl fmt::Display for GtidState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GtidState::Mariadb(p) => p.fmt(f),
            GtidState::Mysql(s) => s.fmt(f),
        }
    }
}

/// Serde as the text form ([`fmt::Display`] / [`FromStr`]).
mod as_text {
    use super::*;

    pub fn serialize<T: fmt::Display, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(v)
    }

    pub fn deserialize<'de, T, D>(d: D) -> Result<T, D::Error>
    where
        T: FromStr<Err = String>,
        D: Deserializer<'de>,
    {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// What a topic already holds of the binlog, by GTID, read back from its tail: the highest
/// sequence number per GTID stream among its last changes, and the last transaction with how
/// many of its changes are on the topic (a huge transaction can be there in part).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Held {
    max: std::collections::HashMap<Stream, u64>,
    last: Option<(Gtid, u64)>,
}

/// How much of one transaction a topic holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeldPart {
    /// Every change of it (or it is older than what the topic holds).
    All,
    /// Its first `n` changes for this topic's table.
    First(u64),
    /// Nothing.
    None,
}

impl Held {
    /// From the txids of the topic's streamed changes seen at its tail, newest first, and how
    /// many changes of the newest one are at the very end of the topic (0: the topic ends
    /// with something else, e.g. a truncate). None when the newest change has no GTID
    /// (written before GTIDs were read, or by a server that sends none): the caller compares
    /// binlog positions instead.
    pub fn from_tail<'a>(
        newest_first: impl IntoIterator<Item = &'a str>,
        last_count: u64,
    ) -> Option<Held> {
        let mut held = Held::default();
        for (i, txid) in newest_first.into_iter().enumerate() {
            let gtid = Gtid::parse(txid);
            if i == 0 && last_count > 0 {
                held.last = Some((gtid?, last_count));
            } else if i == 0 {
                gtid?;
            }
            if let Some(g) = gtid {
                let m = held.max.entry(g.stream()).or_insert(0);
                *m = (*m).max(g.seq());
            }
        }
        (!held.max.is_empty()).then_some(held)
    }

    /// How much of transaction `gtid` the topic holds. Sequence numbers grow within a
    /// MariaDB domain (in strict mode) and per MySQL server UUID, on every server that
    /// replicates them, so this holds after a failover too.
    pub fn part(&self, gtid: &Gtid) -> HeldPart {
        if let Some((last, n)) = &self.last {
            if last == gtid {
                return HeldPart::First(*n);
            }
        }
        match self.max.get(&gtid.stream()) {
            Some(&max) if gtid.seq() <= max => HeldPart::All,
            _ => HeldPart::None,
        }
    }
}

/// A MySQL server UUID in its usual spelling.
pub fn uuid_text(sid: &[u8]) -> String {
    let hex: String = sid.iter().map(|b| format!("{b:02x}")).collect();
    if hex.len() != 32 {
        return hex;
    }
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// `3e11fa47-71ca-11e1-9e33-c80aa9429562` (any case) → its 16 bytes.
pub fn parse_uuid(text: &str) -> Option<[u8; 16]> {
    let bytes = text.as_bytes();
    let dashes_ok = bytes.len() == 36
        && bytes.iter().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => *b == b'-',
            _ => b.is_ascii_hexdigit(),
        });
    if !dashes_ok {
        return None;
    }
    let hex: Vec<u8> = bytes.iter().copied().filter(|b| *b != b'-').collect();
    let mut out = [0u8; 16];
    for (i, pair) in hex.chunks(2).enumerate() {
        let pair = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
#[path = "gtid_tests.rs"]
mod tests;
