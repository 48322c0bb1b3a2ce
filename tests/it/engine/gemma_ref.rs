//! A reference forward pass of Gemma 3 assembled from candle's building blocks, as candle-transformers'
//! `quantized_gemma3::ModelWeights::forward` assembles them, with its two defects fixed:
//! - the MLP is GELU-tanh (`gelu(gate) * up`, as Gemma is trained), not SiLU;
//! - local layers see exactly the last `sliding_window` positions, their own included (candle masks
//!   `j + window < i`, one position more, and applies no window at all in its one-token step).
//!
//! Every weight is dequantized once by candle and used in f32 (`QMatMul::Tensor`), with no activation
//! quantization: the model the GGUF defines. It scores a whole sequence in one pass and returns the
//! code length of each next token, computing the output head in slices of rows so that 262,144
//! logits per position never sit in memory for every position at once.

use candle_core::quantized::QMatMul;
use candle_core::quantized::gguf_file::Content;
use candle_core::{D, DType, Device, IndexOp, Module, Result, Tensor};
use candle_transformers::quantized_nn::RmsNorm;

struct Layer {
    wq: QMatMul,
    wk: QMatMul,
    wv: QMatMul,
    wo: QMatMul,
    gate: QMatMul,
    up: QMatMul,
    down: QMatMul,
    attn_norm: RmsNorm,
    q_norm: RmsNorm,
    k_norm: RmsNorm,
    post_attn_norm: RmsNorm,
    ffn_norm: RmsNorm,
    post_ffn_norm: RmsNorm,
    /// `Some(window)` for a local layer.
    window: Option<usize>,
    rope_base: f32,
}

pub struct Reference {
    embed: Tensor,
    layers: Vec<Layer>,
    norm: RmsNorm,
    n_head: usize,
    n_kv_head: usize,
    head_dim: usize,
    dim: usize,
}

fn md_u32(ct: &Content, key: &str) -> u32 {
    ct.metadata[key].to_u32().unwrap()
}

impl Reference {
    pub fn load(bytes: &[u8]) -> Result<Self> {
        let dev = Device::Cpu;
        let ct = Content::read(&mut std::io::Cursor::new(bytes))?;
        let eps = ct.metadata["gemma3.attention.layer_norm_rms_epsilon"].to_f32()? as f64;
        let tensor = |name: &str| ct.tensor(&mut std::io::Cursor::new(bytes), name, &dev);
        let dense = |name: &str| -> Result<QMatMul> { Ok(QMatMul::Tensor(tensor(name)?.dequantize(&dev)?)) };
        let norm = |name: &str| RmsNorm::from_qtensor(tensor(name)?, eps);
        let window = md_u32(&ct, "gemma3.attention.sliding_window") as usize;
        let rope_base = ct.metadata["gemma3.rope.freq_base"].to_f32()?;
        let mut layers = Vec::new();
        for l in 0..md_u32(&ct, "gemma3.block_count") as usize {
            let p = format!("blk.{l}");
            let global = (l + 1) % 6 == 0;
            layers.push(Layer {
                wq: dense(&format!("{p}.attn_q.weight"))?,
                wk: dense(&format!("{p}.attn_k.weight"))?,
                wv: dense(&format!("{p}.attn_v.weight"))?,
                wo: dense(&format!("{p}.attn_output.weight"))?,
                gate: dense(&format!("{p}.ffn_gate.weight"))?,
                up: dense(&format!("{p}.ffn_up.weight"))?,
                down: dense(&format!("{p}.ffn_down.weight"))?,
                attn_norm: norm(&format!("{p}.attn_norm.weight"))?,
                q_norm: norm(&format!("{p}.attn_q_norm.weight"))?,
                k_norm: norm(&format!("{p}.attn_k_norm.weight"))?,
                post_attn_norm: norm(&format!("{p}.post_attention_norm.weight"))?,
                ffn_norm: norm(&format!("{p}.ffn_norm.weight"))?,
                post_ffn_norm: norm(&format!("{p}.post_ffw_norm.weight"))?,
                window: (!global).then_some(window),
                rope_base: if global { rope_base } else { 10_000.0 },
            });
        }
        Ok(Reference {
            embed: tensor("token_embd.weight")?.dequantize(&dev)?,
            layers,
            norm: norm("output_norm.weight")?,
            n_head: md_u32(&ct, "gemma3.attention.head_count") as usize,
            n_kv_head: md_u32(&ct, "gemma3.attention.head_count_kv") as usize,
            head_dim: md_u32(&ct, "gemma3.attention.key_length") as usize,
            dim: md_u32(&ct, "gemma3.embedding_length") as usize,
        })
    }

