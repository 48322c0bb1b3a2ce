//! The llama architecture as SmolLM2 uses it: token embedding, per layer RMSNorm -> grouped-query
//! attention with interleaved-pair RoPE -> residual, RMSNorm -> SwiGLU MLP -> residual; final RMSNorm and
//! a (possibly tied) output head.
//!
//! One forward routine serves both entry points: [`LlamaModel::prefill`] (many positions of one
//! sequence) and [`LlamaModel::step`] (one position of each of several sequences). Both become a list of
//! rows `(sequence, position, token)`; every matrix product runs over all rows at once, and every row's
//! float arithmetic is the same whatever the other rows are, so the two entry points agree bit for bit.

use std::sync::Mutex;

use candle_core::quantized::gguf_file::{Content, Value};
use rayon::prelude::*;

use super::cache::KvCache;
use super::kernels::{self, KernelPath, Kernels, QActs, QMatrix, StridedOut};
use super::weights::TensorSource;
use super::{EngineError, EngineOptions};
use crate::arch::math;

/// Positions must stay below this: RoPE angles are `position * theta` with `theta <= 1`, and
/// [`math::sin_cos_f64`] is specified for arguments below 2^20.
pub const MAX_POSITION: usize = 1 << 20;

/// Hyper-parameters read from the GGUF metadata (`llama.*` keys) and tensor shapes.
#[derive(Clone, Debug, PartialEq)]
pub struct LlamaConfig {
    /// Width of the residual stream (`llama.embedding_length`).
    pub dim: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    /// Key/value heads; `n_heads` is a multiple of it (grouped-query attention).
    pub n_kv_heads: usize,
    /// `dim / n_heads`, a multiple of 8 (the attention lanes).
    pub head_dim: usize,
    /// Hidden width of the MLP (`llama.feed_forward_length`).
    pub ff_dim: usize,
    /// Rows of `token_embd.weight`.
    pub vocab: usize,
    /// Leading dimensions of each head that RoPE rotates (even, at most `head_dim`).
    pub rope_dim: usize,
    pub rope_base: f64,
    pub rms_eps: f32,
    /// Context the model was trained for (`llama.context_length`).
    pub max_context: usize,
}

impl LlamaConfig {
    /// Reads and checks the hyper-parameters of a llama GGUF.
    pub fn from_gguf(content: &Content) -> Result<Self, EngineError> {
        let arch = match content.metadata.get("general.architecture") {
            Some(Value::String(s)) => s.clone(),
            Some(other) => {
                return Err(EngineError::BadMetadata {
                    key: "general.architecture".into(),
                    seen: format!("{other:?}"),
                    expected: "a string".into(),
                });
            }
            None => {
                return Err(EngineError::MissingMetadata { key: "general.architecture".into() });
            }
        };
        if arch != "llama" {
            return Err(EngineError::UnsupportedArchitecture { seen: arch });
        }
        let md = Meta(content);
        let experts = md.usize_or("llama.expert_count", 0)?;
        if experts > 1 {
            return Err(EngineError::UnsupportedShape {
                what: format!("mixture of {experts} experts (only dense llama models are supported)"),
            });
        }
        if let Some(Value::String(kind)) = content.metadata.get("llama.rope.scaling.type")
            && kind != "none"
        {
            return Err(EngineError::BadMetadata {
                key: "llama.rope.scaling.type".into(),
                seen: format!("'{kind}'"),
                expected: "'none' (RoPE scaling is not supported)".into(),
            });
        }
        let dim = md.usize("llama.embedding_length")?;
        let n_layers = md.usize("llama.block_count")?;
        let n_heads = md.usize("llama.attention.head_count")?;
        let n_kv_heads = md.usize_or("llama.attention.head_count_kv", n_heads)?;
        let ff_dim = md.usize("llama.feed_forward_length")?;
        let rms_eps = md.f64("llama.attention.layer_norm_rms_epsilon")? as f32;
        let rope_base = md.f64_or("llama.rope.freq_base", 10000.0)?;
        let max_context = md.usize_or("llama.context_length", 2048)?;
        if n_heads == 0 || n_kv_heads == 0 || n_heads % n_kv_heads != 0 {
            return Err(EngineError::UnsupportedShape {
                what: format!(
                    "{n_heads} attention heads and {n_kv_heads} key/value heads (need a positive multiple)"
                ),
            });
        }
        if dim == 0 || dim % n_heads != 0 {
            return Err(EngineError::UnsupportedShape {
                what: format!("embedding length {dim} is not a multiple of {n_heads} heads"),
            });
        }
        let head_dim = dim / n_heads;
        if head_dim % kernels::LANES != 0 {
            return Err(EngineError::UnsupportedShape {
                what: format!("head dimension {head_dim} is not a multiple of 8"),
            });
        }
        let rope_dim = md.usize_or("llama.rope.dimension_count", head_dim)?;
        if rope_dim == 0 || rope_dim > head_dim || rope_dim % 2 != 0 {
            return Err(EngineError::UnsupportedShape {
                what: format!("RoPE dimension {rope_dim} with head dimension {head_dim}"),
            });
        }
        if !(rope_base.is_finite() && rope_base > 1.0 && rms_eps.is_finite() && rms_eps >= 0.0) {
            return Err(EngineError::UnsupportedShape {
                what: format!("RoPE base {rope_base}, RMS epsilon {rms_eps}"),
            });
        }
        let src = TensorSource { content, file: &[] };
        let embd = src.dims("token_embd.weight")?;
        if embd.len() != 2 || embd[1] != dim {
            return Err(EngineError::TensorShape {
                name: "token_embd.weight".into(),
                seen: format!("{embd:?}"),
                expected: format!("[vocab, {dim}]"),
            });
        }
        Ok(LlamaConfig {
            dim,
            n_layers,
            n_heads,
            n_kv_heads,
            head_dim,
            ff_dim,
            vocab: embd[0],
            rope_dim,
            rope_base,
            rms_eps,
            max_context,
        })
    }

