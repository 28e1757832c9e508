//! Causal attention over one sequence's f16 KV cache, computed exactly as llama.cpp's CPU
//! backend computes it without flash attention (llama-cpp-python's and `llama_cpp.server`'s
//! default), so greedy decoding follows llama.cpp's tokens even where two candidates are within
//! a hundredth of a logit:
//!
//! - keys and values are stored as f16; queries and attention weights are rounded to f16 for
//!   the two products, whose f16 × f16 terms are exact in f32;
//! - `KQ` and `KQV` sum those terms in the lanes and order of the kernel llama.cpp picks: for a
//!   step of one token, `ggml_vec_dot_f16` (4 accumulators of 16 lanes over blocks of 64,
//!   reduced `(a0 + a2) + (a1 + a3)`); for a step of several tokens, llamafile's tinyBLAS (one
//!   accumulator of 16 lanes). Both end with `_mm512_reduce_add_ps`' order (`ggml::reduce16`);
//! - softmax multiplies by the scale, takes `ggml::expf`, sums 16 lanes at a time into an f64
//!   and multiplies by `(float)(1.0 / sum)`, as `ggml_compute_forward_soft_max_f32` does.
//!
//! llama.cpp attends over `n_kv` cache cells (a multiple of 256) and masks the ones after the
//! query with -inf; those add exact zeros to every sum here, so only the visible positions are
//! computed, in the same lanes.

use half::f16;
use half::slice::{HalfBitsSliceExt, HalfFloatSliceExt};
use multiversion::multiversion;

use std::ops::Range;

use super::ggml::{expf, f16_bits_to_f32, f16_round, reduce16};
use super::ops::SharedOut;

/// Shapes of one attention call.
#[derive(Debug, Clone, Copy)]
pub struct Heads {
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
}

/// Which of llama.cpp's two f16 matrix-product kernels the step's products follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// `ggml_vec_dot_f16`: one query row (llamafile leaves products of one column to it).
    VecDot,
    /// llamafile's tinyBLAS (AVX-512, 16 lanes): two or more query rows.
    TinyBlas,
}

impl Kernel {
    /// The kernel llama.cpp uses for a step of `rows` query rows of this sequence.
    pub fn for_rows(rows: usize) -> Kernel {
        if rows >= 2 {
            Kernel::TinyBlas
        } else {
            Kernel::VecDot
        }
    }

    /// tinyBLAS takes a product only if its inner dimension is a multiple of 16 (it declines
    /// otherwise and ggml falls back to the dot kernel): `head_dim` for `KQ`; `n_kv` for
    /// `KQV`, always a multiple of 256. The row counts it also requires to be multiples of 4
    /// are `n_kv` and `head_dim` (even for every llama model).
    fn for_inner(self, k: usize) -> Kernel {
        if self == Kernel::TinyBlas && k.is_multiple_of(16) {
            Kernel::TinyBlas
        } else {
            Kernel::VecDot
        }
    }
}

/// One layer of one sequence's cache: per key/value head, `capacity` rows of `head_dim` f16
/// values (kept as their bits, so the allocation is zeroed memory), a head's positions
/// contiguous.
pub struct KvLayer {
    k: Vec<u16>,
    v: Vec<u16>,
}

impl KvLayer {
    /// Zeroed memory is mapped lazily, so a sequence only touches the pages of the positions it
    /// writes.
    pub fn new(heads: Heads, capacity: usize) -> Self {
        let n = heads.n_head_kv * capacity * heads.head_dim;
        KvLayer {
            k: vec![0; n],
            v: vec![0; n],
        }
    }

    fn capacity(&self, heads: Heads) -> usize {
        self.k.len() / (heads.n_head_kv * heads.head_dim).max(1)
    }

    /// Stores position `pos`'s keys and values (`n_head_kv · head_dim` each), rounded to f16.
    pub fn store(&mut self, heads: Heads, pos: usize, k: &[f32], v: &[f32]) {
        let (hd, cap) = (heads.head_dim, self.capacity(heads));
        assert!(pos < cap, "KV cache position {pos} beyond its {cap} rows");
        for g in 0..heads.n_head_kv {
            let at = (g * cap + pos) * hd;
            let (kd, vd) = (
                self.k[at..at + hd].reinterpret_cast_mut::<f16>(),
                self.v[at..at + hd].reinterpret_cast_mut::<f16>(),
            );
            kd.convert_from_f32_slice(&k[g * hd..][..hd]);
            vd.convert_from_f32_slice(&v[g * hd..][..hd]);
        }
    }
}

