//! Pieces: compressing parts of an input (`c --part/--chunks`), cutting archives (`split`), joining them
//! (`join`), the chunk table (`l --index`), and the GNU parallel recipe of the README ("Many machines").
//!
//! The promise under test: the pieces of an input, compressed anywhere, join to exactly the archive one
//! `llmzip c` of the whole input writes, and every piece of an archive decodes alone to its byte range.

use std::io::Cursor;
use std::ops::Range;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use llmzip::container::{ChunkKind, Joiner, SplitError, part_range, scan};
use llmzip::io::NoProgress;
use llmzip::pipeline::{CodecOptions, PipelineError, chunk_spans, compress, decompress};

use crate::common;

const CHUNK: usize = 2048;

fn synthetic(force_model: bool) -> CodecOptions {
    CodecOptions {
        model: Some(common::synthetic_model().to_string_lossy().into_owned()),
        context: 64,
        overlap: 16,
        chunk_bytes: CHUNK,
        lanes: 4,
        force_model,
        ..CodecOptions::default()
    }
}

/// Text, then bytes no model shrinks, then text: coded and stored chunks in one archive.
fn mixed_input() -> Vec<u8> {
    let mut data = common::sample_text(5000);
    data.extend(common::random_bytes(3000, 7));
    data.extend(common::sample_text(9000)[5000..].iter());
    data
}

fn compress_with(data: &[u8], opts: &CodecOptions) -> Vec<u8> {
    let mut archive = Vec::new();
    compress(&mut Cursor::new(data), &mut archive, opts, &NoProgress).expect("compress");
    archive
}

fn decompress_with(archive: &[u8], opts: &CodecOptions) -> Vec<u8> {
    let mut out = Vec::new();
    decompress(&mut Cursor::new(archive), &mut out, opts, &NoProgress).expect("decompress");
    out
}

/// `llmzip join` through the library: every chunk of every input, in order, into one archive.
fn join(inputs: &[&[u8]]) -> Result<Vec<u8>, SplitError> {
    let layouts: Vec<_> = inputs.iter().map(|b| scan(&mut Cursor::new(b)).unwrap()).collect();
    let first = layouts.iter().find(|l| !l.chunks.is_empty()).unwrap_or(&layouts[0]);
    let mut joiner = Joiner::new(Vec::new(), &first.archives[0].header)?;
    for (bytes, layout) in inputs.iter().zip(&layouts) {
        for chunk in 0..layout.chunks.len() {
            joiner.copy(&mut Cursor::new(bytes), layout, chunk)?;
        }
    }
    Ok(joiner.finish()?)
}

/// `llmzip split --chunks` through the library.
fn split(archive: &[u8], range: Range<u64>) -> Vec<u8> {
    let layout = scan(&mut Cursor::new(archive)).unwrap();
    let archive_of = |c: u64| layout.chunks.get(c as usize).map_or(0, |p| p.archive);
    let mut joiner = Joiner::new(Vec::new(), &layout.archives[archive_of(range.start)].header).unwrap();
    for chunk in range {
        joiner.copy(&mut Cursor::new(archive), &layout, chunk as usize).unwrap();
    }
    joiner.finish().unwrap()
}

fn kinds(archive: &[u8]) -> Vec<ChunkKind> {
    scan(&mut Cursor::new(archive)).unwrap().chunks.iter().map(|c| c.entry.kind).collect()
}

#[test]
fn pieces_compressed_apart_join_to_the_one_machine_archive_byte_for_byte() {
    let data = mixed_input();
    let count = chunk_spans(&data[..], CHUNK).unwrap().len() as u64;
    for force in [false, true] {
        let opts = synthetic(force);
        let whole = compress_with(&data, &opts);
        assert_eq!(kinds(&whole).len() as u64, count);
        for n in [1u64, 2, 3, count + 2] {
            let pieces: Vec<Vec<u8>> = (1..=n)
                .map(|k| {
                    let piece = CodecOptions { chunk_range: Some(part_range(count, k, n)), ..opts.clone() };
                    compress_with(&data, &piece)
                })
                .collect();
            let refs: Vec<&[u8]> = pieces.iter().map(Vec::as_slice).collect();
            assert!(join(&refs).unwrap() == whole, "{n} pieces (force {force}) joined differ from the whole");
            // `cat` of the pieces, unjoined, decodes to the input too.
            assert!(decompress_with(&refs.concat(), &opts) == data);
        }
    }
}

