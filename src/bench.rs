//! `llmzip bench`: llmzip next to the compressors users already have, on the same bytes, in one run.
//!
//! Every tool (llmzip included) runs as a child process reading a file on stdin and writing stdout to a
//! file, so wall time and peak memory (the child's own `ru_maxrss`, from `wait4`) are measured the same way
//! for all of them. Every round trip is compared byte for byte; a mismatch is an error, not a footnote.
//!
//! llmzip's own figures (the model's ideal code length) come as data: the child appends a
//! [`Stats::record`] to a file named by its hidden `--stats-file` flag, never from the human `-v` line.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::pipeline::Stats;

/// A compressor run at its strongest usual setting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tool {
    pub name: String,
    pub program: OsString,
    pub compress: Vec<OsString>,
    pub decompress: Vec<OsString>,
    /// The flag that makes compression append a statistics record to the path after it (llmzip only).
    pub stats_flag: Option<OsString>,
}

/// The external tools `--against` may name, with the settings the README quotes.
pub const KNOWN_TOOLS: &[(&str, &[&str], &[&str])] = &[
    ("gzip", &["-9", "-c"], &["-d", "-c"]),
    ("bzip2", &["-9", "-c"], &["-d", "-c"]),
    ("xz", &["-9e", "-T1", "-c"], &["-d", "-c"]),
    ("zstd", &["-19", "-q", "-c"], &["-d", "-q", "-c"]),
];

/// Why a benchmark could not be completed.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("unknown tool {0:?} in --against; known tools: gzip, bzip2, xz, zstd")]
    UnknownTool(String),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{tool} failed on {file}: {what}")]
    ToolFailed { tool: String, file: String, what: String },
    #[error("{tool} did not round-trip {file}: the decompressed bytes differ from the original")]
    RoundTrip { tool: String, file: String },
}

impl Tool {
    /// The tool named `name` from [`KNOWN_TOOLS`].
    pub fn known(name: &str) -> Result<Tool, BenchError> {
        let (_, c, d) = KNOWN_TOOLS
            .iter()
            .find(|(n, _, _)| *n == name)
            .ok_or_else(|| BenchError::UnknownTool(name.to_string()))?;
        Ok(Tool {
            name: name.to_string(),
            program: name.into(),
            compress: c.iter().map(OsString::from).collect(),
            decompress: d.iter().map(OsString::from).collect(),
            stats_flag: None,
        })
    }

    /// This llmzip binary, shown as `name`, with the given extra compression arguments (level, model,
    /// context...).
    pub fn llmzip(exe: PathBuf, name: &str, extra: &[OsString]) -> Tool {
        let mut compress: Vec<OsString> = vec!["c".into(), "-q".into(), "-c".into()];
        compress.extend(extra.iter().cloned());
        let mut decompress: Vec<OsString> = vec!["d".into(), "-q".into(), "-c".into()];
        // Decompression takes the model from the archive unless it is a local file, which must be passed.
        if let Some(i) = extra.iter().position(|a| a == "--model") {
            decompress.extend(extra[i..(i + 2).min(extra.len())].iter().cloned());
        }
        Tool {
            name: name.into(),
            program: exe.into(),
            compress,
            decompress,
            stats_flag: Some("--stats-file".into()),
        }
    }

    /// Whether the program can be found (a path that exists, or a name on PATH).
    pub fn available(&self) -> bool {
        let p = Path::new(&self.program);
        if p.components().count() > 1 {
            return p.is_file();
        }
        std::env::var_os("PATH")
            .map(|paths| std::env::split_paths(&paths).any(|d| d.join(p).is_file()))
            .unwrap_or(false)
    }
}

/// One row of the table.
#[derive(Clone, Debug)]
pub enum BenchRow {
    Measured(Measurement),
    Skipped { file: String, tool: String, why: String },
}

/// A verified round trip.
#[derive(Clone, Debug)]
pub struct Measurement {
    pub file: String,
    pub tool: String,
    pub original: u64,
    pub compressed: u64,
    pub compress_seconds: f64,
    pub decompress_seconds: f64,
    /// Peak resident memory of the compressing and decompressing process, in bytes (None if unknown).
    pub compress_peak: Option<u64>,
    pub decompress_peak: Option<u64>,
    /// llmzip only: the model's ideal code length in bytes for the windows it coded, and their count.
    pub ideal: Option<(f64, u64)>,
}

impl Measurement {
    pub fn bits_per_byte(&self) -> f64 {
        if self.original == 0 { 0.0 } else { self.compressed as f64 * 8.0 / self.original as f64 }
    }
}

/// The scratch files of one measurement; the caller owns and removes them.
pub struct Scratch<'a> {
    pub compressed: &'a Path,
    pub restored: &'a Path,
    /// Where a tool with a [`Tool::stats_flag`] appends its record; must be empty.
    pub stats: &'a Path,
}