/// Reusable buffers of one attention call.
#[derive(Default)]
pub struct Scratch {
    keys: Vec<f32>,
    values: Vec<f32>,
    scores: Vec<f32>,
    query: Vec<f32>,
    lanes: Vec<f32>,
}

/// Steps with at least this many query rows of one sequence (a prompt chunk) split its heads
/// over candle's thread pool; a decoding sequence's single row stays on the model thread, where
/// the pool's barrier would cost more than the work (see `qmatmul::PARALLEL_MIN_ROWS`).
/// Attention is ~a fifth of a 200-token prefill, and ran on one core.
const PARALLEL_MIN_ROWS: usize = 16;

/// Attention of `n` query rows at positions `start .. start + n` over `cache` (which already
/// holds positions `0 .. start + n`), its products in `kernel`'s order. `q` is
/// `[n × n_head·head_dim]`; query head `h` reads key/value head `h / (n_head / n_head_kv)`.
/// Writes `out` (`[n × n_head·head_dim]`).
pub fn attention(
    q: &[f32],
    cache: &KvLayer,
    start: usize,
    heads: Heads,
    kernel: Kernel,
    out: &mut [f32],
    scratch: &mut Scratch,
) {
    let rows = q.len() / (heads.n_head * heads.head_dim);
    assert_eq!(
        out.len(),
        q.len(),
        "attention output and queries differ in size"
    );
    let shared = SharedOut::new(out);
    if rows < PARALLEL_MIN_ROWS {
        attend_heads(
            q,
            cache,
            start,
            heads,
            kernel,
            0..heads.n_head,
            shared,
            scratch,
        );
        return;
    }
    // Each worker takes whole heads (each head's rows are written by that worker alone) and
    // widens its heads' keys and values itself.
    candle_core::utils::barrier_pool().execute_chunked(heads.n_head, |range| {
        let mut scratch = Scratch::default();
        attend_heads(q, cache, start, heads, kernel, range, shared, &mut scratch);
    });
}

/// [`attention`] for query heads `hs` only: writes their `head_dim`-wide parts of `out`'s rows.
#[allow(clippy::too_many_arguments)]
fn attend_heads(
    q: &[f32],
    cache: &KvLayer,
    start: usize,
    heads: Heads,
    kernel: Kernel,
    hs: Range<usize>,
    out: SharedOut,
    scratch: &mut Scratch,
) {
    let Heads {
        n_head,
        n_head_kv,
        head_dim: hd,
    } = heads;
    let q_dim = n_head * hd;
    let rows = q.len() / q_dim;
    let len = start + rows;
    let cap = cache.capacity(heads);
    let group = n_head / n_head_kv;
    let scale = 1.0 / (hd as f32).sqrt();
    let Scratch {
        keys,
        values,
        scores,
        query,
        lanes,
    } = scratch;
    keys.resize(len * hd, 0.0);
    values.resize(len * hd, 0.0);
    query.resize(hd, 0.0);
    let mut widened = None;
    for h in hs {
        let g = h / group;
        if widened != Some(g) {
            let at = g * cap * hd;
            let span = at..at + len * hd;
            f16_bits_to_f32(&cache.k[span.clone()], keys);
            f16_bits_to_f32(&cache.v[span], values);
            widened = Some(g);
        }
        for i in 0..rows {
            let visible = start + i + 1;
            for (r, x) in query.iter_mut().zip(&q[i * q_dim + h * hd..][..hd]) {
                *r = f16_round(*x);
            }
            scores.resize(visible, 0.0);
            key_scores(kernel.for_inner(hd), query, &keys[..visible * hd], scores);
            softmax_f16(scores, scale);
            // SAFETY: row `i`'s head `h` is written here only: heads are split between
            // callers and each visits its rows one at a time; `out` outlives the call.
            let dst = unsafe { out.part(i * q_dim + h * hd, hd) };
            weighted_values(kernel, scores, &values[..visible * hd], dst, lanes);
        }
    }
}

/// `scores[t] = q · keys[t]` for each `head_dim`-wide key row, in `kernel`'s order.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
fn key_scores(kernel: Kernel, q: &[f32], keys: &[f32], scores: &mut [f32]) {
    let hd = q.len();
    for (s, k) in scores.iter_mut().zip(keys.chunks_exact(hd)) {
        *s = match kernel {
            Kernel::VecDot => dot_vec_dot_f16(q, k),
            Kernel::TinyBlas => dot_tinyblas(q, k),
        };
    }
}

