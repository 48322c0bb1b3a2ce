//! The values that choose a piece of an input or an archive: `--chunks A..B`, `--part K/N` and
//! `--chunk-size BYTES`. Parsing only (clap calls these), so a bad value is a usage error before anything
//! is read.

use std::fmt;
use std::ops::Range;

use crate::container::{MAX_CHUNK_BYTES, part_range};

/// `--chunks A..B`: chunks `A` to `B - 1`, 0-based as `llmzip l --index` numbers them; `A..` runs to
/// the last chunk, `A` alone is the one chunk `A`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkRange {
    pub start: u64,
    /// `None`: to the end.
    pub end: Option<u64>,
}

impl ChunkRange {
    /// The chunks of an input of `count` chunks (the range may still lie outside it; callers check).
    pub fn resolve(self, count: u64) -> Range<u64> {
        self.start..self.end.unwrap_or(count.max(self.start))
    }
}

impl fmt::Display for ChunkRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.end {
            Some(end) => write!(f, "{}..{end}", self.start),
            None => write!(f, "{}..", self.start),
        }
    }
}

/// `--part K/N`: the K-th (1-based) of N consecutive parts of about equal chunk counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Part {
    /// Invariant: `1 <= k <= n`.
    pub k: u64,
    pub n: u64,
}

impl Part {
    pub fn resolve(self, count: u64) -> Range<u64> {
        part_range(count, self.k, self.n)
    }
}

pub fn parse_chunk_range(s: &str) -> Result<ChunkRange, String> {
    let number = |t: &str| {
        t.parse::<u64>().map_err(|_| format!("{t:?} is not a chunk number; write A..B, A.. or A (0-based)"))
    };
    match s.split_once("..") {
        None => {
            let a = number(s)?;
            Ok(ChunkRange { start: a, end: Some(a + 1) })
        }
        Some((a, b)) => {
            let start = if a.is_empty() { 0 } else { number(a)? };
            let end = if b.is_empty() { None } else { Some(number(b)?) };
            match end {
                Some(end) if end <= start => Err(format!(
                    "{s} selects no chunks (A..B runs from A to B-1, so B must be greater than A)"
                )),
                _ => Ok(ChunkRange { start, end }),
            }
        }
    }
}

pub fn parse_part(s: &str) -> Result<Part, String> {
    let bad = || format!("{s:?} is not K/N (part K of N, 1 <= K <= N, for example 2/4)");
    let (k, n) = s.split_once('/').ok_or_else(bad)?;
    let (k, n) = (k.parse::<u64>().map_err(|_| bad())?, n.parse::<u64>().map_err(|_| bad())?);
    if k == 0 || k > n {
        return Err(bad());
    }
    Ok(Part { k, n })
}

/// Bytes with an optional binary suffix (`K`/`KiB`, `M`/`MiB`), from 1 byte to 16 MiB.
pub fn parse_chunk_size(s: &str) -> Result<usize, String> {
    let bad = || format!("{s:?} is not a chunk size; write bytes, or a number with K or M (for example 64K)");
    let t = s.trim();
    let (digits, unit) = match t.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => t.split_at(i),
        None => (t, ""),
    };
    let scale: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        _ => return Err(bad()),
    };
    let n = digits.parse::<u64>().map_err(|_| bad())?.checked_mul(scale).ok_or_else(bad)?;
    if n == 0 || n > MAX_CHUNK_BYTES as u64 {
        return Err(format!("chunk size {s} is outside 1 byte..=16M (the format's largest chunk)"));
    }
    Ok(n as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_ranges_parse_with_open_ends_and_single_chunks() {
        assert_eq!(parse_chunk_range("2..5"), Ok(ChunkRange { start: 2, end: Some(5) }));
        assert_eq!(parse_chunk_range("3.."), Ok(ChunkRange { start: 3, end: None }));
        assert_eq!(parse_chunk_range("..4"), Ok(ChunkRange { start: 0, end: Some(4) }));
        assert_eq!(parse_chunk_range("7"), Ok(ChunkRange { start: 7, end: Some(8) }));
        assert_eq!(parse_chunk_range("3..").unwrap().resolve(10), 3..10);
        assert_eq!(parse_chunk_range("12..").unwrap().resolve(10), 12..12);
        for bad in ["", "a..b", "5..5", "5..2", "-1..3", "1..2..3"] {
            assert!(parse_chunk_range(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn parts_are_one_based_and_within_n() {
        assert_eq!(parse_part("1/1"), Ok(Part { k: 1, n: 1 }));
        assert_eq!(parse_part("2/4"), Ok(Part { k: 2, n: 4 }));
        for bad in ["0/4", "5/4", "4", "/4", "1/0", "a/b", "1/-2"] {
            assert!(parse_part(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn chunk_sizes_take_binary_suffixes_up_to_the_format_limit() {
        assert_eq!(parse_chunk_size("4096"), Ok(4096));
        assert_eq!(parse_chunk_size("64K"), Ok(65536));
        assert_eq!(parse_chunk_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_chunk_size("16M"), Ok(16 << 20));
        for bad in ["0", "17M", "1G", "k", "-5", "99999999999999999999"] {
            assert!(parse_chunk_size(bad).is_err(), "{bad}");
        }
    }
}
