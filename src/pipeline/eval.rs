//! `llmzip eval`: how many bits the model would need for a text, without writing an archive: the code
//! length `llmzip c` gets with the same settings, so a user can switch a part off and see what it buys.
//!
//! Two figures per text: the ideal code length under the model's float distribution (sum of -log2 p of
//! each actual token, p = e/s from the quantizer's own exponentials and f64 sum), and the code length
//! under the integer tables the coder really uses.
//! Their ratio is the quantizer's overhead; the archive adds only the range coder's flush and the container.
//! The ideal figure is [`FreqTable::model_bits`], the same statistic `llmzip c -v` reports, and the tables
//! are built in parallel as the compressor builds them, so `eval` runs at the compressor's speed.

use std::ops::ControlFlow;
use std::time::Instant;

use super::predict::Predictor;
use super::segment::ChunkReader;
use super::session::Session;
use super::{CodecOptions, PipelineError};

/// The model's cost for one text.
#[derive(Clone, Debug, Default)]
pub struct EvalReport {
    pub bytes: u64,
    pub tokens: u64,
    /// Sum of -log2 p(token) under the float softmax.
    pub ideal_bits: f64,
    /// Sum of -log2 (freq / total) under the integer tables.
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

/// Evaluates `text` as `llmzip c` with `opts` would code it: cut into the same chunks, each chunk's
/// tokens in the same schedule (windows or a sliding cache) with the same tables. The one difference
/// is that every chunk counts as model-coded, where `c` stores a chunk the model does not shrink.
pub fn eval(session: &Session, text: &[u8], opts: &CodecOptions) -> Result<EvalReport, PipelineError> {
    let started = Instant::now();
    let params = session.coding_params(opts)?;
    let mut report = EvalReport { bytes: text.len() as u64, ..Default::default() };
    let mut predictor = Predictor::new(session, &params);
    let mut chunks = ChunkReader::new(text, opts.chunk_bytes);
    while let Some(chunk) = chunks.next_chunk()? {
        let tokens = session.tokenizer.encode(&chunk)?;
        report.tokens += tokens.len() as u64;
        predictor.run(&tokens, |p| {
            report.ideal_bits += p.ideal_bits;
            let q = p.table.freq(p.token) as f64 / p.table.total() as f64;
            report.table_bits -= crate::arch::math::ln_f64(q) / std::f64::consts::LN_2;
            Ok(ControlFlow::Continue(()))
        })?;
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}
