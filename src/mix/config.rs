//! The mixer's configuration: every number that shapes a mixed table, as the archive header records it.
//!
//! An archive never depends on a default: the encoder writes [`MixConfig::encode`]'s bytes and the decoder
//! rebuilds the very same mixer from them. The bytes come from a file, so [`MixConfig::decode`] checks every
//! field before a mixer is built from it (a hostile header must not ask for gigabytes of tables).
//!
//! ```text
//! byte  field        meaning                                         valid (mixer on)  mixer off
//! 0     version      layout and algorithm of the mixer               1                 1
//! 1     match_min    match model: tokens a match needs (0 = off)     0..=16            0
//! 2     orders       n-gram orders in use, bit k-1 = order k         bits 0..=5        0
//! 3     table_bits   log2 of the slots of each hashed table          10..=18           0
//! 4     rate_shift   weight learning rate 2^-rate_shift              1..=15            0
//! 5     contexts     weight-set selectors, bit 0..=3 (see below)     bits 0..=3        0
//! 6     init_shift   initial weight of each model, 2^-init_shift     3..=15            0
//! 7     escape       n-gram escape count, left to the LLM            0..=64            0
//! ```
//!
//! The weight-set selectors (FORMAT.md, *Mixer*): bit 0 the match length bucket, bit 1 the LLM's top
//! probability bucket, bit 2 the longest n-gram order with data, bit 3 that order's count bucket.

/// Version of the mixer's algorithm and byte layout ([`MixConfig::encode`]'s byte 0).
pub const MIX_VERSION: u8 = 1;

/// Longest context the match model may require, in tokens.
pub const MAX_MATCH_MIN: u8 = 16;
/// Highest n-gram order.
pub const MAX_ORDER: usize = 6;
/// Bounds of `table_bits`: 2^18 slots x 28 bytes x 6 orders is the most a header can ask for (44 MiB).
pub const MIN_TABLE_BITS: u8 = 10;
pub const MAX_TABLE_BITS: u8 = 18;
/// Bounds of the two shifts; seven models of initial weight `2^-3` leave the LLM `1/8`, the least it starts with.
pub const MAX_SHIFT: u8 = 15;
pub const MIN_INIT_SHIFT: u8 = 3;
/// Largest n-gram escape count.
pub const MAX_ESCAPE: u8 = 64;
/// The selector bits [`MixConfig::contexts`] may set.
pub const CONTEXT_MASK: u8 = 0b1111;
pub const CTX_MATCH: u8 = 1;
pub const CTX_CONFIDENCE: u8 = 2;
pub const CTX_ORDER: u8 = 4;
pub const CTX_COUNT: u8 = 8;

/// A mixer configuration that failed validation: which field, what it held, what is allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MixError {
    #[error("mixer configuration is {seen} bytes, expected {expected}; the archive header is damaged")]
    Length { seen: usize, expected: usize },
    #[error(
        "mixer version {0} is not supported (this build knows version {MIX_VERSION}); \
         use the llmzip release that wrote the archive"
    )]
    Version(u8),
    #[error("mixer field {field} is {value}, expected {expected}; the archive header is damaged")]
    Field { field: &'static str, value: u8, expected: &'static str },
}

/// Everything that shapes the mixer's output; recorded in the archive header as [`MixConfig::ENCODED_LEN`] bytes.
///
/// Invariant (every value [`MixConfig::decode`] returns and every constant here): either all of
/// `match_min`, `orders`, `table_bits`, `rate_shift`, `contexts`, `init_shift`, `escape` are 0 (the mixer is off), or
/// at least one model is on and every field lies in the range of the table above.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MixConfig {
    /// Tokens of context a match needs before the match model predicts (0: no match model).
    pub match_min: u8,
    /// Bit `k - 1` set: the order-`k` token n-gram model is on (orders 1..=6).
    pub orders: u8,
    /// Each hashed table (the match model's and each n-gram order's) has `2^table_bits` slots.
    pub table_bits: u8,
    /// The weights learn at rate `2^-rate_shift`.
    pub rate_shift: u8,
    /// Which features select the weight set ([`CTX_MATCH`], [`CTX_CONFIDENCE`], [`CTX_ORDER`], [`CTX_COUNT`]).
    pub contexts: u8,
    /// Each model other than the LLM starts with weight `2^-init_shift` (the LLM with the rest).
    pub init_shift: u8,
    /// An n-gram context with total count `T` gives follower `t` the probability `c_t / (T + escape)` and
    /// leaves `escape / (T + escape)` of its weight to the LLM: a context seen once is trusted less.
    pub escape: u8,
}

impl MixConfig {
    /// The mixer disabled: every table is exactly `quant::table_from`'s.
    pub const OFF: MixConfig = MixConfig {
        match_min: 0,
        orders: 0,
        table_bits: 0,
        rate_shift: 0,
        contexts: 0,
        init_shift: 0,
        escape: 0,
    };

    /// Size of the serialized form.
    pub const ENCODED_LEN: usize = 8;

    /// The default, chosen by measurement with `examples/mix_sim.rs` on dumped LLM probabilities of
    /// alice29.txt and enwik6 (README, *Mixer*).
    pub fn recommended() -> MixConfig {
        MixConfig {
            match_min: 3,
            orders: 0b11_1111,
            table_bits: 15,
            rate_shift: 5,
            contexts: CTX_CONFIDENCE | CTX_ORDER,
            init_shift: 5,
            escape: 4,
        }
    }

    /// True when no model is blended in.
    pub fn is_off(&self) -> bool {
        self.match_min == 0 && self.orders == 0
    }

