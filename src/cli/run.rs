//! Acting on a [`Plan`]: open each input, create its output, call the pipeline, commit, tell.
//!
//! This is the only CLI module that runs [`crate::pipeline`]'s codecs (`pieces` asks it only for the
//! model-free cut points); what it needs from there is:
//! - `CodecOptions { model, context, overlap, threads, kernel }`;
//! - [`Sessions`]: the run's model, opened on the first job that needs it and kept for every later
//!   one, so `llmzip c a b c` resolves, hashes, loads and self-checks the model once;
//! - `compress_with` and `decompress_with(.., &mut dyn Read, &mut dyn Write, &CodecOptions, &dyn Progress)
//!   -> Result<Stats, PipelineError>` (`t` is `decompress_with` into [`std::io::sink`]);
//! - `list(&mut dyn ReadSeek, &CodecOptions) -> Result<ArchiveInfo, PipelineError>`;
//! - `PipelineError: std::error::Error + 'static` whose `source()` chain reaches the `io::Error` of a
//!   failed read or write (so a closed stdout pipe is recognised; see also [`StdoutSink`]).
//!
//! The model's download and hashing bar is made here (hidden with `-q`) and handed down: the pipeline
//! draws nothing itself.

use std::fmt::Write as _;
use std::fs::{File, Metadata};
use std::io::{self, BufReader, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

use thiserror::Error;

use super::listing::{self, ArchiveLine};
use super::plan::{Env, Input, Job, Operation, Output, PathProbe, Plan, Verbosity};
use super::report::{Reporter, is_broken_pipe, one_line};
use crate::io::fs::{copy_metadata, regular_file_size};
use crate::io::stdio::{self, StdoutSink};
use crate::io::{AtomicFile, StderrProgress};
use crate::pipeline::{self, CodecOptions, PipelineError, Sessions, Stats};

/// Read buffer for input files.
const INPUT_BUFFER: usize = 256 * 1024;

/// Why one job failed. Printed after the input's name as `llmzip: <input>: <this>: <cause>`.
#[derive(Debug, Error)]
pub enum JobError {
    #[error("cannot open")]
    Open(#[source] io::Error),
    #[error("cannot create {}", path.display())]
    Create { path: PathBuf, source: io::Error },
    #[error("cannot write {}", path.display())]
    Write { path: PathBuf, source: io::Error },
    #[error("{} already exists; use -f to overwrite", path.display())]
    Exists { path: PathBuf },
    #[error("cannot move the finished output onto {}", path.display())]
    Commit { path: PathBuf, source: io::Error },
    #[error("cannot write to stdout")]
    Stdout(#[source] io::Error),
    #[error("{} was written, but the input could not be removed", path.display())]
    RemoveInput { path: PathBuf, source: io::Error },
    #[error(
        "listing needs the archive's size and offsets, so stdin must be a file, not a pipe; give the file name"
    )]
    NotSeekable(#[source] io::Error),
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    #[error("cannot append statistics to {}", path.display())]
    StatsFile { path: PathBuf, source: io::Error },
}

/// The real environment for [`super::plan::plan`].
pub fn system_env(paths: &dyn PathProbe) -> Env<'_> {
    Env {
        stdin_is_terminal: io::stdin().is_terminal(),
        stdout_is_terminal: io::stdout().is_terminal(),
        available_threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        // Speculative decoding changes no output, only the time: LLMZIP_SPECULATE=0 switches it off
        // for measurements (no flag, as for the kernel path).
        speculate: std::env::var_os("LLMZIP_SPECULATE").is_none_or(|v| v != "0"),
        paths,
    }
}

/// Runs every item of `plan` in order, reporting skips, failures and (with `-v`) statistics.
///
/// A failure ends only its own job; the next file is still processed. The exception is a closed
/// stdout pipe: nobody is reading any more, so processing stops without a message and the exit status
/// is what it was before (0 when all went well), as `head` users expect.
pub fn execute(plan: &Plan, reporter: &mut Reporter) {
    execute_with(plan, plan.codec.clone(), reporter)
}

/// [`execute`] with options beyond the plan's settings (the chunking and chunk range of
/// `c --chunk-size/--chunks/--part`, resolved by [`super::pieces`]).
pub fn execute_with(plan: &Plan, opts: CodecOptions, reporter: &mut Reporter) {
    let show_progress = reporter.verbosity() != Verbosity::Quiet && io::stderr().is_terminal();
    // Only compression chooses these: `d`, `t` and `l` take every setting from the archive.
    if plan.operation == Operation::Compress
        && matches!(reporter.verbosity(), Verbosity::Verbose(n) if n >= 2)
    {
        let s = &plan.codec;
        reporter.info(&format!(
            "model {}, context {}, {}, mixer {}, threads {}",
            s.model.as_deref().unwrap_or("(default)"),
            s.context,
            if s.slide() > 0 { format!("slide {}", s.slide()) } else { format!("overlap {}", s.overlap) },
            if s.mix.is_off() { "off" } else { "on" },
            s.threads
        ));
    }

    let model_progress = if reporter.verbosity() == Verbosity::Quiet {
        indicatif::ProgressBar::hidden()
    } else {
        crate::model::progress_bar()
    };
    let mut sessions = Sessions::new(&opts, model_progress);
    let mut stdout: Option<StdoutSink> = None;
    let mut rows = Vec::new();
    for item in &plan.items {
        let Some(job) = reporter.job(item) else { continue };
        let name = job.input.display();
        let opened = sessions.opened();
        let result = match plan.operation {
            Operation::List { .. } => list_job(job, &opts).map(|row| {
                if row.check != "ok" {
                    reporter.error(Some(&name), &io::Error::other(format!("check failed: {}", row.check)));
                }
                rows.push(row);
                None
            }),
            op => run_job(op, job, &opts, &mut sessions, &mut stdout, show_progress, reporter).map(Some),
        };
        if sessions.opened() > opened
            && matches!(reporter.verbosity(), Verbosity::Verbose(n) if n >= 2)
            && let Some(s) = sessions.current()
        {
            reporter.info(&format!(
                "model {} (sha256 {}) set up: {} kernels, {} threads",
                s.model.id,
                crate::hex::encode(&s.model.sha256),
                s.engine.kernel().name(),
                s.engine.threads()
            ));
        }
        match result {
            Ok(Some(stats)) => {
                reporter.info(&stats_line(plan.operation, &name, &stats));
                if let Some(path) = &plan.stats_file
                    && let Err(e) = append_record(path, &stats.record(&plan.operation.to_string(), &name))
                {
                    reporter.error(Some(&name), &e);
                }
            }
            Ok(None) => {}
            Err(e) => {
                let pipe_closed = stdout.as_ref().is_some_and(StdoutSink::is_broken) || is_broken_pipe(&e);
                if job.output == Output::Stdout && pipe_closed {
                    return;
                }
                reporter.error(Some(&name), &e);
            }
        }
    }

    if let Operation::List { robot } = plan.operation
        && !rows.is_empty()
    {
        let mut text = if robot { listing::robot(&rows) } else { listing::human(&rows) };
        if !robot && matches!(plan.verbosity, Verbosity::Verbose(_)) {
            text.push_str(&listing::settings(&rows));
        }
        let sink = stdout.get_or_insert_with(StdoutSink::new);
        if let Err(e) = sink.write_all(text.as_bytes()).and_then(|()| sink.flush())
            && e.kind() != io::ErrorKind::BrokenPipe
        {
            reporter.error(None, &JobError::Stdout(e));
        }
    }
}

/// An opened input: the reader, the metadata of a file (for copying to the output), and the size
/// when known (for the chunk layout and the progress bar; stdin redirected from a file has one too).
struct OpenedInput {
    reader: Box<dyn Read>,
    metadata: Option<Metadata>,
    size: Option<u64>,
}

fn open(input: &Input) -> Result<OpenedInput, JobError> {
    match input {
        Input::Stdin => {
            // Measured before the first read, so nothing is buffered yet.
            let size = stdio::stdin_file_size();
            Ok(OpenedInput { reader: Box::new(stdio::stdin()), metadata: None, size })
        }
        Input::Path(path) => {
            let file = File::open(path).map_err(JobError::Open)?;
            // Metadata from the open handle, not the name: it describes exactly what is being read.
            let metadata = file.metadata().map_err(JobError::Open)?;
            let size = regular_file_size(&metadata);
            let reader = Box::new(BufReader::with_capacity(INPUT_BUFFER, file));
            Ok(OpenedInput { reader, metadata: Some(metadata), size })
        }
    }
}

/// `--stats-file`: appends one record; the file is opened for each so that records of several runs
/// (a script's loop, `bench`'s children) accumulate in it.
fn append_record(path: &Path, record: &str) -> Result<(), JobError> {
    let append = || -> io::Result<()> {
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        file.write_all(record.as_bytes())
    };
    append().map_err(|source| JobError::StatsFile { path: path.to_owned(), source })
}

fn run_job(
    op: Operation,
    job: &Job,
    opts: &CodecOptions,
    sessions: &mut Sessions,
    stdout: &mut Option<StdoutSink>,
    show_progress: bool,
    reporter: &mut Reporter,
) -> Result<Stats, JobError> {
    let mut source = open(&job.input)?;
    let opts = &opts.for_input_size(source.size);
    let progress = StderrProgress::new(&job.input.display(), source.size, show_progress);
    let mut codec = |input: &mut dyn Read, output: &mut dyn Write| match op {
        Operation::Compress => {
            pipeline::compress_with(sessions.for_compression()?, input, output, opts, &progress)
        }
        _ => pipeline::decompress_with(sessions, input, output, opts, &progress),
    };

    let stats = match &job.output {
        Output::None => codec(&mut source.reader, &mut io::sink())?,
        Output::Stdout => {
            let sink = stdout.get_or_insert_with(StdoutSink::new);
            let stats = codec(&mut source.reader, sink)?;
            sink.flush().map_err(JobError::Stdout)?;
            stats
        }
        Output::Path { path, overwrite } => {
            let mut out = AtomicFile::create(path, job.copy_metadata)
                .map_err(|source| JobError::Create { path: path.clone(), source })?;
            let stats = codec(&mut source.reader, &mut out)?;
            let write_error = |source| JobError::Write { path: path.clone(), source };
            if let (true, Some(metadata)) = (job.copy_metadata, &source.metadata) {
                let file = out.file().map_err(write_error)?;
                if let Err(e) = copy_metadata(metadata, file) {
                    reporter.warning(
                        Some(&path.display().to_string()),
                        &format!("permissions and times not copied from the input: {}", one_line(&e)),
                    );
                }
            }
            out.commit(*overwrite).map_err(|source| {
                if source.kind() == io::ErrorKind::AlreadyExists {
                    JobError::Exists { path: path.clone() }
                } else {
                    JobError::Commit { path: path.clone(), source }
                }
            })?;
            if let (true, Input::Path(input)) = (job.remove_input, &job.input) {
                remove_input(input, path)?;
            }
            stats
        }
    };
    progress.finish();
    Ok(stats)
}

/// `--rm`: called only once the output is committed under its final name and synced.
fn remove_input(input: &Path, output: &Path) -> Result<(), JobError> {
    std::fs::remove_file(input).map_err(|source| JobError::RemoveInput { path: output.to_owned(), source })
}

fn list_job(job: &Job, opts: &CodecOptions) -> Result<ArchiveLine, JobError> {
    let mut file = match &job.input {
        Input::Stdin => stdio::seekable_stdin().map_err(JobError::NotSeekable)?,
        Input::Path(p) => File::open(p).map_err(JobError::Open)?,
    };
    let info = pipeline::list(&mut file, opts)?;
    Ok(ArchiveLine {
        name: job.input.display(),
        model: info.model,
        chunks: info.chunks,
        archive_bytes: info.archive_bytes,
        original_bytes: info.original_bytes,
        check: info.check,
        settings: info.settings,
    })
}

/// The `-v` line for one finished job: sizes in and out, ratio and bits per byte (compressed over
/// original, whichever way the job went), tokens and their rate, time.
pub fn stats_line(op: Operation, name: &str, s: &Stats) -> String {
    let (original, compressed) = match op {
        Operation::Compress => (s.input_bytes, s.output_bytes),
        _ => (s.output_bytes, s.input_bytes),
    };
    let ratio = listing::ratio(compressed, original);
    let fixed3 = |x: Option<f64>| x.map_or_else(|| "-".to_owned(), |v| format!("{v:.3}"));
    let rate = if s.seconds > 0.0 { format!("{:.0}", s.tokens as f64 / s.seconds) } else { "-".to_owned() };
    let verdict = if op == Operation::Test { "OK, " } else { "" };
    let mut line = format!(
        "{name}: {verdict}{} -> {} bytes, ratio {}, {} bits/byte, {} tokens, {rate} tokens/s, {:.2} s",
        s.input_bytes,
        s.output_bytes,
        fixed3(ratio),
        fixed3(ratio.map(|r| 8.0 * r)),
        s.tokens,
        s.seconds,
    );
    if op != Operation::Compress && s.lane_calls > 0 {
        let _ = write!(line, ", {:.2} tokens per engine call", s.tokens as f64 / s.lane_calls as f64);
        if s.drafted > 0 {
            let _ = write!(line, " ({} of {} drafted tokens right)", s.accepted, s.drafted);
        }
    }
    if op == Operation::Compress && s.windows > 0 {
        let plural = if s.windows == 1 { "" } else { "s" };
        let _ = write!(line, "{IDEAL_MARK}{:.0} bytes over {} window{plural}", s.ideal_bits / 8.0, s.windows);
    }
    line
}

/// Introduces the model's ideal code length in the compression `-v` line. For people only: programs
/// read the same figure from `--stats-file` records.
const IDEAL_MARK: &str = ", model ideal ";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_line_reads_the_same_both_ways() {
        let c = Stats { input_bytes: 1000, output_bytes: 250, tokens: 300, seconds: 0.5, ..Stats::default() };
        assert_eq!(
            stats_line(Operation::Compress, "a", &c),
            "a: 1000 -> 250 bytes, ratio 0.250, 2.000 bits/byte, 300 tokens, 600 tokens/s, 0.50 s"
        );
        let d = Stats { input_bytes: 250, output_bytes: 1000, tokens: 300, seconds: 0.0, ..Stats::default() };
        assert_eq!(
            stats_line(Operation::Test, "a.lz", &d),
            "a.lz: OK, 250 -> 1000 bytes, ratio 0.250, 2.000 bits/byte, 300 tokens, - tokens/s, 0.00 s"
        );
        let empty = Stats { input_bytes: 0, output_bytes: 20, tokens: 0, seconds: 0.1, ..Stats::default() };
        assert!(stats_line(Operation::Compress, "e", &empty).contains("ratio -, - bits/byte"));
        let drafts = Stats { tokens: 300, lane_calls: 200, drafted: 150, accepted: 100, ..d };
        assert!(
            stats_line(Operation::Decompress, "a.lz", &drafts)
                .ends_with(", 1.50 tokens per engine call (100 of 150 drafted tokens right)"),
            "{}",
            stats_line(Operation::Decompress, "a.lz", &drafts)
        );
    }
}
