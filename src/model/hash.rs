//! sha256 of model files: hex text, hashing a mapped file (so the bytes that were hashed are the very
//! bytes the engine then reads, and the file is read once), streamed hashing of files that are only
//! copied, and a writer that hashes and counts what passes through it, so a fetched file is verified
//! from the very bytes that were written to disk.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;

use memmap2::Mmap;
use sha2::{Digest, Sha256};

use super::progress::ModelProgress;

/// Reads in blocks of this size: large enough that hashing runs at memory speed, small enough that
/// memory stays flat for multi-gigabyte models.
const BLOCK: usize = 1 << 20;

/// Lowercase hex of a digest, the form `sha256sum` prints and the registry stores.
pub fn to_hex(digest: &[u8; 32]) -> String {
    crate::hex::encode(digest)
}

/// Parses exactly 64 lowercase hex digits (uppercase is refused so the registry has one spelling).
pub fn parse_hex(text: &str) -> Option<[u8; 32]> {
    crate::hex::decode(text)
}

/// Maps `path` read-only.
pub fn map_file(path: &Path) -> io::Result<Mmap> {
    let file = File::open(path)?;
    // SAFETY: the map is read-only. Another process truncating or rewriting the file while it is
    // mapped could change what we read; llmzip's cache never rewrites a file in place (entries are
    // replaced by rename), and a user-supplied file is the user's to keep still.
    unsafe { Mmap::map(&file) }
}

/// sha256 of `bytes`, in blocks so that `progress` advances as it goes.
pub fn hash_bytes(bytes: &[u8], progress: &dyn ModelProgress) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for block in bytes.chunks(BLOCK) {
        hasher.update(block);
        progress.inc(block.len() as u64);
    }
    hasher.finalize().into()
}

/// Maps `path` and hashes the mapped bytes: the caller keeps the map, so whatever reads the file next
/// (the GGUF parser, the engine) reads exactly the bytes whose sha256 was checked, without reading the
/// file a second time.
pub fn map_and_hash(path: &Path, progress: &dyn ModelProgress) -> io::Result<(Mmap, [u8; 32])> {
    let map = map_file(path)?;
    let sha256 = hash_bytes(&map, progress);
    Ok((map, sha256))
}

/// Size and sha256 of a file, streamed (never the whole file in memory). Advances `progress` by the
/// bytes read; the caller sets its length and message.
pub fn hash_file(path: &Path, progress: &dyn ModelProgress) -> io::Result<(u64, [u8; 32])> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; BLOCK];
    let mut total = 0u64;
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        total += n as u64;
        progress.inc(n as u64);
    }
    Ok((total, hasher.finalize().into()))
}

/// A writer that hashes and counts every byte it forwards, and refuses to grow past `limit` bytes so a
/// source delivering the wrong file cannot fill the disk.
pub(crate) struct HashingWriter<'p, W: Write> {
    inner: W,
    hasher: Sha256,
    /// Bytes forwarded to `inner` so far. Invariant: `written <= limit`.
    written: u64,
    limit: u64,
    /// Set once a write would have passed `limit`; the source then delivered a different file.
    overflowed: bool,
    progress: &'p dyn ModelProgress,
}

impl<'p, W: Write> HashingWriter<'p, W> {
    pub(crate) fn new(inner: W, limit: u64, progress: &'p dyn ModelProgress) -> Self {
        HashingWriter { inner, hasher: Sha256::new(), written: 0, limit, overflowed: false, progress }
    }

    pub(crate) fn overflowed(&self) -> bool {
        self.overflowed
    }

    /// Flushes and returns the inner writer with the size and digest of everything written.
    pub(crate) fn finish(mut self) -> io::Result<(W, u64, [u8; 32])> {
        self.inner.flush()?;
        Ok((self.inner, self.written, self.hasher.finalize().into()))
    }
}

impl<W: Write> Write for HashingWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.written + buf.len() as u64 > self.limit {
            self.overflowed = true;
            return Err(io::Error::other(format!(
                "source delivered more than the expected {} bytes",
                self.limit
            )));
        }
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        self.progress.inc(n as u64);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::progress::NoModelProgress;

    #[test]
    fn hex_round_trip_and_rejections() {
        let d: [u8; 32] = std::array::from_fn(|i| (i * 37) as u8);
        assert_eq!(parse_hex(&to_hex(&d)), Some(d));
        assert_eq!(parse_hex(&to_hex(&d)[..62]), None);
        assert_eq!(parse_hex(&to_hex(&d).to_uppercase()), None);
        assert_eq!(parse_hex(&"g".repeat(64)), None);
    }

    #[test]
    fn a_mapped_file_hashes_like_a_streamed_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let bytes: Vec<u8> = (0..3 * BLOCK + 17).map(|i| (i * 31 % 251) as u8).collect();
        std::fs::write(&path, &bytes).unwrap();
        let (map, mapped) = map_and_hash(&path, &NoModelProgress).unwrap();
        assert_eq!(&map[..], &bytes[..]);
        assert_eq!(hash_file(&path, &NoModelProgress).unwrap(), (bytes.len() as u64, mapped));
    }

    #[test]
    fn writer_hashes_like_sha256_and_stops_at_the_limit() {
        let mut w = HashingWriter::new(Vec::new(), 3, &NoModelProgress);
        w.write_all(b"abc").unwrap();
        let (out, n, d) = w.finish().unwrap();
        assert_eq!((out.as_slice(), n), (&b"abc"[..], 3));
        assert_eq!(to_hex(&d), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        let mut w = HashingWriter::new(Vec::new(), 3, &NoModelProgress);
        assert!(w.write_all(b"abcd").is_err());
        assert!(w.overflowed());
    }
}
