//! The engine's faults, transports, handlers and determinism.

use std::sync::{Arc, Mutex};

use crate::common::*;
use fedsim::dist::Dist;
use fedsim::fed_learn::{EventType, FLContext};
use fedsim::sim::{
    Action, Actor, Culprit, Direction, EventHandler, EventRecord, Failure, Fault, Profile,
    SimEvent, Span, Trigger, SECOND,
};
use fedsim::{SimConfig, Simulation};

/// A federation with every kind of trouble: varied devices and links, gzip + AES-GCM, lost and
/// damaged messages, and scripted dropouts, lateness, slowdowns, joins, quits and a crash.
fn eventful(seed: u64, threads: usize) -> SimConfig {
    let mut cfg = small(16, 6, 500.0);
    cfg.seed = seed;
    cfg.threads = threads;
    cfg.initial_clients = 14;
    cfg.server.clients_per_round = 8;
    cfg.server.min_num_clients = 5;
    cfg.server.wait_after_min_clients = 3 * SECOND;
    cfg.server.round_timeout = 60 * SECOND;
    cfg.server.heart_beat_timeout = 120 * SECOND;
    cfg.server.heart_beat_interval = 20 * SECOND;
    cfg.server.cross_site_validation = true;
    cfg.data.test_fraction = 0.25;
    cfg.transport.gzip_level = Some(1);
    cfg.transport.aes_key = Some([7; 32]);
    cfg.transport.loss_rate = 0.01;
    cfg.transport.corruption_rate = 0.01;
    cfg.profiles.edit_all(|p| {
        *p = Profile {
            per_sample_us: Dist::LogNormal {
                mu: 7.0,
                sigma: 1.0,
            },
            latency_us: Dist::Uniform {
                low: 10_000.0,
                high: 300_000.0,
            },
            bandwidth: Dist::Fixed(2e6),
            per_round: true,
        };
    });
    let f = |at, clients: Vec<u32>, action| Fault {
        at,
        clients: clients.into(),
        action,
    };
    cfg.faults = vec![
        f(
            Trigger::Round(1),
            vec![0, 1],
            Action::Dropout(Span::Rounds(2)),
        ),
        f(
            Trigger::Round(2),
            vec![2, 3, 4, 5, 6, 7, 8, 9],
            Action::Late { delay: 90 * SECOND },
        ),
        f(
            Trigger::Round(1),
            vec![10],
            Action::Slow {
                factor: 20.0,
                span: Span::Time(30 * SECOND),
                device: true,
                link: true,
            },
        ),
        f(Trigger::Time(20 * SECOND), vec![14, 15], Action::Join),
        f(Trigger::Round(3), vec![11], Action::Quit),
        f(Trigger::Round(2), vec![12], Action::Crash),
        f(
            Trigger::Round(1),
            vec![13],
            Action::Corrupt {
                messages: 1,
                direction: Direction::Up,
            },
        ),
    ];
    cfg
}

struct Captured {
    log: Vec<u8>,
    model: Vec<u8>,
    csv: String,
}

fn capture(cfg: SimConfig) -> Captured {
    #[derive(Clone)]
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let sink = Sink(Arc::new(Mutex::new(Vec::new())));
    let r = Simulation::new(cfg)
        .event_sink(Box::new(sink.clone()))
        .run()
        .unwrap();
    let csv = r.rounds.iter().map(|s| format!("{s:?}\n")).collect();
    let log = sink.0.lock().unwrap().clone();
    Captured {
        log,
        model: r.model_bytes(),
        csv,
    }
}

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() {
    let a = capture(eventful(1, 1));
    let b = capture(eventful(1, 1));
    assert!(a.log.len() > 10_000);
    assert!(a.log == b.log, "event logs differ");
    assert_eq!(a.model, b.model);
    assert_eq!(a.csv, b.csv);
    let c = capture(eventful(2, 1));
    assert!(a.log != c.log);
    assert_ne!(a.model, c.model);
}

#[test]
fn one_training_thread_and_four_give_identical_runs() {
    let one = capture(eventful(5, 1));
    let four = capture(eventful(5, 4));
    assert!(
        one.log == four.log,
        "event logs differ between 1 and 4 threads"
    );
    assert_eq!(one.model, four.model);
    assert_eq!(one.csv, four.csv);
}

