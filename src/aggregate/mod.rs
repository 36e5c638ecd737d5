//! Server-side strategies: how the round's contributions become the next global model.
//!
//! A strategy is a plug-in behind [`Aggregator`], as in Flower: adding one is a new file plus
//! one line in [`by_name`]. The server hands contributions over sorted by client id, so a
//! strategy that folds them in order produces the same floats whatever order they arrived in.

mod fedavg;
mod fedavgm;

pub use fedavg::FedAvg;
pub use fedavgm::FedAvgM;

use crate::learn::Params;

/// One client's accepted contribution to a round.
#[derive(Debug, Clone, Copy)]
pub struct Update<'a> {
    /// The contributing client's id.
    pub client: u32,
    /// Its aggregation weight: the contribution's `n_iter` (samples behind it), as in Clara.
    pub weight: f64,
    /// Its locally trained parameters.
    pub params: &'a Params,
}

/// A server-side aggregation strategy.
pub trait Aggregator: Send {
    /// The name a scenario uses to pick it, for example `"fedavg"`.
    fn name(&self) -> &str;

    /// The next global model from the current one and the round's updates, which come sorted
    /// by client id and are never empty.
    fn aggregate(&mut self, global: &Params, updates: &[Update<'_>]) -> Params;
}

/// The strategy registered under `name`, if any.
pub fn by_name(name: &str) -> Option<Box<dyn Aggregator>> {
    match name {
        "fedavg" => Some(Box::new(FedAvg)),
        "fedavgm" => Some(Box::new(FedAvgM::new(1.0, 0.9))),
        _ => None,
    }
}

/// The names [`by_name`] knows, for error messages and the JSON Schema.
pub const NAMES: &[&str] = &["fedavg", "fedavgm"];
