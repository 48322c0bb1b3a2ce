//! [`Kernels::attend_q8`] (int8 keys and values) on AVX2, with the bits of the scalar reference
//! ([`crate::engine::kernels::scalar::attend_q8`]):
//!
//! - **Queries** are quantized by [`quantize_vector`] itself, the scalar function (an `hd`-long
//!   vector per query, next to nothing beside the scores), so their integers and scales are the
//!   scalar ones by construction.
//! - **Scores.** A key tile ([`key_q8_index`]) is `hd / 4` groups of 64 bytes, each 4 dimensions of
//!   the tile's 16 positions with one position's 4 bytes adjacent. Each group is two 32-byte loads (8
//!   positions each, one per 32-bit lane); against a query's 4 int8 of the same dimensions broadcast
//!   to every lane, `maddubs(|k|, sign(q, k))` leaves in each 16-bit half of a lane the sum of two
//!   products (at most 2 * 128 * 127 = 32512: no saturation, even for a key of -128, whose `|k|` read
//!   as u8 is 128) and `madd` with ones the sum of the 4, in i32. The groups add up vertically into
//!   one exact `isum_j` per lane, and each key load serves [`SCORE_QUERIES`] queries. Then per lane
//!   the three multiplications `((sq * ks_j) * isum_j) * scale`, each one IEEE operation like the
//!   scalar ones (the i32 -> f32 conversion rounds to nearest like `as f32`, and is exact anyway).
//! - **Softmax** is the f16 attention's ([`super::attend`]'s `softmax_row`): the same `-inf` before a
//!   window, maximum, `exp` and lanes `j mod 8`. The numerators a query's weighted sum reads (its
//!   positions `start..npos`) are then multiplied by the value scales in place, one IEEE product each
//!   (`w_j = e_j * vs_j`), after the sum was taken.
//! - **Weights.** `w_j = e_j * vs_j` on the positions a query sees, one IEEE product per lane; their
//!   total in lanes `j mod 8` (the registers' own lanes, positions before the view adding their +0.0
//!   numerators, which changes no lane) reduced by the tree; `wq_j` by adding 0.5 and truncating, the
//!   scalar `round_to_i32` of a non-negative number, then clamped to 32767: [`weights_q8`]'s bits.
//! - **Weighted sums** are exact integer sums, so their order is free: positions go in pairs, the two
//!   values' bytes interleaved (`unpacklo/hi_epi8`) and widened to i16, against the pair's two i16
//!   weights broadcast to every 32-bit lane: one `madd` gives `wq_j * v_j[d] + wq_(j+1) * v_(j+1)[d]`
//!   for 8 dimensions, and each value load serves [`SUM_QUERIES`] queries. Positions outside a
//!   query's view have weight 0, so a pass runs over every position any of its queries sees.
//!
//! The AVX-512 and AMX paths run this same function: every step is an exact integer sum or one IEEE
//! operation per lane, so wider registers could not give other bits, and AVX-512 CPUs run AVX2.
//!
//! [`Kernels::attend_q8`]: crate::engine::kernels::Kernels::attend_q8

// Loops over queries and halves index several arrays by the same number, as the math reads.
#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;

use super::super::{AttnScratch, KEY_GROUP, KEY_TILE, Q8_WEIGHT, Query, key_q8_index, quantize_vector};
use super::attend::softmax_row;
use super::avx2::F32x8;
use super::common::{grow, lanes_below};

/// Queries whose scores one pass over a key tile computes, each key load serving them all: their
/// 2 x 4 i32 accumulators (two halves of a tile each), the two halves' keys and `|k|`, the ones, a
/// broadcast query group and a product take 15 of the 16 registers.
const SCORE_QUERIES: usize = 4;

/// Queries whose weighted sums one pass over the values computes: their 2 x 4 accumulators (16
/// dimensions each), the two values' bytes, their interleaved halves and a weight take 13 registers.
const SUM_QUERIES: usize = 4;

/// Key tiles ahead whose bytes are prefetched while the scores stream through the keys.
const KEY_PREFETCH: usize = 2;

