//! The same kernels in AVX2 registers, blocked so each load feeds several products.

use std::arch::x86_64::{
    __m256, _mm256_add_epi32, _mm256_add_ps, _mm256_blendv_ps, _mm256_castsi256_ps,
    _mm256_castsi256_si128, _mm256_cmp_ps, _mm256_cmpgt_epi32, _mm256_cvtepi32_epi64,
    _mm256_cvtpd_ps, _mm256_cvtps_epi32, _mm256_div_ps, _mm256_extracti128_si256, _mm256_fmadd_ps,
    _mm256_fnmadd_ps, _mm256_loadu_ps, _mm256_maskload_pd, _mm256_maskload_ps, _mm256_maskstore_ps,
    _mm256_max_ps, _mm256_min_ps, _mm256_mul_ps, _mm256_permute2f128_ps, _mm256_permutevar8x32_ps,
    _mm256_round_ps, _mm256_set1_epi32, _mm256_set1_ps, _mm256_set_m128, _mm256_setr_epi32,
    _mm256_setzero_ps, _mm256_shuffle_ps, _mm256_slli_epi32, _mm256_storeu_ps, _mm256_sub_ps,
    _mm256_unpackhi_ps, _mm256_unpacklo_ps, _CMP_LT_OQ, _CMP_NLE_UQ, _MM_FROUND_NO_EXC,
    _MM_FROUND_TO_NEAREST_INT,
};

use super::{padded, LANES, STEP_ROWS};

/// Loads one lane group.
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(super) fn load(c: &[f32; LANES]) -> __m256 {
    // SAFETY: `c` is exactly the 8 f32s an unaligned load reads; only called from
    // functions compiled with AVX2.
    unsafe { _mm256_loadu_ps(c.as_ptr()) }
}

/// Stores one lane group.
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(super) fn store(c: &mut [f32; LANES], v: __m256) {
    // SAFETY: as for `load`.
    unsafe { _mm256_storeu_ps(c.as_mut_ptr(), v) }
}

#[inline]
#[target_feature(enable = "avx2,fma")]
pub(super) fn lanes(v: __m256) -> [f32; LANES] {
    let mut out = [0.0f32; LANES];
    store(&mut out, v);
    out
}

/// `x` in all eight lanes.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn splat(x: f32) -> __m256 {
    _mm256_set1_ps(x)
}

/// `acc + x·y`, rounded once (fused), like the portable loop's `f32::mul_add`.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn mul_add(acc: __m256, x: __m256, y: __m256) -> __m256 {
    _mm256_fmadd_ps(x, y, acc)
}

#[target_feature(enable = "avx2,fma")]
pub(super) fn affine(x: &[f32], wt: &[f32], b: &[f32], out: &mut [f32]) {
    let kc = wt.len() / b.len().max(1) / LANES;
    // Up to 64 inputs (W1 has 60) are eight lane groups: with the count a constant, the
    // compiler unrolls the products fully.
    if kc == 8 {
        affine_groups::<8>(x, wt, b, out, 8)
    } else {
        affine_groups::<0>(x, wt, b, out, kc)
    }
}

/// `G ≤ 8` outputs of one row: `x` (one row, `kc` lane groups) against `w` (`G` rows of
/// `kc` lane groups), plus `b`.
/// A macro rather than a function so that it is expanded inside its caller, which is
/// compiled with AVX2 and FMA: a `#[target_feature]` function cannot be forced inline.
macro_rules! outputs {
    ($g:literal, $x:expr, $w:expr, $b:expr, $o:expr) => {{
        const G: usize = $g;
        let (x, w, b, o) = ($x, $w, $b, $o);

        let kc = x.len();
        assert!(w.len() == G * kc && b.len() == G && o.len() == G);
        let mut acc = [{ _mm256_setzero_ps() }; 8];
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
    }};
}

/// [`affine`] for rows of `kc` lane groups.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn affine_groups<const K: usize>(x: &[f32], wt: &[f32], b: &[f32], out: &mut [f32], kc: usize) {
    // K, when not 0, is `kc` as a constant: each caller's size gets its own
    // compiled copy, whether or not this is inlined.
    let kc = if K == 0 { kc } else { K };
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
                8 => outputs!(8, xc, wg, bg, og),
                7 => outputs!(7, xc, wg, bg, og),
                6 => outputs!(6, xc, wg, bg, og),
                5 => outputs!(5, xc, wg, bg, og),
                4 => outputs!(4, xc, wg, bg, og),
                3 => outputs!(3, xc, wg, bg, og),
                2 => outputs!(2, xc, wg, bg, og),
                _ => outputs!(1, xc, wg, bg, og),
            }
        }
    }
}

/// [`super::reduce`] of eight outputs' lane sums at once, each in the same order of
/// additions: lanes `l` and `l + 4`, then quads 0 + 2 and 1 + 3, then those two. Returns
/// the eight sums in output order.
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(super) fn reduce8(a: [__m256; 8]) -> __m256 {
    // h0 holds outputs 0, 2 in its low half and 1, 3 in its high half; h1 likewise 4, 6
    // and 5, 7.
    let h0 = halves(quads(a[0], a[1]), quads(a[2], a[3]));
    let h1 = halves(quads(a[4], a[5]), quads(a[6], a[7]));
    {
        let sums = _mm256_add_ps(
            _mm256_shuffle_ps::<0x88>(h0, h1),
            _mm256_shuffle_ps::<0xDD>(h0, h1),
        );
        // Lanes now hold outputs 0, 2, 4, 6 | 1, 3, 5, 7: put them in order.
        _mm256_permutevar8x32_ps(sums, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7))
    }
}

