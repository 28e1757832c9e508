//! The dense feed-forward network, as candle `Var`s so autograd can differentiate through it.

use std::collections::HashMap;

use candle_core::{D, DType, Device, Tensor, Var};

use super::config::{Activation, LayerConfig};
use crate::error::{Result, TrainError};
use crate::rng::SeededRng;

/// One `h = act(W·h + b)` layer; `weight` is `[units, in]` like candle's `Linear`.
#[derive(Debug, Clone)]
pub struct Dense {
    pub name: String,
    pub weight: Var,
    pub bias: Var,
    pub activation: Activation,
}

#[derive(Debug, Clone)]
pub struct Network {
    pub input_size: usize,
    pub layers: Vec<Dense>,
}

impl Network {
    /// Glorot-uniform weights (Keras's default) drawn from our own PRNG, zero biases.
    pub fn init(
        input_size: usize,
        layers: &[LayerConfig],
        seed: u64,
        dtype: DType,
        device: &Device,
    ) -> Result<Network> {
        let mut rng = SeededRng::derive(seed, 0x1A7E_0075);
        let mut fan_in = input_size;
        let mut dense = Vec::with_capacity(layers.len());
        for layer in layers {
            let limit = (6.0 / (fan_in + layer.units) as f64).sqrt();
            let values: Vec<f64> = (0..layer.units * fan_in)
                .map(|_| rng.uniform(-limit, limit))
                .collect();
            let weight =
                Tensor::from_vec(values, (layer.units, fan_in), device)?.to_dtype(dtype)?;
            let bias = Tensor::zeros(layer.units, dtype, device)?;
            dense.push(Dense {
                name: layer.name.clone(),
                weight: Var::from_tensor(&weight)?,
                bias: Var::from_tensor(&bias)?,
                activation: layer.activation,
            });
            fan_in = layer.units;
        }
        Ok(Network {
            input_size,
            layers: dense,
        })
    }

    /// Builds the network from `N.weight` / `N.bias` tensors, checking every shape.
    pub fn from_tensors(
        input_size: usize,
        layers: &[LayerConfig],
        tensors: &HashMap<String, Tensor>,
        dtype: DType,
    ) -> Result<Network> {
        let mut fan_in = input_size;
        let mut dense = Vec::with_capacity(layers.len());
        for layer in layers {
            let fetch = |suffix: &str, shape: &[usize]| -> Result<Var> {
                let key = format!("{}.{suffix}", layer.name);
                let tensor = tensors
                    .get(&key)
                    .ok_or_else(|| TrainError::Model(format!("missing tensor `{key}`")))?;
                if tensor.dims() != shape {
                    return Err(TrainError::Model(format!(
                        "tensor `{key}` has shape {:?}, expected {shape:?}",
                        tensor.dims()
                    )));
                }
                Ok(Var::from_tensor(&tensor.to_dtype(dtype)?)?)
            };
            dense.push(Dense {
                name: layer.name.clone(),
                weight: fetch("weight", &[layer.units, fan_in])?,
                bias: fetch("bias", &[layer.units])?,
                activation: layer.activation,
            });
            fan_in = layer.units;
        }
        Ok(Network {
            input_size,
            layers: dense,
        })
    }

    pub fn layer_configs(&self) -> Vec<LayerConfig> {
        self.layers
            .iter()
            .map(|l| LayerConfig {
                name: l.name.clone(),
                units: l.bias.dims()[0],
                activation: l.activation,
            })
            .collect()
    }

    pub fn output_activation(&self) -> Activation {
        self.layers
            .last()
            .map_or(Activation::Linear, |l| l.activation)
    }

    /// Every trainable tensor, weights and biases interleaved layer by layer.
    pub fn parameters(&self) -> Vec<Var> {
        self.layers
            .iter()
            .flat_map(|l| [l.weight.clone(), l.bias.clone()])
            .collect()
    }

    /// The weight matrices only (the tensors L1/L2 penalties apply to).
    pub fn weights(&self) -> Vec<&Var> {
        self.layers.iter().map(|l| &l.weight).collect()
    }

    /// All layers, but the last one's activation is left out (logits for a softmax output).
    pub fn forward_without_output_activation(&self, input: &Tensor) -> Result<Tensor> {
        let mut hidden = input.clone();
        let last = self.layers.len().saturating_sub(1);
        for (index, layer) in self.layers.iter().enumerate() {
            hidden = hidden
                .matmul(&layer.weight.t()?)?
                .broadcast_add(&layer.bias)?;
            if index != last {
                hidden = activate(&hidden, layer.activation)?;
            }
        }
        Ok(hidden)
    }

