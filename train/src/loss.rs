//! Losses (sparse categorical cross-entropy, MSE) and the L1/L2 weight penalties added to them.

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::data::{Dataset, Targets};
use crate::error::{Result, TrainError};
use crate::model::network::{activate, log_softmax};
use crate::model::{Activation, Network};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum LossKind {
    /// Sparse categorical cross-entropy on a softmax output (labels are class ids).
    CrossEntropy,
    /// Mean squared error (numeric label column, one output unit).
    Mse,
}

/// Targets as a tensor: class ids `[n]` (u32) or values `[n, 1]`.
#[derive(Debug, Clone)]
pub enum TargetTensor {
    Classes(Tensor),
    Values(Tensor),
}

/// Network inputs and targets, ready for candle.
#[derive(Debug, Clone)]
pub struct Examples {
    pub inputs: Tensor,
    pub targets: TargetTensor,
}

impl Examples {
    /// `features` must already be standardised if the model standardises.
    pub fn new(
        features: Vec<f32>,
        n_features: usize,
        targets: &Targets,
        dtype: DType,
    ) -> Result<Examples> {
        let device = Device::Cpu;
        let rows = targets.len();
        let inputs = Tensor::from_vec(features, (rows, n_features), &device)?.to_dtype(dtype)?;
        let targets = match targets {
            Targets::Classes { ids, .. } => {
                TargetTensor::Classes(Tensor::from_slice(ids, rows, &device)?)
            }
            Targets::Values(values) => TargetTensor::Values(
                Tensor::from_slice(values, (rows, 1), &device)?.to_dtype(dtype)?,
            ),
        };
        Ok(Examples { inputs, targets })
    }

    pub fn from_dataset(
        data: &Dataset,
        standardize: Option<&crate::standardize::Standardizer>,
        dtype: DType,
    ) -> Result<Examples> {
        let features = match standardize {
            Some(standardizer) => standardizer.apply(&data.features),
            None => data.features.clone(),
        };
        Examples::new(features, data.n_features, &data.targets, dtype)
    }

    pub fn len(&self) -> usize {
        self.inputs.dims()[0]
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The rows at `indices` (a u32 tensor).
    pub fn select(&self, indices: &Tensor) -> Result<Examples> {
        let targets = match &self.targets {
            TargetTensor::Classes(ids) => TargetTensor::Classes(ids.index_select(indices, 0)?),
            TargetTensor::Values(values) => TargetTensor::Values(values.index_select(indices, 0)?),
        };
        Ok(Examples {
            inputs: self.inputs.index_select(indices, 0)?,
            targets,
        })
    }
}

/// The mean data loss of a batch, from the network output *before* its final activation.
pub fn data_loss(
    kind: LossKind,
    pre_output: &Tensor,
    output_activation: Activation,
    targets: &TargetTensor,
) -> Result<Tensor> {
    let rows = pre_output.dims()[0] as f64;
    match (kind, targets) {
        (LossKind::CrossEntropy, TargetTensor::Classes(ids)) => {
            if output_activation != Activation::Softmax {
                return Err(TrainError::Settings(
                    "cross-entropy needs a softmax output layer".to_owned(),
                ));
            }
            let picked = log_softmax(pre_output)?.gather(&ids.unsqueeze(1)?, 1)?;
            Ok(picked.sum_all()?.affine(-1.0 / rows, 0.0)?)
        }
        (LossKind::Mse, TargetTensor::Values(values)) => {
            let prediction = activate(pre_output, output_activation)?;
            Ok((prediction - values)?.sqr()?.mean_all()?)
        }
        (LossKind::CrossEntropy, TargetTensor::Values(_)) => Err(TrainError::Settings(
            "cross-entropy needs class labels".to_owned(),
        )),
        (LossKind::Mse, TargetTensor::Classes(_)) => {
            Err(TrainError::Settings("mse needs numeric targets".to_owned()))
        }
    }
}

/// `l1·Σ|W| + l2·ΣW²` over the weight matrices (biases are not penalised), or `None` when both are 0.
pub fn weight_penalty(network: &Network, l1: f64, l2: f64) -> Result<Option<Tensor>> {
    let mut total: Option<Tensor> = None;
    for weight in network.weights() {
        let mut terms = Vec::new();
        if l1 > 0.0 {
            terms.push(weight.abs()?.sum_all()?.affine(l1, 0.0)?);
        }
        if l2 > 0.0 {
            terms.push(weight.sqr()?.sum_all()?.affine(l2, 0.0)?);
        }
        for term in terms {
            total = Some(match total {
                Some(sum) => (sum + term)?,
                None => term,
            });
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cross_entropy_matches_hand_value() {
        let logits = Tensor::new(&[[0f64, 0.0], [1.0, 3.0]], &Device::Cpu).expect("t");
        let ids = TargetTensor::Classes(Tensor::new(&[0u32, 1], &Device::Cpu).expect("t"));
        let loss =
            data_loss(LossKind::CrossEntropy, &logits, Activation::Softmax, &ids).expect("loss");
        // (ln 2 + ln(1 + e^-2)) / 2
        let expected = (2f64.ln() + (1.0 + (-2f64).exp()).ln()) / 2.0;
        assert!((loss.to_scalar::<f64>().expect("scalar") - expected).abs() < 1e-12);
    }

    #[test]
    fn mse_matches_hand_value() {
        let out = Tensor::new(&[[1f64], [3.0]], &Device::Cpu).expect("t");
        let y = TargetTensor::Values(Tensor::new(&[[0f64], [1.0]], &Device::Cpu).expect("t"));
        let loss = data_loss(LossKind::Mse, &out, Activation::Linear, &y).expect("loss");
        assert!((loss.to_scalar::<f64>().expect("scalar") - 2.5).abs() < 1e-12);
    }

    #[test]
    fn penalty_sums_weights_only() {
        use crate::model::LayerConfig;
        use std::collections::HashMap;
        let dev = Device::Cpu;
        let layers = [LayerConfig {
            name: "d".into(),
            units: 2,
            activation: Activation::Linear,
        }];
        let tensors = HashMap::from([
            (
                "d.weight".to_owned(),
                Tensor::new(&[[1f64, -2.0], [0.5, 0.0]], &dev).expect("t"),
            ),
            (
                "d.bias".to_owned(),
                Tensor::new(&[100f64, 100.0], &dev).expect("t"),
            ),
        ]);
        let network = Network::from_tensors(2, &layers, &tensors, DType::F64).expect("net");
        let penalty = weight_penalty(&network, 0.1, 0.01)
            .expect("penalty")
            .expect("some");
        // 0.1·3.5 + 0.01·5.25
        assert!((penalty.to_scalar::<f64>().expect("scalar") - 0.4025).abs() < 1e-12);
        assert!(
            weight_penalty(&network, 0.0, 0.0)
                .expect("penalty")
                .is_none()
        );
    }
}
