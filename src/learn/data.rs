//! Synthetic federated data: a [`DataSpec`] says what to generate, and its [`DataGen`]
//! (`spec.generator(seed)`) generates it. Each client's samples come lazily from its own seeded
//! streams, so a client's data never depends on how many other clients exist or which of them
//! trained first.
//!
//! Generators:
//! - **W1** (../shared/BENCHMARKS.md): a global `W_true ~ N(0,1)`; client k labels with
//!   `w_k = W_true + noise·N(0,1)` and shifts its features by `m_k ~ N(0,1)`; `y = argmax(x·w_k)`.
//! - **Synthetic(α, β)** of the FedProx paper (Li et al., 2020): `u_k ~ N(0,α)`,
//!   `W_k, b_k ~ N(u_k,1)`, `B_k ~ N(0,β)`, `v_k ~ N(B_k,1)`, `x ~ N(v_k, Σ)` with
//!   `Σ_jj = j^-1.2`, `y = argmax(W_k·x + b_k)`.
//! - **Regression**: `y = x·w_k + b_k + 0.1·N(0,1)` with `w_k` near a global `w_true`, for the
//!   linear-regression model.

use std::cell::RefCell;

use ndarray::{Array1, Array2};
use rand::Rng;
use rand_distr::{Distribution, Gamma, StandardNormal};
use serde::{Deserialize, Serialize};

use super::dataset::{argmax, Dataset, Targets};
use super::{kernel, normal};
use crate::dist::Dist;
use crate::rng::{self, Stream, NONE};

/// Which synthetic distribution clients draw from.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Generator {
    /// BENCHMARKS.md's W1, with the given spread of each client's labelling matrix (0.3 in W1).
    W1 {
        /// Standard deviation of `w_k - W_true`.
        noise: f64,
    },
    /// FedProx's Synthetic(α, β).
    Synthetic {
        /// How much clients' models differ.
        alpha: f64,
        /// How much clients' features differ.
        beta: f64,
    },
    /// Linear regression targets, for the linear model.
    Regression {
        /// Standard deviation of `w_k - w_true`.
        noise: f64,
    },
}

/// Everything needed to generate any client's data.
#[derive(Debug, Clone, PartialEq)]
pub struct DataSpec {
    /// The distribution family.
    pub generator: Generator,
    /// Feature count.
    pub features: usize,
    /// Class count (ignored for regression).
    pub classes: usize,
    /// Samples per client, drawn once per client and rounded (at least 2).
    pub samples: Dist,
    /// Share of each client's samples held out as its local test set.
    pub test_fraction: f64,
    /// Dirichlet concentration of each client's label mix; `None` keeps the generator's own.
    pub label_skew: Option<f64>,
    /// How many clients, spread evenly over the federation, give the server's global test set.
    pub global_test_clients: usize,
    /// Samples drawn from each of those clients for the global test set.
    pub global_test_samples: usize,
}

impl DataSpec {
    /// W1 exactly as BENCHMARKS.md defines it: 60 features, 10 classes, 64 samples.
    pub fn w1() -> Self {
        DataSpec {
            generator: Generator::W1 { noise: 0.3 },
            features: 60,
            classes: 10,
            samples: Dist::Fixed(64.0),
            test_fraction: 0.0,
            label_skew: None,
            global_test_clients: 50,
            global_test_samples: 64,
        }
    }

    /// True for classification data.
    pub fn is_classification(&self) -> bool {
        !matches!(self.generator, Generator::Regression { .. })
    }
}

/// A [`DataSpec`] bound to a seed, with what every client shares drawn once. Generating many
/// clients' data through one `DataGen` gives the same data as through the spec, only faster.
#[derive(Debug, Clone)]
pub struct DataGen {
    spec: DataSpec,
    seed: u64,
    w_true: Array2<f32>,
}

impl DataGen {
    /// The spec this generator follows.
    pub fn spec(&self) -> &DataSpec {
        &self.spec
    }

    /// Client `client`'s data.
    pub fn client_data(&self, client: u64) -> ClientData {
        self.spec.client_data_with(self.seed, client, &self.w_true)
    }

    /// The server's global test set over `0..clients`.
    pub fn global_test(&self, clients: u64) -> Dataset {
        self.spec.global_test_with(self.seed, clients, &self.w_true)
    }

    /// The global test set in parts, one per member client, which can be generated anywhere
    /// (each from its own stream) and then joined in order with [`Dataset::concat`]: the same
    /// dataset as [`DataGen::global_test`].
    pub fn global_test_parts(&self, clients: u64) -> Vec<u64> {
        self.spec.global_test_members(clients)
    }

