//! Would a final SSE/APM stage pay? A binary secondary estimation of "the next token is the LLM's top
//! token", applied after the mixer, simulated on the probabilities `examples/dump_probs.rs` writes.
//!
//! Per position the recommended mixer plans as the compressor does; its probability `p` of the LLM's top
//! token is refined to `s` by an APM (a table of `points` probabilities over `stretch(p)` in `[lo, hi]`,
//! linearly interpolated, learning at `rate` towards the outcome, `s = mix_in × p + (1 - mix_in) × apm`),
//! selected by a small context; every other token is scaled by `(1 - s) / (1 - p)` so the distribution
//! still sums to 1. "sharpen only" keeps `s >= p`, the variant a table of non-negative additions could
//! express. Costs are ideal code lengths. This is a measurement tool: it uses the platform's `ln`/`exp`,
//! which the product never does.
//!
//! `cargo run --release --example sse_sim -- FILE.probs...` (README, *Mixer*, has the figures.)
#[path = "shared/dump.rs"]
mod dump;

use dump::{CodedToken, VOCAB, read};
use llmzip::mix::{MixConfig, MixPlan, Mixer};

#[derive(Clone, Copy)]
/// One APM variant (module docs). `ctx`: 0 none; 1 whether a model added counts to the top token; 2 that
/// and whether anything was added; 3 that and the number of additions (0..=3).
struct Apm {
    points: usize,
    lo: f64,
    hi: f64,
    rate: f64,
    mix_in: f64,
    ctx: u8,
    sharpen_only: bool,
}

fn stretch(p: f64) -> f64 {
    (p / (1.0 - p)).ln()
}
fn squash(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Total bits of `rows` with the recommended mixer, then `apm` when given.
fn simulate(rows: &[CodedToken], apm: Option<Apm>) -> f64 {
    let mut mixer = Mixer::new(MixConfig::recommended(), VOCAB);
    let mut plan = MixPlan::new();
    let mut chunk = u32::MAX;
    let mut bits = 0.0;
    let mut tables: Vec<f64> = vec![];
    for r in rows {
        if r.chunk != chunk {
            mixer.reset();
            chunk = r.chunk;
            if let Some(a) = apm {
                tables = (0..16 * a.points)
                    .map(|i| {
                        let j = i % a.points;
                        squash(a.lo + (a.hi - a.lo) * j as f64 / (a.points - 1) as f64)
                    })
                    .collect();
            }
        }
        mixer.plan(1.0 / r.p_top, &mut plan);
        let p_mix_y = plan.probability(r.p_y, r.token);
        let p_mix_top = plan.probability(r.p_top, r.top);
        let mut cost = -p_mix_y.log2();
        if let Some(a) = apm {
            let extra_top = plan.extra().iter().any(|e| e.0 == r.top);
            let n_extra = plan.extra().len();
            let ctx = match a.ctx {
                0 => 0,
                1 => extra_top as usize,
                2 => (extra_top as usize) * 2 + (n_extra > 0) as usize,
                3 => (extra_top as usize) * 4 + n_extra.min(3),
                _ => 0,
            };
            let p = p_mix_top.clamp(1e-6, 1.0 - 1e-6);
            let x = stretch(p).clamp(a.lo, a.hi - 1e-9);
            let pos = (x - a.lo) / (a.hi - a.lo) * (a.points - 1) as f64;
            let j = pos as usize;
            let frac = pos - j as f64;
            let t = &mut tables[ctx * a.points..(ctx + 1) * a.points];
            let s_apm = t[j] * (1.0 - frac) + t[j + 1] * frac;
            let mut s = a.mix_in * p + (1.0 - a.mix_in) * s_apm;
            if a.sharpen_only && s < p {
                s = p;
            }
            let s = s.clamp(1e-6, 1.0 - 1e-6);
            let y = (r.token == r.top) as u32 as f64;
            cost = if r.token == r.top { -s.log2() } else { -(p_mix_y * (1.0 - s) / (1.0 - p)).log2() };
            let err = y - s_apm;
            t[j] += a.rate * err * (1.0 - frac);
            t[j + 1] += a.rate * err * frac;
        }
        bits += cost;
        mixer.update(&plan, r.p_y, r.token);
    }
    bits
}

fn main() {
    for path in std::env::args().skip(1) {
        let rows = read(&path);
        let base = simulate(&rows, None);
        println!("{path}: {} tokens, mixer {:.0} bytes", rows.len(), base / 8.0);
        let d = Apm { points: 33, lo: -8.0, hi: 8.0, rate: 0.02, mix_in: 0.25, ctx: 0, sharpen_only: false };
        let mut vs = vec![("default", d)];
        for &r in &[0.005, 0.01, 0.04] {
            vs.push((Box::leak(format!("rate {r}").into_boxed_str()), Apm { rate: r, ..d }));
        }
        for &m in &[0.0, 0.5] {
            vs.push((Box::leak(format!("mix_in {m}").into_boxed_str()), Apm { mix_in: m, ..d }));
        }
        for &c in &[1u8, 2, 3] {
            vs.push((Box::leak(format!("ctx {c}").into_boxed_str()), Apm { ctx: c, ..d }));
        }
        for &p in &[17usize, 65] {
            vs.push((Box::leak(format!("points {p}").into_boxed_str()), Apm { points: p, ..d }));
        }
        vs.push(("sharpen only", Apm { sharpen_only: true, ..d }));
        vs.push(("ctx3 sharpen only", Apm { sharpen_only: true, ctx: 3, ..d }));
        for (name, a) in vs {
            let b = simulate(&rows, Some(a));
            println!("{name:<22} {:>10.0} bytes {:>7.3}%", b / 8.0, (base - b) / base * 100.0);
        }
    }
}
