//! [`Model`]: a loaded model of any architecture the engine runs, picked from the GGUF's
//! `general.architecture`. Adding an architecture is one file beside `llama.rs` and one line in
//! [`ARCHITECTURES`].

use candle_core::quantized::gguf_file::Content;

use super::cache::KvCache;
use super::kernels::{KernelPath, Kernels};
use super::runtime::meta::architecture;
use super::runtime::{Architecture, MAX_POSITION, Runtime, slide};
use super::{EngineError, EngineOptions, gemma3, llama};

/// Builds an architecture's graph and weights from a GGUF for a runtime.
type Loader = fn(&Content, &[u8], &Runtime) -> Result<Box<dyn Architecture>, EngineError>;

/// Every architecture the engine runs, by its `general.architecture` name.
const ARCHITECTURES: &[(&str, Loader)] = &[
    (llama::ARCH, |c, f, rt| Ok(Box::new(llama::Llama::load(c, f, rt)?))),
    (gemma3::ARCH, |c, f, rt| Ok(Box::new(gemma3::Gemma3::load(c, f, rt)?))),
];

/// A loaded model with its thread pool and kernel path: tokens in, logits out, bit for bit the same for
/// every thread count, kernel path, batch and call pattern (the module docs of [`super`]).
pub struct Model {
    arch: Box<dyn Architecture>,
    rt: Runtime,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("architecture", &self.arch.name())
            .field("kernel", &self.rt.kernel().path())
            .field("threads", &self.rt.threads())
            .finish_non_exhaustive()
    }
}

impl Model {
    /// Loads the model from a parsed GGUF header and the whole file's bytes (a memory map), converting
    /// every weight into the engine's layout once. The architecture comes from `general.architecture`;
    /// one the engine does not run is [`EngineError::UnsupportedArchitecture`].
    pub fn load(content: &Content, file: &[u8], opts: &EngineOptions) -> Result<Self, EngineError> {
        let name = architecture(content)?;
        let Some(&(_, load)) = ARCHITECTURES.iter().find(|(n, _)| *n == name) else {
            return Err(EngineError::UnsupportedArchitecture { seen: name.to_string() });
        };
        let rt = Runtime::new(opts)?;
        let arch = load(content, file, &rt)?;
        Ok(Model { arch, rt })
    }

    /// The GGUF architecture name (`llama`, `gemma3`).
    pub fn architecture(&self) -> &'static str {
        self.arch.name()
    }

    pub fn vocab_size(&self) -> usize {
        self.arch.vocab()
    }

    /// The context length the model was trained for.
    pub fn max_context(&self) -> usize {
        self.arch.max_context()
    }

    /// The kernel path in use.
    pub fn kernel(&self) -> KernelPath {
        self.rt.kernel().path()
    }

    /// The kernels in use (chosen once, at load), whose vector math the quantizer shares.
    pub fn kernels(&self) -> &'static Kernels {
        self.rt.kernel()
    }

    /// Worker threads of the engine's pool.
    pub fn threads(&self) -> usize {
        self.rt.threads()
    }

    /// Bytes of converted weights held in memory.
    pub fn weight_bytes(&self) -> usize {
        self.arch.weight_bytes()
    }

    /// An empty KV cache for `capacity` positions, allocated once (for llama about
    /// `4 * n_layers * kv_dim` bytes per position; pages are touched only when used).
    pub fn new_cache(&self, capacity: usize) -> KvCache {
        KvCache::new(self.arch.kv_layout(), capacity)
    }

    /// Appends `tokens` after the positions already in `cache` and writes `tokens.len() x vocab` logits
    /// (row `t` predicts the token after `tokens[t]`). Any split of a sequence into prefill calls, or
    /// into [`Model::step`] calls, gives the same bits.
    pub fn prefill(
        &self,
        cache: &mut KvCache,
        tokens: &[u32],
        logits: &mut [f32],
    ) -> Result<(), EngineError> {
        self.rt.prefill(&*self.arch, cache, tokens, logits)
    }

    /// Slides the cache: removes positions `keep..keep + drop` of every layer; positions
    /// `keep + drop..len` move down to `keep..len - drop` and their keys are re-rotated by `-drop`
    /// positions with each layer's RoPE; positions `0..keep` stay as they are (an attention sink such
    /// as the start token). The next [`Model::prefill`] or [`Model::step`] continues at position
    /// `cache.len()`, now `len - drop`. The arithmetic is part of the format and specified bit for bit
    /// in the engine's `runtime/slide.rs`; it is one scalar pass, the same on every kernel path and
    /// thread count. `keep + drop > cache.len()` is [`EngineError::SlideOutOfRange`], and the cache is
    /// left as it was.
    pub fn slide(&self, cache: &mut KvCache, keep: usize, drop: usize) -> Result<(), EngineError> {
        let by = isize::try_from(drop).unwrap_or(isize::MAX);
        slide::slide(&*self.arch, cache, keep, drop, -by)
    }

    /// [`Model::slide`] with the moved keys turned by `rotate_by` positions instead of `-drop`: for
    /// the tests that show the direction and the angle of the re-rotation matter. Not for coding.
    #[doc(hidden)]
    pub fn testing_slide_rotating_by(
        &self,
        cache: &mut KvCache,
        keep: usize,
        drop: usize,
        rotate_by: isize,
    ) -> Result<(), EngineError> {
        if rotate_by.unsigned_abs() >= MAX_POSITION {
            let max = MAX_POSITION - 1;
            return Err(EngineError::PositionTooLarge { position: rotate_by.unsigned_abs(), max });
        }
        slide::slide(&*self.arch, cache, keep, drop, rotate_by)
    }

    /// One token for each of `caches.len()` independent sequences (lock-step decoding): appends
    /// `tokens[i]` to `caches[i]` and writes `B x vocab` logits, row `i` for sequence `i`. Sequences may
    /// be at different positions; each row's logits are those it would get alone.
    pub fn step(
        &self,
        caches: &mut [&mut KvCache],
        tokens: &[u32],
        logits: &mut [f32],
    ) -> Result<(), EngineError> {
        self.rt.step(&*self.arch, caches, tokens, logits)
    }

    /// A run of tokens for each of `caches.len()` independent sequences in one call (speculative
    /// decoding: each decoder lane's last token and its draft): appends `runs[i]` to `caches[i]` and
    /// writes one logits row per token, run 0's rows first. Each row's logits are those the tokens would get from
    /// [`Model::prefill`] or [`Model::step`] alone.
    pub fn extend(
        &self,
        caches: &mut [&mut KvCache],
        runs: &[&[u32]],
        logits: &mut [f32],
    ) -> Result<(), EngineError> {
        self.rt.extend(&*self.arch, caches, runs, logits)
    }
}
