//! A virtual client task: registers, heartbeats, asks for tasks, trains on its own synthetic
//! data, submits contributions, takes part in cross-site validation, and suffers whatever
//! faults the scenario scripts for it.

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::sync::Arc;

use bytes::Bytes;

use super::cache::DataCache;
use super::config::Profile;
use super::events::{client_name, Actor, ClientName, SimEvent};
use super::pool::Pool;
use super::port::{Control, Envelope, Method, Micros, Payload, Port, Timer};
use super::wire::{self, types};
use crate::fed_learn::pb::{self, ModelData};
use crate::fed_learn::view;
use crate::fed_learn::{
    ContributionRef, EventType, Message, MessageId, MessageIds, ModelSource, ModelTransformer,
    Proto, StateRef, Text, TransformChain,
};
use crate::learn::{ClientData, ModelKind, Net, NetTensors, Params, TrainConfig};
use crate::rng::{self, NONE};

/// What every client shares.
pub(crate) struct ClientCommon {
    pub seed: u64,
    pub model: ModelKind,
    /// Every client's data, generated once (perhaps ahead of time, see [`DataCache`]).
    pub data: Arc<DataCache>,
    pub training: TrainConfig,
    pub heart_beat_interval: Micros,
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
    /// Bumped by dropouts, so timers set before one are ignored after it.
    epoch: u64,
    slow_epoch: u64,
    per_sample_us: Option<f64>,
    best: Option<Params>,
    pending: Option<Bytes>,
    late: Option<Micros>,
    slow: f64,
}

type Flow = ControlFlow<()>;

impl Client {
    pub fn new(
        id: u32,
        port: Port,
        chain: TransformChain,
        common: Arc<ClientCommon>,
        profile: Profile,
    ) -> Self {
        Client {
            ids: MessageIds::new(rng::stream(common.seed, "client-ids", u64::from(id), NONE)),
            id,
            port,
            chain,
            common,
            profile,
            state: State::NotStarted,
            token: None,
            epoch: 0,
            slow_epoch: 0,
            per_sample_us: None,
            best: None,
            pending: None,
            late: None,
            slow: 1.0,
        }
    }

    /// Handles envelopes until the world goes away or the client quits.
    ///
    /// Only a task is awaited (its heavy half runs in the pool); everything else is handled
    /// synchronously, and the task's state is boxed only while it runs. That keeps this
    /// future, which every idle client holds, small: one that held every nested handler's
    /// state was 2.7 KB, copied from frame to frame for every envelope.
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
            Payload::Timer(t) => self.on_timer(t),
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

    fn emit(
        &mut self,
        round: Option<u32>,
        event: impl Into<super::events::EventName>,
        detail: super::events::Detail,
    ) {
        self.port.emit(round, event, Some(self.id), detail);
    }

    fn send(&mut self, method: Method, body_type: &'static str, body: &impl prost::Message) {
        let frame = wire::request_frame(self.ids.draw(), method, body_type, Proto(body));
        self.port
            .send(Actor::Server, 0, Payload::Wire { method, frame });
    }

    /// Sends a request whose body is the client's state (a task request, heartbeat or quit).
    fn send_state(&mut self, method: Method) {
        let name = ClientName::new(self.id);
        let state = StateRef {
            client_id: name.as_str(),
            token: self.token.as_deref().unwrap_or_default(),
        };
        let frame = wire::request_frame(self.ids.draw(), method, types::STATE, state);
        self.port
            .send(Actor::Server, 0, Payload::Wire { method, frame });
    }

    fn state_msg(&self) -> pb::ClientState {
        pb::ClientState {
            client_id: client_name(self.id),
            token: self.token.as_deref().unwrap_or_default().to_string(),
            status: String::new(),
        }
    }

