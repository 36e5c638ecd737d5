//! One test (or a few) per class of fault behaviour, each on a small federation whose timing
//! is worked out by hand.

use fedsim::dist::Dist;
use fedsim::fed_learn::EventType;
use fedsim::sim::{
    Action, Actor, Direction, EventRecord, Fault, SimEvent, Span, Trigger, Val, SECOND,
};
use fedsim::{RunResult, SimConfig, Simulation};

use super::invariants;
use crate::common::*;

const MS: u64 = 1_000;

/// `n` W1 clients, every one in every round and needed to close it, 10 ms of latency each
/// way, `per_sample_us` of compute per sample, no jitter on retries.
fn federation(n: u32, rounds: u32, per_sample_us: f64) -> SimConfig {
    let mut cfg = small(n, rounds, per_sample_us);
    cfg.profiles
        .edit_all(|p| p.latency_us = Dist::Fixed(10_000.0));
    cfg.retry.jitter = 0.0;
    cfg
}

fn at(cfg: &mut SimConfig, when: Trigger, clients: Vec<u32>, action: Action) {
    cfg.faults.push(Fault {
        at: when,
        clients: clients.into(),
        action,
    });
}

fn corrupt(direction: Direction) -> Action {
    Action::Corrupt {
        messages: 1,
        direction,
    }
}

fn run(cfg: SimConfig) -> RunResult {
    let r = Simulation::new(cfg.clone())
        .record_wire(true)
        .run()
        .expect("runs");
    if let Err(e) = invariants::check(&cfg, &r) {
        panic!("{e}");
    }
    r
}

fn retries(r: &RunResult, client: u32) -> Vec<&EventRecord> {
    about(&r.events, SimEvent::RequestRetry, client)
}

fn detail_str<'a>(e: &'a EventRecord, key: &str) -> &'a str {
    e.detail_str(key).unwrap_or_default()
}

// ---- 1. Lost or damaged messages do not silence a client ------------------------------------

/// Timeline: logins leave at 0 and arrive at 10 ms; their answers reach the clients at 20 ms,
/// which ask for a task at once; the requests arrive at 30 ms and round 0's tasks reach the
/// clients at 40 ms.
#[test]
fn a_damaged_task_request_is_sent_again_after_its_deadline_and_served() {
    let mut cfg = federation(4, 3, 0.0);
    at(
        &mut cfg,
        Trigger::Time(15 * MS),
        vec![2],
        corrupt(Direction::Up),
    );
    let r = run(cfg.clone());
    let bad = about(&r.events, SimEvent::MessageCorrupted, 2);
    assert_eq!(bad.len(), 1);
    assert_eq!((bad[0].actor, bad[0].t_us), (Actor::Server, 30 * MS));
    assert_eq!(detail_str(bad[0], "method"), "GetTask");
    let retry = retries(&r, 2);
    assert_eq!(retry.len(), 1, "{retry:?}");
    assert_eq!(detail_str(retry[0], "method"), "GetTask");
    assert_eq!(detail_u(retry[0], "attempt"), 1);
    // Sent at 20 ms; no answer by its 30 s deadline; then a 1 s backoff.
    assert_eq!(
        retry[0].t_us,
        20 * MS + cfg.retry.deadline + cfg.retry.initial
    );
    let served = about(&r.events, EventType::SendModel, 2);
    assert_eq!(
        (served[0].round, served[0].t_us),
        (Some(0), retry[0].t_us + 10 * MS)
    );
    assert_eq!(r.rounds.len(), 3);
    assert!(r.rounds.iter().all(|s| s.aggregated == 4 && !s.timed_out));
}

#[test]
fn a_damaged_task_is_asked_for_again_after_a_backoff_and_served_again() {
    let mut cfg = federation(4, 3, 0.0);
    // After the login answer left (10 ms), before the task does (30 ms).
    at(
        &mut cfg,
        Trigger::Time(25 * MS),
        vec![2],
        corrupt(Direction::Down),
    );
    let r = run(cfg.clone());
    let bad = about(&r.events, SimEvent::MessageCorrupted, 2);
    assert_eq!((bad[0].actor, bad[0].t_us), (Actor::Client(2), 40 * MS));
    let retry = retries(&r, 2);
    assert_eq!(retry.len(), 1, "{retry:?}");
    assert_eq!(detail_str(retry[0], "method"), "GetTask");
    // The damaged answer fails the call at once: no waiting for the deadline.
    assert_eq!(retry[0].t_us, 40 * MS + cfg.retry.initial);
    let served: Vec<_> = about(&r.events, EventType::SendModel, 2)
        .into_iter()
        .filter(|e| e.round == Some(0))
        .collect();
    assert_eq!(
        served.len(),
        2,
        "the same request, sent again, is served again"
    );
    assert_eq!(served[1].t_us, retry[0].t_us + 10 * MS);
    assert!(r.rounds.iter().all(|s| s.aggregated == 4 && !s.timed_out));
}

