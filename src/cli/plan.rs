//! Turning parsed arguments into jobs: which input goes to which output, and what is refused.
//!
//! [`plan`] is pure: everything it needs to know about the outside world (terminals, which paths exist)
//! comes in through [`Env`], so every naming, overwrite and terminal rule is unit-tested without a
//! process or a filesystem. The rules follow gzip, xz and zstd (ARCHITECTURE.md section 6).
//!
//! Two kinds of refusal come out of here:
//! - a [`UsageError`] when the command as a whole makes no sense (`-c` with `-o`, compressed data to a
//!   terminal, ...): nothing is done at all and the exit status is 1;
//! - a [`Notice`] in place of one file's job (unknown suffix, output exists, ...): the other files are
//!   still processed and the exit status reflects the worst notice (warning 2, error 1).

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

use thiserror::Error;

use super::args::{CodecArgs, Command, FileArgs};
use crate::mix::MixConfig;
use crate::pipeline::CodecOptions;
use crate::pipeline::level::{self, DEFAULT_LEVEL};
use crate::pipeline::params::{default_overlap, default_slide};

/// The suffix of llmzip archives.
pub const SUFFIX: &str = ".lz";

pub use crate::io::fs::{PathKind, PathProbe};

/// The outside world as seen by [`plan`].
pub struct Env<'a> {
    pub stdin_is_terminal: bool,
    pub stdout_is_terminal: bool,
    /// Used when `--threads` is not given; at least 1.
    pub available_threads: usize,
    /// [`CodecOptions::speculate`]: off only when `LLMZIP_SPECULATE=0` (there is no flag for it).
    pub speculate: bool,
    pub paths: &'a dyn PathProbe,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Compress,
    Decompress,
    Test,
    /// `robot`: tab-separated output for scripts instead of an aligned table.
    List {
        robot: bool,
    },
}

impl Operation {
    /// Whether this operation reads compressed data (so its input must not be a terminal).
    fn reads_archives(self) -> bool {
        !matches!(self, Operation::Compress)
    }

    /// Whether this operation writes a data stream (`t` and `l` write none).
    fn writes_data(self) -> bool {
        matches!(self, Operation::Compress | Operation::Decompress)
    }

    fn name(self) -> &'static str {
        match self {
            Operation::Compress => "compress",
            Operation::Decompress => "decompress",
            Operation::Test => "test",
            Operation::List { .. } => "list",
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    Stdin,
    Path(PathBuf),
}

impl Input {
    /// How messages name this input.
    pub fn display(&self) -> String {
        match self {
            Input::Stdin => "(stdin)".to_owned(),
            Input::Path(p) => p.display().to_string(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Stdout,
    /// Written to a temporary file next to `path` and renamed onto it once complete.
    /// `overwrite`: an existing file at `path` may be replaced (`-f`); without it the rename refuses
    /// to replace one that appeared after planning.
    Path {
        path: PathBuf,
        overwrite: bool,
    },
    /// `t` and `l` write no data.
    None,
}

/// One input to process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub input: Input,
    pub output: Output,
    /// `--rm`: remove the input after the output has been committed. Only ever set for a path input
    /// with a path output.
    pub remove_input: bool,
    /// Copy permissions and modification time from the input to the output. Only ever set for a path
    /// input with a path output.
    pub copy_metadata: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Exit status 2; hidden by `-q`.
    Warning,
    /// Exit status 1; always shown.
    Error,
}

/// Why one input is not processed. Printed as `llmzip: <subject>: <message>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub severity: Severity,
    /// The file the message is about (the input, or the output when that is the problem).
    pub subject: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    Run(Job),
    Skip(Notice),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verbosity {
    /// `-q`: errors only.
    Quiet,
    Normal,
    /// `-v` given this many times (at least 1): statistics per file.
    Verbose(u8),
}

/// Everything the act layer needs, in the order the user gave the files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub operation: Operation,
    pub items: Vec<Item>,
    /// The codec's options with every default resolved, as [`codec_options`] makes them.
    pub codec: CodecOptions,
    pub verbosity: Verbosity,
    /// `--stats-file`: where each finished job appends its statistics record.
    pub stats_file: Option<PathBuf>,
}

/// A command that is refused as a whole: nothing is read or written.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum UsageError {
    #[error("-q and -v contradict each other; give one of them")]
    QuietAndVerbose,
    #[error("-k (keep the input) and --rm (remove it) contradict each other; give one of them")]
    KeepAndRemove,
    #[error("-c writes to stdout and -o to a file; give one of them")]
    StdoutAndOutput,
    #[error(
        "-o names one output but {count} inputs were given; use -c to concatenate, or one command per file"
    )]
    OutputWithSeveralInputs { count: usize },
    #[error("stdin ('-') was given {count} times; it can be read only once")]
    StdinTwice { count: usize },
    #[error("{operation} writes no output, so -o has no meaning here")]
    OutputWithoutData { operation: Operation },
    #[error("{operation} writes no output, so --rm would remove the input for nothing; drop --rm")]
    RemoveWithoutData { operation: Operation },
    #[error("--rm removes input files, but the input is stdin; name the input files, or drop --rm")]
    RemoveStdin,
    #[error(
        "--rm removes the input only after a file output is complete, not when writing to stdout; drop --rm or -c"
    )]
    RemoveWithStdout,
    #[error("--overlap {overlap} must be less than --context {context}")]
    OverlapTooLarge { overlap: u32, context: u32 },
    #[error("--slide {slide} must be less than --context {context}")]
    SlideTooLarge { slide: u32, context: u32 },
    #[error(
        "--overlap applies to windows, not to a sliding cache (--slide {slide}); give --slide 0 or drop --overlap"
    )]
    OverlapWithSlide { slide: u32 },
    #[error(
        "compressed data not written to a terminal; redirect stdout to a file or pipe, or use -f to force"
    )]
    CompressedToTerminal,
    #[error(
        "compressed data not read from a terminal; redirect stdin from a file or pipe, or use -f to force"
    )]
    CompressedFromTerminal,
}

