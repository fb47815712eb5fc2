//! Training data as u8 bins, column-major: one byte per row and feature. Rows stream in batch
//! by batch; only the first `bin_sample_rows` rows are ever held as f32 (to fit the bins).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::bins::{BinMapper, FeatureKind, FeatureSpec};
use crate::error::{GbdtError, Result};
use crate::params::Params;

/// Binned rows with labels, optional weights and optional query groups.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub(crate) specs: Arc<Vec<FeatureSpec>>,
    pub(crate) mappers: Arc<Vec<BinMapper>>,
    /// `bins[f][row]`.
    pub(crate) bins: Vec<Vec<u8>>,
    pub(crate) labels: Vec<f32>,
    pub(crate) weights: Option<Vec<f32>>,
    /// Query boundaries: group `q` is rows `groups[q]..groups[q + 1]`; empty without groups.
    pub(crate) groups: Vec<u32>,
}

impl Dataset {
    /// Rows held.
    pub fn num_rows(&self) -> usize {
        self.labels.len()
    }

    /// Features per row.
    pub fn num_features(&self) -> usize {
        self.specs.len()
    }

    /// The feature specs, in column order.
    pub fn features(&self) -> &[FeatureSpec] {
        &self.specs
    }

    /// The labels, in row order.
    pub fn labels(&self) -> &[f32] {
        &self.labels
    }

    /// Query-group boundaries (`len = groups + 1`), or empty when the data has no groups.
    pub fn group_offsets(&self) -> &[u32] {
        &self.groups
    }

    /// The fitted bin mappers, in column order.
    pub fn bin_mappers(&self) -> &[BinMapper] {
        &self.mappers
    }
}

/// Builds a [`Dataset`] from batches of rows or columns.
pub struct DatasetBuilder {
    specs: Arc<Vec<FeatureSpec>>,
    max_bin: u32,
    sample_rows: usize,
    mappers: Option<Arc<Vec<BinMapper>>>,
    cat_lookup: Vec<Option<HashMap<u32, u8>>>,
    /// Raw columns held until the mappers are fitted.
    pending: Vec<Vec<f32>>,
    bins: Vec<Vec<u8>>,
    labels: Vec<f32>,
    weights: Option<Vec<f32>>,
    groups: Vec<u32>,
    last_group: Option<u64>,
    seen_groups: HashSet<u64>,
    has_groups: Option<bool>,
}

impl DatasetBuilder {
    /// A builder that fits its bins from the first `params.bin_sample_rows` rows pushed (with
    /// `params.max_bin`). Use it for the training set.
    pub fn new(specs: Vec<FeatureSpec>, params: &Params) -> Result<Self> {
        params.validate()?;
        if specs.is_empty() {
            return Err(GbdtError::InvalidData("no feature columns".into()));
        }
        let mut names = HashSet::new();
        for s in &specs {
            if !names.insert(s.name.as_str()) {
                return Err(GbdtError::InvalidData(format!(
                    "feature {:?} is given twice",
                    s.name
                )));
            }
        }
        let n = specs.len();
        Ok(DatasetBuilder {
            specs: Arc::new(specs),
            max_bin: params.max_bin,
            sample_rows: params.bin_sample_rows as usize,
            mappers: None,
            cat_lookup: Vec::new(),
            pending: vec![Vec::new(); n],
            bins: vec![Vec::new(); n],
            labels: Vec::new(),
            weights: None,
            groups: Vec::new(),
            last_group: None,
            seen_groups: HashSet::new(),
            has_groups: None,
        })
    }

    /// A builder that bins with another dataset's mappers: use it for validation and test sets
    /// so their bins mean what the training set's mean.
    pub fn like(reference: &Dataset) -> Self {
        let mut b = DatasetBuilder {
            specs: reference.specs.clone(),
            max_bin: 255,
            sample_rows: 0,
            mappers: None,
            cat_lookup: Vec::new(),
            pending: Vec::new(),
            bins: vec![Vec::new(); reference.specs.len()],
            labels: Vec::new(),
            weights: None,
            groups: Vec::new(),
            last_group: None,
            seen_groups: HashSet::new(),
            has_groups: None,
        };
        b.set_mappers(reference.mappers.clone());
        b
    }

