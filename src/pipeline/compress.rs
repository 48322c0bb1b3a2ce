//! Compression: chunks of the input -> tokens -> windows -> engine -> tables -> range coder -> container.
//! The mirror image of `decompress.rs`.

use std::io::{Read, Write};
use std::ops::ControlFlow;
use std::time::Instant;

use super::params::CodingParams;
use super::predict::Predictor;
use super::segment::ChunkReader;
use super::session::Session;
use super::{CodecOptions, PipelineError, Stats};
use crate::coder::Encoder;
use crate::container::{ArchiveWriter, ChunkKind};
use crate::io::Progress;
use crate::quant::PRECISION_BITS;

/// Tokens coded before deciding whether a chunk is worth model-coding at all (binary data is stored).
const PROBE_TOKENS: usize = 512;

/// Compresses `input` into an archive on `output`, opening the model `opts` names for this one stream.
/// To compress several streams, open a [`Session`] once and call [`compress_with`] for each.
pub fn compress(
    input: &mut dyn Read,
    output: &mut dyn Write,
    opts: &CodecOptions,
    progress: &dyn Progress,
) -> Result<Stats, PipelineError> {
    let session = Session::open(opts, &indicatif::ProgressBar::hidden())?;
    compress_with(&session, input, output, opts, progress)
}

/// Compresses `input` into an archive on `output` with an open session; `opts` gives the window and
/// chunk settings (its model, threads and kernel were the session's to use).
pub fn compress_with(
    session: &Session,
    input: &mut dyn Read,
    output: &mut dyn Write,
    opts: &CodecOptions,
    progress: &dyn Progress,
) -> Result<Stats, PipelineError> {
    let started = Instant::now();
    let params = session.coding_params(opts.context, opts.overlap)?;
    let header = session.header(&params);
    let mut stats = Stats::default();
    let mut writer = ArchiveWriter::new(CountingWriter::new(output), &header)?;
    let mut chunks = ChunkReader::new(input, opts.chunk_bytes);
    let mut coder = ChunkCoder::new(session, &params, opts.force_model);
    let range = opts.chunk_range.clone().unwrap_or(0..u64::MAX);
    let mut index = 0u64;
    while index < range.end
        && let Some(bytes) = chunks.next_chunk()?
    {
        index += 1;
        // Chunks before the piece are cut (the cuts depend on the bytes before them) but not coded.
        if index <= range.start {
            continue;
        }
        let tokens = session.tokenizer.encode(&bytes)?;
        let payload = coder.encode(&tokens)?;
        match payload {
            Some(payload) if payload.len() < bytes.len() || opts.force_model => {
                writer.write_chunk(ChunkKind::Coded, &bytes, tokens.len() as u64, &payload)?;
                stats.tokens += tokens.len() as u64;
                stats.windows += coder.windows;
                stats.ideal_bits += coder.ideal_bits;
            }
            _ => {
                writer.write_chunk(ChunkKind::Stored, &bytes, 0, &bytes)?;
                stats.stored_chunks += 1;
            }
        }
        stats.chunks += 1;
        stats.original_bytes += bytes.len() as u64;
        progress.add_input(bytes.len() as u64);
    }
    // An open range (end u64::MAX) needs only its start to exist.
    if let Some(range) = &opts.chunk_range
        && index < if range.end == u64::MAX { range.start } else { range.end }
    {
        return Err(PipelineError::ChunkRange { start: range.start, end: range.end, count: index });
    }
    let out = writer.finish()?;
    out.inner.flush()?;
    stats.input_bytes = stats.original_bytes;
    stats.archive_bytes = out.count;
    stats.output_bytes = out.count;
    stats.seconds = started.elapsed().as_secs_f64();
    Ok(stats)
}

/// Codes one chunk's tokens; owns the scratch buffers reused across chunks.
pub(super) struct ChunkCoder<'s> {
    session: &'s Session,
    predictor: Predictor<'s>,
    /// Skip the probe that gives up on chunks the model cannot shrink.
    force: bool,
    /// Of the last [`ChunkCoder::encode`]: its windows and the model's ideal bits (see [`Stats`]).
    pub(super) windows: u64,
    pub(super) ideal_bits: f64,
}

impl<'s> ChunkCoder<'s> {
    pub(super) fn new(session: &'s Session, params: &CodingParams, force: bool) -> Self {
        let predictor = Predictor::new(session, params);
        Self { session, predictor, force, windows: 0, ideal_bits: 0.0 }
    }

    /// The range-coded payload for `tokens`, or `None` when the first [`PROBE_TOKENS`] already cost more
    /// bits than the raw bytes would (binary data: the caller stores the chunk instead).
    pub(super) fn encode(&mut self, tokens: &[u32]) -> Result<Option<Vec<u8>>, PipelineError> {
        let mut encoder = Encoder::new();
        let (mut coded, mut cost_bits, mut ideal_bits) = (0usize, 0u64, 0.0f64);
        let mut gave_up = false;
        let (force, tokenizer) = (self.force, &self.session.tokenizer);
        self.windows = self.predictor.run(tokens, |p| {
            ideal_bits += p.table.model_bits(p.logits[p.token as usize]);
            encoder.encode(p.token, p.table)?;
            cost_bits += cost_upper_bits(p.table.freq(p.token));
            coded += 1;
            if !force && coded == PROBE_TOKENS.min(tokens.len()) {
                let probe_bytes: usize =
                    tokens[..coded].iter().map(|&t| tokenizer.token_bytes(t).len()).sum();
                if cost_bits >= 8 * probe_bytes as u64 {
                    gave_up = true;
                    return Ok(ControlFlow::Break(()));
                }
            }
            Ok(ControlFlow::Continue(()))
        })?;
        self.ideal_bits = ideal_bits;
        Ok(if gave_up { None } else { Some(encoder.finish()) })
    }
}

/// An upper bound on the bits a symbol of frequency `freq` costs: `PRECISION_BITS - floor(log2 freq)`.
/// Integer-only, so the store-or-code decision is the same on every machine.
fn cost_upper_bits(freq: u32) -> u64 {
    (PRECISION_BITS - freq.ilog2()) as u64
}

/// Counts the bytes written through it (the archive size, without a seekable output).
pub(super) struct CountingWriter<W> {
    pub(super) inner: W,
    pub(super) count: u64,
}

impl<W> CountingWriter<W> {
    pub(super) fn new(inner: W) -> Self {
        Self { inner, count: 0 }
    }
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
