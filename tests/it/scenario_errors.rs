//! Malformed scenarios: each gives a clear error naming file, line and column; none panics.

use fedsim::dist::Dist;
use fedsim::scenario::Scenario;
use fedsim::sim::{Clients, Profile, Profiles};
use proptest::prelude::*;

const GOOD: &str = "name: t
seed: 1
task:
  model: softmax
  data: { generator: w1 }
server:
  rounds: 5
  min_num_clients: 2
clients:
  count: 4
events:
  - { at: { round: 1 }, clients: [1], dropout: { for: 2 rounds } }
";

/// (what is wrong, the scenario text, line, column, words the message must contain)
const CASES: &[(&str, &str, usize, usize, &[&str])] = &[
    ("empty file", "", 1, 1, &["empty"]),
    ("only comments", "# nothing\n\n", 1, 1, &["empty"]),
    ("not a mapping", "- 1\n- 2\n", 1, 1, &["expected struct ScenarioFile"]),
    ("unknown top-level key", "name: t\nrounds: 3\n", 2, 1, &["unknown field `rounds`"]),
    ("missing task", "name: t\nserver: { rounds: 2 }\nclients: { count: 1 }\n", 1, 1, &["missing field `task`"]),
    ("typo in an event action", "name: t\ntask: { model: softmax, data: { generator: w1 } }\nserver: { rounds: 2 }\nclients: { count: 2 }\nevents:\n  - { at: { round: 1 }, clients: [0], dropuot: { for: 1 round } }\n", 6, 39, &["unknown field `dropuot`", "did you mean `dropout`?"]),
    ("unknown model", "name: t\ntask: { model: softmaks, data: { generator: w1 } }\nserver: { rounds: 2 }\nclients: { count: 2 }\n", 2, 16, &["unknown variant `softmaks`", "did you mean `softmax`?"]),
    ("unknown generator", "name: t\ntask:\n  model: softmax\n  data: { generator: w2 }\nserver: { rounds: 2 }\nclients: { count: 2 }\n", 4, 22, &["unknown variant `w2`"]),
    ("duration without a unit", "name: t\ntask: { model: softmax, data: { generator: w1 } }\nserver:\n  rounds: 2\n  round_timeout: 30\nclients: { count: 2 }\n", 5, 18, &["no unit", "30s"]),
    ("unknown time unit", "name: t\ntask: { model: softmax, data: { generator: w1 } }\nserver:\n  rounds: 2\n  round_timeout: 3 fortnights\nclients: { count: 2 }\n", 5, 18, &["unknown time unit `fortnights`"]),
    ("bandwidth without /s", "name: t\ntask: { model: softmax, data: { generator: w1 } }\nserver: { rounds: 2 }\nclients:\n  count: 2\n  groups:\n    - { share: 1.0, link: { bandwidth: 20MB } }\n", 7, 40, &["not a rate"]),
    ("wrong type", "name: t\ntask: { model: softmax, data: { generator: w1 } }\nserver: { rounds: many }\nclients: { count: 2 }\n", 3, 19, &["invalid type", "u32"]),
    ("shares not summing to 1", "name: t\ntask: { model: softmax, data: { generator: w1 } }\nserver: { rounds: 2 }\nclients:\n  count: 4\n  groups:\n    - { share: 0.5 }\n    - { share: 0.4 }\n", 6, 3, &["sum to 1", "0.9"]),
    ("min_num_clients above the clients", "name: t\ntask: { model: softmax, data: { generator: w1 } }\nserver:\n  rounds: 2\n  min_num_clients: 9\nclients: { count: 4 }\n", 5, 3, &["min_num_clients (9)", "clients.count (4)"]),
    ("round trigger past the last round", "name: t\ntask: { model: softmax, data: { generator: w1 } }\nserver: { rounds: 5 }\nclients: { count: 4 }\nevents:\n  - at: { round: 60 }\n    clients: [1]\n    quit: {}\n", 6, 11, &["round 60 is outside the run"]),
    ("client that does not exist", "name: t\ntask: { model: softmax, data: { generator: w1 } }\nserver: { rounds: 5 }\nclients: { count: 4 }\nevents:\n  - at: { round: 1 }\n    clients: [2, 40]\n    quit: {}\n", 7, 5, &["client 40 does not exist", "0 to 3"]),
    ("unknown aggregator", "name: t\ntask: { model: softmax, data: { generator: w1 } }\nserver: { rounds: 2, aggregator: fedavgn }\nclients: { count: 2 }\n", 3, 34, &["unknown variant `fedavgn`", "did you mean `fedavg`?"]),
    ("misspelt aggregator setting", "name: t\ntask: { model: softmax, data: { generator: w1 } }\nserver:\n  rounds: 2\n  aggregator: { fedavgm: { momentm: 0.5 } }\nclients: { count: 2 }\n", 5, 28, &["unknown field `momentm`", "did you mean `momentum`?"]),
    ("momentum out of range", "name: t\ntask: { model: softmax, data: { generator: w1 } }\nserver:\n  rounds: 2\n  aggregator: { fedavgm: { momentum: 1.5 } }\nclients: { count: 2 }\n", 5, 28, &["momentum in [0, 1)", "1.5"]),
    ("two aggregators", "name: t\ntask: { model: softmax, data: { generator: w1 } }\nserver:\n  rounds: 2\n  aggregator: { fedavg: {}, fedavgm: {} }\nclients: { count: 2 }\n", 5, 15, &["one strategy"]),
    ("a negative count", "name: t\ntask: { model: softmax, data: { generator: w1 } }\nserver: { rounds: 3 }\nclients: { count: 4 }\nexpect:\n  - { event: _startRound, count: -1 }\n",6, 27, &["expect[0].count", "expected a whole number from 0"]),
    ("a count of a round assertion", "name: t\ntask: { model: softmax, data: { generator: w1 } }\nserver: { rounds: 3 }\nclients: { count: 4 }\nexpect:\n  - { round: 1, aggregated: 1, count: 1 }\n",6, 32, &["`count` counts events"]),
    ("more rounds completed than run", "name: t\ntask: { model: softmax, data: { generator: w1 } }\nserver: { rounds: 3 }\nclients: { count: 4 }\nexpect:\n  - { rounds_completed: 99 }\n",6, 7, &["from 0 to 3", "99"]),
    ("an accuracy above 1", "name: t\ntask: { model: softmax, data: { generator: w1 } }\nserver: { rounds: 3 }\nclients: { count: 4 }\nexpect:\n  - { final: { test_accuracy: { min: 1.5 } } }\n",6, 16, &["at most 1", "1.5"]),
    ("an empty final", "name: t\ntask: { model: softmax, data: { generator: w1 } }\nserver: { rounds: 3 }\nclients: { count: 4 }\nexpect:\n  - { final: { } }\n",6, 7, &["expected `test_accuracy` or `test_loss`"]),
    ("an unknown rejection reason", "name: t\ntask: { model: softmax, data: { generator: w1 } }\nserver: { rounds: 3 }\nclients: { count: 4 }\nexpect:\n  - { event: contribution_rejected, reason: bored }\n",6, 37, &["unknown reason `bored`"]),
    ("a fractional sample count", "name: t\ntask: { model: softmax, data: { generator: w1, samples_per_client: 2.5 } }\nserver: { rounds: 3 }\nclients: { count: 4 }\n",2, 48, &["whole number of samples"]),
    ("a negative spread", "name: t\ntask: { model: softmax, data: { generator: w1, samples_per_client: { normal: { mean: 64, std: -1 } } } }\nserver: { rounds: 3 }\nclients: { count: 4 }\n",2, 68, &["finite std >= 0"]),
    ("an event on no clients", "name: t\ntask: { model: softmax, data: { generator: w1 } }\nserver: { rounds: 3 }\nclients: { count: 4 }\nevents:\n  - { at: { round: 1 }, clients: [], quit: {} }\n",6, 25, &["names no clients"]),
    ("missing trace file", "name: t\ntask: { model: softmax, data: { generator: w1 } }\nserver: { rounds: 5 }\nclients: { count: 4 }\navailability:\n  trace: nowhere.csv\n", 6, 3, &["nowhere.csv", "does not exist"]),
    ("two actions in one event", "name: t\ntask: { model: softmax, data: { generator: w1 } }\nserver: { rounds: 5 }\nclients: { count: 4 }\nevents:\n  - { at: { round: 1 }, clients: [1], quit: {}, crash: {} }\n", 6, 3, &["exactly one action", "found 2"]),
    ("unknown key in a bound", "name: t\ntask: { model: softmax, data: { generator: w1 } }\nserver: { rounds: 2 }\nclients: { count: 2 }\nexpect:\n  - { final: { test_accuracy: { minimum: 0.99 } } }\n", 6, 31, &["unknown field `minimum`", "`min` or `max`"]),
    ("unknown key in a count", "name: t\ntask: { model: softmax, data: { generator: w1 } }\nserver: { rounds: 2 }\nclients: { count: 2 }\nexpect:\n  - { event: _startRound, count: { mni: 5 } }\n", 6, 34, &["unknown field `mni`"]),
    ("an empty range", "name: t\ntask: { model: softmax, data: { generator: w1 } }\nserver: { rounds: 2 }\nclients: { count: 2 }\nexpect:\n  - { event: _startRound, count: { min: 5, max: 1 } }\n", 6, 34, &["min (5) is more than max (1)"]),
    ("unknown key in a join", "name: t\ntask: { model: softmax, data: { generator: w1 } }\nserver: { rounds: 5 }\nclients: { count: 2 }\nevents:\n  - { at: { round: 1 }, join: { count: 2, cuont: 3 } }\n", 6, 43, &["unknown field `cuont`"]),
    ("unknown group target", "name: t\ntask: { model: softmax, data: { generator: w1 } }\nserver: { rounds: 5 }\nclients:\n  count: 4\n  groups: [{ name: slow, share: 1.0 }]\nevents:\n  - at: { round: 1 }\n    clients: { group: slwo }\n    quit: {}\n", 9, 5, &["no client group is named `slwo`", "did you mean `slow`?"]),
    ("unknown expected event", "name: t\ntask: { model: softmax, data: { generator: w1 } }\nserver: { rounds: 5 }\nclients: { count: 4 }\nexpect:\n  - event: contribution_rejectd\n", 6, 5, &["unknown event `contribution_rejectd`", "did you mean `contribution_rejected`?"]),
    ("linear model on classification data", "name: t\ntask: { model: linear, data: { generator: w1 } }\nserver: { rounds: 5 }\nclients: { count: 4 }\n", 2, 9, &["needs `generator: regression`"]),
    ("bad YAML", "name: t\ntask: { model: softmax\n", 3, 1, &["did not find expected ',' or '}'", "while parsing a flow mapping"]),
    ("binary data", "name: t\n\u{0}\u{1}\u{2}", 2, 1, &["NUL byte"]),
    ("events targeting too many clients in all", "name: t\ntask: { model: softmax, data: { generator: w1 } }\nserver: { rounds: 3 }\nclients: { count: 6000000 }\nevents:\n  - { at: { round: 1 }, clients: { range: [0, 5999999] }, quit: {} }\n  - { at: { round: 1 }, clients: { range: [0, 5999999] }, crash: {} }\n", 7, 25, &["target 12000000 clients in all"]),
    ("a duplicate key", "name: t\ntask: { model: softmax, data: { generator: w1 } }\nserver: { rounds: 3 }\nclients: { count: 4 }\nserver: { rounds: 4 }\n", 5, 1, &["duplicate field `server`"]),
    ("a duplicate key in a flow mapping", "name: t\ntask: { model: softmax, data: { generator: w1 } }\nserver: { rounds: 3, min_num_clients: 1, rounds: 5 }\nclients: { count: 4 }\n", 3, 42, &["duplicate field `rounds`"]),
    ("a name that leaves results/", "name: ../../x\ntask: { model: softmax, data: { generator: w1 } }\nserver: { rounds: 3 }\nclients: { count: 4 }\n", 1, 1, &["cannot name a results directory"]),
    ("an empty name", "name: ''\ntask: { model: softmax, data: { generator: w1 } }\nserver: { rounds: 3 }\nclients: { count: 4 }\n", 1, 1, &["cannot name a results directory"]),
    ("a range to the top of u32", "name: t\ntask: { model: softmax, data: { generator: w1 } }\nserver: { rounds: 3 }\nclients: { count: 4 }\nevents:\n  - { at: { round: 1 }, clients: { range: [0, 4294967295] }, quit: {} }\n", 6, 25, &["target 4294967296 clients in all"]),
    ("a duration past 100 years", "name: t\ntask: { model: softmax, data: { generator: w1 } }\nserver:\n  rounds: 2\n  round_timeout: 300000000d\nclients: { count: 2 }\n", 5, 18, &["past the limit of 100 years"]),
    ("a heartbeat interval of 0", "name: t\ntask: { model: softmax, data: { generator: w1 } }\nserver:\n  rounds: 2\n  heart_beat_interval: 0s\nclients: { count: 2 }\n", 5, 3, &["at least 1ms"]),
    ("a bandwidth of 0", "name: t\ntask: { model: softmax, data: { generator: w1 } }\nserver: { rounds: 2 }\nclients:\n  count: 2\n  groups: [{ share: 1.0, link: { bandwidth: 0B/s } }]\n", 6, 45, &["write `unlimited`"]),
    ("a learning rate that is not a number", "name: t\ntask: { model: softmax, data: { generator: w1 } }\ntraining: { lr: .nan }\nserver: { rounds: 2 }\nclients: { count: 2 }\n", 3, 13, &["finite learning rate"]),
    ("a slowdown factor that is not a number", "name: t\ntask: { model: softmax, data: { generator: w1 } }\nserver: { rounds: 3 }\nclients: { count: 2 }\nevents:\n  - { at: { round: 1 }, clients: [0], slow: { factor: .nan, for: 1 round } }\n", 6, 47, &["finite factor"]),
    ("no samples per client", "name: t\ntask:\n  model: softmax\n  data: { generator: w1, samples_per_client: 0 }\nserver: { rounds: 2 }\nclients: { count: 2 }\n", 4, 26, &["1 to 1000000 samples"]),
    ("more samples than a client may hold", "name: t\ntask:\n  model: softmax\n  data: { generator: w1, samples_per_client: 1e30 }\nserver: { rounds: 2 }\nclients: { count: 2 }\n", 4, 26, &["1 to 1000000 samples"]),
    ("a lognormal too wide", "name: t\ntask:\n  model: softmax\n  data: { generator: w1, samples_per_client: { lognormal: { median: 64, sigma: 1000 } } }\nserver: { rounds: 2 }\nclients: { count: 2 }\n", 4, 46, &["sigma from 0 to 10"]),
    ("no hidden units", "name: t\ntask: { model: { mlp: { hidden: 0 } }, data: { generator: w1 } }\nserver: { rounds: 2 }\nclients: { count: 2 }\n", 2, 25, &["1 to 100000 hidden units"]),
    ("no global test clients", "name: t\ntask:\n  model: softmax\n  data: { generator: w1, global_test_clients: 0 }\nserver: { rounds: 2 }\nclients: { count: 2 }\n", 4, 26, &["expected 1 to 100000"]),
    ("another generator's setting", "name: t\ntask:\n  model: softmax\n  data: { generator: w1, alpha: 1.0 }\nserver: { rounds: 2 }\nclients: { count: 2 }\n", 4, 26, &["not a setting of the `w1` generator", "noise"]),
    ("a key with no encryption", "name: t\ntask: { model: softmax, data: { generator: w1 } }\nserver: { rounds: 2 }\ntransport: { key: abc }\nclients: { count: 2 }\n", 4, 14, &["would do nothing"]),
    ("joins past the client limit", "name: t\ntask: { model: softmax, data: { generator: w1 } }\nserver: { rounds: 5 }\nclients: { count: 8 }\nevents:\n  - { at: { round: 1 }, join: 4294967290 }\n", 4, 12, &["limited to 10000000"]),
    ("no minimum of clients", "name: t\ntask: { model: softmax, data: { generator: w1 } }\nserver: { rounds: 2, min_num_clients: 0, max_num_clients: 0 }\nclients: { count: 2 }\n", 3, 22, &["a round needs a client"]),
    ("too many features", "name: t\ntask: { model: softmax, features: 10000000, data: { generator: w1 } }\nserver: { rounds: 2 }\nclients: { count: 2 }\n", 2, 9, &["features"]),
    ("a start round near the top of u32", "name: t\ntask: { model: softmax, data: { generator: w1 } }\nserver: { rounds: 4294967295, start_round: 4294967290 }\nclients: { count: 2 }\n", 3, 11, &["at most 1000000000 rounds"]),
];

