//! Optimisers, written here rather than taken from candle-nn so each update rule is explicit and tested.
//!
//! Every optimiser sees the parameters and their gradients for one batch and updates the parameters in
//! place. Batch gradient descent and mini-batch SGD share the plain update `w -= lr·g`; they differ in
//! how the training loop batches the data (one full batch, in order, versus seeded shuffled mini-batches).

mod adaptive;
mod sgd;

use candle_core::{Tensor, Var};
use serde::{Deserialize, Serialize};

pub use adaptive::{AdaGrad, Adam, RmsProp};
pub use sgd::Sgd;

use crate::error::Result;

pub trait Optimizer {
    /// Applies one update; `grads[i]` is the gradient of the loss with respect to `params[i]`.
    fn step(&mut self, params: &[Var], grads: &[Tensor]) -> Result<()>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    /// Batch gradient descent: the whole training set is one batch.
    Gd,
    /// Mini-batch stochastic gradient descent with seeded shuffling.
    Sgd,
    /// Mini-batch SGD with (heavy-ball) momentum.
    Momentum,
    Adam,
    #[serde(alias = "rms-prop")]
    Rmsprop,
    Adagrad,
}

impl OptimizerKind {
    pub fn default_learning_rate(self) -> f64 {
        match self {
            OptimizerKind::Gd => 0.1,
            OptimizerKind::Sgd | OptimizerKind::Momentum | OptimizerKind::Adagrad => 0.01,
            OptimizerKind::Adam | OptimizerKind::Rmsprop => 0.001,
        }
    }

    /// Whether the training loop feeds the whole set as one unshuffled batch.
    pub fn uses_full_batch(self) -> bool {
        self == OptimizerKind::Gd
    }
}

/// The update rule and its hyper-parameters.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OptimizerSettings {
    pub kind: OptimizerKind,
    pub learning_rate: f64,
    /// Momentum coefficient μ (momentum only).
    pub momentum: f64,
    /// Adam's β₁, β₂.
    pub beta1: f64,
    pub beta2: f64,
    /// RMSprop's decay ρ.
    pub rho: f64,
    /// Added to the denominator of the adaptive methods.
    pub epsilon: f64,
}

impl OptimizerSettings {
    pub fn new(kind: OptimizerKind, learning_rate: f64) -> Self {
        OptimizerSettings {
            kind,
            learning_rate,
            momentum: 0.9,
            beta1: 0.9,
            beta2: 0.999,
            rho: 0.9,
            epsilon: 1e-8,
        }
    }

    pub fn build(&self) -> Box<dyn Optimizer> {
        let lr = self.learning_rate;
        match self.kind {
            OptimizerKind::Gd | OptimizerKind::Sgd => Box::new(Sgd::new(lr, 0.0)),
            OptimizerKind::Momentum => Box::new(Sgd::new(lr, self.momentum)),
            OptimizerKind::Adam => Box::new(Adam::new(lr, self.beta1, self.beta2, self.epsilon)),
            OptimizerKind::Rmsprop => Box::new(RmsProp::new(lr, self.rho, self.epsilon)),
            OptimizerKind::Adagrad => Box::new(AdaGrad::new(lr, self.epsilon)),
        }
    }
}

/// Per-parameter state, created as zeros on the first step.
fn zero_state(state: &mut Vec<Tensor>, params: &[Var]) -> Result<()> {
    if state.len() != params.len() {
        *state = params
            .iter()
            .map(|p| p.as_tensor().zeros_like())
            .collect::<candle_core::Result<_>>()?;
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod test_support {
    use candle_core::{Device, Tensor, Var};

    use super::Optimizer;

    /// Starts from w = [1, -2], applies g₁ = [0.5, -1] then g₂ = [-0.25, 2], returns w after each step.
    pub fn two_steps(optimizer: &mut dyn Optimizer) -> [Vec<f64>; 2] {
        let param = Var::new(&[1.0f64, -2.0], &Device::Cpu).expect("var");
        let mut after = Vec::new();
        for grad in [[0.5f64, -1.0], [-0.25, 2.0]] {
            let grad = Tensor::new(&grad, &Device::Cpu).expect("grad");
            optimizer
                .step(std::slice::from_ref(&param), &[grad])
                .expect("step");
            after.push(param.as_tensor().to_vec1::<f64>().expect("vec"));
        }
        [after[0].clone(), after[1].clone()]
    }

    pub fn assert_close(actual: &[f64], expected: &[f64]) {
        for (a, e) in actual.iter().zip(expected) {
            assert!(
                (a - e).abs() < 1e-9,
                "got {actual:?}, expected {expected:?}"
            );
        }
    }
}