    pub fn q_dim(&self) -> usize {
        self.n_heads * self.head_dim
    }

    pub fn kv_dim(&self) -> usize {
        self.n_kv_heads * self.head_dim
    }
}

/// Typed access to GGUF metadata that accepts any integer or float width.
struct Meta<'a>(&'a Content);

impl Meta<'_> {
    fn get(&self, key: &str) -> Result<&Value, EngineError> {
        self.0.metadata.get(key).ok_or_else(|| EngineError::MissingMetadata { key: key.into() })
    }

    fn usize(&self, key: &str) -> Result<usize, EngineError> {
        let v = self.get(key)?;
        let n: Option<u64> = match *v {
            Value::U8(x) => Some(x as u64),
            Value::U16(x) => Some(x as u64),
            Value::U32(x) => Some(x as u64),
            Value::U64(x) => Some(x),
            Value::I8(x) => u64::try_from(x).ok(),
            Value::I16(x) => u64::try_from(x).ok(),
            Value::I32(x) => u64::try_from(x).ok(),
            Value::I64(x) => u64::try_from(x).ok(),
            _ => None,
        };
        n.and_then(|n| usize::try_from(n).ok()).ok_or_else(|| EngineError::BadMetadata {
            key: key.into(),
            seen: format!("{v:?}"),
            expected: "a non-negative integer".into(),
        })
    }

    fn usize_or(&self, key: &str, default: usize) -> Result<usize, EngineError> {
        if self.0.metadata.contains_key(key) { self.usize(key) } else { Ok(default) }
    }

    fn f64(&self, key: &str) -> Result<f64, EngineError> {
        match *self.get(key)? {
            Value::F32(x) => Ok(x as f64),
            Value::F64(x) => Ok(x),
            ref v => Err(EngineError::BadMetadata {
                key: key.into(),
                seen: format!("{v:?}"),
                expected: "a float".into(),
            }),
        }
    }

    fn f64_or(&self, key: &str, default: f64) -> Result<f64, EngineError> {
        if self.0.metadata.contains_key(key) { self.f64(key) } else { Ok(default) }
    }
}

/// One or more weight matrices applied to the same input, their outputs side by side. Parts with the
/// same block kind are fused into one matrix at load (see [`QMatrix::concat_rows`]).
struct Linear {
    parts: Vec<QMatrix>,
    out_dim: usize,
}

impl Linear {
    fn new(parts: Vec<QMatrix>, kernel: &Kernels) -> Self {
        let out_dim = parts.iter().map(QMatrix::rows).sum();
        let mut parts = match QMatrix::concat_rows(&parts) {
            Some(fused) => vec![fused],
            None => parts,
        };
        for p in &mut parts {
            p.prepare_for(kernel);
        }
        Linear { parts, out_dim }
    }

