//! sha256 of model files: hex text, streamed file hashing, and a writer that hashes and counts what
//! passes through it, so a fetched file is verified from the very bytes that were written to disk.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;

use indicatif::ProgressBar;
use sha2::{Digest, Sha256};

/// Reads in blocks of this size: large enough that hashing runs at memory speed, small enough that
/// memory stays flat for multi-gigabyte models.
const BLOCK: usize = 1 << 20;

/// Lowercase hex of a digest, the form `sha256sum` prints and the registry stores.
pub fn to_hex(digest: &[u8; 32]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses exactly 64 lowercase hex digits (uppercase is refused so the registry has one spelling).
pub fn parse_hex(text: &str) -> Option<[u8; 32]> {
    let bytes = text.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        out[i] = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}

/// Size and sha256 of a file, streamed (never the whole file in memory). Advances `progress` by the
/// bytes read; the caller sets its length and message.
pub fn hash_file(path: &Path, progress: &ProgressBar) -> io::Result<(u64, [u8; 32])> {
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
pub(crate) struct HashingWriter<W: Write> {
    inner: W,
    hasher: Sha256,
    /// Bytes forwarded to `inner` so far. Invariant: `written <= limit`.
    written: u64,
    limit: u64,
    /// Set once a write would have passed `limit`; the source then delivered a different file.
    overflowed: bool,
    progress: ProgressBar,
}

impl<W: Write> HashingWriter<W> {
    pub(crate) fn new(inner: W, limit: u64, progress: ProgressBar) -> Self {
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

impl<W: Write> Write for HashingWriter<W> {
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

    #[test]
    fn hex_round_trip_and_rejections() {
        let d: [u8; 32] = std::array::from_fn(|i| (i * 37) as u8);
        assert_eq!(parse_hex(&to_hex(&d)), Some(d));
        assert_eq!(parse_hex(&to_hex(&d)[..62]), None);
        assert_eq!(parse_hex(&to_hex(&d).to_uppercase()), None);
        assert_eq!(parse_hex(&"g".repeat(64)), None);
    }

    #[test]
    fn writer_hashes_like_sha256_and_stops_at_the_limit() {
        let mut w = HashingWriter::new(Vec::new(), 3, ProgressBar::hidden());
        w.write_all(b"abc").unwrap();
        let (out, n, d) = w.finish().unwrap();
        assert_eq!((out.as_slice(), n), (&b"abc"[..], 3));
        assert_eq!(to_hex(&d), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        let mut w = HashingWriter::new(Vec::new(), 3, ProgressBar::hidden());
        assert!(w.write_all(b"abcd").is_err());
        assert!(w.overflowed());
    }
}
