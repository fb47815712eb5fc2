//! What the caller declares: the features of each tower and the training hyper-parameters.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// One categorical input: a u64 per row (an id such as `post_id`, `author_id`, or a hash of a
/// string such as a country code), hashed into `buckets` embedding rows of `dim` floats.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Categorical {
    /// Column name (also salts the hash, so two features map one id to unrelated rows).
    pub name: String,
    /// Embedding rows the values hash into. About the number of distinct values (collisions
    /// share a row); memory is `buckets × dim × 4` bytes, plus twice that while training.
    pub buckets: usize,
    /// Width of this feature's embedding.
    #[serde(default = "default_categorical_dim")]
    pub dim: usize,
    /// User tower only: read this feature's values through the embedding table of the item
    /// tower's categorical of this name (same `buckets` and `dim`), so one id means one vector
    /// on both sides: a user's followed or favourite authors land in the item tower's
    /// `author_id` space, and what the item side learns about an author carries over. The
    /// table is trained by both towers and saved once, with the item tower.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub share: Option<String>,
    /// Mean-pool this feature with the neighbouring ones of the same pool name (a bag of
    /// values spread over several columns, e.g. `followed_1` .. `followed_12`): they take one
    /// input slot of `dim` floats, the mean of the members' embeddings. A missing value
    /// (NULL, read as 0) is left out of the mean; a row with none gives zeros.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    /// Skip the MLP: this feature's embedding (its pool's mean, for a pool) is appended to
    /// the tower's output as it is, before the L2 normalisation, instead of being an input
    /// of the first layer. Both towers must declare direct slots of the same widths in the
    /// same order: the score then holds their plain dot product, e.g. the mean of a user's
    /// followed authors against a post's author (shared table), a set membership that an
    /// MLP has to learn to pass through (ADR 0058).
    #[serde(default, skip_serializing_if = "is_false")]
    pub direct: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl Categorical {
    /// A plain categorical (no sharing, no pooling).
    pub fn new(name: impl Into<String>, buckets: usize, dim: usize) -> Self {
        Categorical {
            name: name.into(),
            buckets,
            dim,
            share: None,
            pool: None,
            direct: false,
        }
    }

    /// The name whose hash salt (and, when shared, table) this feature uses.
    pub(crate) fn table_name(&self) -> &str {
        self.share.as_deref().unwrap_or(&self.name)
    }
}

/// One input slot of a tower's first layer: a categorical feature, or a pool of neighbouring
/// ones averaged together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Slot {
    /// Indexes into `TowerSpec::categorical`.
    pub(crate) members: std::ops::Range<usize>,
    pub(crate) dim: usize,
    /// Appended to the output instead of feeding the MLP (`Categorical::direct`).
    pub(crate) direct: bool,
}

fn default_categorical_dim() -> usize {
    16
}

/// The inputs of one tower, in the order batches and requests pass them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TowerSpec {
    /// Numeric columns (f32; NaN means missing). Each is transformed with
    /// `sign(x)·ln(1+|x|)` and standardised with the training data's mean and deviation.
    #[serde(default)]
    pub numeric: Vec<String>,
    /// Categorical columns (u64 values hashed into embedding rows).
    #[serde(default)]
    pub categorical: Vec<Categorical>,
}

impl TowerSpec {
    /// Width of the tower's first layer input: normalised numerics then each embedding slot
    /// (a pool counts once) that is not direct.
    pub fn input_width(&self) -> usize {
        self.numeric.len()
            + self
                .slots()
                .iter()
                .filter(|s| !s.direct)
                .map(|s| s.dim)
                .sum::<usize>()
    }

    /// Width of the direct slots, appended to the MLP's output (0 without any).
    pub fn direct_width(&self) -> usize {
        self.direct_dims().iter().sum()
    }

    /// The widths of the direct slots, in order.
    pub(crate) fn direct_dims(&self) -> Vec<usize> {
        self.slots()
            .iter()
            .filter(|s| s.direct)
            .map(|s| s.dim)
            .collect()
    }

    /// The embedding slots in input order: runs of neighbours with the same `pool` merge.
    pub(crate) fn slots(&self) -> Vec<Slot> {
        let mut out: Vec<Slot> = Vec::new();
        for (c, cat) in self.categorical.iter().enumerate() {
            let joins = c > 0
                && cat.pool.is_some()
                && self.categorical[c - 1].pool == cat.pool
                && out.last().is_some_and(|s| s.members.end == c);
            match out.last_mut() {
                Some(last) if joins => last.members.end = c + 1,
                _ => out.push(Slot {
                    members: c..c + 1,
                    dim: cat.dim,
                    direct: cat.direct,
                }),
            }
        }
        out
    }

