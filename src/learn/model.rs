//! Models on ndarray: linear regression, softmax regression and a one-hidden-layer MLP, each
//! trained by minibatch SGD with an optional FedProx proximal term.
//!
//! Training converts the parameters once into the kernels' layout ([`Net`]) and reuses its
//! batch buffers, so the inner loop allocates nothing.

use ndarray::ArrayD;
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::dataset::{Dataset, Targets};
use super::net::{with_scratch, Net};
use crate::fed_learn::numproto;
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
    /// The tensors are not a stack of layers the trainer can read (see
    /// [`Params::check_layers`]).
    #[error("{0}")]
    Layers(String),
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

    /// Decodes a `ModelData`, checking names and shapes against `like`. It takes the
    /// `ModelData` (every caller is done with it) so the names move rather than being copied.
    pub fn from_model_data(md: ModelData, like: &Params) -> Result<Params, ParamsError> {
        let mut out = Vec::with_capacity(like.0.len());
        // Taken by value, so the names move into the result rather than being copied.
        for (name, nd) in md.params {
            match proto_to_ndarray::<f32>(&nd) {
                Ok(a) => out.push((name, a)),
                Err(source) => return Err(ParamsError::Tensor { name, source }),
            }
        }
        let out = Params(out);
        out.fits(like)?;
        Ok(out)
    }

    /// Checks that these tensors are a stack of dense layers as the trainer reads them: pairs
    /// of a 2-d weight (inputs × outputs) and a 1-d bias (outputs), each layer's inputs the
    /// last one's outputs, and the names in sorted order, the order a `ModelData` (a map by
    /// name) carries them in. Names that sort otherwise (`weight` before `bias`, `fc10`
    /// before `fc2`) would be read back in another order, and every contribution refused.
    pub fn check_layers(&self) -> Result<(), ParamsError> {
        if self.0.is_empty() || self.0.len() % 2 == 1 {
            let n = self.0.len();
            return Err(ParamsError::Layers(format!(
                "{n} tensors: expected (weight, bias) pairs"
            )));
        }
        if let Some(w) = self.0.windows(2).find(|w| w[0].0 >= w[1].0) {
            let (a, b) = (&w[0].0, &w[1].0);
            return Err(ParamsError::Layers(format!("tensor `{a}` comes before `{b}`, but names travel sorted: name the layers so that they sort in order")));
        }
        let mut inputs = None;
        for pair in self.0.chunks_exact(2) {
            let ((wn, w), (bn, b)) = (&pair[0], &pair[1]);
            let (&[k, m], &[mb]) = (w.shape(), b.shape()) else {
                return Err(ParamsError::Layers(format!(
                    "layer `{wn}`, `{bn}`: expected a 2-d weight and a 1-d bias"
                )));
            };
            if m != mb || inputs.is_some_and(|i| i != k) {
                return Err(ParamsError::Layers(format!(
                    "layer `{wn}` ({k}×{m}), `{bn}` ({mb}): shapes do not chain"
                )));
            }
            inputs = Some(m);
        }
        Ok(())
    }

    /// Whether these are exactly `like`'s tensors: the same names, in the same order, with
    /// the same shapes.
    pub fn fits(&self, like: &Params) -> Result<(), ParamsError> {
        let same = self.0.len() == like.0.len()
            && self
                .0
                .iter()
                .zip(&like.0)
                .all(|((n1, a1), (n2, a2))| n1 == n2 && a1.shape() == a2.shape());
        if same {
            return Ok(());
        }
        let describe = |p: &Params| {
            p.0.iter()
                .map(|(k, a)| format!("{k}{:?}", a.shape()))
                .collect::<Vec<_>>()
                .join(", ")
        };
        Err(ParamsError::Mismatch {
            expected: describe(like),
            got: describe(self),
        })
    }

    /// [`Params::from_model_data`] for a model's tensors given as (name, .npy bytes) in name
    /// order, wherever they lie (in a received frame, say), when they are exactly `like`'s
    /// names and shapes; `None` for anything else, which `from_model_data` then decodes or
    /// rejects. Where both succeed they give the same arrays.
    pub(crate) fn from_npy<'a>(
        tensors: impl ExactSizeIterator<Item = (&'a str, &'a [u8])>,
        like: &Params,
    ) -> Option<Params> {
        if tensors.len() != like.0.len() {
            return None;
        }
        let params = tensors
            .zip(&like.0)
            .map(|((name, npy), (want, shape_of))| {
                let a = numproto::npy_to_ndarray_shaped::<f32>(npy, shape_of.shape())?;
                (name == want).then(|| (want.clone(), a))
            })
            .collect::<Option<_>>()?;
        Some(Params(params))
    }

    /// Total number of scalars.
    pub fn len(&self) -> usize {
        self.0.iter().map(|(_, a)| a.len()).sum()
    }

    /// True when there are no parameters.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
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
    /// start uniform in ±1/√fan_in from `rng`. Every kind's tensors pass
    /// [`Params::check_layers`] (a test checks it).
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
        let anchor = (cfg.prox_mu > 0.0).then(|| Net::from_params(center));
        let (net, loss) = self.train_net(Net::from_params(params), data, cfg, anchor.as_ref());
        net.write_params(params);
        loss
    }

    /// [`ModelKind::train`] on a model already in the kernels' layout, which it leaves there
    /// (so a client can encode it straight from there). `anchor` is FedProx's center, needed
    /// only when `prox_mu > 0`.
    pub(crate) fn train_net(
        &self,
        mut net: Net,
        data: &Dataset,
        cfg: &TrainConfig,
        anchor: Option<&Net>,
    ) -> (Net, f64) {
        let n = data.len();
        let bs = cfg.batch_size.max(1);
        let anchor = anchor.filter(|_| cfg.prox_mu > 0.0);
        let (mut loss_sum, mut seen) = (0.0, 0usize);
        with_scratch(|scratch| {
            for _ in 0..cfg.local_epochs {
                for start in (0..n).step_by(bs) {
                    let end = (start + bs).min(n);
                    let y = data.targets(start, end);
                    let batch = data.padded_rows(start..end);
                    loss_sum += net.step(batch, y, cfg.lr, scratch) * (end - start) as f64;
                    if let Some(anchor) = anchor {
                        net.pull_toward(anchor, cfg.lr * cfg.prox_mu);
                    }
                    seen += end - start;
                }
            }
        });
        let loss = if seen == 0 {
            0.0
        } else {
            loss_sum / seen as f64
        };
        (net, loss)
    }

    /// Loss and accuracy of `params` on `data`.
    pub fn evaluate(&self, params: &Params, data: &Dataset) -> Metrics {
        let e = Evaluator::new(params);
        let scores = Evaluator::parts(data.len()).map(|rows| e.score(data, rows));
        Evaluator::combine(data, scores)
    }
}