#[test]
fn each_malformed_scenario_gets_its_positioned_error() {
    assert!(CASES.len() >= 20);
    for (what, text, line, column, words) in CASES {
        let errs = Scenario::from_str(text, "bad.yaml").expect_err(what);
        let first = &errs.0[0];
        let shown = errs.to_string();
        assert_eq!(
            (first.line, first.column),
            (*line, *column),
            "{what}: {shown}"
        );
        assert!(
            shown.starts_with(&format!("error: bad.yaml:{line}:{column}: ")),
            "{what}: {shown}"
        );
        for w in *words {
            assert!(shown.contains(w), "{what}: `{w}` missing from: {shown}");
        }
    }
}

#[test]
fn invalid_utf8_is_reported_where_it_starts() {
    let mut bytes = b"name: t\nseed: 1\n".to_vec();
    bytes.extend_from_slice(&[b'x', 0xff, 0xfe]);
    let errs = Scenario::from_bytes(&bytes, std::path::Path::new("bin.yaml")).unwrap_err();
    assert_eq!((errs.0[0].line, errs.0[0].column), (3, 2));
    assert!(errs.0[0].message.contains("binary"));
}

#[test]
fn several_semantic_errors_are_reported_together() {
    let text = "name: t\ntask: { model: softmax, data: { generator: w1 } }\nserver:\n  rounds: 5\n  min_num_clients: 9\nclients:\n  count: 4\n  groups: [{ share: 0.5 }]\nevents:\n  - { at: { round: 70 }, clients: [1], quit: {} }\n";
    let errs = Scenario::from_str(text, "many.yaml").unwrap_err();
    assert_eq!(errs.0.len(), 3, "{errs}");
    let lines: Vec<usize> = errs.0.iter().map(|e| e.line).collect();
    assert_eq!(lines, [5, 8, 10]);
}

