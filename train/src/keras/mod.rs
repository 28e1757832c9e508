//! `sconce-train import-keras`: a Keras `Sequential` model of `Dense` layers, from a legacy `.h5` file
//! (`model.save("model.h5")`, Keras 2 or 3) or a Keras 3 `.keras` archive, into the `sequential` format.
//!
//! HDF5 is read with the pure-Rust `hdf5-reader` crate (no libhdf5), the `.keras` zip with `zip`.
//! Keras kernels are `[in, units]`; the format wants `[units, in]`, so they are transposed.

mod architecture;
mod weights;

use std::path::Path;

use candle_core::{DType, Device, Tensor};

pub use architecture::{KerasDense, parse_architecture};

use crate::error::{Result, TrainError};
use crate::model::{LayerConfig, Network, SavedModel};

const HDF5_SIGNATURE: &[u8] = b"\x89HDF\r\n\x1a\n";
const ZIP_SIGNATURE: &[u8] = b"PK\x03\x04";

/// A layer's weights as Keras stores them: kernel `[in, units]` and optional bias `[units]`.
#[derive(Debug, Clone)]
pub struct KerasWeights {
    pub kernel_shape: [usize; 2],
    pub kernel: Vec<f32>,
    pub bias: Option<Vec<f32>>,
}

/// Reads a Keras model file (`.h5` or `.keras`, told apart by their first bytes).
pub fn import(path: &Path) -> Result<SavedModel> {
    let bytes = std::fs::read(path).map_err(|source| TrainError::Io {
        path: path.to_owned(),
        source,
    })?;
    let (config_json, mut layer_weights) = if bytes.starts_with(HDF5_SIGNATURE) {
        weights::read_legacy_h5(bytes)?
    } else if bytes.starts_with(ZIP_SIGNATURE) {
        weights::read_keras_archive(&bytes)?
    } else {
        return Err(TrainError::Keras(format!(
            "{}: neither an HDF5 (.h5) file nor a .keras archive",
            path.display()
        )));
    };
    let layers = parse_architecture(&config_json)?;
    build_model(&layers, &mut layer_weights)
}

/// Builds the network from the Dense layers and a lookup of their weights by layer name.
fn build_model(
    layers: &[KerasDense],
    mut weights_of: impl FnMut(&str) -> Result<KerasWeights>,
) -> Result<SavedModel> {
    let device = Device::Cpu;
    let mut tensors = std::collections::HashMap::new();
    let mut configs = Vec::with_capacity(layers.len());
    let mut input_size = None;
    let mut fan_in: Option<usize> = None;
    for (index, layer) in layers.iter().enumerate() {
        let weights = weights_of(&layer.name)?;
        let [rows, units] = weights.kernel_shape;
        if units != layer.units {
            return Err(TrainError::Keras(format!(
                "layer `{}`: kernel has {units} columns, config says {} units",
                layer.name, layer.units
            )));
        }
        if let Some(previous) = fan_in
            && previous != rows
        {
            return Err(TrainError::Keras(format!(
                "layer `{}`: kernel expects {rows} inputs, previous layer gives {previous}",
                layer.name
            )));
        }
        input_size.get_or_insert(rows);
        fan_in = Some(units);
        let name = format!("dense_{index}");
        let kernel = Tensor::from_vec(weights.kernel, (rows, units), &device)?;
        tensors.insert(format!("{name}.weight"), kernel.t()?.contiguous()?);
        let bias = match weights.bias {
            Some(bias) if bias.len() == units => Tensor::from_vec(bias, units, &device)?,
            Some(bias) => {
                return Err(TrainError::Keras(format!(
                    "layer `{}`: bias has {} values for {units} units",
                    layer.name,
                    bias.len()
                )));
            }
            None => Tensor::zeros(units, DType::F32, &device)?,
        };
        tensors.insert(format!("{name}.bias"), bias);
        configs.push(LayerConfig {
            name,
            units,
            activation: layer.activation,
        });
    }
    let input_size =
        input_size.ok_or_else(|| TrainError::Keras("the model has no Dense layer".to_owned()))?;
    let network = Network::from_tensors(input_size, &configs, &tensors, DType::F32)?;
    Ok(SavedModel {
        network,
        standardizer: None,
        labels: None,
        version: None,
    })
}
