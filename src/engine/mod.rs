//! Deterministic transformer runtime: the model that turns tokens into logits, bit for bit the same on
//! every machine, thread count, batch size, kernel path and call pattern.
//!
//! # Why our own engine
//! The decoder of an LLM compressor must rebuild exactly the frequency tables the encoder used, so the
//! logits must not depend on anything but the model file and the token sequence. Stock runtimes pick
//! different kernels for one row and for many rows, reduce in thread-dependent orders and call libm; each
//! of those changes a logit by an ulp now and then, which is enough to lose the rest of an archive.
//!
//! # How determinism is obtained (the contract of ARCHITECTURE.md section 2)
//! - **Integer products.** Weights are converted once at load into blocks of 32 small integers with an
//!   f32 scale (and an f32 minimum for 4-bit types, both stored as f16 where exact); activations are
//!   quantized per 32-block to int8. The product of one weight block and one activation block is an
//!   exact `i32`, the same in any order.
//! - **One float order.** Everything in float is written once with a fixed evaluation order, and every
//!   SIMD path uses the same lane structure and reduction tree as the scalar path ([`crate::arch`]'s
//!   [`LANES`](crate::arch::LANES) and [`tree8`](crate::arch::tree8); see [`kernels`]). Block
//!   contributions go to 8 lane accumulators by block index mod 8 and are summed by one fixed tree.
//! - **No fused multiply-add** anywhere (a crate-wide choice), and no libm: `exp`, `sin`, `cos` come from
//!   [`crate::arch::math`]; `sqrt` and the f16 conversions are IEEE-exact operations.
//! - **Kernels chosen once.** The engine resolves its [`KernelPath`] once at load and holds that path's
//!   table of kernels ([`kernels::Kernels`]); every hot loop is a call through it.
//! - **Independence from the batch.** The result for one (row, output) never depends on which other rows
//!   are in the product, so a sequence gives the same logits alone, inside a batch, in one prefill or one
//!   token at a time. Threads split output rows and (row, head) pairs, never a reduction.
//!
//! # Where things are
//! - [`Model`]: the public entry point; it reads `general.architecture` and loads that architecture.
//! - `runtime/`: what every architecture shares: entry points and their checks, the parallel
//!   schedules of products and attention, the float operations, metadata access; and [`cache`].
//! - one file per architecture ([`llama`]): its configuration, weight names and graph, nothing else.
//! - [`kernels`]: the int8 products, attention and element-wise loops of every kernel path.
//!
//! The engine knows nothing of tokens' spelling, quantizers or containers: it reads a model file and
//! turns token ids into logits.
//!
//! Any change to the arithmetic changes [`ENGINE_VERSION`]: archives record it, and the canary (a hash of
//! the engine's output on a fixed probe) catches an engine that computes differently.

pub mod cache;
pub mod gemma3;
pub mod kernels;
pub mod llama;
mod model;
mod runtime;
pub mod synthetic;
mod weights;

pub use crate::arch::{KERNEL_ENV, KernelPath};
pub use cache::{KvCache, KvFormat, KvLayout};
pub use kernels::Kernels;
pub use llama::LlamaConfig;
pub use model::Model;
pub use runtime::MAX_POSITION;

/// Version of the engine's arithmetic. Bumping it is a deliberate, versioned event: every change to the
/// logits (a different order of float operations, a different conversion of a weight type, a different
/// RoPE or softmax) must bump it, update the pinned logits hash in the tests, and thereby make older
/// archives refuse to decode with a clear message instead of decoding garbage. The newest version is
/// what the encoder writes; every [`EngineVersion`] stays decodable.
pub const ENGINE_VERSION: u32 = EngineVersion::NEWEST.number();

/// The engine's arithmetic an archive was coded with. The versions differ only in the key/value cache
/// and the attention that reads it ([`cache::KvFormat`]); everything else (weights, products, norms,
/// RoPE, the output head) is the same. A cache is made for one version ([`Model::new_cache`]) and the
/// attention follows the cache, so one loaded model serves archives of every version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EngineVersion {
    /// Keys and values stored as f16, attention in f32 ([`kernels::Kernels::attend`]).
    V1,
    /// Keys and values stored as int8 with one f32 scale per position and head, the scores as exact
    /// integer dot products ([`kernels::Kernels::attend_q8`]): half the cache's memory and traffic,
    /// faster scores, and no measurable cost in bits (README, *A smaller key/value format*).
    V2,
}

impl EngineVersion {
    /// What new archives are coded with.
    pub const NEWEST: EngineVersion = EngineVersion::V2;
    /// Every version this engine computes, oldest first.
    pub const ALL: [EngineVersion; 2] = [EngineVersion::V1, EngineVersion::V2];

