//! A tiny llama GGUF with deterministic pseudo-random weights, so tests of the tokenizer, pipeline and
//! CLI run the real code paths in seconds without the real model.
//!
//! The file is a complete llama GGUF as llama.cpp writes them: `llama.*` hyper-parameters, a GPT-2
//! byte-level BPE tokenizer (`<|endoftext|>`, the 256 byte characters in `bytes_to_unicode` order, then
//! the results of a few dozen English merges), Q4_1 block weights, a Q8_0 token embedding that is also
//! the output head (no `output.weight`), and F32 norms. Weights come from the crate's splitmix64
//! stream ([`crate::testing::SplitMix64`], fixed forever) and are scaled so that the next-token
//! distributions are neither flat nor one-hot.

use std::fs::File;
use std::io::{self, BufWriter};
use std::path::Path;

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};

use crate::testing::SplitMix64;

/// Shape of the synthetic model. The defaults are small enough that a forward pass takes microseconds.
#[derive(Clone, Debug, PartialEq)]
pub struct SyntheticConfig {
    pub dim: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub ff_dim: usize,
    pub context_length: usize,
    pub rope_base: f32,
}

impl Default for SyntheticConfig {
    fn default() -> Self {
        SyntheticConfig {
            dim: 64,
            n_layers: 2,
            n_heads: 4,
            n_kv_heads: 2,
            ff_dim: 128,
            context_length: 4096,
            rope_base: 10000.0,
        }
    }
}

/// Merges of the synthetic tokenizer, in rank order, as (left, right) in byte-level characters
/// (`Ġ` is the space, `Ċ` the newline). Each result becomes a token after the 256 byte tokens.
pub const SYNTHETIC_MERGES: &[(&str, &str)] = &[
    ("Ġ", "t"),
    ("h", "e"),
    ("Ġt", "he"),
    ("i", "n"),
    ("Ġ", "a"),
    ("e", "r"),
    ("o", "n"),
    ("r", "e"),
    ("Ġ", "s"),
    ("a", "n"),
    ("e", "n"),
    ("o", "u"),
    ("Ġ", "o"),
    ("i", "t"),
    ("n", "d"),
    ("Ġa", "nd"),
    ("Ġ", "w"),
    ("Ġ", "b"),
    ("Ġo", "f"),
    ("in", "g"),
    ("Ġ", "c"),
    ("Ġ", "h"),
    ("e", "d"),
    ("Ġ", "i"),
    ("Ġ", "m"),
    ("a", "t"),
    ("o", "r"),
    ("Ġ", "f"),
    ("Ġ", "p"),
    ("a", "r"),
    ("e", "s"),
    ("Ġ", "d"),
    ("Ġ", "l"),
    ("l", "l"),
    ("Ġt", "o"),
    ("Ġi", "n"),
    ("Ġ", "A"),
    ("Ġ", "T"),
    ("Ġs", "he"),
    ("Ċ", "Ċ"),
    ("Ġ", "Ġ"),
    ("a", "l"),
];

/// The token that starts every chunk (and the BOS/EOS id) of the synthetic model.
pub const SYNTHETIC_END_OF_TEXT: &str = "<|endoftext|>";

/// GPT-2's byte-level alphabet as `(byte, char)` in `bytes_to_unicode` order: the printable bytes keep
/// their own code point and come first, the other 68 follow from U+0100, which is the bytes sorted by
/// their character. `byte_char` spells each byte; the caller passes the tokenizer's
/// (`llmzip::tokenizer::byte_to_char`): the engine knows nothing of tokenizers, so the alphabet is data
/// given to it, not a table it imports.
pub fn bytes_to_unicode(byte_char: impl Fn(u8) -> char) -> Vec<(u8, char)> {
    let mut alphabet: Vec<(u8, char)> = (0..=255u8).map(|b| (b, byte_char(b))).collect();
    alphabet.sort_by_key(|&(_, c)| c);
    alphabet
}

/// `n` weights `offset + scale * u`, `u` uniform in [-1, 1) from `rng` (its 24-bit values).
fn weights(rng: &mut SplitMix64, n: usize, scale: f32, offset: f32) -> Vec<f32> {
    (0..n).map(|_| offset + scale * rng.next_f32()).collect()
}

