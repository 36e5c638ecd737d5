//! Protocol tests, written from the Clara protocol (DESIGN.md §1), not from the output.

use crate::common::*;
use fedsim::dist::Dist;
use fedsim::fed_learn::EventType;
use fedsim::sim::{Action, Actor, Fault, SimEvent, Span, Trigger, SECOND};
use fedsim::Simulation;

#[tokio::test(start_paused = true)]
async fn a_late_client_is_rejected_once_and_its_round_aggregates_the_others() {
    let mut cfg = small(10, 6, 1000.0);
    cfg.server.min_num_clients = 5;
    cfg.server.wait_after_min_clients = 10 * SECOND;
    cfg.faults.push(Fault {
        at: Trigger::Round(3),
        clients: vec![2].into(),
        action: Action::Late { delay: 30 * SECOND },
    });
    let r = Simulation::new(cfg).run_async().await.unwrap();
    let late = rejected(&r.events, "late");
    assert_eq!(late.len(), 1, "{late:?}");
    assert_eq!(late[0].client, Some(2));
    assert_eq!(detail_u(&late[0], "for_round"), 3);
    let agg3 = in_round(&r.events, EventType::EndAggregation, 3);
    assert_eq!(detail_u(agg3[0], "aggregated"), 9);
    assert!(about(&r.events, EventType::ReceiveContribution, 2)
        .iter()
        .all(|e| e.round != Some(3)));
    assert_eq!(r.rounds[3].aggregated, 9);
}

#[tokio::test(start_paused = true)]
async fn after_client_quit_nothing_is_by_or_for_that_client() {
    let mut cfg = small(6, 5, 500.0);
    cfg.server.min_num_clients = 3;
    cfg.faults.push(Fault {
        at: Trigger::Round(2),
        clients: vec![4].into(),
        action: Action::Quit,
    });
    let r = Simulation::new(cfg).run_async().await.unwrap();
    assert!(r.completed);
    let quit = of(&r.events, EventType::ClientQuit);
    assert_eq!(quit.len(), 1);
    assert_eq!(quit[0].client, Some(4));
    let after: Vec<_> = r
        .events
        .iter()
        .filter(|e| e.seq > quit[0].seq && (e.client == Some(4) || e.actor == Actor::Client(4)))
        .collect();
    assert!(after.is_empty(), "{after:?}");
    // The rounds after the quit do not wait for it.
    assert!(
        r.rounds[3..]
            .iter()
            .all(|s| s.aggregated == 5 && !s.timed_out),
        "{:?}",
        r.rounds
    );
}

#[tokio::test(start_paused = true)]
async fn a_silent_client_is_removed_after_heart_beat_timeout_and_never_selected_again() {
    let mut cfg = small(5, 6, 0.0);
    cfg.server.min_num_clients = 3;
    cfg.server.wait_after_min_clients = 2 * 60 * SECOND;
    cfg.server.heart_beat_timeout = 5 * 60 * SECOND;
    cfg.server.heart_beat_interval = 3600 * SECOND;
    let long = Span::Time(1000 * 3600 * SECOND);
    cfg.faults.push(Fault {
        at: Trigger::Round(1),
        clients: vec![1].into(),
        action: Action::Dropout(long),
    });
    let r = Simulation::new(cfg).run_async().await.unwrap();
    let removed = about(&r.events, SimEvent::ClientRemoved, 1);
    assert_eq!(removed.len(), 1);
    // Its last words were its round-0 contribution (and the GetTask sent with it).
    let last = in_round(&r.events, EventType::ReceiveContribution, 0)
        .into_iter()
        .find(|e| e.client == Some(1))
        .unwrap();
    assert_eq!(removed[0].t_us, last.t_us + 5 * 60 * SECOND);
    let later_tasks = r.events.iter().filter(|e| {
        e.seq > removed[0].seq
            && e.client == Some(1)
            && (is(e, EventType::GetModel) || is(e, EventType::SendModel))
    });
    assert_eq!(later_tasks.count(), 0);
    assert!(r.rounds.last().unwrap().selected == 4);
}

#[tokio::test(start_paused = true)]
async fn the_login_past_max_num_clients_is_refused() {
    let mut cfg = small(6, 2, 0.0);
    cfg.server.max_num_clients = 5;
    cfg.server.min_num_clients = 5;
    let r = Simulation::new(cfg).run_async().await.unwrap();
    assert_eq!(of(&r.events, EventType::ClientRegister).len(), 5);
    let refused = of(&r.events, SimEvent::LoginRefused);
    assert_eq!(refused.len(), 1);
    assert_eq!(
        refused[0].client,
        Some(5),
        "ties go by client id, so the last id is the sixth login"
    );
    assert!(r.rounds.iter().all(|s| s.selected == 5));
}

