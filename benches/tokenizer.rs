//! Tokenizers on real text: building Gemma 3's 262,144-piece SentencePiece tokenizer from its GGUF, and
//! encoding (MB/s) with it and with SmolLM2's byte-level BPE. Prints tokens per byte of each
//! multilingual man page for both, the figure that makes Gemma worth its cost on such text.
//!
//! `cargo bench --bench tokenizer`; under `cargo test` each body runs once as a smoke test. Needs both
//! models (fetched into the cache by id if missing) and ../shared/data.

use std::path::{Path, PathBuf};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use indicatif::ProgressBar;
use llmzip::model::{GgufFile, Resolver};
use llmzip::tokenizer::Tokenizer;

fn model(id: &str) -> PathBuf {
    Resolver::from_env().and_then(|r| r.resolve_id(id, &ProgressBar::hidden())).expect("model resolves").path
}

fn data(relative: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data").join(relative);
    if relative.ends_with(".xz") {
        let out = std::process::Command::new("xz").arg("-dc").arg(&path).output().expect("xz");
        out.stdout
    } else {
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }
}

const MULTILINGUAL: [&str; 5] = ["ja_grep.1", "zh_ssh.1", "ru_signal.7", "de_tar.1", "fr_signal.7"];

fn tokenizers(c: &mut Criterion) {
    let gemma_file = GgufFile::open(&model("gemma3-270m-q4_k_m")).expect("Gemma opens");
    let smol_file = GgufFile::open(&model("smollm2-135m-instruct-q4_1")).expect("SmolLM2 opens");
    let gemma = Tokenizer::from_gguf(gemma_file.content()).expect("Gemma tokenizer");
    let smol = Tokenizer::from_gguf(smol_file.content()).expect("SmolLM2 tokenizer");

    eprintln!("tokens per byte (Gemma 3 / SmolLM2):");
    for f in MULTILINGUAL {
        let text = data(&format!("multilingual/{f}"));
        let (g, s) = (gemma.encode(&text).unwrap().len(), smol.encode(&text).unwrap().len());
        let n = text.len() as f64;
        eprintln!(
            "  {f:12} {:6} bytes  {:.3} / {:.3}  ({g} / {s} tokens)",
            text.len(),
            g as f64 / n,
            s as f64 / n
        );
    }

    let mut group = c.benchmark_group("tokenizer");
    group.sample_size(10);
    group.bench_function("build_gemma3", |b| b.iter(|| Tokenizer::from_gguf(gemma_file.content()).unwrap()));
    let mut texts: Vec<(String, Vec<u8>)> = vec![("alice29".into(), data("canterbury/alice29.txt.xz"))];
    texts.extend(MULTILINGUAL[..2].iter().map(|f| (f.to_string(), data(&format!("multilingual/{f}")))));
    for (name, text) in &texts {
        group.throughput(Throughput::Bytes(text.len() as u64));
        group.bench_with_input(BenchmarkId::new("encode_gemma3", name), text, |b, t| {
            b.iter(|| gemma.encode(t).unwrap())
        });
        group.bench_with_input(BenchmarkId::new("encode_smollm2", name), text, |b, t| {
            b.iter(|| smol.encode(t).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, tokenizers);
criterion_main!(benches);