/// The operation and its flags, for the commands that work on files (`c`, `d`, `t`, `l`).
pub fn file_operation(command: &Command) -> Option<(Operation, &FileArgs)> {
    match command {
        Command::Compress(a) => Some((Operation::Compress, a)),
        Command::Decompress(a) => Some((Operation::Decompress, a)),
        Command::Test(a) => Some((Operation::Test, a)),
        Command::List(l) => Some((Operation::List { robot: l.robot }, &l.files)),
        Command::Models(_) | Command::Eval(_) | Command::Bench(_) => None,
        Command::Split(_) | Command::Join(_) => None,
    }
}

/// The pipeline's options for `codec`, with every default resolved:
/// - `context` in 16..=8192 (clap checks the range; the model's own limit is checked when the session
///   opens);
/// - `slide` always `Some`: 0 selects the window schedule, the only one that uses `overlap`;
/// - `mix` the level's mixer, or [`MixConfig::OFF`] with `--no-mix`;
/// - `threads` at least 1, and no more than `env.available_threads`;
/// - for compression, `overlap` and `slide` less than `context`. A decoder is not held to the schedule
///   rules: it reads its schedule from the archive.
///
/// What the CLI has no flag for (chunk size, lanes, ...) keeps the pipeline's defaults.
pub fn codec_options(operation: Operation, codec: &CodecArgs, env: &Env) -> Result<CodecOptions, UsageError> {
    // The level fills in what no flag names; it shapes only what compression chooses (a decoder reads
    // every setting from the archive, and its model from the archive unless --model names a copy).
    let level = codec.level.level().filter(|_| operation == Operation::Compress).unwrap_or(DEFAULT_LEVEL);
    let preset = level::preset(level).expect("LevelArgs yields levels 1..=9 only");
    let context = codec.run.context.unwrap_or(preset.context);
    let overlap = match codec.overlap {
        // Only compression uses the window settings (a decoder reads them from the archive).
        Some(overlap) if overlap >= context && operation == Operation::Compress => {
            return Err(UsageError::OverlapTooLarge { overlap, context });
        }
        Some(overlap) => overlap,
        None => default_overlap(context),
    };
    // `--overlap` alone keeps the window schedule it always meant; with a sliding cache it has no use.
    let slide = match (codec.slide, codec.overlap) {
        (Some(slide), _) if slide >= context && operation == Operation::Compress => {
            return Err(UsageError::SlideTooLarge { slide, context });
        }
        (Some(slide), Some(_)) if slide > 0 && operation == Operation::Compress => {
            return Err(UsageError::OverlapWithSlide { slide });
        }
        (Some(slide), _) => slide,
        (None, Some(_)) => 0,
        (None, None) if codec.run.context.is_none() => preset.slide,
        (None, None) => default_slide(context),
    };
    let preset_model = (operation == Operation::Compress).then_some(preset.model).flatten();
    Ok(CodecOptions {
        model: codec.run.model.clone().or_else(|| preset_model.map(str::to_string)),
        context,
        overlap,
        slide: Some(slide),
        mix: if codec.no_mix { MixConfig::OFF } else { preset.mix },
        // More workers than cores only spin: `--threads 1024` on 2 cores took minutes for 14 bytes.
        threads: codec.run.threads.unwrap_or(env.available_threads).min(env.available_threads).max(1),
        // The engine reads LLMZIP_KERNEL itself; the CLI has no flag for it.
        kernel: None,
        speculate: env.speculate,
        // A file is cut into chunks for the decoder's lanes (`--chunk-size` switches this off).
        fit_chunks_to_size: true,
        ..CodecOptions::default()
    })
}

