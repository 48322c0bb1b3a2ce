//! The AVX-512 path: [`super::avx2`] with its two hot spots redone on newer instructions, lane for lane
//! the same arithmetic, so it gives the same bits as the AVX2 and scalar paths.
//!
//! - **Integer block dots** of full groups use VNNI's `vpdpbusd`, which multiplies u8 by i8 and adds
//!   four adjacent products straight into an i32 lane. In the interleaved group layout of [`super`] those
//!   four bytes belong to one block, so 8 `vpdpbusd` leave the 8 exact block sums in the 8 lanes, where
//!   the AVX2 code needs 8 `maddubs`, 7 `add`s and a widening `madd`. Integer sums are exact in any
//!   order, so these are the same sums. 4-bit weights are the unsigned operand as they are; 8-bit
//!   weights use the same sign trick as AVX2 (`|w|` as u8 against `sign(a, w)`), and without the i16
//!   step nothing can saturate.
//! - **Attention** puts a pair of queries in one 512-bit register, query a in lanes 0..8 and query b in
//!   lanes 8..16, against keys or values broadcast to both halves. Each half performs exactly the
//!   multiplies and adds that [`super::avx2`] performs for its query, in the same order, and the halves
//!   go through the same 8-lane reduction; one instruction now does the work of two.
//!
//! Everything else (tails of fewer than 8 blocks, lone queries, softmax, SwiGLU, `exp`) is the AVX2
//! code: those are not where the time goes. Requires AVX2, F16C and AVX-512 F, BW, DQ, VL and VNNI.

// Loops over rows and lanes index several arrays by the same number, as the math reads.
#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;

use half::f16;

use super::avx2::{self, ActRows};
use super::{AttnScratch, BLOCK, GROUP, LANES, QActs, QMatrix, Query, StridedOut, WeightKind};

/// See [`super::matmul_rows`].
///
/// # Safety
/// The path's CPU features available; arguments as checked by [`super::matmul_rows`].
#[target_feature(enable = "avx2,f16c,avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")]
pub unsafe fn matmul_rows(w: &QMatrix, n0: usize, n1: usize, x: &QActs, out: &StridedOut, col0: usize) {
    // SAFETY: forwarded from the caller; the VNNI group kernel's features are this function's.
    unsafe {
        match w.kind() {
            WeightKind::U4 => avx2::matmul_kind::<true, true>(w, n0, n1, x, out, col0),
            WeightKind::I8 => avx2::matmul_kind::<false, true>(w, n0, n1, x, out, col0),
        }
    }
}

/// [`avx2`]'s full-group kernel with `vpdpbusd`: one full interleaved group `g` of one weight row
/// against R activation rows, its 8 exact block sums per row, then the same float steps
/// ([`avx2::group_finish`]).
///
/// # Safety
/// The path's CPU features; group `g` exists in the weight row and in every activation row.
#[inline]
#[target_feature(enable = "avx2,f16c,avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")]
pub(super) unsafe fn group_full<const R: usize, const Q4: bool>(
    wq: *const u8,
    dw: *const f32,
    mw: *const f32,
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
        avx2::group_finish::<R, Q4>(&isums, dw, mw, x, b0, acc);
    }
}

