//! The crate's own deterministic random numbers and hashes: every random choice in training
//! (initialisation, shuffling, sampled negatives) comes from here, so a seed fixes the result
//! regardless of dependency versions. The hashes are part of the saved format (categorical
//! values map to embedding rows through them): never change them without a format version bump.

/// SplitMix64: tiny, fast, good enough for shuffles and initialisation.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Rng(mix64(seed ^ 0x5EED_0F57_2A7A_0001))
    }

    /// A generator for a sub-stream (epoch, purpose), independent of how far `self` advanced.
    pub(crate) fn derive(seed: u64, stream: u64) -> Self {
        Rng::new(mix64(seed) ^ mix64(stream.wrapping_add(0xA5A5_A5A5)))
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix64(self.0)
    }

    /// Uniform in [0, 1).
    pub(crate) fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in 0..n (n > 0).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    /// Standard normal (Box-Muller).
    pub(crate) fn normal(&mut self) -> f64 {
        let u1 = self.next_f64().max(f64::MIN_POSITIVE);
        let u2 = self.next_f64();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// Fisher-Yates.
    pub(crate) fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }
}

/// The SplitMix64 finaliser: a bijective 64-bit mix.
pub(crate) fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// FNV-1a over bytes (salts the categorical hash with the feature's name; checksums artifacts).
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xCBF2_9CE4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01B3);
    }
    h
}

/// The embedding row of a categorical value: `mix64(value ^ salt) mod buckets`, where the salt
/// is the FNV-1a hash of the feature's name (two features hash the same id to unrelated rows).
pub(crate) fn bucket(value: u64, salt: u64, buckets: usize) -> usize {
    (mix64(value ^ salt) % buckets as u64) as usize
}
