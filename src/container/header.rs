//! The archive header: which model, tokenizer and arithmetic made the archive, and the coding settings.
//!
//! ```text
//! offset      size  field
//! 0           8     magic 89 4C 4C 4D 5A 0D 0A 1A  ("\x89LLMZ\r\n\x1a": binary, not lzip's "LZIP")
//! 8           2     format version (u16 LE): 1, 2 or 3
//! 10          2     flags (u16 LE), must be 0
//! 12          1     n = model id length, 1..=64
//! 13          n     model id, printable ASCII
//! 13+n        32    sha256 of the model file
//! 45+n        32    tokenizer fingerprint
//! 77+n        4     engine version (u32 LE)
//! 81+n        1     quantizer precision bits
//! 82+n        4     context: positions per window (u32 LE)
//! 86+n        4     overlap: tokens carried into each later window (u32 LE)
//! 90+n        4     start token id (u32 LE)
//! 94+n        8     canary
//! 102+n       4     CRC-32 of bytes 0..102+n                          (version 1 ends here)
//!
//! version 2 only, from 102+n:
//! 102+n       4     slide: positions dropped when the KV cache is full (u32 LE); 0 = windows
//! 106+n       1     sink: positions at the start of the cache a slide keeps (0 or 1)
//! 107+n       1     m = mixer configuration length, 0..=32 (0: no mixer)
//! 108+n       m     mixer configuration (opaque here; the pipeline's mixer decodes and checks it)
//! 108+n+m     4     CRC-32 of bytes 0..108+n+m
//!
//! version 3 (compact framing), from 13+n:
//! 13+n        32    sha256 of the model file
//! 45+n        8     tokenizer check: the first 8 bytes of the tokenizer fingerprint
//! 53+n        8     canary
//! 61+n        var   engine version, precision (1 byte), context, overlap, start token, slide
//!                   (varints but the precision), sink (1 byte), m (1 byte), m mixer bytes
//! end - 4     4     CRC-32 of every byte before it
//! ```
//!
//! Every version starts with the same 13 bytes, magic to model id length (`PREFIX_LEN`), which say how
//! the rest is laid out, and ends with a 4-byte CRC-32 of every byte before it (`CRC_LEN`).
//!
//! A header of the indexed framing uses the lowest of versions 1 and 2 that expresses it: version 1
//! when there is no slide and no mixer, so archives made with version-1 settings stay byte-identical
//! to what older llmzip wrote. The compact framing is always version 3.

use std::io::{Read, Write};

use super::error::identify;
use super::{Fields, FormatError, Recorder, put_varint, read_exact_or};

/// Identifies an llmzip archive. The first byte is non-ASCII and the CR LF / SUB bytes catch text-mode
/// transfers, as PNG's signature does.
pub const MAGIC: [u8; 8] = [0x89, b'L', b'L', b'M', b'Z', b'\r', b'\n', 0x1a];
/// The newest format version this llmzip reads and writes (it also reads versions 1 and 2, and writes
/// them when it splits or joins such archives).
pub const FORMAT_VERSION: u16 = 3;
/// Longest mixer configuration a header may carry, in bytes.
pub const MAX_MIXER_BYTES: usize = 32;
/// The bytes every version starts with (offsets 0..13 of the table): magic, format version (u16),
/// flags (u16) and the model id length (u8). Read first: they say how long the rest is.
const PREFIX_LEN: usize = MAGIC.len() + 2 + 2 + 1;
/// The CRC-32 (u32 LE) that ends every version's header, over every byte before it.
const CRC_LEN: usize = 4;
// The table's offsets (13 + n for the model id) are these lengths.
const _: () = assert!(PREFIX_LEN == 13);
/// Header bytes after the model id up to the end of the canary (the version-1 fields).
const V1_FIELDS: usize = 32 + 32 + 4 + 1 + 4 + 4 + 4 + 8;
/// Version-2 fields before the mixer bytes: slide, sink, mixer length.
const V2_FIELDS: usize = 4 + 1 + 1;
/// Longest model id, in bytes.
pub const MAX_MODEL_ID: usize = 64;
/// Largest window (`context`) an archive may ask for: the largest `--context` llmzip accepts. It sizes the
/// decoder's KV caches, so a header is refused above it before anything is allocated; the model's own
/// limit (often lower) is checked once the model is loaded.
pub const MAX_CONTEXT: u32 = 8192;
/// Smallest window: the start token and one coded token.
pub const MIN_CONTEXT: u32 = 2;

