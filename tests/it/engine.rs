//! The engine's determinism contract (ARCHITECTURE.md section 2), checked on a synthetic model (fast)
//! and on the real default model: bitwise-equal logits across kernel paths, thread counts, prefill vs
//! step, and batch composition; pinned logits hashes; agreement with candle's reference implementation.

mod candle_ref;
mod gemma3;
mod gemma_ref;
mod slide;

use std::cell::Cell;
use std::path::Path;
use std::sync::OnceLock;

use candle_core::quantized::gguf_file::{Content, Value};
use llmzip::engine::synthetic::{
    SYNTHETIC_MERGES, SyntheticConfig, bytes_to_unicode, write_synthetic_llama, write_synthetic_llama_with,
};
use llmzip::engine::{EngineError, EngineOptions, EngineVersion, KernelPath, KvCache, Model};
use llmzip::tokenizer::byte_to_char;
use sha2::{Digest, Sha256};

thread_local! {
    /// The engine version whose caches the checks make ([`TestCache::cache`]); version 1 unless a
    /// test runs its checks under [`for_each_version`].
    static VERSION: Cell<EngineVersion> = const { Cell::new(EngineVersion::V1) };
}

/// Caches in the engine version the running check is under.
trait TestCache {
    fn cache(&self, capacity: usize) -> KvCache;
}

impl TestCache for Model {
    fn cache(&self, capacity: usize) -> KvCache {
        self.new_cache(capacity, VERSION.get())
    }
}

/// Runs `check` once under every engine version: each version's arithmetic is held to the whole
/// contract (paths, threads, prefill vs step, batches, slides).
fn for_each_version(check: impl Fn(EngineVersion)) {
    for version in EngineVersion::ALL {
        VERSION.set(version);
        eprintln!("engine version {}", version.number());
        check(version);
    }
    VERSION.set(EngineVersion::V1);
}

/// A model file kept in memory with its parsed header.
struct ModelFile {
    bytes: memmap2::Mmap,
    content: Content,
}

impl ModelFile {
    fn open(path: &Path) -> ModelFile {
        let file =
            std::fs::File::open(path).unwrap_or_else(|e| panic!("cannot open model {}: {e}", path.display()));
        // SAFETY: test model files are not modified while mapped.
        let bytes = unsafe { memmap2::Mmap::map(&file) }.expect("mmap");
        let content = Content::read(&mut std::io::Cursor::new(&bytes[..])).expect("GGUF header");
        ModelFile { bytes, content }
    }

    fn load(&self, threads: usize, kernel: KernelPath) -> Model {
        let opts = EngineOptions { threads, kernel: Some(kernel) };
        Model::load(&self.content, &self.bytes, &opts).expect("load model")
    }

    /// The model's own tokenizer: real text becomes the token stream the compressor codes.
    fn tokens(&self, text: &[u8]) -> Vec<u32> {
        let tokenizer = llmzip::tokenizer::Tokenizer::from_gguf(&self.content).expect("tokenizer");
        tokenizer.encode(text).expect("tokenize")
    }
}

/// The real default model, fetched into the cache through the normal resolution path when missing.
fn real_model() -> &'static ModelFile {
    static FILE: OnceLock<ModelFile> = OnceLock::new();
    FILE.get_or_init(|| ModelFile::open(&crate::common::default_model()))
}

const SYNTHETIC_SEED: u64 = 42;

fn synthetic_model() -> &'static ModelFile {
    static FILE: OnceLock<(tempfile::TempDir, ModelFile)> = OnceLock::new();
    &FILE
        .get_or_init(|| {
            let dir = tempfile::tempdir().expect("temp dir");
            let path = dir.path().join("synthetic.gguf");
            write_synthetic_llama(&path, SYNTHETIC_SEED, byte_to_char).expect("write synthetic model");
            let file = ModelFile::open(&path);
            (dir, file)
        })
        .1
}

/// English text from the shared corpus (Calgary paper1, plain text, 53 KB).
fn english_text() -> Vec<u8> {
    crate::common::read_data("calgary/paper1")
}

