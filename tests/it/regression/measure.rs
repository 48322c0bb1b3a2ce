//! One test per bug fixed, named after the bug, so that it stays fixed (ripgrep's `tests/regression.rs`).
//! Each says what went wrong before; the fix is in the commit that added the test.

use std::fs::File;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::common;

/// `llmzip c -c --model SYNTHETIC` with `stdin` as its input: the archive's bytes.
fn compress_stdin(stdin: Stdio, file_arg: Option<&Path>) -> Vec<u8> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_llmzip"));
    cmd.args(["c", "-c", "-q", "--model"]).arg(common::synthetic_model());
    if let Some(path) = file_arg {
        cmd.arg(path);
    }
    let out = cmd.stdin(stdin).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// The number of chunks `llmzip l --robot` reads in an archive.
fn chunks(archive: &[u8]) -> u64 {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.lz");
    std::fs::write(&path, archive).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_llmzip")).args(["l", "--robot"]).arg(&path).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let row =
        text.lines().find(|l| l.starts_with(path.to_str().unwrap())).unwrap_or_else(|| panic!("{text}"));
    row.split('\t').nth(2).unwrap().parse().unwrap_or_else(|_| panic!("{row}"))
}

/// `llmzip c < FILE` cut FILE as a stream (64 KiB chunks) while `llmzip c FILE` fits the chunks to the
/// file's size, so the two wrote different archives, and `llmzip bench`, which gives every tool its
/// input on stdin, measured the stream layout instead of the archives users get (the README's
/// alice29.txt figure was 3 chunks where `llmzip c alice29.txt` writes 4). stdin redirected from a
/// regular file now has the file's size; a pipe keeps the stream layout.
#[test]
fn stdin_from_a_file_was_cut_as_a_stream() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("text.txt");
    std::fs::write(&input, common::sample_text(100_000)).unwrap();
    let by_name = compress_stdin(Stdio::null(), Some(&input));
    let redirected = compress_stdin(File::open(&input).unwrap().into(), None);
    assert_eq!(chunks(&by_name), 3, "100,000 bytes fit 3 chunks of at least 32 KiB");
    assert!(redirected == by_name, "`c < FILE` and `c FILE` wrote different archives");

    // A pipe says nothing of its length: chunks of 64 KiB, as before.
    let mut cat = Command::new("cat").arg(&input).stdout(Stdio::piped()).spawn().unwrap();
    let piped = compress_stdin(cat.stdout.take().unwrap().into(), None);
    assert!(cat.wait().unwrap().success());
    assert_eq!(chunks(&piped), 2);

    // A redirected file already partly read: only what is left counts (here 40,000 bytes, one chunk).
    let mut partly = File::open(&input).unwrap();
    std::io::Seek::seek(&mut partly, std::io::SeekFrom::Start(60_000)).unwrap();
    let rest = compress_stdin(partly.into(), None);
    assert_eq!(chunks(&rest), 1);
}
