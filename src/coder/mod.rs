//! Range coding over [`FreqTable`]s: symbols in, bytes out, and back.
//!
//! The coder is `constriction`'s queue range coder (first in, first out, as an autoregressive model
//! needs: the decoder must see symbols in the order the model predicted them) with 32-bit words, a 64-bit
//! state and the table's precision (24 bits, or 28 for large vocabularies: [`crate::quant::precision_for`]).
//! Our table is its entropy model through a small adapter; this module knows nothing of models or files.
//! A payload is the coder's words, little-endian.
//!
//! constriction takes the precision as a const generic (`EntropyModel<PRECISION>`), so the adapter is
//! generic over it and each [`Encoder::encode`] / [`Decoder::decode`] picks the instance for its table's
//! precision with one `match`: a branch on a value that is the same for every symbol of a payload (every
//! table of a model has the same precision), perfectly predicted, against a table lookup over up to 2^20
//! symbols. The shift by the precision then stays a constant in the coder's arithmetic, as before.

use std::borrow::Borrow;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use constriction::Semantics;
use constriction::backends::ReadWords;
use constriction::stream::model::{DecoderModel, EncoderModel, EntropyModel};
use constriction::stream::queue::{DecoderFrontendError, DefaultRangeEncoder, RangeDecoder};
use constriction::stream::{Decode, Encode};

use crate::quant::{FreqTable, MAX_PRECISION_BITS, MIN_PRECISION_BITS};

/// Why a payload could not be written or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CoderError {
    #[error("symbol {symbol} is outside the model's {vocab} symbols")]
    SymbolOutOfRange { symbol: u32, vocab: usize },
    #[error(
        "range coder payload of {0} bytes is not a whole number of 4-byte words; it is truncated or corrupt"
    )]
    Ragged(usize),
    /// The range decoder refused the payload at the `index`-th symbol (0-based) read with a
    /// `precision_bits`-bit table, for the reason `fault` names.
    #[error(
        "range coder payload is invalid at symbol {index} (a {precision_bits}-bit table): {fault}; the payload \
         is corrupt"
    )]
    Invalid { index: u64, precision_bits: u32, fault: DecodeFault },
    #[error(
        "the range decoder ran past the end of its {0}-byte payload; the payload is truncated or its token \
         count is wrong"
    )]
    PastEnd(usize),
}

/// Why the range decoder refused a payload: constriction's decoder errors, as a type of ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeFault {
    /// The coder's point lies outside the range the table's precision covers. constriction's decoder
    /// reaches this only when the tables' precision changes within one payload (every table of a
    /// payload has its model's precision, so only a corrupt payload read with other tables gets here).
    #[error("the coder's point lies outside the range of the table's precision")]
    PointOutsideRange,
    /// A kind of error this llmzip does not know, from a newer constriction.
    #[error("the range decoder reported an error this llmzip does not know")]
    Unrecognised,
}

/// The most symbols a payload of `payload_len` bytes can hold when every table has `vocab` symbols and
/// a total of `2^precision_bits`.
///
/// Every frequency is at least 1, so the most probable symbol has at most `2^P - (vocab - 1)` and costs
/// at least `c = -log2(1 - (vocab - 1) / 2^P)` bits. The coder's range starts below 2^64, never ends below
/// 2^32, shrinks by at least `2^-c` per symbol (the new range is `(range >> P) * freq <= range * freq /
/// 2^P`, at any `P`) and grows by 2^32 per renormalisation; the encoder wrote a word per renormalisation
/// and at least one more when it finished, so a payload of `W` words saw at most `W - 1` of them and
/// `T * c <= 32 + 32 * (W - 1) = 8 * payload_len`. Since `c >= (vocab - 1) / 2^P * log2(e)` and
/// `log2(e) > 1.442`, `T <= 8 * payload_len * 2^P * 1000 / (1442 * (vocab - 1))`: about 1,894 symbols per
/// byte for a 49,152-token vocabulary at 24 bits, 5,681 for 262,144 tokens at 28 bits. A chunk claiming
/// more tokens than this cannot be valid (FORMAT.md).
pub fn max_symbols(payload_len: usize, vocab: usize, precision_bits: u32) -> u64 {
    if vocab < 2 {
        return u64::MAX;
    }
    let bound = 8 * payload_len as u128 * (1u128 << precision_bits) * 1000 / (1442 * (vocab as u128 - 1));
    u64::try_from(bound).unwrap_or(u64::MAX)
}

