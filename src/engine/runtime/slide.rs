//! Sliding the KV cache: drop a run of old positions and keep going, so that a long sequence keeps a
//! full context instead of restarting its windows cold.
//!
//! Keys are stored after RoPE, so a key that moves from position `p` to `p - drop` must be turned back
//! by `drop` positions to be the key it would have had there. A rotation composes exactly in real
//! numbers but not in floats, so the slide is arithmetic of its own, specified here bit for bit (it is
//! part of the archive format: the decoder slides its caches exactly as the encoder did). What it does
//! not undo, by design, is the context the moved positions were computed with: their hidden states saw
//! the dropped tokens. Both sides do the same, so the logits stay bit-identical between them.
//!
//! # The arithmetic (the format's definition)
//! `slide(keep, drop)` on a cache of `len` positions, with `keep + drop <= len`, does for every layer
//! `l` with its RoPE (frequencies `theta_i = powf_f64(base_l, -(2i) / rope_dim)` for
//! `i < rope_dim / 2`, the values the forward pass uses):
//! 1. Once per layer: `(s_i, c_i) = sin_cos_f64(drop * theta_i)` in f64 (`drop` converted exactly to
//!    f64, one correctly rounded product), with `crate::arch::math::sin_cos_f64`; then
//!    `cos_i = c_i as f32`, `sin_i = -(s_i as f32)` (f64 -> f32 round to nearest even; the negation
//!    is exact).
//! 2. For every key head and every moved position `j` in `keep..len - drop` (source `j + drop`), for
//!    every pair `i < rope_dim / 2`: `a`, `b` = the f16 keys of dimensions `2i`, `2i + 1` at the source,
//!    converted to f32 (exact); then, in f32, each operation correctly rounded, no fused multiply-add:
//!    `a' = (a * cos_i) - (b * sin_i)`, `b' = (a * sin_i) + (b * cos_i)`; `a'`, `b'` rounded to f16
//!    (round to nearest even, as when the key was first stored) become dimensions `2i`, `2i + 1` of
//!    position `j`. This is the forward pass's interleaved-pair rotation with the angle `-drop * theta_i`.
//! 3. Key dimensions `rope_dim..head_dim` and all values of position `j + drop` are copied to position
//!    `j` unchanged (as f16 bits).
//! 4. Positions `0..keep` are not touched; the cache's length becomes `len - drop`, so the next token
//!    is computed at position `len - drop`.
//!
//! When `drop == 0` or no position moves (`keep + drop == len`) nothing is rotated. Each moved key is
//! rotated once per slide, from the f16 value it holds: after several slides a key carries the
//! rounding of each, exactly as specified (the same on both sides), not the key a fresh cache would
//! hold.
//!
//! One scalar implementation on the calling thread: the same bits for every kernel path and thread
//! count by construction, and cheap next to the model (one pass over the cache's keys and values).

use super::ops::turn;
use super::{Architecture, check_cache};
use crate::engine::EngineError;
use crate::engine::cache::{KvCache, SlideScratch};

/// Removes positions `keep..keep + drop` of every layer of `cache` (see the module docs), turning
/// the moved keys by `rotate_by` positions: `-drop` is the slide; other values exist for the tests
/// that show the sign and the angle matter.
pub(crate) fn slide(
    arch: &dyn Architecture,
    cache: &mut KvCache,
    keep: usize,
    drop: usize,
    rotate_by: isize,
) -> Result<(), EngineError> {
    check_cache(arch, cache, 0)?;
    let len = cache.len();
    if keep.checked_add(drop).is_none_or(|n| n > len) {
        return Err(EngineError::SlideOutOfRange { keep, drop, len });
    }
    if drop == 0 {
        return Ok(());
    }
    if let Err((layer, first)) = cache.check_slide(keep, drop) {
        return Err(EngineError::WindowDropped { layer, len: len - drop, first });
    }
    let mut cs = Vec::new();
    let mut scratch = SlideScratch::default();
    let moves = keep + drop < len;
    for layer in 0..arch.kv_layout().len() {
        let rope = arch.key_rope(layer);
        if moves {
            // |rotate_by| <= drop < len <= MAX_POSITION, the range of sin_cos_f64 with theta <= 1.
            rope.shift(rotate_by, &mut cs);
        }
        // The forward pass's rotation of one pair, applied to every moved position's pair `i`.
        let rotate = |i: usize, a: &mut [f32], b: &mut [f32]| {
            let (cos, sin) = cs[i];
            for (x, y) in a.iter_mut().zip(b) {
                [*x, *y] = turn(*x, *y, cos, sin);
            }
        };
        let pairs: Vec<(usize, usize)> = (0..rope.pairs()).map(|i| rope.pair(i)).collect();
        cache.slide_layer(layer, keep, drop, &pairs, rotate, &mut scratch);
    }
    cache.set_len(len - drop);
    Ok(())
}

