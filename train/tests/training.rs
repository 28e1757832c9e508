//! Training behaviour on small synthetic data: every optimiser learns, penalties shrink weights,
//! early stopping stops, and a seed makes the run reproducible.

use candle_core::{DType, Device};
use sconce_train::data::{Dataset, Targets};
use sconce_train::fit::{FitSettings, fit};
use sconce_train::loss::{Examples, LossKind};
use sconce_train::model::{Activation, LayerConfig, Network};
use sconce_train::optim::{OptimizerKind, OptimizerSettings};
use sconce_train::pipeline::train_and_evaluate;
use sconce_train::rng::SeededRng;
use sconce_train::settings::TrainOptions;

/// Two classes split by the plane x₀ + x₁ = 0, plus a regression target 2x₀ - x₂.
fn synthetic(rows: usize, regression: bool) -> Dataset {
    let mut rng = SeededRng::new(99);
    let features: Vec<f32> = (0..rows * 4)
        .map(|_| rng.uniform(-1.0, 1.0) as f32)
        .collect();
    let row = |i: usize| &features[i * 4..i * 4 + 4];
    let targets = if regression {
        Targets::Values((0..rows).map(|i| 2.0 * row(i)[0] - row(i)[2]).collect())
    } else {
        Targets::Classes {
            ids: (0..rows)
                .map(|i| u32::from(row(i)[0] + row(i)[1] > 0.0))
                .collect(),
            names: vec!["neg".into(), "pos".into()],
        }
    };
    Dataset {
        feature_names: (0..4).map(|i| format!("x{i}")).collect(),
        n_features: 4,
        features,
        targets,
    }
}

fn layers(output: Activation, units: usize) -> Vec<LayerConfig> {
    vec![
        LayerConfig {
            name: "dense_0".into(),
            units: 8,
            activation: Activation::Tanh,
        },
        LayerConfig {
            name: "dense_1".into(),
            units,
            activation: output,
        },
    ]
}

fn fit_settings(kind: OptimizerKind, l1: f64, l2: f64) -> FitSettings {
    FitSettings {
        epochs: 30,
        batch_size: 16,
        optimizer: OptimizerSettings::new(
            kind,
            kind.default_learning_rate() * if kind == OptimizerKind::Gd { 5.0 } else { 3.0 },
        ),
        loss: LossKind::CrossEntropy,
        l1,
        l2,
        patience: 0,
        seed: 3,
    }
}

fn weight_norms(network: &Network) -> (f64, f64) {
    let mut l1 = 0.0;
    let mut l2 = 0.0;
    for weight in network.weights() {
        let values = weight
            .flatten_all()
            .and_then(|t| t.to_vec1::<f32>())
            .expect("weights");
        l1 += values.iter().map(|w| f64::from(w.abs())).sum::<f64>();
        l2 += values.iter().map(|w| f64::from(w * w)).sum::<f64>();
    }
    (l1, l2)
}

fn train_classifier(settings: &FitSettings) -> (Network, f64) {
    let data = synthetic(256, false);
    let examples = Examples::from_dataset(&data, None, DType::F32).expect("examples");
    let network = Network::init(
        4,
        &layers(Activation::Softmax, 2),
        11,
        DType::F32,
        &Device::Cpu,
    )
    .expect("init");
    let report = fit(&network, &examples, None, settings, "").expect("fit");
    let accuracy = report
        .history
        .last()
        .and_then(|r| r.accuracy)
        .expect("accuracy");
    (network, accuracy)
}

#[test]
fn every_optimiser_learns_a_linear_boundary() {
    for kind in [
        OptimizerKind::Gd,
        OptimizerKind::Sgd,
        OptimizerKind::Momentum,
        OptimizerKind::Adam,
        OptimizerKind::Rmsprop,
        OptimizerKind::Adagrad,
    ] {
        let (_, accuracy) = train_classifier(&fit_settings(kind, 0.0, 0.0));
        assert!(accuracy > 0.9, "{kind:?} reached only {accuracy}");
    }
}

