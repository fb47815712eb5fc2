//! The trained model and its flat, lock-free scorer.

use serde::{Deserialize, Serialize};

use crate::bins::{category_code, BinMapper, FeatureSpec};
use crate::dataset::Dataset;
use crate::error::{GbdtError, Result};
use crate::hist::bit;
use crate::objective::sigmoid;
use crate::params::{Objective, Params};

/// Version of the serialized model; bumped on any incompatible change.
pub const FORMAT_VERSION: u32 = 1;

/// A training-time tree over bins (node children: `>= 0` node, `< 0` leaf `!child`).
#[derive(Debug, Clone)]
pub(crate) struct BinTree {
    pub nodes: Vec<BinNode>,
    pub leaf_values: Vec<f64>,
}

#[derive(Debug, Clone)]
pub(crate) struct BinNode {
    pub feature: u32,
    pub left_bins: [u64; 4],
    pub left: i32,
    pub right: i32,
    pub gain: f64,
}

impl BinTree {
    /// The leaf a binned row falls in.
    pub(crate) fn leaf_of(&self, bins: &[Vec<u8>], row: usize) -> usize {
        if self.nodes.is_empty() {
            return 0;
        }
        let mut c = 0i32;
        while c >= 0 {
            let n = &self.nodes[c as usize];
            c = if bit(&n.left_bins, bins[n.feature as usize][row]) {
                n.left
            } else {
                n.right
            };
        }
        !c as usize
    }
}

const DEFAULT_LEFT: u8 = 1;
const CATEGORICAL: u8 = 2;

/// One split of the flat scorer.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct Node {
    /// Feature index into the row.
    #[serde(rename = "f")]
    feature: u32,
    /// Numeric: values `<= threshold` go left.
    #[serde(rename = "t")]
    threshold: f32,
    /// Children: `>= 0` a node index (global), `< 0` a leaf `!child` (global).
    #[serde(rename = "l")]
    left: i32,
    #[serde(rename = "r")]
    right: i32,
    /// Bit 0: missing (and, for categorical, every code not in the set) goes left;
    /// bit 1: categorical split.
    #[serde(rename = "k")]
    flags: u8,
    /// Categorical: index into `cat_sets`.
    #[serde(rename = "c")]
    cat: u32,
}

/// The scorer's 16-byte node (four per cache line): feature index in the low 30 bits of `fk`,
/// bit 30 default-left, bit 31 categorical (then `thr` holds the category-set index as bits).
/// `child[1]` is taken when the row goes left, `child[0]` otherwise: indexing by the
/// comparison's result keeps the walk free of unpredictable branches. Leaves are nodes too,
/// whose children are themselves, so every walk of a tree takes the tree's depth in steps.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
struct FastNode {
    fk: u32,
    thr: f32,
    child: [u32; 2],
}

const FK_FEATURE: u32 = (1 << 30) - 1;
const FK_DEFAULT_LEFT: u32 = 1 << 30;
const FK_CATEGORICAL: u32 = 1 << 31;

/// A trained model: trees as flat arrays over raw feature values (NaN = missing), so scoring
/// needs no bins, no locks and no allocation per row. `&Model` is shared freely across threads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Model {
    format_version: u32,
    objective: Objective,
    features: Vec<FeatureSpec>,
    base_score: f64,
    /// Root of each tree (encoded like a child).
    roots: Vec<i32>,
    nodes: Vec<Node>,
    /// Split gain of each node (importance).
    gains: Vec<f64>,
    leaves: Vec<f64>,
    /// Per categorical split: `(offset, words)` into `cat_words`; bit `code` set means the code
    /// goes to the side opposite the default.
    cat_sets: Vec<(u32, u32)>,
    cat_words: Vec<u32>,
    /// The parameters the model was trained with.
    params: Params,
    /// `nodes` then `leaves` in the scorer's compact form (rebuilt on load).
    #[serde(skip)]
    fast: Vec<FastNode>,
    /// Per `fast` entry: the leaf's value (0 for a split).
    #[serde(skip)]
    fast_value: Vec<f64>,
    /// Per tree: its root in `fast` and its depth (steps from the root to its deepest leaf).
    #[serde(skip)]
    fast_trees: Vec<(u32, u32)>,
    /// The batch scorer's form (rebuilt on load); `None` when a tree has more than 64 leaves.
    #[serde(skip)]
    quick: Option<Box<Quick>>,
    /// The largest [`Table`] the batch scorer builds, bytes (see [`Model::set_table_limit`]).
    #[serde(skip, default = "default_table_limit")]
    table_limit: usize,
}

