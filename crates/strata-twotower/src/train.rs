//! Training: a scan pass (numeric statistics, item frequencies, the catalogue), then epochs of
//! softmax cross-entropy over in-batch (and optionally uniformly sampled) negatives.
//!
//! The MLPs are candle `Var`s updated by AdamW. Embedding tables stay in plain `Vec<f32>`s:
//! each step gathers the rows it needs into a small leaf tensor, and after the backward pass a
//! lazy (sparse) Adam updates only those rows, so a step costs the same with 1k or 10M buckets.

use std::collections::HashMap;

use candle_core::{Device, Tensor, Var};
use candle_nn::optim::{AdamW, Optimizer, ParamsAdamW};
use serde::Serialize;

use crate::config::{TowerSpec, TrainConfig};
use crate::data::{Batch, Columns, ExampleSource, ItemTable};
use crate::error::{Error, Result};
use crate::model::{mlp_forward, Layer, Tower, TwoTower};
use crate::prep::Moments;
use crate::rng::Rng;
use crate::valid::ValidSet;

/// What the trainer is doing, for a progress bar or a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// First pass: statistics and item frequencies (`rows_total` is not known yet).
    Scan,
    Train,
    /// Scoring the validation users after an epoch.
    Validate,
}

/// Reported to the caller's callback during training.
#[derive(Debug, Clone, Serialize)]
pub struct Progress {
    pub phase: Phase,
    /// 1-based; 0 during the scan.
    pub epoch: usize,
    pub epochs: usize,
    /// Rows done in this pass, and rows per pass (0 while scanning).
    pub rows_done: u64,
    pub rows_total: u64,
    /// Mean training loss of the epoch so far.
    pub loss: f64,
    /// Set after the validation of an epoch.
    pub valid: Option<Validation>,
}

/// Retrieval quality on the validation users: mean over users with at least one positive in
/// the catalogue, ranking the whole catalogue.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Validation {
    pub users: usize,
    pub recall_at_100: f64,
    pub ndcg_at_10: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct EpochReport {
    pub epoch: usize,
    pub loss: f64,
    pub valid: Option<Validation>,
}

/// What training saw and achieved (for the model registry).
#[derive(Debug, Clone, Serialize)]
pub struct TrainReport {
    /// Training rows per epoch.
    pub rows: u64,
    /// Distinct items among the training rows.
    pub distinct_items: usize,
    /// Items ranked by validation and sampled as negatives.
    pub catalogue_items: usize,
    pub steps: u64,
    pub epochs: Vec<EpochReport>,
    /// The final model's validation (the last epoch's).
    pub valid: Option<Validation>,
    /// The same validation for the most popular training items (the baseline to beat).
    pub popularity: Option<Validation>,
}

/// Added to the logit of a candidate that is the row's own item at another position (an
/// "accidental hit"), so it is not treated as a negative.
const MASKED: f32 = -1.0e4;

/// Trains a model. `train` is read once for statistics, then once per epoch; `valid` (rows
/// strictly later than training's) is read once and scored after each epoch; `items` is the
/// catalogue to rank and sample negatives from (default: the items seen in training, with
/// their first-seen features). `progress` is called about a hundred times per epoch.
pub fn train(
    cfg: &TrainConfig,
    train: &mut dyn ExampleSource,
    valid: Option<&mut dyn ExampleSource>,
    items: Option<&ItemTable>,
    mut progress: impl FnMut(&Progress) + Send,
) -> Result<(TwoTower, TrainReport)> {
    cfg.validate()?;
    let threads = if cfg.threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        cfg.threads
    };
    // candle's kernels run on the current rayon pool: a pool of our own fixes their threads.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| Error::Resources(format!("starting {threads} training threads: {e}")))?;
    pool.install(|| Trainer::run(cfg, train, valid, items, &mut progress))
}

struct Scan {
    rows: u64,
    counts: HashMap<u64, u64>,
    catalogue: ItemTable,
    user: Tower,
    item: Tower,
}

/// The training state of one tower: the plain tower (tables, preprocessing) and its MLP.
struct TowerState {
    tower: Tower,
    dense: Vec<(Var, Var)>,
    adam: Vec<SparseAdam>,
}

