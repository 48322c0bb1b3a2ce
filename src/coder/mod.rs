//! Range coding over [`FreqTable`]s: symbols in, bytes out, and back.
//!
//! The coder is `constriction`'s queue range coder (first in, first out, as an autoregressive model
//! needs: the decoder must see symbols in the order the model predicted them) with 32-bit words, a 64-bit
//! state and 24-bit probabilities. Our table is its entropy model through a small adapter; this module
//! knows nothing of models or files. A payload is the coder's words, little-endian.

use std::borrow::Borrow;
use std::num::NonZeroU32;

use constriction::stream::model::{DecoderModel, EncoderModel, EntropyModel};
use constriction::stream::queue::{DefaultRangeDecoder, DefaultRangeEncoder};
use constriction::stream::{Decode, Encode};

use crate::quant::{FreqTable, PRECISION_BITS};

const PRECISION: usize = PRECISION_BITS as usize;

/// Why a payload could not be written or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CoderError {
    #[error("symbol {symbol} is outside the model's {vocab} symbols")]
    SymbolOutOfRange { symbol: u32, vocab: usize },
    #[error(
        "range coder payload of {0} bytes is not a whole number of 4-byte words; it is truncated or corrupt"
    )]
    Ragged(usize),
    #[error("range coder payload is invalid: {0}")]
    Invalid(String),
}

/// [`FreqTable`] seen as a constriction entropy model.
struct Model<'t>(&'t FreqTable);

impl EntropyModel<PRECISION> for Model<'_> {
    type Symbol = u32;
    type Probability = u32;
}

impl EncoderModel<PRECISION> for Model<'_> {
    fn left_cumulative_and_probability(&self, symbol: impl Borrow<u32>) -> Option<(u32, NonZeroU32)> {
        let s = *symbol.borrow();
        if (s as usize) >= self.0.len() {
            return None;
        }
        // Every frequency is at least 1 (FreqTable's invariant).
        Some((self.0.cumulative(s), NonZeroU32::new(self.0.freq(s))?))
    }
}

impl DecoderModel<PRECISION> for Model<'_> {
    fn quantile_function(&self, quantile: u32) -> (u32, u32, NonZeroU32) {
        let s = self.0.symbol_for(quantile);
        let f = NonZeroU32::new(self.0.freq(s)).unwrap_or(NonZeroU32::MIN);
        (s, self.0.cumulative(s), f)
    }
}

/// Writes symbols; [`Encoder::finish`] gives the payload.
#[derive(Default)]
pub struct Encoder {
    inner: DefaultRangeEncoder,
}

impl Encoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Codes `symbol` with `table`'s probabilities.
    pub fn encode(&mut self, symbol: u32, table: &FreqTable) -> Result<(), CoderError> {
        self.inner
            .encode_symbol(symbol, Model(table))
            .map_err(|_| CoderError::SymbolOutOfRange { symbol, vocab: table.len() })
    }

    /// The payload: the coder's 32-bit words, little-endian.
    pub fn finish(self) -> Vec<u8> {
        let words = self.inner.into_compressed().unwrap_or_else(|never| match never {});
        words.iter().flat_map(|w| w.to_le_bytes()).collect()
    }

    /// Bits written so far (including the pending state), for statistics.
    pub fn num_bits(&self) -> usize {
        self.inner.num_bits()
    }
}

/// Reads symbols back from a payload, given the same tables in the same order.
pub struct Decoder {
    inner: DefaultRangeDecoder,
}

impl Decoder {
    pub fn new(payload: &[u8]) -> Result<Self, CoderError> {
        if !payload.len().is_multiple_of(4) {
            return Err(CoderError::Ragged(payload.len()));
        }
        let words: Vec<u32> =
            payload.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        let inner =
            DefaultRangeDecoder::from_compressed(words).map_err(|e| CoderError::Invalid(format!("{e:?}")))?;
        Ok(Self { inner })
    }

    /// The next symbol under `table`. On a corrupt payload this returns some symbol or an error, never
    /// panics; the chunk checksum tells which.
    pub fn decode(&mut self, table: &FreqTable) -> Result<u32, CoderError> {
        self.inner.decode_symbol(Model(table)).map_err(|e| CoderError::Invalid(format!("{e:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::quantize;

    fn rng(seed: &mut u64) -> u64 {
        *seed = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = *seed;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn tables(n: usize, vocab: usize, seed: &mut u64) -> Vec<FreqTable> {
        (0..n)
            .map(|_| {
                let temperature = 0.05 + (rng(seed) % 100) as f32 / 50.0;
                let logits: Vec<f32> =
                    (0..vocab).map(|_| (rng(seed) % 1000) as f32 / 100.0 / temperature).collect();
                let mut t = FreqTable::new(vocab);
                quantize(crate::arch::VectorMath::SCALAR, &logits, &mut t);
                t
            })
            .collect()
    }

    #[test]
    fn round_trips_and_stays_within_a_few_bytes_of_the_ideal() {
        let mut seed = 11;
        let tabs = tables(200, 49_152, &mut seed);
        let mut symbols = Vec::new();
        let mut ideal_bits = 0.0f64;
        let mut enc = Encoder::new();
        for t in &tabs {
            // Draw from the table itself so the ideal length is what the table promises.
            let s = t.symbol_for((rng(&mut seed) % (1 << PRECISION_BITS)) as u32);
            ideal_bits -= (t.freq(s) as f64 / (1u64 << PRECISION_BITS) as f64).log2();
            enc.encode(s, t).unwrap();
            symbols.push(s);
        }
        let payload = enc.finish();
        assert!(
            (payload.len() * 8) as f64 <= ideal_bits * 1.001 + 64.0,
            "{} bytes for {ideal_bits} bits",
            payload.len()
        );
        let mut dec = Decoder::new(&payload).unwrap();
        for (t, &s) in tabs.iter().zip(&symbols) {
            assert_eq!(dec.decode(t).unwrap(), s);
        }
    }

    #[test]
    fn empty_message_and_bad_input() {
        assert!(Encoder::new().finish().len() <= 8);
        assert_eq!(Decoder::new(&[1, 2, 3]).err(), Some(CoderError::Ragged(3)));
        let t = FreqTable::new(10);
        assert!(matches!(Encoder::new().encode(10, &t), Err(CoderError::SymbolOutOfRange { .. })));
        // Garbage decodes to something or fails, but never panics.
        let mut seed = 5;
        let tabs = tables(50, 300, &mut seed);
        for len in [0usize, 4, 8, 64] {
            let garbage: Vec<u8> = (0..len).map(|_| rng(&mut seed) as u8).collect();
            if let Ok(mut d) = Decoder::new(&garbage) {
                for t in &tabs {
                    let _ = d.decode(t);
                }
            }
        }
    }
}