fn default_table_limit() -> usize {
    DEFAULT_TABLE_LIMIT
}

/// The forest in the form of QuickScorer (Lucchese et al., SIGIR 2015), for batches. Each
/// tree's leaves are numbered left to right and a row keeps one 64-bit word per tree, all ones
/// at first. A numeric split the row does *not* go left at clears the bits of its left
/// subtree's leaves. The row's leaf in a tree is then the lowest bit left, and the splits it
/// fails on are found by scanning each feature's thresholds in ascending order up to the row's
/// value: a sequential scan with no dependent loads, where a tree walk chains one node load on
/// the next.
#[derive(Debug, Clone, Default, PartialEq)]
struct Quick {
    /// Numeric splits of feature `f`: `offsets[f]..offsets[f + 1]`, by ascending threshold.
    offsets: Vec<u32>,
    thr: Vec<f32>,
    tree: Vec<u32>,
    mask: Vec<u64>,
    /// Splits of feature `f` that send missing values right: `nan_offsets[f]..[f + 1]`.
    nan_offsets: Vec<u32>,
    nan_tree: Vec<u32>,
    nan_mask: Vec<u64>,
    /// Categorical splits, tested one by one: (`fast` index, tree, mask, feature, 32 × the
    /// category set's words: every code it names is below).
    cats: Vec<(u32, u32, u64, u32, u32)>,
    /// Tree `h`'s leaves, left to right, start at `leaf_offset[h]` in `leaf_value`.
    leaf_offset: Vec<u32>,
    leaf_value: Vec<f64>,
    /// The numeric splits as per-feature tables of words, when they fit the table limit.
    table: Option<TableForm>,
}

/// Default for [`Model::set_table_limit`].
pub const DEFAULT_TABLE_LIMIT: usize = 16 << 20;

/// The splits of [`Quick`] folded ahead of time: for each numeric feature, one row of words
/// (one per tree) for each interval between its distinct thresholds — the AND of the masks of
/// every split a value in that interval goes right at — and one row for a missing value; for
/// each categorical feature, one row per code its splits name and one for every other code. A
/// row's words then come from one lookup (a binary search, or the code) and one AND per
/// feature, a loop the compiler vectorises, instead of one AND per split the value goes right
/// at and one test per categorical split. Words are
/// 32 bits when no tree has more than 32 leaves (half the memory to stream), else 64.
#[derive(Debug, Clone, PartialEq)]
enum TableForm {
    W32(Table<u32>),
    W64(Table<u64>),
}

/// A tree's word of leaves: a bit per leaf, the lowest set bit the leaf reached.
trait Word: Copy + Default + PartialEq + std::fmt::Debug + std::ops::BitAndAssign {
    const ONES: Self;
    /// The low bits of a 64-bit mask (the tree has no leaf above them).
    fn from_mask(mask: u64) -> Self;
    fn lowest(self) -> u32;
}

impl Word for u32 {
    const ONES: u32 = u32::MAX;
    fn from_mask(mask: u64) -> u32 {
        mask as u32
    }
    #[inline]
    fn lowest(self) -> u32 {
        self.trailing_zeros()
    }
}

