//! Compression: chunks of the input -> tokens -> windows -> engine -> tables -> range coder -> container.
//! The mirror image of `decompress.rs`.

use std::io::{Read, Write};
use std::ops::ControlFlow;
use std::time::Instant;

use super::entropy::looks_incompressible;
use super::params::CodingParams;
use super::predict::Predictor;
use super::segment::ChunkReader;
use super::session::Session;
use super::{CodecOptions, PipelineError, Stats};
use crate::coder::Encoder;
use crate::container::{ArchiveWriter, ChunkKind};
use crate::io::Progress;

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
    let session = Session::open(opts, &crate::model::NoModelProgress)?;
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
    let params = session.coding_params(opts)?;
    let header = session.header(&params, opts.framing)?;
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
        // Compressed, encrypted or random bytes are recognised in microseconds and stored; the model
        // would only confirm it at its full price.
        let payload = if !opts.force_model && looks_incompressible(&bytes) {
            None
        } else {
            let tokens = session.tokenizer.encode(&bytes)?;
            coder.encode(&tokens, bytes.len() as u64, progress)?.map(|p| (tokens.len(), p))
        };
        let before = writer_bytes(&writer);
        match payload {
            Some((tokens, payload)) if payload.len() < bytes.len() || opts.force_model => {
                writer.write_chunk(ChunkKind::Coded, &bytes, tokens as u64, &payload)?;
                stats.tokens += tokens as u64;
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
        // What the coder has not reported yet (all of a stored chunk).
        progress.add_input(bytes.len() as u64 - coder.reported.min(bytes.len() as u64));
        coder.reported = 0;
        progress.add_output(writer_bytes(&writer) - before);
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
    /// Input bytes of the current chunk already reported to the progress bar, in proportion to the
    /// tokens coded, so the bar moves inside a chunk.
    pub(super) reported: u64,
}

impl<'s> ChunkCoder<'s> {
    pub(super) fn new(session: &'s Session, params: &CodingParams, force: bool) -> Self {
        let predictor = Predictor::new(session, params);
        Self { session, predictor, force, windows: 0, ideal_bits: 0.0, reported: 0 }
    }

    /// The range-coded payload for `tokens` (the `chunk_len` bytes of a chunk), or `None` when the first
    /// [`PROBE_TOKENS`] already cost more bits than their raw bytes would (binary data: the caller stores
    /// the chunk instead). Reports the chunk's bytes to `progress` as its tokens are coded.
    pub(super) fn encode(
        &mut self,
        tokens: &[u32],
        chunk_len: u64,
        progress: &dyn Progress,
    ) -> Result<Option<Vec<u8>>, PipelineError> {
        let mut encoder = Encoder::new();
        let (mut coded, mut cost_bits, mut ideal_bits) = (0usize, 0u64, 0.0f64);
        let mut gave_up = false;
        let (force, tokenizer) = (self.force, &self.session.tokenizer);
        let reported = &mut self.reported;
        *reported = 0;
        let mut probe = Vec::new();
        self.windows = self.predictor.run(tokens, |p| {
            ideal_bits += p.ideal_bits;
            encoder.encode(p.token, p.table)?;
            cost_bits += cost_upper_bits(p.table.freq(p.token), p.table.precision_bits());
            coded += 1;
            let share = chunk_len * coded as u64 / tokens.len() as u64;
            progress.add_input(share - *reported);
            *reported = share;
            if !force && coded == PROBE_TOKENS.min(tokens.len()) {
                // The probe's original bytes, escapes counted as the one byte each stands for (not as
                // the start token's text and two digits).
                tokenizer.decode_into(&tokens[..coded], &mut probe);
                if cost_bits >= 8 * probe.len() as u64 {
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

/// An upper bound on the bits a symbol of frequency `freq` out of `2^precision_bits` costs:
/// `precision_bits - floor(log2 freq)`. Integer-only, so the store-or-code decision is the same on every
/// machine.
fn cost_upper_bits(freq: u32, precision_bits: u32) -> u64 {
    (precision_bits - freq.ilog2()) as u64
}

/// Archive bytes written so far.
fn writer_bytes<W: Write>(writer: &ArchiveWriter<CountingWriter<W>>) -> u64 {
    writer.get_ref().count
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
