//! The pgoutput logical decoding messages, protocol version 1 (PostgreSQL's "Logical
//! Replication Message Formats"): what `pg_logical_slot_peek_binary_changes(…,
//! 'proto_version', '1', 'publication_names', …)` returns, one message per row. Column values
//! arrive in the server's text output format (the session's `DateStyle`, `TimeZone`, …).
//!
//! Pure parsing: a malformed message is an error value, never a panic.

/// Microseconds between 1970-01-01 and PostgreSQL's epoch 2000-01-01.
pub const PG_EPOCH_OFFSET_MICROS: i64 = 946_684_800_000_000;

/// One column of a tuple.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Datum {
    Null,
    /// A TOASTed value the change did not touch: its value is not in the message.
    UnchangedToast,
    /// The value in text output format.
    Text(String),
}

/// One column of a relation as pgoutput describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelationColumn {
    /// Part of the replica identity (the key, or every column with REPLICA IDENTITY FULL).
    pub key: bool,
    pub name: String,
    pub type_oid: u32,
    pub type_modifier: i32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    pub id: u32,
    pub namespace: String,
    pub name: String,
    /// `d` default (primary key), `n` nothing, `f` full, `i` index.
    pub replica_identity: u8,
    pub columns: Vec<RelationColumn>,
}

/// The old image an update or delete carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OldTuple {
    /// `K`: the replica identity columns only (others are NULL placeholders).
    Key(Vec<Datum>),
    /// `O`: the whole old row (REPLICA IDENTITY FULL).
    Full(Vec<Datum>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Begin {
        /// LSN of the transaction's commit record.
        final_lsn: u64,
        /// Commit time, microseconds since the Unix epoch.
        commit_ts: i64,
        xid: u32,
    },
    Commit {
        commit_lsn: u64,
        /// End of the commit record: a slot confirmed up to here has this transaction.
        end_lsn: u64,
        commit_ts: i64,
    },
    Origin,
    Relation(Relation),
    Type,
    Insert {
        relation: u32,
        new: Vec<Datum>,
    },
    Update {
        relation: u32,
        old: Option<OldTuple>,
        new: Vec<Datum>,
    },
    Delete {
        relation: u32,
        old: OldTuple,
    },
    Truncate {
        relations: Vec<u32>,
        cascade: bool,
        restart_identity: bool,
    },
    /// A logical decoding message (`pg_logical_emit_message`), ignored.
    Message,
}

struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

type Parse<T> = Result<T, String>;

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Parse<&'a [u8]> {
        let end = self.at.checked_add(n).filter(|e| *e <= self.buf.len());
        let Some(end) = end else {
            return Err(format!(
                "message ends at byte {} but {n} more were expected at {}",
                self.buf.len(),
                self.at
            ));
        };
        let out = &self.buf[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn u8(&mut self) -> Parse<u8> {
        Ok(self.take(1)?[0])
    }

    fn i16(&mut self) -> Parse<i16> {
        let b = self.take(2)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    fn i32(&mut self) -> Parse<i32> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u32(&mut self) -> Parse<u32> {
        Ok(self.i32()? as u32)
    }

    fn i64(&mut self) -> Parse<i64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(i64::from_be_bytes(a))
    }

    fn u64(&mut self) -> Parse<u64> {
        Ok(self.i64()? as u64)
    }

    fn ts(&mut self) -> Parse<i64> {
        Ok(self.i64()?.saturating_add(PG_EPOCH_OFFSET_MICROS))
    }

    /// A NUL-terminated UTF-8 string.
    fn string(&mut self) -> Parse<String> {
        let rest = &self.buf[self.at..];
        let Some(nul) = rest.iter().position(|b| *b == 0) else {
            return Err(format!("unterminated string at byte {}", self.at));
        };
        let s = String::from_utf8(rest[..nul].to_vec())
            .map_err(|e| format!("string at byte {} is not UTF-8: {e}", self.at))?;
        self.at += nul + 1;
        Ok(s)
    }

    fn tuple(&mut self) -> Parse<Vec<Datum>> {
        let n = self.i16()?;
        if n < 0 {
            return Err(format!("negative column count {n}"));
        }
        let mut out = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let datum = match self.u8()? {
                b'n' => Datum::Null,
                b'u' => Datum::UnchangedToast,
                b't' => {
                    let len = self.i32()?;
                    if len < 0 {
                        return Err(format!("negative value length {len}"));
                    }
                    let bytes = self.take(len as usize)?;
                    Datum::Text(String::from_utf8(bytes.to_vec()).map_err(|e| {
                        format!("text value is not UTF-8 (is the database encoding UTF8?): {e}")
                    })?)
                }
                b'b' => return Err("binary tuple values are not requested (proto v1)".into()),
                other => return Err(format!("unknown tuple value kind {:?}", other as char)),
            };
            out.push(datum);
        }
        Ok(out)
    }

    fn new_tuple(&mut self) -> Parse<Vec<Datum>> {
        match self.u8()? {
            b'N' => self.tuple(),
            other => Err(format!("expected a new tuple (N), got {:?}", other as char)),
        }
    }
}

