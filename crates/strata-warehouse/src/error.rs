//! Warehouse errors. Project errors name the file and, for SQL, the line and column.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Something wrong in the project itself, found before anything runs.
    #[error("{file}: {message}")]
    Project { file: String, message: String },
    /// The project as a whole (cycles, unknown tables, selection).
    #[error("{0}")]
    Plan(String),
    #[error(transparent)]
    Lake(#[from] strata_table::Error),
    #[error("i/o error ({context}): {message}")]
    Io { context: String, message: String },
    #[error("{0}")]
    Run(String),
}

impl Error {
    pub fn project(file: impl Into<String>, message: impl Into<String>) -> Error {
        Error::Project {
            file: file.into(),
            message: message.into(),
        }
    }

    pub fn io(context: impl Into<String>, e: impl std::fmt::Display) -> Error {
        Error::Io {
            context: context.into(),
            message: e.to_string(),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