/// See [`crate::engine::kernels::Kernels::attend_q8`] and the module docs. Also the AVX-512 and AMX
/// paths' `attend_q8` (same bits at any register width; AVX-512 CPUs run AVX2).
///
/// # Safety
/// AVX2 and F16C available; bounds as asserted by [`crate::engine::kernels::Kernels::attend_q8`] (at
/// least one query; the head dimension a multiple of 8).
#[target_feature(enable = "avx2,f16c")]
pub unsafe fn attend_q8(
    queries: &mut [Query<'_>],
    keys: &[i8],
    key_scales: &[f32],
    values: &[i8],
    value_scales: &[f32],
    scale: f32,
    scratch: &mut AttnScratch,
) {
    let hd = queries[0].q.len();
    assert!(hd.is_multiple_of(8), "head dimension {hd} is not a multiple of 8");
    let n = queries.len();
    let maxn = queries.iter().map(|q| q.npos).max().unwrap_or(0);
    let padded = maxn.div_ceil(KEY_TILE) * KEY_TILE;
    assert!(keys.len() >= padded * hd && key_scales.len() >= maxn && value_scales.len() >= maxn);
    // Buffers only grow (leftovers of earlier calls never reach a result, as in the f16 attention).
    grow(&mut scratch.scores, n * padded);
    grow(&mut scratch.sums, n);
    grow(&mut scratch.q8_scales, n);
    if scratch.q8.len() < n * hd {
        scratch.q8.resize(n * hd, 0);
    }
    for (i, query) in queries.iter().enumerate() {
        scratch.q8_scales[i] = quantize_vector(query.q, &mut scratch.q8[i * hd..(i + 1) * hd]);
    }
    let (kp, qp, sq) = (keys.as_ptr(), scratch.q8.as_ptr(), &scratch.q8_scales);
    let scores = scratch.scores.as_mut_ptr();
    // SAFETY (whole body): key tiles below `padded` are inside keys, key scales are read below maxn
    // only (masked), score rows are `padded` long, query q8 rows `hd` long (asserted above); value rows
    // below maxn are inside values and every output holds hd floats (the caller).
    unsafe {
        let scalev = _mm256_set1_ps(scale);
        for t in 0..padded / KEY_TILE {
            prefetch_q8_tile(kp, hd, t + KEY_PREFETCH, maxn);
            let j0 = t * KEY_TILE;
            let kt = kp.add(key_q8_index(hd, j0, 0));
            // The key scales of the tile's two halves; zeros past maxn (those lanes are never used).
            let ks: [__m256; 2] = std::array::from_fn(|h| {
                let j = j0 + 8 * h;
                let p = key_scales.as_ptr().add(j.min(maxn));
                if j + 8 <= maxn {
                    _mm256_loadu_ps(p)
                } else {
                    _mm256_maskload_ps(p, lanes_below(maxn.saturating_sub(j)))
                }
            });
            let mut i = 0;
            while i < n {
                let g = (n - i).min(SCORE_QUERIES);
                // A group stays whole by repeating its last query.
                let at = |k: usize| i + k.min(g - 1);
                let q = |k: usize| qp.add(at(k) * hd);
                let s = |k: usize| sq[at(k)];
                let out = |k: usize| scores.add(at(k) * padded + j0);
                match g {
                    4 => tile_scores::<4>(
                        [q(0), q(1), q(2), q(3)],
                        [s(0), s(1), s(2), s(3)],
                        (kt, hd, ks, scalev),
                        [out(0), out(1), out(2), out(3)],
                    ),
                    3 => tile_scores::<3>(
                        [q(0), q(1), q(2)],
                        [s(0), s(1), s(2)],
                        (kt, hd, ks, scalev),
                        [out(0), out(1), out(2)],
                    ),
                    2 => tile_scores::<2>([q(0), q(1)], [s(0), s(1)], (kt, hd, ks, scalev), [out(0), out(1)]),
                    _ => tile_scores::<1>([q(0)], [s(0)], (kt, hd, ks, scalev), [out(0)]),
                }
                i += g;
            }
        }

        // Softmax numerators and their sums, then the weights `e_j * vs_j` of the positions each
        // query's weighted sum reads (before its window the numerators stay 0 and unread), and their
        // integers, zero outside the view, in rows of `pairs` (maxn rounded up to even).
        let pairs = maxn.div_ceil(2) * 2;
        if scratch.wq.len() < n * pairs {
            scratch.wq.resize(n * pairs, 0);
        }
        let mut factors = [0f32; 64];
        let mut factor_vec = Vec::new();
        let factors: &mut [f32] = if n <= factors.len() {
            &mut factors[..n]
        } else {
            factor_vec.resize(n, 0.0);
            &mut factor_vec
        };
        for (i, query) in queries.iter().enumerate() {
            let row = scores.add(i * padded);
            std::slice::from_raw_parts_mut(row, query.start).fill(f32::NEG_INFINITY);
            let sum = softmax_row::<F32x8>(row, query.npos);
            let wq = &mut scratch.wq[i * pairs..(i + 1) * pairs];
            factors[i] = weights(row, &value_scales[..query.npos], query.start, sum, wq);
        }

        let wq = scratch.wq.as_ptr();
        let mut sums = vec![[0i32; 8]; hd / 8 * SUM_QUERIES];
        let mut i = 0;
        while i < n {
            let g = (n - i).min(SUM_QUERIES);
            let from = queries[i..i + g].iter().map(|q| q.start).min().unwrap_or(0) / 2 * 2;
            let to = queries[i..i + g].iter().map(|q| q.npos).max().unwrap_or(0);
            let at = |k: usize| i + k.min(g - 1);
            let w = |k: usize| wq.add(at(k) * pairs);
            let args = (values.as_ptr(), hd, from, to);
            match g {
                4 => int_sums::<4>([w(0), w(1), w(2), w(3)], args, &mut sums),
                3 => int_sums::<3>([w(0), w(1), w(2)], args, &mut sums),
                2 => int_sums::<2>([w(0), w(1)], args, &mut sums),
                _ => int_sums::<1>([w(0)], args, &mut sums),
            }
            for k in 0..g {
                let out = &mut queries[i + k].out;
                let f = _mm256_set1_ps(factors[i + k]);
                for c in 0..hd / 8 {
                    let acc = _mm256_loadu_si256(sums[c * SUM_QUERIES + k].as_ptr() as *const __m256i);
                    _mm256_storeu_ps(out.as_mut_ptr().add(8 * c), _mm256_mul_ps(_mm256_cvtepi32_ps(acc), f));
                }
            }
            i += g;
        }
    }
}

/// [`weights_q8`](super::super::weights_q8) on AVX2 for one query whose softmax numerators are
/// `row[0..npos]` (`npos = vs.len()`, zero before `start`): multiplies `row[start..npos]` by the value
/// scales in place, fills `wq` (zero past `npos`) and returns the output factor.
///
/// # Safety
/// AVX2; `row` holds `npos` rounded up to 8 floats, the last register zero past `npos` (as
/// `softmax_row` leaves it); `wq` at least `npos` long.
#[inline(always)]
unsafe fn weights(row: *mut f32, vs: &[f32], start: usize, sum: f32, wq: &mut [i16]) -> f32 {
    let npos = vs.len();
    // SAFETY: the caller's bounds; loads of `vs` stay below npos.
    unsafe {
        let mut j = start;
        while j + 8 <= npos {
            let w = _mm256_mul_ps(_mm256_loadu_ps(row.add(j)), _mm256_loadu_ps(vs.as_ptr().add(j)));
            _mm256_storeu_ps(row.add(j), w);
            j += 8;
        }
        for j in j..npos {
            *row.add(j) *= vs[j];
        }
        let mut lanes = _mm256_setzero_ps();
        for jb in (0..npos).step_by(8) {
            lanes = _mm256_add_ps(lanes, _mm256_loadu_ps(row.add(jb)));
        }
        let total = super::common::tree8_ps(lanes);
        let k = Q8_WEIGHT / total;
        wq.fill(0);
        if total > 0.0 && k.is_finite() {
            let (kv, half, top) =
                (_mm256_set1_ps(k), _mm256_set1_ps(0.5), _mm256_set1_epi32(Q8_WEIGHT as i32));
            for jb in (0..npos).step_by(8) {
                let x = _mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(row.add(jb)), kv), half);
                let r = _mm256_min_epi32(_mm256_cvttps_epi32(x), top);
                // i32 -> i16 (every value 0..=32767), in order.
                let p = _mm256_permute4x64_epi64::<0b1000>(_mm256_packs_epi32(r, r));
                let n = (npos - jb).min(8);
                let mut out = [0i16; 8];
                _mm_storeu_si128(out.as_mut_ptr() as *mut __m128i, _mm256_castsi256_si128(p));
                wq[jb..jb + n].copy_from_slice(&out[..n]);
            }
        }
        (total / Q8_WEIGHT) / sum
    }
}

