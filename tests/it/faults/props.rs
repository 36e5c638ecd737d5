//! Random valid federations with every fault kind, lossy and corrupting links, joins and
//! per-round link draws, run and checked against the invariants.
//!
//! `cargo test --test faults` runs 300 cases; more with
//! `FEDSIM_FAULT_CASES=5000 cargo test --release --test faults -- --ignored`.

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

use fedsim::dist::Dist;
use fedsim::sim::{
    Action, Direction, Fault, Profile, Profiles, RetryConfig, Span, Trigger, SECOND,
};
use fedsim::{SimConfig, Simulation};

use super::invariants;

const MS: u64 = 1_000;

fn span() -> impl Strategy<Value = Span> {
    prop_oneof![
        (1u64..120).prop_map(|s| Span::Time(s * SECOND)),
        (0u32..4).prop_map(Span::Rounds),
    ]
}

/// One scripted fault, aimed at any client id (some only join later).
fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        span().prop_map(Action::Dropout),
        Just(Action::Quit),
        (1u64..60).prop_map(|s| Action::Late { delay: s * SECOND }),
        (span(), 1u32..8, 0u8..3).prop_map(|(span, f, what)| Action::Slow {
            // Distinct factors, so a slowdown's events can be told from another's.
            factor: 1.0 + f64::from(f) / 4.0 + f64::from(what) / 64.0,
            span,
            device: what != 1,
            link: what != 0,
        }),
        Just(Action::Crash),
        (1u32..4, any::<bool>()).prop_map(|(n, up)| Action::Corrupt {
            messages: n,
            direction: if up { Direction::Up } else { Direction::Down },
        }),
    ]
}

fn trigger(rounds: u32) -> impl Strategy<Value = Trigger> {
    prop_oneof![
        (0..rounds).prop_map(Trigger::Round),
        (0u64..300).prop_map(|s| Trigger::Time(s * SECOND)),
    ]
}

/// A small federation and what goes wrong in it.
#[derive(Debug, Clone)]
pub struct Case {
    cfg: SimConfig,
}

fn case() -> impl Strategy<Value = Case> {
    (3u32..8, 0u32..3, 2u32..6)
        .prop_flat_map(|(n, joins, rounds)| {
            let faults = prop::collection::vec(
                (
                    trigger(rounds),
                    prop::collection::btree_set(0..n + joins, 1..3),
                    action(),
                ),
                0..7,
            );
            let join = (trigger(rounds), Just(joins));
            let net = (
                prop::sample::select(vec![0.0, 0.0, 0.05, 0.2]),
                prop::sample::select(vec![0.0, 0.0, 0.05, 0.15]),
                0u64..200,
                any::<bool>(),
                prop::sample::select(vec![0.0, 1e5, 1e7]),
            );
            let server = (
                1..=n as usize,
                0u64..20,
                20u64..120,
                2u64..15,
                2u64..5,
                0..=n as usize,
            );
            let retry = (2u64..40, 0u64..3000, 0u64..20);
            let per_sample = prop::sample::select(vec![0.0, 100.0, 2000.0]);
            (
                Just((n, rounds)),
                faults,
                join,
                net,
                server,
                retry,
                per_sample,
                any::<u64>(),
            )
        })
        .prop_map(
            |((n, rounds), faults, join, net, server, retry, per_sample, seed)| {
                let (loss, corruption, latency_ms, per_round, bandwidth) = net;
                let (min, wait, timeout, hb, hb_times, per_round_k) = server;
                let (deadline, initial_ms, max_s) = retry;
                let mut cfg = SimConfig::w1(n, per_round_k, rounds);
                cfg.name = "fault-case".into();
                cfg.seed = seed;
                cfg.server.min_num_clients = min;
                cfg.server.wait_after_min_clients = wait * SECOND;
                cfg.server.round_timeout = timeout * SECOND;
                cfg.server.heart_beat_interval = hb * SECOND;
                cfg.server.heart_beat_timeout = hb * hb_times * SECOND;
                cfg.transport.loss_rate = loss;
                cfg.transport.corruption_rate = corruption;
                cfg.retry = RetryConfig {
                    deadline: deadline * SECOND,
                    initial: initial_ms * MS,
                    max: (initial_ms * MS).max(max_s * SECOND),
                    ..RetryConfig::default()
                };
                let latency = if per_round {
                    Dist::LogNormal {
                        mu: ((latency_ms.max(1) * MS) as f64).ln(),
                        sigma: 1.0,
                    }
                } else {
                    Dist::Fixed((latency_ms * MS) as f64)
                };
                let total = n + join.1;
                cfg.profiles = Profiles::uniform(
                    total,
                    Profile {
                        per_sample_us: Dist::Fixed(per_sample),
                        latency_us: latency,
                        bandwidth: Dist::Fixed(if bandwidth > 0.0 {
                            bandwidth
                        } else {
                            f64::INFINITY
                        }),
                        per_round,
                    },
                );
                if join.1 > 0 {
                    cfg.faults.push(Fault {
                        at: join.0,
                        clients: (n..total).collect(),
                        action: Action::Join,
                    });
                }
                for (at, clients, action) in faults {
                    cfg.faults.push(Fault {
                        at,
                        clients: clients.into_iter().collect(),
                        action,
                    });
                }
                Case { cfg }
            },
        )
}

/// Runs `cfg`, recording the wire, and checks every invariant; every tenth case is run again
/// on two threads and must give the same bytes.
fn run_and_check(case: Case, index: usize) -> Result<(), TestCaseError> {
    let run = |threads| {
        let mut cfg = case.cfg.clone();
        cfg.threads = threads;
        Simulation::new(cfg).record_wire(true).run()
    };
    let r = run(1).map_err(|e| TestCaseError::fail(e.to_string()))?;
    if let Err(e) = invariants::check(&case.cfg, &r) {
        if std::env::var("FEDSIM_DUMP").is_ok() {
            std::fs::write("/tmp/case.jsonl", r.events.to_jsonl()).unwrap();
            std::fs::write("/tmp/case.wire", format!("{:#?}\n{:#?}", case.cfg, r.wire)).unwrap();
        }
        return Err(TestCaseError::fail(e));
    }
    if index.is_multiple_of(10) {
        let again = run(2).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(
            again.events.to_jsonl() == r.events.to_jsonl(),
            "logs differ across threads"
        );
        prop_assert!(again.wire == r.wire, "wire records differ across threads");
    }
    Ok(())
}

fn sweep(cases: u32) {
    let config = Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    };
    // The default sweep is the same every time; the long one draws new cases each time.
    let mut runner = if cases <= 300 {
        TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha))
    } else {
        TestRunner::new(config)
    };
    let index = std::cell::Cell::new(0);
    let outcome = runner.run(&case(), |c| {
        index.set(index.get() + 1);
        run_and_check(c, index.get())
    });
    if let Err(e) = outcome {
        panic!("{e}");
    }
    eprintln!("{} cases run (shrinking included)", index.get());
}

#[test]
fn random_federations_with_every_fault_kind_keep_the_invariants() {
    sweep(300);
}

/// The longer sweep: `FEDSIM_FAULT_CASES=N` cases (default 3000).
#[test]
#[ignore]
fn many_random_federations_keep_the_invariants() {
    let n = std::env::var("FEDSIM_FAULT_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    sweep(n);
}
