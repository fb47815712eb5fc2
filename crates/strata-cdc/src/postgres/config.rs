//! From the source's config to a connection: the URL parsed (no network), the session set up
//! so text output is the same on every path, and server errors sorted into whose fault they
//! are.

use std::str::FromStr;

use crate::config::{redact_url, SourceCommon};
use tokio_postgres::{Client, NoTls};

use crate::error::{Error, Result};

/// Session settings every connection runs first: the text output formats the decoder reads
/// (`decode.rs`), identical for snapshot reads and for pgoutput values decoded in this session.
pub const SESSION_SETUP: &str = "SET DateStyle = 'ISO, YMD'; SET TimeZone = 'UTC'; \
     SET IntervalStyle = 'postgres'; SET extra_float_digits = 1; SET bytea_output = 'hex'; \
     SET client_encoding = 'UTF8'; SET standard_conforming_strings = on";

/// What connecting needs: the parsed URL, `host:port` for messages, and the source's name.
#[derive(Clone)]
pub struct Connect {
    pub pg: tokio_postgres::Config,
    pub host: String,
    pub database: String,
    pub source: String,
}

impl std::fmt::Debug for Connect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connect")
            .field("host", &self.host)
            .field("database", &self.database)
            .finish()
    }
}

impl Connect {
    /// Parses the URL; connects nothing.
    pub fn new(config: &SourceCommon) -> Result<Connect> {
        let mut pg =
            tokio_postgres::Config::from_str(&config.url).map_err(|e| Error::Unsupported {
                table: config.name.clone(),
                message: format!("bad url {}: {e}", redact_url(&config.url)),
            })?;
        pg.application_name(format!("strata-cdc-{}", config.name));
        pg.connect_timeout(std::time::Duration::from_secs(10));
        let host = match pg.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            #[cfg(unix)]
            Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
            None => "localhost".to_string(),
        };
        let port = pg.get_ports().first().copied().unwrap_or(5432);
        let database = pg.get_dbname().unwrap_or_default().to_string();
        Ok(Connect {
            pg,
            host: format!("{host}:{port}"),
            database,
            source: config.name.clone(),
        })
    }

    /// Opens a connection (no TLS) and sets the session up.
    pub async fn connect(&self) -> Result<Client> {
        let (client, connection) = self
            .pg
            .connect(NoTls)
            .await
            .map_err(|e| self.err("connecting", &e))?;
        let source = self.source.clone();
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(source = %source, error = %e, "postgres connection closed");
            }
        });
        client
            .batch_execute(SESSION_SETUP)
            .await
            .map_err(|e| self.err("setting up the session", &e))?;
        Ok(client)
    }

    /// A server or connection error while doing `what`, sorted by whose fault it is.
    pub fn err(&self, what: &str, e: &tokio_postgres::Error) -> Error {
        classify(&self.source, &self.host, what, e)
    }
}

/// The error's text with the server's message, detail and hint when there are some.
pub fn error_text(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut s = format!("{} {}: {}", db.severity(), db.code().code(), db.message());
        if let Some(d) = db.detail() {
            s.push_str(&format!(" ({d})"));
        }
        if let Some(h) = db.hint() {
            s.push_str(&format!(" hint: {h}"));
        }
        return s;
    }
    let mut s = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        s.push_str(&format!(": {c}"));
        cause = c.source();
    }
    s
}

/// Server errors that no retry fixes (authentication, privileges, missing objects, server
/// settings such as `wal_level`) are the user's to fix; the rest (connection refused or
/// dropped, server shutting down, serialization failures) are retried.
pub fn classify(source: &str, host: &str, what: &str, e: &tokio_postgres::Error) -> Error {
    let code = e.as_db_error().map(|d| d.code().code().to_string());
    classify_code(source, host, what, code.as_deref(), error_text(e))
}

/// [`classify`] for an error known by its SQLSTATE (None: no server error) and its text.
pub fn classify_code(
    source: &str,
    host: &str,
    what: &str,
    code: Option<&str>,
    text: String,
) -> Error {
    let users = code.is_some_and(|c| {
        ["28", "42", "3D", "55", "0A", "22"]
            .iter()
            .any(|class| c.starts_with(class))
    });
    if users {
        Error::Unsupported {
            table: source.to_string(),
            message: format!("{host}: {what}: {text}"),
        }
    } else {
        Error::Source {
            source_name: source.to_string(),
            host: host.to_string(),
            message: format!("{what}: {text}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(url: &str) -> crate::config::SourceConfig {
        let source: crate::config::SourceConfig = toml::from_str(&format!(
            "name = \"pg\"\nkind = \"postgres\"\nurl = \"{url}\"\ntables = [\"t\"]\n"
        ))
        .unwrap();
        source.validate().unwrap();
        source
    }

    #[test]
    fn urls_parse_without_a_connection() {
        let c = Connect::new(&config("postgres://cdc:secret@127.0.0.1:15432/app")).unwrap();
        assert_eq!(c.host, "127.0.0.1:15432");
        assert_eq!(c.database, "app");
        assert!(!format!("{c:?}").contains("secret"));
    }

    #[tokio::test]
    async fn a_refused_connection_names_the_host_and_is_retryable() {
        // Port 1 on loopback: nothing listens there.
        let c = Connect::new(&config("postgres://cdc:secret@127.0.0.1:1/app")).unwrap();
        let err = c.connect().await.unwrap_err();
        assert!(err.retryable(), "{err}");
        let text = err.to_string();
        assert!(text.contains("127.0.0.1:1"), "{text}");
        assert!(!text.contains("secret"), "{text}");
    }
}
