//! The model layer's error: one line saying what was wrong and what was expected.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
/// The message.
pub struct Error(pub String);

impl Error {
    /// An error saying `msg`.
    pub fn new(msg: impl Into<String>) -> Self {
        Error(msg.into())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl From<recur_kernels::Error> for Error {
    fn from(e: recur_kernels::Error) -> Self {
        Error(e.to_string())
    }
}

/// The model layer's result.
pub type Result<T> = std::result::Result<T, Error>;

/// Returns early with an [`Error`] built like `format!`.
#[macro_export]
macro_rules! bail {
    ($($arg:tt)*) => {
        return Err($crate::error::Error(format!($($arg)*)))
    };
}
