//! `sconce-train`: trains the dense `sequential` models that `sconce-server` serves, with candle's
//! autograd and optimisers written here, and imports Keras models into the same format.

pub mod cli;
pub mod data;
pub mod error;
pub mod evaluate;
pub mod fit;
pub mod keras;
pub mod loss;
pub mod model;
pub mod optim;
pub mod pipeline;
pub mod rng;
pub mod settings;
pub mod standardize;

pub use error::{Result, TrainError};
