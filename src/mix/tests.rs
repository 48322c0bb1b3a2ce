use super::*;
use crate::arch::VectorMath;
use crate::testing::SplitMix64;

use crate::quant::PRECISION_BITS;

const TOTAL: u64 = 1 << PRECISION_BITS;

fn check_invariants(t: &FreqTable) {
    assert!(t.freqs().iter().all(|&f| f >= 1), "a frequency below 1");
    assert_eq!(t.freqs().iter().map(|&f| f as u64).sum::<u64>(), t.total() as u64);
    assert_eq!(t.cumulative(t.len() as u32 - 1) + t.freq(t.len() as u32 - 1), t.total());
}

fn probs_of(logits: &[f32]) -> (Probabilities, f64) {
    let mut probs = Probabilities::new();
    quant::softmax(VectorMath::SCALAR, logits, &mut probs);
    let mut sum = 0.0f64;
    for &w in probs.weights() {
        sum += w as f64;
    }
    assert_eq!(sum.to_bits(), probs.sum().to_bits(), "softmax forms the index-order sum");
    (probs, sum)
}

use crate::quant::tests::zipf;

/// The table arithmetic of FORMAT.md, *Mixer*, written the plain way (a second pass for the largest),
/// for 24-bit tables.
fn reference_table(plan: &MixPlan, probs: &Probabilities) -> Vec<u32> {
    reference_table_at(plan, probs, TOTAL)
}

/// [`reference_table`] for tables whose total is `total` (`2^P`).
fn reference_table_at(plan: &MixPlan, probs: &Probabilities, total_counts: u64) -> Vec<u32> {
    let w = probs.weights();
    let mut sum = 0.0f64;
    for &x in w {
        sum += x as f64;
    }
    let (llm, extra) = if plan.is_empty() {
        ((total_counts as u32) - w.len() as u32, &[][..])
    } else {
        (plan.llm_counts, plan.extra())
    };
    let scale = llm as f64 / sum;
    let mut f: Vec<u32> =
        w.iter().map(|&x| 1 + ((x as f64 * scale) as u32).min(total_counts as u32)).collect();
    for &(t, c) in extra {
        f[t as usize] += c;
    }
    let best = (0..f.len()).fold(0, |b, i| if f[i] > f[b] { i } else { b });
    let total: u64 = f.iter().map(|&x| x as u64).sum();
    f[best] = (f[best] as i64 + total_counts as i64 - total as i64) as u32;
    f
}

/// A token stream with repetitions (so every model predicts) and noise.
fn text_like(rng: &mut SplitMix64, len: usize, vocab: u32) -> Vec<u32> {
    let phrase: Vec<u32> = (0..40).map(|_| rng.below(vocab as u64) as u32).collect();
    (0..len)
        .map(
            |i| {
                if rng.below(4) == 0 { rng.below(vocab as u64) as u32 } else { phrase[(i * 7 + i / 40) % 40] }
            },
        )
        .collect()
}

#[test]
fn off_gives_exactly_the_table_of_table_from() {
    for (vocab, t, seed) in [(49_152, 1.0, 1), (49_152, 0.02, 2), (1001, 0.5, 3), (7, 1.0, 4), (1, 1.0, 5)] {
        let (probs, sum) = probs_of(&zipf(vocab, t, seed));
        let mut want = FreqTable::new(vocab);
        quant::table_from(&probs, &mut want);
        let mut mixer = Mixer::new(MixConfig::OFF, vocab);
        let mut plan = MixPlan::new();
        for token in 0..50u32 {
            mixer.plan(sum, &mut plan);
            assert!(plan.is_empty());
            let mut got = FreqTable::new(vocab);
            mixed_table(&plan, &probs, &mut got);
            assert_eq!(got, want, "vocabulary {vocab}, position {token}");
            assert_eq!(plan.probability(0.25, token % vocab as u32), 0.25);
            mixer.update(&plan, 0.25, token % vocab as u32);
        }
        // A mixer that is on but has nothing to say yet (the chunk's first token) is table_from too.
        let mixer = Mixer::new(MixConfig::recommended(), vocab);
        mixer.plan(sum, &mut plan);
        assert!(plan.is_empty());
        let mut got = FreqTable::new(vocab);
        mixed_table(&plan, &probs, &mut got);
        assert_eq!(got, want);
        assert_eq!(Mixer::new(MixConfig::OFF, vocab).memory_bytes(), 0, "off allocates nothing");
    }
}

