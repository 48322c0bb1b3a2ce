//! [`math::exp`] on 8 AVX2 lanes: the same operations in the same order, with the branches of the
//! scalar code turned into selections (tested against it on a dense sample of all f32, in
//! [`super`]). Everything here requires AVX2 and F16C.

use std::arch::x86_64::*;

use crate::arch::LANES;
use crate::arch::math::{self, LN2_HI, LN2_LO, LOG2_E};

/// [`math::exp`] on 8 lanes: the same operations in the same order, with the branches of the
/// scalar code turned into selections.
///
/// # Safety
/// AVX2 and F16C available.
#[inline]
#[target_feature(enable = "avx2,f16c")]
pub(crate) unsafe fn exp8(x: __m256) -> __m256 {
    // Softmax arguments (`s - max <= 0`) and SiLU's are almost always in [-87, 88], where the scalar
    // code takes none of its branches: k = round(x * log2 e) lies in [-126, 127], so `p * 2^k` is the
    // `normal` case of `exp8_full`. Testing the range once skips the selections; NaN fails the
    // ordered compares.
    let in_range = _mm256_and_ps(
        _mm256_cmp_ps::<_CMP_GE_OQ>(x, _mm256_set1_ps(-87.0)),
        _mm256_cmp_ps::<_CMP_LE_OQ>(x, _mm256_set1_ps(88.0)),
    );
    if _mm256_movemask_ps(in_range) == 0xFF {
        let (p, k) = exp8_parts(x);
        let pow = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(k, _mm256_set1_epi32(127))));
        return _mm256_mul_ps(p, pow);
    }
    exp8_full(x)
}

/// The polynomial `p` and the exponent `k` of [`math::exp`] on 8 lanes (`e^x = p * 2^k`).
#[inline]
#[target_feature(enable = "avx2,f16c")]
pub(crate) fn exp8_parts(x: __m256) -> (__m256, __m256i) {
    let zero = _mm256_setzero_ps();
    let one = _mm256_set1_ps(1.0);
    // round_to_i32(x * LOG2_E): add +-0.5 by sign, then truncate.
    let t = _mm256_mul_ps(x, _mm256_set1_ps(LOG2_E));
    let ge = _mm256_cmp_ps::<_CMP_GE_OQ>(t, zero);
    let half = _mm256_blendv_ps(_mm256_set1_ps(-0.5), _mm256_set1_ps(0.5), ge);
    let k = _mm256_cvttps_epi32(_mm256_add_ps(t, half));
    let kf = _mm256_cvtepi32_ps(k);
    let r = _mm256_sub_ps(
        _mm256_sub_ps(x, _mm256_mul_ps(kf, _mm256_set1_ps(LN2_HI))),
        _mm256_mul_ps(kf, _mm256_set1_ps(LN2_LO)),
    );
    let mut p = _mm256_mul_ps(r, _mm256_set1_ps(1.0 / 720.0));
    p = _mm256_mul_ps(r, _mm256_add_ps(_mm256_set1_ps(1.0 / 120.0), p));
    p = _mm256_mul_ps(r, _mm256_add_ps(_mm256_set1_ps(1.0 / 24.0), p));
    p = _mm256_mul_ps(r, _mm256_add_ps(_mm256_set1_ps(1.0 / 6.0), p));
    p = _mm256_mul_ps(r, _mm256_add_ps(_mm256_set1_ps(0.5), p));
    p = _mm256_mul_ps(r, _mm256_add_ps(one, p));
    (_mm256_add_ps(one, p), k)
}

/// [`exp8`] for any input: every branch of the scalar code as a selection.
#[inline]
#[target_feature(enable = "avx2,f16c")]
fn exp8_full(x: __m256) -> __m256 {
    let zero = _mm256_setzero_ps();
    let (p, k) = exp8_parts(x);
    // p * 2^k in the three ranges of the scalar scale_by_pow2.
    let pow = |e: __m256i| _mm256_castsi256_ps(_mm256_slli_epi32::<23>(e));
    let normal = _mm256_mul_ps(p, pow(_mm256_add_epi32(k, _mm256_set1_epi32(127))));
    let big = _mm256_mul_ps(
        _mm256_mul_ps(p, _mm256_castsi256_ps(_mm256_set1_epi32(254 << 23))),
        _mm256_set1_ps(2.0),
    );
    let small = _mm256_mul_ps(
        _mm256_mul_ps(p, pow(_mm256_add_epi32(k, _mm256_set1_epi32(126 + 127)))),
        _mm256_castsi256_ps(_mm256_set1_epi32(1 << 23)),
    );
    let k_big = _mm256_castsi256_ps(_mm256_cmpgt_epi32(k, _mm256_set1_epi32(127)));
    let k_small = _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(-126), k));
    let mut y = _mm256_blendv_ps(normal, big, k_big);
    y = _mm256_blendv_ps(y, small, k_small);
    // The early returns of the scalar code, last test first so the first one wins.
    y = _mm256_blendv_ps(y, zero, _mm256_cmp_ps::<_CMP_LT_OQ>(x, _mm256_set1_ps(-103.0)));
    y = _mm256_blendv_ps(
        y,
        _mm256_set1_ps(f32::INFINITY),
        _mm256_cmp_ps::<_CMP_GT_OQ>(x, _mm256_set1_ps(88.72)),
    );
    _mm256_blendv_ps(y, x, _mm256_cmp_ps::<_CMP_UNORD_Q>(x, x))
}

/// `out[i] = math::exp(x[i] - shift)` ([`crate::arch::VectorMath::exp_shifted`]): [`exp8`] on full groups
/// of 8, the tail with the scalar function.
///
/// # Safety
/// AVX2 and F16C available; equal lengths.
#[target_feature(enable = "avx2,f16c")]
pub unsafe fn exp_shifted(x: &[f32], shift: f32, out: &mut [f32]) {
    let full = x.len() / LANES * LANES;
    let shiftv = _mm256_set1_ps(shift);
    let mut i = 0;
    while i < full {
        // SAFETY: i + 8 <= len for both slices.
        unsafe {
            let v = _mm256_sub_ps(_mm256_loadu_ps(x.as_ptr().add(i)), shiftv);
            _mm256_storeu_ps(out.as_mut_ptr().add(i), exp8(v));
        }
        i += LANES;
    }
    for j in full..x.len() {
        out[j] = math::exp(x[j] - shift);
    }
}

/// [`exp8`] on an array, for tests.
///
/// # Safety
/// AVX2 and F16C available.
#[cfg(test)]
#[target_feature(enable = "avx2,f16c")]
pub unsafe fn exp8_array(x: [f32; 8]) -> [f32; 8] {
    let mut out = [0f32; 8];
    // SAFETY: 8 readable and writable floats.
    unsafe { _mm256_storeu_ps(out.as_mut_ptr(), exp8(_mm256_loadu_ps(x.as_ptr()))) };
    out
}
