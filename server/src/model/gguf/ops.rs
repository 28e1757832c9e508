//! The decoder's element-wise loops: RMS norm, rotary embeddings and SwiGLU, with llama.cpp's
//! arithmetic (its roundings and fused multiply-adds, `ggml.rs`), so the numbers match its bit
//! for bit. Attention is `attention.rs`, matrix products `qmatmul.rs`. Compiled for AVX-512 /
//! AVX2 / baseline like `model/kernels.rs`.

use multiversion::multiversion;

use super::ggml;

/// An output buffer that pool workers fill in disjoint parts. Each part is borrowed on its own
/// (`part`), so no two workers ever hold overlapping `&mut` slices.
#[derive(Clone, Copy)]
pub struct SharedOut {
    ptr: *mut f32,
    len: usize,
}

// SAFETY: only the disjoint parts callers promise in `part` are written through it.
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

impl SharedOut {
    pub fn new(out: &mut [f32]) -> Self {
        SharedOut {
            ptr: out.as_mut_ptr(),
            len: out.len(),
        }
    }

    /// `out[at..at + len]`; panics outside the buffer.
    ///
    /// # Safety
    /// The buffer outlives the returned slice, and no other live borrow (from another worker
    /// or this one) overlaps it.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn part(&self, at: usize, len: usize) -> &mut [f32] {
        assert!(
            at <= self.len && len <= self.len - at,
            "part outside the buffer"
        );
        // SAFETY: in bounds (checked above); exclusivity is the caller's promise.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(at), len) }
    }
}

/// `out[r] = x[r] / rms(x[r]) * weight` for each `weight.len()`-wide row. As ggml: squares in
/// f32, summed in order in f64.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
pub fn rms_norm_rows(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    let n = weight.len();
    for (row, dst) in x.chunks_exact(n).zip(out.chunks_exact_mut(n)) {
        let sum: f64 = row.iter().map(|v| f64::from(v * v)).sum();
        let mean = (sum / n as f64) as f32;
        let scale = 1.0 / (mean + eps).sqrt();
        for ((d, v), w) in dst.iter_mut().zip(row).zip(weight) {
            *d = v * scale * w;
        }
    }
}

/// Cosines and sines of the rotary angles for one position: `rope_dim / 2` of each, computed
/// the way ggml's `rope` (mode 0, used by llama) does: `theta_i = p * base^(-2i/d)` built by
/// repeated multiplication in f32, divided by the per-pair frequency factor if the model has one
/// and multiplied by `freq_scale` (`1 / linear_scale`, in f32 as llama.cpp computes it).
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
    let freq_scale = 1.0 / linear_scale;
    let mut theta = position as f32;
    for i in 0..rope_dim / 2 {
        let factor = freq_factors.and_then(|f| f.get(i).copied()).unwrap_or(1.0);
        let angle = freq_scale * (theta / factor);
        cos[i] = angle.cos();
        sin[i] = angle.sin();
        theta *= theta_scale;
    }
}

/// Rotates adjacent pairs `(2i, 2i+1)` of the first `2 * cos.len()` values of every
/// `head_dim`-wide head in `row` (GGUF llama weights are permuted for this pairing). GCC
/// contracts ggml's `x0*cos - x1*sin` into a fused multiply-add of the first product; so does
/// this.
pub fn rope_row(row: &mut [f32], head_dim: usize, cos: &[f32], sin: &[f32]) {
    for head in row.chunks_exact_mut(head_dim) {
        for (i, (c, s)) in cos.iter().zip(sin).enumerate() {
            let x0 = head[2 * i];
            let x1 = head[2 * i + 1];
            head[2 * i] = x0.mul_add(*c, -(x1 * s));
            head[2 * i + 1] = x0.mul_add(*s, x1 * c);
        }
    }
}

/// SwiGLU on rows of `[gate | up]` (`2 * n_ff` wide): `out = silu(gate) * up`, with ggml's
/// vector SiLU.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
pub fn swiglu_rows(gate_up: &[f32], n_ff: usize, out: &mut [f32]) {
    for (row, dst) in gate_up
        .chunks_exact(2 * n_ff)
        .zip(out.chunks_exact_mut(n_ff))
    {
        let (gate, up) = row.split_at(n_ff);
        for ((d, g), u) in dst.iter_mut().zip(gate).zip(up) {
            *d = ggml::silu(*g) * u;
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
}
