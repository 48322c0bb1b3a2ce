//! The model's table for every position of a token sequence, window by window: what the compressor
//! codes with and what `llmzip eval` measures, so the two cannot drift apart. Its forward passes go
//! through the one prefill loop (`prefill.rs`).

use std::ops::ControlFlow;

use super::PipelineError;
use super::params::CodingParams;
use super::prefill::{PREFILL_SLICE, prefill, slice_rows};
use super::session::Session;
use super::window::Sliding;
use crate::arch::math;
use crate::engine::KvCache;
use crate::mix::{MixConfig, MixPlan, Mixer};
use crate::quant::{FreqTable, Probabilities};

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
/// buffers. Its tables, probabilities and the predictor's logits are the batch that
/// [`ROW_BATCH_BYTES`](super::prefill::ROW_BATCH_BYTES) bounds: the only tables the compressor keeps
/// alive.
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
            cache: session.engine.new_cache(context, params.engine),
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
            let flow = prefill(&session.engine, cache, input, logits, |first, slice_logits| {
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
            // The run up to where the cache is full (so the slides fall where they always did), fed
            // by the one prefill loop in calls of at most `slice_rows` positions.
            let run = &input[fed..fed + sliding.room(cache.len()).min(input.len() - fed)];
            let flow = prefill(&session.engine, cache, run, logits, |first, slice_logits| {
                // Row i of the run predicts input position fed + i + 1, which is token fed + i.
                rows.code(session, slice_logits, &tokens[fed + first..], &mut visit)
            })?;
            if flow.is_break() {
                break;
            }
            fed += run.len();
        }
        Ok(1 + slides)
    }
}