fn prefill_all(model: &Model, tokens: &[u32]) -> Vec<f32> {
    let mut cache = model.cache(tokens.len());
    let mut logits = vec![0f32; tokens.len() * model.vocab_size()];
    model.prefill(&mut cache, tokens, &mut logits).expect("prefill");
    logits
}

/// Asserts bitwise equality, naming the first differing position.
fn assert_same_bits(a: &[f32], b: &[f32], vocab: usize, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths differ");
    if let Some(i) = a.iter().zip(b).position(|(x, y)| x.to_bits() != y.to_bits()) {
        panic!("{what}: logits differ at position {} token {} ({} vs {})", i / vocab, i % vocab, a[i], b[i]);
    }
}

fn sha256_of_logits(logits: &[f32]) -> String {
    let mut h = Sha256::new();
    for x in logits {
        h.update(x.to_bits().to_le_bytes());
    }
    llmzip::hex::encode(&h.finalize())
}

fn log_softmax_at(logits: &[f32], target: usize) -> f64 {
    let max = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
    let sum: f64 = logits.iter().map(|&l| (l as f64 - max).exp()).sum();
    logits[target] as f64 - max - sum.ln()
}

/// Sum of -ln p of `tokens[1..]` given the logits of `tokens[..n-1]`.
fn total_ce(logits: &[f32], tokens: &[u32], vocab: usize) -> f64 {
    (0..tokens.len() - 1)
        .map(|t| -log_softmax_at(&logits[t * vocab..(t + 1) * vocab], tokens[t + 1] as usize))
        .sum()
}

// ---------------------------------------------------------------------------------------------------
// The checks, shared by the synthetic and the real model.

/// Scalar vs AVX2 and 1 vs 2 threads: every configuration gives the bits of the first.
fn check_paths_and_threads(file: &ModelFile, tokens: &[u32], configs: &[(usize, KernelPath)]) {
    let (t0, k0) = configs[0];
    let reference = prefill_all(&file.load(t0, k0), tokens);
    let vocab = reference.len() / tokens.len();
    for &(threads, kernel) in &configs[1..] {
        let got = prefill_all(&file.load(threads, kernel), tokens);
        let what = format!("{} x{t0} vs {} x{threads}", k0.name(), kernel.name());
        assert_same_bits(&reference, &got, vocab, &what);
    }
}

/// One prefill vs one step per token vs prefill in uneven slices.
fn check_prefill_step_slices(model: &Model, tokens: &[u32]) {
    let vocab = model.vocab_size();
    let reference = prefill_all(model, tokens);

    let mut cache = model.cache(tokens.len());
    let mut stepped = vec![0f32; reference.len()];
    for (t, &tok) in tokens.iter().enumerate() {
        let row = &mut stepped[t * vocab..(t + 1) * vocab];
        model.step(&mut [&mut cache], &[tok], row).expect("step");
    }
    assert_eq!(cache.len(), tokens.len());
    assert_same_bits(&reference, &stepped, vocab, "prefill vs step-by-step");

    let mut cache = model.cache(tokens.len());
    let mut sliced = vec![0f32; reference.len()];
    let mut at = 0;
    for len in [1, 2, 61, 5, 0, 100].into_iter().cycle() {
        let len = len.min(tokens.len() - at);
        let out = &mut sliced[at * vocab..(at + len) * vocab];
        model.prefill(&mut cache, &tokens[at..at + len], out).expect("prefill slice");
        at += len;
        if at == tokens.len() {
            break;
        }
    }
    assert_same_bits(&reference, &sliced, vocab, "one prefill vs uneven slices");
}

