//! The `llmzip` binary as users drive it: names, overwrite rules, stdin/stdout, exit statuses, metadata,
//! broken pipes and interrupts (ARCHITECTURE.md section 6). The pure planning rules, including the
//! terminal refusals that need a real TTY to observe, are unit-tested in `src/cli/plan.rs`.

use std::fs;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// Extra arguments every c/d/t/l call gets, appended after the others: the small synthetic model, so
/// these tests of file handling run in seconds.
fn codec_args() -> Vec<String> {
    vec!["--model".into(), crate::common::synthetic_model().to_string_lossy().into_owned()]
}

fn llmzip(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_llmzip"));
    cmd.current_dir(dir).args(args);
    if matches!(args.first(), Some(&("c" | "d" | "t" | "l"))) {
        cmd.args(codec_args());
    }
    cmd.env_remove("LLMZIP_KERNEL");
    cmd
}

/// Runs to completion with stdin empty (never a terminal, so the terminal rules stay out of the way).
fn run(dir: &Path, args: &[&str]) -> Output {
    llmzip(dir, args).stdin(Stdio::null()).output().expect("spawn llmzip")
}

/// Runs with `input` on stdin.
fn run_with_stdin(dir: &Path, args: &[&str], input: &[u8]) -> Output {
    let mut child = llmzip(dir, args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn llmzip");
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    out
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn code(out: &Output) -> i32 {
    out.status
        .code()
        .unwrap_or_else(|| panic!("killed by a signal: {:?}; stderr: {}", out.status, stderr(out)))
}

/// Deterministic text, the kind of input llmzip is for.
fn text(bytes: usize) -> Vec<u8> {
    let mut s = Vec::with_capacity(bytes + 64);
    let mut i = 0u64;
    while s.len() < bytes {
        s.extend_from_slice(
            format!("Line {i}: the quick brown fox jumps over the lazy dog, {} times.\n", i * 7 % 13)
                .as_bytes(),
        );
        i += 1;
    }
    s.truncate(bytes);
    s
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

fn assert_no_temp_files(dir: &Path) {
    let temps: Vec<String> = names(dir).into_iter().filter(|n| n.contains(".tmp-")).collect();
    assert!(temps.is_empty(), "temp files left behind: {temps:?}");
}

fn setup(files: &[(&str, &[u8])]) -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, data) in files {
        fs::write(dir.path().join(name), data).unwrap();
    }
    dir
}

/// An archive of `data`, made by the binary itself.
fn archive_of(data: &[u8]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let out = run_with_stdin(dir.path(), &["c"], data);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    out.stdout
}

#[test]
fn compress_adds_lz_and_decompress_removes_it_keeping_inputs() {
    let data = text(5000);
    let dir = setup(&[("notes.txt", &data)]);
    let d = dir.path();

    let out = run(d, &["c", "notes.txt"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(out.stdout.is_empty() && out.stderr.is_empty());
    assert_eq!(names(d), vec!["notes.txt", "notes.txt.lz"]);

    fs::rename(d.join("notes.txt"), d.join("original")).unwrap();
    let out = run(d, &["d", "notes.txt.lz"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(fs::read(d.join("notes.txt")).unwrap(), data);
    assert!(d.join("notes.txt.lz").exists(), "input is kept by default");
    assert_no_temp_files(d);
}

#[test]
fn long_names_and_aliases_behave_the_same() {
    let data = text(300);
    let dir = setup(&[("a", &data)]);
    let out = run(dir.path(), &["compress", "-k", "a"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = run(dir.path(), &["decompress", "--stdout", "a.lz"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(out.stdout, data);
}

#[test]
fn compressing_an_lz_file_warns_and_exits_2() {
    let dir = setup(&[("x.lz", b"whatever"), ("y", b"plain")]);
    let out = run(dir.path(), &["c", "x.lz", "y"]);
    assert_eq!(code(&out), 2);
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("llmzip: x.lz: already has the .lz suffix"), "{err}");
    assert_eq!(names(dir.path()), vec!["x.lz", "y", "y.lz"], "the other file is still compressed");
}

#[test]
fn unknown_suffix_on_decompress_warns_with_a_hint_and_exits_2() {
    let archive = archive_of(b"hello");
    let dir = setup(&[("blob.bin", &archive)]);
    let out = run(dir.path(), &["d", "blob.bin"]);
    assert_eq!(code(&out), 2);
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("llmzip: blob.bin: unknown suffix") && err.contains("-o"), "{err}");
    assert_eq!(names(dir.path()), vec!["blob.bin"]);

    // -q hides the warning but not the status.
    let out = run(dir.path(), &["d", "-q", "blob.bin"]);
    assert_eq!(code(&out), 2);
    assert!(out.stderr.is_empty(), "{}", stderr(&out));

    // Following the hint works.
    let out = run(dir.path(), &["d", "blob.bin", "-o", "blob.txt"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(fs::read(dir.path().join("blob.txt")).unwrap(), b"hello");
}

#[test]
fn existing_output_is_refused_without_force_and_left_untouched() {
    let dir = setup(&[("a.txt", &text(2000)), ("a.txt.lz", b"precious")]);
    let out = run(dir.path(), &["c", "a.txt"]);
    assert_eq!(code(&out), 1);
    assert_eq!(stderr(&out), "llmzip: a.txt.lz: already exists; use -f to overwrite\n");
    assert_eq!(fs::read(dir.path().join("a.txt.lz")).unwrap(), b"precious");
    assert_no_temp_files(dir.path());
}

#[test]
fn force_overwrites_existing_output() {
    let data = text(2000);
    let dir = setup(&[("a.txt", &data), ("a.txt.lz", b"stale")]);
    let out = run(dir.path(), &["c", "-f", "a.txt"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_ne!(fs::read(dir.path().join("a.txt.lz")).unwrap(), b"stale");
    let out = run(dir.path(), &["d", "-c", "a.txt.lz"]);
    assert_eq!(out.stdout, data);
    assert_no_temp_files(dir.path());
}

#[test]
fn input_equal_to_output_is_refused_even_with_force() {
    let data = text(1000);
    let dir = setup(&[("a.txt", &data)]);
    for args in [&["c", "a.txt", "-o", "a.txt"][..], &["c", "-f", "a.txt", "-o", "./a.txt"][..]] {
        let out = run(dir.path(), args);
        assert_eq!(code(&out), 1, "{args:?}");
        assert!(stderr(&out).contains("same file"), "{}", stderr(&out));
        assert_eq!(fs::read(dir.path().join("a.txt")).unwrap(), data);
    }
    // The same file under two names (a hard link) is caught too.
    let archive = archive_of(&data);
    fs::write(dir.path().join("b.lz"), &archive).unwrap();
    fs::hard_link(dir.path().join("b.lz"), dir.path().join("b")).unwrap();
    let out = run(dir.path(), &["d", "-f", "b.lz"]);
    assert_eq!(code(&out), 1);
    assert!(stderr(&out).contains("same file"), "{}", stderr(&out));
    assert_eq!(fs::read(dir.path().join("b.lz")).unwrap(), archive);
    assert_no_temp_files(dir.path());
}

#[test]
fn dash_c_writes_stdout_and_keeps_the_input() {
    let data = text(4000);
    let dir = setup(&[("a.txt", &data)]);
    let out = run(dir.path(), &["c", "-c", "a.txt"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(names(dir.path()), vec!["a.txt"]);
    let back = run_with_stdin(dir.path(), &["d"], &out.stdout);
    assert_eq!(code(&back), 0, "{}", stderr(&back));
    assert_eq!(back.stdout, data);
}

#[test]
fn pipes_round_trip_through_stdin_and_stdout() {
    let data = text(100_000);
    let dir = tempfile::tempdir().unwrap();
    let packed = run_with_stdin(dir.path(), &["c"], &data);
    assert_eq!(code(&packed), 0, "{}", stderr(&packed));
    let unpacked = run_with_stdin(dir.path(), &["d", "-"], &packed.stdout);
    assert_eq!(code(&unpacked), 0, "{}", stderr(&unpacked));
    assert_eq!(unpacked.stdout, data);
    assert!(names(dir.path()).is_empty());
}

#[test]
fn dash_o_names_the_output_for_stdin_and_files() {
    let data = text(3000);
    let dir = setup(&[("in", &data)]);
    let out = run_with_stdin(dir.path(), &["c", "-o", "from-stdin.lz"], &data);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(out.stdout.is_empty());
    let out = run(dir.path(), &["d", "from-stdin.lz", "-o", "back"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(fs::read(dir.path().join("back")).unwrap(), data);
}

#[test]
fn rm_removes_the_input_only_after_success() {
    let data = text(3000);
    let dir = setup(&[("a.txt", &data)]);
    let out = run(dir.path(), &["c", "--rm", "a.txt"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(names(dir.path()), vec!["a.txt.lz"]);
    let out = run(dir.path(), &["d", "--rm", "a.txt.lz"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(names(dir.path()), vec!["a.txt"]);
    assert_eq!(fs::read(dir.path().join("a.txt")).unwrap(), data);

    // A failing job keeps its input and leaves no output.
    let mut broken = archive_of(&data);
    broken.truncate(broken.len() / 2);
    fs::write(dir.path().join("cut.lz"), &broken).unwrap();
    let out = run(dir.path(), &["d", "--rm", "cut.lz"]);
    assert_eq!(code(&out), 1);
    assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
    assert!(stderr(&out).starts_with("llmzip: cut.lz: "), "{}", stderr(&out));
    assert_eq!(fs::read(dir.path().join("cut.lz")).unwrap(), broken);
    assert_eq!(names(dir.path()), vec!["a.txt", "cut.lz"]);
}

#[test]
fn refused_output_keeps_the_input_under_rm() {
    let dir = setup(&[("a", b"data"), ("a.lz", b"existing")]);
    let out = run(dir.path(), &["c", "--rm", "a"]);
    assert_eq!(code(&out), 1);
    assert_eq!(fs::read(dir.path().join("a")).unwrap(), b"data");
}

#[test]
fn missing_input_is_one_line_and_exit_1_while_other_files_proceed() {
    let dir = setup(&[("there", b"present")]);
    let out = run(dir.path(), &["c", "missing.txt", "there"]);
    assert_eq!(code(&out), 1);
    assert_eq!(stderr(&out), "llmzip: missing.txt: no such file or directory\n");
    assert_eq!(names(dir.path()), vec!["there", "there.lz"]);
}

#[test]
fn corrupt_archive_fails_cleanly_without_output() {
    let dir = setup(&[("junk.lz", b"this is not an archive at all")]);
    let out = run(dir.path(), &["d", "junk.lz"]);
    assert_eq!(code(&out), 1);
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("llmzip: junk.lz: "), "{err}");
    assert_eq!(names(dir.path()), vec!["junk.lz"]);
    let out = run(dir.path(), &["t", "junk.lz"]);
    assert_eq!(code(&out), 1);
}

#[test]
fn test_decodes_and_writes_nothing() {
    let dir = setup(&[("a.lz", &archive_of(&text(2000)))]);
    let out = run(dir.path(), &["t", "a.lz"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(out.stdout.is_empty() && out.stderr.is_empty());
    assert_eq!(names(dir.path()), vec!["a.lz"]);
    let out = run(dir.path(), &["t", "-v", "a.lz"]);
    assert_eq!(code(&out), 0);
    let err = stderr(&out);
    assert!(err.starts_with("a.lz: OK, ") && err.contains("bits/byte") && err.contains("tokens/s"), "{err}");
}

#[test]
fn verbose_prints_statistics_to_stderr_only() {
    let data = text(2000);
    let dir = setup(&[("a", &data)]);
    let out = run(dir.path(), &["c", "-v", "-c", "a"]);
    assert_eq!(code(&out), 0);
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("a: 2000 -> ") && err.contains("ratio") && err.contains("bits/byte"), "{err}");
    // stdout is the archive and nothing else.
    let back = run_with_stdin(dir.path(), &["d"], &out.stdout);
    assert_eq!(back.stdout, data);
}

#[test]
fn list_prints_a_table_or_tab_separated_columns() {
    let dir = setup(&[("a.lz", &archive_of(&text(2000))), ("b.lz", &archive_of(b""))]);
    let out = run(dir.path(), &["l", "--robot", "a.lz", "b.lz"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let table = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert_eq!(lines[0], "name\tmodel\tchunks\tcompressed\tuncompressed\tratio\tbits_per_byte\tcheck");
    let a: Vec<&str> = lines[1].split('\t').collect();
    assert_eq!((a[0], a[4], a[7]), ("a.lz", "2000", "ok"));
    assert_eq!(a[3], fs::metadata(dir.path().join("a.lz")).unwrap().len().to_string());

    let out = run(dir.path(), &["l", "a.lz", "b.lz"]);
    assert_eq!(code(&out), 0);
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(table.starts_with("compressed  uncompressed  ratio"), "{table}");
    // The total, then the note on what `l` checked.
    assert!(table.lines().rev().nth(1).unwrap().ends_with("(total of 2)"), "{table}");
    assert_eq!(table.lines().last(), Some(llmzip::cli::listing::CHECK_NOTE));
}

/// The chunk count `l --robot` gives for `name`.
fn chunks_of(dir: &Path, name: &str) -> u64 {
    let out = run(dir, &["l", "--robot", name]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let table = String::from_utf8(out.stdout).unwrap();
    table.lines().nth(1).expect("a row").split('\t').nth(2).unwrap().parse().unwrap()
}

/// A file's size chooses its chunks, so the decoder gets lanes: 100 KB is cut into 3 chunks (of at
/// least 32 KiB each), where a pipe of the same bytes, or `--chunk-size 64K`, gives 2; and `--part`
/// cuts the file where its whole compression does.
#[test]
fn a_file_is_cut_into_chunks_for_the_decoders_lanes() {
    let data = text(100_000);
    let dir = setup(&[("a", &data)]);
    assert_eq!(code(&run(dir.path(), &["c", "-k", "a"])), 0);
    assert_eq!(chunks_of(dir.path(), "a.lz"), 3);
    let piped = run_with_stdin(dir.path(), &["c"], &data);
    fs::write(dir.path().join("p.lz"), &piped.stdout).unwrap();
    assert_eq!(chunks_of(dir.path(), "p.lz"), 2);
    assert_eq!(code(&run(dir.path(), &["c", "--chunk-size", "64K", "-o", "s.lz", "a"])), 0);
    assert_eq!(chunks_of(dir.path(), "s.lz"), 2);
    let part = run(dir.path(), &["c", "--part", "3/3", "-c", "a"]);
    assert_eq!(code(&part), 0, "{}", stderr(&part));
    fs::write(dir.path().join("part.lz"), &part.stdout).unwrap();
    assert_eq!(chunks_of(dir.path(), "part.lz"), 1, "the third of three chunks");
    for name in ["a.lz", "p.lz", "s.lz"] {
        let back = run(dir.path(), &["d", "-c", name]);
        assert!(back.stdout == data, "{name}");
    }
}

#[test]
fn usage_errors_exit_1_and_help_exits_0_on_stdout() {
    let dir = setup(&[("a", b"x"), ("b", b"y")]);
    for args in [
        &["c", "-c", "-o", "z", "a"][..],
        &["c", "-o", "z", "a", "b"],
        &["c", "--rm"],
        &["c", "--context", "8"],
        &["c", "--context", "64", "--overlap", "64"],
        &["c", "--bogus"],
        &["frobnicate"],
        &[],
    ] {
        let out = run(dir.path(), args);
        assert_eq!(code(&out), 1, "{args:?}: {}", stderr(&out));
        assert!(out.stdout.is_empty(), "{args:?}");
        assert!(!out.stderr.is_empty(), "{args:?}");
    }
    assert_eq!(names(dir.path()), vec!["a", "b"]);
    for args in [&["--help"][..], &["c", "--help"], &["--version"]] {
        let out = run(dir.path(), args);
        assert_eq!(code(&out), 0, "{args:?}");
        assert!(!out.stdout.is_empty() && out.stderr.is_empty(), "{args:?}");
    }
}

#[cfg(unix)]
#[test]
fn permissions_and_mtime_are_copied_both_ways() {
    use std::os::unix::fs::PermissionsExt;
    let dir = setup(&[("a.txt", &text(1500))]);
    let d = dir.path();
    let past = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_234_567_890);
    let f = fs::File::options().write(true).open(d.join("a.txt")).unwrap();
    f.set_modified(past).unwrap();
    drop(f);
    fs::set_permissions(d.join("a.txt"), fs::Permissions::from_mode(0o640)).unwrap();

    let out = run(d, &["c", "a.txt"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let m = fs::metadata(d.join("a.txt.lz")).unwrap();
    assert_eq!(m.permissions().mode() & 0o7777, 0o640);
    assert_eq!(m.modified().unwrap(), past);

    fs::set_permissions(d.join("a.txt.lz"), fs::Permissions::from_mode(0o604)).unwrap();
    let out = run(d, &["d", "a.txt.lz", "-o", "back.txt"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let m = fs::metadata(d.join("back.txt")).unwrap();
    assert_eq!(m.permissions().mode() & 0o7777, 0o604);
    assert_eq!(m.modified().unwrap(), past);
}

/// Starts `args` with stdout piped, reads `first` bytes, then closes the pipe as `head -c` would.
fn close_stdout_early(dir: &Path, args: &[&str], first: usize) -> Output {
    let mut child =
        llmzip(dir, args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut buf = vec![0u8; first];
    stdout.read_exact(&mut buf).unwrap();
    drop(stdout);
    child.wait_with_output().unwrap()
}

#[test]
fn broken_pipe_on_stdout_exits_0_quietly() {
    // Far more output than a pipe (64 KiB) and the output buffer hold, so writes hit the closed pipe.
    // Random bytes are stored, not model-coded: the archive is as large as the input, and the test
    // takes seconds where 1 MiB of text took minutes of (synthetic) model time; the output path
    // it checks is the same for stored and coded chunks.
    let data = crate::common::random_bytes(1 << 20, 7);
    let dir = setup(&[("big.txt", &data)]);
    let out = close_stdout_early(dir.path(), &["c", "-c", "big.txt"], 1);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(out.stderr.is_empty(), "{}", stderr(&out));

    let out = run(dir.path(), &["c", "big.txt"]);
    assert_eq!(code(&out), 0);
    let out = close_stdout_early(dir.path(), &["d", "-c", "big.txt.lz"], 1);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(out.stderr.is_empty(), "{}", stderr(&out));

    // With several files, the ones after the closed pipe are not attempted (nobody is reading).
    let out = close_stdout_early(dir.path(), &["d", "-c", "big.txt.lz", "missing.lz"], 1);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(out.stderr.is_empty(), "{}", stderr(&out));
}

fn wait_timeout(child: &mut Child, limit: Duration) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("llmzip did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn wait_for(what: &str, limit: Duration, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[cfg(unix)]
fn mkfifo(path: &Path) {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: `c` is a valid NUL-terminated path that outlives the call.
    let rc = unsafe { libc::mkfifo(c.as_ptr(), 0o644) };
    assert_eq!(rc, 0, "mkfifo: {}", std::io::Error::last_os_error());
}

/// Opens the FIFO's writing end once llmzip has opened its reading end, without ever blocking forever
/// (O_NONBLOCK fails with ENXIO until there is a reader), then switches it back to blocking writes.
#[cfg(unix)]
fn open_fifo_writer(path: &Path, child: &mut Child) -> fs::File {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    let start = Instant::now();
    loop {
        match fs::OpenOptions::new().write(true).custom_flags(libc::O_NONBLOCK).open(path) {
            Ok(f) => {
                // SAFETY: plain fcntl calls on a descriptor we own.
                unsafe {
                    let flags = libc::fcntl(f.as_raw_fd(), libc::F_GETFL);
                    libc::fcntl(f.as_raw_fd(), libc::F_SETFL, flags & !libc::O_NONBLOCK);
                }
                return f;
            }
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) => {}
            Err(e) => panic!("opening the FIFO: {e}"),
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("llmzip exited before reading its input: {status:?}");
        }
        assert!(start.elapsed() < Duration::from_secs(20), "llmzip never opened its input");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Interrupting a compression half-way must leave neither the output nor a temp file, and must not act
/// on `--rm`. The input is a FIFO the test feeds by hand, so the job is provably still running (its
/// temp file exists, and it is waiting for more input) however fast the pipeline is.
#[cfg(unix)]
#[test]
fn interrupt_mid_compression_removes_the_temp_file_and_keeps_the_input() {
    use std::os::unix::fs::FileTypeExt;
    for signal in [libc::SIGINT, libc::SIGTERM] {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let input = d.join("input");
        mkfifo(&input);
        let mut child = llmzip(d, &["c", "-f", "--rm", "input"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut writer = open_fifo_writer(&input, &mut child);
        writer.write_all(&text(200_000)).unwrap();
        writer.flush().unwrap();
        let temp_exists = || names(d).iter().any(|n| n.starts_with(".input.lz.tmp-"));
        wait_for("the temp file", Duration::from_secs(20), temp_exists);

        // SAFETY: sending a signal to our own child process.
        assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, signal) }, 0);
        let status = wait_timeout(&mut child, Duration::from_secs(20));
        drop(writer);
        assert_eq!(status.code(), Some(130), "signal {signal}: {status:?}");

        assert_eq!(names(d), vec!["input"], "signal {signal}: only the input may remain");
        assert!(fs::symlink_metadata(&input).unwrap().file_type().is_fifo());
    }
}

#[test]
fn directories_and_special_files_are_skipped_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    #[cfg(unix)]
    {
        mkfifo(&dir.path().join("fifo"));
        let out = run(dir.path(), &["c", "fifo"]);
        assert_eq!(code(&out), 2);
        assert!(stderr(&out).contains("not a regular file"), "{}", stderr(&out));
    }
    let out = run(dir.path(), &["c", "."]);
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("is a directory"), "{}", stderr(&out));
}

#[cfg(unix)]
#[test]
fn non_utf8_file_names_round_trip() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    let name = std::ffi::OsStr::from_bytes(b"caf\xe9.txt");
    fs::write(dir.path().join(name), b"bytes").unwrap();
    let out = llmzip(dir.path(), &["c"]).arg(name).stdin(Stdio::null()).output().unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let mut archive = name.to_owned();
    archive.push(".lz");
    fs::remove_file(dir.path().join(name)).unwrap();
    let out = llmzip(dir.path(), &["d"]).arg(&archive).stdin(Stdio::null()).output().unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(fs::read(dir.path().join(name)).unwrap(), b"bytes");
}

#[test]
fn models_subcommands_print_data_on_stdout_and_errors_on_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let models = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_llmzip"))
            .arg("models")
            .args(args)
            .env("LLMZIP_CACHE_DIR", &cache)
            .output()
            .unwrap()
    };
    let out = models(&["list"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(listing.contains("| smollm2-135m-instruct-q4_1 | llama | 98362432 | yes | no |"), "{listing}");

    let out = models(&["path", "no-such-model"]);
    assert_eq!(code(&out), 1);
    assert!(out.stdout.is_empty());
    assert!(stderr(&out).contains("smollm2-135m-instruct-q4_1"), "known ids are listed: {}", stderr(&out));

    // Importing a file that is not the model is refused and caches nothing.
    fs::write(dir.path().join("fake.gguf"), b"not the model").unwrap();
    let out =
        models(&["import", "smollm2-135m-instruct-q4_1", dir.path().join("fake.gguf").to_str().unwrap()]);
    assert_eq!(code(&out), 1);
    assert!(stderr(&out).contains("sha256") || stderr(&out).contains("size"), "{}", stderr(&out));
    assert_eq!(code(&models(&["path", "smollm2-135m-instruct-q4_1"])), 1, "nothing was cached");
}
