//! The FL server task: registration, rounds, aggregation, heartbeats and cross-site
//! validation, speaking the Clara protocol over the world's network.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use bytes::Bytes;
use prost::Message as _;

mod cross_site;
pub(crate) mod inbound;
mod polls;
mod registry;
mod round;

use cross_site::CrossSite;
use inbound::{Decoder, Inbound, Submission, Submitted};
use polls::Polls;
use registry::{Registered, Task};
use round::select;

use super::config::ServerConfig;
use super::events::{Actor, SimEvent};
use super::log::Reason;
use super::pool::{Ordered, Pool};
use super::port::{Envelope, EventSlot, Method, Micros, Payload, Port, Timer};
use super::wire::{self, types};
use super::TestSet;
use crate::aggregate::{Aggregator, Selection, Update};
use crate::fed_learn::contribution::names;
use crate::fed_learn::pb::{self, ModelData};
use crate::fed_learn::{
    EventType, Message, MessageId, MessageIds, ModelTransformer, Proto, Text, TransformChain,
};
use crate::learn::{Dataset, Evaluator, Metrics, Params, PartScore};
use crate::rng::{self, NONE};

/// One row of `rounds.csv`, as the server sees the round.
#[derive(Debug, Clone, PartialEq)]
pub struct RoundStats {
    /// The round number.
    pub round: u32,
    /// Virtual time the round ended.
    pub t_us: Micros,
    /// Clients sampled.
    pub selected: usize,
    /// Contributions accepted.
    pub contributed: usize,
    /// Contributions rejected while the round was open.
    pub rejected: usize,
    /// Contributions aggregated.
    pub aggregated: usize,
    /// Sample-weighted mean of the clients' local training loss.
    pub train_loss: f64,
    /// Global model's loss on the global test set after aggregation.
    pub test_loss: f64,
    /// Global model's accuracy (R² for regression) on the global test set.
    pub test_accuracy: f64,
    /// Whether `round_timeout` closed the round.
    pub timed_out: bool,
    /// Bytes sent client to server during the round (filled in from the network).
    pub bytes_up: u64,
    /// Bytes sent server to client during the round (filled in from the network).
    pub bytes_down: u64,
}

/// Cross-site validation's result: every validating client's accuracy on every model.
#[derive(Debug, Clone, PartialEq)]
pub struct CrossSiteMatrix {
    /// Model owners: client names, then `"server"` for the global model.
    pub models: Vec<String>,
    /// Validating clients, by name.
    pub clients: Vec<String>,
    /// `accuracy[i][j]`: client i's accuracy on model j; `None` where no result came.
    pub accuracy: Vec<Vec<Option<f64>>>,
}

/// What the server leaves behind.
pub(crate) struct ServerOutcome {
    pub rounds: Vec<RoundStats>,
    /// The final model on the global test set.
    pub final_metrics: crate::learn::Metrics,
    pub global: Params,
    pub cross_site: Option<CrossSiteMatrix>,
}

/// Everything the server needs to start.
pub(crate) struct ServerSetup {
    pub cfg: ServerConfig,
    pub seed: u64,
    /// The server's transformer chain, for encoding.
    pub chain: TransformChain,
    /// The same chain again, for decoding (which any thread may do; see `inbound`).
    pub decoder: Arc<TransformChain>,
    pub aggregator: Box<dyn Aggregator>,
    pub selection: Box<dyn Selection>,
    pub global: Params,
    pub test: TestSet,
    /// Where evaluation runs.
    pub pool: Arc<Pool>,
    /// Told, as each round starts, which clients the server expects to select next round (and
    /// in the first round, this round's; and before registration, a guess at the first
    /// round's), so the simulator can prepare their data off the critical path. Nothing it
    /// does may change a result.
    pub lookahead: Option<Lookahead>,
    /// How many clients the run starts with (ids `0..n`): the lookahead's guess at the first
    /// round's clients, made before anyone has registered.
    pub initial_clients: u32,
    /// How long the server holds a task request it has no task for before it answers "no
    /// task yet" (half the clients' call deadline, see `polls`).
    pub hold: Micros,
}

