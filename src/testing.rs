//! Test support shared by the unit tests, the integration tests, the benches and the synthetic model
//! writer (`engine::synthetic`): not part of the API.
//!
//! One pseudo-random generator, [`SplitMix64`], so that no test carries its own. Its stream for a seed
//! is fixed forever: the synthetic model's weights come from it, and with them the pinned logit hashes
//! and the golden archives made with that model. Tests may draw from it however they like, but the
//! generator itself must never change.

/// splitmix64 (Steele, Lea and Flood, "Fast splittable pseudorandom number generators", 2014): a
/// 64-bit counter stepped by the golden ratio and put through a fixed mixing function. Tiny, fast, well
/// mixed, and reproducible on every platform; not for anything that needs unpredictability.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// The stream of `seed`.
    pub const fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// The next 64 bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// The high 32 bits of the next 64.
    pub fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }

    /// A value below `n` (`n > 0`), by remainder: biased by at most `n / 2^64`, which no test sees.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Uniform in [-1, 1), from the top 24 bits of the next 64 (so every value is exactly an f32).
    pub fn next_f32(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 / (1u32 << 23) as f32) - 1.0
    }

    /// The next `len` bytes: each 64 bits little-endian, the last ones cut to fit.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            out.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        out.truncate(len);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The stream is pinned: the first outputs of seed 0 are splitmix64's published ones (the reference
    /// C code of Vigna's `splitmix64.c`), and nothing that builds test models or data may change them.
    #[test]
    fn the_stream_is_splitmix64() {
        let mut r = SplitMix64::new(0);
        assert_eq!(r.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(r.next_u64(), 0x6E78_9E6A_A1B9_65F4);
        assert_eq!(r.next_u64(), 0x06C4_5D18_8009_454F);
        let mut r = SplitMix64::new(0);
        let first = r.clone().next_u64();
        assert_eq!(r.bytes(11)[..8], first.to_le_bytes());
    }
}
