//! Decompression: container -> chunks -> lanes advanced in lock-step -> tokens -> bytes.
//! The mirror image of `compress.rs`.
//!
//! Up to `lanes` model-coded chunks are decoded together: at every step each lane needs one row of logits
//! for its next token. A lane that begins a window prefills its context alone; all other lanes feed their
//! last decoded token to one batched engine step. The determinism contract (same logits for prefill and
//! step, for any batch) is what lets this schedule differ from the encoder's one-window-at-a-time prefill.

use std::collections::VecDeque;
use std::io::{Read, Seek, Write};
use std::ops::ControlFlow;
use std::time::Instant;

use super::compress::CountingWriter;
use super::draft::Drafter;
use super::params::CodingParams;
use super::prefill::{prefill, slice_rows};
use super::session::{Session, Sessions};
use super::window::{Schedule, Sliding, Window};
use super::{CodecOptions, PipelineError, Stats};
use crate::coder::Decoder;
use crate::container::{ArchiveReader, Chunk, ChunkKind, FormatError, Header};
use crate::engine::KvCache;
use crate::io::{Progress, ReadSeek};
use crate::mix::{MixPlan, Mixer};
use crate::quant::{FreqTable, Probabilities};

/// Decompresses the archive on `input` to `output`, verifying every checksum. Archives written back to
/// back (as `llmzip c -c a b` does) decode to the concatenation of their contents, as with gzip.
/// To decompress several streams, keep one [`Sessions`] and call [`decompress_with`] for each.
pub fn decompress(
    input: &mut dyn Read,
    output: &mut dyn Write,
    opts: &CodecOptions,
    progress: &dyn Progress,
) -> Result<Stats, PipelineError> {
    let mut sessions = Sessions::quiet(opts);
    decompress_with(&mut sessions, input, output, opts, progress)
}

/// Like [`decompress`], taking each archive's session from `sessions` (which opens it on first use and
/// keeps it for the next archive of the same model); `opts` gives the decoder's lane count.
pub fn decompress_with(
    sessions: &mut Sessions,
    input: &mut dyn Read,
    output: &mut dyn Write,
    opts: &CodecOptions,
    progress: &dyn Progress,
) -> Result<Stats, PipelineError> {
    let started = Instant::now();
    let mut out = CountingWriter::new(output);
    let mut stats = Stats::default();
    let mut input: Box<dyn Read + '_> = Box::new(input);
    let mut first = true;
    loop {
        let rest = match decompress_one(input, &mut out, opts, progress, sessions, &mut stats) {
            Ok(rest) => rest,
            // After a complete archive, bytes that are not another archive are trailing garbage, not
            // "not an llmzip archive" (the file is one).
            Err(PipelineError::Format(FormatError::NotArchive | FormatError::OtherFormat { .. }))
                if !first =>
            {
                return Err(FormatError::TrailingData { offset: stats.archive_bytes }.into());
            }
            Err(e) => return Err(e),
        };
        first = false;
        // Anything after an archive's end must be another archive.
        let mut probe = [0u8; 1];
        let mut rest = rest;
        let more = loop {
            match rest.read(&mut probe) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        };
        if more == 0 {
            break;
        }
        input = Box::new(std::io::Cursor::new(probe).chain(rest));
    }
    out.flush()?;
    stats.input_bytes = stats.archive_bytes;
    stats.output_bytes = out.count;
    stats.seconds = started.elapsed().as_secs_f64();
    Ok(stats)
}

/// What a header must agree with once the model is loaded, before anything is allocated for decoding:
/// the model's own context limit (the container bounded it by llmzip's) and the start token the canary
/// was computed with.
fn check_header_against_model(session: &Session, header: &Header) -> Result<(), PipelineError> {
    let max = session.engine.max_context();
    if header.context as usize > max {
        return Err(FormatError::Header(format!(
            "context {} exceeds model {}'s limit of {max} positions",
            header.context, session.model.id
        ))
        .into());
    }
    let start = session.tokenizer.start_token();
    if header.start_token != start {
        return Err(FormatError::Header(format!(
            "start token {} differs from the model's start token {start}",
            header.start_token
        ))
        .into());
    }
    Ok(())
}

/// Chunks of one archive that may be between read and written, per lane. A lane that finishes takes
/// the next chunk at once, while an earlier chunk may still be decoding; the verified bytes of later
/// chunks wait for it, and this bounds how many (the memory of waiting output).
const CHUNKS_IN_FLIGHT_PER_LANE: usize = 2;