/// See [`ServerSetup::lookahead`].
pub(crate) type Lookahead = Box<dyn FnMut(Vec<u32>) + Send>;

struct Accepted {
    weight: f64,
    n_iter: u64,
    params: Params,
    train_loss: f64,
}

struct OpenRound {
    r: u32,
    selected: BTreeSet<u32>,
    updates: BTreeMap<u32, Accepted>,
    rejected: usize,
    waiting_since_min: bool,
    task: Bytes,
}

enum Phase {
    Waiting,
    Training(OpenRound),
    CrossSite(CrossSite),
    Done,
}

/// The server task's state.
pub(crate) struct Server {
    port: Port,
    cfg: ServerConfig,
    seed: u64,
    ids: MessageIds,
    chain: TransformChain,
    decoder: Decoder,
    aggregator: Box<dyn Aggregator>,
    selection: Box<dyn Selection>,
    global: Params,
    global_md: Arc<ModelData>,
    test: TestSet,
    pool: Arc<Pool>,
    lookahead: Option<Lookahead>,
    clients: BTreeMap<u32, Registered>,
    deadlines: BTreeSet<(Micros, u32)>,
    check_at: Option<Micros>,
    /// Every client that has ever registered.
    ever_registered: BTreeSet<u32>,
    /// Task requests held with no task to give.
    polls: Polls,
    phase: Phase,
    next_round: u32,
    start_pending: bool,
    /// The last registration of a client new to the run, or the last round end: a server
    /// waiting for clients gives up a while after it.
    last_progress: Micros,
    rounds: Vec<RoundStats>,
    cross_site: Option<CrossSiteMatrix>,
}

/// A test set being scored in the pool.
struct Scoring {
    test: Arc<Dataset>,
    scores: Ordered<PartScore>,
}

impl Scoring {
    /// The metrics, once every part is scored.
    fn metrics(self) -> Metrics {
        Evaluator::combine(&self.test, self.scores)
    }
}

/// What follows a round's aggregation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AfterRound {
    /// That was the last round.
    Finish,
    /// The next round starts now.
    Start,
    /// Too few clients are left: wait for more, or give up.
    Wait,
}

impl Server {
    pub fn new(port: Port, s: ServerSetup) -> Self {
        let global_md = Arc::new(s.global.to_model_data());
        let mut lookahead = s.lookahead;
        if let Some(f) = &mut lookahead {
            // Registration takes a while, all of it on the runtime thread; the first rounds'
            // data need not wait for it. (W1's registration lasts as long as generating about
            // four rounds' new clients takes a spare thread; two left that thread idle.)
            let n = (s.initial_clients as usize).min(s.cfg.max_num_clients) as u32;
            let k = s.cfg.clients_per_round;
            for r in (s.cfg.start_round..s.cfg.num_rounds).take(4) {
                let live: Vec<u32> = (0..n).collect();
                f(select(&*s.selection, s.seed, k, r, &live)
                    .into_iter()
                    .collect());
            }
        }
        Server {
            ids: MessageIds::new(rng::stream(s.seed, "server-ids", NONE, NONE)),
            next_round: s.cfg.start_round,
            port,
            cfg: s.cfg,
            seed: s.seed,
            chain: s.chain,
            decoder: Decoder {
                chain: s.decoder,
                template: Arc::new(s.global.clone()),
            },
            aggregator: s.aggregator,
            selection: s.selection,
            global: s.global,
            global_md,
            test: s.test,
            pool: s.pool,
            lookahead,
            clients: BTreeMap::new(),
            deadlines: BTreeSet::new(),
            check_at: None,
            ever_registered: BTreeSet::new(),
            polls: Polls::new(s.hold),
            phase: Phase::Waiting,
            start_pending: false,
            last_progress: 0,
            rounds: Vec::new(),
            cross_site: None,
        }
    }

