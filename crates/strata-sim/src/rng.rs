//! A small deterministic PRNG (xoshiro256**, seeded through splitmix64) and the samplers the
//! simulator needs.
//!
//! Cross-platform determinism: generation only uses integer arithmetic and the IEEE-754
//! operations that are correctly rounded everywhere (`+ - * /` and `sqrt`), never the
//! standard `ln`, `exp` or `powf`, whose results may differ between libm implementations.
//! Where the simulator needs a logarithm or an exponential it uses [`ln`] and [`exp`] below,
//! which are built from those operations only. The same seed therefore gives bit-identical
//! output on every platform.

/// splitmix64 step: used to expand seeds and to mix tuples into a seed.
pub fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Mixes a seed and a tuple of integers into one well-spread 64-bit value.
pub fn mix(seed: u64, parts: &[u64]) -> u64 {
    let mut state = seed;
    let mut out = splitmix64(&mut state);
    for &p in parts {
        state ^= p.wrapping_mul(0xD6E8_FEB8_6659_FD93);
        out ^= splitmix64(&mut state);
        out = out.rotate_left(23);
    }
    out
}

/// xoshiro256** generator.
#[derive(Debug, Clone)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Rng {
        let mut sm = seed;
        let s = [
            splitmix64(&mut sm),
            splitmix64(&mut sm),
            splitmix64(&mut sm),
            splitmix64(&mut sm),
        ];
        Rng { s }
    }

    /// An independent generator for a sub-stream named by `parts` (e.g. `[TAG, user, day]`), so
    /// that one part of the simulation can be computed without replaying the others.
    pub fn derive(seed: u64, parts: &[u64]) -> Rng {
        Rng::new(mix(seed, parts))
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// Uniform in `[0, 1)`.
    pub fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in `[0, n)`; `n == 0` gives 0.
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `[lo, hi]` (inclusive); `hi < lo` gives `lo`.
    pub fn range_i64(&mut self, lo: i64, hi: i64) -> i64 {
        if hi <= lo {
            return lo;
        }
        let span = (hi - lo) as u64 + 1;
        lo + self.below(span) as i64
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.f64() < p
    }

    /// An index drawn with the given integer weights (all zero → 0).
    pub fn weighted(&mut self, weights: &[u32]) -> usize {
        let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
        let mut x = self.below(total);
        for (i, &w) in weights.iter().enumerate() {
            if x < u64::from(w) {
                return i;
            }
            x -= u64::from(w);
        }
        0
    }

    /// Pareto with shape 2 and scale 1 (mean 2, infinite variance), capped at `cap`:
    /// `1 / sqrt(1 - u)`.
    pub fn pareto2(&mut self, cap: f64) -> f64 {
        let u = self.f64();
        (1.0 / (1.0 - u).sqrt()).min(cap)
    }

    /// Standard normal (Marsaglia's polar method, with this module's [`ln`]).
    pub fn normal(&mut self) -> f64 {
        loop {
            let x = 2.0 * self.f64() - 1.0;
            let y = 2.0 * self.f64() - 1.0;
            let s = x * x + y * y;
            if s > 0.0 && s < 1.0 {
                return x * (-2.0 * ln(s) / s).sqrt();
            }
        }
    }

    /// Exponential with mean 1 (`-ln(1 - u)`).
    pub fn exponential(&mut self) -> f64 {
        -ln(1.0 - self.f64())
    }

    /// Fisher–Yates shuffle.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }
}

/// Zipf distribution over ranks `0..n` with exponent 1 (`P(k) ∝ 1 / (k + 1)`), sampled by
/// search in a precomputed CDF (8 bytes per rank) started from a guide table (4 bytes per
/// rank, Chen–Asau): a draw costs a step or two instead of a binary search through a table
/// too large for the cache, and picks exactly the rank the binary search would.
#[derive(Debug, Clone)]
pub struct Zipf {
    cdf: Vec<f64>,
    /// `guide[j]`: the first rank whose CDF exceeds `j / guide.len()` of the total.
    guide: Vec<u32>,
}

impl Zipf {
    /// A Zipf(1) distribution over `n` ranks.
    pub fn new(n: usize) -> Zipf {
        let mut cdf = Vec::with_capacity(n);
        let mut sum = 0.0;
        for k in 0..n {
            sum += 1.0 / (k as f64 + 1.0);
            cdf.push(sum);
        }
        let mut guide = Vec::with_capacity(n);
        let mut i = 0;
        for j in 0..n {
            let threshold = sum * (j as f64 / n as f64);
            while i + 1 < n && cdf[i] <= threshold {
                i += 1;
            }
            guide.push(i as u32);
        }
        Zipf { cdf, guide }
    }

    /// Number of ranks.
    pub fn len(&self) -> usize {
        self.cdf.len()
    }

