//! Output files that appear complete or not at all.
//!
//! Data is written to a temp file in the target's directory (same filesystem, so the final rename is
//! atomic), named `.NAME.tmp-PID-N` so it is hidden, recognisable and unique. [`AtomicFile::commit`]
//! flushes, fsyncs and renames it onto the target; dropping an uncommitted file removes it, and the
//! Ctrl-C handler in [`super::cleanup`] removes it if the process is interrupted.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use super::cleanup;

/// Buffer in front of the temp file: large enough that the pipeline's small writes cost no syscall.
const BUFFER: usize = 256 * 1024;

/// Longest file name (in bytes) embedded in a temp name; longer names fall back to a generic one so the
/// temp name stays under the usual 255-byte limit.
const MAX_EMBEDDED_NAME: usize = 200;

pub struct AtomicFile {
    /// Where the data ends up on commit.
    target: PathBuf,
    /// The temp file. Registered in [`cleanup`] under `id` until committed or removed.
    temp: PathBuf,
    id: u64,
    /// `None` only after commit or while dropping.
    writer: Option<BufWriter<File>>,
}

impl AtomicFile {
    /// Creates the temp file for `target`. `private`: create it readable by the owner only (for output
    /// that will receive the input's permissions at the end, so a private input is never exposed while
    /// being written); otherwise the usual 0666 minus umask.
    pub fn create(target: &Path, private: bool) -> io::Result<Self> {
        let name = target.file_name().ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, format!("{} does not name a file", target.display()))
        })?;
        let dir = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let embedded: &std::ffi::OsStr =
            if name.len() <= MAX_EMBEDDED_NAME { name } else { std::ffi::OsStr::new("llmzip") };

        let mut attempts = 0;
        loop {
            let id = cleanup::next_id();
            let mut temp_name = OsString::from(".");
            temp_name.push(embedded);
            temp_name.push(format!(".tmp-{}-{id}", std::process::id()));
            let temp = dir.join(temp_name);

            let mut options = OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(if private { 0o600 } else { 0o666 });
            }
            #[cfg(not(unix))]
            let _ = private;

            // Create and register under the lock: the interrupt handler never sees a temp file that
            // exists on disk but not in the registry.
            let mut live = cleanup::lock();
            match options.open(&temp) {
                Ok(file) => {
                    live.insert(id, temp.clone());
                    drop(live);
                    let writer = Some(BufWriter::with_capacity(BUFFER, file));
                    return Ok(AtomicFile { target: target.to_owned(), temp, id, writer });
                }
                // A leftover from a crashed run with the same pid: pick another number.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempts < 100 => attempts += 1,
                Err(e) => return Err(e),
            }
        }
    }

    pub fn target(&self) -> &Path {
        &self.target
    }

    pub fn temp_path(&self) -> &Path {
        &self.temp
    }

    /// The temp file, after flushing the buffer: for setting permissions and times at the end.
    pub fn file(&mut self) -> io::Result<&File> {
        let writer = self.writer.as_mut().expect("writer present until commit");
        writer.flush()?;
        Ok(writer.get_ref())
    }

    /// Flushes, fsyncs and moves the temp file onto the target.
    ///
    /// With `overwrite` false an existing target is never replaced, even one that appeared after the
    /// caller checked: the file is hard-linked into place (which fails if the name exists) and the temp
    /// name removed; the error then has kind [`io::ErrorKind::AlreadyExists`]. With `overwrite` the
    /// rename replaces the target atomically. On error the temp file is removed.
    pub fn commit(mut self, overwrite: bool) -> io::Result<()> {
        let writer = self.writer.take().expect("writer present until commit");
        let file = writer.into_inner().map_err(|e| naming(&self.target, e.into_error()))?;
        // Without this a crash shortly after the rename can leave an empty file under the final name
        // on filesystems with delayed allocation, and with --rm the input would already be gone.
        file.sync_all().map_err(|e| naming(&self.target, e))?;
        drop(file);

        let mut live = cleanup::lock();
        if overwrite {
            std::fs::rename(&self.temp, &self.target)?;
        } else {
            match std::fs::hard_link(&self.temp, &self.target) {
                Ok(()) => {
                    // The data is complete under the target name now; failing to remove the temp name
                    // would only leave a second name for the same bytes.
                    let _ = std::fs::remove_file(&self.temp);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Err(e),
                // Filesystems without hard links: check, then rename (not race-free, but the best left).
                Err(_) => {
                    if std::fs::symlink_metadata(&self.target).is_ok() {
                        return Err(io::Error::new(
                            io::ErrorKind::AlreadyExists,
                            format!("{} already exists", self.target.display()),
                        ));
                    }
                    std::fs::rename(&self.temp, &self.target)?;
                }
            }
        }
        live.remove(&self.id);
        drop(live);
        sync_dir(self.target.parent());
        Ok(())
    }
}