    /// Member `client`'s part of the global test set (see [`DataGen::global_test_parts`]).
    pub fn global_test_part(&self, client: u64) -> Dataset {
        self.spec
            .global_test_part_with(self.seed, client, &self.w_true)
    }

    /// How many samples client `client` has.
    pub fn sample_count(&self, client: u64) -> usize {
        self.spec.sample_count(self.seed, client)
    }
}

/// The most samples one client may hold: a drawn count is clamped to it, and a scenario may not
/// ask for more.
pub const MAX_SAMPLES: usize = 1_000_000;

/// One client's data: what it trains on and what it tests on.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientData {
    /// Local training samples.
    pub train: Dataset,
    /// Local held-out samples (may be empty).
    pub test: Dataset,
}

/// A client's own distribution: how its features are drawn and labelled.
struct ClientDist {
    /// Labelling weights, outputs × features (the kernels' layout).
    wt: Vec<f32>,
    /// Labelling bias, one per output.
    b: Vec<f32>,
    /// Feature means.
    mean: Array1<f32>,
    /// Feature standard deviations.
    std: Array1<f32>,
}

impl DataSpec {
    fn outputs(&self) -> usize {
        if self.is_classification() {
            self.classes
        } else {
            1
        }
    }

    /// The global `w_true` of the W1 and regression generators, drawn once per seed.
    fn w_true(&self, seed: u64) -> Array2<f32> {
        match self.generator {
            Generator::W1 { .. } | Generator::Regression { .. } => normal_matrix(
                &mut rng::stream(seed, "w-true", NONE, NONE),
                self.features,
                self.outputs(),
                0.0,
                1.0,
            ),
            Generator::Synthetic { .. } => Array2::zeros((0, 0)),
        }
    }

    /// A generator for `seed`, which draws what all clients share once.
    pub fn generator(&self, seed: u64) -> DataGen {
        DataGen {
            spec: self.clone(),
            seed,
            w_true: self.w_true(seed),
        }
    }

    fn client_dist(&self, seed: u64, client: u64, w_true: &Array2<f32>) -> ClientDist {
        let (d, c) = (self.features, self.outputs());
        let mut r = rng::stream(seed, "client-dist", client, NONE);
        match self.generator {
            Generator::W1 { noise } | Generator::Regression { noise } => {
                let w = w_true + &normal_matrix(&mut r, d, c, 0.0, noise);
                let m: f64 = r.sample(StandardNormal);
                ClientDist {
                    wt: kernel::output_major(w.view()),
                    b: vec![0.0; c],
                    mean: Array1::from_elem(d, m as f32),
                    std: Array1::ones(d),
                }
            }
            Generator::Synthetic { alpha, beta } => {
                let u = normal(&mut r) * alpha.sqrt();
                let big_b = normal(&mut r) * beta.sqrt();
                let w = normal_matrix(&mut r, d, c, u, 1.0);
                let b = (0..c).map(|_| (u + normal(&mut r)) as f32).collect();
                let mean = Array1::from_shape_fn(d, |_| (big_b + normal(&mut r)) as f32);
                let std = Array1::from_shape_fn(d, |j| ((j + 1) as f32).powf(-1.2).sqrt());
                ClientDist {
                    wt: kernel::output_major(w.view()),
                    b,
                    mean,
                    std,
                }
            }
        }
    }

    /// How many samples client `client` has, for `seed`.
    fn sample_count(&self, seed: u64, client: u64) -> usize {
        let mut r = rng::stream(seed, "sample-count", client, NONE);
        let drawn = self.samples.sample(&mut r).round();
        // A draw is clamped into the range a client may hold (NaN, from a distribution that
        // cannot draw, becomes the least).
        drawn.clamp(2.0, MAX_SAMPLES as f64) as usize
    }

    fn client_data_with(&self, seed: u64, client: u64, w_true: &Array2<f32>) -> ClientData {
        let n = self.sample_count(seed, client);
        let dist = self.client_dist(seed, client, w_true);
        let mut r = rng::stream(seed, "data", client, NONE);
        let quotas = self
            .label_skew
            .map(|a| self.label_quotas(seed, client, a, n));
        let all = self.draw(&dist, &mut r, n, quotas);
        let n_test = ((n as f64) * self.test_fraction).round() as usize;
        let n_train = n - n_test.min(n - 1);
        if n_train == n {
            // No held-out part: the samples are the training set as they are.
            let test = all.select(n..n);
            return ClientData { train: all, test };
        }
        ClientData {
            train: all.select(0..n_train),
            test: all.select(n_train..n),
        }
    }