/// A payload's words, read front to back, counting reads past the end (which a valid payload needs at
/// most once: the decoder reads two words before the first symbol, the encoder's final flush writes one or
/// two).
struct Words {
    words: Vec<u32>,
    at: usize,
    /// Shared with the [`Decoder`], which cannot borrow its backend back from constriction's decoder.
    past_end: Arc<AtomicU32>,
}

impl<S: Semantics> ReadWords<u32, S> for Words {
    type ReadError = std::convert::Infallible;

    fn read(&mut self) -> Result<Option<u32>, Self::ReadError> {
        match self.words.get(self.at) {
            Some(&w) => {
                self.at += 1;
                Ok(Some(w))
            }
            None => {
                // Saturates far above MAX_PAST_END: the decoder stops at the first read beyond it.
                let n = self.past_end.load(Ordering::Relaxed);
                self.past_end.store(n.saturating_add(1), Ordering::Relaxed);
                Ok(None)
            }
        }
    }

    fn maybe_exhausted(&self) -> bool {
        self.at >= self.words.len()
    }
}

/// Reads past the end that a valid payload can need (see [`Words`]).
const MAX_PAST_END: u32 = 1;

/// [`FreqTable`] seen as a constriction entropy model of precision `P` (the table's: [`dispatch`] only
/// makes the instance whose `P` is the table's [`FreqTable::precision_bits`]).
struct Model<'t, const P: usize>(&'t FreqTable);

impl<const P: usize> EntropyModel<P> for Model<'_, P> {
    type Symbol = u32;
    type Probability = u32;
}

impl<const P: usize> EncoderModel<P> for Model<'_, P> {
    fn left_cumulative_and_probability(&self, symbol: impl Borrow<u32>) -> Option<(u32, NonZeroU32)> {
        let s = *symbol.borrow();
        if (s as usize) >= self.0.len() {
            return None;
        }
        // Every frequency is at least 1 (FreqTable's invariant).
        Some((self.0.cumulative(s), NonZeroU32::new(self.0.freq(s))?))
    }
}

impl<const P: usize> DecoderModel<P> for Model<'_, P> {
    fn quantile_function(&self, quantile: u32) -> (u32, u32, NonZeroU32) {
        let s = self.0.symbol_for(quantile);
        let f = NonZeroU32::new(self.0.freq(s)).unwrap_or(NonZeroU32::MIN);
        (s, self.0.cumulative(s), f)
    }
}

