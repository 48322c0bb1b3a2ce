//! Would blending in the logit domain pay? The recommended mixer's linear blend, generalised by one
//! learned exponent, simulated on a dump with candidate probabilities (`examples/dump_probs.rs`).
//!
//! The linear mixer gives token `t` the probability `w × p(t) + s_t`: the LLM's `p(t)` scaled by its
//! weight `w`, plus the additions `s_t` of the cheap models (zero for most tokens). Written as a factor
//! on the LLM's probability, that is `p(t) × r_t` with `r_t = w + s_t / p(t)`. The logit-domain blend
//! raises the factor to a power: `p'(t) = p(t) × r_t^β / Z`, `Z = Σ_t p(t) × r_t^β`, which adds
//! `β × ln r_t` to every logit. `β = 1` is the linear mixer exactly; `β` learns online by gradient ascent
//! on `ln p'(y)`, one `β` per bucket of the LLM's top probability (or one in all). Costs are ideal code
//! lengths.
//!
//! Second, the LLM's temperature: `p_α(t) = p(t)^α / Σ_u p(u)^α` (the dump carries the sums) before the
//! linear mixer, for each fixed `α` of the dump, and with `α` chosen online per confidence bucket as the
//! one whose code length in that bucket has been the smallest so far.
//!
//! A measurement tool: it uses the platform's `ln` and `powf`, which the product never does.
//!
//! `cargo run --release --example logit_sim -- FILE.probs...`
#[path = "shared/dump.rs"]
mod dump;

use dump::{ALPHAS, CodedToken, VOCAB, confidence_bucket, read};
use llmzip::mix::{MixConfig, MixPlan, Mixer};
use llmzip::quant::precision_for;

/// Bits of `rows` with the exponent learning at `lr` (0: the linear mixer), per confidence bucket or
/// one for all; also the final exponents.
fn simulate(rows: &[CodedToken], lr: f64, per_bucket: bool) -> (f64, [f64; 4]) {
    let mut mixer = Mixer::new(MixConfig::recommended(), VOCAB);
    let mut plan = MixPlan::new();
    let avail = ((1u32 << precision_for(VOCAB)) - VOCAB as u32) as f64;
    let mut beta = [1.0f64; 4];
    let (mut chunk, mut bits, mut missing) = (u32::MAX, 0.0, 0usize);
    for r in rows {
        if r.chunk != chunk {
            mixer.reset();
            beta = [1.0; 4];
            chunk = r.chunk;
        }
        mixer.plan(1.0 / r.p_top, &mut plan);
        let p_lin = plan.probability(r.p_y, r.token);
        if plan.is_empty() || lr == 0.0 {
            bits -= p_lin.log2();
        } else {
            // The LLM's weight: the mixed probability of a token nothing was added to, per unit.
            let w = plan.probability(1.0, u32::MAX);
            let b = if per_bucket { confidence_bucket(r.p_top) } else { 0 };
            let beta_b = beta[b];
            let (mut z, mut dz, mut p_cand) = (0.0, 0.0, 0.0);
            let mut r_y = w;
            for &(t, counts) in plan.extra() {
                let Some(&(_, p)) = r.candidates.iter().find(|c| c.0 == t) else {
                    missing += 1;
                    continue;
                };
                let rt = w + counts as f64 / avail / p;
                let f = p * rt.powf(beta_b);
                z += f;
                dz += f * rt.ln();
                p_cand += p;
                if t == r.token {
                    r_y = rt;
                }
            }
            let rest = (1.0 - p_cand).max(0.0) * w.powf(beta_b);
            z += rest;
            dz += rest * w.ln();
            let p = r.p_y * r_y.powf(beta_b) / z;
            bits -= p.log2();
            // d ln p'(y) / dβ = ln r_y - E'[ln r].
            beta[b] = (beta_b + lr * (r_y.ln() - dz / z)).clamp(0.0, 4.0);
        }
        mixer.update(&plan, r.p_y, r.token);
    }
    assert!(missing == 0, "{missing} additions without a candidate probability: not a candidate dump");
    (bits, beta)
}

/// Bits of `rows` with the LLM's probabilities at exponent `alpha` (`None`: chosen online per bucket,
/// among 1 and [`ALPHAS`]) before the linear mixer.
fn tempered(rows: &[CodedToken], alpha: Option<usize>) -> f64 {
    let mut mixer = Mixer::new(MixConfig::recommended(), VOCAB);
    let mut plan = MixPlan::new();
    // Running code length per bucket for each candidate exponent: index 0 is α = 1, i + 1 is ALPHAS[i].
    let mut running = [[0.0f64; 1 + ALPHAS.len()]; 4];
    let (mut chunk, mut bits) = (u32::MAX, 0.0);
    let p_at = |r: &CodedToken, k: usize| {
        if k == 0 { r.p_y } else { r.p_y.powf(ALPHAS[k - 1]) / r.power_sums[k - 1] }
    };
    for r in rows {
        assert_eq!(r.power_sums.len(), ALPHAS.len(), "not a dump with power sums");
        if r.chunk != chunk {
            mixer.reset();
            running = [[0.0; 1 + ALPHAS.len()]; 4];
            chunk = r.chunk;
        }
        let b = confidence_bucket(r.p_top);
        let k = alpha.unwrap_or_else(|| {
            (0..running[b].len()).min_by(|&i, &j| running[b][i].total_cmp(&running[b][j])).expect("one")
        });
        mixer.plan(1.0 / r.p_top, &mut plan);
        for (i, cost) in running[b].iter_mut().enumerate() {
            *cost -= plan.probability(p_at(r, i), r.token).ln();
        }
        let p = p_at(r, k);
        bits -= plan.probability(p, r.token).log2();
        mixer.update(&plan, p, r.token);
    }
    bits
}

fn main() {
    for path in std::env::args().skip(1) {
        let rows = read(&path);
        let (base, _) = simulate(&rows, 0.0, false);
        println!("{path}: {} tokens, linear mixer {:.0} bits", rows.len(), base);
        for per_bucket in [false, true] {
            for lr in [0.001, 0.003, 0.01, 0.03] {
                let (bits, beta) = simulate(&rows, lr, per_bucket);
                println!(
                    "  {:<10} lr {lr:<6} {bits:>10.0} bits  saved {:>6.3}%  final β {:.2?}",
                    if per_bucket { "per bucket" } else { "one β" },
                    (base - bits) / base * 100.0,
                    if per_bucket { &beta[..] } else { &beta[..1] }
                );
            }
        }
        if rows.first().is_some_and(|r| !r.power_sums.is_empty()) {
            for (i, a) in ALPHAS.iter().enumerate() {
                let bits = tempered(&rows, Some(i + 1));
                println!(
                    "  LLM at α = {a:<4}          {bits:>10.0} bits  saved {:>6.3}%",
                    (base - bits) / base * 100.0
                );
            }
            let bits = tempered(&rows, None);
            println!(
                "  α chosen per bucket      {bits:>10.0} bits  saved {:>6.3}%",
                (base - bits) / base * 100.0
            );
        }
    }
}
