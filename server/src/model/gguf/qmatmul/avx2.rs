//! The same dot product with AVX2 + FMA intrinsics, instruction for instruction what llama.cpp's
//! `ggml_vec_dot_q4_0_q8_0` / `q4_1_q8_1` / `q8_0_q8_0` do, so it gives the portable `dot`'s
//! (and llama.cpp's) result.

use std::arch::x86_64::*;
use std::ops::Range;

use super::{Act, Kind};

/// One weight block as 32 bytes: values for Q8_0, nibbles (minus 8 for Q4_0) for Q4_x.
#[inline(always)]
unsafe fn weights(kind: Kind, blk: &[u8]) -> __m256i {
    unsafe {
        match kind {
            Kind::Q8_0 => _mm256_loadu_si256(blk[2..34].as_ptr().cast()),
            Kind::Q4_0 | Kind::Q4_1 => {
                let at = if kind == Kind::Q4_0 { 2 } else { 4 };
                let tmp = _mm_loadu_si128(blk[at..at + 16].as_ptr().cast());
                let bytes =
                    _mm256_insertf128_si256(_mm256_castsi128_si256(tmp), _mm_srli_epi16(tmp, 4), 1);
                let nibbles = _mm256_and_si256(_mm256_set1_epi8(0x0F), bytes);
                if kind == Kind::Q4_0 {
                    _mm256_sub_epi8(nibbles, _mm256_set1_epi8(8))
                } else {
                    nibbles
                }
            }
        }
    }
}

/// Which instruction sums four byte products into each 32-bit lane (`V` below): 0 AVX2's
/// `maddubs` + `madd` pair, 1 AVX-VNNI's `vpdpbusd`, 2 AVX512-VNNI's (VL) encoding of it, as
/// llama.cpp picks. The sums are the same integers (`maddubs` cannot saturate on these
/// operands: at most 2 · 15 · 127 for Q4_1 and 2 · 128 · 127 otherwise), so every variant
/// gives the same floats.
pub const PAIRS: u8 = 0;
pub const AVX_VNNI: u8 = 1;
pub const AVX512_VNNI: u8 = 2;

/// Eight lanes of four products each, as floats.
#[inline(always)]
unsafe fn lanes<const V: u8>(kind: Kind, qx: __m256i, qy: __m256i) -> __m256 {
    unsafe {
        let (ux, sy) = if kind == Kind::Q4_1 {
            (qx, qy)
        } else {
            (_mm256_sign_epi8(qx, qx), _mm256_sign_epi8(qy, qx))
        };
        let sums = match V {
            AVX_VNNI => _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), ux, sy),
            AVX512_VNNI => _mm256_dpbusd_epi32(_mm256_setzero_si256(), ux, sy),
            _ => _mm256_madd_epi16(_mm256_maddubs_epi16(ux, sy), _mm256_set1_epi16(1)),
        };
        _mm256_cvtepi32_ps(sums)
    }
}

#[inline(always)]
unsafe fn hsum(x: __m256) -> f32 {
    unsafe {
        let mut r = _mm_add_ps(_mm256_extractf128_ps(x, 1), _mm256_castps256_ps128(x));
        r = _mm_add_ps(r, _mm_movehl_ps(r, r));
        r = _mm_add_ss(r, _mm_movehdup_ps(r));
        _mm_cvtss_f32(r)
    }
}

/// The f16 at `blk[at..at + 2]`, converted by the F16C instruction. `half`'s conversion
/// checks for F16C at run time and calls a function that cannot inline here, on every
/// block: with two scales per Q4_1 block that was a large share of the product.
#[inline(always)]
unsafe fn f16c_at(blk: &[u8], at: usize) -> f32 {
    unsafe {
        let bits = i32::from(u16::from_le_bytes([blk[at], blk[at + 1]]));
        _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(bits)))
    }
}

/// The most activation rows one pass over the weights carries. Each block's weights are widened
/// once per pass, and a batched decode step reads each matrix once per pass: with 8 rows, a
/// 200-token prefill widens each block 25 times instead of 50, and 8 streams' decode step reads
/// the weights once. Measured only with the AVX512-VNNI variant (32 vector registers hold the 8
/// accumulators); with AVX2's 16 registers the row sums may spill, not measured.
pub const GROUP: usize = 8;

