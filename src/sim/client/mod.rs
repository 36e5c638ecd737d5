//! A virtual client task: registers, heartbeats, asks for tasks, trains on its own data,
//! submits contributions, takes part in cross-site validation, retries calls that get no
//! answer, and suffers whatever faults the scenario scripts for it.
//!
//! - `calls`: calls awaiting their answer, their deadlines and backoff.
//! - `update`: the heavy half of a round (decode, train, encode), run in the pool.
//! - `cross_site`: cross-site validation's two tasks.

mod calls;
mod cross_site;
pub(crate) mod update;

use std::ops::ControlFlow;
use std::sync::Arc;

use bytes::Bytes;

use super::cache::DataCache;
use super::config::{Profile, RetryConfig};
use super::events::{client_name, Actor, ClientName, Detail, EventName, SimEvent};
use super::failure::ScriptedCrash;
use super::pool::Pool;
use super::port::{Control, Envelope, Method, Micros, Payload, Port, Timer};
use super::wire::{self, types};
use super::world::combined;
use crate::fed_learn::contribution::names;
use crate::fed_learn::pb;
use crate::fed_learn::TransformChain;
use crate::fed_learn::{EventType, Message, MessageId, MessageIds, Proto, StateRef, Text};
use crate::learn::{ClientData, ModelKind, Params, TrainConfig};
use crate::rng::{self, NONE};
use calls::{Call, Calls, Policy};
use update::{local_update, Failed, Tasked, Trained};

/// What every client shares.
pub(crate) struct ClientCommon {
    pub seed: u64,
    pub model: ModelKind,
    /// Every client's data, generated once (perhaps ahead of time, see [`DataCache`]).
    pub data: Arc<DataCache>,
    pub training: TrainConfig,
    pub heart_beat_interval: Micros,
    /// How calls that get no answer are retried.
    pub retry: RetryConfig,
    /// The model's tensors, to check what arrives.
    pub template: Params,
    /// Where local updates run.
    pub pool: Arc<Pool>,
    /// Whether clients keep their last trained model for cross-site validation (otherwise
    /// nobody asks for it, and a model per client that ever trained adds up).
    pub keep_best: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    NotStarted,
    Active,
    Dropped,
}

/// The client task's state.
pub(crate) struct Client {
    id: u32,
    port: Port,
    ids: MessageIds,
    chain: TransformChain,
    common: Arc<ClientCommon>,
    profile: Profile,
    state: State,
    token: Option<Text>,
    calls: Calls,
    /// Whether every call of this client is answered before its deadline, whatever happens
    /// (see [`answered_in_time`]): then it sets no deadline timers and keeps no copies to send
    /// again, as none could ever be needed.
    sure: bool,
    /// Bumped when the client drops out or comes back, so timers set before are ignored.
    epoch: u64,
    /// Dropouts in force, by fault instance: the client is out while any is.
    dropouts: Vec<u64>,
    /// A quit that came while the client was out, carried out when it is back.
    quit_when_back: bool,
    /// Device slowdowns in force: (fault instance, factor); their factors multiply.
    slows: Vec<(u64, f64)>,
    per_sample_us: Option<f64>,
    best: Option<Params>,
    /// The framed contribution waiting for training time to pass, and its message id.
    pending: Option<(MessageId, Bytes)>,
    late: Option<Micros>,
}

type Flow = ControlFlow<()>;

/// What a client does after handling an envelope: go on (or stop), or work on a task.
enum Next {
    Flow(Flow),
    /// A frame tagged as a task, to check and decode and (if it is training) train on.
    Task(Bytes),
}

impl Client {
    pub fn new(
        id: u32,
        port: Port,
        chain: TransformChain,
        common: Arc<ClientCommon>,
        profile: Profile,
        sure: bool,
    ) -> Self {
        Client {
            sure,
            ids: MessageIds::new(rng::stream(common.seed, "client-ids", u64::from(id), NONE)),
            calls: Calls::default(),
            id,
            port,
            chain,
            common,
            profile,
            state: State::NotStarted,
            token: None,
            epoch: 0,
            dropouts: Vec::new(),
            quit_when_back: false,
            slows: Vec::new(),
            per_sample_us: None,
            best: None,
            pending: None,
            late: None,
        }
    }

