//! Building an index: items are collected by [`IndexBuilder::add`], then [`IndexBuilder::build`]
//! inserts them into the HNSW graph on a few threads (each node's links behind its own lock)
//! and freezes the graph into flat arrays.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::Instant;

use crate::distance::kernels;
use crate::error::{AnnError, Result};
use crate::graph::{greedy, search_layer, Cand, Graph, Links, Scratch, Visited};
use crate::index::Index;
use crate::params::{IndexParams, Metric, Payload};
use crate::payload::PayloadStore;

/// The highest layer a node may get (a layer draw beyond it is clipped).
const MAX_LEVEL: usize = 24;

/// Collects items, then builds an [`Index`].
pub struct IndexBuilder {
    params: IndexParams,
    ids: Vec<u64>,
    seen: HashMap<u64, u32>,
    vectors: Vec<f32>,
    payloads: PayloadStore,
}

impl std::fmt::Debug for IndexBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IndexBuilder")
            .field("params", &self.params)
            .field("items", &self.ids.len())
            .finish_non_exhaustive()
    }
}

impl IndexBuilder {
    /// A builder for an index with these parameters (checked here).
    pub fn new(params: IndexParams) -> Result<Self> {
        params.validate()?;
        let payloads = PayloadStore::new(&params.schema);
        Ok(IndexBuilder {
            params,
            ids: Vec::new(),
            seen: HashMap::new(),
            vectors: Vec::new(),
            payloads,
        })
    }

    /// Adds one item. Refused (and nothing added): a vector of the wrong length or with a
    /// non-finite value, a zero vector under cosine, an id added before, a payload field that
    /// is not declared or has a value of the wrong kind.
    pub fn add(&mut self, id: u64, vector: &[f32], payload: Payload) -> Result<()> {
        let dim = self.params.dim;
        if vector.len() != dim {
            return Err(AnnError::invalid(format!(
                "vector of item {id} has {} values, the index has dim {dim}",
                vector.len()
            )));
        }
        if vector.iter().any(|x| !x.is_finite()) {
            return Err(AnnError::invalid(format!(
                "vector of item {id} has a non-finite value"
            )));
        }
        if self.seen.contains_key(&id) {
            return Err(AnnError::invalid(format!("item {id} is added twice")));
        }
        if self.ids.len() >= u32::MAX as usize {
            return Err(AnnError::invalid("an index holds at most 2^32-1 items"));
        }
        PayloadStore::check(&self.params.schema, &payload)?;
        let start = self.vectors.len();
        self.vectors.extend_from_slice(vector);
        if self.params.metric == Metric::Cosine {
            let v = &mut self.vectors[start..];
            if !crate::index::normalize(v) {
                self.vectors.truncate(start);
                return Err(AnnError::invalid(format!(
                    "vector of item {id} is zero and has no cosine"
                )));
            }
        }
        self.seen.insert(id, self.ids.len() as u32);
        self.ids.push(id);
        self.payloads.push(&self.params.schema, payload);
        Ok(())
    }

    /// Items added so far.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Builds the graph on `threads` threads (0: as many as the machine has). With one thread
    /// the same items in the same order give the same graph; with more, insertion order (and so
    /// the graph, not its quality) varies from run to run.
    pub fn build(self, threads: usize) -> Result<Index> {
        let started = Instant::now();
        let n = self.ids.len();
        let p = &self.params;
        let graph = if n == 0 {
            Graph::empty(p.m)
        } else {
            let threads = if threads == 0 {
                std::thread::available_parallelism().map_or(1, |t| t.get())
            } else {
                threads
            };
            construct(p, &self.vectors, threads.clamp(1, n))?
        };
        tracing::info!(
            items = n,
            dim = p.dim,
            m = p.m,
            ef_construction = p.ef_construction,
            threads,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "vector index built"
        );
        Ok(Index::from_parts(
            self.params,
            self.ids,
            self.vectors,
            self.payloads,
            graph,
        ))
    }
}

