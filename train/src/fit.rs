//! The training loop: epochs of (shuffled) batches, optimiser steps, per-epoch log lines, and early
//! stopping on a validation set with the best weights restored.

use candle_core::{DType, Device, Tensor, Var};
use serde::Serialize;

use crate::error::{Result, TrainError};
use crate::evaluate::{Evaluation, correct_predictions, evaluate};
use crate::loss::{Examples, LossKind, TargetTensor, data_loss, weight_penalty};
use crate::model::Network;
use crate::optim::OptimizerSettings;
use crate::rng::SeededRng;

#[derive(Debug, Clone, Serialize)]
pub struct FitSettings {
    pub epochs: usize,
    /// Ignored (one full batch) for batch gradient descent.
    pub batch_size: usize,
    pub optimizer: OptimizerSettings,
    pub loss: LossKind,
    pub l1: f64,
    pub l2: f64,
    /// Stop after this many epochs without a lower validation loss and keep the best epoch's weights
    /// (needs validation examples; 0 turns early stopping off).
    pub patience: usize,
    pub seed: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct EpochRecord {
    pub epoch: usize,
    /// Mean training objective over the epoch's batches (data loss + penalty).
    pub loss: f64,
    pub accuracy: Option<f64>,
    pub validation: Option<Evaluation>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FitReport {
    pub epochs_run: usize,
    /// The epoch whose weights were kept (the last one without early stopping).
    pub best_epoch: usize,
    pub stopped_early: bool,
    pub history: Vec<EpochRecord>,
}

/// Trains `network` in place. `label` prefixes the log lines (e.g. `fold 2/5`).
pub fn fit(
    network: &Network,
    train: &Examples,
    validation: Option<&Examples>,
    settings: &FitSettings,
    label: &str,
) -> Result<FitReport> {
    let params = network.parameters();
    let mut optimizer = settings.optimizer.build();
    let mut rng = SeededRng::derive(settings.seed, 0x5EED_F1A7);
    let full_batch = settings.optimizer.kind.uses_full_batch();
    let batch_size = if full_batch {
        train.len()
    } else {
        settings.batch_size.clamp(1, train.len().max(1))
    };

    let mut history = Vec::with_capacity(settings.epochs);
    let mut best: Option<(f64, usize, Vec<Tensor>)> = None;
    let mut stopped_early = false;
    for epoch in 1..=settings.epochs {
        let mut order: Vec<u32> = (0..train.len() as u32).collect();
        if !full_batch {
            rng.shuffle(&mut order);
        }
        let mut objective_sum = 0.0;
        let mut correct = 0usize;
        for chunk in order.chunks(batch_size) {
            let batch = if full_batch {
                train.clone()
            } else {
                train.select(&Tensor::from_slice(chunk, chunk.len(), &Device::Cpu)?)?
            };
            let pre_output = network.forward_without_output_activation(&batch.inputs)?;
            let mut objective = data_loss(
                settings.loss,
                &pre_output,
                network.output_activation(),
                &batch.targets,
            )?;
            if let Some(penalty) = weight_penalty(network, settings.l1, settings.l2)? {
                objective = (objective + penalty)?;
            }
            let value = objective.to_dtype(DType::F64)?.to_scalar::<f64>()?;
            if !value.is_finite() {
                return Err(TrainError::Diverged(value));
            }
            objective_sum += value * chunk.len() as f64;
            if let TargetTensor::Classes(ids) = &batch.targets {
                correct += correct_predictions(&pre_output, ids)?;
            }
            let grads = gradients(&objective, &params)?;
            optimizer.step(&params, &grads)?;
        }
        let record = EpochRecord {
            epoch,
            loss: objective_sum / train.len().max(1) as f64,
            accuracy: matches!(train.targets, TargetTensor::Classes(_))
                .then(|| correct as f64 / train.len().max(1) as f64),
            validation: validation
                .map(|v| evaluate(network, v, settings.loss))
                .transpose()?,
        };
        log_epoch(label, settings.epochs, &record);
        let validation_loss = record.validation.map(|v| v.loss);
        history.push(record);

        if let Some(loss) = validation_loss.filter(|_| settings.patience > 0) {
            let improved = best
                .as_ref()
                .is_none_or(|(best_loss, _, _)| loss < *best_loss);
            if improved {
                best = Some((loss, epoch, snapshot(&params)?));
            } else if best
                .as_ref()
                .is_some_and(|(_, best_epoch, _)| epoch - best_epoch >= settings.patience)
            {
                stopped_early = epoch < settings.epochs;
                break;
            }
        }
    }
    let epochs_run = history.len();
    let best_epoch = match best {
        Some((_, best_epoch, weights)) => {
            for (param, saved) in params.iter().zip(&weights) {
                param.set(saved)?;
            }
            if stopped_early || best_epoch != epochs_run {
                tracing::info!(
                    "{label}restored the weights of epoch {best_epoch} (lowest validation loss)"
                );
            }
            best_epoch
        }
        None => epochs_run,
    };
    Ok(FitReport {
        epochs_run,
        best_epoch,
        stopped_early,
        history,
    })
}

/// d objective / d param for every parameter (zeros for a parameter the objective does not use).
pub fn gradients(objective: &Tensor, params: &[Var]) -> Result<Vec<Tensor>> {
    let store = objective.backward()?;
    params
        .iter()
        .map(|p| match store.get(p.as_tensor()) {
            Some(grad) => Ok(grad.detach()),
            None => Ok(p.as_tensor().zeros_like()?),
        })
        .collect()
}

fn snapshot(params: &[Var]) -> Result<Vec<Tensor>> {
    Ok(params
        .iter()
        .map(|p| p.as_detached_tensor().copy())
        .collect::<candle_core::Result<_>>()?)
}

fn log_epoch(label: &str, epochs: usize, record: &EpochRecord) {
    use std::fmt::Write;
    let mut line = format!(
        "{label}epoch {}/{epochs} loss {:.4}",
        record.epoch, record.loss
    );
    if let Some(accuracy) = record.accuracy {
        let _ = write!(line, " acc {accuracy:.4}");
    }
    if let Some(validation) = &record.validation {
        let _ = write!(line, " val_loss {:.4}", validation.loss);
        if let Some(accuracy) = validation.accuracy {
            let _ = write!(line, " val_acc {accuracy:.4}");
        }
    }
    tracing::info!("{line}");
}
