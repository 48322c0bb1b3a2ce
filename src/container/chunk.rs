//! One independently coded piece of the input.
//!
//! ```text
//! version 3 (compact)                       versions 1 and 2 (indexed)
//! size  field                               size  field
//! 1     kind: 0 stored, 1 coded             1     kind: 0 stored, 1 coded
//! var   original length, 1..=16 MiB         4     original length (u32 LE), 1..=16 MiB
//! var   tokens: 0 stored, >= 1 coded        4     tokens (u32 LE)
//! var   payload length                      4     payload length (u32 LE)
//! 4     CRC-32 of the original bytes        4     CRC-32 of the original bytes
//! n     payload                             4     CRC-32 of the 17 bytes above
//! 4     CRC-32 of every byte above          n     payload
//!                                           4     CRC-32 of the payload
//! ```
//!
//! (0xFF in place of the kind ends the chunks.) Stored payloads are the original bytes; a coded
//! payload holds at most `4 × tokens + 16` bytes. In version 3 the one CRC covers header and payload, so
//! the header's lengths are checked against their limits before the payload is read (incrementally:
//! a truncated file never makes us allocate what a length claims) and believed only once it matches.

use std::io::Read;

use super::header::Framing;
use super::{Fields, FormatError, Recorder, put_varint, read_exact_or};

/// Largest chunk, in original bytes: bounds the memory a chunk needs (and what a header may claim).
pub const MAX_CHUNK_BYTES: u32 = 16 << 20;

/// Bytes of an indexed chunk header (kind through its CRC).
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
    /// Bytes of its header as written (the compact header's length depends on its fields).
    header_len: usize,
}

impl Chunk {
    /// Bytes this chunk occupies in the archive.
    pub fn encoded_len(&self) -> usize {
        self.header_len + self.payload.len() + 4
    }

    /// The chunk header bytes for these fields in `framing` (for the indexed framing, its CRC included).
    pub(crate) fn header_bytes(
        framing: Framing,
        kind: ChunkKind,
        original: &[u8],
        tokens: u32,
        payload_len: u32,
    ) -> Vec<u8> {
        let original_crc = crc32fast::hash(original).to_le_bytes();
        let mut b = Vec::with_capacity(CHUNK_HEADER_LEN);
        b.push(kind.byte());
        match framing {
            Framing::Indexed => {
                for v in [original.len() as u32, tokens, payload_len] {
                    b.extend_from_slice(&v.to_le_bytes());
                }
                b.extend_from_slice(&original_crc);
                let crc = crc32fast::hash(&b);
                b.extend_from_slice(&crc.to_le_bytes());
            }
            Framing::Compact => {
                for v in [original.len() as u32, tokens, payload_len] {
                    put_varint(&mut b, v.into());
                }
                b.extend_from_slice(&original_crc);
            }
        }
        b
    }

    /// The CRC-32 that follows a payload: of the payload alone (indexed), or of the chunk's header and
    /// payload (compact).
    pub(crate) fn trailing_crc(framing: Framing, head: &[u8], payload: &[u8]) -> u32 {
        let mut h = crc32fast::Hasher::new();
        if framing == Framing::Compact {
            h.update(head);
        }
        h.update(payload);
        h.finalize()
    }

    /// Reads the rest of chunk `index` after its kind byte: the header (checked as
    /// [`ChunkHead::read_after_kind`] says), then the payload, incrementally so a truncated file never
    /// makes us allocate what its header claims, then the checksum that covers it.
    pub(crate) fn read_after_kind(
        r: &mut impl Read,
        kind_byte: u8,
        index: u64,
        framing: Framing,
    ) -> Result<Chunk, FormatError> {
        let (head, raw) = ChunkHead::read_after_kind(r, kind_byte, index, framing)?;
        let ChunkHead { kind, original_len, tokens, payload_len, original_crc32 } = head;
        let mut payload = Vec::new();
        let got = r.by_ref().take(payload_len as u64).read_to_end(&mut payload)?;
        if got < payload_len as usize {
            return Err(FormatError::Truncated {
                place: format!("inside chunk {index}'s payload ({} of {payload_len} bytes present)", got),
            });
        }
        let mut crc = [0u8; 4];
        read_exact_or(r, &mut crc, || format!("before chunk {index}'s checksum"))?;
        let stored = u32::from_le_bytes(crc);
        let computed = Chunk::trailing_crc(framing, &raw, &payload);
        if stored != computed {
            let place = match framing {
                Framing::Indexed => format!("chunk {index} payload"),
                Framing::Compact => format!("chunk {index}"),
            };
            return Err(FormatError::Checksum { place, stored, computed });
        }
        Ok(Chunk {
            kind,
            original_len,
            tokens: tokens as u64,
            original_crc32,
            payload,
            header_len: raw.len(),
        })
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

/// A chunk header's fields, their lengths checked against their limits, before its payload is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ChunkHead {
    pub kind: ChunkKind,
    pub original_len: u32,
    pub tokens: u32,
    pub payload_len: u32,
    pub original_crc32: u32,
}

impl ChunkHead {
    /// Reads chunk `index`'s header after its kind byte, and returns it with its bytes as read. The
    /// payload is not read. Indexed framing: the header's own CRC is checked first, then the kind and
    /// every length against its limit. Compact: the kind, then every length against its limit; the
    /// header is verified with its payload, by the CRC after it.
    fn read_after_kind(
        r: &mut impl Read,
        kind_byte: u8,
        index: u64,
        framing: Framing,
    ) -> Result<(ChunkHead, Vec<u8>), FormatError> {
        let place = || format!("inside chunk {index}'s header");
        let (fields, raw) = match framing {
            Framing::Indexed => {
                let mut head = [0u8; CHUNK_HEADER_LEN];
                head[0] = kind_byte;
                read_exact_or(r, &mut head[1..], place)?;
                let stored = u32::from_le_bytes(head[17..21].try_into().expect("4 bytes"));
                let computed = crc32fast::hash(&head[..17]);
                if stored != computed {
                    return Err(FormatError::Checksum {
                        place: format!("chunk {index} header"),
                        stored,
                        computed,
                    });
                }
                let mut f = Fields::new(&head[1..17]);
                ([f.u32(), f.u32(), f.u32(), f.u32()], head.to_vec())
            }
            Framing::Compact => {
                if ChunkKind::from_byte(kind_byte).is_none() {
                    return Err(FormatError::chunk(index, format!("unknown chunk kind {kind_byte}")));
                }
                let mut rec = Recorder::new(r, &[kind_byte]);
                let bad = |what: String| FormatError::chunk(index, what);
                let max = u64::from(u32::MAX);
                let original_len = rec.varint("its original length", max, &place, &bad)? as u32;
                let tokens = rec.varint("its token count", max, &place, &bad)? as u32;
                let payload_len = rec.varint("its payload length", max, &place, &bad)? as u32;
                let crc = u32::from_le_bytes(rec.take(4, &place)?.try_into().expect("4 bytes"));
                ([original_len, tokens, payload_len, crc], rec.bytes)
            }
        };
        let kind = ChunkKind::from_byte(kind_byte)
            .ok_or_else(|| FormatError::chunk(index, format!("unknown chunk kind {kind_byte}")))?;
        let [original_len, tokens, payload_len, original_crc32] = fields;
        validate(kind, original_len, tokens, payload_len).map_err(|what| FormatError::chunk(index, what))?;
        Ok((ChunkHead { kind, original_len, tokens, payload_len, original_crc32 }, raw))
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
