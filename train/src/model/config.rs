//! `config.json` of the `sequential` format, defined once (with its rules) in `sconce-format`:
//! the trainer writes exactly what the server reads.

pub use sconce_format::sequential::{
    Activation, FORMAT_NAME, LayerConfig, SequentialConfig as ModelConfig,
};
