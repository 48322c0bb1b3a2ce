//! The probability dumps `examples/dump_probs.rs` writes, as the simulators read them: one line per
//! coded token, `chunk token p_y top_id p_top` (the chunk index, the token, the LLM's probability of it,
//! the LLM's top token and its probability), in coding order, optionally followed by `s:` and the sums
//! `Σ_t p(t)^α` for [`ALPHAS`] and by `token:p` pairs (the LLM's probability of each token the
//! recommended mixer blends in there).

// Each simulator reads the fields it needs; the others go unused there.
#![allow(dead_code)]

/// The exponents of the `s:` sums, in order (as `examples/dump_probs.rs` writes them).
pub const ALPHAS: [f64; 6] = [0.85, 0.9, 0.95, 1.05, 1.1, 1.15];

/// The SmolLM2 vocabulary the dumps were made with.
pub const VOCAB: usize = 49_152;

pub struct CodedToken {
    pub chunk: u32,
    pub token: u32,
    pub p_y: f64,
    pub top: u32,
    pub p_top: f64,
    /// `Σ_t p(t)^α` for each of [`ALPHAS`] (empty in dumps without them).
    pub power_sums: Vec<f64>,
    /// The `token:p` pairs, in the dump's order (empty in dumps without them).
    pub candidates: Vec<(u32, f64)>,
}

/// The mixer's LLM-confidence bucket of a top probability: below 0.3, 0.6, 0.9, or above (the
/// library's `mix` selects weight sets by the same thresholds).
pub fn confidence_bucket(p_top: f64) -> usize {
    [0.3, 0.6, 0.9].iter().filter(|&&x| p_top >= x).count()
}

/// Every row of the dump at `path`; panics with the path and the line on anything else.
pub fn read(path: &str) -> Vec<CodedToken> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            assert!(f.len() >= 5, "{path}: line {l:?} is not `chunk token p_y top_id p_top`");
            let bad = |what: &str| -> ! { panic!("{path}: line {l:?}: bad {what}") };
            CodedToken {
                chunk: f[0].parse().unwrap_or_else(|_| bad("chunk")),
                token: f[1].parse().unwrap_or_else(|_| bad("token")),
                p_y: f[2].parse().unwrap_or_else(|_| bad("p_y")),
                top: f[3].parse().unwrap_or_else(|_| bad("top_id")),
                p_top: f[4].parse().unwrap_or_else(|_| bad("p_top")),
                power_sums: f[5..]
                    .iter()
                    .find_map(|x| x.strip_prefix("s:"))
                    .map(|sums| {
                        sums.split(',').map(|v| v.parse().unwrap_or_else(|_| bad("power sum"))).collect()
                    })
                    .unwrap_or_default(),
                candidates: f[5..]
                    .iter()
                    .filter(|x| !x.starts_with("s:"))
                    .map(|pair| {
                        let (t, p) = pair.split_once(':').unwrap_or_else(|| bad("token:p pair"));
                        (
                            t.parse().unwrap_or_else(|_| bad("pair's token")),
                            p.parse().unwrap_or_else(|_| bad("pair's p")),
                        )
                    })
                    .collect(),
            }
        })
        .collect()
}
