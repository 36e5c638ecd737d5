//! The scenario file format, as serde types. Every struct rejects unknown keys, and `fedsim
//! schema` prints the JSON Schema derived from these same types, so the two cannot drift.

use schemars::JsonSchema;
use serde::Deserialize;

use super::faults::{AvailabilitySpec, EventSpec, JoinSpec};
use super::units::{map_enum, DistQ, Plain, Rate, Time, Q};
use crate::aggregate::AggregatorSpec;

/// A scenario: a federation, what goes wrong in it, and what should be observed.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScenarioFile {
    /// The run's name; results go to `results/<name>/`.
    pub name: String,
    /// The seed every random stream derives from.
    #[serde(default)]
    pub seed: u64,
    /// What is learned: the model and the data.
    pub task: TaskSpec,
    /// How samples are spread over clients' labels (`iid`, or `{dirichlet: alpha}`).
    #[serde(default, deserialize_with = "map_enum")]
    pub partition: PartitionSpec,
    /// Local training.
    #[serde(default)]
    pub training: TrainingSpec,
    /// The server: Clara's `config_fed_server.json` keys plus sampling and timeouts.
    pub server: ServerSpec,
    /// How models cross the wire.
    #[serde(default)]
    pub transport: TransportSpec,
    /// The clients and their devices and links.
    pub clients: ClientsSpec,
    /// A FedScale-style availability trace that clients follow instead of scripted dropouts.
    #[serde(default)]
    pub availability: Option<AvailabilitySpec>,
    /// Scripted faults.
    #[serde(default)]
    pub events: Vec<EventSpec>,
    /// Assertions checked after the run.
    #[serde(default)]
    pub expect: Vec<ExpectSpec>,
}

impl ScenarioFile {
    /// Clients in all: the initial ones and every join (in 64 bits: a file may ask for more
    /// than a client id can number, which the checks refuse).
    pub fn total_clients(&self) -> u64 {
        let joined: u64 = self
            .events
            .iter()
            .filter_map(|e| e.join)
            .map(|j| match j {
                JoinSpec::Count(n) | JoinSpec::Map { count: n } => u64::from(n),
            })
            .sum();
        u64::from(self.clients.count) + joined
    }
}

/// The model and its data.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    /// `linear`, `softmax`, or `{mlp: {hidden: N}}`.
    #[serde(deserialize_with = "map_enum")]
    pub model: ModelSpec,
    /// Input features.
    #[serde(default = "default_features")]
    pub features: usize,
    /// Output classes (ignored by the linear model).
    #[serde(default = "default_classes")]
    pub classes: usize,
    /// The synthetic data generator.
    pub data: DataSpecFile,
}

fn default_features() -> usize {
    60
}
fn default_classes() -> usize {
    10
}

/// Which model clients train.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema, PartialEq)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ModelSpec {
    /// Linear regression (use with the `regression` generator).
    Linear,
    /// Softmax (multinomial logistic) regression.
    Softmax,
    /// One hidden ReLU layer.
    Mlp {
        /// Hidden units.
        hidden: usize,
    },
}

/// Synthetic data.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DataSpecFile {
    /// `w1` (BENCHMARKS.md), `synthetic` (FedProx's Synthetic(α, β)) or `regression`.
    pub generator: GeneratorName,
    /// Synthetic(α, β): how much clients' models differ.
    #[serde(default)]
    pub alpha: Option<f64>,
    /// Synthetic(α, β): how much clients' features differ.
    #[serde(default)]
    pub beta: Option<f64>,
    /// w1 / regression: spread of each client's labelling weights around the global ones.
    #[serde(default)]
    pub noise: Option<f64>,
    /// Samples per client: a number or a distribution.
    #[serde(default = "default_samples")]
    pub samples_per_client: DistQ<Plain>,
    /// Share of each client's samples held out as its local test set.
    #[serde(default)]
    pub test_fraction: f64,
    /// Clients (spread over the federation) whose fresh samples form the global test set.
    #[serde(default = "default_test_clients")]
    pub global_test_clients: usize,
    /// Samples from each of them.
    #[serde(default = "default_test_samples")]
    pub global_test_samples: usize,
}

fn default_samples() -> DistQ<Plain> {
    DistQ::fixed(64.0)
}
fn default_test_clients() -> usize {
    50
}
fn default_test_samples() -> usize {
    64
}

/// Data generator names.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum GeneratorName {
    /// BENCHMARKS.md's W1.
    W1,
    /// FedProx's Synthetic(α, β).
    Synthetic,
    /// Linear-regression targets.
    Regression,
}

/// Label partition.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema, PartialEq, Default)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum PartitionSpec {
    /// Each client keeps its generator's own label mix.
    #[default]
    Iid,
    /// Each client's label mix is drawn from Dirichlet(α): small α, strong skew.
    Dirichlet(f64),
}

/// Local training.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TrainingSpec {
    /// Passes over the local data per round.
    #[serde(default = "one")]
    pub local_epochs: usize,
    /// Samples per SGD step.
    #[serde(default = "sixteen")]
    pub batch_size: usize,
    /// SGD learning rate.
    #[serde(default = "lr")]
    pub lr: f32,
    /// FedProx proximal weight μ (0 is plain FedAvg training).
    #[serde(default)]
    pub fedprox_mu: f32,
}

