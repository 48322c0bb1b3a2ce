//! Writing and reading whole archives as streams, in the framing their header's version gives.

use std::io::{Read, Write};

use super::chunk::{Chunk, ChunkKind, MAX_CHUNK_BYTES, max_coded_payload};
use super::header::{Framing, Header};
use super::trailer::{
    END_MARKER, FOOTER_LEN, Footer, IndexEntry, Trailer, decode_index, encode_index, index_len,
};
use super::{FormatError, read_exact_or};

/// Writes an archive to any writer, front to back, without seeking.
pub struct ArchiveWriter<W: Write> {
    w: W,
    framing: Framing,
    entries: Vec<IndexEntry>,
    content: crc32fast::Hasher,
    total_original: u64,
}

impl<W: Write> ArchiveWriter<W> {
    /// Writes the header.
    pub fn new(mut w: W, header: &Header) -> Result<Self, FormatError> {
        header.write_to(&mut w)?;
        Ok(Self {
            w,
            framing: header.framing,
            entries: Vec::new(),
            content: crc32fast::Hasher::new(),
            total_original: 0,
        })
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
        let head = Chunk::header_bytes(self.framing, kind, original, tokens, payload.len() as u32);
        self.w.write_all(&head)?;
        self.w.write_all(payload)?;
        self.w.write_all(&Chunk::trailing_crc(self.framing, &head, payload).to_le_bytes())?;
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

    /// Writes the end (the trailer; or the index and footer) and returns the writer.
    pub fn finish(mut self) -> Result<W, FormatError> {
        let chunk_count = self.entries.len() as u64;
        let content_crc32 = self.content.clone().finalize();
        match self.framing {
            Framing::Compact => self.w.write_all(&Trailer { chunk_count, content_crc32 }.to_bytes())?,
            Framing::Indexed => {
                let index = encode_index(&self.entries);
                self.w.write_all(&index)?;
                let footer = Footer {
                    total_original: self.total_original,
                    chunk_count,
                    content_crc32,
                    index_len: index.len() as u32,
                };
                self.w.write_all(&footer.to_bytes())?;
            }
        }
        self.w.flush()?;
        Ok(self.w)
    }
}

/// Reads an archive front to back without seeking: header, then chunks, then the end (trailer, or index
/// and footer), which must agree with the chunks read.
pub struct ArchiveReader<R: Read> {
    r: R,
    header: Header,
    entries: Vec<IndexEntry>,
    /// CRC-32 of the decoded content so far, fed by [`ArchiveReader::note_original`].
    content: crc32fast::Hasher,
    total_original: u64,
    bytes_read: u64,
    /// The whole-content CRC-32 the end records, once it was read and agreed with the chunks.
    end_crc32: Option<u32>,
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
            end_crc32: None,
        })
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The next chunk, or `None` once the archive's end has been read and checked.
    pub fn next_chunk(&mut self) -> Result<Option<Chunk>, FormatError> {
        if self.end_crc32.is_some() {
            return Ok(None);
        }
        let index = self.entries.len() as u64;
        let mut kind = [0u8; 1];
        read_exact_or(&mut self.r, &mut kind, || format!("where chunk {index} or the index should start"))?;
        if kind[0] == END_MARKER {
            match self.header.framing {
                Framing::Compact => self.read_trailer()?,
                Framing::Indexed => self.read_index_and_footer()?,
            }
            return Ok(None);
        }
        let chunk = Chunk::read_after_kind(&mut self.r, kind[0], index, self.header.framing)?;
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
        let (trailer, len) = Trailer::read_after_marker(&mut self.r)?;
        let count = self.entries.len() as u64;
        if trailer.chunk_count != count {
            return Err(FormatError::Trailer(format!(
                "it counts {} chunks but {count} were read",
                trailer.chunk_count
            )));
        }
        self.bytes_read += len as u64;
        self.end_crc32 = Some(trailer.content_crc32);
        Ok(())
    }

    fn read_index_and_footer(&mut self) -> Result<(), FormatError> {
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
        self.end_crc32 = Some(footer.content_crc32);
        Ok(())
    }

    /// Feeds the decoded bytes of each chunk, in order, so [`ArchiveReader::finish`] can check the
    /// footer's whole-content CRC-32.
    pub fn note_original(&mut self, bytes: &[u8]) {
        self.content.update(bytes);
        self.total_original += bytes.len() as u64;
    }

    /// After the last chunk: checks the whole-content CRC-32 and length, and returns the archive's size
    /// and the reader, positioned just after its end (where a concatenated archive may follow).
    pub fn finish(self) -> Result<(u64, R), FormatError> {
        let stored =
            self.end_crc32.ok_or_else(|| FormatError::Truncated { place: "before its end".into() })?;
        let computed = self.content.finalize();
        let total: u64 = self.entries.iter().map(|e| e.original_len as u64).sum();
        if self.total_original != total || computed != stored {
            return Err(FormatError::Checksum { place: "whole-content".into(), stored, computed });
        }
        Ok((self.bytes_read, self.r))
    }
}
