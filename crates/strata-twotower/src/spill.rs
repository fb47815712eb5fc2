//! The on-disk example source: examples are written once to an anonymous temp file of
//! fixed-width rows; each pass reads it back in shuffled chunks through a seeded shuffle
//! buffer, so memory stays at `buffer_rows` rows whatever the data size.

use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::config::TowerSpec;
use crate::data::{Batch, Columns, ExampleSource};
use crate::error::{Error, Result};
use crate::rng::Rng;

/// Fixed-width row layout: user_id u64, item_id u64, weight f32, user numerics (f32 each),
/// user categoricals (u64 each), item numerics, item categoricals; little-endian.
#[derive(Debug, Clone, Copy)]
struct Layout {
    user_numeric: usize,
    user_categorical: usize,
    item_numeric: usize,
    item_categorical: usize,
}

impl Layout {
    fn new(user: &TowerSpec, item: &TowerSpec) -> Self {
        Layout {
            user_numeric: user.numeric.len(),
            user_categorical: user.categorical.len(),
            item_numeric: item.numeric.len(),
            item_categorical: item.categorical.len(),
        }
    }

    fn row_bytes(&self) -> usize {
        20 + 4 * (self.user_numeric + self.item_numeric)
            + 8 * (self.user_categorical + self.item_categorical)
    }
}

/// Writes examples to the spill file; `finish` turns it into a source.
pub struct SpillWriter {
    user: TowerSpec,
    item: TowerSpec,
    layout: Layout,
    out: BufWriter<File>,
    where_: PathBuf,
    rows: u64,
    weighted: bool,
    row: Vec<u8>,
}

impl SpillWriter {
    /// An anonymous temp file (removed by the OS when dropped) in `dir`, or the system temp dir.
    pub fn new(user: &TowerSpec, item: &TowerSpec, dir: Option<&Path>) -> Result<Self> {
        let where_ = dir.map_or_else(std::env::temp_dir, Path::to_path_buf);
        let file = tempfile::tempfile_in(&where_)
            .map_err(|e| Error::io("creating a spill file in", &where_, e))?;
        let layout = Layout::new(user, item);
        Ok(SpillWriter {
            user: user.clone(),
            item: item.clone(),
            layout,
            out: BufWriter::with_capacity(1 << 20, file),
            where_,
            rows: 0,
            weighted: false,
            row: Vec::with_capacity(layout.row_bytes()),
        })
    }