#[test]
fn a_damaged_login_is_sent_again_after_its_deadline() {
    let mut cfg = federation(4, 2, 0.0);
    at(&mut cfg, Trigger::Time(0), vec![2], corrupt(Direction::Up));
    let r = run(cfg.clone());
    let bad = about(&r.events, SimEvent::MessageCorrupted, 2);
    assert_eq!((bad[0].actor, bad[0].t_us), (Actor::Server, 10 * MS));
    assert_eq!(detail_str(bad[0], "method"), "Register");
    let retry = retries(&r, 2);
    assert_eq!(retry.len(), 1, "{retry:?}");
    assert_eq!(detail_str(retry[0], "method"), "Register");
    assert_eq!(retry[0].t_us, cfg.retry.deadline + cfg.retry.initial);
    let registered = about(&r.events, EventType::ClientRegister, 2);
    assert_eq!(registered[0].t_us, retry[0].t_us + 10 * MS);
    assert!(!about(&r.events, EventType::ReceiveContribution, 2).is_empty());
}

#[test]
fn a_damaged_login_answer_is_asked_for_again_and_the_client_keeps_its_registration() {
    let mut cfg = federation(4, 2, 0.0);
    at(
        &mut cfg,
        Trigger::Time(0),
        vec![2],
        corrupt(Direction::Down),
    );
    let r = run(cfg.clone());
    let retry = retries(&r, 2);
    assert_eq!(retry.len(), 1, "{retry:?}");
    assert_eq!(detail_str(retry[0], "method"), "Register");
    assert_eq!(retry[0].t_us, cfg.retry.deadline + cfg.retry.initial);
    assert_eq!(about(&r.events, EventType::ClientRegister, 2).len(), 1);
    // Round 0, which selected it when it registered, waits for it and gets its update.
    let contributed = about(&r.events, EventType::ReceiveContribution, 2);
    assert_eq!(contributed[0].round, Some(0));
    assert!(contributed[0].t_us > retry[0].t_us);
    assert!(r.rounds.iter().all(|s| s.aggregated == 4));
}

#[test]
fn a_damaged_contribution_is_sent_again_and_accepted_in_its_round() {
    let mut cfg = federation(4, 2, 1000.0);
    // The task reaches client 2 at 40 ms; its contribution leaves after training.
    at(
        &mut cfg,
        Trigger::Time(50 * MS),
        vec![2],
        corrupt(Direction::Up),
    );
    let r = run(cfg);
    assert_eq!(rejected(&r.events, "corrupt").len(), 1);
    let retry = retries(&r, 2);
    assert_eq!(retry.len(), 1, "{retry:?}");
    assert_eq!(detail_str(retry[0], "method"), "SubmitUpdate");
    let got = about(&r.events, EventType::ReceiveContribution, 2);
    assert_eq!(
        (got[0].round, got[0].t_us),
        (Some(0), retry[0].t_us + 10 * MS)
    );
    assert!(r.rounds.iter().all(|s| s.aggregated == 4));
}

#[test]
fn a_contribution_sent_again_after_its_answer_was_lost_is_acknowledged_not_counted_twice() {
    let mut cfg = federation(5, 1, 1000.0);
    // Client 4 is slow, so round 0 is still open when client 2 sends its update again.
    cfg.profiles[4].per_sample_us = Dist::Fixed(SECOND as f64);
    // The next message to client 2 after its task (40 ms) is the answer to its update.
    at(
        &mut cfg,
        Trigger::Time(50 * MS),
        vec![2],
        corrupt(Direction::Down),
    );
    let r = run(cfg);
    let retry = retries(&r, 2);
    assert_eq!(retry.len(), 1, "{retry:?}");
    assert_eq!(detail_str(retry[0], "method"), "SubmitUpdate");
    assert!(retry[0].t_us < r.rounds[0].t_us, "round 0 was still open");
    assert_eq!(about(&r.events, EventType::ReceiveContribution, 2).len(), 1);
    assert!(about(&r.events, SimEvent::ContributionRejected, 2).is_empty());
    assert_eq!(r.rounds[0].aggregated, 5);
}

