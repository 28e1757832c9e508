//! The numeric pieces of the models' forward passes, on plain row-major `f32` slices.
//!
//! Matrix products go to the `gemm` crate (candle's own CPU matmul), everything else is a short
//! loop compiled for AVX-512 and AVX2 as well as the baseline and picked at run time
//! (`multiversion`): candle's element-wise ops allocate a tensor per op, wake a thread pool per
//! op and compute GELU with a scalar `erf`, which together cost more than the matrix products on
//! MiniLM-sized batches, and its matmul transposes-on-the-fly layout is 3x slower than a
//! pre-transposed one for the MLP's few-row batches.

use multiversion::multiversion;

/// How a weight matrix is stored.
#[derive(Clone, Copy)]
enum Layout {
    /// `[n×k]`: one row per output (a PyTorch `Linear` weight).
    OutputRows,
    /// `[k×n]`: one row per input (the same weight transposed).
    InputRows,
}

/// `(m, k)` of `dst[m×n] = a[m×k] · W[k×n]`; slices that do not fit are a bug in the caller.
fn dims(dst: &[f32], a: &[f32], w: &[f32], n: usize) -> (usize, usize) {
    let k = w.len() / n.max(1);
    let m = a.len() / k.max(1);
    assert!(
        n > 0 && k > 0 && a.len() == m * k && w.len() == k * n && dst.len() == m * n,
        "matrix product: shapes do not fit (a {}, w {}, dst {}, n {n})",
        a.len(),
        w.len(),
        dst.len()
    );
    (m, k)
}

/// `dst[m×n] (+)= a[m×k] · W` through gemm, `W` (`k×n`) stored as `layout` says.
fn gemm_product(dst: &mut [f32], a: &[f32], w: &[f32], n: usize, layout: Layout, accumulate: bool) {
    let (m, k) = dims(dst, a, w, n);
    if m == 0 {
        return;
    }
    // Strides of W's element (row kk, column nn): w[nn*k + kk] or w[kk*n + nn].
    let (w_cs, w_rs) = match layout {
        Layout::OutputRows => (k as isize, 1),
        Layout::InputRows => (1, n as isize),
    };
    // `gemm` splits the work on the current rayon pool (the model thread's own) when it pays.
    let threads = rayon_core::current_num_threads();
    // SAFETY: `dims` proves every index gemm derives from (m, n, k) and these strides stays
    // inside the three slices: dst is m×n with row stride n, a is m×k with row stride k, W as
    // above. dst does not alias a or w (&mut).
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
            w_cs,
            w_rs,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::Rayon(threads),
        );
    }
}

/// `dst[m×n] (+)= a[m×k] · wᵀ` with `w` stored `[n×k]` row-major (a PyTorch `Linear` weight).
/// With `accumulate`, the product is added to what `dst` holds (bias, residual).
pub fn matmul_nt(dst: &mut [f32], a: &[f32], w: &[f32], k: usize, accumulate: bool) {
    let n = w.len() / k.max(1);
    gemm_product(dst, a, w, n, Layout::OutputRows, accumulate);
}

/// `dst[m×n] += a[m×k] · wt` with `wt` stored `[k×n]` row-major (a transposed `Linear` weight).
/// A few rows go through a plain loop (gemm's set-up costs more than the product there).
pub fn matmul_kn(dst: &mut [f32], a: &[f32], wt: &[f32], n: usize) {
    let k = wt.len() / n.max(1);
    if a.len() <= FEW_ROWS * k
        && k > 0
        && n > 0
        && wt.len() == k * n
        && dst.len() * k == a.len() * n
    {
        for (out, x) in dst.chunks_exact_mut(n).zip(a.chunks_exact(k)) {
            row_times_matrix(out, x, wt);
        }
        return;
    }
    gemm_product(dst, a, wt, n, Layout::InputRows, true);
}