    /// Appends a batch (checked against the specs first: nothing of a bad batch is written).
    pub fn push(&mut self, batch: &Batch) -> Result<()> {
        batch.check(&self.user, &self.item)?;
        self.weighted |= batch.weight.is_some();
        for r in 0..batch.rows() {
            self.row.clear();
            self.row.extend_from_slice(&batch.user_id[r].to_le_bytes());
            self.row.extend_from_slice(&batch.item_id[r].to_le_bytes());
            self.row.extend_from_slice(&batch.weight(r).to_le_bytes());
            encode(&mut self.row, &batch.user, r);
            encode(&mut self.row, &batch.item, r);
            self.out
                .write_all(&self.row)
                .map_err(|e| Error::io("writing the spill file in", &self.where_, e))?;
        }
        self.rows += batch.rows() as u64;
        Ok(())
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// The readable source: each pass shuffles with `seed` (and the pass number).
    pub fn finish(self, seed: u64) -> Result<SpillFile> {
        let where_ = self.where_;
        let file = self
            .out
            .into_inner()
            .map_err(|e| Error::io("flushing the spill file in", &where_, e.into_error()))?;
        Ok(SpillFile {
            file,
            where_,
            user: self.user,
            item: self.item,
            layout: self.layout,
            rows: self.rows,
            weighted: self.weighted,
            seed,
            chunk_rows: 1024,
            buffer_rows: 65_536,
            passes: 0,
            chunks: Vec::new(),
            next_chunk: 0,
            buffer: Vec::new(),
            rng: Rng::new(seed),
        })
    }
}

fn encode(out: &mut Vec<u8>, cols: &Columns, r: usize) {
    for c in &cols.numeric {
        out.extend_from_slice(&c[r].to_le_bytes());
    }
    for c in &cols.categorical {
        out.extend_from_slice(&c[r].to_le_bytes());
    }
}

/// Examples on disk, read back each pass in a seeded shuffled order in bounded memory.
pub struct SpillFile {
    file: File,
    where_: PathBuf,
    user: TowerSpec,
    item: TowerSpec,
    layout: Layout,
    rows: u64,
    weighted: bool,
    seed: u64,
    chunk_rows: usize,
    buffer_rows: usize,
    passes: u64,
    /// This pass's chunk order, and the next one to load.
    chunks: Vec<u64>,
    next_chunk: usize,
    /// Raw rows waiting to be drawn (at most `buffer_rows + chunk_rows`).
    buffer: Vec<u8>,
    rng: Rng,
}

impl SpillFile {
    /// Rows read from disk at once, and rows held in the shuffle buffer (memory is about
    /// `(buffer_rows + chunk_rows) × row width`). Defaults: 1024 and 65,536.
    pub fn with_buffer(mut self, chunk_rows: usize, buffer_rows: usize) -> Self {
        self.chunk_rows = chunk_rows.max(1);
        self.buffer_rows = buffer_rows.max(1);
        self
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    fn buffered_rows(&self) -> usize {
        self.buffer.len() / self.layout.row_bytes()
    }

    fn load_chunk(&mut self) -> Result<()> {
        let chunk = self.chunks[self.next_chunk];
        self.next_chunk += 1;
        let width = self.layout.row_bytes() as u64;
        let first = chunk * self.chunk_rows as u64;
        let n = (self.rows - first).min(self.chunk_rows as u64);
        let start = self.buffer.len();
        self.buffer.resize(start + (n * width) as usize, 0);
        let where_ = &self.where_;
        self.file
            .seek(SeekFrom::Start(first * width))
            .and_then(|_| self.file.read_exact(&mut self.buffer[start..]))
            .map_err(|e| Error::io("reading the spill file in", where_, e))
    }

    fn decode_into(&self, row: &[u8], out: &mut Batch) {
        let mut at = 0usize;
        let mut take = |n: usize| {
            let s = &row[at..at + n];
            at += n;
            s
        };
        out.user_id.push(u64_le(take(8)));
        out.item_id.push(u64_le(take(8)));
        let w = f32_le(take(4));
        if let Some(ws) = out.weight.as_mut() {
            ws.push(w);
        }
        for cols in [&mut out.user, &mut out.item] {
            for c in cols.numeric.iter_mut() {
                c.push(f32_le(take(4)));
            }
            for c in cols.categorical.iter_mut() {
                c.push(u64_le(take(8)));
            }
        }
    }
}

fn u64_le(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    u64::from_le_bytes(a)
}

fn f32_le(b: &[u8]) -> f32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(b);
    f32::from_le_bytes(a)
}

impl ExampleSource for SpillFile {
    fn reset(&mut self) -> Result<()> {
        let n_chunks = self.rows.div_ceil(self.chunk_rows as u64);
        self.chunks = (0..n_chunks).collect();
        let mut rng = Rng::derive(self.seed, self.passes);
        rng.shuffle(&mut self.chunks);
        self.rng = rng;
        self.next_chunk = 0;
        self.buffer.clear();
        self.passes += 1;
        Ok(())
    }

    fn next_batch(&mut self, max_rows: usize) -> Result<Option<Batch>> {
        let width = self.layout.row_bytes();
        let mut out = Batch::for_specs(&self.user, &self.item);
        if self.weighted {
            out.weight = Some(Vec::new());
        }
        let mut row = vec![0u8; width];
        while out.rows() < max_rows {
            // Fill the buffer before drawing, so rows mix across many chunks.
            while self.next_chunk < self.chunks.len()
                && self.buffered_rows() + self.chunk_rows <= self.buffer_rows.max(self.chunk_rows)
            {
                self.load_chunk()?;
            }
            let have = self.buffered_rows();
            if have == 0 {
                break;
            }
            let pick = self.rng.below(have);
            row.copy_from_slice(&self.buffer[pick * width..(pick + 1) * width]);
            // Swap-remove: the last buffered row takes the drawn one's place.
            let last = (have - 1) * width;
            self.buffer.copy_within(last..last + width, pick * width);
            self.buffer.truncate(last);
            self.decode_into(&row, &mut out);
        }
        Ok((out.rows() > 0).then_some(out))
    }
}
