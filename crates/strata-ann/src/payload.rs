//! Payload columns (one value per item and field), the payload index built over them (sorted
//! ids per value), and a filter compiled against both: a per-item check for the graph walk,
//! and the id lists and counts that estimate how many items match.

use std::collections::HashMap;

use crate::error::{AnnError, Result};
use crate::filter::{Filter, Match};
use crate::params::{FieldKind, Payload, PayloadSchema, PayloadValue};

/// A string column's code for "no value".
pub(crate) const MISSING: u32 = u32::MAX;

/// One declared field's values, by internal id.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Column {
    Int(Vec<Option<i64>>),
    Str {
        /// Dictionary code per item, `MISSING` for none.
        codes: Vec<u32>,
        dict: Vec<String>,
        lookup: HashMap<String, u32>,
    },
}

/// The payloads of all items, column by column.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PayloadStore {
    pub created_at: Vec<i64>,
    pub columns: Vec<Column>,
}

impl PayloadStore {
    pub fn new(schema: &PayloadSchema) -> Self {
        let columns = schema
            .fields
            .iter()
            .map(|f| match f.kind {
                FieldKind::Int => Column::Int(Vec::new()),
                FieldKind::Str => Column::Str {
                    codes: Vec::new(),
                    dict: Vec::new(),
                    lookup: HashMap::new(),
                },
            })
            .collect();
        PayloadStore {
            created_at: Vec::new(),
            columns,
        }
    }

    /// Checks a payload against the schema without storing it.
    pub fn check(schema: &PayloadSchema, payload: &Payload) -> Result<()> {
        for (i, (name, value)) in payload.fields.iter().enumerate() {
            let Some(pos) = schema.position(name) else {
                return Err(AnnError::invalid(format!(
                    "payload field {name} is not declared in the index schema"
                )));
            };
            let kind = schema.fields[pos].kind;
            let ok = matches!(
                (kind, value),
                (FieldKind::Int, PayloadValue::Int(_)) | (FieldKind::Str, PayloadValue::Str(_))
            );
            if !ok {
                return Err(AnnError::invalid(format!(
                    "payload field {name} is declared {kind:?} but got {value:?}"
                )));
            }
            if payload.fields[..i].iter().any(|(n, _)| n == name) {
                return Err(AnnError::invalid(format!(
                    "payload field {name} is given twice"
                )));
            }
        }
        Ok(())
    }

    /// Appends a payload checked with [`PayloadStore::check`].
    pub fn push(&mut self, schema: &PayloadSchema, payload: Payload) {
        self.created_at.push(payload.created_at);
        let mut values: Vec<Option<PayloadValue>> = vec![None; self.columns.len()];
        for (name, value) in payload.fields {
            if let Some(pos) = schema.position(&name) {
                values[pos] = Some(value);
            }
        }
        for (column, value) in self.columns.iter_mut().zip(values) {
            match column {
                Column::Int(v) => v.push(match value {
                    Some(PayloadValue::Int(x)) => Some(x),
                    _ => None,
                }),
                Column::Str {
                    codes,
                    dict,
                    lookup,
                } => {
                    let code = match value {
                        Some(PayloadValue::Str(s)) => match lookup.get(&s) {
                            Some(&c) => c,
                            None => {
                                let c = dict.len() as u32;
                                lookup.insert(s.clone(), c);
                                dict.push(s);
                                c
                            }
                        },
                        _ => MISSING,
                    };
                    codes.push(code);
                }
            }
        }
    }
}

/// Sorted ids per value: what a condition matches, and how many, without a scan.
#[derive(Debug, Clone)]
pub(crate) struct PayloadIndex {
    created_vals: Vec<i64>,
    created_ids: Vec<u32>,
    fields: Vec<FieldIndex>,
}

#[derive(Debug, Clone)]
enum FieldIndex {
    /// (value, id) pairs sorted by value then id, as two arrays; items without a value left out.
    Int { vals: Vec<i64>, ids: Vec<u32> },
    /// Ids per dictionary code, ascending.
    Str { postings: Vec<Vec<u32>> },
}

