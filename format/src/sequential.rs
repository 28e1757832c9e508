//! `config.json` of the `sequential` format: a dense feed-forward network.

use std::collections::HashSet;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// The value of `format`.
pub const FORMAT_NAME: &str = "sequential";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
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

/// `config.json` of a sequential model. Unknown keys are ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SequentialConfig {
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

/// Why a `config.json` cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("parsing {path}: {source}")]
    Parse {
        path: String,
        source: serde_json::Error,
    },
    #[error("config.json: {0}")]
    Invalid(String),
}

impl SequentialConfig {
    /// Reads and checks `dir/config.json`.
    pub fn from_dir(dir: &Path) -> Result<Self, ConfigError> {
        let path = dir.join("config.json");
        let shown = || path.display().to_string();
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
            path: shown(),
            source,
        })?;
        let config: SequentialConfig =
            serde_json::from_str(&text).map_err(|source| ConfigError::Parse {
                path: shown(),
                source,
            })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks the rules of the format doc.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |message: String| Err(ConfigError::Invalid(message));
        if self.format != FORMAT_NAME {
            return invalid(format!(
                "format is {:?}, expected {FORMAT_NAME:?}",
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
                return invalid(format!("layer {:?} has 0 units", layer.name));
            }
            if !names.insert(layer.name.as_str()) {
                return invalid(format!("layer name {:?} is used twice", layer.name));
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

    /// Values per output row: the last layer's units.
    pub fn output_size(&self) -> usize {
        self.layers.last().map_or(0, |l| l.units)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<SequentialConfig, String> {
        let c: SequentialConfig = serde_json::from_str(json).map_err(|e| e.to_string())?;
        c.validate().map_err(|e| e.to_string())?;
        Ok(c)
    }

    #[test]
    fn parses_the_format_doc_example() {
        let c = parse(
            r#"{"format":"sequential","input_size":1000,"layers":[
            {"name":"dense_0","units":64,"activation":"relu"},
            {"name":"dense_1","units":64,"activation":"relu"},
            {"name":"dense_2","units":10,"activation":"softmax"}],
            "standardize":false,"labels":null,"version":"1","future_key":42}"#,
        )
        .unwrap();
        assert_eq!(c.output_size(), 10);
        assert_eq!(c.layers[2].activation, Activation::Softmax);
        assert_eq!(c.version.as_deref(), Some("1"));
    }

    #[test]
    fn rejects_what_the_doc_forbids() {
        let l = r#"{"name":"a","units":2,"activation":"relu"}"#;
        let cases = [
            (
                format!(r#"{{"format":"bert","input_size":1,"layers":[{l}]}}"#),
                "format is \"bert\"",
            ),
            (
                r#"{"format":"sequential","input_size":1,"layers":[]}"#.to_string(),
                "layers must not be empty",
            ),
            (
                format!(r#"{{"format":"sequential","input_size":0,"layers":[{l}]}}"#),
                "input_size must be > 0",
            ),
            (
                format!(r#"{{"format":"sequential","input_size":1,"layers":[{l},{l}]}}"#),
                "\"a\" is used twice",
            ),
            (
                r#"{"format":"sequential","input_size":1,"layers":[{"name":"a","units":0,"activation":"relu"}]}"#.to_string(),
                "has 0 units",
            ),
            (
                r#"{"format":"sequential","input_size":1,"layers":[{"name":"a","units":2,"activation":"gelu"}]}"#.to_string(),
                "unknown variant `gelu`",
            ),
            (
                format!(r#"{{"format":"sequential","input_size":1,"layers":[{l}],"labels":["x"]}}"#),
                "1 labels for 2 output units",
            ),
        ];
        for (json, want) in cases {
            let err = parse(&json).expect_err(&json);
            assert!(err.contains(want), "{json}: {err}");
        }
    }

    #[test]
    fn from_dir_names_the_file_in_its_errors() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let err = SequentialConfig::from_dir(&dir.join("missing")).unwrap_err();
        assert!(err.to_string().contains("missing/config.json"), "{err}");
        std::fs::write(dir.join("config.json"), "{not json").unwrap();
        let err = SequentialConfig::from_dir(dir).unwrap_err();
        assert!(err.to_string().starts_with("parsing "), "{err}");
    }
}
