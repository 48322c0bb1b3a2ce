//! One test per bug a hostile test of the decoder, the lister and the CLI found (issue 15), named after
//! the bug. Archives are made with the synthetic model, then edited with their checksums recomputed, as
//! an attacker (or a buggy writer) would.

use std::io::{Cursor, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Instant;

use clap::Parser;
use llmzip::cli::args::Cli;
use llmzip::cli::plan::{self, Env};
use llmzip::container::{ArchiveReader, FormatError, Framing, MAX_CONTEXT, read_archives, read_tail};
use llmzip::io::fs::SystemPaths;
use llmzip::io::{NoProgress, Progress};
use llmzip::pipeline::{CodecOptions, PipelineError, compress, decompress, list};

use crate::common;

fn archive_of(data: &[u8], opts: &CodecOptions) -> Vec<u8> {
    let mut out = Vec::new();
    compress(&mut Cursor::new(data), &mut out, opts, &NoProgress).expect("compress");
    out
}

fn decode(archive: &[u8]) -> Result<Vec<u8>, PipelineError> {
    let mut out = Vec::new();
    decompress(&mut Cursor::new(archive), &mut out, &common::synthetic_opts(), &NoProgress).map(|_| out)
}

fn crc(bytes: &[u8]) -> [u8; 4] {
    crc32fast::hash(bytes).to_le_bytes()
}

/// The header's length (its model id length is at byte 12).
fn header_len(archive: &[u8]) -> usize {
    106 + archive[12] as usize
}

/// Sets the header's u32 at `offset` past the model id (FORMAT.md: 82+n context, 86+n overlap) and
/// recomputes the header CRC.
fn set_header_u32(archive: &mut [u8], field: usize, value: u32) {
    let n = archive[12] as usize;
    archive[field + n..field + n + 4].copy_from_slice(&value.to_le_bytes());
    let end = 102 + n;
    let c = crc(&archive[..end]);
    archive[end..end + 4].copy_from_slice(&c);
}

/// An archive with `header` and the given chunks (kind, original length, tokens, payload, original CRC),
/// every checksum valid.
fn build(header: &[u8], chunks: &[(u8, u32, u32, Vec<u8>, u32)]) -> Vec<u8> {
    let mut out = header.to_vec();
    let mut index = vec![0xFF];
    index.extend_from_slice(&(chunks.len() as u64).to_le_bytes());
    let mut total = 0u64;
    for (kind, len, tokens, payload, original_crc) in chunks {
        let mut head = vec![*kind];
        head.extend_from_slice(&len.to_le_bytes());
        head.extend_from_slice(&tokens.to_le_bytes());
        head.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        head.extend_from_slice(&original_crc.to_le_bytes());
        let c = crc(&head);
        head.extend_from_slice(&c);
        out.extend_from_slice(&head);
        out.extend_from_slice(payload);
        out.extend_from_slice(&crc(payload));
        index.push(*kind);
        index.extend_from_slice(&len.to_le_bytes());
        index.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        index.extend_from_slice(&tokens.to_le_bytes());
        total += *len as u64;
    }
    let c = crc(&index);
    index.extend_from_slice(&c);
    out.extend_from_slice(&index);
    let mut footer = Vec::new();
    footer.extend_from_slice(&total.to_le_bytes());
    footer.extend_from_slice(&(chunks.len() as u64).to_le_bytes());
    footer.extend_from_slice(&0u32.to_le_bytes());
    footer.extend_from_slice(&(index.len() as u32).to_le_bytes());
    let c = crc(&footer);
    footer.extend_from_slice(&c);
    footer.extend_from_slice(b"LMZE");
    out.extend_from_slice(&footer);
    out
}

/// Format-version-1 archives (the indexed framing, the window schedule, no mixer): these tests edit
/// header fields at version 1's offsets. Version 1 is still read, so its defences must hold.
fn v1_opts() -> CodecOptions {
    CodecOptions {
        slide: Some(0),
        mix: llmzip::mix::MixConfig::OFF,
        framing: Framing::Indexed,
        ..common::synthetic_opts()
    }
}

#[test]
fn decoder_abort_on_a_large_header_context() {
    let archive = archive_of(b"a short text for the header", &v1_opts());
    // Beyond llmzip's own limit: refused by the container before any model is loaded or cache allocated.
    for context in [16_777_216, u32::MAX, 9000, 100_000] {
        let mut bad = archive.clone();
        set_header_u32(&mut bad, 82, context);
        let err = decode(&bad).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, PipelineError::Format(FormatError::Header(_))), "{context}: {msg}");
        assert!(msg.contains("corrupt or was made by something other than llmzip"), "{msg}");
        assert!(ArchiveReader::new(Cursor::new(&bad)).is_err());
        assert!(read_tail(&mut Cursor::new(&bad)).is_err());
    }
    // Within llmzip's limit but beyond the synthetic model's 4096 positions: refused once it is loaded.
    let mut bad = archive.clone();
    set_header_u32(&mut bad, 82, 5000);
    let msg = decode(&bad).unwrap_err().to_string();
    assert!(msg.contains("exceeds model") && msg.contains("4096"), "{msg}");
    // A corrupt context/overlap pair reads as a corrupt header, not as a usage error.
    let mut bad = archive.clone();
    set_header_u32(&mut bad, 86, 64);
    let msg = decode(&bad).unwrap_err().to_string();
    assert!(msg.starts_with("archive header: overlap 64 is not below the context 64"), "{msg}");
    // The CLI's range stays inside the container's.
    assert!(*llmzip::cli::args::CONTEXT_RANGE.end() <= i64::from(MAX_CONTEXT));
}

