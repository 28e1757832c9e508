//! The numeric pieces of the BERT encoder, on plain row-major `f32` slices.
//!
//! Matrix products go to the `gemm` crate (candle's own CPU matmul), everything else is a short
//! loop compiled for AVX-512 and AVX2 as well as the baseline and picked at run time
//! (`multiversion`): candle's element-wise ops allocate a tensor per op, wake a thread pool per
//! op and compute GELU with a scalar `erf`, which together cost more than the matrix products on
//! MiniLM-sized batches.

use multiversion::multiversion;

/// `dst[m×n] (+)= a[m×k] · wᵀ` with `w` stored `[n×k]` row-major (a PyTorch `Linear` weight).
/// With `accumulate`, the product is added to what `dst` holds (bias, residual).
pub fn matmul_nt(dst: &mut [f32], a: &[f32], w: &[f32], k: usize, accumulate: bool) {
    let n = w.len() / k.max(1);
    let m = a.len() / k.max(1);
    assert!(
        k > 0 && a.len() == m * k && w.len() == n * k && dst.len() == m * n,
        "matmul_nt: shapes do not fit (a {}, w {}, dst {}, k {k})",
        a.len(),
        w.len(),
        dst.len()
    );
    if m == 0 || n == 0 {
        return;
    }
    // `gemm` splits the work on the current rayon pool (the model thread's own) when it pays.
    let threads = rayon_core::current_num_threads();
    // SAFETY: the assert above proves every index gemm derives from (m, n, k) and these strides
    // stays inside the three slices: dst is m×n with row stride n, a is m×k with row stride k,
    // and rhs element (row kk, col nn) is w[nn*k + kk]. dst does not alias a or w (&mut).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.as_ptr(),
            1,
            k as isize,
            w.as_ptr(),
            k as isize,
            1,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::Rayon(threads),
        );
    }
}

/// Fills each `width`-wide row of `dst` with `row`.
pub fn broadcast_rows(dst: &mut [f32], row: &[f32]) {
    for chunk in dst.chunks_exact_mut(row.len()) {
        chunk.copy_from_slice(row);
    }
}

/// In place: every row of `x` (rows of `gamma.len()` values) becomes
/// `(x - mean) / sqrt(var + eps) * gamma + beta`.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
pub fn layer_norm_rows(x: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
    let h = gamma.len();
    let inv_h = 1.0 / h as f32;
    for row in x.chunks_exact_mut(h) {
        let mean = row.iter().sum::<f32>() * inv_h;
        let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() * inv_h;
        let inv_std = 1.0 / (var + eps).sqrt();
        for ((v, g), b) in row.iter_mut().zip(gamma).zip(beta) {
            *v = (*v - mean) * inv_std * g + b;
        }
    }
}

/// `e^x` for `x <= 0` (clamped at -87, below which the answer is < 1.7e-38), branch-free so the
/// loops calling it vectorise; relative error < 2e-7.
#[inline(always)]
fn exp_nonpositive(x: f32) -> f32 {
    const LOG2_E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split so that n * LN2_HI is exact for the n used here.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let x = x.clamp(-87.0, 0.0);
    let n = (x * LOG2_E).round_ties_even();
    let r = (x - n * LN2_HI) - n * LN2_LO; // |r| <= ln2 / 2
    // Taylor series of e^r to r^7/7!: truncation < 1e-8 on |r| <= 0.347.
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0
                    + r * (1.0 / 24.0
                        + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r * (1.0 / 5040.0)))))));
    // 2^n for n in [-126, 0], written straight into the exponent bits.
    let scale = f32::from_bits((((n as i32) + 127) as u32) << 23);
    p * scale
}

/// `erf(x)`, Abramowitz & Stegun 7.1.26 (absolute error < 1.5e-7), branch-free.
#[inline(always)]
fn erf(x: f32) -> f32 {
    const P: f32 = 0.327_591_1;
    const A1: f32 = 0.254_829_6;
    const A2: f32 = -0.284_496_74;
    const A3: f32 = 1.421_413_7;
    const A4: f32 = -1.453_152_1;
    const A5: f32 = 1.061_405_4;
    let a = x.abs();
    let t = 1.0 / (1.0 + P * a);
    let poly = t * (A1 + t * (A2 + t * (A3 + t * (A4 + t * A5))));
    let y = 1.0 - poly * exp_nonpositive(-a * a);
    y.copysign(x)
}

/// In place `x * Φ(x)`, the exact ("erf") GELU of BERT's `hidden_act: gelu`.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
pub fn gelu_erf(x: &mut [f32]) {
    const FRAC_1_SQRT_2: f32 = std::f32::consts::FRAC_1_SQRT_2;
    for v in x.iter_mut() {
        *v = 0.5 * *v * (1.0 + erf(*v * FRAC_1_SQRT_2));
    }
}

/// In place tanh-approximated GELU (`gelu_new`, `gelu_pytorch_tanh`).
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
pub fn gelu_tanh(x: &mut [f32]) {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    for v in x.iter_mut() {
        let u = SQRT_2_OVER_PI * (*v + 0.044_715 * *v * *v * *v);
        // tanh(u) = sign(u) (1 - e^{-2|u|}) / (1 + e^{-2|u|})
        let e = exp_nonpositive(-2.0 * u.abs());
        let tanh = ((1.0 - e) / (1.0 + e)).copysign(u);
        *v = 0.5 * *v * (1.0 + tanh);
    }
}

/// In place `max(x, 0)`.
pub fn relu(x: &mut [f32]) {
    for v in x.iter_mut() {
        *v = v.max(0.0);
    }
}

/// One attention head over one sequence of `len` tokens, reading packed rows of `qkv`
/// (`[len × 3·hidden]`: all heads' queries, then keys, then values) and writing the head's
/// `head_dim` columns of each row of `out` (`[len × hidden]`, row stride `hidden`).
/// `scores` is scratch of at least `len` values.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
pub fn attention_head(
    qkv: &[f32],
    out: &mut [f32],
    scores: &mut [f32],
    len: usize,
    hidden: usize,
    head: usize,
    head_dim: usize,
) {
    let scale = 1.0 / (head_dim as f32).sqrt();
    let stride = 3 * hidden;
    let col = head * head_dim;
    let scores = &mut scores[..len];
    for i in 0..len {
        let q = &qkv[i * stride + col..][..head_dim];
        let mut max = f32::NEG_INFINITY;
        for (j, s) in scores.iter_mut().enumerate() {
            let k = &qkv[j * stride + hidden + col..][..head_dim];
            let dot: f32 = q.iter().zip(k).map(|(a, b)| a * b).sum();
            *s = dot * scale;
            max = max.max(*s);
        }
        let mut sum = 0.0;
        for s in scores.iter_mut() {
            *s = exp_nonpositive(*s - max);
            sum += *s;
        }
        let inv = 1.0 / sum;
        let o = &mut out[i * hidden + col..][..head_dim];
        o.fill(0.0);
        for (j, s) in scores.iter().enumerate() {
            let v = &qkv[j * stride + 2 * hidden + col..][..head_dim];
            let p = s * inv;
            for (o, v) in o.iter_mut().zip(v) {
                *o += p * v;
            }
        }
    }
}

#[cfg(test)]
mod tests {
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
        let (len, hidden, heads) = (4, 6, 2);
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
