//! Lane-wise elementary functions, one implementation per kernel path, chosen once: the exponentials of
//! the quantizer's softmax (and, through the engine's kernels, of attention and SiLU) compute
//! [`math::exp`](super::math::exp) on 8 or 16 lanes with the same operations in the same order.

use super::math;
use super::{ArchError, KernelPath};

/// The vector functions of one kernel path.
///
/// Invariant: a `&VectorMath` is obtained only through [`VectorMath::for_path`] (after the CPU check)
/// or [`VectorMath::SCALAR`]; the per-ISA statics are crate-private and reached only by tables that are
/// themselves handed out after the same check. So the CPU runs every function pointer held here.
pub struct VectorMath {
    pub(super) path: KernelPath,
    /// `out[i] = math::exp(x[i] - shift)`. Lengths are equal (checked by the safe wrapper).
    pub(super) exp_shifted: unsafe fn(&[f32], f32, &mut [f32]),
}

/// Every implementation this build has, slowest first: one line per path.
static ALL: &[&VectorMath] = &[
    &SCALAR,
    #[cfg(target_arch = "x86_64")]
    &AVX2,
    #[cfg(target_arch = "x86_64")]
    &AVX512,
    #[cfg(target_arch = "x86_64")]
    &AMX,
];

// The per-ISA entries: the ISA folders (`x86_64/`) hold only the functions, and this registry pairs
// each with its path. Crate-private: reached only through tables handed out after the CPU check (see
// [`VectorMath`]), such as the engine's kernel tables.
#[cfg(target_arch = "x86_64")]
pub(crate) static AVX2: VectorMath =
    VectorMath { path: KernelPath::Avx2, exp_shifted: super::x86_64::avx2::exp_shifted };
#[cfg(target_arch = "x86_64")]
pub(crate) static AVX512: VectorMath =
    VectorMath { path: KernelPath::Avx512, exp_shifted: super::x86_64::avx512::exp_shifted };
/// The AMX path's float steps are the AVX-512 path's.
#[cfg(target_arch = "x86_64")]
pub(crate) static AMX: VectorMath =
    VectorMath { path: KernelPath::Amx, exp_shifted: super::x86_64::avx512::exp_shifted };

static SCALAR: VectorMath = VectorMath { path: KernelPath::Scalar, exp_shifted: exp_shifted_scalar };

fn exp_shifted_scalar(x: &[f32], shift: f32, out: &mut [f32]) {
    for (o, &v) in out.iter_mut().zip(x) {
        *o = math::exp(v - shift);
    }
}

impl VectorMath {
    /// The portable implementation, which runs everywhere (a constant, so tables built at compile time
    /// can hold it).
    pub const SCALAR: &'static VectorMath = &SCALAR;

    /// The implementation for `path`, if this CPU runs it.
    pub fn for_path(path: KernelPath) -> Result<&'static VectorMath, ArchError> {
        path.check_available()?;
        ALL.iter().copied().find(|m| m.path == path).ok_or(ArchError::KernelUnavailable {
            requested: path.name(),
            reason: "this build has no vector code for it",
        })
    }

    /// The fastest implementation this CPU runs.
    pub fn best() -> &'static VectorMath {
        VectorMath::for_path(KernelPath::best_available()).unwrap_or(&SCALAR)
    }

    pub fn path(&self) -> KernelPath {
        self.path
    }

    /// `out[i] = math::exp(x[i] - shift)` for every `i`: the same bits on every path.
    ///
    /// # Panics
    /// If the lengths differ (a programming error).
    pub fn exp_shifted(&self, x: &[f32], shift: f32, out: &mut [f32]) {
        assert_eq!(x.len(), out.len(), "one output per input");
        // SAFETY: the CPU runs this path (the type's invariant); lengths checked above.
        unsafe { (self.exp_shifted)(x, shift, out) }
    }
}

impl std::fmt::Debug for VectorMath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("VectorMath").field(&self.path).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::SplitMix64;

    #[test]
    fn every_available_path_has_vector_code() {
        for path in KernelPath::available() {
            assert_eq!(VectorMath::for_path(path).unwrap().path(), path);
        }
        assert_eq!(VectorMath::best().path(), KernelPath::best_available());
    }

    #[test]
    fn exp_shifted_is_the_same_on_every_path() {
        // In [-120, 0), below and above the range where `exp` underflows.
        let mut rng = SplitMix64::new(13);
        let mut x: Vec<f32> = (0..1003).map(|_| ((rng.next_f32() - 1.0) / 2.0) * 120.0).collect();
        x[..5].copy_from_slice(&[0.0, -0.0, 95.0, -20.0, f32::NEG_INFINITY]);
        let want: Vec<u32> = x.iter().map(|&v| math::exp(v - 7.5).to_bits()).collect();
        for path in KernelPath::available() {
            let mut got = vec![f32::NAN; x.len()];
            VectorMath::for_path(path).unwrap().exp_shifted(&x, 7.5, &mut got);
            let got: Vec<u32> = got.iter().map(|v| v.to_bits()).collect();
            assert_eq!(got, want, "{path:?}");
        }
    }
}