/// Makes a rename durable. Best effort: some platforms and filesystems cannot fsync a directory, and
/// the data itself is already synced.
fn sync_dir(dir: Option<&Path>) {
    let dir = match dir {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// `e` with the output file named: a failed write (disk full, quota, I/O error) otherwise reaches the
/// user as a bare "No space left on device" after the input's name, which reads as if the input were
/// at fault. The kind is kept; the OS's own text is kept once.
fn naming(target: &Path, e: io::Error) -> io::Error {
    let mut text = e.to_string();
    if let Some(code) = e.raw_os_error()
        && let Some(stripped) = text.strip_suffix(&format!(" (os error {code})"))
    {
        text = stripped.to_owned();
    }
    io::Error::new(e.kind(), format!("cannot write {}: {text}", target.display()))
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let r = self.writer.as_mut().expect("writer present until commit").write(buf);
        r.map_err(|e| naming(&self.target, e))
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        let r = self.writer.as_mut().expect("writer present until commit").write_all(buf);
        r.map_err(|e| naming(&self.target, e))
    }

    fn flush(&mut self) -> io::Result<()> {
        let r = self.writer.as_mut().expect("writer present until commit").flush();
        r.map_err(|e| naming(&self.target, e))
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        // Discard buffered bytes instead of flushing them into a file that is about to be removed.
        if let Some(writer) = self.writer.take() {
            let (file, _unwritten) = writer.into_parts();
            drop(file);
        }
        let mut live = cleanup::lock();
        if live.remove(&self.id).is_some() {
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names_in(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn temp_file_is_hidden_next_to_the_target_and_registered() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.lz");
        let f = AtomicFile::create(&target, true).unwrap();
        let temp = f.temp_path().to_owned();
        assert_eq!(temp.parent(), Some(dir.path()));
        let name = temp.file_name().unwrap().to_str().unwrap();
        assert!(name.starts_with(".out.lz.tmp-"), "{name}");
        assert!(name.contains(&format!("-{}-", std::process::id())), "{name}");
        assert!(temp.exists());
        assert!(cleanup::live_paths().contains(&temp));
        drop(f);
        assert!(!cleanup::live_paths().contains(&temp));
    }

    #[test]
    fn drop_without_commit_removes_the_temp_file_and_leaves_no_target() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.lz");
        let mut f = AtomicFile::create(&target, false).unwrap();
        f.write_all(&[7; 1000]).unwrap();
        f.file().unwrap();
        drop(f);
        assert!(names_in(dir.path()).is_empty(), "{:?}", names_in(dir.path()));
    }

    #[test]
    fn commit_moves_complete_data_onto_the_target() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.lz");
        let mut f = AtomicFile::create(&target, false).unwrap();
        let data: Vec<u8> = (0..600_000u32).map(|i| (i % 251) as u8).collect();
        f.write_all(&data).unwrap();
        let temp = f.temp_path().to_owned();
        f.commit(false).unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), data);
        assert_eq!(names_in(dir.path()), vec!["out.lz"]);
        assert!(!cleanup::live_paths().contains(&temp));
    }

    #[test]
    fn commit_without_overwrite_refuses_a_target_that_appeared_meanwhile() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.lz");
        let mut f = AtomicFile::create(&target, false).unwrap();
        f.write_all(b"new").unwrap();
        std::fs::write(&target, b"old").unwrap();
        let err = f.commit(false).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&target).unwrap(), b"old");
        assert_eq!(names_in(dir.path()), vec!["out.lz"]);
    }

    #[test]
    fn commit_with_overwrite_replaces_the_target() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.lz");
        std::fs::write(&target, b"old old old").unwrap();
        let mut f = AtomicFile::create(&target, false).unwrap();
        f.write_all(b"new").unwrap();
        f.commit(true).unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"new");
        assert_eq!(names_in(dir.path()), vec!["out.lz"]);
    }

    #[test]
    fn failed_commit_removes_the_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("sub");
        std::fs::create_dir(&target).unwrap();
        std::fs::write(target.join("keep"), b"x").unwrap();
        let mut f = AtomicFile::create(&target, false).unwrap();
        f.write_all(b"data").unwrap();
        let temp = f.temp_path().to_owned();
        assert!(f.commit(true).is_err());
        assert!(!temp.exists());
        assert!(!cleanup::live_paths().contains(&temp));
        assert_eq!(names_in(dir.path()), vec!["sub"]);
    }

    #[test]
    fn relative_target_without_directory_uses_the_current_one() {
        // Only the temp path is computed here; nothing is created in the working directory.
        let dir = tempfile::tempdir().unwrap();
        let f = AtomicFile::create(&dir.path().join("x"), false).unwrap();
        assert!(f.temp_path().starts_with(dir.path()));
        assert_eq!(
            AtomicFile::create(Path::new(".."), false).err().map(|e| e.kind()),
            Some(io::ErrorKind::InvalidInput)
        );
    }

    #[test]
    fn very_long_names_get_a_generic_temp_name() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("n".repeat(250));
        let f = AtomicFile::create(&target, false).unwrap();
        let name = f.temp_path().file_name().unwrap().to_str().unwrap().to_owned();
        assert!(name.starts_with(".llmzip.tmp-") && name.len() < 255, "{name}");
    }

    #[cfg(unix)]
    #[test]
    fn private_temp_files_are_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let f = AtomicFile::create(&dir.path().join("p"), true).unwrap();
        let mode = std::fs::metadata(f.temp_path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    /// Regression: a full disk named neither the output file nor said it once ("No space left on device
    /// (os error 28): No space left on device"). /dev/full fails every write with ENOSPC.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_failed_write_names_the_output_once() {
        let mut f = AtomicFile::create(Path::new("/tmp/llmzip-atomic-test-target"), false).unwrap();
        // Point the writer at /dev/full: every write fails as on a full disk.
        let full = OpenOptions::new().write(true).open("/dev/full").unwrap();
        f.writer = Some(BufWriter::with_capacity(4, full));
        let err = f.write_all(&[0u8; 64]).and_then(|()| f.flush()).unwrap_err();
        let msg = err.to_string();
        assert_eq!(err.kind(), io::ErrorKind::StorageFull, "{msg}");
        assert_eq!(msg, "cannot write /tmp/llmzip-atomic-test-target: No space left on device");
        assert!(std::error::Error::source(&err).is_none(), "the cause is in the text, once");
    }
}
