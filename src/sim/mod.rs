//! The simulation engine: one server task and many client tasks on a paused, current-thread
//! tokio runtime, exchanging protobuf bytes through a modelled network in virtual time.
//!
//! - [`config`]: plain structs describing a run (scenarios compile into them).
//! - `port`: what actors exchange and how they talk to the world.
//! - `inbox`: each actor's queue of delivered envelopes.
//! - `wire`: protocol messages as checked byte frames.
//! - `network`: latency, bandwidth, loss and corruption per client link.
//! - `world`: virtual time, delivery order, fault injection.
//! - `server`, `client`: the two sides of the Clara protocol.
//! - `cache`: clients' data, generated once, perhaps ahead of time.
//! - `pool`: the threads that share training, data generation and evaluation.
//! - [`events`]: event records, the event bus and its handlers.
//! - [`log`]: a finished run's event log and queries over it.

pub mod config;
pub mod events;
pub mod log;

mod cache;
mod client;
mod failure;
#[doc(hidden)]
pub mod fuzz;
mod inbox;
mod network;
mod pool;
mod port;
mod profiles;
mod server;
mod wire;
mod world;

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;

use prost::Message as _;

pub use config::{
    Action, Clients, Direction, Fault, Profile, RetryConfig, ServerConfig, SimConfig, Span,
    TransportConfig, Trigger, SECOND,
};
pub use events::{
    client_id, client_name, Actor, EventHandler, EventName, EventRecord, SimEvent, Val,
};
pub use failure::{Culprit, Failure};
pub use log::{EventLog, Query, Reason};
pub use port::Micros;
pub use profiles::Profiles;
pub use server::{CrossSiteMatrix, RoundStats};
pub use world::{Traffic, WireRecord};

use crate::aggregate::{self, Aggregator, Selection};
use crate::fed_learn::pb::ModelData;
use crate::fed_learn::{
    ApplicationContext, MessageCompressor, ModelEncryptor, ModelTransformer, TransformChain,
};
use crate::learn::{DataGen, Dataset, Metrics, Params};
use crate::rng::{self, NONE};
use cache::DataCache;
use client::{Client, ClientCommon};
use events::EventBus;
use pool::{Ordered, Pool};
use port::{Port, Shared};
use server::{Server, ServerSetup};
use world::World;

/// Why a simulation could not run.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The configuration is inconsistent.
    #[error("invalid simulation config: {0}")]
    Config(String),
    /// Writing the event log failed.
    #[error("writing the event log failed: {0}")]
    Sink(#[from] std::io::Error),
    /// An unscripted panic (a bug in fedsim or in a plug-in) stopped the run; `partial` holds
    /// what it had produced (its log ends with `run_end{reason: failed}`).
    #[error("{failure}")]
    Failed {
        /// Who panicked, when, and why.
        failure: Failure,
        /// The run up to the panic.
        partial: Box<RunResult>,
    },
}

/// Everything a run produced.
#[derive(Debug, Clone)]
pub struct RunResult {
    /// The run's name.
    pub name: String,
    /// Its seed.
    pub seed: u64,
    /// The event log, if kept (see [`Simulation::keep_events`]).
    pub events: EventLog,
    /// One entry per aggregated round.
    pub rounds: Vec<RoundStats>,
    /// The final global model.
    pub params: Params,
    /// The final global model as plain (untransformed) `ModelData`.
    pub model: ModelData,
    /// The final model on the global test set.
    pub metrics: Metrics,
    /// Cross-site validation's matrix, when it ran.
    pub cross_site: Option<CrossSiteMatrix>,
    /// False when the run stalled (nothing left to happen before the last round) or failed.
    pub completed: bool,
    /// Why the run failed, for a partial result (see [`SimError::Failed`]).
    pub error: Option<String>,
    /// Whether the run was stopped early by [`Simulation::interrupt_on`]'s flag.
    pub interrupted: bool,
    /// How many events of each name were logged.
    pub event_counts: BTreeMap<String, u64>,
    /// Contributions accepted over the run.
    pub client_updates: u64,
    /// Virtual time at the end.
    pub virtual_us: Micros,
    /// Every message that crossed a client's link, in the order it was sent, if recorded
    /// (see [`Simulation::record_wire`]); empty otherwise.
    pub wire: Vec<WireRecord>,
    /// Wall-clock seconds the run took (not part of any deterministic output).
    pub wall_s: f64,
}

impl RunResult {
    /// The final model as `model.pb` bytes: one encoded `ModelData` of .npy tensors.
    pub fn model_bytes(&self) -> Vec<u8> {
        self.model.encode_to_vec()
    }