    /// The full forward pass, as the server computes it.
    pub fn forward(&self, input: &Tensor) -> Result<Tensor> {
        let pre = self.forward_without_output_activation(input)?;
        activate(&pre, self.output_activation())
    }
}

/// `log(softmax(x))` over the last axis, computed stably and differentiably.
pub fn log_softmax(logits: &Tensor) -> Result<Tensor> {
    let max = logits.max_keepdim(D::Minus1)?.detach();
    let shifted = logits.broadcast_sub(&max)?;
    let log_sum = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
    Ok(shifted.broadcast_sub(&log_sum)?)
}

pub fn activate(x: &Tensor, activation: Activation) -> Result<Tensor> {
    Ok(match activation {
        Activation::Relu => x.relu()?,
        Activation::Tanh => x.tanh()?,
        Activation::Sigmoid => (x.neg()?.exp()? + 1.0)?.recip()?,
        Activation::Softmax => log_softmax(x)?.exp()?,
        Activation::Linear => x.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layers() -> Vec<LayerConfig> {
        vec![
            LayerConfig {
                name: "dense_0".into(),
                units: 3,
                activation: Activation::Relu,
            },
            LayerConfig {
                name: "dense_1".into(),
                units: 2,
                activation: Activation::Softmax,
            },
        ]
    }

    #[test]
    fn init_is_reproducible_and_shapes_follow_the_format() {
        let a = Network::init(4, &layers(), 9, DType::F32, &Device::Cpu).expect("init");
        let b = Network::init(4, &layers(), 9, DType::F32, &Device::Cpu).expect("init");
        assert_eq!(a.layers[0].weight.dims(), [3, 4]);
        assert_eq!(a.layers[1].weight.dims(), [2, 3]);
        let wa = a.layers[0]
            .weight
            .flatten_all()
            .and_then(|t| t.to_vec1::<f32>())
            .expect("vec");
        let wb = b.layers[0]
            .weight
            .flatten_all()
            .and_then(|t| t.to_vec1::<f32>())
            .expect("vec");
        assert_eq!(wa, wb);
        let limit = (6.0f32 / 7.0).sqrt();
        assert!(wa.iter().all(|w| w.abs() <= limit));
    }

    #[test]
    fn forward_matches_hand_computation() {
        let mut tensors = HashMap::new();
        let dev = Device::Cpu;
        tensors.insert(
            "dense_0.weight".to_owned(),
            Tensor::new(&[[1f32, -1.0], [0.5, 2.0], [0.0, 0.0]], &dev).expect("t"),
        );
        tensors.insert(
            "dense_0.bias".to_owned(),
            Tensor::new(&[0f32, -1.0, 1.0], &dev).expect("t"),
        );
        tensors.insert(
            "dense_1.weight".to_owned(),
            Tensor::new(&[[1f32, 0.0, 0.0], [0.0, 1.0, 1.0]], &dev).expect("t"),
        );
        tensors.insert(
            "dense_1.bias".to_owned(),
            Tensor::new(&[0f32, 0.0], &dev).expect("t"),
        );
        let net = Network::from_tensors(2, &layers(), &tensors, DType::F32).expect("builds");
        // x = [1, 2]: h = relu([1-2, 0.5+4-1, 0+1]) = [0, 3.5, 1]; logits = [0, 4.5]
        let x = Tensor::new(&[[1f32, 2.0]], &dev).expect("t");
        let out = net
            .forward(&x)
            .and_then(|t| Ok(t.to_vec2::<f32>()?))
            .expect("forward");
        let expected_1 = 1.0 / (1.0 + (-4.5f32).exp());
        assert!((out[0][1] - expected_1).abs() < 1e-6, "{out:?}");
        assert!((out[0][0] + out[0][1] - 1.0).abs() < 1e-6);
    }

    #[test]
    fn from_tensors_reports_wrong_shapes() {
        let mut tensors = HashMap::new();
        tensors.insert(
            "dense_0.weight".to_owned(),
            Tensor::zeros((3, 5), DType::F32, &Device::Cpu).expect("t"),
        );
        let error =
            Network::from_tensors(4, &layers(), &tensors, DType::F32).expect_err("bad shape");
        assert!(error.to_string().contains("dense_0.weight"));
    }
}
