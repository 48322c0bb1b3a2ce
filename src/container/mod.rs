//! The archive format: a header, independent chunks, a trailing index and a fixed-size footer.
//! FORMAT.md specifies every byte; this module is that specification as code.
//!
//! ```text
//! ┌────────┬─────────┬─────────┬─────┬─────────────────────────┬────────┐
//! │ header │ chunk 0 │ chunk 1 │ ... │ 0xFF + index (+ crc32)  │ footer │
//! └────────┴─────────┴─────────┴─────┴─────────────────────────┴────────┘
//! ```
//!
//! Every byte is covered by a CRC-32 (header, chunk header, payload, index, footer), so a flipped bit
//! anywhere is reported instead of decoded. Writing needs no seek (compressing a pipe), reading needs none
//! either (decompressing a pipe), and `list` reads only the header and the tail. Every length read from a
//! file is checked against a limit before anything is allocated for it.

mod chunk;
mod error;
mod header;
mod split;
mod stream;
mod trailer;

pub use chunk::{Chunk, ChunkKind, MAX_CHUNK_BYTES, max_coded_payload};
pub use error::FormatError;
pub use header::{FORMAT_VERSION, Header, MAGIC, MAX_CONTEXT, MAX_MODEL_ID, MIN_CONTEXT};
pub use split::{ArchivePlace, ChunkPlace, Joiner, Layout, SplitError, check_range, part_range, scan};
pub use stream::{ArchiveInfo, ArchiveReader, ArchiveWriter, read_archives, read_tail};
pub use trailer::{FOOTER_LEN, FOOTER_MAGIC, Footer, IndexEntry};

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