fn sorted_pairs(values: impl Iterator<Item = (i64, u32)>) -> (Vec<i64>, Vec<u32>) {
    let mut pairs: Vec<(i64, u32)> = values.collect();
    pairs.sort_unstable();
    pairs.into_iter().unzip()
}

impl PayloadIndex {
    pub fn build(store: &PayloadStore) -> Self {
        let (created_vals, created_ids) = sorted_pairs(
            store
                .created_at
                .iter()
                .enumerate()
                .map(|(i, &t)| (t, i as u32)),
        );
        let fields = store
            .columns
            .iter()
            .map(|c| match c {
                Column::Int(v) => {
                    let (vals, ids) = sorted_pairs(
                        v.iter()
                            .enumerate()
                            .filter_map(|(i, x)| x.map(|x| (x, i as u32))),
                    );
                    FieldIndex::Int { vals, ids }
                }
                Column::Str { codes, dict, .. } => {
                    let mut postings = vec![Vec::new(); dict.len()];
                    for (i, &c) in codes.iter().enumerate() {
                        if let Some(p) = postings.get_mut(c as usize) {
                            p.push(i as u32);
                        }
                    }
                    FieldIndex::Str { postings }
                }
            })
            .collect();
        PayloadIndex {
            created_vals,
            created_ids,
            fields,
        }
    }
}

/// A condition as checked per item.
#[derive(Debug)]
enum Check {
    IntIn(usize, Vec<i64>),
    IntRange(usize, i64, i64),
    StrIn(usize, Vec<u32>),
}

/// The items one condition matches, as sorted id slices of the payload index.
#[derive(Debug)]
pub(crate) struct Source<'a> {
    pub slices: Vec<&'a [u32]>,
    pub count: usize,
}

/// A filter resolved against one index.
#[derive(Debug)]
pub(crate) struct CompiledFilter<'a> {
    store: &'a PayloadStore,
    /// Internal ids never returned, sorted.
    exclude: Vec<u32>,
    created_after: Option<i64>,
    checks: Vec<Check>,
    /// Per condition (created_after included), what it matches.
    pub sources: Vec<Source<'a>>,
    /// A condition that nothing can match (an unknown string value, an empty `in`).
    pub never: bool,
}

fn value_range(vals: &[i64], lo: i64, hi: i64) -> std::ops::Range<usize> {
    let start = vals.partition_point(|&v| v < lo);
    let end = vals.partition_point(|&v| v <= hi);
    start..end.max(start)
}

