//! The attention driver, written once over a register of f32 lanes ([`Lanes`]): the AVX2 path runs it
//! on 8 lanes, the AVX-512 path on 16. Both give the bits [`crate::engine::kernels::Kernels::attend`]
//! specifies, because what each lane does is fixed here and the two registers differ only in width.
//!
//! - **Scores.** Keys are taken `WIDTH` at a time from their key tile
//!   ([`crate::engine::kernels::key_index`]: dimension `d` of the tile's 16 keys at `d * KEY_TILE`), one
//!   register holding one dimension of `WIDTH` keys. Lane `l` of the accumulator of class `m` sums the
//!   products of dimensions `8c + m` (increasing `c`) for key `l`, so the vertical tree over the 8
//!   classes is `tree8(lanes of q . k_l)`, the scalar order with no horizontal step, and each key load
//!   serves [`Lanes::SCORE_QUERIES`] queries. A register file too small for 8 accumulators per query
//!   takes the classes in passes of [`Lanes::SCORE_CLASSES`], each pass ending in its half of the tree.
//! - **Softmax.** The maximum over a query's positions (exact in any order), `exp(s - max)` on whole
//!   registers, and the numerators folded into 8 lanes `j mod 8` in increasing `j`.
//! - **Weighted sums.** One register holds `WIDTH` dimensions of a value; up to
//!   [`Lanes::SUM_QUERIES`] queries share each value load, with [`SUM_CHUNKS`] registers of each
//!   query's sum held while the positions stream past. Positions every query of a pass sees go through
//!   the pass together; those only some see (before a window's start, after a query's last position)
//!   through each query alone, before and after, so every query's positions stay in order.
//!
//! The driver has no target features of its own: it is inlined into each path's `attend` entry point,
//! whose features it then has.

// Loops over queries and lanes index several arrays by the same number, as the math reads.
#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;

use half::f16;

use super::super::{AttnScratch, KEY_TILE, Query, key_index};
use super::common::{grow, prefetch_key_tile, tree8_ps};

/// One register of f32 lanes and the operations the attention driver performs on it. Each operation is
/// one correctly rounded IEEE operation per lane (no fused multiply-add), or exactly what its doc says.
///
/// # Safety
/// An implementation's methods need its instruction set; they are called only from an entry point that
/// has it.
pub(super) trait Lanes: Copy {
    /// Lanes per register: keys per score block, dimensions per value chunk. A multiple of 8 and a
    /// divisor of [`KEY_TILE`].
    const WIDTH: usize;
    /// Queries whose scores one pass over a block of keys computes (each key load serves them all).
    const SCORE_QUERIES: usize;
    /// Accumulator classes held per query in one score pass: 8, or 4 when the registers do not hold
    /// 8 per query (two passes, each ending in one half of the tree).
    const SCORE_CLASSES: usize;
    /// Queries whose weighted sums one pass over the values computes (at most [`MAX_SUM_QUERIES`]).
    const SUM_QUERIES: usize;

    unsafe fn zero() -> Self;
    unsafe fn splat(x: f32) -> Self;
    /// `WIDTH` floats from `p`.
    unsafe fn load(p: *const f32) -> Self;
    /// `WIDTH` halves from `p`, widened (exactly).
    unsafe fn load_half(p: *const u16) -> Self;
    /// `WIDTH` floats to `p`.
    unsafe fn store(self, p: *mut f32);
    unsafe fn add(self, b: Self) -> Self;
    unsafe fn sub(self, b: Self) -> Self;
    unsafe fn mul(self, b: Self) -> Self;
    unsafe fn div(self, b: Self) -> Self;
    /// `max(self, m)` in lanes below `valid`, `m` in the others.
    unsafe fn max_below(self, m: Self, valid: usize) -> Self;
    /// The largest lane (no lane is NaN).
    unsafe fn reduce_max(self) -> f32;
    /// [`crate::arch::math::exp`] of each lane below `valid`, `+0.0` in the others.
    unsafe fn exp_below(self, valid: usize) -> Self;
    /// `acc + lanes 0..8`, then `+ lanes 8..16` and so on: the lanes folded into 8 accumulators, lane
    /// `j` into `j mod 8`, in increasing `j`.
    unsafe fn fold8(self, acc: __m256) -> __m256;
}

