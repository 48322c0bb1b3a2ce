//! Compression and decompression of whole streams: the layer that joins model, tokenizer, engine,
//! quantizer, coder and container.
//!
//! `compress.rs` and `decompress.rs` are mirror images; everything both sides must agree on lives in a
//! module they share: the coding parameters ([`params`]), the window schedule ([`window`]), the prefill
//! loop (`prefill.rs`) and the session setup, header and canary (`session.rs`).
//!
//! A [`Session`] (model resolved, hashed, loaded and self-checked) is the expensive part of a run; the
//! `*_with` functions take an open one so that a command over many files sets its model up once.
//!
//! Chunks are independent: each is tokenized and coded on its own, so a decoder may decode any group of
//! chunks in lock-step (the engine's batch) without that grouping being part of the format.

mod compress;
mod decompress;
mod draft;
mod entropy;
mod error;
pub mod eval;
pub mod level;
pub mod params;
mod predict;
mod prefill;
mod segment;
mod session;
pub mod window;

pub use compress::{compress, compress_with};
pub use decompress::{LIST_CHECK_OK, Listing, decompress, decompress_with, list};
pub use error::PipelineError;
pub use params::CodingParams;
pub use segment::{DEFAULT_CHUNK_BYTES, chunk_spans};
pub use session::{CANARY_TEXT, Session, Sessions};

use crate::container::Framing;
use crate::engine::{EngineVersion, KernelPath};
use crate::mix::MixConfig;

/// Settings of one compression or decompression run, as the CLI (or a library user) chose them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodecOptions {
    /// `--model ID|PATH`; `None` means the registry default (compress) or the archive's model (decompress).
    pub model: Option<String>,
    /// Positions per window (`--context N`).
    pub context: u32,
    /// Window schedule only (`slide == 0`): tokens of carried-over context at the start of every window
    /// but the first (`--overlap K`).
    pub overlap: u32,
    /// Positions a full KV cache drops (`--slide N`, the sliding schedule); `Some(0)` selects the window
    /// schedule, `None` the default for the context ([`params::default_slide`]).
    pub slide: Option<u32>,
    /// The mixer blended into the model's tables (`MixConfig::OFF`: none, `--no-mix`).
    pub mix: MixConfig,
    /// Worker threads for the engine; 0 means one per available core.
    pub threads: usize,
    /// Kernel path; `None` means `LLMZIP_KERNEL` or the best available.
    pub kernel: Option<KernelPath>,
    /// Target size of the independently coded chunks the input is cut into.
    pub chunk_bytes: usize,
    /// Where the input's size is known ([`CodecOptions::for_input_size`]): cut it into chunks for the
    /// decoder's lanes (`segment::chunk_bytes_for_size`) instead of `chunk_bytes`. The CLI sets it
    /// unless `--chunk-size` is given; off by default, so library callers get `chunk_bytes`.
    pub fit_chunks_to_size: bool,
    /// How many chunks the decoder advances in lock-step (the engine's batch size).
    pub lanes: usize,
    /// Decoding only: guess the next tokens from the chunk's history and confirm them in one engine
    /// call (`draft.rs`). The output is the same either way; off is for tests and measurements.
    pub speculate: bool,
    /// Model-code every chunk even where storing it would be smaller. For tests and measurements only:
    /// archives stay valid either way.
    pub force_model: bool,
    /// Compress only these chunks of the input (0-based, end exclusive), cut where a compression of the
    /// whole input cuts them: one piece of the archive the whole input gives (`llmzip c --chunks A..B`,
    /// `--part K/N`). An end of `u64::MAX` runs to the last chunk; `None`: every chunk.
    pub chunk_range: Option<std::ops::Range<u64>>,
    /// The archive framing to write: compact (version 3, the default) or the indexed framing of
    /// versions 1 and 2, which llmzip still writes so that archives made before version 3 can be
    /// re-made byte for byte (the golden files' test). Decoding reads the header's.
    pub framing: Framing,
    /// The engine version to compress with: the newest by default; older ones so that archives made
    /// before it can be re-made byte for byte (the golden files' test). Decoding reads the header's.
    pub engine: EngineVersion,
}

impl CodecOptions {
    /// The slide these options ask for: `slide`, or the default for `context`.
    pub fn slide(&self) -> u32 {
        self.slide.unwrap_or_else(|| params::default_slide(self.context))
    }

    /// Cuts every input into chunks of `bytes` (`--chunk-size`), whatever its size: a chosen size
    /// replaces the fitted layout.
    pub fn fix_chunk_bytes(&mut self, bytes: usize) {
        self.chunk_bytes = bytes;
        self.fit_chunks_to_size = false;
    }

    /// These options for an input of `size` bytes (`None`: unknown, a pipe): with
    /// `fit_chunks_to_size`, the chunk size that gives the decoder up to [`params::DEFAULT_LANES`]
    /// chunks (the lanes a decoder runs by default; the encoder cannot know the decoder's choice).
    pub fn for_input_size(&self, size: Option<u64>) -> CodecOptions {
        let mut opts = self.clone();
        if let (true, Some(size)) = (self.fit_chunks_to_size, size) {
            opts.chunk_bytes = segment::chunk_bytes_for_size(size, params::DEFAULT_LANES);
        }
        opts
    }
}

