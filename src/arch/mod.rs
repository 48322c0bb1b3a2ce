//! The determinism substrate: what every layer that computes floats must agree on, below the engine and
//! the quantizer (both import it; it imports neither).
//!
//! - **Which instructions may run** ([`KernelPath`]): the CPU's features, detected once, and the one place
//!   that reads [`KERNEL_ENV`]. AMX counts as available only where the operating system has the call that
//!   grants the tile state (Linux and Android on x86-64); elsewhere it is reported unavailable.
//! - **The lane structure** ([`LANES`] float accumulators) and **the reduction tree** ([`tree8`]) that
//!   every vector path reproduces, so that a sum of many terms comes out with the same bits on each.
//! - **Our own elementary functions** ([`math`]: `exp`, `ln`, `sin`/`cos`, no libm) and the lane-wise
//!   `exp` ([`VectorMath`]), one implementation per path, chosen once, bit for bit the scalar one.
//!
//! Per-ISA code lives in one folder per architecture (`x86_64/`); a path is added by adding a
//! [`KernelPath`] variant with its feature check, its folder, and one line in each registry
//! ([`vector`]'s here, the engine's kernel table above), and the bitwise tests, which iterate over
//! [`KernelPath::available`], hold it to the scalar bits.

pub mod math;
mod path;
pub mod vector;

#[cfg(target_arch = "x86_64")]
pub mod x86_64;

pub use path::KernelPath;
pub use vector::VectorMath;

/// Environment variable that forces a kernel path: `scalar`, `avx2`, `avx512` or `amx`. Read by
/// [`KernelPath::resolve`] only.
pub const KERNEL_ENV: &str = "LLMZIP_KERNEL";

/// Float accumulator lanes: one AVX2 register of f32. Sums of many terms (block contributions,
/// attention dot products, softmax denominators) go to lane `index mod 8`, then through [`tree8`].
pub const LANES: usize = 8;

/// The fixed reduction tree of 8 lane accumulators: `((a0+a1)+(a2+a3)) + ((a4+a5)+(a6+a7))`, which is
/// what two horizontal adds and one cross-half add compute on AVX2.
#[inline(always)]
pub fn tree8(a: [f32; LANES]) -> f32 {
    ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]))
}

/// What can go wrong choosing a kernel path. One line each: what was seen, what was expected, how to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArchError {
    #[error(
        "kernel path '{requested}' is not available on this CPU ({reason}); unset {KERNEL_ENV} or set it to 'scalar'"
    )]
    KernelUnavailable { requested: &'static str, reason: &'static str },
    #[error("{KERNEL_ENV}='{value}' is not a kernel path; expected 'scalar', 'avx2', 'avx512' or 'amx'")]
    UnknownKernel { value: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree8_is_the_documented_order() {
        let a = [1e8f32, 1.0, -1e8, 1.0, 3.0, 1e-8, 5.0, -7.0];
        let expected = ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
        assert_eq!(tree8(a).to_bits(), expected.to_bits());
    }
}