#[test]
fn the_good_base_loads() {
    let s = Scenario::from_str(GOOD, "good.yaml").unwrap();
    assert_eq!(s.config.initial_clients, 4);
}

/// One random edit of a valid scenario.
#[derive(Debug, Clone)]
enum Mutation {
    DeleteLine(usize),
    ReplaceValue(usize, String),
    InsertJunk(usize, String),
    Truncate(usize),
    SwapType(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let junk = prop_oneof![
        Just("{".to_string()),
        Just("- - -".to_string()),
        Just("  : :".to_string()),
        Just("\t\u{7}".to_string()),
        Just("&a *a".to_string()),
        "[ -~]{0,20}",
    ];
    prop_oneof![
        (0usize..20).prop_map(Mutation::DeleteLine),
        (
            0usize..20,
            prop_oneof![
                Just("-1".to_string()),
                Just("1e400".to_string()),
                Just("[]".to_string()),
                Just("{}".to_string()),
                Just("null".to_string()),
                Just("99999999999999999999".to_string()),
                "[a-z0-9]{0,6}"
            ]
        )
            .prop_map(|(l, v)| Mutation::ReplaceValue(l, v)),
        (0usize..20, junk).prop_map(|(l, j)| Mutation::InsertJunk(l, j)),
        (0usize..400).prop_map(Mutation::Truncate),
        (0usize..20).prop_map(Mutation::SwapType),
    ]
}

fn apply(text: &str, m: &Mutation) -> String {
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    let n = lines.len();
    if n == 0 {
        return text.to_string();
    }
    match m {
        Mutation::DeleteLine(i) => {
            lines.remove(i % n);
        }
        Mutation::ReplaceValue(i, v) => {
            let l = &mut lines[i % n];
            if let Some(p) = l.find(": ") {
                l.truncate(p + 2);
                l.push_str(v);
            }
        }
        Mutation::InsertJunk(i, j) => lines.insert(i % (n + 1), j.clone()),
        Mutation::Truncate(k) => return text[..(*k).min(text.len())].to_string(),
        Mutation::SwapType(i) => {
            let l = &mut lines[i % n];
            if let Some(p) = l.find(": ") {
                let v = l[p + 2..].to_string();
                l.truncate(p + 2);
                l.push_str(&format!("[{v}]"));
            }
        }
    }
    lines.join("\n") + "\n"
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn mutated_scenarios_load_or_fail_with_a_position(ms in prop::collection::vec(mutation(), 1..4)) {
        let mut text = GOOD.to_string();
        for m in &ms {
            text = apply(&text, m);
        }
        match Scenario::from_str(&text, "mutant.yaml") {
            Ok(_) => {}
            Err(errs) => {
                prop_assert!(!errs.0.is_empty());
                let lines = text.lines().count().max(1);
                for e in &errs.0 {
                    prop_assert!(e.line >= 1 && e.column >= 1, "{e}");
                    prop_assert!(e.line <= lines + 1, "{e} in a {lines}-line text");
                    prop_assert!(!e.message.is_empty());
                }
            }
        }
    }
}

#[test]
fn a_byte_order_mark_is_accepted() {
    let with_bom = format!("\u{feff}{GOOD}");
    assert!(Scenario::from_str(&with_bom, "bom.yaml").is_ok());
}

#[test]
fn nesting_deeper_than_the_limit_is_refused_at_once() {
    let depth = 100_000;
    let text = format!("name: {}{}\n", "[".repeat(depth), "]".repeat(depth));
    // Refused from the bytes: the YAML parser, left to it, took most of a minute.
    let err = Scenario::from_str(&text, "deep.yaml")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("deep.yaml:1:") && err.contains("nested more than 64 levels"),
        "{err}"
    );
}

