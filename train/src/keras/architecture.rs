//! The Keras model config (JSON): which Dense layers, in which order, with which activations.

use serde_json::Value;

use crate::error::{Result, TrainError};
use crate::model::Activation;

/// A Dense layer as the model config describes it (an `Activation` layer right after a linear Dense
/// is folded into it).
#[derive(Debug, Clone, PartialEq)]
pub struct KerasDense {
    pub name: String,
    pub units: usize,
    pub activation: Activation,
}

/// Parses the config of a `Sequential` model (Keras 2 `{"class_name", "config": {"layers"}}`, very old
/// Keras 2 `"config": [layers]`, or Keras 3's `.keras` `config.json`).
pub fn parse_architecture(config_json: &str) -> Result<Vec<KerasDense>> {
    let root: Value = serde_json::from_str(config_json)
        .map_err(|e| keras(format!("model config is not JSON: {e}")))?;
    let class = root["class_name"].as_str().unwrap_or_default();
    if class != "Sequential" {
        return Err(keras(format!(
            "only Sequential models are supported, this is `{class}`"
        )));
    }
    let layers = match &root["config"] {
        Value::Array(layers) => layers,
        config => config["layers"]
            .as_array()
            .ok_or_else(|| keras("the Sequential config has no layer list".to_owned()))?,
    };
    let mut dense: Vec<KerasDense> = Vec::new();
    for layer in layers {
        let class = layer["class_name"].as_str().unwrap_or_default();
        let config = &layer["config"];
        let name = config["name"].as_str().unwrap_or(class).to_owned();
        match class {
            "InputLayer" | "Dropout" => {}
            "Dense" => {
                let units = config["units"]
                    .as_u64()
                    .ok_or_else(|| keras(format!("layer `{name}` has no units")))?
                    as usize;
                let activation = activation(&config["activation"], &name)?;
                dense.push(KerasDense {
                    name,
                    units,
                    activation,
                });
            }
            "Activation" => {
                let activation = activation(&config["activation"], &name)?;
                match dense.last_mut() {
                    Some(previous) if previous.activation == Activation::Linear => {
                        previous.activation = activation
                    }
                    _ => {
                        return Err(keras(format!(
                            "Activation layer `{name}` must follow a Dense layer without activation"
                        )));
                    }
                }
            }
            other => {
                return Err(keras(format!(
                    "layer `{name}` is a {other}; only Dense, Activation, Dropout and InputLayer are supported"
                )));
            }
        }
    }
    if dense.is_empty() {
        return Err(keras("the model has no Dense layer".to_owned()));
    }
    Ok(dense)
}

fn activation(value: &Value, layer: &str) -> Result<Activation> {
    let name = match value {
        Value::Null => "linear",
        Value::String(name) => name.as_str(),
        other => {
            return Err(keras(format!(
                "layer `{layer}`: unsupported activation {other}"
            )));
        }
    };
    match name {
        "relu" => Ok(Activation::Relu),
        "tanh" => Ok(Activation::Tanh),
        "sigmoid" => Ok(Activation::Sigmoid),
        "softmax" => Ok(Activation::Softmax),
        "linear" => Ok(Activation::Linear),
        other => Err(keras(format!(
            "layer `{layer}`: activation `{other}` is not one of relu, tanh, sigmoid, softmax, linear"
        ))),
    }
}

fn keras(message: String) -> TrainError {
    TrainError::Keras(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keras3_sequential_with_dropout_and_activation_layer() {
        let config = r#"{"module": "keras", "class_name": "Sequential", "config": {"name": "s", "layers": [
            {"class_name": "InputLayer", "config": {"batch_shape": [null, 4], "name": "input_layer"}},
            {"class_name": "Dense", "config": {"name": "hidden", "units": 5, "activation": "tanh"}},
            {"class_name": "Dropout", "config": {"name": "dropout", "rate": 0.1}},
            {"class_name": "Dense", "config": {"name": "out", "units": 3, "activation": "linear"}},
            {"class_name": "Activation", "config": {"name": "act", "activation": "softmax"}}]}}"#;
        let layers = parse_architecture(config).expect("parses");
        assert_eq!(
            layers,
            [
                KerasDense {
                    name: "hidden".into(),
                    units: 5,
                    activation: Activation::Tanh
                },
                KerasDense {
                    name: "out".into(),
                    units: 3,
                    activation: Activation::Softmax
                },
            ]
        );
    }

    #[test]
    fn old_keras2_list_config_and_unsupported_layers() {
        let config = r#"{"class_name": "Sequential", "config": [
            {"class_name": "Dense", "config": {"name": "d", "units": 2, "activation": "relu", "batch_input_shape": [null, 3]}}]}"#;
        assert_eq!(parse_architecture(config).expect("parses").len(), 1);
        let conv = r#"{"class_name": "Sequential", "config": {"layers": [{"class_name": "Conv2D", "config": {"name": "c"}}]}}"#;
        let message = parse_architecture(conv)
            .expect_err("unsupported")
            .to_string();
        assert!(message.contains("Conv2D"), "{message}");
        let functional = r#"{"class_name": "Functional", "config": {}}"#;
        assert!(parse_architecture(functional).is_err());
        let gelu = r#"{"class_name": "Sequential", "config": {"layers": [{"class_name": "Dense", "config": {"name": "d", "units": 2, "activation": "gelu"}}]}}"#;
        assert!(
            parse_architecture(gelu)
                .expect_err("gelu")
                .to_string()
                .contains("gelu")
        );
    }
}
