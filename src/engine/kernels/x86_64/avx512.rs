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
//! - **Attention** reads keys from their tiles ([`crate::engine::kernels::key_index`]): one register holds one
//!   dimension of 16 keys, so a tile's 16 scores add up lane by lane, in the scalar order, with no
//!   horizontal step; 3 queries share each key load and up to 6 each value load (16 dimensions per
//!   register). The softmax and `exp` run on 16 lanes with the operations of the AVX2 code.
//!
//! Everything else (tails of fewer than 8 blocks, SwiGLU, activation quantization, attention over head
//! sizes that are not a multiple of 16) is the AVX2 code, shared through [`super::common`] or picked in
//! the path's kernel table ([`super`]): those are not where the time goes. Requires AVX2, F16C and AVX-512 F, BW, DQ, VL and VNNI.

// Loops over rows and lanes index several arrays by the same number, as the math reads.
#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;

use half::f16;

use super::super::scales::Scale;
use super::super::{AttnScratch, BLOCK, GROUP, KEY_TILE, LANES, QActs, QMatrix, Query, StridedOut};
use super::common::{
    ActRows, FullGroup, group_finish, grow, matmul_kind, prefetch_key_tile, tree8_ps, with_weights,
};
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

/// Queries whose scores one pass over a key tile computes: 8 accumulators each, so 3 queries and the
/// key take 25 of the 32 registers.
const SCORE_QUERIES: usize = 3;

/// Queries whose weighted sums one pass over the values computes: up to [`SUM_CHUNKS`] accumulators
/// each, so 6 queries, the values and one weight take 29 registers.
const SUM_QUERIES: usize = 6;

/// 16-dimension registers of each query's weighted sum held in one pass (64 dimensions).
const SUM_CHUNKS: usize = 4;

/// Positions ahead whose values are prefetched while the weighted sums stream through a head.
const VALUE_PREFETCH: usize = 32;

/// Calls `wsum_queries::<G, NC>` for the runtime shape `(g, nc)`, one of the listed ones; `ps` and `outs`
/// are arrays of at least `g` pointers.
macro_rules! wsum_shapes {
    ($g:expr, $nc:expr, $ps:expr, $outs:expr, $args:expr; $(($G:literal, $NC:literal)),*) => {
        match ($g, $nc) {
            $(($G, $NC) => wsum_queries::<$G, $NC>(
                std::array::from_fn(|k| $ps[k]),
                std::array::from_fn(|k| $outs[k]),
                $args,
            ),)*
            _ => unreachable!("attention shapes are bounded by SUM_QUERIES and SUM_CHUNKS"),
        }
    };
}

