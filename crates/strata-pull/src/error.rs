//! Pull errors: each variant says whose fault it is and whether trying the window again may
//! help.

pub use strata_core::Fault;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The pull's configuration cannot be used as written, or a template's environment
    /// variable is not set (user's fault; fix and run again).
    #[error("{0}")]
    Config(String),
    /// The server answered with an error status (429 and 5xx are retried first; other 4xx are
    /// not: a bad URL, token or parameter).
    #[error("GET {url}: HTTP {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    /// The request did not complete: a timeout, a refused connection, a body cut short.
    #[error("{0}")]
    Transport(String),
    /// A retried request still failed after its attempts.
    #[error("gave up after {attempts} attempts: {last}")]
    GaveUp { attempts: u32, last: Box<Error> },
    /// Something outside the request failed (a server asking to wait too long).
    #[error("{0}")]
    External(String),
    /// The answer does not have the shape the config describes: not JSON, no records at the
    /// path, a pagination loop.
    #[error("{0}")]
    Response(String),
    /// Writing the lake table failed.
    #[error(transparent)]
    Lake(#[from] strata_table::Error),
    /// The state file or its lock (`<data>/pulls/`).
    #[error("{context}: {source}")]
    State {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// Another process is pulling the same pull now.
    #[error("{0}")]
    Busy(String),
}

impl Error {
    pub fn fault(&self) -> Fault {
        match self {
            Error::Config(_) => Fault::User,
            Error::Status { status, .. } if (400..500).contains(status) && *status != 429 => {
                Fault::User
            }
            Error::Status { .. } | Error::Transport(_) | Error::External(_) => Fault::External,
            Error::GaveUp { last, .. } => last.fault(),
            // The server's answer is not what the config says it is: the config's paths, or
            // the API changed.
            Error::Response(_) => Fault::User,
            Error::Lake(e) => e.fault(),
            Error::State { .. } | Error::Busy(_) => Fault::External,
        }
    }

    /// Whether pulling the window again later may succeed.
    pub fn retryable(&self) -> bool {
        match self {
            Error::Lake(e) => e.retryable(),
            Error::Response(_) => true,
            other => other.fault() == Fault::External,
        }
    }

    /// A short label for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Config(_) => "config",
            Error::Status { status: 429, .. } => "throttled",
            Error::Status { status, .. } if *status >= 500 => "server_error",
            Error::Status { .. } => "client_error",
            Error::Transport(t) if t.ends_with("timed out") => "timeout",
            Error::Transport(_) => "transport",
            Error::GaveUp { last, .. } => last.reason(),
            Error::External(_) => "external",
            Error::Response(_) => "response",
            Error::Lake(_) => "lake",
            Error::State { .. } => "state",
            Error::Busy(_) => "busy",
        }
    }

    pub fn state(context: impl Into<String>, source: std::io::Error) -> Error {
        Error::State {
            context: context.into(),
            source,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
