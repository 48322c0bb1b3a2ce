//! The process-wide list of temp files that are not yet committed, and the Ctrl-C handler that
//! removes them.
//!
//! Ctrl-C (SIGINT), SIGTERM and SIGHUP must never leave a half-written file behind (ARCHITECTURE.md
//! section 6). The `ctrlc` crate runs our handler on an ordinary thread, so it may take the same mutex
//! as the code creating and committing temp files. Every change to the set of temp files on disk
//! happens while that mutex is held, which gives the handler a consistent picture: a file is either
//! still temporary (and removed) or already committed under its final name (and kept).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

/// Exit status after an interrupt: 128 + SIGINT, as shells report it.
pub const EXIT_INTERRUPTED: i32 = 130;

/// Temp files on disk that are not committed, by registration id.
///
/// Invariant: a path is in this map exactly while a file created by [`crate::io::AtomicFile`] exists
/// there and has not been renamed onto its target; both sides of that change happen under the lock.
static LIVE: Mutex<BTreeMap<u64, PathBuf>> = Mutex::new(BTreeMap::new());

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// The registry, locked. A panic elsewhere while holding it leaves the map itself valid, so a
/// poisoned lock is simply taken over.
pub(crate) fn lock() -> MutexGuard<'static, BTreeMap<u64, PathBuf>> {
    LIVE.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A fresh id, unique within this process (also used to make temp file names unique).
pub(crate) fn next_id() -> u64 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

/// The temp files currently registered (for tests and diagnostics).
pub fn live_paths() -> Vec<PathBuf> {
    lock().values().cloned().collect()
}

/// Removes every registered temp file. Holding the lock for the whole removal means no temp file
/// can be created or committed half-way through it.
fn remove_all(live: &mut BTreeMap<u64, PathBuf>) {
    for path in live.values() {
        // Already gone is fine: the goal is that it does not exist.
        let _ = std::fs::remove_file(path);
    }
    live.clear();
}

/// Installs the handler for Ctrl-C, SIGTERM and SIGHUP: remove all temp files, then exit with
/// status [`EXIT_INTERRUPTED`]. Call once, early in `main`.
pub fn install_interrupt_handler() -> Result<(), ctrlc::Error> {
    ctrlc::set_handler(|| {
        let mut live = lock();
        remove_all(&mut live);
        // Exit while still holding the lock, so the main thread cannot create another temp file.
        std::process::exit(EXIT_INTERRUPTED);
    })
}
