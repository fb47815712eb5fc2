//! Validation during training: the users of the validation data, their positives, and exact
//! whole-catalogue ranking for the model and for the popularity baseline.

use std::collections::{HashMap, HashSet};

use candle_core::{DType, Device, Tensor};

use crate::config::TrainConfig;
use crate::data::{Columns, ExampleSource, ItemTable};
use crate::error::Result;
use crate::metrics::{ndcg_at_k, recall_at_k, select_top_k};
use crate::model::{column_rows, Tower};
use crate::train::Validation;

const K_RECALL: usize = 100;
const K_NDCG: usize = 10;

/// Validation users: one feature row each (their first in the data) and their positives.
pub(crate) struct ValidSet {
    pub(crate) user_ids: Vec<u64>,
    users: Columns,
    positives: Vec<HashSet<u64>>,
}

impl ValidSet {
    pub(crate) fn read(
        cfg: &TrainConfig,
        source: &mut dyn ExampleSource,
        catalogue: &ItemTable,
    ) -> Result<Self> {
        let known: HashSet<u64> = catalogue.ids.iter().copied().collect();
        let mut index: HashMap<u64, usize> = HashMap::new();
        let mut set = ValidSet {
            user_ids: Vec::new(),
            users: Columns::for_spec(&cfg.user),
            positives: Vec::new(),
        };
        source.reset()?;
        while let Some(batch) = source.next_batch(4096)? {
            batch.check(&cfg.user, &cfg.item)?;
            for r in 0..batch.rows() {
                let user = batch.user_id[r];
                let slot = match index.get(&user) {
                    Some(s) => *s,
                    None if set.user_ids.len() < cfg.max_valid_users => {
                        index.insert(user, set.user_ids.len());
                        set.user_ids.push(user);
                        set.users.push_row(&batch.user, r);
                        set.positives.push(HashSet::new());
                        set.user_ids.len() - 1
                    }
                    None => continue,
                };
                if known.contains(&batch.item_id[r]) {
                    set.positives[slot].insert(batch.item_id[r]);
                }
            }
        }
        Ok(set)
    }

    /// Mean metrics over users with positives, given each user's ranked list.
    fn score(&self, ranked: impl Fn(usize) -> Result<Vec<u64>>) -> Result<Validation> {
        let (mut users, mut recall, mut ndcg) = (0usize, 0f64, 0f64);
        for (u, pos) in self.positives.iter().enumerate() {
            if pos.is_empty() {
                continue;
            }
            let list = ranked(u)?;
            users += 1;
            recall += recall_at_k(&list, pos, K_RECALL);
            ndcg += ndcg_at_k(&list, pos, K_NDCG);
        }
        let n = users.max(1) as f64;
        Ok(Validation {
            users,
            recall_at_100: recall / n,
            ndcg_at_10: ndcg / n,
        })
    }

    pub(crate) fn popularity(
        &self,
        counts: &HashMap<u64, u64>,
        catalogue: &ItemTable,
    ) -> Validation {
        let scores: Vec<f32> = catalogue
            .ids
            .iter()
            .map(|id| counts.get(id).copied().unwrap_or(0) as f32)
            .collect();
        let top: Vec<u64> = select_top_k(&catalogue.ids, &scores, K_RECALL, &HashSet::new())
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        // The closure cannot fail.
        self.score(|_| Ok(top.clone())).unwrap_or(Validation {
            users: 0,
            recall_at_100: 0.0,
            ndcg_at_10: 0.0,
        })
    }

    pub(crate) fn evaluate(
        &self,
        user: &Tower,
        item: &Tower,
        catalogue: &ItemTable,
    ) -> Result<Validation> {
        let dim = user.output_width();
        let v = item.embed(&catalogue.features, &item.dense_tensors()?)?;
        let v = Tensor::from_vec(v, (catalogue.len(), dim), &Device::Cpu)?;
        let vt = v.t()?.contiguous()?;
        let u = user.embed(&self.users, &user.dense_tensors()?)?;
        let n_users = column_rows_or(&self.users, self.user_ids.len());
        let u = Tensor::from_vec(u, (n_users, dim), &Device::Cpu)?;
        // Score users in chunks: a chunk × catalogue matrix at a time.
        let chunk = (1usize << 22) / catalogue.len().max(1);
        let chunk = chunk.clamp(1, 1024);
        let mut lists: Vec<Vec<u64>> = Vec::with_capacity(n_users);
        let mut start = 0;
        while start < n_users {
            let end = (start + chunk).min(n_users);
            let scores = u.narrow(0, start, end - start)?.matmul(&vt)?;
            for row in scores.to_dtype(DType::F32)?.to_vec2::<f32>()? {
                lists.push(
                    select_top_k(&catalogue.ids, &row, K_RECALL, &HashSet::new())
                        .into_iter()
                        .map(|(id, _)| id)
                        .collect(),
                );
            }
            start = end;
        }
        self.score(|u| Ok(lists[u].clone()))
    }
}

fn column_rows_or(cols: &Columns, fallback: usize) -> usize {
    match column_rows(cols) {
        0 => fallback,
        n => n,
    }
}
