//! How the model layer reports its slow work (a download, hashing a model file): a byte count against
//! a length, and a line saying what is being done. The caller decides whether anyone sees it: the CLI
//! passes a bar on stderr ([`super::progress_bar`], hidden under `-q`), library callers and tests
//! [`NoModelProgress`]. Layers above (the pipeline) pass it through without knowing what draws it.

/// Receives the model layer's progress. The methods are indicatif's names for the same operations, so
/// that its `ProgressBar` implements this trait as it is. `Send + Sync`, as that bar is, so that a
/// holder of one (the pipeline's `Sessions`) can move between threads.
pub trait ModelProgress: Send + Sync {
    /// The length of the work now in progress, in bytes.
    fn set_length(&self, len: u64);
    /// Bytes of it done so far.
    fn set_position(&self, pos: u64);
    /// `delta` more bytes done.
    fn inc(&self, delta: u64);
    /// What is being done, for people.
    fn set_message(&self, message: String);
    /// Starts over: position 0 and a new clock, before the next piece of work.
    fn reset(&self);
    /// The work is over: whatever was drawn is removed.
    fn finish_and_clear(&self);
}

/// Reports nowhere.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoModelProgress;

impl ModelProgress for NoModelProgress {
    fn set_length(&self, _len: u64) {}
    fn set_position(&self, _pos: u64) {}
    fn inc(&self, _delta: u64) {}
    fn set_message(&self, _message: String) {}
    fn reset(&self) {}
    fn finish_and_clear(&self) {}
}

impl ModelProgress for indicatif::ProgressBar {
    fn set_length(&self, len: u64) {
        indicatif::ProgressBar::set_length(self, len);
    }
    fn set_position(&self, pos: u64) {
        indicatif::ProgressBar::set_position(self, pos);
    }
    fn inc(&self, delta: u64) {
        indicatif::ProgressBar::inc(self, delta);
    }
    fn set_message(&self, message: String) {
        indicatif::ProgressBar::set_message(self, message);
    }
    fn reset(&self) {
        indicatif::ProgressBar::reset(self);
    }
    fn finish_and_clear(&self) {
        indicatif::ProgressBar::finish_and_clear(self);
    }
}
