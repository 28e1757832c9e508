//! Optimisers with per-coordinate step sizes: Adam, RMSprop, AdaGrad.

use candle_core::{Tensor, Var};

use super::{Optimizer, zero_state};
use crate::error::Result;

/// Adam (Kingma & Ba): `m = β₁m + (1-β₁)g; v = β₂v + (1-β₂)g²; w -= lr·m̂/(√v̂ + ε)` with bias-corrected
/// `m̂ = m/(1-β₁ᵗ)`, `v̂ = v/(1-β₂ᵗ)`.
pub struct Adam {
    learning_rate: f64,
    beta1: f64,
    beta2: f64,
    epsilon: f64,
    step: i32,
    first_moment: Vec<Tensor>,
    second_moment: Vec<Tensor>,
}

impl Adam {
    pub fn new(learning_rate: f64, beta1: f64, beta2: f64, epsilon: f64) -> Self {
        Adam {
            learning_rate,
            beta1,
            beta2,
            epsilon,
            step: 0,
            first_moment: Vec::new(),
            second_moment: Vec::new(),
        }
    }
}

impl Optimizer for Adam {
    fn step(&mut self, params: &[Var], grads: &[Tensor]) -> Result<()> {
        zero_state(&mut self.first_moment, params)?;
        zero_state(&mut self.second_moment, params)?;
        self.step += 1;
        let first_correction = 1.0 - self.beta1.powi(self.step);
        let second_correction = 1.0 - self.beta2.powi(self.step);
        for (i, (param, grad)) in params.iter().zip(grads).enumerate() {
            let grad = grad.detach();
            let m = (self.first_moment[i].affine(self.beta1, 0.0)?
                + grad.affine(1.0 - self.beta1, 0.0)?)?;
            let v = (self.second_moment[i].affine(self.beta2, 0.0)?
                + grad.sqr()?.affine(1.0 - self.beta2, 0.0)?)?;
            let m_hat = m.affine(1.0 / first_correction, 0.0)?;
            let denominator = v
                .affine(1.0 / second_correction, 0.0)?
                .sqrt()?
                .affine(1.0, self.epsilon)?;
            let update = (m_hat / denominator)?.affine(self.learning_rate, 0.0)?;
            param.set(&(param.as_detached_tensor() - update)?)?;
            self.first_moment[i] = m;
            self.second_moment[i] = v;
        }
        Ok(())
    }
}

/// RMSprop: `s = ρs + (1-ρ)g²; w -= lr·g/(√s + ε)`.
pub struct RmsProp {
    learning_rate: f64,
    rho: f64,
    epsilon: f64,
    mean_square: Vec<Tensor>,
}

impl RmsProp {
    pub fn new(learning_rate: f64, rho: f64, epsilon: f64) -> Self {
        RmsProp {
            learning_rate,
            rho,
            epsilon,
            mean_square: Vec::new(),
        }
    }
}

impl Optimizer for RmsProp {
    fn step(&mut self, params: &[Var], grads: &[Tensor]) -> Result<()> {
        zero_state(&mut self.mean_square, params)?;
        for ((param, grad), mean_square) in params.iter().zip(grads).zip(&mut self.mean_square) {
            let grad = grad.detach();
            *mean_square =
                (mean_square.affine(self.rho, 0.0)? + grad.sqr()?.affine(1.0 - self.rho, 0.0)?)?;
            let denominator = mean_square.sqrt()?.affine(1.0, self.epsilon)?;
            let update = (grad / denominator)?.affine(self.learning_rate, 0.0)?;
            param.set(&(param.as_detached_tensor() - update)?)?;
        }
        Ok(())
    }
}

/// AdaGrad: `G += g²; w -= lr·g/(√G + ε)` (accumulator starts at 0).
pub struct AdaGrad {
    learning_rate: f64,
    epsilon: f64,
    sum_of_squares: Vec<Tensor>,
}

impl AdaGrad {
    pub fn new(learning_rate: f64, epsilon: f64) -> Self {
        AdaGrad {
            learning_rate,
            epsilon,
            sum_of_squares: Vec::new(),
        }
    }
}

impl Optimizer for AdaGrad {
    fn step(&mut self, params: &[Var], grads: &[Tensor]) -> Result<()> {
        zero_state(&mut self.sum_of_squares, params)?;
        for ((param, grad), sum) in params.iter().zip(grads).zip(&mut self.sum_of_squares) {
            let grad = grad.detach();
            *sum = (&*sum + grad.sqr()?)?;
            let denominator = sum.sqrt()?.affine(1.0, self.epsilon)?;
            let update = (grad / denominator)?.affine(self.learning_rate, 0.0)?;
            param.set(&(param.as_detached_tensor() - update)?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optim::test_support::{assert_close, two_steps};

    #[test]
    fn adam_first_steps() {
        // Step 1: m̂ = g, v̂ = g², so w moves lr·g/(|g|+ε) ≈ lr·sign(g).
        // Step 2: m = 0.09·g₁ + 0.1·g₂ = [0.02, 0.11], m̂ = m/0.19;
        //         v = 0.000999·g₁² + 0.001·g₂² = [0.00031225, 0.004999], v̂ = v/0.001999.
        let [first, second] = two_steps(&mut Adam::new(0.1, 0.9, 0.999, 1e-8));
        assert_close(
            &first,
            &[1.0 - 0.1 * 0.5 / (0.5 + 1e-8), -2.0 + 0.1 / (1.0 + 1e-8)],
        );
        let m_hat = [0.02 / 0.19, 0.11 / 0.19];
        let v_hat = [0.00031225f64 / 0.001999, 0.004999 / 0.001999];
        let expected: Vec<f64> = (0..2)
            .map(|i| first[i] - 0.1 * m_hat[i] / (v_hat[i].sqrt() + 1e-8))
            .collect();
        assert_close(&second, &expected);
        assert_close(&second, &[0.873366298708, -1.936610353472]);
    }

    #[test]
    fn rmsprop_first_steps() {
        // s₁ = 0.1·g₁² = [0.025, 0.1] → w₁ = w₀ - 0.1·g₁/√s₁ = [1 - 0.1/√0.1, -2 + 0.1/√0.1]
        // s₂ = 0.9·s₁ + 0.1·g₂² = [0.02875, 0.49]
        let [first, second] = two_steps(&mut RmsProp::new(0.1, 0.9, 1e-8));
        let step_one = 0.1 / (0.1f64.sqrt() + 1e-8 / 5.0);
        assert!((first[0] - (1.0 - step_one)).abs() < 1e-7);
        assert_close(&first, &[0.683772253983, -1.683772243983]);
        let expected = [
            first[0] + 0.1 * 0.25 / (0.02875f64.sqrt() + 1e-8),
            first[1] - 0.1 * 2.0 / (0.49f64.sqrt() + 1e-8),
        ];
        assert_close(&second, &expected);
    }

    #[test]
    fn adagrad_first_steps() {
        // G₁ = g₁² → w₁ ≈ w₀ - lr·sign(g₁); G₂ = [0.3125, 5] → w₂ = w₁ - 0.1·g₂/√G₂
        let [first, second] = two_steps(&mut AdaGrad::new(0.1, 1e-8));
        assert_close(&first, &[0.900000002, -1.900000001]);
        let expected = [
            first[0] + 0.025 / (0.3125f64.sqrt() + 1e-8),
            first[1] - 0.2 / (5f64.sqrt() + 1e-8),
        ];
        assert_close(&second, &expected);
        assert_close(&second, &[0.944721360750, -1.989442719700]);
    }
}
