//! The coding parameters: everything besides the model file that decides which table codes which token.
//!
//! The encoder chooses them (from its options and its session), writes them into the archive header and
//! codes with them; the decoder reads them back from the header and decodes with them. Both sides hand
//! the same [`CodingParams`] value to the same window schedule and prefill code, so there is no second
//! source (an option, a tokenizer default) the two could take a setting from.
//!
//! The defaults of the user-facing settings live here too, once; the CLI and [`super::CodecOptions`]
//! both take them from this module.

use super::window::{Schedule, ScheduleError};
use crate::container::Header;

/// Positions per window when none is chosen (`--context`).
pub const DEFAULT_CONTEXT: u32 = 2048;
/// Carried-over tokens at the start of every later window when none is chosen (`--overlap`), unless
/// that is more than half the context (see [`default_overlap`]).
pub const DEFAULT_OVERLAP: u32 = 256;
/// Chunks the decoder advances in lock-step (the engine's batch) when none is chosen.
pub const DEFAULT_LANES: usize = 16;

/// The overlap used with `context` when none is chosen: [`DEFAULT_OVERLAP`], or half the context when
/// that is smaller, so short windows still code more tokens than they carry over.
pub fn default_overlap(context: u32) -> u32 {
    DEFAULT_OVERLAP.min(context / 2)
}

/// What both sides code with. Written into the header by the compressor ([`CodingParams::write_into`])
/// and read from it by the decompressor ([`CodingParams::of_header`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CodingParams {
    /// Positions per window.
    pub context: u32,
    /// Tokens of carried-over context at the start of every window but the first.
    pub overlap: u32,
    /// The token a cold window starts from (the tokenizer's beginning-of-sequence token when encoding).
    pub start_token: u32,
    /// Bits of the frequency tables' total (the quantizer's precision).
    pub precision_bits: u8,
}

impl CodingParams {
    /// The parameters an archive was made with.
    pub fn of_header(header: &Header) -> Self {
        CodingParams {
            context: header.context,
            overlap: header.overlap,
            start_token: header.start_token,
            precision_bits: header.precision_bits,
        }
    }

    /// Records the parameters in a header (the fields [`CodingParams::of_header`] reads back).
    pub fn write_into(&self, header: &mut Header) {
        header.context = self.context;
        header.overlap = self.overlap;
        header.start_token = self.start_token;
        header.precision_bits = self.precision_bits;
    }

    /// The window schedule over `tokens` tokens.
    pub fn schedule(&self, tokens: usize) -> Result<Schedule, ScheduleError> {
        Schedule::new(tokens, self.context as usize, self.overlap as usize)
    }

    /// The engine input of a cold window, as [`super::window::Window::context_tokens`] takes it.
    pub fn start(&self) -> [u32; 1] {
        [self.start_token]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_overlap_stays_below_half_the_context() {
        assert_eq!(default_overlap(DEFAULT_CONTEXT), DEFAULT_OVERLAP);
        assert_eq!(default_overlap(100), 50);
        assert_eq!(default_overlap(16), 8);
    }
}
