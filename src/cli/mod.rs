//! The command line: parse ([`args`]), plan ([`plan`]), act ([`run`]), tell ([`report`], [`listing`]).
//!
//! Parsing and planning never touch the model, the network or (beyond asking whether paths exist) the
//! filesystem, so `--help` and every refusal are instant.

pub mod args;
pub mod listing;
pub mod pieces;
pub mod plan;
pub mod report;
pub mod run;
pub mod selection;
pub mod tools;
