//! FedAvgM (Hsu et al., 2019): FedAvg with server momentum, which damps the swings that
//! non-IID clients and partial participation cause.

use schemars::JsonSchema;
use serde::Deserialize;

use super::{weighted_mean, zeros_like, Aggregator, Strategy, Update};
use crate::learn::Params;

/// FedAvgM's settings: `aggregator: {fedavgm: {server_lr: 1.0, momentum: 0.9}}`.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct FedAvgMSettings {
    /// The server learning rate η: the step along the momentum (default 1.0; with 0 momentum,
    /// 1.0 is FedAvg).
    pub server_lr: f32,
    /// The momentum β, in [0, 1): how much of the last step carries over (default 0.9, the
    /// paper's usual choice).
    pub momentum: f32,
}

impl Default for FedAvgMSettings {
    fn default() -> Self {
        FedAvgMSettings {
            server_lr: 1.0,
            momentum: 0.9,
        }
    }
}

impl Strategy for FedAvgMSettings {
    const NAME: &'static str = "fedavgm";

    fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if !(self.server_lr.is_finite() && self.server_lr > 0.0) {
            let found = self.server_lr;
            out.push((
                "server_lr",
                format!("expected a finite rate above 0, found {found}"),
            ));
        }
        if !(0.0..1.0).contains(&self.momentum) {
            let found = self.momentum;
            out.push((
                "momentum",
                format!("expected a momentum in [0, 1), found {found}"),
            ));
        }
        out
    }

    fn build(&self) -> Box<dyn Aggregator> {
        Box::new(FedAvgM::new(self.server_lr, self.momentum))
    }
}

/// FedAvg with server-side momentum `beta` and server learning rate `lr`.
#[derive(Debug, Clone)]
pub struct FedAvgM {
    lr: f32,
    beta: f32,
    velocity: Option<Params>,
}

impl FedAvgM {
    /// A strategy with server learning rate `lr` and momentum `beta`.
    pub fn new(lr: f32, beta: f32) -> Self {
        FedAvgM {
            lr,
            beta,
            velocity: None,
        }
    }
}

impl Aggregator for FedAvgM {
    fn name(&self) -> &str {
        "fedavgm"
    }

    fn aggregate(&mut self, global: &Params, updates: &[Update<'_>]) -> Params {
        let avg = weighted_mean(global, updates);
        let velocity = self.velocity.get_or_insert_with(|| zeros_like(global));
        let mut next = global.clone();
        for (((_, v), (_, g)), ((_, a), (_, n))) in velocity
            .0
            .iter_mut()
            .zip(&global.0)
            .zip(avg.0.iter().zip(next.0.iter_mut()))
        {
            // v = β·v + (global − avg); next = global − lr·v
            ndarray::Zip::from(v)
                .and(g)
                .and(a)
                .and(n)
                .for_each(|v, &g, &a, n| {
                    *v = self.beta * *v + (g - a);
                    *n = g - self.lr * *v;
                });
        }
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::ArrayD;

    #[test]
    fn momentum_accumulates_steps_in_one_direction() {
        let p = |v: f32| Params(vec![("w".into(), ArrayD::from_elem(vec![1], v))]);
        let mut s = FedAvgM::new(1.0, 0.5);
        let target = p(1.0);
        let ups = [Update {
            client: 0,
            weight: 1.0,
            n_iter: 1,
            train_loss: 0.0,
            params: &target,
        }];
        let first = s.aggregate(&p(0.0), &ups);
        assert_eq!(first.0[0].1[[0]], 1.0);
        // Same pull again from 0: momentum makes the second step longer.
        let second = s.aggregate(&p(0.0), &ups);
        assert_eq!(second.0[0].1[[0]], 1.5);
    }

    #[test]
    fn settings_give_the_papers_update_rule() {
        // Hsu et al.: v ← βv + (w − avg), w ← w − ηv, here with η = 0.5 and β = 0.5.
        let p = |v: f32| Params(vec![("w".into(), ArrayD::from_elem(vec![1], v))]);
        let settings = FedAvgMSettings {
            server_lr: 0.5,
            momentum: 0.5,
        };
        assert!(settings.problems().is_empty());
        let mut s = settings.build();
        let target = p(1.0);
        let ups = [Update {
            client: 0,
            weight: 3.0,
            n_iter: 3,
            train_loss: 0.0,
            params: &target,
        }];
        // v = 0.5·0 + (0 − 1) = −1; w = 0 − 0.5·(−1) = 0.5.
        let first = s.aggregate(&p(0.0), &ups);
        assert_eq!(first.0[0].1[[0]], 0.5);
        // v = 0.5·(−1) + (0.5 − 1) = −1; w = 0.5 − 0.5·(−1) = 1.
        let second = s.aggregate(&first, &ups);
        assert_eq!(second.0[0].1[[0]], 1.0);
    }

    #[test]
    fn out_of_range_settings_are_named() {
        let bad = FedAvgMSettings {
            server_lr: f32::NAN,
            momentum: 1.0,
        };
        let keys: Vec<&str> = bad.problems().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["server_lr", "momentum"]);
    }
}