struct Trainer<'a> {
    cfg: &'a TrainConfig,
    user: TowerState,
    item: TowerState,
    /// Per user categorical: the item categorical whose table it shares.
    share: Vec<Option<usize>>,
    optimizer: AdamW,
    step: u64,
    rng: Rng,
}

impl Trainer<'_> {
    fn run(
        cfg: &TrainConfig,
        train: &mut dyn ExampleSource,
        valid: Option<&mut dyn ExampleSource>,
        items: Option<&ItemTable>,
        progress: &mut dyn FnMut(&Progress),
    ) -> Result<(TwoTower, TrainReport)> {
        let scan = scan(cfg, train, items, progress)?;
        let valid_set = match valid {
            Some(source) => Some(ValidSet::read(cfg, source, &scan.catalogue)?),
            None => None,
        };
        let popularity = valid_set
            .as_ref()
            .map(|v| v.popularity(&scan.counts, &scan.catalogue));
        tracing::info!(
            rows = scan.rows,
            distinct_items = scan.counts.len(),
            catalogue_items = scan.catalogue.len(),
            valid_users = valid_set.as_ref().map_or(0, |v| v.user_ids.len()),
            "two-tower scan done"
        );

        let user = TowerState::new(scan.user, cfg, 1)?;
        let item = TowerState::new(scan.item, cfg, 2)?;
        let share = cfg
            .user
            .categorical
            .iter()
            .map(|c| {
                c.share
                    .as_ref()
                    .and_then(|t| cfg.item.categorical.iter().position(|i| &i.name == t))
            })
            .collect();
        let vars = user.vars().chain(item.vars()).collect();
        let optimizer = AdamW::new(
            vars,
            ParamsAdamW {
                lr: cfg.learning_rate,
                weight_decay: cfg.weight_decay,
                ..ParamsAdamW::default()
            },
        )?;
        let mut t = Trainer {
            cfg,
            user,
            item,
            share,
            optimizer,
            step: 0,
            rng: Rng::derive(cfg.seed, 3),
        };
        let log_q = cfg.log_q.then_some(LogQ {
            counts: &scan.counts,
            rows: scan.rows as f64,
        });
        let report_every = (scan.rows / cfg.batch_size as u64 / 100).max(1);
        let mut epochs = Vec::new();
        for epoch in 1..=cfg.epochs {
            train.reset()?;
            let (mut rows_done, mut loss_sum, mut steps) = (0u64, 0f64, 0u64);
            while let Some(batch) = train.next_batch(cfg.batch_size)? {
                batch.check(&cfg.user, &cfg.item)?;
                if batch.rows() < 2 {
                    continue; // no negative in a batch of one
                }
                let loss = t.step(&batch, &scan.catalogue, log_q.as_ref())?;
                rows_done += batch.rows() as u64;
                loss_sum += loss * batch.rows() as f64;
                steps += 1;
                if steps.is_multiple_of(report_every) {
                    progress(&Progress {
                        phase: Phase::Train,
                        epoch,
                        epochs: cfg.epochs,
                        rows_done,
                        rows_total: scan.rows,
                        loss: loss_sum / rows_done as f64,
                        valid: None,
                    });
                }
            }
            let loss = if rows_done > 0 {
                loss_sum / rows_done as f64
            } else {
                f64::NAN
            };
            let mut report = Progress {
                phase: Phase::Validate,
                epoch,
                epochs: cfg.epochs,
                rows_done,
                rows_total: scan.rows,
                loss,
                valid: None,
            };
            let valid = match &valid_set {
                Some(v) => {
                    progress(&report);
                    let (user, item) = t.snapshots()?;
                    Some(v.evaluate(&user, &item, &scan.catalogue)?)
                }
                None => None,
            };
            tracing::info!(
                epoch,
                loss,
                recall_at_100 = valid.map(|v| v.recall_at_100),
                ndcg_at_10 = valid.map(|v| v.ndcg_at_10),
                "two-tower epoch done"
            );
            report.phase = Phase::Train;
            report.valid = valid;
            progress(&report);
            epochs.push(EpochReport { epoch, loss, valid });
        }
        let (user, item) = t.snapshots()?;
        let model = TwoTower {
            user,
            item,
            temperature: cfg.temperature,
        };
        let report = TrainReport {
            rows: scan.rows,
            distinct_items: scan.counts.len(),
            catalogue_items: scan.catalogue.len(),
            steps: t.step,
            valid: epochs.last().and_then(|e| e.valid),
            epochs,
            popularity,
        };
        Ok((model, report))
    }

    /// One optimisation step; returns the batch's loss.
    fn step(&mut self, batch: &Batch, catalogue: &ItemTable, log_q: Option<&LogQ>) -> Result<f64> {
        let b = batch.rows();
        // Uniform negatives from the catalogue, shared by the batch.
        let sampled: Vec<usize> = (0..self.cfg.sampled_negatives)
            .map(|_| self.rng.below(catalogue.len()))
            .collect();
        let mut item_cols = batch.item.clone();
        let mut item_ids = batch.item_id.clone();
        for &r in &sampled {
            item_cols.push_row(&catalogue.features, r);
            item_ids.push(catalogue.ids[r]);
        }
        let n = item_ids.len();

        let (xu, du, user_rows) =
            self.user
                .input(&batch.user, b, Some((&self.item.tower, &self.share)))?;
        let (xi, di, item_rows) = self.item.input(&item_cols, n, None)?;
        let u = mlp_forward(&self.user.dense_tensors(), &xu, du.as_ref())?;
        let v = mlp_forward(&self.item.dense_tensors(), &xi, di.as_ref())?;

        // Additive logit terms: accidental hits masked, and the logQ correction.
        let mut bias = vec![0f32; b * n];
        let weight_sum: f32 = (0..b).map(|i| batch.weight(i)).sum();
        if weight_sum <= 0.0 {
            return Ok(0.0);
        }
        let mut select = vec![0f32; b * n];
        let correction: Vec<f32> = match log_q {
            Some(q) => (0..n)
                .map(|j| {
                    if j < b {
                        q.ln_inclusion(item_ids[j], b)
                    } else {
                        (sampled.len() as f64 / catalogue.len() as f64).ln() as f32
                    }
                })
                .collect(),
            None => vec![0.0; n],
        };
        for i in 0..b {
            for j in 0..n {
                bias[i * n + j] = if j != i && item_ids[j] == batch.item_id[i] {
                    MASKED
                } else {
                    -correction[j]
                };
            }
            select[i * n + i] = batch.weight(i) / weight_sum;
        }
        let bias = Tensor::from_vec(bias, (b, n), &Device::Cpu)?;
        let select = Tensor::from_vec(select, (b, n), &Device::Cpu)?;
        let logits = (u.matmul(&v.t()?)? * (1.0 / self.cfg.temperature))?.add(&bias)?;
        let log_softmax = candle_nn::ops::log_softmax(&logits, 1)?;
        let loss = log_softmax.mul(&select)?.sum_all()?.neg()?;

        let grads = loss.backward()?;
        self.optimizer.step(&grads)?;
        self.step += 1;
        self.update_tables(&grads, &user_rows, &item_rows)?;
        Ok(f64::from(loss.to_scalar::<f32>()?))
    }

    /// Sparse Adam on every embedding row the step gathered. A table shared by both towers
    /// gets one update with both sides' gradients.
    fn update_tables(
        &mut self,
        grads: &candle_core::backprop::GradStore,
        user: &[Gathered],
        item: &[Gathered],
    ) -> Result<()> {
        // (item side?, table) -> (rows, gradient rows), in first-seen order.
        let mut updates: Vec<(bool, usize, Vec<usize>, Vec<f32>)> = Vec::new();
        for (g, item_side) in item
            .iter()
            .map(|g| (g, true))
            .chain(user.iter().map(|g| (g, false)))
        {
            let Some(grad) = grads.get(g.var.as_tensor()) else {
                continue;
            };
            let grad = grad.flatten_all()?.to_vec1::<f32>()?;
            let (side, table) = match g.table {
                Table::Own(c) => (item_side, c),
                Table::Item(c) => (true, c),
            };
            let at = match updates.iter().position(|u| u.0 == side && u.1 == table) {
                Some(at) => at,
                None => {
                    updates.push((side, table, Vec::new(), Vec::new()));
                    updates.len() - 1
                }
            };
            let dim = g.dim;
            let entry = &mut updates[at];
            for (i, &r) in g.rows.iter().enumerate() {
                if r != MISSING {
                    entry.2.push(r);
                    entry.3.extend_from_slice(&grad[i * dim..(i + 1) * dim]);
                }
            }
        }
        let (lr, step) = (self.cfg.learning_rate as f32, self.step);
        for (item_side, table, rows, grad) in updates {
            let state = if item_side {
                &mut self.item
            } else {
                &mut self.user
            };
            let dim = state.tower.spec.categorical[table].dim;
            state.adam[table].update(&mut state.tower.tables[table], dim, &rows, &grad, lr, step);
        }
        Ok(())
    }

    /// Both towers as they stand, the user tower holding a copy of each item table it shares.
    fn snapshots(&self) -> Result<(Tower, Tower)> {
        let item = self.item.snapshot()?;
        let mut user = self.user.snapshot()?;
        for (c, target) in self.share.iter().enumerate() {
            if let Some(t) = target {
                if user.owners[c] == c {
                    user.tables[c] = item.tables[*t].clone();
                }
            }
        }
        Ok((user, item))
    }
}

