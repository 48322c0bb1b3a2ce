//! Recognising data the model cannot shrink before the model runs: already-compressed or encrypted bytes
//! are stored at once instead of costing the model's full price (about 300 bytes a second on a small
//! machine) only to be stored afterwards.
//!
//! The estimate is the chunk's order-0 entropy (the size an ideal coder of independent bytes would reach),
//! with the Miller-Madow correction for the bias of a small sample, computed in integers so the decision,
//! and with it the archive, is the same on every machine. Only near-uniform byte distributions reach the
//! threshold: text in any script, source code and most binary formats stay well below it (UTF-8 text
//! cannot exceed about 7 bits per byte), while compressed, encrypted and random data sit just under 8.

/// Bits per byte (in tenths) from which a chunk is stored without asking the model.
const STORE_FROM_TENTHS: u128 = 79;

/// Fractional bits of the fixed-point logarithms.
const FRAC: u32 = 32;

/// `log2(x)` in fixed point with [`FRAC`] fractional bits (truncated), for `x >= 1`, by repeated squaring of
/// the mantissa: integer arithmetic only.
fn log2_fixed(x: u64) -> u128 {
    debug_assert!(x >= 1);
    let int = x.ilog2();
    // The mantissa x / 2^int in [1, 2), with 62 fractional bits; squares stay below 2^126.
    let one = 1u128 << 62;
    let mut m: u128 = if int <= 62 { (x as u128) << (62 - int) } else { (x as u128) >> (int - 62) };
    let mut frac = 0u128;
    for bit in (0..FRAC).rev() {
        m = (m * m) >> 62;
        if m >= 2 * one {
            frac |= 1 << bit;
            m >>= 1;
        }
    }
    ((int as u128) << FRAC) | frac
}

/// The order-0 code length of `bytes` in bits, with the Miller-Madow correction `(K - 1) / (2 ln 2)` for
/// `K` distinct byte values, in fixed point with [`FRAC`] fractional bits.
fn order0_bits_fixed(bytes: &[u8]) -> u128 {
    let mut counts = [0u64; 256];
    for &b in bytes {
        counts[b as usize] += 1;
    }
    let n = bytes.len() as u64;
    if n == 0 {
        return 0;
    }
    let log_n = log2_fixed(n);
    let mut bits = 0u128;
    let mut distinct = 0u128;
    for &c in counts.iter().filter(|&&c| c > 0) {
        distinct += 1;
        bits += c as u128 * (log_n - log2_fixed(c));
    }
    // 1 / (2 ln 2) = 0.72134752..., times 2^32.
    bits + (distinct - 1) * 3_098_164_010
}

/// Whether `bytes` look incompressible (an order-0 estimate of at least 7.9 bits per byte), so the chunk
/// is stored without running the model.
pub(super) fn looks_incompressible(bytes: &[u8]) -> bool {
    !bytes.is_empty() && 10 * order0_bits_fixed(bytes) >= (STORE_FROM_TENTHS * bytes.len() as u128) << FRAC
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random(len: usize, mut seed: u64) -> Vec<u8> {
        (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                (seed >> 24) as u8
            })
            .collect()
    }

    #[test]
    fn fixed_point_log2_is_accurate() {
        for x in [1u64, 2, 3, 5, 255, 256, 1000, 65_537, 1 << 24, u64::MAX] {
            let got = log2_fixed(x) as f64 / (1u64 << FRAC) as f64;
            assert!((got - (x as f64).log2()).abs() < 1e-8, "log2({x}) = {got}");
        }
    }

    #[test]
    fn random_data_is_recognised_at_every_size_that_costs_time() {
        for (len, seed) in [(1000, 1), (2000, 2), (4096, 3), (30_000, 4), (65_536, 5), (1 << 20, 6)] {
            assert!(looks_incompressible(&random(len, seed)), "{len} random bytes");
        }
    }

    #[test]
    fn text_and_structured_data_go_to_the_model() {
        let english = b"Alice was beginning to get very tired of sitting by her sister on the bank, and of \
                        having nothing to do: once or twice she had peeped into the book her sister was reading"
            .repeat(40);
        assert!(!looks_incompressible(&english));
        // Random CJK characters: high-entropy UTF-8, still far below the threshold.
        let cjk: String = random(30_000, 9)
            .chunks(2)
            .map(|p| char::from_u32(0x4e00 + (u32::from(p[0]) << 6 | u32::from(p[1] & 63)) % 0x5000).unwrap())
            .collect();
        assert!(!looks_incompressible(cjk.as_bytes()));
        // Hex digits of random data: 4 bits per byte.
        let hex: Vec<u8> = random(20_000, 7).iter().map(|b| b"0123456789abcdef"[(b & 15) as usize]).collect();
        assert!(!looks_incompressible(&hex));
        let all_bytes: Vec<u8> = (0..=255u8).collect();
        assert!(looks_incompressible(&all_bytes), "every byte value once: nothing for a model to learn");
        assert!(!looks_incompressible(&[]));
    }
}
