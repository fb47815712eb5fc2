//! `point_in_time(…)` never leaks a later feature value: random feature rows and labels (fixed
//! seed and case count, so every run checks the same cases), run through a real lake, and for
//! every output row, checked against a model computed here:
//!
//! - every label row appears exactly once;
//! - the feature row joined has the label's key, and its availability (a TIMESTAMP's instant,
//!   a DATE's next midnight) is at or before the label time (and within the ttl, if any);
//! - no feature row of that key has an availability after the one joined and at or before the
//!   label time (the latest one was taken); NULL features only when no row qualifies.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration test: a failed step fails the test"
)]

use std::collections::BTreeMap;

use arrow::array::{Array, AsArray};
use arrow::datatypes::Int64Type;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestRunner};
use strata_sql::SqlSession;
use strata_table::config::LakeOptions;
use strata_table::Lake;

const DAY: i64 = 86_400_000_000;
/// 2026-05-10 00:00:00 UTC in microseconds.
const BASE: i64 = 1_778_371_200_000_000;

#[derive(Debug, Clone)]
struct Case {
    /// DATE feature rows (else TIMESTAMP).
    dates: bool,
    /// (key, time in µs, or a day number for DATE rows); the row's value is its index.
    features: Vec<(i64, i64)>,
    /// (key or NULL, label time in µs).
    labels: Vec<(Option<i64>, i64)>,
    ttl_micros: Option<i64>,
}

impl Case {
    /// When feature row `i` becomes available.
    fn available(&self, i: usize) -> i64 {
        let (_, t) = self.features[i];
        if self.dates {
            BASE + (t + 1) * DAY
        } else {
            t
        }
    }

    /// The availability of the row the label must get (None: NULL features), from the
    /// model: the latest availability at or before the label time, within the ttl.
    fn expected(&self, label: usize) -> Option<i64> {
        let (key, at) = self.labels[label];
        let key = key?;
        (0..self.features.len())
            .filter(|&i| self.features[i].0 == key)
            .map(|i| self.available(i))
            .filter(|&a| a <= at && self.ttl_micros.is_none_or(|ttl| a >= at - ttl))
            .max()
    }
}

/// Times crowd a few instants (and their ±1 µs) so that ties and exact boundaries are
/// common; dates crowd a few days.
fn case() -> impl Strategy<Value = Case> {
    let instants: Vec<i64> = (0..4).map(|h| BASE + h * 3_600_000_000).collect();
    let instant = {
        let instants = instants.clone();
        (0..instants.len(), -1i64..=1, prop::bool::weighted(0.7))
            .prop_map(move |(i, nudge, exact)| instants[i] + if exact { 0 } else { nudge })
    };
    let label_time =
        (0..instants.len() + 2, -1i64..=1, 0i64..3).prop_map(move |(i, nudge, day)| {
            BASE + (i as i64) * 3_600_000_000 + nudge + (day - 1) * DAY
        });
    (
        any::<bool>(),
        prop::collection::vec((0i64..4, instant, -3i64..=1), 0..24),
        prop::collection::vec((prop::option::weighted(0.9, 0i64..5), label_time), 1..16),
        prop::option::of(prop_oneof![
            Just(1i64),
            Just(3_600_000_000),
            Just(DAY),
            Just(2 * DAY)
        ]),
    )
        .prop_map(|(dates, rows, labels, ttl_micros)| Case {
            dates,
            features: rows
                .into_iter()
                .map(|(k, t, d)| (k, if dates { d } else { t }))
                .collect(),
            labels,
            ttl_micros,
        })
}

fn timestamp(micros: i64) -> String {
    let t = chrono::DateTime::from_timestamp_micros(micros).unwrap();
    format!(
        "TIMESTAMP '{}'",
        t.naive_utc().format("%Y-%m-%d %H:%M:%S%.6f")
    )
}

fn date(day: i64) -> String {
    let t = chrono::DateTime::from_timestamp_micros(BASE + day * DAY).unwrap();
    format!("DATE '{}'", t.naive_utc().format("%Y-%m-%d"))
}