#[test]
fn every_fault_leaves_its_trace_and_the_run_completes() {
    let r = Simulation::new(eventful(3, 1)).run().unwrap();
    assert!(r.completed);
    assert_eq!(r.rounds.len(), 6);
    let ev = &r.events;
    assert_eq!(of(ev, SimEvent::DropoutStart).len(), 2);
    assert_eq!(of(ev, SimEvent::DropoutEnd).len(), 2);
    assert!(!rejected(ev, "late").is_empty());
    assert_eq!(of(ev, SimEvent::ClientJoin).len(), 2);
    assert_eq!(about(ev, EventType::ClientRegister, 14).len(), 1);
    assert_eq!(about(ev, EventType::ClientQuit, 11).len(), 1);
    let crash = about(ev, SimEvent::ClientCrashed, 12);
    assert_eq!(crash.len(), 1);
    assert!(ev
        .iter()
        .all(|e| e.seq <= crash[0].seq || e.actor != Actor::Client(12)));
    assert_eq!(
        about(ev, SimEvent::ClientRemoved, 12).len(),
        1,
        "the crashed client is removed"
    );
    assert!(!of(ev, SimEvent::SlowStart).is_empty() && !of(ev, SimEvent::SlowEnd).is_empty());
    assert!(
        !rejected(ev, "corrupt").is_empty()
            || !about(ev, SimEvent::MessageCorrupted, 13).is_empty()
    );
    let x = r.cross_site.expect("cross-site validation ran");
    assert_eq!(x.models.last().unwrap(), "server");
    assert!(x
        .accuracy
        .iter()
        .flatten()
        .flatten()
        .all(|a| (0.0..=1.0).contains(a)));
}

#[test]
fn a_scripted_corruption_rejects_that_contribution_as_corrupt() {
    let mut cfg = small(4, 3, 0.0);
    cfg.faults.push(Fault {
        at: Trigger::Round(1),
        clients: vec![2].into(),
        action: Action::Corrupt {
            messages: 1,
            direction: Direction::Up,
        },
    });
    cfg.server.min_num_clients = 3;
    let r = Simulation::new(cfg).run().unwrap();
    let bad = rejected(&r.events, "corrupt");
    assert_eq!(bad.len(), 1);
    assert_eq!((bad[0].client, bad[0].round), (Some(2), Some(1)));
    assert_eq!(r.rounds[1].aggregated, 3);
}

#[test]
fn lossy_links_lose_messages_and_the_run_still_finishes() {
    let mut cfg = small(10, 5, 100.0);
    cfg.server.min_num_clients = 5;
    cfg.server.round_timeout = 20 * SECOND;
    cfg.server.heart_beat_interval = 5 * SECOND;
    cfg.transport.loss_rate = 0.05;
    let r = Simulation::new(cfg).run().unwrap();
    assert!(r.completed);
    assert!(!of(&r.events, SimEvent::MessageLost).is_empty());
    assert_eq!(r.rounds.len(), 5);
}

#[test]
fn damaged_frames_reaching_clients_are_logged_by_them_and_the_run_goes_on() {
    // Tasks are checked and decoded in the pool, other replies on the runtime thread: a
    // damaged frame of either kind is the client's `message_corrupted`, the same on any
    // number of threads.
    let cfg = |threads| {
        let mut cfg = small(10, 5, 100.0);
        cfg.threads = threads;
        cfg.server.min_num_clients = 5;
        cfg.server.round_timeout = 20 * SECOND;
        cfg.server.heart_beat_interval = 5 * SECOND;
        cfg.transport.corruption_rate = 0.1;
        cfg
    };
    let r = Simulation::new(cfg(1)).run().unwrap();
    let damaged = of(&r.events, SimEvent::MessageCorrupted)
        .into_iter()
        .filter(|e| matches!(e.actor, Actor::Client(_)))
        .filter(|e| {
            e.detail_str("error")
                .is_some_and(|m| m.contains("checksum"))
        })
        .count();
    assert!(damaged > 0, "no client saw a damaged frame");
    assert_eq!(r.rounds.len(), 5);
    assert!(
        capture(cfg(1)).log == capture(cfg(2)).log,
        "event logs differ"
    );
}