#[test]
fn mixed_tables_are_valid_and_match_the_reference_arithmetic() {
    let mut rng = SplitMix64::new(0x5eed);
    let vocab = 49_152;
    let mut peaked = vec![-200.0f32; vocab];
    peaked[123] = 0.0;
    let mut flat = vec![0.0f32; vocab];
    flat[vocab - 1] = 1e-3;
    let mut odd = zipf(vocab, 0.3, 7);
    odd[10] = f32::NAN;
    odd[11] = f32::INFINITY;
    let cases = [zipf(vocab, 1.0, 1), zipf(vocab, 0.02, 2), peaked, flat, odd];
    // Extreme settings as well as the default: weights that learn fast, no escape, every selector.
    let configs = [
        MixConfig::recommended(),
        MixConfig { rate_shift: 1, init_shift: 3, escape: 0, contexts: 0b1111, ..MixConfig::recommended() },
        MixConfig {
            match_min: 1,
            orders: 1,
            table_bits: 10,
            rate_shift: 15,
            contexts: 0,
            init_shift: 15,
            escape: 64,
        },
    ];
    for config in configs {
        let mut mixer = Mixer::new(config, vocab);
        let mut plan = MixPlan::new();
        let mut non_empty = 0;
        for (i, &token) in text_like(&mut rng, 3000, vocab as u32).iter().enumerate() {
            if i % 25 == 0 {
                let (probs, sum) = probs_of(&cases[i / 25 % cases.len()]);
                mixer.plan(sum, &mut plan);
                let mut table = FreqTable::new(vocab);
                mixed_table(&plan, &probs, &mut table);
                check_invariants(&table);
                assert_eq!(table.freqs(), reference_table(&plan, &probs), "{config:?} position {i}");
                non_empty += !plan.is_empty() as usize;
                let p_llm = probs.weights()[token as usize] as f64 / sum;
                // The statistic agrees with the table up to the floor and the rounding.
                let p_table = table.freq(token) as f64 / TOTAL as f64;
                let p = plan.probability(p_llm, token);
                assert!((p - p_table).abs() <= 0.004 + p * 1e-3, "{p} vs table {p_table}");
                mixer.update(&plan, p_llm, token);
            } else {
                mixer.plan(1.5, &mut plan);
                mixer.update(&plan, 0.01, token);
            }
        }
        assert!(non_empty > 40, "{config:?}: {non_empty} of 120 plans had additions");
    }
}

#[test]
fn shares_with_the_largest_symbol_anywhere_match_the_reference() {
    // The additions land before, on and after the LLM's first largest, with ties.
    let vocab = 1000;
    let mut logits = vec![-3.0f32; vocab];
    logits[500] = 0.0;
    logits[700] = 0.0;
    let (probs, _) = probs_of(&logits);
    let avail = (TOTAL as u32) - vocab as u32;
    let mut table = FreqTable::new(vocab);
    for extra in [
        vec![(3u32, 1000u32)],
        vec![(500, 7)],
        vec![(700, 1)],
        vec![(2, 5_000_000), (999, 5_000_000)],
        vec![],
    ] {
        let used: u32 = extra.iter().map(|e| e.1).sum();
        let plan = MixPlan { avail, llm_counts: avail - used, extra, ..MixPlan::default() };
        mixed_table(&plan, &probs, &mut table);
        check_invariants(&table);
        assert_eq!(table.freqs(), reference_table(&plan, &probs), "{:?}", plan.extra());
    }
}

