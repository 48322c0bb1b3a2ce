//! What the AVX2 and AVX-512 kernels share (both import this file; it imports neither): the 8-lane
//! float steps of a weight block and their reduction tree, the tail-block kernel, the matrix-product
//! driver (generic over the one step the two paths do differently, [`FullGroup`]), and small helpers.
//! Everything here needs AVX2 and F16C; a function without target features of its own is inlined into
//! an entry point that has them.

// Loops over rows and lanes index several arrays by the same number, as the math reads.
#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;

use super::super::scales::{Scale, ScaleRows};
use super::super::{BLOCK, GROUP, KEY_TILE, LANES, QActs, QMatrix, StridedOut};

/// The fixed tree `((v0+v1)+(v2+v3)) + ((v4+v5)+(v6+v7))` of [`crate::arch::tree8`].
#[inline]
#[target_feature(enable = "avx2,f16c")]
pub(super) fn tree8_ps(v: __m256) -> f32 {
    // h1 = [v0+v1, v2+v3, .., .. | v4+v5, v6+v7, .., ..]; IEEE addition is commutative, so the
    // operand order inside hadd does not matter.
    let h1 = _mm256_hadd_ps(v, v);
    // h2 lane 0 = (v0+v1)+(v2+v3), lane 4 = (v4+v5)+(v6+v7).
    let h2 = _mm256_hadd_ps(h1, h1);
    let lo = _mm256_castps256_ps128(h2);
    let hi = _mm256_extractf128_ps::<1>(h2);
    _mm_cvtss_f32(_mm_add_ss(lo, hi))
}

/// Mask of the lanes `< n` for masked loads.
#[inline]
#[target_feature(enable = "avx2,f16c")]
pub(super) fn lanes_below(n: usize) -> __m256i {
    _mm256_cmpgt_epi32(_mm256_set1_epi32(n as i32), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7))
}

/// One weight block prepared for [`block_dot`]: the unsigned operand, and for 8-bit blocks the
/// original values whose signs move onto the activations.
#[derive(Clone, Copy)]
struct WBlock(__m256i, __m256i);

/// Loads weight blocks `b` and `b+1` (`b` even) of a row starting at `wq`. For 4-bit rows the pair
/// shares 32 bytes (low nibbles: block `b`, high nibbles: block `b+1`); the second block of a row's
/// odd last pair is all zero and never used.
///
/// # Safety
/// AVX2; block `b` lies inside the row, and block `b+1` too for 8-bit rows if `both`.
#[inline]
#[target_feature(enable = "avx2,f16c")]
unsafe fn load_pair<const Q4: bool>(wq: *const u8, b: usize, both: bool) -> [WBlock; 2] {
    let zero = _mm256_setzero_si256();
    // SAFETY: the caller guarantees the blocks are inside the row.
    unsafe {
        if Q4 {
            let v = _mm256_loadu_si256(wq.add(b / 2 * BLOCK) as *const __m256i);
            let mask = _mm256_set1_epi8(0x0F);
            [
                WBlock(_mm256_and_si256(v, mask), zero),
                WBlock(_mm256_and_si256(_mm256_srli_epi16::<4>(v), mask), zero),
            ]
        } else {
            let load = |b: usize| {
                let v = _mm256_loadu_si256(wq.add(b * BLOCK) as *const __m256i);
                WBlock(_mm256_abs_epi8(v), v)
            };
            [load(b), if both { load(b + 1) } else { WBlock(zero, zero) }]
        }
    }
}

/// The 16 i16 pair sums of one block dot product (`maddubs`): element pairs (2k, 2k+1), each at most
/// 2*15*127 for 4-bit and 2*128*127 for 8-bit blocks.
#[inline]
#[target_feature(enable = "avx2,f16c")]
unsafe fn block_pairs<const Q4: bool>(w: WBlock, a: __m256i) -> __m256i {
    if Q4 { _mm256_maddubs_epi16(w.0, a) } else { _mm256_maddubs_epi16(w.0, _mm256_sign_epi8(a, w.1)) }
}

