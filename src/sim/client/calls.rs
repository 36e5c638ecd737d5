//! A client's calls awaiting their answer, as a gRPC client with deadlines keeps them.
//!
//! A login, a task request and a contribution each expect an answer. If none has come by the
//! call's deadline (the request or its answer was lost or damaged on the link), the call is
//! sent again, with the same message id, after a backoff that grows with each attempt and is
//! spread by jitter drawn from the client's own stream. Heartbeats need no answer (the next
//! one follows anyway) and a quit is the client's last word.
//!
//! All of a client's calls share one timer, set for the earliest moment one of them is due;
//! a client whose calls are answered in time sets it once and never sees it fire. That keeps
//! the cost of deadlines off a healthy federation.

use bytes::Bytes;
use rand::Rng;

use crate::fed_learn::MessageId;
use crate::rng::{self, Stream, NONE};
use crate::sim::config::RetryConfig;
use crate::sim::port::{Method, Micros};

/// A call sent and not yet answered.
#[derive(Debug, Clone)]
pub(super) struct Call {
    pub method: Method,
    /// Its message id, which its answer names as `_refMsgId`.
    pub id: MessageId,
    /// The frame to send again, for a call whose body cannot be cheaply rebuilt from the id
    /// (a contribution).
    pub frame: Option<Bytes>,
    /// Retries sent so far.
    pub attempt: u32,
    /// When its deadline passes, or when its backoff ends.
    due: Micros,
    backing_off: bool,
}

/// How a client retries, and whose jitter stream to draw from.
#[derive(Clone, Copy)]
pub(super) struct Policy<'a> {
    pub cfg: &'a RetryConfig,
    pub seed: u64,
    pub client: u32,
}

/// The open calls of one client. (The policy is passed in rather than kept: every idle
/// client holds its calls, so they are kept small.)
#[derive(Default)]
pub(super) struct Calls {
    open: Vec<Call>,
    /// When the timer last set fires, if it is yet to fire.
    armed: Option<Micros>,
    /// The client's own jitter stream, made on its first retry (boxed: most clients never
    /// retry, and every idle client holds its calls).
    jitter: Option<Box<Stream>>,
}

impl Calls {
    /// Notes a call just sent; it replaces an open call of the same method.
    pub fn open(
        &mut self,
        p: Policy,
        now: Micros,
        method: Method,
        id: MessageId,
        frame: Option<Bytes>,
    ) {
        let call = Call {
            method,
            id,
            frame,
            attempt: 0,
            due: now,
            backing_off: false,
        };
        self.reopen(p, now, call);
    }

    /// Notes that `call` was sent (again) now: its deadline starts, and it replaces an open
    /// call of the same method.
    pub fn reopen(&mut self, p: Policy, now: Micros, mut call: Call) {
        call.due = now.saturating_add(p.cfg.deadline);
        call.backing_off = false;
        self.open.retain(|c| c.method != call.method);
        self.open.push(call);
    }

    /// The open call of `method`, if any.
    pub fn of(&self, method: Method) -> Option<&Call> {
        self.open.iter().find(|c| c.method == method)
    }

    /// The call that a reply naming `ref_id` answers, closed; `None` if no open call has
    /// that id (the answer to a heartbeat, or a second answer to a call sent twice).
    pub fn answered(&mut self, ref_id: &str) -> Option<Call> {
        let i = self.open.iter().position(|c| c.id.is(ref_id))?;
        Some(self.open.remove(i))
    }

    /// Closes the open call of `method`, if any.
    pub fn close(&mut self, method: Method) {
        self.open.retain(|c| c.method != method);
    }

    /// The open call of `method` failed without waiting for its deadline (its answer came
    /// damaged): it backs off now and is sent again after.
    pub fn fail(&mut self, p: Policy, now: Micros, method: Method) {
        let Some(i) = self.open.iter().position(|c| c.method == method) else {
            return;
        };
        if !self.open[i].backing_off {
            self.back_off(p, now, i);
        }
    }

    /// Forgets every call (the client dropped out, or the server forgot its token).
    pub fn clear(&mut self) {
        self.open.clear();
        self.armed = None;
    }

    /// The calls to send again at `now`, their attempt counted: those past their deadline
    /// start backing off (with no backoff, they are due at once), and those whose backoff is
    /// over are handed back, closed until [`Calls::reopen`].
    pub fn due(&mut self, p: Policy, now: Micros) -> Vec<Call> {
        if self.armed.is_some_and(|t| t <= now) {
            self.armed = None;
        }
        for i in 0..self.open.len() {
            if !self.open[i].backing_off && self.open[i].due <= now {
                self.back_off(p, now, i);
            }
        }
        let mut due = Vec::new();
        let mut i = 0;
        while i < self.open.len() {
            if self.open[i].backing_off && self.open[i].due <= now {
                let mut call = self.open.remove(i);
                call.attempt += 1;
                due.push(call);
            } else {
                i += 1;
            }
        }
        due
    }

