//! Helpers shared by the integration tests: small federations and event-log queries.
#![allow(dead_code)]

use fedsim::dist::Dist;
use fedsim::fed_learn::EventType;
use fedsim::sim::{EventName, EventRecord, Profile, Profiles, SimEvent, SECOND};
use fedsim::SimConfig;

/// `n` W1 clients, all in every round, instant links, `per_sample_us` of compute per sample.
pub fn small(n: u32, rounds: u32, per_sample_us: f64) -> SimConfig {
    let mut cfg = SimConfig::w1(n, 0, rounds);
    cfg.name = "test".into();
    cfg.seed = 11;
    cfg.server.min_num_clients = n as usize;
    cfg.server.round_timeout = 3600 * SECOND;
    cfg.profiles = Profiles::uniform(
        n,
        Profile {
            per_sample_us: Dist::Fixed(per_sample_us),
            ..Profile::default()
        },
    );
    cfg
}

pub fn is(e: &EventRecord, name: impl Into<EventName>) -> bool {
    e.event == name.into()
}

pub fn of(events: &[EventRecord], name: impl Into<EventName> + Copy) -> Vec<&EventRecord> {
    events.iter().filter(|e| is(e, name)).collect()
}

pub fn about(
    events: &[EventRecord],
    name: impl Into<EventName> + Copy,
    client: u32,
) -> Vec<&EventRecord> {
    of(events, name)
        .into_iter()
        .filter(|e| e.client == Some(client))
        .collect()
}

pub fn in_round(
    events: &[EventRecord],
    name: impl Into<EventName> + Copy,
    round: u32,
) -> Vec<&EventRecord> {
    of(events, name)
        .into_iter()
        .filter(|e| e.round == Some(round))
        .collect()
}

pub fn rejected(events: &[EventRecord], reason: &str) -> Vec<EventRecord> {
    of(events, SimEvent::ContributionRejected)
        .into_iter()
        .filter(|e| e.detail_str("reason") == Some(reason))
        .cloned()
        .collect()
}

pub fn detail_u(e: &EventRecord, key: &str) -> u64 {
    match e.detail(key) {
        Some(fedsim::sim::Val::U(v)) => *v,
        other => panic!("{key} in {e:?} is {other:?}"),
    }
}

pub const START: EventType = EventType::StartRound;
