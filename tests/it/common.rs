//! Shared test support: test data from ../shared/data, the synthetic models, the real default model.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The benchmark corpora beside the checkout (tests may read them; the product never does).
pub fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data")
}

/// A corpus file's original bytes (`.xz` files are decompressed with `xz -dc`).
pub fn read_data(relative: &str) -> Vec<u8> {
    let path = data_dir().join(relative);
    if relative.ends_with(".xz") {
        let out = Command::new("xz")
            .arg("-dc")
            .arg(&path)
            .output()
            .expect("xz must be installed (.ci/run installs it)");
        assert!(out.status.success(), "xz -dc {} failed", path.display());
        out.stdout
    } else {
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }
}

/// The first `len` bytes of a corpus file's original bytes (reading no more of an `.xz` file than that).
pub fn read_data_prefix(relative: &str, len: usize) -> Vec<u8> {
    use std::io::Read;
    let path = data_dir().join(relative);
    let mut out = Vec::with_capacity(len);
    if relative.ends_with(".xz") {
        let mut child = Command::new("xz")
            .arg("-dc")
            .arg(&path)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("xz must be installed (.ci/run installs it)");
        child.stdout.take().unwrap().take(len as u64).read_to_end(&mut out).unwrap();
        // xz may stop on the closed pipe; only what it wrote before matters.
        let _ = child.kill();
        let _ = child.wait();
    } else {
        std::fs::File::open(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .take(len as u64)
            .read_to_end(&mut out)
            .unwrap();
    }
    out
}

/// Every corpus file under ../shared/data (relative paths, sorted), SOURCES.md aside.
pub fn data_files() -> Vec<String> {
    let mut out = Vec::new();
    for dir in std::fs::read_dir(data_dir()).expect("../shared/data") {
        let dir = dir.unwrap();
        if !dir.file_type().unwrap().is_dir() {
            continue;
        }
        for file in std::fs::read_dir(dir.path()).unwrap() {
            let file = file.unwrap();
            out.push(format!("{}/{}", dir.file_name().to_string_lossy(), file.file_name().to_string_lossy()));
        }
    }
    out.sort();
    assert!(out.len() >= 40, "../shared/data holds {} files; the corpora are missing", out.len());
    out
}

/// Every Canterbury file, by original name.
pub fn canterbury_files() -> Vec<(String, Vec<u8>)> {
    let mut names: Vec<String> = std::fs::read_dir(data_dir().join("canterbury"))
        .expect("../shared/data/canterbury")
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|n| (n.trim_end_matches(".xz").to_string(), read_data(&format!("canterbury/{n}"))))
        .collect()
}

/// English text from alice29.txt, cut to `len` bytes.
pub fn sample_text(len: usize) -> Vec<u8> {
    static ALICE: OnceLock<Vec<u8>> = OnceLock::new();
    let alice = ALICE.get_or_init(|| read_data("canterbury/alice29.txt.xz"));
    alice[..len.min(alice.len())].to_vec()
}

/// Deterministic pseudo-random bytes: the crate's splitmix64 stream of `seed`.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    llmzip::testing::SplitMix64::new(seed).bytes(len)
}

fn scratch_dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("temp dir")).path()
}

/// A tiny llama GGUF with a byte-level tokenizer, written once per test run: every pipeline test runs in
/// seconds with it.
pub fn synthetic_model() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let path = scratch_dir().join("synthetic-a.gguf");
        llmzip::engine::synthetic::write_synthetic_llama(&path, 1, llmzip::tokenizer::byte_to_char)
            .expect("write synthetic model");
        path
    })
    .clone()
}

/// The same architecture with other weights: a different model file.
/// Options for coding with the synthetic model: small windows and chunks, so that a few KB of text span
/// several windows, chunks and lanes.
pub fn synthetic_opts() -> llmzip::pipeline::CodecOptions {
    llmzip::pipeline::CodecOptions {
        model: Some(synthetic_model().to_string_lossy().into_owned()),
        context: 64,
        overlap: 16,
        chunk_bytes: 4096,
        lanes: 4,
        ..llmzip::pipeline::CodecOptions::default()
    }
}

pub fn synthetic_model_variant() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let path = scratch_dir().join("synthetic-b.gguf");
        llmzip::engine::synthetic::write_synthetic_llama(&path, 2, llmzip::tokenizer::byte_to_char)
            .expect("write synthetic model");
        path
    })
    .clone()
}

/// The real default model, fetched into the cache through the normal resolution path if missing.
pub fn default_model() -> PathBuf {
    llmzip::model::testing_default_model_path()
}

/// The Gemma 3 270M model file (`gemma3-270m-q4_k_m`), fetched into the cache by id through the normal
/// resolution path if missing. Resolved once per process; a test that needs it fails loudly without it.
pub fn gemma_model() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        llmzip::model::Resolver::from_env()
            .and_then(|r| r.resolve_id("gemma3-270m-q4_k_m", &indicatif::ProgressBar::hidden()))
            .unwrap_or_else(|e| panic!("the Gemma 3 model is needed by this test: {e}"))
            .path
    })
    .clone()
}

pub fn sha256_hex(path: &Path) -> String {
    use sha2::Digest;
    let bytes = std::fs::read(path).unwrap();
    llmzip::hex::encode(&sha2::Sha256::digest(&bytes))
}
