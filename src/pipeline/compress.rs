//! Compression: chunks of the input -> tokens -> windows -> engine -> tables -> range coder -> container.
//! The mirror image of `decompress.rs`.

use std::io::{Read, Write};
use std::time::Instant;

use super::segment::ChunkReader;
use super::session::Session;
use super::window::Schedule;
use super::{CodecOptions, PipelineError, Stats};
use crate::coder::Encoder;
use crate::container::{ArchiveWriter, ChunkKind};
use crate::io::Progress;
use crate::quant::{FreqTable, PRECISION_BITS};

/// Positions per engine prefill call: bounds the logits buffer (rows x vocabulary x 4 bytes).
pub(super) const PREFILL_SLICE: usize = 128;

/// Tokens coded before deciding whether a chunk is worth model-coding at all (binary data is stored).
const PROBE_TOKENS: usize = 512;

/// Compresses `input` into an archive on `output`.
pub fn compress(
    input: &mut dyn Read,
    output: &mut dyn Write,
    opts: &CodecOptions,
    progress: &dyn Progress,
) -> Result<Stats, PipelineError> {
    let started = Instant::now();
    let session = Session::open(opts.model.as_deref(), opts)?;
    let header = session.header(opts.context, opts.overlap)?;
    let mut stats = Stats::default();
    let mut writer = ArchiveWriter::new(CountingWriter::new(output), &header)?;
    let mut chunks = ChunkReader::new(input, opts.chunk_bytes);
    let mut coder = ChunkCoder::new(&session, opts.context as usize, opts.overlap as usize, opts.force_model);
    while let Some(bytes) = chunks.next_chunk()? {
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
    context: usize,
    overlap: usize,
    /// Skip the probe that gives up on chunks the model cannot shrink.
    force: bool,
    cache: crate::engine::KvCache,
    logits: Vec<f32>,
    /// One table per row of a prefill slice, built in parallel, then coded in order.
    tables: Vec<FreqTable>,
    input: Vec<u32>,
    /// Of the last [`ChunkCoder::encode`]: its windows and the model's ideal bits (see [`Stats`]).
    pub(super) windows: u64,
    pub(super) ideal_bits: f64,
}

impl<'s> ChunkCoder<'s> {
    pub(super) fn new(session: &'s Session, context: usize, overlap: usize, force: bool) -> Self {
        let vocab = session.engine.vocab_size();
        Self {
            session,
            context,
            overlap,
            force,
            cache: session.engine.new_cache(context),
            logits: vec![0.0; PREFILL_SLICE * vocab],
            tables: (0..PREFILL_SLICE).map(|_| FreqTable::new(vocab)).collect(),
            input: Vec::with_capacity(context),
            windows: 0,
            ideal_bits: 0.0,
        }
    }

    /// The range-coded payload for `tokens`, or `None` when the first [`PROBE_TOKENS`] already cost more
    /// bits than the raw bytes would (binary data: the caller stores the chunk instead).
    pub(super) fn encode(&mut self, tokens: &[u32]) -> Result<Option<Vec<u8>>, PipelineError> {
        let mut encoder = Encoder::new();
        let mut coded = 0usize;
        let mut cost_bits = 0u64;
        let start = [self.session.tokenizer.start_token()];
        let vocab = self.session.engine.vocab_size();
        (self.windows, self.ideal_bits) = (0, 0.0);
        for window in Schedule::new(tokens.len(), self.context, self.overlap)? {
            self.windows += 1;
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
                    self.ideal_bits += table.model_bits(row[token as usize]);
                    encoder.encode(token, table)?;
                    cost_bits += cost_upper_bits(table.freq(token));
                    coded += 1;
                    if !self.force && coded == PROBE_TOKENS.min(tokens.len()) {
                        let tokenizer = &self.session.tokenizer;
                        let probe_bytes: usize =
                            tokens[..coded].iter().map(|&t| tokenizer.token_bytes(t).len()).sum();
                        if cost_bits >= 8 * probe_bytes as u64 {
                            return Ok(None);
                        }
                    }
                }
            }
        }
        Ok(Some(encoder.finish()))
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