impl Word for u64 {
    const ONES: u64 = u64::MAX;
    fn from_mask(mask: u64) -> u64 {
        mask
    }
    #[inline]
    fn lowest(self) -> u32 {
        self.trailing_zeros()
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
struct Table<W> {
    /// Features with splits (the others clear no bits).
    features: Vec<u32>,
    /// Per entry of `features`: a numeric feature's distinct thresholds, ascending,
    /// `thr[toff[i]..toff[i + 1]]` (none for a categorical one).
    toff: Vec<u32>,
    thr: Vec<f32>,
    /// Per entry of `features`: `None` for a numeric feature; for a categorical one, the codes
    /// `0..n` its splits name (every other code, and a missing value, takes every split's
    /// default side).
    codes: Vec<Option<u32>>,
    /// Per entry of `features`: its first row. Numeric: row `roff[i] + p` for a value above
    /// exactly `p` of its `k` thresholds, row `roff[i] + k + 1` for a missing value.
    /// Categorical: row `roff[i] + c` for code `c < n`, row `roff[i] + n` for the rest.
    roff: Vec<u32>,
    /// Rows of one word per tree.
    words: Vec<W>,
}

impl<W: Word> Table<W> {
    /// The table of the model's splits in `q` over `trees` trees (categorical ones tested with
    /// `goes_left(split, value)`), or `None` past `limit` bytes.
    fn build(
        q: &Quick,
        features: usize,
        trees: usize,
        limit: usize,
        goes_left: impl Fn(u32, f32) -> bool,
    ) -> Option<Table<W>> {
        let mut t = Table {
            toff: vec![0],
            features: Vec::new(),
            thr: Vec::new(),
            codes: Vec::new(),
            roff: Vec::new(),
            words: Vec::new(),
        };
        let mut row = vec![W::ONES; trees];
        let too_big = |t: &Table<W>| t.words.len().saturating_mul(std::mem::size_of::<W>()) > limit;
        for f in 0..features {
            let (a, b) = (q.offsets[f] as usize, q.offsets[f + 1] as usize);
            let f32_ = u32::try_from(f).ok()?;
            let cats: Vec<&(u32, u32, u64, u32, u32)> =
                q.cats.iter().filter(|c| c.3 == f32_).collect();
            if a == b && cats.is_empty() {
                continue;
            }
            t.features.push(f32_);
            t.roff
                .push(u32::try_from(t.words.len() / trees.max(1)).ok()?);
            if !cats.is_empty() {
                // One row per code the splits name, then the row of every other code.
                let n = cats.iter().map(|c| c.4).max().unwrap_or(0);
                for code in (0..n).map(Some).chain([None]) {
                    row.fill(W::ONES);
                    let x = code.map_or(f32::NAN, |c| c as f32);
                    for &&(node, h, m, _, _) in &cats {
                        if !goes_left(node, x) {
                            row[h as usize] &= W::from_mask(m);
                        }
                    }
                    t.words.extend_from_slice(&row);
                    if too_big(&t) {
                        return None;
                    }
                }
                t.codes.push(Some(n));
                t.toff.push(u32::try_from(t.thr.len()).ok()?);
                continue;
            }
            row.fill(W::ONES);
            t.words.extend_from_slice(&row);
            let mut i = a;
            while i < b {
                let thr = q.thr[i];
                while i < b && q.thr[i] == thr {
                    row[q.tree[i] as usize] &= W::from_mask(q.mask[i]);
                    i += 1;
                }
                t.thr.push(thr);
                t.words.extend_from_slice(&row);
            }
            row.fill(W::ONES);
            let (a, b) = (q.nan_offsets[f] as usize, q.nan_offsets[f + 1] as usize);
            for (&h, &m) in q.nan_tree[a..b].iter().zip(&q.nan_mask[a..b]) {
                row[h as usize] &= W::from_mask(m);
            }
            t.words.extend_from_slice(&row);
            t.codes.push(None);
            t.toff.push(u32::try_from(t.thr.len()).ok()?);
            if too_big(&t) {
                return None;
            }
        }
        Some(t)
    }

    /// Clears in `v` (one word per tree) the bits of the leaves `row` cannot reach.
    #[inline]
    fn apply(&self, row: &[f32], v: &mut [W]) {
        let trees = v.len();
        for (i, &f) in self.features.iter().enumerate() {
            let x = row[f as usize];
            let p = match self.codes[i] {
                Some(n) => category_code(x).filter(|c| *c < n).unwrap_or(n) as usize,
                None => {
                    let (a, b) = (self.toff[i] as usize, self.toff[i + 1] as usize);
                    if x.is_nan() {
                        b - a + 1
                    } else {
                        self.thr[a..b].partition_point(|&t| t < x)
                    }
                }
            };
            let r = (self.roff[i] as usize + p) * trees;
            for (w, m) in v.iter_mut().zip(&self.words[r..r + trees]) {
                *w &= *m;
            }
        }
    }
}

/// A numeric split for [`Quick`]: (feature, threshold, tree, mask).
type QuickSplit = (u32, f32, u32, u64);

/// A feature's share of the model: total split gain and split count.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureImportance {
    /// Feature name.
    pub name: String,
    /// Sum of the gains of the splits on it.
    pub gain: f64,
    /// Number of splits on it.
    pub splits: u32,
}

impl Model {
    pub(crate) fn from_trees(params: &Params, ds: &Dataset, base: f64, trees: &[BinTree]) -> Self {
        let mut m = Model {
            format_version: FORMAT_VERSION,
            objective: params.objective,
            features: ds.specs.to_vec(),
            base_score: base,
            roots: Vec::with_capacity(trees.len()),
            nodes: Vec::new(),
            gains: Vec::new(),
            leaves: Vec::new(),
            cat_sets: Vec::new(),
            cat_words: Vec::new(),
            params: params.clone(),
            fast: Vec::new(),
            fast_value: Vec::new(),
            fast_trees: Vec::new(),
            quick: None,
            table_limit: DEFAULT_TABLE_LIMIT,
        };
        for t in trees {
            let node_base = m.nodes.len() as i32;
            let leaf_base = m.leaves.len() as i32;
            let map = |c: i32| {
                if c >= 0 {
                    c + node_base
                } else {
                    !(!c + leaf_base)
                }
            };
            m.roots.push(if t.nodes.is_empty() {
                !leaf_base
            } else {
                node_base
            });
            for n in &t.nodes {
                let default_left = bit(&n.left_bins, 0);
                let mut node = Node {
                    feature: n.feature,
                    threshold: 0.0,
                    left: map(n.left),
                    right: map(n.right),
                    flags: if default_left { DEFAULT_LEFT } else { 0 },
                    cat: 0,
                };
                match &ds.mappers[n.feature as usize] {
                    BinMapper::Numeric { upper } => {
                        // Left bins are 1..=t (plus 0 when missing goes left).
                        let t = (1..upper.len())
                            .take_while(|b| bit(&n.left_bins, *b as u8))
                            .count();
                        node.threshold = upper[t.saturating_sub(1).min(upper.len() - 1)];
                        if t == 0 {
                            node.threshold = f32::NEG_INFINITY;
                        }
                    }
                    BinMapper::Categorical { codes } => {
                        let flipped: Vec<u32> = codes
                            .iter()
                            .enumerate()
                            .filter(|(i, _)| bit(&n.left_bins, (*i + 1) as u8) != default_left)
                            .map(|(_, c)| *c)
                            .collect();
                        let words = flipped.iter().max().map_or(0, |m| m / 32 + 1);
                        let offset = m.cat_words.len() as u32;
                        m.cat_words
                            .extend(std::iter::repeat_n(0u32, words as usize));
                        for c in flipped {
                            m.cat_words[(offset + c / 32) as usize] |= 1 << (c % 32);
                        }
                        node.flags |= CATEGORICAL;
                        node.cat = m.cat_sets.len() as u32;
                        m.cat_sets.push((offset, words));
                    }
                }
                m.nodes.push(node);
                m.gains.push(n.gain);
            }
            m.leaves.extend_from_slice(&t.leaf_values);
        }
        m.build_fast();
        m
    }

