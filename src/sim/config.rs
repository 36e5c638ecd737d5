//! The engine's configuration, in plain Rust structs. Scenario files compile into these; tests
//! and library users can build them directly.

use std::ops::Range;

use crate::aggregate::AggregatorSpec;
use crate::dist::Dist;
use crate::learn::{DataSpec, ModelKind, TrainConfig};

use super::port::Micros;
use super::profiles::Profiles;
pub use super::world::Action;

/// One second in virtual microseconds.
pub const SECOND: Micros = 1_000_000;

/// Clara's `config_fed_server.json` keys, plus the simulator's sampling and round timeout.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    /// Contributions (and registered clients) needed before a round can close early / start.
    pub min_num_clients: usize,
    /// Logins past this many registered clients are refused.
    pub max_num_clients: usize,
    /// How long the server waits for more once `min_num_clients` are in.
    pub wait_after_min_clients: Micros,
    /// A client silent this long is removed.
    pub heart_beat_timeout: Micros,
    /// How often clients send heartbeats.
    pub heart_beat_interval: Micros,
    /// The first round's number.
    pub start_round: u32,
    /// Rounds run from `start_round` up to, not including, this number.
    pub num_rounds: u32,
    /// Clients sampled per round; 0 means every live client.
    pub clients_per_round: usize,
    /// A round closes with what it has after this long.
    pub round_timeout: Micros,
    /// Run Clara's cross-site validation after the last round.
    pub cross_site_validation: bool,
    /// The server strategy and its settings.
    pub aggregator: AggregatorSpec,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            min_num_clients: 1,
            max_num_clients: usize::MAX,
            wait_after_min_clients: 0,
            heart_beat_timeout: 600 * SECOND,
            heart_beat_interval: 60 * SECOND,
            start_round: 0,
            num_rounds: 10,
            clients_per_round: 0,
            round_timeout: 3600 * SECOND,
            cross_site_validation: false,
            aggregator: AggregatorSpec::default(),
        }
    }
}

/// How models cross the wire.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TransportConfig {
    /// gzip level for every tensor, if compressing.
    pub gzip_level: Option<u32>,
    /// AES-256-GCM key, if encrypting.
    pub aes_key: Option<[u8; 32]>,
    /// Probability that any one message is lost.
    pub loss_rate: f64,
    /// Probability that any one message arrives damaged.
    pub corruption_rate: f64,
}

/// Device and link of a group of clients.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    /// Compute time per training sample, in microseconds.
    pub per_sample_us: Dist,
    /// One-way link latency, in microseconds.
    pub latency_us: Dist,
    /// Link bandwidth, in bytes per second; `f64::INFINITY` for no transfer time.
    pub bandwidth: Dist,
    /// Draw the values again every round instead of once per client.
    pub per_round: bool,
}

impl Default for Profile {
    /// Instant compute and an ideal link: the simulator's own cost only.
    fn default() -> Self {
        Profile {
            per_sample_us: Dist::Fixed(0.0),
            latency_us: Dist::Fixed(0.0),
            bandwidth: Dist::Fixed(f64::INFINITY),
            per_round: false,
        }
    }
}

/// Which way a message crosses a client's link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Direction {
    /// Client to server.
    Up,
    /// Server to client.
    Down,
}

/// How a client retries a call that got no answer, as a gRPC client with deadlines and a
/// retry policy would: each call (login, task request, contribution) must be answered within
/// `deadline` of being sent, or it is sent again after a backoff. The k-th retry waits
/// `min(initial × multiplier^(k-1), max)`, spread by ±`jitter` drawn from the client's own
/// stream.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryConfig {
    /// How long a call may go unanswered.
    pub deadline: Micros,
    /// The first retry's backoff.
    pub initial: Micros,
    /// The longest backoff.
    pub max: Micros,
    /// Each further retry's backoff is this many times the last.
    pub multiplier: f64,
    /// Backoffs are spread uniformly by this fraction either way.
    pub jitter: f64,
}

impl Default for RetryConfig {
    /// A 30 s deadline (as Clara's client `retry_timeout`), then gRPC's connection backoff
    /// (1 s, ×1.6, ±20%), capped at a minute.
    fn default() -> Self {
        RetryConfig {
            deadline: 30 * SECOND,
            initial: SECOND,
            max: 60 * SECOND,
            multiplier: 1.6,
            jitter: 0.2,
        }
    }
}

