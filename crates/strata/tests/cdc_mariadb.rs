//! Database CDC against a real MariaDB (started per test on loopback): every type round-trips
//! exactly through snapshot and binlog into the ODS table; a snapshot with changes running
//! during it and a randomized workload end equal (`strata cdc verify`); SIGKILLs of the
//! strata process mid-stream neither lose nor duplicate a change; schema changes, TRUNCATE and
//! `strata cdc resync` (`common/cdc.rs`) keep the ODS equal; resuming by GTID follows a
//! failover from a primary to its replica, exactly once (ADR 0025).

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
use common::mariadb::MariaDb;
use common::*;

fn add_source(env: &Env, db: &MariaDb, tables: &[&str], extra: &str) {
    cdc::add_source(env, "mysql", &db.url(), tables, extra);
}

const TYPES_TABLE: &str = "CREATE TABLE types (
  id INT PRIMARY KEY,
  ti TINYINT, tiu TINYINT UNSIGNED, si SMALLINT, siu SMALLINT UNSIGNED,
  mi MEDIUMINT, miu MEDIUMINT UNSIGNED, i INT, iu INT UNSIGNED,
  bi BIGINT, biu BIGINT UNSIGNED,
  d DECIMAL(12,4), dw DECIMAL(38,10), f FLOAT, db DOUBLE,
  dt DATE, tm TIME(6), dtm DATETIME(6), ts TIMESTAMP(6) NULL DEFAULT NULL,
  c CHAR(10), vc VARCHAR(100), tx TEXT, bn BINARY(4), vb VARBINARY(16), bl BLOB,
  js JSON, en ENUM('small','medium','large'), st SET('a','b','c'), bt BIT(10), yr YEAR,
  bo BOOLEAN
) CHARACTER SET utf8mb4";

/// Rows covering the extremes of every type, and a row of NULLs; `base` offsets the ids.
fn type_rows(base: i32) -> String {
    format!(
        "INSERT INTO types VALUES
 ({a}, 127, 255, 32767, 65535, 8388607, 16777215, 2147483647, 4294967295,
  9223372036854775807, 18446744073709551615, 12345678.1234,
  1234567890123456789012345678.0123456789, 3.14159, 2.718281828459045,
  '2024-02-29', '838:59:59.999999', '2024-01-31 23:59:59.123456', '2024-06-01 12:00:00.654321',
  'abc', 'héllo wörld 😀🎉', REPEAT('x', 300), 0x00FF0010, 0xDEADBEEF, 0x0001FF,
  '{{\"a\": [1, 2, {{\"b\": null}}], \"e\": \"😀\"}}', 'medium', 'a,c', b'1010101010', 2024, TRUE),
 ({b}, -128, 0, -32768, 0, -8388608, 0, -2147483648, 0,
  -9223372036854775808, 0, -99999999.9999, -0.0000000001, -1.5e-10, -1.7976931348623157e308,
  '1000-01-01', '-838:59:59', '1000-01-01 00:00:00', '1970-01-01 00:00:01',
  '', '', '', 0x00000000, '', '', '[]', 'small', '', b'0', 1901, FALSE),
 ({c}, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);",
        a = base + 1,
        b = base + 2,
        c = base + 3
    )
}

