//! The two failure kinds of Clara's `fed_learn`: administration and communication.
//!
//! Clara raises `FLAdminException` for a refused or invalid administrative action and
//! `FLCommunicationException` when a message cannot cross the wire: it does not decode, fails
//! authentication or is malformed. fedsim keeps the same split so that the simulation can tell
//! "the peer refused" from "the bytes are bad" (the latter is logged as `corrupt`).

use std::error::Error;
use std::fmt;

/// A boxed cause, so an error can carry whatever lower-level error produced it.
pub type Cause = Box<dyn Error + Send + Sync + 'static>;

/// An administrative action was refused or invalid (Clara's `FLAdminException`).
#[derive(Debug, thiserror::Error)]
#[error("FL admin error: {message}")]
pub struct FLAdminError {
    /// What was refused, in words.
    pub message: String,
}

impl FLAdminError {
    /// An admin error with the given message.
    pub fn new(message: impl Into<String>) -> Self {
        FLAdminError {
            message: message.into(),
        }
    }
}

/// A message could not be sent or understood (Clara's `FLCommunicationException`).
#[derive(Debug)]
pub struct FLCommunicationError {
    /// What went wrong, in words.
    pub message: String,
    /// The lower-level error, when there is one.
    pub cause: Option<Cause>,
}

impl FLCommunicationError {
    /// A communication error with no underlying cause.
    pub fn new(message: impl Into<String>) -> Self {
        FLCommunicationError {
            message: message.into(),
            cause: None,
        }
    }

    /// A communication error wrapping the error that caused it.
    pub fn with_cause(message: impl Into<String>, cause: impl Into<Cause>) -> Self {
        FLCommunicationError {
            message: message.into(),
            cause: Some(cause.into()),
        }
    }
}

impl fmt::Display for FLCommunicationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FL communication error: {}", self.message)?;
        if let Some(cause) = &self.cause {
            write!(f, ": {cause}")?;
        }
        Ok(())
    }
}

impl Error for FLCommunicationError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.cause.as_deref().map(|c| c as &(dyn Error + 'static))
    }
}

impl From<prost::DecodeError> for FLCommunicationError {
    fn from(e: prost::DecodeError) -> Self {
        FLCommunicationError::with_cause("protobuf decode failed", e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn communication_error_names_its_cause() {
        let e = FLCommunicationError::with_cause("bad frame", FLAdminError::new("inner"));
        assert_eq!(
            e.to_string(),
            "FL communication error: bad frame: FL admin error: inner"
        );
        assert!(e.source().is_some());
        assert!(FLCommunicationError::new("x").source().is_none());
    }
}
