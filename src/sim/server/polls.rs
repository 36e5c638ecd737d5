//! Task requests the server holds (a long poll): a client asks for a task once, and the
//! server answers when it has one for it. A held request must still be answered before the
//! client's call deadline, or the client would take it for lost: after `hold` (half the
//! deadline) with no task, the server answers "no task yet" and the client asks again. A
//! request that is lost on its way is therefore noticed, by its deadline passing, and sent
//! again; one that is held is not.

use std::collections::VecDeque;

use super::Server;
use crate::fed_learn::pb;
use crate::fed_learn::{Proto, Text};
use crate::sim::port::{Method, Micros, Timer};
use crate::sim::wire::{self, types};

/// The held requests' expiry times, in the order they were held (which is time order: the
/// hold is the same for all).
pub(super) struct Polls {
    hold: Micros,
    queue: VecDeque<(Micros, u32)>,
    /// When the timer last set fires, if it is yet to fire.
    armed: Option<Micros>,
}

impl Polls {
    pub fn new(hold: Micros) -> Self {
        Polls {
            hold,
            queue: VecDeque::new(),
            armed: None,
        }
    }
}

impl Server {
    /// Holds `client`'s task request `req` until a task comes for it or the hold is over
    /// (a request held before is replaced: the client asked again).
    pub(super) fn park(&mut self, client: u32, req: &Text) {
        let now = self.port.now();
        let Some(r) = self.clients.get_mut(&client) else {
            return;
        };
        r.parked = Some((req.clone(), now));
        let due = now.saturating_add(self.polls.hold);
        self.polls.queue.push_back((due, client));
        if self.polls.armed.is_none() {
            self.polls.armed = Some(due);
            self.port.timer(self.polls.hold, Timer::TaskPolls);
        }
    }

    /// Answers "no task yet" to every request held for the whole hold.
    pub(super) fn on_task_polls(&mut self) {
        let now = self.port.now();
        self.polls.armed = None;
        while let Some(&(due, client)) = self.polls.queue.front() {
            if due > now {
                self.polls.armed = Some(due);
                self.port.timer(due - now, Timer::TaskPolls);
                break;
            }
            self.polls.queue.pop_front();
            let hold = self.polls.hold;
            let Some(r) = self.clients.get_mut(&client) else {
                continue;
            };
            // A request served, or replaced by a later one, since is not this entry's.
            if r.parked
                .as_ref()
                .is_some_and(|(_, at)| at.saturating_add(hold) == due)
            {
                let (req, _) = r.parked.take().expect("checked");
                self.no_task_yet(client, &req);
            }
        }
    }

    fn no_task_yet(&mut self, client: u32, req: &Text) {
        let s = pb::FederatedSummary {
            comment: "no task yet".into(),
            token: None,
            current_round: self.next_round as i32,
            num_rounds: self.cfg.num_rounds as i32,
            refused: false,
        };
        let frame = wire::reply_frame(&mut self.ids, req, types::SUMMARY, Proto(&s));
        self.send_frame(client, Method::Reply, frame);
    }
}
