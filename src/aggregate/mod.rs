//! Server-side strategies: how the round's contributions become the next global model, and
//! which clients train each round.
//!
//! A strategy is a plug-in behind [`Aggregator`], as in Flower. Its settings are a type of
//! their own implementing [`Strategy`]: that one type gives the scenario format
//! (`aggregator: fedavgm` or `aggregator: {fedavgm: {momentum: 0.5}}`), the JSON Schema, the
//! range checks and the construction. Adding one is a new file plus one line in the
//! [`strategies!`] list below. The server hands contributions over sorted by client id, so a
//! strategy that folds them in order produces the same floats whatever order they arrived in.
//!
//! Client selection is a plug-in of its own, [`Selection`]; [`Uniform`] is the default.

mod blocks;
mod fedavg;
mod fedavgm;
mod select;
mod spec;

pub use blocks::{weighted_mean, zeros_like};
pub use fedavg::{FedAvg, FedAvgSettings};
pub use fedavgm::{FedAvgM, FedAvgMSettings};
pub use select::{Selection, Uniform};
pub use spec::Strategy;

use crate::learn::Params;

spec::strategies! {
    FedAvg(FedAvgSettings),
    FedAvgM(FedAvgMSettings),
}

/// One client's accepted contribution to a round, with what the client reported about it.
#[derive(Debug, Clone, Copy)]
pub struct Update<'a> {
    /// The contributing client's id.
    pub client: u32,
    /// Its aggregation weight: the contribution's `n_iter`, as in Clara.
    pub weight: f64,
    /// `n_iter` as the client reported it: the samples behind the update (local samples ×
    /// epochs).
    pub n_iter: u64,
    /// The client's mean training loss over its local epochs.
    pub train_loss: f64,
    /// Its locally trained parameters.
    pub params: &'a Params,
}

/// A server-side aggregation strategy.
pub trait Aggregator: Send {
    /// The name a scenario uses to pick it, for example `"fedavg"`.
    fn name(&self) -> &str;

    /// The next global model from the current one and the round's updates, which come sorted
    /// by client id and are never empty. The result must have the global model's tensors
    /// (names, order and shapes): the server checks, and fails the run naming the aggregator
    /// otherwise. (Non-finite values are allowed: a diverging run is a result, not a bug.)
    fn aggregate(&mut self, global: &Params, updates: &[Update<'_>]) -> Params;
}

/// The strategy registered under `name`, with its default settings, if any.
pub fn by_name(name: &str) -> Option<Box<dyn Aggregator>> {
    AggregatorSpec::named(name).map(|s| s.build())
}