#[tokio::test(start_paused = true)]
async fn wait_after_min_clients_closes_the_round_at_the_exact_microsecond() {
    let mut cfg = small(4, 1, 0.0);
    cfg.server.min_num_clients = 2;
    cfg.server.wait_after_min_clients = 10 * SECOND;
    for slow in [2, 3] {
        cfg.profiles[slow].per_sample_us = Dist::Fixed(SECOND as f64);
    }
    let r = Simulation::new(cfg).run_async().await.unwrap();
    let before = in_round(&r.events, EventType::BeforeAggregation, 0);
    assert_eq!(before[0].t_us, 10 * SECOND);
    assert_eq!(detail_u(before[0], "contributions"), 2);
    assert!(of(&r.events, SimEvent::RoundTimeout).is_empty());
}

#[tokio::test(start_paused = true)]
async fn round_timeout_closes_the_round_at_the_exact_microsecond() {
    let mut cfg = small(4, 1, 0.0);
    cfg.server.min_num_clients = 4;
    cfg.server.round_timeout = 30 * SECOND;
    cfg.profiles[3].per_sample_us = Dist::Fixed(SECOND as f64);
    let r = Simulation::new(cfg).run_async().await.unwrap();
    let timeout = of(&r.events, SimEvent::RoundTimeout);
    assert_eq!(timeout.len(), 1);
    assert_eq!(timeout[0].t_us, 30 * SECOND);
    let before = in_round(&r.events, EventType::BeforeAggregation, 0);
    assert_eq!(
        (before[0].t_us, detail_u(before[0], "contributions")),
        (30 * SECOND, 3)
    );
    assert!(r.rounds[0].timed_out);
}

#[tokio::test(start_paused = true)]
async fn every_round_runs_start_contributions_aggregation_end_in_order() {
    let mut cfg = small(8, 5, 2000.0);
    cfg.server.min_num_clients = 4;
    cfg.server.wait_after_min_clients = 5 * SECOND;
    cfg.faults.push(Fault {
        at: Trigger::Round(1),
        clients: vec![0, 1].into(),
        action: Action::Dropout(Span::Rounds(2)),
    });
    cfg.faults.push(Fault {
        at: Trigger::Round(2),
        clients: vec![5].into(),
        action: Action::Late { delay: 60 * SECOND },
    });
    let r = Simulation::new(cfg).run_async().await.unwrap();
    assert_eq!(r.rounds.len(), 5);
    for round in 0..5 {
        let seq = |name: EventType| {
            in_round(&r.events, name, round)
                .iter()
                .map(|e| e.seq)
                .collect::<Vec<_>>()
        };
        let (start, contribs) = (
            seq(EventType::StartRound),
            seq(EventType::ReceiveContribution),
        );
        let (before, end_agg, end) = (
            seq(EventType::BeforeAggregation),
            seq(EventType::EndAggregation),
            seq(EventType::EndRound),
        );
        assert_eq!(
            (start.len(), before.len(), end_agg.len(), end.len()),
            (1, 1, 1, 1),
            "round {round}"
        );
        assert!(!contribs.is_empty());
        assert!(
            contribs.iter().all(|c| start[0] < *c && *c < before[0]),
            "round {round}"
        );
        assert!(
            before[0] < end_agg[0] && end_agg[0] < end[0],
            "round {round}"
        );
    }
    let dropped = of(&r.events, SimEvent::DropoutStart).len();
    assert_eq!(dropped, 2);
    assert_eq!(of(&r.events, SimEvent::DropoutEnd).len(), 2);
}

#[tokio::test(start_paused = true)]
async fn event_log_is_numbered_without_gaps_and_time_never_goes_back() {
    let mut cfg = small(6, 4, 300.0);
    cfg.server.min_num_clients = 3;
    cfg.server.wait_after_min_clients = SECOND;
    cfg.faults.push(Fault {
        at: Trigger::Time(SECOND / 10),
        clients: vec![2].into(),
        action: Action::Quit,
    });
    let r = Simulation::new(cfg).run_async().await.unwrap();
    for (i, e) in r.events.iter().enumerate() {
        assert_eq!(e.seq, i as u64);
    }
    assert!(r.events.windows(2).all(|w| w[0].t_us <= w[1].t_us));
    assert!(is(r.events.last().unwrap(), SimEvent::RunEnd));
}
