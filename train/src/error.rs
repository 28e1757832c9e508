//! Every error the trainer reports. Data errors name the file and the line so a user can fix the input.

use std::path::PathBuf;

/// Problems with the training data, each naming the file and (1-based) line at fault.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: line 1: the file is empty; expected a header line naming the columns")]
    Empty { path: PathBuf },
    #[error("{path}: line 1: the header has no label column `{column}`; columns are: {available}")]
    MissingLabelColumn {
        path: PathBuf,
        column: String,
        available: String,
    },
    #[error(
        "{path}: line 1: the header has only the label column; at least one feature column is needed"
    )]
    NoFeatureColumns { path: PathBuf },
    #[error("{path}: no data rows after the header on line 1")]
    NoRows { path: PathBuf },
    #[error("{path}: line {line}: {message}")]
    Malformed {
        path: PathBuf,
        line: u64,
        message: String,
    },
    #[error("{path}: line {line}, column `{column}`: `{value}` is not a number")]
    NonNumeric {
        path: PathBuf,
        line: u64,
        column: String,
        value: String,
    },
    #[error(
        "{path}: line {line}, column `{column}`: `{value}` is not a finite number (NaN or infinity)"
    )]
    NotFinite {
        path: PathBuf,
        line: u64,
        column: String,
        value: String,
    },
    #[error("{path}: {message}")]
    Npy { path: PathBuf, message: String },
}

/// Everything `sconce-train` can fail with.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Data(#[from] DataError),
    #[error("invalid settings: {0}")]
    Settings(String),
    #[error("invalid model: {0}")]
    Model(String),
    #[error("tensor computation failed: {0}")]
    Tensor(#[from] candle_core::Error),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("training diverged: the loss became {0} (try a smaller learning rate)")]
    Diverged(f64),
    #[error("keras import: {0}")]
    Keras(String),
}

pub type Result<T, E = TrainError> = std::result::Result<T, E>;

impl From<sconce_format::sequential::ConfigError> for TrainError {
    fn from(e: sconce_format::sequential::ConfigError) -> Self {
        TrainError::Model(e.to_string())
    }
}
