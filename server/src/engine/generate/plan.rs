//! The continuous-batching decisions, as pure functions: which waiting requests are admitted
//! (KV cache budget, running limit) and how many tokens each running sequence puts into the
//! next step (decodes first, then prompt chunks).

/// Tokens per sequence for the next step, in the order of `prompt_left` (prompt tokens each
/// running sequence still has to read; 0 for a sequence that is decoding).
///
/// Every decoding sequence gets its one token, so running streams advance every step however
/// long the prompts being read are; the rest of `max_step_tokens` goes to prompts in arrival
/// order, a long prompt taking several steps (chunked prefill). A sequence may get 0.
pub fn step_tokens(prompt_left: &[usize], max_step_tokens: usize) -> Vec<usize> {
    let decoding = prompt_left.iter().filter(|&&n| n == 0).count();
    let mut budget = max_step_tokens.saturating_sub(decoding);
    // Nothing decoding and no budget (a limit of 0): still make progress.
    if decoding == 0 && budget == 0 {
        budget = 1;
    }
    prompt_left
        .iter()
        .map(|&left| {
            if left == 0 {
                return 1;
            }
            let take = left.min(budget);
            budget -= take;
            take
        })
        .collect()
}

/// KV cache accounting in tokens: each running sequence reserves its prompt plus `max_tokens`
/// when admitted, so a running sequence never runs out of cache mid-generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvBudget {
    pub capacity: usize,
    pub reserved: usize,
}

impl KvBudget {
    pub fn fits(&self, tokens: usize) -> bool {
        self.reserved + tokens <= self.capacity
    }

    /// Share of the cache reserved, 0..1.
    pub fn usage(&self) -> f64 {
        if self.capacity == 0 {
            return 0.0;
        }
        self.reserved as f64 / self.capacity as f64
    }
}

/// How many requests at the head of the queue (reservations in arrival order) start now:
/// first come, first served — a large request at the head is not overtaken by smaller ones
/// behind it, so it cannot starve.
pub fn admit(queue: &[usize], running: usize, max_running: usize, kv: KvBudget) -> usize {
    let mut kv = kv;
    let mut n = 0;
    for &tokens in queue {
        if running + n >= max_running || !kv.fits(tokens) {
            break;
        }
        kv.reserved += tokens;
        n += 1;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_first_then_prompt_chunks_in_order() {
        assert_eq!(step_tokens(&[0, 0, 0], 8), [1, 1, 1]);
        // 2 decodes leave 6 tokens: the first prompt takes 5, the second the last 1.
        assert_eq!(step_tokens(&[0, 5, 0, 300], 8), [1, 5, 1, 1]);
        // A long prompt alone is chunked.
        assert_eq!(step_tokens(&[300], 128), [128]);
        assert_eq!(step_tokens(&[172], 128), [128]);
        // More decodes than the budget: all decode, prompts wait.
        assert_eq!(step_tokens(&[0, 0, 0, 10], 2), [1, 1, 1, 0]);
        // A zero budget still advances a lone prompt.
        assert_eq!(step_tokens(&[10], 0), [1]);
        assert_eq!(step_tokens(&[], 8), Vec::<usize>::new());
    }

    #[test]
    fn admission_is_fifo_within_kv_and_running_limits() {
        let kv = KvBudget {
            capacity: 100,
            reserved: 40,
        };
        assert_eq!(admit(&[30, 30, 10], 0, 8, kv), 2);
        // The head does not fit: nothing behind it jumps the queue.
        assert_eq!(admit(&[70, 10], 0, 8, kv), 0);
        assert_eq!(admit(&[10, 10, 10], 6, 8, kv), 2);
        assert_eq!(admit(&[], 0, 8, kv), 0);
        assert!(kv.fits(60) && !kv.fits(61));
        assert!((kv.usage() - 0.4).abs() < 1e-12);
        assert_eq!(
            KvBudget {
                capacity: 0,
                reserved: 0
            }
            .usage(),
            0.0
        );
    }
}