    fn refs(&self) -> Vec<&QMatrix> {
        self.parts.iter().collect()
    }
}

struct Layer {
    attn_norm: Vec<f32>,
    /// Q, K and V: output columns `[0, q_dim)`, `[q_dim, q_dim + kv_dim)`, `[q_dim + kv_dim, q_dim + 2 kv_dim)`.
    qkv: Linear,
    wo: Linear,
    ffn_norm: Vec<f32>,
    /// Gate and up: output columns `[0, ff)` and `[ff, 2 ff)`.
    gate_up: Linear,
    down: Linear,
}

/// Buffers of one forward call, kept between calls so that decoding does not allocate per step.
#[derive(Default)]
struct Scratch {
    x: Vec<f32>,
    h: Vec<f32>,
    qkv: Vec<f32>,
    att: Vec<f32>,
    gate_up: Vec<f32>,
    mlp: Vec<f32>,
    rope: Vec<(f32, f32)>,
    acts: QActs,
}

/// One row of a forward pass: which cache, at which position, which token.
#[derive(Clone, Copy, Debug)]
struct Row {
    cache: usize,
    pos: usize,
    token: u32,
}

/// A loaded llama model with its thread pool and kernel path.
pub struct LlamaModel {
    cfg: LlamaConfig,
    /// `[vocab][dim]`; also the output head when the file has no `output.weight` (tied embeddings).
    embed: QMatrix,
    /// `[vocab][dim]` when the file has its own output head.
    head: Option<QMatrix>,
    out_norm: Vec<f32>,
    layers: Vec<Layer>,
    /// RoPE frequencies `base^(-2i/rope_dim)` for `i < rope_dim/2`, computed once in f64.
    rope_theta: Vec<f64>,
    kernel: &'static Kernels,
    threads: usize,
    pool: rayon::ThreadPool,
    scratch: Mutex<Vec<Scratch>>,
}

impl std::fmt::Debug for LlamaModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlamaModel")
            .field("config", &self.cfg)
            .field("kernel", &self.kernel)
            .field("threads", &self.threads)
            .finish_non_exhaustive()
    }
}

/// Elements below which a row-wise step runs on the calling thread (a parallel launch costs more).
const PAR_MIN_ELEMS: usize = 1 << 15;

impl LlamaModel {
    /// Loads the model from a parsed GGUF header and the whole file's bytes (a memory map), converting
    /// every weight into the engine's layout once.
    pub fn load(content: &Content, file: &[u8], opts: &EngineOptions) -> Result<Self, EngineError> {
        let cfg = LlamaConfig::from_gguf(content)?;
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
        let src = TensorSource { content, file };
        let (dim, ff, q_dim, kv_dim) = (cfg.dim, cfg.ff_dim, cfg.q_dim(), cfg.kv_dim());
        let mut embed = src.matrix("token_embd.weight", cfg.vocab, dim)?;
        let mut head =
            if src.has("output.weight") { Some(src.matrix("output.weight", cfg.vocab, dim)?) } else { None };
        // The product layout goes to the matrix that serves as the output head.
        match head.as_mut() {
            Some(h) => h.prepare_for(kernel),
            None => embed.prepare_for(kernel),
        }
        let out_norm = src.vector("output_norm.weight", dim)?;
        let mut layers = Vec::with_capacity(cfg.n_layers);
        for l in 0..cfg.n_layers {
            let name = |t: &str| format!("blk.{l}.{t}.weight");
            layers.push(Layer {
                attn_norm: src.vector(&name("attn_norm"), dim)?,
                qkv: Linear::new(
                    vec![
                        src.matrix(&name("attn_q"), q_dim, dim)?,
                        src.matrix(&name("attn_k"), kv_dim, dim)?,
                        src.matrix(&name("attn_v"), kv_dim, dim)?,
                    ],
                    kernel,
                ),
                wo: Linear::new(vec![src.matrix(&name("attn_output"), dim, q_dim)?], kernel),
                ffn_norm: src.vector(&name("ffn_norm"), dim)?,
                gate_up: Linear::new(
                    vec![src.matrix(&name("ffn_gate"), ff, dim)?, src.matrix(&name("ffn_up"), ff, dim)?],
                    kernel,
                ),
                down: Linear::new(vec![src.matrix(&name("ffn_down"), dim, ff)?], kernel),
            });
        }
        let rope_theta = (0..cfg.rope_dim / 2)
            .map(|i| math::powf_f64(cfg.rope_base, -((2 * i) as f64) / cfg.rope_dim as f64))
            .collect();
        Ok(LlamaModel {
            cfg,
            embed,
            head,
            out_norm,
            layers,
            rope_theta,
            kernel,
            threads,
            pool,
            scratch: Mutex::new(Vec::new()),
        })
    }

