//! Pieces of the CDC benchmark (`src/bin/cdc_bench.rs`) that are plain functions: reading
//! sysbench's report, reading the ODS merger's commit log lines, percentiles.

use std::time::Duration;

/// What one `sysbench … run` printed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SysbenchRun {
    pub transactions: u64,
    pub tps: f64,
    /// Write statements (each changes one row in the OLTP write workloads).
    pub writes: u64,
    pub ignored_errors: u64,
    pub seconds: f64,
    pub latency_avg_ms: f64,
    pub latency_p95_ms: f64,
}

/// Parses sysbench 1.0's run report.
pub fn parse_sysbench(text: &str) -> Option<SysbenchRun> {
    let field = |name: &str| -> Option<&str> {
        text.lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix(name).map(str::trim))
    };
    let first_num = |s: &str| -> Option<f64> {
        s.split_whitespace()
            .next()?
            .trim_end_matches('s')
            .parse()
            .ok()
    };
    let per_sec = |s: &str| -> Option<f64> {
        let inner = s.split('(').nth(1)?;
        inner.split_whitespace().next()?.parse().ok()
    };
    let tx = field("transactions:")?;
    Some(SysbenchRun {
        transactions: first_num(tx)? as u64,
        tps: per_sec(tx)?,
        writes: first_num(field("write:")?)? as u64,
        ignored_errors: field("ignored errors:").and_then(first_num).unwrap_or(0.0) as u64,
        seconds: first_num(field("total time:")?)?,
        latency_avg_ms: field("avg:").and_then(first_num).unwrap_or(f64::NAN),
        latency_p95_ms: field("95th percentile:")
            .and_then(first_num)
            .unwrap_or(f64::NAN),
    })
}

/// One ODS merger commit, from its debug log line
/// (`cdc commit table=ods.ods_x changes=123 next=456 elapsed=12.3ms`).
#[derive(Debug, Clone, PartialEq)]
pub struct MergeCommit {
    pub table: String,
    pub changes: u64,
    pub elapsed: Duration,
}

/// Every merger commit line in a `strata serve` log.
pub fn parse_commits(log: &str) -> Vec<MergeCommit> {
    log.lines()
        .filter_map(|raw| {
            let line = strip_ansi(raw);
            if !line.contains("cdc commit") {
                return None;
            }
            let value = |key: &str| -> Option<String> {
                let start = line.find(&format!(" {key}="))? + key.len() + 2;
                Some(
                    line[start..]
                        .split_whitespace()
                        .next()
                        .unwrap_or("")
                        .to_string(),
                )
            };
            Some(MergeCommit {
                table: value("table")?,
                changes: value("changes")?.parse().ok()?,
                elapsed: parse_debug_duration(&value("elapsed")?)?,
            })
        })
        .collect()
}

/// A `Duration`'s Debug text: `12.3ms`, `1.5s`, `800µs`, `42ns`.
pub fn parse_debug_duration(s: &str) -> Option<Duration> {
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    let secs = match unit {
        "s" => n,
        "ms" => n / 1e3,
        "µs" | "us" => n / 1e6,
        "ns" => n / 1e9,
        _ => return None,
    };
    Some(Duration::from_secs_f64(secs))
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The `p` quantile (0..=1) of sorted values; NaN when empty.
pub fn quantile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

#[cfg(test)]
mod tests {
    use super::*;

    const SYSBENCH: &str = "sysbench 1.0.20 (using system LuaJIT 2.1.0-beta3)

Running the test with following options:
Number of threads: 8

SQL statistics:
    queries performed:
        read:                            0
        write:                           123456
        other:                           61728
        total:                           185184
    transactions:                        30864  (514.35 per sec.)
    queries:                             185184 (3086.12 per sec.)
    ignored errors:                      2      (0.03 per sec.)
    reconnects:                          0      (0.00 per sec.)

General statistics:
    total time:                          60.0012s
    total number of events:              30864

Latency (ms):
         min:                                    1.02
         avg:                                   15.54
         max:                                  210.33
         95th percentile:                       33.12
         sum:                               479712.01
";

    #[test]
    fn sysbench_report() {
        let r = parse_sysbench(SYSBENCH).unwrap();
        assert_eq!(r.transactions, 30864);
        assert_eq!(r.tps, 514.35);
        assert_eq!(r.writes, 123456);
        assert_eq!(r.ignored_errors, 2);
        assert_eq!(r.seconds, 60.0012);
        assert_eq!(r.latency_avg_ms, 15.54);
        assert_eq!(r.latency_p95_ms, 33.12);
        assert!(parse_sysbench("FATAL: no such table").is_none());
    }

    #[test]
    fn merger_commit_lines() {
        let log = "2026-12-01T23:50:01.1Z DEBUG strata_cdc::merge::merger: cdc commit table=ods.ods_sbtest1 changes=4000 next=104000 elapsed=123.4ms\n\
                   \u{1b}[2m2026\u{1b}[0m \u{1b}[34mDEBUG\u{1b}[0m cdc commit \u{1b}[3mtable\u{1b}[0m\u{1b}[2m=\u{1b}[0mods.ods_b \u{1b}[3mchanges\u{1b}[0m\u{1b}[2m=\u{1b}[0m7 \u{1b}[3mnext\u{1b}[0m\u{1b}[2m=\u{1b}[0m9 \u{1b}[3melapsed\u{1b}[0m\u{1b}[2m=\u{1b}[0m1.5s\n\
                   INFO something else\n";
        let c = parse_commits(log);
        assert_eq!(c.len(), 2, "{c:?}");
        assert_eq!(c[0].table, "ods.ods_sbtest1");
        assert_eq!(c[0].changes, 4000);
        assert_eq!(c[0].elapsed, Duration::from_micros(123_400));
        assert_eq!(c[1].table, "ods.ods_b");
        assert_eq!(c[1].elapsed, Duration::from_millis(1500));
        assert_eq!(
            parse_debug_duration("800µs"),
            Some(Duration::from_micros(800))
        );
    }

    #[test]
    fn quantiles() {
        let v = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(quantile(&v, 0.5), 3.0);
        assert_eq!(quantile(&v, 0.99), 5.0);
        assert!(quantile(&[], 0.5).is_nan());
    }
}
