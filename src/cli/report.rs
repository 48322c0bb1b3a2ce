//! What humans read: one line per message on stderr, and the exit status they add up to.
//!
//! stdout is payload; every message here goes to stderr as `llmzip: <file>: <message>` on one line
//! (ARCHITECTURE.md section 5.7). Writing to stderr never panics: if stderr itself is gone there is
//! nobody left to tell.

use std::error::Error;
use std::io::{self, Write};

use super::plan::{Item, Job, Notice, Severity, Verbosity};

/// Exit statuses (gzip's): 0 ok, 1 error, 2 warning. Usage errors are errors.
pub const EXIT_OK: u8 = 0;
pub const EXIT_ERROR: u8 = 1;
pub const EXIT_WARNING: u8 = 2;

/// Prints messages according to the verbosity and remembers the worst one.
pub struct Reporter {
    verbosity: Verbosity,
    /// The most severe message reported so far (errors outrank warnings, even when `-q` hid them).
    worst: Option<Severity>,
}

impl Reporter {
    pub fn new(verbosity: Verbosity) -> Self {
        Reporter { verbosity, worst: None }
    }

    pub fn verbosity(&self) -> Verbosity {
        self.verbosity
    }

    pub fn notice(&mut self, notice: &Notice) {
        self.record(notice.severity, Some(&notice.subject), &notice.message);
    }

    /// The job of a planned item, or `None` once the reason it is skipped has been reported: the one
    /// loop head of every command that works through a plan's items in order.
    pub fn job<'i>(&mut self, item: &'i Item) -> Option<&'i Job> {
        match item {
            Item::Run(job) => Some(job),
            Item::Skip(notice) => {
                self.notice(notice);
                None
            }
        }
    }

    pub fn warning(&mut self, subject: Option<&str>, message: &str) {
        self.record(Severity::Warning, subject, message);
    }

    pub fn error(&mut self, subject: Option<&str>, err: &(dyn Error + 'static)) {
        self.record(Severity::Error, subject, &one_line(err));
    }

    /// Something worth saying that is neither a warning nor an error (a request met another way than the
    /// usual one): printed unless `-q`, and the exit status stays what it was.
    pub fn note(&self, subject: Option<&str>, message: &str) {
        if self.verbosity != Verbosity::Quiet {
            print_line(&format_message(subject, message));
        }
    }

    /// Statistics and other information, shown only with `-v`.
    pub fn info(&self, line: &str) {
        if matches!(self.verbosity, Verbosity::Verbose(_)) {
            print_line(line);
        }
    }

    fn record(&mut self, severity: Severity, subject: Option<&str>, message: &str) {
        self.worst = self.worst.max(Some(severity));
        if severity == Severity::Warning && self.verbosity == Verbosity::Quiet {
            return;
        }
        print_line(&format_message(subject, message));
    }

    pub fn exit_code(&self) -> u8 {
        match self.worst {
            None => EXIT_OK,
            Some(Severity::Warning) => EXIT_WARNING,
            Some(Severity::Error) => EXIT_ERROR,
        }
    }
}

/// `llmzip: <subject>: <message>`, forced onto one line.
pub fn format_message(subject: Option<&str>, message: &str) -> String {
    let line = match subject {
        Some(s) => format!("llmzip: {s}: {message}"),
        None => format!("llmzip: {message}"),
    };
    line.replace(['\n', '\r'], " ")
}

fn print_line(line: &str) {
    let _ = writeln!(io::stderr().lock(), "{line}");
}

/// An error and its causes on one line, joined by ": ". A cause whose text the outer message already
/// ends with is not repeated (errors that print their source inline), and the " (os error N)" that
/// `io::Error` appends is dropped: the OS's description is the useful part.
pub fn one_line(err: &(dyn Error + 'static)) -> String {
    let mut out = String::new();
    let mut next: Option<&(dyn Error + 'static)> = Some(err);
    while let Some(e) = next {
        let mut text = e.to_string();
        if let Some(io) = e.downcast_ref::<io::Error>()
            && let Some(code) = io.raw_os_error()
        {
            let suffix = format!(" (os error {code})");
            if let Some(stripped) = text.strip_suffix(&suffix) {
                text = stripped.to_owned();
            }
        }
        if !text.is_empty() && !out.ends_with(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
        next = e.source();
    }
    out
}

/// Whether a closed pipe caused `err`, anywhere in its chain of causes.
pub fn is_broken_pipe(err: &(dyn Error + 'static)) -> bool {
    let mut next: Option<&(dyn Error + 'static)> = Some(err);
    while let Some(e) = next {
        if e.downcast_ref::<io::Error>().is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe) {
            return true;
        }
        next = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot create out.lz")]
    struct Outer(#[source] io::Error);

    #[derive(Debug, thiserror::Error)]
    #[error("wrapped: {0}")]
    struct Inline(#[source] io::Error);

    #[test]
    fn chains_join_on_one_line_without_os_error_codes() {
        let e = Outer(io::Error::from_raw_os_error(libc::EACCES));
        assert_eq!(one_line(&e), "cannot create out.lz: Permission denied");
    }

    #[test]
    fn causes_already_printed_inline_are_not_repeated() {
        let e = Inline(io::Error::other("disk on fire"));
        assert_eq!(one_line(&e), "wrapped: disk on fire");
    }

    #[test]
    fn broken_pipe_is_found_anywhere_in_the_chain() {
        assert!(is_broken_pipe(&Outer(io::Error::from(io::ErrorKind::BrokenPipe))));
        assert!(is_broken_pipe(&io::Error::from(io::ErrorKind::BrokenPipe)));
        assert!(!is_broken_pipe(&Outer(io::Error::from(io::ErrorKind::NotFound))));
    }

    #[test]
    fn messages_are_forced_onto_one_line() {
        assert_eq!(format_message(Some("a\nb"), "x\ny"), "llmzip: a b: x y");
        assert_eq!(format_message(None, "usage"), "llmzip: usage");
    }

    #[test]
    fn exit_code_is_the_worst_severity_even_when_quiet() {
        let mut r = Reporter::new(Verbosity::Quiet);
        assert_eq!(r.exit_code(), EXIT_OK);
        r.warning(Some("a"), "w");
        assert_eq!(r.exit_code(), EXIT_WARNING);
        r.error(None, &io::Error::other("e"));
        assert_eq!(r.exit_code(), EXIT_ERROR);
        r.warning(None, "w again");
        assert_eq!(r.exit_code(), EXIT_ERROR);
    }
}
