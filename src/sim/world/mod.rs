//! The world: virtual time, delivery order and the scripted faults.
//!
//! It runs in steps. A step delivers every envelope due at the earliest pending instant, in
//! (time, sender, sender's counter) order, then waits until all actors have handled them. What
//! they sent goes through the network model into the queue; what they logged is flushed to the
//! event bus in (actor, emission) order. Faults triggered by a round fire when that round's
//! `_startRound` is flushed, ahead of anything else at that instant.
//!
//! How faults compose (docs/DECISIONS.md, "Faults"): each dropout and slowdown is its own
//! instance with its own end, and an end ends only its own start. A client is out while any
//! dropout is in force; slowdowns in force multiply. A fault aimed at a client that has not
//! joined yet waits for its join and takes effect right after it. The step in which the
//! server ends the run is the last: what its actors sent then is never delivered, and
//! `run_end` is logged after everything else of that step.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

mod faults;

pub(crate) use faults::combined;
pub use faults::Action;
use faults::RoundItem;

use super::config::{Direction, Fault, Trigger};
use super::events::{Actor, Detail, EventBus, EventRecord, PendingEvent, SimEvent};
use super::failure::{Culprit, Failure};
use super::inbox::Sender;
use super::network::{Fate, Network};
use super::port::{Control, EnvAction, Envelope, Micros, Outbox, Payload, Shared, ENV};

/// Bytes that crossed the network during one round.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Client to server.
    pub up: u64,
    /// Server to client.
    pub down: u64,
}

/// A message that crossed (or was lost on) a client's link: what [`RunResult::wire`] records
/// when asked to (see [`Simulation::record_wire`]).
///
/// [`RunResult::wire`]: super::RunResult::wire
/// [`Simulation::record_wire`]: super::Simulation::record_wire
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireRecord {
    /// When it was sent, in virtual microseconds.
    pub sent_us: Micros,
    /// The client whose link it crossed.
    pub client: u32,
    /// Which way.
    pub direction: Direction,
    /// The RPC (`Register`, `GetTask`, ...), or `reply` for an answer.
    pub method: &'static str,
    /// Whether it is a reply that carries a task.
    pub task: bool,
    /// Its size on the wire.
    pub bytes: usize,
    /// Its message id (a call sent again keeps its id).
    pub id: String,
    /// The id of the message it answers, for a reply.
    pub ref_id: Option<String>,
    /// When it arrived (damaged or not), or `None` if it was lost.
    pub arrived_us: Option<Micros>,
    /// Whether it arrived damaged.
    pub damaged: bool,
}

/// An envelope in the queue, earliest key first.
struct Queued(Envelope);

