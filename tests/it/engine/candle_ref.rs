//! A reference forward pass assembled from candle's own building blocks, exactly as
//! candle-transformers' `quantized_llama::ModelWeights::forward` assembles them, except that it returns
//! the logits of every position.
//!
//! Why not call `ModelWeights` directly for the cross-entropy: its `forward` returns only the last
//! position's logits, so scoring N tokens takes N calls, and its KV cache grows by `Tensor::cat` at every
//! call (quadratic copying); with candle's scalar Q4_1 kernel that is about 3-20 tokens/s, which makes
//! 30 KB of text at context 2048 a matter of many minutes. Here every weight is dequantized once (exactly,
//! by candle) and used through `QMatMul::Tensor`, the path `ModelWeights` itself takes under
//! `CANDLE_DEQUANTIZE_ALL`: the model the GGUF defines, in f32, without activation quantization. The
//! test that uses this module also checks it against `ModelWeights` on a short prompt.

use candle_core::quantized::QMatMul;
use candle_core::quantized::gguf_file::Content;
use candle_core::{DType, Device, Module, Result, Tensor};
use candle_transformers::quantized_nn::RmsNorm;

struct Layer {
    wq: QMatMul,
    wk: QMatMul,
    wv: QMatMul,
    wo: QMatMul,
    w1: QMatMul,
    w2: QMatMul,
    w3: QMatMul,
    attn_norm: RmsNorm,
    ffn_norm: RmsNorm,
}

pub struct Reference {
    embed: Tensor,
    layers: Vec<Layer>,
    norm: RmsNorm,
    output: QMatMul,
    n_head: usize,
    n_kv_head: usize,
    head_dim: usize,
    rope_dim: usize,
    rope_base: f32,
}

fn md_u32(ct: &Content, key: &str) -> u32 {
    ct.metadata[key].to_u32().unwrap()
}

impl Reference {
    pub fn load(bytes: &[u8]) -> Result<Self> {
        let dev = Device::Cpu;
        let ct = Content::read(&mut std::io::Cursor::new(bytes))?;
        let mut r = std::io::Cursor::new(bytes);
        let eps = ct.metadata["llama.attention.layer_norm_rms_epsilon"].to_f32()? as f64;
        let mut dense = |name: &str| -> Result<QMatMul> {
            let t = ct.tensor(&mut r, name, &dev)?.dequantize(&dev)?;
            Ok(QMatMul::Tensor(t))
        };
        let mut layers = Vec::new();
        for l in 0..md_u32(&ct, "llama.block_count") {
            let p = format!("blk.{l}");
            layers.push(Layer {
                wq: dense(&format!("{p}.attn_q.weight"))?,
                wk: dense(&format!("{p}.attn_k.weight"))?,
                wv: dense(&format!("{p}.attn_v.weight"))?,
                wo: dense(&format!("{p}.attn_output.weight"))?,
                w1: dense(&format!("{p}.ffn_gate.weight"))?,
                w2: dense(&format!("{p}.ffn_down.weight"))?,
                w3: dense(&format!("{p}.ffn_up.weight"))?,
                attn_norm: RmsNorm::from_qtensor(
                    ct.tensor(&mut std::io::Cursor::new(bytes), &format!("{p}.attn_norm.weight"), &dev)?,
                    eps,
                )?,
                ffn_norm: RmsNorm::from_qtensor(
                    ct.tensor(&mut std::io::Cursor::new(bytes), &format!("{p}.ffn_norm.weight"), &dev)?,
                    eps,
                )?,
            });
        }
        let embed_q = ct.tensor(&mut std::io::Cursor::new(bytes), "token_embd.weight", &dev)?;
        let embed = embed_q.dequantize(&dev)?;
        let output = if ct.tensor_infos.contains_key("output.weight") {
            dense("output.weight")?
        } else {
            QMatMul::Tensor(embed.clone())
        };
        let norm = RmsNorm::from_qtensor(
            ct.tensor(&mut std::io::Cursor::new(bytes), "output_norm.weight", &dev)?,
            eps,
        )?;
        let n_head = md_u32(&ct, "llama.attention.head_count") as usize;
        let dim = md_u32(&ct, "llama.embedding_length") as usize;
        Ok(Reference {
            embed,
            layers,
            norm,
            output,
            n_head,
            n_kv_head: md_u32(&ct, "llama.attention.head_count_kv") as usize,
            head_dim: dim / n_head,
            rope_dim: md_u32(&ct, "llama.rope.dimension_count") as usize,
            rope_base: ct.metadata["llama.rope.freq_base"].to_f32()?,
        })
    }