impl Default for CodecOptions {
    fn default() -> Self {
        Self {
            model: None,
            context: params::DEFAULT_CONTEXT,
            overlap: params::default_overlap(params::DEFAULT_CONTEXT),
            slide: None,
            mix: MixConfig::recommended(),
            threads: 0,
            kernel: None,
            chunk_bytes: segment::DEFAULT_CHUNK_BYTES,
            fit_chunks_to_size: false,
            lanes: params::DEFAULT_LANES,
            speculate: true,
            force_model: false,
            chunk_range: None,
            framing: Framing::Compact,
            engine: EngineVersion::NEWEST,
        }
    }
}

/// What a run did, for `-v` and `bench`.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// Bytes read (original bytes when compressing, archive bytes when decompressing).
    pub input_bytes: u64,
    /// Bytes written.
    pub output_bytes: u64,
    /// Original (uncompressed) bytes.
    pub original_bytes: u64,
    /// Archive bytes.
    pub archive_bytes: u64,
    /// Tokens that went through the model.
    pub tokens: u64,
    pub chunks: u64,
    pub stored_chunks: u64,
    /// Compression only: windows the model-coded chunks were cut into, and the model's ideal code
    /// length of their tokens in those windows (sum of `-log2 p` under the float softmax). The archive
    /// is this plus the table rounding, the coder's flush and the container.
    pub windows: u64,
    pub ideal_bits: f64,
    pub seconds: f64,
    /// Decompression only: engine calls summed over the lanes in each (a lane's share of a batched
    /// call counts once), so `tokens / lane_calls` is the tokens one call gave a lane (1 without
    /// speculation, less the window-start prefills); and the draft tokens guessed and confirmed.
    pub lane_calls: u64,
    pub drafted: u64,
    pub accepted: u64,
}

impl Stats {
    /// Archive bits per original byte.
    pub fn bits_per_byte(&self) -> f64 {
        if self.original_bytes == 0 {
            0.0
        } else {
            self.archive_bytes as f64 * 8.0 / self.original_bytes as f64
        }
    }

    pub fn tokens_per_second(&self) -> f64 {
        if self.seconds > 0.0 { self.tokens as f64 / self.seconds } else { 0.0 }
    }

    /// The statistics as one machine-readable line (`--stats-file`): tab-separated `key=value` fields,
    /// `op` and `file` first, then every figure under its field name. Floats are written so that they
    /// parse back to the same value. Control characters in `file` become `?`, so the line stays one line.
    pub fn record(&self, operation: &str, file: &str) -> String {
        let file: String = file.chars().map(|c| if c.is_control() { '?' } else { c }).collect();
        format!(
            "op={operation}\tfile={file}\tinput_bytes={}\toutput_bytes={}\toriginal_bytes={}\t\
             archive_bytes={}\ttokens={}\tchunks={}\tstored_chunks={}\twindows={}\tideal_bits={}\tseconds={}\t\
             lane_calls={}\tdrafted={}\taccepted={}\n",
            self.input_bytes,
            self.output_bytes,
            self.original_bytes,
            self.archive_bytes,
            self.tokens,
            self.chunks,
            self.stored_chunks,
            self.windows,
            self.ideal_bits,
            self.seconds,
            self.lane_calls,
            self.drafted,
            self.accepted,
        )
    }

    /// Reads a line written by [`Stats::record`] back: `(op, file, stats)`, or `None` when a figure is
    /// missing or does not parse. Unknown fields are ignored, so records may gain fields.
    pub fn from_record(line: &str) -> Option<(String, String, Stats)> {
        let fields: std::collections::HashMap<&str, &str> =
            line.trim_end_matches('\n').split('\t').filter_map(|f| f.split_once('=')).collect();
        let int = |k: &str| fields.get(k)?.parse::<u64>().ok();
        let float = |k: &str| fields.get(k)?.parse::<f64>().ok();
        let stats = Stats {
            input_bytes: int("input_bytes")?,
            output_bytes: int("output_bytes")?,
            original_bytes: int("original_bytes")?,
            archive_bytes: int("archive_bytes")?,
            tokens: int("tokens")?,
            chunks: int("chunks")?,
            stored_chunks: int("stored_chunks")?,
            windows: int("windows")?,
            ideal_bits: float("ideal_bits")?,
            seconds: float("seconds")?,
            // Added later than the others: a record without them reads as none.
            lane_calls: int("lane_calls").unwrap_or(0),
            drafted: int("drafted").unwrap_or(0),
            accepted: int("accepted").unwrap_or(0),
        };
        Some((fields.get("op")?.to_string(), fields.get("file")?.to_string(), stats))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_statistics_record_reads_back_exactly() {
        let s = Stats {
            input_bytes: 1000,
            output_bytes: 250,
            original_bytes: 1000,
            archive_bytes: 250,
            tokens: 300,
            chunks: 2,
            stored_chunks: 1,
            windows: 3,
            ideal_bits: 1_234.567_890_123,
            seconds: 0.1 + 0.2,
            lane_calls: 280,
            drafted: 40,
            accepted: 25,
        };
        let line = s.record("compress", "a\tb\nc");
        assert_eq!(line.lines().count(), 1);
        let (op, file, back) = Stats::from_record(&line).unwrap();
        assert_eq!((op.as_str(), file.as_str()), ("compress", "a?b?c"));
        assert_eq!(format!("{back:?}"), format!("{s:?}"));
        assert_eq!(back.ideal_bits.to_bits(), s.ideal_bits.to_bits());
        assert!(Stats::from_record("op=compress\tfile=x\ttokens=1").is_none());
        assert!(Stats::from_record(&line.replace("tokens=300", "tokens=many")).is_none());
    }
}