/// The exact integer sums `acc_d = sum_j wq_j * v_j[d]` of `G` queries (weights `ws[g][j]`, i16,
/// zero outside each query's view) over positions `from..to` (`from` even), for every dimension:
/// element `c * SUM_QUERIES + g` holds dimensions `8c..8c+8` of query `g`. Positions go in pairs (a
/// last odd one with a zero partner, never read), 16 dimensions per pass.
///
/// # Safety
/// AVX2; value rows `from..to` (`hd` bytes apart) readable, each `ws[g]` readable up to `to` rounded
/// up to even; `hd` a multiple of 8; `sums` holds `hd / 8 * SUM_QUERIES` entries.
#[inline(always)]
unsafe fn int_sums<const G: usize>(
    ws: [*const i16; G],
    (vp, hd, from, to): (*const i8, usize, usize, usize),
    sums: &mut [[i32; 8]],
) {
    // SAFETY: the caller's bounds.
    unsafe {
        let mut c0 = 0;
        while c0 < hd {
            // 16 dimensions, or the last 8.
            let wide = c0 + 16 <= hd;
            let mut acc = [[_mm256_setzero_si256(); 2]; G];
            let load = |j: usize| {
                if j >= to {
                    _mm_setzero_si128()
                } else if wide {
                    _mm_loadu_si128(vp.add(j * hd + c0) as *const __m128i)
                } else {
                    _mm_loadl_epi64(vp.add(j * hd + c0) as *const __m128i)
                }
            };
            let mut j = from;
            while j < to {
                let (a, b) = (load(j), load(j + 1));
                let lo = _mm256_cvtepi8_epi16(_mm_unpacklo_epi8(a, b));
                let hi = _mm256_cvtepi8_epi16(_mm_unpackhi_epi8(a, b));
                for g in 0..G {
                    let pair = _mm256_set1_epi32(std::ptr::read_unaligned(ws[g].add(j) as *const i32));
                    acc[g][0] = _mm256_add_epi32(acc[g][0], _mm256_madd_epi16(lo, pair));
                    if wide {
                        acc[g][1] = _mm256_add_epi32(acc[g][1], _mm256_madd_epi16(hi, pair));
                    }
                }
                j += 2;
            }
            for g in 0..G {
                _mm256_storeu_si256(sums[(c0 / 8) * SUM_QUERIES + g].as_mut_ptr() as *mut __m256i, acc[g][0]);
                if wide {
                    _mm256_storeu_si256(
                        sums[(c0 / 8 + 1) * SUM_QUERIES + g].as_mut_ptr() as *mut __m256i,
                        acc[g][1],
                    );
                }
            }
            c0 += if wide { 16 } else { 8 };
        }
    }
}

