//! A model as the kernels see it: a stack of affine layers with ReLU between them, weights
//! stored output-major in the kernels' padded layout ([`kernel`]). [`Params`] (the wire's
//! layout, `W` as inputs × outputs) converts to a `Net` once per training call or evaluation,
//! so the copy is paid per client, not per batch.

use std::cell::RefCell;

use ndarray::{ArrayD, ArrayViewMut2, Ix2};

use super::dataset::{argmax, TargetsView};
use super::kernel;
use super::model::Params;
use crate::fed_learn::numproto::{f32_npy_len, f32_to_proto, npy_into, put_f32_npy};
use crate::fed_learn::pb::{ModelData, NDArray};
use crate::fed_learn::ModelSource;

/// One affine layer: `out = x·wtᵀ + b`.
#[derive(Debug, Clone)]
struct Dense {
    /// Outputs × inputs, rows padded.
    wt: Vec<f32>,
    /// One bias per output.
    b: Vec<f32>,
    inputs: usize,
}

impl Dense {
    fn from_arrays(w: &ArrayD<f32>, b: &ArrayD<f32>) -> Dense {
        let w = w.view().into_dimensionality::<Ix2>().expect("2-d weight");
        Dense {
            wt: kernel::output_major(w),
            b: b.iter().copied().collect(),
            inputs: w.nrows(),
        }
    }

    /// The layer of the .npy files `w` and `b` if they are C-order f32 arrays of the shapes
    /// of `like_w` and `like_b`: the weights read straight into the kernels' layout (through
    /// `rows`, a buffer for the wire's layout), with no array in between.
    fn from_npy(
        (w, like_w): (&[u8], &ArrayD<f32>),
        (b, like_b): (&[u8], &ArrayD<f32>),
        rows: &mut Vec<f32>,
    ) -> Option<Dense> {
        let [k, m] = like_w.shape() else {
            return None;
        };
        let (k, m, kp) = (*k, *m, kernel::padded(*k));
        npy_into(w, like_w.shape(), rows)?;
        let mut bias = Vec::with_capacity(m);
        npy_into(b, like_b.shape(), &mut bias)?;
        let mut wt = vec![0.0; m * kp];
        kernel::transpose(rows, m, (k, m), &mut wt, kp);
        Some(Dense {
            wt,
            b: bias,
            inputs: k,
        })
    }

    fn outputs(&self) -> usize {
        self.b.len()
    }

    /// The weights as .npy tensors of the shapes of `w` and `b` (the wire's layout): what
    /// [`Dense::write_arrays`] and then encoding would give, in one pass.
    fn to_protos(&self, w: &ArrayD<f32>, b: &ArrayD<f32>) -> (NDArray, NDArray) {
        let (k, m) = (self.inputs, self.outputs());
        let kp = kernel::padded(k);
        assert_eq!(w.shape(), [k, m], "the layer's weight shape");
        let w = f32_to_proto(w.shape(), |out| {
            kernel::transpose(&self.wt, kp, (m, k), out, m)
        });
        let b = f32_to_proto(b.shape(), |out| out.copy_from_slice(&self.b));
        (w, b)
    }

    /// Appends the .npy file of the weight (`weight`) or the bias, as [`Dense::to_protos`]
    /// would hold it, of the shape `shape`.
    fn put_npy(&self, weight: bool, shape: &[usize], buf: &mut dyn bytes::BufMut) {
        let (k, m) = (self.inputs, self.outputs());
        if weight {
            assert_eq!(shape, [k, m], "the layer's weight shape");
            let kp = kernel::padded(k);
            put_f32_npy(
                shape,
                |out| kernel::transpose(&self.wt, kp, (m, k), out, m),
                buf,
            );
        } else {
            put_f32_npy(shape, |out| out.copy_from_slice(&self.b), buf);
        }
    }

    fn write_arrays(&self, w: &mut ArrayD<f32>, b: &mut ArrayD<f32>) {
        let mut w: ArrayViewMut2<f32> = w.view_mut().into_dimensionality().expect("2-d weight");
        kernel::input_major(&self.wt, &mut w);
        for (dst, src) in b.iter_mut().zip(&self.b) {
            *dst = *src;
        }
    }
}

