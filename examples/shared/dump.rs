//! The probability dumps `examples/dump_probs.rs` writes, as the simulators read them: one line per
//! coded token, `chunk token p_y top_id p_top` (the chunk index, the token, the LLM's probability of it,
//! the LLM's top token and its probability), in coding order.

// Each simulator reads the fields it needs; the others go unused there.
#![allow(dead_code)]

/// The SmolLM2 vocabulary the dumps were made with.
pub const VOCAB: usize = 49_152;

pub struct Row {
    pub chunk: u32,
    pub token: u32,
    pub p_y: f64,
    pub top: u32,
    pub p_top: f64,
}

/// Every row of the dump at `path`; panics with the path and the line on anything else.
pub fn read(path: &str) -> Vec<Row> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            assert!(f.len() >= 5, "{path}: line {l:?} is not `chunk token p_y top_id p_top`");
            let bad = |what: &str| -> ! { panic!("{path}: line {l:?}: bad {what}") };
            Row {
                chunk: f[0].parse().unwrap_or_else(|_| bad("chunk")),
                token: f[1].parse().unwrap_or_else(|_| bad("token")),
                p_y: f[2].parse().unwrap_or_else(|_| bad("p_y")),
                top: f[3].parse().unwrap_or_else(|_| bad("top_id")),
                p_top: f[4].parse().unwrap_or_else(|_| bad("p_top")),
            }
        })
        .collect()
}
