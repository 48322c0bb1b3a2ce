//! Would a recency (cache) model pay? An order-0 model of the chunk's own tokens, mixed after the
//! recommended mixer, simulated on the probabilities `examples/dump_probs.rs` writes.
//!
//! The cache gives token `t` the probability `s_t / Z`, `s_t = Σ δ^(n - i)` over the positions `i < n` where
//! `t` occurred (`δ = 1 - 1/W`; `W = ∞` counts every occurrence alike), `Z = Σ_t s_t`. The final
//! probability is `(1 - λ) × p_mix + λ × q_cache`, `λ` learned online by an EM step of rate 1/32 per
//! bucket of the LLM's top probability (a chunk starts with `λ = 1/32`). Costs are ideal code lengths. A
//! measurement tool: it uses the platform's `powf`, which the product never does.
//!
//! `cargo run --release --example cache_sim -- FILE.probs...`
#[path = "shared/dump.rs"]
mod dump;

use dump::{CodedToken, VOCAB, confidence_bucket, read};
use llmzip::mix::{MixConfig, MixPlan, Mixer};

/// Bits of `rows` with the cache of window `w` (0: the mixer alone; `u32::MAX`: no decay).
fn simulate(rows: &[CodedToken], w: u32, rate: f64) -> f64 {
    let mut mixer = Mixer::new(MixConfig::recommended(), VOCAB);
    let mut plan = MixPlan::new();
    let delta = if w == u32::MAX { 1.0 } else { 1.0 - 1.0 / w as f64 };
    let mut score = vec![0.0f64; VOCAB];
    let mut last = vec![0u64; VOCAB];
    let (mut z, mut n) = (0.0f64, 0u64);
    let mut lambda = [1.0 / 32.0; 4];
    let mut chunk = u32::MAX;
    let mut bits = 0.0;
    for r in rows {
        if r.chunk != chunk {
            mixer.reset();
            score.fill(0.0);
            last.fill(0);
            (z, n) = (0.0, 0);
            lambda = [1.0 / 32.0; 4];
            chunk = r.chunk;
        }
        mixer.plan(1.0 / r.p_top, &mut plan);
        let p_mix = plan.probability(r.p_y, r.token);
        let t = r.token as usize;
        let p = if w == 0 || z == 0.0 {
            p_mix
        } else {
            let q = score[t] * delta.powf((n - last[t]) as f64) / z;
            let b = confidence_bucket(r.p_top);
            let l = lambda[b];
            let p = (1.0 - l) * p_mix + l * q;
            // EM: lambda <- lambda × (1 - rate + rate × q / p).
            lambda[b] = (l * (1.0 - rate + rate * q / p)).clamp(1.0 / 4096.0, 0.5);
            p
        };
        bits -= p.log2();
        mixer.update(&plan, r.p_y, r.token);
        score[t] = score[t] * delta.powf((n - last[t]) as f64) + 1.0;
        last[t] = n + 1;
        z = z * delta + 1.0;
        n += 1;
    }
    bits
}

fn main() {
    for path in std::env::args().skip(1) {
        let rows = read(&path);
        let base = simulate(&rows, 0, 0.0);
        println!("{path}: {} tokens, recommended mixer {:.0} bits", rows.len(), base);
        for w in [64, 256, 1024, 4096, u32::MAX] {
            for rate in [1.0 / 64.0, 1.0 / 16.0] {
                let bits = simulate(&rows, w, rate);
                println!(
                    "  cache W={:>10} rate 1/{:<3} {:>10.0} bits  saved {:>6.3}%",
                    if w == u32::MAX { "inf".to_string() } else { w.to_string() },
                    (1.0 / rate) as u32,
                    bits,
                    (base - bits) / base * 100.0
                );
            }
        }
    }
}