#[test]
fn split_pieces_decode_alone_to_their_byte_ranges_and_join_back() {
    let data = mixed_input();
    let spans = chunk_spans(&data[..], CHUNK).unwrap();
    // Force coding of the text but let the random bytes be stored: join a coded and a stored archive of
    // the same input (the header does not record the choice), so one archive holds both kinds.
    let coded = compress_with(&data, &synthetic(true));
    let stored = compress_with(&data, &CodecOptions { force_model: false, ..synthetic(true) });
    let random_chunk = spans.iter().position(|s| s.start >= 5000).unwrap() as u64;
    let mixed = join(&[
        &split(&coded, 0..random_chunk),
        &split(&stored, random_chunk..random_chunk + 1),
        &split(&coded, random_chunk + 1..spans.len() as u64),
    ])
    .unwrap();
    let ks = kinds(&mixed);
    assert!(ks.contains(&ChunkKind::Stored) && ks.contains(&ChunkKind::Coded), "{ks:?}");
    assert!(decompress_with(&mixed, &synthetic(false)) == data);

    let count = spans.len() as u64;
    for archive in [&coded, &mixed] {
        for n in 1..=count {
            let mut parts = Vec::new();
            for k in 1..=n {
                let range = part_range(count, k, n);
                let piece = split(archive, range.clone());
                let bytes = if range.is_empty() {
                    0..0
                } else {
                    spans[range.start as usize].start as usize..spans[range.end as usize - 1].end as usize
                };
                assert!(decompress_with(&piece, &synthetic(false)) == data[bytes], "part {k}/{n}");
                parts.push(piece);
            }
            let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
            assert!(join(&refs).unwrap() == *archive, "the {n} parts of an archive join back to it");
        }
    }
}

#[test]
fn several_concatenated_archives_split_and_join_as_one_chunk_sequence() {
    let opts = synthetic(true);
    let (a, b, c) = (common::sample_text(3000), common::sample_text(500), common::sample_text(4500));
    let cat = [
        compress_with(&a, &opts),
        compress_with(&b, &opts),
        compress_with(&[], &opts),
        compress_with(&c, &opts),
    ]
    .concat();
    let layout = scan(&mut Cursor::new(&cat)).unwrap();
    assert_eq!(layout.archives.len(), 4);
    assert_eq!(layout.total_original(), (a.len() + b.len() + c.len()) as u64);
    // Chunks are numbered and placed across the archives: each archive's cuts, shifted by what precedes.
    let mut want = Vec::new();
    let mut base = 0;
    for part in [&a, &b, &c] {
        want.extend(chunk_spans(&part[..], CHUNK).unwrap().iter().map(|s| s.start + base));
        base += part.len() as u64;
    }
    let offsets: Vec<u64> = layout.chunks.iter().map(|c| c.original_offset).collect();
    assert_eq!(offsets, want);
    assert!(offsets.len() >= 5, "{offsets:?}");
    let all = [a.clone(), b.clone(), c.clone()].concat();
    let joined = join(&[&cat]).unwrap();
    assert_eq!(scan(&mut Cursor::new(&joined)).unwrap().archives.len(), 1);
    assert!(decompress_with(&joined, &opts) == all);
    // A piece across the archive boundaries decodes to the bytes across them.
    let piece = split(&cat, 1..5);
    let from = layout.chunks[1].original_offset as usize;
    let to = (layout.chunks[4].original_offset + layout.chunks[4].entry.original_len as u64) as usize;
    assert!(decompress_with(&piece, &opts) == all[from..to]);
}