#[test]
fn a_file_past_the_size_limit_is_refused_before_it_is_read() {
    let dir = std::env::temp_dir().join(format!("fedsim-big-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let big = dir.join("big.yaml");
    let f = std::fs::File::create(&big).unwrap();
    f.set_len(fedsim::scenario::limits::MAX_BYTES + 1).unwrap();
    let err = Scenario::load(&big).unwrap_err().to_string();
    assert!(
        err.contains("big.yaml:1:1") && err.contains("limited to 16 MiB"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn ten_million_clients_compile_to_their_groups_and_runs_not_a_list_per_client() {
    let text = "name: t
task: { model: softmax, data: { generator: w1 } }
server: { rounds: 3 }
clients:
  count: 6000000
  groups:
    - { name: fast, share: 0.5, compute: { per_sample: 1ms } }
    - { name: slow, share: 0.5, compute: { per_sample: 5ms } }
events:
  - { at: { round: 1 }, join: 4000000 }
  - { at: { round: 1 }, clients: { group: slow }, quit: {} }
  - { at: { round: 2 }, clients: { range: [10, 999999] }, crash: {} }
";
    let cfg = Scenario::from_str(text, "big.yaml").unwrap().config;
    let per_sample = |ms: f64| Profile {
        per_sample_us: Dist::Fixed(ms * 1000.0),
        ..Profile::default()
    };
    let blocks = [(0, 3_000_000), (3_000_000, 6_000_000)];
    let expected = Profiles::groups(&blocks, vec![per_sample(1.0), per_sample(5.0)], 10_000_000);
    assert_eq!(cfg.profiles, expected);
    // Joiners take the groups in turn.
    assert_eq!(cfg.profiles.get(9_999_999), &per_sample(5.0));
    let targets: Vec<Clients> = cfg.faults.iter().map(|f| f.clients.clone()).collect();
    assert_eq!(
        targets,
        [
            Clients::from(6_000_000..10_000_000),
            Clients::from(3_000_000..6_000_000),
            Clients::from(10..1_000_000),
        ]
    );
}

#[test]
fn a_quote_inside_a_plain_scalar_hides_no_nesting() {
    for mark in ["'", "\"", "#"] {
        let text = format!(
            "name: [a{mark}b, {}{}]\n",
            "[".repeat(80_000),
            "]".repeat(80_000)
        );
        let errs = Scenario::from_str(&text, "deep.yaml").unwrap_err();
        assert_eq!(errs.0.len(), 1);
        assert_eq!(errs.0[0].line, 1);
        assert!(
            errs.0[0].message.contains("nested more than 64 levels"),
            "{}",
            errs.0[0]
        );
    }
}

#[test]
fn thousands_of_bad_events_are_reported_as_the_first_few_and_a_note() {
    let mut text = String::from(GOOD);
    for _ in 0..3000 {
        text.push_str("  - { at: { round: 1 }, clients: [99], quit: {} }\n");
    }
    let errs = Scenario::from_str(&text, "many.yaml").unwrap_err();
    assert_eq!(errs.0.len(), 21);
    assert!(errs.0[0].message.contains("client 99 does not exist"));
    assert!(errs
        .0
        .last()
        .unwrap()
        .message
        .contains("and more problems, not listed"));
}

#[test]
fn an_alias_bomb_is_refused_before_it_is_expanded() {
    let ids = vec!["1"; 1000].join(",");
    let mut text = String::from(GOOD);
    text.push_str(&format!(
        "  - &e {{ at: {{ round: 1 }}, clients: [{ids}], slow: {{ factor: 2, for: 1 round }} }}\n"
    ));
    for _ in 0..5000 {
        text.push_str("  - *e\n");
    }
    let errs = Scenario::from_str(&text, "bomb.yaml").unwrap_err();
    assert!(errs.0[0].message.contains("aliases"), "{}", errs.0[0]);
}
