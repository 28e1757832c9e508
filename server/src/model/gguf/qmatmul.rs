//! Matrix products over Q4_0, Q4_1 and Q8_0 weights computed the way llama.cpp's CPU backend
//! computes them: activations quantized per 32 values exactly as its AVX2 `quantize_row_q8_0` /
//! `q8_1` do (scale `127 / max|x|`, round half to even, f16 scales), integer dot products summed
//! in the same 8 lanes of 4, scales applied with fused multiply-adds and the lanes reduced in
//! the same order. The result is bit-for-bit llama.cpp's on this path, which keeps greedy
//! decoding on its tokens where two candidates are within a few hundredths of a logit (an
//! approximately equal product flips those: see tests/gguf_reference.rs).
//!
//! candle 0.11 runs Q4_1 through a scalar loop; this one vectorises. Other types stay on
//! candle's kernels (`llama.rs`).

use candle_core::quantized::GgmlDType;
use half::f16;
use multiversion::multiversion;

/// Weights this module multiplies: one block of 32 values is `bytes` long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Q4_0,
    Q4_1,
    Q8_0,
}

impl Kind {
    pub fn of(t: GgmlDType) -> Option<Kind> {
        match t {
            GgmlDType::Q4_0 => Some(Kind::Q4_0),
            GgmlDType::Q4_1 => Some(Kind::Q4_1),
            GgmlDType::Q8_0 => Some(Kind::Q8_0),
            _ => None,
        }
    }

    fn bytes(self) -> usize {
        match self {
            Kind::Q4_0 => 18,
            Kind::Q4_1 => 20,
            Kind::Q8_0 => 34,
        }
    }
}

/// One quantized block of 32 activations: scale, `d · Σq` (for Q4_1's offset), values.
#[derive(Clone, Copy)]
struct Act {
    d: f32,
    s: f32,
    q: [i8; 32],
}

const ZERO: Act = Act {
    d: 0.0,
    s: 0.0,
    q: [0; 32],
};

fn f16_at(b: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([b[at], b[at + 1]]).to_f32()
}

/// llama.cpp's `quantize_row_q8_0` / `q8_1` (AVX2) for one row of a multiple of 32 values.
fn quantize_row(x: &[f32], out: &mut [Act]) {
    for (blk, a) in x.chunks_exact(32).zip(out.iter_mut()) {
        let amax = blk.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
        let mut sum = 0i32;
        for (q, v) in a.q.iter_mut().zip(blk) {
            let r = (v * id).round_ties_even() as i32;
            *q = r as i8;
            sum += r;
        }
        a.d = f16::from_f32(d).to_f32();
        a.s = f16::from_f32(d * sum as f32).to_f32();
    }
}

/// `_mm256` lanes reduced as llama.cpp's `hsum_float_8`.
#[inline(always)]
fn hsum8(a: &[f32; 8]) -> f32 {
    let r0 = a[4] + a[0];
    let r1 = a[5] + a[1];
    let r2 = a[6] + a[2];
    let r3 = a[7] + a[3];
    (r0 + r2) + (r1 + r3)
}

/// One weight row (`k / 32` blocks) against one activation row.
#[inline(always)]
fn dot(kind: Kind, w: &[u8], a: &[Act]) -> f32 {
    let mut acc = [0f32; 8];
    let mut summs = 0f32;
    for (blk, a) in w.chunks_exact(kind.bytes()).zip(a) {
        let mut x = [0i32; 32];
        let scale = match kind {
            Kind::Q8_0 => {
                for (x, b) in x.iter_mut().zip(&blk[2..34]) {
                    *x = i32::from(*b as i8);
                }
                f16_at(blk, 0) * a.d
            }
            Kind::Q4_0 | Kind::Q4_1 => {
                let qs = if kind == Kind::Q4_0 {
                    &blk[2..18]
                } else {
                    &blk[4..20]
                };
                let off = if kind == Kind::Q4_0 { 8 } else { 0 };
                for j in 0..16 {
                    x[j] = i32::from(qs[j] & 0x0F) - off;
                    x[j + 16] = i32::from(qs[j] >> 4) - off;
                }
                if kind == Kind::Q4_1 {
                    summs = f16_at(blk, 2).mul_add(a.s, summs);
                }
                f16_at(blk, 0) * a.d
            }
        };
        for (l, acc) in acc.iter_mut().enumerate() {
            let lane: i32 = (0..4)
                .map(|i| x[4 * l + i] * i32::from(a.q[4 * l + i]))
                .sum();
            *acc = scale.mul_add(lane as f32, *acc);
        }
    }
    hsum8(&acc) + summs
}

