//! Helpers of the database CDC tests (MariaDB and PostgreSQL alike): a `[[sources]]` entry,
//! `strata cdc verify`, and polling the ODS through `strata sql`.

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

/// `strata cdc verify app --wait …`: Ok(stdout) when equal, Err(stdout + stderr) otherwise.
pub fn verify(env: &Env, wait: &str) -> Result<String, String> {
    let out = Command::new(strata_bin())
        .args(["cdc", "verify", "app", "--wait", wait, "-c"])
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
