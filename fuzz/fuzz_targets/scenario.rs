//! Fuzzes `fedsim::sim::fuzz::scenario`: see src/sim/fuzz.rs.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fedsim::sim::fuzz::scenario(data));