/// Decodes one archive; returns the reader positioned after its end.
///
/// Lanes are refilled continuously: as soon as a chunk is decoded its lane starts the next chunk of the
/// archive, and every chunk is written as soon as it and all chunks before it are verified (so `d -c |
/// head` sees the first chunk while the rest decode). Chunks are verified and written in archive order.
fn decompress_one<'r>(
    input: Box<dyn Read + 'r>,
    out: &mut dyn Write,
    opts: &CodecOptions,
    progress: &dyn Progress,
    sessions: &mut Sessions,
    stats: &mut Stats,
) -> Result<Box<dyn Read + 'r>, PipelineError> {
    let mut reader = ArchiveReader::new(input)?;
    let header = reader.header().clone();
    let params = CodingParams::of_header(&header)?;
    let session = sessions.for_archive(&header)?;
    check_header_against_model(session, &header)?;
    let lanes = opts.lanes.max(1);
    let mut decoding = LaneSet::new(session, params, opts.speculate);
    // Chunks read and not yet written, oldest first (chunk `written + i` at `i`): the chunk's header
    // fields (its payload moved to its lane) and, once decoded, its bytes.
    let mut pending: VecDeque<(Chunk, Option<Vec<u8>>)> = VecDeque::new();
    let (mut read, mut written, mut read_all) = (0u64, 0u64, false);
    loop {
        while !read_all && decoding.len() < lanes && pending.len() < CHUNKS_IN_FLIGHT_PER_LANE * lanes {
            let Some(mut chunk) = reader.next_chunk()? else {
                read_all = true;
                break;
            };
            // A coded chunk's bytes are reported as its tokens decode (see Lane::input_len).
            if chunk.kind == ChunkKind::Stored {
                progress.add_input(chunk.encoded_len() as u64);
            }
            let bytes = decoding.admit(read, &mut chunk)?;
            pending.push_back((chunk, bytes));
            read += 1;
        }
        while pending.front().is_some_and(|(_, bytes)| bytes.is_some()) {
            let (chunk, bytes) = pending.pop_front().expect("checked above");
            let bytes = bytes.expect("checked above");
            chunk.verify_original(written, &bytes)?;
            reader.note_original(&bytes);
            out.write_all(&bytes)?;
            progress.add_output(bytes.len() as u64);
            stats.original_bytes += bytes.len() as u64;
            stats.chunks += 1;
            match chunk.kind {
                ChunkKind::Stored => stats.stored_chunks += 1,
                ChunkKind::Coded => stats.tokens += chunk.tokens,
            }
            written += 1;
        }
        if decoding.is_empty() {
            if read_all {
                break;
            }
            // Every pending chunk was stored and is written: read on.
            continue;
        }
        for (index, bytes) in decoding.step(progress, stats)? {
            pending[(index - written) as usize].1 = Some(bytes);
        }
    }
    debug_assert!(pending.is_empty(), "every chunk read was written");
    let (archive_bytes, rest) = reader.finish()?;
    stats.archive_bytes += archive_bytes;
    Ok(rest)
}

/// What `llmzip l` shows for one file (one archive, or several back to back).
#[derive(Clone, Debug)]
pub struct Listing {
    /// The model id, or the distinct ids joined by `+` when the archives name several.
    pub model: String,
    /// Archives in the file (FORMAT.md allows several back to back).
    pub archives: u64,
    /// The coding settings the archives record ([`CodingParams`]'s words), the distinct ones joined by
    /// `; ` when they differ.
    pub settings: String,
    pub chunks: u64,
    pub original_bytes: u64,
    pub archive_bytes: u64,
    /// [`LIST_CHECK_OK`] when every checksum of the container (headers, chunks, ends) verified and the
    /// archives tile the file exactly; `l` decodes nothing, so what a chunk decodes to is checked by
    /// `llmzip t` only.
    pub check: String,
}

/// What `l`'s check column says when its checks pass: "ok" for every container checksum and the layout
/// they describe (decoding the chunks is `llmzip t`'s job).
pub const LIST_CHECK_OK: &str = "ok";

