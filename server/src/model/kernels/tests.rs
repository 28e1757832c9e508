//! Each kernel against a direct (mostly f64) computation.

use super::*;

#[test]
fn exp_matches_std() {
    let mut worst = 0f64;
    for i in 0..=20_000 {
        let x = -87.0 * i as f32 / 20_000.0;
        let want = (x as f64).exp();
        let rel = ((exp_nonpositive(x) as f64 - want) / want).abs();
        worst = worst.max(rel);
    }
    assert!(worst < 2e-7, "worst relative error {worst}");
    assert_eq!(exp_nonpositive(0.0), 1.0);
    // Far below the clamp the answer is tiny, not garbage.
    assert!(exp_nonpositive(-1e30) < 1e-37);
    assert!(exp_nonpositive(f32::NEG_INFINITY) < 1e-37);
}

#[test]
fn gelu_matches_the_erf_definition() {
    let xs: Vec<f32> = (-2000..=2000).map(|i| i as f32 / 200.0).collect();
    let mut got = xs.clone();
    gelu_erf(&mut got);
    for (x, g) in xs.iter().zip(&got) {
        let x64 = *x as f64;
        let want = 0.5 * x64 * (1.0 + libm::erf(x64 / std::f64::consts::SQRT_2));
        assert!(
            (*g as f64 - want).abs() < 2e-6,
            "gelu({x}) = {g}, want {want}"
        );
    }
    let mut big = [1e30f32, -1e30, 0.0];
    gelu_erf(&mut big);
    assert_eq!(big, [1e30, -0.0, 0.0]);
}

#[test]
fn gelu_tanh_matches_its_formula() {
    let xs: Vec<f32> = (-1000..=1000).map(|i| i as f32 / 100.0).collect();
    let mut got = xs.clone();
    gelu_tanh(&mut got);
    for (x, g) in xs.iter().zip(&got) {
        let x64 = *x as f64;
        let u = (2.0 / std::f64::consts::PI).sqrt() * (x64 + 0.044715 * x64.powi(3));
        let want = 0.5 * x64 * (1.0 + u.tanh());
        assert!(
            (*g as f64 - want).abs() < 2e-6,
            "gelu_tanh({x}) = {g}, want {want}"
        );
    }
}

#[test]
fn matmul_nt_against_loops_with_and_without_accumulation() {
    let (m, n, k) = (7, 5, 9);
    let a: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.37).sin()).collect();
    let w: Vec<f32> = (0..n * k).map(|i| (i as f32 * 0.11).cos()).collect();
    let mut want = vec![0f32; m * n];
    for i in 0..m {
        for j in 0..n {
            want[i * n + j] = (0..k).map(|t| a[i * k + t] * w[j * k + t]).sum();
        }
    }
    let mut got = vec![f32::NAN; m * n];
    matmul_nt(&mut got, &a, &w, k, false);
    for (g, w) in got.iter().zip(&want) {
        assert!((g - w).abs() < 1e-5, "{g} vs {w}");
    }
    let mut acc = vec![1.0f32; m * n];
    matmul_nt(&mut acc, &a, &w, k, true);
    for (g, w) in acc.iter().zip(&want) {
        assert!((g - (w + 1.0)).abs() < 1e-5, "{g} vs {}", w + 1.0);
    }
}

#[test]
fn matmul_kn_against_loops_on_both_paths() {
    // 85 columns = a 64-wide tile, a 16-wide one and 5 single columns.
    for (m, n, k) in [(1, 5, 9), (1, 85, 9), (FEW_ROWS + 1, 85, 9), (17, 5, 30)] {
        let wt: Vec<f32> = (0..k * n).map(|i| (i as f32 * 0.23).cos()).collect();
        let a: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.41).sin()).collect();
        let mut got = vec![0.5f32; m * n];
        matmul_kn(&mut got, &a, &wt, n);
        for i in 0..m {
            for j in 0..n {
                let want = 0.5 + (0..k).map(|t| a[i * k + t] * wt[t * n + j]).sum::<f32>();
                let g = got[i * n + j];
                assert!((g - want).abs() < 1e-5, "m {m} [{i},{j}]: {g} vs {want}");
            }
        }
    }
}

