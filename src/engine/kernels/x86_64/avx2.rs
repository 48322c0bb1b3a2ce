//! The AVX2 path: the same operations as [`crate::engine::kernels::scalar`] in the same order, 8 lanes at a time.
//!
//! Integer block dots use `maddubs` (u8 x i8 -> sums of pairs in i16), then horizontal adds:
//! - 4-bit weights are unsigned nibbles (0..=15), the unsigned operand as they are; a pair sums to at
//!   most 2*15*127, and even 16 products stay within i16 (30480), so two `hadd_epi16` run before one
//!   widening `madd` with ones;
//! - 8-bit weights use the sign trick: `maddubs(|w|, sign(a, w))` moves w's sign onto the activation;
//!   `|w|` read as u8 is right even for -128, and a pair sums to at most 2*128*127 = 32512, so they are
//!   widened by `madd` at once and added with `hadd_epi32`.
//!
//! For 8 consecutive blocks this yields one vector holding one exact block sum per lane (see [`group_full_maddubs`]);
//! lane `l` then goes through the float steps of block `8g + l`, which is the "lane = block mod 8"
//! structure of the scalar code. Attention is the shared driver ([`super::attend`]) on one 8-lane
//! register ([`F32x8`]: F16C conversions, 8 keys of a key tile per score block, `exp` as
//! [`crate::arch`]'s 8-lane transcription of [`crate::arch::math::exp`]). What this path shares with
//! the AVX-512 path (the float steps of a block,
//! the tail kernel, the product driver) is in [`super::common`]. All functions require AVX2 and F16C.

// Loops over rows and lanes index several arrays by the same number, as the math reads.
#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;

use half::f16;

use super::super::scales::Scale;
use super::super::{AttnScratch, BLOCK, GROUP, LANES, QActs, QMatrix, Query, StridedOut, i8_offset};
use super::attend::Lanes;
use super::common::{ActRows, FullGroup, group_finish, lanes_below, matmul_kind, with_weights};
use crate::arch::math;
use crate::arch::x86_64::avx2::exp8;

/// One full interleaved group `g` (blocks `8g..8g+8`, layout in the module docs of [`super`]) of one
/// weight row against R activation rows: slice products summed vertically into one exact block sum per
/// lane, then the float steps of the module docs added to `acc`.
///
/// # Safety
/// AVX2; group `g` exists in the weight row and in every activation row.
#[inline]
#[target_feature(enable = "avx2,f16c")]
unsafe fn group_full_maddubs<const R: usize, const Q4: bool, S: Scale>(
    wq: *const u8,
    dw: *const S,
    mw: *const S,
    x: &ActRows<R>,
    g: usize,
    acc: &mut [__m256; R],
) {
    // SAFETY: all reads stay inside group g (caller).
    unsafe {
        let ones = _mm256_set1_epi16(1);
        let b0 = g * GROUP;
        let mut isums = [_mm256_setzero_si256(); R];
        if Q4 {
            // 8 slices of unsigned values from 4 loads of 32 bytes.
            let mask = _mm256_set1_epi8(0x0F);
            let wg = wq.add(g * GROUP * BLOCK / 2);
            let mut w = [_mm256_setzero_si256(); 8];
            for u in 0..4 {
                let p = _mm256_loadu_si256(wg.add(u * BLOCK) as *const __m256i);
                w[u] = _mm256_and_si256(p, mask);
                w[u + 4] = _mm256_and_si256(_mm256_srli_epi16::<4>(p), mask);
            }
            for r in 0..R {
                let a = x.q(r, b0);
                let m = |v: usize| {
                    _mm256_maddubs_epi16(w[v], _mm256_loadu_si256(a.add(v * BLOCK) as *const __m256i))
                };
                // Each i16 lane sums 2 products per slice, 16 over the group: at most 16*15*127 = 30480.
                let s = _mm256_add_epi16(
                    _mm256_add_epi16(_mm256_add_epi16(m(0), m(1)), _mm256_add_epi16(m(2), m(3))),
                    _mm256_add_epi16(_mm256_add_epi16(m(4), m(5)), _mm256_add_epi16(m(6), m(7))),
                );
                isums[r] = _mm256_madd_epi16(s, ones);
            }
        } else {
            let wg = wq.add(g * GROUP * BLOCK);
            let mut wabs = [_mm256_setzero_si256(); 8];
            for (v, wv) in wabs.iter_mut().enumerate() {
                *wv = _mm256_abs_epi8(_mm256_loadu_si256(wg.add(v * BLOCK) as *const __m256i));
            }
            for r in 0..R {
                let a = x.q(r, b0);
                let p = |v: usize| {
                    let w = _mm256_loadu_si256(wg.add(v * BLOCK) as *const __m256i);
                    let av = _mm256_sign_epi8(_mm256_loadu_si256(a.add(v * BLOCK) as *const __m256i), w);
                    _mm256_madd_epi16(_mm256_maddubs_epi16(wabs[v], av), ones)
                };
                isums[r] = _mm256_add_epi32(
                    _mm256_add_epi32(_mm256_add_epi32(p(0), p(1)), _mm256_add_epi32(p(2), p(3))),
                    _mm256_add_epi32(_mm256_add_epi32(p(4), p(5)), _mm256_add_epi32(p(6), p(7))),
                );
            }
        }
        group_finish::<R, Q4, S>(&isums, dw, mw, x, b0, acc);
    }
}

