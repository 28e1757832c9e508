//! The whole `fit` command: split off a test set, k-fold cross-validate, train the final model on all
//! non-test rows, score it on the test set, and write the model directory with `metrics.json`.

use std::path::Path;

use candle_core::{DType, Device};
use serde::Serialize;

use crate::data::split::{Fold, hold_out, k_folds, shuffled_indices};
use crate::data::{Dataset, TargetKind, Targets};
use crate::error::{Result, TrainError};
use crate::evaluate::{Evaluation, evaluate};
use crate::fit::{FitReport, fit};
use crate::loss::{Examples, LossKind};
use crate::model::{LayerConfig, Network, SavedModel};
use crate::rng::SeededRng;
use crate::settings::TrainSettings;
use crate::standardize::Standardizer;

pub const METRICS_FILE: &str = "metrics.json";

#[derive(Debug, Clone, Serialize)]
pub struct FoldResult {
    pub fold: usize,
    pub train_examples: usize,
    pub evaluation: Evaluation,
    pub epochs_run: usize,
    pub best_epoch: usize,
}

/// Per-fold scores and their mean ± (population) standard deviation.
#[derive(Debug, Clone, Serialize)]
pub struct CrossValidation {
    pub k: usize,
    pub folds: Vec<FoldResult>,
    pub mean_loss: f64,
    pub std_loss: f64,
    pub mean_accuracy: Option<f64>,
    pub std_accuracy: Option<f64>,
}

/// What `metrics.json` holds.
#[derive(Debug, Clone, Serialize)]
pub struct Metrics {
    pub task: &'static str,
    pub examples: usize,
    pub train_examples: usize,
    pub test_examples: usize,
    pub version: Option<String>,
    pub settings: TrainSettings,
    pub cross_validation: Option<CrossValidation>,
    /// The final model on the held-out test rows (`None` with `test_split` 0).
    pub test: Option<Evaluation>,
    pub training: FitReport,
}

pub struct TrainOutcome {
    pub model: SavedModel,
    pub metrics: Metrics,
}

/// Loads the data named in `settings`, trains, and writes the model directory if `settings.out` is set.
pub fn run(settings: &TrainSettings) -> Result<TrainOutcome> {
    let kind = match settings.fit.loss {
        LossKind::CrossEntropy => TargetKind::Classes,
        LossKind::Mse => TargetKind::Values,
    };
    let data = Dataset::load(&settings.data, &settings.label, kind)?;
    tracing::info!(
        "{}: {} rows, {} features",
        settings.data.display(),
        data.len(),
        data.n_features
    );
    let outcome = train_and_evaluate(&data, settings)?;
    if let Some(out) = &settings.out {
        write_model(&outcome, out)?;
        tracing::info!("wrote {}", out.display());
    }
    Ok(outcome)
}

pub fn write_model(outcome: &TrainOutcome, dir: &Path) -> Result<()> {
    outcome.model.save(dir)?;
    let path = dir.join(METRICS_FILE);
    let text =
        serde_json::to_string_pretty(&outcome.metrics).map_err(|source| TrainError::Json {
            path: path.clone(),
            source,
        })?;
    std::fs::write(&path, text + "\n").map_err(|source| TrainError::Io { path, source })
}

pub fn train_and_evaluate(data: &Dataset, settings: &TrainSettings) -> Result<TrainOutcome> {
    let seed = settings.fit.seed;
    let order = shuffled_indices(data.len(), &mut SeededRng::derive(seed, 1));
    let (development, test) = hold_out(&order, settings.test_split);
    if development.len() < 2 {
        return Err(TrainError::Settings(format!(
            "only {} training rows after the test split",
            development.len()
        )));
    }
    let cross_validation = if settings.folds >= 2 {
        if settings.folds > development.len() {
            return Err(TrainError::Settings(format!(
                "{} folds for {} rows",
                settings.folds,
                development.len()
            )));
        }
        Some(cross_validate(
            data,
            &k_folds(&development, settings.folds),
            settings,
        )?)
    } else {
        None
    };
    let (model, training) = train_model(data, &development, settings, 0, "")?;
    let test_evaluation = if test.is_empty() {
        None
    } else {
        let examples =
            Examples::from_dataset(&data.subset(&test), model.standardizer.as_ref(), DType::F32)?;
        let evaluation = evaluate(&model.network, &examples, settings.fit.loss)?;
        tracing::info!(
            "held-out test ({} rows): {}",
            test.len(),
            describe(&evaluation)
        );
        Some(evaluation)
    };
    let metrics = Metrics {
        task: if matches!(data.targets, Targets::Classes { .. }) {
            "classification"
        } else {
            "regression"
        },
        examples: data.len(),
        train_examples: development.len(),
        test_examples: test.len(),
        version: settings.version.clone(),
        settings: settings.clone(),
        cross_validation,
        test: test_evaluation,
        training,
    };
    Ok(TrainOutcome { model, metrics })
}

