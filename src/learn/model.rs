//! Models on ndarray: linear regression, softmax regression and a one-hidden-layer MLP, each
//! trained by minibatch SGD with an optional FedProx proximal term.
//!
//! Training works in place on preallocated batch buffers and updates weights through
//! `general_mat_mul`, so the inner loop allocates per batch at most, never per sample.

use ndarray::linalg::general_mat_mul;
use ndarray::{Array2, ArrayD, ArrayView2, ArrayViewMut1, ArrayViewMut2, Axis, Ix1, Ix2};
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::data::{argmax, Dataset, TargetsView};
use crate::fed_learn::pb::ModelData;
use crate::fed_learn::{ndarray_to_proto, proto_to_ndarray, NumprotoError};
use crate::rng::Stream;

/// Which model is trained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    /// Linear regression, squared loss.
    Linear,
    /// Multinomial logistic regression, cross-entropy loss.
    Softmax,
    /// One hidden ReLU layer of `hidden` units, then softmax.
    Mlp {
        /// Hidden units.
        hidden: usize,
    },
}

/// Local training settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Passes over the local data per round.
    pub local_epochs: usize,
    /// Samples per SGD step.
    pub batch_size: usize,
    /// SGD step size.
    pub lr: f32,
    /// FedProx proximal weight μ: adds `μ/2·‖w − w_global‖²` to the local loss. 0 is FedAvg.
    pub prox_mu: f32,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            local_epochs: 1,
            batch_size: 16,
            lr: 0.05,
            prox_mu: 0.0,
        }
    }
}

/// A model's parameters, by name in name order (the order of `ModelData.params`).
#[derive(Debug, Clone, PartialEq)]
pub struct Params(pub Vec<(String, ArrayD<f32>)>);

/// A model arrived with the wrong tensors.
#[derive(Debug, thiserror::Error)]
pub enum ParamsError {
    /// A tensor did not decode.
    #[error("tensor {name:?}: {source}")]
    Tensor {
        /// The tensor's name.
        name: String,
        /// Why it did not decode.
        source: NumprotoError,
    },
    /// Names or shapes differ from the model's.
    #[error("expected tensors {expected}, got {got}")]
    Mismatch {
        /// The model's tensors.
        expected: String,
        /// What arrived.
        got: String,
    },
}

impl Params {
    /// Encodes every tensor as .npy bytes in a `ModelData`.
    pub fn to_model_data(&self) -> ModelData {
        ModelData {
            params: self
                .0
                .iter()
                .map(|(k, a)| (k.clone(), ndarray_to_proto(a)))
                .collect(),
        }
    }