/// Every archive's header, chunks and end, walked from the front and checked without decoding anything.
pub fn list(input: &mut dyn ReadSeek, _opts: &CodecOptions) -> Result<Listing, PipelineError> {
    let all = crate::container::read_archives(&mut SeekAdapter(input))?;
    let mut models: Vec<&str> = Vec::new();
    for info in &all {
        if !models.contains(&info.header.model_id.as_str()) {
            models.push(&info.header.model_id);
        }
    }
    let mut settings: Vec<String> = Vec::new();
    for info in &all {
        let described = CodingParams::of_header(&info.header)?.to_string();
        if !settings.contains(&described) {
            settings.push(described);
        }
    }
    Ok(Listing {
        model: models.join("+"),
        settings: settings.join("; "),
        archives: all.len() as u64,
        chunks: all.iter().map(|a| a.chunks.len() as u64).sum(),
        original_bytes: all.iter().map(|a| a.total_original).sum(),
        archive_bytes: all.iter().map(|a| a.archive_bytes).sum(),
        check: LIST_CHECK_OK.to_string(),
    })
}

/// `&mut dyn ReadSeek` as a sized `Read + Seek`.
struct SeekAdapter<'a>(&'a mut dyn ReadSeek);

impl Read for SeekAdapter<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf)
    }
}

impl Seek for SeekAdapter<'_> {
    fn seek(&mut self, pos: std::io::SeekFrom) -> std::io::Result<u64> {
        self.0.seek(pos)
    }
}

/// One model-coded chunk being decoded.
struct Lane {
    /// Chunk number in the archive: where its bytes go in the output, and for error messages.
    index: u64,
    decoder: Decoder,
    tokens: Vec<u32>,
    schedule: LaneSchedule,
    /// The lane must prefill its window's context before the next token can be predicted.
    at_window_start: bool,
    cache: KvCache,
    /// The chunk's mixer (`None` without one), learning each token once it is decoded.
    mixer: Option<Mixer>,
    /// With speculation: the lane's drafter, and the tokens it guessed for this call.
    drafter: Option<Drafter>,
    draft: Vec<u32>,
    /// The logits row of a window's last context position (lanes that step use the batch's rows).
    row: Vec<f32>,
    /// The chunk's archive bytes, reported to the progress bar in proportion to the tokens decoded so
    /// it moves inside a chunk; `reported` of them so far.
    input_len: u64,
    reported: u64,
    total_tokens: u64,
}

/// Where a lane is in its chunk's schedule.
enum LaneSchedule {
    /// The window schedule: the windows still to come, and the current one.
    Windows { windows: Schedule, window: Window },
    /// The sliding schedule: one cache for the whole chunk, which slides whenever it is full.
    Sliding(Sliding),
}

impl LaneSchedule {
    /// The engine input of the current window before its first coded token, given the lane's decoded
    /// `tokens` (the start token for the sliding schedule, which has one window).
    fn window_context<'a>(&self, tokens: &'a [u32], start: &'a [u32; 1]) -> &'a [u32] {
        match self {
            LaneSchedule::Windows { window, .. } => window.context_tokens(tokens, start),
            LaneSchedule::Sliding(_) => start,
        }
    }
}

impl Lane {
    /// Moves on after a decoded token: into the next window when the current one is complete.
    fn advance(&mut self) {
        if let LaneSchedule::Windows { windows, window } = &mut self.schedule
            && self.tokens.len() == window.coded.end
            && let Some(next) = windows.next()
        {
            *window = next;
            self.at_window_start = true;
        }
    }

    fn finished(&self) -> bool {
        self.tokens.len() as u64 == self.total_tokens && !self.at_window_start
    }

    /// Draft tokens the next call may guess after the lane's next token: every guess must stay inside
    /// the chunk, the current window and the cache (after the slide a full cache makes before a step),
    /// so a confirmed draft never crosses a point where the schedule does something else.
    fn draft_room(&self) -> usize {
        let next = self.tokens.len() + 1;
        let in_chunk = (self.total_tokens as usize).saturating_sub(next);
        let (in_window, in_cache) = match &self.schedule {
            LaneSchedule::Windows { window, .. } => {
                (window.coded.end.saturating_sub(next), self.cache.remaining().saturating_sub(1))
            }
            LaneSchedule::Sliding(sliding) => (usize::MAX, sliding.room(self.cache.len()).saturating_sub(1)),
        };
        in_chunk.min(in_window).min(in_cache)
    }