/// See [`crate::engine::kernels::Kernels::attend`]. Scores: one register holds one dimension of the 16 keys of a key tile, and
/// [`SCORE_QUERIES`] queries share each key load ([`scores_tile`]); a tile's 16 scores come out of a
/// vertical reduction. Weighted sums: one register holds 16 dimensions of a value, and [`SUM_QUERIES`]
/// queries share each value load ([`wsum_queries`]). The softmax is the AVX2 code. Every lane performs
/// the operations of the scalar path in its order, so the bits are the same.
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
    let hd = queries[0].q.len();
    assert!(hd.is_multiple_of(16), "head dimension {hd} is not a multiple of 16");
    let n = queries.len();
    let maxn = queries.iter().map(|q| q.npos).max().unwrap_or(0);
    let tiles = maxn.div_ceil(KEY_TILE);
    let padded = tiles * KEY_TILE;
    grow(&mut scratch.scores, n * padded);
    grow(&mut scratch.sums, n);
    let kp = keys.as_ptr() as *const u16;
    let vp = values.as_ptr() as *const u16;
    let scores = scratch.scores.as_mut_ptr();
    let scalev = _mm512_set1_ps(scale);
    // SAFETY (whole body): the key tiles below `tiles` are inside keys and value rows below maxn inside
    // values (caller); score rows are `padded` long; every query's q and out hold hd floats.
    unsafe {
        // Scores of every tile, for all queries (positions past a query's npos are never used).
        for t in 0..tiles {
            prefetch_key_tile(kp, hd, t + 2, maxn);
            let kt = kp.add(t * KEY_TILE * hd);
            let mut i = 0;
            while i < n {
                let g = (n - i).min(SCORE_QUERIES);
                let q = |k: usize| queries[i + k.min(g - 1)].q.as_ptr();
                let out = |k: usize| scores.add((i + k.min(g - 1)) * padded + t * KEY_TILE);
                match g {
                    3 => scores_tile::<3>([q(0), q(1), q(2)], kt, hd, scalev, [out(0), out(1), out(2)]),
                    2 => scores_tile::<2>([q(0), q(1)], kt, hd, scalev, [out(0), out(1)]),
                    _ => scores_tile::<1>([q(0)], kt, hd, scalev, [out(0)]),
                }
                i += g;
            }
        }

        // Softmax numerators and their sums; positions before a query's window weigh exactly 0.
        for (i, query) in queries.iter().enumerate() {
            let row = scores.add(i * padded);
            std::slice::from_raw_parts_mut(row, query.start).fill(f32::NEG_INFINITY);
            scratch.sums[i] = softmax_row(row, query.npos);
        }

        // Weighted sums: positions every query of a pass sees (`lo..shared`) go through the pass
        // together; the few that only some see (before `lo` in a window, from `shared` on) through
        // each of those alone, before and after them, so every query's positions stay in order.
        let mut i = 0;
        while i < n {
            let g = (n - i).min(SUM_QUERIES);
            let pass = &mut queries[i..i + g];
            let shared = pass.iter().map(|q| q.npos).min().unwrap_or(0);
            let lo = pass.iter().map(|q| q.start).max().unwrap_or(0);
            let ps: [*const f32; SUM_QUERIES] =
                std::array::from_fn(|k| scores.add((i + k.min(g - 1)) * padded) as *const f32);
            let outs: [*mut f32; SUM_QUERIES] = std::array::from_fn(|k| pass[k.min(g - 1)].out.as_mut_ptr());
            for c0 in (0..hd).step_by(SUM_CHUNKS * 16) {
                let nc = ((hd - c0) / 16).min(SUM_CHUNKS);
                if lo >= shared {
                    // No position seen by all: each query alone.
                    for (k, query) in pass.iter().enumerate() {
                        let own = (vp, hd, c0, query.start, query.npos, true);
                        wsum_shapes!(1, nc, [ps[k]], [outs[k]], own; (1, 1), (1, 2), (1, 3), (1, 4));
                    }
                    continue;
                }
                let aligned = pass.iter().all(|q| q.start == lo);
                if !aligned {
                    // Each query's positions before `lo`, or zeros (the `fresh` start) where none.
                    for (k, query) in pass.iter().enumerate() {
                        if query.start < lo {
                            let head = (vp, hd, c0, query.start, lo, true);
                            wsum_shapes!(1, nc, [ps[k]], [outs[k]], head; (1, 1), (1, 2), (1, 3), (1, 4));
                        } else {
                            std::slice::from_raw_parts_mut(outs[k].add(c0), 16 * nc).fill(0.0);
                        }
                    }
                }
                let all = (vp, hd, c0, lo, shared, aligned);
                wsum_shapes!(g, nc, ps, outs, all;
                    (1, 1), (1, 2), (1, 3), (1, 4), (2, 1), (2, 2), (2, 3), (2, 4), (3, 1), (3, 2), (3, 3),
                    (3, 4), (4, 1), (4, 2), (4, 3), (4, 4), (5, 1), (5, 2), (5, 3), (5, 4), (6, 1), (6, 2),
                    (6, 3), (6, 4));
                for (k, query) in pass.iter().enumerate() {
                    if query.npos > shared {
                        let rest = (vp, hd, c0, shared, query.npos, false);
                        wsum_shapes!(1, nc, [ps[k]], [outs[k]], rest; (1, 1), (1, 2), (1, 3), (1, 4));
                    }
                }
            }
            i += g;
        }
        for (i, query) in queries.iter_mut().enumerate() {
            let sum = _mm512_set1_ps(scratch.sums[i]);
            let out = query.out.as_mut_ptr();
            for c in (0..hd).step_by(16) {
                _mm512_storeu_ps(out.add(c), _mm512_div_ps(_mm512_loadu_ps(out.add(c)), sum));
            }
        }
    }
}

/// The 16 scores of each of `G` queries against key tile `kt` ([`crate::engine::kernels::key_index`]: dimension `d` of
/// the tile's 16 keys at `kt + d * 16`). Lane `l` of `acc[g][m]` sums the products of dimensions
/// `8c + m` (increasing `c`) for key `l`, so lane `l` of the vertical tree over `m` is
/// `tree8(lanes of q_g . k_l)`, exactly the scalar order, and each key load serves every query.
///
/// # Safety
/// The path's CPU features; each `qs[g]` holds `hd` floats, `kt` a whole tile, each output 16 writable
/// floats.
#[inline]
#[target_feature(enable = "avx2,f16c,avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")]
unsafe fn scores_tile<const G: usize>(
    qs: [*const f32; G],
    kt: *const u16,
    hd: usize,
    scale: __m512,
    outs: [*mut f32; G],
) {
    // SAFETY: the caller's bounds.
    unsafe {
        let mut acc = [[_mm512_setzero_ps(); LANES]; G];
        for c in (0..hd).step_by(LANES) {
            for m in 0..LANES {
                let d = c + m;
                let k = _mm512_cvtph_ps(_mm256_loadu_si256(kt.add(d * KEY_TILE) as *const __m256i));
                for g in 0..G {
                    acc[g][m] = _mm512_add_ps(acc[g][m], _mm512_mul_ps(_mm512_set1_ps(*qs[g].add(d)), k));
                }
            }
        }
        for g in 0..G {
            let a = &acc[g];
            let tree = _mm512_add_ps(
                _mm512_add_ps(_mm512_add_ps(a[0], a[1]), _mm512_add_ps(a[2], a[3])),
                _mm512_add_ps(_mm512_add_ps(a[4], a[5]), _mm512_add_ps(a[6], a[7])),
            );
            _mm512_storeu_ps(outs[g], _mm512_mul_ps(tree, scale));
        }
    }
}