/// Writes the default synthetic model (see [`SyntheticConfig::default`]) to `path`, its vocabulary
/// spelled with `byte_char` (see [`bytes_to_unicode`]).
pub fn write_synthetic_llama(path: &Path, seed: u64, byte_char: impl Fn(u8) -> char) -> io::Result<()> {
    write_synthetic_llama_with(path, &SyntheticConfig::default(), seed, byte_char)
}

/// Writes a synthetic llama GGUF of the given shape to `path`; the same seed and alphabet give the same
/// bytes.
pub fn write_synthetic_llama_with(
    path: &Path,
    cfg: &SyntheticConfig,
    seed: u64,
    byte_char: impl Fn(u8) -> char,
) -> io::Result<()> {
    let invalid = |what: String| io::Error::new(io::ErrorKind::InvalidInput, what);
    if cfg.n_heads == 0
        || cfg.n_kv_heads == 0
        || !cfg.n_heads.is_multiple_of(cfg.n_kv_heads)
        || !cfg.dim.is_multiple_of(cfg.n_heads * 8)
        || !cfg.dim.is_multiple_of(32)
        || !cfg.ff_dim.is_multiple_of(32)
    {
        return Err(invalid(format!("unsupported synthetic shape {cfg:?}")));
    }
    let candle = |e: candle_core::Error| io::Error::other(e.to_string());
    let head_dim = cfg.dim / cfg.n_heads;
    let kv_dim = cfg.n_kv_heads * head_dim;
    let (vocab, tokenizer) = tokenizer_metadata(byte_char);

    let u32v = |n: usize| Value::U32(n as u32);
    // Key order is part of the file's bytes (and of the golden archives' model sha256).
    let mut metadata = vec![
        ("general.architecture", Value::String("llama".into())),
        ("general.name", Value::String("llmzip synthetic llama".into())),
        ("llama.context_length", u32v(cfg.context_length)),
        ("llama.embedding_length", u32v(cfg.dim)),
        ("llama.block_count", u32v(cfg.n_layers)),
        ("llama.feed_forward_length", u32v(cfg.ff_dim)),
        ("llama.attention.head_count", u32v(cfg.n_heads)),
        ("llama.attention.head_count_kv", u32v(cfg.n_kv_heads)),
        ("llama.rope.freq_base", Value::F32(cfg.rope_base)),
        ("llama.rope.dimension_count", u32v(head_dim)),
        ("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5)),
        ("llama.vocab_size", u32v(vocab)),
    ];
    metadata.extend(tokenizer);

    // Weights, drawn in a fixed order from one stream.
    let mut rng = SplitMix64::new(seed);
    let mut tensors: Vec<(String, QTensor)> = Vec::new();
    let mut add = |name: String, values: Vec<f32>, shape: &[usize], dtype: GgmlDType| {
        let t = Tensor::from_vec(values, shape, &Device::Cpu).map_err(candle)?;
        tensors.push((name, QTensor::quantize(&t, dtype).map_err(candle)?));
        Ok::<(), io::Error>(())
    };
    // Linear weights uniform in +-sqrt(3/inputs): unit output variance for unit-variance inputs.
    let linear = |rng: &mut SplitMix64, rows: usize, cols: usize| {
        weights(rng, rows * cols, (3.0 / cols as f32).sqrt(), 0.0)
    };
    add(
        "token_embd.weight".into(),
        weights(&mut rng, vocab * cfg.dim, 0.5, 0.0),
        &[vocab, cfg.dim],
        GgmlDType::Q8_0,
    )?;
    for l in 0..cfg.n_layers {
        let n = |t: &str| format!("blk.{l}.{t}.weight");
        let (d, f) = (cfg.dim, cfg.ff_dim);
        add(n("attn_norm"), weights(&mut rng, d, 0.1, 1.0), &[d], GgmlDType::F32)?;
        add(n("attn_q"), linear(&mut rng, d, d), &[d, d], GgmlDType::Q4_1)?;
        add(n("attn_k"), linear(&mut rng, kv_dim, d), &[kv_dim, d], GgmlDType::Q4_1)?;
        add(n("attn_v"), linear(&mut rng, kv_dim, d), &[kv_dim, d], GgmlDType::Q4_1)?;
        add(n("attn_output"), linear(&mut rng, d, d), &[d, d], GgmlDType::Q4_1)?;
        add(n("ffn_norm"), weights(&mut rng, d, 0.1, 1.0), &[d], GgmlDType::F32)?;
        add(n("ffn_gate"), linear(&mut rng, f, d), &[f, d], GgmlDType::Q4_1)?;
        add(n("ffn_up"), linear(&mut rng, f, d), &[f, d], GgmlDType::Q4_1)?;
        add(n("ffn_down"), linear(&mut rng, d, f), &[d, f], GgmlDType::Q4_1)?;
    }
    add("output_norm.weight".into(), weights(&mut rng, cfg.dim, 0.1, 1.0), &[cfg.dim], GgmlDType::F32)?;
    write_gguf(path, &metadata, &tensors)
}

/// The synthetic tokenizer's `tokenizer.ggml.*` metadata, and its vocabulary size.
fn tokenizer_metadata(byte_char: impl Fn(u8) -> char) -> (usize, Vec<(&'static str, Value)>) {
    let mut tokens = vec![SYNTHETIC_END_OF_TEXT.to_string()];
    tokens.extend(bytes_to_unicode(byte_char).iter().map(|&(_, c)| c.to_string()));
    for (a, b) in SYNTHETIC_MERGES {
        tokens.push(format!("{a}{b}"));
    }
    let vocab = tokens.len();
    let mut token_type = vec![Value::I32(1); vocab];
    token_type[0] = Value::I32(3);
    let merges: Vec<Value> =
        SYNTHETIC_MERGES.iter().map(|(a, b)| Value::String(format!("{a} {b}"))).collect();
    let metadata = vec![
        ("tokenizer.ggml.model", Value::String("gpt2".into())),
        ("tokenizer.ggml.pre", Value::String("smollm".into())),
        ("tokenizer.ggml.tokens", Value::Array(tokens.into_iter().map(Value::String).collect())),
        ("tokenizer.ggml.token_type", Value::Array(token_type)),
        ("tokenizer.ggml.merges", Value::Array(merges)),
        ("tokenizer.ggml.bos_token_id", Value::U32(0)),
        ("tokenizer.ggml.eos_token_id", Value::U32(0)),
        ("tokenizer.ggml.add_bos_token", Value::Bool(false)),
        ("tokenizer.ggml.add_space_prefix", Value::Bool(false)),
    ];
    (vocab, metadata)
}

fn write_gguf(path: &Path, metadata: &[(&str, Value)], tensors: &[(String, QTensor)]) -> io::Result<()> {
    let candle = |e: candle_core::Error| io::Error::other(e.to_string());
    let md: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (*k, v)).collect();
    let ts: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut w = BufWriter::new(File::create(path)?);
    gguf_file::write(&mut w, &md, &ts).map_err(candle)?;
    use std::io::Write;
    w.flush()
}

/// The local window of the synthetic Gemma 3 model: short, so that short tests cross it. Its shape: 4
/// layers, every `global_every`-th of them global (the file says so with
/// `gemma3.attention.sliding_window_type`; 2 gives two of each, 5 none), width 64, 4 query heads and
/// 1 key/value head of 32 dimensions (128 query dimensions against the width 64, as Gemma's 4 x 256
/// against 640).
pub const SYNTHETIC_GEMMA3_WINDOW: usize = 24;

/// Writes a tiny Gemma 3 GGUF (`general.architecture = gemma3`) with the synthetic BPE tokenizer:
/// every tensor Gemma 3 has (query/key norms, post-norms, the tied head), norms as `1 + w` around 1
/// as the converter stores them, and a mix of Q8_0, Q5_0 and Q4_1 weights (Q5_0 goes through the
/// engine's requantization). The same seed and alphabet give the same bytes.
pub fn write_synthetic_gemma3(
    path: &Path,
    seed: u64,
    global_every: usize,
    byte_char: impl Fn(u8) -> char,
) -> io::Result<()> {
    let candle = |e: candle_core::Error| io::Error::other(e.to_string());
    let (dim, n_layers, n_heads, n_kv_heads, head_dim, ff) = (64, 4, 4, 1, 32, 96);
    let (q_dim, kv_dim) = (n_heads * head_dim, n_kv_heads * head_dim);
    let (vocab, mut metadata) = tokenizer_metadata(byte_char);
    let u32v = |n: usize| Value::U32(n as u32);
    metadata.extend(vec![
        ("general.architecture", Value::String("gemma3".into())),
        ("general.name", Value::String("llmzip synthetic gemma3".into())),
        ("gemma3.context_length", u32v(8192)),
        ("gemma3.embedding_length", u32v(dim)),
        ("gemma3.block_count", u32v(n_layers)),
        ("gemma3.feed_forward_length", u32v(ff)),
        ("gemma3.attention.head_count", u32v(n_heads)),
        ("gemma3.attention.head_count_kv", u32v(n_kv_heads)),
        ("gemma3.attention.key_length", u32v(head_dim)),
        ("gemma3.attention.value_length", u32v(head_dim)),
        ("gemma3.attention.sliding_window", u32v(SYNTHETIC_GEMMA3_WINDOW)),
        ("gemma3.attention.sliding_window_type", u32v(global_every)),
        ("gemma3.rope.freq_base", Value::F32(1_000_000.0)),
        ("gemma3.attention.layer_norm_rms_epsilon", Value::F32(1e-6)),
    ]);
    let mut rng = SplitMix64::new(seed);
    let mut tensors: Vec<(String, QTensor)> = Vec::new();
    let mut add = |name: String, values: Vec<f32>, shape: &[usize], dtype: GgmlDType| {
        let t = Tensor::from_vec(values, shape, &Device::Cpu).map_err(candle)?;
        tensors.push((name, QTensor::quantize(&t, dtype).map_err(candle)?));
        Ok::<(), io::Error>(())
    };
    let linear = |rng: &mut SplitMix64, rows: usize, cols: usize| {
        weights(rng, rows * cols, (3.0 / cols as f32).sqrt(), 0.0)
    };
    add(
        "token_embd.weight".into(),
        weights(&mut rng, vocab * dim, 0.25, 0.0),
        &[vocab, dim],
        GgmlDType::Q8_0,
    )?;
    for l in 0..n_layers {
        let n = |t: &str| format!("blk.{l}.{t}.weight");
        add(n("attn_norm"), weights(&mut rng, dim, 0.1, 1.0), &[dim], GgmlDType::F32)?;
        add(n("attn_q"), linear(&mut rng, q_dim, dim), &[q_dim, dim], GgmlDType::Q5_0)?;
        add(n("attn_k"), linear(&mut rng, kv_dim, dim), &[kv_dim, dim], GgmlDType::Q5_0)?;
        add(n("attn_v"), linear(&mut rng, kv_dim, dim), &[kv_dim, dim], GgmlDType::Q8_0)?;
        add(n("attn_q_norm"), weights(&mut rng, head_dim, 0.1, 1.0), &[head_dim], GgmlDType::F32)?;
        add(n("attn_k_norm"), weights(&mut rng, head_dim, 0.1, 1.0), &[head_dim], GgmlDType::F32)?;
        add(n("attn_output"), linear(&mut rng, dim, q_dim), &[dim, q_dim], GgmlDType::Q4_1)?;
        add(n("post_attention_norm"), weights(&mut rng, dim, 0.1, 1.0), &[dim], GgmlDType::F32)?;
        add(n("ffn_norm"), weights(&mut rng, dim, 0.1, 1.0), &[dim], GgmlDType::F32)?;
        add(n("ffn_gate"), linear(&mut rng, ff, dim), &[ff, dim], GgmlDType::Q5_0)?;
        add(n("ffn_up"), linear(&mut rng, ff, dim), &[ff, dim], GgmlDType::Q4_1)?;
        add(n("ffn_down"), linear(&mut rng, dim, ff), &[dim, ff], GgmlDType::Q8_0)?;
        add(n("post_ffw_norm"), weights(&mut rng, dim, 0.1, 1.0), &[dim], GgmlDType::F32)?;
    }
    add("output_norm.weight".into(), weights(&mut rng, dim, 0.1, 1.0), &[dim], GgmlDType::F32)?;
    write_gguf(path, &metadata, &tensors)
}
