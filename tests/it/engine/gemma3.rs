//! Gemma 3 in the engine: the determinism contract on a synthetic Gemma 3 (local and global layers,
//! query/key norms, post-norms, GELU-tanh, heads wider than the width divides), the sliding window
//! itself, and on the real Gemma 3 270M a pinned logits hash and the cross-entropy of the candle
//! reference with its defects fixed ([`super::gemma_ref`]).

use llmzip::engine::synthetic::{SYNTHETIC_GEMMA3_WINDOW, write_synthetic_gemma3};

use super::*;

/// A synthetic Gemma 3 whose layers 1 and 3 are global (`global_every` 2), or none (`global_every` 5).
fn synthetic(global_every: usize) -> ModelFile {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("gemma3.gguf");
    write_synthetic_gemma3(&path, SYNTHETIC_SEED, global_every, byte_to_char)
        .expect("write synthetic gemma3");
    let file = ModelFile::open(&path);
    // The map stays valid after the directory is gone on Unix; keep the directory anyway.
    std::mem::forget(dir);
    file
}

pub(super) fn synthetic_gemma3() -> &'static ModelFile {
    static FILE: OnceLock<ModelFile> = OnceLock::new();
    FILE.get_or_init(|| synthetic(2))
}

fn gemma_tokens(len: usize) -> Vec<u32> {
    let tokens = synthetic_gemma3().tokens(&english_text()[..len * 8]);
    assert!(tokens.len() >= len, "only {} tokens", tokens.len());
    tokens[..len].to_vec()
}

#[test]
fn synthetic_gemma3_kernel_paths_and_thread_counts_agree() {
    let configs: Vec<(usize, KernelPath)> =
        paths().into_iter().flat_map(|p| [(1, p), (2, p), (3, p)]).collect();
    for_each_version(|_| check_paths_and_threads(synthetic_gemma3(), &gemma_tokens(200), &configs));
}

#[test]
fn synthetic_gemma3_prefill_step_and_slices_agree() {
    let tokens = gemma_tokens(200);
    for_each_version(|_| {
        for kernel in paths() {
            check_prefill_step_slices(&synthetic_gemma3().load(2, kernel), &tokens);
        }
    });
}

#[test]
fn synthetic_gemma3_batch_composition_does_not_matter() {
    let text = english_text();
    let file = synthetic_gemma3();
    let seqs = [0, 3000, 6000, 9000].map(|at| file.tokens(&text[at..at + 2000]));
    for_each_version(|_| {
        for kernel in paths() {
            check_batch(&file.load(2, kernel), &seqs, [0, 37, 150, 5], 120, true);
            check_extend(&file.load(2, kernel), &seqs, [1, 37, 150, 5], 30);
        }
    });
}

#[test]
fn synthetic_gemma3_distributions_are_neither_flat_nor_one_hot() {
    let model = synthetic_gemma3().load(1, KernelPath::Scalar);
    assert_eq!(model.architecture(), "gemma3");
    let logits = prefill_all(&model, &gemma_tokens(64));
    let vocab = model.vocab_size();
    let max_entropy = (vocab as f64).ln();
    for (t, row) in logits.chunks_exact(vocab).enumerate() {
        let entropy: f64 = (0..vocab).map(|i| log_softmax_at(row, i)).map(|lp| -lp.exp() * lp).sum();
        assert!(
            entropy > 0.5 && entropy < max_entropy - 0.3,
            "position {t}: entropy {entropy} of {max_entropy}"
        );
    }
}

/// With local layers only, a token influences a position at most `layers x (window - 1)` later: the
/// logits there and beyond are bitwise those of a sequence with another first token, and closer ones
/// are not. A window one position too wide or too narrow, or one ignored in a step, breaks this.
#[test]
fn local_layers_see_exactly_their_window() {
    let file = synthetic(5);
    let reach = 4 * (SYNTHETIC_GEMMA3_WINDOW - 1);
    let a = gemma_tokens(reach + 40);
    let mut b = a.clone();
    b[0] = (a[0] + 1) % 298;
    for kernel in paths() {
        let model = file.load(2, kernel);
        let vocab = model.vocab_size();
        for step in [false, true] {
            let run = |tokens: &[u32]| {
                if !step {
                    return prefill_all(&model, tokens);
                }
                let mut cache = model.cache(tokens.len());
                let mut out = vec![0f32; tokens.len() * vocab];
                for (t, &tok) in tokens.iter().enumerate() {
                    model.step(&mut [&mut cache], &[tok], &mut out[t * vocab..(t + 1) * vocab]).unwrap();
                }
                out
            };
            let (la, lb) = (run(&a), run(&b));
            let row = |l: &[f32], p: usize| {
                l[p * vocab..(p + 1) * vocab].iter().map(|x| x.to_bits()).collect::<Vec<_>>()
            };
            for p in 0..a.len() {
                let same = row(&la, p) == row(&lb, p);
                assert_eq!(
                    same,
                    p > reach,
                    "{} step={step}: position {p} {} the first token (reach {reach})",
                    kernel.name(),
                    if same { "does not see" } else { "sees" }
                );
            }
        }
    }
}

/// Pins the synthetic Gemma 3's logits (see `synthetic_logits_hash_is_pinned`).
#[test]
fn synthetic_gemma3_logits_hash_is_pinned() {
    let tokens: Vec<u32> = (0..40u32).map(|i| (i * 37 + 5) % 298).collect();
    for_each_version(|version| {
        for kernel in paths() {
            let logits = prefill_all(&synthetic_gemma3().load(2, kernel), &tokens);
            assert_eq!(
                sha256_of_logits(&logits),
                pinned(&PINNED_SYNTHETIC_GEMMA3_HASH, version),
                "synthetic gemma3 logits changed on the {} path (engine version {})",
                kernel.name(),
                version.number()
            );
        }
    });
}