/// Activation rows `c0..c0+R` of a product: their int8 values (rows `qs` bytes apart), scales and
/// block sums (rows `ds` floats apart).
pub(super) struct ActRows<const R: usize> {
    q: *const i8,
    d: *const f32,
    s: *const f32,
    qs: usize,
    ds: usize,
}

impl<const R: usize> ActRows<R> {
    /// Row r's int8 values from block `b` on.
    ///
    /// # Safety
    /// `r < R`, `b` at most the row's block count.
    #[inline(always)]
    pub(super) unsafe fn q(&self, r: usize, b: usize) -> *const i8 {
        // SAFETY: inside the activation buffer (caller).
        unsafe { self.q.add(r * self.qs + b * BLOCK) }
    }
    #[inline(always)]
    pub(super) unsafe fn d(&self, r: usize, b: usize) -> *const f32 {
        // SAFETY: inside the activation buffer (caller).
        unsafe { self.d.add(r * self.ds + b) }
    }
    #[inline(always)]
    pub(super) unsafe fn s(&self, r: usize, b: usize) -> *const f32 {
        // SAFETY: inside the activation buffer (caller).
        unsafe { self.s.add(r * self.ds + b) }
    }
}

/// The tail blocks `b0..b0+N` (N < 8, known at compile time; stored block by block, see the module docs
/// of [`crate::engine::kernels`]) of one weight row against R activation rows: integer dots reduced horizontally to
/// their per-block sums in lanes 0..N, then the float steps of the module docs added to `acc`. Lanes
/// N..8 receive +0.0 (masked loads), which leaves them unchanged. (For 4-bit rows, the byte offset of
/// tail pair `(b - full) / 2` after the full groups equals `b / 2 * 32`, as `full` is even.)
///
/// # Safety
/// AVX2; blocks `b0..b0+N` exist in the weight row and in every activation row.
#[inline]
#[target_feature(enable = "avx2,f16c")]
unsafe fn group<const R: usize, const Q4: bool, const N: usize, S: Scale>(
    wq: *const u8,
    dw: *const S,
    mw: *const S,
    x: &ActRows<R>,
    b0: usize,
    acc: &mut [__m256; R],
) {
    // SAFETY: all reads stay inside blocks b0..b0+N (caller), float loads beyond N are masked.
    unsafe {
        let zero = _mm256_setzero_si256();
        // Per row: [blocks 0..4 half-sums | ...] and [blocks 4..8 ...], see reduce8_epi32.
        let mut h = [[zero; 2]; R];
        for (half, lo) in [0usize, 4].into_iter().enumerate() {
            if lo >= N {
                break;
            }
            let mut w = [WBlock(zero, zero); 4];
            for k in [0, 2] {
                if lo + k < N {
                    let [a, b] = load_pair::<Q4>(wq, b0 + lo + k, lo + k + 1 < N);
                    w[k] = a;
                    w[k + 1] = b;
                }
            }
            for r in 0..R {
                let mut p = [zero; 4];
                for (k, pk) in p.iter_mut().enumerate() {
                    if lo + k < N {
                        let a = _mm256_loadu_si256(x.q(r, b0 + lo + k) as *const __m256i);
                        *pk = block_pairs::<Q4>(w[k], a);
                    }
                }
                h[r][half] = if Q4 {
                    // 4-bit: sums of 16 products fit in i16 (16*15*127 = 30480), so two i16
                    // horizontal adds come before the one widening madd.
                    let s = _mm256_hadd_epi16(_mm256_hadd_epi16(p[0], p[1]), _mm256_hadd_epi16(p[2], p[3]));
                    _mm256_madd_epi16(s, _mm256_set1_epi16(1))
                } else {
                    let q: [__m256i; 4] = p.map(|v| _mm256_madd_epi16(v, _mm256_set1_epi16(1)));
                    _mm256_hadd_epi32(_mm256_hadd_epi32(q[0], q[1]), _mm256_hadd_epi32(q[2], q[3]))
                };
            }
        }
        let lanes = lanes_below(N);
        let load = |p: *const f32| {
            if N == 8 { _mm256_loadu_ps(p) } else { _mm256_maskload_ps(p, lanes) }
        };
        let dwv = load_scales::<S, N>(dw.add(b0));
        let mwv = if Q4 { load_scales::<S, N>(mw.add(b0)) } else { _mm256_setzero_ps() };
        for r in 0..R {
            let lo = _mm256_permute2x128_si256::<0x20>(h[r][0], h[r][1]);
            let hi = _mm256_permute2x128_si256::<0x31>(h[r][0], h[r][1]);
            let isum = _mm256_cvtepi32_ps(_mm256_add_epi32(lo, hi));
            let t = _mm256_mul_ps(_mm256_mul_ps(dwv, load(x.d(r, b0))), isum);
            let v = if Q4 { _mm256_add_ps(t, _mm256_mul_ps(mwv, load(x.s(r, b0)))) } else { t };
            acc[r] = _mm256_add_ps(acc[r], v);
        }
    }
}

