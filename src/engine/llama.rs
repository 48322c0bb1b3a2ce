//! The llama architecture as SmolLM2 uses it: token embedding, per layer RMSNorm -> grouped-query
//! attention with interleaved-pair RoPE -> residual, RMSNorm -> SwiGLU MLP -> residual; final RMSNorm and
//! a (possibly tied) output head.
//!
//! This file holds what is llama's own, in the manner of candle's `quantized_llama.rs`: the
//! configuration ([`LlamaConfig::from_gguf`]), the weight names ([`Llama::load`]) and the graph
//! ([`Llama::forward`]). Entry points, checks, scheduling and the float operations are the runtime's
//! ([`super::runtime`]); [`super::Model`] picks this file for `general.architecture = llama`.

use candle_core::quantized::gguf_file::Content;

use super::EngineError;
use super::cache::{KvCache, KvLayout};
use super::kernels::{self, QActs, QMatrix};
use super::runtime::linear::Linear;
use super::runtime::meta::Meta;
use super::runtime::ops::{GatedActivation, RmsNorm, Rope, RopeStyle, add_in_place, rows_apply_indexed};
use super::runtime::schedule::Attention;
use super::runtime::{Architecture, Row, Runtime, ScratchPool};
use super::weights::TensorSource;

/// The `general.architecture` of this file, and the prefix of its metadata keys.
pub const ARCH: &str = "llama";

