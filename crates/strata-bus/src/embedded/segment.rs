//! One segment: a `<base_offset:020>.log` file of framed records, plus its sparse index.
//!
//! Record frame (little endian):
//!
//! ```text
//! len: u32        bytes after this field
//! crc: u32        CRC32C of everything after this field
//! offset: u64
//! timestamp: i64 epoch milliseconds
//! key_len: u32
//! key: [u8; key_len]
//! value: [u8; len - 24 - key_len]
//! ```
//!
//! Records are self-describing: recovery rebuilds offsets, timestamps and the index from the
//! log file alone. The `.index` file is only a cache written when a segment is closed; it is
//! ignored (and rebuilt) whenever it does not match the log file.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use bytes::{Bytes, BytesMut};

use crate::log::{Offset, Record};

/// Bytes of a frame before the key: len, crc, offset, timestamp, key_len.
pub(crate) const FRAME_HEADER: usize = 28;
/// Bytes covered by `len` besides key and value: crc, offset, timestamp, key_len.
const LEN_FIXED: usize = 24;
/// The largest single record (key + value) accepted.
pub(crate) const MAX_RECORD_BYTES: usize = 64 << 20;
/// One sparse index entry per this many bytes of log.
pub(crate) const INDEX_INTERVAL: u64 = 32 << 10;
/// Default read-ahead when decoding frames from a file.
const CHUNK: usize = 256 << 10;

const INDEX_MAGIC: &[u8; 4] = b"SBIX";
const INDEX_VERSION: u32 = 1;
/// magic, version, log_size, end_offset, max_timestamp, entry count.
const INDEX_HEADER: usize = 4 + 4 + 8 + 8 + 8 + 8;

/// Size of `record` once framed.
pub(crate) fn frame_len(record: &Record) -> usize {
    FRAME_HEADER + record.key.len() + record.value.len()
}

/// Appends the frame of `record` at `offset` to `buf`.
pub(crate) fn encode(buf: &mut Vec<u8>, offset: Offset, record: &Record) {
    let len = LEN_FIXED + record.key.len() + record.value.len();
    let start = buf.len();
    // Sizes are bounded by MAX_RECORD_BYTES, checked before a record reaches the writer.
    buf.extend_from_slice(&(len as u32).to_le_bytes());
    buf.extend_from_slice(&[0; 4]);
    buf.extend_from_slice(&offset.to_le_bytes());
    buf.extend_from_slice(&record.timestamp_ms.to_le_bytes());
    buf.extend_from_slice(&(record.key.len() as u32).to_le_bytes());
    buf.extend_from_slice(&record.key);
    buf.extend_from_slice(&record.value);
    let crc = crc32c::crc32c(&buf[start + 8..]);
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// A decoded frame; key and value share the read buffer.
#[derive(Debug, Clone)]
pub(crate) struct Frame {
    /// Position of the frame in the segment file.
    pub pos: u64,
    /// Total framed length.
    pub len: u64,
    pub offset: Offset,
    pub timestamp_ms: i64,
    pub key: Bytes,
    pub value: Bytes,
}

/// What the next bytes of a segment hold.
#[derive(Debug)]
pub(crate) enum Next {
    Frame(Frame),
    /// Exactly at the end of the readable region.
    End,
    /// A torn or corrupt frame starts at `pos`.
    Bad {
        pos: u64,
        reason: String,
    },
}

/// Decodes frames sequentially from a file region with positional reads.
pub(crate) struct FrameReader<'a> {
    file: &'a File,
    /// File position of `chunk[0]`.
    chunk_pos: u64,
    chunk: Bytes,
    /// Cursor within `chunk`.
    at: usize,
    /// End of the readable region.
    limit: u64,
    read_ahead: usize,
}

impl<'a> FrameReader<'a> {
    pub(crate) fn new(file: &'a File, pos: u64, limit: u64, read_ahead: usize) -> Self {
        FrameReader {
            file,
            chunk_pos: pos,
            chunk: Bytes::new(),
            at: 0,
            limit,
            read_ahead: read_ahead.clamp(4 << 10, CHUNK * 4),
        }
    }

    fn pos(&self) -> u64 {
        self.chunk_pos + self.at as u64
    }

    /// Makes at least `need` bytes available at the cursor (fewer only at `limit`).
    fn fill(&mut self, need: usize) -> io::Result<()> {
        if self.chunk.len() - self.at >= need {
            return Ok(());
        }
        let pos = self.pos();
        let want = need.max(self.read_ahead) as u64;
        let len = want.min(self.limit.saturating_sub(pos)) as usize;
        let mut buf = BytesMut::zeroed(len);
        let mut done = 0;
        while done < len {
            let n = self.file.read_at(&mut buf[done..], pos + done as u64)?;
            if n == 0 {
                break;
            }
            done += n;
        }
        buf.truncate(done);
        self.chunk = buf.freeze();
        self.chunk_pos = pos;
        self.at = 0;
        Ok(())
    }

