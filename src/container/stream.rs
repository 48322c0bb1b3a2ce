//! Writing and reading whole archives as streams, and reading just an archive's tail.

use std::io::{Read, Seek, SeekFrom, Write};

use super::chunk::{CHUNK_HEADER_LEN, Chunk, ChunkKind, MAX_CHUNK_BYTES, max_coded_payload};
use super::header::{Header, MAGIC, MAX_MIXER_BYTES, MAX_MODEL_ID};
use super::trailer::{END_MARKER, FOOTER_LEN, Footer, IndexEntry, decode_index, encode_index, index_len};
use super::{FormatError, read_exact_or};

/// Writes an archive to any writer, front to back, without seeking.
pub struct ArchiveWriter<W: Write> {
    w: W,
    entries: Vec<IndexEntry>,
    content: crc32fast::Hasher,
    total_original: u64,
}

impl<W: Write> ArchiveWriter<W> {
    /// Writes the header.
    pub fn new(mut w: W, header: &Header) -> Result<Self, FormatError> {
        header.write_to(&mut w)?;
        Ok(Self { w, entries: Vec::new(), content: crc32fast::Hasher::new(), total_original: 0 })
    }

    /// Writes one chunk: `original` is what it decodes to, `payload` what is stored for it.
    ///
    /// # Panics
    /// If the arguments break the format's limits (an empty or oversized chunk, a stored payload that is
    /// not the original): the pipeline's own chunking guarantees them.
    pub fn write_chunk(
        &mut self,
        kind: ChunkKind,
        original: &[u8],
        tokens: u64,
        payload: &[u8],
    ) -> Result<(), FormatError> {
        assert!(
            !original.is_empty() && original.len() <= MAX_CHUNK_BYTES as usize,
            "chunk size out of range"
        );
        let tokens = u32::try_from(tokens).expect("a chunk's tokens fit in u32");
        match kind {
            ChunkKind::Stored => {
                assert!(payload == original && tokens == 0, "a stored chunk stores its bytes")
            }
            ChunkKind::Coded => {
                assert!(payload.len() as u64 <= max_coded_payload(tokens), "coded payload too long")
            }
        }
        let head = Chunk::header_bytes(kind, original, tokens, payload.len() as u32);
        self.w.write_all(&head)?;
        self.w.write_all(payload)?;
        self.w.write_all(&crc32fast::hash(payload).to_le_bytes())?;
        self.entries.push(IndexEntry {
            kind,
            original_len: original.len() as u32,
            payload_len: payload.len() as u32,
            tokens,
        });
        self.content.update(original);
        self.total_original += original.len() as u64;
        Ok(())
    }

    /// Writes a chunk copied verbatim from another archive (its header, payload and payload CRC, as
    /// `encoded`), for split and join, which never decode. `entry` and `original_crc32` are that chunk's
    /// checked header fields; the whole-content CRC-32 is extended by combining CRCs, so the original
    /// bytes are not needed.
    pub(crate) fn copy_chunk(
        &mut self,
        entry: IndexEntry,
        original_crc32: u32,
        encoded: &[u8],
    ) -> Result<(), FormatError> {
        self.w.write_all(encoded)?;
        self.entries.push(entry);
        self.content
            .combine(&crc32fast::Hasher::new_with_initial_len(original_crc32, entry.original_len as u64));
        self.total_original += entry.original_len as u64;
        Ok(())
    }

    /// The underlying writer (for byte counts as the archive is written).
    pub fn get_ref(&self) -> &W {
        &self.w
    }

    /// Writes the index and footer and returns the writer.
    pub fn finish(mut self) -> Result<W, FormatError> {
        let index = encode_index(&self.entries);
        self.w.write_all(&index)?;
        let footer = Footer {
            total_original: self.total_original,
            chunk_count: self.entries.len() as u64,
            content_crc32: self.content.clone().finalize(),
            index_len: index.len() as u32,
        };
        self.w.write_all(&footer.to_bytes())?;
        self.w.flush()?;
        Ok(self.w)
    }
}

/// Reads an archive front to back without seeking: header, then chunks, then index and footer, which
/// must agree with the chunks read.
pub struct ArchiveReader<R: Read> {
    r: R,
    header: Header,
    entries: Vec<IndexEntry>,
    /// CRC-32 of the decoded content so far, fed by [`ArchiveReader::note_original`].
    content: crc32fast::Hasher,
    total_original: u64,
    bytes_read: u64,
    footer: Option<Footer>,
}

