//! Numeric preprocessing learned from the training data and stored with the model:
//! `z = (sign(x)·ln(1+|x|) − mean) / std`; missing (NaN) or infinite values become 0 (the mean).

use serde::{Deserialize, Serialize};

/// Per numeric column: mean and standard deviation of the log-transformed training values.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NumericPrep {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

/// The signed log transform (compresses counts and heavy tails).
pub(crate) fn signed_log(x: f32) -> f32 {
    x.signum() * x.abs().ln_1p()
}

impl NumericPrep {
    /// The model input for value `x` of column `c`.
    #[inline]
    pub fn apply(&self, c: usize, x: f32) -> f32 {
        if !x.is_finite() {
            return 0.0;
        }
        (signed_log(x) - self.mean[c]) / self.std[c]
    }
}

/// Streaming moments (Welford) per column, in f64.
#[derive(Debug, Clone)]
pub(crate) struct Moments {
    n: Vec<u64>,
    mean: Vec<f64>,
    m2: Vec<f64>,
}

impl Moments {
    pub(crate) fn new(columns: usize) -> Self {
        Moments {
            n: vec![0; columns],
            mean: vec![0.0; columns],
            m2: vec![0.0; columns],
        }
    }

    pub(crate) fn add_column(&mut self, c: usize, values: &[f32]) {
        for &x in values {
            if !x.is_finite() {
                continue;
            }
            let v = f64::from(signed_log(x));
            self.n[c] += 1;
            let d = v - self.mean[c];
            self.mean[c] += d / self.n[c] as f64;
            self.m2[c] += d * (v - self.mean[c]);
        }
    }

    /// Columns never seen (all missing) or constant get std 1 (their input is then 0 or a
    /// constant: harmless).
    pub(crate) fn finish(&self) -> NumericPrep {
        let mut prep = NumericPrep::default();
        for c in 0..self.n.len() {
            let var = if self.n[c] > 1 {
                self.m2[c] / (self.n[c] - 1) as f64
            } else {
                0.0
            };
            let std = var.sqrt();
            prep.mean.push(self.mean[c] as f32);
            prep.std.push(if std > 1e-6 { std as f32 } else { 1.0 });
        }
        prep
    }
}