/// Registers of each query's weighted sum held in one pass over the values.
const SUM_CHUNKS: usize = 4;

/// The most queries a weighted-sum pass takes on any path (the shapes compiled below).
pub(super) const MAX_SUM_QUERIES: usize = 6;

/// Positions ahead whose values are prefetched while the weighted sums stream through a head.
const VALUE_PREFETCH: usize = 32;

/// Calls `wsum_queries::<V, G, NC>` for the runtime shape `(g, nc)`, one of the listed ones; `ps` and
/// `outs` are arrays of at least `g` pointers.
macro_rules! wsum_shapes {
    ($v:ty, $g:expr, $nc:expr, $ps:expr, $outs:expr, $args:expr; $(($G:literal, $NC:literal)),*) => {
        match ($g, $nc) {
            $(($G, $NC) => wsum_queries::<$v, $G, $NC>(
                std::array::from_fn(|k| $ps[k]),
                std::array::from_fn(|k| $outs[k]),
                $args,
            ),)*
            _ => unreachable!("attention shapes are bounded by MAX_SUM_QUERIES and SUM_CHUNKS"),
        }
    };
}

/// A single query's weighted sum over the shape's chunk count.
macro_rules! wsum_one {
    ($v:ty, $nc:expr, $p:expr, $out:expr, $args:expr) => {
        wsum_shapes!($v, 1, $nc, [$p], [$out], $args; (1, 1), (1, 2), (1, 3), (1, 4))
    };
}

