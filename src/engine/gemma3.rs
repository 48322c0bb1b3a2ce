//! The Gemma 3 architecture (text part), as Gemma 3 270M uses it: token embeddings scaled by
//! `sqrt(width)`; per layer RMSNorm -> grouped-query attention with RMSNorm on every query and key head
//! and RoPE on the two halves of each head -> RMSNorm -> residual, then RMSNorm -> GELU-tanh gated MLP
//! -> RMSNorm -> residual; final RMSNorm and the tied output head. Local layers attend to a sliding
//! window of the last `sliding_window` positions (their own included) with RoPE base 10,000; every
//! sixth layer is global, with the file's RoPE base (1,000,000).
//!
//! This file holds what is Gemma's own, in the manner of candle's `quantized_gemma3.rs`: the
//! configuration ([`Gemma3Config::from_gguf`]), the weight names ([`Gemma3::load`]) and the graph
//! ([`Gemma3::forward_with`]). Two things differ from candle's file, on purpose: the MLP is GELU-tanh
//! (as Gemma is trained; candle's quantized file uses SiLU), and the window holds exactly
//! `sliding_window` positions in prefill and step alike (Hugging Face's and llama.cpp's mask; candle
//! masks one position later in prefill and not at all in its one-token step).
//!
//! GGUF conventions this relies on: the converter stores Gemma's RMSNorm weights as `1 + w`, so they
//! are applied as they are; the local/global pattern and the local RoPE base are not in the file
//! unless `gemma3.attention.sliding_window_type` / `gemma3.rope.local_freq_base` say otherwise (the
//! defaults are those of llama.cpp and candle: 6 and 10,000).

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
pub const ARCH: &str = "gemma3";

/// Every this-many-th layer (the last of each group) is global when the file does not say.
const DEFAULT_PATTERN: usize = 6;
/// RoPE base of the local layers when the file does not say.
const DEFAULT_LOCAL_ROPE_BASE: f64 = 10_000.0;

/// Hyper-parameters read from the GGUF metadata (`gemma3.*` keys) and tensor shapes.
#[derive(Clone, Debug, PartialEq)]
pub struct Gemma3Config {
    /// Width of the residual stream (`gemma3.embedding_length`).
    pub dim: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    /// Key/value heads; `n_heads` is a multiple of it.
    pub n_kv_heads: usize,
    /// `gemma3.attention.key_length` (= `value_length`), read, never derived: Gemma's heads do not
    /// divide the width (4 x 256 against 640). A multiple of 8 (the attention's accumulator lanes).
    pub head_dim: usize,
    /// Hidden width of the MLP (`gemma3.feed_forward_length`).
    pub ff_dim: usize,
    /// Rows of `token_embd.weight`.
    pub vocab: usize,
    /// Positions a local layer sees, its own included (`gemma3.attention.sliding_window`).
    pub window: usize,
    /// Layer `l` is global when `(l + 1) % pattern == 0`.
    pub pattern: usize,
    pub rope_base: f64,
    pub local_rope_base: f64,
    pub rms_eps: f32,
    /// Context the model was trained for (`gemma3.context_length`).
    pub max_context: usize,
}