#[test]
fn archives_of_other_models_or_settings_are_not_joined() {
    let text = common::sample_text(1000);
    let a = compress_with(&text, &synthetic(true));
    let other_model = CodecOptions {
        model: Some(common::synthetic_model_variant().to_string_lossy().into_owned()),
        ..synthetic(true)
    };
    let other_context = CodecOptions { context: 128, ..synthetic(true) };
    for other in [compress_with(&text, &other_model), compress_with(&text, &other_context)] {
        let e = join(&[&a, &other]).unwrap_err();
        assert!(matches!(e, SplitError::HeadersDiffer { archive: 1, .. }), "{e}");
        assert!(!e.to_string().contains('\n'));
    }
}

#[test]
fn a_chunk_range_beyond_the_input_is_an_error_not_a_short_archive() {
    let text = common::sample_text(5000); // 3 chunks
    for (range, ok) in [(0..3, true), (3..3, true), (2..4, false), (5..u64::MAX, false), (2..u64::MAX, true)]
    {
        let opts = CodecOptions { chunk_range: Some(range.clone()), ..synthetic(false) };
        let r = compress(&mut Cursor::new(&text), &mut Vec::new(), &opts, &NoProgress);
        match r {
            Ok(_) => assert!(ok, "{range:?} accepted"),
            Err(PipelineError::ChunkRange { count: 3, .. }) => assert!(!ok, "{range:?} refused"),
            Err(e) => panic!("{range:?}: {e}"),
        }
    }
}

#[test]
fn damaged_archives_are_refused_by_split_and_join() {
    let archive = compress_with(&common::sample_text(5000), &synthetic(true));
    let layout = scan(&mut Cursor::new(&archive)).unwrap();
    // A flipped bit in a payload is refused by the scan, which verifies every chunk, and by the copy
    // when the file changed after it was scanned.
    let mut bad = archive.clone();
    bad[layout.chunks[1].offset as usize + 30] ^= 4;
    assert!(join(&[&archive]).is_ok());
    let e = scan(&mut Cursor::new(&bad)).unwrap_err().to_string();
    assert!(e.contains("chunk 1 checksum mismatch"), "{e}");
    let mut joiner = Joiner::new(Vec::new(), &layout.archives[0].header).unwrap();
    let e = joiner.copy(&mut Cursor::new(&bad), &layout, 1).unwrap_err();
    assert!(matches!(e, SplitError::Format(_)), "{e}");
    // Every truncation is refused by the scan.
    for cut in [1, 20, archive.len() / 2, archive.len() - 1] {
        assert!(scan(&mut Cursor::new(&archive[..cut])).is_err(), "cut at {cut}");
    }
    // Garbage after the archive is named as such.
    let mut trailing = archive.clone();
    trailing.extend_from_slice(b"garbage!");
    let e = scan(&mut Cursor::new(&trailing)).unwrap_err().to_string();
    assert!(e.contains(&format!("at byte {}", archive.len())) && e.contains("trailing garbage"), "{e}");
}

// ---- The binary: `c --part`, `split`, `join`, `l --index`, and the README recipes. ----

fn llmzip(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_llmzip"))
        .current_dir(dir)
        .args(args)
        .stdin(Stdio::null())
        .env_remove("LLMZIP_KERNEL")
        .output()
        .expect("spawn llmzip")
}

fn ok(out: &Output) -> &[u8] {
    assert!(out.status.success(), "failed: {}", String::from_utf8_lossy(&out.stderr));
    &out.stdout
}

/// Exit 1 with exactly one line on stderr, which contains `want` (clap's usage errors add their
/// standard "For more information, try '--help'." after a blank line).
fn refused(out: &Output, want: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let lines = err.lines().filter(|l| !l.is_empty() && !l.starts_with("For more information"));
    assert_eq!(lines.count(), 1, "{err}");
    assert!(err.contains(want), "{err}");
}

