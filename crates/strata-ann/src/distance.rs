//! Dot product and squared L2 distance over `f32` slices, chosen once per process: an AVX2+FMA
//! build of the same loop when the CPU has it, the portable loop otherwise. Exact search and
//! the graph walk call the same kernel, so their scores agree to the bit.

use std::sync::OnceLock;

/// The kernels in use.
#[derive(Clone, Copy)]
pub(crate) struct Kernels {
    pub dot: fn(&[f32], &[f32]) -> f32,
    pub l2: fn(&[f32], &[f32]) -> f32,
}

pub(crate) fn kernels() -> Kernels {
    static K: OnceLock<Kernels> = OnceLock::new();
    *K.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                return Kernels {
                    dot: x86::dot,
                    l2: x86::l2,
                };
            }
        }
        Kernels {
            dot: dot_portable,
            l2: l2_portable,
        }
    })
}

const LANES: usize = 16;

#[inline(always)]
fn dot_body(a: &[f32], b: &[f32], fma: bool) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f32; LANES];
    let ca = a.chunks_exact(LANES);
    let cb = b.chunks_exact(LANES);
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..LANES {
            acc[i] = if fma {
                x[i].mul_add(y[i], acc[i])
            } else {
                acc[i] + x[i] * y[i]
            };
        }
    }
    let mut s = 0f32;
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s + acc.iter().sum::<f32>()
}

#[inline(always)]
fn l2_body(a: &[f32], b: &[f32], fma: bool) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f32; LANES];
    let ca = a.chunks_exact(LANES);
    let cb = b.chunks_exact(LANES);
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..LANES {
            let d = x[i] - y[i];
            acc[i] = if fma {
                d.mul_add(d, acc[i])
            } else {
                acc[i] + d * d
            };
        }
    }
    let mut s = 0f32;
    for (x, y) in ra.iter().zip(rb) {
        s += (x - y) * (x - y);
    }
    s + acc.iter().sum::<f32>()
}

fn dot_portable(a: &[f32], b: &[f32]) -> f32 {
    dot_body(a, b, false)
}

fn l2_portable(a: &[f32], b: &[f32]) -> f32 {
    l2_body(a, b, false)
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    #[target_feature(enable = "avx2,fma")]
    fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
        super::dot_body(a, b, true)
    }

    #[target_feature(enable = "avx2,fma")]
    fn l2_avx2(a: &[f32], b: &[f32]) -> f32 {
        super::l2_body(a, b, true)
    }

    // These two are handed out by `kernels()` only after it has seen AVX2 and FMA on this CPU.
    pub(super) fn dot(a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: selected only when the CPU reports avx2 and fma.
        unsafe { dot_avx2(a, b) }
    }

    pub(super) fn l2(a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: selected only when the CPU reports avx2 and fma.
        unsafe { l2_avx2(a, b) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernels_match_a_plain_loop() {
        let k = kernels();
        for n in [1usize, 7, 16, 33, 64, 100] {
            let a: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..n).map(|i| (i as f32 * 0.11).cos()).collect();
            let dot: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            let l2: f32 = a.iter().zip(&b).map(|(x, y)| (x - y) * (x - y)).sum();
            assert!(((k.dot)(&a, &b) - dot).abs() < 1e-4, "dot n={n}");
            assert!(((k.l2)(&a, &b) - l2).abs() < 1e-4, "l2 n={n}");
            assert!((dot_portable(&a, &b) - dot).abs() < 1e-4);
        }
    }
}
