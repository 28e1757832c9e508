//! Loading the model formats of docs/model-format.md.

pub mod bert;
pub mod gguf;
mod kernels;
pub mod sequential;

use std::path::Path;

use candle_core::Device;

use crate::cli::Format;

pub use bert::Bert;
pub use gguf::GgufModel;
pub use sequential::Sequential;

/// A weight tensor as the row-major values the kernels read.
fn flat(t: candle_core::Tensor) -> candle_core::Result<Vec<f32>> {
    t.flatten_all()?.to_vec1::<f32>()
}

/// A loaded model; it lives on the model thread.
pub enum Model {
    Sequential(Sequential),
    Bert(Box<Bert>),
    Gguf(Box<GgufModel>),
}

/// What the HTTP layer needs to know about the loaded model.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    pub name: String,
    pub version: String,
    pub format: Format,
    /// Features per example (sequential).
    pub input_size: usize,
    /// Values per output row: last layer's units, the embedding size or the vocabulary size.
    pub output_size: usize,
}

impl Model {
    pub fn load(dir: &Path, format: Format) -> anyhow::Result<Self> {
        let device = Device::Cpu;
        Ok(match format {
            Format::Sequential => Model::Sequential(Sequential::load(dir, &device)?),
            Format::Bert => Model::Bert(Box::new(Bert::load(dir, &device)?)),
            Format::Gguf => Model::Gguf(Box::new(GgufModel::load(dir)?)),
        })
    }

    /// Builds the public description; `version` overrides the config's own.
    pub fn info(&self, name: &str, version: Option<&str>) -> ModelInfo {
        let (format, input_size, output_size, cfg_version) = match self {
            Model::Sequential(m) => (
                Format::Sequential,
                m.input_size(),
                m.output_size(),
                m.config.version.clone(),
            ),
            Model::Bert(m) => (Format::Bert, 0, m.hidden_size(), None),
            Model::Gguf(m) => (Format::Gguf, 0, m.vocab.len(), None),
        };
        ModelInfo {
            name: name.to_string(),
            version: version
                .map(str::to_string)
                .or(cfg_version)
                .unwrap_or_else(|| "1".to_string()),
            format,
            input_size,
            output_size,
        }
    }
}