/// See [`super::attend`]: [`avx2::attend_with`] with the 512-bit pair kernels below.
///
/// # Safety
/// The path's CPU features available; bounds as asserted by [`super::attend`].
#[target_feature(enable = "avx2,f16c,avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")]
pub unsafe fn attend(
    queries: &mut [Query<'_>],
    keys: &[f16],
    values: &[f16],
    stride: usize,
    scale: f32,
    scratch: &mut AttnScratch,
) {
    // SAFETY: forwarded from the caller; the wide pair kernels' features are this function's.
    unsafe { avx2::attend_with::<true>(queries, keys, values, stride, scale, scratch) }
}

/// `[lo | hi]`: query a's 8 lanes below query b's.
#[inline]
#[target_feature(enable = "avx2,f16c,avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")]
fn join(lo: __m256, hi: __m256) -> __m512 {
    _mm512_insertf32x8::<1>(_mm512_castps256_ps512(lo), hi)
}

/// The 8 scores of two queries against the 8 converted keys in `kv` (rows `hd` apart): query a in the
/// low half, query b in the high half of each accumulator, every key broadcast to both. Score `j` of
/// each query is `tree8(lanes of q . k_j) * scale`, exactly as [`avx2`] computes it.
///
/// # Safety
/// The path's CPU features; `qa`, `qb` hold `hd` floats, `kv` 8 rows of `hd`, each output 8 writable
/// floats.
#[inline]
#[target_feature(enable = "avx2,f16c,avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")]
pub(super) unsafe fn scores_pair(
    qa: *const f32,
    qb: *const f32,
    kv: *const f32,
    hd: usize,
    scale: f32,
    out: (*mut f32, *mut f32),
) {
    // SAFETY: the caller's bounds.
    unsafe {
        let mut acc = [_mm512_setzero_ps(); LANES];
        for c in (0..hd).step_by(LANES) {
            let q = join(_mm256_loadu_ps(qa.add(c)), _mm256_loadu_ps(qb.add(c)));
            for (j, a) in acc.iter_mut().enumerate() {
                let k = _mm512_broadcast_f32x8(_mm256_loadu_ps(kv.add(j * hd + c)));
                *a = _mm512_add_ps(*a, _mm512_mul_ps(q, k));
            }
        }
        let scalev = _mm256_set1_ps(scale);
        let lo = acc.map(|a| _mm512_castps512_ps256(a));
        let hi = acc.map(|a| _mm512_extractf32x8_ps::<1>(a));
        _mm256_storeu_ps(out.0, _mm256_mul_ps(avx2::reduce8_ps(&lo), scalev));
        _mm256_storeu_ps(out.1, _mm256_mul_ps(avx2::reduce8_ps(&hi), scalev));
    }
}

/// `out_a += sum_j pa[j] * v_j` and likewise for `b`, over the 8 converted values in `kv`, positions in
/// increasing order: both queries' sums for 8 dimensions in one register, up to 64 dimensions at a
/// time.
///
/// # Safety
/// The path's CPU features; `p.0`, `p.1` hold 8 floats, `kv` 8 rows of `hd`, each output `hd` floats.
#[inline]
#[target_feature(enable = "avx2,f16c,avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")]
pub(super) unsafe fn wsum_pair(
    p: (*const f32, *const f32),
    kv: *const f32,
    hd: usize,
    out: (*mut f32, *mut f32),
) {
    let mut c0 = 0;
    while c0 < hd {
        let nc = ((hd - c0) / LANES).min(8);
        // SAFETY: the caller's bounds; `c0 + 8 * nc <= hd`.
        unsafe {
            match nc {
                8 => wsum_pair_cols::<8>(p, kv, hd, out, c0),
                7 => wsum_pair_cols::<7>(p, kv, hd, out, c0),
                6 => wsum_pair_cols::<6>(p, kv, hd, out, c0),
                5 => wsum_pair_cols::<5>(p, kv, hd, out, c0),
                4 => wsum_pair_cols::<4>(p, kv, hd, out, c0),
                3 => wsum_pair_cols::<3>(p, kv, hd, out, c0),
                2 => wsum_pair_cols::<2>(p, kv, hd, out, c0),
                _ => wsum_pair_cols::<1>(p, kv, hd, out, c0),
            }
        }
        c0 += nc * LANES;
    }
}

/// [`wsum_pair`] for dimensions `c0..c0 + 8 * NC`, the `NC` paired sums in registers.
///
/// # Safety
/// As [`wsum_pair`], and `c0 + 8 * NC <= hd`.
#[inline]
#[target_feature(enable = "avx2,f16c,avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")]
unsafe fn wsum_pair_cols<const NC: usize>(
    p: (*const f32, *const f32),
    kv: *const f32,
    hd: usize,
    out: (*mut f32, *mut f32),
    c0: usize,
) {
    // SAFETY: the caller's bounds.
    unsafe {
        let mut o: [__m512; NC] = std::array::from_fn(|k| {
            let at = c0 + k * LANES;
            join(_mm256_loadu_ps(out.0.add(at)), _mm256_loadu_ps(out.1.add(at)))
        });
        for j in 0..LANES {
            let pj = join(_mm256_set1_ps(*p.0.add(j)), _mm256_set1_ps(*p.1.add(j)));
            for (k, ok) in o.iter_mut().enumerate() {
                let v = _mm512_broadcast_f32x8(_mm256_loadu_ps(kv.add(j * hd + c0 + k * LANES)));
                *ok = _mm512_add_ps(*ok, _mm512_mul_ps(pj, v));
            }
        }
        for (k, ok) in o.iter().enumerate() {
            let at = c0 + k * LANES;
            _mm256_storeu_ps(out.0.add(at), _mm512_castps512_ps256(*ok));
            _mm256_storeu_ps(out.1.add(at), _mm512_extractf32x8_ps::<1>(*ok));
        }
    }
}