    fn register(&mut self) {
        let samples = self.common.data.gen().sample_count(u64::from(self.id));
        let login = pb::ClientLogin {
            client_id: client_name(self.id),
            token: String::new(),
            num_samples: samples as i64,
        };
        self.send(Method::Register, types::LOGIN, &login);
    }

    fn ask_for_task(&mut self) {
        self.send_state(Method::GetTask);
    }

    // ---- faults -------------------------------------------------------------------------

    fn on_control(&mut self, c: Control) -> Flow {
        match c {
            Control::Start if self.state == State::NotStarted => {
                self.state = State::Active;
                self.register();
            }
            Control::Dropout { until } if self.state == State::Active => {
                self.state = State::Dropped;
                self.epoch += 1;
                self.pending = None;
                self.emit(None, SimEvent::DropoutStart, vec![]);
                if let Some(t) = until {
                    let delay = t.saturating_sub(self.port.now());
                    self.port.timer(delay, Timer::DropoutEnd(self.epoch));
                }
            }
            Control::DropoutEnd => self.end_dropout(),
            Control::Quit => {
                if self.token.is_some() && self.state != State::NotStarted {
                    self.send_state(Method::Quit);
                }
                return ControlFlow::Break(());
            }
            Control::Late { delay } => self.late = Some(delay),
            Control::Slow { factor, until } => {
                self.slow = factor;
                self.slow_epoch += 1;
                self.emit(
                    None,
                    SimEvent::SlowStart,
                    vec![("what", "device".into()), ("factor", factor.into())],
                );
                if let Some(t) = until {
                    let delay = t.saturating_sub(self.port.now());
                    self.port.timer(delay, Timer::SlowEnd(self.slow_epoch));
                }
            }
            Control::SlowEnd => self.end_slow(),
            Control::Crash => {
                self.emit(None, SimEvent::ClientCrashed, vec![]);
                // resume_unwind skips the panic hook: a scripted crash prints nothing.
                std::panic::resume_unwind(Box::new("fedsim: simulated client crash"));
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }

    fn end_dropout(&mut self) {
        if self.state != State::Dropped {
            return;
        }
        self.state = State::Active;
        self.epoch += 1;
        self.emit(None, SimEvent::DropoutEnd, vec![]);
        if self.token.is_some() {
            self.port.timer(
                self.common.heart_beat_interval,
                Timer::Heartbeat(self.epoch),
            );
            self.ask_for_task();
        } else {
            self.register();
        }
    }

    fn end_slow(&mut self) {
        if self.slow != 1.0 {
            self.slow = 1.0;
            self.emit(None, SimEvent::SlowEnd, vec![("what", "device".into())]);
        }
    }

    fn on_timer(&mut self, t: Timer) {
        match t {
            Timer::Heartbeat(ep)
                if ep == self.epoch && self.state == State::Active && self.token.is_some() =>
            {
                self.send_state(Method::Heartbeat);
                self.port
                    .timer(self.common.heart_beat_interval, Timer::Heartbeat(ep));
            }
            Timer::TrainingDone { epoch, .. }
                if epoch == self.epoch && self.state == State::Active =>
            {
                if let Some(frame) = self.pending.take() {
                    self.port.send(
                        Actor::Server,
                        0,
                        Payload::Wire {
                            method: Method::SubmitUpdate,
                            frame,
                        },
                    );
                }
                self.ask_for_task();
            }
            Timer::DropoutEnd(ep) if ep == self.epoch => self.end_dropout(),
            Timer::SlowEnd(se) if se == self.slow_epoch => self.end_slow(),
            _ => {}
        }
    }

    // ---- protocol --------------------------------------------------------------------------

    /// A message that is not a task (tasks come tagged [`Method::Task`] and go to the pool
    /// whole, see [`local_update`]).
    fn on_wire(&mut self, frame: Bytes) -> Flow {
        match wire::unframe(frame) {
            Ok(msg) => self.on_reply(&msg),
            Err(err) => {
                self.on_damaged(err.to_string());
                ControlFlow::Continue(())
            }
        }
    }

    /// A frame that failed its checksum or did not decode: logged, and if the client was
    /// waiting for a task, it asks again.
    fn on_damaged(&mut self, err: String) {
        self.emit(
            None,
            SimEvent::MessageCorrupted,
            vec![("error", err.into())],
        );
        if self.token.is_some() && self.pending.is_none() {
            self.ask_for_task();
        }
    }

    /// A decoded reply that carries no task.
    fn on_reply(&mut self, msg: &Message) -> Flow {
        if wire::is_error(msg) {
            // The server no longer knows this client (removed after a silence): log in again.
            self.token = None;
            self.register();
            return ControlFlow::Continue(());
        }
        match msg.body_type.as_str() {
            types::SUMMARY if self.token.is_none() => self.on_login_reply(msg),
            _ => ControlFlow::Continue(()),
        }
    }

    fn on_login_reply(&mut self, msg: &Message) -> Flow {
        let Ok(s) = wire::body::<pb::FederatedSummary>(msg) else {
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
        match self.update(frame).await {
            Tasked::Damaged(err) => self.on_damaged(err),
            Tasked::Reply(msg) => return self.on_reply(&msg),
            Tasked::Corrupt => self.emit(
                None,
                SimEvent::MessageCorrupted,
                vec![("error", "bad CurrentTask".into())],
            ),
            Tasked::Other(task) => match task.task_name.as_str() {
                "submit_best_model" => self.on_submit_best(task),
                "validate" => self.on_validate(task),
                _ => {}
            },
            Tasked::Train {
                round,
                bytes,
                outcome,
            } => self.on_trained(round, bytes, outcome),
        }
        ControlFlow::Continue(())
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
                self.emit(
                    round,
                    SimEvent::MessageCorrupted,
                    vec![("error", err.into())],
                );
                return self.ask_for_task();
            }
        };
        let Some(frame) = done.frame else {
            return;
        };
        if done.params.is_some() {
            self.best = done.params;
        }
        self.pending = Some(frame);
        let busy = self.compute_time(r, done.n_iter as f64) + self.late.take().unwrap_or(0);
        self.port.timer(
            busy,
            Timer::TrainingDone {
                round: r,
                epoch: self.epoch,
            },
        );
    }

    fn decode(&mut self, md: Option<ModelData>) -> Option<ModelData> {
        match self.chain.decode(md.unwrap_or_default()) {
            Ok(md) => Some(md),
            Err(err) => {
                self.emit(
                    None,
                    SimEvent::MessageCorrupted,
                    vec![("error", err.to_string().into())],
                );
                None
            }
        }
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
        let mut chain = std::mem::take(&mut self.chain);
        let mut ids = self.ids.clone();
        let msg_id = ids.draw();
        let (chain, tasked) = self
            .common
            .pool
            .run(move || {
                let tasked = local_update(&common, id, &mut chain, msg_id, frame, token);
                (chain, tasked)
            })
            .await;
        self.chain = chain;
        if matches!(&tasked, Tasked::Train { outcome: Ok(t), .. } if t.frame.is_some()) {
            self.ids = ids;
        }
        tasked
    }

    /// Virtual training time: samples seen × per-sample cost × any slowdown.
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
        (samples * per_sample * self.slow).round() as Micros
    }

