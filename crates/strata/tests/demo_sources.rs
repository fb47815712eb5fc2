//! `strata demo --mysql URL` / `--postgres URL` against a real MariaDB and a real PostgreSQL
//! started by the test: the business tables are created and written in that database, the
//! real connector (snapshot + binlog / logical replication) carries them into ODS, and every
//! ODS and warehouse table ends the same as the built-in path's for the same seed.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration test: a failed step fails the test"
)]

mod common;

use std::path::Path;
use std::process::Command;

use common::mariadb::MariaDb;
use common::postgres::Postgres;
use common::strata_bin;

const BUSINESS: [&str; 6] = [
    "users", "profiles", "posts", "follows", "orders", "messages",
];
const WAREHOUSE: [&str; 11] = [
    "dwd.dwd_user_action",
    "dwd.dwd_post",
    "dwd.dwd_user_relation",
    "dws.dws_user_daily",
    "dws.dws_post_daily",
    "dws.dws_pair_interaction",
    "ads.ads_user_features",
    "ads.ads_post_features",
    "ads.ads_sample_ctr",
    "ads.ads_sample_follow",
    "ads.ads_recall_u2u_cf",
];

fn demo(data: &Path, extra: &[&str]) -> String {
    let out = Command::new(strata_bin())
        .args([
            "demo",
            "--users",
            "60",
            "--days",
            "1",
            "--events-per-user",
            "10",
        ])
        .args(["--seed", "5"])
        .arg("--data-dir")
        .arg(data)
        .args(extra)
        .output()
        .expect("run strata demo");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "strata demo {extra:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn sql(data: &Path, q: &str) -> String {
    let out = Command::new(strata_bin())
        .args(["sql", "--format", "csv", "-c"])
        .arg(data.join("strata.toml"))
        .arg(q)
        .output()
        .expect("strata sql");
    assert!(
        out.status.success(),
        "{q}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn cli(data: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(strata_bin())
        .args(args)
        .arg("-c")
        .arg(data.join("strata.toml"))
        .output()
        .expect("strata");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The built-in demo and the demo through `flag URL`, same seed: the business rows are equal
/// (every data column, in key order), every warehouse table has the same row count, and the
/// database and the ODS verify equal afterwards with the config the demo left behind.
fn same_as_builtin(flag: &str, url: &str, rerun: bool) {
    let dir = tempfile::tempdir().unwrap();
    let builtin = dir.path().join("builtin");
    let real = dir.path().join("real");
    demo(&builtin, &[]);
    let stdout = demo(&real, &[flag, url]);
    assert!(
        stdout.contains("connector") && stdout.contains("equal"),
        "{stdout}"
    );
    let config = std::fs::read_to_string(real.join("strata.toml")).unwrap();
    assert!(
        config.contains("[[sources]]") && config.contains(url),
        "{config}"
    );

    for t in BUSINESS {
        let q = format!(
            "SELECT * EXCEPT (_op, _source_pos, _commit_ts, _ingest_ts) FROM ods.ods_{t} ORDER BY 1, 2"
        );
        let a = sql(&builtin, &q);
        let b = sql(&real, &q);
        // (a world this small may have no orders or messages yet)
        if ["users", "profiles", "posts", "follows"].contains(&t) {
            assert!(a.lines().count() > 1, "ods.ods_{t} is empty:\n{a}");
        }
        assert!(
            a == b,
            "ods.ods_{t} differs:\nbuilt-in:\n{a}\nthrough {flag}:\n{b}"
        );
    }
    // The connector's own metadata: snapshot reads and streamed changes both arrived.
    let ops = sql(
        &real,
        "SELECT count(*) FILTER (WHERE _op = 'r') > 0 AS snap, count(*) FILTER (WHERE _op = 'c') > 0 AS streamed FROM ods.ods_follows",
    );
    assert_eq!(ops, "snap,streamed\ntrue,true\n");
    for t in WAREHOUSE.iter().chain(&["ods.ods_event"]) {
        let q = format!("SELECT count(*) AS n FROM {t}");
        assert_eq!(sql(&builtin, &q), sql(&real, &q), "{t}");
    }
    assert_eq!(
        sql(&real, "SELECT count(*) AS failed FROM audit.dq_results WHERE status <> 'pass' AND severity = 'error'"),
        "failed\n0\n"
    );

    let (ok, text) = cli(&real, &["cdc", "verify", "app"]);
    assert!(ok, "{text}");
    assert!(text.contains("verify ok: 6 table(s) equal"), "{text}");
    let (ok, text) = cli(&real, &["cdc", "status"]);
    assert!(ok && text.contains("streaming"), "{text}");

    if rerun {
        // A second run on the same dir and database writes nothing again and ends equal.
        let again = demo(&real, &[flag, url]);
        assert!(again.contains("earlier demo run"), "{again}");
        let q = "SELECT count(*) AS n FROM ods.ods_users";
        assert_eq!(sql(&builtin, q), sql(&real, q));
    }
}

#[test]
fn demo_with_mysql_lands_the_same_rows_through_the_binlog() {
    let db = MariaDb::start();
    same_as_builtin("--mysql", &db.url(), true);
    // The rows are in MariaDB itself.
    let n: u64 = db.sql("SELECT count(*) FROM users").trim().parse().unwrap();
    assert_eq!(n, 60);
}

#[test]
fn demo_with_postgres_lands_the_same_rows_through_logical_replication() {
    let db = Postgres::start();
    same_as_builtin("--postgres", &db.url(), false);
    let n: u64 = db.sql("SELECT count(*) FROM users").trim().parse().unwrap();
    assert_eq!(n, 60);
}

#[test]
fn demo_refuses_a_database_that_has_its_tables() {
    let db = MariaDb::start();
    db.sql("CREATE TABLE users (id INT PRIMARY KEY); INSERT INTO users VALUES (1);");
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(strata_bin())
        .args(["demo", "--users", "20", "--days", "1", "--data-dir"])
        .arg(dir.path().join("d"))
        .args(["--mysql", &db.url()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("has table(s) users already"), "{err}");
    // Nothing was touched.
    assert_eq!(db.sql("SELECT count(*) FROM users").trim(), "1");
}
