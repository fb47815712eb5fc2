//! The core error type. Each kind says whose fault it is and whether a retry can help.

/// Whose fault an error is: the one definition every crate's error type answers with (its
/// `fault()`), so callers, HTTP mappings and logs classify errors the same way everywhere.
/// Prints as `user`, `external` or `internal` (the same text [`Fault::as_str`] gives).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fault {
    /// The user's input or configuration (bad SQL, an unknown table, a bad option): fix it and
    /// try again.
    User,
    /// Something outside Strata or this process (disk, network, the catalog database, the bus,
    /// another service): a retry may help.
    External,
    /// A bug or broken invariant inside Strata.
    Internal,
}

impl Fault {
    /// The lower-case name: `user`, `external` or `internal` (for logs and metric labels).
    pub fn as_str(self) -> &'static str {
        match self {
            Fault::User => "user",
            Fault::External => "external",
            Fault::Internal => "internal",
        }
    }
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    User(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    pub fn user(msg: impl Into<String>) -> Self {
        Error::User(msg.into())
    }

    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    pub fn fault(&self) -> Fault {
        match self {
            Error::User(_) => Fault::User,
            Error::Io { .. } => Fault::External,
            Error::Internal(_) => Fault::Internal,
        }
    }

    pub fn retryable(&self) -> bool {
        self.fault() == Fault::External
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_prints_lower_case() {
        assert_eq!(Fault::User.to_string(), "user");
        assert_eq!(Fault::External.to_string(), "external");
        assert_eq!(Fault::Internal.to_string(), "internal");
        assert_eq!(format!("{:>9}", Fault::User), "     user");
    }

    #[test]
    fn errors_say_whose_fault_and_whether_to_retry() {
        let user = Error::user("bad option");
        assert_eq!((user.fault(), user.retryable()), (Fault::User, false));
        let io = Error::io("reading x", std::io::Error::other("disk"));
        assert_eq!((io.fault(), io.retryable()), (Fault::External, true));
        let bug = Error::Internal("broken".into());
        assert_eq!((bug.fault(), bug.retryable()), (Fault::Internal, false));
    }
}
