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
/// become feature rows. (As plain loops, in SSE registers two draws at a time, this was ~4% of
/// a W1 run; AVX2 converts and scales eight at a time, with the same roundings.)
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

#[cfg(target_arch = "x86_64")]
fn has_avx2() -> bool {
    std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
}

#[cfg(target_arch = "x86_64")]
fn has_avx512() -> bool {
    has_avx2()
        && std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512dq")
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
/// [`STEP_ROWS`] rows (W1's sixteen), else in `heap`. A fresh `Vec` per call was 8,000
/// allocations a W1 run.
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

/// The reference versions: plain loops over lanes.
mod portable {
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
}

/// The same kernels in AVX2 registers, blocked so each load feeds several products.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::{
        __m256, _mm256_add_epi32, _mm256_add_ps, _mm256_blendv_ps, _mm256_castsi256_ps,
        _mm256_castsi256_si128, _mm256_cmp_ps, _mm256_cmpgt_epi32, _mm256_cvtepi32_epi64,
        _mm256_cvtpd_ps, _mm256_cvtps_epi32, _mm256_div_ps, _mm256_extracti128_si256,
        _mm256_fmadd_ps, _mm256_fnmadd_ps, _mm256_loadu_ps, _mm256_maskload_pd, _mm256_maskload_ps,
        _mm256_maskstore_ps, _mm256_max_ps, _mm256_min_ps, _mm256_mul_ps, _mm256_permute2f128_ps,
        _mm256_permutevar8x32_ps, _mm256_round_ps, _mm256_set1_epi32, _mm256_set1_ps,
        _mm256_set_m128, _mm256_setr_epi32, _mm256_setzero_ps, _mm256_shuffle_ps,
        _mm256_slli_epi32, _mm256_storeu_ps, _mm256_sub_ps, _mm256_unpackhi_ps, _mm256_unpacklo_ps,
        _CMP_LT_OQ, _CMP_NLE_UQ, _MM_FROUND_NO_EXC, _MM_FROUND_TO_NEAREST_INT,
    };

    use super::{padded, LANES, STEP_ROWS};

    /// Loads one lane group.
    #[inline(always)]
    pub(super) fn load(c: &[f32; LANES]) -> __m256 {
        // SAFETY: `c` is exactly the 8 f32s an unaligned load reads; only called from
        // functions compiled with AVX2.
        unsafe { _mm256_loadu_ps(c.as_ptr()) }
    }

    /// Stores one lane group.
    #[inline(always)]
    pub(super) fn store(c: &mut [f32; LANES], v: __m256) {
        // SAFETY: as for `load`.
        unsafe { _mm256_storeu_ps(c.as_mut_ptr(), v) }
    }

    #[inline(always)]
    pub(super) fn lanes(v: __m256) -> [f32; LANES] {
        let mut out = [0.0f32; LANES];
        store(&mut out, v);
        out
    }

    /// `x` in all eight lanes.
    #[inline(always)]
    fn splat(x: f32) -> __m256 {
        // SAFETY: plain register setup; only called from AVX2 functions.
        unsafe { _mm256_set1_ps(x) }
    }

    /// `acc + x·y`, rounded once (fused), like the portable loop's `f32::mul_add`.
    #[inline(always)]
    fn mul_add(acc: __m256, x: __m256, y: __m256) -> __m256 {
        // SAFETY: plain arithmetic; only called from functions compiled with AVX2 and FMA.
        unsafe { _mm256_fmadd_ps(x, y, acc) }
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) fn affine(x: &[f32], wt: &[f32], b: &[f32], out: &mut [f32]) {
        let kc = wt.len() / b.len().max(1) / LANES;
        // Up to 64 inputs (W1 has 60) are eight lane groups: with the count a constant, the
        // compiler unrolls the products fully.
        if kc == 8 {
            affine_groups(x, wt, b, out, 8)
        } else {
            affine_groups(x, wt, b, out, kc)
        }
    }

    /// [`affine`] for rows of `kc` lane groups.
    #[inline(always)]
    fn affine_groups(x: &[f32], wt: &[f32], b: &[f32], out: &mut [f32], kc: usize) {
        let m = b.len();
        let w = wt.as_chunks::<LANES>().0;
        let rows = out.chunks_exact_mut(padded(m));
        for (xc, oi) in x.as_chunks::<LANES>().0.chunks_exact(kc).zip(rows) {
            // Up to eight outputs at a time: one load of x feeds eight products, and the
            // eight lane-sum reductions share their shuffles.
            for j in (0..m).step_by(8) {
                let g = (m - j).min(8);
                let (wg, bg, og) = (&w[j * kc..(j + g) * kc], &b[j..j + g], &mut oi[j..j + g]);
                match g {
                    8 => outputs::<8>(xc, wg, bg, og),
                    7 => outputs::<7>(xc, wg, bg, og),
                    6 => outputs::<6>(xc, wg, bg, og),
                    5 => outputs::<5>(xc, wg, bg, og),
                    4 => outputs::<4>(xc, wg, bg, og),
                    3 => outputs::<3>(xc, wg, bg, og),
                    2 => outputs::<2>(xc, wg, bg, og),
                    _ => outputs::<1>(xc, wg, bg, og),
                }
            }
        }
    }

    /// `G ≤ 8` outputs of one row: `x` (one row, `kc` lane groups) against `w` (`G` rows of
    /// `kc` lane groups), plus `b`.
    #[inline(always)]
    fn outputs<const G: usize>(x: &[[f32; LANES]], w: &[[f32; LANES]], b: &[f32], o: &mut [f32]) {
        let kc = x.len();
        assert!(w.len() == G * kc && b.len() == G && o.len() == G);
        // SAFETY: plain register setup; only called from AVX2 functions.
        let mut acc = [unsafe { _mm256_setzero_ps() }; 8];
        for (c, xv) in x.iter().enumerate() {
            let xv = load(xv);
            for (q, a) in acc.iter_mut().enumerate().take(G) {
                // SAFETY: q < G and c < kc, so q·kc + c < G·kc = w.len() (asserted above).
                *a = mul_add(*a, xv, load(unsafe { w.get_unchecked(q * kc + c) }));
            }
        }
        let sums = lanes(reduce8(acc));
        for ((o, s), b) in o.iter_mut().zip(sums).zip(b) {
            *o = s + b;
        }
    }

    /// [`super::reduce`] of eight outputs' lane sums at once, each in the same order of
    /// additions: lanes `l` and `l + 4`, then quads 0 + 2 and 1 + 3, then those two. Returns
    /// the eight sums in output order.
    #[inline(always)]
    pub(super) fn reduce8(a: [__m256; 8]) -> __m256 {
        // h0 holds outputs 0, 2 in its low half and 1, 3 in its high half; h1 likewise 4, 6
        // and 5, 7.
        let h0 = halves(quads(a[0], a[1]), quads(a[2], a[3]));
        let h1 = halves(quads(a[4], a[5]), quads(a[6], a[7]));
        // SAFETY: shuffles and adds on registers; only called from AVX2 functions.
        unsafe {
            let sums = _mm256_add_ps(
                _mm256_shuffle_ps::<0x88>(h0, h1),
                _mm256_shuffle_ps::<0xDD>(h0, h1),
            );
            // Lanes now hold outputs 0, 2, 4, 6 | 1, 3, 5, 7: put them in order.
            _mm256_permutevar8x32_ps(sums, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7))
        }
    }

    /// `[x.lo + x.hi | y.lo + y.hi]`: two outputs' quads (lane `l` plus lane `l + 4`).
    #[inline(always)]
    fn quads(x: __m256, y: __m256) -> __m256 {
        // SAFETY: as for `reduce8`.
        unsafe {
            _mm256_add_ps(
                _mm256_permute2f128_ps::<0x20>(x, y),
                _mm256_permute2f128_ps::<0x31>(x, y),
            )
        }
    }

    /// Per 128-bit half: `[x.q0 + x.q2, x.q1 + x.q3, y.q0 + y.q2, y.q1 + y.q3]`.
    #[inline(always)]
    fn halves(x: __m256, y: __m256) -> __m256 {
        // SAFETY: as for `reduce8`.
        unsafe {
            _mm256_add_ps(
                _mm256_shuffle_ps::<0x44>(x, y),
                _mm256_shuffle_ps::<0xEE>(x, y),
            )
        }
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) fn affine_step(x: &[f32], g: &[f32], s: f32, wt: &mut [f32], b: &mut [f32]) {
        let kc = wt.len() / b.len().max(1) / LANES;
        // As in `affine`: eight lane groups, a constant, unroll.
        if kc == 8 {
            step_groups(x, g, s, wt, b, 8)
        } else {
            step_groups(x, g, s, wt, b, kc)
        }
    }

    /// [`affine_step`] for rows of `kc` lane groups.
    #[inline(always)]
    fn step_groups(x: &[f32], g: &[f32], s: f32, wt: &mut [f32], b: &mut [f32], kc: usize) {
        let mp = padded(b.len());
        let n = g.len() / mp.max(1);
        let xs = x.as_chunks::<LANES>().0;
        let wc = wt.as_chunks_mut::<LANES>().0;
        let (mut stack, mut heap) = ([0.0; STEP_ROWS], Vec::new());
        let a = super::step_buffer(&mut stack, &mut heap, n);
        for (j, (wj, bj)) in wc.chunks_exact_mut(kc).zip(b.iter_mut()).enumerate() {
            // Sample i's step on output j, rounded as the portable loop rounds it.
            for (i, ai) in a.iter_mut().enumerate() {
                *ai = s * g[i * mp + j];
            }
            // Eight lane groups of w_j stay in registers while every sample adds to them.
            let (blocks, rest) = wj.as_chunks_mut::<8>();
            for (c0, block) in blocks.iter_mut().enumerate().map(|(q, b)| (q * 8, b)) {
                let mut acc = block.map(|w| load(&w));
                for (ai, xi) in a.iter().zip(xs.chunks_exact(kc)) {
                    let ai = splat(*ai);
                    for (v, xv) in acc.iter_mut().zip(&xi[c0..c0 + 8]) {
                        *v = mul_add(*v, ai, load(xv));
                    }
                }
                for (v, w) in acc.iter().zip(block.iter_mut()) {
                    store(w, *v);
                }
            }
            let c0 = blocks.len() * 8;
            for (q, w) in rest.iter_mut().enumerate() {
                let mut v = load(w);
                for (ai, xi) in a.iter().zip(xs.chunks_exact(kc)) {
                    v = mul_add(v, splat(*ai), load(&xi[c0 + q]));
                }
                store(w, v);
            }
            *bj = a.iter().fold(*bj, |sum, ai| sum + ai);
        }
    }

    /// [`super::exp`] on eight lanes: the same operations in the same order.
    #[target_feature(enable = "avx2,fma")]
    fn exp8(x: __m256) -> __m256 {
        use super::expc::*;
        let (lo, hi) = (_mm256_set1_ps(LO), _mm256_set1_ps(HI));
        // Lanes outside [LO, HI] (or NaN) are computed on a clamped value, then replaced.
        let c = _mm256_min_ps(_mm256_max_ps(x, lo), hi);
        let n = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
            _mm256_mul_ps(c, _mm256_set1_ps(LOG2E)),
        );
        let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_HI), c);
        let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_LO), r);
        let mut y = _mm256_set1_ps(P[0]);
        for p in &P[1..] {
            y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(*p));
        }
        let y = _mm256_add_ps(
            _mm256_fmadd_ps(y, _mm256_mul_ps(r, r), r),
            _mm256_set1_ps(1.0),
        );
        let bits = _mm256_slli_epi32::<23>(_mm256_add_epi32(
            _mm256_cvtps_epi32(n),
            _mm256_set1_epi32(127),
        ));
        let e = _mm256_mul_ps(y, _mm256_castsi256_ps(bits));
        let e = _mm256_blendv_ps(e, _mm256_setzero_ps(), _mm256_cmp_ps::<_CMP_LT_OQ>(x, lo));
        let big = _mm256_cmp_ps::<_CMP_NLE_UQ>(x, hi);
        _mm256_blendv_ps(e, _mm256_add_ps(x, _mm256_set1_ps(f32::INFINITY)), big)
    }

    #[cfg(test)]
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn exp_in_place(v: &mut [f32]) {
        let (groups, rest) = v.as_chunks_mut::<LANES>();
        for g in groups {
            store(g, exp8(load(g)));
        }
        if !rest.is_empty() {
            let mut g = [0.0; LANES];
            g[..rest.len()].copy_from_slice(rest);
            let e = exp8(load(&g));
            store(&mut g, e);
            rest.copy_from_slice(&g[..rest.len()]);
        }
    }

    /// [`super::pad_rows`] one lane group at a time, each loaded under a mask that reads zeros
    /// past the row's end: a short row's libc memcpy and memset calls cost more than the
    /// copying itself. (With plain loads for the whole groups, the compiler turns the loop back
    /// into a memcpy call.)
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn pad_rows(x: &[f32], k: usize, out: &mut Vec<f32>) {
        let kp = padded(k);
        let rows = x.len() / k;
        let lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        let dst = &mut out.spare_capacity_mut()[..rows * kp];
        for (src, row) in x.chunks_exact(k).zip(dst.chunks_exact_mut(kp)) {
            let at = row.as_mut_ptr().cast::<f32>();
            for q in 0..kp / LANES {
                // Lanes still inside the row: all eight but in its last group.
                let mask = _mm256_cmpgt_epi32(_mm256_set1_epi32((k - q * LANES) as i32), lane);
                // SAFETY: the mask reads only lanes q·8 + l < k, inside `src`; group q of a
                // row of kp = (kp / 8)·8 floats is inside `row`.
                unsafe {
                    let v = _mm256_maskload_ps(src.as_ptr().add(q * LANES), mask);
                    _mm256_storeu_ps(at.add(q * LANES), v);
                }
            }
        }
        // SAFETY: every float of the first rows·kp spare slots was written above.
        unsafe { out.set_len(out.len() + rows * kp) };
    }

    /// [`super::scaled_rows`] a lane group at a time, loaded under a mask that reads zeros past
    /// the row's end, so the padding comes out `0 + 0·0 = 0`.
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn scaled_rows(z: &[f64], mean: &[f32], std: &[f32], out: &mut Vec<f32>) {
        let (k, kp) = (mean.len(), padded(mean.len()));
        let rows = z.len() / k;
        let lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        let dst = &mut out.spare_capacity_mut()[..rows * kp];
        for (src, row) in z.chunks_exact(k).zip(dst.chunks_exact_mut(kp)) {
            let at = row.as_mut_ptr().cast::<f32>();
            for q in 0..kp / LANES {
                // Lanes still inside the row, and the same as masks of f64 lanes.
                let mask = _mm256_cmpgt_epi32(_mm256_set1_epi32((k - q * LANES) as i32), lane);
                let lo_mask = _mm256_cvtepi32_epi64(_mm256_castsi256_si128(mask));
                let hi_mask = _mm256_cvtepi32_epi64(_mm256_extracti128_si256::<1>(mask));
                // SAFETY: the masks read only lanes q·8 + l < k, inside `src`, `mean` and
                // `std`; group q of a row of kp = (kp / 8)·8 floats is inside `row`.
                unsafe {
                    let p = src.as_ptr().add(q * LANES);
                    let lo = _mm256_cvtpd_ps(_mm256_maskload_pd(p, lo_mask));
                    let hi = _mm256_cvtpd_ps(_mm256_maskload_pd(p.add(4), hi_mask));
                    let z = _mm256_set_m128(hi, lo);
                    let m = _mm256_maskload_ps(mean.as_ptr().add(q * LANES), mask);
                    let s = _mm256_maskload_ps(std.as_ptr().add(q * LANES), mask);
                    _mm256_storeu_ps(at.add(q * LANES), _mm256_add_ps(m, _mm256_mul_ps(s, z)));
                }
            }
        }
        // SAFETY: every float of the first rows·kp spare slots was written above.
        unsafe { out.set_len(out.len() + rows * kp) };
    }

    /// Most outputs [`softmax_rows`] keeps in registers; wider rows take the portable loop.
    const SOFTMAX_MAX: usize = 2 * LANES;

    #[target_feature(enable = "avx2,fma")]
    pub(super) fn softmax_rows(out: &mut [f32], m: usize) {
        softmax_rows_inline(out, m)
    }

    /// [`softmax_rows`], to be compiled into callers with more registers too.
    #[inline(always)]
    pub(super) fn softmax_rows_inline(out: &mut [f32], m: usize) {
        let mp = padded(m);
        if m == 0 || m > SOFTMAX_MAX {
            return super::portable::softmax_rows(out, m);
        }
        // SAFETY: register arithmetic and the loads and stores of `rows8` and `put_rows8`;
        // only inlined into functions compiled with AVX2 and FMA.
        unsafe {
            let whole = out.len() / (8 * mp) * 8 * mp;
            let (blocks, rest) = out.split_at_mut(whole);
            let zero = _mm256_setzero_ps();
            for block in blocks.chunks_exact_mut(8 * mp) {
                // v[h][c] holds column 8h + c of the eight rows (one row per lane); columns past
                // the row's stride stay zero.
                let mut v = [[zero; LANES]; 2];
                for (h, half) in v.iter_mut().enumerate().take(mp / LANES) {
                    *half = transpose8(rows8(block, mp, h));
                }
                let mut max = _mm256_set1_ps(f32::NEG_INFINITY);
                for c in v.as_flattened().iter().take(m) {
                    // `v > max ? v : max`, lane by lane: the portable loop's test.
                    max = _mm256_max_ps(*c, max);
                }
                let mut sum = zero;
                for c in v.as_flattened_mut().iter_mut().take(m) {
                    *c = exp8(_mm256_sub_ps(*c, max));
                    sum = _mm256_add_ps(sum, *c);
                }
                let inv = _mm256_div_ps(_mm256_set1_ps(1.0), sum);
                for (j, c) in v.as_flattened_mut().iter_mut().enumerate() {
                    // The padding columns go back as zeros.
                    *c = if j < m { _mm256_mul_ps(*c, inv) } else { zero };
                }
                for (h, half) in v.iter().enumerate().take(mp / LANES) {
                    put_rows8(block, mp, h, transpose8(*half));
                }
            }
            super::portable::softmax_rows(rest, m);
        }
    }

    /// Lane group `h` of each of the eight rows (stride `mp`) in `block`.
    #[inline(always)]
    fn rows8(block: &[f32], mp: usize, h: usize) -> [__m256; 8] {
        let mut rows = [splat(0.0); 8];
        for (r, v) in rows.iter_mut().enumerate() {
            let at = r * mp + h * LANES;
            *v = load(block[at..at + LANES].try_into().expect("eight lanes"));
        }
        rows
    }

    /// The inverse of [`rows8`].
    #[inline(always)]
    fn put_rows8(block: &mut [f32], mp: usize, h: usize, rows: [__m256; 8]) {
        for (r, v) in rows.iter().enumerate() {
            let at = r * mp + h * LANES;
            store(
                (&mut block[at..at + LANES])
                    .try_into()
                    .expect("eight lanes"),
                *v,
            );
        }
    }

    /// [`super::transpose`] in 8×8 blocks. A block that overhangs the matrix loads only its
    /// rows and columns inside it (the rest read as zeros and are never stored) and stores
    /// only those. The caller checks that the matrix lies in `src` and `out`.
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn transpose(
        src: &[f32],
        src_stride: usize,
        (rows, cols): (usize, usize),
        out: &mut [f32],
        out_stride: usize,
    ) {
        let lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        let first = |n: usize| _mm256_cmpgt_epi32(_mm256_set1_epi32(n.min(LANES) as i32), lane);
        for i in (0..rows).step_by(LANES) {
            let (h, hmask) = ((rows - i).min(LANES), first(rows - i));
            for j in (0..cols).step_by(LANES) {
                let (w, wmask) = ((cols - j).min(LANES), first(cols - j));
                let block: [__m256; LANES] = std::array::from_fn(|q| match q < h {
                    // SAFETY: row i + q < rows, and the mask reads columns j.. < cols only.
                    true => unsafe {
                        _mm256_maskload_ps(src.as_ptr().add((i + q) * src_stride + j), wmask)
                    },
                    false => _mm256_setzero_ps(),
                });
                for (q, v) in transpose8(block).into_iter().enumerate().take(w) {
                    // SAFETY: row j + q < cols, and the mask writes columns i.. < rows only.
                    unsafe {
                        _mm256_maskstore_ps(
                            out.as_mut_ptr().add((j + q) * out_stride + i),
                            hmask,
                            v,
                        )
                    };
                }
            }
        }
    }

    /// An 8×8 transpose: lane `k` of register `i` becomes lane `i` of register `k`.
    #[inline(always)]
    fn transpose8(r: [__m256; 8]) -> [__m256; 8] {
        // SAFETY: shuffles on registers; only called from AVX2 functions.
        unsafe {
            // Pairs of rows interleaved: t0 holds rows 0, 1 at lanes 0, 1 | 4, 5; t1 the same at
            // lanes 2, 3 | 6, 7.
            let t0 = _mm256_unpacklo_ps(r[0], r[1]);
            let t1 = _mm256_unpackhi_ps(r[0], r[1]);
            let t2 = _mm256_unpacklo_ps(r[2], r[3]);
            let t3 = _mm256_unpackhi_ps(r[2], r[3]);
            let t4 = _mm256_unpacklo_ps(r[4], r[5]);
            let t5 = _mm256_unpackhi_ps(r[4], r[5]);
            let t6 = _mm256_unpacklo_ps(r[6], r[7]);
            let t7 = _mm256_unpackhi_ps(r[6], r[7]);
            // qk holds lane k (low half) and k + 4 (high half) of rows 0-3; q(k + 4) of rows
            // 4-7.
            let q0 = _mm256_shuffle_ps::<0x44>(t0, t2);
            let q1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
            let q2 = _mm256_shuffle_ps::<0x44>(t1, t3);
            let q3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
            let q4 = _mm256_shuffle_ps::<0x44>(t4, t6);
            let q5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
            let q6 = _mm256_shuffle_ps::<0x44>(t5, t7);
            let q7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
            [
                _mm256_permute2f128_ps::<0x20>(q0, q4),
                _mm256_permute2f128_ps::<0x20>(q1, q5),
                _mm256_permute2f128_ps::<0x20>(q2, q6),
                _mm256_permute2f128_ps::<0x20>(q3, q7),
                _mm256_permute2f128_ps::<0x31>(q0, q4),
                _mm256_permute2f128_ps::<0x31>(q1, q5),
                _mm256_permute2f128_ps::<0x31>(q2, q6),
                _mm256_permute2f128_ps::<0x31>(q3, q7),
            ]
        }
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) fn backprop(g: &[f32], wt: &[f32], m: usize, out: &mut [f32]) {
        let kc = wt.len() / m.max(1) / LANES;
        let w = wt.as_chunks::<LANES>().0;
        let rows = out.as_chunks_mut::<LANES>().0.chunks_exact_mut(kc);
        for (gi, oi) in g.chunks_exact(padded(m)).zip(rows) {
            for (c, oc) in oi.iter_mut().enumerate() {
                let mut acc = _mm256_setzero_ps();
                for (j, gij) in gi[..m].iter().enumerate() {
                    acc = mul_add(acc, _mm256_set1_ps(*gij), load(&w[j * kc + c]));
                }
                store(oc, acc);
            }
        }
    }
}

