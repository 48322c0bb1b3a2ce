//! The commands that are not file jobs: `models`, `eval` and `bench`. Each prints its table on stdout
//! (data) and its messages on stderr, through the same [`Reporter`] as the file jobs.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, IsTerminal, Read, Write};
use std::path::Path;

use super::args::{BenchArgs, EvalArgs, ModelsCommand};
use super::plan::{Operation, codec_options};
use super::report::{EXIT_ERROR, Reporter};
use super::run::system_env;
use crate::bench::{self, BenchRow, Scratch, Tool};
use crate::io::AtomicFile;
use crate::io::fs::SystemPaths;
use crate::io::stdio::StdoutSink;
use crate::model;
use crate::pipeline::Session;
use crate::pipeline::eval::{EvalReport, eval};

/// Writes `text` to stdout; a reader that closed the pipe early is not an error.
fn emit(text: &str, reporter: &mut Reporter) {
    let mut out = StdoutSink::new();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush())
        && e.kind() != io::ErrorKind::BrokenPipe
    {
        reporter.error(Some("stdout"), &e);
    }
}

/// `llmzip models ...`.
pub fn models(command: &ModelsCommand, reporter: &mut Reporter) -> u8 {
    let bar = model::progress_bar();
    let result: Result<String, model::ModelError> = match command {
        ModelsCommand::List => model::list().map(|rows| {
            let mut t =
                String::from("| id | architecture | size | default | cached |\n|---|---|---:|---|---|\n");
            for r in rows {
                let _ = writeln!(
                    t,
                    "| {} | {} | {} | {} | {} |",
                    r.id,
                    r.architecture,
                    r.size,
                    if r.default { "yes" } else { "" },
                    if r.cached { "yes" } else { "no" }
                );
            }
            t
        }),
        ModelsCommand::Fetch { id } => (|| {
            let id = match id {
                Some(id) => id.as_str(),
                None => model::default_id()?,
            };
            let resolved = model::fetch(id, &bar)?;
            // Fetched, perhaps from a fallback source: the request was met, so exit 0 (scripts with
            // `set -e` on machines that block the first source must not break).
            for note in &resolved.notes {
                reporter.note(Some(id), note);
            }
            Ok(format!("{}\n", resolved.path.display()))
        })(),
        ModelsCommand::Path { id } => model::path(id, &bar).map(|p| format!("{}\n", p.display())),
        ModelsCommand::Import { id, file } => {
            model::import(id, file, &bar).map(|r| format!("{}\n", r.path.display()))
        }
    };
    bar.finish_and_clear();
    match result {
        Ok(text) => emit(&text, reporter),
        Err(e) => reporter.error(None, &e),
    }
    reporter.exit_code()
}

/// `llmzip eval FILE...`: the code length `llmzip c` with the same flags would get, per file.
pub fn eval_files(args: &EvalArgs, reporter: &mut Reporter) -> u8 {
    let mut opts = match codec_options(Operation::Compress, &args.codec, &system_env(&SystemPaths)) {
        Ok(o) => o,
        Err(e) => {
            reporter.error(None, &e);
            return EXIT_ERROR;
        }
    };
    if let Some(bytes) = args.chunk_size {
        opts.fix_chunk_bytes(bytes);
    }
    let bar = model::progress_bar();
    let session = Session::open(&opts, &bar);
    bar.finish_and_clear();
    let session = match session {
        Ok(s) => s,
        Err(e) => {
            reporter.error(None, &e);
            return EXIT_ERROR;
        }
    };
    let mut rows = Vec::new();
    let mut total = EvalReport::default();
    for file in &args.files {
        let name = file.display().to_string();
        let text = match std::fs::read(file) {
            Ok(t) => t,
            Err(e) => {
                reporter.error(Some(&name), &e);
                continue;
            }
        };
        // Cut as `c` cuts this file.
        match eval(&session, &text, &opts.for_input_size(Some(text.len() as u64))) {
            Ok(r) => {
                total.add(&r);
                rows.push((name, r));
            }
            Err(e) => reporter.error(Some(&name), &e),
        }
    }
    rows.push(("total".to_string(), total));
    let schedule = if opts.slide() > 0 {
        format!("slide {}", opts.slide())
    } else {
        format!("windows with overlap {}", opts.overlap)
    };
    let mut t = format!(
        "model {} (sha256 {}), context {}, {schedule}, mixer {}, chunks {}\n\n",
        session.model.id,
        model::hash::to_hex(&session.model.sha256),
        opts.context,
        if opts.mix.is_off() { "off" } else { "on" },
        if opts.fit_chunks_to_size {
            "fitted to each file's size, as c cuts it".to_owned()
        } else {
            format!("of {} bytes", opts.chunk_bytes)
        },
    );
    t.push_str("| file | bytes | tokens | bits/token | bits/byte | table overhead | tokens/s |\n");
    t.push_str("|---|---:|---:|---:|---:|---:|---:|\n");
    for (name, r) in &rows {
        let overhead = if r.ideal_bits > 0.0 { (r.table_bits / r.ideal_bits - 1.0) * 100.0 } else { 0.0 };
        let _ = writeln!(
            t,
            "| {name} | {} | {} | {:.4} | {:.4} | {overhead:.3}% | {:.1} |",
            r.bytes,
            r.tokens,
            r.bits_per_token(),
            r.bits_per_byte(),
            r.tokens_per_second()
        );
    }
    emit(&t, reporter);
    reporter.exit_code()
}

