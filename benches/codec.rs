//! Range coder (symbols/s) and quantizer (tables/s) with SmolLM2's 49,152-token vocabulary.
//!
//! `cargo bench --bench codec`; under `cargo test` each body runs once as a smoke test.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use llmzip::arch::VectorMath;
use llmzip::coder::{Decoder, Encoder};
use llmzip::quant::{FreqTable, quantize};

const VOCAB: usize = 49_152;

/// Peaked, Zipf-like logits like a language model's, with the ranks scrambled.
fn logits(seed: u64) -> Vec<f32> {
    (0..VOCAB)
        .map(|i| {
            let rank = ((i as u64 * 2_654_435_761 + seed * 7919) % VOCAB as u64) as f32 + 1.0;
            -1.3 * rank.ln()
        })
        .collect()
}

fn tables(n: usize) -> Vec<FreqTable> {
    (0..n as u64)
        .map(|s| {
            let mut t = FreqTable::new(VOCAB);
            quantize(VectorMath::best(), &logits(s), &mut t);
            t
        })
        .collect()
}

fn bench_quantizer(c: &mut Criterion) {
    let l = logits(1);
    let mut table = FreqTable::new(VOCAB);
    let math = VectorMath::best();
    let mut g = c.benchmark_group("quantizer");
    g.throughput(Throughput::Elements(1));
    g.bench_function("table_49152", |b| b.iter(|| quantize(math, std::hint::black_box(&l), &mut table)));
    g.finish();
}

fn bench_coder(c: &mut Criterion) {
    let tabs = tables(64);
    // Mostly likely symbols, as a good model sees, drawn from the 64 most probable ranks.
    let symbols: Vec<u32> = (0..1024u32).map(|i| i.wrapping_mul(2_654_435_761) % 64).collect();
    let mut g = c.benchmark_group("range_coder");
    g.throughput(Throughput::Elements(symbols.len() as u64));
    g.bench_function("encode_49152", |b| {
        b.iter(|| {
            let mut e = Encoder::new();
            for (i, &s) in symbols.iter().enumerate() {
                e.encode(s, &tabs[i % tabs.len()]).unwrap();
            }
            e.finish()
        })
    });
    let mut e = Encoder::new();
    for (i, &s) in symbols.iter().enumerate() {
        e.encode(s, &tabs[i % tabs.len()]).unwrap();
    }
    let payload = e.finish();
    g.bench_function("decode_49152", |b| {
        b.iter(|| {
            let mut d = Decoder::new(&payload).unwrap();
            for (i, &s) in symbols.iter().enumerate() {
                assert_eq!(d.decode(&tabs[i % tabs.len()]).unwrap(), s);
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench_quantizer, bench_coder);
criterion_main!(benches);
