//! Database CDC against a real PostgreSQL 15 (started per test on loopback, wal_level =
//! logical): every type round-trips exactly through the snapshot and the pgoutput stream into
//! the ODS table; a snapshot with a randomized workload running during it ends equal (`strata
//! cdc verify`); SIGKILLs of the strata process mid-stream neither lose nor duplicate a change;
//! schema changes, TRUNCATE and `strata cdc resync` (`common/cdc.rs`) keep the ODS equal.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration test: a failed step fails the test"
)]

mod common;

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::cdc::{self, serve_log, verify, wait_rows};
use common::postgres::Postgres;
use common::*;

fn add_source(env: &Env, db: &Postgres, tables: &[&str], extra: &str) {
    cdc::add_source(env, "postgres", &db.url(), tables, extra);
}

const TYPES_TABLE: &str = "CREATE TABLE types (
  id int PRIMARY KEY,
  si smallint, i int, bi bigint,
  n numeric(12,4), nw numeric(38,10), nu numeric, nx numeric(50,5),
  r real, d double precision, b boolean,
  t text, vc varchar(100), c char(10),
  by bytea, u uuid, j json, jb jsonb,
  dt date, tm time(6), ts timestamp(6), tz timestamptz(6),
  ai int[], at text[]
);";

/// Rows covering the extremes of every type, and a row of NULLs; `base` offsets the ids.
fn type_rows(base: i32) -> String {
    format!(
        r#"INSERT INTO types VALUES
 ({a}, 32767, 2147483647, 9223372036854775807, 12345678.1234,
  1234567890123456789012345678.0123456789, 3.14159265358979323846264338327950288,
  123456789012345678901234567890123456789012345.12345, 3.14159, 2.718281828459045, true,
  'héllo wörld 😀🎉', 'varchar ✓', 'abc', '\x00ff0010', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
  '{{"a": [1, 2, {{"b": null}}], "e": "😀"}}', '{{"a": [1, 2, {{"b": null}}], "e": "😀"}}',
  '2024-02-29', '23:59:59.999999', '2024-01-31 23:59:59.123456',
  '2024-06-01 17:30:00.654321+05:30', '{{1,NULL,3}}', '{{"a b","c\"d",NULL,"😀"}}'),
 ({b}, -32768, -2147483648, -9223372036854775808, -99999999.9999, -0.0000000001, -0.5,
  -0.00001, -1.5e-10, -1.7976931348623157e308, false,
  '', '', '', '\x', '00000000-0000-0000-0000-000000000000', '[]', '{{}}',
  '0044-03-15 BC', '00:00:00', '1970-01-01 00:00:00', '1970-01-01 00:00:01+00', '{{}}', '{{}}'),
 ({c}, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);"#,
        a = base + 1,
        b = base + 2,
        c = base + 3
    )
}

/// ~6 kB of poorly compressible text: stored out of line (TOAST).
const BIG_TEXT: &str = "(SELECT string_agg(md5(g::text), '') FROM generate_series(1, 200) g)";

