//! The model's table for every position of a token sequence, window by window: what the compressor
//! codes with and what `llmzip eval` measures, so the two cannot drift apart. Also the one prefill loop
//! that every forward pass over known tokens goes through (the encoder's windows, the decoder's window
//! starts, the canary).

use std::ops::ControlFlow;

use super::PipelineError;
use super::params::CodingParams;
use super::session::Session;
use super::window::Sliding;
use crate::arch::math;
use crate::engine::KvCache;
use crate::mix::{MixConfig, MixPlan, Mixer};
use crate::quant::{FreqTable, Probabilities};

/// The most positions per engine prefill call (and so per batch of rows turned into tables).
pub(super) const PREFILL_SLICE: usize = 128;

/// The byte budget of one batch of rows: its logits (f32), the mixer's probabilities (f32) and the
/// frequency tables (a u32 frequency and a u32 cumulative count per symbol), 16 bytes per symbol per
/// row. 96 MiB is exactly [`PREFILL_SLICE`] rows of SmolLM2's 49,152 symbols, so its batches stay as
/// they were; Gemma 3's 262,144 symbols get 24 rows (96 MiB) instead of 128 (512 MiB).
pub(super) const ROW_BATCH_BYTES: usize = 96 << 20;

/// Bytes a batch keeps per row and symbol (see [`ROW_BATCH_BYTES`]).
const BYTES_PER_ROW_SYMBOL: usize = 4 + 4 + 4 + 4;

/// Rows per batch for a `vocab`-symbol model: as many as [`ROW_BATCH_BYTES`] holds, at least 1 and at
/// most [`PREFILL_SLICE`]. Batching is not part of the format (the engine's logits are the same for any
/// cut of the input into calls, and each table is a pure function of its row), so this changes memory
/// and speed, never an archive.
pub(super) fn slice_rows(vocab: usize) -> usize {
    (ROW_BATCH_BYTES / (BYTES_PER_ROW_SYMBOL * vocab.max(1))).clamp(1, PREFILL_SLICE)
}

/// Feeds `tokens` to the engine after what `cache` already holds, [`slice_rows`] positions per call, and
/// hands each slice's logits to `rows` with the index of the slice's first token. `logits` is the
/// scratch buffer, at least `min(tokens.len(), slice_rows(vocab))` rows long. `rows` may stop the pass
/// early; the returned flow says whether it did.
///
/// The determinism contract makes the slicing invisible: the logits are the same for any cut of the
/// input into calls, so encoder, decoder and canary may each pass whatever they have.
pub(super) fn prefill(
    session: &Session,
    cache: &mut KvCache,
    tokens: &[u32],
    logits: &mut [f32],
    mut rows: impl FnMut(usize, &[f32]) -> Result<ControlFlow<()>, PipelineError>,
) -> Result<ControlFlow<()>, PipelineError> {
    let vocab = session.engine.vocab_size();
    let per_call = slice_rows(vocab);
    for (slice_no, slice) in tokens.chunks(per_call).enumerate() {
        let logits = &mut logits[..slice.len() * vocab];
        session.engine.prefill(cache, slice, logits)?;
        if rows(slice_no * per_call, logits)?.is_break() {
            return Ok(ControlFlow::Break(()));
        }
    }
    Ok(ControlFlow::Continue(()))
}

/// One coded position as [`Predictor::run`] hands it out.
pub(super) struct Prediction<'a> {
    /// The integer table the coder uses for this position.
    pub table: &'a FreqTable,
    /// The actual token at this position.
    pub token: u32,
    /// `-log2 p` of the token under the float distribution the table approximates (the model's, or the
    /// mixed one): a statistic, not used for coding.
    pub ideal_bits: f64,
}

/// Scratch buffers of one prediction run (KV cache, logits of a prefill slice, the row stage),
/// reused across chunks and texts.
pub(super) struct Predictor<'s> {
    session: &'s Session,
    params: CodingParams,
    cache: KvCache,
    logits: Vec<f32>,
    rows: RowStage,
    input: Vec<u32>,
}

