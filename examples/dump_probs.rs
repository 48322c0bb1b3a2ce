//! The input of `examples/mix_sim.rs`: for every token of FILE (optionally its first N bytes), as the
//! compressor of format version 1 codes it (64 KiB chunks, windows of 2048 with 256 overlap, no mixer),
//! one line `chunk token p_y top_id p_top`: the model's probability of the actual token, its most likely
//! token and that one's probability (1 / the softmax sum, since the largest weight is 1). Then
//! `s:` and the sums `Σ_t p(t)^α` for every `α` of [`ALPHAS`], comma-separated (what a change of the
//! LLM's temperature would need to normalise, `examples/logit_sim.rs`). Then, for
//! every token the recommended mixer adds counts to at that position (`MixPlan::extra`), `token:p`, the
//! LLM's probability of it: what a simulation of other ways of blending needs (`examples/logit_sim.rs`).
//!
//! `cargo run --release --example dump_probs -- FILE [N] > FILE.probs` (the default model; minutes).
#[path = "shared/dump.rs"]
mod dump;

use dump::ALPHAS;
use llmzip::mix::{MixConfig, MixPlan, Mixer};
use llmzip::pipeline::{CodecOptions, Session, chunk_spans, window::Schedule};
use llmzip::quant::{Probabilities, softmax};
use std::io::Write;

fn main() {
    let path = std::env::args().nth(1).unwrap();
    let limit: usize = std::env::args().nth(2).map(|s| s.parse().unwrap()).unwrap_or(usize::MAX);
    let data = std::fs::read(&path).unwrap();
    let data = &data[..data.len().min(limit)];
    let opts = CodecOptions::default();
    let session = Session::open(&opts, &llmzip::model::NoModelProgress).unwrap();
    let vocab = session.engine.vocab_size();
    let math = session.engine.kernels().math();
    let out = std::io::stdout();
    let mut out = std::io::BufWriter::new(out.lock());
    let start = [session.tokenizer.start_token()];
    let mut probs = Probabilities::new();
    let mut mixer = Mixer::new(MixConfig::recommended(), vocab);
    let mut plan = MixPlan::new();
    for (c, span) in chunk_spans(data, 64 * 1024).unwrap().into_iter().enumerate() {
        let tokens = session.tokenizer.encode(&data[span.start as usize..span.end as usize]).unwrap();
        let mut cache = session.engine.new_cache(2048, llmzip::engine::EngineVersion::V1);
        mixer.reset();
        for w in Schedule::new(tokens.len(), 2048, 256).unwrap() {
            cache.clear();
            let mut input: Vec<u32> = w.context_tokens(&tokens, &start).to_vec();
            let first_row = input.len() - 1;
            input.extend_from_slice(&tokens[w.coded.start..w.coded.end - 1]);
            let mut logits = vec![0f32; input.len() * vocab];
            for (i, sl) in input.chunks(128).enumerate() {
                session
                    .engine
                    .prefill(&mut cache, sl, &mut logits[i * 128 * vocab..(i * 128 + sl.len()) * vocab])
                    .unwrap();
            }
            for (r, row) in logits.chunks_exact(vocab).enumerate().skip(first_row) {
                let y = tokens[w.coded.start + r - first_row];
                softmax(math, row, &mut probs);
                let ws = probs.weights();
                let s: f64 = ws.iter().map(|&x| x as f64).sum();
                let (mut top, mut tw) = (0usize, 0f32);
                for (i, &x) in ws.iter().enumerate() {
                    if x > tw {
                        top = i;
                        tw = x;
                    }
                }
                write!(out, "{c} {y} {:e} {top} {:e}", ws[y as usize] as f64 / s, tw as f64 / s).unwrap();
                let sums: Vec<String> = ALPHAS
                    .iter()
                    .map(|&a| format!("{:e}", ws.iter().map(|&x| (x as f64 / s).powf(a)).sum::<f64>()))
                    .collect();
                write!(out, " s:{}", sums.join(",")).unwrap();
                mixer.plan(s / tw as f64, &mut plan);
                for &(t, _) in plan.extra() {
                    write!(out, " {t}:{:e}", ws[t as usize] as f64 / s).unwrap();
                }
                writeln!(out).unwrap();
                mixer.update(&plan, ws[y as usize] as f64 / s, y);
            }
        }
    }
}
