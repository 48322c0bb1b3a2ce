//! `llmzip bench`: the table, a missing tool, and a tool that fails its round trip.

use std::path::Path;
use std::process::Command;

use crate::common;

/// A directory to use as PATH: a real `xz`, a `gzip` that loses data on decompression, nothing else.
fn fake_path(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let xz = ["/usr/bin/xz", "/bin/xz"].into_iter().find(|p| Path::new(p).exists()).expect("xz is installed");
    std::os::unix::fs::symlink(xz, dir.join("xz")).unwrap();
    let gzip = dir.join("gzip");
    std::fs::write(&gzip, "#!/bin/sh\nif [ \"$1\" = -d ]; then /usr/bin/head -c 10; else /bin/cat; fi\n")
        .unwrap();
    std::fs::set_permissions(&gzip, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn bench_prints_a_row_per_tool_and_reports_failures() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    fake_path(&bin);
    let input = dir.path().join("sample.txt");
    std::fs::write(&input, common::sample_text(3000)).unwrap();
    let model = common::synthetic_model();
    let child = Command::new(env!("CARGO_BIN_EXE_llmzip"))
        .args(["bench", "--against", "xz,bzip2,gzip", "--max-bytes", "2000", "--model"])
        .arg(&model)
        .arg(&input)
        .env("PATH", &bin)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let scratch_prefix = format!("llmzip-bench-{}-", child.id());
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "a failed round trip is an error\n{stdout}\n{stderr}");
    assert!(stderr.contains("gzip did not round-trip sample.txt"), "{stderr}");
    let rows: Vec<&str> = stdout.lines().filter(|l| l.starts_with("| sample.txt")).collect();
    assert_eq!(rows.len(), 3, "xz, skipped bzip2 and llmzip rows:\n{stdout}");
    assert!(rows[0].starts_with("| sample.txt | xz | 2000 | "), "{}", rows[0]);
    assert!(rows[1].contains("| bzip2 | skipped: not found on PATH |"), "{}", rows[1]);
    assert!(rows[2].starts_with("| sample.txt | llmzip | 2000 | "), "{}", rows[2]);
    assert!(
        stdout.lines().next().unwrap().starts_with("| file | tool | original | compressed | bits/byte |")
    );
    // No scratch file is left behind.
    let pid_files = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(&scratch_prefix))
        .count();
    assert_eq!(pid_files, 0, "bench left temp files");
}

#[test]
fn bench_robot_output_is_tab_separated() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    fake_path(&bin);
    let input = dir.path().join("s.txt");
    std::fs::write(&input, common::sample_text(1500)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_llmzip"))
        .args(["bench", "--robot", "--against", "xz", "--model"])
        .arg(common::synthetic_model())
        .arg(&input)
        .env("PATH", &bin)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert!(lines.iter().all(|l| l.split('\t').count() == 12), "{stdout}");
}
