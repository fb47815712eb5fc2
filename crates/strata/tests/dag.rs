//! `strata dag` / `strata dq` through the real binary: a broken project is refused before
//! anything runs, a good one runs, and the history commands show it.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration test: a failed step fails the test"
)]

mod common;

use std::process::Command;

use common::{strata_bin, Env};

fn strata(env: &Env, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(strata_bin())
        .args(args)
        .arg("-c")
        .arg(&env.config)
        .output()
        .expect("run strata");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn write(path: &std::path::Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

#[test]
fn dag_plan_run_and_history_from_the_cli() {
    let env = Env::new();
    env.sql("CREATE TABLE ods.clicks (user_id BIGINT, ts TIMESTAMP); INSERT INTO ods.clicks VALUES (1, TIMESTAMP '2026-11-20 08:00:00'), (2, TIMESTAMP '2026-11-20 09:00:00')");
    let project = env.dir.path().join("wh");
    let project_arg = project.to_str().unwrap();

    // Broken: a cycle and a SQL error are both reported, nothing runs.
    write(&project.join("dwd/a.sql"), "SELECT * FROM dws.b");
    write(&project.join("dws/b.sql"), "SELECT * FROM dwd.a");
    let (ok, _, err) = strata(&env, &["dag", "plan", "-p", project_arg]);
    assert!(!ok && err.contains("dependency cycle"), "{err}");
    write(&project.join("dws/b.sql"), "SELECT count(* FROM dwd.a");
    let (ok, _, err) = strata(
        &env,
        &["dag", "run", "-p", project_arg, "--date", "2026-11-20"],
    );
    assert!(
        !ok && err.contains("dws/b.sql") && err.contains("SQL error"),
        "{err}"
    );
    let (_, out, _) = strata(&env, &["dag", "runs"]);
    assert!(out.contains("no warehouse runs yet"), "{out}");

    // Fixed: plan, run, history, check report.
    write(
        &project.join("dwd/a.sql"),
        "/*\nmaterialized = \"incremental\"\npartition_by = \"dt\"\n[[checks]]\ntype = \"not_null\"\ncolumns = [\"user_id\"]\n*/\nSELECT user_id, CAST(ts AS DATE) AS dt FROM ods.clicks WHERE ts >= $run_start AND ts < $run_end",
    );
    write(
        &project.join("dws/b.sql"),
        "SELECT count(*) AS users FROM dwd.a",
    );
    let (ok, out, err) = strata(&env, &["dag", "plan", "-p", project_arg]);
    assert!(ok, "{err}");
    assert!(
        out.contains("1. dwd.a") && out.contains("2. dws.b"),
        "{out}"
    );
    let (ok, out, err) = strata(
        &env,
        &["dag", "run", "-p", project_arg, "--date", "2026-11-20"],
    );
    assert!(ok, "{out}{err}");
    assert!(out.contains("success"), "{out}");
    assert_eq!(env.sql_count("SELECT users FROM dws.b"), 2);
    let (ok, out, _) = strata(&env, &["dag", "status"]);
    assert!(ok && out.contains("| a ") && out.contains("| b "), "{out}");
    let (ok, out, _) = strata(&env, &["dq", "report", "--date", "2026-11-20"]);
    assert!(
        ok && out.contains("not_null(user_id)") && out.contains("pass"),
        "{out}"
    );
    let run_id = env.sql("SELECT run_id FROM audit.dag_runs")[0]["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (ok, out, _) = strata(&env, &["dag", "logs", &run_id]);
    assert!(ok && out.contains("success"), "{out}");
}
