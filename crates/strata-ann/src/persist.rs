//! The index file: `<dir>/index.sann`, one file so that a rename publishes it whole.
//!
//! Layout (little-endian): magic `STRATANN`, format version (u32), header length (u32) and a
//! JSON header (parameters, item count, entry point, top layer); then ids (u64 × n),
//! created_at (i64 × n), each declared field's column (int: presence u8 × n then i64 × n;
//! string: dictionary size u64, each entry u32 length + UTF-8, then codes u32 × n), vectors
//! (f32 × n × dim), node layers (u8 × n), layer-0 links (u32 × n × (1 + 2m)), upper-layer
//! links (u64 count then u32s); last, a CRC-32C of everything before it and `STRATEND`.
//! The payload index is rebuilt on open.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{AnnError, Result};
use crate::graph::Graph;
use crate::index::Index;
use crate::params::{FieldKind, IndexParams};
use crate::payload::{Column, PayloadStore, MISSING};

const MAGIC: &[u8; 8] = b"STRATANN";
const END: &[u8; 8] = b"STRATEND";
const VERSION: u32 = 1;
/// The file's name inside an index directory.
pub const FILE_NAME: &str = "index.sann";

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    params: IndexParams,
    items: u64,
    entry: u32,
    max_level: u32,
}

struct CrcWriter {
    inner: BufWriter<File>,
    crc: u32,
}

impl CrcWriter {
    fn put(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.crc = crc32c::crc32c_append(self.crc, bytes);
        self.inner.write_all(bytes)
    }

    fn put_u32s(&mut self, xs: &[u32]) -> std::io::Result<()> {
        let mut buf = Vec::with_capacity(4 * 4096);
        for chunk in xs.chunks(4096) {
            buf.clear();
            chunk
                .iter()
                .for_each(|x| buf.extend_from_slice(&x.to_le_bytes()));
            self.put(&buf)?;
        }
        Ok(())
    }

    fn put_f32s(&mut self, xs: &[f32]) -> std::io::Result<()> {
        let mut buf = Vec::with_capacity(4 * 4096);
        for chunk in xs.chunks(4096) {
            buf.clear();
            chunk
                .iter()
                .for_each(|x| buf.extend_from_slice(&x.to_le_bytes()));
            self.put(&buf)?;
        }
        Ok(())
    }

    fn put_i64s(&mut self, xs: impl Iterator<Item = i64>) -> std::io::Result<()> {
        let mut buf = Vec::with_capacity(8 * 4096);
        for x in xs {
            buf.extend_from_slice(&x.to_le_bytes());
            if buf.len() >= 8 * 4096 {
                self.put(&buf)?;
                buf.clear();
            }
        }
        self.put(&buf)
    }
}