#[test]
fn an_idle_client_is_answered_before_its_deadline_and_never_retries() {
    let mut cfg = federation(4, 3, 1000.0);
    cfg.server.clients_per_round = 1;
    cfg.server.min_num_clients = 1;
    // A round lasts minutes: the three clients not selected wait through it.
    cfg.profiles
        .edit_all(|p| p.per_sample_us = Dist::Fixed(2.0 * SECOND as f64));
    let r = run(cfg.clone());
    assert!(of(&r.events, SimEvent::RequestRetry).is_empty());
    let hold = cfg.retry.deadline / 2;
    for c in 0..4 {
        let asks: Vec<u64> = r
            .wire
            .iter()
            .filter(|w| w.client == c && w.method == "GetTask")
            .map(|w| w.sent_us)
            .collect();
        // Never more than the hold (plus a round trip) without asking again, while idle.
        let longest = asks.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
        assert!(asks.len() > 3, "client {c}: {asks:?}");
        assert!(
            longest <= hold + 20 * MS || longest > 60 * SECOND,
            "client {c} asked at {asks:?}"
        );
    }
}

#[test]
fn under_loss_and_corruption_every_client_keeps_contributing() {
    let mut cfg = federation(10, 12, 100.0);
    cfg.seed = 5;
    cfg.server.min_num_clients = 5;
    cfg.server.wait_after_min_clients = 20 * SECOND;
    cfg.server.round_timeout = 120 * SECOND;
    cfg.server.heart_beat_interval = 10 * SECOND;
    cfg.transport.loss_rate = 0.1;
    cfg.transport.corruption_rate = 0.05;
    cfg.retry.deadline = 5 * SECOND;
    let r = run(cfg);
    assert!(!of(&r.events, SimEvent::MessageLost).is_empty());
    assert!(!of(&r.events, SimEvent::RequestRetry).is_empty());
    assert_eq!(r.rounds.len(), 12);
    for c in 0..10 {
        let late = about(&r.events, EventType::ReceiveContribution, c)
            .into_iter()
            .filter(|e| e.round >= Some(6))
            .count();
        assert!(
            late >= 3,
            "client {c} contributed in {late} of the last 6 rounds"
        );
    }
}

// ---- 2. The server gives up as documented ----------------------------------------------------

fn gives_up_after_the_last_round(r: &RunResult, cfg: &SimConfig) {
    let end = r.events.last().unwrap();
    assert!(is(end, SimEvent::RunEnd));
    assert_eq!(end.detail_str("reason"), Some("not_enough_clients"));
    let give_up = cfg.server.round_timeout.max(cfg.server.heart_beat_timeout);
    assert_eq!(end.t_us, r.rounds.last().unwrap().t_us + give_up);
    assert!(r.rounds.len() < (cfg.server.num_rounds - cfg.server.start_round) as usize);
}

#[test]
fn a_federation_below_min_num_clients_after_quits_gives_up() {
    let mut cfg = federation(4, 6, 0.0);
    cfg.server.min_num_clients = 3;
    cfg.server.heart_beat_interval = 10 * SECOND;
    at(&mut cfg, Trigger::Round(2), vec![0, 1], Action::Quit);
    let r = run(cfg.clone());
    assert_eq!(r.rounds.len(), 3);
    gives_up_after_the_last_round(&r, &cfg);
}

#[test]
fn a_federation_below_min_num_clients_after_crashes_gives_up() {
    let mut cfg = federation(4, 6, 0.0);
    cfg.server.min_num_clients = 3;
    cfg.server.round_timeout = 60 * SECOND;
    cfg.server.heart_beat_interval = 10 * SECOND;
    cfg.server.heart_beat_timeout = 120 * SECOND;
    at(&mut cfg, Trigger::Round(2), vec![0, 1], Action::Crash);
    let r = run(cfg.clone());
    assert_eq!(of(&r.events, SimEvent::ClientRemoved).len(), 2);
    gives_up_after_the_last_round(&r, &cfg);
}