/// The AVX2 full-group kernel ([`group_full_maddubs`]) for the shared product driver.
pub(super) struct Maddubs;

impl FullGroup for Maddubs {
    #[inline(always)]
    unsafe fn group_full<const R: usize, const Q4: bool, S: Scale>(
        wq: *const u8,
        dw: *const S,
        mw: *const S,
        x: &ActRows<R>,
        g: usize,
        acc: &mut [__m256; R],
    ) {
        // SAFETY: forwarded from the caller (AVX2 and F16C are the trait's features here).
        unsafe { group_full_maddubs::<R, Q4, S>(wq, dw, mw, x, g, acc) }
    }
}

/// See [`crate::engine::kernels::Kernels::matmul_rows`].
///
/// # Safety
/// AVX2 and F16C available; arguments as checked by [`crate::engine::kernels::Kernels::matmul_rows`].
#[target_feature(enable = "avx2,f16c")]
pub unsafe fn matmul_rows(w: &QMatrix, n0: usize, n1: usize, x: &QActs, out: &StridedOut, col0: usize) {
    // SAFETY: forwarded from the caller.
    unsafe { with_weights!(w, Q4, S, rows => matmul_kind::<Maddubs, Q4, S>(w, rows, n0, n1, x, out, col0)) }
}

/// One AVX2 register as the attention driver's lanes ([`super::attend`]): 8 keys per score block, 4
/// accumulator classes per query in each of two score passes (3 queries, their 12 accumulators, the key
/// and a broadcast take 14 of the 16 registers), 2 queries per weighted-sum pass (8 sums, 4 values and a
/// weight: 13).
#[derive(Clone, Copy)]
pub(super) struct F32x8(__m256);

impl Lanes for F32x8 {
    const WIDTH: usize = 8;
    const SCORE_QUERIES: usize = 3;
    const SCORE_CLASSES: usize = 4;
    const SUM_QUERIES: usize = 2;

