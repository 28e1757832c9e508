//! The decoder's element-wise loops: RMS norm, rotary embeddings, SwiGLU and attention over a
//! sequence's KV cache. Matrix products are candle's quantized kernels (`llama.rs`); these run
//! in place on plain slices, compiled for AVX-512 / AVX2 / baseline like `model/kernels.rs`.

use multiversion::multiversion;

use crate::model::kernels::{dot, exp_nonpositive};

/// `out[r] = x[r] / rms(x[r]) * weight` for each `weight.len()`-wide row. The mean of squares
/// is summed in f64, as ggml does.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
pub fn rms_norm_rows(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    let n = weight.len();
    for (row, dst) in x.chunks_exact(n).zip(out.chunks_exact_mut(n)) {
        let sum: f64 = row.iter().map(|v| f64::from(*v) * f64::from(*v)).sum();
        let mean = (sum / n as f64) as f32;
        let scale = 1.0 / (mean + eps).sqrt();
        for ((d, v), w) in dst.iter_mut().zip(row).zip(weight) {
            *d = v * scale * w;
        }
    }
}

/// Cosines and sines of the rotary angles for one position: `rope_dim / 2` of each, computed
/// the way ggml's `rope` (mode 0, used by llama) does: `theta_i = p * base^(-2i/d)` built by
/// repeated multiplication in f32, divided by the per-pair frequency factor if the model has one.
pub fn rope_angles(
    position: usize,
    rope_dim: usize,
    base: f32,
    linear_scale: f32,
    freq_factors: Option<&[f32]>,
    cos: &mut [f32],
    sin: &mut [f32],
) {
    let theta_scale = base.powf(-2.0 / rope_dim as f32);
    let mut theta = position as f32;
    for i in 0..rope_dim / 2 {
        let factor = freq_factors.and_then(|f| f.get(i).copied()).unwrap_or(1.0);
        let angle = theta / factor / linear_scale;
        cos[i] = angle.cos();
        sin[i] = angle.sin();
        theta *= theta_scale;
    }
}

/// Rotates adjacent pairs `(2i, 2i+1)` of the first `2 * cos.len()` values of every
/// `head_dim`-wide head in `row` (GGUF llama weights are permuted for this pairing).
pub fn rope_row(row: &mut [f32], head_dim: usize, cos: &[f32], sin: &[f32]) {
    for head in row.chunks_exact_mut(head_dim) {
        for (i, (c, s)) in cos.iter().zip(sin).enumerate() {
            let x0 = head[2 * i];
            let x1 = head[2 * i + 1];
            head[2 * i] = x0 * c - x1 * s;
            head[2 * i + 1] = x0 * s + x1 * c;
        }
    }
}

/// SwiGLU on rows of `[gate | up]` (`2 * n_ff` wide): `out = silu(gate) * up`.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
pub fn swiglu_rows(gate_up: &[f32], n_ff: usize, out: &mut [f32]) {
    for (row, dst) in gate_up
        .chunks_exact(2 * n_ff)
        .zip(out.chunks_exact_mut(n_ff))
    {
        let (gate, up) = row.split_at(n_ff);
        for ((d, g), u) in dst.iter_mut().zip(gate).zip(up) {
            *d = g / (1.0 + (-g).exp()) * u;
        }
    }
}

/// `x` rounded to the nearest f16. llama.cpp keeps keys and values in f16 and multiplies in
/// f16 (queries and attention weights rounded on the way in); doing the same keeps greedy
/// decoding on its tokens where two candidates are close.
#[inline(always)]
pub fn f16_round(x: f32) -> f32 {
    half::f16::from_f32(x).to_f32()
}

/// Shapes of one attention call.
#[derive(Debug, Clone, Copy)]
pub struct Heads {
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
}

