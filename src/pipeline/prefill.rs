//! The one prefill loop that every forward pass over known tokens goes through (the encoder's windows
//! and slides, the decoder's window starts, the canary), and the size of its batches of rows.
//!
//! It needs the engine only, not a [`Session`](super::Session), so that the session (whose canary runs
//! through it) and the predictor (which runs through it and holds a session) both sit above it.

use std::ops::ControlFlow;

use super::PipelineError;
use crate::engine::{KvCache, Model};

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

/// Feeds `tokens` to `engine` after what `cache` already holds, [`slice_rows`] positions per call, and
/// hands each slice's logits to `rows` with the index of the slice's first token. `logits` is the
/// scratch buffer, at least `min(tokens.len(), slice_rows(vocab))` rows long. `rows` may stop the pass
/// early; the returned flow says whether it did.
///
/// The determinism contract makes the slicing invisible: the logits are the same for any cut of the
/// input into calls, so encoder, decoder and canary may each pass whatever they have.
pub(super) fn prefill(
    engine: &Model,
    cache: &mut KvCache,
    tokens: &[u32],
    logits: &mut [f32],
    mut rows: impl FnMut(usize, &[f32]) -> Result<ControlFlow<()>, PipelineError>,
) -> Result<ControlFlow<()>, PipelineError> {
    let vocab = engine.vocab_size();
    let per_call = slice_rows(vocab);
    for (slice_no, slice) in tokens.chunks(per_call).enumerate() {
        let logits = &mut logits[..slice.len() * vocab];
        engine.prefill(cache, slice, logits)?;
        if rows(slice_no * per_call, logits)?.is_break() {
            return Ok(ControlFlow::Break(()));
        }
    }
    Ok(ControlFlow::Continue(()))
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