#[test]
fn pg_cdc_every_type_round_trips_exactly_through_snapshot_and_stream() {
    let db = Postgres::start();
    db.sql(&format!(
        "{TYPES_TABLE} {} \
         CREATE TABLE docs (id bigint PRIMARY KEY, title text, body text); \
         ALTER TABLE docs REPLICA IDENTITY FULL; \
         INSERT INTO docs VALUES (1, 'first', {BIG_TEXT}); \
         CREATE TABLE notes (msg text, n int); ALTER TABLE notes REPLICA IDENTITY FULL; \
         INSERT INTO notes VALUES ('one', 1), ('two', 2);",
        type_rows(0)
    ));
    let env = Env::new();
    add_source(
        &env,
        &db,
        &["types", "public.docs", "notes"],
        "keep_changelog = true",
    );
    let check = Command::new(strata_bin())
        .args(["check", "-c"])
        .arg(&env.config)
        .output()
        .expect("strata check");
    assert!(
        check.status.success(),
        "strata check refused a postgres source: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    let server = env.serve("1s");
    wait_rows(
        &env,
        "SELECT count(*) FROM ods.ods_types",
        3,
        Duration::from_secs(60),
    );

    // The same values again, now through the slot; then updates (incl. one that leaves a
    // TOASTed value unchanged) and deletes, in several transactions.
    db.sql(&format!(
        "{} UPDATE types SET vc = 'updated ✓', bi = 1, n = -0.5, tz = '2030-01-01 00:00:00+00' WHERE id = 2; \
         BEGIN; UPDATE types SET si = 1, ai = '{{{{7,8}},{{9,10}}}}' WHERE id = 102; DELETE FROM types WHERE id IN (3, 103); COMMIT; \
         UPDATE docs SET title = 'renamed' WHERE id = 1; \
         INSERT INTO docs VALUES (2, 'second', {BIG_TEXT}); \
         INSERT INTO notes VALUES ('three 😀', 3);",
        type_rows(100)
    ));
    if let Err(report) = verify(&env, "60s") {
        panic!("verify failed:\n{report}\n{}", serve_log(&env));
    }

    // Spot checks through SQL: exact text, decimal scale, time zones, arrays as JSON.
    let rows = env.sql(
        "SELECT t, CAST(bi AS VARCHAR) AS bi, CAST(n AS VARCHAR) AS n, nx, tm, \
         CAST(tz AS VARCHAR) AS tz, ai, at, u, b, _op FROM ods.ods_types WHERE id = 101",
    );
    let r = &rows[0];
    assert_eq!(r["t"], "héllo wörld 😀🎉", "{r}");
    assert_eq!(r["bi"], "9223372036854775807", "{r}");
    assert_eq!(r["n"], "12345678.1234", "{r}");
    assert_eq!(
        r["nx"], "123456789012345678901234567890123456789012345.12345",
        "{r}"
    );
    assert_eq!(r["tm"], "23:59:59.999999", "{r}");
    assert!(
        r["tz"]
            .as_str()
            .unwrap_or("")
            .starts_with("2024-06-01T12:00:00.654321"),
        "timestamptz in UTC: {r}"
    );
    assert_eq!(r["ai"], "[1,null,3]", "{r}");
    assert_eq!(r["at"], r#"["a b","c\"d",null,"😀"]"#, "{r}");
    assert_eq!(r["u"], "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "{r}");
    assert_eq!(r["b"], 1, "{r}");
    assert_eq!(r["_op"], "c", "{r}");
    let rows = env.sql("SELECT ai, _op FROM ods.ods_types WHERE id = 102");
    assert_eq!(rows[0]["ai"], "[[7,8],[9,10]]", "{}", rows[0]);
    assert_eq!(rows[0]["_op"], "u", "{}", rows[0]);
    assert_eq!(
        env.sql_count("SELECT count(*) FROM ods.ods_types WHERE _op = 'r'"),
        1,
        "snapshot rows: 1 stays, 2 was updated, 3 deleted"
    );
    // The unchanged TOASTed body came from the old image (REPLICA IDENTITY FULL).
    assert_eq!(
        env.sql_count(
            "SELECT count(*) FROM ods.ods_public_docs WHERE title = 'renamed' AND length(body) = 6400"
        ),
        1
    );
    // The changelog holds every change: 3 snapshot reads + 3 inserts + 2 updates + 2 deletes.
    wait_rows(
        &env,
        "SELECT count(*) FROM ods.ods_types_changelog",
        10,
        Duration::from_secs(30),
    );
    // Keyless tables are append-only with the op.
    assert_eq!(env.sql_count("SELECT count(*) FROM ods.ods_notes"), 3);
    server.stop();
    // The slot was confirmed past everything: nothing the bus holds is left unconfirmed.
    let pending = db.sql_admin(
        "SELECT count(*) FROM pg_logical_slot_peek_binary_changes('strata_app', NULL, NULL, \
         'proto_version', '1', 'publication_names', 'strata_app');",
    );
    assert_eq!(pending.trim(), "0", "slot left unconfirmed changes");
}

const USERS_TABLE: &str = "CREATE TABLE users (id bigint PRIMARY KEY, name varchar(64), \
     score numeric(10,2), seen timestamptz, flags smallint, tags text[]); \
     INSERT INTO users SELECT g, 'user ' || g, g / 100.0, '2024-01-01 00:00:00+00', g % 256, \
     ARRAY['t' || (g % 7)] FROM generate_series(1, 20000) g;";

/// A randomized workload: inserts, updates (incl. NULLs) and deletes in transactions.
fn workload(db: &Postgres, seed: u64, rounds: usize, stop: &AtomicBool, next_id: &mut i64) {
    let mut x = seed;
    let mut rnd = move |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n.max(1)
    };
    for _ in 0..rounds {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let mut script = String::from("BEGIN;");
        for _ in 0..(1 + rnd(20)) {
            match rnd(10) {
                0..=3 => {
                    *next_id += 1;
                    script.push_str(&format!(
                        "INSERT INTO users (id, name, score, seen, flags, tags) VALUES ({}, 'user {} 😀', {}.{:02}, now(), {}, ARRAY['a', NULL]);",
                        next_id,
                        rnd(1000),
                        rnd(100_000),
                        rnd(100),
                        rnd(256)
                    ));
                }
                4..=7 => {
                    let id = 1 + rnd(*next_id as u64);
                    let name = if rnd(5) == 0 {
                        "NULL".to_string()
                    } else {
                        format!("'renamed {}'", rnd(1000))
                    };
                    script.push_str(&format!(
                        "UPDATE users SET name = {name}, score = score + 1, seen = now() WHERE id = {id};"
                    ));
                }
                _ => {
                    let id = 1 + rnd(*next_id as u64);
                    script.push_str(&format!("DELETE FROM users WHERE id = {id};"));
                }
            }
        }
        script.push_str(if rnd(10) == 0 { "ROLLBACK;" } else { "COMMIT;" });
        db.sql(&script);
    }
}

#[test]
fn pg_cdc_snapshot_with_concurrent_random_workload_verifies_equal() {
    let db = Arc::new(Postgres::start());
    db.sql(USERS_TABLE);
    let env = Env::new();
    add_source(&env, &db, &["users"], "snapshot_chunk_rows = 100");
    let server = env.serve("1s");
    // Changes start while the snapshot is still running (200 chunks): wait until the source's
    // state file shows the snapshot under way.
    let state = env.data().join("cdc").join("app.json");
    let start = std::time::Instant::now();
    loop {
        let text = std::fs::read_to_string(&state).unwrap_or_default();
        if text.contains("\"phase\": \"snapshot\"") && text.contains("\"rows\"") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60) && !text.contains("\"phase\": \"stream\""),
            "never saw the snapshot under way: {text}\n{}",
            serve_log(&env)
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let worker = {
        let db = db.clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut next = 20_000;
            workload(&db, 7, 300, &stop, &mut next);
        })
    };
    worker.join().expect("workload");
    if let Err(report) = verify(&env, "90s") {
        panic!("verify failed:\n{report}\n{}", serve_log(&env));
    }
    let log = serve_log(&env);
    assert!(log.contains("snapshot done"), "the snapshot phase ran");
    server.stop();
}