impl Gemma3Config {
    /// Reads and checks the hyper-parameters of a Gemma 3 GGUF.
    pub fn from_gguf(content: &Content) -> Result<Self, EngineError> {
        let arch = super::runtime::meta::architecture(content)?;
        if arch != ARCH {
            return Err(EngineError::UnsupportedArchitecture { seen: arch.to_string() });
        }
        let md = Meta::new(content, ARCH);
        for key in ["rope.scaling.type", "final_logit_softcapping", "attn_logit_softcapping"] {
            if let Some(v) = md.value(key) {
                let none = matches!(md.str(key), Some("none"));
                if !none {
                    return Err(EngineError::BadMetadata {
                        key: md.key(key),
                        seen: format!("{v:?}"),
                        expected: "no such key (RoPE scaling and soft-capping are not supported)".into(),
                    });
                }
            }
        }
        let dim = md.usize("embedding_length")?;
        let n_layers = md.usize("block_count")?;
        let n_heads = md.usize("attention.head_count")?;
        let n_kv_heads = md.usize_or("attention.head_count_kv", n_heads)?;
        let head_dim = md.usize("attention.key_length")?;
        let value_dim = md.usize_or("attention.value_length", head_dim)?;
        let ff_dim = md.usize("feed_forward_length")?;
        let window = md.usize("attention.sliding_window")?;
        let pattern = md.usize_or("attention.sliding_window_type", DEFAULT_PATTERN)?;
        let rms_eps = md.f64("attention.layer_norm_rms_epsilon")? as f32;
        let rope_base = md.f64("rope.freq_base")?;
        let local_rope_base = md.f64_or("rope.local_freq_base", DEFAULT_LOCAL_ROPE_BASE)?;
        let max_context = md.usize_or("context_length", 32768)?;
        let bad = |what: String| Err(EngineError::UnsupportedShape { what });
        if n_heads == 0 || n_kv_heads == 0 || n_heads % n_kv_heads != 0 {
            return bad(format!(
                "{n_heads} attention heads and {n_kv_heads} key/value heads (need a positive multiple)"
            ));
        }
        if dim == 0 || n_layers == 0 || ff_dim == 0 {
            return bad(format!("width {dim}, {n_layers} layers, MLP width {ff_dim}"));
        }
        if value_dim != head_dim {
            return bad(format!(
                "key heads of {head_dim} and value heads of {value_dim} dimensions (need equal)"
            ));
        }
        if head_dim == 0 || head_dim % kernels::LANES != 0 {
            return bad(format!("head dimension {head_dim} is not a multiple of 8"));
        }
        if window == 0 || pattern == 0 {
            return bad(format!("sliding window of {window} positions, global layer every {pattern}"));
        }
        for base in [rope_base, local_rope_base] {
            if !(base.is_finite() && base > 1.0) {
                return bad(format!("RoPE base {base}"));
            }
        }
        if !(rms_eps.is_finite() && rms_eps >= 0.0) {
            return bad(format!("RMS epsilon {rms_eps}"));
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
        Ok(Gemma3Config {
            dim,
            n_layers,
            n_heads,
            n_kv_heads,
            head_dim,
            ff_dim,
            vocab: embd[0],
            window,
            pattern,
            rope_base,
            local_rope_base,
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

    /// Whether layer `l` attends to the whole context.
    pub fn is_global(&self, l: usize) -> bool {
        (l + 1).is_multiple_of(self.pattern)
    }
}

struct Layer {
    attn_norm: RmsNorm,
    /// Q, K and V: output columns `[0, q_dim)`, `[q_dim, q_dim + kv_dim)`, `[q_dim + kv_dim, q_dim + 2 kv_dim)`.
    qkv: Linear,
    /// Applied to every query head and every key head (before RoPE).
    q_norm: RmsNorm,
    k_norm: RmsNorm,
    wo: Linear,
    post_attn_norm: RmsNorm,
    ffn_norm: RmsNorm,
    /// Gate and up: output columns `[0, ff)` and `[ff, 2 ff)`.
    gate_up: Linear,
    down: Linear,
    post_ffn_norm: RmsNorm,
    global: bool,
}

/// Buffers of one forward call.
#[derive(Default)]
struct Scratch {
    x: Vec<f32>,
    h: Vec<f32>,
    /// A block's output before its post-norm.
    o: Vec<f32>,
    qkv: Vec<f32>,
    att: Vec<f32>,
    gate_up: Vec<f32>,
    mlp: Vec<f32>,
    /// RoPE pairs of every row, for the local and for the global base.
    rope_local: Vec<(f32, f32)>,
    rope_global: Vec<(f32, f32)>,
    acts: QActs,
}

/// A loaded Gemma 3 model: configuration and converted weights.
pub(crate) struct Gemma3 {
    cfg: Gemma3Config,
    /// `[vocab][dim]`, also the output head (Gemma ties them).
    embed: QMatrix,
    /// `sqrt(dim)` rounded to f32, the factor of every embedding.
    embed_scale: f32,
    out_norm: RmsNorm,
    layers: Vec<Layer>,
    attention: Attention,
    kv_layout: Vec<KvLayout>,
    rope_local: Rope,
    rope_global: Rope,
    scratch: ScratchPool<Scratch>,
}

impl Gemma3 {
    /// Loads the model from a parsed GGUF header and the whole file's bytes (a memory map), converting
    /// every weight into the engine's layout for the runtime's kernel path once.
    pub fn load(content: &Content, file: &[u8], rt: &Runtime) -> Result<Self, EngineError> {
        let cfg = Gemma3Config::from_gguf(content)?;
        let kernel = rt.kernel();
        let src = TensorSource { content, file };
        let (dim, ff, q_dim, kv_dim, hd) = (cfg.dim, cfg.ff_dim, cfg.q_dim(), cfg.kv_dim(), cfg.head_dim);
        let mut embed = src.matrix("token_embd.weight", cfg.vocab, dim)?;
        if src.has("output.weight") {
            return Err(EngineError::UnsupportedShape {
                what: "a Gemma 3 file with its own output head (Gemma ties it to the embeddings)".into(),
            });
        }
        embed.prepare_for(kernel);
        let norm =
            |name: &str, len: usize| Ok::<_, EngineError>(RmsNorm::new(src.vector(name, len)?, cfg.rms_eps));
        let out_norm = norm("output_norm.weight", dim)?;
        let mut layers = Vec::with_capacity(cfg.n_layers);
        for l in 0..cfg.n_layers {
            let name = |t: &str| format!("blk.{l}.{t}.weight");
            layers.push(Layer {
                attn_norm: norm(&name("attn_norm"), dim)?,
                qkv: Linear::new(
                    vec![
                        src.matrix(&name("attn_q"), q_dim, dim)?,
                        src.matrix(&name("attn_k"), kv_dim, dim)?,
                        src.matrix(&name("attn_v"), kv_dim, dim)?,
                    ],
                    kernel,
                ),
                q_norm: norm(&name("attn_q_norm"), hd)?,
                k_norm: norm(&name("attn_k_norm"), hd)?,
                wo: Linear::new(vec![src.matrix(&name("attn_output"), dim, q_dim)?], kernel),
                post_attn_norm: norm(&name("post_attention_norm"), dim)?,
                ffn_norm: norm(&name("ffn_norm"), dim)?,
                gate_up: Linear::new(
                    vec![src.matrix(&name("ffn_gate"), ff, dim)?, src.matrix(&name("ffn_up"), ff, dim)?],
                    kernel,
                ),
                down: Linear::new(vec![src.matrix(&name("ffn_down"), dim, ff)?], kernel),
                post_ffn_norm: norm(&name("post_ffw_norm"), dim)?,
                global: cfg.is_global(l),
            });
        }
        let attention = Attention {
            n_heads: cfg.n_heads,
            n_kv_heads: cfg.n_kv_heads,
            head_dim: hd,
            scale: 1.0 / (hd as f32).sqrt(),
        };
        let kv_layout = (0..cfg.n_layers)
            .map(|l| KvLayout {
                kv_heads: cfg.n_kv_heads,
                head_dim: hd,
                window: (!cfg.is_global(l)).then_some(cfg.window),
            })
            .collect();
        Ok(Gemma3 {
            embed_scale: (dim as f64).sqrt() as f32,
            rope_local: Rope::new(cfg.local_rope_base, hd, RopeStyle::Halves),
            rope_global: Rope::new(cfg.rope_base, hd, RopeStyle::Halves),
            cfg,
            embed,
            out_norm,
            layers,
            attention,
            kv_layout,
            scratch: ScratchPool::default(),
        })
    }

    /// The graph: scaled embeddings, then per layer the attention and MLP blocks, each normalized
    /// before and after, with their residuals, then the output norm and the tied head.
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
        let (dim, q_dim, kv_dim, ff, hd) = (cfg.dim, cfg.q_dim(), cfg.kv_dim(), cfg.ff_dim, cfg.head_dim);
        let qkv_dim = q_dim + 2 * kv_dim;
        s.x.resize(n * dim, 0.0);
        s.h.resize(n * dim, 0.0);
        s.o.resize(n * dim, 0.0);
        s.qkv.resize(n * qkv_dim, 0.0);
        s.att.resize(n * q_dim, 0.0);
        s.gate_up.resize(n * 2 * ff, 0.0);
        s.mlp.resize(n * ff, 0.0);

        // Embeddings: exact dequantization of one row each, times sqrt(dim).
        for (row, x) in rows.iter().zip(s.x.chunks_exact_mut(dim)) {
            self.embed.dequantize_row(row.token as usize, x);
            for v in x.iter_mut() {
                *v *= self.embed_scale;
            }
        }
        let half = self.rope_local.pairs();
        self.rope_local.angles(rows, &mut s.rope_local);
        self.rope_global.angles(rows, &mut s.rope_global);

        for (l, layer) in self.layers.iter().enumerate() {
            // Attention block.
            layer.attn_norm.rows(&mut s.h, &s.x);
            rt.quantize(&mut s.acts, &s.h, n, dim);
            rt.matmul(&layer.qkv.refs(), &s.acts, &mut s.qkv, layer.qkv.out_dim);
            let (rope, angles) = if layer.global {
                (&self.rope_global, &s.rope_global)
            } else {
                (&self.rope_local, &s.rope_local)
            };
            rows_apply_indexed(&mut s.qkv, qkv_dim, |r, qkv| {
                let cs = &angles[r * half..(r + 1) * half];
                let (q, kv) = qkv.split_at_mut(q_dim);
                let k = &mut kv[..kv_dim];
                layer.q_norm.pieces_in_place(q);
                layer.k_norm.pieces_in_place(k);
                for head in q.chunks_exact_mut(hd).chain(k.chunks_exact_mut(hd)) {
                    rope.rotate(head, cs);
                }
            });
            for (row, qkv) in rows.iter().zip(s.qkv.chunks_exact(qkv_dim)) {
                caches[row.cache].write(l, row.pos, &qkv[q_dim..q_dim + kv_dim], &qkv[q_dim + kv_dim..]);
            }
            rt.attention(&self.attention, l, caches, rows, &s.qkv, qkv_dim, &mut s.att);
            rt.quantize(&mut s.acts, &s.att, n, q_dim);
            rt.matmul(&layer.wo.refs(), &s.acts, &mut s.o, dim);
            layer.post_attn_norm.rows(&mut s.h, &s.o);
            add_in_place(&mut s.x, &s.h);

            // MLP block.
            layer.ffn_norm.rows(&mut s.h, &s.x);
            rt.quantize(&mut s.acts, &s.h, n, dim);
            rt.matmul(&layer.gate_up.refs(), &s.acts, &mut s.gate_up, layer.gate_up.out_dim);
            GatedActivation::GeGluTanh.rows(rt.kernel(), &mut s.mlp, ff, &s.gate_up);
            rt.quantize(&mut s.acts, &s.mlp, n, ff);
            rt.matmul(&layer.down.refs(), &s.acts, &mut s.o, dim);
            layer.post_ffn_norm.rows(&mut s.h, &s.o);
            add_in_place(&mut s.x, &s.h);
        }

        self.out_norm.rows(&mut s.h, &s.x);
        rt.quantize(&mut s.acts, &s.h, n, dim);
        rt.matmul(&[&self.embed], &s.acts, logits, cfg.vocab);
    }
}

impl Architecture for Gemma3 {
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

    fn key_rope(&self, layer: usize) -> &Rope {
        if self.layers[layer].global { &self.rope_global } else { &self.rope_local }
    }

    fn weight_bytes(&self) -> usize {
        let mut n = self.embed.size_bytes();
        for l in &self.layers {
            n += [&l.qkv, &l.wo, &l.gate_up, &l.down].iter().map(|lin| lin.size_bytes()).sum::<usize>();
        }
        n
    }

    fn forward(&self, rt: &Runtime, caches: &mut [&mut KvCache], rows: &[Row], logits: &mut [f32]) {
        self.scratch.with(|s| self.forward_with(rt, caches, rows, logits, s));
    }
}