    // SAFETY (every method): AVX2 and F16C, the trait's contract for this type; pointers as documented
    // on the trait.
    #[inline(always)]
    unsafe fn zero() -> Self {
        unsafe { Self(_mm256_setzero_ps()) }
    }
    #[inline(always)]
    unsafe fn splat(x: f32) -> Self {
        unsafe { Self(_mm256_set1_ps(x)) }
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        unsafe { Self(_mm256_loadu_ps(p)) }
    }
    #[inline(always)]
    unsafe fn load_half(p: *const u16) -> Self {
        unsafe { Self(_mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i))) }
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        unsafe { _mm256_storeu_ps(p, self.0) }
    }
    #[inline(always)]
    unsafe fn add(self, b: Self) -> Self {
        unsafe { Self(_mm256_add_ps(self.0, b.0)) }
    }
    #[inline(always)]
    unsafe fn sub(self, b: Self) -> Self {
        unsafe { Self(_mm256_sub_ps(self.0, b.0)) }
    }
    #[inline(always)]
    unsafe fn mul(self, b: Self) -> Self {
        unsafe { Self(_mm256_mul_ps(self.0, b.0)) }
    }
    #[inline(always)]
    unsafe fn div(self, b: Self) -> Self {
        unsafe { Self(_mm256_div_ps(self.0, b.0)) }
    }
    #[inline(always)]
    unsafe fn max_below(self, m: Self, valid: usize) -> Self {
        unsafe {
            let s = if valid >= 8 {
                self.0
            } else {
                _mm256_blendv_ps(m.0, self.0, _mm256_castsi256_ps(lanes_below(valid)))
            };
            Self(_mm256_max_ps(s, m.0))
        }
    }
    #[inline(always)]
    unsafe fn reduce_max(self) -> f32 {
        let mut lanes = [0f32; 8];
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), self.0) };
        lanes.into_iter().fold(f32::NEG_INFINITY, |max, v| if v > max { v } else { max })
    }
    #[inline(always)]
    unsafe fn exp_below(self, valid: usize) -> Self {
        unsafe {
            let e = exp8(self.0);
            Self(if valid >= 8 { e } else { _mm256_and_ps(e, _mm256_castsi256_ps(lanes_below(valid))) })
        }
    }
    #[inline(always)]
    unsafe fn fold8(self, acc: __m256) -> __m256 {
        unsafe { _mm256_add_ps(acc, self.0) }
    }
}

/// See [`crate::engine::kernels::Kernels::attend`]: the shared driver ([`super::attend`]) on 8 lanes.
///
/// # Safety
/// AVX2 and F16C available; bounds as asserted by [`crate::engine::kernels::Kernels::attend`].
#[target_feature(enable = "avx2,f16c")]
pub unsafe fn attend(
    queries: &mut [Query<'_>],
    keys: &[f16],
    values: &[f16],
    scale: f32,
    scratch: &mut AttnScratch,
) {
    // SAFETY: forwarded from the caller; the head dimension is a multiple of 8 (asserted there).
    unsafe { super::attend::attend::<F32x8>(queries, keys, values, scale, scratch) }
}

/// [`crate::engine::kernels::quantize_row`] 8 lanes at a time, with the same bits: the maximum of `|x|` skips NaN as
/// the scalar comparison does (and is exact in any order), `127 / amax` and `amax / 127` are the same
/// scalar divisions, each `q` is `x * (127 / amax)` plus or minus one half by sign, truncated, a NaN
/// product giving 0 as Rust's saturating cast does, then clamped; integer sums are exact.
///
/// # Safety
/// AVX2 and F16C available; lengths as [`crate::engine::kernels::quantize_row`] asserts.
#[target_feature(enable = "avx2,f16c")]
pub unsafe fn quantize_row(x: &[f32], q: &mut [i8], d: &mut [f32], s: &mut [f32]) {
    let blocks = x.len() / BLOCK;
    assert!(x.len() == blocks * BLOCK && q.len() == x.len() && d.len() == blocks && s.len() == blocks);
    let abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(i32::MAX));
    let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for b in 0..blocks {
        // SAFETY: block b lies inside x; the stores below stay inside q's block b (either layout).
        unsafe {
            let p = x.as_ptr().add(b * BLOCK);
            let v = [0, 8, 16, 24].map(|o| _mm256_loadu_ps(p.add(o)));
            // max(a, m) returns m when a is NaN: NaN lanes are skipped, as `a > amax` skips them.
            let mut m = _mm256_setzero_ps();
            for vi in v {
                m = _mm256_max_ps(_mm256_and_ps(vi, abs_mask), m);
            }
            let mut lanes = [0f32; LANES];
            _mm256_storeu_ps(lanes.as_mut_ptr(), m);
            let amax = lanes.into_iter().fold(0f32, |a, l| if l > a { l } else { a });
            let id = 127.0 / amax;
            if amax == 0.0 || !id.is_finite() {
                (d[b], s[b]) = (0.0, 0.0);
                write_block(q, blocks, b, _mm256_setzero_si256());
                continue;
            }
            let idv = _mm256_set1_ps(id);
            let r = v.map(|vi| {
                let t = _mm256_mul_ps(vi, idv);
                let ge = _mm256_cmp_ps::<_CMP_GE_OQ>(t, _mm256_setzero_ps());
                let half = _mm256_blendv_ps(_mm256_set1_ps(-0.5), _mm256_set1_ps(0.5), ge);
                let r = _mm256_cvttps_epi32(_mm256_add_ps(t, half));
                // NaN converts to i32::MIN here and to 0 in Rust.
                let nan = _mm256_castps_si256(_mm256_cmp_ps::<_CMP_UNORD_Q>(t, t));
                let r = _mm256_andnot_si256(nan, r);
                _mm256_min_epi32(_mm256_max_epi32(r, _mm256_set1_epi32(-127)), _mm256_set1_epi32(127))
            });
            let total = _mm256_add_epi32(_mm256_add_epi32(r[0], r[1]), _mm256_add_epi32(r[2], r[3]));
            let mut sums = [0i32; LANES];
            _mm256_storeu_si256(sums.as_mut_ptr() as *mut __m256i, total);
            let sum: i32 = sums.iter().sum();
            // i32 -> i8 (values already in range): the packs interleave 4-element groups, which the
            // permutation puts back in element order.
            let packed = _mm256_packs_epi16(_mm256_packs_epi32(r[0], r[1]), _mm256_packs_epi32(r[2], r[3]));
            write_block(q, blocks, b, _mm256_permutevar8x32_epi32(packed, order));
            let scale = amax / 127.0;
            (d[b], s[b]) = (scale, scale * sum as f32);
        }
    }
}

