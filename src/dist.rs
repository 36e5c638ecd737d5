//! Distributions for scenario parameters: a value is fixed or drawn, and every draw comes from
//! a seeded stream (see [`crate::rng`]).

use rand::Rng;
use rand_distr::{Distribution, Exp, LogNormal, Normal};
use serde::{Deserialize, Serialize};

/// A real-valued parameter: a fixed value or a distribution to draw it from.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dist {
    /// Always this value.
    Fixed(f64),
    /// Uniform on `[low, high)`.
    Uniform {
        /// Lower bound.
        low: f64,
        /// Upper bound.
        high: f64,
    },
    /// Normal with this mean and standard deviation.
    Normal {
        /// Mean.
        mean: f64,
        /// Standard deviation.
        std: f64,
    },
    /// exp(N(mu, sigma)): heavy-tailed, positive; the usual model of device speeds.
    LogNormal {
        /// Mean of the underlying normal.
        mu: f64,
        /// Standard deviation of the underlying normal.
        sigma: f64,
    },
    /// Exponential with this mean.
    Exponential {
        /// The mean (1 / rate).
        mean: f64,
    },
}

impl Dist {
    /// Draws one value. Invalid parameters (negative spread, empty range) fall back to the
    /// distribution's centre rather than panicking; scenario loading rejects them earlier.
    pub fn sample(&self, rng: &mut impl Rng) -> f64 {
        match *self {
            Dist::Fixed(v) => v,
            Dist::Uniform { low, high } if high > low => rng.random_range(low..high),
            Dist::Uniform { low, .. } => low,
            Dist::Normal { mean, std } if std >= 0.0 => {
                Normal::new(mean, std).map_or(mean, |d| d.sample(rng))
            }
            Dist::Normal { mean, .. } => mean,
            Dist::LogNormal { mu, sigma } if sigma >= 0.0 => {
                LogNormal::new(mu, sigma).map_or(mu.exp(), |d| d.sample(rng))
            }
            Dist::LogNormal { mu, .. } => mu.exp(),
            Dist::Exponential { mean } if mean > 0.0 => {
                Exp::new(1.0 / mean).map_or(mean, |d| d.sample(rng))
            }
            Dist::Exponential { mean } => mean,
        }
    }

    /// The distribution's mean, for summaries and defaults.
    pub fn mean(&self) -> f64 {
        match *self {
            Dist::Fixed(v) => v,
            Dist::Uniform { low, high } => (low + high) / 2.0,
            Dist::Normal { mean, .. } => mean,
            Dist::LogNormal { mu, sigma } => (mu + sigma * sigma / 2.0).exp(),
            Dist::Exponential { mean } => mean,
        }
    }

    /// True when every draw is the same value.
    pub fn is_fixed(&self) -> bool {
        matches!(self, Dist::Fixed(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng;

    #[test]
    fn draws_follow_their_distribution() {
        let mut r = rng::stream(1, "t", 0, 0);
        let n = 20_000;
        let mean =
            |d: Dist, r: &mut rng::Stream| (0..n).map(|_| d.sample(r)).sum::<f64>() / n as f64;
        assert_eq!(Dist::Fixed(3.0).sample(&mut r), 3.0);
        assert!(
            (mean(
                Dist::Uniform {
                    low: 1.0,
                    high: 3.0
                },
                &mut r
            ) - 2.0)
                .abs()
                < 0.03
        );
        assert!(
            (mean(
                Dist::Normal {
                    mean: 5.0,
                    std: 1.0
                },
                &mut r
            ) - 5.0)
                .abs()
                < 0.03
        );
        assert!((mean(Dist::Exponential { mean: 2.0 }, &mut r) - 2.0).abs() < 0.06);
        let ln = Dist::LogNormal {
            mu: 0.0,
            sigma: 0.5,
        };
        assert!((mean(ln, &mut r) - ln.mean()).abs() < 0.03);
    }

    #[test]
    fn bad_parameters_do_not_panic() {
        let mut r = rng::stream(1, "t", 0, 0);
        assert_eq!(
            Dist::Normal {
                mean: 1.0,
                std: -1.0
            }
            .sample(&mut r),
            1.0
        );
        assert_eq!(
            Dist::Uniform {
                low: 2.0,
                high: 1.0
            }
            .sample(&mut r),
            2.0
        );
        assert_eq!(Dist::Exponential { mean: 0.0 }.sample(&mut r), 0.0);
    }
}