    /// Builds the scorer's form: split `i` at `fast[i]`, leaf `l` at `fast[nodes + l]`. Call
    /// only on a checked model (children in range, no cycles).
    fn build_fast(&mut self) {
        let leaf_at = self.nodes.len() as u32;
        let at = |c: i32| {
            if c >= 0 {
                c as u32
            } else {
                leaf_at + !c as u32
            }
        };
        self.fast = self
            .nodes
            .iter()
            .map(|n| {
                let mut fk = n.feature & FK_FEATURE;
                if n.flags & DEFAULT_LEFT != 0 {
                    fk |= FK_DEFAULT_LEFT;
                }
                let thr = if n.flags & CATEGORICAL != 0 {
                    fk |= FK_CATEGORICAL;
                    f32::from_bits(n.cat)
                } else {
                    n.threshold
                };
                FastNode {
                    fk,
                    thr,
                    child: [at(n.right), at(n.left)],
                }
            })
            .collect();
        self.fast_value = vec![0.0; self.fast.len()];
        for (l, &v) in self.leaves.iter().enumerate() {
            let me = leaf_at + l as u32;
            // Reads feature 0 (any row that reaches a leaf has one) and stays put either way.
            self.fast.push(FastNode {
                fk: 0,
                thr: f32::INFINITY,
                child: [me, me],
            });
            self.fast_value.push(v);
        }
        let mut stack = Vec::new();
        self.fast_trees = self
            .roots
            .iter()
            .map(|&root| {
                let mut depth = 0;
                stack.clear();
                stack.push((root, 0u32));
                while let Some((c, d)) = stack.pop() {
                    match usize::try_from(c).ok().and_then(|i| self.nodes.get(i)) {
                        Some(n) => {
                            stack.push((n.left, d + 1));
                            stack.push((n.right, d + 1));
                        }
                        None => depth = depth.max(d),
                    }
                }
                (at(root), depth)
            })
            .collect();
        self.quick = self.build_quick().map(Box::new);
    }