    fn global_test_with(&self, seed: u64, clients: u64, w_true: &Array2<f32>) -> Dataset {
        let parts: Vec<Dataset> = self
            .global_test_members(clients)
            .into_iter()
            .map(|c| self.global_test_part_with(seed, c, w_true))
            .collect();
        Dataset::concat(&parts)
    }

    /// The clients whose fresh samples make the global test set over `0..clients`, in order.
    fn global_test_members(&self, clients: u64) -> Vec<u64> {
        let k = (self.global_test_clients as u64).clamp(1, clients.max(1));
        let step = (clients / k).max(1);
        (0..k).map(|i| i * step).collect()
    }

    fn global_test_part_with(&self, seed: u64, client: u64, w_true: &Array2<f32>) -> Dataset {
        let dist = self.client_dist(seed, client, w_true);
        let mut r = rng::stream(seed, "global-test", client, NONE);
        self.draw(&dist, &mut r, self.global_test_samples, None)
    }

    /// Per-class sample counts from a Dirichlet(alpha) label mix.
    fn label_quotas(&self, seed: u64, client: u64, alpha: f64, n: usize) -> Vec<usize> {
        let mut r = rng::stream(seed, "label-mix", client, NONE);
        let gamma = Gamma::new(alpha.max(1e-3), 1.0).expect("positive shape");
        let g: Vec<f64> = (0..self.classes)
            .map(|_| gamma.sample(&mut r).max(1e-12))
            .collect();
        let total: f64 = g.iter().sum();
        let mut quotas: Vec<usize> = g
            .iter()
            .map(|v| (v / total * n as f64).floor() as usize)
            .collect();
        // Largest remainders get the samples that flooring left over.
        let mut order: Vec<usize> = (0..self.classes).collect();
        order.sort_by(|&a, &b| {
            let fa = g[a] / total * n as f64 - quotas[a] as f64;
            let fb = g[b] / total * n as f64 - quotas[b] as f64;
            fb.total_cmp(&fa).then(a.cmp(&b))
        });
        let missing = n - quotas.iter().sum::<usize>();
        for &c in order.iter().take(missing) {
            quotas[c] += 1;
        }
        quotas
    }

    /// Draws `n` samples. With quotas, candidates whose class is full are dropped and more are
    /// drawn, up to 64·n candidates in all; after that the remaining rows take whatever class
    /// comes (rare classes of a client's distribution may be unreachable).
    fn draw(
        &self,
        dist: &ClientDist,
        r: &mut Stream,
        n: usize,
        quotas: Option<Vec<usize>>,
    ) -> Dataset {
        let d = self.features;
        let (x, out) = self.candidates(dist, r, n);
        if !self.is_classification() {
            let y = out
                .rows()
                .map(|row| row[0] + 0.1 * normal(r) as f32)
                .collect();
            return Dataset::padded(x, d, Targets::Values(y));
        }
        let classes = out.classes();
        let Some(mut quotas) = quotas else {
            return Dataset::padded(x, d, Targets::Classes(classes));
        };
        let stride = kernel::padded(d);
        let (mut rows, mut labels) = (Vec::with_capacity(n * stride), Vec::with_capacity(n));
        let (mut x, mut classes, mut drawn) = (x, classes, n);
        loop {
            for (row, &k) in x.chunks_exact(stride.max(1)).zip(&classes) {
                let give_up = drawn >= 64 * n;
                if labels.len() < n && (quotas[k as usize] > 0 || give_up) {
                    quotas[k as usize] = quotas[k as usize].saturating_sub(1);
                    rows.extend_from_slice(row);
                    labels.push(k);
                }
            }
            if labels.len() >= n {
                break;
            }
            let (nx, out) = self.candidates(dist, r, n);
            classes = out.classes();
            x = nx;
            drawn += n;
        }
        Dataset::padded(rows, d, Targets::Classes(labels))
    }

    /// `m` feature rows from the client's distribution, padded ([`kernel`]'s layout), and
    /// their outputs `x·w + b`.
    fn candidates(&self, dist: &ClientDist, r: &mut Stream, m: usize) -> (Vec<f32>, Outputs) {
        let (d, stride) = (self.features, kernel::padded(self.features));
        let (mean, std) = (dist.mean.as_slice(), dist.std.as_slice());
        let (mean, std) = (mean.expect("contiguous"), std.expect("contiguous"));
        let mut x = Vec::with_capacity(m * stride);
        with_draws(m * d, |z| {
            // All the draws at once, row after row: the same values as a row at a time.
            normal::fill(r, z);
            kernel::scaled_rows(z, mean, std, &mut x);
        });
        x.resize(m * stride, 0.0);
        let c = dist.b.len();
        let mut out = vec![0.0; m * kernel::padded(c)];
        kernel::affine(&x, &dist.wt, &dist.b, &mut out);
        (x, Outputs { values: out, c })
    }
}