    /// For each categorical, the index of the first one with the same shared table (itself
    /// when it shares nothing, or is the first): that one holds the tower's copy of the table.
    pub(crate) fn table_owners(&self) -> Vec<usize> {
        self.categorical
            .iter()
            .enumerate()
            .map(|(c, cat)| match &cat.share {
                None => c,
                Some(t) => self
                    .categorical
                    .iter()
                    .position(|o| o.share.as_deref() == Some(t.as_str()))
                    .unwrap_or(c),
            })
            .collect()
    }
}

/// Training hyper-parameters and the towers' shape. Defaults work on a laptop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// The user tower's inputs (features available online at request time only).
    pub user: TowerSpec,
    /// The item tower's inputs (post features, post id, author id...).
    pub item: TowerSpec,
    /// Hidden layer widths of both towers' MLPs (ReLU after each); empty: one linear layer.
    #[serde(default = "default_hidden")]
    pub hidden: Vec<usize>,
    /// Width of the output embeddings (L2-normalised; the score is their dot product).
    #[serde(default = "default_dim")]
    pub dim: usize,
    /// Passes over the training data.
    #[serde(default = "default_epochs")]
    pub epochs: usize,
    /// Rows per step; every other row's item is a negative for a row (in-batch negatives).
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Adam's step size.
    #[serde(default = "default_learning_rate")]
    pub learning_rate: f64,
    /// Softmax temperature: logits are `dot(user, item) / temperature`.
    #[serde(default = "default_temperature")]
    pub temperature: f64,
    /// Decoupled weight decay (AdamW) of the MLP weights; embeddings are not decayed.
    #[serde(default)]
    pub weight_decay: f64,
    /// Seeds initialisation, shuffling and sampled negatives: same seed, data and `threads`
    /// give bit-identical weights.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Sampling-bias correction (Yi et al. 2019): subtract ln(frequency) of each candidate item
    /// from its logit, so popular items are not over-penalised as in-batch negatives. Without
    /// it the towers learn popularity-free affinities (NDCG@10 on the synthetic test drops from
    /// 0.21 to 0.06).
    #[serde(default = "default_true")]
    pub log_q: bool,
    /// Extra negatives per step drawn uniformly from the item catalogue (shared by the batch).
    #[serde(default)]
    pub sampled_negatives: usize,
    /// Worker threads of the tensor kernels; 0: one per core. Determinism holds for a fixed
    /// value.
    #[serde(default = "default_threads")]
    pub threads: usize,
    /// Validation scores at most this many users (the first ones met in the validation data).
    #[serde(default = "default_max_valid_users")]
    pub max_valid_users: usize,
}

fn default_hidden() -> Vec<usize> {
    vec![128]
}
fn default_dim() -> usize {
    64
}
fn default_epochs() -> usize {
    5
}
fn default_batch_size() -> usize {
    512
}
fn default_learning_rate() -> f64 {
    0.003
}
fn default_temperature() -> f64 {
    0.05
}
fn default_seed() -> u64 {
    42
}
fn default_true() -> bool {
    true
}
fn default_threads() -> usize {
    1
}
fn default_max_valid_users() -> usize {
    5000
}

/// Bounds that keep a typo from allocating the machine away.
const MAX_WIDTH: usize = 8192;
const MAX_BUCKETS: usize = 1 << 26;

impl TrainConfig {
    /// A configuration with these towers and every other field at its default.
    pub fn new(user: TowerSpec, item: TowerSpec) -> Self {
        TrainConfig {
            user,
            item,
            hidden: default_hidden(),
            dim: default_dim(),
            epochs: default_epochs(),
            batch_size: default_batch_size(),
            learning_rate: default_learning_rate(),
            temperature: default_temperature(),
            weight_decay: 0.0,
            seed: default_seed(),
            log_q: true,
            sampled_negatives: 0,
            threads: default_threads(),
            max_valid_users: default_max_valid_users(),
        }
    }