    /// Decodes the lane's next token with `table` (whose mixer plan and LLM probabilities are given
    /// when mixing), lets its mixer learn it, moves the progress bar and the schedule on.
    fn take(
        &mut self,
        table: &FreqTable,
        mixed: Option<(&MixPlan, &Probabilities)>,
        progress: &dyn Progress,
    ) -> Result<u32, PipelineError> {
        self.at_window_start = false;
        let token = self.decoder.decode(table).map_err(|e| PipelineError::corrupt(self.index, e))?;
        if let (Some(mixer), Some((plan, probs))) = (&mut self.mixer, mixed) {
            mixer.learn(plan, probs, token);
        }
        self.tokens.push(token);
        let share = self.input_len * self.tokens.len() as u64 / self.total_tokens.max(1);
        if share > self.reported {
            progress.add_input(share - self.reported);
            self.reported = share;
        }
        self.advance();
        Ok(token)
    }
}

/// The decoder's row stage (logits row -> table), one row per lane (the encoder's, `predict::RowStage`,
/// takes consecutive rows of one chunk): per-lane buffers and the one function both the batch and a
/// confirmed draft's next row go through, so the two cannot compute a table differently.
struct LaneTables {
    /// One table per lane: u32 frequency and cumulative count per symbol.
    tables: Vec<FreqTable>,
    /// With a mixer (else empty): each lane's LLM probabilities and its mixer plan.
    probs: Vec<Probabilities>,
    plans: Vec<MixPlan>,
    mixing: bool,
}

impl LaneTables {
    fn new(lanes: usize, vocab: usize, mixing: bool) -> Self {
        let mut stage = LaneTables { tables: Vec::new(), probs: Vec::new(), plans: Vec::new(), mixing };
        stage.grow(lanes, vocab);
        stage
    }

    /// Buffers for at least `lanes` lanes (kept when lanes leave, for the lanes that replace them).
    fn grow(&mut self, lanes: usize, vocab: usize) {
        while self.tables.len() < lanes {
            self.tables.push(FreqTable::new(vocab));
            if self.mixing {
                self.probs.push(Probabilities::new());
                self.plans.push(MixPlan::new());
            }
        }
    }

    /// The tables of lanes `at..at + rows.len()` from their rows, in parallel (a pure function of the
    /// row and, with a mixer, of the lane's history): with a mixer, softmax, each lane's plan, then
    /// the mixed table; without, the quantizer's table.
    fn compute(&mut self, session: &Session, lanes: &[Lane], at: usize, rows: Vec<&[f32]>) {
        let span = at..at + rows.len();
        if !self.mixing {
            session.quantize_rows(rows, &mut self.tables[span]);
            return;
        }
        session.softmax_rows(rows, &mut self.probs[span.clone()]);
        for (lane, i) in lanes.iter().zip(span.clone()) {
            lane.mixer.as_ref().expect("a mixer per lane").plan(self.probs[i].sum(), &mut self.plans[i]);
        }
        session.mixed_tables(&self.plans[span.clone()], &self.probs[span.clone()], &mut self.tables[span]);
    }

    /// What lane `i`'s mixer learns from once its token is decoded (`None` without a mixer).
    fn mixed(&self, i: usize) -> Option<(&MixPlan, &Probabilities)> {
        self.mixing.then(|| (&self.plans[i], &self.probs[i]))
    }
}

/// Draft rows one engine call may add over all lanes: with few lanes a step is bound by reading the
/// weights, and extra rows are nearly free; with many, every row costs compute, so guesses share this.
const DRAFT_ROWS_PER_CALL: usize = 16;

/// The lanes decoding model-coded chunks in lock-step, and the buffers their engine calls share.
struct LaneSet<'s> {
    session: &'s Session,
    params: CodingParams,
    speculate: bool,
    lanes: Vec<Lane>,
    stage: LaneTables,
    /// Logits of a window start's prefill (allocated with the first coded chunk) and of the batch.
    prefill_logits: Vec<f32>,
    step_logits: Vec<f32>,
    /// The stepping lanes' runs (last token, then the draft) back to back, and where each ends.
    run_tokens: Vec<u32>,
    run_ends: Vec<usize>,
}