/// See [`crate::engine::kernels::Kernels::attend`] and the module docs.
///
/// # Safety
/// `V`'s instruction set (and AVX2 and F16C) available; bounds as asserted by
/// [`crate::engine::kernels::Kernels::attend`]; the head dimension a multiple of `V::WIDTH`.
#[inline(always)]
pub(super) unsafe fn attend<V: Lanes>(
    queries: &mut [Query<'_>],
    keys: &[f16],
    values: &[f16],
    scale: f32,
    scratch: &mut AttnScratch,
) {
    let w = V::WIDTH;
    let hd = queries[0].q.len();
    assert!(hd.is_multiple_of(w), "head dimension {hd} is not a multiple of {w}");
    let n = queries.len();
    let maxn = queries.iter().map(|q| q.npos).max().unwrap_or(0);
    let padded = maxn.div_ceil(KEY_TILE) * KEY_TILE;
    // Buffers only grow: shrinking and regrowing would zero the regrown part at every call. Leftovers
    // of earlier calls are finite and, like the padding lanes, never reach a result.
    grow(&mut scratch.scores, n * padded);
    grow(&mut scratch.sums, n);
    let kp = keys.as_ptr() as *const u16;
    let vp = values.as_ptr() as *const u16;
    let scores = scratch.scores.as_mut_ptr();
    // SAFETY (whole body): the key tiles holding positions below maxn are inside keys and value rows
    // below maxn inside values (caller); score rows are `padded` long, a multiple of `w`; every query's
    // q and out hold hd floats, a multiple of `w`.
    unsafe {
        let scalev = V::splat(scale);
        // Scores of every block of keys, for all queries (positions past a query's npos are computed
        // and never used; a group stays whole by repeating its last query).
        for jb in (0..maxn).step_by(w) {
            if jb.is_multiple_of(KEY_TILE) {
                prefetch_key_tile(kp, hd, jb / KEY_TILE + 2, maxn);
            }
            let kb = kp.add(key_index(hd, jb, 0));
            let mut i = 0;
            while i < n {
                let g = (n - i).min(V::SCORE_QUERIES);
                let q = |k: usize| queries[i + k.min(g - 1)].q.as_ptr();
                let out = |k: usize| scores.add((i + k.min(g - 1)) * padded + jb);
                match g {
                    3 => scores_block::<V, 3>([q(0), q(1), q(2)], kb, hd, scalev, [out(0), out(1), out(2)]),
                    2 => scores_block::<V, 2>([q(0), q(1)], kb, hd, scalev, [out(0), out(1)]),
                    _ => scores_block::<V, 1>([q(0)], kb, hd, scalev, [out(0)]),
                }
                i += g;
            }
        }

        // Softmax numerators and their sums; positions before a query's window weigh exactly 0.
        for (i, query) in queries.iter().enumerate() {
            let row = scores.add(i * padded);
            std::slice::from_raw_parts_mut(row, query.start).fill(f32::NEG_INFINITY);
            scratch.sums[i] = softmax_row::<V>(row, query.npos);
        }

        // Weighted sums (see the module docs).
        let mut i = 0;
        while i < n {
            let g = (n - i).min(V::SUM_QUERIES);
            let pass = &mut queries[i..i + g];
            let shared = pass.iter().map(|q| q.npos).min().unwrap_or(0);
            let lo = pass.iter().map(|q| q.start).max().unwrap_or(0);
            let ps: [*const f32; MAX_SUM_QUERIES] =
                std::array::from_fn(|k| scores.add((i + k.min(g - 1)) * padded) as *const f32);
            let outs: [*mut f32; MAX_SUM_QUERIES] =
                std::array::from_fn(|k| pass[k.min(g - 1)].out.as_mut_ptr());
            for c0 in (0..hd).step_by(SUM_CHUNKS * w) {
                let nc = ((hd - c0) / w).min(SUM_CHUNKS);
                if lo >= shared {
                    // No position seen by all: each query alone.
                    for (k, query) in pass.iter().enumerate() {
                        wsum_one!(V, nc, ps[k], outs[k], (vp, hd, c0, query.start, query.npos, true));
                    }
                    continue;
                }
                let aligned = pass.iter().all(|q| q.start == lo);
                if !aligned {
                    // Each query's positions before `lo`, or zeros (the `fresh` start) where none.
                    for (k, query) in pass.iter().enumerate() {
                        if query.start < lo {
                            wsum_one!(V, nc, ps[k], outs[k], (vp, hd, c0, query.start, lo, true));
                        } else {
                            std::slice::from_raw_parts_mut(outs[k].add(c0), w * nc).fill(0.0);
                        }
                    }
                }
                let all = (vp, hd, c0, lo, shared, aligned);
                wsum_shapes!(V, g, nc, ps, outs, all;
                    (1, 1), (1, 2), (1, 3), (1, 4), (2, 1), (2, 2), (2, 3), (2, 4), (3, 1), (3, 2), (3, 3),
                    (3, 4), (4, 1), (4, 2), (4, 3), (4, 4), (5, 1), (5, 2), (5, 3), (5, 4), (6, 1), (6, 2),
                    (6, 3), (6, 4));
                for (k, query) in pass.iter().enumerate() {
                    if query.npos > shared {
                        wsum_one!(V, nc, ps[k], outs[k], (vp, hd, c0, shared, query.npos, false));
                    }
                }
            }
            i += g;
        }
        for (i, query) in queries.iter_mut().enumerate() {
            let sum = V::splat(scratch.sums[i]);
            let out = query.out.as_mut_ptr();
            for c in (0..hd).step_by(w) {
                V::load(out.add(c)).div(sum).store(out.add(c));
            }
        }
    }
}

/// The `WIDTH` scores of each of `G` queries against keys `jb..jb + WIDTH` of a key tile, whose
/// dimension `d` is at `kb + d * KEY_TILE` (see the module docs for the order).
///
/// # Safety
/// `V`'s instruction set; each `qs[g]` holds `hd` floats, the keys `hd` dimensions, each output
/// `WIDTH` writable floats.
#[inline(always)]
unsafe fn scores_block<V: Lanes, const G: usize>(
    qs: [*const f32; G],
    kb: *const u16,
    hd: usize,
    scale: V,
    outs: [*mut f32; G],
) {
    let classes = V::SCORE_CLASSES;
    // SAFETY: the caller's bounds.
    unsafe {
        // The two halves of the tree, ((a0+a1)+(a2+a3)) and ((a4+a5)+(a6+a7)), per query.
        let mut halves = [[V::zero(); 2]; G];
        for pass in 0..8 / classes {
            let mut acc = [[V::zero(); 8]; G];
            for c in (0..hd).step_by(8) {
                for m in 0..classes {
                    let d = c + pass * classes + m;
                    let k = V::load_half(kb.add(d * KEY_TILE));
                    for g in 0..G {
                        acc[g][m] = acc[g][m].add(V::splat(*qs[g].add(d)).mul(k));
                    }
                }
            }
            for g in 0..G {
                for quarter in 0..classes / 4 {
                    let a = &acc[g][4 * quarter..];
                    halves[g][pass * classes / 4 + quarter] = a[0].add(a[1]).add(a[2].add(a[3]));
                }
            }
        }
        for g in 0..G {
            halves[g][0].add(halves[g][1]).mul(scale).store(outs[g]);
        }
    }
}

/// `out_g[c0 + d] += sum_j p_g[j] * v_j[c0 + d]` for `d < WIDTH * NC` and positions `j0..j1` in
/// increasing order, for `G` queries: the `G * NC` sums stay in registers, starting from zero when
/// `fresh` (the scalar path's `+0.0`) or from `out_g`, and each value load serves every query.
///
/// # Safety
/// `V`'s instruction set; each `ps[g]` holds `j1` floats, value rows `j0..j1` (`hd` apart) are
/// readable, each output holds `c0 + WIDTH * NC` floats.
#[inline(always)]
unsafe fn wsum_queries<V: Lanes, const G: usize, const NC: usize>(
    ps: [*const f32; G],
    outs: [*mut f32; G],
    (vp, hd, c0, j0, j1, fresh): (*const u16, usize, usize, usize, usize, bool),
) {
    let w = V::WIDTH;
    // SAFETY: the caller's bounds; prefetches never fault.
    unsafe {
        let mut o: [[V; NC]; G] = std::array::from_fn(|g| {
            std::array::from_fn(|k| if fresh { V::zero() } else { V::load(outs[g].add(c0 + w * k)) })
        });
        for j in j0..j1 {
            let ahead = vp.wrapping_add((j + VALUE_PREFETCH) * hd + c0) as *const i8;
            for line in (0..NC * w * 2).step_by(64) {
                _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(line));
            }
            let row = vp.add(j * hd + c0);
            let v: [V; NC] = std::array::from_fn(|k| V::load_half(row.add(w * k)));
            for g in 0..G {
                let p = V::splat(*ps[g].add(j));
                for k in 0..NC {
                    o[g][k] = o[g][k].add(p.mul(v[k]));
                }
            }
        }
        for g in 0..G {
            for k in 0..NC {
                o[g][k].store(outs[g].add(c0 + w * k));
            }
        }
    }
}