/// Evaluation in parts, so that the parts can run on several threads: score every range of
/// [`Evaluator::parts`], in any order and anywhere, then [`Evaluator::combine`] the scores in
/// order. The result is the same bits as [`ModelKind::evaluate`]'s.
#[derive(Debug, Clone)]
pub struct Evaluator {
    net: Net,
}

/// The summed loss and the hits of one part of an evaluation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PartScore {
    loss: f64,
    hits: usize,
}

impl Evaluator {
    /// Rows per part: bounds the scratch space on large test sets.
    const PART: usize = 512;

    /// An evaluator of `params`.
    pub fn new(params: &Params) -> Self {
        Evaluator {
            net: Net::from_params(params),
        }
    }

    /// The row ranges of a dataset of `n` rows.
    pub fn parts(n: usize) -> impl Iterator<Item = std::ops::Range<usize>> {
        (0..n)
            .step_by(Self::PART)
            .map(move |start| start..(start + Self::PART).min(n))
    }

    /// Scores rows `rows` of `data`.
    pub fn score(&self, data: &Dataset, rows: std::ops::Range<usize>) -> PartScore {
        let x = data.padded_rows(rows.clone());
        let y = data.targets(rows.start, rows.end);
        let (loss, hits) = with_scratch(|s| self.net.score(x, y, s));
        PartScore { loss, hits }
    }

    /// The metrics of `data` from its parts' scores, in part order.
    pub fn combine(data: &Dataset, scores: impl IntoIterator<Item = PartScore>) -> Metrics {
        let n = data.len();
        if n == 0 {
            return Metrics::default();
        }
        let (mut loss, mut hits) = (0.0, 0usize);
        for s in scores {
            loss += s.loss;
            hits += s.hits;
        }
        let accuracy = match &data.y {
            Targets::Classes(_) => hits as f64 / n as f64,
            Targets::Values(v) => r_squared(v, 2.0 * loss),
        };
        Metrics {
            loss: loss / n as f64,
            accuracy,
        }
    }
}

