//! The end of an archive, after its last chunk: a marker no chunk kind uses, the chunk count and the
//! whole content's CRC-32, so a reader knows no chunk was lost, added or moved.
//!
//! Version 3 (compact): the [`Trailer`].
//! ```text
//! size  field
//! 1     0xFF (end of chunks)
//! var   chunk count (varint)
//! 4     CRC-32 of the whole original content
//! 4     CRC-32 of the bytes above, marker included
//! ```
//! Versions 1 and 2 (indexed) repeat every chunk's fields in an index and end in a fixed-size footer,
//! which let a lister read the tail alone; a lister now walks the chunk headers instead, which costs
//! one small read a chunk and saves 13 bytes a chunk and 32 an archive.
//!
//! Index:
//! ```text
//! size        field
//! 1           0xFF (end of chunks)
//! 8           chunk count (u64 LE)
//! 13 x count  per chunk: kind u8, original length u32, payload length u32, tokens u32 (LE)
//! 4           CRC-32 of the bytes above, marker included
//! ```
//! Footer (always the last 32 bytes):
//! ```text
//! offset  size  field
//! 0       8     total original length (u64 LE)
//! 8       8     chunk count (u64 LE)
//! 16      4     CRC-32 of the whole original content
//! 20      4     index length in bytes, marker and CRC included (u32 LE) = 13 + 13 x count
//! 24      4     CRC-32 of bytes 0..24
//! 28      4     "LMZE"
//! ```

use std::io::Read;

use super::chunk::{ChunkKind, validate};
use super::{Fields, FormatError, Recorder, put_varint};

pub const FOOTER_LEN: usize = 32;
pub const FOOTER_MAGIC: [u8; 4] = *b"LMZE";
pub(crate) const END_MARKER: u8 = 0xFF;
pub(crate) const ENTRY_LEN: usize = 13;

/// One chunk as the index describes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexEntry {
    pub kind: ChunkKind,
    pub original_len: u32,
    pub payload_len: u32,
    pub tokens: u32,
}

/// Index length for `count` chunks.
pub(crate) fn index_len(count: u64) -> u64 {
    13 + ENTRY_LEN as u64 * count
}

pub(crate) fn encode_index(entries: &[IndexEntry]) -> Vec<u8> {
    let mut b = Vec::with_capacity(index_len(entries.len() as u64) as usize);
    b.push(END_MARKER);
    b.extend_from_slice(&(entries.len() as u64).to_le_bytes());
    for e in entries {
        b.push(e.kind.byte());
        b.extend_from_slice(&e.original_len.to_le_bytes());
        b.extend_from_slice(&e.payload_len.to_le_bytes());
        b.extend_from_slice(&e.tokens.to_le_bytes());
    }
    let crc = crc32fast::hash(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    b
}

/// Parses a whole index (marker through CRC), at least [`index_len`]`(0)` bytes long; its count must agree
/// with its length.
pub(crate) fn decode_index(bytes: &[u8]) -> Result<Vec<IndexEntry>, FormatError> {
    let body = bytes.len() - 4;
    let stored = u32::from_le_bytes(bytes[body..].try_into().expect("4 bytes"));
    let computed = crc32fast::hash(&bytes[..body]);
    if stored != computed {
        return Err(FormatError::Checksum { place: "index".into(), stored, computed });
    }
    let mut f = Fields::new(&bytes[1..body]);
    let count = f.u64();
    // The count inside the index is believed only if it matches the index's own length: a CRC-valid
    // index whose count disagrees must not size an allocation or a loop.
    let room = (bytes.len() as u64 - index_len(0)) / ENTRY_LEN as u64;
    if count != room || index_len(room) != bytes.len() as u64 {
        return Err(FormatError::Index(format!(
            "it lists {count} chunks but its {} bytes hold {room}",
            bytes.len()
        )));
    }
    let mut entries = Vec::with_capacity(count as usize);
    for i in 0..count {
        let kind = ChunkKind::from_byte(f.u8())
            .ok_or_else(|| FormatError::Index(format!("entry {i} has an unknown kind")))?;
        let e = IndexEntry { kind, original_len: f.u32(), payload_len: f.u32(), tokens: f.u32() };
        validate(e.kind, e.original_len, e.tokens, e.payload_len)
            .map_err(|w| FormatError::Index(format!("entry {i}: {w}")))?;
        entries.push(e);
    }
    Ok(entries)
}

/// The last 32 bytes of an archive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Footer {
    pub total_original: u64,
    pub chunk_count: u64,
    pub content_crc32: u32,
    pub index_len: u32,
}

