//! Deterministic random `sequential` models (docs/model-format.md) for tests and the demo.
//!
//! Weights come from a seeded splitmix64 stream, so the same spec always produces byte-identical
//! files on every machine, and `reference_forward` can recompute the expected answers.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result, ensure};
use safetensors::{Dtype, tensor::TensorView};
use sconce_format::sequential::{Activation, FORMAT_NAME, LayerConfig, SequentialConfig};

/// What `make-model` writes: a dense network `input_size -> hidden... -> outputs`.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelSpec {
    pub input_size: usize,
    /// Units of each hidden layer (ReLU).
    pub hidden: Vec<usize>,
    /// Units of the output layer (softmax).
    pub outputs: usize,
    pub seed: u64,
}

impl Default for ModelSpec {
    fn default() -> Self {
        Self {
            input_size: 1000,
            hidden: vec![64, 64],
            outputs: 10,
            seed: 42,
        }
    }
}

/// The splitmix64 generator: tiny, well distributed, and trivially reproducible elsewhere.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[-limit, limit)`, from the top 24 bits (exact in f32).
    pub fn next_uniform(&mut self, limit: f32) -> f32 {
        let unit = (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
        (unit * 2.0 - 1.0) * limit
    }
}

impl ModelSpec {
    /// The config this spec describes: hidden layers `dense_0..` with ReLU, a softmax output layer.
    pub fn config(&self) -> SequentialConfig {
        let mut layers: Vec<LayerConfig> = self
            .hidden
            .iter()
            .enumerate()
            .map(|(i, &units)| LayerConfig {
                name: format!("dense_{i}"),
                units,
                activation: Activation::Relu,
            })
            .collect();
        layers.push(LayerConfig {
            name: format!("dense_{}", self.hidden.len()),
            units: self.outputs,
            activation: Activation::Softmax,
        });
        SequentialConfig {
            format: FORMAT_NAME.into(),
            input_size: self.input_size,
            layers,
            standardize: false,
            labels: None,
            version: Some(format!("seed-{}", self.seed)),
        }
    }

    fn validate(&self) -> Result<()> {
        ensure!(self.input_size > 0, "input size must be > 0");
        ensure!(self.outputs > 0, "outputs must be > 0");
        ensure!(
            self.hidden.iter().all(|&u| u > 0),
            "hidden layer sizes must be > 0"
        );
        Ok(())
    }
}

/// Tensors of one layer, `weight` row-major `[units, in]`.
struct LayerWeights {
    weight: Vec<f32>,
    bias: Vec<f32>,
}

