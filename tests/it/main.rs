//! The one integration-test binary; each module protects one part of llmzip.

mod engine;