impl<'s> LaneSet<'s> {
    fn new(session: &'s Session, params: CodingParams, speculate: bool) -> Self {
        let vocab = session.engine.vocab_size();
        LaneSet {
            session,
            params,
            speculate,
            lanes: Vec::new(),
            stage: LaneTables::new(0, vocab, !params.mix.is_off()),
            prefill_logits: Vec::new(),
            step_logits: Vec::new(),
            run_tokens: Vec::new(),
            run_ends: Vec::new(),
        }
    }

    /// Lanes decoding now.
    fn len(&self) -> usize {
        self.lanes.len()
    }

    fn is_empty(&self) -> bool {
        self.lanes.is_empty()
    }

    /// Takes chunk number `index` of the archive: a stored chunk's bytes are returned at once (its
    /// payload moved out); a coded chunk, checked against what its payload can hold, gets a lane (its
    /// payload moved to the lane's decoder) and is returned by a later [`LaneSet::step`].
    fn admit(&mut self, index: u64, chunk: &mut Chunk) -> Result<Option<Vec<u8>>, PipelineError> {
        if chunk.kind == ChunkKind::Stored {
            return Ok(Some(std::mem::take(&mut chunk.payload)));
        }
        let (session, params) = (self.session, &self.params);
        let vocab = session.engine.vocab_size();
        // The tables' precision is the rule's for the vocabulary (the header's was checked equal).
        let bits = crate::quant::precision_for(vocab);
        let most = crate::coder::max_symbols(chunk.payload.len(), vocab, bits);
        if chunk.tokens > most {
            return Err(PipelineError::corrupt(
                index,
                format!(
                    "it claims {} tokens, but a {}-byte payload holds at most {most} with a {vocab}-token \
                     vocabulary",
                    chunk.tokens,
                    chunk.payload.len()
                ),
            ));
        }
        if chunk.tokens == 0 {
            return Err(PipelineError::corrupt(index, "a model-coded chunk with no tokens"));
        }
        let schedule = match params.sliding() {
            Some(sliding) => LaneSchedule::Sliding(sliding),
            None => {
                let mut windows = params.schedule(chunk.tokens as usize)?;
                let window = windows.next().expect("a schedule over tokens has a window");
                LaneSchedule::Windows { windows, window }
            }
        };
        let decoder = Decoder::new(&chunk.payload).map_err(|e| PipelineError::corrupt(index, e))?;
        let input_len = chunk.encoded_len() as u64;
        chunk.payload = Vec::new();
        self.lanes.push(Lane {
            index,
            decoder,
            // Grown as tokens arrive: a corrupt chunk fails long before its claimed count.
            tokens: Vec::with_capacity((chunk.tokens as usize).min(1 << 16)),
            schedule,
            at_window_start: true,
            cache: session.engine.new_cache(params.context as usize, params.engine),
            mixer: (!params.mix.is_off()).then(|| Mixer::new(params.mix, vocab)),
            drafter: self.speculate.then(Drafter::new),
            draft: Vec::new(),
            row: Vec::new(),
            input_len,
            reported: 0,
            total_tokens: chunk.tokens,
        });
        // Per lane and symbol: a table (u32 frequency and cumulative count), its step row and
        // window-start row of logits, and with a mixer its probabilities: 20 bytes, 5 MiB a lane for a
        // 262,144-token vocabulary (80 MiB at the 16 default lanes), below each lane's KV cache. It is
        // bounded by the lane count the user chose, as the caches are; the prefill buffer is bounded in
        // bytes (`slice_rows`).
        self.stage.grow(self.lanes.len(), vocab);
        if self.prefill_logits.is_empty() {
            self.prefill_logits = vec![0.0f32; slice_rows(vocab) * vocab];
        }
        Ok(None)
    }

