//! Elementary functions written once, in plain IEEE arithmetic, so that every machine computes the same bits.
//!
//! Why not `f32::exp` and friends: those call the platform's libm, whose results differ between C libraries
//! and versions by an ulp here and there. One ulp in one logit is enough to change an integer frequency table,
//! and then the decoder loses everything after that token. The functions here use only `+ - * /`,
//! comparisons, conversions and bit manipulation, each of which IEEE 754 defines exactly. None of them uses a
//! fused multiply-add (the crate-wide choice: no FMA anywhere, so no path can differ by fusing).
//!
//! Accuracy is a secondary concern (a few ulp is plenty for a language model); determinism is the contract.
//! A SIMD version of any of these must perform the same operations in the same order (the lane-wise [`exp`]
//! is [`super::VectorMath::exp_shifted`], tested bit for bit against this one).

/// log2(e) rounded to f32. The vector versions of [`exp`] (`arch::x86_64`) use these very constants.
pub(crate) const LOG2_E: f32 = std::f32::consts::LOG2_E;
/// ln(2) split in a high part with trailing zero bits (so `k * LN2_HI` is exact for |k| < 2^9) and a low part.
pub(crate) const LN2_HI: f32 = 0.693_145_75;
pub(crate) const LN2_LO: f32 = 1.428_606_8e-6;

/// ln(2) for f64 split the same way: the high part has 32 trailing zero bits (so `k * LN2_HI_64` is exact
/// for |k| < 2^20), and `LN2_HI_64 + LN2_LO_64` is ln(2) to about 2^-85. Given as bit patterns: exact.
const LN2_HI_64: f64 = f64::from_bits(0x3fe6_2e42_fee0_0000); // 0.6931471803691238
const LN2_LO_64: f64 = f64::from_bits(0x3dea_39ef_3579_3c76); // 1.9082149292705877e-10

/// Rounds to the nearest integer, ties away from zero, using only a truncating conversion.
///
/// `f32::round` lowers to a libm call on targets without SSE4.1; a truncating `as` conversion is a single,
/// exactly specified instruction everywhere. Valid for |x| < 2^31.
#[inline(always)]
pub fn round_to_i32(x: f32) -> i32 {
    if x >= 0.0 { (x + 0.5) as i32 } else { (x - 0.5) as i32 }
}