impl PartialEq for Queued {
    fn eq(&self, o: &Self) -> bool {
        self.0.key() == o.0.key()
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Queued {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.0.key().cmp(&o.0.key())
    }
}

pub(crate) struct World {
    shared: Arc<Shared>,
    queue: BinaryHeap<Reverse<Queued>>,
    /// Envelopes due at the current instant, in key order: most of a step's, which need not
    /// go through the heap (with no latency, all of them). Delivery merges them with the
    /// heap's.
    due: VecDeque<Envelope>,
    /// Indexed by rank: 0 (the world) unused, 1 the server, 2.. the clients.
    inboxes: Vec<Option<Sender>>,
    pub bus: EventBus,
    net: Network,
    faults: Vec<Fault>,
    /// Faults and fault ends waiting for a round to start.
    by_round: BTreeMap<u32, Vec<RoundItem>>,
    /// Whether each client id has started (the initial ones) or joined.
    joined: Vec<bool>,
    /// Faults (by index) aimed at clients that have not joined yet, applied when they join.
    held: BTreeMap<u32, Vec<usize>>,
    /// Link slowdowns in force, per client: (fault instance id, factor), in start order.
    link_slows: BTreeMap<u32, Vec<(u64, f64)>>,
    /// The next fault instance id.
    next_instance: u64,
    /// What crossed the network, if recorded.
    pub wire: Option<Vec<WireRecord>>,
    /// Set (by a signal handler) to stop the run at the end of a step.
    pub interrupt: Option<Arc<std::sync::atomic::AtomicBool>>,
    seq: u64,
    event_seq: u64,
    round: Option<u32>,
    pub traffic: BTreeMap<u32, Traffic>,
    origin: tokio::time::Instant,
    /// Last step's emptied buffers, swapped into the outbox at the next collection.
    spare: Outbox,
}

impl World {
    pub fn new(
        shared: Arc<Shared>,
        inboxes: Vec<Option<Sender>>,
        bus: EventBus,
        net: Network,
        faults: Vec<Fault>,
        initial_clients: u32,
    ) -> Self {
        let clients = inboxes.len().saturating_sub(2);
        World {
            joined: (0..clients).map(|c| c < initial_clients as usize).collect(),
            held: BTreeMap::new(),
            link_slows: BTreeMap::new(),
            next_instance: 0,
            wire: None,
            interrupt: None,
            shared,
            queue: BinaryHeap::new(),
            due: VecDeque::new(),
            inboxes,
            bus,
            net,
            faults,
            by_round: BTreeMap::new(),
            seq: 0,
            event_seq: 0,
            round: None,
            traffic: BTreeMap::new(),
            origin: tokio::time::Instant::now(),
            spare: Outbox::default(),
        }
    }

    fn now(&self) -> Micros {
        self.shared.now()
    }

    /// Queues an envelope from the world itself.
    fn schedule(&mut self, at: Micros, to: u64, payload: Payload) {
        let e = Envelope {
            at,
            from: ENV,
            to,
            seq: self.seq,
            payload,
        };
        self.seq += 1;
        self.queue.push(Reverse(Queued(e)));
    }

    fn control(&mut self, client: u32, at: Micros, c: Control) {
        self.schedule(at, Actor::Client(client).rank(), Payload::Control(c));
    }

    /// Logs an event on behalf of `actor`; it sorts before the actors' own events of the step.
    fn emit(&mut self, actor: Actor, event: SimEvent, client: Option<u32>, detail: Detail) {
        let record = EventRecord {
            seq: 0,
            t_us: self.now(),
            round: self.round,
            actor,
            event: event.into(),
            client,
            detail,
        };
        let order = (0, self.event_seq);
        self.event_seq += 1;
        self.shared.push_event(PendingEvent {
            record,
            order,
            model: None,
        });
    }

    /// Runs until the server says the run is over or nothing is left to happen. Returns false
    /// when the run stalled.
    pub async fn run(&mut self, start: Vec<u32>) -> bool {
        for c in start {
            self.control(c, 0, Control::Start);
        }
        for i in 0..self.faults.len() {
            match self.faults[i].at {
                Trigger::Time(t) => self.schedule(t, ENV, Payload::Env(EnvAction::Fault(i))),
                Trigger::Round(r) => self
                    .by_round
                    .entry(r)
                    .or_default()
                    .push(RoundItem::Fault(i)),
            }
        }
        loop {
            self.wait_idle().await;
            if self.shared.done.load(Ordering::Acquire) {
                self.finish_step();
                return true;
            }
            self.collect();
            if self.bus.handler_panic.is_some() || self.interrupted() {
                return true;
            }
            let heap = self.queue.peek().map(|Reverse(Queued(e))| e.at);
            let Some(at) = self.due.front().map(|e| e.at).or(heap) else {
                return false;
            };
            if at > self.now() {
                tokio::time::sleep_until(self.origin + Duration::from_micros(at)).await;
                self.shared.now.store(at, Ordering::Relaxed);
            }
            self.deliver_due();
        }
    }

    async fn wait_idle(&self) {
        while self.shared.pending.load(Ordering::Acquire) > 0 {
            self.shared.idle.notified().await;
        }
    }

