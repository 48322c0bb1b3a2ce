//! The AVX2 path: the same operations as [`super::scalar`] in the same order, 8 lanes at a time.
//!
//! Integer block dots use `maddubs` (u8 x i8 -> pairs of i16) and `madd` with ones (-> i32):
//! - 4-bit weights are unsigned nibbles (0..=15), the unsigned operand as they are; a pair sums to at
//!   most 2*15*127, far from the i16 limit;
//! - 8-bit weights use the sign trick: `maddubs(|w|, sign(a, w))` moves w's sign onto the activation;
//!   `|w|` read as u8 is right even for -128, and a pair sums to at most 2*128*127 = 32512 < 32767.
//!
//! The 8 i32 vectors of 8 consecutive blocks are reduced to one vector holding one exact block sum per
//! lane ([`reduce8_epi32`]); lane `l` then goes through the float steps of block `8g + l`, which is the
//! "lane = block mod 8" structure of the scalar code. All functions require AVX2 and F16C.

use std::arch::x86_64::*;

use half::f16;

use super::{BLOCK, LANES, QActs, QMatrix, StridedOut, WeightKind};

/// The fixed tree `((v0+v1)+(v2+v3)) + ((v4+v5)+(v6+v7))` of [`super::tree8`].
#[inline]
#[target_feature(enable = "avx2,f16c")]
fn tree8_ps(v: __m256) -> f32 {
    // h1 = [v0+v1, v2+v3, .., .. | v4+v5, v6+v7, .., ..]; IEEE addition is commutative, so the
    // operand order inside hadd does not matter.
    let h1 = _mm256_hadd_ps(v, v);
    // h2 lane 0 = (v0+v1)+(v2+v3), lane 4 = (v4+v5)+(v6+v7).
    let h2 = _mm256_hadd_ps(h1, h1);
    let lo = _mm256_castps256_ps128(h2);
    let hi = _mm256_extractf128_ps::<1>(h2);
    _mm_cvtss_f32(_mm_add_ss(lo, hi))
}

/// Lane `j` of the result is the sum of all 8 lanes of `p[j]` (exact integer arithmetic).
#[inline]
#[target_feature(enable = "avx2,f16c")]
fn reduce8_epi32(p: &[__m256i; 8]) -> __m256i {
    let h01 = _mm256_hadd_epi32(p[0], p[1]);
    let h23 = _mm256_hadd_epi32(p[2], p[3]);
    let h45 = _mm256_hadd_epi32(p[4], p[5]);
    let h67 = _mm256_hadd_epi32(p[6], p[7]);
    // [p0 lo, p1 lo, p2 lo, p3 lo | p0 hi, p1 hi, p2 hi, p3 hi] (each a sum of 4 lanes).
    let h0123 = _mm256_hadd_epi32(h01, h23);
    let h4567 = _mm256_hadd_epi32(h45, h67);
    let lo = _mm256_permute2x128_si256::<0x20>(h0123, h4567);
    let hi = _mm256_permute2x128_si256::<0x31>(h0123, h4567);
    _mm256_add_epi32(lo, hi)
}

/// A 4-bit block as 32 unsigned bytes in element order: low nibbles (elements 0..16) in the low half,
/// high nibbles (elements 16..32) in the high half.
///
/// # Safety
/// `p` must point to 16 readable bytes.
#[inline]
#[target_feature(enable = "avx2,f16c")]
unsafe fn unpack_u4(p: *const u8) -> __m256i {
    // SAFETY: the caller guarantees 16 readable bytes.
    let v = unsafe { _mm_loadu_si128(p as *const __m128i) };
    let hi = _mm_srli_epi16::<4>(v);
    _mm256_and_si256(_mm256_set_m128i(hi, v), _mm256_set1_epi8(0x0F))
}