const PINNED_SYNTHETIC_GEMMA3_HASH: [&str; 2] = [
    "3b4f8451ae57a2df1913147af1272d45569da0950a6d0f552b0cbeb14e0e5063",
    "e271a127e02af65575004aa584bf5b4b5f82b08a1ee38773bade5e9ca9a83c9f",
];

// ---------------------------------------------------------------------------------------------------
// The real Gemma 3 270M (fetched into the cache by id when missing).

fn real_gemma3() -> &'static ModelFile {
    static FILE: OnceLock<ModelFile> = OnceLock::new();
    FILE.get_or_init(|| ModelFile::open(&crate::common::gemma_model()))
}

/// The start token and then the tokens of the first `bytes` of alice29.txt.
fn real_gemma3_tokens(bytes: usize) -> Vec<u32> {
    let text = crate::common::read_data_prefix("canterbury/alice29.txt.xz", bytes);
    let mut tokens = vec![2];
    tokens.extend(real_gemma3().tokens(&text));
    tokens
}

/// Bytes of alice29.txt the reference check reads: 2,600 by default (one sequence of 685 tokens, 43 s
/// in CI); `LLMZIP_GEMMA_REF_BYTES` raises it for the longer check the README reports (30,000 bytes,
/// about 7,600 tokens in windows of [`REF_WINDOW`]).
fn reference_check_bytes() -> usize {
    match std::env::var("LLMZIP_GEMMA_REF_BYTES") {
        Ok(v) => v.parse().unwrap_or_else(|_| panic!("LLMZIP_GEMMA_REF_BYTES={v:?} is not a byte count")),
        Err(_) => 2_600,
    }
}

/// Tokens per sequence of the reference check (the start token included): long enough for the local
/// layers' 512-position window to slide, short enough that a sequence's logits (262,144 per position,
/// f32) stay near 1 GB on each side.
const REF_WINDOW: usize = 1_024;

/// The engine's cross-entropy on English text is within 1% of the reference forward pass (candle's
/// building blocks in f32, with GELU-tanh and the exact window), over sequences long enough for the
/// local layers' 512-position window to slide; one-token steps past the window give the bits of the
/// prefill.
#[test]
fn real_gemma3_matches_the_fixed_reference_and_steps_like_prefill() {
    let file = real_gemma3();
    let tokens = real_gemma3_tokens(reference_check_bytes());
    assert!(tokens.len() > 560, "only {} tokens", tokens.len());
    let model = file.load(0, KernelPath::resolve(None).expect("kernel path"));
    assert_eq!(model.architecture(), "gemma3");
    let vocab = model.vocab_size();
    assert_eq!(vocab, 262_144);
    let reference = super::gemma_ref::Reference::load(&file.bytes).expect("reference loads");

    // Each window is the start token and the next REF_WINDOW - 1 tokens of the text.
    let (mut ours, mut theirs, mut predicted) = (0f64, 0f64, 0usize);
    for (w, text) in tokens[1..].chunks(REF_WINDOW - 1).enumerate() {
        let mut window = vec![tokens[0]];
        window.extend_from_slice(text);
        let logits = prefill_all(&model, &window);
        ours += total_ce(&logits, &window, vocab) / std::f64::consts::LN_2;
        if w == 0 {
            // Steps over positions 520.. after a prefill of the first 520 tokens.
            let split = 520;
            let mut cache = model.cache(window.len());
            let mut first = vec![0f32; split * vocab];
            model.prefill(&mut cache, &window[..split], &mut first).expect("prefill");
            let mut row = vec![0f32; vocab];
            for (t, &tok) in window.iter().enumerate().skip(split).take(24) {
                model.step(&mut [&mut cache], &[tok], &mut row).expect("step");
                let what = format!("step at position {t}");
                assert_same_bits(&logits[t * vocab..(t + 1) * vocab], &row, vocab, &what);
            }
        }
        drop(logits);
        theirs += reference.next_token_bits(&window).expect("reference runs").iter().sum::<f64>();
        predicted += window.len() - 1;
    }
    let n = predicted as f64;
    eprintln!(
        "Gemma 3 on {} tokens of alice29.txt: engine {:.4} bits/token, reference {:.4} ({:+.2}%)",
        tokens.len(),
        ours / n,
        theirs / n,
        100.0 * (ours / theirs - 1.0)
    );
    assert!((ours / theirs - 1.0).abs() < 0.01, "engine {ours} bits against the reference's {theirs}");
    // A real language model on English text: far below the 18 bits of a uniform guess.
    assert!(ours / n < 6.0, "{} bits per token", ours / n);
}

/// Pins the real Gemma 3's logits on a short prompt, on every kernel path.
#[test]
fn real_gemma3_logits_hash_is_pinned() {
    let tokens = real_gemma3_tokens(60);
    for_each_version(|version| {
        for kernel in paths() {
            let logits = prefill_all(&real_gemma3().load(2, kernel), &tokens);
            assert_eq!(
                sha256_of_logits(&logits),
                pinned(&PINNED_REAL_GEMMA3_HASH, version),
                "Gemma 3 logits changed on the {} path (engine version {}) for {tokens:?}",
                kernel.name(),
                version.number()
            );
        }
    });
}

const PINNED_REAL_GEMMA3_HASH: [&str; 2] = [
    "de8293373f62daf654188dd05bbccc72f0421cda7c06b67016e8760206fa0e0b",
    "84414fd50119d03969b2ad93a32ede30017a075f6bbf73dd01ddadf1d1356bdc",
];