    /// True when there are no ranks.
    pub fn is_empty(&self) -> bool {
        self.cdf.is_empty()
    }

    /// A rank in `0..n` (0 is the most likely); 0 when empty.
    pub fn sample(&self, rng: &mut Rng) -> usize {
        self.sample_first(self.cdf.len(), rng)
    }

    /// A rank in `0..m` from Zipf(1) over the first `m` ranks only (`m` is clamped to the
    /// number of ranks): the CDF of a shorter Zipf is a prefix of this one, so one table
    /// serves every list length. 0 when empty.
    pub fn sample_first(&self, m: usize, rng: &mut Rng) -> usize {
        let cdf = &self.cdf[..m.min(self.cdf.len())];
        let Some(&total) = cdf.last() else {
            return 0;
        };
        let u = rng.f64() * total;
        self.first_above(u).min(cdf.len() - 1)
    }

    /// The first rank whose CDF exceeds `u` (`n` when none does).
    fn first_above(&self, u: f64) -> usize {
        let (Some(&total), g) = (self.cdf.last(), self.guide.len()) else {
            return 0;
        };
        let j = ((u / total) * g as f64) as usize;
        let mut i = self.guide.get(j.min(g - 1)).map_or(0, |&i| i as usize);
        // The guide may overshoot by a rounding step: then search the usual way.
        if i > 0 && self.cdf[i - 1] > u {
            return self.cdf.partition_point(|&c| c <= u);
        }
        while i < self.cdf.len() && self.cdf[i] <= u {
            i += 1;
        }
        i
    }
}

/// ln 2 split for exact range reduction (Cody–Waite): `LN2_HI` has trailing zero bits so
/// `k * LN2_HI` is exact for |k| < 2^11.
const LN2_HI: f64 = f64::from_bits(0x3fe6_2e42_fee0_0000);
const LN2_LO: f64 = f64::from_bits(0x3dea_39ef_3579_3c76);
const LN2: f64 = std::f64::consts::LN_2;

/// `e^x` from `+ - * /` only (range reduction by powers of two and a degree-13 Taylor
/// polynomial; relative error below 1e-15), so it is bit-identical on every platform.
/// Saturates to 0 below -700 and to `e^700` above 700.
pub fn exp(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    let x = x.clamp(-700.0, 700.0);
    let k = (x * std::f64::consts::LOG2_E).round();
    let r = (x - k * LN2_HI) - k * LN2_LO;
    // Horner for sum r^i / i!, i = 0..=13 (|r| <= 0.35: the remainder is below 1e-17).
    let mut p = EXP_COEFFS[0];
    for &c in &EXP_COEFFS[1..] {
        p = p * r + c;
    }
    // 2^k is exact as a bit pattern for k in [-1022, 1023]; apply it in two halves so
    // k = -1010 (x near -700) stays a normal number.
    let k = k as i64;
    let (k1, k2) = (k / 2, k - k / 2);
    p * pow2(k1) * pow2(k2)
}

/// `1 / i!` for i = 13 down to 0 (constant divisions, correctly rounded at compile time).
const EXP_COEFFS: [f64; 14] = {
    let mut c = [0.0; 14];
    let mut i = 0;
    while i < 14 {
        let mut f = 1.0;
        let mut k = 2;
        while k <= 13 - i {
            f *= k as f64;
            k += 1;
        }
        c[i] = 1.0 / f;
        i += 1;
    }
    c
};

/// `1 / (2i + 1)` for i = 11 down to 0.
const LN_COEFFS: [f64; 12] = {
    let mut c = [0.0; 12];
    let mut i = 0;
    while i < 12 {
        c[i] = 1.0 / (2 * (11 - i) + 1) as f64;
        i += 1;
    }
    c
};

/// `2^k` for `k` in [-1022, 1023], exact.
fn pow2(k: i64) -> f64 {
    f64::from_bits(((k.clamp(-1022, 1023) + 1023) as u64) << 52)
}

/// Natural logarithm from `+ - * /` only (exponent from the bits, then the `atanh` series on
/// a mantissa within [1/sqrt 2, sqrt 2]); bit-identical on every platform. `ln(x <= 0)` is
/// `-inf` (NaN stays NaN).
pub fn ln(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    if x <= 0.0 {
        return f64::NEG_INFINITY;
    }
    if x.is_infinite() {
        return x;
    }
    // Subnormals: scale up by 2^64 first.
    let (x, bias) = if x < f64::MIN_POSITIVE {
        (x * 18_446_744_073_709_551_616.0, -64.0)
    } else {
        (x, 0.0)
    };
    let bits = x.to_bits();
    let mut e = ((bits >> 52) & 0x7ff) as i64 - 1023;
    let mut m = f64::from_bits((bits & 0x000f_ffff_ffff_ffff) | 0x3ff0_0000_0000_0000);
    if m > std::f64::consts::SQRT_2 {
        m /= 2.0;
        e += 1;
    }
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    // 2 * (s + s^3/3 + ... + s^23/23); |s| <= 0.172, so the remainder is below 1e-18.
    let mut p = 0.0;
    for &c in &LN_COEFFS {
        p = c + p * s2;
    }
    (e as f64 + bias) * LN2 + 2.0 * s * p
}

