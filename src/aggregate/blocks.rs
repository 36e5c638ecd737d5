//! Building blocks for strategies, public so that users' own strategies can use them.

use super::Update;
pub use crate::learn::zeros_like;
use crate::learn::Params;

/// The weighted mean of `updates` by their weights (the plain mean if every weight is 0),
/// accumulated in f64 in the given (client-id) order so that the result does not depend on
/// the order contributions arrived in.
pub fn weighted_mean(global: &Params, updates: &[Update<'_>]) -> Params {
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
