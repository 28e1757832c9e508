//! The `sequential` format: a dense feed-forward network (docs/model-format.md).

use std::path::Path;

use anyhow::Context;
use candle_core::{DType, Device};
use candle_nn::VarBuilder;

use super::{flat, kernels};

pub use sconce_format::sequential::{Activation, SequentialConfig};

/// A loaded sequential model.
pub struct Sequential {
    pub config: SequentialConfig,
    /// Per-feature mean and 1/std.
    standardize: Option<(Vec<f32>, Vec<f32>)>,
    layers: Vec<Dense>,
}

/// One layer, its weight stored transposed (`[in × units]`) for the matrix product.
struct Dense {
    weight_t: Vec<f32>,
    bias: Vec<f32>,
    activation: Activation,
}

impl Sequential {
    pub fn load(dir: &Path, device: &Device) -> anyhow::Result<Self> {
        let config = SequentialConfig::from_dir(dir)?;
        let weights = dir.join("model.safetensors");
        // SAFETY: the file is mapped read-only; like every mmap loader we rely on nobody
        // truncating it while the server runs.
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[&weights], DType::F32, device) }
            .with_context(|| format!("mapping {}", weights.display()))?;
        let standardize = if config.standardize {
            let mean = vb
                .get(config.input_size, "standardize.mean")
                .and_then(flat)
                .context("standardize.mean")?;
            let std = vb
                .get(config.input_size, "standardize.std")
                .and_then(flat)
                .context("standardize.std")?;
            Some((mean, std.iter().map(|s| 1.0 / s).collect()))
        } else {
            None
        };
        let mut layers = Vec::with_capacity(config.layers.len());
        let mut input = config.input_size;
        for layer in &config.layers {
            let lvb = vb.pp(&layer.name);
            let weight_t = lvb
                .get((layer.units, input), "weight")
                .and_then(|w| flat(w.t()?))
                .with_context(|| format!("{}.weight", layer.name))?;
            let bias = lvb
                .get(layer.units, "bias")
                .and_then(flat)
                .with_context(|| format!("{}.bias", layer.name))?;
            layers.push(Dense {
                weight_t,
                bias,
                activation: layer.activation,
            });
            input = layer.units;
        }
        Ok(Sequential {
            config,
            standardize,
            layers,
        })
    }

    pub fn input_size(&self) -> usize {
        self.config.input_size
    }

    pub fn output_size(&self) -> usize {
        self.config.output_size()
    }

    /// Runs `rows` examples (row-major, `rows * input_size` values) and returns
    /// `rows * output_size` values.
    pub fn forward(&self, mut data: Vec<f32>, rows: usize) -> anyhow::Result<Vec<f32>> {
        anyhow::ensure!(
            data.len() == rows * self.input_size(),
            "{} values for {rows} rows of {}",
            data.len(),
            self.input_size()
        );
        if let Some((mean, inv_std)) = &self.standardize {
            for row in data.chunks_exact_mut(mean.len()) {
                for ((v, m), s) in row.iter_mut().zip(mean).zip(inv_std) {
                    *v = (*v - m) * s;
                }
            }
        }
        let mut h = data;
        for layer in &self.layers {
            let units = layer.bias.len();
            let mut out = vec![0f32; rows * units];
            kernels::broadcast_rows(&mut out, &layer.bias);
            kernels::matmul_kn(&mut out, &h, &layer.weight_t, units);
            match layer.activation {
                Activation::Relu => kernels::relu(&mut out),
                Activation::Tanh => kernels::tanh(&mut out),
                Activation::Sigmoid => kernels::sigmoid(&mut out),
                Activation::Softmax => kernels::softmax_rows(&mut out, units),
                Activation::Linear => {}
            }
            h = out;
        }
        Ok(h)
    }
}