/// Causal attention of `n` query rows at positions `start .. start + n` of one sequence over its
/// cache. `q` is `[n × n_head·head_dim]`; `keys` / `values` hold every cached position
/// `0 .. start + n` as rows of `n_head_kv·head_dim`; query head `h` reads key/value head
/// `h / (n_head / n_head_kv)`. Writes `out` (`[n × n_head·head_dim]`); `scores` is scratch.
/// Keys and values are expected f16-rounded (`f16_round`); queries and weights are rounded here.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
pub fn attention(
    q: &[f32],
    keys: &[f32],
    values: &[f32],
    start: usize,
    heads: Heads,
    out: &mut [f32],
    scores: &mut Vec<f32>,
) {
    let Heads {
        n_head,
        n_head_kv,
        head_dim,
    } = heads;
    let q_dim = n_head * head_dim;
    let kv_dim = n_head_kv * head_dim;
    let group = n_head / n_head_kv;
    let scale = 1.0 / (head_dim as f32).sqrt();
    let mut qh = vec![0f32; head_dim];
    for (i, (q_row, out_row)) in q
        .chunks_exact(q_dim)
        .zip(out.chunks_exact_mut(q_dim))
        .enumerate()
    {
        let len = start + i + 1;
        scores.resize(len, 0.0);
        for h in 0..n_head {
            let kv_col = (h / group) * head_dim;
            for (r, q) in qh.iter_mut().zip(&q_row[h * head_dim..][..head_dim]) {
                *r = f16_round(*q);
            }
            let mut max = f32::NEG_INFINITY;
            for (t, s) in scores.iter_mut().enumerate() {
                *s = dot(&qh, &keys[t * kv_dim + kv_col..][..head_dim]) * scale;
                max = max.max(*s);
            }
            let mut sum = 0.0;
            for s in scores.iter_mut() {
                *s = exp_nonpositive(*s - max);
                sum += *s;
            }
            let inv = 1.0 / sum;
            let o = &mut out_row[h * head_dim..][..head_dim];
            o.fill(0.0);
            for (t, s) in scores.iter().enumerate() {
                let p = f16_round(s * inv);
                for (o, v) in o.iter_mut().zip(&values[t * kv_dim + kv_col..][..head_dim]) {
                    *o += p * v;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rms_norm_matches_definition() {
        let x = [1.0f32, -2.0, 3.0, 4.0, 0.5, 0.5, 0.5, 0.5];
        let w = [1.0f32, 2.0, 0.5, 1.0];
        let mut out = [0f32; 8];
        rms_norm_rows(&x, &w, 1e-5, &mut out);
        let rms = ((1.0 + 4.0 + 9.0 + 16.0) / 4.0f32 + 1e-5).sqrt();
        assert!((out[1] - (-2.0 / rms * 2.0)).abs() < 1e-6);
        let rms2 = (0.25f32 + 1e-5).sqrt();
        assert!((out[4] - 0.5 / rms2).abs() < 1e-5);
    }

    #[test]
    fn rope_rotates_pairs_by_position() {
        let (mut cos, mut sin) = ([0f32; 2], [0f32; 2]);
        rope_angles(3, 4, 10_000.0, 1.0, None, &mut cos, &mut sin);
        // theta_0 = 3, theta_1 = 3 * 10000^(-1/2)
        assert!((cos[0] - 3f32.cos()).abs() < 1e-6);
        assert!((sin[1] - (3.0f32 / 100.0).sin()).abs() < 1e-6);
        let mut row = [1.0f32, 0.0, 0.0, 1.0, /* head 2 */ 2.0, 0.0, 0.0, 0.0];
        rope_row(&mut row, 4, &cos, &sin);
        assert!((row[0] - 3f32.cos()).abs() < 1e-6 && (row[1] - 3f32.sin()).abs() < 1e-6);
        assert!((row[2] + sin[1]).abs() < 1e-6 && (row[3] - cos[1]).abs() < 1e-6);
        assert!((row[4] - 2.0 * 3f32.cos()).abs() < 1e-6);
        // Position 0 is the identity; factors and linear scaling divide the angle.
        rope_angles(0, 4, 10_000.0, 1.0, None, &mut cos, &mut sin);
        assert_eq!((cos, sin), ([1.0; 2], [0.0; 2]));
        rope_angles(4, 4, 10_000.0, 2.0, Some(&[2.0, 1.0]), &mut cos, &mut sin);
        assert!((cos[0] - 1f32.cos()).abs() < 1e-6);
    }

    #[test]
    fn swiglu() {
        let gu = [1.0f32, -1.0, 2.0, 3.0];
        let mut out = [0f32; 2];
        swiglu_rows(&gu, 2, &mut out);
        let silu = |x: f32| x / (1.0 + (-x).exp());
        assert!((out[0] - silu(1.0) * 2.0).abs() < 1e-6);
        assert!((out[1] - silu(-1.0) * 3.0).abs() < 1e-6);
    }

    /// Against a direct f64 evaluation: 2 query heads sharing 1 key/value head, queries at
    /// positions 2 and 3 (two rows already cached), so both the cache and causality count.
    #[test]
    fn attention_matches_reference_with_grouped_heads() {
        let heads = Heads {
            n_head: 2,
            n_head_kv: 1,
            head_dim: 3,
        };
        let f = |i: usize| ((i * 37 % 11) as f32 - 5.0) / 4.0;
        let q: Vec<f32> = (0..12).map(|i| f(i + 3)).collect();
        let keys: Vec<f32> = (0..12).map(f).collect();
        let values: Vec<f32> = (0..12).map(|i| f(i + 7)).collect();
        let mut out = vec![0f32; 12];
        attention(&q, &keys, &values, 2, heads, &mut out, &mut Vec::new());
        for i in 0..2 {
            for h in 0..2 {
                let len = 2 + i + 1;
                let qh = &q[i * 6 + h * 3..][..3];
                let s: Vec<f64> = (0..len)
                    .map(|t| {
                        (0..3)
                            .map(|d| f64::from(qh[d]) * f64::from(keys[t * 3 + d]))
                            .sum::<f64>()
                            / 3f64.sqrt()
                    })
                    .collect();
                let m = s.iter().cloned().fold(f64::MIN, f64::max);
                let z: f64 = s.iter().map(|v| (v - m).exp()).sum();
                for d in 0..3 {
                    let want: f64 = (0..len)
                        .map(|t| (s[t] - m).exp() / z * f64::from(values[t * 3 + d]))
                        .sum();
                    let got = out[i * 6 + h * 3 + d];
                    // Weights are rounded to f16 (relative error 2^-11).
                    assert!((f64::from(got) - want).abs() < 2e-3, "{got} vs {want}");
                }
            }
        }
    }
}