    /// Handles envelopes until the world goes away or the client quits.
    ///
    /// Only a task is awaited (its heavy half runs in the pool); everything else is handled
    /// synchronously, and the task's state is boxed only while it runs. That keeps this
    /// future, which every idle client holds, small.
    pub async fn run(mut self) {
        while let Some(e) = self.port.recv().await {
            let flow = match self.handle(e) {
                Next::Flow(flow) => flow,
                Next::Task(frame) => Box::pin(self.on_task(frame)).await,
            };
            if flow.is_break() {
                break;
            }
        }
    }

    fn handle(&mut self, e: Envelope) -> Next {
        match e.payload {
            Payload::Control(c) => return Next::Flow(self.on_control(c)),
            Payload::Timer(t) => return Next::Flow(self.on_timer(t)),
            Payload::Wire {
                method: Method::Task,
                frame,
            } if self.state == State::Active => return Next::Task(frame),
            Payload::Wire { frame, .. } if self.state == State::Active => {
                return Next::Flow(self.on_wire(frame))
            }
            _ => {}
        }
        Next::Flow(ControlFlow::Continue(()))
    }

    fn emit(&mut self, round: Option<u32>, event: impl Into<EventName>, detail: Detail) {
        self.port.emit(round, event, Some(self.id), detail);
    }

    fn send_frame(&mut self, method: Method, frame: Bytes) {
        self.port
            .send(Actor::Server, 0, Payload::Wire { method, frame });
    }

    /// The frame of a request whose body is the client's state (a task request, heartbeat
    /// or quit).
    fn state_frame(&self, id: MessageId, method: Method) -> Bytes {
        let name = ClientName::new(self.id);
        let state = StateRef {
            client_id: name.as_str(),
            token: self.token.as_deref().unwrap_or_default(),
        };
        wire::request_frame(id, method, types::STATE, state)
    }

    fn send_state(&mut self, method: Method) {
        let id = self.ids.draw();
        let frame = self.state_frame(id, method);
        self.send_frame(method, frame);
    }

    fn state_msg(&self) -> pb::ClientState {
        pb::ClientState {
            client_id: client_name(self.id),
            token: self.token.as_deref().unwrap_or_default().to_string(),
            status: String::new(),
        }
    }

    fn login_frame(&self, id: MessageId) -> Bytes {
        let samples = self.common.data.gen().sample_count(u64::from(self.id));
        let login = pb::ClientLogin {
            client_id: client_name(self.id),
            token: String::new(),
            num_samples: samples as i64,
        };
        wire::request_frame(id, Method::Register, types::LOGIN, Proto(&login))
    }

    /// Sends `frame` as the call `id` and starts its deadline.
    fn call(&mut self, method: Method, id: MessageId, frame: Bytes, keep: bool) {
        let kept = (keep && !self.sure).then(|| frame.clone());
        self.send_frame(method, frame);
        let now = self.port.now();
        self.calls
            .open(policy(&self.common, self.id), now, method, id, kept);
        self.arm_calls();
    }

    fn register(&mut self) {
        let id = self.ids.draw();
        let frame = self.login_frame(id);
        self.call(Method::Register, id, frame, false);
    }

    fn ask_for_task(&mut self) {
        let id = self.ids.draw();
        let frame = self.state_frame(id, Method::GetTask);
        self.call(Method::GetTask, id, frame, false);
    }

    /// Hands in a framed contribution (a call: it is sent again if unanswered).
    fn submit(&mut self, id: MessageId, frame: Bytes) {
        self.call(Method::SubmitUpdate, id, frame, true);
    }

    fn arm_calls(&mut self) {
        if self.sure {
            return;
        }
        if let Some(delay) = self.calls.arm(self.port.now()) {
            self.port.timer(delay, Timer::Calls(self.epoch));
        }
    }

    /// Sends again every call whose deadline and backoff are over, logging each retry.
    fn retry_due(&mut self) {
        // The policy borrows the shared config while the loop sends and logs.
        let (common, now) = (self.common.clone(), self.port.now());
        let policy = policy(&common, self.id);
        for call in self.calls.due(policy, now) {
            let frame = match (&call.frame, call.method) {
                (Some(frame), _) => frame.clone(),
                (None, Method::Register) => self.login_frame(call.id),
                (None, method) => self.state_frame(call.id, method),
            };
            let detail = vec![
                ("method", call.method.topic().into()),
                ("attempt", call.attempt.into()),
            ];
            self.emit(None, SimEvent::RequestRetry, detail);
            self.send_frame(call.method, frame);
            self.calls.reopen(policy, now, call);
        }
        self.arm_calls();
    }

