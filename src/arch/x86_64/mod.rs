//! x86-64: which kernel paths the CPU and the operating system allow, and the lane-wise `exp` on AVX2
//! (8 lanes) and AVX-512 (16 lanes).

pub mod avx2;
pub mod avx512;

use std::sync::OnceLock;

/// What the AVX2 path needs that this machine lacks (AVX2 and F16C), or `None` if it runs it.
pub(super) fn avx2_missing() -> Option<&'static str> {
    if !std::arch::is_x86_feature_detected!("avx2") {
        Some("the CPU lacks AVX2")
    } else if !std::arch::is_x86_feature_detected!("f16c") {
        Some("the CPU lacks F16C")
    } else {
        None
    }
}

/// What the AVX-512 path needs that this machine lacks (the AVX2 path's features, AVX-512 F, BW, DQ,
/// VL and VNNI), or `None` if it runs it.
pub(super) fn avx512_missing() -> Option<&'static str> {
    if avx2_missing().is_some() {
        return Some("the CPU lacks AVX2 or F16C");
    }
    let features = [
        ("the CPU lacks AVX-512 F", std::arch::is_x86_feature_detected!("avx512f")),
        ("the CPU lacks AVX-512 BW", std::arch::is_x86_feature_detected!("avx512bw")),
        ("the CPU lacks AVX-512 DQ", std::arch::is_x86_feature_detected!("avx512dq")),
        ("the CPU lacks AVX-512 VL", std::arch::is_x86_feature_detected!("avx512vl")),
        ("the CPU lacks AVX-512 VNNI", std::arch::is_x86_feature_detected!("avx512vnni")),
    ];
    features.iter().find(|(_, has)| !has).map(|&(reason, _)| reason)
}

/// What the AMX path needs that this machine lacks (the AVX-512 path's features, AMX-TILE and
/// AMX-INT8, and the operating system's permission to use the tiles), or `None` if it runs it.
pub(super) fn amx_missing() -> Option<&'static str> {
    if avx512_missing().is_some() {
        Some("the CPU lacks the AVX-512 path's features")
    } else if !amx_granted() {
        Some(AMX_MISSING)
    } else {
        None
    }
}

/// Whether this CPU has AMX-TILE and AMX-INT8 (CPUID leaf 7, EDX bits 24 and 25) and the operating
/// system gave this process the tile data state. Asked once.
fn amx_granted() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| {
        // CPUID leaf 7 exists on every x86-64 CPU that has AVX2 (checked by the caller first).
        let leaf7 = std::arch::x86_64::__cpuid_count(7, 0);
        let has_tiles = leaf7.edx & (1 << 24) != 0 && leaf7.edx & (1 << 25) != 0;
        has_tiles && request_tile_permission()
    })
}

/// `arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`: Linux (5.16+) enables the 8 KiB tile state
/// for a process only when asked; without it the first tile instruction faults.
#[cfg(all(target_arch = "x86_64", any(target_os = "linux", target_os = "android")))]
fn request_tile_permission() -> bool {
    const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
    const XFEATURE_XTILEDATA: libc::c_long = 18;
    // SAFETY: a plain system call with integer arguments; it changes only this process's permissions.
    unsafe { libc::syscall(libc::SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0 }
}

/// Other systems have no call (that this crate knows) which grants the tile state, and a tile
/// instruction without it faults: AMX stays unavailable there.
#[cfg(not(all(target_arch = "x86_64", any(target_os = "linux", target_os = "android"))))]
fn request_tile_permission() -> bool {
    false
}

#[cfg(any(target_os = "linux", target_os = "android"))]
const AMX_MISSING: &str = "the CPU lacks AMX-INT8, or the kernel does not grant the tile state";
#[cfg(not(any(target_os = "linux", target_os = "android")))]
const AMX_MISSING: &str = "AMX needs the tile state, which only Linux and Android grant here";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::math;

    #[test]
    fn simd_exp_is_bitwise_math_exp() {
        if avx2_missing().is_some() {
            eprintln!("AVX2 not available on this CPU; only the scalar path runs here");
            return;
        }
        let mut xs: Vec<f32> = vec![
            0.0,
            -0.0,
            1.0,
            -1.0,
            88.72,
            88.73,
            -103.0,
            -103.01,
            -87.3,
            -87.4,
            -100.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            f32::MIN_POSITIVE,
            -f32::MIN_POSITIVE,
        ];
        // Every 97th bit pattern: all exponents, both signs, many mantissas.
        xs.extend((0..u32::MAX / 97).map(|i| f32::from_bits(i * 97)));
        let wide = avx512_missing().is_none();
        // Runs of 16 mix in-range and out-of-range lanes, which takes the 16-lane code off its fast
        // path for the whole register.
        for x in xs.chunks(16) {
            let mut buf = [0f32; 16];
            buf[..x.len()].copy_from_slice(x);
            // SAFETY: AVX2 checked above.
            let lo = unsafe { avx2::exp8_array(buf[..8].try_into().unwrap()) };
            let hi = unsafe { avx2::exp8_array(buf[8..].try_into().unwrap()) };
            // SAFETY: AVX-512 checked (`wide`).
            let w = if wide { Some(unsafe { avx512::exp16_array(buf) }) } else { None };
            for (i, x) in x.iter().enumerate() {
                let want = math::exp(*x);
                let same = |g: f32| want.to_bits() == g.to_bits() || (want.is_nan() && g.is_nan());
                let g8 = if i < 8 { lo[i] } else { hi[i - 8] };
                assert!(same(g8), "exp({x:e}) = {want:e} but AVX2 gives {g8:e}");
                if let Some(w) = w {
                    assert!(same(w[i]), "exp({x:e}) = {want:e} but AVX-512 gives {:e}", w[i]);
                }
            }
        }
        // And every lane on the 16-lane fast path: in-range inputs only, densely.
        if wide {
            let dense: Vec<f32> =
                (0..1 << 22).map(|i| -87.0 + 175.0 * (i as f32 / (1 << 22) as f32)).collect();
            for x in dense.chunks_exact(16) {
                // SAFETY: AVX-512 checked (`wide`).
                let got = unsafe { avx512::exp16_array(x.try_into().unwrap()) };
                for (x, g) in x.iter().zip(got) {
                    assert_eq!(math::exp(*x).to_bits(), g.to_bits(), "exp({x:e}) on 16 lanes");
                }
            }
        }
    }
}
