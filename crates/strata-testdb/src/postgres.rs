//! A real PostgreSQL 15: its own cluster in a temp dir (owned by the `postgres` OS user, since
//! initdb refuses root), a free loopback port, `wal_level = logical`; stopped by the
//! postmaster's PID when dropped.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = "/usr/lib/postgresql/15/bin";

pub struct Postgres {
    pub dir: tempfile::TempDir,
    pub port: u16,
    child: Child,
    /// Extra `-c name=value` settings, kept for restarts.
    settings: Vec<String>,
}

fn need(bin: &str) -> PathBuf {
    let p = Path::new(BIN).join(bin);
    assert!(
        p.exists(),
        "{} not found: PostgreSQL 15 is required for the CDC tests. Install it with \
         `apt-get update && apt-get install -y --no-install-recommends postgresql` \
         (tests/run.sh does this when it is missing)",
        p.display()
    );
    p
}

/// `runuser -u postgres -- <bin> …` (when already not root, the command itself).
fn as_postgres(bin: &Path) -> Command {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin);
        c
    } else {
        Command::new(bin)
    }
}

impl Postgres {
    /// Starts a fresh server with database `app` owned by role `cdc` (LOGIN REPLICATION,
    /// password `secret`, SCRAM-SHA-256 over TCP; other roles are trusted).
    pub fn start() -> Postgres {
        Postgres::start_with(&[])
    }

    /// The same with extra server settings after the defaults (`("shared_buffers", "256MB")`).
    pub fn start_with(settings: &[(&str, &str)]) -> Postgres {
        let settings: Vec<String> = settings.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let dir = tempfile::tempdir().expect("tempdir");
        let _ = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(dir.path())
            .status();
        let data = dir.path().join("data");
        let out = as_postgres(&need("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
            .output()
            .expect("initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // The CDC role signs in with SCRAM-SHA-256 (the server default since PostgreSQL 14)
        // over TCP, so the tests exercise password authentication; roles `cdc_md5` and
        // `cdc_plain`, when a test makes them, use MD5 and cleartext; everyone else is trusted.
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\n\
             host all cdc 127.0.0.1/32 scram-sha-256\n\
             host all cdc_md5 127.0.0.1/32 md5\n\
             host all cdc_plain 127.0.0.1/32 password\n\
             host all all 127.0.0.1/32 trust\n",
        )
        .expect("write pg_hba.conf");
        let port = crate::free_port();
        let child = spawn(dir.path(), port, &settings);
        let db = Postgres {
            dir,
            port,
            child,
            settings,
        };
        db.wait_ready();
        db.run(
            "postgres",
            "postgres",
            "CREATE ROLE cdc LOGIN REPLICATION PASSWORD 'secret'; CREATE DATABASE app OWNER cdc;",
        );
        db
    }

    fn wait_ready(&self) {
        let start = Instant::now();
        loop {
            let ok = Command::new(need("pg_isready"))
                .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-q"])
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ok {
                return;
            }
            if start.elapsed() > Duration::from_secs(30) {
                panic!("postgres did not start within 30 s:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the server (fast shutdown: clients are disconnected) and starts it again on the
    /// same port and data.
    pub fn restart(&mut self) {
        self.stop_server();
        self.child = spawn(self.dir.path(), self.port, &self.settings);
        self.wait_ready();
    }

    fn stop_server(&mut self) {
        // The postmaster's PID (first line of postmaster.pid): a fast shutdown.
        let pid_file = self.dir.path().join("data").join("postmaster.pid");
        if let Some(pid) = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|t| t.lines().next().map(str::to_string))
        {
            let _ = Command::new("kill").args(["-INT", &pid]).status();
            let start = Instant::now();
            while pid_file.exists() && start.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }

    pub fn url(&self) -> String {
        format!("postgres://cdc:secret@127.0.0.1:{}/app", self.port)
    }

    /// Runs a script in database `app` as `cdc` (the tables' owner); returns `|`-separated rows.
    pub fn sql(&self, script: &str) -> String {
        self.run("cdc", "app", script)
    }

    /// The same as the superuser.
    pub fn sql_admin(&self, script: &str) -> String {
        self.run("postgres", "app", script)
    }

    fn run(&self, user: &str, db: &str, script: &str) -> String {
        let mut child = Command::new(need("psql"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", user, "-d", db])
            .env("PGPASSWORD", "secret")
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn psql");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(script.as_bytes())
            .expect("write script");
        let out = child.wait_with_output().expect("psql");
        assert!(
            out.status.success(),
            "sql failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            script.chars().take(2000).collect::<String>()
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop_server();
    }
}

/// Starts the postmaster on `dir/data` (as the `postgres` user), logging to `dir/postgres.log`.
fn spawn(dir: &Path, port: u16, settings: &[String]) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("postgres.log"))
        .expect("log");
    as_postgres(&need("postgres"))
        .arg("-D")
        .arg(dir.join("data"))
        .args(["-c", "listen_addresses=127.0.0.1"])
        .args(["-c", &format!("port={port}")])
        .args(["-c", &format!("unix_socket_directories={}", dir.display())])
        .args(["-c", "wal_level=logical"])
        .args(["-c", "max_replication_slots=10"])
        .args(["-c", "max_wal_senders=10"])
        .args(["-c", "fsync=off"])
        .args(["-c", "shared_buffers=32MB"])
        .args(settings.iter().flat_map(|s| ["-c", s.as_str()]))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn postgres")
}