/// Stores block `b`'s 32 int8 values (in element order in `v`) into a row in the layout of the module
/// docs of [`crate::engine::kernels`]: 4-element slices 32 bytes apart inside a full group, contiguous in the tail.
///
/// # Safety
/// AVX2; `q` is a whole row of `blocks` blocks, `b < blocks`.
#[inline]
#[target_feature(enable = "avx2,f16c")]
unsafe fn write_block(q: &mut [i8], blocks: usize, b: usize, v: __m256i) {
    assert!((b + 1) * BLOCK <= q.len() && q.len() == blocks * BLOCK);
    if b < blocks / GROUP * GROUP {
        let mut four = [0i32; LANES];
        // SAFETY: 8 writable i32.
        unsafe { _mm256_storeu_si256(four.as_mut_ptr() as *mut __m256i, v) };
        for (slice, f) in four.iter().enumerate() {
            let at = i8_offset(blocks, b, 4 * slice);
            q[at..at + 4].copy_from_slice(&(f.to_ne_bytes().map(|x| x as i8)));
        }
    } else {
        // SAFETY: a tail block's 32 bytes are contiguous at i8_offset(.., 0) = b * 32, inside q.
        unsafe { _mm256_storeu_si256(q.as_mut_ptr().add(i8_offset(blocks, b, 0)) as *mut __m256i, v) };
    }
}

/// See [`crate::engine::kernels::Kernels::swiglu`]: `x / (1 + exp(-x)) * up`, 8 lanes at a time, the tail one by one with the
/// scalar functions (the same operations).
///
/// # Safety
/// AVX2 and F16C available; equal lengths.
#[target_feature(enable = "avx2,f16c")]
pub unsafe fn swiglu(gate: &[f32], up: &[f32], out: &mut [f32]) {
    let n = out.len();
    let full = n / LANES * LANES;
    let one = _mm256_set1_ps(1.0);
    let sign = _mm256_set1_ps(-0.0);
    let mut i = 0;
    while i < full {
        // SAFETY: i + 8 <= n for all three slices.
        unsafe {
            let g = _mm256_loadu_ps(gate.as_ptr().add(i));
            let u = _mm256_loadu_ps(up.as_ptr().add(i));
            let silu = _mm256_div_ps(g, _mm256_add_ps(one, exp8(_mm256_xor_ps(g, sign))));
            _mm256_storeu_ps(out.as_mut_ptr().add(i), _mm256_mul_ps(silu, u));
        }
        i += LANES;
    }
    for j in full..n {
        out[j] = math::silu(gate[j]) * up[j];
    }
}