/// [`affine`] two rows at a time: each 512-bit register holds one lane group of two rows, so
/// one multiply-add (and one shuffle of the reduction) does the work of two AVX2 ones. Every
/// lane sees the same products in the same order as in [`avx2`], and each output's lane sums
/// are added in [`avx2::reduce8`]'s order, only in other lanes of the register: the same
/// bits. [`affine_step`] likewise updates two outputs' weights per register.
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::{
        __m512, _mm256_set1_ps, _mm512_add_ps, _mm512_broadcast_f32x8, _mm512_castps256_ps512,
        _mm512_castps512_ps256, _mm512_extractf32x8_ps, _mm512_fmadd_ps, _mm512_insertf32x8,
        _mm512_loadu_ps, _mm512_permutexvar_ps, _mm512_set1_ps, _mm512_setr_epi32,
        _mm512_setzero_ps, _mm512_shuffle_f32x4, _mm512_shuffle_ps, _mm512_storeu_ps,
    };

    use super::avx2::{lanes, load, store};
    use super::{padded, LANES, STEP_ROWS};

    #[target_feature(enable = "avx512f,avx512dq,avx2,fma")]
    pub(super) fn affine_step(x: &[f32], g: &[f32], s: f32, wt: &mut [f32], b: &mut [f32]) {
        let kc = wt.len() / b.len().max(1) / LANES;
        match kc {
            0 => super::avx2::affine_step(x, g, s, wt, b),
            8 => step_pairs(x, g, s, wt, b, 8),
            _ => step_pairs(x, g, s, wt, b, kc),
        }
    }

    /// [`affine_step`] for rows of `kc ≥ 1` lane groups, outputs two at a time; an odd last
    /// output shares its registers with a scratch one that is thrown away.
    #[inline(always)]
    fn step_pairs(x: &[f32], g: &[f32], s: f32, wt: &mut [f32], b: &mut [f32], kc: usize) {
        let (m, mp) = (b.len(), padded(b.len()));
        let n = g.len() / mp.max(1);
        let xs = x.as_chunks::<LANES>().0;
        let wc = wt.as_chunks_mut::<LANES>().0;
        let (mut stack, mut heap) = ([(0.0, 0.0); STEP_ROWS], Vec::new());
        let a = super::step_buffer(&mut stack, &mut heap, n);
        // Only an odd output count needs the scratch partner.
        let mut spare = (vec![[0.0; LANES]; if m % 2 == 1 { kc } else { 0 }], 0.0);
        for j in (0..m).step_by(2) {
            // Sample i's steps on outputs j and j + 1, rounded as the portable loop rounds them.
            for (i, ai) in a.iter_mut().enumerate() {
                let gi = &g[i * mp..];
                *ai = (s * gi[j], if j + 1 < m { s * gi[j + 1] } else { 0.0 });
            }
            let (w0, w1) = wc[j * kc..].split_at_mut(kc);
            let (b0, b1) = b[j..].split_at_mut(1);
            let (w1, b1) = match (j + 1 < m, b1.first_mut()) {
                (true, Some(b1)) => (&mut w1[..kc], b1),
                _ => (&mut spare.0[..], &mut spare.1),
            };
            if kc.is_multiple_of(2) {
                two_outputs_wide(x, a, [w0.as_flattened_mut(), w1.as_flattened_mut()], kc);
            } else {
                two_outputs(xs, a, [w0, w1], kc);
            }
            // Summed in registers and stored once (summed in place, each add waited for the
            // previous store: ~40% of this kernel's time).
            let (mut s0, mut s1) = (b0[0], *b1);
            for (a0, a1) in a.iter() {
                s0 += a0;
                s1 += a1;
            }
            (b0[0], *b1) = (s0, s1);
        }
    }

    /// Adds every sample's steps `a[i]` times its inputs to two outputs' weights, eight lane
    /// groups at a time held in registers (output 0 low, output 1 high).
    #[inline(always)]
    fn two_outputs(xs: &[[f32; LANES]], a: &[(f32, f32)], w: [&mut [[f32; LANES]]; 2], kc: usize) {
        let [w0, w1] = w;
        // SAFETY: register arithmetic, and loads and stores of the slices in hand; only called
        // from functions compiled with AVX-512F/DQ.
        unsafe {
            for c0 in (0..kc).step_by(8) {
                let len = (kc - c0).min(8);
                let mut acc: [__m512; 8] = [_mm512_setzero_ps(); 8];
                for (q, v) in acc.iter_mut().enumerate().take(len) {
                    *v = _mm512_insertf32x8::<1>(
                        _mm512_castps256_ps512(load(&w0[c0 + q])),
                        load(&w1[c0 + q]),
                    );
                }
                for (xi, &(a0, a1)) in xs.chunks_exact(kc).zip(a) {
                    let av = _mm512_insertf32x8::<1>(_mm512_set1_ps(a0), _mm256_set1_ps(a1));
                    for (v, xv) in acc.iter_mut().zip(&xi[c0..c0 + len]) {
                        *v = _mm512_fmadd_ps(av, _mm512_broadcast_f32x8(load(xv)), *v);
                    }
                }
                for (q, v) in acc.iter().enumerate().take(len) {
                    store(&mut w0[c0 + q], _mm512_castps512_ps256(*v));
                    store(&mut w1[c0 + q], _mm512_extractf32x8_ps::<1>(*v));
                }
            }
        }
    }

    /// [`two_outputs`] for rows of an even number of lane groups: each output's weights in
    /// its own registers of sixteen inputs, so a sample's two steps are broadcast straight
    /// from memory rather than put together in one register (three shuffles a sample and
    /// output pair, on the port the multiply-adds need). Four registers per output, eight
    /// multiply-add chains in flight. Each weight still adds its samples' steps one after
    /// another with one fused multiply-add each: the same bits.
    // Register q pairs with the weights and inputs at (z0 + q)·16: indexing says it plainest.
    #[allow(clippy::needless_range_loop)]
    #[inline(always)]
    fn two_outputs_wide(x: &[f32], a: &[(f32, f32)], w: [&mut [f32]; 2], kc: usize) {
        const WIDE: usize = 2 * LANES;
        const BLOCK: usize = 4;
        let [w0, w1] = w;
        let stride = kc * LANES;
        // SAFETY: register arithmetic, and loads and stores of the slices in hand (register q
        // of a block covers inputs (z0 + q)·16 .. + 16 < stride, inside every row and both
        // weight rows); only called from functions compiled with AVX-512F/DQ.
        unsafe {
            for z0 in (0..kc / 2).step_by(BLOCK) {
                let len = (kc / 2 - z0).min(BLOCK);
                let at = |q: usize| (z0 + q) * WIDE;
                let mut acc = [[_mm512_setzero_ps(); BLOCK]; 2];
                for q in 0..len {
                    acc[0][q] = _mm512_loadu_ps(w0.as_ptr().add(at(q)));
                    acc[1][q] = _mm512_loadu_ps(w1.as_ptr().add(at(q)));
                }
                for (xi, &(a0, a1)) in x.chunks_exact(stride).zip(a) {
                    let (a0, a1) = (_mm512_set1_ps(a0), _mm512_set1_ps(a1));
                    for q in 0..len {
                        let xv = _mm512_loadu_ps(xi.as_ptr().add(at(q)));
                        acc[0][q] = _mm512_fmadd_ps(a0, xv, acc[0][q]);
                        acc[1][q] = _mm512_fmadd_ps(a1, xv, acc[1][q]);
                    }
                }
                for q in 0..len {
                    _mm512_storeu_ps(w0.as_mut_ptr().add(at(q)), acc[0][q]);
                    _mm512_storeu_ps(w1.as_mut_ptr().add(at(q)), acc[1][q]);
                }
            }
        }
    }

    /// The AVX2 [`softmax_rows`](super::avx2::softmax_rows), the same instructions and bits,
    /// with AVX-512VL's sixteen more vector registers for its eight rows' columns, maximum,
    /// sum and `exp` constants, which spilled to the stack with sixteen (with the constant
    /// class count below, ~22% off the kernel's time in W1).
    #[target_feature(enable = "avx512f,avx512dq,avx512vl,avx2,fma")]
    pub(super) fn softmax_rows(out: &mut [f32], m: usize) {
        // W1's ten classes as a constant, so the column loops unroll and stay in registers.
        match m {
            10 => super::avx2::softmax_rows_inline(out, 10),
            _ => super::avx2::softmax_rows_inline(out, m),
        }
    }

    #[target_feature(enable = "avx512f,avx512dq,avx2,fma")]
    pub(super) fn affine(x: &[f32], wt: &[f32], b: &[f32], out: &mut [f32]) {
        let kc = wt.len() / b.len().max(1) / LANES;
        // As in the AVX2 kernel: W1's eight lane groups as a constant, so the loops unroll.
        match kc {
            0 => super::avx2::affine(x, wt, b, out),
            8 => row_pairs(x, wt, b, out, 8),
            _ => row_pairs(x, wt, b, out, kc),
        }
    }

    /// [`affine`] for rows of `kc ≥ 1` lane groups: pairs of rows, then an odd last row on
    /// the AVX2 kernel.
    #[inline(always)]
    fn row_pairs(x: &[f32], wt: &[f32], b: &[f32], out: &mut [f32], kc: usize) {
        let (m, mp) = (b.len(), padded(b.len()));
        let w = wt.as_chunks::<LANES>().0;
        let xs = x.as_chunks::<LANES>().0;
        let rows = (xs.len() / kc).min(out.len() / mp.max(1));
        for (xp, op) in xs
            .chunks_exact(2 * kc)
            .zip(out.chunks_exact_mut(2 * mp))
            .take(rows / 2)
        {
            let (x0, x1) = xp.split_at(kc);
            let (o0, o1) = op.split_at_mut(mp);
            for j in (0..m).step_by(8) {
                let g = (m - j).min(8);
                let (wg, bg) = (&w[j * kc..(j + g) * kc], &b[j..j + g]);
                let (o0, o1) = (&mut o0[j..j + g], &mut o1[j..j + g]);
                match g {
                    8 => outputs::<8>([x0, x1], wg, bg, [o0, o1]),
                    7 => outputs::<7>([x0, x1], wg, bg, [o0, o1]),
                    6 => outputs::<6>([x0, x1], wg, bg, [o0, o1]),
                    5 => outputs::<5>([x0, x1], wg, bg, [o0, o1]),
                    4 => outputs::<4>([x0, x1], wg, bg, [o0, o1]),
                    3 => outputs::<3>([x0, x1], wg, bg, [o0, o1]),
                    2 => outputs::<2>([x0, x1], wg, bg, [o0, o1]),
                    _ => outputs::<1>([x0, x1], wg, bg, [o0, o1]),
                }
            }
        }
        if rows % 2 == 1 {
            let last = rows - 1;
            // SAFETY: this function is only compiled into AVX-512 (so AVX2 and FMA) callers.
            unsafe {
                super::avx2::affine(
                    &x[last * kc * LANES..rows * kc * LANES],
                    wt,
                    b,
                    &mut out[last * mp..rows * mp],
                )
            }
        }
    }

    /// [`avx2::reduce8`](super::avx2::reduce8) of two rows' accumulators at once: `a[q]` holds
    /// output `q`'s lane sums, row 0 in the low 256 bits and row 1 in the high. Returns the
    /// eight sums of row 0, then those of row 1.
    #[inline(always)]
    fn reduce8x2(a: [__m512; 8]) -> __m512 {
        // SAFETY: shuffles and adds on registers; only called from AVX-512 functions.
        unsafe {
            // 128-bit lanes of each a[q]: row 0 low, row 0 high, row 1 low, row 1 high.
            // quads(x, y): lanes [x r0, x r1, y r0, y r1], each lane l + lane l + 4.
            let quads = |x: __m512, y: __m512| {
                _mm512_add_ps(
                    _mm512_shuffle_f32x4::<0x88>(x, y),
                    _mm512_shuffle_f32x4::<0xDD>(x, y),
                )
            };
            // Per 128-bit lane: [x0 + x2, x1 + x3, y0 + y2, y1 + y3].
            let halves = |x: __m512, y: __m512| {
                _mm512_add_ps(
                    _mm512_shuffle_ps::<0x44>(x, y),
                    _mm512_shuffle_ps::<0xEE>(x, y),
                )
            };
            let h0 = halves(quads(a[0], a[1]), quads(a[2], a[3]));
            let h1 = halves(quads(a[4], a[5]), quads(a[6], a[7]));
            // Lanes: [0 2 4 6 of r0 | 0 2 4 6 of r1 | 1 3 5 7 of r0 | 1 3 5 7 of r1].
            let sums = _mm512_add_ps(
                _mm512_shuffle_ps::<0x88>(h0, h1),
                _mm512_shuffle_ps::<0xDD>(h0, h1),
            );
            let order = _mm512_setr_epi32(0, 8, 1, 9, 2, 10, 3, 11, 4, 12, 5, 13, 6, 14, 7, 15);
            _mm512_permutexvar_ps(order, sums)
        }
    }

    /// `G ≤ 8` outputs of two rows, as the AVX2 kernel's `outputs` computes them for each.
    #[inline(always)]
    fn outputs<const G: usize>(
        x: [&[[f32; LANES]]; 2],
        w: &[[f32; LANES]],
        b: &[f32],
        o: [&mut [f32]; 2],
    ) {
        let kc = x[0].len();
        assert!(x[1].len() == kc && w.len() == G * kc && b.len() == G);
        // SAFETY: register arithmetic and loads from the slices in hand; only called from
        // functions compiled with AVX-512F/DQ.
        unsafe {
            let mut acc: [__m512; 8] = [_mm512_setzero_ps(); 8];
            for (c, (x0, x1)) in x[0].iter().zip(x[1]).enumerate() {
                let xv = _mm512_insertf32x8::<1>(_mm512_castps256_ps512(load(x0)), load(x1));
                for (q, a) in acc.iter_mut().enumerate().take(G) {
                    // q < G and c < kc, so q·kc + c < G·kc = w.len() (asserted above).
                    let wv = _mm512_broadcast_f32x8(load(w.get_unchecked(q * kc + c)));
                    *a = _mm512_fmadd_ps(xv, wv, *a);
                }
            }
            let sums = reduce8x2(acc);
            let lo = lanes(_mm512_castps512_ps256(sums));
            let hi = lanes(_mm512_extractf32x8_ps::<1>(sums));
            for (o, sums) in o.into_iter().zip([lo, hi]) {
                for ((o, s), b) in o.iter_mut().zip(sums).zip(b) {
                    *o = s + b;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(n: usize, scale: f32) -> Vec<f32> {
        (0..n)
            .map(|i| ((i * 7919) % 23) as f32 * scale - 1.0)
            .collect()
    }

    /// x (n×k), wt (m×k), b and g (n×m), in the padded layout.
    fn operands(n: usize, k: usize, m: usize) -> (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>) {
        let (mut x, mut wt, mut g) = (Vec::new(), Vec::new(), Vec::new());
        pad_rows(&ramp(n * k, 0.013), k, &mut x);
        pad_rows(&ramp(m * k, 0.021), k, &mut wt);
        pad_rows(&ramp(n * m, 0.3), m, &mut g);
        (x, wt, ramp(m, 0.1), g)
    }

    #[test]
    fn kernels_match_the_plain_products() {
        // k = 13 pads to 16; m = 7 exercises both the 4-output block and the rest.
        let (n, k, m) = (5, 13, 7);
        let (kp, mp) = (padded(k), padded(m));
        let (x, wt, b, g) = operands(n, k, m);
        let mut out = vec![0.0; n * mp];
        affine(&x, &wt, &b, &mut out);
        for i in 0..n {
            for j in 0..m {
                let e: f64 = (0..k)
                    .map(|t| f64::from(x[i * kp + t]) * f64::from(wt[j * kp + t]))
                    .sum::<f64>()
                    + f64::from(b[j]);
                assert!((f64::from(out[i * mp + j]) - e).abs() < 1e-4);
            }
        }

        let mut back = vec![0.0; n * kp];
        backprop(&g, &wt, m, &mut back);
        for i in 0..n {
            for t in 0..kp {
                let e: f32 = (0..m).map(|j| g[i * mp + j] * wt[j * kp + t]).sum();
                assert!((back[i * kp + t] - e).abs() < 1e-4);
            }
        }

        let (mut w2, mut b2) = (wt.clone(), b.clone());
        affine_step(&x, &g, -0.5, &mut w2, &mut b2);
        for j in 0..m {
            for t in 0..kp {
                let e: f32 = (0..n).map(|i| g[i * mp + j] * x[i * kp + t]).sum();
                assert!((w2[j * kp + t] - (wt[j * kp + t] - 0.5 * e)).abs() < 1e-4);
            }
            let eb: f32 = (0..n).map(|i| g[i * mp + j]).sum();
            assert!((b2[j] - (b[j] - 0.5 * eb)).abs() < 1e-4);
        }
    }

    #[test]
    fn exp_is_accurate_and_the_same_bits_on_both_paths() {
        let xs: Vec<f32> = (0..4001)
            .map(|i| -100.0 + i as f32 * 0.0475)
            .chain([
                0.0,
                -0.0,
                1e-8,
                -1e-8,
                88.5,
                -87.5,
                f32::NAN,
                f32::NEG_INFINITY,
            ])
            .collect();
        let mut fast = xs.clone();
        exp_in_place(&mut fast);
        for (x, e) in xs.iter().zip(&fast) {
            let slow = exp(*x);
            assert!(
                e.to_bits() == slow.to_bits() || (e.is_nan() && slow.is_nan()),
                "exp({x}): {e} vs {slow}"
            );
            if x.is_nan() {
                assert!(e.is_nan());
            } else if *x < -87.0 {
                assert_eq!(*e, 0.0);
            } else if *x <= 88.0 {
                let want = f64::from(*x).exp();
                assert!(
                    ((f64::from(*e) - want) / want).abs() < 3e-7,
                    "exp({x}) = {e}"
                );
            }
        }
        assert_eq!(exp(0.0), 1.0);
    }

    #[test]
    fn output_major_transposes_any_layout_and_pads_and_input_major_undoes_it() {
        let w = ndarray::Array2::from_shape_fn((3, 2), |(i, j)| (10 * i + j) as f32);
        let expected = [0.0, 10.0, 20.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 11.0, 21.0];
        let got = output_major(w.view());
        assert_eq!(got.len(), 2 * LANES);
        assert_eq!(&got[..11], &expected);
        assert!(got[11..].iter().all(|v| *v == 0.0));
        // A column-major array holds the same matrix.
        let f = w.t().as_standard_layout().into_owned().reversed_axes();
        assert!(f.as_slice().is_none());
        assert_eq!(output_major(f.view()), got);
        // And back, into either layout.
        let mut back = ndarray::Array2::zeros((3, 2));
        input_major(&got, &mut back.view_mut());
        assert_eq!(back, w);
        let mut back_f = ndarray::Array2::zeros((2, 3)).reversed_axes();
        input_major(&got, &mut back_f.view_mut());
        assert_eq!(back_f, w);
    }

    #[test]
    fn transpose_moves_every_element_and_touches_nothing_else() {
        // Shapes below, on and past whole 8×8 blocks, with strides wider than the rows.
        for (rows, cols) in [
            (1, 1),
            (3, 9),
            (8, 8),
            (60, 10),
            (10, 60),
            (17, 23),
            (16, 5),
        ] {
            let (ss, os) = (cols + 3, rows + 5);
            let src: Vec<f32> = (0..rows * ss).map(|v| v as f32).collect();
            let mut out = vec![-1.0; cols * os];
            transpose(&src, ss, (rows, cols), &mut out, os);
            for j in 0..cols {
                for i in 0..os {
                    let want = if i < rows { src[i * ss + j] } else { -1.0 };
                    assert_eq!(out[j * os + i], want, "{rows}×{cols} at ({j}, {i})");
                }
            }
        }
    }

    #[test]
    fn softmax_rows_are_probabilities_and_the_same_bits_on_both_paths() {
        // Row counts off and on a multiple of eight; widths through the register limit and past
        // it; rows with a NaN, an infinity and ties.
        for (n, m) in [(19, 10), (8, 3), (11, 16), (9, 17), (5, 1)] {
            let mp = padded(m);
            let mut logits = Vec::new();
            pad_rows(&ramp(n * m, 0.7), m, &mut logits);
            logits[mp] = f32::NAN;
            logits[2 * mp + m - 1] = f32::INFINITY;
            logits[3 * mp..3 * mp + m].fill(2.5);
            let (mut fast, mut slow) = (logits.clone(), logits.clone());
            softmax_rows(&mut fast, m);
            portable::softmax_rows(&mut slow, m);
            assert_eq!(bits(&fast), bits(&slow), "n={n} m={m}");
            for (i, row) in fast.chunks_exact(mp).enumerate() {
                assert!(row[m..].iter().all(|v| *v == 0.0));
                if i == 0 || i >= 4 {
                    let sum: f32 = row.iter().sum();
                    assert!((sum - 1.0).abs() < 1e-5, "row {i} sums to {sum}");
                    let top = super::super::data::argmax(&row[..m]);
                    let top_logit = super::super::data::argmax(&logits[i * mp..i * mp + m]);
                    assert_eq!(top, top_logit);
                }
            }
            if m > 1 {
                assert!(fast[3 * mp..3 * mp + m]
                    .iter()
                    .all(|p| *p == 1.0 / m as f32));
            }
        }
    }

    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|f| f.to_bits()).collect()
    }

    #[test]
    fn portable_and_dispatched_kernels_agree_bit_for_bit() {
        for (n, k, m) in [
            (16, 60, 10),
            (7, 33, 5),
            (3, 8, 64),
            (5, 130, 13),
            (9, 20, 3),
            // Even lane-group counts take the AVX-512 step's wide path: eighteen (more than
            // one block of registers) and two (one register).
            (6, 144, 7),
            (4, 16, 3),
        ] {
            let (kp, mp) = (padded(k), padded(m));
            let (x, wt, b, g) = operands(n, k, m);
            let raw = ramp(n * k, 0.013);
            let (mut fast, mut slow) = (vec![1.0; 3], Vec::new());
            pad_rows(&raw, k, &mut fast);
            portable::pad_rows(&raw, k, &mut slow);
            assert_eq!(bits(&fast), bits(&slow));
            assert_eq!(fast.len(), n * kp);

            // Draws with a per-feature mean and spread, into rows after some already there.
            let z: Vec<f64> = (0..n * k).map(|i| (i as f64 * 0.37).sin() * 3.1).collect();
            let (mean, std) = (ramp(k, -0.21), ramp(k, 0.07));
            let (mut fast, mut slow) = (vec![1.0; kp], vec![1.0; kp]);
            scaled_rows(&z, &mean, &std, &mut fast);
            portable::scaled_rows(&z, &mean, &std, &mut slow);
            assert_eq!(bits(&fast), bits(&slow));
            assert_eq!(fast.len(), (n + 1) * kp);
            assert_eq!(fast[kp + k - 1], mean[k - 1] + std[k - 1] * z[k - 1] as f32);

            let (mut fast, mut slow) = (vec![0.0; n * mp], vec![0.0; n * mp]);
            affine(&x, &wt, &b, &mut fast);
            portable::affine(&x, &wt, &b, &mut slow);
            assert_eq!(bits(&fast), bits(&slow));
            #[cfg(target_arch = "x86_64")]
            if has_avx2() {
                // The dispatch above may have taken AVX-512: check the AVX2 kernel too.
                let mut avx2 = vec![0.0; n * mp];
                // SAFETY: the CPU supports AVX2 and FMA, checked just above.
                unsafe { avx2::affine(&x, &wt, &b, &mut avx2) };
                assert_eq!(bits(&avx2), bits(&slow));
            }

            let (mut fast, mut slow) = (vec![0.0; n * kp], vec![0.0; n * kp]);
            backprop(&g, &wt, m, &mut fast);
            portable::backprop(&g, &wt, m, &mut slow);
            assert_eq!(bits(&fast), bits(&slow));

            let (mut wf, mut bf) = (wt.clone(), b.clone());
            let (mut ws, mut bs) = (wt.clone(), b.clone());
            affine_step(&x, &g, -0.05, &mut wf, &mut bf);
            portable::affine_step(&x, &g, -0.05, &mut ws, &mut bs);
            assert_eq!(bits(&wf), bits(&ws));
            assert_eq!(bits(&bf), bits(&bs));
            #[cfg(target_arch = "x86_64")]
            if has_avx2() {
                let (mut wa, mut ba) = (wt.clone(), b.clone());
                // SAFETY: the CPU supports AVX2 and FMA, checked just above.
                unsafe { avx2::affine_step(&x, &g, -0.05, &mut wa, &mut ba) };
                assert_eq!(bits(&wa), bits(&ws));
                assert_eq!(bits(&ba), bits(&bs));
            }
        }
    }
}
