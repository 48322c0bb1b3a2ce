//! Round trips through the library API with the synthetic model (seconds) and the real default model.

use std::io::Cursor;

use llmzip::container::Framing;
use llmzip::io::NoProgress;
use llmzip::mix::MixConfig;
use llmzip::pipeline::{CodecOptions, PipelineError, compress, decompress};

use crate::common;

fn round_trip_with(data: &[u8], opts: &CodecOptions) -> Vec<u8> {
    let mut archive = Vec::new();
    let stats = compress(&mut Cursor::new(data), &mut archive, opts, &NoProgress).expect("compress");
    assert_eq!(stats.original_bytes, data.len() as u64);
    assert_eq!(stats.archive_bytes, archive.len() as u64);
    let mut restored = Vec::new();
    decompress(&mut Cursor::new(&archive), &mut restored, opts, &NoProgress).expect("decompress");
    assert!(restored == data, "round trip changed {} bytes of input", data.len());
    archive
}

#[test]
fn edge_inputs_round_trip_model_coded() {
    let opts = CodecOptions { force_model: true, ..common::synthetic_opts() };
    let all_bytes: Vec<u8> = (0..=255u8).collect();
    let invalid_utf8 = b"caf\xc3\xa9 \xff\xfe broken \xe2\x82 tail \xf0\x9f\x98".to_vec();
    for data in [&b""[..], b"x", &all_bytes, &invalid_utf8, "naïve 日本語 text\n".as_bytes()] {
        round_trip_with(data, &opts);
    }
}

#[test]
fn text_spanning_many_windows_and_chunks_round_trips() {
    // Several chunks of 4 KiB, each of many 64-position windows: exercises window starts with overlap,
    // lanes finishing at different times, and the lock-step batch shrinking.
    let text = common::sample_text(20_000);
    let archive = round_trip_with(&text, &CodecOptions { force_model: true, ..common::synthetic_opts() });
    assert!(!archive.is_empty());
    // Overlap 0 (every window cold) and a single lane decode the same archive format.
    round_trip_with(
        &text[..5000],
        &CodecOptions { force_model: true, overlap: 0, lanes: 1, ..common::synthetic_opts() },
    );
}

#[test]
fn decoding_with_any_lane_count_gives_the_same_bytes() {
    let text = common::sample_text(12_000);
    let opts = CodecOptions { force_model: true, ..common::synthetic_opts() };
    let mut archive = Vec::new();
    compress(&mut Cursor::new(&text), &mut archive, &opts, &NoProgress).unwrap();
    for lanes in [1, 2, 3, 16] {
        let mut restored = Vec::new();
        decompress(
            &mut Cursor::new(&archive),
            &mut restored,
            &CodecOptions { lanes, ..opts.clone() },
            &NoProgress,
        )
        .unwrap();
        assert!(restored == text, "lanes={lanes}");
    }
}

/// Speculative decoding changes how many engine calls a decoder makes, never what it decodes: on text
/// that repeats itself (where drafts are right) and text that does not, with windows and with the
/// sliding cache, with and without the mixer, with one lane and several.
#[test]
fn speculative_decoding_gives_the_bytes_of_plain_decoding() {
    let mut text = common::sample_text(6_000);
    let repeated = text[1_000..3_000].to_vec();
    text.extend_from_slice(&repeated);
    text.extend_from_slice(&repeated);
    for (slide, mix) in
        [(Some(0), MixConfig::OFF), (Some(16), MixConfig::OFF), (None, MixConfig::recommended())]
    {
        let opts = CodecOptions { force_model: true, slide, mix, ..common::synthetic_opts() };
        let mut archive = Vec::new();
        compress(&mut Cursor::new(&text), &mut archive, &opts, &NoProgress).unwrap();
        for lanes in [1, 4] {
            let decode = |speculate: bool| {
                let mut restored = Vec::new();
                let o = CodecOptions { lanes, speculate, ..opts.clone() };
                let stats = decompress(&mut Cursor::new(&archive), &mut restored, &o, &NoProgress).unwrap();
                (restored, stats)
            };
            let (plain, plain_stats) = decode(false);
            let (guessed, stats) = decode(true);
            let what = format!("slide {slide:?}, mixer {}, {lanes} lanes", !mix.is_off());
            assert!(plain == text, "{what}: plain decoding");
            assert!(guessed == text, "{what}: speculative decoding");
            assert_eq!(plain_stats.drafted, 0, "{what}");
            assert!(stats.accepted > 0 && stats.accepted <= stats.drafted, "{what}: {stats:?}");
            assert!(
                stats.lane_calls + stats.accepted == plain_stats.lane_calls,
                "{what}: every confirmed guess saves one lane call ({stats:?} vs {plain_stats:?})"
            );
        }
    }
}

