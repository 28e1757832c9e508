use super::*;

fn heads(n_head: usize, n_head_kv: usize, head_dim: usize) -> Heads {
    Heads {
        n_head,
        n_head_kv,
        head_dim,
    }
}

/// Against a direct f64 evaluation (on the f16-rounded operands): 2 query heads sharing 1
/// key/value head, queries at positions 2 and 3 (two rows already cached), so both the
/// cache and causality count, for both kernels.
#[test]
fn matches_reference_with_grouped_heads() {
    let hd = 64;
    let h = heads(2, 1, hd);
    let f = |i: usize| ((i * 37 % 11) as f32 - 5.0) / 4.0 + (i % 7) as f32 / 1000.0;
    let total = 4;
    let mut cache = KvLayer::new(h, 8);
    let keys: Vec<f32> = (0..total * hd).map(f).collect();
    let values: Vec<f32> = (0..total * hd).map(|i| f(i + 7)).collect();
    for t in 0..total {
        cache.store(h, t, &keys[t * hd..][..hd], &values[t * hd..][..hd]);
    }
    for (start, rows) in [(2usize, 2usize), (3, 1)] {
        let q: Vec<f32> = (0..rows * 2 * hd).map(|i| f(i + 3) / 8.0).collect();
        let mut out = vec![0f32; rows * 2 * hd];
        let kernel = Kernel::for_rows(rows);
        attention(
            &q,
            &cache,
            start,
            h,
            kernel,
            &mut out,
            &mut Scratch::default(),
        );
        for i in 0..rows {
            for head in 0..2 {
                let len = start + i + 1;
                let qh = &q[i * 2 * hd + head * hd..][..hd];
                let s: Vec<f64> = (0..len)
                    .map(|t| {
                        (0..hd)
                            .map(|d| {
                                f64::from(f16_round(qh[d])) * f64::from(f16_round(keys[t * hd + d]))
                            })
                            .sum::<f64>()
                            / (hd as f64).sqrt()
                    })
                    .collect();
                let m = s.iter().cloned().fold(f64::MIN, f64::max);
                let z: f64 = s.iter().map(|v| (v - m).exp()).sum();
                for d in 0..hd {
                    let want: f64 = (0..len)
                        .map(|t| (s[t] - m).exp() / z * f64::from(f16_round(values[t * hd + d])))
                        .sum();
                    let got = out[i * 2 * hd + head * hd + d];
                    // Weights are rounded to f16 (relative error 2^-11).
                    assert!((f64::from(got) - want).abs() < 2e-3, "{got} vs {want}");
                }
            }
        }
    }
}

/// A prompt chunk long enough to split its heads over the pool gives the bits of one thread
/// doing every head (SmolLM2's grouping: 9 query heads over 3 key/value heads).
#[test]
fn heads_split_over_the_pool_match_one_thread() {
    let hd = 64;
    let h = heads(9, 3, hd);
    let f = |i: usize| ((i * 37 % 113) as f32 - 56.0) / 40.0 + (i % 7) as f32 / 1000.0;
    let (start, rows) = (5usize, PARALLEL_MIN_ROWS + 9);
    let total = start + rows;
    let mut cache = KvLayer::new(h, total + 3);
    for t in 0..total {
        let k: Vec<f32> = (0..3 * hd).map(|i| f(t * 3 * hd + i)).collect();
        let v: Vec<f32> = (0..3 * hd).map(|i| f(t * 3 * hd + i + 11)).collect();
        cache.store(h, t, &k, &v);
    }
    let q: Vec<f32> = (0..rows * 9 * hd).map(|i| f(i + 3) / 8.0).collect();
    for kernel in [Kernel::VecDot, Kernel::TinyBlas] {
        let mut split = vec![0f32; q.len()];
        attention(
            &q,
            &cache,
            start,
            h,
            kernel,
            &mut split,
            &mut Scratch::default(),
        );
        let mut one = vec![0f32; q.len()];
        let whole = SharedOut::new(&mut one);
        attend_heads(
            &q,
            &cache,
            start,
            h,
            kernel,
            0..9,
            whole,
            &mut Scratch::default(),
        );
        assert!(split.iter().any(|x| *x != 0.0));
        for (at, (a, b)) in split.iter().zip(&one).enumerate() {
            assert_eq!(a.to_bits(), b.to_bits(), "{kernel:?} element {at}");
        }
    }
}

/// The two kernels add the same terms in different orders: these values make the orders
/// visible (a large term and small ones in chosen lanes).
#[test]
fn kernels_sum_in_llama_cpps_lanes() {
    let mut x = vec![0f32; 64];
    let y = vec![1f32; 64];
    x[0] = 16_777_216.0; // 2^24, lane 0 of accumulator 0
    x[16] = 1.0; // lane 0 of accumulator 1
    x[32] = 1.0; // lane 0 of accumulator 2
    // vec_dot: (x0 + x32) + (x16 + x48) = (2^24 + 1 → 2^24) + 1 → 2^24.
    assert_eq!(dot_vec_dot_f16(&x, &y), 16_777_216.0);
    // tinyBLAS: ((x0 + x16) + x32) + x48: 2^24 + 1 → 2^24, again → 2^24.
    assert_eq!(dot_tinyblas(&x, &y), 16_777_216.0);
    x[48] = 1.0;
    // vec_dot: (2^24 + 1) → 2^24, (1 + 1) = 2 → 2^24 + 2.
    assert_eq!(dot_vec_dot_f16(&x, &y), 16_777_218.0);
    // tinyBLAS: each +1 rounds away.
    assert_eq!(dot_tinyblas(&x, &y), 16_777_216.0);
    // Leftovers past the last block of 64 go through f64.
    let (x2, y2) = (vec![1f32; 65], vec![1f32; 65]);
    assert_eq!(dot_vec_dot_f16(&x2, &y2), 65.0);

    // Weighted values: position t in lane t mod 64 (dot) or t mod 16 (tinyBLAS).
    let mut w = vec![1f32; 49];
    let mut v = vec![0f32; 49];
    v[0] = 16_777_216.0;
    v[16] = 1.0;
    v[48] = 1.0;
    w[32] = 0.0;
    let mut out = [0f32];
    weighted_values(Kernel::VecDot, &w, &v, &mut out, &mut Vec::new());
    // lanes 0 (2^24), 16 (1), 48 (1): (2^24 + 0) + (1 + 1).
    assert_eq!(out[0], 16_777_218.0);
    weighted_values(Kernel::TinyBlas, &w, &v, &mut out, &mut Vec::new());
    // all in lane 0, one at a time: the 1s round away.
    assert_eq!(out[0], 16_777_216.0);
}

#[test]
fn softmax_sums_to_one_and_rounds_to_f16() {
    let mut s: Vec<f32> = (0..37).map(|i| (i as f32 * 0.37).sin() * 8.0).collect();
    softmax_f16(&mut s, 0.125);
    let total: f32 = s.iter().sum();
    assert!((total - 1.0).abs() < 1e-2);
    assert!(s.iter().all(|p| f16_round(*p) == *p && *p >= 0.0));
}
