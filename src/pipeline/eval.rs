//! `llmzip eval`: how many bits the model would need for a text, without writing an archive.
//!
//! Two figures per text: the ideal code length under the model's float distribution (sum of -log2 p of
//! each actual token, p = e/s from the quantizer's own exponentials and f64 sum), and the code length
//! under the integer tables the coder really uses.
//! Their ratio is the quantizer's overhead; the archive adds only the range coder's flush and the container.
//! The ideal figure is [`FreqTable::model_bits`], the same statistic `llmzip c -v` reports, and the tables
//! are built in parallel as the compressor builds them, so `eval` runs at the compressor's speed.

use std::ops::ControlFlow;
use std::time::Instant;

use super::PipelineError;
use super::predict::Predictor;
use super::session::Session;
use crate::quant::PRECISION_BITS;

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
pub fn eval(session: &Session, text: &[u8], context: u32, overlap: u32) -> Result<EvalReport, PipelineError> {
    let started = Instant::now();
    let tokens = session.tokenizer.encode(text)?;
    let mut report =
        EvalReport { bytes: text.len() as u64, tokens: tokens.len() as u64, ..Default::default() };
    let params = session.coding_params(context, overlap)?;
    Predictor::new(session, &params).run(&tokens, |p| {
        report.ideal_bits += p.table.model_bits(p.logits[p.token as usize]);
        let q = p.table.freq(p.token) as f64 / (1u64 << PRECISION_BITS) as f64;
        report.table_bits -= crate::arch::math::ln_f64(q) / std::f64::consts::LN_2;
        Ok(ControlFlow::Continue(()))
    })?;
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}