/// `archive` (version 3) with its header's context varint replaced by `context`, the CRC recomputed.
fn v3_with_context(archive: &[u8], context: u32) -> Vec<u8> {
    assert_eq!(archive[8], 3, "a version-3 archive");
    let (_, len) = llmzip::container::Header::read_from(&mut Cursor::new(archive)).unwrap();
    // Engine version (one varint byte while it is below 128) and precision, then the context.
    let at = 61 + archive[12] as usize + 2;
    let end = at + archive[at..].iter().position(|b| b & 0x80 == 0).unwrap() + 1;
    let mut out = archive[..at].to_vec();
    let mut v = context;
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
    out.extend_from_slice(&archive[end..len - 4]);
    let c = crc(&out);
    out.extend_from_slice(&c);
    out.extend_from_slice(&archive[len..]);
    out
}

/// The version-3 twin of `decoder_abort_on_a_large_header_context`: the compact header's context is a
/// varint, checked against the same limits before anything is sized by it.
#[test]
fn a_version_3_header_context_is_checked_before_anything_is_sized_by_it() {
    let archive = archive_of(b"a short text for the header", &common::synthetic_opts());
    assert_eq!(decode(&v3_with_context(&archive, 64)).unwrap(), decode(&archive).unwrap());
    for context in [16_777_216, u32::MAX, 9000] {
        let bad = v3_with_context(&archive, context);
        let err = decode(&bad).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, PipelineError::Format(FormatError::Header(_))), "{context}: {msg}");
        assert!(msg.contains("corrupt or was made by something other than llmzip"), "{msg}");
        assert!(read_tail(&mut Cursor::new(&bad)).is_err());
    }
    let msg = decode(&v3_with_context(&archive, 5000)).unwrap_err().to_string();
    assert!(msg.contains("exceeds model") && msg.contains("4096"), "{msg}");
}

