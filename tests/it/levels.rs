//! Compression levels through the binary: `-N`, `--fast` and `--best` write archives whose headers hold
//! the level's model, schedule and mixer; `d` needs no level; explicit flags win; `bench --levels`
//! measures one row per level.

use std::io::Cursor;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use llmzip::container::read_archives;
use llmzip::mix::MixConfig;
use llmzip::pipeline::level::{self, Preset};

use crate::common;

fn llmzip(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_llmzip"))
        .current_dir(dir)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("spawn llmzip")
}

fn ok(out: &Output) -> &[u8] {
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    &out.stdout
}

/// The settings an archive's (first) header records.
fn recorded(archive: &[u8]) -> (String, u32, u32, MixConfig) {
    let info = read_archives(&mut Cursor::new(archive)).expect("a valid archive");
    let h = &info[0].header;
    let mix = if h.mixer.is_empty() { MixConfig::OFF } else { MixConfig::decode(&h.mixer).unwrap() };
    (h.model_id.clone(), h.context, h.slide, mix)
}

fn expected(p: Preset) -> (String, u32, u32, MixConfig) {
    let model = p.model.map_or_else(|| llmzip::model::default_id().unwrap().to_string(), str::to_string);
    (model, p.context, p.slide, p.mix)
}

/// The fastest and the best level on the real models: each header holds its preset (Gemma 3 for
/// `--best`), and a plain `d` restores the bytes.
#[test]
fn levels_choose_model_schedule_and_mixer_and_decoding_needs_no_level() {
    // Both models into the cache, where the binary resolves ids.
    common::default_model();
    common::gemma_model();
    let dir = tempfile::tempdir().unwrap();
    let text =
        b"Levels are presets: -1 is the fastest, --best the smallest. \xe5\x9c\xa7\xe7\xb8\xae\n".repeat(3);
    std::fs::write(dir.path().join("t.txt"), &text).unwrap();
    for (flags, n) in
        [(&["-1"][..], 1), (&["-9", "--fast"][..], 1), (&["--best"][..], 9), (&["-2", "-9"][..], 9)]
    {
        let mut args = vec!["c", "-c"];
        args.extend_from_slice(flags);
        args.push("t.txt");
        let archive = ok(&llmzip(dir.path(), &args)).to_vec();
        assert_eq!(recorded(&archive), expected(level::preset(n).unwrap()), "{flags:?}");
        std::fs::write(dir.path().join("t.txt.lz"), &archive).unwrap();
        assert_eq!(ok(&llmzip(dir.path(), &["d", "-c", "t.txt.lz"])), &text[..], "{flags:?}");
        // `l -v` names what the level chose, read from the archive.
        let listing = String::from_utf8_lossy(ok(&llmzip(dir.path(), &["l", "-v", "t.txt.lz"]))).into_owned();
        let (model, context, slide, mix) = expected(level::preset(n).unwrap());
        let mixer = if mix.is_off() { "off" } else { "on" };
        let line =
            format!("t.txt.lz: model {model}, context {context}, slide {slide}, mixer {mixer}, engine 2");
        assert!(listing.lines().any(|l| l == line), "{flags:?}: no line {line:?} in\n{listing}");
    }
}

/// Explicit flags override the part of the preset they name; the rest stays the level's.
#[test]
fn explicit_flags_override_the_level() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("t.txt"), common::sample_text(600)).unwrap();
    let model = common::synthetic_model();
    let model = model.to_str().unwrap();
    let archive = ok(&llmzip(dir.path(), &["c", "-c", "-3", "--model", model, "t.txt"])).to_vec();
    let three = level::preset(3).unwrap();
    let (_, context, slide, mix) = recorded(&archive);
    assert_eq!((context, slide, mix), (three.context, three.slide, three.mix));

    let args = ["c", "-c", "-3", "--model", model, "--context", "64", "--no-mix", "t.txt"];
    let (_, context, slide, mix) = recorded(ok(&llmzip(dir.path(), &args)));
    assert_eq!((context, slide, mix), (64, 16, MixConfig::OFF), "the slide follows the explicit context");

    // Level 8, not 9: level 9's 8192 positions exceed the synthetic model's limit of 4096, which
    // `c` reports as an error naming `--context` rather than shortening the level's context.
    let args = ["c", "-c", "-8", "--model", model, "t.txt"];
    let (id, context, _, _) = recorded(ok(&llmzip(dir.path(), &args)));
    assert_eq!(context, level::preset(8).unwrap().context);
    assert_ne!(id, level::GEMMA_MODEL, "--model wins over the level's model");
}

/// `bench --levels` measures one llmzip row per level, each a verified round trip.
#[test]
fn bench_measures_one_row_per_level() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("s.txt");
    std::fs::write(&input, common::sample_text(1200)).unwrap();
    let model = common::synthetic_model();
    let out = Command::new(env!("CARGO_BIN_EXE_llmzip"))
        .args(["bench", "--robot", "--against", "xz", "--levels", "1,3", "--model"])
        .arg(&model)
        .arg(&input)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(ok(&out)).into_owned();
    let tools: Vec<&str> = stdout.lines().skip(1).map(|l| l.split('\t').nth(1).unwrap()).collect();
    assert_eq!(tools, ["xz", "llmzip -1", "llmzip -3"], "{stdout}");
    // Level 1 codes without the mixer, level 3 with it: the same model, different archives.
    let sizes: Vec<&str> = stdout.lines().skip(2).map(|l| l.split('\t').nth(3).unwrap()).collect();
    assert_ne!(sizes[0], sizes[1], "{stdout}");
    let bad =
        Command::new(env!("CARGO_BIN_EXE_llmzip")).args(["bench", "--levels", "0"]).arg(&input).output();
    let bad = bad.unwrap();
    assert_eq!(bad.status.code(), Some(1), "level 0 is a usage error");
    assert!(String::from_utf8_lossy(&bad.stderr).contains("0 is not in 1..=9"));
}
