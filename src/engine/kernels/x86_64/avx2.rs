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
//! structure of the scalar code. Attention uses F16C conversions and the same 8-lane trees, taken
//! vertically over 8 keys of a key tile; `exp` is [`crate::arch`]'s 8-lane transcription of
//! [`crate::arch::math::exp`]. What this path shares with the AVX-512 path (the float steps of a block,
//! the tail kernel, the product driver) is in [`super::common`]. All functions require AVX2 and F16C.

// Loops over rows and lanes index several arrays by the same number, as the math reads.
#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;

use half::f16;

use super::super::scales::Scale;
use super::super::{
    AttnScratch, BLOCK, GROUP, KEY_TILE, LANES, QActs, QMatrix, Query, StridedOut, i8_offset, key_index,
};
use super::common::{
    ActRows, FullGroup, group_finish, grow, lanes_below, matmul_kind, prefetch_key_tile, tree8_ps,
    with_weights,
};
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

/// Positions ahead of the current block whose keys or values are prefetched: the cache of a long context
/// lives in memory, not in cache, and one task streams one head's positions in order.
const PREFETCH_AHEAD: usize = 32;

/// Prefetches the f16 value rows `from..from+8` (those below `end`) of a head, `hd` elements each.
///
/// # Safety
/// AVX2. (Prefetching never faults; addresses are computed only for rows inside the slice.)
#[inline]
#[target_feature(enable = "avx2,f16c")]
unsafe fn prefetch_rows(base: *const u16, hd: usize, from: usize, end: usize) {
    if from >= end {
        return;
    }
    let rows = (end - from).min(LANES);
    // The rows are contiguous (the KV cache layout); prefetch by cache line.
    let start = base.wrapping_add(from * hd) as *const i8;
    let bytes = rows * hd * 2;
    let mut off = 0;
    while off < bytes {
        _mm_prefetch::<_MM_HINT_T0>(start.wrapping_add(off));
        off += 64;
    }
}

/// Converts `count` (<= 8) consecutive rows of `hd` f16 values starting at `src` into `dst`.
///
/// # Safety
/// AVX2 and F16C; the rows are readable, `dst` holds `8 * hd` floats.
#[inline]
#[target_feature(enable = "avx2,f16c")]
unsafe fn convert_rows(src: *const u16, count: usize, hd: usize, dst: *mut f32) {
    for j in 0..count {
        for c in (0..hd).step_by(LANES) {
            // SAFETY: the caller's bounds.
            unsafe {
                let v = _mm256_cvtph_ps(_mm_loadu_si128(src.add(j * hd + c) as *const __m128i));
                _mm256_storeu_ps(dst.add(j * hd + c), v);
            }
        }
    }
}

/// Where [`wsum`] reads values: f16 rows in the cache or rows already converted to f32.
#[derive(Clone, Copy)]
enum Src {
    F16(*const u16),
    F32(*const f32),
}

/// `out[c0 .. c0 + 8*NC] += sum_{j < used} p[j] * v_j[..]`, positions in increasing order, with the NC
/// output vectors in registers (each element's additions stay in order; the vectors are independent).
///
/// # Safety
/// AVX2 and F16C; `p` has `used` floats, rows `0..used` of the source hold `c0 + 8*NC` values at
/// `stride` apart, `out` has `c0 + 8*NC` floats.
#[inline]
#[target_feature(enable = "avx2,f16c")]
unsafe fn wsum<const NC: usize>(
    (p, used, src, stride, out, c0): (*const f32, usize, Src, usize, *mut f32, usize),
) {
    // SAFETY: the caller's bounds.
    unsafe {
        let mut o: [__m256; NC] = std::array::from_fn(|k| _mm256_loadu_ps(out.add(c0 + k * LANES)));
        for j in 0..used {
            let pj = _mm256_set1_ps(*p.add(j));
            for (k, ok) in o.iter_mut().enumerate() {
                let at = j * stride + c0 + k * LANES;
                let v = match src {
                    Src::F16(v) => _mm256_cvtph_ps(_mm_loadu_si128(v.add(at) as *const __m128i)),
                    Src::F32(v) => _mm256_loadu_ps(v.add(at)),
                };
                *ok = _mm256_add_ps(*ok, _mm256_mul_ps(pj, v));
            }
        }
        for (k, ok) in o.iter().enumerate() {
            _mm256_storeu_ps(out.add(c0 + k * LANES), *ok);
        }
    }
}

/// Queries whose scores one pass over 8 keys computes: the pass holds 4 of each query's 8 lane
/// accumulators at a time, so 3 queries, the key and a broadcast take 14 of the 16 registers.
const SCORE_GROUP: usize = 3;