/// Runs the case and returns, per label id, (feature value id, feature_ts) of each output row.
async fn run(session: &SqlSession, n: usize, case: &Case) -> Vec<(i64, Option<i64>, Option<i64>)> {
    let (features, labels) = (format!("p.f{n}"), format!("p.l{n}"));
    let time_type = if case.dates { "DATE" } else { "TIMESTAMP" };
    session
        .run(&format!(
            "CREATE TABLE {features} (k BIGINT, t {time_type}, v BIGINT); \
             CREATE TABLE {labels} (id BIGINT, k BIGINT, at TIMESTAMP)"
        ))
        .await
        .unwrap();
    if !case.features.is_empty() {
        let values: Vec<String> = case
            .features
            .iter()
            .enumerate()
            .map(|(i, (k, t))| {
                let t = if case.dates { date(*t) } else { timestamp(*t) };
                format!("({k}, {t}, {i})")
            })
            .collect();
        session
            .run(&format!(
                "INSERT INTO {features} VALUES {}",
                values.join(", ")
            ))
            .await
            .unwrap();
    }
    let values: Vec<String> = case
        .labels
        .iter()
        .enumerate()
        .map(|(i, (k, at))| {
            let k = k.map_or("NULL".to_string(), |k| k.to_string());
            format!("({i}, {k}, {})", timestamp(*at))
        })
        .collect();
    session
        .run(&format!(
            "INSERT INTO {labels} VALUES {}",
            values.join(", ")
        ))
        .await
        .unwrap();
    let ttl = case
        .ttl_micros
        .map_or(String::new(), |us| format!("{us} microseconds"));
    let batches = session
        .run(&format!(
            "SELECT id, v, CAST(__feature_ts AS BIGINT) FROM point_in_time('{labels}', 'at', \
             '{features}', 'k', 't', '{ttl}')"
        ))
        .await
        .unwrap();
    let mut out = Vec::new();
    for b in &batches {
        let (id, v, ts) = (
            b.column(0).as_primitive::<Int64Type>(),
            b.column(1).as_primitive::<Int64Type>(),
            b.column(2).as_primitive::<Int64Type>(),
        );
        for r in 0..b.num_rows() {
            let opt = |a: &arrow::array::Int64Array| (!a.is_null(r)).then(|| a.value(r));
            out.push((id.value(r), opt(v), opt(ts)));
        }
    }
    out
}

fn check(case: &Case, rows: &[(i64, Option<i64>, Option<i64>)]) -> Result<(), TestCaseError> {
    let mut seen: BTreeMap<i64, usize> = BTreeMap::new();
    for &(id, value, feature_ts) in rows {
        *seen.entry(id).or_default() += 1;
        let label = usize::try_from(id).unwrap();
        let (key, at) = case.labels[label];
        match (value, feature_ts) {
            (Some(v), Some(ts)) => {
                let row = usize::try_from(v).unwrap();
                let available = case.available(row);
                prop_assert_eq!(
                    Some(case.features[row].0),
                    key,
                    "label {} got another key's row",
                    id
                );
                prop_assert_eq!(available, ts, "feature_ts is not the row's availability");
                prop_assert!(
                    available <= at,
                    "label {} at {} sees a row available at {}",
                    id,
                    at,
                    available
                );
                if let Some(ttl) = case.ttl_micros {
                    prop_assert!(
                        available >= at - ttl,
                        "label {} sees a row older than the ttl",
                        id
                    );
                }
                let later = (0..case.features.len()).find(|&i| {
                    Some(case.features[i].0) == key
                        && case.available(i) > available
                        && case.available(i) <= at
                });
                prop_assert!(
                    later.is_none(),
                    "label {} skipped a later visible row {:?}",
                    id,
                    later
                );
            }
            (None, None) => {
                prop_assert_eq!(case.expected(label), None, "label {} got no features", id);
            }
            other => prop_assert!(
                false,
                "label {}: value and feature_ts disagree: {:?}",
                id,
                other
            ),
        }
        prop_assert_eq!(case.expected(label), feature_ts, "label {}", id);
    }
    prop_assert_eq!(seen.len(), case.labels.len(), "a label row is missing");
    prop_assert!(
        seen.values().all(|&n| n == 1),
        "a label row is repeated: {:?}",
        seen
    );
    Ok(())
}

#[test]
fn point_in_time_never_leaks_a_later_feature() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (lake, session) = rt.block_on(async {
        let lake = Lake::open(&LakeOptions::new(dir.path())).await.unwrap();
        let session = SqlSession::new(&lake).await.unwrap();
        session.run("CREATE NAMESPACE p").await.unwrap();
        (lake, session)
    });
    let mut runner = TestRunner::new(Config {
        cases: 24,
        failure_persistence: None,
        rng_seed: RngSeed::Fixed(0x5049_5421),
        ..Config::default()
    });
    let n = std::cell::Cell::new(0usize);
    runner
        .run(&case(), |case| {
            n.set(n.get() + 1);
            let rows = rt.block_on(run(&session, n.get(), &case));
            check(&case, &rows)
        })
        .unwrap();
    drop(lake);
}