    fn on_submit_best(&mut self, task: pb::CurrentTask) {
        self.emit(None, EventType::SubmitLocalBestModel, vec![]);
        let best = self
            .best
            .clone()
            .unwrap_or_else(|| self.common.template.clone());
        let Ok(encoded) = self.chain.encode(best.to_model_data()) else {
            return;
        };
        let c = pb::Contribution {
            client: Some(self.state_msg()),
            n_iter: 0,
            r#type: "best_model".into(),
            meta_data: task.meta_data,
            data: Some(encoded),
            task_name: "submit_best_model".into(),
            metrics: Default::default(),
        };
        self.send(Method::SubmitUpdate, types::CONTRIBUTION, &c);
        self.ask_for_task();
    }

    fn on_validate(&mut self, task: pb::CurrentTask) {
        let Some(md) = self.decode(task.data) else {
            return;
        };
        let mut models: BTreeMap<String, Vec<(String, ndarray::ArrayD<f32>)>> = BTreeMap::new();
        for (name, nd) in &md.params {
            let Some((owner, param)) = name.split_once('/') else {
                continue;
            };
            let Ok(a) = crate::fed_learn::proto_to_ndarray::<f32>(nd) else {
                continue;
            };
            models
                .entry(owner.to_string())
                .or_default()
                .push((param.to_string(), a));
        }
        self.emit(
            None,
            EventType::ReceiveValidationModel,
            vec![("models", models.len().into())],
        );
        let data = self.data();
        let set = if data.test.is_empty() {
            &data.train
        } else {
            &data.test
        };
        let metrics: std::collections::BTreeMap<String, f64> = models
            .into_iter()
            .filter(|(_, p)| p.len() == self.common.template.0.len())
            .map(|(owner, p)| (owner, self.common.model.evaluate(&Params(p), set).accuracy))
            .collect();
        self.emit(
            None,
            EventType::SendValidationResults,
            vec![("models", metrics.len().into())],
        );
        let c = pb::Contribution {
            client: Some(self.state_msg()),
            n_iter: 0,
            r#type: "validation".into(),
            meta_data: task.meta_data,
            data: None,
            task_name: "validate".into(),
            metrics: metrics.into_iter().collect(),
        };
        self.send(Method::SubmitUpdate, types::CONTRIBUTION, &c);
    }
}

