//! Client selection: which of the live clients train in a round, as Flower's
//! `configure_fit` decides.

use rand::Rng;

use crate::rng::Stream;

/// Picks the clients that train in a round.
///
/// `select` takes `&self`: the server also asks it, ahead of time, whom later rounds would
/// pick, to prepare their data early. Those guesses must not change what the real call
/// returns, and a wrong guess costs only time.
pub trait Selection: Send {
    /// `wanted` of the `live` clients (sorted by id, more than `wanted` of them) for round
    /// `round`. Randomness must come from `rng`, the round's own stream, so that a run is
    /// reproducible. Ids that are not live, and repeats, are dropped by the server.
    fn select(&self, round: u32, live: &[u32], wanted: usize, rng: &mut Stream) -> Vec<u32>;
}

/// Every live client equally likely, drawn without replacement: Clara's and FedAvg's sampling.
#[derive(Debug, Clone, Copy, Default)]
pub struct Uniform;

impl Selection for Uniform {
    fn select(&self, _round: u32, live: &[u32], wanted: usize, rng: &mut Stream) -> Vec<u32> {
        // A partial Fisher–Yates shuffle: the first `wanted` places.
        let mut ids = live.to_vec();
        for i in 0..wanted.min(ids.len()) {
            let j = rng.random_range(i..ids.len());
            ids.swap(i, j);
        }
        ids.truncate(wanted);
        ids
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{self, NONE};

    #[test]
    fn uniform_picks_distinct_live_clients_and_each_about_equally_often() {
        let live: Vec<u32> = (10..20).collect();
        let mut counts = [0u32; 10];
        for round in 0..2000 {
            let mut r = rng::stream(3, "sample", NONE, round);
            let picked = Uniform.select(round as u32, &live, 3, &mut r);
            let mut distinct = picked.clone();
            distinct.sort_unstable();
            distinct.dedup();
            assert_eq!(distinct.len(), 3);
            for c in picked {
                counts[(c - 10) as usize] += 1;
            }
        }
        // 600 expected each; a binomial(2000, 0.3) stays within ±100 with near certainty.
        assert!(
            counts.iter().all(|&n| (500..=700).contains(&n)),
            "{counts:?}"
        );
    }
}
