//! The model cache: one verified file per registry id, `<dir>/<id>.gguf`.
//!
//! The one rule this module keeps: a file appears under its final name only after its size and sha256
//! matched the registry. Bytes are written to a temp file in the same directory and renamed into place,
//! so a crash, a partial download or a wrong file never becomes a cache entry, and two processes filling
//! the same entry at once each rename a complete, verified file.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::error::{ModelError, SourceError};
use super::hash::{self, HashingWriter};
use super::progress::ModelProgress;
use super::registry::ModelEntry;

/// Environment variable naming the cache directory (default: the platform cache dir + `llmzip`).
pub const CACHE_DIR_ENV: &str = "LLMZIP_CACHE_DIR";

/// A directory of verified model files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cache {
    dir: PathBuf,
}

/// What the cache holds for one entry.
#[derive(Debug)]
pub(crate) enum CacheState {
    Missing,
    /// The file is the entry's; the map is the one that was hashed, for the caller to parse.
    Valid(memmap2::Mmap),
    /// A file is there but its bytes are not the entry's.
    Corrupt {
        size: u64,
        sha256: [u8; 32],
    },
}

/// Temp files and scratch directories older than this are leftovers of a killed process (a normal
/// fetch removes its own); a day is far longer than any download could legitimately take.
const STALE_AFTER: Duration = Duration::from_secs(24 * 60 * 60);

/// Why filling an entry failed: the cache itself (fatal) or the bytes offered (try another source).
pub(crate) enum InstallError {
    Cache(ModelError),
    Source(SourceError),
}

impl Cache {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Cache { dir: dir.into() }
    }

    /// `$LLMZIP_CACHE_DIR` if set and non-empty, else the platform cache directory + `llmzip`.
    pub fn from_env() -> Result<Self, ModelError> {
        match std::env::var_os(CACHE_DIR_ENV) {
            Some(dir) if !dir.is_empty() => Ok(Cache::new(dir)),
            _ => dirs::cache_dir().map(|d| Cache::new(d.join("llmzip"))).ok_or(ModelError::NoCacheDir),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the entry's file lives once cached (whether or not it is there now).
    pub fn entry_path(&self, entry: &ModelEntry) -> PathBuf {
        self.dir.join(format!("{}.gguf", entry.id))
    }

    /// A file of the entry's size is present. Cheap (no hashing), for listings only.
    pub fn has_entry_of_size(&self, entry: &ModelEntry) -> bool {
        std::fs::metadata(self.entry_path(entry)).is_ok_and(|m| m.is_file() && m.len() == entry.size)
    }

    /// Checks the cached file against the entry's size and sha256 (hashing its mapped bytes in full).
    pub(crate) fn check(
        &self,
        entry: &ModelEntry,
        progress: &dyn ModelProgress,
    ) -> Result<CacheState, ModelError> {
        let path = self.entry_path(entry);
        let len = match std::fs::metadata(&path) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(CacheState::Missing),
            Err(e) => return Err(ModelError::io("read", path, e)),
        };
        progress.set_length(len);
        progress.set_position(0);
        progress.set_message(format!("checking {}", entry.id));
        let (map, sha256) =
            hash::map_and_hash(&path, progress).map_err(|e| ModelError::io("read", &path, e))?;
        let size = map.len() as u64;
        if size == entry.size && sha256 == entry.sha256 {
            Ok(CacheState::Valid(map))
        } else {
            Ok(CacheState::Corrupt { size, sha256 })
        }
    }

    /// Removes the entry's file (a corrupt one, before fetching it again).
    pub(crate) fn remove(&self, entry: &ModelEntry) -> Result<(), ModelError> {
        let path = self.entry_path(entry);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(ModelError::io("remove", path, e)),
        }
    }

    /// Removes temp files (`.<id>.*.part`) and scratch directories (`.fetch-*`) that a killed process
    /// left behind more than [`STALE_AFTER`] ago. Best effort: a leftover only wastes disk, it can never
    /// be mistaken for an entry, so failures here are ignored.
    pub(crate) fn sweep_stale(&self) {
        let Ok(dir) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let now = SystemTime::now();
        for item in dir.flatten() {
            let name = item.file_name();
            let name = name.to_string_lossy();
            let temp = name.starts_with('.') && name.ends_with(".part");
            let scratch = name.starts_with(".fetch-");
            if !temp && !scratch {
                continue;
            }
            let old = item
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| now.duration_since(t).ok())
                .is_some_and(|age| age > STALE_AFTER);
            if old {
                let path = item.path();
                let _ = if scratch { std::fs::remove_dir_all(path) } else { std::fs::remove_file(path) };
            }
        }
    }

    /// Fills the entry from `fill`, which writes the model's bytes in order. The bytes go to a temp
    /// file next to the entry; only if they have the entry's exact size and sha256 is the temp file
    /// synced and renamed into place. On any failure the temp file is removed.
    pub(crate) fn install(
        &self,
        entry: &ModelEntry,
        progress: &dyn ModelProgress,
        fill: impl FnOnce(&mut dyn Write) -> Result<(), SourceError>,
    ) -> Result<PathBuf, InstallError> {
        let cache_err = |action, e| InstallError::Cache(ModelError::io(action, &self.dir, e));
        std::fs::create_dir_all(&self.dir).map_err(|e| cache_err("create the cache directory", e))?;
        let prefix = format!(".{}.", entry.id);
        let mut builder = tempfile::Builder::new();
        builder.prefix(&prefix).suffix(".part");
        // Temp files are private by default; a cache entry is an ordinary file like any download.
        #[cfg(unix)]
        builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644));
        let temp = builder.tempfile_in(&self.dir).map_err(|e| cache_err("create a temp file in", e))?;
        let file = temp.reopen().map_err(|e| cache_err("open a temp file in", e))?;
        let mut writer = HashingWriter::new(BufWriter::with_capacity(1 << 20, file), entry.size, progress);
        let filled = fill(&mut writer);
        if writer.overflowed() {
            return Err(InstallError::Source(SourceError::TooLong { expected_size: entry.size }));
        }
        filled.map_err(InstallError::Source)?;
        let (buffered, size, sha256) =
            writer.finish().map_err(|e| InstallError::Cache(ModelError::io("write", temp.path(), e)))?;
        if size != entry.size || sha256 != entry.sha256 {
            return Err(InstallError::Source(SourceError::WrongBytes {
                size,
                sha256,
                expected_size: entry.size,
                expected_sha256: entry.sha256,
            }));
        }
        let file: File = buffered
            .into_inner()
            .map_err(|e| InstallError::Cache(ModelError::io("write", temp.path(), e.into_error())))?;
        file.sync_all().map_err(|e| InstallError::Cache(ModelError::io("sync", temp.path(), e)))?;
        drop(file);
        let path = self.entry_path(entry);
        temp.persist(&path)
            .map_err(|e| InstallError::Cache(ModelError::io("rename a temp file to", &path, e.error)))?;
        Ok(path)
    }
}
