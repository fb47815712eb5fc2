//! A built (or loaded) index: filtered HNSW search, exact search, and the plan between them.

use std::collections::{BinaryHeap, HashMap};

use crate::distance::{kernels, Kernels};
use crate::error::{AnnError, Result};
use crate::filter::Filter;
use crate::graph::{greedy, search_layer, Cand, Graph, Scratch, VisitedPool};
use crate::params::{IndexParams, Metric};
use crate::payload::{CompiledFilter, PayloadIndex, PayloadStore};

/// One search result.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hit {
    /// The item's id as added.
    pub id: u64,
    /// Higher is better: the inner product (`Dot`), the cosine similarity (`Cosine`), or the
    /// negative squared Euclidean distance (`L2`).
    pub score: f32,
}

/// How a search is answered (see [`Index::plan`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchPath {
    /// The filter can match nothing: no work.
    Empty,
    /// Few items can match: every item of the smallest matching id list of the payload index
    /// is checked against the whole filter and scored.
    Exact {
        /// How many items are checked.
        scanned: usize,
    },
    /// The graph walk, with the filter applied inside it.
    Graph {
        /// The estimated number of matching items.
        estimated: usize,
    },
}

/// A searchable vector index. Immutable once built: share it behind an `Arc` (see
/// [`crate::IndexHandle`]); searches run concurrently.
pub struct Index {
    pub(crate) params: IndexParams,
    pub(crate) ids: Vec<u64>,
    lookup: HashMap<u64, u32>,
    pub(crate) vectors: Vec<f32>,
    pub(crate) payloads: PayloadStore,
    pindex: PayloadIndex,
    pub(crate) graph: Graph,
    pool: VisitedPool,
    kernels: Kernels,
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index")
            .field("params", &self.params)
            .field("items", &self.ids.len())
            .finish_non_exhaustive()
    }
}

/// Scales `v` to unit length; false for a zero vector.
pub(crate) fn normalize(v: &mut [f32]) -> bool {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm == 0.0 || !norm.is_finite() {
        return false;
    }
    v.iter_mut().for_each(|x| *x /= norm);
    true
}

impl Index {
    pub(crate) fn from_parts(
        params: IndexParams,
        ids: Vec<u64>,
        vectors: Vec<f32>,
        payloads: PayloadStore,
        graph: Graph,
    ) -> Self {
        let lookup = ids
            .iter()
            .enumerate()
            .map(|(i, &id)| (id, i as u32))
            .collect();
        let pindex = PayloadIndex::build(&payloads);
        let pool = VisitedPool::new(ids.len());
        Index {
            params,
            ids,
            lookup,
            vectors,
            payloads,
            pindex,
            graph,
            pool,
            kernels: kernels(),
        }
    }

    /// The parameters the index was built with.
    pub fn params(&self) -> &IndexParams {
        &self.params
    }