    pub fn config(&self) -> &LlamaConfig {
        &self.cfg
    }

    pub fn vocab_size(&self) -> usize {
        self.cfg.vocab
    }

    /// The context length the model was trained for.
    pub fn max_context(&self) -> usize {
        self.cfg.max_context
    }

    /// The kernel path in use.
    pub fn kernel(&self) -> KernelPath {
        self.kernel.path()
    }

    /// The kernels in use (chosen once, at load), whose vector math the quantizer shares.
    pub fn kernels(&self) -> &'static Kernels {
        self.kernel
    }

    /// Worker threads of the engine's pool.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Bytes of converted weights held in memory.
    pub fn weight_bytes(&self) -> usize {
        let mut n = self.embed.size_bytes() + self.head.as_ref().map_or(0, QMatrix::size_bytes);
        for l in &self.layers {
            for lin in [&l.qkv, &l.wo, &l.gate_up, &l.down] {
                n += lin.parts.iter().map(QMatrix::size_bytes).sum::<usize>();
            }
        }
        n
    }

    /// An empty KV cache for `capacity` positions, allocated once (about
    /// `4 * n_layers * kv_dim` bytes per position; pages are touched only when used).
    pub fn new_cache(&self, capacity: usize) -> KvCache {
        KvCache::new(self.cfg.n_layers, self.cfg.n_kv_heads, self.cfg.head_dim, capacity)
    }

    /// Appends `tokens` after the positions already in `cache` and writes `tokens.len() x vocab` logits
    /// (row `t` predicts the token after `tokens[t]`). Any split of a sequence into prefill calls, or
    /// into [`LlamaModel::step`] calls, gives the same bits.
    pub fn prefill(
        &self,
        cache: &mut KvCache,
        tokens: &[u32],
        logits: &mut [f32],
    ) -> Result<(), EngineError> {
        self.check_logits(logits.len(), tokens.len())?;
        self.check_cache(cache, tokens.len())?;
        self.check_tokens(tokens)?;
        let start = cache.len();
        let rows: Vec<Row> =
            tokens.iter().enumerate().map(|(t, &token)| Row { cache: 0, pos: start + t, token }).collect();
        self.forward(&mut [cache], &rows, logits);
        Ok(())
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
        if caches.len() != tokens.len() {
            return Err(EngineError::LengthMismatch {
                what: "step: tokens for the given caches",
                seen: tokens.len(),
                expected: caches.len(),
            });
        }
        self.check_logits(logits.len(), tokens.len())?;
        for cache in caches.iter() {
            self.check_cache(cache, 1)?;
        }
        self.check_tokens(tokens)?;
        let rows: Vec<Row> = tokens
            .iter()
            .enumerate()
            .map(|(i, &token)| Row { cache: i, pos: caches[i].len(), token })
            .collect();
        self.forward(caches, &rows, logits);
        Ok(())
    }

    fn check_logits(&self, seen: usize, rows: usize) -> Result<(), EngineError> {
        if seen != rows * self.cfg.vocab {
            return Err(EngineError::LengthMismatch {
                what: "logits buffer length (rows x vocab)",
                seen,
                expected: rows * self.cfg.vocab,
            });
        }
        Ok(())
    }

    fn check_cache(&self, cache: &KvCache, adding: usize) -> Result<(), EngineError> {
        if cache.layers() != self.cfg.n_layers || cache.kv_dim() != self.cfg.kv_dim() {
            return Err(EngineError::CacheMismatch {
                seen_layers: cache.layers(),
                seen_kv_dim: cache.kv_dim(),
                layers: self.cfg.n_layers,
                kv_dim: self.cfg.kv_dim(),
            });
        }
        if adding > cache.remaining() {
            return Err(EngineError::CapacityExceeded {
                len: cache.len(),
                capacity: cache.capacity(),
                adding,
            });
        }
        if adding > 0 && cache.len() + adding > MAX_POSITION {
            return Err(EngineError::PositionTooLarge {
                position: cache.len() + adding - 1,
                max: MAX_POSITION - 1,
            });
        }
        Ok(())
    }

    fn check_tokens(&self, tokens: &[u32]) -> Result<(), EngineError> {
        if let Some((index, &token)) = tokens.iter().enumerate().find(|&(_, &t)| t as usize >= self.cfg.vocab)
        {
            return Err(EngineError::TokenOutOfRange { token, index, vocab: self.cfg.vocab });
        }
        Ok(())
    }

    /// Runs all rows through the model and writes their logits. Inputs are validated by the callers.
    fn forward(&self, caches: &mut [&mut KvCache], rows: &[Row], logits: &mut [f32]) {
        if rows.is_empty() {
            return;
        }
        let mut scratch = self.scratch.lock().ok().and_then(|mut s| s.pop()).unwrap_or_default();
        self.pool.install(|| self.forward_inner(caches, rows, logits, &mut scratch));
        if let Ok(mut s) = self.scratch.lock() {
            s.push(scratch);
        }
        for (i, cache) in caches.iter_mut().enumerate() {
            let added = rows.iter().filter(|r| r.cache == i).count();
            let len = cache.len() + added;
            cache.set_len(len);
        }
    }

    fn forward_inner(&self, caches: &mut [&mut KvCache], rows: &[Row], logits: &mut [f32], s: &mut Scratch) {
        let cfg = &self.cfg;
        let n = rows.len();
        let (dim, q_dim, kv_dim, ff) = (cfg.dim, cfg.q_dim(), cfg.kv_dim(), cfg.ff_dim);
        let qkv_dim = q_dim + 2 * kv_dim;
        s.x.resize(n * dim, 0.0);
        s.h.resize(n * dim, 0.0);
        s.qkv.resize(n * qkv_dim, 0.0);
        s.att.resize(n * q_dim, 0.0);
        s.gate_up.resize(n * 2 * ff, 0.0);
        s.mlp.resize(n * ff, 0.0);

        // Embeddings: exact dequantization of one row each.
        for (row, x) in rows.iter().zip(s.x.chunks_exact_mut(dim)) {
            self.embed.dequantize_row(row.token as usize, x);
        }
        // RoPE rotations of every row's position.
        let half = cfg.rope_dim / 2;
        s.rope.clear();
        for row in rows {
            for &theta in &self.rope_theta {
                let (sin, cos) = math::sin_cos_f64(row.pos as f64 * theta);
                s.rope.push((cos as f32, sin as f32));
            }
        }

        for (l, layer) in self.layers.iter().enumerate() {
            // Attention block.
            rows_apply(&mut s.h, dim, &s.x, dim, |h, x| rms_norm(x, &layer.attn_norm, cfg.rms_eps, h));
            self.quantize(&mut s.acts, &s.h, n, dim);
            self.matmul(&layer.qkv.refs(), &s.acts, &mut s.qkv, layer.qkv.out_dim);
            let rope = &s.rope;
            rows_apply_indexed(&mut s.qkv, qkv_dim, |r, qkv| {
                let cs = &rope[r * half..(r + 1) * half];
                for head in qkv[..q_dim + kv_dim].chunks_exact_mut(cfg.head_dim) {
                    rope_rotate(head, cs);
                }
            });
            for (row, qkv) in rows.iter().zip(s.qkv.chunks_exact(qkv_dim)) {
                caches[row.cache].write(l, row.pos, &qkv[q_dim..q_dim + kv_dim], &qkv[q_dim + kv_dim..]);
            }
            self.attention(l, caches, rows, &s.qkv, &mut s.att);
            self.quantize(&mut s.acts, &s.att, n, q_dim);
            self.matmul(&layer.wo.refs(), &s.acts, &mut s.h, dim);
            add_in_place(&mut s.x, &s.h);

            // MLP block.
            rows_apply(&mut s.h, dim, &s.x, dim, |h, x| rms_norm(x, &layer.ffn_norm, cfg.rms_eps, h));
            self.quantize(&mut s.acts, &s.h, n, dim);
            self.matmul(&layer.gate_up.refs(), &s.acts, &mut s.gate_up, layer.gate_up.out_dim);
            let kernel = self.kernel;
            rows_apply(&mut s.mlp, ff, &s.gate_up, 2 * ff, |m, gu| {
                let (g, u) = gu.split_at(ff);
                kernel.swiglu(g, u, m);
            });
            self.quantize(&mut s.acts, &s.mlp, n, ff);
            self.matmul(&layer.down.refs(), &s.acts, &mut s.h, dim);
            add_in_place(&mut s.x, &s.h);
        }

        rows_apply(&mut s.h, dim, &s.x, dim, |h, x| rms_norm(x, &self.out_norm, cfg.rms_eps, h));
        self.quantize(&mut s.acts, &s.h, n, dim);
        let head = self.head.as_ref().unwrap_or(&self.embed);
        self.matmul(&[head], &s.acts, logits, cfg.vocab);
    }

    /// Quantizes activation rows, in parallel over rows when there are many (rows are independent).
    fn quantize(&self, acts: &mut QActs, x: &[f32], rows: usize, cols: usize) {
        acts.quantize(self.kernel, x, rows, cols, rows * cols >= PAR_MIN_ELEMS);
        acts.prepare_for(self.kernel);
    }

    /// `out[r][..] = parts side by side . acts[r]`, split over output rows in fixed tiles. The tile
    /// size only affects speed: each output is computed by one task with the same arithmetic.
    fn matmul(&self, parts: &[&QMatrix], acts: &QActs, out: &mut [f32], out_dim: usize) {
        let rows = acts.rows();
        assert!(out.len() >= rows * out_dim);
        let total: usize = parts.iter().map(|p| p.rows()).sum();
        assert_eq!(total, out_dim);
        // Multiples of 16 rows: the AMX path's weight tiles (16 rows) then never straddle two tasks.
        let tile = (total / (self.threads * 8)).clamp(16, 128).next_multiple_of(16);
        // SAFETY: `out` is borrowed mutably for the whole call; each task writes only the columns of its
        // own tile of output rows, so no two tasks touch the same element.
        let so = unsafe { StridedOut::new(out, rows, out_dim) };
        let mut tasks = Vec::new();
        let mut col = 0;
        for (p, part) in parts.iter().enumerate() {
            let mut n0 = 0;
            while n0 < part.rows() {
                let n1 = (n0 + tile).min(part.rows());
                tasks.push((p, n0, n1, col + n0));
                n0 = n1;
            }
            col += part.rows();
        }
        let kernel = self.kernel;
        tasks.par_iter().for_each(|&(p, n0, n1, col0)| {
            kernel.matmul_rows(parts[p], n0, n1, acts, &so, col0);
        });
    }

    /// Causal grouped-query attention for every row and head. Work is split into tasks of (a tile of
    /// up to [`ATTN_TILE`] consecutive positions of one sequence, one key/value head, some of its query
    /// heads); a task converts each key and value once for all its queries. Every query is computed by
    /// [`Kernels::attend`] with the same arithmetic whatever the task shape, so the split is free.
    fn attention(&self, layer: usize, caches: &[&mut KvCache], rows: &[Row], qkv: &[f32], att: &mut [f32]) {
        let cfg = &self.cfg;
        let (hd, q_dim, kv_dim) = (cfg.head_dim, cfg.q_dim(), cfg.kv_dim());
        let qkv_dim = q_dim + 2 * kv_dim;
        let group = cfg.n_heads / cfg.n_kv_heads;
        let scale = 1.0 / (hd as f32).sqrt();
        let kernel = self.kernel;

        // Tiles of consecutive positions of one sequence.
        let mut tiles = Vec::new();
        let mut r = 0;
        while r < rows.len() {
            let mut len = 1;
            while len < ATTN_TILE
                && r + len < rows.len()
                && rows[r + len].cache == rows[r].cache
                && rows[r + len].pos == rows[r].pos + len
            {
                len += 1;
            }
            tiles.push((r, len));
            r += len;
        }
        // Few tiles (decoding one or two sequences): one task per query head keeps the threads busy.
        let heads_per_task = if tiles.len() * cfg.n_kv_heads >= 4 * self.threads { group } else { 1 };
        let mut tasks = Vec::with_capacity(tiles.len() * cfg.n_heads / heads_per_task);
        for &(r0, len) in &tiles {
            for h0 in (0..cfg.n_heads).step_by(heads_per_task) {
                tasks.push((r0, len, h0));
            }
        }
        // SAFETY: `att` is borrowed mutably for the whole call; each (row, head) output slice belongs to
        // exactly one task.
        let out = unsafe { StridedOut::new(att, rows.len(), q_dim) };
        tasks.par_iter().for_each(|&(r0, len, h0)| {
            let kvh = h0 / group;
            let row0 = rows[r0];
            let npos_max = row0.pos + len;
            let (keys, values) = caches[row0.cache].head(layer, kvh, npos_max);
            let mut queries = Vec::with_capacity(len * heads_per_task);
            for t in 0..len {
                for h in h0..h0 + heads_per_task {
                    let r = r0 + t;
                    queries.push(kernels::Query {
                        q: &qkv[r * qkv_dim + h * hd..][..hd],
                        npos: row0.pos + t + 1,
                        // SAFETY: (row r, head h) is written by this task only.
                        out: unsafe { out.slice_mut(r, h * hd, hd) },
                    });
                }
            }
            ATTN_SCRATCH.with(|s| kernel.attend(&mut queries, keys, values, scale, &mut s.borrow_mut()));
        });
    }
}