#[test]
fn pg_cdc_sigkill_mid_stream_restarts_exactly_once() {
    let db = Arc::new(Postgres::start());
    db.sql(USERS_TABLE);
    let env = Env::new();
    add_source(
        &env,
        &db,
        &["users"],
        "snapshot_chunk_rows = 500\nkeep_changelog = true",
    );
    let stop = Arc::new(AtomicBool::new(false));
    let worker = {
        let db = db.clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut next = 20_000;
            workload(&db, 11, 100_000, &stop, &mut next);
        })
    };
    let mut server = env.serve("1s");
    // kill -9 during the snapshot, then several times while streaming.
    for wait_ms in [400, 1500, 2500, 3500] {
        std::thread::sleep(Duration::from_millis(wait_ms));
        server.kill();
        server = env.serve("1s");
    }
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::SeqCst);
    worker.join().expect("workload");
    if let Err(report) = verify(&env, "120s") {
        panic!(
            "verify failed after SIGKILLs:\n{report}\n{}",
            serve_log(&env)
        );
    }
    assert_eq!(
        env.sql_count("SELECT count(*) - count(DISTINCT id) FROM ods.ods_users"),
        0
    );
    // A graceful stop applies everything on the bus. Every streamed change reached the bus
    // once: the changelog (one row per bus change) holds no source position twice. (Snapshot
    // chunks re-read after a kill are repeats of `r` upserts by design, so they are left out.)
    server.stop();
    assert_eq!(
        env.sql_count(
            "SELECT count(*) - count(DISTINCT _source_pos) FROM ods.ods_users_changelog WHERE _op <> 'r'"
        ),
        0,
        "a streamed change is on the bus twice"
    );
    assert!(
        env.sql_count("SELECT count(*) FROM ods.ods_users_changelog WHERE _op <> 'r'") > 100,
        "the workload streamed changes"
    );
    let status = Command::new(strata_bin())
        .args(["cdc", "status", "-c"])
        .arg(&env.config)
        .output()
        .expect("strata cdc status");
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(text.contains("streaming"), "{text}");
    assert!(text.contains("slot strata_app at "), "{text}");
    assert!(text.contains("users → ods.ods_users"), "{text}");
}