    /// Logits `[tokens.len()][vocab]` for a fresh context.
    pub fn logits(&self, tokens: &[u32]) -> Result<Vec<f32>> {
        let dev = Device::Cpu;
        let t = tokens.len();
        // RoPE tables as quantized_llama computes them: theta_i = 1 / base^(2i/d) in f32.
        let theta: Vec<f32> = (0..self.rope_dim / 2)
            .map(|i| 1f32 / self.rope_base.powf((2 * i) as f32 / self.rope_dim as f32))
            .collect();
        let theta = Tensor::new(theta.as_slice(), &dev)?.reshape((1, ()))?;
        let pos = Tensor::arange(0u32, t as u32, &dev)?.to_dtype(DType::F32)?.reshape(((), 1))?;
        let angles = pos.matmul(&theta)?;
        let (cos, sin) = (angles.cos()?, angles.sin()?);
        let mask = candle_transformers::utils::build_causal_mask(t, 0, &dev)?;
        let neg_inf = Tensor::new(f32::NEG_INFINITY, &dev)?;

        let ids = Tensor::new(tokens, &dev)?;
        let mut x = self.embed.index_select(&ids, 0)?.unsqueeze(0)?; // (1, t, dim)
        let (hd, nh, nkv) = (self.head_dim, self.n_head, self.n_kv_head);
        for layer in &self.layers {
            let residual = x.clone();
            let h = layer.attn_norm.forward(&x)?;
            let q = layer.wq.forward(&h)?.reshape((1, t, nh, hd))?.transpose(1, 2)?;
            let k = layer.wk.forward(&h)?.reshape((1, t, nkv, hd))?.transpose(1, 2)?;
            let v = layer.wv.forward(&h)?.reshape((1, t, nkv, hd))?.transpose(1, 2)?.contiguous()?;
            let q = candle_nn::rotary_emb::rope_i(&q.contiguous()?, &cos, &sin)?;
            let k = candle_nn::rotary_emb::rope_i(&k.contiguous()?, &cos, &sin)?;
            let k = candle_transformers::utils::repeat_kv(k, nh / nkv)?;
            let v = candle_transformers::utils::repeat_kv(v, nh / nkv)?;
            let att = (q.matmul(&k.t()?)? / (hd as f64).sqrt())?;
            let m = mask.broadcast_as(att.shape())?;
            let att = m.where_cond(&neg_inf.broadcast_as(att.shape().dims())?, &att)?;
            let att = candle_nn::ops::softmax_last_dim(&att)?;
            let y = att.matmul(&v.contiguous()?)?;
            let y = y.transpose(1, 2)?.reshape((1, t, nh * hd))?;
            x = (layer.wo.forward(&y)? + residual)?;
            let residual = x.clone();
            let h = layer.ffn_norm.forward(&x)?;
            let g = candle_nn::ops::silu(&layer.w1.forward(&h)?)?;
            let u = layer.w3.forward(&h)?;
            x = (layer.w2.forward(&(g * u)?)? + residual)?;
        }
        let x = self.norm.forward(&x)?;
        let logits = self.output.forward(&x)?; // (1, t, vocab)
        logits.squeeze(0)?.flatten_all()?.to_vec1::<f32>()
    }
}
