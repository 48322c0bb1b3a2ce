//! [`crate::arch::math::exp`] on 16 AVX-512 lanes: the operations of [`avx2::exp8`]'s common case when
//! every lane is in [-87, 88] (where the scalar code takes none of its branches), else [`avx2::exp8`] on
//! each half.
//! Everything here requires AVX2, F16C and AVX-512 F, BW, DQ, VL (and VNNI, which the path includes).

use std::arch::x86_64::*;

use super::avx2;
use crate::arch::math::{LN2_HI, LN2_LO, LOG2_E};

/// [`crate::arch::math::exp`] on 16 lanes: the operations of [`avx2::exp8`]'s common case (every lane
/// in [-87, 88], where the scalar code takes none of its branches), else [`avx2::exp8`] on each half.
///
/// # Safety
/// The path's CPU features.
#[inline]
#[target_feature(enable = "avx2,f16c,avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")]
pub(crate) unsafe fn exp16(x: __m512) -> __m512 {
    let lo = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(x, _mm512_set1_ps(-87.0));
    let hi = _mm512_cmp_ps_mask::<_CMP_LE_OQ>(x, _mm512_set1_ps(88.0));
    if lo & hi != 0xFFFF {
        // SAFETY: AVX2 and F16C are part of this path.
        let (a, b) =
            unsafe { (avx2::exp8(_mm512_castps512_ps256(x)), avx2::exp8(_mm512_extractf32x8_ps::<1>(x))) };
        return _mm512_insertf32x8::<1>(_mm512_castps256_ps512(a), b);
    }
    let one = _mm512_set1_ps(1.0);
    // round_to_i32(x * LOG2_E): add +-0.5 by sign, then truncate.
    let t = _mm512_mul_ps(x, _mm512_set1_ps(LOG2_E));
    let ge = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(t, _mm512_setzero_ps());
    let half = _mm512_mask_blend_ps(ge, _mm512_set1_ps(-0.5), _mm512_set1_ps(0.5));
    let k = _mm512_cvttps_epi32(_mm512_add_ps(t, half));
    let kf = _mm512_cvtepi32_ps(k);
    let r = _mm512_sub_ps(
        _mm512_sub_ps(x, _mm512_mul_ps(kf, _mm512_set1_ps(LN2_HI))),
        _mm512_mul_ps(kf, _mm512_set1_ps(LN2_LO)),
    );
    let mut p = _mm512_mul_ps(r, _mm512_set1_ps(1.0 / 720.0));
    p = _mm512_mul_ps(r, _mm512_add_ps(_mm512_set1_ps(1.0 / 120.0), p));
    p = _mm512_mul_ps(r, _mm512_add_ps(_mm512_set1_ps(1.0 / 24.0), p));
    p = _mm512_mul_ps(r, _mm512_add_ps(_mm512_set1_ps(1.0 / 6.0), p));
    p = _mm512_mul_ps(r, _mm512_add_ps(_mm512_set1_ps(0.5), p));
    p = _mm512_mul_ps(r, _mm512_add_ps(one, p));
    let pow = _mm512_castsi512_ps(_mm512_slli_epi32::<23>(_mm512_add_epi32(k, _mm512_set1_epi32(127))));
    _mm512_mul_ps(_mm512_add_ps(one, p), pow)
}

/// `out[i] = exp(x[i] - shift)` ([`crate::arch::VectorMath::exp_shifted`]): [`exp16`] on full
/// groups of 16, the rest with [`avx2::exp_shifted`].
///
/// # Safety
/// The path's CPU features available; equal lengths.
#[target_feature(enable = "avx2,f16c,avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")]
pub unsafe fn exp_shifted(x: &[f32], shift: f32, out: &mut [f32]) {
    let full = x.len() / 16 * 16;
    let shiftv = _mm512_set1_ps(shift);
    for i in (0..full).step_by(16) {
        // SAFETY: i + 16 <= len for both slices.
        unsafe {
            let v = _mm512_sub_ps(_mm512_loadu_ps(x.as_ptr().add(i)), shiftv);
            _mm512_storeu_ps(out.as_mut_ptr().add(i), exp16(v));
        }
    }
    // SAFETY: AVX2 and F16C are part of this path.
    unsafe { avx2::exp_shifted(&x[full..], shift, &mut out[full..]) }
}

/// [`exp16`] on an array, for the exhaustive comparison with [`crate::arch::math::exp`].
///
/// # Safety
/// The path's CPU features available.
#[cfg(test)]
#[target_feature(enable = "avx2,f16c,avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")]
pub unsafe fn exp16_array(x: [f32; 16]) -> [f32; 16] {
    let mut out = [0f32; 16];
    // SAFETY: 16 readable and writable floats.
    unsafe { _mm512_storeu_ps(out.as_mut_ptr(), exp16(_mm512_loadu_ps(x.as_ptr()))) };
    out
}
