//! What the user typed, as clap types: parsing only.
//!
//! Nothing here looks at the filesystem, the terminal, the model or the network, so `--help` and usage
//! errors are instant. Rules that involve several flags at once (for example `-o` with several files)
//! live in [`super::plan`], where they are tested without a process.

use std::path::PathBuf;

use clap::{ArgGroup, Args, Parser, Subcommand};

use super::selection::{ChunkRange, Part, parse_chunk_range, parse_chunk_size, parse_part};

/// The smallest and largest `--context` accepted at parse time; the model's own limit is checked later.
pub const CONTEXT_RANGE: std::ops::RangeInclusive<i64> = 16..=8192;

/// Lossless text compression with a small language model as the probability model.
#[derive(Debug, Parser)]
#[command(
    name = "llmzip",
    version,
    about,
    propagate_version = true,
    arg_required_else_help = true,
    after_help = "Examples:\n  llmzip c notes.txt            writes notes.txt.lz, keeps notes.txt\n  \
                  llmzip d notes.txt.lz         writes notes.txt\n  \
                  tar cf - dir | llmzip c > dir.tar.lz\n\n\
                  Exit status: 0 ok, 1 error, 2 warning (for example a file skipped)."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Compress FILEs to FILE.lz (stdin to stdout when no FILE or `-` is given).
    #[command(visible_alias = "c")]
    Compress(FileArgs),
    /// Decompress FILE.lz to FILE (stdin to stdout when no FILE or `-` is given).
    #[command(visible_alias = "d")]
    Decompress(FileArgs),
    /// Decode FILEs fully and verify every checksum; writes nothing.
    #[command(visible_alias = "t")]
    Test(FileArgs),
    /// Show model, chunks, sizes, ratio, bits per byte and check status of archives.
    #[command(visible_alias = "l")]
    List(ListArgs),
    /// List, fetch, locate or import the models llmzip can use.
    #[command(subcommand)]
    Models(ModelsCommand),
    /// Measure how well a model predicts FILEs (bits per byte) without writing an archive.
    Eval(EvalArgs),
    /// Compare llmzip with gzip, bzip2, xz and zstd on FILEs, verifying every round trip.
    Bench(BenchArgs),
    /// Cut an archive at chunk boundaries into smaller archives that decode alone (no model needed).
    Split(SplitArgs),
    /// Join archives made with the same model and settings into one archive.
    Join(JoinArgs),
}

/// Flags shared by `c`, `d`, `t` and `l`, spelled as gzip, xz and zstd users expect.
#[derive(Debug, Clone, Default, Args)]
pub struct FileArgs {
    /// Input files; none or `-` means stdin.
    #[arg(value_name = "FILE")]
    pub files: Vec<PathBuf>,

    /// Write to stdout and keep the input files.
    #[arg(short = 'c', long = "stdout")]
    pub stdout: bool,

    /// Write the output to PATH (one input only; `-` means stdout).
    #[arg(short = 'o', long, value_name = "PATH")]
    pub output: Option<PathBuf>,

    /// Overwrite existing output files; allow compressed data to or from a terminal.
    #[arg(short = 'f', long)]
    pub force: bool,

    /// Keep the input files (the default; accepted for gzip compatibility).
    #[arg(short = 'k', long)]
    pub keep: bool,

    /// Remove each input file once its output has been written completely.
    #[arg(long = "rm")]
    pub remove: bool,

    /// Print statistics per file to stderr (bits per byte, tokens/s, ratio); repeat for more.
    #[arg(short = 'v', long = "verbose", action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Print no warnings (errors are still printed).
    #[arg(short = 'q', long)]
    pub quiet: bool,

    /// Append one machine-readable statistics record per finished file to PATH (see
    /// `pipeline::Stats::record`); for `llmzip bench` and scripts, which must not parse the `-v` line.
    #[arg(long, value_name = "PATH", hide = true)]
    pub stats_file: Option<PathBuf>,

    #[command(flatten)]
    pub codec: CodecArgs,

    #[command(flatten)]
    pub pieces: PieceArgs,
}

/// `c` only: compress one piece of an input, for spreading one input over several machines (README,
/// "Many machines"); `llmzip join` turns the pieces' archives into the one archive of the whole input.
#[derive(Debug, Clone, Default, Args)]
pub struct PieceArgs {
    /// Size the input is cut into independently coded chunks at (bytes, or with K or M; at most 16M).
    /// Every piece of one input must use the same size. [default: a file, also one on stdin, is cut
    /// into up to 16 equal chunks of 32K to 64K; a pipe into 64K]
    #[arg(long, value_name = "BYTES", value_parser = parse_chunk_size)]
    pub chunk_size: Option<usize>,

