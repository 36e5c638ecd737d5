//! The server's registry of clients: registration, heartbeat deadlines, quits and removals,
//! and when a server that waits for clients gives up.

use super::{Phase, Server};
use crate::fed_learn::pb;
use crate::fed_learn::{EventType, MessageId, Text};
use crate::sim::events::SimEvent;
use crate::sim::port::{Micros, Timer};

/// What a task was for: a training round, or a step of cross-site validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Task {
    /// Training in this round.
    Round(u32),
    /// Cross-site validation's step 0 (best models) or 1 (validation).
    CrossSite(u8),
}

/// A registered client, as the server knows it.
pub(super) struct Registered {
    pub token: String,
    /// When it was last heard from (`None` until `touch`, which registration also calls);
    /// it is removed `heart_beat_timeout` later unless heard from again.
    pub last_seen: Option<Micros>,
    /// A task request waiting for a task: its id, and when it was held.
    pub parked: Option<(Text, Micros)>,
    /// The last round or cross-site step this client was given a task for, and the id of
    /// the request it answered: the same request sent again (its answer was lost) is
    /// answered again.
    pub served: Option<(Task, Option<MessageId>)>,
    /// The id of the last contribution handled: the same one sent again (its answer was
    /// lost) is acknowledged, not handled twice.
    pub last_submit: Option<MessageId>,
}

impl Server {
    pub(super) fn on_register(&mut self, client: u32, req: &Text, login: pb::ClientLogin) {
        if let Some(r) = self.clients.get(&client) {
            let token = r.token.clone();
            self.touch(client);
            return self.summary(client, req, Some(token), false);
        }
        if self.clients.len() >= self.cfg.max_num_clients {
            let detail = vec![("max_num_clients", self.cfg.max_num_clients.into())];
            self.port.emit(
                self.round_no(),
                SimEvent::LoginRefused,
                Some(client),
                detail,
            );
            return self.summary(client, req, None, true);
        }
        let token = self.ids.next_id();
        if self.ever_registered.insert(client) {
            self.last_progress = self.port.now();
        }
        let reg = Registered {
            token: token.clone(),
            last_seen: None,
            parked: None,
            served: None,
            last_submit: None,
        };
        self.clients.insert(client, reg);
        self.touch(client);
        let detail = vec![("samples", (login.num_samples.max(0) as u64).into())];
        self.port.emit(
            self.round_no(),
            EventType::ClientRegister,
            Some(client),
            detail,
        );
        self.summary(client, req, Some(token), false);
        if matches!(self.phase, Phase::Waiting) {
            self.maybe_schedule_start();
        }
    }

    pub(super) fn on_heartbeat(&mut self, client: u32, req: &Text, token: Text) {
        if !self.check_token(client, &token) {
            return self.refuse(client, req, "unknown token");
        }
        self.touch(client);
        self.summary(client, req, None, false);
    }

    pub(super) fn on_quit(&mut self, client: u32, req: &Text, token: Text) {
        if !self.check_token(client, &token) {
            return self.refuse(client, req, "unknown token");
        }
        self.forget(client);
        self.port
            .emit(self.round_no(), EventType::ClientQuit, Some(client), vec![]);
        self.summary(client, req, None, false);
        self.check_progress();
    }

    /// The registered client behind `token`, if it is `client`'s.
    pub(super) fn check_token(&self, client: u32, token: &str) -> bool {
        // Tokens are fresh ids, one per registered client: comparing with the client's own is
        // the same as looking the token up, without hashing it.
        self.clients.get(&client).is_some_and(|r| r.token == token)
    }

    /// Notes that `client` was heard from now, pushing back its heartbeat deadline.
    pub(super) fn touch(&mut self, client: u32) {
        let now = self.port.now();
        let Some(r) = self.clients.get_mut(&client) else {
            return;
        };
        if r.last_seen == Some(now) {
            // Heard from again at the same instant: the deadline does not move.
            return;
        }
        let timeout = self.cfg.heart_beat_timeout;
        if let Some(seen) = r.last_seen.replace(now) {
            self.deadlines
                .remove(&(seen.saturating_add(timeout), client));
        }
        self.deadlines.insert((now.saturating_add(timeout), client));
        self.arm_check();
    }

    fn arm_check(&mut self) {
        let Some(&(first, _)) = self.deadlines.first() else {
            return;
        };
        if self.check_at.is_none_or(|t| t > first) {
            self.check_at = Some(first);
            self.port
                .timer(first - self.port.now().min(first), Timer::HeartbeatCheck);
        }
    }

    pub(super) fn forget(&mut self, client: u32) {
        if let Some(r) = self.clients.remove(&client) {
            if let Some(seen) = r.last_seen {
                let deadline = seen.saturating_add(self.cfg.heart_beat_timeout);
                self.deadlines.remove(&(deadline, client));
            }
        }
    }

    pub(super) fn on_heartbeat_check(&mut self) {
        let now = self.port.now();
        if self.check_at.is_some_and(|t| t <= now) {
            self.check_at = None;
        }
        let expired: Vec<u32> = self
            .deadlines
            .iter()
            .take_while(|(d, _)| *d <= now)
            .map(|(_, c)| *c)
            .collect();
        for c in &expired {
            self.forget(*c);
            let detail = vec![("reason", "heartbeat_timeout".into())];
            self.port
                .emit(self.round_no(), SimEvent::ClientRemoved, Some(*c), detail);
        }
        self.arm_check();
        if !expired.is_empty() {
            self.check_progress();
        }
    }

    /// How long a server that cannot start a round waits for more clients.
    pub(super) fn give_up_after(&self) -> Micros {
        self.cfg.round_timeout.max(self.cfg.heart_beat_timeout)
    }

    /// The earliest time a server that cannot start a round may give up: one give-up period
    /// after the last registration of a client new to the run, or the last round end. Only
    /// new clients count, so a client that is removed and logs in again, over and over,
    /// cannot keep a hopeless run alive; heartbeats never count.
    pub(super) fn give_up_at(&self) -> Micros {
        let ended = self.rounds.last().map_or(0, |s| s.t_us);
        self.last_progress
            .max(ended)
            .saturating_add(self.give_up_after())
    }
}
