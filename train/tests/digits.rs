//! The acceptance run: scikit-learn's digits, 64 → 64 relu → 64 relu → 10 softmax with Adam,
//! 5-fold CV and a held-out test split, both ≥ 0.95 accuracy, well under a minute.

mod common;

use std::time::{Duration, Instant};

use candle_core::DType;
use sconce_train::data::{Dataset, TargetKind};
use sconce_train::model::SavedModel;
use sconce_train::pipeline::{self, METRICS_FILE};
use sconce_train::settings::TrainOptions;

#[test]
fn digits_cross_validation_and_held_out_accuracy_reach_095_with_adam() {
    let csv = common::digits_csv();
    let out = tempfile::tempdir().expect("dir");
    let options = TrainOptions {
        data: Some(csv.clone()),
        label: Some("target".into()),
        out: Some(out.path().to_owned()),
        hidden: Some(vec![64, 64]),
        optimizer: Some(sconce_train::optim::OptimizerKind::Adam),
        learning_rate: Some(0.001),
        epochs: Some(30),
        batch_size: Some(32),
        l2: Some(1e-4),
        folds: Some(5),
        test_split: Some(0.2),
        seed: Some(42),
        version: Some("digits-1".into()),
        ..TrainOptions::default()
    };
    let started = Instant::now();
    let outcome = pipeline::run(&options.resolve().expect("settings")).expect("trains");
    let elapsed = started.elapsed();

    let cv = outcome.metrics.cross_validation.as_ref().expect("cv");
    let mean = cv.mean_accuracy.expect("accuracy");
    let test = outcome
        .metrics
        .test
        .expect("test")
        .accuracy
        .expect("accuracy");
    let folds: Vec<f64> = cv
        .folds
        .iter()
        .filter_map(|f| f.evaluation.accuracy)
        .collect();
    println!(
        "digits: 5-fold CV accuracy {mean:.4} ± {:.4} (folds {folds:.4?}), held-out {test:.4}, {elapsed:.1?}",
        cv.std_accuracy.unwrap_or_default()
    );
    assert_eq!(cv.folds.len(), 5);
    assert!(mean >= 0.95, "mean CV accuracy {mean}");
    assert!(test >= 0.95, "held-out accuracy {test}");
    assert!(elapsed < Duration::from_secs(60), "took {elapsed:?}");

    // The written directory reproduces the trainer's predictions and carries metrics and version.
    let metrics: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.path().join(METRICS_FILE)).expect("metrics.json"),
    )
    .expect("json");
    assert_eq!(
        metrics["cross_validation"]["folds"]
            .as_array()
            .map(Vec::len),
        Some(5)
    );
    assert!(
        metrics["test"]["accuracy"]
            .as_f64()
            .is_some_and(|a| a >= 0.95)
    );
    let loaded = SavedModel::load(out.path(), DType::F32).expect("loads");
    assert_eq!(loaded.version.as_deref(), Some("digits-1"));
    assert_eq!(loaded.labels.as_ref().map(Vec::len), Some(10));
    let data = Dataset::load(&csv, "target", TargetKind::Classes).expect("data");
    let rows = &data.features[..20 * 64];
    assert_eq!(
        loaded.predict(rows).expect("predict"),
        outcome.model.predict(rows).expect("predict")
    );
}