    pub(crate) fn next_frame(&mut self) -> io::Result<Next> {
        let pos = self.pos();
        if pos >= self.limit {
            return Ok(Next::End);
        }
        self.fill(FRAME_HEADER)?;
        let avail = self.chunk.len() - self.at;
        if avail < FRAME_HEADER {
            return Ok(bad(pos, format!("torn header ({avail} bytes)")));
        }
        let h = &self.chunk[self.at..self.at + FRAME_HEADER];
        let len = u32_at(h, 0) as usize;
        let crc = u32_at(h, 4);
        let key_len = u32_at(h, 24) as usize;
        if !(LEN_FIXED..=LEN_FIXED + MAX_RECORD_BYTES).contains(&len) || key_len > len - LEN_FIXED {
            return Ok(bad(pos, format!("bad frame length {len} (key {key_len})")));
        }
        let total = 4 + len;
        self.fill(total)?;
        if self.chunk.len() - self.at < total {
            let avail = self.chunk.len() - self.at;
            return Ok(bad(pos, format!("torn frame ({avail} of {total} bytes)")));
        }
        let frame = self.chunk.slice(self.at..self.at + total);
        if crc32c::crc32c(&frame[8..]) != crc {
            return Ok(bad(pos, "crc mismatch".to_string()));
        }
        self.at += total;
        let key_end = FRAME_HEADER + key_len;
        Ok(Next::Frame(Frame {
            pos,
            len: total as u64,
            offset: u64_at(&frame, 8),
            timestamp_ms: u64_at(&frame, 16) as i64,
            key: frame.slice(FRAME_HEADER..key_end),
            value: frame.slice(key_end..),
        }))
    }
}