/// Sequences alone vs together in lock-step batches of 4, with neighbours at other positions and the
/// order of the batch rotating every step. Returns nothing; panics on the first differing bit.
fn check_batch(model: &Model, seqs: &[Vec<u32>; 4], warmup: [usize; 4], steps: usize, all: bool) {
    let vocab = model.vocab_size();
    let checked = if all { 4 } else { 1 };
    let alone: Vec<Vec<f32>> =
        seqs[..checked].iter().zip(warmup).map(|(s, w)| prefill_all(model, &s[..w + steps])).collect();
    let mut caches: Vec<KvCache> = (0..4).map(|i| model.cache(warmup[i] + steps)).collect();
    for i in 0..4 {
        let mut logits = vec![0f32; warmup[i] * vocab];
        model.prefill(&mut caches[i], &seqs[i][..warmup[i]], &mut logits).expect("warm-up prefill");
    }
    let mut logits = vec![0f32; 4 * vocab];
    for t in 0..steps {
        // Rotate which sequence sits in which batch row.
        let order: Vec<usize> = (0..4).map(|j| (j + t) % 4).collect();
        let tokens: Vec<u32> = order.iter().map(|&i| seqs[i][warmup[i] + t]).collect();
        let mut refs: Vec<Option<&mut KvCache>> = caches.iter_mut().map(Some).collect();
        let mut batch: Vec<&mut KvCache> = order.iter().map(|&i| refs[i].take().unwrap()).collect();
        model.step(&mut batch, &tokens, &mut logits).expect("batched step");
        for (row, &i) in order.iter().enumerate() {
            if i < checked {
                let pos = warmup[i] + t;
                assert_same_bits(
                    &alone[i][pos * vocab..(pos + 1) * vocab],
                    &logits[row * vocab..(row + 1) * vocab],
                    vocab,
                    &format!("sequence {i} at position {pos}: alone vs batch row {row}"),
                );
            }
        }
    }
}

