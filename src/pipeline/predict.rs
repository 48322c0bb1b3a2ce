//! The model's table for every position of a token sequence, window by window: what the compressor
//! codes with and what `llmzip eval` measures, so the two cannot drift apart.

use std::ops::ControlFlow;

use super::PipelineError;
use super::session::Session;
use super::window::Schedule;
use crate::engine::KvCache;
use crate::quant::FreqTable;

/// Positions per engine prefill call: bounds the logits buffer (rows x vocabulary x 4 bytes).
pub(super) const PREFILL_SLICE: usize = 128;

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
    context: usize,
    overlap: usize,
    cache: KvCache,
    logits: Vec<f32>,
    /// One table per row of a prefill slice, built in parallel, then handed out in order.
    tables: Vec<FreqTable>,
    input: Vec<u32>,
}

impl<'s> Predictor<'s> {
    pub(super) fn new(session: &'s Session, context: usize, overlap: usize) -> Self {
        let vocab = session.engine.vocab_size();
        Self {
            session,
            context,
            overlap,
            cache: session.engine.new_cache(context),
            logits: vec![0.0; PREFILL_SLICE * vocab],
            tables: (0..PREFILL_SLICE).map(|_| FreqTable::new(vocab)).collect(),
            input: Vec::with_capacity(context),
        }
    }

    /// Runs the model over `tokens` in the windows of [`Schedule`] and calls `visit` for every token in
    /// order with its prediction; `visit` may stop the run early. Returns the number of windows
    /// started.
    pub(super) fn run(
        &mut self,
        tokens: &[u32],
        mut visit: impl FnMut(Prediction<'_>) -> Result<ControlFlow<()>, PipelineError>,
    ) -> Result<u64, PipelineError> {
        let start = [self.session.tokenizer.start_token()];
        let vocab = self.session.engine.vocab_size();
        let mut windows = 0;
        for window in Schedule::new(tokens.len(), self.context, self.overlap)? {
            windows += 1;
            self.cache.clear();
            self.input.clear();
            self.input.extend_from_slice(window.context_tokens(tokens, &start));
            let first_row = self.input.len() - 1;
            self.input.extend_from_slice(&tokens[window.coded.start..window.coded.end - 1]);
            for (slice_no, slice) in self.input.chunks(PREFILL_SLICE).enumerate() {
                let logits = &mut self.logits[..slice.len() * vocab];
                self.session.engine.prefill(&mut self.cache, slice, logits)?;
                // Rows before `first_row` predict context tokens, which are not coded.
                let skip = first_row.saturating_sub(slice_no * PREFILL_SLICE).min(slice.len());
                let rows = logits.chunks_exact(vocab).skip(skip);
                let n = slice.len() - skip;
                self.session.quantize_rows(rows.clone(), &mut self.tables[..n]);
                for (i, (table, row)) in self.tables[..n].iter().zip(rows).enumerate() {
                    let position = slice_no * PREFILL_SLICE + skip + i;
                    let token = tokens[window.coded.start + position - first_row];
                    if visit(Prediction { table, logits: row, token })?.is_break() {
                        return Ok(windows);
                    }
                }
            }
        }
        Ok(windows)
    }
}
