//! The archive header: which model, tokenizer and arithmetic made the archive, and the coding settings.
//!
//! ```text
//! offset      size  field
//! 0           8     magic 89 4C 4C 4D 5A 0D 0A 1A  ("\x89LLMZ\r\n\x1a": binary, not lzip's "LZIP")
//! 8           2     format version (u16 LE) = 1
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
//! 102+n       4     CRC-32 of bytes 0..102+n
//! ```

use std::io::{Read, Write};

use super::error::identify;
use super::{Fields, FormatError, read_exact_or};

/// Identifies an llmzip archive. The first byte is non-ASCII and the CR LF / SUB bytes catch text-mode
/// transfers, as PNG's signature does.
pub const MAGIC: [u8; 8] = [0x89, b'L', b'L', b'M', b'Z', b'\r', b'\n', 0x1a];
pub const FORMAT_VERSION: u16 = 1;
/// Longest model id, in bytes.
pub const MAX_MODEL_ID: usize = 64;
/// Largest window (`context`) an archive may ask for: the largest `--context` llmzip accepts. It sizes the
/// decoder's KV caches, so a header is refused above it before anything is allocated; the model's own
/// limit (often lower) is checked once the model is loaded.
pub const MAX_CONTEXT: u32 = 8192;
/// Smallest window: the start token and one coded token.
pub const MIN_CONTEXT: u32 = 2;

/// Everything a decoder must agree with before decoding a single chunk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// Registry id (or file name of a local model). Invariant: 1..=64 printable ASCII bytes.
    pub model_id: String,
    pub model_sha256: [u8; 32],
    pub tokenizer_fingerprint: [u8; 32],
    pub engine_version: u32,
    pub precision_bits: u8,
    pub context: u32,
    pub overlap: u32,
    pub start_token: u32,
    pub canary: [u8; 8],
}

fn valid_id(id: &str) -> bool {
    (1..=MAX_MODEL_ID).contains(&id.len()) && id.bytes().all(|b| (0x21..0x7f).contains(&b))
}

impl Header {
    /// The limits on the fields that size a decoder's memory and work: `MIN_CONTEXT..=MAX_CONTEXT`
    /// positions per window and an overlap below the context (so every window advances).
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
        Ok(())
    }

    /// The encoded header, checksum included.
    pub fn to_bytes(&self) -> Result<Vec<u8>, FormatError> {
        if !valid_id(&self.model_id) {
            return Err(FormatError::ModelId(self.model_id.clone()));
        }
        self.check_limits().map_err(FormatError::Header)?;
        let mut b = Vec::with_capacity(106 + self.model_id.len());
        b.extend_from_slice(&MAGIC);
        b.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        b.extend_from_slice(&0u16.to_le_bytes());
        b.push(self.model_id.len() as u8);
        b.extend_from_slice(self.model_id.as_bytes());
        b.extend_from_slice(&self.model_sha256);
        b.extend_from_slice(&self.tokenizer_fingerprint);
        b.extend_from_slice(&self.engine_version.to_le_bytes());
        b.push(self.precision_bits);
        b.extend_from_slice(&self.context.to_le_bytes());
        b.extend_from_slice(&self.overlap.to_le_bytes());
        b.extend_from_slice(&self.start_token.to_le_bytes());
        b.extend_from_slice(&self.canary);
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
        let mut start = [0u8; 13];
        let mut got = 0;
        while got < start.len() {
            match r.read(&mut start[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        if got < MAGIC.len() || start[..8] != MAGIC {
            // A file cut inside the magic is an incomplete archive, not another format.
            if got > 0 && got < MAGIC.len() && start[..got] == MAGIC[..got] {
                return Err(FormatError::Truncated { place: "inside the magic bytes".into() });
            }
            return Err(identify(&start[..got]));
        }
        if got < start.len() {
            return Err(FormatError::Truncated { place: "inside the header".into() });
        }
        let mut f = Fields::new(&start[8..]);
        let version = f.u16();
        let flags = f.u16();
        let id_len = f.u8() as usize;
        // The checksum is checked before version and flags are believed: a flipped bit there is
        // corruption, not a newer llmzip. The id length must be read first to find the checksum.
        if !(1..=MAX_MODEL_ID).contains(&id_len) {
            return Err(if version != FORMAT_VERSION {
                FormatError::VersionOrCorrupt(version)
            } else {
                FormatError::ModelId(format!("<{id_len} bytes>"))
            });
        }
        let mut rest = vec![0u8; id_len + 93];
        read_exact_or(r, &mut rest, || "inside the header".into())?;
        let mut all = start.to_vec();
        all.extend_from_slice(&rest);
        let body_len = all.len() - 4;
        let stored = u32::from_le_bytes(all[body_len..].try_into().expect("4 bytes"));
        let computed = crc32fast::hash(&all[..body_len]);
        if stored != computed {
            return Err(if version != FORMAT_VERSION {
                FormatError::VersionOrCorrupt(version)
            } else {
                FormatError::Checksum { place: "header".into(), stored, computed }
            });
        }
        match version {
            FORMAT_VERSION => {}
            v if v > FORMAT_VERSION => return Err(FormatError::Version(v)),
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
        let header = Header {
            model_id,
            model_sha256: f.array(),
            tokenizer_fingerprint: f.array(),
            engine_version: f.u32(),
            precision_bits: f.u8(),
            context: f.u32(),
            overlap: f.u32(),
            start_token: f.u32(),
            canary: f.array(),
        };
        header.check_limits().map_err(FormatError::Header)?;
        Ok((header, all.len()))
    }
}