/// Runs `tool` on `input` (already cut to the bytes to measure) and verifies the round trip.
pub fn measure(
    tool: &Tool,
    file_label: &str,
    input: &Path,
    scratch: &Scratch<'_>,
) -> Result<Measurement, BenchError> {
    let mut compress_args = tool.compress.clone();
    if let Some(flag) = &tool.stats_flag {
        compress_args.extend([flag.clone(), scratch.stats.as_os_str().to_owned()]);
    }
    let (compressed, restored) = (scratch.compressed, scratch.restored);
    let (compress_seconds, compress_peak, _) = run(tool, &compress_args, input, compressed, file_label)?;
    let (decompress_seconds, decompress_peak, _) =
        run(tool, &tool.decompress, compressed, restored, file_label)?;
    let ideal = match tool.stats_flag {
        // No model-coded window (every chunk stored): no model figure, as for the other tools.
        Some(_) => Some(ideal_from_record(tool, file_label, &read(scratch.stats)?)?).filter(|i| i.1 > 0),
        None => None,
    };
    let original = read(input)?;
    if read(restored)? != original {
        return Err(BenchError::RoundTrip { tool: tool.name.clone(), file: file_label.to_string() });
    }
    Ok(Measurement {
        file: file_label.to_string(),
        tool: tool.name.clone(),
        original: original.len() as u64,
        compressed: size(compressed)?,
        compress_seconds,
        decompress_seconds,
        compress_peak,
        decompress_peak,
        ideal,
    })
}

/// The model's ideal bytes and window count from the one statistics record the compressing child wrote.
fn ideal_from_record(tool: &Tool, file: &str, record: &[u8]) -> Result<(f64, u64), BenchError> {
    let text = String::from_utf8_lossy(record);
    let mut lines = text.lines();
    match (lines.next().and_then(Stats::from_record), lines.next()) {
        (Some((_, _, stats)), None) => Ok((stats.ideal_bits / 8.0, stats.windows)),
        _ => Err(BenchError::ToolFailed {
            tool: tool.name.clone(),
            file: file.to_string(),
            what: format!("expected one statistics record, found {:?}", text.trim_end()),
        }),
    }
}

fn read(path: &Path) -> Result<Vec<u8>, BenchError> {
    std::fs::read(path).map_err(|source| BenchError::Io { path: path.to_path_buf(), source })
}

fn size(path: &Path) -> Result<u64, BenchError> {
    std::fs::metadata(path)
        .map(|m| m.len())
        .map_err(|source| BenchError::Io { path: path.to_path_buf(), source })
}

/// Runs one child with `from` on stdin and `to` as stdout; returns wall seconds, peak RSS and what it
/// wrote on stderr.
fn run(
    tool: &Tool,
    args: &[OsString],
    from: &Path,
    to: &Path,
    file: &str,
) -> Result<(f64, Option<u64>, String), BenchError> {
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| BenchError::Io { path, source }
    };
    let stdin = File::open(from).map_err(io_err(from))?;
    let stdout = File::create(to).map_err(io_err(to))?;
    let started = Instant::now();
    let child = Command::new(&tool.program)
        .args(args)
        .stdin(stdin)
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| BenchError::ToolFailed {
            tool: tool.name.clone(),
            file: file.into(),
            what: e.to_string(),
        })?;
    let (status, peak) = wait_with_rusage(child).map_err(|e| BenchError::ToolFailed {
        tool: tool.name.clone(),
        file: file.into(),
        what: e.to_string(),
    })?;
    let seconds = started.elapsed().as_secs_f64();
    if !status.0 {
        return Err(BenchError::ToolFailed {
            tool: tool.name.clone(),
            file: file.into(),
            what: format!("exit status {}: {}", status.1, status.2.trim()),
        });
    }
    Ok((seconds, peak, status.2))
}

/// Waits for `child`, returning (success, exit code, stderr) and its peak RSS in bytes.
fn wait_with_rusage(mut child: std::process::Child) -> std::io::Result<((bool, i32, String), Option<u64>)> {
    use std::io::Read;
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        e.read_to_string(&mut stderr)?;
    }
    #[cfg(target_os = "linux")]
    {
        let mut status: libc::c_int = 0;
        // SAFETY: an all-zero rusage is a valid value for the kernel to fill in.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: the pid is our own child, not yet reaped; pointers are to live locals.
        let pid = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
        if pid < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let ok = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
        let code = if libc::WIFEXITED(status) { libc::WEXITSTATUS(status) } else { -1 };
        // ru_maxrss is in KiB on Linux.
        Ok(((ok, code, stderr), Some(usage.ru_maxrss as u64 * 1024)))
    }
    #[cfg(not(target_os = "linux"))]
    {
        let status = child.wait()?;
        Ok(((status.success(), status.code().unwrap_or(-1), stderr), None))
    }
}