/// splitmix64: the layer draw's random numbers.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn draw_levels(n: usize, m: usize, seed: u64) -> Vec<u8> {
    let ml = 1.0 / (m as f64).ln();
    let mut state = seed;
    (0..n)
        .map(|_| {
            // Uniform in (0, 1]: never ln(0).
            let u = ((splitmix(&mut state) >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
            ((-u.ln() * ml).floor() as usize).min(MAX_LEVEL) as u8
        })
        .collect()
}

/// Links while building: per node, one list per layer, each behind the node's lock.
struct Building {
    nodes: Vec<Mutex<Vec<Vec<u32>>>>,
}

impl Links for Building {
    fn links(&self, node: u32, layer: usize, out: &mut Vec<u32>) {
        out.clear();
        if let Some(lock) = self.nodes.get(node as usize) {
            if let Ok(lists) = lock.lock() {
                if let Some(l) = lists.get(layer) {
                    out.extend_from_slice(l);
                }
            }
        }
    }
}

/// HNSW's neighbour heuristic: walk candidates closest first and keep one only when it is
/// closer to the new node than to every one kept before (so links spread over directions).
fn select(cands: &[Cand], m: usize, dist: &impl Fn(u32, u32) -> f32) -> Vec<u32> {
    if cands.len() <= m {
        return cands.iter().map(|c| c.id).collect();
    }
    let mut kept: Vec<Cand> = Vec::with_capacity(m);
    for c in cands {
        if kept.len() >= m {
            break;
        }
        if kept.iter().all(|s| dist(c.id, s.id) >= c.d) {
            kept.push(*c);
        }
    }
    kept.iter().map(|c| c.id).collect()
}

fn construct(p: &IndexParams, vectors: &[f32], threads: usize) -> Result<Graph> {
    let n = vectors.len() / p.dim;
    let dim = p.dim;
    let k = kernels();
    let levels = draw_levels(n, p.m, p.seed);
    let vec_of = |i: u32| {
        let s = i as usize * dim;
        &vectors[s..s + dim]
    };
    // Maximum inner product through the L2 reduction: each vector x gets an extra coordinate
    // sqrt(M² - |x|²) (M the longest norm), which puts every vector on one sphere, where inner
    // product order is L2 order. Queries get 0 there, so a search still ranks by x·q.
    let aug: Vec<f32> = if p.metric == Metric::Dot {
        let norms: Vec<f32> = (0..n as u32)
            .map(|i| (k.dot)(vec_of(i), vec_of(i)))
            .collect();
        let max = norms.iter().copied().fold(0f32, f32::max);
        norms.iter().map(|&s| (max - s).max(0.0).sqrt()).collect()
    } else {
        Vec::new()
    };
    let metric = p.metric;
    let bdist = |a: u32, b: u32| -> f32 {
        match metric {
            Metric::Dot => {
                let extra = aug[a as usize] * aug[b as usize];
                -((k.dot)(vec_of(a), vec_of(b)) + extra)
            }
            Metric::Cosine => -(k.dot)(vec_of(a), vec_of(b)),
            Metric::L2 => (k.l2)(vec_of(a), vec_of(b)),
        }
    };
    let g = Building {
        nodes: levels
            .iter()
            .map(|&l| Mutex::new(vec![Vec::new(); l as usize + 1]))
            .collect(),
    };
    let state = RwLock::new((0u32, levels[0] as usize));
    let top_lock = Mutex::new(());
    let next = AtomicUsize::new(1);
    let poisoned = || AnnError::invalid("a build thread failed");
    let (m, m0) = (p.m, 2 * p.m);

    let insert = |q: u32, scratch: &mut Scratch| -> Result<()> {
        let l = levels[q as usize] as usize;
        let (mut ep, mut top) = *state.read().map_err(|_| poisoned())?;
        // A node that raises the top layer is inserted alone among such nodes.
        let _raising = if l > top {
            let guard = top_lock.lock().map_err(|_| poisoned())?;
            (ep, top) = *state.read().map_err(|_| poisoned())?;
            Some(guard)
        } else {
            None
        };
        let dq = |j: u32| bdist(q, j);
        let mut cur = Cand { d: dq(ep), id: ep };
        for layer in (l + 1..=top).rev() {
            cur = greedy(&g, cur, layer, &dq, &mut scratch.buf);
        }
        for layer in (0..=l.min(top)).rev() {
            scratch.visited.reset(n);
            let found = search_layer(&g, cur, p.ef_construction, layer, &dq, &|_| true, scratch);
            let chosen = select(&found, m, &bdist);
            if let Some(lists) = g.nodes.get(q as usize) {
                let mut lists = lists.lock().map_err(|_| poisoned())?;
                if let Some(list) = lists.get_mut(layer) {
                    *list = chosen.clone();
                }
            }
            let cap = if layer == 0 { m0 } else { m };
            for &s in &chosen {
                let Some(lock) = g.nodes.get(s as usize) else {
                    continue;
                };
                let mut lists = lock.lock().map_err(|_| poisoned())?;
                let Some(list) = lists.get_mut(layer) else {
                    continue;
                };
                if list.contains(&q) {
                    continue;
                }
                if list.len() < cap {
                    list.push(q);
                } else {
                    let mut cands: Vec<Cand> = list
                        .iter()
                        .chain(std::iter::once(&q))
                        .map(|&e| Cand {
                            d: bdist(s, e),
                            id: e,
                        })
                        .collect();
                    cands.sort_unstable();
                    *list = select(&cands, cap, &bdist);
                }
            }
            if let Some(&first) = found.first() {
                cur = first;
            }
        }
        if l > top {
            let mut st = state.write().map_err(|_| poisoned())?;
            if l > st.1 {
                *st = (q, l);
            }
        }
        Ok(())
    };

    let results: Vec<Result<()>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| -> Result<()> {
                    let mut scratch = Scratch {
                        visited: Visited::new(n),
                        buf: Vec::with_capacity(m0),
                    };
                    loop {
                        let q = next.fetch_add(1, Ordering::Relaxed);
                        if q >= n {
                            return Ok(());
                        }
                        insert(q as u32, &mut scratch)?;
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err(poisoned())))
            .collect()
    });
    for r in results {
        r?;
    }

    let (entry, max_level) = *state.read().map_err(|_| poisoned())?;
    let mut nodes = Vec::with_capacity(n);
    for lock in g.nodes {
        nodes.push(lock.into_inner().map_err(|_| poisoned())?);
    }
    let repaired = connect_layer0(&mut nodes, entry, m0, &bdist);
    if repaired > 0 {
        tracing::debug!(repaired, "linked nodes the layer-0 walk could not reach");
    }
    let mut graph = Graph::empty(m);
    graph.entry = entry;
    graph.max_level = max_level;
    graph.layer0 = vec![0; n * (1 + m0)];
    let mut offset = 0u64;
    for (i, lists) in nodes.into_iter().enumerate() {
        let level = levels[i] as usize;
        graph.upper_start.push(offset);
        for (layer, list) in lists.iter().enumerate().take(level + 1) {
            if layer == 0 {
                let block = &mut graph.layer0[i * (1 + m0)..(i + 1) * (1 + m0)];
                let len = list.len().min(m0);
                block[0] = len as u32;
                block[1..1 + len].copy_from_slice(&list[..len]);
            } else {
                let len = list.len().min(m);
                graph.upper.push(len as u32);
                graph.upper.extend_from_slice(&list[..len]);
                graph.upper.extend(std::iter::repeat_n(0, m - len));
            }
        }
        offset += (level * (1 + m)) as u64;
    }
    graph.levels = levels;
    Ok(graph)
}

