//! Spreading one input or one archive over several machines (README, "Many machines"): the piece flags
//! of `c` (`--chunk-size`, `--chunks A..B`, `--part K/N`), `split`, `join` and `l --index`.
//!
//! Only `c` runs the model; `split`, `join` and `l --index` copy or read container bytes
//! ([`crate::container::scan`], [`crate::container::Joiner`]). Every refusal happens before anything is
//! written, and file outputs appear complete or not at all (all pieces of `split --parts` are committed
//! only once every one of them has been written).

use std::fs::File;
use std::io::{self, BufReader, Cursor, IsTerminal, Read, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};

use thiserror::Error;

use super::args::{Command, FileArgs, JoinArgs, SplitArgs};
use super::listing::{self, Align};
use super::plan::{Input, Item, PathProbe, Plan};
use super::report::{Reporter, is_broken_pipe};
use super::run;
use super::selection::{ChunkRange, Part};
use crate::container::{ChunkKind, FormatError, Joiner, Layout, SplitError, check_range, scan};
use crate::io::fs::{SystemPaths, regular_file_size};
use crate::io::stdio::{self, StdoutSink};
use crate::io::{AtomicFile, ReadSeek};
use crate::pipeline::chunk_spans;

/// Why a piece command did nothing (or, for a failed write, left nothing behind).
#[derive(Debug, Error)]
pub enum PieceError {
    #[error("{flag} applies to `llmzip c` only (to cut an archive into pieces, use `llmzip split`)")]
    NotCompress { flag: &'static str },
    #[error("--chunks and --part choose chunks of one input, but {count} were given; give one FILE")]
    OneInput { count: usize },
    #[error(
        "a piece is not the whole input's archive, so it gets no derived name; name it with -o PATH or use -c"
    )]
    PieceNeedsOutput,
    #[error(
        "--part counts the input's chunks before compressing, so the input must be a file, not stdin; \
         use --chunks A..B for stdin"
    )]
    PartOfStdin,
    #[error("join writes one archive; name it with -o PATH or use -c")]
    JoinNeedsOutput,
    #[error("--parts names its outputs after the archive, so the input must be a file; give its name")]
    PartsOfStdin,
    #[error("stdin ('-') was given {count} times; it can be read only once")]
    StdinTwice { count: usize },
    #[error(
        "compressed data not written to a terminal; redirect stdout to a file or pipe, or use -f to force"
    )]
    ToTerminal,
    #[error(
        "compressed data not read from a terminal; redirect stdin from a file or pipe, or use -f to force"
    )]
    FromTerminal,
    #[error("{} already exists; use -f to overwrite", path.display())]
    Exists { path: PathBuf },
    #[error("input and output are the same file ({})", path.display())]
    SameFile { path: PathBuf },
    #[error("cannot open")]
    Open(#[source] io::Error),
    #[error("cannot read stdin")]
    ReadStdin(#[source] io::Error),
    #[error("cannot create {}", path.display())]
    Create { path: PathBuf, source: io::Error },
    #[error("cannot write {}", path.display())]
    Write { path: PathBuf, source: io::Error },
    #[error("cannot move the finished output onto {}", path.display())]
    Commit { path: PathBuf, source: io::Error },
    #[error("cannot write to stdout")]
    Stdout(#[source] io::Error),
    #[error("listing reads chunk headers at their offsets, so stdin must be a file, not a pipe")]
    NotSeekable(#[source] io::Error),
    #[error(transparent)]
    Split(#[from] SplitError),
    #[error(transparent)]
    Format(#[from] FormatError),
}

/// Which chunks a piece holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Select {
    Chunks(ChunkRange),
    Part(Part),
}

impl Select {
    fn resolve(self, count: u64) -> Range<u64> {
        match self {
            Select::Chunks(c) => c.resolve(count),
            Select::Part(p) => p.resolve(count),
        }
    }
}

/// Refuses piece flags where they have no meaning, before anything is opened: on `d`, `t`, `l`, and on
/// `c` with several inputs, without a named output, or (`--part`) reading stdin.
pub fn check_flags(command: &Command) -> Result<(), PieceError> {
    let (args, compress) = match command {
        Command::Compress(a) => (a, true),
        Command::Decompress(a) | Command::Test(a) => (a, false),
        Command::List(l) => (&l.files, false),
        _ => return Ok(()),
    };
    let p = &args.pieces;
    if !compress {
        let flag = if p.part.is_some() {
            "--part"
        } else if p.chunks.is_some() {
            "--chunks"
        } else if p.chunk_size.is_some() {
            "--chunk-size (the archive records its chunks)"
        } else {
            return Ok(());
        };
        return Err(PieceError::NotCompress { flag });
    }
    if p.chunks.is_none() && p.part.is_none() {
        return Ok(());
    }
    if args.files.len() > 1 {
        return Err(PieceError::OneInput { count: args.files.len() });
    }
    if args.output.is_none() && !args.stdout {
        return Err(PieceError::PieceNeedsOutput);
    }
    let stdin = args.files.first().is_none_or(|f| f.as_os_str() == "-");
    if p.part.is_some() && stdin {
        return Err(PieceError::PartOfStdin);
    }
    Ok(())
}

/// `c` with piece flags: resolves `--part`/`--chunks` to chunk numbers (for a file, by cutting it
/// without the model, so a range it does not have is refused before the model is loaded), then runs
/// the plan as usual.
pub fn compress(plan: &Plan, args: &FileArgs, reporter: &mut Reporter) {
    let mut opts = plan.codec.clone();
    if let Some(size) = args.pieces.chunk_size {
        opts.fix_chunk_bytes(size);
    }
    let select = match (args.pieces.chunks, args.pieces.part) {
        (Some(c), _) => Some(Select::Chunks(c)),
        (None, Some(p)) => Some(Select::Part(p)),
        (None, None) => None,
    };
    if let (Some(select), [Item::Run(job)]) = (select, &plan.items[..]) {
        let range = match &job.input {
            Input::Path(path) => {
                // Cut as the compression of this file will cut it (its size chooses the chunk size).
                let counted = File::open(path).map_err(PieceError::Open).and_then(|f| {
                    let size = f.metadata().ok().as_ref().and_then(regular_file_size);
                    let chunk_bytes = opts.for_input_size(size).chunk_bytes;
                    chunk_spans(BufReader::new(f), chunk_bytes).map_err(PieceError::Open)
                });
                let count = match counted {
                    Ok(spans) => spans.len() as u64,
                    Err(e) => return reporter.error(Some(&job.input.display()), &e),
                };
                let range = select.resolve(count);
                if let Err(e) = check_range(&range, count) {
                    return reporter.error(Some(&job.input.display()), &e);
                }
                range
            }
            // Only --chunks reaches here (check_flags refuses --part of stdin); the pipeline checks the
            // range once it has seen the whole input. An open end is u64::MAX (CodecOptions::chunk_range).
            Input::Stdin => match select {
                Select::Chunks(c) => c.start..c.end.unwrap_or(u64::MAX),
                Select::Part(_) => unreachable!("check_flags refuses --part of stdin"),
            },
        };
        opts.chunk_range = Some(range);
    }
    run::execute_with(plan, opts, reporter);
}

/// Where a piece goes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Sink {
    Stdout,
    File(PathBuf),
}

fn input_of(path: Option<&Path>) -> Input {
    match path {
        Some(p) if p.as_os_str() != "-" => Input::Path(p.to_owned()),
        _ => Input::Stdin,
    }
}

/// `NAME` of `NAME.lz` (or the whole file name when it has no `.lz`), to name pieces after.
fn stem(archive: &Path) -> String {
    let s = archive.to_string_lossy();
    s.strip_suffix(crate::cli::plan::SUFFIX).unwrap_or(&s).to_owned()
}

/// `NAME.partK.lz`, K zero-padded to the width of N so that the names sort in order.
fn part_name(archive: &Path, k: u64, n: u64) -> PathBuf {
    let width = n.to_string().len();
    PathBuf::from(format!("{}.part{k:0width$}.lz", stem(archive)))
}

fn piece_name(archive: &Path, select: Select) -> PathBuf {
    match select {
        Select::Part(p) => part_name(archive, p.k, p.n),
        Select::Chunks(c) => {
            let end = c.end.map_or_else(|| "end".to_owned(), |e| e.to_string());
            PathBuf::from(format!("{}.chunks{}-{end}.lz", stem(archive), c.start))
        }
    }
}

fn explicit_sink(output: &Option<PathBuf>, stdout: bool) -> Option<Sink> {
    match output {
        Some(p) if p.as_os_str() == "-" => Some(Sink::Stdout),
        Some(p) => Some(Sink::File(p.clone())),
        None if stdout => Some(Sink::Stdout),
        None => None,
    }
}

/// The refusals every piece output shares: terminals, existing files, the input itself.
fn check_sinks(sinks: &[&Sink], inputs: &[Input], force: bool) -> Result<(), PieceError> {
    if !force {
        if sinks.contains(&&Sink::Stdout) && io::stdout().is_terminal() {
            return Err(PieceError::ToTerminal);
        }
        if inputs.contains(&Input::Stdin) && io::stdin().is_terminal() {
            return Err(PieceError::FromTerminal);
        }
    }
    for sink in sinks {
        let Sink::File(path) = sink else { continue };
        for input in inputs {
            if let Input::Path(i) = input
                && (i == path || SystemPaths.same_file(i, path))
            {
                return Err(PieceError::SameFile { path: path.clone() });
            }
        }
        if !force && SystemPaths.exists(path) {
            return Err(PieceError::Exists { path: path.clone() });
        }
    }
    Ok(())
}

/// A scanned input, readable at any offset. Stdin is read into memory (archives are small next to
/// their inputs, and a pipe cannot seek).
struct ScannedInput {
    name: String,
    reader: Box<dyn ReadSeek>,
    layout: Layout,
}

fn open_scanned(input: &Input) -> Result<ScannedInput, PieceError> {
    let mut reader: Box<dyn ReadSeek> = match input {
        Input::Path(p) => Box::new(BufReader::new(File::open(p).map_err(PieceError::Open)?)),
        Input::Stdin => {
            let mut bytes = Vec::new();
            stdio::stdin().read_to_end(&mut bytes).map_err(PieceError::ReadStdin)?;
            Box::new(Cursor::new(bytes))
        }
    };
    let layout = scan(&mut reader)?;
    Ok(ScannedInput { name: input.display(), reader, layout })
}

/// The header a piece starting at chunk `start` is written under: that chunk's archive's, or, for a
/// piece without chunks, the archive's at that place.
fn header_at(layout: &Layout, start: u64) -> &crate::container::Header {
    let archive = match layout.chunks.get(start as usize) {
        Some(c) => c.archive,
        None => layout.archives.iter().rposition(|a| a.chunks.end as u64 <= start).unwrap_or(0),
    };
    &layout.archives[archive].header
}

/// Opens a file output or stdout, writes through `write`, and hands back what is to be committed.
fn write_sink(
    sink: &Sink,
    write: impl FnOnce(&mut dyn Write) -> Result<(), PieceError>,
) -> Result<Option<(AtomicFile, PathBuf)>, PieceError> {
    match sink {
        Sink::Stdout => {
            let mut out = StdoutSink::new();
            write(&mut out)?;
            out.flush().map_err(PieceError::Stdout)?;
            Ok(None)
        }
        Sink::File(path) => {
            let mut file = AtomicFile::create(path, false)
                .map_err(|source| PieceError::Create { path: path.clone(), source })?;
            write(&mut file)?;
            Ok(Some((file, path.clone())))
        }
    }
}

fn commit(files: Vec<(AtomicFile, PathBuf)>, overwrite: bool) -> Result<(), PieceError> {
    for (file, path) in files {
        file.commit(overwrite).map_err(|source| {
            if source.kind() == io::ErrorKind::AlreadyExists {
                PieceError::Exists { path: path.clone() }
            } else {
                PieceError::Commit { path: path.clone(), source }
            }
        })?;
    }
    Ok(())
}

/// Reports `e` unless it is a closed stdout pipe (nobody reads any more: not an error, as for `d -c`).
fn report(reporter: &mut Reporter, subject: Option<&str>, e: PieceError) {
    if !is_broken_pipe(&e) {
        reporter.error(subject, &e);
    }
}

/// `llmzip split`.
pub fn split(args: &SplitArgs, reporter: &mut Reporter) {
    let input = input_of(args.archive.as_deref());
    let name = input.display();
    if let Err(e) = split_inner(args, &input) {
        report(reporter, Some(&name), e);
    }
}

fn split_inner(args: &SplitArgs, input: &Input) -> Result<(), PieceError> {
    let pieces: Vec<(Select, Sink)> = match (args.parts, args.chunks, args.part) {
        (Some(n), _, _) => {
            let Input::Path(p) = input else { return Err(PieceError::PartsOfStdin) };
            (1..=n).map(|k| (Select::Part(Part { k, n }), Sink::File(part_name(p, k, n)))).collect()
        }
        (None, chunks, part) => {
            let select = match (chunks, part) {
                (Some(c), _) => Select::Chunks(c),
                (None, Some(p)) => Select::Part(p),
                (None, None) => unreachable!("clap requires one of --chunks, --part, --parts"),
            };
            let sink = explicit_sink(&args.output, args.stdout).unwrap_or_else(|| match input {
                Input::Stdin => Sink::Stdout,
                Input::Path(p) => Sink::File(piece_name(p, select)),
            });
            vec![(select, sink)]
        }
    };
    check_sinks(&pieces.iter().map(|(_, s)| s).collect::<Vec<_>>(), std::slice::from_ref(input), args.force)?;
    let mut source = open_scanned(input)?;
    let count = source.layout.chunks.len() as u64;
    let ranges: Vec<Range<u64>> = pieces.iter().map(|(select, _)| select.resolve(count)).collect();
    for range in &ranges {
        check_range(range, count)?;
    }
    let mut files = Vec::new();
    for ((_, sink), range) in pieces.iter().zip(ranges) {
        let written = write_sink(sink, |w| {
            let ScannedInput { reader, layout, .. } = &mut source;
            let mut joiner = Joiner::new(w, header_at(layout, range.start))?;
            for chunk in range {
                joiner.copy(reader, layout, chunk as usize)?;
            }
            joiner.finish()?;
            Ok(())
        })?;
        files.extend(written);
    }
    commit(files, args.force)
}

/// `llmzip join`.
pub fn join(args: &JoinArgs, reporter: &mut Reporter) {
    if let Err((subject, e)) = join_inner(args) {
        report(reporter, subject.as_deref(), e);
    }
}

fn join_inner(args: &JoinArgs) -> Result<(), (Option<String>, PieceError)> {
    let usage = |e| (None, e);
    let sink = explicit_sink(&args.output, args.stdout).ok_or(usage(PieceError::JoinNeedsOutput))?;
    let inputs: Vec<Input> = if args.files.is_empty() {
        vec![Input::Stdin]
    } else {
        args.files.iter().map(|f| input_of(Some(f))).collect()
    };
    let stdin_count = inputs.iter().filter(|i| **i == Input::Stdin).count();
    if stdin_count > 1 {
        return Err(usage(PieceError::StdinTwice { count: stdin_count }));
    }
    check_sinks(&[&sink], &inputs, args.force).map_err(usage)?;
    let mut sources = Vec::with_capacity(inputs.len());
    for input in &inputs {
        sources.push(open_scanned(input).map_err(|e| (Some(input.display()), e))?);
    }
    // The header of the first chunk's archive (or, with no chunks at all, of the first archive).
    let first = sources.iter().find(|s| !s.layout.chunks.is_empty()).unwrap_or(&sources[0]);
    let header = header_at(&first.layout, 0).clone();
    let mut failed_in: Option<String> = None;
    let written = write_sink(&sink, |w| {
        let mut joiner = Joiner::new(w, &header)?;
        for source in &mut sources {
            for chunk in 0..source.layout.chunks.len() {
                joiner.copy(&mut source.reader, &source.layout, chunk).inspect_err(|_| {
                    failed_in = Some(source.name.clone());
                })?;
            }
        }
        joiner.finish()?;
        Ok(())
    })
    .map_err(|e| (failed_in.clone(), e))?;
    commit(written.into_iter().collect(), args.force).map_err(usage)
}

/// One chunk's line of `l --index`.
struct IndexRow {
    name: String,
    archive: usize,
    chunk: usize,
    kind: ChunkKind,
    offset: u64,
    bytes: u64,
    original_offset: u64,
    original_bytes: u32,
    tokens: u32,
}

/// `llmzip l --index`: every chunk of every archive with its offsets, read from the container alone.
pub fn list_index(plan: &Plan, robot: bool, reporter: &mut Reporter) {
    let mut rows = Vec::new();
    for item in &plan.items {
        let Some(job) = reporter.job(item) else { continue };
        let name = job.input.display();
        let scanned = match &job.input {
            Input::Stdin => stdio::seekable_stdin().map_err(PieceError::NotSeekable).and_then(|mut f| {
                let layout = scan(&mut f)?;
                Ok(layout)
            }),
            Input::Path(p) => {
                File::open(p).map_err(PieceError::Open).and_then(|f| Ok(scan(&mut BufReader::new(f))?))
            }
        };
        match scanned {
            Ok(layout) => rows.extend(layout.chunks.iter().enumerate().map(|(chunk, c)| IndexRow {
                name: name.clone(),
                archive: c.archive + 1,
                chunk,
                kind: c.entry.kind,
                offset: c.offset,
                bytes: c.encoded_len,
                original_offset: c.original_offset,
                original_bytes: c.entry.original_len,
                tokens: c.entry.tokens,
            })),
            Err(e) => reporter.error(Some(&name), &e),
        }
    }
    let text = if robot { index_robot(&rows) } else { index_human(&rows) };
    let mut out = StdoutSink::new();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush())
        && e.kind() != io::ErrorKind::BrokenPipe
    {
        reporter.error(None, &PieceError::Stdout(e));
    }
}

const INDEX_COLUMNS: [&str; 9] =
    ["chunk", "kind", "offset", "bytes", "original_offset", "original_bytes", "tokens", "archive", "name"];

fn index_cells(r: &IndexRow) -> [String; 9] {
    let kind = match r.kind {
        ChunkKind::Stored => "stored",
        ChunkKind::Coded => "coded",
    };
    [
        r.chunk.to_string(),
        kind.to_owned(),
        r.offset.to_string(),
        r.bytes.to_string(),
        r.original_offset.to_string(),
        r.original_bytes.to_string(),
        r.tokens.to_string(),
        r.archive.to_string(),
        r.name.clone(),
    ]
}

/// Tab-separated, a header line first; names escaped as in `l --robot`.
fn index_robot(rows: &[IndexRow]) -> String {
    listing::tab_separated(INDEX_COLUMNS, rows.iter().map(index_cells))
}

/// Aligned columns: numbers to the right, the name last and unpadded.
fn index_human(rows: &[IndexRow]) -> String {
    let lines: Vec<[String; 9]> =
        std::iter::once(INDEX_COLUMNS.map(str::to_owned)).chain(rows.iter().map(index_cells)).collect();
    let mut align = [Align::Right; 9];
    align[1] = Align::Left;
    listing::aligned(&lines, align)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn piece_names_sort_in_order_and_follow_the_archive() {
        assert_eq!(part_name(Path::new("big.txt.lz"), 3, 12), PathBuf::from("big.txt.part03.lz"));
        assert_eq!(part_name(Path::new("dir/x"), 1, 1), PathBuf::from("dir/x.part1.lz"));
        let c = Select::Chunks(ChunkRange { start: 2, end: None });
        assert_eq!(piece_name(Path::new("a.lz"), c), PathBuf::from("a.chunks2-end.lz"));
        let c = Select::Chunks(ChunkRange { start: 2, end: Some(4) });
        assert_eq!(piece_name(Path::new("a.lz"), c), PathBuf::from("a.chunks2-4.lz"));
    }

    #[test]
    fn index_robot_has_one_line_per_chunk_and_escapes_names() {
        let row = IndexRow {
            name: "a\tb".into(),
            archive: 1,
            chunk: 0,
            kind: ChunkKind::Coded,
            offset: 110,
            bytes: 70,
            original_offset: 0,
            original_bytes: 300,
            tokens: 80,
        };
        let out = index_robot(&[row]);
        assert_eq!(
            out,
            "chunk\tkind\toffset\tbytes\toriginal_offset\toriginal_bytes\ttokens\tarchive\tname\n\
             0\tcoded\t110\t70\t0\t300\t80\t1\ta\\tb\n"
        );
    }
}
