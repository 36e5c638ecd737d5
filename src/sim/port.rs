//! What actors exchange, and the handle (`Port`) through which the server and each client
//! receive, send and log.
//!
//! Determinism rests on one rule: the world delivers a step's envelopes, then waits until every
//! actor has handled all of them (each delivered envelope is counted, and an actor's count drops
//! when it asks for its next envelope) before it looks at what they sent. What an actor sends or
//! logs in a step is ordered afterwards by (time, sender, sender's counter), never by which task
//! happened to run first.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::Notify;

use super::events::{Actor, Detail, EventName, EventRecord, PendingEvent};
use super::inbox::Inbox;
use crate::fed_learn::pb::ModelData;

/// Virtual microseconds since the start of the run.
pub type Micros = u64;

/// The rank of the world itself (fault injection), first at any instant.
pub(crate) const ENV: u64 = 0;

/// The RPC a wire message belongs to. Like a gRPC method path, it travels outside the
/// protobuf body, so a receiver knows what a damaged body was meant to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    Register,
    Quit,
    GetTask,
    SubmitUpdate,
    Heartbeat,
    /// The answer to one of the above.
    Reply,
    /// A reply that carries a task (a `CurrentTask`): the client hands the whole frame to its
    /// pool job, which checks and decodes it off the runtime thread.
    Task,
}

/// Timers an actor sets for itself.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Timer {
    /// Server: start the next round (registrations at the same instant are in by now).
    StartRound,
    /// Server: give up if the first round still cannot start.
    StartDeadline,
    /// Server: round `r` has run for `round_timeout`.
    RoundTimeout(u32),
    /// Server: `wait_after_min_clients` has passed since round `r` had enough contributions.
    WaitAfterMin(u32),
    /// Server: look for clients silent past `heart_beat_timeout`.
    HeartbeatCheck,
    /// Server: answer task requests it has held for as long as it holds one.
    TaskPolls,
    /// Server: cross-site validation's phase `0` (best models) or `1` (results) timed out.
    CrossSiteTimeout(u8),
    /// Client: time for a heartbeat; stale if the epoch moved on.
    Heartbeat(u64),
    /// Client: local training for `round` is finished; stale if the epoch moved on.
    TrainingDone { round: u32, epoch: u64 },
    /// Client: a call's deadline or backoff may be over; stale if the epoch moved on.
    Calls(u64),
    /// Client: the timed dropout with this id is over.
    DropoutEnd(u64),
    /// Client: the timed device slowdown with this id is over.
    SlowEnd(u64),
}

/// What the world (the scenario's faults) does to a client. Dropouts and slowdowns carry the
/// id of the fault that caused them, so that each end ends its own start and no other.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Control {
    /// Start: register with the server.
    Start,
    /// Stop answering; `until` ends it at that time, else a later `DropoutEnd` does.
    Dropout { id: u64, until: Option<Micros> },
    /// The dropout with this id is over.
    DropoutEnd { id: u64 },
    /// Leave the federation on purpose.
    Quit,
    /// Hold the next contribution back by this long.
    Late { delay: Micros },
    /// Compute this many times slower; `until` ends it at that time, else `SlowEnd` does.
    Slow {
        id: u64,
        factor: f64,
        until: Option<Micros>,
    },
    /// The device slowdown with this id is over.
    SlowEnd { id: u64 },
    /// Panic.
    Crash,
}

/// The world's own deferred work.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum EnvAction {
    /// Apply time-triggered fault number `i`.
    Fault(usize),
    /// The link slowdown with this id is over.
    LinkSlowEnd { client: u32, id: u64 },
}

/// An envelope's contents.
#[derive(Debug, Clone)]
pub(crate) enum Payload {
    /// A protocol message: an encoded admin `Message` plus checksum (see `wire`).
    Wire {
        method: Method,
        frame: Bytes,
    },
    Timer(Timer),
    Control(Control),
    Env(EnvAction),
}