/// Links every layer-0 node the walk from `entry` cannot reach, and returns how many links
/// were added. HNSW's neighbour pruning can drop a node from every list that held it (more
/// often when threads insert concurrently): the node is then never returned, whatever `ef`.
/// Each unreached node is linked from its nearest reached node (its own closest out-link when
/// that one is reached, else the nearest reached node by a scan); a full list gives up the link
/// whose target has the most other in-links. Rounds repeat until everything is reached (a
/// replaced link can strand its target), at most `MAX_ROUNDS` times.
fn connect_layer0(
    nodes: &mut [Vec<Vec<u32>>],
    entry: u32,
    m0: usize,
    dist: &impl Fn(u32, u32) -> f32,
) -> usize {
    const MAX_ROUNDS: usize = 8;
    let n = nodes.len();
    let mut added = 0;
    for _ in 0..MAX_ROUNDS {
        let reached = reach_layer0(nodes, entry);
        if reached.iter().all(|&r| r) {
            break;
        }
        let mut indegree = vec![0u32; n];
        for lists in nodes.iter() {
            for &e in lists.first().into_iter().flatten() {
                if let Some(d) = indegree.get_mut(e as usize) {
                    *d += 1;
                }
            }
        }
        let mut reached = reached;
        for u in 0..n as u32 {
            if reached[u as usize] {
                continue;
            }
            let own = nodes[u as usize]
                .first()
                .into_iter()
                .flatten()
                .copied()
                .filter(|&v| reached[v as usize])
                .min_by(|&a, &b| dist(u, a).total_cmp(&dist(u, b)));
            let from = own.or_else(|| {
                (0..n as u32)
                    .filter(|&v| reached[v as usize])
                    .min_by(|&a, &b| dist(u, a).total_cmp(&dist(u, b)))
            });
            let Some(v) = from else {
                continue;
            };
            let Some(list) = nodes[v as usize].first_mut() else {
                continue;
            };
            if list.len() >= m0 {
                let Some(at) = (0..list.len()).max_by_key(|&i| indegree[list[i] as usize]) else {
                    continue;
                };
                indegree[list[at] as usize] -= 1;
                list[at] = u;
            } else {
                list.push(u);
            }
            indegree[u as usize] += 1;
            added += 1;
            // What u links to is reached now too (through u); later nodes may hang off it.
            reach_from(nodes, &mut reached, u);
        }
    }
    added
}

/// Which nodes a walk of layer 0 from `entry` reaches.
fn reach_layer0(nodes: &[Vec<Vec<u32>>], entry: u32) -> Vec<bool> {
    let mut reached = vec![false; nodes.len()];
    if !nodes.is_empty() {
        reach_from(nodes, &mut reached, entry);
    }
    reached
}

/// Marks `start` and every node a layer-0 walk from it reaches.
fn reach_from(nodes: &[Vec<Vec<u32>>], reached: &mut [bool], start: u32) {
    reached[start as usize] = true;
    let mut stack = vec![start];
    while let Some(x) = stack.pop() {
        for &e in nodes[x as usize].first().into_iter().flatten() {
            if !reached[e as usize] {
                reached[e as usize] = true;
                stack.push(e);
            }
        }
    }
}