    /// Compress only chunks A..B (0-based, B excluded; `A..` runs to the end) of the input.
    #[arg(long, value_name = "A..B", value_parser = parse_chunk_range, conflicts_with = "part")]
    pub chunks: Option<ChunkRange>,

    /// Compress only part K of N (1-based) of the input, cut at chunk boundaries.
    #[arg(long, value_name = "K/N", value_parser = parse_part)]
    pub part: Option<Part>,
}

impl PieceArgs {
    pub fn is_set(&self) -> bool {
        self.chunk_size.is_some() || self.chunks.is_some() || self.part.is_some()
    }
}

/// `split`: which chunks go where.
#[derive(Debug, Clone, Args)]
#[command(group(ArgGroup::new("select").required(true).args(["chunks", "part", "parts"])))]
pub struct SplitArgs {
    /// The archive (a file may hold several archives back to back); none or `-` means stdin.
    #[arg(value_name = "ARCHIVE")]
    pub archive: Option<PathBuf>,

    /// Keep chunks A..B (0-based, B excluded, numbered as `llmzip l --index` shows them).
    #[arg(long, value_name = "A..B", value_parser = parse_chunk_range)]
    pub chunks: Option<ChunkRange>,

    /// Keep part K of N (1-based): the cut `llmzip c --part K/N` makes.
    #[arg(long, value_name = "K/N", value_parser = parse_part)]
    pub part: Option<Part>,

    /// Cut into N parts, written as NAME.part1.lz .. NAME.partN.lz (numbers zero-padded).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=100_000),
          conflicts_with_all = ["stdout", "output"])]
    pub parts: Option<u64>,

    /// Write to stdout.
    #[arg(short = 'c', long = "stdout")]
    pub stdout: bool,

    /// Write the piece to PATH (`-` means stdout). [default: NAME.partK.lz or NAME.chunksA-B.lz]
    #[arg(short = 'o', long, value_name = "PATH", conflicts_with = "stdout")]
    pub output: Option<PathBuf>,

    /// Overwrite existing output files; allow compressed data to or from a terminal.
    #[arg(short = 'f', long)]
    pub force: bool,
}

/// `join`: the archives, in order, and where the one archive goes.
#[derive(Debug, Clone, Args)]
pub struct JoinArgs {
    /// Archives in order (each file may hold several); none or `-` means stdin.
    #[arg(value_name = "ARCHIVE")]
    pub files: Vec<PathBuf>,

    /// Write to stdout.
    #[arg(short = 'c', long = "stdout")]
    pub stdout: bool,

    /// Write the archive to PATH (`-` means stdout).
    #[arg(short = 'o', long, value_name = "PATH", conflicts_with = "stdout")]
    pub output: Option<PathBuf>,

    /// Overwrite an existing output file; allow compressed data to or from a terminal.
    #[arg(short = 'f', long)]
    pub force: bool,
}

/// The flags of every command that runs the model (`c`, `d`, `t`, `l`, `eval`, `bench`), declared once.
#[derive(Debug, Clone, Default, Args)]
pub struct RunArgs {
    /// Model id from `llmzip models list`, or the path of a GGUF file.
    #[arg(long, value_name = "ID|PATH")]
    pub model: Option<String>,

    /// Tokens per window: more context predicts better but costs time (16..=8192; the model's own limit
    /// is checked when it is loaded). [default: 2048]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(CONTEXT_RANGE))]
    pub context: Option<u32>,

    /// Worker threads. [default: all cores]
    #[arg(long, value_name = "N", value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=4096))]
    pub threads: Option<usize>,
}

/// How the model is run; recorded in the archive by `c`, so `d` needs none of it except `--model`
/// (to point at a local copy of the archive's model) and `--threads`.
#[derive(Debug, Clone, Default, Args)]
pub struct CodecArgs {
    #[command(flatten)]
    pub run: RunArgs,

    /// Positions the model's cache drops, after the start token, each time it holds --context
    /// positions: every token sees at least context - N tokens before it. 0 selects windows that
    /// restart with --overlap tokens instead. [default: 512, or context/4 when that is smaller]
    #[arg(long, value_name = "N")]
    pub slide: Option<u32>,

