//! Dense f32 kernels for the small layers federated models are made of (W1's is 60 → 10).
//!
//! A general GEMM such as matrixmultiply packs both operands into panels before it multiplies;
//! for a 16×60 by 60×10 product that packing costs more than the product itself. These
//! kernels work on row-major slices as they are, with weights stored *output-major* (`wt` is
//! outputs × inputs, row `j` holding output `j`'s weights), so every inner loop runs along the
//! contiguous input dimension.
//!
//! **Layout.** Every matrix is row-major with its rows padded with zeros to a multiple of
//! [`LANES`] ([`padded`]): an "n×k" matrix is `n·padded(k)` floats. So no loop has a ragged
//! tail, and padding stays zero through every kernel.
//!
//! **Determinism.** Each kernel fixes its arithmetic: every product is added with one fused
//! multiply-add; a dot product keeps eight lane sums, each adding its products in input
//! order, and adds the lanes in a fixed tree; updates add one sample after another. Each kernel
//! has a portable version (`f32::mul_add`, exact even where the CPU has no FMA) and, on x86-64,
//! an AVX2+FMA version chosen at run time that does the same roundings in the same order. So
//! results are the same bits on every CPU; a test checks it.

/// Lanes of a dot product's partial sums: one AVX register of f32.
pub(crate) const LANES: usize = 8;

/// `k` rounded up to whole lanes: the row stride of every matrix with `k` columns.
pub(crate) fn padded(k: usize) -> usize {
    k.next_multiple_of(LANES)
}

/// Copies rows of width `k` into rows of stride `padded(k)`, zero-filling the padding.
pub(crate) fn pad_rows(x: &[f32], k: usize, out: &mut Vec<f32>) {
    let kp = padded(k);
    out.clear();
    out.reserve(x.len() / k.max(1) * kp);
    #[cfg(target_arch = "x86_64")]
    if has_avx2() && k > 0 {
        // SAFETY: the CPU supports AVX2, checked just above.
        return unsafe { avx2::pad_rows(x, k, out) };
    }
    portable::pad_rows(x, k, out)
}

/// Appends rows of `mean + std·z` (in f32, `z` rounded first) for the rows of `z` of width
/// `k = mean.len()`, each padded with zeros to stride `padded(k)`: how generated normal draws
/// become feature rows. (AVX2 converts and scales eight at a time, with the same roundings as
/// the plain loop.)
pub(crate) fn scaled_rows(z: &[f64], mean: &[f32], std: &[f32], out: &mut Vec<f32>) {
    let k = mean.len();
    assert_eq!(std.len(), k, "one spread per mean");
    out.reserve(z.len() / k.max(1) * padded(k));
    #[cfg(target_arch = "x86_64")]
    if has_avx2() && k > 0 {
        // SAFETY: the CPU supports AVX2, checked just above.
        return unsafe { avx2::scaled_rows(z, mean, std, out) };
    }
    portable::scaled_rows(z, mean, std, out)
}

/// Copies the `rows` × `cols` matrix `src` (row stride `src_stride`) transposed into `out`
/// (row stride `out_stride`): `out[j][i] = src[i][j]`.
///
/// Why by hand: a model's transposes (one each way per local update) had cost as much as a
/// training epoch's forward pass. Where the CPU has AVX2, 8×8 blocks go through registers
/// (eight row loads, an in-register transpose, eight row stores), masked where a block
/// overhangs the matrix's edge. A copy is a copy: both paths write the same bits.
pub(crate) fn transpose(
    src: &[f32],
    src_stride: usize,
    (rows, cols): (usize, usize),
    out: &mut [f32],
    out_stride: usize,
) {
    if rows == 0 || cols == 0 {
        return;
    }
    assert!(cols <= src_stride && (rows - 1) * src_stride + cols <= src.len());
    assert!(rows <= out_stride && (cols - 1) * out_stride + rows <= out.len());
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: the CPU supports AVX2, checked just above; the bounds are asserted above.
        return unsafe { avx2::transpose(src, src_stride, (rows, cols), out, out_stride) };
    }
    for j in 0..cols {
        let row = &mut out[j * out_stride..j * out_stride + rows];
        for (i, o) in row.iter_mut().enumerate() {
            // SAFETY: i < rows and j < cols, so i·src_stride + j < (rows-1)·src_stride + cols,
            // which the assertion above bounds by src.len().
            *o = unsafe { *src.get_unchecked(i * src_stride + j) };
        }
    }
}

