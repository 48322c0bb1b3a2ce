//! `llmzip eval`: how many bits the model would need for a text, without writing an archive.
//!
//! Two figures per text: the ideal code length under the model's float distribution (sum of -log2 p of
//! each actual token, softmax in f64), and the code length under the integer tables the coder really uses.
//! Their ratio is the quantizer's overhead; the archive adds only the range coder's flush and the container.
//! These are measurements, not part of the format, so they may use the platform's `ln`.

use std::time::Instant;

use super::PipelineError;
use super::compress::PREFILL_SLICE;
use super::session::Session;
use super::window::Schedule;
use crate::quant::{FreqTable, PRECISION_BITS};

/// The model's cost for one text.
#[derive(Clone, Debug, Default)]
pub struct EvalReport {
    pub bytes: u64,
    pub tokens: u64,
    /// Sum of -log2 p(token) under the float softmax.
    pub ideal_bits: f64,
    /// Sum of -log2 (freq / 2^PRECISION_BITS) under the integer tables.
    pub table_bits: f64,
    pub seconds: f64,
}

impl EvalReport {
    pub fn bits_per_byte(&self) -> f64 {
        if self.bytes == 0 { 0.0 } else { self.ideal_bits / self.bytes as f64 }
    }

    pub fn bits_per_token(&self) -> f64 {
        if self.tokens == 0 { 0.0 } else { self.ideal_bits / self.tokens as f64 }
    }

    pub fn tokens_per_second(&self) -> f64 {
        if self.seconds > 0.0 { self.tokens as f64 / self.seconds } else { 0.0 }
    }

    /// Adds another report (for a total row).
    pub fn add(&mut self, other: &EvalReport) {
        self.bytes += other.bytes;
        self.tokens += other.tokens;
        self.ideal_bits += other.ideal_bits;
        self.table_bits += other.table_bits;
        self.seconds += other.seconds;
    }
}

/// Evaluates `text` in windows of `context` positions with `overlap` carried-over tokens (0: every window
/// starts fresh from the start token, as the engine issue's figures are defined).
pub fn eval(
    session: &Session,
    text: &[u8],
    context: usize,
    overlap: usize,
) -> Result<EvalReport, PipelineError> {
    let started = Instant::now();
    let tokens = session.tokenizer.encode(text)?;
    let vocab = session.engine.vocab_size();
    let start = [session.tokenizer.start_token()];
    let mut cache = session.engine.new_cache(context);
    let mut logits = vec![0.0f32; PREFILL_SLICE * vocab];
    let mut table = FreqTable::new(vocab);
    let mut report =
        EvalReport { bytes: text.len() as u64, tokens: tokens.len() as u64, ..Default::default() };
    let mut input = Vec::with_capacity(context);
    for window in Schedule::new(tokens.len(), context, overlap)? {
        cache.clear();
        input.clear();
        input.extend_from_slice(window.context_tokens(&tokens, &start));
        let first_row = input.len() - 1;
        input.extend_from_slice(&tokens[window.coded.start..window.coded.end - 1]);
        for (slice_no, slice) in input.chunks(PREFILL_SLICE).enumerate() {
            let rows = &mut logits[..slice.len() * vocab];
            session.engine.prefill(&mut cache, slice, rows)?;
            for (i, row) in rows.chunks_exact(vocab).enumerate() {
                let position = slice_no * PREFILL_SLICE + i;
                if position < first_row {
                    continue;
                }
                let token = tokens[window.coded.start + position - first_row] as usize;
                report.ideal_bits += softmax_cost_bits(row, token);
                crate::quant::quantize(row, &mut table);
                let p = table.freq(token as u32) as f64 / (1u64 << PRECISION_BITS) as f64;
                report.table_bits -= p.log2();
            }
        }
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// -log2 softmax(row)[token], in f64.
fn softmax_cost_bits(row: &[f32], token: usize) -> f64 {
    let max = row.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x)) as f64;
    let sum: f64 = row.iter().map(|&x| (x as f64 - max).exp()).sum();
    (sum.ln() - (row[token] as f64 - max)) / std::f64::consts::LN_2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_cost_of_a_uniform_row_is_log2_of_its_size() {
        let row = vec![0.5f32; 1024];
        assert!((softmax_cost_bits(&row, 7) - 10.0).abs() < 1e-9);
    }
}
