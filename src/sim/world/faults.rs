//! What each fault kind does, and how the world applies it.
//!
//! A fault fires at its trigger (a round's start or a virtual time) and is applied to each of
//! its clients that has joined; for one that has not, it is held until its join. Dropouts and
//! slowdowns are instances with their own ends: an end ends only its own start, a client is
//! out while any dropout is in force, and slowdowns in force multiply.

use super::World;
use crate::sim::config::{Direction, Span};
use crate::sim::events::{Actor, SimEvent};
use crate::sim::port::{Control, EnvAction, Micros, Payload, ENV};

/// What a fault does.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Stop answering (no replies, no heartbeats) for a while.
    Dropout(Span),
    /// Leave on purpose (sends `Quit`).
    Quit,
    /// Join the federation and register. Targets must be clients that have not started.
    Join,
    /// Hold the next contribution back by this long.
    Late {
        /// Extra delay before the contribution leaves.
        delay: Micros,
    },
    /// Be slower for a while.
    Slow {
        /// How many times slower.
        factor: f64,
        /// For how long.
        span: Span,
        /// Slow the device (training time).
        device: bool,
        /// Slow the link (latency and transfer time).
        link: bool,
    },
    /// The client's task panics.
    Crash,
    /// The next `messages` messages on the client's link, the given way, arrive damaged.
    Corrupt {
        /// How many messages.
        messages: u32,
        /// Which way: what the client sends, or what the server sends it.
        direction: Direction,
    },
}

/// What happens when a round starts.
pub(super) enum RoundItem {
    /// Round-triggered fault number `i`.
    Fault(usize),
    /// A dropout spanning rounds is over.
    DropoutEnd { client: u32, id: u64 },
    /// A slowdown spanning rounds is over.
    SlowEnd {
        client: u32,
        id: u64,
        device: bool,
        link: bool,
    },
}

impl World {
    /// Round-triggered faults fire when their round starts.
    pub(super) fn react(&mut self, started: &[Option<u32>]) {
        for &round in started {
            self.round = round;
            let items = round.and_then(|r| self.by_round.remove(&r));
            for item in items.unwrap_or_default() {
                match item {
                    RoundItem::Fault(i) => self.apply(i),
                    RoundItem::DropoutEnd { client, id } => {
                        self.control(client, self.now(), Control::DropoutEnd { id })
                    }
                    RoundItem::SlowEnd {
                        client,
                        id,
                        device,
                        link,
                    } => {
                        if device {
                            self.control(client, self.now(), Control::SlowEnd { id });
                        }
                        if link {
                            self.link_slow_end(client, id);
                        }
                    }
                }
            }
        }
    }

    pub(super) fn env_action(&mut self, a: EnvAction) {
        match a {
            EnvAction::Fault(i) => self.apply(i),
            EnvAction::LinkSlowEnd { client, id } => self.link_slow_end(client, id),
        }
    }

    /// When a span that starts now ends: at a time, or (queuing `end`) when a later round
    /// starts. A span of no rounds, like one of no time, ends at once.
    fn span_end(&mut self, span: Span, end: RoundItem) -> Option<Micros> {
        match span {
            Span::Time(d) => Some(self.now().saturating_add(d)),
            Span::Rounds(0) => Some(self.now()),
            Span::Rounds(n) => {
                let r = self.round.unwrap_or(0).saturating_add(n);
                self.by_round.entry(r).or_default().push(end);
                None
            }
        }
    }

    /// Applies fault number `i` to each of its clients that exists; holds it for the others
    /// until they join.
    pub(super) fn apply(&mut self, i: usize) {
        let clients = self.faults[i].clients.clone();
        for c in clients.iter() {
            match self.joined.get(c as usize) {
                None => {}
                Some(false) if self.faults[i].action != Action::Join => {
                    self.held.entry(c).or_default().push(i);
                }
                Some(_) => self.apply_to(c, i),
            }
        }
    }

    fn apply_to(&mut self, c: u32, i: usize) {
        let now = self.now();
        match self.faults[i].action.clone() {
            Action::Dropout(span) => {
                let id = self.instance();
                let until = self.span_end(span, RoundItem::DropoutEnd { client: c, id });
                self.control(c, now, Control::Dropout { id, until });
            }
            Action::Quit => self.control(c, now, Control::Quit),
            Action::Join => self.join(c),
            Action::Late { delay } => self.control(c, now, Control::Late { delay }),
            Action::Slow {
                factor,
                span,
                device,
                link,
            } => {
                let id = self.instance();
                let end = RoundItem::SlowEnd {
                    client: c,
                    id,
                    device,
                    link,
                };
                let until = self.span_end(span, end);
                if device {
                    self.control(c, now, Control::Slow { id, factor, until });
                }
                if link {
                    self.link_slow_start(c, id, factor, until);
                }
            }
            Action::Crash => self.control(c, now, Control::Crash),
            Action::Corrupt {
                messages,
                direction,
            } => self.net.corrupt_next(c, direction, messages),
        }
    }

    /// A new client joins: it starts, then the faults held for it take effect.
    fn join(&mut self, c: u32) {
        if self.joined[c as usize] {
            return;
        }
        self.joined[c as usize] = true;
        self.emit(Actor::Client(c), SimEvent::ClientJoin, Some(c), vec![]);
        self.control(c, self.now(), Control::Start);
        for i in self.held.remove(&c).unwrap_or_default() {
            self.apply_to(c, i);
        }
    }

    fn instance(&mut self) -> u64 {
        self.next_instance += 1;
        self.next_instance
    }

    fn link_slow_start(&mut self, c: u32, id: u64, factor: f64, until: Option<Micros>) {
        let slows = self.link_slows.entry(c).or_default();
        slows.push((id, factor));
        let (n, combined) = (slows.len(), combined(slows));
        self.net.set_slow(c, combined);
        let mut detail = vec![("what", "link".into()), ("factor", factor.into())];
        if n > 1 {
            detail.push(("in_force", n.into()));
            detail.push(("combined", combined.into()));
        }
        self.emit(Actor::Client(c), SimEvent::SlowStart, Some(c), detail);
        if let Some(t) = until {
            let end = EnvAction::LinkSlowEnd { client: c, id };
            self.schedule(t, ENV, Payload::Env(end));
        }
    }

    /// Ends link slowdown `id` of client `c` (if it is in force: each ends once).
    fn link_slow_end(&mut self, c: u32, id: u64) {
        let Some(slows) = self.link_slows.get_mut(&c) else {
            return;
        };
        let Some(at) = slows.iter().position(|(i, _)| *i == id) else {
            return;
        };
        let (_, factor) = slows.remove(at);
        let (n, combined) = (slows.len(), combined(slows));
        self.net.set_slow(c, combined);
        let mut detail = vec![("what", "link".into()), ("factor", factor.into())];
        if n > 0 {
            detail.push(("in_force", n.into()));
            detail.push(("combined", combined.into()));
        }
        self.emit(Actor::Client(c), SimEvent::SlowEnd, Some(c), detail);
    }
}

/// The factor of several slowdowns in force at once: their product, in start order.
pub(crate) fn combined(slows: &[(u64, f64)]) -> f64 {
    slows.iter().fold(1.0, |f, (_, s)| f * s)
}
