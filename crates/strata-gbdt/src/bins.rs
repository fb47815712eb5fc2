//! Per-feature bin mappers: raw f32 values → u8 histogram bins. Bin 0 always holds missing
//! values (NaN; for categorical features also negative, rare and unseen categories).

use serde::{Deserialize, Serialize};

/// Categorical codes at or above this are treated as missing: the scorer keeps bitsets over
/// codes, so codes must be small dictionary indexes.
pub const MAX_CATEGORY_CODE: u32 = 1 << 20;

/// Whether a feature is a number or a category code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeatureKind {
    /// Ordered values; splits are thresholds.
    Numeric,
    /// Non-negative integer codes (passed as f32, below [`MAX_CATEGORY_CODE`]); splits are
    /// sets of categories. NaN or negative means missing.
    Categorical,
}

/// A feature's name and kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeatureSpec {
    /// Column name, kept in the model for importance reports.
    pub name: String,
    /// Numeric or categorical.
    pub kind: FeatureKind,
}

impl FeatureSpec {
    /// A numeric feature.
    pub fn numeric(name: impl Into<String>) -> Self {
        FeatureSpec {
            name: name.into(),
            kind: FeatureKind::Numeric,
        }
    }

    /// A categorical feature.
    pub fn categorical(name: impl Into<String>) -> Self {
        FeatureSpec {
            name: name.into(),
            kind: FeatureKind::Categorical,
        }
    }
}

/// How one feature's raw values map to bins.
#[derive(Debug, Clone, PartialEq)]
pub enum BinMapper {
    /// Bin `b >= 1` holds values in `(upper[b-2], upper[b-1]]`; the last upper is +inf.
    Numeric { upper: Vec<f32> },
    /// Bin `b >= 1` holds category `codes[b-1]`; every other code is bin 0.
    Categorical { codes: Vec<u32> },
}

impl BinMapper {
    /// Fits quantile bins (at most `max_bin - 1` value bins) from a sample of a numeric column.
    pub fn fit_numeric(sample: &[f32], max_bin: u32) -> BinMapper {
        let mut values: Vec<f32> = sample.iter().copied().filter(|v| !v.is_nan()).collect();
        values.sort_by(|a, b| a.total_cmp(b));
        // Distinct values with their counts (-0.0 and 0.0 are one value).
        let mut distinct: Vec<(f32, usize)> = Vec::new();
        for v in values {
            match distinct.last_mut() {
                Some((last, n)) if *last == v => *n += 1,
                _ => distinct.push((v, 1)),
            }
        }
        let value_bins = (max_bin.max(2) - 1) as usize;
        let total: usize = distinct.iter().map(|d| d.1).sum();
        let mut upper = Vec::new();
        if distinct.len() <= value_bins {
            for w in distinct.windows(2) {
                upper.push(boundary(w[0].0, w[1].0, upper.last().copied()));
            }
        } else {
            // Greedy quantiles over distinct values: close a bin once it holds its share of
            // what is left, so one heavy value does not starve the bins after it.
            let mut remaining = total;
            let mut in_bin = 0usize;
            let mut bins_left = value_bins;
            for (i, (v, n)) in distinct.iter().enumerate() {
                in_bin += n;
                let target = remaining.div_ceil(bins_left.max(1));
                let is_last = i + 1 == distinct.len();
                if !is_last && bins_left > 1 && in_bin >= target {
                    upper.push(boundary(*v, distinct[i + 1].0, upper.last().copied()));
                    remaining -= in_bin;
                    in_bin = 0;
                    bins_left -= 1;
                }
            }
        }
        upper.push(f32::INFINITY);
        BinMapper::Numeric { upper }
    }

    /// Fits a categorical mapper: the most frequent codes of the sample (at most
    /// `max_bin - 1`, each seen at least twice unless there are few), ordered by frequency.
    pub fn fit_categorical(sample: &[f32], max_bin: u32) -> BinMapper {
        let mut counts: std::collections::HashMap<u32, usize> = std::collections::HashMap::new();
        for &v in sample {
            if let Some(code) = category_code(v) {
                *counts.entry(code).or_default() += 1;
            }
        }
        let mut by_count: Vec<(u32, usize)> = counts.into_iter().collect();
        by_count.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let keep = (max_bin.max(2) - 1) as usize;
        let min_count = if by_count.len() > keep { 2 } else { 1 };
        let codes = by_count
            .into_iter()
            .filter(|c| c.1 >= min_count)
            .take(keep)
            .map(|c| c.0)
            .collect();
        BinMapper::Categorical { codes }
    }

