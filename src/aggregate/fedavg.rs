//! FedAvg (McMahan et al., 2017): the weighted mean of the clients' parameters, weighted as
//! Clara weights them, by each contribution's `n_iter`.

use schemars::JsonSchema;
use serde::Deserialize;

use super::{weighted_mean, Aggregator, Strategy, Update};
use crate::learn::Params;

/// Weighted federated averaging.
#[derive(Debug, Clone, Copy, Default)]
pub struct FedAvg;

/// FedAvg has no settings: `aggregator: fedavg`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FedAvgSettings {}

impl Strategy for FedAvgSettings {
    const NAME: &'static str = "fedavg";

    fn build(&self) -> Box<dyn Aggregator> {
        Box::new(FedAvg)
    }
}

impl Aggregator for FedAvg {
    fn name(&self) -> &str {
        "fedavg"
    }

    fn aggregate(&mut self, global: &Params, updates: &[Update<'_>]) -> Params {
        weighted_mean(global, updates)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::ArrayD;

    fn update(client: u32, weight: f64, params: &Params) -> Update<'_> {
        Update {
            client,
            weight,
            n_iter: weight as u64,
            train_loss: 0.0,
            params,
        }
    }

    fn p(v: f32) -> Params {
        Params(vec![("w".into(), ArrayD::from_elem(vec![2], v))])
    }

    #[test]
    fn weights_by_n_iter() {
        let (a, b) = (p(1.0), p(4.0));
        let ups = [update(0, 2.0, &a), update(1, 1.0, &b)];
        let out = FedAvg.aggregate(&p(0.0), &ups);
        assert_eq!(out.0[0].1, ArrayD::from_elem(vec![2], 2.0));
    }

    #[test]
    fn zero_weights_fall_back_to_plain_mean() {
        let (a, b) = (p(1.0), p(3.0));
        let ups = [update(0, 0.0, &a), update(1, 0.0, &b)];
        assert_eq!(FedAvg.aggregate(&p(0.0), &ups).0[0].1[[0]], 2.0);
    }
}