    /// The [`Quick`] form, or `None` when a tree has more than 64 leaves (or is not a tree, or
    /// a threshold is NaN: forms the checks allow but the walk handles differently).
    fn build_quick(&self) -> Option<Quick> {
        let nf = self.features.len();
        let mut splits: Vec<QuickSplit> = Vec::new();
        let mut nan: Vec<(u32, u32, u64)> = Vec::new();
        let mut cats = Vec::new();
        let mut leaf_offset = Vec::with_capacity(self.roots.len());
        let mut leaf_value = Vec::new();
        let mut max_leaves = 0;
        let mut seen = vec![false; self.nodes.len()];
        for (h, &root) in self.roots.iter().enumerate() {
            leaf_offset.push(u32::try_from(leaf_value.len()).ok()?);
            // In-order walk: (child, visited-left) on a stack; a node's left subtree's leaves
            // are the ones numbered between entering and leaving its left child.
            let mut leaves: Vec<f64> = Vec::new();
            let mut stack: Vec<(i32, u32)> = vec![(root, u32::MAX)];
            while let Some((c, first)) = stack.pop() {
                if c < 0 {
                    if leaves.len() == 64 {
                        return None;
                    }
                    leaves.push(*self.leaves.get(!c as usize)?);
                    continue;
                }
                let i = c as usize;
                let n = self.nodes.get(i)?;
                if first == u32::MAX {
                    if std::mem::replace(&mut seen[i], true) {
                        return None;
                    }
                    // Come back after the left subtree, remembering where its leaves start.
                    stack.push((c, leaves.len() as u32));
                    stack.push((n.left, u32::MAX));
                    continue;
                }
                let (lo, hi) = (first, leaves.len() as u32);
                let left = if hi - lo == 64 {
                    u64::MAX
                } else {
                    ((1u64 << (hi - lo)) - 1) << lo
                };
                let mask = !left;
                if n.flags & CATEGORICAL != 0 {
                    let words = self.cat_sets.get(n.cat as usize).map_or(0, |s| s.1);
                    cats.push((
                        i as u32,
                        h as u32,
                        mask,
                        n.feature,
                        words.saturating_mul(32),
                    ));
                } else {
                    if n.threshold.is_nan() {
                        return None;
                    }
                    splits.push((n.feature, n.threshold, h as u32, mask));
                    if n.flags & DEFAULT_LEFT == 0 {
                        nan.push((n.feature, h as u32, mask));
                    }
                }
                stack.push((n.right, u32::MAX));
            }
            max_leaves = max_leaves.max(leaves.len());
            leaf_value.extend(leaves);
        }
        splits.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
        nan.sort_by_key(|x| x.0);
        let offsets_of = |features: &mut dyn Iterator<Item = u32>| {
            let mut offsets = vec![0u32; nf + 1];
            for f in features {
                offsets[f as usize + 1] += 1;
            }
            for f in 0..nf {
                offsets[f + 1] += offsets[f];
            }
            offsets
        };
        let mut q = Quick {
            offsets: offsets_of(&mut splits.iter().map(|s| s.0)),
            thr: splits.iter().map(|s| s.1).collect(),
            tree: splits.iter().map(|s| s.2).collect(),
            mask: splits.iter().map(|s| s.3).collect(),
            nan_offsets: offsets_of(&mut nan.iter().map(|s| s.0)),
            nan_tree: nan.iter().map(|s| s.1).collect(),
            nan_mask: nan.iter().map(|s| s.2).collect(),
            cats,
            leaf_offset,
            leaf_value,
            table: None,
        };
        let (trees, limit) = (self.roots.len(), self.table_limit);
        let goes_left = |node: u32, x: f32| self.goes_left(&self.fast[node as usize], x);
        q.table = if max_leaves <= 32 {
            Table::build(&q, nf, trees, limit, goes_left).map(TableForm::W32)
        } else {
            Table::build(&q, nf, trees, limit, goes_left).map(TableForm::W64)
        };
        Some(q)
    }

