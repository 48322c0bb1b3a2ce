//! Cutting a stream into chunks: bounded memory for any input size, cut points that do not split words.

use std::io::{self, Read};

/// Default chunk size. Each chunk starts cold (its first window has no earlier text), so larger chunks
/// code better; smaller chunks give the decoder more lanes to advance in lock-step. 64 KiB is about
/// 16k tokens of English, so the cold start is a small fraction of a chunk.
pub const DEFAULT_CHUNK_BYTES: usize = 64 * 1024;

/// How far back from the target size a cut may move to land after a newline or space.
const CUT_SEARCH: usize = 4096;

/// The smallest chunk [`chunk_bytes_for_size`] cuts a file into. Measured on alice29.txt (152,089 bytes,
/// default settings): 3 chunks of 64 KiB 21,061 bytes, 5 of 32 KiB 21,241 (+0.85%): each further cold
/// start costs about 0.4% there, so chunks below 32 KiB would cost more than the lanes buy.
pub const MIN_LANE_CHUNK_BYTES: usize = 32 * 1024;

/// The chunk size for an input of `size` bytes (a file, whose size is known before it is read), so
/// that its decoder has up to `lanes` chunks to advance together: `size` split into as many nearly
/// equal chunks as hold at least [`MIN_LANE_CHUNK_BYTES`] each, at most `lanes` of them, and never
/// chunks above [`DEFAULT_CHUNK_BYTES`] (larger inputs are cut as a stream is). The target has room for
/// every cut to move back by [`CUT_SEARCH`], so the cuts give exactly that many chunks.
///
/// A pure function of the size: the archive records the chunks, not the rule, and `c --part K/N` of
/// the same file cuts it the same way in every run.
pub fn chunk_bytes_for_size(size: u64, lanes: usize) -> usize {
    let wanted = (size / MIN_LANE_CHUNK_BYTES as u64).clamp(1, lanes.max(1) as u64);
    let target = size.div_ceil(wanted) + CUT_SEARCH as u64;
    target.min(DEFAULT_CHUNK_BYTES as u64) as usize
}

/// Reads a stream as a sequence of chunks of at most `target` bytes, holding at most one chunk plus the
/// carried-over tail in memory.
pub struct ChunkReader<R> {
    inner: R,
    target: usize,
    /// Bytes read past the previous cut, to start the next chunk.
    carry: Vec<u8>,
    eof: bool,
}

impl<R: Read> ChunkReader<R> {
    pub fn new(inner: R, target: usize) -> Self {
        assert!(target > 0, "chunk size must be positive");
        Self { inner, target, carry: Vec::new(), eof: false }
    }

    /// The next chunk, or `None` at the end of the stream. Chunks are never empty.
    pub fn next_chunk(&mut self) -> io::Result<Option<Vec<u8>>> {
        let mut buf = std::mem::take(&mut self.carry);
        buf.reserve(self.target.saturating_sub(buf.len()));
        while buf.len() < self.target && !self.eof {
            let want = self.target - buf.len();
            let got = (&mut self.inner).take(want as u64).read_to_end(&mut buf)?;
            if got == 0 {
                self.eof = true;
            }
        }
        if buf.is_empty() {
            return Ok(None);
        }
        if buf.len() == self.target && !self.eof {
            let cut = cut_point(&buf);
            self.carry = buf.split_off(cut);
        }
        Ok(Some(buf))
    }
}

/// The byte ranges of the chunks [`ChunkReader`] cuts `input` into with chunk size `target`: where the
/// compressor cuts, computed without a model (the cuts depend on the bytes alone), so a scheduler can
/// choose pieces of an input before any of it is compressed (`llmzip c --part K/N`).
pub fn chunk_spans(input: impl Read, target: usize) -> io::Result<Vec<std::ops::Range<u64>>> {
    let mut chunks = ChunkReader::new(input, target);
    let (mut spans, mut at) = (Vec::new(), 0u64);
    while let Some(c) = chunks.next_chunk()? {
        spans.push(at..at + c.len() as u64);
        at += c.len() as u64;
    }
    Ok(spans)
}