/// `e^x` in f32, deterministic across machines.
///
/// Method: `x = k ln2 + r` with `|r| <= ln2/2` (Cody-Waite reduction in two parts), a degree-6 Taylor
/// polynomial for `e^r` in Horner form, then scaling by `2^k` through the exponent bits.
/// Relative error below 3e-7 on the whole range. Returns 0 below -103 and +inf above 88.72.
#[inline]
pub fn exp(x: f32) -> f32 {
    if x.is_nan() {
        return x;
    }
    if x > 88.72 {
        return f32::INFINITY;
    }
    if x < -103.0 {
        return 0.0;
    }
    let k = round_to_i32(x * LOG2_E);
    let kf = k as f32;
    let r = (x - kf * LN2_HI) - kf * LN2_LO;
    let p = 1.0
        + r * (1.0 + r * (0.5 + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    scale_by_pow2(p, k)
}

/// `p * 2^k` for `p` in [0.7, 1.5] and k in [-150, 128], exact whenever the result is a normal number.
#[inline(always)]
fn scale_by_pow2(p: f32, k: i32) -> f32 {
    if k >= -126 {
        if k > 127 {
            // 2^127 * 2^(k-127): k is at most 128 here.
            return p * f32::from_bits(((127 + 127) as u32) << 23) * 2.0;
        }
        p * f32::from_bits(((k + 127) as u32) << 23)
    } else {
        // Two steps keep the intermediate normal; the final product rounds once into the subnormal range.
        p * f32::from_bits(((k + 126 + 127) as u32) << 23) * f32::from_bits(1u32 << 23)
    }
}

/// `e^x` in f64 (used at load time: RoPE frequencies). Same method as [`exp`] with a degree-13 polynomial.
pub fn exp_f64(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    if x > 709.0 {
        return f64::INFINITY;
    }
    if x < -708.0 {
        return 0.0;
    }
    let t = x * std::f64::consts::LOG2_E;
    let k = if t >= 0.0 { (t + 0.5) as i64 } else { (t - 0.5) as i64 };
    let kf = k as f64;
    let r = (x - kf * LN2_HI_64) - kf * LN2_LO_64;
    // Horner evaluation of sum r^n / n!, n = 0..=13.
    let mut p = 1.0 / 6_227_020_800.0; // 1/13!
    let mut fact = 6_227_020_800.0f64;
    for n in (0..13).rev() {
        fact /= (n + 1) as f64; // exact: n! is exactly representable for n <= 18
        p = p * r + 1.0 / fact;
    }
    p * f64::from_bits(((k + 1023) as u64) << 52)
}

/// Natural logarithm in f64 for positive finite `x` (used at load time for RoPE frequencies).
///
/// Method: `x = m 2^e` with `m` in [sqrt(1/2), sqrt(2)), then `ln m = 2 atanh(s)` with `s = (m-1)/(m+1)`,
/// summed as an odd series to s^31 (|s| < 0.172, so the tail is below 1e-24).
pub fn ln_f64(x: f64) -> f64 {
    assert!(x > 0.0 && x.is_finite(), "ln_f64 takes a positive finite number");
    let bits = x.to_bits();
    let mut e = ((bits >> 52) & 0x7ff) as i64 - 1023;
    let mut m = f64::from_bits((bits & 0x000f_ffff_ffff_ffff) | (1023u64 << 52));
    assert!(e > -1023, "subnormal input to ln_f64");
    if m > std::f64::consts::SQRT_2 {
        m *= 0.5;
        e += 1;
    }
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    let mut sum = 0.0;
    for n in (0..16).rev() {
        sum = sum * s2 + 1.0 / (2 * n + 1) as f64;
    }
    let ef = e as f64;
    (ef * LN2_HI_64 + 2.0 * s * sum) + ef * LN2_LO_64
}

/// `base^y` in f64 for positive `base`, as `exp(y ln base)`.
pub fn powf_f64(base: f64, y: f64) -> f64 {
    exp_f64(y * ln_f64(base))
}

/// `(sin x, cos x)` in f64 for |x| < 2^20 (RoPE angles: position times frequency).
///
/// Method: `x = k pi/2 + r` with a three-part Cody-Waite split of pi/2 (exact products for |k| < 2^20),
/// Taylor polynomials for sin and cos on |r| <= pi/4, then the quadrant of `k` picks signs and order.
pub fn sin_cos_f64(x: f64) -> (f64, f64) {
    assert!(x.abs() < 1_048_576.0, "sin_cos_f64 argument out of range");
    const TWO_OVER_PI: f64 = std::f64::consts::FRAC_2_PI;
    // pi/2 = P1 + P2 + P3, P1 and P2 with 33 significant bits so k * P1, k * P2 are exact.
    const P1: f64 = f64::from_bits(0x3ff9_21fb_5440_0000); // 1.5707963267341256
    const P2: f64 = f64::from_bits(0x3dd0_b461_1a60_0000); // 6.077100506303966e-11
    const P3: f64 = f64::from_bits(0x3ba3_198a_2e03_7073); // 2.0222662487959506e-21
    let t = x * TWO_OVER_PI;
    let k = if t >= 0.0 { (t + 0.5) as i64 } else { (t - 0.5) as i64 };
    let kf = k as f64;
    let r = ((x - kf * P1) - kf * P2) - kf * P3;
    let r2 = r * r;
    // sin r = r (1 - r^2/3! + r^4/5! - ...), cos r = 1 - r^2/2! + ..., both to degree 22/23.
    let mut s = 0.0;
    let mut c = 0.0;
    for n in (0..12).rev() {
        let sign = if n % 2 == 0 { 1.0 } else { -1.0 };
        s = s * r2 + sign / factorial(2 * n + 1);
        c = c * r2 + sign / factorial(2 * n);
    }
    let s = s * r;
    match k.rem_euclid(4) {
        0 => (s, c),
        1 => (c, -s),
        2 => (-s, -c),
        _ => (-c, s),
    }
}

fn factorial(n: u32) -> f64 {
    // Exact for n <= 22 up to the final rounding of each product (deterministic either way).
    (1..=n).fold(1.0, |acc, i| acc * i as f64)
}

/// SiLU, `x / (1 + e^-x)`, with this module's [`exp`].
#[inline]
pub fn silu(x: f32) -> f32 {
    x / (1.0 + exp(-x))
}

/// `2 * sqrt(2 / pi)` rounded to f32: the factor of GELU's tanh argument, doubled (see [`gelu_tanh`]).
const GELU_TWO_C: f32 = 1.595_769;
/// The cubic coefficient of GELU's tanh approximation.
const GELU_K: f32 = 0.044_715;

/// GELU in its tanh form, `0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))`, computed through the
/// identity `0.5 (1 + tanh(u)) = 1 / (1 + e^(-2u))`: `x / (1 + exp(-(2 sqrt(2/pi)) * (x + 0.044715 *
/// (x * x * x))))` with this module's [`exp`], in that order. No tanh of its own is needed, and the
/// form has no cancellation near 0 (where `1 - 2 / (e^(2u) + 1)` would lose the small tanh); it
/// saturates to `x` (large `x`, also when `x^3` overflows) and to `-0` (very negative `x`).
#[inline]
pub fn gelu_tanh(x: f32) -> f32 {
    let inner = GELU_TWO_C * (x + GELU_K * (x * x * x));
    x / (1.0 + exp(-inner))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gelu_tanh_matches_its_definition() {
        let mut worst = 0f64;
        let mut x = -12.0f32;
        while x < 12.0 {
            let xd = x as f64;
            let c = (2.0 / std::f64::consts::PI).sqrt();
            let want = 0.5 * xd * (1.0 + (c * (xd + 0.044715 * xd * xd * xd)).tanh());
            let err = (gelu_tanh(x) as f64 - want).abs() / want.abs().max(1e-3);
            worst = worst.max(err);
            x += 0.001_7;
        }
        assert!(worst < 2e-6, "worst relative error {worst}");
        assert_eq!(gelu_tanh(0.0), 0.0);
        assert_eq!(gelu_tanh(1e30), 1e30, "x^3 overflows: saturates to x");
        assert_eq!(gelu_tanh(f32::INFINITY), f32::INFINITY);
        assert_eq!(gelu_tanh(-1e30).to_bits(), (-0.0f32).to_bits());
        assert_eq!(gelu_tanh(-200.0), 0.0);
        assert!(gelu_tanh(f32::NAN).is_nan());
    }

    fn rel(a: f64, b: f64) -> f64 {
        if b == 0.0 { a.abs() } else { ((a - b) / b).abs() }
    }

    #[test]
    fn exp_matches_std_closely_on_a_dense_grid() {
        let mut worst = 0.0f64;
        let mut x = -100.0f32;
        while x < 88.0 {
            let ours = exp(x) as f64;
            let reference = (x as f64).exp();
            if reference > 1e-37 {
                worst = worst.max(rel(ours, reference));
            }
            x += 0.0137;
        }
        assert!(worst < 4e-7, "worst relative error {worst}");
    }

    #[test]
    fn exp_edges() {
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(-200.0), 0.0);
        assert_eq!(exp(100.0), f32::INFINITY);
        assert!(exp(f32::NAN).is_nan());
        assert!(exp(-90.0) > 0.0, "subnormal results are kept");
    }

    #[test]
    fn f64_functions_are_accurate() {
        for &x in &[1e-3, 0.5, 1.0, 2.0, 10.0, 1e4, 1e5, 123456.789] {
            assert!(rel(ln_f64(x), x.ln()) < 1e-14 || (ln_f64(x) - x.ln()).abs() < 1e-15, "ln {x}");
        }
        for &x in &[-50.0, -1.0, 0.0, 0.3, 1.0, 20.0, 300.0] {
            assert!(rel(exp_f64(x), x.exp()) < 1e-14, "exp {x}");
        }
        assert!(rel(powf_f64(100000.0, -0.25), 100000f64.powf(-0.25)) < 1e-14);
        let mut x = -9000.0;
        while x < 9000.0 {
            let (s, c) = sin_cos_f64(x);
            assert!((s - x.sin()).abs() < 1e-12 && (c - x.cos()).abs() < 1e-12, "sincos {x}");
            x += 0.731;
        }
    }

    #[test]
    fn rounding_is_half_away_from_zero() {
        assert_eq!(round_to_i32(2.5), 3);
        assert_eq!(round_to_i32(-2.5), -3);
        assert_eq!(round_to_i32(2.49), 2);
        assert_eq!(round_to_i32(-0.2), 0);
    }
}
