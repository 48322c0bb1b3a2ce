//! Cutting archives at chunk boundaries and joining them, by copying bytes: no model, nothing decoded.
//!
//! Chunks are independent (each decodes from its own payload alone), so any run of chunks, behind the
//! header they were made under and followed by an index that lists them and a footer that totals them,
//! is an archive. [`scan`] maps a file (one archive or several back to back) without reading payloads;
//! a [`Joiner`] copies chosen chunks, verbatim, into one new archive. Because the new index and footer
//! are functions of the chunks alone, joining the pieces of an archive gives back that archive byte for
//! byte, and joining the archives of consecutive pieces of an input (`llmzip c --part K/N`) gives the
//! archive one `llmzip c` of the whole input writes (FORMAT.md, *Pieces*).
//!
//! Every check a reader makes without decoding is made here too: header, chunk header and payload
//! CRCs, lengths against their limits and the file size, index against chunks, footer totals, and the
//! footer's whole-content CRC against the combination of the chunks' own CRCs. A piece therefore never
//! carries corruption that `llmzip t` would have caught in the source's container.

use std::io::{Read, Seek, SeekFrom, Write};
use std::ops::Range;

use super::chunk::Chunk;
use super::header::{Framing, Header};
use super::stream::ArchiveWriter;
use super::trailer::{END_MARKER, FOOTER_LEN, Footer, IndexEntry, Trailer, decode_index, index_len};
use super::{FormatError, read_exact_or};

/// Where one chunk lies in a scanned file, and what its header says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkPlace {
    /// Which archive of the file holds it (0 for the first).
    pub archive: usize,
    /// Offset of its first byte (the kind byte) in the file.
    pub offset: u64,
    /// Bytes it occupies: header, payload and the CRC after it.
    pub encoded_len: u64,
    /// Offset of its decoded bytes in the file's decoded content (all archives of the file in order).
    pub original_offset: u64,
    pub entry: IndexEntry,
    /// CRC-32 of its decoded bytes, as its header records it.
    pub original_crc32: u32,
}

/// One archive of a scanned file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchivePlace {
    pub header: Header,
    /// Offset of its header in the file, and its length up to the end of its footer.
    pub offset: u64,
    pub len: u64,
    /// Its chunks, as indices into [`Layout::chunks`].
    pub chunks: Range<usize>,
    pub total_original: u64,
}

/// The map of a file of one or more archives: every chunk with its offsets, read from the chunks (whose
/// checksums are verified) and the archives' ends, nothing decoded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Layout {
    pub archives: Vec<ArchivePlace>,
    /// Every chunk of every archive, in file order.
    pub chunks: Vec<ChunkPlace>,
    pub file_bytes: u64,
}

impl Layout {
    /// Decoded bytes of the whole file.
    pub fn total_original(&self) -> u64 {
        self.archives.iter().map(|a| a.total_original).sum()
    }
}

/// What can stop a split or join besides a malformed archive.
#[derive(Debug, thiserror::Error)]
pub enum SplitError {
    #[error(transparent)]
    Format(#[from] FormatError),
    /// Chunks made under different headers cannot share one archive.
    #[error(
        "archive {archive} of this input was made with {detail}; only archives made with the same model and \
         settings can be joined into one (keep such archives as separate files: llmzip d decodes them one \
         after the other)"
    )]
    HeadersDiffer { archive: usize, detail: String },
    #[error(
        "chunks {start}..{end} are not within this input's {count} chunks (0..{count}); \
         `llmzip l --index` lists them"
    )]
    Range { start: u64, end: u64, count: u64 },
    #[error("the file changed while it was being read (chunk at offset {offset}); run the command again")]
    Changed { offset: u64 },
}

