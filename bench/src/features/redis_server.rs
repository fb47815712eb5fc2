//! A `redis-server` for the benchmark: a temp dir, a free loopback port, no persistence.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// A redis-server in a temp dir on a free loopback port, stopped on drop.
pub struct RedisServer {
    child: Child,
    pub port: u16,
}

impl RedisServer {
    pub fn start(bin: &str, dir: &Path) -> Result<RedisServer> {
        std::fs::create_dir_all(dir)?;
        let port = free_port()?;
        let child = Command::new(bin)
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .arg("--dir")
            .arg(dir)
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {bin}"))?;
        let mut server = RedisServer { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(server);
            }
            if let Some(status) = server.child.try_wait()? {
                bail!("{bin} exited: {status}");
            }
            if Instant::now() > deadline {
                bail!("{bin} did not listen on {port} within 10 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub async fn conn(&self) -> Result<redis::aio::MultiplexedConnection> {
        let client = redis::Client::open(self.url())?;
        Ok(client.get_multiplexed_async_connection().await?)
    }

    /// STRLEN of `key`.
    pub async fn strlen(&self, key: &str) -> Result<u64> {
        let mut c = self.conn().await?;
        Ok(redis::cmd("STRLEN").arg(key).query_async(&mut c).await?)
    }

    pub async fn used_memory_mib(&self) -> Result<f64> {
        let mut c = self.conn().await?;
        let info: String = redis::cmd("INFO").arg("memory").query_async(&mut c).await?;
        let bytes = info
            .lines()
            .find_map(|l| l.strip_prefix("used_memory:"))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(f64::NAN);
        Ok(bytes / 1048576.0)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