/// How an archive frames its chunks and its end; the header's format version says which.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Framing {
    /// Versions 1 and 2: fixed-width chunk headers with a CRC of their own, a payload CRC, an index of
    /// every chunk and a 32-byte footer (38 bytes a chunk and 45 more for the end).
    Indexed,
    /// Version 3: varint chunk fields and one CRC over each chunk, a trailer of about ten bytes, and a
    /// shorter header.
    #[default]
    Compact,
}

impl Framing {
    /// Bytes of the tokenizer fingerprint a header of this framing stores. Version 3 keeps 8: the model
    /// file (named by its sha256) fixes the tokenizer, so the fingerprint only has to catch an llmzip
    /// that reads the same file's tokenizer differently, which 64 bits do.
    pub fn tokenizer_bytes(self) -> usize {
        match self {
            Framing::Indexed => 32,
            Framing::Compact => 8,
        }
    }
}

/// Everything a decoder must agree with before decoding a single chunk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// Versions 1-2 or version 3: how the chunks and the end are framed.
    pub framing: Framing,
    /// Registry id (or file name of a local model). Invariant: 1..=64 printable ASCII bytes.
    pub model_id: String,
    pub model_sha256: [u8; 32],
    /// The tokenizer's fingerprint, or its first bytes. Invariant: [`Framing::tokenizer_bytes`] long.
    pub tokenizer_fingerprint: Vec<u8>,
    pub engine_version: u32,
    pub precision_bits: u8,
    pub context: u32,
    pub overlap: u32,
    pub start_token: u32,
    pub canary: [u8; 8],
    /// Positions dropped from the KV cache each time it is full (the sliding schedule); 0 for the
    /// window schedule of `context` and `overlap`. Version 2; 0 in a version-1 header.
    pub slide: u32,
    /// Positions at the start of the cache a slide keeps (the start token as an attention sink): 0 or 1.
    /// Version 2; 0 in a version-1 header.
    pub sink: u8,
    /// The mixer's configuration as the pipeline encodes it (at most [`MAX_MIXER_BYTES`]); empty for no
    /// mixer. Version 2; empty in a version-1 header.
    pub mixer: Vec<u8>,
}

fn valid_id(id: &str) -> bool {
    (1..=MAX_MODEL_ID).contains(&id.len()) && id.bytes().all(|b| (0x21..0x7f).contains(&b))
}

impl Header {
    /// The format version that expresses this header: 3 for the compact framing; for the indexed one,
    /// 1 without slide and mixer, else 2.
    pub fn version(&self) -> u16 {
        match self.framing {
            Framing::Compact => 3,
            Framing::Indexed if self.slide == 0 && self.sink == 0 && self.mixer.is_empty() => 1,
            Framing::Indexed => 2,
        }
    }

    /// The limits on the fields that size a decoder's memory and work: `MIN_CONTEXT..=MAX_CONTEXT`
    /// positions per window and an overlap below the context (so every window advances); with a slide,
    /// no overlap, a sink of 0 or 1 and `1 <= slide <= context - sink` (so every slide frees a position);
    /// a mixer configuration of at most [`MAX_MIXER_BYTES`].
    pub fn check_limits(&self) -> Result<(), String> {
        if !(MIN_CONTEXT..=MAX_CONTEXT).contains(&self.context) {
            return Err(format!(
                "context {} is outside {MIN_CONTEXT}..={MAX_CONTEXT} positions",
                self.context
            ));
        }
        if self.overlap >= self.context {
            return Err(format!("overlap {} is not below the context {}", self.overlap, self.context));
        }
        if self.sink > 1 {
            return Err(format!("sink {} is not 0 or 1", self.sink));
        }
        if self.slide > 0 {
            if self.overlap != 0 {
                return Err(format!(
                    "overlap {} with slide {}: a sliding cache has no overlap",
                    self.overlap, self.slide
                ));
            }
            if self.slide > self.context - self.sink as u32 {
                return Err(format!(
                    "slide {} is more than the context {} less the sink {}",
                    self.slide, self.context, self.sink
                ));
            }
        } else if self.sink != 0 {
            return Err(format!("sink {} without a slide", self.sink));
        }
        if self.mixer.len() > MAX_MIXER_BYTES {
            return Err(format!(
                "mixer configuration of {} bytes (at most {MAX_MIXER_BYTES})",
                self.mixer.len()
            ));
        }
        Ok(())
    }