/// Formats the rows as a Markdown table (or tab-separated values with `robot`), with each tool's size
/// relative to xz's on the same file when xz was measured.
pub fn format_table(rows: &[BenchRow], robot: bool) -> String {
    let xz_size = |file: &str| {
        rows.iter().find_map(|r| match r {
            BenchRow::Measured(m) if m.file == file && m.tool == "xz" => Some(m.compressed),
            _ => None,
        })
    };
    let mut out = String::new();
    let header = [
        "file",
        "tool",
        "original",
        "compressed",
        "bits/byte",
        "x smaller than xz",
        "compress s",
        "compress KB/s",
        "decompress s",
        "decompress KB/s",
        "peak MB (c/d)",
        "model ideal bytes (windows)",
    ];
    if robot {
        out.push_str(&header.join("\t"));
        out.push('\n');
    } else {
        let _ = writeln!(out, "| {} |", header.join(" | "));
        let _ = writeln!(out, "|{}", "---|".repeat(header.len()));
    }
    for row in rows {
        let cells: Vec<String> = match row {
            BenchRow::Skipped { file, tool, why } => {
                let mut c = vec![file.clone(), tool.clone(), format!("skipped: {why}")];
                c.resize(header.len(), String::new());
                c
            }
            BenchRow::Measured(m) => {
                let kbs = |s: f64| {
                    if s > 0.0 { format!("{:.1}", m.original as f64 / 1000.0 / s) } else { "-".into() }
                };
                let mb = |p: Option<u64>| p.map_or("-".to_string(), |b| format!("{:.0}", b as f64 / 1e6));
                vec![
                    m.file.clone(),
                    m.tool.clone(),
                    m.original.to_string(),
                    m.compressed.to_string(),
                    format!("{:.3}", m.bits_per_byte()),
                    xz_size(&m.file)
                        .filter(|_| m.compressed > 0)
                        .map_or("-".into(), |x| format!("{:.2}", x as f64 / m.compressed as f64)),
                    format!("{:.2}", m.compress_seconds),
                    kbs(m.compress_seconds),
                    format!("{:.2}", m.decompress_seconds),
                    kbs(m.decompress_seconds),
                    format!("{}/{}", mb(m.compress_peak), mb(m.decompress_peak)),
                    m.ideal.map_or("-".into(), |(bytes, windows)| format!("{bytes:.0} ({windows})")),
                ]
            }
        };
        if robot {
            out.push_str(&cells.join("\t"));
            out.push('\n');
        } else {
            let _ = writeln!(out, "| {} |", cells.join(" | "));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(tool: &str, compressed: u64) -> BenchRow {
        BenchRow::Measured(Measurement {
            file: "f".into(),
            tool: tool.into(),
            original: 1000,
            compressed,
            compress_seconds: 0.5,
            decompress_seconds: 0.25,
            compress_peak: Some(2_000_000),
            decompress_peak: None,
            ideal: (tool == "llmzip").then_some((190.4, 3)),
        })
    }

    #[test]
    fn table_has_one_line_per_row_and_ratios_to_xz() {
        let rows = vec![
            m("xz", 400),
            m("llmzip", 200),
            BenchRow::Skipped { file: "f".into(), tool: "zstd".into(), why: "not found on PATH".into() },
        ];
        let md = format_table(&rows, false);
        let lines: Vec<&str> = md.lines().collect();
        assert_eq!(lines.len(), 5);
        assert!(
            lines[3].starts_with(
                "| f | llmzip | 1000 | 200 | 1.600 | 2.00 | 0.50 | 2.0 | 0.25 | 4.0 | 2/- | 190 (3) |"
            ),
            "{}",
            lines[3]
        );
        assert!(lines[4].contains("skipped: not found on PATH"));
        let tsv = format_table(&rows, true);
        assert_eq!(tsv.lines().nth(1).unwrap().split('\t').count(), 12);
        assert!(md.lines().nth(2).unwrap().ends_with("| - |"), "xz has no model figure");
    }

    #[test]
    fn the_ideal_code_length_is_read_from_the_statistics_record() {
        let tool = Tool::llmzip("llmzip".into(), "llmzip", &[]);
        let stats = Stats { ideal_bits: 1920.0, windows: 2, ..Stats::default() };
        let record = stats.record("compress", "-");
        assert_eq!(ideal_from_record(&tool, "f", record.as_bytes()).unwrap(), (240.0, 2));
        assert!(ideal_from_record(&tool, "f", b"").is_err(), "no record");
        assert!(ideal_from_record(&tool, "f", record.repeat(2).as_bytes()).is_err(), "two records");
        assert!(ideal_from_record(&tool, "f", b"-: 1000 -> 250 bytes\n").is_err(), "human text");
    }

    #[test]
    fn a_level_shapes_compression_only_and_a_local_model_goes_to_both_sides() {
        let extra: Vec<OsString> = ["-9", "--model", "m.gguf", "--threads", "2"].map(OsString::from).into();
        let tool = Tool::llmzip("llmzip".into(), "llmzip -9", &extra);
        assert_eq!(tool.name, "llmzip -9");
        assert_eq!(tool.compress[3..], extra[..]);
        assert_eq!(tool.decompress[3..], [OsString::from("--model"), "m.gguf".into()]);
    }

    #[test]
    fn unknown_tools_are_rejected_by_name() {
        assert!(matches!(Tool::known("lz4"), Err(BenchError::UnknownTool(n)) if n == "lz4"));
        assert_eq!(
            Tool::known("xz").unwrap().compress,
            vec![OsString::from("-9e"), "-T1".into(), "-c".into()]
        );
    }
}
