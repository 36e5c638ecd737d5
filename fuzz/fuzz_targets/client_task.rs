//! Fuzzes `fedsim::sim::fuzz::client_task`: see src/sim/fuzz.rs.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fedsim::sim::fuzz::client_task(data));
