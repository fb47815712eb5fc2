//! The HNSW graph: the layer walk shared by build and search, the visited-set pool, and the
//! frozen layout a built or loaded index searches (flat `u32` arrays, one block per node and
//! layer: a count then the links).

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::Mutex;

/// A node and its distance to the query (smaller is closer).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Cand {
    pub d: f32,
    pub id: u32,
}

impl Eq for Cand {}

impl Ord for Cand {
    fn cmp(&self, other: &Self) -> Ordering {
        self.d.total_cmp(&other.d).then(self.id.cmp(&other.id))
    }
}

impl PartialOrd for Cand {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Closest-first wrapper for the candidate queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Near(Cand);

impl Ord for Near {
    fn cmp(&self, other: &Self) -> Ordering {
        other.0.cmp(&self.0)
    }
}

impl PartialOrd for Near {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Which nodes a walk has seen: a mark per node, cleared by bumping the generation.
pub(crate) struct Visited {
    marks: Vec<u16>,
    gen: u16,
}

impl Visited {
    pub fn new(n: usize) -> Self {
        Visited {
            marks: vec![0; n],
            gen: 0,
        }
    }

    pub fn reset(&mut self, n: usize) {
        if self.marks.len() != n {
            self.marks = vec![0; n];
            self.gen = 0;
        }
        self.gen = self.gen.wrapping_add(1);
        if self.gen == 0 {
            self.marks.iter_mut().for_each(|m| *m = 0);
            self.gen = 1;
        }
    }

    /// Marks `id`; false when it was marked already (or is out of range).
    #[inline]
    pub fn insert(&mut self, id: u32) -> bool {
        match self.marks.get_mut(id as usize) {
            Some(m) if *m != self.gen => {
                *m = self.gen;
                true
            }
            _ => false,
        }
    }
}

/// Visited sets reused across searches so a query does not allocate one per call.
pub(crate) struct VisitedPool {
    n: usize,
    free: Mutex<Vec<Visited>>,
}

impl VisitedPool {
    pub fn new(n: usize) -> Self {
        VisitedPool {
            n,
            free: Mutex::new(Vec::new()),
        }
    }

    pub fn take(&self) -> Visited {
        let got = self.free.lock().map(|mut f| f.pop()).unwrap_or(None);
        let mut v = got.unwrap_or_else(|| Visited::new(self.n));
        v.reset(self.n);
        v
    }