/// Mask of the lanes `< n` for masked loads.
#[inline]
#[target_feature(enable = "avx2,f16c")]
fn lanes_below(n: usize) -> __m256i {
    _mm256_cmpgt_epi32(
        _mm256_set1_epi32(n as i32),
        _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
    )
}

/// Dots of weight row `n` with activation rows `c0..c0+R`.
///
/// # Safety
/// AVX2 and F16C available; `n < w.rows()`, `c0 + R <= x.rows()`, `x.cols() == w.cols()`.
#[inline]
#[target_feature(enable = "avx2,f16c")]
unsafe fn row_dots<const R: usize>(w: &QMatrix, n: usize, x: &QActs, c0: usize) -> [f32; R] {
    let nb = w.blocks();
    let kind = w.kind();
    let wq = w.row_quants(n).as_ptr();
    let dw = w.row_scale(n).as_ptr();
    let mw = w.row_min(n).as_ptr();
    let aq: [*const i8; R] = std::array::from_fn(|r| x.row_q(c0 + r).as_ptr());
    let da: [*const f32; R] = std::array::from_fn(|r| x.row_d(c0 + r).as_ptr());
    let sa: [*const f32; R] = std::array::from_fn(|r| x.row_s(c0 + r).as_ptr());
    let ones = _mm256_set1_epi16(1);
    let mut acc = [_mm256_setzero_ps(); R];
    let mut b0 = 0;
    while b0 < nb {
        // Blocks b0..b0+count; the last group may be short (the tail of the module docs).
        let count = (nb - b0).min(LANES);
        let lanes = lanes_below(count);
        let mut wv = [_mm256_setzero_si256(); 8];
        let mut wabs = [_mm256_setzero_si256(); 8];
        // SAFETY (all pointer reads below): block indices b0+j < nb stay inside the rows, and the
        // float loads are masked to the lanes < count.
        unsafe {
            for j in 0..count {
                match kind {
                    WeightKind::U4 => wv[j] = unpack_u4(wq.add((b0 + j) * 16)),
                    WeightKind::I8 => {
                        wv[j] = _mm256_loadu_si256(wq.add((b0 + j) * BLOCK) as *const __m256i);
                        wabs[j] = _mm256_abs_epi8(wv[j]);
                    }
                }
            }
            let dwv = _mm256_maskload_ps(dw.add(b0), lanes);
            let mwv = match kind {
                WeightKind::U4 => _mm256_maskload_ps(mw.add(b0), lanes),
                WeightKind::I8 => _mm256_setzero_ps(),
            };
            for r in 0..R {
                let mut p = [_mm256_setzero_si256(); 8];
                for j in 0..count {
                    let a = _mm256_loadu_si256(aq[r].add((b0 + j) * BLOCK) as *const __m256i);
                    let pairs = match kind {
                        WeightKind::U4 => _mm256_maddubs_epi16(wv[j], a),
                        WeightKind::I8 => _mm256_maddubs_epi16(wabs[j], _mm256_sign_epi8(a, wv[j])),
                    };
                    p[j] = _mm256_madd_epi16(pairs, ones);
                }
                let isum = _mm256_cvtepi32_ps(reduce8_epi32(&p));
                let dav = _mm256_maskload_ps(da[r].add(b0), lanes);
                let t = _mm256_mul_ps(_mm256_mul_ps(dwv, dav), isum);
                let v = match kind {
                    WeightKind::U4 => {
                        let sav = _mm256_maskload_ps(sa[r].add(b0), lanes);
                        _mm256_add_ps(t, _mm256_mul_ps(mwv, sav))
                    }
                    WeightKind::I8 => t,
                };
                acc[r] = _mm256_add_ps(acc[r], v);
            }
        }
        b0 += count;
    }
    acc.map(|a| tree8_ps(a))
}

