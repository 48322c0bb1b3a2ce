//! The quantizer's invariants for any logits, NaN and infinities included: every frequency at least 1,
//! the sum exactly 2^24, cumulative frequencies consistent, `symbol_for` the inverse of the intervals,
//! and the same table twice from the same logits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use llmzip::quant::{FreqTable, PRECISION_BITS, quantize};

fuzz_target!(|data: &[u8]| {
    if data.len() < 6 {
        return;
    }
    let vocab = 1 + u16::from_le_bytes([data[0], data[1]]) as usize % 5000;
    let raw = &data[2..];
    let logits: Vec<f32> = (0..vocab)
        .map(|i| {
            let j = (i * 4) % (raw.len() - 3);
            f32::from_le_bytes([raw[j], raw[j + 1], raw[j + 2], raw[j + 3] ^ (i as u8)])
        })
        .collect();
    let mut table = FreqTable::new(vocab);
    quantize(llmzip::arch::VectorMath::best(), &logits, &mut table);
    let total = 1u64 << PRECISION_BITS;
    let mut sum = 0u64;
    for s in 0..vocab as u32 {
        let f = table.freq(s);
        assert!(f >= 1, "symbol {s} has frequency 0");
        assert_eq!(table.cumulative(s) as u64, sum);
        assert_eq!(table.symbol_for(table.cumulative(s)), s);
        assert_eq!(table.symbol_for(table.cumulative(s) + f - 1), s);
        sum += f as u64;
    }
    assert_eq!(sum, total);
    let mut again = FreqTable::new(vocab);
    quantize(llmzip::arch::VectorMath::best(), &logits, &mut again);
    assert!(again.freqs() == table.freqs(), "quantize is a function of its input");
});