/// Runs `$body` with `$model` bound to `Model::<P>($table)` for the table's precision `P`: one arm per
/// supported precision, each its own monomorphic coder step (see the module's doc).
macro_rules! dispatch {
    ($table:expr, |$model:ident| $body:expr) => {{
        let table: &FreqTable = $table;
        const _: () = assert!(MIN_PRECISION_BITS == 24 && MAX_PRECISION_BITS == 30);
        match table.precision_bits() {
            24 => {
                let $model = Model::<24>(table);
                $body
            }
            25 => {
                let $model = Model::<25>(table);
                $body
            }
            26 => {
                let $model = Model::<26>(table);
                $body
            }
            27 => {
                let $model = Model::<27>(table);
                $body
            }
            28 => {
                let $model = Model::<28>(table);
                $body
            }
            29 => {
                let $model = Model::<29>(table);
                $body
            }
            30 => {
                let $model = Model::<30>(table);
                $body
            }
            bits => unreachable!("FreqTable admits no {bits}-bit precision"),
        }
    }};
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
        dispatch!(table, |model| self.inner.encode_symbol(symbol, model))
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

/// Reads symbols back from a payload, given the same tables in the same order. A decoder that needs more
/// words than the payload has fails with [`CoderError::PastEnd`] instead of decoding on zeros: a chunk
/// claiming millions of tokens for a few payload bytes stops after those bytes.
pub struct Decoder {
    inner: RangeDecoder<u32, u64, Words>,
    past_end: Arc<AtomicU32>,
    payload_len: usize,
    /// Symbols decoded so far, to say where a payload went wrong.
    decoded: u64,
}

impl Decoder {
    pub fn new(payload: &[u8]) -> Result<Self, CoderError> {
        if !payload.len().is_multiple_of(4) {
            return Err(CoderError::Ragged(payload.len()));
        }
        let words: Vec<u32> =
            payload.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        let past_end = Arc::new(AtomicU32::new(0));
        let backend = Words { words, at: 0, past_end: Arc::clone(&past_end) };
        // Reading the first words cannot fail: `Words` reads past its end as `None` and counts it.
        let inner = RangeDecoder::with_backend(backend).unwrap_or_else(|never| match never {});
        Ok(Self { inner, past_end, payload_len: payload.len(), decoded: 0 })
    }

    /// The next symbol under `table`. On a corrupt payload this returns some symbol or an error, never
    /// panics; the chunk checksum tells which.
    pub fn decode(&mut self, table: &FreqTable) -> Result<u32, CoderError> {
        let symbol = dispatch!(table, |model| self.inner.decode_symbol(model)).map_err(|e| {
            let fault = match e {
                constriction::CoderError::Frontend(DecoderFrontendError::InvalidData) => {
                    DecodeFault::PointOutsideRange
                }
                constriction::CoderError::Frontend(_) => DecodeFault::Unrecognised,
                constriction::CoderError::Backend(never) => match never {},
            };
            CoderError::Invalid { index: self.decoded, precision_bits: table.precision_bits(), fault }
        })?;
        self.decoded += 1;
        if self.past_end.load(Ordering::Relaxed) > MAX_PAST_END {
            return Err(CoderError::PastEnd(self.payload_len));
        }
        Ok(symbol)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::quantize;
    use crate::testing::SplitMix64;

    fn tables(n: usize, vocab: usize, rng: &mut SplitMix64) -> Vec<FreqTable> {
        tables_at(n, vocab, crate::quant::precision_for(vocab), rng)
    }

    fn tables_at(n: usize, vocab: usize, bits: u32, rng: &mut SplitMix64) -> Vec<FreqTable> {
        (0..n)
            .map(|_| {
                let temperature = 0.05 + rng.below(100) as f32 / 50.0;
                let logits: Vec<f32> =
                    (0..vocab).map(|_| rng.below(1000) as f32 / 100.0 / temperature).collect();
                let mut t = FreqTable::with_precision(vocab, bits);
                quantize(crate::arch::VectorMath::SCALAR, &logits, &mut t);
                t
            })
            .collect()
    }

    /// Codes `n` symbols, each drawn from its table (cycling through `tabs`) so that the ideal length is
    /// what the tables promise; checks the round trip and returns (payload bits, ideal bits).
    fn round_trip(tabs: &[FreqTable], n: usize, rng: &mut SplitMix64) -> (usize, f64) {
        let mut symbols = Vec::new();
        let mut ideal_bits = 0.0f64;
        let mut enc = Encoder::new();
        for i in 0..n {
            let t = &tabs[i % tabs.len()];
            let s = t.symbol_for(rng.below(t.total() as u64) as u32);
            ideal_bits -= (t.freq(s) as f64 / t.total() as f64).log2();
            enc.encode(s, t).unwrap();
            symbols.push(s);
        }
        let payload = enc.finish();
        let mut dec = Decoder::new(&payload).unwrap();
        for (i, &s) in symbols.iter().enumerate() {
            assert_eq!(dec.decode(&tabs[i % tabs.len()]), Ok(s), "symbol {i}");
        }
        (payload.len() * 8, ideal_bits)
    }

    #[test]
    fn round_trips_and_stays_within_a_few_bytes_of_the_ideal() {
        let mut rng = SplitMix64::new(11);
        let tabs = tables(200, 49_152, &mut rng);
        let (bits, ideal_bits) = round_trip(&tabs, 200, &mut rng);
        assert!(bits as f64 <= ideal_bits * 1.001 + 64.0, "{bits} bits for {ideal_bits} ideal bits");
    }

    /// Large vocabularies: 262,144-symbol tables round-trip at the rule's precision (28 bits) and at every
    /// other supported one, within a few bytes of the ideal (the truncation of `range >> P` grows with `P`
    /// but stays far below a thousandth of a bit per symbol on average at 28 bits).
    #[test]
    fn large_vocabulary_tables_round_trip_at_every_precision() {
        let vocab = 262_144;
        assert_eq!(crate::quant::precision_for(vocab), 28);
        for bits in MIN_PRECISION_BITS..=MAX_PRECISION_BITS {
            let mut rng = SplitMix64::new(17 + bits as u64);
            let tabs = tables_at(4, vocab, bits, &mut rng);
            assert!(tabs.iter().all(|t| t.total() == 1 << bits && t.freqs().iter().all(|&f| f >= 1)));
            let (coded, ideal_bits) = round_trip(&tabs, 3000, &mut rng);
            assert!(coded as f64 <= ideal_bits * 1.002 + 64.0, "{bits} bits: {coded} bits for {ideal_bits}");
        }
    }

    #[test]
    fn empty_message_and_bad_input() {
        assert!(Encoder::new().finish().len() <= 8);
        assert_eq!(Decoder::new(&[1, 2, 3]).err(), Some(CoderError::Ragged(3)));
        let t = FreqTable::new(10);
        assert!(matches!(Encoder::new().encode(10, &t), Err(CoderError::SymbolOutOfRange { .. })));
        // Garbage decodes to something or fails, but never panics.
        let mut rng = SplitMix64::new(5);
        let tabs = tables(50, 300, &mut rng);
        for len in [0usize, 4, 8, 64] {
            let garbage: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
            if let Ok(mut d) = Decoder::new(&garbage) {
                for t in &tabs {
                    let _ = d.decode(t);
                }
            }
        }
    }

    /// A table whose symbol 0 has the largest frequency any table can give: `2^P - (vocab - 1)`.
    fn peaked(vocab: usize) -> FreqTable {
        peaked_at(vocab, crate::quant::precision_for(vocab))
    }

    fn peaked_at(vocab: usize, bits: u32) -> FreqTable {
        let mut logits = vec![-1000.0f32; vocab];
        logits[0] = 1000.0;
        let mut t = FreqTable::with_precision(vocab, bits);
        quantize(crate::arch::VectorMath::SCALAR, &logits, &mut t);
        assert_eq!(t.freq(0), (1 << bits) - (vocab as u32 - 1));
        t
    }

    /// Regression (time bomb): a valid payload never needs more than one read past its end, so the
    /// decoder's refusal of a second one never rejects a real archive, at any length.
    #[test]
    fn valid_payloads_never_read_past_their_end() {
        let mut rng = SplitMix64::new(21);
        let mixed = tables(64, 500, &mut rng);
        for n in 0..600usize {
            let skewed = n % 3 == 0;
            let peak = peaked(300);
            let mut enc = Encoder::new();
            let mut symbols = Vec::new();
            for i in 0..n {
                let t = if skewed { &peak } else { &mixed[i % mixed.len()] };
                let s =
                    if skewed && i % 7 != 0 { 0 } else { t.symbol_for(rng.below(t.total() as u64) as u32) };
                enc.encode(s, t).unwrap();
                symbols.push(s);
            }
            let payload = enc.finish();
            let mut dec = Decoder::new(&payload).unwrap();
            for (i, &s) in symbols.iter().enumerate() {
                let t = if skewed { &peak } else { &mixed[i % mixed.len()] };
                assert_eq!(dec.decode(t), Ok(s), "{n} symbols, at {i}");
            }
        }
    }

    /// Regression (time bomb): decoding past a short payload stops with an error instead of running on
    /// zeros for as many tokens as a chunk header claims.
    #[test]
    fn decoding_past_the_payload_stops() {
        let mut rng = SplitMix64::new(3);
        let tabs = tables(8, 1000, &mut rng);
        let payload: Vec<u8> = (0..16).map(|_| rng.next_u64() as u8).collect();
        let mut dec = Decoder::new(&payload).unwrap();
        let stopped = (0..100_000).position(|i| dec.decode(&tabs[i % 8]).is_err());
        assert!(stopped.is_some_and(|n| n < 100), "decoded {stopped:?} symbols from 16 bytes");
        assert_eq!(dec.decode(&tabs[0]), Err(CoderError::PastEnd(16)));
    }

    /// constriction's one decoder error, a point outside the range of the table's precision (reachable
    /// only when the precision changes within a payload), comes back typed, with the symbol it
    /// happened at and the precision of that symbol's table.
    #[test]
    fn a_point_outside_the_range_is_a_typed_error() {
        let mut rng = SplitMix64::new(5);
        let (narrow, wide) = (FreqTable::with_precision(1000, 24), FreqTable::with_precision(1000, 30));
        let payload: Vec<u8> = (0..4096).map(|_| rng.next_u64() as u8).collect();
        let mut dec = Decoder::new(&payload).unwrap();
        let mut got = None;
        for i in 0..10_000u64 {
            let table = if i % 2 == 0 { &narrow } else { &wide };
            if let Err(e) = dec.decode(table) {
                got = Some((i, table.precision_bits(), e));
                break;
            }
        }
        let (i, bits, err) = got.expect("alternating precisions end a random payload in an error");
        let want =
            CoderError::Invalid { index: i, precision_bits: bits, fault: DecodeFault::PointOutsideRange };
        assert_eq!(err, want);
        assert!(err.to_string().contains("outside the range"), "{err}");
    }

    /// Regression (time bomb): the token bound holds for the cheapest possible symbols, and is tight
    /// enough to matter (about 1,900 tokens per byte for SmolLM2's vocabulary), at every precision.
    #[test]
    fn max_symbols_bounds_the_cheapest_sequences() {
        let cases =
            [(2usize, 24u32), (3, 24), (300, 24), (49_152, 24), (300, 28), (262_144, 28), (262_144, 30)];
        for (vocab, bits) in cases {
            let t = peaked_at(vocab, bits);
            for n in [1usize, 10, 1000, 100_000] {
                let mut enc = Encoder::new();
                for _ in 0..n {
                    enc.encode(0, &t).unwrap();
                }
                let payload = enc.finish();
                let most = max_symbols(payload.len(), vocab, bits);
                assert!(
                    n as u64 <= most,
                    "{n} symbols in {} bytes exceed the bound {most} (vocab {vocab}, {bits} bits)",
                    payload.len()
                );
            }
        }
        assert_eq!(max_symbols(1, 49_152, 24), 1893);
        assert_eq!(max_symbols(0, 49_152, 24), 0);
        assert_eq!(max_symbols(1, 262_144, 28), 5681);
    }
}

#[cfg(test)]
mod measure {
    //! The figures behind [`crate::quant::LARGE_PRECISION_BITS`]: for a 262,144-symbol vocabulary at each
    //! supported precision, what the floor and the rounding cost (against the float distribution) and what
    //! the range coder adds (against the tables' own ideal length). A measurement, not a check, so it only
    //! runs when asked: `cargo test --release --lib coder::measure -- --ignored --nocapture`.

    use super::*;
    use crate::arch::VectorMath;
    use crate::quant::{quantize, tests::zipf};
    use crate::testing::SplitMix64;

    #[test]
    #[ignore = "a measurement, not a check: prints the precision trade-off for a 262,144-symbol vocabulary"]
    fn precision_trade_off_for_a_large_vocabulary() {
        let vocab = 262_144;
        let temperatures = [1.0f32, 0.5, 0.25, 0.1];
        let logits: Vec<Vec<f32>> =
            temperatures.iter().enumerate().map(|(i, &t)| zipf(vocab, t, i as u64 + 1)).collect();
        let math = VectorMath::best();
        for bits in [24u32, 25, 26, 27, 28, 29, 30] {
            let mut tables = Vec::new();
            let started = std::time::Instant::now();
            let mut built = 0;
            for l in &logits {
                let mut t = FreqTable::with_precision(vocab, bits);
                for _ in 0..8 {
                    quantize(math, l, &mut t);
                    built += 1;
                }
                tables.push(t);
            }
            let per_row_ms = started.elapsed().as_secs_f64() * 1e3 / built as f64;
            // Quantization loss: expected code length under the float distribution, table vs ideal.
            let mut loss = Vec::new();
            for (l, t) in logits.iter().zip(&tables) {
                let m = l.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
                let s: f64 = l.iter().map(|&x| (x as f64 - m).exp()).sum();
                let (mut ideal, mut coded) = (0.0, 0.0);
                for (i, &x) in l.iter().enumerate() {
                    let p = (x as f64 - m).exp() / s;
                    ideal -= p * p.log2();
                    coded -= p * (t.freq(i as u32) as f64 / t.total() as f64).log2();
                }
                loss.push((ideal, coded - ideal));
            }
            // Coder overhead: symbols drawn from the tables themselves, payload vs their ideal length.
            let mut rng = SplitMix64::new(7);
            let n = 400_000;
            let mut enc = Encoder::new();
            let mut ideal_bits = 0.0;
            for i in 0..n {
                let t = &tables[i % tables.len()];
                let s = t.symbol_for(rng.below(t.total() as u64) as u32);
                ideal_bits -= (t.freq(s) as f64 / t.total() as f64).log2();
                enc.encode(s, t).unwrap();
            }
            let payload_bits = (enc.finish().len() * 8) as f64;
            println!(
                "{bits} bits: floor {:.3}% of the mass; quantization loss {} bits/token; coder overhead \
                 {:.5} bits/token ({:.4}% of {:.3} bits/token); table {per_row_ms:.2} ms/row",
                100.0 * vocab as f64 / (1u64 << bits) as f64,
                loss.iter()
                    .zip(&temperatures)
                    .map(|((h, d), t)| format!("T={t}: {d:.5} (H {h:.2})"))
                    .collect::<Vec<_>>()
                    .join(", "),
                (payload_bits - ideal_bits) / n as f64,
                100.0 * (payload_bits - ideal_bits) / ideal_bits,
                ideal_bits / n as f64,
            );
        }
    }
}