#[cfg(target_arch = "x86_64")]
mod avx2;

/// Columns `cols` of `x · mᵀ` for the quantized rows `acts`, written into `out` (`rows × n`).
#[multiversion(targets("x86_64+avx512f+avx512bw+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
fn dot_columns(m: &QMatrix, acts: &[Act], cols: std::ops::Range<usize>, out: &mut [f32]) {
    let blocks = m.k / 32;
    let row_bytes = blocks * m.kind.bytes();
    let rows = acts.len() / blocks;
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2")
        && std::arch::is_x86_feature_detected!("fma")
        && std::arch::is_x86_feature_detected!("f16c")
    {
        let row =
            |r: usize| &acts[(r * blocks).min(acts.len())..((r + 1) * blocks).min(acts.len())];
        let vnni = if std::arch::is_x86_feature_detected!("avxvnni") {
            avx2::AVX_VNNI
        } else if std::arch::is_x86_feature_detected!("avx512vnni")
            && std::arch::is_x86_feature_detected!("avx512vl")
        {
            avx2::AVX512_VNNI
        } else {
            avx2::PAIRS
        };
        let mut r0 = 0;
        while r0 < rows {
            // Eight rows per pass while eight remain, then the rest (1 to 4 at a time): the
            // kernel is compiled for those counts only.
            let take = if rows - r0 >= avx2::GROUP {
                avx2::GROUP
            } else {
                (rows - r0).min(4)
            };
            let c = avx2::Columns {
                kind: m.kind,
                data: &m.data,
                row_bytes,
                group: std::array::from_fn(|i| row(r0 + i)),
                rows: take,
                r0,
                n: m.n,
            };
            r0 += take;
            // SAFETY: AVX2, FMA and F16C were detected just above, and the VNNI variants'
            // features where they are picked.
            unsafe {
                match vnni {
                    avx2::AVX_VNNI => avx2::columns_avx_vnni(&c, cols.clone(), out),
                    avx2::AVX512_VNNI => avx2::columns_avx512_vnni(&c, cols.clone(), out),
                    _ => avx2::columns_pairs(&c, cols.clone(), out),
                }
            }
        }
        return;
    }
    for c in cols {
        let wrow = &m.data[c * row_bytes..(c + 1) * row_bytes];
        for r in 0..rows {
            out[r * m.n + c] = dot(m.kind, wrow, &acts[r * blocks..(r + 1) * blocks]);
        }
    }
}

/// Products of fewer rows run on the calling thread. A one-row product of this model's matrices
/// is ~0.1 ms of work, and candle's pool meets at a barrier after each: on a busy machine the
/// barrier waits for a descheduled worker (measured on 2 shared cores: 9–23 tokens/s single-stream
/// with the pool, 39 without).
const PARALLEL_MIN_ROWS: usize = 4;

/// Raw `kind` blocks of an `n × k` matrix, row-major (`k` a multiple of 32).
pub struct QMatrix {
    pub kind: Kind,
    pub n: usize,
    pub k: usize,
    data: Vec<u8>,
}

impl QMatrix {
    pub fn new(kind: Kind, n: usize, k: usize, data: Vec<u8>) -> Result<Self, String> {
        if !k.is_multiple_of(32) || data.len() != n * k / 32 * kind.bytes() {
            return Err(format!(
                "{kind:?} matrix {n}x{k} cannot hold {} bytes",
                data.len()
            ));
        }
        Ok(QMatrix { kind, n, k, data })
    }