    /// The header bytes (layout in the module docs).
    pub fn encode(&self) -> [u8; Self::ENCODED_LEN] {
        [
            MIX_VERSION,
            self.match_min,
            self.orders,
            self.table_bits,
            self.rate_shift,
            self.contexts,
            self.init_shift,
            self.escape,
        ]
    }

    /// Parses and validates header bytes: the length, the version, then every field in byte order.
    pub fn decode(bytes: &[u8]) -> Result<MixConfig, MixError> {
        if bytes.len() != Self::ENCODED_LEN {
            return Err(MixError::Length { seen: bytes.len(), expected: Self::ENCODED_LEN });
        }
        if bytes[0] != MIX_VERSION {
            return Err(MixError::Version(bytes[0]));
        }
        let config = MixConfig {
            match_min: bytes[1],
            orders: bytes[2],
            table_bits: bytes[3],
            rate_shift: bytes[4],
            contexts: bytes[5],
            init_shift: bytes[6],
            escape: bytes[7],
        };
        let field = |field, value, expected| Err(MixError::Field { field, value, expected });
        if config.is_off() {
            for (name, value) in [
                ("table_bits", bytes[3]),
                ("rate_shift", bytes[4]),
                ("contexts", bytes[5]),
                ("init_shift", bytes[6]),
                ("escape", bytes[7]),
            ] {
                if value != 0 {
                    return field(name, value, "0 when no model is on");
                }
            }
        } else {
            if config.match_min > MAX_MATCH_MIN {
                return field("match_min", config.match_min, "0..=16");
            }
            if config.orders >> MAX_ORDER != 0 {
                return field("orders", config.orders, "bits 0..=5 only");
            }
            if !(MIN_TABLE_BITS..=MAX_TABLE_BITS).contains(&config.table_bits) {
                return field("table_bits", config.table_bits, "10..=18");
            }
            if !(1..=MAX_SHIFT).contains(&config.rate_shift) {
                return field("rate_shift", config.rate_shift, "1..=15");
            }
            if config.contexts & !CONTEXT_MASK != 0 {
                return field("contexts", config.contexts, "bits 0..=3 only");
            }
            if !(MIN_INIT_SHIFT..=MAX_SHIFT).contains(&config.init_shift) {
                return field("init_shift", config.init_shift, "3..=15");
            }
            if config.escape > MAX_ESCAPE {
                return field("escape", config.escape, "0..=64");
            }
        }
        Ok(config)
    }

    /// Whether the order-`k` model is on (`k` in 1..=6).
    pub fn has_order(&self, k: usize) -> bool {
        (1..=MAX_ORDER).contains(&k) && self.orders >> (k - 1) & 1 == 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_decode_round_trip() {
        for c in [MixConfig::OFF, MixConfig::recommended()] {
            assert_eq!(MixConfig::decode(&c.encode()), Ok(c));
        }
        let mut c = MixConfig::recommended();
        for m in 0..=MAX_MATCH_MIN {
            for orders in [0u8, 1, 0b10_0000, 0b11_1111] {
                if m == 0 && orders == 0 {
                    continue;
                }
                c.match_min = m;
                c.orders = orders;
                c.table_bits = MIN_TABLE_BITS + m % 9;
                c.contexts = m & CONTEXT_MASK;
                assert_eq!(MixConfig::decode(&c.encode()), Ok(c));
            }
        }
        assert_eq!(MixConfig::OFF.encode(), [MIX_VERSION, 0, 0, 0, 0, 0, 0, 0]);
        assert!(MixConfig::OFF.is_off() && !MixConfig::recommended().is_off());
    }

    #[test]
    fn every_invalid_field_is_rejected() {
        let good = MixConfig::recommended().encode();
        assert_eq!(MixConfig::decode(&good[..7]), Err(MixError::Length { seen: 7, expected: 8 }));
        assert_eq!(
            MixConfig::decode(&[good.as_slice(), &[0]].concat()),
            Err(MixError::Length { seen: 9, expected: 8 })
        );
        assert_eq!(MixConfig::decode(&[]), Err(MixError::Length { seen: 0, expected: 8 }));
        let cases: &[(usize, u8, &str)] = &[
            (0, 0, "version"),
            (0, 2, "version"),
            (1, 17, "match_min"),
            (1, 255, "match_min"),
            (2, 0b100_0000, "orders"),
            (2, 0x80, "orders"),
            (3, 9, "table_bits"),
            (3, 19, "table_bits"),
            (3, 0, "table_bits"),
            (4, 0, "rate_shift"),
            (4, 16, "rate_shift"),
            (5, 0b1_0000, "contexts"),
            (6, 0, "init_shift"),
            (6, 2, "init_shift"),
            (6, 16, "init_shift"),
            (7, 65, "escape"),
            (7, 255, "escape"),
        ];
        for &(byte, value, name) in cases {
            let mut b = good;
            b[byte] = value;
            match MixConfig::decode(&b) {
                Err(MixError::Version(v)) => assert!(name == "version" && v == value),
                Err(MixError::Field { field, value: v, .. }) => {
                    assert_eq!((field, v), (name, value), "byte {byte}")
                }
                other => panic!("byte {byte} = {value}: {other:?}"),
            }
        }
        // Off, but with a leftover field: not canonical, so rejected.
        for byte in 3..=7 {
            let mut b = MixConfig::OFF.encode();
            b[byte] = 1;
            assert!(MixConfig::decode(&b).is_err(), "off with byte {byte} set");
        }
        // Every error reads as one line.
        let e = MixConfig::decode(&[1, 0, 0, 5, 0, 0, 0, 0]).unwrap_err().to_string();
        assert!(e.contains("table_bits") && !e.contains('\n'), "{e}");
    }
}