/// `llmzip bench FILE...`: every tool on the same bytes, round trips verified, one table.
pub fn bench_files(args: &BenchArgs, reporter: &mut Reporter) -> u8 {
    let mut tools = Vec::new();
    for name in &args.against {
        match Tool::known(name.trim()) {
            Ok(t) => tools.push(t),
            Err(e) => {
                reporter.error(None, &e);
                return EXIT_ERROR;
            }
        }
    }
    let exe = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => {
            reporter.error(Some("llmzip"), &e);
            return EXIT_ERROR;
        }
    };
    let mut extra: Vec<std::ffi::OsString> = Vec::new();
    if let Some(m) = &args.run.model {
        extra.extend(["--model".into(), m.into()]);
    }
    if let Some(c) = args.run.context {
        extra.extend(["--context".into(), c.to_string().into()]);
    }
    if let Some(t) = args.run.threads {
        extra.extend(["--threads".into(), t.to_string().into()]);
    }
    if args.levels.is_empty() {
        tools.push(Tool::llmzip(exe.clone(), "llmzip", &extra));
    }
    for level in &args.levels {
        let mut with_level = vec![format!("-{level}").into()];
        with_level.extend(extra.iter().cloned());
        tools.push(Tool::llmzip(exe.clone(), &format!("llmzip -{level}"), &with_level));
    }

    let spinner = indicatif::ProgressBar::new_spinner();
    if !io::stderr().is_terminal() {
        spinner.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    spinner.enable_steady_tick(std::time::Duration::from_millis(200));
    let mut rows = Vec::new();
    for file in &args.files {
        let label =
            file.file_name().map_or_else(|| file.display().to_string(), |n| n.to_string_lossy().into());
        let input = match cut_copy(file, args.max_bytes) {
            Ok(f) => f,
            Err(e) => {
                reporter.error(Some(&file.display().to_string()), &e);
                continue;
            }
        };
        for tool in &tools {
            spinner.set_message(format!("{label}: {}", tool.name));
            if !tool.available() {
                rows.push(BenchRow::Skipped {
                    file: label.clone(),
                    tool: tool.name.clone(),
                    why: "not found on PATH".into(),
                });
                continue;
            }
            match scratch_files(&tool.name).and_then(|[c, r, s]| {
                let scratch =
                    Scratch { compressed: c.temp_path(), restored: r.temp_path(), stats: s.temp_path() };
                bench::measure(tool, &label, input.temp_path(), &scratch)
                    .map_err(|e| io::Error::other(e.to_string()))
            }) {
                Ok(m) => rows.push(BenchRow::Measured(m)),
                Err(e) => reporter.error(Some(&label), &e),
            }
        }
    }
    spinner.finish_and_clear();
    emit(&bench::format_table(&rows, args.robot), reporter);
    reporter.exit_code()
}

/// The first `max` bytes of `file` in a temp file that Ctrl-C removes.
fn cut_copy(file: &Path, max: Option<u64>) -> io::Result<AtomicFile> {
    let mut copy = scratch("input")?;
    let mut source = File::open(file)?.take(max.unwrap_or(u64::MAX));
    io::copy(&mut source, &mut copy)?;
    copy.flush()?;
    Ok(copy)
}

/// Temp files for one tool's compressed and restored output and its statistics record; removed when
/// dropped or on Ctrl-C.
fn scratch_files(tool: &str) -> io::Result<[AtomicFile; 3]> {
    Ok([
        scratch(&format!("{tool}.cmp"))?,
        scratch(&format!("{tool}.out"))?,
        scratch(&format!("{tool}.stats"))?,
    ])
}

fn scratch(name: &str) -> io::Result<AtomicFile> {
    let target = std::env::temp_dir().join(format!("llmzip-bench-{}-{name}", std::process::id()));
    AtomicFile::create(&target, true)
}