#[cfg(test)]
mod tests {
    use candle_core::quantized::gguf_file::Content;
    use half::f16;

    use crate::engine::cache::HeadKv;
    use crate::engine::kernels::{KEY_TILE, key_index, key_q8_index};
    use crate::engine::synthetic::write_synthetic_llama;
    use crate::engine::{EngineOptions, EngineVersion, KernelPath, KvCache, Model};

    /// The synthetic model's layer 0 (its keys and values depend on each position's token and
    /// position only, not on the context).
    fn model() -> (tempfile::TempDir, Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("synthetic.gguf");
        write_synthetic_llama(&path, 3, |b| b as char).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        (dir, bytes)
    }

    /// Layer 0's keys of `head` at positions `0..n`, as f32, and its values as bits.
    fn layer0(cache: &KvCache, head: usize, hd: usize, n: usize) -> (Vec<Vec<f32>>, Vec<u16>) {
        let (k, v) = cache.head(0, head, n).f16();
        assert!(k.len() >= n.div_ceil(KEY_TILE) * KEY_TILE * hd);
        let keys = (0..n).map(|j| (0..hd).map(|d| k[key_index(hd, j, d)].to_f32()).collect()).collect();
        (keys, v.iter().map(|x| x.to_bits()).collect())
    }

    /// Largest distance between the keys of two caches, pair by pair, relative to the pair's length
    /// (a rotation's rounding is relative to the pair, not to each coordinate).
    fn worst_pair_error(a: &[Vec<f32>], b: &[Vec<f32>]) -> f64 {
        let mut worst = 0f64;
        for (ka, kb) in a.iter().zip(b) {
            for (pa, pb) in ka.chunks_exact(2).zip(kb.chunks_exact(2)) {
                let norm = (pb[0] as f64).hypot(pb[1] as f64).max(1e-3);
                let dist = (pa[0] as f64 - pb[0] as f64).hypot(pa[1] as f64 - pb[1] as f64);
                worst = worst.max(dist / norm);
            }
        }
        worst
    }

    /// The slides both formats' re-rotation tests make: `(keep, drop)` of 300 positions.
    const CASES: [(usize, usize); 4] = [(1, 100), (0, 37), (5, 1), (2, 250)];

    /// Prefills 300 positions of the synthetic model into a cache of `version`, slides it by
    /// `(keep, drop)` turning the moved keys by the right angle (`-drop` positions) and by three wrong
    /// ones (`+drop`, `1 - drop`, `-1 - drop`), and compares each with a fresh cache fed the kept
    /// tokens: returns, in that order, the largest `compare(slid, fresh, head, head_dim, positions)`
    /// over layer 0's heads.
    fn turn_errors(
        version: EngineVersion,
        keep: usize,
        drop: usize,
        compare: impl Fn(&KvCache, &KvCache, usize, usize, usize) -> f64,
    ) -> [f64; 4] {
        let (_dir, bytes) = model();
        let content = Content::read(&mut std::io::Cursor::new(&bytes[..])).unwrap();
        let opts = EngineOptions { threads: 1, kernel: Some(KernelPath::Scalar) };
        let model = Model::load(&content, &bytes, &opts).unwrap();
        let layout = model.new_cache(1, version).layout()[0];
        let (heads, hd) = (layout.kv_heads, layout.head_dim);
        let vocab = model.vocab_size();
        let tokens: Vec<u32> = (0..300u32).map(|i| (i * 7919 + 13) % vocab as u32).collect();
        let mut cache = model.new_cache(300, version);
        let mut logits = vec![0f32; 300 * vocab];
        model.prefill(&mut cache, &tokens, &mut logits).unwrap();
        let kept: Vec<u32> = tokens[..keep].iter().chain(&tokens[keep + drop..]).copied().collect();
        let mut fresh = model.new_cache(300, version);
        model.prefill(&mut fresh, &kept, &mut logits[..kept.len() * vocab]).unwrap();
        let n = kept.len();
        [-(drop as isize), drop as isize, 1 - drop as isize, -1 - (drop as isize)].map(|rotate_by| {
            let mut slid = cache.clone();
            model.testing_slide_rotating_by(&mut slid, keep, drop, rotate_by).unwrap();
            assert_eq!(slid.len(), n);
            (0..heads).map(|h| compare(&slid, &fresh, h, hd, n)).fold(0f64, f64::max)
        })
    }