    /// Decodes a `ModelData`, checking names and shapes against `like`.
    pub fn from_model_data(md: &ModelData, like: &Params) -> Result<Params, ParamsError> {
        let describe = |it: &mut dyn Iterator<Item = (&String, Vec<usize>)>| {
            it.map(|(k, s)| format!("{k}{s:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut out = Vec::with_capacity(like.0.len());
        for (name, nd) in &md.params {
            let a = proto_to_ndarray::<f32>(nd).map_err(|source| ParamsError::Tensor {
                name: name.clone(),
                source,
            })?;
            out.push((name.clone(), a));
        }
        let same = out.len() == like.0.len()
            && out
                .iter()
                .zip(&like.0)
                .all(|((n1, a1), (n2, a2))| n1 == n2 && a1.shape() == a2.shape());
        if !same {
            return Err(ParamsError::Mismatch {
                expected: describe(&mut like.0.iter().map(|(k, a)| (k, a.shape().to_vec()))),
                got: describe(&mut out.iter().map(|(k, a)| (k, a.shape().to_vec()))),
            });
        }
        Ok(Params(out))
    }

    /// Total number of scalars.
    pub fn len(&self) -> usize {
        self.0.iter().map(|(_, a)| a.len()).sum()
    }

    /// True when there are no parameters.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn get_mut(&mut self, i: usize) -> &mut ArrayD<f32> {
        &mut self.0[i].1
    }
}

/// Loss and accuracy on a dataset. For regression, `accuracy` is R², the coefficient of
/// determination (1 is perfect, 0 is no better than the mean).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Metrics {
    /// Mean loss per sample.
    pub loss: f64,
    /// Share of correct predictions, or R² for regression.
    pub accuracy: f64,
}

impl ModelKind {
    /// Fresh parameters. Linear and softmax start at zero (as W1 specifies); the MLP's weights
    /// start uniform in ±1/√fan_in from `rng`.
    pub fn init(&self, features: usize, classes: usize, rng: &mut Stream) -> Params {
        let zeros2 = |r, c| ArrayD::zeros(vec![r, c]);
        let zeros1 = |n| ArrayD::zeros(vec![n]);
        match *self {
            ModelKind::Linear => Params(vec![
                ("W".into(), zeros2(features, 1)),
                ("b".into(), zeros1(1)),
            ]),
            ModelKind::Softmax => Params(vec![
                ("W".into(), zeros2(features, classes)),
                ("b".into(), zeros1(classes)),
            ]),
            ModelKind::Mlp { hidden } => {
                let mut uniform = |r: usize, c: usize| {
                    let s = 1.0 / (r as f32).sqrt();
                    ArrayD::from_shape_fn(vec![r, c], |_| rng.random_range(-s..s))
                };
                let w1 = uniform(features, hidden);
                let w2 = uniform(hidden, classes);
                Params(vec![
                    ("fc1.W".into(), w1),
                    ("fc1.b".into(), zeros1(hidden)),
                    ("fc2.W".into(), w2),
                    ("fc2.b".into(), zeros1(classes)),
                ])
            }
        }
    }

    /// Trains `params` in place for the configured epochs and returns the mean training loss
    /// seen. With `prox_mu > 0`, `center` (the global model) anchors the FedProx term.
    pub fn train(
        &self,
        params: &mut Params,
        data: &Dataset,
        cfg: &TrainConfig,
        center: &Params,
    ) -> f64 {
        let n = data.len();
        let bs = cfg.batch_size.max(1);
        let mut bufs = Buffers::default();
        let (mut loss_sum, mut seen) = (0.0, 0usize);
        for _ in 0..cfg.local_epochs {
            let mut start = 0;
            while start < n {
                let end = (start + bs).min(n);
                let (x, y) = data.rows(start, end);
                loss_sum += self.step(params, x, y, cfg.lr, &mut bufs) * (end - start) as f64;
                if cfg.prox_mu > 0.0 {
                    prox_step(params, center, cfg.lr * cfg.prox_mu);
                }
                seen += end - start;
                start = end;
            }
        }
        if seen == 0 {
            0.0
        } else {
            loss_sum / seen as f64
        }
    }

    /// Loss and accuracy of `params` on `data`.
    pub fn evaluate(&self, params: &Params, data: &Dataset) -> Metrics {
        if data.is_empty() {
            return Metrics::default();
        }
        let out = self.forward(params, data.x.view(), &mut Buffers::default());
        let (x, y) = data.rows(0, data.len());
        let _ = x;
        match y {
            TargetsView::Classes(c) => {
                let mut out = out;
                let loss = softmax_xent(&mut out, c);
                let correct = out
                    .outer_iter()
                    .zip(c)
                    .filter(|(row, &k)| argmax(row.as_slice().expect("row-major")) == k as usize)
                    .count();
                Metrics {
                    loss,
                    accuracy: correct as f64 / c.len() as f64,
                }
            }
            TargetsView::Values(v) => {
                let mean = v.iter().map(|&t| t as f64).sum::<f64>() / v.len() as f64;
                let (mut sse, mut sst) = (0.0, 0.0);
                for (p, &t) in out.column(0).iter().zip(v) {
                    sse += (*p as f64 - t as f64).powi(2);
                    sst += (t as f64 - mean).powi(2);
                }
                let r2 = if sst > 0.0 { 1.0 - sse / sst } else { 0.0 };
                Metrics {
                    loss: 0.5 * sse / v.len() as f64,
                    accuracy: r2,
                }
            }
        }
    }