#[test]
fn a_federation_below_min_num_clients_after_dropouts_and_removals_gives_up() {
    let mut cfg = federation(3, 8, 0.0);
    cfg.server.round_timeout = 60 * SECOND;
    cfg.server.heart_beat_interval = 10 * SECOND;
    cfg.server.heart_beat_timeout = 300 * SECOND;
    at(
        &mut cfg,
        Trigger::Round(1),
        vec![0],
        Action::Dropout(Span::Time(7200 * SECOND)),
    );
    let r = run(cfg.clone());
    let removed = about(&r.events, SimEvent::ClientRemoved, 0);
    assert_eq!(removed.len(), 1);
    assert!(removed[0].t_us <= r.rounds.last().unwrap().t_us);
    gives_up_after_the_last_round(&r, &cfg);
    assert!(r.events.len() < 400, "{} events", r.events.len());
}

// ---- 3. A dropped-out client is silent -------------------------------------------------------

#[test]
fn a_quit_scripted_during_a_dropout_takes_effect_when_the_client_is_back() {
    let mut cfg = federation(4, 40, 50_000.0);
    cfg.server.min_num_clients = 2;
    cfg.server.heart_beat_interval = 5 * SECOND;
    let out = Action::Dropout(Span::Time(60 * SECOND));
    at(&mut cfg, Trigger::Time(SECOND), vec![1], out);
    at(&mut cfg, Trigger::Time(10 * SECOND), vec![1], Action::Quit);
    let r = run(cfg);
    let back = about(&r.events, SimEvent::DropoutEnd, 1);
    assert_eq!(back[0].t_us, 61 * SECOND);
    let quit = about(&r.events, EventType::ClientQuit, 1);
    assert_eq!(quit.len(), 1);
    assert_eq!(quit[0].t_us, 61 * SECOND + 10 * MS);
    let sent_while_out = r
        .wire
        .iter()
        .filter(|w| w.client == 1 && w.direction == Direction::Up)
        .filter(|w| w.sent_us > SECOND && w.sent_us < 61 * SECOND)
        .count();
    assert_eq!(sent_while_out, 0);
}

// ---- 4. Links are first in, first out --------------------------------------------------------

#[test]
fn heavy_tailed_latency_redrawn_every_round_never_reorders_a_link() {
    let mut cfg = federation(8, 12, 500.0);
    cfg.server.min_num_clients = 4;
    cfg.server.wait_after_min_clients = 2 * SECOND;
    cfg.profiles.edit_all(|p| {
        p.latency_us = Dist::LogNormal {
            mu: (200.0 * MS as f64).ln(),
            sigma: 1.5,
        };
        p.per_round = true;
    });
    for (round, client) in [(3, 1), (5, 2), (7, 3), (9, 4)] {
        at(&mut cfg, Trigger::Round(round), vec![client], Action::Quit);
    }
    let r = run(cfg);
    invariants::links_are_fifo(&r.wire).unwrap();
    assert_eq!(of(&r.events, EventType::ClientQuit).len(), 4);
    assert!(rejected(&r.events, "unknown_token").is_empty());
}

// ---- 5. Overlapping faults compose -----------------------------------------------------------

fn slow(factor: f64, span: Span, device: bool, link: bool) -> Action {
    Action::Slow {
        factor,
        span,
        device,
        link,
    }
}

#[test]
fn overlapping_device_slowdowns_multiply() {
    let mut cfg = federation(3, 5, 1000.0);
    at(
        &mut cfg,
        Trigger::Round(1),
        vec![0],
        slow(2.0, Span::Rounds(3), true, false),
    );
    at(
        &mut cfg,
        Trigger::Round(1),
        vec![0],
        slow(3.0, Span::Rounds(1), true, false),
    );
    let base = run(federation(3, 5, 1000.0));
    let r = run(cfg);
    let starts = about(&r.events, SimEvent::SlowStart, 0);
    assert_eq!(starts[1].detail("combined"), Some(&Val::F(6.0)));
    let busy = |r: &RunResult, round| {
        let got = about(&r.events, EventType::ReceiveContribution, 0)
            .into_iter()
            .find(|e| e.round == Some(round))
            .unwrap()
            .t_us;
        let start = in_round(&r.events, START, round)[0].t_us;
        got - start
    };
    // From round 1 on, client 0's task request is held when the round starts: its round
    // is the task's 10 ms down, training, and 10 ms back up.
    let rtt = 20 * MS;
    let train = busy(&base, 1) - rtt;
    assert_eq!(busy(&r, 1) - rtt, 6 * train);
    assert_eq!(busy(&r, 2) - rtt, 2 * train);
    assert_eq!(about(&r.events, SimEvent::SlowEnd, 0).len(), 2);
}

