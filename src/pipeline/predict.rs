//! The model's table for every position of a token sequence, window by window: what the compressor
//! codes with and what `llmzip eval` measures, so the two cannot drift apart. Also the one prefill loop
//! that every forward pass over known tokens goes through (the encoder's windows, the decoder's window
//! starts, the canary).

use std::ops::ControlFlow;

use super::PipelineError;
use super::params::CodingParams;
use super::session::Session;
use crate::engine::KvCache;
use crate::quant::FreqTable;

/// Positions per engine prefill call: bounds the logits buffer (rows x vocabulary x 4 bytes).
pub(super) const PREFILL_SLICE: usize = 128;

/// Feeds `tokens` to the engine after what `cache` already holds, [`PREFILL_SLICE`] positions per call,
/// and hands each slice's logits to `rows` with the index of the slice's first token. `logits` is the
/// scratch buffer, at least `min(tokens.len(), PREFILL_SLICE)` rows long. `rows` may stop the pass
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
    for (slice_no, slice) in tokens.chunks(PREFILL_SLICE).enumerate() {
        let logits = &mut logits[..slice.len() * vocab];
        session.engine.prefill(cache, slice, logits)?;
        if rows(slice_no * PREFILL_SLICE, logits)?.is_break() {
            return Ok(ControlFlow::Break(()));
        }
    }
    Ok(ControlFlow::Continue(()))
}

/// One coded position as [`Predictor::run`] hands it out.
pub(super) struct Prediction<'a> {
    /// The integer table the coder uses for this position.
    pub table: &'a FreqTable,
    /// The model's logits for this position.
    pub logits: &'a [f32],
    /// The actual token at this position.
    pub token: u32,
}

/// Scratch buffers of one prediction run (KV cache, logits of a prefill slice, one table per row),
/// reused across chunks and texts.
pub(super) struct Predictor<'s> {
    session: &'s Session,
    params: CodingParams,
    cache: KvCache,
    logits: Vec<f32>,
    /// One table per row of a prefill slice, built in parallel, then handed out in order.
    tables: Vec<FreqTable>,
    input: Vec<u32>,
}

impl<'s> Predictor<'s> {
    pub(super) fn new(session: &'s Session, params: &CodingParams) -> Self {
        let vocab = session.engine.vocab_size();
        let context = params.context as usize;
        Self {
            session,
            params: *params,
            cache: session.engine.new_cache(context),
            logits: vec![0.0; PREFILL_SLICE * vocab],
            tables: (0..PREFILL_SLICE).map(|_| FreqTable::new(vocab)).collect(),
            input: Vec::with_capacity(context),
        }
    }

    /// Runs the model over `tokens` in the windows of the parameters' schedule and calls `visit` for
    /// every token in order with its prediction; `visit` may stop the run early. Returns the number of
    /// windows started.
    pub(super) fn run(
        &mut self,
        tokens: &[u32],
        mut visit: impl FnMut(Prediction<'_>) -> Result<ControlFlow<()>, PipelineError>,
    ) -> Result<u64, PipelineError> {
        let Self { session, params, cache, logits, tables, input } = self;
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
                let rows = slice_logits.chunks_exact(vocab).skip(skip);
                let n = n_rows - skip;
                session.quantize_rows(rows.clone(), &mut tables[..n]);
                for (i, (table, row)) in tables[..n].iter().zip(rows).enumerate() {
                    let position = first + skip + i;
                    let token = tokens[window.coded.start + position - first_row];
                    if visit(Prediction { table, logits: row, token })?.is_break() {
                        return Ok(ControlFlow::Break(()));
                    }
                }
                Ok(ControlFlow::Continue(()))
            })?;
            if flow.is_break() {
                return Ok(windows);
            }
        }
        Ok(windows)
    }
}