    /// After `slide(keep, drop)` layer 0 holds, within the rounding of two f16 stores, the keys of a
    /// fresh cache fed the kept tokens, and bit for bit its values; turning the keys by one position
    /// more or less, or the other way, is off by orders of magnitude more. This pins the direction
    /// and the angle of the re-rotation on the cache itself.
    #[test]
    fn slid_keys_are_the_keys_of_their_new_positions() {
        for (keep, drop) in CASES {
            let errors = turn_errors(EngineVersion::V1, keep, drop, |slid, fresh, h, hd, n| {
                let (ks, vs) = layer0(slid, h, hd, n);
                let (kf, vf) = layer0(fresh, h, hd, n);
                assert_eq!(vs, vf, "values move as bits");
                assert_eq!(ks[..keep], kf[..keep], "kept keys are untouched");
                worst_pair_error(&ks, &kf)
            });
            let [right, wrong_sign, short, long] = errors;
            eprintln!(
                "slide({keep}, {drop}): layer-0 key error relative to the pair: right {right:.2e}, wrong sign {wrong_sign:.3}, one too few {short:.3}, one too many {long:.3}"
            );
            // Two f16 roundings of a pair: at most about 2 * 2^-11 * sqrt(2) of its length.
            assert!(
                right < 2.0 * f16::EPSILON.to_f64(),
                "slide({keep}, {drop}): right rotation off by {right}"
            );
            for (what, e) in [("the wrong sign", wrong_sign), ("one too few", short), ("one too many", long)]
            {
                assert!(e > 0.1, "slide({keep}, {drop}): {what} is off by only {e} (right {right})");
            }
        }
    }

    /// Layer 0's keys of `head` at positions `0..n` in an int8 cache, dequantized, and its values and
    /// value scales as bits.
    fn layer0_q8(cache: &KvCache, head: usize, hd: usize, n: usize) -> (Vec<Vec<f32>>, Vec<(i8, u32)>) {
        let HeadKv::Q8 { keys, key_scales, values, value_scales } = cache.head(0, head, n) else {
            panic!("an int8 cache")
        };
        let dequantized = (0..n)
            .map(|j| (0..hd).map(|d| keys[key_q8_index(hd, j, d)] as f32 * key_scales[j]).collect())
            .collect();
        let values = (0..n * hd).map(|i| (values[i], value_scales[i / hd].to_bits())).collect();
        (dequantized, values)
    }

    /// Largest distance of a key from another, coordinate by coordinate, relative to the other's
    /// largest coordinate (int8 rounding is relative to the vector's largest coordinate).
    fn worst_vector_error(a: &[Vec<f32>], b: &[Vec<f32>]) -> f64 {
        let mut worst = 0f64;
        for (ka, kb) in a.iter().zip(b) {
            let amax = kb.iter().fold(0f64, |m, &x| m.max((x as f64).abs())).max(1e-6);
            for (&x, &y) in ka.iter().zip(kb) {
                worst = worst.max((x as f64 - y as f64).abs() / amax);
            }
        }
        worst
    }

    /// Engine version 2: after `slide(keep, drop)` layer 0 holds, within int8 rounding (a fresh key's
    /// and a moved key's, each at most half a step of 1/127 of the largest coordinate, plus the
    /// rotation), the keys of a fresh cache fed the kept tokens, and bit for bit its values and their
    /// scales; the wrong turns are off by far more.
    #[test]
    fn slid_int8_keys_are_the_keys_of_their_new_positions() {
        for (keep, drop) in CASES {
            let errors = turn_errors(EngineVersion::V2, keep, drop, |slid, fresh, h, hd, n| {
                let (ks, vs) = layer0_q8(slid, h, hd, n);
                let (kf, vf) = layer0_q8(fresh, h, hd, n);
                assert!(vs == vf, "values and their scales move as bits");
                assert_eq!(ks[..keep], kf[..keep], "kept keys are untouched");
                worst_vector_error(&ks, &kf)
            });
            let [right, wrong_sign, short, long] = errors;
            eprintln!(
                "int8 slide({keep}, {drop}): layer-0 key error relative to the largest coordinate: right {right:.2e}, wrong sign {wrong_sign:.3}, one too few {short:.3}, one too many {long:.3}"
            );
            assert!(right <= 1.5 / 127.0, "slide({keep}, {drop}): right rotation off by {right}");
            for (what, e) in [("the wrong sign", wrong_sign), ("one too few", short), ("one too many", long)]
            {
                assert!(e > 0.05, "slide({keep}, {drop}): {what} is off by only {e} (right {right})");
            }
        }
    }
}