/// Something to deliver to `to` at virtual time `at`.
#[derive(Debug, Clone)]
pub(crate) struct Envelope {
    pub at: Micros,
    pub from: u64,
    pub to: u64,
    /// The sender's own counter: the last tie-break.
    pub seq: u64,
    pub payload: Payload,
}

impl Envelope {
    pub fn key(&self) -> (Micros, u64, u64) {
        (self.at, self.from, self.seq)
    }
}

/// A place in an actor's event order, taken by [`Port::reserve_event`].
#[derive(Debug)]
#[must_use = "an event slot is for an event logged later in the step"]
pub(crate) struct EventSlot(u64);

/// What actors produced during the current step.
#[derive(Default)]
pub(crate) struct Outbox {
    pub envelopes: Vec<Envelope>,
    pub events: Vec<PendingEvent>,
}

/// State shared by the world and every actor.
#[derive(Default)]
pub(crate) struct Shared {
    pub outbox: Mutex<Outbox>,
    /// Envelopes delivered and not yet handled.
    pub pending: AtomicUsize,
    pub idle: Notify,
    pub now: AtomicU64,
    /// Set by the server when the run is over, or by an actor's guard when it panicked.
    pub done: AtomicBool,
    /// An unscripted panic that stopped the run: who, and its message.
    pub failure: Mutex<Option<(super::failure::Culprit, String)>>,
}

impl Shared {
    pub fn now(&self) -> Micros {
        self.now.load(Ordering::Relaxed)
    }

    pub fn push_event(&self, e: PendingEvent) {
        self.outbox.lock().expect("outbox lock").events.push(e);
    }

    fn push_envelope(&self, e: Envelope) {
        self.outbox.lock().expect("outbox lock").envelopes.push(e);
    }

    /// Records an unscripted panic (the first one wins) and ends the run after this step.
    pub fn fail(&self, culprit: super::failure::Culprit, message: String) {
        let mut failure = self.failure.lock().unwrap_or_else(|p| p.into_inner());
        failure.get_or_insert((culprit, message));
        self.done.store(true, Ordering::Release);
    }

    /// One delivered envelope has been handled.
    pub fn handled(&self) {
        if self.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.idle.notify_one();
        }
    }
}

/// An actor's connection to the world.
pub(crate) struct Port {
    pub actor: Actor,
    rank: u64,
    seq: u64,
    event_seq: u64,
    inbox: Inbox,
    /// Envelopes taken and not yet released as handled.
    held: usize,
    shared: Arc<Shared>,
}

impl Port {
    pub fn new(actor: Actor, inbox: Inbox, shared: Arc<Shared>) -> Self {
        Port {
            actor,
            rank: actor.rank(),
            seq: 0,
            event_seq: 0,
            inbox,
            held: 0,
            shared,
        }
    }

    /// The next envelope; `None` when the world is gone. Asking for it marks the ones taken
    /// before as fully handled.
    pub async fn recv(&mut self) -> Option<Envelope> {
        self.release();
        let e = self.inbox.recv().await;
        self.held = usize::from(e.is_some());
        e
    }

    /// Appends to `batch` every envelope delivered and not yet taken, without waiting: the
    /// rest of the step's envelopes, after one from [`Port::recv`]. They too count as handled
    /// at the next `recv`.
    pub fn take_ready(&mut self, batch: &mut Vec<Envelope>) {
        while let Some(e) = self.inbox.try_recv() {
            batch.push(e);
            self.held += 1;
        }
    }

    fn release(&mut self) {
        for _ in 0..std::mem::take(&mut self.held) {
            self.shared.handled();
        }
    }

    /// The current virtual time.
    pub fn now(&self) -> Micros {
        self.shared.now()
    }

    /// Sends `payload` to `to`, leaving after `delay` (the network adds its own delay to wire
    /// messages).
    pub fn send(&mut self, to: Actor, delay: Micros, payload: Payload) {
        let e = Envelope {
            // Saturating: a delay drawn from a heavy tail may be past any time the run reaches.
            at: self.now().saturating_add(delay),
            from: self.rank,
            to: to.rank(),
            seq: self.seq,
            payload,
        };
        self.seq += 1;
        self.shared.push_envelope(e);
    }

