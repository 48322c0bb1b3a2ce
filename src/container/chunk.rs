//! One independently coded piece of the input.
//!
//! ```text
//! size  field
//! 1     kind: 0 = stored, 1 = model-coded  (0xFF instead marks the end of the chunks)
//! 4     original length in bytes (u32 LE), 1..=16 MiB
//! 4     tokens (u32 LE): 0 for stored, >= 1 for coded
//! 4     payload length (u32 LE): stored = original length; coded <= 4 * tokens + 16
//! 4     CRC-32 of the original bytes
//! 4     CRC-32 of the 17 bytes above
//! n     payload: the original bytes (stored) or the range coder's words (coded)
//! 4     CRC-32 of the payload
//! ```

use std::io::Read;

use super::{Fields, FormatError, read_exact_or};

/// Largest chunk, in original bytes: bounds the memory a chunk needs (and what a header may claim).
pub const MAX_CHUNK_BYTES: u32 = 16 << 20;

/// Bytes of a chunk header (kind through its CRC).
pub(crate) const CHUNK_HEADER_LEN: usize = 21;

/// Largest payload a coded chunk of `tokens` tokens can have: a symbol costs at most 24 bits (every
/// frequency is at least 1 in 2^24), plus the coder's final state.
pub fn max_coded_payload(tokens: u32) -> u64 {
    4 * tokens as u64 + 16
}

/// Most tokens an original byte count can produce (each byte at worst an escape of three tokens).
fn max_tokens(original_len: u32) -> u64 {
    3 * original_len as u64
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChunkKind {
    /// The payload is the original bytes (the model did not make them smaller).
    Stored,
    /// The payload is range-coded tokens.
    Coded,
}

impl ChunkKind {
    pub(crate) fn byte(self) -> u8 {
        match self {
            ChunkKind::Stored => 0,
            ChunkKind::Coded => 1,
        }
    }

    pub(crate) fn from_byte(b: u8) -> Option<Self> {
        match b {
            0 => Some(ChunkKind::Stored),
            1 => Some(ChunkKind::Coded),
            _ => None,
        }
    }
}

/// A chunk as read from an archive; its checksums are verified, its payload not yet decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chunk {
    pub kind: ChunkKind,
    pub original_len: u32,
    pub tokens: u64,
    pub original_crc32: u32,
    pub payload: Vec<u8>,
}

impl Chunk {
    /// Bytes this chunk occupies in the archive.
    pub fn encoded_len(&self) -> usize {
        CHUNK_HEADER_LEN + self.payload.len() + 4
    }

