//! Which implementation of the hot loops runs: the list of paths, their names, and whether this CPU (and
//! its operating system) can run each.

use super::{ArchError, KERNEL_ENV};

/// Which implementation of the hot loops runs. Every path gives identical bits; only the speed differs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KernelPath {
    /// Portable Rust; runs everywhere.
    Scalar,
    /// x86-64 AVX2 with F16C (every AVX2 CPU has F16C; both are checked at run time).
    Avx2,
    /// x86-64 AVX-512 (F, BW, DQ, VL) with VNNI on top of AVX2: integer block dots with `vpdpbusd`,
    /// attention on two queries per 512-bit register. Every lane does what the AVX2 lane does.
    Avx512,
    /// The AVX-512 path with the integer products of large batches on the AMX tile unit (AMX-INT8;
    /// the operating system must grant the tile state, which only Linux and Android can here). The
    /// float steps are the same.
    Amx,
}

impl KernelPath {
    /// Every path, slowest first: the one list of paths. A new path is a variant, an entry here, its
    /// name and its feature check below.
    pub const ALL: [KernelPath; 4] =
        [KernelPath::Scalar, KernelPath::Avx2, KernelPath::Avx512, KernelPath::Amx];

    /// The name used by [`KERNEL_ENV`] and in reports.
    pub fn name(self) -> &'static str {
        match self {
            KernelPath::Scalar => "scalar",
            KernelPath::Avx2 => "avx2",
            KernelPath::Avx512 => "avx512",
            KernelPath::Amx => "amx",
        }
    }

    /// Parses a path name as written in [`KERNEL_ENV`] (case and surrounding blanks ignored).
    pub fn parse(value: &str) -> Result<Self, ArchError> {
        let wanted = value.trim().to_ascii_lowercase();
        KernelPath::ALL
            .into_iter()
            .find(|p| p.name() == wanted)
            .ok_or_else(|| ArchError::UnknownKernel { value: value.to_string() })
    }

    /// Whether this CPU can run the path; if not, the first feature it lacks. (Feature detection is
    /// cached by the standard library, AMX's system call made once, so this is cheap to repeat.)
    pub fn check_available(self) -> Result<(), ArchError> {
        let missing = match self {
            KernelPath::Scalar => None,
            KernelPath::Avx2 | KernelPath::Avx512 | KernelPath::Amx => x86_64_missing(self),
        };
        match missing {
            None => Ok(()),
            Some(reason) => Err(ArchError::KernelUnavailable { requested: self.name(), reason }),
        }
    }

    /// The paths this CPU can run, slowest first (scalar is always among them).
    pub fn available() -> Vec<Self> {
        KernelPath::ALL.into_iter().filter(|p| p.check_available().is_ok()).collect()
    }

    /// The fastest path this CPU supports.
    pub fn best_available() -> Self {
        *KernelPath::available().last().expect("the scalar path is always available")
    }

    /// Picks the path: an explicit choice wins, then [`KERNEL_ENV`], then the best available. A requested
    /// path that this CPU cannot run is an error, never a silent fallback. The only reader of
    /// [`KERNEL_ENV`]: every layer that needs a path is handed the one resolved here.
    pub fn resolve(explicit: Option<KernelPath>) -> Result<Self, ArchError> {
        let path = match explicit {
            Some(path) => path,
            None => match std::env::var(KERNEL_ENV) {
                Ok(value) if !value.trim().is_empty() => KernelPath::parse(&value)?,
                _ => KernelPath::best_available(),
            },
        };
        path.check_available()?;
        Ok(path)
    }
}

/// The first feature an x86-64 path needs that this machine lacks: the table from paths to the CPU
/// checks of `x86_64/`, which knows features, not paths.
#[cfg(target_arch = "x86_64")]
fn x86_64_missing(path: KernelPath) -> Option<&'static str> {
    use super::x86_64::{amx_missing, avx2_missing, avx512_missing};
    match path {
        KernelPath::Scalar => None,
        KernelPath::Avx2 => avx2_missing(),
        KernelPath::Avx512 => avx512_missing(),
        KernelPath::Amx => amx_missing(),
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn x86_64_missing(_: KernelPath) -> Option<&'static str> {
    Some("not an x86-64 CPU")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_path_is_listed_and_scalar_is_always_available() {
        let available = KernelPath::available();
        assert_eq!(available[0], KernelPath::Scalar);
        assert_eq!(KernelPath::best_available(), *available.last().unwrap());
        for path in KernelPath::ALL {
            assert_eq!(KernelPath::parse(path.name()).unwrap(), path);
            assert_eq!(available.contains(&path), path.check_available().is_ok());
        }
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("f16c") {
            assert!(available.contains(&KernelPath::Avx2));
        }
    }

    #[test]
    fn kernel_names_parse() {
        assert_eq!(KernelPath::parse("scalar").unwrap(), KernelPath::Scalar);
        assert_eq!(KernelPath::parse(" AVX2 ").unwrap(), KernelPath::Avx2);
        assert_eq!(KernelPath::parse("avx512").unwrap(), KernelPath::Avx512);
        let err = KernelPath::parse("neon").unwrap_err().to_string();
        assert!(err.contains("'neon'") && err.contains("scalar") && err.contains("amx"), "{err}");
        assert_eq!(KernelPath::resolve(Some(KernelPath::Scalar)).unwrap(), KernelPath::Scalar);
    }

    #[test]
    fn an_unavailable_path_says_what_is_missing() {
        for path in KernelPath::ALL {
            if let Err(e) = path.check_available() {
                let text = e.to_string();
                assert!(text.contains(&format!("'{}'", path.name())) && text.contains(KERNEL_ENV), "{text}");
                assert_eq!(KernelPath::resolve(Some(path)).unwrap_err(), e);
            }
        }
    }
}