/// Files in `dir`, hidden ones included (a leftover temp file would show).
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn cli_pieces_join_to_the_whole_and_split_parts_decode_alone() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let model = common::synthetic_model().to_string_lossy().into_owned();
    let data = mixed_input();
    std::fs::write(d.join("in.bin"), &data).unwrap();
    let m = ["--model", model.as_str(), "--chunk-size", "2K", "--context", "64"];
    fn with<'a>(args: &[&'a str], m: &[&'a str]) -> Vec<&'a str> {
        [args, m].concat()
    }
    ok(&llmzip(d, &with(&["c", "in.bin"], &m)));
    for k in 1..=3 {
        let (part, out) = (format!("{k}/3"), format!("p{k}.lz"));
        ok(&llmzip(d, &with(&["c", "in.bin", "--part", &part, "-o", &out], &m)));
    }
    ok(&llmzip(d, &["join", "p1.lz", "p2.lz", "p3.lz", "-o", "joined.lz"]));
    assert!(std::fs::read(d.join("joined.lz")).unwrap() == std::fs::read(d.join("in.bin.lz")).unwrap());

    // split --parts writes sorted names; each part decodes alone to its byte range.
    ok(&llmzip(d, &["split", "in.bin.lz", "--parts", "3"]));
    let spans = chunk_spans(&data[..], CHUNK).unwrap();
    let count = spans.len() as u64;
    for k in 1..=3u64 {
        let r = part_range(count, k, 3);
        let out = llmzip(d, &["d", "-c", &format!("in.bin.part{k}.lz"), "--model", &model]);
        let bytes = spans[r.start as usize].start as usize..spans[r.end as usize - 1].end as usize;
        assert!(ok(&out) == &data[bytes], "part {k}");
        assert!(
            std::fs::read(d.join(format!("in.bin.part{k}.lz"))).unwrap()
                == std::fs::read(d.join(format!("p{k}.lz"))).unwrap()
        );
    }
    // --chunks to stdout, and the chunk table.
    let piece = llmzip(d, &["split", "in.bin.lz", "--chunks", "1..3", "-c"]);
    std::fs::write(d.join("c13.lz"), ok(&piece)).unwrap();
    let out = llmzip(d, &["d", "-c", "c13.lz", "--model", &model]);
    assert!(ok(&out) == &data[spans[1].start as usize..spans[2].end as usize]);
    let table =
        String::from_utf8(ok(&llmzip(d, &["l", "--index", "--robot", "in.bin.lz"])).to_vec()).unwrap();
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(
        lines[0],
        "chunk\tkind\toffset\tbytes\toriginal_offset\toriginal_bytes\ttokens\tarchive\tname"
    );
    assert_eq!(lines.len() as u64, 1 + count);
    for (line, span) in lines[1..].iter().zip(&spans) {
        let cells: Vec<&str> = line.split('\t').collect();
        assert_eq!(cells[4].parse::<u64>().unwrap(), span.start);
        assert_eq!(cells[5].parse::<u64>().unwrap(), span.end - span.start);
    }
}

#[test]
fn cli_bad_ranges_and_misplaced_flags_fail_in_one_line_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let model = common::synthetic_model().to_string_lossy().into_owned();
    std::fs::write(d.join("t.txt"), common::sample_text(5000)).unwrap(); // 3 chunks of 2K
    ok(&llmzip(d, &["c", "t.txt", "--model", &model, "--chunk-size", "2K"]));
    let before = names(d);
    refused(
        &llmzip(d, &["split", "t.txt.lz", "--chunks", "2..9", "-o", "x.lz"]),
        "chunks 2..9 are not within",
    );
    refused(&llmzip(d, &["split", "t.txt.lz", "--chunks", "5.."]), "this input's 3 chunks");
    refused(&llmzip(d, &["split", "t.txt.lz", "--chunks", "3..1"]), "selects no chunks");
    refused(&llmzip(d, &["split", "t.txt.lz", "--part", "4/3"]), "is not K/N");
    refused(&llmzip(d, &["split", "t.txt", "--parts", "2"]), "not an llmzip archive");
    refused(
        &llmzip(
            d,
            &["c", "t.txt", "--model", &model, "--chunk-size", "2K", "--chunks", "3..4", "-o", "y.lz"],
        ),
        "3 chunks (0..3)",
    );
    refused(&llmzip(d, &["c", "t.txt", "--part", "1/2"]), "-o PATH or use -c");
    refused(&llmzip(d, &["d", "t.txt.lz", "--part", "1/2"]), "applies to `llmzip c` only");
    refused(&llmzip(d, &["join", "t.txt.lz"]), "join writes one archive");
    refused(&llmzip(d, &["join", "t.txt.lz", "-o", "t.txt.lz", "-f"]), "same file");
    refused(&llmzip(d, &["split", "t.txt.lz", "--part", "1/2", "-o", "t.txt"]), "already exists");
    // A damaged payload: every piece of --parts is withheld, not just the damaged one.
    let mut bad = std::fs::read(d.join("t.txt.lz")).unwrap();
    let layout = scan(&mut Cursor::new(&bad)).unwrap();
    bad[layout.chunks[2].offset as usize + 25] ^= 1;
    std::fs::write(d.join("bad.lz"), &bad).unwrap();
    let before_bad = names(d);
    refused(&llmzip(d, &["split", "bad.lz", "--parts", "3"]), "chunk 2 checksum mismatch");
    refused(&llmzip(d, &["join", "t.txt.lz", "bad.lz", "-o", "j.lz"]), "bad.lz: chunk 2 checksum");
    assert_eq!(names(d), before_bad);
    assert!(before.iter().all(|n| before_bad.contains(n)));
}

