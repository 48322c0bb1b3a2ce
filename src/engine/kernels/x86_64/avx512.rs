//! The AVX-512 path: the AVX2 path (`avx2.rs`) with its hot spots redone on newer instructions, lane
//! for lane the same arithmetic, so it gives the same bits as the AVX2 and scalar paths.
//!
//! - **Integer block dots** of full groups use VNNI's `vpdpbusd`, which multiplies u8 by i8 and adds
//!   four adjacent products straight into an i32 lane. In the interleaved group layout of [`crate::engine::kernels`] those
//!   four bytes belong to one block, so 8 `vpdpbusd` leave the 8 exact block sums in the 8 lanes, where
//!   the AVX2 code needs 8 `maddubs`, 7 `add`s and a widening `madd`. Integer sums are exact in any
//!   order, so these are the same sums. 4-bit weights are the unsigned operand as they are; 8-bit
//!   weights use the same sign trick as AVX2 (`|w|` as u8 against `sign(a, w)`), and without the i16
//!   step nothing can saturate.
//! - **Attention** is the shared driver ([`super::attend`]) on one 16-lane register ([`F32x16`]): one
//!   register holds one dimension of a whole key tile's 16 keys, 3 queries share each key load and up
//!   to 6 each value load (16 dimensions per register), and the softmax and `exp` run on 16 lanes.
//!
//! Everything else (tails of fewer than 8 blocks, SwiGLU, activation quantization, attention over head
//! sizes that are not a multiple of 16) is the AVX2 code, shared through [`super::common`] or picked in
//! the path's kernel table ([`super`]): those are not where the time goes. Requires AVX2, F16C and AVX-512 F, BW, DQ, VL and VNNI.

// Loops over rows and lanes index several arrays by the same number, as the math reads.
#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;

use half::f16;

use super::super::scales::Scale;
use super::super::{AttnScratch, BLOCK, GROUP, QActs, QMatrix, Query, StridedOut};
use super::attend::Lanes;
use super::common::{ActRows, FullGroup, group_finish, matmul_kind, with_weights};
use crate::arch::x86_64::avx512::exp16;

/// See [`crate::engine::kernels::Kernels::matmul_rows`].
///
/// # Safety
/// The path's CPU features available; arguments as checked by [`crate::engine::kernels::Kernels::matmul_rows`].
#[target_feature(enable = "avx2,f16c,avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")]
pub unsafe fn matmul_rows(w: &QMatrix, n0: usize, n1: usize, x: &QActs, out: &StridedOut, col0: usize) {
    // SAFETY: forwarded from the caller; the VNNI group kernel's features are this function's.
    unsafe { with_weights!(w, Q4, S, rows => matmul_kind::<Vnni, Q4, S>(w, rows, n0, n1, x, out, col0)) }
}

/// The AVX2 full-group kernel with `vpdpbusd`: one full interleaved group `g` of one weight row
/// against R activation rows, its 8 exact block sums per row, then the same float steps
/// ([`group_finish`]).
///
/// # Safety
/// The path's CPU features; group `g` exists in the weight row and in every activation row.
#[inline]
#[target_feature(enable = "avx2,f16c,avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")]
unsafe fn group_full_vnni<const R: usize, const Q4: bool, S: Scale>(
    wq: *const u8,
    dw: *const S,
    mw: *const S,
    x: &ActRows<R>,
    g: usize,
    acc: &mut [__m256; R],
) {
    // SAFETY: all reads stay inside group g (caller).
    unsafe {
        let zero = _mm256_setzero_si256();
        let b0 = g * GROUP;
        // The unsigned operand of each of the 8 slices, and for 8-bit weights the signed originals.
        let mut wu = [zero; 8];
        let mut ws = [zero; 8];
        if Q4 {
            let mask = _mm256_set1_epi8(0x0F);
            let wg = wq.add(g * GROUP * BLOCK / 2);
            for u in 0..4 {
                let p = _mm256_loadu_si256(wg.add(u * BLOCK) as *const __m256i);
                wu[u] = _mm256_and_si256(p, mask);
                wu[u + 4] = _mm256_and_si256(_mm256_srli_epi16::<4>(p), mask);
            }
        } else {
            let wg = wq.add(g * GROUP * BLOCK);
            for v in 0..8 {
                ws[v] = _mm256_loadu_si256(wg.add(v * BLOCK) as *const __m256i);
                wu[v] = _mm256_abs_epi8(ws[v]);
            }
        }
        let mut isums = [zero; R];
        for r in 0..R {
            let a = x.q(r, b0);
            let slice = |s: __m256i, v: usize| {
                let av = _mm256_loadu_si256(a.add(v * BLOCK) as *const __m256i);
                let av = if Q4 { av } else { _mm256_sign_epi8(av, ws[v]) };
                _mm256_dpbusd_epi32(s, wu[v], av)
            };
            // Two chains of four slices, so the adds do not wait on one another's latency.
            let lo = slice(slice(slice(slice(zero, 0), 1), 2), 3);
            let hi = slice(slice(slice(slice(zero, 4), 5), 6), 7);
            isums[r] = _mm256_add_epi32(lo, hi);
        }
        group_finish::<R, Q4, S>(&isums, dw, mw, x, b0, acc);
    }
}