    /// Raw scores of row-major `rows` with the [`Quick`] form; the same sums, in the same
    /// (tree) order, as the walk, so the same bits.
    fn quick_raw_batch(&self, q: &Quick, rows: &[f32], n_features: usize, out: &mut [f32]) {
        match &q.table {
            Some(TableForm::W32(t)) => self.words_raw_batch(q, rows, n_features, out, |row, v| {
                t.apply(row, v);
            }),
            Some(TableForm::W64(t)) => self.words_raw_batch(q, rows, n_features, out, |row, v| {
                t.apply(row, v);
            }),
            None => self.words_raw_batch(q, rows, n_features, out, |row, v: &mut [u64]| {
                self.quick_numeric(q, row, v);
                for &(node, h, m, _, _) in &q.cats {
                    let n = &self.fast[node as usize];
                    if !self.goes_left(n, row[(n.fk & FK_FEATURE) as usize]) {
                        v[h as usize] &= m;
                    }
                }
            }),
        }
    }

    /// Scores rows with one word of type `W` per tree: `splits` clears the bits the row's
    /// values rule out; each tree's lowest bit left is its leaf.
    #[inline]
    fn words_raw_batch<W: Word>(
        &self,
        q: &Quick,
        rows: &[f32],
        n_features: usize,
        out: &mut [f32],
        splits: impl Fn(&[f32], &mut [W]),
    ) {
        let mut v = vec![W::ONES; self.roots.len()];
        for (row, o) in rows.chunks_exact(n_features).zip(out.iter_mut()) {
            v.fill(W::ONES);
            splits(row, &mut v);
            let mut acc = self.base_score;
            for (h, &bits) in v.iter().enumerate() {
                acc += q.leaf_value[q.leaf_offset[h] as usize + bits.lowest() as usize];
            }
            *o = acc as f32;
        }
    }

    /// Clears in `v` the bits of the leaves `row` cannot reach through a numeric split, one
    /// split at a time (QuickScorer proper; the form without a [`Table`]).
    #[inline]
    fn quick_numeric(&self, q: &Quick, row: &[f32], v: &mut [u64]) {
        for (f, &x) in row.iter().enumerate() {
            if x.is_nan() {
                let (a, b) = (q.nan_offsets[f] as usize, q.nan_offsets[f + 1] as usize);
                for (&h, &m) in q.nan_tree[a..b].iter().zip(&q.nan_mask[a..b]) {
                    v[h as usize] &= m;
                }
                continue;
            }
            let (a, b) = (q.offsets[f] as usize, q.offsets[f + 1] as usize);
            // The splits on f whose threshold is below x: x goes right at each of them.
            let upto = a + q.thr[a..b].partition_point(|&t| t < x);
            for (&h, &m) in q.tree[a..upto].iter().zip(&q.mask[a..upto]) {
                v[h as usize] &= m;
            }
        }
    }

    /// The objective the model was trained for.
    pub fn objective(&self) -> Objective {
        self.objective
    }

    /// Features a row must have, in order.
    pub fn features(&self) -> &[FeatureSpec] {
        &self.features
    }

    /// Number of trees.
    pub fn num_trees(&self) -> usize {
        self.roots.len()
    }

    /// The parameters the model was trained with.
    pub fn params(&self) -> &Params {
        &self.params
    }