/// Where to end a full buffer: just after the last newline (else space) in its final `CUT_SEARCH` bytes,
/// else at its end.
fn cut_point(buf: &[u8]) -> usize {
    let lo = buf.len().saturating_sub(CUT_SEARCH);
    let tail = &buf[lo..];
    let pos = tail.iter().rposition(|&b| b == b'\n').or_else(|| tail.iter().rposition(|&b| b == b' '));
    pos.map_or(buf.len(), |p| lo + p + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(data: &[u8], target: usize) -> Vec<Vec<u8>> {
        let mut r = ChunkReader::new(data, target);
        let mut out = Vec::new();
        while let Some(c) = r.next_chunk().unwrap() {
            out.push(c);
        }
        out
    }

    #[test]
    fn concatenation_restores_the_input_and_chunks_are_bounded() {
        let text: Vec<u8> =
            (0..200_000u32).map(|i| if i % 37 == 0 { b'\n' } else { b'a' + (i % 26) as u8 }).collect();
        for &target in &[1, 7, 4096, 10_000, 65_536, 1 << 20] {
            let cs = chunks(&text, target);
            assert!(cs.iter().all(|c| !c.is_empty() && c.len() <= target));
            assert_eq!(cs.concat(), text);
        }
        assert!(chunks(&[], 10).is_empty());
    }

    #[test]
    fn spans_are_the_chunks_the_reader_cuts() {
        let text: Vec<u8> = (0..50_000u32).map(|i| if i % 61 == 0 { b' ' } else { b'q' }).collect();
        let spans = chunk_spans(&text[..], 4096).unwrap();
        let cs = chunks(&text, 4096);
        assert_eq!(spans.len(), cs.len());
        for (span, c) in spans.iter().zip(&cs) {
            assert_eq!(&text[span.start as usize..span.end as usize], &c[..]);
        }
        assert!(chunk_spans(&[][..], 10).unwrap().is_empty());
    }

    /// Text with a newline every 61 bytes, so every cut moves back.
    fn lines(len: usize) -> Vec<u8> {
        (0..len).map(|i| if i % 61 == 60 { b'\n' } else { b'a' + (i % 26) as u8 }).collect()
    }

    #[test]
    fn files_are_cut_into_equal_chunks_for_the_lanes() {
        let count = |size: usize, lanes| chunks(&lines(size), chunk_bytes_for_size(size as u64, lanes)).len();
        // Below two minimum chunks: one chunk.
        assert_eq!(count(1000, 16), 1);
        assert_eq!(count(2 * MIN_LANE_CHUNK_BYTES - 1, 16), 1);
        // As many chunks of at least the minimum as fit, exactly, however the cuts move.
        assert_eq!(count(152_089, 16), 4);
        assert_eq!(count(5 * MIN_LANE_CHUNK_BYTES + 10, 16), 5);
        assert_eq!(count(100_000, 2), 2);
        // Never larger than the default chunk: big files are cut as streams are.
        assert_eq!(count(152_089, 2), 3);
        assert_eq!(chunk_bytes_for_size(100 << 20, 16), DEFAULT_CHUNK_BYTES);
        assert_eq!(chunk_bytes_for_size(600_000, 4), DEFAULT_CHUNK_BYTES);
        assert_eq!(chunk_bytes_for_size(0, 16), CUT_SEARCH);
        // Every chunk but the last holds at least the minimum.
        for size in [40_000usize, 152_089, 500_000, 1_000_000] {
            let cs = chunks(&lines(size), chunk_bytes_for_size(size as u64, 16));
            let (last, rest) = cs.split_last().expect("a chunk");
            assert!(rest.iter().all(|c| c.len() >= MIN_LANE_CHUNK_BYTES), "{size}");
            assert!(!last.is_empty() && (size > 16 * DEFAULT_CHUNK_BYTES || cs.len() <= 16), "{size}");
        }
    }

    #[test]
    fn cuts_after_a_newline_when_one_is_near() {
        let mut text = vec![b'x'; 9000];
        text[8000] = b'\n';
        let cs = chunks(&text, 8192);
        assert_eq!(cs[0].len(), 8001);
    }
}