/// `[x.lo + x.hi | y.lo + y.hi]`: two outputs' quads (lane `l` plus lane `l + 4`).
#[inline]
#[target_feature(enable = "avx2,fma")]
fn quads(x: __m256, y: __m256) -> __m256 {
    {
        _mm256_add_ps(
            _mm256_permute2f128_ps::<0x20>(x, y),
            _mm256_permute2f128_ps::<0x31>(x, y),
        )
    }
}

/// Per 128-bit half: `[x.q0 + x.q2, x.q1 + x.q3, y.q0 + y.q2, y.q1 + y.q3]`.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn halves(x: __m256, y: __m256) -> __m256 {
    {
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
        step_groups::<8>(x, g, s, wt, b, 8)
    } else {
        step_groups::<0>(x, g, s, wt, b, kc)
    }
}

/// [`affine_step`] for rows of `kc` lane groups.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn step_groups<const K: usize>(
    x: &[f32],
    g: &[f32],
    s: f32,
    wt: &mut [f32],
    b: &mut [f32],
    kc: usize,
) {
    // K, when not 0, is `kc` as a constant: each caller's size gets its own
    // compiled copy, whether or not this is inlined.
    let kc = if K == 0 { kc } else { K };
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
    let n = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm256_mul_ps(
        c,
        _mm256_set1_ps(LOG2E),
    ));
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
            // SAFETY: the mask reads only lanes q·8 + l < k, inside `src`.
            let v = unsafe { _mm256_maskload_ps(src.as_ptr().wrapping_add(q * LANES), mask) };
            // SAFETY: group q of a row of kp = (kp / 8)·8 floats is inside `row`.
            unsafe { _mm256_storeu_ps(at.wrapping_add(q * LANES), v) };
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
            // The masks read only lanes q·8 + l < k, inside `src`, `mean` and `std`; group q
            // of a row of kp = (kp / 8)·8 floats is inside `row`.
            let p = src.as_ptr().wrapping_add(q * LANES);
            // SAFETY: lanes q·8 .. q·8 + 4 under `lo_mask`, as above.
            let lo = _mm256_cvtpd_ps(unsafe { _mm256_maskload_pd(p, lo_mask) });
            // SAFETY: lanes q·8 + 4 .. q·8 + 8 under `hi_mask`, as above.
            let hi = _mm256_cvtpd_ps(unsafe { _mm256_maskload_pd(p.wrapping_add(4), hi_mask) });
            let z = _mm256_set_m128(hi, lo);
            // SAFETY: lanes under `mask` of `mean`, as above.
            let m = unsafe { _mm256_maskload_ps(mean.as_ptr().wrapping_add(q * LANES), mask) };
            // SAFETY: lanes under `mask` of `std`, as above.
            let s = unsafe { _mm256_maskload_ps(std.as_ptr().wrapping_add(q * LANES), mask) };
            let v = _mm256_add_ps(m, _mm256_mul_ps(s, z));
            // SAFETY: group q of the row, as above.
            unsafe { _mm256_storeu_ps(at.wrapping_add(q * LANES), v) };
        }
    }
    // SAFETY: every float of the first rows·kp spare slots was written above.
    unsafe { out.set_len(out.len() + rows * kp) };
}

/// Most outputs [`softmax_rows`] keeps in registers; wider rows take the portable loop.
const SOFTMAX_MAX: usize = 2 * LANES;

#[target_feature(enable = "avx2,fma")]
pub(super) fn softmax_rows(out: &mut [f32], m: usize) {
    softmax_rows_inline::<0>(out, m)
}

/// [`softmax_rows`], to be compiled into callers with more registers too.
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(super) fn softmax_rows_inline<const K: usize>(out: &mut [f32], m: usize) {
    // K, when not 0, is `m` as a constant: each caller's size gets its own
    // compiled copy, whether or not this is inlined.
    let m = if K == 0 { m } else { K };
    let mp = padded(m);
    if m == 0 || m > SOFTMAX_MAX {
        return super::portable::softmax_rows(out, m);
    }
    {
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
#[inline]
#[target_feature(enable = "avx2,fma")]
fn rows8(block: &[f32], mp: usize, h: usize) -> [__m256; 8] {
    let mut rows = [splat(0.0); 8];
    for (r, v) in rows.iter_mut().enumerate() {
        let at = r * mp + h * LANES;
        *v = load(block[at..at + LANES].try_into().expect("eight lanes"));
    }
    rows
}

/// The inverse of [`rows8`].
#[inline]
#[target_feature(enable = "avx2,fma")]
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
                    _mm256_maskload_ps(src.as_ptr().wrapping_add((i + q) * src_stride + j), wmask)
                },
                false => _mm256_setzero_ps(),
            });
            for (q, v) in transpose8(block).into_iter().enumerate().take(w) {
                // SAFETY: row j + q < cols, and the mask writes columns i.. < rows only.
                let at = out.as_mut_ptr().wrapping_add((j + q) * out_stride + i);
                // SAFETY: as just said.
                unsafe { _mm256_maskstore_ps(at, hmask, v) };
            }
        }
    }
}

/// An 8×8 transpose: lane `k` of register `i` becomes lane `i` of register `k`.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn transpose8(r: [__m256; 8]) -> [__m256; 8] {
    {
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
