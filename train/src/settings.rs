//! Training settings from flags and/or a JSON config file whose keys are the flag names in snake_case
//! (`{"hidden": [64, 64], "optimizer": "adam", "learning_rate": 0.001}`); flags override the file.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};
use crate::fit::FitSettings;
use crate::loss::LossKind;
use crate::model::Activation;
use crate::optim::{OptimizerKind, OptimizerSettings};

/// Every setting, each optional so a config file and the flags can be layered.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(default, deny_unknown_fields)]
pub struct TrainOptions {
    /// Training data: CSV with a header, or NPY.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Label column: its header name for CSV; for NPY a column index or a labels .npy file.
    #[arg(long)]
    pub label: Option<String>,
    /// Model directory to write (config.json, model.safetensors, metrics.json).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Hidden layer sizes, comma separated [default: 64,64].
    #[arg(long, value_delimiter = ',')]
    pub hidden: Option<Vec<usize>>,
    /// Activation of the hidden layers [default: relu].
    #[arg(long, value_enum)]
    pub activation: Option<Activation>,
    /// Output layer: softmax for classes, linear (or sigmoid/tanh) for regression [default: softmax].
    #[arg(long, value_enum)]
    pub output: Option<Activation>,
    /// Loss [default: cross-entropy for softmax output, mse otherwise].
    #[arg(long, value_enum)]
    pub loss: Option<LossKind>,
    /// Update rule; `gd` trains on the whole set as one batch [default: adam].
    #[arg(long, value_enum)]
    pub optimizer: Option<OptimizerKind>,
    /// Learning rate [default: 0.1 gd, 0.01 sgd/momentum/adagrad, 0.001 adam/rmsprop].
    #[arg(long)]
    pub learning_rate: Option<f64>,
    /// Momentum coefficient [default: 0.9].
    #[arg(long)]
    pub momentum: Option<f64>,
    /// Adam β₁ [default: 0.9].
    #[arg(long)]
    pub beta1: Option<f64>,
    /// Adam β₂ [default: 0.999].
    #[arg(long)]
    pub beta2: Option<f64>,
    /// RMSprop decay ρ [default: 0.9].
    #[arg(long)]
    pub rho: Option<f64>,
    /// ε of Adam/RMSprop/AdaGrad [default: 1e-8].
    #[arg(long)]
    pub epsilon: Option<f64>,
    /// Epochs (an upper bound with early stopping) [default: 50].
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Mini-batch size [default: 32].
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// L1 penalty λ₁·Σ|W| added to the loss [default: 0].
    #[arg(long)]
    pub l1: Option<f64>,
    /// L2 penalty λ₂·ΣW² added to the loss [default: 0].
    #[arg(long)]
    pub l2: Option<f64>,
    /// Fraction of the training rows held back for early stopping [default: 0 = off].
    #[arg(long)]
    pub validation_split: Option<f64>,
    /// Epochs without a lower validation loss before stopping [default: 10].
    #[arg(long)]
    pub patience: Option<usize>,
    /// k for k-fold cross-validation on the non-test rows; 0 or 1 skips it [default: 5].
    #[arg(long)]
    pub folds: Option<usize>,
    /// Fraction of all rows held out as the test set [default: 0.2].
    #[arg(long)]
    pub test_split: Option<f64>,
    /// Seed for weight initialisation, splits and shuffling [default: 42].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Version label written to config.json.
    #[arg(long = "version", id = "model_version")]
    pub version: Option<String>,
    /// Standardise features and store mean/std in the model [default: true].
    #[arg(long)]
    pub standardize: Option<bool>,
}

/// Fully resolved and validated settings.
#[derive(Debug, Clone, Serialize)]
pub struct TrainSettings {
    pub data: PathBuf,
    pub label: String,
    pub out: Option<PathBuf>,
    pub hidden: Vec<usize>,
    pub activation: Activation,
    pub output: Activation,
    pub fit: FitSettings,
    pub validation_split: f64,
    pub folds: usize,
    pub test_split: f64,
    pub standardize: bool,
    pub version: Option<String>,
}