    /// Sets a timer for this actor, `delay` from now.
    pub fn timer(&mut self, delay: Micros, t: Timer) {
        self.send(self.actor, delay, Payload::Timer(t));
    }

    /// Logs an event by this actor.
    pub fn emit(
        &mut self,
        round: Option<u32>,
        event: impl Into<EventName>,
        client: Option<u32>,
        detail: Detail,
    ) {
        self.emit_with_model(round, event, client, detail, None);
    }

    /// Logs an event whose handlers also see `model`.
    pub fn emit_with_model(
        &mut self,
        round: Option<u32>,
        event: impl Into<EventName>,
        client: Option<u32>,
        detail: Detail,
        model: Option<Arc<ModelData>>,
    ) {
        let slot = self.reserve_event();
        self.push_event(slot, round, event.into(), client, detail, model);
    }

    /// Logs an event that sorts after every other event of the step, whoever logs them: the
    /// run's end, which is the log's last line.
    pub fn emit_last(&mut self, event: impl Into<EventName>, detail: Detail) {
        let record = EventRecord {
            seq: 0,
            t_us: self.now(),
            round: None,
            actor: self.actor,
            event: event.into(),
            client: None,
            detail,
        };
        self.shared.push_event(PendingEvent {
            record,
            order: (u64::MAX, 0),
            model: None,
        });
    }

    /// Takes the next place in this actor's event order for an event logged later in the
    /// same step ([`Port::emit_reserved`]): it is ordered as if it had been logged now. This
    /// lets an actor go on while a result the event reports is still being worked out.
    pub fn reserve_event(&mut self) -> EventSlot {
        self.event_seq += 1;
        EventSlot(self.event_seq - 1)
    }

    /// Logs an event in the place `slot` reserved.
    pub fn emit_reserved(
        &mut self,
        slot: EventSlot,
        round: Option<u32>,
        event: impl Into<EventName>,
        client: Option<u32>,
        detail: Detail,
    ) {
        self.push_event(slot, round, event.into(), client, detail, None);
    }

    fn push_event(
        &self,
        slot: EventSlot,
        round: Option<u32>,
        event: EventName,
        client: Option<u32>,
        detail: Detail,
        model: Option<Arc<ModelData>>,
    ) {
        let record = EventRecord {
            seq: 0,
            t_us: self.now(),
            round,
            actor: self.actor,
            event,
            client,
            detail,
        };
        self.shared.push_event(PendingEvent {
            record,
            order: (self.rank, slot.0),
            model,
        });
    }

    /// Tells the world the run is over.
    pub fn finish(&self) {
        self.shared.done.store(true, Ordering::Release);
    }
}

impl Drop for Port {
    fn drop(&mut self) {
        // A task that ends or panics mid-step still counts its envelope as handled, and so
        // does every envelope already queued for it: nobody will handle those now.
        self.release();
        for _ in 0..self.inbox.close() {
            self.shared.handled();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fed_learn::EventType;
    use crate::sim::inbox;

    #[test]
    fn a_reserved_event_keeps_its_place_before_those_logged_after_the_reservation() {
        let shared = Arc::new(Shared::default());
        let (_tx, rx) = inbox::inbox();
        let mut port = Port::new(Actor::Server, rx, shared.clone());
        port.emit(Some(0), EventType::BeforeAggregation, None, vec![]);
        let slot = port.reserve_event();
        port.emit(Some(1), EventType::StartRound, None, vec![]);
        port.emit_reserved(slot, Some(0), EventType::EndRound, None, vec![]);
        let mut events = std::mem::take(&mut shared.outbox.lock().unwrap().events);
        events.sort_by_key(|e| e.order);
        let got: Vec<_> = events
            .iter()
            .map(|e| (e.record.event, e.record.round))
            .collect();
        let want = [
            (EventType::BeforeAggregation, 0),
            (EventType::EndRound, 0),
            (EventType::StartRound, 1),
        ]
        .map(|(e, r)| (EventName::Protocol(e), Some(r)));
        assert_eq!(got, want);
    }
}
