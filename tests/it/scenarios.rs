//! Every example in scenarios/ loads and runs; the committed JSON Schema is current.

use std::path::{Path, PathBuf};

use fedsim::scenario::Scenario;
use fedsim::Simulation;

fn scenario_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

/// One test per example, so that they run side by side.
macro_rules! examples {
    ($($test:ident => $file:literal,)+) => {
        $(
            #[test]
            fn $test() {
                runs_and_meets_its_expectations($file);
            }
        )+

        #[test]
        fn every_example_has_its_test() {
            let listed = [$($file),+];
            let files: Vec<String> = scenario_files()
                .iter()
                .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
                .collect();
            assert_eq!(files, listed, "list every file of scenarios/ in `examples!`");
        }
    };
}

examples! {
    bench_w1 => "bench-w1.yaml",
    churn => "churn.yaml",
    cross_site_validation => "cross-site-validation.yaml",
    dropouts => "dropouts.yaml",
    fedavg_synthetic => "fedavg-synthetic.yaml",
    fedprox_synthetic => "fedprox-synthetic.yaml",
    late_contributions => "late-contributions.yaml",
    lossy_links => "lossy-links.yaml",
    quickstart => "quickstart.yaml",
    quits => "quits.yaml",
    scale_10k => "scale-10k.yaml",
    stragglers => "stragglers.yaml",
    trace_driven => "trace-driven.yaml",
}

/// The example loads, opens with its schema line and description, runs every round, gives
/// the same bytes again with two training threads, and meets its expectations.
fn runs_and_meets_its_expectations(name: &str) {
    let f = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scenarios")
        .join(name);
    let f = f.as_path();
    let s = Scenario::load(f).unwrap_or_else(|e| panic!("{e}"));
    let text = std::fs::read_to_string(f).unwrap();
    assert!(
        text.starts_with("# yaml-language-server: $schema=../schema/scenario.schema.json\n#\n# "),
        "{} must open with the schema line and a description",
        f.display()
    );
    let rounds = s.config.server.num_rounds - s.config.server.start_round;
    let r = Simulation::new(s.config.clone()).run().unwrap();
    assert!(r.completed, "{} stalled", f.display());
    determinism_matrix(f, &s, &r);
    assert!(
        !s.file.expect.is_empty(),
        "{} has no expect: block",
        f.display()
    );
    for o in fedsim::scenario::expect::check(&s.file, &r) {
        assert!(
            o.passed,
            "{}: expect[{}] {} failed: {}",
            f.display(),
            o.index,
            o.what,
            o.actual
        );
    }
    assert_eq!(r.rounds.len() as u32, rounds, "{}", f.display());
    eprintln!(
        "{}: {} rounds, acc {:.3}, {:.2}s wall, {:.1} min virtual",
        f.display(),
        r.rounds.len(),
        r.metrics.accuracy,
        r.wall_s,
        r.virtual_us as f64 / 6e7
    );
}

/// The same scenario run again with 2 training threads gives the same bytes as the first run
/// (with 1): `events.jsonl`, `rounds.csv` and `model.pb`. (That the same configuration run
/// twice gives the same bytes is the engine tests' business.)
fn determinism_matrix(f: &Path, s: &Scenario, first: &fedsim::RunResult) {
    let bytes = |r: &fedsim::RunResult| {
        (
            r.events.to_jsonl(),
            fedsim::report::data::rounds_csv(&r.rounds),
            r.model_bytes(),
        )
    };
    let reference = bytes(first);
    let threads = 2;
    let mut cfg = s.config.clone();
    cfg.threads = threads;
    let again = bytes(&Simulation::new(cfg).run().unwrap());
    assert!(
        again.0 == reference.0,
        "{}: events.jsonl differs with {threads} thread(s)",
        f.display()
    );
    assert!(
        again.1 == reference.1,
        "{}: rounds.csv differs with {threads} thread(s)",
        f.display()
    );
    assert!(
        again.2 == reference.2,
        "{}: model.pb differs with {threads} thread(s)",
        f.display()
    );
}

#[test]
fn committed_schema_is_current() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("schema/scenario.schema.json");
    let committed: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(
        committed,
        fedsim::scenario::json_schema(),
        "regenerate with `cargo run -- schema > schema/scenario.schema.json`"
    );
}
