//! One test per bug fixed, named after the bug, so that it stays fixed (ripgrep's `tests/regression.rs`).
//! Each says what went wrong before; the fix is in the commit that added the test.

use std::io::Cursor;
use std::path::Path;
use std::process::Command;

use llmzip::engine::KernelPath;
use llmzip::io::NoProgress;
use llmzip::model::{ModelSpec, Resolver};
use llmzip::pipeline::{
    CodecOptions, CodingParams, PipelineError, Session, Sessions, Stats, compress, compress_with,
    decompress_with,
};

use crate::common;

fn synthetic_opts() -> CodecOptions {
    CodecOptions {
        model: Some(common::synthetic_model().to_string_lossy().into_owned()),
        context: 64,
        overlap: 16,
        chunk_bytes: 2048,
        lanes: 4,
        force_model: true,
        ..CodecOptions::default()
    }
}

fn hidden() -> indicatif::ProgressBar {
    indicatif::ProgressBar::hidden()
}

/// `llmzip c a b c` resolved, hashed, loaded and self-checked the model once per file. Now the run keeps
/// one session: `-vv` reports one model set-up for three files, and each archive is the same as a
/// one-file run's.
#[test]
fn every_file_of_a_command_set_up_the_model_again() {
    let dir = tempfile::tempdir().unwrap();
    let texts: Vec<Vec<u8>> = (0..3).map(|i| common::sample_text(1500 + 500 * i)).collect();
    for (i, t) in texts.iter().enumerate() {
        std::fs::write(dir.path().join(format!("f{i}.txt")), t).unwrap();
    }
    let model = common::synthetic_model();
    let out = Command::new(env!("CARGO_BIN_EXE_llmzip"))
        .current_dir(dir.path())
        .args(["c", "-vv", "f0.txt", "f1.txt", "f2.txt", "--context", "64", "--model"])
        .arg(&model)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stderr.matches(") set up: ").count(), 1, "one model set-up for three files:\n{stderr}");
    let opts = CodecOptions {
        force_model: false,
        chunk_bytes: CodecOptions::default().chunk_bytes,
        overlap: 32,
        ..synthetic_opts()
    };
    for (i, t) in texts.iter().enumerate() {
        let mut alone = Vec::new();
        compress(&mut Cursor::new(t), &mut alone, &opts, &NoProgress).unwrap();
        let archive = std::fs::read(dir.path().join(format!("f{i}.txt.lz"))).unwrap();
        assert!(archive == alone, "file {i} of the run differs from compressing it alone");
    }

    // Decompressing the three archives with one `Sessions` opens the model once as well.
    let mut sessions = Sessions::new(&opts, hidden());
    for (i, t) in texts.iter().enumerate() {
        let archive = std::fs::read(dir.path().join(format!("f{i}.txt.lz"))).unwrap();
        let mut restored = Vec::new();
        decompress_with(&mut sessions, &mut Cursor::new(&archive), &mut restored, &opts, &NoProgress)
            .unwrap();
        assert!(restored == *t);
    }
    assert_eq!(sessions.opened(), 1);
}

/// A decoder keeping one session reopened nothing when the next archive had another model, or reused
/// the wrong one: sessions are told apart by the model's sha256.
#[test]
fn a_kept_session_served_only_archives_of_its_own_model() {
    let text = common::sample_text(1200);
    let a = synthetic_opts();
    let b = CodecOptions {
        model: Some(common::synthetic_model_variant().to_string_lossy().into_owned()),
        ..synthetic_opts()
    };
    let archive = |o: &CodecOptions| {
        let mut out = Vec::new();
        compress(&mut Cursor::new(&text), &mut out, o, &NoProgress).unwrap();
        out
    };
    let (archive_a, archive_b) = (archive(&a), archive(&b));
    // No --model: each archive's model is resolved from what the header names, so give it per archive.
    let mut sessions_a = Sessions::new(&a, hidden());
    let mut out = Vec::new();
    decompress_with(&mut sessions_a, &mut Cursor::new(&archive_a), &mut out, &a, &NoProgress).unwrap();
    // The kept session (model a) must not decode model b's archive: a new session is opened for it,
    // and since --model names model a, that is refused with both hashes.
    let err =
        decompress_with(&mut sessions_a, &mut Cursor::new(&archive_b), &mut Vec::new(), &a, &NoProgress)
            .unwrap_err();
    assert!(matches!(err, PipelineError::Model(_)), "{err}");
    assert_eq!(sessions_a.opened(), 2);
}

