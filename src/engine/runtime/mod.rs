//! The engine's runtime: what every architecture needs and none should write again.
//!
//! An architecture file (`llama.rs`, later `gemma3.rs`) says three things only, as candle's model files
//! do: its configuration (read from the GGUF metadata), the names of its weights, and its graph (the
//! forward pass of one layer after the other). Everything else lives here, written once:
//! - [`Runtime`]: the kernel path and the thread pool, the entry points `prefill` and `step` with their
//!   checks, and the driver that turns both into one list of [`Row`]s;
//! - [`schedule`]: how matrix products and attention are split into parallel tasks (never a reduction);
//! - [`ops`]: the float operations of a graph (RMSNorm, RoPE, gated activations, residuals), each with one
//!   fixed evaluation order;
//! - [`linear`]: weight matrices applied to one input, fused at load;
//! - [`meta`]: typed access to the GGUF metadata;
//! - [`slide`]: dropping old positions from a cache and re-rotating the kept keys, bit for bit defined.
//!
//! The key/value cache ([`crate::engine::KvCache`]) is the runtime's too; its layout is per layer, so an
//! architecture with layers of different shapes or attention windows describes them in its
//! [`Architecture::kv_layout`].

pub(crate) mod linear;
pub(crate) mod meta;
pub(crate) mod ops;
pub(crate) mod schedule;
pub(crate) mod slide;

use std::sync::Mutex;

use self::ops::Rope;
use super::cache::{KvCache, KvLayout};
use super::kernels::{KernelPath, Kernels};
use super::{EngineError, EngineOptions};

/// Positions must stay below this: RoPE angles are `position * theta` with `theta <= 1`, and
/// [`crate::arch::math::sin_cos_f64`] is specified for arguments below 2^20.
pub const MAX_POSITION: usize = 1 << 20;

/// Elements below which a row-wise step runs on the calling thread (a parallel launch costs more).
pub(crate) const PAR_MIN_ELEMS: usize = 1 << 15;

/// One row of a forward pass: which cache, at which position, which token.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Row {
    pub cache: usize,
    pub pos: usize,
    pub token: u32,
}

/// What an architecture gives the runtime: its shape and its graph. The runtime validates every call
/// before [`Architecture::forward`] runs, so the graph never sees a bad input.
pub(crate) trait Architecture: Send + Sync {
    /// The GGUF `general.architecture` this graph implements.
    fn name(&self) -> &'static str;

    /// Rows of the output head: logits per position.
    fn vocab(&self) -> usize;

    /// The context length the model was trained for.
    fn max_context(&self) -> usize;

    /// Keys and values each layer keeps per position; a cache fits the model when its layout is this.
    fn kv_layout(&self) -> &[KvLayout];

    /// Bytes of converted weights held in memory.
    fn weight_bytes(&self) -> usize;

    /// The RoPE that rotated the keys `layer` stores, with its pairing of dimensions
    /// ([`ops::Rope::rotate`]): what [`slide::slide`] turns moved keys back with. An
    /// architecture with several bases (Gemma 3's local and global layers) answers per layer.
    fn key_rope(&self, layer: usize) -> &Rope;

    /// Runs all rows through the model: writes each row's keys and values into its cache at the row's
    /// position, and `rows.len() x vocab` logits. Called inside the runtime's thread pool with inputs
    /// already checked; the runtime advances the caches' lengths afterwards.
    fn forward(&self, rt: &Runtime, caches: &mut [&mut KvCache], rows: &[Row], logits: &mut [f32]);
}

/// The kernel path and the worker threads every product of a model runs on.
pub(crate) struct Runtime {
    /// The kernel table of the resolved path, chosen once here; every hot loop calls through it.
    kernel: &'static Kernels,
    threads: usize,
    pool: rayon::ThreadPool,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("kernel", &self.kernel.path())
            .field("threads", &self.threads)
            .finish()
    }
}