    /// With --slide 0 (implied when --slide is not given): tokens from the previous window that start
    /// each later one. Must be less than --context. [default: 256, or context/2 when that is smaller]
    #[arg(long, value_name = "K")]
    pub overlap: Option<u32>,

    /// Code with the model alone: no mixer (match and n-gram models that learn the file as it is
    /// coded). Archives are larger; for measurements.
    #[arg(long)]
    pub no_mix: bool,

    #[command(flatten)]
    pub level: LevelArgs,
}

/// The ids of the level flags: each overrides the others, so the last one given wins, as in gzip.
const LEVEL_IDS: [&str; 11] = ["l1", "l2", "l3", "l4", "l5", "l6", "l7", "l8", "l9", "fast", "best"];

/// `-1` .. `-9`, `--fast`, `--best`: a preset of model, context and mixer (`pipeline::level`). Only
/// compression uses it; the archive records the settings themselves, so `d` needs no level.
#[derive(Debug, Clone, Default, Args)]
pub struct LevelArgs {
    /// Compression level 1 (fastest) .. 9 (smallest archive): -1 .. -9. Levels 1-7 run SmolLM2 with
    /// longer contexts, 8-9 run Gemma 3 (slower, best beyond English). [default: 6]
    #[arg(short = '1', overrides_with_all = LEVEL_IDS)]
    pub l1: bool,
    #[arg(short = '2', hide = true, overrides_with_all = LEVEL_IDS)]
    pub l2: bool,
    #[arg(short = '3', hide = true, overrides_with_all = LEVEL_IDS)]
    pub l3: bool,
    #[arg(short = '4', hide = true, overrides_with_all = LEVEL_IDS)]
    pub l4: bool,
    #[arg(short = '5', hide = true, overrides_with_all = LEVEL_IDS)]
    pub l5: bool,
    #[arg(short = '6', hide = true, overrides_with_all = LEVEL_IDS)]
    pub l6: bool,
    #[arg(short = '7', hide = true, overrides_with_all = LEVEL_IDS)]
    pub l7: bool,
    #[arg(short = '8', hide = true, overrides_with_all = LEVEL_IDS)]
    pub l8: bool,
    /// Level 9: see -1.
    #[arg(short = '9', overrides_with_all = LEVEL_IDS)]
    pub l9: bool,
    /// Level 1.
    #[arg(long, overrides_with_all = LEVEL_IDS)]
    pub fast: bool,
    /// Level 9.
    #[arg(long, overrides_with_all = LEVEL_IDS)]
    pub best: bool,
}

impl LevelArgs {
    /// The level given, if any (the flags override each other, so at most one is set).
    pub fn level(&self) -> Option<u8> {
        let digits = [self.l1, self.l2, self.l3, self.l4, self.l5, self.l6, self.l7, self.l8, self.l9];
        if self.fast {
            return Some(1);
        }
        if self.best {
            return Some(9);
        }
        digits.iter().position(|&set| set).map(|i| i as u8 + 1)
    }
}

/// `l`: the shared flags plus the output format.
#[derive(Debug, Clone, Default, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub files: FileArgs,

    /// Tab-separated columns with a header line, for scripts.
    #[arg(long)]
    pub robot: bool,

    /// List every chunk with its offsets in the archive and in the decoded content (no model needed),
    /// for planning `llmzip split --chunks`.
    #[arg(long)]
    pub index: bool,
}

#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// Known models: id, architecture, size, whether it is the default and whether it is cached.
    List,
    /// Download and verify a model into the cache (the default model when no ID is given).
    Fetch {
        #[arg(value_name = "ID")]
        id: Option<String>,
    },
    /// Print the cached file of model ID (an error when it is not cached).
    Path {
        #[arg(value_name = "ID")]
        id: String,
    },
    /// Verify FILE against model ID's size and sha256, then copy it into the cache.
    Import {
        #[arg(value_name = "ID")]
        id: String,
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
}

#[derive(Debug, Clone, Args)]
pub struct EvalArgs {
    /// Files to measure, each as `llmzip c` with the same flags would code it.
    #[arg(value_name = "FILE", required = true)]
    pub files: Vec<PathBuf>,

    #[command(flatten)]
    pub codec: CodecArgs,

    /// Bytes per independently coded chunk, as `c --chunk-size`. [default: as `c`: up to 16 equal
    /// chunks of 32K to 64K]
    #[arg(long, value_name = "BYTES", value_parser = parse_chunk_size)]
    pub chunk_size: Option<usize>,
}

