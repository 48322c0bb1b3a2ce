//! The `llmzip` binary: parse, plan, act; exit statuses, error lines, and a closed pipe as success.
//!
//! Exit status: 0 ok, 1 error (usage errors included), 2 warning, 130 interrupted. Nothing here
//! prints with `print!`/`println!`: Rust ignores SIGPIPE, so those would panic when a reader such as
//! `head` closes the pipe; every write goes through code that returns the error instead.

use std::process::ExitCode;

use clap::Parser;
use clap::error::ErrorKind;

use llmzip::cli::args::{Cli, Command};
use llmzip::cli::plan::{self, Verbosity};
use llmzip::cli::report::{EXIT_ERROR, EXIT_OK, Reporter};
use llmzip::cli::{pieces, run, tools};
use llmzip::io::cleanup;
use llmzip::io::fs::SystemPaths;

fn main() -> ExitCode {
    llmzip::io::stdio::guard_standard_streams();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version go to stdout and are a success; everything else is a usage error, which
            // gzip's convention counts as an error (1) rather than clap's default 2 (our "warning").
            let _ = e.print();
            return ExitCode::from(match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => EXIT_OK,
                _ => EXIT_ERROR,
            });
        }
    };
    ExitCode::from(dispatch(&cli.command))
}

fn dispatch(command: &Command) -> u8 {
    let Some((operation, args)) = plan::file_operation(command) else {
        let mut reporter = Reporter::new(Verbosity::Normal);
        return match command {
            Command::Models(m) => tools::models(m, &mut reporter),
            Command::Eval(e) => tools::eval_files(e, &mut reporter),
            Command::Bench(b) => tools::bench_files(b, &mut reporter),
            Command::Split(s) => {
                pieces::split(s, &mut reporter);
                reporter.exit_code()
            }
            Command::Join(j) => {
                pieces::join(j, &mut reporter);
                reporter.exit_code()
            }
            _ => unreachable!("file_operation covers c, d, t and l"),
        };
    };

    if let Err(usage) = pieces::check_flags(command) {
        let mut reporter = Reporter::new(Verbosity::Normal);
        reporter.error(None, &usage);
        return reporter.exit_code();
    }
    let plan = match plan::plan(operation, args, &run::system_env(&SystemPaths)) {
        Ok(plan) => plan,
        Err(usage) => {
            let mut reporter = Reporter::new(Verbosity::Normal);
            reporter.error(None, &usage);
            return reporter.exit_code();
        }
    };

    let mut reporter = Reporter::new(plan.verbosity);
    if let Err(e) = cleanup::install_interrupt_handler() {
        reporter.warning(
            None,
            &format!("cannot catch Ctrl-C ({e}); an interrupted run may leave a .*.tmp-* file"),
        );
    }
    match command {
        Command::Compress(a) if a.pieces.is_set() => pieces::compress(&plan, a, &mut reporter),
        Command::List(l) if l.index => pieces::list_index(&plan, l.robot, &mut reporter),
        _ => run::execute(&plan, &mut reporter),
    }
    reporter.exit_code()
}
