//! The physical ceiling for durable ingest on this machine: a minimal HTTP/1.1 server that
//! appends each request body to one file and answers 200 only after `fdatasync` — with the same
//! group commit Strata's bus uses (one fsync covers every body that arrived meanwhile), and
//! nothing else: no auth, no parsing, no enrichment, no lake.
//!
//! Usage: fsync-server DIR   (prints `listening on http://ADDR`, runs until killed)

use std::io::Write;
use std::net::SocketAddr;
use std::sync::mpsc;

use anyhow::{Context, Result};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

type Job = (Vec<u8>, oneshot::Sender<()>);

#[tokio::main]
async fn main() -> Result<()> {
    let dir = std::env::args().nth(1).context("usage: fsync-server DIR")?;
    let path = std::path::Path::new(&dir).join("ceiling.log");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    let (tx, rx) = mpsc::sync_channel::<Job>(4096);
    std::thread::spawn(move || {
        // Group commit: take one job, then everything already queued; one write + one fsync.
        while let Ok(first) = rx.recv() {
            let mut batch = vec![first];
            while let Ok(more) = rx.try_recv() {
                batch.push(more);
            }
            for (body, _) in &batch {
                if file.write_all(body).is_err() {
                    return;
                }
            }
            if file.sync_data().is_err() {
                return;
            }
            for (_, done) in batch {
                let _ = done.send(());
            }
        }
    });
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    println!("listening on http://{}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        let tx = tx.clone();
        tokio::spawn(async move {
            let _ = handle(stream, tx).await;
        });
    }
}

async fn handle(stream: TcpStream, tx: mpsc::SyncSender<Job>) -> Result<()> {
    stream.set_nodelay(true)?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let mut len = 0usize;
        loop {
            line.clear();
            reader.read_line(&mut line).await?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0u8; len];
        reader.read_exact(&mut body).await?;
        let (done_tx, done_rx) = oneshot::channel();
        let tx2 = tx.clone();
        tokio::task::spawn_blocking(move || tx2.send((body, done_tx)))
            .await?
            .context("writer stopped")?;
        done_rx.await.context("writer stopped")?;
        reader
            .get_mut()
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 16\r\n\r\n{\"success\":true}")
            .await?;
    }
}
