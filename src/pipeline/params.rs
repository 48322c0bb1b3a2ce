//! The coding parameters: everything besides the model file that decides which table codes which token.
//!
//! The encoder chooses them (from its options and its session), writes them into the archive header and
//! codes with them; the decoder reads them back from the header and decodes with them. Both sides hand
//! the same [`CodingParams`] value to the same window schedule and prefill code, so there is no second
//! source (an option, a tokenizer default) the two could take a setting from.
//!
//! The defaults of the user-facing settings live here too, once; the CLI and [`super::CodecOptions`]
//! both take them from this module.

use super::PipelineError;
use super::window::{Schedule, ScheduleError, Sliding};
use crate::container::Header;
use crate::engine::EngineVersion;
use crate::mix::MixConfig;

/// Positions per window when none is chosen (`--context`).
pub const DEFAULT_CONTEXT: u32 = 2048;
/// Carried-over tokens at the start of every later window when none is chosen (`--overlap`), unless
/// that is more than half the context (see [`default_overlap`]).
pub const DEFAULT_OVERLAP: u32 = 256;
/// Positions dropped from a full KV cache when none is chosen (`--slide`); 0 would select the window
/// schedule of [`DEFAULT_CONTEXT`] and [`DEFAULT_OVERLAP`] instead. See [`default_slide`].
pub const DEFAULT_SLIDE: u32 = 512;
/// Positions at the start of the cache a slide keeps: the start token, which the model attends to as a
/// sink (dropping it costs bits on every later token).
pub const SINK: u8 = 1;
/// Chunks the decoder advances in lock-step (the engine's batch) when none is chosen.
pub const DEFAULT_LANES: usize = 16;

/// The overlap used with `context` when none is chosen: [`DEFAULT_OVERLAP`], or half the context when
/// that is smaller, so short windows still code more tokens than they carry over.
pub fn default_overlap(context: u32) -> u32 {
    DEFAULT_OVERLAP.min(context / 2)
}

/// The slide used with `context` when none is chosen: [`DEFAULT_SLIDE`], or a quarter of the context
/// when that is smaller (at least 1), so every token keeps seeing most of the context.
pub fn default_slide(context: u32) -> u32 {
    DEFAULT_SLIDE.min(context / 4).max(1)
}

/// What both sides code with. Written into the header by the compressor ([`CodingParams::write_into`])
/// and read from it by the decompressor ([`CodingParams::of_header`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CodingParams {
    /// Positions per window.
    pub context: u32,
    /// Window schedule only (`slide == 0`): tokens of carried-over context at the start of every window
    /// but the first.
    pub overlap: u32,
    /// Sliding schedule: positions dropped (after the `sink`) each time the cache is full; 0 selects the
    /// window schedule.
    pub slide: u32,
    /// Sliding schedule: positions at the start of the cache a slide keeps (0 or 1).
    pub sink: u8,
    /// The token a cold window starts from (the tokenizer's beginning-of-sequence token when encoding).
    pub start_token: u32,
    /// Bits of the frequency tables' total (the quantizer's precision).
    pub precision_bits: u8,
    /// The mixer blended into every table ([`MixConfig::OFF`]: none).
    pub mix: MixConfig,
    /// The engine's arithmetic (which key/value cache, which attention).
    pub engine: EngineVersion,
}

impl CodingParams {
    /// The parameters an archive was made with; fails on an engine version or a mixer configuration
    /// this llmzip does not know, or a mixer that breaks its limits.
    pub fn of_header(header: &Header) -> Result<Self, PipelineError> {
        let engine =
            EngineVersion::from_number(header.engine_version).ok_or(PipelineError::EngineVersion {
                archive: header.engine_version,
                newest: EngineVersion::NEWEST.number(),
            })?;
        let mix = if header.mixer.is_empty() { MixConfig::OFF } else { MixConfig::decode(&header.mixer)? };
        Ok(CodingParams {
            context: header.context,
            overlap: header.overlap,
            slide: header.slide,
            sink: header.sink,
            start_token: header.start_token,
            precision_bits: header.precision_bits,
            mix,
            engine,
        })
    }

    /// Records the parameters in a header (the fields [`CodingParams::of_header`] reads back).
    pub fn write_into(&self, header: &mut Header) {
        header.context = self.context;
        header.overlap = self.overlap;
        header.slide = self.slide;
        header.sink = self.sink;
        header.start_token = self.start_token;
        header.precision_bits = self.precision_bits;
        header.engine_version = self.engine.number();
        header.mixer = if self.mix.is_off() { Vec::new() } else { self.mix.encode().to_vec() };
    }

    /// The window schedule over `tokens` tokens (with `slide == 0`).
    pub fn schedule(&self, tokens: usize) -> Result<Schedule, ScheduleError> {
        Schedule::new(tokens, self.context as usize, self.overlap as usize)
    }

    /// The sliding schedule, or `None` for the window schedule.
    pub fn sliding(&self) -> Option<Sliding> {
        (self.slide > 0).then_some(Sliding {
            context: self.context as usize,
            slide: self.slide as usize,
            sink: self.sink as usize,
        })
    }

    /// Checks that the parameters form a schedule (the header checks the same limits when it is read).
    pub fn check(&self) -> Result<(), ScheduleError> {
        match self.sliding() {
            Some(s) => Sliding::new(s.context, s.slide, s.sink).map(|_| ()),
            None => self.schedule(0).map(|_| ()),
        }
    }

    /// The engine input of a cold window, as [`super::window::Window::context_tokens`] takes it.
    pub fn start(&self) -> [u32; 1] {
        [self.start_token]
    }
}

/// How `llmzip l -v` names an archive's settings: the schedule and the mixer, in the words of the flags
/// that choose them (`--context`, `--slide`, `--overlap`, `--no-mix`), and the engine version.
impl std::fmt::Display for CodingParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "context {}, ", self.context)?;
        match self.sliding() {
            Some(s) => write!(f, "slide {}", s.slide)?,
            None => write!(f, "windows with overlap {}", self.overlap)?,
        }
        write!(f, ", mixer {}", if self.mix.is_off() { "off" } else { "on" })?;
        write!(f, ", engine {}", self.engine.number())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_read_as_the_flags_that_choose_them() {
        let p = CodingParams {
            context: 2048,
            overlap: 256,
            slide: 512,
            sink: SINK,
            start_token: 1,
            precision_bits: 24,
            mix: MixConfig::recommended(),
            engine: EngineVersion::NEWEST,
        };
        assert_eq!(p.to_string(), "context 2048, slide 512, mixer on, engine 2");
        let windows = CodingParams { slide: 0, mix: MixConfig::OFF, engine: EngineVersion::V1, ..p };
        assert_eq!(windows.to_string(), "context 2048, windows with overlap 256, mixer off, engine 1");
    }

    #[test]
    fn the_default_overlap_stays_below_half_the_context() {
        assert_eq!(default_overlap(DEFAULT_CONTEXT), DEFAULT_OVERLAP);
        assert_eq!(default_overlap(100), 50);
        assert_eq!(default_overlap(16), 8);
    }

    #[test]
    fn the_default_slide_leaves_most_of_the_context() {
        assert_eq!(default_slide(DEFAULT_CONTEXT), DEFAULT_SLIDE);
        assert_eq!(default_slide(64), 16);
        assert_eq!(default_slide(2), 1);
    }
}
