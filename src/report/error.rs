//! What can go wrong writing a run's files or reading them back: the one error type of the
//! `report` layer, each naming the path it is about.

use std::path::PathBuf;

/// A report file could not be written, read, or drawn.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The file system refused.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Writing a file failed (the error names it, see [`super::atomic`]).
    #[error(transparent)]
    Write(std::io::Error),
    /// A file read back is not what fedsim writes, or not one fedsim will read.
    #[error("{}: {reason}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A chart could not be drawn.
    #[error("drawing {}: {reason}", path.display())]
    Chart {
        /// The chart's file.
        path: PathBuf,
        /// The drawing library's error.
        reason: String,
    },
}

impl ReportError {
    /// An [`ReportError::Io`] about `path`.
    pub fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        ReportError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// An [`ReportError::Invalid`] about `path`.
    pub fn invalid(path: &std::path::Path, reason: impl Into<String>) -> Self {
        ReportError::Invalid {
            path: path.to_path_buf(),
            reason: reason.into(),
        }
    }
}