fn bad(pos: u64, reason: String) -> Next {
    Next::Bad { pos, reason }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// The durable, reader-visible state of a segment.
#[derive(Debug, Clone)]
pub(crate) struct SegmentMeta {
    /// Bytes of fsync'd frames.
    pub size: u64,
    /// One past the last offset in the segment (== base when empty).
    pub end: Offset,
    /// Largest record timestamp (i64::MIN when empty).
    pub max_timestamp: i64,
    /// Sparse (offset, position) pairs, ascending; (base, 0) is implicit.
    pub index: Vec<(Offset, u64)>,
}

impl SegmentMeta {
    fn empty(base: Offset) -> Self {
        SegmentMeta {
            size: 0,
            end: base,
            max_timestamp: i64::MIN,
            index: Vec::new(),
        }
    }

    /// Position of the last indexed frame at or before `offset`.
    pub(crate) fn lookup(&self, offset: Offset) -> u64 {
        match self.index.partition_point(|(o, _)| *o <= offset) {
            0 => 0,
            i => self.index[i - 1].1,
        }
    }
}

/// A segment file shared by its partition's writer, readers and retention.
#[derive(Debug)]
pub(crate) struct Segment {
    pub base: Offset,
    pub path: PathBuf,
    pub file: File,
    pub meta: RwLock<SegmentMeta>,
}

impl Segment {
    pub(crate) fn log_path(dir: &Path, base: Offset) -> PathBuf {
        dir.join(format!("{base:020}.log"))
    }

    pub(crate) fn index_path(&self) -> PathBuf {
        self.path.with_extension("index")
    }

    /// Creates an empty segment file (the caller fsyncs the directory).
    pub(crate) fn create(dir: &Path, base: Offset) -> io::Result<Segment> {
        let path = Self::log_path(dir, base);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)?;
        Ok(Segment {
            base,
            path,
            file,
            meta: RwLock::new(SegmentMeta::empty(base)),
        })
    }

    /// Opens an existing segment. A closed segment trusts a matching index file; the last one
    /// (`recover`) is scanned fully and any torn or corrupt tail is cut off.
    pub(crate) fn open(path: PathBuf, base: Offset, recover: bool) -> io::Result<Segment> {
        let file = OpenOptions::new().read(true).write(true).open(&path)?;
        let len = file.metadata()?.len();
        let seg = Segment {
            base,
            path,
            file,
            meta: RwLock::new(SegmentMeta::empty(base)),
        };
        if !recover {
            if let Some(meta) = seg.load_index(len) {
                seg.set_meta(meta);
                return Ok(seg);
            }
        }
        let (meta, bad) = seg.scan(len)?;
        if let Some((pos, reason)) = bad {
            if recover {
                tracing::warn!(
                    segment = %seg.path.display(),
                    at = pos,
                    cut_bytes = len - pos,
                    reason = %reason,
                    "truncating torn or corrupt segment tail"
                );
                seg.file.set_len(pos)?;
                seg.file.sync_all()?;
            } else {
                tracing::error!(
                    segment = %seg.path.display(),
                    at = pos,
                    unreadable_bytes = len - pos,
                    reason = %reason,
                    "corrupt closed segment; records after this point are unreadable"
                );
            }
        }
        if !recover {
            if let Err(e) = seg.write_index(&meta) {
                tracing::warn!(segment = %seg.path.display(), error = %e, "cannot write index");
            }
        }
        seg.set_meta(meta);
        Ok(seg)
    }

    fn set_meta(&self, meta: SegmentMeta) {
        *self.meta.write().unwrap_or_else(|e| e.into_inner()) = meta;
    }

    pub(crate) fn meta(&self) -> SegmentMeta {
        self.meta.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Validates every frame; returns the valid prefix and, if any, where and why it ends.
    fn scan(&self, len: u64) -> io::Result<(SegmentMeta, Option<(u64, String)>)> {
        let mut meta = SegmentMeta::empty(self.base);
        let mut reader = FrameReader::new(&self.file, 0, len, 4 << 20);
        let mut last_indexed = 0;
        loop {
            match reader.next_frame()? {
                Next::End => return Ok((meta, None)),
                Next::Bad { pos, reason } => return Ok((meta, Some((pos, reason)))),
                Next::Frame(f) => {
                    if f.offset != meta.end {
                        let reason = format!("offset {} where {} was expected", f.offset, meta.end);
                        return Ok((meta, Some((f.pos, reason))));
                    }
                    if f.pos - last_indexed >= INDEX_INTERVAL {
                        meta.index.push((f.offset, f.pos));
                        last_indexed = f.pos;
                    }
                    meta.size = f.pos + f.len;
                    meta.end = f.offset + 1;
                    meta.max_timestamp = meta.max_timestamp.max(f.timestamp_ms);
                }
            }
        }
    }

    fn load_index(&self, log_len: u64) -> Option<SegmentMeta> {
        let bytes = std::fs::read(self.index_path()).ok()?;
        if bytes.len() < INDEX_HEADER + 4 || &bytes[0..4] != INDEX_MAGIC {
            return None;
        }
        let (body, crc) = bytes.split_at(bytes.len() - 4);
        if crc32c::crc32c(body) != u32_at(crc, 0) || u32_at(body, 4) != INDEX_VERSION {
            return None;
        }
        let size = u64_at(body, 8);
        let count = usize::try_from(u64_at(body, 32)).ok()?;
        if size != log_len || body.len() != INDEX_HEADER + count.checked_mul(16)? {
            return None;
        }
        let index = (0..count)
            .map(|i| {
                let at = INDEX_HEADER + i * 16;
                (u64_at(body, at), u64_at(body, at + 8))
            })
            .collect();
        Some(SegmentMeta {
            size,
            end: u64_at(body, 16),
            max_timestamp: u64_at(body, 24) as i64,
            index,
        })
    }

    /// Writes the index cache of a closed segment (temp file + rename; no fsync needed: a lost
    /// or stale index is detected and rebuilt from the log).
    pub(crate) fn write_index(&self, meta: &SegmentMeta) -> io::Result<()> {
        let mut buf = Vec::with_capacity(INDEX_HEADER + meta.index.len() * 16 + 4);
        buf.extend_from_slice(INDEX_MAGIC);
        buf.extend_from_slice(&INDEX_VERSION.to_le_bytes());
        buf.extend_from_slice(&meta.size.to_le_bytes());
        buf.extend_from_slice(&meta.end.to_le_bytes());
        buf.extend_from_slice(&meta.max_timestamp.to_le_bytes());
        buf.extend_from_slice(&(meta.index.len() as u64).to_le_bytes());
        for (o, p) in &meta.index {
            buf.extend_from_slice(&o.to_le_bytes());
            buf.extend_from_slice(&p.to_le_bytes());
        }
        let crc = crc32c::crc32c(&buf);
        buf.extend_from_slice(&crc.to_le_bytes());
        let tmp = self.path.with_extension("index.tmp");
        std::fs::write(&tmp, &buf)?;
        std::fs::rename(&tmp, self.index_path())
    }
}
