//! FedAvgM (Hsu et al., 2019): FedAvg with server momentum, which damps the swings that
//! non-IID clients and partial participation cause.

use super::fedavg::weighted_mean;
use super::{Aggregator, Update};
use crate::learn::Params;

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
        let velocity = self
            .velocity
            .get_or_insert_with(|| crate::learn::zeros_like(global));
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
            params: &target,
        }];
        let first = s.aggregate(&p(0.0), &ups);
        assert_eq!(first.0[0].1[[0]], 1.0);
        // Same pull again from 0: momentum makes the second step longer.
        let second = s.aggregate(&p(0.0), &ups);
        assert_eq!(second.0[0].1[[0]], 1.5);
    }
}
