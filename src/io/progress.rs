//! How long-running work reports how far it has got, and the progress bar that shows it.
//!
//! The pipeline calls [`Progress`] as it consumes input and produces output; it knows nothing of
//! terminals. The CLI decides whether anyone sees it: a bar on stderr only when stderr is a terminal and
//! `-q` was not given (stdout carries data, so the bar never goes there).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use indicatif::{HumanBytes, ProgressDrawTarget, ProgressStyle};

/// Receives byte counts as work advances. `Sync` because the pipeline may report from worker threads.
pub trait Progress: Sync {
    /// `bytes` more of the input have been consumed (compressed bytes when decompressing).
    fn add_input(&self, bytes: u64);
    /// `bytes` more of the output have been produced.
    fn add_output(&self, bytes: u64);
}

/// Reports nowhere: for library callers and tests.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn add_input(&self, _bytes: u64) {}
    fn add_output(&self, _bytes: u64) {}
}

/// A progress bar on stderr over the input's bytes (named for where it draws, so it is not mistaken for
/// indicatif's `ProgressBar` it wraps): done, rate and ETA when the input size is known
/// (a file), a spinner with the count and rate otherwise (a pipe). The output's size follows as the
/// message.
pub struct StderrProgress {
    bar: indicatif::ProgressBar,
    output: AtomicU64,
}

impl StderrProgress {
    /// `label` names the input; `total` is its size in bytes when known. A bar that is not `visible`
    /// draws nothing and costs almost nothing.
    pub fn new(label: &str, total: Option<u64>, visible: bool) -> Self {
        let bar = match total {
            Some(n) => indicatif::ProgressBar::new(n).with_style(
                ProgressStyle::with_template(
                    "{prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta} {msg}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            ),
            None => indicatif::ProgressBar::new_spinner().with_style(
                ProgressStyle::with_template("{prefix} {spinner} {bytes} {bytes_per_sec} {msg}")
                    .expect("valid template"),
            ),
        };
        if visible {
            bar.set_draw_target(ProgressDrawTarget::stderr());
            if total.is_none() {
                bar.enable_steady_tick(Duration::from_millis(200));
            }
        } else {
            bar.set_draw_target(ProgressDrawTarget::hidden());
        }
        bar.set_prefix(label.to_owned());
        StderrProgress { bar, output: AtomicU64::new(0) }
    }

    /// Removes the bar from the terminal, so the next line on stderr starts clean.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }

    /// Input bytes reported so far.
    pub fn input_done(&self) -> u64 {
        self.bar.position()
    }

    /// Output bytes reported so far.
    pub fn output_done(&self) -> u64 {
        self.output.load(Ordering::Relaxed)
    }
}

impl Progress for StderrProgress {
    fn add_input(&self, bytes: u64) {
        self.bar.inc(bytes);
    }

    fn add_output(&self, bytes: u64) {
        let total = self.output.fetch_add(bytes, Ordering::Relaxed) + bytes;
        if !self.bar.is_hidden() {
            self.bar.set_message(format!("-> {}", HumanBytes(total)));
        }
    }
}

impl Drop for StderrProgress {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_bar_still_counts_from_several_threads() {
        let bar = StderrProgress::new("x", Some(1000), false);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..100 {
                        bar.add_input(2);
                        bar.add_output(3);
                    }
                });
            }
        });
        assert_eq!(bar.input_done(), 800);
        assert_eq!(bar.output_done(), 1200);
        bar.finish();
    }

    #[test]
    fn progress_is_usable_as_a_trait_object_across_threads() {
        fn takes(p: &dyn Progress) {
            std::thread::scope(|s| {
                s.spawn(|| p.add_input(1));
            });
        }
        takes(&NoProgress);
        takes(&StderrProgress::new("y", None, false));
    }
}
