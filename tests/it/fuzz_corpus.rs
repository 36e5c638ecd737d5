//! Replays the fuzz targets' corpus (`fuzz/corpus/<target>/`) through the same entry points
//! the targets call, so every input the fuzzer ever kept, including any that once failed,
//! stays handled without a panic. Fuzz further with `cargo fuzz run <target> -s none` in
//! `fuzz/` (README, "Fuzzing").

use std::path::Path;

fn replay(target: &str, run: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut inputs: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    inputs.sort();
    assert!(!inputs.is_empty(), "{} has no inputs", dir.display());
    for input in inputs {
        let bytes = std::fs::read(&input).unwrap();
        let caught = std::panic::catch_unwind(|| run(&bytes));
        assert!(caught.is_ok(), "{} panicked", input.display());
    }
}

#[test]
fn scenario_inputs_are_all_handled() {
    replay("scenario", fedsim::sim::fuzz::scenario);
}

#[test]
fn server_message_inputs_are_all_handled() {
    replay("server_message", fedsim::sim::fuzz::server_message);
}

#[test]
fn client_task_inputs_are_all_handled() {
    replay("client_task", fedsim::sim::fuzz::client_task);
}

#[test]
fn npy_inputs_are_all_handled() {
    replay("npy", fedsim::sim::fuzz::npy);
}