/// Weights `w` (inputs × outputs, the wire's layout) as the kernels keep them: outputs ×
/// inputs, rows padded.
pub(crate) fn output_major(w: ndarray::ArrayView2<f32>) -> Vec<f32> {
    let (k, m) = w.dim();
    let kp = padded(k);
    let mut out = vec![0.0; m * kp];
    match w.as_slice() {
        // The usual case: a standard-layout array (ndarray's strided iterator over the
        // transpose costs more than the copy).
        Some(flat) => transpose(flat, m, (k, m), &mut out, kp),
        None => {
            for ((i, j), v) in w.indexed_iter() {
                out[j * kp + i] = *v;
            }
        }
    }
    out
}

/// The inverse of [`output_major`]: writes `wt` (outputs × padded inputs) into `w` (inputs ×
/// outputs).
pub(crate) fn input_major(wt: &[f32], w: &mut ndarray::ArrayViewMut2<f32>) {
    let (k, m) = w.dim();
    let kp = padded(k);
    match w.as_slice_mut() {
        Some(flat) => transpose(wt, kp, (m, k), flat, m),
        None => {
            for ((i, j), v) in w.indexed_iter_mut() {
                *v = wt[j * kp + i];
            }
        }
    }
}

/// The fixed reduction of eight lane sums.
#[inline(always)]
fn reduce(acc: [f32; LANES]) -> f32 {
    let quad = [
        acc[0] + acc[4],
        acc[1] + acc[5],
        acc[2] + acc[6],
        acc[3] + acc[7],
    ];
    (quad[0] + quad[2]) + (quad[1] + quad[3])
}

/// Whether the AVX2 kernels may run: the CPU has AVX2 and FMA, and the reference paths are
/// not asked for (see [`crate::fastpath`]).
#[cfg(target_arch = "x86_64")]
fn has_avx2() -> bool {
    crate::fastpath::isa() >= crate::fastpath::Isa::Avx2
}

/// Whether the AVX-512 kernels may run, likewise.
#[cfg(target_arch = "x86_64")]
fn has_avx512() -> bool {
    crate::fastpath::isa() == crate::fastpath::Isa::Avx512
}

/// `out_i = x_i·wtᵀ + b`: `x` is n×k, `wt` is m×k, `b` has m entries, `out` is n×m; the
/// padding of `out`'s rows is left as it is.
pub(crate) fn affine(x: &[f32], wt: &[f32], b: &[f32], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if has_avx512() {
        // SAFETY: the CPU supports AVX-512F/DQ, AVX2 and FMA, checked just above.
        return unsafe { avx512::affine(x, wt, b, out) };
    }
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: the CPU supports AVX2, checked just above.
        return unsafe { avx2::affine(x, wt, b, out) };
    }
    portable::affine(x, wt, b, out)
}

/// One gradient step on an affine layer: `wt_j += Σᵢ (s·g[i][j])·x_i` and `b_j += Σᵢ s·g[i][j]`,
/// adding sample after sample. `x` is the layer's n×k input, `g` the n×m gradient at its
/// output.
pub(crate) fn affine_step(x: &[f32], g: &[f32], s: f32, wt: &mut [f32], b: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if has_avx512() {
        // SAFETY: the CPU supports AVX-512F/DQ, AVX2 and FMA, checked just above.
        return unsafe { avx512::affine_step(x, g, s, wt, b) };
    }
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: the CPU supports AVX2, checked just above.
        return unsafe { avx2::affine_step(x, g, s, wt, b) };
    }
    portable::affine_step(x, g, s, wt, b)
}

/// `out_i = Σⱼ g[i][j]·wt_j`, adding in `j` order: the gradient at an affine layer's input
/// (n×k) from `g` (n×m) at its output and its weights `wt` (m×k).
pub(crate) fn backprop(g: &[f32], wt: &[f32], m: usize, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: the CPU supports AVX2, checked just above.
        return unsafe { avx2::backprop(g, wt, m, out) };
    }
    portable::backprop(g, wt, m, out)
}

