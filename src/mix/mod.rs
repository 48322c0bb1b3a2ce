//! The mixer: blends the LLM's distribution with cheap models that see the whole chunk.
//!
//! The LLM sees at most its window; the chunk's own repetitions (names, phrases, markup) are beyond it.
//! A match model and token n-gram models ([`models`]) remember the chunk's tokens, and a linear mixture in
//! the probability domain blends them in:
//!
//! ```text
//! p(t) = w_llm × p_llm(t) + Σ_k w_k × q_k(t)      (Σ over the models with a prediction, weights sum to 1)
//! ```
//!
//! Linear mixing fits sparse models: each `q_k` puts its mass on a few tokens, while the LLM keeps mass on all
//! 49,152, so the table is the LLM's table scaled by `w_llm` plus a short list of additions ([`MixPlan`]).
//! The weights come from a small set selected by context (match length, the LLM's top probability, the
//! longest n-gram order with data and its count) and learn online, by an EM step of rate `2^-rate_shift`.
//!
//! Determinism: everything is integer or IEEE f64 `+ - * /` in a fixed order (no fused multiply-add, no libm),
//! the tables are our own arrays (no hash map iteration), and the state depends only on the chunk's tokens
//! so far: both sides call [`Mixer::plan`] then [`Mixer::update`] per position, the encoder before its tables
//! are built (in parallel, by [`mixed_table`]) and the decoder before each token is decoded. FORMAT.md,
//! *Mixer*, specifies all of it.

// Index loops over the models say "in this order", which is what the format specifies.
#![allow(clippy::needless_range_loop)]

pub mod config;
pub mod models;

pub use config::{MixConfig, MixError};

use crate::quant::{self, FreqTable, Probabilities};
use config::{CTX_CONFIDENCE, CTX_COUNT, CTX_MATCH, CTX_ORDER, MAX_ORDER};
use models::{History, MatchModel, NGrams};

/// Models in a weight set: the LLM, the match model, orders 1..=6.
const MODELS: usize = 2 + MAX_ORDER;
const LLM: usize = 0;
const MATCH: usize = 1;

/// Bucket counts of each weight-set selector.
const MATCH_BUCKETS: usize = 6;
const CONFIDENCE_BUCKETS: usize = 4;
const ORDER_BUCKETS: usize = MAX_ORDER + 1;
const COUNT_BUCKETS: usize = 3;
/// Weight sets when every selector is on.
const MAX_SETS: usize = MATCH_BUCKETS * CONFIDENCE_BUCKETS * ORDER_BUCKETS * COUNT_BUCKETS;

/// No weight falls below this after an update, so a model that was wrong for a while can come back.
const WEIGHT_FLOOR: f64 = 1.0 / 4096.0;

/// The match length bucket: none, 1-7, 8-11, 12-15, 16-31, 32 or more tokens.
fn match_bucket(len: u32) -> usize {
    match len {
        0 => 0,
        1..=7 => 1,
        8..=11 => 2,
        12..=15 => 3,
        16..=31 => 4,
        _ => 5,
    }
}

/// The LLM confidence bucket from its top probability `1 / llm_sum`: below 0.3, 0.6, 0.9, or above.
fn confidence_bucket(llm_sum: f64) -> usize {
    // p_top < x  <=>  llm_sum > 1/x; written with multiplications so no division rounds.
    if llm_sum * 0.3 > 1.0 {
        0
    } else if llm_sum * 0.6 > 1.0 {
        1
    } else if llm_sum * 0.9 > 1.0 {
        2
    } else {
        3
    }
}

/// The count bucket of the longest order's context: total count 1, 2-3, or 4 and more.
fn count_bucket(total: u32) -> usize {
    match total {
        0 | 1 => 0,
        2 | 3 => 1,
        _ => 2,
    }
}

/// What the mixer blends in at one position: the LLM's share of the table and a short list of additions.
///
/// Invariant (after [`Mixer::plan`]): `llm_counts + Σ extra counts == 2^P - V` (`P` the mixer's precision,
/// the tables'), every extra symbol is below `V` and appears once.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MixPlan {
    /// `2^P - V`: the counts above the floor of one per symbol (0 before the first plan).
    avail: u32,
    /// The LLM's counts of `avail`.
    llm_counts: u32,
    /// `(token, counts)` added on top of the LLM's scaled table, in first-prediction order.
    extra: Vec<(u32, u32)>,
    /// For the update: the weight set, the normalized weights of the models that predicted (0 for the
    /// others), and each model's predictions `(model, token, q)`.
    set: u32,
    weights: [f64; MODELS],
    /// Each model's escape: the share of its weight it leaves to the LLM's distribution.
    escape: [f64; MODELS],
    predictions: Vec<(u8, u32, f64)>,
}

impl MixPlan {
    pub fn new() -> MixPlan {
        MixPlan::default()
    }

    /// True when nothing is blended in (the table is `quant::table_from`'s).
    pub fn is_empty(&self) -> bool {
        self.extra.is_empty()
    }

    /// The added `(token, counts)`, out of `2^P - V`.
    pub fn extra(&self) -> &[(u32, u32)] {
        &self.extra
    }