    /// Serves until the world goes away.
    pub async fn run(mut self) -> ServerOutcome {
        self.port.timer(self.give_up_after(), Timer::StartDeadline);
        if self.next_round >= self.cfg.num_rounds {
            self.finish("completed");
        }
        let mut batch = Vec::new();
        while let Some(e) = self.port.recv().await {
            // The rest of the step's envelopes too, so their decoding can run in parallel.
            batch.push(e);
            self.port.take_ready(&mut batch);
            let decoded = inbound::decode_step(&self.decoder, &self.pool, &mut batch);
            for (e, inbound) in batch.drain(..).zip(decoded) {
                if matches!(self.phase, Phase::Done) {
                    continue;
                }
                self.handle(e, inbound);
            }
        }
        ServerOutcome {
            final_metrics: self.evaluate(),
            rounds: self.rounds,
            global: self.global,
            cross_site: self.cross_site,
        }
    }

    /// Handles an envelope; a wire message's decoding comes with it (see `inbound`).
    fn handle(&mut self, e: Envelope, inbound: Option<Inbound>) {
        match (e.payload, inbound) {
            // Every wire envelope comes decoded (its frame moved out, see `decode_step`).
            (Payload::Wire { method, .. }, Some(inbound)) => {
                if let Some(Actor::Client(c)) = Actor::from_rank(e.from) {
                    self.on_message(c, method, inbound)
                }
            }
            (Payload::Timer(t), _) => self.on_timer(t),
            (Payload::Wire { .. } | Payload::Control(_) | Payload::Env(_), _) => {}
        }
    }

    fn round_no(&self) -> Option<u32> {
        match &self.phase {
            Phase::Training(o) => Some(o.r),
            _ => None,
        }
    }

    fn on_damaged(&mut self, client: u32, method: Method, err: &str) {
        let detail = vec![
            ("method", method.topic().into()),
            ("error", err.to_string().into()),
        ];
        self.port.emit(
            self.round_no(),
            SimEvent::MessageCorrupted,
            Some(client),
            detail,
        );
        if method == Method::SubmitUpdate {
            self.reject(client, Reason::Corrupt, None);
        }
    }

    fn on_message(&mut self, client: u32, method: Method, inbound: Inbound) {
        match (method, inbound) {
            (_, Inbound::Damaged(err)) => self.on_damaged(client, method, &err),
            (_, Inbound::Login(msg, login)) => self.on_register(client, &msg.id, login),
            (Method::Heartbeat, Inbound::State(msg, t)) => self.on_heartbeat(client, &msg.id, t),
            (Method::GetTask, Inbound::State(msg, t)) => self.on_get_task(client, &msg.id, t),
            (Method::Quit, Inbound::State(msg, t)) => self.on_quit(client, &msg.id, t),
            (_, Inbound::Submit(msg, s)) => self.on_submit(client, &msg.id, *s),
            _ => {}
        }
    }

    // ---- replies -------------------------------------------------------------------------

    fn send(&mut self, client: u32, msg: Message) {
        self.send_frame(client, Method::Reply, wire::frame(&msg));
    }

    /// Sends `frame` tagged as `method`: [`Method::Task`] for a reply that carries a task.
    fn send_frame(&mut self, client: u32, method: Method, frame: Bytes) {
        let to = Actor::Client(client);
        self.port.send(to, 0, Payload::Wire { method, frame });
    }

    fn summary(&mut self, client: u32, req: &Text, token: Option<String>, refused: bool) {
        let s = pb::FederatedSummary {
            comment: String::new(),
            token: token.map(|t| pb::Token { token: t }),
            current_round: self.next_round as i32,
            num_rounds: self.cfg.num_rounds as i32,
            refused,
        };
        let frame = wire::reply_frame(&mut self.ids, req, types::SUMMARY, Proto(&s));
        self.send_frame(client, Method::Reply, frame);
    }

    fn refuse(&mut self, client: u32, req: &Text, why: &str) {
        let m = wire::error(&mut self.ids, req, why);
        self.send(client, m);
    }

    // ---- rounds ---------------------------------------------------------------------------

    fn maybe_schedule_start(&mut self) {
        if !self.start_pending && self.clients.len() >= self.cfg.min_num_clients.max(1) {
            self.start_pending = true;
            // A timer at this same instant fires after every message due now is handled, so
            // clients registering at the same moment are all in the draw.
            self.port.timer(0, Timer::StartRound);
        }
    }