/// The logistic function `1 / (1 + e^-x)`, with this module's [`exp`].
pub fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + exp(-x))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_first_outputs_pin_the_algorithm() {
        // Pins the generator: a change here changes every simulated world.
        let mut r = Rng::new(42);
        let a = r.next_u64();
        let b = r.next_u64();
        let mut r2 = Rng::new(42);
        assert_eq!((a, b), (r2.next_u64(), r2.next_u64()));
        assert_ne!(a, b);
        let mut sm = 0u64;
        assert_eq!(splitmix64(&mut sm), 0xE220_A839_7B1D_CDAF);
    }

    #[test]
    fn below_and_weighted_stay_in_range() {
        let mut r = Rng::new(7);
        for _ in 0..10_000 {
            assert!(r.below(13) < 13);
            assert!(r.weighted(&[0, 3, 0, 1]) % 2 == 1);
            let x = r.range_i64(-5, 5);
            assert!((-5..=5).contains(&x));
        }
        assert_eq!(r.below(0), 0);
    }

    #[test]
    fn exp_and_ln_match_the_standard_library_closely() {
        let mut r = Rng::new(3);
        for _ in 0..100_000 {
            let x = (r.f64() - 0.5) * 80.0;
            let (a, b) = (exp(x), x.exp());
            assert!(((a - b) / b).abs() < 1e-14, "exp({x}) = {a}, std {b}");
            let y = r.f64() * 1e6 + 1e-9;
            let (a, b) = (ln(y), y.ln());
            assert!(
                (a - b).abs() <= 1e-14 * b.abs().max(1.0),
                "ln({y}) = {a}, std {b}"
            );
        }
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(ln(1.0), 0.0);
        assert!((ln(1e-310) - 1e-310f64.ln()).abs() < 1e-12);
        assert_eq!(exp(-1e9), exp(-700.0));
        assert!(exp(-700.0) > 0.0);
        assert_eq!(ln(0.0), f64::NEG_INFINITY);
        assert!((sigmoid(0.0) - 0.5).abs() < 1e-15);
        assert!(sigmoid(40.0) <= 1.0 && sigmoid(-40.0) > 0.0);
    }

    #[test]
    fn normal_has_mean_zero_and_unit_variance() {
        let mut r = Rng::new(9);
        let n = 200_000;
        let (mut sum, mut sq) = (0.0, 0.0);
        for _ in 0..n {
            let x = r.normal();
            sum += x;
            sq += x * x;
        }
        let mean = sum / f64::from(n);
        let var = sq / f64::from(n) - mean * mean;
        assert!(mean.abs() < 0.01, "mean {mean}");
        assert!((var - 1.0).abs() < 0.02, "variance {var}");
    }

    #[test]
    fn zipf_guide_picks_the_rank_a_binary_search_picks() {
        for n in [1usize, 2, 3, 10, 1000, 65_537] {
            let z = Zipf::new(n);
            let mut r = Rng::new(n as u64);
            let total = *z.cdf.last().unwrap();
            for k in 0..20_000 {
                // Random points, plus the exact CDF values (the edges).
                let u = if k % 2 == 0 {
                    r.f64() * total
                } else {
                    z.cdf[r.below(n as u64) as usize]
                };
                let want = z.cdf.partition_point(|&c| c <= u);
                assert_eq!(z.first_above(u), want, "n {n}, u {u}");
            }
        }
    }

    #[test]
    fn zipf_prefix_samples_stay_in_the_prefix() {
        let z = Zipf::new(1000);
        let mut r = Rng::new(5);
        let mut zero = 0;
        for _ in 0..10_000 {
            let k = z.sample_first(10, &mut r);
            assert!(k < 10);
            zero += usize::from(k == 0);
        }
        // P(0) = 1 / H(10) = 0.34.
        assert!((3000..3800).contains(&zero), "{zero}");
        assert_eq!(z.sample_first(0, &mut r), 0);
        assert!(z.sample_first(5000, &mut r) < 1000);
    }

    #[test]
    fn zipf_rank_zero_dominates() {
        let z = Zipf::new(1000);
        let mut r = Rng::new(1);
        let mut counts = vec![0u32; 1000];
        for _ in 0..100_000 {
            counts[z.sample(&mut r)] += 1;
        }
        // P(0)/P(9) = 10 for Zipf(1).
        let ratio = f64::from(counts[0]) / f64::from(counts[9].max(1));
        assert!((7.0..14.0).contains(&ratio), "ratio {ratio}");
    }
}
