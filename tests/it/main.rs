//! fedsim's integration tests, in one crate: one binary to link instead of one per file.
//!
//! Run one part with a filter, for example `cargo test --test it golden::` or
//! `cargo test --test it faults::`.

mod cli;
mod common;
mod engine;
mod faults;
mod fuzz_corpus;
mod golden;
mod numpy_interop;
mod protocol;
mod scenario_errors;
mod scenarios;
mod wire_props;