impl Index {
    /// Writes the index to `<dir>/index.sann` (the directory is created when missing): into a
    /// temporary file, fsync'd, renamed over the old file, then the directory fsync'd. A crash
    /// leaves the old file or the new one, never a torn one.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let path = dir.join(FILE_NAME);
        let tmp = dir.join(format!("{FILE_NAME}.tmp"));
        let io = |context: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| AnnError::Io {
                context,
                path,
                source,
            }
        };
        std::fs::create_dir_all(dir).map_err(io("creating index directory", dir))?;
        let file = File::create(&tmp).map_err(io("creating", &tmp))?;
        let mut w = CrcWriter {
            inner: BufWriter::with_capacity(1 << 20, file),
            crc: 0,
        };
        self.write_body(&mut w).map_err(io("writing", &tmp))?;
        let crc = w.crc;
        w.inner
            .write_all(&crc.to_le_bytes())
            .map_err(io("writing", &tmp))?;
        w.inner.write_all(END).map_err(io("writing", &tmp))?;
        let file = w
            .inner
            .into_inner()
            .map_err(|e| e.into_error())
            .map_err(io("writing", &tmp))?;
        file.sync_all().map_err(io("syncing", &tmp))?;
        drop(file);
        std::fs::rename(&tmp, &path).map_err(io("renaming into place", &path))?;
        strata_core::fsutil::fsync_dir(dir).map_err(io("syncing directory", dir))?;
        Ok(())
    }

    fn write_body(&self, w: &mut CrcWriter) -> std::io::Result<()> {
        let n = self.ids.len();
        let header = Header {
            params: self.params.clone(),
            items: n as u64,
            entry: self.graph.entry,
            max_level: self.graph.max_level as u32,
        };
        let header = serde_json::to_vec(&header).map_err(std::io::Error::other)?;
        w.put(MAGIC)?;
        w.put(&VERSION.to_le_bytes())?;
        w.put(&(header.len() as u32).to_le_bytes())?;
        w.put(&header)?;
        w.put_i64s(self.ids.iter().map(|&x| x as i64))?;
        w.put_i64s(self.payloads.created_at.iter().copied())?;
        for column in &self.payloads.columns {
            match column {
                Column::Int(v) => {
                    let present: Vec<u8> = v.iter().map(|x| x.is_some() as u8).collect();
                    w.put(&present)?;
                    w.put_i64s(v.iter().map(|x| x.unwrap_or(0)))?;
                }
                Column::Str { codes, dict, .. } => {
                    w.put(&(dict.len() as u64).to_le_bytes())?;
                    for s in dict {
                        w.put(&(s.len() as u32).to_le_bytes())?;
                        w.put(s.as_bytes())?;
                    }
                    w.put_u32s(codes)?;
                }
            }
        }
        w.put_f32s(&self.vectors)?;
        w.put(&self.graph.levels)?;
        w.put_u32s(&self.graph.layer0)?;
        w.put(&(self.graph.upper.len() as u64).to_le_bytes())?;
        w.put_u32s(&self.graph.upper)?;
        Ok(())
    }

    /// Opens the index saved in `dir`. A missing, truncated or damaged file, or one of another
    /// format version, is an error that says so; nothing in the file is trusted before its
    /// checksum and every link and code have been checked.
    pub fn open(dir: &Path) -> Result<Index> {
        let path = dir.join(FILE_NAME);
        let bytes = std::fs::read(&path).map_err(|source| AnnError::Io {
            context: "reading",
            path: path.clone(),
            source,
        })?;
        decode(&bytes).map_err(|reason| AnnError::Corrupt { path, reason })
    }
}

struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, len: usize, what: &str) -> Result<&'a [u8], String> {
        let end = self
            .at
            .checked_add(len)
            .filter(|&e| e <= self.bytes.len())
            .ok_or_else(|| format!("file ends inside {what}"))?;
        let s = &self.bytes[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn u32(&mut self, what: &str) -> Result<u32, String> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self, what: &str) -> Result<u64, String> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    fn array(&mut self, count: usize, width: usize, what: &str) -> Result<&'a [u8], String> {
        let len = count
            .checked_mul(width)
            .ok_or_else(|| format!("{what} is too large"))?;
        self.take(len, what)
    }

    fn u32s(&mut self, count: usize, what: &str) -> Result<Vec<u32>, String> {
        Ok(self
            .array(count, 4, what)?
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect())
    }

    fn i64s(&mut self, count: usize, what: &str) -> Result<Vec<i64>, String> {
        Ok(self
            .array(count, 8, what)?
            .chunks_exact(8)
            .map(|b| {
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                i64::from_le_bytes(a)
            })
            .collect())
    }
}