#[test]
fn activations_match_std() {
    let xs: Vec<f32> = (-3000..=3000).map(|i| i as f32 / 100.0).collect();
    let (mut s, mut t) = (xs.clone(), xs.clone());
    sigmoid(&mut s);
    tanh(&mut t);
    for ((x, s), t) in xs.iter().zip(&s).zip(&t) {
        let x64 = *x as f64;
        let want_s = 1.0 / (1.0 + (-x64).exp());
        assert!(
            (*s as f64 - want_s).abs() < 1e-6,
            "sigmoid({x}) = {s}, want {want_s}"
        );
        assert!((*t as f64 - x64.tanh()).abs() < 1e-6, "tanh({x}) = {t}");
    }
    let mut extreme = [f32::MAX, f32::MIN];
    sigmoid(&mut extreme);
    assert!(extreme[0] == 1.0 && extreme[1] < 1e-30, "{extreme:?}");
    let mut extreme = [f32::MAX, f32::MIN];
    tanh(&mut extreme);
    assert_eq!(extreme, [1.0, -1.0]);
}

#[test]
fn softmax_rows_sums_to_one_and_matches_the_definition() {
    let mut x = vec![1.0f32, 2.0, 3.0, 1000.0, 1000.0, -1000.0];
    softmax_rows(&mut x, 3);
    let z: f64 = [1f64, 2.0, 3.0].iter().map(|v| v.exp()).sum();
    for (i, v) in [1f64, 2.0, 3.0].iter().enumerate() {
        assert!((x[i] as f64 - v.exp() / z).abs() < 1e-6);
    }
    // Large logits neither overflow nor lose the row.
    assert!((x[3] - 0.5).abs() < 1e-6 && (x[4] - 0.5).abs() < 1e-6 && x[5] < 1e-30);
}

#[test]
fn layer_norm_rows_normalises_each_row() {
    let mut x = vec![1.0f32, 2.0, 3.0, 4.0, -5.0, 5.0, -5.0, 5.0];
    layer_norm_rows(&mut x, &[1.0, 1.0, 2.0, 2.0], &[0.0, 0.0, 0.0, 1.0], 0.0);
    let s = 1.0 / 1.25f32.sqrt(); // row 0: mean 2.5, var 1.25
    let want = [
        -1.5 * s,
        -0.5 * s,
        1.0 * s,
        1.0 + 3.0 * s,
        -1.0,
        1.0,
        -2.0,
        3.0,
    ];
    for (g, w) in x.iter().zip(want) {
        assert!((g - w).abs() < 1e-6, "{g} vs {w}");
    }
}

#[test]
fn attention_head_against_a_direct_softmax() {
    // head_dim 3 (all remainder) and 40 (two 16-lane blocks and a remainder).
    for (len, hidden, heads) in [(4, 6, 2), (21, 80, 2)] {
        let dim = hidden / heads;
        let qkv: Vec<f32> = (0..len * 3 * hidden)
            .map(|i| (i as f32 * 0.7).sin())
            .collect();
        let mut out = vec![f32::NAN; len * hidden];
        let mut scratch = vec![0f32; len];
        for h in 0..heads {
            attention_head(&qkv, &mut out, &mut scratch, len, hidden, h, dim);
        }
        for h in 0..heads {
            for i in 0..len {
                let q = |c: usize| qkv[i * 3 * hidden + h * dim + c] as f64;
                let k = |j: usize, c: usize| qkv[j * 3 * hidden + hidden + h * dim + c] as f64;
                let v = |j: usize, c: usize| qkv[j * 3 * hidden + 2 * hidden + h * dim + c] as f64;
                let s: Vec<f64> = (0..len)
                    .map(|j| (0..dim).map(|c| q(c) * k(j, c)).sum::<f64>() / (dim as f64).sqrt())
                    .collect();
                let z: f64 = s.iter().map(|x| x.exp()).sum();
                for c in 0..dim {
                    let want: f64 = (0..len).map(|j| s[j].exp() / z * v(j, c)).sum();
                    let got = out[i * hidden + h * dim + c] as f64;
                    assert!(
                        (got - want).abs() < 1e-5,
                        "head {h} row {i} col {c}: {got} vs {want}"
                    );
                }
            }
        }
    }
}
