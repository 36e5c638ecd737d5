//! An actor's inbox: the envelopes the world has delivered to it and it has not yet taken.
//!
//! Why not a tokio `mpsc` channel: an unbounded channel allocates its first block of slots up
//! front and touches half a dozen cache lines per message, and a simulation has one inbox per
//! client, so with many clients the channels' cache misses showed up in the profile
//! (PERFORMANCE.md). An actor rarely holds more than a few
//! envelopes, so a short queue and a waker behind one lock do: a few lines per message, and
//! nothing allocated for an idle client beyond the lock itself.
//!
//! Semantics are the channel's: `recv` yields envelopes in the order they were sent and `None`
//! once the sender is gone and the queue is empty; `send` fails once the inbox is closed.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Poll, Waker};

use super::port::Envelope;

#[derive(Default)]
struct State {
    queue: VecDeque<Envelope>,
    /// The receiving task, waiting for an envelope.
    waker: Option<Waker>,
    sender_gone: bool,
    closed: bool,
}

#[derive(Default)]
struct Shared(Mutex<State>);

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while the lock is held leaves the queue as it was: keep using it.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A new inbox and the world's handle for delivering to it.
pub(crate) fn inbox() -> (Sender, Inbox) {
    let shared = Arc::new(Shared::default());
    (Sender(shared.clone()), Inbox(shared))
}

/// The world's end: delivers envelopes.
pub(crate) struct Sender(Arc<Shared>);

impl Sender {
    /// Queues `e` and wakes the actor; gives `e` back if the inbox is closed.
    pub fn send(&self, e: Envelope) -> Result<(), Envelope> {
        let waker = {
            let mut s = self.0.lock();
            if s.closed {
                return Err(e);
            }
            s.queue.push_back(e);
            s.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
        Ok(())
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        let waker = {
            let mut s = self.0.lock();
            s.sender_gone = true;
            s.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

/// The actor's end: takes envelopes.
pub(crate) struct Inbox(Arc<Shared>);

impl Inbox {
    /// The next envelope, waiting for one; `None` once the sender is gone and none are left.
    pub async fn recv(&mut self) -> Option<Envelope> {
        poll_fn(|cx| {
            let mut s = self.0.lock();
            if let Some(e) = s.queue.pop_front() {
                return Poll::Ready(Some(e));
            }
            if s.sender_gone || s.closed {
                return Poll::Ready(None);
            }
            match &mut s.waker {
                Some(w) if w.will_wake(cx.waker()) => {}
                w => *w = Some(cx.waker().clone()),
            }
            Poll::Pending
        })
        .await
    }

    /// The next envelope if one is queued, without waiting.
    pub fn try_recv(&mut self) -> Option<Envelope> {
        self.0.lock().queue.pop_front()
    }

    /// Closes the inbox: later sends fail. Returns how many envelopes were still queued (they
    /// are dropped unseen).
    pub fn close(&mut self) -> usize {
        let queued = {
            let mut s = self.0.lock();
            s.closed = true;
            std::mem::take(&mut s.queue)
        };
        queued.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::port::{Payload, Timer};

    fn envelope(seq: u64) -> Envelope {
        Envelope {
            at: 0,
            from: 0,
            to: 1,
            seq,
            payload: Payload::Timer(Timer::StartRound),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn envelopes_come_in_order_then_none_when_the_sender_is_gone() {
        let (tx, mut rx) = inbox();
        let reader = tokio::spawn(async move {
            let mut seen = Vec::new();
            while let Some(e) = rx.recv().await {
                seen.push(e.seq);
            }
            seen
        });
        tokio::task::yield_now().await;
        for seq in 0..5 {
            tx.send(envelope(seq)).expect("open");
            if seq == 2 {
                // The reader is woken and takes what is queued before more arrives.
                tokio::task::yield_now().await;
            }
        }
        drop(tx);
        assert_eq!(reader.await.unwrap(), vec![0, 1, 2, 3, 4]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_closed_inbox_refuses_envelopes_and_counts_the_dropped_ones() {
        let (tx, mut rx) = inbox();
        tx.send(envelope(0)).expect("open");
        tx.send(envelope(1)).expect("open");
        assert_eq!(rx.close(), 2);
        assert_eq!(tx.send(envelope(2)).map_err(|e| e.seq), Err(2));
        assert!(rx.recv().await.is_none());
    }
}