    /// The encoded header, checksum included.
    pub fn to_bytes(&self) -> Result<Vec<u8>, FormatError> {
        if !valid_id(&self.model_id) {
            return Err(FormatError::ModelId(self.model_id.clone()));
        }
        self.check_limits().map_err(FormatError::Header)?;
        if self.tokenizer_fingerprint.len() != self.framing.tokenizer_bytes() {
            return Err(FormatError::Header(format!(
                "a tokenizer fingerprint of {} bytes in a version-{} header",
                self.tokenizer_fingerprint.len(),
                self.version()
            )));
        }
        let version = self.version();
        let mut b = Vec::with_capacity(
            PREFIX_LEN + self.model_id.len() + V1_FIELDS + V2_FIELDS + self.mixer.len() + CRC_LEN,
        );
        b.extend_from_slice(&MAGIC);
        b.extend_from_slice(&version.to_le_bytes());
        b.extend_from_slice(&0u16.to_le_bytes());
        b.push(self.model_id.len() as u8);
        b.extend_from_slice(self.model_id.as_bytes());
        b.extend_from_slice(&self.model_sha256);
        b.extend_from_slice(&self.tokenizer_fingerprint);
        if self.framing == Framing::Compact {
            b.extend_from_slice(&self.canary);
            put_varint(&mut b, self.engine_version.into());
            b.push(self.precision_bits);
            for v in [self.context, self.overlap, self.start_token, self.slide] {
                put_varint(&mut b, v.into());
            }
            b.push(self.sink);
            b.push(self.mixer.len() as u8);
            b.extend_from_slice(&self.mixer);
        } else {
            b.extend_from_slice(&self.engine_version.to_le_bytes());
            b.push(self.precision_bits);
            b.extend_from_slice(&self.context.to_le_bytes());
            b.extend_from_slice(&self.overlap.to_le_bytes());
            b.extend_from_slice(&self.start_token.to_le_bytes());
            b.extend_from_slice(&self.canary);
            if version >= 2 {
                b.extend_from_slice(&self.slide.to_le_bytes());
                b.push(self.sink);
                b.push(self.mixer.len() as u8);
                b.extend_from_slice(&self.mixer);
            }
        }
        let crc = crc32fast::hash(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        Ok(b)
    }

    pub fn write_to(&self, w: &mut impl Write) -> Result<usize, FormatError> {
        let bytes = self.to_bytes()?;
        w.write_all(&bytes)?;
        Ok(bytes.len())
    }

    /// Reads and validates a header, in this order: magic (else: which format it is, or a cut inside the
    /// magic), model id length, the rest, checksum, version, flags, model id characters, then the limits
    /// of the fields that size memory and work ([`Header::check_limits`]). Returns the header and its
    /// length.
    pub fn read_from(r: &mut impl Read) -> Result<(Header, usize), FormatError> {
        let mut start = [0u8; PREFIX_LEN];
        let mut got = 0;
        while got < start.len() {
            match r.read(&mut start[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        if got < MAGIC.len() || start[..MAGIC.len()] != MAGIC {
            // A file cut inside the magic is an incomplete archive, not another format.
            if got > 0 && got < MAGIC.len() && start[..got] == MAGIC[..got] {
                return Err(FormatError::Truncated { place: "inside the magic bytes".into() });
            }
            return Err(identify(&start[..got]));
        }
        if got < start.len() {
            return Err(FormatError::Truncated { place: "inside the header".into() });
        }
        let mut f = Fields::new(&start[MAGIC.len()..]);
        let version = f.u16();
        let flags = f.u16();
        let id_len = f.u8() as usize;
        // The checksum is checked before version and flags are believed: a flipped bit there is
        // corruption, not a newer llmzip. The id length must be read first to find the checksum.
        if !(1..=MAX_MODEL_ID).contains(&id_len) {
            return Err(if !(1..=FORMAT_VERSION).contains(&version) {
                FormatError::VersionOrCorrupt(version)
            } else {
                FormatError::ModelId(format!("<{id_len} bytes>"))
            });
        }
        if version == 3 {
            return Self::read_compact(r, &start, flags, id_len);
        }
        // The version-1 fields, then (for version 2) slide, sink and the mixer length, which says how
        // many more bytes the header has. A version this llmzip does not know is read with version 1's
        // layout, so that its checksum tells corruption from a newer format.
        let v2 = version == 2;
        let mut rest = vec![0u8; id_len + V1_FIELDS + if v2 { V2_FIELDS } else { CRC_LEN }];
        read_exact_or(r, &mut rest, || "inside the header".into())?;
        if v2 {
            let mixer_len = rest[rest.len() - 1] as usize;
            if mixer_len > MAX_MIXER_BYTES {
                return Err(FormatError::Header(format!(
                    "mixer configuration of {mixer_len} bytes (at most {MAX_MIXER_BYTES})"
                )));
            }
            let mut tail = vec![0u8; mixer_len + CRC_LEN];
            read_exact_or(r, &mut tail, || "inside the header".into())?;
            rest.extend_from_slice(&tail);
        }
        let mut all = start.to_vec();
        all.extend_from_slice(&rest);
        let body_len = all.len() - CRC_LEN;
        let stored = u32::from_le_bytes(all[body_len..].try_into().expect("4 bytes"));
        let computed = crc32fast::hash(&all[..body_len]);
        let known = version == 1 || v2;
        if stored != computed {
            return Err(if !known {
                FormatError::VersionOrCorrupt(version)
            } else {
                FormatError::Checksum { place: "header".into(), stored, computed }
            });
        }
        match version {
            1 | 2 => {}
            v if v > FORMAT_VERSION => {
                return Err(FormatError::Version { found: v, newest: FORMAT_VERSION });
            }
            v => return Err(FormatError::Header(format!("format version {v} is not one llmzip writes"))),
        }
        if flags != 0 {
            return Err(FormatError::Flags(flags));
        }
        let mut f = Fields::new(&rest);
        let model_id = String::from_utf8_lossy(f.take(id_len)).into_owned();
        if !valid_id(&model_id) {
            return Err(FormatError::ModelId(model_id));
        }
        let mut header = Header {
            framing: Framing::Indexed,
            model_id,
            model_sha256: f.array(),
            tokenizer_fingerprint: f.take(32).to_vec(),
            engine_version: f.u32(),
            precision_bits: f.u8(),
            context: f.u32(),
            overlap: f.u32(),
            start_token: f.u32(),
            canary: f.array(),
            slide: 0,
            sink: 0,
            mixer: Vec::new(),
        };
        if v2 {
            header.slide = f.u32();
            header.sink = f.u8();
            let mixer_len = f.u8() as usize;
            header.mixer = f.take(mixer_len).to_vec();
            // A version-2 header must need version 2: one llmzip could have written as version 1 is
            // not one llmzip writes, and two encodings of one header would break byte-exact re-encoding.
            if header.version() != 2 {
                return Err(FormatError::Header("a version-2 header without slide or mixer".into()));
            }
        }
        header.check_limits().map_err(FormatError::Header)?;
        Ok((header, all.len()))
    }

    /// The rest of a version-3 header after its first [`PREFIX_LEN`] bytes (`start`): fields in order, each length
    /// checked against its limit before it is read, then the checksum, then flags, id and limits.
    fn read_compact(
        r: &mut impl Read,
        start: &[u8; PREFIX_LEN],
        flags: u16,
        id_len: usize,
    ) -> Result<(Header, usize), FormatError> {
        let place = || "inside the header".to_string();
        let bad = |what: String| FormatError::Header(what);
        let mut rec = Recorder::new(r, start);
        let model_id = String::from_utf8_lossy(rec.take(id_len, &place)?).into_owned();
        let model_sha256: [u8; 32] = rec.take(32, &place)?.try_into().expect("32 bytes");
        let tokenizer_fingerprint = rec.take(Framing::Compact.tokenizer_bytes(), &place)?.to_vec();
        let canary: [u8; 8] = rec.take(8, &place)?.try_into().expect("8 bytes");
        let u32_max = u64::from(u32::MAX);
        let engine_version = rec.varint("the engine version", u32_max, &place, &bad)? as u32;
        let precision_bits = rec.u8(&place)?;
        let context = rec.varint("the context", u32_max, &place, &bad)? as u32;
        let overlap = rec.varint("the overlap", u32_max, &place, &bad)? as u32;
        let start_token = rec.varint("the start token", u32_max, &place, &bad)? as u32;
        let slide = rec.varint("the slide", u32_max, &place, &bad)? as u32;
        let sink = rec.u8(&place)?;
        let mixer_len = rec.u8(&place)? as usize;
        if mixer_len > MAX_MIXER_BYTES {
            return Err(FormatError::Header(format!(
                "mixer configuration of {mixer_len} bytes (at most {MAX_MIXER_BYTES})"
            )));
        }
        let mixer = rec.take(mixer_len, &place)?.to_vec();
        let computed = crc32fast::hash(&rec.bytes);
        let body_len = rec.bytes.len();
        let stored = u32::from_le_bytes(rec.take(CRC_LEN, &place)?.try_into().expect("4 bytes"));
        if stored != computed {
            return Err(FormatError::Checksum { place: "header".into(), stored, computed });
        }
        if flags != 0 {
            return Err(FormatError::Flags(flags));
        }
        if !valid_id(&model_id) {
            return Err(FormatError::ModelId(model_id));
        }
        let header = Header {
            framing: Framing::Compact,
            model_id,
            model_sha256,
            tokenizer_fingerprint,
            engine_version,
            precision_bits,
            context,
            overlap,
            start_token,
            canary,
            slide,
            sink,
            mixer,
        };
        header.check_limits().map_err(FormatError::Header)?;
        Ok((header, body_len + CRC_LEN))
    }
}
