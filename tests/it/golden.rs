//! Golden archives: files committed under tests/golden that must keep decoding byte for byte. They pin
//! the format, the tokenizer, the quantizer, the coder and the engine's arithmetic at once; a change that
//! breaks them is a format or ENGINE_VERSION change, and needs new golden files made deliberately with
//! `cargo test --release --test it golden::regenerate -- --ignored`. The `*.v3.*` files are format
//! version 3 (the compact framing llmzip writes, with the default sliding cache and mixer; `*.gemma3.lz`
//! with Gemma 3 270M); `*.v2.*` version 2 (the indexed framing, a sliding cache and the mixer); the
//! others version 1 (the indexed framing, the window schedule, no mixer). llmzip still writes the
//! indexed framing when asked (`CodecOptions::framing`), so all of them are re-made byte for byte.
//! The `*.v3e2.*` files are format version 3 with engine version 2 (int8 keys and values, the newest
//! arithmetic); all the others engine version 1, which llmzip still computes when asked
//! (`CodecOptions::engine`).

use std::io::Cursor;
use std::path::{Path, PathBuf};

use llmzip::container::Framing;
use llmzip::engine::EngineVersion;
use llmzip::io::NoProgress;
use llmzip::mix::MixConfig;
use llmzip::pipeline::{CodecOptions, compress, decompress};

use crate::common;

fn golden(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(name)
}

/// (original, archive, settings) triples.
fn cases() -> Vec<(&'static str, &'static str, CodecOptions)> {
    let synthetic = common::synthetic_model();
    let real = common::default_model();
    // Version 3 and engine version 2: the default schedule (a sliding cache of 64 positions), the
    // default mixer and the default arithmetic.
    let v3e2 = |model: &Path| CodecOptions {
        model: Some(model.to_string_lossy().into_owned()),
        context: 64,
        chunk_bytes: 1024,
        force_model: true,
        ..CodecOptions::default()
    };
    // Version 3 in engine version 1.
    let v3 = |model: &Path| CodecOptions { engine: EngineVersion::V1, ..v3e2(model) };
    // Version 2: the same in the indexed framing.
    let v2 = |model: &Path| CodecOptions { framing: Framing::Indexed, ..v3(model) };
    let with = |model: &Path, force_model: bool| CodecOptions {
        model: Some(model.to_string_lossy().into_owned()),
        context: 64,
        overlap: 16,
        // Version-1 archives: the window schedule, no mixer.
        slide: Some(0),
        mix: MixConfig::OFF,
        framing: Framing::Indexed,
        engine: EngineVersion::V1,
        chunk_bytes: 1024,
        force_model,
        ..CodecOptions::default()
    };
    vec![
        ("alice-1500.txt", "alice-1500.synthetic.lz", with(&synthetic, true)),
        ("odd-bytes.bin", "odd-bytes.synthetic.lz", with(&synthetic, true)),
        ("alice-1500.txt", "alice-1500.smollm2.lz", with(&real, false)),
        ("odd-bytes.bin", "odd-bytes.smollm2.lz", with(&real, true)),
        ("alice-1500.txt", "alice-1500.v2.synthetic.lz", v2(&synthetic)),
        ("alice-1500.txt", "alice-1500.v2.smollm2.lz", v2(&real)),
        // Gemma 3 (28-bit tables, the SentencePiece tokenizer) on lines of the five multilingual man
        // pages: about 800 tokens in a 640-position sliding cache, so the cache slides and the local
        // layers' 512-position window moves.
        (
            "multilingual-2500.txt",
            "multilingual-2500.v2.gemma3.lz",
            CodecOptions { context: 640, chunk_bytes: 1 << 20, ..v2(&common::gemma_model()) },
        ),
        ("alice-1500.txt", "alice-1500.v3.synthetic.lz", v3(&synthetic)),
        ("alice-1500.txt", "alice-1500.v3.smollm2.lz", v3(&real)),
        (
            "multilingual-2500.txt",
            "multilingual-2500.v3.gemma3.lz",
            CodecOptions { context: 640, chunk_bytes: 1 << 20, ..v3(&common::gemma_model()) },
        ),
        ("alice-1500.txt", "alice-1500.v3e2.synthetic.lz", v3e2(&synthetic)),
        ("alice-1500.txt", "alice-1500.v3e2.smollm2.lz", v3e2(&real)),
        (
            "multilingual-2500.txt",
            "multilingual-2500.v3e2.gemma3.lz",
            CodecOptions { context: 640, chunk_bytes: 1 << 20, ..v3e2(&common::gemma_model()) },
        ),
    ]
}

#[test]
fn golden_archives_decode_byte_for_byte() {
    for (original, archive, opts) in cases() {
        let expected = std::fs::read(golden(original)).unwrap();
        let bytes = std::fs::read(golden(archive)).unwrap_or_else(|e| panic!("{archive}: {e}"));
        let mut out = Vec::new();
        decompress(&mut Cursor::new(&bytes), &mut out, &opts, &NoProgress)
            .unwrap_or_else(|e| panic!("{archive}: {e}"));
        assert!(out == expected, "{archive} no longer decodes to {original}");
        // And compressing again gives the very same bytes: the encoder is as stable as the decoder.
        let mut again = Vec::new();
        compress(&mut Cursor::new(&expected), &mut again, &opts, &NoProgress).unwrap();
        assert!(again == bytes, "compressing {original} no longer gives {archive}");
    }
}

#[test]
#[ignore = "writes new golden files; run by hand when the format or engine version changes"]
fn regenerate() {
    for (original, archive, opts) in cases() {
        let data = std::fs::read(golden(original)).unwrap();
        let mut out = Vec::new();
        compress(&mut Cursor::new(&data), &mut out, &opts, &NoProgress).unwrap();
        std::fs::write(golden(archive), out).unwrap();
    }
}
