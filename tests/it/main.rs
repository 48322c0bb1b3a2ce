//! The one integration-test binary; each module protects one area.

mod bench_cmd;
mod cli_plan;
mod common;
mod container;
mod engine;
mod golden;
mod layers;
mod levels;
mod model;
mod pipeline;
mod precision;
mod real;
mod regression;
mod split;
mod tokenizer;
