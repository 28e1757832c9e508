//! The `sequential` model: its `config.json`, the dense network, and reading/writing the model directory.

pub mod config;
pub mod io;
pub mod network;

pub use config::{Activation, LayerConfig, ModelConfig};
pub use io::SavedModel;
pub use network::Network;