/// Turns `args` for `operation` into a [`Plan`], or refuses the whole command.
pub fn plan(operation: Operation, args: &FileArgs, env: &Env) -> Result<Plan, UsageError> {
    let verbosity = match (args.quiet, args.verbose) {
        (true, 0) => Verbosity::Quiet,
        (true, _) => return Err(UsageError::QuietAndVerbose),
        (false, 0) => Verbosity::Normal,
        (false, n) => Verbosity::Verbose(n),
    };
    if args.keep && args.remove {
        return Err(UsageError::KeepAndRemove);
    }
    if args.stdout && args.output.is_some() {
        return Err(UsageError::StdoutAndOutput);
    }
    if !operation.writes_data() {
        if args.output.is_some() {
            return Err(UsageError::OutputWithoutData { operation });
        }
        if args.remove {
            return Err(UsageError::RemoveWithoutData { operation });
        }
    }

    let inputs: Vec<Input> = if args.files.is_empty() {
        vec![Input::Stdin]
    } else {
        args.files
            .iter()
            .map(|f| if f.as_os_str() == "-" { Input::Stdin } else { Input::Path(f.clone()) })
            .collect()
    };
    let stdin_count = inputs.iter().filter(|i| **i == Input::Stdin).count();
    if stdin_count > 1 {
        return Err(UsageError::StdinTwice { count: stdin_count });
    }
    if args.output.is_some() && inputs.len() > 1 {
        return Err(UsageError::OutputWithSeveralInputs { count: inputs.len() });
    }

    // Where data goes when no name is derived: `-o -` is stdout, like `-c`.
    let explicit_output: Option<Output> = match &args.output {
        Some(p) if p.as_os_str() == "-" => Some(Output::Stdout),
        Some(p) => Some(Output::Path { path: p.clone(), overwrite: args.force }),
        None if args.stdout => Some(Output::Stdout),
        None => None,
    };
    if args.remove {
        if stdin_count > 0 {
            return Err(UsageError::RemoveStdin);
        }
        if explicit_output == Some(Output::Stdout) {
            return Err(UsageError::RemoveWithStdout);
        }
    }

    let codec = codec_options(operation, &args.codec, env)?;

    let items: Vec<Item> = inputs
        .into_iter()
        .map(|input| plan_one(operation, args, explicit_output.as_ref(), input, env))
        .collect();

    if !args.force {
        let jobs = || items.iter().filter_map(|i| if let Item::Run(j) = i { Some(j) } else { None });
        if operation == Operation::Compress
            && env.stdout_is_terminal
            && jobs().any(|j| j.output == Output::Stdout)
        {
            return Err(UsageError::CompressedToTerminal);
        }
        if operation.reads_archives() && env.stdin_is_terminal && jobs().any(|j| j.input == Input::Stdin) {
            return Err(UsageError::CompressedFromTerminal);
        }
    }

    Ok(Plan { operation, items, codec, verbosity, stats_file: args.stats_file.clone() })
}

fn plan_one(
    operation: Operation,
    args: &FileArgs,
    explicit: Option<&Output>,
    input: Input,
    env: &Env,
) -> Item {
    let output = if !operation.writes_data() {
        Output::None
    } else if let Some(out) = explicit {
        out.clone()
    } else {
        match &input {
            Input::Stdin => Output::Stdout,
            Input::Path(p) => match derived_output(operation, p) {
                Ok(path) => Output::Path { path, overwrite: args.force },
                Err(message) => return skip(Severity::Warning, p, message),
            },
        }
    };

    let path_input = match &input {
        Input::Stdin => None,
        Input::Path(p) => {
            match env.paths.kind(p) {
                PathKind::File => {}
                PathKind::Missing => {
                    return skip(Severity::Error, p, "no such file or directory".into());
                }
                PathKind::Dir => {
                    return skip(Severity::Warning, p, "is a directory; ignored".into());
                }
                PathKind::Other if !args.force => {
                    return skip(
                        Severity::Warning,
                        p,
                        "is not a regular file; ignored (use -f to read it anyway)".into(),
                    );
                }
                PathKind::Other => {}
            }
            Some(p)
        }
    };

    if let Output::Path { path: out, .. } = &output {
        if let Some(inp) = path_input
            && (out == inp || env.paths.same_file(inp, out))
        {
            return skip(
                Severity::Error,
                inp,
                format!("input and output are the same file ({})", out.display()),
            );
        }
        if env.paths.exists(out) {
            if env.paths.kind(out) == PathKind::Dir {
                return skip(Severity::Error, out, "output is a directory; name a file with -o".into());
            }
            if !args.force {
                return skip(Severity::Error, out, "already exists; use -f to overwrite".into());
            }
        }
    }

    let file_to_file = path_input.is_some() && matches!(output, Output::Path { .. });
    Item::Run(Job { input, output, remove_input: args.remove && file_to_file, copy_metadata: file_to_file })
}

/// The output name gzip users expect: `c FILE` -> `FILE.lz`, `d FILE.lz` -> `FILE`; `Err` holds the
/// warning when the name cannot be derived.
fn derived_output(operation: Operation, input: &Path) -> Result<PathBuf, String> {
    // `Path::extension` is `None` for a bare ".lz", which therefore has no name left to decompress to.
    let has_suffix = input.extension().is_some_and(|e| e == &SUFFIX[1..]);
    match (operation, has_suffix) {
        (Operation::Compress, true) => {
            Err(format!("already has the {SUFFIX} suffix; unchanged (use -c or -o to compress it again)"))
        }
        (Operation::Compress, false) => {
            let mut name = OsString::from(input.as_os_str());
            name.push(SUFFIX);
            Ok(PathBuf::from(name))
        }
        (_, true) => Ok(input.with_extension("")),
        (_, false) => Err(format!(
            "unknown suffix (expected {SUFFIX}); ignored (name the output with -o PATH, or use -c for stdout)"
        )),
    }
}