/// See [`super::matmul_rows`].
///
/// # Safety
/// AVX2 and F16C available; arguments as checked by [`super::matmul_rows`].
#[target_feature(enable = "avx2,f16c")]
pub unsafe fn matmul_rows(
    w: &QMatrix,
    n0: usize,
    n1: usize,
    x: &QActs,
    out: &StridedOut,
    col0: usize,
) {
    // Activation rows in groups of up to 4 (outer), weight rows inner: the weight tile stays in cache
    // while the activation groups stream past it, and each unpacked weight block serves 4 rows.
    let rows = x.rows();
    let mut c0 = 0;
    while c0 < rows {
        let r = (rows - c0).min(4);
        for n in n0..n1 {
            let col = col0 + n - n0;
            // SAFETY: n < w.rows(), c0 + r <= x.rows(), widths checked by the caller.
            unsafe {
                match r {
                    4 => store(out, c0, col, &row_dots::<4>(w, n, x, c0)),
                    3 => store(out, c0, col, &row_dots::<3>(w, n, x, c0)),
                    2 => store(out, c0, col, &row_dots::<2>(w, n, x, c0)),
                    _ => store(out, c0, col, &row_dots::<1>(w, n, x, c0)),
                }
            }
        }
        c0 += r;
    }
}

#[inline(always)]
fn store(out: &StridedOut, c0: usize, col: usize, v: &[f32]) {
    for (r, &x) in v.iter().enumerate() {
        out.set(c0 + r, col, x);
    }
}

/// See [`super::attention_scores`].
///
/// # Safety
/// AVX2 and F16C available; bounds as asserted by [`super::attention_scores`].
#[target_feature(enable = "avx2,f16c")]
pub unsafe fn attention_scores(
    q: &[f32],
    keys: &[f16],
    stride: usize,
    scale: f32,
    scores: &mut [f32],
) {
    let hd = q.len();
    let qp = q.as_ptr();
    let kp = keys.as_ptr() as *const u16;
    for (j, s) in scores.iter_mut().enumerate() {
        let mut acc = _mm256_setzero_ps();
        let mut i = 0;
        while i < hd {
            // SAFETY: j*stride + i + 8 <= keys.len() and i + 8 <= q.len() (caller's bounds).
            unsafe {
                let k = _mm256_cvtph_ps(_mm_loadu_si128(kp.add(j * stride + i) as *const __m128i));
                let qv = _mm256_loadu_ps(qp.add(i));
                acc = _mm256_add_ps(acc, _mm256_mul_ps(qv, k));
            }
            i += LANES;
        }
        *s = tree8_ps(acc) * scale;
    }
}

/// See [`super::weighted_sum`].
///
/// # Safety
/// AVX2 and F16C available; bounds as asserted by [`super::weighted_sum`].
#[target_feature(enable = "avx2,f16c")]
pub unsafe fn weighted_sum(w: &[f32], values: &[f16], stride: usize, out: &mut [f32]) {
    let hd = out.len();
    let vp = values.as_ptr() as *const u16;
    // Up to 64 dimensions at a time stay in registers while the positions stream past.
    let mut d0 = 0;
    while d0 < hd {
        let width = (hd - d0).min(64);
        let nv = width / LANES;
        let mut acc = [_mm256_setzero_ps(); 8];
        for (j, &p) in w.iter().enumerate() {
            let pv = _mm256_set1_ps(p);
            for (k, a) in acc.iter_mut().enumerate().take(nv) {
                // SAFETY: j*stride + d0 + 8k + 8 <= values.len() (caller's bounds).
                unsafe {
                    let v = _mm256_cvtph_ps(_mm_loadu_si128(
                        vp.add(j * stride + d0 + k * LANES) as *const __m128i
                    ));
                    *a = _mm256_add_ps(*a, _mm256_mul_ps(pv, v));
                }
            }
        }
        for (k, a) in acc.iter().enumerate().take(nv) {
            // SAFETY: d0 + 8k + 8 <= out.len().
            unsafe { _mm256_storeu_ps(out.as_mut_ptr().add(d0 + k * LANES), *a) };
        }
        d0 += width;
    }
}
