//! The archive format: a header, independent chunks and an end. FORMAT.md specifies every byte; this
//! module is that specification as code.
//!
//! ```text
//! version 3 (compact, what llmzip writes):
//! ┌────────┬─────────┬─────────┬─────┬──────────────────────────────────────┐
//! │ header │ chunk 0 │ chunk 1 │ ... │ 0xFF + count + content crc32 + crc32 │
//! └────────┴─────────┴─────────┴─────┴──────────────────────────────────────┘
//! versions 1 and 2 (indexed, still read, and written by split/join of such archives):
//! ┌────────┬─────────┬─────────┬─────┬─────────────────────────┬────────┐
//! │ header │ chunk 0 │ chunk 1 │ ... │ 0xFF + index (+ crc32)  │ footer │
//! └────────┴─────────┴─────────┴─────┴─────────────────────────┴────────┘
//! ```
//!
//! Every byte is covered by a CRC-32, so a flipped bit anywhere is reported instead of decoded. Writing
//! needs no seek (compressing a pipe), reading needs none either (decompressing a pipe); `list` walks the
//! chunks from the front. Every length read from a file is checked against a limit before anything is
//! allocated for it. Version 3 exists because the framing, not the model, was most of what separated
//! a small file's archive from its ideal code length: its varint fields and one CRC per chunk take
//! 16 bytes a chunk where versions 1 and 2 take 38.

mod chunk;
mod error;
mod header;
mod split;
mod stream;
mod trailer;

pub use chunk::{Chunk, ChunkKind, MAX_CHUNK_BYTES, max_coded_payload};
pub use error::FormatError;
pub use header::{FORMAT_VERSION, Framing, Header, MAGIC, MAX_CONTEXT, MAX_MODEL_ID, MIN_CONTEXT};
pub use split::{
    ArchiveInfo, ArchivePlace, ChunkPlace, Joiner, Layout, SplitError, check_range, part_range,
    read_archives, read_tail, scan,
};
pub use stream::{ArchiveReader, ArchiveWriter};
pub use trailer::{FOOTER_LEN, FOOTER_MAGIC, Footer, IndexEntry, Trailer};

/// Reads exactly `buf.len()` bytes, reporting a short read as a truncated archive at `place`.
fn read_exact_or(
    r: &mut impl std::io::Read,
    buf: &mut [u8],
    place: impl Fn() -> String,
) -> Result<(), FormatError> {
    r.read_exact(buf).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => FormatError::Truncated { place: place() },
        _ => FormatError::Io(e),
    })
}

/// Appends `v` as an unsigned LEB128 varint: seven bits a byte, low bits first, the high bit set on
/// every byte but the last. The encoding is the shortest one, the only one a reader accepts.
pub(crate) fn put_varint(b: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        b.push(v as u8 | 0x80);
        v >>= 7;
    }
    b.push(v as u8);
}

/// A reader that keeps a copy of what it reads, so the bytes of a variable-length structure can be
/// checksummed after its fields were parsed.
pub(crate) struct Recorder<'r, R: std::io::Read> {
    r: &'r mut R,
    pub(crate) bytes: Vec<u8>,
}

impl<'r, R: std::io::Read> Recorder<'r, R> {
    /// Starts recording, with `already` (bytes the caller read before) at the front.
    pub(crate) fn new(r: &'r mut R, already: &[u8]) -> Self {
        Self { r, bytes: already.to_vec() }
    }

    /// Reads `n` bytes (`n` is a constant of the format or a length already checked against its limit).
    pub(crate) fn take(&mut self, n: usize, place: &dyn Fn() -> String) -> Result<&[u8], FormatError> {
        let at = self.bytes.len();
        self.bytes.resize(at + n, 0);
        read_exact_or(self.r, &mut self.bytes[at..], place)?;
        Ok(&self.bytes[at..])
    }

    pub(crate) fn u8(&mut self, place: &dyn Fn() -> String) -> Result<u8, FormatError> {
        Ok(self.take(1, place)?[0])
    }

    /// Reads the varint field `what` of at most `max`: at most ten bytes, in its shortest encoding; a
    /// malformed or too large value is reported through `bad`.
    pub(crate) fn varint(
        &mut self,
        what: &str,
        max: u64,
        place: &dyn Fn() -> String,
        bad: &dyn Fn(String) -> FormatError,
    ) -> Result<u64, FormatError> {
        let mut v = 0u64;
        for i in 0..10 {
            let b = self.u8(place)?;
            if i == 9 && b > 1 {
                return Err(bad(format!("{what} is a varint above 2^64")));
            }
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                if b == 0 && i > 0 {
                    return Err(bad(format!("{what} is a varint not in its shortest form")));
                }
                if v > max {
                    return Err(bad(format!("{what} {v} is above {max}")));
                }
                return Ok(v);
            }
        }
        Err(bad(format!("{what} is a varint longer than ten bytes")))
    }
}

/// Little-endian field readers over a byte slice whose length was already checked.
struct Fields<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Fields<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, at: 0 }
    }
    fn take(&mut self, n: usize) -> &'a [u8] {
        let s = &self.bytes[self.at..self.at + n];
        self.at += n;
        s
    }
    fn u8(&mut self) -> u8 {
        self.take(1)[0]
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.take(2).try_into().expect("2 bytes"))
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take(4).try_into().expect("4 bytes"))
    }
    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.take(8).try_into().expect("8 bytes"))
    }
    fn array<const N: usize>(&mut self) -> [u8; N] {
        self.take(N).try_into().expect("N bytes")
    }
}