    /// A builder that bins with mappers fitted elsewhere (e.g. [`BinMapper::fit_numeric`] on a
    /// random sample of the whole table), so no row is held as f32 and the bins do not depend on
    /// which rows come first.
    pub fn with_mappers(specs: Vec<FeatureSpec>, mappers: Vec<BinMapper>) -> Result<Self> {
        if specs.len() != mappers.len() {
            return Err(GbdtError::InvalidData(format!(
                "{} features but {} bin mappers",
                specs.len(),
                mappers.len()
            )));
        }
        for (s, m) in specs.iter().zip(&mappers) {
            let ok = match m {
                BinMapper::Numeric { upper } => {
                    s.kind == FeatureKind::Numeric
                        && !upper.is_empty()
                        && upper.len() < 256
                        && upper.windows(2).all(|w| w[0] < w[1])
                        && upper.last() == Some(&f32::INFINITY)
                }
                BinMapper::Categorical { codes } => {
                    s.kind == FeatureKind::Categorical
                        && codes.len() < 256
                        && codes.iter().all(|c| *c < crate::bins::MAX_CATEGORY_CODE)
                }
            };
            if !ok {
                return Err(GbdtError::InvalidData(format!(
                    "the bin mapper of feature {:?} does not fit it (kind, order or size)",
                    s.name
                )));
            }
        }
        let mut b = DatasetBuilder::new(specs, &Params::default())?;
        b.pending = Vec::new();
        b.set_mappers(Arc::new(mappers));
        Ok(b)
    }

    fn set_mappers(&mut self, mappers: Arc<Vec<BinMapper>>) {
        self.cat_lookup = mappers.iter().map(|m| m.category_lookup()).collect();
        self.mappers = Some(mappers);
    }

    /// Appends a batch given column by column (`columns[f][i]` is feature `f` of row `i`), with
    /// its labels, optional weights and optional query ids (rows of one query contiguous).
    /// Categorical features carry their integer codes as f32; NaN is missing.
    pub fn push_columns(
        &mut self,
        columns: &[&[f32]],
        labels: &[f32],
        weights: Option<&[f32]>,
        query_ids: Option<&[u64]>,
    ) -> Result<()> {
        let n = labels.len();
        if columns.len() != self.specs.len() {
            return Err(GbdtError::InvalidData(format!(
                "batch has {} feature columns, the dataset {}",
                columns.len(),
                self.specs.len()
            )));
        }
        if let Some((f, c)) = columns.iter().enumerate().find(|(_, c)| c.len() != n) {
            return Err(GbdtError::InvalidData(format!(
                "feature {:?} has {} values for {n} labels",
                self.specs[f].name,
                c.len()
            )));
        }
        self.push_meta(labels, weights, query_ids)?;
        match &self.mappers {
            Some(mappers) => {
                let mappers = mappers.clone();
                for (f, col) in columns.iter().enumerate() {
                    self.bin_into(f, &mappers[f], col);
                }
            }
            None => {
                for (f, col) in columns.iter().enumerate() {
                    self.pending[f].extend_from_slice(col);
                }
                if self.pending[0].len() >= self.sample_rows {
                    self.fit_pending();
                }
            }
        }
        Ok(())
    }

    /// Appends a batch given row-major (`rows[i * num_features + f]`); see [`Self::push_columns`].
    pub fn push_rows(
        &mut self,
        rows: &[f32],
        labels: &[f32],
        weights: Option<&[f32]>,
        query_ids: Option<&[u64]>,
    ) -> Result<()> {
        let nf = self.specs.len();
        if rows.len() != labels.len() * nf {
            return Err(GbdtError::InvalidData(format!(
                "{} values are not {} rows of {nf} features",
                rows.len(),
                labels.len()
            )));
        }
        let cols: Vec<Vec<f32>> = (0..nf)
            .map(|f| rows.iter().skip(f).step_by(nf).copied().collect())
            .collect();
        let refs: Vec<&[f32]> = cols.iter().map(|c| c.as_slice()).collect();
        self.push_columns(&refs, labels, weights, query_ids)
    }

