//! The event log of a finished run, with queries for tests: how many of an event, in which
//! round, about which client, and what came first.
//!
//! ```
//! use fedsim::fed_learn::EventType;
//! use fedsim::sim::{Reason, SimEvent};
//!
//! let run = fedsim::Simulation::from_yaml_str(r#"
//! name: doc
//! task: { model: softmax, data: { generator: w1 } }
//! server: { rounds: 4, min_num_clients: 3, wait_after_min_clients: 10s }
//! clients: { count: 4, groups: [{ share: 1.0, compute: { per_sample: 1ms } }] }
//! events:
//!   - { at: { round: 1 }, clients: [2], late: { delay: 30s } }
//! "#).unwrap().run().unwrap();
//! let log = &run.events;
//! assert_eq!(log.of(EventType::ReceiveContribution).round(0).count(), 4);
//! assert_eq!(log.rejected(Reason::Late).client(2).count(), 1);
//! let end = log.of(EventType::EndRound).round(1).first().unwrap();
//! let late = log.first_after(end, SimEvent::ContributionRejected).unwrap();
//! assert_eq!(late.detail_str("reason"), Some("late"));
//! ```

use std::ops::Deref;

use super::events::{Actor, EventName, EventRecord, SimEvent};

/// Why the server rejected a contribution (`detail.reason` of `contribution_rejected`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Stamped for a round that is over.
    Late,
    /// The client already contributed to this round.
    Duplicate,
    /// Not registered, quit or removed.
    UnknownToken,
    /// Did not decode or failed authentication.
    Corrupt,
}

impl Reason {
    /// Every reason.
    pub const ALL: [Reason; 4] = [
        Reason::Late,
        Reason::Duplicate,
        Reason::UnknownToken,
        Reason::Corrupt,
    ];

    /// The reason as the log writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Late => "late",
            Reason::Duplicate => "duplicate",
            Reason::UnknownToken => "unknown_token",
            Reason::Corrupt => "corrupt",
        }
    }
}

/// Every event of a run, in log order. Derefs to a slice of records.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventLog(pub Vec<EventRecord>);

impl Deref for EventLog {
    type Target = [EventRecord];
    fn deref(&self) -> &[EventRecord] {
        &self.0
    }
}

impl EventLog {
    /// Events named `name`.
    pub fn of(&self, name: impl Into<EventName>) -> Query<'_> {
        Query {
            events: &self.0,
            name: Some(name.into()),
            ..Query::all(&self.0)
        }
    }

    /// Every event, to filter further.
    pub fn all(&self) -> Query<'_> {
        Query::all(&self.0)
    }

    /// Contributions rejected for `reason`.
    pub fn rejected(&self, reason: Reason) -> Query<'_> {
        self.of(SimEvent::ContributionRejected)
            .reason(reason.as_str())
    }

    /// The first event named `name` logged after `after`.
    pub fn first_after(
        &self,
        after: &EventRecord,
        name: impl Into<EventName>,
    ) -> Option<&EventRecord> {
        let name = name.into();
        self.0.iter().find(|e| e.seq > after.seq && e.event == name)
    }

    /// The JSON lines of the log, exactly as `events.jsonl` holds them.
    pub fn to_jsonl(&self) -> String {
        let mut s = String::new();
        for e in &self.0 {
            e.write_json(&mut s);
        }
        s
    }
}

/// A filter over the log; each method narrows it.
#[derive(Debug, Clone, Copy)]
pub struct Query<'a> {
    events: &'a [EventRecord],
    name: Option<EventName>,
    round: Option<u32>,
    client: Option<u32>,
    actor: Option<Actor>,
    reason: Option<&'a str>,
}

impl<'a> Query<'a> {
    fn all(events: &'a [EventRecord]) -> Self {
        Query {
            events,
            name: None,
            round: None,
            client: None,
            actor: None,
            reason: None,
        }
    }

    /// Only events of round `r`.
    pub fn round(self, r: u32) -> Self {
        Query {
            round: Some(r),
            ..self
        }
    }

    /// Only events about client `c`.
    pub fn client(self, c: u32) -> Self {
        Query {
            client: Some(c),
            ..self
        }
    }

    /// Only events logged by `a`.
    pub fn actor(self, a: Actor) -> Self {
        Query {
            actor: Some(a),
            ..self
        }
    }

    /// Only events whose `detail.reason` is `r`.
    pub fn reason(self, r: &'a str) -> Self {
        Query {
            reason: Some(r),
            ..self
        }
    }

    fn keeps(&self, e: &EventRecord) -> bool {
        self.name.is_none_or(|n| e.event == n)
            && self.round.is_none_or(|r| e.round == Some(r))
            && self.client.is_none_or(|c| e.client == Some(c))
            && self.actor.is_none_or(|a| e.actor == a)
            && self
                .reason
                .is_none_or(|r| e.detail_str("reason") == Some(r))
    }

    /// The matching events, in log order.
    pub fn iter(self) -> impl Iterator<Item = &'a EventRecord> {
        self.events.iter().filter(move |e| self.keeps(e))
    }

    /// How many events match.
    pub fn count(self) -> usize {
        self.iter().count()
    }

    /// The first match.
    pub fn first(self) -> Option<&'a EventRecord> {
        self.iter().next()
    }

    /// The last match.
    pub fn last(self) -> Option<&'a EventRecord> {
        self.iter().last()
    }

    /// True when nothing matches.
    pub fn is_empty(self) -> bool {
        self.first().is_none()
    }
}
