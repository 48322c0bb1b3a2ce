//! Writing and reading whole archives as streams, and reading just an archive's tail.

use std::io::{Read, Seek, SeekFrom, Write};

use super::chunk::{Chunk, ChunkKind, MAX_CHUNK_BYTES, max_coded_payload};
use super::header::Header;
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
        let claimed = u64::from_le_bytes(index[1..9].try_into().expect("8 bytes"));
        if claimed != count {
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

/// Reads an archive's header, footer and index, checking each, without reading the chunks.
pub fn read_tail<R: Read + Seek>(r: &mut R) -> Result<ArchiveInfo, FormatError> {
    r.seek(SeekFrom::Start(0))?;
    let (header, header_len) = Header::read_from(r)?;
    let size = r.seek(SeekFrom::End(0))?;
    let min = header_len as u64 + index_len(0) + FOOTER_LEN as u64;
    if size < min {
        return Err(FormatError::Truncated { place: "before its footer".into() });
    }
    r.seek(SeekFrom::Start(size - FOOTER_LEN as u64))?;
    let mut f = [0u8; FOOTER_LEN];
    read_exact_or(r, &mut f, || "inside the footer".into())?;
    let footer = Footer::from_bytes(&f)?;
    let index_start = size - FOOTER_LEN as u64 - footer.index_len as u64;
    if footer.index_len as u64 > size - min + index_len(0) || index_start < header_len as u64 {
        return Err(FormatError::Footer(format!(
            "an index of {} bytes does not fit in the file",
            footer.index_len
        )));
    }
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
    Ok(ArchiveInfo { header, chunks, total_original: footer.total_original, archive_bytes: size })
}
