//! The panic guard of `strata serve`: real panics, injected through `STRATA_TEST_PANIC` (read
//! only by debug builds, which is what `cargo test` runs; see `src/cmd/supervise.rs`), do not
//! kill the server. A task that panics is restarted and counted; a handler that panics answers
//! 500; a task that keeps panicking stops the server in order with the reason, and nothing
//! acknowledged is lost.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration test: a failed step fails the test"
)]

mod common;

use std::time::{Duration, Instant};

use common::*;

fn metric(addr: std::net::SocketAddr, line_start: &str) -> Option<f64> {
    let body = get(addr, "/metrics").expect("GET /metrics").body;
    body.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn serve_log(env: &Env) -> String {
    std::fs::read_to_string(env.dir.path().join("serve.log")).unwrap_or_default()
}

#[test]
fn panicking_tasks_restart_and_handlers_answer_500() {
    let env = Env::new();
    let server = env.serve_with_env(
        "100ms",
        &[("STRATA_TEST_PANIC", "lake_sink,compaction,http")],
    );
    let auth = basic_auth(WRITE_KEY);
    let res = post(
        server.addr,
        "/v1/batch",
        std::slice::from_ref(&auth),
        &batch("a", 20),
    )
    .unwrap();
    assert_eq!(res.status, 200, "{}", res.body);

    // A handler panic: 500 with a short JSON body, and the server goes on.
    let res = post(
        server.addr,
        "/v1/batch",
        &[auth.clone(), ("x-strata-test-panic", "1".to_string())],
        &batch("never", 5),
    )
    .unwrap();
    assert_eq!(res.status, 500, "{}", res.body);
    assert_eq!(res.json()["code"], "internal", "{}", res.body);
    assert!(!res.body.contains("injected"), "{}", res.body);
    let res = post(server.addr, "/v1/batch", &[auth], &batch("b", 20)).unwrap();
    assert_eq!(res.status, 200, "{}", res.body);

    // The sink panicked when it started and was restarted: the events reach the lake.
    env.wait_count(
        "SELECT count(*) FROM ods.ods_event",
        40,
        Duration::from_secs(60),
    );
    for task in ["lake_sink", "compaction", "http"] {
        let line = format!("strata_serve_task_panics_total{{task=\"{task}\"}}");
        assert_eq!(metric(server.addr, &line), Some(1.0), "{line}");
    }
    let log = serve_log(&env);
    assert!(
        log.contains("task panicked; restarting it")
            && log.contains("injected panic in task lake_sink"),
        "{log}"
    );
    assert!(log.contains("request handler panicked"), "{log}");
    server.stop();
    assert_eq!(env.sql_count("SELECT count(*) FROM ods.ods_event"), 40);
}

#[test]
fn a_task_that_keeps_panicking_stops_the_server_with_the_reason() {
    let env = Env::new();
    let mut server = env.serve_with_env("100ms", &[("STRATA_TEST_PANIC", "lake_sink:always")]);
    // Acknowledged while the sink is down: on the bus, so not lost.
    let res = post(
        server.addr,
        "/v1/batch",
        &[basic_auth(WRITE_KEY)],
        &batch("kept", 10),
    )
    .unwrap();
    assert_eq!(res.status, 200, "{}", res.body);

    let started = Instant::now();
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "serve did not stop"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(!status.success(), "{status:?}");
    let log = serve_log(&env);
    assert!(
        log.contains("task lake_sink panicked 5 times in a row"),
        "{log}"
    );
    assert!(log.contains("stopped"), "no orderly stop:\n{log}");
    drop(server);

    // Started again without the fault, the sink commits what was acknowledged before.
    let server = env.serve("100ms");
    env.wait_count(
        "SELECT count(*) FROM ods.ods_event WHERE message_id LIKE 'kept-%'",
        10,
        Duration::from_secs(60),
    );
    server.stop();
}