    /// Fits the mapper of a feature of `kind` from a sample of its column.
    pub fn fit(kind: FeatureKind, sample: &[f32], max_bin: u32) -> BinMapper {
        match kind {
            FeatureKind::Numeric => BinMapper::fit_numeric(sample, max_bin),
            FeatureKind::Categorical => BinMapper::fit_categorical(sample, max_bin),
        }
    }

    /// Number of bins, the missing bin included.
    pub fn num_bins(&self) -> usize {
        match self {
            BinMapper::Numeric { upper } => upper.len() + 1,
            BinMapper::Categorical { codes } => codes.len() + 1,
        }
    }

    /// The bin of a raw value.
    pub fn bin(&self, v: f32) -> u8 {
        match self {
            BinMapper::Numeric { upper } => {
                if v.is_nan() {
                    0
                } else {
                    (upper.partition_point(|u| *u < v) + 1).min(upper.len()) as u8
                }
            }
            BinMapper::Categorical { codes } => match category_code(v) {
                Some(code) => codes
                    .iter()
                    .position(|c| *c == code)
                    .map_or(0, |p| (p + 1) as u8),
                None => 0,
            },
        }
    }

    /// A lookup table for categorical binning (code → bin), built once per dataset builder.
    pub(crate) fn category_lookup(&self) -> Option<std::collections::HashMap<u32, u8>> {
        match self {
            BinMapper::Categorical { codes } => Some(
                codes
                    .iter()
                    .enumerate()
                    .map(|(i, c)| (*c, (i + 1) as u8))
                    .collect(),
            ),
            BinMapper::Numeric { .. } => None,
        }
    }
}

/// A raw value as a category code, or None for missing.
pub(crate) fn category_code(v: f32) -> Option<u32> {
    if v.is_nan() || v < 0.0 || v >= MAX_CATEGORY_CODE as f32 {
        None
    } else {
        Some(v as u32)
    }
}

/// The upper edge between two adjacent distinct values: their midpoint when it lies strictly
/// between them in f32 (and above the previous edge), else the lower value itself.
fn boundary(lo: f32, hi: f32, prev: Option<f32>) -> f32 {
    let mid = (lo as f64 + (hi as f64 - lo as f64) / 2.0) as f32;
    let ok = mid >= lo && mid < hi && prev.is_none_or(|p| mid > p);
    if ok {
        mid
    } else {
        lo
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn few_distinct_values_get_a_bin_each_and_nan_is_bin_zero() {
        let m = BinMapper::fit_numeric(&[1.0, 2.0, 2.0, 3.0, f32::NAN], 255);
        assert_eq!(m.num_bins(), 4);
        assert_eq!(m.bin(f32::NAN), 0);
        assert_eq!(m.bin(1.0), 1);
        assert_eq!(m.bin(2.0), 2);
        assert_eq!(m.bin(3.0), 3);
        assert_eq!(m.bin(100.0), 3);
        assert_eq!(m.bin(-100.0), 1);
    }

    #[test]
    fn many_values_are_binned_by_quantile_within_max_bin() {
        let sample: Vec<f32> = (0..10_000).map(|i| (i as f32).sqrt()).collect();
        let m = BinMapper::fit_numeric(&sample, 16);
        assert_eq!(m.num_bins(), 16);
        let mut counts = [0usize; 16];
        for v in &sample {
            counts[m.bin(*v) as usize] += 1;
        }
        assert_eq!(counts[0], 0);
        for c in &counts[1..] {
            assert!((500..=800).contains(c), "{counts:?}");
        }
    }

    #[test]
    fn categories_keep_the_frequent_codes_and_fold_the_rest_into_missing() {
        let mut sample = vec![7.0; 50];
        sample.extend(vec![3.0; 20]);
        sample.push(9.0);
        sample.push(-1.0);
        let m = BinMapper::fit_categorical(&sample, 3);
        assert_eq!(m.num_bins(), 3);
        assert_eq!(m.bin(7.0), 1);
        assert_eq!(m.bin(3.0), 2);
        assert_eq!(m.bin(9.0), 0);
        assert_eq!(m.bin(-1.0), 0);
        assert_eq!(m.bin(f32::NAN), 0);
    }
}