/// Draws every layer's weights in order (weight then bias), scaled by 1/sqrt(fan_in) so
/// activations stay in a useful range for any input size.
fn draw_weights(config: &SequentialConfig, seed: u64) -> Vec<LayerWeights> {
    let mut rng = SplitMix64::new(seed);
    let mut fan_in = config.input_size;
    let mut out = Vec::with_capacity(config.layers.len());
    for layer in &config.layers {
        let limit = 1.0 / (fan_in as f32).sqrt();
        let weight = (0..layer.units * fan_in)
            .map(|_| rng.next_uniform(limit))
            .collect();
        let bias = (0..layer.units).map(|_| rng.next_uniform(limit)).collect();
        out.push(LayerWeights { weight, bias });
        fan_in = layer.units;
    }
    out
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Writes `config.json` and `model.safetensors` into `dir` (created if missing).
pub fn write_model(dir: &Path, spec: &ModelSpec) -> Result<SequentialConfig> {
    spec.validate()?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let config = spec.config();
    let weights = draw_weights(&config, spec.seed);

    let mut fan_in = config.input_size;
    let mut buffers: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for (layer, w) in config.layers.iter().zip(&weights) {
        buffers.push((
            format!("{}.weight", layer.name),
            vec![layer.units, fan_in],
            f32_bytes(&w.weight),
        ));
        buffers.push((
            format!("{}.bias", layer.name),
            vec![layer.units],
            f32_bytes(&w.bias),
        ));
        fan_in = layer.units;
    }
    let views = buffers
        .iter()
        .map(|(name, shape, bytes)| {
            TensorView::new(Dtype::F32, shape.clone(), bytes).map(|view| (name.clone(), view))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::serialize_to_file(views, Some(metadata), &dir.join("model.safetensors"))
        .context("writing model.safetensors")?;
    let json = serde_json::to_vec_pretty(&config)?;
    std::fs::write(dir.join("config.json"), json).context("writing config.json")?;
    Ok(config)
}

/// A deterministic input vector for tests: `input_size` values in `[0, 1)`.
pub fn sample_input(input_size: usize, seed: u64) -> Vec<f32> {
    let mut rng = SplitMix64::new(seed ^ 0x5EED);
    (0..input_size)
        .map(|_| (rng.next_uniform(1.0) + 1.0) / 2.0)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix64_matches_reference_values() {
        // First outputs for seed 1234567 from the reference C implementation.
        let mut rng = SplitMix64::new(1234567);
        assert_eq!(rng.next_u64(), 6457827717110365317);
        assert_eq!(rng.next_u64(), 3203168211198807973);
    }

    #[test]
    fn uniform_stays_within_limit() {
        let mut rng = SplitMix64::new(7);
        assert!(
            (0..10_000)
                .map(|_| rng.next_uniform(0.5))
                .all(|v| (-0.5..0.5).contains(&v))
        );
    }

    #[test]
    fn config_names_layers_and_activations() {
        let spec = ModelSpec {
            input_size: 4,
            hidden: vec![3],
            outputs: 2,
            seed: 1,
        };
        let config = spec.config();
        assert_eq!(config.layers.len(), 2);
        assert_eq!(
            config.layers[0],
            LayerConfig {
                name: "dense_0".into(),
                units: 3,
                activation: Activation::Relu
            }
        );
        assert_eq!(config.layers[1].activation, Activation::Softmax);
    }

    #[test]
    fn same_seed_same_bytes_other_seed_other_bytes() -> Result<()> {
        let a = tempfile::tempdir()?;
        let b = tempfile::tempdir()?;
        let c = tempfile::tempdir()?;
        let spec = ModelSpec {
            input_size: 8,
            hidden: vec![4],
            outputs: 3,
            seed: 9,
        };
        write_model(a.path(), &spec)?;
        write_model(b.path(), &spec)?;
        write_model(c.path(), &ModelSpec { seed: 10, ..spec })?;
        let read = |d: &tempfile::TempDir| std::fs::read(d.path().join("model.safetensors"));
        assert_eq!(read(&a)?, read(&b)?);
        assert_ne!(read(&a)?, read(&c)?);
        Ok(())
    }

    #[test]
    fn tensors_have_documented_shapes() -> Result<()> {
        let dir = tempfile::tempdir()?;
        write_model(
            dir.path(),
            &ModelSpec {
                input_size: 5,
                hidden: vec![4, 3],
                outputs: 2,
                seed: 1,
            },
        )?;
        let bytes = std::fs::read(dir.path().join("model.safetensors"))?;
        let st = safetensors::SafeTensors::deserialize(&bytes)?;
        assert_eq!(st.tensor("dense_0.weight")?.shape(), &[4, 5]);
        assert_eq!(st.tensor("dense_1.weight")?.shape(), &[3, 4]);
        assert_eq!(st.tensor("dense_2.weight")?.shape(), &[2, 3]);
        assert_eq!(st.tensor("dense_2.bias")?.shape(), &[2]);
        Ok(())
    }

    #[test]
    fn rejects_empty_layers() {
        let dir = std::env::temp_dir();
        assert!(
            write_model(
                &dir,
                &ModelSpec {
                    outputs: 0,
                    ..ModelSpec::default()
                }
            )
            .is_err()
        );
    }
}
