//! The mixer's ablation tool: runs the exact mixer code on dumped LLM probabilities, without the model.
//!
//! Input: one line per coded token, `chunk token p_y top_id p_top` (the chunk index, the token, the LLM's
//! probability of it, the LLM's top token and its probability `1 / llm_sum`), in coding order. For every line
//! the mixer plans with `llm_sum = 1 / p_top`, the mixed probability of the token is what it would cost, and
//! then the mixer learns the token; a new chunk index resets it, as the compressor does.
//!
//! ```text
//! cargo run --release --example mix_sim -- FILE.probs...           # ablation table
//! cargo run --release --example mix_sim -- --sweep FILE.probs...   # parameter sweep around recommended()
//! ```
//!
//! Costs are ideal code lengths (`-log2 p`), before the table's floor and rounding.

use std::time::Instant;

#[path = "shared/dump.rs"]
mod dump;

use dump::{CodedToken, VOCAB, read};
use llmzip::mix::config::{CTX_CONFIDENCE, CTX_COUNT, CTX_MATCH, CTX_ORDER};
use llmzip::mix::{MixConfig, MixPlan, Mixer, mixed_table};
use llmzip::quant::{FreqTable, Probabilities};

/// Total bits of `rows` under `config`, and the seconds plan + update took.
fn simulate(rows: &[CodedToken], config: MixConfig) -> (f64, f64) {
    let mut mixer = Mixer::new(config, VOCAB);
    let mut plan = MixPlan::new();
    let mut chunk = u32::MAX;
    let mut bits = 0.0;
    let start = Instant::now();
    for r in rows {
        if r.chunk != chunk {
            mixer.reset();
            chunk = r.chunk;
        }
        mixer.plan(1.0 / r.p_top, &mut plan);
        bits -= plan.probability(r.p_y, r.token).log2();
        mixer.update(&plan, r.p_y, r.token);
    }
    (bits, start.elapsed().as_secs_f64())
}

fn variants() -> Vec<(String, MixConfig)> {
    let rec = MixConfig::recommended();
    let mut v = vec![("LLM alone".to_string(), MixConfig::OFF), ("recommended".to_string(), rec)];
    v.push(("- match model".into(), MixConfig { match_min: 0, ..rec }));
    v.push(("- all n-grams".into(), MixConfig { orders: 0, ..rec }));
    v.push(("- escape (0)".into(), MixConfig { escape: 0, ..rec }));
    for k in 1..=6 {
        if rec.orders >> (k - 1) & 1 == 1 {
            v.push((format!("- order {k}"), MixConfig { orders: rec.orders & !(1 << (k - 1)), ..rec }));
        }
    }
    for (name, bit) in
        [("match", CTX_MATCH), ("confidence", CTX_CONFIDENCE), ("order", CTX_ORDER), ("count", CTX_COUNT)]
    {
        let sign = if rec.contexts & bit != 0 { "-" } else { "+" };
        v.push((format!("{sign} {name} selector"), MixConfig { contexts: rec.contexts ^ bit, ..rec }));
    }
    v
}

fn sweep() -> Vec<(String, MixConfig)> {
    let rec = MixConfig::recommended();
    let mut v = vec![("LLM alone".to_string(), MixConfig::OFF), ("recommended".to_string(), rec)];
    for m in [2, 3, 4, 5, 6, 8] {
        v.push((format!("match_min {m}"), MixConfig { match_min: m, ..rec }));
    }
    for b in [12, 13, 14, 15, 16, 17] {
        v.push((format!("table_bits {b}"), MixConfig { table_bits: b, ..rec }));
    }
    for r in 3..=9 {
        v.push((format!("rate_shift {r}"), MixConfig { rate_shift: r, ..rec }));
    }
    for i in [3, 4, 5, 6, 7, 8] {
        v.push((format!("init_shift {i}"), MixConfig { init_shift: i, ..rec }));
    }
    for e in [0, 1, 2, 4, 8, 16] {
        v.push((format!("escape {e}"), MixConfig { escape: e, ..rec }));
    }
    for c in 0..16 {
        v.push((format!("contexts {c:04b}"), MixConfig { contexts: c, ..rec }));
    }
    for o in [0b1, 0b11, 0b111, 0b1111, 0b1_1111, 0b11_1111, 0b11_1110, 0b11_1100, 0b10_1010, 0b1_0101] {
        v.push((format!("orders {o:06b}"), MixConfig { orders: o, ..rec }));
    }
    v
}

/// Microseconds per token of `mixed_table` against `table_from` on a 49,152-symbol distribution.
fn table_cost() {
    let mut logits: Vec<f32> = (0..VOCAB).map(|i| -((i * 7919 % VOCAB) as f32 + 1.0).ln()).collect();
    logits[17] = 5.0;
    let mut probs = Probabilities::new();
    llmzip::quant::softmax(llmzip::arch::VectorMath::best(), &logits, &mut probs);
    let sum = probs.sum();
    let mut mixer = Mixer::new(MixConfig::recommended(), VOCAB);
    for t in 0..2000u32 {
        let mut plan = MixPlan::new();
        mixer.plan(sum, &mut plan);
        mixer.update(&plan, 0.01, t % 97);
    }
    let mut plan = MixPlan::new();
    mixer.plan(sum, &mut plan);
    let mut table = FreqTable::new(VOCAB);
    let n = 2000;
    let t0 = Instant::now();
    for _ in 0..n {
        llmzip::quant::table_from(&probs, &mut table);
    }
    let plain = t0.elapsed().as_secs_f64() / n as f64 * 1e6;
    let t0 = Instant::now();
    for _ in 0..n {
        mixed_table(&plan, &probs, &mut table);
    }
    let mixed = t0.elapsed().as_secs_f64() / n as f64 * 1e6;
    eprintln!(
        "table per token: table_from {plain:.1} us, mixed_table {mixed:.1} us ({} additions)",
        plan.extra().len()
    );
}

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let do_sweep = args.iter().any(|a| a == "--sweep");
    args.retain(|a| a != "--sweep");
    assert!(!args.is_empty(), "usage: mix_sim [--sweep] FILE.probs...");
    let configs = if do_sweep { sweep() } else { variants() };
    println!(
        "mixer memory per lane (recommended): {} bytes",
        Mixer::new(MixConfig::recommended(), VOCAB).memory_bytes()
    );
    for path in &args {
        let rows = read(path);
        let base = simulate(&rows, MixConfig::OFF).0;
        println!("\n{path}: {} tokens, LLM alone {:.0} bits ({:.0} bytes)", rows.len(), base, base / 8.0);
        println!("{:<22} {:>12} {:>9} {:>12}", "config", "bits", "saved %", "us/token");
        for (name, config) in &configs {
            let (bits, secs) = simulate(&rows, *config);
            println!(
                "{name:<22} {bits:>12.0} {:>9.3} {:>12.2}",
                (base - bits) / base * 100.0,
                secs / rows.len() as f64 * 1e6
            );
        }
    }
    table_cost();
}
