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
                let top = super::super::dataset::argmax(&row[..m]);
                let top_logit = super::super::dataset::argmax(&logits[i * mp..i * mp + m]);
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
