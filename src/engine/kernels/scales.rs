//! Block scales and minimums of a weight matrix: stored as f16 where that loses nothing, else as f32.
//!
//! Why: a decoding step of one sequence reads every weight once and waits on memory, not arithmetic.
//! As f32, a 4-bit block's scale and minimum are 8 of its 24 bytes. Q4_0, Q4_1 and Q8_0 files store
//! them as f16, so keeping them as f16 cuts a sixth of the traffic and changes no value. The kernels
//! widen them to f32 (F16C's `vcvtph2ps`, or the `half` crate; both exact) before the first float step.
//! So the arithmetic, and every logit, is what f32 storage gives. When some value of a matrix is not an
//! f16 value (Q4_K's products `d*sc`, the engine's own requantization), the whole matrix stays f32.

use half::f16;
use half::slice::HalfFloatSliceExt;

/// How a block scale is stored: `f32`, or `f16` holding exactly the f32 the arithmetic uses.
pub trait Scale: Copy + Send + Sync + 'static + sealed::Sealed {
    /// Whether this is f16 (the SIMD loads choose their instruction from it at compile time).
    const HALF: bool;
}

impl Scale for f32 {
    const HALF: bool = false;
}

impl Scale for f16 {
    const HALF: bool = true;
}

/// `dst[i] = src[i]` as f32, exactly: the portable widening (the `half` crate, which uses F16C where
/// it finds it), for [`BlockScales::widen_rows`].
pub fn widen_half(src: &[f16], dst: &mut [f32]) {
    src.convert_to_f32_slice(dst);
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for half::f16 {}
}

/// The scales `d` and minimums `m` of a matrix's blocks, row-major (`rows * blocks` each; no minimums
/// for 8-bit blocks), all stored in one type so that a kernel is compiled once per type.
///
/// Invariant: `Half` only if every value is an f16 value, bit for bit, and none is NaN: widening gives
/// back exactly the f32 the matrix was built from, on every path.
#[derive(Clone, Debug)]
pub enum BlockScales {
    Half { scale: Vec<f16>, min: Vec<f16> },
    Single { scale: Vec<f32>, min: Vec<f32> },
}

impl BlockScales {
    /// f16 storage if it is exact for every value, else f32.
    pub fn new(scale: Vec<f32>, min: Vec<f32>) -> Self {
        let exact = |v: &f32| !v.is_nan() && f16::from_f32(*v).to_f32().to_bits() == v.to_bits();
        if scale.iter().chain(&min).all(exact) {
            let half = |v: &[f32]| v.iter().map(|&x| f16::from_f32(x)).collect();
            BlockScales::Half { scale: half(&scale), min: half(&min) }
        } else {
            BlockScales::Single { scale, min }
        }
    }

    /// The parts' values one after another: f16 if every part is, else f32 (exact either way).
    pub fn concat(parts: &[&BlockScales]) -> Self {
        if parts.iter().all(|p| matches!(p, BlockScales::Half { .. })) {
            let (mut scale, mut min) = (Vec::new(), Vec::new());
            for p in parts {
                if let BlockScales::Half { scale: s, min: m } = p {
                    scale.extend_from_slice(s);
                    min.extend_from_slice(m);
                }
            }
            return BlockScales::Half { scale, min };
        }
        let (mut scale, mut min) = (Vec::new(), Vec::new());
        for p in parts {
            let (s, m) = p.to_f32();
            scale.extend(s);
            min.extend(m);
        }
        BlockScales::Single { scale, min }
    }

    fn to_f32(&self) -> (Vec<f32>, Vec<f32>) {
        match self {
            BlockScales::Half { scale, min } => (scale.to_f32_vec(), min.to_f32_vec()),
            BlockScales::Single { scale, min } => (scale.clone(), min.clone()),
        }
    }

    /// Scale of block `i` (row-major over the matrix).
    pub fn scale(&self, i: usize) -> f32 {
        match self {
            BlockScales::Half { scale, .. } => scale[i].to_f32(),
            BlockScales::Single { scale, .. } => scale[i],
        }
    }

    /// Minimum of block `i`; only for 4-bit matrices.
    pub fn min(&self, i: usize) -> f32 {
        match self {
            BlockScales::Half { min, .. } => min[i].to_f32(),
            BlockScales::Single { min, .. } => min[i],
        }
    }

    /// The scales of rows `r0..r1` (`blocks` per row) as f32 into `scale[..(r1 - r0) * blocks]`, and
    /// their minimums into `min` likewise (left alone for 8-bit matrices, which have none). f16 values
    /// go through `widen_half`, which must be exact: [`widen_half`], or a path's own SIMD version.
    pub fn widen_rows(
        &self,
        (r0, r1, blocks): (usize, usize, usize),
        scale: &mut [f32],
        min: &mut [f32],
        widen_half: impl Fn(&[f16], &mut [f32]),
    ) {
        let span = r0 * blocks..r1 * blocks;
        let n = span.len();
        match self {
            BlockScales::Half { scale: s, min: m } => {
                widen_half(&s[span.clone()], &mut scale[..n]);
                if !m.is_empty() {
                    widen_half(&m[span], &mut min[..n]);
                }
            }
            BlockScales::Single { scale: s, min: m } => {
                scale[..n].copy_from_slice(&s[span.clone()]);
                if !m.is_empty() {
                    min[..n].copy_from_slice(&m[span]);
                }
            }
        }
    }

