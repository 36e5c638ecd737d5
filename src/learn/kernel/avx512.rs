//! [`affine`] two rows at a time: each 512-bit register holds one lane group of two rows, so
//! one multiply-add (and one shuffle of the reduction) does the work of two AVX2 ones. Every
//! lane sees the same products in the same order as in [`avx2`], and each output's lane sums
//! are added in [`avx2::reduce8`]'s order, only in other lanes of the register: the same
//! bits. [`affine_step`] likewise updates two outputs' weights per register.

use std::arch::x86_64::{
    __m512, _mm256_set1_ps, _mm512_add_ps, _mm512_broadcast_f32x8, _mm512_castps256_ps512,
    _mm512_castps512_ps256, _mm512_extractf32x8_ps, _mm512_fmadd_ps, _mm512_insertf32x8,
    _mm512_loadu_ps, _mm512_permutexvar_ps, _mm512_set1_ps, _mm512_setr_epi32, _mm512_setzero_ps,
    _mm512_shuffle_f32x4, _mm512_shuffle_ps, _mm512_storeu_ps,
};

use super::avx2::{lanes, load, store};
use super::{padded, LANES, STEP_ROWS};

#[target_feature(enable = "avx512f,avx512dq,avx2,fma")]
pub(super) fn affine_step(x: &[f32], g: &[f32], s: f32, wt: &mut [f32], b: &mut [f32]) {
    let kc = wt.len() / b.len().max(1) / LANES;
    match kc {
        0 => super::avx2::affine_step(x, g, s, wt, b),
        8 => step_pairs::<8>(x, g, s, wt, b, 8),
        _ => step_pairs::<0>(x, g, s, wt, b, kc),
    }
}

