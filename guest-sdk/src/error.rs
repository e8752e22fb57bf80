//! The error an algorithm returns to its host: a message the host shows as it is.
//!
//! Guest errors stay apart from traps: an `Err` here means "the algorithm ran
//! and says why it could not do the task"; a trap (a panic, a limit) is the
//! host's business.

/// An error with a message meant for the person running the algorithm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    message: String,
}

impl Error {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> Error {
        Error {
            message: message.into(),
        }
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl From<String> for Error {
    fn from(message: String) -> Error {
        Error { message }
    }
}

impl From<&str> for Error {
    fn from(message: &str) -> Error {
        Error::new(message)
    }
}

/// The result type of every algorithm entry point.
pub type Result<T, E = Error> = std::result::Result<T, E>;