/// The README's GNU parallel recipe, both directions, with 2 local jobs and the real model on a small
/// file (text, then bytes the model cannot shrink, so the archive has coded and stored chunks).
#[test]
fn gnu_parallel_recipe_gives_the_one_machine_archive_and_parts_decode_alone() {
    let have = Command::new("parallel").arg("--version").stdout(Stdio::null()).status();
    assert!(
        have.is_ok_and(|s| s.success()),
        "GNU parallel is needed by this test (.ci/run installs the Debian package `parallel`)"
    );
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let model = common::default_model().to_string_lossy().into_owned();
    let mut data = common::sample_text(2200);
    data.extend(common::random_bytes(700, 3));
    std::fs::write(d.join("small.txt"), &data).unwrap();
    let bin = Path::new(env!("CARGO_BIN_EXE_llmzip")).parent().unwrap().to_string_lossy().into_owned();
    let script = format!(
        r#"set -euo pipefail
export PATH="{bin}:$PATH" LLMZIP_MODEL_ARGS="--model {model} --threads 1 --chunk-size 1K"
# one machine
llmzip c $LLMZIP_MODEL_ARGS -o one.lz small.txt
# many: compress part K of 2 in 2 jobs, keep their order (-k), join the concatenation
parallel -k -j2 llmzip c $LLMZIP_MODEL_ARGS -c --part {{}}/2 small.txt ::: 1 2 | llmzip join -o par.lz
cmp one.lz par.lz
# and back: cut part K of 2, decode it, in 2 jobs, in order
parallel -k -j2 "llmzip split --part {{}}/2 -c one.lz | llmzip d -c --model {model} --threads 1" ::: 1 2 > back.txt
cmp back.txt small.txt
llmzip split --parts 2 one.lz
"#
    );
    let out = Command::new("bash").arg("-c").arg(&script).current_dir(d).output().unwrap();
    assert!(out.status.success(), "recipe failed: {}", String::from_utf8_lossy(&out.stderr));
    let one = std::fs::read(d.join("one.lz")).unwrap();
    let ks = kinds(&one);
    assert!(ks.contains(&ChunkKind::Stored) && ks.contains(&ChunkKind::Coded), "{ks:?}");
    let spans = chunk_spans(&data[..], 1024).unwrap();
    for k in 1..=2u64 {
        let r = part_range(spans.len() as u64, k, 2);
        let part = std::fs::read(d.join(format!("one.part{k}.lz"))).unwrap();
        let opts = CodecOptions { model: Some(model.clone()), threads: 1, ..CodecOptions::default() };
        let bytes = spans[r.start as usize].start as usize..spans[r.end as usize - 1].end as usize;
        assert!(decompress_with(&part, &opts) == data[bytes], "part {k} of 2");
    }
}