/// Logits rows -> tables, for up to [`slice_rows`] consecutive positions of one chunk: one table per
/// row, built in parallel, then handed out in order; with a mixer, the chunk's mixer and its per-row
/// buffers. Its tables, probabilities and the predictor's logits are the batch [`ROW_BATCH_BYTES`]
/// bounds: the only tables the compressor keeps alive.
pub(super) struct RowStage {
    tables: Vec<FreqTable>,
    blend: Option<Blend>,
}

/// The mixer of one chunk and the buffers of its three passes over a slice of rows: softmax (parallel),
/// plan and learn (in token order, the only sequential part), tables (parallel).
struct Blend {
    mixer: Mixer,
    probs: Vec<Probabilities>,
    plans: Vec<MixPlan>,
}

impl RowStage {
    pub(super) fn new(vocab: usize, rows: usize, mix: MixConfig) -> Self {
        let blend = (!mix.is_off()).then(|| Blend {
            mixer: Mixer::new(mix, vocab),
            probs: (0..rows).map(|_| Probabilities::new()).collect(),
            plans: (0..rows).map(|_| MixPlan::new()).collect(),
        });
        Self { tables: (0..rows).map(|_| FreqTable::new(vocab)).collect(), blend }
    }

    /// Forgets the chunk so far (the mixer's history): chunks are coded independently.
    pub(super) fn start_chunk(&mut self) {
        if let Some(b) = &mut self.blend {
            b.mixer.reset();
        }
    }

    /// Builds the tables of consecutive logits rows and hands each to `visit` with the token it codes,
    /// `tokens[i]` for row `i`; stops when `visit` does. With a mixer, the tokens are learned in order as
    /// they are handed out, exactly as the decoder learns them once decoded.
    fn code(
        &mut self,
        session: &Session,
        rows: &[f32],
        tokens: &[u32],
        visit: &mut impl FnMut(Prediction<'_>) -> Result<ControlFlow<()>, PipelineError>,
    ) -> Result<ControlFlow<()>, PipelineError> {
        let vocab = session.engine.vocab_size();
        let n = rows.len() / vocab;
        let tables = &mut self.tables[..n];
        let Some(b) = &mut self.blend else {
            session.quantize_rows(rows.chunks_exact(vocab), tables);
            for ((table, row), &token) in tables.iter().zip(rows.chunks_exact(vocab)).zip(tokens) {
                let ideal_bits = table.model_bits(row[token as usize]);
                if visit(Prediction { table, token, ideal_bits })?.is_break() {
                    return Ok(ControlFlow::Break(()));
                }
            }
            return Ok(ControlFlow::Continue(()));
        };
        session.softmax_rows(rows.chunks_exact(vocab), &mut b.probs[..n]);
        let mut ideal = [0.0f64; PREFILL_SLICE];
        for i in 0..n {
            let (token, probs, plan) = (tokens[i], &b.probs[i], &mut b.plans[i]);
            b.mixer.plan(probs.sum(), plan);
            let p_llm = b.mixer.learn(plan, probs, token);
            ideal[i] = -math::ln_f64(plan.probability(p_llm, token)) / std::f64::consts::LN_2;
        }
        session.mixed_tables(&b.plans[..n], &b.probs[..n], tables);
        for ((table, &token), &ideal_bits) in tables.iter().zip(tokens).zip(&ideal) {
            if visit(Prediction { table, token, ideal_bits })?.is_break() {
                return Ok(ControlFlow::Break(()));
            }
        }
        Ok(ControlFlow::Continue(()))
    }
}

impl<'s> Predictor<'s> {
    pub(super) fn new(session: &'s Session, params: &CodingParams) -> Self {
        let vocab = session.engine.vocab_size();
        let context = params.context as usize;
        Self {
            session,
            params: *params,
            cache: session.engine.new_cache(context),
            logits: vec![0.0; slice_rows(vocab) * vocab],
            rows: RowStage::new(vocab, slice_rows(vocab), params.mix),
            input: Vec::with_capacity(context),
        }
    }

