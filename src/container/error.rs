//! What can be wrong with an archive. Each message names the place (header, chunk N, index, footer),
//! what was seen and what was expected, and, where there is one, what to do.

/// A malformed, corrupt or truncated archive, or another format altogether.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("empty input: not an llmzip archive")]
    Empty,
    #[error("this is {name} file, not an llmzip archive; {hint}")]
    OtherFormat { name: &'static str, hint: &'static str },
    #[error("not an llmzip archive (it does not start with the llmzip magic bytes)")]
    NotArchive,
    #[error("truncated archive: it ends {place}; the file is incomplete")]
    Truncated { place: String },
    /// A version above the newest this llmzip reads, under a valid checksum. Carries both versions so
    /// that this file, the bottom of the container's files, names nothing of the header's.
    #[error(
        "archive format version {found} is not supported (this llmzip reads versions 1 to {newest}); use a \
         newer llmzip"
    )]
    Version { found: u16, newest: u16 },
    #[error(
        "archive format version {0} is not supported and the header checksum does not match; the archive is \
         corrupt (or was made by a newer llmzip)"
    )]
    VersionOrCorrupt(u16),
    #[error("archive header flags 0x{0:04x} are not understood; it was made by a newer llmzip")]
    Flags(u16),
    /// A header with a valid checksum whose fields are out of range: no llmzip writes such a header.
    #[error("archive header: {0}; the archive is corrupt or was made by something other than llmzip")]
    Header(String),
    #[error(
        "archive header names model id {0:?}, which is not 1 to 64 printable ASCII characters; the header is corrupt"
    )]
    ModelId(String),
    #[error(
        "{place} checksum mismatch (stored {stored:08x}, computed {computed:08x}); the archive is corrupt"
    )]
    Checksum { place: String, stored: u32, computed: u32 },
    #[error("chunk {chunk}: {what}; the archive is corrupt")]
    Chunk { chunk: u64, what: String },
    #[error("index: {0}; the archive is corrupt")]
    Index(String),
    #[error("footer: {0}; the archive is corrupt or incomplete")]
    Footer(String),
    #[error("trailer: {0}; the archive is corrupt or incomplete")]
    Trailer(String),
    #[error(
        "the data after the archive's end (at byte {offset}) is not another llmzip archive; the file has \
         trailing garbage or was damaged"
    )]
    TrailingData { offset: u64 },
}

impl FormatError {
    pub(crate) fn chunk(chunk: u64, what: impl Into<String>) -> Self {
        Self::Chunk { chunk, what: what.into() }
    }
}

/// Names the format of a file that does not start with llmzip's magic, from its first bytes.
pub(crate) fn identify(first: &[u8]) -> FormatError {
    const KNOWN: &[(&[u8], &str, &str)] = &[
        (b"LZIP", "an lzip", "use lzip -d"),
        (b"\xfd7zXZ\x00", "an xz", "use xz -d"),
        (b"\x1f\x8b", "a gzip", "use gzip -d"),
        (b"\x28\xb5\x2f\xfd", "a zstd", "use zstd -d"),
        (b"BZh", "a bzip2", "use bzip2 -d"),
        (b"PK\x03\x04", "a zip", "use unzip"),
    ];
    if first.is_empty() {
        return FormatError::Empty;
    }
    for (magic, name, hint) in KNOWN {
        if first.starts_with(magic) {
            return FormatError::OtherFormat { name, hint };
        }
    }
    FormatError::NotArchive
}