/// Parses one pgoutput message.
pub fn parse(buf: &[u8]) -> Parse<Message> {
    let mut r = Reader { buf, at: 0 };
    let tag = r.u8()?;
    let msg = match tag {
        b'B' => Message::Begin {
            final_lsn: r.u64()?,
            commit_ts: r.ts()?,
            xid: r.u32()?,
        },
        b'C' => {
            let _flags = r.u8()?;
            Message::Commit {
                commit_lsn: r.u64()?,
                end_lsn: r.u64()?,
                commit_ts: r.ts()?,
            }
        }
        b'O' => Message::Origin,
        b'Y' => Message::Type,
        b'M' => Message::Message,
        b'R' => {
            let id = r.u32()?;
            let namespace = r.string()?;
            let name = r.string()?;
            let replica_identity = r.u8()?;
            let n = r.i16()?;
            let mut columns = Vec::with_capacity(n.max(0) as usize);
            for _ in 0..n {
                let flags = r.u8()?;
                columns.push(RelationColumn {
                    key: flags & 1 == 1,
                    name: r.string()?,
                    type_oid: r.u32()?,
                    type_modifier: r.i32()?,
                });
            }
            Message::Relation(Relation {
                id,
                namespace,
                name,
                replica_identity,
                columns,
            })
        }
        b'I' => {
            let relation = r.u32()?;
            Message::Insert {
                relation,
                new: r.new_tuple()?,
            }
        }
        b'U' => {
            let relation = r.u32()?;
            let (old, new) = match r.u8()? {
                b'K' => {
                    let old = OldTuple::Key(r.tuple()?);
                    (Some(old), r.new_tuple()?)
                }
                b'O' => {
                    let old = OldTuple::Full(r.tuple()?);
                    (Some(old), r.new_tuple()?)
                }
                b'N' => (None, r.tuple()?),
                other => return Err(format!("update: unexpected tuple kind {:?}", other as char)),
            };
            Message::Update { relation, old, new }
        }
        b'D' => {
            let relation = r.u32()?;
            let old = match r.u8()? {
                b'K' => OldTuple::Key(r.tuple()?),
                b'O' => OldTuple::Full(r.tuple()?),
                other => return Err(format!("delete: unexpected tuple kind {:?}", other as char)),
            };
            Message::Delete { relation, old }
        }
        b'T' => {
            let n = r.i32()?;
            let options = r.u8()?;
            // The count is the sender's word: room for what the message can hold, no more.
            let room = buf.len().saturating_sub(r.at) / 4;
            let mut relations = Vec::with_capacity((n.max(0) as usize).min(room));
            for _ in 0..n {
                relations.push(r.u32()?);
            }
            Message::Truncate {
                relations,
                cascade: options & 1 == 1,
                restart_identity: options & 2 == 2,
            }
        }
        other => return Err(format!("unknown pgoutput message {:?}", other as char)),
    };
    Ok(msg)
}

/// `0/16B3748`: an LSN as PostgreSQL writes it.
pub fn lsn_text(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xffff_ffff)
}

/// Parses `0/16B3748`.
pub fn parse_lsn(text: &str) -> Option<u64> {
    let (hi, lo) = text.trim().split_once('/')?;
    let hi = u64::from_str_radix(hi, 16).ok()?;
    let lo = u64::from_str_radix(lo, 16).ok()?;
    (hi <= u32::MAX as u64 && lo <= u32::MAX as u64).then_some((hi << 32) | lo)
}