    #[inline]
    fn goes_left(&self, n: &FastNode, v: f32) -> bool {
        let default_left = n.fk & FK_DEFAULT_LEFT != 0;
        if n.fk & FK_CATEGORICAL == 0 {
            // Branch-free: NaN compares false, then takes the default side.
            (v <= n.thr) | (v.is_nan() & default_left)
        } else {
            let flipped = category_code(v).is_some_and(|code| {
                let (off, words) = self.cat_sets[n.thr.to_bits() as usize];
                let w = code / 32;
                w < words && (self.cat_words[(off + w) as usize] >> (code % 32)) & 1 == 1
            });
            default_left != flipped
        }
    }

    /// One step of a walk: the child of `at` that `row` goes to.
    #[inline(always)]
    fn step(&self, at: u32, row: &[f32]) -> u32 {
        let n = &self.fast[at as usize];
        n.child[usize::from(self.goes_left(n, row[(n.fk & FK_FEATURE) as usize]))]
    }

    #[inline]
    fn tree_value(&self, (root, depth): (u32, u32), row: &[f32]) -> f64 {
        let mut c = root;
        for _ in 0..depth {
            c = self.step(c, row);
        }
        self.fast_value[c as usize]
    }

    fn check_row(&self, len: usize) -> Result<()> {
        if len != self.features.len() {
            return Err(GbdtError::InvalidData(format!(
                "a row has {len} values, the model {} features",
                self.features.len()
            )));
        }
        Ok(())
    }

    /// The raw score (log-odds for binary) of one row of raw values in feature order.
    pub fn predict_raw_row(&self, row: &[f32]) -> Result<f32> {
        self.check_row(row.len())?;
        let mut s = self.base_score;
        for &tree in &self.fast_trees {
            s += self.tree_value(tree, row);
        }
        Ok(s as f32)
    }

    /// The prediction of one row: a probability for binary, the ranking score for lambdarank.
    pub fn predict_row(&self, row: &[f32]) -> Result<f32> {
        self.predict_raw_row(row).map(|s| self.transform(s))
    }

    fn transform(&self, raw: f32) -> f32 {
        match self.objective {
            Objective::Binary => sigmoid(raw as f64) as f32,
            Objective::Lambdarank => raw,
        }
    }

    /// Which form [`Self::predict_batch`] scores with: `"table32"`/`"table64"` (every tree has
    /// at most 32/64 leaves and the numeric splits' per-feature tables fit the table limit), `"bitvector"`
    /// (QuickScorer, one split at a time: the tables would not fit) or `"walk"` (a tree has
    /// more than 64 leaves: blocks of rows walk each tree in lockstep).
    pub fn batch_scorer(&self) -> &'static str {
        match self.quick.as_deref().map(|q| &q.table) {
            Some(Some(TableForm::W32(_))) => "table32",
            Some(Some(TableForm::W64(_))) => "table64",
            Some(None) => "bitvector",
            None => "walk",
        }
    }

    /// Sets the largest per-feature table the batch scorer builds (bytes; default
    /// [`DEFAULT_TABLE_LIMIT`], 0: none): one row of a word (4 or 8 bytes) per tree for each distinct
    /// threshold of each feature, plus two. Above it, batches are scored one split at a time.
    pub fn set_table_limit(&mut self, bytes: usize) {
        self.table_limit = bytes;
        self.quick = self.build_quick().map(Box::new);
    }