    /// One engine call for every lane (and a prefill for each lane at a window start), then every
    /// token those rows decode. Returns the chunks that finished, by number, with their bytes.
    fn step(
        &mut self,
        progress: &dyn Progress,
        stats: &mut Stats,
    ) -> Result<Vec<(u64, Vec<u8>)>, PipelineError> {
        let Self {
            session,
            params,
            speculate,
            lanes,
            stage,
            prefill_logits,
            step_logits,
            run_tokens,
            run_ends,
        } = self;
        let session: &Session = session;
        let vocab = session.engine.vocab_size();
        let start = params.start();
        // 1. Lanes mid-window feed their last token, and the draft of the tokens after it where one is
        //    guessed, to one engine call: row 0 of a lane's run predicts its next token, row j the
        //    token after draft token j.
        let mut budget = if *speculate { DRAFT_ROWS_PER_CALL } else { 0 };
        run_tokens.clear();
        run_ends.clear();
        for lane in lanes.iter_mut().filter(|l| !l.at_window_start) {
            // A full sliding cache drops its oldest positions before it takes the next one.
            if let LaneSchedule::Sliding(sliding) = lane.schedule
                && sliding.room(lane.cache.len()) == 0
            {
                session.engine.slide(&mut lane.cache, sliding.sink, sliding.slide)?;
            }
            let room = lane.draft_room().min(budget);
            let Lane { drafter, draft, tokens, .. } = lane;
            match drafter {
                Some(d) if room > 0 => d.draft(tokens, room, draft),
                _ => draft.clear(),
            }
            budget -= draft.len();
            run_tokens.push(*tokens.last().expect("a lane mid-window has decoded a token"));
            run_tokens.extend_from_slice(draft);
            run_ends.push(run_tokens.len());
        }
        step_logits.resize(run_tokens.len() * vocab, 0.0);
        if !run_tokens.is_empty() {
            let mut caches: Vec<&mut KvCache> =
                lanes.iter_mut().filter(|l| !l.at_window_start).map(|l| &mut l.cache).collect();
            let starts = std::iter::once(0).chain(run_ends.iter().copied());
            let runs: Vec<&[u32]> = starts.zip(run_ends.iter()).map(|(a, &b)| &run_tokens[a..b]).collect();
            session.engine.extend(&mut caches, &runs, step_logits)?;
        }
        // 2. Lanes at a window start prefill their context alone; the last row predicts their next token.
        for lane in lanes.iter_mut().filter(|l| l.at_window_start) {
            let Lane { cache, schedule, tokens, row, draft, .. } = lane;
            draft.clear();
            cache.clear();
            let context = schedule.window_context(tokens, &start);
            let _always_continues: ControlFlow<()> =
                prefill(&session.engine, cache, context, prefill_logits, |_, rows| {
                    row.clear();
                    row.extend_from_slice(&rows[rows.len() - vocab..]);
                    Ok(ControlFlow::Continue(()))
                })?;
        }
        stats.lane_calls += lanes.len() as u64;
        // 3. Every lane's first table, in parallel (a pure function of its row). A stepped lane's rows
        //    are `first[i]..` in the call's logits.
        let mut first = Vec::with_capacity(lanes.len());
        let mut at = 0;
        for lane in lanes.iter() {
            first.push(at);
            if !lane.at_window_start {
                at += (1 + lane.draft.len()) * vocab;
            }
        }
        let rows: Vec<&[f32]> = lanes
            .iter()
            .zip(&first)
            .map(|(l, &at)| if l.at_window_start { l.row.as_slice() } else { &step_logits[at..at + vocab] })
            .collect();
        stage.compute(session, lanes, 0, rows);
        // 4. Each lane decodes its next token, in lane order (and its mixer learns it); then, while
        //    the decoded token is the draft's guess, the next row is exact and decodes the next one.
        for (i, lane) in lanes.iter_mut().enumerate() {
            let mut token = lane.take(&stage.tables[i], stage.mixed(i), progress)?;
            let drafted = lane.draft.len();
            let mut accepted = 0;
            while accepted < drafted && token == lane.draft[accepted] {
                accepted += 1;
                let at = first[i] + accepted * vocab;
                stage.compute(session, std::slice::from_ref(&*lane), i, vec![&step_logits[at..at + vocab]]);
                token = lane.take(&stage.tables[i], stage.mixed(i), progress)?;
            }
            if drafted > 0 {
                // The cache holds the last token and every guess; keep what the decoder confirmed.
                let len = lane.cache.len() - (drafted - accepted);
                lane.cache.truncate(len);
                if let Some(d) = &mut lane.drafter {
                    d.record(drafted, accepted);
                }
                stats.drafted += drafted as u64;
                stats.accepted += accepted as u64;
            }
        }
        // 5. Finished lanes leave the batch with their chunk's bytes.
        let mut finished = Vec::new();
        lanes.retain_mut(|lane| {
            let done = lane.finished();
            if done {
                let mut bytes = Vec::new();
                session.tokenizer.decode_into(&lane.tokens, &mut bytes);
                finished.push((lane.index, bytes));
            }
            !done
        });
        Ok(finished)
    }
}