fn one() -> usize {
    1
}
fn sixteen() -> usize {
    16
}
fn lr() -> f32 {
    0.05
}

impl Default for TrainingSpec {
    fn default() -> Self {
        TrainingSpec {
            local_epochs: 1,
            batch_size: 16,
            lr: 0.05,
            fedprox_mu: 0.0,
        }
    }
}

/// The server.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServerSpec {
    /// Rounds run from `start_round` up to, not including, this number (Clara's `num_rounds`).
    #[serde(alias = "num_rounds")]
    pub rounds: u32,
    /// The first round's number.
    #[serde(default)]
    pub start_round: u32,
    /// Clients sampled per round; omit or 0 for all live clients.
    #[serde(default)]
    pub clients_per_round: usize,
    /// Clients needed to start, and contributions needed to close a round early.
    #[serde(default = "one")]
    pub min_num_clients: usize,
    /// Logins past this many registered clients are refused.
    #[serde(default)]
    pub max_num_clients: Option<usize>,
    /// How long to wait for more once `min_num_clients` contributions are in.
    #[serde(default)]
    pub wait_after_min_clients: Option<Q<Time>>,
    /// A round closes with what it has after this long.
    #[serde(default)]
    pub round_timeout: Option<Q<Time>>,
    /// A client silent this long is removed.
    #[serde(default)]
    pub heart_beat_timeout: Option<Q<Time>>,
    /// How often clients send heartbeats.
    #[serde(default)]
    pub heart_beat_interval: Option<Q<Time>>,
    /// The aggregation strategy: a name (`fedavg`, `fedavgm`), or a mapping of one name to its
    /// settings (`{fedavgm: {server_lr: 1.0, momentum: 0.9}}`).
    #[serde(default)]
    pub aggregator: AggregatorSpec,
    /// Run cross-site validation after the last round.
    #[serde(default)]
    pub cross_site_validation: bool,
}

/// Compression, encryption and an unreliable network.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TransportSpec {
    /// `none` or `gzip`.
    #[serde(default)]
    pub compression: Compression,
    /// gzip level, 0 to 9 (default 6).
    #[serde(default)]
    pub level: Option<u32>,
    /// `none` or `aes-gcm`.
    #[serde(default)]
    pub encryption: Encryption,
    /// AES-256 key as 64 hex digits; default: derived from the seed.
    #[serde(default)]
    pub key: Option<String>,
    /// Probability that a message is lost.
    #[serde(default)]
    pub loss: f64,
    /// Probability that a message arrives damaged.
    #[serde(default)]
    pub corruption: f64,
}

/// Compression codecs.
#[derive(Debug, Clone, Copy, Default, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Compression {
    /// No compression.
    #[default]
    None,
    /// gzip on every tensor (Clara's "Gzip").
    Gzip,
}

/// Encryption schemes.
#[derive(Debug, Clone, Copy, Default, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Encryption {
    /// No encryption.
    #[default]
    None,
    /// AES-256-GCM on every tensor.
    AesGcm,
}

/// The clients.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientsSpec {
    /// Clients present from the start.
    pub count: u32,
    /// Device and link groups; shares must sum to 1. Omit for instant compute and ideal links.
    #[serde(default)]
    pub groups: Vec<GroupSpec>,
    /// How clients retry a call (login, task request, contribution) that gets no answer.
    #[serde(default)]
    pub retry: RetrySpec,
}

/// A call deadline and a retry backoff, as a gRPC client has.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetrySpec {
    /// How long a call may go unanswered before it is sent again (default 30s). The server
    /// answers a task request it has no task for after half of it.
    #[serde(default)]
    pub deadline: Option<Q<Time>>,
    /// The wait before each retry.
    #[serde(default)]
    pub backoff: BackoffSpec,
}

/// Exponential backoff with jitter.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BackoffSpec {
    /// The first retry's wait (default 1s).
    #[serde(default)]
    pub initial: Option<Q<Time>>,
    /// The longest wait (default 1m).
    #[serde(default)]
    pub max: Option<Q<Time>>,
    /// Each further wait is this many times the last (default 1.6).
    #[serde(default)]
    pub multiplier: Option<f64>,
    /// Waits are spread by this fraction either way, from the client's own stream (default
    /// 0.2).
    #[serde(default)]
    pub jitter: Option<f64>,
}

/// A group of clients with one device and link model.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupSpec {
    /// A name for event targets (`clients: {group: slow}`).
    #[serde(default)]
    pub name: Option<String>,
    /// Share of the clients in this group.
    pub share: f64,
    /// Compute model.
    #[serde(default)]
    pub compute: ComputeSpec,
    /// Link model.
    #[serde(default)]
    pub link: LinkSpec,
    /// Draw the group's values anew every round instead of once per client.
    #[serde(default)]
    pub per_round: bool,
}

/// Compute model.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ComputeSpec {
    /// Training time per sample.
    #[serde(default)]
    pub per_sample: Option<DistQ<Time>>,
}

