//! Drafts for speculative decoding: guesses of the next tokens of a chunk from its own history.
//!
//! The decoder must produce each token before it can ask the model for the next one, one engine call
//! per token. But the engine gives a position the same logits whether it is computed alone or in a
//! run of positions (the bitwise contract), so a decoder that guesses the next `k` tokens can feed its
//! last token and the guesses in one call: row `j` of the result is the exact row for position
//! `n + j` as long as guesses `1..=j` were right, and the range decoder confirms or rejects each guess
//! as it decodes. Nothing in the archive depends on a draft; a wrong one costs only the rows computed
//! for nothing.
//!
//! The guess is an LZP-style match: the tokens that followed the last occurrence of the current
//! context (the last [`LONG`] tokens, else the last [`SHORT`]), checked token by token, so a hash
//! collision never drafts. Text repeats itself (names, markup, phrases), and on such runs the draft is
//! long and right; elsewhere it is short or absent.

/// Context lengths of the two match tables: a long match is tried first, a short one after.
pub const LONG: usize = 4;
pub const SHORT: usize = 2;
/// The most tokens one draft guesses.
pub const MAX_DRAFT: usize = 8;
/// The draft length a lane starts with.
const START_DRAFT: usize = 4;
/// Slots of each match table (`u32` positions): 2 x 256 KiB per lane.
const TABLE_BITS: u32 = 16;

/// The drafter of one lane: where each recent context was last followed, and how long a draft has
/// recently paid off.
#[derive(Debug, Clone)]
pub struct Drafter {
    /// `long[h]` / `short[h]`: the position of the token that followed the last context with hash `h`
    /// (0: none; position 0 has no context, so it is never a follower).
    long: Vec<u32>,
    short: Vec<u32>,
    /// Tokens of the history already entered into the tables.
    indexed: usize,
    /// The longest draft offered next: doubles when a draft is taken whole, shrinks to one more than
    /// the guesses that were right when it is not.
    limit: usize,
}

impl Default for Drafter {
    fn default() -> Self {
        Self::new()
    }
}

impl Drafter {
    pub fn new() -> Self {
        let slots = 1usize << TABLE_BITS;
        Drafter { long: vec![0; slots], short: vec![0; slots], indexed: 0, limit: START_DRAFT }
    }

    /// Guesses up to `most` tokens that follow `history` (at most [`MAX_DRAFT`] and the lane's current
    /// limit), into `draft` (cleared first). Enters the tokens of `history` it has not seen yet into
    /// the tables first; `history` must only grow between calls (one chunk's decoded tokens).
    pub fn draft(&mut self, history: &[u32], most: usize, draft: &mut Vec<u32>) {
        self.learn(history);
        draft.clear();
        let most = most.min(self.limit).min(MAX_DRAFT);
        if most == 0 {
            return;
        }
        let n = history.len();
        for (order, table) in [(LONG, &self.long), (SHORT, &self.short)] {
            if n < order {
                continue;
            }
            let context = &history[n - order..];
            let p = table[slot(context)] as usize;
            // A follower at `p` had its context just before it; a collision is refused here.
            if p >= order && p < n && history[p - order..p] == *context {
                draft.extend_from_slice(&history[p..(p + most).min(n)]);
                return;
            }
        }
    }

    /// Adapts the draft length: `accepted` of the `drafted` guesses were right.
    pub fn record(&mut self, drafted: usize, accepted: usize) {
        if drafted == 0 {
            return;
        }
        self.limit = if accepted == drafted { (self.limit * 2).min(MAX_DRAFT) } else { accepted + 1 };
    }

    /// Enters every position of `history` not yet indexed as the follower of its contexts.
    fn learn(&mut self, history: &[u32]) {
        debug_assert!(history.len() >= self.indexed, "a lane's history only grows");
        for p in self.indexed.max(1)..history.len() {
            if p >= LONG {
                self.long[slot(&history[p - LONG..p])] = p as u32;
            }
            if p >= SHORT {
                self.short[slot(&history[p - SHORT..p])] = p as u32;
            }
        }
        self.indexed = history.len();
    }
}

/// The table slot of a context: a multiplicative hash of its tokens.
fn slot(context: &[u32]) -> usize {
    let mut h: u64 = 0x9E37_79B9_7F4A_7C15;
    for &t in context {
        h = (h ^ t as u64).wrapping_mul(0x0100_0000_01B3).rotate_left(29);
    }
    (h.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - TABLE_BITS)) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_phrase_is_drafted_from_its_last_occurrence() {
        let mut d = Drafter::new();
        let mut out = Vec::new();
        // "1 2 3 4 5 6 7 | 9 2 3 4 5": the context 2 3 4 5 was followed by 6 7.
        let history = [1, 2, 3, 4, 5, 6, 7, 9, 2, 3, 4, 5];
        d.draft(&history, 8, &mut out);
        assert_eq!(out, [6, 7, 9, 2], "limited to the start length of 4");
        d.record(4, 4);
        d.draft(&history, 8, &mut out);
        assert_eq!(out, [6, 7, 9, 2, 3, 4, 5], "the limit doubled; the draft stops at the history's end");
        d.draft(&history, 2, &mut out);
        assert_eq!(out, [6, 7], "the caller's bound");
    }

    #[test]
    fn a_short_context_is_the_fallback_and_no_match_drafts_nothing() {
        let mut d = Drafter::new();
        let mut out = Vec::new();
        d.draft(&[10, 11, 12, 13, 20, 12, 13], 8, &mut out);
        assert_eq!(out, [20, 12, 13], "only the last two tokens match");
        d.draft(&[10, 11, 12, 13, 20, 12, 13, 30], 8, &mut out);
        assert!(out.is_empty(), "13 30 never occurred before");
        Drafter::new().draft(&[], 8, &mut out);
        assert!(out.is_empty(), "no history, no draft");
    }

    #[test]
    fn a_rejected_draft_shrinks_the_next_one() {
        let mut d = Drafter::new();
        d.record(4, 1);
        let mut out = Vec::new();
        d.draft(&[1, 2, 3, 4, 5, 6, 7, 1, 2, 3, 4], 8, &mut out);
        assert_eq!(out, [5, 6], "one more than the guesses that were right");
        d.record(2, 0);
        d.draft(&[1, 2, 3, 4, 5, 6, 7, 1, 2, 3, 4], 8, &mut out);
        assert_eq!(out, [5]);
        d.record(0, 0);
        d.draft(&[1, 2, 3, 4, 5, 6, 7, 1, 2, 3, 4], 8, &mut out);
        assert_eq!(out, [5], "nothing drafted, nothing learned");
    }

    #[test]
    fn hash_collisions_never_draft() {
        // Fill the short table with every pair ending in 7, then ask for contexts that were never seen.
        let mut d = Drafter::new();
        let mut history: Vec<u32> = (0..5000u32).flat_map(|i| [i, 7]).collect();
        history.extend([123_456, 654_321]);
        let mut out = Vec::new();
        d.draft(&history, 8, &mut out);
        assert!(out.is_empty(), "{out:?}");
    }
}
