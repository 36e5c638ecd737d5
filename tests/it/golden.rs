//! Golden traces: the event logs of `quickstart` and `late-contributions` must equal the
//! recorded ones in tests/golden/, byte for byte. After a deliberate change in behaviour,
//! re-record them (see the README):
//!
//! ```text
//! cargo run --release -- run scenarios/quickstart.yaml --golden tests/golden/quickstart.jsonl --update
//! cargo run --release -- run scenarios/late-contributions.yaml --golden tests/golden/late-contributions.jsonl --update
//! ```

use std::path::Path;

use fedsim::report::golden;
use fedsim::scenario::Scenario;
use fedsim::Simulation;

fn check(name: &str) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let s = Scenario::load(root.join(format!("scenarios/{name}.yaml"))).unwrap();
    let run = Simulation::new(s.config).run().unwrap();
    let expected =
        std::fs::read_to_string(root.join(format!("tests/golden/{name}.jsonl"))).unwrap();
    if let Err(d) = golden::compare(&expected, &run.events.to_jsonl(), &[]) {
        panic!(
            "{d}\nIf the change is deliberate, re-record with:\n  cargo run --release -- run scenarios/{name}.yaml --golden tests/golden/{name}.jsonl --update"
        );
    }
}

#[test]
fn quickstart_matches_its_golden_trace() {
    check("quickstart");
}

#[test]
fn late_contributions_matches_its_golden_trace() {
    check("late-contributions");
}