/// Hyper-parameters read from the GGUF metadata (`llama.*` keys) and tensor shapes.
#[derive(Clone, Debug, PartialEq)]
pub struct LlamaConfig {
    /// Width of the residual stream (`llama.embedding_length`).
    pub dim: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    /// Key/value heads; `n_heads` is a multiple of it (grouped-query attention).
    pub n_kv_heads: usize,
    /// `llama.attention.key_length` (= `value_length`) when the file has it, else `dim / n_heads`; a
    /// multiple of 8 (the attention's accumulator lanes).
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
        let arch = super::runtime::meta::architecture(content)?;
        if arch != ARCH {
            return Err(EngineError::UnsupportedArchitecture { seen: arch.to_string() });
        }
        let md = Meta::new(content, ARCH);
        let experts = md.usize_or("expert_count", 0)?;
        if experts > 1 {
            return Err(EngineError::UnsupportedShape {
                what: format!("mixture of {experts} experts (only dense llama models are supported)"),
            });
        }
        if let Some(kind) = md.str("rope.scaling.type")
            && kind != "none"
        {
            return Err(EngineError::BadMetadata {
                key: md.key("rope.scaling.type"),
                seen: format!("'{kind}'"),
                expected: "'none' (RoPE scaling is not supported)".into(),
            });
        }
        let dim = md.usize("embedding_length")?;
        let n_layers = md.usize("block_count")?;
        let n_heads = md.usize("attention.head_count")?;
        let n_kv_heads = md.usize_or("attention.head_count_kv", n_heads)?;
        let ff_dim = md.usize("feed_forward_length")?;
        let rms_eps = md.f64("attention.layer_norm_rms_epsilon")? as f32;
        let rope_base = md.f64_or("rope.freq_base", 10000.0)?;
        let max_context = md.usize_or("context_length", 2048)?;
        if n_heads == 0 || n_kv_heads == 0 || n_heads % n_kv_heads != 0 {
            return Err(EngineError::UnsupportedShape {
                what: format!(
                    "{n_heads} attention heads and {n_kv_heads} key/value heads (need a positive multiple)"
                ),
            });
        }
        if dim == 0 {
            return Err(EngineError::UnsupportedShape { what: "embedding length 0".into() });
        }
        // Explicit when the file says it (Gemma-style heads need not divide the width), else derived.
        let head_dim = if md.has("attention.key_length") {
            md.usize("attention.key_length")?
        } else {
            if dim % n_heads != 0 {
                return Err(EngineError::UnsupportedShape {
                    what: format!("embedding length {dim} is not a multiple of {n_heads} heads"),
                });
            }
            dim / n_heads
        };
        let value_dim = md.usize_or("attention.value_length", head_dim)?;
        if value_dim != head_dim {
            return Err(EngineError::UnsupportedShape {
                what: format!(
                    "key heads of {head_dim} and value heads of {value_dim} dimensions (need equal)"
                ),
            });
        }
        if head_dim == 0 || head_dim % kernels::LANES != 0 {
            return Err(EngineError::UnsupportedShape {
                what: format!("head dimension {head_dim} is not a multiple of 8"),
            });
        }
        let rope_dim = md.usize_or("rope.dimension_count", head_dim)?;
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

struct Layer {
    attn_norm: RmsNorm,
    /// Q, K and V: output columns `[0, q_dim)`, `[q_dim, q_dim + kv_dim)`, `[q_dim + kv_dim, q_dim + 2 kv_dim)`.
    qkv: Linear,
    wo: Linear,
    ffn_norm: RmsNorm,
    /// Gate and up: output columns `[0, ff)` and `[ff, 2 ff)`.
    gate_up: Linear,
    down: Linear,
}

/// Buffers of one forward call.
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

/// A loaded llama model: configuration and converted weights.
pub(crate) struct Llama {
    cfg: LlamaConfig,
    /// `[vocab][dim]`; also the output head when the file has no `output.weight` (tied embeddings).
    embed: QMatrix,
    /// `[vocab][dim]` when the file has its own output head.
    head: Option<QMatrix>,
    out_norm: RmsNorm,
    layers: Vec<Layer>,
    /// Every layer's attention (llama's layers are all alike).
    attention: Attention,
    kv_layout: Vec<KvLayout>,
    rope: Rope,
    mlp: GatedActivation,
    scratch: ScratchPool<Scratch>,
}

impl Llama {
    /// Loads the model from a parsed GGUF header and the whole file's bytes (a memory map), converting
    /// every weight into the engine's layout for the runtime's kernel path once.
    pub fn load(content: &Content, file: &[u8], rt: &Runtime) -> Result<Self, EngineError> {
        let cfg = LlamaConfig::from_gguf(content)?;
        let mlp = GatedActivation::SwiGlu;
        let kernel = rt.kernel();
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
        let norm = |name: &str| Ok::<_, EngineError>(RmsNorm::new(src.vector(name, dim)?, cfg.rms_eps));
        let out_norm = norm("output_norm.weight")?;
        let mut layers = Vec::with_capacity(cfg.n_layers);
        for l in 0..cfg.n_layers {
            let name = |t: &str| format!("blk.{l}.{t}.weight");
            layers.push(Layer {
                attn_norm: norm(&name("attn_norm"))?,
                qkv: Linear::new(
                    vec![
                        src.matrix(&name("attn_q"), q_dim, dim)?,
                        src.matrix(&name("attn_k"), kv_dim, dim)?,
                        src.matrix(&name("attn_v"), kv_dim, dim)?,
                    ],
                    kernel,
                ),
                wo: Linear::new(vec![src.matrix(&name("attn_output"), dim, q_dim)?], kernel),
                ffn_norm: norm(&name("ffn_norm"))?,
                gate_up: Linear::new(
                    vec![src.matrix(&name("ffn_gate"), ff, dim)?, src.matrix(&name("ffn_up"), ff, dim)?],
                    kernel,
                ),
                down: Linear::new(vec![src.matrix(&name("ffn_down"), dim, ff)?], kernel),
            });
        }
        let attention = Attention {
            n_heads: cfg.n_heads,
            n_kv_heads: cfg.n_kv_heads,
            head_dim: cfg.head_dim,
            scale: 1.0 / (cfg.head_dim as f32).sqrt(),
        };
        let layout = KvLayout { kv_heads: cfg.n_kv_heads, head_dim: cfg.head_dim, window: None };
        let rope = Rope::new(cfg.rope_base, cfg.rope_dim, RopeStyle::Interleaved);
        Ok(Llama {
            kv_layout: vec![layout; cfg.n_layers],
            cfg,
            embed,
            head,
            out_norm,
            layers,
            attention,
            rope,
            mlp,
            scratch: ScratchPool::default(),
        })
    }

