//! The models the mixer blends with the LLM, each a fixed-size table over the chunk's token history.
//!
//! Memory is bounded by construction: every table is allocated once, at [`MixConfig`]'s size, and never
//! grows; the history is a ring of [`HISTORY`] tokens. Nothing here iterates a hash map: the tables are our
//! own direct-mapped arrays, indexed by a hash written out in full (FORMAT.md, *Mixer*).

// Index loops over the orders and models say "in this order", which is what the format specifies.
#![allow(clippy::needless_range_loop)]

use super::config::{MAX_ORDER, MixConfig};

/// Tokens of history kept (a ring): more than any 64 KiB chunk has, so within a chunk nothing is forgotten.
pub const HISTORY: usize = 1 << 16;
/// Followers remembered per n-gram context.
pub const FOLLOWERS: usize = 4;
/// A follower's count is halved (all of its context's, rounding down) when one would exceed this.
pub const COUNT_LIMIT: u16 = 255;
/// The match model verifies (and reports) at most this many tokens of a match.
pub const MAX_MATCH: u32 = 65_535;

/// The hash of a context: `h = SEED`, then for each token `t` from the most recent backwards
/// `h = (h ^ (t + 1)) × 0x9E3779B1`, rotated left by 13 (u32 arithmetic, wrapping).
pub const SEED: u32 = 0x811C_9DC5;

#[inline]
pub fn hash_step(h: u32, token: u32) -> u32 {
    (h ^ token.wrapping_add(1)).wrapping_mul(0x9E37_79B1).rotate_left(13)
}

/// The final mix of a context hash: its top `bits` select the slot, and the whole value (with bit 0 set,
/// so that 0 means "empty") is the slot's check.
#[inline]
pub fn finalize(h: u32) -> u32 {
    let h = (h ^ (h >> 16)).wrapping_mul(0x85EB_CA6B);
    h ^ (h >> 13)
}

impl Default for History {
    fn default() -> History {
        History::new()
    }
}

/// The chunk's tokens, newest last, in a ring of [`HISTORY`].
#[derive(Clone, Debug)]
pub struct History {
    ring: Vec<u32>,
    /// Tokens seen since the last reset (may exceed [`HISTORY`]; only the last `HISTORY` are kept).
    len: u64,
}

impl History {
    pub fn new() -> History {
        History { ring: vec![0; HISTORY], len: 0 }
    }

    /// A history that holds nothing (the mixer off): no allocation.
    pub fn empty() -> History {
        History { ring: Vec::new(), len: 0 }
    }

    pub fn reset(&mut self) {
        self.ring.fill(0);
        self.len = 0;
    }

    pub fn memory_bytes(&self) -> usize {
        self.ring.len() * std::mem::size_of::<u32>()
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn push(&mut self, token: u32) {
        self.ring[(self.len % HISTORY as u64) as usize] = token;
        self.len += 1;
    }

    /// The token at absolute position `pos` (which must be one of the last [`HISTORY`]).
    pub fn at(&self, pos: u64) -> u32 {
        debug_assert!(pos < self.len && self.len - pos <= HISTORY as u64);
        self.ring[(pos % HISTORY as u64) as usize]
    }

    /// Whether `pos` is still held.
    pub fn holds(&self, pos: u64) -> bool {
        pos < self.len && self.len - pos <= HISTORY as u64
    }

    /// `hashes[k]` = the hash of the last `k` tokens for `k` in `1..=n` (`n` at most the history's length,
    /// [`MAX_MATCH_MIN`](super::config::MAX_MATCH_MIN) at most); returns `n`.
    pub fn context_hashes(&self, n: usize, hashes: &mut [u32; 17]) -> usize {
        let n = n.min(self.len.min(16) as usize);
        let mut h = SEED;
        for (k, slot) in hashes.iter_mut().enumerate().take(n + 1).skip(1) {
            h = hash_step(h, self.at(self.len - k as u64));
            *slot = h;
        }
        n
    }
}

/// The match model: finds the most recent earlier occurrence of the last `match_min` tokens and predicts
/// the token that followed it, for as long as the prediction keeps coming true.
#[derive(Clone, Debug)]
pub struct MatchModel {
    min: usize,
    bits: u32,
    /// Slot = top `bits` of `finalize(hash of the last min tokens)`; value = the position just after
    /// that context's latest occurrence, plus one (0 = empty).
    table: Vec<u32>,
    /// Position of the predicted token in the history (the one after the matched context).
    ptr: u64,
    /// Length of the current match in tokens (0: no match).
    len: u32,
}

impl MatchModel {
    pub fn new(config: &MixConfig) -> MatchModel {
        let (min, bits) = (config.match_min as usize, config.table_bits as u32);
        let slots = if min == 0 { 0 } else { 1usize << bits };
        MatchModel { min, bits, table: vec![0; slots], ptr: 0, len: 0 }
    }

    pub fn reset(&mut self) {
        self.table.fill(0);
        self.ptr = 0;
        self.len = 0;
    }

    pub fn enabled(&self) -> bool {
        self.min > 0
    }

    pub fn memory_bytes(&self) -> usize {
        self.table.len() * std::mem::size_of::<u32>()
    }