/// `ggml_vec_dot_f16` (AVX-512): blocks of 64 into 4 accumulators of 16 lanes, reduced
/// `(s0 + s2) + (s1 + s3)` then across lanes; leftovers added in f64.
#[inline(always)]
fn dot_vec_dot_f16(x: &[f32], y: &[f32]) -> f32 {
    let n = x.len();
    let np = n & !63;
    let mut sum = [[0f32; 16]; 4];
    for i in (0..np).step_by(64) {
        for (j, s) in sum.iter_mut().enumerate() {
            let (xs, ys) = (&x[i + 16 * j..][..16], &y[i + 16 * j..][..16]);
            for l in 0..16 {
                s[l] = xs[l].mul_add(ys[l], s[l]);
            }
        }
    }
    let mut lanes = [0f32; 16];
    for l in 0..16 {
        lanes[l] = (sum[0][l] + sum[2][l]) + (sum[1][l] + sum[3][l]);
    }
    let mut total = f64::from(reduce16(&lanes));
    for i in np..n {
        total += f64::from(x[i] * y[i]);
    }
    total as f32
}

/// tinyBLAS (AVX-512): one accumulator of 16 lanes over the whole row (`len % 16 == 0`).
#[inline(always)]
fn dot_tinyblas(x: &[f32], y: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    for (xs, ys) in x.chunks_exact(16).zip(y.chunks_exact(16)) {
        for l in 0..16 {
            acc[l] = xs[l].mul_add(ys[l], acc[l]);
        }
    }
    reduce16(&acc)
}

/// `ggml_compute_forward_soft_max_f32` over the visible scores, leaving weights rounded to f16
/// (the `KQV` product's operand).
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
fn softmax_f16(scores: &mut [f32], scale: f32) {
    let mut max = f32::NEG_INFINITY;
    for s in scores.iter_mut() {
        *s *= scale;
        max = max.max(*s);
    }
    let mut sum = 0f64;
    for chunk in scores.chunks_mut(16) {
        let mut lanes = [0f32; 16];
        for (l, s) in lanes.iter_mut().zip(chunk.iter_mut()) {
            *s = expf(*s - max);
            *l = *s;
        }
        sum += f64::from(reduce16(&lanes));
    }
    let inv = (1.0 / sum) as f32;
    for s in scores.iter_mut() {
        *s = f16_round(*s * inv);
    }
}

/// `out[d] = Σ_t weights[t] · values[t][d]`, position `t` summed in lane `t mod 64` (dot
/// kernel: lanes of 16 in 4 accumulators) or `t mod 16` (tinyBLAS), then reduced as there.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
fn weighted_values(
    kernel: Kernel,
    weights: &[f32],
    values: &[f32],
    out: &mut [f32],
    lanes: &mut Vec<f32>,
) {
    let hd = out.len();
    let n_lanes = match kernel {
        Kernel::VecDot => 64,
        Kernel::TinyBlas => 16,
    };
    lanes.clear();
    lanes.resize(n_lanes * hd, 0.0);
    for (t, (w, v)) in weights.iter().zip(values.chunks_exact(hd)).enumerate() {
        let lane = &mut lanes[(t % n_lanes) * hd..][..hd];
        for (a, v) in lane.iter_mut().zip(v) {
            *a = w.mul_add(*v, *a);
        }
    }
    if kernel == Kernel::VecDot {
        // (s0 + s2) + (s1 + s3) into the first 16 lanes.
        let (low, high) = lanes.split_at_mut(32 * hd);
        for (a, b) in low.iter_mut().zip(high.iter()) {
            *a += b;
        }
        let (s0, s1) = low.split_at_mut(16 * hd);
        for (a, b) in s0.iter_mut().zip(s1.iter()) {
            *a += b;
        }
    }
    reduce16_rows(&mut lanes[..16 * hd], hd, out);
}

/// `reduce16` of each column of 16 rows of `width`, written into `out` (`rows` is scratch).
#[inline(always)]
fn reduce16_rows(rows: &mut [f32], width: usize, out: &mut [f32]) {
    // Lane i += lane i + 8, then i += i + 4: the same additions as `reduce16`, column-wise.
    for half in [8, 4] {
        let (low, high) = rows.split_at_mut(half * width);
        for (a, b) in low.iter_mut().zip(high[..half * width].iter()) {
            *a += *b;
        }
    }
    let r = |i: usize, d: usize| rows[i * width + d];
    for (d, o) in out.iter_mut().enumerate() {
        *o = (r(0, d) + r(2, d)) + (r(1, d) + r(3, d));
    }
}

#[cfg(test)]
mod tests;