    /// `x` (`rows × k`) times the matrix transposed: `rows × n`.
    pub fn forward(&self, x: &[f32], rows: usize) -> Vec<f32> {
        let blocks = self.k / 32;
        let mut acts = vec![ZERO; rows * blocks];
        for (row, a) in x.chunks_exact(self.k).zip(acts.chunks_exact_mut(blocks)) {
            quantize_row(row, a);
        }
        let n = self.n;
        let mut out = vec![0f32; rows * n];
        let out_ptr = SendPtr(out.as_mut_ptr());
        let run = |cols: std::ops::Range<usize>| {
            // SAFETY: callers get disjoint column ranges, and `dot_columns` writes only the
            // elements `r * n + c` of its own columns; `out` outlives the call.
            let out = unsafe { std::slice::from_raw_parts_mut(out_ptr.get(), rows * n) };
            dot_columns(self, &acts, cols, out);
        };
        if rows < PARALLEL_MIN_ROWS {
            run(0..n);
        } else {
            // Columns are split over candle's thread pool.
            const CHUNK: usize = 16;
            candle_core::utils::barrier_pool().execute_chunked(n.div_ceil(CHUNK), |range| {
                run(range.start * CHUNK..(range.end * CHUNK).min(n))
            });
        }
        out
    }
}

#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

impl SendPtr {
    fn get(self) -> *mut f32 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::QTensor;
    use candle_core::{Device, Tensor};

    /// Against a float product of the dequantized weights and the quantized activations
    /// (exact up to float summation), for each type, several rows and a column count that is
    /// not a multiple of the chunk.
    #[test]
    fn matches_dequantized_product() {
        let (n, k, rows) = (37, 96, 3);
        let w: Vec<f32> = (0..n * k)
            .map(|i| ((i * 7919 % 201) as f32 - 100.0) / 50.0)
            .collect();
        let x: Vec<f32> = (0..rows * k)
            .map(|i| ((i * 104729 % 301) as f32 - 150.0) / 70.0)
            .collect();
        for dtype in [GgmlDType::Q4_0, GgmlDType::Q4_1, GgmlDType::Q8_0] {
            let t = Tensor::from_vec(w.clone(), (n, k), &Device::Cpu).unwrap();
            let q = QTensor::quantize(&t, dtype).unwrap();
            let deq: Vec<f32> = q
                .dequantize(&Device::Cpu)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            let m =
                QMatrix::new(Kind::of(dtype).unwrap(), n, k, q.data().unwrap().to_vec()).unwrap();
            let got = m.forward(&x, rows);
            let mut acts = vec![ZERO; k / 32];
            for r in 0..rows {
                quantize_row(&x[r * k..(r + 1) * k], &mut acts);
                let xq: Vec<f64> = acts
                    .iter()
                    .flat_map(|a| a.q.iter().map(move |q| f64::from(*q) * f64::from(a.d)))
                    .collect();
                for c in 0..n {
                    let want: f64 = (0..k).map(|i| f64::from(deq[c * k + i]) * xq[i]).sum();
                    let g = f64::from(got[r * n + c]);
                    // Q4_1's offset term uses the f16-rounded d·Σq, as llama.cpp does.
                    assert!(
                        (g - want).abs() < 2e-2 * (1.0 + want.abs()),
                        "{dtype:?} [{r},{c}]: {g} vs {want}"
                    );
                }
            }
        }
    }

