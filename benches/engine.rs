//! Engine throughput in tokens per second: prefill (in slices of 256 positions, as the compressor calls
//! it) and lock-step decoding of 1, 4 and 16 sequences, on every kernel path this CPU runs.
//!
//! By default the synthetic model (written to a temp dir) so the bench runs anywhere in seconds; set
//! `LLMZIP_BENCH_MODEL=/path/to/model.gguf` for real numbers (SmolLM2-135M: context 2048, decoding
//! measured around position 1024, the average of a full window). `LLMZIP_BENCH_THREADS` sets the
//! engine's threads (default 2); `LLMZIP_BENCH_KERNEL=amx` (a path name) measures one path only, which
//! also skips the slow scalar set-up when profiling. Every case runs in each engine version (`/e1`,
//! `/e2`: f16 or int8 keys and values).

use candle_core::quantized::gguf_file::Content;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use llmzip::engine::synthetic::write_synthetic_llama;
use llmzip::engine::{EngineOptions, EngineVersion, KernelPath, Model};

struct Setup {
    _dir: Option<tempfile::TempDir>,
    bytes: memmap2::Mmap,
    content: Content,
    /// Positions prefilled, and the decoding position.
    prefill_len: usize,
    decode_at: usize,
}

fn setup() -> Setup {
    let (dir, path) = match std::env::var_os("LLMZIP_BENCH_MODEL") {
        Some(p) => (None, std::path::PathBuf::from(p)),
        None => {
            let dir = tempfile::tempdir().expect("temp dir");
            let path = dir.path().join("synthetic.gguf");
            write_synthetic_llama(&path, 1, llmzip::tokenizer::byte_to_char).expect("synthetic model");
            (Some(dir), path)
        }
    };
    let file = std::fs::File::open(&path).expect("model file");
    // SAFETY: the model file is not modified while the bench runs.
    let bytes = unsafe { memmap2::Mmap::map(&file) }.expect("mmap");
    let content = Content::read(&mut std::io::Cursor::new(&bytes[..])).expect("GGUF header");
    let real = dir.is_none();
    Setup {
        _dir: dir,
        bytes,
        content,
        prefill_len: if real { 2048 } else { 512 },
        decode_at: if real { 1024 } else { 256 },
    }
}

fn engine(c: &mut Criterion) {
    let s = setup();
    let threads = std::env::var("LLMZIP_BENCH_THREADS").ok().and_then(|t| t.parse().ok()).unwrap_or(2);
    let paths = match std::env::var("LLMZIP_BENCH_KERNEL") {
        Ok(name) => vec![KernelPath::parse(&name).expect("LLMZIP_BENCH_KERNEL names a kernel path")],
        Err(_) => KernelPath::available(),
    };
    let mut group = c.benchmark_group("engine");
    group.sample_size(10);
    for &path in &paths {
        let opts = EngineOptions { threads, kernel: Some(path) };
        let model = Model::load(&s.content, &s.bytes, &opts).expect("load");
        let vocab = model.vocab_size() as u32;
        let tokens: Vec<u32> = (0..s.prefill_len as u32).map(|i| (i * 7919 + 13) % vocab).collect();
        let mut logits = vec![0f32; 256 * model.vocab_size()];

        for version in EngineVersion::ALL {
            group.throughput(Throughput::Elements(tokens.len() as u64));
            group.bench_function(
                BenchmarkId::new(format!("prefill/{}/e{}", path.name(), version.number()), tokens.len()),
                |b| {
                    let mut cache = model.new_cache(tokens.len(), version);
                    b.iter(|| {
                        cache.clear();
                        for slice in tokens.chunks(256) {
                            let out = &mut logits[..slice.len() * model.vocab_size()];
                            model.prefill(&mut cache, slice, out).expect("prefill");
                        }
                    })
                },
            );

            let mut base = model.new_cache(s.decode_at + 64, version);
            for slice in tokens[..s.decode_at].chunks(256) {
                let out = &mut logits[..slice.len() * model.vocab_size()];
                model.prefill(&mut base, slice, out).expect("prefill");
            }
            for batch in [1usize, 4, 16] {
                let mut step_logits = vec![0f32; batch * model.vocab_size()];
                let mut caches: Vec<_> = (0..batch).map(|_| base.clone()).collect();
                let step_tokens: Vec<u32> = (0..batch as u32).map(|i| (i * 31 + 7) % vocab).collect();
                group.throughput(Throughput::Elements(batch as u64));
                group.bench_function(
                    BenchmarkId::new(format!("step/{}/e{}", path.name(), version.number()), batch),
                    |b| {
                        b.iter(|| {
                            // Stay around the same position: drop the step taken in the previous iteration.
                            for c in caches.iter_mut() {
                                c.truncate(s.decode_at);
                            }
                            let mut refs: Vec<&mut _> = caches.iter_mut().collect();
                            model.step(&mut refs, &step_tokens, &mut step_logits).expect("step");
                        })
                    },
                );
            }
        }
    }
    group.finish();
}

criterion_group!(benches, engine);
criterion_main!(benches);
