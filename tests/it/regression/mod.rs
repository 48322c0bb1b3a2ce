//! One test per bug fixed, named after the bug, so that it stays fixed (ripgrep's `tests/regression.rs`).
//! Each test says what went wrong before; the fix is in the commit that added it. The files group the
//! bugs by where they were found.

/// Bugs a hostile test of the decoder, the lister and the CLI found (issue 15).
mod hostile;
/// Bugs in what was measured: `bench` and `c < FILE` saw another chunk layout than `c FILE`.
mod measure;
/// Bugs of the layering review: model set-up per file, settings passed twice, statistics parsed from
/// human text (issue 13).
mod sessions;