impl<R: Read> ArchiveReader<R> {
    /// Reads and validates the header.
    pub fn new(mut r: R) -> Result<Self, FormatError> {
        let (header, len) = Header::read_from(&mut r)?;
        Ok(Self {
            r,
            header,
            entries: Vec::new(),
            content: crc32fast::Hasher::new(),
            total_original: 0,
            bytes_read: len as u64,
            footer: None,
        })
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The next chunk, or `None` once the index and footer have been read and checked.
    pub fn next_chunk(&mut self) -> Result<Option<Chunk>, FormatError> {
        if self.footer.is_some() {
            return Ok(None);
        }
        let index = self.entries.len() as u64;
        let mut kind = [0u8; 1];
        read_exact_or(&mut self.r, &mut kind, || format!("where chunk {index} or the index should start"))?;
        if kind[0] == END_MARKER {
            self.read_trailer()?;
            return Ok(None);
        }
        let chunk = Chunk::read_after_kind(&mut self.r, kind[0], index)?;
        self.bytes_read += chunk.encoded_len() as u64;
        self.entries.push(IndexEntry {
            kind: chunk.kind,
            original_len: chunk.original_len,
            payload_len: chunk.payload.len() as u32,
            tokens: chunk.tokens as u32,
        });
        Ok(Some(chunk))
    }

    fn read_trailer(&mut self) -> Result<(), FormatError> {
        let count = self.entries.len() as u64;
        let mut index = vec![0u8; index_len(count) as usize];
        index[0] = END_MARKER;
        read_exact_or(&mut self.r, &mut index[1..], || "inside the index".into())?;
        // Checksum first (inside decode_index): a flipped count is corruption, reported as such.
        let crc_ok = {
            let body = index.len() - 4;
            crc32fast::hash(&index[..body]).to_le_bytes() == index[body..]
        };
        let claimed = u64::from_le_bytes(index[1..9].try_into().expect("8 bytes"));
        if crc_ok && claimed != count {
            return Err(FormatError::Index(format!("it lists {claimed} chunks but {count} were read")));
        }
        if decode_index(&index)? != self.entries {
            return Err(FormatError::Index("its entries differ from the chunks read".into()));
        }
        let mut f = [0u8; FOOTER_LEN];
        read_exact_or(&mut self.r, &mut f, || "inside the footer".into())?;
        let footer = Footer::from_bytes(&f)?;
        let total: u64 = self.entries.iter().map(|e| e.original_len as u64).sum();
        if footer.chunk_count != count
            || footer.total_original != total
            || footer.index_len as usize != index.len()
        {
            return Err(FormatError::Footer("its totals differ from the chunks read".into()));
        }
        self.bytes_read += (index.len() + FOOTER_LEN) as u64;
        self.footer = Some(footer);
        Ok(())
    }

    /// Feeds the decoded bytes of each chunk, in order, so [`ArchiveReader::finish`] can check the
    /// footer's whole-content CRC-32.
    pub fn note_original(&mut self, bytes: &[u8]) {
        self.content.update(bytes);
        self.total_original += bytes.len() as u64;
    }

    /// After the last chunk: checks the whole-content CRC-32, and returns the archive's size and the
    /// reader, positioned just after the footer (where a concatenated archive may follow).
    pub fn finish(self) -> Result<(u64, R), FormatError> {
        let footer =
            self.footer.ok_or_else(|| FormatError::Truncated { place: "before its index".into() })?;
        let computed = self.content.finalize();
        if self.total_original != footer.total_original || computed != footer.content_crc32 {
            return Err(FormatError::Checksum {
                place: "whole-content".into(),
                stored: footer.content_crc32,
                computed,
            });
        }
        Ok((self.bytes_read, self.r))
    }
}

/// What `list` shows: read from the header and the tail only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchiveInfo {
    pub header: Header,
    pub chunks: Vec<IndexEntry>,
    pub total_original: u64,
    pub archive_bytes: u64,
}

/// Smallest header: a one-byte model id.
const MIN_HEADER_LEN: u64 = 107;
/// Bytes a chunk occupies besides its payload: its header and the payload's CRC.
const CHUNK_OVERHEAD: u64 = CHUNK_HEADER_LEN as u64 + 4;

/// Reads a single archive's header, footer and index, checking each, without reading the chunks. A file
/// that holds several archives back to back is refused here; [`read_archives`] lists it.
pub fn read_tail<R: Read + Seek>(r: &mut R) -> Result<ArchiveInfo, FormatError> {
    let mut all = read_archives(r)?;
    if all.len() != 1 {
        return Err(FormatError::Footer(format!("the file holds {} archives back to back", all.len())));
    }
    Ok(all.pop().expect("one archive"))
}

