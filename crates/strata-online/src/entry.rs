//! One entity's entry in one view: two slots, so a sync can write a new row while readers of
//! the published version still see the old one.
//!
//! `current` is the newest write (its version may be a sync still running, or one that was
//! killed); `previous` is the row the published version saw when `current` was written. A
//! reader of published version `p` takes `current` when its version is ≤ `p`, else `previous`
//! (whose version is ≤ `p` by construction). A sync at version `v` builds the new entry from
//! the slot the published version sees ([`Entry::next`]): rows of a killed sync are never kept as
//! `previous`, so they vanish when a later sync writes the key and stay invisible until then.
//!
//! Layout: `[format u8 = 1][current slot][0 | 1 + previous slot]`, a slot being
//! `[version u64 LE][0 = deleted | 1 = row][row: schema u32 LE, event time i64 LE (µs),
//! length varint, encoded values]`.

use crate::error::{Error, Result};
use crate::value::{put_varint, Reader};

const FORMAT: u8 = 1;

/// What a slot holds.
#[derive(Debug, Clone, PartialEq)]
pub enum SlotState {
    /// The entity's row: its schema id (in the view's metadata), its event time (µs since
    /// the epoch; what TTLs count from) and its encoded values (`value::encode_row`).
    Row {
        schema: u32,
        event_ts: i64,
        values: Vec<u8>,
    },
    /// The entity was removed from the view by this version.
    Deleted,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Slot {
    pub version: u64,
    pub state: SlotState,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub current: Slot,
    pub previous: Option<Slot>,
}

impl Entry {
    /// The slot a reader of published version `published` sees (`None`: the entity is not
    /// in that version).
    pub fn visible(&self, published: u64) -> Option<&Slot> {
        if self.current.version <= published {
            Some(&self.current)
        } else {
            self.previous.as_ref().filter(|p| p.version <= published)
        }
    }

    /// The entry after a sync at `version` (the view's published version being `published`)
    /// writes `state` over `existing`.
    pub fn next(existing: Option<Entry>, published: u64, version: u64, state: SlotState) -> Entry {
        let previous = existing.and_then(|e| {
            if e.current.version <= published {
                Some(e.current)
            } else {
                e.previous.filter(|p| p.version <= published)
            }
        });
        Entry {
            current: Slot { version, state },
            previous,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len_hint());
        out.push(FORMAT);
        encode_slot(&self.current, &mut out);
        match &self.previous {
            None => out.push(0),
            Some(p) => {
                out.push(1);
                encode_slot(p, &mut out);
            }
        }
        out
    }

    fn encoded_len_hint(&self) -> usize {
        let len = |s: &Slot| match &s.state {
            SlotState::Row { values, .. } => 8 + 1 + 4 + 8 + 5 + values.len(),
            SlotState::Deleted => 9,
        };
        2 + len(&self.current) + self.previous.as_ref().map_or(0, len)
    }

    pub fn decode(bytes: &[u8]) -> Result<Entry> {
        let mut r = Reader { bytes, at: 0 };
        let format = r.u8()?;
        if format != FORMAT {
            return Err(Error::Corrupt(format!(
                "entry format {format} (this Strata reads format {FORMAT})"
            )));
        }
        let current = decode_slot(&mut r)?;
        let previous = match r.u8()? {
            0 => None,
            _ => Some(decode_slot(&mut r)?),
        };
        Ok(Entry { current, previous })
    }
}

fn encode_slot(slot: &Slot, out: &mut Vec<u8>) {
    out.extend_from_slice(&slot.version.to_le_bytes());
    match &slot.state {
        SlotState::Deleted => out.push(0),
        SlotState::Row {
            schema,
            event_ts,
            values,
        } => {
            out.push(1);
            out.extend_from_slice(&schema.to_le_bytes());
            out.extend_from_slice(&event_ts.to_le_bytes());
            put_varint(out, values.len() as u64);
            out.extend_from_slice(values);
        }
    }
}

/// The row a reader of `published` sees in an encoded entry, borrowed from `bytes` (schema,
/// event time, encoded values); `None` when the entity is not in that version. Nothing is
/// copied: the feed reads a thousand entries per request this way.
pub fn visible_row(bytes: &[u8], published: u64) -> Result<Option<(u32, i64, &[u8])>> {
    let mut r = Reader { bytes, at: 0 };
    let format = r.u8()?;
    if format != FORMAT {
        return Err(Error::Corrupt(format!(
            "entry format {format} (this Strata reads format {FORMAT})"
        )));
    }
    let current = borrowed_slot(&mut r)?;
    if current.0 <= published {
        return Ok(current.1);
    }
    // The current slot is newer than the reader's version: the previous one, if any.
    if r.u8()? == 0 {
        return Ok(None);
    }
    let previous = borrowed_slot(&mut r)?;
    Ok(if previous.0 <= published {
        previous.1
    } else {
        None
    })
}

/// A slot's version and, unless deleted, its row, borrowed.
type BorrowedSlot<'a> = (u64, Option<(u32, i64, &'a [u8])>);

