//! Unscripted panics fail the run. A scripted `crash` is a simulated fault: the client's task
//! unwinds with [`ScriptedCrash`] and the federation goes on without it. Any other panic, in
//! fedsim or in a user's plug-in (aggregator, event handler), is a bug: it is caught where it
//! happens, the run stops at the end of that step, and [`Simulation::run`] returns
//! [`SimError::Failed`] with the actor, the round and the panic's message, plus what the run
//! had produced so far.
//!
//! [`Simulation::run`]: super::Simulation::run
//! [`SimError::Failed`]: super::SimError::Failed

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

use super::events::Actor;
use super::port::Shared;

/// The payload a scripted crash unwinds with, so it can be told from a real panic.
pub(crate) struct ScriptedCrash;

/// Who panicked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Culprit {
    /// The server or a client task (including the pool jobs it was waiting for).
    Actor(Actor),
    /// An event handler subscribed to the bus.
    Handler,
}

impl fmt::Display for Culprit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Culprit::Actor(a) => a.fmt(f),
            Culprit::Handler => f.write_str("an event handler"),
        }
    }
}

/// An unscripted panic that stopped a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Who panicked.
    pub culprit: Culprit,
    /// The round under way when it did, if one was.
    pub round: Option<u32>,
    /// The panic's message.
    pub message: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} panicked", self.culprit)?;
        if let Some(r) = self.round {
            write!(f, " in round {r}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// The text of a panic's payload.
pub(crate) fn message(panic: &(dyn Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with no message".to_string()
    }
}

/// Runs an actor's task, catching a panic in any of its polls: a scripted crash ends it
/// quietly, anything else is recorded as the run's failure. `None` if it did not finish.
///
/// The task comes boxed: pinned in place here instead, it would take up its room twice in
/// this future (as the argument and as the pinned local), and every client's task would be
/// copied at that size when spawned.
pub(crate) async fn guarded<T>(
    actor: Actor,
    shared: Arc<Shared>,
    mut task: Pin<Box<impl Future<Output = T>>>,
) -> Option<T> {
    let outcome = std::future::poll_fn(|cx| {
        match catch_unwind(AssertUnwindSafe(|| task.as_mut().poll(cx))) {
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(panic) => Poll::Ready(Err(panic)),
        }
    })
    .await;
    match outcome {
        Ok(v) => Some(v),
        Err(panic) if panic.is::<ScriptedCrash>() => None,
        Err(panic) => {
            shared.fail(Culprit::Actor(actor), message(&*panic));
            None
        }
    }
}
