//! The lake on an S3-compatible server given by IP address, as in issue #30: the endpoint comes
//! from `AWS_ENDPOINT_URL=http://127.0.0.1:<port>` and `lake.s3_path_style` is not in the
//! config at all. `serve` used to panic inside object_store (a `bucket.127.0.0.1` host); path
//! style is now chosen for IP and localhost endpoints, as the AWS SDKs do. An explicit
//! `s3_path_style = false` with such an endpoint is a configuration error, reported by
//! `strata check` and refused by `serve` at start — with a message, never a panic.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration test: a failed step fails the test"
)]

mod common;

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::s3server::S3Server;
use common::*;

const BUCKET: &str = "strata-ip";

/// strata.toml's `[lake]` for `s3://BUCKET/lake` with the test credentials, the endpoint and
/// `s3_path_style` removed (so both are unset), and `extra` lines appended to `[lake]`.
fn lake_on_s3_without_endpoint(env: &Env, extra: &str) {
    env.use_s3("http://unused.invalid", BUCKET, &[]);
    let text = std::fs::read_to_string(&env.config).unwrap();
    let mut out = String::new();
    for line in text.lines() {
        if line.starts_with("s3_endpoint =") || line.starts_with("s3_path_style =") {
            continue;
        }
        out.push_str(line);
        out.push('\n');
        if line == "[lake]" {
            out.push_str(extra);
        }
    }
    std::fs::write(&env.config, out).unwrap();
}

fn strata(env: &Env, endpoint: &str, args: &[&str]) -> Output {
    Command::new(strata_bin())
        .args(args)
        .arg("-c")
        .arg(&env.config)
        .env("AWS_ENDPOINT_URL", endpoint)
        .output()
        .expect("run strata")
}

#[test]
fn ip_endpoint_with_path_style_unset_works() {
    let Some(s3) = S3Server::start() else {
        return;
    };
    s3.create_bucket(BUCKET);
    let endpoint = s3.endpoint();
    assert!(endpoint.starts_with("http://127.0.0.1:"), "{endpoint}");
    let env = Env::new();
    lake_on_s3_without_endpoint(&env, "");
    let config = std::fs::read_to_string(&env.config).unwrap();
    assert!(
        !config.contains("s3_path_style =") && !config.contains("s3_endpoint ="),
        "{config}"
    );

    let out = strata(&env, &endpoint, &["check"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let server = env.serve_with_env("200ms", &[("AWS_ENDPOINT_URL", &endpoint)]);
    let res = post(
        server.addr,
        "/v1/batch",
        &[basic_auth(WRITE_KEY)],
        &batch("ip", 25),
    )
    .unwrap();
    assert_eq!(res.status, 200, "{}", res.body);
    // The files land in the bucket, addressed path-style on 127.0.0.1.
    let started = Instant::now();
    while !s3
        .keys(BUCKET, "lake/ods/ods_event/data/")
        .iter()
        .any(|k| k.ends_with(".parquet"))
    {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no data file on S3"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    server.stop();
    let log = std::fs::read_to_string(env.dir.path().join("serve.log")).unwrap_or_default();
    assert!(!log.contains("panicked"), "{log}");

    let out = strata(
        &env,
        &endpoint,
        &[
            "sql",
            "--format",
            "json",
            "SELECT count(*) AS n FROM ods.ods_event",
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("\"n\":25"), "{stdout}");
}

#[test]
fn virtual_hosted_style_with_an_ip_endpoint_is_refused_with_a_message() {
    let env = Env::new();
    lake_on_s3_without_endpoint(&env, "s3_path_style = false\n");
    let endpoint = "http://127.0.0.1:9";

    let out = strata(&env, endpoint, &["check"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("s3_path_style") && err.contains("127.0.0.1"),
        "{err}"
    );

    let out = Command::new(strata_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "-c"])
        .arg(&env.config)
        .env("AWS_ENDPOINT_URL", endpoint)
        .output()
        .expect("strata serve");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("s3_path_style"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}