/// Columns `cols` of the product for the first `rows` (1 to 4, or 8) activation rows of `group`,
/// written to rows `r0..` of `out` (rows of length `n`). Each weight block is read and
/// widened once for all the rows. One entry point per `V`, each compiled for its features.
pub struct Columns<'a> {
    pub kind: Kind,
    pub data: &'a [u8],
    pub row_bytes: usize,
    pub group: [&'a [Act]; GROUP],
    pub rows: usize,
    pub r0: usize,
    pub n: usize,
}

#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn columns_pairs(c: &Columns, cols: Range<usize>, out: &mut [f32]) {
    unsafe { columns::<PAIRS>(c, cols, out) }
}

#[target_feature(enable = "avx2,fma,f16c,avxvnni")]
pub unsafe fn columns_avx_vnni(c: &Columns, cols: Range<usize>, out: &mut [f32]) {
    unsafe { columns::<AVX_VNNI>(c, cols, out) }
}

#[target_feature(enable = "avx2,fma,f16c,avx512vnni,avx512vl")]
pub unsafe fn columns_avx512_vnni(c: &Columns, cols: Range<usize>, out: &mut [f32]) {
    unsafe { columns::<AVX512_VNNI>(c, cols, out) }
}

#[inline(always)]
unsafe fn columns<const V: u8>(c: &Columns, cols: Range<usize>, out: &mut [f32]) {
    // The kind and the row count as constants: the block loop then holds no branch on
    // either and keeps its accumulators in registers (with both as run-time values it took
    // ~47 instructions per block and row, twice llama.cpp's loop).
    macro_rules! by_kind {
        ($r:literal) => {
            match c.kind {
                Kind::Q4_0 => columns_of::<V, $r>(Kind::Q4_0, c, cols, out),
                Kind::Q4_1 => columns_of::<V, $r>(Kind::Q4_1, c, cols, out),
                Kind::Q8_0 => columns_of::<V, $r>(Kind::Q8_0, c, cols, out),
            }
        };
    }
    unsafe {
        match c.rows {
            1 => by_kind!(1),
            2 => by_kind!(2),
            3 => by_kind!(3),
            4 => by_kind!(4),
            _ => by_kind!(8),
        }
    }
}

/// How far ahead of the block being read the weights are prefetched, in bytes. A decode step
/// streams ~100 MB of weights once, from L3 or memory; the hardware prefetcher alone kept one
/// core at ~4 GB/s (5.2 ns per Q4_1 block against 1.7 ns when the matrix sits in L2). Asking
/// for the bytes ~6 rows ahead measured 2.3 ns per block (2048-16384 all within noise; 512
/// half as good) and single-stream SmolLM2 decode 39 -> 67 tokens/s.
const PREFETCH_AHEAD: usize = 2048;

#[inline(always)]
unsafe fn columns_of<const V: u8, const R: usize>(
    kind: Kind,
    job: &Columns,
    cols: Range<usize>,
    out: &mut [f32],
) {
    let (data, row_bytes, group, r0, n) = (job.data, job.row_bytes, job.group, job.r0, job.n);
    unsafe {
        for c in cols {
            let Some(wrow) = data.get(c * row_bytes..(c + 1) * row_bytes) else {
                return;
            };
            let mut acc = [_mm256_setzero_ps(); R];
            let mut summs = [0f32; R];
            for (b, blk) in wrow.chunks_exact(kind.bytes()).enumerate() {
                // Never faults, even past the end of the matrix.
                _mm_prefetch::<_MM_HINT_T0>(blk.as_ptr().wrapping_add(PREFETCH_AHEAD).cast());
                let qx = weights(kind, blk);
                let dx = f16c_at(blk, 0);
                let m = if kind == Kind::Q4_1 {
                    f16c_at(blk, 2)
                } else {
                    0.0
                };
                for r in 0..R {
                    let Some(a) = group[r].get(b) else {
                        continue;
                    };
                    let qy = _mm256_loadu_si256(a.q.as_ptr().cast());
                    if kind == Kind::Q4_1 {
                        summs[r] = m.mul_add(a.s, summs[r]);
                    }
                    let scale = _mm256_set1_ps(dx * a.d);
                    acc[r] = _mm256_fmadd_ps(scale, lanes::<V>(kind, qx, qy), acc[r]);
                }
            }
            for r in 0..R {
                if let Some(o) = out.get_mut((r0 + r) * n + c) {
                    *o = hsum(acc[r]) + summs[r];
                }
            }
        }
    }
}