/// The scores of `G` queries against the 16 positions of one key tile at `kt`: per query `g` and
/// position `j`, `((sq[g] * ks_j) * isum) * scale` with the exact integer dot product `isum` of
/// `qs[g]`'s `hd` int8 and key `j` (see the module docs), stored to `outs[g][0..16]`.
///
/// # Safety
/// AVX2; the tile's `16 * hd` bytes readable, each `qs[g]` `hd` int8, each output 16 writable floats.
#[inline(always)]
unsafe fn tile_scores<const G: usize>(
    qs: [*const i8; G],
    sq: [f32; G],
    (kt, hd, ks, scale): (*const i8, usize, [__m256; 2], __m256),
    outs: [*mut f32; G],
) {
    // SAFETY: the caller's bounds.
    unsafe {
        let ones = _mm256_set1_epi16(1);
        let mut acc = [[_mm256_setzero_si256(); 2]; G];
        for grp in 0..hd / KEY_GROUP {
            let kg = kt.add(grp * KEY_TILE * KEY_GROUP);
            let k = [0, 1].map(|h| _mm256_loadu_si256(kg.add(32 * h) as *const __m256i));
            let ka = k.map(|k| _mm256_abs_epi8(k));
            for g in 0..G {
                // The query's 4 int8 of this group in every lane.
                let q4 = _mm256_set1_epi32((qs[g].add(grp * KEY_GROUP) as *const i32).read_unaligned());
                for h in 0..2 {
                    let pairs = _mm256_maddubs_epi16(ka[h], _mm256_sign_epi8(q4, k[h]));
                    acc[g][h] = _mm256_add_epi32(acc[g][h], _mm256_madd_epi16(pairs, ones));
                }
            }
        }
        for g in 0..G {
            let sqv = _mm256_set1_ps(sq[g]);
            for h in 0..2 {
                let s = _mm256_mul_ps(
                    _mm256_mul_ps(_mm256_mul_ps(sqv, ks[h]), _mm256_cvtepi32_ps(acc[g][h])),
                    scale,
                );
                _mm256_storeu_ps(outs[g].add(8 * h), s);
            }
        }
    }
}

/// Prefetches int8 key tile `t` (`16 * hd` bytes) if it holds a position below `end`.
#[inline(always)]
fn prefetch_q8_tile(keys: *const i8, hd: usize, t: usize, end: usize) {
    if t * KEY_TILE >= end {
        return;
    }
    let start = keys.wrapping_add(t * KEY_TILE * hd);
    for off in (0..KEY_TILE * hd).step_by(64) {
        // SAFETY: SSE is part of x86-64; a prefetch never faults.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(start.wrapping_add(off)) };
    }
}