#[test]
fn slow_device_stretches_its_round_by_the_factor() {
    let mut cfg = small(3, 3, 1000.0);
    let slow = Action::Slow {
        factor: 10.0,
        span: Span::Rounds(1),
        device: true,
        link: false,
    };
    cfg.faults.push(Fault {
        at: Trigger::Round(1),
        clients: vec![0].into(),
        action: slow,
    });
    let r = Simulation::new(cfg).run().unwrap();
    let length = |i: usize| r.rounds[i].t_us - if i == 0 { 0 } else { r.rounds[i - 1].t_us };
    assert_eq!(length(0), 64_000);
    assert_eq!(length(1), 640_000);
    assert_eq!(length(2), 64_000);
}

#[test]
fn w1_learns() {
    let r = Simulation::new(SimConfig::w1(1000, 100, 20))
        .keep_events(false)
        .run()
        .unwrap();
    assert_eq!(r.rounds.len(), 20);
    assert_eq!(r.client_updates, 2000);
    assert!(
        r.metrics.accuracy >= 0.55,
        "W1 accuracy {}",
        r.metrics.accuracy
    );
}

/// What a handler saw of one event: its name, its round, whether a model came with it.
type Seen = (String, Option<i64>, bool);

#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<Seen>>>);

impl EventHandler for Recorder {
    fn handle_event(&mut self, event: &EventRecord, ctx: &FLContext) {
        let name = ctx.props.get_text("event").unwrap().to_string();
        assert_eq!(name, event.event.as_str());
        self.0
            .lock()
            .unwrap()
            .push((name, ctx.props.get_int("round"), ctx.model().is_some()));
    }
}

#[test]
fn handlers_see_all_fifteen_event_types_in_log_order() {
    let mut cfg = small(4, 2, 0.0);
    cfg.server.cross_site_validation = true;
    cfg.server.min_num_clients = 3;
    cfg.data.test_fraction = 0.25;
    cfg.faults.push(Fault {
        at: Trigger::Round(1),
        clients: vec![3].into(),
        action: Action::Quit,
    });
    let rec = Recorder::default();
    let r = Simulation::new(cfg)
        .handler(Box::new(rec.clone()))
        .run()
        .unwrap();
    let seen = rec.0.lock().unwrap();
    let names: Vec<&str> = r.events.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(seen.iter().map(|s| s.0.as_str()).collect::<Vec<_>>(), names);
    for t in EventType::ALL {
        assert!(names.contains(&t.as_str()), "{t} never fired");
    }
    assert!(seen
        .iter()
        .filter(|s| s.0 == "_endAggregation")
        .all(|s| s.2));
    let x = r.cross_site.unwrap();
    assert_eq!(x.clients.len(), 3);
    assert_eq!(
        x.models,
        ["client-0000", "client-0001", "client-0002", "server"]
    );
    assert!(x.accuracy.iter().all(|row| row.iter().all(Option::is_some)));
}

/// A user's own strategy: records what each call saw and never moves the model.
struct Frozen(Arc<Mutex<Vec<Vec<UpdateSeen>>>>);

/// What a strategy saw of one update: client, n_iter, training loss.
type UpdateSeen = (u32, u64, f64);