    /// Every problem at once, offline (no data needed).
    pub fn validate(&self) -> Result<()> {
        let mut problems = Vec::new();
        for (side, spec) in [("user", &self.user), ("item", &self.item)] {
            validate_tower(side, spec, &mut problems);
        }
        validate_sharing(&self.user, &self.item, &mut problems);
        let (ud, id) = (self.user.direct_dims(), self.item.direct_dims());
        if ud != id {
            problems.push(format!(
                "direct slots must have the same widths in the same order in both towers (user {ud:?}, item {id:?})"
            ));
        }
        if self.dim == 0 || self.dim > MAX_WIDTH {
            problems.push(format!("dim must be between 1 and {MAX_WIDTH}"));
        }
        for (i, h) in self.hidden.iter().enumerate() {
            if *h == 0 || *h > MAX_WIDTH {
                problems.push(format!("hidden[{i}] must be between 1 and {MAX_WIDTH}"));
            }
        }
        if self.epochs == 0 {
            problems.push("epochs must be at least 1".into());
        }
        if self.batch_size < 2 || self.batch_size > 65_536 {
            problems.push(
                "batch_size must be between 2 and 65536 (in-batch negatives need at least 2 rows)"
                    .into(),
            );
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            problems.push("learning_rate must be a positive number".into());
        }
        if !(self.temperature.is_finite() && self.temperature > 0.0) {
            problems.push("temperature must be a positive number".into());
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            problems.push("weight_decay must be zero or positive".into());
        }
        if self.sampled_negatives > 65_536 {
            problems.push("sampled_negatives must be at most 65536".into());
        }
        if self.threads > 1024 {
            problems.push("threads must be at most 1024 (0: one per core)".into());
        }
        if self.max_valid_users == 0 {
            problems.push("max_valid_users must be at least 1".into());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Error::Config(problems))
        }
    }
}

/// `share` names an item categorical of the same shape (user side only); a pool's members
/// are neighbours of one width.
fn validate_sharing(user: &TowerSpec, item: &TowerSpec, problems: &mut Vec<String>) {
    for c in &item.categorical {
        if c.share.is_some() {
            problems.push(format!(
                "item tower: {:?} has share: only user features can share an item table",
                c.name
            ));
        }
    }
    for c in &user.categorical {
        let Some(target) = &c.share else { continue };
        match item.categorical.iter().find(|i| &i.name == target) {
            None => problems.push(format!(
                "user tower: {:?} shares {target:?}, which is not an item categorical",
                c.name
            )),
            Some(t) if t.buckets != c.buckets || t.dim != c.dim => problems.push(format!(
                "user tower: {:?} shares {target:?} but has buckets {} and dim {} (the item's: {} and {})",
                c.name, c.buckets, c.dim, t.buckets, t.dim
            )),
            Some(_) => {}
        }
    }
    for (side, spec) in [("user", user), ("item", item)] {
        let slots = spec.slots();
        for slot in &slots {
            for c in slot.members.clone() {
                if spec.categorical[c].dim != slot.dim {
                    problems.push(format!(
                        "{side} tower: pool {:?} mixes widths ({} and {})",
                        spec.categorical[c].pool.as_deref().unwrap_or_default(),
                        slot.dim,
                        spec.categorical[c].dim
                    ));
                }
            }
        }
        for slot in &slots {
            if slot
                .members
                .clone()
                .any(|c| spec.categorical[c].direct != slot.direct)
            {
                problems.push(format!(
                    "{side} tower: pool {:?} mixes direct and MLP members",
                    spec.categorical[slot.members.start]
                        .pool
                        .as_deref()
                        .unwrap_or_default()
                ));
            }
        }
        if spec.input_width() == 0 && spec.direct_width() > 0 {
            problems.push(format!(
                "{side} tower: every input is direct; the MLP needs at least one other input"
            ));
        }
        let mut pools = std::collections::HashSet::new();
        for slot in &slots {
            if let Some(p) = &spec.categorical[slot.members.start].pool {
                if !pools.insert(p.as_str()) {
                    problems.push(format!(
                        "{side} tower: the members of pool {p:?} must be neighbours in the list"
                    ));
                }
            }
        }
    }
}

fn validate_tower(side: &str, spec: &TowerSpec, problems: &mut Vec<String>) {
    if spec.numeric.is_empty() && spec.categorical.is_empty() {
        problems.push(format!(
            "the {side} tower has no inputs: declare numeric or categorical features"
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for name in spec
        .numeric
        .iter()
        .chain(spec.categorical.iter().map(|c| &c.name))
    {
        if name.is_empty() {
            problems.push(format!("{side} tower: a feature has an empty name"));
        } else if !seen.insert(name.as_str()) {
            problems.push(format!("{side} tower: feature {name:?} is declared twice"));
        }
    }
    for c in &spec.categorical {
        if c.buckets == 0 || c.buckets > MAX_BUCKETS {
            problems.push(format!(
                "{side} tower: {:?} buckets must be between 1 and {MAX_BUCKETS}",
                c.name
            ));
        }
        if c.dim == 0 || c.dim > MAX_WIDTH {
            problems.push(format!(
                "{side} tower: {:?} dim must be between 1 and {MAX_WIDTH}",
                c.name
            ));
        }
    }
}