    /// Changes the search defaults of a built or opened index (before sharing it): the `ef`
    /// of a search that gives none, and the estimated match count at or below which a
    /// filtered search is exact. Both are saved with the index.
    pub fn set_search_defaults(&mut self, ef_search: usize, exact_threshold: usize) {
        self.params.ef_search = ef_search.max(1);
        self.params.exact_threshold = exact_threshold;
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Whether an item is in the index.
    pub fn contains(&self, id: u64) -> bool {
        self.lookup.contains_key(&id)
    }

    /// An item's vector as stored (unit length under `Cosine`).
    pub fn vector(&self, id: u64) -> Option<&[f32]> {
        let i = *self.lookup.get(&id)? as usize;
        let dim = self.params.dim;
        self.vectors.get(i * dim..(i + 1) * dim)
    }

    /// Bytes held in memory by vectors, graph, ids and payloads (approximate).
    pub fn memory_bytes(&self) -> usize {
        let n = self.ids.len();
        4 * self.vectors.len()
            + self.graph.memory_bytes()
            + n * (8 + 16 + 8)
            + self.payloads.columns.len() * n * 16
    }

    fn vec_of(&self, i: u32) -> &[f32] {
        let dim = self.params.dim;
        let s = i as usize * dim;
        self.vectors.get(s..s + dim).unwrap_or(&[])
    }

    fn prepare_query(&self, query: &[f32]) -> Result<Vec<f32>> {
        if query.len() != self.params.dim {
            return Err(AnnError::invalid(format!(
                "query has {} values, the index has dim {}",
                query.len(),
                self.params.dim
            )));
        }
        if query.iter().any(|x| !x.is_finite()) {
            return Err(AnnError::invalid("query has a non-finite value"));
        }
        let mut q = query.to_vec();
        if self.params.metric == Metric::Cosine && !normalize(&mut q) {
            return Err(AnnError::invalid("a zero query vector has no cosine"));
        }
        Ok(q)
    }

    /// Distance of the query to item `i`: smaller is closer; the score is its negation.
    #[inline]
    fn dist(&self, q: &[f32], i: u32) -> f32 {
        match self.params.metric {
            Metric::Dot | Metric::Cosine => -(self.kernels.dot)(q, self.vec_of(i)),
            Metric::L2 => (self.kernels.l2)(q, self.vec_of(i)),
        }
    }

    fn compile<'a>(&'a self, filter: &Filter) -> Result<CompiledFilter<'a>> {
        CompiledFilter::compile(
            filter,
            &self.params.schema,
            &self.payloads,
            &self.pindex,
            |id| self.lookup.get(&id).copied(),
        )
    }

    fn plan_compiled(&self, f: &CompiledFilter<'_>, ef: usize) -> SearchPath {
        let n = self.ids.len();
        if f.never || n == 0 {
            return SearchPath::Empty;
        }
        if f.is_pass_all() {
            return SearchPath::Graph { estimated: n };
        }
        // Each condition's count is exact; their AND is estimated as if independent (an
        // overestimate only makes the exact path pick fewer filters).
        let upper = f.sources.iter().map(|s| s.count).min().unwrap_or(n);
        let mut fraction = 1f64;
        for s in &f.sources {
            fraction *= s.count as f64 / n as f64;
        }
        let estimated = ((n as f64 * fraction) as usize)
            .min(upper)
            .saturating_sub(f.excluded());
        // The walk must hold `ef` matching nodes, so it visits about ef / selectivity nodes
        // and scores each one's layer-0 links; the exact path checks `upper` items and scores
        // the matches. Whichever costs less, and always exact below the threshold.
        let selectivity = estimated.max(1) as f64 / n as f64;
        let walk = ef as f64 / selectivity * self.graph.m0 as f64;
        let threshold = self.params.exact_threshold;
        if threshold > 0 && (estimated <= threshold || (upper as f64) <= walk) {
            SearchPath::Exact { scanned: upper }
        } else {
            SearchPath::Graph { estimated }
        }
    }

    /// How a search with this filter, `k` and `ef` would be answered, without searching.
    pub fn plan(&self, filter: &Filter, k: usize, ef: Option<usize>) -> Result<SearchPath> {
        let f = self.compile(filter)?;
        Ok(self.plan_compiled(&f, self.effective_ef(k, ef)))
    }

    fn effective_ef(&self, k: usize, ef: Option<usize>) -> usize {
        ef.unwrap_or(self.params.ef_search).max(k)
    }

    /// The `k` items closest to `query` that pass `filter`, best first (fewer when fewer
    /// pass). `ef` is the candidate list size (default `params.ef_search`; at least `k`):
    /// higher finds more of the true neighbours and costs more. A filter whose matches are
    /// estimated at most `params.exact_threshold`, or fewer than the nodes a filtered walk
    /// would score, is answered exactly (see [`Index::plan`]).
    pub fn search(
        &self,
        query: &[f32],
        k: usize,
        filter: &Filter,
        ef: Option<usize>,
    ) -> Result<Vec<Hit>> {
        let q = self.prepare_query(query)?;
        let f = self.compile(filter)?;
        if k == 0 {
            return Ok(Vec::new());
        }
        let ef = self.effective_ef(k, ef);
        match self.plan_compiled(&f, ef) {
            SearchPath::Empty => Ok(Vec::new()),
            SearchPath::Exact { .. } => Ok(self.exact_compiled(&q, k, &f)),
            SearchPath::Graph { .. } => Ok(self.graph_search(&q, k, ef, &f)),
        }
    }

    /// The true `k` closest items that pass `filter` by scoring every matching item: the
    /// ground truth searches are measured against.
    pub fn exact_search(&self, query: &[f32], k: usize, filter: &Filter) -> Result<Vec<Hit>> {
        let q = self.prepare_query(query)?;
        let f = self.compile(filter)?;
        if k == 0 || f.never {
            return Ok(Vec::new());
        }
        Ok(self.exact_compiled(&q, k, &f))
    }

    fn exact_compiled(&self, q: &[f32], k: usize, f: &CompiledFilter<'_>) -> Vec<Hit> {
        let mut best: BinaryHeap<Cand> = BinaryHeap::with_capacity(k + 1);
        let mut consider = |i: u32| {
            if !f.matches(i) {
                return;
            }
            let d = self.dist(q, i);
            if best.len() < k {
                best.push(Cand { d, id: i });
            } else if best.peek().is_some_and(|w| d < w.d) {
                best.pop();
                best.push(Cand { d, id: i });
            }
        };
        match f.sources.iter().min_by_key(|s| s.count) {
            Some(smallest) => {
                for slice in &smallest.slices {
                    slice.iter().for_each(|&i| consider(i));
                }
            }
            None => (0..self.ids.len() as u32).for_each(consider),
        }
        self.hits(best.into_sorted_vec())
    }

    fn graph_search(&self, q: &[f32], k: usize, ef: usize, f: &CompiledFilter<'_>) -> Vec<Hit> {
        let g = &self.graph;
        let dq = |i: u32| self.dist(q, i);
        let mut scratch = Scratch {
            visited: self.pool.take(),
            buf: Vec::with_capacity(g.m0),
        };
        let mut cur = Cand {
            d: dq(g.entry),
            id: g.entry,
        };
        for layer in (1..=g.max_level).rev() {
            cur = greedy(g, cur, layer, &dq, &mut scratch.buf);
        }
        let pass_all = f.is_pass_all();
        let keep = |i: u32| pass_all || f.matches(i);
        let mut found = search_layer(g, cur, ef, 0, &dq, &keep, &mut scratch);
        self.pool.give(scratch.visited);
        found.truncate(k);
        self.hits(found)
    }

    fn hits(&self, sorted: Vec<Cand>) -> Vec<Hit> {
        let mut hits: Vec<Hit> = sorted
            .into_iter()
            .filter_map(|c| {
                self.ids
                    .get(c.id as usize)
                    .map(|&id| Hit { id, score: -c.d })
            })
            .collect();
        hits.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.id.cmp(&b.id)));
        hits
    }
}