/// The scores of `G` queries against 8 consecutive keys `jb..jb+8` of a key tile ([`crate::engine::kernels::key_index`]):
/// dimension `d` of the 8 keys is at `k16 + d * KEY_TILE` (f16, the cache itself), or at `k32 + d * 8`
/// when `F32` (converted once for all queries of a task). Lane `l` of accumulator `m` sums dimensions
/// `8c + m` of key `jb + l` in increasing `c`; accumulators 0-3 and 4-7 are taken in two passes (each
/// key load serving all `G` queries) and reduced as `((a0+a1)+(a2+a3)) + ((a4+a5)+(a6+a7))`, so lane
/// `l` is `tree8(lanes of q . k_{jb+l}) * scale`: the documented order with no horizontal step.
///
/// # Safety
/// AVX2 and F16C; each `qs[g]` holds `hd` floats, the key source `hd` rows, each output 8 writable
/// floats.
#[inline]
#[target_feature(enable = "avx2,f16c")]
unsafe fn scores8<const G: usize, const F32: bool>(
    qs: [*const f32; G],
    (k16, k32): (*const u16, *const f32),
    hd: usize,
    scale: __m256,
    outs: [*mut f32; G],
) {
    // SAFETY: the caller's bounds.
    unsafe {
        let mut halves = [[_mm256_setzero_ps(); G]; 2];
        for (h, half) in halves.iter_mut().enumerate() {
            let mut acc = [[_mm256_setzero_ps(); 4]; G];
            for c in (0..hd).step_by(LANES) {
                for m in 0..4 {
                    let d = c + 4 * h + m;
                    let k = if F32 {
                        _mm256_loadu_ps(k32.add(d * LANES))
                    } else {
                        _mm256_cvtph_ps(_mm_loadu_si128(k16.add(d * KEY_TILE) as *const __m128i))
                    };
                    for g in 0..G {
                        acc[g][m] = _mm256_add_ps(acc[g][m], _mm256_mul_ps(_mm256_set1_ps(*qs[g].add(d)), k));
                    }
                }
            }
            for g in 0..G {
                let a = &acc[g];
                half[g] = _mm256_add_ps(_mm256_add_ps(a[0], a[1]), _mm256_add_ps(a[2], a[3]));
            }
        }
        for g in 0..G {
            _mm256_storeu_ps(outs[g], _mm256_mul_ps(_mm256_add_ps(halves[0][g], halves[1][g]), scale));
        }
    }
}

/// Turns one score row into softmax numerators in place and returns their sum, as [`crate::engine::kernels::Kernels::attend`]
/// specifies: positions `0..n` only (the maximum over them, `exp(s - max)`, lanes `j mod 8` summed in
/// increasing `j` and reduced by [`crate::arch::tree8`]); the rest of the last 8 becomes zero.
///
/// # Safety
/// AVX2 and F16C; `row` holds `n.div_ceil(8) * 8` floats, `n > 0`.
#[inline]
#[target_feature(enable = "avx2,f16c")]
unsafe fn softmax_row(row: *mut f32, n: usize) -> f32 {
    let valid = |jb: usize| lanes_below(n - jb);
    // SAFETY: the caller's bounds; every load and store is one of the row's blocks of 8.
    unsafe {
        let mut m = _mm256_set1_ps(f32::NEG_INFINITY);
        let mut jb = 0;
        while jb < n {
            let s = _mm256_loadu_ps(row.add(jb));
            let s = if n - jb >= LANES { s } else { _mm256_blendv_ps(m, s, _mm256_castsi256_ps(valid(jb))) };
            m = _mm256_max_ps(s, m);
            jb += LANES;
        }
        let mut lanes = [0f32; 8];
        _mm256_storeu_ps(lanes.as_mut_ptr(), m);
        let mut max = f32::NEG_INFINITY;
        for v in lanes {
            if v > max {
                max = v;
            }
        }
        let maxv = _mm256_set1_ps(max);
        let mut acc = _mm256_setzero_ps();
        let mut jb = 0;
        while jb < n {
            let mut e = exp8(_mm256_sub_ps(_mm256_loadu_ps(row.add(jb)), maxv));
            if n - jb < LANES {
                e = _mm256_and_ps(e, _mm256_castsi256_ps(valid(jb)));
            }
            _mm256_storeu_ps(row.add(jb), e);
            acc = _mm256_add_ps(acc, e);
            jb += LANES;
        }
        tree8_ps(acc)
    }
}