/// A version-3 trailer whose count disagrees with the chunks (CRC recomputed) is refused by the decoder
/// and the lister alike, however large the count.
#[test]
fn a_version_3_trailer_count_that_disagrees_is_refused() {
    let archive = archive_of(&common::sample_text(3000), &common::synthetic_opts());
    let chunks = read_tail(&mut Cursor::new(&archive)).unwrap().chunks.len() as u64;
    let body = archive.len() - 10; // marker, a one-byte count, content CRC, trailer CRC
    assert_eq!((archive[body], archive[body + 1] as u64), (0xFF, chunks));
    for count in [chunks + 1, chunks - 1, 1 << 63, u64::MAX] {
        let mut bad = archive[..body + 1].to_vec();
        let mut v = count;
        while v >= 0x80 {
            bad.push(v as u8 | 0x80);
            v >>= 7;
        }
        bad.push(v as u8);
        bad.extend_from_slice(&archive[body + 2..archive.len() - 4]);
        let c = crc(&bad[body..]);
        bad.extend_from_slice(&c);
        let err = read_tail(&mut Cursor::new(&bad)).unwrap_err();
        assert!(matches!(err, FormatError::Trailer(_)), "count {count}: {err}");
        assert!(list(&mut Cursor::new(bad.clone()), &common::synthetic_opts()).is_err());
        let msg = decode(&bad).unwrap_err().to_string();
        assert!(msg.contains(&format!("{chunks} were read")), "{msg}");
    }
}

#[test]
fn list_panics_when_the_index_count_disagrees_with_the_footer() {
    let archive = archive_of(&common::sample_text(3000), &v1_opts());
    let info = read_tail(&mut Cursor::new(&archive)).unwrap();
    let chunks = info.chunks.len() as u64;
    let index_start = archive.len() - 32 - (13 + 13 * chunks as usize);
    for count in [chunks + 1, 2, 1 << 63, 1 << 33, u64::MAX] {
        if count == chunks {
            continue;
        }
        let mut bad = archive.clone();
        bad[index_start + 1..index_start + 9].copy_from_slice(&count.to_le_bytes());
        let end = archive.len() - 32 - 4;
        let c = crc(&bad[index_start..end]);
        bad[end..end + 4].copy_from_slice(&c);
        let err = read_tail(&mut Cursor::new(&bad)).unwrap_err();
        assert!(matches!(err, FormatError::Index(_)), "count {count}: {err}");
        assert!(list(&mut Cursor::new(bad.clone()), &common::synthetic_opts()).is_err());
        assert!(decode(&bad).is_err());
    }
}