impl fedsim::aggregate::Aggregator for Frozen {
    fn name(&self) -> &str {
        "frozen"
    }
    fn aggregate(
        &mut self,
        global: &fedsim::learn::Params,
        updates: &[fedsim::aggregate::Update<'_>],
    ) -> fedsim::learn::Params {
        self.0.lock().unwrap().push(
            updates
                .iter()
                .map(|u| (u.client, u.n_iter, u.train_loss))
                .collect(),
        );
        global.clone()
    }
}

#[test]
fn a_user_aggregator_is_used_and_sees_updates_in_client_order() {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let mut cfg = small(6, 4, 100.0);
    for i in 0..6 {
        // Later ids finish first, so arrival order is the reverse of id order.
        cfg.profiles[i].per_sample_us = Dist::Fixed(1000.0 * (6 - i) as f64);
    }
    let r = Simulation::new(cfg)
        .aggregator(Box::new(Frozen(calls.clone())))
        .run()
        .unwrap();
    let calls = calls.lock().unwrap();
    assert_eq!(calls.len(), 4);
    let clients = |call: &Vec<UpdateSeen>| call.iter().map(|u| u.0).collect::<Vec<_>>();
    assert!(calls.iter().all(|c| clients(c) == [0, 1, 2, 3, 4, 5]));
    // Each update carries what its client reported: its n_iter and its training loss.
    for (round, call) in calls.iter().enumerate() {
        for &(client, n_iter, loss) in call {
            let received = r
                .events
                .of(EventType::ReceiveContribution)
                .round(round as u32)
                .client(client)
                .first()
                .unwrap();
            assert_eq!(n_iter, detail_u(received, "n_iter"));
            assert!(loss.is_finite() && loss > 0.0, "{loss}");
        }
    }
    let arrivals: Vec<u32> = r
        .events
        .of(EventType::ReceiveContribution)
        .round(0)
        .iter()
        .filter_map(|e| e.client)
        .collect();
    assert_eq!(arrivals, [5, 4, 3, 2, 1, 0]);
    let initial =
        fedsim::learn::ModelKind::Softmax.init(60, 10, &mut fedsim::rng::stream(0, "x", 0, 0));
    assert_eq!(
        r.params, initial,
        "the frozen strategy never moved the model"
    );
}

/// An aggregator with a bug: it panics in round 2.
struct Buggy;

impl fedsim::aggregate::Aggregator for Buggy {
    fn name(&self) -> &str {
        "buggy"
    }
    fn aggregate(
        &mut self,
        global: &fedsim::learn::Params,
        updates: &[fedsim::aggregate::Update<'_>],
    ) -> fedsim::learn::Params {
        if updates.len() < 4 {
            panic!("index out of range in my aggregator");
        }
        fedsim::aggregate::by_name("fedavg")
            .unwrap()
            .aggregate(global, updates)
    }
}

fn failure_of(r: Result<fedsim::RunResult, fedsim::sim::SimError>) -> (Failure, fedsim::RunResult) {
    match r {
        Err(fedsim::sim::SimError::Failed { failure, partial }) => (failure, *partial),
        Err(e) => panic!("failed otherwise: {e}"),
        Ok(_) => panic!("the run succeeded"),
    }
}

#[test]
fn a_panicking_aggregator_fails_the_run_naming_the_server_and_the_round() {
    let mut cfg = small(4, 5, 0.0);
    cfg.server.min_num_clients = 3;
    cfg.faults.push(Fault {
        at: Trigger::Round(2),
        clients: vec![1].into(),
        action: Action::Quit,
    });
    let (failure, partial) = failure_of(Simulation::new(cfg).aggregator(Box::new(Buggy)).run());
    assert_eq!(failure.culprit, Culprit::Actor(Actor::Server));
    assert_eq!(failure.round, Some(2));
    assert_eq!(failure.message, "index out of range in my aggregator");
    assert_eq!(
        failure.to_string(),
        "server panicked in round 2: index out of range in my aggregator"
    );
    assert!(!partial.completed);
    assert_eq!(partial.error.as_deref(), Some(failure.to_string().as_str()));
    let last = partial.events.last().unwrap();
    assert!(is(last, SimEvent::RunEnd));
    assert_eq!(last.detail_str("reason"), Some("failed"));
    assert_eq!(of(&partial.events, SimEvent::RunEnd).len(), 1);
}

struct PanickyHandler;

impl EventHandler for PanickyHandler {
    fn handle_event(&mut self, event: &EventRecord, _: &FLContext) {
        if event.event == EventType::EndRound.into() && event.round == Some(1) {
            panic!("handler bug");
        }
    }
}

#[test]
fn a_panicking_event_handler_fails_the_run() {
    let cfg = small(3, 4, 0.0);
    let r = Simulation::new(cfg).handler(Box::new(PanickyHandler)).run();
    let (failure, partial) = failure_of(r);
    assert_eq!(failure.culprit, Culprit::Handler);
    assert_eq!(failure.message, "handler bug");
    assert!(partial.rounds.len() < 4);
    assert_eq!(
        partial.events.last().unwrap().detail_str("reason"),
        Some("failed")
    );
}

#[test]
fn a_scripted_crash_is_a_fault_not_a_failure() {
    let mut cfg = small(4, 4, 0.0);
    cfg.server.min_num_clients = 3;
    cfg.server.heart_beat_timeout = 120 * SECOND;
    cfg.server.heart_beat_interval = 30 * SECOND;
    cfg.faults.push(Fault {
        at: Trigger::Round(1),
        clients: vec![2].into(),
        action: Action::Crash,
    });
    let r = Simulation::new(cfg)
        .run()
        .expect("a scripted crash does not fail the run");
    assert!(r.completed && r.error.is_none());
    assert_eq!(of(&r.events, SimEvent::ClientCrashed).len(), 1);
}

/// A strategy with a bug: it returns the model with its tensors in the wrong order.
struct Shuffled;

impl fedsim::aggregate::Aggregator for Shuffled {
    fn name(&self) -> &str {
        "shuffled"
    }
    fn aggregate(
        &mut self,
        global: &fedsim::learn::Params,
        _: &[fedsim::aggregate::Update<'_>],
    ) -> fedsim::learn::Params {
        let mut out = global.clone();
        out.0.reverse();
        out
    }
}

#[test]
fn an_aggregator_returning_a_model_that_does_not_fit_fails_the_run_naming_it() {
    let cfg = small(3, 3, 0.0);
    let run = Simulation::new(cfg).aggregator(Box::new(Shuffled)).run();
    let (failure, partial) = failure_of(run);
    assert_eq!(failure.culprit, Culprit::Actor(Actor::Server));
    assert_eq!(failure.round, Some(0));
    assert!(
        failure
            .message
            .starts_with("aggregator `shuffled` returned a model that does not fit"),
        "{}",
        failure.message
    );
    assert!(!partial.completed);
}

fn yaml_run(aggregator: &str) -> fedsim::RunResult {
    let yaml = format!(
        "name: m\nseed: 5\ntask: {{ model: softmax, data: {{ generator: w1 }} }}\n\
         server: {{ rounds: 3, aggregator: {aggregator} }}\nclients: {{ count: 4 }}\n"
    );
    Simulation::from_yaml_str(&yaml).unwrap().run().unwrap()
}

#[test]
fn fedavgm_settings_written_in_the_scenario_reach_the_server() {
    // With no momentum and a server rate of 1, FedAvgM's step is FedAvg's (Hsu et al. 2019).
    let fedavg = yaml_run("fedavg");
    let plain = yaml_run("{ fedavgm: { server_lr: 1.0, momentum: 0.0 } }");
    // Equal up to f32 rounding: FedAvgM computes g − (g − avg) where FedAvg has avg.
    assert!(max_gap(&plain.params, &fedavg.params) < 1e-6);
    // The defaults (momentum 0.9) and a halved rate each move the model otherwise.
    let default = yaml_run("fedavgm");
    let halved = yaml_run("{ fedavgm: { server_lr: 0.5, momentum: 0.0 } }");
    assert!(max_gap(&default.params, &fedavg.params) > 1e-3);
    assert!(max_gap(&halved.params, &fedavg.params) > 1e-3);
    assert!(max_gap(&halved.params, &default.params) > 1e-3);
}

fn max_gap(a: &fedsim::learn::Params, b: &fedsim::learn::Params) -> f32 {
    a.0.iter()
        .zip(&b.0)
        .flat_map(|((_, x), (_, y))| x.iter().zip(y).map(|(x, y)| (x - y).abs()))
        .fold(0.0, f32::max)
}

/// A selection policy: the lowest ids, always.
struct Lowest;

impl fedsim::aggregate::Selection for Lowest {
    fn select(&self, _: u32, live: &[u32], wanted: usize, _: &mut fedsim::rng::Stream) -> Vec<u32> {
        live[..wanted].to_vec()
    }
}

#[test]
fn a_user_selection_picks_each_rounds_clients() {
    let mut cfg = small(8, 3, 0.0);
    cfg.server.clients_per_round = 3;
    cfg.server.min_num_clients = 8;
    let r = Simulation::new(cfg)
        .selection(Box::new(Lowest))
        .run()
        .unwrap();
    for round in 0..3 {
        let mut trained: Vec<u32> = r
            .events
            .of(EventType::ReceiveContribution)
            .round(round)
            .iter()
            .filter_map(|e| e.client)
            .collect();
        trained.sort_unstable();
        assert_eq!(trained, [0, 1, 2], "round {round}");
    }
}
