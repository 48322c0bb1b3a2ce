//! Peak resident memory of lock-step decoding at its worst point: the model, plus `LANES` key/value
//! caches of `CONTEXT` positions all filled, plus one 16-row step. This is the working set the
//! decompressor reaches once every lane is deep in a full window, measured without decoding a large
//! archive first (one cache is prefilled and cloned; a clone touches every page, as decoding does).
//!
//! `cargo run --release --example lockstep_memory -- MODEL.gguf [LANES] [CONTEXT] [ENGINE]`; prints
//! the peak RSS (`ru_maxrss`) and the kernel path. ENGINE is the engine version (default the newest:
//! 2, int8 keys and values; 1 for f16).

use candle_core::quantized::gguf_file::Content;
use llmzip::engine::{EngineOptions, EngineVersion, Model};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(path) = args.get(1) else {
        eprintln!("usage: lockstep_memory MODEL.gguf [LANES] [CONTEXT] [ENGINE]");
        std::process::exit(1);
    };
    let lanes: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(16);
    let context: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(2048);
    let version = args
        .get(4)
        .map(|s| s.parse().ok().and_then(EngineVersion::from_number).expect("ENGINE is 1 or 2"))
        .unwrap_or(EngineVersion::NEWEST);
    // The map is released after loading, as the pipeline's session does.
    let model = {
        let file = std::fs::File::open(path).expect("model file");
        // SAFETY: the model file is not modified while this runs.
        let bytes = unsafe { memmap2::Mmap::map(&file) }.expect("mmap");
        let content = Content::read(&mut std::io::Cursor::new(&bytes[..])).expect("GGUF header");
        Model::load(&content, &bytes, &EngineOptions::default()).expect("load")
    };
    let vocab = model.vocab_size();
    let tokens: Vec<u32> = (0..context as u32 - 1).map(|i| (i * 7919 + 13) % vocab as u32).collect();
    let mut first = model.new_cache(context, version);
    // Slices of 128 positions, as the compressor and decompressor prefill.
    let mut logits = vec![0f32; 128 * vocab];
    for slice in tokens.chunks(128) {
        model.prefill(&mut first, slice, &mut logits[..slice.len() * vocab]).expect("prefill");
    }
    let mut caches: Vec<_> = (1..lanes).map(|_| first.clone()).collect();
    caches.push(first);
    let mut refs: Vec<&mut _> = caches.iter_mut().collect();
    let step: Vec<u32> = (0..lanes as u32).collect();
    let mut step_logits = vec![0f32; lanes * vocab];
    model.step(&mut refs, &step, &mut step_logits).expect("step");
    // SAFETY: getrusage only writes the struct it is given.
    let usage = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut u);
        u
    };
    println!(
        "{lanes} lanes x {context} positions, kernel {}: peak RSS {} MB (weights {} MB)",
        model.kernel().name(),
        usage.ru_maxrss as u64 * 1024 / 1_000_000,
        model.weight_bytes() / 1_000_000
    );
}