    /// For a fresh context holding `tokens`: the code length in bits of `tokens[t + 1]` under the
    /// logits of position `t`, for every `t` but the last.
    pub fn next_token_bits(&self, tokens: &[u32]) -> Result<Vec<f64>> {
        let dev = Device::Cpu;
        let t = tokens.len();
        let (hd, nh, nkv) = (self.head_dim, self.n_head, self.n_kv_head);
        let ids = Tensor::new(tokens, &dev)?;
        let mut x = (self.embed.index_select(&ids, 0)?.unsqueeze(0)? * (self.dim as f64).sqrt())?;
        let neg_inf = Tensor::new(f32::NEG_INFINITY, &dev)?;
        for layer in &self.layers {
            // RoPE tables as candle's quantized_gemma3 computes them: theta_i = 1 / base^(2i/d) in f32.
            let theta: Vec<f32> =
                (0..hd / 2).map(|i| 1f32 / layer.rope_base.powf((2 * i) as f32 / hd as f32)).collect();
            let theta = Tensor::new(theta.as_slice(), &dev)?.reshape((1, ()))?;
            let pos = Tensor::arange(0u32, t as u32, &dev)?.to_dtype(DType::F32)?.reshape(((), 1))?;
            let angles = pos.matmul(&theta)?;
            let (cos, sin) = (angles.cos()?, angles.sin()?);
            let mask: Vec<u8> = (0..t)
                .flat_map(|i| (0..t).map(move |j| (j > i || layer.window.is_some_and(|w| i - j >= w)) as u8))
                .collect();
            let mask = Tensor::from_slice(&mask, (t, t), &dev)?;

            let residual = x.clone();
            let h = layer.attn_norm.forward(&x)?;
            let q = layer.wq.forward(&h)?.reshape((1, t, nh, hd))?.transpose(1, 2)?.contiguous()?;
            let k = layer.wk.forward(&h)?.reshape((1, t, nkv, hd))?.transpose(1, 2)?.contiguous()?;
            let v = layer.wv.forward(&h)?.reshape((1, t, nkv, hd))?.transpose(1, 2)?.contiguous()?;
            let q = layer.q_norm.forward(&q)?;
            let k = layer.k_norm.forward(&k)?;
            let q = candle_nn::rotary_emb::rope(&q.contiguous()?, &cos, &sin)?;
            let k = candle_nn::rotary_emb::rope(&k.contiguous()?, &cos, &sin)?;
            let k = candle_transformers::utils::repeat_kv(k, nh / nkv)?;
            let v = candle_transformers::utils::repeat_kv(v, nh / nkv)?;
            let att = (q.matmul(&k.t()?)? / (hd as f64).sqrt())?;
            let m = mask.broadcast_as(att.shape())?;
            let att = m.where_cond(&neg_inf.broadcast_as(att.shape().dims())?, &att)?;
            let att = candle_nn::ops::softmax_last_dim(&att)?;
            let y = att.matmul(&v.contiguous()?)?;
            let y = y.transpose(1, 2)?.reshape((1, t, nh * hd))?;
            let y = layer.post_attn_norm.forward(&layer.wo.forward(&y)?)?;
            x = (y + residual)?;

            let residual = x.clone();
            let h = layer.ffn_norm.forward(&x)?;
            let g = layer.gate.forward(&h)?.gelu()?;
            let u = layer.up.forward(&h)?;
            let y = layer.post_ffn_norm.forward(&layer.down.forward(&(g * u)?)?)?;
            x = (y + residual)?;
        }
        let x = self.norm.forward(&x)?.squeeze(0)?; // (t, dim)
        let mut bits = Vec::with_capacity(t.saturating_sub(1));
        let slice = 64;
        let mut r0 = 0;
        while r0 + 1 < t {
            let r1 = (r0 + slice).min(t - 1);
            let logits = x.i(r0..r1)?.matmul(&self.embed.t()?)?; // (rows, vocab)
            let logp = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
            let rows = logp.to_vec2::<f32>()?;
            for (i, row) in rows.iter().enumerate() {
                let target = tokens[r0 + i + 1] as usize;
                bits.push(-(row[target] as f64) / std::f64::consts::LN_2);
            }
            r0 = r1;
        }
        Ok(bits)
    }
}