/// Progress events in the order the pipeline reports them: `(true, n)` for input, `(false, n)` for output.
#[derive(Default)]
struct Events(std::sync::Mutex<Vec<(bool, u64)>>);

impl llmzip::io::Progress for Events {
    fn add_input(&self, bytes: u64) {
        self.0.lock().unwrap().push((true, bytes));
    }
    fn add_output(&self, bytes: u64) {
        self.0.lock().unwrap().push((false, bytes));
    }
}

impl Events {
    /// Input bytes reported before the first output.
    fn input_before_first_output(&self) -> u64 {
        self.0.lock().unwrap().iter().take_while(|e| e.0).map(|e| e.1).sum()
    }
}

/// Digits in no pattern: one token a byte with the synthetic tokenizer, and nothing for drafts to guess.
fn digits(len: usize) -> Vec<u8> {
    common::random_bytes(len, 11).iter().map(|b| b'0' + b % 10).collect()
}

/// Compresses `data` with every chunk model-coded; returns the archive and its chunks' token counts.
fn coded_archive(data: &[u8], opts: &CodecOptions) -> (Vec<u8>, Vec<u32>) {
    let mut archive = Vec::new();
    compress(&mut Cursor::new(data), &mut archive, opts, &NoProgress).unwrap();
    let index = llmzip::container::read_archives(&mut Cursor::new(&archive)).unwrap();
    let tokens = index[0].chunks.iter().map(|c| c.tokens).collect();
    (archive, tokens)
}

/// The decoder writes a chunk as soon as it and every chunk before it are verified, not when the lanes
/// that decode it with others are all done: with one lane per chunk, the short first chunk is written
/// while the longer ones still decode.
#[test]
fn decoded_chunks_are_written_before_later_chunks_finish() {
    let mut data = common::sample_text(3000);
    data.extend_from_slice(&digits(6000));
    let opts = CodecOptions { force_model: true, lanes: 4, speculate: false, ..common::synthetic_opts() };
    let (archive, tokens) = coded_archive(&data, &opts);
    let longest_later = tokens[1..].iter().copied().max().unwrap_or(0);
    assert!(tokens.len() <= 4 && tokens[0] < longest_later, "the layout this test needs: {tokens:?}");
    let events = Events::default();
    let mut restored = Vec::new();
    decompress(&mut Cursor::new(&archive), &mut restored, &opts, &events).unwrap();
    assert!(restored == data);
    let log = events.0.lock().unwrap().clone();
    let first_output = log.iter().position(|e| !e.0).expect("output was reported");
    assert!(
        log[first_output + 1..].iter().any(|e| e.0),
        "chunk 0 was written only once all decoded: {log:?}"
    );
}