#[test]
fn encoder_order_and_decoder_order_give_the_same_plans_and_tables() {
    let mut rng = SplitMix64::new(42);
    let vocab = 5000;
    let tokens = text_like(&mut rng, 4000, vocab as u32);
    let rows: Vec<(Probabilities, f64)> =
        (0..8).map(|s| probs_of(&zipf(vocab, 0.5 + s as f32 * 0.2, s))).collect();
    let row = |i: usize| &rows[i * 31 % rows.len()];
    let p_llm = |i: usize, t: u32| row(i).0.weights()[t as usize] as f64 / row(i).1;
    // Encoder: all plans first (each followed by its update), then the tables.
    let mut enc = Mixer::new(MixConfig::recommended(), vocab);
    let mut plans = Vec::new();
    for (i, &t) in tokens.iter().enumerate() {
        let mut plan = MixPlan::new();
        enc.plan(row(i).1, &mut plan);
        enc.update(&plan, p_llm(i, t), t);
        plans.push(plan);
    }
    let enc_tables: Vec<Vec<u32>> = plans
        .iter()
        .enumerate()
        .rev() // any order: the tables are pure
        .map(|(i, plan)| {
            let mut table = FreqTable::new(vocab);
            mixed_table(plan, &row(i).0, &mut table);
            table.freqs().to_vec()
        })
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    // Decoder: plan, table, then the token, then the update; with a reset and a replay in the middle.
    let mut dec = Mixer::new(MixConfig::recommended(), vocab);
    for (i, &t) in tokens[..500].iter().enumerate() {
        let mut plan = MixPlan::new();
        dec.plan(row(i).1, &mut plan);
        dec.update(&plan, p_llm(i, t), t);
    }
    dec.reset();
    let mut plan = MixPlan::new();
    let mut table = FreqTable::new(vocab);
    for (i, &t) in tokens.iter().enumerate() {
        dec.plan(row(i).1, &mut plan);
        assert_eq!(plan, plans[i], "plan at position {i}");
        mixed_table(&plan, &row(i).0, &mut table);
        assert_eq!(table.freqs(), enc_tables[i], "table at position {i}");
        dec.update(&plan, p_llm(i, t), t);
    }
    assert!(plans.iter().filter(|p| !p.is_empty()).count() > 3000, "the models predicted");
}

#[test]
fn reset_forgets_the_chunk() {
    let mut rng = SplitMix64::new(7);
    let vocab = 300;
    let a = text_like(&mut rng, 2000, vocab as u32);
    let b = text_like(&mut rng, 500, vocab as u32);
    let run = |mixer: &mut Mixer, tokens: &[u32]| -> Vec<MixPlan> {
        tokens
            .iter()
            .map(|&t| {
                let mut plan = MixPlan::new();
                mixer.plan(2.0, &mut plan);
                mixer.update(&plan, 0.003, t);
                plan
            })
            .collect()
    };
    let mut fresh = Mixer::new(MixConfig::recommended(), vocab);
    let want = run(&mut fresh, &b);
    let mut used = Mixer::new(MixConfig::recommended(), vocab);
    let seen = run(&mut used, &a);
    used.reset();
    assert_eq!(run(&mut used, &b), want);
    // And the history mattered: without the reset the same tokens get other plans.
    let mut unreset = Mixer::new(MixConfig::recommended(), vocab);
    run(&mut unreset, &a);
    assert_ne!(run(&mut unreset, &b), want);
    assert!(seen.iter().any(|p| !p.is_empty()));
}

#[test]
fn the_match_model_follows_a_repeat() {
    let vocab = 1000;
    let config = MixConfig { orders: 0, ..MixConfig::recommended() };
    let mut mixer = Mixer::new(config, vocab);
    let text: Vec<u32> = (0..200).map(|i| (i * 37 % 991) as u32).collect();
    let mut plan = MixPlan::new();
    for round in 0..2 {
        for (i, &t) in text.iter().enumerate() {
            mixer.plan(10.0, &mut plan);
            if round == 1 && i >= 4 {
                // The second copy: once `match_min` = 4 of its tokens are in, the match model predicts every next one.
                assert_eq!(plan.extra().len(), 1, "position {i}");
                assert_eq!(plan.extra()[0].0, t);
            }
            if round == 0 {
                assert!(plan.is_empty(), "no repeat yet at {i}");
            }
            mixer.update(&plan, 0.001, t);
        }
    }
    // After a second repeat the match model has learned to be trusted more than its initial weight.
    let p = plan.probability(0.001, text[199]);
    assert!(p > 0.03, "{p}");
}