    /// The graph: embeddings, then per layer attention and MLP blocks with their residuals, then the
    /// output norm and head.
    fn forward_with(
        &self,
        rt: &Runtime,
        caches: &mut [&mut KvCache],
        rows: &[Row],
        logits: &mut [f32],
        s: &mut Scratch,
    ) {
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
        let half = self.rope.pairs();
        self.rope.angles(rows, &mut s.rope);

        for (l, layer) in self.layers.iter().enumerate() {
            // Attention block.
            layer.attn_norm.rows(&mut s.h, &s.x);
            rt.quantize(&mut s.acts, &s.h, n, dim);
            rt.matmul(&layer.qkv.refs(), &s.acts, &mut s.qkv, layer.qkv.out_dim);
            let angles = &s.rope;
            rows_apply_indexed(&mut s.qkv, qkv_dim, |r, qkv| {
                let cs = &angles[r * half..(r + 1) * half];
                for head in qkv[..q_dim + kv_dim].chunks_exact_mut(cfg.head_dim) {
                    self.rope.rotate(head, cs);
                }
            });
            for (row, qkv) in rows.iter().zip(s.qkv.chunks_exact(qkv_dim)) {
                caches[row.cache].write(l, row.pos, &qkv[q_dim..q_dim + kv_dim], &qkv[q_dim + kv_dim..]);
            }
            rt.attention(&self.attention, l, caches, rows, &s.qkv, qkv_dim, &mut s.att);
            rt.quantize(&mut s.acts, &s.att, n, q_dim);
            rt.matmul(&layer.wo.refs(), &s.acts, &mut s.h, dim);
            add_in_place(&mut s.x, &s.h);

            // MLP block.
            layer.ffn_norm.rows(&mut s.h, &s.x);
            rt.quantize(&mut s.acts, &s.h, n, dim);
            rt.matmul(&layer.gate_up.refs(), &s.acts, &mut s.gate_up, layer.gate_up.out_dim);
            self.mlp.rows(rt.kernel(), &mut s.mlp, ff, &s.gate_up);
            rt.quantize(&mut s.acts, &s.mlp, n, ff);
            rt.matmul(&layer.down.refs(), &s.acts, &mut s.h, dim);
            add_in_place(&mut s.x, &s.h);
        }

        self.out_norm.rows(&mut s.h, &s.x);
        rt.quantize(&mut s.acts, &s.h, n, dim);
        let head = self.head.as_ref().unwrap_or(&self.embed);
        rt.matmul(&[head], &s.acts, logits, cfg.vocab);
    }
}

impl Architecture for Llama {
    fn name(&self) -> &'static str {
        ARCH
    }

    fn vocab(&self) -> usize {
        self.cfg.vocab
    }

    fn max_context(&self) -> usize {
        self.cfg.max_context
    }

    fn kv_layout(&self) -> &[KvLayout] {
        &self.kv_layout
    }

    fn key_rope(&self, _layer: usize) -> &Rope {
        &self.rope
    }

    fn weight_bytes(&self) -> usize {
        let mut n = self.embed.size_bytes() + self.head.as_ref().map_or(0, QMatrix::size_bytes);
        for l in &self.layers {
            n += [&l.qkv, &l.wo, &l.gate_up, &l.down].iter().map(|lin| lin.size_bytes()).sum::<usize>();
        }
        n
    }

    fn forward(&self, rt: &Runtime, caches: &mut [&mut KvCache], rows: &[Row], logits: &mut [f32]) {
        self.scratch.with(|s| self.forward_with(rt, caches, rows, logits, s));
    }
}