#[test]
fn l2_and_l1_penalties_shrink_the_weights() {
    let (plain, _) = train_classifier(&fit_settings(OptimizerKind::Adam, 0.0, 0.0));
    let (with_l2, _) = train_classifier(&fit_settings(OptimizerKind::Adam, 0.0, 0.01));
    let (with_l1, _) = train_classifier(&fit_settings(OptimizerKind::Adam, 0.01, 0.0));
    let (plain_l1, plain_l2) = weight_norms(&plain);
    assert!(
        weight_norms(&with_l2).1 < 0.8 * plain_l2,
        "L2: {:?} vs {plain_l2}",
        weight_norms(&with_l2)
    );
    assert!(
        weight_norms(&with_l1).0 < 0.8 * plain_l1,
        "L1: {:?} vs {plain_l1}",
        weight_norms(&with_l1)
    );
}

#[test]
fn one_l2_step_of_gradient_descent_decays_weights_by_two_lr_lambda() {
    // With zero inputs the data loss does not depend on the weights, so one plain GD step on
    // loss + λ·ΣW² is exactly W ← W·(1 - 2·lr·λ).
    let data = Dataset {
        feature_names: vec!["a".into(), "b".into(), "c".into(), "d".into()],
        n_features: 4,
        features: vec![0.0; 8],
        targets: Targets::Classes {
            ids: vec![0, 1],
            names: vec!["n".into(), "p".into()],
        },
    };
    let examples = Examples::from_dataset(&data, None, DType::F32).expect("examples");
    let layers = [LayerConfig {
        name: "dense_0".into(),
        units: 2,
        activation: Activation::Softmax,
    }];
    let network = Network::init(4, &layers, 1, DType::F32, &Device::Cpu).expect("init");
    let before = network.layers[0]
        .weight
        .flatten_all()
        .and_then(|t| t.to_vec1::<f32>())
        .expect("w");
    let mut settings = fit_settings(OptimizerKind::Gd, 0.0, 0.25);
    settings.epochs = 1;
    settings.optimizer.learning_rate = 0.1;
    fit(&network, &examples, None, &settings, "").expect("fit");
    let after = network.layers[0]
        .weight
        .flatten_all()
        .and_then(|t| t.to_vec1::<f32>())
        .expect("w");
    for (b, a) in before.iter().zip(&after) {
        assert!((a - b * 0.95).abs() < 1e-6, "{b} -> {a}");
    }
}

#[test]
fn early_stopping_stops_and_keeps_the_best_epoch() {
    let data = synthetic(200, false);
    let train =
        Examples::from_dataset(&data.subset(&(0..40).collect::<Vec<_>>()), None, DType::F32)
            .expect("train");
    let validation = Examples::from_dataset(
        &data.subset(&(40..200).collect::<Vec<_>>()),
        None,
        DType::F32,
    )
    .expect("val");
    let wide = [
        LayerConfig {
            name: "dense_0".into(),
            units: 64,
            activation: Activation::Relu,
        },
        LayerConfig {
            name: "dense_1".into(),
            units: 2,
            activation: Activation::Softmax,
        },
    ];
    let network = Network::init(4, &wide, 2, DType::F32, &Device::Cpu).expect("init");
    let mut settings = fit_settings(OptimizerKind::Adam, 0.0, 0.0);
    settings.epochs = 500;
    settings.optimizer.learning_rate = 0.05;
    settings.patience = 5;
    let report = fit(&network, &train, Some(&validation), &settings, "").expect("fit");
    assert!(report.stopped_early, "ran all {} epochs", report.epochs_run);
    assert_eq!(report.epochs_run, report.best_epoch + 5);
    let best_loss = report.history[report.best_epoch - 1]
        .validation
        .expect("val")
        .loss;
    let final_loss =
        sconce_train::evaluate::evaluate(&network, &validation, LossKind::CrossEntropy)
            .expect("eval")
            .loss;
    assert!(
        (best_loss - final_loss).abs() < 1e-6,
        "restored {final_loss}, best {best_loss}"
    );
}

