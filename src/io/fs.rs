//! The filesystem questions the planner asks (as a trait, so its tests can answer them without a
//! filesystem), their real answers, and metadata copying.

use std::fs::{File, FileTimes, Metadata};
use std::io;
use std::path::Path;

/// What a path is, as far as planning cares (a symbolic link to anything is [`PathKind::Other`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathKind {
    Missing,
    File,
    Dir,
    /// A FIFO, socket, device or symbolic link: read only with -f (as gzip does), since it may block or
    /// never end, or (a link) stand for something other than a file beside it.
    Other,
}

/// Questions about paths that the CLI's planner asks; the real answers come from
/// [`SystemPaths`], tests give fixed ones.
pub trait PathProbe {
    /// What `path` is, following symbolic links.
    fn kind(&self, path: &Path) -> PathKind;
    /// Whether anything (even a dangling symbolic link) is at `path`.
    fn exists(&self, path: &Path) -> bool;
    /// Whether both paths exist and name the same file (same device and inode on Unix).
    fn same_file(&self, a: &Path, b: &Path) -> bool;
}

/// [`PathProbe`] backed by the real filesystem.
pub struct SystemPaths;

impl PathProbe for SystemPaths {
    fn kind(&self, path: &Path) -> PathKind {
        // A symbolic link is read only with -f, as gzip does: a link to /proc/self/fd/0 or a device would
        // otherwise be compressed as a file and its NAME.lz written beside the link.
        if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
            return match std::fs::metadata(path) {
                Ok(_) => PathKind::Other,
                Err(_) => PathKind::Missing,
            };
        }
        match std::fs::metadata(path) {
            Ok(m) if m.is_file() => PathKind::File,
            Ok(m) if m.is_dir() => PathKind::Dir,
            Ok(_) => PathKind::Other,
            Err(_) => PathKind::Missing,
        }
    }

    fn exists(&self, path: &Path) -> bool {
        std::fs::symlink_metadata(path).is_ok()
    }

    fn same_file(&self, a: &Path, b: &Path) -> bool {
        let (Ok(ma), Ok(mb)) = (std::fs::metadata(a), std::fs::metadata(b)) else {
            return false;
        };
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            ma.dev() == mb.dev() && ma.ino() == mb.ino()
        }
        #[cfg(not(unix))]
        {
            let _ = (ma, mb);
            matches!((std::fs::canonicalize(a), std::fs::canonicalize(b)), (Ok(x), Ok(y)) if x == y)
        }
    }
}

/// The size of what `metadata` describes if it is a regular file: what chooses the chunk layout of a
/// compression. `None` for anything else (a pipe, a device), whose length says nothing of what it will
/// yield; such inputs are cut as a stream is.
pub fn regular_file_size(metadata: &Metadata) -> Option<u64> {
    metadata.is_file().then_some(metadata.len())
}

/// Gives `to` the permissions, modification time and access time recorded in `from` (the input's
/// metadata, taken from its open handle). Call after the last write, since writing updates the time.
pub fn copy_metadata(from: &Metadata, to: &File) -> io::Result<()> {
    let mut times = FileTimes::new();
    if let Ok(t) = from.modified() {
        times = times.set_modified(t);
    }
    if let Ok(t) = from.accessed() {
        times = times.set_accessed(t);
    }
    to.set_times(times)?;
    to.set_permissions(from.permissions())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    #[test]
    fn only_a_regular_file_has_a_size_that_chooses_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, b"12345").unwrap();
        assert_eq!(regular_file_size(&std::fs::metadata(&f).unwrap()), Some(5));
        assert_eq!(regular_file_size(&std::fs::metadata(dir.path()).unwrap()), None);
    }

    #[test]
    fn probe_tells_files_dirs_and_missing_apart() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, b"x").unwrap();
        assert_eq!(SystemPaths.kind(&f), PathKind::File);
        assert_eq!(SystemPaths.kind(dir.path()), PathKind::Dir);
        assert_eq!(SystemPaths.kind(&dir.path().join("none")), PathKind::Missing);
        assert!(SystemPaths.exists(&f));
        assert!(!SystemPaths.exists(&dir.path().join("none")));
        assert!(SystemPaths.same_file(&f, &dir.path().join(".").join("f")));
        assert!(!SystemPaths.same_file(&f, dir.path()));
        assert!(!SystemPaths.same_file(&f, &dir.path().join("none")));
    }

    #[cfg(unix)]
    #[test]
    fn probe_sees_links_and_special_files() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, b"x").unwrap();
        let hard = dir.path().join("hard");
        std::fs::hard_link(&f, &hard).unwrap();
        assert!(SystemPaths.same_file(&f, &hard));
        let dangling = dir.path().join("dangling");
        std::os::unix::fs::symlink(dir.path().join("nowhere"), &dangling).unwrap();
        assert!(SystemPaths.exists(&dangling));
        assert_eq!(SystemPaths.kind(&dangling), PathKind::Missing);
        assert_eq!(SystemPaths.kind(Path::new("/dev/null")), PathKind::Other);
    }

    #[cfg(unix)]
    #[test]
    fn metadata_copy_sets_mode_and_times() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::write(&src, b"x").unwrap();
        let past = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        let h = File::options().write(true).open(&src).unwrap();
        h.set_modified(past).unwrap();
        h.set_permissions(std::fs::Permissions::from_mode(0o640)).unwrap();
        drop(h);
        let dst = File::create(dir.path().join("dst")).unwrap();
        copy_metadata(&std::fs::metadata(&src).unwrap(), &dst).unwrap();
        let m = std::fs::metadata(dir.path().join("dst")).unwrap();
        assert_eq!(m.permissions().mode() & 0o777, 0o640);
        assert_eq!(m.modified().unwrap(), past);
    }
}