impl Runtime {
    /// Resolves the kernel path and starts the engine's own pool.
    pub fn new(opts: &EngineOptions) -> Result<Self, EngineError> {
        let kernel = Kernels::for_path(KernelPath::resolve(opts.kernel)?)?;
        let threads = if opts.threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            opts.threads
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("llmzip-engine-{i}"))
            .build()
            .map_err(|e| EngineError::ThreadPool { threads, message: e.to_string() })?;
        Ok(Runtime { kernel, threads, pool })
    }

    /// The kernels in use (chosen once, at start).
    pub fn kernel(&self) -> &'static Kernels {
        self.kernel
    }

    /// Worker threads of the engine's pool.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Appends `tokens` after the positions already in `cache` and writes `tokens.len() x vocab` logits.
    pub fn prefill(
        &self,
        arch: &dyn Architecture,
        cache: &mut KvCache,
        tokens: &[u32],
        logits: &mut [f32],
    ) -> Result<(), EngineError> {
        self.extend(arch, &mut [cache], &[tokens], logits)
    }

    /// One token for each of `caches.len()` independent sequences, row `i` for sequence `i`.
    pub fn step(
        &self,
        arch: &dyn Architecture,
        caches: &mut [&mut KvCache],
        tokens: &[u32],
        logits: &mut [f32],
    ) -> Result<(), EngineError> {
        if caches.len() != tokens.len() {
            return Err(EngineError::LengthMismatch {
                what: "step: tokens for the given caches",
                seen: tokens.len(),
                expected: caches.len(),
            });
        }
        let runs: Vec<&[u32]> = tokens.chunks(1).collect();
        self.extend(arch, caches, &runs, logits)
    }

    /// A run of tokens for each of `caches.len()` independent sequences in one call: run `i` is
    /// appended to `caches[i]`, and the logits are the runs' rows in order (run 0's first). Prefill is
    /// the case of one cache, [`Runtime::step`] the case of runs of one; a run may be empty.
    pub fn extend(
        &self,
        arch: &dyn Architecture,
        caches: &mut [&mut KvCache],
        runs: &[&[u32]],
        logits: &mut [f32],
    ) -> Result<(), EngineError> {
        if caches.len() != runs.len() {
            return Err(EngineError::LengthMismatch {
                what: "extend: token runs for the given caches",
                seen: runs.len(),
                expected: caches.len(),
            });
        }
        let total: usize = runs.iter().map(|r| r.len()).sum();
        check_logits(arch, logits.len(), total)?;
        for (cache, run) in caches.iter().zip(runs) {
            check_cache(arch, cache, run.len())?;
            check_tokens(arch, run)?;
        }
        // A cache with a rolling slot takes at most `max_run` positions per call: longer runs go
        // through one at a time, in pieces (the same logits for any cut, by the contract).
        let too_long = caches.iter().zip(runs).any(|(c, r)| c.max_run().is_some_and(|m| r.len() > m));
        if too_long {
            let vocab = arch.vocab();
            let mut out = &mut logits[..];
            for (i, run) in runs.iter().enumerate() {
                let piece = caches[i].max_run().unwrap_or(run.len()).max(1);
                for part in run.chunks(piece) {
                    let (here, rest) = std::mem::take(&mut out).split_at_mut(part.len() * vocab);
                    out = rest;
                    let start = caches[i].len();
                    let rows: Vec<Row> = (part.iter().enumerate())
                        .map(|(t, &token)| Row { cache: i, pos: start + t, token })
                        .collect();
                    self.forward(arch, caches, &rows, here);
                }
            }
            return Ok(());
        }
        let mut rows = Vec::with_capacity(total);
        for (i, run) in runs.iter().enumerate() {
            let start = caches[i].len();
            rows.extend(run.iter().enumerate().map(|(t, &token)| Row { cache: i, pos: start + t, token }));
        }
        self.forward(arch, caches, &rows, logits);
        Ok(())
    }

    /// Runs all rows through the graph in the pool and advances the caches. Inputs are validated by the
    /// callers.
    fn forward(
        &self,
        arch: &dyn Architecture,
        caches: &mut [&mut KvCache],
        rows: &[Row],
        logits: &mut [f32],
    ) {
        if rows.is_empty() {
            return;
        }
        let added: Vec<usize> =
            (0..caches.len()).map(|i| rows.iter().filter(|r| r.cache == i).count()).collect();
        for (cache, &n) in caches.iter_mut().zip(&added) {
            if n > 0 {
                cache.make_room(n);
            }
        }
        self.pool.install(|| arch.forward(self, caches, rows, logits));
        for (cache, &n) in caches.iter_mut().zip(&added) {
            let len = cache.len() + n;
            cache.set_len(len);
        }
    }
}

fn check_logits(arch: &dyn Architecture, seen: usize, rows: usize) -> Result<(), EngineError> {
    if seen != rows * arch.vocab() {
        return Err(EngineError::LengthMismatch {
            what: "logits buffer length (rows x vocab)",
            seen,
            expected: rows * arch.vocab(),
        });
    }
    Ok(())
}

fn check_cache(arch: &dyn Architecture, cache: &KvCache, adding: usize) -> Result<(), EngineError> {
    let ours = arch.kv_layout();
    if cache.layout() != ours {
        // Name the first layer that differs (or layer 0 when only the counts do).
        let at = cache.layout().iter().zip(ours).position(|(a, b)| a != b).unwrap_or(0);
        let dims = |l: &[KvLayout]| l.get(at).map_or(0, KvLayout::kv_dim);
        return Err(EngineError::CacheMismatch {
            seen_layers: cache.layout().len(),
            seen_kv_dim: dims(cache.layout()),
            layers: ours.len(),
            kv_dim: dims(ours),
        });
    }
    if let Err((layer, first)) = cache.check_window() {
        return Err(EngineError::WindowDropped { layer, len: cache.len(), first });
    }
    if adding > cache.remaining() {
        return Err(EngineError::CapacityExceeded { len: cache.len(), capacity: cache.capacity(), adding });
    }
    if adding > 0 && cache.len() + adding > MAX_POSITION {
        return Err(EngineError::PositionTooLarge {
            position: cache.len() + adding - 1,
            max: MAX_POSITION - 1,
        });
    }
    Ok(())
}

fn check_tokens(arch: &dyn Architecture, tokens: &[u32]) -> Result<(), EngineError> {
    let vocab = arch.vocab();
    if let Some((index, &token)) = tokens.iter().enumerate().find(|&(_, &t)| t as usize >= vocab) {
        return Err(EngineError::TokenOutOfRange { token, index, vocab });
    }
    Ok(())
}

/// Buffers of one forward call, kept between calls so that decoding does not allocate per step. Each
/// concurrent call takes its own (calls on one model may overlap); a call that finds none makes one.
pub(crate) struct ScratchPool<T>(Mutex<Vec<T>>);

impl<T> Default for ScratchPool<T> {
    fn default() -> Self {
        ScratchPool(Mutex::new(Vec::new()))
    }
}

impl<T: Default> ScratchPool<T> {
    /// Runs `f` with a set of buffers, then keeps them for the next call.
    pub fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        let mut scratch = self.0.lock().ok().and_then(|mut s| s.pop()).unwrap_or_default();
        let result = f(&mut scratch);
        if let Ok(mut s) = self.0.lock() {
            s.push(scratch);
        }
        result
    }
}