/// Scratch space for a batch, all in the padded layout: each layer's output and the gradient
/// there.
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    acts: Vec<Vec<f32>>,
    grads: Vec<Vec<f32>>,
}

thread_local! {
    /// Each thread's batch buffers, kept between calls: an evaluation part's fresh buffers
    /// would cost page faults and the kernel's page zeroing on every call.
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// Runs `f` with this thread's scratch buffers.
pub(crate) fn with_scratch<R>(f: impl FnOnce(&mut Scratch) -> R) -> R {
    SCRATCH.with_borrow_mut(f)
}

/// The layers of a model, in order.
#[derive(Debug, Clone)]
pub(crate) struct Net {
    layers: Vec<Dense>,
}

impl Net {
    /// The layers of `params`, which hold `[W, b]` pairs in order ([`Params::check_layers`]
    /// holds for every model fedsim builds; the engine checks it before a run).
    pub fn from_params(params: &Params) -> Net {
        let layers = params
            .0
            .chunks_exact(2)
            .map(|pair| Dense::from_arrays(&pair[0].1, &pair[1].1))
            .collect();
        Net { layers }
    }

    /// The layers of the wire model `md` if its tensors are exactly `like`'s (the same names,
    /// in order, and shapes) as fedsim writes them: each read straight into the kernels'
    /// layout. `None` for anything else, which [`Params::from_model_data`] then decodes or
    /// rejects; where both succeed they give the same numbers.
    ///
    /// Why: a client turns every global model it receives into a `Net`; through [`Params`]
    /// that was an array per tensor, built only to be transposed and dropped.
    pub fn from_model_data(md: &ModelData, like: &Params) -> Option<Net> {
        let tensors = md.params.iter().map(|(k, t)| (k.as_str(), &t.ndarray[..]));
        Net::from_npy(tensors, like)
    }

    /// [`Net::from_model_data`] for a model's tensors given as (name, .npy bytes) in name
    /// order, wherever they lie (in a received frame, say).
    pub fn from_npy<'a>(
        tensors: impl ExactSizeIterator<Item = (&'a str, &'a [u8])>,
        like: &Params,
    ) -> Option<Net> {
        if tensors.len() != like.0.len() || !like.0.len().is_multiple_of(2) {
            return None;
        }
        let mut pairs = tensors.zip(&like.0);
        let (mut layers, mut rows) = (Vec::with_capacity(like.0.len() / 2), Vec::new());
        while let (Some(w), Some(b)) = (pairs.next(), pairs.next()) {
            let [((w_name, w), (w_want, like_w)), ((b_name, b), (b_want, like_b))] = [w, b];
            (w_name == w_want && b_name == b_want).then_some(())?;
            layers.push(Dense::from_npy((w, like_w), (b, like_b), &mut rows)?);
        }
        Some(Net { layers })
    }

    /// The weights as a wire model with `like`'s names and shapes (those they came from): the
    /// same bytes as writing them into `like` and encoding that, without the copy.
    pub fn to_model_data(&self, like: &Params) -> ModelData {
        let mut md = ModelData::default();
        for (layer, pair) in self.layers.iter().zip(like.0.chunks_exact(2)) {
            let (w, b) = layer.to_protos(&pair[0].1, &pair[1].1);
            md.params.insert(pair[0].0.clone(), w);
            md.params.insert(pair[1].0.clone(), b);
        }
        md
    }

    /// Writes the weights back into `params`, whose shapes they came from.
    pub fn write_params(&self, params: &mut Params) {
        for (layer, pair) in self.layers.iter().zip(params.0.chunks_exact_mut(2)) {
            let (w, b) = pair.split_at_mut(1);
            layer.write_arrays(&mut w[0].1, &mut b[0].1);
        }
    }

    /// Runs `n` rows of `x` (padded, n × inputs) through the net, leaving each layer's
    /// output in `s.acts`.
    fn forward(&self, x: &[f32], n: usize, s: &mut Scratch) {
        debug_assert_eq!(x.len(), n * kernel::padded(self.layers[0].inputs));
        s.acts.resize_with(self.layers.len(), Vec::new);
        for (i, layer) in self.layers.iter().enumerate() {
            let (done, rest) = s.acts.split_at_mut(i);
            let input = if i == 0 { x } else { &done[i - 1] };
            let out = &mut rest[0];
            out.clear();
            out.resize(n * kernel::padded(layer.outputs()), 0.0);
            kernel::affine(input, &layer.wt, &layer.b, out);
            if i + 1 < self.layers.len() {
                out.iter_mut().for_each(|v| *v = v.max(0.0));
            }
        }
    }

    /// The loss summed over rows `x` (padded) and, for classes, how many are predicted
    /// right.
    pub fn score(&self, x: &[f32], y: TargetsView, s: &mut Scratch) -> (f64, usize) {
        self.forward(x, y.len(), s);
        let m = self.outputs();
        let out = s.acts.last_mut().expect("a layer");
        let rows = out.chunks_exact(kernel::padded(m));
        match y {
            TargetsView::Classes(c) => {
                let hits = rows
                    .zip(c)
                    .filter(|(row, &k)| argmax(&row[..m]) == k as usize)
                    .count();
                (softmax_xent(out, m, c), hits)
            }
            TargetsView::Values(v) => {
                let loss = rows
                    .zip(v)
                    .map(|(row, &t)| 0.5 * (f64::from(row[0]) - f64::from(t)).powi(2))
                    .fold(0.0, |a, l| a + l);
                (loss, 0)
            }
        }
    }

    fn outputs(&self) -> usize {
        self.layers.last().map_or(0, Dense::outputs)
    }

    /// One SGD step on a batch of `y.len()` rows of `x` (padded); returns the batch's mean
    /// loss before it.
    pub fn step(&mut self, x: &[f32], y: TargetsView, lr: f32, s: &mut Scratch) -> f64 {
        let n = y.len();
        self.forward(x, n, s);
        let last = self.layers.len() - 1;
        s.grads.resize_with(self.layers.len(), Vec::new);
        std::mem::swap(&mut s.grads[last], &mut s.acts[last]);
        let loss = output_gradient(&mut s.grads[last], self.outputs(), y);
        // The gradient now holds n·d(loss)/d(output).
        let scale = -lr / n as f32;
        for (i, layer) in self.layers.iter_mut().enumerate().rev() {
            let input = if i == 0 { x } else { &s.acts[i - 1] };
            if i > 0 {
                let (below, here) = s.grads.split_at_mut(i);
                let g_in = &mut below[i - 1];
                g_in.clear();
                g_in.resize(input.len(), 0.0);
                kernel::backprop(&here[0], &layer.wt, layer.outputs(), g_in);
                for (g, a) in g_in.iter_mut().zip(input) {
                    if *a <= 0.0 {
                        *g = 0.0;
                    }
                }
            }
            kernel::affine_step(input, &s.grads[i], scale, &mut layer.wt, &mut layer.b);
        }
        loss
    }

    /// Moves every weight toward `center`'s by `step`·(w − center): FedProx's gradient step.
    pub fn pull_toward(&mut self, center: &Net, step: f32) {
        for (l, c) in self.layers.iter_mut().zip(&center.layers) {
            kernel::pull_toward(&mut l.wt, &c.wt, step);
            kernel::pull_toward(&mut l.b, &c.b, step);
        }
    }
}

