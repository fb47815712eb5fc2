//! Helpers of the database CDC tests (MariaDB and PostgreSQL alike): a `[[sources]]` entry,
//! `strata cdc verify`, polling the ODS through `strata sql`, and the schema-change scenario
//! both sources run with their own DDL.

use std::process::Command;
use std::time::Duration;

use super::{strata_bin, Env};

/// Appends a `[[sources]]` entry named `app` of `kind` (`mysql` / `postgres`) on `url`.
pub fn add_source(env: &Env, kind: &str, url: &str, tables: &[&str], extra: &str) {
    let list = tables
        .iter()
        .map(|t| format!("\"{t}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let mut text = std::fs::read_to_string(&env.config).expect("config");
    text.push_str(&format!(
        "\n[[sources]]\nname = \"app\"\nkind = \"{kind}\"\nurl = \"{url}\"\ntables = [{list}]\ncommit_interval = \"300ms\"\n{extra}\n",
    ));
    std::fs::write(&env.config, text).expect("write config");
}

/// Adds `line` (e.g. `on_position_lost = "resnapshot"`) to the source [`add_source`] wrote
/// last in the config.
pub fn set_source_option(env: &Env, line: &str) {
    let mut text = std::fs::read_to_string(&env.config).expect("config");
    text.push_str(&format!("{line}\n"));
    std::fs::write(&env.config, text).expect("write config");
}

/// `strata cdc verify app --wait …`: Ok(stdout) when equal, Err(stdout + stderr) otherwise.
pub fn verify(env: &Env, wait: &str) -> Result<String, String> {
    verify_table(env, None, wait)
}

/// `strata cdc verify app [TABLE] --wait …`.
pub fn verify_table(env: &Env, table: Option<&str>, wait: &str) -> Result<String, String> {
    let out = Command::new(strata_bin())
        .args(["cdc", "verify", "app"])
        .args(table)
        .args(["--wait", wait, "-c"])
        .arg(&env.config)
        .output()
        .expect("strata cdc verify");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(text)
    } else {
        Err(text)
    }
}

/// `SELECT count(*) …` that may fail while the table does not exist yet.
pub fn try_count(env: &Env, query: &str) -> Option<i64> {
    let out = Command::new(strata_bin())
        .args(["sql", "--format", "json", "-c"])
        .arg(&env.config)
        .arg(query)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let row: serde_json::Value = serde_json::from_str(text.lines().next()?).ok()?;
    row.as_object()?.values().next()?.as_i64()
}

/// Waits (bounded) until `query` gives `expected`; shows the serve log when it never does.
pub fn wait_rows(env: &Env, query: &str, expected: i64, limit: Duration) {
    let start = std::time::Instant::now();
    let mut last = None;
    while start.elapsed() < limit {
        last = try_count(env, query);
        if last == Some(expected) {
            return;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    panic!(
        "{query} gave {last:?}, expected {expected}\n{}",
        serve_log(env)
    );
}

/// What `strata serve` (started by [`super::serve`]) wrote to its log so far.
pub fn serve_log(env: &Env) -> String {
    std::fs::read_to_string(env.dir.path().join("serve.log")).unwrap_or_default()
}

/// `strata cdc <args> -c …` → stdout + stderr (panics when it fails).
pub fn cdc_command(env: &Env, args: &[&str]) -> String {
    let out = Command::new(strata_bin())
        .arg("cdc")
        .args(args)
        .arg("-c")
        .arg(&env.config)
        .output()
        .expect("strata cdc");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "strata cdc {args:?} failed: {text}");
    text
}

/// The DDL of one database for [`schema_changes_scenario`].
pub struct Ddl {
    /// `users.flags` INT → BIGINT.
    pub widen_flags: &'static str,
    /// `posts.likes` INT → VARCHAR(20): a change Iceberg cannot follow.
    pub likes_to_text: &'static str,
}

/// Tables `users` and `posts` for [`schema_changes_scenario`] (portable SQL).
pub const SCHEMA_TABLES: &str = "CREATE TABLE users (id BIGINT PRIMARY KEY, name VARCHAR(64), \
    flags INT, seen DATE); CREATE TABLE posts (id INT PRIMARY KEY, title VARCHAR(50), likes INT);";

/// With `users` and `posts` configured as source `app`: schema changes mid-stream (ADD
/// COLUMN, a widened type, DROP COLUMN) are followed without stopping; a change Iceberg cannot
/// follow stops only that table, and `strata cdc resync` brings it back; TRUNCATE empties the
/// ODS table. `strata cdc verify` passes after each step.
pub fn schema_changes_scenario(env: &Env, sql: &dyn Fn(&str), ddl: &Ddl) {
    let users: Vec<String> = (1..=50)
        .map(|i| format!("({i}, 'user {i}', {}, '2024-01-{:02}')", i % 7, 1 + i % 28))
        .collect();
    let posts: Vec<String> = (1..=20)
        .map(|i| format!("({i}, 'post {i} 😀', {})", i * 3))
        .collect();
    sql(&format!(
        "INSERT INTO users VALUES {}; INSERT INTO posts VALUES {};",
        users.join(", "),
        posts.join(", ")
    ));
    let server = env.serve("1s");
    wait_rows(
        env,
        "SELECT count(*) FROM ods.ods_users",
        50,
        Duration::from_secs(60),
    );
    wait_rows(
        env,
        "SELECT count(*) FROM ods.ods_posts",
        20,
        Duration::from_secs(60),
    );
    let check = |table: Option<&str>, what: &str| {
        if let Err(report) = verify_table(env, table, "60s") {
            panic!("verify failed {what}:\n{report}\n{}", serve_log(env));
        }
    };

    // Changes before, between and after three schema changes.
    sql("UPDATE users SET name = 'before' WHERE id <= 5; \
         INSERT INTO users (id, name, flags, seen) VALUES (1001, 'x', 7, '2024-02-02');");
    sql("ALTER TABLE users ADD COLUMN bio VARCHAR(100);");
    sql("UPDATE users SET bio = 'bio ✓' WHERE id <= 10; \
         INSERT INTO users (id, name, flags, seen, bio) VALUES (1002, 'y', 8, '2024-02-03', 'new');");
    sql(ddl.widen_flags);
    sql("UPDATE users SET flags = 9000000000 WHERE id = 1;");
    sql("ALTER TABLE users DROP COLUMN seen;");
    sql(
        "INSERT INTO users (id, name, flags, bio) VALUES (1003, 'z', 3, 'after the drop'); \
         DELETE FROM users WHERE id = 2;",
    );
    check(None, "after ADD / widen / DROP COLUMN");
    let rows =
        env.sql("SELECT bio, CAST(flags AS VARCHAR) AS flags FROM ods.ods_users WHERE id = 1");
    assert_eq!(rows[0]["bio"], "bio ✓", "{rows:?}");
    assert_eq!(rows[0]["flags"], "9000000000", "{rows:?}");
    assert_eq!(
        try_count(env, "SELECT count(seen) FROM ods.ods_users"),
        None,
        "the dropped column is gone from the ODS table"
    );

    // A change Iceberg cannot follow stops `posts` alone.
    sql(ddl.likes_to_text);
    sql("UPDATE posts SET likes = 'many' WHERE id = 1; \
         INSERT INTO users (id, name, flags, bio) VALUES (1004, 'w', 4, 'the others go on');");
    check(Some("users"), "for the table that kept going");
    let start = std::time::Instant::now();
    loop {
        let status = cdc_command(env, &["status"]);
        if status.contains("merger STOPPED") && status.contains("likes") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "posts never showed as stopped:\n{status}\n{}",
            serve_log(env)
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(
        verify_table(env, Some("posts"), "1s").is_err(),
        "a stopped table differs from its source"
    );
    // `strata cdc resync` re-snapshots it, under its new schema, while serve runs.
    let text = cdc_command(env, &["resync", "posts"]);
    assert!(text.contains("requested"), "{text}");
    sql("UPDATE posts SET likes = 'plenty' WHERE id = 2;");
    check(Some("posts"), "after the resync");
    let status = cdc_command(env, &["status"]);
    assert!(!status.contains("STOPPED"), "{status}");
    let rows = env.sql("SELECT likes FROM ods.ods_posts WHERE id = 1");
    assert_eq!(rows[0]["likes"], "many", "{rows:?}");

    // TRUNCATE empties the ODS table; what follows lands on the empty table.
    sql("TRUNCATE TABLE users;");
    sql("INSERT INTO users (id, name, flags, bio) VALUES (1, 'again', 1, 'after the truncate');");
    check(None, "after TRUNCATE");
    assert_eq!(env.sql_count("SELECT count(*) FROM ods.ods_users"), 1);
    server.stop();
}