/// A lane that finishes takes the archive's next chunk at once: with two lanes, a long first chunk
/// (digits) and two shorter ones (English, which the tokenizer merges), the third chunk starts decoding
/// before the first is done, so more than the first two chunks' archive bytes are reported before the
/// first output.
#[test]
fn a_finished_lane_takes_the_next_chunk_while_others_decode() {
    let mut data = digits(4096);
    data.extend_from_slice(&common::sample_text(7000));
    let opts = CodecOptions { force_model: true, lanes: 2, speculate: false, ..common::synthetic_opts() };
    let (archive, tokens) = coded_archive(&data, &opts);
    assert!(tokens.len() == 3 && tokens[1] < tokens[0], "the layout this test needs: {tokens:?}");
    let index = llmzip::container::read_archives(&mut Cursor::new(&archive)).unwrap();
    let events = Events::default();
    let mut restored = Vec::new();
    decompress(&mut Cursor::new(&archive), &mut restored, &opts, &events).unwrap();
    assert!(restored == data);
    // A chunk's archive bytes: its 21-byte header, payload and 4-byte CRC (FORMAT.md, *Chunks*).
    let first_two: u64 = index[0].chunks[..2].iter().map(|c| 21 + c.payload_len as u64 + 4).sum();
    let before = events.input_before_first_output();
    assert!(
        before > first_two,
        "{before} archive bytes decoded before chunk 0 was written, {first_two} in chunks 0-1 ({tokens:?} tokens)"
    );
}

#[test]
fn random_bytes_are_stored_with_bounded_growth() {
    let data = common::random_bytes(1 << 20, 7);
    let opts = CodecOptions { chunk_bytes: 64 * 1024, ..common::synthetic_opts() };
    let archive = round_trip_with(&data, &opts);
    let growth = archive.len() as f64 - data.len() as f64;
    assert!(growth <= data.len() as f64 * 0.001 + 512.0, "1 MiB of random bytes grew by {growth} bytes");
}

#[test]
fn canterbury_files_round_trip() {
    let opts = common::synthetic_opts();
    for (name, data) in common::canterbury_files() {
        round_trip_named(&name, &data, &opts);
    }
}

/// A round trip that names the file when it fails.
fn round_trip_named(name: &str, data: &[u8], opts: &CodecOptions) {
    let mut archive = Vec::new();
    compress(&mut Cursor::new(data), &mut archive, opts, &NoProgress)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let mut restored = Vec::new();
    decompress(&mut Cursor::new(&archive), &mut restored, opts, &NoProgress)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    assert!(restored == data, "{name} did not round-trip");
}

/// The acceptance: every file of the corpora round-trips with the default schedule (a sliding
/// cache) and the mixer; the first 8 KiB of each keep it short, and with 4 KiB chunks of 64-position
/// caches that is still two chunks, dozens of slides and the mixer's tables on every position.
#[test]
fn every_data_file_round_trips_with_the_sliding_cache_and_the_mixer() {
    let opts = common::synthetic_opts();
    assert!(opts.slide() > 0 && !opts.mix.is_off(), "the defaults are what this test covers");
    for name in common::data_files() {
        round_trip_named(&name, &common::read_data_prefix(&name, 8 * 1024), &opts);
    }
}

/// The decoder takes schedule and mixer from the archive: options that would code differently do not
/// change what it decodes, and each setting gives an archive of its own.
#[test]
fn schedule_and_mixer_come_from_the_archive_not_the_options() {
    let text = common::sample_text(6000);
    let base = CodecOptions { force_model: true, ..common::synthetic_opts() };
    let variants = [
        base.clone(),
        CodecOptions { mix: MixConfig::OFF, ..base.clone() },
        CodecOptions { slide: Some(0), ..base.clone() },
        CodecOptions { slide: Some(0), mix: MixConfig::OFF, ..base.clone() },
        CodecOptions { slide: Some(40), ..base.clone() },
    ];
    let mut archives = Vec::new();
    for opts in &variants {
        let mut archive = Vec::new();
        compress(&mut Cursor::new(&text), &mut archive, opts, &NoProgress).unwrap();
        for other in &variants {
            let mut restored = Vec::new();
            decompress(&mut Cursor::new(&archive), &mut restored, other, &NoProgress).unwrap();
            assert!(restored == text);
        }
        assert!(!archives.contains(&archive), "two settings gave the same archive");
        archives.push(archive);
    }
    // Version 3 (the compact framing) for every setting; in the indexed framing, version 1 for the
    // window schedule without a mixer and version 2 otherwise.
    let version = |opts: &CodecOptions| {
        let mut archive = Vec::new();
        compress(&mut Cursor::new(&text[..500]), &mut archive, opts, &NoProgress).unwrap();
        u16::from_le_bytes([archive[8], archive[9]])
    };
    let versions: Vec<u16> = variants.iter().map(version).collect();
    assert_eq!(versions, [3, 3, 3, 3, 3]);
    let indexed = |o: &CodecOptions| version(&CodecOptions { framing: Framing::Indexed, ..o.clone() });
    assert_eq!(variants.iter().map(indexed).collect::<Vec<_>>(), [2, 2, 2, 1, 2]);
}

