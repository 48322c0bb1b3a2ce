//! Compression levels `1..=9`: named presets of model, context schedule and mixer, as `-1` .. `-9`.
//!
//! A level is only a way to choose settings: the archive records the model, the schedule and the mixer
//! that were used (FORMAT.md), never the level, so `d` needs no level and a preset may change between
//! releases without breaking an archive. Explicit flags (`--model`, `--context`, `--slide`, `--overlap`,
//! `--no-mix`) override the part of the preset they name.
//!
//! What the levels trade, measured on one machine (README, *Levels*): the context length costs time in
//! attention (every token reads `context` keys per layer) and memory (the KV cache is `context`
//! positions per lane), and buys bits on long inputs; the mixer costs little time and saves bits on
//! repetitive text; Gemma 3 costs about twice the time per token of SmolLM2 and saves the most bits
//! beyond English, where its 262k vocabulary spells text in half the tokens.

use crate::mix::MixConfig;

/// The level used when none is given: exactly the settings llmzip used before levels existed.
pub const DEFAULT_LEVEL: u8 = 6;
/// `--fast`.
pub const FASTEST_LEVEL: u8 = 1;
/// `--best`.
pub const BEST_LEVEL: u8 = 9;

/// Registry id of the model levels [`GEMMA_FROM`] and above use.
pub const GEMMA_MODEL: &str = "gemma3-270m-q4_k_m";
/// The first level that runs Gemma 3 instead of the registry default.
pub const GEMMA_FROM: u8 = 8;

/// The settings one level stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Preset {
    /// Registry id, or `None` for the registry's default model (SmolLM2).
    pub model: Option<&'static str>,
    /// Positions in the model's cache.
    pub context: u32,
    /// Positions a full cache drops (the sliding schedule; always less than `context`).
    pub slide: u32,
    /// The mixer ([`MixConfig::OFF`]: none).
    pub mix: MixConfig,
}

/// The preset of `level`, or `None` outside `1..=9`.
pub fn preset(level: u8) -> Option<Preset> {
    let (context, slide, mix) = match level {
        1 => (256, 64, MixConfig::OFF),
        2 => (512, 128, MixConfig::OFF),
        3 => (512, 128, MixConfig::recommended()),
        4 => (1024, 256, MixConfig::recommended()),
        5 => (1536, 384, MixConfig::recommended()),
        6 => (2048, 512, MixConfig::recommended()),
        7 => (4096, 512, MixConfig::recommended()),
        8 => (1024, 256, MixConfig::recommended()),
        9 => (8192, 1024, MixConfig::recommended()),
        _ => return None,
    };
    let model = (level >= GEMMA_FROM).then_some(GEMMA_MODEL);
    Some(Preset { model, context, slide, mix })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::params::{DEFAULT_CONTEXT, default_slide};

    #[test]
    fn the_default_level_is_what_llmzip_did_before_levels() {
        let p = preset(DEFAULT_LEVEL).unwrap();
        assert_eq!(p.model, None);
        assert_eq!((p.context, p.slide), (DEFAULT_CONTEXT, default_slide(DEFAULT_CONTEXT)));
        assert_eq!(p.mix, MixConfig::recommended());
    }

    #[test]
    fn every_level_has_a_valid_schedule_and_nothing_outside_exists() {
        for level in FASTEST_LEVEL..=BEST_LEVEL {
            let p = preset(level).unwrap();
            assert!(p.slide > 0 && p.slide < p.context, "level {level}");
            assert!((16..=8192).contains(&p.context), "level {level}");
            assert_eq!(MixConfig::decode(&p.mix.encode()), Ok(p.mix), "level {level}");
        }
        assert_eq!(preset(0), None);
        assert_eq!(preset(10), None);
    }

    #[test]
    fn higher_levels_of_one_model_never_see_less_context_or_drop_the_mixer() {
        for level in (FASTEST_LEVEL..BEST_LEVEL).filter(|&l| l + 1 != GEMMA_FROM) {
            let (a, b) = (preset(level).unwrap(), preset(level + 1).unwrap());
            assert!(a.context <= b.context, "level {level}");
            assert_eq!(a.model, b.model, "level {level}");
            assert!(!(a.mix != MixConfig::OFF && b.mix == MixConfig::OFF), "level {level} drops the mixer");
        }
    }
}