/// Candidate rows' outputs as the kernels leave them: rows of `c` values, padded.
struct Outputs {
    values: Vec<f32>,
    c: usize,
}

impl Outputs {
    /// Each row's `c` outputs.
    fn rows(&self) -> impl Iterator<Item = &[f32]> {
        let c = self.c;
        self.values
            .chunks_exact(kernel::padded(c).max(1))
            .map(move |row| &row[..c])
    }

    /// Each row's label: the index of its largest output.
    fn classes(&self) -> Vec<u32> {
        self.rows().map(|row| argmax(row) as u32).collect()
    }
}

thread_local! {
    /// Each thread's buffer for a client's normal draws, kept between clients: a fresh one
    /// would be zero-filled by the allocator only to be overwritten.
    static DRAWS: RefCell<Vec<f64>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` on this thread's draw buffer, `n` long (its contents are stale, for `f` to
/// overwrite).
fn with_draws<R>(n: usize, f: impl FnOnce(&mut [f64]) -> R) -> R {
    DRAWS.with_borrow_mut(|buf| {
        if buf.len() < n {
            buf.resize(n, 0.0);
        }
        f(&mut buf[..n])
    })
}

fn normal(r: &mut Stream) -> f64 {
    r.sample(StandardNormal)
}

fn normal_matrix(r: &mut Stream, rows: usize, cols: usize, mean: f64, std: f64) -> Array2<f32> {
    let mut z = vec![0.0; rows * cols];
    normal::fill(r, &mut z);
    let values = z.iter().map(|z| (mean + std * z) as f32).collect();
    Array2::from_shape_vec((rows, cols), values).expect("rows × cols values")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_data_is_reproducible_and_per_client() {
        let spec = DataSpec::w1();
        let a = spec.generator(7).client_data(3);
        assert_eq!(a, spec.generator(7).client_data(3));
        assert_ne!(a.train.x(), spec.generator(7).client_data(4).train.x());
        assert_ne!(a.train.x(), spec.generator(8).client_data(3).train.x());
        assert_eq!(a.train.len(), 64);
        assert!(a.test.is_empty());
    }

    #[test]
    fn the_global_test_set_is_its_parts_in_order() {
        let gen = DataSpec::w1().generator(5);
        let parts: Vec<Dataset> = gen
            .global_test_parts(1000)
            .into_iter()
            .map(|c| gen.global_test_part(c))
            .collect();
        assert_eq!(parts.len(), 50);
        let whole = gen.global_test(1000);
        assert_eq!(whole, Dataset::concat(&parts));
        assert_eq!(whole.len(), 50 * 64);
    }

    #[test]
    fn test_fraction_splits_and_sample_counts_vary() {
        let spec = DataSpec {
            samples: Dist::Uniform {
                low: 20.0,
                high: 200.0,
            },
            test_fraction: 0.25,
            ..DataSpec::w1()
        };
        let counts: Vec<usize> = (0..20).map(|c| spec.sample_count(1, c)).collect();
        assert!(counts.iter().any(|&n| n != counts[0]));
        let d = spec.generator(1).client_data(0);
        assert_eq!(d.train.len() + d.test.len(), counts[0]);
        assert_eq!(d.test.len(), (counts[0] as f64 * 0.25).round() as usize);
    }

    #[test]
    fn dirichlet_skew_concentrates_labels() {
        let spec = DataSpec {
            label_skew: Some(0.1),
            samples: Dist::Fixed(200.0),
            ..DataSpec::w1()
        };
        let d = spec.generator(1).client_data(2);
        let Targets::Classes(c) = &d.train.y else {
            panic!()
        };
        let mut counts = [0usize; 10];
        for &k in c {
            counts[k as usize] += 1;
        }
        let top = *counts.iter().max().unwrap();
        assert!(
            top > 100,
            "alpha=0.1 should make one label dominate: {counts:?}"
        );
    }

    #[test]
    fn synthetic_and_regression_generate() {
        let syn = DataSpec {
            generator: Generator::Synthetic {
                alpha: 1.0,
                beta: 1.0,
            },
            ..DataSpec::w1()
        };
        let d = syn.generator(1).client_data(0);
        assert_eq!(d.train.features(), 60);
        let reg = DataSpec {
            generator: Generator::Regression { noise: 0.3 },
            ..DataSpec::w1()
        };
        assert!(matches!(
            reg.generator(1).client_data(0).train.y,
            Targets::Values(_)
        ));
        assert_eq!(reg.generator(1).global_test(100).len(), 50 * 64);
    }
}
