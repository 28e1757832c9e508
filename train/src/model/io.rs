//! Reading and writing a `sequential` model directory: `config.json` + `model.safetensors`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};

use super::config::{FORMAT_NAME, ModelConfig};
use super::network::Network;
use crate::error::{Result, TrainError};
use crate::standardize::Standardizer;

pub const CONFIG_FILE: &str = "config.json";
pub const WEIGHTS_FILE: &str = "model.safetensors";
pub const MEAN_TENSOR: &str = "standardize.mean";
pub const STD_TENSOR: &str = "standardize.std";

/// A model as the server sees it: preprocessing, network, and the display metadata.
#[derive(Debug, Clone)]
pub struct SavedModel {
    pub network: Network,
    pub standardizer: Option<Standardizer>,
    pub labels: Option<Vec<String>>,
    pub version: Option<String>,
}

impl SavedModel {
    pub fn config(&self) -> ModelConfig {
        ModelConfig {
            format: FORMAT_NAME.to_owned(),
            input_size: self.network.input_size,
            layers: self.network.layer_configs(),
            standardize: self.standardizer.is_some(),
            labels: self.labels.clone(),
            version: self.version.clone(),
        }
    }

    /// Writes `config.json` and `model.safetensors` (F32) into `dir`, creating it if needed.
    pub fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|source| io_error(dir, source))?;
        let config = self.config();
        config.validate()?;
        let mut tensors: HashMap<String, Tensor> = HashMap::new();
        for layer in &self.network.layers {
            tensors.insert(
                format!("{}.weight", layer.name),
                layer.weight.as_tensor().to_dtype(DType::F32)?,
            );
            tensors.insert(
                format!("{}.bias", layer.name),
                layer.bias.as_tensor().to_dtype(DType::F32)?,
            );
        }
        if let Some(standardizer) = &self.standardizer {
            let device = Device::Cpu;
            tensors.insert(
                MEAN_TENSOR.to_owned(),
                Tensor::from_slice(&standardizer.mean, standardizer.mean.len(), &device)?,
            );
            tensors.insert(
                STD_TENSOR.to_owned(),
                Tensor::from_slice(&standardizer.std, standardizer.std.len(), &device)?,
            );
        }
        candle_core::safetensors::save(&tensors, dir.join(WEIGHTS_FILE))?;
        let config_path = dir.join(CONFIG_FILE);
        let text = serde_json::to_string_pretty(&config).map_err(|source| TrainError::Json {
            path: config_path.clone(),
            source,
        })?;
        std::fs::write(&config_path, text + "\n")
            .map_err(|source| io_error(&config_path, source))?;
        Ok(())
    }

    /// Loads a model directory (F32 weights are kept as `dtype`).
    pub fn load(dir: &Path, dtype: DType) -> Result<SavedModel> {
        let config_path = dir.join(CONFIG_FILE);
        let text = std::fs::read_to_string(&config_path)
            .map_err(|source| io_error(&config_path, source))?;
        let config: ModelConfig =
            serde_json::from_str(&text).map_err(|source| TrainError::Json {
                path: config_path,
                source,
            })?;
        config.validate()?;
        let tensors = candle_core::safetensors::load(dir.join(WEIGHTS_FILE), &Device::Cpu)?;
        let network = Network::from_tensors(config.input_size, &config.layers, &tensors, dtype)?;
        let standardizer = if config.standardize {
            let vector = |key: &str| -> Result<Vec<f32>> {
                let tensor = tensors.get(key).ok_or_else(|| {
                    TrainError::Model(format!("standardize is true but `{key}` is missing"))
                })?;
                if tensor.dims() != [config.input_size] {
                    return Err(TrainError::Model(format!(
                        "`{key}` has shape {:?}, expected [{}]",
                        tensor.dims(),
                        config.input_size
                    )));
                }
                Ok(tensor.to_dtype(DType::F32)?.to_vec1::<f32>()?)
            };
            Some(Standardizer {
                mean: vector(MEAN_TENSOR)?,
                std: vector(STD_TENSOR)?,
            })
        } else {
            None
        };
        Ok(SavedModel {
            network,
            standardizer,
            labels: config.labels,
            version: config.version,
        })
    }

    /// Outputs for raw (unstandardised) row-major features, exactly as the server computes them.
    pub fn predict(&self, features: &[f32]) -> Result<Vec<Vec<f32>>> {
        let input_size = self.network.input_size;
        if input_size == 0 || !features.len().is_multiple_of(input_size) {
            return Err(TrainError::Model(format!(
                "{} values do not form rows of {input_size}",
                features.len()
            )));
        }
        let prepared = match &self.standardizer {
            Some(standardizer) => standardizer.apply(features),
            None => features.to_vec(),
        };
        let dtype = self
            .network
            .layers
            .first()
            .map_or(DType::F32, |l| l.weight.dtype());
        let rows = prepared.len() / input_size;
        let input =
            Tensor::from_vec(prepared, (rows, input_size), &Device::Cpu)?.to_dtype(dtype)?;
        Ok(self
            .network
            .forward(&input)?
            .to_dtype(DType::F32)?
            .to_vec2::<f32>()?)
    }
}

fn io_error(path: &Path, source: std::io::Error) -> TrainError {
    TrainError::Io {
        path: PathBuf::from(path),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Activation, LayerConfig};

    #[test]
    fn save_then_load_round_trips_predictions_and_config() {
        let layers = vec![
            LayerConfig {
                name: "dense_0".into(),
                units: 5,
                activation: Activation::Tanh,
            },
            LayerConfig {
                name: "dense_1".into(),
                units: 3,
                activation: Activation::Softmax,
            },
        ];
        let network = Network::init(4, &layers, 1, DType::F32, &Device::Cpu).expect("init");
        let model = SavedModel {
            network,
            standardizer: Some(Standardizer {
                mean: vec![1.0, 2.0, 3.0, 4.0],
                std: vec![1.0, 2.0, 0.5, 1.0],
            }),
            labels: Some(vec!["a".into(), "b".into(), "c".into()]),
            version: Some("7".into()),
        };
        let dir = tempfile::tempdir().expect("temp dir");
        model.save(dir.path()).expect("saves");
        let loaded = SavedModel::load(dir.path(), DType::F32).expect("loads");
        assert_eq!(loaded.config(), model.config());
        let x = [0.5f32, 1.0, -2.0, 3.0, 1.0, 1.0, 1.0, 1.0];
        assert_eq!(
            loaded.predict(&x).expect("predict"),
            model.predict(&x).expect("predict")
        );

        let config: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join(CONFIG_FILE)).expect("read"),
        )
        .expect("json");
        assert_eq!(config["format"], "sequential");
        assert_eq!(config["standardize"], true);
        assert_eq!(config["version"], "7");
        assert_eq!(config["layers"][1]["activation"], "softmax");
    }
}