/// The VNNI full-group kernel ([`group_full_vnni`]) for the shared product driver.
pub(super) struct Vnni;

impl FullGroup for Vnni {
    #[inline(always)]
    unsafe fn group_full<const R: usize, const Q4: bool, S: Scale>(
        wq: *const u8,
        dw: *const S,
        mw: *const S,
        x: &ActRows<R>,
        g: usize,
        acc: &mut [__m256; R],
    ) {
        // SAFETY: forwarded from the caller (the AVX-512 path's features are the trait's here).
        unsafe { group_full_vnni::<R, Q4, S>(wq, dw, mw, x, g, acc) }
    }
}

/// One AVX-512 register as the attention driver's lanes ([`super::attend`]): 16 keys (a whole key tile)
/// per score block, all 8 accumulator classes in one pass (3 queries and the key take 25 of the 32
/// registers), 6 queries per weighted-sum pass (24 sums, 4 values and a weight: 29).
#[derive(Clone, Copy)]
pub(super) struct F32x16(__m512);

impl Lanes for F32x16 {
    const WIDTH: usize = 16;
    const SCORE_QUERIES: usize = 3;
    const SCORE_CLASSES: usize = 8;
    const SUM_QUERIES: usize = 6;

    // SAFETY (every method): the path's features, the trait's contract for this type; pointers as
    // documented on the trait.
    #[inline(always)]
    unsafe fn zero() -> Self {
        unsafe { Self(_mm512_setzero_ps()) }
    }
    #[inline(always)]
    unsafe fn splat(x: f32) -> Self {
        unsafe { Self(_mm512_set1_ps(x)) }
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        unsafe { Self(_mm512_loadu_ps(p)) }
    }
    #[inline(always)]
    unsafe fn load_half(p: *const u16) -> Self {
        unsafe { Self(_mm512_cvtph_ps(_mm256_loadu_si256(p as *const __m256i))) }
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        unsafe { _mm512_storeu_ps(p, self.0) }
    }
    #[inline(always)]
    unsafe fn add(self, b: Self) -> Self {
        unsafe { Self(_mm512_add_ps(self.0, b.0)) }
    }
    #[inline(always)]
    unsafe fn sub(self, b: Self) -> Self {
        unsafe { Self(_mm512_sub_ps(self.0, b.0)) }
    }
    #[inline(always)]
    unsafe fn mul(self, b: Self) -> Self {
        unsafe { Self(_mm512_mul_ps(self.0, b.0)) }
    }
    #[inline(always)]
    unsafe fn div(self, b: Self) -> Self {
        unsafe { Self(_mm512_div_ps(self.0, b.0)) }
    }
    #[inline(always)]
    unsafe fn max_below(self, m: Self, valid: usize) -> Self {
        unsafe { Self(_mm512_mask_max_ps(m.0, lanes_below16(valid), self.0, m.0)) }
    }
    #[inline(always)]
    unsafe fn reduce_max(self) -> f32 {
        unsafe { _mm512_reduce_max_ps(self.0) }
    }
    #[inline(always)]
    unsafe fn exp_below(self, valid: usize) -> Self {
        unsafe { Self(_mm512_maskz_mov_ps(lanes_below16(valid), exp16(self.0))) }
    }
    #[inline(always)]
    unsafe fn fold8(self, acc: __m256) -> __m256 {
        unsafe {
            let low = _mm256_add_ps(acc, _mm512_castps512_ps256(self.0));
            _mm256_add_ps(low, _mm512_extractf32x8_ps::<1>(self.0))
        }
    }
}

/// The mask of lanes below `valid` (all 16 from 16 on).
#[inline(always)]
fn lanes_below16(valid: usize) -> __mmask16 {
    if valid >= 16 { 0xFFFF } else { (1u16 << valid) - 1 }
}

/// See [`crate::engine::kernels::Kernels::attend`]: the shared driver ([`super::attend`]) on 16 lanes.
///
/// # Safety
/// The path's CPU features available; bounds as asserted by
/// [`crate::engine::kernels::Kernels::attend`]; the head dimension a multiple of 16 (the path's table
/// sends the others to the AVX2 code).
#[target_feature(enable = "avx2,f16c,avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")]
pub unsafe fn attend(
    queries: &mut [Query<'_>],
    keys: &[f16],
    values: &[f16],
    scale: f32,
    scratch: &mut AttnScratch,
) {
    // SAFETY: forwarded from the caller.
    unsafe { super::attend::attend::<F32x16>(queries, keys, values, scale, scratch) }
}