#[test]
fn regression_with_mse_fits_a_linear_target() {
    let data = synthetic(300, true);
    let options = TrainOptions {
        data: Some("unused.csv".into()),
        label: Some("y".into()),
        hidden: Some(vec![16]),
        activation: Some(Activation::Tanh),
        output: Some(Activation::Linear),
        epochs: Some(60),
        learning_rate: Some(0.01),
        folds: Some(3),
        ..TrainOptions::default()
    };
    let outcome = train_and_evaluate(&data, &options.resolve().expect("settings")).expect("trains");
    let test = outcome.metrics.test.expect("test split");
    assert!(test.loss < 0.05, "test mse {}", test.loss);
    assert!(test.accuracy.is_none());
    assert_eq!(outcome.metrics.cross_validation.expect("cv").folds.len(), 3);
}

#[test]
fn the_same_seed_gives_the_same_model_and_another_seed_does_not() {
    let data = synthetic(120, false);
    let run = |seed: u64| {
        let options = TrainOptions {
            data: Some("unused.csv".into()),
            label: Some("y".into()),
            hidden: Some(vec![8]),
            epochs: Some(5),
            folds: Some(0),
            validation_split: Some(0.2),
            seed: Some(seed),
            ..TrainOptions::default()
        };
        let outcome =
            train_and_evaluate(&data, &options.resolve().expect("settings")).expect("trains");
        let dir = tempfile::tempdir().expect("dir");
        outcome.model.save(dir.path()).expect("save");
        std::fs::read(dir.path().join("model.safetensors")).expect("read")
    };
    assert_eq!(run(1), run(1));
    assert_ne!(run(1), run(2));
}

#[test]
fn a_gd_epoch_is_one_step_on_the_full_batch_and_sgd_order_follows_the_seed() {
    let data = synthetic(64, false);
    let examples = Examples::from_dataset(&data, None, DType::F32).expect("examples");
    let fresh = || {
        Network::init(
            4,
            &layers(Activation::Softmax, 2),
            21,
            DType::F32,
            &Device::Cpu,
        )
        .expect("init")
    };
    let flat = |network: &Network| -> Vec<f32> {
        network
            .parameters()
            .iter()
            .flat_map(|p| {
                p.flatten_all()
                    .and_then(|t| t.to_vec1::<f32>())
                    .expect("values")
            })
            .collect()
    };

    // By hand: w₁ = w₀ - lr·∇L(all 64 rows).
    let by_hand = fresh();
    let pre = by_hand
        .forward_without_output_activation(&examples.inputs)
        .expect("forward");
    let loss = sconce_train::loss::data_loss(
        LossKind::CrossEntropy,
        &pre,
        Activation::Softmax,
        &examples.targets,
    )
    .expect("loss");
    let grads = sconce_train::fit::gradients(&loss, &by_hand.parameters()).expect("grads");
    let expected: Vec<f32> = by_hand
        .parameters()
        .iter()
        .zip(&grads)
        .flat_map(|(p, g)| {
            let w = p.flatten_all().and_then(|t| t.to_vec1::<f32>()).expect("w");
            let g = g.flatten_all().and_then(|t| t.to_vec1::<f32>()).expect("g");
            w.iter()
                .zip(g)
                .map(|(w, g)| w - 0.5 * g)
                .collect::<Vec<_>>()
        })
        .collect();

    let trained = fresh();
    let mut settings = fit_settings(OptimizerKind::Gd, 0.0, 0.0);
    settings.epochs = 1;
    settings.batch_size = 8; // ignored by gd
    settings.optimizer.learning_rate = 0.5;
    fit(&trained, &examples, None, &settings, "").expect("fit");
    for (a, e) in flat(&trained).iter().zip(&expected) {
        assert!((a - e).abs() < 1e-6, "{a} vs {e}");
    }

    // Mini-batch SGD: the shuffled batch order is a function of the seed alone.
    let sgd = |seed: u64| {
        let network = fresh();
        let mut settings = fit_settings(OptimizerKind::Sgd, 0.0, 0.0);
        settings.epochs = 2;
        settings.batch_size = 4;
        settings.seed = seed;
        fit(&network, &examples, None, &settings, "").expect("fit");
        flat(&network)
    };
    assert_eq!(sgd(5), sgd(5));
    assert_ne!(sgd(5), sgd(6));
}