/// [`affine_step`] for rows of `kc ≥ 1` lane groups, outputs two at a time; an odd last
/// output shares its registers with a scratch one that is thrown away.
#[inline]
#[target_feature(enable = "avx512f,avx512dq,avx2,fma")]
fn step_pairs<const K: usize>(
    x: &[f32],
    g: &[f32],
    s: f32,
    wt: &mut [f32],
    b: &mut [f32],
    kc: usize,
) {
    // K, when not 0, is `kc` as a constant: each caller's size gets its own compiled
    // copy, whether or not this is inlined.
    let kc = if K == 0 { kc } else { K };
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
            two_outputs_wide::<K>(x, a, [w0.as_flattened_mut(), w1.as_flattened_mut()], kc);
        } else {
            two_outputs::<K>(xs, a, [w0, w1], kc);
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
#[inline]
#[target_feature(enable = "avx512f,avx512dq,avx2,fma")]
fn two_outputs<const K: usize>(
    xs: &[[f32; LANES]],
    a: &[(f32, f32)],
    w: [&mut [[f32; LANES]]; 2],
    kc: usize,
) {
    // K, when not 0, is `kc` as a constant: each caller's size gets its own compiled
    // copy, whether or not this is inlined.
    let kc = if K == 0 { kc } else { K };
    let [w0, w1] = w;
    {
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
#[inline]
#[target_feature(enable = "avx512f,avx512dq,avx2,fma")]
fn two_outputs_wide<const K: usize>(x: &[f32], a: &[(f32, f32)], w: [&mut [f32]; 2], kc: usize) {
    // K, when not 0, is `kc` as a constant: each caller's size gets its own compiled
    // copy, whether or not this is inlined.
    let kc = if K == 0 { kc } else { K };
    const WIDE: usize = 2 * LANES;
    const BLOCK: usize = 4;
    let [w0, w1] = w;
    let stride = kc * LANES;
    // Register q of a block covers inputs (z0 + q)·16 .. + 16 < stride: inside every row
    // of `x` and both weight rows, which every load and store below relies on.
    for z0 in (0..kc / 2).step_by(BLOCK) {
        let len = (kc / 2 - z0).min(BLOCK);
        let at = |q: usize| (z0 + q) * WIDE;
        let mut acc = [[_mm512_setzero_ps(); BLOCK]; 2];
        for q in 0..len {
            // SAFETY: 16 floats of weight row 0, as above.
            acc[0][q] = unsafe { _mm512_loadu_ps(w0.as_ptr().wrapping_add(at(q))) };
            // SAFETY: 16 floats of weight row 1, as above.
            acc[1][q] = unsafe { _mm512_loadu_ps(w1.as_ptr().wrapping_add(at(q))) };
        }
        for (xi, &(a0, a1)) in x.chunks_exact(stride).zip(a) {
            let (a0, a1) = (_mm512_set1_ps(a0), _mm512_set1_ps(a1));
            for q in 0..len {
                // SAFETY: 16 floats of row `xi`, as above.
                let xv = unsafe { _mm512_loadu_ps(xi.as_ptr().wrapping_add(at(q))) };
                acc[0][q] = _mm512_fmadd_ps(a0, xv, acc[0][q]);
                acc[1][q] = _mm512_fmadd_ps(a1, xv, acc[1][q]);
            }
        }
        for q in 0..len {
            // SAFETY: 16 floats of weight row 0, as above.
            unsafe { _mm512_storeu_ps(w0.as_mut_ptr().wrapping_add(at(q)), acc[0][q]) };
            // SAFETY: 16 floats of weight row 1, as above.
            unsafe { _mm512_storeu_ps(w1.as_mut_ptr().wrapping_add(at(q)), acc[1][q]) };
        }
    }
}

/// The AVX2 [`softmax_rows`](super::avx2::softmax_rows), the same instructions and bits,
/// with AVX-512VL's sixteen more vector registers for its eight rows' columns, maximum,
/// sum and `exp` constants, which spilled to the stack with sixteen.
#[target_feature(enable = "avx512f,avx512dq,avx512vl,avx2,fma")]
pub(super) fn softmax_rows(out: &mut [f32], m: usize) {
    // W1's ten classes as a constant, so the column loops unroll and stay in registers.
    match m {
        10 => super::avx2::softmax_rows_inline::<10>(out, 10),
        _ => super::avx2::softmax_rows_inline::<0>(out, m),
    }
}

#[target_feature(enable = "avx512f,avx512dq,avx2,fma")]
pub(super) fn affine(x: &[f32], wt: &[f32], b: &[f32], out: &mut [f32]) {
    let kc = wt.len() / b.len().max(1) / LANES;
    // As in the AVX2 kernel: W1's eight lane groups as a constant, so the loops unroll.
    match kc {
        0 => super::avx2::affine(x, wt, b, out),
        8 => row_pairs::<8>(x, wt, b, out, 8),
        _ => row_pairs::<0>(x, wt, b, out, kc),
    }
}

/// `G ≤ 8` outputs of two rows, as the AVX2 kernel's `outputs` computes them for each.
/// A macro rather than a function so that it is expanded inside its caller, which is
/// compiled with AVX-512: a `#[target_feature]` function cannot be forced inline.
macro_rules! outputs {
    ($g:literal, $x:expr, $w:expr, $b:expr, $o:expr) => {{
        const G: usize = $g;
        let (x, w, b, o) = ($x, $w, $b, $o);

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
    }};
}

/// [`affine`] for rows of `kc ≥ 1` lane groups: pairs of rows, then an odd last row on
/// the AVX2 kernel.
#[inline]
#[target_feature(enable = "avx512f,avx512dq,avx2,fma")]
fn row_pairs<const K: usize>(x: &[f32], wt: &[f32], b: &[f32], out: &mut [f32], kc: usize) {
    // K, when not 0, is `kc` as a constant: each caller's size gets its own compiled
    // copy, whether or not this is inlined.
    let kc = if K == 0 { kc } else { K };
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
                8 => outputs!(8, [x0, x1], wg, bg, [o0, o1]),
                7 => outputs!(7, [x0, x1], wg, bg, [o0, o1]),
                6 => outputs!(6, [x0, x1], wg, bg, [o0, o1]),
                5 => outputs!(5, [x0, x1], wg, bg, [o0, o1]),
                4 => outputs!(4, [x0, x1], wg, bg, [o0, o1]),
                3 => outputs!(3, [x0, x1], wg, bg, [o0, o1]),
                2 => outputs!(2, [x0, x1], wg, bg, [o0, o1]),
                _ => outputs!(1, [x0, x1], wg, bg, [o0, o1]),
            }
        }
    }
    if rows % 2 == 1 {
        let last = rows - 1;
        {
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
#[inline]
#[target_feature(enable = "avx512f,avx512dq,avx2,fma")]
fn reduce8x2(a: [__m512; 8]) -> __m512 {
    {
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