impl TrainOptions {
    pub fn from_file(path: &Path) -> Result<TrainOptions> {
        let text = std::fs::read_to_string(path).map_err(|source| TrainError::Io {
            path: path.to_owned(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|source| TrainError::Json {
            path: path.to_owned(),
            source,
        })
    }

    /// `self` with every setting that `over` has replaced by `over`'s.
    pub fn overlaid_with(self, over: TrainOptions) -> TrainOptions {
        macro_rules! pick {
            ($($field:ident),*) => { TrainOptions { $($field: over.$field.or(self.$field)),* } };
        }
        pick!(
            data,
            label,
            out,
            hidden,
            activation,
            output,
            loss,
            optimizer,
            learning_rate,
            momentum,
            beta1,
            beta2,
            rho,
            epsilon,
            epochs,
            batch_size,
            l1,
            l2,
            validation_split,
            patience,
            folds,
            test_split,
            seed,
            version,
            standardize
        )
    }

    pub fn resolve(self) -> Result<TrainSettings> {
        let invalid = |message: &str| Err(TrainError::Settings(message.to_owned()));
        let Some(data) = self.data else {
            return invalid("--data is required");
        };
        let Some(label) = self.label else {
            return invalid("--label is required");
        };
        let hidden = self.hidden.unwrap_or_else(|| vec![64, 64]);
        if hidden.contains(&0) {
            return invalid("hidden layer sizes must be > 0");
        }
        let activation = self.activation.unwrap_or(Activation::Relu);
        if activation == Activation::Softmax {
            return invalid(
                "softmax is only for the output layer; use relu, tanh, sigmoid or linear for hidden layers",
            );
        }
        let output = self.output.unwrap_or(Activation::Softmax);
        let loss = self.loss.unwrap_or(if output == Activation::Softmax {
            LossKind::CrossEntropy
        } else {
            LossKind::Mse
        });
        match (loss, output) {
            (LossKind::CrossEntropy, Activation::Softmax) => {}
            (LossKind::CrossEntropy, _) => return invalid("cross-entropy needs --output softmax"),
            (LossKind::Mse, Activation::Softmax) => {
                return invalid(
                    "mse regresses one numeric column; use --output linear (or sigmoid/tanh)",
                );
            }
            (LossKind::Mse, _) => {}
        }
        let kind = self.optimizer.unwrap_or(OptimizerKind::Adam);
        let mut optimizer = OptimizerSettings::new(
            kind,
            self.learning_rate.unwrap_or(kind.default_learning_rate()),
        );
        optimizer.momentum = self.momentum.unwrap_or(optimizer.momentum);
        optimizer.beta1 = self.beta1.unwrap_or(optimizer.beta1);
        optimizer.beta2 = self.beta2.unwrap_or(optimizer.beta2);
        optimizer.rho = self.rho.unwrap_or(optimizer.rho);
        optimizer.epsilon = self.epsilon.unwrap_or(optimizer.epsilon);
        if optimizer.learning_rate <= 0.0 || !optimizer.learning_rate.is_finite() {
            return invalid("the learning rate must be a positive number");
        }
        let unit = |value: f64| (0.0..1.0).contains(&value);
        if ![
            optimizer.momentum,
            optimizer.beta1,
            optimizer.beta2,
            optimizer.rho,
        ]
        .into_iter()
        .all(unit)
        {
            return invalid("momentum, beta1, beta2 and rho must be in [0, 1)");
        }
        let fit = FitSettings {
            epochs: self.epochs.unwrap_or(50),
            batch_size: self.batch_size.unwrap_or(32),
            optimizer,
            loss,
            l1: self.l1.unwrap_or(0.0),
            l2: self.l2.unwrap_or(0.0),
            patience: self.patience.unwrap_or(10),
            seed: self.seed.unwrap_or(42),
        };
        if fit.epochs == 0 || fit.batch_size == 0 {
            return invalid("epochs and batch size must be > 0");
        }
        if fit.l1 < 0.0 || fit.l2 < 0.0 {
            return invalid("l1 and l2 must be >= 0");
        }
        let validation_split = self.validation_split.unwrap_or(0.0);
        let test_split = self.test_split.unwrap_or(0.2);
        if !unit(validation_split) || !unit(test_split) {
            return invalid("validation and test splits must be fractions in [0, 1)");
        }
        Ok(TrainSettings {
            data,
            label,
            out: self.out,
            hidden,
            activation,
            output,
            fit,
            validation_split,
            folds: self.folds.unwrap_or(5),
            test_split,
            standardize: self.standardize.unwrap_or(true),
            version: self.version,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minimal() -> TrainOptions {
        TrainOptions {
            data: Some("d.csv".into()),
            label: Some("y".into()),
            ..TrainOptions::default()
        }
    }

    #[test]
    fn defaults_follow_the_issue() {
        let settings = minimal().resolve().expect("valid");
        assert_eq!(settings.hidden, [64, 64]);
        assert_eq!(settings.output, Activation::Softmax);
        assert_eq!(settings.fit.loss, LossKind::CrossEntropy);
        assert_eq!(settings.fit.optimizer.kind, OptimizerKind::Adam);
        assert_eq!(settings.fit.optimizer.learning_rate, 0.001);
    }

    #[test]
    fn flags_override_the_config_file() {
        let file: TrainOptions =
            serde_json::from_str(r#"{"hidden": [8], "epochs": 3, "optimizer": "rmsprop"}"#)
                .expect("json");
        let flags = TrainOptions {
            epochs: Some(7),
            ..minimal()
        };
        let settings = file.overlaid_with(flags).resolve().expect("valid");
        assert_eq!(settings.hidden, [8]);
        assert_eq!(settings.fit.epochs, 7);
        assert_eq!(settings.fit.optimizer.kind, OptimizerKind::Rmsprop);
    }

    #[test]
    fn unknown_config_keys_and_bad_combinations_are_rejected() {
        assert!(serde_json::from_str::<TrainOptions>(r#"{"hiden": [8]}"#).is_err());
        let linear_ce = TrainOptions {
            output: Some(Activation::Linear),
            loss: Some(LossKind::CrossEntropy),
            ..minimal()
        };
        assert!(linear_ce.resolve().is_err());
        assert!(
            TrainOptions {
                test_split: Some(1.5),
                ..minimal()
            }
            .resolve()
            .is_err()
        );
        assert!(
            TrainOptions {
                data: None,
                ..minimal()
            }
            .resolve()
            .is_err()
        );
        let regression = TrainOptions {
            output: Some(Activation::Linear),
            ..minimal()
        }
        .resolve()
        .expect("valid");
        assert_eq!(regression.fit.loss, LossKind::Mse);
    }
}