fn cross_validate(
    data: &Dataset,
    folds: &[Fold],
    settings: &TrainSettings,
) -> Result<CrossValidation> {
    let k = folds.len();
    let mut results = Vec::with_capacity(k);
    for (index, fold) in folds.iter().enumerate() {
        let label = format!("fold {}/{k}: ", index + 1);
        let (model, report) = train_model(data, &fold.train, settings, index as u64 + 1, &label)?;
        let examples = Examples::from_dataset(
            &data.subset(&fold.validation),
            model.standardizer.as_ref(),
            DType::F32,
        )?;
        let evaluation = evaluate(&model.network, &examples, settings.fit.loss)?;
        tracing::info!(
            "{label}held-out fold ({} rows): {}",
            fold.validation.len(),
            describe(&evaluation)
        );
        results.push(FoldResult {
            fold: index + 1,
            train_examples: fold.train.len(),
            evaluation,
            epochs_run: report.epochs_run,
            best_epoch: report.best_epoch,
        });
    }
    let losses: Vec<f64> = results.iter().map(|r| r.evaluation.loss).collect();
    let accuracies: Option<Vec<f64>> = results.iter().map(|r| r.evaluation.accuracy).collect();
    let (mean_loss, std_loss) = mean_and_std(&losses);
    let (mean_accuracy, std_accuracy) = match accuracies.as_deref().map(mean_and_std) {
        Some((mean, std)) => (Some(mean), Some(std)),
        None => (None, None),
    };
    let summary = CrossValidation {
        k,
        folds: results,
        mean_loss,
        std_loss,
        mean_accuracy,
        std_accuracy,
    };
    match (summary.mean_accuracy, summary.std_accuracy) {
        (Some(mean), Some(std)) => tracing::info!(
            "{k}-fold cross-validation: accuracy {mean:.4} ± {std:.4}, loss {:.4} ± {:.4}",
            summary.mean_loss,
            summary.std_loss
        ),
        _ => tracing::info!(
            "{k}-fold cross-validation: loss {:.4} ± {:.4}",
            summary.mean_loss,
            summary.std_loss
        ),
    }
    Ok(summary)
}

/// Fits a fresh network (and standardiser) on `rows`, keeping `validation_split` of them for early stopping.
fn train_model(
    data: &Dataset,
    rows: &[usize],
    settings: &TrainSettings,
    stream: u64,
    label: &str,
) -> Result<(SavedModel, FitReport)> {
    let (fit_rows, validation_rows) = hold_out(rows, settings.validation_split);
    let fit_data = data.subset(&fit_rows);
    let standardizer = settings.standardize.then(|| Standardizer::fit(&fit_data));
    let train = Examples::from_dataset(&fit_data, standardizer.as_ref(), DType::F32)?;
    let validation = if validation_rows.is_empty() {
        None
    } else {
        Some(Examples::from_dataset(
            &data.subset(&validation_rows),
            standardizer.as_ref(),
            DType::F32,
        )?)
    };
    let layers = layer_configs(settings, data.targets.output_units());
    let init_seed = SeededRng::derive(settings.fit.seed, 100 + stream).next_u64();
    let network = Network::init(
        data.n_features,
        &layers,
        init_seed,
        DType::F32,
        &Device::Cpu,
    )?;
    let mut fit_settings = settings.fit.clone();
    fit_settings.seed = SeededRng::derive(settings.fit.seed, 200 + stream).next_u64();
    let report = fit(&network, &train, validation.as_ref(), &fit_settings, label)?;
    let labels = match &data.targets {
        Targets::Classes { names, .. } => Some(names.clone()),
        Targets::Values(_) => None,
    };
    let model = SavedModel {
        network,
        standardizer,
        labels,
        version: settings.version.clone(),
    };
    Ok((model, report))
}

pub fn layer_configs(settings: &TrainSettings, output_units: usize) -> Vec<LayerConfig> {
    let hidden = settings
        .hidden
        .iter()
        .map(|&units| (units, settings.activation));
    hidden
        .chain(std::iter::once((output_units, settings.output)))
        .enumerate()
        .map(|(index, (units, activation))| LayerConfig {
            name: format!("dense_{index}"),
            units,
            activation,
        })
        .collect()
}

fn mean_and_std(values: &[f64]) -> (f64, f64) {
    let n = values.len().max(1) as f64;
    let mean = values.iter().sum::<f64>() / n;
    let variance = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    (mean, variance.sqrt())
}

fn describe(evaluation: &Evaluation) -> String {
    match evaluation.accuracy {
        Some(accuracy) => format!("accuracy {accuracy:.4}, loss {:.4}", evaluation.loss),
        None => format!("loss {:.4}", evaluation.loss),
    }
}