    /// The mixed probability of `token` whose LLM probability is `p_llm_token` (a statistic: the table's
    /// share before the floor of one count per symbol and the integer rounding).
    pub fn probability(&self, p_llm_token: f64, token: u32) -> f64 {
        if self.extra.is_empty() {
            return p_llm_token;
        }
        let add = self.extra.iter().find(|e| e.0 == token).map_or(0, |e| e.1);
        (self.llm_counts as f64 * p_llm_token + add as f64) / self.avail as f64
    }
}

/// The adaptive mixer of one lane: the chunk's history, the models' tables and the learned weights.
///
/// Memory is fixed at construction ([`Mixer::memory_bytes`]) and never grows, whatever the tokens.
#[derive(Clone, Debug)]
pub struct Mixer {
    config: MixConfig,
    vocab: usize,
    /// The precision `P` of the tables the plans are for: their total is `2^P`.
    precision_bits: u32,
    history: History,
    matcher: MatchModel,
    ngrams: NGrams,
    /// `weights[set * MODELS + model]`; each set sums to 1 after every update.
    weights: Vec<f64>,

    /// Hashes of the last 1..=16 tokens of the history (`hashes[k]`), valid for `k <= n`.
    hashes: [u32; 17],
    n: usize,
}

impl Mixer {
    /// A mixer for a `vocab`-symbol model (`1..=quant::MAX_SYMBOLS`) whose tables have the vocabulary's
    /// precision ([`quant::precision_for`], that of [`FreqTable::new`]).
    pub fn new(config: MixConfig, vocab: usize) -> Mixer {
        Self::with_precision(config, vocab, quant::precision_for(vocab))
    }

    /// A mixer whose plans are for tables of `precision_bits` (as [`FreqTable::with_precision`] makes):
    /// the counts it shares out are `2^precision_bits - V`. For tests and measurements at other
    /// precisions than the rule's.
    pub fn with_precision(config: MixConfig, vocab: usize, precision_bits: u32) -> Mixer {
        assert!((1..=quant::MAX_SYMBOLS).contains(&vocab), "vocabulary of {vocab} symbols");
        assert!(
            (quant::MIN_PRECISION_BITS..=quant::MAX_PRECISION_BITS).contains(&precision_bits),
            "{precision_bits}-bit tables are unsupported"
        );
        let (history, sets) =
            if config.is_off() { (History::empty(), 0) } else { (History::new(), MAX_SETS) };
        let mut mixer = Mixer {
            config,
            vocab,
            precision_bits,
            history,
            matcher: MatchModel::new(&config),
            ngrams: NGrams::new(&config),
            weights: vec![0.0; sets * MODELS],
            hashes: [0; 17],
            n: 0,
        };
        mixer.reset_weights();
        mixer
    }

    pub fn config(&self) -> MixConfig {
        self.config
    }

    /// Bytes of the mixer's tables (history, match table, n-gram tables, weights): fixed by the config.
    pub fn memory_bytes(&self) -> usize {
        self.history.memory_bytes()
            + self.matcher.memory_bytes()
            + self.ngrams.memory_bytes()
            + self.weights.len() * std::mem::size_of::<f64>()
    }

    /// Start of a chunk: forget everything (chunks are independent).
    pub fn reset(&mut self) {
        self.history.reset();
        self.matcher.reset();
        self.ngrams.reset();
        self.reset_weights();
        self.hashes = [0; 17];
        self.n = 0;
    }

    fn reset_weights(&mut self) {
        let init = 1.0 / (1u32 << self.config.init_shift.min(31)) as f64;
        for set in self.weights.chunks_exact_mut(MODELS) {
            set.fill(init);
            set[LLM] = 1.0 - init * (MODELS - 1) as f64;
        }
    }