    /// Swaps the step's outbox for last step's emptied buffers, whose capacity is reused
    /// instead of regrown every step.
    fn take_outbox(&mut self) -> (Vec<Envelope>, Vec<PendingEvent>) {
        let (mut envelopes, mut events) = (
            std::mem::take(&mut self.spare.envelopes),
            std::mem::take(&mut self.spare.events),
        );
        let mut out = self.shared.outbox.lock().expect("outbox lock");
        std::mem::swap(&mut out.envelopes, &mut envelopes);
        std::mem::swap(&mut out.events, &mut events);
        (envelopes, events)
    }

    /// Takes what actors sent and logged in the last step.
    fn collect(&mut self) {
        let (mut envelopes, mut events) = self.take_outbox();
        let started = self.bus.flush(&mut events);
        self.react(&started);
        envelopes.sort_by_key(|e| e.key());
        for e in envelopes.drain(..) {
            self.route(e);
        }
        self.spare = Outbox { envelopes, events };
    }

    /// The step in which the server ended the run: its events are logged (`run_end` sorts
    /// last, see [`Port::emit_last`](super::port::Port::emit_last)); what was sent in it
    /// counts as traffic but is never delivered, so the network neither delivers nor loses it.
    fn finish_step(&mut self) {
        let (envelopes, mut events) = self.take_outbox();
        self.bus.flush(&mut events);
        for e in &envelopes {
            if let Payload::Wire { frame, .. } = &e.payload {
                if let Some((_, direction)) = link_of(e) {
                    self.count(direction, frame.len());
                }
            }
        }
    }

    /// Adds `size` bytes sent over a link to the current round's traffic.
    fn count(&mut self, direction: Direction, size: usize) {
        let traffic = self.traffic.entry(self.round.unwrap_or(0)).or_default();
        match direction {
            Direction::Up => traffic.up += size as u64,
            Direction::Down => traffic.down += size as u64,
        }
    }

    /// Passes a wire message through the network model; other envelopes go straight in.
    fn route(&mut self, mut e: Envelope) {
        let Payload::Wire { method, frame } = &e.payload else {
            return self.enqueue(e);
        };
        let Some((client, direction)) = link_of(&e) else {
            return self.enqueue(e);
        };
        let size = frame.len();
        self.count(direction, size);
        let fate = self.net.send(client, direction, e.at, size, self.round);
        if self.wire.is_some() {
            self.record(&e, client, direction, fate);
        }
        match fate {
            Fate::Delivered(at) => e.at = at,
            Fate::Lost => {
                let actor = match direction {
                    Direction::Up => Actor::Client(client),
                    Direction::Down => Actor::Server,
                };
                let detail = vec![("method", method.topic().into()), ("bytes", size.into())];
                self.emit(actor, SimEvent::MessageLost, Some(client), detail);
                return;
            }
            Fate::Corrupted(at, pos) => {
                let mut bad = frame.to_vec();
                bad[pos] ^= 0x5a;
                e.at = at;
                e.payload = Payload::Wire {
                    method: *method,
                    frame: bad.into(),
                };
            }
        }
        self.enqueue(e);
    }

    /// Notes in the wire record what happened to a message (only when asked to record).
    #[cold]
    fn record(&mut self, e: &Envelope, client: u32, direction: Direction, fate: Fate) {
        let Payload::Wire { method, frame } = &e.payload else {
            return;
        };
        let (arrived_us, damaged) = match fate {
            Fate::Delivered(at) => (Some(at), false),
            Fate::Corrupted(at, _) => (Some(at), true),
            Fate::Lost => (None, false),
        };
        let msg = super::wire::unframe(frame.clone()).ok();
        let record = WireRecord {
            sent_us: e.at,
            client,
            direction,
            method: method.topic(),
            task: *method == super::port::Method::Task,
            bytes: frame.len(),
            id: msg.as_ref().map(|m| m.id.to_string()).unwrap_or_default(),
            ref_id: msg.and_then(|m| m.get_ref_id().map(str::to_owned)),
            arrived_us,
            damaged,
        };
        if let Some(wire) = &mut self.wire {
            wire.push(record);
        }
    }