/// Maps the archives of `r` (a whole file, from offset 0), walking every chunk from the front and
/// checking every checksum, length and total the archives hold; nothing is decoded.
pub fn scan<R: Read + Seek>(r: &mut R) -> Result<Layout, FormatError> {
    let size = r.seek(SeekFrom::End(0))?;
    r.seek(SeekFrom::Start(0))?;
    let mut r = std::io::BufReader::new(r);
    let mut layout = Layout { file_bytes: size, ..Layout::default() };
    let mut pos = 0u64;
    let mut original_offset = 0u64;
    loop {
        let (header, header_len) = match Header::read_from(&mut r) {
            Ok(h) => h,
            // After a complete archive, bytes that are no archive at all are trailing garbage.
            Err(FormatError::NotArchive | FormatError::OtherFormat { .. }) if pos > 0 => {
                return Err(FormatError::TrailingData { offset: pos });
            }
            Err(e) => return Err(e),
        };
        let archive = layout.archives.len();
        let first_chunk = layout.chunks.len();
        let mut content = crc32fast::Hasher::new();
        let mut at = pos + header_len as u64;
        let mut entries = Vec::new();
        loop {
            let i = entries.len() as u64;
            let mut kind = [0u8; 1];
            read_exact_or(&mut r, &mut kind, || format!("where chunk {i} or the end should start"))?;
            if kind[0] == END_MARKER {
                break;
            }
            let chunk = Chunk::read_after_kind(&mut r, kind[0], i, header.framing)?;
            let entry = IndexEntry {
                kind: chunk.kind,
                original_len: chunk.original_len,
                payload_len: chunk.payload.len() as u32,
                tokens: chunk.tokens as u32,
            };
            entries.push(entry);
            content.combine(&crc32fast::Hasher::new_with_initial_len(
                chunk.original_crc32,
                chunk.original_len as u64,
            ));
            let encoded_len = chunk.encoded_len() as u64;
            layout.chunks.push(ChunkPlace {
                archive,
                offset: at,
                encoded_len,
                original_offset,
                entry,
                original_crc32: chunk.original_crc32,
            });
            original_offset += chunk.original_len as u64;
            at += encoded_len;
        }
        let count = entries.len() as u64;
        let (end_len, content_crc32) = match header.framing {
            Framing::Compact => {
                let (trailer, len) = Trailer::read_after_marker(&mut r)?;
                if trailer.chunk_count != count {
                    return Err(FormatError::Trailer(format!(
                        "it counts {} chunks but {count} were read",
                        trailer.chunk_count
                    )));
                }
                (len as u64, trailer.content_crc32)
            }
            Framing::Indexed => read_index_and_footer(&mut r, &entries)?,
        };
        let computed = content.finalize();
        if computed != content_crc32 {
            return Err(FormatError::Checksum {
                place: "whole-content (combined from the chunks' checksums)".into(),
                stored: content_crc32,
                computed,
            });
        }
        let end = at + end_len;
        let total = entries.iter().map(|e| e.original_len as u64).sum();
        layout.archives.push(ArchivePlace {
            header,
            offset: pos,
            len: end - pos,
            chunks: first_chunk..layout.chunks.len(),
            total_original: total,
        });
        pos = end;
        if pos == size {
            return Ok(layout);
        }
    }
}

/// The index and footer of a version-1 or -2 archive after its marker, checked against the chunks read
/// (`entries`); returns their length and the footer's whole-content CRC-32.
fn read_index_and_footer(r: &mut impl Read, entries: &[IndexEntry]) -> Result<(u64, u32), FormatError> {
    let count = entries.len() as u64;
    let index_bytes = index_len(count);
    let mut index = vec![0u8; index_bytes as usize];
    index[0] = END_MARKER;
    read_exact_or(r, &mut index[1..], || "inside the index".into())?;
    let claimed = u64::from_le_bytes(index[1..9].try_into().expect("8 bytes"));
    if claimed != count {
        return Err(FormatError::Index(format!("it lists {claimed} chunks but {count} were read")));
    }
    if decode_index(&index)? != entries {
        return Err(FormatError::Index("its entries differ from the chunks read".into()));
    }
    let mut f = [0u8; FOOTER_LEN];
    read_exact_or(r, &mut f, || "inside the footer".into())?;
    let footer = Footer::from_bytes(&f)?;
    let total: u64 = entries.iter().map(|e| e.original_len as u64).sum();
    if footer.chunk_count != count || footer.total_original != total || footer.index_len as u64 != index_bytes
    {
        return Err(FormatError::Footer("its totals differ from the chunks read".into()));
    }
    Ok((index_bytes + FOOTER_LEN as u64, footer.content_crc32))
}

/// What `list` shows of one archive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchiveInfo {
    pub header: Header,
    pub chunks: Vec<IndexEntry>,
    pub total_original: u64,
    pub archive_bytes: u64,
}

/// Reads a single archive (as [`read_archives`] does); a file that holds several archives back to
/// back is refused here.
pub fn read_tail<R: Read + Seek>(r: &mut R) -> Result<ArchiveInfo, FormatError> {
    let mut all = read_archives(r)?;
    if all.len() != 1 {
        return Err(FormatError::Trailer(format!("the file holds {} archives back to back", all.len())));
    }
    Ok(all.pop().expect("one archive"))
}

/// Every archive of a file (several may follow each other, FORMAT.md), in file order, from a
/// [`scan`]: every header, chunk and end checked, nothing decoded, and anything after the last archive
/// an error.
pub fn read_archives<R: Read + Seek>(r: &mut R) -> Result<Vec<ArchiveInfo>, FormatError> {
    let layout = scan(r)?;
    Ok(layout
        .archives
        .into_iter()
        .map(|a| ArchiveInfo {
            chunks: layout.chunks[a.chunks].iter().map(|c| c.entry).collect(),
            header: a.header,
            total_original: a.total_original,
            archive_bytes: a.len,
        })
        .collect())
}

/// Chunks `start..end` of `count`, or the error that says which chunks exist.
pub fn check_range(range: &Range<u64>, count: u64) -> Result<(), SplitError> {
    if range.start > range.end || range.end > count {
        return Err(SplitError::Range { start: range.start, end: range.end, count });
    }
    Ok(())
}