/// Rows up to which `matmul_kn` loops instead of calling gemm. Measured on the 1000-64-64-10 MLP
/// (whole forward pass): 1 row 3.5 us looped vs 5.2 us through gemm; 2 rows 7.0 us looped vs
/// ~3 us gemm.
const FEW_ROWS: usize = 1;

/// `out += x · wt` for one row `x` (`wt` is `[x.len() × out.len()]`), a tile of columns at a
/// time with the tile's sums held in registers across all of `x` (a plain axpy loop re-reads
/// and re-writes `out` once per input and was 4x slower).
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
fn row_times_matrix(out: &mut [f32], x: &[f32], wt: &[f32]) {
    let n = out.len();
    let mut j = 0;
    while j + 64 <= n {
        column_tile::<64>(out, x, wt, j);
        j += 64;
    }
    while j + 16 <= n {
        column_tile::<16>(out, x, wt, j);
        j += 16;
    }
    while j < n {
        column_tile::<1>(out, x, wt, j);
        j += 1;
    }
}

#[inline(always)]
fn column_tile<const T: usize>(out: &mut [f32], x: &[f32], wt: &[f32], j: usize) {
    let n = out.len();
    let mut acc = [0f32; T];
    acc.copy_from_slice(&out[j..j + T]);
    for (xv, w) in x.iter().zip(wt.chunks_exact(n)) {
        let w = &w[j..j + T];
        for t in 0..T {
            acc[t] += xv * w[t];
        }
    }
    out[j..j + T].copy_from_slice(&acc);
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
pub(super) fn exp_nonpositive(x: f32) -> f32 {
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
        *v = 0.5 * *v * (1.0 + tanh_of(u));
    }
}

/// In place logistic function.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
pub fn sigmoid(x: &mut [f32]) {
    for v in x.iter_mut() {
        // e^{-|v|} never overflows; 1/(1+e^-v) for v >= 0, e^v/(1+e^v) below.
        let e = exp_nonpositive(-v.abs());
        let s = 1.0 / (1.0 + e);
        *v = if *v >= 0.0 { s } else { e * s };
    }
}

/// In place hyperbolic tangent.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
pub fn tanh(x: &mut [f32]) {
    for v in x.iter_mut() {
        *v = tanh_of(*v);
    }
}

#[inline(always)]
fn tanh_of(u: f32) -> f32 {
    // tanh(u) = sign(u) (1 - e^{-2|u|}) / (1 + e^{-2|u|})
    let e = exp_nonpositive(-2.0 * u.abs());
    ((1.0 - e) / (1.0 + e)).copysign(u)
}

/// In place softmax of each `width`-wide row.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
pub fn softmax_rows(x: &mut [f32], width: usize) {
    for row in x.chunks_exact_mut(width) {
        let max = row.iter().fold(f32::NEG_INFINITY, |m, v| m.max(*v));
        let mut sum = 0.0;
        for v in row.iter_mut() {
            *v = exp_nonpositive(*v - max);
            sum += *v;
        }
        let inv = 1.0 / sum;
        row.iter_mut().for_each(|v| *v *= inv);
    }
}

/// In place `max(x, 0)`.
pub fn relu(x: &mut [f32]) {
    for v in x.iter_mut() {
        *v = v.max(0.0);
    }
}

/// `a · b` summed in 16 independent lanes: a single running sum is one long dependency chain
/// the compiler may not reorder (strict float order), so it would not vectorise.
#[inline(always)]
pub(super) fn dot(a: &[f32], b: &[f32]) -> f32 {
    const LANES: usize = 16;
    let mut lanes = [0f32; LANES];
    let (mut xs, mut ys) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    for (x, y) in (&mut xs).zip(&mut ys) {
        for i in 0..LANES {
            lanes[i] += x[i] * y[i];
        }
    }
    let tail: f32 = xs
        .remainder()
        .iter()
        .zip(ys.remainder())
        .map(|(x, y)| x * y)
        .sum();
    lanes.iter().sum::<f32>() + tail
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
            *s = dot(q, k) * scale;
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
mod tests;