/// `00000000/016B3748`: fixed width, so text order is LSN order (used as the position's
/// `file`, which positions compare first).
pub fn lsn_key(lsn: u64) -> String {
    format!("{:08X}/{:08X}", lsn >> 32, lsn & 0xffff_ffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn be16(v: i16) -> [u8; 2] {
        v.to_be_bytes()
    }
    fn be32(v: i32) -> [u8; 4] {
        v.to_be_bytes()
    }
    fn be64(v: i64) -> [u8; 8] {
        v.to_be_bytes()
    }

    fn text_tuple(values: &[Option<&str>]) -> Vec<u8> {
        let mut b = be16(values.len() as i16).to_vec();
        for v in values {
            match v {
                None => b.push(b'n'),
                Some(t) => {
                    b.push(b't');
                    b.extend(be32(t.len() as i32));
                    b.extend(t.as_bytes());
                }
            }
        }
        b
    }

    #[test]
    fn begin_commit_and_relation_parse() {
        let mut b = vec![b'B'];
        b.extend(be64(0x1_0000_0010));
        b.extend(be64(1_000_000));
        b.extend(be32(742));
        assert_eq!(
            parse(&b).unwrap(),
            Message::Begin {
                final_lsn: 0x1_0000_0010,
                commit_ts: PG_EPOCH_OFFSET_MICROS + 1_000_000,
                xid: 742
            }
        );
        let mut c = vec![b'C', 0];
        c.extend(be64(16));
        c.extend(be64(24));
        c.extend(be64(0));
        assert_eq!(
            parse(&c).unwrap(),
            Message::Commit {
                commit_lsn: 16,
                end_lsn: 24,
                commit_ts: PG_EPOCH_OFFSET_MICROS
            }
        );
        let mut r = vec![b'R'];
        r.extend(be32(16384));
        r.extend(b"public\0users\0d");
        r.extend(be16(2));
        r.push(1);
        r.extend(b"id\0");
        r.extend(be32(20));
        r.extend(be32(-1));
        r.push(0);
        r.extend("nämé\0".as_bytes());
        r.extend(be32(25));
        r.extend(be32(-1));
        let Message::Relation(rel) = parse(&r).unwrap() else {
            panic!("not a relation")
        };
        assert_eq!(rel.name, "users");
        assert_eq!(rel.replica_identity, b'd');
        assert!(rel.columns[0].key && !rel.columns[1].key);
        assert_eq!(rel.columns[1].name, "nämé");
        assert_eq!(rel.columns[1].type_oid, 25);
    }

    #[test]
    fn row_changes_parse_with_nulls_toast_and_old_images() {
        let mut i = vec![b'I'];
        i.extend(be32(7));
        i.push(b'N');
        i.extend(text_tuple(&[Some("1"), None, Some("😀")]));
        assert_eq!(
            parse(&i).unwrap(),
            Message::Insert {
                relation: 7,
                new: vec![
                    Datum::Text("1".into()),
                    Datum::Null,
                    Datum::Text("😀".into())
                ]
            }
        );
        let mut u = vec![b'U'];
        u.extend(be32(7));
        u.push(b'O');
        u.extend(text_tuple(&[Some("1"), Some("a")]));
        u.push(b'N');
        let mut t = text_tuple(&[Some("1")]);
        t[1] = 2; // two columns: the second is an unchanged TOAST value
        t.push(b'u');
        u.extend(t);
        let Message::Update { old, new, .. } = parse(&u).unwrap() else {
            panic!("not an update")
        };
        assert_eq!(
            old,
            Some(OldTuple::Full(vec![
                Datum::Text("1".into()),
                Datum::Text("a".into())
            ]))
        );
        assert_eq!(new, vec![Datum::Text("1".into()), Datum::UnchangedToast]);
        let mut u = vec![b'U'];
        u.extend(be32(7));
        u.push(b'N');
        u.extend(text_tuple(&[Some("2")]));
        assert!(matches!(
            parse(&u).unwrap(),
            Message::Update { old: None, .. }
        ));
        let mut d = vec![b'D'];
        d.extend(be32(7));
        d.push(b'K');
        d.extend(text_tuple(&[Some("1"), None]));
        assert!(matches!(
            parse(&d).unwrap(),
            Message::Delete {
                old: OldTuple::Key(_),
                ..
            }
        ));
        let mut t = vec![b'T'];
        t.extend(be32(2));
        t.push(1);
        t.extend(be32(7));
        t.extend(be32(8));
        assert_eq!(
            parse(&t).unwrap(),
            Message::Truncate {
                relations: vec![7, 8],
                cascade: true,
                restart_identity: false
            }
        );
    }

    #[test]
    fn malformed_messages_are_errors() {
        assert!(parse(&[]).is_err());
        assert!(parse(b"Z").is_err());
        assert!(parse(&[b'B', 0, 0]).is_err());
        let mut i = vec![b'I'];
        i.extend(be32(7));
        i.push(b'N');
        i.extend(be16(1));
        i.push(b't');
        i.extend(be32(100));
        i.extend(b"short");
        assert!(parse(&i).is_err());
        let mut r = vec![b'R'];
        r.extend(be32(1));
        r.extend(b"no terminator");
        assert!(parse(&r).is_err());
    }

    #[test]
    fn lsns_format_and_order() {
        assert_eq!(lsn_text(0x16B3748), "0/16B3748");
        assert_eq!(parse_lsn("0/16B3748"), Some(0x16B3748));
        assert_eq!(parse_lsn("1/0"), Some(1 << 32));
        assert_eq!(parse_lsn("bad"), None);
        assert!(lsn_key(0x9) < lsn_key(0x10));
        assert!(lsn_key(0xFFFF_FFFF) < lsn_key(1 << 32));
    }
}
