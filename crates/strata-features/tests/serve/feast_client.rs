//! Feast's own Python client (`feast` from PyPI) reads Strata's feature server: a Feast repo
//! whose online store is `type: remote` at our URL (`tests/python/feast_remote_client.py`).
//! Needs a Python with `feast` installed: `STRATA_FEAST_PYTHON` (skipped when unset, unless
//! `STRATA_TEST_REQUIRE_FEAST=1`).

use std::process::Command;

use serde_json::json;
use strata_core::tokens::Scope;

use crate::support::*;

fn feast_python() -> Option<String> {
    match std::env::var("STRATA_FEAST_PYTHON") {
        Ok(python) => Some(python),
        Err(_) => {
            assert!(
                std::env::var("STRATA_TEST_REQUIRE_FEAST").as_deref() != Ok("1"),
                "STRATA_TEST_REQUIRE_FEAST=1 but STRATA_FEAST_PYTHON is not set"
            );
            eprintln!("skipping: STRATA_FEAST_PYTHON (a python with feast installed) is not set");
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feasts_python_client_reads_strata() {
    let Some(python) = feast_python() else {
        return;
    };
    let env = Env::embedded().await;
    crate::feast::driver_hourly_stats(&env).await;
    let token = env.token("feast-client", &[Scope::Serve], &[], None);
    let base = start(
        env.server(vec![crate::feast::driver_view()])
            .with_services(vec![crate::feast::driver_activity()]),
    )
    .await;
    let script = format!(
        "{}/../../tests/python/feast_remote_client.py",
        std::env::var("CARGO_MANIFEST_DIR").expect("cargo and nextest set CARGO_MANIFEST_DIR")
    );
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(script)
            .arg(&base)
            .arg(&token)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let reads: Vec<serde_json::Value> = stdout
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(reads.len(), 2, "{stdout}\n{stderr}");
    let parsed = |text: &str| serde_json::from_str::<serde_json::Value>(text).unwrap();
    assert_eq!(
        reads[0]["answer"],
        parsed(
            r#"{"driver_id": [1001, 1002, 1003],
                "conv_rate": [0.7037263512611389, 0.038169607520103455, 0.9665873050689697],
                "acc_rate": [0.8724706768989563, 0.48534533381462097, 0.7793770432472229],
                "avg_daily_trips": [308, 332, 779]}"#
        ),
        "{stderr}"
    );
    let by_service = &reads[1]["answer"];
    assert_eq!(by_service["driver_id"], json!([1001, 1002, 1003, 9999]));
    assert_eq!(
        by_service["driver_hourly_stats__avg_daily_trips"],
        json!([308, 332, 779, null])
    );
}