#[test]
fn a_timed_slowdown_ending_leaves_a_round_long_one_in_force() {
    let mut cfg = federation(3, 5, 1000.0);
    at(
        &mut cfg,
        Trigger::Round(1),
        vec![0],
        slow(10.0, Span::Rounds(3), false, true),
    );
    at(
        &mut cfg,
        Trigger::Round(1),
        vec![0],
        slow(2.0, Span::Time(150 * MS), false, true),
    );
    let r = run(cfg);
    let ends = about(&r.events, SimEvent::SlowEnd, 0);
    assert_eq!(ends.len(), 2, "{ends:?}");
    assert_eq!(ends[0].detail("in_force"), Some(&Val::U(1)));
    assert_eq!(ends[0].detail("combined"), Some(&Val::F(10.0)));
    assert_eq!(ends[1].t_us, in_round(&r.events, START, 4)[0].t_us);
    // Between the two ends, messages to client 0 still take 10 × 10 ms.
    let task = r
        .wire
        .iter()
        .find(|w| w.client == 0 && w.task && w.sent_us >= ends[0].t_us)
        .unwrap();
    assert!(task.sent_us < ends[1].t_us);
    assert_eq!(task.arrived_us, Some(task.sent_us + 100 * MS));
}

#[test]
fn overlapping_dropouts_keep_the_client_out_until_the_last_ends() {
    let mut cfg = federation(4, 8, 1000.0);
    cfg.server.min_num_clients = 3;
    cfg.server.wait_after_min_clients = SECOND;
    at(
        &mut cfg,
        Trigger::Round(1),
        vec![2],
        Action::Dropout(Span::Rounds(2)),
    );
    at(
        &mut cfg,
        Trigger::Round(2),
        vec![2],
        Action::Dropout(Span::Rounds(3)),
    );
    let r = run(cfg);
    let ends = about(&r.events, SimEvent::DropoutEnd, 2);
    assert_eq!(ends.len(), 2);
    assert_eq!(ends[0].detail("in_force"), Some(&Val::U(1)));
    assert_eq!(ends[1].t_us, in_round(&r.events, START, 5)[0].t_us);
    let spans = invariants::dropout_spans(&r);
    assert_eq!(spans[&2].len(), 1, "one span out: {:?}", spans[&2]);
    for round in 2..5 {
        assert!(about(&r.events, EventType::ReceiveContribution, 2)
            .iter()
            .all(|e| e.round != Some(round)));
    }
}

/// Every fault kind, started twice over on one client in every pairing and overlap, keeps
/// the invariants (each start one end, silence while out, the run ends).
#[test]
fn every_pair_of_fault_kinds_on_one_client_composes() {
    let kinds = [
        Action::Dropout(Span::Rounds(2)),
        Action::Dropout(Span::Time(20 * SECOND)),
        slow(3.0, Span::Rounds(2), true, false),
        slow(5.0, Span::Time(20 * SECOND), true, true),
        slow(7.0, Span::Rounds(1), false, true),
        Action::Late { delay: 30 * SECOND },
        Action::Corrupt {
            messages: 2,
            direction: Direction::Up,
        },
        Action::Corrupt {
            messages: 2,
            direction: Direction::Down,
        },
        Action::Quit,
        Action::Crash,
    ];
    for (i, a) in kinds.iter().enumerate() {
        for (j, b) in kinds.iter().enumerate() {
            let mut cfg = federation(4, 5, 20_000.0);
            cfg.server.min_num_clients = 2;
            cfg.server.wait_after_min_clients = 5 * SECOND;
            cfg.server.round_timeout = 60 * SECOND;
            cfg.server.heart_beat_interval = 10 * SECOND;
            cfg.server.heart_beat_timeout = 60 * SECOND;
            at(&mut cfg, Trigger::Round(1), vec![1], a.clone());
            // The second starts while the first is in force: in the same round, or 2 s later.
            let when = if j % 2 == 0 {
                Trigger::Round(1)
            } else {
                Trigger::Time(3 * SECOND)
            };
            at(&mut cfg, when, vec![1], b.clone());
            let r = Simulation::new(cfg.clone())
                .record_wire(true)
                .run()
                .unwrap();
            if let Err(e) = invariants::check(&cfg, &r) {
                panic!("{a:?} then {b:?} ({i}, {j}): {e}");
            }
        }
    }
}