/// A net's tensors with `like`'s names and shapes (those they came from), for encoding
/// straight from the kernels' layout into a frame: the bytes of [`Net::to_model_data`]
/// without the `ModelData`.
pub(crate) struct NetTensors<'a> {
    net: &'a Net,
    like: &'a Params,
    /// `like`'s tensors in name order (a `ModelData` is a map), each with the length of its
    /// .npy file (asked for more than once while encoding).
    order: Vec<(usize, usize)>,
}

impl<'a> NetTensors<'a> {
    pub fn new(net: &'a Net, like: &'a Params) -> Self {
        let mut order: Vec<(usize, usize)> = like
            .0
            .iter()
            .enumerate()
            .map(|(j, (_, a))| (j, f32_npy_len(a.shape())))
            .collect();
        order.sort_by(|a, b| like.0[a.0].0.cmp(&like.0[b.0].0));
        NetTensors { net, like, order }
    }
}

impl ModelSource for NetTensors<'_> {
    fn count(&self) -> usize {
        self.order.len()
    }

    fn tensor(&self, i: usize) -> (&str, usize) {
        let (j, len) = self.order[i];
        (&self.like.0[j].0, len)
    }

    fn put_npy(&self, i: usize, buf: &mut dyn bytes::BufMut) {
        let (j, _) = self.order[i];
        let layer = &self.net.layers[j / 2];
        layer.put_npy(j.is_multiple_of(2), self.like.0[j].1.shape(), buf);
    }
}

