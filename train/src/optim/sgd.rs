//! Plain and momentum gradient descent.

use candle_core::{Tensor, Var};

use super::{Optimizer, zero_state};
use crate::error::Result;

/// `w -= lr·g`; with momentum μ > 0: `v = μ·v + g; w -= lr·v` (the PyTorch form; v starts at 0).
pub struct Sgd {
    learning_rate: f64,
    momentum: f64,
    velocity: Vec<Tensor>,
}

impl Sgd {
    pub fn new(learning_rate: f64, momentum: f64) -> Self {
        Sgd {
            learning_rate,
            momentum,
            velocity: Vec::new(),
        }
    }
}

impl Optimizer for Sgd {
    fn step(&mut self, params: &[Var], grads: &[Tensor]) -> Result<()> {
        if self.momentum == 0.0 {
            for (param, grad) in params.iter().zip(grads) {
                let updated = (param.as_detached_tensor()
                    - grad.detach().affine(self.learning_rate, 0.0)?)?;
                param.set(&updated)?;
            }
            return Ok(());
        }
        zero_state(&mut self.velocity, params)?;
        for ((param, grad), velocity) in params.iter().zip(grads).zip(&mut self.velocity) {
            *velocity = (velocity.affine(self.momentum, 0.0)? + grad.detach())?;
            let updated =
                (param.as_detached_tensor() - velocity.affine(self.learning_rate, 0.0)?)?;
            param.set(&updated)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optim::test_support::{assert_close, two_steps};

    #[test]
    fn plain_sgd_first_steps() {
        // w₁ = [1 - 0.1·0.5, -2 + 0.1·1] ; w₂ = w₁ - 0.1·[-0.25, 2]
        let [first, second] = two_steps(&mut Sgd::new(0.1, 0.0));
        assert_close(&first, &[0.95, -1.9]);
        assert_close(&second, &[0.975, -2.1]);
    }

    #[test]
    fn momentum_first_steps() {
        // v₁ = g₁ → w₁ = [0.95, -1.9]; v₂ = 0.9·[0.5, -1] + [-0.25, 2] = [0.2, 1.1] → w₂ = w₁ - 0.1·v₂
        let [first, second] = two_steps(&mut Sgd::new(0.1, 0.9));
        assert_close(&first, &[0.95, -1.9]);
        assert_close(&second, &[0.93, -2.01]);
    }
}
