//! Choosing the next token from logits: greedy at temperature 0, else top-k, temperature and
//! top-p (nucleus) sampling from a per-sequence random stream, so a `seed` gives the same tokens
//! whatever else is running.

/// Sampling parameters of one request (validated by the HTTP layer).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplingParams {
    /// 0 is greedy.
    pub temperature: f32,
    /// In (0, 1]; 1 keeps every token.
    pub top_p: f32,
    /// 0 keeps every token.
    pub top_k: usize,
    pub seed: Option<u64>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            seed: None,
        }
    }
}

/// splitmix64: small, fast, and well distributed for this purpose.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The highest logit's index (the first on ties, as llama.cpp's greedy sampler).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, v) in logits.iter().enumerate() {
        if *v > logits[best] {
            best = i;
        }
    }
    best as u32
}

pub struct Sampler {
    params: SamplingParams,
    rng: Rng,
}

impl Sampler {
    /// `fallback_seed` seeds requests that gave none.
    pub fn new(params: SamplingParams, fallback_seed: u64) -> Self {
        Sampler {
            rng: Rng::new(params.seed.unwrap_or(fallback_seed)),
            params,
        }
    }

    pub fn sample(&mut self, logits: &[f32]) -> u32 {
        let p = self.params;
        if p.temperature <= 0.0 || p.top_k == 1 || logits.len() < 2 {
            return argmax(logits);
        }
        // Candidates, best first: the top k (all when k is 0), sorted only when top-p needs it.
        let mut idx: Vec<u32> = (0..logits.len() as u32).collect();
        let by_logit = |a: &u32, b: &u32| logits[*b as usize].total_cmp(&logits[*a as usize]);
        if p.top_k > 0 && p.top_k < idx.len() {
            idx.select_nth_unstable_by(p.top_k - 1, by_logit);
            idx.truncate(p.top_k);
        }
        if p.top_p < 1.0 {
            idx.sort_unstable_by(by_logit);
        }
        let max = idx
            .iter()
            .map(|&i| logits[i as usize])
            .fold(f32::NEG_INFINITY, f32::max);
        let inv_t = 1.0 / f64::from(p.temperature);
        let mut weights: Vec<f64> = idx
            .iter()
            .map(|&i| ((f64::from(logits[i as usize]) - f64::from(max)) * inv_t).exp())
            .collect();
        let total: f64 = weights.iter().sum();
        if p.top_p < 1.0 {
            // Keep the smallest prefix whose probability reaches top_p (at least one token).
            let mut acc = 0.0;
            let mut keep = weights.len();
            for (n, w) in weights.iter().enumerate() {
                acc += w / total;
                if acc >= f64::from(p.top_p) {
                    keep = n + 1;
                    break;
                }
            }
            weights.truncate(keep);
            idx.truncate(keep);
        }
        let total: f64 = weights.iter().sum();
        let mut r = self.rng.next_f64() * total;
        for (i, w) in idx.iter().zip(&weights) {
            if r < *w {
                return *i;
            }
            r -= w;
        }
        idx.last().copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(temperature: f32, top_p: f32, top_k: usize, seed: u64) -> SamplingParams {
        SamplingParams {
            temperature,
            top_p,
            top_k,
            seed: Some(seed),
        }
    }

    #[test]
    fn greedy_takes_the_first_maximum() {
        assert_eq!(argmax(&[0.1, 3.0, -1.0, 3.0]), 1);
        let mut s = Sampler::new(params(0.0, 1.0, 0, 1), 0);
        assert_eq!(s.sample(&[0.1, 3.0, -1.0, 3.0]), 1);
        let mut s = Sampler::new(params(1.0, 1.0, 1, 1), 0);
        assert_eq!(s.sample(&[5.0, 3.0, 9.0]), 2);
    }

    #[test]
    fn same_seed_same_tokens_different_seed_differs() {
        let logits: Vec<f32> = (0..50).map(|i| (i % 7) as f32 * 0.3).collect();
        let draw = |seed| {
            let mut s = Sampler::new(params(1.0, 1.0, 0, seed), 0);
            (0..40).map(|_| s.sample(&logits)).collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
    }

    #[test]
    fn top_k_and_top_p_restrict_the_candidates() {
        let logits = [0.0f32, 1.0, 2.0, 3.0, 4.0];
        let mut s = Sampler::new(params(5.0, 1.0, 2, 3), 0);
        for _ in 0..200 {
            assert!(s.sample(&logits) >= 3);
        }
        // p(4) = 0.64, p(3) = 0.24 at temperature 1: top_p 0.6 keeps only token 4.
        let mut s = Sampler::new(params(1.0, 0.6, 0, 3), 0);
        for _ in 0..200 {
            assert_eq!(s.sample(&logits), 4);
        }
    }

    #[test]
    fn frequencies_follow_the_softmax() {
        let logits = [0.0f32, (3.0f32).ln()]; // p = 0.25, 0.75
        let mut s = Sampler::new(params(1.0, 1.0, 0, 11), 0);
        let n = 20_000;
        let ones = (0..n).filter(|_| s.sample(&logits) == 1).count();
        let share = ones as f64 / n as f64;
        assert!((share - 0.75).abs() < 0.02, "{share}");
        // Temperature 2 flattens it: p(1) = sqrt(3) / (1 + sqrt(3)) ~ 0.634.
        let mut s = Sampler::new(params(2.0, 1.0, 0, 11), 0);
        let ones = (0..n).filter(|_| s.sample(&logits) == 1).count();
        let share = ones as f64 / n as f64;
        assert!((share - 0.634).abs() < 0.02, "{share}");
    }
}
