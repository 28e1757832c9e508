//! `config.json` of the `sequential` format (docs/model-format.md).

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};

pub const FORMAT_NAME: &str = "sequential";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    Relu,
    Tanh,
    Sigmoid,
    Softmax,
    Linear,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerConfig {
    pub name: String,
    pub units: usize,
    pub activation: Activation,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    pub format: String,
    pub input_size: usize,
    pub layers: Vec<LayerConfig>,
    #[serde(default)]
    pub standardize: bool,
    #[serde(default)]
    pub labels: Option<Vec<String>>,
    #[serde(default)]
    pub version: Option<String>,
}

impl ModelConfig {
    /// Checks the rules of the format doc.
    pub fn validate(&self) -> Result<()> {
        let invalid = |message: String| Err(TrainError::Model(message));
        if self.format != FORMAT_NAME {
            return invalid(format!(
                "format is `{}`, expected `{FORMAT_NAME}`",
                self.format
            ));
        }
        if self.input_size == 0 {
            return invalid("input_size must be > 0".to_owned());
        }
        let Some(last) = self.layers.last() else {
            return invalid("layers must not be empty".to_owned());
        };
        let mut names = HashSet::new();
        for layer in &self.layers {
            if layer.units == 0 {
                return invalid(format!("layer `{}` has 0 units", layer.name));
            }
            if !names.insert(layer.name.as_str()) {
                return invalid(format!("layer name `{}` is used twice", layer.name));
            }
        }
        if let Some(labels) = &self.labels
            && labels.len() != last.units
        {
            return invalid(format!(
                "{} labels for {} output units",
                labels.len(),
                last.units
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_format_doc_example() {
        let text = r#"{
          "format": "sequential", "input_size": 1000,
          "layers": [
            {"name": "dense_0", "units": 64, "activation": "relu"},
            {"name": "dense_1", "units": 64, "activation": "relu"},
            {"name": "dense_2", "units": 10, "activation": "softmax"}
          ],
          "standardize": false, "labels": null, "version": "1", "future_key": 3
        }"#;
        let config: ModelConfig = serde_json::from_str(text).expect("parses");
        config.validate().expect("valid");
        assert_eq!(config.layers[2].activation, Activation::Softmax);
        assert_eq!(config.version.as_deref(), Some("1"));
    }

    #[test]
    fn rejects_duplicate_names_and_label_count_mismatch() {
        let mut config = ModelConfig {
            format: FORMAT_NAME.into(),
            input_size: 2,
            layers: vec![
                LayerConfig {
                    name: "a".into(),
                    units: 2,
                    activation: Activation::Relu,
                },
                LayerConfig {
                    name: "a".into(),
                    units: 2,
                    activation: Activation::Softmax,
                },
            ],
            standardize: false,
            labels: None,
            version: None,
        };
        assert!(config.validate().is_err());
        config.layers[1].name = "b".into();
        config.validate().expect("valid");
        config.labels = Some(vec!["x".into()]);
        assert!(config.validate().is_err());
    }
}