    /// The predicted next token and the match length, if a match is running.
    pub fn predict(&self, history: &History) -> Option<(u32, u32)> {
        (self.len > 0 && history.holds(self.ptr)).then(|| (history.at(self.ptr), self.len))
    }

    /// Learns `token` (already pushed onto `history`); `hashes` are the context hashes after the push.
    pub fn update(&mut self, history: &History, hashes: &[u32; 17], n: usize) {
        if !self.enabled() {
            return;
        }
        let pos = history.len(); // the position the next token will take
        if self.len > 0 {
            if history.holds(self.ptr) && history.at(self.ptr) == history.at(pos - 1) {
                self.len = (self.len + 1).min(MAX_MATCH);
                self.ptr += 1;
            } else {
                self.len = 0;
            }
        }
        if n < self.min {
            return;
        }
        let slot = (finalize(hashes[self.min]) >> (32 - self.bits)) as usize;
        if self.len == 0 && self.table[slot] != 0 {
            let cand = self.table[slot] as u64 - 1;
            // Verify backwards: the tokens before `cand` against the tokens before `pos`.
            let mut l = 0u32;
            while l < MAX_MATCH
                && (l as u64) < cand
                && history.holds(cand - 1 - l as u64)
                && history.at(cand - 1 - l as u64) == history.at(pos - 1 - l as u64)
            {
                l += 1;
            }
            if l as usize >= self.min {
                self.len = l;
                self.ptr = cand;
            }
        }
        // Positions fit u32 within a chunk; beyond 2^32 - 1 tokens the slot simply stops being refreshed.
        if pos < u32::MAX as u64 {
            self.table[slot] = pos as u32 + 1;
        }
    }
}

/// One n-gram context's followers: up to [`FOLLOWERS`] tokens with counts (count 0 = unused entry).
#[derive(Clone, Copy, Debug, Default)]
pub struct Slot {
    /// `finalize(hash) | 1` of the context that owns the slot (0 = empty).
    check: u32,
    tokens: [u32; FOLLOWERS],
    counts: [u16; FOLLOWERS],
}

impl Slot {
    /// The followers with a nonzero count, in entry order, and their total count.
    pub fn followers(&self) -> impl Iterator<Item = (u32, u16)> + '_ {
        self.tokens.iter().copied().zip(self.counts.iter().copied()).filter(|&(_, c)| c > 0)
    }

    pub fn total(&self) -> u32 {
        self.counts.iter().map(|&c| c as u32).sum()
    }
}

/// Token n-gram models of orders 1..=6, each a direct-mapped table of `2^table_bits` [`Slot`]s.
#[derive(Clone, Debug)]
pub struct NGrams {
    bits: u32,
    /// `tables[k - 1]`: order `k` (empty when the order is off).
    tables: Vec<Vec<Slot>>,
}

impl NGrams {
    pub fn new(config: &MixConfig) -> NGrams {
        let tables =
            (1..=MAX_ORDER)
                .map(|k| {
                    if config.has_order(k) {
                        vec![Slot::default(); 1 << config.table_bits]
                    } else {
                        Vec::new()
                    }
                })
                .collect();
        NGrams { bits: config.table_bits as u32, tables }
    }

    pub fn reset(&mut self) {
        for t in &mut self.tables {
            t.fill(Slot::default());
        }
    }

    pub fn memory_bytes(&self) -> usize {
        self.tables.iter().map(|t| t.len() * std::mem::size_of::<Slot>()).sum()
    }

    fn locate(&self, hash: u32) -> (usize, u32) {
        let f = finalize(hash);
        ((f >> (32 - self.bits)) as usize, f | 1)
    }

    /// The order-`k` context's slot, if the order is on, the history holds `k` tokens and the slot is that
    /// context's (not another's that shares it).
    pub fn lookup(&self, k: usize, hashes: &[u32; 17], n: usize) -> Option<&Slot> {
        let table = &self.tables[k - 1];
        if table.is_empty() || n < k {
            return None;
        }
        let (i, check) = self.locate(hashes[k]);
        (table[i].check == check).then(|| &table[i])
    }

    /// Counts `token` as a follower of every order's context (`hashes` from before the token was pushed).
    pub fn update(&mut self, hashes: &[u32; 17], n: usize, token: u32) {
        for k in 1..=MAX_ORDER.min(n) {
            if self.tables[k - 1].is_empty() {
                continue;
            }
            let (i, check) = self.locate(hashes[k]);
            let slot = &mut self.tables[k - 1][i];
            if slot.check != check {
                // A new context takes the slot: the older one is forgotten.
                *slot = Slot { check, tokens: [token, 0, 0, 0], counts: [1, 0, 0, 0] };
                continue;
            }
            if let Some(j) = (0..FOLLOWERS).find(|&j| slot.counts[j] > 0 && slot.tokens[j] == token) {
                if slot.counts[j] == COUNT_LIMIT {
                    for c in &mut slot.counts {
                        *c >>= 1;
                    }
                }
                slot.counts[j] += 1;
            } else {
                // Replace the first entry with the smallest count (an unused one if any).
                let mut j = 0;
                for e in 1..FOLLOWERS {
                    if slot.counts[e] < slot.counts[j] {
                        j = e;
                    }
                }
                slot.tokens[j] = token;
                slot.counts[j] = 1;
            }
        }
    }
}