    fn push_meta(
        &mut self,
        labels: &[f32],
        weights: Option<&[f32]>,
        query_ids: Option<&[u64]>,
    ) -> Result<()> {
        let n = labels.len();
        if let Some(l) = labels.iter().find(|l| !l.is_finite()) {
            return Err(GbdtError::InvalidData(format!("label {l} is not finite")));
        }
        if self.labels.len() + n > u32::MAX as usize - 1 {
            return Err(GbdtError::InvalidData(
                "more than 4 billion rows in one dataset".into(),
            ));
        }
        match weights {
            Some(w) => {
                if w.len() != n {
                    return Err(GbdtError::InvalidData(format!(
                        "{} weights for {n} labels",
                        w.len()
                    )));
                }
                if let Some(bad) = w.iter().find(|w| !w.is_finite() || **w < 0.0) {
                    return Err(GbdtError::InvalidData(format!(
                        "weight {bad} is negative or not finite"
                    )));
                }
                match &mut self.weights {
                    Some(all) => all.extend_from_slice(w),
                    None if self.labels.is_empty() => self.weights = Some(w.to_vec()),
                    None => {
                        return Err(GbdtError::InvalidData(
                            "weights must be given for every batch or none".into(),
                        ))
                    }
                }
            }
            None => {
                if self.weights.is_some() {
                    return Err(GbdtError::InvalidData(
                        "weights must be given for every batch or none".into(),
                    ));
                }
            }
        }
        let has = query_ids.is_some();
        if self.has_groups.is_some_and(|prev| prev != has) {
            return Err(GbdtError::InvalidData(
                "query ids must be given for every batch or none".into(),
            ));
        }
        self.has_groups = Some(has);
        if let Some(q) = query_ids {
            if q.len() != n {
                return Err(GbdtError::InvalidData(format!(
                    "{} query ids for {n} labels",
                    q.len()
                )));
            }
            let base = self.labels.len() as u32;
            for (i, id) in q.iter().enumerate() {
                if self.last_group != Some(*id) {
                    if !self.seen_groups.insert(*id) {
                        return Err(GbdtError::InvalidData(format!(
                            "rows of query {id} are not contiguous"
                        )));
                    }
                    self.groups.push(base + i as u32);
                    self.last_group = Some(*id);
                }
            }
        }
        self.labels.extend_from_slice(labels);
        Ok(())
    }

    fn bin_into(&mut self, f: usize, mapper: &BinMapper, col: &[f32]) {
        let out = &mut self.bins[f];
        out.reserve(col.len());
        match &self.cat_lookup[f] {
            Some(lookup) => out.extend(col.iter().map(|v| {
                crate::bins::category_code(*v)
                    .and_then(|c| lookup.get(&c).copied())
                    .unwrap_or(0)
            })),
            None => out.extend(col.iter().map(|v| mapper.bin(*v))),
        }
    }

    fn fit_pending(&mut self) {
        let mappers: Vec<BinMapper> = self
            .specs
            .iter()
            .zip(&self.pending)
            .map(|(s, col)| BinMapper::fit(s.kind, col, self.max_bin))
            .collect();
        let mappers = Arc::new(mappers);
        self.set_mappers(mappers.clone());
        let pending = std::mem::take(&mut self.pending);
        for (f, col) in pending.iter().enumerate() {
            self.bin_into(f, &mappers[f], col);
        }
    }

    /// Rows pushed so far.
    pub fn num_rows(&self) -> usize {
        self.labels.len()
    }

    /// Ends the stream.
    pub fn finish(mut self) -> Result<Dataset> {
        if self.mappers.is_none() {
            self.fit_pending();
        }
        if self.labels.is_empty() {
            return Err(GbdtError::InvalidData("the dataset has no rows".into()));
        }
        let mappers = self
            .mappers
            .clone()
            .ok_or_else(|| GbdtError::InvalidData("bins were never fitted".into()))?;
        if !self.groups.is_empty() {
            self.groups.push(self.labels.len() as u32);
        }
        Ok(Dataset {
            specs: self.specs,
            mappers,
            bins: self.bins,
            labels: self.labels,
            weights: self.weights,
            groups: self.groups,
        })
    }
}