/// The integer kernel of one full interleaved group, the one step of a product the AVX2 and AVX-512
/// paths do differently (`maddubs` and `vpdpbusd`): [`matmul_kind`] is written once over it.
pub(super) trait FullGroup {
    /// Full interleaved group `g` (blocks `8g..8g+8`, layout in the module docs of
    /// [`crate::engine::kernels`]) of one weight row against R activation rows: the 8 exact block sums
    /// per row, then [`group_finish`] into `acc`.
    ///
    /// # Safety
    /// The implementing path's CPU features; group `g` exists in the weight row and in every activation
    /// row.
    unsafe fn group_full<const R: usize, const Q4: bool, S: Scale>(
        wq: *const u8,
        dw: *const S,
        mw: *const S,
        x: &ActRows<R>,
        g: usize,
        acc: &mut [__m256; R],
    );
}

/// The float steps of the module docs of [`crate::engine::kernels`] for the 8 exact block sums of one full group (one
/// vector per activation row, lane `l` = block `b0 + l`), added to `acc`.
///
/// # Safety
/// AVX2; blocks `b0..b0+8` exist in the weight row and in every activation row.
#[inline]
#[target_feature(enable = "avx2,f16c")]
pub(super) unsafe fn group_finish<const R: usize, const Q4: bool, S: Scale>(
    isums: &[__m256i; R],
    dw: *const S,
    mw: *const S,
    x: &ActRows<R>,
    b0: usize,
    acc: &mut [__m256; R],
) {
    // SAFETY: blocks b0..b0+8 exist (caller).
    unsafe {
        let dwv = load_scales::<S, 8>(dw.add(b0));
        let mwv = if Q4 { load_scales::<S, 8>(mw.add(b0)) } else { _mm256_setzero_ps() };
        for r in 0..R {
            let isum = _mm256_cvtepi32_ps(isums[r]);
            let t = _mm256_mul_ps(_mm256_mul_ps(dwv, _mm256_loadu_ps(x.d(r, b0))), isum);
            let v = if Q4 { _mm256_add_ps(t, _mm256_mul_ps(mwv, _mm256_loadu_ps(x.s(r, b0)))) } else { t };
            acc[r] = _mm256_add_ps(acc[r], v);
        }
    }
}

/// Dots of weight row `n` with activation rows `c0..c0+R`; full groups through `G` (the same exact
/// block sums on every path), the tail through [`group`].
///
/// No target features of its own: it is inlined into the `matmul_rows` entry point of a path, whose
/// features it then has.
///
/// # Safety
/// AVX2 and F16C available, and `G`'s features; `n < w.rows()`,
/// `c0 + R <= x.rows()`, `x.cols() == w.cols()`.
#[inline(always)]
unsafe fn row_dots<G: FullGroup, const R: usize, const Q4: bool, S: Scale>(
    w: &QMatrix,
    scales: ScaleRows<'_, S>,
    n: usize,
    x: &QActs,
    c0: usize,
) -> [f32; R] {
    let nb = w.blocks();
    let wq = w.row_quants(n).as_ptr();
    let dw = scales.scale(n).as_ptr();
    let mw = scales.min(n).as_ptr();
    let (q, d, s) = x.rows_from(c0);
    let rows = ActRows::<R> { q, d, s, qs: x.cols(), ds: nb };
    // SAFETY: AVX is available (caller).
    let mut acc = [unsafe { _mm256_setzero_ps() }; R];
    let full = nb / LANES * LANES;
    // SAFETY: groups cover blocks 0..nb exactly; rows as guaranteed by the caller.
    unsafe {
        for g in 0..full / GROUP {
            G::group_full::<R, Q4, S>(wq, dw, mw, &rows, g, &mut acc);
        }
        match nb - full {
            0 => {}
            1 => group::<R, Q4, 1, S>(wq, dw, mw, &rows, full, &mut acc),
            2 => group::<R, Q4, 2, S>(wq, dw, mw, &rows, full, &mut acc),
            3 => group::<R, Q4, 3, S>(wq, dw, mw, &rows, full, &mut acc),
            4 => group::<R, Q4, 4, S>(wq, dw, mw, &rows, full, &mut acc),
            5 => group::<R, Q4, 5, S>(wq, dw, mw, &rows, full, &mut acc),
            6 => group::<R, Q4, 6, S>(wq, dw, mw, &rows, full, &mut acc),
            _ => group::<R, Q4, 7, S>(wq, dw, mw, &rows, full, &mut acc),
        }
        acc.map(|a| tree8_ps(a))
    }
}