    /// `forward` (the AVX2 path where the CPU has it, its 8- and 4-row passes and the rest) and
    /// the portable `dot` agree bit for bit. Without AVX2 `forward` runs `dot` itself; the AVX2
    /// kernels alone are `every_vector_variant_equals_portable`, which fails on such a machine.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx2_equals_portable_bit_for_bit() {
        // 13 rows: a pass of 8, one of 4, one of 1.
        let (n, k, rows) = (5, 128, 13);
        let w: Vec<f32> = (0..n * k)
            .map(|i| ((i * 7919 % 251) as f32 - 125.0) / 40.0)
            .collect();
        let x: Vec<f32> = (0..rows * k)
            .map(|i| ((i * 104729 % 307) as f32 - 150.0) / 30.0)
            .collect();
        for dtype in [GgmlDType::Q4_0, GgmlDType::Q4_1, GgmlDType::Q8_0] {
            let t = Tensor::from_vec(w.clone(), (n, k), &Device::Cpu).unwrap();
            let q = QTensor::quantize(&t, dtype).unwrap();
            let m =
                QMatrix::new(Kind::of(dtype).unwrap(), n, k, q.data().unwrap().to_vec()).unwrap();
            let got = m.forward(&x, rows);
            let blocks = k / 32;
            let mut acts = vec![ZERO; rows * blocks];
            for (row, a) in x.chunks_exact(k).zip(acts.chunks_exact_mut(blocks)) {
                quantize_row(row, a);
            }
            let row_bytes = blocks * m.kind.bytes();
            for r in 0..rows {
                for c in 0..n {
                    let want = dot(
                        m.kind,
                        &m.data[c * row_bytes..(c + 1) * row_bytes],
                        &acts[r * blocks..(r + 1) * blocks],
                    );
                    assert_eq!(
                        got[r * n + c].to_bits(),
                        want.to_bits(),
                        "{dtype:?} [{r},{c}]"
                    );
                }
            }
        }
    }

    /// Each vector variant this machine has (AVX2's instruction pair, AVX-VNNI, AVX512-VNNI), for
    /// every group size the kernel is compiled for (1 to 4 rows, and 8), gives the portable `dot`'s
    /// bits.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn every_vector_variant_equals_portable() {
        use std::arch::is_x86_feature_detected as has;
        type Entry = unsafe fn(&avx2::Columns, std::ops::Range<usize>, &mut [f32]);
        let base = has!("avx2") && has!("fma") && has!("f16c");
        let variants: [(&str, bool, Entry); 3] = [
            ("pairs", base, avx2::columns_pairs),
            ("avx-vnni", base && has!("avxvnni"), avx2::columns_avx_vnni),
            (
                "avx512-vnni",
                base && has!("avx512vnni") && has!("avx512vl"),
                avx2::columns_avx512_vnni,
            ),
        ];
        let (n, k) = (7, 256);
        let w: Vec<f32> = (0..n * k)
            .map(|i| ((i * 7919 % 251) as f32 - 125.0) / 40.0)
            .collect();
        // Rows with one large value each: their other values quantize small, the large one to
        // ±127, the operands that would saturate a careless sum.
        let x: Vec<f32> = (0..avx2::GROUP * k)
            .map(|i| match i % 97 {
                0 => 900.0,
                1 => -900.0,
                _ => ((i * 104729 % 307) as f32 - 150.0) / 30.0,
            })
            .collect();
        let blocks = k / 32;
        let mut acts = vec![ZERO; avx2::GROUP * blocks];
        for (row, a) in x.chunks_exact(k).zip(acts.chunks_exact_mut(blocks)) {
            quantize_row(row, a);
        }
        let mut ran = Vec::new();
        for (name, available, entry) in variants {
            if !available {
                eprintln!("{name}: not on this machine, not checked");
                continue;
            }
            ran.push(name);
            for dtype in [GgmlDType::Q4_0, GgmlDType::Q4_1, GgmlDType::Q8_0] {
                let t = Tensor::from_vec(w.clone(), (n, k), &Device::Cpu).unwrap();
                let q = QTensor::quantize(&t, dtype).unwrap();
                let kind = Kind::of(dtype).unwrap();
                let data = q.data().unwrap().to_vec();
                let row_bytes = blocks * kind.bytes();
                for rows in [1, 2, 3, 4, avx2::GROUP] {
                    let row = |r: usize| {
                        &acts
                            [(r * blocks).min(rows * blocks)..((r + 1) * blocks).min(rows * blocks)]
                    };
                    let job = avx2::Columns {
                        kind,
                        data: &data,
                        row_bytes,
                        group: std::array::from_fn(row),
                        rows,
                        r0: 0,
                        n,
                    };
                    let mut out = vec![0f32; rows * n];
                    // SAFETY: the variant's features were detected above.
                    unsafe { entry(&job, 0..n, &mut out) };
                    for r in 0..rows {
                        for c in 0..n {
                            let want = dot(
                                kind,
                                &data[c * row_bytes..(c + 1) * row_bytes],
                                &acts[r * blocks..(r + 1) * blocks],
                            );
                            assert_eq!(
                                out[r * n + c].to_bits(),
                                want.to_bits(),
                                "{name} {dtype:?} rows {rows} [{r},{c}]"
                            );
                        }
                    }
                }
            }
        }
        assert!(!ran.is_empty(), "no vector variant runs on this machine");
    }

    #[test]
    fn quantization_rounds_half_to_even_like_llama_cpp() {
        let mut x = [0f32; 32];
        x[0] = 127.0;
        x[1] = 2.5;
        x[2] = 3.5;
        x[3] = -2.5;
        let mut a = [ZERO];
        quantize_row(&x, &mut a);
        assert_eq!(&a[0].q[..4], &[127, 2, 4, -2]);
        assert_eq!(a[0].d, 1.0);
        assert_eq!(a[0].s, 131.0);
        assert_eq!(hsum8(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]), 36.0);
    }
}
