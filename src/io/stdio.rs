//! Standard streams for data: locked once, buffered, and honest about a closed pipe.
//!
//! stdout carries data only (ARCHITECTURE.md section 5.7), so it is written through a [`StdoutSink`]
//! rather than `print!`, which would panic when the reader has gone away. Rust ignores SIGPIPE, so a
//! closed pipe shows up as an `EPIPE` write error; the sink remembers it so the caller can end quietly
//! with status 0 however the error was wrapped on its way up.

use std::io::{self, BufWriter, StdinLock, StdoutLock, Write};

/// Buffer for stdout: pipes move 64 KiB at a time, a few of those per syscall is plenty.
const BUFFER: usize = 256 * 1024;

/// Locked stdin; already buffered by the standard library.
pub fn stdin() -> StdinLock<'static> {
    io::stdin().lock()
}

/// stdin as a seekable file, for reading an archive's trailing index: works when stdin is redirected
/// from a file, fails with the OS's error (`ESPIPE`) for a pipe.
#[cfg(unix)]
pub fn seekable_stdin() -> io::Result<std::fs::File> {
    use std::io::Seek;
    use std::os::fd::AsFd;
    let mut file = std::fs::File::from(io::stdin().as_fd().try_clone_to_owned()?);
    file.stream_position()?;
    Ok(file)
}

#[cfg(not(unix))]
pub fn seekable_stdin() -> io::Result<std::fs::File> {
    Err(io::Error::new(io::ErrorKind::Unsupported, "stdin cannot be read as a file on this platform"))
}

/// Locked, buffered stdout that records whether a write failed because the reader closed the pipe.
pub struct StdoutSink {
    inner: BufWriter<StdoutLock<'static>>,
    broken: bool,
}

impl StdoutSink {
    pub fn new() -> Self {
        StdoutSink { inner: BufWriter::with_capacity(BUFFER, io::stdout().lock()), broken: false }
    }

    /// Whether any write or flush failed with [`io::ErrorKind::BrokenPipe`].
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    fn note<T>(&mut self, r: io::Result<T>) -> io::Result<T> {
        if let Err(e) = &r
            && e.kind() == io::ErrorKind::BrokenPipe
        {
            self.broken = true;
        }
        r
    }
}

impl Default for StdoutSink {
    fn default() -> Self {
        Self::new()
    }
}

impl Write for StdoutSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let r = self.inner.write(buf);
        self.note(r)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        let r = self.inner.write_all(buf);
        self.note(r)
    }

    fn flush(&mut self) -> io::Result<()> {
        let r = self.inner.flush();
        self.note(r)
    }
}