/// Runs of different lengths for several sequences in one call (`Model::extend`, what speculative
/// decoding sends: each lane's last token and its draft, some lanes with none) give every row the bits
/// it gets alone; a run may be empty. The calls rotate run lengths over the sequences.
fn check_extend(model: &Model, seqs: &[Vec<u32>; 4], warmup: [usize; 4], calls: usize) {
    let vocab = model.vocab_size();
    let lens = [[1, 3, 0, 6], [5, 1, 2, 0], [0, 4, 1, 1]];
    let used: [usize; 4] =
        std::array::from_fn(|i| warmup[i] + (0..calls).map(|c| lens[c % lens.len()][i]).sum::<usize>());
    let alone: Vec<Vec<f32>> = (0..4).map(|i| prefill_all(model, &seqs[i][..used[i]])).collect();
    let mut caches: Vec<KvCache> = (0..4).map(|i| model.cache(used[i])).collect();
    let mut at = warmup;
    for i in 0..4 {
        let mut logits = vec![0f32; warmup[i] * vocab];
        model.prefill(&mut caches[i], &seqs[i][..warmup[i]], &mut logits).expect("warm-up prefill");
    }
    for c in 0..calls {
        let len = lens[c % lens.len()];
        let runs: Vec<&[u32]> = (0..4).map(|i| &seqs[i][at[i]..at[i] + len[i]]).collect();
        let mut logits = vec![0f32; len.iter().sum::<usize>() * vocab];
        let mut refs: Vec<&mut KvCache> = caches.iter_mut().collect();
        model.extend(&mut refs, &runs, &mut logits).expect("extend");
        let mut row = 0;
        for i in 0..4 {
            for pos in at[i]..at[i] + len[i] {
                assert_same_bits(
                    &alone[i][pos * vocab..(pos + 1) * vocab],
                    &logits[row * vocab..(row + 1) * vocab],
                    vocab,
                    &format!("sequence {i} at position {pos}: alone vs row {row} of extend call {c}"),
                );
                row += 1;
            }
            at[i] += len[i];
            assert_eq!(caches[i].len(), at[i], "extend appends each run to its cache");
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// Synthetic model: every check, in seconds.

fn synthetic_tokens() -> Vec<u32> {
    let text = english_text();
    let tokens = synthetic_model().tokens(&text[..2000]);
    assert!(tokens.len() >= 300, "only {} tokens", tokens.len());
    tokens[..300].to_vec()
}

/// Every kernel path this CPU runs (scalar first), so each new path is held to the same bits.
fn paths() -> Vec<KernelPath> {
    let paths = KernelPath::available();
    eprintln!("kernel paths compared on this CPU: {paths:?}");
    paths
}

#[test]
fn synthetic_kernel_paths_and_thread_counts_agree() {
    let configs: Vec<(usize, KernelPath)> =
        paths().into_iter().flat_map(|p| [(1, p), (2, p), (3, p)]).collect();
    for_each_version(|_| check_paths_and_threads(synthetic_model(), &synthetic_tokens(), &configs));
}

#[test]
fn synthetic_prefill_step_and_slices_agree() {
    let tokens = synthetic_tokens();
    for_each_version(|_| {
        for kernel in paths() {
            check_prefill_step_slices(&synthetic_model().load(2, kernel), &tokens);
        }
    });
}

#[test]
fn synthetic_batch_composition_does_not_matter() {
    let text = english_text();
    let file = synthetic_model();
    let seqs = [0, 3000, 6000, 9000].map(|at| file.tokens(&text[at..at + 2000]));
    for_each_version(|_| {
        for kernel in paths() {
            check_batch(&file.load(2, kernel), &seqs, [0, 37, 150, 5], 280, true);
            check_extend(&file.load(2, kernel), &seqs, [1, 37, 150, 5], 30);
        }
    });
}

#[test]
fn synthetic_distributions_are_neither_flat_nor_one_hot() {
    let model = synthetic_model().load(1, KernelPath::Scalar);
    let tokens = synthetic_tokens();
    let logits = prefill_all(&model, &tokens[..64]);
    let vocab = model.vocab_size();
    let max_entropy = (vocab as f64).ln();
    for (t, row) in logits.chunks_exact(vocab).enumerate() {
        let entropy: f64 = (0..vocab)
            .map(|i| {
                let lp = log_softmax_at(row, i);
                -lp.exp() * lp
            })
            .sum();
        assert!(
            entropy > 0.5 && entropy < max_entropy - 0.3,
            "position {t}: entropy {entropy} of at most {max_entropy}"
        );
    }
}

/// Pins the synthetic model's logits: any change of arithmetic (or of the synthetic writer) shows here
/// without the real model, per engine version. Changing a version's hash is a deliberate event: a new
/// engine version, since archives of the old one must keep decoding.
#[test]
fn synthetic_logits_hash_is_pinned() {
    let tokens: Vec<u32> = (0..24u32).map(|i| (i * 37 + 5) % 298).collect();
    for_each_version(|version| {
        for kernel in paths() {
            let logits = prefill_all(&synthetic_model().load(2, kernel), &tokens);
            assert_eq!(
                sha256_of_logits(&logits),
                pinned(&PINNED_SYNTHETIC_HASH, version),
                "synthetic logits changed on the {} path (engine version {})",
                kernel.name(),
                version.number()
            );
        }
    });
}

/// A version's pin among pins in [`EngineVersion::ALL`] order.
fn pinned(pins: &[&'static str; 2], version: EngineVersion) -> &'static str {
    pins[EngineVersion::ALL.iter().position(|&v| v == version).unwrap()]
}

const PINNED_SYNTHETIC_HASH: [&str; 2] = [
    "b9da0fffaee7287bc1817cf4e174cafe47d214e7a225520116260f9887c4c7d3",
    "b9843e1b0b770bb6eb03f1cd14944ec420efbe57e1224835f2b4e39c91d189fb",
];

#[test]
fn synthetic_writer_is_reproducible_and_readable() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (dir.path().join("a.gguf"), dir.path().join("b.gguf"), dir.path().join("c.gguf"));
    write_synthetic_llama(&a, 7, byte_to_char).unwrap();
    write_synthetic_llama(&b, 7, byte_to_char).unwrap();
    write_synthetic_llama(&c, 8, byte_to_char).unwrap();
    let (a, b, c) = (std::fs::read(a).unwrap(), std::fs::read(b).unwrap(), std::fs::read(c).unwrap());
    assert_eq!(a, b, "same seed, same bytes");
    assert_ne!(a, c, "another seed, other weights");
    let content = Content::read(&mut std::io::Cursor::new(&a)).unwrap();
    let md = |k: &str| content.metadata.get(k).unwrap_or_else(|| panic!("missing {k}"));
    assert_eq!(md("tokenizer.ggml.model").to_string().unwrap(), "gpt2");
    assert_eq!(md("tokenizer.ggml.pre").to_string().unwrap(), "smollm");
    let tokens = md("tokenizer.ggml.tokens").to_vec().unwrap();
    assert_eq!(tokens[0].to_string().unwrap(), "<|endoftext|>");
    assert_eq!(tokens[1].to_string().unwrap(), "!");
    assert_eq!(md("tokenizer.ggml.token_type").to_vec().unwrap().len(), tokens.len());
    assert!(md("tokenizer.ggml.merges").to_vec().unwrap().len() >= 40);
    assert!(!content.tensor_infos.contains_key("output.weight"), "tied head");
}

#[test]
fn synthetic_byte_alphabet_is_a_bijection_in_gpt2_order() {
    let map = bytes_to_unicode(byte_to_char);
    assert_eq!(map.len(), 256);
    let mut bytes: Vec<u8> = map.iter().map(|&(b, _)| b).collect();
    bytes.sort_unstable();
    bytes.dedup();
    assert_eq!(bytes.len(), 256);
    assert_eq!(map[0], (b'!', '!'));
    // The first non-printable byte (0) comes right after the 188 printable ones, as U+0100.
    assert_eq!(map[188], (0, '\u{100}'));
    assert!(map.contains(&(b' ', 'Ġ')) && map.contains(&(b'\n', 'Ċ')));
}

#[test]
fn synthetic_merges_build_on_existing_tokens_and_are_new() {
    let mut known: Vec<String> = bytes_to_unicode(byte_to_char).iter().map(|&(_, c)| c.to_string()).collect();
    for (a, b) in SYNTHETIC_MERGES {
        assert!(known.iter().any(|k| k == a), "left part {a} unknown");
        assert!(known.iter().any(|k| k == b), "right part {b} unknown");
        let merged = format!("{a}{b}");
        assert!(!known.contains(&merged), "duplicate token {merged}");
        known.push(merged);
    }
}

/// The architecture comes from the file; the model reports it.
#[test]
fn architecture_is_read_from_the_file() {
    let model = synthetic_model().load(1, KernelPath::Scalar);
    assert_eq!(model.architecture(), "llama");
    assert_eq!(model.cache(3).layout().len(), 2, "one key/value layout per layer");
}

/// An explicit head size (`llama.attention.key_length`) is read, not derived: the same value as the
/// derived one gives the same logits, and a different one is checked against the tensors' shapes.
#[test]
fn explicit_head_size_is_read_from_the_metadata() {
    let file = synthetic_model();
    let tokens: Vec<u32> = (0..24u32).map(|i| (i * 37 + 5) % 298).collect();
    let opts = EngineOptions { threads: 1, kernel: Some(KernelPath::Scalar) };
    let derived = prefill_all(&file.load(1, KernelPath::Scalar), &tokens);
    let head_dim = SyntheticConfig::default().dim / SyntheticConfig::default().n_heads;

    let mut content = Content::read(&mut std::io::Cursor::new(&file.bytes[..])).unwrap();
    content.metadata.insert("llama.attention.key_length".into(), Value::U32(head_dim as u32));
    content.metadata.insert("llama.attention.value_length".into(), Value::U32(head_dim as u32));
    let explicit = prefill_all(&Model::load(&content, &file.bytes, &opts).unwrap(), &tokens);
    assert_same_bits(&derived, &explicit, derived.len() / tokens.len(), "derived vs explicit head size");

    // Twice the head size: the Q projection no longer has the shape the metadata implies.
    let mut content = Content::read(&mut std::io::Cursor::new(&file.bytes[..])).unwrap();
    content.metadata.insert("llama.attention.key_length".into(), Value::U32(2 * head_dim as u32));
    let err = Model::load(&content, &file.bytes, &opts).unwrap_err();
    assert!(matches!(&err, EngineError::TensorShape { name, .. } if name == "blk.0.attn_q.weight"), "{err}");

    let mut content = Content::read(&mut std::io::Cursor::new(&file.bytes[..])).unwrap();
    content.metadata.insert("llama.attention.value_length".into(), Value::U32(2 * head_dim as u32));
    let err = Model::load(&content, &file.bytes, &opts).unwrap_err();
    assert!(matches!(err, EngineError::UnsupportedShape { .. }), "{err}");
}

// ---------------------------------------------------------------------------------------------------
// Errors: one clear line each, never a panic.

#[test]
fn bad_calls_give_clear_errors() {
    let model = synthetic_model().load(1, KernelPath::Scalar);
    let vocab = model.vocab_size();
    let mut cache = model.cache(4);
    let mut logits = vec![0f32; 5 * vocab];

    let err = model.prefill(&mut cache, &[1, 2, 3, 4, 5], &mut logits).unwrap_err();
    assert!(matches!(err, EngineError::CapacityExceeded { len: 0, capacity: 4, adding: 5 }));
    assert!(err.to_string().contains("larger capacity"), "{err}");

    let err = model.prefill(&mut cache, &[1, vocab as u32], &mut logits[..2 * vocab]).unwrap_err();
    assert!(matches!(err, EngineError::TokenOutOfRange { index: 1, .. }), "{err}");
    assert_eq!(cache.len(), 0, "a failed call leaves the cache as it was");

    let err = model.prefill(&mut cache, &[1, 2], &mut logits).unwrap_err();
    assert!(
        matches!(err, EngineError::LengthMismatch { seen, expected, .. } if seen == 5 * vocab && expected == 2 * vocab)
    );

    let err = model.step(&mut [&mut cache], &[1, 2], &mut logits[..2 * vocab]).unwrap_err();
    assert!(matches!(err, EngineError::LengthMismatch { seen: 2, expected: 1, .. }), "{err}");

    model.prefill(&mut cache, &[1, 2, 3, 4], &mut logits[..4 * vocab]).unwrap();
    let err = model.step(&mut [&mut cache], &[1], &mut logits[..vocab]).unwrap_err();
    assert!(matches!(err, EngineError::CapacityExceeded { len: 4, .. }), "{err}");
    cache.clear();
    assert_eq!((cache.len(), cache.capacity()), (0, 4));
    model.step(&mut [&mut cache], &[1], &mut logits[..vocab]).unwrap();

    // A cache made for another model shape.
    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("other.gguf");
    let cfg = SyntheticConfig { n_layers: 3, ..SyntheticConfig::default() };
    write_synthetic_llama_with(&other, &cfg, 1, byte_to_char).unwrap();
    let other = ModelFile::open(&other).load(1, KernelPath::Scalar);
    let mut foreign = other.cache(8);
    let err = model.step(&mut [&mut foreign], &[1], &mut logits[..vocab]).unwrap_err();
    assert!(matches!(err, EngineError::CacheMismatch { seen_layers: 3, layers: 2, .. }), "{err}");

    // Empty calls are fine and change nothing.
    model.prefill(&mut cache, &[], &mut []).unwrap();
    model.step(&mut [], &[], &mut []).unwrap();
    assert_eq!(cache.len(), 1);
}

#[test]
fn bad_model_files_give_clear_errors() {
    let file = synthetic_model();
    let opts = EngineOptions::default();

    let mut content = Content::read(&mut std::io::Cursor::new(&file.bytes[..])).unwrap();
    content.metadata.insert("general.architecture".into(), Value::String("mamba".into()));
    let err = Model::load(&content, &file.bytes, &opts).unwrap_err();
    assert!(matches!(&err, EngineError::UnsupportedArchitecture { seen } if seen == "mamba"), "{err}");
    assert!(err.to_string().contains("'mamba'"), "{err}");

    let mut content = Content::read(&mut std::io::Cursor::new(&file.bytes[..])).unwrap();
    content.metadata.remove("general.architecture");
    let err = Model::load(&content, &file.bytes, &opts).unwrap_err();
    assert!(err.to_string().contains("general.architecture"), "{err}");

    let mut content = Content::read(&mut std::io::Cursor::new(&file.bytes[..])).unwrap();
    content.tensor_infos.remove("blk.1.ffn_up.weight");
    let err = Model::load(&content, &file.bytes, &opts).unwrap_err();
    assert!(matches!(&err, EngineError::MissingTensor { name } if name == "blk.1.ffn_up.weight"), "{err}");

    let mut content = Content::read(&mut std::io::Cursor::new(&file.bytes[..])).unwrap();
    content.metadata.remove("llama.embedding_length");
    let err = Model::load(&content, &file.bytes, &opts).unwrap_err();
    assert!(err.to_string().contains("llama.embedding_length"), "{err}");

    // A truncated file: the header parses, the tensor data is cut off.
    let content = Content::read(&mut std::io::Cursor::new(&file.bytes[..])).unwrap();
    let cut = &file.bytes[..file.bytes.len() - 100];
    let err = Model::load(&content, cut, &opts).unwrap_err();
    assert!(matches!(err, EngineError::TensorOutOfFile { .. }), "{err}");
}

// ---------------------------------------------------------------------------------------------------
// Real model: the same checks over >= 256 positions of real English text.

/// 300 tokens of real text.
fn real_tokens() -> Vec<u32> {
    let tokens = real_model().tokens(&english_text()[..3000]);
    assert!(tokens.len() >= 300, "only {} tokens", tokens.len());
    tokens[..300].to_vec()
}

#[test]
fn real_kernel_paths_and_thread_counts_agree() {
    // The fastest path at two thread counts, then every other path (the scalar one is slow here).
    let best = KernelPath::best_available();
    let mut configs = vec![(2, best), (1, best)];
    configs.extend(paths().into_iter().filter(|&p| p != best).map(|p| (2, p)));
    for_each_version(|_| check_paths_and_threads(real_model(), &real_tokens(), &configs));
}

#[test]
fn real_prefill_step_and_slices_agree() {
    for_each_version(|_| {
        check_prefill_step_slices(&real_model().load(2, KernelPath::best_available()), &real_tokens())
    });
}

#[test]
fn real_batch_composition_does_not_matter() {
    let file = real_model();
    let text = english_text();
    let seqs = [0, 5000, 12000, 20000].map(|at| file.tokens(&text[at..at + 3000]));
    for_each_version(|_| {
        check_batch(&file.load(2, KernelPath::best_available()), &seqs, [4, 37, 150, 0], 260, false);
        check_extend(&file.load(2, KernelPath::best_available()), &seqs, [4, 37, 150, 1], 6);
    });
}

/// "The quick brown fox jumps over the lazy dog." in SmolLM2's vocabulary.
const PINNED_PROMPT: &[u32] = &[504, 2365, 6354, 16438, 27003, 690, 260, 23790, 2767, 30];
const PINNED_REAL_HASH: [&str; 2] = [
    "dbc91f5f42bb80bbd8d28f88353d732c70d7f233a0800f76564784138835a573",
    "fe50955725d9e02b46dfbb55cc6245cce7821b81ea83b4e76fdd28cb0a541e65",
];

/// Pins the first logits of a fixed prompt on the real model, per engine version. Any change of a
/// version's arithmetic changes its hash; that is a deliberate event: a new engine version (archives
/// of the old one must keep decoding), pinned here beside the others.
#[test]
fn real_logits_hash_is_pinned() {
    for_each_version(|version| {
        let configs = paths().into_iter().map(|p| (if p == KernelPath::Scalar { 1 } else { 2 }, p));
        for (threads, kernel) in configs {
            let logits = prefill_all(&real_model().load(threads, kernel), PINNED_PROMPT);
            assert_eq!(
                sha256_of_logits(&logits),
                pinned(&PINNED_REAL_HASH, version),
                "real-model logits changed on the {} path (engine version {})",
                kernel.name(),
                version.number()
            );
        }
    });
}

// ---------------------------------------------------------------------------------------------------
// Agreement with candle.

/// candle-transformers' `quantized_llama::ModelWeights` itself, as shipped (Q4_1 kernels), step by
/// step on a short prompt: the engine and the full-sequence reference of `candle_ref` both agree with
/// it. This ties the long cross-entropy comparison below to `ModelWeights`.
#[test]
fn engine_and_reference_agree_with_candle_model_weights() {
    use candle_core::{Device, Tensor};
    let file = real_model();
    let tokens = &real_tokens()[..48];
    let model = file.load(2, KernelPath::best_available());
    let vocab = model.vocab_size();
    let ours = prefill_all(&model, tokens);
    let reference =
        candle_ref::Reference::load(&file.bytes).and_then(|r| r.logits(tokens)).expect("candle reference");
    let content = Content::read(&mut std::io::Cursor::new(&file.bytes[..])).unwrap();
    let mut weights = candle_transformers::models::quantized_llama::ModelWeights::from_gguf(
        content,
        &mut std::io::Cursor::new(&file.bytes[..]),
        &Device::Cpu,
    )
    .expect("ModelWeights");
    let mut shipped = Vec::with_capacity(ours.len());
    for (t, &tok) in tokens.iter().enumerate() {
        let x = Tensor::new(&[[tok]], &Device::Cpu).unwrap();
        let l = weights.forward(&x, t).unwrap();
        shipped.extend(l.flatten_all().unwrap().to_vec1::<f32>().unwrap());
    }
    let ce = |l: &[f32]| total_ce(l, tokens, vocab) / (tokens.len() - 1) as f64;
    let (ce_ours, ce_ref, ce_shipped) = (ce(&ours), ce(&reference), ce(&shipped));
    eprintln!(
        "48 tokens, nats/token: engine {ce_ours:.4}, reference {ce_ref:.4}, ModelWeights {ce_shipped:.4}"
    );
    for (name, v) in [("engine", ce_ours), ("reference", ce_ref)] {
        let rel = (v - ce_shipped).abs() / ce_shipped;
        assert!(rel < 0.01, "{name} {v} vs ModelWeights {ce_shipped}: {:.2}%", rel * 100.0);
    }
    // Same argmax at almost every position.
    let argmax = |r: &[f32]| (0..r.len()).max_by(|&a, &b| r[a].total_cmp(&r[b])).unwrap();
    let same = (0..tokens.len())
        .filter(|&t| {
            argmax(&ours[t * vocab..(t + 1) * vocab]) == argmax(&shipped[t * vocab..(t + 1) * vocab])
        })
        .count();
    assert!(same >= tokens.len() - 3, "argmax agrees at only {same} of {} positions", tokens.len());
}

/// Mean cross-entropy over ~30 KB of English text, fresh context per chunk, at context 512 and 2048:
/// the engine within 1% of candle's reference figure.
#[test]
fn cross_entropy_matches_candle_at_context_512_and_2048() {
    let file = real_model();
    let tokens = file.tokens(&english_text()[..30 * 1024]);
    let model = file.load(2, KernelPath::best_available());
    let vocab = model.vocab_size();
    let reference = candle_ref::Reference::load(&file.bytes).expect("candle reference");
    for context in [512, 2048] {
        let (mut ours, mut theirs, mut n) = (0.0, 0.0, 0usize);
        for chunk in tokens.chunks(context) {
            if chunk.len() < 2 {
                continue;
            }
            ours += total_ce(&prefill_all(&model, chunk), chunk, vocab);
            theirs += total_ce(&reference.logits(chunk).expect("reference logits"), chunk, vocab);
            n += chunk.len() - 1;
        }
        let (ours, theirs) = (ours / n as f64, theirs / n as f64);
        let rel = (ours - theirs).abs() / theirs;
        eprintln!(
            "context {context}: {n} tokens, engine {ours:.4} vs candle {theirs:.4} nats/token ({:+.3}%)",
            (ours - theirs) / theirs * 100.0
        );
        assert!(rel < 0.01, "context {context}: engine {ours} vs candle {theirs}");
    }
}
