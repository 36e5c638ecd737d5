//! The world: virtual time, delivery order and the scripted faults.
//!
//! It runs in steps. A step delivers every envelope due at the earliest pending instant, in
//! (time, sender, sender's counter) order, then waits until all actors have handled them. What
//! they sent goes through the network model into the queue; what they logged is flushed to the
//! event bus in (actor, emission) order. Faults triggered by a round fire when that round's
//! `_startRound` is flushed, ahead of anything else at that instant.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::config::{Action, Fault, Span, Trigger};
use super::events::{Actor, Detail, EventBus, EventRecord, PendingEvent, SimEvent};
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

/// What happens when a round starts.
enum RoundItem {
    Fault(Fault),
    /// A dropout spanning rounds is over.
    DropoutEnd(u32),
    /// A slowdown spanning rounds is over.
    SlowEnd {
        client: u32,
        device: bool,
        link: bool,
    },
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
    ) -> Self {
        World {
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
        let timed: Vec<(usize, Micros)> = self
            .faults
            .iter()
            .enumerate()
            .filter_map(|(i, f)| match f.at {
                Trigger::Time(t) => Some((i, t)),
                Trigger::Round(_) => None,
            })
            .collect();
        for (i, t) in timed {
            self.schedule(t, ENV, Payload::Env(EnvAction::Fault(i)));
        }
        for f in &self.faults {
            if let Trigger::Round(r) = f.at {
                self.by_round
                    .entry(r)
                    .or_default()
                    .push(RoundItem::Fault(f.clone()));
            }
        }
        loop {
            self.wait_idle().await;
            self.collect();
            if self.shared.done.load(Ordering::Acquire) {
                self.collect();
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

    /// Takes what actors sent and logged in the last step.
    fn collect(&mut self) {
        // The step's buffers are swapped for last step's emptied ones, so their capacity is
        // reused instead of regrown every step.
        let (mut envelopes, mut events) = (
            std::mem::take(&mut self.spare.envelopes),
            std::mem::take(&mut self.spare.events),
        );
        {
            let mut out = self.shared.outbox.lock().expect("outbox lock");
            std::mem::swap(&mut out.envelopes, &mut envelopes);
            std::mem::swap(&mut out.events, &mut events);
        }
        let started = self.bus.flush(&mut events);
        self.react(&started);
        envelopes.sort_by_key(|e| e.key());
        for e in envelopes.drain(..) {
            self.route(e);
        }
        self.spare = Outbox { envelopes, events };
    }

    /// Round-triggered faults fire when their round starts.
    fn react(&mut self, started: &[Option<u32>]) {
        for &round in started {
            self.round = round;
            let items = round.and_then(|r| self.by_round.remove(&r));
            for item in items.unwrap_or_default() {
                match item {
                    RoundItem::Fault(f) => self.apply(&f),
                    RoundItem::DropoutEnd(c) => self.control(c, self.now(), Control::DropoutEnd),
                    RoundItem::SlowEnd {
                        client,
                        device,
                        link,
                    } => self.slow_end(client, device, link),
                }
            }
        }
    }

    /// Passes a wire message through the network model; other envelopes go straight in.
    fn route(&mut self, mut e: Envelope) {
        let Payload::Wire { method, frame } = &e.payload else {
            return self.enqueue(e);
        };
        let (client, up) = match (e.from, e.to) {
            (1, to) => ((to - 2) as u32, false),
            (from, _) => ((from - 2) as u32, true),
        };
        let size = frame.len();
        let traffic = self.traffic.entry(self.round.unwrap_or(0)).or_default();
        if up {
            traffic.up += size as u64;
        } else {
            traffic.down += size as u64;
        }
        match self.net.send(client, up, e.at, size, self.round) {
            Fate::Delivered(at) => e.at = at,
            Fate::Lost => {
                let actor = if up {
                    Actor::Client(client)
                } else {
                    Actor::Server
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

    fn env_action(&mut self, a: EnvAction) {
        match a {
            EnvAction::Fault(i) => {
                let f = self.faults[i].clone();
                self.apply(&f);
            }
            EnvAction::LinkSlowEnd(c) => self.slow_end(c, false, true),
        }
    }

    fn slow_end(&mut self, c: u32, device: bool, link: bool) {
        if device {
            self.control(c, self.now(), Control::SlowEnd);
        }
        if link {
            self.net.set_slow(c, 1.0);
            self.emit(
                Actor::Client(c),
                SimEvent::SlowEnd,
                Some(c),
                vec![("what", "link".into())],
            );
        }
    }

    /// When a span that starts now ends: at a time, or (queuing `end`) when a later round
    /// starts.
    fn span_end(&mut self, span: Span, end: RoundItem) -> Option<Micros> {
        match span {
            Span::Time(d) => Some(self.now() + d),
            Span::Rounds(n) => {
                let r = self.round.unwrap_or(0) + n;
                self.by_round.entry(r).or_default().push(end);
                None
            }
        }
    }

    fn apply(&mut self, f: &Fault) {
        let now = self.now();
        for &c in &f.clients {
            if c as usize + 2 > self.inboxes.len() {
                continue;
            }
            match &f.action {
                Action::Dropout(span) => {
                    let until = self.span_end(*span, RoundItem::DropoutEnd(c));
                    self.control(c, now, Control::Dropout { until });
                }
                Action::Quit => self.control(c, now, Control::Quit),
                Action::Join => {
                    self.emit(Actor::Client(c), SimEvent::ClientJoin, Some(c), vec![]);
                    self.control(c, now, Control::Start);
                }
                Action::Late { delay } => self.control(c, now, Control::Late { delay: *delay }),
                Action::Slow {
                    factor,
                    span,
                    device,
                    link,
                } => {
                    let end = RoundItem::SlowEnd {
                        client: c,
                        device: *device,
                        link: *link,
                    };
                    let until = self.span_end(*span, end);
                    if *device {
                        self.control(
                            c,
                            now,
                            Control::Slow {
                                factor: *factor,
                                until,
                            },
                        );
                    }
                    if *link {
                        self.net.set_slow(c, *factor);
                        let detail = vec![("what", "link".into()), ("factor", (*factor).into())];
                        self.emit(Actor::Client(c), SimEvent::SlowStart, Some(c), detail);
                        if let Some(t) = until {
                            self.schedule(t, ENV, Payload::Env(EnvAction::LinkSlowEnd(c)));
                        }
                    }
                }
                Action::Crash => self.control(c, now, Control::Crash),
                Action::Corrupt { messages } => self.net.corrupt_next(c, *messages),
            }
        }
    }

    /// Drops every inbox, so that actors see the world is gone and end.
    pub fn close(&mut self) {
        self.inboxes.clear();
    }

    /// The run stalled: log why, as the server would.
    pub fn stalled(&mut self) {
        let detail = vec![("reason", "stalled".into())];
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