    pub fn give(&self, v: Visited) {
        if let Ok(mut f) = self.free.lock() {
            if f.len() < 64 {
                f.push(v);
            }
        }
    }
}

/// A walk's reusable state: the visited set and a link buffer.
pub(crate) struct Scratch {
    pub visited: Visited,
    pub buf: Vec<u32>,
}

/// Read access to the links of a node on a layer.
pub(crate) trait Links {
    /// Copies the links of `node` on `layer` into `out` (cleared first).
    fn links(&self, node: u32, layer: usize, out: &mut Vec<u32>);
}

/// Greedy descent on one layer: the closest node reachable from `start`.
pub(crate) fn greedy<L: Links>(
    g: &L,
    start: Cand,
    layer: usize,
    dist: &impl Fn(u32) -> f32,
    buf: &mut Vec<u32>,
) -> Cand {
    let mut cur = start;
    loop {
        let mut moved = false;
        g.links(cur.id, layer, buf);
        for &e in buf.iter() {
            let d = dist(e);
            if d < cur.d {
                cur = Cand { d, id: e };
                moved = true;
            }
        }
        if !moved {
            return cur;
        }
    }
}

/// The best-first walk of one layer (HNSW's SEARCH-LAYER). Every reached node routes the walk;
/// only nodes `keep` accepts enter the result, so a filter narrows what is returned, not the
/// paths. The walk stops when the closest unexplored node is farther than the worst of `ef`
/// kept results; with fewer than `ef` kept it goes on, up to the whole component. Returns the
/// kept nodes, closest first.
pub(crate) fn search_layer<L: Links>(
    g: &L,
    entry: Cand,
    ef: usize,
    layer: usize,
    dist: &impl Fn(u32) -> f32,
    keep: &impl Fn(u32) -> bool,
    scratch: &mut Scratch,
) -> Vec<Cand> {
    let Scratch { visited, buf } = scratch;
    let ef = ef.max(1);
    let mut queue: BinaryHeap<Near> = BinaryHeap::with_capacity(ef * 2);
    let mut best: BinaryHeap<Cand> = BinaryHeap::with_capacity(ef + 1);
    visited.insert(entry.id);
    queue.push(Near(entry));
    if keep(entry.id) {
        best.push(entry);
    }
    let mut bound = if best.is_empty() {
        f32::INFINITY
    } else {
        entry.d
    };
    while let Some(Near(c)) = queue.pop() {
        if c.d > bound && best.len() >= ef {
            break;
        }
        g.links(c.id, layer, buf);
        for &e in buf.iter() {
            if !visited.insert(e) {
                continue;
            }
            let d = dist(e);
            if best.len() < ef || d < bound {
                queue.push(Near(Cand { d, id: e }));
                if keep(e) {
                    best.push(Cand { d, id: e });
                    if best.len() > ef {
                        best.pop();
                    }
                    if let Some(w) = best.peek() {
                        bound = w.d;
                    }
                }
            }
        }
    }
    best.into_sorted_vec()
}

/// The frozen graph: per node its top layer; layer-0 blocks of `1 + m0` words at
/// `node * (1 + m0)`; upper blocks of `1 + m` words, node `i`'s layer `l >= 1` at
/// `upper_start[i] + (l - 1) * (1 + m)`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Graph {
    pub m: usize,
    pub m0: usize,
    pub levels: Vec<u8>,
    pub layer0: Vec<u32>,
    pub upper_start: Vec<u64>,
    pub upper: Vec<u32>,
    pub entry: u32,
    pub max_level: usize,
}

impl Graph {
    pub fn empty(m: usize) -> Self {
        Graph {
            m,
            m0: 2 * m,
            levels: Vec::new(),
            layer0: Vec::new(),
            upper_start: Vec::new(),
            upper: Vec::new(),
            entry: 0,
            max_level: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.levels.len()
    }

    fn block(&self, node: u32, layer: usize) -> &[u32] {
        let i = node as usize;
        let (data, start, width) = if layer == 0 {
            (&self.layer0, i * (1 + self.m0), 1 + self.m0)
        } else {
            let base = self.upper_start.get(i).copied().unwrap_or(0) as usize;
            (&self.upper, base + (layer - 1) * (1 + self.m), 1 + self.m)
        };
        if self.levels.get(i).is_none_or(|&l| (l as usize) < layer) {
            return &[];
        }
        let Some(block) = data.get(start..start + width) else {
            return &[];
        };
        let count = (block[0] as usize).min(width - 1);
        &block[1..1 + count]
    }

    /// Checks that every link and count is in range (a loaded file is not trusted).
    pub fn validate(&self) -> Result<(), String> {
        let n = self.len();
        if self.layer0.len() != n * (1 + self.m0) {
            return Err("layer-0 link array has the wrong length".into());
        }
        if self.upper_start.len() != n {
            return Err("upper-layer offsets have the wrong length".into());
        }
        let mut expect = 0u64;
        for (i, &l) in self.levels.iter().enumerate() {
            if self.upper_start[i] != expect {
                return Err(format!("upper-layer offset of node {i} is wrong"));
            }
            expect += l as u64 * (1 + self.m) as u64;
        }
        if self.upper.len() as u64 != expect {
            return Err("upper-layer link array has the wrong length".into());
        }
        if n > 0 {
            if self.entry as usize >= n {
                return Err("entry point out of range".into());
            }
            if self.levels[self.entry as usize] as usize != self.max_level {
                return Err("entry point is not on the top layer".into());
            }
        }
        let check = |blocks: &[u32], width: usize| -> Result<(), String> {
            for block in blocks.chunks_exact(width) {
                let count = block[0] as usize;
                if count > width - 1 {
                    return Err("a node has more links than its layer allows".into());
                }
                if block[1..1 + count].iter().any(|&e| e as usize >= n) {
                    return Err("a link points past the last node".into());
                }
            }
            Ok(())
        };
        check(&self.layer0, 1 + self.m0)?;
        check(&self.upper, 1 + self.m)?;
        Ok(())
    }

    pub fn memory_bytes(&self) -> usize {
        self.levels.len()
            + 4 * self.layer0.len()
            + 8 * self.upper_start.len()
            + 4 * self.upper.len()
    }
}

impl Links for Graph {
    #[inline]
    fn links(&self, node: u32, layer: usize, out: &mut Vec<u32>) {
        out.clear();
        out.extend_from_slice(self.block(node, layer));
    }
}
