//! Whole-or-nothing files: everything is written under a temporary name in the same directory
//! and renamed into place when complete, so a crash never leaves a half-written result under
//! its real name. Only an absent path or a regular file is ever replaced (never a directory, a
//! link, a FIFO or a device), and every error names the path it is about.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

/// The temporary name for `path`: hidden, in the same directory (so the rename is atomic),
/// keeping the extension (so encoders that look at it still work).
pub fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".tmp-{}-{name}", std::process::id()))
}

/// `e`, with the path it is about in its message.
pub fn at(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// Ok if `path` is absent or a regular file, which a result may replace.
pub fn replaceable(path: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(at(path, e)),
        Ok(m) if m.file_type().is_file() => Ok(()),
        Ok(m) => {
            let what = if m.is_dir() {
                "a directory"
            } else if m.file_type().is_symlink() {
                "a symbolic link"
            } else {
                "not a regular file"
            };
            Err(at(
                path,
                io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{what}; only a regular file is replaced"),
                ),
            ))
        }
    }
}

/// Writes `bytes` to `path` whole.
pub fn write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    replaceable(path)?;
    let tmp = temp_path(path);
    let result = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()
    })();
    // Named after the file asked for: the temporary one is an implementation detail.
    finish(result.map_err(|e| at(path, e)), &tmp, path)
}

/// Renames `tmp` over `path` if `result` is Ok, else removes `tmp`.
pub fn finish(result: io::Result<()>, tmp: &Path, path: &Path) -> io::Result<()> {
    let renamed = result.and_then(|_| {
        replaceable(path)?;
        std::fs::rename(tmp, path).map_err(|e| at(path, e))
    });
    match renamed {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = std::fs::remove_file(tmp);
            Err(e)
        }
    }
}

/// A file being streamed: write through the writer [`AtomicFile::create`] returns, then
/// [`AtomicFile::commit`].
pub struct AtomicFile {
    tmp: PathBuf,
    path: PathBuf,
}

impl AtomicFile {
    /// Starts `path`, returning the handle and a buffered writer to the temporary file.
    pub fn create(path: &Path) -> io::Result<(AtomicFile, BufWriter<File>)> {
        replaceable(path)?;
        let tmp = temp_path(path);
        let f = File::create(&tmp).map_err(|e| at(path, e))?;
        Ok((
            AtomicFile {
                tmp,
                path: path.to_path_buf(),
            },
            BufWriter::with_capacity(1 << 16, f),
        ))
    }

    /// Moves the finished file into place. The writer must have been flushed and dropped.
    pub fn commit(self) -> io::Result<()> {
        finish(Ok(()), &self.tmp, &self.path)
    }

    /// Throws the temporary file away.
    pub fn abandon(self) {
        let _ = std::fs::remove_file(&self.tmp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_appears_until_commit() {
        let dir = std::env::temp_dir().join(format!("fedsim-atomic-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("events.jsonl");
        let (file, mut w) = AtomicFile::create(&path).unwrap();
        w.write_all(b"line\n").unwrap();
        drop(w);
        assert!(!path.exists());
        file.commit().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"line\n");
        write(&path, b"whole").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"whole");
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            1,
            "no temporary file is left"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn only_an_absent_path_or_a_regular_file_is_replaced() {
        let dir = std::env::temp_dir().join(format!("fedsim-replace-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        let err = write(&dir.join("sub"), b"x").unwrap_err().to_string();
        assert!(err.contains("sub: a directory"), "{err}");
        #[cfg(unix)]
        {
            let link = dir.join("link");
            std::os::unix::fs::symlink(dir.join("target"), &link).unwrap();
            let err = write(&link, b"x").unwrap_err().to_string();
            assert!(err.contains("link: a symbolic link"), "{err}");
            assert!(!dir.join("target").exists());
        }
        let missing = dir.join("no/such/dir/file");
        let err = write(&missing, b"x").unwrap_err().to_string();
        assert!(err.contains("no/such/dir"), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