/// `out_a += sum_j pa[j] * v_j` and likewise for `b`, over the 8 converted values in `kv`, positions in
/// increasing order: [`wsum`] for two queries, 32 dimensions at a time so that each value load serves
/// both and the 8 sums stay in registers.
///
/// # Safety
/// AVX2; `p.0`, `p.1` hold 8 floats, `kv` 8 rows of `hd`, each output `hd` floats.
#[inline]
#[target_feature(enable = "avx2,f16c")]
unsafe fn wsum_pair(p: (*const f32, *const f32), kv: *const f32, hd: usize, out: (*mut f32, *mut f32)) {
    let mut c0 = 0;
    while c0 < hd {
        let nc = ((hd - c0) / LANES).min(4);
        // SAFETY: the caller's bounds; `c0 + 8 * nc <= hd`.
        unsafe {
            match nc {
                4 => wsum_pair_cols::<4>(p, kv, hd, out, c0),
                3 => wsum_pair_cols::<3>(p, kv, hd, out, c0),
                2 => wsum_pair_cols::<2>(p, kv, hd, out, c0),
                _ => wsum_pair_cols::<1>(p, kv, hd, out, c0),
            }
        }
        c0 += nc * LANES;
    }
}

/// [`wsum_pair`] for dimensions `c0..c0 + 8 * NC`, the `2 * NC` sums in registers.
///
/// # Safety
/// As [`wsum_pair`], and `c0 + 8 * NC <= hd`.
#[inline]
#[target_feature(enable = "avx2,f16c")]
unsafe fn wsum_pair_cols<const NC: usize>(
    p: (*const f32, *const f32),
    kv: *const f32,
    hd: usize,
    out: (*mut f32, *mut f32),
    c0: usize,
) {
    // SAFETY: the caller's bounds.
    unsafe {
        let mut oa: [__m256; NC] = std::array::from_fn(|k| _mm256_loadu_ps(out.0.add(c0 + k * LANES)));
        let mut ob: [__m256; NC] = std::array::from_fn(|k| _mm256_loadu_ps(out.1.add(c0 + k * LANES)));
        for j in 0..LANES {
            let (pa, pb) = (_mm256_set1_ps(*p.0.add(j)), _mm256_set1_ps(*p.1.add(j)));
            for k in 0..NC {
                let v = _mm256_loadu_ps(kv.add(j * hd + c0 + k * LANES));
                oa[k] = _mm256_add_ps(oa[k], _mm256_mul_ps(pa, v));
                ob[k] = _mm256_add_ps(ob[k], _mm256_mul_ps(pb, v));
            }
        }
        for k in 0..NC {
            _mm256_storeu_ps(out.0.add(c0 + k * LANES), oa[k]);
            _mm256_storeu_ps(out.1.add(c0 + k * LANES), ob[k]);
        }
    }
}