/// Turns outputs (rows of `m`, padded) into n·d(mean loss)/d(output) in place and returns the
/// mean loss: softmax cross-entropy for classes, half squared error for values.
fn output_gradient(out: &mut [f32], m: usize, y: TargetsView) -> f64 {
    match y {
        TargetsView::Classes(c) => {
            let loss = softmax_xent(out, m, c);
            for (row, &k) in out.chunks_exact_mut(kernel::padded(m)).zip(c) {
                row[k as usize] -= 1.0;
            }
            loss / c.len().max(1) as f64
        }
        TargetsView::Values(v) => {
            let mut sse = 0.0;
            for (row, &t) in out.chunks_exact_mut(kernel::padded(m)).zip(v) {
                row[0] -= t;
                sse += f64::from(row[0]).powi(2);
            }
            0.5 * sse / v.len().max(1) as f64
        }
    }
}

/// Turns rows of `m` logits (padded) into probabilities in place; returns the cross-entropy
/// summed over rows against `classes`.
///
/// `Σ -ln p` is taken as `-ln Π p` over sixteen rows at a time, one logarithm instead of
/// sixteen: with every `p` clamped to at least 1e-12, a product of
/// sixteen stays above 1e-192, far from f64's underflow.
fn softmax_xent(out: &mut [f32], m: usize, classes: &[u32]) -> f64 {
    kernel::softmax_rows(out, m);
    let stride = kernel::padded(m).max(1);
    let mut loss = 0.0;
    for (rows, classes) in out.chunks(16 * stride).zip(classes.chunks(16)) {
        let product: f64 = rows
            .chunks_exact(stride)
            .zip(classes)
            .map(|(row, &k)| f64::from(row[k as usize].max(1e-12)))
            .product();
        loss -= product.ln();
    }
    loss
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cross_entropy_is_the_sum_of_each_rows_log_loss() {
        // 37 rows of 3 classes: two whole groups of sixteen and a short one; one row's true
        // class has a probability that underflows to 0 and counts as 1e-12.
        let (m, stride) = (3, kernel::padded(3));
        let mut out = vec![0.0f32; 37 * stride];
        let classes: Vec<u32> = (0..37).map(|i| i % 3).collect();
        for (i, row) in out.chunks_exact_mut(stride).enumerate() {
            row[..m].copy_from_slice(&[i as f32 * 0.3, -(i as f32) * 0.1, 1.5]);
        }
        out[5 * stride + 2] = -200.0;
        let mut probs = out.clone();
        kernel::softmax_rows(&mut probs, m);
        let want: f64 = probs
            .chunks_exact(stride)
            .zip(&classes)
            .map(|(row, &k)| -f64::from(row[k as usize].max(1e-12)).ln())
            .sum();
        let got = softmax_xent(&mut out, m, &classes);
        assert_eq!(out, probs, "rows become probabilities");
        assert!((got - want).abs() < 1e-12 * want, "{got} vs {want}");
        assert!(want > 27.0, "the clamped row adds ln 1e12");
    }
}
