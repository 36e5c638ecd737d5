//! FedAvg (McMahan et al., 2017): the weighted mean of the clients' parameters, weighted as
//! Clara weights them, by each contribution's `n_iter`.

use super::{Aggregator, Update};
use crate::learn::{zeros_like, Params};

/// Weighted federated averaging.
#[derive(Debug, Clone, Copy, Default)]
pub struct FedAvg;

/// The weighted mean of `updates`, accumulated in f64 in the given (client-id) order.
pub(crate) fn weighted_mean(global: &Params, updates: &[Update<'_>]) -> Params {
    let total: f64 = updates.iter().map(|u| u.weight).sum();
    let mut acc: Vec<Vec<f64>> = global.0.iter().map(|(_, a)| vec![0.0; a.len()]).collect();
    for u in updates {
        let w = if total > 0.0 {
            u.weight / total
        } else {
            1.0 / updates.len() as f64
        };
        for (sum, (_, a)) in acc.iter_mut().zip(&u.params.0) {
            // A contiguous tensor (every decoded one) as a slice: ndarray's n-d iterator
            // costs several times the multiply-add itself.
            match a.as_slice() {
                Some(v) => add_scaled(sum, v.iter(), w),
                None => add_scaled(sum, a.iter(), w),
            }
        }
    }
    let mut out = zeros_like(global);
    for ((_, a), sum) in out.0.iter_mut().zip(acc) {
        let values = sum.into_iter().map(|s| s as f32);
        match a.as_slice_mut() {
            Some(v) => v.iter_mut().zip(values).for_each(|(v, s)| *v = s),
            None => a.iter_mut().zip(values).for_each(|(v, s)| *v = s),
        }
    }
    out
}

/// `sum += w·v`, elementwise, each product rounded before it is added.
fn add_scaled<'a>(sum: &mut [f64], v: impl Iterator<Item = &'a f32>, w: f64) {
    for (s, v) in sum.iter_mut().zip(v) {
        *s += w * f64::from(*v);
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

    fn p(v: f32) -> Params {
        Params(vec![("w".into(), ArrayD::from_elem(vec![2], v))])
    }

    #[test]
    fn weights_by_n_iter() {
        let (a, b) = (p(1.0), p(4.0));
        let ups = [
            Update {
                client: 0,
                weight: 2.0,
                params: &a,
            },
            Update {
                client: 1,
                weight: 1.0,
                params: &b,
            },
        ];
        let out = FedAvg.aggregate(&p(0.0), &ups);
        assert_eq!(out.0[0].1, ArrayD::from_elem(vec![2], 2.0));
    }

    #[test]
    fn zero_weights_fall_back_to_plain_mean() {
        let (a, b) = (p(1.0), p(3.0));
        let ups = [
            Update {
                client: 0,
                weight: 0.0,
                params: &a,
            },
            Update {
                client: 1,
                weight: 0.0,
                params: &b,
            },
        ];
        assert_eq!(FedAvg.aggregate(&p(0.0), &ups).0[0].1[[0]], 2.0);
    }
}
