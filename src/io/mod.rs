//! Everything that touches files, standard streams, signals and the terminal on behalf of the CLI.
//!
//! - [`atomic`]: output files that appear complete or not at all (temp file + rename);
//! - [`cleanup`]: the process-wide list of unfinished temp files, removed on Ctrl-C;
//! - [`fs`]: the real answers to the planner's questions about paths, and metadata copying;
//! - [`stdio`]: locked, buffered stdin/stdout that remember a broken pipe;
//! - [`progress`]: the [`Progress`] trait the pipeline reports through, and a progress bar.

pub mod atomic;
pub mod cleanup;
pub mod fs;
pub mod progress;
pub mod stdio;

pub use atomic::AtomicFile;
pub use progress::{NoProgress, Progress, StderrProgress};

/// A readable, seekable source: what `list` needs to map an archive's chunks and their offsets.
pub trait ReadSeek: std::io::Read + std::io::Seek {}

impl<T: std::io::Read + std::io::Seek + ?Sized> ReadSeek for T {}