    /// Client updates per wall-clock second.
    pub fn updates_per_s(&self) -> f64 {
        if self.wall_s > 0.0 {
            self.client_updates as f64 / self.wall_s
        } else {
            0.0
        }
    }
}

/// A configured simulation, ready to run.
pub struct Simulation {
    cfg: SimConfig,
    aggregator: Option<Box<dyn Aggregator>>,
    selection: Option<Box<dyn Selection>>,
    handlers: Vec<Box<dyn EventHandler>>,
    sink: Option<Box<dyn Write + Send>>,
    keep_events: bool,
    record_wire: bool,
    reference_paths: bool,
    interrupt: Option<Arc<std::sync::atomic::AtomicBool>>,
}

impl Simulation {
    /// A simulation of `cfg`.
    pub fn new(cfg: SimConfig) -> Self {
        Simulation {
            cfg,
            aggregator: None,
            selection: None,
            handlers: Vec::new(),
            sink: None,
            keep_events: true,
            record_wire: false,
            reference_paths: crate::fastpath::reference_only(),
            interrupt: None,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &SimConfig {
        &self.cfg
    }

    /// Uses `a` instead of the aggregator the config names.
    pub fn aggregator(mut self, a: Box<dyn Aggregator>) -> Self {
        self.aggregator = Some(a);
        self
    }

    /// Uses `s` to pick each round's clients instead of uniform sampling.
    pub fn selection(mut self, s: Box<dyn Selection>) -> Self {
        self.selection = Some(s);
        self
    }

    /// Subscribes a handler to the event bus.
    pub fn handler(mut self, h: Box<dyn EventHandler>) -> Self {
        self.handlers.push(h);
        self
    }

    /// Streams the event log, one JSON line per event, to `w` as the run goes.
    pub fn event_sink(mut self, w: Box<dyn Write + Send>) -> Self {
        self.sink = Some(w);
        self
    }

    /// Whether [`RunResult::events`] keeps every record (default true). Turn it off for very
    /// long runs that stream the log instead.
    pub fn keep_events(mut self, keep: bool) -> Self {
        self.keep_events = keep;
        self
    }

    /// Whether [`RunResult::wire`] records every message that crossed a client's link: when
    /// it was sent and arrived, which way, what it was. For tests of protocol behaviour that
    /// the event log alone cannot show (which messages a client sent while it was out, the
    /// order in which a link delivered). Default false.
    pub fn record_wire(mut self, record: bool) -> Self {
        self.record_wire = record;
        self
    }

    /// Stops the run at the end of the step in which `flag` is found set (a signal handler
    /// sets it): the log ends with `run_end{reason: interrupted}` and the result, marked
    /// [`RunResult::interrupted`], holds what the run had produced.
    pub fn interrupt_on(mut self, flag: Arc<std::sync::atomic::AtomicBool>) -> Self {
        self.interrupt = Some(flag);
        self
    }

    /// Whether to take the reference path wherever fedsim has a shortcut that must give the
    /// same results (default: true when the environment variable `FEDSIM_KERNELS` is
    /// `portable`). Tests use it to show that the shortcut changes nothing.
    pub fn reference_paths(mut self, on: bool) -> Self {
        self.reference_paths = on;
        self
    }

    /// Runs on a fresh paused, current-thread runtime with `threads` blocking threads.
    pub fn run(self) -> Result<RunResult, SimError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .max_blocking_threads(self.cfg.threads.saturating_sub(1).max(1))
            .build()
            .map_err(SimError::Sink)?;
        rt.block_on(self.run_async())
    }

    /// Runs inside the caller's runtime, which must be current-thread with a paused clock
    /// (`#[tokio::test(start_paused = true)]`).
    pub async fn run_async(self) -> Result<RunResult, SimError> {
        let wall = std::time::Instant::now();
        let Simulation {
            cfg,
            aggregator,
            selection,
            handlers,
            sink,
            keep_events,
            record_wire,
            reference_paths,
            interrupt,
        } = self;
        validate(&cfg)?;
        let aggregator = aggregator.unwrap_or_else(|| cfg.server.aggregator.build());
        let selection = selection.unwrap_or_else(|| Box::new(aggregate::Uniform));
        let shared = Arc::new(Shared::default());
        let data = cfg.data.generator(cfg.seed);
        let classes = if cfg.data.is_classification() {
            cfg.data.classes
        } else {
            1
        };
        let template = cfg.model.init(
            cfg.data.features,
            classes,
            &mut rng::stream(cfg.seed, "init", NONE, NONE),
        );
        template
            .check_layers()
            .map_err(|e| SimError::Config(format!("the model's tensors: {e}")))?;
        let mut inboxes = vec![None];

        let cache = Arc::new(DataCache::new(data.clone(), cfg.profiles.len() as usize));
        // With threads to spare, next round's clients get their data generated while the
        // runtime thread works through the server's side of the round.
        let pool = Pool::new(cfg.threads);
        let prefetch = pool.is_parallel().then(|| {
            let (cache, pool) = (cache.clone(), pool.clone());
            Box::new(move |clients| cache.prefetch(&pool, clients)) as server::Lookahead
        });
        let (tx, rx) = inbox::inbox();
        inboxes.push(Some(tx));
        let setup = ServerSetup {
            cfg: cfg.server.clone(),
            seed: cfg.seed,
            chain: chain(&cfg, 0),
            decoder: Arc::new(chain(&cfg, 0)),
            aggregator,
            selection,
            global: template.clone(),
            test: global_test(&pool, &data, cfg.initial_clients),
            pool: pool.clone(),
            lookahead: prefetch,
            initial_clients: cfg.initial_clients,
            hold: cfg.retry.deadline / 2,
        };
        let server = Server::new(Port::new(Actor::Server, rx, shared.clone()), setup);
        let server = tokio::spawn(failure::guarded(
            Actor::Server,
            shared.clone(),
            Box::pin(server.run()),
        ));

        let common = Arc::new(ClientCommon {
            seed: cfg.seed,
            model: cfg.model,
            data: cache,
            training: cfg.training,
            heart_beat_interval: cfg.server.heart_beat_interval.max(1),
            retry: cfg.retry,
            template: template.clone(),
            pool: pool.clone(),
            keep_best: cfg.server.cross_site_validation,
        });
        // Clients whose links a fault damages or slows, marked in one pass over the faults.
        let mut threatened = vec![false; cfg.profiles.len() as usize];
        for f in &cfg.faults {
            if matches!(
                f.action,
                Action::Corrupt { .. } | Action::Slow { link: true, .. }
            ) {
                for c in f.clients.iter() {
                    if let Some(t) = threatened.get_mut(c as usize) {
                        *t = true;
                    }
                }
            }
        }
        for id in 0..cfg.profiles.len() {
            let profile = cfg.profiles.get(id);
            let (tx, rx) = inbox::inbox();
            inboxes.push(Some(tx));
            let port = Port::new(Actor::Client(id), rx, shared.clone());
            let sure = !reference_paths
                && client::answered_in_time(
                    profile,
                    &cfg.transport,
                    &cfg.retry,
                    threatened[id as usize],
                );
            let c = Client::new(
                id,
                port,
                chain(&cfg, u64::from(id) + 1),
                common.clone(),
                profile.clone(),
                sure,
            );
            let task = Box::pin(c.run());
            tokio::spawn(failure::guarded(Actor::Client(id), shared.clone(), task));
        }

        let app = Arc::new(ApplicationContext {
            name: cfg.name.clone(),
            run_number: 0,
            props: Default::default(),
        });
        let bus = EventBus::new(handlers, sink, keep_events, app);
        let net = network::Network::new(cfg.seed, cfg.transport.clone(), cfg.profiles.clone());
        let faults = cfg.faults.clone();
        let mut world = World::new(
            shared.clone(),
            inboxes,
            bus,
            net,
            faults,
            cfg.initial_clients,
        );
        if record_wire {
            world.wire = Some(Vec::new());
        }
        world.interrupt = interrupt;
        let mut completed = world.run((0..cfg.initial_clients).collect()).await;
        let failure = world.take_failure();
        let interrupted = world.interrupted();
        match &failure {
            Some(f) => world.failed(f),
            None if interrupted => world.log_interrupted(),
            None if !completed => world.stalled(),
            None => {}
        }
        world.close();
        let outcome = server.await.ok().flatten();
        // The server's last act (scoring the final model) may panic after the world is gone.
        let failure = failure.or_else(|| world.take_failure());
        world.bus.finish();
        if let Some(err) = world.bus.sink_error.take() {
            return Err(SimError::Sink(err));
        }
        let requested = cfg.server.num_rounds.saturating_sub(cfg.server.start_round) as usize;
        let ran = outcome.as_ref().map_or(0, |o| o.rounds.len());
        let learned = outcome
            .as_ref()
            .is_some_and(|o| o.rounds.iter().any(|r| r.aggregated > 0));
        // Complete: ended as the server meant to, every round asked for ran, and something
        // was learned. A run that gave up, stalled or did nothing is not.
        completed &=
            failure.is_none() && !interrupted && ran == requested && (requested == 0 || learned);
        let outcome = outcome.unwrap_or_else(|| server::ServerOutcome {
            rounds: Vec::new(),
            final_metrics: Metrics {
                loss: f64::NAN,
                accuracy: f64::NAN,
            },
            global: template.clone(),
            cross_site: None,
        });

        let mut rounds = outcome.rounds;
        for r in &mut rounds {
            let t = world.traffic.get(&r.round).copied().unwrap_or_default();
            r.bytes_up = t.up;
            r.bytes_down = t.down;
        }
        let metrics = outcome.final_metrics;
        let result = RunResult {
            name: cfg.name.clone(),
            seed: cfg.seed,
            events: EventLog(std::mem::take(&mut world.bus.kept)),
            client_updates: rounds.iter().map(|r| r.contributed as u64).sum(),
            rounds,
            model: outcome.global.to_model_data(),
            params: outcome.global,
            metrics,
            cross_site: outcome.cross_site,
            completed,
            event_counts: world
                .bus
                .counts
                .iter()
                .map(|(k, v)| (k.as_str().to_string(), *v))
                .collect(),
            virtual_us: shared.now(),
            wire: world.wire.take().unwrap_or_default(),
            wall_s: wall.elapsed().as_secs_f64(),
            error: failure.as_ref().map(Failure::to_string),
            interrupted,
        };
        match failure {
            Some(failure) => Err(SimError::Failed {
                failure,
                partial: Box::new(result),
            }),
            None => Ok(result),
        }
    }
}

/// The server's test set over `0..clients`, its parts queued as background work in the pool:
/// nothing needs it before the first round ends, and generating it up front would hold up
/// the start of registration.
fn global_test(pool: &Arc<Pool>, data: &DataGen, clients: u32) -> TestSet {
    let jobs = data
        .global_test_parts(u64::from(clients.max(1)))
        .into_iter()
        .map(|c| {
            let data = data.clone();
            move || data.global_test_part(c)
        })
        .collect();
    TestSet::Parts(pool.start_background(jobs))
}

/// A test set whose parts may still be in the making.
pub(crate) enum TestSet {
    Parts(Ordered<Dataset>),
    Joined(Arc<Dataset>),
}

impl TestSet {
    /// The whole set: its parts joined in order (waited for if need be) on first use.
    pub fn get(&mut self) -> Arc<Dataset> {
        let set = match self {
            TestSet::Joined(set) => return set.clone(),
            TestSet::Parts(parts) => Arc::new(Dataset::concat(&parts.collect::<Vec<_>>())),
        };
        *self = TestSet::Joined(set.clone());
        set
    }
}

/// The transformer chain of actor `index` (0 the server, 1.. the clients): compress, then
/// encrypt, each encryptor with its own nonce stream.
fn chain(cfg: &SimConfig, index: u64) -> TransformChain {
    let mut steps: Vec<Box<dyn ModelTransformer>> = Vec::new();
    if let Some(level) = cfg.transport.gzip_level {
        steps.push(Box::new(MessageCompressor::gzip(level)));
    }
    if let Some(key) = cfg.transport.aes_key {
        steps.push(Box::new(ModelEncryptor::new(
            key,
            rng::stream(cfg.seed, "nonce", index, NONE),
        )));
    }
    TransformChain::new(steps)
}

/// The shortest call deadline: a server holds a task request for half of it, and a client
/// asks again at once when the hold is over, so a much shorter one is a busy loop.
pub const MIN_DEADLINE: Micros = 1_000;

fn validate(cfg: &SimConfig) -> Result<(), SimError> {
    let bad = |m: String| Err(SimError::Config(m));
    if cfg.initial_clients > cfg.profiles.len() {
        return bad(format!(
            "{} initial clients but {} profiles",
            cfg.initial_clients,
            cfg.profiles.len()
        ));
    }
    if cfg.data.features == 0 || (cfg.data.is_classification() && cfg.data.classes < 2) {
        return bad("data needs at least one feature and two classes".into());
    }
    if cfg.training.batch_size == 0 {
        return bad("batch_size must be at least 1".into());
    }
    let r = &cfg.retry;
    if r.deadline < MIN_DEADLINE {
        return bad(format!(
            "the call deadline must be at least {MIN_DEADLINE} us, found {}",
            r.deadline
        ));
    }
    let backoff_ok = r.multiplier >= 1.0 && r.multiplier.is_finite();
    if !(backoff_ok && (0.0..1.0).contains(&r.jitter)) {
        return bad("retry backoff needs a finite multiplier >= 1 and a jitter in [0, 1)".into());
    }
    if let Some((key, problem)) = cfg.server.aggregator.problems().into_iter().next() {
        let name = cfg.server.aggregator.name();
        return bad(format!("aggregator {name}: {key}: {problem}"));
    }
    for f in &cfg.faults {
        if let Some(c) = f.clients.max().filter(|&c| c >= cfg.total_clients()) {
            return bad(format!(
                "a fault names client {c}, but there are {} clients",
                cfg.total_clients()
            ));
        }
    }
    Ok(())
}
