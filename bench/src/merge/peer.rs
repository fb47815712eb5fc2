//! The peers: `bench/python/merge_peer.py` run once per engine (pyiceberg, DuckDB) in its own
//! process, on the same input files, bounded in time. It prints one JSON document whose `runs`
//! have the same shape as Strata's figures.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

pub struct Peer<'a> {
    pub python: &'a Path,
    pub script: &'a Path,
    pub manifest: &'a Path,
    pub work: PathBuf,
    pub read_runs: usize,
    pub timeout: Duration,
}

impl Peer<'_> {
    /// The engine's runs, or one run carrying the error.
    pub fn run(&self, engine: &str) -> Vec<Value> {
        match self.try_run(engine) {
            Ok(runs) => runs,
            Err(e) => {
                eprintln!("peer {engine}: {e:#}");
                vec![json!({"name": engine, "engine": engine, "error": format!("{e:#}")})]
            }
        }
    }

    fn try_run(&self, engine: &str) -> Result<Vec<Value>> {
        std::fs::create_dir_all(&self.work)?;
        let mut child = Command::new(self.python)
            .arg(self.script)
            .args(["--engine", engine])
            .arg("--manifest")
            .arg(self.manifest)
            .arg("--work")
            .arg(&self.work)
            .args(["--read-runs", &self.read_runs.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {}", self.python.display()))?;
        // Read stdout on a thread so a chatty child cannot block on a full pipe.
        let mut stdout = child.stdout.take().context("no stdout")?;
        let reader = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stdout.read_to_string(&mut s);
            s
        });
        let start = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break status;
            }
            if start.elapsed() > self.timeout {
                let _ = child.kill();
                let _ = child.wait();
                bail!("timed out after {} s", self.timeout.as_secs());
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        let out = reader.join().unwrap_or_default();
        if !status.success() {
            bail!("{} exited with {status}", self.script.display());
        }
        let doc: Value = out
            .lines()
            .rev()
            .find_map(|l| serde_json::from_str(l).ok())
            .context("no JSON line in the peer's output")?;
        let runs = doc["runs"]
            .as_array()
            .context("no runs in the peer's output")?;
        Ok(runs
            .iter()
            .map(|r| {
                let mut r = r.clone();
                r["version"] = doc["version"].clone();
                r
            })
            .collect())
    }
}
