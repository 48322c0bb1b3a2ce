//! Errors of a compression or decompression run. Each lower layer keeps its own typed error; this one adds
//! what only the pipeline knows: which chunk failed, and whether the archive and this build agree.

use std::fmt::Display;

use crate::container::FormatError;
use crate::engine::EngineError;
use crate::model::ModelError;
use crate::tokenizer::TokenizerError;

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Format(#[from] FormatError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    #[error("{0}")]
    Coder(#[from] crate::coder::CoderError),
    #[error(transparent)]
    Schedule(#[from] super::window::ScheduleError),
    #[error(transparent)]
    Mixer(#[from] crate::mix::MixError),
    /// A chunk's payload did not decode to the bytes its checksums describe.
    #[error("chunk {chunk}: {what}; the archive is corrupt")]
    Corrupt { chunk: u64, what: String },
    /// The archive needs a build whose arithmetic this one does not reproduce.
    #[error(
        "this archive was made by engine version {archive} and this llmzip computes engine versions 1 to \
         {newest}; decompress it with an llmzip that has engine version {archive}"
    )]
    EngineVersion { archive: u32, newest: u32 },
    /// The header's precision is not the rule's for the model's vocabulary (FORMAT.md, *Quantizer*).
    #[error(
        "this archive records {archive}-bit frequency tables, but a {vocab}-token vocabulary has {ours}-bit \
         tables in this llmzip; the header is corrupt or was made by an incompatible llmzip, decompress it \
         with the llmzip version that made it"
    )]
    Precision { archive: u8, ours: u8, vocab: usize },
    /// The header's precision is none the rule gives, whatever the model.
    #[error(
        "this archive records {archive}-bit frequency tables, and this llmzip uses 24-bit or 28-bit tables; \
         the header is corrupt or was made by an incompatible llmzip, decompress it with the llmzip version \
         that made it"
    )]
    PrecisionUnknown { archive: u8 },
    #[error(
        "the model's tokenizer (fingerprint {ours}) differs from the one the archive was made with ({archive}); \
         use the model the archive names"
    )]
    TokenizerMismatch { archive: String, ours: String },
    /// The engine's output on the fixed probe differs from the compressor's: decoding would produce garbage.
    #[error(
        "engine self-check failed: this build's model output (canary {ours}) differs from the one the archive \
         records ({archive}); nothing was decoded. Either the archive's header was altered (its checksum is \
         valid, so not by a random error) or this machine computes differently: if the archive is genuine, \
         report it as a bug with `llmzip --version` and your CPU"
    )]
    Canary { archive: String, ours: String },
    /// The archive was made with a model file that is not in the registry.
    #[error(
        "this archive was made with the local model file '{id}' (sha256 {sha256}), which is not in the registry; \
         pass that file with --model PATH"
    )]
    LocalModelNeeded { id: String, sha256: String },
    /// The engine and the tokenizer of one model file disagree on the vocabulary.
    #[error(
        "model {model} has {logits} output logits but its tokenizer has {tokens} tokens; the GGUF file is \
         inconsistent, use another model file"
    )]
    VocabMismatch { model: String, logits: usize, tokens: usize },
    #[error("cannot start {threads} worker threads; try a smaller --threads")]
    ThreadPool {
        threads: usize,
        #[source]
        source: rayon::ThreadPoolBuildError,
    },
    #[error(
        "--context {context} exceeds model {model}'s limit of {max} positions; use --context {max} or less"
    )]
    ContextTooLong { context: u32, model: String, max: usize },
    /// `--chunks A..B` names chunks the input does not have.
    #[error(
        "chunks {start}..{end} are not within the input's {count} chunks (0..{count}); \
         `llmzip c --part K/N` chooses pieces that always exist"
    )]
    ChunkRange { start: u64, end: u64, count: u64 },
}

impl PipelineError {
    pub(super) fn corrupt(chunk: u64, what: impl Display) -> Self {
        Self::Corrupt { chunk, what: what.to_string() }
    }
}
