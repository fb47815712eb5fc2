//! A real MariaDB: its own data dir in a temp dir, a free loopback port, ROW binlog with FULL
//! images; stopped (by PID) when dropped.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct MariaDb {
    pub dir: tempfile::TempDir,
    pub port: u16,
    child: Child,
}

fn find(bin: &str) -> Option<PathBuf> {
    for dir in ["/usr/sbin", "/usr/bin", "/usr/local/bin", "/usr/local/sbin"] {
        let p = Path::new(dir).join(bin);
        if p.exists() {
            return Some(p);
        }
    }
    None
}

fn need(bin: &str) -> PathBuf {
    find(bin).unwrap_or_else(|| {
        panic!(
            "{bin} not found: MariaDB is required for the CDC tests. Install it with \
             `apt-get update && apt-get install -y --no-install-recommends mariadb-server` \
             (tests/run.sh does this when it is missing)"
        )
    })
}

impl MariaDb {
    /// Starts a fresh server with database `app` and user `cdc`/`secret`.
    pub fn start() -> MariaDb {
        MariaDb::start_with(&[])
    }

    /// The same with extra `mariadbd` options after the defaults (a later option wins, e.g.
    /// `--innodb-buffer-pool-size=512M`).
    pub fn start_with(extra: &[&str]) -> MariaDb {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        // Each instance gets its own tmpdir: parallel bootstraps sharing /tmp can collide on
        // temporary table names ("Could not remove temporary table … Unknown table").
        let tmp = dir.path().join("tmp");
        std::fs::create_dir_all(&tmp).expect("tmpdir");
        let out = Command::new(need("mariadb-install-db"))
            .args([
                "--no-defaults",
                "--user=root",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ])
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--tmpdir={}", tmp.display()))
            .output()
            .expect("mariadb-install-db");
        assert!(
            out.status.success(),
            "mariadb-install-db failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = crate::free_port();
        let log = std::fs::File::create(dir.path().join("mariadb.log")).expect("log");
        let child = Command::new(need("mariadbd"))
            .arg("--no-defaults")
            .arg("--user=root")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--tmpdir={}", tmp.display()))
            .arg(format!("--socket={}", dir.path().join("s.sock").display()))
            .arg(format!("--pid-file={}", dir.path().join("pid").display()))
            .arg(format!("--port={port}"))
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--log-bin={}", data.join("binlog").display()))
            .args([
                "--binlog-format=ROW",
                "--binlog-row-image=FULL",
                "--server-id=1",
                "--skip-name-resolve",
                "--innodb-buffer-pool-size=64M",
                "--innodb-flush-log-at-trx-commit=2",
                "--sync-binlog=0",
            ])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn mariadbd");
        let db = MariaDb { dir, port, child };
        let start = Instant::now();
        loop {
            let ok = Command::new(need("mariadb-admin"))
                .arg(format!("--socket={}", db.socket().display()))
                .args(["-uroot", "ping"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ok {
                break;
            }
            if start.elapsed() > Duration::from_secs(30) {
                let log =
                    std::fs::read_to_string(db.dir.path().join("mariadb.log")).unwrap_or_default();
                panic!("mariadbd did not start within 30 s:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        db.root_sql(
            "CREATE DATABASE app CHARACTER SET utf8mb4; \
             CREATE USER cdc@'%' IDENTIFIED BY 'secret'; \
             GRANT ALL ON *.* TO cdc@'%';",
        );
        db
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("s.sock")
    }

    pub fn url(&self) -> String {
        format!("mysql://cdc:secret@127.0.0.1:{}/app", self.port)
    }

    /// Runs a script as root outside any database.
    pub fn root_sql(&self, script: &str) -> String {
        self.run(None, script)
    }

    /// Runs a script (statements separated by `;`) in database `app`; returns tab-separated rows.
    pub fn sql(&self, script: &str) -> String {
        self.run(Some("app"), script)
    }

    fn run(&self, db: Option<&str>, script: &str) -> String {
        let mut cmd = Command::new(need("mariadb"));
        cmd.arg(format!("--socket={}", self.socket().display()))
            .args([
                "-uroot",
                "--batch",
                "--skip-column-names",
                "--default-character-set=utf8mb4",
            ]);
        if let Some(db) = db {
            cmd.arg(db);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn mariadb client");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(script.as_bytes())
            .expect("write script");
        let out = child.wait_with_output().expect("mariadb client");
        assert!(
            out.status.success(),
            "sql failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            script.chars().take(2000).collect::<String>()
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