/// Weight rows `n0..n1` against activation rows in groups of up to 4 (outer loop), weight rows inner:
/// the weight tile stays in cache while the activation groups stream past it, and each unpacked weight
/// block serves up to 4 rows.
///
/// No target features of its own (see [`row_dots`]).
///
/// # Safety
/// AVX2 and F16C available, and `G`'s features; arguments as checked by
/// [`crate::engine::kernels::Kernels::matmul_rows`].
#[inline(always)]
pub(super) unsafe fn matmul_kind<G: FullGroup, const Q4: bool, S: Scale>(
    w: &QMatrix,
    scales: ScaleRows<'_, S>,
    n0: usize,
    n1: usize,
    x: &QActs,
    out: &StridedOut,
    col0: usize,
) {
    let rows = x.rows();
    // With one or two activation rows the product streams weights from memory and waits on them;
    // with more it is bound by arithmetic and prefetching only adds work.
    let prefetch = rows <= 2;
    let mut c0 = 0;
    while c0 < rows {
        let r = (rows - c0).min(MAX_R);
        for n in n0..n1 {
            let col = col0 + n - n0;
            if prefetch && n + WEIGHT_PREFETCH_ROWS < n1 {
                prefetch_weight_row(w, scales, n + WEIGHT_PREFETCH_ROWS);
            }
            // SAFETY: n < w.rows(), c0 + r <= x.rows(), widths checked by the caller.
            unsafe {
                match r {
                    8 => store(out, c0, col, &row_dots::<G, 8, Q4, S>(w, scales, n, x, c0)),
                    7 => store(out, c0, col, &row_dots::<G, 7, Q4, S>(w, scales, n, x, c0)),
                    6 => store(out, c0, col, &row_dots::<G, 6, Q4, S>(w, scales, n, x, c0)),
                    5 => store(out, c0, col, &row_dots::<G, 5, Q4, S>(w, scales, n, x, c0)),
                    4 => store(out, c0, col, &row_dots::<G, 4, Q4, S>(w, scales, n, x, c0)),
                    3 => store(out, c0, col, &row_dots::<G, 3, Q4, S>(w, scales, n, x, c0)),
                    2 => store(out, c0, col, &row_dots::<G, 2, Q4, S>(w, scales, n, x, c0)),
                    _ => store(out, c0, col, &row_dots::<G, 1, Q4, S>(w, scales, n, x, c0)),
                }
            }
        }
        c0 += r;
    }
}

/// Weight rows ahead of the current one that are prefetched when decoding one or two sequences.
const WEIGHT_PREFETCH_ROWS: usize = 2;

/// Prefetches the integers and scales of weight row `n`.
#[inline]
fn prefetch_weight_row<S: Scale>(w: &QMatrix, scales: ScaleRows<'_, S>, n: usize) {
    let lines = |bytes: &[u8]| {
        for off in (0..bytes.len()).step_by(64) {
            // SAFETY: prefetching an address inside a live slice never faults and changes no state.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(bytes.as_ptr().add(off) as *const i8) };
        }
    };
    lines(w.row_quants(n));
    let bytes = |v: &[S]| {
        // SAFETY: viewing plain floats as bytes is always valid.
        unsafe { std::slice::from_raw_parts(v.as_ptr() as *const u8, std::mem::size_of_val(v)) }
    };
    lines(bytes(scales.scale(n)));
    lines(bytes(scales.min(n)));
}