/// A local update that went wrong before training.
enum Failed {
    /// The transformer chain could not undo the server's encoding.
    Transform(String),
    /// The tensors were not the model's.
    Tensors(String),
}

/// What a client does after handling an envelope: go on (or stop), or work on a task.
enum Next {
    Flow(Flow),
    /// A frame tagged as a task, to check and decode and (if it is training) train on.
    Task(Bytes),
}

/// A task as [`local_update`] leaves it.
enum Tasked {
    /// The frame failed its checksum or did not decode (the error).
    Damaged(String),
    /// The frame holds a message with no task, for the client task to handle.
    Reply(Message),
    /// The body is not a `CurrentTask`.
    Corrupt,
    /// Not a training task: for the client task to handle.
    Other(pb::CurrentTask),
    /// A training task for round `round`, whose body was `bytes` long, and how it went.
    Train {
        round: u32,
        bytes: usize,
        outcome: Result<Trained, Failed>,
    },
}

/// What a local update produced.
struct Trained {
    n_iter: i64,
    /// The trained model, if the client keeps it (see [`ClientCommon::keep_best`]).
    params: Option<Params>,
    /// The framed contribution (`None` if the transformer chain failed to encode it).
    frame: Option<Bytes>,
}

/// The heavy half of a round for one client, run in the [`Pool`](super::pool::Pool): check and
/// decode the frame and the task and, if it is training, the global model; train on the
/// client's data (generated first if nobody has yet); and encode and frame the contribution.
/// It depends only on its inputs, so it gives the same bits on any thread.
fn local_update(
    common: &ClientCommon,
    id: u32,
    chain: &mut TransformChain,
    msg_id: MessageId,
    frame: Bytes,
    token: Option<Text>,
) -> Tasked {
    let msg = match wire::unframe(frame) {
        Ok(msg) => msg,
        Err(err) => return Tasked::Damaged(err.to_string()),
    };
    if wire::is_error(&msg) || msg.body_type.as_str() != types::TASK {
        return Tasked::Reply(msg);
    }
    let body = msg.body;
    let bytes = body.len();
    let (meta, start) = match plain_training_task(common, chain, &body) {
        Some((meta, start)) => (meta, Ok(start)),
        None => {
            let Ok(task) = <pb::CurrentTask as prost::Message>::decode(body) else {
                return Tasked::Corrupt;
            };
            if task.task_name != "train" {
                return Tasked::Other(task);
            }
            let meta = task.meta_data.unwrap_or_default();
            let start = global_net(common, chain, task.data.unwrap_or_default());
            (meta, start)
        }
    };
    let round = meta.current_round.max(0) as u32;
    let outcome = start.and_then(|start| train(common, id, chain, msg_id, start, token, meta));
    Tasked::Train {
        round,
        bytes,
        outcome,
    }
}