fn skip(severity: Severity, subject: &Path, message: String) -> Item {
    Item::Skip(Notice { severity, subject: subject.display().to_string(), message })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::args::RunArgs;
    use std::collections::HashMap;

    /// A fixed picture of the filesystem: paths and what they are, plus pairs that are the same file.
    #[derive(Default)]
    struct Fake {
        kinds: HashMap<PathBuf, PathKind>,
        same: Vec<(PathBuf, PathBuf)>,
    }

    impl Fake {
        fn with(files: &[&str]) -> Self {
            let mut f = Fake::default();
            for name in files {
                f.kinds.insert(name.into(), PathKind::File);
            }
            f
        }
        fn kind_of(mut self, name: &str, kind: PathKind) -> Self {
            self.kinds.insert(name.into(), kind);
            self
        }
        fn linked(mut self, a: &str, b: &str) -> Self {
            self.same.push((a.into(), b.into()));
            self
        }
    }

    impl PathProbe for Fake {
        fn kind(&self, path: &Path) -> PathKind {
            self.kinds.get(path).copied().unwrap_or(PathKind::Missing)
        }
        fn exists(&self, path: &Path) -> bool {
            self.kind(path) != PathKind::Missing
        }
        fn same_file(&self, a: &Path, b: &Path) -> bool {
            self.same.iter().any(|(x, y)| (x == a && y == b) || (x == b && y == a))
        }
    }

    fn env(fs: &Fake) -> Env<'_> {
        Env {
            stdin_is_terminal: false,
            stdout_is_terminal: false,
            available_threads: 4,
            speculate: true,
            paths: fs,
        }
    }

    fn files(names: &[&str]) -> FileArgs {
        FileArgs { files: names.iter().map(PathBuf::from).collect(), ..FileArgs::default() }
    }

    fn job(input: Input, output: Output) -> Item {
        let file_to_file = matches!(input, Input::Path(_)) && matches!(output, Output::Path { .. });
        Item::Run(Job { input, output, remove_input: false, copy_metadata: file_to_file })
    }

    fn path_in(p: &str) -> Input {
        Input::Path(p.into())
    }

    fn path_out(p: &str) -> Output {
        Output::Path { path: p.into(), overwrite: false }
    }

    fn items(op: Operation, args: &FileArgs, fs: &Fake) -> Vec<Item> {
        plan(op, args, &env(fs)).unwrap().items
    }

    fn only_notice(op: Operation, args: &FileArgs, fs: &Fake) -> Notice {
        match items(op, args, fs).as_slice() {
            [Item::Skip(n)] => n.clone(),
            other => panic!("expected one notice, got {other:?}"),
        }
    }

    const C: Operation = Operation::Compress;
    const D: Operation = Operation::Decompress;
    const T: Operation = Operation::Test;
    const L: Operation = Operation::List { robot: false };

    #[test]
    fn compress_appends_the_suffix_and_decompress_removes_it() {
        let fs = Fake::with(&["a.txt", "dir/b.lz"]);
        assert_eq!(items(C, &files(&["a.txt"]), &fs), vec![job(path_in("a.txt"), path_out("a.txt.lz"))]);
        assert_eq!(items(D, &files(&["dir/b.lz"]), &fs), vec![job(path_in("dir/b.lz"), path_out("dir/b"))]);
    }

    #[test]
    fn several_files_keep_their_order() {
        let fs = Fake::with(&["a", "b", "c"]);
        let got = items(C, &files(&["b", "a", "c"]), &fs);
        let want: Vec<Item> =
            ["b", "a", "c"].iter().map(|n| job(path_in(n), path_out(&format!("{n}.lz")))).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn compressing_an_lz_file_is_a_warning_and_skips_only_that_file() {
        let fs = Fake::with(&["x.lz", "y"]);
        let got = items(C, &files(&["x.lz", "y"]), &fs);
        assert_eq!(got.len(), 2);
        let Item::Skip(n) = &got[0] else { panic!("{got:?}") };
        assert_eq!(n.severity, Severity::Warning);
        assert_eq!(n.subject, "x.lz");
        assert!(n.message.contains("already has the .lz suffix"), "{}", n.message);
        assert_eq!(got[1], job(path_in("y"), path_out("y.lz")));
    }

    #[test]
    fn lz_file_compresses_with_c_or_o() {
        let fs = Fake::with(&["x.lz"]);
        let mut a = files(&["x.lz"]);
        a.stdout = true;
        assert_eq!(items(C, &a, &fs), vec![job(path_in("x.lz"), Output::Stdout)]);
        let mut a = files(&["x.lz"]);
        a.output = Some("x.lz.lz".into());
        assert_eq!(items(C, &a, &fs), vec![job(path_in("x.lz"), path_out("x.lz.lz"))]);
    }

    #[test]
    fn decompressing_an_unknown_suffix_warns_with_a_hint_to_use_o() {
        for name in ["notes.txt", ".lz", "dir/.lz", "x.LZ", "x.lzz"] {
            let fs = Fake::with(&[name]);
            let n = only_notice(D, &files(&[name]), &fs);
            assert_eq!(n.severity, Severity::Warning, "{name}");
            assert_eq!(n.subject, name);
            assert!(n.message.contains("unknown suffix") && n.message.contains("-o"), "{}", n.message);
        }
    }

    #[test]
    fn unknown_suffix_decompresses_with_c_or_o() {
        let fs = Fake::with(&["blob"]);
        let mut a = files(&["blob"]);
        a.stdout = true;
        assert_eq!(items(D, &a, &fs), vec![job(path_in("blob"), Output::Stdout)]);
        let mut a = files(&["blob"]);
        a.output = Some("plain".into());
        assert_eq!(items(D, &a, &fs), vec![job(path_in("blob"), path_out("plain"))]);
    }

    #[test]
    fn suffix_is_judged_on_the_file_name_not_the_directory() {
        let fs = Fake::with(&["d.lz/file"]);
        assert_eq!(
            items(C, &files(&["d.lz/file"]), &fs),
            vec![job(path_in("d.lz/file"), path_out("d.lz/file.lz"))]
        );
        let n = only_notice(D, &files(&["d.lz/file"]), &fs);
        assert!(n.message.contains("unknown suffix"));
    }

    #[test]
    fn no_file_or_dash_means_stdin_to_stdout() {
        let fs = Fake::default();
        assert_eq!(items(C, &files(&[]), &fs), vec![job(Input::Stdin, Output::Stdout)]);
        assert_eq!(items(D, &files(&["-"]), &fs), vec![job(Input::Stdin, Output::Stdout)]);
        assert_eq!(items(T, &files(&[]), &fs), vec![job(Input::Stdin, Output::None)]);
    }

    #[test]
    fn stdin_mixes_with_files() {
        let fs = Fake::with(&["a"]);
        assert_eq!(
            items(C, &files(&["a", "-"]), &fs),
            vec![job(path_in("a"), path_out("a.lz")), job(Input::Stdin, Output::Stdout)]
        );
    }

    #[test]
    fn stdin_twice_is_refused() {
        let fs = Fake::default();
        assert_eq!(plan(C, &files(&["-", "-"]), &env(&fs)), Err(UsageError::StdinTwice { count: 2 }));
    }

    #[test]
    fn dash_c_sends_every_file_to_stdout() {
        let fs = Fake::with(&["a", "b"]);
        let mut a = files(&["a", "b"]);
        a.stdout = true;
        assert_eq!(
            items(C, &a, &fs),
            vec![job(path_in("a"), Output::Stdout), job(path_in("b"), Output::Stdout)]
        );
    }

    #[test]
    fn dash_o_names_the_output_and_dash_o_dash_is_stdout() {
        let fs = Fake::with(&["a"]);
        let mut a = files(&["a"]);
        a.output = Some("out/z".into());
        assert_eq!(items(C, &a, &fs), vec![job(path_in("a"), path_out("out/z"))]);
        a.output = Some("-".into());
        assert_eq!(items(C, &a, &fs), vec![job(path_in("a"), Output::Stdout)]);
        let mut a = files(&[]);
        a.output = Some("z.lz".into());
        assert_eq!(items(C, &a, &fs), vec![job(Input::Stdin, path_out("z.lz"))]);
    }

    #[test]
    fn dash_o_with_several_inputs_is_refused() {
        let fs = Fake::with(&["a", "b"]);
        let mut a = files(&["a", "b"]);
        a.output = Some("z".into());
        assert_eq!(plan(C, &a, &env(&fs)), Err(UsageError::OutputWithSeveralInputs { count: 2 }));
        let mut a = files(&["a", "-"]);
        a.output = Some("z".into());
        assert_eq!(plan(D, &a, &env(&fs)), Err(UsageError::OutputWithSeveralInputs { count: 2 }));
    }

    #[test]
    fn dash_c_with_dash_o_is_refused() {
        let fs = Fake::with(&["a"]);
        let mut a = files(&["a"]);
        a.stdout = true;
        a.output = Some("z".into());
        assert_eq!(plan(C, &a, &env(&fs)), Err(UsageError::StdoutAndOutput));
    }

    #[test]
    fn existing_output_is_an_error_naming_the_output_unless_forced() {
        let fs = Fake::with(&["a", "a.lz", "b"]);
        let got = items(C, &files(&["a", "b"]), &fs);
        let Item::Skip(n) = &got[0] else { panic!("{got:?}") };
        assert_eq!(n.severity, Severity::Error);
        assert_eq!(n.subject, "a.lz");
        assert_eq!(n.message, "already exists; use -f to overwrite");
        assert_eq!(got[1], job(path_in("b"), path_out("b.lz")));

        let mut a = files(&["a"]);
        a.force = true;
        assert_eq!(
            items(C, &a, &fs),
            vec![job(path_in("a"), Output::Path { path: "a.lz".into(), overwrite: true })]
        );
    }

    #[test]
    fn existing_output_from_stdin_is_also_refused() {
        let fs = Fake::with(&["z.lz"]);
        let mut a = files(&[]);
        a.output = Some("z.lz".into());
        let n = only_notice(C, &a, &fs);
        assert_eq!((n.severity, n.subject.as_str()), (Severity::Error, "z.lz"));
        a.force = true;
        assert_eq!(
            items(C, &a, &fs),
            vec![job(Input::Stdin, Output::Path { path: "z.lz".into(), overwrite: true })]
        );
    }

    #[test]
    fn dangling_link_or_other_entry_at_the_output_counts_as_existing() {
        let fs = Fake::with(&["a"]).kind_of("a.lz", PathKind::Other);
        let n = only_notice(C, &files(&["a"]), &fs);
        assert!(n.message.contains("already exists"));
    }

    #[test]
    fn directory_at_the_output_is_refused_even_with_force() {
        let fs = Fake::with(&["a"]).kind_of("a.lz", PathKind::Dir);
        let mut a = files(&["a"]);
        a.force = true;
        let n = only_notice(C, &a, &fs);
        assert_eq!(n.severity, Severity::Error);
        assert!(n.message.contains("is a directory"), "{}", n.message);
    }

    #[test]
    fn input_equal_to_output_is_refused_even_with_force() {
        let fs = Fake::with(&["a", "b.lz", "b"]).linked("b.lz", "b");
        for force in [false, true] {
            let mut a = files(&["a"]);
            a.output = Some("a".into());
            a.force = force;
            let n = only_notice(C, &a, &fs);
            assert_eq!(n.severity, Severity::Error);
            assert!(n.message.contains("same file"), "{}", n.message);

            // A hard link (or `./b` vs `b`) is caught through the probe, not the spelling.
            let mut a = files(&["b.lz"]);
            a.force = force;
            let n = only_notice(D, &a, &fs);
            assert!(n.message.contains("same file"), "{}", n.message);
        }
    }

    #[test]
    fn missing_input_is_an_error_and_others_still_run() {
        let fs = Fake::with(&["b"]);
        let got = items(C, &files(&["nope", "b"]), &fs);
        let Item::Skip(n) = &got[0] else { panic!("{got:?}") };
        assert_eq!((n.severity, n.subject.as_str()), (Severity::Error, "nope"));
        assert!(n.message.contains("no such file"));
        assert_eq!(got[1], job(path_in("b"), path_out("b.lz")));
    }

    #[test]
    fn directories_are_skipped_with_a_warning() {
        let fs = Fake::default().kind_of("d", PathKind::Dir);
        for op in [C, T, L] {
            let n = only_notice(op, &files(&["d"]), &fs);
            assert_eq!(n.severity, Severity::Warning);
            assert!(n.message.contains("directory"));
        }
    }

    #[test]
    fn special_files_need_force() {
        let fs = Fake::default().kind_of("fifo", PathKind::Other);
        let n = only_notice(C, &files(&["fifo"]), &fs);
        assert_eq!(n.severity, Severity::Warning);
        assert!(n.message.contains("-f"));
        let mut a = files(&["fifo"]);
        a.force = true;
        assert_eq!(
            items(C, &a, &fs),
            vec![job(path_in("fifo"), Output::Path { path: "fifo.lz".into(), overwrite: true })]
        );
    }

    #[test]
    fn test_and_list_write_nothing_and_accept_any_name() {
        let fs = Fake::with(&["x.bin", "y.lz"]);
        for op in [T, L] {
            assert_eq!(
                items(op, &files(&["x.bin", "y.lz"]), &fs),
                vec![job(path_in("x.bin"), Output::None), job(path_in("y.lz"), Output::None)]
            );
            // -c is harmless there (gzip -tc is common); -o and --rm are mistakes.
            let mut a = files(&["y.lz"]);
            a.stdout = true;
            assert_eq!(items(op, &a, &fs), vec![job(path_in("y.lz"), Output::None)]);
            let mut a = files(&["y.lz"]);
            a.output = Some("z".into());
            assert_eq!(plan(op, &a, &env(&fs)), Err(UsageError::OutputWithoutData { operation: op }));
            let mut a = files(&["y.lz"]);
            a.remove = true;
            assert_eq!(plan(op, &a, &env(&fs)), Err(UsageError::RemoveWithoutData { operation: op }));
        }
    }

    #[test]
    fn rm_marks_file_to_file_jobs_only() {
        let fs = Fake::with(&["a", "b.lz"]);
        let mut a = files(&["a"]);
        a.remove = true;
        let want = Item::Run(Job {
            input: path_in("a"),
            output: path_out("a.lz"),
            remove_input: true,
            copy_metadata: true,
        });
        assert_eq!(items(C, &a, &fs), vec![want]);
        let mut a = files(&["b.lz"]);
        a.remove = true;
        a.output = Some("elsewhere".into());
        let Item::Run(j) = &items(D, &a, &fs)[0] else { panic!() };
        assert!(j.remove_input);
    }

    #[test]
    fn rm_with_stdin_or_stdout_is_refused() {
        let fs = Fake::with(&["a"]);
        let mut a = files(&[]);
        a.remove = true;
        assert_eq!(plan(C, &a, &env(&fs)), Err(UsageError::RemoveStdin));
        let mut a = files(&["a", "-"]);
        a.remove = true;
        assert_eq!(plan(C, &a, &env(&fs)), Err(UsageError::RemoveStdin));
        let mut a = files(&["a"]);
        a.remove = true;
        a.stdout = true;
        assert_eq!(plan(C, &a, &env(&fs)), Err(UsageError::RemoveWithStdout));
        let mut a = files(&["a"]);
        a.remove = true;
        a.output = Some("-".into());
        assert_eq!(plan(C, &a, &env(&fs)), Err(UsageError::RemoveWithStdout));
    }

    #[test]
    fn keep_is_a_no_op_but_contradicts_rm() {
        let fs = Fake::with(&["a"]);
        let mut a = files(&["a"]);
        a.keep = true;
        assert_eq!(items(C, &a, &fs), vec![job(path_in("a"), path_out("a.lz"))]);
        a.remove = true;
        assert_eq!(plan(C, &a, &env(&fs)), Err(UsageError::KeepAndRemove));
    }

    #[test]
    fn compressed_data_is_never_written_to_a_terminal_without_force() {
        let fs = Fake::with(&["a"]);
        let tty = Env { stdout_is_terminal: true, ..env(&fs) };
        assert_eq!(plan(C, &files(&[]), &tty), Err(UsageError::CompressedToTerminal));
        let mut a = files(&["a"]);
        a.stdout = true;
        assert_eq!(plan(C, &a, &tty), Err(UsageError::CompressedToTerminal));
        a.force = true;
        assert!(plan(C, &a, &tty).is_ok());
        // Files, and decompressed data, may go where the terminal is.
        assert!(plan(C, &files(&["a"]), &tty).is_ok());
        assert!(plan(D, &files(&[]), &tty).is_ok());
        // A job that is skipped anyway does not trigger the refusal.
        let mut a = files(&["a.lz"]);
        a.stdout = true;
        assert!(plan(C, &a, &tty).is_ok_and(|p| matches!(p.items[0], Item::Skip(_))));
    }

    #[test]
    fn compressed_data_is_never_read_from_a_terminal_without_force() {
        let fs = Fake::with(&["a.lz"]);
        let tty = Env { stdin_is_terminal: true, ..env(&fs) };
        for op in [D, T, L] {
            assert_eq!(plan(op, &files(&[]), &tty), Err(UsageError::CompressedFromTerminal), "{op}");
            assert_eq!(plan(op, &files(&["a.lz", "-"]), &tty), Err(UsageError::CompressedFromTerminal));
            assert!(plan(op, &files(&["a.lz"]), &tty).is_ok());
            let mut a = files(&[]);
            a.force = true;
            assert!(plan(op, &a, &tty).is_ok());
        }
        // Plain text typed at a terminal may be compressed.
        let tty_in = Env { stdin_is_terminal: true, ..env(&fs) };
        let mut a = files(&[]);
        a.output = Some("typed.lz".into());
        assert!(plan(C, &a, &tty_in).is_ok());
    }

    #[test]
    fn codec_options_resolve_defaults() {
        let fs = Fake::default();
        let fields = |o: &CodecOptions| (o.model.clone(), o.context, o.overlap, o.slide, o.mix, o.threads);
        let p = plan(C, &files(&[]), &env(&fs)).unwrap();
        assert_eq!(fields(&p.codec), (None, 2048, 256, Some(512), MixConfig::recommended(), 4));
        // What the CLI has no flag for: the pipeline's defaults, but chunks fitted to the input's size.
        let defaults = CodecOptions::default();
        assert!(p.codec.fit_chunks_to_size);
        assert_eq!(p.codec.kernel, None);
        assert!(p.codec.speculate);
        assert_eq!(
            (p.codec.chunk_bytes, p.codec.lanes, p.codec.force_model, &p.codec.chunk_range),
            (defaults.chunk_bytes, defaults.lanes, defaults.force_model, &defaults.chunk_range)
        );
        let mut a = files(&[]);
        a.codec = CodecArgs {
            run: RunArgs { model: Some("m.gguf".into()), context: Some(100), threads: Some(1) },
            overlap: None,
            slide: None,
            no_mix: true,
            level: Default::default(),
        };
        let p = plan(C, &a, &env(&fs)).unwrap();
        assert_eq!(fields(&p.codec), (Some("m.gguf".into()), 100, 50, Some(25), MixConfig::OFF, 1));
        let zero = Env { available_threads: 0, ..env(&fs) };
        assert_eq!(plan(C, &files(&[]), &zero).unwrap().codec.threads, 1);
        // LLMZIP_SPECULATE is read into the Env, not by the planner.
        let no_drafts = Env { speculate: false, ..env(&fs) };
        assert!(!plan(Operation::Decompress, &files(&[]), &no_drafts).unwrap().codec.speculate);
    }

    #[test]
    fn a_level_fills_in_what_no_flag_names_and_only_for_compression() {
        let fs = Fake::default();
        let mut a = files(&[]);
        a.codec.level.l1 = true;
        let fast = level::preset(1).unwrap();
        let s = plan(C, &a, &env(&fs)).unwrap().codec;
        assert_eq!(
            (s.model.as_deref(), s.context, s.slide, s.mix),
            (None, fast.context, Some(fast.slide), fast.mix)
        );

        a.codec.level = Default::default();
        a.codec.level.best = true;
        let best = level::preset(9).unwrap();
        let s = plan(C, &a, &env(&fs)).unwrap().codec;
        assert_eq!((s.model.as_deref(), s.context, s.slide), (best.model, best.context, Some(best.slide)));

        // Explicit flags win over the preset, and the slide follows an explicit context.
        a.codec.run.model = Some("m.gguf".into());
        a.codec.run.context = Some(100);
        a.codec.no_mix = true;
        let s = plan(C, &a, &env(&fs)).unwrap().codec;
        assert_eq!(
            (s.model.as_deref(), s.context, s.slide, s.mix),
            (Some("m.gguf"), 100, Some(25), MixConfig::OFF)
        );

        // A decoder takes its model from the archive: a level must not name one.
        a.codec.run = Default::default();
        let s = plan(Operation::Decompress, &a, &env(&fs)).unwrap().codec;
        assert_eq!(s.model, None);
    }

    #[test]
    fn overlap_must_stay_below_context() {
        let fs = Fake::default();
        let mut a = files(&[]);
        a.codec.run.context = Some(512);
        a.codec.overlap = Some(512);
        assert_eq!(plan(C, &a, &env(&fs)), Err(UsageError::OverlapTooLarge { overlap: 512, context: 512 }));
        a.codec.overlap = Some(511);
        assert_eq!(plan(C, &a, &env(&fs)).unwrap().codec.overlap, 511);
        a.codec.overlap = Some(0);
        assert_eq!(plan(C, &a, &env(&fs)).unwrap().codec.overlap, 0);
    }

    #[test]
    fn overlap_alone_keeps_windows_and_a_slide_stays_below_context() {
        let fs = Fake::default();
        let mut a = files(&[]);
        a.codec.run.context = Some(512);
        a.codec.overlap = Some(64);
        assert_eq!(plan(C, &a, &env(&fs)).unwrap().codec.slide, Some(0));
        a.codec.slide = Some(100);
        assert_eq!(plan(C, &a, &env(&fs)), Err(UsageError::OverlapWithSlide { slide: 100 }));
        a.codec.slide = Some(0);
        assert_eq!(plan(C, &a, &env(&fs)).unwrap().codec.overlap, 64);
        a.codec.overlap = None;
        a.codec.slide = Some(512);
        assert_eq!(plan(C, &a, &env(&fs)), Err(UsageError::SlideTooLarge { slide: 512, context: 512 }));
        a.codec.slide = Some(511);
        assert_eq!(plan(C, &a, &env(&fs)).unwrap().codec.slide, Some(511));
    }

    #[test]
    fn verbosity_levels() {
        let fs = Fake::default();
        let mut a = files(&[]);
        assert_eq!(plan(C, &a, &env(&fs)).unwrap().verbosity, Verbosity::Normal);
        a.verbose = 2;
        assert_eq!(plan(C, &a, &env(&fs)).unwrap().verbosity, Verbosity::Verbose(2));
        a.quiet = true;
        assert_eq!(plan(C, &a, &env(&fs)), Err(UsageError::QuietAndVerbose));
        a.verbose = 0;
        assert_eq!(plan(C, &a, &env(&fs)).unwrap().verbosity, Verbosity::Quiet);
    }

    #[test]
    fn usage_errors_are_one_line() {
        let all = [
            UsageError::QuietAndVerbose,
            UsageError::KeepAndRemove,
            UsageError::StdoutAndOutput,
            UsageError::OutputWithSeveralInputs { count: 3 },
            UsageError::StdinTwice { count: 2 },
            UsageError::OutputWithoutData { operation: T },
            UsageError::RemoveWithoutData { operation: L },
            UsageError::RemoveStdin,
            UsageError::RemoveWithStdout,
            UsageError::OverlapTooLarge { overlap: 1, context: 1 },
            UsageError::SlideTooLarge { slide: 1, context: 1 },
            UsageError::OverlapWithSlide { slide: 1 },
            UsageError::CompressedToTerminal,
            UsageError::CompressedFromTerminal,
        ];
        for e in all {
            let s = e.to_string();
            assert!(!s.contains('\n') && !s.is_empty(), "{s:?}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn non_utf8_names_keep_their_bytes() {
        use std::os::unix::ffi::OsStrExt;
        let raw = std::ffi::OsStr::from_bytes(b"caf\xe9.lz");
        let fs = Fake { kinds: [(PathBuf::from(raw), PathKind::File)].into(), same: vec![] };
        let a = FileArgs { files: vec![PathBuf::from(raw)], ..FileArgs::default() };
        let want = job(
            Input::Path(raw.into()),
            Output::Path { path: std::ffi::OsStr::from_bytes(b"caf\xe9").into(), overwrite: false },
        );
        assert_eq!(items(D, &a, &fs), vec![want]);
    }
}