impl Footer {
    pub(crate) fn to_bytes(self) -> [u8; FOOTER_LEN] {
        let mut b = [0u8; FOOTER_LEN];
        b[0..8].copy_from_slice(&self.total_original.to_le_bytes());
        b[8..16].copy_from_slice(&self.chunk_count.to_le_bytes());
        b[16..20].copy_from_slice(&self.content_crc32.to_le_bytes());
        b[20..24].copy_from_slice(&self.index_len.to_le_bytes());
        let crc = crc32fast::hash(&b[..24]);
        b[24..28].copy_from_slice(&crc.to_le_bytes());
        b[28..32].copy_from_slice(&FOOTER_MAGIC);
        b
    }

    /// Parses and checks a footer: magic, CRC, then that the index length matches the chunk count.
    pub(crate) fn from_bytes(b: &[u8; FOOTER_LEN]) -> Result<Footer, FormatError> {
        if b[28..32] != FOOTER_MAGIC {
            return Err(FormatError::Footer("the footer magic \"LMZE\" is missing".into()));
        }
        let stored = u32::from_le_bytes(b[24..28].try_into().expect("4 bytes"));
        let computed = crc32fast::hash(&b[..24]);
        if stored != computed {
            return Err(FormatError::Checksum { place: "footer".into(), stored, computed });
        }
        let mut f = Fields::new(&b[..24]);
        let footer = Footer {
            total_original: f.u64(),
            chunk_count: f.u64(),
            content_crc32: f.u32(),
            index_len: f.u32(),
        };
        if footer.chunk_count > u32::MAX as u64 / ENTRY_LEN as u64
            || footer.index_len as u64 != index_len(footer.chunk_count)
        {
            return Err(FormatError::Footer(format!(
                "index length {} does not fit {} chunks",
                footer.index_len, footer.chunk_count
            )));
        }
        Ok(footer)
    }
}

/// The end of a version-3 archive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Trailer {
    pub chunk_count: u64,
    pub content_crc32: u32,
}

impl Trailer {
    pub(crate) fn to_bytes(self) -> Vec<u8> {
        let mut b = vec![END_MARKER];
        put_varint(&mut b, self.chunk_count);
        b.extend_from_slice(&self.content_crc32.to_le_bytes());
        let crc = crc32fast::hash(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        b
    }

    /// Reads a trailer after its marker (already read): its fields, then its CRC. Returns it and its
    /// length, marker included.
    pub(crate) fn read_after_marker(r: &mut impl Read) -> Result<(Trailer, usize), FormatError> {
        let place = || "inside the trailer".to_string();
        let mut rec = Recorder::new(r, &[END_MARKER]);
        let chunk_count = rec.varint("its chunk count", u64::MAX, &place, &|w| FormatError::Trailer(w))?;
        let content_crc32 = u32::from_le_bytes(rec.take(4, &place)?.try_into().expect("4 bytes"));
        let computed = crc32fast::hash(&rec.bytes);
        let stored = u32::from_le_bytes(rec.take(4, &place)?.try_into().expect("4 bytes"));
        if stored != computed {
            return Err(FormatError::Checksum { place: "trailer".into(), stored, computed });
        }
        Ok((Trailer { chunk_count, content_crc32 }, rec.bytes.len()))
    }
}