/// See [`crate::engine::kernels::Kernels::attend`]. Scores take 8 keys (half a key tile) at a time, converted to f32 once for all
/// queries of the task ([`scores8`]); values are converted 8 positions at a time, and pairs of queries
/// share each value load ([`wsum_pair`]).
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
    let hd = queries[0].q.len();
    let maxn = queries.iter().map(|q| q.npos).max().unwrap_or(0);
    let padded = maxn.div_ceil(KEY_TILE) * KEY_TILE;
    // Buffers only grow: shrinking and regrowing would zero the regrown part at every call. Leftovers
    // of earlier calls are finite and, like the padding lanes, never reach a result.
    grow(&mut scratch.scores, queries.len() * padded);
    grow(&mut scratch.kv, LANES * hd);
    grow(&mut scratch.sums, queries.len());
    let kp = keys.as_ptr() as *const u16;
    let vp = values.as_ptr() as *const u16;
    let kv = scratch.kv.as_mut_ptr();
    let scores = scratch.scores.as_mut_ptr();
    let scalev = _mm256_set1_ps(scale);
    // SAFETY (whole body): the key tiles holding positions < maxn are inside keys, values < maxn inside
    // values (caller); score rows are `padded` long; kv holds 8 rows of hd floats; dims step by 8 up to
    // hd (a multiple of 8).
    unsafe {
        // Scores. A lone query reads the keys from the cache; a group converts 8 keys once into `kv`
        // (dimension d at d * 8). Keys past maxn in the last tile give scores that are never used.
        let single = queries.len() == 1;
        let mut jb = 0;
        while jb < maxn {
            if jb.is_multiple_of(KEY_TILE) {
                prefetch_key_tile(kp, hd, jb / KEY_TILE + 2, maxn);
            }
            let src = kp.add(key_index(hd, jb, 0));
            if !single {
                for d in 0..hd {
                    let k = _mm256_cvtph_ps(_mm_loadu_si128(src.add(d * KEY_TILE) as *const __m128i));
                    _mm256_storeu_ps(kv.add(d * LANES), k);
                }
            }
            if single {
                let (q, out) = (queries[0].q.as_ptr(), scores.add(jb));
                scores8::<1, false>([q], (src, kv), hd, scalev, [out]);
            }
            // Groups of queries share each converted key; a query past its last position in this
            // block still gets (unused) scores, which keeps the groups whole.
            let mut i = 0;
            while !single && i < queries.len() {
                let g = (queries.len() - i).min(SCORE_GROUP);
                let q = |k: usize| queries[i + k.min(g - 1)].q.as_ptr();
                let out = |k: usize| scores.add((i + k.min(g - 1)) * padded + jb);
                match g {
                    3 => scores8::<3, true>(
                        [q(0), q(1), q(2)],
                        (src, kv),
                        hd,
                        scalev,
                        [out(0), out(1), out(2)],
                    ),
                    2 => scores8::<2, true>([q(0), q(1)], (src, kv), hd, scalev, [out(0), out(1)]),
                    _ => scores8::<1, true>([q(0)], (src, kv), hd, scalev, [out(0)]),
                }
                i += g;
            }
            jb += LANES;
        }

        // Softmax numerators and their sums; positions before a query's window weigh exactly 0.
        for (i, query) in queries.iter().enumerate() {
            let row = scores.add(i * padded);
            std::slice::from_raw_parts_mut(row, query.start).fill(f32::NEG_INFINITY);
            scratch.sums[i] = softmax_row(row, query.npos);
        }

        // Weighted sums of the values, positions in increasing order.
        for query in queries.iter_mut() {
            query.out.fill(0.0);
        }
        let mut jb = 0;
        while jb < maxn {
            let count = (maxn - jb).min(LANES);
            prefetch_rows(vp, hd, jb + PREFETCH_AHEAD, maxn);
            if !single {
                convert_rows(vp.add(jb * hd), count, hd, kv);
            }
            // Two queries at a time share each value load when both use all 8 positions.
            let mut first = 0;
            if !single {
                while first + 1 < queries.len()
                    && queries[first].npos >= jb + LANES
                    && queries[first + 1].npos >= jb + LANES
                    && queries[first].start <= jb
                    && queries[first + 1].start <= jb
                {
                    let (a, b) = queries.split_at_mut(first + 1);
                    let (qa, qb) = (&mut a[first], &mut b[0]);
                    let rows = (
                        scores.add(first * padded + jb) as *const f32,
                        scores.add((first + 1) * padded + jb) as *const f32,
                    );
                    wsum_pair(rows, kv, hd, (qa.out.as_mut_ptr(), qb.out.as_mut_ptr()));
                    first += 2;
                }
            }
            for (i, query) in queries.iter_mut().enumerate().skip(first) {
                if query.npos <= jb || query.start >= jb + LANES {
                    continue;
                }
                // Positions of this block before the query's window stay out of its sum.
                let skip = query.start.saturating_sub(jb);
                let used = (query.npos - jb).min(LANES) - skip;
                let row = scores.add(i * padded + jb + skip);
                let out = query.out.as_mut_ptr();
                let src =
                    if single { Src::F16(vp.add((jb + skip) * hd)) } else { Src::F32(kv.add(skip * hd)) };
                // Up to 64 dimensions at a time stay in registers while the positions stream past.
                let mut c0 = 0;
                while c0 < hd {
                    let nc = ((hd - c0) / LANES).min(8);
                    let args = (row as *const f32, used, src, hd, out, c0);
                    match nc {
                        8 => wsum::<8>(args),
                        7 => wsum::<7>(args),
                        6 => wsum::<6>(args),
                        5 => wsum::<5>(args),
                        4 => wsum::<4>(args),
                        3 => wsum::<3>(args),
                        2 => wsum::<2>(args),
                        _ => wsum::<1>(args),
                    }
                    c0 += nc * LANES;
                }
            }
            jb += LANES;
        }
        for (i, query) in queries.iter_mut().enumerate() {
            let sum = _mm256_set1_ps(scratch.sums[i]);
            let out = query.out.as_mut_ptr();
            for c in (0..hd).step_by(LANES) {
                _mm256_storeu_ps(out.add(c), _mm256_div_ps(_mm256_loadu_ps(out.add(c)), sum));
            }
        }
    }
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