/// The model file was read twice (a streamed sha256, then a map for the engine), so the bytes loaded
/// were not the bytes verified. The resolver now parses the very map it hashed.
#[test]
fn the_model_file_was_read_twice() {
    let path = common::synthetic_model();
    let resolver = Resolver::from_env().unwrap();
    let (model, gguf) = resolver.open(&ModelSpec::Path(path.clone()), &hidden()).unwrap();
    let digest: [u8; 32] = {
        use sha2::Digest;
        sha2::Sha256::digest(gguf.bytes()).into()
    };
    assert_eq!(digest, model.sha256, "the parsed bytes are the hashed bytes");
    assert_eq!(common::sha256_hex(&path), llmzip::hex::encode(&model.sha256));
    assert_eq!(gguf.bytes().len() as u64, model.size);
}

/// The encoder took context and start token from its options and the tokenizer while the decoder took
/// them from the header. Both now use one `CodingParams`, and what the header carries is what was used.
#[test]
fn encoder_and_decoder_took_their_settings_from_different_places() {
    let opts = synthetic_opts();
    let session = Session::open(&opts, &hidden()).unwrap();
    let with = CodecOptions { context: 100, overlap: 30, slide: Some(0), ..opts.clone() };
    let params = session.coding_params(&with).unwrap();
    let header = session.header(&params, llmzip::container::Framing::Compact).unwrap();
    assert_eq!(CodingParams::of_header(&header).unwrap(), params);
    assert_eq!(params.start_token, session.tokenizer.start_token());
    assert_eq!(header.canary, session.canary(params.engine).unwrap());

    let text = common::sample_text(2500);
    let mut archive = Vec::new();
    compress_with(&session, &mut Cursor::new(&text), &mut archive, &with, &NoProgress).unwrap();
    let written = llmzip::container::read_tail(&mut Cursor::new(&archive)).unwrap().header;
    assert_eq!(CodingParams::of_header(&written).unwrap(), params);
}

/// `--context` beyond the model's limit was a `Settings(String)` error; callers could not tell it from
/// any other setting. It is a typed error now, naming the limit.
#[test]
fn settings_errors_were_strings() {
    let opts = CodecOptions { context: 8192, ..synthetic_opts() };
    let err = compress(&mut Cursor::new(b"some text"), &mut Vec::new(), &opts, &NoProgress).unwrap_err();
    match &err {
        PipelineError::ContextTooLong { context: 8192, max, .. } => {
            assert!(err.to_string().contains(&format!("limit of {max} positions")), "{err}");
        }
        other => panic!("expected ContextTooLong, got {other:?}"),
    }
}

/// `CodecOptions.kernel` was a string parsed late (a typo surfaced only when the model loaded); it is a
/// `KernelPath` now, and the session's engine runs the path asked for.
#[test]
fn the_kernel_option_was_a_string() {
    let opts = CodecOptions { kernel: Some(KernelPath::Scalar), ..synthetic_opts() };
    let session = Session::open(&opts, &hidden()).unwrap();
    assert_eq!(session.engine.kernel(), KernelPath::Scalar);
}

/// `llmzip bench` found the model's ideal code length by parsing the human `-v` line, so rewording that
/// line silently emptied a column. The figure now comes from a `--stats-file` record.
#[test]
fn bench_parsed_the_human_verbose_line() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("s.txt");
    std::fs::write(&input, common::sample_text(1500)).unwrap();
    // The real model: the synthetic one cannot shrink text, so it would model-code no window.
    let out = Command::new(env!("CARGO_BIN_EXE_llmzip"))
        .args(["bench", "--robot", "--against", "xz", "--model"])
        .arg(common::default_model())
        .arg(&input)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let row = stdout.lines().find(|l| l.contains("\tllmzip\t")).expect("an llmzip row");
    let ideal = row.split('\t').nth(11).unwrap();
    let (bytes, windows) = ideal.trim_end_matches(')').split_once(" (").unwrap_or_else(|| panic!("{row}"));
    assert!(bytes.parse::<f64>().unwrap() > 0.0 && windows.parse::<u64>().unwrap() >= 1, "{row}");

    // And the record the run appends is what `-v` shows, as data.
    let stats = dir.path().join("stats.tsv");
    let out = Command::new(env!("CARGO_BIN_EXE_llmzip"))
        .args(["c", "-c", "--stats-file"])
        .arg(&stats)
        .arg("--model")
        .arg(common::synthetic_model())
        .arg(&input)
        .output()
        .unwrap();
    assert!(out.status.success());
    let records = std::fs::read_to_string(&stats).unwrap();
    let (op, file, s) = Stats::from_record(records.lines().next().unwrap()).unwrap();
    assert_eq!((op.as_str(), Path::new(&file)), ("compress", input.as_path()));
    assert_eq!((s.original_bytes, s.archive_bytes), (1500, out.stdout.len() as u64));
}