    /// Queues an envelope: on the due list if it is due now and sorts after the list's last,
    /// else in the heap.
    fn enqueue(&mut self, e: Envelope) {
        let in_order = self.due.back().is_none_or(|last| last.key() <= e.key());
        if e.at <= self.now() && in_order {
            self.due.push_back(e);
        } else {
            self.queue.push(Reverse(Queued(e)));
        }
    }

    /// The next envelope due now, in key order across the due list and the heap.
    fn next_due(&mut self) -> Option<Envelope> {
        let now = self.now();
        let heap = self
            .queue
            .peek()
            .map(|Reverse(Queued(e))| e)
            .filter(|e| e.at <= now);
        let from_heap = match (self.due.front(), heap) {
            (Some(d), Some(h)) => h.key() < d.key(),
            (None, Some(_)) => true,
            (_, None) => false,
        };
        if from_heap {
            self.queue.pop().map(|Reverse(Queued(e))| e)
        } else {
            self.due.pop_front()
        }
    }

    /// Delivers everything due now.
    fn deliver_due(&mut self) {
        while let Some(e) = self.next_due() {
            if e.to == ENV {
                if let Payload::Env(a) = e.payload {
                    self.env_action(a);
                }
                continue;
            }
            let Some(Some(tx)) = self.inboxes.get(e.to as usize) else {
                continue;
            };
            self.shared.pending.fetch_add(1, Ordering::AcqRel);
            if tx.send(e).is_err() {
                // The actor is gone (quit or crashed): the envelope is dropped unseen.
                self.shared.pending.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }

    /// Drops every inbox, so that actors see the world is gone and end.
    pub fn close(&mut self) {
        self.inboxes.clear();
    }

    /// The unscripted panic that stopped the run, if one did, with the round then under way.
    pub fn take_failure(&mut self) -> Option<Failure> {
        let round = self.round;
        let actor = self
            .shared
            .failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let (culprit, message) = actor.or_else(|| {
            let message = self.bus.handler_panic.take()?;
            Some((Culprit::Handler, message))
        })?;
        Some(Failure {
            culprit,
            round,
            message,
        })
    }

    /// The run failed: log why as its last line (unless the server had ended it already).
    pub fn failed(&mut self, f: &Failure) {
        if self.bus.counts.contains_key(&SimEvent::RunEnd.into()) {
            return;
        }
        let detail = vec![
            ("reason", "failed".into()),
            ("culprit", f.culprit.to_string().into()),
            ("error", f.message.clone().into()),
        ];
        self.log_run_end(detail);
    }

    /// Whether the run was asked to stop.
    pub fn interrupted(&self) -> bool {
        self.interrupt
            .as_ref()
            .is_some_and(|f| f.load(Ordering::Relaxed))
    }

    /// The run was stopped from outside: log it as the last line.
    pub fn log_interrupted(&mut self) {
        if !self.bus.counts.contains_key(&SimEvent::RunEnd.into()) {
            self.log_run_end(vec![("reason", "interrupted".into())]);
        }
    }

    /// The run stalled: log why, as the server would.
    pub fn stalled(&mut self) {
        self.log_run_end(vec![("reason", "stalled".into())]);
    }

    fn log_run_end(&mut self, detail: Detail) {
        let record = EventRecord {
            seq: 0,
            t_us: self.now(),
            round: self.round,
            actor: Actor::Server,
            event: SimEvent::RunEnd.into(),
            client: None,
            detail,
        };
        self.bus.flush(&mut vec![PendingEvent {
            record,
            order: (0, 0),
            model: None,
        }]);
    }
}

/// The client whose link a wire envelope crosses, and which way.
fn link_of(e: &Envelope) -> Option<(u32, Direction)> {
    let (end, direction) = match (e.from, e.to) {
        (1, to) => (to, Direction::Down),
        (from, _) => (from, Direction::Up),
    };
    match Actor::from_rank(end)? {
        Actor::Client(c) => Some((c, direction)),
        Actor::Server => None,
    }
}