/// Item frequencies for the logQ correction.
struct LogQ<'a> {
    counts: &'a HashMap<u64, u64>,
    rows: f64,
}

impl LogQ<'_> {
    /// ln of the chance that `item` is among `batch` rows drawn by frequency.
    fn ln_inclusion(&self, item: u64, batch: usize) -> f32 {
        let count = self.counts.get(&item).copied().unwrap_or(1).max(1) as f64;
        (batch as f64 * count / self.rows).ln() as f32
    }
}

/// Which table a gathered feature read.
#[derive(Clone, Copy)]
enum Table {
    /// Its own tower's table of this categorical.
    Own(usize),
    /// The item tower's table of this categorical (a user feature that shares it).
    Item(usize),
}

/// The row of a pooled feature's missing value: gathered as zeros, never updated.
const MISSING: usize = usize::MAX;

/// Gathered embedding rows of one categorical feature for a step: the leaf tensor the
/// gradient arrives at, and which table row each of its rows came from.
struct Gathered {
    var: Var,
    rows: Vec<usize>,
    table: Table,
    dim: usize,
}

impl TowerState {
    fn new(tower: Tower, cfg: &TrainConfig, stream: u64) -> Result<Self> {
        let mut rng = Rng::derive(cfg.seed, stream);
        let mut tower = tower;
        // Embeddings: N(0, 0.1²). Layers: He-normal before a ReLU, LeCun-normal for the last.
        // A shared table lives with the item tower (the user tower gets a copy in snapshots).
        for (c, cat) in tower.spec.categorical.iter().enumerate() {
            if cat.share.is_some() || tower.owners[c] != c {
                continue;
            }
            tower.tables[c] = (0..cat.buckets * cat.dim)
                .map(|_| (rng.normal() * 0.1) as f32)
                .collect();
        }
        let mut widths = vec![tower.spec.input_width()];
        widths.extend(&cfg.hidden);
        widths.push(cfg.dim);
        tower.layers = widths
            .windows(2)
            .enumerate()
            .map(|(l, w)| {
                let gain = if l + 2 < widths.len() { 2.0 } else { 1.0 };
                let std = (gain / w[0] as f64).sqrt();
                Layer {
                    inputs: w[0],
                    outputs: w[1],
                    w: (0..w[0] * w[1])
                        .map(|_| (rng.normal() * std) as f32)
                        .collect(),
                    b: vec![0.0; w[1]],
                }
            })
            .collect();
        let dense = tower
            .layers
            .iter()
            .map(|l| {
                Ok((
                    Var::from_slice(&l.w, (l.outputs, l.inputs), &Device::Cpu)?,
                    Var::from_slice(&l.b, l.outputs, &Device::Cpu)?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        let adam = tower
            .tables
            .iter()
            .map(|t| SparseAdam::new(t.len()))
            .collect();
        Ok(TowerState { tower, dense, adam })
    }

    fn vars(&self) -> impl Iterator<Item = Var> + '_ {
        self.dense.iter().flat_map(|(w, b)| [w.clone(), b.clone()])
    }

    fn dense_tensors(&self) -> Vec<(Tensor, Tensor)> {
        self.dense
            .iter()
            .map(|(w, b)| (w.as_tensor().clone(), b.as_tensor().clone()))
            .collect()
    }

    /// The `rows × input` tensor of a step: normalised numerics (constants) and gathered
    /// embedding rows (leaves that receive gradients); the direct slots' `rows × direct
    /// width` tensor, if any. `shared`: the item tower and, per categorical of this one, the
    /// item table it reads (user tower only).
    fn input(
        &self,
        cols: &Columns,
        rows: usize,
        shared: Option<(&Tower, &[Option<usize>])>,
    ) -> Result<(Tensor, Option<Tensor>, Vec<Gathered>)> {
        let tower = &self.tower;
        let mut parts = Vec::new();
        let mut direct = Vec::new();
        let n_num = tower.spec.numeric.len();
        if n_num > 0 {
            let mut x = vec![0f32; rows * n_num];
            for (c, col) in cols.numeric.iter().enumerate() {
                for (r, v) in col.iter().enumerate() {
                    x[r * n_num + c] = tower.prep.apply(c, *v);
                }
            }
            parts.push(Tensor::from_vec(x, (rows, n_num), &Device::Cpu)?);
        }
        let mut gathered = Vec::new();
        for slot in &tower.slots {
            let pooled = tower.spec.categorical[slot.members.start].pool.is_some();
            // Per row: how many members have a value (the pool's divisor).
            let counts: Vec<f32> = (0..rows)
                .map(|r| {
                    slot.members
                        .clone()
                        .filter(|&c| cols.categorical[c][r] != 0)
                        .count()
                        .max(1) as f32
                })
                .collect();
            let mut sum: Option<Tensor> = None;
            for c in slot.members.clone() {
                let cat = &tower.spec.categorical[c];
                let (table, source) = match (shared, &cat.share) {
                    (Some((item, map)), Some(_)) => match map.get(c).copied().flatten() {
                        Some(t) => (&item.tables[t], Table::Item(t)),
                        None => {
                            return Err(Error::Config(vec![format!(
                                "user tower: {:?} shares a table the item tower does not have",
                                cat.name
                            )]))
                        }
                    },
                    _ => (&tower.tables[tower.owners[c]], Table::Own(tower.owners[c])),
                };
                let idx: Vec<usize> = cols.categorical[c]
                    .iter()
                    .map(|&v| {
                        if pooled && v == 0 {
                            MISSING
                        } else {
                            tower.row(c, v)
                        }
                    })
                    .collect();
                let mut x = Vec::with_capacity(rows * cat.dim);
                for &r in &idx {
                    if r == MISSING {
                        x.extend(std::iter::repeat_n(0.0, cat.dim));
                    } else {
                        x.extend_from_slice(&table[r * cat.dim..(r + 1) * cat.dim]);
                    }
                }
                let var = Var::from_vec(x, (rows, cat.dim), &Device::Cpu)?;
                let term = if pooled {
                    let w: Vec<f32> = (0..rows)
                        .map(|r| {
                            if idx[r] == MISSING {
                                0.0
                            } else {
                                1.0 / counts[r]
                            }
                        })
                        .collect();
                    let w = Tensor::from_vec(w, (rows, 1), &Device::Cpu)?;
                    var.as_tensor().broadcast_mul(&w)?
                } else {
                    var.as_tensor().clone()
                };
                sum = Some(match sum {
                    Some(s) => s.add(&term)?,
                    None => term,
                });
                gathered.push(Gathered {
                    var,
                    rows: idx,
                    table: source,
                    dim: cat.dim,
                });
            }
            if let Some(s) = sum {
                if slot.direct {
                    direct.push(s);
                } else {
                    parts.push(s);
                }
            }
        }
        let direct = if direct.is_empty() {
            None
        } else {
            Some(Tensor::cat(&direct, 1)?)
        };
        Ok((Tensor::cat(&parts, 1)?, direct, gathered))
    }

    /// The tower with the current MLP weights copied out of candle.
    fn snapshot(&self) -> Result<Tower> {
        let mut tower = self.tower.clone();
        for (layer, (w, b)) in tower.layers.iter_mut().zip(&self.dense) {
            layer.w = w.as_tensor().flatten_all()?.to_vec1::<f32>()?;
            layer.b = b.as_tensor().flatten_all()?.to_vec1::<f32>()?;
        }
        Ok(tower)
    }
}

/// Lazy Adam for embedding tables: only the rows a step touched are updated (their moments
/// too); bias correction uses the global step.
struct SparseAdam {
    m: Vec<f32>,
    v: Vec<f32>,
}

const BETA1: f32 = 0.9;
const BETA2: f32 = 0.999;
const EPS: f32 = 1e-8;

impl SparseAdam {
    fn new(len: usize) -> Self {
        SparseAdam {
            m: vec![0.0; len],
            v: vec![0.0; len],
        }
    }

    fn update(
        &mut self,
        table: &mut [f32],
        dim: usize,
        rows: &[usize],
        grad: &[f32],
        lr: f32,
        step: u64,
    ) {
        // Sum the gradient of rows gathered more than once (first-appearance order: the
        // result does not depend on hash iteration order).
        let mut slot: HashMap<usize, usize> = HashMap::new();
        let mut unique = Vec::new();
        let mut acc: Vec<f32> = Vec::new();
        for (i, &r) in rows.iter().enumerate() {
            let s = *slot.entry(r).or_insert_with(|| {
                unique.push(r);
                acc.extend(std::iter::repeat_n(0.0, dim));
                unique.len() - 1
            });
            for (a, g) in acc[s * dim..(s + 1) * dim]
                .iter_mut()
                .zip(&grad[i * dim..(i + 1) * dim])
            {
                *a += g;
            }
        }
        let t = step.min(i32::MAX as u64) as i32;
        let c1 = 1.0 - BETA1.powi(t);
        let c2 = 1.0 - BETA2.powi(t);
        for (s, &r) in unique.iter().enumerate() {
            for k in 0..dim {
                let (at, g) = (r * dim + k, acc[s * dim + k]);
                self.m[at] = BETA1 * self.m[at] + (1.0 - BETA1) * g;
                self.v[at] = BETA2 * self.v[at] + (1.0 - BETA2) * g * g;
                let m_hat = self.m[at] / c1;
                let v_hat = self.v[at] / c2;
                table[at] -= lr * m_hat / (v_hat.sqrt() + EPS);
            }
        }
    }
}

/// The first pass: numeric statistics, item counts, and the catalogue if none was given.
fn scan(
    cfg: &TrainConfig,
    source: &mut dyn ExampleSource,
    items: Option<&ItemTable>,
    progress: &mut dyn FnMut(&Progress),
) -> Result<Scan> {
    let mut user_m = Moments::new(cfg.user.numeric.len());
    let mut item_m = Moments::new(cfg.item.numeric.len());
    let mut counts: HashMap<u64, u64> = HashMap::new();
    let mut catalogue = ItemTable {
        ids: Vec::new(),
        features: Columns::for_spec(&cfg.item),
    };
    let mut rows = 0u64;
    source.reset()?;
    let mut batches = 0u64;
    while let Some(batch) = source.next_batch(cfg.batch_size.max(4096))? {
        batch.check(&cfg.user, &cfg.item)?;
        for (c, col) in batch.user.numeric.iter().enumerate() {
            user_m.add_column(c, col);
        }
        for (c, col) in batch.item.numeric.iter().enumerate() {
            item_m.add_column(c, col);
        }
        for (r, id) in batch.item_id.iter().enumerate() {
            let n = counts.entry(*id).or_insert(0);
            if *n == 0 && items.is_none() {
                catalogue.ids.push(*id);
                catalogue.features.push_row(&batch.item, r);
            }
            *n += 1;
        }
        rows += batch.rows() as u64;
        batches += 1;
        if batches.is_multiple_of(64) {
            progress(&Progress {
                phase: Phase::Scan,
                epoch: 0,
                epochs: cfg.epochs,
                rows_done: rows,
                rows_total: 0,
                loss: f64::NAN,
                valid: None,
            });
        }
    }
    if rows < 2 {
        return Err(Error::Input(format!(
            "the training data has {rows} rows; at least 2 are needed"
        )));
    }
    if let Some(items) = items {
        items
            .features
            .check(&cfg.item, "catalogue", items.ids.len())?;
        if items.is_empty() {
            return Err(Error::Input("the item catalogue is empty".into()));
        }
        catalogue = items.clone();
    }
    let tower = |spec: &TowerSpec, prep| {
        Tower::new(
            spec.clone(),
            prep,
            vec![Vec::new(); spec.categorical.len()],
            Vec::new(),
        )
    };
    Ok(Scan {
        rows,
        counts,
        catalogue,
        user: tower(&cfg.user, user_m.finish()),
        item: tower(&cfg.item, item_m.finish()),
    })
}