/// `out_g[c0 + d] += sum_j p_g[j] * v_j[c0 + d]` for `d < 16 * NC` and positions `j0..j1` in
/// increasing order, for `G` queries: the `G * NC` sums stay in registers, starting from zero when
/// `fresh` (the scalar path's `+0.0`) or from `out_g`, and each value load serves every query.
///
/// # Safety
/// The path's CPU features; each `ps[g]` holds `j1` floats, value rows `j0..j1` (`hd` apart) are
/// readable, each output holds `c0 + 16 * NC` floats.
#[inline]
#[target_feature(enable = "avx2,f16c,avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")]
unsafe fn wsum_queries<const G: usize, const NC: usize>(
    ps: [*const f32; G],
    outs: [*mut f32; G],
    (vp, hd, c0, j0, j1, fresh): (*const u16, usize, usize, usize, usize, bool),
) {
    // SAFETY: the caller's bounds; prefetches never fault.
    unsafe {
        let mut o: [[__m512; NC]; G] = std::array::from_fn(|g| {
            std::array::from_fn(|k| {
                if fresh { _mm512_setzero_ps() } else { _mm512_loadu_ps(outs[g].add(c0 + 16 * k)) }
            })
        });
        for j in j0..j1 {
            let ahead = vp.wrapping_add((j + VALUE_PREFETCH) * hd + c0) as *const i8;
            for line in (0..NC * 32).step_by(64) {
                _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(line));
            }
            let row = vp.add(j * hd + c0);
            let v: [__m512; NC] = std::array::from_fn(|k| {
                _mm512_cvtph_ps(_mm256_loadu_si256(row.add(16 * k) as *const __m256i))
            });
            for g in 0..G {
                let p = _mm512_set1_ps(*ps[g].add(j));
                for k in 0..NC {
                    o[g][k] = _mm512_add_ps(o[g][k], _mm512_mul_ps(p, v[k]));
                }
            }
        }
        for g in 0..G {
            for k in 0..NC {
                _mm512_storeu_ps(outs[g].add(c0 + 16 * k), o[g][k]);
            }
        }
    }
}

/// The AVX2 path's softmax of one score row, 16 positions at a time: the same maximum, the same exponentials
/// ([`exp16`]), and the numerators summed into the same 8 lanes (`j mod 8`, increasing `j`: the low
/// half of each 16 before the high half).
///
/// # Safety
/// The path's CPU features; `row` holds `n.div_ceil(16) * 16` floats, `n > 0`.
#[inline]
#[target_feature(enable = "avx2,f16c,avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")]
unsafe fn softmax_row(row: *mut f32, n: usize) -> f32 {
    let valid = |jb: usize| -> __mmask16 { if n - jb >= 16 { 0xFFFF } else { (1u16 << (n - jb)) - 1 } };
    // SAFETY: the caller's bounds; every access is one of the row's blocks of 16.
    unsafe {
        let mut m = _mm512_set1_ps(f32::NEG_INFINITY);
        for jb in (0..n).step_by(16) {
            m = _mm512_mask_max_ps(m, valid(jb), _mm512_loadu_ps(row.add(jb)), m);
        }
        // The maximum is exact in any order.
        let maxv = _mm512_set1_ps(_mm512_reduce_max_ps(m));
        let mut acc = _mm256_setzero_ps();
        for jb in (0..n).step_by(16) {
            let e = _mm512_maskz_mov_ps(valid(jb), exp16(_mm512_sub_ps(_mm512_loadu_ps(row.add(jb)), maxv)));
            _mm512_storeu_ps(row.add(jb), e);
            acc = _mm256_add_ps(acc, _mm512_castps512_ps256(e));
            acc = _mm256_add_ps(acc, _mm512_extractf32x8_ps::<1>(e));
        }
        tree8_ps(acc)
    }
}
