//! Scoring a network on examples: mean data loss and, for classifiers, accuracy.

use candle_core::{D, DType};
use serde::Serialize;

use crate::error::Result;
use crate::loss::{Examples, LossKind, TargetTensor, data_loss};
use crate::model::Network;

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Evaluation {
    pub loss: f64,
    /// `None` for regression.
    pub accuracy: Option<f64>,
    pub examples: usize,
}

pub fn evaluate(network: &Network, examples: &Examples, loss: LossKind) -> Result<Evaluation> {
    let pre_output = network.forward_without_output_activation(&examples.inputs)?;
    let loss_value = data_loss(
        loss,
        &pre_output,
        network.output_activation(),
        &examples.targets,
    )?
    .to_dtype(DType::F64)?
    .to_scalar::<f64>()?;
    let accuracy = match &examples.targets {
        TargetTensor::Classes(ids) => {
            Some(correct_predictions(&pre_output, ids)? as f64 / examples.len().max(1) as f64)
        }
        TargetTensor::Values(_) => None,
    };
    Ok(Evaluation {
        loss: loss_value,
        accuracy,
        examples: examples.len(),
    })
}

/// How many rows' arg-max equals their class id.
pub fn correct_predictions(
    scores: &candle_core::Tensor,
    ids: &candle_core::Tensor,
) -> Result<usize> {
    let predicted = scores.argmax(D::Minus1)?.to_vec1::<u32>()?;
    let expected = ids.to_vec1::<u32>()?;
    Ok(predicted
        .iter()
        .zip(&expected)
        .filter(|(p, e)| p == e)
        .count())
}