#[test]
fn cdc_every_type_round_trips_exactly_through_snapshot_and_binlog() {
    let db = MariaDb::start();
    db.sql(&format!(
        "{TYPES_TABLE}; {}; CREATE TABLE notes (msg VARCHAR(20), n INT); \
         INSERT INTO notes VALUES ('one', 1), ('two', 2);",
        type_rows(0)
    ));
    let env = Env::new();
    add_source(&env, &db, &["types", "notes"], "keep_changelog = true");
    let server = env.serve("1s");
    wait_rows(
        &env,
        "SELECT count(*) FROM ods.ods_types",
        3,
        Duration::from_secs(60),
    );

    // The same values again, now through the binlog; then updates and deletes.
    db.sql(&format!(
        "{} UPDATE types SET vc = 'updated ✓', biu = 1, d = -0.5000, ts = '2030-01-01 00:00:00' WHERE id = 2; \
         UPDATE types SET ti = 1 WHERE id = 102; DELETE FROM types WHERE id IN (3, 103); \
         INSERT INTO notes VALUES ('three 😀', 3);",
        type_rows(100)
    ));
    if let Err(report) = verify(&env, "60s") {
        panic!("verify failed:\n{report}\n{}", serve_log(&env));
    }

    // Spot checks through SQL: exact text, unsigned 64-bit, decimal scale, time zones.
    let rows = env.sql(
        "SELECT vc, CAST(biu AS VARCHAR) AS biu, CAST(d AS VARCHAR) AS d, tm, \
         CAST(ts AS VARCHAR) AS ts, _op FROM ods.ods_types WHERE id = 101",
    );
    let r = &rows[0];
    assert_eq!(r["vc"], "héllo wörld 😀🎉", "{r}");
    assert_eq!(r["biu"], "18446744073709551615", "{r}");
    assert_eq!(r["d"], "12345678.1234", "{r}");
    assert_eq!(r["tm"], "838:59:59.999999", "{r}");
    assert!(
        r["ts"]
            .as_str()
            .unwrap_or("")
            .starts_with("2024-06-01T12:00:00.654321"),
        "{r}"
    );
    assert_eq!(r["_op"], "c", "{r}");
    assert_eq!(
        env.sql_count("SELECT count(*) FROM ods.ods_types WHERE _op = 'r'"),
        1,
        "snapshot rows: 1 stays, 2 was updated, 3 deleted"
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
}

/// A randomized workload: inserts, updates (incl. NULLs) and deletes in transactions.
fn workload(db: &MariaDb, seed: u64, rounds: usize, stop: &AtomicBool, next_id: &mut i64) {
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
                        "INSERT INTO users (id, name, score, seen, flags) VALUES ({}, 'user {} 😀', {}.{:02}, NOW(6), {});",
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
                        "UPDATE users SET name = {name}, score = score + 1, seen = NOW(6) WHERE id = {id};"
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

const USERS_TABLE: &str = "CREATE TABLE users (id BIGINT PRIMARY KEY, name VARCHAR(64), \
     score DECIMAL(10,2), seen DATETIME(6), flags TINYINT UNSIGNED) CHARACTER SET utf8mb4; \
     INSERT INTO users SELECT seq, CONCAT('user ', seq), seq / 100, '2024-01-01 00:00:00', seq % 256 \
     FROM seq_1_to_20000;";

#[test]
fn cdc_snapshot_with_concurrent_random_workload_verifies_equal() {
    let db = Arc::new(MariaDb::start());
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
    assert!(
        serve_log(&env).contains("snapshot done"),
        "the snapshot phase ran"
    );
    server.stop();
}

#[test]
fn cdc_sigkill_mid_stream_restarts_exactly_once() {
    let db = Arc::new(MariaDb::start());
    db.sql(USERS_TABLE);
    let env = Env::new();
    add_source(&env, &db, &["users"], "snapshot_chunk_rows = 500");
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
    // No key twice, and every bus change applied once: the ODS position equals the topic end
    // after a graceful stop.
    assert_eq!(
        env.sql_count("SELECT count(*) - count(DISTINCT id) FROM ods.ods_users"),
        0
    );
    server.stop();
    let status = Command::new(strata_bin())
        .args(["cdc", "status", "-c"])
        .arg(&env.config)
        .output()
        .expect("strata cdc status");
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(text.contains("streaming"), "{text}");
    assert!(text.contains("users → ods.ods_users"), "{text}");
    assert!(text.contains(" changes/s, measured "), "{text}");
}

#[test]
fn cdc_schema_changes_truncate_and_resync_follow_the_source() {
    let db = MariaDb::start();
    db.sql(cdc::SCHEMA_TABLES);
    let env = Env::new();
    add_source(&env, &db, &["users", "posts"], "");
    cdc::schema_changes_scenario(
        &env,
        &|q| {
            db.sql(q);
        },
        &cdc::Ddl {
            widen_flags: "ALTER TABLE users MODIFY flags BIGINT;",
            likes_to_text: "ALTER TABLE posts MODIFY likes VARCHAR(20);",
        },
    );
}

#[test]
fn cdc_purged_binlog_is_reported_then_resnapshotted_when_configured() {
    let db = MariaDb::start();
    db.sql(
        "CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(40)); \
         INSERT INTO items SELECT seq, CONCAT('item ', seq) FROM seq_1_to_100;",
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
    server.stop();
    // While Strata is down, changes land in a binlog file that is then purged.
    db.sql(
        "INSERT INTO items SELECT seq, CONCAT('while down ', seq) FROM seq_101_to_110; \
         DELETE FROM items WHERE id = 7; UPDATE items SET name = 'changed' WHERE id <= 3;",
    );
    db.root_sql("FLUSH BINARY LOGS; SELECT SLEEP(1.2); PURGE BINARY LOGS BEFORE NOW();");
    let server = env.serve("1s");
    let state = env.data().join("cdc").join("app.json");
    let start = std::time::Instant::now();
    loop {
        let text = std::fs::read_to_string(&state).unwrap_or_default();
        if text.contains("is no longer on the server") {
            // MariaDB resumes by GTID (resume = "auto"): the purged GTIDs are the lost position.
            assert!(text.contains("resuming by GTID after 0-1-"), "{text}");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the purged position was never reported: {text}\n{}",
            serve_log(&env)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    server.stop();
    let status = cdc::cdc_command(&env, &["status"]);
    assert!(status.contains("on_position_lost"), "{status}");
    assert!(
        verify(&env, "1s").is_err(),
        "the ODS misses the purged changes"
    );

    cdc::set_source_option(&env, "on_position_lost = \"resnapshot\"");
    let server = env.serve("1s");
    if let Err(report) = verify(&env, "60s") {
        panic!(
            "verify failed after the re-snapshot:\n{report}\n{}",
            serve_log(&env)
        );
    }
    // Streaming goes on after it.
    db.sql("INSERT INTO items VALUES (500, 'after');");
    if let Err(report) = verify(&env, "60s") {
        panic!(
            "verify failed after streaming on:\n{report}\n{}",
            serve_log(&env)
        );
    }
    server.stop();
}

/// `SELECT @@gtid_binlog_pos` of `db`.
fn gtid_binlog_pos(db: &MariaDb) -> String {
    db.root_sql("SELECT @@GLOBAL.gtid_binlog_pos;")
        .trim()
        .to_string()
}

/// Waits (bounded) until `replica` has applied everything `primary` has logged.
fn wait_caught_up(replica: &MariaDb, primary: &MariaDb) {
    let pos = gtid_binlog_pos(primary);
    let out = replica.root_sql(&format!("SELECT MASTER_GTID_WAIT('{pos}', 60);"));
    assert_eq!(
        out.trim(),
        "0",
        "the replica did not reach {pos}: {}",
        replica.root_sql("SHOW SLAVE STATUS\\G")
    );
}

fn state_text(env: &Env) -> String {
    std::fs::read_to_string(env.data().join("cdc").join("app.json")).unwrap_or_default()
}

/// Waits (bounded) until the source's state file contains `text`.
fn wait_state(env: &Env, text: &str) -> String {
    let start = std::time::Instant::now();
    loop {
        let state = state_text(env);
        if state.contains(text) {
            return state;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the state never showed {text:?}: {state}\n{}",
            serve_log(env)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Issue #4: resuming by GTID survives a failover. Strata streams from a primary whose
/// replica (other server id, other binlog file names, `--log-slave-updates`) follows it by
/// GTID. Strata stops; the primary takes more writes, the replica catches up, the primary
/// dies and the replica is promoted and written to. Pointed at the replica, a source resuming
/// by file:position cannot start (the saved file does not exist there); resuming by GTID
/// carries on, and `strata cdc verify` is equal with every change on the changelog once.
///
/// The saved state is also set back to before a batch of changes already on the bus (as a
/// crash between the bus append and the state save leaves it): the replica sends those
/// transactions again, and they are recognised by GTID — their binlog positions on the
/// replica say nothing about the primary's.
#[test]
fn cdc_gtid_resume_survives_a_failover_to_a_replica() {
    let primary = MariaDb::start();
    let replica = MariaDb::start_with(&[
        "--server-id=2",
        "--log-bin=replica-bin",
        "--log-slave-updates",
    ]);
    // The replica starts empty (its own setup statements go, with its binlog) and follows
    // the primary from its first GTID, by GTID.
    replica.root_sql(&format!(
        "DROP DATABASE app; DROP USER cdc@'%'; RESET MASTER; SET GLOBAL gtid_slave_pos = ''; \
         CHANGE MASTER TO MASTER_HOST = '127.0.0.1', MASTER_PORT = {}, MASTER_USER = 'cdc', \
         MASTER_PASSWORD = 'secret', MASTER_USE_GTID = slave_pos; START SLAVE;",
        primary.port
    ));
    primary.sql(
        "CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(40), n INT); \
         INSERT INTO items SELECT seq, CONCAT('item ', seq), 0 FROM seq_1_to_100;",
    );
    wait_caught_up(&replica, &primary);

    let env = Env::new();
    add_source(&env, &primary, &["items"], "keep_changelog = true");
    let server = env.serve("1s");
    wait_rows(
        &env,
        "SELECT count(*) FROM ods.ods_items",
        100,
        Duration::from_secs(60),
    );
    // The saved position carries the primary's GTID position.
    let early = wait_state(&env, "\"phase\": \"stream\"");
    assert!(early.contains("\"mariadb\": \"0-1-"), "{early}");

    // 80 changes in 3 transactions, on the bus before the (restored) state below.
    primary.sql(
        "INSERT INTO items SELECT seq, CONCAT('item ', seq), 0 FROM seq_101_to_150; \
         UPDATE items SET n = n + 1 WHERE id <= 20; DELETE FROM items WHERE id BETWEEN 91 AND 100;",
    );
    if let Err(report) = verify(&env, "60s") {
        panic!(
            "verify failed on the primary:\n{report}\n{}",
            serve_log(&env)
        );
    }
    server.stop();
    let stopped = state_text(&env);
    assert!(stopped.contains("\"file\": \"binlog.0000"), "{stopped}");

    // While Strata is down: 65 more changes on the primary, which the replica applies.
    primary.sql(
        "INSERT INTO items SELECT seq, CONCAT('item ', seq), 0 FROM seq_151_to_200; \
         UPDATE items SET n = n + 10 WHERE id BETWEEN 101 AND 110; \
         DELETE FROM items WHERE id BETWEEN 21 AND 25;",
    );
    wait_caught_up(&replica, &primary);
    let primary_url = primary.url();
    // Failover: the primary is gone, the replica is promoted and takes 21 changes of its own.
    drop(primary);
    replica.root_sql("STOP SLAVE; RESET SLAVE ALL;");
    replica.sql(
        "INSERT INTO items SELECT seq, CONCAT('on the replica ', seq), 2 FROM seq_201_to_220; \
         UPDATE items SET name = 'renamed on the replica' WHERE id = 1;",
    );
    let files = replica.root_sql("SHOW BINARY LOGS;");
    assert!(
        files.contains("replica-bin.") && !files.contains("binlog.0"),
        "{files}"
    );

    // As after a crash right after the 80 changes were appended: the saved state is from
    // before them.
    std::fs::write(env.data().join("cdc").join("app.json"), &early).expect("restore state");
    let config = std::fs::read_to_string(&env.config).expect("config");
    assert!(config.contains(&primary_url), "{config}");
    std::fs::write(&env.config, config.replace(&primary_url, &replica.url())).expect("config");

    // By file:position the source cannot resume on the replica: the file is the primary's.
    cdc::set_source_option(&env, "resume = \"position\"");
    let server = env.serve("1s");
    let lost = wait_state(&env, "is no longer on the server");
    assert!(lost.contains("binlog.0000"), "{lost}");
    server.stop();

    // By GTID (the default, auto, on MariaDB) it resumes where it stopped.
    let config = std::fs::read_to_string(&env.config)
        .expect("config")
        .replace("resume = \"position\"", "resume = \"auto\"");
    std::fs::write(&env.config, config).expect("config");
    let server = env.serve("1s");
    if let Err(report) = verify(&env, "60s") {
        panic!(
            "verify failed after the failover:\n{report}\n{}",
            serve_log(&env)
        );
    }
    assert!(
        serve_log(&env).contains("streaming the binlog from a gtid position"),
        "{}",
        serve_log(&env)
    );
    // Streaming goes on on the new primary, and the saved position is now the replica's.
    replica.sql("INSERT INTO items VALUES (300, 'after the failover', 3);");
    if let Err(report) = verify(&env, "60s") {
        panic!("verify failed streaming on:\n{report}\n{}", serve_log(&env));
    }
    // Every change once: 100 snapshot reads + 80 + 65 + 21 + 1, and no key twice.
    wait_rows(
        &env,
        "SELECT count(*) FROM ods.ods_items_changelog",
        267,
        Duration::from_secs(30),
    );
    assert_eq!(
        env.sql_count("SELECT count(*) - count(DISTINCT id) FROM ods.ods_items"),
        0
    );
    server.stop();
    let state = state_text(&env);
    assert!(state.contains("\"file\": \"replica-bin.0000"), "{state}");
    assert!(state.contains("\"mariadb\": \"0-2-"), "{state}");
}

/// Removes every `gtid` from the source's state file, as a state saved before GTIDs were
/// tracked looks.
fn strip_gtids(env: &Env) {
    fn strip(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(map) => {
                map.remove("gtid");
                map.values_mut().for_each(strip);
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let path = env.data().join("cdc").join("app.json");
    let mut state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("state")).expect("json");
    strip(&mut state);
    std::fs::write(&path, serde_json::to_vec_pretty(&state).expect("json")).expect("state");
}

/// A state saved before GTIDs were tracked (file:position only) gets the GTID position of
/// its binlog coordinates from the server and streams on by GTID; with `resume = "gtid"`, a
/// GTID position the server's binlog never had (it has not applied what we streamed) is a
/// lost position, not a silent skip ahead.
#[test]
fn cdc_gtid_positions_of_old_states_are_looked_up_and_unknown_ones_are_lost() {
    let db = MariaDb::start();
    db.sql(
        "CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(40)); \
         INSERT INTO items SELECT seq, CONCAT('item ', seq) FROM seq_1_to_50;",
    );
    let env = Env::new();
    add_source(&env, &db, &["items"], "keep_changelog = true");
    let server = env.serve("1s");
    wait_rows(
        &env,
        "SELECT count(*) FROM ods.ods_items",
        50,
        Duration::from_secs(60),
    );
    server.stop();
    strip_gtids(&env);
    assert!(!state_text(&env).contains("gtid"), "{}", state_text(&env));
    db.sql(
        "INSERT INTO items VALUES (51, 'while down'); UPDATE items SET name = 'x' WHERE id = 1;",
    );

    let server = env.serve("1s");
    if let Err(report) = verify(&env, "60s") {
        panic!("verify failed:\n{report}\n{}", serve_log(&env));
    }
    let log = serve_log(&env);
    assert!(
        log.contains("gtid position of the saved binlog position")
            && log.contains("streaming the binlog from a gtid position"),
        "{log}"
    );
    // 50 snapshot reads + 2 changes, once each.
    wait_rows(
        &env,
        "SELECT count(*) FROM ods.ods_items_changelog",
        52,
        Duration::from_secs(30),
    );
    server.stop();
    let state = state_text(&env);
    assert!(state.contains("\"mariadb\": \"0-1-"), "{state}");

    // A position ahead of everything the server logged, and one from a history the server
    // does not have (seq 3 of domain 0 was written by server 1, not 7).
    cdc::set_source_option(&env, "resume = \"gtid\"");
    let path = env.data().join("cdc").join("app.json");
    for gtid in ["0-1-999999", "0-7-3"] {
        std::fs::write(&path, with_gtid_position(&state, gtid)).expect("state");
        let server = env.serve("1s");
        let lost = wait_state(&env, "is no longer on the server");
        assert!(
            lost.contains(&format!("resuming by GTID after {gtid}"))
                && lost.contains("which is not in the master's binlog"),
            "{lost}"
        );
        server.stop();
    }
}

/// `state` with every `"mariadb": "…"` GTID position replaced by `gtid`.
fn with_gtid_position(state: &str, gtid: &str) -> String {
    let key = "\"mariadb\": \"";
    let mut out = String::new();
    let mut rest = state;
    while let Some(at) = rest.find(key) {
        let value = at + key.len();
        out.push_str(&rest[..value]);
        out.push_str(gtid);
        let end = rest[value..].find('"').expect("closing quote");
        rest = &rest[value + end..];
    }
    out.push_str(rest);
    out
}