    /// Raw scores of row-major `rows` (`n_features` values each) into `out` (one per row),
    /// with the bitvector form when every tree has at most 64 leaves, else by walking blocks
    /// of rows through each tree in lockstep. Both give the bits [`Self::predict_raw_row`]
    /// gives.
    pub fn predict_raw_batch(
        &self,
        rows: &[f32],
        n_features: usize,
        out: &mut [f32],
    ) -> Result<()> {
        self.check_row(n_features)?;
        if n_features == 0 || rows.len() != out.len() * n_features {
            return Err(GbdtError::InvalidData(format!(
                "{} values are not {} rows of {n_features} features",
                rows.len(),
                out.len()
            )));
        }
        if let Some(q) = &self.quick {
            self.quick_raw_batch(q, rows, n_features, out);
            return Ok(());
        }
        // Blocks of rows walk each tree in lockstep, every walk for the tree's depth (a walk
        // that reached its leaf stays there): the walks are independent and branch-free, so
        // the CPU overlaps their loads instead of waiting on, and mispredicting, one at a time.
        const BLOCK: usize = 16;
        let mut acc = [0f64; BLOCK];
        let mut cur = [0u32; BLOCK];
        for (block_rows, block_out) in rows.chunks(BLOCK * n_features).zip(out.chunks_mut(BLOCK)) {
            let k = block_out.len();
            acc[..k].fill(self.base_score);
            for &(root, depth) in &self.fast_trees {
                cur[..k].fill(root);
                for _ in 0..depth {
                    for (j, c) in cur[..k].iter_mut().enumerate() {
                        *c = self.step(*c, &block_rows[j * n_features..(j + 1) * n_features]);
                    }
                }
                for (a, c) in acc[..k].iter_mut().zip(&cur[..k]) {
                    *a += self.fast_value[*c as usize];
                }
            }
            for (o, a) in block_out.iter_mut().zip(&acc[..k]) {
                *o = *a as f32;
            }
        }
        Ok(())
    }

    /// Predictions (probabilities for binary) of row-major `rows` into `out`.
    pub fn predict_batch(&self, rows: &[f32], n_features: usize, out: &mut [f32]) -> Result<()> {
        self.predict_raw_batch(rows, n_features, out)?;
        if self.objective == Objective::Binary {
            for o in out.iter_mut() {
                *o = self.transform(*o);
            }
        }
        Ok(())
    }

    /// Gain and split count per feature, in feature order.
    pub fn feature_importance(&self) -> Vec<FeatureImportance> {
        let mut out: Vec<FeatureImportance> = self
            .features
            .iter()
            .map(|f| FeatureImportance {
                name: f.name.clone(),
                gain: 0.0,
                splits: 0,
            })
            .collect();
        for (n, g) in self.nodes.iter().zip(&self.gains) {
            if let Some(fi) = out.get_mut(n.feature as usize) {
                fi.gain += g;
                fi.splits += 1;
            }
        }
        out
    }

    /// The model as JSON bytes (stable for a given model: the same training gives the same bytes).
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        serde_json::to_vec(self).map_err(|e| GbdtError::InvalidModel(format!("serialize: {e}")))
    }

    /// Reads a model written by [`Self::to_bytes`], checking that it is well formed (so scoring
    /// it cannot index out of bounds or loop).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let mut m: Model =
            serde_json::from_slice(bytes).map_err(|e| GbdtError::InvalidModel(e.to_string()))?;
        m.check()?;
        m.build_fast();
        Ok(m)
    }

    fn check(&self) -> Result<()> {
        let bad = |msg: String| Err(GbdtError::InvalidModel(msg));
        if self.format_version != FORMAT_VERSION {
            return bad(format!(
                "format version {} (this build reads {FORMAT_VERSION})",
                self.format_version
            ));
        }
        if self.features.len() > FK_FEATURE as usize {
            return bad(format!("{} features is too many", self.features.len()));
        }
        if self.gains.len() != self.nodes.len() {
            return bad("gains and nodes differ in length".into());
        }
        let nl = self.leaves.len() as i64;
        let nn = self.nodes.len() as i64;
        let child_ok = |from: i64, c: i32| {
            if c >= 0 {
                (c as i64) > from && (c as i64) < nn
            } else {
                (!c as i64) < nl
            }
        };
        for &r in &self.roots {
            if !child_ok(-1, r) {
                return bad(format!("tree root {r} out of range"));
            }
        }
        for (i, n) in self.nodes.iter().enumerate() {
            if n.feature as usize >= self.features.len() {
                return bad(format!("node {i} splits on missing feature {}", n.feature));
            }
            // Children always come after their parent: no loops.
            if !child_ok(i as i64, n.left) || !child_ok(i as i64, n.right) {
                return bad(format!("node {i} has a child out of range"));
            }
            if n.flags & CATEGORICAL != 0 {
                let Some(&(off, words)) = self.cat_sets.get(n.cat as usize) else {
                    return bad(format!("node {i} has no category set"));
                };
                if off as usize + words as usize > self.cat_words.len() {
                    return bad(format!("node {i} category set out of range"));
                }
            }
        }
        Ok(())
    }
}