/// A token stream: position and randomness -> token.
type Stream = dyn Fn(usize, &mut SplitMix64) -> u32;

#[test]
fn memory_is_bounded_by_construction() {
    let vocab = 49_152;
    let config = MixConfig::recommended();
    let mut mixer = Mixer::new(config, vocab);
    let bytes = mixer.memory_bytes();
    // History ring + match table + six n-gram tables + weight sets, nothing else.
    let slots = 1usize << config.table_bits;
    let expected = models::HISTORY * 4
        + slots * 4
        + 6 * slots * std::mem::size_of::<models::Slot>()
        + MAX_SETS * MODELS * 8;
    assert_eq!(bytes, expected);
    assert!(bytes < 8 << 20, "{bytes} bytes per lane");
    let mut rng = SplitMix64::new(99);
    let mut plan = MixPlan::new();
    let mut longest = 0;
    // 100k random tokens, then 100k repeats of one token, then 100k of a short cycle: more than the ring holds.
    let streams: [Box<Stream>; 3] = [
        Box::new(move |_, r: &mut SplitMix64| r.below(vocab as u64) as u32),
        Box::new(|_, _: &mut SplitMix64| 17),
        Box::new(|i, _: &mut SplitMix64| (i % 5) as u32 * 1000),
    ];
    for stream in &streams {
        for i in 0..100_000 {
            let t = stream(i, &mut rng);
            mixer.plan(1.0 + (i % 7) as f64, &mut plan);
            longest = longest.max(plan.predictions.len());
            mixer.update(&plan, 1e-5, t);
        }
        assert_eq!(mixer.memory_bytes(), bytes);
    }
    assert!(longest <= 1 + 6 * models::FOLLOWERS, "{longest} predictions");
    assert!(plan.extra().len() <= 1 + 6 * models::FOLLOWERS);
}

/// Large vocabularies: the mixer shares out `2^28 - V` counts (the rule's precision for 262,144 symbols),
/// its tables are valid 28-bit tables that follow the reference arithmetic at that total, and with
/// nothing to blend in they are `table_from`'s bit for bit.
#[test]
fn mixed_tables_at_the_large_vocabulary_precision() {
    let vocab = 262_144;
    assert_eq!(quant::precision_for(vocab), 28);
    let mut rng = SplitMix64::new(0x28);
    let rows: Vec<(Probabilities, f64)> =
        (0..3).map(|s| probs_of(&zipf(vocab, 0.4 + s as f32 * 0.3, s))).collect();
    let mut mixer = Mixer::new(MixConfig::recommended(), vocab);
    let mut plan = MixPlan::new();
    let mut table = FreqTable::new(vocab);
    assert_eq!(table.total(), 1 << 28);
    let mut non_empty = 0;
    for (i, &token) in text_like(&mut rng, 600, 2000).iter().enumerate() {
        let (probs, sum) = &rows[i % rows.len()];
        mixer.plan(*sum, &mut plan);
        if i % 20 == 0 {
            mixed_table(&plan, probs, &mut table);
            check_invariants(&table);
            assert_eq!(table.freqs(), reference_table_at(&plan, probs, 1 << 28), "position {i}");
            if plan.is_empty() {
                let mut want = FreqTable::new(vocab);
                quant::table_from(probs, &mut want);
                assert_eq!(table, want, "position {i}");
            }
            non_empty += !plan.is_empty() as usize;
        }
        mixer.update(&plan, probs.weights()[token as usize] as f64 / sum, token);
    }
    assert!(non_empty > 10, "{non_empty} of 30 plans had additions");
}
