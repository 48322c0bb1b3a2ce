//! llmzip: lossless text compression with a small causal language model as the probability model.
//!
//! ```text
//! compress:   bytes ──► segmenter ──► tokenizer ──► engine (logits, all positions of a window at once)
//!                                                    │
//!                                  quant (logits ─► integer frequency table, one pure function)
//!                                                    │
//!                                  coder (range encoder) ──► chunk payload ──► container ──► FILE.lz
//!
//! decompress: FILE.lz ──► container ──► coder (range decoder) ◄── quant ◄── engine (one step per token,
//!                                          │                                  all lanes in lock-step)
//!                                          └──► token ──► token bytes ──► checksum ──► output
//! ```
//!
//! Layers never import upward: `arch` (the determinism substrate: kernel paths, lane structure, our own
//! `exp`) is at the bottom; `coder`, `quant` and `container` know nothing of models or files; only
//! `model`, `tokenizer` and `engine` touch candle, tokenizers or hf-hub.

pub mod arch;
pub mod bench;
pub mod cli;
pub mod coder;
pub mod container;
pub mod engine;
pub mod io;
pub mod model;
pub mod pipeline;
pub mod quant;
pub mod tokenizer;