/// The chunks of part `k` of `n` (1-based, `1 <= k <= n`) of `count` chunks: consecutive parts, their
/// sizes differing by at most one chunk, together exactly `0..count`. Shared by `c --part` and
/// `split --part`, so both cut at the same chunks.
pub fn part_range(count: u64, k: u64, n: u64) -> Range<u64> {
    assert!(n >= 1 && (1..=n).contains(&k), "part {k} of {n}");
    // u128: count * n cannot overflow.
    let at = |i: u64| (count as u128 * i as u128 / n as u128) as u64;
    at(k - 1)..at(k)
}

/// Writes one archive made of chunks copied verbatim from scanned files.
pub struct Joiner<W: Write> {
    writer: ArchiveWriter<W>,
    header: Header,
    buf: Vec<u8>,
}

impl<W: Write> Joiner<W> {
    /// Writes `header`; every chunk copied must come from an archive with this header.
    pub fn new(w: W, header: &Header) -> Result<Self, FormatError> {
        Ok(Self { writer: ArchiveWriter::new(w, header)?, header: header.clone(), buf: Vec::new() })
    }

    /// Copies chunk `chunk` of `layout` (the map of `r`), checking its header and payload CRCs again as
    /// its bytes pass.
    pub fn copy<R: Read + Seek>(
        &mut self,
        r: &mut R,
        layout: &Layout,
        chunk: usize,
    ) -> Result<(), SplitError> {
        let place = layout.chunks[chunk];
        let from = &layout.archives[place.archive].header;
        if *from != self.header {
            return Err(SplitError::HeadersDiffer {
                archive: place.archive + 1,
                detail: header_difference(&self.header, from),
            });
        }
        r.seek(SeekFrom::Start(place.offset)).map_err(FormatError::Io)?;
        self.buf.clear();
        let got = r.by_ref().take(place.encoded_len).read_to_end(&mut self.buf).map_err(FormatError::Io)?;
        if got as u64 != place.encoded_len {
            return Err(SplitError::Changed { offset: place.offset });
        }
        let index = (chunk - layout.archives[place.archive].chunks.start) as u64;
        let copied = Chunk::read_after_kind(&mut &self.buf[1..], self.buf[0], index, from.framing)?;
        if copied.encoded_len() as u64 != place.encoded_len || copied.original_crc32 != place.original_crc32 {
            return Err(SplitError::Changed { offset: place.offset });
        }
        self.writer.copy_chunk(place.entry, place.original_crc32, &self.buf)?;
        Ok(())
    }

    /// Writes the index and footer; returns the writer.
    pub fn finish(self) -> Result<W, FormatError> {
        self.writer.finish()
    }
}

/// Names the first header field in which `other` differs from `first`, for [`SplitError::HeadersDiffer`].
fn header_difference(first: &Header, other: &Header) -> String {
    let differs = |what: &str, a: String, b: String| format!("{what} {b}, the first archive with {a}");
    if first.model_sha256 != other.model_sha256 || first.model_id != other.model_id {
        differs("model", first.model_id.clone(), other.model_id.clone())
    } else if first.context != other.context || first.overlap != other.overlap {
        differs(
            "context/overlap",
            format!("{}/{}", first.context, first.overlap),
            format!("{}/{}", other.context, other.overlap),
        )
    } else if first.engine_version != other.engine_version {
        differs("engine version", first.engine_version.to_string(), other.engine_version.to_string())
    } else {
        "another header (tokenizer, precision, start token or canary)".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_cover_every_chunk_once_in_order() {
        for count in [0u64, 1, 2, 3, 7, 100] {
            for n in 1..=9u64 {
                let parts: Vec<_> = (1..=n).map(|k| part_range(count, k, n)).collect();
                assert_eq!(parts[0].start, 0);
                assert_eq!(parts.last().unwrap().end, count);
                for w in parts.windows(2) {
                    assert_eq!(w[0].end, w[1].start);
                }
                let sizes: Vec<u64> = parts.iter().map(|p| p.end - p.start).collect();
                assert!(sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1, "{sizes:?}");
            }
        }
        assert_eq!(part_range(u64::MAX, 2, 2).end, u64::MAX);
    }

    #[test]
    fn ranges_outside_the_chunks_are_refused() {
        assert!(check_range(&(0..3), 3).is_ok());
        assert!(check_range(&(3..3), 3).is_ok());
        let e = check_range(&(2..5), 3).unwrap_err().to_string();
        assert_eq!(
            e,
            "chunks 2..5 are not within this input's 3 chunks (0..3); `llmzip l --index` lists them"
        );
        #[allow(clippy::reversed_empty_ranges)]
        let backwards = 2..1;
        assert!(check_range(&backwards, 3).is_err());
    }

    #[test]
    fn combined_crcs_equal_the_crc_of_the_concatenation() {
        let (a, b) = (b"first chunk ".as_slice(), b"and the second".as_slice());
        let mut h = crc32fast::Hasher::new();
        for part in [a, b] {
            h.combine(&crc32fast::Hasher::new_with_initial_len(crc32fast::hash(part), part.len() as u64));
        }
        assert_eq!(h.finalize(), crc32fast::hash(&[a, b].concat()));
    }
}