/// Reads every archive of a file (several may follow each other, FORMAT.md), in file order, from their
/// tails: each footer locates its index, the index's payload lengths locate its header, and the header
/// must sit exactly where the previous archive's footer ends (or at the start of the file). Anything
/// between archives, or a header, index or footer that does not check, is an error. Chunks are not
/// read, so their payloads are not verified (that is what `llmzip t` does).
pub fn read_archives<R: Read + Seek>(r: &mut R) -> Result<Vec<ArchiveInfo>, FormatError> {
    r.seek(SeekFrom::Start(0))?;
    // The first header says whether this is an archive at all (or which other format it is).
    Header::read_from(r)?;
    let size = r.seek(SeekFrom::End(0))?;
    let mut found = Vec::new();
    let mut end = size;
    while end > 0 {
        let info = read_one_back(r, end)?;
        end -= info.archive_bytes;
        found.push(info);
    }
    found.reverse();
    Ok(found)
}

/// The archive that ends at byte `end` of the file.
fn read_one_back<R: Read + Seek>(r: &mut R, end: u64) -> Result<ArchiveInfo, FormatError> {
    let min = MIN_HEADER_LEN + index_len(0) + FOOTER_LEN as u64;
    if end < min {
        return Err(FormatError::Truncated { place: "before its footer".into() });
    }
    r.seek(SeekFrom::Start(end - FOOTER_LEN as u64))?;
    let mut f = [0u8; FOOTER_LEN];
    read_exact_or(r, &mut f, || "inside the footer".into())?;
    let footer = Footer::from_bytes(&f)?;
    let room = end - FOOTER_LEN as u64 - MIN_HEADER_LEN;
    if footer.index_len as u64 > room {
        return Err(FormatError::Footer(format!(
            "an index of {} bytes does not fit in the file",
            footer.index_len
        )));
    }
    let index_start = end - FOOTER_LEN as u64 - footer.index_len as u64;
    r.seek(SeekFrom::Start(index_start))?;
    let mut index = vec![0u8; footer.index_len as usize];
    read_exact_or(r, &mut index, || "inside the index".into())?;
    if index[0] != END_MARKER {
        return Err(FormatError::Index("the end-of-chunks marker is missing".into()));
    }
    let chunks = decode_index(&index)?;
    let total: u64 = chunks.iter().map(|e| e.original_len as u64).sum();
    if chunks.len() as u64 != footer.chunk_count || total != footer.total_original {
        return Err(FormatError::Footer("its totals differ from the index".into()));
    }
    let chunk_bytes: u64 = chunks.iter().map(|e| CHUNK_OVERHEAD + e.payload_len as u64).sum();
    if chunk_bytes > index_start - MIN_HEADER_LEN {
        return Err(FormatError::Index(format!(
            "its chunks ({chunk_bytes} bytes) do not fit between a header and the index"
        )));
    }
    let chunks_start = index_start - chunk_bytes;
    let header_at = find_header(r, chunks_start)?;
    Ok(ArchiveInfo {
        header: header_at.0,
        chunks,
        total_original: footer.total_original,
        archive_bytes: end - header_at.1,
    })
}

/// The header that ends exactly at `chunks_start`, and where it begins: its length depends on its model
/// id's length and, in version 2, on its mixer configuration's, so each possible length is tried; only
/// a header whose checksum verifies and that ends exactly there counts.
fn find_header<R: Read + Seek>(r: &mut R, chunks_start: u64) -> Result<(Header, u64), FormatError> {
    // Version 1 adds nothing to the shortest header; version 2 adds slide, sink, the mixer's length
    // and its 0..=MAX_MIXER_BYTES bytes.
    let extras = std::iter::once(0).chain((0..=MAX_MIXER_BYTES as u64).map(|m| 6 + m));
    for extra in extras {
        for id_len in 1..=MAX_MODEL_ID as u64 {
            let len = MIN_HEADER_LEN - 1 + id_len + extra;
            let Some(at) = chunks_start.checked_sub(len) else { break };
            r.seek(SeekFrom::Start(at))?;
            let mut start = [0u8; 13];
            if r.read_exact(&mut start).is_err() || start[..8] != MAGIC || start[12] as u64 != id_len {
                continue;
            }
            r.seek(SeekFrom::Start(at))?;
            if let Ok((header, got)) = Header::read_from(r)
                && got as u64 == len
            {
                return Ok((header, at));
            }
        }
    }
    Err(FormatError::Index(format!(
        "no valid header ends where its chunks begin (byte {chunks_start}); data precedes the archive or \
         the file is damaged"
    )))
}