    /// The number archives record.
    pub const fn number(self) -> u32 {
        match self {
            EngineVersion::V1 => 1,
            EngineVersion::V2 => 2,
        }
    }

    /// The version an archive's number names, if this engine computes it.
    pub fn from_number(n: u32) -> Option<EngineVersion> {
        Self::ALL.into_iter().find(|v| v.number() == n)
    }

    /// How this version's caches store keys and values.
    pub fn kv_format(self) -> cache::KvFormat {
        match self {
            EngineVersion::V1 => cache::KvFormat::F16,
            EngineVersion::V2 => cache::KvFormat::Q8,
        }
    }
}

/// How the engine runs. The results never depend on these options; only the speed does.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EngineOptions {
    /// Worker threads of the engine's own pool; 0 means one per available core.
    pub threads: usize,
    /// Kernel path; `None` means the environment variable [`KERNEL_ENV`] if set, else the best available.
    pub kernel: Option<KernelPath>,
}

/// Everything that can go wrong when loading or running a model. Each message is one line that says what
/// was seen, what was expected and, where it helps, how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(
        "unsupported model architecture '{seen}': this engine runs 'llama' (SmolLM2 and friends) and 'gemma3'; pick a GGUF of one of them"
    )]
    UnsupportedArchitecture { seen: String },
    #[error("GGUF metadata key '{key}' is missing; the file is not a complete GGUF of its architecture")]
    MissingMetadata { key: String },
    #[error("GGUF metadata key '{key}' has {seen}, expected {expected}")]
    BadMetadata { key: String, seen: String, expected: String },
    #[error(
        "tensor '{name}' is missing from the GGUF; the model's architecture needs it (is the file complete?)"
    )]
    MissingTensor { name: String },
    #[error(
        "tensor '{name}' has type {dtype}, which this engine cannot read; re-export the model as Q4_0, Q4_1, Q8_0, Q4_K, Q6_K, F16 or F32"
    )]
    UnsupportedTensorType { name: String, dtype: String },
    #[error("tensor '{name}' has shape {seen}, expected {expected}")]
    TensorShape { name: String, seen: String, expected: String },
    #[error(
        "tensor '{name}' needs bytes {start}..{end} of the file but the file has {file_len} bytes; the GGUF is truncated"
    )]
    TensorOutOfFile { name: String, start: u64, end: u64, file_len: usize },
    #[error("model shape not supported: {what}")]
    UnsupportedShape { what: String },
    #[error("reading tensor '{name}' with candle failed: {message}")]
    Candle { name: String, message: String },
    #[error(
        "KV cache full: it holds {len} of {capacity} positions and {adding} more were given; create the cache with a larger capacity or start a new window"
    )]
    CapacityExceeded { len: usize, capacity: usize, adding: usize },
    #[error("token id {token} at index {index} is out of range: the model's vocabulary has {vocab} tokens")]
    TokenOutOfRange { token: u32, index: usize, vocab: usize },
    #[error("{what}: got {seen}, expected {expected}")]
    LengthMismatch { what: &'static str, seen: usize, expected: usize },
    #[error(
        "KV cache does not fit this model: it has {seen_layers} layers x {seen_kv_dim} dims, the model needs {layers} x {kv_dim}; create it with this model's new_cache"
    )]
    CacheMismatch { seen_layers: usize, seen_kv_dim: usize, layers: usize, kv_dim: usize },
    #[error("position {position} is beyond what RoPE supports here (at most {max}); use a shorter context")]
    PositionTooLarge { position: usize, max: usize },
    #[error(
        "cannot slide the KV cache: keeping {keep} and dropping {drop} positions needs keep + drop <= {len}, the positions it holds; drop fewer"
    )]
    SlideOutOfRange { keep: usize, drop: usize, len: usize },
    /// A windowed layer's rolling cache let go of positions the next one's window reads: it was
    /// truncated further back than the last call began, or slid back into its sink tile with a
    /// larger `keep` than before.
    #[error(
        "KV cache layer {layer} no longer holds what the window of position {len} reads: it keeps positions from {first} on; truncate no further back than the last call began, slide with the same keep throughout, or clear the cache"
    )]
    WindowDropped { layer: usize, len: usize, first: usize },
    /// The kernel path asked for is unknown or not available on this CPU.
    #[error(transparent)]
    Arch(#[from] crate::arch::ArchError),
    #[error("could not start {threads} engine threads: {message}")]
    ThreadPool { threads: usize, message: String },
}