impl<'a> CompiledFilter<'a> {
    pub fn compile(
        filter: &Filter,
        schema: &PayloadSchema,
        store: &'a PayloadStore,
        index: &'a PayloadIndex,
        internal: impl Fn(u64) -> Option<u32>,
    ) -> Result<Self> {
        let mut exclude: Vec<u32> = filter
            .exclude_ids
            .iter()
            .filter_map(|&id| internal(id))
            .collect();
        exclude.sort_unstable();
        exclude.dedup();
        let mut checks = Vec::new();
        let mut sources = Vec::new();
        let mut never = false;
        if let Some(t) = filter.created_after {
            let start = index.created_vals.partition_point(|&v| v <= t);
            let slice = &index.created_ids[start..];
            sources.push(Source {
                slices: vec![slice],
                count: slice.len(),
            });
        }
        for cond in &filter.must {
            let Some(pos) = schema.position(&cond.field) else {
                return Err(AnnError::invalid(format!(
                    "filter field {} is not a declared payload field",
                    cond.field
                )));
            };
            let (column, findex) = match (store.columns.get(pos), index.fields.get(pos)) {
                (Some(c), Some(f)) => (c, f),
                _ => {
                    return Err(AnnError::invalid(format!(
                        "filter field {} has no column",
                        cond.field
                    )))
                }
            };
            let wrong = |v: &PayloadValue| {
                AnnError::invalid(format!(
                    "filter on field {} has a value of the wrong kind: {v:?}",
                    cond.field
                ))
            };
            match (column, findex) {
                (Column::Int(_), FieldIndex::Int { vals, ids }) => {
                    let (check, ranges) = match &cond.matches {
                        Match::Eq(_) | Match::In(_) => {
                            let values: &[PayloadValue] = match &cond.matches {
                                Match::Eq(v) => std::slice::from_ref(v),
                                Match::In(vs) => vs,
                                Match::Range(_) => &[],
                            };
                            let mut xs = Vec::with_capacity(values.len());
                            for v in values {
                                match v {
                                    PayloadValue::Int(x) => xs.push(*x),
                                    other => return Err(wrong(other)),
                                }
                            }
                            xs.sort_unstable();
                            xs.dedup();
                            let ranges: Vec<_> =
                                xs.iter().map(|&x| value_range(vals, x, x)).collect();
                            (Check::IntIn(pos, xs), ranges)
                        }
                        Match::Range(r) => {
                            let lo = r.min.unwrap_or(i64::MIN);
                            let hi = r.max.unwrap_or(i64::MAX);
                            (
                                Check::IntRange(pos, lo, hi),
                                vec![value_range(vals, lo, hi)],
                            )
                        }
                    };
                    let slices: Vec<&[u32]> = ranges.into_iter().map(|r| &ids[r]).collect();
                    let count = slices.iter().map(|s| s.len()).sum();
                    never |= count == 0;
                    checks.push(check);
                    sources.push(Source { slices, count });
                }
                (Column::Str { lookup, .. }, FieldIndex::Str { postings }) => {
                    let values: &[PayloadValue] = match &cond.matches {
                        Match::Eq(v) => std::slice::from_ref(v),
                        Match::In(vs) => vs,
                        Match::Range(_) => {
                            return Err(AnnError::invalid(format!(
                                "range filter on string field {}",
                                cond.field
                            )))
                        }
                    };
                    let mut codes = Vec::with_capacity(values.len());
                    for v in values {
                        match v {
                            PayloadValue::Str(s) => {
                                if let Some(&c) = lookup.get(s) {
                                    codes.push(c);
                                }
                            }
                            other => return Err(wrong(other)),
                        }
                    }
                    codes.sort_unstable();
                    codes.dedup();
                    let slices: Vec<&[u32]> = codes
                        .iter()
                        .filter_map(|&c| postings.get(c as usize).map(|p| p.as_slice()))
                        .collect();
                    let count = slices.iter().map(|s| s.len()).sum();
                    never |= count == 0;
                    checks.push(Check::StrIn(pos, codes));
                    sources.push(Source { slices, count });
                }
                _ => {
                    return Err(AnnError::invalid(format!(
                        "filter field {} has a column of another kind",
                        cond.field
                    )))
                }
            }
        }
        Ok(CompiledFilter {
            store,
            exclude,
            created_after: filter.created_after,
            checks,
            sources,
            never,
        })
    }

    /// Whether the filter lets every item through.
    pub fn is_pass_all(&self) -> bool {
        !self.never
            && self.exclude.is_empty()
            && self.created_after.is_none()
            && self.checks.is_empty()
    }

    pub fn excluded(&self) -> usize {
        self.exclude.len()
    }

    /// Whether item `id` passes.
    #[inline]
    pub fn matches(&self, id: u32) -> bool {
        let i = id as usize;
        if let Some(t) = self.created_after {
            if self.store.created_at.get(i).is_none_or(|&c| c <= t) {
                return false;
            }
        }
        for check in &self.checks {
            let ok = match check {
                Check::IntIn(pos, xs) => match self.store.columns.get(*pos) {
                    Some(Column::Int(v)) => match v.get(i) {
                        Some(Some(x)) => xs.binary_search(x).is_ok(),
                        _ => false,
                    },
                    _ => false,
                },
                Check::IntRange(pos, lo, hi) => match self.store.columns.get(*pos) {
                    Some(Column::Int(v)) => match v.get(i) {
                        Some(Some(x)) => lo <= x && x <= hi,
                        _ => false,
                    },
                    _ => false,
                },
                Check::StrIn(pos, codes) => match self.store.columns.get(*pos) {
                    Some(Column::Str { codes: col, .. }) => match col.get(i) {
                        Some(&c) if c != MISSING => codes.binary_search(&c).is_ok(),
                        _ => false,
                    },
                    _ => false,
                },
            };
            if !ok {
                return false;
            }
        }
        self.exclude.is_empty() || self.exclude.binary_search(&id).is_err()
    }
}
