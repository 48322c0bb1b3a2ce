//! Standard streams for data: locked once, buffered, and honest about a closed pipe.
//!
//! stdout carries data only (ARCHITECTURE.md section 5.7), so it is written through a [`StdoutSink`]
//! rather than `print!`, which would panic when the reader has gone away. Rust ignores SIGPIPE, so a
//! closed pipe shows up as an `EPIPE` write error; the sink remembers it so the caller can end quietly
//! with status 0 however the error was wrapped on its way up.

use std::io::{self, BufRead, BufWriter, Read, StdinLock, StdoutLock, Write};
use std::sync::atomic::{AtomicBool, Ordering};

/// Buffer for stdout: pipes move 64 KiB at a time, a few of those per syscall is plenty.
const BUFFER: usize = 256 * 1024;

/// Which of stdin, stdout, stderr were closed when the process started ([`guard_standard_streams`]).
static CLOSED: [AtomicBool; 3] = [AtomicBool::new(false), AtomicBool::new(false), AtomicBool::new(false)];

/// Whether standard stream `fd` was closed by whoever started us. Rust's runtime reopens a closed
/// descriptor 0, 1 or 2 on `/dev/null` before `main` (read-write, where a shell's `</dev/null` or
/// `>/dev/null` opens it read-only or write-only), so a closed stream shows up as `/dev/null` open for
/// reading and writing; a descriptor that cannot even be duplicated is closed too.
#[cfg(unix)]
fn is_closed(fd: usize) -> bool {
    use std::os::fd::{AsFd, AsRawFd};
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let dup = match fd {
        0 => io::stdin().as_fd().try_clone_to_owned(),
        1 => io::stdout().as_fd().try_clone_to_owned(),
        _ => io::stderr().as_fd().try_clone_to_owned(),
    };
    let Ok(dup) = dup else { return true };
    // SAFETY: F_GETFL on a descriptor we own reads its status flags and changes nothing.
    let flags = unsafe { libc::fcntl(dup.as_raw_fd(), libc::F_GETFL) };
    if flags < 0 || flags & libc::O_ACCMODE != libc::O_RDWR {
        return false;
    }
    let file = std::fs::File::from(dup);
    match (file.metadata(), std::fs::metadata("/dev/null")) {
        (Ok(m), Ok(null)) => m.file_type().is_char_device() && m.rdev() == null.rdev(),
        _ => false,
    }
}

#[cfg(not(unix))]
fn is_closed(_fd: usize) -> bool {
    false
}

/// Call first thing in `main`. A standard stream the caller closed (`llmzip d -c x.lz >&-`) must fail
/// the run, as with gzip or xz, yet Rust makes a closed descriptor a silent `/dev/null` (see
/// [`is_closed`]). So each closed one is noted, and stdin and stdout then fail on first use with "is
/// closed". A descriptor still closed (a runtime that did not reopen it) is held open on `/dev/null`, so
/// that no file opened later takes its number and receives what is meant for stdout.
pub fn guard_standard_streams() {
    for (fd, closed) in CLOSED.iter().enumerate() {
        if is_closed(fd) {
            closed.store(true, Ordering::Relaxed);
            #[cfg(unix)]
            {
                use std::os::fd::{AsRawFd, IntoRawFd};
                let null = if fd == 0 {
                    std::fs::File::open("/dev/null")
                } else {
                    std::fs::OpenOptions::new().write(true).open("/dev/null")
                };
                // Lands on the lowest free descriptor: this one if it is really closed; else drop it.
                if let Ok(null) = null
                    && null.as_raw_fd() as usize == fd
                {
                    let _ = null.into_raw_fd();
                }
            }
        }
    }
}

fn closed_error(name: &str) -> io::Error {
    io::Error::other(format!("{name} is closed (bad file descriptor)"))
}

/// The bytes left on standard input when it is a regular file (`llmzip c < FILE`): the file's length
/// less the offset already consumed, so that such an input is cut into chunks exactly as `llmzip c
/// FILE` cuts it (the size of a file chooses its chunk layout, see [`super::fs::regular_file_size`]),
/// and so that `llmzip bench`, which feeds every tool its input on stdin, measures the archives users
/// get. `None` for a pipe, a terminal or a device (their length says nothing of what they will yield),
/// for a closed stdin, and where the platform cannot tell.
#[cfg(unix)]
pub fn stdin_file_size() -> Option<u64> {
    use std::io::Seek;
    use std::os::fd::AsFd;
    if CLOSED[0].load(Ordering::Relaxed) {
        return None;
    }
    // A duplicate shares the offset, and asking for the position does not move it.
    let mut file = std::fs::File::from(io::stdin().as_fd().try_clone_to_owned().ok()?);
    let size = super::fs::regular_file_size(&file.metadata().ok()?)?;
    Some(size.saturating_sub(file.stream_position().ok()?))
}

#[cfg(not(unix))]
pub fn stdin_file_size() -> Option<u64> {
    None
}

/// Locked stdin (already buffered by the standard library) that fails on first read if stdin was closed.
pub fn stdin() -> Stdin {
    Stdin { inner: io::stdin().lock(), closed: CLOSED[0].load(Ordering::Relaxed) }
}

/// See [`stdin`].
pub struct Stdin {
    inner: StdinLock<'static>,
    closed: bool,
}

impl Read for Stdin {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.closed {
            return Err(closed_error("standard input"));
        }
        self.inner.read(buf)
    }
}

impl BufRead for Stdin {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.closed {
            return Err(closed_error("standard input"));
        }
        self.inner.fill_buf()
    }

    fn consume(&mut self, amount: usize) {
        self.inner.consume(amount)
    }
}

/// stdin as a seekable file, for listing an archive (which needs its size and chunk offsets): works
/// when stdin is redirected from a file, fails with the OS's error (`ESPIPE`) for a pipe.
#[cfg(unix)]
pub fn seekable_stdin() -> io::Result<std::fs::File> {
    use std::io::Seek;
    use std::os::fd::AsFd;
    if CLOSED[0].load(Ordering::Relaxed) {
        return Err(closed_error("standard input"));
    }
    let mut file = std::fs::File::from(io::stdin().as_fd().try_clone_to_owned()?);
    file.stream_position()?;
    Ok(file)
}

#[cfg(not(unix))]
pub fn seekable_stdin() -> io::Result<std::fs::File> {
    Err(io::Error::new(io::ErrorKind::Unsupported, "stdin cannot be read as a file on this platform"))
}

/// Locked, buffered stdout that records whether a write failed because the reader closed the pipe, and
/// fails every write if stdout was closed (not a pipe whose reader left: no reader was ever there).
pub struct StdoutSink {
    inner: BufWriter<StdoutLock<'static>>,
    broken: bool,
    closed: bool,
}

impl StdoutSink {
    pub fn new() -> Self {
        StdoutSink {
            inner: BufWriter::with_capacity(BUFFER, io::stdout().lock()),
            broken: false,
            closed: CLOSED[1].load(Ordering::Relaxed),
        }
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
        if self.closed {
            return Err(closed_error("standard output"));
        }
        let r = self.inner.write(buf);
        self.note(r)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        if self.closed {
            return Err(closed_error("standard output"));
        }
        let r = self.inner.write_all(buf);
        self.note(r)
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.closed {
            return Err(closed_error("standard output"));
        }
        let r = self.inner.flush();
        self.note(r)
    }
}
