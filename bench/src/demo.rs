//! The `strata` commands the model and feed benchmarks drive: a demo lake of the simulator's
//! world, and one training of a model with its outcome.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde_json::Value;

/// The simulated world `strata demo --skip-models` builds.
#[derive(Debug, Clone)]
pub struct DemoWorld {
    pub users: u64,
    pub days: u32,
    pub seed: u64,
    pub events_per_user: u32,
}

/// `strata demo --skip-models` into `work` (emptied first), with `env` set: its wall time in
/// seconds.
pub fn run_demo(
    strata: &Path,
    world: &DemoWorld,
    work: &Path,
    env: &[(&str, &str)],
) -> Result<f64> {
    let _ = std::fs::remove_dir_all(work);
    eprintln!(
        "strata demo --users {} --days {} --seed {} --events-per-user {} --skip-models in {}",
        world.users,
        world.days,
        world.seed,
        world.events_per_user,
        work.display()
    );
    let started = Instant::now();
    let out = Command::new(strata)
        .args(["demo", "--skip-models", "--users", &world.users.to_string()])
        .args(["--days", &world.days.to_string()])
        .args(["--seed", &world.seed.to_string()])
        .args(["--events-per-user", &world.events_per_user.to_string()])
        .arg("--data-dir")
        .arg(work)
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("starting {}", strata.display()))?;
    if !out.status.success() {
        bail!(
            "strata demo failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout)
        );
    }
    Ok(started.elapsed().as_secs_f64())
}

/// `strata ARGS… -c CONFIG` (the args end with `-c`): its stdout.
pub fn strata_command(strata: &Path, args: &[&str], config: &Path) -> Result<String> {
    let out = Command::new(strata)
        .args(args)
        .arg(config)
        .env("RUST_LOG", "warn")
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("starting {}", strata.display()))?;
    if !out.status.success() {
        bail!("strata {} failed ({})", args.join(" "), out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `strata models train NAME --json`: its outcome and wall time in seconds.
pub fn train(strata: &Path, config: &Path, name: &str) -> Result<(Value, f64)> {
    eprintln!("strata models train {name}");
    let started = Instant::now();
    let out = strata_command(strata, &["models", "train", name, "--json", "-c"], config)?;
    let secs = started.elapsed().as_secs_f64();
    let outcome: Value = serde_json::from_str(&out).with_context(|| format!("parsing {out}"))?;
    Ok((outcome, secs))
}