/// Turns one score row into softmax numerators in place and returns their sum, as
/// [`crate::engine::kernels::Kernels::attend`] specifies: positions `0..n` only (their maximum,
/// `exp(s - max)`, lanes `j mod 8` summed in increasing `j` and reduced by [`crate::arch::tree8`]); the
/// rest of the last register becomes zero.
///
/// # Safety
/// `V`'s instruction set; `row` holds `n.div_ceil(WIDTH) * WIDTH` floats, `n > 0`.
#[inline(always)]
pub(super) unsafe fn softmax_row<V: Lanes>(row: *mut f32, n: usize) -> f32 {
    let w = V::WIDTH;
    // SAFETY: the caller's bounds; every access is one of the row's registers.
    unsafe {
        let mut m = V::splat(f32::NEG_INFINITY);
        for jb in (0..n).step_by(w) {
            m = V::load(row.add(jb)).max_below(m, n - jb);
        }
        // The maximum is exact in any order.
        let maxv = V::splat(m.reduce_max());
        let mut acc = _mm256_setzero_ps();
        for jb in (0..n).step_by(w) {
            let e = V::load(row.add(jb)).sub(maxv).exp_below(n - jb);
            e.store(row.add(jb));
            acc = e.fold8(acc);
        }
        tree8_ps(acc)
    }
}