/// Link model.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkSpec {
    /// One-way latency.
    #[serde(default)]
    pub latency: Option<DistQ<Time>>,
    /// Bandwidth.
    #[serde(default)]
    pub bandwidth: Option<DistQ<Rate>>,
}

/// One assertion. Its keys say what kind it is:
/// - events: `event` with any of `client`, `actor`, `round`, `reason`, `count`;
/// - order: `first` and `then`, two event matchers;
/// - rounds: `round` with `aggregated` and/or `timed_out`, or `rounds_completed`;
/// - final metrics: `final`.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExpectSpec {
    /// An event name (`contribution_rejected`, `_clientQuit`, ...).
    #[serde(default)]
    pub event: Option<String>,
    /// The client the event is about: an id or `client-0007`.
    #[serde(default)]
    pub client: Option<ClientRef>,
    /// Who logged it: `server`, or a client.
    #[serde(default)]
    pub actor: Option<ClientRef>,
    /// The round.
    #[serde(default)]
    pub round: Option<u32>,
    /// `detail.reason` (`late`, `duplicate`, `unknown_token`, `corrupt`, ...).
    #[serde(default)]
    pub reason: Option<String>,
    /// How many: exact, or `{min, max}`. Default: at least one.
    #[serde(default)]
    pub count: Option<Bound>,
    /// Order: this event comes first...
    #[serde(default)]
    pub first: Option<Box<ExpectSpec>>,
    /// ...and this one after it.
    #[serde(default)]
    pub then: Option<Box<ExpectSpec>>,
    /// Round assertion: contributions aggregated in `round`.
    #[serde(default)]
    pub aggregated: Option<Bound>,
    /// Round assertion: whether `round` timed out.
    #[serde(default)]
    pub timed_out: Option<bool>,
    /// How many rounds were aggregated in all.
    #[serde(default)]
    pub rounds_completed: Option<Bound>,
    /// Final metrics.
    #[serde(default, rename = "final")]
    pub final_: Option<FinalSpec>,
}

/// A client named by id or by name.
#[derive(Debug, Clone, JsonSchema, PartialEq)]
#[serde(untagged)]
pub enum ClientRef {
    /// A client id.
    Id(u32),
    /// `client-0007` or `server`.
    Name(String),
}

/// Read by hand, so that `-1` gets an error that says what was expected.
impl<'de> Deserialize<'de> for ClientRef {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = ClientRef;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a client id (0 or more) or a name like `client-0007` or `server`")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<ClientRef, E> {
                u32::try_from(v)
                    .map(ClientRef::Id)
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Unsigned(v), &self))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ClientRef, E> {
                Ok(ClientRef::Name(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// An exact number or a range. Read by hand (see `Deserialize` below), not as an untagged
/// enum: serde's untagged enums ignore unknown keys, and `{mni: 5}` must be an error, not a
/// bound that always holds.
#[derive(Debug, Clone, Copy, JsonSchema, PartialEq)]
#[serde(untagged, deny_unknown_fields)]
pub enum Bound {
    /// Exactly this.
    Exact(f64),
    /// Within `[min, max]`; either may be left out.
    Range {
        /// At least.
        #[serde(default)]
        min: Option<f64>,
        /// At most.
        #[serde(default)]
        max: Option<f64>,
    },
}

impl<'de> Deserialize<'de> for Bound {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(BoundVisitor)
    }
}

struct BoundVisitor;

impl<'de> serde::de::Visitor<'de> for BoundVisitor {
    type Value = Bound;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a number or `{min: a, max: b}`")
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Bound, E> {
        if v.is_finite() {
            Ok(Bound::Exact(v))
        } else {
            Err(E::custom(format!("expected a finite number, found {v}")))
        }
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Bound, E> {
        Ok(Bound::Exact(v as f64))
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Bound, E> {
        Ok(Bound::Exact(v as f64))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Bound, A::Error> {
        use serde::de::Error;
        let (mut min, mut max): (Option<f64>, Option<f64>) = (None, None);
        while let Some(key) = map.next_key::<String>()? {
            let slot = match key.as_str() {
                "min" => &mut min,
                "max" => &mut max,
                other => return Err(A::Error::unknown_field(other, &["min", "max"])),
            };
            if slot.is_some() {
                return Err(A::Error::custom(format!("duplicate key `{key}`")));
            }
            let v: f64 = map.next_value()?;
            if !v.is_finite() {
                return Err(A::Error::custom(format!(
                    "`{key}` must be finite, found {v}"
                )));
            }
            *slot = Some(v);
        }
        if let (Some(a), Some(b)) = (min, max) {
            if a > b {
                return Err(A::Error::custom(format!(
                    "an empty range: min ({a}) is more than max ({b})"
                )));
            }
        }
        Ok(Bound::Range { min, max })
    }
}

/// Final-metric assertions.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FinalSpec {
    /// Final test accuracy (R² for regression).
    #[serde(default)]
    pub test_accuracy: Option<Bound>,
    /// Final test loss.
    #[serde(default)]
    pub test_loss: Option<Bound>,
}