/// The mixer's tables and the slides are the same bits on every kernel path and thread count: the
/// archive is, and it decodes on any other path, thread count and lane grouping.
#[test]
fn sliding_and_mixing_archives_do_not_depend_on_path_threads_or_lanes() {
    let text = common::sample_text(9000);
    let mut archives = Vec::new();
    for path in llmzip::engine::KernelPath::available() {
        for threads in [1, 2] {
            let opts = CodecOptions { kernel: Some(path), threads, ..common::synthetic_opts() };
            let mut archive = Vec::new();
            compress(&mut Cursor::new(&text), &mut archive, &opts, &NoProgress).unwrap();
            archives.push((path, threads, archive));
        }
    }
    let (_, _, first) = &archives[0];
    for (path, threads, archive) in &archives {
        assert!(archive == first, "{path:?} with {threads} threads wrote another archive");
    }
    for (path, threads, lanes) in archives.iter().map(|(p, t, _)| (*p, *t, 4 - *t)) {
        let opts = CodecOptions { kernel: Some(path), threads, lanes, ..common::synthetic_opts() };
        let mut restored = Vec::new();
        decompress(&mut Cursor::new(first), &mut restored, &opts, &NoProgress).unwrap();
        assert!(restored == text, "decoding on {path:?}, {threads} threads, {lanes} lanes");
    }
}

#[test]
fn input_from_a_pipe_round_trips() {
    let text = common::sample_text(9000);
    let opts = CodecOptions { force_model: true, ..common::synthetic_opts() };
    let (mut reader, mut writer) = std::io::pipe().unwrap();
    let feeder = {
        let text = text.clone();
        std::thread::spawn(move || {
            use std::io::Write;
            for piece in text.chunks(1000) {
                writer.write_all(piece).unwrap();
            }
        })
    };
    let mut archive = Vec::new();
    compress(&mut reader, &mut archive, &opts, &NoProgress).unwrap();
    feeder.join().unwrap();
    let mut restored = Vec::new();
    decompress(&mut Cursor::new(&archive), &mut restored, &opts, &NoProgress).unwrap();
    assert!(restored == text);
}

#[test]
fn archive_made_with_another_model_names_the_model_it_needs() {
    let text = common::sample_text(3000);
    let opts = CodecOptions { force_model: true, ..common::synthetic_opts() };
    let mut archive = Vec::new();
    compress(&mut Cursor::new(&text), &mut archive, &opts, &NoProgress).unwrap();
    let other = CodecOptions {
        model: Some(common::synthetic_model_variant().to_string_lossy().into_owned()),
        ..opts
    };
    let err = decompress(&mut Cursor::new(&archive), &mut Vec::new(), &other, &NoProgress).unwrap_err();
    assert!(matches!(err, PipelineError::Model(_)), "{err}");
    let message = err.to_string();
    let needed = common::sha256_hex(&common::synthetic_model());
    let given = common::sha256_hex(&common::synthetic_model_variant());
    assert!(message.contains(&needed) && message.contains(&given), "{message}");
}