    /// Outputs (logits or predictions) for rows `x`.
    fn forward(&self, params: &Params, x: ArrayView2<f32>, bufs: &mut Buffers) -> Array2<f32> {
        let w = |i: usize| {
            params.0[i]
                .1
                .view()
                .into_dimensionality::<Ix2>()
                .expect("2-d weight")
        };
        let b = |i: usize| {
            params.0[i]
                .1
                .view()
                .into_dimensionality::<Ix1>()
                .expect("1-d bias")
        };
        match *self {
            ModelKind::Linear | ModelKind::Softmax => affine(x, w(0), b(1)),
            ModelKind::Mlp { .. } => {
                let h = relu(affine(x, w(0), b(1)));
                let out = affine(h.view(), w(2), b(3));
                bufs.hidden = h;
                out
            }
        }
    }

    /// One SGD step on a batch; returns the batch's mean loss before the step.
    fn step(
        &self,
        params: &mut Params,
        x: ArrayView2<f32>,
        y: TargetsView,
        lr: f32,
        bufs: &mut Buffers,
    ) -> f64 {
        let n = x.nrows() as f32;
        let mut out = self.forward(params, x, bufs);
        let loss = match y {
            TargetsView::Classes(c) => {
                let loss = softmax_xent(&mut out, c);
                for (mut row, &k) in out.outer_iter_mut().zip(c) {
                    row[k as usize] -= 1.0;
                }
                loss
            }
            TargetsView::Values(v) => {
                let mut sse = 0.0;
                for (p, &t) in out.column_mut(0).iter_mut().zip(v) {
                    *p -= t;
                    sse += (*p as f64).powi(2);
                }
                0.5 * sse / v.len() as f64
            }
        };
        // `out` now holds d(loss)/d(output) · n.
        let scale = -lr / n;
        match *self {
            ModelKind::Linear | ModelKind::Softmax => {
                sgd_affine(params, 0, 1, x, &out, scale);
            }
            ModelKind::Mlp { .. } => {
                let h = std::mem::take(&mut bufs.hidden);
                let w2 = params.0[2]
                    .1
                    .view()
                    .into_dimensionality::<Ix2>()
                    .expect("2-d");
                let mut dh = out.dot(&w2.t());
                dh.zip_mut_with(&h, |d, &a| {
                    if a <= 0.0 {
                        *d = 0.0
                    }
                });
                sgd_affine(params, 2, 3, h.view(), &out, scale);
                sgd_affine(params, 0, 1, x, &dh, scale);
            }
        }
        loss
    }
}

/// Scratch space kept across batches.
#[derive(Default)]
struct Buffers {
    hidden: Array2<f32>,
}

fn affine(x: ArrayView2<f32>, w: ArrayView2<f32>, b: ndarray::ArrayView1<f32>) -> Array2<f32> {
    let mut out = Array2::zeros((x.nrows(), w.ncols()));
    general_mat_mul(1.0, &x, &w, 0.0, &mut out);
    out += &b;
    out
}

fn relu(mut a: Array2<f32>) -> Array2<f32> {
    a.mapv_inplace(|v| v.max(0.0));
    a
}

/// W += scale·xᵀ·g and b += scale·Σrows(g), for the weight at `wi` and bias at `bi`.
fn sgd_affine(
    params: &mut Params,
    wi: usize,
    bi: usize,
    x: ArrayView2<f32>,
    g: &Array2<f32>,
    scale: f32,
) {
    {
        let w = params.get_mut(wi);
        let mut w: ArrayViewMut2<f32> = w.view_mut().into_dimensionality().expect("2-d weight");
        general_mat_mul(scale, &x.t(), g, 1.0, &mut w);
    }
    let b = params.get_mut(bi);
    let mut b: ArrayViewMut1<f32> = b.view_mut().into_dimensionality().expect("1-d bias");
    b.scaled_add(scale, &g.sum_axis(Axis(0)));
}

/// Moves every weight toward `center` by `step`·(w − center): the FedProx gradient step.
fn prox_step(params: &mut Params, center: &Params, step: f32) {
    for ((_, w), (_, c)) in params.0.iter_mut().zip(&center.0) {
        w.zip_mut_with(c, |w, &c| *w -= step * (*w - c));
    }
}

/// Turns logits into probabilities in place and returns the mean cross-entropy.
fn softmax_xent(z: &mut Array2<f32>, classes: &[u32]) -> f64 {
    let mut loss = 0.0f64;
    for (mut row, &k) in z.outer_iter_mut().zip(classes) {
        let max = row.fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        let mut sum = 0.0f32;
        row.mapv_inplace(|v| {
            let e = (v - max).exp();
            sum += e;
            e
        });
        row /= sum;
        loss -= (row[k as usize].max(1e-12) as f64).ln();
    }
    loss / classes.len().max(1) as f64
}

/// A zero-filled copy of `p`'s shapes, for accumulators.
pub fn zeros_like(p: &Params) -> Params {
    Params(
        p.0.iter()
            .map(|(k, a)| (k.clone(), ArrayD::zeros(a.raw_dim())))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::learn::data::DataSpec;
    use crate::rng;

    fn learns(kind: ModelKind, min_acc: f64) {
        let spec = DataSpec::w1();
        let data = spec.client_data(1, 0).train;
        let mut p = kind.init(60, 10, &mut rng::stream(1, "init", 0, 0));
        let before = kind.evaluate(&p, &data);
        let center = p.clone();
        let cfg = TrainConfig {
            local_epochs: 30,
            ..TrainConfig::default()
        };
        kind.train(&mut p, &data, &cfg, &center);
        let after = kind.evaluate(&p, &data);
        assert!(
            after.loss < before.loss,
            "{kind:?}: {before:?} -> {after:?}"
        );
        assert!(after.accuracy >= min_acc, "{kind:?}: {after:?}");
    }

    #[test]
    fn softmax_and_mlp_fit_a_client() {
        learns(ModelKind::Softmax, 0.8);
        learns(ModelKind::Mlp { hidden: 32 }, 0.8);
    }

    #[test]
    fn linear_regression_fits() {
        let spec = DataSpec {
            generator: crate::learn::Generator::Regression { noise: 0.3 },
            ..DataSpec::w1()
        };
        let data = spec.client_data(1, 0).train;
        let mut p = ModelKind::Linear.init(60, 1, &mut rng::stream(1, "init", 0, 0));
        let center = p.clone();
        let cfg = TrainConfig {
            local_epochs: 50,
            lr: 0.01,
            ..TrainConfig::default()
        };
        ModelKind::Linear.train(&mut p, &data, &cfg, &center);
        let m = ModelKind::Linear.evaluate(&p, &data);
        assert!(m.accuracy > 0.9, "R² {m:?}");
    }

    #[test]
    fn prox_term_keeps_weights_near_the_center() {
        let data = DataSpec::w1().client_data(1, 0).train;
        let center = ModelKind::Softmax.init(60, 10, &mut rng::stream(1, "init", 0, 0));
        let dist = |mu: f32| {
            let mut p = center.clone();
            let cfg = TrainConfig {
                local_epochs: 5,
                prox_mu: mu,
                ..TrainConfig::default()
            };
            ModelKind::Softmax.train(&mut p, &data, &cfg, &center);
            p.0.iter()
                .map(|(_, a)| a.iter().map(|v| v * v).sum::<f32>())
                .sum::<f32>()
        };
        assert!(dist(1.0) < dist(0.0));
    }

    #[test]
    fn model_data_round_trip_checks_shapes() {
        let p = ModelKind::Mlp { hidden: 4 }.init(3, 2, &mut rng::stream(1, "init", 0, 0));
        let md = p.to_model_data();
        assert_eq!(Params::from_model_data(&md, &p).unwrap(), p);
        let other = ModelKind::Softmax.init(3, 2, &mut rng::stream(1, "init", 0, 0));
        let err = Params::from_model_data(&md, &other).unwrap_err();
        assert!(
            err.to_string().contains("expected tensors W[3, 2], b[2]"),
            "{err}"
        );
    }
}
