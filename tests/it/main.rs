//! The one integration-test binary; each module protects one area.

mod cli_plan;
mod engine;
mod model;