#[test]
fn pg_cdc_survives_a_server_restart_and_recovers_a_dropped_slot() {
    let mut db = Postgres::start();
    db.sql(
        "CREATE TABLE items (id int PRIMARY KEY, name text); \
         INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 100) g;",
    );
    let env = Env::new();
    add_source(&env, &db, &["items"], "");
    let server = env.serve("1s");
    wait_rows(
        &env,
        "SELECT count(*) FROM ods.ods_items",
        100,
        Duration::from_secs(60),
    );
    // The source loses its connection, retries with backoff, and resumes from the slot.
    db.restart();
    db.sql(
        "INSERT INTO items SELECT g, 'late ' || g FROM generate_series(101, 110) g; \
            UPDATE items SET name = 'changed' WHERE id <= 5; DELETE FROM items WHERE id = 6;",
    );
    if let Err(report) = verify(&env, "60s") {
        panic!(
            "verify failed after a server restart:\n{report}\n{}",
            serve_log(&env)
        );
    }
    assert!(
        serve_log(&env).contains("cdc source failed, retrying"),
        "the source saw the restart: {}",
        serve_log(&env)
    );
    server.stop();

    // The slot dropped behind Strata's back: the position is lost, said clearly.
    db.sql_admin("SELECT pg_drop_replication_slot('strata_app');");
    let server = env.serve("1s");
    let state = env.data().join("cdc").join("app.json");
    let start = std::time::Instant::now();
    loop {
        let text = std::fs::read_to_string(&state).unwrap_or_default();
        if text.contains("replication slot strata_app does not exist") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the lost slot was never reported: {text}\n{}",
            serve_log(&env)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    server.stop();
    let status = Command::new(strata_bin())
        .args(["cdc", "status", "-c"])
        .arg(&env.config)
        .output()
        .expect("strata cdc status");
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(text.contains("to re-snapshot"), "{text}");

    // With on_position_lost = "resnapshot" the source starts a new slot and re-snapshots:
    // the changes made while the slot was gone, deletes included, arrive.
    db.sql(
        "INSERT INTO items SELECT g, 'while lost ' || g FROM generate_series(111, 120) g; \
         DELETE FROM items WHERE id = 7;",
    );
    cdc::set_source_option(&env, "on_position_lost = \"resnapshot\"");
    let server = env.serve("1s");
    if let Err(report) = verify(&env, "60s") {
        panic!(
            "verify failed after the re-snapshot:\n{report}\n{}",
            serve_log(&env)
        );
    }
    assert_eq!(env.sql_count("SELECT count(*) FROM ods.ods_items"), 118);
    server.stop();
}

#[test]
fn pg_cdc_schema_changes_truncate_and_resync_follow_the_source() {
    let db = Postgres::start();
    db.sql(cdc::SCHEMA_TABLES);
    let env = Env::new();
    add_source(&env, &db, &["users", "posts"], "");
    cdc::schema_changes_scenario(
        &env,
        &|q| {
            db.sql(q);
        },
        &cdc::Ddl {
            widen_flags: "ALTER TABLE users ALTER COLUMN flags TYPE BIGINT;",
            likes_to_text: "ALTER TABLE posts ALTER COLUMN likes TYPE VARCHAR(20);",
        },
    );
}

/// The replication connection (the protocol is our own code, `postgres/replication.rs`) signs
/// in with SCRAM-SHA-256, MD5 and a cleartext password, and a refusal or a missing slot is a clear error.
#[test]
fn pg_replication_connection_authenticates_and_reports_refusals() {
    use strata_cdc::postgres::config::Connect;
    use strata_cdc::postgres::replication::Replication;

    let db = Postgres::start();
    db.sql_admin(
        "SET password_encryption = 'md5'; CREATE ROLE cdc_md5 LOGIN REPLICATION PASSWORD 'md5secret'; \
         CREATE ROLE cdc_plain LOGIN REPLICATION PASSWORD 'plainsecret';",
    );
    let connect = |url: &str| {
        let source: strata_cdc::config::SourceConfig = toml::from_str(&format!(
            "name = \"pg\"\nkind = \"postgres\"\nurl = \"{url}\"\ntables = [\"t\"]\n"
        ))
        .unwrap();
        source.validate().unwrap();
        Connect::new(&source).unwrap()
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        // SCRAM-SHA-256 (the `cdc` role); the session is good enough to be refused a slot.
        let mut r = Replication::connect(&connect(&db.url())).await.unwrap();
        let err = r
            .start_logical(
                "no_such_slot",
                0,
                &[("proto_version", "1"), ("publication_names", "\"p\"")],
            )
            .await
            .expect_err("a missing slot is an error");
        let text = err.to_string();
        assert!(
            text.contains("42704") && text.contains("no_such_slot"),
            "{text}"
        );
        assert!(!err.retryable(), "{text}");

        // A wrong password: the server's reason, the host, no retry, no password in the text.
        let bad = db.url().replace("cdc:secret", "cdc:wrong");
        let err = Replication::connect(&connect(&bad))
            .await
            .err()
            .expect("a wrong password is refused");
        let text = err.to_string();
        assert!(text.contains("28P01"), "{text}");
        assert!(text.contains("127.0.0.1:"), "{text}");
        assert!(!text.contains("wrong"), "{text}");
        assert!(!err.retryable(), "{text}");

        // MD5.
        let md5 = db.url().replace("cdc:secret", "cdc_md5:md5secret");
        Replication::connect(&connect(&md5))
            .await
            .expect("md5 sign-in");
        // Cleartext (pg_hba `password`).
        let plain = db.url().replace("cdc:secret", "cdc_plain:plainsecret");
        Replication::connect(&connect(&plain))
            .await
            .expect("cleartext sign-in");
    });
}
