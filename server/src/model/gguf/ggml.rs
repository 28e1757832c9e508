//! Scalar definitions of the few pieces of arithmetic where llama.cpp's CPU backend does not
//! compute the correctly rounded result, so that this server can do exactly what it does: its
//! vector `expf` (used by softmax and SiLU), the order `_mm512_reduce_add_ps` adds 16 lanes in,
//! and round-to-nearest-even f16 storage.
//!
//! The reference is llama.cpp built for this machine class (x86-64 with AVX-512, as
//! llama-cpp-python's pip build compiles it here: `-march=native`), as vendored by
//! llama-cpp-python 0.3.36: `ggml_v_expf` in `ggml-cpu/vec.h` (AVX-512 variant) and GCC 12's
//! `_mm512_reduce_add_ps`. The functions are written so the compiler can vectorise loops over
//! them, but their results do not depend on the instruction set this server runs on.

/// `x` rounded to the nearest f16 (ties to even), as llama.cpp stores keys, values and the
/// f16 operands of its attention products.
#[inline(always)]
pub fn f16_round(x: f32) -> f32 {
    half::f16::from_f32(x).to_f32()
}

/// `x · 2^n` for an integral `n` in [-192, 192], rounded once (AVX-512 `vscalefps`). The
/// product is exact in f64, so one conversion rounds it as the instruction does, subnormal
/// and overflowing results included.
#[inline(always)]
fn scalef(x: f32, n: f32) -> f32 {
    let pow2 = f64::from_bits(((n as i64 + 1023) as u64) << 52);
    (f64::from(x) * pow2) as f32
}

/// llama.cpp's `ggml_v_expf` (AVX-512 variant), one lane: `e^x` as `2^n · p(b)` with
/// `n = round(x / ln 2)`, `b = x - n ln 2` in two parts and a degree-5 polynomial; within 1.5
/// ulp of `e^x`, 0 below about -104, infinite above about 88.4.
#[inline(always)]
pub fn expf(x: f32) -> f32 {
    const SHIFT: f32 = 12582912.0; // 0x1.8p23: adding it rounds to an integer
    let z = x.mul_add(f32::from_bits(0x3fb8_aa3b), SHIFT); // 0x1.715476p+0 = 1/ln 2
    let n = z - SHIFT;
    let b = (-n).mul_add(
        f32::from_bits(0x35bf_be8e), // 0x1.7f7d1cp-20: ln 2, low part
        (-n).mul_add(f32::from_bits(0x3f31_7200), x), // 0x1.62e4p-1: ln 2, high part
    );
    let u = b * b;
    let j = f32::from_bits(0x3c07_2010) // 0x1.0e4020p-7
        .mul_add(b, f32::from_bits(0x3d2b_9f17)) // 0x1.573e2ep-5
        .mul_add(
            u,
            f32::from_bits(0x3e2a_af33).mul_add(b, f32::from_bits(0x3eff_fedb)), // 0x1.555e66p-3, 0x1.fffdb6p-2
        )
        .mul_add(u, f32::from_bits(0x3f7f_fff6).mul_add(b, 1.0)); // 0x1.ffffecp-1
    if n.abs() > 192.0 {
        // Also catches x = -inf (n = -inf), which the polynomial turns into NaN.
        if n <= 0.0 { 0.0 } else { f32::INFINITY }
    } else {
        scalef(j, n)
    }
}

/// llama.cpp's `ggml_v_silu`: `x / (1 + expf(-x))`.
#[inline(always)]
pub fn silu(x: f32) -> f32 {
    x / (1.0 + expf(0.0 - x))
}