/// The coefficient of determination of predictions whose squared errors sum to `sse`.
fn r_squared(targets: &[f32], sse: f64) -> f64 {
    let n = targets.len() as f64;
    let mean = targets.iter().map(|&t| f64::from(t)).sum::<f64>() / n;
    let sst: f64 = targets.iter().map(|&t| (f64::from(t) - mean).powi(2)).sum();
    if sst > 0.0 {
        1.0 - sse / sst
    } else {
        0.0
    }
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
    use crate::fed_learn::ndarray_to_proto;
    use crate::learn::data::DataSpec;
    use crate::rng;
    use ndarray::{IxDyn, ShapeBuilder};

    #[test]
    fn every_model_kind_is_a_stack_of_layers_and_traps_are_named() {
        let mut rng = crate::rng::stream(1, "x", 0, 0);
        for kind in [
            ModelKind::Linear,
            ModelKind::Softmax,
            ModelKind::Mlp { hidden: 8 },
        ] {
            assert!(kind.init(6, 3, &mut rng).check_layers().is_ok(), "{kind:?}");
        }
        let t = |names: [&str; 4], shapes: [&[usize]; 4]| {
            let tensors = names.iter().zip(shapes);
            Params(
                tensors
                    .map(|(n, s)| (n.to_string(), ArrayD::zeros(s)))
                    .collect(),
            )
        };
        // PyTorch's names: `weight` sorts after `bias`, so the wire would swap them.
        let torch = t(
            ["fc.weight", "fc.bias", "out.weight", "out.bias"],
            [&[4, 2], &[2], &[2, 3], &[3]],
        );
        assert!(torch
            .check_layers()
            .unwrap_err()
            .to_string()
            .contains("names travel sorted"));
        // `fc10` sorts before `fc2`.
        let ten = t(
            ["fc2.W", "fc2.b", "fc10.W", "fc10.b"],
            [&[4, 2], &[2], &[2, 3], &[3]],
        );
        assert!(ten
            .check_layers()
            .unwrap_err()
            .to_string()
            .contains("`fc2.b` comes before `fc10.W`"));
        let broken = t(["a.W", "a.b", "b.W", "b.b"], [&[4, 2], &[2], &[5, 3], &[3]]);
        assert!(broken
            .check_layers()
            .unwrap_err()
            .to_string()
            .contains("do not chain"));
    }

    fn learns(kind: ModelKind, min_acc: f64) {
        let spec = DataSpec::w1();
        let data = spec.generator(1).client_data(0).train;
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

    /// A small MLP trained one epoch on a W1 client of `seed`: weights that are neither zero
    /// nor the initial ones.
    fn trained_mlp(seed: u64) -> Params {
        let data = DataSpec::w1().generator(seed).client_data(1).train;
        let kind = ModelKind::Mlp { hidden: 12 };
        let mut p = kind.init(60, 10, &mut rng::stream(seed, "init", 0, 0));
        let center = p.clone();
        kind.train(&mut p, &data, &TrainConfig::default(), &center);
        p
    }

    /// A model in fedsim's own layout goes straight into a `Net`; any other spelling of the
    /// same numbers goes through `Params` and must give the same `Net`; a model that does not
    /// fit the template is left to `Params` to reject.
    #[test]
    fn models_as_fedsim_writes_them_go_straight_to_a_net_and_others_through_params() {
        if crate::fastpath::reference_only() {
            return; // This is the fast path's test; FEDSIM_KERNELS=portable turns it off.
        }
        let p = trained_mlp(4);
        let md = p.to_model_data();
        let direct = Net::from_model_data(&md, &p).expect("fedsim's own layout");
        let expect = p.to_model_data();
        assert_eq!(direct.to_model_data(&p), expect);
        let npy = |md: &ModelData| {
            let tensors: Vec<(String, Vec<u8>)> = md
                .params
                .iter()
                .map(|(k, t)| (k.clone(), t.ndarray.to_vec()))
                .collect();
            let iter = tensors.iter().map(|(k, b)| (k.as_str(), &b[..]));
            Params::from_npy(iter, &p)
        };
        assert_eq!(npy(&md), Some(p.clone()));

        // The same numbers as a Fortran-order array, and as big-endian bytes.
        let w = &p.0[0].1;
        let mut fortran = md.clone();
        let f = ArrayD::from_shape_vec(IxDyn(w.shape()).f(), w.t().iter().copied().collect());
        fortran
            .params
            .insert("fc1.W".into(), ndarray_to_proto(&f.unwrap()));
        let mut big = md.clone();
        let mut bytes = big.params["fc1.W"].ndarray.to_vec();
        let at = bytes.iter().position(|&c| c == b'<').unwrap();
        bytes[at] = b'>';
        let start = bytes.len() - w.len() * 4;
        bytes[start..].chunks_exact_mut(4).for_each(<[u8]>::reverse);
        big.params.get_mut("fc1.W").unwrap().ndarray = bytes.into();
        for other in [fortran, big] {
            assert!(Net::from_model_data(&other, &p).is_none());
            assert_eq!(npy(&other), Some(p.clone()), "any .npy numpy reads");
            let via = Net::from_params(&Params::from_model_data(other, &p).unwrap());
            assert_eq!(via.to_model_data(&p), expect);
        }

        // A tensor missing, one too many, or a shape that does not fit.
        let mut missing = md.clone();
        missing.params.remove("fc2.b");
        let mut extra = md.clone();
        extra
            .params
            .insert("fc3.b".into(), md.params["fc2.b"].clone());
        let mut turned = md.clone();
        turned
            .params
            .insert("fc1.W".into(), ndarray_to_proto(&w.t().to_owned()));
        for bad in [missing, extra, turned] {
            assert!(Net::from_model_data(&bad, &p).is_none());
            assert_eq!(npy(&bad), None);
            assert!(Params::from_model_data(bad, &p).is_err());
        }
    }

    /// A net's tensors written straight into a contribution are the bytes of its
    /// `ModelData`, whatever order its names sort in.
    #[test]
    fn a_nets_tensors_encode_as_its_model_data_does() {
        use crate::fed_learn::{Body, ContributionRef, ModelSource};
        use crate::learn::NetTensors;
        let p = trained_mlp(5);
        // Names that sort against the layers' order: "zW" after "a_b", "yW" after "b_b".
        let renamed = Params(
            ["zW", "a_b", "yW", "b_b"]
                .iter()
                .zip(&p.0)
                .map(|(n, (_, a))| (n.to_string(), a.clone()))
                .collect(),
        );
        for like in [&p, &renamed] {
            let net = Net::from_params(like);
            let md = net.to_model_data(like);
            let encode = |data: &dyn ModelSource| {
                let c = ContributionRef {
                    client_id: "c",
                    token: "t",
                    n_iter: 1,
                    kind: "train",
                    meta: None,
                    data: Some(data),
                    task_name: "train",
                    metrics: &[],
                };
                let mut out = Vec::new();
                c.put(&mut out);
                assert_eq!(out.len(), c.encoded_len());
                out
            };
            let tensors = NetTensors::new(&net, like);
            assert_eq!(encode(&tensors), encode(&md));
        }
    }

    #[test]
    fn a_trained_net_encodes_to_the_bytes_of_its_tensors() {
        let data = DataSpec::w1().generator(2).client_data(5).train;
        for kind in [ModelKind::Softmax, ModelKind::Mlp { hidden: 20 }] {
            let start = kind.init(60, 10, &mut rng::stream(2, "init", 0, 0));
            let cfg = TrainConfig::default();
            let (net, loss) = kind.train_net(Net::from_params(&start), &data, &cfg, None);
            let mut params = start.clone();
            let same_loss = kind.train(&mut params, &data, &cfg, &start);
            assert_eq!(loss.to_bits(), same_loss.to_bits(), "{kind:?}");
            assert_ne!(params, start, "{kind:?} trained");
            assert_eq!(
                net.to_model_data(&start),
                params.to_model_data(),
                "{kind:?}"
            );
        }
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
        let data = spec.generator(1).client_data(0).train;
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
        let data = DataSpec::w1().generator(1).client_data(0).train;
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
        assert_eq!(Params::from_model_data(md.clone(), &p).unwrap(), p);
        let other = ModelKind::Softmax.init(3, 2, &mut rng::stream(1, "init", 0, 0));
        let err = Params::from_model_data(md, &other).unwrap_err();
        assert!(
            err.to_string().contains("expected tensors W[3, 2], b[2]"),
            "{err}"
        );
    }
}