/// Runs the binary through `sh` so a standard stream can be closed (`>&-`, `<&-`).
fn sh(dir: &Path, script: &str) -> std::process::Output {
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg(env!("CARGO_BIN_EXE_llmzip"))
        .arg(common::synthetic_model())
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[cfg(unix)]
#[test]
fn a_closed_stdout_or_stdin_counts_as_success() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f"), common::sample_text(500)).unwrap();
    let out = sh(dir.path(), r#""$0" c --model "$1" -c f >&-"#);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "c -c to a closed stdout: {err}");
    assert!(err.contains("standard output is closed"), "{err}");

    let out = sh(dir.path(), r#""$0" c --model "$1" f && "$0" d --model "$1" -c f.lz >&-"#);
    assert_eq!(
        out.status.code(),
        Some(1),
        "d -c to a closed stdout: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = sh(dir.path(), r#""$0" c --model "$1" -o out.lz <&-"#);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "c from a closed stdin: {err}");
    assert!(err.contains("standard input is closed"), "{err}");
    assert!(!dir.path().join("out.lz").exists(), "no archive of the empty input");
    // Nothing left behind, and an open stdout still works.
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names.len(), 2, "{names:?}");
    let out = sh(dir.path(), r#""$0" d --model "$1" -c f.lz"#);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(out.stdout, common::sample_text(500));
}

#[test]
fn high_entropy_input_is_model_coded_in_full_before_it_is_stored() {
    let data = common::random_bytes(1 << 20, 15);
    let opts = CodecOptions { chunk_bytes: 64 * 1024, ..common::synthetic_opts() };
    let started = Instant::now();
    let mut archive = Vec::new();
    let stats = compress(&mut Cursor::new(&data), &mut archive, &opts, &NoProgress).unwrap();
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(stats.stored_chunks, stats.chunks, "every chunk of random bytes is stored");
    assert_eq!(stats.tokens, 0, "the model never ran");
    // The format's own cost of storing: 38 bytes a chunk (chunk header, payload CRC, index entry).
    let growth = archive.len() as i64 - data.len() as i64;
    assert!(
        growth <= 200 + 38 * stats.chunks as i64,
        "{growth} bytes of growth over {} chunks",
        stats.chunks
    );
    // The model is loaded and the canary computed, nothing more.
    assert!(seconds < 2.0, "1 MiB of random bytes took {seconds:.2} s");
    assert_eq!(decode(&archive).unwrap(), data);
}

#[test]
fn normal_text_is_still_model_coded() {
    // The entropy shortcut leaves text to the model (whether the synthetic model then beats storing it
    // is its own business): the model path reports progress token by token, the shortcut once.
    let text = common::sample_text(4000);
    let progress = Recorder::default();
    let opts = CodecOptions { chunk_bytes: 1 << 20, ..common::synthetic_opts() };
    compress(&mut Cursor::new(&text), &mut Vec::new(), &opts, &progress).unwrap();
    let reports = progress.input.lock().unwrap().iter().filter(|&&n| n > 0).count();
    assert!(reports > 100, "{reports} progress reports: the model did not run");
}

#[test]
fn decompression_time_bomb() {
    let archive = archive_of(b"bomb", &v1_opts());
    let header = &archive[..header_len(&archive)];
    let payload: Vec<u8> = common::random_bytes(16, 7);
    // One coded chunk of 16 MiB and 3L tokens in a 16-byte payload: every checksum valid.
    let len = 16 << 20;
    let bomb = build(header, &[(1, len, 3 * len, payload.clone(), 0)]);
    assert!(bomb.len() < 300, "{}", bomb.len());
    let started = Instant::now();
    let err = decode(&bomb).unwrap_err();
    assert!(started.elapsed().as_secs_f64() < 5.0, "{:?}", started.elapsed());
    let msg = err.to_string();
    assert!(msg.contains("holds at most"), "{msg}");
    // Within the token bound, the lane stops as soon as its decoder reads past the payload's end.
    let bound = llmzip::coder::max_symbols(16, 300, 24);
    let tokens = (bound as u32).min(3 * 4096);
    let lane = build(header, &[(1, 4096, tokens, payload, 0)]);
    let started = Instant::now();
    let msg = decode(&lane).unwrap_err().to_string();
    assert!(started.elapsed().as_secs_f64() < 5.0, "{:?}", started.elapsed());
    assert!(msg.contains("past the end of its 16-byte payload"), "{msg}");
}

#[test]
fn list_misreports_files_of_several_archives() {
    let a = archive_of(&common::sample_text(1500), &v1_opts());
    let b = archive_of(b"a second, shorter text", &v1_opts());
    let both = [a.clone(), b.clone()].concat();
    let l = list(&mut Cursor::new(both.clone()), &common::synthetic_opts()).unwrap();
    let (ia, ib) = (read_tail(&mut Cursor::new(&a)).unwrap(), read_tail(&mut Cursor::new(&b)).unwrap());
    assert_eq!(l.archives, 2);
    assert_eq!(l.chunks, (ia.chunks.len() + ib.chunks.len()) as u64);
    assert_eq!(l.original_bytes, 1500 + 22);
    assert_eq!(l.archive_bytes, both.len() as u64);
    assert_eq!(read_archives(&mut Cursor::new(&both)).unwrap().len(), 2);
    // What `t` rejects, `l` rejects: garbage between, before or after the archives.
    for bad in [
        [a.clone(), b"garbage".to_vec(), b.clone()].concat(),
        [b"x".to_vec(), a.clone()].concat(),
        [a.clone(), b"trailing".to_vec()].concat(),
    ] {
        assert!(list(&mut Cursor::new(bad.clone()), &common::synthetic_opts()).is_err());
        assert!(decode(&bad).is_err());
    }
    // And the human table says what its check covered.
    assert!(llmzip::cli::listing::CHECK_NOTE.contains("llmzip t"));
}

fn plan_for(args: &[&str], cores: usize) -> plan::Plan {
    let cli = Cli::try_parse_from(args).unwrap();
    let (operation, file_args) = plan::file_operation(&cli.command).unwrap();
    let env = Env {
        stdin_is_terminal: false,
        stdout_is_terminal: false,
        available_threads: cores,
        speculate: true,
        paths: &SystemPaths,
    };
    plan::plan(operation, file_args, &env).unwrap()
}

#[test]
fn threads_far_above_the_cores_spin_for_minutes() {
    assert_eq!(plan_for(&["llmzip", "c", "--threads", "1024", "-c", "x"], 2).codec.threads, 2);
    assert_eq!(plan_for(&["llmzip", "d", "--threads", "4096", "-c", "x.lz"], 8).codec.threads, 8);
    assert_eq!(plan_for(&["llmzip", "c", "--threads", "1", "-c", "x"], 8).codec.threads, 1);
}

#[test]
fn models_fetch_through_a_fallback_exits_with_a_warning() {
    use llmzip::cli::plan::Verbosity;
    use llmzip::cli::report::Reporter;
    // `models fetch` reports its one-line note this way: seen, but the status stays 0.
    let reporter = Reporter::new(Verbosity::Normal);
    reporter
        .note(Some("smollm2-135m"), "fetched smollm2-135m from pip (earlier sources: hub failed: refused)");
    assert_eq!(reporter.exit_code(), 0);
}

#[test]
fn messages_name_the_real_problem() {
    let archive = archive_of(b"some text to damage", &v1_opts());
    // Trailing garbage after a valid archive.
    let msg = decode(&[archive.clone(), b"garbage!".to_vec()].concat()).unwrap_err().to_string();
    assert!(msg.contains("after the archive's end") && msg.contains(&archive.len().to_string()), "{msg}");
    // A flipped version or flags byte is corruption (the header CRC no longer matches)...
    for (at, xor) in [(8, 1u8), (8, 2), (10, 1), (11, 0x80)] {
        let mut bad = archive.clone();
        bad[at] ^= xor;
        let msg = decode(&bad).unwrap_err().to_string();
        assert!(msg.contains("corrupt") && !msg.contains("use a newer llmzip"), "byte {at}: {msg}");
    }
    // ... unless the CRC was recomputed: version 0 is no llmzip's, version 4 and flags a newer one's.
    let recrc = |mut b: Vec<u8>| {
        let end = 102 + b[12] as usize;
        let c = crc(&b[..end]);
        b[end..end + 4].copy_from_slice(&c);
        b
    };
    let mut v0 = archive.clone();
    v0[8] = 0;
    let msg = decode(&recrc(v0)).unwrap_err().to_string();
    assert!(msg.contains("version 0") && msg.contains("something other than llmzip"), "{msg}");
    let mut v4 = archive.clone();
    v4[8] = 4;
    assert!(decode(&recrc(v4)).unwrap_err().to_string().contains("use a newer llmzip"));
    // An edited canary (CRC recomputed) does not only blame the CPU.
    let mut canary = archive.clone();
    let at = 94 + canary[12] as usize;
    canary[at] ^= 1;
    let msg = decode(&recrc(canary)).unwrap_err().to_string();
    assert!(msg.contains("header was altered"), "{msg}");
    // A file cut inside the magic is truncated, not another format.
    for len in 1..8 {
        let err = ArchiveReader::new(Cursor::new(&archive[..len])).err().unwrap();
        assert!(matches!(err, FormatError::Truncated { .. }), "{len}: {err}");
    }
}

#[test]
fn decompress_refuses_an_overlap_it_ignores() {
    let p = plan_for(&["llmzip", "d", "--overlap", "5000", "-c", "x.lz"], 2);
    assert_eq!(p.items.len(), 1);
    let cli = Cli::try_parse_from(["llmzip", "c", "--overlap", "5000", "-c", "x"]).unwrap();
    let (operation, file_args) = plan::file_operation(&cli.command).unwrap();
    let env = Env {
        stdin_is_terminal: false,
        stdout_is_terminal: false,
        available_threads: 2,
        speculate: true,
        paths: &SystemPaths,
    };
    assert!(plan::plan(operation, file_args, &env).is_err(), "c still refuses it");
}

#[cfg(unix)]
#[test]
fn compress_follows_a_symlink_to_stdin() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("real"), b"data behind a link").unwrap();
    std::os::unix::fs::symlink("/proc/self/fd/0", dir.path().join("link")).unwrap();
    std::os::unix::fs::symlink("real", dir.path().join("alias")).unwrap();
    let out = sh(dir.path(), r#""$0" c --model "$1" link alias < real"#);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("link: is not a regular file") && err.contains("alias: is not a regular file"),
        "{err}"
    );
    assert!(!dir.path().join("link.lz").exists() && !dir.path().join("alias.lz").exists());
    // With -f the link is followed, as gzip does.
    let out = sh(dir.path(), r#""$0" c --model "$1" -f alias"#);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(dir.path().join("alias.lz").exists());
}

/// Every report, in order.
#[derive(Default)]
struct Recorder {
    input: Mutex<Vec<u64>>,
    output: Mutex<Vec<u64>>,
}

impl Progress for Recorder {
    fn add_input(&self, bytes: u64) {
        self.input.lock().unwrap().push(bytes);
    }
    fn add_output(&self, bytes: u64) {
        self.output.lock().unwrap().push(bytes);
    }
}

#[test]
fn the_progress_bar_does_not_move_inside_a_chunk() {
    let text = common::sample_text(6000);
    // One model-coded chunk (the synthetic model would not always beat storing it).
    let opts = CodecOptions { chunk_bytes: 1 << 20, force_model: true, ..v1_opts() };
    let progress = Recorder::default();
    let mut archive = Vec::new();
    let stats = compress(&mut Cursor::new(&text), &mut archive, &opts, &progress).unwrap();
    assert_eq!(stats.chunks, 1);
    let input = progress.input.lock().unwrap().clone();
    assert!(input.iter().filter(|&&n| n > 0).count() > 100, "compression reported {} steps", input.len());
    assert_eq!(input.iter().sum::<u64>(), text.len() as u64);
    let chunk_bytes = archive.len() as u64 - header_len(&archive) as u64 - tail_len(&archive);
    assert_eq!(progress.output.lock().unwrap().iter().sum::<u64>(), chunk_bytes);

    let progress = Recorder::default();
    let mut out = Vec::new();
    decompress(&mut Cursor::new(&archive), &mut out, &opts, &progress).unwrap();
    let input = progress.input.lock().unwrap().clone();
    assert!(input.iter().filter(|&&n| n > 0).count() > 100, "decompression reported {} steps", input.len());
    assert_eq!(input.iter().sum::<u64>(), chunk_bytes);
    assert_eq!(progress.output.lock().unwrap().iter().sum::<u64>(), text.len() as u64);
}

/// Index and footer bytes (like the header's, not reported by the per-chunk progress).
fn tail_len(archive: &[u8]) -> u64 {
    let info = read_tail(&mut Cursor::new(archive)).unwrap();
    13 + 13 * info.chunks.len() as u64 + 32
}

#[test]
fn stdin_reader_reads_normally_when_open() {
    // The closed-stdin guard must not get in the way of an open stdin (here: whatever the harness gives).
    let mut s = llmzip::io::stdio::stdin();
    let mut buf = [0u8; 0];
    let _ = s.read(&mut buf);
    let mut sink = llmzip::io::stdio::StdoutSink::new();
    sink.write_all(b"").unwrap();
}