    fn on_timer(&mut self, t: Timer) {
        match t {
            Timer::StartRound => {
                self.start_pending = false;
                if matches!(self.phase, Phase::Waiting)
                    && self.clients.len() >= self.cfg.min_num_clients.max(1)
                {
                    self.start_round();
                }
            }
            Timer::StartDeadline if matches!(self.phase, Phase::Waiting) && !self.start_pending => {
                let (now, limit) = (self.port.now(), self.give_up_at());
                if now >= limit {
                    self.finish("not_enough_clients");
                } else {
                    self.port.timer(limit - now, Timer::StartDeadline);
                }
            }
            Timer::RoundTimeout(r) if self.round_no() == Some(r) => {
                let detail = vec![("after_us", self.cfg.round_timeout.into())];
                self.port
                    .emit(Some(r), SimEvent::RoundTimeout, None, detail);
                self.aggregate(true);
            }
            Timer::WaitAfterMin(r) if self.round_no() == Some(r) => self.aggregate(false),
            Timer::HeartbeatCheck => self.on_heartbeat_check(),
            Timer::TaskPolls => self.on_task_polls(),
            Timer::CrossSiteTimeout(step) => self.cross_site_timeout(step),
            _ => {}
        }
    }

    fn sample(&self, r: u32) -> BTreeSet<u32> {
        let live: Vec<u32> = self.clients.keys().copied().collect();
        let k = self.cfg.clients_per_round;
        select(&*self.selection, self.seed, k, r, &live)
    }

    /// Tells the lookahead whom round `r` would select if the live clients stay as they are.
    fn look_ahead(&mut self, r: u32) {
        if r >= self.cfg.num_rounds || self.lookahead.is_none() {
            return;
        }
        let expected = self.sample(r).into_iter().collect();
        if let Some(f) = &mut self.lookahead {
            f(expected);
        }
    }

    fn meta(&self, r: u32) -> pb::MetaData {
        let now = self.port.now();
        pb::MetaData {
            current_round: r as i32,
            num_rounds: self.cfg.num_rounds as i32,
            run_number: 0,
            created: Some(prost_types::Timestamp {
                seconds: (now / 1_000_000) as i64,
                nanos: ((now % 1_000_000) * 1000) as i32,
            }),
        }
    }

    fn encode_task(
        &mut self,
        meta: pb::MetaData,
        name: &str,
        model: ModelData,
        train: bool,
    ) -> Bytes {
        let data = self.chain.encode(model).unwrap_or_default();
        let task = pb::CurrentTask {
            meta_data: Some(meta),
            data: Some(data),
            task_name: name.into(),
            should_train: train,
        };
        task.encode_to_vec().into()
    }

    fn start_round(&mut self) {
        let r = self.next_round;
        let selected = self.sample(r);
        let detail = vec![
            ("selected", selected.len().into()),
            ("live", self.clients.len().into()),
        ];
        self.port.emit(Some(r), EventType::StartRound, None, detail);
        let md = (*self.global_md).clone();
        let task = self.encode_task(self.meta(r), names::TRAIN, md, true);
        self.port
            .timer(self.cfg.round_timeout, Timer::RoundTimeout(r));
        let parked: Vec<(u32, Text)> = selected
            .iter()
            .filter_map(|c| {
                self.clients
                    .get_mut(c)
                    .and_then(|reg| reg.parked.take().map(|(p, _)| (*c, p)))
            })
            .collect();
        self.phase = Phase::Training(OpenRound {
            r,
            selected,
            updates: BTreeMap::new(),
            rejected: 0,
            waiting_since_min: false,
            task,
        });
        // Data for the next round's clients can be prepared on spare threads while this round
        // runs, starting with the serving below. In the first round this round's clients are
        // named again, in case registration did not go as guessed in `new`.
        if r == self.cfg.start_round {
            self.look_ahead(r);
        }
        self.look_ahead(r + 1);
        for (c, req) in parked {
            self.serve_round(c, &req);
        }
    }