    /// Runs the model over `tokens` in the parameters' schedule (windows, or one sliding cache) and
    /// calls `visit` for every token in order with its prediction; `visit` may stop the run early.
    /// Returns the number of windows started (for the sliding schedule: 1 + the number of slides).
    pub(super) fn run(
        &mut self,
        tokens: &[u32],
        visit: impl FnMut(Prediction<'_>) -> Result<ControlFlow<()>, PipelineError>,
    ) -> Result<u64, PipelineError> {
        self.rows.start_chunk();
        match self.params.sliding() {
            Some(sliding) => self.run_sliding(sliding, tokens, visit),
            None => self.run_windows(tokens, visit),
        }
    }

    fn run_windows(
        &mut self,
        tokens: &[u32],
        mut visit: impl FnMut(Prediction<'_>) -> Result<ControlFlow<()>, PipelineError>,
    ) -> Result<u64, PipelineError> {
        let Self { session, params, cache, logits, rows, input } = self;
        let start = params.start();
        let vocab = session.engine.vocab_size();
        let mut windows = 0;
        for window in params.schedule(tokens.len())? {
            windows += 1;
            cache.clear();
            input.clear();
            input.extend_from_slice(window.context_tokens(tokens, &start));
            let first_row = input.len() - 1;
            input.extend_from_slice(&tokens[window.coded.start..window.coded.end - 1]);
            let flow = prefill(session, cache, input, logits, |first, slice_logits| {
                // Rows before `first_row` predict context tokens, which are not coded.
                let n_rows = slice_logits.len() / vocab;
                let skip = first_row.saturating_sub(first).min(n_rows);
                if skip == n_rows {
                    return Ok(ControlFlow::Continue(()));
                }
                let coded = window.coded.start + first + skip - first_row;
                rows.code(session, &slice_logits[skip * vocab..], &tokens[coded..], &mut visit)
            })?;
            if flow.is_break() {
                return Ok(windows);
            }
        }
        Ok(windows)
    }

    /// The sliding schedule: the start token and every token but the last go through one cache, fed in
    /// calls that end where the cache is full, where it slides.
    fn run_sliding(
        &mut self,
        sliding: Sliding,
        tokens: &[u32],
        mut visit: impl FnMut(Prediction<'_>) -> Result<ControlFlow<()>, PipelineError>,
    ) -> Result<u64, PipelineError> {
        let Self { session, params, cache, logits, rows, input } = self;
        let vocab = session.engine.vocab_size();
        cache.clear();
        input.clear();
        if tokens.is_empty() {
            return Ok(0);
        }
        input.push(params.start_token);
        input.extend_from_slice(&tokens[..tokens.len() - 1]);
        let (mut fed, mut slides) = (0, 0u64);
        while fed < input.len() {
            if sliding.room(cache.len()) == 0 {
                session.engine.slide(cache, sliding.sink, sliding.slide)?;
                slides += 1;
            }
            let n = sliding.room(cache.len()).min(slice_rows(vocab)).min(input.len() - fed);
            let slice = &mut logits[..n * vocab];
            session.engine.prefill(cache, &input[fed..fed + n], slice)?;
            // Row i predicts input position fed + i + 1, which is token fed + i.
            if rows.code(session, slice, &tokens[fed..fed + n], &mut visit)?.is_break() {
                break;
            }
            fed += n;
        }
        Ok(1 + slides)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Batches are sized in bytes: SmolLM2's 49,152 symbols keep the 128 rows they always had (so its
    /// prefill calls are unchanged), a 262,144-symbol vocabulary gets 24, and every batch stays within
    /// the budget whatever the vocabulary.
    #[test]
    fn batches_of_rows_are_sized_in_bytes() {
        assert_eq!(slice_rows(49_152), PREFILL_SLICE);
        assert_eq!(slice_rows(300), PREFILL_SLICE);
        assert_eq!(slice_rows(262_144), 24);
        assert_eq!(slice_rows(crate::quant::MAX_SYMBOLS), 6);
        for vocab in [1usize, 49_152, 65_537, 262_144, crate::quant::MAX_SYMBOLS] {
            let rows = slice_rows(vocab);
            assert!((1..=PREFILL_SLICE).contains(&rows));
            assert!(rows * vocab * BYTES_PER_ROW_SYMBOL <= ROW_BATCH_BYTES, "{vocab}");
        }
    }
}