    // ---- faults -------------------------------------------------------------------------

    fn on_control(&mut self, c: Control) -> Flow {
        match c {
            Control::Start if self.state == State::NotStarted => {
                self.state = State::Active;
                self.register();
            }
            Control::Dropout { id, until } if self.state != State::NotStarted => {
                self.start_dropout(id, until)
            }
            Control::DropoutEnd { id } => return self.end_dropout(id),
            Control::Quit if self.state == State::Dropped => self.quit_when_back = true,
            Control::Quit => return self.quit(),
            Control::Late { delay } => self.late = Some(delay),
            Control::Slow { id, factor, until } => self.start_slow(id, factor, until),
            Control::SlowEnd { id } => self.end_slow(id),
            Control::Crash => {
                self.emit(None, SimEvent::ClientCrashed, vec![]);
                // resume_unwind skips the panic hook: a scripted crash prints nothing, and
                // its payload tells the task's guard it was scripted.
                std::panic::resume_unwind(Box::new(ScriptedCrash));
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }

    fn quit(&mut self) -> Flow {
        if self.token.is_some() && self.state == State::Active {
            self.send_state(Method::Quit);
        }
        ControlFlow::Break(())
    }

    /// Dropout `id` starts: the client goes silent (if it is not already), dropping what it
    /// was doing and every open call.
    fn start_dropout(&mut self, id: u64, until: Option<Micros>) {
        self.dropouts.push(id);
        let mut detail = vec![];
        if self.dropouts.len() > 1 {
            detail.push(("in_force", self.dropouts.len().into()));
        } else {
            self.state = State::Dropped;
            self.epoch += 1;
            self.pending = None;
            self.calls.clear();
        }
        self.emit(None, SimEvent::DropoutStart, detail);
        if let Some(t) = until {
            let delay = t.saturating_sub(self.port.now());
            self.port.timer(delay, Timer::DropoutEnd(id));
        }
    }

    /// Dropout `id` ends (if it is in force); when it was the last, the client is back: it
    /// carries out a quit that came while it was out, or asks for a task (logging in again if
    /// it never got a token).
    fn end_dropout(&mut self, id: u64) -> Flow {
        let Some(i) = self.dropouts.iter().position(|d| *d == id) else {
            return ControlFlow::Continue(());
        };
        self.dropouts.remove(i);
        if !self.dropouts.is_empty() {
            let detail = vec![("in_force", self.dropouts.len().into())];
            self.emit(None, SimEvent::DropoutEnd, detail);
            return ControlFlow::Continue(());
        }
        self.state = State::Active;
        self.epoch += 1;
        self.emit(None, SimEvent::DropoutEnd, vec![]);
        if self.quit_when_back {
            return self.quit();
        }
        if self.token.is_some() {
            self.port.timer(
                self.common.heart_beat_interval,
                Timer::Heartbeat(self.epoch),
            );
            self.ask_for_task();
        } else {
            self.register();
        }
        ControlFlow::Continue(())
    }

    fn start_slow(&mut self, id: u64, factor: f64, until: Option<Micros>) {
        self.slows.push((id, factor));
        let mut detail = vec![("what", "device".into()), ("factor", factor.into())];
        if self.slows.len() > 1 {
            detail.push(("in_force", self.slows.len().into()));
            detail.push(("combined", combined(&self.slows).into()));
        }
        self.emit(None, SimEvent::SlowStart, detail);
        if let Some(t) = until {
            let delay = t.saturating_sub(self.port.now());
            self.port.timer(delay, Timer::SlowEnd(id));
        }
    }

    /// Device slowdown `id` ends, if it is in force (each ends once).
    fn end_slow(&mut self, id: u64) {
        let Some(i) = self.slows.iter().position(|(s, _)| *s == id) else {
            return;
        };
        let (_, factor) = self.slows.remove(i);
        let mut detail = vec![("what", "device".into()), ("factor", factor.into())];
        if !self.slows.is_empty() {
            detail.push(("in_force", self.slows.len().into()));
            detail.push(("combined", combined(&self.slows).into()));
        }
        self.emit(None, SimEvent::SlowEnd, detail);
    }

    fn on_timer(&mut self, t: Timer) -> Flow {
        let live = self.state == State::Active;
        match t {
            Timer::Heartbeat(ep) if ep == self.epoch && live && self.token.is_some() => {
                self.send_state(Method::Heartbeat);
                self.port
                    .timer(self.common.heart_beat_interval, Timer::Heartbeat(ep));
            }
            Timer::TrainingDone { epoch, .. } if epoch == self.epoch && live => {
                if let Some((id, frame)) = self.pending.take() {
                    self.submit(id, frame);
                }
                self.ask_for_task();
            }
            Timer::Calls(ep) if ep == self.epoch && live => self.retry_due(),
            Timer::DropoutEnd(id) => return self.end_dropout(id),
            Timer::SlowEnd(id) => self.end_slow(id),
            _ => {}
        }
        ControlFlow::Continue(())
    }

    // ---- protocol --------------------------------------------------------------------------

    /// A message that is not a task (tasks come tagged [`Method::Task`] and go to the pool
    /// whole, see [`local_update`]).
    fn on_wire(&mut self, frame: Bytes) -> Flow {
        match wire::unframe(frame) {
            Ok(msg) => self.on_reply(&msg),
            Err(err) => {
                // Which call it answered cannot be told: its deadline will say.
                self.corrupted(None, err.to_string());
                ControlFlow::Continue(())
            }
        }
    }

    fn corrupted(&mut self, round: Option<u32>, err: String) {
        self.emit(
            round,
            SimEvent::MessageCorrupted,
            vec![("error", err.into())],
        );
    }

    /// A decoded reply that carries no task.
    fn on_reply(&mut self, msg: &Message) -> Flow {
        if wire::is_error(msg) {
            // The server no longer knows this client (removed after a silence): every open
            // call was made with the token it forgot. Log in again.
            if self.token.take().is_some() {
                self.calls.clear();
                self.register();
            }
            return ControlFlow::Continue(());
        }
        let answered = msg.get_ref_id().and_then(|r| self.calls.answered(r));
        match answered.map(|c| c.method) {
            Some(Method::Register) => self.on_login_reply(msg),
            // A task request the server held as long as it holds one, with no task for this
            // client: ask again.
            Some(Method::GetTask) => {
                self.ask_for_task();
                ControlFlow::Continue(())
            }
            _ => ControlFlow::Continue(()),
        }
    }

    fn on_login_reply(&mut self, msg: &Message) -> Flow {
        let Ok(s) = wire::body::<pb::FederatedSummary>(msg) else {
            // Unreadable: log in again.
            self.register();
            return ControlFlow::Continue(());
        };
        if s.refused {
            return ControlFlow::Break(());
        }
        self.token = s.token.map(|t| Text::from(t.token));
        self.port.timer(
            self.common.heart_beat_interval,
            Timer::Heartbeat(self.epoch),
        );
        self.ask_for_task();
        ControlFlow::Continue(())
    }

    /// A frame tagged as a task: checked and decoded, and for a training task trained on, in
    /// the pool; other tasks, and a frame that turns out to hold something else, come back to
    /// be handled here.
    async fn on_task(&mut self, frame: Bytes) -> Flow {
        let tasked = self.update(frame).await;
        let now = self.port.now();
        match tasked {
            Tasked::Stale => {}
            Tasked::Reply(msg) => return self.on_reply(&msg),
            Tasked::Damaged(err) => {
                self.corrupted(None, err);
                self.task_failed(now);
            }
            Tasked::Corrupt => {
                self.corrupted(None, "bad CurrentTask".into());
                self.task_failed(now);
            }
            Tasked::Other(task) => {
                self.calls.close(Method::GetTask);
                match task.task_name.as_str() {
                    names::SUBMIT_BEST_MODEL => self.on_submit_best(task),
                    names::VALIDATE => self.on_validate(task),
                    _ => {}
                }
            }
            Tasked::Train {
                round,
                bytes,
                outcome,
            } => self.on_trained(round, bytes, outcome),
        }
        ControlFlow::Continue(())
    }

    /// The answer to the task request came damaged: the request fails, and is sent again
    /// after its backoff.
    fn task_failed(&mut self, now: Micros) {
        self.calls
            .fail(policy(&self.common, self.id), now, Method::GetTask);
        self.arm_calls();
    }

    fn on_trained(&mut self, r: u32, bytes: usize, outcome: Result<Trained, Failed>) {
        self.emit(
            Some(r),
            EventType::ReceiveModel,
            vec![("bytes", bytes.into())],
        );
        let done = match outcome {
            Ok(done) => done,
            Err(failed) => {
                // A transform failure is the message's, before any round is read from it.
                let (round, err) = match failed {
                    Failed::Transform(e) => (None, e),
                    Failed::Tensors(e) => (Some(r), e),
                };
                self.corrupted(round, err);
                return self.task_failed(self.port.now());
            }
        };
        self.calls.close(Method::GetTask);
        let Some(frame) = done.frame else {
            // The update could not be encoded: nothing to hand in, but the client goes on.
            return self.ask_for_task();
        };
        if done.params.is_some() {
            self.best = done.params;
        }
        self.pending = Some((done.id, frame));
        let late = self.late.take().unwrap_or(0);
        let busy = self
            .compute_time(r, done.n_iter as f64)
            .saturating_add(late);
        self.port.timer(
            busy,
            Timer::TrainingDone {
                round: r,
                epoch: self.epoch,
            },
        );
    }

    fn data(&self) -> Arc<ClientData> {
        self.common.data.get(self.id)
    }

    /// Runs [`local_update`] in the pool, lending it the client's transformer chain and the
    /// contribution's message id. The id comes from a copy of the client's id generator, which
    /// replaces the client's own only if a contribution was framed (so a failed update draws no
    /// id, as before it was offloaded).
    async fn update(&mut self, frame: Bytes) -> Tasked {
        let (common, id, token) = (self.common.clone(), self.id, self.token.clone());
        let answering = self.calls.of(Method::GetTask).map(|c: &Call| c.id);
        let mut chain = std::mem::take(&mut self.chain);
        let mut ids = self.ids.clone();
        let msg_id = ids.draw();
        let (chain, tasked) = self
            .common
            .pool
            .run(move || {
                let ids = (answering, msg_id);
                let tasked = local_update(&common, id, &mut chain, ids, frame, token);
                (chain, tasked)
            })
            .await;
        self.chain = chain;
        if matches!(&tasked, Tasked::Train { outcome: Ok(t), .. } if t.frame.is_some()) {
            self.ids = ids;
        }
        tasked
    }

    /// Virtual training time: samples seen × per-sample cost × the slowdowns in force.
    fn compute_time(&mut self, round: u32, samples: f64) -> Micros {
        let per_sample = match (self.profile.per_round, self.per_sample_us) {
            (false, Some(v)) => v,
            _ => {
                let r = if self.profile.per_round {
                    u64::from(round)
                } else {
                    NONE
                };
                let mut s = rng::stream(self.common.seed, "device", u64::from(self.id), r);
                let v = self.profile.per_sample_us.sample(&mut s).max(0.0);
                self.per_sample_us = Some(v);
                v
            }
        };
        (samples * per_sample * combined(&self.slows)).round() as Micros
    }
}

/// Client `client`'s retry policy, from the shared config.
fn policy(common: &ClientCommon, client: u32) -> Policy<'_> {
    Policy {
        cfg: &common.retry,
        seed: common.seed,
        client,
    }
}

/// Whether every call a client makes is sure to be answered before its deadline: its link
/// loses and damages nothing (no loss or corruption, no scripted corruption), is never slowed,
/// and takes a fixed latency with no transfer time, a quarter of the deadline at most. (The
/// server answers a login or a contribution at once, and a task request within half the
/// deadline, so every answer is back within `2 × latency + deadline / 2`.) A dropout forgets
/// its calls anyway. Such a client needs no deadline timers and no copies to send again: W1's
/// thousand clients are all such.
pub(crate) fn answered_in_time(
    profile: &Profile,
    transport: &crate::sim::TransportConfig,
    retry: &RetryConfig,
    threatened: bool,
) -> bool {
    use crate::dist::Dist;
    let quick = match (profile.latency_us, profile.bandwidth) {
        (Dist::Fixed(l), Dist::Fixed(b)) => b == f64::INFINITY && 4.0 * l < retry.deadline as f64,
        _ => false,
    };
    quick && transport.loss_rate == 0.0 && transport.corruption_rate == 0.0 && !threatened
}
