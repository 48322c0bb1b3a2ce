//! Compression and decompression of whole streams: the layer that joins model, tokenizer, engine,
//! quantizer, coder and container.
//!
//! `compress.rs` and `decompress.rs` are mirror images; everything both sides must agree on lives in a
//! module they share: the window schedule ([`window`]) and the session setup, header and canary
//! ([`session`]).
//!
//! Chunks are independent: each is tokenized and coded on its own, so a decoder may decode any group of
//! chunks in lock-step (the engine's batch) without that grouping being part of the format.

mod compress;
mod decompress;
mod entropy;
mod error;
pub mod eval;
mod predict;
mod segment;
mod session;
pub mod window;

pub use compress::compress;
pub use decompress::{LIST_CHECK_OK, Listing, decompress, decompress_reusing, list};
pub use error::PipelineError;
pub use session::Session;

/// Settings of one compression or decompression run, as the CLI (or a library user) chose them.
#[derive(Clone, Debug)]
pub struct CodecOptions {
    /// `--model ID|PATH`; `None` means the registry default (compress) or the archive's model (decompress).
    pub model: Option<String>,
    /// Positions per window (`--context N`).
    pub context: u32,
    /// Tokens of carried-over context at the start of every window but the first (`--overlap K`).
    pub overlap: u32,
    /// Worker threads for the engine; 0 means one per available core.
    pub threads: usize,
    /// Kernel path (`scalar`, `avx2`); `None` means `LLMZIP_KERNEL` or the best available.
    pub kernel: Option<String>,
    /// Target size of the independently coded chunks the input is cut into.
    pub chunk_bytes: usize,
    /// How many chunks the decoder advances in lock-step (the engine's batch size).
    pub lanes: usize,
    /// Model-code every chunk even where storing it would be smaller. For tests and measurements only:
    /// archives stay valid either way.
    pub force_model: bool,
}

impl Default for CodecOptions {
    fn default() -> Self {
        Self {
            model: None,
            context: 2048,
            overlap: 256,
            threads: 0,
            kernel: None,
            chunk_bytes: segment::DEFAULT_CHUNK_BYTES,
            lanes: 16,
            force_model: false,
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
}
