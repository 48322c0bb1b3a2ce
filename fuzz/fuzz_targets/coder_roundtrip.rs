//! Random tables and symbols must round-trip through the range coder, and decoding arbitrary bytes must
//! not panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use llmzip::coder::{Decoder, Encoder};
use llmzip::quant::{FreqTable, quantize};

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let vocab = 2 + (data[0] as usize * 7 + data[1] as usize) % 3000;
    let logits: Vec<f32> =
        (0..vocab).map(|i| data[i % data.len()] as f32 / (1.0 + data[2] as f32 / 16.0)).collect();
    let mut table = FreqTable::new(vocab);
    quantize(llmzip::arch::VectorMath::best(), &logits, &mut table);
    let symbols: Vec<u32> = data[3..].iter().map(|&b| b as u32 * 13 % vocab as u32).collect();
    let mut enc = Encoder::new();
    for &s in &symbols {
        enc.encode(s, &table).unwrap();
    }
    let payload = enc.finish();
    let mut dec = Decoder::new(&payload).unwrap();
    for &s in &symbols {
        assert_eq!(dec.decode(&table).unwrap(), s);
    }
    if let Ok(mut garbage) = Decoder::new(&data[..data.len() / 4 * 4]) {
        for _ in 0..16 {
            let _ = garbage.decode(&table);
        }
    }
});