/// How long a fault lasts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Span {
    /// This much virtual time.
    Time(Micros),
    /// This many rounds: it ends when the round that many rounds later starts.
    Rounds(u32),
}

/// When a fault happens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Trigger {
    /// When this round starts (before its models are handed out).
    Round(u32),
    /// At this virtual time.
    Time(Micros),
}

/// A scripted fault: a trigger, the clients it hits, what happens to them.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    /// When.
    pub at: Trigger,
    /// Which client ids.
    pub clients: Clients,
    /// What.
    pub action: Action,
}

/// A whole simulation.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// The run's name (the scenario's name).
    pub name: String,
    /// The seed every random stream derives from.
    pub seed: u64,
    /// What clients train.
    pub model: ModelKind,
    /// Where their data comes from.
    pub data: DataSpec,
    /// How they train.
    pub training: TrainConfig,
    /// The server's settings.
    pub server: ServerConfig,
    /// Compression, encryption, loss and corruption.
    pub transport: TransportConfig,
    /// Clients present from the start: ids `0..initial_clients`.
    pub initial_clients: u32,
    /// Every client id's profile; ids past `initial_clients` start only when a `Join` fault
    /// starts them.
    pub profiles: Profiles,
    /// Scripted faults.
    pub faults: Vec<Fault>,
    /// How clients retry calls that get no answer.
    pub retry: RetryConfig,
    /// Threads for local training: 1 trains on the simulation thread; more use a blocking pool
    /// of that size. Results are identical either way.
    pub threads: usize,
}

impl SimConfig {
    /// W1 of BENCHMARKS.md: softmax on W1 data, FedAvg, `clients` clients, `per_round` sampled,
    /// `rounds` rounds, no faults, ideal links and instant compute.
    pub fn w1(clients: u32, per_round: usize, rounds: u32) -> Self {
        SimConfig {
            name: "w1".into(),
            seed: 0,
            model: ModelKind::Softmax,
            data: DataSpec::w1(),
            training: TrainConfig::default(),
            server: ServerConfig {
                min_num_clients: per_round.min(clients as usize).max(1),
                num_rounds: rounds,
                clients_per_round: per_round,
                ..ServerConfig::default()
            },
            transport: TransportConfig::default(),
            initial_clients: clients,
            profiles: Profiles::uniform(clients, Profile::default()),
            faults: Vec::new(),
            retry: RetryConfig::default(),
            threads: 1,
        }
    }

    /// Total client ids, including those that join later.
    pub fn total_clients(&self) -> u32 {
        self.profiles.len()
    }
}

/// The client ids a fault hits, in the order given, held as runs of consecutive ids so that
/// `all` of ten million clients, or a join of a million, costs one run.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Clients {
    /// `(first, last)`, both included.
    runs: Vec<(u32, u32)>,
}

impl Clients {
    /// Each id, in order.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.runs.iter().flat_map(|&(a, b)| a..=b)
    }

    /// How many ids (counting repeats).
    pub fn len(&self) -> u64 {
        self.runs.iter().map(|&(a, b)| u64::from(b - a) + 1).sum()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }

    /// Whether `id` is one of them.
    pub fn contains(&self, id: u32) -> bool {
        self.runs.iter().any(|&(a, b)| (a..=b).contains(&id))
    }

    /// The largest id, if any.
    pub fn max(&self) -> Option<u32> {
        self.runs.iter().map(|&(_, b)| b).max()
    }
}

impl From<Range<u32>> for Clients {
    fn from(ids: Range<u32>) -> Self {
        let runs = if ids.is_empty() {
            vec![]
        } else {
            vec![(ids.start, ids.end - 1)]
        };
        Clients { runs }
    }
}

impl FromIterator<u32> for Clients {
    /// Ids in the order given; an id one past the one before it extends that one's run.
    fn from_iter<I: IntoIterator<Item = u32>>(ids: I) -> Self {
        let mut runs: Vec<(u32, u32)> = Vec::new();
        for id in ids {
            match runs.last_mut() {
                Some((_, b)) if b.checked_add(1) == Some(id) => *b = id,
                _ => runs.push((id, id)),
            }
        }
        Clients { runs }
    }
}

impl From<Vec<u32>> for Clients {
    fn from(ids: Vec<u32>) -> Self {
        ids.into_iter().collect()
    }
}