/// Consecutive positions of one sequence that share the key/value conversions in one attention task.
const ATTN_TILE: usize = 4;

thread_local! {
    /// Per worker thread: attention buffers, kept between calls.
    static ATTN_SCRATCH: std::cell::RefCell<kernels::AttnScratch> =
        std::cell::RefCell::new(kernels::AttnScratch::default());
}

/// `f(out row r, x row r)` for every row (rows of `out_width` and `width` elements), in parallel when
/// the rows are many.
fn rows_apply<F>(out: &mut [f32], out_width: usize, x: &[f32], width: usize, f: F)
where
    F: Fn(&mut [f32], &[f32]) + Sync,
{
    let n = x.len() / width;
    let out = &mut out[..n * out_width];
    if x.len() >= PAR_MIN_ELEMS {
        out.par_chunks_exact_mut(out_width).zip(x.par_chunks_exact(width)).for_each(|(o, x)| f(o, x));
    } else {
        for (o, x) in out.chunks_exact_mut(out_width).zip(x.chunks_exact(width)) {
            f(o, x);
        }
    }
}

/// `f(r, row r of x)` in place, in parallel when the rows are many.
fn rows_apply_indexed<F>(x: &mut [f32], width: usize, f: F)
where
    F: Fn(usize, &mut [f32]) + Sync,
{
    if x.len() >= PAR_MIN_ELEMS {
        x.par_chunks_exact_mut(width).enumerate().for_each(|(r, x)| f(r, x));
    } else {
        for (r, x) in x.chunks_exact_mut(width).enumerate() {
            f(r, x);
        }
    }
}