/// Scales (or minimums) `p[0..N]` of consecutive blocks as f32 in lanes `0..N`, `+0.0` in the others.
///
/// # Safety
/// AVX2 and F16C; `p[0..N]` readable.
#[inline]
#[target_feature(enable = "avx2,f16c")]
unsafe fn load_scales<S: Scale, const N: usize>(p: *const S) -> __m256 {
    // SAFETY: reads p[0..N] only (the caller's bound).
    unsafe {
        if S::HALF {
            let bits = if N == 8 {
                _mm_loadu_si128(p as *const __m128i)
            } else {
                let mut part = [0u16; 8];
                std::ptr::copy_nonoverlapping(p as *const u16, part.as_mut_ptr(), N);
                _mm_loadu_si128(part.as_ptr() as *const __m128i)
            };
            _mm256_cvtph_ps(bits)
        } else if N == 8 {
            _mm256_loadu_ps(p as *const f32)
        } else {
            _mm256_maskload_ps(p as *const f32, lanes_below(N))
        }
    }
}

/// Activation rows per weight-row pass (each unpacked weight block serves this many rows).
const MAX_R: usize = 8;

#[inline(always)]
fn store(out: &StridedOut, c0: usize, col: usize, v: &[f32]) {
    for (r, &x) in v.iter().enumerate() {
        out.set(c0 + r, col, x);
    }
}

/// Prefetches key tile `t` of a head (`KEY_TILE * hd` f16 values), if it holds a position below `end`.
///
/// # Safety
/// AVX2. (Prefetching never faults; addresses are computed only for tiles inside the keys.)
#[inline]
#[target_feature(enable = "avx2,f16c")]
pub(super) unsafe fn prefetch_key_tile(keys: *const u16, hd: usize, t: usize, end: usize) {
    if t * KEY_TILE >= end {
        return;
    }
    let start = keys.wrapping_add(t * KEY_TILE * hd) as *const i8;
    for off in (0..KEY_TILE * hd * 2).step_by(64) {
        _mm_prefetch::<_MM_HINT_T0>(start.wrapping_add(off));
    }
}

/// Makes `v` at least `len` long.
pub(super) fn grow(v: &mut Vec<f32>, len: usize) {
    if v.len() < len {
        v.resize(len, 0.0);
    }
}

/// Runs `$call` with the const `$q4` (4-bit weights?), the type `$s` (how the scales are stored) and
/// `$rows` (the [`scales::ScaleRows`] of `$w`) bound to the weight matrix's own, so a kernel generic
/// over both is compiled for each of the four combinations and picked once per call.
macro_rules! with_weights {
    ($w:expr, $q4:ident, $s:ident, $rows:ident => $call:expr) => {{
        use $crate::engine::kernels::WeightKind;
        use $crate::engine::kernels::scales::{BlockScales, ScaleRows};
        let blocks = $w.blocks();
        match ($w.kind(), $w.scales()) {
            (WeightKind::U4, BlockScales::Half { scale, min }) => {
                const $q4: bool = true;
                type $s = half::f16;
                let $rows = ScaleRows::new(scale, min, blocks);
                $call
            }
            (WeightKind::U4, BlockScales::Single { scale, min }) => {
                const $q4: bool = true;
                type $s = f32;
                let $rows = ScaleRows::new(scale, min, blocks);
                $call
            }
            (WeightKind::I8, BlockScales::Half { scale, min }) => {
                const $q4: bool = false;
                type $s = half::f16;
                let $rows = ScaleRows::new(scale, min, blocks);
                $call
            }
            (WeightKind::I8, BlockScales::Single { scale, min }) => {
                const $q4: bool = false;
                type $s = f32;
                let $rows = ScaleRows::new(scale, min, blocks);
                $call
            }
        }
    }};
}
pub(super) use with_weights;
