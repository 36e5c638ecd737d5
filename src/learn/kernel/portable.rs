//! The reference versions: plain loops over lanes.

use super::{padded, reduce, LANES};

pub fn affine(x: &[f32], wt: &[f32], b: &[f32], out: &mut [f32]) {
    let (m, kp) = (b.len(), wt.len() / b.len().max(1));
    for (xi, oi) in x.chunks_exact(kp).zip(out.chunks_exact_mut(padded(m))) {
        for ((o, wj), bj) in oi[..m].iter_mut().zip(wt.chunks_exact(kp)).zip(b) {
            let mut acc = [0.0f32; LANES];
            for (xc, wc) in xi
                .as_chunks::<LANES>()
                .0
                .iter()
                .zip(wj.as_chunks::<LANES>().0)
            {
                for l in 0..LANES {
                    acc[l] = xc[l].mul_add(wc[l], acc[l]);
                }
            }
            *o = reduce(acc) + bj;
        }
    }
}

pub fn affine_step(x: &[f32], g: &[f32], s: f32, wt: &mut [f32], b: &mut [f32]) {
    let (m, kp) = (b.len(), wt.len() / b.len().max(1));
    for (xi, gi) in x.chunks_exact(kp).zip(g.chunks_exact(padded(m))) {
        for ((wj, bj), gij) in wt.chunks_exact_mut(kp).zip(b.iter_mut()).zip(gi) {
            let a = s * gij;
            for (w, xv) in wj.iter_mut().zip(xi) {
                *w = a.mul_add(*xv, *w);
            }
            *bj += a;
        }
    }
}

pub fn pad_rows(x: &[f32], k: usize, out: &mut Vec<f32>) {
    let kp = padded(k);
    // Row, then its padding: one pass over the memory (zero-filling first would be two).
    for src in x.chunks_exact(k.max(1)) {
        out.extend_from_slice(src);
        out.extend(std::iter::repeat_n(0.0, kp - src.len()));
    }
}

pub fn scaled_rows(z: &[f64], mean: &[f32], std: &[f32], out: &mut Vec<f32>) {
    let k = mean.len();
    // Written once, padding and all: zero-filling first would be a second pass.
    for z in z.chunks_exact(k.max(1)) {
        out.extend(
            z.iter()
                .zip(mean)
                .zip(std)
                .map(|((z, mean), std)| mean + std * *z as f32),
        );
        out.extend(std::iter::repeat_n(0.0, padded(k) - k));
    }
}

pub fn softmax_rows(out: &mut [f32], m: usize) {
    for row in out.chunks_exact_mut(padded(m).max(1)) {
        let (row, padding) = row.split_at_mut(m);
        // NaN never compares greater, so it is skipped as `f32::max` would skip it.
        let mut max = f32::NEG_INFINITY;
        for &v in row.iter() {
            if v > max {
                max = v;
            }
        }
        let mut sum = 0.0f32;
        for v in row.iter_mut() {
            *v = super::exp(*v - max);
            sum += *v;
        }
        let inv = 1.0 / sum;
        for v in row.iter_mut() {
            *v *= inv;
        }
        padding.fill(0.0);
    }
}

pub fn backprop(g: &[f32], wt: &[f32], m: usize, out: &mut [f32]) {
    let kp = wt.len() / m.max(1);
    for (gi, oi) in g.chunks_exact(padded(m)).zip(out.chunks_exact_mut(kp)) {
        oi.fill(0.0);
        for (gij, wj) in gi.iter().zip(wt.chunks_exact(kp)) {
            for (o, w) in oi.iter_mut().zip(wj) {
                *o = gij.mul_add(*w, *o);
            }
        }
    }
}