fn decode(bytes: &[u8]) -> Result<Index, String> {
    if bytes.len() < MAGIC.len() + 8 + END.len() + 4 {
        return Err(format!("only {} bytes", bytes.len()));
    }
    if &bytes[..8] != MAGIC {
        return Err("not a Strata vector index (bad magic)".into());
    }
    let (body, trailer) = bytes.split_at(bytes.len() - 12);
    if &trailer[4..] != END {
        return Err("truncated (no end marker)".into());
    }
    let stored = u32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]);
    if crc32c::crc32c(body) != stored {
        return Err("checksum mismatch".into());
    }
    let mut c = Cursor { bytes: body, at: 8 };
    let version = c.u32("format version")?;
    if version != VERSION {
        return Err(format!(
            "format version {version}, this build reads {VERSION}: rebuild the index"
        ));
    }
    let hlen = c.u32("header length")? as usize;
    let header: Header =
        serde_json::from_slice(c.take(hlen, "header")?).map_err(|e| format!("bad header: {e}"))?;
    let params = header.params;
    params.validate().map_err(|e| e.to_string())?;
    let n = usize::try_from(header.items).map_err(|_| "item count too large".to_string())?;
    if n > u32::MAX as usize || n > body.len() {
        return Err(format!("item count {n} is impossible for the file size"));
    }
    let ids: Vec<u64> = c.i64s(n, "ids")?.into_iter().map(|x| x as u64).collect();
    let created_at = c.i64s(n, "created_at")?;
    let mut columns = Vec::with_capacity(params.schema.fields.len());
    for field in &params.schema.fields {
        match field.kind {
            FieldKind::Int => {
                let present = c.array(n, 1, "field presence")?;
                let values = c.i64s(n, "field values")?;
                columns.push(Column::Int(
                    present
                        .iter()
                        .zip(values)
                        .map(|(&p, v)| (p != 0).then_some(v))
                        .collect(),
                ));
            }
            FieldKind::Str => {
                let size = c.u64("dictionary size")? as usize;
                if size > body.len() {
                    return Err("dictionary size is impossible for the file size".into());
                }
                // No capacity from the file: a forged size must not reserve memory.
                let mut dict = Vec::new();
                let mut lookup = HashMap::new();
                for i in 0..size {
                    let len = c.u32("dictionary entry")? as usize;
                    let s = std::str::from_utf8(c.take(len, "dictionary entry")?)
                        .map_err(|_| "dictionary entry is not UTF-8".to_string())?
                        .to_string();
                    if lookup.insert(s.clone(), i as u32).is_some() {
                        return Err(format!("dictionary of {} repeats an entry", field.name));
                    }
                    dict.push(s);
                }
                let codes = c.u32s(n, "field codes")?;
                if codes.iter().any(|&x| x != MISSING && x as usize >= size) {
                    return Err(format!(
                        "a code of field {} is past its dictionary",
                        field.name
                    ));
                }
                columns.push(Column::Str {
                    codes,
                    dict,
                    lookup,
                });
            }
        }
    }
    let vectors: Vec<f32> = c
        .array(n.saturating_mul(params.dim), 4, "vectors")?
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    if vectors.iter().any(|x| !x.is_finite()) {
        return Err("a vector has a non-finite value".into());
    }
    let levels = c.array(n, 1, "node layers")?.to_vec();
    let mut graph = Graph::empty(params.m);
    let layer0 = c.u32s(n.saturating_mul(1 + graph.m0), "layer-0 links")?;
    let upper_len = c.u64("upper-layer link count")? as usize;
    let upper = c.u32s(upper_len, "upper-layer links")?;
    if c.at != body.len() {
        return Err(format!(
            "{} bytes after the last section",
            body.len() - c.at
        ));
    }
    let mut offset = 0u64;
    graph.upper_start = levels
        .iter()
        .map(|&l| {
            let start = offset;
            offset += l as u64 * (1 + params.m) as u64;
            start
        })
        .collect();
    graph.levels = levels;
    graph.layer0 = layer0;
    graph.upper = upper;
    graph.entry = header.entry;
    graph.max_level = header.max_level as usize;
    graph.validate()?;
    let mut seen = std::collections::HashSet::with_capacity(n);
    if !ids.iter().all(|id| seen.insert(*id)) {
        return Err("an id appears twice".into());
    }
    let payloads = PayloadStore {
        created_at,
        columns,
    };
    Ok(Index::from_parts(params, ids, vectors, payloads, graph))
}

/// The path of the index file in `dir`.
pub fn index_file(dir: &Path) -> PathBuf {
    dir.join(FILE_NAME)
}
