//! A minimal keep-alive HTTP/1.1 client on a tokio `TcpStream`: enough to POST JSON to a
//! Segment-compatible collector and read its answer (`Content-Length` or chunked bodies).
//! Plain `http://` only.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::error::{Error, Result};

/// Longest a connect may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest a request may wait for its full answer.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest response body read (collector answers are tiny).
const MAX_BODY: usize = 1 << 20;

/// Where to send: host, port and path prefix of an `http://host:port[/prefix]` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Path prefix without a trailing slash (often empty).
    pub prefix: String,
}

impl Target {
    /// Parses `http://host[:port][/prefix]`.
    pub fn parse(url: &str) -> Result<Target> {
        let bad = |reason: &str| Error::Target {
            target: url.to_string(),
            reason: reason.to_string(),
        };
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| bad("only http:// URLs are supported"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if authority.is_empty() {
            return Err(bad("missing host"));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6.split_once(']').ok_or_else(|| bad("unclosed ["))?;
            match after.strip_prefix(':') {
                Some(p) => (host, p.parse::<u16>().map_err(|_| bad("bad port"))?),
                None if after.is_empty() => (host, 80),
                None => return Err(bad("bad address")),
            }
        } else {
            match authority.split_once(':') {
                Some((h, p)) => (h, p.parse::<u16>().map_err(|_| bad("bad port"))?),
                None => (authority, 80),
            }
        };
        if host.is_empty() {
            return Err(bad("missing host"));
        }
        Ok(Target {
            host: host.to_string(),
            port,
            prefix: path.trim_end_matches('/').to_string(),
        })
    }

    fn host_header(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// One keep-alive connection.
pub struct Conn {
    reader: BufReader<TcpStream>,
    host_header: String,
    line: String,
    /// The server asked to close after the last response.
    pub closed: bool,
}

impl Conn {
    /// Connects to `target`.
    pub async fn connect(target: &Target) -> Result<Conn> {
        let stream = tokio::time::timeout(
            CONNECT_TIMEOUT,
            TcpStream::connect((target.host.as_str(), target.port)),
        )
        .await
        .map_err(|_| Error::Http("connect timed out".into()))??;
        stream.set_nodelay(true)?;
        Ok(Conn {
            reader: BufReader::new(stream),
            host_header: target.host_header(),
            line: String::new(),
            closed: false,
        })
    }

    /// POSTs a JSON body and returns the status after reading the whole response.
    pub async fn post(&mut self, path: &str, auth: &str, body: &[u8]) -> Result<u16> {
        tokio::time::timeout(RESPONSE_TIMEOUT, self.post_inner(path, auth, body, None))
            .await
            .map_err(|_| Error::Http("response timed out".into()))?
    }

    /// POSTs a JSON body and returns the status and the response body.
    pub async fn post_read(
        &mut self,
        path: &str,
        auth: &str,
        body: &[u8],
    ) -> Result<(u16, Vec<u8>)> {
        let mut out = Vec::new();
        let status = tokio::time::timeout(
            RESPONSE_TIMEOUT,
            self.post_inner(path, auth, body, Some(&mut out)),
        )
        .await
        .map_err(|_| Error::Http("response timed out".into()))??;
        Ok((status, out))
    }

    async fn post_inner(
        &mut self,
        path: &str,
        auth: &str,
        body: &[u8],
        keep: Option<&mut Vec<u8>>,
    ) -> Result<u16> {
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: {auth}\r\nContent-Type: application/json\r\nUser-Agent: strata-sim/{}\r\nContent-Length: {}\r\n\r\n",
            self.host_header,
            env!("CARGO_PKG_VERSION"),
            body.len()
        );
        let stream = self.reader.get_mut();
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body).await?;
        stream.flush().await?;
        self.read_response_into(keep).await
    }

    /// GETs `path` (with an `Authorization` value when given) and returns the status and the
    /// body.
    pub async fn get(&mut self, path: &str, auth: Option<&str>) -> Result<(u16, Vec<u8>)> {
        tokio::time::timeout(RESPONSE_TIMEOUT, async {
            let auth = auth
                .map(|a| format!("Authorization: {a}\r\n"))
                .unwrap_or_default();
            let head = format!(
                "GET {path} HTTP/1.1\r\nHost: {}\r\n{auth}User-Agent: strata-sim/{}\r\n\r\n",
                self.host_header,
                env!("CARGO_PKG_VERSION"),
            );
            let stream = self.reader.get_mut();
            stream.write_all(head.as_bytes()).await?;
            stream.flush().await?;
            let mut body = Vec::new();
            let status = self.read_response_into(Some(&mut body)).await?;
            Ok((status, body))
        })
        .await
        .map_err(|_| Error::Http("response timed out".into()))?
    }

    async fn read_line(&mut self) -> Result<&str> {
        self.line.clear();
        let n = (&mut self.reader)
            .take(16 * 1024)
            .read_line(&mut self.line)
            .await?;
        if n == 0 {
            return Err(Error::Http("connection closed by the server".into()));
        }
        Ok(self.line.trim_end())
    }

    /// Reads one response; its body goes to `body` when given, else is skipped.
    async fn read_response_into(&mut self, mut body: Option<&mut Vec<u8>>) -> Result<u16> {
        let status_line = self.read_line().await?.to_string();
        let status: u16 = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| Error::Http(format!("bad status line {status_line:?}")))?;
        let mut len = 0usize;
        let mut chunked = false;
        loop {
            let l = self.read_line().await?;
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                let (k, v) = (k.trim(), v.trim());
                if k.eq_ignore_ascii_case("content-length") {
                    len = v
                        .parse()
                        .map_err(|_| Error::Http("bad content-length".into()))?;
                } else if k.eq_ignore_ascii_case("transfer-encoding") {
                    chunked = v.eq_ignore_ascii_case("chunked");
                } else if k.eq_ignore_ascii_case("connection") {
                    self.closed = v.eq_ignore_ascii_case("close");
                }
            }
        }
        if chunked {
            loop {
                let size_line = self.read_line().await?;
                let hex = size_line.split(';').next().unwrap_or("").trim();
                let size = usize::from_str_radix(hex, 16)
                    .map_err(|_| Error::Http("bad chunk size".into()))?;
                if size == 0 {
                    // Trailers, then the empty line.
                    while !self.read_line().await?.is_empty() {}
                    break;
                }
                self.skip(size, body.as_deref_mut()).await?;
                self.skip(2, None).await?;
            }
        } else {
            self.skip(len, body).await?;
        }
        Ok(status)
    }

    /// Reads `n` body bytes, kept in `keep` when given.
    async fn skip(&mut self, n: usize, mut keep: Option<&mut Vec<u8>>) -> Result<()> {
        if n > MAX_BODY || keep.as_ref().is_some_and(|k| k.len() + n > MAX_BODY) {
            return Err(Error::Http(format!(
                "response body of {n} bytes is too large"
            )));
        }
        let mut rest = n;
        let mut sink = [0u8; 4096];
        while rest > 0 {
            let k = rest.min(sink.len());
            self.reader.read_exact(&mut sink[..k]).await?;
            if let Some(keep) = keep.as_deref_mut() {
                keep.extend_from_slice(&sink[..k]);
            }
            rest -= k;
        }
        Ok(())
    }
}

/// `Authorization` value for a Segment write key (Basic, key as user, empty password).
pub fn basic_auth(write_key: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{write_key}:"))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_targets() {
        let t = Target::parse("http://127.0.0.1:8080").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.prefix.as_str()),
            ("127.0.0.1", 8080, "")
        );
        let t = Target::parse("http://localhost/collect/").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.prefix.as_str()),
            ("localhost", 80, "/collect")
        );
        let t = Target::parse("http://[::1]:9000").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 9000));
        assert!(Target::parse("https://x").is_err());
        assert!(Target::parse("http://:80").is_err());
        assert!(Target::parse("http://h:notaport").is_err());
        assert_eq!(basic_auth("k"), "Basic azo=");
    }
}
