//! Finding each Dense layer's kernel and bias inside the two Keras file layouts.

use std::collections::HashMap;
use std::io::Read;

use hdf5_reader::Hdf5File;

use super::KerasWeights;
use crate::error::{Result, TrainError};

/// Looks up a layer's weights by its Keras layer name.
pub(super) type WeightLookup = Box<dyn FnMut(&str) -> Result<KerasWeights>>;

/// Legacy HDF5 (`model.save("model.h5")`): the config is the root attribute `model_config`; layer `L`'s
/// weights are the datasets `model_weights/L/<name>` for each `<name>` in the group's `weight_names`.
pub(super) fn read_legacy_h5(bytes: Vec<u8>) -> Result<(String, WeightLookup)> {
    let file = Hdf5File::from_vec(bytes).map_err(hdf5_error)?;
    let root = file.root_group().map_err(hdf5_error)?;
    let config = root
        .attribute("model_config")
        .map_err(|_| {
            keras("the .h5 file has no `model_config` attribute: it holds weights only (save_weights); save the model with model.save(\"model.h5\")".to_owned())
        })?
        .read_string()
        .map_err(hdf5_error)?;
    let lookup = move |layer: &str| -> Result<KerasWeights> {
        let group_path = format!("/model_weights/{layer}");
        let group = file.group(&group_path).map_err(|e| {
            keras(format!(
                "no weights for layer `{layer}` ({group_path}): {e}"
            ))
        })?;
        let names = match group.attribute("weight_names") {
            Ok(attribute) if attribute.num_elements().map_err(hdf5_error)? > 0 => {
                attribute.read_strings().map_err(hdf5_error)?
            }
            _ => Vec::new(),
        };
        let path_of = |part: &str| {
            names.iter().find(|n| {
                n.rsplit('/')
                    .next()
                    .is_some_and(|last| last.starts_with(part))
            })
        };
        let kernel_name = path_of("kernel")
            .ok_or_else(|| keras(format!("layer `{layer}` has no kernel among {names:?}")))?;
        let kernel = read_matrix(&file, &format!("{group_path}/{kernel_name}"))?;
        let bias = path_of("bias")
            .map(|name| read_vector(&file, &format!("{group_path}/{name}")))
            .transpose()?;
        Ok(KerasWeights {
            kernel_shape: kernel.0,
            kernel: kernel.1,
            bias,
        })
    };
    Ok((config, Box::new(lookup)))
}

/// Keras 3 `.keras` zip: `config.json` plus `model.weights.h5`, where each layer's variables are the
/// datasets `layers/<g>/vars/0` (kernel) and `vars/1` (bias) of the group whose `vars` has the
/// attribute `name` = the layer name (`<g>` itself is derived from the class name, not the layer name).
pub(super) fn read_keras_archive(bytes: &[u8]) -> Result<(String, WeightLookup)> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map_err(|e| keras(format!("not a readable .keras archive: {e}")))?;
    let mut read_entry = |name: &str| -> Result<Vec<u8>> {
        let mut entry = archive
            .by_name(name)
            .map_err(|e| keras(format!("the .keras archive has no {name}: {e}")))?;
        let mut content = Vec::new();
        entry
            .read_to_end(&mut content)
            .map_err(|e| keras(format!("reading {name} from the archive: {e}")))?;
        Ok(content)
    };
    let config = String::from_utf8(read_entry("config.json")?)
        .map_err(|_| keras("config.json is not UTF-8".to_owned()))?;
    let file = Hdf5File::from_vec(read_entry("model.weights.h5")?).map_err(hdf5_error)?;
    let mut groups: HashMap<String, String> = HashMap::new();
    let layers = file
        .group("/layers")
        .map_err(|e| keras(format!("model.weights.h5 has no `layers` group: {e}")))?;
    for group in layers.groups().map_err(hdf5_error)? {
        let vars_path = format!("/layers/{}/vars", group.name());
        let layer_name = file
            .group(&vars_path)
            .and_then(|vars| vars.attribute("name"))
            .and_then(|attribute| attribute.read_string())
            .unwrap_or_else(|_| group.name().to_owned());
        groups.insert(layer_name, vars_path);
    }
    let lookup = move |layer: &str| -> Result<KerasWeights> {
        let vars = groups.get(layer).ok_or_else(|| {
            keras(format!(
                "no weights for layer `{layer}` in model.weights.h5"
            ))
        })?;
        let kernel = read_matrix(&file, &format!("{vars}/0"))?;
        let bias_path = format!("{vars}/1");
        let bias = match file.dataset(&bias_path) {
            Ok(_) => Some(read_vector(&file, &bias_path)?),
            Err(_) => None,
        };
        Ok(KerasWeights {
            kernel_shape: kernel.0,
            kernel: kernel.1,
            bias,
        })
    };
    Ok((config, Box::new(lookup)))
}

fn read_values(file: &Hdf5File, path: &str) -> Result<(Vec<usize>, Vec<f32>)> {
    let dataset = file
        .dataset(path)
        .map_err(|e| keras(format!("{path}: {e}")))?;
    let shape: Vec<usize> = dataset.shape().iter().map(|&d| d as usize).collect();
    let values = match dataset.read_array::<f32>() {
        Ok(array) => array.iter().copied().collect(),
        Err(_) => dataset
            .read_array::<f64>()
            .map_err(|e| keras(format!("{path}: not a float32/float64 array: {e}")))?
            .iter()
            .map(|&v| v as f32)
            .collect(),
    };
    Ok((shape, values))
}

fn read_matrix(file: &Hdf5File, path: &str) -> Result<([usize; 2], Vec<f32>)> {
    match read_values(file, path)? {
        (shape, values) if shape.len() == 2 => Ok(([shape[0], shape[1]], values)),
        (shape, _) => Err(keras(format!(
            "{path}: expected a 2-D kernel, found shape {shape:?}"
        ))),
    }
}

fn read_vector(file: &Hdf5File, path: &str) -> Result<Vec<f32>> {
    match read_values(file, path)? {
        (shape, values) if shape.len() == 1 => Ok(values),
        (shape, _) => Err(keras(format!(
            "{path}: expected a 1-D bias, found shape {shape:?}"
        ))),
    }
}

fn hdf5_error(error: hdf5_reader::error::Error) -> TrainError {
    keras(format!("HDF5: {error}"))
}

fn keras(message: String) -> TrainError {
    TrainError::Keras(message)
}