    /// What the mixer blends in at the next position: a pure function of the state and of the LLM
    /// distribution's normaliser `llm_sum` (the sum of the softmax weights in index order; its inverse is the
    /// LLM's top probability, one of the weight-set selectors).
    pub fn plan(&self, llm_sum: f64, plan: &mut MixPlan) {
        let avail = (1u32 << self.precision_bits) - self.vocab as u32;
        plan.avail = avail;
        plan.llm_counts = avail;
        plan.extra.clear();
        plan.predictions.clear();
        plan.weights = [0.0; MODELS];
        plan.escape = [0.0; MODELS];
        plan.set = 0;
        if self.config.is_off() {
            return;
        }
        // The models' predictions.
        let mut active = [false; MODELS];
        active[LLM] = true;
        let mut match_len = 0;
        if let Some((token, len)) = self.matcher.predict(&self.history) {
            match_len = len;
            active[MATCH] = true;
            plan.predictions.push((MATCH as u8, token, 1.0));
        }
        let (mut top_order, mut top_total) = (0, 0);
        for k in 1..=MAX_ORDER {
            let Some(slot) = self.ngrams.lookup(k, &self.hashes, self.n) else { continue };
            let total = slot.total();
            if total == 0 {
                continue;
            }
            active[1 + k] = true;
            (top_order, top_total) = (k, total);
            let escape = self.config.escape as f64;
            let denom = total as f64 + escape;
            for (token, count) in slot.followers() {
                plan.predictions.push(((1 + k) as u8, token, count as f64 / denom));
            }
            plan.escape[1 + k] = escape / denom;
        }
        // The weight set.
        let c = self.config.contexts;
        let mut set = 0;
        set = set * MATCH_BUCKETS + if c & CTX_MATCH != 0 { match_bucket(match_len) } else { 0 };
        set = set * CONFIDENCE_BUCKETS + if c & CTX_CONFIDENCE != 0 { confidence_bucket(llm_sum) } else { 0 };
        set = set * ORDER_BUCKETS + if c & CTX_ORDER != 0 { top_order } else { 0 };
        set = set * COUNT_BUCKETS + if c & CTX_COUNT != 0 { count_bucket(top_total) } else { 0 };
        plan.set = set as u32;
        let w = &self.weights[set * MODELS..(set + 1) * MODELS];
        let mut total = 0.0;
        for m in 0..MODELS {
            if active[m] {
                total += w[m];
            }
        }
        for m in 0..MODELS {
            if active[m] {
                plan.weights[m] = w[m] / total;
            }
        }
        // The additions, in integer counts: each prediction's share, summed per token in first-seen order.
        let mut used = 0u32;
        for &(model, token, q) in &plan.predictions {
            if token as usize >= self.vocab {
                continue; // only a caller's bad token gets here; its share stays with the LLM
            }
            let add = plan.weights[model as usize] * q;
            let counts = ((add * avail as f64) as u32).min(avail - used);
            used += counts;
            if counts == 0 {
                continue;
            }
            match plan.extra.iter_mut().find(|e| e.0 == token) {
                Some(e) => e.1 += counts,
                None => plan.extra.push((token, counts)),
            }
        }
        plan.llm_counts = avail - used;
    }

    /// After the position's token is known: [`Mixer::update`] with the LLM's probability of `token` in
    /// `probs` (the distribution `plan` was made for), which it returns. Both the encoder and the
    /// decoder learn through this one call.
    pub fn learn(&mut self, plan: &MixPlan, probs: &Probabilities, token: u32) -> f64 {
        let p_llm = probs.probability(token);
        self.update(plan, p_llm, token);
        p_llm
    }

    /// After the position's token is known: learn. `p_llm` is the LLM's probability of `token`
    /// (`w_token / llm_sum`), `plan` the one [`Mixer::plan`] gave for this position.
    pub fn update(&mut self, plan: &MixPlan, p_llm: f64, token: u32) {
        if self.config.is_off() {
            return;
        }
        // The weights: an EM step, w_m <- w_m × (1 - r + r × q_m(token) / p(token)), for the models that
        // predicted; their sum is unchanged, the others keep theirs. Then the floor, then each set sums to 1.
        let mut q = [0.0f64; MODELS];
        q[LLM] = p_llm;
        for m in 0..MODELS {
            q[m] += plan.escape[m] * p_llm;
        }
        for &(model, t, p) in &plan.predictions {
            if t == token {
                q[model as usize] += p;
            }
        }
        let mut p = 0.0;
        for m in 0..MODELS {
            p += plan.weights[m] * q[m];
        }
        if p > 0.0 && !self.weights.is_empty() {
            let set = plan.set as usize;
            let rate = 1.0 / (1u32 << self.config.rate_shift) as f64;
            let w = &mut self.weights[set * MODELS..(set + 1) * MODELS];
            let mut total = 0.0;
            for m in 0..MODELS {
                if plan.weights[m] > 0.0 {
                    w[m] *= (1.0 - rate) + rate * (q[m] / p);
                }
                if w[m] < WEIGHT_FLOOR {
                    w[m] = WEIGHT_FLOOR;
                }
                total += w[m];
            }
            for x in w.iter_mut() {
                *x /= total;
            }
        }
        // The models: n-grams learn the follower of the current contexts, then the token joins the history
        // and the match model follows or looks for a match.
        self.ngrams.update(&self.hashes, self.n, token);
        self.history.push(token);
        self.n = self.history.context_hashes(16, &mut self.hashes);
        self.matcher.update(&self.history, &self.hashes, self.n);
    }
}

/// The table: the LLM's probabilities blended per `plan`. Pure, so rows may be built in parallel.
///
/// With an empty plan (the mixer off, or nothing predicted) this is exactly `quant::table_from`; otherwise
/// `quant::table_from_shares` with the plan's counts (the plan was made with `probs.sum()`).
///
/// # Panics
/// If `probs` or `table` do not have the plan's vocabulary (a programming error).
pub fn mixed_table(plan: &MixPlan, probs: &Probabilities, table: &mut FreqTable) {
    if plan.extra.is_empty() {
        quant::table_from(probs, table);
    } else {
        assert_eq!(
            plan.avail,
            table.total() - table.len() as u32,
            "plan made for another vocabulary or precision"
        );
        quant::table_from_shares(probs, plan.llm_counts, &plan.extra, table);
    }
}

#[cfg(test)]
mod tests;