fn borrowed_slot<'a>(r: &mut Reader<'a>) -> Result<BorrowedSlot<'a>> {
    let version = r.u64()?;
    let row = match r.u8()? {
        0 => None,
        _ => {
            let b = r.take(4)?;
            let schema = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            let event_ts = r.u64()? as i64;
            let n = r.varint()? as usize;
            Some((schema, event_ts, r.take(n)?))
        }
    };
    Ok((version, row))
}

fn decode_slot(r: &mut Reader<'_>) -> Result<Slot> {
    let version = r.u64()?;
    let state = match r.u8()? {
        0 => SlotState::Deleted,
        _ => {
            let b = r.take(4)?;
            let schema = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            let event_ts = r.u64()? as i64;
            let n = r.varint()? as usize;
            let values = r.take(n)?.to_vec();
            SlotState::Row {
                schema,
                event_ts,
                values,
            }
        }
    };
    Ok(Slot { version, state })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(ts: i64) -> SlotState {
        SlotState::Row {
            schema: 1,
            event_ts: ts,
            values: vec![1, 2, 3],
        }
    }

    #[test]
    fn a_sync_in_progress_is_invisible_and_its_predecessor_is_kept() {
        let v1 = Entry::next(None, 0, 1, row(10));
        assert!(v1.visible(0).is_none(), "version 1 is not published yet");
        assert_eq!(v1.visible(1).map(|s| s.version), Some(1));
        let v2 = Entry::next(Some(v1.clone()), 1, 2, row(20));
        assert_eq!(v2.visible(1), Some(&v1.current), "readers of 1 still see 1");
        assert_eq!(v2.visible(2).map(|s| s.version), Some(2));
        let round = Entry::decode(&v2.encode()).unwrap();
        assert_eq!(round, v2);
        // The borrowed read picks the same slot as `visible`.
        let bytes = v2.encode();
        for published in 0..3 {
            let want = v2.visible(published).map(|s| match &s.state {
                SlotState::Row {
                    schema,
                    event_ts,
                    values,
                } => (*schema, *event_ts, values.clone()),
                SlotState::Deleted => unreachable!(),
            });
            let got = visible_row(&bytes, published)
                .unwrap()
                .map(|(s, t, v)| (s, t, v.to_vec()));
            assert_eq!(got, want, "published {published}");
        }
    }

    #[test]
    fn rows_of_a_killed_sync_never_become_previous() {
        let v1 = Entry::next(None, 0, 1, row(10));
        // Sync 2 wrote the key and was killed; sync 3 (published still 1) rewrites it.
        let killed = Entry::next(Some(v1.clone()), 1, 2, row(20));
        let v3 = Entry::next(Some(killed), 1, 3, row(30));
        assert_eq!(v3.previous.as_ref(), Some(&v1.current));
        assert_eq!(v3.visible(1), Some(&v1.current));
    }

    #[test]
    fn deletes_are_versioned_too() {
        let v1 = Entry::next(None, 0, 1, row(10));
        let v2 = Entry::next(Some(v1.clone()), 1, 2, SlotState::Deleted);
        assert_eq!(v2.visible(1), Some(&v1.current));
        assert_eq!(v2.visible(2).map(|s| &s.state), Some(&SlotState::Deleted));
        assert_eq!(Entry::decode(&v2.encode()).unwrap(), v2);
    }

    #[test]
    fn damaged_entries_are_errors() {
        let bytes = Entry::next(None, 0, 1, row(10)).encode();
        for cut in 0..bytes.len() {
            assert!(Entry::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        assert!(Entry::decode(&[9, 0]).is_err());
    }
}