#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Files to compress with every tool.
    #[arg(value_name = "FILE", required = true)]
    pub files: Vec<PathBuf>,

    /// External compressors to compare with, comma-separated; missing ones are reported as skipped.
    #[arg(long, value_name = "LIST", value_delimiter = ',', default_value = "gzip,bzip2,xz,zstd")]
    pub against: Vec<String>,

    /// Use only the first N bytes of each file.
    #[arg(long, value_name = "N")]
    pub max_bytes: Option<u64>,

    /// Tab-separated output instead of a Markdown table.
    #[arg(long)]
    pub robot: bool,

    /// Measure llmzip at each of these levels (comma-separated, 1..=9), one row per level; the other
    /// flags still apply to every level. [default: the default level only]
    #[arg(long, value_name = "LIST", value_delimiter = ',',
          value_parser = clap::value_parser!(u8).range(1..=9))]
    pub levels: Vec<u8>,

    #[command(flatten)]
    pub run: RunArgs,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("llmzip").chain(args.iter().copied()))
    }

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn short_aliases_reach_the_same_subcommands() {
        assert!(matches!(parse(&["c", "a"]).unwrap().command, Command::Compress(_)));
        assert!(matches!(parse(&["compress", "a"]).unwrap().command, Command::Compress(_)));
        assert!(matches!(parse(&["d"]).unwrap().command, Command::Decompress(_)));
        assert!(matches!(parse(&["t"]).unwrap().command, Command::Test(_)));
        assert!(matches!(
            parse(&["l", "--robot"]).unwrap().command,
            Command::List(ListArgs { robot: true, .. })
        ));
    }

    #[test]
    fn flags_parse_as_gzip_users_spell_them() {
        let Command::Compress(a) = parse(&[
            "c",
            "-cfkvv",
            "--rm",
            "--model",
            "m",
            "--context",
            "512",
            "--overlap",
            "64",
            "--slide",
            "0",
            "--threads",
            "3",
            "-",
            "x",
        ])
        .unwrap()
        .command
        else {
            panic!("not compress")
        };
        assert!(a.stdout && a.force && a.keep && a.remove);
        assert_eq!(a.verbose, 2);
        assert_eq!(a.files, vec![PathBuf::from("-"), PathBuf::from("x")]);
        assert_eq!(a.codec.run.model.as_deref(), Some("m"));
        assert_eq!(
            (a.codec.run.context, a.codec.overlap, a.codec.run.threads),
            (Some(512), Some(64), Some(3))
        );
        assert_eq!(a.codec.slide, Some(0));
    }

    #[test]
    fn out_of_range_numbers_are_usage_errors() {
        assert!(parse(&["c", "--context", "15"]).is_err());
        assert!(parse(&["c", "--context", "8193"]).is_err());
        assert!(parse(&["c", "--context", "16"]).is_ok());
        assert!(parse(&["c", "--context", "8192"]).is_ok());
        assert!(parse(&["c", "--threads", "0"]).is_err());
        assert!(parse(&["c", "--overlap", "-1"]).is_err());
    }

    #[test]
    fn robot_belongs_to_list_only() {
        assert!(parse(&["c", "--robot"]).is_err());
        assert!(parse(&["bench", "f", "--robot"]).is_ok());
    }

    #[test]
    fn levels_parse_and_the_last_one_wins() {
        let level = |args: &[&str]| match parse(args).unwrap().command {
            Command::Compress(a) => a.codec.level.level(),
            other => panic!("{other:?}"),
        };
        assert_eq!(level(&["c", "f"]), None);
        for n in 1..=9u8 {
            assert_eq!(level(&["c", &format!("-{n}"), "f"]), Some(n));
        }
        assert_eq!(level(&["c", "--fast", "f"]), Some(1));
        assert_eq!(level(&["c", "--best", "f"]), Some(9));
        assert_eq!(level(&["c", "-1", "-9", "f"]), Some(9));
        assert_eq!(level(&["c", "-9", "--fast", "f"]), Some(1));
        assert_eq!(level(&["c", "--best", "-3", "f"]), Some(3));
        assert_eq!(level(&["c", "-kv9", "f"]), Some(9));
        assert!(parse(&["c", "-0", "f"]).is_err());
    }

    #[test]
    fn models_eval_and_bench_parse() {
        assert!(matches!(parse(&["models", "list"]).unwrap().command, Command::Models(ModelsCommand::List)));
        assert!(matches!(
            parse(&["models", "fetch"]).unwrap().command,
            Command::Models(ModelsCommand::Fetch { id: None })
        ));
        assert!(matches!(
            parse(&["models", "import", "x", "f.gguf"]).unwrap().command,
            Command::Models(ModelsCommand::Import { .. })
        ));
        assert!(parse(&["models", "path"]).is_err());
        assert!(parse(&["eval"]).is_err());
        let Command::Bench(b) =
            parse(&["bench", "a", "b", "--against", "xz,zstd", "--max-bytes", "100"]).unwrap().command
        else {
            panic!("not bench")
        };
        assert_eq!(b.against, vec!["xz", "zstd"]);
        assert_eq!(b.max_bytes, Some(100));
        let Command::Bench(b) = parse(&["bench", "a"]).unwrap().command else { panic!("not bench") };
        assert_eq!(b.against, vec!["gzip", "bzip2", "xz", "zstd"]);
    }

    #[test]
    fn model_flags_are_the_same_on_every_command_that_runs_the_model() {
        for command in ["c", "d", "t", "l", "eval", "bench"] {
            let args = [command, "f", "--model", "m", "--context", "64", "--threads", "2"];
            let run = match parse(&args).unwrap_or_else(|e| panic!("{command}: {e}")).command {
                Command::Compress(a) | Command::Decompress(a) | Command::Test(a) => a.codec.run,
                Command::List(l) => l.files.codec.run,
                Command::Eval(e) => e.codec.run,
                Command::Bench(b) => b.run,
                Command::Models(_) | Command::Split(_) | Command::Join(_) => unreachable!(),
            };
            assert_eq!((run.model.as_deref(), run.context, run.threads), (Some("m"), Some(64), Some(2)));
        }
    }

    #[test]
    fn the_help_quotes_the_pipelines_defaults() {
        use crate::pipeline::params::{DEFAULT_CONTEXT, DEFAULT_OVERLAP};
        let help = Cli::command().find_subcommand_mut("compress").unwrap().render_long_help().to_string();
        assert!(help.contains(&format!("[default: {DEFAULT_CONTEXT}]")), "{help}");
        assert!(help.contains(&format!("[default: {DEFAULT_OVERLAP},")), "{help}");
    }

    #[test]
    fn the_stats_file_flag_is_hidden_but_parsed() {
        let Command::Compress(a) = parse(&["c", "--stats-file", "s.tsv", "x"]).unwrap().command else {
            panic!("not compress")
        };
        assert_eq!(a.stats_file, Some(PathBuf::from("s.tsv")));
        let help = Cli::command().find_subcommand_mut("compress").unwrap().render_long_help().to_string();
        assert!(!help.contains("stats-file"), "{help}");
    }

    #[test]
    fn piece_flags_split_and_join_parse() {
        let Command::Compress(a) =
            parse(&["c", "--part", "2/3", "--chunk-size", "4K", "-o", "p", "f"]).unwrap().command
        else {
            panic!("not compress")
        };
        assert_eq!(a.pieces.part, Some(Part { k: 2, n: 3 }));
        assert_eq!(a.pieces.chunk_size, Some(4096));
        assert!(parse(&["c", "--part", "1/2", "--chunks", "0..1", "f"]).is_err());
        assert!(parse(&["c", "--part", "3/2", "f"]).is_err());
        let Command::Split(s) = parse(&["split", "a.lz", "--chunks", "1..3", "-c"]).unwrap().command else {
            panic!("not split")
        };
        assert_eq!(s.chunks, Some(ChunkRange { start: 1, end: Some(3) }));
        assert!(parse(&["split", "a.lz"]).is_err(), "a selection is required");
        assert!(parse(&["split", "a.lz", "--part", "1/2", "--parts", "2"]).is_err());
        assert!(parse(&["split", "a.lz", "--parts", "2", "-c"]).is_err());
        assert!(parse(&["split", "a.lz", "--parts", "0"]).is_err());
        let Command::Join(j) = parse(&["join", "a", "b", "-o", "ab"]).unwrap().command else {
            panic!("not join")
        };
        assert_eq!(j.files.len(), 2);
        assert!(matches!(
            parse(&["l", "--index", "--robot", "x"]).unwrap().command,
            Command::List(ListArgs { index: true, robot: true, .. })
        ));
    }

    #[test]
    fn help_and_version_are_not_errors() {
        assert_eq!(parse(&["--help"]).unwrap_err().kind(), clap::error::ErrorKind::DisplayHelp);
        assert_eq!(parse(&["--version"]).unwrap_err().kind(), clap::error::ErrorKind::DisplayVersion);
    }
}