/// A training task as fedsim writes it, with no transformers to undo: its meta data and the
/// global model, read in place straight into the kernels' layout. `None` for anything else,
/// which goes through prost (and, for the model, [`global_net`]).
fn plain_training_task(
    common: &ClientCommon,
    chain: &TransformChain,
    body: &[u8],
) -> Option<(pb::MetaData, Net)> {
    if !chain.is_empty() {
        return None;
    }
    let task = view::current_task(body)?;
    if &body[task.task_name] != b"train" {
        return None;
    }
    let tensors = view::model_tensors(body, task.data?)?;
    let start = Net::from_npy(tensors.iter(body), &common.template)?;
    Some((task.meta.unwrap_or_default(), start))
}

/// The global model `model` as a `Net`, once the chain's transformers are undone. A model in
/// fedsim's own layout goes straight into the kernels' layout; anything else (another
/// layout, a wrong name or shape) is decoded, or rejected, as tensors.
fn global_net(
    common: &ClientCommon,
    chain: &TransformChain,
    model: ModelData,
) -> Result<Net, Failed> {
    let md = chain
        .decode(model)
        .map_err(|e| Failed::Transform(e.to_string()))?;
    let template = &common.template;
    match Net::from_model_data(&md, template) {
        Some(net) => Ok(net),
        None => Params::from_model_data(md, template)
            .map(|global| Net::from_params(&global))
            .map_err(|e| Failed::Tensors(e.to_string())),
    }
}

/// Trains the global model `start` and frames the contribution, stamped with `meta`.
fn train(
    common: &ClientCommon,
    id: u32,
    chain: &mut TransformChain,
    msg_id: MessageId,
    start: Net,
    token: Option<Text>,
    meta: pb::MetaData,
) -> Result<Trained, Failed> {
    let template = &common.template;
    let data = common.data.get(id);
    let anchor = (common.training.prox_mu > 0.0).then(|| start.clone());
    let (net, loss) = common
        .model
        .train_net(start, &data.train, &common.training, anchor.as_ref());
    let n_iter = (data.train.len() * common.training.local_epochs) as i64;
    // Encoded straight from the kernels' layout (the global model has the template's names
    // and shapes, checked above); tensors are made only for a client that keeps its model
    // for cross-site validation.
    let params = common.keep_best.then(|| {
        let mut params = template.clone();
        net.write_params(&mut params);
        params
    });
    let name = ClientName::new(id);
    let frame_with = |data: &dyn ModelSource| {
        let c = ContributionRef {
            client_id: name.as_str(),
            token: token.as_deref().unwrap_or_default(),
            n_iter,
            kind: "train",
            meta: Some(&meta),
            data: Some(data),
            task_name: "train",
            metrics: &[("train_loss", loss)],
        };
        wire::request_frame(msg_id, Method::SubmitUpdate, types::CONTRIBUTION, c)
    };
    // With no transformers to apply, the tensors go from the net straight into the frame.
    let frame = if chain.is_empty() {
        Some(frame_with(&NetTensors::new(&net, template)))
    } else {
        let md = net.to_model_data(template);
        chain.encode(md).ok().map(|md| frame_with(&md))
    };
    Ok(Trained {
        n_iter,
        params,
        frame,
    })
}