/// `v = e^v`, elementwise, by [`exp`]'s fixed arithmetic: eight at a time in AVX2 where the CPU
/// has it, with the same bits either way. (libm's `expf` picks its implementation by CPU, so
/// its last bits are not promised to agree across machines.) Only the tests call it, to check
/// the AVX2 `exp8` that [`softmax_rows`] uses against [`exp`].
#[cfg(test)]
fn exp_in_place(v: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: the CPU supports AVX2, checked just above.
        return unsafe { avx2::exp_in_place(v) };
    }
    v.iter_mut().for_each(|x| *x = exp(*x));
}

/// Cephes' `expf` constants: `x = n·ln 2 + r` with ln 2 split in two so `n·ln 2` is exact, and
/// a degree-5 polynomial for `e^r` on |r| ≤ ln(2)/2 (relative error about 1e-7).
mod expc {
    pub const LOG2E: f32 = std::f32::consts::LOG2_E;
    pub const LN2_HI: f32 = 0.693_359_4;
    pub const LN2_LO: f32 = -2.121_944_4e-4;
    pub const P: [f32; 6] = [
        1.987_569_1e-4,
        1.398_199_9e-3,
        8.333_452e-3,
        4.166_579_6e-2,
        1.666_666_5e-1,
        0.5,
    ];
    /// The range where `2^n` and the result are normal floats.
    pub const LO: f32 = -87.0;
    pub const HI: f32 = 88.0;
}

/// `e^x` in a fixed sequence of roundings, every step of which the AVX2 version repeats lane
/// by lane. NaN stays NaN; below -87 the result is 0 and above 88 it is infinite, so the result
/// is never subnormal (subnormals would slow every product they enter tenfold or more).
pub(crate) fn exp(x: f32) -> f32 {
    use expc::*;
    if x.is_nan() || x > HI {
        return x + f32::INFINITY;
    }
    if x < LO {
        return 0.0;
    }
    let n = (x * LOG2E).round_ties_even();
    let r = (-n).mul_add(LN2_HI, x);
    let r = (-n).mul_add(LN2_LO, r);
    let mut y = P[0];
    for p in &P[1..] {
        y = y.mul_add(r, *p);
    }
    let y = y.mul_add(r * r, r) + 1.0;
    y * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

/// Turns each row's first `m` values (rows padded to `padded(m)`) into probabilities in place:
/// subtract the row's maximum, take [`exp`], divide by the sum added in column order. The
/// padding is left zero. The AVX2 version takes eight rows at once, one per lane, so every
/// row still sees exactly the portable loop's operations in its order.
pub(crate) fn softmax_rows(out: &mut [f32], m: usize) {
    #[cfg(target_arch = "x86_64")]
    if has_avx512() && std::arch::is_x86_feature_detected!("avx512vl") {
        // SAFETY: the CPU supports AVX-512F/DQ/VL, AVX2 and FMA, checked just above.
        return unsafe { avx512::softmax_rows(out, m) };
    }
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: the CPU supports AVX2, checked just above.
        return unsafe { avx2::softmax_rows(out, m) };
    }
    portable::softmax_rows(out, m)
}

/// `w -= step·(w − center)`, elementwise: FedProx's proximal gradient step.
pub(crate) fn pull_toward(w: &mut [f32], center: &[f32], step: f32) {
    for (wi, ci) in w.iter_mut().zip(center) {
        *wi -= step * (*wi - ci);
    }
}

/// Batches up to this many rows keep the gradient step's per-sample factors on the stack.
const STEP_ROWS: usize = 64;

/// `n` slots for the gradient step's per-sample factors: in `stack` for a batch of up to
/// [`STEP_ROWS`] rows (W1's sixteen), else in `heap`: no allocation per call.
#[inline(always)]
fn step_buffer<'a, T: Copy + Default>(
    stack: &'a mut [T; STEP_ROWS],
    heap: &'a mut Vec<T>,
    n: usize,
) -> &'a mut [T] {
    if n <= STEP_ROWS {
        &mut stack[..n]
    } else {
        heap.resize(n, T::default());
        heap
    }
}

mod portable;

#[cfg(target_arch = "x86_64")]
mod avx2;

#[cfg(target_arch = "x86_64")]
mod avx512;

#[cfg(test)]
mod tests;