    /// How long from `now` to set the timer for, if the earliest open call is due before the
    /// timer already set (or none is set).
    pub fn arm(&mut self, now: Micros) -> Option<Micros> {
        let next = self.open.iter().map(|c| c.due).min()?;
        if self.armed.is_some_and(|t| t <= next) {
            return None;
        }
        self.armed = Some(next);
        Some(next.saturating_sub(now))
    }

    fn back_off(&mut self, p: Policy, now: Micros, i: usize) {
        let wait = self.backoff(p, self.open[i].attempt + 1);
        let call = &mut self.open[i];
        call.backing_off = true;
        call.due = now.saturating_add(wait);
    }

    /// The backoff before retry number `k` (from 1).
    fn backoff(&mut self, p: Policy, k: u32) -> Micros {
        let cfg = p.cfg;
        let grown = cfg.initial as f64 * cfg.multiplier.powi(k.saturating_sub(1) as i32);
        let base = grown.min(cfg.max as f64);
        if cfg.jitter <= 0.0 || base <= 0.0 {
            return base.round() as Micros;
        }
        let (seed, client) = (p.seed, p.client);
        let jitter = self
            .jitter
            .get_or_insert_with(|| Box::new(rng::stream(seed, "retry", u64::from(client), NONE)));
        let spread = jitter.random_range(-cfg.jitter..=cfg.jitter);
        (base * (1.0 + spread)).max(0.0).round() as Micros
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::SECOND;

    fn id(n: u8) -> MessageId {
        MessageId::copy_of(&format!("{n:036}")).unwrap()
    }

    fn policy(jitter: f64) -> RetryConfig {
        RetryConfig {
            deadline: 30 * SECOND,
            initial: SECOND,
            max: 4 * SECOND,
            multiplier: 2.0,
            jitter,
        }
    }

    fn p(cfg: &RetryConfig) -> Policy<'_> {
        Policy {
            cfg,
            seed: 1,
            client: 0,
        }
    }

    #[test]
    fn an_unanswered_call_is_sent_again_after_its_deadline_and_a_growing_capped_backoff() {
        let cfg = policy(0.0);
        let mut c = Calls::default();
        c.open(p(&cfg), 0, Method::GetTask, id(1), None);
        assert_eq!(c.arm(0), Some(30 * SECOND));
        assert!(c.due(p(&cfg), 29 * SECOND).is_empty());
        // The deadline passes: it backs off for `initial`, then is due again.
        assert!(c.due(p(&cfg), 30 * SECOND).is_empty());
        let mut t = 30 * SECOND;
        for (attempt, backoff) in [1, 2, 4, 4].into_iter().enumerate() {
            assert_eq!(c.arm(t), Some(backoff * SECOND));
            t += backoff * SECOND;
            let mut due = c.due(p(&cfg), t);
            let call = due.pop().expect("a call is due");
            assert_eq!(call.attempt, attempt as u32 + 1);
            assert_eq!(call.id, id(1), "a retry keeps the call's id");
            c.reopen(p(&cfg), t, call);
            assert_eq!(c.arm(t), Some(30 * SECOND));
            t += 30 * SECOND;
            assert!(c.due(p(&cfg), t).is_empty());
        }
    }

    #[test]
    fn an_answered_call_is_closed_and_others_are_not() {
        let cfg = policy(0.0);
        let mut c = Calls::default();
        c.open(p(&cfg), 0, Method::Register, id(1), None);
        c.open(p(&cfg), 0, Method::SubmitUpdate, id(2), None);
        assert!(c.answered(id(3).as_str()).is_none());
        assert_eq!(c.answered(id(1).as_str()).unwrap().method, Method::Register);
        assert!(c.of(Method::Register).is_none());
        assert!(c.of(Method::SubmitUpdate).is_some());
        // One timer serves both: a later call does not set another.
        assert_eq!(c.arm(0), Some(30 * SECOND));
        c.open(p(&cfg), 5, Method::GetTask, id(4), None);
        assert_eq!(c.arm(5), None);
    }

    #[test]
    fn a_failed_call_backs_off_at_once_and_jitter_stays_within_its_spread() {
        let cfg = policy(0.2);
        let mut c = Calls::default();
        c.open(p(&cfg), 0, Method::GetTask, id(1), None);
        c.fail(p(&cfg), 10, Method::GetTask);
        let wait = c.arm(10).unwrap();
        assert!((800_000..=1_200_000).contains(&wait), "{wait}");
        assert!(c.due(p(&cfg), 10 + wait).len() == 1);
        // Same seed, same client: the same draws.
        let mut again = Calls::default();
        again.open(p(&cfg), 0, Method::GetTask, id(1), None);
        again.fail(p(&cfg), 10, Method::GetTask);
        assert_eq!(again.arm(10), Some(wait));
    }
}
