//! The stream benchmark's parts (issue #29, `src/bin/stream_bench.rs`): click events and their
//! open-loop background load ([`events`]), `strata serve` as a child with its project, metrics
//! and CPU time ([`server`]), freshness probes through the feature API ([`freshness`]) and
//! bots that trip a risk rule ([`risk`]).

pub mod events;
pub mod freshness;
pub mod report;
pub mod risk;
pub mod server;

/// Wall-clock microseconds since the epoch: the clock `strata serve` stamps events with
/// (`server_ts`) and decides risk rules by, on the same machine.
pub fn wall_us() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// Quantile `p` (0..1) of sorted samples (any unit); NaN when empty.
pub fn quantile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// `{"n", "p50", "p99", "max"}` of samples in milliseconds.
pub fn summary_ms(mut ms: Vec<f64>) -> serde_json::Value {
    ms.sort_by(f64::total_cmp);
    serde_json::json!({
        "n": ms.len(),
        "p50": quantile(&ms, 0.5),
        "p99": quantile(&ms, 0.99),
        "max": quantile(&ms, 1.0),
    })
}

/// A well-mixed 64-bit value of `x` (SplitMix64's finaliser).
pub fn mix(x: u64) -> u64 {
    let mut x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_of_sorted_samples() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&v, 0.5), 51.0);
        assert_eq!(quantile(&v, 0.99), 99.0);
        assert_eq!(quantile(&v, 1.0), 100.0);
        assert!(quantile(&[], 0.5).is_nan());
    }
}