    /// Whether the values are stored as f16.
    pub fn is_half(&self) -> bool {
        matches!(self, BlockScales::Half { .. })
    }

    /// Bytes of storage.
    pub fn size_bytes(&self) -> usize {
        match self {
            BlockScales::Half { scale, min } => 2 * (scale.len() + min.len()),
            BlockScales::Single { scale, min } => 4 * (scale.len() + min.len()),
        }
    }
}

/// One matrix's scales and minimums in their stored type, cut into rows of `blocks`.
#[derive(Clone, Copy)]
pub struct ScaleRows<'a, S: Scale> {
    scale: &'a [S],
    min: &'a [S],
    blocks: usize,
}

impl<'a, S: Scale> ScaleRows<'a, S> {
    pub fn new(scale: &'a [S], min: &'a [S], blocks: usize) -> Self {
        ScaleRows { scale, min, blocks }
    }

    /// Scales of row `r`.
    #[inline(always)]
    pub fn scale(&self, r: usize) -> &'a [S] {
        &self.scale[r * self.blocks..(r + 1) * self.blocks]
    }

    /// Minimums of row `r` (empty for 8-bit matrices).
    #[inline(always)]
    pub fn min(&self, r: usize) -> &'a [S] {
        if self.min.is_empty() { &[] } else { &self.min[r * self.blocks..(r + 1) * self.blocks] }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_storage_only_when_every_value_survives_it() {
        // f16 values, incl. a subnormal, -0.0 and infinity: kept as f16, read back bit for bit.
        let values = vec![1.5f32, -0.0, f16::from_bits(1).to_f32(), f32::INFINITY, 65504.0];
        let s = BlockScales::new(values.clone(), values.clone());
        assert!(s.is_half());
        for (i, v) in values.iter().enumerate() {
            assert_eq!(s.scale(i).to_bits(), v.to_bits());
            assert_eq!(s.min(i).to_bits(), v.to_bits());
        }
        assert_eq!(s.size_bytes(), 2 * 2 * values.len());
        // One value that f16 would round (or a NaN, whose payload f16 may not keep) keeps all as f32.
        for odd in [1.0 + f32::EPSILON, f32::NAN, 1e-30] {
            let s = BlockScales::new(vec![1.0, 2.0], vec![0.5, odd]);
            assert!(!s.is_half(), "{odd} must not be stored as f16");
            assert_eq!(s.min(1).to_bits(), odd.to_bits());
        }
    }

    #[test]
    fn concat_keeps_f16_only_if_every_part_has_it() {
        let half = BlockScales::new(vec![1.0, 2.0], vec![]);
        let single = BlockScales::new(vec![0.1], vec![]);
        assert!(BlockScales::concat(&[&half, &half]).is_half());
        let mixed = BlockScales::concat(&[&half, &single, &half]);
        assert!(!mixed.is_half());
        let got: Vec<f32> = (0..5).map(|i| mixed.scale(i)).collect();
        assert_eq!(got, [1.0, 2.0, 0.1, 1.0, 2.0]);
    }

    type Widen = fn(&[f16], &mut [f32]);

    /// Every widening there is: the portable one, and the AMX path's own where the CPU has it.
    fn widenings() -> Vec<(&'static str, Widen)> {
        #[allow(unused_mut)]
        let mut all: Vec<(&'static str, Widen)> = vec![("portable", widen_half)];
        #[cfg(target_arch = "x86_64")]
        if crate::engine::kernels::KernelPath::Avx512.check_available().is_ok() {
            // SAFETY: the AVX-512 features it needs are available (checked above).
            all.push(("avx512", |s, d| unsafe { super::super::x86_64::amx::widen_half_avx512(s, d) }));
        }
        all
    }

    #[test]
    fn widening_is_exact() {
        let bits: Vec<u16> = (0..=u16::MAX).filter(|&b| !f16::from_bits(b).is_nan()).collect();
        let src: Vec<f16> = bits.iter().map(|&b| f16::from_bits(b)).collect();
        for (name, widen) in widenings() {
            let mut dst = vec![0f32; src.len()];
            widen(&src, &mut dst);
            check_widened(name, &bits, &dst);
            // Shorter than one register: a SIMD version's masked tail alone.
            let mut tail = vec![0f32; 13];
            widen(&src[..13], &mut tail);
            check_widened(name, &bits[..13], &tail);
        }
    }

    fn check_widened(name: &str, bits: &[u16], dst: &[f32]) {
        // The definition: sign, then (1024 + m) * 2^(e-25) for a normal exponent e, m * 2^-24 for a
        // subnormal, infinity for e = 31.
        let pow2 = |k: i64| f64::from_bits(((1023 + k) as u64) << 52);
        for (&b, d) in bits.iter().zip(dst) {
            let (e, m) = ((b >> 10) & 31, (b & 1023) as f64);
            let v = match e {
                0 => m * pow2(-24),
                31 => f64::INFINITY,
                _ => (1024.0 + m) * pow2(e as i64 - 25),
            };
            let v = if b >> 15 == 1 { -v } else { v };
            assert_eq!(d.to_bits(), (v as f32).to_bits(), "{name}: f16 bits {b:#06x}");
        }
    }
}