/// `x[i] = x[i] + y[i]` (the residual connections).
fn add_in_place(x: &mut [f32], y: &[f32]) {
    for (a, &b) in x.iter_mut().zip(y) {
        *a += b;
    }
}

/// RMSNorm: `out[i] = (x[i] * (1 / sqrt(sum(x^2)/n + eps))) * w[i]`, the sum of squares taken in index
/// order. `sqrt` and division are correctly rounded IEEE operations.
fn rms_norm(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let mut ss = 0f32;
    for &v in x {
        ss += v * v;
    }
    let scale = 1.0 / (ss / x.len() as f32 + eps).sqrt();
    for ((o, &v), &w) in out.iter_mut().zip(x).zip(w) {
        *o = (v * scale) * w;
    }
}

/// RoPE on one head, interleaved pairs `(2i, 2i+1)` rotated by the angle of pair `i` (the GGUF llama
/// convention, candle's `rope_i`); dimensions past `2 * cs.len()` are left as they are.
fn rope_rotate(head: &mut [f32], cs: &[(f32, f32)]) {
    for (pair, &(cos, sin)) in head.chunks_exact_mut(2).zip(cs) {
        let (a, b) = (pair[0], pair[1]);
        pair[0] = a * cos - b * sin;
        pair[1] = a * sin + b * cos;
    }
}