    fn serve_round(&mut self, client: u32, req: &Text) {
        let Phase::Training(open) = &self.phase else {
            return;
        };
        let (r, task) = (open.r, open.task.clone());
        if let Some(reg) = self.clients.get_mut(&client) {
            reg.served = Some((Task::Round(r), MessageId::copy_of(req)));
        }
        self.port
            .emit(Some(r), EventType::GetModel, Some(client), vec![]);
        let frame = wire::reply_frame(&mut self.ids, req, types::TASK, &task[..]);
        let detail = vec![("bytes", task.len().into())];
        self.port
            .emit(Some(r), EventType::SendModel, Some(client), detail);
        self.send_frame(client, Method::Task, frame);
    }

    fn on_get_task(&mut self, client: u32, req: &Text, token: Text) {
        if !self.check_token(client, &token) {
            return self.refuse(client, req, "unknown token");
        }
        self.touch(client);
        // Served already for this round or step, the client gets the task again only if it
        // sent the same request again (the answer was lost); a new request waits.
        let served = self.clients.get(&client).and_then(|r| r.served.as_ref());
        let fresh =
            |mark: Task| served.is_none_or(|(m, id)| *m != mark || id.is_some_and(|id| id.is(req)));
        match &self.phase {
            Phase::Training(o) if o.selected.contains(&client) && fresh(Task::Round(o.r)) => {
                self.serve_round(client, req)
            }
            Phase::CrossSite(x)
                if x.expected.contains(&client) && fresh(Task::CrossSite(x.step)) =>
            {
                self.serve_cross_site(client, req)
            }
            _ => self.park(client, req),
        }
    }

    /// A contribution, with its tensors if it is a training one (see `inbound`). One sent
    /// again after it was handled (its answer was lost) is acknowledged and nothing more.
    fn on_submit(&mut self, client: u32, req: &Text, s: Submission) {
        let for_round = s.for_round;
        if !self.check_token(client, &s.token) {
            self.reject(client, Reason::UnknownToken, for_round);
            return self.refuse(client, req, "unknown token");
        }
        self.touch(client);
        let id = MessageId::copy_of(req);
        if let Some(r) = self.clients.get_mut(&client) {
            if id.is_some() && r.last_submit == id {
                return self.summary(client, req, None, false);
            }
            r.last_submit = id;
        }
        match s.what {
            Submitted::CrossSite(c) => self.on_cross_site_submit(client, c),
            Submitted::Train {
                n_iter,
                train_loss,
                params,
            } => self.on_train_submit(client, for_round, n_iter, train_loss, params),
        }
        self.summary(client, req, None, false);
    }

    fn on_train_submit(
        &mut self,
        client: u32,
        for_round: Option<u32>,
        n_iter: i64,
        train_loss: f64,
        params: Result<Params, inbound::ModelError>,
    ) {
        let Phase::Training(open) = &self.phase else {
            return self.reject(client, Reason::Late, for_round);
        };
        if for_round != Some(open.r) {
            return self.reject(client, Reason::Late, for_round);
        }
        if open.updates.contains_key(&client) {
            return self.reject(client, Reason::Duplicate, for_round);
        }
        let Ok(params) = params else {
            return self.reject(client, Reason::Corrupt, for_round);
        };
        let detail = vec![("n_iter", (n_iter.max(0) as u64).into())];
        self.port.emit(
            for_round,
            EventType::ReceiveContribution,
            Some(client),
            detail,
        );
        if let Phase::Training(open) = &mut self.phase {
            open.updates.insert(
                client,
                Accepted {
                    weight: n_iter.max(0) as f64,
                    n_iter: n_iter.max(0) as u64,
                    params,
                    train_loss,
                },
            );
        }
        self.check_progress();
    }

    fn reject(&mut self, client: u32, why: Reason, for_round: Option<u32>) {
        let round = self.round_no();
        if let Phase::Training(open) = &mut self.phase {
            open.rejected += 1;
        }
        let mut detail = vec![("reason", why.as_str().into())];
        if let Some(r) = for_round {
            detail.push(("for_round", r.into()));
        }
        self.port
            .emit(round, SimEvent::ContributionRejected, Some(client), detail);
    }

    fn finish(&mut self, reason: &'static str) {
        let detail = vec![
            ("reason", reason.into()),
            ("rounds", self.rounds.len().into()),
        ];
        self.port.emit_last(SimEvent::RunEnd, detail);
        self.phase = Phase::Done;
        self.port.finish();
    }
}
