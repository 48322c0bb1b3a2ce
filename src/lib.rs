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
//! `exp`) is at the bottom; `coder`, `quant`, `container` and `hex` know nothing of models or files;
//! only `model`, `tokenizer` and `engine` touch candle, tokenizers or hf-hub. Above them, `pipeline`
//! joins the layers, `bench` runs compressors as child processes (reading llmzip's figures
//! from its statistics records, never from its human output), and `cli` sits on top.
//!
//! # Words that would otherwise mean two things
//!
//! - **Lane.** In `pipeline`, a *decoder lane*: one chunk being decoded, advanced in lock-step with the
//!   other lanes through one batched engine call per step. In `arch` and the kernels, an *accumulator
//!   lane*: one of the [`arch::LANES`] float accumulators a sum's term `i` goes to (`i mod 8`) before the
//!   fixed reduction tree. Code says "lane" alone only in the layer where its meaning is the only one.
//! - **Group.** In the kernels, an *interleaved group*: 8 consecutive quantized blocks of a weight row,
//!   stored interleaved for the vector units. In attention, the query heads that share one key/value
//!   head (grouped-query attention) are `heads_per_kv`, never a "group".
//! - **Tile.** Only the layout unit of keys in a KV cache (a *key tile* of [`engine::kernels::KEY_TILE`]
//!   positions) and the AMX path's matrix tiles. Consecutive positions of one sequence computed by one
//!   attention task are a *run*; the output rows of one matmul task are its rows.
//!
//! # Example
//!
//! Compress and decompress a few bytes with the library API. The model here is a tiny synthetic one
//! written on the spot, so the example needs no download; a real run names a registry model or a GGUF
//! file in `CodecOptions::model` (`None` is the registry default).
//!
//! ```
//! use std::io::Cursor;
//!
//! use llmzip::io::NoProgress;
//! use llmzip::pipeline::{CodecOptions, compress, decompress};
//!
//! let dir = tempfile::tempdir()?;
//! let model = dir.path().join("synthetic.gguf");
//! llmzip::engine::synthetic::write_synthetic_llama(&model, 1, llmzip::tokenizer::byte_to_char)?;
//! let opts = CodecOptions {
//!     model: Some(model.display().to_string()),
//!     context: 64,
//!     overlap: 16,
//!     // Code with the model even though storing these few bytes would be smaller.
//!     force_model: true,
//!     ..CodecOptions::default()
//! };
//!
//! let text = b"To be, or not to be, that is the question.";
//! let mut archive = Vec::new();
//! let stats = compress(&mut Cursor::new(text), &mut archive, &opts, &NoProgress)?;
//! assert_eq!(stats.original_bytes, text.len() as u64);
//! assert!(archive.starts_with(&llmzip::container::MAGIC));
//!
//! let mut restored = Vec::new();
//! decompress(&mut Cursor::new(&archive), &mut restored, &opts, &NoProgress)?;
//! assert_eq!(restored, text);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! To code many streams, open the model once: [`pipeline::Session::open`] with
//! [`pipeline::compress_with`], or a [`pipeline::Sessions`] with [`pipeline::decompress_with`].

pub mod arch;
pub mod bench;
pub mod cli;
pub mod coder;
pub mod container;
pub mod engine;
pub mod hex;
pub mod io;
pub mod mix;
pub mod model;
pub mod pipeline;
pub mod quant;
#[doc(hidden)]
pub mod testing;
pub mod tokenizer;