    /// The chunk header bytes for these fields, CRC included.
    pub(crate) fn header_bytes(kind: ChunkKind, original: &[u8], tokens: u32, payload_len: u32) -> [u8; 21] {
        let mut b = [0u8; CHUNK_HEADER_LEN];
        b[0] = kind.byte();
        b[1..5].copy_from_slice(&(original.len() as u32).to_le_bytes());
        b[5..9].copy_from_slice(&tokens.to_le_bytes());
        b[9..13].copy_from_slice(&payload_len.to_le_bytes());
        b[13..17].copy_from_slice(&crc32fast::hash(original).to_le_bytes());
        let crc = crc32fast::hash(&b[..17]);
        b[17..21].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Reads the rest of chunk `index` after its kind byte: validates the header (checksum first, then
    /// every length against its limit) before reading the payload, which is read incrementally so a
    /// truncated file never makes us allocate what its header claims.
    pub(crate) fn read_after_kind(
        r: &mut impl Read,
        kind_byte: u8,
        index: u64,
    ) -> Result<Chunk, FormatError> {
        let ChunkHead { kind, original_len, tokens, payload_len, original_crc32 } =
            ChunkHead::read_after_kind(r, kind_byte, index)?;
        let mut payload = Vec::new();
        let got = r.by_ref().take(payload_len as u64).read_to_end(&mut payload)?;
        if got < payload_len as usize {
            return Err(FormatError::Truncated {
                place: format!("inside chunk {index}'s payload ({} of {payload_len} bytes present)", got),
            });
        }
        let mut crc = [0u8; 4];
        read_exact_or(r, &mut crc, || format!("before chunk {index}'s payload checksum"))?;
        let stored = u32::from_le_bytes(crc);
        let computed = crc32fast::hash(&payload);
        if stored != computed {
            return Err(FormatError::Checksum { place: format!("chunk {index} payload"), stored, computed });
        }
        Ok(Chunk { kind, original_len, tokens: tokens as u64, original_crc32, payload })
    }

    /// Checks decoded bytes against the chunk's original length and CRC-32.
    pub fn verify_original(&self, index: u64, bytes: &[u8]) -> Result<(), FormatError> {
        if bytes.len() != self.original_len as usize {
            return Err(FormatError::chunk(
                index,
                format!("decoded to {} bytes, expected {}", bytes.len(), self.original_len),
            ));
        }
        let computed = crc32fast::hash(bytes);
        if computed != self.original_crc32 {
            return Err(FormatError::Checksum {
                place: format!("chunk {index} decoded content"),
                stored: self.original_crc32,
                computed,
            });
        }
        Ok(())
    }
}

/// A chunk header's fields, checked (CRC first, then every length against its limit): what the tools
/// that copy chunks without decoding them (split, join, the chunk table) need to know of a chunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ChunkHead {
    pub kind: ChunkKind,
    pub original_len: u32,
    pub tokens: u32,
    pub payload_len: u32,
    pub original_crc32: u32,
}

impl ChunkHead {
    /// Reads and checks the rest of chunk `index`'s header after its kind byte; the payload is not read.
    pub(crate) fn read_after_kind(
        r: &mut impl Read,
        kind_byte: u8,
        index: u64,
    ) -> Result<ChunkHead, FormatError> {
        let mut head = [0u8; CHUNK_HEADER_LEN];
        head[0] = kind_byte;
        read_exact_or(r, &mut head[1..], || format!("inside chunk {index}'s header"))?;
        let stored = u32::from_le_bytes(head[17..21].try_into().expect("4 bytes"));
        let computed = crc32fast::hash(&head[..17]);
        if stored != computed {
            return Err(FormatError::Checksum { place: format!("chunk {index} header"), stored, computed });
        }
        let kind = ChunkKind::from_byte(kind_byte)
            .ok_or_else(|| FormatError::chunk(index, format!("unknown chunk kind {kind_byte}")))?;
        let mut f = Fields::new(&head[1..17]);
        let (original_len, tokens, payload_len, original_crc32) = (f.u32(), f.u32(), f.u32(), f.u32());
        validate(kind, original_len, tokens, payload_len).map_err(|what| FormatError::chunk(index, what))?;
        Ok(ChunkHead { kind, original_len, tokens, payload_len, original_crc32 })
    }

    /// Bytes the whole chunk occupies in the archive: header, payload and payload CRC.
    pub(crate) fn encoded_len(&self) -> u64 {
        CHUNK_HEADER_LEN as u64 + self.payload_len as u64 + 4
    }
}

/// The limits a chunk's lengths must respect (shared by the reader and the index check).
pub(crate) fn validate(
    kind: ChunkKind,
    original_len: u32,
    tokens: u32,
    payload_len: u32,
) -> Result<(), String> {
    if original_len == 0 || original_len > MAX_CHUNK_BYTES {
        return Err(format!("original length {original_len} is outside 1..={MAX_CHUNK_BYTES}"));
    }
    match kind {
        ChunkKind::Stored if tokens != 0 || payload_len != original_len => Err(format!(
            "stored chunk claims {tokens} tokens and a {payload_len}-byte payload for {original_len} bytes"
        )),
        ChunkKind::Coded if tokens == 0 || tokens as u64 > max_tokens(original_len) => {
            Err(format!("coded chunk claims {tokens} tokens for {original_len} bytes"))
        }
        ChunkKind::Coded if payload_len as u64 > max_coded_payload(tokens) => {
            Err(format!("coded payload of {payload_len} bytes is too long for {tokens} tokens"))
        }
        _ => Ok(()),
    }
}
