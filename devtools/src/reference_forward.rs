//! A plain-loop forward pass for `sequential` models, independent of candle, so tests can check
//! the server's answers against a second implementation of docs/model-format.md.

use std::path::Path;

use anyhow::{Context, Result, ensure};
use safetensors::{Dtype, SafeTensors};

use sconce_format::sequential::{Activation, SequentialConfig};

/// Loads the model in `dir` and runs one example through it.
pub fn reference_forward(dir: &Path, input: &[f32]) -> Result<Vec<f32>> {
    let config: SequentialConfig = serde_json::from_slice(
        &std::fs::read(dir.join("config.json")).context("reading config.json")?,
    )
    .context("parsing config.json")?;
    ensure!(
        config.format == "sequential",
        "format is {:?}, not sequential",
        config.format
    );
    ensure!(
        input.len() == config.input_size,
        "input has {} values, the model expects {}",
        input.len(),
        config.input_size
    );
    let bytes =
        std::fs::read(dir.join("model.safetensors")).context("reading model.safetensors")?;
    let tensors = SafeTensors::deserialize(&bytes).context("parsing model.safetensors")?;

    let mut h = input.to_vec();
    if config.standardize {
        let mean = read_f32(&tensors, "standardize.mean", &[config.input_size])?;
        let std = read_f32(&tensors, "standardize.std", &[config.input_size])?;
        for ((x, m), s) in h.iter_mut().zip(&mean).zip(&std) {
            *x = (*x - m) / s;
        }
    }
    for layer in &config.layers {
        let fan_in = h.len();
        let weight = read_f32(
            &tensors,
            &format!("{}.weight", layer.name),
            &[layer.units, fan_in],
        )?;
        let bias = read_f32(&tensors, &format!("{}.bias", layer.name), &[layer.units])?;
        let mut out: Vec<f32> = (0..layer.units)
            .map(|row| {
                let w = &weight[row * fan_in..(row + 1) * fan_in];
                w.iter().zip(&h).map(|(a, b)| a * b).sum::<f32>() + bias[row]
            })
            .collect();
        activate(layer.activation, &mut out);
        h = out;
    }
    Ok(h)
}

fn read_f32(tensors: &SafeTensors<'_>, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
    let view = tensors
        .tensor(name)
        .with_context(|| format!("tensor {name}"))?;
    ensure!(
        view.dtype() == Dtype::F32,
        "{name} is {:?}, expected F32",
        view.dtype()
    );
    ensure!(
        view.shape() == shape,
        "{name} has shape {:?}, expected {shape:?}",
        view.shape()
    );
    Ok(view
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

fn activate(activation: Activation, values: &mut [f32]) {
    match activation {
        Activation::Relu => values.iter_mut().for_each(|v| *v = v.max(0.0)),
        Activation::Tanh => values.iter_mut().for_each(|v| *v = v.tanh()),
        Activation::Sigmoid => values
            .iter_mut()
            .for_each(|v| *v = 1.0 / (1.0 + (-*v).exp())),
        Activation::Linear => {}
        Activation::Softmax => {
            let max = values.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            values.iter_mut().for_each(|v| *v = (*v - max).exp());
            let sum: f32 = values.iter().sum();
            values.iter_mut().for_each(|v| *v /= sum);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model_fixture::{ModelSpec, sample_input, write_model};

    #[test]
    fn softmax_output_is_a_distribution() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let spec = ModelSpec {
            input_size: 20,
            hidden: vec![8, 8],
            outputs: 5,
            seed: 3,
        };
        write_model(dir.path(), &spec)?;
        let out = reference_forward(dir.path(), &sample_input(20, 1))?;
        assert_eq!(out.len(), 5);
        assert!((out.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        assert!(out.iter().all(|p| *p > 0.0));
        Ok(())
    }

    #[test]
    fn matches_a_hand_computed_network() -> Result<()> {
        // 2 inputs -> 1 linear unit, written by hand: y = 2*x0 - x1 + 0.5
        let dir = tempfile::tempdir()?;
        let config = r#"{"format":"sequential","input_size":2,
            "layers":[{"name":"out","units":1,"activation":"linear"}]}"#;
        std::fs::write(dir.path().join("config.json"), config)?;
        let w: Vec<u8> = [2.0f32, -1.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let b: Vec<u8> = 0.5f32.to_le_bytes().to_vec();
        let views = vec![
            (
                "out.weight",
                safetensors::tensor::TensorView::new(Dtype::F32, vec![1, 2], &w)?,
            ),
            (
                "out.bias",
                safetensors::tensor::TensorView::new(Dtype::F32, vec![1], &b)?,
            ),
        ];
        safetensors::serialize_to_file(views, None, &dir.path().join("model.safetensors"))?;
        assert_eq!(reference_forward(dir.path(), &[3.0, 1.0])?, vec![5.5]);
        Ok(())
    }

    #[test]
    fn rejects_wrong_input_length() -> Result<()> {
        let dir = tempfile::tempdir()?;
        write_model(
            dir.path(),
            &ModelSpec {
                input_size: 4,
                hidden: vec![],
                outputs: 2,
                seed: 1,
            },
        )?;
        assert!(reference_forward(dir.path(), &[1.0, 2.0]).is_err());
        Ok(())
    }
}