// ---- 6. Faults on clients that have not joined yet -------------------------------------------

#[test]
fn a_fault_on_a_client_that_has_not_joined_waits_for_its_join() {
    let mut cfg = federation(4, 6, 1000.0);
    cfg.profiles.push(cfg.profiles[0].clone());
    cfg.server.min_num_clients = 3;
    at(&mut cfg, Trigger::Round(3), vec![4], Action::Join);
    at(
        &mut cfg,
        Trigger::Round(1),
        vec![4],
        slow(2.0, Span::Rounds(4), true, false),
    );
    at(
        &mut cfg,
        Trigger::Time(0),
        vec![4],
        Action::Late { delay: SECOND },
    );
    let r = run(cfg);
    let join = about(&r.events, SimEvent::ClientJoin, 4);
    assert_eq!(join.len(), 1);
    let first = r.events.iter().find(|e| e.client == Some(4)).unwrap();
    assert_eq!(
        first.seq, join[0].seq,
        "nothing about client 4 before it joins"
    );
    let slowed = about(&r.events, SimEvent::SlowStart, 4);
    assert_eq!(slowed.len(), 1);
    assert_eq!(slowed[0].t_us, join[0].t_us);
    assert_eq!(about(&r.events, EventType::ClientRegister, 4).len(), 1);
    assert!(!about(&r.events, EventType::ReceiveModel, 4).is_empty());
}

// ---- 7. Nothing after run_end ----------------------------------------------------------------

#[test]
fn what_happens_at_the_final_instant_is_logged_before_run_end() {
    let cfg = federation(4, 3, 1000.0);
    let end = run(cfg.clone()).events.last().unwrap().t_us;
    let mut at_end = cfg;
    at(
        &mut at_end,
        Trigger::Time(end),
        vec![0],
        Action::Dropout(Span::Time(SECOND)),
    );
    at(
        &mut at_end,
        Trigger::Time(end),
        vec![1],
        slow(2.0, Span::Time(SECOND), true, true),
    );
    let r = run(at_end);
    let last = r.events.last().unwrap();
    assert!(is(last, SimEvent::RunEnd));
    assert_eq!(last.t_us, end);
    let dropped = about(&r.events, SimEvent::DropoutStart, 0);
    assert_eq!(dropped[0].t_us, end);
    assert_eq!(about(&r.events, SimEvent::SlowStart, 1).len(), 2);
}

#[test]
fn lossy_runs_log_nothing_after_run_end() {
    for seed in 0..20 {
        let mut cfg = federation(6, 4, 100.0);
        cfg.seed = seed;
        cfg.server.min_num_clients = 3;
        cfg.transport.loss_rate = 0.3;
        cfg.transport.corruption_rate = 0.2;
        cfg.retry.deadline = 2 * SECOND;
        run(cfg);
    }
}

// ---- The shortcut for links that always answer in time ------------------------------------

/// Clients whose every call is sure to be answered in time set no deadline timers and keep
/// no copies to send again; the reference path (every call tracked in full) gives the same
/// bytes.
#[test]
fn clients_sure_of_their_answers_run_exactly_as_the_reference_path() {
    let mut lossless = federation(6, 4, 500.0);
    lossless.server.clients_per_round = 3;
    lossless.server.min_num_clients = 2;
    let mut w1 = SimConfig::w1(50, 10, 3);
    w1.seed = 3;
    for cfg in [lossless, w1] {
        let run = |reference| {
            let r = Simulation::new(cfg.clone())
                .record_wire(true)
                .reference_paths(reference)
                .run()
                .unwrap();
            let bytes = (r.events.to_jsonl(), r.model_bytes(), r.wire.clone());
            (bytes, r)
        };
        let ((fast, r), (reference, _)) = (run(false), run(true));
        assert!(fast == reference, "the shortcut changed the run");
        assert!(of(&r.events, SimEvent::RequestRetry).is_empty());
    }
}
