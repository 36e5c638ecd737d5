//! Reading files back (a results directory, a golden trace): only regular files, and only up
//! to a size, so that a device (`/dev/zero`), a FIFO or a runaway file gives a clear error
//! instead of a hang or an allocation the machine cannot make.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use super::ReportError;

/// The largest event log or golden trace read back.
pub const MAX_LOG_BYTES: u64 = 1 << 30;

/// The largest `rounds.csv` or `summary.json` read back.
pub const MAX_TABLE_BYTES: u64 = 64 << 20;

/// `path` opened for reading, if it is a regular file of at most `max` bytes; the error
/// names the path.
pub fn open(path: &Path, max: u64) -> Result<File, ReportError> {
    // Looked at before it is opened: opening a FIFO waits for a writer.
    let meta = std::fs::metadata(path).map_err(|e| ReportError::io(path, e))?;
    if !meta.is_file() {
        return Err(ReportError::invalid(path, "not a regular file"));
    }
    if meta.len() > max {
        let (len, max) = (meta.len(), max);
        let reason = format!("{len} bytes, more than the {max} read back");
        return Err(ReportError::invalid(path, reason));
    }
    File::open(path).map_err(|e| ReportError::io(path, e))
}

/// The text of `path`, read as [`open`] allows.
pub fn read_text(path: &Path, max: u64) -> Result<String, ReportError> {
    let mut text = String::new();
    open(path, max)?
        // A file that grew since it was looked at is still read only up to `max`.
        .take(max)
        .read_to_string(&mut text)
        .map_err(|e| ReportError::io(path, e))?;
    Ok(text)
}