/// f16 values (as their bits) widened to f32, exactly. half's slice conversion measured
/// 0.4 ns per value here, a third of a decode step's attention time; F16C converts 8 per
/// instruction.
pub fn f16_bits_to_f32(src: &[u16], dst: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("f16c") && std::arch::is_x86_feature_detected!("avx") {
        // SAFETY: F16C and AVX were detected just above.
        unsafe { f16_bits_to_f32_f16c(src, dst) };
        return;
    }
    use half::slice::{HalfBitsSliceExt, HalfFloatSliceExt};
    src.reinterpret_cast::<half::f16>()
        .convert_to_f32_slice(dst);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx,f16c")]
unsafe fn f16_bits_to_f32_f16c(src: &[u16], dst: &mut [f32]) {
    use std::arch::x86_64::{__m128i, _mm_loadu_si128, _mm256_cvtph_ps, _mm256_storeu_ps};
    assert_eq!(src.len(), dst.len(), "f16 to f32: lengths differ");
    let mut s = src.chunks_exact(8);
    let mut d = dst.chunks_exact_mut(8);
    for (s, d) in (&mut s).zip(&mut d) {
        // SAFETY: both chunks hold exactly 8 elements (16 and 32 bytes), unaligned access.
        unsafe {
            let h = _mm_loadu_si128(s.as_ptr().cast::<__m128i>());
            _mm256_storeu_ps(d.as_mut_ptr(), _mm256_cvtph_ps(h));
        }
    }
    for (s, d) in s.remainder().iter().zip(d.into_remainder()) {
        *d = half::f16::from_bits(*s).to_f32();
    }
}

/// The sum of 16 lanes in the order GCC's `_mm512_reduce_add_ps` adds them: upper half onto
/// lower half (8), again (4), then `(r0 + r2) + (r1 + r3)`.
#[inline(always)]
pub fn reduce16(a: &[f32; 16]) -> f32 {
    let mut h = [0f32; 8];
    for i in 0..8 {
        h[i] = a[i + 8] + a[i];
    }
    let q = [h[4] + h[0], h[5] + h[1], h[6] + h[2], h[7] + h[3]];
    (q[0] + q[2]) + (q[1] + q[3])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ulps(a: f32, b: f32) -> i64 {
        (i64::from(a.to_bits() as i32) - i64::from(b.to_bits() as i32)).abs()
    }

    #[test]
    fn expf_is_close_to_exp_and_saturates_like_ggml() {
        let mut x = -103.0f32;
        while x < 88.0 {
            let (got, want) = (expf(x), f64::from(x).exp() as f32);
            assert!(ulps(got, want) <= 2, "expf({x}) = {got}, e^x = {want}");
            x += 0.0137;
        }
        assert_eq!(expf(0.0), 1.0);
        assert_eq!(expf(f32::NEG_INFINITY), 0.0);
        assert_eq!(expf(-200.0), 0.0);
        assert_eq!(expf(200.0), f32::INFINITY);
        // Results below the normal range are rounded once, like vscalefps.
        let tiny = expf(-95.0);
        assert!(tiny > 0.0 && !tiny.is_normal());
        assert!((silu(2.0) - 2.0 / (1.0 + (-2f32).exp())).abs() < 1e-6);
        assert_eq!(silu(-120.0), -0.0);
    }

    #[test]
    fn reduce16_adds_in_gcc_order() {
        // 2^24 + 1 - 2^24 depends on the order: lanes 0 and 8 meet first.
        let mut a = [0f32; 16];
        a[0] = 16_777_216.0;
        a[8] = 1.0;
        a[4] = -16_777_216.0;
        // (a0 + a8) rounds the 1 away; then + a4 gives 0.
        assert_eq!(reduce16(&a), 0.0);
        let mut b = [0f32; 16];
        b[0] = 16_777_216.0;
        b[4] = -16_777_216.0;
        b[8] = 1.0;
        b[12] = 1.0;
        // (b0 + b8) rounds to 2^24, (b4 + b12) = -(2^24 - 1) is exact: the sum is 1 (in index
        // order it would be 2: 2^24 - 2^24 + 1 + 1).
        assert_eq!(reduce16(&b), 1.0);
        let c: [f32; 16] = std::array::from_fn(|i| i as f32);
        assert_eq!(reduce16(&c), 120.0);
    }

    #[test]
    fn f16_slices_widen_exactly() {
        // Every f16 bit pattern (NaNs compared by bits class), in a length that leaves a tail.
        let src: Vec<u16> = (0..=u16::MAX).chain(0..5).collect();
        let mut got = vec![0f32; src.len()];
        f16_bits_to_f32(&src, &mut got);
        for (s, g) in src.iter().zip(&got) {
            let want = half::f16::from_bits(*s).to_f32();
            assert!(
                want.to_bits() == g.to_bits() || (want.is_nan() && g.is_nan()),
                "{s:#06x}: {g} != {want}"
            );
        }
    }

    #[test]
    fn f16_rounds_to_nearest_even() {
        // The f16 ulp at 1 is 2^-10: half of it rounds to even (down), one and a half up.
        assert_eq!(f16_round(1.0 + 1.0 / 2048.0), 1.0);
        assert_eq!(f16_round(1.0 + 3.0 / 2048.0), 1.0 + 2.0 / 1024.0);
        assert_eq!(f16_round(1.0 + 3.0 / 4096.0), 1.0 + 1.0 / 1024.0);
    }
}
